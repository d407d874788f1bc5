//! Timeouts with paused time: sessions run over in-memory pipes, so the clock only moves
//! when every task waits, and nothing really sleeps.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{finish_upload, send_chunk, start_upload};
use ftprep::Error;
use ftprep::auth::Verifier;
use ftprep::client::Client;
use ftprep::commands::{ErrorCode, Hello, MAX_CHUNK, Response};
use ftprep::server::users::{self, UserRecord};
use ftprep::server::{Config, Limits, Server, TlsSetup};
use ftprep::username::Username;
use ftprep::wire::Connection;
use tokio::io::DuplexStream;
use tokio::time::Instant;

const PEER: &str = "192.0.2.10:40000";

/// A server in a temporary directory with alice (password "pw"), and a way to open
/// in-memory connections to it.
struct Pipe {
    server: std::sync::Arc<Server>,
    dir: tempfile::TempDir,
}

impl Pipe {
    fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    fn with_limits(limits: Limits) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            root: dir.path().join("root").into(),
            users: dir.path().join("users.db").into(),
            state_dir: dir.path().join("state"),
            tls: TlsSetup::Plaintext,
            audit_log: None,
            limits,
        };
        let alice = Username::parse("alice").unwrap();
        users::file::add_user(
            &dir.path().join("users.db"),
            UserRecord::new(alice, Verifier::generate("pw", 4096)),
        )
        .unwrap();
        // With users.db nothing in opening waits.
        let server = futures_util::FutureExt::now_or_never(Server::open(&config))
            .expect("opened without waiting")
            .unwrap();
        Pipe {
            server: std::sync::Arc::new(server),
            dir,
        }
    }

    fn open(&self) -> DuplexStream {
        let (client, server_side) = tokio::io::duplex(1 << 20);
        let server = std::sync::Arc::clone(&self.server);
        let peer: SocketAddr = PEER.parse().unwrap();
        tokio::spawn(async move { server.serve_stream(server_side, peer).await });
        client
    }

    async fn login(&self) -> Client<DuplexStream> {
        let mut client = Client::handshake(self.open()).await.unwrap();
        client
            .login_with_password(&Username::parse("alice").unwrap(), "pw")
            .await
            .unwrap();
        client
    }
}

#[tokio::test(start_paused = true)]
async fn an_unauthenticated_connection_gets_exactly_the_login_grace_time() {
    let pipe = Pipe::new();
    let mut conn = Connection::new(pipe.open());
    let _: Hello = conn.expect().await.unwrap();
    let offered: Response = conn.expect().await.unwrap();
    assert!(
        matches!(offered, Response::Mechanisms { .. }),
        "{offered:?}"
    );
    conn.write(&Hello::ours()).await.unwrap();
    let started = Instant::now();
    let reply: Response = conn.expect().await.unwrap();
    assert!(
        matches!(
            reply,
            Response::Error {
                code: ErrorCode::Timeout,
                ..
            }
        ),
        "{reply:?}"
    );
    assert_eq!(started.elapsed().as_secs(), 30);
    assert!(
        conn.read::<Response>().await.unwrap().is_none(),
        "still open"
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_session_is_closed_after_fifteen_minutes_and_not_before() {
    let pipe = Pipe::new();
    let mut alice = pipe.login().await;
    tokio::time::advance(Duration::from_secs(14 * 60 + 59)).await;
    alice.mkdir("still-here", false).await.unwrap();
    // Fifteen quiet minutes later, the session is gone.
    tokio::time::sleep(Duration::from_secs(15 * 60 + 1)).await;
    let err = alice.mkdir("too-late", false).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Remote {
                code: ErrorCode::Timeout,
                ..
            }
        ),
        "{err}"
    );
    assert!(!pipe.dir.path().join("root/alice/too-late").exists());
}

#[tokio::test(start_paused = true)]
async fn a_slow_transfer_is_not_idle() {
    let pipe = Pipe::new();
    let mut alice = pipe.login().await;
    let data = vec![42u8; 12 * MAX_CHUNK];
    start_upload(&mut alice, "slow", data.len() as u64, false).await;
    // Twenty minutes in all, but never the two-minute stall timeout without a chunk.
    for chunk in data.chunks(MAX_CHUNK) {
        tokio::time::advance(Duration::from_secs(100)).await;
        send_chunk(&mut alice, chunk).await;
    }
    let reply = finish_upload(&mut alice, &data).await.unwrap();
    assert_eq!(reply, Response::Ok);
    assert_eq!(
        std::fs::read(pipe.dir.path().join("root/alice/slow")).unwrap(),
        data
    );
}

