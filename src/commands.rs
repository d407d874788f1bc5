//! The vocabulary on the wire: the hello both sides open with, the requests a client sends,
//! the responses a server answers with and the typed error codes. Data only; `wire` encodes it.
//!
//! Variants are only ever appended, never reordered: bincode encodes a variant by its index.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::checksum::Digest;

/// Opens every hello, so a stray connection is told apart from an ftprep peer.
pub const MAGIC: [u8; 4] = *b"FTPR";
/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 8;
/// At most this many entries travel in one [`Response::Entries`] frame.
pub const ENTRIES_PER_FRAME: usize = 1024;
/// Largest data chunk in a [`Request::PutData`] or [`Response::Data`] frame (512 KiB).
pub const MAX_CHUNK: usize = 512 * 1024;

/// The first frame in each direction: magic value and protocol version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Always [`MAGIC`].
    pub magic: [u8; 4],
    /// The sender's [`PROTOCOL_VERSION`].
    pub version: u16,
}

impl Hello {
    /// The hello this build sends.
    pub fn ours() -> Self {
        Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
        }
    }
}

/// What a client asks for, one frame each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Starts a SASL exchange: the mechanism (`SCRAM-SHA-256`) and the client-first-message.
    AuthStart {
        /// SASL mechanism name.
        mechanism: String,
        /// RFC 5802 client-first-message.
        message: String,
    },
    /// Finishes it: the client-final-message.
    AuthFinish {
        /// RFC 5802 client-final-message.
        message: String,
    },
    /// Creates a directory; with `parents`, also missing parents and no error if it exists.
    Mkdir {
        /// Remote path, relative to the user's home.
        path: String,
        /// `mkdir -p`.
        parents: bool,
    },
    /// Lists a directory (or describes a single file).
    List {
        /// Remote path, relative to the user's home; empty for the home itself.
        path: String,
    },
    /// Describes one file or directory (a symlink itself, not its target).
    Stat {
        /// Remote path.
        path: String,
    },
    /// Removes a file or symlink; with `recursive`, also a directory and all it holds.
    Remove {
        /// Remote path (never the home itself).
        path: String,
        /// `rm -r`.
        recursive: bool,
    },
    /// Removes an empty directory.
    Rmdir {
        /// Remote path (never the home itself).
        path: String,
    },
    /// Renames within the user's tree.
    Rename {
        /// Existing path.
        from: String,
        /// New path; its parent must exist.
        to: String,
        /// Replace an existing `to` (a file, or an empty directory).
        overwrite: bool,
    },
    /// Starts an upload of `size` bytes to `path`. The server answers [`Response::PutReady`]
    /// with the offset to send from; the client then sends `size - offset` bytes in
    /// [`Request::PutData`] frames and ends with [`Request::PutFinish`].
    PutStart {
        /// Remote target path.
        path: String,
        /// Total size of the file, in bytes.
        size: u64,
        /// Replace an existing target.
        overwrite: bool,
        /// Continue an interrupted upload of the same target, if its partial data is there.
        resume: bool,
        /// Modification time and permission bits to give the file (`put -p`).
        preserve: Option<Attributes>,
    },
    /// The next chunk of an upload (at most [`MAX_CHUNK`] bytes).
    PutData {
        /// The bytes.
        data: Bytes,
    },
    /// Ends an upload: the checksum of the whole file. The server checks it against what
    /// it holds before renaming the file into place.
    PutFinish {
        /// XXH3-128 of the whole file, offset 0 to `size` ([`crate::checksum`]).
        checksum: Digest,
    },
    /// Downloads a file from `offset`: [`Response::GetReady`], then [`Response::Data`]
    /// frames, then [`Response::GetDone`] with the checksum of the whole file.
    Get {
        /// Remote path.
        path: String,
        /// Where to start (the size of a local partial copy, for resume).
        offset: u64,
    },
    /// Asks for the user's disk usage and quota.
    Usage,
    /// Asks which SASL mechanisms the server offers on this connection (allowed before
    /// login): over TLS `SCRAM-SHA-256-PLUS` comes first.
    Mechanisms,
    /// Asks for the size and XXH3-128 checksum of a whole file, without its data (to tell
    /// whether a file on both sides is the same, as a resumed tree transfer must).
    Checksum {
        /// The file.
        path: String,
    },
    /// Uploads a whole file of at most [`MAX_CHUNK`] bytes in one frame, answered by one
    /// `Ok` or `Error`. A client may send more requests before the answer comes (answers
    /// always come in the order of the requests): many small files cost no round trip each.
    Put {
        /// Remote target path.
        path: String,
        /// Replace an existing target.
        overwrite: bool,
        /// Modification time and permission bits to give the file (`put -p`).
        preserve: Option<Attributes>,
        /// The whole file.
        data: Bytes,
        /// XXH3-128 of `data`, checked before the file is renamed into place.
        checksum: Digest,
    },
    /// Lists a whole directory tree in one request: `Entries` frames, each entry named by
    /// its path from `path` (`a/b/c`, a directory before what it holds), then `Ok`.
    ListTree {
        /// Remote directory; empty for the home.
        path: String,
    },
    /// Makes a symbolic link at `path` to `target`, answered by `Ok`. The target is
    /// relative and stays inside the home, read from the link's directory (`../b`, `c/d`);
    /// anything else is refused `InvalidPath`. A store that keeps no links (an object
    /// store) answers `Unsupported`.
    Symlink {
        /// Where the link goes; nothing may be there yet.
        path: String,
        /// What it points to.
        target: String,
    },
    /// Asks what the symbolic link at `path` points to, answered by `Link`.
    ReadLink {
        /// The link.
        path: String,
    },
    /// Asks for the SSH keys the user logs in to SFTP with, answered by `Keys`.
    Keys,
    /// Adds an SSH public key (one `.pub` line) to the user's.
    AddKey {
        /// `ssh-ed25519 AAAA… comment`.
        key: String,
    },
    /// Removes one of the user's SSH keys by its fingerprint (`SHA256:…`).
    DeleteKey {
        /// The key's fingerprint.
        fingerprint: String,
    },
}

