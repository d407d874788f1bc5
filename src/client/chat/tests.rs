use super::*;

fn message(id: u64, text: &str) -> ChatMessage {
    ChatMessage {
        id,
        from: "bob".into(),
        to: "alice".into(),
        at: 0,
        text: text.into(),
    }
}

/// Issue 27.5: against a server that sends messages and never `CaughtUp`, `ftpc inbox`
/// grew to 391 MB in 16 s. It stops at its caps, in count and in bytes.
#[tokio::test]
async fn an_endless_inbox_stops_at_the_caps() {
    let mut sent = 0u64;
    let inbox = gather_waiting(async || {
        sent += 1;
        Ok(Some(ChatEvent::Message(message(sent, "hi"))))
    })
    .await
    .unwrap();
    assert_eq!(inbox.messages.len(), INBOX_MESSAGES);
    assert!(inbox.more);
    assert_eq!(sent as usize, INBOX_MESSAGES, "nothing read beyond the cap");
    let long = "x".repeat(crate::chat::MAX_TEXT_BYTES);
    let mut sent = 0u64;
    let inbox = gather_waiting(async || {
        sent += 1;
        Ok(Some(ChatEvent::Message(message(sent, &long))))
    })
    .await
    .unwrap();
    assert!(inbox.more);
    assert_eq!(
        inbox.messages.len(),
        INBOX_BYTES / crate::chat::MAX_TEXT_BYTES
    );
    // An honest inbox ends at CaughtUp, everything in it.
    let mut events = vec![
        ChatEvent::CaughtUp,
        ChatEvent::Message(message(2, "b")),
        ChatEvent::Message(message(1, "a")),
    ];
    let inbox = gather_waiting(async || Ok(events.pop())).await.unwrap();
    assert_eq!(inbox.messages.len(), 2);
    assert!(!inbox.more);
}

/// Issue 27.5: texts over 4 KiB were accepted from the server.
#[test]
fn events_no_server_may_send_are_refused() {
    let too_long = "x".repeat(crate::chat::MAX_TEXT_BYTES + 1);
    for bad in [
        ChatEvent::Message(message(1, &too_long)),
        ChatEvent::Message(message(1, "")),
        ChatEvent::Message(ChatMessage {
            from: "bo\u{1b}]0;b".into(),
            ..message(1, "hi")
        }),
        ChatEvent::Presence {
            name: "x".repeat(1000),
            online: true,
        },
        ChatEvent::FriendRequest { from: "".into() },
        // Bob's message to alice, told to alice as one she sent.
        ChatEvent::Sent(message(1, "hi")),
        ChatEvent::Color {
            name: "bob".into(),
            color: Some("\u{1b}[5m".into()),
        },
    ] {
        assert!(check_event(&bad, "alice").is_err(), "{bad:?}");
    }
    let fine = "x".repeat(crate::chat::MAX_TEXT_BYTES);
    assert!(check_event(&ChatEvent::Message(message(1, &fine)), "alice").is_ok());
    assert!(check_event(&ChatEvent::CaughtUp, "alice").is_ok());
    let ours = ChatMessage {
        from: "alice".into(),
        to: "bob".into(),
        ..message(2, "hi")
    };
    assert!(check_event(&ChatEvent::Sent(ours), "alice").is_ok());
}

