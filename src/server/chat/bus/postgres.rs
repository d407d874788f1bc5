//! What chat sessions on other nodes must hear of: presence (a user is online while any
//! node has a session of theirs) and events (friend requests, friendships, presence
//! changes), carried by `NOTIFY` to every node, which hands them to its own sessions.
//! Messages travel on their own (see `chat/store/postgres.rs`).

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::chat::ChatEvent;
use crate::error::DatabaseError;
use crate::server::postgres::{PgDatabase, database_error};

/// How often a node says it is still there.
const HEARTBEAT: Duration = Duration::from_secs(20);
/// A node not heard of for this long is taken as gone: its presence no longer counts.
const NODE_ALIVE_SECS: f64 = 60.0;
/// ... and after this long its rows go.
const NODE_FORGOTTEN_SECS: f64 = 600.0;
const LISTEN_AGAIN_AFTER: Duration = Duration::from_millis(500);
const LISTEN_AGAIN_AT_MOST: Duration = Duration::from_secs(30);

/// One event for the sessions of one user, from one node.
#[derive(Debug, Serialize, Deserialize)]
struct Notice {
    node: String,
    to: String,
    event: ChatEvent,
}

/// What this node calls to hand an event from another node to its sessions.
pub use crate::server::chat::bus::Tell;

/// This node's link to the chat sessions of the others.
pub struct PgChatBus {
    db: Arc<PgDatabase>,
    node: String,
    notices: mpsc::UnboundedSender<(String, ChatEvent)>,
}

impl std::fmt::Debug for PgChatBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgChatBus")
            .field("node", &self.node)
            .finish()
    }
}

impl PgChatBus {
    /// Joins the nodes of `db`: events from the others go to `tell`. Keeps itself known
    /// (a heartbeat) and listening for as long as it lives.
    pub fn start(db: Arc<PgDatabase>, tell: Tell) -> Arc<Self> {
        let node = format!("{:016x}", rand::random::<u64>());
        let (notices, queue) = mpsc::unbounded_channel();
        let bus = Arc::new(PgChatBus { db, node, notices });
        tokio::spawn(publish_in_order(Arc::downgrade(&bus), queue));
        tokio::spawn(heartbeat(Arc::downgrade(&bus)));
        tokio::spawn(listen(Arc::downgrade(&bus), tell));
        bus
    }

    /// Tells the sessions of `to` on the other nodes (in the order of the calls).
    pub fn publish(&self, to: &str, event: &ChatEvent) {
        let _ = self.notices.send((to.to_owned(), event.clone()));
    }

    /// `user` has their first session on this node: true if they had none anywhere (they
    /// came online).
    pub async fn joined(&self, user: &str) -> bool {
        let joined = async {
            let client = self.db.client().await?;
            self.renew(&client).await?;
            client
                .execute(
                    "INSERT INTO ftpd_chat_presence (node, username) VALUES ($1, $2) \
                     ON CONFLICT DO NOTHING",
                    &[&self.node, &user],
                )
                .await
                .map_err(database_error("recording a chat presence"))?;
            Ok::<_, DatabaseError>(())
        };
        if let Err(e) = joined.await {
            tracing::warn!(error = %e, "cannot record a chat presence");
        }
        !self.online_elsewhere(user).await
    }

    /// `user`'s last session on this node ended: true if they have none anywhere now.
    pub async fn left(&self, user: &str) -> bool {
        let left = async {
            self.db
                .client()
                .await?
                .execute(
                    "DELETE FROM ftpd_chat_presence WHERE node = $1 AND username = $2",
                    &[&self.node, &user],
                )
                .await
                .map_err(database_error("removing a chat presence"))?;
            Ok::<_, DatabaseError>(())
        };
        if let Err(e) = left.await {
            tracing::warn!(error = %e, "cannot remove a chat presence");
        }
        !self.online_elsewhere(user).await
    }

