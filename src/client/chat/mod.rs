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
use super::tls::{KnownHosts, Security, UnknownServer, check_peer, host_of, quic_client_config};
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
    /// Messages posted whose replies are not read yet ([`ChatClient::post`]).
    posted: usize,
    /// The next message's nonce: a random start, then one more per message. Unique per
    /// sender all the same, and the server's index of them grows at a few places instead of
    /// a random one per message (one page written per message otherwise).
    next_nonce: u64,
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
        let (endpoint, connection, binding) = connect_quic(addr, security).await?;
        let (send, recv) = connection.open_bi().await.map_err(Error::from)?;
        let stream = tokio::io::join(recv, send);
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
            posted: 0,
            next_nonce: rand::random(),
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
        if self.posted > 0 {
            return Err(Error::Usage(format!(
                "{} posted messages wait for their replies: read them (ChatClient::stored) first",
                self.posted
            )));
        }
        self.requests.write(request).await?;
        self.reply().await
    }

    /// The next reply on the request stream.
    async fn reply(&mut self) -> Result<ChatReply> {
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

    /// Blocks `name`: what there is between us ends, and their requests are dropped.
    ///
    /// # Errors
    /// As [`ChatClient::add`].
    pub async fn block(&mut self, name: &str) -> Result<()> {
        self.ask_done(&ChatRequest::Block { name: name.into() })
            .await
    }

    /// Stops blocking `name`.
    ///
    /// # Errors
    /// As [`ChatClient::add`].
    pub async fn unblock(&mut self, name: &str) -> Result<()> {
        self.ask_done(&ChatRequest::Unblock { name: name.into() })
            .await
    }

    /// The names we block.
    ///
    /// # Errors
    /// As [`ChatClient::add`].
    pub async fn blocked(&mut self) -> Result<Vec<String>> {
        match self.ask(&ChatRequest::Blocked).await? {
            ChatReply::Blocked { names } => Ok(names),
            _ => Err(Error::UnexpectedReply("expected the names blocked")),
        }
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
        let nonce = self.nonce();
        self.send_with_nonce(to, text, nonce).await
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

    /// Sends `text` to a friend without waiting for the server to store it: several can be
    /// in flight at once (the server keeps their order). Read each one's outcome, in the
    /// order posted, with [`ChatClient::stored`]; other requests wait until all are read.
    ///
    /// # Errors
    /// Connection errors.
    pub async fn post(&mut self, to: &str, text: &str) -> Result<()> {
        let request = ChatRequest::Send {
            to: to.into(),
            text: text.into(),
            nonce: self.nonce(),
        };
        self.requests.write(&request).await?;
        self.posted += 1;
        Ok(())
    }

    /// A fresh nonce for a message.
    fn nonce(&mut self) -> u64 {
        let nonce = self.next_nonce;
        self.next_nonce = nonce.wrapping_add(1);
        nonce
    }

    /// Messages posted whose outcome is not read yet.
    pub fn in_flight(&self) -> usize {
        self.posted
    }

    /// The outcome of the oldest posted message: its id and time once stored.
    ///
    /// # Errors
    /// Nothing posted ([`Error::Usage`]); [`Error::Chat`] for a refusal; connection errors.
    pub async fn stored(&mut self) -> Result<(u64, i64)> {
        if self.posted == 0 {
            return Err(Error::Usage("no posted message waits for its reply".into()));
        }
        let reply = self.reply().await;
        // Read (or failed to be: then the connection is unusable anyway).
        self.posted -= 1;
        match reply? {
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

    /// The colour we chose for our name (`None`: the one derived from it).
    ///
    /// # Errors
    /// As [`ChatClient::add`].
    pub async fn own_color(&mut self) -> Result<Option<String>> {
        match self.ask(&ChatRequest::OwnColor).await? {
            ChatReply::Color { color } if color.as_deref().is_none_or(is_colour) => Ok(color),
            ChatReply::Color { .. } => Err(Error::UnexpectedReply(
                "the server sent no colour a name can have",
            )),
            _ => Err(Error::UnexpectedReply("expected a colour")),
        }
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
                    let stream = self.connection.accept_uni().await.map_err(Error::from)?;
                    self.events
                        .insert(Connection::new(tokio::io::join(stream, tokio::io::sink())))
                }
            };
            let Some(event) = events.read::<ChatEvent>().await? else {
                return Ok(None);
            };
            check_event(&event, self.user.as_str())?;
            if let ChatEvent::Message(message) = &event {
                if message.id <= self.delivered {
                    continue;
                }
                self.delivered = message.id;
            }
            return Ok(Some(event));
        }
    }

    /// The messages waiting at login (until the server says it caught up), or, when there
    /// were none, the first to arrive within `wait`; at most [`INBOX_MESSAGES`] of them and
    /// [`INBOX_BYTES`] of text (the rest waits on the server for the next call). Not
    /// acknowledged yet: see [`ChatClient::ack`].
    ///
    /// # Errors
    /// A timeout waiting for the server to catch up, a message no server may send, the
    /// connection.
    pub async fn inbox(&mut self, wait: Duration) -> Result<Inbox> {
        let mut inbox = gather_waiting(async || {
            tokio::time::timeout(REPLY_TIMEOUT, self.next_event())
                .await
                .map_err(|_| Error::Timeout)?
        })
        .await?;
        if inbox.messages.is_empty() && !wait.is_zero() {
            let deadline = tokio::time::Instant::now() + wait;
            while let Ok(event) = tokio::time::timeout_at(deadline, self.next_event()).await {
                match event? {
                    Some(ChatEvent::Message(message)) => {
                        inbox.messages.push(message);
                        break;
                    }
                    Some(_) => {}
                    None => return Err(Error::ConnectionClosed),
                }
            }
        }
        Ok(inbox)
    }

    /// Closes the connection, telling the server.
    pub async fn close(self) {
        self.connection.close(quinn::VarInt::from_u32(0), b"bye");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}

/// Messages one [`ChatClient::inbox`] takes in at most...
pub const INBOX_MESSAGES: usize = 10_000;
/// ...and bytes of their text: a server cannot make the client hold more.
pub const INBOX_BYTES: usize = 16 << 20;

/// What [`ChatClient::inbox`] took in.
#[derive(Debug, Default)]
pub struct Inbox {
    /// Oldest first.
    pub messages: Vec<ChatMessage>,
    /// More were waiting than one call takes: they stay on the server for the next.
    pub more: bool,
}

/// Takes in the messages `next` yields up to `CaughtUp`, within [`INBOX_MESSAGES`] and
/// [`INBOX_BYTES`] (the last may pass the bytes by one message): there it stops, whatever
/// else the server would send.
async fn gather_waiting(mut next: impl AsyncFnMut() -> Result<Option<ChatEvent>>) -> Result<Inbox> {
    let mut inbox = Inbox::default();
    let mut bytes = 0usize;
    loop {
        // Checked before reading on: a message read is one the caller shows (and marks
        // delivered), never one dropped here.
        if inbox.messages.len() >= INBOX_MESSAGES || bytes >= INBOX_BYTES {
            inbox.more = true;
            return Ok(inbox);
        }
        match next().await? {
            Some(ChatEvent::Message(message)) => {
                bytes = bytes.saturating_add(message.text.len());
                inbox.messages.push(message);
            }
            Some(ChatEvent::CaughtUp) => return Ok(inbox),
            Some(_) => {}
            None => return Err(Error::ConnectionClosed),
        }
    }
}

/// Refuses an event no honest server sends to `me`: a message's text empty or over
/// [`MAX_TEXT_BYTES`](crate::chat::MAX_TEXT_BYTES), a name that is no user's, a colour
/// no name can have, or someone else's message as one of ours.
fn check_event(event: &ChatEvent, me: &str) -> Result<()> {
    if let ChatEvent::Sent(message) = event
        && message.from != me
    {
        return Err(Error::UnexpectedReply(
            "the server sent someone else's message as one of ours",
        ));
    }
    let names: &[&str] = match event {
        ChatEvent::Message(message) | ChatEvent::Sent(message) => {
            let len = message.text.len();
            if len == 0 || len > crate::chat::MAX_TEXT_BYTES {
                return Err(Error::UnexpectedReply(
                    "the server sent a message of no text or over 4 KiB",
                ));
            }
            &[&message.from, &message.to]
        }
        ChatEvent::Presence { name, .. } | ChatEvent::Friendship { name, .. } => &[name],
        ChatEvent::FriendRequest { from } => &[from],
        ChatEvent::CaughtUp => &[],
        ChatEvent::Color { name, color } => {
            if color.as_deref().is_some_and(|c| !is_colour(c)) {
                return Err(Error::UnexpectedReply(
                    "the server sent no colour a name can have",
                ));
            }
            &[name]
        }
    };
    if names.iter().any(|name| Username::parse(name).is_err()) {
        return Err(Error::UnexpectedReply(
            "the server sent an event naming no possible user",
        ));
    }
    Ok(())
}

/// A QUIC connection to the chat at `addr` with its certificate checked as `security` says
/// (before anything of ours is sent), and the channel-binding data of that certificate: for
/// [`ChatClient::connect`], and for tools and tests that speak the protocol by hand.
///
/// # Errors
/// As [`ChatClient::connect`], but for the login.
pub async fn connect_quic(
    addr: &str,
    security: &Security,
) -> Result<(quinn::Endpoint, quinn::Connection, Vec<u8>)> {
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
        let connection = endpoint
            .connect(target, host_of(addr))
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
        Ok::<_, Error>((endpoint, connection, binding))
    };
    tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| Error::Timeout)?
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

