//! The embedded engine: the holds of uploads in progress in this process's memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::*;

/// Bytes and entries reserved by uploads in progress, per user.
#[derive(Debug, Default, Clone)]
pub(crate) struct LocalHolds {
    pending: Arc<Mutex<HashMap<Username, (u64, u64)>>>,
}

#[async_trait::async_trait]
impl UploadHolds for LocalHolds {
    async fn held(&self, user: &Username) -> Result<u64, StorageError> {
        Ok(self.held_now(user))
    }

    async fn held_entries(&self, user: &Username) -> Result<u64, StorageError> {
        Ok(self.held_entries_now(user))
    }

    async fn reserve(
        &self,
        user: &Username,
        need: Need,
    ) -> Result<Result<Hold, Refused>, StorageError> {
        Ok(self
            .reserve_now(user, need)
            .map(|held| Box::new(held) as Hold))
    }
}

impl LocalHolds {
    /// Bytes the uploads of `user` hold now.
    pub(crate) fn held_now(&self, user: &Username) -> u64 {
        let Ok(pending) = self.pending.lock() else {
            return 0;
        };
        pending.get(user).map_or(0, |held| held.0)
    }

    /// Entries the uploads of `user` hold now.
    pub(crate) fn held_entries_now(&self, user: &Username) -> u64 {
        let Ok(pending) = self.pending.lock() else {
            return 0;
        };
        pending.get(user).map_or(0, |held| held.1)
    }

    /// Holds what `need` asks for `user` if it fits beside what other uploads hold. On
    /// refusal, says what the others hold.
    pub(crate) fn reserve_now(&self, user: &Username, need: Need) -> Result<Reservation, Refused> {
        let Ok(mut pending) = self.pending.lock() else {
            return Err(Refused::Bytes(0));
        };
        let (others_bytes, others_entries) = pending.get(user).copied().unwrap_or_default();
        need.fits(others_bytes, others_entries)?;
        let (bytes, entries) = need.held();
        let held = pending.entry(user.clone()).or_default();
        held.0 = held.0.saturating_add(bytes);
        held.1 = held.1.saturating_add(entries);
        Ok(Reservation {
            quotas: self.clone(),
            user: user.clone(),
            bytes,
            entries,
        })
    }
}

/// Bytes and entries held for one upload; released when dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    quotas: LocalHolds,
    user: Username,
    bytes: u64,
    entries: u64,
}

