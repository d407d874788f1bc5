//! A home's usage, counted by a walk once and then kept up to date by every change the
//! server makes, so a quota check costs a lock, not a walk over the user's tree. Recounted
//! when the home is opened afresh and after [`RECOUNT_AFTER`], which corrects any drift
//! (files changed by other means, a change that failed half way).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::walk::Usage;

/// How long a count is trusted before the next request for it walks the tree again.
pub const RECOUNT_AFTER: Duration = Duration::from_secs(10 * 60);

/// The running count of one home.
#[derive(Debug, Default)]
pub struct Ledger {
    state: Mutex<Option<Counted>>,
}

#[derive(Debug, Clone, Copy)]
struct Counted {
    totals: Usage,
    at: Instant,
}

impl Ledger {
    /// The count, if there is one recent enough to trust.
    pub fn current(&self) -> Option<Usage> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .filter(|c| c.at.elapsed() < RECOUNT_AFTER)
            .map(|c| c.totals)
    }

    /// Replaces the count with a fresh walk's.
    pub fn recounted(&self, totals: Usage) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *state = Some(Counted {
            totals,
            at: Instant::now(),
        });
    }

    /// Something was added to the tree.
    pub fn add(&self, added: Usage) {
        self.change(|t| {
            t.bytes = t.bytes.saturating_add(added.bytes);
            t.entries = t.entries.saturating_add(added.entries);
        });
    }

    /// Something was removed from the tree.
    pub fn remove(&self, removed: Usage) {
        self.change(|t| {
            t.bytes = t.bytes.saturating_sub(removed.bytes);
            t.entries = t.entries.saturating_sub(removed.entries);
        });
    }

    /// Bytes of one file changed from `before` to `after` (a partial upload that grew).
    pub fn resize(&self, before: u64, after: u64) {
        self.change(|t| t.bytes = t.bytes.saturating_sub(before).saturating_add(after));
    }

    fn change(&self, apply: impl FnOnce(&mut Usage)) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(counted) = state.as_mut() {
            apply(&mut counted.totals);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_apply_to_a_count_and_never_wrap() {
        let ledger = Ledger::default();
        ledger.add(Usage::entry(false, 5));
        assert_eq!(ledger.current(), None, "nothing counted yet");
        ledger.recounted(Usage {
            bytes: 10,
            entries: 2,
        });
        ledger.add(Usage::entry(false, 5));
        ledger.resize(5, 7);
        assert_eq!(
            ledger.current(),
            Some(Usage {
                bytes: 17,
                entries: 3
            })
        );
        ledger.remove(Usage {
            bytes: 100,
            entries: 100,
        });
        assert_eq!(ledger.current(), Some(Usage::default()));
        ledger.add(Usage {
            bytes: u64::MAX,
            entries: 1,
        });
        ledger.add(Usage {
            bytes: u64::MAX,
            entries: 1,
        });
        assert_eq!(ledger.current().unwrap().bytes, u64::MAX);
    }
}
