//! Users in PostgreSQL: a throw-away cluster (`initdb` + `pg_ctl` from Debian's packages, in a
//! temporary directory, on a loopback port), the admin commands through the real `ftpd`
//! binary, and logins against a server reading that database.
//!
//! Without PostgreSQL installed these tests fail, saying what to install
//! (`scripts/test.sh` installs it).

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use common::{TestServer, code_of, fast_limits};
use ftprep::auth::Verifier;
use ftprep::chat::ChatEvent;
use ftprep::client::NoProgress;
use ftprep::commands::ErrorCode;
use ftprep::error::Error;
use ftprep::server::backends::user_admin;
use ftprep::server::guard::LockoutPolicy;
use ftprep::server::users::UserRecord;
use ftprep::server::users::postgres::PgUserStore;
use ftprep::server::{Config, Limits, TlsSetup, UserDatabase};
use ftprep::username::Username;

/// A PostgreSQL cluster of its own, stopped when dropped.
struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    /// Run as this user when the tests run as root (PostgreSQL refuses root).
    as_user: Option<&'static str>,
    /// Only TLS connections over TCP.
    tls: bool,
    dir: tempfile::TempDir,
}

impl Postgres {
    /// Fails the test, saying what to install, when PostgreSQL is not installed.
    fn start() -> Self {
        Self::start_with(None)
    }

