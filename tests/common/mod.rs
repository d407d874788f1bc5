//! Shared test helpers: a real server on 127.0.0.1:0 in a temporary directory.
#![allow(dead_code)]

pub mod chat_store;
pub mod s3;
pub mod users_suite;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use ftprep::auth::{ClientKeys, Verifier};
use ftprep::checksum::Checksum;
use ftprep::client::shell::Session;
use ftprep::client::{
    Client, CredentialStore, KnownHosts, SavedLogin, Security, Transport, UnknownServer,
};
use ftprep::commands::{Request, Response};
use ftprep::server::{Config, Limits, ObjectLocation, Server, StorageRoot, TlsSetup, users};
use ftprep::username::Username;
use tempfile::TempDir;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Iterations for test users: the RFC minimum keeps tests fast.
pub const TEST_ITERATIONS: u32 = 4096;

/// A running server and the directory that holds its files.
pub struct TestServer {
    pub addr: SocketAddr,
    /// How clients connect: plaintext, or TLS pinning on first use.
    pub security: Security,
    pub dir: TempDir,
    pub users: PathBuf,
    pub root: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<ftprep::Result<()>>>,
}

impl TestServer {
    /// Starts a server with the given users (name, password) and default limits, except
    /// that failed logins are slowed down only a little (tests fail logins on purpose).
    pub async fn start(users: &[(&str, &str)]) -> Self {
        Self::start_with(users, fast_limits()).await
    }

    /// Starts a plaintext server with the given limits.
    pub async fn start_with(users: &[(&str, &str)], limits: Limits) -> Self {
        Self::start_full(users, limits, TlsSetup::Plaintext).await
    }

    /// Starts a TLS server with a self-signed certificate.
    pub async fn start_tls(users: &[(&str, &str)]) -> Self {
        Self::start_full(users, fast_limits(), TlsSetup::SelfSigned).await
    }

    /// Starts a server with the given limits and TLS setup.
    pub async fn start_full(users: &[(&str, &str)], limits: Limits, tls: TlsSetup) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            root: dir.path().join("root").into(),
            users: dir.path().join("users.db").into(),
            state_dir: dir.path().join("state"),
            tls: tls.clone(),
            audit_log: Some(dir.path().join("audit.jsonl")),
            limits,
        };
        for (name, password) in users {
            add_user(&dir.path().join("users.db"), name, password);
        }
        Self::start_config(dir, config).await
    }

    /// Starts a plaintext server keeping its files in an object store.
    pub async fn start_objects(users: &[(&str, &str)], root: ObjectLocation) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            root: StorageRoot::Object(root),
            users: dir.path().join("users.db").into(),
            state_dir: dir.path().join("state"),
            tls: TlsSetup::Plaintext,
            audit_log: Some(dir.path().join("audit.jsonl")),
            limits: fast_limits(),
        };
        for (name, password) in users {
            add_user(&dir.path().join("users.db"), name, password);
        }
        Self::start_config(dir, config).await
    }

    /// Starts a server on `config`, whose files are in `dir`.
    pub async fn start_config(dir: TempDir, config: Config) -> Self {
        let tls = config.tls.clone();
        let server = Server::open(&config).await.unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(listener, async {
            let _ = rx.await;
        }));
        let security = match tls {
            TlsSetup::Plaintext => Security::Plaintext,
            _ => Security::Pinned {
                known_hosts: KnownHosts::at(dir.path().join("client/known_hosts")),
                unknown: UnknownServer::AcceptNew,
            },
        };
        TestServer {
            addr,
            security,
            users: dir.path().join("users.db"),
            dir,
            root: match config.root {
                StorageRoot::Dir(root) => root,
                // Nothing of it on this disk: tests look through the S3 server instead.
                StorageRoot::Object(_) => PathBuf::from("/nonexistent"),
            },
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// A client connected to this server (hello exchanged, not logged in).
    pub async fn connect(&self) -> Client {
        self.try_connect().await.unwrap()
    }

    /// As [`TestServer::connect`], for a server that may refuse (busy).
    pub async fn try_connect(&self) -> Result<Client, ftprep::Error> {
        Client::connect(&self.addr.to_string(), &self.security).await
    }

    /// A client logged in with a password.
    pub async fn login(&self, name: &str, password: &str) -> Client {
        let mut client = self.connect().await;
        client
            .login_with_password(&Username::parse(name).unwrap(), password)
            .await
            .unwrap();
        client
    }

    /// Tells the server to shut down, without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Tries a password login on a new connection.
    pub async fn try_login(&self, name: &str, password: &str) -> ftprep::Result<ClientKeys> {
        self.connect()
            .await
            .login_with_password(&Username::parse(name).unwrap(), password)
            .await
    }

    /// A shell session as `ftpc` opens one: the login saved in a credential store (beside
    /// the server's files), then connected from it. Plaintext servers only.
    pub async fn session(&self, name: &str, password: &str) -> Session {
        assert!(matches!(self.security, Security::Plaintext));
        let keys = self.try_login(name, password).await.unwrap();
        let store = CredentialStore::at(self.dir.path().join("credentials"));
        store
            .save(SavedLogin {
                server: self.addr.to_string(),
                user: Username::parse(name).unwrap(),
                keys,
                transport: Transport::Plaintext,
            })
            .unwrap();
        let known_hosts = KnownHosts::at(self.dir.path().join("known_hosts"));
        Session::connect(&store, None, known_hosts, UnknownServer::Refuse)
            .await
            .unwrap()
    }

    /// Stops the server and waits until every session has finished.
    pub async fn stop(mut self) {
        self.begin_shutdown();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("server did not stop")
                .unwrap()
                .unwrap();
        }
    }
}

