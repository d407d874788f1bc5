//! Transfers of one user's files: uploads (checked against the quotas, held against the
//! user's other uploads, one per target, whole when they finish or kept hidden for a
//! resume) and downloads, each with a place among the transfers and recorded when done.

use bytes::Bytes;
use tokio::sync::{OwnedMutexGuard, OwnedSemaphorePermit};

use super::files::{Outcome, UserFiles, UserQuota, outcome, path};
use crate::checksum::Digest;
use crate::commands::{Attributes, ErrorCode};
use crate::error::StorageError;
use crate::paths::RemotePath;
use crate::server::audit::Record;
use crate::server::quota::{Hold, Need, Refused};
use crate::server::storage::{Announced, Download, Upload};
use crate::size::format_size;

/// An upload under way: the upload, its quota reservation, the lock on its target, and
/// for an upload of unknown size the bytes the quota leaves it (`None`: no quota).
type Opened = (
    Box<dyn Upload>,
    Option<Hold>,
    OwnedMutexGuard<()>,
    Option<u64>,
);

impl UserFiles {
    /// Begins an upload of `size` bytes to `raw` (`resume`: after the partial data an
    /// interrupted one kept), checked against the quotas, its target locked, with a place
    /// among the transfers. Data goes in with [`PutInProgress::write`]; the file appears
    /// only at [`PutInProgress::finish`], whole and checked.
    pub(crate) async fn begin_put(
        &self,
        raw: &str,
        size: u64,
        overwrite: bool,
        resume: bool,
        preserve: Option<Attributes>,
    ) -> Outcome<PutInProgress> {
        self.begin_upload(raw, Announced::Exactly(size), overwrite, resume, preserve)
            .await
    }

    /// Begins an upload of unknown size to `raw` (SFTP's open for writing): the file is
    /// what was written when [`PutInProgress::finish_as_written`] is called, and writes
    /// past what the quota leaves are refused as they come. Otherwise as
    /// [`UserFiles::begin_put`].
    pub(crate) async fn begin_open_put(
        &self,
        raw: &str,
        overwrite: bool,
        resume: bool,
    ) -> Outcome<PutInProgress> {
        self.begin_upload(raw, Announced::AtMost(u64::MAX), overwrite, resume, None)
            .await
    }

    async fn begin_upload(
        &self,
        raw: &str,
        announced: Announced,
        overwrite: bool,
        resume: bool,
        preserve: Option<Attributes>,
    ) -> Outcome<PutInProgress> {
        let started = async {
            let remote = path(raw)?;
            let slot = self.transfer_slot()?;
            let opened = self
                .open_upload(remote, announced, overwrite, resume)
                .await?;
            Outcome::Ok((opened, slot))
        }
        .await;
        let ((mut upload, reservation, target_lock, room), slot) = match started {
            Ok(started) => started,
            Err(err) => {
                self.log::<()>("put", raw, &Err(err.clone()));
                return Err(err);
            }
        };
        if let Some(attributes) = preserve {
            upload.preserve(attributes);
        }
        Ok(PutInProgress {
            offset: upload.offset(),
            written: upload.offset(),
            room,
            files: self.clone(),
            raw: raw.to_owned(),
            size: announced.limit(),
            started: std::time::Instant::now(),
            upload,
            reservation,
            _target_lock: target_lock,
            _slot: slot,
        })
    }

    /// Opens `raw` for reading from `offset`, with a place among the transfers.
    pub(crate) async fn begin_get(&self, raw: &str, offset: u64) -> Outcome<GetInProgress> {
        let opened = async {
            let remote = path(raw)?;
            let slot = self.transfer_slot()?;
            Outcome::Ok((self.tree.open_download(&remote, offset).await?, slot))
        }
        .await;
        match opened {
            Ok((download, slot)) => Ok(GetInProgress {
                files: self.clone(),
                raw: raw.to_owned(),
                offset,
                started: std::time::Instant::now(),
                download,
                _slot: slot,
            }),
            Err(err) => {
                self.log::<()>("get", raw, &Err(err.clone()));
                Err(err)
            }
        }
    }

