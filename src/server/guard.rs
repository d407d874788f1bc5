//! Brute-force defence: failed logins are counted per user name and per source address
//! within a sliding window. Each recent failure doubles the delay before the next attempt is
//! answered; past a threshold the name or address is locked out for a while. A locked-out
//! attempt runs the same exchange and gets the same `e=invalid-proof` as a wrong password, so
//! an attacker learns nothing from the lockout either.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// When to slow down and when to lock out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failures within `window` that lock a name or an address out.
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

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Addr(IpAddr),
}

#[derive(Debug, Default)]
struct Record {
    failures: VecDeque<Instant>,
    locked_until: Option<Instant>,
}

impl Record {
    fn forget_old(&mut self, now: Instant, window: Duration) {
        while self
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            self.failures.pop_front();
        }
        if self.locked_until.is_some_and(|until| now >= until) {
            self.locked_until = None;
        }
    }
}

/// What to do with a login attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Wait this long before answering.
    pub delay: Duration,
    /// The name or the address is locked out: the attempt must fail whatever is proven.
    pub locked: bool,
}

/// Failed-login bookkeeping shared by all sessions.
#[derive(Debug, Default)]
pub struct LoginGuard {
    policy: LockoutPolicy,
    records: Mutex<HashMap<Key, Record>>,
}

impl LoginGuard {
    /// A guard with this policy.
    pub fn new(policy: LockoutPolicy) -> Self {
        LoginGuard {
            policy,
            records: Mutex::default(),
        }
    }

    fn keys(user: &str, addr: IpAddr) -> [Key; 2] {
        [Key::User(user.to_owned()), Key::Addr(addr)]
    }

    /// The verdict for an attempt by `user` from `addr`, from their recent failures.
    pub fn check(&self, user: &str, addr: IpAddr) -> Verdict {
        let now = Instant::now();
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let mut worst = 0usize;
        let mut locked = false;
        for key in Self::keys(user, addr) {
            if let Some(record) = records.get_mut(&key) {
                record.forget_old(now, self.policy.window);
                worst = worst.max(record.failures.len());
                locked |= record.locked_until.is_some();
            }
        }
        let delay = if worst == 0 {
            Duration::ZERO
        } else {
            let factor = 1u32 << (worst - 1).min(16);
            self.policy
                .base_delay
                .saturating_mul(factor)
                .min(self.policy.max_delay)
        };
        Verdict { delay, locked }
    }

    /// Counts a failure; returns which keys it locked out (for the log).
    pub fn record_failure(&self, user: &str, addr: IpAddr) -> Vec<String> {
        let now = Instant::now();
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        // Bound the table: forget quiet entries when it grows large.
        if records.len() > 100_000 {
            let window = self.policy.window;
            records.retain(|_, r| {
                r.forget_old(now, window);
                !r.failures.is_empty() || r.locked_until.is_some()
            });
        }
        let mut newly_locked = Vec::new();
        for key in Self::keys(user, addr) {
            let record = records.entry(key.clone()).or_default();
            record.forget_old(now, self.policy.window);
            record.failures.push_back(now);
            if record.locked_until.is_none()
                && record.failures.len() >= self.policy.max_failures as usize
            {
                record.locked_until = Some(now + self.policy.lockout);
                newly_locked.push(match key {
                    Key::User(name) => format!("user {name}"),
                    Key::Addr(ip) => format!("address {ip}"),
                });
            }
        }
        newly_locked
    }

    /// A successful login clears the user's failures (not the address's: a valid account
    /// must not reset the counter of an address that is guessing others' passwords).
    pub fn record_success(&self, user: &str) {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        records.remove(&Key::User(user.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> LockoutPolicy {
        LockoutPolicy {
            max_failures: 3,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(120),
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(250),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn delays_grow_then_lock_out_then_recover() {
        let guard = LoginGuard::new(policy());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            guard.check("alice", ip),
            Verdict {
                delay: Duration::ZERO,
                locked: false
            }
        );
        assert!(guard.record_failure("alice", ip).is_empty());
        assert_eq!(guard.check("alice", ip).delay, Duration::from_millis(100));
        guard.record_failure("alice", ip);
        assert_eq!(guard.check("alice", ip).delay, Duration::from_millis(200));
        let locked = guard.record_failure("alice", ip);
        assert_eq!(locked, ["user alice", "address 192.0.2.1"]);
        let verdict = guard.check("alice", ip);
        assert!(verdict.locked);
        assert_eq!(verdict.delay, Duration::from_millis(250));
        // Locked by address: another user from the same address too.
        assert!(guard.check("bob", ip).locked);
        // Locked by name: the same user from elsewhere too.
        assert!(guard.check("alice", "198.51.100.7".parse().unwrap()).locked);
        tokio::time::advance(Duration::from_secs(121)).await;
        assert_eq!(
            guard.check("alice", ip),
            Verdict {
                delay: Duration::ZERO,
                locked: false
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn success_clears_the_user_but_not_the_address() {
        let guard = LoginGuard::new(policy());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        guard.record_failure("alice", ip);
        guard.record_failure("alice", ip);
        guard.record_success("alice");
        let other: IpAddr = "192.0.2.99".parse().unwrap();
        assert_eq!(guard.check("alice", other).delay, Duration::ZERO);
        assert_eq!(guard.check("alice", ip).delay, Duration::from_millis(200));
        // Failures older than the window stop counting.
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(guard.check("alice", ip).delay, Duration::ZERO);
    }
}
