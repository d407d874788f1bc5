//! The wire protocol against a real server: hello and versions, frame limits, garbage, and
//! timeouts. A misbehaving peer is answered and dropped while other clients keep working.

mod common;

use std::time::Duration;

use common::TestServer;
use ftprep::Error;
use ftprep::client::{Client, Security};
use ftprep::commands::{ErrorCode, Hello, MAGIC, PROTOCOL_VERSION, Response};
use ftprep::server::Limits;
use ftprep::wire::{Connection, MAX_FRAME_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A raw connection that has read the server's hello and the mechanisms it offers, byte by
/// byte.
async fn raw(server: &TestServer) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let hello: Hello = ftprep::wire::decode(&raw_frame(&mut stream).await).unwrap();
    assert_eq!(hello, Hello::ours());
    let offered: Response = ftprep::wire::decode(&raw_frame(&mut stream).await).unwrap();
    let names = vec![ftprep::auth::MECHANISM.to_owned()];
    assert_eq!(offered, Response::Mechanisms { names });
    stream
}

/// One frame's payload, read by hand.
async fn raw_frame(stream: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.unwrap();
    let mut payload = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut payload).await.unwrap();
    payload
}

/// Reads frames until the server closes; returns the error replies it sent.
async fn replies_until_close(stream: TcpStream) -> Vec<Response> {
    let mut conn = Connection::new(stream);
    let mut replies = Vec::new();
    while let Ok(Some(reply)) = conn.read::<Response>().await {
        replies.push(reply);
    }
    replies
}

fn assert_error(replies: &[Response], code: ErrorCode) -> String {
    match replies {
        [Response::Error { code: c, message }] if *c == code => message.clone(),
        other => panic!("expected one {code:?} error, got {other:?}"),
    }
}

#[tokio::test]
async fn oversized_frame_is_refused_and_other_clients_keep_working() {
    let server = TestServer::start(&[("alice", "pw")]).await;
    let mut alice = server.login("alice", "pw").await;

    let mut evil = raw(&server).await;
    let announced = (MAX_FRAME_LEN as u32 + 1).to_be_bytes();
    evil.write_all(&announced).await.unwrap();
    let replies = replies_until_close(evil).await;
    let message = assert_error(&replies, ErrorCode::FrameTooLarge);
    assert!(
        message.contains(&format!("{}", MAX_FRAME_LEN + 1)),
        "{message}"
    );

    alice.mkdir("after-oversized", false).await.unwrap();
    assert!(server.root.join("alice/after-oversized").is_dir());
}

/// Issue 27.6: before a login, a frame could be 1 MiB, so each anonymous connection made
/// the server hold about that much. Until the login succeeds a frame is a few KiB at most
/// (refused as soon as its length arrives); after it, the full size.
#[tokio::test]
async fn before_the_login_a_frame_is_a_few_kib_at_most() {
    use ftprep::wire::LOGIN_FRAME_LEN;
    let server = TestServer::start(&[("alice", "pw")]).await;
    let mut evil = raw(&server).await;
    let announced = (LOGIN_FRAME_LEN as u32 + 1).to_be_bytes();
    evil.write_all(&announced).await.unwrap();
    // Nothing more is sent: the refusal comes from the length alone.
    let replies = replies_until_close(evil).await;
    let message = assert_error(&replies, ErrorCode::FrameTooLarge);
    assert!(message.contains(&LOGIN_FRAME_LEN.to_string()), "{message}");
    // After the login, frames of the full size go through (a whole 512 KiB upload).
    let mut alice = server.login("alice", "pw").await;
    let data = vec![7u8; 512 * 1024];
    let local = server.dir.path().join("big");
    std::fs::write(&local, &data).unwrap();
    alice
        .put_file(
            &local,
            "big",
            Default::default(),
            &ftprep::client::NoProgress,
        )
        .await
        .unwrap();
    assert_eq!(std::fs::read(server.root.join("alice/big")).unwrap(), data);
}

#[tokio::test]
async fn garbage_is_refused_and_other_clients_keep_working() {
    let server = TestServer::start(&[("alice", "pw")]).await;
    let mut alice = server.login("alice", "pw").await;

    // A well-formed frame whose payload is not a hello.
    let mut evil = raw(&server).await;
    evil.write_all(&[0, 0, 0, 5, 0xde, 0xad, 0xbe, 0xef, 0xff])
        .await
        .unwrap();
    let replies = replies_until_close(evil).await;
    assert_error(&replies, ErrorCode::BadFrame);

    // Bytes that are not frames at all (an HTTP request).
    let mut http = raw(&server).await;
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let replies = replies_until_close(http).await;
    assert!(
        matches!(
            replies.as_slice(),
            [Response::Error {
                code: ErrorCode::FrameTooLarge | ErrorCode::BadFrame,
                ..
            }]
        ),
        "{replies:?}"
    );

    // A right hello, then a request that does not decode.
    let mut evil = raw(&server).await;
    let hello = ftprep::wire::encode(&Hello::ours()).unwrap();
    evil.write_all(&(hello.len() as u32).to_be_bytes())
        .await
        .unwrap();
    evil.write_all(&hello).await.unwrap();
    evil.write_all(&[0, 0, 0, 4, 0x63, 0, 0, 0]).await.unwrap();
    let replies = replies_until_close(evil).await;
    assert_error(&replies, ErrorCode::BadFrame);

    // A peer that vanishes in the middle of a frame.
    let mut half = raw(&server).await;
    half.write_all(&[0, 0, 0, 100, 1, 2, 3]).await.unwrap();
    drop(half);

    alice.mkdir("after-garbage", false).await.unwrap();
    assert_eq!(alice.list("").await.unwrap().len(), 1);
}

