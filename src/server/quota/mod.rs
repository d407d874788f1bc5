//! Quota bookkeeping between concurrent uploads of one user: each upload reserves the bytes
//! it has yet to send (and, where its engine does not count it while it runs, the entry it
//! will be), so two uploads cannot both fit under a quota on their own and exceed it
//! together.

pub mod postgres;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::StorageError;
use crate::username::Username;

/// Where the holds of uploads in progress are kept when every node must see them (the
/// files in an object store that several nodes share): an engine, PostgreSQL.
#[async_trait::async_trait]
pub(crate) trait SharedHolds: Send + Sync + std::fmt::Debug {
    /// Bytes the uploads of `user` hold now, but the hold `except`.
    async fn held(&self, user: &Username, except: Option<i64>) -> Result<u64, StorageError>;
    /// Entries the uploads of `user` hold now.
    async fn held_entries(&self, user: &Username) -> Result<u64, StorageError>;
    /// Holds what `need` asks for `user` if it fits beside what other uploads hold, one
    /// reservation of a user at a time over every node: the hold's id, or on refusal what
    /// the others hold.
    async fn reserve(
        &self,
        user: &Username,
        need: Need,
    ) -> Result<Result<i64, Refused>, StorageError>;
    /// Keeps the hold `id` from lapsing until the returned task is aborted.
    fn keep_renewed(&self, id: i64) -> tokio::task::JoinHandle<()>;
    /// Lets go of the hold `id`, in the background.
    fn release(&self, id: i64);
}

/// Where the holds of uploads in progress are kept: in this node's memory, or where every
/// node sees them.
#[derive(Debug, Clone)]
pub(crate) enum QuotaBook {
    Local(LocalHolds),
    Shared(Arc<dyn SharedHolds>),
}

impl Default for QuotaBook {
    fn default() -> Self {
        QuotaBook::Local(LocalHolds::default())
    }
}

impl QuotaBook {
    /// Bytes the uploads of `user` hold now.
    pub(crate) async fn held(&self, user: &Username) -> Result<u64, StorageError> {
        match self {
            QuotaBook::Local(quotas) => Ok(quotas.held(user)),
            QuotaBook::Shared(book) => book.held(user, None).await,
        }
    }

    /// Entries the uploads of `user` hold now (their own included).
    pub(crate) async fn held_entries(&self, user: &Username) -> Result<u64, StorageError> {
        match self {
            QuotaBook::Local(quotas) => Ok(quotas.held_entries(user)),
            QuotaBook::Shared(book) => book.held_entries(user).await,
        }
    }

    /// As [`LocalHolds::reserve`], over every node when shared.
    pub(crate) async fn reserve(
        &self,
        user: &Username,
        need: Need,
    ) -> Result<Result<Hold, Refused>, StorageError> {
        match self {
            QuotaBook::Local(quotas) => Ok(quotas.reserve(user, need).map(Hold::Local)),
            QuotaBook::Shared(book) => {
                let reserved = book.reserve(user, need).await?;
                Ok(reserved.map(|id| {
                    Hold::Shared(SharedHold {
                        id,
                        user: user.clone(),
                        renewal: book.keep_renewed(id),
                        book: Arc::clone(book),
                    })
                }))
            }
        }
    }
}

/// What one upload needs held.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Need {
    /// Bytes: usage after this upload (`projected`), the bytes still to come (`incoming`),
    /// and the quota.
    pub(crate) bytes: Option<(u64, u64, u64)>,
    /// An entry: the entries counted now, and the file-count quota.
    pub(crate) entry: Option<(u64, u64)>,
}

/// Why a reservation was refused: what the user's other uploads hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Of bytes.
    Bytes(u64),
    /// Of entries.
    Entries(u64),
}

impl Need {
    /// Whether it fits beside what others hold; what refuses it otherwise.
    pub(crate) fn fits(&self, others_bytes: u64, others_entries: u64) -> Result<(), Refused> {
        if let Some((projected, _, quota)) = self.bytes
            && projected
                .checked_add(others_bytes)
                .is_none_or(|total| total > quota)
        {
            return Err(Refused::Bytes(others_bytes));
        }
        if let Some((counted, max)) = self.entry
            && counted
                .checked_add(others_entries)
                .and_then(|n| n.checked_add(1))
                .is_none_or(|total| total > max)
        {
            return Err(Refused::Entries(others_entries));
        }
        Ok(())
    }