/// Whether `colour` is one a name can have ([`crate::chat::COLOURS`]).
fn is_colour(colour: &str) -> bool {
    crate::chat::COLOURS.contains(&colour)
}

/// The ANSI colour code of a colour name from [`crate::chat::COLOURS`].
fn ansi(colour: &str) -> Option<&'static str> {
    Some(match colour {
        "red" => "31",
        "green" => "32",
        "yellow" => "33",
        "blue" => "34",
        "magenta" => "35",
        "cyan" => "36",
        "bright-red" => "91",
        "bright-green" => "92",
        "bright-yellow" => "93",
        "bright-blue" => "94",
        "bright-magenta" => "95",
        "bright-cyan" => "96",
        _ => return None,
    })
}

/// The colour a name is shown in without a choice of its own: the same for the same name,
/// on every machine (FNV-1a of its bytes).
pub fn derived_colour(name: &str) -> &'static str {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let colours = crate::chat::COLOURS;
    colours[(hash % colours.len() as u64) as usize]
}

/// How a peer's name and text are shown: neutralised always (no control character or
/// escape sequence of theirs reaches the terminal), coloured when `colour` is on.
#[derive(Debug, Clone, Copy)]
pub struct Painter {
    /// Colours on (a terminal, and no `NO_COLOR`).
    pub colour: bool,
}

