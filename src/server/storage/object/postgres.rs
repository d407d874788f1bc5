//! An object store's shared bookkeeping in PostgreSQL, for nodes that share the store:
//! - each home's usage count ([`PgCounts`], [`PgUsage`]), so a quota holds across nodes;
//! - where interrupted uploads are described ([`PgUploadStates`]): the state (an opaque
//!   text the object store back-end writes) by storage root and key, so that any node can
//!   resume an upload another one began.

use std::sync::Arc;

use async_trait::async_trait;

use super::{SharedCount, SharedCounts, SharedStates};
use crate::error::{DatabaseError, StorageError};
use crate::server::postgres::{PgDatabase, database_error};
use crate::server::sql::{count_from_sql, count_to_sql};
use crate::server::storage::Usage;
use crate::username::Username;

/// A count older than this is listed again (as [`crate::server::storage`] does on disk).
const RECOUNT_AFTER_SECS: f64 = 600.0;

/// States older than this are cleared away, now and then (the uploads they describe are
/// past resuming: see [`crate::server::storage::PARTIAL_TTL`]).
const FORGET_AFTER_SECS: f64 = 2.0 * 24.0 * 60.0 * 60.0;

/// One clearing of old states per this many saves.
const CLEAR_EVERY: u64 = 1024;

/// The usage count of one home of one storage root.
#[derive(Debug, Clone)]
pub struct PgUsage {
    db: Arc<PgDatabase>,
    root: String,
    user: String,
}

impl PgUsage {
    pub fn new(db: Arc<PgDatabase>, root: &str, user: &Username) -> Self {
        PgUsage {
            db,
            root: root.to_owned(),
            user: user.as_str().to_owned(),
        }
    }

    /// The count, if one is recent enough to trust.
    ///
    /// # Errors
    /// The database.
    pub async fn current(&self) -> Result<Option<Usage>, DatabaseError> {
        let row = self
            .db
            .client()
            .await?
            .query_opt(
                "SELECT bytes, entries FROM ftpd_usage WHERE root = $1 AND username = $2 \
                 AND counted_at > now() - make_interval(secs => $3)",
                &[&self.root, &self.user, &RECOUNT_AFTER_SECS],
            )
            .await
            .map_err(database_error("reading a usage count"))?;
        Ok(row.map(|row| Usage {
            bytes: count_from_sql(row.get(0)),
            entries: count_from_sql(row.get(1)),
        }))
    }

    /// Replaces the count with a fresh listing's.
    ///
    /// # Errors
    /// The database.
    pub async fn recounted(&self, totals: Usage) -> Result<(), DatabaseError> {
        self.db
            .client()
            .await?
            .execute(
                "INSERT INTO ftpd_usage (root, username, bytes, entries, counted_at) \
                 VALUES ($1, $2, $3, $4, now()) ON CONFLICT (root, username) DO UPDATE \
                 SET bytes = $3, entries = $4, counted_at = now()",
                &[
                    &self.root,
                    &self.user,
                    &count_to_sql(totals.bytes),
                    &count_to_sql(totals.entries),
                ],
            )
            .await
            .map_err(database_error("storing a usage count"))?;
        Ok(())
    }

    /// Applies a change to the count (if there is one), never below zero.
    ///
    /// # Errors
    /// The database.
    pub async fn change(&self, bytes: i64, entries: i64) -> Result<(), DatabaseError> {
        self.db
            .client()
            .await?
            .execute(
                "UPDATE ftpd_usage SET bytes = GREATEST(bytes + $3, 0), \
                 entries = GREATEST(entries + $4, 0) WHERE root = $1 AND username = $2",
                &[&self.root, &self.user, &bytes, &entries],
            )
            .await
            .map_err(database_error("updating a usage count"))?;
        Ok(())
    }
}

/// Every home's usage count of one storage root, in the database.
pub struct PgCounts {
    db: Arc<PgDatabase>,
    root: String,
}

