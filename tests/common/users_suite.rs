//! Behaviour every user store keeps, written once and run against each engine: `users.db`
//! in `tests/auth.rs`, PostgreSQL in `tests/postgres.rs`. The server under test is running;
//! the admin side changes its users through [`UserAdmin`], as `ftpd adduser` and the others
//! do, and each change is in force at the next login.

use std::time::{Duration, Instant};

use ftprep::Error;
use ftprep::auth::{self, ClientKeys, Verifier};
use ftprep::client::{NoProgress, TransferOptions};
use ftprep::commands::{ErrorCode, Request, Response};
use ftprep::error::UserDbError;
use ftprep::server::Limits;
use ftprep::server::guard::LockoutPolicy;
use ftprep::server::users::{UserAdmin, UserRecord};
use ftprep::username::Username;

use super::{TEST_ITERATIONS, TestServer, code_of};

fn name(n: &str) -> Username {
    Username::parse(n).unwrap()
}

fn record(n: &str, password: &str) -> UserRecord {
    UserRecord::new(name(n), Verifier::generate(password, TEST_ITERATIONS))
}

/// Every rule below, one after the other, on `server` (fast limits: no lockout in reach)
/// whose users `admin` changes. Each rule uses names of its own.
pub async fn every_rule(server: &TestServer, admin: &dyn UserAdmin) {
    admin_changes_are_in_force_at_the_next_login(server, admin).await;
    the_admin_is_told_what_is_wrong(admin).await;
    unknown_names_and_wrong_passwords_look_alike(server, admin).await;
    a_quota_set_by_the_admin_holds(server, admin).await;
    ssh_keys_are_kept_beside_the_verifier(admin).await;
}

/// Made with `ssh-keygen -t ed25519` and `-t ecdsa`.
const KEY_A: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINGuPVHsCTW2Dd+EjNoRTrqiO2QQusnV84c69fnQYN5p alice@laptop";
const KEY_A_FINGERPRINT: &str = "SHA256:RitIkJUv5b7i7pZdBqWFT5wKSOwHzOiaZSR0sCtDhNM";
const KEY_B: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEjgSYJ4Bot5hRZ4Lmjn4H1XxSX4hlayY+os+2lm6EwDRTvmvRjf2KEkQPGXD17yEvi+aP+tuud1cZtccm2R3PY= work key";

async fn ssh_keys_are_kept_beside_the_verifier(admin: &dyn UserAdmin) {
    use ftprep::authorized_key::AuthorizedKey;
    let user = name("k-dora");
    admin.add(record("k-dora", "pw")).await.unwrap();
    let a = AuthorizedKey::parse(KEY_A).unwrap();
    let b = AuthorizedKey::parse(KEY_B).unwrap();
    admin.add_key(&user, a.clone()).await.unwrap();
    admin.add_key(&user, b.clone()).await.unwrap();
    let again = admin.add_key(&user, a.clone()).await.unwrap_err();
    assert!(matches!(again, UserDbError::KeyExists { .. }), "{again}");
    let keys = |users: Vec<UserRecord>| {
        users
            .into_iter()
            .find(|u| u.name == user)
            .map(|u| u.keys)
            .unwrap()
    };
    // Kept with their comments, in the order added.
    let kept = keys(admin.users().await.unwrap());
    assert_eq!(kept, vec![a.clone(), b.clone()]);
    assert_eq!(kept[1].comment(), "work key");
    // Removed by fingerprint, with or without its prefix; then gone.
    let removed = admin.remove_key(&user, KEY_A_FINGERPRINT).await.unwrap();
    assert_eq!(removed, a);
    let gone = admin
        .remove_key(&user, KEY_A_FINGERPRINT)
        .await
        .unwrap_err();
    assert!(matches!(gone, UserDbError::NoSuchKey { .. }), "{gone}");
    let bare = b.fingerprint().trim_start_matches("SHA256:").to_owned();
    admin.remove_key(&user, &bare).await.unwrap();
    assert!(keys(admin.users().await.unwrap()).is_empty());
    let ghost = admin.add_key(&name("k-ghost"), a).await.unwrap_err();
    assert!(matches!(ghost, UserDbError::NoSuchUser(_)), "{ghost}");
}

