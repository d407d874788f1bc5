//! The chat's store in PostgreSQL, shared by every node: a user on node A and a friend on
//! node B chat as if on one server. Each message is one statement (friendship, resend,
//! inbox bound and insert together); messages to one recipient are stored one at a time
//! (an advisory lock on the recipient), so their ids grow in the order they are committed
//! and a session's cursor never skips one. Every node hears of each stored message through
//! `LISTEN`/`NOTIFY` and hands it to its recipient's sessions there.

use crate::server::sql::{bits_from_sql, bits_to_sql};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use crate::chat::ChatMessage;
use crate::error::DatabaseError;
use crate::server::chat::store::{
    Added, ChatStore, Push, Relation, StoreError, Stored, Waiting, relation_state,
};
use crate::server::postgres::{PgDatabase, database_error};

impl From<crate::error::DatabaseError> for StoreError {
    fn from(e: crate::error::DatabaseError) -> Self {
        StoreError::engine("the database", e)
    }
}

/// After the listening connection is lost, it is made again after this long at first.
const LISTEN_AGAIN_AFTER: Duration = Duration::from_millis(500);
const LISTEN_AGAIN_AT_MOST: Duration = Duration::from_secs(30);

/// A failed statement as the chat reports it: what was being done, and why.
fn failed(what: &str) -> impl FnOnce(tokio_postgres::Error) -> StoreError + '_ {
    move |e| database_error(what)(e).into()
}

fn message_from_row(row: &tokio_postgres::Row) -> ChatMessage {
    ChatMessage {
        id: bits_from_sql(row.get(0)),
        from: row.get(1),
        to: row.get(2),
        at: row.get(3),
        text: row.get(4),
    }
}

/// A message to store, queued in the order `store_message` was called.
struct QueuedMessage {
    from: String,
    to: String,
    text: String,
    nonce: u64,
    at: i64,
    limits: Waiting,
    done: oneshot::Sender<Result<Stored, StoreError>>,
}

/// The chat in PostgreSQL.
#[derive(Clone)]
pub struct PgChatStore {
    db: Arc<PgDatabase>,
    jobs: mpsc::UnboundedSender<QueuedMessage>,
}

impl PgChatStore {
    /// The chat of `db` (its tables are made by the migrations).
    pub fn new(db: Arc<PgDatabase>) -> Self {
        let (jobs, queue) = mpsc::unbounded_channel();
        tokio::spawn(store_in_order(Arc::clone(&db), queue));
        PgChatStore { db, jobs }
    }
}

/// Stores queued messages one after another: the order of the calls is the order of the ids.
async fn store_in_order(db: Arc<PgDatabase>, mut queue: mpsc::UnboundedReceiver<QueuedMessage>) {
    while let Some(job) = queue.recv().await {
        let stored = store_one(&db, &job).await.map_err(StoreError::from);
        let _ = job.done.send(stored);
    }
}

