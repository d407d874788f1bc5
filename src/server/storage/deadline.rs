//! Deadlines on a tree whose engine answers over the network: a store that accepts
//! connections and never answers (stopped, overloaded) is told to the client as
//! unavailable within [`METADATA_DEADLINE`], instead of holding it until its own timeout.
//!
//! Only what can be abandoned half way without harm gets a whole deadline here: reads
//! (each page of a listing and each chunk of a download too), and changes of a single key
//! (a marker, one file's removal), which are whole or not at all. A tree-wide `rename` or
//! `rm -r` and an upload's data are bounded by each request's own timeout instead (the
//! engine's), so they never stop half done; so is a `checksum`, which may read a whole
//! file of any size.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{Announced, Download, Listing, StorageError, Upload, Usage, UserTree};
use crate::checksum::Digest;
use crate::commands::{Entry, ErrorCode};
use crate::paths::RemotePath;

/// The longest an operation on names and metadata may take, retries included.
pub const METADATA_DEADLINE: Duration = Duration::from_secs(10);

/// `tree` with [`METADATA_DEADLINE`] on every operation that can be abandoned.
pub struct Deadlines {
    tree: Arc<dyn UserTree>,
    limit: Duration,
}

impl Deadlines {
    /// `tree`, each of its reads and single-key changes bounded by `limit`.
    pub fn new(tree: Arc<dyn UserTree>, limit: Duration) -> Self {
        Deadlines { tree, limit }
    }
}

/// `work`, or the store's unavailability once `limit` has passed.
async fn within<T>(
    limit: Duration,
    what: &'static str,
    work: impl Future<Output = Result<T, StorageError>>,
) -> Result<T, StorageError> {
    match tokio::time::timeout(limit, work).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(
                operation = what,
                seconds = limit.as_secs_f64(),
                "the file store did not answer in time"
            );
            Err(StorageError::new(
                ErrorCode::Busy,
                "the file store is unavailable; try again later",
            ))
        }
    }
}

#[async_trait]
impl UserTree for Deadlines {
    async fn mkdir(&self, path: &RemotePath, parents: bool) -> Result<(), StorageError> {
        within(self.limit, "mkdir", self.tree.mkdir(path, parents)).await
    }

    async fn list(&self, path: &RemotePath) -> Result<Box<dyn Listing>, StorageError> {
        let listing = within(self.limit, "list", self.tree.list(path)).await?;
        Ok(Box::new(PagesWithin {
            listing,
            limit: self.limit,
        }))
    }

    async fn list_tree(&self, path: &RemotePath) -> Result<Box<dyn Listing>, StorageError> {
        let listing = within(self.limit, "list a tree", self.tree.list_tree(path)).await?;
        Ok(Box::new(PagesWithin {
            listing,
            limit: self.limit,
        }))
    }

    async fn stat(&self, path: &RemotePath) -> Result<Entry, StorageError> {
        within(self.limit, "stat", self.tree.stat(path)).await
    }

    async fn stat_target(&self, path: &RemotePath) -> Result<Entry, StorageError> {
        within(self.limit, "stat", self.tree.stat_target(path)).await
    }

    async fn kept_partial(&self, path: &RemotePath) -> Result<Option<u64>, StorageError> {
        within(self.limit, "stat", self.tree.kept_partial(path)).await
    }

    async fn remove(&self, path: &RemotePath, recursive: bool) -> Result<(), StorageError> {
        if recursive {
            // Never stopped half way: each of its requests has its own timeout.
            return self.tree.remove(path, true).await;
        }
        within(self.limit, "remove", self.tree.remove(path, false)).await
    }

    async fn rmdir(&self, path: &RemotePath) -> Result<(), StorageError> {
        within(self.limit, "rmdir", self.tree.rmdir(path)).await
    }

    async fn rename(
        &self,
        from: &RemotePath,
        to: &RemotePath,
        overwrite: bool,
    ) -> Result<(), StorageError> {
        // A copy and a delete, or a whole tree of them: never stopped half way.
        self.tree.rename(from, to, overwrite).await
    }

    async fn usage(&self) -> Result<Usage, StorageError> {
        within(self.limit, "usage", self.tree.usage()).await
    }

    async fn begin_upload(
        &self,
        path: &RemotePath,
        size: Announced,
        overwrite: bool,
        resume: bool,
    ) -> Result<Box<dyn Upload>, StorageError> {
        let begin = self.tree.begin_upload(path, size, overwrite, resume);
        within(self.limit, "begin an upload", begin).await
    }

