//! Where users' files live, behind two traits: [`Storage`] opens a user's home and hands back
//! a [`UserTree`], which can only reach what lies beneath that home. The embedded default,
//! [`FsStorage`] (`disk`), is a directory on disk; `object` keeps homes in an S3-compatible
//! store.
//!
//! The jail is enforced by directory handles (cap-std `Dir`), not by comparing strings: every
//! path is resolved beneath the home handle, `..` and symlinks included, and anything that
//! would resolve outside it fails. Once restricted, never unrestricted.
//!
//! - `dirs`: what uploads into one directory share (its syncs, its sweeps).
//! - `walk`: iterative, depth-bounded walks (measuring a tree, listing one, removing one).
//! - `ledger`: each home's usage, counted once and kept up to date.

pub mod deadline;
mod dirs;
mod disk;
mod ledger;
pub mod object;
mod walk;

use std::collections::HashMap;
use std::io::{self, Seek};
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use cap_std::ambient_authority;
use cap_std::fs::{Dir, Metadata, OpenOptions, ReadDir};

use crate::checksum::{Checksum, Digest};
use crate::commands::{Attributes, ENTRIES_PER_FRAME, Entry, EntryKind, ErrorCode};
use crate::error::StorageError;
use crate::paths::{MAX_DEPTH, PARTIAL_PREFIX, RemotePath, partial_name};
use crate::pipeline::{
    FileReader, FileSink, apply_attributes, attributes_of, hash_exactly, hash_held,
};
use crate::username::Username;
pub use disk::FsStorage;
use ledger::Ledger;
pub use walk::{DIRECTORY_BYTES, Usage};

/// Largest file the server accepts, whatever the quota: far beyond any real upload, far
/// below where sizes and offsets could overflow.
pub const MAX_FILE_SIZE: u64 = 1 << 44;

/// Walks (usage counts, `rm -r`, depth checks of a move) running at once across all users:
/// each holds up to [`MAX_DEPTH`] directory handles.
const MAX_CONCURRENT_WALKS: usize = 8;

/// A place that holds every user's tree.
#[async_trait]
pub trait Storage: Send + Sync {
    /// Opens (creating it on first use) the home of `user`.
    async fn open_home(&self, user: &Username) -> Result<Arc<dyn UserTree>, StorageError>;
}

