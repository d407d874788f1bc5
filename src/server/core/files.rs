//! One logged-in user's files, as every front end reaches them: paths parsed (the jail),
//! the quotas by bytes and by entries with the holds of uploads in flight, one upload per
//! target, places among the transfers, and the audit log. Each operation answers with a
//! typed [`StorageError`]; how it travels (a frame, an SFTP status, an HTTP status) is the
//! front end's business.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use crate::checksum::Digest;
use crate::commands::{Entry, EntryKind, ErrorCode};
use crate::error::{Error, PathError, StorageError};
use crate::paths::{MAX_PATH_LEN, RemotePath};
use crate::server::audit::Record;
use crate::server::shared::Shared;
use crate::server::storage::{DIRECTORY_BYTES, Listing, Usage, UserTree};
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
    /// The front end serving them (`native`, `sftp`), named in the audit.
    pub(crate) via: &'static str,
}

/// A user's limits: bytes, and entries (files, directories, links).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct UserQuota {
    pub(crate) bytes: Option<u64>,
    pub(crate) entries: Option<u64>,
}

/// A path as a client typed it, checked: the jail's first gate.
pub(super) fn path(raw: &str) -> Outcome<RemotePath> {
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

    /// What `raw` leads to, a link followed inside the home.
    pub(crate) async fn stat_target(&self, raw: &str) -> Outcome<Entry> {
        self.tree.stat_target(&path(raw)?).await
    }

    /// Bytes an interrupted upload to `raw` kept for its resume, if any. Only the user's
    /// own requests reach it; no listing shows the partial data.
    pub(crate) async fn kept_partial(&self, raw: &str) -> Outcome<Option<u64>> {
        self.tree.kept_partial(&path(raw)?).await
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

    /// The user's current quota (re-read, so `ftpd quota` applies to running sessions).
    pub(super) async fn quota(&self) -> Outcome<Option<u64>> {
        Ok(self.quotas().await?.bytes)
    }

    /// The user's byte and file-count quotas (re-read, like [`UserFiles::quota`]).
    pub(super) async fn quotas(&self) -> Outcome<UserQuota> {
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
    pub(super) async fn check_room_for_an_entry(&self, max: Option<u64>) -> Outcome<()> {
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
    pub(super) async fn check_room_for(
        &self,
        quotas: UserQuota,
        size: u64,
        what: &str,
    ) -> Outcome<()> {
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

    /// Logs a command; changes also go to the audit log.
    pub(super) fn log<T>(&self, command: &str, path: &str, result: &Outcome<T>) {
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
            record.via = Some(self.via);
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
pub(super) fn outcome<T>(result: &Outcome<T>) -> String {
    match result {
        Ok(_) => "ok".to_owned(),
        Err(err) => format!("{:?}", err.code),
    }
}
