//! One logged-in user's files, as every front end reaches them: paths parsed (the jail),
//! the quotas by bytes and by entries with the holds of uploads in flight, one upload per
//! target, places among the transfers, and the audit log. Each operation answers with a
//! typed [`StorageError`]; how it travels (a frame, an SFTP status, an HTTP status) is the
//! front end's business.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{OwnedMutexGuard, OwnedSemaphorePermit};

use crate::checksum::Digest;
use crate::commands::{Attributes, Entry, EntryKind, ErrorCode};
use crate::error::{Error, PathError, StorageError};
use crate::paths::{MAX_PATH_LEN, RemotePath};
use crate::server::audit::Record;
use crate::server::quota::{Hold, Need, Refused};
use crate::server::shared::Shared;
use crate::server::storage::{
    Announced, DIRECTORY_BYTES, Download, Listing, Upload, Usage, UserTree,
};
use crate::size::format_size;
use crate::username::Username;

/// What an operation answers: its result, or a typed refusal.
pub(crate) type Outcome<T> = std::result::Result<T, StorageError>;

/// One logged-in user's files; cheap to clone, so an upload or a download under way can
/// keep them while the front end serves other requests.
#[derive(Clone)]
pub(crate) struct UserFiles {
    pub(crate) user: Username,
    pub(crate) peer: SocketAddr,
    pub(crate) tree: Arc<dyn UserTree>,
    pub(crate) shared: Arc<Shared>,
}

/// A user's limits: bytes, and entries (files, directories, links).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct UserQuota {
    pub(crate) bytes: Option<u64>,
    pub(crate) entries: Option<u64>,
}

/// An upload under way: the upload, its quota reservation, the lock on its target, and
/// for an upload of unknown size the bytes the quota leaves it (`None`: no quota).
type Opened = (
    Box<dyn Upload>,
    Option<Hold>,
    OwnedMutexGuard<()>,
    Option<u64>,
);

/// A path as a client typed it, checked: the jail's first gate.
fn path(raw: &str) -> Outcome<RemotePath> {
    RemotePath::parse(raw).map_err(invalid_path)
}

fn invalid_path(err: PathError) -> StorageError {
    let (code, message) = Error::Path(err).to_reply();
    StorageError::new(code, message)
}

/// A listing under way, holding its place among the transfers.
pub(crate) struct Listed {
    /// The pages to send.
    pub(crate) listing: Box<dyn Listing>,
    _slot: OwnedSemaphorePermit,
}

impl UserFiles {
    /// Makes a directory (`parents`: and those above it, and none if it exists).
    pub(crate) async fn mkdir(&self, raw: &str, parents: bool) -> Outcome<()> {
        let result = async {
            let remote = path(raw)?;
            let quotas = self.quotas().await?;
            // `mkdir -p` of a directory that exists adds nothing (`put -r` does it
            // for every directory of a tree).
            let limited = quotas.bytes.is_some() || quotas.entries.is_some();
            let exists = limited
                && parents
                && self
                    .tree
                    .stat(&remote)
                    .await
                    .is_ok_and(|e| e.kind == EntryKind::Directory);
            if limited && !exists {
                self.check_room_for_a_directory(quotas).await?;
            }
            self.tree.mkdir(&remote, parents).await
        }
        .await;
        self.log("mkdir", raw, &result);
        result
    }

    /// Opens a listing of a directory, or (`whole_tree`) of everything beneath it.
    pub(crate) async fn list(&self, raw: &str, whole_tree: bool) -> Outcome<Listed> {
        let result = async {
            let remote = path(raw)?;
            let slot = self.transfer_slot()?;
            let listing = if whole_tree {
                self.tree.list_tree(&remote).await?
            } else {
                self.tree.list(&remote).await?
            };
            Outcome::Ok(Listed {
                listing,
                _slot: slot,
            })
        }
        .await;
        self.log(if whole_tree { "ls -R" } else { "ls" }, raw, &result);
        result
    }

    /// What is at `raw`.
    pub(crate) async fn stat(&self, raw: &str) -> Outcome<Entry> {
        self.tree.stat(&path(raw)?).await
    }

    /// Removes a file or link (`recursive`: a directory and all beneath it).
    pub(crate) async fn remove(&self, raw: &str, recursive: bool) -> Outcome<()> {
        let result = async { self.tree.remove(&path(raw)?, recursive).await }.await;
        self.log(if recursive { "rm -r" } else { "rm" }, raw, &result);
        result
    }

    /// Removes an empty directory.
    pub(crate) async fn rmdir(&self, raw: &str) -> Outcome<()> {
        let result = async { self.tree.rmdir(&path(raw)?).await }.await;
        self.log("rmdir", raw, &result);
        result
    }

    /// Moves `from` to `to` (`overwrite`: over what is there).
    pub(crate) async fn rename(&self, from: &str, to: &str, overwrite: bool) -> Outcome<()> {
        let result = async { self.tree.rename(&path(from)?, &path(to)?, overwrite).await }.await;
        self.log("mv", &format!("{from} -> {to}"), &result);
        result
    }

    /// What the user's files take, and their quotas.
    pub(crate) async fn usage(&self) -> Outcome<(Usage, UserQuota)> {
        let usage = self.tree.usage().await?;
        Ok((usage, self.quotas().await?))
    }

    /// The size and checksum of a whole file (it reads all of it: a place among the
    /// transfers).
    pub(crate) async fn checksum(&self, raw: &str) -> Outcome<(u64, Digest)> {
        let remote = path(raw)?;
        let _slot = self.transfer_slot()?;
        self.tree.checksum(&remote).await
    }

