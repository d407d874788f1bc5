//! The library's typed errors, in one place. [`Error::kind`] sorts them into the few classes
//! a caller acts on (the binaries turn those into exit codes).

use std::path::PathBuf;

use crate::auth::ScramError;
use crate::commands::ErrorCode;

/// Result with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the library can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system I/O error (socket or file).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A peer announced a frame longer than the limit; nothing was allocated for it.
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge {
        /// The announced payload length.
        size: u64,
        /// The limit in force.
        limit: usize,
    },
    /// A frame's payload did not decode as the message expected.
    #[error("malformed frame: {0}")]
    MalformedFrame(String),
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed in the middle of a frame")]
    TruncatedFrame,
    /// The peer closed the connection where a message was expected.
    #[error("connection closed by the peer")]
    ConnectionClosed,
    /// The peer's hello did not carry our magic value: it is not an ftprep peer.
    #[error("the peer is not an ftprep server or client (bad magic)")]
    BadMagic,
    /// The two sides speak different protocol versions.
    #[error(
        "protocol version mismatch: client speaks version {client}, server speaks version {server}"
    )]
    VersionMismatch {
        /// The client's version.
        client: u16,
        /// The server's version.
        server: u16,
    },
    /// SCRAM failed (malformed message, wrong proof, bad server signature, ...).
    #[error(transparent)]
    Scram(#[from] ScramError),
    /// The server answered with a typed error. Its text is shown escaped: it comes from
    /// the peer and may hold anything.
    #[error("{}", crate::sanitize::for_terminal(message))]
    Remote {
        /// The kind of error, for matching.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// A listing from the server held a name that is not one plain file name (`..`, a `/`,
    /// a NUL): a hostile server trying to write outside the target. Nothing was written
    /// for it.
    #[error(
        "the server listed an unsafe name in {}: \"{}\"; refused, nothing was written for it",
        crate::sanitize::for_terminal(listing),
        crate::sanitize::for_terminal(name)
    )]
    UnsafeName {
        /// The directory being listed.
        listing: String,
        /// The name as sent.
        name: String,
    },
    /// A listing from the server named one entry twice (say as a directory and as a file):
    /// malformed, and a way to make a tree's writer skip a directory it must enter.
    #[error(
        "the server listed \"{}\" twice in {}: a malformed listing; refused, nothing was written for it",
        crate::sanitize::for_terminal(name),
        crate::sanitize::for_terminal(listing)
    )]
    DuplicateName {
        /// The directory being listed.
        listing: String,
        /// The name listed twice.
        name: String,
    },
    /// `check` found the two trees different (what differs was printed).
    #[error("{0} paths differ")]
    TreesDiffer(usize),
    /// The chat server refused a request. Its text is shown escaped, as for [`Error::Remote`].
    #[error("{}", crate::sanitize::for_terminal(message))]
    Chat {
        /// The kind of refusal, for matching.
        code: crate::chat::ChatErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// A time server gave no usable time (an unsynchronised clock, a reply that fails the
    /// sanity checks, nothing listening).
    #[error("{0}")]
    TimeRefused(String),
    /// A time server sent a Kiss-o'-Death (RFC 5905, section 7.4): `RATE` asks for slower
    /// polling, `DENY` and `RSTR` for none at all.
    #[error(
        "the server {} (Kiss-o'-Death {})",
        crate::ntp::kiss_meaning(code),
        crate::sanitize::for_terminal(code)
    )]
    KissOfDeath {
        /// The four-letter code, NULs trimmed.
        code: String,
    },
    /// The server answered with a message that does not fit the request.
    #[error("unexpected reply from the server: {0}")]
    UnexpectedReply(&'static str),
    /// The cached login no longer works (the password or the user changed on the server).
    #[error("login expired, run: ftpc login {user}")]
    LoginExpired {
        /// Who to log in as again.
        user: String,
    },
    /// There is no cached login (for this server, if one was named).
    #[error("not logged in{}, run: ftpc login USER", server.as_ref().map(|s| format!(" to {s}")).unwrap_or_default())]
    NotLoggedIn {
        /// The server address asked for, if any.
        server: Option<String>,
    },
    /// A remote path was refused before it reached the server's storage.
    #[error(transparent)]
    Path(#[from] PathError),
    /// A username outside the allowed alphabet or length.
    #[error(transparent)]
    Username(#[from] UsernameError),
    /// The user database could not be read or written.
    #[error(transparent)]
    UserDb(#[from] UserDbError),
    /// The client's credential cache could not be read or written.
    #[error("credentials file {}: {reason}", path.display())]
    Credentials {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The server could not set up `what` (its storage root, state directory, chat store).
    #[error("{what}: {source}")]
    Setup {
        /// What, naming where.
        what: String,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A local file could not be read or written.
    #[error("{}: {}", crate::sanitize::for_terminal(&path.to_string_lossy()), crate::sanitize::for_terminal(message))]
    Local {
        /// The local file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A downloaded file's checksum (XXH3-128) did not match the server's; nothing was replaced.
    #[error("checksum mismatch: the data was damaged in transit; nothing was replaced")]
    ChecksumMismatch,
    /// The peer did not answer in time.
    #[error("timed out waiting for the peer")]
    Timeout,
    /// TLS could not be set up or the handshake failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// The server's certificate differs from the one pinned in `known_hosts`.
    #[error(
        "the certificate of {server} has CHANGED (pinned {expected}, now {actual}).\n\
         Someone may be intercepting the connection, or the server got a new certificate.\n\
         Check the new fingerprint with the server's admin (ftpd fingerprint); if it is right, \
         run `ftpc known-hosts remove {server}` (line {line} of {}) and connect again",
        file.display()
    )]
    CertificateChanged {
        /// The server address.
        server: String,
        /// The pinned fingerprint.
        expected: String,
        /// What the server showed.
        actual: String,
        /// The known_hosts file.
        file: PathBuf,
        /// The line to remove.
        line: usize,
    },
    /// A server seen for the first time, and nobody to ask whether to trust it.
    #[error(
        "{server} is not a known server (certificate {fingerprint}). Compare the fingerprint \
         with the server's admin (ftpd fingerprint), then run again with --accept-new to trust it"
    )]
    UnknownServer {
        /// The server address.
        server: String,
        /// Its certificate's fingerprint.
        fingerprint: String,
    },
    /// The user declined to trust a new server.
    #[error("{server} not trusted; nothing was sent")]
    NotTrusted {
        /// The server address.
        server: String,
    },
    /// Over TLS the server did not offer channel binding: a downgrade, refused.
    #[error(
        "the server does not offer SCRAM-SHA-256-PLUS over TLS: refusing to log in without \
         channel binding (someone may be tampering with the connection)"
    )]
    Downgrade,
    /// A command line that does not parse (in the shell or a batch file).
    #[error("{0}")]
    Usage(String),
}