async fn store_one(db: &PgDatabase, job: &QueuedMessage) -> Result<Stored, DatabaseError> {
    let row = db
        .client()
        .await?
        .query_one(
            "WITH friends AS (
                 SELECT 1 FROM ftpd_chat_friends WHERE username = $1 AND friend = $2),
             earlier AS (
                 SELECT id, at FROM ftpd_chat_messages WHERE sender = $1 AND nonce = $5),
             turn AS (SELECT pg_advisory_xact_lock(hashtext('ftpd-chat:' || $2))),
             waiting AS (
                 SELECT count(*) AS n,
                        count(*) FILTER (WHERE sender = $1) AS from_sender
                 FROM ftpd_chat_messages
                 WHERE recipient = $2 AND NOT delivered),
             stored AS (
                 INSERT INTO ftpd_chat_messages (sender, recipient, at, body, nonce)
                 SELECT $1, $2, $3, $4, $5 FROM turn
                 WHERE EXISTS (SELECT 1 FROM friends)
                   AND NOT EXISTS (SELECT 1 FROM earlier)
                   AND (SELECT n FROM waiting) < $6
                   AND (SELECT from_sender FROM waiting) < $7
                 ON CONFLICT (sender, nonce) DO NOTHING
                 RETURNING id, at)
             SELECT EXISTS (SELECT 1 FROM friends),
                    (SELECT id FROM earlier), (SELECT at FROM earlier),
                    (SELECT id FROM stored), (SELECT at FROM stored),
                    (SELECT n FROM waiting) < $6",
            &[
                &job.from,
                &job.to,
                &job.at,
                &job.text,
                &bits_to_sql(job.nonce),
                &i64::from(job.limits.total),
                &i64::from(job.limits.per_sender),
            ],
        )
        .await
        .map_err(database_error("storing a chat message"))?;
    let friends: bool = row.get(0);
    let earlier: (Option<i64>, Option<i64>) = (row.get(1), row.get(2));
    let stored: (Option<i64>, Option<i64>) = (row.get(3), row.get(4));
    let room_in_all: bool = row.get(5);
    Ok(match (friends, earlier, stored) {
        (false, _, _) => Stored::NotFriends,
        (_, (Some(id), Some(at)), _) | (_, _, (Some(id), Some(at))) => Stored::Message {
            id: bits_from_sql(id),
            at,
        },
        _ if room_in_all => Stored::SenderFull,
        _ => Stored::InboxFull,
    })
}

/// Hands every stored message to `push`, in the order they were committed, for as long as
/// the store lives. After the listening connection was lost, what was stored meanwhile is
/// read and handed over first (sessions skip what they already have).
async fn follow_messages(db: Weak<PgDatabase>, push: Push) {
    let last = AtomicU64::new(0);
    let mut pause = LISTEN_AGAIN_AFTER;
    loop {
        let Some(database) = db.upgrade() else { return };
        match database.listen("ftpd_chat_messages").await {
            Ok((_client, mut stored)) => {
                pause = LISTEN_AGAIN_AFTER;
                if let Err(e) = catch_up(&database, &push, &last).await {
                    tracing::warn!(error = %e, "cannot read the chat messages stored meanwhile");
                }
                drop(database);
                while let Some(id) = stored.recv().await {
                    let Ok(id) = id.parse::<i64>() else { continue };
                    let Some(database) = db.upgrade() else { return };
                    match read_message(&database, id).await {
                        Ok(Some(message)) => {
                            last.fetch_max(message.id, Ordering::Relaxed);
                            push(&message);
                        }
                        Ok(None) => {}
                        Err(e) => tracing::warn!(error = %e, "cannot read a stored chat message"),
                    }
                }
                tracing::warn!("no longer hearing of chat messages; listening again");
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for chat messages"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(LISTEN_AGAIN_AT_MOST);
    }
}

async fn read_message(db: &PgDatabase, id: i64) -> Result<Option<ChatMessage>, DatabaseError> {
    let row = db
        .client()
        .await?
        .query_opt(
            "SELECT id, sender, recipient, at, body FROM ftpd_chat_messages \
             WHERE id = $1 AND NOT delivered",
            &[&id],
        )
        .await
        .map_err(database_error("reading a chat message"))?;
    Ok(row.as_ref().map(message_from_row))
}

async fn catch_up(db: &PgDatabase, push: &Push, last: &AtomicU64) -> Result<(), DatabaseError> {
    let after = last.load(Ordering::Relaxed);
    if after == 0 {
        // Sessions read what waits for them when they start: nothing to hand over yet.
        let row = db
            .client()
            .await?
            .query_one("SELECT COALESCE(max(id), 0) FROM ftpd_chat_messages", &[])
            .await
            .map_err(database_error("reading the last chat message"))?;
        last.store(bits_from_sql(row.get(0)), Ordering::Relaxed);
        return Ok(());
    }
    let rows = db
        .client()
        .await?
        .query(
            "SELECT id, sender, recipient, at, body FROM ftpd_chat_messages \
             WHERE id > $1 AND NOT delivered ORDER BY id",
            &[&bits_to_sql(after)],
        )
        .await
        .map_err(database_error("reading the chat messages stored meanwhile"))?;
    for row in &rows {
        let message = message_from_row(row);
        last.fetch_max(message.id, Ordering::Relaxed);
        push(&message);
    }
    Ok(())
}

/// `from` asks `to` to be friends (or accepts), in `tx`.
async fn add_in(
    tx: &tokio_postgres::Transaction<'_>,
    from: &str,
    to: &str,
    max_asked: u32,
) -> Result<Added, tokio_postgres::Error> {
    // The pair's requests and friendship change one at a time.
    let (low, high) = if from < to { (from, to) } else { (to, from) };
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('ftpd-friends:' || $1 || '/' || $2))",
        &[&low, &high],
    )
    .await?;
    let friends = tx
        .query_opt(
            "SELECT 1 FROM ftpd_chat_friends WHERE username = $1 AND friend = $2",
            &[&from, &to],
        )
        .await?
        .is_some();
    if friends {
        return Ok(Added::Friends);
    }
    let they_asked = tx
        .execute(
            "DELETE FROM ftpd_chat_requests WHERE sender = $1 AND recipient = $2",
            &[&to, &from],
        )
        .await?
        > 0;
    if they_asked {
        tx.execute(
            "INSERT INTO ftpd_chat_friends (username, friend) VALUES ($1, $2), ($2, $1) \
             ON CONFLICT DO NOTHING",
            &[&from, &to],
        )
        .await?;
        tx.execute(
            "DELETE FROM ftpd_chat_requests WHERE sender = $1 AND recipient = $2",
            &[&from, &to],
        )
        .await?;
        return Ok(Added::Friends);
    }
    let row = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM ftpd_chat_requests \
                            WHERE sender = $1 AND recipient = $2), \
                    (SELECT count(*) FROM ftpd_chat_requests WHERE sender = $1)",
            &[&from, &to],
        )
        .await?;
    let (already, waiting): (bool, i64) = (row.get(0), row.get(1));
    if !already && waiting >= i64::from(max_asked) {
        return Ok(Added::TooManyRequests);
    }
    tx.execute(
        "INSERT INTO ftpd_chat_requests (sender, recipient, at) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
        &[&from, &to, &chrono::Utc::now().timestamp_millis()],
    )
    .await?;
    Ok(Added::Asked)
}

