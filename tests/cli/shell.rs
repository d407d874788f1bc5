//! The shell: help, batch mode, typing and pasting, Ctrl-C, completion, manual pages.

use super::*;

#[test]
fn every_command_explains_itself() {
    let sb = Sandbox::new();
    for (program, args) in [
        (FTPD, vec!["--help"]),
        (FTPD, vec!["serve", "--help"]),
        (FTPD, vec!["adduser", "--help"]),
        (FTPD, vec!["deluser", "--help"]),
        (FTPD, vec!["passwd", "--help"]),
        (FTPD, vec!["users", "--help"]),
        (FTPC, vec!["--help"]),
        (FTPC, vec!["login", "--help"]),
        (FTPC, vec!["logout", "--help"]),
        (FTPC, vec!["mkdir", "--help"]),
        (FTPC, vec!["ls", "--help"]),
    ] {
        let out = sb.run(program, &args, "");
        assert_success(&out);
        assert!(text(&out.stdout).contains("Usage:"), "{args:?}");
    }
    let out = sb.run(FTPC, &["frobnicate"], "");
    assert_eq!(out.status.code(), Some(2));
    let out = sb.ftpc(
        &[
            "--server",
            "127.0.0.1:1",
            "login",
            "alice",
            "--password-stdin",
        ],
        "pw\n",
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(text(&out.stderr).starts_with("ftpc: login alice: cannot connect to 127.0.0.1:1"));
}

#[test]
fn batch_mode_runs_in_order_and_stops_at_the_first_failure() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    std::fs::write(sb.path().join("local.txt"), b"data").unwrap();
    std::fs::write(
        sb.path().join("batch.txt"),
        "mkdir work\ncd work\nput local.txt\nls\n# a comment\n\nrmdir missing\nmkdir never\n",
    )
    .unwrap();
    let out = sb.ftpc(&["shell", "-b", "batch.txt"], "");
    assert_fails(
        &out,
        1,
        "ftpc: batch.txt:7: rmdir missing: no such file or directory",
    );
    assert_eq!(text(&out.stdout), "local.txt\n");
    assert!(sb.path().join("ftp-root/alice/work/local.txt").is_file());
    assert!(!sb.path().join("ftp-root/alice/work/never").exists());

    // Commands on standard input when it is not a terminal, with `ftpc` alone.
    let out = sb.ftpc(&[], "pwd\ncd work\npwd\nls -l\ncd /\nexit\nmkdir not-run\n");
    assert_success(&out);
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("/\n/work\n-            4 "), "{stdout}");
    assert!(!sb.path().join("ftp-root/alice/not-run").exists());

    // A line that does not parse is a usage error (exit 2) with its line number.
    let out = sb.ftpc(&["shell"], "pwd\nfrobnicate now\n");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).starts_with("ftpc: -:2: frobnicate: "),
        "{}",
        text(&out.stderr)
    );
    // Escapes are refused in the shell too.
    let out = sb.ftpc(&["shell"], "cd work\ncd ../..\n");
    assert_fails(
        &out,
        1,
        "ftpc: -:2: cd ../..: leads outside your home directory",
    );
}

