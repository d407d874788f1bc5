//! Brute-force defence: failed logins are counted per user name and per source address
//! within a sliding window. Each recent failure doubles the delay before the next attempt is
//! answered, whether it came from the name or the address. Past a threshold an *address* is
//! locked out for a while; a name never is, so nobody can lock a user out by failing in
//! their name (OpenSSH's penalties, too, are per source address). IPv6 addresses count per
//! /64, the block one host is usually given.
//!
//! A locked-out attempt runs the same exchange and gets the same `e=invalid-proof` as a
//! wrong password. Nothing here depends on whether a name exists: failures are counted
//! alike for known and unknown names, and a success clears nothing, so the delay before the
//! challenge cannot tell an active user from an unknown name.
//!
//! This file holds the policy and the rules every engine keeps; `memory` counts in this
//! process (a bounded table: at most [`MAX_TRACKED`] names and addresses, the least recently
//! failed forgotten first), `postgres` over every node of a cluster.

pub mod memory;
pub mod postgres;

pub use memory::{LoginGuard, MAX_TRACKED};

use std::net::IpAddr;
use std::time::Duration;

use crate::username::Username;

/// When to slow down and when to lock out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failures from one address within `window` that lock that address out.
    pub max_failures: u32,
    /// How far back failures count.
    pub window: Duration,
    /// How long a lockout lasts.
    pub lockout: Duration,
    /// Delay after the first recent failure; doubled for each further one.
    pub base_delay: Duration,
    /// The delay never exceeds this.
    pub max_delay: Duration,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        LockoutPolicy {
            max_failures: 10,
            window: Duration::from_secs(15 * 60),
            lockout: Duration::from_secs(15 * 60),
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
        }
    }
}

/// The address a lockout applies to: IPv4 as is, IPv6 by its /64.
pub(crate) fn block(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::V6(octets.into())
            }
        },
    }
}

/// What to do with a login attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Wait this long before answering.
    pub delay: Duration,
    /// The address is locked out: the attempt must fail whatever is proven.
    pub locked: bool,
}

/// The delay before answering after `failures` recent failures: none, then the base delay
/// doubled for each further one, up to the most.
pub(crate) fn delay_after(policy: &LockoutPolicy, failures: usize) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32 << (failures - 1).min(16);
    policy
        .base_delay
        .saturating_mul(factor)
        .min(policy.max_delay)
}

/// Where failed logins are counted: an engine (this process's memory, PostgreSQL for
/// every node of a cluster), each keeping the rules of [`LoginGuard`].
#[async_trait::async_trait]
pub(crate) trait FailedLogins: Send + Sync + std::fmt::Debug {
    /// As [`LoginGuard::check`].
    async fn check(
        &self,
        user: Option<&Username>,
        addr: IpAddr,
    ) -> Result<Verdict, crate::error::DatabaseError>;
    /// As [`LoginGuard::record_failure`].
    async fn record_failure(
        &self,
        user: Option<&Username>,
        addr: IpAddr,
    ) -> Result<Option<IpAddr>, crate::error::DatabaseError>;
}

/// The failed logins the server consults, failing closed: when the engine cannot say, the
/// address counts as locked, so no failure goes uncounted for want of a database.
#[derive(Debug)]
pub(crate) struct Guard {
    failures: Box<dyn FailedLogins>,
}

impl Guard {
    pub(crate) fn new(failures: Box<dyn FailedLogins>) -> Self {
        Guard { failures }
    }

    /// As [`LoginGuard::check`]; locked when the engine cannot say.
    pub(crate) async fn check(&self, user: Option<&Username>, addr: IpAddr) -> Verdict {
        self.failures.check(user, addr).await.unwrap_or_else(|err| {
            tracing::error!(error = %err, "cannot check failed logins; refusing");
            Verdict {
                delay: Duration::ZERO,
                locked: true,
            }
        })
    }

    /// As [`LoginGuard::record_failure`].
    pub(crate) async fn record_failure(
        &self,
        user: Option<&Username>,
        addr: IpAddr,
    ) -> Option<IpAddr> {
        self.failures
            .record_failure(user, addr)
            .await
            .unwrap_or_else(|err| {
                tracing::error!(error = %err, "cannot count a failed login");
                None
            })
    }
}