/// A file's modification time and permission bits, carried by `put -p` and `get -p`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attributes {
    /// Seconds since the Unix epoch.
    pub modified: i64,
    /// Permission bits (`0o777` at most; others are ignored).
    pub mode: u32,
}

/// What a server answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The request failed; the connection stays usable unless the code says otherwise.
    Error {
        /// What kind of failure, for programs.
        code: ErrorCode,
        /// What happened, for people.
        message: String,
    },
    /// The RFC 5802 server-first-message.
    AuthChallenge {
        /// `r=...,s=...,i=...`.
        message: String,
    },
    /// The RFC 5802 server-final-message: `v=...` on success, `e=...` on failure.
    AuthOutcome {
        /// `v=...` or `e=...`.
        message: String,
    },
    /// The request succeeded (and ends a listing).
    Ok,
    /// One batch of a listing, sorted by name; more may follow, [`Response::Ok`] ends it.
    Entries {
        /// Up to [`ENTRIES_PER_FRAME`] entries.
        entries: Vec<Entry>,
    },
    /// Answers [`Request::Stat`].
    Stat {
        /// The entry; its name is the path's last component.
        entry: Entry,
    },
    /// The server is ready for upload data, starting at `offset` (0 unless resuming).
    PutReady {
        /// Bytes of the file the server already holds.
        offset: u64,
    },
    /// A download starts: the file's size and the offset data begins at.
    GetReady {
        /// Total size of the file.
        size: u64,
        /// Where the data frames begin (the requested offset).
        offset: u64,
        /// The file's modification time and permission bits (for `get -p`).
        attributes: Option<Attributes>,
    },
    /// The next chunk of a download.
    Data {
        /// The bytes.
        data: Bytes,
    },
    /// The download is complete.
    GetDone {
        /// XXH3-128 of the whole file ([`crate::checksum`]).
        checksum: Digest,
    },
    /// Answers [`Request::Usage`].
    Usage {
        /// Bytes used by the user's files.
        used: u64,
        /// The user's quota in bytes, if any.
        quota: Option<u64>,
        /// Entries (files, directories, links) the user has.
        entries: u64,
        /// Most entries the user may have, if limited.
        max_entries: Option<u64>,
    },
    /// Answers [`Request::Mechanisms`], most preferred first.
    Mechanisms {
        /// SASL mechanism names.
        names: Vec<String>,
    },
    /// Answers [`Request::Checksum`].
    Checksum {
        /// Size of the file.
        size: u64,
        /// XXH3-128 of all of it.
        checksum: Digest,
    },
    /// Answers [`Request::ReadLink`].
    Link {
        /// What the link points to, as it was made.
        target: String,
    },
    /// Answers [`Request::Keys`]: one `authorized_keys` line each.
    Keys {
        /// `ssh-ed25519 AAAA… comment`, in the order they were added.
        keys: Vec<String>,
    },
}

/// Machine-readable error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// A frame did not decode; the server closes the connection.
    BadFrame,
    /// A frame was longer than the limit; the server closes the connection.
    FrameTooLarge,
    /// The hello named another protocol version; the server closes the connection.
    VersionMismatch,
    /// A request that is not valid at this point of the session.
    UnexpectedRequest,
    /// A command before login.
    AuthRequired,
    /// Login failed (the same for unknown users and wrong passwords).
    AuthFailed,
    /// The path is malformed or leads outside the home.
    InvalidPath,
    /// No such file or directory.
    NotFound,
    /// The target exists.
    AlreadyExists,
    /// A path component is not a directory.
    NotADirectory,
    /// The operation is not permitted (including symlinks leading out of the home).
    PermissionDenied,
    /// The connection was idle or unauthenticated for too long; the server closes it.
    Timeout,
    /// The server is at its connection limit; it closes the connection.
    Busy,
    /// The server failed; the message says how.
    Internal,
    /// An upload would take the user over their quota.
    QuotaExceeded,
    /// The checksum of the data does not match; nothing was replaced.
    ChecksumMismatch,
    /// `rmdir`, or a rename over a directory, that is not empty.
    DirectoryNotEmpty,
    /// A file operation on a directory.
    IsADirectory,
    /// The server's disk is full.
    NoSpace,
    /// This server cannot do that (symbolic links on an object store).
    Unsupported,
}

/// One directory entry in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// File name (no path).
    pub name: String,
    /// File, directory, symlink or other.
    pub kind: EntryKind,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, seconds since the Unix epoch, if known.
    pub modified: Option<i64>,
}

/// The type of an [`Entry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link (not followed).
    Symlink,
    /// Anything else (socket, device, fifo).
    Other,
}
