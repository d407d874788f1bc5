//! The chat through a real server over QUIC on 127.0.0.1: friends, presence, messages,
//! offline delivery, exactly-once across a dropped connection and a restart, the pin.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{add_user, fast_limits, next_chat_event as next};
use ftprep::Error;
use ftprep::auth::ClientKeys;
use ftprep::chat::{ChatErrorCode, ChatEvent, FriendState};
use ftprep::client::chat::ChatClient;
use ftprep::client::{Client, KnownHosts, Security, UnknownServer};
use ftprep::server::chat::ChatSettings;
use ftprep::server::chat::store::{CHAT_DB, SqliteChatStore};
use ftprep::server::{Config, Server, TlsSetup};
use ftprep::username::Username;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A server's file service (for `ftpc login`'s keys) and its chat, in a temporary directory.
struct Lab {
    dir: TempDir,
    config: Config,
    tcp: SocketAddr,
    chat: SocketAddr,
    /// The certificate's fingerprint, as `ftpd` shows it.
    fingerprint: String,
    stop: CancellationToken,
    chat_task: Option<JoinHandle<()>>,
}

impl Lab {
    async fn start(users: &[(&str, &str)]) -> Lab {
        Self::start_with(users, fast_limits()).await
    }

    async fn start_with(users: &[(&str, &str)], limits: ftprep::server::Limits) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            root: dir.path().join("root").into(),
            users: dir.path().join("users.db").into(),
            state_dir: dir.path().join("state"),
            tls: TlsSetup::SelfSigned,
            audit_log: None,
            limits,
        };
        for (name, password) in users {
            add_user(&dir.path().join("users.db"), name, password);
        }
        let server = Server::open(&config).await.unwrap();
        let fingerprint = server.identity().unwrap().fingerprint.clone();
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let chat = socket.local_addr().unwrap();
        let (stop, chat_task) = start_chat(&server, &config, socket);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = listener.local_addr().unwrap();
        tokio::spawn(server.run(listener, std::future::pending()));
        Lab {
            dir,
            config,
            tcp,
            chat,
            fingerprint,
            stop,
            chat_task: Some(chat_task),
        }
    }

    fn security(&self) -> Security {
        Security::Pinned {
            known_hosts: KnownHosts::at(self.dir.path().join("known_hosts")),
            unknown: UnknownServer::AcceptNew,
        }
    }

    /// The keys `ftpc login` would cache.
    async fn keys(&self, name: &str, password: &str) -> ClientKeys {
        let mut client = Client::connect(&self.tcp.to_string(), &self.security())
            .await
            .unwrap();
        client
            .login_with_password(&Username::parse(name).unwrap(), password)
            .await
            .unwrap()
    }

    async fn chat(&self, name: &str, password: &str) -> ChatClient {
        let keys = self.keys(name, password).await;
        ChatClient::connect(
            &self.chat.to_string(),
            &self.security(),
            &Username::parse(name).unwrap(),
            &keys,
        )
        .await
        .unwrap()
    }

    /// Stops the chat service and starts it again on the same port and database.
    async fn restart_chat(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.chat_task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the chat stopped")
                .unwrap();
        }
        let server = Server::open(&self.config).await.unwrap();
        let socket = std::net::UdpSocket::bind(self.chat).unwrap();
        let (stop, task) = start_chat(&server, &self.config, socket);
        self.stop = stop;
        self.chat_task = Some(task);
    }
}

fn start_chat(
    server: &Server,
    config: &Config,
    socket: std::net::UdpSocket,
) -> (CancellationToken, JoinHandle<()>) {
    let identity = server.identity().unwrap().clone();
    let store = SqliteChatStore::open(&config.state_dir.join(CHAT_DB)).unwrap();
    let service = server
        .chat(socket, &identity, Arc::new(store), ChatSettings::default())
        .unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(service.run(stop.clone()));
    (stop, task)
}

/// Events until a message arrives; its text and id.
async fn next_message(client: &mut ChatClient) -> (String, u64, String) {
    loop {
        if let ChatEvent::Message(message) = next(client).await {
            return (message.text, message.id, message.from);
        }
    }
}

