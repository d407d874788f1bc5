//! Login against a real server: SCRAM with passwords and cached keys, PostgreSQL verifiers,
//! the auth gate, and the shared users and lockout suites (`common::users_suite`) on
//! `users.db`.

mod common;

use common::{TestServer, add_user};
use ftprep::Error;
use ftprep::auth::{self, Verifier};
use ftprep::commands::ErrorCode;
use ftprep::server::UserDatabase;
use ftprep::server::backends::user_admin;
use ftprep::server::users;
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
async fn users_in_users_db_keep_every_rule() {
    let server = TestServer::start(&[]).await;
    let admin = user_admin(&UserDatabase::File(server.users.clone()))
        .await
        .unwrap();
    common::users_suite::every_rule(&server, admin.as_ref()).await;
}

#[tokio::test]
async fn lockouts_with_users_in_users_db_keep_every_rule() {
    let lockout = std::time::Duration::from_millis(600);
    let server = TestServer::start_with(&[], common::users_suite::lockout_limits(lockout)).await;
    let admin = user_admin(&UserDatabase::File(server.users.clone()))
        .await
        .unwrap();
    common::users_suite::repeated_failures_lock_out_and_then_recover(
        &server,
        admin.as_ref(),
        lockout,
    )
    .await;
}

#[tokio::test]
async fn a_corrupt_edit_of_users_db_leaves_the_running_server_as_it_was() {
    let server = TestServer::start(&[("alice", "pw")]).await;
    let mut alice = server.login("alice", "pw").await;
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
