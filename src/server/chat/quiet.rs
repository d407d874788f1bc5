//! Friend requests told lately: a request repeated within [`QUIET`] (asked again, or
//! withdrawn and asked again) is not told to its recipient again, nor is its withdrawal, so
//! add/del cycles cannot fill someone's screen. The request itself is stored as ever: it
//! shows in the recipient's `Friends` list.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a request told is not told again.
pub const QUIET: Duration = Duration::from_secs(10 * 60);

/// Pairs remembered before the old ones are forgotten.
const REMEMBERED: usize = 4096;

/// When a request was last told, and whether one came since that was not.
struct Told {
    at: Instant,
    silenced: bool,
}

/// The requests told lately, by (from, to).
#[derive(Default)]
pub struct Announcements {
    told: Mutex<HashMap<(String, String), Told>>,
}

impl Announcements {
    /// A request from `from` to `to`: whether to tell `to` of it now.
    pub fn request(&self, from: &str, to: &str, now: Instant) -> bool {
        let mut told = self.told.lock().unwrap_or_else(|p| p.into_inner());
        if told.len() >= REMEMBERED {
            told.retain(|_, t| now.saturating_duration_since(t.at) < QUIET);
        }
        let key = (from.to_owned(), to.to_owned());
        match told.get_mut(&key) {
            Some(t) if now.saturating_duration_since(t.at) < QUIET => {
                t.silenced = true;
                false
            }
            _ => {
                told.insert(
                    key,
                    Told {
                        at: now,
                        silenced: false,
                    },
                );
                true
            }
        }
    }

    /// `from` and `to` ended what there was between them: whether to tell `to`. Not when
    /// it was a request from `from` that `to` was never told of.
    pub fn ended(&self, from: &str, to: &str, now: Instant) -> bool {
        let told = self.told.lock().unwrap_or_else(|p| p.into_inner());
        !told
            .get(&(from.to_owned(), to.to_owned()))
            .is_some_and(|t| t.silenced && now.saturating_duration_since(t.at) < QUIET)
    }

    /// Forgets what was told between the two (they became friends, or one unblocked the
    /// other): what comes next is told.
    pub fn forget(&self, a: &str, b: &str) {
        let mut told = self.told.lock().unwrap_or_else(|p| p.into_inner());
        told.remove(&(a.to_owned(), b.to_owned()));
        told.remove(&(b.to_owned(), a.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 27.9: 20 add/del cycles put 40 events on the victim's screen.
    #[test]
    fn a_request_repeated_lately_is_told_once_and_so_is_its_end() {
        let quiet = Announcements::default();
        let now = Instant::now();
        assert!(quiet.request("mallory", "bob", now));
        assert!(
            quiet.ended("mallory", "bob", now),
            "the first request's end is told"
        );
        for _ in 0..20 {
            assert!(!quiet.request("mallory", "bob", now));
            assert!(!quiet.ended("mallory", "bob", now));
        }
        // Others are told as ever, and so is mallory once the quiet time has passed.
        assert!(quiet.request("alice", "bob", now));
        assert!(quiet.request("mallory", "bob", now + QUIET));
        assert!(quiet.ended("mallory", "bob", now + QUIET));
        // A friendship's end is always told.
        assert!(!quiet.request("mallory", "bob", now + QUIET));
        quiet.forget("bob", "mallory");
        assert!(quiet.ended("mallory", "bob", now + QUIET));
    }
}
