//! The chat over QUIC: the same users, login and certificate as the file service, friends,
//! presence, and messages that are stored durably before they are acknowledged and delivered
//! exactly once (the client acknowledges what it took in; the store redelivers the rest).
//!
//! # The QUIC mapping
//! ALPN [`crate::chat::CHAT_ALPN`]. The client opens one bidirectional stream: hello and login
//! exactly as on the file protocol's TCP connection, then [`ChatRequest`]s, each answered by
//! one [`ChatReply`]. After the login the server opens one unidirectional stream and pushes
//! [`ChatEvent`]s on it. Clients may open no other stream.
//!
//! # Layout
//! - this file: the QUIC endpoint, connections, and one session's login and request loop;
//! - `requests`: what each request does, answered with a reply or a typed refusal;
//! - [`store`]: the durable state behind the `ChatStore` trait, one file per engine
//!   (SQLite by default, PostgreSQL beside the users);
//! - [`bus`]: how sessions on other nodes hear of events and presence (PostgreSQL's NOTIFY);
//! - `hub`: who is online, their sessions' wake-ups and event queues;
//! - `quiet`: friend requests told lately, so add/del cycles cannot fill a screen.

pub mod bus;
mod hub;
mod quiet;
mod requests;
pub mod store;

use requests::answer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::future::Either;
use futures_util::stream::FuturesOrdered;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::budget::Budget;
use super::counters::Counter;
use super::login;
use super::shared::Shared;
use super::tls::ServerIdentity;
use crate::chat::{
    COLOURS, ChatErrorCode, ChatEvent, ChatReply, ChatRequest, Friend, FriendState, MAX_HISTORY,
    MAX_TEXT_BYTES,
};
use crate::error::{Error, Result};
use crate::username::Username;
use crate::wire::Connection;
use hub::Hub;
use store::{Added, ChatStore, Stored, Waiting};

/// The chat's bounds.
#[derive(Debug, Clone, Copy)]
pub struct ChatSettings {
    /// Undelivered messages one user may have waiting; past that, senders are refused.
    pub max_waiting: u32,
    /// ...of which from any one sender: one friend cannot fill the inbox for the others.
    pub max_waiting_per_sender: u32,
    /// Messages kept each way of a conversation, for history.
    pub history: u32,
    /// Friend requests one user may have waiting for an answer.
    pub max_asked: u32,
    /// Names one user may block.
    pub max_blocked: u32,
    /// Requests that change something (send, add, del, colour) one connection may make per
    /// second on average...
    pub rate: f64,
    /// ...and at once.
    pub burst: f64,
    /// A connection silent this long is closed (clients keep it alive while they run).
    pub idle_timeout: Duration,
}

