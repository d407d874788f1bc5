//! TLS and channel binding against a real server: pinning on first use, a changed
//! certificate refused before any credentials leave, a man in the middle who relays a login
//! caught by SCRAM-SHA-256-PLUS, downgrades refused on both sides, and CA verification.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::TestServer;
use ftprep::Error;
use ftprep::auth::{self, ChannelBinding, ClientFirst, ScramError};
use ftprep::client::{Client, KnownHosts, NoProgress, Security, TransferOptions, UnknownServer};
use ftprep::commands::{Hello, Request, Response};
use ftprep::server::{ServerIdentity, TlsSetup};
use ftprep::username::Username;
use ftprep::wire::Connection;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

fn alice() -> Username {
    Username::parse("alice").unwrap()
}

fn pinned(dir: &std::path::Path) -> Security {
    Security::Pinned {
        known_hosts: KnownHosts::at(dir.join("known_hosts")),
        unknown: UnknownServer::AcceptNew,
    }
}

#[tokio::test]
async fn tls_round_trip_of_login_commands_and_a_transfer() {
    let server = TestServer::start_tls(&[("alice", "pw")]).await;
    let mut client = server.login("alice", "pw").await;
    client.mkdir("over-tls", false).await.unwrap();
    let local = server.dir.path().join("data");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&local, &data).unwrap();
    client
        .put_file(
            &local,
            "over-tls/data",
            TransferOptions::default(),
            &NoProgress,
        )
        .await
        .unwrap();
    let back = server.dir.path().join("back");
    client
        .get_file(
            "over-tls/data",
            &back,
            TransferOptions::default(),
            &NoProgress,
        )
        .await
        .unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), data);

    // Over TLS the server offers only channel binding (unless told otherwise), and the
    // client pinned the certificate the server generated into its state directory.
    let offered = client.mechanisms().await.unwrap();
    assert_eq!(offered, [auth::MECHANISM_PLUS]);
    // The same list came unasked, right behind the server's hello.
    assert_eq!(client.offered(), offered);
    let identity = ServerIdentity::self_signed(&server.dir.path().join("state")).unwrap();
    let hosts = KnownHosts::at(server.dir.path().join("client/known_hosts"));
    let (_, pin) = hosts.lookup(&server.addr.to_string()).unwrap().unwrap();
    assert_eq!(pin, identity.fingerprint);
}

/// A TLS server with its own certificate that counts the application bytes it receives.
async fn counting_impostor(
    state: &std::path::Path,
) -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let identity = ServerIdentity::self_signed(state).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let received = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&received);
    let task = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(identity.config);
        if let Ok(mut tls) = acceptor.accept(socket).await {
            let mut buf = [0u8; 1024];
            while let Ok(n) = tls.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                count.fetch_add(n, Ordering::SeqCst);
            }
        }
    });
    (addr, received, task)
}

#[tokio::test]
async fn a_changed_certificate_is_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, received, impostor) = counting_impostor(&dir.path().join("impostor")).await;
    let hosts = KnownHosts::at(dir.path().join("known_hosts"));
    hosts
        .add(&addr, "SHA256:the-real-servers-fingerprint")
        .unwrap();
    let security = Security::Pinned {
        known_hosts: hosts.clone(),
        unknown: UnknownServer::AcceptNew,
    };
    let err = Client::connect(&addr, &security).await.unwrap_err();
    match &err {
        Error::CertificateChanged { line, file, .. } => {
            assert_eq!(*line, 1);
            assert_eq!(file, hosts.path());
        }
        other => panic!("expected CertificateChanged, got {other}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("has CHANGED")
            && message.contains(&format!("ftpc known-hosts remove {addr}` (line 1 of")),
        "{message}"
    );
    // Not even the hello: once the client has gone, the impostor has read no application
    // data at all.
    impostor.await.unwrap();
    assert_eq!(received.load(Ordering::SeqCst), 0);
    // And the pin was not replaced.
    assert_eq!(
        hosts.lookup(&addr).unwrap().unwrap().1,
        "SHA256:the-real-servers-fingerprint"
    );
}