    /// Makes a symbolic link at `raw` to `target` (inside the home).
    pub(crate) async fn symlink(&self, raw: &str, target: &str) -> Outcome<()> {
        let result = async {
            let remote = path(raw)?;
            remote.check_link_target(target).map_err(invalid_path)?;
            let quotas = self.quotas().await?;
            let size = u64::try_from(target.len()).unwrap_or(u64::MAX);
            self.check_room_for(quotas, size, "a link").await?;
            self.tree.symlink(&remote, target).await
        }
        .await;
        self.log("symlink", raw, &result);
        result
    }

    /// Sets the modification time and/or permission bits of `raw`.
    pub(crate) async fn set_attributes(
        &self,
        raw: &str,
        modified: Option<i64>,
        mode: Option<u32>,
    ) -> Outcome<()> {
        let result = async { self.tree.set_attributes(&path(raw)?, modified, mode).await }.await;
        self.log("setstat", raw, &result);
        result
    }

    /// Where the link at `raw` points.
    pub(crate) async fn read_link(&self, raw: &str) -> Outcome<String> {
        self.tree.read_link(&path(raw)?).await
    }

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
    ) -> Outcome<PutInProgress> {
        self.begin_upload(raw, Announced::AtMost(u64::MAX), overwrite, false, None)
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

    /// The user's current quota (re-read, so `ftpd quota` applies to running sessions).
    async fn quota(&self) -> Outcome<Option<u64>> {
        Ok(self.quotas().await?.bytes)
    }

    /// The user's byte and file-count quotas (re-read, like [`UserFiles::quota`]).
    async fn quotas(&self) -> Outcome<UserQuota> {
        match self.shared.users.user_for_session(&self.user).await {
            Ok(Some(record)) => Ok(UserQuota {
                bytes: record.quota,
                entries: record.files,
            }),
            // `deluser` while this session runs (on any node): nothing more is done for it.
            Ok(None) => Err(StorageError::new(
                ErrorCode::PermissionDenied,
                "this account was removed",
            )),
            Err(err) => {
                tracing::error!(user = %self.user, error = %err, "cannot read the user's quota");
                Err(StorageError::new(
                    ErrorCode::Busy,
                    "the user database is unavailable; try again later",
                ))
            }
        }
    }

    /// Refuses one more entry (a directory, a new file) past the file-count quota.
    async fn check_room_for_an_entry(&self, max: Option<u64>) -> Outcome<()> {
        let Some(max) = max else {
            return Ok(());
        };
        let entries = self.tree.usage().await?.entries;
        if entries >= max {
            return Err(StorageError::new(
                ErrorCode::QuotaExceeded,
                format!("file quota exceeded: {entries} of {max} files and directories"),
            ));
        }
        Ok(())
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

    /// A place among the transfers and listings running at once, or `Busy`.
    pub(crate) fn transfer_slot(&self) -> Outcome<OwnedSemaphorePermit> {
        Arc::clone(&self.shared.transfers)
            .try_acquire_owned()
            .map_err(|_| {
                tracing::warn!(user = %self.user, peer = %self.peer, "too many transfers at once; refusing");
                StorageError::new(
                    ErrorCode::Busy,
                    "server busy: too many transfers in progress; try again later",
                )
            })
    }

    /// A directory costs [`DIRECTORY_BYTES`] of the quota: refuses a `mkdir` once not even
    /// one more fits (uploads in flight hold their share).
    async fn check_room_for_a_directory(&self, quotas: UserQuota) -> Outcome<()> {
        self.check_room_for(quotas, DIRECTORY_BYTES, "a directory")
            .await
    }

    /// Whether one more entry of `size` bytes (`what` it is, for the refusal) fits the
    /// quotas.
    async fn check_room_for(&self, quotas: UserQuota, size: u64, what: &str) -> Outcome<()> {
        self.check_room_for_an_entry(quotas.entries).await?;
        let Some(quota) = quotas.bytes else {
            return Ok(());
        };
        let used = self.tree.usage().await?.bytes;
        let held = self.shared.quotas.held(&self.user).await?;
        if used.saturating_add(held).saturating_add(size) > quota {
            return Err(StorageError::new(
                ErrorCode::QuotaExceeded,
                format!(
                    "quota exceeded (used {} of {}; {what} takes {})",
                    format_size(used.saturating_add(held)),
                    format_size(quota),
                    format_size(size)
                ),
            ));
        }
        Ok(())
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

    /// Logs a command; changes also go to the audit log.
    fn log<T>(&self, command: &str, path: &str, result: &Outcome<T>) {
        // A path (or `from -> to`) longer than any valid one was refused: log its start.
        let cut;
        let path = if path.len() > 2 * MAX_PATH_LEN + 4 {
            cut = crate::sanitize::for_log(path);
            cut.as_str()
        } else {
            path
        };
        if command != "ls" {
            let mut record = Record::new(command, self.user.as_str(), self.peer, outcome(result));
            record.path = Some(path);
            self.shared.audit(&record);
        }
        let (user, peer, path) = (&self.user, self.peer, path.escape_debug());
        match result {
            Ok(_) => tracing::info!(%user, %peer, command, %path, "ok"),
            Err(err) => {
                tracing::info!(%user, %peer, command, %path, code = ?err.code, error = %err, "refused");
            }
        }
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

/// The audit log's `result`: `ok`, or the error code.
fn outcome<T>(result: &Outcome<T>) -> String {
    match result {
        Ok(_) => "ok".to_owned(),
        Err(err) => format!("{:?}", err.code),
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
