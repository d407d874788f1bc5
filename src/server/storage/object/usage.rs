//! A home's usage count: in this node's memory ([`Ledger`], as on disk), or in the
//! database when several nodes share the store, so that every node's changes count.
//! Updates that fail only leave the count off until the next recount; reads that fail
//! are errors (a quota is never checked against a guess).

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::StorageError;
use crate::server::sql::count_to_sql;
use crate::server::storage::Usage;
use crate::server::storage::ledger::Ledger;
use crate::username::Username;

/// One home's usage count where every node on the store sees it.
#[async_trait]
pub trait SharedCount: Send + Sync + std::fmt::Debug {
    /// The count, if one is recent enough to trust.
    async fn current(&self) -> Result<Option<Usage>, StorageError>;
    /// Replaces the count with a fresh listing's.
    async fn recounted(&self, totals: Usage) -> Result<(), StorageError>;
    /// Applies a change to the count (if there is one), never below zero.
    async fn change(&self, bytes: i64, entries: i64) -> Result<(), StorageError>;
}

/// Where every home's shared count is kept (an engine: PostgreSQL).
pub trait SharedCounts: Send + Sync {
    /// The count of `user`'s home.
    fn of(&self, user: &Username) -> Arc<dyn SharedCount>;
}

#[derive(Debug)]
pub enum HomeUsage {
    Local(Ledger),
    Shared(Arc<dyn SharedCount>),
}

impl HomeUsage {
    /// The count, if one is recent enough to trust.
    pub async fn current(&self) -> Result<Option<Usage>, StorageError> {
        match self {
            HomeUsage::Local(ledger) => Ok(ledger.current()),
            HomeUsage::Shared(count) => count.current().await,
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

    async fn shared_change(count: &Arc<dyn SharedCount>, bytes: i64, entries: i64) {
        if let Err(e) = count.change(bytes, entries).await {
            tracing::warn!(error = %e, "cannot update a usage count; the next recount corrects it");
        }
    }
}
