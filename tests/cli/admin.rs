//! The admin commands and `ftpd serve` itself: users, settings, the state directory.

use super::*;

#[test]
fn adduser_serve_login_mkdir_ls_logout_through_the_binaries() {
    let sb = Sandbox::new();
    sb.adduser("alice", "s3cret pass");
    let server = RunningServer::start(&sb);
    let addr = server.addr.clone();

    let out = sb.ftpc(
        &[
            "--server",
            &addr,
            "--accept-new",
            "login",
            "alice",
            "--password-stdin",
        ],
        "s3cret pass\n",
    );
    assert_success(&out);
    assert!(text(&out.stderr).contains(&format!("logged in to {addr} as alice")));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(sb.credentials())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        !std::fs::read_to_string(sb.credentials())
            .unwrap()
            .contains("s3cret")
    );
    let mode = std::fs::metadata(sb.path().join("users.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // Logging in again (as the lockout message says to) goes to the same server, with
    // the same transport: no --server needed (issue 11.13).
    let again = sb.ftpc(&["login", "alice", "--password-stdin"], "s3cret pass\n");
    assert_success(&again);
    assert!(
        text(&again.stderr).contains(&format!("logged in to {addr} as alice")),
        "{}",
        text(&again.stderr)
    );

    // Later commands reuse the login: no --server, no password.
    assert_fails(
        &sb.ftpc(&["mkdir", "remote/dir"], ""),
        1,
        "ftpc: mkdir remote/dir: parent directory does not exist (use -p)",
    );
    assert_success(&sb.ftpc(&["mkdir", "-p", "remote/dir"], ""));
    assert_fails(
        &sb.ftpc(&["mkdir", "remote/dir"], ""),
        1,
        "ftpc: mkdir remote/dir: already exists",
    );
    assert_fails(
        &sb.ftpc(&["mkdir", "../escape"], ""),
        1,
        "ftpc: mkdir ../escape: leads outside your home directory",
    );
    let out = sb.ftpc(&["ls"], "");
    assert_success(&out);
    assert_eq!(text(&out.stdout), "remote/\n");
    let out = sb.ftpc(&["ls", "remote"], "");
    assert_eq!(text(&out.stdout), "dir/\n");
    assert!(sb.path().join("ftp-root/alice/remote/dir").is_dir());
    assert!(!sb.path().join("ftp-root/escape").exists());

    // Wrong password and unknown user: the same message and exit code.
    let wrong = sb.ftpc(
        &[
            "--server",
            &addr,
            "--accept-new",
            "login",
            "alice",
            "--password-stdin",
        ],
        "nope\n",
    );
    assert_fails(
        &wrong,
        3,
        "ftpc: login alice: authentication failed: wrong username or password",
    );
    let ghost = sb.ftpc(
        &["--server", &addr, "login", "ghost", "--password-stdin"],
        "nope\n",
    );
    assert_fails(
        &ghost,
        3,
        "ftpc: login ghost: authentication failed: wrong username or password",
    );

    // A password change on the server expires the cached login.
    assert_success(&sb.ftpd(
        &[
            "passwd",
            "alice",
            "--password-stdin",
            "--iterations",
            "4096",
        ],
        "new pass\n",
    ));
    assert_fails(
        &sb.ftpc(&["ls"], ""),
        3,
        "ftpc: login expired, run: ftpc login alice",
    );
    assert_success(&sb.ftpc(
        &[
            "--server",
            &addr,
            "--accept-new",
            "login",
            "alice",
            "--password-stdin",
        ],
        "new pass\n",
    ));
    assert_success(&sb.ftpc(&["ls"], ""));

    assert_success(&sb.ftpc(&["logout"], ""));
    assert_fails(
        &sb.ftpc(&["ls"], ""),
        3,
        "ftpc: not logged in, run: ftpc login USER",
    );

    let log = server.log();
    assert!(
        log.contains("login succeeded") && log.contains("user=alice"),
        "{log}"
    );
    assert!(
        log.contains("login failed") && log.contains("user=ghost"),
        "{log}"
    );
    assert!(log.contains("command=\"mkdir\""), "{log}");
    let status = server.interrupt();
    assert!(status.success(), "ftpd exited with {status:?}");
}

#[test]
fn user_administration() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw1");
    sb.adduser("bob", "pw2");
    let out = sb.ftpd(
        &[
            "adduser",
            "alice",
            "--password-stdin",
            "--iterations",
            "4096",
        ],
        "x\n",
    );
    assert_fails(&out, 1, "ftpd: user alice already exists");
    let out = sb.ftpd(&["adduser", "Alice", "--password-stdin"], "x\n");
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(
        text(&out.stderr).contains("invalid username \"Alice\""),
        "{}",
        text(&out.stderr)
    );
    let out = sb.ftpd(
        &["adduser", "carol", "--password-stdin", "--iterations", "10"],
        "x\n",
    );
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(
        text(&out.stderr).contains("10 is not in 4096..=10000000"),
        "{}",
        text(&out.stderr)
    );
    let out = sb.ftpd(&["adduser", "carol", "--password-stdin"], "");
    assert_fails(&out, 1, "ftpd: no password on standard input");

    let out = sb.ftpd(&["users"], "");
    assert_eq!(text(&out.stdout), "alice\nbob\n");
    let out = sb.ftpd(
        &[
            "adduser",
            "carol",
            "--password-stdin",
            "--iterations",
            "4096",
            "--quota",
            "1.5G",
        ],
        "x\n",
    );
    assert_success(&out);
    let out = sb.ftpd(
        &["adduser", "erin", "--password-stdin", "--quota", "lots"],
        "x\n",
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(
        text(&sb.ftpd(&["users"], "").stdout),
        "alice\nbob\ncarol\tquota 1.5 GiB\n"
    );
    assert_success(&sb.ftpd(&["deluser", "carol"], ""));
    assert_success(&sb.ftpd(&["deluser", "alice"], ""));
    assert_fails(
        &sb.ftpd(&["deluser", "alice"], ""),
        1,
        "ftpd: no such user: alice",
    );
    assert_fails(
        &sb.ftpd(&["passwd", "alice", "--password-stdin"], "x\n"),
        1,
        "ftpd: no such user: alice",
    );
    assert_eq!(text(&sb.ftpd(&["users"], "").stdout), "bob\n");

    // Verifiers are in PostgreSQL's format; without --iterations, OWASP's 600,000.
    assert_success(&sb.ftpd(&["adduser", "dave", "--password-stdin"], "pw\n"));
    let db = std::fs::read_to_string(sb.path().join("users.db")).unwrap();
    assert!(db.starts_with("bob:SCRAM-SHA-256$4096:"), "{db}");
    assert!(db.contains("\ndave:SCRAM-SHA-256$600000:"), "{db}");

    // ftpc refuses a malformed name before connecting anywhere.
    let out = sb.ftpc(
        &[
            "--server",
            "127.0.0.1:9",
            "login",
            "Bad Name",
            "--password-stdin",
        ],
        "x\n",
    );
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(
        text(&out.stderr).contains("invalid username"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn concurrent_adduser_runs_keep_every_user() {
    let sb = Sandbox::new();
    let children: Vec<_> = (0..16)
        .map(|i| sb.spawn_adduser(&format!("user{i}"), "pw"))
        .collect();
    for child in children {
        assert_success(&child.wait_with_output().unwrap());
    }
    let out = sb.ftpd(&["users"], "");
    assert_success(&out);
    let mut names: Vec<_> = text(&out.stdout).lines().map(str::to_owned).collect();
    names.sort();
    let mut expected: Vec<_> = (0..16).map(|i| format!("user{i}")).collect();
    expected.sort();
    assert_eq!(names, expected);
}

#[test]
fn serve_refuses_a_corrupt_users_db_naming_file_and_line() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let db = sb.path().join("users.db");
    let mut content = std::fs::read_to_string(&db).unwrap();
    content.push_str("bob:SCRAM-SHA-256$4096:broken\n");
    std::fs::write(&db, content).unwrap();
    let out = sb.ftpd(&["serve", "--listen", "127.0.0.1:0"], "");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("./users.db:2: "), "{stderr}");
    // And admin commands leave the broken file as it is.
    assert_eq!(
        sb.ftpd(
            &[
                "adduser",
                "carol",
                "--password-stdin",
                "--iterations",
                "4096"
            ],
            "pw\n"
        )
        .status
        .code(),
        Some(1)
    );
    assert!(std::fs::read_to_string(&db).unwrap().contains("broken"));
}

#[test]
fn settings_file_json_logs_and_audit_log() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    std::fs::write(
        sb.path().join("ftpd.toml"),
        "listen = \"127.0.0.1:0\"\nplaintext = true\nlog-format = \"json\"\naudit-log = \"audit.jsonl\"\nmax-login-failures = 2\n",
    )
    .unwrap();
    // ftpd.toml in the working directory is read without being named.
    let server = RunningServer::start_with(&sb, &[]);
    let log = server.log();
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(first["level"], "WARN");
    assert!(
        first["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("PLAINTEXT"),
        "{log}"
    );

    let login = |password: &str| {
        sb.ftpc(
            &[
                "--server",
                &server.addr,
                "--plaintext",
                "login",
                "alice",
                "--password-stdin",
            ],
            &format!("{password}\n"),
        )
    };
    assert_eq!(login("wrong").status.code(), Some(3));
    assert_eq!(login("wrong").status.code(), Some(3));
    // max-login-failures = 2 from the file: now even the right password is refused from
    // this address (the address is locked out, not the name).
    assert_eq!(login("pw").status.code(), Some(3));
    let audit = std::fs::read_to_string(sb.path().join("audit.jsonl")).unwrap();
    let events: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let results: Vec<_> = events
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["event"].as_str().unwrap(),
                e["result"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        results,
        [
            "login failed",
            "login failed",
            "lockout locked",
            "login locked"
        ]
    );
    // A typo in the file is an error naming the key, not silently ignored.
    std::fs::write(sb.path().join("bad.toml"), "max-conections = 5\n").unwrap();
    let out = sb.ftpd(&["serve", "--config", "bad.toml"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("max-conections"),
        "{}",
        text(&out.stderr)
    );
    // `fingerprint` reads the same settings: plaintext from ftpd.toml has no certificate,
    // only the SSH host key (SFTP is on by default); with SFTP off, nothing to show.
    let out = sb.ftpd(&["fingerprint"], "");
    assert_success(&out);
    assert!(
        text(&out.stderr).contains("plaintext"),
        "{}",
        text(&out.stderr)
    );
    let shown = text(&out.stdout);
    assert_eq!(shown.lines().count(), 1, "{shown}");
    assert!(
        shown.contains("SHA256:") && shown.ends_with("(ED25519)\n"),
        "{shown}"
    );
    let out = sb.ftpd(&["fingerprint", "--sftp-listen", "none"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("plaintext"),
        "{}",
        text(&out.stderr)
    );
    // An explicit --config replaces ftpd.toml; an empty one means the defaults (TLS).
    std::fs::write(sb.path().join("empty.toml"), "").unwrap();
    let out = sb.ftpd(&["fingerprint", "--config", "empty.toml"], "");
    assert_success(&out);
    assert!(text(&out.stdout).starts_with("SHA256:"));
}

#[test]
fn twenty_concurrent_addusers_while_the_server_runs() {
    let sb = Sandbox::new();
    sb.adduser("first", "pw");
    let server = RunningServer::start_with(&sb, &["--listen", "127.0.0.1:0", "--plaintext"]);
    let children: Vec<_> = (0..20)
        .map(|i| sb.spawn_adduser(&format!("u{i}"), &format!("pw{i}")))
        .collect();
    // Logins keep working while the file is rewritten under the server.
    for _ in 0..5 {
        let out = sb.ftpc(
            &[
                "--server",
                &server.addr,
                "--plaintext",
                "login",
                "first",
                "--password-stdin",
            ],
            "pw\n",
        );
        assert_success(&out);
    }
    for child in children {
        assert_success(&child.wait_with_output().unwrap());
    }
    let users = text(&sb.ftpd(&["users"], "").stdout);
    assert_eq!(users.lines().count(), 21, "{users}");
    // Every new user can log in to the running server, with their own password.
    for i in [0, 7, 19] {
        let out = sb.ftpc(
            &[
                "--server",
                &server.addr,
                "--plaintext",
                "login",
                &format!("u{i}"),
                "--password-stdin",
            ],
            &format!("pw{i}\n"),
        );
        assert_success(&out);
    }
    assert!(!server.log().contains("cannot be used"), "{}", server.log());
}

#[test]
fn the_example_settings_file_parses() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/ftpd.toml.example"
    ))
    .unwrap();
    let options: ftprep::server::settings::ServeOptions = toml::from_str(&text).unwrap();
    let config = options.config().unwrap();
    assert_eq!(config.limits.max_sessions_per_user, 32);
    assert_eq!(
        config.users,
        std::path::PathBuf::from("/var/lib/ftpd/users.db").into()
    );
}

/// Issue 12.1: the README's set-up ran `cargo run --bin ftpd`, which builds only the
/// server, while the next step is `ftpc login`. Its first command must build both binaries,
/// and name the client where that command leaves it.
#[test]
fn the_readme_set_up_builds_both_binaries() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let first = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|block| block.lines().next())
        .unwrap();
    let build = first.split("&&").next().unwrap().trim();
    assert!(build.starts_with("cargo build --release"), "{first}");
    assert!(!build.contains("--bin"), "builds every binary: {first}");
    assert!(readme.contains("target/release/ftpc login alice"));
    // And the test command is the one CI runs.
    let test = readme
        .split("```sh\n")
        .nth(2)
        .and_then(|b| b.lines().next())
        .unwrap();
    let ci = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/run")).unwrap();
    assert!(ci.lines().any(|line| line.trim() == test), "{test}");
}

