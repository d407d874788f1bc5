//! Streamed uploads and downloads, single files and trees. Memory stays flat whatever the
//! file size: one chunk at a time, hashed as it passes, on the same connection as every
//! other command.
//!
//! Downloads are written to a hidden partial file beside the target and renamed into place
//! only once the checksum of the whole file matches the server's; `resume` continues from the
//! partial file's end. Uploads work the same way on the server side.
//!
//! - this file: progress, options, reports, and the helpers both ways share;
//! - `put`: one file up; `get`: one file down; `tree`: trees both ways.

mod get;
mod put;
mod tree;

use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncWrite};

use super::parallel::SharedWork;
use super::{Client, partial};
use crate::checksum::{Checksum, Digest};
use crate::commands::{EntryKind, ErrorCode, MAX_CHUNK, Request, Response};
use crate::error::{Error, Result};
use crate::paths::RemotePath;
use crate::pipeline::{FileReader, FileSink, FileWriter, SinkEnded, hash_exactly};

/// Told how a transfer advances (a progress bar, or nothing).
pub trait Progress: Send + Sync {
    /// A transfer of `name` starts: `total` bytes, of which `done` are already there.
    fn start(&self, name: &str, total: u64, done: u64);
    /// `bytes` more have moved.
    fn advance(&self, bytes: u64);
    /// The transfer ended (successfully or not).
    fn finish(&self);
    /// The transfer failed, perhaps after all its bytes moved (the server refused the
    /// file at the end): nothing may look like success.
    fn fail(&self) {
        self.finish();
    }
}

/// Ends the display of one transfer as `outcome` says.
fn ended<T>(progress: &dyn Progress, outcome: &Result<T>) {
    match outcome {
        Ok(_) => progress.finish(),
        Err(_) => progress.fail(),
    }
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: u64, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

/// One display over all the files of a tree transfer: the bytes of each file count, its
/// own start and end do not (several files move at once).
struct WholeTree<'a>(&'a dyn Progress);

impl Progress for WholeTree<'_> {
    fn start(&self, _: &str, _: u64, already: u64) {
        // What a resume found already there is part of the whole.
        self.0.advance(already);
    }
    fn advance(&self, bytes: u64) {
        self.0.advance(bytes);
    }
    fn finish(&self) {}
}

/// Shows `transfer`, the moving of `files` files of `bytes` bytes in all, as one display.
async fn as_whole_tree(
    progress: &dyn Progress,
    files: usize,
    bytes: u64,
    transfer: impl AsyncFnOnce(&dyn Progress) -> Result<u64>,
) -> Result<u64> {
    if files == 0 {
        return Ok(0);
    }
    let noun = if files == 1 { "file" } else { "files" };
    progress.start(&format!("{files} {noun}"), bytes, 0);
    let moved = transfer(&WholeTree(progress)).await;
    progress.finish();
    moved
}

/// How to treat an existing target and an interrupted earlier transfer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TransferOptions {
    /// Replace an existing target (`-f`).
    pub overwrite: bool,
    /// Continue an interrupted transfer from what already arrived (`-c`).
    pub resume: bool,
    /// Uploading a tree, follow symlinks to files and directories (`-L`) instead of
    /// skipping them.
    pub follow_links: bool,
    /// Give the copy the original's modification time and permission bits (`-p`).
    pub preserve: bool,
}

/// What one file transfer did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Transferred {
    /// Size of the whole file.
    pub size: u64,
    /// Where the data started (non-zero when a resume found earlier data).
    pub resumed_from: u64,
}

/// What a tree transfer did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TreeReport {
    /// Files transferred.
    pub files: u64,
    /// Bytes moved (not counting resumed parts).
    pub bytes: u64,
    /// Entries left out (symlinks, special files, names that are not UTF-8), with why.
    pub skipped: Vec<String>,
}

/// Whole-file uploads ([`Request::Put`]) sent and not answered yet, oldest first: their
/// targets and sizes; and the first refusal among those answered.
#[derive(Default)]
pub(super) struct PutsInFlight {
    targets: std::collections::VecDeque<(String, usize)>,
    bytes: usize,
    refused: Option<Error>,
}

/// Whole-file uploads in flight at most (the server reads no further ahead)...
const PUTS_IN_FLIGHT: usize = 64;
/// ...and their bytes.
const PUT_BYTES_IN_FLIGHT: usize = 4 << 20;

/// A regular file of at most [`MAX_CHUNK`] bytes, read whole, with its attributes if asked;
/// `None` for a larger one.
async fn read_small_file(
    path: &Path,
    preserve: bool,
) -> Result<Option<(bytes::Bytes, Option<crate::commands::Attributes>)>> {
    use std::io::Read;
    let owned = path.to_owned();
    let read = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
        let file = std::fs::File::open(&owned)?;
        let meta = file.metadata()?;
        if meta.len() > MAX_CHUNK as u64 {
            return Ok(None);
        }
        let mut data = Vec::with_capacity(meta.len() as usize);
        // One byte more than allowed tells a file that grew meanwhile.
        file.take(MAX_CHUNK as u64 + 1).read_to_end(&mut data)?;
        if data.len() > MAX_CHUNK {
            return Ok(None);
        }
        let attributes = preserve.then(|| crate::pipeline::attributes_of(&meta));
        Ok(Some((bytes::Bytes::from(data), attributes)))
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|read| read);
    read.map_err(|e| Error::local(path, e))
}

