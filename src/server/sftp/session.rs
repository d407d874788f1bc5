//! One SFTP session (version 3, as OpenSSH speaks it) over an SSH channel: packets read
//! with a bound on their length and decoded by `russh-sftp`'s codec, each request answered
//! in order by a call of the core ([`UserFiles`]), so the jail, quotas and audit are the
//! native protocol's. The user's home is `/`; `..` stops there, as in a chroot.

use std::collections::HashMap;

use bytes::{Buf, Bytes, BytesMut};
use russh_sftp::extensions::{self as ext, LimitsExtension, Statvfs};
use russh_sftp::protocol::{
    Attrs, Data, ExtendedReply, File, FileAttributes, Handle, Name, OpenFlags, Packet, Status,
    StatusCode, Version,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::commands::Attributes;
use crate::commands::{Entry, EntryKind, ErrorCode};
use crate::error::StorageError;
use crate::server::core::files::{GetInProgress, Listed, PutInProgress, UserQuota};
use crate::server::core::{Outcome, UserFiles};
use crate::server::storage::Usage;

/// The protocol version spoken: 3, the one every client speaks.
const VERSION: u32 = 3;

/// The longest packet taken from a client: a write of [`MAX_IO`] and its header, with room.
pub(crate) const MAX_PACKET: u32 = 256 * 1024 + 1024;

/// The most bytes one read or write moves (what `limits@openssh.com` announces).
pub(crate) const MAX_IO: u32 = 255 * 1024;

/// Handles one session may hold open at once.
pub(crate) const MAX_HANDLES: usize = 64;

/// Why a session ends before the client closes it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    #[error("the channel failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("a packet of {0} bytes is over the limit of {MAX_PACKET}")]
    TooLarge(u32),
    #[error("the client spoke before SSH_FXP_INIT")]
    NoInit,
    #[error("cannot encode a reply: {0}")]
    Encode(String),
}

/// What an open handle refers to.
enum Opened {
    /// A directory being listed, page by page.
    Directory { listed: Listed, done: bool },
    /// A file being read.
    Reading(Reading),
    /// A file being written: it appears, whole, when the handle is closed; after a write
    /// that failed, never (the reason is the close's answer).
    Writing(Writing),
}

/// A file being written.
struct Writing {
    put: PutInProgress,
    /// Why a write failed: nothing of the file is kept.
    failed: Option<StorageError>,
    /// Opened without truncating an existing file (as `scp` opens, then sets the size):
    /// the old file's bytes past what was written are kept, up to a size the client sets.
    tail: Option<Tail>,
}

/// What an open without truncation keeps of the file it replaces.
struct Tail {
    path: String,
    /// The old file's size.
    size: u64,
    /// A size the client set (`fsetstat`): the file ends there.
    cut: Option<u64>,
}

/// A file being read: the download from the position where reading stopped, reopened at
/// a new offset when the client reads elsewhere.
struct Reading {
    path: String,
    /// The file's size when it was opened.
    size: u64,
    get: Option<GetInProgress>,
    /// The offset the download has reached (after `buffer`).
    position: u64,
    /// Data read ahead of the position the client asked for.
    buffer: Bytes,
}

/// Serves SFTP on `stream` for `files`' user until the client closes the channel.
///
/// # Errors
/// The channel fails, or the client breaks the protocol beyond an answer (a packet over
/// the limit, no `SSH_FXP_INIT`).
pub(crate) async fn run<S>(mut stream: S, files: UserFiles) -> Result<(), SessionError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut session = Session {
        files,
        handles: HashMap::new(),
        next_handle: 0,
    };
    let served = serve(&mut stream, &mut session).await;
    // Uploads left open stop without replacing their targets; what they wrote stays
    // hidden, for a resume.
    for (_, opened) in session.handles.drain() {
        if let Opened::Writing(writing) = opened {
            writing.put.interrupted().await;
        }
    }
    served
}

