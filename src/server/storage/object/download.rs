//! A download: one GET of the whole object, streamed. The checksum covers the whole
//! object, so a resumed download reads (and hashes) the part before its offset too, as on
//! disk; one GET also means one version of the object, whatever replaces it meanwhile.

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::{GetOptions, ObjectStore};

use super::{keys, unavailable};
use crate::checksum::{Checksum, Digest};
use crate::commands::{Attributes, ErrorCode, MAX_CHUNK};
use crate::error::StorageError;
use crate::server::storage::Download;

pub struct ObjectDownload {
    body: Option<BoxStream<'static, object_store::Result<Bytes>>>,
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
    pub async fn open(store: &AmazonS3, key: &Path, offset: u64) -> Result<Self, StorageError> {
        let found = store
            .get_opts(key, GetOptions::default())
            .await
            .map_err(unavailable)?;
        let size = found.meta.size;
        if offset > size {
            return Err(StorageError::new(
                ErrorCode::InvalidPath,
                format!("cannot resume at byte {offset}: the file has only {size}"),
            ));
        }
        let attributes = keys::stored_attributes(&found.attributes).unwrap_or(Attributes {
            modified: found.meta.last_modified.timestamp(),
            mode: 0o644,
        });
        Ok(ObjectDownload {
            body: Some(found.into_stream()),
            left: Bytes::new(),
            skip: offset,
            size,
            seen: 0,
            checksum: Checksum::new(),
            digest: None,
            attributes,
        })
    }

    fn short() -> StorageError {
        StorageError::new(
            ErrorCode::Internal,
            "the stored file ended early or ran long; try again",
        )
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
            let Some(body) = &mut self.body else {
                return Ok(None);
            };
            match body.next().await {
                Some(Ok(mut chunk)) => {
                    self.seen = self.seen.saturating_add(chunk.len() as u64);
                    if self.seen > self.size {
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
                    if self.seen != self.size {
                        return Err(Self::short());
                    }
                    self.digest = Some(self.checksum.digest());
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
