//! Uploads into the object store. A file smaller than one part is held in memory and sent
//! in one PUT once its checksum matched; a larger one goes up as a multipart upload, whose
//! object appears only when the upload is completed, after the checksum matched.
//!
//! A multipart upload can be resumed by any node: after each part, its id and parts are
//! written down ([`UploadStates`]): in the users' database when the nodes share one, else
//! beside the target as a hidden object (`DIR/.ftprep-part-<hash of name>`).
//! The checksum of the parts sent so far lives only in the memory of the node that
//! received them ([`HeldChecksums`]; S3 cannot read back parts of an unfinished upload,
//! and the hash state cannot be exported). A resume on that node is verified before the
//! object appears, as any upload; a resume on another node (or after a restart) is
//! verified by reading the completed object back, and a mismatch removes it again.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use object_store::aws::AmazonS3;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    Attributes as StoreAttributes, ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions,
    PutPayload,
};
use serde::{Deserialize, Serialize};

use super::download::ObjectDownload;
use super::keys;
use super::unavailable;
use crate::checksum::{Checksum, Digest};
use crate::commands::{Attributes, ErrorCode};
use crate::error::StorageError;
use crate::server::storage::Announced;
use crate::server::storage::{Download, PARTIAL_TTL, Upload, Usage, refuse_beyond_announced};

/// The smallest part: S3 wants 5 MiB or more for every part but the last.
const MIN_PART_SIZE: u64 = 8 << 20;

/// S3 completes an upload of at most this many parts.
const MAX_PARTS: u64 = 10_000;

/// Parts of one upload travelling to the store at once: with the part being filled, what
/// an upload holds in memory is at most (1 + this) parts.
const PARTS_IN_FLIGHT: usize = 2;

/// Interrupted uploads whose checksum this node keeps, at most (each ~300 bytes).
const MAX_HELD: usize = 10_000;

/// Checksums of the parts of interrupted uploads this node received, by upload id: what a
/// resume on this node continues from.
#[derive(Default)]
pub struct HeldChecksums {
    held: Mutex<HashMap<String, (Checksum, i64)>>,
}

impl HeldChecksums {
    fn keep(&self, upload_id: &str, checksum: Checksum) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.len() >= MAX_HELD && !held.contains_key(upload_id) {
            // Forget the oldest: its resume will be checked after the fact instead.
            if let Some(oldest) = held
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(id, _)| id.clone())
            {
                held.remove(&oldest);
            }
        }
        held.insert(upload_id.to_owned(), (checksum, now()));
    }

    fn take(&self, upload_id: &str) -> Option<Checksum> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.remove(upload_id).map(|(checksum, _)| checksum)
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// What another node needs to resume a multipart upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ResumeState {
    upload_id: String,
    part_size: u64,
    parts: Vec<StoredPart>,
    /// When the upload began (seconds since the epoch): after [`PARTIAL_TTL`] it is dropped.
    started: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredPart {
    etag: String,
    len: u64,
}

impl ResumeState {
    fn held(&self) -> u64 {
        self.parts.iter().map(|p| p.len).sum()
    }
}

/// A place the nodes share for the states of interrupted uploads, by the upload's key (an
/// engine: PostgreSQL).
#[async_trait::async_trait]
pub trait SharedStates: Send + Sync + std::fmt::Debug {
    /// The state kept for `key`, if any.
    async fn load(&self, key: &str) -> Result<Option<String>, StorageError>;
    /// Keeps `state` for `key`, replacing any.
    async fn save(&self, key: &str, state: &str) -> Result<(), StorageError>;
    /// Forgets the state of `key`.
    async fn delete(&self, key: &str) -> Result<(), StorageError>;
}

/// Where the states of interrupted uploads are kept.
#[derive(Debug)]
pub enum UploadStates {
    /// A hidden object beside the target: any node on the store finds it.
    Beside,
    /// A place the nodes share: nothing of the kind in the bucket.
    Shared(Arc<dyn SharedStates>),
}

