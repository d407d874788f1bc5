//! What every session of every front end shares: the engines, the limits and the
//! bookkeeping that holds them (places, locks, holds, failed logins), the audit log.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::config::Limits;
use super::guard::Guard;
use super::quota::UploadHolds;
use super::storage::Storage;
use super::tls::ServerIdentity;
use super::users::{UserAdmin, UserStore};
use super::{audit, counters, locks, secret};

/// What every session shares.
pub(crate) struct Shared {
    pub(crate) users: Arc<dyn UserStore>,
    /// Where users' own changes (their SSH keys) go; `None` where sessions change nothing.
    pub(crate) admin: Option<Arc<dyn UserAdmin>>,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) secret: [u8; secret::SECRET_LEN],
    pub(crate) limits: Limits,
    pub(crate) quotas: Arc<dyn UploadHolds>,
    pub(crate) uploads: locks::TargetLocks,
    /// The TLS identity; `None` serves plaintext.
    pub(crate) tls: Option<ServerIdentity>,
    /// Failed-login delays and lockouts.
    pub(crate) guard: Guard,
    /// Connections per address.
    pub(crate) per_ip: counters::Counter<std::net::IpAddr>,
    /// Sessions per user.
    pub(crate) per_user: counters::Counter<crate::username::Username>,
    /// The audit log, if enabled.
    pub(crate) audit: Option<audit::AuditLog>,
    /// Places for transfers and listings running at once.
    pub(crate) transfers: Arc<Semaphore>,
}

impl Shared {
    /// Appends to the audit log, if there is one.
    pub(crate) fn audit(&self, record: &audit::Record<'_>) {
        if let Some(log) = &self.audit {
            log.write(record);
        }
    }
}