    /// Opens the upload and checks the quotas for it; the reservation holds the bytes
    /// still to come against concurrent uploads of the same user. Takes no place among
    /// the transfers (the caller holds one).
    async fn open_upload(
        &self,
        remote: RemotePath,
        announced: Announced,
        overwrite: bool,
        resume: bool,
    ) -> Outcome<Opened> {
        // Of an upload of unknown size, only what is written counts; none is announced.
        let size = match announced {
            Announced::Exactly(size) => size,
            Announced::AtMost(_) => 0,
        };
        let UserQuota {
            bytes: quota,
            entries: max_entries,
        } = self.quotas().await?;
        let new_entry = max_entries.is_some() && self.tree.stat(&remote).await.is_err();
        if new_entry {
            self.check_room_for_an_entry(max_entries).await?;
        }
        if let Some(quota) = quota
            && size > quota
        {
            return Err(StorageError::new(
                ErrorCode::QuotaExceeded,
                format!(
                    "quota exceeded: this file ({}) is larger than your quota ({})",
                    format_size(size),
                    format_size(quota)
                ),
            ));
        }
        let target_lock = self.shared.uploads.lock(&self.user, &remote).await;
        let upload = self
            .tree
            .begin_upload(&remote, announced, overwrite, resume)
            .await?;
        // Partial data from before stays for a later resume (it is in the usage).
        let keep = upload.offset() > 0;
        if quota.is_none() && !new_entry {
            return Ok((upload, None, target_lock, None));
        }
        let usage = match self.tree.usage().await {
            Ok(usage) => usage,
            Err(err) => {
                upload.abort(keep).await;
                return Err(err);
            }
        };
        // A new file under a file-count quota: an upload its engine counts while it runs
        // (a partial file) is checked again now that it counts, with every other upload
        // running; one it does not count holds its entry, as bytes are held, on every
        // node. Of two uploads racing for the last place, neither passes on the other's
        // behalf.
        let max = max_entries.filter(|_| new_entry);
        if let Some(max) = max
            && upload.counted()
            && usage.entries > max
        {
            upload.abort(keep).await;
            return Err(entries_exceeded(max));
        }
        // The partial data already held is in `usage`; what comes is the rest of the file.
        let incoming = size.saturating_sub(upload.offset());
        let need = Need {
            bytes: quota.map(|quota| {
                let projected = usage
                    .bytes
                    .saturating_sub(upload.replaces())
                    .saturating_add(incoming);
                (projected, incoming, quota)
            }),
            entry: max
                .filter(|_| !upload.counted())
                .map(|max| (usage.entries, max)),
        };
        if need.bytes.is_none() && need.entry.is_none() {
            return Ok((upload, None, target_lock, None));
        }
        let reserved = match self.shared.quotas.reserve(&self.user, need).await {
            Ok(reserved) => reserved,
            Err(err) => {
                upload.abort(keep).await;
                return Err(err);
            }
        };
        match reserved {
            Ok(reservation) => {
                // Checked again with the hold taken: what others hold first, then what is
                // counted (an upload that finishes counts before it lets its hold go), so
                // no upload racing this one is missed by both; of two, neither passes on
                // the other's behalf.
                if let Some((_, max)) = need.entry {
                    let counted = async {
                        let held = self.shared.quotas.held_entries(&self.user).await?;
                        let usage = self.tree.usage().await?;
                        Ok::<_, StorageError>(usage.entries.saturating_add(held))
                    };
                    let over = match counted.await {
                        Ok(counted) => (counted > max).then(|| entries_exceeded(max)),
                        Err(err) => Some(err),
                    };
                    if let Some(err) = over {
                        drop(reservation);
                        upload.abort(keep).await;
                        return Err(err);
                    }
                }
                // What the quota leaves an upload of unknown size: its own bytes are
                // checked as they come, and again when it finishes.
                let room = match (announced, quota) {
                    (Announced::AtMost(_), Some(quota)) => {
                        let others = reservation.held_by_others().await.unwrap_or(u64::MAX);
                        Some(
                            quota
                                .saturating_sub(usage.bytes.saturating_sub(upload.replaces()))
                                .saturating_sub(others),
                        )
                    }
                    _ => None,
                };
                Ok((upload, Some(reservation), target_lock, room))
            }
            Err(refused) => {
                upload.abort(keep).await;
                Err(match (refused, quota, max) {
                    (Refused::Bytes(pending), Some(quota), _) => StorageError::new(
                        ErrorCode::QuotaExceeded,
                        format!(
                            "quota exceeded (used {} of {}; this file needs {})",
                            format_size(usage.bytes.saturating_add(pending)),
                            format_size(quota),
                            format_size(size)
                        ),
                    ),
                    (_, _, Some(max)) => entries_exceeded(max),
                    _ => StorageError::new(ErrorCode::QuotaExceeded, "quota exceeded"),
                })
            }
        }
    }