async fn befriend(a: &mut ChatClient, b: &mut ChatClient) {
    let b_name = b.user().to_string();
    let a_name = a.user().to_string();
    a.add(&b_name).await.unwrap();
    assert_eq!(
        next(b).await,
        ChatEvent::FriendRequest {
            from: a_name.clone()
        }
    );
    b.add(&a_name).await.unwrap();
    loop {
        if let ChatEvent::Friendship { name, state } = next(a).await {
            assert_eq!((name, state), (b_name.clone(), Some(FriendState::Friends)));
            break;
        }
    }
}

fn refused(err: Error) -> ChatErrorCode {
    match err {
        Error::Chat { code, .. } => code,
        other => panic!("expected a chat refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn friends_message_each_other_and_see_presence() {
    let lab = Lab::start(&[("alice", "pw-a"), ("bob", "pw-b")]).await;
    let mut alice = lab.chat("alice", "pw-a").await;
    let mut bob = lab.chat("bob", "pw-b").await;
    alice.add("bob").await.unwrap();
    assert_eq!(
        next(&mut bob).await,
        ChatEvent::FriendRequest {
            from: "alice".into()
        }
    );
    let listed = bob.friends().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].name.as_str(), listed[0].state, listed[0].online),
        ("alice", FriendState::AskedBy, false),
        "no presence before the friendship"
    );
    // Not friends yet: no messages.
    assert_eq!(
        refused(alice.send("bob", "too soon").await.unwrap_err()),
        ChatErrorCode::NotFriends
    );
    // A colour is seen by friends only: not while the request is pending.
    bob.set_color(Some("cyan")).await.unwrap();
    assert_eq!(alice.friends().await.unwrap()[0].color, None);
    bob.add("alice").await.unwrap();
    let listed = alice.friends().await.unwrap();
    assert_eq!(
        (
            listed[0].state,
            listed[0].online,
            listed[0].color.as_deref()
        ),
        (FriendState::Friends, true, Some("cyan"))
    );
    let (id, _) = alice.send("bob", "hello bob").await.unwrap();
    let (text, got, from) = next_message(&mut bob).await;
    assert_eq!(
        (text.as_str(), got, from.as_str()),
        ("hello bob", id, "alice")
    );
    bob.ack(got).await.unwrap();
    bob.send("alice", "hi alice").await.unwrap();
    assert_eq!(next_message(&mut alice).await.0, "hi alice");
    // Bob goes: alice is told; he comes back: told again.
    bob.close().await;
    loop {
        if let ChatEvent::Presence { name, online } = next(&mut alice).await {
            assert_eq!((name.as_str(), online), ("bob", false));
            break;
        }
    }
    let _bob = lab.chat("bob", "pw-b").await;
    loop {
        if let ChatEvent::Presence { name, online } = next(&mut alice).await {
            assert_eq!((name.as_str(), online), ("bob", true));
            break;
        }
    }
    let history = alice.history("bob", 10).await.unwrap();
    let texts: Vec<_> = history.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["hello bob", "hi alice"]);
}

#[tokio::test]
async fn strangers_get_nothing_and_del_ends_it_both_ways() {
    let lab = Lab::start(&[("alice", "pw-a"), ("bob", "pw-b"), ("carol", "pw-c")]).await;
    let mut alice = lab.chat("alice", "pw-a").await;
    let mut bob = lab.chat("bob", "pw-b").await;
    let mut carol = lab.chat("carol", "pw-c").await;
    befriend(&mut alice, &mut bob).await;
    // A name that does not exist gets the same answer as a real one.
    carol.add("nobody").await.unwrap();
    carol.add("alice").await.unwrap();
    let listed = carol.friends().await.unwrap();
    let states: Vec<_> = listed.iter().map(|f| (f.name.as_str(), f.state)).collect();
    assert_eq!(
        states,
        [
            ("alice", FriendState::Asked),
            ("nobody", FriendState::Asked)
        ]
    );
    assert_eq!(
        refused(carol.send("alice", "psst").await.unwrap_err()),
        ChatErrorCode::NotFriends
    );
    assert_eq!(
        refused(carol.send("nobody", "psst").await.unwrap_err()),
        ChatErrorCode::NotFriends
    );
    assert_eq!(
        refused(carol.add("carol").await.unwrap_err()),
        ChatErrorCode::Invalid
    );
    assert_eq!(
        refused(alice.send("bob", &"x".repeat(4097)).await.unwrap_err()),
        ChatErrorCode::Invalid
    );
    // Alice declines carol; bob ends it with alice: neither can message the other.
    alice.del("carol").await.unwrap();
    assert!(
        carol
            .friends()
            .await
            .unwrap()
            .iter()
            .all(|f| f.name != "alice")
    );
    bob.del("alice").await.unwrap();
    loop {
        if let ChatEvent::Friendship { name, state } = next(&mut alice).await
            && name == "bob"
        {
            assert_eq!(state, None);
            break;
        }
    }
    for (from, to) in [(&mut alice, "bob"), (&mut bob, "alice")] {
        assert_eq!(
            refused(from.send(to, "still there?").await.unwrap_err()),
            ChatErrorCode::NotFriends
        );
    }
}

