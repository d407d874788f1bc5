//! The client: connect, exchange hellos, log in with a password or with cached keys, and one
//! method per command. `ftpc` is a thin layer over this.
//!
//! # Layout
//! - this file: [`Client`] (connect, login, commands) and [`connect_saved`].
//! - [`tls`]: TLS with trust on first use (`known_hosts`) or a CA; the stream type.
//! - [`credentials`]: the cached logins `ftpc` keeps between runs.
//! - [`partial`]: local partial files of downloads, safe in directories others can write.
//! - [`transfer`]: streamed put/get of files and trees, with checksums and resume.
//! - [`sync`]: `sync` and `check`, copying or reporting only what differs between trees.
//! - [`parallel`]: tree transfers over several connections (`-j N`).
//! - [`time`]: `ftpc time`, an NTP client that reports how far the clock is off.
//! - [`shell`]: the file commands as people type them, the interactive shell, batch mode.
//! - [`progress`]: the progress bar; [`bench`](mod@bench): the load generator behind `ftpc bench`.
//! - [`bandwidth`]: `--bwlimit`, one token bucket over a transfer's connections.
//! - [`chat`]: the chat client over QUIC; [`chat_commands`]: `friends`, `send`, `inbox`,
//!   `color`; [`chat_shell`]: `ftpc chat`, interactive.
//! - [`complete`]: shell completion of remote names (`ftpc get <Tab>`).
//! - [`failure`]: a failed command and what was typed; `private_file`: the client's own
//!   files, 0600, written whole.

pub mod bandwidth;
pub mod bench;
pub mod chat;
pub mod chat_commands;
pub mod chat_shell;
pub mod complete;
pub mod credentials;
pub mod failure;
mod keys;
pub mod parallel;
pub mod partial;
mod private_file;
pub mod progress;
pub mod shell;
pub mod sync;
pub mod time;
pub mod tls;
pub mod transfer;

use std::time::Duration;

use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::auth::{self, ChannelBinding, ClientFirst, ClientKeys};
use crate::commands::{Entry, EntryKind, Hello, MAGIC, PROTOCOL_VERSION, Request, Response};
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::paths::RemotePath;
use crate::username::Username;
use crate::wire::Connection;
pub use credentials::{CredentialStore, SavedLogin, Transport};
pub use tls::{ClientStream, KnownHosts, Security, UnknownServer};
pub use transfer::{NoProgress, Progress, TransferOptions, Transferred, TreeReport};

/// Where `ftpc` connects when told nothing else.
pub const DEFAULT_SERVER: &str = "127.0.0.1:2121";

/// The port a server address without one means.
pub const DEFAULT_PORT: u16 = 2121;

/// A server address as typed, made whole: `files.example.org` and `[::1]` get the default
/// port, a bare IPv6 address (`::1`) gets brackets too; `HOST:PORT` stays as it is. The same
/// server is then always written the same way (it keys saved logins and `known_hosts`).
///
/// # Errors
/// [`Error::Usage`] for an empty host or a port that is not a number from 1 to 65535.
pub fn server_address(raw: &str) -> Result<String> {
    address_with_default_port(raw, DEFAULT_PORT)
}

/// `USER@HOST[:PORT]` or `HOST[:PORT]`, as ssh, scp and rsync take a destination: the user
/// named (if any) and the server address made whole.
///
/// # Errors
/// [`Error::Usage`] for a user name that cannot be one, or a bad address.
pub fn destination(raw: &str) -> Result<(Option<Username>, String)> {
    match raw.rsplit_once('@') {
        Some((user, host)) => {
            let user = Username::parse(user).map_err(|e| Error::Usage(e.to_string()))?;
            Ok((Some(user), server_address(host)?))
        }
        None => Ok((None, server_address(raw)?)),
    }
}