impl PgCounts {
    pub fn new(db: Arc<PgDatabase>, root: &str) -> Self {
        PgCounts {
            db,
            root: root.to_owned(),
        }
    }
}

impl SharedCounts for PgCounts {
    fn of(&self, user: &Username) -> Arc<dyn SharedCount> {
        Arc::new(PgUsage::new(Arc::clone(&self.db), &self.root, user))
    }
}

#[async_trait]
impl SharedCount for PgUsage {
    async fn current(&self) -> Result<Option<Usage>, StorageError> {
        PgUsage::current(self)
            .await
            .map_err(|e| StorageError::database_unavailable(&e))
    }

    async fn recounted(&self, totals: Usage) -> Result<(), StorageError> {
        PgUsage::recounted(self, totals)
            .await
            .map_err(|e| StorageError::database_unavailable(&e))
    }

    async fn change(&self, bytes: i64, entries: i64) -> Result<(), StorageError> {
        PgUsage::change(self, bytes, entries)
            .await
            .map_err(|e| StorageError::database_unavailable(&e))
    }
}

/// The states of interrupted uploads into one storage root.
#[derive(Debug)]
pub struct PgUploadStates {
    db: Arc<PgDatabase>,
    root: String,
    saves: std::sync::atomic::AtomicU64,
}

impl PgUploadStates {
    pub fn new(db: Arc<PgDatabase>, root: &str) -> Self {
        PgUploadStates {
            db,
            root: root.to_owned(),
            saves: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The state kept for `key`, if any.
    ///
    /// # Errors
    /// The database.
    pub async fn load(&self, key: &str) -> Result<Option<String>, DatabaseError> {
        let row = self
            .db
            .client()
            .await?
            .query_opt(
                "SELECT state FROM ftpd_uploads WHERE root = $1 AND key = $2",
                &[&self.root, &key],
            )
            .await
            .map_err(database_error("reading an upload's state"))?;
        Ok(row.map(|row| row.get(0)))
    }

    /// Keeps `state` for `key`, replacing what was there.
    ///
    /// # Errors
    /// The database.
    pub async fn save(&self, key: &str, state: &str) -> Result<(), DatabaseError> {
        let client = self.db.client().await?;
        client
            .execute(
                "INSERT INTO ftpd_uploads (root, key, state) VALUES ($1, $2, $3) \
                 ON CONFLICT (root, key) DO UPDATE SET state = $3, updated_at = now()",
                &[&self.root, &key, &state],
            )
            .await
            .map_err(database_error("storing an upload's state"))?;
        let saves = self
            .saves
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if saves.is_multiple_of(CLEAR_EVERY) {
            client
                .execute(
                    "DELETE FROM ftpd_uploads WHERE updated_at < now() - make_interval(secs => $1)",
                    &[&FORGET_AFTER_SECS],
                )
                .await
                .map_err(database_error("clearing old upload states"))?;
        }
        Ok(())
    }

    /// Forgets `key`'s state.
    ///
    /// # Errors
    /// The database.
    pub async fn delete(&self, key: &str) -> Result<(), DatabaseError> {
        self.db
            .client()
            .await?
            .execute(
                "DELETE FROM ftpd_uploads WHERE root = $1 AND key = $2",
                &[&self.root, &key],
            )
            .await
            .map_err(database_error("forgetting an upload's state"))?;
        Ok(())
    }
}

#[async_trait]
impl SharedStates for PgUploadStates {
    async fn load(&self, key: &str) -> Result<Option<String>, StorageError> {
        PgUploadStates::load(self, key)
            .await
            .map_err(|e| StorageError::database_unavailable(&e))
    }

    async fn save(&self, key: &str, state: &str) -> Result<(), StorageError> {
        PgUploadStates::save(self, key, state)
            .await
            .map_err(|e| StorageError::database_unavailable(&e))
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        PgUploadStates::delete(self, key)
            .await
            .map_err(|e| StorageError::database_unavailable(&e))
    }
}
