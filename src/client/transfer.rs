//! Streamed uploads and downloads, single files and trees. Memory stays flat whatever the
//! file size: one chunk at a time, hashed as it passes, on the same connection as every
//! other command.
//!
//! Downloads are written to a hidden partial file beside the target and renamed into place
//! only once the checksum of the whole file matches the server's; `resume` continues from the
//! partial file's end. Uploads work the same way on the server side.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncWrite};

use super::parallel::Shared;
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
pub(super) struct Upload {
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
    received: Received,
    target: PathBuf,
    overwrite: bool,
    stale: Vec<PathBuf>,
) -> Result<()> {
    let Received {
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

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// Uploads one local file to `remote`.
    ///
    /// # Errors
    /// Local I/O ([`Error::Local`]), the server's refusal (exists, quota, checksum, ...), or
    /// the connection.
    pub async fn put_file(
        &mut self,
        local: &Path,
        remote: &str,
        options: TransferOptions,
        progress: &dyn Progress,
    ) -> Result<Transferred> {
        RemotePath::parse(remote)?;
        let file = tokio::fs::File::open(local)
            .await
            .map_err(|e| Error::local(local, e))?
            .into_std()
            .await;
        let meta = file.metadata().map_err(|e| Error::local(local, e))?;
        if meta.is_dir() {
            return Err(Error::local(local, "is a directory (use -r)"));
        }
        let size = meta.len();
        // A small file goes whole, in one request with one answer: a round trip fewer than
        // PutStart, PutReady, the data and PutFinish. (A resume must ask where to go on.)
        if !options.resume
            && size <= MAX_CHUNK as u64
            && let Some((data, preserve)) = read_small_file(local, options.preserve).await?
        {
            return self
                .put_small_file(local, remote, data, preserve, options, progress)
                .await;
        }
        self.send(&Request::PutStart {
            path: remote.to_owned(),
            size,
            overwrite: options.overwrite,
            resume: options.resume,
            preserve: options
                .preserve
                .then(|| crate::pipeline::attributes_of(&meta)),
        })
        .await?;
        let offset = match self.reply().await {
            Ok(Response::PutReady { offset }) if offset <= size => offset,
            Ok(_) => return Err(Error::UnexpectedReply("expected PutReady")),
            // Resuming, a target that is already there whole is done, not an error.
            Err(Error::Remote {
                code: ErrorCode::AlreadyExists,
                ..
            }) if options.resume => {
                let (_, local_sum) = hash_prefix(file, size)
                    .await
                    .map_err(|e| Error::local(local, e))?;
                return self.done_if_same(remote, size, local_sum.digest()).await;
            }
            Err(err) => return Err(err),
        };
        let finished = async {
            let sent = self.send_file(file, local, size, offset, progress).await;
            // Stopping before PutFinish leaves the server waiting for the rest of the data.
            let checksum = sent.inspect_err(|_| self.in_step = false)?;
            self.send(&Request::PutFinish { checksum }).await?;
            self.expect_ok().await
        }
        .await;
        ended(progress, &finished);
        finished?;
        Ok(Transferred {
            size,
            resumed_from: offset,
        })
    }

    /// Uploads a small file read whole (`data`) with one `Put`, and waits for its answer.
    async fn put_small_file(
        &mut self,
        local: &Path,
        remote: &str,
        data: bytes::Bytes,
        preserve: Option<crate::commands::Attributes>,
        options: TransferOptions,
        progress: &dyn Progress,
    ) -> Result<Transferred> {
        let size = data.len() as u64;
        progress.start(&display_name(local), size, 0);
        self.pace(data.len()).await;
        let sent = self
            .send(&Request::Put {
                path: remote.to_owned(),
                overwrite: options.overwrite,
                preserve,
                checksum: Checksum::of(&data),
                data,
            })
            .await;
        progress.advance(size);
        let answered = match sent {
            Ok(()) => self.expect_ok().await,
            Err(e) => Err(e),
        };
        ended(progress, &answered);
        answered?;
        Ok(Transferred {
            size,
            resumed_from: 0,
        })
    }

    /// Sends `file` from `offset` to `size` in data frames; returns the checksum of all of
    /// it (the server holds the first `offset` bytes already, and the checksum covers them).
    async fn send_file(
        &mut self,
        file: std::fs::File,
        local: &Path,
        size: u64,
        offset: u64,
        progress: &dyn Progress,
    ) -> Result<Digest> {
        let (file, held) = hash_prefix(file, offset)
            .await
            .map_err(|e| Error::local(local, e))?;
        progress.start(&display_name(local), size, offset);
        let mut reader = FileReader::spawn(file, held, size - offset);
        // The caller ends the display, once the server has taken the file.
        self.send_data(&mut reader, local, progress).await?;
        reader.finish().await.map_err(|e| Error::local(local, e))
    }

    async fn send_data(
        &mut self,
        reader: &mut FileReader,
        local: &Path,
        progress: &dyn Progress,
    ) -> Result<()> {
        let shrank = |e| {
            Error::local(
                local,
                format!("{e} (did the file shrink during the upload?)"),
            )
        };
        while let Some(data) = reader.next().await.map_err(shrank)? {
            let len = data.len() as u64;
            self.pace(data.len()).await;
            self.send(&Request::PutData { data }).await?;
            progress.advance(len);
        }
        Ok(())
    }

    /// Downloads `remote` to the local file `local`.
    ///
    /// The data goes to a partial file beside `local`, created afresh under a random name
    /// (never following a link, never opening what someone else put there) once the server
    /// has said it sends the file, so a download that never starts leaves nothing. `resume`
    /// continues the largest earlier partial file of the same target that is a regular file
    /// of ours.
    ///
    /// # Errors
    /// As [`Client::put_file`], plus [`Error::ChecksumMismatch`].
    pub async fn get_file(
        &mut self,
        remote: &str,
        local: &Path,
        options: TransferOptions,
        progress: &dyn Progress,
    ) -> Result<Transferred> {
        RemotePath::parse(remote)?;
        let name = local
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::local(local, "not a file name"))?
            .to_owned();
        if !options.overwrite && tokio::fs::symlink_metadata(local).await.is_ok() {
            if options.resume
                && let Some((size, digest)) = hash_local_file(local).await?
            {
                // Resuming, a target that is already here whole is done, not an error.
                return self.done_if_same(remote, size, digest).await;
            }
            return Err(Error::local(local, "already exists (use -f to replace it)"));
        }
        let dir = match local.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let parent_dir = dir.clone();
        let earlier = {
            let (dir, name) = (dir.clone(), name.clone());
            tokio::task::spawn_blocking(move || partial::ours(&dir, &name))
                .await
                .map_err(std::io::Error::other)
                .and_then(|found| found)
                .map_err(|e| Error::local(&parent_dir, e))?
        };
        let mut resumed: Option<(PathBuf, std::fs::File)> = None;
        let mut held = Checksum::new();
        if options.resume
            && let Some(path) = earlier.first()
            && let Some(file) = partial::open_ours(path).map_err(|e| Error::local(path, e))?
        {
            let len = file.metadata().map_err(|e| Error::local(path, e))?.len();
            let remote_size = self.stat(remote).await?.size;
            let mut file = file;
            if len <= remote_size {
                (file, held) = hash_prefix(file, len)
                    .await
                    .map_err(|e| Error::local(path, e))?;
            }
            resumed = Some((path.clone(), file));
        }
        let offset = held.count();
        self.send(&Request::Get {
            path: remote.to_owned(),
            offset,
        })
        .await?;
        let (size, attributes) = match self.reply().await? {
            Response::GetReady {
                size,
                offset: o,
                attributes,
            } if o == offset && offset <= size => (size, attributes),
            _ => return Err(Error::UnexpectedReply("expected GetReady")),
        };
        let opened = match resumed {
            Some(found) => Ok(found),
            None => partial::create(&dir, &name),
        };
        let (part, file) = match opened {
            Ok(opened) => opened,
            Err(err) => {
                // The server is sending already: the connection cannot be used again.
                self.in_step = false;
                return Err(Error::local(&dir, err));
            }
        };
        // Earlier partial files of this target that this download does not continue.
        for stale in earlier.iter().filter(|p| **p != part) {
            let _ = std::fs::remove_file(stale);
        }
        if offset == 0
            && let Err(err) = file.set_len(0)
        {
            self.in_step = false;
            return Err(Error::local(&part, err));
        }
        progress.start(&name, size, offset);
        let mut sink = FileSink::Streaming(FileWriter::spawn(file, held));
        let received = self
            .receive_data(&mut sink, size - offset, &part, progress)
            .await;
        let landed = async {
            let theirs = received?;
            // Streamed: written already, so this does not block.
            let (file, written) = sink
                .end()
                .await
                .written()
                .map_err(|e| Error::local(&part, e))?;
            if written.digest() != theirs {
                drop(file);
                let _ = tokio::fs::remove_file(&part).await;
                return Err(Error::ChecksumMismatch);
            }
            if options.preserve
                && let Some(attributes) = attributes
            {
                crate::pipeline::apply_attributes(&file, attributes)
                    .map_err(|e| Error::local(&part, e))?;
            }
            tokio::fs::File::from_std(file)
                .sync_all()
                .await
                .map_err(|e| Error::local(&part, e))?;
            if !options.overwrite && tokio::fs::symlink_metadata(local).await.is_ok() {
                return Err(Error::local(local, "already exists (use -f to replace it)"));
            }
            // rename() replaces a link at `local` itself; it never writes through one.
            tokio::fs::rename(&part, local)
                .await
                .map_err(|e| Error::local(local, e))
        }
        .await;
        ended(progress, &landed);
        landed?;
        Ok(Transferred {
            size,
            resumed_from: offset,
        })
    }

    /// Downloads `remote` into `out` as it arrives, for `get FILE -` and `cat`: an open
    /// file or pipe (standard output), written on a thread of its own. The data cannot be
    /// taken back, so a checksum that differs at the end is reported after it was written.
    ///
    /// # Errors
    /// As [`Client::get_file`]; [`Error::ChecksumMismatch`] once everything was written.
    pub async fn get_into(
        &mut self,
        remote: &str,
        out: std::fs::File,
        progress: &dyn Progress,
    ) -> Result<Transferred> {
        RemotePath::parse(remote)?;
        self.send(&Request::Get {
            path: remote.to_owned(),
            offset: 0,
        })
        .await?;
        let size = match self.reply().await? {
            Response::GetReady {
                size, offset: 0, ..
            } => size,
            _ => return Err(Error::UnexpectedReply("expected GetReady")),
        };
        let shown = Path::new("-");
        progress.start(remote, size, 0);
        let mut sink = FileSink::Streaming(FileWriter::spawn(out, Checksum::new()));
        let received = self.receive_data(&mut sink, size, shown, progress).await;
        progress.finish();
        let theirs = received?;
        let (_, written) = sink
            .end()
            .await
            .written()
            .map_err(|e| Error::local(shown, e))?;
        if written.digest() != theirs {
            return Err(Error::ChecksumMismatch);
        }
        Ok(Transferred {
            size,
            resumed_from: 0,
        })
    }

    /// A resumed transfer whose target already exists: done if the file on the server has
    /// `size` bytes and checksum `digest` too, refused (as without `-c`) if it differs.
    async fn done_if_same(
        &mut self,
        remote: &str,
        size: u64,
        digest: Digest,
    ) -> Result<Transferred> {
        let (theirs, their_digest) = self.checksum(remote).await?;
        if theirs == size && their_digest == digest {
            return Ok(Transferred {
                size,
                resumed_from: size,
            });
        }
        Err(Error::Remote {
            code: ErrorCode::AlreadyExists,
            message: "already exists and differs (use -f to replace it)".into(),
        })
    }

    /// Hands data frames to `sink` until `GetDone`; returns the server's checksum. Stopping
    /// anywhere but at `GetDone` or an error reply leaves frames on their way, so the
    /// connection is out of step from then on ([`Client::is_in_step`]).
    async fn receive_data(
        &mut self,
        sink: &mut FileSink,
        expected: u64,
        part: &Path,
        progress: &dyn Progress,
    ) -> Result<Digest> {
        let received = self.receive_frames(sink, expected, part, progress).await;
        if let Err(err) = &received
            && !matches!(err, Error::Remote { .. })
        {
            self.in_step = false;
        }
        received
    }

    async fn receive_frames(
        &mut self,
        sink: &mut FileSink,
        expected: u64,
        part: &Path,
        progress: &dyn Progress,
    ) -> Result<Digest> {
        let mut received = 0u64;
        // Frames that carry no data are no progress: a server cannot keep a download
        // waiting forever with them.
        let mut progressed = tokio::time::Instant::now();
        loop {
            match self.reply().await? {
                Response::Data { data } => {
                    self.pace(data.len()).await;
                    if data.is_empty() {
                        if progressed.elapsed() > self.reply_timeout {
                            return Err(Error::Timeout);
                        }
                        continue;
                    }
                    progressed = tokio::time::Instant::now();
                    received += data.len() as u64;
                    if received > expected {
                        return Err(Error::UnexpectedReply("more data than announced"));
                    }
                    let len = data.len() as u64;
                    sink.write(data).await.map_err(|e| Error::local(part, e))?;
                    progress.advance(len);
                }
                Response::GetDone { checksum } => {
                    if received != expected {
                        return Err(Error::UnexpectedReply("the download ended early"));
                    }
                    return Ok(checksum);
                }
                _ => return Err(Error::UnexpectedReply("expected data")),
            }
        }
    }

    /// Uploads a local directory tree into `remote` (created if missing): first the
    /// directories, then the files, spread over this connection and its helpers
    /// ([`Client::add_helpers`]); small files go several at once on each connection
    /// ([`Request::Put`]), the rest one after another.
    ///
    /// # Errors
    /// The first failure; files before it stay uploaded, and so may files sent after it
    /// before its answer came.
    pub async fn put_tree(
        &mut self,
        local: &Path,
        remote: &str,
        options: TransferOptions,
        progress: &dyn Progress,
    ) -> Result<TreeReport> {
        let mut report = TreeReport::default();
        let uploads = self
            .make_remote_dirs(local, remote, options, &mut report)
            .await?;
        report.files = uploads.len() as u64;
        report.bytes = self.send_files(&uploads, options, progress).await?;
        Ok(report)
    }

    /// Walks the local tree `local`, making each directory under `remote` as it goes; the
    /// files found, to upload.
    async fn make_remote_dirs(
        &mut self,
        local: &Path,
        remote: &str,
        options: TransferOptions,
        report: &mut TreeReport,
    ) -> Result<Vec<Upload>> {
        use std::os::unix::fs::MetadataExt;
        let mut uploads = Vec::new();
        let mut pending = vec![(local.to_owned(), remote.to_owned())];
        // Directories entered, by device and inode: a followed link back up is a loop.
        let mut entered = std::collections::HashSet::new();
        if let Ok(meta) = std::fs::metadata(local) {
            entered.insert((meta.dev(), meta.ino()));
        }
        while let Some((dir, remote_dir)) = pending.pop() {
            self.mkdir(&remote_dir, true).await?;
            let mut entries: Vec<_> = std::fs::read_dir(&dir)
                .map_err(|e| Error::local(&dir, e))?
                .collect::<std::io::Result<_>>()
                .map_err(|e| Error::local(&dir, e))?;
            entries.sort_by_key(|e| e.file_name());
            for entry in entries {
                let path = entry.path();
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    report
                        .skipped
                        .push(format!("{}: name is not UTF-8", path.display()));
                    continue;
                };
                let meta = if entry.file_type().is_ok_and(|t| t.is_symlink()) {
                    if !options.follow_links {
                        report
                            .skipped
                            .push(format!("{}: a symlink (-L follows them)", path.display()));
                        continue;
                    }
                    match std::fs::metadata(&path) {
                        Ok(meta) if meta.is_dir() && !entered.insert((meta.dev(), meta.ino())) => {
                            report.skipped.push(format!(
                                "{}: a symlink to a directory already copied (a loop)",
                                path.display()
                            ));
                            continue;
                        }
                        Ok(meta) => meta,
                        Err(e) => {
                            report.skipped.push(format!("{}: {e}", path.display()));
                            continue;
                        }
                    }
                } else {
                    let meta = entry.metadata().map_err(|e| Error::local(&path, e))?;
                    if meta.is_dir() {
                        entered.insert((meta.dev(), meta.ino()));
                    }
                    meta
                };
                let target = remote_child(&remote_dir, &name);
                if meta.is_dir() {
                    pending.push((path, target));
                } else if meta.is_file() {
                    uploads.push(Upload {
                        local: path,
                        remote: target,
                        size: meta.len(),
                    });
                } else {
                    report
                        .skipped
                        .push(format!("{}: not a regular file", path.display()));
                }
            }
        }
        Ok(uploads)
    }

    /// Uploads `uploads` into directories that exist, spread over this connection and its
    /// helpers, under one display; the bytes sent.
    ///
    /// # Errors
    /// The first failure, once every connection's uploads in flight are answered.
    pub(super) async fn send_files(
        &mut self,
        uploads: &[Upload],
        options: TransferOptions,
        progress: &dyn Progress,
    ) -> Result<u64> {
        let bytes = uploads.iter().map(|u| u.size).fold(0, u64::saturating_add);
        as_whole_tree(progress, uploads.len(), bytes, async |progress| {
            self.spread(uploads, async |client, shared| {
                client.send_shared(shared, options, progress).await
            })
            .await
        })
        .await
    }

    /// One connection's part of [`Client::send_files`]: uploads taken from `shared` until
    /// none are left; every upload sent is answered before this returns, failure or not,
    /// so the connection stays in step.
    async fn send_shared(
        &mut self,
        shared: &Shared<'_, Upload>,
        options: TransferOptions,
        progress: &dyn Progress,
    ) -> Result<u64> {
        let mut flight = PutsInFlight::default();
        let mut bytes = 0;
        let sent = async {
            while let Some(upload) = shared.take() {
                bytes += self
                    .send_one(
                        &upload.local,
                        upload.remote.clone(),
                        options,
                        &mut flight,
                        progress,
                    )
                    .await?;
            }
            Ok(())
        }
        .await;
        if sent.is_err() && !self.in_step {
            return sent.map(|()| bytes);
        }
        let answered = self.answer_puts(&mut flight).await;
        sent?;
        answered?;
        Ok(bytes)
    }

    /// Uploads one file of a tree: a small one whole, without waiting for its answer
    /// (several in flight); a larger one (or a resume, which must ask where to continue)
    /// streamed, once the answers in flight are read. The bytes sent.
    pub(super) async fn send_one(
        &mut self,
        path: &Path,
        target: String,
        options: TransferOptions,
        flight: &mut PutsInFlight,
        progress: &dyn Progress,
    ) -> Result<u64> {
        let whole = if options.resume {
            None
        } else {
            read_small_file(path, options.preserve).await?
        };
        if let Some((data, preserve)) = whole {
            let size = data.len() as u64;
            progress.start(&display_name(path), size, 0);
            let sent = self
                .send_whole(flight, target, data, preserve, options)
                .await;
            progress.advance(size);
            progress.finish();
            sent?;
            return Ok(size);
        }
        self.answer_puts(flight).await?;
        let done = self
            .put_file(path, &target, options, progress)
            .await
            .map_err(|e| naming(&target, e))?;
        Ok(done.size - done.resumed_from)
    }

    /// Sends a whole small file without waiting for its answer; first reads answers while
    /// the window is full. A refusal is kept to be returned once all sent are answered.
    async fn send_whole(
        &mut self,
        flight: &mut PutsInFlight,
        target: String,
        data: bytes::Bytes,
        preserve: Option<crate::commands::Attributes>,
        options: TransferOptions,
    ) -> Result<()> {
        while flight.targets.len() >= PUTS_IN_FLIGHT || flight.bytes >= PUT_BYTES_IN_FLIGHT {
            self.answer_one_put(flight).await?;
        }
        if let Some(err) = flight.refused.take() {
            self.answer_puts(flight).await?;
            return Err(err);
        }
        let len = data.len();
        self.pace(len).await;
        self.send(&Request::Put {
            path: target.clone(),
            overwrite: options.overwrite,
            preserve,
            checksum: Checksum::of(&data),
            data,
        })
        .await?;
        flight.targets.push_back((target, len));
        flight.bytes += len;
        Ok(())
    }

    /// Reads the answer to the oldest whole-file upload in flight.
    async fn answer_one_put(&mut self, flight: &mut PutsInFlight) -> Result<()> {
        let Some((target, len)) = flight.targets.pop_front() else {
            return Ok(());
        };
        flight.bytes -= len;
        match self.expect_ok().await {
            Ok(()) => Ok(()),
            Err(err @ Error::Remote { .. }) => {
                flight.refused.get_or_insert(naming(&target, err));
                Ok(())
            }
            Err(err) => Err(naming(&target, err)),
        }
    }

    /// Reads the answers to every whole-file upload in flight; the first refusal.
    pub(super) async fn answer_puts(&mut self, flight: &mut PutsInFlight) -> Result<()> {
        while !flight.targets.is_empty() {
            self.answer_one_put(flight).await?;
        }
        match flight.refused.take() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// Downloads a remote directory tree into the local directory `local` (created if
    /// missing).
    ///
    /// # Errors
    /// The first failure; files before it stay downloaded.
    pub async fn get_tree(
        &mut self,
        remote: &str,
        local: &Path,
        options: TransferOptions,
        progress: &dyn Progress,
    ) -> Result<TreeReport> {
        let mut report = TreeReport::default();
        // The target itself is the user's choice; beneath it, only directories made here
        // or found as real directories (never a link someone planted) are entered.
        tokio::fs::create_dir_all(local)
            .await
            .map_err(|e| Error::local(local, e))?;
        // One request lists the whole tree (names checked by `list_tree`), a directory
        // before what it holds: each is made (or entered) before anything goes into it.
        let mut downloads = Downloads::into(local);
        for entry in self.list_tree(remote).await? {
            let source = remote_child(remote, &entry.name);
            let target = local.join(&entry.name);
            match entry.kind {
                EntryKind::Directory => enter_local_dir(&target).await?,
                EntryKind::File if options.resume => {
                    // Each resume asks where its own partial file ends: one at a time.
                    let done = self
                        .get_file(&source, &target, options, progress)
                        .await
                        .map_err(|e| naming(&source, e))?;
                    report.files += 1;
                    report.bytes += done.size - done.resumed_from;
                }
                EntryKind::File => downloads.add(source, entry.size, &target),
                EntryKind::Symlink | EntryKind::Other => {
                    report.skipped.push(format!("{source}: not a regular file"));
                }
            }
        }
        report.files += downloads.len() as u64;
        report.bytes += self.get_all(downloads, options, progress).await?;
        Ok(report)
    }

    /// Downloads `downloads` in batches of a directory's files, spread over this connection
    /// and its helpers, under one display; the bytes received.
    ///
    /// # Errors
    /// As [`Client::get_files`]; batches after the failing one are not started.
    pub(super) async fn get_all(
        &mut self,
        downloads: Downloads,
        options: TransferOptions,
        progress: &dyn Progress,
    ) -> Result<u64> {
        // Each directory opened without following links, and the partial files that
        // earlier downloads left there: one read of each.
        let mut opened = Vec::with_capacity(downloads.by_dir.len());
        for dir in downloads.by_dir.keys() {
            let (root, owned) = (downloads.root.clone(), dir.clone());
            let found = tokio::task::spawn_blocking(move || {
                let opened = LocalDir::open(&root, &owned)?;
                let stale = partial::all_ours(&opened.path)?;
                Ok::<_, std::io::Error>((opened, stale))
            })
            .await
            .map_err(std::io::Error::other)
            .and_then(|found| found)
            .map_err(|e| Error::local(dir, e))?;
            opened.push(found);
        }
        let mut batches = Vec::new();
        for ((dir, files), (opened, stale)) in downloads.by_dir.iter().zip(&opened) {
            for files in files.chunks(FILES_PER_BATCH) {
                batches.push(Batch {
                    dir,
                    opened,
                    files,
                    stale,
                });
            }
        }
        as_whole_tree(
            progress,
            downloads.len(),
            downloads.bytes,
            async |progress| {
                self.spread(&batches, async |client, shared| {
                    let mut bytes = 0;
                    while let Some(batch) = shared.take() {
                        bytes += client.get_files(batch, options, progress).await?;
                    }
                    Ok(bytes)
                })
                .await
            },
        )
        .await
    }

    /// Downloads the files of `batch` (remote path, local name) into its local directory,
    /// several asked for at once; each goes to a fresh partial file, is checked, synced (the
    /// syncs of several at once) and renamed into place, and the stale partial files of its
    /// name go. The bytes received.
    ///
    /// # Errors
    /// The first failure, once what was asked for before it has been received (the
    /// connection stays in step); files renamed into place before it stay.
    async fn get_files(
        &mut self,
        batch: &Batch<'_>,
        options: TransferOptions,
        progress: &dyn Progress,
    ) -> Result<u64> {
        self.get_files_into(batch, options, progress)
            .await
            .map_err(|err| shown_in(err, batch.opened, batch.dir))
    }

    /// [`Client::get_files`], every file operation through the directory's handle.
    async fn get_files_into(
        &mut self,
        batch: &Batch<'_>,
        options: TransferOptions,
        progress: &dyn Progress,
    ) -> Result<u64> {
        let (files, dir) = (batch.files, batch.opened.path.as_path());
        let mut asked = 0;
        let mut bytes = 0;
        let mut first_failure: Option<Error> = None;
        let mut finishing = tokio::task::JoinSet::new();
        // Bytes of small files held in memory by the downloads finishing.
        let mut held = 0u64;
        for (i, (source, name)) in files.iter().enumerate() {
            // Ask ahead, up to the window, unless a failure stopped the asking.
            while first_failure.is_none() && asked < files.len() && asked < i + GETS_IN_FLIGHT {
                let (source, name) = &files[asked];
                let target = dir.join(name);
                // A local `stat`: here, not a hop to the blocking pool (as the server does).
                if !options.overwrite && std::fs::symlink_metadata(&target).is_ok() {
                    first_failure = Some(Error::local(
                        &target,
                        "already exists (use -f to replace it)",
                    ));
                    break;
                }
                self.send(&Request::Get {
                    path: source.clone(),
                    offset: 0,
                })
                .await?;
                asked += 1;
            }
            if i >= asked {
                break;
            }
            match self.receive_whole(name, dir, options, progress).await {
                Ok(received) => {
                    bytes += received.size;
                    let (target, overwrite) = (dir.join(name), options.overwrite);
                    let stale: Vec<PathBuf> = batch
                        .stale
                        .iter()
                        .filter(|p| partial::is_partial_of(p, name))
                        .cloned()
                        .collect();
                    let holds = received.held_bytes();
                    held += holds;
                    finishing.spawn_blocking(move || {
                        (holds, finish_download(received, target, overwrite, stale))
                    });
                    while finishing.len() >= SYNCS_AT_ONCE || held > HELD_AT_ONCE {
                        let Some(done) = finishing.join_next().await else {
                            // None left (one that panicked could not say what it held).
                            held = 0;
                            break;
                        };
                        held = held.saturating_sub(joined(done, &mut first_failure));
                    }
                }
                // The server refused this one; the others asked for come all the same.
                Err(err @ Error::Remote { .. }) => {
                    first_failure.get_or_insert(naming(source, err));
                }
                Err(err) => return Err(naming(source, err)),
            }
        }
        while let Some(done) = finishing.join_next().await {
            joined(done, &mut first_failure);
        }
        match first_failure {
            Some(err) => Err(err),
            None => Ok(bytes),
        }
    }

    /// Receives the answer to a `Get` from offset 0 for a fresh partial file in `dir`: what
    /// [`finish_download`] needs to check, write (a small file's data is held until then),
    /// sync and rename it.
    async fn receive_whole(
        &mut self,
        name: &str,
        dir: &Path,
        options: TransferOptions,
        progress: &dyn Progress,
    ) -> Result<Received> {
        let (size, attributes) = match self.reply().await? {
            Response::GetReady {
                size,
                offset: 0,
                attributes,
            } => (size, attributes),
            _ => {
                // Whatever the server sends next is not known to belong to anything.
                self.in_step = false;
                return Err(Error::UnexpectedReply("expected GetReady from offset 0"));
            }
        };
        let (part, file) = match partial::create(dir, name) {
            Ok(created) => created,
            Err(err) => {
                // The server is sending already: the connection cannot be used again.
                self.in_step = false;
                return Err(Error::local(dir, err));
            }
        };
        progress.start(name, size, 0);
        let mut sink = FileSink::new(file, Checksum::new(), size);
        let received = self.receive_data(&mut sink, size, &part, progress).await;
        progress.finish();
        let data = sink.end().await;
        match received {
            Ok(theirs) => Ok(Received {
                size,
                part,
                data,
                theirs,
                attributes: attributes.filter(|_| options.preserve),
            }),
            Err(err) => {
                drop(data);
                let _ = std::fs::remove_file(&part);
                Err(err)
            }
        }
    }
}