impl UploadStates {
    async fn load(&self, target: &Target) -> Result<Option<Vec<u8>>, StorageError> {
        match self {
            UploadStates::Beside => match target.store.get(&target.state_key).await {
                Ok(found) => Ok(Some(found.bytes().await.map_err(unavailable)?.to_vec())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(unavailable(e)),
            },
            UploadStates::Shared(states) => states
                .load(target.key.as_ref())
                .await
                .map(|found| found.map(String::into_bytes)),
        }
    }

    async fn save(&self, target: &Target, state: String) -> Result<(), StorageError> {
        match self {
            UploadStates::Beside => {
                target
                    .store
                    .put(&target.state_key, PutPayload::from(state.into_bytes()))
                    .await
                    .map_err(unavailable)?;
                Ok(())
            }
            UploadStates::Shared(states) => states.save(target.key.as_ref(), &state).await,
        }
    }

    /// Forgets a state; a failure leaves one that the next upload of the target replaces.
    async fn delete(&self, target: &Target) {
        match self {
            UploadStates::Beside => {
                let _ = target.store.delete(&target.state_key).await;
            }
            UploadStates::Shared(states) => {
                if let Err(e) = states.delete(target.key.as_ref()).await {
                    tracing::warn!(error = %e, "cannot forget an upload's state");
                }
            }
        }
    }
}

/// Where an upload goes.
pub struct Target {
    pub store: Arc<AmazonS3>,
    pub key: Path,
    pub state_key: Path,
    pub states: Arc<UploadStates>,
    pub ledger: Arc<super::usage::HomeUsage>,
    pub held: Arc<HeldChecksums>,
}

/// A part on its way to the store, with what the checksum was once it was added.
struct InFlight {
    upload: tokio::task::JoinHandle<object_store::Result<PartId>>,
    len: u64,
    checksum: Option<Checksum>,
}

/// A multipart upload under way.
struct Multipart {
    id: String,
    parts: Vec<StoredPart>,
    started: i64,
}

pub struct ObjectUpload {
    target: Target,
    /// The size announced, or for an upload of unknown size the most it may bring (its
    /// parts are then the smallest, so it may bring as much as they carry).
    size: u64,
    /// The file is what has arrived when it finishes ([`Announced::AtMost`]).
    as_written: bool,
    replaces: u64,
    overwrite: bool,
    preserve: Option<Attributes>,
    offset: u64,
    written: u64,
    part_size: u64,
    multipart: Option<Multipart>,
    /// Parts sent and not yet known to be stored, oldest first.
    in_flight: VecDeque<InFlight>,
    /// Data not yet sent: less than one part.
    pending: Vec<Bytes>,
    pending_len: u64,
    /// The checksum of everything sent so far; `None` when parts sent through another node
    /// (or before a restart) came first, so only the completed object can be checked.
    checksum: Option<Checksum>,
}

/// The state an interrupted upload to `target` kept, if any.
async fn load_state(target: &Target) -> Result<Option<ResumeState>, StorageError> {
    let Some(stored) = target.states.load(target).await? else {
        return Ok(None);
    };
    // A damaged state is an upload nobody can resume: start afresh.
    Ok(serde_json::from_slice(&stored).ok())
}

/// Bytes an interrupted upload to `target` kept in parts stored, while it can be resumed.
pub async fn kept(target: &Target) -> Result<Option<u64>, StorageError> {
    Ok(load_state(target).await?.and_then(|state| {
        let fresh = now().saturating_sub(state.started) < PARTIAL_TTL.as_secs() as i64;
        let held = state.held();
        (fresh && held > 0).then_some(held)
    }))
}

impl ObjectUpload {
    pub async fn begin(
        target: Target,
        announced: Announced,
        replaces: u64,
        overwrite: bool,
        resume: bool,
    ) -> Result<Self, StorageError> {
        let (size, as_written) = match announced {
            Announced::Exactly(size) => (size, false),
            Announced::AtMost(most) => (most.min(MIN_PART_SIZE * MAX_PARTS), true),
        };
        let mut upload = ObjectUpload {
            size,
            as_written,
            replaces,
            overwrite,
            preserve: None,
            offset: 0,
            written: 0,
            part_size: part_size_for(size),
            multipart: None,
            in_flight: VecDeque::new(),
            pending: Vec::new(),
            pending_len: 0,
            checksum: Some(Checksum::new()),
            target,
        };
        let Some(state) = upload.load_state().await? else {
            return Ok(upload);
        };
        let held = state.held();
        let fits = held <= size && size.div_ceil(state.part_size) <= MAX_PARTS;
        let fresh = now().saturating_sub(state.started) < PARTIAL_TTL.as_secs() as i64;
        if resume && fits && fresh {
            upload.checksum = upload.target.held.take(&state.upload_id);
            if upload.checksum.is_none() && held == 0 {
                upload.checksum = Some(Checksum::new());
            }
            upload.offset = held;
            upload.written = held;
            upload.part_size = state.part_size;
            upload.multipart = Some(Multipart {
                id: state.upload_id,
                parts: state.parts,
                started: state.started,
            });
            return Ok(upload);
        }
        // Not resumed: what the earlier upload left goes.
        upload.discard_multipart(&state.upload_id).await;
        Ok(upload)
    }

