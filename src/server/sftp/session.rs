//! One SFTP session (version 3, as OpenSSH speaks it) over an SSH channel: packets read
//! with a bound on their length and decoded by `russh-sftp`'s codec, each request answered
//! in order by a call of the core ([`UserFiles`]), so the jail, quotas and audit are the
//! native protocol's. The user's home is `/`; `..` stops there, as in a chroot.

use std::collections::HashMap;

use bytes::{Buf, Bytes, BytesMut};
use russh_sftp::extensions::{self as ext, LimitsExtension};
use russh_sftp::protocol::{
    Attrs, File, FileAttributes, Handle, Name, OpenFlags, Packet, StatusCode, Version,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::reading::{MAX_IO, Reading};
use super::reply::{
    attributes, decode, done, extended_reply, file_of_size, ok, refused, status, statvfs,
};
use super::writing::Writing;
use crate::commands::EntryKind;
use crate::server::core::UserFiles;
use crate::server::core::files::Listed;

/// The protocol version spoken: 3, the one every client speaks.
const VERSION: u32 = 3;

/// The longest packet taken from a client: a write of [`MAX_IO`] and its header, with room.
pub(crate) const MAX_PACKET: u32 = 256 * 1024 + 1024;

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
    /// A file being written: it appears, whole, when the handle is closed.
    Writing(Writing),
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
            writing.interrupted().await;
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

fn too_many_handles(id: u32) -> Packet {
    status(
        id,
        StatusCode::Failure,
        &format!("too many open handles (at most {MAX_HANDLES}); close some first"),
    )
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

/// What is at `raw` (`follow`: a link followed). For the user's own resume (`reput`,
/// `put -a` stat the target first), a file an interrupted upload left has the size
/// of what it kept.
async fn stat(files: &UserFiles, id: u32, raw: &str, follow: bool) -> Packet {
    let path = resolve(raw);
    let found = async {
        if follow {
            files.stat_target(&path).await
        } else {
            files.stat(&path).await
        }
    };
    let (kept, found) = tokio::join!(files.kept_partial(&path), found);
    let attrs = match (kept, found) {
        (Ok(Some(size)), _) => file_of_size(size),
        (_, Ok(entry)) => attributes(&entry),
        (_, Err(err)) => return refused(id, &err),
    };
    Packet::Attrs(Attrs { id, attrs })
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
            Packet::Stat(request) => self.stat(request.id, &request.path, true).await,
            Packet::Lstat(request) => self.stat(request.id, &request.path, false).await,
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
                let Some(Opened::Reading(reading)) = self.handles.get_mut(&request.handle) else {
                    return status(request.id, StatusCode::Failure, "no such file handle");
                };
                reading
                    .read(&self.files, request.id, request.offset, request.len)
                    .await
            }
            Packet::Fstat(request) => {
                let path = match self.handles.get(&request.handle) {
                    Some(Opened::Reading(reading)) => reading.path.clone(),
                    Some(Opened::Writing(writing)) => {
                        return Packet::Attrs(Attrs {
                            id: request.id,
                            attrs: file_of_size(writing.written()),
                        });
                    }
                    Some(Opened::Directory { .. }) | None => {
                        return status(request.id, StatusCode::Failure, "no such file handle");
                    }
                };
                stat(&self.files, request.id, &path, true).await
            }
            Packet::Close(request) => match self.handles.remove(&request.handle) {
                Some(Opened::Reading(reading)) => {
                    reading.close();
                    ok(request.id)
                }
                Some(Opened::Directory { .. }) => ok(request.id),
                Some(Opened::Writing(writing)) => {
                    done(request.id, writing.finish(&self.files).await)
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
                let Some(Opened::Writing(writing)) = self.handles.get_mut(&request.handle) else {
                    return status(
                        request.id,
                        StatusCode::Failure,
                        "no such file handle open for writing",
                    );
                };
                done(
                    request.id,
                    writing.write(request.offset, request.data).await,
                )
            }
            Packet::SetStat(request) => {
                let attrs = &request.attrs;
                if attrs.uid.is_some() || attrs.gid.is_some() {
                    return status(
                        request.id,
                        StatusCode::PermissionDenied,
                        "owners and groups are the server's own",
                    );
                }
                // A file this session is writing takes them as through its handle.
                if let Some(writing) = self.writing_at(&request.path) {
                    return done(request.id, writing.set_attributes(attrs));
                }
                if attrs.size.is_some() {
                    return status(
                        request.id,
                        StatusCode::OpUnsupported,
                        "files change only whole here: a size cannot be set",
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
                Some(Opened::Writing(writing)) => {
                    done(request.id, writing.set_attributes(&request.attrs))
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
            ext::FSYNC => {
                match decode::<FsyncRequest>(data).map(|a| self.handles.get_mut(&a.handle)) {
                    // A file being written is synced when it is put in place, at its close.
                    Some(Some(Opened::Writing(writing))) => {
                        writing.sync();
                        ok(id)
                    }
                    Some(Some(_)) => ok(id),
                    Some(None) => status(id, StatusCode::Failure, "no such handle"),
                    None => malformed(),
                }
            }
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

    /// The file this session is writing at `raw`, if any.
    fn writing_at(&mut self, raw: &str) -> Option<&mut Writing> {
        let path = resolve(raw);
        self.handles.values_mut().find_map(|opened| match opened {
            Opened::Writing(writing) if writing.path == path => Some(writing),
            _ => None,
        })
    }

    /// What is at `raw` (`follow`: a link followed): a file this session is writing
    /// (appearing when it is closed) answers with what it holds so far.
    async fn stat(&mut self, id: u32, raw: &str, follow: bool) -> Packet {
        if let Some(writing) = self.writing_at(raw) {
            return Packet::Attrs(Attrs {
                id,
                attrs: file_of_size(writing.written()),
            });
        }
        stat(&self.files, id, raw, follow).await
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
        if self.handles.len() >= MAX_HANDLES {
            return too_many_handles(id);
        }
        let writing =
            OpenFlags::WRITE | OpenFlags::APPEND | OpenFlags::CREATE | OpenFlags::TRUNCATE;
        if flags.intersects(writing) {
            // One upload per target: a second here would wait for the first, which this
            // session could then never close.
            if self.writing_at(&path).is_some() {
                return status(
                    id,
                    StatusCode::Failure,
                    "this file is already open for writing in this session; close it first",
                );
            }
            return match Writing::open(&self.files, &path, flags).await {
                Ok(writing) => self.open(id, Opened::Writing(writing)),
                Err(err) => refused(id, &err),
            };
        }
        match self.files.stat_target(&path).await {
            Ok(entry) if entry.kind == EntryKind::Directory => {
                status(id, StatusCode::Failure, "is a directory")
            }
            Ok(entry) => self.open(id, Opened::Reading(Reading::new(path, entry.size))),
            Err(err) => refused(id, &err),
        }
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
    fn a_request_id_is_found_in_a_body_that_did_not_decode() {
        assert_eq!(
            request_id(&Bytes::from_static(&[17, 0, 0, 1, 2, 9])),
            Some(258)
        );
        assert_eq!(request_id(&Bytes::from_static(&[17, 0, 0])), None);
    }
}
