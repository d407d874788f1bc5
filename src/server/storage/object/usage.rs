//! A home's usage count: in this node's memory ([`Ledger`], as on disk), or in the
//! database when several nodes share the store, so that every node's changes count.
//! Updates that fail only leave the count off until the next recount; reads that fail
//! are errors (a quota is never checked against a guess).

use crate::error::StorageError;
use crate::server::postgres::quota::PgUsage;
use crate::server::sql::count_to_sql;
use crate::server::storage::Usage;
use crate::server::storage::ledger::Ledger;

#[derive(Debug)]
pub enum HomeUsage {
    Local(Ledger),
    Shared(PgUsage),
}

impl HomeUsage {
    /// The count, if one is recent enough to trust.
    pub async fn current(&self) -> Result<Option<Usage>, StorageError> {
        match self {
            HomeUsage::Local(ledger) => Ok(ledger.current()),
            HomeUsage::Shared(count) => count
                .current()
                .await
                .map_err(|e| StorageError::database_unavailable(&e)),
        }
    }

    /// Replaces the count with a fresh listing's.
    pub async fn recounted(&self, totals: Usage) {
        match self {
            HomeUsage::Local(ledger) => ledger.recounted(totals),
            HomeUsage::Shared(count) => {
                if let Err(e) = count.recounted(totals).await {
                    tracing::warn!(error = %e, "cannot store a usage count");
                }
            }
        }
    }

    pub async fn add(&self, added: Usage) {
        match self {
            HomeUsage::Local(ledger) => ledger.add(added),
            HomeUsage::Shared(count) => {
                Self::shared_change(
                    count,
                    count_to_sql(added.bytes),
                    count_to_sql(added.entries),
                )
                .await;
            }
        }
    }

    pub async fn remove(&self, removed: Usage) {
        match self {
            HomeUsage::Local(ledger) => ledger.remove(removed),
            HomeUsage::Shared(count) => {
                Self::shared_change(
                    count,
                    -count_to_sql(removed.bytes),
                    -count_to_sql(removed.entries),
                )
                .await;
            }
        }
    }

    /// One file's bytes went from `before` to `after`.
    pub async fn resize(&self, before: u64, after: u64) {
        match self {
            HomeUsage::Local(ledger) => ledger.resize(before, after),
            HomeUsage::Shared(count) => {
                let bytes = count_to_sql(after).saturating_sub(count_to_sql(before));
                Self::shared_change(count, bytes, 0).await;
            }
        }
    }

    async fn shared_change(count: &PgUsage, bytes: i64, entries: i64) {
        if let Err(e) = count.change(bytes, entries).await {
            tracing::warn!(error = %e, "cannot update a usage count; the next recount corrects it");
        }
    }
}
