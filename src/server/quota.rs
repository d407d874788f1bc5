//! Quota bookkeeping between concurrent uploads of one user: each upload reserves the bytes
//! it has yet to send, so two uploads cannot both fit under the quota on their own and
//! exceed it together.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::StorageError;
use crate::server::postgres::quota::PgReservations;
use crate::username::Username;

/// Where the holds of uploads in progress are kept: in this node's memory, or (the files in
/// an object store that several nodes share) in the database, over every node.
#[derive(Debug, Clone)]
pub(crate) enum QuotaBook {
    Local(Quotas),
    Shared(PgReservations),
}

impl Default for QuotaBook {
    fn default() -> Self {
        QuotaBook::Local(Quotas::default())
    }
}

impl QuotaBook {
    /// Bytes the uploads of `user` hold now.
    pub(crate) async fn held(&self, user: &Username) -> Result<u64, StorageError> {
        match self {
            QuotaBook::Local(quotas) => Ok(quotas.held(user)),
            QuotaBook::Shared(book) => book
                .held(user, None)
                .await
                .map_err(|e| StorageError::database_unavailable(&e)),
        }
    }

    /// As [`Quotas::reserve`], over every node when shared.
    pub(crate) async fn reserve(
        &self,
        user: &Username,
        projected: u64,
        incoming: u64,
        quota: u64,
    ) -> Result<Result<Hold, u64>, StorageError> {
        match self {
            QuotaBook::Local(quotas) => Ok(quotas
                .reserve(user, projected, incoming, quota)
                .map(Hold::Local)),
            QuotaBook::Shared(book) => {
                let reserved = book
                    .reserve(user, projected, incoming, quota)
                    .await
                    .map_err(|e| StorageError::database_unavailable(&e))?;
                Ok(reserved.map(|id| {
                    Hold::Shared(SharedHold {
                        id,
                        user: user.clone(),
                        renewal: book.keep_renewed(id),
                        book: book.clone(),
                    })
                }))
            }
        }
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
            Hold::Shared(hold) => hold
                .book
                .held(&hold.user, Some(hold.id))
                .await
                .map_err(|e| StorageError::database_unavailable(&e)),
        }
    }
}

/// A hold in the database, renewed while it lasts.
#[derive(Debug)]
pub(crate) struct SharedHold {
    id: i64,
    user: Username,
    book: PgReservations,
    renewal: tokio::task::JoinHandle<()>,
}

impl Drop for SharedHold {
    fn drop(&mut self) {
        self.renewal.abort();
        self.book.release(self.id);
    }
}

/// Bytes reserved by uploads in progress, per user.
#[derive(Debug, Default, Clone)]
pub(crate) struct Quotas {
    pending: Arc<Mutex<HashMap<Username, u64>>>,
}

impl Quotas {
    /// Bytes the uploads of `user` hold now.
    pub(crate) fn held(&self, user: &Username) -> u64 {
        let Ok(pending) = self.pending.lock() else {
            return 0;
        };
        pending.get(user).copied().unwrap_or(0)
    }

    /// Reserves `incoming` bytes for `user` if `projected` (usage after this upload) plus
    /// what other uploads have reserved stays within `quota`. On refusal, returns the bytes
    /// other uploads hold.
    pub(crate) fn reserve(
        &self,
        user: &Username,
        projected: u64,
        incoming: u64,
        quota: u64,
    ) -> Result<Reservation, u64> {
        let Ok(mut pending) = self.pending.lock() else {
            return Err(0);
        };
        let others = pending.get(user).copied().unwrap_or(0);
        if projected
            .checked_add(others)
            .is_none_or(|total| total > quota)
        {
            return Err(others);
        }
        let held = pending.entry(user.clone()).or_default();
        *held = held.saturating_add(incoming);
        Ok(Reservation {
            quotas: self.clone(),
            user: user.clone(),
            bytes: incoming,
        })
    }
}

/// Bytes held for one upload; released when dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    quotas: Quotas,
    user: Username,
    bytes: u64,
}

impl Reservation {
    /// Bytes the user's other uploads hold now.
    pub(crate) fn held_by_others(&self) -> u64 {
        let Ok(pending) = self.quotas.pending.lock() else {
            return 0;
        };
        let all = pending.get(&self.user).copied().unwrap_or(0);
        all.saturating_sub(self.bytes)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Ok(mut pending) = self.quotas.pending.lock()
            && let Some(held) = pending.get_mut(&self.user)
        {
            *held = held.saturating_sub(self.bytes);
            if *held == 0 {
                pending.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_reservations_share_the_quota() {
        let quotas = Quotas::default();
        let alice = Username::parse("alice").unwrap();
        let first = quotas.reserve(&alice, 60, 60, 100).unwrap();
        assert_eq!(quotas.reserve(&alice, 60, 60, 100).unwrap_err(), 60);
        let bob = Username::parse("bob").unwrap();
        assert!(quotas.reserve(&bob, 60, 60, 100).is_ok());
        let small = quotas.reserve(&alice, 30, 30, 100).unwrap();
        assert_eq!(small.held_by_others(), 60);
        drop(first);
        assert_eq!(small.held_by_others(), 0);
        drop(small);
        assert!(quotas.reserve(&alice, 60, 60, 100).is_ok());
        // Sums that would wrap are refused, not wrapped.
        assert!(quotas.reserve(&bob, u64::MAX, 1, 100).is_err());
    }
}
