//! Uploads into a home on disk: written under a hidden partial name (kept for a resume),
//! synced, and renamed into place when whole.

use super::*;

/// Opens a regular file for reading, with its size. Never waits on a FIFO or a device
/// someone placed in the home: opened without blocking, and only regular files are served.
pub(super) fn open_regular(home: &Dir, rel: &Path) -> Result<(std::fs::File, u64), StorageError> {
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
pub(super) fn remove_stale_partials(dir: &Dir, ledger: &Ledger) {
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
pub(super) fn hold_replaced(parent: &Dir, target: &str) -> Option<cap_std::fs::File> {
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
pub(super) fn open_partial(
    parent: &Dir,
    part: &str,
    ledger: &Ledger,
) -> Result<std::fs::File, StorageError> {
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
pub(super) fn free_space(dir: &Dir) -> io::Result<u64> {
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
pub(super) struct FsUpload {
    pub(super) parent: Arc<Dir>,
    pub(super) parent_id: dirs::DirId,
    /// Where the rename into `parent` is made durable, with others' into it.
    pub(super) directories: Arc<dirs::Directories>,
    /// The home's usage count, told what the upload adds once it ends.
    pub(super) ledger: Arc<Ledger>,
    pub(super) target: String,
    pub(super) part: String,
    /// Writes and hashes chunks on a blocking thread while the next ones arrive, or holds
    /// a small upload's data until it finishes.
    pub(super) writer: FileSink,
    /// Bytes the partial file held when the upload began (already in the count).
    pub(super) offset: u64,
    pub(super) written: u64,
    pub(super) announced: Announced,
    pub(super) replaces: u64,
    pub(super) overwrite: bool,
    pub(super) preserve: Option<Attributes>,
    /// Synced, with its rename, before the upload is answered.
    pub(super) durable: bool,
}

/// Removes the partial file of an upload that failed; `offset` bytes of it were counted.
pub(super) fn discard_partial(parent: &Dir, part: &str, ledger: &Ledger, offset: u64) {
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

    fn set_durable(&mut self, durable: bool) {
        self.durable = durable;
    }

    async fn write(&mut self, data: Bytes) -> Result<(), StorageError> {
        let len = data.len() as u64;
        refuse_beyond_announced(self.written, len, self.announced.limit())?;
        self.writer.write(data).await?;
        self.written += len;
        Ok(())
    }

    async fn finish(
        self: Box<Self>,
        checksum: Option<Digest>,
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
            announced,
            overwrite,
            preserve,
            durable,
            ..
        } = *self;
        let size = announced.expected(written);
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
            if checksum.is_some_and(|checksum| written.digest() != checksum) {
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
            if durable {
                file.sync_all()?;
            }
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
        let synced = if durable {
            directories.sync(parent_id, renamed_in).await
        } else {
            Ok(())
        };
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

pub(super) fn same_file(a: &Metadata, b: &std::fs::Metadata) -> bool {
    use cap_std::fs::MetadataExt;
    use std::os::unix::fs::MetadataExt as _;
    a.dev() == b.dev() && a.ino() == b.ino()
}
