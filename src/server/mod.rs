//! The server: a listener that spawns one task per connection, each running a
//! session (hello → login → commands) against the user store and the storage.
//!
//! [`Server::open`] opens the engines the settings name ([`Backends::open`]: the embedded
//! defaults are a `users.db` file and a directory on disk); [`Server::with_backends`] takes
//! any [`UserStore`] and [`Storage`].
//!
//! # Layout
//! From the top: [`settings`] (`ftpd serve` options and `ftpd.toml`, read into a
//! [`Config`]); this file (the listener, its limits, graceful shutdown); [`backends`], the
//! one place that names an engine and opens it from the [`config`].
//!
//! Front ends: `session` (one connection of the native protocol: greeting, the command
//! loop) with `handler` (its requests, turned into calls of the core) and `login` (hellos
//! and SCRAM's messages in frames, shared with the chat); [`sftp`] (SSH: its listener and
//! logins in `mod.rs`, the SFTP session in `session`, the host key in `host_key`);
//! [`chat`] (the chat over QUIC); [`time`] (the NTP service on UDP).
//!
//! `core`, what every front end calls, knowing no wire: `core::login` (SCRAM against the
//! stored verifier, and keys or passwords a front end checks, with lockouts, audit, the
//! limit of sessions), `core::files` (one user's files: jail, quotas, locks, transfer
//! places, audit) and `core::keys` (the SSH keys a user manages). Beneath it `shared` (what every
//! session shares) and [`config`] (where users and files are, every limit).
//!
//! Concerns, each a trait with its rules in `mod.rs` and one file per engine:
//! - [`users`]: who may log in (`file`: `users.db`; `postgres`);
//! - [`guard`]: failed-login delays and lockouts (in memory; `postgres` over every node);
//! - `quota`: holds of uploads in progress (in memory; `postgres` over every node);
//! - [`secret`]: the secret behind unknown users' mock salts (a file; `postgres`);
//! - [`storage`]: the `Storage`/`UserTree` traits, the cap-std jail (`disk`) and the
//!   object store (`object`, its shared counts and upload states in `object/postgres`);
//! - `chat::store` and `chat::bus`: the chat's durable state (`sqlite`; `postgres`) and how
//!   nodes hear of each other (`postgres`).
//!
//! At the bottom: [`tls`] (the server's certificate), `audit` (the JSON-lines audit log),
//! `counters` (per-user and per-address places), `locks` (one upload per target),
//! [`budget`] (the token bucket behind every rate limit), [`postgres`] (the driver every
//! PostgreSQL engine stands on: connection, migrations, errors), `sql` (integers as SQL
//! keeps them).

mod accept;
mod audit;
pub mod backends;
pub mod budget;
pub mod chat;
pub mod config;
mod core;
mod counters;
pub mod guard;
mod handler;
mod locks;
mod login;
pub mod postgres;
mod quota;
pub mod secret;
mod session;
pub mod settings;
pub mod sftp;
mod shared;
mod sql;
pub mod storage;
pub mod time;
pub mod tls;
pub mod users;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::{Error, Result};
use crate::tls::ReadAhead;
pub use backends::Backends;
pub use config::{Config, Limits};
pub use config::{StorageRoot, UserDatabase};
use session::Greeting;
use shared::Shared;
pub use storage::object::{ObjectLocation, ObjectStorage};
pub use storage::{Download, FsStorage, Storage, Upload, UserTree};
pub use tls::{ServerIdentity, TlsSetup};
pub use users::UserStore;
pub use users::file::FileUserStore;

/// What an accepted connection gets: a session, or a busy reply.
enum Admission {
    /// A session, holding its places under the global and the per-address limits.
    Serve(OwnedSemaphorePermit, counters::Place<std::net::IpAddr>),
    /// A busy reply, with the reason.
    Refuse(OwnedSemaphorePermit, String),
}

