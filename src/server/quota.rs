//! Quota bookkeeping between concurrent uploads of one user: each upload reserves the bytes
//! it has yet to send, so two uploads cannot both fit under the quota on their own and
//! exceed it together.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::username::Username;

/// Bytes reserved by uploads in progress, per user.
#[derive(Debug, Default, Clone)]
pub(crate) struct Quotas {
    pending: Arc<Mutex<HashMap<Username, u64>>>,
}

impl Quotas {
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
        if projected.saturating_add(others) > quota {
            return Err(others);
        }
        *pending.entry(user.clone()).or_default() += incoming;
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
        drop(first);
        assert!(quotas.reserve(&alice, 60, 60, 100).is_ok());
    }
}
