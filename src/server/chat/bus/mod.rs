//! How the chat's events and presence cross to the other nodes that share the users'
//! database (an engine: PostgreSQL's NOTIFY); a single node has none.

pub mod postgres;

use std::sync::Arc;

use async_trait::async_trait;

use crate::chat::ChatEvent;

/// Hands an event from another node to the sessions of a user here.
pub type Tell = Arc<dyn Fn(&str, &ChatEvent) + Send + Sync>;

/// Joins the other nodes: what they tell goes to the [`Tell`] given.
pub type StartBus = Arc<dyn Fn(Tell) -> Arc<dyn ChatBus> + Send + Sync>;

/// The nodes' shared line.
#[async_trait]
pub trait ChatBus: Send + Sync {
    /// Tells `to`'s sessions on the other nodes (in the order told; best effort).
    fn publish(&self, to: &str, event: &ChatEvent);
    /// `user` has their first session on this node: true if they had none anywhere (they
    /// came online).
    async fn joined(&self, user: &str) -> bool;
    /// `user`'s last session on this node ended: true if they have none anywhere now.
    async fn left(&self, user: &str) -> bool;
    /// Whether `user` has a session on another node.
    async fn online_elsewhere(&self, user: &str) -> bool;
}