/// A file of a tree download, received whole into (or for) its partial file.
struct Received {
    size: u64,
    part: PathBuf,
    data: SinkEnded,
    /// The server's checksum of the file.
    theirs: Digest,
    /// To apply (`-p`).
    attributes: Option<crate::commands::Attributes>,
}

impl Received {
    /// Bytes of the file held in memory, to be written when it finishes.
    fn held_bytes(&self) -> u64 {
        match self.data {
            SinkEnded::Held(..) => self.size,
            SinkEnded::Written(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::commands::{Hello, MAX_CHUNK};
    use crate::wire::Connection;

    /// The server's end of a pipe, hellos exchanged: the tests play a server by hand.
    async fn fake_server(stream: tokio::io::DuplexStream) -> Connection<tokio::io::DuplexStream> {
        let mut conn = Connection::new(stream);
        let _: Hello = conn.expect().await.unwrap();
        conn.write(&Hello::ours()).await.unwrap();
        let names = vec![crate::auth::MECHANISM.to_owned()];
        conn.write(&Response::Mechanisms { names }).await.unwrap();
        conn
    }

    /// A small file of a tree download, held until its finish: written, checked, given its
    /// attributes and renamed into place; or, if its checksum differs from the server's,
    /// nothing of it stays.
    #[test]
    fn a_held_download_is_checked_before_it_is_put_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let data = b"the bytes of a small file".to_vec();
        let chunks = vec![
            Bytes::from(data[..9].to_vec()),
            Bytes::from(data[9..].to_vec()),
        ];
        let held = |name: &str, theirs: Digest| {
            let (part, file) = partial::create(dir.path(), name).unwrap();
            Received {
                size: data.len() as u64,
                part,
                data: SinkEnded::Held(file, Checksum::new(), chunks.clone()),
                theirs,
                attributes: Some(crate::commands::Attributes {
                    modified: 1_000_000_000,
                    mode: 0o640,
                }),
            }
        };

        let good = held("good", Checksum::of(&data));
        assert_eq!(good.held_bytes(), data.len() as u64);
        let part = good.part.clone();
        let target = dir.path().join("good");
        finish_download(good, target.clone(), false, Vec::new()).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), data);
        assert!(!part.exists());
        let meta = std::fs::metadata(&target).unwrap();
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        assert_eq!(meta.mtime(), 1_000_000_000);
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);