impl Default for ChatSettings {
    fn default() -> Self {
        ChatSettings {
            max_waiting: 10_000,
            max_waiting_per_sender: 1_000,
            history: 1000,
            max_asked: 100,
            max_blocked: 1000,
            rate: 20.0,
            burst: 50.0,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Bytes a peer may have in flight per stream and per connection: memory per client stays
/// small whatever it sends.
const STREAM_WINDOW: u32 = 64 * 1024;
const CONNECTION_WINDOW: u32 = 128 * 1024;

/// QUIC version 1, RFC 9000: the one version the chat speaks.
const QUIC_V1: u32 = 0x0000_0001;

/// Messages delivered per read of the store.
const DELIVERY_BATCH: u32 = 256;

/// Messages of one connection waiting for the disk at once (more are read when one is
/// answered): enough to share a disk sync among many, little memory per connection.
const PIPELINED: usize = 32;

/// The chat's places, counted apart from the file service's: handshakes in progress and
/// sessions (each up to the server's connection limit), and connections per address.
struct Places {
    handshakes: Arc<Semaphore>,
    sessions: Arc<Semaphore>,
    per_ip: Counter<std::net::IpAddr>,
}

/// The chat service of a server, ready to run.
pub struct ChatService {
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
    binding: Arc<[u8]>,
    store: Arc<dyn ChatStore>,
    hub: Arc<Hub>,
    /// The store pushes stored messages to the hub; else recipients are woken.
    pushes: bool,
    /// The other nodes' sessions, when the chat is shared through the users' database.
    bus: Option<Arc<dyn bus::ChatBus>>,
    settings: ChatSettings,
    /// Friend requests told lately (not told again for a while).
    announced: quiet::Announcements,
}

impl ChatService {
    /// The chat beside a file service sharing `shared` (same users, limits and audit),
    /// joined to the other nodes by `bus` if there are any, on `socket` (UDP) with
    /// `identity`'s certificate.
    ///
    /// # Errors
    /// The certificate cannot serve QUIC, or the socket cannot be used.
    pub(crate) fn new(
        shared: Arc<Shared>,
        bus: Option<&bus::StartBus>,
        socket: std::net::UdpSocket,
        identity: &ServerIdentity,
        store: Arc<dyn ChatStore>,
        settings: ChatSettings,
    ) -> Result<ChatService> {
        let tls = identity.quic_config(crate::chat::CHAT_ALPN)?;
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .map_err(|e| Error::Tls(e.to_string()))?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport
            .max_concurrent_bidi_streams(1u8.into())
            .max_concurrent_uni_streams(0u8.into())
            .stream_receive_window(STREAM_WINDOW.into())
            .receive_window(CONNECTION_WINDOW.into())
            .send_window(u64::from(CONNECTION_WINDOW) * 2)
            .max_idle_timeout(
                quinn::IdleTimeout::try_from(settings.idle_timeout)
                    .ok()
                    .or(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(
                        60_000,
                    )))),
            );
        config.transport_config(Arc::new(transport));
        let hub: Arc<Hub> = Arc::default();
        // Messages reach online recipients from memory, in the order they were stored.
        let pushes = {
            let hub = Arc::clone(&hub);
            store.push_stored(Arc::new(move |message| hub.deliver(message)))
        };
        // Sessions on other nodes sharing the database hear of events and presence here.
        let bus = bus.map(|start| {
            let hub = Arc::clone(&hub);
            start(Arc::new(move |to: &str, event: &ChatEvent| {
                hub.tell(to, event)
            }))
        });
        socket.set_nonblocking(true)?;
        let reset = ResetKey(crate::auth::hmac(
            &shared.secret,
            &[b"ftprep chat: QUIC stateless reset"],
        ));
        // Connection IDs any server may recognise as possibly its own (quinn's default
        // checks them with a key of the process), so a restarted server answers its
        // predecessor's connections with that reset.
        let mut endpoint_config = quinn::EndpointConfig::new(Arc::new(reset));
        endpoint_config.cid_generator(|| Box::new(RandomCids));
        // QUIC version 1 (RFC 9000) alone, as PROTOCOL.md says: no drafts.
        endpoint_config.supported_versions(vec![QUIC_V1]);
        let endpoint = quinn::Endpoint::new(
            endpoint_config,
            Some(config),
            socket,
            Arc::new(quinn::TokioRuntime),
        )?;
        Ok(ChatService {
            endpoint,
            shared,
            binding: Arc::clone(&identity.binding),
            store,
            hub,
            pushes,
            bus,
            settings,
            announced: quiet::Announcements::default(),
        })
    }
}

impl ChatService {
    /// The UDP address it answers on.
    ///
    /// # Errors
    /// The socket's address cannot be read.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.endpoint.local_addr()?)
    }