/// [`server_address`] with another default port (the time service's, say).
///
/// # Errors
/// As [`server_address`].
pub fn address_with_default_port(raw: &str, default_port: u16) -> Result<String> {
    let raw = raw.trim();
    let bad = |why: &str| Error::Usage(format!("server address {raw:?}: {why}"));
    if let Ok(ip) = raw.parse::<std::net::Ipv6Addr>() {
        return Ok(format!("[{ip}]:{default_port}"));
    }
    let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
        let (ip, after) = rest
            .split_once(']')
            .ok_or_else(|| bad("an IPv6 address needs its closing ]"))?;
        ip.parse::<std::net::Ipv6Addr>()
            .map_err(|_| bad("not an IPv6 address in brackets"))?;
        match after {
            "" => (format!("[{ip}]"), None),
            _ => (
                format!("[{ip}]"),
                Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| bad("expected :PORT after ]"))?,
                ),
            ),
        }
    } else {
        match raw.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (raw.to_owned(), None),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = match port {
        None => default_port,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad("the port must be a number from 1 to 65535"))?,
    };
    Ok(format!("{host}:{port}"))
}

/// How long to wait for a TCP connection and the server's hello.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for any one reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// What a user uses of the server, and their quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUsage {
    /// Bytes used (files, and 4 KiB per directory).
    pub used: u64,
    /// The byte quota, if any.
    pub quota: Option<u64>,
    /// Files, directories and links.
    pub entries: u64,
    /// The file-count quota, if any.
    pub max_entries: Option<u64>,
}

/// Most entries one listing may have: with [`MAX_LISTING_NAME_BYTES`], a listing a server
/// makes endless costs the client under 100 MB at its peak.
pub const MAX_LISTING: usize = 500_000;

/// Most bytes of names one listing may have.
pub const MAX_LISTING_NAME_BYTES: usize = 32 << 20;

/// Where the keys for a login come from.
enum KeySource {
    /// Derive them with PBKDF2 (`ftpc login`).
    Password(String),
    /// Reuse cached keys (every later command).
    Cached(ClientKeys),
}

/// A connection to a server, logged in or not.
#[derive(Debug)]
pub struct Client<S = ClientStream> {
    conn: Connection<S>,
    /// The SASL mechanisms the server announced after its hello, most preferred first.
    offered: Vec<String>,
    /// `tls-server-end-point` data of the server's certificate when on TLS: logins then use
    /// SCRAM-SHA-256-PLUS and refuse a server that does not offer it.
    binding: Option<Vec<u8>>,
    /// See [`Client::is_in_step`].
    in_step: bool,
    /// How long a reply, or progress in a download, may take ([`REPLY_TIMEOUT`]).
    reply_timeout: Duration,
    /// The timer that enforces it, kept from one reply to the next.
    reply_deadline: Deadline,
    /// More connections with the same login that tree transfers share their files with
    /// ([`parallel`]).
    helpers: Vec<Client<S>>,
    /// `--bwlimit`: shared with the helpers, so it limits the whole transfer.
    bandwidth: Option<std::sync::Arc<bandwidth::Bandwidth>>,
}

impl Client<ClientStream> {
    /// Whether this connection's TLS handshake resumed an earlier session.
    pub fn is_resumed(&self) -> bool {
        self.conn.get_ref().is_resumed()
    }