/// A local file to upload, to the remote path `remote`; `size` as the walk found it.
#[derive(Debug)]
pub(super) struct PendingUpload {
    pub(super) local: PathBuf,
    pub(super) remote: String,
    pub(super) size: u64,
}

/// Files to download, by the local directory they go into: each directory's are fetched
/// in batches, with one look for its stale partial files.
#[derive(Debug)]
pub(super) struct Downloads {
    /// The local directory the user named: every directory below it is entered through
    /// handles that never follow a link.
    root: PathBuf,
    /// Local directory: remote path and local name of each file.
    by_dir: std::collections::BTreeMap<PathBuf, Vec<(String, String)>>,
    /// Their sizes, added up.
    bytes: u64,
}

impl Downloads {
    /// Downloads into the tree at `root`.
    pub(super) fn into(root: &Path) -> Self {
        Downloads {
            root: root.to_owned(),
            by_dir: std::collections::BTreeMap::new(),
            bytes: 0,
        }
    }

    /// The remote file `source` of `size` bytes, to the local path `target`.
    pub(super) fn add(&mut self, source: String, size: u64, target: &Path) {
        if let (Some(dir), Some(name)) = (target.parent(), target.file_name()) {
            let name = name.to_string_lossy().into_owned();
            self.by_dir
                .entry(dir.to_owned())
                .or_default()
                .push((source, name));
            self.bytes = self.bytes.saturating_add(size);
        }
    }

    /// Files to download.
    pub(super) fn len(&self) -> usize {
        self.by_dir.values().map(Vec::len).sum()
    }
}

/// A local directory below a download's root, entered one component at a time through
/// handles opened with `O_NOFOLLOW` (as the server's jail does): a link anywhere on the
/// way, planted or not, is refused, and once open the directory is the one written to
/// whatever is renamed or replaced on the way to it afterwards.
struct LocalDir {
    /// Held open for as long as files are written into it.
    handle: cap_std::fs::Dir,
    /// The open directory as a path (`/proc/self/fd/N`), for the calls that take paths.
    path: PathBuf,
}

impl LocalDir {
    /// Opens `dir`, which lies below `root` (the user's own choice, taken as it is).
    fn open(root: &Path, dir: &Path) -> std::io::Result<Self> {
        use std::os::fd::AsRawFd;
        let mut handle = cap_std::fs::Dir::open_ambient_dir(root, cap_std::ambient_authority())?;
        let rest = dir.strip_prefix(root).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not below the target")
        })?;
        for component in rest.components() {
            let std::path::Component::Normal(name) = component else {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "not a plain name",
                ));
            };
            let mut options = cap_std::fs::OpenOptions::new();
            options.read(true);
            cap_std::fs::OpenOptionsExt::custom_flags(
                &mut options,
                libc::O_DIRECTORY | libc::O_NOFOLLOW,
            );
            let next = handle.open_with(name, &options).map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) || e.raw_os_error() == Some(libc::ENOTDIR)
                {
                    std::io::Error::new(
                        e.kind(),
                        "not a directory (a symlink on the way is not followed)",
                    )
                } else {
                    e
                }
            })?;
            handle = cap_std::fs::Dir::from_std_file(next.into_std());
        }
        let by_fd = PathBuf::from(format!("/proc/self/fd/{}", handle.as_raw_fd()));
        // Without /proc (not Linux), the checked path itself.
        let path = if by_fd.exists() {
            by_fd
        } else {
            dir.to_owned()
        };
        Ok(LocalDir { handle, path })
    }
}

/// `err` with the handle's path (`/proc/self/fd/N/...`) shown as the directory the user
/// knows.
fn shown_in(err: Error, opened: &LocalDir, dir: &Path) -> Error {
    match err {
        Error::Local { path, message } => match path.strip_prefix(&opened.path) {
            Ok(rest) => Error::Local {
                path: dir.join(rest),
                message,
            },
            Err(_) => Error::Local { path, message },
        },
        other => other,
    }
}

/// Files of one directory that one connection downloads together (asking ahead for
/// several), before it takes the next batch.
struct Batch<'a> {
    dir: &'a Path,
    /// `dir`, opened without following links.
    opened: &'a LocalDir,
    files: &'a [(String, String)],
    /// Partial files earlier downloads left in `dir`.
    stale: &'a [PathBuf],
}

/// Files in a [`Batch`] at most.
const FILES_PER_BATCH: usize = 128;

/// Downloads asked for ahead of the one being received.
const GETS_IN_FLIGHT: usize = 32;
/// Downloaded files synced at once (the disk takes their syncs together).
const SYNCS_AT_ONCE: usize = 64;
/// Bytes of small downloaded files held in memory until their sync at most (besides the
/// one being received): bounds a connection's memory when the files are near the 512 KiB
/// that are held.
const HELD_AT_ONCE: u64 = 8 << 20;