#[tokio::test]
async fn offline_messages_arrive_in_order_exactly_once_across_a_dropped_connection() {
    let lab = Lab::start(&[("alice", "pw-a"), ("bob", "pw-b")]).await;
    let mut alice = lab.chat("alice", "pw-a").await;
    let mut bob = lab.chat("bob", "pw-b").await;
    befriend(&mut alice, &mut bob).await;
    bob.close().await;
    let mut ids = Vec::new();
    for text in ["one", "two", "three"] {
        ids.push(alice.send("bob", text).await.unwrap().0);
    }
    // A resend of a message whose reply was lost is stored once.
    let again = alice.send_with_nonce("bob", "four", 42).await.unwrap();
    assert_eq!(
        alice.send_with_nonce("bob", "four", 42).await.unwrap(),
        again
    );

    let mut bob = lab.chat("bob", "pw-b").await;
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(next_message(&mut bob).await);
    }
    let texts: Vec<_> = got.iter().map(|(t, _, _)| t.as_str()).collect();
    assert_eq!(
        texts,
        ["one", "two", "three", "four"],
        "in order, once each"
    );
    // Bob took in two and acknowledged only the first, then lost the connection.
    bob.ack(got[0].1).await.unwrap();
    let delivered_before = got[1].1;
    drop(bob);
    // The server delivers again what was not acknowledged; the client hands out only
    // what it had not handed out before.
    let mut bob = lab.chat("bob", "pw-b").await;
    bob.resume_after(delivered_before);
    let (text, _, _) = next_message(&mut bob).await;
    assert_eq!(text, "three");
    assert_eq!(next_message(&mut bob).await.0, "four");
    alice.send("bob", "five").await.unwrap();
    assert_eq!(next_message(&mut bob).await.0, "five");
}

#[tokio::test]
async fn posted_messages_are_pipelined_and_keep_their_order() {
    let lab = Lab::start(&[("alice", "pw-a"), ("bob", "pw-b"), ("carol", "pw-c")]).await;
    let mut alice = lab.chat("alice", "pw-a").await;
    let mut bob = lab.chat("bob", "pw-b").await;
    befriend(&mut alice, &mut bob).await;
    // More in flight than the server takes at once (it stops reading until some are
    // answered; within the rate limit's burst), one refused in the middle (carol is no
    // friend).
    for i in 0..45 {
        let to = if i == 20 { "carol" } else { "bob" };
        alice.post(to, &format!("m{i}")).await.unwrap();
    }
    assert_eq!(alice.in_flight(), 45);
    // Another request waits until every posted message's outcome is read.
    assert!(matches!(alice.friends().await, Err(Error::Usage(_))));
    let mut ids = Vec::new();
    for i in 0..45 {
        match alice.stored().await {
            Ok((id, _)) => ids.push(id),
            Err(err) => {
                assert_eq!(i, 20);
                assert_eq!(refused(err), ChatErrorCode::NotFriends);
            }
        }
    }
    assert_eq!(ids.len(), 44);
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids in the order posted"
    );
    assert!(matches!(alice.stored().await, Err(Error::Usage(_))));
    assert_eq!(alice.friends().await.unwrap().len(), 1);
    for (i, id) in (0..45).filter(|i| *i != 20).zip(&ids) {
        let (text, got, from) = next_message(&mut bob).await;
        assert_eq!(
            (text, got, from),
            (format!("m{i}"), *id, "alice".to_string())
        );
    }
}

