//! Login against a real server: SCRAM with passwords and cached keys, PostgreSQL verifiers,
//! no user enumeration, and the auth gate.

mod common;

use common::{TestServer, add_user};
use ftprep::Error;
use ftprep::auth::{self, ClientKeys, DEFAULT_ITERATIONS, Verifier};
use ftprep::commands::{ErrorCode, Request, Response};
use ftprep::server::users::{self, UserRecord};
use ftprep::username::Username;

fn name(n: &str) -> Username {
    Username::parse(n).unwrap()
}

// Copied from PostgreSQL 15's pg_authid after
// `SET password_encryption='scram-sha-256'; CREATE ROLE alice LOGIN PASSWORD '...'`.
const PG_ALICE: &str = "SCRAM-SHA-256$4096:gqNkYnq91hSxhrs2CVWHKg==$BOjZEjm4kPKIl39yI0m6Ri1B3L8vAeUIZ3jqpBkzIKI=:+gsypqOje916RkdLmFjclGymT1x1x/ukyOwrxYsf0lc=";
const PG_ALICE_PASSWORD: &str = "correct horse battery staple";
// The same for PASSWORD E'cafe\u0301\u00a0bar': PostgreSQL SASLpreps it to "café bar".
const PG_BOB: &str = "SCRAM-SHA-256$4096:gwCITXZPNu/YZcf6t0vP6g==$CCOaYP/Qi91NVFiW+H5mW1NMvKRYSXN5aFOmNEIcgG0=:HPGf65JJayKNlaq1Cjxq4Sh35d1zNsDWDmql/xuDd+o=";

#[tokio::test]
async fn postgres_verifiers_work_unchanged_in_users_db() {
    let server = TestServer::start(&[]).await;
    std::fs::write(
        &server.users,
        format!("# copied from pg_authid\nalice:{PG_ALICE}\nbob:{PG_BOB}\n"),
    )
    .unwrap();
    let mut client = server.login("alice", PG_ALICE_PASSWORD).await;
    client.mkdir("from-postgres", false).await.unwrap();
    assert!(server.root.join("alice/from-postgres").is_dir());
    // SASLprep: the decomposed form with a no-break space and the composed form with a
    // plain space are the same password.
    server.login("bob", "cafe\u{301}\u{a0}bar").await;
    server.login("bob", "caf\u{e9} bar").await;
    let err = server
        .try_login("alice", "Correct horse battery staple")
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Scram(auth::ScramError::AuthenticationFailed)
    ));
}

#[tokio::test]
async fn cached_keys_log_in_without_the_password() {
    let server = TestServer::start(&[("alice", "s3cret")]).await;
    let keys = server.try_login("alice", "s3cret").await.unwrap();
    let mut client = server.connect().await;
    client.login_with_keys(&name("alice"), &keys).await.unwrap();
    client.mkdir("cached", false).await.unwrap();
    assert!(server.root.join("alice/cached").is_dir());
    // Keys for another user's name do not work.
    add_user(&server.users, "bob", "other");
    let err = server
        .connect()
        .await
        .login_with_keys(&name("bob"), &keys)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::LoginExpired { .. }), "{err}");
}

#[tokio::test]
async fn password_change_invalidates_a_cached_login() {
    let server = TestServer::start(&[("alice", "old")]).await;
    let keys = server.try_login("alice", "old").await.unwrap();
    // New salt (what `ftpd passwd` does): the client notices before sending a proof.
    users::file::set_verifier(
        &server.users,
        &name("alice"),
        Verifier::generate("new", 4096),
    )
    .unwrap();
    let err = server
        .connect()
        .await
        .login_with_keys(&name("alice"), &keys)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "login expired, run: ftpc login alice");
    // Same salt and count, other password: the proof fails, also reported as expired.
    let same_salt = Verifier::from_password("newer", &keys.salt, keys.iterations);
    users::file::set_verifier(&server.users, &name("alice"), same_salt).unwrap();
    let err = server
        .connect()
        .await
        .login_with_keys(&name("alice"), &keys)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::LoginExpired { .. }), "{err}");
    server.login("alice", "newer").await;
}

/// Runs a password login by hand and returns the server-first and server-final messages.
async fn raw_login(server: &TestServer, user: &str, password: &str) -> (String, String) {
    let (mut client, first, server_first) = common::auth_start(server, user).await;
    let challenge = first.receive_server_first(&server_first).unwrap();
    let keys = ClientKeys::derive(password, &challenge.salt, challenge.iterations);
    let (client_final, _) = challenge.respond(&keys);
    let reply = client
        .raw_request(&Request::AuthFinish {
            message: client_final,
        })
        .await
        .unwrap();
    let Response::AuthOutcome {
        message: server_final,
    } = reply
    else {
        panic!("expected an outcome, got {reply:?}");
    };
    (server_first, server_final)
}