impl Painter {
    /// Colours when `is_terminal` and `NO_COLOR` is unset or empty.
    pub fn for_output(is_terminal: bool) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Painter {
            colour: is_terminal && !no_color,
        }
    }

    /// `name`, neutralised, in its colour (`chosen`, or derived from the name); our own
    /// name (`own`) in bold instead, so our lines look different.
    pub fn name(&self, name: &str, chosen: Option<&str>, own: bool) -> String {
        let shown = crate::sanitize::for_terminal(name);
        if !self.colour {
            return shown;
        }
        if own {
            return format!("\x1b[1m{shown}\x1b[0m");
        }
        let code = chosen.and_then(ansi).or_else(|| ansi(derived_colour(name)));
        match code {
            Some(code) => format!("\x1b[{code}m{shown}\x1b[0m"),
            None => shown,
        }
    }

    /// A message as one line: local time, sender, text (neutralised).
    pub fn message(&self, message: &ChatMessage, chosen: Option<&str>, own: bool) -> String {
        let when = chrono::DateTime::from_timestamp_millis(message.at)
            .map(|t| {
                t.with_timezone(&chrono::Local)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string()
            })
            .unwrap_or_else(|| "?".into());
        format!(
            "{when}  {}: {}",
            self.name(&message.from, chosen, own),
            crate::sanitize::for_terminal(&message.text)
        )
    }
}