#[async_trait::async_trait]
impl Held for Reservation {
    async fn held_by_others(&self) -> Result<u64, StorageError> {
        let Ok(pending) = self.quotas.pending.lock() else {
            return Ok(0);
        };
        let all = pending.get(&self.user).map_or(0, |held| held.0);
        Ok(all.saturating_sub(self.bytes))
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Ok(mut pending) = self.quotas.pending.lock()
            && let Some(held) = pending.get_mut(&self.user)
        {
            held.0 = held.0.saturating_sub(self.bytes);
            held.1 = held.1.saturating_sub(self.entries);
            if *held == (0, 0) {
                pending.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(projected: u64, incoming: u64, quota: u64) -> Need {
        Need {
            bytes: Some((projected, incoming, quota)),
            entry: None,
        }
    }

    #[tokio::test]
    async fn concurrent_reservations_share_the_quota() {
        let quotas = LocalHolds::default();
        let alice = Username::parse("alice").unwrap();
        let first = quotas.reserve_now(&alice, bytes(60, 60, 100)).unwrap();
        assert_eq!(
            quotas.reserve_now(&alice, bytes(60, 60, 100)).unwrap_err(),
            Refused::Bytes(60)
        );
        let bob = Username::parse("bob").unwrap();
        assert!(quotas.reserve_now(&bob, bytes(60, 60, 100)).is_ok());
        let small = quotas.reserve_now(&alice, bytes(30, 30, 100)).unwrap();
        assert_eq!(small.held_by_others().await.unwrap(), 60);
        drop(first);
        assert_eq!(small.held_by_others().await.unwrap(), 0);
        drop(small);
        assert!(quotas.reserve_now(&alice, bytes(60, 60, 100)).is_ok());
        // Sums that would wrap are refused, not wrapped.
        assert!(quotas.reserve_now(&bob, bytes(u64::MAX, 1, 100)).is_err());
    }

    /// A quota is a limit one may reach: an upload that fills it exactly fits, one byte
    /// or one entry more does not.
    #[test]
    fn a_quota_may_be_filled_exactly() {
        assert_eq!(bytes(100, 100, 100).fits(0, 0), Ok(()));
        assert_eq!(bytes(60, 60, 100).fits(40, 0), Ok(()));
        assert_eq!(bytes(60, 60, 100).fits(41, 0), Err(Refused::Bytes(41)));
        let entry = |counted| Need {
            bytes: None,
            entry: Some((counted, 4)),
        };
        assert_eq!(entry(2).fits(0, 1), Ok(()));
        assert_eq!(entry(2).fits(0, 2), Err(Refused::Entries(2)));
        assert_eq!(entry(u64::MAX).fits(0, 0), Err(Refused::Entries(0)));
        // Both asked: each is checked.
        let both = Need {
            bytes: Some((10, 10, 100)),
            entry: Some((3, 4)),
        };
        assert_eq!(both.fits(90, 0), Ok(()));
        assert_eq!(both.fits(91, 0), Err(Refused::Bytes(91)));
        assert_eq!(both.fits(0, 1), Err(Refused::Entries(1)));
        assert_eq!(both.held(), (10, 1));
        assert_eq!(bytes(70, 20, 100).held(), (20, 0));
    }

    /// What each user's uploads hold is counted per user, in bytes and entries, the same
    /// through the book as directly, and each hold gives back exactly its own.
    #[tokio::test]
    async fn holds_are_counted_per_user_and_released_one_by_one() {
        let book = LocalHolds::default();
        let alice = Username::parse("alice").unwrap();
        let bob = Username::parse("bob").unwrap();
        let need = |incoming| Need {
            bytes: Some((incoming, incoming, 1000)),
            entry: Some((0, 10)),
        };
        let first = book.reserve(&alice, need(100)).await.unwrap().unwrap();
        let second = book.reserve(&alice, need(20)).await.unwrap().unwrap();
        let third = book.reserve(&alice, need(3)).await.unwrap().unwrap();
        let _bobs = book.reserve(&bob, need(7)).await.unwrap().unwrap();
        assert_eq!(book.held(&alice).await.unwrap(), 123);
        assert_eq!(book.held_entries(&alice).await.unwrap(), 3);
        assert_eq!(book.held(&bob).await.unwrap(), 7);
        assert_eq!(second.held_by_others().await.unwrap(), 103);
        drop(first);
        assert_eq!(book.held(&alice).await.unwrap(), 23);
        assert_eq!(book.held_entries(&alice).await.unwrap(), 2);
        assert_eq!(third.held_by_others().await.unwrap(), 20);
        drop((second, third));
        assert_eq!(book.held(&alice).await.unwrap(), 0);
        assert_eq!(book.held_entries(&alice).await.unwrap(), 0);
        assert_eq!(book.held(&bob).await.unwrap(), 7);
    }

    /// Issue 27.7: entries are held as bytes are, for uploads their engine does not count.
    #[test]
    fn concurrent_new_files_share_the_file_count_quota() {
        let quotas = LocalHolds::default();
        let alice = Username::parse("alice").unwrap();
        let entry = |counted| Need {
            bytes: None,
            entry: Some((counted, 4)),
        };
        let held: Vec<_> = (0..2)
            .map(|_| quotas.reserve_now(&alice, entry(2)).unwrap())
            .collect();
        assert_eq!(
            quotas.reserve_now(&alice, entry(2)).unwrap_err(),
            Refused::Entries(2)
        );
        drop(held);
        assert!(quotas.reserve_now(&alice, entry(3)).is_ok());
    }
}
