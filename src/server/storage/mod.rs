//! Where users' files live, behind two traits: [`Storage`] opens a user's home and hands back
//! a [`UserTree`], which can only reach what lies beneath that home. The embedded default,
//! [`FsStorage`], is a directory on disk; `object` keeps homes in an S3-compatible store.
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
use ledger::Ledger;
pub use walk::{DIRECTORY_BYTES, Totals as Usage};

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
    /// Starts an upload of `size` bytes to `path`: data goes to a hidden partial file beside
    /// the target, which only [`Upload::finish`] renames into place.
    async fn begin_upload(
        &self,
        path: &RemotePath,
        size: u64,
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
    /// Checks size and checksum of the whole file and renames it into place. With `room`,
    /// usage may grow by at most that many bytes (the new file less the one it replaces
    /// *now*, which may differ from when the upload began), or the quota refuses it. On a
    /// refusal the partial data is discarded and the target left as it was.
    async fn finish(
        self: Box<Self>,
        checksum: Digest,
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

fn refuse_home(path: &RemotePath) -> Result<(), StorageError> {
    if path.is_home() {
        return Err(StorageError::new(
            ErrorCode::PermissionDenied,
            "refusing to touch your home directory itself",
        ));
    }
    Ok(())
}

/// Where users' files live: a directory (the embedded default) or an object store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageRoot {
    /// `ROOT/<user>` directories on the local filesystem.
    Dir(std::path::PathBuf),
    /// `s3://bucket/prefix`: one prefix per user in an S3-compatible store.
    Object(object::ObjectLocation),
}

impl From<std::path::PathBuf> for StorageRoot {
    fn from(path: std::path::PathBuf) -> Self {
        StorageRoot::Dir(path)
    }
}

impl std::str::FromStr for StorageRoot {
    type Err = std::convert::Infallible;

    fn from_str(typed: &str) -> Result<Self, Self::Err> {
        Ok(if typed.starts_with("s3://") {
            StorageRoot::Object(object::ObjectLocation {
                url: typed.to_owned(),
                options: Vec::new(),
            })
        } else {
            StorageRoot::Dir(typed.into())
        })
    }
}

impl std::fmt::Display for StorageRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageRoot::Dir(path) => write!(f, "{}", path.display()),
            StorageRoot::Object(location) => f.write_str(&location.url),
        }
    }
}

/// The embedded default: `ROOT/<user>` directories on the local filesystem.
#[derive(Debug, Clone)]
pub struct FsStorage {
    root: Arc<Dir>,
    /// Bounds the walks running at once, and so the descriptors they hold.
    walks: Arc<tokio::sync::Semaphore>,
    /// Homes in use, shared by all of a user's sessions: one directory handle per user, not
    /// per connection.
    homes: Arc<Mutex<HashMap<Username, Weak<FsTree>>>>,
}

impl FsStorage {
    /// Opens the root directory, creating it (mode 0700) if it does not exist.
    ///
    /// # Errors
    /// I/O errors creating or opening the root.
    pub fn open(root: &Path) -> io::Result<Self> {
        if !root.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(root)?;
        }
        let dir = Dir::open_ambient_dir(root, ambient_authority())?;
        Ok(FsStorage {
            root: Arc::new(dir),
            walks: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_WALKS)),
            homes: Arc::default(),
        })
    }
}

use std::os::unix::fs::DirBuilderExt;

/// Runs a few metadata calls on the user's tree (`stat`, `mkdir`, `rmdir` of an empty
/// directory, opening the home, the first [`INLINE_ENTRIES`] of a listing) right here, on
/// the async thread, as nginx does with `open` and `stat`: on a local file system they take
/// microseconds, less than handing them to another thread and back (mkdir+rmdir round
/// trips: 8,100-8,400/s against 6,200-6,700/s; a login with `ls`: 180 against 265 us of
/// server CPU). Whatever reads or writes data, syncs, walks a tree, or may free a large
/// file (unlink, a rename over a file) goes through [`blocking`].
fn metadata_only<T>(work: impl FnOnce() -> Result<T, StorageError>) -> Result<T, StorageError> {
    work()
}

/// Runs blocking filesystem work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StorageError::new(ErrorCode::Internal, format!("storage task failed: {e}")))?
}

#[async_trait]
impl Storage for FsStorage {
    async fn open_home(&self, user: &Username) -> Result<Arc<dyn UserTree>, StorageError> {
        let cached = self
            .homes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(user)
            .and_then(Weak::upgrade);
        let name = user.as_str();
        // Two `stat`s for a home already open, a `mkdir` and an `open` at first: here, as
        // every login does it.
        let tree = metadata_only(|| {
            // Reuse the open handle while it is still the directory at ROOT/<name>.
            if let Some(tree) = cached
                && let (Ok(on_disk), Ok(held)) =
                    (self.root.symlink_metadata(name), tree.home.dir_metadata())
                && same_directory(&on_disk, &held)
            {
                return Ok(tree);
            }
            // 0700 whatever the umask: a home is its user's alone.
            let mut private = cap_std::fs::DirBuilder::new();
            cap_std::fs::DirBuilderExt::mode(&mut private, 0o700);
            match self.root.create_dir_with(name, &private) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e.into()),
                _ => {}
            }
            Ok(Arc::new(FsTree {
                home: Arc::new(self.root.open_dir(name)?),
                walks: Arc::clone(&self.walks),
                ledger: Arc::default(),
                directories: Arc::default(),
            }))
        })?;
        let mut homes = self.homes.lock().unwrap_or_else(|p| p.into_inner());
        homes.retain(|_, weak| weak.strong_count() > 0);
        homes.insert(user.clone(), Arc::downgrade(&tree));
        Ok(tree)
    }
}

