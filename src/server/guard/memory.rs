//! The embedded engine: failed logins counted in this process's memory, in a bounded table.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use tokio::time::Instant;

use super::*;

/// Names and addresses tracked at most; past it, the quietest are forgotten.
pub const MAX_TRACKED: usize = 65_536;

/// Failures remembered per key; the delay stops growing long before.
const MAX_REMEMBERED: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum FailureKey {
    Name(Username),
    Addr(IpAddr),
}

#[derive(Debug, Default)]
struct Failures {
    failures: VecDeque<Instant>,
    locked_until: Option<Instant>,
}

impl Failures {
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

    fn is_quiet(&self) -> bool {
        self.failures.is_empty() && self.locked_until.is_none()
    }

    fn last_failure(&self) -> Option<Instant> {
        self.failures.back().copied()
    }
}

/// Failed-login bookkeeping shared by all sessions.
#[derive(Debug, Default)]
pub struct LoginGuard {
    policy: LockoutPolicy,
    records: Mutex<HashMap<FailureKey, Failures>>,
}

impl LoginGuard {
    /// A guard with this policy.
    pub fn new(policy: LockoutPolicy) -> Self {
        LoginGuard {
            policy,
            records: Mutex::default(),
        }
    }

    /// The keys of an attempt: the address, and the name if it could be one.
    fn keys(user: Option<&Username>, addr: IpAddr) -> Vec<FailureKey> {
        let mut keys = vec![FailureKey::Addr(block(addr))];
        if let Some(user) = user {
            keys.push(FailureKey::Name(user.clone()));
        }
        keys
    }

    /// The verdict for an attempt by `user` (`None` for a name that cannot exist) from
    /// `addr`, from their recent failures.
    pub fn check(&self, user: Option<&Username>, addr: IpAddr) -> Verdict {
        let now = Instant::now();
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let mut worst = 0usize;
        let mut locked = false;
        for key in Self::keys(user, addr) {
            if let Some(record) = records.get_mut(&key) {
                record.forget_old(now, self.policy.window);
                worst = worst.max(record.failures.len());
                locked |= matches!(key, FailureKey::Addr(_)) && record.locked_until.is_some();
            }
        }
        Verdict {
            delay: delay_after(&self.policy, worst),
            locked,
        }
    }

    /// Counts a failure; returns the address it locked out, if it did (for the log).
    pub fn record_failure(&self, user: Option<&Username>, addr: IpAddr) -> Option<IpAddr> {
        let now = Instant::now();
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let mut newly_locked = None;
        for key in Self::keys(user, addr) {
            if !records.contains_key(&key) {
                self.make_room(&mut records, now);
            }
            let record = records.entry(key.clone()).or_default();
            record.forget_old(now, self.policy.window);
            record.failures.push_back(now);
            if record.failures.len() > MAX_REMEMBERED {
                record.failures.pop_front();
            }
            if let FailureKey::Addr(ip) = key
                && record.locked_until.is_none()
                && record.failures.len() >= self.policy.max_failures as usize
            {
                record.locked_until = Some(now + self.policy.lockout);
                newly_locked = Some(ip);
            }
        }
        newly_locked
    }

    /// Frees a place for one more key: first whatever has gone quiet, then, if the table
    /// is still full, the sixteenth of it whose last failures are oldest (in one go, so a
    /// flood of new keys costs one pass per few thousand, not one per key).
    fn make_room(&self, records: &mut HashMap<FailureKey, Failures>, now: Instant) {
        if records.len() < MAX_TRACKED {
            return;
        }
        let window = self.policy.window;
        records.retain(|_, r| {
            r.forget_old(now, window);
            !r.is_quiet()
        });
        if records.len() < MAX_TRACKED {
            return;
        }
        let mut by_age: Vec<(Option<Instant>, FailureKey)> = records
            .iter()
            .map(|(key, r)| (r.last_failure(), key.clone()))
            .collect();
        let evict = MAX_TRACKED / 16;
        by_age.select_nth_unstable_by_key(evict, |(last, _)| *last);
        for (_, key) in &by_age[..evict] {
            records.remove(key);
        }
    }

    /// Names and addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.records.lock().map(|r| r.len()).unwrap_or(0)
    }
}

#[async_trait::async_trait]
impl FailedLogins for LoginGuard {
    async fn check(
        &self,
        user: Option<&Username>,
        addr: IpAddr,
    ) -> Result<Verdict, crate::error::DatabaseError> {
        Ok(LoginGuard::check(self, user, addr))
    }