    /// Connects, secures the connection as `security` says (checking the certificate pin
    /// before anything is sent), and exchanges hellos.
    ///
    /// # Errors
    /// Connection and TLS failures (a changed certificate among them), timeouts, or a peer
    /// that is not a compatible ftprep server.
    pub async fn connect(addr: &str, security: &Security) -> Result<Self> {
        let connect = async {
            let tcp = TcpStream::connect(addr).await.map_err(|e| {
                Error::Io(std::io::Error::new(
                    e.kind(),
                    format!("cannot connect to {addr}: {e}"),
                ))
            })?;
            tcp.set_nodelay(true)?;
            tls::handshake(tcp, addr, security).await
        };
        let (stream, binding) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| Error::Timeout)??;
        let mut client = Self::handshake(stream).await?;
        client.binding = binding;
        Ok(client)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// Exchanges hellos over an already connected stream.
    ///
    /// # Errors
    /// [`Error::BadMagic`], [`Error::VersionMismatch`], timeouts and I/O.
    pub async fn handshake(stream: S) -> Result<Self> {
        let mut conn = Connection::new(stream);
        // A server that stops reading cannot hold the client either.
        conn.set_write_deadline(Some(REPLY_TIMEOUT));
        conn.write(&Hello::ours()).await?;
        let theirs: Hello = match tokio::time::timeout(CONNECT_TIMEOUT, conn.expect()).await {
            Err(_) => return Err(Error::Timeout),
            // A TLS record header (alert 0x15 or handshake 0x16, version 3.x) read as a length.
            Ok(Err(Error::FrameTooLarge { size, .. })) if matches!(size >> 16, 0x1503 | 0x1603) => {
                return Err(Error::Tls(
                    "the server speaks TLS: connect without --plaintext".into(),
                ));
            }
            Ok(result) => result?,
        };
        if theirs.magic != MAGIC {
            return Err(Error::BadMagic);
        }
        if theirs.version != PROTOCOL_VERSION {
            return Err(Error::VersionMismatch {
                client: PROTOCOL_VERSION,
                server: theirs.version,
            });
        }
        // Right behind its hello the server says which mechanisms it offers (or that it is
        // busy): a login need not ask.
        let offered = match tokio::time::timeout(CONNECT_TIMEOUT, conn.expect()).await {
            Err(_) => return Err(Error::Timeout),
            Ok(reply) => match reply? {
                Response::Mechanisms { names } => names,
                Response::Error { code, message } => return Err(Error::Remote { code, message }),
                _ => return Err(Error::UnexpectedReply("expected the list of mechanisms")),
            },
        };
        Ok(Client {
            conn,
            offered,
            binding: None,
            in_step: true,
            reply_timeout: REPLY_TIMEOUT,
            reply_deadline: Deadline::new(),
            helpers: Vec::new(),
            bandwidth: None,
        })
    }

    /// Logs in bound to this channel: `binding` is the `tls-server-end-point` data of the
    /// certificate the stream's transport (QUIC, say) verified.
    pub fn bind_to(&mut self, binding: Vec<u8>) {
        self.binding = Some(binding);
    }

    /// The framed stream, for another vocabulary after the login (the chat's).
    pub fn into_connection(self) -> Connection<S> {
        self.conn
    }

    /// Logs in with a password; returns the keys worth caching for later logins.
    ///
    /// # Errors
    /// [`crate::auth::ScramError::AuthenticationFailed`] for a wrong user or password (the
    /// same either way), other SCRAM errors for a misbehaving server, and I/O.
    pub async fn login_with_password(
        &mut self,
        user: &Username,
        password: &str,
    ) -> Result<ClientKeys> {
        // No SASLprep check here: PostgreSQL hashes passwords SASLprep refuses as raw bytes,
        // and so do we, so such a password may still be valid.
        if password.is_empty() {
            return Err(auth::ScramError::BadPassword("the password is empty").into());
        }
        self.authenticate(user, KeySource::Password(password.to_owned()))
            .await
    }

    /// Logs in with cached keys, without the PBKDF2 cost.
    ///
    /// # Errors
    /// [`Error::LoginExpired`] if the server's salt, iteration count or verifier changed
    /// (a new password, or the user was removed); otherwise as for a password login.
    pub async fn login_with_keys(&mut self, user: &Username, keys: &ClientKeys) -> Result<()> {
        match self
            .authenticate(user, KeySource::Cached(keys.clone()))
            .await
        {
            Ok(_) => Ok(()),
            Err(Error::Scram(auth::ScramError::AuthenticationFailed)) => Err(Error::LoginExpired {
                user: user.to_string(),
            }),
            Err(err) => Err(err),
        }
    }

    /// The SASL mechanisms the server announced after its hello, most preferred first.
    pub fn offered(&self) -> &[String] {
        &self.offered
    }