fn same_directory(a: &Metadata, b: &Metadata) -> bool {
    use cap_std::fs::MetadataExt;
    a.is_dir() && a.dev() == b.dev() && a.ino() == b.ino()
}

/// One user's home on disk, held as a directory handle.
#[derive(Debug)]
struct FsTree {
    home: Arc<Dir>,
    walks: Arc<tokio::sync::Semaphore>,
    /// The running count of what the home holds.
    ledger: Arc<Ledger>,
    /// Syncs and sweeps of the directories uploads go into.
    directories: Arc<dirs::Directories>,
}

impl FsTree {
    /// Runs a walk off the async threads, once one of the few walk slots is free.
    async fn walk<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let _slot = self
            .walks
            .acquire()
            .await
            .map_err(|_| StorageError::new(ErrorCode::Internal, "storage is shutting down"))?;
        blocking(work).await
    }
}

fn too_deep() -> StorageError {
    StorageError::new(
        ErrorCode::InvalidPath,
        format!("the tree would be more than {MAX_DEPTH} levels deep"),
    )
}

fn entry(name: String, meta: &Metadata) -> Entry {
    let file_type = meta.file_type();
    let kind = if file_type.is_dir() {
        EntryKind::Directory
    } else if file_type.is_symlink() {
        EntryKind::Symlink
    } else if file_type.is_file() {
        EntryKind::File
    } else {
        EntryKind::Other
    };
    let modified = meta
        .modified()
        .ok()
        .map(|t| t.into_std())
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_secs()).ok());
    Entry {
        name,
        kind,
        size: meta.len(),
        modified,
    }
}

#[async_trait]
impl UserTree for FsTree {
    async fn mkdir(&self, path: &RemotePath, parents: bool) -> Result<(), StorageError> {
        refuse_reserved(path)?;
        let (home, ledger) = (&self.home, &self.ledger);
        let is_home = path.is_home();
        let rel = path.to_relative();
        let prefixes: Vec<_> = (1..=path.depth())
            .map(|n| {
                path.components()[..n]
                    .iter()
                    .collect::<std::path::PathBuf>()
            })
            .collect();
        metadata_only(|| {
            if parents {
                // One level at a time, so each directory made is counted.
                for prefix in &prefixes {
                    match home.create_dir(prefix) {
                        Ok(()) => ledger.add(Usage::entry(true, 0)),
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                            if !home.metadata(prefix)?.is_dir() {
                                return Err(StorageError::new(
                                    ErrorCode::AlreadyExists,
                                    "already exists",
                                ));
                            }
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                return Ok(());
            }
            if is_home {
                return Err(StorageError::new(
                    ErrorCode::AlreadyExists,
                    "already exists",
                ));
            }
            home.create_dir(&rel).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => StorageError::new(
                    ErrorCode::NotFound,
                    "parent directory does not exist (use -p)",
                ),
                _ => StorageError::from(e),
            })?;
            ledger.add(Usage::entry(true, 0));
            Ok(())
        })
    }

    async fn symlink(&self, path: &RemotePath, target: &str) -> Result<(), StorageError> {
        refuse_reserved(path)?;
        if path.is_home() {
            return Err(StorageError::new(
                ErrorCode::AlreadyExists,
                "already exists",
            ));
        }
        let rel = path.to_relative();
        metadata_only(|| {
            self.home
                .symlink_contents(target, &rel)
                .map_err(|e| match e.kind() {
                    io::ErrorKind::NotFound => {
                        StorageError::new(ErrorCode::NotFound, "parent directory does not exist")
                    }
                    _ => StorageError::from(e),
                })?;
            // Counted as a walk measures it: the link's own size, its target's length.
            self.ledger.add(Usage::entry(
                false,
                u64::try_from(target.len()).unwrap_or(u64::MAX),
            ));
            Ok(())
        })
    }

    async fn read_link(&self, path: &RemotePath) -> Result<String, StorageError> {
        refuse_reserved(path)?;
        let rel = path.to_relative();
        metadata_only(|| {
            if !self.home.symlink_metadata(&rel)?.is_symlink() {
                return Err(StorageError::new(
                    ErrorCode::InvalidPath,
                    "not a symbolic link",
                ));
            }
            let target = self.home.read_link_contents(&rel)?;
            target.into_os_string().into_string().map_err(|_| {
                StorageError::new(ErrorCode::InvalidPath, "the link's target is not UTF-8")
            })
        })
    }

    async fn list_tree(&self, path: &RemotePath) -> Result<Box<dyn Listing>, StorageError> {
        refuse_reserved(path)?;
        let home = Arc::clone(&self.home);
        let rel = path.to_relative();
        let root = blocking(move || {
            if !home.metadata(&rel)?.is_dir() {
                return Err(StorageError::new(
                    ErrorCode::NotADirectory,
                    "not a directory",
                ));
            }
            Ok(home.open_dir(&rel)?)
        })
        .await?;
        Ok(paged(move |emit| {
            walk::each_entry(&root, |name, meta| emit(entry(name, &meta)))
        }))
    }

    async fn list(&self, path: &RemotePath) -> Result<Box<dyn Listing>, StorageError> {
        refuse_reserved(path)?;
        let rel = path.to_relative();
        let name = path.file_name().unwrap_or(".").to_owned();
        let (mut items, mut first) = match metadata_only(|| {
            let meta = self.home.metadata(&rel)?;
            if !meta.is_dir() {
                return Ok(Err(entry(name, &meta)));
            }
            Ok(Ok(self.home.read_dir(&rel)?))
        })? {
            Err(single) => return Ok(FsListing::ready(vec![single])),
            Ok(items) => (items, Vec::new()),
        };
        // The first few entries here: a small directory is listed without a thread hop.
        let ended = metadata_only(|| {
            Ok(list_entries(&mut items, &mut |entry| {
                first.push(entry);
                first.len() < INLINE_ENTRIES
            })?)
        })?;
        if ended {
            return Ok(FsListing::ready(first));
        }
        Ok(paged(move |emit| {
            for entry in first {
                if !emit(entry) {
                    return Ok(());
                }
            }
            list_entries(&mut items, emit).map(drop)
        }))
    }