    async fn load_state(&self) -> Result<Option<ResumeState>, StorageError> {
        load_state(&self.target).await
    }

    async fn save_state(&self) -> Result<(), StorageError> {
        let Some(multipart) = &self.multipart else {
            return Ok(());
        };
        let state = ResumeState {
            upload_id: multipart.id.clone(),
            part_size: self.part_size,
            parts: multipart.parts.clone(),
            started: multipart.started,
        };
        let json = serde_json::to_string(&state)
            .map_err(|e| StorageError::new(ErrorCode::Internal, e.to_string()))?;
        self.target.states.save(&self.target, json).await
    }

    /// Aborts a multipart upload and forgets it; failures only leave garbage that the
    /// bucket's lifecycle rule removes (see the README).
    async fn discard_multipart(&self, upload_id: &str) {
        let _ = self
            .target
            .store
            .abort_multipart(&self.target.key, &upload_id.to_owned())
            .await;
        self.target.states.delete(&self.target).await;
        self.target.held.take(upload_id);
    }

    /// Sends the first `len` pending bytes as the next part: started at once, while the
    /// data of the next one arrives; at most [`PARTS_IN_FLIGHT`] at a time.
    async fn send_part(&mut self, len: u64) -> Result<(), StorageError> {
        let mut part = Vec::new();
        let mut left = len;
        while left > 0 {
            let Some(first) = self.pending.first_mut() else {
                break;
            };
            if first.len() as u64 <= left {
                left -= first.len() as u64;
                part.push(self.pending.remove(0));
            } else {
                // Less than a chunk: the cast cannot truncate.
                part.push(first.split_to(left as usize));
                left = 0;
            }
        }
        self.pending_len -= len;
        if let Some(checksum) = &mut self.checksum {
            for chunk in &part {
                checksum.update(chunk);
            }
        }
        if self.in_flight.len() >= PARTS_IN_FLIGHT {
            self.collect_one().await?;
        }
        let id = match &self.multipart {
            Some(multipart) => multipart.id.clone(),
            None => {
                let id = self
                    .target
                    .store
                    .create_multipart_opts(
                        &self.target.key,
                        PutMultipartOptions {
                            attributes: self.stored_attributes(),
                            ..Default::default()
                        },
                    )
                    .await
                    .map_err(unavailable)?;
                self.multipart = Some(Multipart {
                    id: id.clone(),
                    parts: Vec::new(),
                    started: now(),
                });
                id
            }
        };
        let index = self.multipart.as_ref().map_or(0, |m| m.parts.len()) + self.in_flight.len();
        let (store, key) = (Arc::clone(&self.target.store), self.target.key.clone());
        let payload: PutPayload = part.into_iter().collect();
        let upload = tokio::spawn(async move { store.put_part(&key, &id, index, payload).await });
        self.in_flight.push_back(InFlight {
            upload,
            len,
            checksum: self.checksum.clone(),
        });
        Ok(())
    }

