//! Behaviour every chat store keeps, written once and run against each engine by
//! [`every_rule`] (SQLite in `tests/chat.rs`, PostgreSQL in `tests/postgres.rs`). Each rule
//! uses names of its own, so all run on one store.

use ftprep::chat::{ChatMessage, FriendState};
use ftprep::server::chat::store::{Added, ChatStore, Stored, Waiting};

/// Every rule below, one after the other, on `store` (which trims history at every
/// acknowledgement).
pub async fn every_rule(store: &dyn ChatStore) {
    a_request_accepted_makes_friends_and_removal_ends_it_both_ways(store).await;
    messages_wait_until_acknowledged_once_each_and_inboxes_are_bounded(store).await;
    history_keeps_the_newest_each_way_and_what_is_undelivered(store).await;
    a_message_takes_its_place_when_stored_not_when_awaited(store).await;
    colours_show_to_friends_and_a_removed_user_leaves_nothing(store).await;
    one_sender_cannot_fill_an_inbox(store).await;
    blocks_end_it_and_are_bounded(store).await;
}

/// Whether `a` has `b` among their friends.
async fn friends_with(s: &dyn ChatStore, a: &str, b: &str) -> bool {
    s.friends(a)
        .await
        .unwrap()
        .iter()
        .any(|(name, state, _)| name == b && *state == FriendState::Friends)
}

async fn a_request_accepted_makes_friends_and_removal_ends_it_both_ways(s: &dyn ChatStore) {
    assert_eq!(s.add("r-alice", "r-bob", 10).await.unwrap(), Added::Asked);
    assert_eq!(
        s.friends("r-bob").await.unwrap(),
        vec![("r-alice".into(), FriendState::AskedBy, None)]
    );
    assert_eq!(
        s.friends("r-alice").await.unwrap(),
        vec![("r-bob".into(), FriendState::Asked, None)]
    );
    assert!(!friends_with(s, "r-alice", "r-bob").await);
    assert_eq!(s.add("r-bob", "r-alice", 10).await.unwrap(), Added::Friends);
    assert!(friends_with(s, "r-alice", "r-bob").await);
    assert!(friends_with(s, "r-bob", "r-alice").await);
    assert!(s.remove("r-bob", "r-alice").await.unwrap());
    assert!(
        !s.remove("r-bob", "r-alice").await.unwrap(),
        "nothing left to remove"
    );
    assert!(!friends_with(s, "r-alice", "r-bob").await);
    assert!(s.friends("r-alice").await.unwrap().is_empty());
    // Waiting requests per sender are bounded; a repeated one is no new request.
    for i in 0..3 {
        assert_eq!(
            s.add("r-carol", &format!("r-u{i}"), 3).await.unwrap(),
            Added::Asked
        );
    }
    assert_eq!(
        s.add("r-carol", "r-u9", 3).await.unwrap(),
        Added::TooManyRequests
    );
    assert_eq!(s.add("r-carol", "r-u1", 3).await.unwrap(), Added::Asked);
}

async fn messages_wait_until_acknowledged_once_each_and_inboxes_are_bounded(s: &dyn ChatStore) {
    let (a, b) = ("w-a", "w-b");
    assert_eq!(
        s.store_message(a, b, "strangers", 1, 1, Waiting::up_to(2))
            .await
            .unwrap(),
        Stored::NotFriends
    );
    befriend(s, a, b).await;
    let first = s
        .store_message(a, b, "one", 7, 1, Waiting::up_to(2))
        .await
        .unwrap();
    let again = s
        .store_message(a, b, "one", 7, 2, Waiting::up_to(2))
        .await
        .unwrap();
    assert_eq!(
        first, again,
        "the same nonce is the same message, at its first time"
    );
    let Stored::Message { id: first, .. } = first else {
        panic!("not stored: {first:?}")
    };
    let Stored::Message { id: second, .. } = s
        .store_message(a, b, "two", 8, 3, Waiting::up_to(2))
        .await
        .unwrap()
    else {
        panic!("not stored")
    };
    assert!(second > first, "ids follow the order of the calls");
    assert_eq!(
        s.store_message(a, b, "three", 9, 4, Waiting::up_to(2))
            .await
            .unwrap(),
        Stored::InboxFull
    );
    let waiting = s.waiting(b, 0, 100).await.unwrap();
    let texts: Vec<_> = waiting.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["one", "two"]);
    assert_eq!(waiting[0].from, a);
    assert_eq!(waiting[0].to, b);
    assert_eq!(
        s.waiting(b, first, 100).await.unwrap().len(),
        1,
        "after `first`"
    );
    assert_eq!(
        s.waiting(b, 0, 1).await.unwrap().len(),
        1,
        "at most `limit`"
    );
    s.ack(b, first, 100).await.unwrap();
    let left = s.waiting(b, 0, 100).await.unwrap();
    assert_eq!(left.iter().map(|m| m.id).collect::<Vec<_>>(), [second]);
    assert_eq!(s.history(b, a, 10).await.unwrap().len(), 2);
    // Delivered, history keeps the most recent `keep` per conversation.
    s.ack(b, second, 1).await.unwrap();
    assert!(s.waiting(b, 0, 100).await.unwrap().is_empty());
    let kept = s.history(a, b, 10).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].text, "two");
}

