//! The chat client: a QUIC connection to the server's chat, the certificate checked against
//! the same pin as the file service before anything is sent, the same login (cached keys
//! work), then requests on the first stream and events from the server's stream.
//!
//! Delivery is exactly once to the caller: the server redelivers what was not acknowledged,
//! and [`ChatClient::next_event`] skips a message it already handed out (ids only grow).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{RecvStream, SendStream};
use tokio::io::Join;

use super::credentials::SavedLogin;
use super::tls::{KnownHosts, Security, UnknownServer, check_peer, quic_client_config};
use super::{CONNECT_TIMEOUT, Client, REPLY_TIMEOUT};
use crate::auth::ClientKeys;
use crate::chat::{CHAT_ALPN, ChatEvent, ChatMessage, ChatReply, ChatRequest, Friend};
use crate::error::{Error, Result};
use crate::username::Username;
use crate::wire::Connection;

/// How often an idle client shows the server it is still there.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// A logged-in chat connection.
pub struct ChatClient {
    endpoint: quinn::Endpoint,
    connection: quinn::Connection,
    requests: Connection<Join<RecvStream, SendStream>>,
    /// The server's event stream, once it has opened it (a QUIC stream shows up at its
    /// first byte: the first event).
    events: Option<Connection<Join<RecvStream, tokio::io::Sink>>>,
    /// The highest message id handed out: a redelivered one is not handed out again.
    delivered: u64,
    user: Username,
}

impl std::fmt::Debug for ChatClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatClient")
            .field("user", &self.user)
            .field("delivered", &self.delivered)
            .finish_non_exhaustive()
    }
}

impl ChatClient {
    /// Connects with a saved login (the chat listens at the file service's address).
    ///
    /// # Errors
    /// As [`ChatClient::connect`].
    pub async fn connect_saved(
        saved: &SavedLogin,
        known_hosts: KnownHosts,
        unknown: UnknownServer,
    ) -> Result<Self> {
        let security = saved
            .transport
            .security(known_hosts.clone(), unknown.clone());
        let security = match security {
            // QUIC always encrypts: a login made without TLS pins the chat's certificate.
            Security::Plaintext => Security::Pinned {
                known_hosts,
                unknown,
            },
            other => other,
        };
        Self::connect(&saved.server, &security, &saved.user, &saved.keys).await
    }

    /// Connects to the chat at `addr`, checks its certificate as `security` says before
    /// anything is sent, and logs in with `keys`.
    ///
    /// # Errors
    /// Connection and QUIC failures (a changed certificate among them), timeouts, a peer
    /// that is not a compatible server, and login failures ([`Error::LoginExpired`]).
    pub async fn connect(
        addr: &str,
        security: &Security,
        user: &Username,
        keys: &ClientKeys,
    ) -> Result<Self> {
        let connect = async {
            let target = resolve(addr).await?;
            let local: SocketAddr = if target.is_ipv6() {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
            };
            let mut endpoint = quinn::Endpoint::client(local)?;
            let tls = quic_client_config(security, CHAT_ALPN)?;
            let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
                .map_err(|e| Error::Tls(e.to_string()))?;
            let mut config = quinn::ClientConfig::new(Arc::new(crypto));
            let mut transport = quinn::TransportConfig::default();
            transport.keep_alive_interval(Some(KEEP_ALIVE));
            config.transport_config(Arc::new(transport));
            endpoint.set_default_client_config(config);
            let host = server_host(addr);
            let connection = endpoint
                .connect(target, &host)
                .map_err(|e| Error::Tls(format!("cannot connect to {addr}: {e}")))?
                .await
                .map_err(|e| Error::Tls(format!("chat handshake with {addr} failed: {e}")))?;
            let leaf = connection
                .peer_identity()
                .and_then(|id| {
                    id.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                        .ok()
                })
                .and_then(|chain| chain.first().map(|c| c.to_vec()))
                .ok_or_else(|| Error::Tls("the server sent no certificate".into()))?;
            // The pin, before a single byte of ours crosses.
            let binding = check_peer(addr, &leaf, security)?;
            let (send, recv) = connection.open_bi().await.map_err(quic_error)?;
            Ok::<_, Error>((endpoint, connection, tokio::io::join(recv, send), binding))
        };
        let (endpoint, connection, stream, binding) =
            tokio::time::timeout(CONNECT_TIMEOUT, connect)
                .await
                .map_err(|_| Error::Timeout)??;
        let mut client = Client::handshake(stream).await?;
        client.bind_to(binding);
        client.login_with_keys(user, keys).await?;
        let requests = client.into_connection();
        Ok(ChatClient {
            endpoint,
            connection,
            requests,
            events: None,
            delivered: 0,
            user: user.clone(),
        })
    }

    /// Who is logged in.
    pub fn user(&self) -> &Username {
        &self.user
    }

    /// The highest message id handed out so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Starts where an earlier connection left off: messages up to `id` are not handed out
    /// again (for a reconnect after a lost connection).
    pub fn resume_after(&mut self, id: u64) {
        self.delivered = self.delivered.max(id);
    }

    async fn ask(&mut self, request: &ChatRequest) -> Result<ChatReply> {
        self.requests.write(request).await?;
        let reply = tokio::time::timeout(REPLY_TIMEOUT, self.requests.read::<ChatReply>())
            .await
            .map_err(|_| Error::Timeout)??
            .ok_or(Error::ConnectionClosed)?;
        match reply {
            ChatReply::Error { code, message } => Err(Error::Chat { code, message }),
            reply => Ok(reply),
        }
    }

