//! SSH public keys a user logs in with over SFTP, as `~/.ssh/authorized_keys` lines are
//! written (`ssh-ed25519 AAAA… comment`), named by their SHA-256 fingerprint as
//! `ssh-keygen -lf` and `ssh` show it.
//!
//! Only what a modern OpenSSH offers and the server can verify is taken: Ed25519, ECDSA on
//! the NIST curves, and RSA of at least [`MIN_RSA_BITS`] (signed with SHA-2); DSA, keys
//! with options and certificates are refused with a reason.

use std::fmt;

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use russh::keys::ssh_key::{self, Algorithm, HashAlg, PublicKey, public::KeyData};

/// The longest key line taken (an RSA key of 16,384 bits is about 2.8 KB).
pub const MAX_LINE: usize = 8 * 1024;

/// The most keys one user may have.
pub const MAX_KEYS_PER_USER: usize = 32;

/// The smallest RSA key taken, as OpenSSH's own floor (`RequiredRSASize`).
pub const MIN_RSA_BITS: u32 = 2048;

/// The most of a key file read: more than a user's keys take.
pub const MAX_FILE: u64 = 1024 * 1024;

/// The text of a `.pub` or `authorized_keys` file, or of any reader, [`MAX_FILE`] bytes
/// at most.
///
/// # Errors
/// It cannot be read, or is not UTF-8.
pub fn read_keys(from: impl std::io::Read) -> std::io::Result<String> {
    std::io::read_to_string(from.take(MAX_FILE))
}

/// As [`read_keys`], from the file at `path`.
///
/// # Errors
/// The file cannot be opened or read, or is not UTF-8.
pub fn read_file(path: &std::path::Path) -> std::io::Result<String> {
    read_keys(std::fs::File::open(path)?)
}

/// The longest comment kept.
const MAX_COMMENT: usize = 256;

/// Why a key line was not taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("the key line is longer than {MAX_LINE} bytes")]
    TooLong,
    #[error(
        "not an SSH public key line (expected \"ssh-ed25519 AAAA… comment\", as in a .pub file): {0}"
    )]
    Malformed(String),
    #[error("{0} keys are not accepted; use Ed25519 (ssh-keygen -t ed25519), ECDSA or RSA")]
    Unsupported(String),
    #[error("this RSA key has {0} bits; at least {MIN_RSA_BITS} are needed")]
    WeakRsa(u32),
    #[error("line {0}: {1}")]
    OnLine(usize, Box<KeyError>),
}

/// One accepted public key, with the comment it came with.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthorizedKey {
    key: PublicKey,
}

impl fmt::Debug for AuthorizedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "AuthorizedKey({} {})",
            self.algorithm(),
            self.fingerprint()
        )
    }
}

impl AuthorizedKey {
    /// Parses one line of a `.pub` or `authorized_keys` file (without options).
    ///
    /// # Errors
    /// [`KeyError`] saying what is wrong with it.
    pub fn parse(line: &str) -> Result<Self, KeyError> {
        if line.len() > MAX_LINE {
            return Err(KeyError::TooLong);
        }
        let line = line.trim();
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains("-cert-v01@openssh.com") {
            return Err(KeyError::Unsupported("certificate".into()));
        }
        let key = PublicKey::from_openssh(line).map_err(|err| {
            // An options prefix (`from="…" ssh-ed25519 …`) or an unknown type reads as a
            // bad algorithm: say which word was not understood.
            KeyError::Malformed(format!(
                "{err} (at {:?})",
                crate::sanitize::for_log(first.get(..40).unwrap_or(first))
            ))
        })?;
        Self::accept(key)
    }