/// Starts an upload by hand, from zero, and checks the server is ready for the data: for
/// tests that stop half way, damage a chunk or take their time. Then [`send_chunk`] and
/// [`finish_upload`].
pub async fn start_upload<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Client<S>,
    path: &str,
    size: u64,
    overwrite: bool,
) {
    let reply = client
        .raw_request(&Request::PutStart {
            path: path.into(),
            size,
            overwrite,
            resume: false,
            preserve: None,
        })
        .await
        .unwrap();
    assert_eq!(reply, Response::PutReady { offset: 0 });
}

/// Sends the next chunk of an upload started by hand, without waiting for a reply.
pub async fn send_chunk<S: AsyncRead + AsyncWrite + Unpin>(client: &mut Client<S>, chunk: &[u8]) {
    client
        .send_raw(&Request::PutData {
            data: Bytes::copy_from_slice(chunk),
        })
        .await
        .unwrap();
}

/// Ends an upload started by hand with the checksum of `data`; the server's answer.
pub async fn finish_upload<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Client<S>,
    data: &[u8],
) -> ftprep::Result<Response> {
    let checksum = Checksum::of(data);
    client.raw_request(&Request::PutFinish { checksum }).await
}

/// Default limits with failed-login delays of a millisecond.
pub fn fast_limits() -> Limits {
    let mut limits = Limits::default();
    limits.lockout.base_delay = Duration::from_millis(1);
    limits.lockout.max_delay = Duration::from_millis(5);
    limits
}

/// Adds a user to a `users.db` with the fast test iteration count.
pub fn add_user(users: &std::path::Path, name: &str, password: &str) {
    users::file::add_user(
        users,
        users::UserRecord::new(
            Username::parse(name).unwrap(),
            Verifier::generate(password, TEST_ITERATIONS),
        ),
    )
    .unwrap();
}

/// Names in a directory on disk, sorted.
pub fn names_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// The names a remote directory lists, sorted.
pub async fn names_listed<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Client<S>,
    dir: &str,
) -> Vec<String> {
    let mut names: Vec<String> = client
        .list(dir)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    names.sort();
    names
}

/// A CA's key and self-signed certificate.
fn new_ca() -> (rcgen::KeyPair, rcgen::CertificateParams, rcgen::Certificate) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    (key, params, cert)
}

/// A test CA and a certificate it signed for `names`: the CA's certificate, the leaf's
/// certificate and the leaf's key, PEM.
pub fn ca_signed_leaf(names: &[&str]) -> (String, String, String) {
    let (ca_key, ca_params, ca_cert) = new_ca();
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let names = names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let leaf = rcgen::CertificateParams::new(names)
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    (ca_cert.pem(), leaf.pem(), leaf_key.serialize_pem())
}

/// The certificate (PEM) of a CA that signed nothing the tests use.
pub fn unrelated_ca() -> String {
    new_ca().2.pem()
}

/// Starts a password login by hand: the client, its first message, and the server's
/// first message (the challenge).
pub async fn auth_start(
    server: &TestServer,
    user: &str,
) -> (Client, ftprep::auth::ClientFirst, String) {
    let mut client = server.connect().await;
    let first = ftprep::auth::ClientFirst::new(user);
    let reply = client
        .raw_request(&Request::AuthStart {
            mechanism: ftprep::auth::MECHANISM.into(),
            message: first.message(),
        })
        .await
        .unwrap();
    let Response::AuthChallenge { message } = reply else {
        panic!("expected a challenge, got {reply:?}");
    };
    (client, first, message)
}

/// The code of the server's error reply, if `err` is one.
pub fn code_of(err: &ftprep::Error) -> Option<ftprep::commands::ErrorCode> {
    match err {
        ftprep::Error::Remote { code, .. } => Some(*code),
        _ => None,
    }
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Every file under `dir` on disk (none if it is not there), as sorted paths relative to it.
pub fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&at) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(
                    path.strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    found.sort();
    found
}

/// A chat client's next event but the "caught up" mark, within a deadline.
pub async fn next_chat_event(
    client: &mut ftprep::client::chat::ChatClient,
) -> ftprep::chat::ChatEvent {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), client.next_event())
            .await
            .expect("an event in time")
            .unwrap()
            .expect("the event stream open");
        if event != ftprep::chat::ChatEvent::CaughtUp {
            return event;
        }
    }
}

/// Uploads `local` as `f0`, `f1`, ... with each of `clients` at once; how many were stored.
/// Every refusal must be the quota's.
pub async fn concurrent_new_files(clients: &mut [Client], local: &std::path::Path) -> usize {
    let puts = clients
        .iter_mut()
        .enumerate()
        .map(|(i, client)| async move {
            client
                .put_file(
                    local,
                    &format!("f{i}"),
                    ftprep::client::TransferOptions::default(),
                    &ftprep::client::NoProgress,
                )
                .await
        });
    let results = futures_util::future::join_all(puts).await;
    for err in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(
            code_of(err),
            Some(ftprep::commands::ErrorCode::QuotaExceeded),
            "{err}"
        );
    }
    results.iter().filter(|r| r.is_ok()).count()
}
