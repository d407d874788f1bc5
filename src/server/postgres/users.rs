//! The users in PostgreSQL: the same records as `users.db` (name, the SCRAM verifier in
//! PostgreSQL's own text format, quotas).
//!
//! Every login reads its user from the database, so `passwd` or `deluser` run against any
//! node counts on every node from the next login on. Until a lost connection is made again,
//! logins are answered "server busy" and nothing else stops.

use std::sync::Arc;

use async_trait::async_trait;

use super::{PgDatabase, database_error};
use crate::auth::Verifier;
use crate::error::UserDbError;
use crate::server::userdb::{UserRecord, UserStore};
use crate::username::Username;

/// The users of a [`PgDatabase`].
#[derive(Debug, Clone)]
pub struct PgUserStore {
    db: Arc<PgDatabase>,
}

impl PgUserStore {
    /// The users of `db`.
    pub fn new(db: Arc<PgDatabase>) -> Self {
        PgUserStore { db }
    }

    /// Connects to `url` (migrating it) for its users.
    ///
    /// # Errors
    /// As [`PgDatabase::connect`].
    pub async fn connect(url: &str) -> Result<Self, UserDbError> {
        Ok(Self::new(PgDatabase::connect(url).await?))
    }

    /// Adds `record`.
    ///
    /// # Errors
    /// [`UserDbError::UserExists`], or the database.
    pub async fn add(&self, record: &UserRecord) -> Result<(), UserDbError> {
        let added = self
            .db
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
            .db
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
            .db
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
            .db
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
            .db
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
            .db
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
            .db
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