#[tokio::test]
async fn protocol_version_mismatch_names_both_versions() {
    let server = TestServer::start(&[]).await;
    // Server side: a client from the future.
    let mut future = raw(&server).await;
    let hello = ftprep::wire::encode(&Hello {
        magic: MAGIC,
        version: 99,
    })
    .unwrap();
    future
        .write_all(&(hello.len() as u32).to_be_bytes())
        .await
        .unwrap();
    future.write_all(&hello).await.unwrap();
    let replies = replies_until_close(future).await;
    let message = assert_error(&replies, ErrorCode::VersionMismatch);
    assert!(
        message.contains("client speaks version 99")
            && message.contains(&format!("server speaks version {PROTOCOL_VERSION}")),
        "{message}"
    );

    // Client side: a server from the future.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let mut conn = Connection::new(socket);
        conn.write(&Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION + 1,
        })
        .await
        .unwrap();
        let _ = conn.read::<Hello>().await;
    });
    let err = Client::connect(&addr.to_string(), &Security::Plaintext)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::VersionMismatch {
                client: PROTOCOL_VERSION,
                server
            } if server == PROTOCOL_VERSION + 1
        ),
        "{err}"
    );
    let future = PROTOCOL_VERSION + 1;
    assert!(
        err.to_string()
            .contains(&format!("server speaks version {future}")),
        "{err}"
    );
    fake.await.unwrap();
}

#[tokio::test]
async fn client_refuses_a_peer_that_is_not_ftprep() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        // An SSH banner is not a frame of ours: its length prefix is absurd.
        socket.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await.unwrap();
        let mut sink = [0u8; 64];
        let _ = socket.read(&mut sink).await;
    });
    let err = Client::connect(&addr.to_string(), &Security::Plaintext)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::FrameTooLarge { .. }), "{err}");
    fake.await.unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let mut conn = Connection::new(socket);
        conn.write(&Hello {
            magic: *b"NOPE",
            version: PROTOCOL_VERSION,
        })
        .await
        .unwrap();
        let _ = conn.read::<Hello>().await;
    });
    let err = Client::connect(&addr.to_string(), &Security::Plaintext)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadMagic), "{err}");
    fake.await.unwrap();
}

#[tokio::test]
async fn unauthenticated_connections_are_closed_after_the_login_timeout() {
    let limits = Limits {
        login_timeout: Duration::from_millis(300),
        ..common::fast_limits()
    };
    let server = TestServer::start_with(&[("alice", "pw")], limits).await;
    let silent = raw(&server).await;
    let replies = tokio::time::timeout(Duration::from_secs(10), replies_until_close(silent))
        .await
        .expect("the server kept a silent connection open");
    assert_error(&replies, ErrorCode::Timeout);
    // Logged-in sessions are under the idle timeout instead, not the login one.
    let mut alice = server.login("alice", "pw").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    alice.mkdir("still-open", false).await.unwrap();
}

#[tokio::test]
async fn idle_sessions_are_closed_after_the_idle_timeout() {
    let limits = Limits {
        idle_timeout: Duration::from_millis(300),
        ..common::fast_limits()
    };
    let server = TestServer::start_with(&[("alice", "pw")], limits).await;
    let mut alice = server.login("alice", "pw").await;
    alice.mkdir("before", false).await.unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;
    let err = alice.mkdir("after", false).await.unwrap_err();
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
    assert!(!server.root.join("alice/after").exists());
}