    async fn ask_done(&mut self, request: &ChatRequest) -> Result<()> {
        match self.ask(request).await? {
            ChatReply::Done => Ok(()),
            _ => Err(Error::UnexpectedReply("expected done")),
        }
    }

    /// Asks `name` to be friends, or accepts their request.
    ///
    /// # Errors
    /// [`Error::Chat`] for a refusal; connection errors.
    pub async fn add(&mut self, name: &str) -> Result<()> {
        self.ask_done(&ChatRequest::Add { name: name.into() }).await
    }

    /// Ends a friendship, withdraws or declines a request.
    ///
    /// # Errors
    /// As [`ChatClient::add`].
    pub async fn del(&mut self, name: &str) -> Result<()> {
        self.ask_done(&ChatRequest::Del { name: name.into() }).await
    }

    /// Friends and requests, with presence.
    ///
    /// # Errors
    /// As [`ChatClient::add`].
    pub async fn friends(&mut self) -> Result<Vec<Friend>> {
        match self.ask(&ChatRequest::Friends).await? {
            ChatReply::Friends { friends } => Ok(friends),
            _ => Err(Error::UnexpectedReply("expected the friends list")),
        }
    }

    /// Sends `text` to a friend; returns once the server has stored it: its id and time.
    ///
    /// # Errors
    /// As [`ChatClient::add`].
    pub async fn send(&mut self, to: &str, text: &str) -> Result<(u64, i64)> {
        self.send_with_nonce(to, text, rand::random()).await
    }

    /// [`ChatClient::send`] with the caller's nonce: a resend with the same one (after a lost
    /// reply) is stored once.
    ///
    /// # Errors
    /// As [`ChatClient::add`].
    pub async fn send_with_nonce(
        &mut self,
        to: &str,
        text: &str,
        nonce: u64,
    ) -> Result<(u64, i64)> {
        let request = ChatRequest::Send {
            to: to.into(),
            text: text.into(),
            nonce,
        };
        match self.ask(&request).await? {
            ChatReply::Stored { id, at } => Ok((id, at)),
            _ => Err(Error::UnexpectedReply("expected the message stored")),
        }
    }

    /// Tells the server every message up to `up_to` was taken in.
    ///
    /// # Errors
    /// As [`ChatClient::add`].
    pub async fn ack(&mut self, up_to: u64) -> Result<()> {
        self.ask_done(&ChatRequest::Ack { up_to }).await
    }

    /// The last `limit` messages with `with`, oldest first.
    ///
    /// # Errors
    /// As [`ChatClient::add`].
    pub async fn history(&mut self, with: &str, limit: u32) -> Result<Vec<ChatMessage>> {
        match self
            .ask(&ChatRequest::History {
                with: with.into(),
                limit,
            })
            .await?
        {
            ChatReply::History { messages } => Ok(messages),
            _ => Err(Error::UnexpectedReply("expected history")),
        }
    }

    /// Sets (or with `None` clears) the colour friends see our name in.
    ///
    /// # Errors
    /// As [`ChatClient::add`].
    pub async fn set_color(&mut self, color: Option<&str>) -> Result<()> {
        self.ask_done(&ChatRequest::Color {
            color: color.map(str::to_owned),
        })
        .await
    }

    /// The next event from the server, waiting for it; a message already handed out
    /// (redelivered after a reconnect) is skipped. `None` when the server closed the stream.
    ///
    /// # Errors
    /// Connection errors.
    pub async fn next_event(&mut self) -> Result<Option<ChatEvent>> {
        loop {
            let events = match &mut self.events {
                Some(events) => events,
                None => {
                    let stream = self.connection.accept_uni().await.map_err(quic_error)?;
                    self.events
                        .insert(Connection::new(tokio::io::join(stream, tokio::io::sink())))
                }
            };
            let Some(event) = events.read::<ChatEvent>().await? else {
                return Ok(None);
            };
            if let ChatEvent::Message(message) = &event {
                if message.id <= self.delivered {
                    continue;
                }
                self.delivered = message.id;
            }
            return Ok(Some(event));
        }
    }

    /// Closes the connection, telling the server.
    pub async fn close(self) {
        self.connection.close(quinn::VarInt::from_u32(0), b"bye");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}

/// The first address `addr` (`host:port`) resolves to.
async fn resolve(addr: &str) -> Result<SocketAddr> {
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!("cannot resolve {addr}: {e}"),
            ))
        })?
        .next()
        .ok_or_else(|| Error::Io(std::io::Error::other(format!("{addr} has no address"))))
}

/// The host part of `host:port` (`[::1]:2121` too), as a TLS server name.
fn server_host(addr: &str) -> String {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned()
}

fn quic_error(err: quinn::ConnectionError) -> Error {
    match err {
        quinn::ConnectionError::ApplicationClosed(_)
        | quinn::ConnectionError::ConnectionClosed(_)
        | quinn::ConnectionError::LocallyClosed
        | quinn::ConnectionError::Reset => Error::ConnectionClosed,
        quinn::ConnectionError::TimedOut => Error::Timeout,
        other => Error::Io(std::io::Error::other(other)),
    }
}