    /// Asks the server which SASL mechanisms it offers on this connection (it also says so
    /// unasked, after its hello: [`Client::offered`]).
    ///
    /// # Errors
    /// I/O or an unexpected reply.
    pub async fn mechanisms(&mut self) -> Result<Vec<String>> {
        match self.raw_request(&Request::Mechanisms).await? {
            Response::Mechanisms { names } => Ok(names),
            _ => Err(Error::UnexpectedReply("expected the list of mechanisms")),
        }
    }

    async fn authenticate(&mut self, user: &Username, source: KeySource) -> Result<ClientKeys> {
        let binding = match self.binding.clone() {
            Some(data) => {
                // Over TLS, only a login bound to this TLS channel: a server (or someone in
                // between) that does not offer it is refused before anything is sent.
                if !self.offered.iter().any(|m| m == auth::MECHANISM_PLUS) {
                    return Err(Error::Downgrade);
                }
                ChannelBinding::TlsServerEndPoint(data)
            }
            None => ChannelBinding::None,
        };
        let first = ClientFirst::with_binding(user.as_str(), binding);
        self.send(&Request::AuthStart {
            mechanism: first.mechanism().into(),
            message: first.message(),
        })
        .await?;
        let server_first = match self.reply().await? {
            Response::AuthChallenge { message } => message,
            Response::AuthOutcome { message } => {
                // The server refused the first message outright.
                return Err(first_final_error(&message));
            }
            _ => {
                return Err(Error::UnexpectedReply(
                    "expected an authentication challenge",
                ));
            }
        };
        let challenge = first.receive_server_first(&server_first)?;
        let keys = match source {
            KeySource::Password(password) => {
                let (salt, iterations) = (challenge.salt.clone(), challenge.iterations);
                tokio::task::spawn_blocking(move || {
                    ClientKeys::derive(&password, &salt, iterations)
                })
                .await
                .map_err(|e| Error::Io(std::io::Error::other(e)))?
            }
            KeySource::Cached(keys) => {
                if keys.salt != challenge.salt || keys.iterations != challenge.iterations {
                    return Err(Error::LoginExpired {
                        user: user.to_string(),
                    });
                }
                keys
            }
        };
        let (client_final, state) = challenge.respond(&keys);
        self.send(&Request::AuthFinish {
            message: client_final,
        })
        .await?;
        match self.reply().await? {
            Response::AuthOutcome { message } => state.verify_server_final(&message)?,
            _ => return Err(Error::UnexpectedReply("expected an authentication outcome")),
        }
        Ok(keys)
    }

    /// Creates a remote directory; `parents` as `mkdir -p`.
    ///
    /// # Errors
    /// [`Error::Path`] for a path refused locally, [`Error::Remote`] for the server's refusal.
    pub async fn mkdir(&mut self, path: &str, parents: bool) -> Result<()> {
        RemotePath::parse(path)?;
        self.send(&Request::Mkdir {
            path: path.to_owned(),
            parents,
        })
        .await?;
        self.expect_ok().await
    }

    /// Lists a remote directory (or describes one file), sorted by name. A listing longer
    /// than [`MAX_LISTING`] entries (or names) is refused: a server cannot make the client
    /// take all its memory with endless entries.
    ///
    /// # Errors
    /// As [`Client::mkdir`].
    pub async fn list(&mut self, path: &str) -> Result<Vec<Entry>> {
        RemotePath::parse(path)?;
        self.send(&Request::List {
            path: path.to_owned(),
        })
        .await?;
        let mut entries = self.read_listing().await?;
        sort_refusing_duplicates(path, &mut entries)?;
        Ok(entries)
    }