    async fn stat(&self, path: &RemotePath) -> Result<Entry, StorageError> {
        refuse_reserved(path)?;
        let name = path.file_name().unwrap_or("/").to_owned();
        metadata_only(|| {
            Ok(entry(
                name,
                &self.home.symlink_metadata(path.to_relative())?,
            ))
        })
    }

    async fn remove(&self, path: &RemotePath, recursive: bool) -> Result<(), StorageError> {
        refuse_home(path)?;
        refuse_reserved(path)?;
        let home = Arc::clone(&self.home);
        let ledger = Arc::clone(&self.ledger);
        let rel = path.to_relative();
        let parent = path.parent().to_relative();
        let name = path.file_name().unwrap_or_default().to_owned();
        let meta = {
            let (home, rel) = (Arc::clone(&home), rel.clone());
            blocking(move || Ok(home.symlink_metadata(&rel)?)).await?
        };
        if !meta.is_dir() {
            return blocking(move || {
                home.remove_file(&rel)?;
                ledger.remove(Usage::entry(false, meta.len()));
                Ok(())
            })
            .await;
        }
        if !recursive {
            return Err(StorageError::new(
                ErrorCode::IsADirectory,
                "is a directory (use rmdir, or rm -r)",
            ));
        }
        self.walk(move || {
            let parent = home.open_dir(&parent)?;
            let mut removed = Usage::default();
            let result = walk::remove_tree(&parent, &name, &home, &mut removed);
            // Whatever went before a failure is gone: count it either way.
            ledger.remove(removed);
            Ok(result?)
        })
        .await
    }

    async fn rmdir(&self, path: &RemotePath) -> Result<(), StorageError> {
        refuse_home(path)?;
        refuse_reserved(path)?;
        let (home, ledger) = (&self.home, &self.ledger);
        let rel = path.to_relative();
        metadata_only(|| {
            if !home.symlink_metadata(&rel)?.is_dir() {
                return Err(StorageError::new(
                    ErrorCode::NotADirectory,
                    "not a directory",
                ));
            }
            home.remove_dir(&rel)?;
            ledger.remove(Usage::entry(true, 0));
            Ok(())
        })
    }

    async fn rename(
        &self,
        from: &RemotePath,
        to: &RemotePath,
        overwrite: bool,
    ) -> Result<(), StorageError> {
        refuse_bad_move(from, to)?;
        let home = Arc::clone(&self.home);
        let ledger = Arc::clone(&self.ledger);
        // A directory moved deeper must still fit under the depth bound with all it holds.
        let room = MAX_DEPTH - to.depth().min(MAX_DEPTH);
        let deeper = to.depth() > from.depth();
        let (from, to) = (from.to_relative(), to.to_relative());
        let is_dir = {
            let (home, from) = (Arc::clone(&home), from.clone());
            blocking(move || Ok(home.symlink_metadata(&from)?.is_dir())).await?
        };
        if is_dir && deeper {
            let (home, from) = (Arc::clone(&home), from.clone());
            self.walk(move || {
                let measured = walk::measure(&home.open_dir(&from)?, room + 1, true)?;
                if measured.deepest > room {
                    return Err(too_deep());
                }
                Ok(())
            })
            .await?;
        }
        blocking(move || {
            home.symlink_metadata(&from)?;
            let replaced = match home.symlink_metadata(&to) {
                Ok(_) if !overwrite => {
                    return Err(StorageError::new(
                        ErrorCode::AlreadyExists,
                        "target already exists (use -f to replace it)",
                    ));
                }
                Ok(meta) => Some(Usage::entry(meta.is_dir(), meta.len())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(e.into()),
            };
            home.rename(&from, &home, &to)?;
            // Only an empty directory or a file can be replaced by a rename.
            if let Some(replaced) = replaced {
                ledger.remove(replaced);
            }
            Ok(())
        })
        .await
    }

    async fn usage(&self) -> Result<Usage, StorageError> {
        if let Some(counted) = self.ledger.current() {
            return Ok(counted);
        }
        let (home, ledger) = (Arc::clone(&self.home), Arc::clone(&self.ledger));
        self.walk(move || {
            let measured = walk::measure(&home, MAX_DEPTH, false)?;
            if measured.unvisited > 0 {
                tracing::warn!(
                    directories = measured.unvisited,
                    "a home holds directories deeper than {MAX_DEPTH} levels (made outside \
                     the server); their contents are not counted"
                );
            }
            ledger.recounted(measured.totals);
            Ok(measured.totals)
        })
        .await
    }

    async fn begin_upload(
        &self,
        path: &RemotePath,
        size: u64,
        overwrite: bool,
        resume: bool,
    ) -> Result<Box<dyn Upload>, StorageError> {
        refuse_upload(path, size, MAX_FILE_SIZE)?;
        let home = Arc::clone(&self.home);
        let ledger = Arc::clone(&self.ledger);
        let directories = Arc::clone(&self.directories);
        let parent = path.parent().to_relative();
        let target = path.file_name().unwrap_or_default().to_owned();
        let upload = blocking(move || {
            let parent = home.open_dir(&parent).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => {
                    StorageError::new(ErrorCode::NotFound, "the target directory does not exist")
                }
                _ => e.into(),
            })?;
            let replaces = match parent.symlink_metadata(&target) {
                Ok(meta) if meta.is_dir() => {
                    return Err(StorageError::new(ErrorCode::IsADirectory, "is a directory"));
                }
                Ok(_) if !overwrite => {
                    return Err(StorageError::new(
                        ErrorCode::AlreadyExists,
                        "already exists (use -f to replace it)",
                    ));
                }
                Ok(meta) => meta.len(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
                Err(e) => return Err(e.into()),
            };
            let parent_id = dirs::id_of(&parent)?;
            if directories.sweep_due(parent_id) {
                remove_stale_partials(&parent, &ledger);
            }
            let part = partial_name(&target);
            let mut file = open_partial(&parent, &part, &ledger)?;
            let held_before = file.metadata()?.len();
            let mut held = Checksum::new();
            if resume {
                held = hash_held(&file, u64::MAX)?;
            }
            if held.count() > size || !resume {
                // Start over: also from the start, not from where the hash stopped reading.
                file.set_len(0)?;
                file.rewind()?;
                held = Checksum::new();
                ledger.resize(held_before, 0);
            }
            let offset = held.count();
            let incoming = size - offset;
            let free = free_space(&parent)?;
            if incoming > free {
                // Nothing of this upload stays; earlier data for a resume does.
                if offset == 0 {
                    drop(file);
                    discard_partial(&parent, &part, &ledger, 0);
                }
                return Err(StorageError::new(
                    ErrorCode::NoSpace,
                    format!(
                        "no space left on the server for {} (free: {})",
                        crate::size::format_size(incoming),
                        crate::size::format_size(free)
                    ),
                ));
            }
            Ok(FsUpload {
                parent: Arc::new(parent),
                parent_id,
                directories,
                ledger,
                target,
                part,
                writer: FileSink::new(file, held, incoming),
                written: offset,
                offset,
                size,
                replaces,
                overwrite,
                preserve: None,
            })
        })
        .await?;
        Ok(Box::new(upload))
    }

