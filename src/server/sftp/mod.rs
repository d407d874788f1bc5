//! The SSH front end, for the SFTP clients people already have (OpenSSH `sftp` and `scp`,
//! rclone, FileZilla, WinSCP, sshfs): SSH through `russh`, modern algorithms only, the
//! user's SSH keys (and their password, where the admin allows it) checked by the core
//! login, so the lockout, audit and limits are the native protocol's own.
//!
//! Nothing but the `sftp` subsystem is served: shells, commands, forwarding and agents are
//! refused with a message saying so.

pub mod host_key;
mod reading;
mod reply;
mod session;
mod writing;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use russh::keys::ssh_key::{Algorithm, EcdsaCurve, HashAlg, PrivateKey};
use russh::server::{Auth, Msg, Session};
use russh::{Channel, ChannelId, MethodKind, MethodSet, Preferred, cipher, kex, mac};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::accept;
use super::core::UserFiles;
use super::core::login::{self, Credential};
use super::shared::Shared;

/// How the SSH front end is set up.
#[derive(Clone)]
pub struct SftpSettings {
    /// The server's host key.
    pub host_key: PrivateKey,
    /// Whether users may log in with their password (which the server then sees).
    pub passwords: bool,
}

/// Key exchanges offered: the post-quantum hybrid and Curve25519 only.
const KEX: &[kex::Name] = &[
    kex::MLKEM768X25519_SHA256,
    kex::CURVE25519,
    kex::CURVE25519_PRE_RFC_8731,
    kex::EXTENSION_SUPPORT_AS_SERVER,
    kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
];

/// Ciphers offered: authenticated encryption only.
const CIPHERS: &[cipher::Name] = &[
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_GCM,
    cipher::AES_128_GCM,
];

/// MACs (unused by the AEAD ciphers, but named in the exchange): SHA-2, encrypt-then-MAC.
const MACS: &[mac::Name] = &[mac::HMAC_SHA512_ETM, mac::HMAC_SHA256_ETM];

/// Key and signature algorithms accepted: no DSA, no SHA-1 RSA signatures.
const KEYS: &[Algorithm] = &[
    Algorithm::Ed25519,
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP256,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP384,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP521,
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha512),
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha256),
    },
];

/// The ways to log in offered: keys, and passwords where the admin allows them.
fn methods(passwords: bool) -> MethodSet {
    let mut methods = MethodSet::empty();
    methods.push(MethodKind::PublicKey);
    if passwords {
        methods.push(MethodKind::Password);
    }
    methods
}

/// Failed authentication requests one connection may make before it is closed.
const MAX_AUTH_ATTEMPTS: usize = 6;

/// The SSH listener, over the server's users, files, limits and audit.
pub struct SftpService {
    shared: Arc<Shared>,
    config: Arc<russh::server::Config>,
    passwords: bool,
}

impl SftpService {
    pub(crate) fn new(shared: Arc<Shared>, settings: SftpSettings) -> Self {
        let limits = shared.limits;
        let config = russh::server::Config {
            server_id: russh::SshId::Standard(
                concat!("SSH-2.0-ftpd_", env!("CARGO_PKG_VERSION")).into(),
            ),
            methods: methods(settings.passwords),
            // Failures take as long as each other whatever failed; the lockout's own
            // delays come on top.
            auth_rejection_time: Duration::from_millis(250),
            auth_rejection_time_initial: Some(Duration::ZERO),
            keys: vec![settings.host_key],
            max_auth_attempts: MAX_AUTH_ATTEMPTS,
            inactivity_timeout: Some(limits.idle_timeout),
            preferred: Preferred {
                kex: KEX.into(),
                key: KEYS.into(),
                cipher: CIPHERS.into(),
                mac: MACS.into(),
                ..Preferred::DEFAULT
            },
            nodelay: true,
            // A channel's incoming messages queue here while the session writes a reply.
            // russh queues every window adjustment the client sends there too, and waits
            // for room: with OpenSSH's 64 reads of 255 KiB in flight, russh's default of 100
            // filled while a reply waited for window, and the adjustment that would have
            // opened it never got through (a download stalled after some 30 MB). A reply
            // costs a handful of adjustments, and the queue is drained before each request.
            channel_buffer_size: 1024,
            ..russh::server::Config::default()
        };
        SftpService {
            shared,
            config: Arc::new(config),
            passwords: settings.passwords,
        }
    }