    async fn record_failure(
        &self,
        user: Option<&Username>,
        addr: IpAddr,
    ) -> Result<Option<IpAddr>, crate::error::DatabaseError> {
        Ok(LoginGuard::record_failure(self, user, addr))
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

    fn name(raw: &str) -> Username {
        Username::parse(raw).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn delays_grow_then_the_address_is_locked_then_recovers() {
        let guard = LoginGuard::new(policy());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let alice = name("alice");
        assert_eq!(
            guard.check(Some(&alice), ip),
            Verdict {
                delay: Duration::ZERO,
                locked: false
            }
        );
        assert_eq!(guard.record_failure(Some(&alice), ip), None);
        assert_eq!(
            guard.check(Some(&alice), ip).delay,
            Duration::from_millis(100)
        );
        guard.record_failure(Some(&alice), ip);
        assert_eq!(
            guard.check(Some(&alice), ip).delay,
            Duration::from_millis(200)
        );
        assert_eq!(guard.record_failure(Some(&alice), ip), Some(ip));
        let verdict = guard.check(Some(&alice), ip);
        assert!(verdict.locked);
        assert_eq!(verdict.delay, Duration::from_millis(250));
        // Locked by address: another user from the same address too.
        assert!(guard.check(Some(&name("bob")), ip).locked);
        tokio::time::advance(Duration::from_secs(121)).await;
        assert_eq!(
            guard.check(Some(&alice), ip),
            Verdict {
                delay: Duration::ZERO,
                locked: false
            }
        );
    }

    /// Issue 11.5: ten wrong proofs for alice from another address locked alice out.
    #[tokio::test(start_paused = true)]
    async fn failures_in_a_name_slow_it_down_but_never_lock_it_out() {
        let guard = LoginGuard::new(policy());
        let attacker: IpAddr = "198.51.100.7".parse().unwrap();
        let alice = name("alice");
        for _ in 0..10 {
            guard.record_failure(Some(&alice), attacker);
        }
        let home: IpAddr = "192.0.2.1".parse().unwrap();
        let verdict = guard.check(Some(&alice), home);
        assert!(
            !verdict.locked,
            "alice from her own address is not locked out"
        );
        assert_eq!(verdict.delay, Duration::from_millis(250), "but slowed down");
        assert!(guard.check(None, attacker).locked);
    }

    /// Issue 11.10: a success cleared the name's failures, so the delay before the
    /// challenge told an active user (0 ms) from an unknown name (250 ms).
    #[tokio::test(start_paused = true)]
    async fn the_delay_does_not_depend_on_whether_a_name_exists() {
        let guard = LoginGuard::new(policy());
        let attacker: IpAddr = "198.51.100.7".parse().unwrap();
        let other: IpAddr = "198.51.100.8".parse().unwrap();
        // One seeded failure each; then the real alice logs in (nothing is cleared).
        guard.record_failure(Some(&name("alice")), attacker);
        guard.record_failure(Some(&name("ghost")), attacker);
        assert_eq!(
            guard.check(Some(&name("alice")), other),
            guard.check(Some(&name("ghost")), other)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn ipv6_addresses_count_per_64() {
        let guard = LoginGuard::new(policy());
        for i in 0..3 {
            let ip: IpAddr = format!("2001:db8::{i}").parse().unwrap();
            guard.record_failure(None, ip);
        }
        assert!(guard.check(None, "2001:db8::ffff".parse().unwrap()).locked);
        assert!(!guard.check(None, "2001:db8:0:1::1".parse().unwrap()).locked);
        let mapped: IpAddr = "::ffff:192.0.2.9".parse().unwrap();
        guard.record_failure(None, mapped);
        assert_eq!(
            guard.check(None, "192.0.2.9".parse().unwrap()).delay,
            Duration::from_millis(100)
        );
    }

    /// A failure counts for exactly the window: at its end still, a moment later no more.
    #[tokio::test(start_paused = true)]
    async fn a_failure_counts_for_the_whole_window_and_no_longer() {
        let guard = LoginGuard::new(policy());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        guard.record_failure(None, ip);
        tokio::time::advance(policy().window).await;
        assert_eq!(guard.check(None, ip).delay, policy().base_delay);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(guard.check(None, ip).delay, Duration::ZERO);
    }

    /// A lockout is reported once, when it begins; failing on while locked neither
    /// reports it again nor makes it last longer.
    #[tokio::test(start_paused = true)]
    async fn a_lockout_is_reported_once_and_not_extended() {
        let guard = LoginGuard::new(policy());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let reported: Vec<_> = (0..6).map(|_| guard.record_failure(None, ip)).collect();
        assert_eq!(reported, [None, None, Some(ip), None, None, None]);
        tokio::time::advance(Duration::from_secs(100)).await;
        guard.record_failure(None, ip);
        // 120 s after it began, the lockout is over, though failures went on meanwhile.
        tokio::time::advance(Duration::from_secs(21)).await;
        assert!(!guard.check(None, ip).locked);
    }

    /// All the failures a policy counts are remembered: a threshold of 32 (the most kept)
    /// still locks out.
    #[tokio::test(start_paused = true)]
    async fn the_most_failures_remembered_still_lock_out() {
        let guard = LoginGuard::new(LockoutPolicy {
            max_failures: MAX_REMEMBERED as u32,
            ..policy()
        });
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 1..MAX_REMEMBERED {
            assert_eq!(guard.record_failure(None, ip), None);
        }
        assert_eq!(guard.record_failure(None, ip), Some(ip));
    }

    /// Fills the table with one failure of each address `0..MAX_TRACKED`, 10 µs apart.
    async fn fill(guard: &LoginGuard) {
        for i in 0..MAX_TRACKED as u32 {
            tokio::time::advance(Duration::from_micros(10)).await;
            guard.record_failure(None, IpAddr::from(i.to_be_bytes()));
        }
        assert_eq!(guard.tracked(), MAX_TRACKED);
    }

    /// A full table makes room for a new key by forgetting what has gone quiet, only
    /// that, and only once it is full.
    #[tokio::test(start_paused = true)]
    async fn a_full_table_forgets_the_quiet_first() {
        let guard = LoginGuard::new(policy());
        fill(&guard).await;
        // The first 100 go quiet; the rest still count.
        // Failure i came at (i + 1) * 10 µs; past the window are those up to the 100th.
        let quiet_until = Duration::from_micros(10) * 100 + Duration::from_micros(1);
        let elapsed = Duration::from_micros(10) * MAX_TRACKED as u32;
        tokio::time::advance(policy().window - elapsed + quiet_until).await;
        assert_eq!(
            guard.tracked(),
            MAX_TRACKED,
            "nothing is forgotten before room is needed"
        );
        let newcomer: IpAddr = "2001:db8::1".parse().unwrap();
        guard.record_failure(None, newcomer);
        assert_eq!(guard.tracked(), MAX_TRACKED - 100 + 1);
        assert!(
            guard
                .check(None, IpAddr::from(0u32.to_be_bytes()))
                .delay
                .is_zero()
        );
        let kept = IpAddr::from(100u32.to_be_bytes());
        assert_eq!(guard.check(None, kept).delay, policy().base_delay);
        assert_eq!(guard.check(None, newcomer).delay, policy().base_delay);
    }

    /// With nothing quiet, a full table forgets the sixteenth whose failures are oldest,
    /// and exactly that.
    #[tokio::test(start_paused = true)]
    async fn a_full_table_of_recent_failures_forgets_the_oldest_sixteenth() {
        let guard = LoginGuard::new(policy());
        fill(&guard).await;
        guard.record_failure(None, "2001:db8::1".parse().unwrap());
        let evicted = MAX_TRACKED / 16;
        assert_eq!(guard.tracked(), MAX_TRACKED - evicted + 1);
        let last_evicted = IpAddr::from((evicted as u32 - 1).to_be_bytes());
        let first_kept = IpAddr::from((evicted as u32).to_be_bytes());
        assert!(guard.check(None, last_evicted).delay.is_zero());
        assert_eq!(guard.check(None, first_kept).delay, policy().base_delay);
    }

    /// Issue 11.3: the table only shrank past 100,000 entries of any size. It now holds at
    /// most MAX_TRACKED keys, each a valid name or an address.
    #[tokio::test(start_paused = true)]
    async fn the_table_is_bounded() {
        let guard = LoginGuard::new(policy());
        for i in 0..(MAX_TRACKED as u32 + 1000) {
            if i % 1000 == 0 {
                tokio::time::advance(Duration::from_millis(1)).await;
            }
            let ip = IpAddr::from(i.to_be_bytes());
            guard.record_failure(None, ip);
        }
        assert!(guard.tracked() <= MAX_TRACKED);
        // The newest are kept, the oldest went.
        let newest = IpAddr::from((MAX_TRACKED as u32 + 999).to_be_bytes());
        assert!(!guard.check(None, newest).delay.is_zero());
        assert!(
            guard
                .check(None, IpAddr::from(0u32.to_be_bytes()))
                .delay
                .is_zero()
        );
    }
}