/// Issue 12.2: after the server ended an idle session, the shell's next command failed
/// with "timed out waiting for the peer" (it looked at a socket nothing had polled while it
/// waited for input). The shell connects again first, here in batch mode on a pipe, with a
/// pause between commands.
#[test]
fn the_shell_replaces_a_connection_the_server_ended_while_it_waited() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server =
        RunningServer::start_with(&sb, &["--listen", "127.0.0.1:0", "--idle-timeout", "1"]);
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    let mut shell = sb
        .command(FTPC, &["shell"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = shell.stdin.take().unwrap();
    writeln!(stdin, "mkdir first").unwrap();
    stdin.flush().unwrap();
    let home = sb.path().join("ftp-root/alice");
    wait_until("the first command ran", || home.join("first").is_dir());
    // Every connection of the shell idles out (the first login's closed by itself).
    let count = |what: &str| server.log().matches(what).count();
    wait_until("the server ended the idle session", || {
        count("closing connection") + 1 >= count("login succeeded")
    });
    writeln!(stdin, "mkdir second").unwrap();
    writeln!(stdin, "ls").unwrap();
    drop(stdin);
    let out = shell.wait_with_output().unwrap();
    assert_success(&out);
    assert_eq!(text(&out.stdout), "first/\nsecond/\n");
}

/// Issues 12.10 and 12.11: usage errors exit 2 as the README says, and a batch line that
/// does not parse says all of what is wrong, not a sentence cut before the missing argument.
#[test]
fn usage_errors_exit_2_and_say_what_is_missing() {
    let sb = Sandbox::new();
    let out = sb.ftpc(&["login", "Bad Name"], "");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("invalid username"));
    let out = sb.ftpd(&["adduser", "bob", "--iterations", "100"], "");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("4096"), "{}", text(&out.stderr));
    let out = sb.ftpd(&["passwd", "Bad Name"], "");
    assert_eq!(out.status.code(), Some(2));
    // Issue 28: -c is --continue alone; sync's checksum and bench's clients are long names
    // (and sync's help says rsync spells it -c).
    for args in [&["sync", "-c", "a", ":b"][..], &["bench", "-c", "2"]] {
        let out = sb.ftpc(args, "");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let help = text(&sb.ftpc(&["sync", "--help"], "").stdout);
    assert!(
        help.contains("--checksum") && help.contains("rsync spells it -c"),
        "{help}"
    );

    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    let out = sb.ftpc(&[], "put\n");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(
            "-:1: put: the following required arguments were not provided: <LOCAL... [REMOTE]>"
        ),
        "{stderr}"
    );
}

/// Issue 12.6: lines pasted or typed ahead were lost: the editor read them with the first
/// line and dropped them with it. Every line runs, in order, whether it arrives as typing
/// or as a bracketed paste.
#[test]
fn every_line_typed_ahead_or_pasted_runs() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    let mut term = Terminal::spawn(&sb, &[]);
    term.wait_for("alice@");
    // Three lines at once, as fast typing or a paste without brackets arrives.
    term.type_keys("mkdir one\rmkdir two\rmkdir three\r");
    // A bracketed paste, as terminals send one.
    term.type_keys("\x1b[200~mkdir four\nmkdir five\n\x1b[201~\r");
    term.type_keys("exit\r");
    let screen = term.screen();
    let status = term.exit_status();
    assert!(status.success(), "{status:?}: {screen}");
    let home = sb.path().join("ftp-root/alice");
    for dir in ["one", "two", "three", "four", "five"] {
        assert!(home.join(dir).is_dir(), "{dir} was not made");
    }
    let history =
        std::fs::read_to_string(sb.path().join("home/.local/share/ftpc/history")).unwrap();
    assert!(history.contains("mkdir five"), "{history}");
}

/// Issue 12.7: Ctrl-C during a transfer ended the whole shell (exit 130) and lost its
/// history. It stops the transfer (the partial data stays for -c), the shell goes on, and
/// the next command gets a connection that works.
#[test]
fn ctrl_c_stops_a_transfer_not_the_shell() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    let home = sb.path().join("ftp-root/alice");
    std::fs::create_dir_all(&home).unwrap();
    let big = std::fs::File::create(home.join("big")).unwrap();
    big.set_len(4 << 30).unwrap();
    drop(big);
    let mut term = Terminal::spawn(&sb, &[]);
    term.wait_for("alice@");
    term.type_keys("get big\r");
    let partial = || {
        std::fs::read_dir(sb.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().starts_with(".ftprep-part-"))
    };
    wait_until("the download started", partial);
    term.type_keys("\x03");
    // Issue 28: and says how to go on.
    term.wait_for("interrupted; what arrived is kept: the same command with -c continues it");
    term.type_keys("mkdir after\rexit\r");
    let status = term.exit_status();
    assert!(status.success(), "{status:?}");
    assert!(home.join("after").is_dir());
    assert!(partial(), "the partial data stays for get -c");
    assert!(!sb.path().join("big").exists());
    let history =
        std::fs::read_to_string(sb.path().join("home/.local/share/ftpc/history")).unwrap();
    assert!(history.contains("get big"), "{history}");
}

