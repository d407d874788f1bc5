//! `--bwlimit`: a token bucket every connection of a transfer draws from, so the limit is
//! on the whole transfer (as rsync's and rclone's), however many connections `-j` opens.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The slowest limit taken: a lower one would stall a chunk for minutes.
pub const MIN_RATE: u64 = 1024;

/// Bytes per second shared by the connections of one transfer.
#[derive(Debug)]
pub struct Bandwidth {
    rate: u64,
    /// Tokens (bytes) may build up to this while idle: one chunk, so a pause is not
    /// followed by a burst of more than that.
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bandwidth {
    /// A limit of `rate` bytes a second (at least [`MIN_RATE`]), with bursts of up to
    /// `burst` bytes.
    pub fn new(rate: u64, burst: u64) -> Self {
        let rate = rate.max(MIN_RATE);
        Bandwidth {
            rate,
            burst: burst as f64,
            state: Mutex::new((burst as f64, Instant::now())),
        }
    }

    /// The limit, in bytes a second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Waits until `bytes` may move: takes them from the bucket (into debt if need be, so
    /// a chunk larger than the bucket still goes) and sleeps off any debt.
    pub async fn take(&self, bytes: u64) {
        let wait = {
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            let now = Instant::now();
            let (tokens, since) = *state;
            let refilled = (tokens + now.duration_since(since).as_secs_f64() * self.rate as f64)
                .min(self.burst);
            let left = refilled - bytes as f64;
            *state = (left, now);
            (left < 0.0).then(|| Duration::from_secs_f64(-left / self.rate as f64))
        };
        if let Some(wait) = wait {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A burst goes at once; beyond it, bytes go at the rate, whoever takes them.
    #[tokio::test(start_paused = true)]
    async fn bytes_beyond_the_burst_go_at_the_rate() {
        let limit = std::sync::Arc::new(Bandwidth::new(2048, 1024));
        let start = Instant::now();
        limit.take(1024).await;
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst is free");
        limit.take(2048).await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        // Two takers share the rate: 4,096 more bytes take 2 s more in all.
        let (a, b) = (std::sync::Arc::clone(&limit), std::sync::Arc::clone(&limit));
        tokio::join!(a.take(2048), b.take(2048));
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        // Idle time refills the bucket only up to the burst.
        tokio::time::advance(Duration::from_secs(60)).await;
        let idle_end = Instant::now();
        limit.take(1024 + 2048).await;
        assert_eq!(idle_end.elapsed(), Duration::from_secs(1));
        assert_eq!(Bandwidth::new(1, 1).rate(), MIN_RATE);
    }
}