/// The classes of [`Error`] a caller acts on differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request was understood and refused (already exists, not found, bad path, ...).
    Refused,
    /// Logging in failed or is needed (wrong password, expired cached login, not logged in).
    Auth,
    /// The connection or the protocol failed (cannot connect, bad frames, version mismatch).
    Connection,
    /// A local problem: files, the user database, bad input on this side.
    Local,
    /// A command that does not parse.
    Usage,
}

/// A QUIC connection's end, as the rest of the library knows ends: the peer (or we)
/// closed it, or reset it (a restarted server), is a closed connection; silence past the idle
/// timeout is a timeout; anything else is an I/O error.
impl From<quinn::ConnectionError> for Error {
    fn from(err: quinn::ConnectionError) -> Self {
        match err {
            quinn::ConnectionError::ApplicationClosed(_)
            | quinn::ConnectionError::ConnectionClosed(_)
            | quinn::ConnectionError::LocallyClosed
            | quinn::ConnectionError::Reset => Error::ConnectionClosed,
            quinn::ConnectionError::TimedOut => Error::Timeout,
            other => Error::Io(std::io::Error::other(other)),
        }
    }
}

impl Error {
    /// The server could not set up `what`, for this reason.
    pub fn setup(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Setup {
            what: what.into(),
            source: source.into(),
        }
    }

    /// A local file error, naming the file.
    pub fn local(path: &std::path::Path, err: impl std::fmt::Display) -> Self {
        // "No such file or directory", not "... (os error 2)": the code says nothing more.
        let mut message = err.to_string();
        if message.ends_with(')')
            && let Some(code) = message.rfind(" (os error ")
        {
            message.truncate(code);
        }
        Error::Local {
            path: path.to_owned(),
            message,
        }
    }

