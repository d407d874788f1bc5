//! Tree transfers over several connections (`-j N`). A connection's helpers are more
//! connections with the same login; the files of a `put -r`, `get -r` or `sync` are put in
//! one list, and the connection and each helper take the next file (or batch of files) from
//! it until none are left. The server then reads, checks and syncs files of different
//! connections at once, on all its cores, where one connection's requests are answered in
//! order.
//!
//! A helper whose connection was lost (its server timed it out, a failure left it out of
//! step) is dropped, so a later transfer runs on fewer connections rather than fail.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::io::{AsyncRead, AsyncWrite};

use super::Client;
use crate::error::Result;

/// The most connections one transfer uses (`-j`); a user's sessions are limited on the
/// server too (32 by default).
pub const MAX_JOBS: usize = 16;

/// The connections a tree transfer uses unless told otherwise: on a two-core machine eight
/// measured fastest for 10,000 small files (BENCHMARKS.md, "Many small files").
pub const DEFAULT_JOBS: usize = 8;

/// Work the connections of a transfer share: each takes the next item until none are
/// left, or until one of them failed.
pub(super) struct SharedWork<'a, T> {
    items: &'a [T],
    next: AtomicUsize,
    stopped: AtomicBool,
}

impl<'a, T> SharedWork<'a, T> {
    fn new(items: &'a [T]) -> Self {
        SharedWork {
            items,
            next: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
        }
    }

    /// The next item no connection took yet; `None` once all are taken or after [`stop`].
    ///
    /// [`stop`]: SharedWork::stop
    pub(super) fn take(&self) -> Option<&'a T> {
        if self.stopped.load(Ordering::Relaxed) {
            return None;
        }
        self.items.get(self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// A connection failed: the others take nothing more (what they have in flight they
    /// still finish, so each stays in step).
    pub(super) fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// Gives this connection helpers: more connections logged in as the same user, which
    /// tree transfers (`put_tree`, `get_tree`, `sync_up`, `sync_down`) share their files
    /// with.
    pub fn add_helpers(&mut self, helpers: impl IntoIterator<Item = Client<S>>) {
        let limit = self.bandwidth.clone();
        self.helpers.extend(helpers.into_iter().map(|mut helper| {
            helper.bandwidth = limit.clone();
            helper
        }));
    }

    /// Limits the data of transfers on this connection and its helpers, together, to
    /// `limit` (`None`: no limit).
    pub fn set_bandwidth(&mut self, limit: Option<std::sync::Arc<super::bandwidth::Bandwidth>>) {
        for helper in &mut self.helpers {
            helper.bandwidth = limit.clone();
        }
        self.bandwidth = limit;
    }

    /// Waits until `bytes` of data may move under the bandwidth limit, if there is one.
    pub(super) async fn pace(&self, bytes: usize) {
        if let Some(limit) = &self.bandwidth {
            limit.take(bytes as u64).await;
        }
    }

    /// Drops helpers whose connection was lost, and any past `keep`; how many are left.
    pub async fn keep_helpers(&mut self, keep: usize) -> usize {
        self.helpers.truncate(keep);
        let mut ready = Vec::with_capacity(self.helpers.len());
        for mut helper in std::mem::take(&mut self.helpers) {
            if helper.is_ready().await {
                ready.push(helper);
            }
        }
        self.helpers = ready;
        self.helpers.len()
    }

    /// Runs `work` on this connection and on each helper at once, all taking `items` from
    /// one [`SharedWork`] list; the sum of what they return. A connection whose work fails
    /// stops the others taking more.
    ///
    /// # Errors
    /// The first failure, in connection order, once every connection's work has ended.
    pub(super) async fn spread<T: Sync, W>(&mut self, items: &[T], work: W) -> Result<u64>
    where
        W: AsyncFn(&mut Client<S>, &SharedWork<'_, T>) -> Result<u64>,
    {
        let shared = SharedWork::new(items);
        let mut helpers = std::mem::take(&mut self.helpers);
        let each = std::iter::once(&mut *self)
            .chain(helpers.iter_mut())
            .map(|client| async {
                let done = work(client, &shared).await;
                if done.is_err() {
                    shared.stop();
                }
                done
            });
        let results = futures_util::future::join_all(each).await;
        helpers.retain(|helper| helper.in_step);
        self.helpers = helpers;
        let mut total = 0;
        let mut first_failure = None;
        for result in results {
            match result {
                Ok(n) => total += n,
                Err(err) => {
                    first_failure.get_or_insert(err);
                }
            }
        }
        match first_failure {
            Some(err) => Err(err),
            None => Ok(total),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_item_is_taken_once_until_stopped() {
        let items = [1, 2, 3, 4];
        let shared = SharedWork::new(&items);
        assert_eq!(shared.take(), Some(&1));
        assert_eq!(shared.take(), Some(&2));
        shared.stop();
        assert_eq!(shared.take(), None, "nothing after a failure");

        let shared = SharedWork::new(&items);
        let taken: Vec<_> = std::iter::from_fn(|| shared.take()).collect();
        assert_eq!(taken, [&1, &2, &3, &4]);
        assert_eq!(shared.take(), None);
    }
}