    /// Serves SSH connections on `listener` until `stop`, within the server's limits of
    /// connections (per address shared with the native protocol); then closes them, after
    /// the grace the native sessions get.
    pub async fn run(self, listener: TcpListener, stop: CancellationToken) {
        let limits = self.shared.limits;
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let tracker = TaskTracker::new();
        let close = CancellationToken::new();
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "SFTP (SSH) answering");
        }
        loop {
            let (socket, peer) = tokio::select! {
                accepted = accept::next(&listener) => accepted,
                () = stop.cancelled() => break,
            };
            let per_ip = self
                .shared
                .per_ip
                .try_acquire(&peer.ip(), limits.max_connections_per_ip);
            let (Ok(slot), Some(per_ip)) = (Arc::clone(&slots).try_acquire_owned(), per_ip) else {
                // SSH has no busy reply before its handshake: the connection is closed.
                tracing::warn!(%peer, "connection limit reached; refusing an SSH connection");
                continue;
            };
            let connection = SshConnection {
                shared: Arc::clone(&self.shared),
                peer,
                passwords: self.passwords,
                authenticated: Arc::new(AtomicBool::new(false)),
                counted_key_failure: false,
                login: None,
                channels: std::collections::HashMap::new(),
                tracker: tracker.clone(),
            };
            let (config, close) = (Arc::clone(&self.config), close.clone());
            tracker.spawn(async move {
                let _places = (slot, per_ip);
                serve(socket, peer, config, connection, close).await;
            });
        }
        drop(listener);
        tracker.close();
        if tokio::time::timeout(limits.shutdown_grace, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                sessions = tracker.len(),
                "SSH sessions still open after the grace period; closing them"
            );
        }
        close.cancel();
        tracker.wait().await;
    }
}

/// One SSH connection: the handshake and login within the login timeout, then the session
/// until the client leaves, the idle timeout, or `close`.
async fn serve(
    socket: TcpStream,
    peer: SocketAddr,
    config: Arc<russh::server::Config>,
    connection: SshConnection,
    close: CancellationToken,
) {
    let authenticated = Arc::clone(&connection.authenticated);
    let login_timeout = connection.shared.limits.login_timeout;
    let session = match tokio::time::timeout(
        login_timeout,
        russh::server::run_stream(config, socket, connection),
    )
    .await
    {
        Ok(Ok(session)) => session,
        Ok(Err(err)) => {
            tracing::info!(%peer, error = %err, "SSH handshake failed");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "SSH handshake timed out");
            return;
        }
    };
    let handle = session.handle();
    let deadline = tokio::time::sleep(login_timeout);
    tokio::pin!(session, deadline);
    let mut timing = true;
    loop {
        tokio::select! {
            ended = &mut session => {
                if let Err(err) = ended {
                    tracing::info!(%peer, error = %err, "SSH session ended");
                }
                return;
            }
            () = &mut deadline, if timing => {
                timing = false;
                if !authenticated.load(Ordering::Acquire) {
                    tracing::info!(%peer, "SSH login timed out");
                    let _ = handle
                        .disconnect(russh::Disconnect::ByApplication, "login timed out".into(), String::new())
                        .await;
                }
            }
            () = close.cancelled() => {
                let _ = handle
                    .disconnect(russh::Disconnect::ByApplication, "the server is shutting down".into(), String::new())
                    .await;
                return;
            }
        }
    }
}