/// Issue 28: `ftpc get <Tab>` in bash offered local files; it offers the remote names over
/// the saved login, as scp's completion does (directories with a `/`, `sync :<Tab>` with
/// the colon), and never a name that would write to the terminal.
#[test]
fn bash_completes_remote_names_over_the_saved_login() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    let home = sb.path().join("ftp-root/alice");
    std::fs::create_dir_all(home.join("notebook")).unwrap();
    std::fs::write(home.join("notes.txt"), "x").unwrap();
    std::fs::write(home.join("other"), "x").unwrap();
    std::fs::write(home.join("no\u{1b}]0;owned\u{7}"), "x").unwrap();
    std::fs::write(home.join("notebook/page 1"), "x").unwrap();
    let script = sb.ftpc(&["completions", "bash"], "");
    assert_success(&script);
    std::fs::write(sb.path().join("completion.bash"), &script.stdout).unwrap();
    let bin = Path::new(FTPC).parent().unwrap().display().to_string();
    let path = format!("{bin}:{}", std::env::var("PATH").unwrap_or_default());
    let complete = |words: &str| -> Vec<String> {
        let program = format!(
            "source ./completion.bash; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
             COMP_TYPE=9; _clap_complete_ftpc ftpc \"${{COMP_WORDS[COMP_CWORD]}}\" x; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\""
        );
        let out = sb
            .command("bash", &["-c", &program])
            .env("PATH", &path)
            .output()
            .unwrap();
        assert_success(&out);
        let mut lines: Vec<String> = text(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(complete("ftpc get no"), ["notebook/", "notes.txt"]);
    assert_eq!(complete("ftpc ls notebook/"), ["notebook/page 1"]);
    assert_eq!(complete("ftpc sync here :no"), [":notebook/", ":notes.txt"]);
    assert_eq!(complete("ftpc rm oth"), ["other"]);
    // A local argument completes local paths.
    std::fs::write(sb.path().join("local-file"), "x").unwrap();
    assert_eq!(complete("ftpc put local-f"), ["local-file"]);
    drop(server);
}

/// Shell completions and manual pages for both binaries ("what users expect next" in
/// issue 12); the bash script is checked by bash itself.
#[test]
fn completions_and_manual_pages() {
    let sb = Sandbox::new();
    for (program, name) in [(FTPC, "ftpc"), (FTPD, "ftpd")] {
        let bash = sb.run(program, &["completions", "bash"], "");
        assert_success(&bash);
        let script = text(&bash.stdout);
        // ftpc's script asks ftpc (remote names); ftpd's is written out.
        let function = match name {
            "ftpc" => "_clap_complete_ftpc()".to_owned(),
            _ => format!("_{name}()"),
        };
        assert!(script.contains(&function), "{script}");
        std::fs::write(sb.path().join("completion.bash"), &script).unwrap();
        let syntax = Command::new("bash")
            .args(["-n", "completion.bash"])
            .current_dir(sb.path())
            .status()
            .unwrap();
        assert!(syntax.success(), "{name}: bash rejects the script");
        for shell in ["zsh", "fish"] {
            assert_success(&sb.run(program, &["completions", shell], ""));
        }
        let man = sb.run(program, &["man"], "");
        assert_success(&man);
        assert!(text(&man.stdout).contains(&format!(".TH {}", name.to_uppercase())));
    }
    // Issue 28: one page per binary with every command --help lists (and, for ftpc, the
    // shell's), and the sections a manual has; not a stub naming pages that do not exist.
    for (program, name, sections) in [
        (
            FTPC,
            "ftpc",
            &[
                "SHELL COMMANDS",
                "FILES",
                "ENVIRONMENT",
                "EXIT STATUS",
                "EXAMPLES",
            ][..],
        ),
        (
            FTPD,
            "ftpd",
            &["FILES", "ENVIRONMENT", "EXIT STATUS", "EXAMPLES"][..],
        ),
    ] {
        let page = text(&sb.run(program, &["man"], "").stdout);
        let help = text(&sb.run(program, &["--help"], "").stdout);
        let commands: Vec<&str> = help
            .split("Commands:")
            .nth(1)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .filter_map(|l| l.split_whitespace().next())
            .filter(|c| *c != "help")
            .collect();
        assert!(commands.len() > 8, "{help}");
        for command in commands {
            assert!(
                page.contains(&format!(".SS \"{name} {}\"", command.replace('-', "\\-"))),
                "{name} {command} is not in the manual"
            );
        }
        for section in sections {
            assert!(
                page.contains(&format!(".SH {section}\n")),
                "{name}: no {section}"
            );
        }
        assert!(
            !page
                .lines()
                .any(|l| l.ends_with("(1)") || l.ends_with("(8)")),
            "{name}: names pages that do not exist"
        );
    }
    let page = text(&sb.ftpc(&["man"], "").stdout);
    for nested in [
        ".SS \"ftpc friends add\"",
        ".SS \"ftpc known\\-hosts remove\"",
        ".SS \"lcd\"",
    ] {
        assert!(page.contains(nested), "{nested} missing");
    }
    // Help reads well: a command's own options apart from the connection ones, and
    // `fingerprint` shows only what it uses.
    let help = text(&sb.ftpc(&["ls", "--help"], "").stdout);
    assert!(help.contains("Connection (any command):"), "{help}");
    let help = text(&sb.ftpd(&["fingerprint", "--help"], "").stdout);
    assert!(!help.contains("--max-connections"), "{help}");
}

/// Issue 28: the README promised the shell "all of the above"; `time`, `friends`, `send`,
/// `inbox` and `color` were unknown there. They run in the shell as on the command line
/// (here in a batch), and `chat` in a batch says it needs a terminal.
#[test]
fn the_shell_has_the_chat_and_time_commands() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw-a");
    sb.adduser("bob", "pw-b");
    let server = RunningServer::start_with(
        &sb,
        &[
            "--listen",
            "127.0.0.1:0",
            "--time-listen",
            "127.0.0.1:0",
            "--time-local-stratum",
            "7",
        ],
    );
    let time_addr = server.time_address();
    assert_success(&sb.first_login(&server.addr, "bob", "pw-b"));
    let login = [
        "--server",
        &server.addr,
        "--accept-new",
        "login",
        "alice",
        "--password-stdin",
    ];
    assert_success(&ftpc_as(&sb, "alice", &login, "pw-a\n"));
    assert_success(&ftpc_as(&sb, "alice", &["friends", "add", "bob"], ""));

    let batch = format!(
        "time {time_addr} -n 1\nfriends add alice\nfriends\nsend alice from the shell\n\
         color green\nfriends blocked\n"
    );
    let out = sb.ftpc(&["shell", "-b", "-"], &batch);
    assert_success(&out);
    let shown = text(&out.stdout);
    assert!(shown.contains("stratum 7, reference LOCL"), "{shown}");
    assert!(
        shown.contains("alice\tonline") || shown.contains("alice\toffline"),
        "{shown}"
    );
    let out = ftpc_as(
        &sb,
        "alice",
        &["shell", "-b", "-"],
        "inbox --json\nfriends\n",
    );
    assert_success(&out);
    let shown = text(&out.stdout);
    assert!(shown.contains("\"text\":\"from the shell\""), "{shown}");
    assert!(shown.contains("bob\t"), "{shown}");

    let out = sb.ftpc(&["shell", "-b", "-"], "chat\n");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("needs a terminal"),
        "{}",
        text(&out.stderr)
    );
    let out = sb.ftpc(&["chat"], "");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("needs a terminal") && !text(&out.stderr).contains("ENOTTY"),
        "{}",
        text(&out.stderr)
    );
    drop(server);
}

/// Issue 28: the shell as sftp users know it: `!command` runs locally, `lmkdir` makes a
/// local directory, `lls` passes its flags to `ls`, and in a batch a line starting with
/// `-` may fail without stopping the rest.
#[test]
fn the_shell_runs_local_commands_and_tolerates_marked_failures() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    let batch = "!echo made > local-note\n\
                 lmkdir -p deep/er\n\
                 lls -a -1 deep\n\
                 -rmdir not-there\n\
                 mkdir after\n\
                 !false\n\
                 mkdir never\n";
    let out = sb.ftpc(&["shell", "-b", "-"], batch);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(sb.path().join("local-note")).unwrap(),
        "made\n"
    );
    assert!(sb.path().join("deep/er").is_dir());
    assert!(
        text(&out.stdout).contains(".\n..\ner\n"),
        "{}",
        text(&out.stdout)
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("-:4: rmdir not-there"), "{stderr}");
    assert!(stderr.contains("-:6: !false"), "{stderr}");
    let home = sb.path().join("ftp-root/alice");
    assert!(home.join("after").is_dir());
    assert!(!home.join("never").exists());
    drop(server);
}
