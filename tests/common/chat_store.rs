//! Behaviour every chat store keeps, run against each engine (SQLite in `tests/chat.rs`,
//! PostgreSQL in `tests/postgres.rs`).

use ftprep::server::chat::store::{ChatStore, Stored, Waiting};

/// Makes `a` and `b` friends.
async fn befriend(store: &dyn ChatStore, a: &str, b: &str) {
    store.add(a, b, 10).await.unwrap();
    store.add(b, a, 10).await.unwrap();
}

/// Issue 27.10: one friend could fill another's whole inbox, so every other friend got
/// `InboxFull`. Waiting messages are capped per sender as well as in all.
pub async fn one_sender_cannot_fill_an_inbox(store: &dyn ChatStore) {
    let limits = Waiting {
        total: 3,
        per_sender: 2,
    };
    befriend(store, "flooder", "victim").await;
    befriend(store, "friend", "victim").await;
    befriend(store, "other", "victim").await;
    let send = |from: &'static str, nonce: u64| {
        store.store_message(from, "victim", "hi", nonce, 1, limits)
    };
    assert!(matches!(
        send("flooder", 1).await.unwrap(),
        Stored::Message { .. }
    ));
    assert!(matches!(
        send("flooder", 2).await.unwrap(),
        Stored::Message { .. }
    ));
    assert_eq!(send("flooder", 3).await.unwrap(), Stored::SenderFull);
    // Another friend still gets through...
    assert!(matches!(
        send("friend", 4).await.unwrap(),
        Stored::Message { .. }
    ));
    // ...until the inbox is full in all.
    assert_eq!(send("other", 5).await.unwrap(), Stored::InboxFull);
    // Once read, the sender may write again.
    let waiting = store.waiting("victim", 0, 10).await.unwrap();
    assert_eq!(waiting.len(), 3);
    let last = waiting.last().map(|m| m.id).unwrap();
    store.ack("victim", last, 10).await.unwrap();
    assert!(matches!(
        send("flooder", 6).await.unwrap(),
        Stored::Message { .. }
    ));
}

/// Issue 27.9: a block ends what there is between two users, is listed, bounded, and
/// undone by an unblock.
pub async fn blocks_end_it_and_are_bounded(store: &dyn ChatStore) {
    befriend(store, "bob", "mallory").await;
    store.add("eve", "bob", 10).await.unwrap();
    assert!(store.set_blocked("bob", "mallory", true, 2).await.unwrap());
    assert!(store.set_blocked("bob", "eve", true, 2).await.unwrap());
    assert!(
        store.friends("bob").await.unwrap().is_empty(),
        "nothing between them"
    );
    assert!(store.friends("mallory").await.unwrap().is_empty());
    assert_eq!(store.blocked("bob").await.unwrap(), ["eve", "mallory"]);
    assert!(store.blocks("bob", "mallory").await.unwrap());
    assert!(!store.blocks("mallory", "bob").await.unwrap());
    // Bounded; blocking again someone already blocked is no new block.
    assert!(!store.set_blocked("bob", "trudy", true, 2).await.unwrap());
    assert!(store.set_blocked("bob", "eve", true, 2).await.unwrap());
    assert!(store.set_blocked("bob", "eve", false, 2).await.unwrap());
    assert_eq!(store.blocked("bob").await.unwrap(), ["mallory"]);
    store.delete_user("mallory").await.unwrap();
    assert!(store.blocked("bob").await.unwrap().is_empty());
}
