use super::*;
use crate::commands::ErrorCode;

#[test]
fn server_addresses_are_made_whole() {
    let ok = |raw: &str| server_address(raw).unwrap();
    assert_eq!(ok("files.example.org"), "files.example.org:2121");
    assert_eq!(ok("localhost:9000"), "localhost:9000");
    assert_eq!(ok("127.0.0.1"), "127.0.0.1:2121");
    assert_eq!(ok("::1"), "[::1]:2121");
    assert_eq!(ok("[::1]"), "[::1]:2121");
    assert_eq!(ok("[::1]:7000"), "[::1]:7000");
    for bad in [
        "",
        ":2121",
        "host:",
        "host:0",
        "host:99999",
        "[::1",
        "[nope]:1",
        "[::1]x",
    ] {
        assert!(
            matches!(server_address(bad), Err(Error::Usage(_))),
            "{bad:?}"
        );
    }
}

/// Issue 28: `user@host[:port]`, as ssh, scp and rsync take it.
#[test]
fn destinations_name_a_user_as_ssh_does() {
    let alice = Username::parse("alice").unwrap();
    assert_eq!(
        destination("alice@files.example.org").unwrap(),
        (Some(alice.clone()), "files.example.org:2121".into())
    );
    assert_eq!(
        destination("alice@[::1]:7000").unwrap(),
        (Some(alice), "[::1]:7000".into())
    );
    assert_eq!(destination("host").unwrap(), (None, "host:2121".into()));
    for bad in ["@host", "Alice@host", "alice@", "a b@host"] {
        assert!(matches!(destination(bad), Err(Error::Usage(_))), "{bad:?}");
    }
}

#[tokio::test]
async fn a_session_the_server_ended_while_idle_is_not_ready() {
    let (near, far) = tokio::io::duplex(64 * 1024);
    let mut server = Connection::new(far);
    let handshake = tokio::spawn(Client::handshake(near));
    let _: Hello = server.expect().await.unwrap();
    server.write(&Hello::ours()).await.unwrap();
    let names = vec![auth::MECHANISM.to_owned()];
    server.write(&Response::Mechanisms { names }).await.unwrap();
    let mut client = handshake.await.unwrap().unwrap();
    assert!(client.is_ready().await, "nothing arrived yet");
    assert!(client.is_ready().await, "asking twice changes nothing");

    // The server's idle timeout: it says so, then closes.
    server
        .write(&Response::Error {
            code: ErrorCode::Timeout,
            message: "idle for too long".into(),
        })
        .await
        .unwrap();
    drop(server);
    assert!(!client.is_ready().await);
    assert!(!client.is_in_step());
}
