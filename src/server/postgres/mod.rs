//! PostgreSQL, for several `ftpd` nodes that share their users and the state that must hold
//! across nodes (`--users postgres://...`).
//!
//! - this file: [`PgDatabase`], the connection (made again when lost) and the migrations
//!   (`migrations/postgres/`, applied by refinery under an advisory lock, so nodes starting
//!   together migrate once).
//! - [`users`]: the users, the same records as `users.db`.
//! - [`guard`]: failed logins and lockouts, counted over every node.
//! - [`secret`]: the mock-login secret, the same on every node.

pub mod guard;
pub mod secret;
pub mod users;

use std::sync::Arc;

use tokio_postgres::{Client, NoTls};

use crate::error::UserDbError;
pub use guard::PgLoginGuard;
pub use users::PgUserStore;

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
    /// [`UserDbError::Database`]: the URL does not parse, the server cannot be reached or
    /// refuses, or a migration fails.
    pub async fn connect(url: &str) -> Result<Arc<Self>, UserDbError> {
        let db = PgDatabase {
            url: url.to_owned(),
            client: tokio::sync::Mutex::new(None),
        };
        db.client().await?;
        Ok(Arc::new(db))
    }

    /// The connection, made again if it was lost.
    pub(crate) async fn client(&self) -> Result<Arc<Client>, UserDbError> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref()
            && !client.is_closed()
        {
            return Ok(Arc::clone(client));
        }
        let client = Arc::new(connect(&self.url).await?);
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }
}

/// Turns a database error into one line saying what was being done.
pub(crate) fn database_error(what: &str) -> impl FnOnce(tokio_postgres::Error) -> UserDbError + '_ {
    move |e| UserDbError::Database(format!("{what}: {}", describe(&e)))
}

/// A database error in a line: the server's message when it sent one.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => e.to_string(),
    }
}

/// Connects and migrates; the connection's I/O runs on a task of its own.
async fn connect(url: &str) -> Result<Client, UserDbError> {
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| UserDbError::Database(format!("the URL: {e}")))?;
    let (mut client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, config.connect(NoTls))
        .await
        .map_err(|_| UserDbError::Database("connecting: no answer in 10 s".into()))?
        .map_err(database_error("connecting"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %describe(&e), "the connection to the database ended");
        }
    });
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(database_error("waiting to migrate"))?;
    let migrated = embedded::migrations::runner()
        .set_migration_table_name(MIGRATION_TABLE)
        .run_async(&mut client)
        .await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(database_error("migrating"))?;
    migrated.map_err(|e| UserDbError::Database(format!("migrating: {e}")))?;
    Ok(client)
}
