//! A time limit on each of many waits, one after another, that keeps one timer instead of
//! arming a new one for each.
//!
//! `tokio::time::timeout` registers a fresh timer per call, and registering a timer earlier
//! than any other wakes the runtime's driver through its eventfd: a `write` and an extra
//! `epoll_wait` for every request a client sends (`strace` of `ftpc shell -b` showed both
//! for each command). Here the timer stays armed between waits. Each wait only moves the
//! limit later, which needs no re-arming: a timer that fires before the current limit is
//! set to it and waited on again, once per timeout period at most.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::Poll;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// How far off a limit too large to add to an `Instant` is put: as good as never.
const NO_LIMIT: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Deadline {
    /// Armed at or before the limit of the wait in progress; `None` until the first wait.
    timer: Option<Pin<Box<Sleep>>>,
}

/// The wait took longer than its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl Deadline {
    /// Not armed yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `work` to its end, or gives up `within` from now.
    ///
    /// # Errors
    /// [`Elapsed`] when the limit passed first; `work` is dropped then.
    pub async fn within<F: Future>(
        &mut self,
        within: Duration,
        work: F,
    ) -> Result<F::Output, Elapsed> {
        // A limit past what an `Instant` can hold (`Duration::MAX`) is no limit.
        let now = Instant::now();
        let limit = now.checked_add(within).unwrap_or_else(|| now + NO_LIMIT);
        let timer = match &mut self.timer {
            Some(timer) => {
                // Armed later than this wait may last (a shorter limit than before): the
                // one case that has to re-arm now.
                if timer.deadline() > limit {
                    timer.as_mut().reset(limit);
                }
                timer
            }
            None => self.timer.insert(Box::pin(tokio::time::sleep_until(limit))),
        };
        let mut work = pin!(work);
        poll_fn(|cx| {
            if let Poll::Ready(output) = work.as_mut().poll(cx) {
                return Poll::Ready(Ok(output));
            }
            loop {
                match timer.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) if Instant::now() >= limit => return Poll::Ready(Err(Elapsed)),
                    // Armed for an earlier wait: wait out the rest of this one.
                    Poll::Ready(()) => timer.as_mut().reset(limit),
                }
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn work_that_ends_in_time_is_returned() {
        let mut deadline = Deadline::new();
        let out = deadline
            .within(Duration::from_secs(5), async {
                tokio::time::sleep(Duration::from_secs(4)).await;
                7
            })
            .await;
        assert_eq!(out, Ok(7));
    }

    #[tokio::test(start_paused = true)]
    async fn work_past_the_limit_elapses_at_the_limit() {
        let mut deadline = Deadline::new();
        let start = Instant::now();
        let out = deadline
            .within(Duration::from_secs(5), std::future::pending::<()>())
            .await;
        assert_eq!(out, Err(Elapsed));
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    /// The timer armed by the first wait fires in the middle of the second: the second
    /// still gets its whole limit, not what was left of the first's.
    #[tokio::test(start_paused = true)]
    async fn a_later_wait_gets_its_whole_limit() {
        let mut deadline = Deadline::new();
        let limit = Duration::from_secs(10);
        deadline.within(limit, async {}).await.unwrap();
        tokio::time::sleep(Duration::from_secs(6)).await;
        let start = Instant::now();
        let out = deadline
            .within(limit, tokio::time::sleep(Duration::from_secs(9)))
            .await;
        assert_eq!(out, Ok(()), "the first wait's timer cut the second short");
        let out = deadline.within(limit, std::future::pending::<()>()).await;
        assert_eq!(out, Err(Elapsed));
        assert_eq!(start.elapsed(), Duration::from_secs(19));
    }

    /// A limit too large for an `Instant` means waiting, not a panic.
    #[tokio::test(start_paused = true)]
    async fn an_endless_limit_waits() {
        let mut deadline = Deadline::new();
        let out = deadline
            .within(Duration::MAX, tokio::time::sleep(Duration::from_secs(3600)))
            .await;
        assert_eq!(out, Ok(()));
    }

    /// A shorter limit than the armed one is kept, not the longer one.
    #[tokio::test(start_paused = true)]
    async fn a_shorter_limit_re_arms() {
        let mut deadline = Deadline::new();
        deadline
            .within(Duration::from_secs(60), async {})
            .await
            .unwrap();
        let start = Instant::now();
        let out = deadline
            .within(Duration::from_secs(1), std::future::pending::<()>())
            .await;
        assert_eq!(out, Err(Elapsed));
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }
}
