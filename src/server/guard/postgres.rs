//! Failed logins and lockouts counted in the database, over every node: the same policy as
//! the embedded [`LoginGuard`](crate::server::guard::LoginGuard) (a delay doubling with each
//! recent failure of the name or the address, addresses locked out past a threshold), so an
//! attacker gains nothing by spreading attempts over nodes. Times are the database's, the
//! one clock every node shares.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::DatabaseError;
use crate::server::guard::{FailedLogins, LockoutPolicy, Verdict, block, delay_after};
use crate::server::postgres::{PgDatabase, database_error};
use crate::username::Username;

/// Old failures and lockouts are cleared away once per this many failures recorded.
const CLEAR_EVERY: u64 = 256;

/// Failed-login bookkeeping in PostgreSQL.
#[derive(Debug)]
pub struct PgLoginGuard {
    db: Arc<PgDatabase>,
    policy: LockoutPolicy,
    recorded: AtomicU64,
}

/// The keys of an attempt: the address's, and the name's if it could be one.
fn keys(user: Option<&Username>, addr: IpAddr) -> (String, Vec<String>) {
    let addr_key = format!("addr:{}", block(addr));
    let mut all = vec![addr_key.clone()];
    if let Some(user) = user {
        all.push(format!("name:{user}"));
    }
    (addr_key, all)
}

impl PgLoginGuard {
    /// A guard over `db` with this policy.
    pub fn new(db: Arc<PgDatabase>, policy: LockoutPolicy) -> Self {
        PgLoginGuard {
            db,
            policy,
            recorded: AtomicU64::new(0),
        }
    }

    /// The verdict for an attempt by `user` from `addr`, from the failures every node saw.
    ///
    /// # Errors
    /// The database.
    pub async fn check(
        &self,
        user: Option<&Username>,
        addr: IpAddr,
    ) -> Result<Verdict, DatabaseError> {
        let (addr_key, all) = keys(user, addr);
        let row = self
            .db
            .client()
            .await?
            .query_one(
                "SELECT (SELECT coalesce(max(n), 0) FROM \
                     (SELECT count(*) AS n FROM ftpd_login_failures \
                      WHERE key = ANY($1) AND at > now() - make_interval(secs => $2) \
                      GROUP BY key) AS recent), \
                 EXISTS (SELECT 1 FROM ftpd_lockouts WHERE addr = $3 AND until > now())",
                &[&all, &self.policy.window.as_secs_f64(), &addr_key],
            )
            .await
            .map_err(database_error("checking failed logins"))?;
        let worst: i64 = row.try_get(0).map_err(database_error("failed logins"))?;
        let locked: bool = row.try_get(1).map_err(database_error("lockouts"))?;
        Ok(Verdict {
            delay: delay_after(&self.policy, usize::try_from(worst).unwrap_or(usize::MAX)),
            locked,
        })
    }

    /// Counts a failure; the address it locked out, if it did (on whichever node).
    ///
    /// # Errors
    /// The database.
    pub async fn record_failure(
        &self,
        user: Option<&Username>,
        addr: IpAddr,
    ) -> Result<Option<IpAddr>, DatabaseError> {
        let (addr_key, all) = keys(user, addr);
        let client = self.db.client().await?;
        let window = self.policy.window.as_secs_f64();
        client
            .execute(
                "INSERT INTO ftpd_login_failures (key) SELECT unnest($1::text[])",
                &[&all],
            )
            .await
            .map_err(database_error("counting a failed login"))?;
        if self
            .recorded
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(CLEAR_EVERY)
        {
            client
                .execute(
                    "DELETE FROM ftpd_login_failures WHERE at < now() - make_interval(secs => $1)",
                    &[&window],
                )
                .await
                .map_err(database_error("clearing old failed logins"))?;
            client
                .execute("DELETE FROM ftpd_lockouts WHERE until < now()", &[])
                .await
                .map_err(database_error("clearing old lockouts"))?;
        }
        let recent: i64 = client
            .query_one(
                "SELECT count(*) FROM ftpd_login_failures \
                 WHERE key = $1 AND at > now() - make_interval(secs => $2)",
                &[&addr_key, &window],
            )
            .await
            .and_then(|row| row.try_get(0))
            .map_err(database_error("counting failed logins"))?;
        if recent < i64::from(self.policy.max_failures) {
            return Ok(None);
        }
        // Locked now unless a lockout already runs (one node's lockout is logged once).
        let locked = client
            .query_opt(
                "INSERT INTO ftpd_lockouts (addr, until) \
                 VALUES ($1, now() + make_interval(secs => $2)) \
                 ON CONFLICT (addr) DO UPDATE SET until = EXCLUDED.until \
                 WHERE ftpd_lockouts.until <= now() \
                 RETURNING addr",
                &[&addr_key, &self.policy.lockout.as_secs_f64()],
            )
            .await
            .map_err(database_error("locking an address out"))?;
        Ok(locked.map(|_| block(addr)))
    }
}

#[async_trait::async_trait]
impl FailedLogins for PgLoginGuard {
    async fn check(&self, user: Option<&Username>, addr: IpAddr) -> Result<Verdict, DatabaseError> {
        PgLoginGuard::check(self, user, addr).await
    }

    async fn record_failure(
        &self,
        user: Option<&Username>,
        addr: IpAddr,
    ) -> Result<Option<IpAddr>, DatabaseError> {
        PgLoginGuard::record_failure(self, user, addr).await
    }
}