    /// How far usage may still grow when an upload ends: the quota (as it is now) less
    /// what is used and what other uploads of the user hold. `None` without a quota.
    async fn room_at_finish(&self, reservation: Option<&Hold>) -> Option<u64> {
        let reservation = reservation?;
        // Without the quota (the user database unavailable), no room: fail closed.
        let quota = self.quota().await.unwrap_or(Some(0))?;
        let used = match self.tree.usage().await {
            Ok(usage) => usage.bytes,
            Err(err) => {
                tracing::error!(user = %self.user, error = %err, "cannot count usage");
                return Some(0);
            }
        };
        // Without what the others hold, no room either.
        let others = reservation.held_by_others().await.unwrap_or(u64::MAX);
        Some(quota.saturating_sub(used).saturating_sub(others))
    }

    /// A whole file at once: stored, synced and renamed into place like any upload. Several of a session's run at once (their disk
    /// syncs overlap); the session holds one place among the transfers for all of them.
    pub(crate) async fn put_whole(
        &self,
        raw: String,
        overwrite: bool,
        preserve: Option<Attributes>,
        data: Bytes,
        checksum: Digest,
    ) -> Outcome<()> {
        let size = data.len() as u64;
        let started = std::time::Instant::now();
        let result = async {
            let remote = path(&raw)?;
            let (mut upload, reservation, _target_lock, _) = self
                .open_upload(remote, Announced::Exactly(size), overwrite, false)
                .await?;
            if let Some(attributes) = preserve {
                upload.preserve(attributes);
            }
            if !data.is_empty()
                && let Err(err) = upload.write(data).await
            {
                upload.abort(false).await;
                return Err(err);
            }
            let room = self.room_at_finish(reservation.as_ref()).await;
            upload.finish(Some(checksum), room).await
        }
        .await;
        self.record_put(&raw, size, 0, started, &result);
        result
    }

    fn audit_transfer(
        &self,
        command: &str,
        path: &str,
        bytes: u64,
        started: std::time::Instant,
        result: &Outcome<()>,
    ) {
        let mut record = Record::new(command, self.user.as_str(), self.peer, outcome(result));
        record.via = Some(self.via);
        record.path = Some(path);
        record.bytes = Some(bytes);
        record.millis = Some(started.elapsed().as_millis() as u64);
        self.shared.audit(&record);
    }

    /// An upload of `size` bytes that ended, resumed at `offset`: to the audit log and the
    /// log.
    pub(crate) fn record_put(
        &self,
        raw: &str,
        size: u64,
        offset: u64,
        started: std::time::Instant,
        result: &Outcome<()>,
    ) {
        self.audit_transfer("put", raw, size - offset, started, result);
        tracing::info!(
            user = %self.user,
            peer = %self.peer,
            command = "put",
            path = %raw.escape_debug(),
            bytes = size - offset,
            resumed_at = offset,
            millis = started.elapsed().as_millis() as u64,
            result = ?result.as_ref().map_err(|e| e.code),
            "transfer"
        );
    }
}

/// An upload under way: data goes in, and the file appears only when it is finished.
pub(crate) struct PutInProgress {
    files: UserFiles,
    raw: String,
    size: u64,
    offset: u64,
    /// Bytes the file holds so far.
    written: u64,
    /// For an upload of unknown size under a quota, the bytes the quota leaves it.
    room: Option<u64>,
    started: std::time::Instant,
    upload: Box<dyn Upload>,
    reservation: Option<Hold>,
    _target_lock: OwnedMutexGuard<()>,
    _slot: OwnedSemaphorePermit,
}

impl PutInProgress {
    /// Where the data continues: bytes an interrupted upload kept.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// Gives the finished file this modification time and these permission bits.
    pub(crate) fn preserve(&mut self, attributes: Attributes) {
        self.upload.preserve(attributes);
    }

    /// Whether finishing makes the file durable before it answers (the default); see
    /// [`Upload::set_durable`].
    pub(crate) fn set_durable(&mut self, durable: bool) {
        self.upload.set_durable(durable);
    }

