//! The PostgreSQL driver every PostgreSQL engine stands on, for several `ftpd` nodes that
//! share their users and the state that must hold across nodes (`--users postgres://...`):
//! [`PgDatabase`], the connection (made again when lost; over TLS, the server's certificate
//! verified, when the URL says `sslmode=require`), the migrations (`migrations/postgres/`,
//! applied by refinery under an advisory lock, so nodes starting together migrate once) and
//! the mapping of its errors. The engines themselves live with their concerns:
//! `users/postgres.rs`, `guard/postgres.rs`, `quota/postgres.rs`, `secret/postgres.rs`,
//! `chat/store/postgres.rs`, `chat/bus/postgres.rs`, `storage/object/postgres.rs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::sync::mpsc;
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{AsyncMessage, Client, NoTls, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::DatabaseError;

mod embedded {
    refinery::embed_migrations!("migrations/postgres");
}

/// The advisory lock held while migrating: nodes starting at once take turns.
const MIGRATION_LOCK: i64 = 0x6674_7072_6570;

/// Where `ftpd` keeps which migrations ran.
const MIGRATION_TABLE: &str = "ftpd_schema_history";

/// How long connecting may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A PostgreSQL database: one connection (queries from many tasks are pipelined on it),
/// made again at the next use after it was lost.
pub struct PgDatabase {
    url: String,
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
    /// A second connection for transactions, one at a time (statements of others must not
    /// land inside one, as they would on the shared connection).
    exclusive: tokio::sync::Mutex<Option<Client>>,
}

impl std::fmt::Debug for PgDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        f.debug_struct("PgDatabase").finish_non_exhaustive()
    }
}

impl PgDatabase {
    /// Connects to `url` and brings the tables up to date.
    ///
    /// # Errors
    /// [`DatabaseError`]: the URL does not parse, the server cannot be reached or
    /// refuses, or a migration fails.
    pub async fn connect(url: &str) -> Result<Arc<Self>, DatabaseError> {
        let mut client = connect(url, None).await?;
        migrate(&mut client).await?;
        Ok(Arc::new(PgDatabase {
            url: url.to_owned(),
            client: tokio::sync::Mutex::new(Some(Arc::new(client))),
            exclusive: tokio::sync::Mutex::new(None),
        }))
    }

    /// The connection, made again if it was lost.
    pub(crate) async fn client(&self) -> Result<Arc<Client>, DatabaseError> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref()
            && !client.is_closed()
        {
            return Ok(Arc::clone(client));
        }
        let client = Arc::new(connect(&self.url, None).await?);
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }

    /// The connection for transactions, for this caller alone until the guard is dropped;
    /// made (again) when needed.
    pub(crate) async fn exclusive(&self) -> Result<Exclusive<'_>, DatabaseError> {
        let mut slot = self.exclusive.lock().await;
        if slot.as_ref().is_none_or(Client::is_closed) {
            *slot = Some(connect(&self.url, None).await?);
        }
        Ok(Exclusive(slot))
    }

    /// A connection of its own that listens on `channel`: the client (the connection
    /// lasts as long as it), and the payloads of the notifications, until it ends.
    ///
    /// # Errors
    /// The database.
    pub(crate) async fn listen(
        &self,
        channel: &str,
    ) -> Result<(Client, mpsc::UnboundedReceiver<String>), DatabaseError> {
        let (sender, payloads) = mpsc::unbounded_channel();
        let client = connect(&self.url, Some(sender)).await?;
        client
            .batch_execute(&format!("LISTEN {channel}"))
            .await
            .map_err(database_error("listening for changes"))?;
        Ok((client, payloads))
    }
}

/// The transaction connection, held: see [`PgDatabase::exclusive`].
pub(crate) struct Exclusive<'a>(tokio::sync::MutexGuard<'a, Option<Client>>);

impl Exclusive<'_> {
    /// The connection (always there while held).
    pub(crate) fn client(&mut self) -> Result<&mut Client, DatabaseError> {
        self.0
            .as_mut()
            .ok_or_else(|| DatabaseError::plain("no connection to the database"))
    }
}

/// Runs a connection's I/O until it ends, handing the payloads of notifications to
/// `notifications` (when listening). Notifications are unbounded: they are a few bytes
/// each, and come only from changes an admin makes.
async fn drive<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    notifications: Option<mpsc::UnboundedSender<String>>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    while let Some(message) = messages.next().await {
        match message {
            Ok(AsyncMessage::Notification(notice)) => {
                if let Some(sender) = &notifications {
                    let _ = sender.send(notice.payload().to_owned());
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %describe(&e), "the connection to the database ended");
                return;
            }
        }
    }
}