/// Issue 12.8: `ftpd fingerprint` made the state directory 0755 and, where there was no
/// state yet, silently printed a brand-new certificate's fingerprint; `serve` accepted a
/// state directory open to others.
#[test]
fn the_state_directory_stays_private_and_a_new_certificate_is_announced() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    let state = sb.path().join("ftpd-state");
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let first = sb.ftpd(&["fingerprint"], "");
    assert_success(&first);
    assert!(
        text(&first.stderr).contains("created a new one"),
        "{}",
        text(&first.stderr)
    );
    assert_eq!(mode(&state), 0o700);
    let again = sb.ftpd(&["fingerprint"], "");
    assert_success(&again);
    assert_eq!(
        text(&again.stderr),
        "",
        "the same certificate, nothing to say"
    );
    assert_eq!(text(&again.stdout), text(&first.stdout));

    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    assert_eq!(mode(&state), 0o700, "serve made it private again");
    assert!(server.log().contains("made it 0700"), "{}", server.log());
}

/// Issue 28: a second `ftpd serve` on another port would not start because the default
/// time address was taken; an admin command in a directory without `users.db` printed
/// nothing (`users`) or left `users.db.lock` behind (`quota`). Now the server warns and
/// serves without the time service (an address given explicitly still fails), and the
/// admin commands say where they looked.
#[test]
fn defaults_that_are_taken_warn_and_admin_commands_say_where_they_looked() {
    let sb = Sandbox::new();
    let out = sb.ftpd(&["users"], "");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let looked = sb.path().join("users.db");
    assert!(
        text(&out.stderr).contains(&format!("no users at {}", looked.display())),
        "{}",
        text(&out.stderr)
    );
    let out = sb.ftpd(&["quota", "bob", "none"], "");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("ftpd adduser NAME"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(names_here(&sb), Vec::<String>::new(), "nothing left behind");

    sb.adduser("alice", "pw");
    // The default time address, taken (by this test, or by whatever holds it).
    let _taken = std::net::UdpSocket::bind("127.0.0.1:1123");
    let server = RunningServer::spawn(&sb, &["serve", "--listen", "127.0.0.1:0"]);
    wait_until("the warning", || server.log().contains("no time service"));
    assert!(
        server.log().contains("set --time-listen"),
        "{}",
        server.log()
    );
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    drop(server);
    let out = sb.ftpd(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--time-listen",
            "127.0.0.1:1123",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cannot listen for time requests"),
        "{}",
        text(&out.stderr)
    );
}

/// Issue 30: the admin gives a user SSH keys from a `.pub` file or standard input, lists
/// them as `ssh-keygen -lf` would, and removes one by its fingerprint; bad input is refused
/// with a reason and changes nothing.
#[test]
fn addkey_keys_delkey_manage_a_users_ssh_keys() {
    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINGuPVHsCTW2Dd+EjNoRTrqiO2QQusnV84c69fnQYN5p alice@laptop";
    const SHOWN: &str =
        "256 SHA256:RitIkJUv5b7i7pZdBqWFT5wKSOwHzOiaZSR0sCtDhNM alice@laptop (ED25519)";
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let file = sb.path().join("id_ed25519.pub");
    std::fs::write(&file, format!("# my laptop\n{KEY}\n")).unwrap();
    let out = sb.ftpd(&["addkey", "alice", file.to_str().unwrap()], "");
    assert_success(&out);
    assert_eq!(text(&out.stdout), format!("added to alice: {SHOWN}\n"));
    let out = sb.ftpd(&["keys", "alice"], "");
    assert_success(&out);
    assert_eq!(text(&out.stdout), format!("{SHOWN}\n"));

    // The same key again, a line that is not a key, a user who is not there.
    let again = sb.ftpd(&["addkey", "alice", "-"], KEY);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again.stderr));
    assert!(text(&again.stderr).contains("alice already has the key SHA256:"));
    let bad = sb.ftpd(
        &["addkey", "alice", "-"],
        "ssh-dss AAAAB3NzaC1kc3MAAACB x\n",
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains("line 1:"),
        "{}",
        text(&bad.stderr)
    );
    let ghost = sb.ftpd(&["addkey", "ghost", "-"], KEY);
    assert_eq!(ghost.status.code(), Some(1));
    assert!(text(&ghost.stderr).contains("no such user: ghost"));
    let users_db = std::fs::read_to_string(sb.path().join("users.db")).unwrap();
    assert_eq!(
        users_db.matches(" key=ssh-ed25519:").count(),
        1,
        "{users_db}"
    );

    let out = sb.ftpd(
        &[
            "delkey",
            "alice",
            "SHA256:RitIkJUv5b7i7pZdBqWFT5wKSOwHzOiaZSR0sCtDhNM",
        ],
        "",
    );
    assert_success(&out);
    assert_eq!(text(&out.stdout), format!("removed from alice: {SHOWN}\n"));
    assert_eq!(text(&sb.ftpd(&["keys", "alice"], "").stdout), "");
    let gone = sb.ftpd(&["delkey", "alice", "SHA256:nothing"], "");
    assert_eq!(gone.status.code(), Some(1));
    assert!(text(&gone.stderr).contains("alice has no key SHA256:nothing"));
}