/// The end of one download of a tree, on a blocking thread: writes what was held, checks
/// the checksum, applies the attributes, syncs the partial file and renames it into place
/// (unless a target appeared meanwhile and may not be replaced), and removes the target's
/// stale partial files. One thread hop per file, whatever it had to do.
fn finish_download(
    received: ReceivedFile,
    target: PathBuf,
    overwrite: bool,
    stale: Vec<PathBuf>,
) -> Result<()> {
    let ReceivedFile {
        part,
        data,
        theirs,
        attributes,
        ..
    } = received;
    let done = (|| {
        let (file, written) = data.written().map_err(|e| Error::local(&part, e))?;
        if written.digest() != theirs {
            return Err(Error::ChecksumMismatch);
        }
        if let Some(attributes) = attributes {
            crate::pipeline::apply_attributes(&file, attributes)
                .map_err(|e| Error::local(&part, e))?;
        }
        file.sync_all().map_err(|e| Error::local(&part, e))?;
        if !overwrite && std::fs::symlink_metadata(&target).is_ok() {
            return Err(Error::local(
                &target,
                "already exists (use -f to replace it)",
            ));
        }
        // rename() replaces a link at `target` itself; it never writes through one.
        std::fs::rename(&part, &target).map_err(|e| Error::local(&target, e))
    })();
    if done.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    for path in stale {
        let _ = std::fs::remove_file(path);
    }
    done
}

/// Keeps the first failure of a finished download; the bytes it held.
fn joined(
    done: std::result::Result<(u64, Result<()>), tokio::task::JoinError>,
    first_failure: &mut Option<Error>,
) -> u64 {
    let (held, done) = done.unwrap_or_else(|e| (0, Err(Error::Io(std::io::Error::other(e)))));
    if let Err(err) = done {
        first_failure.get_or_insert(err);
    }
    held
}

fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Joins a remote directory and one local file name.
fn remote_child(dir: &str, name: &str) -> String {
    if dir.is_empty() || dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Hashes the first `len` bytes of `file` on a blocking thread (the part of a resumed
/// transfer the other side has too), leaving the file positioned after them.
async fn hash_prefix(file: std::fs::File, len: u64) -> std::io::Result<(std::fs::File, Checksum)> {
    tokio::task::spawn_blocking(move || {
        let held = hash_exactly(&file, len)?;
        Ok((file, held))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// A server's refusal of one file of a tree, naming that file: `put dir` failing with
/// "already exists" would not say which.
fn naming(file: &str, err: Error) -> Error {
    match err {
        Error::Remote { code, message } => Error::Remote {
            code,
            message: format!("{file}: {message}"),
        },
        other => other,
    }
}

/// Size and checksum of a local regular file, or `None` if `path` is something else.
pub(super) async fn hash_local_file(path: &Path) -> Result<Option<(u64, Digest)>> {
    let meta = tokio::fs::symlink_metadata(path)
        .await
        .map_err(|e| Error::local(path, e))?;
    if !meta.is_file() {
        return Ok(None);
    }
    let file = std::fs::File::open(path).map_err(|e| Error::local(path, e))?;
    let (_, held) = hash_prefix(file, meta.len())
        .await
        .map_err(|e| Error::local(path, e))?;
    Ok(Some((meta.len(), held.digest())))
}

/// Creates the local directory `dir` of a tree download, or accepts it if it is already a
/// real directory: never a symlink, which could lead the download anywhere.
/// Makes the link `link` (below `root`) to `target`, through its directory opened without
/// following links: no link on the way can send it elsewhere. The caller checked that
/// `target` leads inside the tree.
pub(super) fn make_local_link(root: &Path, link: &Path, target: &str) -> Result<()> {
    let (Some(dir), Some(name)) = (link.parent(), link.file_name()) else {
        return Err(Error::local(link, "not a name for a link"));
    };
    let opened = LocalDir::open(root, dir).map_err(|e| Error::local(dir, e))?;
    opened
        .handle
        .symlink_contents(target, name)
        .map_err(|e| Error::local(link, e))
}

pub(super) async fn enter_local_dir(dir: &Path) -> Result<()> {
    match tokio::fs::create_dir(dir).await {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::local(dir, e)),
    }
    let meta = tokio::fs::symlink_metadata(dir)
        .await
        .map_err(|e| Error::local(dir, e))?;
    if !meta.is_dir() {
        return Err(Error::local(
            dir,
            "exists and is not a directory (a symlink is not followed)",
        ));
    }
    Ok(())
}

/// A file of a tree download, received whole into (or for) its partial file.
struct ReceivedFile {
    size: u64,
    part: PathBuf,
    data: SinkEnded,
    /// The server's checksum of the file.
    theirs: Digest,
    /// To apply (`-p`).
    attributes: Option<crate::commands::Attributes>,
}

impl ReceivedFile {
    /// Bytes of the file held in memory, to be written when it finishes.
    fn held_bytes(&self) -> u64 {
        match self.data {
            SinkEnded::Held(..) => self.size,
            SinkEnded::Written(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests;