/// One user's tree; every path is relative to its home and cannot leave it.
#[async_trait]
pub trait UserTree: Send + Sync {
    /// Creates a directory; with `parents`, also its missing parents, and an existing
    /// directory is no error.
    async fn mkdir(&self, path: &RemotePath, parents: bool) -> Result<(), StorageError>;
    /// Lists a directory (in no particular order), or describes a single non-directory, a
    /// page at a time: memory stays bounded whatever the directory's size.
    async fn list(&self, path: &RemotePath) -> Result<Box<dyn Listing>, StorageError>;
    /// Lists a whole tree, a directory before what it holds: entries named by their path
    /// from `path` (`a/b/c`), pages of at most [`crate::commands::ENTRIES_PER_FRAME`].
    async fn list_tree(&self, path: &RemotePath) -> Result<Box<dyn Listing>, StorageError>;
    /// Describes one entry without following a final symlink.
    async fn stat(&self, path: &RemotePath) -> Result<Entry, StorageError>;
    /// What `path` leads to: a link followed, inside the home (an engine without links
    /// answers as [`UserTree::stat`]).
    async fn stat_target(&self, path: &RemotePath) -> Result<Entry, StorageError> {
        self.stat(path).await
    }
    /// Bytes an interrupted upload to `path` kept for a resume, if it kept any: what a
    /// resume of it continues from.
    async fn kept_partial(&self, path: &RemotePath) -> Result<Option<u64>, StorageError>;
    /// Removes a file or symlink; with `recursive`, a directory tree too. Never the home.
    async fn remove(&self, path: &RemotePath, recursive: bool) -> Result<(), StorageError>;
    /// Makes a symbolic link at `path` to `target` (which the caller checked stays inside
    /// the home); nothing may be at `path` yet. A store without links refuses.
    async fn symlink(&self, path: &RemotePath, target: &str) -> Result<(), StorageError> {
        let _ = (path, target);
        Err(no_links())
    }
    /// What the symbolic link at `path` points to.
    async fn read_link(&self, path: &RemotePath) -> Result<String, StorageError> {
        let _ = path;
        Err(no_links())
    }
    /// Gives the file or directory at `path` this modification time and/or these permission
    /// bits (`chmod`, `touch` over SFTP). The owner keeps what the server needs: read and
    /// write on files, and search on directories.
    async fn set_attributes(
        &self,
        path: &RemotePath,
        modified: Option<i64>,
        mode: Option<u32>,
    ) -> Result<(), StorageError> {
        let _ = (path, modified, mode);
        Err(StorageError::new(
            ErrorCode::Unsupported,
            "this store keeps no times or permission bits but an upload's own",
        ))
    }
    /// Removes an empty directory. Never the home.
    async fn rmdir(&self, path: &RemotePath) -> Result<(), StorageError>;
    /// Renames `from` to `to`; replaces an existing `to` only with `overwrite`.
    async fn rename(
        &self,
        from: &RemotePath,
        to: &RemotePath,
        overwrite: bool,
    ) -> Result<(), StorageError>;
    /// What the user's tree holds (partial uploads included), from a running count.
    async fn usage(&self) -> Result<Usage, StorageError>;
    /// Starts an upload of `size` to `path`: data goes to a hidden partial file beside
    /// the target, which only [`Upload::finish`] renames into place.
    async fn begin_upload(
        &self,
        path: &RemotePath,
        size: Announced,
        overwrite: bool,
        resume: bool,
    ) -> Result<Box<dyn Upload>, StorageError>;
    /// Size and checksum of a whole regular file.
    async fn checksum(&self, path: &RemotePath) -> Result<(u64, Digest), StorageError>;
    /// Opens a file for download from `offset`.
    async fn open_download(
        &self,
        path: &RemotePath,
        offset: u64,
    ) -> Result<Box<dyn Download>, StorageError>;
}

/// How much an upload brings, as announced when it begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announced {
    /// Exactly this many bytes, the whole file checked at the end (the native protocol
    /// announces the size and sends a checksum).
    Exactly(u64),
    /// At most this many bytes: the file is what has arrived when it is closed (SFTP opens
    /// a file and writes to it; neither size nor checksum is known before).
    AtMost(u64),
}

impl Announced {
    /// The most bytes the upload may bring.
    pub fn limit(self) -> u64 {
        match self {
            Announced::Exactly(size) | Announced::AtMost(size) => size,
        }
    }

    /// The size the finished file must have, `written` having arrived.
    pub fn expected(self, written: u64) -> u64 {
        match self {
            Announced::Exactly(size) => size,
            Announced::AtMost(_) => written,
        }
    }
}

impl From<u64> for Announced {
    fn from(size: u64) -> Self {
        Announced::Exactly(size)
    }
}

/// An upload in progress.
#[async_trait]
pub trait Upload: Send {
    /// Bytes already held (from an interrupted upload being resumed); data continues here.
    fn offset(&self) -> u64;
    /// Bytes of the target this upload would replace, as it stood when the upload began.
    fn replaces(&self) -> u64;
    /// Whether the upload counts among its home's entries while it runs (a partial file on
    /// disk does; an object store's upload in progress does not, and is held for instead).
    fn counted(&self) -> bool;
    /// Appends the next chunk.
    async fn write(&mut self, data: Bytes) -> Result<(), StorageError>;
    /// Gives the finished file this modification time and these permission bits.
    fn preserve(&mut self, attributes: Attributes);
    /// Whether [`Upload::finish`] makes the file and its rename durable before it answers
    /// (the default), or leaves them to the system's own writeback, as OpenSSH's server
    /// does unless its client asks (`fsync@openssh.com`). A store whose every write is
    /// durable ignores it.
    fn set_durable(&mut self, durable: bool) {
        let _ = durable;
    }
    /// Checks the size announced and the `checksum` (the sender's, when it has one) of the
    /// whole file, and renames it into place. With `room`,
    /// usage may grow by at most that many bytes (the new file less the one it replaces
    /// *now*, which may differ from when the upload began), or the quota refuses it. On a
    /// refusal the partial data is discarded and the target left as it was.
    async fn finish(
        self: Box<Self>,
        checksum: Option<Digest>,
        room: Option<u64>,
    ) -> Result<(), StorageError>;
    /// Stops without replacing the target; `keep` leaves the partial data for a resume.
    async fn abort(self: Box<Self>, keep: bool);
}