    /// Serves chat connections until `shutdown` is cancelled, then closes them.
    pub async fn run(self, shutdown: CancellationToken) {
        if let Ok(addr) = self.endpoint.local_addr() {
            tracing::info!(%addr, "chat (QUIC) answering");
        }
        let limits = self.shared.limits;
        let places = Arc::new(Places {
            handshakes: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            sessions: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            per_ip: Counter::default(),
        });
        let service = Arc::new(self);
        let tracker = TaskTracker::new();
        loop {
            let incoming = tokio::select! {
                incoming = service.endpoint.accept() => match incoming {
                    Some(incoming) => incoming,
                    None => break,
                },
                () = shutdown.cancelled() => break,
            };
            let peer = incoming.remote_address();
            // The source of an Initial can be forged: until the client has answered a Retry
            // from that address, nothing is spent on it (no place, no state, and a reply
            // smaller than what it sent).
            if !incoming.remote_address_validated() {
                if let Err(err) = incoming.retry() {
                    err.into_incoming().ignore();
                }
                continue;
            }
            // Counted apart from the file service's places: chat clients cannot take those.
            let Some(per_ip) = places
                .per_ip
                .try_acquire(&peer.ip(), limits.max_connections_per_ip)
            else {
                tracing::warn!(%peer, "chat: connection limit per address reached; refusing");
                incoming.refuse();
                continue;
            };
            let Ok(handshake) = Arc::clone(&places.handshakes).try_acquire_owned() else {
                tracing::warn!(%peer, limit = limits.max_connections, "chat: too many handshakes at once; refusing");
                incoming.refuse();
                continue;
            };
            let service = Arc::clone(&service);
            let places = Arc::clone(&places);
            let cancel = shutdown.clone();
            tracker.spawn(async move {
                let _per_ip = per_ip;
                if let Err(err) = service
                    .serve(incoming, peer, handshake, &places.sessions, &cancel)
                    .await
                {
                    match err {
                        Error::ConnectionClosed => tracing::debug!(%peer, "chat client left"),
                        err => tracing::info!(%peer, error = %err, "chat connection ended"),
                    }
                }
            });
        }
        service
            .endpoint
            .close(quinn::VarInt::from_u32(0), b"server shutting down");
        tracker.close();
        tracker.wait().await;
        service.endpoint.wait_idle().await;
    }

    /// One connection: handshake, login on its first stream, then the session. A place
    /// among the sessions is taken once the handshake is done (until then `handshake` is
    /// held), and the user's own place once the login has succeeded.
    async fn serve(
        &self,
        incoming: quinn::Incoming,
        peer: SocketAddr,
        handshake: OwnedSemaphorePermit,
        sessions: &Arc<Semaphore>,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let timeout = self.shared.limits.login_timeout;
        let opened = async {
            let connection = incoming
                .await
                .map_err(|e| Error::Tls(format!("QUIC handshake: {e}")))?;
            let (send, recv) = connection.accept_bi().await.map_err(Error::from)?;
            Ok::<_, Error>((connection, send, recv))
        };
        let (connection, send, recv) = tokio::select! {
            result = tokio::time::timeout(timeout, opened) => result.map_err(|_| Error::Timeout)??,
            () = cancel.cancelled() => return Ok(()),
        };
        drop(handshake);
        let Ok(_session) = Arc::clone(sessions).try_acquire_owned() else {
            let limit = self.shared.limits.max_connections;
            tracing::warn!(%peer, limit, "chat: connection limit reached; refusing");
            let mut conn = Connection::new(tokio::io::join(recv, send));
            conn.set_write_deadline(Some(LINGER));
            conn.set_read_limit(crate::wire::LOGIN_FRAME_LEN);
            let busy = login::busy_reply("too many chat connections");
            let refused = tokio::time::timeout(LINGER, login::hello(&mut conn, busy)).await;
            if matches!(refused, Ok(Ok(()))) {
                linger(&connection, &mut conn).await;
            }
            return Ok(());
        };
        let mut conn = Connection::new(tokio::io::join(recv, send));
        conn.set_write_deadline(Some(self.shared.limits.stall_timeout));
        conn.set_read_limit(crate::wire::LOGIN_FRAME_LEN);
        let login = async {
            login::hello(&mut conn, login::mechanisms(true, &self.shared.limits)).await?;
            let proven = login::login(&mut conn, peer, &self.shared, Some(&self.binding)).await?;
            match proven {
                Some(proven) => {
                    let logged_in = proven.without_files();
                    login::succeed(&mut conn, Ok((logged_in, ()))).await
                }
                None => Ok(None),
            }
        };
        let user = tokio::select! {
            result = tokio::time::timeout(timeout, login) => {
                result.map_err(|_| Error::Timeout).and_then(|r| r)
            }
            () = cancel.cancelled() => return Ok(()),
        };
        let user = match user {
            Ok(Some(user)) => user,
            Ok(None) => {
                // The failure was answered: let it reach the client, which then closes.
                linger(&connection, &mut conn).await;
                return Ok(());
            }
            Err(err) => {
                // As on the file protocol: a typed answer where the peer can still hear one.
                if !matches!(err, Error::ConnectionClosed | Error::Io(_)) {
                    let (code, message) = err.to_reply();
                    if conn
                        .write(&crate::commands::Response::Error { code, message })
                        .await
                        .is_ok()
                    {
                        linger(&connection, &mut conn).await;
                    }
                }
                return Err(err);
            }
        };
        // The user's place under their limit of sessions is held until the chat ends.
        let (logged_in, ()) = user;
        let result = self
            .session(&connection, conn, &logged_in.user, peer, cancel)
            .await;
        connection.close(quinn::VarInt::from_u32(0), b"bye");
        result
    }

