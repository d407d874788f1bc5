//! Users in PostgreSQL (`--users postgres://...`), for several `ftpd` nodes sharing one
//! user database: the same records as `users.db` (name, the SCRAM verifier in PostgreSQL's
//! own text format, quotas) in a table `ftpd` creates and migrates itself
//! (`migrations/postgres/`, applied by refinery under an advisory lock, so nodes starting
//! together migrate once).
//!
//! Every login reads its user from the database, so `passwd` or `deluser` run against any
//! node counts on every node from the next login on. A lost connection is made again at the
//! next use; until then logins fail as "server busy" and nothing else stops.

use std::sync::Arc;

use async_trait::async_trait;
use tokio_postgres::{Client, NoTls};

use super::userdb::{UserRecord, UserStore};
use crate::auth::Verifier;
use crate::error::UserDbError;
use crate::username::Username;

mod embedded {
    refinery::embed_migrations!("migrations/postgres");
}

/// The advisory lock held while migrating: nodes starting at once take turns.
const MIGRATION_LOCK: i64 = 0x6674_7072_6570;

/// Where `ftpd` keeps which migrations ran.
const MIGRATION_TABLE: &str = "ftpd_schema_history";

/// A user database in PostgreSQL.
pub struct PgUserStore {
    url: String,
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
}

impl std::fmt::Debug for PgUserStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        f.debug_struct("PgUserStore").finish_non_exhaustive()
    }
}

fn database_error(what: &str) -> impl FnOnce(tokio_postgres::Error) -> UserDbError + '_ {
    move |e| UserDbError::Database(format!("{what}: {}", describe(&e)))
}

/// A database error in a line: the server's message when it sent one.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => e.to_string(),
    }
}

impl PgUserStore {
    /// Connects to `url` and brings the tables up to date.
    ///
    /// # Errors
    /// [`UserDbError::Database`]: the URL does not parse, the server cannot be reached or
    /// refuses, or a migration fails.
    pub async fn connect(url: &str) -> Result<Self, UserDbError> {
        let store = PgUserStore {
            url: url.to_owned(),
            client: tokio::sync::Mutex::new(None),
        };
        store.client().await?;
        Ok(store)
    }

    /// The connection, made again if it was lost.
    async fn client(&self) -> Result<Arc<Client>, UserDbError> {
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

    /// Adds `record`.
    ///
    /// # Errors
    /// [`UserDbError::UserExists`], or the database.
    pub async fn add(&self, record: &UserRecord) -> Result<(), UserDbError> {
        let added = self
            .client()
            .await?
            .execute(
                "INSERT INTO ftpd_users (name, verifier, iterations, quota, files) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
                &[
                    &record.name.as_str(),
                    &record.verifier.to_string(),
                    &i32::try_from(record.verifier.iterations).unwrap_or(i32::MAX),
                    &to_column(record.quota)?,
                    &to_column(record.files)?,
                ],
            )
            .await
            .map_err(database_error("adding a user"))?;
        if added == 0 {
            return Err(UserDbError::UserExists(record.name.to_string()));
        }
        Ok(())
    }

    /// Sets `name`'s quota of bytes (`None`: unlimited).
    ///
    /// # Errors
    /// [`UserDbError::NoSuchUser`], or the database.
    pub async fn set_quota(&self, name: &Username, quota: Option<u64>) -> Result<(), UserDbError> {
        self.update(
            name,
            "UPDATE ftpd_users SET quota = $2, changed = now() WHERE name = $1",
            to_column(quota)?,
        )
        .await
    }

    /// Sets `name`'s quota of entries (`None`: unlimited).
    ///
    /// # Errors
    /// [`UserDbError::NoSuchUser`], or the database.
    pub async fn set_file_quota(
        &self,
        name: &Username,
        files: Option<u64>,
    ) -> Result<(), UserDbError> {
        self.update(
            name,
            "UPDATE ftpd_users SET files = $2, changed = now() WHERE name = $1",
            to_column(files)?,
        )
        .await
    }

    async fn update(
        &self,
        name: &Username,
        statement: &str,
        value: Option<i64>,
    ) -> Result<(), UserDbError> {
        let changed = self
            .client()
            .await?
            .execute(statement, &[&name.as_str(), &value])
            .await
            .map_err(database_error("changing a user"))?;
        if changed == 0 {
            return Err(UserDbError::NoSuchUser(name.to_string()));
        }
        Ok(())
    }

    /// Replaces `name`'s verifier (a new password).
    ///
    /// # Errors
    /// [`UserDbError::NoSuchUser`], or the database.
    pub async fn set_verifier(
        &self,
        name: &Username,
        verifier: &Verifier,
    ) -> Result<(), UserDbError> {
        let changed = self
            .client()
            .await?
            .execute(
                "UPDATE ftpd_users SET verifier = $2, iterations = $3, changed = now() \
                 WHERE name = $1",
                &[
                    &name.as_str(),
                    &verifier.to_string(),
                    &i32::try_from(verifier.iterations).unwrap_or(i32::MAX),
                ],
            )
            .await
            .map_err(database_error("changing a password"))?;
        if changed == 0 {
            return Err(UserDbError::NoSuchUser(name.to_string()));
        }
        Ok(())
    }

    /// Removes `name`.
    ///
    /// # Errors
    /// [`UserDbError::NoSuchUser`], or the database.
    pub async fn remove(&self, name: &Username) -> Result<(), UserDbError> {
        let removed = self
            .client()
            .await?
            .execute("DELETE FROM ftpd_users WHERE name = $1", &[&name.as_str()])
            .await
            .map_err(database_error("removing a user"))?;
        if removed == 0 {
            return Err(UserDbError::NoSuchUser(name.to_string()));
        }
        Ok(())
    }

    /// Every user, by name.
    ///
    /// # Errors
    /// The database, or a row that does not make a record.
    pub async fn users(&self) -> Result<Vec<UserRecord>, UserDbError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT name, verifier, quota, files FROM ftpd_users ORDER BY name",
                &[],
            )
            .await
            .map_err(database_error("listing the users"))?;
        rows.iter().map(record).collect()
    }
}

