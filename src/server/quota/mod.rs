//! Quota bookkeeping between concurrent uploads of one user: each upload reserves the bytes
//! it has yet to send (and, where its engine does not count it while it runs, the entry it
//! will be), so two uploads cannot both fit under a quota on their own and exceed it
//! together. `memory` keeps the holds in this process; `postgres` where every node of a
//! shared object store sees them.

pub mod memory;
pub mod postgres;

use crate::error::StorageError;
use crate::username::Username;
pub(crate) use memory::LocalHolds;

/// Where the holds of uploads in progress are kept: an engine (this process's memory,
/// PostgreSQL for nodes that share an object store).
#[async_trait::async_trait]
pub(crate) trait UploadHolds: Send + Sync + std::fmt::Debug {
    /// Bytes the uploads of `user` hold now.
    async fn held(&self, user: &Username) -> Result<u64, StorageError>;
    /// Entries the uploads of `user` hold now (their own included).
    async fn held_entries(&self, user: &Username) -> Result<u64, StorageError>;
    /// Holds what `need` asks for `user` if it fits beside what other uploads hold, one
    /// reservation of a user at a time wherever the holds are seen: the hold, or on refusal
    /// what the others hold.
    async fn reserve(
        &self,
        user: &Username,
        need: Need,
    ) -> Result<Result<Hold, Refused>, StorageError>;
}

/// One upload's hold as its engine keeps it; let go of when dropped.
#[async_trait::async_trait]
pub(crate) trait Held: Send + Sync + std::fmt::Debug {
    /// Bytes the user's other uploads hold now.
    async fn held_by_others(&self) -> Result<u64, StorageError>;
}

/// Bytes and entries held for one upload; released when dropped.
pub(crate) type Hold = Box<dyn Held>;

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