/// A listing in progress.
#[async_trait]
pub trait Listing: Send {
    /// The next entries (at most [`crate::commands::ENTRIES_PER_FRAME`]); `None` at the end.
    async fn next_page(&mut self) -> Result<Option<Vec<Entry>>, StorageError>;
}

/// A download in progress.
#[async_trait]
pub trait Download: Send {
    /// Size of the whole file.
    fn size(&self) -> u64;
    /// The next chunk (at most [`crate::commands::MAX_CHUNK`] bytes); `None` at the end.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, StorageError>;
    /// Checksum of the whole file, once every chunk has been read.
    fn checksum(&self) -> Digest;
    /// The file's modification time and permission bits.
    fn attributes(&self) -> Option<Attributes>;
}

/// Interrupted uploads older than this are removed when another upload starts beside them.
pub const PARTIAL_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The refusal of a store that keeps no symbolic links.
fn no_links() -> StorageError {
    StorageError::new(
        ErrorCode::Unsupported,
        "this server's store keeps no symbolic links",
    )
}

fn refuse_reserved(path: &RemotePath) -> Result<(), StorageError> {
    if path
        .components()
        .iter()
        .any(|c| c.starts_with(object::keys::RESERVED_PREFIX))
    {
        return Err(StorageError::new(
            ErrorCode::InvalidPath,
            "names starting with .ftprep- are reserved",
        ));
    }
    Ok(())
}

/// What no back-end moves: the home, reserved names, a directory into itself.
fn refuse_bad_move(from: &RemotePath, to: &RemotePath) -> Result<(), StorageError> {
    for path in [from, to] {
        refuse_home(path)?;
        refuse_reserved(path)?;
    }
    if from.contains(to) {
        return Err(StorageError::new(
            ErrorCode::InvalidPath,
            "cannot move a directory into itself",
        ));
    }
    Ok(())
}

/// What no back-end accepts as an upload: the home, a reserved name, a file larger than
/// `largest` (what the server and its storage hold at most).
fn refuse_upload(path: &RemotePath, size: u64, largest: u64) -> Result<(), StorageError> {
    refuse_home(path)?;
    refuse_reserved(path)?;
    if size > largest {
        return Err(StorageError::new(
            ErrorCode::QuotaExceeded,
            format!(
                "a file may be at most {} on this server",
                crate::size::format_size(largest)
            ),
        ));
    }
    Ok(())
}

/// An upload's next `len` bytes must fit in the `size` it announced (`written` so far).
fn refuse_beyond_announced(written: u64, len: u64, size: u64) -> Result<(), StorageError> {
    if written.checked_add(len).is_none_or(|end| end > size) {
        return Err(StorageError::new(
            ErrorCode::UnexpectedRequest,
            format!("more data than the {size} bytes announced"),
        ));
    }
    Ok(())
}

/// A tree deeper than the server walks.
fn too_deep() -> StorageError {
    StorageError::new(
        ErrorCode::InvalidPath,
        format!("the tree would be more than {MAX_DEPTH} levels deep"),
    )
}

fn refuse_home(path: &RemotePath) -> Result<(), StorageError> {
    if path.is_home() {
        return Err(StorageError::new(
            ErrorCode::PermissionDenied,
            "refusing to touch your home directory itself",
        ));
    }
    Ok(())
}