    /// Lists a whole remote directory tree in one request: every entry beneath `path`,
    /// named by its path from there (`a/b/c`), sorted (so a directory comes before what it
    /// holds). Capped as [`Client::list`].
    ///
    /// # Errors
    /// As [`Client::mkdir`]; [`Error::UnsafeName`] for a name with an empty, `.` or `..`
    /// component, or beneath something not listed as a directory (a server's attempt to
    /// write outside the target); [`Error::DuplicateName`] for a name listed twice.
    pub async fn list_tree(&mut self, path: &str) -> Result<Vec<Entry>> {
        RemotePath::parse(path)?;
        self.send(&Request::ListTree {
            path: path.to_owned(),
        })
        .await?;
        let mut entries = self.read_listing().await?;
        sort_refusing_duplicates(path, &mut entries)?;
        // Each name plain, and inside a directory listed before it (sorted, a directory
        // comes before what it holds): whoever writes the tree out enters only directories
        // the server listed, never a path through something else on its side (a link).
        let mut directories = std::collections::HashSet::from([""]);
        for entry in &entries {
            let parent = entry.name.rsplit_once('/').map_or("", |(parent, _)| parent);
            if !entry.name.split('/').all(crate::paths::is_plain_name)
                || !directories.contains(parent)
            {
                return Err(Error::UnsafeName {
                    listing: path.to_owned(),
                    name: entry.name.clone(),
                });
            }
            if entry.kind == EntryKind::Directory {
                directories.insert(&entry.name);
            }
        }
        Ok(entries)
    }

    /// Reads `Entries` frames up to the `Ok` that ends a listing, within the caps.
    ///
    /// # Errors
    /// A listing over the caps, a reply that is not part of a listing, the connection.
    async fn read_listing(&mut self) -> Result<Vec<Entry>> {
        let mut entries = Vec::new();
        let mut name_bytes = 0usize;
        loop {
            match self.reply().await? {
                Response::Entries { entries: batch } => {
                    name_bytes = batch
                        .iter()
                        .fold(name_bytes, |sum, e| sum.saturating_add(e.name.len()));
                    entries.extend(batch);
                    if entries.len() > MAX_LISTING || name_bytes > MAX_LISTING_NAME_BYTES {
                        // The rest of the listing is still on its way.
                        self.in_step = false;
                        return Err(Error::UnexpectedReply(
                            "a listing larger than this client accepts (500,000 entries, \
                             32 MiB of names)",
                        ));
                    }
                }
                Response::Ok => return Ok(entries),
                _ => return Err(Error::UnexpectedReply("expected directory entries")),
            }
        }
    }

    /// Describes one remote entry (a symlink itself, not its target).
    ///
    /// # Errors
    /// As [`Client::mkdir`].
    pub async fn stat(&mut self, path: &str) -> Result<Entry> {
        RemotePath::parse(path)?;
        let path = path.to_owned();
        match self.raw_request(&Request::Stat { path }).await? {
            Response::Stat { entry } => Ok(entry),
            _ => Err(Error::UnexpectedReply("expected a stat")),
        }
    }

    /// Removes a file or symlink; `recursive` as `rm -r` (never the home itself).
    ///
    /// # Errors
    /// As [`Client::mkdir`].
    pub async fn remove(&mut self, path: &str, recursive: bool) -> Result<()> {
        RemotePath::parse(path)?;
        let path = path.to_owned();
        self.send(&Request::Remove { path, recursive }).await?;
        self.expect_ok().await
    }

    /// Removes an empty directory.
    ///
    /// # Errors
    /// As [`Client::mkdir`].
    pub async fn rmdir(&mut self, path: &str) -> Result<()> {
        RemotePath::parse(path)?;
        let path = path.to_owned();
        self.send(&Request::Rmdir { path }).await?;
        self.expect_ok().await
    }

    /// Renames `from` to `to`. Like `mv`, a `to` that is an existing directory receives
    /// `from` under its own name.
    ///
    /// # Errors
    /// As [`Client::mkdir`]; an existing target without `overwrite` is refused.
    pub async fn rename(&mut self, from: &str, to: &str, overwrite: bool) -> Result<()> {
        let source = RemotePath::parse(from)?;
        RemotePath::parse(to)?;
        let mut to = to.to_owned();
        let into_dir = match self.stat(&to).await {
            Ok(entry) => entry.kind == crate::commands::EntryKind::Directory,
            Err(_) => false,
        };
        if into_dir && let Some(name) = source.file_name() {
            to = transfer_join(&to, name);
        }
        let from = from.to_owned();
        self.send(&Request::Rename {
            from,
            to,
            overwrite,
        })
        .await?;
        self.expect_ok().await
    }

