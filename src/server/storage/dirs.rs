//! Upkeep of a home's directories that many uploads into one directory share: the sync
//! that makes their renames durable, taken together (one `fsync` of the directory covers
//! every rename made before it began), and the sweep of stale partial files, at most once in
//! a while per directory (it reads the whole directory).

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cap_std::fs::Dir;

/// A directory, by device and inode: the same whichever path or handle reaches it.
pub(super) type DirId = (u64, u64);

/// How often a directory's stale partial files are looked for, at most.
const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// Directories remembered at most; past that, those no upload holds are forgotten.
const REMEMBERED: usize = 4096;

/// The directories of one home that uploads are using or have used.
#[derive(Debug, Default)]
pub(super) struct Directories {
    known: Mutex<HashMap<DirId, Arc<DirState>>>,
}

#[derive(Debug, Default)]
struct DirState {
    /// When stale partial files were last looked for.
    swept: Mutex<Option<Instant>>,
    /// Held by the one sync of this directory running.
    syncing: tokio::sync::Mutex<()>,
    /// Renames that asked for a sync, counted...
    asked: AtomicU64,
    /// ...and how many of them a finished sync covers.
    synced: AtomicU64,
    /// Syncs run.
    runs: AtomicU64,
}

/// The identity of `dir`.
///
/// # Errors
/// Its metadata cannot be read.
pub(super) fn id_of(dir: &Dir) -> io::Result<DirId> {
    use cap_std::fs::MetadataExt;
    let meta = dir.dir_metadata()?;
    Ok((meta.dev(), meta.ino()))
}

impl Directories {
    fn state(&self, id: DirId) -> Arc<DirState> {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= REMEMBERED && !known.contains_key(&id) {
            known.retain(|_, state| Arc::strong_count(state) > 1);
        }
        Arc::clone(known.entry(id).or_default())
    }

    /// Whether stale partial files in `id` are due to be looked for (true at most once per
    /// [`SWEEP_EVERY`]; the caller then does it).
    pub(super) fn sweep_due(&self, id: DirId) -> bool {
        let state = self.state(id);
        let mut swept = state.swept.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if swept.is_some_and(|at| now.duration_since(at) < SWEEP_EVERY) {
            return false;
        }
        *swept = Some(now);
        true
    }

    /// Makes durable what was renamed in `dir` (identity `id`) before this call: one sync
    /// of the directory at a time, each covering every rename asked about before it began,
    /// so uploads finishing together into one directory share their syncs.
    ///
    /// # Errors
    /// The sync failed (also when it was one started for others).
    pub(super) async fn sync(&self, id: DirId, dir: Arc<Dir>) -> io::Result<()> {
        let state = self.state(id);
        let ticket = state.asked.fetch_add(1, Ordering::SeqCst) + 1;
        let _turn = state.syncing.lock().await;
        if state.synced.load(Ordering::SeqCst) >= ticket {
            return Ok(());
        }
        // Every rename counted so far happened before this sync starts.
        let covers = state.asked.load(Ordering::SeqCst);
        tokio::task::spawn_blocking(move || dir.open(".")?.sync_all())
            .await
            .map_err(io::Error::other)??;
        state.synced.fetch_max(covers, Ordering::SeqCst);
        state.runs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn syncs_asked_for_together_share_a_few_and_a_sweep_waits_its_turn() {
        let tmp = tempfile::tempdir().unwrap();
        let dir =
            Arc::new(Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority()).unwrap());
        let id = id_of(&dir).unwrap();
        let dirs = Arc::new(Directories::default());
        let calls: Vec<_> = (0..50)
            .map(|_| {
                let (dirs, dir) = (Arc::clone(&dirs), Arc::clone(&dir));
                tokio::spawn(async move { dirs.sync(id, dir).await })
            })
            .collect();
        for call in calls {
            call.await.unwrap().unwrap();
        }
        let state = dirs.state(id);
        assert_eq!(state.asked.load(Ordering::SeqCst), 50);
        assert_eq!(
            state.synced.load(Ordering::SeqCst),
            50,
            "every rename covered"
        );
        let runs = state.runs.load(Ordering::Relaxed);
        assert!((1..10).contains(&runs), "{runs} syncs for 50 renames");
        // Another directory has its own count.
        std::fs::create_dir(tmp.path().join("sub")).unwrap();
        let sub = Arc::new(dir.open_dir("sub").unwrap());
        let sub_id = id_of(&sub).unwrap();
        assert_ne!(sub_id, id);
        dirs.sync(sub_id, sub).await.unwrap();
        assert_eq!(dirs.state(sub_id).synced.load(Ordering::SeqCst), 1);
        assert!(dirs.sweep_due(id));
        assert!(!dirs.sweep_due(id), "not again so soon");
        assert!(dirs.sweep_due(sub_id));
    }
}