        let bad = held("bad", Checksum::of(b"something else"));
        let part = bad.part.clone();
        let target = dir.path().join("bad");
        let err = finish_download(bad, target.clone(), false, Vec::new()).unwrap_err();
        assert!(matches!(err, Error::ChecksumMismatch), "{err}");
        assert!(!target.exists() && !part.exists());
    }

    /// A single small file goes up in one `Put`, answered once: one round trip. A larger
    /// one, and a resume (which must learn where to go on), start with `PutStart`.
    #[tokio::test]
    async fn a_small_single_upload_is_one_request_and_one_answer() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small");
        std::fs::write(&small, b"a few bytes").unwrap();
        let large = dir.path().join("large");
        std::fs::write(&large, vec![3u8; MAX_CHUNK + 1]).unwrap();
        let (near, far) = tokio::io::duplex(4 * MAX_CHUNK);
        let server = tokio::spawn(async move {
            let mut conn = fake_server(far).await;
            let mut seen = Vec::new();
            while let Ok(Some(request)) = conn.read::<Request>().await {
                let reply = match &request {
                    Request::Put { .. } => Response::Ok,
                    _ => Response::Error {
                        code: ErrorCode::InvalidPath,
                        message: "enough".into(),
                    },
                };
                seen.push(request);
                conn.write(&reply).await.unwrap();
            }
            seen
        });
        let mut client = Client::handshake(near).await.unwrap();
        let done = client
            .put_file(&small, "up", TransferOptions::default(), &NoProgress)
            .await
            .unwrap();
        assert_eq!(done.size, 11);
        let resume = TransferOptions {
            resume: true,
            ..TransferOptions::default()
        };
        assert!(
            client
                .put_file(&small, "again", resume, &NoProgress)
                .await
                .is_err()
        );
        let options = TransferOptions::default();
        assert!(
            client
                .put_file(&large, "big", options, &NoProgress)
                .await
                .is_err()
        );
        drop(client);

        let seen = server.await.unwrap();
        assert_eq!(seen.len(), 3, "{seen:?}");
        match &seen[0] {
            Request::Put {
                path,
                overwrite: false,
                preserve: None,
                data,
                checksum,
            } => {
                assert_eq!(path, "up");
                assert_eq!(&data[..], b"a few bytes");
                assert_eq!(*checksum, Checksum::of(b"a few bytes"));
            }
            other => panic!("expected one Put, got {other:?}"),
        }
        assert!(
            matches!(&seen[1], Request::PutStart { path, resume: true, .. } if path == "again"),
            "{:?}",
            seen[1]
        );
        assert!(
            matches!(&seen[2], Request::PutStart { path, size, .. } if path == "big" && *size == MAX_CHUNK as u64 + 1),
            "{:?}",
            seen[2]
        );
    }

    /// The server's side of a download: `chunks` data frames of 1000 bytes, then `GetDone`.
    async fn serve_download(stream: tokio::io::DuplexStream, chunks: usize) {
        let mut conn = fake_server(stream).await;
        for _ in 0..chunks {
            let data = Bytes::from(vec![7u8; 1000]);
            conn.write(&Response::Data { data }).await.unwrap();
        }
        let checksum = Checksum::of(&vec![7u8; 1000 * chunks]);
        conn.write(&Response::GetDone { checksum }).await.unwrap();
    }

    /// A client of [`serve_listing`] with `entries`.
    async fn listed(entries: Vec<crate::commands::Entry>) -> Client<tokio::io::DuplexStream> {
        let (near, far) = tokio::io::duplex(1 << 16);
        tokio::spawn(serve_listing(far, entries));
        Client::handshake(near).await.unwrap()
    }

    /// A directory `target` where a link `sub` to the (empty) directory `outside` was
    /// planted: (outside, target), in `tmp`.
    fn planted_link(tmp: &Path) -> (PathBuf, PathBuf) {
        let outside = tmp.join("outside");
        std::fs::create_dir(&outside).unwrap();
        let target = tmp.join("target");
        std::fs::create_dir(&target).unwrap();
        std::os::unix::fs::symlink(&outside, target.join("sub")).unwrap();
        (outside, target)
    }

    /// A hostile server: answers every `List` with `entries`, every `Get` with "hello".
    async fn serve_listing(stream: tokio::io::DuplexStream, entries: Vec<crate::commands::Entry>) {
        let mut conn = fake_server(stream).await;
        while let Ok(Some(request)) = conn.read::<Request>().await {
            match request {
                Request::List { .. } | Request::ListTree { .. } => {
                    let entries = entries.clone();
                    conn.write(&Response::Entries { entries }).await.unwrap();
                    conn.write(&Response::Ok).await.unwrap();
                }
                Request::Get { .. } => {
                    conn.write(&Response::GetReady {
                        size: 5,
                        offset: 0,
                        attributes: None,
                    })
                    .await
                    .unwrap();
                    let data = Bytes::from_static(b"hello");
                    conn.write(&Response::Data { data }).await.unwrap();
                    let checksum = Checksum::of(b"hello");
                    conn.write(&Response::GetDone { checksum }).await.unwrap();
                }
                _ => conn.write(&Response::Ok).await.unwrap(),
            }
        }
    }

    /// Issue 11.4: a server listing `../../.bash_profile` made `ftpc get -r` write it
    /// outside the target, and exit 0.
    #[tokio::test]
    async fn a_tree_download_refuses_names_that_leave_the_target() {
        let home = tempfile::tempdir().unwrap();
        let work = home.path().join("work");
        std::fs::create_dir(&work).unwrap();
        for evil in ["../../.bash_profile", "..", "a/b", "x\0y", ""] {
            let entry = crate::commands::Entry {
                name: evil.to_owned(),
                kind: EntryKind::File,
                size: 5,
                modified: None,
            };
            let mut client = listed(vec![entry]).await;
            let target = work.join("photos");
            let err = client
                .get_tree(
                    "docs/photos",
                    &target,
                    TransferOptions::default(),
                    &NoProgress,
                )
                .await
                .unwrap_err();
            assert!(matches!(err, Error::UnsafeName { .. }), "{evil:?}: {err}");
            assert!(err.to_string().contains("unsafe name"), "{err}");
        }
        assert!(!home.path().join(".bash_profile").exists());
        let mut names: Vec<_> = std::fs::read_dir(home.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["work"]);
        assert!(
            std::fs::read_dir(work.join("photos"))
                .unwrap()
                .next()
                .is_none()
        );
    }

    /// A link planted where a subdirectory of the tree goes is not followed.
    #[tokio::test]
    async fn a_tree_download_does_not_follow_a_planted_directory_link() {
        let tmp = tempfile::tempdir().unwrap();
        let (outside, target) = planted_link(tmp.path());
        let dir = crate::commands::Entry {
            name: "sub".to_owned(),
            kind: EntryKind::Directory,
            size: 0,
            modified: None,
        };
        let mut client = listed(vec![dir]).await;
        let err = client
            .get_tree("t", &target, TransferOptions::default(), &NoProgress)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
        // Nor when the listing names a file in it without listing the directory first.
        let file = crate::commands::Entry {
            name: "sub/file".to_owned(),
            kind: EntryKind::File,
            size: 5,
            modified: None,
        };
        let mut client = listed(vec![file]).await;
        let err = client
            .get_tree("t", &target, TransferOptions::default(), &NoProgress)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::UnsafeName { .. }), "{err}");
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
    }

    /// `sync :REMOTE DIR` takes no path from a server that goes through a directory the
    /// server did not list first (here a link planted on this side).
    #[tokio::test]
    async fn a_sync_down_does_not_write_through_an_unlisted_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let (outside, target) = planted_link(tmp.path());
        let file = crate::commands::Entry {
            name: "sub/file".to_owned(),
            kind: EntryKind::File,
            size: 5,
            modified: Some(1),
        };
        let mut client = listed(vec![file]).await;
        let options = crate::client::sync::SyncOptions {
            delete: true,
            ..Default::default()
        };
        let err = client
            .sync_down("t", &target, &options, &NoProgress)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::UnsafeName { .. }), "{err}");
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
        assert!(target.join("sub").exists(), "nothing deleted");
    }

    /// Issue 27.2: a listing naming `sub` twice (a directory, then a file) and then
    /// `sub/canary` made `sync` skip entering `sub` and write through the link planted
    /// there. A listing with a name twice is refused, by every command that reads one.
    #[tokio::test]
    async fn a_listing_with_a_name_twice_is_refused_and_nothing_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let (outside, target) = planted_link(tmp.path());
        let entry = |name: &str, kind| crate::commands::Entry {
            name: name.to_owned(),
            kind,
            size: 5,
            modified: Some(1),
        };
        let hostile = vec![
            entry("sub", EntryKind::Directory),
            entry("sub", EntryKind::File),
            entry("sub/canary", EntryKind::File),
        ];
        let options = crate::client::sync::SyncOptions::default();
        let err = listed(hostile.clone())
            .await
            .sync_down("t", &target, &options, &NoProgress)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::DuplicateName { .. }), "{err}");
        assert!(err.to_string().contains("\"sub\" twice"), "{err}");
        let err = listed(hostile.clone())
            .await
            .get_tree("t", &target, TransferOptions::default(), &NoProgress)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::DuplicateName { .. }), "{err}");
        let err = listed(hostile).await.list("t").await.unwrap_err();
        assert!(matches!(err, Error::DuplicateName { .. }), "{err}");
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
        // The link is still there, untouched.
        assert!(target.join("sub").is_symlink());
    }

    /// Issue 27.2: every local directory on the way is entered through a handle that never
    /// follows a link, and is the one written to even if the path is swapped for a link
    /// after it was checked.
    #[test]
    fn local_directories_are_entered_without_following_links() {
        let tmp = tempfile::tempdir().unwrap();
        let (outside, target) = planted_link(tmp.path());
        // A link on the way, last or in the middle, is refused.
        for below in ["sub", "sub/deeper"] {
            let err = LocalDir::open(&target, &target.join(below)).err().unwrap();
            assert!(err.to_string().contains("symlink"), "{below}: {err}");
        }
        // A real directory, swapped for a link once opened: writes still go to it.
        let real = target.join("real");
        std::fs::create_dir(&real).unwrap();
        let opened = LocalDir::open(&target, &real).unwrap();
        std::fs::rename(&real, target.join("moved")).unwrap();
        std::os::unix::fs::symlink(&outside, &real).unwrap();
        let (part, _) = partial::create(&opened.path, "f").unwrap();
        std::fs::rename(&part, opened.path.join("f")).unwrap();
        assert!(target.join("moved/f").is_file());
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
        // Errors name the directory the user knows, not the handle.
        let err = shown_in(Error::local(&opened.path.join("f"), "boom"), &opened, &real);
        assert!(
            err.to_string().contains(&*real.join("f").to_string_lossy()),
            "{err}"
        );
    }

    /// Issue 11.12: empty `Data` frames every few seconds kept `get` waiting past its reply
    /// timeout. Frames without data are no progress.
    #[tokio::test]
    async fn a_download_that_makes_no_progress_times_out() {
        let (near, far) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            let mut conn = fake_server(far).await;
            let _: Request = conn.expect().await.unwrap();
            conn.write(&Response::GetReady {
                size: 10,
                offset: 0,
                attributes: None,
            })
            .await
            .unwrap();
            // The hostile part: a frame now and then, never any data.
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let data = Bytes::new();
                if conn.write(&Response::Data { data }).await.is_err() {
                    return;
                }
            }
        });
        let mut client = Client::handshake(near).await.unwrap();
        client.set_reply_timeout(Duration::from_millis(500));
        let dir = tempfile::tempdir().unwrap();
        let started = std::time::Instant::now();
        let err = client
            .get_file(
                "f",
                &dir.path().join("f"),
                TransferOptions::default(),
                &NoProgress,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Timeout), "{err}");
        assert!(started.elapsed() < Duration::from_secs(30));
        assert!(!client.is_in_step());
    }

    /// Issue 11.12: endless `Entries` frames took `ftpc` to 282 MB.
    #[tokio::test]
    async fn a_listing_is_capped() {
        let (near, far) = tokio::io::duplex(1 << 20);
        tokio::spawn(async move {
            let mut conn = fake_server(far).await;
            let _: Request = conn.expect().await.unwrap();
            let entry = crate::commands::Entry {
                name: "x".repeat(200),
                kind: EntryKind::File,
                size: 0,
                modified: None,
            };
            let entries = vec![entry; 1024];
            loop {
                let entries = entries.clone();
                if conn.write(&Response::Entries { entries }).await.is_err() {
                    return;
                }
            }
        });
        let mut client = Client::handshake(near).await.unwrap();
        let err = client.list("d").await.unwrap_err();
        assert!(
            err.to_string().contains("larger than this client accepts"),
            "{err}"
        );
        assert!(!client.is_in_step());
    }

    #[tokio::test]
    async fn a_download_that_stops_half_way_leaves_the_connection_out_of_step() {
        let chunks = 8;
        let expected = 1000 * chunks as u64;
        let target = tempfile::NamedTempFile::new().unwrap();

        // All frames written: in step.
        let (near, far) = tokio::io::duplex(4 * MAX_CHUNK);
        tokio::spawn(serve_download(far, chunks));
        let mut client = Client::handshake(near).await.unwrap();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(target.path())
            .unwrap();
        let mut sink = FileSink::Streaming(FileWriter::spawn(file, Checksum::new()));
        let progress = &NoProgress;
        let received = client
            .receive_data(&mut sink, expected, target.path(), progress)
            .await;
        assert!(received.is_ok(), "{received:?}");
        assert!(client.is_in_step());

        // A file that cannot be written (as on a full disk): the first chunk fails while
        // the rest are on their way.
        let (near, far) = tokio::io::duplex(4 * MAX_CHUNK);
        tokio::spawn(serve_download(far, chunks));
        let mut client = Client::handshake(near).await.unwrap();
        let read_only = std::fs::File::open(target.path()).unwrap();
        let mut sink = FileSink::Streaming(FileWriter::spawn(read_only, Checksum::new()));
        let received = client
            .receive_data(&mut sink, expected, target.path(), progress)
            .await;
        assert!(matches!(received, Err(Error::Local { .. })), "{received:?}");
        assert!(!client.is_in_step());
    }
}
