//! Quota bookkeeping between concurrent uploads of one user: each upload reserves the bytes
//! it has yet to send (and, where its engine does not count it while it runs, the entry it
//! will be), so two uploads cannot both fit under a quota on their own and exceed it
//! together. `memory` keeps the holds in this process; `postgres` where every node of a
//! shared object store sees them.

pub mod memory;
pub mod postgres;

use std::sync::Arc;

use crate::error::StorageError;
use crate::username::Username;
pub(crate) use memory::{LocalHolds, Reservation};

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
