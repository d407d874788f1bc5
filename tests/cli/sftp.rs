//! Issue 30: the SFTP front end, driven by OpenSSH's own `sftp` and `ssh`.

use super::*;

impl RunningServer {
    /// Where its SFTP service answers (it logs the address).
    fn sftp_port(&self) -> String {
        const LINE: &str = "SFTP (SSH) answering addr=";
        wait_until("the SFTP service is up", || self.log().contains(LINE));
        let addr = self
            .log()
            .split(LINE)
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no SFTP service in {}", self.log()));
        addr.rsplit(':').next().unwrap().to_owned()
    }
}

/// An SSH key made by `ssh-keygen` in the sandbox: its private key's path.
fn ssh_keygen(sb: &Sandbox, name: &str) -> String {
    let path = sb.path().join(name);
    let out = sb.run(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            name,
            "-f",
            path.to_str().unwrap(),
        ],
        "",
    );
    assert_success(&out);
    path.to_str().unwrap().to_owned()
}

/// A sandbox with alice (password `pw`) and an SSH key of hers that the admin added: the
/// private key's path.
fn alice_with_a_key() -> (Sandbox, String) {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let key = ssh_keygen(&sb, "alice_key");
    assert_success(&sb.ftpd(&["addkey", "alice", &format!("{key}.pub")], ""));
    (sb, key)
}

/// OpenSSH's options for a test: this key only, the host key learnt into the sandbox, no
/// prompts.
fn ssh_options(sb: &Sandbox, port: &str, key: &str) -> Vec<String> {
    let known = sb.path().join("known_hosts");
    [
        "-P".to_owned(),
        port.to_owned(),
        "-i".to_owned(),
        key.to_owned(),
        "-o".to_owned(),
        "IdentitiesOnly=yes".to_owned(),
        "-o".to_owned(),
        "BatchMode=yes".to_owned(),
        // A server that stops answering fails the test instead of hanging it.
        "-o".to_owned(),
        "ServerAliveInterval=10".to_owned(),
        "-o".to_owned(),
        "StrictHostKeyChecking=accept-new".to_owned(),
        "-o".to_owned(),
        format!("UserKnownHostsFile={}", known.display()),
        "-F".to_owned(),
        "/dev/null".to_owned(),
    ]
    .into()
}

