//! A token bucket: `rate` tokens a second, at most `burst` at once. The time service's
//! per-address limit and the chat's per-connection and per-user limits are all this.

use std::time::Instant;

/// A token bucket: `rate` a second, `burst` at once.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Budget {
    /// A full bucket at `now`.
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Budget {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes a token if there is one (earning what the time since the last call brought).
    pub fn take(&mut self, now: Instant) -> bool {
        if self.rate.is_infinite() {
            return true;
        }
        let earned = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + earned).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Budget {
    /// Whether it would be full at `now`: forgetting it then changes nothing.
    pub fn is_full(&self, now: Instant) -> bool {
        let earned = now.saturating_duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens + earned >= self.burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_budget_allows_a_burst_then_the_rate() {
        let now = Instant::now();
        let mut budget = Budget::new(10.0, 3.0, now);
        assert!((0..3).all(|_| budget.take(now)));
        assert!(!budget.take(now));
        assert!(budget.take(now + Duration::from_millis(100)));
        assert!(!budget.take(now + Duration::from_millis(100)));
    }
}
