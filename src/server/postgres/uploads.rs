//! Where interrupted uploads into an object store are described when the nodes share a
//! database: the state (an opaque text the object store back-end writes) by storage root
//! and key, so that any node can resume an upload another one began.

use std::sync::Arc;

use async_trait::async_trait;

use super::{PgDatabase, database_error};
use crate::error::{StorageError, UserDbError};
use crate::server::storage::object::SharedStates;

/// States older than this are cleared away, now and then (the uploads they describe are
/// past resuming: see [`crate::server::storage::PARTIAL_TTL`]).
const FORGET_AFTER_SECS: f64 = 2.0 * 24.0 * 60.0 * 60.0;

/// One clearing of old states per this many saves.
const CLEAR_EVERY: u64 = 1024;

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
    pub async fn load(&self, key: &str) -> Result<Option<String>, UserDbError> {
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
    pub async fn save(&self, key: &str, state: &str) -> Result<(), UserDbError> {
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
    pub async fn delete(&self, key: &str) -> Result<(), UserDbError> {
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
