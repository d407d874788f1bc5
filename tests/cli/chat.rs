//! The chat from scripts and on a terminal.

use super::*;

/// The chat from scripts: friends both ways, a message stored before the server is
/// killed with SIGKILL is delivered after its restart, once, with a peer's escape
/// sequences neutralised; `ftpd deluser` takes the user's chat with them.
#[test]
fn chat_commands_deliver_across_a_kill_9_and_deluser_removes_the_chat() {
    let sb = Sandbox::new();
    let mut server = alice_and_bob(&sb);
    let addr = server.addr.clone();
    let alice = |args: &[&str]| ftpc_as(&sb, "alice", args, "");
    let bob = |args: &[&str]| sb.ftpc(args, "");
    assert_success(&alice(&["friends", "add", "bob"]));
    let out = bob(&["friends"]);
    assert_success(&out);
    assert!(
        text(&out.stdout).contains("alice\tasks you"),
        "{}",
        text(&out.stdout)
    );
    // Not friends yet: refused, exit 1, in words.
    let out = alice(&["send", "bob", "early"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not friends"),
        "{}",
        text(&out.stderr)
    );
    assert_success(&bob(&["friends", "add", "alice"]));
    assert_success(&alice(&[
        "send",
        "bob",
        "hello \u{1b}[2J\u{1b}]0;owned\u{7}bob",
    ]));

    // Stored, acknowledged: a SIGKILL now loses nothing.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let server = RunningServer::start_with(&sb, &["--listen", &addr]);
    let out = bob(&["inbox"]);
    assert_success(&out);
    let shown = text(&out.stdout);
    assert!(shown.contains("alice: hello \\u{1b}[2J"), "{shown}");
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
        "{shown:?}"
    );
    let out = bob(&["inbox", "--json"]);
    assert_success(&out);
    assert_eq!(text(&out.stdout), "", "printed once");
    assert_success(&alice(&["send", "bob", "second"]));
    let out = bob(&["inbox", "--json", "--wait", "5"]);
    assert_success(&out);
    let message: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(
        (message["from"].as_str(), message["text"].as_str()),
        (Some("alice"), Some("second"))
    );

    let out = sb.ftpd(&["deluser", "alice"], "");
    assert_success(&out);
    assert!(
        text(&out.stdout).contains("and their chat"),
        "{}",
        text(&out.stdout)
    );
    let out = bob(&["friends"]);
    assert_success(&out);
    assert_eq!(text(&out.stdout), "", "alice is gone from bob's friends");
    drop(server);
}

/// `ftpc chat` on a terminal: a friend's message appears above the prompt as it comes, with
/// its escape sequences neutralised (no title change, no screen clear); `/msg` answers,
/// `/friends` shows presence, `/quit` leaves with success.
#[test]
fn ftpc_chat_shows_messages_as_they_come_and_answers() {
    let sb = Sandbox::new();
    let server = alice_and_bob(&sb);
    let alice = |args: &[&str]| ftpc_as(&sb, "alice", args, "");
    assert_success(&alice(&["friends", "add", "bob"]));

    let mut term = Terminal::spawn(&sb, &["chat"]);
    term.wait_for("chat as bob");
    term.wait_for("chat> ");
    term.type_keys("/add alice\r");
    term.wait_for("are friends now");
    assert_success(&alice(&[
        "send",
        "bob",
        "hi bob\u{1b}]0;owned\u{7}\u{1b}[2J!",
    ]));
    term.wait_for("hi bob");
    term.type_keys("/msg alice hello alice\r");
    term.wait_for("(to ");
    term.type_keys("/friends\r");
    term.wait_for("offline");
    term.type_keys("/quit\r");
    let screen = term.screen();
    let status = term.exit_status();
    assert!(status.success(), "{status:?}: {screen}");
    assert!(screen.contains("\\u{1b}]0;owned"), "{screen:?}");
    // Accepting her request says they are friends, not that bob asked.
    assert!(!screen.contains("* asked "), "{screen:?}");
    assert!(
        !screen.contains("\u{1b}]0;owned") && !screen.contains("\u{1b}[2J"),
        "{screen:?}"
    );
    let out = alice(&["inbox", "--json"]);
    assert_success(&out);
    let message: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(message["text"], "hello alice");
    drop(server);
}

/// `ftpc chat` outlives a server restart: the restarted server tells the old connection it
/// is gone (a QUIC stateless reset from the same secret), the shell says so, reconnects with
/// the cached login, and messages flow again.
#[test]
fn ftpc_chat_reconnects_when_the_server_restarts() {
    let sb = Sandbox::new();
    let mut server = alice_and_bob(&sb);
    let addr = server.addr.clone();
    let alice = |args: &[&str]| ftpc_as(&sb, "alice", args, "");
    assert_success(&alice(&["friends", "add", "bob"]));
    assert_success(&sb.ftpc(&["friends", "add", "alice"], ""));

    let mut term = Terminal::spawn(&sb, &["chat"]);
    term.wait_for("chat> ");
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let server = RunningServer::start_with(&sb, &["--listen", &addr]);
    // The next request meets the new server.
    term.type_keys("/friends\r");
    term.wait_for("reconnected");
    assert_success(&alice(&["send", "bob", "after the restart"]));
    term.wait_for("after the restart");
    term.type_keys("/quit\r");
    let screen = term.screen();
    let status = term.exit_status();
    assert!(status.success(), "{status:?}: {screen}");
    assert!(screen.contains("connection lost"), "{screen}");
    drop(server);
}

