//! The holds of uploads in progress in PostgreSQL ([`PgReservations`]), over every node of
//! one object store, so a quota holds across nodes as it does on one.

use crate::server::sql::{count_from_sql, count_to_sql};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{Held, Hold, Need, Refused, UploadHolds};
use crate::error::{DatabaseError, StorageError};
use crate::server::postgres::{PgDatabase, database_error};
use crate::username::Username;

/// How long a hold lasts unless its node renews it.
const HOLD_LEASE: Duration = Duration::from_secs(15 * 60);
/// How often a running upload's node renews its hold.
const HOLD_RENEWAL: Duration = Duration::from_secs(5 * 60);

/// Holds of uploads in progress, over every node.
#[derive(Debug, Clone)]
pub struct PgReservations {
    db: Arc<PgDatabase>,
}

impl PgReservations {
    pub fn new(db: Arc<PgDatabase>) -> Self {
        PgReservations { db }
    }

    /// Bytes the uploads of `user` hold now, on every node.
    ///
    /// # Errors
    /// The database.
    pub async fn held(&self, user: &Username, except: Option<i64>) -> Result<u64, DatabaseError> {
        let row = self
            .db
            .client()
            .await?
            .query_one(
                "SELECT COALESCE(sum(bytes), 0)::bigint FROM ftpd_reservations \
                 WHERE username = $1 AND expires_at > now() AND id IS DISTINCT FROM $2",
                &[&user.as_str(), &except],
            )
            .await
            .map_err(database_error("reading the bytes uploads hold"))?;
        Ok(count_from_sql(row.get(0)))
    }

    /// Entries the uploads of `user` hold now, on every node.
    ///
    /// # Errors
    /// The database.
    pub async fn held_entries(&self, user: &Username) -> Result<u64, DatabaseError> {
        let row = self
            .db
            .client()
            .await?
            .query_one(
                "SELECT COALESCE(sum(entries), 0)::bigint FROM ftpd_reservations \
                 WHERE username = $1 AND expires_at > now()",
                &[&user.as_str()],
            )
            .await
            .map_err(database_error("reading the entries uploads hold"))?;
        Ok(count_from_sql(row.get(0)))
    }

    /// Holds what `need` asks for `user` (bytes, an entry) if it fits beside what other
    /// uploads hold: the hold's id, or on refusal what the others hold. One user's
    /// reservations are made one at a time across nodes (an advisory lock in a
    /// transaction), so two cannot both see room for themselves alone.
    ///
    /// # Errors
    /// The database.
    async fn reserve_now(
        &self,
        user: &Username,
        need: Need,
    ) -> Result<Result<i64, Refused>, DatabaseError> {
        let mut connection = self.db.exclusive().await?;
        let transaction = connection
            .client()?
            .transaction()
            .await
            .map_err(database_error("starting a reservation"))?;
        let what = database_error("reserving room for an upload");
        transaction
            .execute(
                "SELECT pg_advisory_xact_lock(hashtext('ftpd-quota:' || $1))",
                &[&user.as_str()],
            )
            .await
            .map_err(database_error("locking a user's reservations"))?;
        let others = transaction
            .query_one(
                "SELECT COALESCE(sum(bytes), 0)::bigint, COALESCE(sum(entries), 0)::bigint \
                 FROM ftpd_reservations WHERE username = $1 AND expires_at > now()",
                &[&user.as_str()],
            )
            .await
            .map_err(database_error("reading what uploads hold"))?;
        let (others_bytes, others_entries) = (
            count_from_sql(others.get::<_, i64>(0)),
            count_from_sql(others.get::<_, i64>(1)),
        );
        if let Err(refused) = need.fits(others_bytes, others_entries) {
            transaction.rollback().await.map_err(what)?;
            return Ok(Err(refused));
        }
        let (bytes, entries) = need.held();
        let id: i64 = transaction
            .query_one(
                "INSERT INTO ftpd_reservations (username, bytes, entries, expires_at) \
                 VALUES ($1, $2, $3, now() + make_interval(secs => $4)) RETURNING id",
                &[
                    &user.as_str(),
                    &count_to_sql(bytes),
                    &count_to_sql(entries),
                    &HOLD_LEASE.as_secs_f64(),
                ],
            )
            .await
            .map_err(database_error("reserving room for an upload"))?
            .get(0);
        transaction
            .commit()
            .await
            .map_err(database_error("reserving room for an upload"))?;
        Ok(Ok(id))
    }

    /// Renews the hold `id` every few minutes until the returned task is aborted.
    pub fn renew_until_aborted(&self, id: i64) -> tokio::task::JoinHandle<()> {
        let db = Arc::clone(&self.db);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(HOLD_RENEWAL).await;
                let renewed = async {
                    db.client()
                        .await?
                        .execute(
                            "UPDATE ftpd_reservations SET expires_at = \
                             now() + make_interval(secs => $2) WHERE id = $1",
                            &[&id, &HOLD_LEASE.as_secs_f64()],
                        )
                        .await
                        .map_err(database_error("renewing a reservation"))
                };
                if let Err(e) = renewed.await {
                    tracing::warn!(error = %e, "cannot renew an upload's reservation");
                }
            }
        })
    }

    /// Lets go of the hold `id` (and of lapsed ones, now and then), in the background.
    pub fn release_soon(&self, id: i64) {
        let db = Arc::clone(&self.db);
        tokio::spawn(async move {
            let released = async {
                db.client()
                    .await?
                    .execute(
                        "DELETE FROM ftpd_reservations WHERE id = $1 \
                         OR expires_at < now() - interval '1 hour'",
                        &[&id],
                    )
                    .await
                    .map_err(database_error("releasing a reservation"))
            };
            if let Err(e) = released.await {
                tracing::warn!(error = %e, "cannot release an upload's reservation; it lapses by itself");
            }
        });
    }
}

#[async_trait]
impl UploadHolds for PgReservations {
    async fn held(&self, user: &Username) -> Result<u64, StorageError> {
        PgReservations::held(self, user, None)
            .await
            .map_err(|e| StorageError::database_unavailable(&e))
    }

    async fn held_entries(&self, user: &Username) -> Result<u64, StorageError> {
        PgReservations::held_entries(self, user)
            .await
            .map_err(|e| StorageError::database_unavailable(&e))
    }

    async fn reserve(
        &self,
        user: &Username,
        need: Need,
    ) -> Result<Result<Hold, Refused>, StorageError> {
        let reserved = self
            .reserve_now(user, need)
            .await
            .map_err(|e| StorageError::database_unavailable(&e))?;
        Ok(reserved.map(|id| {
            Box::new(PgHold {
                id,
                user: user.clone(),
                renewal: self.renew_until_aborted(id),
                book: self.clone(),
            }) as Hold
        }))
    }
}

/// A hold in the database, renewed while it lasts.
#[derive(Debug)]
struct PgHold {
    id: i64,
    user: Username,
    book: PgReservations,
    renewal: tokio::task::JoinHandle<()>,
}

#[async_trait]
impl Held for PgHold {
    async fn held_by_others(&self) -> Result<u64, StorageError> {
        self.book
            .held(&self.user, Some(self.id))
            .await
            .map_err(|e| StorageError::database_unavailable(&e))
    }
}

impl Drop for PgHold {
    fn drop(&mut self) {
        self.renewal.abort();
        self.book.release_soon(self.id);
    }
}