    /// Bytes the file holds so far.
    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    /// Appends the next chunk.
    pub(crate) async fn write(&mut self, data: Bytes) -> Outcome<()> {
        let end = self.written.saturating_add(data.len() as u64);
        if let Some(room) = self.room
            && end.saturating_sub(self.offset) > room
        {
            return Err(StorageError::new(
                ErrorCode::QuotaExceeded,
                format!(
                    "quota exceeded: this file may grow by {} more",
                    format_size(room.saturating_sub(self.written - self.offset))
                ),
            ));
        }
        self.upload.write(data).await?;
        self.written = end;
        Ok(())
    }

    /// Puts the file in place as it was written (an upload of unknown size), within the
    /// quota as it is now; the transfer is recorded.
    pub(crate) async fn finish_as_written(mut self) -> Outcome<()> {
        self.size = self.written;
        let room = self.files.room_at_finish(self.reservation.as_ref()).await;
        let result = self.upload.finish(None, room).await;
        drop(self.reservation);
        self.files
            .record_put(&self.raw, self.size, self.offset, self.started, &result);
        result
    }

    /// Stops and discards what was written, after `failed` (a write refused on the way);
    /// the transfer is recorded with it.
    pub(crate) async fn discard(self, failed: &StorageError) {
        self.upload.abort(false).await;
        self.files.record_put(
            &self.raw,
            self.written,
            self.offset,
            self.started,
            &Err(failed.clone()),
        );
    }

    /// Checks size and checksum of the whole file, within the quota as it is now, and puts
    /// it in place; or, after `failed` (a write that failed earlier), discards the partial
    /// data. Either way the transfer is recorded.
    pub(crate) async fn finish(
        self,
        checksum: Digest,
        failed: Option<StorageError>,
    ) -> Outcome<()> {
        let result = match failed {
            Some(err) => {
                self.upload.abort(false).await;
                Err(err)
            }
            None => {
                let room = self.files.room_at_finish(self.reservation.as_ref()).await;
                self.upload.finish(Some(checksum), room).await
            }
        };
        drop(self.reservation);
        self.files
            .record_put(&self.raw, self.size, self.offset, self.started, &result);
        result
    }

    /// The client went away or broke the exchange: the partial data stays for a resume.
    pub(crate) async fn interrupted(self) {
        self.upload.abort(true).await;
        let (user, peer) = (&self.files.user, self.files.peer);
        tracing::info!(%user, %peer, path = %self.raw.escape_debug(), "upload interrupted; partial data kept for resume");
    }
}

/// A download under way.
pub(crate) struct GetInProgress {
    files: UserFiles,
    raw: String,
    offset: u64,
    started: std::time::Instant,
    download: Box<dyn Download>,
    _slot: OwnedSemaphorePermit,
}

impl GetInProgress {
    /// Size of the whole file.
    pub(crate) fn size(&self) -> u64 {
        self.download.size()
    }

    /// The file's modification time and permission bits.
    pub(crate) fn attributes(&self) -> Option<Attributes> {
        self.download.attributes()
    }

    /// The next chunk; `None` at the end. A failure is recorded.
    pub(crate) async fn next_chunk(&mut self) -> Outcome<Option<Bytes>> {
        let next = self.download.next_chunk().await;
        if let Err(err) = &next {
            self.files.log::<()>("get", &self.raw, &Err(err.clone()));
        }
        next
    }

    /// Every chunk was read: records the transfer, and answers the whole file's checksum.
    pub(crate) fn done(self) -> Digest {
        let (files, raw, offset) = (&self.files, self.raw.as_str(), self.offset);
        let size = self.download.size();
        files.audit_transfer("get", raw, size - offset, self.started, &Ok(()));
        tracing::info!(
            user = %files.user,
            peer = %files.peer,
            command = "get",
            path = %raw.escape_debug(),
            bytes = size - offset,
            millis = self.started.elapsed().as_millis() as u64,
            "transfer"
        );
        self.download.checksum()
    }
}

/// The refusal of a new file past the file-count quota, counting uploads in progress.
fn entries_exceeded(max: u64) -> StorageError {
    StorageError::new(
        ErrorCode::QuotaExceeded,
        format!(
            "file quota exceeded: {max} files and directories, counting the uploads in progress"
        ),
    )
}
