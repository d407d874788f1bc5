//! The users in PostgreSQL: the same records as `users.db` (name, the SCRAM verifier in
//! PostgreSQL's own text format, quotas).
//!
//! Every login reads its user from the database, so `passwd` or `deluser` run against any
//! node counts on every node from the next login on. Until a lost connection is made again,
//! logins are answered "server busy" and nothing else stops.
//!
//! The checks of a logged-in session (quotas at each upload, whether the user still exists)
//! use what the node remembers of the user, once it follows the database's announcements of
//! changes ([`PgUserStore::follow_changes`]): a trigger on the table notifies every node of
//! each changed name, which it then forgets at once. As a safety net nothing is remembered
//! for longer than [`REMEMBERED_FOR`], and nothing at all while the announcements cannot be
//! heard.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{UserRecord, UserStore};
use crate::auth::Verifier;
use crate::authorized_key::AuthorizedKey;
use crate::error::{DatabaseError, UserDbError};
use crate::server::postgres::{PgDatabase, database_error};
use crate::username::Username;

/// How long a remembered record is used at most, even without news of a change.
pub const REMEMBERED_FOR: Duration = Duration::from_secs(30);

/// Records remembered at most; past that, all are forgotten and remembering starts over.
const REMEMBERED_AT_MOST: usize = 10_000;

/// How long to wait before listening again after the connection that listened was lost
/// (doubled after each attempt that fails, up to [`LISTEN_AGAIN_AT_MOST`]).
const LISTEN_AGAIN_AFTER: Duration = Duration::from_secs(1);
const LISTEN_AGAIN_AT_MOST: Duration = Duration::from_secs(30);

/// The users of a [`PgDatabase`].
#[derive(Debug, Clone)]
pub struct PgUserStore {
    db: Arc<PgDatabase>,
    remembered: Arc<Mutex<Remembered>>,
}

/// What a node remembers of its users' records, valid while it hears of every change.
#[derive(Debug, Default)]
struct Remembered {
    /// Announcements of changes are being heard: only then is anything remembered.
    listening: bool,
    /// Counts every forgetting: a record read before one is not remembered after it.
    generation: u64,
    records: HashMap<Username, (Option<UserRecord>, Instant)>,
    /// The iteration counts of all users, for unknown names: kept (for [`REMEMBERED_FOR`]
    /// at most, forgotten with any change) whether listening or not, so that an unknown
    /// name costs no more queries than a known one (the time would tell them apart).
    counts: Option<(Vec<(u32, u64)>, Instant)>,
}

impl Remembered {
    fn forget_all(&mut self, listening: bool) {
        self.listening = listening;
        self.generation += 1;
        self.records.clear();
        self.counts = None;
    }
}

fn lock(remembered: &Mutex<Remembered>) -> std::sync::MutexGuard<'_, Remembered> {
    remembered.lock().unwrap_or_else(|p| p.into_inner())
}

/// Listens for changed users for as long as `remembered` is used, connecting again when
/// the connection is lost; each changed name is forgotten.
async fn follow(db: Arc<PgDatabase>, remembered: Weak<Mutex<Remembered>>) {
    let mut pause = LISTEN_AGAIN_AFTER;
    loop {
        match db.listen("ftpd_users").await {
            Ok((_client, mut changed)) => {
                pause = LISTEN_AGAIN_AFTER;
                // Whatever changed while nobody listened is forgotten with the rest.
                let Some(shared) = remembered.upgrade() else {
                    return;
                };
                lock(&shared).forget_all(true);
                drop(shared);
                while let Some(name) = changed.recv().await {
                    let Some(shared) = remembered.upgrade() else {
                        return;
                    };
                    let mut now = lock(&shared);
                    now.generation += 1;
                    now.counts = None;
                    match Username::parse(&name) {
                        Ok(name) => {
                            now.records.remove(&name);
                        }
                        Err(_) => now.records.clear(),
                    }
                }
                tracing::warn!("no longer hearing of changed users; asking the database each time");
            }
            Err(err) => tracing::warn!(error = %err, "cannot listen for changed users"),
        }
        let Some(shared) = remembered.upgrade() else {
            return;
        };
        lock(&shared).forget_all(false);
        drop(shared);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(LISTEN_AGAIN_AT_MOST);
    }
}

impl PgUserStore {
    /// The users of `db`.
    pub fn new(db: Arc<PgDatabase>) -> Self {
        PgUserStore {
            db,
            remembered: Arc::default(),
        }
    }

