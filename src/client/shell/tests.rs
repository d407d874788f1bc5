//! The shell's own tests.

use super::*;

/// Issue 12.5: remote completion of `my` gave `my notes.txt`, which does not parse.
#[test]
fn completed_words_read_back_as_the_names_they_complete() {
    for name in [
        "my notes.txt",
        "it's",
        "a\\b",
        "say \"hi\"",
        "$HOME",
        "plain",
        "é t",
    ] {
        let line = format!("get {}", escape_word(name));
        assert_eq!(shlex::split(&line).unwrap(), ["get", name], "{line}");
        // And the word being typed is found again, unescaped, to complete further.
        assert_eq!(current_word(&line), (4, name.to_owned()), "{line}");
    }
    assert_eq!(current_word("ls my\\ no"), (3, "my no".to_owned()));
    assert_eq!(current_word("ls 'my no"), (3, "my no".to_owned()));
    assert_eq!(current_word("ls "), (3, String::new()));
    assert_eq!(current_word("ls"), (0, "ls".to_owned()));
}

#[test]
fn shell_lines_parse() {
    let parse = |line: &str| ShellLine::try_parse_from(shlex::split(line).unwrap());
    assert!(matches!(
        parse("put -rfc 'my dir' remote").unwrap().command,
        ShellCommand::File(FileCommand::Put {
            flags: TransferFlags {
                recursive: true,
                force: true,
                resume: true,
                preserve: false,
                jobs: DEFAULT_JOBS,
                bwlimit: None,
            },
            ..
        })
    ));
    assert!(matches!(
        parse("get --bwlimit 512 f").unwrap().command,
        ShellCommand::File(FileCommand::Get {
            flags: TransferFlags {
                bwlimit: Some(524_288),
                ..
            },
            ..
        })
    ));
    assert!(matches!(
        parse("get -r -j 3 dir").unwrap().command,
        ShellCommand::File(FileCommand::Get {
            flags: TransferFlags { jobs: 3, .. },
            ..
        })
    ));
    assert!(parse("get -r -j 0 dir").is_err());
    assert!(matches!(parse("quit").unwrap().command, ShellCommand::Exit));
    assert!(matches!(
        parse("cd").unwrap().command,
        ShellCommand::Cd { path: None }
    ));
    assert!(parse("frobnicate").is_err());
    assert!(parse("mkdir").is_err());
}

/// Issue 11.12: `ls` printed escape sequences and newlines from names as they came.
#[test]
fn listing_escapes_what_a_terminal_would_obey() {
    let entries = [Entry {
        name: "a\u{1b}]0;owned\u{7}\nfake-line".into(),
        kind: EntryKind::File,
        size: 1,
        modified: None,
    }];
    for long in [false, true] {
        let mut out = Vec::new();
        let style = ListingStyle {
            long,
            escape: true,
            ..ListingStyle::default()
        };
        write_listing(&mut out, &entries, style).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 1, "{text:?}");
        assert!(!text.trim_end().chars().any(char::is_control), "{text:?}");
        assert!(
            text.contains("a\\u{1b}]0;owned\\u{7}\\nfake-line"),
            "{text:?}"
        );
    }
}

#[test]
fn long_listing_shows_kind_size_and_name() {
    let entries = [
        Entry {
            name: "d".into(),
            kind: EntryKind::Directory,
            size: 4096,
            modified: None,
        },
        Entry {
            name: "f".into(),
            kind: EntryKind::File,
            size: 12,
            modified: Some(0),
        },
    ];
    let long = ListingStyle {
        long: true,
        ..ListingStyle::default()
    };
    let mut out = Vec::new();
    write_listing(&mut out, &entries, long).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<_> = text.lines().collect();
    assert!(
        lines[0].starts_with("d         4096 ---------------- d/"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("-           12 19") && lines[1].ends_with(" f"),
        "{text}"
    );
    let mut out = Vec::new();
    write_listing(&mut out, &entries, ListingStyle::default()).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), "d/\nf\n");
}

/// Issue 28: `ls -a` shows what starts with `.`, which plain `ls` leaves out; into a
/// pipe names go as they are, with -0 each ended by NUL; -h sizes as GNU ls shows them.
#[test]
fn listing_styles_as_ls_has_them() {
    let entry = |name: &str, size| Entry {
        name: name.into(),
        kind: EntryKind::File,
        size,
        modified: None,
    };
    let entries = [
        entry(".hidden", 1),
        entry("two\nlines", 1536),
        entry("big", 5 << 30),
    ];
    let show = |style| {
        let mut out = Vec::new();
        write_listing(&mut out, &entries, style).unwrap();
        String::from_utf8(out).unwrap()
    };
    assert_eq!(show(ListingStyle::default()), "two\nlines\nbig\n");
    let all = ListingStyle {
        all: true,
        null: true,
        ..ListingStyle::default()
    };
    assert_eq!(show(all), ".hidden\0two\nlines\0big\0");
    let human = ListingStyle {
        long: true,
        human: true,
        ..ListingStyle::default()
    };
    let shown = show(human);
    assert!(
        shown.contains("         1.5K ") && shown.contains("         5.0G "),
        "{shown}"
    );
    assert_eq!(human_size(0), "0");
    assert_eq!(human_size(1023), "1023");
    assert_eq!(human_size(1024), "1.0K");
    assert_eq!(human_size(1025), "1.1K");
    assert_eq!(human_size(10 * 1024), "10K");
    assert_eq!(human_size(10 * 1024 + 1), "11K");
    assert_eq!(human_size(1024 * 1024 - 1), "1.0M");
    assert_eq!(human_size(u64::MAX), "16E");
    assert_eq!(human_size(1024 * 1024), "1.0M");
}