#[tokio::test(start_paused = true)]
async fn ten_failures_lock_out_for_fifteen_minutes_with_growing_delays() {
    let pipe = Pipe::new();
    let alice = Username::parse("alice").unwrap();
    let mut delays = Vec::new();
    for _ in 0..10 {
        let mut client = Client::handshake(pipe.open()).await.unwrap();
        let started = Instant::now();
        let err = client
            .login_with_password(&alice, "wrong")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Scram(_)), "{err}");
        delays.push(started.elapsed().as_millis());
    }
    // No delay at first, then doubling from 250 ms up to the 8 s cap.
    assert_eq!(delays[..7], [0, 250, 500, 1000, 2000, 4000, 8000]);
    assert_eq!(delays[9], 8000);
    // Locked: the right password fails exactly like a wrong one.
    let mut client = Client::handshake(pipe.open()).await.unwrap();
    let err = client.login_with_password(&alice, "pw").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "authentication failed: wrong username or password"
    );
    // Fifteen minutes later the lockout is over.
    tokio::time::advance(Duration::from_secs(15 * 60)).await;
    pipe.login().await;
}

/// Issue 11.6: uploads that stop sending, or send only empty frames, end after the stall
/// timeout (two minutes), not after the idle timeout, and free their place.
#[tokio::test(start_paused = true)]
async fn an_upload_that_makes_no_progress_is_ended() {
    let pipe = Pipe::new();
    let mut alice = pipe.login().await;
    start_upload(&mut alice, "stalled", 10, false).await;
    send_chunk(&mut alice, b"01234").await;
    // Empty data frames are no progress: 130 s of them, past the 120 s stall timeout.
    for _ in 0..13 {
        tokio::time::advance(Duration::from_secs(10)).await;
        if alice
            .send_raw(&ftprep::commands::Request::PutData {
                data: bytes::Bytes::new(),
            })
            .await
            .is_err()
        {
            break;
        }
    }
    let reply = alice.raw_request(&ftprep::commands::Request::Usage).await;
    assert!(
        matches!(
            reply,
            Err(Error::Remote {
                code: ErrorCode::Timeout,
                ..
            }) | Err(Error::ConnectionClosed)
        ),
        "{reply:?}"
    );
}

/// Issue 11.6: `Get`s whose replies were never read stayed open past the idle timeout,
/// each holding a thread. A reply nobody reads ends the connection after the stall timeout.
/// (Real time, one second: a thread blocked on a full pipe keeps paused time from moving.)
#[tokio::test]
async fn a_download_nobody_reads_is_ended() {
    let limits = Limits {
        stall_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let pipe = Pipe::with_limits(limits);
    let big = vec![7u8; 16 * MAX_CHUNK];
    std::fs::create_dir_all(pipe.dir.path().join("root/alice")).unwrap();
    std::fs::write(pipe.dir.path().join("root/alice/big"), &big).unwrap();
    // A pipe far smaller than the file: the server's writes block once it is full.
    let (client_side, server_side) = tokio::io::duplex(64 * 1024);
    let server = std::sync::Arc::clone(&pipe.server);
    let peer: SocketAddr = PEER.parse().unwrap();
    let session = tokio::spawn(async move { server.serve_stream(server_side, peer).await });
    let mut alice = Client::handshake(client_side).await.unwrap();
    alice
        .login_with_password(&Username::parse("alice").unwrap(), "pw")
        .await
        .unwrap();
    alice
        .send_raw(&ftprep::commands::Request::Get {
            path: "big".into(),
            offset: 0,
        })
        .await
        .unwrap();
    let started = std::time::Instant::now();
    // The client reads nothing; the session ends by itself, long before the idle timeout.
    tokio::time::timeout(Duration::from_secs(60), session)
        .await
        .expect("the session ended")
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
}