    /// Starts hearing of changed users (on a connection and a task of their own), so that
    /// sessions' checks can use remembered records ([`UserStore::user_for_session`]).
    pub fn follow_changes(&self) {
        tokio::spawn(follow(
            Arc::clone(&self.db),
            Arc::downgrade(&self.remembered),
        ));
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

    /// Changes `name`'s keys with `change`, one change of a user's keys at a time.
    ///
    /// # Errors
    /// [`UserDbError::NoSuchUser`], what `change` says, or the database.
    async fn change_keys<T>(
        &self,
        name: &Username,
        change: impl FnOnce(&mut UserRecord) -> Result<T, UserDbError>,
    ) -> Result<T, UserDbError> {
        let what = "changing a user's keys";
        let mut connection = self.db.exclusive().await?;
        let transaction = connection
            .client()?
            .transaction()
            .await
            .map_err(database_error(what))?;
        let row = transaction
            .query_opt(
                "SELECT name, verifier, quota, files, ssh_keys FROM ftpd_users \
                 WHERE name = $1 FOR UPDATE",
                &[&name.as_str()],
            )
            .await
            .map_err(database_error(what))?
            .ok_or_else(|| UserDbError::NoSuchUser(name.to_string()))?;
        let mut user = record(&row)?;
        let changed = change(&mut user)?;
        let lines: Vec<String> = user.keys.iter().map(AuthorizedKey::to_line).collect();
        transaction
            .execute(
                "UPDATE ftpd_users SET ssh_keys = $2, changed = now() WHERE name = $1",
                &[&name.as_str(), &lines],
            )
            .await
            .map_err(database_error(what))?;
        transaction.commit().await.map_err(database_error(what))?;
        Ok(changed)
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
                "SELECT name, verifier, quota, files, ssh_keys FROM ftpd_users ORDER BY name",
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
                "SELECT name, verifier, quota, files, ssh_keys FROM ftpd_users WHERE name = $1",
                &[&name.as_str()],
            )
            .await
            .map_err(database_error("looking up a user"))?;
        row.as_ref().map(record).transpose()
    }

    async fn user_for_session(&self, name: &Username) -> Result<Option<UserRecord>, UserDbError> {
        let generation = {
            let now = lock(&self.remembered);
            if now.listening
                && let Some((record, at)) = now.records.get(name)
                && at.elapsed() < REMEMBERED_FOR
            {
                return Ok(record.clone());
            }
            now.generation
        };
        let record = self.user(name).await?;
        let mut now = lock(&self.remembered);
        // Nothing was forgotten while it was read: it is still the latest.
        if now.listening && now.generation == generation {
            if now.records.len() >= REMEMBERED_AT_MOST {
                now.records.clear();
            }
            now.records
                .insert(name.clone(), (record.clone(), Instant::now()));
        }
        Ok(record)
    }

    async fn iteration_counts(&self) -> Result<Vec<(u32, u64)>, UserDbError> {
        let generation = {
            let now = lock(&self.remembered);
            if let Some((counts, at)) = &now.counts
                && at.elapsed() < REMEMBERED_FOR
            {
                return Ok(counts.clone());
            }
            now.generation
        };
        let counts = self.count_iterations().await?;
        let mut now = lock(&self.remembered);
        if now.generation == generation {
            now.counts = Some((counts.clone(), Instant::now()));
        }
        Ok(counts)
    }
}

impl PgUserStore {
    /// Each iteration count the verifiers have, with how many: asked of the database.
    async fn count_iterations(&self) -> Result<Vec<(u32, u64)>, UserDbError> {
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
        .map(|n| {
            i64::try_from(n).map_err(|_| {
                UserDbError::Database(DatabaseError::plain(format!("{n} is too large")))
            })
        })
        .transpose()
}

/// A row of `name, verifier, quota, files, ssh_keys` as a record; a row that does not make one (edited
/// by hand, say) is an error naming the user.
fn record(row: &tokio_postgres::Row) -> Result<UserRecord, UserDbError> {
    let column = database_error("reading a user");
    let name: String = row.try_get(0).map_err(column)?;
    let bad =
        |what: String| UserDbError::Database(DatabaseError::new(format!("user {name:?}"), &what));
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
    let keys: Vec<String> = row.try_get(4).map_err(database_error("reading a user"))?;
    for line in keys {
        let key = AuthorizedKey::parse(&line).map_err(|e| bad(format!("key: {e}")))?;
        record.add_key(key)?;
    }
    Ok(record)
}

#[async_trait::async_trait]
impl super::UserAdmin for PgUserStore {
    async fn add(&self, record: UserRecord) -> Result<(), UserDbError> {
        PgUserStore::add(self, &record).await
    }

    async fn set_quota(&self, name: &Username, quota: Option<u64>) -> Result<(), UserDbError> {
        PgUserStore::set_quota(self, name, quota).await
    }

    async fn set_file_quota(&self, name: &Username, files: Option<u64>) -> Result<(), UserDbError> {
        PgUserStore::set_file_quota(self, name, files).await
    }

    async fn set_verifier(&self, name: &Username, verifier: Verifier) -> Result<(), UserDbError> {
        PgUserStore::set_verifier(self, name, &verifier).await
    }

    async fn remove(&self, name: &Username) -> Result<(), UserDbError> {
        PgUserStore::remove(self, name).await
    }

    async fn users(&self) -> Result<Vec<UserRecord>, UserDbError> {
        PgUserStore::users(self).await
    }

    async fn add_key(&self, name: &Username, key: AuthorizedKey) -> Result<(), UserDbError> {
        self.change_keys(name, |user| user.add_key(key)).await
    }

    async fn remove_key(
        &self,
        name: &Username,
        fingerprint: &str,
    ) -> Result<AuthorizedKey, UserDbError> {
        self.change_keys(name, |user| user.remove_key(fingerprint))
            .await
    }
}
