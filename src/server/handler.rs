//! Serves one authenticated request against the user's tree. Every request is matched here
//! without a wildcard arm, so a new variant does not compile until it is handled. Refusals
//! are responses; only failures of the connection itself end the session.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedMutexGuard, OwnedSemaphorePermit};

use super::Shared;
use super::audit::Record;
use super::quota::{Hold, Need, Refused};
use super::storage::{DIRECTORY_BYTES, Upload, UserTree};
use crate::checksum::Digest;
use crate::commands::{Attributes, EntryKind, ErrorCode, MAX_CHUNK, Request, Response};
use crate::error::{Error, PathError, Result, StorageError};
use crate::paths::{MAX_PATH_LEN, RemotePath};
use crate::size::format_size;
use crate::username::Username;
use crate::wire::Connection;

/// One logged-in user's view of the server.
pub(super) struct Handler<'a> {
    pub(super) user: Username,
    pub(super) peer: SocketAddr,
    pub(super) tree: Arc<dyn UserTree>,
    pub(super) shared: &'a Shared,
}

type Outcome<T> = std::result::Result<T, StorageError>;

/// What a `PutStart` asks for.
struct PutTarget<'a> {
    raw: &'a str,
    size: u64,
    overwrite: bool,
    resume: bool,
}

/// A user's limits: bytes, and entries (files, directories, links).
#[derive(Debug, Default, Clone, Copy)]
struct UserQuota {
    bytes: Option<u64>,
    entries: Option<u64>,
}

/// An upload under way: the upload, its quota reservation, the lock on its target and its
/// place among the transfers.
type Started = (
    Box<dyn Upload>,
    Option<Hold>,
    OwnedMutexGuard<()>,
    OwnedSemaphorePermit,
);

/// An upload under way, without its place among the transfers.
type Opened = (Box<dyn Upload>, Option<Hold>, OwnedMutexGuard<()>);

fn path(raw: &str) -> Outcome<RemotePath> {
    RemotePath::parse(raw).map_err(invalid_path)
}

fn invalid_path(err: PathError) -> StorageError {
    let (code, message) = Error::Path(err).to_reply();
    StorageError::new(code, message)
}

fn reply<T>(result: Outcome<T>) -> Response {
    match result {
        Ok(_) => Response::Ok,
        Err(err) => Response::Error {
            code: err.code,
            message: err.message,
        },
    }
}