async fn admin_changes_are_in_force_at_the_next_login(server: &TestServer, admin: &dyn UserAdmin) {
    admin.add(record("u-bob", "first")).await.unwrap();
    server.try_login("u-bob", "first").await.unwrap();
    admin
        .set_verifier(
            &name("u-bob"),
            Verifier::generate("second", TEST_ITERATIONS),
        )
        .await
        .unwrap();
    let err = server.try_login("u-bob", "first").await.unwrap_err();
    assert!(
        matches!(err, Error::Scram(auth::ScramError::AuthenticationFailed)),
        "{err}"
    );
    server.try_login("u-bob", "second").await.unwrap();
    admin.remove(&name("u-bob")).await.unwrap();
    let err = server.try_login("u-bob", "second").await.unwrap_err();
    assert!(
        matches!(err, Error::Scram(auth::ScramError::AuthenticationFailed)),
        "{err}"
    );
}

async fn the_admin_is_told_what_is_wrong(admin: &dyn UserAdmin) {
    admin.add(record("t-carol", "pw")).await.unwrap();
    let again = admin.add(record("t-carol", "other")).await.unwrap_err();
    assert!(matches!(again, UserDbError::UserExists(_)), "{again}");
    assert_eq!(again.to_string(), "user t-carol already exists");
    let ghost = name("t-ghost");
    for err in [
        admin.remove(&ghost).await.unwrap_err(),
        admin.set_quota(&ghost, Some(1)).await.unwrap_err(),
        admin.set_file_quota(&ghost, Some(1)).await.unwrap_err(),
        admin
            .set_verifier(&ghost, Verifier::generate("x", TEST_ITERATIONS))
            .await
            .unwrap_err(),
    ] {
        assert!(matches!(err, UserDbError::NoSuchUser(_)), "{err}");
        assert_eq!(err.to_string(), "no such user: t-ghost");
    }
    admin
        .set_quota(&name("t-carol"), Some(5 << 20))
        .await
        .unwrap();
    admin
        .set_file_quota(&name("t-carol"), Some(7))
        .await
        .unwrap();
    let carol = admin
        .users()
        .await
        .unwrap()
        .into_iter()
        .find(|user| user.name == name("t-carol"))
        .expect("t-carol is listed");
    assert_eq!((carol.quota, carol.files), (Some(5 << 20), Some(7)));
    admin.set_quota(&name("t-carol"), None).await.unwrap();
    admin.remove(&name("t-carol")).await.unwrap();
    assert!(
        !admin
            .users()
            .await
            .unwrap()
            .iter()
            .any(|user| user.name == name("t-carol"))
    );
}