async fn serve<S>(stream: &mut S, session: &mut Session) -> Result<(), SessionError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut initialised = false;
    loop {
        let length = match stream.read_u32().await {
            Ok(length) => length,
            Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(err) => return Err(err.into()),
        };
        if length > MAX_PACKET {
            return Err(SessionError::TooLarge(length));
        }
        let mut body = BytesMut::zeroed(length as usize);
        stream.read_exact(&mut body).await?;
        let mut body = body.freeze();
        let id = request_id(&body);
        let reply = match Packet::try_from(&mut body) {
            Ok(Packet::Init(_)) => {
                initialised = true;
                Packet::Version(Version {
                    version: VERSION,
                    extensions: announced(),
                })
            }
            Ok(_) if !initialised => return Err(SessionError::NoInit),
            Ok(request) => session.answer(request).await,
            Err(err) => {
                let (user, peer) = (&session.files.user, session.files.peer);
                tracing::info!(%user, %peer, error = %err, "malformed SFTP packet");
                status(id.unwrap_or(0), StatusCode::BadMessage, "malformed packet")
            }
        };
        let bytes = Bytes::try_from(reply).map_err(|e| SessionError::Encode(e.to_string()))?;
        stream.write_all(&bytes).await?;
        stream.flush().await?;
    }
}

/// The request id of a packet whose body did not decode, if it has one (every request
/// but `SSH_FXP_INIT` starts with it, after the type).
fn request_id(body: &Bytes) -> Option<u32> {
    let mut rest = body.get(1..5)?;
    (body.len() >= 5).then(|| rest.get_u32())
}

/// The extensions announced in `SSH_FXP_VERSION`, with their versions, as OpenSSH's
/// `sftp-server` names them.
fn announced() -> HashMap<String, String> {
    [
        (POSIX_RENAME, "1"),
        (ext::STATVFS, "2"),
        (ext::FSYNC, "1"),
        (ext::LIMITS, "1"),
    ]
    .into_iter()
    .map(|(name, version)| (name.to_owned(), version.to_owned()))
    .collect()
}

/// A rename that replaces its target, as `rename(2)` does (`sftp`'s `rename` uses it).
const POSIX_RENAME: &str = "posix-rename@openssh.com";

/// The arguments of `posix-rename@openssh.com`.
#[derive(serde::Deserialize)]
struct PosixRename {
    oldpath: String,
    newpath: String,
}

/// The argument of `statvfs@openssh.com`.
#[derive(serde::Deserialize)]
struct StatvfsRequest {
    path: String,
}

/// The argument of `fsync@openssh.com`.
#[derive(serde::Deserialize)]
struct FsyncRequest {
    handle: String,
}

/// Blocks as `df` counts them in a `statvfs@openssh.com` reply.
const BLOCK: u64 = 4096;

fn extended_reply<T: serde::Serialize>(id: u32, value: &T) -> Packet {
    match russh_sftp::ser::to_bytes(value) {
        Ok(data) => Packet::ExtendedReply(ExtendedReply {
            id,
            data: data.to_vec(),
        }),
        Err(err) => status(id, StatusCode::Failure, &err.to_string()),
    }
}

fn decode<T: serde::de::DeserializeOwned>(data: Vec<u8>) -> Option<T> {
    russh_sftp::de::from_bytes(&mut Bytes::from(data)).ok()
}

fn status(id: u32, code: StatusCode, message: &str) -> Packet {
    Packet::Status(Status {
        id,
        status_code: code,
        error_message: message.to_owned(),
        language_tag: "en-US".to_owned(),
    })
}

fn too_many_handles(id: u32) -> Packet {
    status(
        id,
        StatusCode::Failure,
        &format!("too many open handles (at most {MAX_HANDLES}); close some first"),
    )
}

fn ok(id: u32) -> Packet {
    status(id, StatusCode::Ok, "ok")
}

/// The SFTP status for a refusal of the core, with its message.
fn refused(id: u32, err: &StorageError) -> Packet {
    let code = match err.code {
        ErrorCode::NotFound => StatusCode::NoSuchFile,
        ErrorCode::PermissionDenied | ErrorCode::InvalidPath => StatusCode::PermissionDenied,
        ErrorCode::Unsupported => StatusCode::OpUnsupported,
        _ => StatusCode::Failure,
    };
    status(id, code, &err.message)
}