impl Handler<'_> {
    /// Applies `request` and writes its response(s).
    pub(super) async fn apply<S>(&self, request: Request, conn: &mut Connection<S>) -> Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let whole_tree = matches!(request, Request::ListTree { .. });
        match request {
            Request::AuthStart { .. } | Request::AuthFinish { .. } => {
                conn.write(&unexpected("already logged in")).await
            }
            Request::Mechanisms => {
                let tls = self.shared.tls.is_some();
                let limits = &self.shared.limits;
                conn.write(&super::login::mechanisms(tls, limits)).await
            }
            Request::PutData { .. } | Request::PutFinish { .. } => {
                conn.write(&unexpected("no upload in progress")).await
            }
            Request::Put {
                path,
                overwrite,
                preserve,
                data,
                checksum,
            } => {
                // The session pipelines these; one on its own still has a place to take.
                let reply = match self.transfer_slot() {
                    Ok(_slot) => {
                        self.put_whole(path, overwrite, preserve, data, checksum)
                            .await
                    }
                    Err(err) => reply::<()>(Err(err)),
                };
                conn.write(&reply).await
            }
            Request::Mkdir { path: raw, parents } => {
                let result = async {
                    let remote = path(&raw)?;
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
                self.log("mkdir", &raw, &result);
                conn.write(&reply(result)).await
            }
            Request::List { path: raw } | Request::ListTree { path: raw } => {
                let result = async {
                    let remote = path(&raw)?;
                    let slot = self.transfer_slot()?;
                    let listing = if whole_tree {
                        self.tree.list_tree(&remote).await?
                    } else {
                        self.tree.list(&remote).await?
                    };
                    Outcome::Ok((listing, slot))
                }
                .await;
                self.log(if whole_tree { "ls -R" } else { "ls" }, &raw, &result);
                let (mut listing, _slot) = match result {
                    Ok(opened) => opened,
                    Err(err) => return conn.write(&reply::<()>(Err(err))).await,
                };
                // Page by page: one page in memory, however large the directory, and a
                // reader that stops reading hits the write deadline.
                loop {
                    match listing.next_page().await {
                        Ok(Some(entries)) => conn.write(&Response::Entries { entries }).await?,
                        Ok(None) => return conn.write(&Response::Ok).await,
                        Err(err) => return conn.write(&reply::<()>(Err(err))).await,
                    }
                }
            }
            Request::Stat { path: raw } => {
                let result = async { self.tree.stat(&path(&raw)?).await }.await;
                match result {
                    Ok(entry) => conn.write(&Response::Stat { entry }).await,
                    Err(err) => conn.write(&reply::<()>(Err(err))).await,
                }
            }
            Request::Remove {
                path: raw,
                recursive,
            } => {
                let result = async { self.tree.remove(&path(&raw)?, recursive).await }.await;
                self.log(if recursive { "rm -r" } else { "rm" }, &raw, &result);
                conn.write(&reply(result)).await
            }
            Request::Rmdir { path: raw } => {
                let result = async { self.tree.rmdir(&path(&raw)?).await }.await;
                self.log("rmdir", &raw, &result);
                conn.write(&reply(result)).await
            }
            Request::Rename {
                from,
                to,
                overwrite,
            } => {
                let result = async {
                    self.tree
                        .rename(&path(&from)?, &path(&to)?, overwrite)
                        .await
                }
                .await;
                self.log("mv", &format!("{from} -> {to}"), &result);
                conn.write(&reply(result)).await
            }
            Request::Usage => match self.tree.usage().await {
                Ok(usage) => {
                    let quotas = match self.quotas().await {
                        Ok(quotas) => quotas,
                        Err(err) => return conn.write(&reply::<()>(Err(err))).await,
                    };
                    conn.write(&Response::Usage {
                        used: usage.bytes,
                        quota: quotas.bytes,
                        entries: usage.entries,
                        max_entries: quotas.entries,
                    })
                    .await
                }
                Err(err) => conn.write(&reply::<()>(Err(err))).await,
            },
            Request::PutStart {
                path: raw,
                size,
                overwrite,
                resume,
                preserve,
            } => {
                let target = PutTarget {
                    raw: &raw,
                    size,
                    overwrite,
                    resume,
                };
                self.put(conn, target, preserve).await
            }
            Request::Get { path: raw, offset } => self.get(conn, &raw, offset).await,
            Request::Checksum { path: raw } => {
                // Reads the whole file: it takes a place among the transfers.
                let result = async {
                    let remote = path(&raw)?;
                    let _slot = self.transfer_slot()?;
                    self.tree.checksum(&remote).await
                }
                .await;
                match result {
                    Ok((size, checksum)) => {
                        conn.write(&Response::Checksum { size, checksum }).await
                    }
                    Err(err) => conn.write(&reply::<()>(Err(err))).await,
                }
            }
            Request::Symlink { path: raw, target } => {
                let result = async {
                    let remote = path(&raw)?;
                    remote.check_link_target(&target).map_err(invalid_path)?;
                    let quotas = self.quotas().await?;
                    let size = u64::try_from(target.len()).unwrap_or(u64::MAX);
                    self.check_room_for(quotas, size, "a link").await?;
                    self.tree.symlink(&remote, &target).await
                }
                .await;
                self.log("symlink", &raw, &result);
                conn.write(&reply(result)).await
            }
            Request::ReadLink { path: raw } => {
                let result = async { self.tree.read_link(&path(&raw)?).await }.await;
                match result {
                    Ok(target) => conn.write(&Response::Link { target }).await,
                    Err(err) => conn.write(&reply::<()>(Err(err))).await,
                }
            }
        }
    }

    /// The user's current quota (re-read, so `ftpd quota` applies to running sessions).
    async fn quota(&self) -> Outcome<Option<u64>> {
        Ok(self.quotas().await?.bytes)
    }

    /// The user's byte and file-count quotas (re-read, like [`Handler::quota`]).
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

    /// Opens the upload and checks the quota for it; the reservation holds the bytes
    /// still to come against concurrent uploads of the same user.
    async fn start_upload(
        &self,
        raw: &str,
        size: u64,
        overwrite: bool,
        resume: bool,
    ) -> Outcome<Started> {
        let remote = path(raw)?;
        let slot = self.transfer_slot()?;
        let (upload, reservation, target_lock) =
            self.open_upload(remote, size, overwrite, resume).await?;
        Ok((upload, reservation, target_lock, slot))
    }

    /// [`Handler::start_upload`] without taking a place among the transfers (the caller
    /// holds one).
    async fn open_upload(
        &self,
        remote: RemotePath,
        size: u64,
        overwrite: bool,
        resume: bool,
    ) -> Outcome<Opened> {
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
            .begin_upload(&remote, size, overwrite, resume)
            .await?;
        // Partial data from before stays for a later resume (it is in the usage).
        let keep = upload.offset() > 0;
        if quota.is_none() && !new_entry {
            return Ok((upload, None, target_lock));
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
            return Ok((upload, None, target_lock));
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
                Ok((upload, Some(reservation), target_lock))
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
    pub(super) fn transfer_slot(&self) -> Outcome<OwnedSemaphorePermit> {
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

    /// Receives an upload: data frames until `PutFinish`, then the verdict. A failure while
    /// writing is remembered and answered at `PutFinish`, so the stream stays in step.
    async fn put<S>(
        &self,
        conn: &mut Connection<S>,
        target: PutTarget<'_>,
        preserve: Option<Attributes>,
    ) -> Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let PutTarget {
            raw,
            size,
            overwrite,
            resume,
        } = target;
        let (mut upload, reservation, _target_lock, _slot) =
            match self.start_upload(raw, size, overwrite, resume).await {
                Ok(started) => started,
                Err(err) => {
                    self.log::<()>("put", raw, &Err(err.clone()));
                    return conn.write(&reply::<()>(Err(err))).await;
                }
            };
        if let Some(attributes) = preserve {
            upload.preserve(attributes);
        }
        let offset = upload.offset();
        let started = std::time::Instant::now();
        conn.write(&Response::PutReady { offset }).await?;
        let mut failure: Option<StorageError> = None;
        // An upload must make progress: frames that carry no data do not count.
        let stall = self.shared.limits.stall_timeout;
        let mut progressed = tokio::time::Instant::now();
        loop {
            let next = tokio::time::timeout_at(progressed + stall, conn.read::<Request>())
                .await
                .map_err(|_| Error::Timeout)
                .and_then(|read| read?.ok_or(Error::ConnectionClosed))
                .and_then(|request| match request {
                    Request::PutData { data } if data.is_empty() => {
                        if progressed.elapsed() >= stall {
                            Err(Error::Timeout)
                        } else {
                            Ok(Request::PutData { data })
                        }
                    }
                    other => Ok(other),
                });
            match next {
                Ok(Request::PutData { data }) => {
                    if !data.is_empty() {
                        progressed = tokio::time::Instant::now();
                    }
                    if failure.is_none()
                        && let Err(err) = upload.write(data).await
                    {
                        failure = Some(err);
                    }
                }
                Ok(Request::PutFinish { checksum }) => {
                    let result = match failure {
                        Some(err) => {
                            upload.abort(false).await;
                            Err(err)
                        }
                        None => {
                            let room = self.room_at_finish(reservation.as_ref()).await;
                            upload.finish(checksum, room).await
                        }
                    };
                    drop(reservation);
                    self.record_put(raw, size, offset, started, &result);
                    return conn.write(&reply(result)).await;
                }
                Ok(_) => {
                    // Keep what arrived: the client can resume once it behaves.
                    upload.abort(true).await;
                    return Err(Error::Remote {
                        code: ErrorCode::UnexpectedRequest,
                        message: "an upload is in progress: expected PutData or PutFinish".into(),
                    });
                }
                Err(err) => {
                    // The connection broke: keep the partial data for `put -c`.
                    upload.abort(true).await;
                    tracing::info!(user = %self.user, peer = %self.peer, path = %raw.escape_debug(), "upload interrupted; partial data kept for resume");
                    return Err(err);
                }
            }
        }
    }

    /// A whole file in one request ([`Request::Put`]): stored, synced and renamed into
    /// place like any upload; the answer. Several of a session's run at once (their disk
    /// syncs overlap); the session holds one place among the transfers for all of them.
    pub(super) async fn put_whole(
        &self,
        raw: String,
        overwrite: bool,
        preserve: Option<Attributes>,
        data: Bytes,
        checksum: Digest,
    ) -> Response {
        let size = data.len() as u64;
        let started = std::time::Instant::now();
        let result = async {
            let remote = path(&raw)?;
            if data.len() > MAX_CHUNK {
                return Err(StorageError::new(
                    ErrorCode::UnexpectedRequest,
                    format!(
                        "a Put carries at most {MAX_CHUNK} bytes; send larger files with PutStart"
                    ),
                ));
            }
            let (mut upload, reservation, _target_lock) =
                self.open_upload(remote, size, overwrite, false).await?;
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
            upload.finish(checksum, room).await
        }
        .await;
        self.record_put(&raw, size, 0, started, &result);
        reply(result)
    }

    /// Sends a file from `offset`, then the checksum of all of it.
    async fn get<S>(&self, conn: &mut Connection<S>, raw: &str, offset: u64) -> Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let opened = async {
            let remote = path(raw)?;
            let slot = self.transfer_slot()?;
            Outcome::Ok((self.tree.open_download(&remote, offset).await?, slot))
        }
        .await;
        let (mut download, _slot) = match opened {
            Ok(download) => download,
            Err(err) => {
                self.log::<()>("get", raw, &Err(err.clone()));
                return conn.write(&reply::<()>(Err(err))).await;
            }
        };
        let started = std::time::Instant::now();
        let size = download.size();
        let attributes = download.attributes();
        conn.write(&Response::GetReady {
            size,
            offset,
            attributes,
        })
        .await?;
        loop {
            match download.next_chunk().await {
                Ok(Some(data)) => conn.write(&Response::Data { data }).await?,
                Ok(None) => break,
                Err(err) => {
                    self.log::<()>("get", raw, &Err(err.clone()));
                    return conn.write(&reply::<()>(Err(err))).await;
                }
            }
        }
        self.audit_transfer("get", raw, size - offset, started, &Ok(()));
        tracing::info!(
            user = %self.user,
            peer = %self.peer,
            command = "get",
            path = %raw.escape_debug(),
            bytes = size - offset,
            millis = started.elapsed().as_millis() as u64,
            "transfer"
        );
        let checksum = download.checksum();
        conn.write(&Response::GetDone { checksum }).await
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
    fn record_put(
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

/// The audit log's `result`: `ok`, or the error code.
fn outcome<T>(result: &Outcome<T>) -> String {
    match result {
        Ok(_) => "ok".to_owned(),
        Err(err) => format!("{:?}", err.code),
    }
}

fn unexpected(message: &str) -> Response {
    Response::Error {
        code: ErrorCode::UnexpectedRequest,
        message: message.into(),
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
