//! Usernames: 1 to 32 of `[a-z0-9_.-]`, starting with a letter or digit. The same rule at
//! `adduser`, in `users.db` and at login, so a name is also a safe directory name.

use std::fmt;
use std::str::FromStr;

use crate::error::UsernameError;

/// Longest username accepted.
pub const MAX_USERNAME_LEN: usize = 32;

/// A username that passed validation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Username(String);

impl Username {
    /// Validates a username.
    ///
    /// # Errors
    /// [`UsernameError`] naming the rejected input.
    pub fn parse(name: &str) -> Result<Self, UsernameError> {
        let bytes = name.as_bytes();
        let valid = (1..=MAX_USERNAME_LEN).contains(&bytes.len())
            && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(b));
        if valid {
            Ok(Username(name.to_owned()))
        } else {
            Err(UsernameError(name.to_owned()))
        }
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Username {
    type Err = UsernameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Username::parse(s)
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_refuses() {
        for good in ["alice", "a", "0day", "a.b-c_d", &"x".repeat(32)] {
            assert!(Username::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Alice",
            ".hidden",
            "-x",
            "_x",
            "a b",
            "a/b",
            "a:b",
            "é",
            "..",
            &"x".repeat(33),
        ] {
            assert!(Username::parse(bad).is_err(), "{bad}");
        }
    }

    /// A name reads back as it was given, as a string and on display.
    #[test]
    fn a_name_reads_back_as_given() {
        let name: Username = "a.b-c_d".parse().unwrap();
        assert_eq!(name.as_str(), "a.b-c_d");
        assert_eq!(name.to_string(), "a.b-c_d");
    }
}