#[tokio::test]
async fn a_stored_message_survives_a_restart_of_the_server() {
    let mut lab = Lab::start(&[("alice", "pw-a"), ("bob", "pw-b")]).await;
    let mut alice = lab.chat("alice", "pw-a").await;
    let mut bob = lab.chat("bob", "pw-b").await;
    befriend(&mut alice, &mut bob).await;
    bob.close().await;
    alice.send("bob", "kept").await.unwrap();
    alice.close().await;
    lab.restart_chat().await;
    let mut bob = lab.chat("bob", "pw-b").await;
    assert_eq!(next_message(&mut bob).await.0, "kept");
    assert!(bob.friends().await.unwrap()[0].state == FriendState::Friends);
}

#[tokio::test]
async fn a_changed_certificate_is_refused_before_anything_is_sent() {
    let lab = Lab::start(&[("alice", "pw-a")]).await;
    let keys = lab.keys("alice", "pw-a").await;
    let hosts = KnownHosts::at(lab.dir.path().join("other_known_hosts"));
    hosts
        .add(
            &lab.chat.to_string(),
            "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )
        .unwrap();
    let security = Security::Pinned {
        known_hosts: hosts,
        unknown: UnknownServer::AcceptNew,
    };
    let err = ChatClient::connect(
        &lab.chat.to_string(),
        &security,
        &Username::parse("alice").unwrap(),
        &keys,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::CertificateChanged { .. }), "{err:?}");
}

/// Bad input on the chat's stream, as on the file protocol: an oversized frame and a wrong
/// hello each get a typed error and a closed connection; a second stream is refused; a
/// wrong password gets the same failure as ever; everyone else is served throughout.
#[tokio::test]
async fn bad_frames_are_answered_and_end_only_their_connection() {
    use ftprep::commands::{ErrorCode, Hello, Response};
    use ftprep::wire::Connection;
    let lab = Lab::start(&[("alice", "pw-a"), ("bob", "pw-b")]).await;
    let mut alice = lab.chat("alice", "pw-a").await;
    let security = lab.security();
    let addr = lab.chat.to_string();

    // A length prefix far over the limit.
    /// The server's answer to `first` (raw bytes) on a fresh connection's stream.
    async fn answer_to(addr: &str, security: &Security, first: &[u8]) -> Response {
        let (_endpoint, connection, _) = ftprep::client::chat::connect_quic(addr, security)
            .await
            .unwrap();
        let (mut send, recv) = connection.open_bi().await.unwrap();
        send.write_all(first).await.unwrap();
        let mut conn = Connection::new(tokio::io::join(recv, send));
        let _ours: Hello = conn.expect().await.unwrap();
        let offered: Response = conn.expect().await.unwrap();
        assert!(
            matches!(offered, Response::Mechanisms { .. }),
            "{offered:?}"
        );
        conn.expect().await.unwrap()
    }
    let reply = answer_to(&addr, &security, &u32::MAX.to_be_bytes()).await;
    assert!(
        matches!(
            reply,
            Response::Error {
                code: ErrorCode::FrameTooLarge,
                ..
            }
        ),
        "{reply:?}"
    );
    // Issue 27.6: before the login, a few KiB is the most (was 1 MiB).
    let just_over = (ftprep::wire::LOGIN_FRAME_LEN as u32 + 1).to_be_bytes();
    let reply = answer_to(&addr, &security, &just_over).await;
    assert!(
        matches!(
            &reply,
            Response::Error {
                code: ErrorCode::FrameTooLarge,
                message,
            } if message.contains("4096")
        ),
        "{reply:?}"
    );

    // Another protocol version.
    let hello = ftprep::wire::encode(&Hello {
        magic: *b"FTPR",
        version: 999,
    })
    .unwrap();
    let mut framed = (hello.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(&hello);
    let reply = answer_to(&addr, &security, &framed).await;
    assert!(
        matches!(
            reply,
            Response::Error {
                code: ErrorCode::VersionMismatch,
                ..
            }
        ),
        "{reply:?}"
    );
    // Only one stream per connection: a second one is never granted.
    let (_endpoint, connection, _) = ftprep::client::chat::connect_quic(&addr, &security)
        .await
        .unwrap();
    let (mut first, _recv) = connection.open_bi().await.unwrap();
    first.write_all(&framed).await.unwrap();
    let second = tokio::time::timeout(Duration::from_millis(500), connection.open_bi()).await;
    assert!(second.is_err(), "a second stream was opened");

    // A wrong password: the login's usual failure.
    let keys = lab.keys("bob", "pw-b").await;
    let mut wrong = keys.clone();
    wrong.client_key =
        ftprep::auth::ClientKeys::derive("not-it", &keys.salt, keys.iterations).client_key;
    let err = ChatClient::connect(&addr, &security, &Username::parse("bob").unwrap(), &wrong)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::LoginExpired { .. }), "{err:?}");

    // Alice, connected all along, is still served.
    assert!(alice.friends().await.unwrap().is_empty());
}