    /// Waits for the oldest part in flight and records it: the state a resume reads holds
    /// only parts that are stored, in order.
    async fn collect_one(&mut self) -> Result<(), StorageError> {
        let Some(sent) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let stored = sent
            .upload
            .await
            .map_err(|e| {
                StorageError::new(ErrorCode::Internal, format!("part upload failed: {e}"))
            })?
            .map_err(unavailable)?;
        let Some(multipart) = &mut self.multipart else {
            return Err(StorageError::new(
                ErrorCode::Internal,
                "no multipart upload",
            ));
        };
        multipart.parts.push(StoredPart {
            etag: stored.content_id,
            len: sent.len,
        });
        let multipart_id = multipart.id.clone();
        self.save_state().await?;
        if let Some(checksum) = sent.checksum {
            self.target.held.keep(&multipart_id, checksum);
        }
        Ok(())
    }

    async fn collect_all(&mut self) -> Result<(), StorageError> {
        while !self.in_flight.is_empty() {
            self.collect_one().await?;
        }
        Ok(())
    }

    fn stored_attributes(&self) -> StoreAttributes {
        self.preserve
            .map(keys::attributes_to_store)
            .unwrap_or_default()
    }

    /// Everything of this upload goes: no object appears, nothing can be resumed.
    async fn discard(&mut self) {
        for sent in self.in_flight.drain(..) {
            sent.upload.abort();
        }
        if let Some(multipart) = self.multipart.take() {
            self.discard_multipart(&multipart.id).await;
        }
    }
}

fn part_size_for(size: u64) -> u64 {
    const MIB: u64 = 1 << 20;
    MIN_PART_SIZE.max(size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB)
}

#[async_trait]
impl Upload for ObjectUpload {
    fn counted(&self) -> bool {
        false
    }

    fn offset(&self) -> u64 {
        self.offset
    }

    fn replaces(&self) -> u64 {
        self.replaces
    }

    fn preserve(&mut self, attributes: Attributes) {
        self.preserve = Some(attributes);
    }

    async fn write(&mut self, data: Bytes) -> Result<(), StorageError> {
        let len = data.len() as u64;
        refuse_beyond_announced(self.written, len, self.size)?;
        self.written += len;
        self.pending.push(data);
        self.pending_len += len;
        if self.pending_len >= self.part_size {
            self.send_part(self.part_size).await?;
        }
        Ok(())
    }