    /// Size and XXH3-128 checksum of a remote file, without its data.
    ///
    /// # Errors
    /// As [`Client::mkdir`].
    pub async fn checksum(&mut self, path: &str) -> Result<(u64, crate::checksum::Digest)> {
        RemotePath::parse(path)?;
        let request = Request::Checksum {
            path: path.to_owned(),
        };
        match self.raw_request(&request).await? {
            Response::Checksum { size, checksum } => Ok((size, checksum)),
            _ => Err(Error::UnexpectedReply("expected a checksum")),
        }
    }

    /// Makes a symbolic link at `path` to `target` (relative, and inside the home: the
    /// server checks).
    ///
    /// # Errors
    /// As [`Client::mkdir`]; `Unsupported` from a server whose store keeps no links.
    pub async fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        RemotePath::parse(path)?;
        self.send(&Request::Symlink {
            path: path.to_owned(),
            target: target.to_owned(),
        })
        .await?;
        self.expect_ok().await
    }

    /// What the symbolic link at `path` points to, as the server says (a peer's text:
    /// check it before using it).
    ///
    /// # Errors
    /// As [`Client::mkdir`].
    pub async fn read_link(&mut self, path: &str) -> Result<String> {
        RemotePath::parse(path)?;
        let request = Request::ReadLink {
            path: path.to_owned(),
        };
        match self.raw_request(&request).await? {
            Response::Link { target } => Ok(target),
            _ => Err(Error::UnexpectedReply("expected a link's target")),
        }
    }

    /// Bytes used and the quota, if any.
    ///
    /// # Errors
    /// I/O or the server's refusal.
    pub async fn usage(&mut self) -> Result<(u64, Option<u64>)> {
        let usage = self.disk_usage().await?;
        Ok((usage.used, usage.quota))
    }

    /// Bytes and entries used, with their quotas.
    ///
    /// # Errors
    /// I/O or the server's refusal.
    pub async fn disk_usage(&mut self) -> Result<DiskUsage> {
        match self.raw_request(&Request::Usage).await? {
            Response::Usage {
                used,
                quota,
                entries,
                max_entries,
            } => Ok(DiskUsage {
                used,
                quota,
                entries,
                max_entries,
            }),
            _ => Err(Error::UnexpectedReply("expected usage")),
        }
    }

    /// Ends the connection cleanly (over TLS, with close_notify).
    ///
    /// # Errors
    /// I/O errors; the connection is gone either way.
    pub async fn close(mut self) -> Result<()> {
        self.conn.shutdown().await
    }

    /// Sets how long a reply, or progress in a download, may take before
    /// [`Error::Timeout`] (and how long a write may wait for a server that does not read).
    pub fn set_reply_timeout(&mut self, timeout: Duration) {
        self.reply_timeout = timeout;
        self.conn.set_write_deadline(Some(timeout));
    }

    /// Sends a raw request without waiting for a reply (for tests and tools).
    ///
    /// # Errors
    /// I/O or encoding errors.
    pub async fn send_raw(&mut self, request: &Request) -> Result<()> {
        self.send(request).await
    }

    /// Sends a raw request and returns the raw reply (for tests and tools).
    ///
    /// # Errors
    /// I/O, framing, or the server's error reply.
    pub async fn raw_request(&mut self, request: &Request) -> Result<Response> {
        self.send(request).await?;
        self.reply().await
    }

    /// Reads the next raw reply, to a request sent with [`Client::send_raw`] (for tests
    /// and tools that pipeline requests).
    ///
    /// # Errors
    /// I/O, framing, or the server's error reply.
    pub async fn raw_reply(&mut self) -> Result<Response> {
        self.reply().await
    }

    /// Whether the connection can carry another request. It cannot once it failed, or once
    /// a transfer stopped half way (a local file error, say) and left the server in the
    /// middle of a sequence, which the protocol has no way to cancel: connect again then.
    pub fn is_in_step(&self) -> bool {
        self.in_step
    }

    /// Whether a request can be sent now: in step, and nothing arrived unasked. A server
    /// that ends an idle session says so (`Error { Timeout }`) and closes; that is seen here,
    /// without waiting, before a command would be sent into the closed connection.
    pub async fn is_ready(&mut self) -> bool {
        if !self.in_step {
            return false;
        }
        // While the shell waited for input nothing drove the runtime, so what the server
        // sent meanwhile (a timeout notice, a close) is not known to the socket yet: let the
        // runtime poll its I/O driver once before looking.
        tokio::task::yield_now().await;
        // Reading is cancel-safe: a frame that has only partly arrived stays buffered.
        if self.conn.read::<Response>().now_or_never().is_some() {
            // A frame, the end or an error while no request is waiting for one.
            self.in_step = false;
        }
        self.in_step
    }

    /// Sends one request; a failure leaves the connection unusable.
    async fn send(&mut self, request: &Request) -> Result<()> {
        let sent = self.conn.write(request).await;
        if sent.is_err() {
            self.in_step = false;
        }
        sent
    }

    async fn expect_ok(&mut self) -> Result<()> {
        match self.reply().await? {
            Response::Ok => Ok(()),
            _ => Err(Error::UnexpectedReply("expected ok")),
        }
    }

    /// The next reply; an error reply becomes [`Error::Remote`]. A failure to read one
    /// leaves the connection unusable.
    async fn reply(&mut self) -> Result<Response> {
        let response = self
            .reply_deadline
            .within(self.reply_timeout, self.conn.expect::<Response>())
            .await
            .map_err(|_| Error::Timeout)
            .and_then(|read| read)
            .inspect_err(|_| self.in_step = false)?;
        match response {
            Response::Error { code, message } => Err(Error::Remote { code, message }),
            other => Ok(other),
        }
    }
}

