//! The embedded default: `ROOT/<user>` directories on the local filesystem, each home a
//! cap-std directory handle that nothing beneath it can escape.
//!
//! - this file: [`FsStorage`] (the root, the homes in use) and `FsTree` (one home's
//!   operations);
//! - `upload`: uploads under a hidden partial name, renamed into place when whole;
//! - `read`: listings and downloads.

mod read;
mod upload;

use super::*;
use read::*;
use upload::*;

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

    async fn set_attributes(
        &self,
        path: &RemotePath,
        modified: Option<i64>,
        mode: Option<u32>,
    ) -> Result<(), StorageError> {
        refuse_reserved(path)?;
        let home = Arc::clone(&self.home);
        let rel = path.to_relative();
        blocking(move || {
            // Opened read-only, links followed inside the home only (the jail): a file or
            // a directory alike.
            let opened = if rel.as_os_str().is_empty() {
                home.try_clone()?.into_std_file()
            } else {
                home.open(&rel)?.into_std()
            };
            let meta = opened.metadata()?;
            let mut attributes = attributes_of(&meta);
            if let Some(modified) = modified {
                attributes.modified = modified;
            }
            if let Some(mode) = mode {
                attributes.mode = mode & 0o777;
            }
            apply_attributes(&opened, attributes)?;
            if meta.is_dir() {
                use std::os::unix::fs::PermissionsExt;
                let mode = (attributes.mode & 0o777) | 0o700;
                opened.set_permissions(std::fs::Permissions::from_mode(mode))?;
            }
            Ok(())
        })
        .await
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

    async fn stat_target(&self, path: &RemotePath) -> Result<Entry, StorageError> {
        refuse_reserved(path)?;
        let name = path.file_name().unwrap_or("/").to_owned();
        // Links are followed by the home's own resolution, which never leaves it.
        metadata_only(|| Ok(entry(name, &self.home.metadata(path.to_relative())?)))
    }

    async fn kept_partial(&self, path: &RemotePath) -> Result<Option<u64>, StorageError> {
        refuse_reserved(path)?;
        let Some(target) = path.file_name() else {
            return Ok(None);
        };
        let part = path.parent().to_relative().join(partial_name(target));
        metadata_only(|| match self.home.symlink_metadata(&part) {
            Ok(meta) if meta.is_file() && meta.len() > 0 => Ok(Some(meta.len())),
            Ok(_) => Ok(None),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e.into()),
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
        announced: Announced,
        overwrite: bool,
        resume: bool,
    ) -> Result<Box<dyn Upload>, StorageError> {
        // An upload of unknown size (SFTP) may grow to the largest file: the disk's free
        // space is then met as it is written.
        let exact = matches!(announced, Announced::Exactly(_));
        let size = announced.limit().min(MAX_FILE_SIZE);
        refuse_upload(
            path,
            if exact { announced.limit() } else { 0 },
            MAX_FILE_SIZE,
        )?;
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
            if exact && incoming > free {
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
                announced: match announced {
                    Announced::Exactly(_) => Announced::Exactly(size),
                    Announced::AtMost(_) => Announced::AtMost(size),
                },
                replaces,
                overwrite,
                preserve: None,
                durable: true,
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

#[cfg(test)]
mod tests;
