//! Logging in: trust on first use, server addresses, names and fingerprints as typed.

use super::*;

#[test]
fn tls_trust_on_first_use_through_the_binaries() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    let addr = server.addr.clone();
    let known_hosts = sb.path().join("home/.config/ftpc/known_hosts");

    // No terminal to ask and no --accept-new: refused, with the fingerprint to compare.
    let out = sb.ftpc(
        &["--server", &addr, "login", "alice", "--password-stdin"],
        "pw\n",
    );
    assert_eq!(out.status.code(), Some(4));
    // The first line is the certificate's; the second, the SSH host key's.
    let fingerprint = text(&sb.ftpd(&["fingerprint"], "").stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(fingerprint.starts_with("SHA256:"), "{fingerprint}");
    assert!(
        text(&out.stderr).contains(&fingerprint),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("--accept-new"),
        "{}",
        text(&out.stderr)
    );
    assert!(!known_hosts.exists());

    let out = sb.ftpc(
        &[
            "--server",
            &addr,
            "--accept-new",
            "login",
            "alice",
            "--password-stdin",
        ],
        "pw\n",
    );
    assert_success(&out);
    assert_eq!(
        std::fs::read_to_string(&known_hosts).unwrap(),
        format!("{addr} {fingerprint}\n")
    );
    let key_mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(sb.path().join("ftpd-state/tls-key.pem"))
            .unwrap()
            .permissions()
            .mode()
    };
    assert_eq!(key_mode & 0o777, 0o600);

    // A restart on the same address reuses the certificate: the pin still holds.
    assert!(server.interrupt().success());
    let server = RunningServer::start_with(&sb, &["--listen", &addr]);
    assert_success(&sb.ftpc(&["mkdir", "after-restart"], ""));

    // A changed certificate is refused loudly, naming the file and line to remove.
    std::fs::write(
        &known_hosts,
        format!("other:1 SHA256:x\n{addr} SHA256:somethingelse\n"),
    )
    .unwrap();
    let out = sb.ftpc(&["ls"], "");
    assert_eq!(out.status.code(), Some(4));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("has CHANGED"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "run `ftpc known-hosts remove {addr}` (line 2 of {})",
            known_hosts.display()
        )),
        "{stderr}"
    );
    // Issue 28: as `ssh-keygen -R`: the pin goes, other lines stay, the next connection
    // asks again (here: accepts, as told).
    let out = sb.ftpc(&["known-hosts", "remove", &addr], "");
    assert_success(&out);
    let out = sb.ftpc(&["known-hosts", "list"], "");
    assert_eq!(text(&out.stdout), "other:1 SHA256:x\n");
    let out = sb.ftpc(&["known-hosts", "remove", &addr], "");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_success(&sb.ftpc(&["--accept-new", "ls"], ""));
    let pinned = std::fs::read_to_string(&known_hosts).unwrap();
    assert!(
        pinned.starts_with("other:1 SHA256:x\n") && pinned.contains(&addr),
        "{pinned}"
    );
    drop(server);

    // Plaintext only when both sides ask for it.
    let plain = RunningServer::start_with(&sb, &["--listen", "127.0.0.1:0", "--plaintext"]);
    assert!(plain.log().contains("PLAINTEXT MODE"), "{}", plain.log());
    let out = sb.ftpc(
        &[
            "--server",
            &plain.addr,
            "--accept-new",
            "login",
            "alice",
            "--password-stdin",
        ],
        "pw\n",
    );
    assert_eq!(out.status.code(), Some(4));
    assert!(
        text(&out.stderr).contains("does not speak TLS"),
        "{}",
        text(&out.stderr)
    );
    let out = sb.ftpc(
        &[
            "--server",
            &plain.addr,
            "--plaintext",
            "login",
            "alice",
            "--password-stdin",
        ],
        "pw\n",
    );
    assert_success(&out);
    assert_success(&sb.ftpc(&["mkdir", "in-clear"], ""));
    assert!(sb.path().join("ftp-root/alice/in-clear").is_dir());
}

/// `--server` takes a host name, a port or not, and IPv6 in brackets ("what users expect
/// next" in issue 12).
#[test]
fn server_addresses_as_people_write_them() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    let port = server.addr.rsplit(':').next().unwrap().to_owned();
    let by_name = format!("localhost:{port}");
    let out = sb.ftpc(
        &[
            "--server",
            &by_name,
            "--accept-new",
            "login",
            "alice",
            "--password-stdin",
        ],
        "pw\n",
    );
    assert_success(&out);
    assert!(text(&out.stderr).contains(&format!("logged in to {by_name}")));
    let out = sb.ftpc(&["--server", "localhost:0", "ls"], "");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("the port must be a number"));
}

/// Issue 28: as with ssh: `ftpc login alice@host:port`, the fingerprint pasted at the trust
/// prompt counts as yes (another one is refused), a mistyped password may be typed again
/// (three tries in all), and `--server bob@host` must match the saved login.
#[test]
fn login_takes_user_at_host_a_pasted_fingerprint_and_three_tries() {
    let sb = Sandbox::new();
    sb.adduser("alice", "right");
    let server = RunningServer::start(&sb);
    let addr = server.addr.clone();
    let fingerprint = text(&sb.ftpd(&["fingerprint"], "").stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    let destination = format!("alice@{addr}");

    // Another fingerprint pasted: refused, nothing pinned.
    let mut term = Terminal::spawn(&sb, &["login", &destination]);
    term.wait_for("(yes/no/[fingerprint])? ");
    term.type_keys("SHA256:AAAAnotthisone\r");
    term.wait_for("not this server's");
    let status = term.exit_status();
    assert_eq!(status.code(), Some(4), "{status:?}");

    let mut term = Terminal::spawn(&sb, &["login", &destination]);
    term.wait_for("(yes/no/[fingerprint])? ");
    term.type_keys(&format!("{fingerprint}\r"));
    term.wait_for(&format!("Password for alice@{addr}: "));
    term.type_keys("wrong\r");
    term.wait_for("Permission denied, please try again.");
    term.wait_for_times("Password for alice@", 2);
    term.type_keys("right\r");
    term.wait_for("logged in to");
    let status = term.exit_status();
    assert!(status.success(), "{status:?}");
    assert_success(&sb.ftpc(&["ls"], ""));

    // Three wrong passwords: exit 3 (authentication), as ssh gives up after three.
    let mut term = Terminal::spawn(&sb, &["login", &destination]);
    for attempt in 1..=3 {
        term.wait_for_times("Password for alice@", attempt);
        term.type_keys("wrong\r");
    }
    let screen = Arc::clone(&term.screen);
    let status = term.exit_status();
    assert_eq!(status.code(), Some(3), "{}", screen.lock().unwrap());
    assert_eq!(
        screen.lock().unwrap().matches("Permission denied").count(),
        2,
        "{}",
        screen.lock().unwrap()
    );

    let out = sb.ftpc(&["--server", &format!("bob@{addr}"), "ls"], "");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("ftpc login bob@{addr}")),
        "{}",
        text(&out.stderr)
    );
    assert_success(&sb.ftpc(&["--server", &destination, "ls"], ""));
    let out = sb.ftpc(&["--server", &addr, "login", "alice@other:1"], "");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    drop(server);
}