#[tokio::test]
async fn a_relayed_login_fails_on_channel_binding() {
    let server = TestServer::start_tls(&[("alice", "pw")]).await;
    // The man in the middle terminates TLS with its own certificate (which the victim
    // accepted as new) and relays every frame to the real server.
    let mitm_dir = tempfile::tempdir().unwrap();
    let mitm_identity = ServerIdentity::self_signed(mitm_dir.path()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mitm_addr = listener.local_addr().unwrap().to_string();
    let upstream_security = server.security.clone();
    let real = server.addr.to_string();
    let relay = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let tls = tokio_rustls::TlsAcceptor::from(mitm_identity.config)
            .accept(socket)
            .await
            .unwrap();
        let mut upstream = Client::connect(&real, &upstream_security).await.unwrap();
        let mut victim = Connection::new(tls);
        victim.write(&Hello::ours()).await.unwrap();
        // What the real server offers, passed on.
        let names = upstream.offered().to_vec();
        victim.write(&Response::Mechanisms { names }).await.unwrap();
        let _hello: Hello = victim.expect().await.unwrap();
        let mut outcomes = Vec::new();
        while let Ok(Some(request)) = victim.read::<Request>().await {
            let reply = match upstream.raw_request(&request).await {
                Ok(reply) => reply,
                Err(_) => break,
            };
            if let Response::AuthOutcome { message } = &reply {
                outcomes.push(message.clone());
            }
            if victim.write(&reply).await.is_err() {
                break;
            }
        }
        outcomes
    });
    let victim_dir = tempfile::tempdir().unwrap();
    let mut victim = Client::connect(&mitm_addr, &pinned(victim_dir.path()))
        .await
        .unwrap();
    let err = victim
        .login_with_password(&alice(), "pw")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Scram(ScramError::ServerError(reason)) if reason == "channel-bindings-dont-match"),
        "{err}"
    );
    drop(victim);
    assert_eq!(relay.await.unwrap(), ["e=channel-bindings-dont-match"]);
}

#[tokio::test]
async fn a_server_that_hides_channel_binding_over_tls_is_refused() {
    // An impostor (or a tampered path) that offers only plain SCRAM over TLS.
    let dir = tempfile::tempdir().unwrap();
    let identity = ServerIdentity::self_signed(dir.path()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let fake = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let tls = tokio_rustls::TlsAcceptor::from(identity.config)
            .accept(socket)
            .await
            .unwrap();
        let mut conn = Connection::new(tls);
        conn.write(&Hello::ours()).await.unwrap();
        let names = vec![auth::MECHANISM.to_owned()];
        conn.write(&Response::Mechanisms { names }).await.unwrap();
        let _hello: Hello = conn.expect().await.unwrap();
        let mut requests = Vec::new();
        while let Ok(Some(request)) = conn.read::<Request>().await {
            requests.push(request);
            let names = vec![auth::MECHANISM.to_owned()];
            if conn.write(&Response::Mechanisms { names }).await.is_err() {
                break;
            }
        }
        requests
    });
    let mut client = Client::connect(&addr, &pinned(dir.path())).await.unwrap();
    let err = client
        .login_with_password(&alice(), "pw")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Downgrade), "{err}");
    drop(client);
    // Nothing of the login was sent: the client did not even need to ask which mechanisms
    // there are.
    assert_eq!(fake.await.unwrap(), []);
}