/// What one SSH connection knows of its client.
struct SshConnection {
    shared: Arc<Shared>,
    peer: SocketAddr,
    passwords: bool,
    /// Set once a login succeeded (the login timeout then no longer applies).
    authenticated: Arc<AtomicBool>,
    /// A key not among the user's was offered once already on this connection: a client
    /// offering its every key counts as one failure, not one per key.
    counted_key_failure: bool,
    /// The user, once logged in, holding their place under the limit of sessions, and
    /// their files.
    login: Option<(login::LoggedIn, UserFiles)>,
    /// Session channels opened and not yet given a subsystem.
    channels: std::collections::HashMap<ChannelId, Channel<Msg>>,
    /// The service's tasks: an SFTP session is one, so that a shutdown waits for it to
    /// put its files in place or keep them for a resume.
    tracker: TaskTracker,
}

/// Session channels one connection may have open and waiting for a subsystem.
const MAX_CHANNELS: usize = 8;

/// Why the SSH session stops.
#[derive(Debug, thiserror::Error)]
enum SshError {
    #[error(transparent)]
    Ssh(#[from] russh::Error),
}

impl SshConnection {
    fn reject(&self) -> Auth {
        Auth::Reject {
            proceed_with_methods: Some(methods(self.passwords)),
            partial_success: false,
        }
    }

    /// The core's login with `credential`: accepted, with the user's place held.
    async fn log_in(&mut self, user: &str, credential: Credential<'_>) -> Auth {
        match login::check(&self.shared, self.peer, user, credential, "sftp").await {
            Ok(proven) => match proven.open_files("sftp").await {
                Ok(opened) => {
                    self.login = Some(opened);
                    self.authenticated.store(true, Ordering::Release);
                    Auth::Accept
                }
                Err(_) => self.reject(),
            },
            Err(_) => self.reject(),
        }
    }

    /// Refuses what this server does not do on `channel`, saying why on its error stream.
    fn refuse(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
        what: &str,
    ) -> Result<(), SshError> {
        tracing::info!(peer = %self.peer, what, "refused an SSH request");
        let message = format!(
            "ftpd: {what} is not available here; this server offers SFTP only (sftp, scp, rclone)\r\n"
        );
        // Accepted only to say why on the error stream and end with status 1, as GitHub
        // answers a shell: a bare failure shows the user nothing but "request failed".
        self.channels.remove(&channel);
        session.channel_success(channel)?;
        session.extended_data(channel, 1, message.into_bytes())?;
        session.exit_status_request(channel, 1)?;
        session.eof(channel)?;
        session.close(channel)?;
        Ok(())
    }
}

impl russh::server::Handler for SshConnection {
    type Error = SshError;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(self.reject())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        if !self.passwords {
            return Ok(self.reject());
        }
        Ok(self.log_in(user, Credential::Password(password)).await)
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        if login::has_key(&self.shared, user, offer.public_key).await {
            return Ok(Auth::Accept);
        }
        // A key that is not the user's is a failed login, once per connection.
        if !self.counted_key_failure {
            self.counted_key_failure = true;
            let _ = login::check(
                &self.shared,
                self.peer,
                user,
                Credential::Key(offer.public_key),
                "sftp",
            )
            .await;
        }
        Ok(self.reject())
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.log_in(user, Credential::Key(key.public_key)).await)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.login.is_none() || self.channels.len() >= MAX_CHANNELS {
            // Dropping the reply refuses the channel.
            return Ok(());
        }
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if name != "sftp" {
            let what = format!("the subsystem {:?}", crate::sanitize::for_log(name));
            return self.refuse(channel, session, &what);
        }
        let (Some(opened), Some((_, files))) = (self.channels.remove(&channel), &self.login) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        session.channel_success(channel)?;
        let files = files.clone();
        let (user, peer) = (files.user.clone(), self.peer);
        let handle = session.handle();
        self.tracker.spawn(async move {
            let status = match session::run(opened.into_stream(), files).await {
                Ok(()) => 0,
                Err(err) => {
                    tracing::info!(%user, %peer, error = %err, "SFTP session ended");
                    1
                }
            };
            // As sshd ends a subsystem: its exit status, then the channel closed, so that
            // the client's `ssh` (under `scp`, say) exits with it.
            let _ = handle.exit_status_request(channel, status).await;
            let _ = handle.eof(channel).await;
            let _ = handle.close(channel).await;
        });
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse(channel, session, "a shell")
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse(channel, session, "running a command")
    }
}