    fn accept(mut key: PublicKey) -> Result<Self, KeyError> {
        match key.key_data() {
            KeyData::Ed25519(_) | KeyData::Ecdsa(_) => {}
            KeyData::Rsa(rsa) => {
                let bits = rsa.key_size();
                if bits < MIN_RSA_BITS {
                    return Err(KeyError::WeakRsa(bits));
                }
            }
            _ => return Err(KeyError::Unsupported(key.algorithm().to_string())),
        }
        // Comments are for people: printable, one line, not too long.
        let comment: String = key
            .comment()
            .as_str_lossy()
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_COMMENT)
            .collect();
        key.set_comment(comment);
        Ok(AuthorizedKey { key })
    }

    /// The keys of a `.pub` or `authorized_keys` file (without options): one a line,
    /// blank lines and `#` comments skipped.
    ///
    /// # Errors
    /// The first bad line, by number; [`KeyError::Malformed`] for a file without a key.
    pub fn parse_lines(text: &str) -> Result<Vec<Self>, KeyError> {
        let mut keys = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key =
                Self::parse(line).map_err(|err| KeyError::OnLine(index + 1, Box::new(err)))?;
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(KeyError::Malformed("no public key in it".into()));
        }
        Ok(keys)
    }

    /// A key already parsed (a client's offer, the server's own).
    ///
    /// # Errors
    /// As [`AuthorizedKey::parse`], for a type not accepted.
    pub fn from_public(key: &PublicKey) -> Result<Self, KeyError> {
        Self::accept(key.clone())
    }

    /// Whether `offered` is this key (comments aside).
    pub fn matches(&self, offered: &PublicKey) -> bool {
        self.key.key_data() == offered.key_data()
    }

    /// `SHA256:…`, as `ssh-keygen -lf` prints it.
    pub fn fingerprint(&self) -> String {
        self.key.fingerprint(HashAlg::Sha256).to_string()
    }

    /// `ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`.
    pub fn algorithm(&self) -> String {
        self.key.algorithm().to_string()
    }

    /// The key's size in bits, as `ssh-keygen -l` prints it.
    pub fn bits(&self) -> u32 {
        match self.key.key_data() {
            KeyData::Rsa(rsa) => rsa.key_size(),
            KeyData::Ecdsa(ecdsa) => match ecdsa.curve() {
                ssh_key::EcdsaCurve::NistP256 => 256,
                ssh_key::EcdsaCurve::NistP384 => 384,
                ssh_key::EcdsaCurve::NistP521 => 521,
            },
            _ => 256,
        }
    }

    /// The comment it came with (`alice@laptop`), if any.
    pub fn comment(&self) -> String {
        self.key.comment().as_str_lossy().to_owned()
    }

    /// `256 SHA256:… comment (ED25519)`: one line of `ssh-keygen -lf`.
    pub fn describe(&self) -> String {
        let kind = match self.key.algorithm() {
            Algorithm::Ed25519 => "ED25519".to_owned(),
            Algorithm::Ecdsa { .. } => "ECDSA".to_owned(),
            Algorithm::Rsa { .. } => "RSA".to_owned(),
            other => other.to_string().to_uppercase(),
        };
        let comment = self.comment();
        let comment = if comment.is_empty() {
            "no comment".to_owned()
        } else {
            crate::sanitize::for_terminal(&comment)
        };
        format!("{} {} {comment} ({kind})", self.bits(), self.fingerprint())
    }

    /// The `authorized_keys` line.
    pub fn to_line(&self) -> String {
        self.key
            .to_openssh()
            .unwrap_or_else(|_| format!("{} (unencodable)", self.algorithm()))
    }

    /// The key as one whitespace-free field (`ALGORITHM:BASE64[:COMMENT]`, the comment
    /// percent-encoded), as `users.db` keeps it.
    pub fn to_field(&self) -> String {
        let line = self.to_line();
        let mut parts = line.splitn(3, ' ');
        let algorithm = parts.next().unwrap_or_default();
        let base64 = parts.next().unwrap_or_default();
        let comment = self.comment();
        if comment.is_empty() {
            format!("{algorithm}:{base64}")
        } else {
            format!(
                "{algorithm}:{base64}:{}",
                utf8_percent_encode(&comment, FIELD_ESCAPES)
            )
        }
    }

    /// Reads a key back from [`AuthorizedKey::to_field`].
    ///
    /// # Errors
    /// As [`AuthorizedKey::parse`].
    pub fn from_field(field: &str) -> Result<Self, KeyError> {
        let mut parts = field.splitn(3, ':');
        let algorithm = parts.next().unwrap_or_default();
        let base64 = parts.next().unwrap_or_default();
        let comment = parts
            .next()
            .map(|c| percent_decode_str(c).decode_utf8_lossy().into_owned())
            .unwrap_or_default();
        let key = Self::parse(&format!("{algorithm} {base64}"))?;
        let mut key = key.key;
        key.set_comment(comment);
        Self::accept(key)
    }
}