#[tokio::test]
async fn shutdown_waits_for_sessions_and_refuses_new_ones() {
    let server = TestServer::start(&[("alice", "pw")]).await;
    let mut alice = server.login("alice", "pw").await;
    alice.mkdir("one", false).await.unwrap();
    let addr = server.addr;
    server.stop().await;
    // The session was told to stop: its next request finds the connection closed.
    assert!(alice.mkdir("two", false).await.is_err());
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn connections_over_the_limit_are_told_the_server_is_busy() {
    let limits = Limits {
        max_connections: 1,
        ..common::fast_limits()
    };
    let server = TestServer::start_with(&[("alice", "pw")], limits).await;
    let mut alice = server.login("alice", "pw").await;
    // Said right behind the hello, before any login.
    let err = server.try_connect().await.unwrap_err();
    assert_eq!(common::code_of(&err), Some(ErrorCode::Busy), "{err}");
    assert!(
        err.to_string().contains("all 1 connections in use"),
        "{err}"
    );
    alice.mkdir("still-served", false).await.unwrap();
    drop(alice);
    // Once the first session has ended, the slot is free again.
    let mut attempts = 0;
    loop {
        let login = async {
            server
                .try_connect()
                .await?
                .login_with_password(&ftprep::username::Username::parse("alice").unwrap(), "pw")
                .await
        };
        match login.await {
            Ok(_) => break,
            Err(Error::Remote {
                code: ErrorCode::Busy,
                ..
            }) if attempts < 200 => {
                attempts += 1;
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(err) => panic!("{err}"),
        }
    }
}

#[tokio::test]
async fn graceful_shutdown_lets_a_transfer_in_progress_finish() {
    use ftprep::commands::MAX_CHUNK;
    let mut server = TestServer::start(&[("alice", "pw")]).await;
    let mut idle = server.login("alice", "pw").await;
    let mut uploader = server.login("alice", "pw").await;
    let data: Vec<u8> = (0..4 * MAX_CHUNK).map(|i| (i % 253) as u8).collect();
    common::start_upload(&mut uploader, "big", data.len() as u64, false).await;
    let mut chunks = data.chunks(MAX_CHUNK);
    common::send_chunk(&mut uploader, chunks.next().unwrap()).await;

    // SIGTERM arrives in the middle of the upload.
    server.begin_shutdown();
    // New connections are refused from the moment shutdown begins...
    let mut refused = false;
    for _ in 0..1000 {
        if TcpStream::connect(server.addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(refused, "the server kept accepting after shutdown began");
    // ...and an idle session is closed without starting another request.
    assert!(idle.mkdir("too-late", false).await.is_err());
    assert!(!server.root.join("alice/too-late").exists());
    for chunk in chunks {
        common::send_chunk(&mut uploader, chunk).await;
    }
    let reply = common::finish_upload(&mut uploader, &data).await.unwrap();
    assert_eq!(reply, Response::Ok);
    assert_eq!(std::fs::read(server.root.join("alice/big")).unwrap(), data);
    // After its transfer, the session is closed too, and the server stops.
    assert!(uploader.mkdir("after", false).await.is_err());
    let addr = server.addr;
    server.stop().await;
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn shutdown_closes_sessions_that_outlast_the_grace_period() {
    let limits = Limits {
        shutdown_grace: Duration::from_millis(200),
        ..common::fast_limits()
    };
    let mut server = TestServer::start_with(&[("alice", "pw")], limits).await;
    let mut stalled = server.login("alice", "pw").await;
    common::start_upload(&mut stalled, "stalled", 1000, false).await;
    common::send_chunk(&mut stalled, &[1; 10]).await;
    server.begin_shutdown();
    // The upload never completes; the server stops anyway, after the grace period.
    let home = server.root.join("alice");
    tokio::time::timeout(Duration::from_secs(10), server.stop())
        .await
        .expect("server waited for a stalled upload forever");
    assert!(!home.join("stalled").exists());
}

/// Retries `attempt` while the server still counts a session that just ended.
async fn eventually_busy_free<F, Fut>(mut attempt: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), Error>>,
{
    for _ in 0..200 {
        match attempt().await {
            Ok(()) => return,
            Err(Error::Remote {
                code: ErrorCode::Busy,
                ..
            }) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(err) => panic!("{err}"),
        }
    }
    panic!("the slot was never released");
}

#[tokio::test]
async fn sessions_per_user_and_connections_per_address_are_limited() {
    let limits = Limits {
        max_sessions_per_user: 2,
        max_connections_per_ip: 3,
        ..common::fast_limits()
    };
    let server = TestServer::start_with(&[("alice", "pw"), ("bob", "pw")], limits).await;
    let alice = ftprep::username::Username::parse("alice").unwrap();
    let first = server.login("alice", "pw").await;
    let _second = server.login("alice", "pw").await;
    let err = server
        .connect()
        .await
        .login_with_password(&alice, "pw")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("alice already has 2 sessions open"),
        "{err}"
    );
    // 127.0.0.1 holds two connections (the two sessions): a third fits the per-address
    // limit of 3, a fourth is refused whoever wants to log in.
    let _third = server.connect().await;
    let err = server.try_connect().await.unwrap_err();
    assert!(
        err.to_string()
            .contains("your address already holds 3 connections"),
        "{err}"
    );
    drop(_third);
    drop(first);
    eventually_busy_free(|| async {
        server
            .try_connect()
            .await?
            .login_with_password(&alice, "pw")
            .await
            .map(drop)
    })
    .await;
}