    async fn checksum(&self, path: &RemotePath) -> Result<(u64, Digest), StorageError> {
        refuse_reserved(path)?;
        let home = Arc::clone(&self.home);
        let rel = path.to_relative();
        blocking(move || {
            let (file, size) = open_regular(&home, &rel)?;
            Ok((size, hash_exactly(&file, size)?.digest()))
        })
        .await
    }

    async fn open_download(
        &self,
        path: &RemotePath,
        offset: u64,
    ) -> Result<Box<dyn Download>, StorageError> {
        refuse_reserved(path)?;
        let home = Arc::clone(&self.home);
        let rel = path.to_relative();
        let download = blocking(move || {
            let (file, size) = open_regular(&home, &rel)?;
            if offset > size {
                return Err(StorageError::new(
                    ErrorCode::InvalidPath,
                    format!("cannot resume at byte {offset}: the file has only {size}"),
                ));
            }
            // The checksum covers the whole file, so the part before `offset` is read too.
            let before = hash_exactly(&file, offset)?;
            let attributes = attributes_of(&file.metadata()?);
            Ok(FsDownload {
                reader: Some(FileReader::spawn(file, before, size - offset)),
                size,
                digest: None,
                attributes,
            })
        })
        .await?;
        Ok(Box::new(download))
    }
}

/// Opens a regular file for reading, with its size. Never waits on a FIFO or a device
/// someone placed in the home: opened without blocking, and only regular files are served.
fn open_regular(home: &Dir, rel: &Path) -> Result<(std::fs::File, u64), StorageError> {
    let mut options = OpenOptions::new();
    options.read(true);
    cap_std::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = home.open_with(rel, &options)?.into_std();
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(StorageError::new(
            ErrorCode::IsADirectory,
            "is a directory (use -r)",
        ));
    }
    if !meta.is_file() {
        return Err(StorageError::new(
            ErrorCode::PermissionDenied,
            "not a regular file; only regular files can be downloaded",
        ));
    }
    Ok((file, meta.len()))
}

/// Deletes interrupted uploads in `dir` that nobody resumed within [`PARTIAL_TTL`]. Whether
/// one is in use is decided by its upload alone, which holds its lock from start to rename
/// (see [`open_partial`]): not by its modification time, which a client chose (`put -p`
/// gives the partial file the original's time before it is renamed).
fn remove_stale_partials(dir: &Dir, ledger: &Ledger) {
    use cap_std::fs::OpenOptionsExt;
    use std::os::fd::AsRawFd;
    let Ok(entries) = dir.entries() else {
        return;
    };
    for item in entries.flatten() {
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(PARTIAL_PREFIX) {
            continue;
        }
        let Ok(meta) = item.metadata() else { continue };
        let old = meta
            .modified()
            .map(|t| {
                SystemTime::now()
                    .duration_since(t.into_std())
                    .unwrap_or_default()
                    > PARTIAL_TTL
            })
            .unwrap_or(false);
        if !old {
            continue;
        }
        let mut options = OpenOptions::new();
        options
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
        let Ok(file) = dir.open_with(name, &options) else {
            continue;
        };
        // SAFETY: flock on a descriptor this function owns; no memory is involved.
        let unused = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        // Removed while the lock is held: no upload can take it up in between.
        if unused && dir.remove_file(name).is_ok() {
            ledger.remove(Usage::entry(false, meta.len()));
        }
    }
}

