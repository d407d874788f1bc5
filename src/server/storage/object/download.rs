//! A download: ranged GETs of one version of the object (its ETag), a range at a time, so
//! a failed request is retried for its range alone and an object replaced meanwhile is
//! noticed, not spliced. The checksum covers the whole object, so a resumed download reads
//! (and hashes) the part before its offset too, as on disk.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore};

use super::{keys, unavailable};
use crate::checksum::{Checksum, Digest};
use crate::commands::{Attributes, ErrorCode, MAX_CHUNK};
use crate::error::StorageError;
use crate::server::storage::Download;

/// Bytes asked for per GET: large enough that a request's own cost is lost in its data,
/// small enough that a retry repeats little.
const RANGE_SIZE: u64 = 16 << 20;

pub struct ObjectDownload {
    store: Arc<AmazonS3>,
    key: Path,
    /// The version being read: every range must come from it.
    e_tag: Option<String>,
    /// The range being read, if one is.
    body: Option<BoxStream<'static, object_store::Result<Bytes>>>,
    /// Where the next range starts.
    next: u64,
    /// The GET of the next range, asked for ahead.
    ahead: Option<tokio::task::JoinHandle<Result<object_store::GetResult, StorageError>>>,
    /// Part of a chunk from the store not handed out yet.
    left: Bytes,
    /// Bytes before the requested offset still to be skipped (hashed, not sent).
    skip: u64,
    size: u64,
    seen: u64,
    checksum: Checksum,
    digest: Option<Digest>,
    attributes: Attributes,
}

impl ObjectDownload {
    pub async fn open(
        store: &Arc<AmazonS3>,
        key: &Path,
        offset: u64,
    ) -> Result<Self, StorageError> {
        let head = super::head(store, key).await.map_err(unavailable)?;
        let size = head.meta.size;
        if offset > size {
            return Err(StorageError::new(
                ErrorCode::InvalidPath,
                format!("cannot resume at byte {offset}: the file has only {size}"),
            ));
        }
        let attributes = keys::stored_attributes(&head.attributes).unwrap_or(Attributes {
            modified: head.meta.last_modified.timestamp(),
            mode: 0o644,
        });
        Ok(ObjectDownload {
            store: Arc::clone(store),
            key: key.clone(),
            e_tag: head.meta.e_tag,
            body: None,
            next: 0,
            ahead: None,
            left: Bytes::new(),
            skip: offset,
            size,
            seen: 0,
            checksum: Checksum::new(),
            digest: if size == 0 {
                Some(Checksum::new().digest())
            } else {
                None
            },
            attributes,
        })
    }

    /// The GET of the range `start..end`.
    fn request(
        &self,
        start: u64,
        end: u64,
    ) -> tokio::task::JoinHandle<Result<object_store::GetResult, StorageError>> {
        let (store, key, e_tag) = (
            Arc::clone(&self.store),
            self.key.clone(),
            self.e_tag.clone(),
        );
        tokio::spawn(async move {
            store
                .get_opts(
                    &key,
                    GetOptions {
                        range: Some(GetRange::Bounded(start..end)),
                        if_match: e_tag,
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| match e {
                    object_store::Error::Precondition { .. } => StorageError::new(
                        ErrorCode::Busy,
                        "the file was replaced during the download; try again",
                    ),
                    other => unavailable(other),
                })
        })
    }

    /// Starts reading the next range (asked for ahead, while the one before was read), and
    /// asks for the one after it.
    async fn next_range(&mut self) -> Result<(), StorageError> {
        let end = self.next.saturating_add(RANGE_SIZE).min(self.size);
        let asked = match self.ahead.take() {
            Some(asked) => asked,
            None => self.request(self.next, end),
        };
        let found = asked.await.map_err(|e| {
            StorageError::new(ErrorCode::Internal, format!("download task failed: {e}"))
        })??;
        self.next = end;
        if self.next < self.size {
            let after = self.next.saturating_add(RANGE_SIZE).min(self.size);
            self.ahead = Some(self.request(self.next, after));
        }
        self.body = Some(found.into_stream());
        Ok(())
    }

    fn short() -> StorageError {
        StorageError::new(
            ErrorCode::Internal,
            "the stored file ended early or ran long; try again",
        )
    }
}

impl Drop for ObjectDownload {
    fn drop(&mut self) {
        if let Some(ahead) = self.ahead.take() {
            ahead.abort();
        }
    }
}

#[async_trait]
impl Download for ObjectDownload {
    fn size(&self) -> u64 {
        self.size
    }

    async fn next_chunk(&mut self) -> Result<Option<Bytes>, StorageError> {
        loop {
            if !self.left.is_empty() {
                let take = self.left.len().min(MAX_CHUNK);
                return Ok(Some(self.left.split_to(take)));
            }
            if self.body.is_none() {
                if self.next >= self.size {
                    if self.seen != self.size {
                        return Err(Self::short());
                    }
                    self.digest = Some(self.checksum.digest());
                    return Ok(None);
                }
                self.next_range().await?;
            }
            let Some(body) = &mut self.body else {
                continue;
            };
            match body.next().await {
                Some(Ok(mut chunk)) => {
                    self.seen = self.seen.saturating_add(chunk.len() as u64);
                    if self.seen > self.next {
                        return Err(Self::short());
                    }
                    self.checksum.update(&chunk);
                    if self.skip > 0 {
                        let skipped = self.skip.min(chunk.len() as u64);
                        // At most the chunk's length: the cast cannot truncate.
                        let _ = chunk.split_to(skipped as usize);
                        self.skip -= skipped;
                    }
                    self.left = chunk;
                }
                Some(Err(e)) => return Err(unavailable(e)),
                None => {
                    self.body = None;
                    if self.seen != self.next {
                        return Err(Self::short());
                    }
                }
            }
        }
    }

    fn checksum(&self) -> Digest {
        self.digest.unwrap_or_default()
    }

    fn attributes(&self) -> Option<Attributes> {
        Some(self.attributes)
    }
}