/// What a comment may not hold as it is inside a `users.db` field.
const FIELD_ESCAPES: &AsciiSet = &CONTROLS.add(b' ').add(b'%').add(b':').add(b'#').add(b'=');

#[cfg(test)]
mod tests {
    use super::*;

    /// Made with `ssh-keygen -t ed25519 -C alice@laptop`.
    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINGuPVHsCTW2Dd+EjNoRTrqiO2QQusnV84c69fnQYN5p alice@laptop";

    #[test]
    fn a_pub_line_is_taken_and_named_as_ssh_keygen_names_it() {
        let key = AuthorizedKey::parse(ED25519).unwrap();
        assert_eq!(key.algorithm(), "ssh-ed25519");
        assert_eq!(key.comment(), "alice@laptop");
        // As `ssh-keygen -lf` printed it for this key.
        assert_eq!(
            key.describe(),
            "256 SHA256:RitIkJUv5b7i7pZdBqWFT5wKSOwHzOiaZSR0sCtDhNM alice@laptop (ED25519)"
        );
        assert_eq!(key.to_line(), ED25519);
    }

    #[test]
    fn the_users_db_field_round_trips_with_an_odd_comment() {
        let mut key = AuthorizedKey::parse(ED25519).unwrap();
        key.key.set_comment("bob's key: 50% = #1");
        let field = key.to_field();
        assert!(!field.contains(' ') && !field.contains('#') && !field.contains('='));
        let back = AuthorizedKey::from_field(&field).unwrap();
        assert_eq!(back, key);
        assert_eq!(back.comment(), "bob's key: 50% = #1");
        let bare = AuthorizedKey::parse(ED25519.rsplit_once(' ').unwrap().0).unwrap();
        assert_eq!(AuthorizedKey::from_field(&bare.to_field()).unwrap(), bare);
    }

    #[test]
    fn bad_lines_are_refused_with_a_reason() {
        assert!(matches!(
            AuthorizedKey::parse("not a key"),
            Err(KeyError::Malformed(_))
        ));
        assert!(matches!(
            AuthorizedKey::parse("ssh-ed25519 AAAA"),
            Err(KeyError::Malformed(_))
        ));
        assert!(matches!(
            AuthorizedKey::parse(&format!("from=\"10.0.0.1\" {ED25519}")),
            Err(KeyError::Malformed(_))
        ));
        assert_eq!(
            AuthorizedKey::parse(&"a".repeat(MAX_LINE + 1)),
            Err(KeyError::TooLong)
        );
        assert!(matches!(
            AuthorizedKey::parse("ssh-ed25519-cert-v01@openssh.com AAAA x"),
            Err(KeyError::Unsupported(_))
        ));
    }

    #[test]
    fn comments_lose_control_characters() {
        let line = format!("{} evil\u{1b}[2Jname", ED25519.rsplit_once(' ').unwrap().0);
        let key = AuthorizedKey::parse(&line).unwrap();
        assert_eq!(key.comment(), "evil[2Jname");
    }
}