/// Runs TLS (if configured), then the session or the busy reply.
async fn serve_socket(
    socket: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    slot: Admission,
) {
    let Some(identity) = shared.tls.clone() else {
        return match slot {
            Admission::Serve(_permit, _per_ip) => {
                session::run(socket, peer, shared, cancel, Greeting::ToSend).await;
            }
            Admission::Refuse(_permit, reason) => {
                session::refuse_busy(socket, &reason, Greeting::ToSend).await;
            }
        };
    };
    // The greeting goes out with the server's handshake flight, as TLS 1.3 allows
    // (`send_half_rtt_data`): it is the same for every client and says nothing secret, so it
    // need not wait for the client's Finished, and the client has it as soon as its side of
    // the handshake is done. A TLS login saves a round trip.
    let second = match &slot {
        Admission::Serve(..) => login::mechanisms(true, &shared.limits),
        Admission::Refuse(_, reason) => login::busy_reply(reason),
    };
    let mut greeting = Greeting::ToSend;
    let acceptor = tokio_rustls::TlsAcceptor::from(identity.config);
    let accept = acceptor.accept_with(ReadAhead::new(socket), |tls| {
        if let Ok(bytes) = session::greeting(&second)
            && std::io::Write::write_all(&mut tls.writer(), &bytes).is_ok()
        {
            greeting = Greeting::Sent;
        }
    });
    let handshake = tokio::time::timeout(shared.limits.login_timeout, accept);
    let mut stream = match handshake.await {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => {
            tracing::info!(%peer, error = %err, "TLS handshake failed (a plaintext client?)");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "TLS handshake timed out");
            return;
        }
    };
    stream
        .get_mut()
        .1
        .set_buffer_limit(Some(crate::tls::SEND_BUFFER_LIMIT));
    match slot {
        Admission::Serve(_permit, _per_ip) => {
            session::run(stream, peer, shared, cancel, greeting).await
        }
        Admission::Refuse(_permit, reason) => session::refuse_busy(stream, &reason, greeting).await,
    }
}

/// Busy replies being sent at once to connections over the limit.
const MAX_PENDING_REFUSALS: usize = 64;

/// A server ready to run on a listener.
pub struct Server {
    shared: Arc<Shared>,
    /// How the chat joins the other nodes, when there are any.
    chat_bus: Option<chat::bus::StartBus>,
    /// Where the chat keeps friends and messages.
    chat_store: backends::ChatStores,
}

impl Server {
    /// The engines `config` names ([`Backends::open`]), served with its TLS, audit log and
    /// limits.
    ///
    /// # Errors
    /// A corrupt or unreadable user database, a database that cannot be reached, a
    /// root/state directory that cannot be used, or an audit log that cannot be opened.
    pub async fn open(config: &Config) -> Result<Self> {
        let backends = Backends::open(config).await?;
        let tls = ServerIdentity::load(&config.tls, &config.state_dir)?;
        match &tls {
            Some(identity) => {
                tracing::info!(fingerprint = %identity.fingerprint, "serving TLS");
            }
            None => tracing::warn!(
                "PLAINTEXT MODE: no TLS; files, commands and sessions cross the network \
                 unencrypted. Use this only on loopback or in a lab"
            ),
        }
        let audit = match &config.audit_log {
            Some(path) => Some(audit::AuditLog::open(path).map_err(|e| Error::local(path, e))?),
            None => None,
        };
        Ok(Self::new(backends, config.limits, tls, audit))
    }

    /// A server over engines already opened.
    fn new(
        backends: Backends,
        limits: Limits,
        tls: Option<ServerIdentity>,
        audit: Option<audit::AuditLog>,
    ) -> Self {
        Server {
            shared: Arc::new(Shared {
                users: backends.users,
                admin: backends.admin,
                storage: backends.storage,
                secret: backends.secret,
                limits,
                quotas: backends.quotas,
                uploads: locks::TargetLocks::default(),
                tls,
                guard: backends.guard,
                per_ip: counters::Counter::default(),
                per_user: counters::Counter::default(),
                audit,
                transfers: Arc::new(Semaphore::new(limits.max_transfers.max(1))),
            }),
            chat_bus: backends.chat_bus,
            chat_store: backends.chat_store,
        }
    }

    /// A server over any user store and storage, on one node (lockouts and upload holds
    /// in memory), with its chat store in `chat_db` when the chat runs.
    pub fn with_backends(
        users: Arc<dyn UserStore>,
        storage: Arc<dyn Storage>,
        secret: [u8; secret::SECRET_LEN],
        limits: Limits,
        tls: Option<ServerIdentity>,
        chat_db: PathBuf,
    ) -> Self {
        let chat_store = backends::ChatStores::File(chat_db);
        let backends = Backends::local(users, storage, secret, limits.lockout, chat_store);
        Self::new(backends, limits, tls, None)
    }