/// Runs a password login by hand: the server-first and server-final messages.
pub async fn raw_login(server: &TestServer, user: &str, password: &str) -> (String, String) {
    let (mut client, first, server_first) = super::auth_start(server, user).await;
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

/// The salt and iteration count of a server-first message.
pub fn salt_and_iterations(server_first: &str) -> (String, String) {
    let mut parts = server_first.split(',').skip(1);
    (
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().to_owned(),
    )
}

async fn unknown_names_and_wrong_passwords_look_alike(server: &TestServer, admin: &dyn UserAdmin) {
    admin.add(record("e-alice", "right")).await.unwrap();
    let (alice_first, alice_final) = raw_login(server, "e-alice", "wrong").await;
    let (ghost_first, ghost_final) = raw_login(server, "e-ghost", "wrong").await;
    let (ghost_again, _) = raw_login(server, "e-ghost", "wrong").await;
    assert_eq!(alice_final, "e=invalid-proof");
    assert_eq!(ghost_final, alice_final);
    let (alice_salt, alice_iterations) = salt_and_iterations(&alice_first);
    let (ghost_salt, ghost_iterations) = salt_and_iterations(&ghost_first);
    assert_eq!(ghost_iterations, alice_iterations);
    assert_eq!(ghost_salt.len(), alice_salt.len());
    // A prober sees a stable salt for the unknown name, as for a real one.
    assert_eq!(salt_and_iterations(&ghost_again).0, ghost_salt);
    let wrong = server.try_login("e-alice", "wrong").await.unwrap_err();
    let unknown = server.try_login("e-ghost", "wrong").await.unwrap_err();
    assert_eq!(wrong.to_string(), unknown.to_string());
    assert_eq!(
        wrong.to_string(),
        "authentication failed: wrong username or password"
    );
}

async fn a_quota_set_by_the_admin_holds(server: &TestServer, admin: &dyn UserAdmin) {
    admin.add(record("q-dave", "pw")).await.unwrap();
    let mut dave = server.login("q-dave", "pw").await;
    let local = server.dir.path().join("q-dave-file");
    std::fs::write(&local, vec![7u8; 64 << 10]).unwrap();
    dave.put_file(&local, "first", TransferOptions::default(), &NoProgress)
        .await
        .unwrap();
    admin
        .set_quota(&name("q-dave"), Some(100 << 10))
        .await
        .unwrap();
    // A store may answer a session from what it remembers, as long as it forgets a user the
    // moment they change: over the network, that moment comes a little later.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match dave
            .put_file(&local, "second", TransferOptions::default(), &NoProgress)
            .await
        {
            Err(err) => {
                assert_eq!(code_of(&err), Some(ErrorCode::QuotaExceeded), "{err}");
                break;
            }
            Ok(_) => {
                dave.remove("second", false).await.unwrap();
                assert!(Instant::now() < deadline, "the new quota never held");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert_eq!(
        dave.list("").await.unwrap().len(),
        1,
        "nothing partial shows"
    );
}

/// Limits whose lockout is in reach of a test: three failures lock the address out for
/// `lockout`.
pub fn lockout_limits(lockout: Duration) -> Limits {
    Limits {
        lockout: LockoutPolicy {
            max_failures: 3,
            window: Duration::from_secs(60),
            lockout,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(60),
        },
        ..Limits::default()
    }
}

/// Repeated failures from one address lock it out, for every name, with the same answer as
/// a wrong password, until the lockout passes: on `server`, started with
/// [`lockout_limits`]`(lockout)`, whose users `admin` changes.
pub async fn repeated_failures_lock_out_and_then_recover(
    server: &TestServer,
    admin: &dyn UserAdmin,
    lockout: Duration,
) {
    admin.add(record("l-alice", "pw")).await.unwrap();
    admin.add(record("l-bob", "pw2")).await.unwrap();
    let attempt = |user: &'static str, password: &'static str| async move {
        server
            .connect()
            .await
            .login_with_password(&name(user), password)
            .await
    };
    let wrong = attempt("l-alice", "wrong").await.unwrap_err().to_string();
    // Later failures are answered after a growing delay.
    let started = Instant::now();
    attempt("l-alice", "wrong").await.unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(20));
    attempt("l-alice", "wrong").await.unwrap_err();
    let locked_at = Instant::now();

    // Locked out: even the right password gets exactly the wrong-password answer...
    let while_locked = attempt("l-alice", "pw").await.unwrap_err().to_string();
    assert_eq!(while_locked, wrong);
    let (_, outcome) = raw_login(server, "l-alice", "pw").await;
    assert_eq!(outcome, "e=invalid-proof");
    // ...and so does every user from the same address (127.0.0.1 is locked too).
    assert!(attempt("l-bob", "pw2").await.is_err());

    // Once the lockout has passed, the right password works again.
    let left = lockout.saturating_sub(locked_at.elapsed());
    tokio::time::sleep(left + Duration::from_millis(100)).await;
    attempt("l-alice", "pw").await.unwrap();
    attempt("l-bob", "pw2").await.unwrap();
}