/// Turns a database error into one line saying what was being done.
pub(crate) fn database_error(
    what: &str,
) -> impl FnOnce(tokio_postgres::Error) -> DatabaseError + '_ {
    move |e| DatabaseError::new(what, &describe(&e))
}

/// A database error in a line (escaped by [`DatabaseError::new`]): the server's
/// message when it sent one, otherwise the error and its causes (a TLS handshake that
/// failed says why).
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.message().to_owned();
    }
    let mut line = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(inner) = cause {
        line.push_str(&format!(": {inner}"));
        cause = inner.source();
    }
    line
}

/// `url` without its `sslrootcert=FILE` parameter (which tokio-postgres does not know), and
/// that file.
fn split_root_cert(url: &str) -> (String, Option<PathBuf>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut root = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.split_once('=') {
            Some(("sslrootcert", file)) => {
                root = Some(PathBuf::from(file));
                false
            }
            _ => true,
        })
        .collect();
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (url, root)
}

/// TLS to the database, the server's certificate verified (always: the server distrusts
/// what it talks to) against `root_file`'s certificates or, without one, the system's.
fn tls_connector(root_file: Option<&Path>) -> Result<MakeRustlsConnect, DatabaseError> {
    let tls_error = |what: String| DatabaseError::new("TLS to the database", &what);
    let mut roots = rustls::RootCertStore::empty();
    let certs = match root_file {
        Some(path) => CertificateDer::pem_file_iter(path)
            .and_then(|c| c.collect::<Result<Vec<_>, _>>())
            .map_err(|e| tls_error(format!("sslrootcert {}: {e}", path.display())))?,
        None => rustls_native_certs::load_native_certs().certs,
    };
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(tls_error(match root_file {
            Some(path) => format!("no CA certificate in {}", path.display()),
            None => "no CA certificates on this system (give sslrootcert=FILE)".into(),
        }));
    }
    let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// Connects with `tls` (`NoTls` for none); the connection's I/O runs on a task of its own,
/// which hands notifications to `notifications`.
async fn open<T>(
    config: &tokio_postgres::Config,
    tls: T,
    notifications: Option<mpsc::UnboundedSender<String>>,
) -> Result<Client, DatabaseError>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, config.connect(tls))
        .await
        .map_err(|_| DatabaseError::plain("connecting: no answer in 10 s"))?
        .map_err(database_error("connecting"))?;
    tokio::spawn(drive(connection, notifications));
    Ok(client)
}

/// Connects (over TLS when the URL says `sslmode=require`); the connection's I/O runs on a
/// task of its own, which hands notifications to `notifications`.
async fn connect(
    url: &str,
    notifications: Option<mpsc::UnboundedSender<String>>,
) -> Result<Client, DatabaseError> {
    let (url, root_file) = split_root_cert(url);
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| DatabaseError::new("the URL", &e.to_string()))?;
    // Only an explicit `require` means TLS: PostgreSQL's default (`prefer`) would accept
    // whatever certificate a server shows, which is no better than none.
    if config.get_ssl_mode() == SslMode::Require {
        let tls = tls_connector(root_file.as_deref())?;
        open(&config, tls, notifications).await
    } else {
        open(&config, NoTls, notifications).await
    }
}

/// Brings the tables up to date, once per database however many nodes start at once.
async fn migrate(client: &mut Client) -> Result<(), DatabaseError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(database_error("waiting to migrate"))?;
    let migrated = embedded::migrations::runner()
        .set_migration_table_name(MIGRATION_TABLE)
        .run_async(client)
        .await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(database_error("migrating"))?;
    migrated.map_err(|e| DatabaseError::new("migrating", &e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_certificate_is_taken_out_of_the_url() {
        assert_eq!(
            split_root_cert("postgres://h/db?sslmode=require&sslrootcert=/etc/ca.pem&x=1"),
            (
                "postgres://h/db?sslmode=require&x=1".to_owned(),
                Some(PathBuf::from("/etc/ca.pem"))
            )
        );
        assert_eq!(
            split_root_cert("postgres://h/db?sslrootcert=ca.pem"),
            ("postgres://h/db".to_owned(), Some(PathBuf::from("ca.pem")))
        );
        assert_eq!(
            split_root_cert("postgres://h/db"),
            ("postgres://h/db".to_owned(), None)
        );
    }
}