#[async_trait]
impl UserStore for PgUserStore {
    async fn user(&self, name: &Username) -> Result<Option<UserRecord>, UserDbError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT name, verifier, quota, files FROM ftpd_users WHERE name = $1",
                &[&name.as_str()],
            )
            .await
            .map_err(database_error("looking up a user"))?;
        row.as_ref().map(record).transpose()
    }

    async fn iteration_counts(&self) -> Result<Vec<(u32, u64)>, UserDbError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT iterations, count(*) FROM ftpd_users GROUP BY iterations ORDER BY 1",
                &[],
            )
            .await
            .map_err(database_error("counting iterations"))?;
        let mut counts = Vec::with_capacity(rows.len());
        for row in &rows {
            let iterations: i32 = row.try_get(0).map_err(database_error("iterations"))?;
            let users: i64 = row.try_get(1).map_err(database_error("iterations"))?;
            if let (Ok(iterations), Ok(users)) = (u32::try_from(iterations), u64::try_from(users)) {
                counts.push((iterations, users));
            }
        }
        Ok(counts)
    }
}

/// A quota as the table keeps it.
fn to_column(limit: Option<u64>) -> Result<Option<i64>, UserDbError> {
    limit
        .map(|n| i64::try_from(n).map_err(|_| UserDbError::Database(format!("{n} is too large"))))
        .transpose()
}

/// A row of `name, verifier, quota, files` as a record; a row that does not make one (edited
/// by hand, say) is an error naming the user.
fn record(row: &tokio_postgres::Row) -> Result<UserRecord, UserDbError> {
    let column = database_error("reading a user");
    let name: String = row.try_get(0).map_err(column)?;
    let bad = |what: String| UserDbError::Database(format!("user {name:?}: {what}"));
    let verifier: String = row.try_get(1).map_err(database_error("reading a user"))?;
    let quota: Option<i64> = row.try_get(2).map_err(database_error("reading a user"))?;
    let files: Option<i64> = row.try_get(3).map_err(database_error("reading a user"))?;
    let parsed = Username::parse(&name).map_err(|e| bad(e.to_string()))?;
    let verifier: Verifier = verifier.parse().map_err(|e| bad(format!("{e}")))?;
    let mut record = UserRecord::new(parsed, verifier);
    let limit = |n: Option<i64>| {
        n.map(|n| u64::try_from(n).map_err(|_| bad(format!("negative limit {n}"))))
            .transpose()
    };
    record.quota = limit(quota)?;
    record.files = limit(files)?;
    Ok(record)
}

/// Connects and migrates; the connection's I/O runs on a task of its own.
async fn connect(url: &str) -> Result<Client, UserDbError> {
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| UserDbError::Database(format!("the URL: {e}")))?;
    let (mut client, connection) =
        tokio::time::timeout(std::time::Duration::from_secs(10), config.connect(NoTls))
            .await
            .map_err(|_| UserDbError::Database("connecting: no answer in 10 s".into()))?
            .map_err(database_error("connecting"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %describe(&e), "the connection to the user database ended");
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