/// A flood from one user is slowed and told so; the friend it floods still talks freely,
/// and every message that was acknowledged as stored arrives.
#[tokio::test]
async fn a_flood_is_slowed_and_told_so_and_others_are_unaffected() {
    let lab = Lab::start(&[("alice", "pw-a"), ("bob", "pw-b")]).await;
    let mut alice = lab.chat("alice", "pw-a").await;
    let mut bob = lab.chat("bob", "pw-b").await;
    befriend(&mut alice, &mut bob).await;
    let (mut stored, mut slowed) = (0, 0);
    for i in 0..200 {
        match alice.send("bob", &format!("flood {i}")).await {
            Ok(_) => stored += 1,
            Err(Error::Chat {
                code: ChatErrorCode::RateLimited,
                message,
            }) => {
                assert!(message.contains("slow down"), "{message}");
                slowed += 1;
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    assert!(
        stored >= 40 && slowed > 0,
        "stored {stored}, slowed {slowed}"
    );
    // Bob's own budget is untouched.
    for i in 0..10 {
        bob.send("alice", &format!("reply {i}")).await.unwrap();
    }
    let mut received = 0;
    while received < stored {
        next_message(&mut bob).await;
        received += 1;
    }
}

/// The server's connection limit holds for the chat too: past it, a connection is told the
/// server is busy once its handshake is done (and the ones inside it are served).
#[tokio::test]
async fn connections_over_the_limit_are_refused() {
    let mut limits = fast_limits();
    limits.max_connections = 1;
    let lab = Lab::start_with(&[("alice", "pw-a")], limits).await;
    let mut alice = lab.chat("alice", "pw-a").await;
    let keys = lab.keys("alice", "pw-a").await;
    let err = ChatClient::connect(
        &lab.chat.to_string(),
        &lab.security(),
        &Username::parse("alice").unwrap(),
        &keys,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Remote {
                code: ftprep::commands::ErrorCode::Busy,
                ..
            }
        ),
        "{err}"
    );
    assert!(alice.friends().await.unwrap().is_empty());
}

/// A QUIC client of the chat's ALPN for making raw Initials (it trusts no certificate:
/// it never gets that far).
fn raw_quic_client() -> quinn_proto::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut crypto = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    crypto.alpn_protocols = vec![ftprep::chat::CHAT_ALPN.to_vec()];
    let crypto = quinn_proto::crypto::rustls::QuicClientConfig::try_from(crypto).unwrap();
    quinn_proto::ClientConfig::new(Arc::new(crypto))
}

/// Issue 27.1: QUIC Initials whose source is never going to answer (it may be forged) took
/// the chat's places and the file service's places of that address before the handshake,
/// and were answered with more than they carried. Every one now gets a Retry (smaller than
/// the Initial) and takes nothing: the address's TCP connections and chat logins go on.
#[tokio::test(flavor = "multi_thread")]
async fn initials_never_answered_get_a_retry_and_take_no_place() {
    let lab = Lab::start(&[("alice", "pw-a")]).await;
    let attacker = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    attacker
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let client = raw_quic_client();
    let mut endpoint = quinn_proto::Endpoint::new(Arc::default(), None, false, None);
    // Over three times the limit per address (64), each a new connection never continued.
    let initials = 200;
    let (mut sent, mut received) = (0usize, 0usize);
    let mut reply = [0u8; 2048];
    for _ in 0..initials {
        let now = std::time::Instant::now();
        let (_, mut connection) = endpoint
            .connect(now, client.clone(), lab.chat, "localhost")
            .unwrap();
        let mut datagram = Vec::new();
        let transmit = connection.poll_transmit(now, 1, &mut datagram).unwrap();
        attacker
            .send_to(&datagram[..transmit.size], lab.chat)
            .unwrap();
        sent += transmit.size;
        let (n, _) = attacker.recv_from(&mut reply).unwrap();
        // Long header, fixed bit, packet type 3: a Retry, not the server's handshake.
        assert_eq!(
            reply[0] & 0xf0,
            0xf0,
            "not a Retry: first byte {:#04x}",
            reply[0]
        );
        assert!(
            n < transmit.size,
            "a reply of {n} bytes to {}",
            transmit.size
        );
        received += n;
    }
    assert!(received * 5 < sent, "{received} bytes answered {sent}");
    // Nothing else came: no handshake was started for any of them.
    attacker
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(attacker.recv_from(&mut reply).is_err());
    // The address's places are all there: a file-service login (was `Busy`) and a chat
    // login (the real client answers the Retry) both succeed.
    let mut alice = lab.chat("alice", "pw-a").await;
    alice.friends().await.unwrap();
}

/// Issue 27.1: the chat counted its connections in the file service's places per address,
/// so chat connections could lock an address out of its files. They are counted apart.
#[tokio::test(flavor = "multi_thread")]
async fn chat_connections_take_no_place_of_the_file_service() {
    let mut limits = fast_limits();
    limits.max_connections_per_ip = 3;
    let lab = Lab::start_with(&[("alice", "pw-a")], limits).await;
    let keys = lab.keys("alice", "pw-a").await;
    let alice = Username::parse("alice").unwrap();
    let (addr, security) = (lab.chat.to_string(), lab.security());
    let connect = || ChatClient::connect(&addr, &security, &alice, &keys);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect().await.unwrap());
    }
    // The chat's own limit holds...
    assert!(
        connect().await.is_err(),
        "a fourth chat connection from one address"
    );
    // ...and the file service still has all its places for this address.
    let mut files = Vec::new();
    for _ in 0..3 {
        files.push(
            Client::connect(&lab.tcp.to_string(), &lab.security())
                .await
                .unwrap(),
        );
    }
    for client in &mut files {
        client
            .login_with_keys(&alice, &keys)
            .await
            .expect("a file-service login beside three chat connections");
    }
    drop(held);
}