#[tokio::test]
async fn the_server_refuses_a_client_told_there_is_no_channel_binding() {
    let server = TestServer::start_tls(&[("alice", "pw")]).await;
    let mut client = server.connect().await;
    // Flag `y`: "I support binding but you do not", which over TLS means someone lied.
    let first = ClientFirst::with_binding("alice", ChannelBinding::SupportedNotUsed);
    let reply = client
        .raw_request(&Request::AuthStart {
            mechanism: first.mechanism().into(),
            message: first.message(),
        })
        .await
        .unwrap();
    assert_eq!(
        reply,
        Response::AuthOutcome {
            message: "e=server-does-support-channel-binding".into()
        }
    );
    // PLUS with the binding of another certificate is refused too (the relay case, by hand).
    let mut client = server.connect().await;
    let first = ClientFirst::with_binding("alice", ChannelBinding::TlsServerEndPoint(vec![0; 32]));
    let reply = client
        .raw_request(&Request::AuthStart {
            mechanism: first.mechanism().into(),
            message: first.message(),
        })
        .await
        .unwrap();
    let Response::AuthChallenge { message } = reply else {
        panic!("{reply:?}")
    };
    let challenge = first.receive_server_first(&message).unwrap();
    let keys = auth::ClientKeys::derive("pw", &challenge.salt, challenge.iterations);
    let (client_final, _) = challenge.respond(&keys);
    let reply = client
        .raw_request(&Request::AuthFinish {
            message: client_final,
        })
        .await
        .unwrap();
    assert_eq!(
        reply,
        Response::AuthOutcome {
            message: "e=channel-bindings-dont-match".into()
        }
    );
    // The right client, with the right password, still gets in.
    server.login("alice", "pw").await;
}

#[tokio::test]
async fn plaintext_and_tls_do_not_mix_silently() {
    let tls_server = TestServer::start_tls(&[("alice", "pw")]).await;
    let err = Client::connect(&tls_server.addr.to_string(), &Security::Plaintext)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("speaks TLS"), "{err}");

    let plain_server = TestServer::start(&[("alice", "pw")]).await;
    let dir = tempfile::tempdir().unwrap();
    let err = Client::connect(&plain_server.addr.to_string(), &pinned(dir.path()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err}");
    assert!(err.to_string().contains("does not speak TLS"), "{err}");
    // Plaintext on loopback still works when asked for.
    plain_server
        .login("alice", "pw")
        .await
        .mkdir("plain", false)
        .await
        .unwrap();
}

/// A TLS server (user alice) with a certificate for `names` from a test CA, its files in
/// `dir`: the server and the CA's certificate, PEM.
async fn server_of_a_ca(dir: &std::path::Path, names: &[&str]) -> (TestServer, String) {
    let (ca_pem, leaf, leaf_key) = common::ca_signed_leaf(names);
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, leaf).unwrap();
    std::fs::write(&key, leaf_key).unwrap();
    let tls = TlsSetup::Files { cert, key };
    let server = TestServer::start_full(&[("alice", "pw")], Default::default(), tls).await;
    (server, ca_pem)
}

#[tokio::test]
async fn a_certificate_from_a_ca_is_verified_instead_of_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let (server, ca_pem) = server_of_a_ca(dir.path(), &["localhost", "127.0.0.1"]).await;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let mut client = Client::connect(&server.addr.to_string(), &Security::Ca(ca.clone()))
        .await
        .unwrap();
    client.login_with_password(&alice(), "pw").await.unwrap();

    // Another CA does not vouch for this server.
    let other_ca = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, common::unrelated_ca()).unwrap();
    let err = Client::connect(&server.addr.to_string(), &Security::Ca(other_ca))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err}");
}

/// Issue 11.16: over TLS the server also took SCRAM-SHA-256 without channel binding (flag
/// `n`), which is what a man in the middle's downgrade looks like. Refused by default;
/// `--allow-unbound-logins` accepts it for clients that cannot do -PLUS.
#[tokio::test]
async fn logins_without_channel_binding_over_tls_are_refused_unless_allowed() {
    let unbound_login = |server: &TestServer| {
        let (addr, security) = (server.addr.to_string(), server.security.clone());
        async move {
            let mut client = Client::connect(&addr, &security).await.unwrap();
            let first = ClientFirst::with_binding("alice", ChannelBinding::None);
            client
                .raw_request(&Request::AuthStart {
                    mechanism: first.mechanism().into(),
                    message: first.message(),
                })
                .await
                .unwrap()
        }
    };
    let strict = TestServer::start_tls(&[("alice", "pw")]).await;
    assert_eq!(
        unbound_login(&strict).await,
        Response::AuthOutcome {
            message: "e=server-does-support-channel-binding".into()
        }
    );
    let mut limits = common::fast_limits();
    limits.require_channel_binding = false;
    let lenient = TestServer::start_full(&[("alice", "pw")], limits, TlsSetup::SelfSigned).await;
    assert!(
        matches!(
            unbound_login(&lenient).await,
            Response::AuthChallenge { .. }
        ),
        "allowed when the admin says so"
    );
    let mut client = lenient.connect().await;
    let offered = client.mechanisms().await.unwrap();
    assert_eq!(offered, [auth::MECHANISM_PLUS, auth::MECHANISM]);
    assert_eq!(client.offered(), offered);
}