    /// As [`Postgres::start`]; with `tls` (certificate and key, PEM) it accepts only TLS
    /// connections.
    fn start_with(tls: Option<(String, String)>) -> Self {
        let bin = postgres_bin().expect(
            "PostgreSQL is not installed: apt-get install postgresql (scripts/test.sh does)",
        );
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = Postgres {
            bin,
            data: dir.path().join("data"),
            port,
            as_user: (unsafe { libc::geteuid() } == 0).then_some("postgres"),
            tls: tls.is_some(),
            dir,
        };
        cluster.give_away(cluster.dir.path());
        let data = cluster.data.to_string_lossy().into_owned();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "ftpd",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        if let Some((cert, key)) = tls {
            let data = &cluster.data;
            std::fs::write(data.join("server.crt"), cert).unwrap();
            std::fs::write(data.join("server.key"), key).unwrap();
            // TCP only with TLS.
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
            )
            .unwrap();
            {
                use std::os::unix::fs::PermissionsExt;
                let private = std::fs::Permissions::from_mode(0o600);
                std::fs::set_permissions(data.join("server.key"), private).unwrap();
            }
            for file in ["server.crt", "server.key", "pg_hba.conf"] {
                cluster.give_away(&data.join(file));
            }
        }
        cluster.start_server();
        cluster
    }

    /// Makes `path` the cluster user's, when that is not us.
    fn give_away(&self, path: &std::path::Path) {
        if let Some(user) = self.as_user {
            let status = Command::new("chown")
                .args([user, &path.to_string_lossy()])
                .status()
                .unwrap();
            assert!(status.success());
        }
    }

    /// Starts the server on the cluster; returns once it accepts connections (`-w`).
    fn start_server(&self) {
        let data = self.data.to_string_lossy().into_owned();
        let log = format!("{data}/log");
        let mut options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        if self.tls {
            options.push_str(" -c ssl=on");
        }
        self.run(
            "pg_ctl",
            &["-D", &data, "-w", "-l", &log, "-o", &options, "start"],
        );
    }

    /// One of PostgreSQL's programs, as the cluster's user.
    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        match self.as_user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            None => Command::new(&program),
        }
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let out = self
            .command(tool)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tool}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn url(&self) -> String {
        format!("postgres://ftpd@127.0.0.1:{}/postgres", self.port)
    }

    fn stop(&self) {
        let data = self.data.to_string_lossy().into_owned();
        self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]);
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data.to_string_lossy().into_owned();
        let _ = self
            .command("pg_ctl")
            .args(["-D", &data, "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The newest installed PostgreSQL's programs (Debian keeps them per version).
fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// `ftpd ARGS --users URL` (an admin command against `db`), `stdin` written to it.
fn admin(db: &Postgres, args: &[&str], stdin: &str) -> Output {
    fed(
        Command::new(env!("CARGO_BIN_EXE_ftpd"))
            .args(args)
            .args(["--users", &db.url()]),
        stdin,
    )
}

/// Runs `command` with `stdin` as its standard input: its output.
fn fed(command: &mut Command, stdin: &str) -> Output {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// What an open session is refused `df` with, once its node notices the change that
/// refuses it (at most 5 s).
async fn refusal_of_df(client: &mut ftprep::client::Client, what: &str) -> Error {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match client.disk_usage().await {
            Err(refused) => return refused,
            Ok(_) => assert!(std::time::Instant::now() < deadline, "{what}"),
        }
        tokio::task::yield_now().await;
    }
}

fn succeeded(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn server_on(db: &Postgres) -> TestServer {
    node_on(db, fast_limits()).await
}

/// A server (a node) on the database, with its own root and state directory.
async fn node_on(db: &Postgres, limits: Limits) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        root: dir.path().join("root").into(),
        users: db.url().parse().unwrap(),
        state_dir: dir.path().join("state"),
        tls: TlsSetup::Plaintext,
        audit_log: Some(dir.path().join("audit.jsonl")),
        limits,
    };
    TestServer::start_config(dir, config).await
}

/// The salt and iteration count a node answers `user`'s login with.
async fn challenge_of(node: &TestServer, user: &str) -> String {
    let (_, _, message) = common::auth_start(node, user).await;
    // r=NONCE,s=SALT,i=ITERATIONS: the nonce is fresh each time.
    message.split(',').skip(1).collect::<Vec<_>>().join(",")
}

#[tokio::test(flavor = "multi_thread")]
async fn users_in_postgres_through_the_admin_commands_and_logins() {
    let db = Postgres::start();
    // The table is made on first use, by the admin command as by the server.
    let added = admin(
        &db,
        &[
            "adduser",
            "alice",
            "--password-stdin",
            "--iterations",
            "4096",
        ],
        "pw\n",
    );
    assert_eq!(succeeded(&added), "added user alice\n");
    let again = admin(&db, &["adduser", "alice", "--password-stdin"], "pw\n");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    succeeded(&admin(&db, &["quota", "alice", "1M"], ""));
    assert_eq!(
        succeeded(&admin(&db, &["users"], "")),
        "alice\tquota 1.0 MiB\n"
    );

    let server = server_on(&db).await;
    let mut alice = server.connect().await;
    let keys = alice
        .login_with_password(&Username::parse("alice").unwrap(), "pw")
        .await
        .unwrap();
    // The quota from the database holds.
    let big = server.dir.path().join("big");
    std::fs::write(&big, vec![7u8; 2 << 20]).unwrap();
    let refused = alice
        .put_file(&big, "big", Default::default(), &NoProgress)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("quota"), "{refused}");
    // A quota changed in the database reaches the open session at once: the node hears of
    // the change (LISTEN/NOTIFY) and forgets what it remembered (it would otherwise keep it
    // for 30 s).
    succeeded(&admin(&db, &["quota", "alice", "none"], ""));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while alice.disk_usage().await.unwrap().quota.is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the quota change was not heard"
        );
        tokio::task::yield_now().await;
    }
    alice
        .put_file(&big, "big", Default::default(), &NoProgress)
        .await
        .unwrap();
    // A wrong password and an unknown name fail alike.
    for (name, password) in [("alice", "nope"), ("ghost", "pw")] {
        let err = server.try_login(name, password).await.unwrap_err();
        assert!(matches!(err, Error::Scram(_)), "{name}: {err}");
    }

    // `passwd` against the database: the cached keys stop working at once.
    succeeded(&admin(
        &db,
        &[
            "passwd",
            "alice",
            "--password-stdin",
            "--iterations",
            "4096",
        ],
        "new\n",
    ));
    let mut again = server.connect().await;
    let expired = again
        .login_with_keys(&Username::parse("alice").unwrap(), &keys)
        .await
        .unwrap_err();
    assert!(matches!(expired, Error::LoginExpired { .. }), "{expired}");
    server.try_login("alice", "new").await.unwrap();

    // The database goes away: a clear "busy", no crash; back, and logins work again.
    db.stop();
    let err = server.try_login("alice", "new").await.unwrap_err();
    assert!(
        err.to_string().contains("user database is unavailable"),
        "{err}"
    );
    // A session already open is refused what needs the user's record (once its node has
    // noticed: it then remembers nothing), and stays usable.
    let refused = refusal_of_df(&mut alice, "still served").await;
    assert!(refused.to_string().contains("unavailable"), "{refused}");
    db.start_server();
    server.try_login("alice", "new").await.unwrap();
    assert!(alice.disk_usage().await.is_ok());

    // `deluser`: no more logins, and the open session is refused.
    succeeded(&admin(
        &db,
        &[
            "deluser",
            "alice",
            "--state-dir",
            &server.dir.path().join("state").to_string_lossy(),
        ],
        "",
    ));
    assert!(server.try_login("alice", "new").await.is_err());
    let removed = refusal_of_df(&mut alice, "the removal was not heard").await;
    assert!(removed.to_string().contains("removed"), "{removed}");
    assert_eq!(succeeded(&admin(&db, &["users"], "")), "");
}