/// The chat's lines: times as `12:01`, the date only when the day changes, long lines
/// wrapped under the text, several lines of a message each under the first, `/me`.
impl Painter {
    /// A message as the chat shows it: `when` (its time), sender, text; `/me waves` as
    /// `* alice waves`. Text past `width` columns, and each further line of a message,
    /// is indented under where the text began.
    pub fn chat_line(
        &self,
        message: &ChatMessage,
        chosen: Option<&str>,
        own: bool,
        when: &str,
        width: Option<usize>,
    ) -> String {
        let name = self.name(&message.from, chosen, own);
        let (prefix, text) = match message.text.strip_prefix("/me ") {
            Some(action) => (format!("{when}  * {name} "), action),
            None => (format!("{when}  {name}: "), message.text.as_str()),
        };
        let indent = " ".repeat(textwrap::core::display_width(&prefix));
        let lines = text
            .split('\n')
            .map(|line| crate::sanitize::for_terminal(line.strip_suffix('\r').unwrap_or(line)));
        // Too narrow to indent usefully: the terminal wraps it.
        let width = width.filter(|w| *w >= indent.len() + 20);
        let mut shown = String::new();
        for (index, line) in lines.enumerate() {
            let first = if index == 0 { prefix.as_str() } else { &indent };
            if index > 0 {
                shown.push('\n');
            }
            match width {
                Some(width) => {
                    let options = textwrap::Options::new(width)
                        .initial_indent(first)
                        .subsequent_indent(&indent)
                        .break_words(true);
                    shown.push_str(&textwrap::fill(&line, options));
                }
                None => {
                    shown.push_str(first);
                    shown.push_str(&line);
                }
            }
        }
        shown
    }
}

/// Message times as a chat shows them: `12:01`, and before the first message of a day
/// other than the one shown last (today, at first) a line naming that day, as irssi does.
#[derive(Debug, Clone)]
pub struct Timeline {
    day: chrono::NaiveDate,
}

impl Timeline {
    /// Starting today, local time.
    pub fn today() -> Self {
        Timeline {
            day: chrono::Local::now().date_naive(),
        }
    }

    /// For a message stored at `at` (ms since 1970): the line naming its day if the day
    /// changed since the last message, and its time, local.
    pub fn stamp(&mut self, at: i64) -> (Option<String>, String) {
        let Some(when) = chrono::DateTime::from_timestamp_millis(at) else {
            return (None, "??:??".into());
        };
        let when = when.with_timezone(&chrono::Local);
        let day = when.date_naive();
        let day_line = (day != self.day).then(|| {
            self.day = day;
            format!("-- {} --", day.format("%A %-d %B %Y"))
        });
        (day_line, when.format("%H:%M").to_string())
    }
}

/// The highest message id `ftpc` has shown per login, kept beside the credentials so a
/// message shown but not acknowledged (the connection broke) is not shown twice.
#[derive(Debug, Clone)]
pub struct DeliveredMarks {
    path: std::path::PathBuf,
}

impl DeliveredMarks {
    /// The marks file beside `credentials`.
    pub fn beside(credentials: &super::CredentialStore) -> Self {
        let dir = credentials.path().parent().map_or_else(
            || std::path::PathBuf::from("."),
            std::path::Path::to_path_buf,
        );
        DeliveredMarks {
            path: dir.join("chat-delivered"),
        }
    }

    fn load(&self) -> Vec<(String, String, u64)> {
        let Ok(text) = std::fs::read_to_string(&self.path) else {
            return Vec::new();
        };
        text.lines()
            .filter_map(|line| {
                let mut parts = line.split_whitespace();
                let (server, user, id) = (parts.next()?, parts.next()?, parts.next()?);
                Some((server.to_owned(), user.to_owned(), id.parse().ok()?))
            })
            .collect()
    }

    /// The mark for a login (0 if none).
    pub fn get(&self, server: &str, user: &str) -> u64 {
        self.load()
            .into_iter()
            .find(|(s, u, _)| s == server && u == user)
            .map_or(0, |(_, _, id)| id)
    }

    /// Raises the mark for a login, atomically (temporary file, then rename; mode 0600).
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn set(&self, server: &str, user: &str, id: u64) -> Result<()> {
        let mut marks = self.load();
        marks.retain(|(s, u, _)| !(s == server && u == user));
        marks.push((server.to_owned(), user.to_owned(), id));
        let dir = self.path.parent().unwrap_or(std::path::Path::new("."));
        let mut file =
            tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::local(&self.path, e))?;
        for (server, user, id) in &marks {
            std::io::Write::write_all(&mut file, format!("{server} {user} {id}\n").as_bytes())
                .map_err(|e| Error::local(&self.path, e))?;
        }
        file.as_file()
            .sync_all()
            .map_err(|e| Error::local(&self.path, e))?;
        file.persist(&self.path)
            .map_err(|e| Error::local(&self.path, e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