#[tokio::test]
async fn the_chat_store_in_sqlite_keeps_every_rule() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteChatStore::open(&dir.path().join(CHAT_DB))
        .unwrap()
        .trimming_every(1);
    common::chat_store::every_rule(&store).await;
}

/// Issue 27.15: a malformed frame after the login was answered, but the connection was
/// closed at once and the answer lost (only `CONNECTION_CLOSE` arrived). The answer now
/// reaches the client; and the chat speaks QUIC version 1 alone (draft-29 completed a
/// handshake): a draft gets a Version Negotiation offering only version 1. (One thread:
/// the server's task runs on, up to the close, before its connection sends anything.)
#[tokio::test]
async fn a_bad_frame_after_login_is_answered_and_drafts_are_not_spoken() {
    use ftprep::chat::ChatReply;
    use tokio::io::AsyncWriteExt;
    let lab = Lab::start(&[("alice", "pw-a")]).await;
    let keys = lab.keys("alice", "pw-a").await;
    let (_endpoint, connection, binding) =
        ftprep::client::chat::connect_quic(&lab.chat.to_string(), &lab.security())
            .await
            .unwrap();
    let (send, recv) = connection.open_bi().await.unwrap();
    let mut client = Client::handshake(tokio::io::join(recv, send))
        .await
        .unwrap();
    client.bind_to(binding);
    let alice = Username::parse("alice").unwrap();
    client.login_with_keys(&alice, &keys).await.unwrap();
    let mut conn = client.into_connection();
    // Five bytes that are no chat request.
    conn.get_mut()
        .write_all(&[0, 0, 0, 5, 0xde, 0xad, 0xbe, 0xef, 0xff])
        .await
        .unwrap();
    conn.get_mut().flush().await.unwrap();
    let reply: ChatReply = conn.expect().await.expect("the answer arrived");
    assert!(
        matches!(
            reply,
            ChatReply::Error {
                code: ChatErrorCode::UnexpectedRequest,
                ..
            }
        ),
        "{reply:?}"
    );

    // An Initial of draft-29: answered with a Version Negotiation listing version 1 only.
    let attacker = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut draft = raw_quic_client();
    draft.version(0xff00_001d);
    let mut endpoint = quinn_proto::Endpoint::new(Arc::default(), None, false, None);
    let now = std::time::Instant::now();
    let (_, mut attempt) = endpoint.connect(now, draft, lab.chat, "localhost").unwrap();
    let mut datagram = Vec::new();
    let transmit = attempt.poll_transmit(now, 1, &mut datagram).unwrap();
    attacker
        .send_to(&datagram[..transmit.size], lab.chat)
        .await
        .unwrap();
    let mut reply = [0u8; 2048];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), attacker.recv_from(&mut reply))
        .await
        .expect("an answer")
        .unwrap();
    // Long header with version 0: a Version Negotiation; then DCID and SCID, each after its
    // length byte, then the versions offered.
    assert_eq!(reply[0] & 0x80, 0x80);
    assert_eq!(reply[1..5], [0, 0, 0, 0], "not a Version Negotiation");
    let dcid_len = reply[5] as usize;
    let scid_len = reply[6 + dcid_len] as usize;
    let versions = &reply[7 + dcid_len + scid_len..n];
    let offered: Vec<u32> = versions
        .chunks(4)
        .map(|v| u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
        .filter(|v| v & 0x0f0f_0f0f != 0x0a0a_0a0a) // greasing, RFC 9000 §15
        .collect();
    assert_eq!(offered, [1]);
}