/// `sftp -b` with `batch` as alice's `key`.
fn sftp_batch(sb: &Sandbox, port: &str, key: &str, batch: &str) -> Output {
    let file = sb.path().join("batch");
    std::fs::write(&file, batch).unwrap();
    let mut args = ssh_options(sb, port, key);
    args.extend(["-b".to_owned(), file.to_str().unwrap().to_owned()]);
    args.push("alice@127.0.0.1".to_owned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sb.run("sftp", &args, "")
}

#[test]
fn openssh_sftp_logs_in_with_a_key_and_reaches_only_the_home() {
    let (sb, key) = alice_with_a_key();
    let home = sb.path().join("ftp-root/alice");
    std::fs::create_dir_all(home.join("docs")).unwrap();
    std::fs::write(home.join("docs/hello.txt"), "hello over sftp\n").unwrap();
    std::fs::write(home.join("docs/old.txt"), "older\n").unwrap();
    let server = RunningServer::start_with(
        &sb,
        &["--listen", "127.0.0.1:0", "--sftp-listen", "127.0.0.1:0"],
    );
    let port = server.sftp_port();

    let out = sftp_batch(
        &sb,
        &port,
        &key,
        "pwd\nls -l docs\nget docs/hello.txt got.txt\nmkdir made\nrename docs/hello.txt docs/moved.txt\n\
         rename docs/old.txt docs/moved.txt\nchmod 750 made\nchmod 640 docs/moved.txt\n\
         cd ../../..\npwd\n-get ../etc/passwd stolen\nls\n",
    );
    assert_success(&out);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("Remote working directory: /\n"), "{stdout}");
    assert!(stdout.contains("hello.txt"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(sb.path().join("got.txt")).unwrap(),
        "hello over sftp\n"
    );
    assert!(home.join("made").is_dir());
    // `rename` over an existing file replaces it (posix-rename@openssh.com).
    assert_eq!(
        std::fs::read_to_string(home.join("docs/moved.txt")).unwrap(),
        "older\n"
    );
    assert!(!home.join("docs/hello.txt").exists());
    assert!(!home.join("docs/old.txt").exists());
    // chmod: the bits asked for, the owner keeping what the server needs.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| {
        std::fs::metadata(home.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("made"), 0o750);
    assert_eq!(mode("docs/moved.txt"), 0o640);
    // `..` stops at the home, as in a chroot: nothing outside it is reached.
    assert!(!sb.path().join("stolen").exists());
    assert_eq!(
        stdout.matches("Remote working directory: /\n").count(),
        2,
        "{stdout}"
    );

    // The host key the client learnt is the one `ftpd fingerprint` shows.
    let shown = sb.ftpd(&["fingerprint", "--sftp-listen", "127.0.0.1:0"], "");
    assert_success(&shown);
    let shown = text(&shown.stdout);
    let host_line = shown
        .lines()
        .nth(1)
        .expect("a second line for the host key");
    let learnt = sb.run(
        "ssh-keygen",
        &["-lf", sb.path().join("known_hosts").to_str().unwrap()],
        "",
    );
    let fingerprint = host_line.split_whitespace().nth(1).unwrap();
    assert!(fingerprint.starts_with("SHA256:"), "{host_line}");
    assert!(
        text(&learnt.stdout).contains(fingerprint),
        "{}",
        text(&learnt.stdout)
    );
    assert!(host_line.ends_with("(ED25519)"), "{host_line}");
}

#[test]
fn a_key_that_is_not_the_users_is_refused_and_shells_and_commands_are_too() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let key = ssh_keygen(&sb, "alice_key");
    let other = ssh_keygen(&sb, "other_key");
    assert_success(&sb.ftpd(&["addkey", "alice", &format!("{key}.pub")], ""));
    let audit = sb.path().join("audit.log");
    let server = RunningServer::start_with(
        &sb,
        &[
            "--listen",
            "127.0.0.1:0",
            "--sftp-listen",
            "127.0.0.1:0",
            "--audit-log",
            audit.to_str().unwrap(),
        ],
    );
    let port = server.sftp_port();

    let out = sftp_batch(&sb, &port, &other, "ls\n");
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("Permission denied (publickey)"),
        "{}",
        text(&out.stderr)
    );

    // A password is not even offered as a method unless the admin turns it on.
    let mut args = ssh_options(&sb, &port, &key);
    args[0] = "-p".to_owned();
    args.extend(["alice@127.0.0.1".to_owned(), "cat /etc/passwd".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = sb.run("ssh", &args, "");
    assert_ne!(out.status.code(), Some(0));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("running a command is not available here"),
        "{stderr}"
    );
    assert!(!text(&out.stdout).contains("root:"));

    let log = std::fs::read_to_string(&audit).unwrap();
    assert!(log.contains(r#""event":"login","user":"alice""#), "{log}");
    assert!(
        log.contains(r#""result":"failed","detail":"sftp: public key""#),
        "{log}"
    );
    assert!(log.contains(r#""result":"ok","detail":"sftp""#), "{log}");
}

/// `sftp` as alice with her password, answered by an askpass program, the commands on
/// standard input (`-b` would imply BatchMode, which never sends a password).
fn sftp_with_password(sb: &Sandbox, port: &str, password: &str, commands: &str) -> Output {
    let askpass = sb.path().join("askpass");
    std::fs::write(&askpass, format!("#!/bin/sh\necho '{password}'\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700)).unwrap();
    let known = sb.path().join("known_hosts");
    let args = [
        "-P".to_owned(),
        port.to_owned(),
        "-o".to_owned(),
        "PreferredAuthentications=password".to_owned(),
        "-o".to_owned(),
        "PubkeyAuthentication=no".to_owned(),
        "-o".to_owned(),
        "NumberOfPasswordPrompts=1".to_owned(),
        "-o".to_owned(),
        "StrictHostKeyChecking=accept-new".to_owned(),
        "-o".to_owned(),
        format!("UserKnownHostsFile={}", known.display()),
        "-F".to_owned(),
        "/dev/null".to_owned(),
        "alice@127.0.0.1".to_owned(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut command = sb.command("sftp", &args);
    command
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env_remove("DISPLAY");
    finish(command, commands)
}

/// Passwords only where the admin allows them; failures over SFTP count towards the same
/// lockout of an address as the native login's, so a brute force on one front end locks
/// the address out of both.
#[test]
fn passwords_where_allowed_and_a_brute_force_locks_the_address_out_of_both_front_ends() {
    let sb = Sandbox::new();
    sb.adduser("alice", "right pw");
    let quota = sb.ftpd(&["quota", "alice", "10M", "--files", "100"], "");
    assert_success(&quota);
    // Without --sftp-passwords the password is not even asked for.
    let keys_only = RunningServer::start_with(
        &sb,
        &["--listen", "127.0.0.1:0", "--sftp-listen", "127.0.0.1:0"],
    );
    let out = sftp_with_password(&sb, &keys_only.sftp_port(), "right pw", "ls\n");
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("Permission denied (publickey)"),
        "{}",
        text(&out.stderr)
    );
    drop(keys_only);

    let server = RunningServer::start_with(
        &sb,
        &[
            "--listen",
            "127.0.0.1:0",
            "--sftp-listen",
            "127.0.0.1:0",
            "--sftp-passwords",
            "--max-login-failures",
            "3",
        ],
    );
    let port = server.sftp_port();
    // `df` answers from the quota.
    let out = sftp_with_password(&sb, &port, "right pw", "df\n");
    assert_success(&out);
    let df = text(&out.stdout);
    assert!(df.contains("10240"), "the quota as the size in KiB: {df}");
    for _ in 0..3 {
        let out = sftp_with_password(&sb, &port, "wrong pw", "ls\n");
        assert_ne!(out.status.code(), Some(0));
    }
    // Locked out: the right password fails on both front ends from this address.
    let out = sftp_with_password(&sb, &port, "right pw", "ls\n");
    assert_ne!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let native = sb.first_login(&server.addr, "alice", "right pw");
    assert_eq!(native.status.code(), Some(3), "{}", text(&native.stderr));
}

/// Uploads appear only whole: `put` writes under a hidden name and the file is put in
/// place when closed; `put -p` keeps times and permission bits; a file sent by `sftp`
/// comes back through `ftpc` byte for byte, and the other way; past the quota nothing of
/// the file is kept.
#[test]
fn sftp_put_keeps_times_and_is_whole_and_the_quota_holds() {
    let (sb, key) = alice_with_a_key();
    assert_success(&sb.ftpd(&["quota", "alice", "3M"], ""));
    let server = RunningServer::start_with(
        &sb,
        &["--listen", "127.0.0.1:0", "--sftp-listen", "127.0.0.1:0"],
    );
    let port = server.sftp_port();
    let data: Vec<u8> = (0..1_500_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(sb.path().join("big.bin"), &data).unwrap();
    std::fs::write(sb.path().join("small.txt"), "kept times\n").unwrap();
    let set_time = sb.run("touch", &["-d", "2001-02-03 04:05:06 UTC", "small.txt"], "");
    assert_success(&set_time);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        sb.path().join("small.txt"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let huge: Vec<u8> = vec![7; 4 << 20];
    std::fs::write(sb.path().join("huge.bin"), &huge).unwrap();

    let out = sftp_batch(
        &sb,
        &port,
        &key,
        "put big.bin\nput -p small.txt\n-put huge.bin\nls -l\n",
    );
    assert_success(&out);
    let home = sb.path().join("ftp-root/alice");
    assert_eq!(std::fs::read(home.join("big.bin")).unwrap(), data);
    let meta = std::fs::metadata(home.join("small.txt")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(meta.mtime(), 981_173_106);
    // Over the quota: refused (SFTP v3 has no code for it; OpenSSH shows "Failure"), and
    // nothing of it (not even a hidden partial) is kept.
    assert!(
        text(&out.stderr).contains("write remote \"/huge.bin\": Failure"),
        "{}",
        text(&out.stderr)
    );
    let names: Vec<String> = std::fs::read_dir(&home)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains("huge")), "{names:?}");
    assert!(
        server.log().contains("result=Err(QuotaExceeded)"),
        "{}",
        server.log()
    );

    // What sftp wrote, ftpc reads back with the same checksum; and the other way.
    let login = sb.first_login(&server.addr, "alice", "pw");
    assert_success(&login);
    assert_success(&sb.ftpc(&["get", "big.bin", "back.bin"], ""));
    assert_eq!(std::fs::read(sb.path().join("back.bin")).unwrap(), data);
    std::fs::write(sb.path().join("from-ftpc.txt"), "sent by ftpc\n").unwrap();
    assert_success(&sb.ftpc(&["put", "from-ftpc.txt"], ""));
    let out = sftp_batch(&sb, &port, &key, "get from-ftpc.txt via-sftp.txt\n");
    assert_success(&out);
    assert_eq!(
        std::fs::read_to_string(sb.path().join("via-sftp.txt")).unwrap(),
        "sent by ftpc\n"
    );
}

/// The same over the object store (s3s-fs): an upload in several parts appears only whole,
/// under its name, and comes back the same through `sftp` and `ftpc`.
#[test]
fn sftp_on_the_object_store_puts_whole_files_and_reads_them_back() {
    let store = super::s3::S3Server::start();
    let (sb, key) = alice_with_a_key();
    let root = format!("s3://{}/sftp", super::s3::BUCKET);
    let server = RunningServer::spawn_with_env(
        &sb,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--time-listen",
            "none",
            "--root",
            &root,
            "--sftp-listen",
            "127.0.0.1:0",
        ],
        &[
            ("AWS_ENDPOINT", store.endpoint.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test-key"),
            ("AWS_SECRET_ACCESS_KEY", "test-secret"),
            ("AWS_ALLOW_HTTP", "true"),
        ],
    );
    let port = server.sftp_port();
    // Over one part (8 MiB): sent as a multipart upload, completed at close.
    let data: Vec<u8> = (0..(10u32 << 20)).map(|i| (i % 253) as u8).collect();
    std::fs::write(sb.path().join("parts.bin"), &data).unwrap();
    let out = sftp_batch(
        &sb,
        &port,
        &key,
        "mkdir d\nput parts.bin d/parts.bin\nrename d/parts.bin d/renamed.bin\nget d/renamed.bin back.bin\nls -l d\n\
         -chmod 600 d/renamed.bin\n",
    );
    assert_success(&out);
    assert_eq!(std::fs::read(sb.path().join("back.bin")).unwrap(), data);
    assert!(
        text(&out.stdout).contains("renamed.bin"),
        "{}",
        text(&out.stdout)
    );
    let login = sb.first_login(&server.addr, "alice", "pw");
    assert_success(&login);
    assert_success(&sb.ftpc(&["get", "d/renamed.bin", "via-ftpc.bin"], ""));
    assert_eq!(std::fs::read(sb.path().join("via-ftpc.bin")).unwrap(), data);
}

/// An SFTP packet: length, type, request id, then `body`.
fn packet(kind: u8, id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let len = u32::try_from(1 + 4 + body.len()).unwrap();
    out.extend(len.to_be_bytes());
    out.push(kind);
    out.extend(id.to_be_bytes());
    out.extend(body);
    out
}

fn string(text: &str) -> Vec<u8> {
    let mut out = u32::try_from(text.len()).unwrap().to_be_bytes().to_vec();
    out.extend(text.as_bytes());
    out
}

/// Reads one reply: its type, its request id (0 for VERSION) and the rest.
fn reply(from: &mut impl std::io::Read) -> (u8, u32, Vec<u8>) {
    let mut len = [0; 4];
    from.read_exact(&mut len).unwrap();
    let mut body = vec![0; u32::from_be_bytes(len) as usize];
    from.read_exact(&mut body).unwrap();
    let id = u32::from_be_bytes(body[1..5].try_into().unwrap());
    (body[0], id, body[5..].to_vec())
}

/// The size and mode of an ATTRS reply's rest (as this server sends them: both there).
fn size_and_mode(rest: &[u8]) -> (u64, u32) {
    let flags = u32::from_be_bytes(rest[..4].try_into().unwrap());
    assert_eq!(flags & 0b111, 0b101, "size and permissions, no owner");
    let size = u64::from_be_bytes(rest[4..12].try_into().unwrap());
    let mode = u32::from_be_bytes(rest[12..16].try_into().unwrap());
    (size, mode)
}

/// The status code of a STATUS reply's rest.
fn status_code(rest: &[u8]) -> u32 {
    u32::from_be_bytes(rest[..4].try_into().unwrap())
}

/// An SFTP session spoken by hand, through OpenSSH's `ssh -s sftp` as the transport.
struct HandMade {
    ssh: std::process::Child,
    to: std::process::ChildStdin,
    from: std::process::ChildStdout,
}

impl HandMade {
    /// Logs in as alice with `key` and sends INIT; also gives the VERSION reply's
    /// extensions.
    fn start(sb: &Sandbox, port: &str, key: &str) -> (Self, Vec<u8>) {
        use std::io::Write;
        let mut args = ssh_options(sb, port, key);
        args[0] = "-p".to_owned();
        args.extend([
            "-s".to_owned(),
            "alice@127.0.0.1".to_owned(),
            "sftp".to_owned(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut ssh = sb
            .command("ssh", &args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut to = ssh.stdin.take().unwrap();
        let mut from = ssh.stdout.take().unwrap();
        // INIT (no request id: the version, 3).
        to.write_all(&[0, 0, 0, 5, 1, 0, 0, 0, 3]).unwrap();
        let (kind, version, extensions) = reply(&mut from);
        assert_eq!((kind, version), (2, 3));
        (HandMade { ssh, to, from }, extensions)
    }

    /// Sends a request and reads its reply: type and the rest after the id.
    fn ask(&mut self, kind: u8, id: u32, body: &[u8]) -> (u8, Vec<u8>) {
        use std::io::Write;
        self.to.write_all(&packet(kind, id, body)).unwrap();
        let (kind, answered, rest) = reply(&mut self.from);
        assert_eq!(answered, id, "the reply to request {id}");
        (kind, rest)
    }

    /// Hangs up without closing anything it opened.
    fn end(self) {
        let HandMade { mut ssh, to, from } = self;
        drop((to, from));
        let _ = ssh.wait();
    }
}

/// Attacks on the SFTP session with hand-made packets, through OpenSSH's `ssh -s sftp` as
/// the transport: unknown extensions, malformed packets, paths that climb or follow a link
/// out of the home, too many handles, and a packet over the limit. Each gets its answer
/// (or, for the last, the end of the session) and the server serves the next client.
#[test]
fn hand_made_sftp_packets_get_typed_answers_and_nothing_escapes() {
    use std::io::Write;
    let (sb, key) = alice_with_a_key();
    let home = sb.path().join("ftp-root/alice");
    std::fs::create_dir_all(&home).unwrap();
    std::os::unix::fs::symlink("/etc", home.join("out")).unwrap();
    std::fs::write(home.join("keep.txt"), "abcdef").unwrap();
    std::os::unix::fs::symlink("keep.txt", home.join("inside")).unwrap();
    let server = RunningServer::start_with(
        &sb,
        &["--listen", "127.0.0.1:0", "--sftp-listen", "127.0.0.1:0"],
    );
    let port = server.sftp_port();
    let (mut ssh, extensions) = HandMade::start(&sb, &port, &key);
    assert!(String::from_utf8_lossy(&extensions).contains("posix-rename@openssh.com"));
    let (to, from) = (&mut ssh.to, &mut ssh.from);

    // An extension nobody knows: OP_UNSUPPORTED (8), by id.
    to.write_all(&packet(200, 5, &string("nosuch@example.com")))
        .unwrap();
    let (kind, id, rest) = reply(from);
    assert_eq!((kind, id, status_code(&rest)), (101, 5, 8));

    // An OPEN cut short: BAD_MESSAGE (5), answered by the request's id.
    to.write_all(&packet(3, 7, &[0, 0, 0, 9, b'x'])).unwrap();
    let (kind, id, rest) = reply(from);
    assert_eq!((kind, id, status_code(&rest)), (101, 7, 5));

    // Climbing out stops at the home: there is no /etc/passwd in it (NO_SUCH_FILE, 2).
    to.write_all(&packet(17, 8, &string("/../../etc/passwd")))
        .unwrap();
    let (kind, id, rest) = reply(from);
    assert_eq!((kind, id, status_code(&rest)), (101, 8, 2));
    // A link out of the home is not followed, for a stat or an open.
    to.write_all(&packet(17, 9, &string("/out/passwd")))
        .unwrap();
    let (kind, id, rest) = reply(from);
    assert_eq!((kind, id), (101, 9));
    assert_ne!(status_code(&rest), 0);
    let mut open = string("/out/passwd");
    open.extend([0, 0, 0, 1, 0, 0, 0, 0]); // READ, no attributes
    to.write_all(&packet(3, 10, &open)).unwrap();
    let (kind, id, rest) = reply(from);
    assert_eq!(
        (kind, id),
        (101, 10),
        "a handle for a file outside the home"
    );
    assert_ne!(status_code(&rest), 0);

    // A link inside the home: STAT follows it to the file, LSTAT answers for the link.
    to.write_all(&packet(17, 20, &string("/inside"))).unwrap();
    let (kind, id, rest) = reply(from);
    assert_eq!((kind, id), (105, 20));
    assert_eq!(size_and_mode(&rest), (6, 0o100_644));
    to.write_all(&packet(7, 21, &string("/inside"))).unwrap();
    let (kind, id, rest) = reply(from);
    assert_eq!((kind, id), (105, 21));
    assert_eq!(size_and_mode(&rest).1, 0o120_777);

    // Opened to write without truncating (as scp opens): what was not written over is kept.
    let mut open = string("/keep.txt");
    open.extend([0, 0, 0, 0x0a, 0, 0, 0, 0]); // WRITE | CREAT
    to.write_all(&packet(3, 11, &open)).unwrap();
    let (kind, id, handle) = reply(from);
    assert_eq!((kind, id), (102, 11));
    let handle = String::from_utf8(handle[4..].to_vec()).unwrap();
    let mut write = string(&handle);
    write.extend(0u64.to_be_bytes());
    write.extend(string("AB"));
    to.write_all(&packet(6, 12, &write)).unwrap();
    let (kind, id, rest) = reply(from);
    assert_eq!((kind, id, status_code(&rest)), (101, 12, 0));
    to.write_all(&packet(4, 13, &string(&handle))).unwrap();
    let (kind, id, rest) = reply(from);
    assert_eq!((kind, id, status_code(&rest)), (101, 13, 0));
    assert_eq!(
        std::fs::read_to_string(home.join("keep.txt")).unwrap(),
        "ABcdef"
    );

    // The same file opened twice for writing: the second is refused, not left waiting for
    // the first (which the session could then never close).
    let mut open = string("/twice.txt");
    open.extend([0, 0, 0, 0x1a, 0, 0, 0, 0]); // WRITE | CREAT | TRUNC
    to.write_all(&packet(3, 14, &open)).unwrap();
    let (kind, id, first) = reply(from);
    assert_eq!((kind, id), (102, 14));
    to.write_all(&packet(3, 15, &open)).unwrap();
    let (kind, id, rest) = reply(from);
    assert_eq!((kind, id, status_code(&rest)), (101, 15, 4));
    let first = String::from_utf8(first[4..].to_vec()).unwrap();
    to.write_all(&packet(4, 16, &string(&first))).unwrap();
    let (kind, id, rest) = reply(from);
    assert_eq!((kind, id, status_code(&rest)), (101, 16, 0));

    // Handles are bounded: 64 directories open, the 65th refused (FAILURE, 4).
    for n in 0..64 {
        to.write_all(&packet(11, 100 + n, &string("/"))).unwrap();
        let (kind, id, _) = reply(from);
        assert_eq!((kind, id), (102, 100 + n), "OPENDIR {n} gets a handle");
    }
    to.write_all(&packet(11, 200, &string("/"))).unwrap();
    let (kind, id, rest) = reply(from);
    assert_eq!((kind, id, status_code(&rest)), (101, 200, 4));
    assert!(String::from_utf8_lossy(&rest).contains("too many open handles"));

    // A packet longer than any request: the session ends, without reading it.
    to.write_all(&[0x7f, 0xff, 0xff, 0xff, 17]).unwrap();
    let mut rest = Vec::new();
    std::io::Read::read_to_end(from, &mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    ssh.end();

    // The server goes on serving.
    let out = sftp_batch(&sb, &port, &key, "ls\n");
    assert_success(&out);
    assert!(server.log().contains("over the limit"), "{}", server.log());
}

/// A user gives themselves SFTP access after their SCRAM login: `ftpc keys add` takes
/// their .pub file, `ftpc keys` lists it as `ssh-keygen -l` does, `sftp` logs in with it at
/// once, and after `ftpc keys del` it no longer does.
#[test]
fn ftpc_keys_add_list_del_govern_sftp_logins() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let key = ssh_keygen(&sb, "alice_key");
    let server = RunningServer::start_with(
        &sb,
        &["--listen", "127.0.0.1:0", "--sftp-listen", "127.0.0.1:0"],
    );
    let port = server.sftp_port();
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    let fingerprint = text(
        &sb.run("ssh-keygen", &["-lf", &format!("{key}.pub")], "")
            .stdout,
    );

    let out = sb.ftpc(&["keys"], "");
    assert_success(&out);
    assert_eq!(text(&out.stdout), "");
    assert!(text(&out.stderr).contains("no SSH keys yet"));
    let out = sb.ftpc(&["keys", "add", &format!("{key}.pub")], "");
    assert_success(&out);
    assert_eq!(text(&out.stdout), format!("added {fingerprint}"));
    // As ssh-keygen -l shows it: bits, fingerprint, comment, type.
    let out = sb.ftpc(&["keys"], "");
    assert_success(&out);
    assert_eq!(text(&out.stdout), fingerprint);
    let again = sb.ftpc(&["keys", "add", &format!("{key}.pub")], "");
    assert_eq!(again.status.code(), Some(1), "{}", text(&again.stderr));
    assert!(
        text(&again.stderr).contains("already has the key"),
        "{}",
        text(&again.stderr)
    );
    let not_a_key = sb.path().join("not.pub");
    std::fs::write(&not_a_key, "hello\n").unwrap();
    let bad = sb.ftpc(&["keys", "add", not_a_key.to_str().unwrap()], "");
    assert_ne!(bad.status.code(), Some(0));
    assert!(
        text(&bad.stderr).contains("line 1"),
        "{}",
        text(&bad.stderr)
    );

    assert_success(&sftp_batch(&sb, &port, &key, "ls\n"));
    let id = fingerprint.split_whitespace().nth(1).unwrap();
    assert_success(&sb.ftpc(&["keys", "del", id], ""));
    let out = sftp_batch(&sb, &port, &key, "ls\n");
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("Permission denied"),
        "{}",
        text(&out.stderr)
    );
    let gone = sb.ftpc(&["keys", "del", id], "");
    assert_ne!(gone.status.code(), Some(0));
    assert!(
        text(&gone.stderr).contains("has no key"),
        "{}",
        text(&gone.stderr)
    );
}

/// `scp` (SFTP underneath since OpenSSH 9) copies both ways: a new file, one over a longer
/// file (scp opens without truncating and then sets the size: nothing of the old one stays),
/// `-p` times, and it exits 0 because the session ends with an exit status as sshd's does.
#[test]
fn scp_copies_both_ways_and_exits_zero() {
    let (sb, key) = alice_with_a_key();
    let home = sb.path().join("ftp-root/alice");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(
        home.join("long.txt"),
        "a much longer file than what replaces it\n",
    )
    .unwrap();
    let server = RunningServer::start_with(
        &sb,
        &["--listen", "127.0.0.1:0", "--sftp-listen", "127.0.0.1:0"],
    );
    let port = server.sftp_port();
    std::fs::write(sb.path().join("short.txt"), "short\n").unwrap();
    assert_success(&sb.run("touch", &["-d", "2002-03-04 05:06:07 UTC", "short.txt"], ""));
    let scp = |args: &[&str]| {
        let mut all = ssh_options(&sb, &port, &key);
        all.extend(args.iter().map(|a| (*a).to_owned()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        sb.run("scp", &all, "")
    };
    assert_success(&scp(&["short.txt", "alice@127.0.0.1:long.txt"]));
    assert_eq!(
        std::fs::read_to_string(home.join("long.txt")).unwrap(),
        "short\n"
    );
    assert_success(&scp(&["-p", "short.txt", "alice@127.0.0.1:kept.txt"]));
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(home.join("kept.txt")).unwrap().mtime(),
        1_015_218_367
    );
    assert_success(&scp(&["alice@127.0.0.1:kept.txt", "back.txt"]));
    assert_eq!(
        std::fs::read_to_string(sb.path().join("back.txt")).unwrap(),
        "short\n"
    );
}

/// OpenSSH's `sftp` reads 255 KiB at a time with 64 reads in flight (16 MiB): a download of
/// 48 MiB completes. With russh's default channel queue it stalled after about 30 MB, the
/// client's window adjustments stuck behind a full queue.
#[test]
fn a_large_download_with_many_reads_in_flight_completes() {
    let (sb, key) = alice_with_a_key();
    let home = sb.path().join("ftp-root/alice");
    std::fs::create_dir_all(&home).unwrap();
    let data: Vec<u8> = (0..(48u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(home.join("large.bin"), &data).unwrap();
    let server = RunningServer::start_with(
        &sb,
        &["--listen", "127.0.0.1:0", "--sftp-listen", "127.0.0.1:0"],
    );
    let port = server.sftp_port();
    let out = sftp_batch(&sb, &port, &key, "get large.bin large.bin\n");
    assert_success(&out);
    assert!(std::fs::read(sb.path().join("large.bin")).unwrap() == data);
}

/// An upload cut off (the client gone after 1 MiB of 3) is kept hidden: no listing shows
/// it, through `sftp` or `ftpc`, while the user's own `stat` answers with the size kept;
/// OpenSSH's `reput` continues it from there, sending only the rest, and the whole file
/// appears. `put -a` appends to a whole file the same way.
#[test]
fn an_interrupted_upload_stays_hidden_and_reput_finishes_it() {
    let (sb, key) = alice_with_a_key();
    let audit = sb.path().join("audit.jsonl");
    let server = RunningServer::start_with(
        &sb,
        &[
            "--listen",
            "127.0.0.1:0",
            "--sftp-listen",
            "127.0.0.1:0",
            "--audit-log",
            audit.to_str().unwrap(),
        ],
    );
    let port = server.sftp_port();
    let data: Vec<u8> = (0..3 << 20).map(|i: u32| (i * 13 % 253) as u8).collect();
    std::fs::write(sb.path().join("big.bin"), &data).unwrap();

    // 1 MiB written in order, then the connection is dropped with the file open.
    let (mut ssh, _) = HandMade::start(&sb, &port, &key);
    let mut open = string("/big.bin");
    open.extend([0, 0, 0, 0x1a, 0, 0, 0, 0]); // WRITE | CREAT | TRUNC
    let (kind, handle) = ssh.ask(3, 1, &open);
    assert_eq!(kind, 102);
    let handle = String::from_utf8(handle[4..].to_vec()).unwrap();
    const CHUNK: usize = 128 << 10;
    for (n, chunk) in data[..1 << 20].chunks(CHUNK).enumerate() {
        let mut write = string(&handle);
        write.extend(((n * CHUNK) as u64).to_be_bytes());
        write.extend(u32::try_from(chunk.len()).unwrap().to_be_bytes());
        write.extend(chunk);
        let (kind, rest) = ssh.ask(6, 10 + n as u32, &write);
        assert_eq!((kind, status_code(&rest)), (101, 0), "write {n}");
    }
    ssh.end();
    wait_until("the upload is kept for a resume", || {
        server.log().contains("partial data kept for resume")
    });

    // Hidden from every listing; the user's own stat answers with what was kept.
    let out = sftp_batch(&sb, &port, &key, "ls -la\n");
    assert_success(&out);
    assert!(!text(&out.stdout).contains("big"), "{}", text(&out.stdout));
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    let listed = sb.ftpc(&["ls", "-a"], "");
    assert_success(&listed);
    assert!(
        !text(&listed.stdout).contains("big"),
        "{}",
        text(&listed.stdout)
    );
    let (mut ssh, _) = HandMade::start(&sb, &port, &key);
    let (kind, rest) = ssh.ask(17, 1, &string("/big.bin"));
    assert_eq!((kind, size_and_mode(&rest)), (105, (1 << 20, 0o100_644)));
    ssh.end();

    // reput sends the other 2 MiB, and the whole file appears.
    let out = sftp_batch(&sb, &port, &key, "reput big.bin\n");
    assert_success(&out);
    assert_success(&sb.ftpc(&["get", "big.bin", "back.bin"], ""));
    assert_eq!(std::fs::read(sb.path().join("back.bin")).unwrap(), data);
    let audit = std::fs::read_to_string(&audit).unwrap();
    let puts: Vec<serde_json::Value> = audit
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|record| record["event"] == "put" && record["result"] == "ok")
        .collect();
    assert_eq!(puts.len(), 1, "{audit}");
    assert_eq!(
        (puts[0]["bytes"].as_u64(), puts[0]["via"].as_str()),
        (Some(2 << 20), Some("sftp")),
        "only the rest was sent: {audit}"
    );

    // put -a: a whole file grows by what the local one has past its end.
    std::fs::write(sb.path().join("log.txt"), "one\n").unwrap();
    assert_success(&sftp_batch(&sb, &port, &key, "put log.txt\n"));
    std::fs::write(sb.path().join("log.txt"), "one\ntwo\n").unwrap();
    assert_success(&sftp_batch(&sb, &port, &key, "put -a log.txt\n"));
    assert_eq!(
        std::fs::read_to_string(sb.path().join("ftp-root/alice/log.txt")).unwrap(),
        "one\ntwo\n"
    );
}

/// rclone's own flags for the SFTP server at `port` as alice with `key`: the host key
/// checked against what OpenSSH learnt, and no shell commands (the server runs none;
/// without hashes from the server, `check --download` compares the bytes themselves).
fn rclone(sb: &Sandbox, port: &str, key: &str, args: &[&str]) -> Output {
    let known = sb.path().join("known_hosts");
    let config = sb.path().join("rclone.conf");
    let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    all.extend(
        [
            "--config",
            config.to_str().unwrap(),
            "--sftp-host",
            "127.0.0.1",
            "--sftp-port",
            port,
            "--sftp-user",
            "alice",
            "--sftp-key-file",
            key,
            "--sftp-known-hosts-file",
            known.to_str().unwrap(),
            "--sftp-shell-type",
            "none",
            "--sftp-disable-hashcheck",
            "--contimeout",
            "10s",
            "--timeout",
            "30s",
            "--retries",
            "1",
        ]
        .map(str::to_owned),
    );
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    sb.run("rclone", &all, "")
}

/// rclone's sftp back end (Debian's `rclone`, over Go's own SSH and SFTP): `copy` a tree
/// up, `sync` a changed one (new, changed and deleted files), `check --download` finds it
/// the same byte for byte and finds a change made on the server; `copy` brings it back.
#[test]
fn rclone_copies_syncs_and_checks_a_tree() {
    let (sb, key) = alice_with_a_key();
    let server = RunningServer::start_with(
        &sb,
        &["--listen", "127.0.0.1:0", "--sftp-listen", "127.0.0.1:0"],
    );
    let port = server.sftp_port();
    // OpenSSH learns the host key first, into the file rclone checks it against.
    assert_success(&sftp_batch(&sb, &port, &key, "mkdir up\n"));
    let tree = sb.path().join("tree");
    std::fs::create_dir_all(tree.join("a/b")).unwrap();
    std::fs::write(tree.join("a/one.txt"), "one\n").unwrap();
    let big: Vec<u8> = (0..700_000u32).map(|i| (i * 31 % 255) as u8).collect();
    std::fs::write(tree.join("a/b/big.bin"), &big).unwrap();
    std::fs::write(tree.join("gone.txt"), "to be deleted\n").unwrap();
    let tree_arg = tree.to_str().unwrap();

    let out = rclone(&sb, &port, &key, &["copy", tree_arg, ":sftp:up"]);
    assert_success(&out);
    let home = sb.path().join("ftp-root/alice/up");
    assert_eq!(std::fs::read(home.join("a/b/big.bin")).unwrap(), big);
    assert_eq!(
        std::fs::read_to_string(home.join("gone.txt")).unwrap(),
        "to be deleted\n"
    );

    std::fs::remove_file(tree.join("gone.txt")).unwrap();
    std::fs::write(tree.join("a/one.txt"), "one, changed\n").unwrap();
    std::fs::write(tree.join("new.txt"), "new\n").unwrap();
    let out = rclone(&sb, &port, &key, &["sync", tree_arg, ":sftp:up"]);
    assert_success(&out);
    assert!(!home.join("gone.txt").exists());
    assert_eq!(
        std::fs::read_to_string(home.join("a/one.txt")).unwrap(),
        "one, changed\n"
    );
    assert_eq!(
        std::fs::read_to_string(home.join("new.txt")).unwrap(),
        "new\n"
    );

    let out = rclone(
        &sb,
        &port,
        &key,
        &["check", "--download", tree_arg, ":sftp:up"],
    );
    assert_success(&out);
    // The same size, other bytes: only reading them tells.
    std::fs::write(home.join("new.txt"), "NEW\n").unwrap();
    let out = rclone(
        &sb,
        &port,
        &key,
        &["check", "--download", tree_arg, ":sftp:up"],
    );
    assert_ne!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("1 differences found"),
        "{}",
        text(&out.stderr)
    );

    let back = sb.path().join("back");
    let out = rclone(
        &sb,
        &port,
        &key,
        &["copy", ":sftp:up", back.to_str().unwrap()],
    );
    assert_success(&out);
    assert_eq!(std::fs::read(back.join("a/b/big.bin")).unwrap(), big);
    assert_eq!(
        std::fs::read_to_string(back.join("new.txt")).unwrap(),
        "NEW\n"
    );
}

/// Another SSH stack (paramiko, tests/independent/ssh_corners.py) meets the corners: the
/// host key `ftpd fingerprint` names, `none` and passwords refused, shells, commands, port
/// and agent forwarding refused, reads bounded, links out of the home, owners and sizes
/// refused, many reads in flight. `scripts/test.sh` installs paramiko into
/// target/test-python and names it in FTPREP_TEST_PYTHON.
#[test]
fn paramiko_meets_the_corners_of_the_ssh_front_end() {
    let (sb, key) = alice_with_a_key();
    let server = RunningServer::start_with(
        &sb,
        &["--listen", "127.0.0.1:0", "--sftp-listen", "127.0.0.1:0"],
    );
    let port = server.sftp_port();
    let shown = sb.ftpd(&["fingerprint", "--sftp-listen", "127.0.0.1:0"], "");
    assert_success(&shown);
    let shown = text(&shown.stdout);
    let fingerprint = shown
        .lines()
        .nth(1)
        .and_then(|line| line.split_whitespace().nth(1))
        .expect("the host key's line")
        .to_owned();

    let python = std::env::var("FTPREP_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/independent/ssh_corners.py"
    );
    let out = sb.run(
        &python,
        &[script, "127.0.0.1", &port, "alice", &key, &fingerprint],
        "",
    );
    let said = text(&out.stdout);
    assert!(
        out.status.success(),
        "{said}\n{}\n{}",
        text(&out.stderr),
        server.log()
    );
    for check in [
        "ok: the host key is the one ftpd fingerprint names",
        "ok: `none` is refused",
        "ok: a command is refused with a message",
        "ok: a shell is refused with a message",
        "ok: a forwarded port (-L) is refused",
        "ok: a remote forward (-R) is refused",
        "ok: agent forwarding is refused",
        "ok: one read is bounded",
        "ok: a link out of the home is refused",
        "ok: a new session sees the file",
    ] {
        assert!(said.contains(check), "{check:?} missing from:\n{said}");
    }
}

impl HandMade {
    /// Opens `path` to write (create, truncate): its handle.
    fn open_to_write(&mut self, id: u32, path: &str) -> String {
        let mut open = string(path);
        open.extend([0, 0, 0, 0x1a, 0, 0, 0, 0]); // WRITE | CREAT | TRUNC
        let (kind, handle) = self.ask(3, id, &open);
        assert_eq!(kind, 102, "a handle for {path}");
        String::from_utf8(handle[4..].to_vec()).unwrap()
    }

    /// Writes `data` at `offset` of `handle`: the status code.
    fn write_at(&mut self, id: u32, handle: &str, offset: u64, data: &[u8]) -> u32 {
        let mut write = string(handle);
        write.extend(offset.to_be_bytes());
        write.extend(u32::try_from(data.len()).unwrap().to_be_bytes());
        write.extend(data);
        let (kind, rest) = self.ask(6, id, &write);
        assert_eq!(kind, 101);
        status_code(&rest)
    }
}

/// SIGINT while an upload is under way: no new connection is taken, the upload still
/// finishes within the grace and appears whole, and the server exits once its client has
/// gone, long before the grace is out.
#[test]
fn an_upload_under_way_finishes_within_the_shutdown_grace() {
    let (sb, key) = alice_with_a_key();
    let mut server =
        RunningServer::start_with(&sb, &["--listen", "127.0.0.1:0", "--shutdown-grace", "60"]);
    let port = server.sftp_port();
    let (mut ssh, _) = HandMade::start(&sb, &port, &key);
    let handle = ssh.open_to_write(1, "/during.bin");
    assert_eq!(ssh.write_at(2, &handle, 0, &[1; 100_000]), 0);

    let pid = server.child.id().to_string();
    assert_success(&sb.run("kill", &["-INT", &pid], ""));
    wait_until("the server stops taking connections", || {
        server.log().contains("shutting down")
    });
    assert_eq!(ssh.write_at(3, &handle, 100_000, &[2; 50_000]), 0);
    let (kind, rest) = ssh.ask(4, 4, &string(&handle));
    assert_eq!((kind, status_code(&rest)), (101, 0), "closed: put in place");
    let written = std::fs::read(sb.path().join("ftp-root/alice/during.bin")).unwrap();
    assert_eq!(written.len(), 150_000);
    assert!(
        written[..100_000].iter().all(|&b| b == 1) && written[100_000..].iter().all(|&b| b == 2)
    );
    let out = sftp_batch(&sb, &port, &key, "ls\n");
    assert_ne!(
        out.status.code(),
        Some(0),
        "a new connection during the shutdown"
    );

    let started = std::time::Instant::now();
    ssh.end();
    let status = wait_for_exit(&mut server.child, || "the server did not exit".to_owned());
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

/// Past the grace, a session still writing is closed: its upload never appears, and what
/// it wrote is kept hidden for a resume.
#[test]
fn past_the_shutdown_grace_an_unfinished_upload_stays_hidden() {
    let (sb, key) = alice_with_a_key();
    let mut server =
        RunningServer::start_with(&sb, &["--listen", "127.0.0.1:0", "--shutdown-grace", "1"]);
    let port = server.sftp_port();
    let (mut ssh, _) = HandMade::start(&sb, &port, &key);
    let handle = ssh.open_to_write(1, "/late.bin");
    assert_eq!(ssh.write_at(2, &handle, 0, &[1; 100_000]), 0);
    let pid = server.child.id().to_string();
    assert_success(&sb.run("kill", &["-INT", &pid], ""));
    let status = wait_for_exit(&mut server.child, || "the server did not exit".to_owned());
    assert!(status.success(), "{status:?}");
    ssh.end();
    let log = server.log();
    assert!(log.contains("partial data kept for resume"), "{log}");
    let names: Vec<String> = std::fs::read_dir(sb.path().join("ftp-root/alice"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.contains(&"late.bin".to_owned()), "{names:?}");
}

/// An SSH connection that never logs in is closed at the login timeout; connections from
/// one address are counted together with the native protocol's, and past the limit an SSH
/// connection is closed at once (SSH has no "busy" before its handshake) while the others
/// go on.
#[test]
fn the_login_timeout_and_the_per_address_limit_hold_for_ssh() {
    use std::io::Read;
    let (sb, key) = alice_with_a_key();
    let server = RunningServer::start_with(
        &sb,
        &[
            "--listen",
            "127.0.0.1:0",
            "--login-timeout",
            "1",
            "--max-connections-per-ip",
            "2",
        ],
    );
    let port = server.sftp_port();

    // Silent after the banner: closed by the server.
    let mut silent = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    silent
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut seen = Vec::new();
    silent.read_to_end(&mut seen).unwrap();
    assert!(seen.starts_with(b"SSH-2.0-"), "{seen:?}");
    wait_until("the timeout is logged", || {
        server.log().contains("SSH handshake timed out")
    });

    // Two sessions hold the address's two places: a third SSH connection is refused, and
    // so is a native one.
    let (first, _) = HandMade::start(&sb, &port, &key);
    let (second, _) = HandMade::start(&sb, &port, &key);
    let out = sftp_batch(&sb, &port, &key, "ls\n");
    assert_ne!(out.status.code(), Some(0));
    assert!(
        server
            .log()
            .contains("connection limit reached; refusing an SSH connection"),
        "{}",
        server.log()
    );
    let login = sb.first_login(&server.addr, "alice", "pw");
    assert_ne!(login.status.code(), Some(0), "{}", text(&login.stdout));
    first.end();
    wait_until("the place is given back", || {
        sftp_batch(&sb, &port, &key, "ls\n").status.success()
    });
    second.end();
}

/// A FUSE mount, unmounted when dropped (before its directory goes).
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("fusermount3").arg("-u").arg(&self.0).status();
    }
}

/// sshfs (Debian's, over OpenSSH's `ssh`) mounts the home: files written, appended to,
/// copied, cut short, renamed and removed through the mount land on the server as they
/// should; a file being written is there for the mount's own questions (sshfs asks right
/// after it creates one) but appears to everyone else only when closed.
/// Where the machine has no FUSE, it says so and checks nothing.
#[test]
fn sshfs_mounts_the_home() {
    if !std::path::Path::new("/dev/fuse").exists() {
        eprintln!("sshfs_mounts_the_home: this machine has no /dev/fuse; sshfs not tested");
        return;
    }
    let (sb, key) = alice_with_a_key();
    let server = RunningServer::start_with(&sb, &["--listen", "127.0.0.1:0"]);
    let port = server.sftp_port();
    let mnt = sb.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let options = format!(
        "IdentityFile={key},IdentitiesOnly=yes,BatchMode=yes,StrictHostKeyChecking=no,\
         UserKnownHostsFile=/dev/null"
    );
    let mounted = sb.run(
        "sshfs",
        &[
            "-p",
            &port,
            "-o",
            &options,
            "alice@127.0.0.1:/",
            mnt.to_str().unwrap(),
        ],
        "",
    );
    assert_success(&mounted);
    let _mounted = Mounted(mnt.clone());
    let home = sb.path().join("ftp-root/alice");

    // sshfs closes a file on the server after the program closed it (FUSE's release is
    // not waited for): it is in place a moment later.
    let in_place = |name: &str, want: &[u8]| {
        wait_until(&format!("{name} is in place"), || {
            std::fs::read(home.join(name)).is_ok_and(|got| got == want)
        });
    };
    std::fs::write(mnt.join("a.txt"), "hello\n").unwrap();
    in_place("a.txt", b"hello\n");
    {
        use std::io::Write;
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(mnt.join("a.txt"))
            .unwrap();
        log.write_all(b"more\n").unwrap();
    }
    in_place("a.txt", b"hello\nmore\n");
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 17 % 251) as u8).collect();
    std::fs::write(sb.path().join("big.bin"), &big).unwrap();
    std::fs::copy(sb.path().join("big.bin"), mnt.join("big.bin")).unwrap();
    in_place("big.bin", &big);
    assert_eq!(std::fs::read(mnt.join("big.bin")).unwrap(), big);

    std::fs::create_dir(mnt.join("d")).unwrap();
    std::fs::rename(mnt.join("a.txt"), mnt.join("d/b.txt")).unwrap();
    assert!(home.join("d/b.txt").is_file() && !home.join("a.txt").exists());
    // Cut short through an open file (`truncate`, `ftruncate`): what was written, then
    // the old file's bytes up to the size set.
    std::fs::OpenOptions::new()
        .write(true)
        .open(mnt.join("d/b.txt"))
        .and_then(|f| f.set_len(3))
        .unwrap();
    in_place("d/b.txt", b"hel");
    std::fs::remove_file(mnt.join("big.bin")).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["d"]);
}