    /// A logged-in chat session: requests on the first stream, events pushed on a stream of
    /// our own, until the client leaves, idles out, or the server stops.
    async fn session<S>(
        &self,
        connection: &quinn::Connection,
        mut requests: Connection<S>,
        user: &Username,
        peer: SocketAddr,
        cancel: &CancellationToken,
    ) -> Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let events = connection.open_uni().await.map_err(Error::from)?;
        let mut events = Connection::new(tokio::io::join(tokio::io::empty(), events));
        events.set_write_deadline(Some(self.shared.limits.stall_timeout));
        let name = user.as_str();
        let hub::Joined {
            registration,
            wake,
            events: mut queued,
            first,
            behind,
        } = self.hub.join(name);
        let session = registration.id();
        tracing::info!(user = name, %peer, "chat session started");
        if first && self.first_anywhere(name).await {
            self.tell_friends(name, true).await;
        }
        // Messages come from the store at the start and whenever the session fell behind
        // (its queue overflowed, or the store does not push); else from the queue, as they
        // are stored. Ids only grow: one already sent (at most `cursor`) is not sent again.
        let deliver = async {
            let mut cursor = 0u64;
            let mut caught_up = false;
            loop {
                behind.store(false, std::sync::atomic::Ordering::Release);
                loop {
                    let batch = self
                        .store
                        .waiting(name, cursor, DELIVERY_BATCH)
                        .await
                        .map_err(|e| Error::Io(std::io::Error::other(e)))?;
                    let Some(last) = batch.last() else { break };
                    cursor = last.id;
                    for message in batch {
                        events.write(&ChatEvent::Message(message)).await?;
                    }
                }
                if !caught_up {
                    events.write(&ChatEvent::CaughtUp).await?;
                    caught_up = true;
                }
                loop {
                    tokio::select! {
                        () = wake.notified() => break,
                        event = queued.recv() => match event {
                            Some(ChatEvent::Message(message)) => {
                                if message.id > cursor {
                                    cursor = message.id;
                                    events.write(&ChatEvent::Message(message)).await?;
                                }
                            }
                            Some(event) => events.write(&event).await?,
                            None => return Ok::<(), Error>(()),
                        },
                    }
                }
            }
        };
        // Requests are answered in order. Messages are pipelined: up to PIPELINED of them
        // wait for the disk at once (each queued in the store as it is read, so they keep
        // their order); any other request waits until those before it are answered.
        let serve = async {
            let mut budget = Budget::new(self.settings.rate, self.settings.burst, Instant::now());
            let mut in_flight = FuturesOrdered::new();
            loop {
                let read = tokio::select! {
                    biased;
                    Some(reply) = in_flight.next(), if !in_flight.is_empty() => {
                        requests.write(&answer(reply)).await?;
                        continue;
                    }
                    read = requests.read::<ChatRequest>(), if in_flight.len() < PIPELINED => read,
                };
                let request = match read {
                    Ok(Some(request)) => request,
                    Ok(None) => break,
                    Err(err @ (Error::MalformedFrame(_) | Error::FrameTooLarge { .. })) => {
                        let reply = ChatReply::Error {
                            code: ChatErrorCode::UnexpectedRequest,
                            message: err.to_string(),
                        };
                        requests.write_each((&mut in_flight).map(answer)).await?;
                        // The reply must reach the client before the connection closes:
                        // the stream is finished and the client has a moment to read it.
                        if requests.write(&reply).await.is_ok() {
                            linger(connection, &mut requests).await;
                        }
                        return Err(err);
                    }
                    Err(err) => return Err(err),
                };
                if let ChatRequest::Send { to, text, nonce } = &request {
                    let reply = match self.admit(user.as_str(), &request, &mut budget) {
                        Ok(()) => Either::Left(self.send_message(
                            user.as_str(),
                            to,
                            text,
                            *nonce,
                            Some(session),
                        )),
                        Err(refusal) => Either::Right(std::future::ready(Err(refusal))),
                    };
                    in_flight.push_back(reply);
                    continue;
                }
                requests.write_each((&mut in_flight).map(answer)).await?;
                let reply = self.apply(user, request, &mut budget).await;
                requests.write(&reply).await?;
            }
            // The client closed its side: what is in flight is still answered.
            requests.write_each((&mut in_flight).map(answer)).await?;
            Ok::<(), Error>(())
        };
        let result = tokio::select! {
            result = deliver => result,
            result = serve => result,
            () = cancel.cancelled() => Ok(()),
        };
        if registration.leave() && self.gone_everywhere(name).await {
            self.tell_friends(name, false).await;
        }
        tracing::info!(user = name, %peer, "chat session ended");
        result
    }
}