/// Issue 27.9: 20 add/del cycles put 40 events on the victim's screen. A request repeated
/// lately is told once, and so is its end; the next event she sees is her friend's.
#[tokio::test]
async fn friend_request_spam_reaches_the_screen_once() {
    let lab = Lab::start(&[("alice", "pw-a"), ("bob", "pw-b"), ("mallory", "pw-m")]).await;
    let mut alice = lab.chat("alice", "pw-a").await;
    let mut bob = lab.chat("bob", "pw-b").await;
    alice.add("bob").await.unwrap();
    bob.add("alice").await.unwrap();
    let mut mallory = lab.chat("mallory", "pw-m").await;
    for _ in 0..20 {
        mallory.add("bob").await.unwrap();
        mallory.del("bob").await.unwrap();
    }
    alice.send("bob", "after the spam").await.unwrap();
    let mut from_mallory = 0;
    loop {
        match next(&mut bob).await {
            ChatEvent::Message(message) => {
                assert_eq!(message.text, "after the spam");
                break;
            }
            ChatEvent::FriendRequest { from } | ChatEvent::Friendship { name: from, .. }
                if from == "mallory" =>
            {
                from_mallory += 1;
            }
            _ => {}
        }
    }
    assert_eq!(from_mallory, 2, "one request and its withdrawal");
}

/// Issue 27.9: a user can block a name; its requests are then dropped silently (its
/// sender cannot tell), until the block is lifted.
#[tokio::test]
async fn a_blocked_name_is_dropped_silently() {
    let lab = Lab::start(&[("alice", "pw-a"), ("bob", "pw-b"), ("mallory", "pw-m")]).await;
    let mut alice = lab.chat("alice", "pw-a").await;
    let mut bob = lab.chat("bob", "pw-b").await;
    let mut mallory = lab.chat("mallory", "pw-m").await;
    alice.add("bob").await.unwrap();
    bob.add("alice").await.unwrap();
    mallory.add("bob").await.unwrap();
    bob.block("mallory").await.unwrap();
    assert_eq!(bob.blocked().await.unwrap(), ["mallory"]);
    // Her requests are answered as ever, and go nowhere.
    mallory.add("bob").await.unwrap();
    assert_eq!(
        refused(mallory.send("bob", "hi").await.unwrap_err()),
        ChatErrorCode::NotFriends
    );
    let names: Vec<String> = bob
        .friends()
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, ["alice"]);
    assert_eq!(
        refused(bob.add("mallory").await.unwrap_err()),
        ChatErrorCode::Invalid,
        "unblock first"
    );
    // Unblocked, her next request reaches him; of the one made while blocked he heard
    // nothing: two requests told in all, the one before the block and this one.
    bob.unblock("mallory").await.unwrap();
    mallory.add("bob").await.unwrap();
    let mut requests = 0;
    while requests < 2 {
        if let ChatEvent::FriendRequest { from } = next(&mut bob).await
            && from == "mallory"
        {
            requests += 1;
        }
    }
    alice.send("bob", "marker").await.unwrap();
    loop {
        match next(&mut bob).await {
            ChatEvent::Message(message) => {
                assert_eq!(message.text, "marker");
                break;
            }
            ChatEvent::FriendRequest { from } if from == "mallory" => {
                panic!("a third request was told")
            }
            _ => {}
        }
    }
}