#[tokio::test(flavor = "multi_thread")]
async fn users_in_postgres_keep_every_rule() {
    let db = Postgres::start();
    let server = server_on(&db).await;
    let admin = user_admin(&db.url().parse().unwrap()).await.unwrap();
    common::users_suite::every_rule(&server, admin.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lockouts_with_users_in_postgres_keep_every_rule() {
    let db = Postgres::start();
    let lockout = std::time::Duration::from_millis(600);
    let server = node_on(&db, common::users_suite::lockout_limits(lockout)).await;
    let admin = user_admin(&db.url().parse().unwrap()).await.unwrap();
    common::users_suite::repeated_failures_lock_out_and_then_recover(
        &server,
        admin.as_ref(),
        lockout,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_share_failed_logins_and_answer_unknown_names_alike() {
    let db = Postgres::start();
    let users: UserDatabase = db.url().parse().unwrap();
    for name in ["alice", "bob"] {
        let record = UserRecord::new(
            Username::parse(name).unwrap(),
            Verifier::generate("pw", common::TEST_ITERATIONS),
        );
        user_admin(&users).await.unwrap().add(record).await.unwrap();
    }
    let limits = Limits {
        lockout: LockoutPolicy {
            max_failures: 3,
            window: std::time::Duration::from_secs(60),
            lockout: std::time::Duration::from_secs(60),
            base_delay: std::time::Duration::from_millis(5),
            max_delay: std::time::Duration::from_millis(20),
        },
        ..fast_limits()
    };
    let (a, b) = (node_on(&db, limits).await, node_on(&db, limits).await);

    // One mock-login secret for both: an unknown name gets the same salt from each, as a
    // real user does (each node alone would make its own).
    let ghost = challenge_of(&a, "ghost").await;
    assert_eq!(challenge_of(&b, "ghost").await, ghost);
    assert_ne!(challenge_of(&a, "ghost2").await, ghost);
    assert_eq!(
        challenge_of(&b, "alice").await,
        challenge_of(&a, "alice").await
    );

    // Failures spread over the nodes add up: the third locks 127.0.0.1 out on both.
    a.try_login("alice", "wrong").await.unwrap_err();
    b.try_login("alice", "wrong").await.unwrap_err();
    a.try_login("alice", "wrong").await.unwrap_err();
    let locked = b.try_login("alice", "pw").await.unwrap_err();
    assert!(matches!(locked, Error::Scram(_)), "{locked}");
    assert!(
        a.try_login("bob", "pw").await.is_err(),
        "the address is locked"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_to_the_database_verifies_its_certificate() {
    let (ca_pem, cert, key) = common::ca_signed_leaf(&["127.0.0.1"]);
    let db = Postgres::start_with(Some((cert, key)));
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let other = dir.path().join("other.pem");
    std::fs::write(&other, common::unrelated_ca()).unwrap();

    // The cluster takes TCP connections only with TLS: plain ones are refused...
    let plain = PgUserStore::connect(&db.url()).await.unwrap_err();
    assert!(plain.to_string().contains("no encryption"), "{plain}");
    // ...a certificate no trusted CA signed is refused...
    let url = |root: &std::path::Path| {
        format!(
            "{}?sslmode=require&sslrootcert={}",
            db.url(),
            root.display()
        )
    };
    let untrusted = PgUserStore::connect(&url(&other)).await.unwrap_err();
    assert!(
        untrusted.to_string().to_lowercase().contains("certificate"),
        "{untrusted}"
    );
    // ...and with the right CA it works.
    let users = PgUserStore::connect(&url(&ca)).await.unwrap();
    let record = UserRecord::new(
        Username::parse("alice").unwrap(),
        Verifier::generate("pw", 4096),
    );
    users.add(&record).await.unwrap();
    assert_eq!(users.users().await.unwrap(), vec![record]);
}

#[tokio::test]
async fn a_database_url_never_shows_its_password() {
    let users: UserDatabase = "postgres://ftpd:s3cret@127.0.0.1:1/x".parse().unwrap();
    assert!(!users.to_string().contains("s3cret"));
}

/// A node on the database keeping its files in the shared object store.
async fn object_node_on(db: &Postgres, s3: &common::s3::S3Server) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        root: ftprep::server::StorageRoot::Object(s3.location("cluster")),
        users: db.url().parse().unwrap(),
        state_dir: dir.path().join("state"),
        tls: TlsSetup::Plaintext,
        audit_log: None,
        limits: fast_limits(),
    };
    TestServer::start_config(dir, config).await
}

/// Adds alice (password `pw`, her record as `limits` makes it) to `db`, and starts two
/// nodes on `db` and `s3`.
async fn alice_on_two_object_nodes(
    db: &Postgres,
    s3: &common::s3::S3Server,
    limits: impl FnOnce(&mut UserRecord),
) -> (TestServer, TestServer) {
    let users: UserDatabase = db.url().parse().unwrap();
    let mut record = UserRecord::new(
        Username::parse("alice").unwrap(),
        Verifier::generate("pw", common::TEST_ITERATIONS),
    );
    limits(&mut record);
    user_admin(&users).await.unwrap().add(record).await.unwrap();
    (object_node_on(db, s3).await, object_node_on(db, s3).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quota_holds_across_nodes_sharing_an_object_store() {
    let db = Postgres::start();
    let s3 = common::s3::S3Server::start();
    let (a, b) = alice_on_two_object_nodes(&db, &s3, |alice| alice.quota = Some(20 << 20)).await;
    let (mut on_a, mut on_b) = (a.login("alice", "pw").await, b.login("alice", "pw").await);
    // B counts the home first (empty), so only A's report of its upload can tell B.
    assert_eq!(on_b.usage().await.unwrap(), (0, Some(20 << 20)));
    let file = a.dir.path().join("12MiB");
    std::fs::write(&file, vec![7u8; 12 << 20]).unwrap();
    let options = ftprep::client::TransferOptions::default();
    let progress = &ftprep::client::NoProgress;
    on_a.put_file(&file, "first", options, progress)
        .await
        .unwrap();
    assert_eq!(on_b.usage().await.unwrap().0, 12 << 20, "B sees A's upload");
    let refused = on_b
        .put_file(&file, "second", options, progress)
        .await
        .unwrap_err();
    assert_eq!(
        code_of(&refused),
        Some(ErrorCode::QuotaExceeded),
        "{refused}"
    );

    // An upload in progress on A holds its bytes for B too.
    on_a.remove("first", false).await.unwrap();
    let mut uploading = a.login("alice", "pw").await;
    common::start_upload(&mut uploading, "big", 12 << 20, false).await;
    let refused = on_b
        .put_file(&file, "second", options, progress)
        .await
        .unwrap_err();
    assert_eq!(
        code_of(&refused),
        Some(ErrorCode::QuotaExceeded),
        "{refused}"
    );
    // Once it is given up, the room is there again.
    drop(uploading);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match on_b.put_file(&file, "second", options, progress).await {
            Ok(_) => break,
            Err(e) if std::time::Instant::now() < deadline => {
                assert_eq!(code_of(&e), Some(ErrorCode::QuotaExceeded), "{e}");
                tokio::task::yield_now().await;
            }
            Err(e) => panic!("the hold of the dropped upload was never released: {e}"),
        }
    }
}

/// A node serving files and the chat, with its users (and so its chat) in `db`.
struct ChatNode {
    dir: tempfile::TempDir,
    tcp: std::net::SocketAddr,
    chat: std::net::SocketAddr,
}

impl ChatNode {
    async fn start(db: &Postgres) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            root: dir.path().join("root").into(),
            users: db.url().parse().unwrap(),
            state_dir: dir.path().join("state"),
            tls: TlsSetup::SelfSigned,
            audit_log: None,
            limits: fast_limits(),
        };
        let server = ftprep::server::Server::open(&config).await.unwrap();
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let chat = socket.local_addr().unwrap();
        let identity = server.identity().unwrap().clone();
        let store = server.chat_store().unwrap();
        let service = server
            .chat(
                socket,
                &identity,
                store,
                ftprep::server::chat::ChatSettings::default(),
            )
            .unwrap();
        tokio::spawn(service.run(tokio_util::sync::CancellationToken::new()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = listener.local_addr().unwrap();
        tokio::spawn(server.run(listener, std::future::pending()));
        ChatNode { dir, tcp, chat }
    }

    fn security(&self) -> ftprep::client::Security {
        ftprep::client::Security::Pinned {
            known_hosts: ftprep::client::KnownHosts::at(self.dir.path().join("known_hosts")),
            unknown: ftprep::client::UnknownServer::AcceptNew,
        }
    }

    async fn chat_as(&self, name: &str) -> ftprep::client::chat::ChatClient {
        let user = Username::parse(name).unwrap();
        let mut client = ftprep::client::Client::connect(&self.tcp.to_string(), &self.security())
            .await
            .unwrap();
        let keys = client.login_with_password(&user, "pw").await.unwrap();
        ftprep::client::chat::ChatClient::connect(
            &self.chat.to_string(),
            &self.security(),
            &user,
            &keys,
        )
        .await
        .unwrap()
    }
}

/// The next message event within a deadline (other events skipped), acknowledged: sender
/// and text.
async fn next_message(client: &mut ftprep::client::chat::ChatClient) -> (String, String) {
    loop {
        if let ChatEvent::Message(message) = common::next_chat_event(client).await {
            client.ack(message.id).await.unwrap();
            return (message.from, message.text);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn users_on_different_nodes_chat_as_if_on_one_server() {
    let db = Postgres::start();
    let users: UserDatabase = db.url().parse().unwrap();
    for name in ["alice", "bob"] {
        let record = UserRecord::new(
            Username::parse(name).unwrap(),
            Verifier::generate("pw", common::TEST_ITERATIONS),
        );
        user_admin(&users).await.unwrap().add(record).await.unwrap();
    }
    let (a, b) = (ChatNode::start(&db).await, ChatNode::start(&db).await);
    let mut alice = a.chat_as("alice").await;
    let mut bob = b.chat_as("bob").await;
    // A request made on A reaches bob on B, who accepts it there: both hear of the
    // friendship and of each other's presence.
    alice.add("bob").await.unwrap();
    assert_eq!(
        common::next_chat_event(&mut bob).await,
        ChatEvent::FriendRequest {
            from: "alice".into()
        }
    );
    bob.add("alice").await.unwrap();
    let friends_now = ChatEvent::Friendship {
        name: "bob".into(),
        state: Some(ftprep::chat::FriendState::Friends),
    };
    assert_eq!(common::next_chat_event(&mut alice).await, friends_now);
    assert_eq!(
        common::next_chat_event(&mut alice).await,
        ChatEvent::Presence {
            name: "bob".into(),
            online: true
        }
    );
    let friends = alice.friends().await.unwrap();
    assert_eq!(friends.len(), 1);
    assert_eq!(friends[0].state, ftprep::chat::FriendState::Friends);
    assert!(friends[0].online, "bob is online on the other node");

    // Live: sent on A, it reaches bob's session on B as it is stored, in order.
    for text in ["hello from A", "second", "third"] {
        alice.send("bob", text).await.unwrap();
    }
    for text in ["hello from A", "second", "third"] {
        assert_eq!(next_message(&mut bob).await, ("alice".into(), text.into()));
    }
    bob.send("alice", "hi from B").await.unwrap();
    assert_eq!(
        next_message(&mut alice).await,
        ("bob".into(), "hi from B".into())
    );

    // Several sessions of one user over two nodes are one presence: bob's session on A
    // comes and goes without a word to alice; his last one ending takes him offline.
    let bob_too = a.chat_as("bob").await;
    bob_too.close().await;
    bob.close().await;
    assert_eq!(
        common::next_chat_event(&mut alice).await,
        ChatEvent::Presence {
            name: "bob".into(),
            online: false
        }
    );

    // Offline: stored while bob is away, delivered when he connects to the other node.
    alice.send("bob", "while you were out").await.unwrap();
    let mut bob_on_a = a.chat_as("bob").await;
    assert_eq!(
        next_message(&mut bob_on_a).await,
        ("alice".into(), "while you were out".into())
    );
    let history = bob_on_a.history("alice", 10).await.unwrap();
    let texts: Vec<&str> = history.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "hello from A",
            "second",
            "third",
            "hi from B",
            "while you were out"
        ]
    );
}

/// Issue 27.7: the file-count quota held on neither node of two sharing an object store
/// (six concurrent new files under a quota of 4 all went in). Uploads in progress count
/// on every node.
#[tokio::test(flavor = "multi_thread")]
async fn a_file_count_quota_holds_across_nodes_sharing_an_object_store() {
    let db = Postgres::start();
    let s3 = common::s3::S3Server::start();
    let (a, b) = alice_on_two_object_nodes(&db, &s3, |alice| alice.files = Some(4)).await;
    let file = a.dir.path().join("small");
    std::fs::write(&file, b"data").unwrap();
    let mut clients = Vec::new();
    for i in 0..6 {
        let node = if i % 2 == 0 { &a } else { &b };
        clients.push(node.login("alice", "pw").await);
    }
    let stored = common::concurrent_new_files(&mut clients, &file).await;
    assert!(
        (1..=4).contains(&stored),
        "{stored} of 6 stored under a quota of 4"
    );
    let mut on_b = b.login("alice", "pw").await;
    assert_eq!(on_b.list("").await.unwrap().len(), stored);
    assert_eq!(on_b.disk_usage().await.unwrap().entries, stored as u64);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chat_store_in_postgres_keeps_every_rule() {
    let db = Postgres::start();
    let database = ftprep::server::postgres::PgDatabase::connect(&db.url())
        .await
        .unwrap();
    let store = ftprep::server::chat::store::postgres::PgChatStore::new(database);
    common::chat_store::every_rule(&store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_begun_on_one_node_resumes_on_another_from_the_database() {
    let db = Postgres::start();
    let s3 = common::s3::S3Server::start();
    let users: UserDatabase = db.url().parse().unwrap();
    let record = UserRecord::new(
        Username::parse("alice").unwrap(),
        Verifier::generate("pw", common::TEST_ITERATIONS),
    );
    user_admin(&users).await.unwrap().add(record).await.unwrap();
    let (a, b) = (
        object_node_on(&db, &s3).await,
        object_node_on(&db, &s3).await,
    );
    const PART: usize = 8 << 20;
    let data: Vec<u8> = (0..2 * PART + 99).map(|i| (i % 251) as u8).collect();
    let local = a.dir.path().join("data");
    std::fs::write(&local, &data).unwrap();

    // Through A: one part and a bit, then the upload stops (a request out of turn ends it,
    // keeping what was stored; the answer comes once A has let it go).
    let mut on_a = a.login("alice", "pw").await;
    common::start_upload(&mut on_a, "data", data.len() as u64, false).await;
    for chunk in data[..PART + 10].chunks(ftprep::commands::MAX_CHUNK) {
        common::send_chunk(&mut on_a, chunk).await;
    }
    let stopped = on_a
        .raw_request(&ftprep::commands::Request::Usage)
        .await
        .unwrap_err();
    assert_eq!(
        code_of(&stopped),
        Some(ErrorCode::UnexpectedRequest),
        "{stopped}"
    );
    // Its state is in the database, not in the bucket.
    let in_bucket: Vec<_> = common::files_under(&s3.on_disk("cluster"));
    assert!(
        in_bucket.iter().all(|name| !name.contains(".ftprep-part-")),
        "{in_bucket:?}"
    );

    let mut on_b = b.login("alice", "pw").await;
    let resume = ftprep::client::TransferOptions {
        resume: true,
        ..Default::default()
    };
    let done = on_b
        .put_file(&local, "data", resume, &NoProgress)
        .await
        .unwrap();
    assert_eq!(done.resumed_from, PART as u64);
    let back = b.dir.path().join("back");
    on_b.get_file("data", &back, Default::default(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), data);
}

/// `ftpd serve` as a process, stopped when dropped; what it logs is read as it comes.
struct ServeProcess {
    child: std::process::Child,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl ServeProcess {
    fn start(args: &[&str]) -> Self {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_ftpd"))
            .arg("serve")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let kept = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut log = kept.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        ServeProcess { child, log }
    }

    /// Waits (polling, with a deadline) for the line holding `marker`; what follows it on
    /// that line, up to a space.
    fn logged_after(&self, marker: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(rest) = self.log.lock().unwrap().split(marker).nth(1) {
                return rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {marker:?} in {}",
                self.log.lock().unwrap()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Issue 30: SFTP with the users in PostgreSQL. A key the admin adds to the database logs
/// in through OpenSSH's `sftp` on a running server; what it puts lands in the home, and the
/// audit names the front end; once the key is removed, logins with it are refused.
#[test]
fn sftp_logs_in_with_keys_kept_in_postgres() {
    let db = Postgres::start();
    let added = admin(
        &db,
        &[
            "adduser",
            "alice",
            "--password-stdin",
            "--iterations",
            "4096",
        ],
        "pw\n",
    );
    succeeded(&added);
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("alice_key");
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "alice", "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen (OpenSSH's client; scripts/test.sh installs it)");
    succeeded(&keygen);
    let public = format!("{}.pub", key.display());
    let shown = succeeded(&admin(&db, &["addkey", "alice", &public], ""));
    let fingerprint = shown.split_whitespace().nth(4).unwrap().to_owned();
    assert!(fingerprint.starts_with("SHA256:"), "{shown}");

    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let server = ServeProcess::start(&[
        "--listen",
        "127.0.0.1:0",
        "--plaintext",
        "--time-listen",
        "none",
        "--chat-listen",
        "none",
        "--sftp-listen",
        "127.0.0.1:0",
        "--users",
        &db.url(),
        "--root",
        &path("root"),
        "--state-dir",
        &path("state"),
        "--audit-log",
        &path("audit.jsonl"),
    ]);
    let addr = server.logged_after("SFTP (SSH) answering addr=");
    let port = addr.rsplit(':').next().unwrap().to_owned();
    std::fs::write(dir.path().join("hello.txt"), "from sftp\n").unwrap();
    let sftp = |batch: &str| {
        fed(
            Command::new("sftp")
                .current_dir(dir.path())
                .args(["-P", &port, "-i"])
                .arg(&key)
                .args([
                    "-F",
                    "/dev/null",
                    "-o",
                    "IdentitiesOnly=yes",
                    "-o",
                    "BatchMode=yes",
                    "-o",
                    "StrictHostKeyChecking=no",
                    "-o",
                    "UserKnownHostsFile=/dev/null",
                    "-b",
                    "-",
                    "alice@127.0.0.1",
                ]),
            batch,
        )
    };
    succeeded(&sftp("put hello.txt\n"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("root/alice/hello.txt")).unwrap(),
        "from sftp\n"
    );
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(
        audit
            .lines()
            .any(|l| l.contains(r#""event":"put""#) && l.contains(r#""via":"sftp""#)),
        "{audit}"
    );

    succeeded(&admin(&db, &["delkey", "alice", &fingerprint], ""));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while sftp("ls\n").status.success() {
        assert!(
            std::time::Instant::now() < deadline,
            "the key still logs in after delkey"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