/// Opens the regular file an upload is about to replace, if there is one. Replacing a file
/// frees its blocks, which takes the kernel ~0.2 s per GiB inside `rename`; while a handle
/// is open the freeing waits for its close, so the upload can be answered first.
fn hold_replaced(parent: &Dir, target: &str) -> Option<cap_std::fs::File> {
    use cap_std::fs::OpenOptionsExt;
    if !parent.symlink_metadata(target).is_ok_and(|m| m.is_file()) {
        return None;
    }
    let mut options = OpenOptions::new();
    // Never wait on a FIFO that took the file's place since the check, never follow a link.
    options
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW);
    parent.open_with(target, &options).ok()
}

/// Opens (creating it if need be) the partial file `part` of an upload and takes an
/// exclusive lock on it, so two uploads never write one partial file, even when a directory
/// was moved so that two targets share it. Only a regular file is accepted, never a link.
fn open_partial(parent: &Dir, part: &str, ledger: &Ledger) -> Result<std::fs::File, StorageError> {
    use cap_std::fs::OpenOptionsExt;
    use std::os::fd::AsRawFd;
    let mut options = OpenOptions::new();
    options
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    let file = match parent.open_with(part, &options) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            options.create_new(true);
            let file = parent.open_with(part, &options)?;
            ledger.add(Usage::entry(false, 0));
            file
        }
        Err(e) => return Err(e.into()),
    }
    .into_std();
    if !file.metadata()?.is_file() {
        return Err(StorageError::new(
            ErrorCode::PermissionDenied,
            "the partial file of this upload is not a regular file",
        ));
    }
    // SAFETY: flock on a descriptor this function owns; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::WouldBlock {
            return Err(StorageError::new(
                ErrorCode::Busy,
                "another upload of this file is in progress; try again when it ends",
            ));
        }
        return Err(err.into());
    }
    Ok(file)
}