    async fn finish(
        mut self: Box<Self>,
        checksum: Option<Digest>,
        room: Option<u64>,
    ) -> Result<(), StorageError> {
        if self.as_written {
            self.size = self.written;
        }
        if self.written != self.size {
            let message = format!(
                "incomplete: {} of {} bytes arrived",
                self.written, self.size
            );
            self.discard().await;
            return Err(StorageError::new(ErrorCode::UnexpectedRequest, message));
        }
        let existing = match self.target.store.head(&self.target.key).await {
            Ok(_) if !self.overwrite => {
                self.discard().await;
                return Err(StorageError::new(
                    ErrorCode::AlreadyExists,
                    "already exists (use -f to replace it)",
                ));
            }
            Ok(meta) => Some(meta.size),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => return Err(unavailable(e)),
        };
        let growth = self.size.saturating_sub(existing.unwrap_or(0));
        if let Some(room) = room
            && growth > room
        {
            self.discard().await;
            return Err(StorageError::new(
                ErrorCode::QuotaExceeded,
                "quota exceeded: the file this upload was to replace is gone, and without it \
                 the new one does not fit; nothing was replaced",
            ));
        }
        let mismatch = || {
            StorageError::new(
                ErrorCode::ChecksumMismatch,
                "checksum mismatch: the data was damaged in transit; nothing was replaced",
            )
        };
        if self.multipart.is_none() {
            // Small enough for one request: checked, then stored whole.
            let mut whole = Checksum::new();
            for chunk in &self.pending {
                whole.update(chunk);
            }
            if checksum
                .as_ref()
                .is_some_and(|sent| whole.digest() != *sent)
            {
                return Err(mismatch());
            }
            let payload: PutPayload = std::mem::take(&mut self.pending).into_iter().collect();
            self.target
                .store
                .put_opts(
                    &self.target.key,
                    payload,
                    PutOptions {
                        attributes: self.stored_attributes(),
                        ..Default::default()
                    },
                )
                .await
                .map_err(unavailable)?;
        } else {
            if self.pending_len > 0 {
                self.send_part(self.pending_len).await?;
            }
            self.collect_all().await?;
            let Some(multipart) = self.multipart.take() else {
                return Err(StorageError::new(
                    ErrorCode::Internal,
                    "no multipart upload",
                ));
            };
            if let (Some(held), Some(sent)) = (&self.checksum, &checksum)
                && held.digest() != *sent
            {
                self.discard_multipart(&multipart.id).await;
                return Err(mismatch());
            }
            let parts = multipart
                .parts
                .iter()
                .map(|p| PartId {
                    content_id: p.etag.clone(),
                })
                .collect();
            self.target
                .store
                .complete_multipart(&self.target.key, &multipart.id, parts)
                .await
                .map_err(unavailable)?;
            self.target.states.delete(&self.target).await;
            self.target.held.take(&multipart.id);
            if let (None, Some(checksum)) = (&self.checksum, checksum) {
                // Parts came through another node: the whole object is checked now.
                let mut stored =
                    ObjectDownload::open(&self.target.store, &self.target.key, 0).await?;
                while stored.next_chunk().await?.is_some() {}
                if stored.checksum() != checksum {
                    let _ = self.target.store.delete(&self.target.key).await;
                    if let Some(old) = existing {
                        self.target.ledger.remove(Usage::entry(false, old)).await;
                    }
                    return Err(StorageError::new(
                        ErrorCode::ChecksumMismatch,
                        "checksum mismatch: the resumed file differs from what was sent \
                         before the interruption; it was removed, send it again without -c",
                    ));
                }
            }
        }
        match existing {
            Some(old) => self.target.ledger.resize(old, self.size).await,
            None => self.target.ledger.add(Usage::entry(false, self.size)).await,
        }
        Ok(())
    }

    async fn abort(mut self: Box<Self>, keep: bool) {
        // Kept: the parts sent and their state stay for a resume (once those in flight
        // are stored); what was pending (less than a part) is sent again.
        if keep {
            // What this node knows of the parts stored stays here for a resume: the
            // checksum covers exactly them (pending data is hashed only when sent).
            if self.collect_all().await.is_ok()
                && let (Some(multipart), Some(checksum)) = (&self.multipart, &self.checksum)
            {
                self.target.held.keep(&multipart.id, checksum.clone());
            }
        } else {
            self.discard().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_stay_within_what_s3_completes() {
        assert_eq!(part_size_for(0), MIN_PART_SIZE);
        assert_eq!(part_size_for(1 << 30), MIN_PART_SIZE);
        let huge = 5u64 << 40;
        assert!(huge.div_ceil(part_size_for(huge)) <= MAX_PARTS);
        assert_eq!(part_size_for(huge) % (1 << 20), 0);
    }

    #[test]
    fn the_oldest_held_checksum_goes_first() {
        let held = HeldChecksums::default();
        held.keep("a", Checksum::new());
        assert!(held.take("a").is_some());
        assert!(held.take("a").is_none(), "taken once");
    }
}