    /// Which class of error this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Remote { code, .. } => match code {
                ErrorCode::AuthFailed | ErrorCode::AuthRequired => ErrorKind::Auth,
                ErrorCode::BadFrame
                | ErrorCode::FrameTooLarge
                | ErrorCode::VersionMismatch
                | ErrorCode::UnexpectedRequest
                | ErrorCode::Timeout
                | ErrorCode::Busy => ErrorKind::Connection,
                ErrorCode::InvalidPath
                | ErrorCode::NotFound
                | ErrorCode::AlreadyExists
                | ErrorCode::NotADirectory
                | ErrorCode::PermissionDenied
                | ErrorCode::Internal
                | ErrorCode::QuotaExceeded
                | ErrorCode::ChecksumMismatch
                | ErrorCode::DirectoryNotEmpty
                | ErrorCode::IsADirectory
                | ErrorCode::NoSpace
                | ErrorCode::Unsupported => ErrorKind::Refused,
            },
            Error::Scram(ScramError::AuthenticationFailed)
            | Error::LoginExpired { .. }
            | Error::NotLoggedIn { .. } => ErrorKind::Auth,
            Error::Scram(ScramError::BadPassword(_)) => ErrorKind::Local,
            Error::Scram(_)
            | Error::Io(_)
            | Error::FrameTooLarge { .. }
            | Error::MalformedFrame(_)
            | Error::TruncatedFrame
            | Error::ConnectionClosed
            | Error::BadMagic
            | Error::VersionMismatch { .. }
            | Error::UnexpectedReply(_)
            | Error::UnsafeName { .. }
            | Error::DuplicateName { .. }
            | Error::TimeRefused(_)
            | Error::KissOfDeath { .. }
            | Error::Timeout
            | Error::Tls(_)
            | Error::CertificateChanged { .. }
            | Error::UnknownServer { .. }
            | Error::NotTrusted { .. }
            | Error::Downgrade => ErrorKind::Connection,
            Error::Path(_) => ErrorKind::Refused,
            Error::Username(_)
            | Error::UserDb(_)
            | Error::Credentials { .. }
            | Error::Local { .. }
            | Error::Setup { .. } => ErrorKind::Local,
            Error::ChecksumMismatch | Error::TreesDiffer(_) => ErrorKind::Refused,
            Error::Chat { code, .. } => match code {
                crate::chat::ChatErrorCode::UnexpectedRequest => ErrorKind::Connection,
                _ => ErrorKind::Refused,
            },
            Error::Usage(_) => ErrorKind::Usage,
        }
    }

    /// The error a server answers with when this one ends a request or a connection.
    pub fn to_reply(&self) -> (ErrorCode, String) {
        let code = match self {
            Error::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            Error::MalformedFrame(_) | Error::TruncatedFrame | Error::BadMagic => {
                ErrorCode::BadFrame
            }
            Error::VersionMismatch { .. } => ErrorCode::VersionMismatch,
            Error::Scram(ScramError::AuthenticationFailed) => ErrorCode::AuthFailed,
            Error::Path(_) => ErrorCode::InvalidPath,
            Error::Remote { code, .. } => *code,
            Error::Timeout => ErrorCode::Timeout,
            Error::ChecksumMismatch => ErrorCode::ChecksumMismatch,
            _ => ErrorCode::Internal,
        };
        (code, self.to_string())
    }
}

/// A remote path the jail refuses before touching storage. Messages leave the path out:
/// whoever prints them names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path contains a NUL byte.
    #[error("contains a NUL byte")]
    Nul,
    /// The path has an empty component (`a//b`).
    #[error("empty path component")]
    EmptyComponent,
    /// `..` would climb above the user's home.
    #[error("leads outside your home directory")]
    Escapes,
    /// The path is longer than the protocol allows.
    #[error("path is longer than {0} bytes")]
    TooLong(usize),
    /// The path has more levels of directories than the server allows.
    #[error("path is more than {0} levels deep")]
    TooDeep(usize),
}

/// A username outside the allowed form: 1-32 of `[a-z0-9_.-]`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid username {0:?}: use 1 to 32 of a-z 0-9 _ . - starting with a letter or digit")]
pub struct UsernameError(pub String);