/// Bytes an unprivileged writer may still put on the filesystem holding `dir`.
fn free_space(dir: &Dir) -> io::Result<u64> {
    use std::os::fd::AsRawFd;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: fstatvfs fills the struct it is given and reads nothing else.
    if unsafe { libc::fstatvfs(dir.as_raw_fd(), stats.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: initialised by the successful call above.
    let stats = unsafe { stats.assume_init() };
    #[allow(clippy::useless_conversion)] // u32 on some targets
    Ok(u64::from(stats.f_bavail).saturating_mul(u64::from(stats.f_frsize)))
}

/// An upload into a partial file in the target's directory.
struct FsUpload {
    parent: Arc<Dir>,
    parent_id: dirs::DirId,
    /// Where the rename into `parent` is made durable, with others' into it.
    directories: Arc<dirs::Directories>,
    /// The home's usage count, told what the upload adds once it ends.
    ledger: Arc<Ledger>,
    target: String,
    part: String,
    /// Writes and hashes chunks on a blocking thread while the next ones arrive, or holds
    /// a small upload's data until it finishes.
    writer: FileSink,
    /// Bytes the partial file held when the upload began (already in the count).
    offset: u64,
    written: u64,
    size: u64,
    replaces: u64,
    overwrite: bool,
    preserve: Option<Attributes>,
}

/// Removes the partial file of an upload that failed; `offset` bytes of it were counted.
fn discard_partial(parent: &Dir, part: &str, ledger: &Ledger, offset: u64) {
    if parent.remove_file(part).is_ok() {
        ledger.remove(Usage::entry(false, offset));
    }
}

#[async_trait]
impl Upload for FsUpload {
    fn counted(&self) -> bool {
        true
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
        self.writer.write(data).await?;
        self.written += len;
        Ok(())
    }

    async fn finish(
        self: Box<Self>,
        checksum: Digest,
        room: Option<u64>,
    ) -> Result<(), StorageError> {
        let FsUpload {
            parent,
            parent_id,
            directories,
            ledger,
            target,
            part,
            writer,
            offset,
            written,
            size,
            overwrite,
            preserve,
            ..
        } = *self;
        let ended = writer.end().await;
        let renamed_in = Arc::clone(&parent);
        let replaced = blocking(move || {
            let discard = |err: StorageError| {
                discard_partial(&parent, &part, &ledger, offset);
                Err(err)
            };
            if written != size {
                let message = format!("incomplete: {written} of {size} bytes arrived");
                return discard(StorageError::new(ErrorCode::UnexpectedRequest, message));
            }
            // A write failed (a full disk, say): nothing of this upload may remain.
            let (file, written) = match ended.written() {
                Ok(state) => state,
                Err(err) => return discard(err.into()),
            };
            if written.digest() != checksum {
                drop(file);
                return discard(StorageError::new(
                    ErrorCode::ChecksumMismatch,
                    "checksum mismatch: the data was damaged in transit; nothing was replaced",
                ));
            }
            // What is renamed into place must be the file this upload wrote, whole.
            let held = file.metadata()?;
            let named = parent.symlink_metadata(&part)?;
            if held.len() != size || !same_file(&named, &held) {
                drop(file);
                return discard(StorageError::new(
                    ErrorCode::Internal,
                    "the partial file changed during the upload; nothing was replaced",
                ));
            }
            if let Some(attributes) = preserve {
                apply_attributes(&file, attributes)?;
            }
            file.sync_all()?;
            let existing = match parent.symlink_metadata(&target) {
                Ok(_) if !overwrite => {
                    return Err(StorageError::new(
                        ErrorCode::AlreadyExists,
                        "already exists (use -f to replace it)",
                    ));
                }
                Ok(meta) if meta.is_dir() => {
                    return Err(StorageError::new(ErrorCode::IsADirectory, "is a directory"));
                }
                Ok(meta) => Some(meta.len()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(e.into()),
            };
            // The quota, against what this replaces now (it may have been moved away).
            let growth = (size - offset).saturating_sub(existing.unwrap_or(0));
            if let Some(room) = room
                && growth > room
            {
                drop(file);
                return discard(StorageError::new(
                    ErrorCode::QuotaExceeded,
                    "quota exceeded: the file this upload was to replace is gone, and without \
                     it the new one does not fit; nothing was replaced",
                ));
            }
            let replaced = hold_replaced(&parent, &target);
            parent.rename(&part, &parent, &target)?;
            drop(file);
            ledger.resize(offset, size);
            if let Some(len) = existing {
                ledger.remove(Usage::entry(false, len));
            }
            Ok(replaced)
        })
        .await?;
        // The rename is durable once the directory is synced: with the renames of other
        // uploads into it finishing at the same time, in one sync.
        let synced = directories.sync(parent_id, renamed_in).await;
        // The last handle on the replaced file goes after the reply, on a thread of its own.
        if let Some(file) = replaced {
            tokio::task::spawn_blocking(move || drop(file));
        }
        Ok(synced?)
    }

    async fn abort(self: Box<Self>, keep: bool) {
        let FsUpload {
            parent,
            ledger,
            part,
            writer,
            offset,
            ..
        } = *self;
        let ended = writer.end().await;
        let _ = blocking(move || {
            if keep && let Ok((file, held)) = ended.written() {
                let _ = file.sync_all();
                ledger.resize(offset, held.count());
                return Ok(());
            }
            discard_partial(&parent, &part, &ledger, offset);
            Ok(())
        })
        .await;
    }
}

fn same_file(a: &Metadata, b: &std::fs::Metadata) -> bool {
    use cap_std::fs::MetadataExt;
    use std::os::unix::fs::MetadataExt as _;
    a.dev() == b.dev() && a.ino() == b.ino()
}

/// A listing made on a blocking thread, one page ahead of the connection (a reader that
/// stops reading stops the thread too): `produce` hands each entry to `emit`, and stops
/// when `emit` says so. An error ends the listing after the pages before it.
fn paged(
    produce: impl FnOnce(&mut dyn FnMut(Entry) -> bool) -> io::Result<()> + Send + 'static,
) -> Box<dyn Listing> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::task::spawn_blocking(move || {
        let mut page = Vec::with_capacity(ENTRIES_PER_FRAME);
        let produced = produce(&mut |entry| {
            page.push(entry);
            if page.len() < ENTRIES_PER_FRAME {
                return true;
            }
            let full = std::mem::replace(&mut page, Vec::with_capacity(ENTRIES_PER_FRAME));
            tx.blocking_send(Ok(full)).is_ok()
        });
        let last = match produced {
            Ok(()) if page.is_empty() => return,
            Ok(()) => Ok(page),
            Err(e) => Err(e.into()),
        };
        let _ = tx.blocking_send(last);
    });
    Box::new(FsListing {
        ready: None,
        pages: Some(rx),
    })
}

/// A listing: entries at hand (a small directory, a non-directory), or pages from a thread
/// reading a directory.
struct FsListing {
    /// Entries read before any thread was needed: all of a small directory, or the
    /// description of a non-directory.
    ready: Option<Vec<Entry>>,
    pages: Option<tokio::sync::mpsc::Receiver<Result<Vec<Entry>, StorageError>>>,
}

impl FsListing {
    /// All of a listing, at hand; no page at all when `entries` is empty.
    fn ready(entries: Vec<Entry>) -> Box<dyn Listing> {
        Box::new(FsListing {
            ready: (!entries.is_empty()).then_some(entries),
            pages: None,
        })
    }
}

#[async_trait]
impl Listing for FsListing {
    async fn next_page(&mut self) -> Result<Option<Vec<Entry>>, StorageError> {
        if let Some(ready) = self.ready.take() {
            return Ok(Some(ready));
        }
        match &mut self.pages {
            Some(pages) => pages.recv().await.transpose(),
            None => Ok(None),
        }
    }
}

/// Entries of a directory that [`FsTree::list`] reads on the async thread before it hands
/// the rest to the blocking pool: a `stat` each, so at most this many microseconds there.
const INLINE_ENTRIES: usize = 64;

/// Feeds `emit` the entries `items` has left (without partial uploads, and without entries
/// removed since the directory was read) until it says stop. Whether the directory ended.
fn list_entries(items: &mut ReadDir, emit: &mut dyn FnMut(Entry) -> bool) -> io::Result<bool> {
    for item in items {
        let item = item?;
        let name = item.file_name().to_string_lossy().into_owned();
        if name.starts_with(PARTIAL_PREFIX) {
            continue;
        }
        match item.metadata() {
            Ok(meta) => {
                if !emit(entry(name, &meta)) {
                    return Ok(false);
                }
            }
            // Removed between reading the directory and looking at the entry.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// A download from an open file, read ahead on a blocking thread.
struct FsDownload {
    /// `None` once the end was reached.
    reader: Option<FileReader>,
    size: u64,
    digest: Option<Digest>,
    attributes: Attributes,
}

#[async_trait]
impl Download for FsDownload {
    fn size(&self) -> u64 {
        self.size
    }

    async fn next_chunk(&mut self) -> Result<Option<Bytes>, StorageError> {
        let Some(reader) = &mut self.reader else {
            return Ok(None);
        };
        if let Some(chunk) = reader.next().await? {
            return Ok(Some(chunk));
        }
        if let Some(reader) = self.reader.take() {
            self.digest = Some(reader.finish().await?);
        }
        Ok(None)
    }

    fn checksum(&self) -> Digest {
        self.digest.unwrap_or_default()
    }

    fn attributes(&self) -> Option<Attributes> {
        Some(self.attributes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    async fn tree() -> (tempfile::TempDir, Arc<dyn UserTree>) {
        let dir = tempfile::tempdir().unwrap();
        let storage = FsStorage::open(&dir.path().join("root")).unwrap();
        let user = Username::parse("alice").unwrap();
        let tree = storage.open_home(&user).await.unwrap();
        (dir, tree)
    }

    fn path(raw: &str) -> RemotePath {
        RemotePath::parse(raw).unwrap()
    }

    /// Every entry of a listing, sorted by name.
    async fn list_all(tree: &dyn UserTree, at: &str) -> Result<Vec<Entry>, StorageError> {
        let mut listing = tree.list(&path(at)).await?;
        let mut entries = Vec::new();
        while let Some(page) = listing.next_page().await? {
            assert!(page.len() <= ENTRIES_PER_FRAME);
            entries.extend(page);
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    #[tokio::test]
    async fn mkdir_and_list() {
        let (dir, tree) = tree().await;
        tree.mkdir(&path("a"), false).await.unwrap();
        let err = tree.mkdir(&path("a"), false).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::AlreadyExists);
        assert_eq!(
            tree.mkdir(&path("x/y"), false).await.unwrap_err().code,
            ErrorCode::NotFound
        );
        tree.mkdir(&path("x/y/z"), true).await.unwrap();
        tree.mkdir(&path("x/y"), true).await.unwrap();
        assert!(dir.path().join("root/alice/x/y/z").is_dir());
        let names: Vec<_> = list_all(&*tree, "").await.unwrap();
        let names: Vec<_> = names.iter().map(|e| (e.name.as_str(), e.kind)).collect();
        assert_eq!(
            names,
            [("a", EntryKind::Directory), ("x", EntryKind::Directory)]
        );
        assert_eq!(
            list_all(&*tree, "nope").await.unwrap_err().code,
            ErrorCode::NotFound
        );
    }

    #[tokio::test]
    async fn a_large_directory_is_listed_in_pages_whole() {
        let (dir, tree) = tree().await;
        let home = dir.path().join("root/alice");
        let count = ENTRIES_PER_FRAME * 2 + 5;
        for i in 0..count {
            std::fs::write(home.join(format!("f{i:05}")), b"").unwrap();
        }
        let mut listing = tree.list(&path("")).await.unwrap();
        let mut pages = 0;
        let mut names = std::collections::BTreeSet::new();
        while let Some(page) = listing.next_page().await.unwrap() {
            pages += 1;
            names.extend(page.into_iter().map(|e| e.name));
        }
        assert_eq!(pages, 3);
        assert_eq!(names.len(), count);
    }

    /// The first entries are read at once, the rest on a thread: around the point where one
    /// hands over to the other, every entry is listed once and a partial upload never.
    #[tokio::test]
    async fn listings_around_the_inline_entries_are_whole() {
        for count in [INLINE_ENTRIES - 1, INLINE_ENTRIES, INLINE_ENTRIES + 1] {
            let (dir, tree) = tree().await;
            let home = dir.path().join("root/alice");
            let expected: std::collections::BTreeSet<_> =
                (0..count).map(|i| format!("f{i:03}")).collect();
            for name in &expected {
                std::fs::write(home.join(name), b"").unwrap();
            }
            std::fs::write(home.join(partial_name("f000")), b"partial").unwrap();
            let listed: Vec<_> = list_all(&*tree, "")
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.name)
                .collect();
            assert_eq!(listed.len(), count, "{count} entries");
            assert_eq!(
                listed
                    .into_iter()
                    .collect::<std::collections::BTreeSet<_>>(),
                expected
            );
        }
    }

    /// Issue 11.14: `Get` of a FIFO blocked a server thread until a writer appeared.
    #[tokio::test]
    async fn a_fifo_is_refused_at_once_not_waited_on() {
        let (dir, tree) = tree().await;
        let fifo = dir.path().join("root/alice/pipe");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo reads a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let opened = tokio::time::timeout(
            Duration::from_secs(10),
            tree.open_download(&path("pipe"), 0),
        )
        .await
        .expect("answered without waiting for a writer");
        let err = opened.err().unwrap();
        assert_eq!(err.code, ErrorCode::PermissionDenied, "{err}");
    }

    #[tokio::test]
    async fn stale_partial_uploads_are_removed_and_fresh_ones_kept() {
        let (dir, tree) = tree().await;
        let home = dir.path().join("root/alice");
        let stale = home.join(partial_name("old-target"));
        let fresh = home.join(partial_name("recent-target"));
        for path in [&stale, &fresh] {
            std::fs::write(path, b"partial").unwrap();
        }
        let two_days_ago = SystemTime::now() - Duration::from_secs(2 * 24 * 60 * 60);
        std::fs::File::options()
            .write(true)
            .open(&stale)
            .unwrap()
            .set_modified(two_days_ago)
            .unwrap();
        let upload = tree
            .begin_upload(&path("new"), 3, false, false)
            .await
            .unwrap();
        upload.abort(false).await;
        assert!(!stale.exists());
        assert!(fresh.exists());
        // Partial files are neither listed nor reachable by name.
        assert!(list_all(&*tree, "").await.unwrap().is_empty());
        let name = partial_name("recent-target");
        assert_eq!(
            tree.stat(&path(&name)).await.unwrap_err().code,
            ErrorCode::InvalidPath
        );
        assert_eq!(
            tree.remove(&path(&name), false).await.unwrap_err().code,
            ErrorCode::InvalidPath
        );
    }

    /// Issue 27.14: homes were created with the umask's bits (0755 in an existing root
    /// under umask 022), so every local user could read every home.
    #[tokio::test]
    async fn a_home_is_created_0700_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("root")).unwrap();
        let storage = FsStorage::open(&dir.path().join("root")).unwrap();
        // SAFETY: umask only sets the process's file mode mask; 022 is the usual one.
        let before = unsafe { libc::umask(0o022) };
        let opened = storage.open_home(&Username::parse("alice").unwrap()).await;
        // SAFETY: as above, putting back what was there.
        unsafe { libc::umask(before) };
        opened.unwrap();
        let mode = std::fs::metadata(dir.path().join("root/alice"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    }

    /// Issue 27.3: `put -p` of a tree with old modification times failed at random. An
    /// upload's partial file carried the original's old time, and another upload's sweep of
    /// stale partial files removed it before its rename. An upload in progress holds its
    /// partial file's lock, and a locked partial file is never swept, whatever its time.
    #[tokio::test]
    async fn an_upload_in_progress_is_never_swept_whatever_its_time() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FsStorage::open(&dir.path().join("root")).unwrap();
        let alice = Username::parse("alice").unwrap();
        let home = dir.path().join("root/alice");
        let tree = storage.open_home(&alice).await.unwrap();
        let mut first = tree
            .begin_upload(&path("old-photo"), 5, false, false)
            .await
            .unwrap();
        first.write(Bytes::from_static(b"hello")).await.unwrap();
        // The time a client keeps with -p, years ago, on the partial file in progress.
        let years_ago = SystemTime::now() - Duration::from_secs(5 * 365 * 24 * 60 * 60);
        std::fs::File::options()
            .write(true)
            .open(home.join(partial_name("old-photo")))
            .unwrap()
            .set_modified(years_ago)
            .unwrap();
        // Another session (the home opened anew, so its directories are due a sweep)
        // uploads into the same directory and sweeps it for stale partial files.
        drop(tree);
        let tree = storage.open_home(&alice).await.unwrap();
        let second = tree
            .begin_upload(&path("next"), 3, false, false)
            .await
            .unwrap();
        second.abort(false).await;
        first
            .finish(Checksum::of(b"hello"), None)
            .await
            .expect("the upload in progress was left alone");
        assert_eq!(std::fs::read(home.join("old-photo")).unwrap(), b"hello");
    }

    #[tokio::test]
    async fn resume_keeps_a_matching_partial_and_restarts_a_longer_one() {
        let (dir, tree) = tree().await;
        let partial = dir.path().join("root/alice").join(partial_name("f"));
        let data = b"0123456789";

        // Four bytes held: the upload continues after them, and the hash covers all ten.
        std::fs::write(&partial, &data[..4]).unwrap();
        let mut upload = tree
            .begin_upload(&path("f"), 10, false, true)
            .await
            .unwrap();
        assert_eq!(upload.offset(), 4);
        upload.write(Bytes::from_static(&data[4..])).await.unwrap();
        upload.finish(Checksum::of(data), None).await.unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("root/alice/f")).unwrap(),
            data
        );

        // More held than the new file's size: start over from byte 0 (not from where the
        // re-hash stopped, which would leave a hole of zeros at the start).
        std::fs::write(&partial, b"a much longer partial file").unwrap();
        let mut upload = tree.begin_upload(&path("f"), 10, true, true).await.unwrap();
        assert_eq!(upload.offset(), 0);
        upload
            .write(Bytes::from_static(b"abcdefghij"))
            .await
            .unwrap();
        upload
            .finish(Checksum::of(b"abcdefghij"), None)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("root/alice/f")).unwrap(),
            b"abcdefghij"
        );
        assert!(!partial.exists());
    }

    #[test]
    fn only_a_regular_file_being_replaced_is_held_open() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), b"old").unwrap();
        std::os::unix::fs::symlink("file", dir.path().join("link")).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let parent = Dir::open_ambient_dir(dir.path(), ambient_authority()).unwrap();
        let held = hold_replaced(&parent, "file").unwrap();
        // The handle outlives the name: what rename() replaces stays readable until dropped.
        std::fs::remove_file(dir.path().join("file")).unwrap();
        let mut old = String::new();
        held.into_std().read_to_string(&mut old).unwrap();
        assert_eq!(old, "old");
        for other in ["link", "sub", "missing"] {
            assert!(hold_replaced(&parent, other).is_none(), "{other}");
        }
    }

    #[tokio::test]
    async fn sessions_of_one_user_share_one_home_handle() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FsStorage::open(&dir.path().join("root")).unwrap();
        let alice = Username::parse("alice").unwrap();
        let first = storage.open_home(&alice).await.unwrap();
        let second = storage.open_home(&alice).await.unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        // A home replaced on disk is opened afresh.
        std::fs::rename(dir.path().join("root/alice"), dir.path().join("old")).unwrap();
        let third = storage.open_home(&alice).await.unwrap();
        assert!(!Arc::ptr_eq(&first, &third));
        third.mkdir(&path("fresh"), false).await.unwrap();
        assert!(dir.path().join("root/alice/fresh").is_dir());
        drop((first, second, third));
        let bob = Username::parse("bob").unwrap();
        storage.open_home(&bob).await.unwrap();
        assert_eq!(
            storage.homes.lock().unwrap().len(),
            1,
            "dead entries are dropped"
        );
    }

    #[tokio::test]
    async fn symlink_out_of_home_is_refused() {
        let (dir, tree) = tree().await;
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, dir.path().join("root/alice/link")).unwrap();
        std::os::unix::fs::symlink("../..", dir.path().join("root/alice/up")).unwrap();
        for raw in ["link/x", "up/x", "up/outside/x"] {
            let err = tree.mkdir(&path(raw), true).await.unwrap_err();
            assert_eq!(err.code, ErrorCode::PermissionDenied, "{raw}: {err}");
            assert!(list_all(&*tree, raw).await.is_err());
        }
        assert!(list_all(&*tree, "link").await.is_err());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }
}