#[tokio::test]
async fn a_second_connection_resumes_the_first_ones_session_and_logs_in_bound() {
    let server = TestServer::start_tls(&[("alice", "pw")]).await;
    let mut first = server.connect().await;
    let keys = first.login_with_password(&alice(), "pw").await.unwrap();
    assert!(!first.is_resumed());
    // The server's tickets arrive after the handshake, with the first replies.
    first.list("").await.unwrap();
    let mut second = server.connect().await;
    assert!(second.is_resumed(), "the second handshake was a full one");
    // Channel binding still holds on the resumed session: SCRAM-SHA-256-PLUS succeeds.
    second.login_with_keys(&alice(), &keys).await.unwrap();
    second.mkdir("resumed", false).await.unwrap();
}

/// The server's greeting (its hello and the mechanisms) leaves with its handshake flight,
/// as TLS 1.3 half-RTT data: a client has it before it has sent its own Finished, so a
/// login does not wait a round trip for it. Driven by hand with rustls, the client's
/// Finished is never sent at all.
#[tokio::test]
async fn the_greeting_arrives_with_the_handshake_before_the_clients_finished() {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    use std::io::{ErrorKind, Read};

    let dir = tempfile::tempdir().unwrap();
    let (server, ca_pem) = server_of_a_ca(dir.path(), &["localhost"]).await;
    let addr = server.addr;
    let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap();

    // What the greeting is: our hello and the mechanisms offered, one frame each.
    let mut greeting = bytes::BytesMut::new();
    ftprep::wire::append_frame(&Hello::ours(), &mut greeting).unwrap();
    let offered = Response::Mechanisms {
        names: vec![auth::MECHANISM_PLUS.to_owned()],
    };
    ftprep::wire::append_frame(&offered, &mut greeting).unwrap();
    let want = greeting.len();

    let (received, finished_unsent) = tokio::task::spawn_blocking(move || {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(ftprep::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = "localhost".try_into().unwrap();
        let mut tls = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        // The ClientHello, and nothing after it.
        while tls.wants_write() {
            tls.write_tls(&mut tcp).unwrap();
        }
        let mut received = Vec::new();
        let mut buf = [0u8; 4096];
        // Until the greeting is in, or the server waits for our Finished (a read times out).
        while received.len() < want {
            match tls.read_tls(&mut tcp) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    break;
                }
                Err(e) => panic!("{e}"),
            }
            tls.process_new_packets().unwrap();
            loop {
                match tls.reader().read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => received.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        (received, tls.wants_write() && !tls.is_handshaking())
    })
    .await
    .unwrap();

    assert!(finished_unsent, "the client's Finished is done but unsent");
    assert_eq!(
        received,
        &greeting[..],
        "the greeting, whole, before the client's Finished"
    );
}

/// Over TLS too, a connection over the limit is told so at once (the busy reply goes with
/// the handshake), and the session already there goes on.
#[tokio::test]
async fn over_tls_a_connection_over_the_limit_is_told_the_server_is_busy() {
    let limits = ftprep::server::Limits {
        max_connections: 1,
        ..common::fast_limits()
    };
    let server = TestServer::start_full(&[("alice", "pw")], limits, TlsSetup::SelfSigned).await;
    let mut alice = server.login("alice", "pw").await;
    let err = server.try_connect().await.unwrap_err();
    let busy = Some(ftprep::commands::ErrorCode::Busy);
    assert_eq!(common::code_of(&err), busy, "{err}");
    assert!(
        err.to_string().contains("all 1 connections in use"),
        "{err}"
    );
    alice.mkdir("still-served", false).await.unwrap();
}
