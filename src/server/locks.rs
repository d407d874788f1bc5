//! One upload at a time per user and target: a second upload of the same file waits for
//! the first to end, so a resume never reads partial data that is still being written.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::paths::RemotePath;
use crate::username::Username;

type TargetKey = (Username, String);

/// The targets being uploaded to.
#[derive(Debug, Default)]
pub(crate) struct TargetLocks {
    locks: Mutex<HashMap<TargetKey, Weak<AsyncMutex<()>>>>,
}

impl TargetLocks {
    /// Waits until no other upload of `user` writes `target`, and holds it until the guard
    /// is dropped.
    pub(crate) async fn lock(&self, user: &Username, target: &RemotePath) -> OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self
                .locks
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            locks.retain(|_, weak| weak.strong_count() > 0);
            let key = (user.clone(), target.to_string());
            match locks.get(&key).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(AsyncMutex::new(()));
                    locks.insert(key, Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_lock_waits_for_the_first() {
        let locks = Arc::new(TargetLocks::default());
        let alice = Username::parse("alice").unwrap();
        let target = RemotePath::parse("a/b").unwrap();
        let first = locks.lock(&alice, &target).await;
        let (l, u, t) = (Arc::clone(&locks), alice.clone(), target.clone());
        let mut second = tokio::spawn(async move { l.lock(&u, &t).await });
        tokio::task::yield_now().await;
        assert!(futures_util::poll!(&mut second).is_pending());
        // Another target, or another user, is not blocked.
        let _other = locks.lock(&alice, &RemotePath::parse("a/c").unwrap()).await;
        let _bob = locks.lock(&Username::parse("bob").unwrap(), &target).await;
        drop(first);
        second.await.unwrap();
    }
}