/// The answer to `result`: success, or its refusal.
fn done<T>(id: u32, result: Outcome<T>) -> Packet {
    match result {
        Ok(_) => ok(id),
        Err(err) => refused(id, &err),
    }
}

/// A path as the client sent it, made absolute under the home (`/`): `.` and empty
/// components dropped, `..` stopping at the home, as in a chroot. The core checks the rest.
pub(crate) fn resolve(raw: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            name => parts.push(name),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The times and permission bits a client sets on a file it writes, if it sets a time.
fn preserved(attrs: &FileAttributes) -> Option<Attributes> {
    let modified = i64::from(attrs.mtime?);
    let mode = attrs.permissions.map_or(0o644, |bits| bits & 0o777);
    Some(Attributes { modified, mode })
}

/// SFTP attributes of an entry: type and permission bits, size, times.
fn attributes(entry: &Entry) -> FileAttributes {
    let permissions = match entry.kind {
        EntryKind::Directory => 0o040_755,
        EntryKind::Symlink => 0o120_777,
        EntryKind::File | EntryKind::Other => 0o100_644,
    };
    let time = entry.modified.and_then(|t| u32::try_from(t.max(0)).ok());
    FileAttributes {
        size: Some(entry.size),
        uid: None,
        user: None,
        gid: None,
        group: None,
        permissions: Some(permissions),
        atime: time,
        mtime: time,
    }
}

/// One session's state: the user's files and the open handles.
struct Session {
    files: UserFiles,
    handles: HashMap<String, Opened>,
    next_handle: u64,
}

impl Session {
    async fn answer(&mut self, request: Packet) -> Packet {
        match request {
            Packet::RealPath(request) => {
                let path = resolve(&request.path);
                // The home itself, or something in it that need not exist yet.
                let entry = File {
                    filename: path.clone(),
                    longname: path,
                    attrs: FileAttributes::empty(),
                };
                Packet::Name(Name {
                    id: request.id,
                    files: vec![entry],
                })
            }
            Packet::Stat(request) => Self::stat(&self.files, request.id, &request.path).await,
            Packet::Lstat(request) => Self::stat(&self.files, request.id, &request.path).await,
            Packet::OpenDir(request) => {
                let id = request.id;
                let listed = self.files.list(&resolve(&request.path), false).await;
                match listed {
                    Ok(listed) => self.open(
                        id,
                        Opened::Directory {
                            listed,
                            done: false,
                        },
                    ),
                    Err(err) => refused(id, &err),
                }
            }
            Packet::ReadDir(request) => self.read_dir(request.id, &request.handle).await,
            Packet::Open(request) => {
                self.open_file(request.id, &request.filename, request.pflags)
                    .await
            }
            Packet::Read(request) => {
                self.read(request.id, &request.handle, request.offset, request.len)
                    .await
            }
            Packet::Fstat(request) => {
                let path = match self.handles.get(&request.handle) {
                    Some(Opened::Reading(reading)) => reading.path.clone(),
                    Some(Opened::Writing(writing)) => {
                        let mut attrs = FileAttributes::empty();
                        attrs.size = Some(writing.put.written());
                        attrs.permissions = Some(0o100_644);
                        return Packet::Attrs(Attrs {
                            id: request.id,
                            attrs,
                        });
                    }
                    Some(Opened::Directory { .. }) | None => {
                        return status(request.id, StatusCode::Failure, "no such file handle");
                    }
                };
                Self::stat(&self.files, request.id, &path).await
            }
            Packet::Close(request) => match self.handles.remove(&request.handle) {
                Some(Opened::Reading(reading)) => {
                    // Read to the end: recorded as a transfer.
                    if let Some(get) = reading.get
                        && reading.buffer.is_empty()
                        && reading.position == get.size()
                    {
                        get.done();
                    }
                    ok(request.id)
                }
                Some(Opened::Directory { .. }) => ok(request.id),
                Some(Opened::Writing(writing)) => {
                    done(request.id, Self::finish_writing(&self.files, writing).await)
                }
                None => status(request.id, StatusCode::Failure, "no such handle"),
            },
            Packet::MkDir(request) => {
                let result = self.files.mkdir(&resolve(&request.path), false).await;
                done(request.id, result)
            }
            Packet::RmDir(request) => {
                done(request.id, self.files.rmdir(&resolve(&request.path)).await)
            }
            Packet::Remove(request) => {
                let path = resolve(&request.filename);
                done(request.id, self.files.remove(&path, false).await)
            }
            Packet::Rename(request) => {
                let (from, to) = (resolve(&request.oldpath), resolve(&request.newpath));
                // SFTP v3's rename never replaces an existing target.
                done(request.id, self.files.rename(&from, &to, false).await)
            }
            Packet::ReadLink(request) => {
                match self.files.read_link(&resolve(&request.path)).await {
                    Ok(target) => Packet::Name(Name {
                        id: request.id,
                        files: vec![File::new(target, FileAttributes::empty())],
                    }),
                    Err(err) => refused(request.id, &err),
                }
            }
            Packet::Symlink(request) => {
                let link = resolve(&request.linkpath);
                done(
                    request.id,
                    self.files.symlink(&link, &request.targetpath).await,
                )
            }
            Packet::Write(request) => {
                self.write(request.id, &request.handle, request.offset, request.data)
                    .await
            }
            Packet::SetStat(request) => {
                let attrs = &request.attrs;
                if attrs.size.is_some() {
                    return status(
                        request.id,
                        StatusCode::OpUnsupported,
                        "files change only whole here: a size cannot be set",
                    );
                }
                if attrs.uid.is_some() || attrs.gid.is_some() {
                    return status(
                        request.id,
                        StatusCode::PermissionDenied,
                        "owners and groups are the server's own",
                    );
                }
                let (modified, mode) = (attrs.mtime.map(i64::from), attrs.permissions);
                if modified.is_none() && mode.is_none() {
                    return ok(request.id);
                }
                let path = resolve(&request.path);
                done(
                    request.id,
                    self.files.set_attributes(&path, modified, mode).await,
                )
            }
            Packet::FSetStat(request) => match self.handles.get_mut(&request.handle) {
                // Times and permission bits for the file being written (`put -p`): given
                // to it when it is put in place.
                Some(Opened::Writing(writing)) => {
                    if let Some(attributes) = preserved(&request.attrs) {
                        writing.put.preserve(attributes);
                    }
                    match (request.attrs.size, &mut writing.tail) {
                        (None, _) => ok(request.id),
                        // The size of what was written: nothing of the old file is kept.
                        (Some(size), Some(tail)) if size >= writing.put.written() => {
                            tail.cut = Some(size);
                            ok(request.id)
                        }
                        (Some(size), None) if size == writing.put.written() => ok(request.id),
                        (Some(_), _) => status(
                            request.id,
                            StatusCode::OpUnsupported,
                            "a file being written cannot be cut shorter than what was written",
                        ),
                    }
                }
                Some(_) => status(
                    request.id,
                    StatusCode::OpUnsupported,
                    "only a file being written takes new attributes here",
                ),
                None => status(request.id, StatusCode::Failure, "no such handle"),
            },
            Packet::Extended(request) => {
                self.extended(request.id, &request.request, request.data)
                    .await
            }
            // What only a server sends.
            other @ (Packet::Init(_)
            | Packet::Version(_)
            | Packet::Status(_)
            | Packet::Handle(_)
            | Packet::Data(_)
            | Packet::Name(_)
            | Packet::Attrs(_)
            | Packet::ExtendedReply(_)) => status(
                other.get_request_id(),
                StatusCode::BadMessage,
                "not a request",
            ),
        }
    }

    /// `stat` of `raw` (a free function of the files, so no handle is borrowed meanwhile).
    async fn stat(files: &UserFiles, id: u32, raw: &str) -> Packet {
        match files.stat(&resolve(raw)).await {
            Ok(entry) => Packet::Attrs(Attrs {
                id,
                attrs: attributes(&entry),
            }),
            Err(err) => refused(id, &err),
        }
    }

    /// The extensions announced, and a refusal of every other.
    async fn extended(&mut self, id: u32, name: &str, data: Vec<u8>) -> Packet {
        let malformed = || status(id, StatusCode::BadMessage, "malformed extended request");
        match name {
            POSIX_RENAME => {
                let Some(args) = decode::<PosixRename>(data) else {
                    return malformed();
                };
                let (from, to) = (resolve(&args.oldpath), resolve(&args.newpath));
                done(id, self.files.rename(&from, &to, true).await)
            }
            ext::STATVFS => {
                let Some(args) = decode::<StatvfsRequest>(data) else {
                    return malformed();
                };
                if let Err(err) = self.files.stat(&resolve(&args.path)).await {
                    return refused(id, &err);
                }
                match self.files.usage().await {
                    Ok((usage, quota)) => extended_reply(id, &statvfs(&usage, &quota)),
                    Err(err) => refused(id, &err),
                }
            }
            ext::FSYNC => match decode::<FsyncRequest>(data) {
                // Files are synced before they are put in place; nothing is pending here.
                Some(args) if self.handles.contains_key(&args.handle) => ok(id),
                Some(_) => status(id, StatusCode::Failure, "no such handle"),
                None => malformed(),
            },
            ext::LIMITS => extended_reply(
                id,
                &LimitsExtension {
                    max_packet_len: u64::from(MAX_PACKET),
                    max_read_len: u64::from(MAX_IO),
                    max_write_len: u64::from(MAX_IO),
                    max_open_handles: MAX_HANDLES as u64,
                },
            ),
            other => status(
                id,
                StatusCode::OpUnsupported,
                &format!(
                    "the extension {:?} is not supported",
                    crate::sanitize::for_log(other)
                ),
            ),
        }
    }

    /// A new handle for `opened`, within the limit of open handles.
    fn open(&mut self, id: u32, opened: Opened) -> Packet {
        if self.handles.len() >= MAX_HANDLES {
            return too_many_handles(id);
        }
        self.next_handle += 1;
        let handle = self.next_handle.to_string();
        self.handles.insert(handle.clone(), opened);
        Packet::Handle(Handle { id, handle })
    }

    async fn open_file(&mut self, id: u32, raw: &str, flags: OpenFlags) -> Packet {
        let path = resolve(raw);
        let writing =
            OpenFlags::WRITE | OpenFlags::APPEND | OpenFlags::CREATE | OpenFlags::TRUNCATE;
        if flags.intersects(writing) {
            return self.open_for_writing(id, &path, flags).await;
        }
        match self.files.stat(&path).await {
            Ok(entry) if entry.kind == EntryKind::Directory => {
                status(id, StatusCode::Failure, "is a directory")
            }
            Ok(entry) => self.open(
                id,
                Opened::Reading(Reading {
                    path,
                    size: entry.size,
                    get: None,
                    position: 0,
                    buffer: Bytes::new(),
                }),
            ),
            Err(err) => refused(id, &err),
        }
    }

    /// A file written from its start and put in place whole when closed: as `sftp`'s `put`
    /// opens (write, create, truncate), as `scp` opens (write, create: what was not written
    /// over is kept, unless it sets the size), or new only (`EXCL`).
    async fn open_for_writing(&mut self, id: u32, path: &str, flags: OpenFlags) -> Packet {
        let writes = OpenFlags::WRITE | OpenFlags::CREATE;
        if !flags.contains(writes) || flags.intersects(OpenFlags::READ | OpenFlags::APPEND) {
            return status(
                id,
                StatusCode::OpUnsupported,
                "files are written whole here, from their start: open to write and create; \
                 appending and reading while writing are not supported",
            );
        }
        if self.handles.len() >= MAX_HANDLES {
            return too_many_handles(id);
        }
        let exclusive = flags.contains(OpenFlags::EXCLUDE);
        let mut tail = None;
        if !exclusive && !flags.contains(OpenFlags::TRUNCATE) {
            match self.files.stat(path).await {
                Ok(entry) if entry.kind == EntryKind::File && entry.size > 0 => {
                    tail = Some(Tail {
                        path: path.to_owned(),
                        size: entry.size,
                        cut: None,
                    });
                }
                Ok(_) => {}
                Err(err) if err.code == ErrorCode::NotFound => {}
                Err(err) => return refused(id, &err),
            }
        }
        match self.files.begin_open_put(path, !exclusive).await {
            Ok(put) => self.open(
                id,
                Opened::Writing(Writing {
                    put,
                    failed: None,
                    tail,
                }),
            ),
            Err(err) => refused(id, &err),
        }
    }

    /// Puts a written file in place: with what it keeps of the old one, after a failed
    /// write never.
    async fn finish_writing(files: &UserFiles, writing: Writing) -> Outcome<()> {
        let Writing {
            mut put,
            failed,
            tail,
        } = writing;
        if let Some(err) = failed {
            put.discard(&err).await;
            return Err(err);
        }
        if let Some(tail) = tail {
            let end = tail.cut.unwrap_or(tail.size).min(tail.size);
            if end > put.written()
                && let Err(err) = Self::keep_tail(files, &mut put, &tail.path, end).await
            {
                put.discard(&err).await;
                return Err(err);
            }
        }
        put.finish_as_written().await
    }

    /// Appends the old file's bytes from where the writing stopped up to `end`.
    async fn keep_tail(
        files: &UserFiles,
        put: &mut PutInProgress,
        path: &str,
        end: u64,
    ) -> Outcome<()> {
        let mut old = files.begin_get(path, put.written()).await?;
        while put.written() < end {
            let Some(mut chunk) = old.next_chunk().await? else {
                break;
            };
            let left = end - put.written();
            if chunk.len() as u64 > left {
                chunk.truncate(left as usize);
            }
            put.write(chunk).await?;
        }
        Ok(())
    }

    /// Appends `data` at `offset` to the file being written: in order, as every client
    /// writes a new file.
    async fn write(&mut self, id: u32, handle: &str, offset: u64, data: Vec<u8>) -> Packet {
        let Some(Opened::Writing(Writing { put, failed, .. })) = self.handles.get_mut(handle)
        else {
            return status(
                id,
                StatusCode::Failure,
                "no such file handle open for writing",
            );
        };
        if let Some(err) = failed {
            return refused(id, err);
        }
        let result = if offset == put.written() {
            put.write(Bytes::from(data)).await
        } else {
            Err(StorageError::new(
                ErrorCode::Unsupported,
                format!(
                    "writes must come in order: expected offset {}, got {offset}; nothing of \
                     this file is kept",
                    put.written()
                ),
            ))
        };
        if let Err(err) = &result {
            *failed = Some(err.clone());
        }
        done(id, result)
    }

    async fn read_dir(&mut self, id: u32, handle: &str) -> Packet {
        let Some(Opened::Directory { listed, done }) = self.handles.get_mut(handle) else {
            return status(id, StatusCode::Failure, "no such directory handle");
        };
        if *done {
            return status(id, StatusCode::Eof, "end of directory");
        }
        match listed.listing.next_page().await {
            Ok(Some(page)) if !page.is_empty() => Packet::Name(Name {
                id,
                files: page
                    .iter()
                    .map(|entry| File::new(entry.name.clone(), attributes(entry)))
                    .collect(),
            }),
            Ok(_) => {
                *done = true;
                status(id, StatusCode::Eof, "end of directory")
            }
            Err(err) => refused(id, &err),
        }
    }

    async fn read(&mut self, id: u32, handle: &str, offset: u64, len: u32) -> Packet {
        let Some(Opened::Reading(reading)) = self.handles.get_mut(handle) else {
            return status(id, StatusCode::Failure, "no such file handle");
        };
        let wanted = len.min(MAX_IO) as usize;
        if offset >= reading.size {
            return status(id, StatusCode::Eof, "end of file");
        }
        // Data ahead of the position is kept; a read elsewhere starts the download again.
        let buffered_from = reading.position - reading.buffer.len() as u64;
        if reading.get.is_none() || offset < buffered_from || offset > reading.position {
            match self.files.begin_get(&reading.path, offset).await {
                Ok(get) => {
                    reading.get = Some(get);
                    reading.position = offset;
                    reading.buffer = Bytes::new();
                }
                Err(err) => return refused(id, &err),
            }
        } else {
            let skip = (offset - buffered_from) as usize;
            reading.buffer.advance(skip.min(reading.buffer.len()));
        }
        let mut out = BytesMut::with_capacity(wanted);
        while out.len() < wanted {
            if reading.buffer.is_empty() {
                let Some(get) = reading.get.as_mut() else {
                    break;
                };
                match get.next_chunk().await {
                    Ok(Some(chunk)) => {
                        reading.position += chunk.len() as u64;
                        reading.buffer = chunk;
                    }
                    Ok(None) => break,
                    Err(err) => return refused(id, &err),
                }
            }
            let take = (wanted - out.len()).min(reading.buffer.len());
            out.extend_from_slice(&reading.buffer.split_to(take));
        }
        if out.is_empty() {
            return status(id, StatusCode::Eof, "end of file");
        }
        Packet::Data(Data {
            id,
            data: out.to_vec(),
        })
    }
}

/// What `df` shows of the home: the quota as the disk's size and what is left of it as
/// free (without a quota, a size nothing will reach); the file-count quota as inodes.
fn statvfs(usage: &Usage, quota: &UserQuota) -> Statvfs {
    let blocks = |bytes: u64| bytes.div_ceil(BLOCK);
    let total = quota.bytes.map_or(u64::MAX / BLOCK, blocks);
    let used = blocks(usage.bytes).min(total);
    let inodes = quota.entries.unwrap_or(u64::MAX / 2);
    let free_inodes = inodes.saturating_sub(usage.entries);
    Statvfs {
        block_size: BLOCK,
        fragment_size: BLOCK,
        blocks: total,
        blocks_free: total - used,
        blocks_avail: total - used,
        inodes,
        inodes_free: free_inodes,
        inodes_avail: free_inodes,
        fs_id: 0,
        flags: 0,
        name_max: 255,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_under_the_home_and_never_above_it() {
        assert_eq!(resolve("."), "/");
        assert_eq!(resolve(""), "/");
        assert_eq!(resolve("/"), "/");
        assert_eq!(resolve("a//b/./c/"), "/a/b/c");
        assert_eq!(resolve("/a/b/../c"), "/a/c");
        assert_eq!(resolve("../../etc/passwd"), "/etc/passwd");
        assert_eq!(resolve("/.."), "/");
    }

    #[test]
    fn df_shows_the_quota_and_what_is_left_of_it() {
        let usage = Usage {
            bytes: 10 * BLOCK + 1,
            entries: 3,
        };
        let quota = UserQuota {
            bytes: Some(100 * BLOCK),
            entries: Some(10),
        };
        let vfs = statvfs(&usage, &quota);
        assert_eq!(
            (vfs.blocks, vfs.blocks_free, vfs.blocks_avail),
            (100, 89, 89)
        );
        assert_eq!((vfs.inodes, vfs.inodes_free), (10, 7));
        // Over the quota (it was lowered): nothing free, no wrap.
        let over = statvfs(
            &Usage {
                bytes: 200 * BLOCK,
                entries: 20,
            },
            &quota,
        );
        assert_eq!((over.blocks_free, over.inodes_free), (0, 0));
        let unlimited = statvfs(&usage, &UserQuota::default());
        assert_eq!(unlimited.blocks_free, unlimited.blocks - 11);
    }

    #[test]
    fn a_request_id_is_found_in_a_body_that_did_not_decode() {
        assert_eq!(
            request_id(&Bytes::from_static(&[17, 0, 0, 1, 2, 9])),
            Some(258)
        );
        assert_eq!(request_id(&Bytes::from_static(&[17, 0, 0])), None);
    }
}