    /// Bytes and entries to hold.
    pub(crate) fn held(&self) -> (u64, u64) {
        (
            self.bytes.map_or(0, |(_, incoming, _)| incoming),
            u64::from(self.entry.is_some()),
        )
    }
}

/// Bytes held for one upload, here or in the database; released when dropped.
#[derive(Debug)]
pub(crate) enum Hold {
    Local(Reservation),
    Shared(SharedHold),
}

impl Hold {
    /// Bytes the user's other uploads hold now.
    pub(crate) async fn held_by_others(&self) -> Result<u64, StorageError> {
        match self {
            Hold::Local(reservation) => Ok(reservation.held_by_others()),
            Hold::Shared(hold) => hold.book.held(&hold.user, Some(hold.id)).await,
        }
    }
}

/// A hold in the database, renewed while it lasts.
#[derive(Debug)]
pub(crate) struct SharedHold {
    id: i64,
    user: Username,
    book: Arc<dyn SharedHolds>,
    renewal: tokio::task::JoinHandle<()>,
}

impl Drop for SharedHold {
    fn drop(&mut self) {
        self.renewal.abort();
        self.book.release(self.id);
    }
}

/// Bytes and entries reserved by uploads in progress, per user.
#[derive(Debug, Default, Clone)]
pub(crate) struct LocalHolds {
    pending: Arc<Mutex<HashMap<Username, (u64, u64)>>>,
}

impl LocalHolds {
    /// Bytes the uploads of `user` hold now.
    pub(crate) fn held(&self, user: &Username) -> u64 {
        let Ok(pending) = self.pending.lock() else {
            return 0;
        };
        pending.get(user).map_or(0, |held| held.0)
    }

    /// Entries the uploads of `user` hold now.
    pub(crate) fn held_entries(&self, user: &Username) -> u64 {
        let Ok(pending) = self.pending.lock() else {
            return 0;
        };
        pending.get(user).map_or(0, |held| held.1)
    }

    /// Holds what `need` asks for `user` if it fits beside what other uploads hold. On
    /// refusal, says what the others hold.
    pub(crate) fn reserve(&self, user: &Username, need: Need) -> Result<Reservation, Refused> {
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

impl Reservation {
    /// Bytes the user's other uploads hold now.
    pub(crate) fn held_by_others(&self) -> u64 {
        let Ok(pending) = self.quotas.pending.lock() else {
            return 0;
        };
        let all = pending.get(&self.user).map_or(0, |held| held.0);
        all.saturating_sub(self.bytes)
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

    #[test]
    fn concurrent_reservations_share_the_quota() {
        let quotas = LocalHolds::default();
        let alice = Username::parse("alice").unwrap();
        let first = quotas.reserve(&alice, bytes(60, 60, 100)).unwrap();
        assert_eq!(
            quotas.reserve(&alice, bytes(60, 60, 100)).unwrap_err(),
            Refused::Bytes(60)
        );
        let bob = Username::parse("bob").unwrap();
        assert!(quotas.reserve(&bob, bytes(60, 60, 100)).is_ok());
        let small = quotas.reserve(&alice, bytes(30, 30, 100)).unwrap();
        assert_eq!(small.held_by_others(), 60);
        drop(first);
        assert_eq!(small.held_by_others(), 0);
        drop(small);
        assert!(quotas.reserve(&alice, bytes(60, 60, 100)).is_ok());
        // Sums that would wrap are refused, not wrapped.
        assert!(quotas.reserve(&bob, bytes(u64::MAX, 1, 100)).is_err());
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
        let book = QuotaBook::default();
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
            .map(|_| quotas.reserve(&alice, entry(2)).unwrap())
            .collect();
        assert_eq!(
            quotas.reserve(&alice, entry(2)).unwrap_err(),
            Refused::Entries(2)
        );
        drop(held);
        assert!(quotas.reserve(&alice, entry(3)).is_ok());
    }
}