#[async_trait]
impl ChatStore for PgChatStore {
    async fn add(&self, from: &str, to: &str, max_asked: u32) -> Result<Added, StoreError> {
        let mut connection = self.db.exclusive().await?;
        let tx = connection
            .client()?
            .transaction()
            .await
            .map_err(failed("adding a friend"))?;
        let added = add_in(&tx, from, to, max_asked)
            .await
            .map_err(failed("adding a friend"))?;
        tx.commit().await.map_err(failed("adding a friend"))?;
        Ok(added)
    }

    async fn remove(&self, a: &str, b: &str) -> Result<bool, StoreError> {
        let client = self.db.client().await?;
        let row = client
            .query_one(
                "WITH f AS (DELETE FROM ftpd_chat_friends
                            WHERE (username = $1 AND friend = $2)
                               OR (username = $2 AND friend = $1) RETURNING 1),
                      r AS (DELETE FROM ftpd_chat_requests
                            WHERE (sender = $1 AND recipient = $2)
                               OR (sender = $2 AND recipient = $1) RETURNING 1)
                 SELECT (SELECT count(*) FROM f) + (SELECT count(*) FROM r)",
                &[&a, &b],
            )
            .await
            .map_err(failed("removing a friend"))?;
        Ok(row.get::<_, i64>(0) > 0)
    }

    async fn friends(&self, user: &str) -> Result<Vec<Relation>, StoreError> {
        let rows = self
            .db
            .client()
            .await?
            .query(
                "SELECT f.friend, 0, c.color FROM ftpd_chat_friends f
                   LEFT JOIN ftpd_chat_colors c ON c.username = f.friend WHERE f.username = $1
                 UNION ALL SELECT recipient, 1, NULL FROM ftpd_chat_requests WHERE sender = $1
                 UNION ALL SELECT sender, 2, NULL FROM ftpd_chat_requests WHERE recipient = $1
                 ORDER BY 1",
                &[&user],
            )
            .await
            .map_err(failed("reading friends"))?;
        Ok(rows
            .iter()
            .map(|row| {
                let state = relation_state(i64::from(row.get::<_, i32>(1)));
                (row.get(0), state, row.get(2))
            })
            .collect())
    }

    fn store_message(
        &self,
        from: &str,
        to: &str,
        text: &str,
        nonce: u64,
        at: i64,
        limits: Waiting,
    ) -> BoxFuture<'static, Result<Stored, StoreError>> {
        let (done, stored) = oneshot::channel();
        let queued = self.jobs.send(QueuedMessage {
            from: from.to_owned(),
            to: to.to_owned(),
            text: text.to_owned(),
            nonce,
            at,
            limits,
            done,
        });
        Box::pin(async move {
            queued.map_err(|_| StoreError::Stopped("the chat store has stopped"))?;
            stored
                .await
                .map_err(|_| StoreError::Stopped("the chat store has stopped"))?
        })
    }

    async fn waiting(
        &self,
        user: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let rows = self
            .db
            .client()
            .await?
            .query(
                "SELECT id, sender, recipient, at, body FROM ftpd_chat_messages \
                 WHERE recipient = $1 AND NOT delivered AND id > $2 ORDER BY id LIMIT $3",
                &[&user, &bits_to_sql(after), &i64::from(limit)],
            )
            .await
            .map_err(failed("reading waiting messages"))?;
        Ok(rows.iter().map(message_from_row).collect())
    }

    async fn ack(&self, user: &str, up_to: u64, keep: u32) -> Result<(), StoreError> {
        let client = self.db.client().await?;
        let senders = client
            .query(
                "WITH done AS (UPDATE ftpd_chat_messages SET delivered = true \
                 WHERE recipient = $1 AND NOT delivered AND id <= $2 RETURNING sender) \
                 SELECT DISTINCT sender FROM done",
                &[&user, &bits_to_sql(up_to)],
            )
            .await
            .map_err(failed("marking messages delivered"))?;
        // History is bounded: each way of a conversation keeps its `keep` most recent.
        for row in senders {
            let sender: String = row.get(0);
            // The oldest message to keep: with `keep` 0, none (all delivered ones go).
            client
                .execute(
                    "DELETE FROM ftpd_chat_messages WHERE sender = $1 AND recipient = $2 \
                     AND delivered AND ($3::bigint = 0 OR id < COALESCE((SELECT id \
                         FROM ftpd_chat_messages WHERE sender = $1 AND recipient = $2 \
                         ORDER BY id DESC OFFSET $3::bigint - 1 LIMIT 1), -1))",
                    &[&sender, &user, &i64::from(keep)],
                )
                .await
                .map_err(failed("trimming history"))?;
        }
        Ok(())
    }

    async fn history(&self, a: &str, b: &str, limit: u32) -> Result<Vec<ChatMessage>, StoreError> {
        let rows = self
            .db
            .client()
            .await?
            .query(
                "SELECT id, sender, recipient, at, body FROM ftpd_chat_messages
                 WHERE (sender = $1 AND recipient = $2) OR (sender = $2 AND recipient = $1)
                 ORDER BY id DESC LIMIT $3",
                &[&a, &b, &i64::from(limit)],
            )
            .await
            .map_err(failed("reading history"))?;
        let mut messages: Vec<ChatMessage> = rows.iter().map(message_from_row).collect();
        messages.reverse();
        Ok(messages)
    }

    async fn color(&self, user: &str) -> Result<Option<String>, StoreError> {
        let client = self.db.client().await?;
        let row = client
            .query_opt(
                "SELECT color FROM ftpd_chat_colors WHERE username = $1",
                &[&user],
            )
            .await
            .map_err(failed("reading a colour"))?;
        Ok(row.map(|row| row.get(0)))
    }

    async fn set_color(&self, user: &str, color: Option<&str>) -> Result<(), StoreError> {
        let client = self.db.client().await?;
        let result = match color {
            Some(color) => {
                client
                    .execute(
                        "INSERT INTO ftpd_chat_colors (username, color) VALUES ($1, $2) \
                         ON CONFLICT (username) DO UPDATE SET color = excluded.color",
                        &[&user, &color],
                    )
                    .await
            }
            None => {
                client
                    .execute("DELETE FROM ftpd_chat_colors WHERE username = $1", &[&user])
                    .await
            }
        };
        result.map_err(failed("setting a colour"))?;
        Ok(())
    }

    async fn set_blocked(
        &self,
        user: &str,
        name: &str,
        blocked: bool,
        max: u32,
    ) -> Result<bool, StoreError> {
        let client = self.db.client().await?;
        if !blocked {
            client
                .execute(
                    "DELETE FROM ftpd_chat_blocks WHERE username = $1 AND blocked = $2",
                    &[&user, &name],
                )
                .await
                .map_err(failed("unblocking"))?;
            return Ok(true);
        }
        // One statement: within the bound, the block and the end of what was between them.
        let row = client
            .query_one(
                "WITH room AS (
                     SELECT count(*) < $3 AS ok FROM ftpd_chat_blocks
                     WHERE username = $1 AND blocked <> $2),
                 added AS (
                     INSERT INTO ftpd_chat_blocks (username, blocked)
                     SELECT $1, $2 FROM room WHERE ok
                     ON CONFLICT DO NOTHING RETURNING 1),
                 unfriended AS (
                     DELETE FROM ftpd_chat_friends
                     WHERE ((username = $1 AND friend = $2) OR (username = $2 AND friend = $1))
                       AND (SELECT ok FROM room) RETURNING 1),
                 unasked AS (
                     DELETE FROM ftpd_chat_requests
                     WHERE ((sender = $1 AND recipient = $2) OR (sender = $2 AND recipient = $1))
                       AND (SELECT ok FROM room) RETURNING 1)
                 SELECT ok FROM room",
                &[&user, &name, &i64::from(max)],
            )
            .await
            .map_err(failed("blocking"))?;
        Ok(row.get(0))
    }

    async fn blocked(&self, user: &str) -> Result<Vec<String>, StoreError> {
        let rows = self
            .db
            .client()
            .await?
            .query(
                "SELECT blocked FROM ftpd_chat_blocks WHERE username = $1 ORDER BY blocked",
                &[&user],
            )
            .await
            .map_err(failed("reading the names blocked"))?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    async fn blocks(&self, user: &str, name: &str) -> Result<bool, StoreError> {
        let row = self
            .db
            .client()
            .await?
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM ftpd_chat_blocks WHERE username = $1 AND blocked = $2)",
                &[&user, &name],
            )
            .await
            .map_err(failed("reading a block"))?;
        Ok(row.get(0))
    }

    async fn delete_user(&self, user: &str) -> Result<(), StoreError> {
        let client = self.db.client().await?;
        for statement in [
            "DELETE FROM ftpd_chat_friends WHERE username = $1 OR friend = $1",
            "DELETE FROM ftpd_chat_requests WHERE sender = $1 OR recipient = $1",
            "DELETE FROM ftpd_chat_messages WHERE sender = $1 OR recipient = $1",
            "DELETE FROM ftpd_chat_colors WHERE username = $1",
            "DELETE FROM ftpd_chat_blocks WHERE username = $1 OR blocked = $1",
        ] {
            client
                .execute(statement, &[&user])
                .await
                .map_err(failed("deleting a user's chat"))?;
        }
        Ok(())
    }

    fn push_stored(&self, push: Push) -> bool {
        tokio::spawn(follow_messages(Arc::downgrade(&self.db), push));
        true
    }
}
