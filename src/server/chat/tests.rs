use super::requests::{HISTORY_REPLY_BYTES, newest_that_fit};
use super::*;
use crate::chat::ChatMessage;

/// Issue 27.11: `History` at its limit over long messages made a reply larger than a
/// frame, and the server closed the connection. The reply keeps the newest that fit.
#[test]
fn a_history_reply_always_fits_a_frame_and_keeps_the_newest() {
    let message = |id: u64| ChatMessage {
        id,
        from: "alice".into(),
        to: "bob".into(),
        at: 0,
        text: "x".repeat(MAX_TEXT_BYTES),
    };
    let mut messages: Vec<_> = (1..=u64::from(MAX_HISTORY)).map(message).collect();
    assert!(
        crate::wire::encode(&ChatReply::History {
            messages: messages.clone()
        })
        .is_err()
    );
    newest_that_fit(&mut messages, HISTORY_REPLY_BYTES);
    let kept = messages.len() as u64;
    assert!(kept > 100 && kept < u64::from(MAX_HISTORY), "{kept}");
    assert_eq!(messages.last().unwrap().id, u64::from(MAX_HISTORY));
    assert_eq!(
        messages.first().unwrap().id,
        u64::from(MAX_HISTORY) - kept + 1
    );
    let reply = crate::wire::encode(&ChatReply::History { messages }).unwrap();
    assert!(reply.len() <= HISTORY_REPLY_BYTES, "{}", reply.len());
    // Short messages all fit.
    let mut few: Vec<_> = (1..=10)
        .map(|id| ChatMessage {
            text: "hi".into(),
            ..message(id)
        })
        .collect();
    newest_that_fit(&mut few, HISTORY_REPLY_BYTES);
    assert_eq!(few.len(), 10);
}