    /// Whether another node, alive, has a session of `user` (false when it cannot tell).
    pub async fn online_elsewhere(&self, user: &str) -> bool {
        let asked = async {
            let row = self
                .db
                .client()
                .await?
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM ftpd_chat_presence p \
                     JOIN ftpd_chat_nodes n USING (node) WHERE p.username = $1 \
                     AND p.node <> $2 AND n.seen_at > now() - make_interval(secs => $3))",
                    &[&user, &self.node, &NODE_ALIVE_SECS],
                )
                .await
                .map_err(database_error("reading chat presence"))?;
            Ok::<bool, DatabaseError>(row.get(0))
        };
        asked.await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read chat presence");
            false
        })
    }

    async fn renew(&self, client: &tokio_postgres::Client) -> Result<(), DatabaseError> {
        client
            .execute(
                "INSERT INTO ftpd_chat_nodes (node, seen_at) VALUES ($1, now()) \
                 ON CONFLICT (node) DO UPDATE SET seen_at = now()",
                &[&self.node],
            )
            .await
            .map_err(database_error("renewing this chat node"))?;
        Ok(())
    }
}

/// PostgreSQL's limit on a NOTIFY payload.
const NOTIFY_MAX_BYTES: usize = 8000;

async fn publish_in_order(
    bus: Weak<PgChatBus>,
    mut queue: mpsc::UnboundedReceiver<(String, ChatEvent)>,
) {
    while let Some((to, event)) = queue.recv().await {
        let Some(bus) = bus.upgrade() else { return };
        let notice = Notice {
            node: bus.node.clone(),
            to,
            event,
        };
        let Ok(payload) = serde_json::to_string(&notice) else {
            continue;
        };
        // NOTIFY carries at most 8000 bytes: a longer event (a carbon of a long message)
        // stays on this node; the other nodes' sessions find it in the history.
        if payload.len() >= NOTIFY_MAX_BYTES {
            tracing::debug!(bytes = payload.len(), "a chat event too long for NOTIFY");
            continue;
        }
        let sent = async {
            bus.db
                .client()
                .await?
                .execute("SELECT pg_notify('ftpd_chat_events', $1)", &[&payload])
                .await
                .map_err(database_error("telling the other nodes"))
        };
        if let Err(e) = sent.await {
            tracing::warn!(error = %e, "a chat event did not reach the other nodes");
        }
    }
}

async fn heartbeat(bus: Weak<PgChatBus>) {
    loop {
        {
            let Some(bus) = bus.upgrade() else { return };
            let renewed = async {
                let client = bus.db.client().await?;
                bus.renew(&client).await?;
                client
                    .execute(
                        "DELETE FROM ftpd_chat_nodes \
                         WHERE seen_at < now() - make_interval(secs => $1)",
                        &[&NODE_FORGOTTEN_SECS],
                    )
                    .await
                    .map_err(database_error("forgetting stopped chat nodes"))?;
                Ok::<_, DatabaseError>(())
            };
            if let Err(e) = renewed.await {
                tracing::warn!(error = %e, "cannot renew this chat node");
            }
        }
        tokio::time::sleep(HEARTBEAT).await;
    }
}

async fn listen(bus: Weak<PgChatBus>, tell: Tell) {
    let mut pause = LISTEN_AGAIN_AFTER;
    loop {
        let Some(database) = bus.upgrade().map(|b| Arc::clone(&b.db)) else {
            return;
        };
        match database.listen("ftpd_chat_events").await {
            Ok((_client, mut notices)) => {
                pause = LISTEN_AGAIN_AFTER;
                drop(database);
                while let Some(payload) = notices.recv().await {
                    let Some(bus) = bus.upgrade() else { return };
                    match serde_json::from_str::<Notice>(&payload) {
                        Ok(notice) if notice.node != bus.node => tell(&notice.to, &notice.event),
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "an unreadable chat event from another node")
                        }
                    }
                }
                tracing::warn!(
                    "no longer hearing of chat events from other nodes; listening again"
                );
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for chat events"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(LISTEN_AGAIN_AT_MOST);
    }
}

#[async_trait::async_trait]
impl crate::server::chat::bus::ChatBus for PgChatBus {
    fn publish(&self, to: &str, event: &ChatEvent) {
        PgChatBus::publish(self, to, event);
    }

    async fn joined(&self, user: &str) -> bool {
        PgChatBus::joined(self, user).await
    }

    async fn left(&self, user: &str) -> bool {
        PgChatBus::left(self, user).await
    }

    async fn online_elsewhere(&self, user: &str) -> bool {
        PgChatBus::online_elsewhere(self, user).await
    }
}