/// The key QUIC stateless resets are made with, derived from the server's secret: a
/// restarted server can tell the clients of the one before that their connection is gone,
/// so they reconnect at once instead of waiting out the idle timeout.
struct ResetKey(crate::auth::Key);

impl quinn::crypto::HmacKey for ResetKey {
    fn sign(&self, data: &[u8], out: &mut [u8]) {
        let tag = crate::auth::hmac(&self.0, &[data]);
        let n = out.len().min(tag.len());
        out[..n].copy_from_slice(&tag[..n]);
    }

    fn signature_len(&self) -> usize {
        32
    }

    fn verify(
        &self,
        data: &[u8],
        signature: &[u8],
    ) -> std::result::Result<(), quinn::crypto::CryptoError> {
        use subtle::ConstantTimeEq;
        let tag = crate::auth::hmac(&self.0, &[data]);
        if bool::from(tag[..].ct_eq(signature)) {
            Ok(())
        } else {
            Err(quinn::crypto::CryptoError)
        }
    }
}

/// Random 8-byte connection IDs, each accepted as possibly ours (see [`ResetKey`]).
struct RandomCids;

impl quinn::ConnectionIdGenerator for RandomCids {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        quinn::ConnectionId::new(&rand::random::<[u8; 8]>())
    }

    fn cid_len(&self) -> usize {
        8
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

/// How long a last answer may take to reach a client before the connection is closed.
const LINGER: Duration = Duration::from_secs(2);

/// Ends our side of the stream and waits (briefly) for the client to close, so a last
/// answer is not cut off by our closing.
async fn linger<S>(connection: &quinn::Connection, conn: &mut Connection<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = conn.shutdown().await;
    let _ = tokio::time::timeout(LINGER, connection.closed()).await;
}

#[cfg(test)]
mod tests;