/// Issue 28: the README's chat shows `* bob is online` on joining, but friends already
/// online were never listed. They are now, and `/who` lists them again; `chat` from the file
/// shell returns to it on /quit; `/to` shows in the very next prompt; `/help` is aligned.
#[test]
fn the_chat_lists_who_is_online_on_joining() {
    let sb = Sandbox::new();
    let server = alice_and_bob(&sb);
    assert_success(&ftpc_as(&sb, "alice", &["friends", "add", "bob"], ""));
    // Alice stays online: her inbox waits for a message.
    let mut alice = sb.command(FTPC, &["inbox", "--wait", "60"]);
    alice
        .env("XDG_CONFIG_HOME", sb.path().join("alice/.config"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let alice = alice.spawn().unwrap();
    assert_success(&sb.ftpc(&["friends", "add", "alice"], ""));
    wait_until("alice is online", || {
        text(&sb.ftpc(&["friends"], "").stdout).contains("alice\tonline")
    });
    let mut term = Terminal::spawn(&sb, &[]);
    term.wait_for("bob@");
    term.type_keys("chat\r");
    // Her session began before his: presence is not pushed, the roster tells.
    term.wait_for("alice\u{1b}[0m is online");
    term.type_keys("/who\r");
    term.wait_for_times("alice\u{1b}[0m is online", 2);
    term.type_keys("/to alice\r");
    term.wait_for("to alice> ");
    term.type_keys("/help\r");
    term.wait_for("/quit");
    term.type_keys("hello there\r");
    term.wait_for("(to ");
    // Her inbox took the message and left.
    term.wait_for("alice\u{1b}[0m is offline");
    term.type_keys("/quit\r");
    term.wait_for_times("bob@", 2);
    term.type_keys("chat\r");
    term.wait_for("none of your friends is online");
    term.type_keys("/quit\r");
    term.wait_for_times("bob@", 3);
    term.type_keys("exit\r");
    let screen = term.screen();
    let status = term.exit_status();
    assert!(status.success(), "{status:?}: {screen}");
    // /help in columns: each description starts at the same place.
    let columns: Vec<usize> = screen
        .lines()
        .filter(|l| l.trim_start().starts_with("/msg ") || l.trim_start().starts_with("/quit "))
        .map(|l| l.find("send").or_else(|| l.find("leave")).unwrap())
        .collect();
    assert_eq!(columns.len(), 2, "{screen}");
    assert_eq!(columns[0], columns[1], "{screen}");
    let output = alice.wait_with_output().unwrap();
    assert!(
        text(&output.stdout).contains("hello there"),
        "{}",
        text(&output.stdout)
    );
    drop(server);
}

/// Issue 28: the chat as irssi and XMPP clients have it: `/me`, a message of several lines
/// (Alt-Enter), our messages shown on our other sessions (carbons), times as `12:01`, long
/// lines wrapped under the text, and `/color` and `ftpc color` with no colour say which.
#[test]
fn the_chat_has_actions_lines_carbons_and_short_times() {
    let sb = Sandbox::new();
    let server = alice_and_bob(&sb);
    assert_success(&ftpc_as(&sb, "alice", &["friends", "add", "bob"], ""));
    assert_success(&sb.ftpc(&["friends", "add", "alice"], ""));
    let out = sb.ftpc(&["color"], "");
    assert_success(&out);
    assert!(text(&out.stdout).starts_with("none (your name shows in "));
    assert_success(&sb.ftpc(&["color", "bright-blue"], ""));
    assert_eq!(text(&sb.ftpc(&["color"], "").stdout), "bright-blue\n");

    let mut first = Terminal::spawn(&sb, &["chat"]);
    let mut second = Terminal::spawn(&sb, &["chat"]);
    first.wait_for("online");
    second.wait_for("online");
    first.type_keys("/color\r");
    first.wait_for("* friends see your name in bright-blue");
    first.type_keys("/to alice\r");
    first.wait_for("to alice> ");
    first.type_keys("/me waves\r");
    let action = "* \u{1b}[1mbob\u{1b}[0m waves  (to ";
    first.wait_for(action);
    // The other session shows it too, once.
    second.wait_for(action);
    // Alt-Enter (ESC, Enter) starts a second line of the same message.
    first.type_keys("line one\x1b\rline two\r");
    second.wait_for("line two");
    let long = "word ".repeat(40);
    assert_success(&ftpc_as(&sb, "alice", &["send", "bob", long.trim()], ""));
    first.wait_for("alice\u{1b}[0m: word");
    let screen = first.screen();
    // Today's times are HH:MM, with no date line.
    let action_line = screen
        .lines()
        .find(|l| l.contains(action))
        .unwrap_or_else(|| panic!("{screen:?}"));
    let time = &action_line[action_line.find("* ").unwrap() - 7..][..5];
    assert!(
        time.as_bytes()[2] == b':' && time.replace(':', "").bytes().all(|b| b.is_ascii_digit()),
        "{action_line:?}"
    );
    assert!(!screen.contains("-- "), "a date line for today: {screen}");
    // The second line of a message, and a long line's rest, start under the text.
    let indent = " ".repeat("12:01  bob: ".len());
    assert!(
        screen.contains(&format!("\n{indent}line two  (to ")),
        "{screen:?}"
    );
    let wrapped = screen
        .lines()
        .skip_while(|l| !l.contains(": word"))
        .nth(1)
        .unwrap();
    assert!(
        wrapped.starts_with(&format!("{}word", " ".repeat(14))),
        "{screen:?}"
    );
    assert_eq!(second.screen().matches("waves").count(), 1);
    first.type_keys("/quit\r");
    second.type_keys("/quit\r");
    assert!(first.exit_status().success());
    assert!(second.exit_status().success());
    let out = ftpc_as(&sb, "alice", &["inbox", "--json"], "");
    assert!(
        text(&out.stdout).contains(r#""text":"line one\nline two""#),
        "{}",
        text(&out.stdout)
    );
    drop(server);
}