/// Issue 27.16: a client written from docs/PROTOCOL.md alone, in Python on aioquic
/// (tests/independent/chat_client.py), logs in with SCRAM-SHA-256-PLUS, takes what waited
/// for it, sends, resends, hears a reply, reads the history, and gets the answers the
/// document promises to a frame that is no request and to an oversized one before login.
/// `scripts/test.sh` installs aioquic into target/test-python and names it in
/// FTPREP_TEST_PYTHON.
#[tokio::test]
async fn a_client_written_from_the_protocol_document_alone_chats() {
    let lab = Lab::start(&[("alice", "pw-a"), ("bob", "pw-b")]).await;
    let mut bob = lab.chat("bob", "pw-b").await;
    {
        let mut alice = lab.chat("alice", "pw-a").await;
        befriend(&mut alice, &mut bob).await;
        alice.close().await;
    }
    bob.send("alice", "waited for you").await.unwrap();

    let python = std::env::var("FTPREP_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/independent/chat_client.py"
    );
    let has_aioquic = std::process::Command::new(&python)
        .args(["-c", "import aioquic"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_aioquic,
        "{python} cannot import aioquic: run scripts/test.sh, which installs it"
    );
    let client = tokio::process::Command::new(&python)
        .args([script, &lab.chat.to_string(), &lab.fingerprint])
        .args(["alice", "pw-a", "bob"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python} (scripts/test.sh sets it up): {e}"));

    // Its message arrives once, resend and all; bob answers it.
    let (text, _, from) = next_message(&mut bob).await;
    assert_eq!(
        (text.as_str(), from.as_str()),
        ("written from the document", "alice")
    );
    bob.send("alice", "read you").await.unwrap();

    let output = tokio::time::timeout(Duration::from_secs(90), client.wait_with_output())
        .await
        .expect("the independent client finished")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the independent client failed: {stderr}"
    );
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let expected = serde_json::json!({
        "waiting": [["bob", "waited for you"]],
        "friends": [{"name": "bob", "state": "Friends", "online": true, "color": null}],
        "stored": "Stored",
        "resend_same_id": true,
        "reply": "read you",
        "history": [
            ["bob", "waited for you"],
            ["alice", "written from the document"],
            ["bob", "read you"]
        ],
        "bad_frame": "UnexpectedRequest",
        "closed": [0, "bye"],
        "oversized_before_login": "FrameTooLarge"
    });
    assert_eq!(seen, expected);

    // The resend was not delivered again: the next message bob gets is a later one.
    let _ = lab
        .chat("alice", "pw-a")
        .await
        .send("bob", "marker")
        .await
        .unwrap();
    let (text, _, _) = next_message(&mut bob).await;
    assert_eq!(text, "marker");
}

/// Issue 28: a colour change reached friends only at their next login; friends connected
/// now are told at once, and a name's colour from a hostile server is checked.
#[tokio::test]
async fn a_colour_change_reaches_connected_friends() {
    let lab = Lab::start(&[("alice", "pw-a"), ("bob", "pw-b")]).await;
    let mut alice = lab.chat("alice", "pw-a").await;
    let mut bob = lab.chat("bob", "pw-b").await;
    befriend(&mut alice, &mut bob).await;
    alice.set_color(Some("bright-green")).await.unwrap();
    loop {
        if let ChatEvent::Color { name, color } = next(&mut bob).await {
            assert_eq!(
                (name.as_str(), color.as_deref()),
                ("alice", Some("bright-green"))
            );
            break;
        }
    }
    alice.set_color(None).await.unwrap();
    loop {
        if let ChatEvent::Color { name, color } = next(&mut bob).await {
            assert_eq!((name.as_str(), color), ("alice", None));
            break;
        }
    }
}