/// Sorts a listing of `listing` by name, refusing one that names an entry twice: whoever
/// writes a tree out would see only one of the two (say a file where a directory must be
/// entered), and a name means one thing.
fn sort_refusing_duplicates(listing: &str, entries: &mut [Entry]) -> Result<()> {
    entries.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    match entries.windows(2).find(|pair| pair[0].name == pair[1].name) {
        Some(pair) => Err(Error::DuplicateName {
            listing: listing.to_owned(),
            name: pair[0].name.clone(),
        }),
        None => Ok(()),
    }
}

/// `dir/name` for remote paths.
fn transfer_join(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
}

fn first_final_error(message: &str) -> Error {
    match message.strip_prefix("e=") {
        Some(reason) => Error::Scram(auth::ScramError::ServerError(reason.to_owned())),
        None => Error::UnexpectedReply("expected an authentication challenge"),
    }
}

/// Connects to a saved login's server (over the transport chosen at login) and logs in with
/// its cached keys. `server` picks the login for that address; `None` takes the most recent.
///
/// # Errors
/// [`Error::NotLoggedIn`] without a saved login, [`Error::LoginExpired`] if it no longer
/// works, and connection errors.
pub async fn connect_saved(
    store: &CredentialStore,
    server: Option<&str>,
    known_hosts: KnownHosts,
    unknown: UnknownServer,
) -> Result<(Client, SavedLogin)> {
    let saved = store.find(server)?.ok_or_else(|| Error::NotLoggedIn {
        server: server.map(str::to_owned),
    })?;
    let security = saved.transport.security(known_hosts, unknown);
    let mut client = Client::connect(&saved.server, &security).await?;
    client.login_with_keys(&saved.user, &saved.keys).await?;
    Ok((client, saved))
}

#[cfg(test)]
mod tests;
