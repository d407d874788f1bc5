//! Where the chat keeps what must survive a restart: friendships, requests, messages (until
//! delivered, then as history), colours. [`ChatStore`] is the seam and says the rules every
//! engine keeps; each engine is a file of its own:
//! - `sqlite`: [`SqliteChatStore`], the embedded default (`chat.db` in the state directory,
//!   WAL, every commit synced, so a message acknowledged to its sender survives `kill -9`
//!   and a power cut);
//! - `postgres`: the same rules in PostgreSQL, shared by every node.

pub mod postgres;

mod sqlite;

use async_trait::async_trait;
use futures_util::future::BoxFuture;

use crate::chat::{ChatMessage, FriendState};
pub use sqlite::SqliteChatStore;

/// A store's failure, its cause kept.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The engine failed at `what`.
    #[error("chat store: {what}: {source}")]
    Engine {
        /// What was being done.
        what: String,
        /// The engine's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The store's worker is gone or broken.
    #[error("chat store: {0}")]
    Stopped(&'static str),
}

impl StoreError {
    /// The engine failed at `what`, for this reason.
    pub fn engine(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StoreError::Engine {
            what: what.into(),
            source: source.into(),
        }
    }
}

/// How both stores code where a line of a friends list stands (`0` friends, `1` asked,
/// `2` asked by), as their queries build it.
pub(crate) fn relation_state(code: i64) -> FriendState {
    match code {
        0 => FriendState::Friends,
        1 => FriendState::Asked,
        _ => FriendState::AskedBy,
    }
}

/// The embedded store's file name in the state directory.
pub const CHAT_DB: &str = "chat.db";

/// What `add` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// A request is waiting for the other's answer (also when it already was).
    Asked,
    /// They had asked us: now friends (also when we already were).
    Friends,
    /// Too many of our requests are waiting already.
    TooManyRequests,
}

/// What `store_message` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Stored now, or earlier under the same nonce (a resend): its id and time.
    Message { id: u64, at: i64 },
    /// The recipient has too many messages waiting; nothing stored.
    InboxFull,
    /// The recipient has too many messages waiting from this sender (others may still
    /// write to them); nothing stored.
    SenderFull,
    /// The two are not friends; nothing stored.
    NotFriends,
}

/// How many undelivered messages one recipient may have waiting: in all, and from any one
/// sender (so that one friend cannot fill an inbox against all the others).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiting {
    /// In all.
    pub total: u32,
    /// From one sender.
    pub per_sender: u32,
}

impl Waiting {
    /// `limit` in all, and no other bound per sender.
    pub const fn up_to(limit: u32) -> Self {
        Waiting {
            total: limit,
            per_sender: limit,
        }
    }
}

/// The chat's durable state.
#[async_trait]
pub trait ChatStore: Send + Sync {
    /// `from` asks `to` to be friends (or accepts `to`'s request).
    async fn add(&self, from: &str, to: &str, max_asked: u32) -> Result<Added, StoreError>;
    /// Ends what there is between the two (friendship, a request either way); whether
    /// there was anything.
    async fn remove(&self, a: &str, b: &str) -> Result<bool, StoreError>;
    /// `user`'s friends and requests, by name.
    async fn friends(&self, user: &str) -> Result<Vec<Relation>, StoreError>;
    /// Stores a message for delivery, durably, if the two are friends and the recipient has
    /// fewer undelivered than `limits` allow, in all and from `from`. A `(from, nonce)` seen
    /// before returns the first one's id.
    ///
    /// The message takes its place when this is called, not when the future is first
    /// polled: messages stored by calls made one after another get ids in that order, so a
    /// session can have several in flight (pipelined) and keep their order.
    fn store_message(
        &self,
        from: &str,
        to: &str,
        text: &str,
        nonce: u64,
        at: i64,
        limits: Waiting,
    ) -> BoxFuture<'static, Result<Stored, StoreError>>;
    /// `user`'s undelivered messages with ids above `after`, oldest first, at most `limit`.
    async fn waiting(
        &self,
        user: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<ChatMessage>, StoreError>;
    /// Marks `user`'s messages up to `up_to` delivered; trims the history of what it
    /// touched to the `keep` most recent messages each way of a conversation (delivered
    /// messages past those go; undelivered ones stay).
    async fn ack(&self, user: &str, up_to: u64, keep: u32) -> Result<(), StoreError>;
    /// The last `limit` messages between the two, oldest first.
    async fn history(&self, a: &str, b: &str, limit: u32) -> Result<Vec<ChatMessage>, StoreError>;
    /// Makes `user` block `name` (`blocked`), or stop blocking them. A block ends what
    /// there is between the two. False when `user` blocks `max` names already.
    async fn set_blocked(
        &self,
        user: &str,
        name: &str,
        blocked: bool,
        max: u32,
    ) -> Result<bool, StoreError>;
    /// The names `user` blocks, sorted.
    async fn blocked(&self, user: &str) -> Result<Vec<String>, StoreError>;
    /// Whether `user` blocks `name`.
    async fn blocks(&self, user: &str, name: &str) -> Result<bool, StoreError>;
    /// Sets (or clears) `user`'s colour.
    async fn set_color(&self, user: &str, color: Option<&str>) -> Result<(), StoreError>;
    /// The colour `user` chose, if any.
    async fn color(&self, user: &str) -> Result<Option<String>, StoreError>;
    /// Forgets everything of `user` (`ftpd deluser`).
    async fn delete_user(&self, user: &str) -> Result<(), StoreError>;

    /// Asks the store to call `push` with each message once it is stored durably, in id
    /// order (keep `push` short: it runs on the store's own time). True if it will; a store
    /// that cannot (the default) leaves sessions to read new messages when woken.
    fn push_stored(&self, push: Push) -> bool {
        let _ = push;
        false
    }
}

/// One line of a user's friends list as stored: the other's name, where it stands, and (for
/// friends only) the colour they chose.
pub type Relation = (String, FriendState, Option<String>);

/// What a store calls with each message it has stored: see [`ChatStore::push_stored`].
pub type Push = std::sync::Arc<dyn Fn(&ChatMessage) + Send + Sync>;