    /// The chat store that goes with this server's users: in their PostgreSQL database,
    /// shared with every node on it, or `chat.db` in the state directory.
    ///
    /// # Errors
    /// `chat.db` cannot be opened.
    pub fn chat_store(&self) -> Result<Arc<dyn chat::store::ChatStore>> {
        self.chat_store.open()
    }

    /// The chat beside this server's file service: same users, limits and audit, on `socket`
    /// (UDP) with `identity`'s certificate.
    ///
    /// # Errors
    /// The certificate cannot serve QUIC, or the socket cannot be used.
    pub fn chat(
        &self,
        socket: std::net::UdpSocket,
        identity: &ServerIdentity,
        store: Arc<dyn chat::store::ChatStore>,
        settings: chat::ChatSettings,
    ) -> Result<chat::ChatService> {
        chat::ChatService::new(
            Arc::clone(&self.shared),
            self.chat_bus.as_ref(),
            socket,
            identity,
            store,
            settings,
        )
    }

    /// The SSH front end beside this server's file service: same users, limits and audit.
    pub fn sftp(&self, settings: sftp::SftpSettings) -> sftp::SftpService {
        sftp::SftpService::new(Arc::clone(&self.shared), settings)
    }

    /// The TLS identity it serves with, if any (`None` for plaintext).
    pub fn identity(&self) -> Option<&ServerIdentity> {
        self.shared.tls.as_ref()
    }

    /// Serves one already-connected byte stream as a session, without TLS, until the peer
    /// leaves: for embedding behind a transport of one's own, and for tests that drive a
    /// session over an in-memory pipe (with paused time, say).
    pub async fn serve_stream<S>(&self, stream: S, peer: SocketAddr)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        session::run(
            stream,
            peer,
            Arc::clone(&self.shared),
            CancellationToken::new(),
            Greeting::ToSend,
        )
        .await;
    }

    /// Serves connections until `shutdown` completes. Then it stops accepting, lets every
    /// session finish its current request or transfer (idle ones stop at once), and waits for
    /// them up to [`Limits::shutdown_grace`]; sessions still running then are closed (an
    /// upload cut short keeps its partial data for a resume, and its target is untouched).
    ///
    /// # Errors
    /// None at present: accept errors are logged and retried with a back-off.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
        let limit = Arc::new(Semaphore::new(self.shared.limits.max_connections));
        let refusals = Arc::new(Semaphore::new(MAX_PENDING_REFUSALS));
        let cancel = CancellationToken::new();
        let force = CancellationToken::new();
        let tracker = TaskTracker::new();
        tokio::pin!(shutdown);
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "listening");
        }
        loop {
            let (socket, peer) = tokio::select! {
                accepted = accept::next(&listener) => accepted,
                () = &mut shutdown => break,
            };
            let _ = socket.set_nodelay(true);
            // Over the limit: say so and close, rather than leave the client hanging.
            // Refusals run beside the accept loop, themselves bounded: past that, drop.
            let limits = self.shared.limits;
            let per_ip = self
                .shared
                .per_ip
                .try_acquire(&peer.ip(), limits.max_connections_per_ip);
            let slot = match (Arc::clone(&limit).try_acquire_owned(), per_ip) {
                (Ok(permit), Some(per_ip)) => Admission::Serve(permit, per_ip),
                (global, per_ip) => {
                    let reason = if global.is_err() {
                        format!("all {} connections in use", limits.max_connections)
                    } else {
                        format!(
                            "your address already holds {} connections",
                            limits.max_connections_per_ip
                        )
                    };
                    drop(per_ip);
                    tracing::warn!(%peer, %reason, "connection limit reached; refusing");
                    match Arc::clone(&refusals).try_acquire_owned() {
                        Ok(permit) => Admission::Refuse(permit, reason),
                        Err(_) => continue,
                    }
                }
            };
            let shared = Arc::clone(&self.shared);
            let (cancel, force) = (cancel.child_token(), force.clone());
            tracker.spawn(async move {
                tokio::select! {
                    () = serve_socket(socket, peer, shared, cancel, slot) => {}
                    () = force.cancelled() => {}
                }
            });
        }
        drop(listener);
        let grace = self.shared.limits.shutdown_grace;
        tracing::info!(
            sessions = tracker.len(),
            grace_secs = grace.as_secs(),
            "shutting down: no new connections; letting running commands finish"
        );
        cancel.cancel();
        tracker.close();
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::warn!(
                sessions = tracker.len(),
                "sessions still running after the grace period; closing them"
            );
            force.cancel();
            tracker.wait().await;
        }
        Ok(())
    }
}
