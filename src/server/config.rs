//! What a server is made of, once the settings are read: where the users and the files
//! are (a path, or an engine's address: `postgres://...`, `s3://...`), the state directory,
//! TLS, the audit log, and every limit. [`super::settings`] reads them from the command
//! line and `ftpd.toml`; [`super::backends`] opens the engines they name.

use std::path::PathBuf;
use std::time::Duration;

use super::guard;
use super::tls::TlsSetup;

/// Where the embedded defaults live.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where users' files live: a directory holding one home per user, or an object
    /// store (`s3://bucket/prefix`).
    pub root: StorageRoot,
    /// The user database: `users.db` or PostgreSQL.
    pub users: UserDatabase,
    /// Private server state (the mock-login secret, the generated TLS identity).
    pub state_dir: PathBuf,
    /// TLS (the default) or plaintext.
    pub tls: TlsSetup,
    /// Where to append audit records, if anywhere.
    pub audit_log: Option<PathBuf>,
    /// Connection limits and timeouts.
    pub limits: Limits,
}

/// Bounds that keep one client from holding the server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; further ones are told the server is busy and closed.
    pub max_connections: usize,
    /// Connections one address may hold at once.
    pub max_connections_per_ip: usize,
    /// Logged-in sessions one user may hold at once.
    pub max_sessions_per_user: usize,
    /// Time a connection has to complete hello and login.
    pub login_timeout: Duration,
    /// Time a logged-in connection may stay silent.
    pub idle_timeout: Duration,
    /// Time a transfer or a listing may go without progress (no data from the client, or
    /// a reply the client does not read) before the connection is closed.
    pub stall_timeout: Duration,
    /// Transfers and listings running at once across all users; more are told the server
    /// is busy. Each holds a thread of the blocking pool while it runs.
    pub max_transfers: usize,
    /// Delays and lockouts after failed logins.
    pub lockout: guard::LockoutPolicy,
    /// At shutdown, how long running commands and transfers may take to finish.
    pub shutdown_grace: Duration,
    /// Over TLS, accept only SCRAM-SHA-256-PLUS: a login without channel binding could be
    /// a man in the middle's downgrade.
    pub require_channel_binding: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_connections_per_ip: 64,
            max_sessions_per_user: 32,
            login_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(15 * 60),
            stall_timeout: Duration::from_secs(120),
            max_transfers: 256,
            lockout: guard::LockoutPolicy::default(),
            shutdown_grace: Duration::from_secs(30),
            require_channel_binding: true,
        }
    }
}

/// Where users' files live: a directory (the embedded default) or an object store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageRoot {
    /// `ROOT/<user>` directories on the local filesystem.
    Dir(std::path::PathBuf),
    /// `s3://bucket/prefix`: one prefix per user in an S3-compatible store.
    Object(super::storage::object::ObjectLocation),
}

impl From<std::path::PathBuf> for StorageRoot {
    fn from(path: std::path::PathBuf) -> Self {
        StorageRoot::Dir(path)
    }
}

impl std::str::FromStr for StorageRoot {
    type Err = std::convert::Infallible;

    fn from_str(typed: &str) -> Result<Self, Self::Err> {
        Ok(if typed.starts_with("s3://") {
            StorageRoot::Object(super::storage::object::ObjectLocation {
                url: typed.to_owned(),
                options: Vec::new(),
            })
        } else {
            StorageRoot::Dir(typed.into())
        })
    }
}

impl std::fmt::Display for StorageRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageRoot::Dir(path) => write!(f, "{}", path.display()),
            StorageRoot::Object(location) => f.write_str(&location.url),
        }
    }
}

/// A user database: a file or a PostgreSQL URL.
#[derive(Clone, PartialEq, Eq)]
pub enum UserDatabase {
    /// `users.db`.
    File(PathBuf),
    /// A PostgreSQL URL.
    Postgres(String),
}

impl From<PathBuf> for UserDatabase {
    fn from(path: PathBuf) -> Self {
        UserDatabase::File(path)
    }
}

impl std::str::FromStr for UserDatabase {
    type Err = std::convert::Infallible;

    fn from_str(typed: &str) -> Result<Self, Self::Err> {
        Ok(
            if typed.starts_with("postgres://") || typed.starts_with("postgresql://") {
                UserDatabase::Postgres(typed.to_owned())
            } else {
                UserDatabase::File(typed.into())
            },
        )
    }
}

/// The path, or the URL without its password: fit for logs and messages.
impl std::fmt::Display for UserDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserDatabase::File(path) => write!(f, "{}", path.display()),
            UserDatabase::Postgres(url) => f.write_str(&without_password(url)),
        }
    }
}

impl std::fmt::Debug for UserDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UserDatabase({self})")
    }
}

/// `postgres://user:secret@host/db` as `postgres://user:***@host/db`; a `password=` query
/// parameter is masked too.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let masked: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", masked.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_a_database_and_anything_else_a_file() {
        let parse = |s: &str| s.parse::<UserDatabase>().unwrap();
        assert_eq!(
            parse("postgres://u@h/db"),
            UserDatabase::Postgres("postgres://u@h/db".into())
        );
        assert!(matches!(parse("postgresql://h"), UserDatabase::Postgres(_)));
        assert_eq!(parse("./users.db"), UserDatabase::File("./users.db".into()));
        assert_eq!(
            parse("postgres.db"),
            UserDatabase::File("postgres.db".into())
        );
    }

    #[test]
    fn passwords_never_show() {
        let shown = |s: &str| s.parse::<UserDatabase>().unwrap().to_string();
        assert_eq!(
            shown("postgres://ftpd:s3cret@db.example.org:5432/ftpd?sslmode=require"),
            "postgres://ftpd:***@db.example.org:5432/ftpd?sslmode=require"
        );
        assert_eq!(
            shown("postgresql://db/ftpd?user=ftpd&password=s3cret"),
            "postgresql://db/ftpd?user=ftpd&password=***"
        );
        assert_eq!(shown("postgres://ftpd@db/x"), "postgres://ftpd@db/x");
        assert!(
            !format!("{:?}", "postgres://a:pw@h".parse::<UserDatabase>().unwrap()).contains("pw")
        );
    }
}