#[test]
fn chat_lines_wrap_under_the_text_and_take_several_lines_and_me() {
    let painter = Painter { colour: false };
    let mut message = ChatMessage {
        id: 1,
        from: "bob".into(),
        to: "alice".into(),
        at: 0,
        text: "one two three four five six seven eight nine ten".into(),
    };
    let line = painter.chat_line(&message, None, false, "12:01", Some(40));
    assert_eq!(
        line,
        "12:01  bob: one two three four five six\n            seven eight nine ten"
    );
    // Unwrapped without a width; a line break of the message starts an indented line,
    // so a peer cannot make a line that looks like another message.
    message.text = "first\r\n12:02  carol: give me your password".into();
    let line = painter.chat_line(&message, None, false, "12:01", None);
    assert_eq!(
        line,
        "12:01  bob: first\n            12:02  carol: give me your password"
    );
    message.text = "/me waves".into();
    let line = painter.chat_line(&message, None, false, "12:01", Some(80));
    assert_eq!(line, "12:01  * bob waves");
    // Escapes stay escaped; the colour codes of the name take no columns.
    message.text = "a\x1b[2J b".into();
    let coloured = Painter { colour: true }.chat_line(&message, Some("red"), false, "t", None);
    assert_eq!(coloured.matches('\x1b').count(), 2, "{coloured:?}");
    message.text = "x ".repeat(30);
    let coloured =
        Painter { colour: true }.chat_line(&message, Some("red"), false, "12:01", Some(40));
    let second = coloured.lines().nth(1).unwrap();
    assert!(
        second.starts_with(&format!("{}x", " ".repeat(12))),
        "{coloured:?}"
    );
}

#[test]
fn times_show_the_date_only_when_the_day_changes() {
    use chrono::TimeZone;
    let at = |y, m, d, h, min| {
        chrono::Local
            .with_ymd_and_hms(y, m, d, h, min, 0)
            .unwrap()
            .timestamp_millis()
    };
    let mut timeline = Timeline {
        day: chrono::NaiveDate::from_ymd_opt(2026, 12, 7).unwrap(),
    };
    assert_eq!(
        timeline.stamp(at(2026, 12, 7, 12, 1)),
        (None, "12:01".into())
    );
    assert_eq!(
        timeline.stamp(at(2026, 12, 6, 23, 59)),
        (Some("-- Sunday 6 December 2026 --".into()), "23:59".into())
    );
    assert_eq!(timeline.stamp(at(2026, 12, 6, 23, 59)).0, None);
    assert_eq!(
        timeline.stamp(at(2026, 12, 7, 0, 2)),
        (Some("-- Monday 7 December 2026 --".into()), "00:02".into())
    );
}

#[test]
fn a_peers_escape_sequences_never_reach_the_terminal() {
    let painter = Painter { colour: true };
    let message = ChatMessage {
        id: 1,
        from: "mallory".into(),
        to: "alice".into(),
        at: 0,
        text: "hi\x1b]0;owned\x07\x1b[2J\x1b[1A\rgone\u{9b}31m".into(),
    };
    let line = painter.message(&message, Some("red"), false);
    // Only our own colour sequences: ESC [ 31 m before the name, ESC [ 0 m after.
    assert_eq!(line.matches('\x1b').count(), 2, "{line:?}");
    assert!(line.contains("\x1b[31mmallory\x1b[0m"), "{line:?}");
    assert!(!line.contains('\r') && !line.contains('\x07') && !line.contains('\u{9b}'));
    let plain = Painter { colour: false }.message(&message, Some("red"), false);
    assert!(!plain.contains('\x1b'), "{plain:?}");
    // A name is neutralised too.
    assert!(
        !Painter { colour: true }
            .name("x\x1b[2Jy", None, false)
            .contains("\x1b[2J")
    );
}

#[test]
fn derived_colours_are_stable_and_differ() {
    assert_eq!(derived_colour("alice"), derived_colour("alice"));
    let names = ["alice", "bob", "carol", "dave", "erin", "frank"];
    let distinct: std::collections::HashSet<_> = names.iter().map(|n| derived_colour(n)).collect();
    assert!(distinct.len() > 1);
}

#[test]
fn marks_rise_per_login_and_survive() {
    let dir = tempfile::tempdir().unwrap();
    let store = super::super::CredentialStore::at(dir.path().join("credentials"));
    let marks = DeliveredMarks::beside(&store);
    assert_eq!(marks.get("s:1", "alice"), 0);
    marks.set("s:1", "alice", 7).unwrap();
    marks.set("s:1", "bob", 3).unwrap();
    marks.set("s:1", "alice", 9).unwrap();
    assert_eq!(marks.get("s:1", "alice"), 9);
    assert_eq!(marks.get("s:1", "bob"), 3);
}