fn salt_and_iterations(server_first: &str) -> (String, String) {
    let mut parts = server_first.split(',').skip(1);
    (
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn unknown_user_and_wrong_password_are_indistinguishable() {
    let server = TestServer::start(&[]).await;
    // A real user with the default iteration count, as `ftpd adduser` makes.
    users::file::add_user(
        &server.users,
        UserRecord::new(
            name("alice"),
            Verifier::generate("right", DEFAULT_ITERATIONS),
        ),
    )
    .unwrap();

    let (alice_first, alice_final) = raw_login(&server, "alice", "wrong").await;
    let (ghost_first, ghost_final) = raw_login(&server, "ghost", "wrong").await;
    let (ghost_again, _) = raw_login(&server, "ghost", "wrong").await;
    assert_eq!(alice_final, "e=invalid-proof");
    assert_eq!(ghost_final, alice_final);
    let (alice_salt, alice_iter) = salt_and_iterations(&alice_first);
    let (ghost_salt, ghost_iter) = salt_and_iterations(&ghost_first);
    assert_eq!(alice_iter, format!("i={DEFAULT_ITERATIONS}"));
    assert_eq!(ghost_iter, alice_iter);
    assert_eq!(ghost_salt.len(), alice_salt.len());
    // A prober sees a stable salt for the unknown name, as for a real one.
    assert_eq!(salt_and_iterations(&ghost_again).0, ghost_salt);

    // Through the client API the errors are identical too.
    let wrong = server.try_login("alice", "wrong").await.unwrap_err();
    let unknown = server.try_login("ghost", "wrong").await.unwrap_err();
    assert_eq!(wrong.to_string(), unknown.to_string());
    assert_eq!(wrong.kind(), unknown.kind());
    assert_eq!(
        wrong.to_string(),
        "authentication failed: wrong username or password"
    );
}

#[tokio::test]
async fn commands_before_login_are_refused() {
    let server = TestServer::start(&[("alice", "pw")]).await;
    let mut client = server.connect().await;
    let err = client.mkdir("sneaky", false).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Remote {
                code: ErrorCode::AuthRequired,
                ..
            }
        ),
        "{err}"
    );
    assert!(client.list("").await.is_err());
    assert!(!server.root.join("alice").exists());
    // The same connection can still log in afterwards.
    client
        .login_with_password(&name("alice"), "pw")
        .await
        .unwrap();
    client.mkdir("ok", false).await.unwrap();
}

#[tokio::test]
async fn users_added_and_removed_take_effect_without_restart() {
    let server = TestServer::start(&[("alice", "pw")]).await;
    let mut alice = server.login("alice", "pw").await;
    add_user(&server.users, "bob", "bobpw");
    server.login("bob", "bobpw").await;
    users::file::remove_user(&server.users, &name("bob")).unwrap();
    let err = server.try_login("bob", "bobpw").await.unwrap_err();
    assert!(matches!(
        err,
        Error::Scram(auth::ScramError::AuthenticationFailed)
    ));
    // A corrupt edit is ignored by the running server: alice still logs in.
    std::fs::write(&server.users, "this is not a user line\n").unwrap();
    server.login("alice", "pw").await;
    alice.mkdir("still-here", false).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn client_refuses_a_server_that_asks_for_absurd_iterations() {
    let server = TestServer::start(&[]).await;
    let absurd = Verifier {
        iterations: 50_000_000,
        ..Verifier::from_password("pw", b"saltsaltsaltsalt", 4096)
    };
    std::fs::write(&server.users, format!("alice:{absurd}\n")).unwrap();
    let err = server.try_login("alice", "pw").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Scram(auth::ScramError::BadIterationCount(50_000_000))
        ),
        "{err}"
    );
}

#[tokio::test]
async fn repeated_failures_lock_out_with_the_same_answer_and_then_recover() {
    use ftprep::server::Limits;
    use ftprep::server::guard::LockoutPolicy;
    use std::time::{Duration, Instant};
    let lockout = Duration::from_millis(600);
    let limits = Limits {
        lockout: LockoutPolicy {
            max_failures: 3,
            window: Duration::from_secs(60),
            lockout,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(60),
        },
        ..Limits::default()
    };
    let server = TestServer::start_with(&[("alice", "pw"), ("bob", "pw2")], limits).await;
    let attempt = |user: &'static str, password: &'static str| {
        let server = &server;
        async move {
            server
                .connect()
                .await
                .login_with_password(&name(user), password)
                .await
        }
    };
    let wrong = attempt("alice", "wrong").await.unwrap_err().to_string();
    // Later failures are answered after a growing delay.
    let started = Instant::now();
    attempt("alice", "wrong").await.unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(20));
    attempt("alice", "wrong").await.unwrap_err();
    let locked_at = Instant::now();

    // Locked out: even the right password gets exactly the wrong-password answer...
    let while_locked = attempt("alice", "pw").await.unwrap_err().to_string();
    assert_eq!(while_locked, wrong);
    let (_, outcome) = raw_login(&server, "alice", "pw").await;
    assert_eq!(outcome, "e=invalid-proof");
    // ...and so does every user from the same address (127.0.0.1 is locked too).
    assert!(attempt("bob", "pw2").await.is_err());

    // Once the lockout has passed, the right password works again.
    let left = lockout.saturating_sub(locked_at.elapsed());
    tokio::time::sleep(left + Duration::from_millis(100)).await;
    attempt("alice", "pw").await.unwrap();
    attempt("bob", "pw2").await.unwrap();
}