    async fn checksum(&self, path: &RemotePath) -> Result<(u64, Digest), StorageError> {
        // It may read a whole file: each of its requests has the engine's own timeout.
        self.tree.checksum(path).await
    }

    async fn open_download(
        &self,
        path: &RemotePath,
        offset: u64,
    ) -> Result<Box<dyn Download>, StorageError> {
        let open = self.tree.open_download(path, offset);
        let download = within(self.limit, "open a download", open).await?;
        Ok(Box::new(ChunksWithin {
            download,
            limit: self.limit,
        }))
    }
}

/// A listing whose every page comes within the limit.
struct PagesWithin {
    listing: Box<dyn Listing>,
    limit: Duration,
}

#[async_trait]
impl Listing for PagesWithin {
    async fn next_page(&mut self) -> Result<Option<Vec<Entry>>, StorageError> {
        within(self.limit, "list", self.listing.next_page()).await
    }
}

/// A download whose every chunk comes within the limit (reading is abandoned whole).
struct ChunksWithin {
    download: Box<dyn Download>,
    limit: Duration,
}

#[async_trait]
impl Download for ChunksWithin {
    fn size(&self) -> u64 {
        self.download.size()
    }

    async fn next_chunk(&mut self) -> Result<Option<Bytes>, StorageError> {
        within(self.limit, "download", self.download.next_chunk()).await
    }

    fn checksum(&self) -> Digest {
        self.download.checksum()
    }

    fn attributes(&self) -> Option<crate::commands::Attributes> {
        self.download.attributes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree whose every operation waits forever, as a stopped store does.
    struct Frozen;

    #[async_trait]
    impl UserTree for Frozen {
        async fn mkdir(&self, _: &RemotePath, _: bool) -> Result<(), StorageError> {
            std::future::pending().await
        }
        async fn list(&self, _: &RemotePath) -> Result<Box<dyn Listing>, StorageError> {
            std::future::pending().await
        }
        async fn list_tree(&self, _: &RemotePath) -> Result<Box<dyn Listing>, StorageError> {
            std::future::pending().await
        }
        async fn stat(&self, _: &RemotePath) -> Result<Entry, StorageError> {
            std::future::pending().await
        }
        async fn kept_partial(&self, _: &RemotePath) -> Result<Option<u64>, StorageError> {
            std::future::pending().await
        }
        async fn remove(&self, _: &RemotePath, _: bool) -> Result<(), StorageError> {
            std::future::pending().await
        }
        async fn rmdir(&self, _: &RemotePath) -> Result<(), StorageError> {
            std::future::pending().await
        }
        async fn rename(
            &self,
            _: &RemotePath,
            _: &RemotePath,
            _: bool,
        ) -> Result<(), StorageError> {
            std::future::pending().await
        }
        async fn usage(&self) -> Result<Usage, StorageError> {
            std::future::pending().await
        }
        async fn begin_upload(
            &self,
            _: &RemotePath,
            _: Announced,
            _: bool,
            _: bool,
        ) -> Result<Box<dyn Upload>, StorageError> {
            std::future::pending().await
        }
        async fn checksum(&self, _: &RemotePath) -> Result<(u64, Digest), StorageError> {
            std::future::pending().await
        }
        async fn open_download(
            &self,
            _: &RemotePath,
            _: u64,
        ) -> Result<Box<dyn Download>, StorageError> {
            std::future::pending().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_frozen_engine_is_unavailable_within_the_deadline() {
        let tree = Deadlines::new(Arc::new(Frozen), METADATA_DEADLINE);
        let path = RemotePath::parse("a").unwrap();
        let started = tokio::time::Instant::now();
        let busy = |err: StorageError| {
            assert_eq!(err.code, ErrorCode::Busy);
            assert!(err.message.contains("file store is unavailable"), "{err}");
        };
        busy(tree.stat(&path).await.unwrap_err());
        busy(tree.list(&path).await.err().unwrap());
        busy(tree.usage().await.unwrap_err());
        busy(tree.kept_partial(&path).await.unwrap_err());
        busy(tree.mkdir(&path, true).await.unwrap_err());
        busy(
            tree.begin_upload(&path, 1.into(), false, false)
                .await
                .err()
                .unwrap(),
        );
        busy(tree.open_download(&path, 0).await.err().unwrap());
        assert_eq!(started.elapsed(), METADATA_DEADLINE * 7);
    }
}