async fn history_keeps_the_newest_each_way_and_what_is_undelivered(s: &dyn ChatStore) {
    let (a, b) = ("h-a", "h-b");
    befriend(s, a, b).await;
    // a -> b: m0..m5, then b -> a: m6..m9.
    let mut last = 0;
    for i in 0..10u64 {
        let (from, to) = if i < 6 { (a, b) } else { (b, a) };
        let Stored::Message { id, .. } = s
            .store_message(from, to, &format!("m{i}"), i, 1, Waiting::up_to(100))
            .await
            .unwrap()
        else {
            panic!()
        };
        last = id;
    }
    let texts = |messages: Vec<ChatMessage>| -> Vec<String> {
        messages.into_iter().map(|m| m.text).collect()
    };
    // b takes in m0 and m1 only; a all of b's. Three are kept each way (the newest,
    // delivered or not): m0, m1 and m6 go.
    let to_b = s.waiting(b, 0, 100).await.unwrap();
    s.ack(b, to_b[1].id, 3).await.unwrap();
    s.ack(a, last, 3).await.unwrap();
    assert_eq!(
        texts(s.history(a, b, 100).await.unwrap()),
        ["m2", "m3", "m4", "m5", "m7", "m8", "m9"]
    );
    // The undelivered ones older than the three newest stay until delivered.
    assert_eq!(
        texts(s.waiting(b, 0, 100).await.unwrap()),
        ["m2", "m3", "m4", "m5"]
    );
    s.ack(b, last, 3).await.unwrap();
    assert_eq!(
        texts(s.history(b, a, 100).await.unwrap()),
        ["m3", "m4", "m5", "m7", "m8", "m9"]
    );
    assert_eq!(
        texts(s.history(b, a, 2).await.unwrap()),
        ["m8", "m9"],
        "the newest `limit`"
    );
}

async fn a_message_takes_its_place_when_stored_not_when_awaited(s: &dyn ChatStore) {
    let (a, b) = ("o-a", "o-b");
    befriend(s, a, b).await;
    let calls: Vec<_> = (0..20)
        .map(|i| s.store_message(a, b, &format!("m{i}"), i, 1, Waiting::up_to(100)))
        .collect();
    // Awaited last to first: the ids still follow the order of the calls.
    let mut ids = Vec::new();
    for call in calls.into_iter().rev() {
        match call.await.unwrap() {
            Stored::Message { id, .. } => ids.push(id),
            other => panic!("{other:?}"),
        }
    }
    ids.reverse();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let texts: Vec<_> = s
        .waiting(b, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(texts, (0..20).map(|i| format!("m{i}")).collect::<Vec<_>>());
}

async fn colours_show_to_friends_and_a_removed_user_leaves_nothing(s: &dyn ChatStore) {
    let (a, b, c) = ("c-a", "c-b", "c-c");
    befriend(s, a, b).await;
    befriend(s, b, c).await;
    s.set_color(b, Some("green")).await.unwrap();
    assert!(s.friends(a).await.unwrap().contains(&(
        b.to_owned(),
        FriendState::Friends,
        Some("green".to_owned())
    )));
    s.set_color(b, None).await.unwrap();
    assert!(
        s.friends(a)
            .await
            .unwrap()
            .contains(&(b.to_owned(), FriendState::Friends, None))
    );
    s.store_message(a, b, "hello", 1, 1, Waiting::up_to(10))
        .await
        .unwrap();
    s.store_message(b, c, "hello", 2, 1, Waiting::up_to(10))
        .await
        .unwrap();
    s.delete_user(b).await.unwrap();
    assert!(s.history(a, b, 10).await.unwrap().is_empty());
    assert!(
        s.waiting(c, 0, 10).await.unwrap().is_empty(),
        "their messages go too"
    );
    assert!(s.friends(a).await.unwrap().is_empty());
    assert!(s.friends(c).await.unwrap().is_empty());
}

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