/// The user database could not be read, parsed or written.
#[derive(Debug, thiserror::Error)]
pub enum UserDbError {
    /// A line does not parse.
    #[error("{}:{line}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        reason: String,
    },
    /// Reading, locking or writing the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `adduser` for a name that is taken.
    #[error("user {0} already exists")]
    UserExists(String),
    /// `deluser`/`passwd` for a name that is not there.
    #[error("no such user: {0}")]
    NoSuchUser(String),
    /// A change to a user where there is no user file at all.
    #[error(
        "no users at {}: `ftpd adduser NAME` creates it there (or name another with --users)",
        .0.display()
    )]
    NoFile(PathBuf),
    /// The database the users are in failed or refused.
    #[error("user database: {0}")]
    Database(DatabaseError),
    /// A key that is not taken (`addkey`).
    #[error(transparent)]
    Key(#[from] crate::authorized_key::KeyError),
    /// `addkey` of a key the user has already.
    #[error("{user} already has the key {fingerprint}")]
    KeyExists {
        /// The user.
        user: String,
        /// The key's fingerprint.
        fingerprint: String,
    },
    /// `addkey` past the most keys a user may have.
    #[error("{0} already has {max} keys; remove one first", max = crate::authorized_key::MAX_KEYS_PER_USER)]
    TooManyKeys(String),
    /// `delkey` of a key the user does not have.
    #[error("{user} has no key {fingerprint}")]
    NoSuchKey {
        /// The user.
        user: String,
        /// The fingerprint asked for.
        fingerprint: String,
    },
}

impl From<DatabaseError> for Error {
    fn from(e: DatabaseError) -> Self {
        Error::UserDb(UserDbError::Database(e))
    }
}

impl From<DatabaseError> for UserDbError {
    fn from(e: DatabaseError) -> Self {
        UserDbError::Database(e)
    }
}

/// The database several nodes share failed or refused: what was being done, and why. The
/// why is one line escaped for a log or a terminal (it may quote what the database sent),
/// so the database's own error is not kept beside it to be printed raw.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
pub struct DatabaseError {
    /// What was being done.
    pub what: String,
    /// Why it failed, escaped; `None` when `what` says it all.
    pub detail: Option<String>,
}

impl DatabaseError {
    /// `what` failed, for the reason `detail` (escaped here).
    pub fn new(what: impl Into<String>, detail: &str) -> Self {
        DatabaseError {
            what: what.into(),
            detail: Some(crate::sanitize::for_terminal(detail)),
        }
    }

    /// `what` says it all.
    pub fn plain(what: impl Into<String>) -> Self {
        DatabaseError {
            what: what.into(),
            detail: None,
        }
    }
}

/// A storage operation that was refused or failed; `code` is what the client is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StorageError {
    /// The code sent to the client.
    pub code: ErrorCode,
    /// A short explanation without the path (the client adds it).
    pub message: String,
}

impl StorageError {
    /// The users' database (and what is shared in it) could not be asked: logged in full,
    /// told briefly, and worth trying again.
    pub fn database_unavailable(err: &DatabaseError) -> Self {
        tracing::error!(error = %err, "the database is unavailable");
        StorageError::new(
            ErrorCode::Busy,
            "server busy: the user database is unavailable",
        )
    }

    /// A storage error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        StorageError {
            code,
            message: message.into(),
        }
    }
}

impl From<std::io::Error> for StorageError {
    fn from(err: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        match err.kind() {
            K::NotFound => StorageError::new(ErrorCode::NotFound, "no such file or directory"),
            K::AlreadyExists => StorageError::new(ErrorCode::AlreadyExists, "already exists"),
            K::NotADirectory => StorageError::new(ErrorCode::NotADirectory, "not a directory"),
            K::IsADirectory => StorageError::new(ErrorCode::IsADirectory, "is a directory"),
            K::DirectoryNotEmpty => {
                StorageError::new(ErrorCode::DirectoryNotEmpty, "directory not empty")
            }
            K::StorageFull | K::QuotaExceeded | K::FileTooLarge => {
                StorageError::new(ErrorCode::NoSpace, "no space left on the server")
            }
            // cap-std reports a path that resolves outside the home (a symlink, say) this way.
            K::PermissionDenied if err.to_string().contains("outside") => StorageError::new(
                ErrorCode::PermissionDenied,
                "leads outside your home directory",
            ),
            K::PermissionDenied => {
                StorageError::new(ErrorCode::PermissionDenied, "permission denied")
            }
            K::InvalidInput | K::InvalidFilename => {
                StorageError::new(ErrorCode::InvalidPath, "invalid path")
            }
            _ => StorageError::new(ErrorCode::Internal, format!("server storage error: {err}")),
        }
    }
}
