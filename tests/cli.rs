//! The real binaries, as an admin and a user would run them, each test in its own
//! temporary directory with its own HOME.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const FTPD: &str = env!("CARGO_BIN_EXE_ftpd");
const FTPC: &str = env!("CARGO_BIN_EXE_ftpc");

/// A scratch directory with its own HOME, where commands run.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        Sandbox {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(self.path())
            .env("HOME", self.path().join("home"))
            .env("XDG_CONFIG_HOME", self.path().join("home/.config"))
            .env_remove("FTPC_SERVER")
            .env_remove("FTPD_USERS");
        cmd
    }

    /// Runs a command with `stdin` as its input.
    fn run(&self, program: &str, args: &[&str], stdin: &str) -> Output {
        finish(self.command(program, args), stdin)
    }

    fn ftpd(&self, args: &[&str], stdin: &str) -> Output {
        self.run(FTPD, args, stdin)
    }

    fn ftpc(&self, args: &[&str], stdin: &str) -> Output {
        self.run(FTPC, args, stdin)
    }

    /// Starts `ftpd adduser NAME` with the password on stdin, without waiting for it.
    fn spawn_adduser(&self, name: &str, password: &str) -> Child {
        let mut child = self
            .command(
                FTPD,
                &["adduser", name, "--password-stdin", "--iterations", "4096"],
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(format!("{password}\n").as_bytes()).unwrap();
        child
    }

    /// `ftpc login` to a server seen for the first time (`--accept-new`).
    fn first_login(&self, addr: &str, user: &str, password: &str) -> Output {
        let args = [
            "--server",
            addr,
            "--accept-new",
            "login",
            user,
            "--password-stdin",
        ];
        self.ftpc(&args, &format!("{password}\n"))
    }

    fn adduser(&self, name: &str, password: &str) {
        let out = self.ftpd(
            &["adduser", name, "--password-stdin", "--iterations", "4096"],
            &format!("{password}\n"),
        );
        assert_success(&out);
    }

    fn credentials(&self) -> PathBuf {
        self.path().join("home/.config/ftpc/credentials")
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn assert_fails(out: &Output, code: i32, stderr: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(text(&out.stderr).trim_end(), stderr);
}

/// `ftpd serve` on an ephemeral port; its log is collected as it runs.
struct RunningServer {
    child: Child,
    addr: String,
    log: Arc<Mutex<String>>,
}

impl RunningServer {
    fn start(sandbox: &Sandbox) -> Self {
        Self::start_with(sandbox, &["--listen", "127.0.0.1:0"])
    }

    fn start_with(sandbox: &Sandbox, args: &[&str]) -> Self {
        let mut all = vec!["serve"];
        all.extend_from_slice(args);
        // Tests run side by side: each time service on a port of its own.
        if !args.contains(&"--time-listen") {
            all.extend_from_slice(&["--time-listen", "127.0.0.1:0"]);
        }
        Self::spawn(sandbox, &all)
    }

    /// `ftpd` with exactly these arguments, once it listens.
    fn spawn(sandbox: &Sandbox, all: &[&str]) -> Self {
        let mut child = sandbox
            .command(FTPD, all)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.split("listening addr=").nth(1) {
                    let _ = tx.send(addr.trim().to_owned());
                }
                // The same line with --log-format json.
                if line.contains("\"listening\"")
                    && let Some(rest) = line.split("\"addr\":\"").nth(1)
                {
                    let _ = tx.send(rest.split('"').next().unwrap_or_default().to_owned());
                }
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        // Readiness is the log line that names the bound address, not a sleep.
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("server did not start: {}", log.lock().unwrap()));
        RunningServer { child, addr, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Where its time service answers, once its task runs (it logs the address).
    fn time_address(&self) -> String {
        const LINE: &str = "time service (NTP) answering addr=";
        wait_until("the time service is up", || self.log().contains(LINE));
        self.log()
            .split(LINE)
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no time service in {}", self.log()))
    }

    /// Ctrl-C, then the exit status.
    fn interrupt(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-INT", &pid])
                .status()
                .unwrap()
                .success()
        );
        wait_for_exit(&mut self.child, || "server ignored SIGINT".to_owned())
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
fn file_commands_through_the_binaries() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    std::fs::write(sb.path().join("hello.txt"), b"hello").unwrap();

    let out = sb.ftpc(&["put", "hello.txt"], "");
    assert_success(&out);
    // Not a terminal: no progress bar, nothing but errors.
    assert_eq!(text(&out.stderr), "");
    assert_fails(
        &sb.ftpc(&["put", "hello.txt"], ""),
        1,
        "ftpc: put hello.txt: already exists (use -f to replace it)",
    );
    assert_success(&sb.ftpc(&["put", "-f", "hello.txt", "greeting.txt"], ""));

    let out = sb.ftpc(&["ls", "-l"], "");
    assert_success(&out);
    let listing = text(&out.stdout);
    let lines: Vec<_> = listing.lines().collect();
    assert_eq!(lines.len(), 2, "{listing}");
    assert!(
        lines[0].starts_with("-            5 ") && lines[0].ends_with(" greeting.txt"),
        "{listing}"
    );

    assert_success(&sb.ftpc(&["get", "greeting.txt", "copy.txt"], ""));
    assert_eq!(std::fs::read(sb.path().join("copy.txt")).unwrap(), b"hello");
    let out = sb.ftpc(&["stat", "greeting.txt"], "");
    assert!(
        text(&out.stdout).contains("type: file\nsize: 5 (5 B)\n"),
        "{}",
        text(&out.stdout)
    );

    assert_success(&sb.ftpc(&["mkdir", "docs"], ""));
    // Into an existing directory, under the file's own name, both ways.
    assert_success(&sb.ftpc(&["put", "hello.txt", "docs/"], ""));
    assert_success(&sb.ftpc(&["mkdir", "local-dir"], ""));
    std::fs::create_dir(sb.path().join("local-dir")).unwrap();
    assert_success(&sb.ftpc(&["get", "docs/hello.txt", "local-dir"], ""));
    assert_eq!(
        std::fs::read(sb.path().join("local-dir/hello.txt")).unwrap(),
        b"hello"
    );
    assert_success(&sb.ftpc(&["rm", "docs/hello.txt"], ""));
    assert_success(&sb.ftpc(&["rmdir", "local-dir"], ""));
    assert_success(&sb.ftpc(&["mv", "greeting.txt", "docs"], ""));
    assert_eq!(text(&sb.ftpc(&["ls", "docs"], "").stdout), "greeting.txt\n");
    assert_fails(
        &sb.ftpc(&["rmdir", "docs"], ""),
        1,
        "ftpc: rmdir docs: directory not empty",
    );
    assert_success(&sb.ftpc(&["rm", "-r", "docs"], ""));

    // Trees.
    std::fs::create_dir_all(sb.path().join("project/src")).unwrap();
    std::fs::write(sb.path().join("project/src/main.rs"), b"fn main() {}").unwrap();
    assert_success(&sb.ftpc(&["put", "-r", "project"], ""));
    assert_success(&sb.ftpc(&["get", "-r", "project", "restored"], ""));
    assert_eq!(
        std::fs::read(sb.path().join("restored/project/src/main.rs")).unwrap(),
        b"fn main() {}"
    );

    // Quotas, set by the admin while the server runs.
    // Two directories (4 KiB each) and 17 bytes of files.
    let out = sb.ftpd(&["quota", "alice", "20K"], "");
    assert_success(&out);
    assert_eq!(text(&out.stdout), "quota of alice: 20.0 KiB\n");
    assert_eq!(
        text(&sb.ftpd(&["users"], "").stdout),
        "alice\tquota 20.0 KiB\n"
    );
    let out = sb.ftpc(&["df"], "");
    assert_eq!(text(&out.stdout), "used 8.0 KiB of 20.0 KiB (40.1%)\n");
    std::fs::write(sb.path().join("big"), vec![7u8; 16384]).unwrap();
    let out = sb.ftpc(&["put", "big"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("ftpc: put big: quota exceeded (used 8.0 KiB of 20.0 KiB"),
        "{}",
        text(&out.stderr)
    );
    assert!(!sb.path().join("ftp-root/alice/big").exists());
    assert_success(&sb.ftpd(&["quota", "alice", "none"], ""));
    assert_success(&sb.ftpc(&["put", "big"], ""));
    assert_eq!(
        text(&sb.ftpc(&["df"], "").stdout),
        "used 24.0 KiB (no quota)\n"
    );
    let out = sb.ftpd(&["quota", "alice", "--files", "100"], "");
    assert_success(&out);
    assert_eq!(text(&out.stdout), "file quota of alice: 100 entries\n");
    assert_eq!(text(&sb.ftpd(&["users"], "").stdout), "alice\tfiles 100\n");
    assert_eq!(
        text(&sb.ftpc(&["df"], "").stdout),
        "used 24.0 KiB (no quota); 5 of 100 files and directories\n"
    );
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
    let fingerprint = text(&sb.ftpd(&["fingerprint"], "").stdout)
        .trim()
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
    // `fingerprint` reads the same settings: plaintext from ftpd.toml has no certificate.
    let out = sb.ftpd(&["fingerprint"], "");
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

/// Waits (polling, with a deadline) until `condition` holds.
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "gave up waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
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

/// Issues 12.4 and 12.12: a failed `get` left a hidden 0-byte partial file behind, local
/// errors named the file twice with Rust's error code, and `get` of a directory gave no
/// hint.
#[test]
fn failed_transfers_leave_nothing_and_say_why_plainly() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    assert_fails(
        &sb.ftpc(&["put", "nothere.txt"], ""),
        1,
        "ftpc: put nothere.txt: No such file or directory",
    );
    assert_fails(
        &sb.ftpc(&["get", "nothere.txt"], ""),
        1,
        "ftpc: get nothere.txt: no such file or directory",
    );
    assert_success(&sb.ftpc(&["mkdir", "somedir"], ""));
    assert_fails(
        &sb.ftpc(&["get", "somedir"], ""),
        1,
        "ftpc: get somedir: is a directory (use -r)",
    );
    let left: Vec<_> = std::fs::read_dir(sb.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with(".ftprep-part-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
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

/// `ftpc` on a pseudo-terminal of its own (as its controlling terminal, so Ctrl-C is a
/// signal, as for a person), with what it writes collected as it runs.
struct Terminal {
    master: std::fs::File,
    child: Child,
    screen: Arc<Mutex<String>>,
}

impl Terminal {
    fn spawn(sb: &Sandbox, args: &[&str]) -> Self {
        use std::os::fd::{FromRawFd, OwnedFd};
        use std::os::unix::process::CommandExt;
        let (mut master, mut slave) = (0, 0);
        let size = libc::winsize {
            ws_row: 40,
            ws_col: 120,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: openpty fills the two descriptors it is given; the rest are optional.
        let made = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size,
            )
        };
        assert_eq!(made, 0, "openpty");
        // SAFETY: both descriptors were just opened and are owned here alone.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let mut command = sb.command(FTPC, args);
        command
            .env("TERM", "xterm-256color")
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().unwrap();
        let master = std::fs::File::from(master);
        let mut reader = master.try_clone().unwrap();
        let screen = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&screen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut reader, &mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Terminal {
            master,
            child,
            screen,
        }
    }

    fn screen(&self) -> String {
        self.screen.lock().unwrap().clone()
    }

    /// Types `keys` in one go (as a paste or fast typing would arrive).
    fn type_keys(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).unwrap();
        self.master.flush().unwrap();
    }

    fn wait_for(&self, what: &str) {
        self.wait_for_times(what, 1);
    }

    /// Waits until `what` has appeared `times` times.
    fn wait_for_times(&self, what: &str, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.screen().matches(what).count() < times {
            assert!(
                Instant::now() < deadline,
                "gave up waiting for {what:?} on the screen:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the shell to exit; its status.
    fn exit_status(mut self) -> std::process::ExitStatus {
        let screen = Arc::clone(&self.screen);
        wait_for_exit(&mut self.child, || {
            format!("the shell did not exit: {}", screen.lock().unwrap())
        })
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

/// `put -r src dest/` into an existing directory makes dest/src, as cp and scp do; without
/// the slash the tree is the target itself, so `-c` resumes the same place ("what users
/// expect next" in issue 12). `get -r` likewise.
#[test]
fn trees_go_into_an_existing_directory_named_with_a_slash() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    std::fs::create_dir_all(sb.path().join("src/sub")).unwrap();
    std::fs::write(sb.path().join("src/sub/f"), b"data").unwrap();
    let root = sb.path().join("ftp-root/alice");
    // Issue 28: rsync's rule, the same for put -r, get -r and sync: `src` goes into the
    // target as target/src, `src/` (its contents) into the target itself; the target's own
    // slash changes nothing.
    assert_success(&sb.ftpc(&["put", "-r", "src", "dest"], ""));
    assert_eq!(std::fs::read(root.join("dest/src/sub/f")).unwrap(), b"data");
    assert_success(&sb.ftpc(&["put", "-r", "-f", "src", "dest/"], ""));
    assert!(!root.join("dest/src/src").exists());
    assert_success(&sb.ftpc(&["put", "-r", "src/", "tree"], ""));
    assert!(root.join("tree/sub/f").is_file());
    assert_success(&sb.ftpc(&["put", "-r", "-c", "src/", "tree"], ""));
    assert!(
        !root.join("tree/src").exists(),
        "resumed in place, not nested"
    );

    std::fs::create_dir(sb.path().join("back")).unwrap();
    assert_success(&sb.ftpc(&["get", "-r", "dest/src", "back"], ""));
    assert_eq!(
        std::fs::read(sb.path().join("back/src/sub/f")).unwrap(),
        b"data"
    );
    assert_success(&sb.ftpc(&["get", "-r", "dest/src/", "flat"], ""));
    assert_eq!(
        std::fs::read(sb.path().join("flat/sub/f")).unwrap(),
        b"data"
    );

    // sync: `--delete photos :backup/` works inside backup/photos and leaves the rest of
    // backup alone (it deleted it).
    std::fs::create_dir_all(root.join("backup")).unwrap();
    std::fs::write(root.join("backup/keep"), b"keep").unwrap();
    assert_success(&sb.ftpc(&["sync", "--delete", "src", ":backup/"], ""));
    assert_eq!(std::fs::read(root.join("backup/keep")).unwrap(), b"keep");
    assert_eq!(
        std::fs::read(root.join("backup/src/sub/f")).unwrap(),
        b"data"
    );
    assert_success(&sb.ftpc(&["check", "src", ":backup"], ""));
    assert_success(&sb.ftpc(&["sync", ":backup/src", "down"], ""));
    assert_eq!(
        std::fs::read(sb.path().join("down/src/sub/f")).unwrap(),
        b"data"
    );
    assert_success(&sb.ftpc(&["sync", ":backup/src/", "same"], ""));
    assert_eq!(
        std::fs::read(sb.path().join("same/sub/f")).unwrap(),
        b"data"
    );
}

/// Wildcards as sftp users type them ("what users expect next" in issue 12): remote ones
/// expanded from a listing, local ones in ftpc's own shell, several sources into one
/// directory, and mput/mget.
#[test]
fn wildcards_and_several_files_at_once() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    for name in ["a.txt", "b.txt", "c.log"] {
        std::fs::write(sb.path().join(name), name).unwrap();
    }
    std::fs::create_dir(sb.path().join("down")).unwrap();
    let batch = "mkdir up\nput *.txt up\nmput c.log\nls up\nget 'up/*.txt' down\nrm 'up/?.txt'\nls up\nlcd down\nmget c.log\n";
    let out = sb.ftpc(&["shell", "-b", "-"], batch);
    assert_success(&out);
    assert_eq!(
        text(&out.stdout),
        "a.txt\nb.txt\n",
        "the second ls is empty"
    );
    assert_eq!(
        std::fs::read_to_string(sb.path().join("down/c.log")).unwrap(),
        "c.log"
    );
    for name in ["a.txt", "b.txt"] {
        assert_eq!(
            std::fs::read_to_string(sb.path().join("down").join(name)).unwrap(),
            name
        );
    }
    let root = sb.path().join("ftp-root/alice");
    assert!(root.join("c.log").is_file());
    // Several files need an existing directory.
    assert_fails(
        &sb.ftpc(&["put", "a.txt", "b.txt", "nodir"], ""),
        2,
        "ftpc: put nodir: not a directory: several files go into an existing directory",
    );
    // A pattern that matches nothing says so.
    assert_fails(
        &sb.ftpc(&["rm", "up/*.none"], ""),
        1,
        "ftpc: rm up/*.none: no match",
    );
    // Issue 28: -r over files and directories together, both ways (it stopped at the
    // first directory, or the first file, with "not a directory").
    std::fs::create_dir_all(sb.path().join("mix/sub")).unwrap();
    std::fs::write(sb.path().join("mix/one"), "1").unwrap();
    std::fs::write(sb.path().join("mix/sub/two"), "2").unwrap();
    assert_success(&sb.ftpc(&["mkdir", "mixed"], ""));
    assert_success(&sb.ftpc(&["put", "-r", "mix/one", "mix/sub", "mixed/"], ""));
    assert_eq!(std::fs::read(root.join("mixed/one")).unwrap(), b"1");
    assert_eq!(std::fs::read(root.join("mixed/sub/two")).unwrap(), b"2");
    std::fs::create_dir(sb.path().join("back")).unwrap();
    assert_success(&sb.ftpc(&["get", "-r", "mixed/*", "back"], ""));
    assert_eq!(std::fs::read(sb.path().join("back/one")).unwrap(), b"1");
    assert_eq!(std::fs::read(sb.path().join("back/sub/two")).unwrap(), b"2");
}

/// Symlinks in a `put -r` tree are reported, with a count, or followed with -L (a link back
/// up the tree is not followed twice) ("what users expect next" in issue 12).
#[test]
fn symlinks_in_an_uploaded_tree_are_reported_or_followed() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    let src = sb.path().join("src");
    std::fs::create_dir_all(src.join("real")).unwrap();
    std::fs::write(src.join("real/f"), b"data").unwrap();
    std::fs::write(sb.path().join("outside.txt"), b"outside").unwrap();
    std::os::unix::fs::symlink("../outside.txt", src.join("file-link")).unwrap();
    std::os::unix::fs::symlink("real", src.join("dir-link")).unwrap();
    std::os::unix::fs::symlink("..", src.join("real/up")).unwrap();

    let out = sb.ftpc(&["put", "-r", "src/", "plain"], "");
    assert_success(&out);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("skipped 3 entries in all"), "{stderr}");
    assert!(stderr.contains("-L follows them"), "{stderr}");
    let root = sb.path().join("ftp-root/alice");
    assert!(root.join("plain/real/f").is_file());
    assert!(!root.join("plain/file-link").exists());

    let out = sb.ftpc(&["put", "-r", "-L", "src/", "followed"], "");
    assert_success(&out);
    assert_eq!(
        std::fs::read(root.join("followed/file-link")).unwrap(),
        b"outside"
    );
    assert_eq!(
        std::fs::read(root.join("followed/dir-link/f")).unwrap(),
        b"data"
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("a loop"), "{stderr}");
}

/// `-p` keeps modification times and permission bits both ways ("what users expect next"
/// in issue 12); without it, a copy is new.
#[test]
fn p_preserves_modification_times_and_permission_bits() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    let local = sb.path().join("script.sh");
    std::fs::write(&local, b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&local, std::fs::Permissions::from_mode(0o750)).unwrap();
    let then = std::time::UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    std::fs::File::options()
        .write(true)
        .open(&local)
        .unwrap()
        .set_modified(then)
        .unwrap();
    let meta = |path: &Path| {
        let m = std::fs::metadata(path).unwrap();
        (m.modified().unwrap(), m.permissions().mode() & 0o777)
    };
    assert_success(&sb.ftpc(&["put", "-p", "script.sh"], ""));
    assert_success(&sb.ftpc(&["put", "script.sh", "plain.sh"], ""));
    let root = sb.path().join("ftp-root/alice");
    assert_eq!(meta(&root.join("script.sh")), (then, 0o750));
    assert_ne!(meta(&root.join("plain.sh")).0, then);

    std::fs::create_dir(sb.path().join("back")).unwrap();
    assert_success(&sb.ftpc(&["get", "-p", "script.sh", "back/"], ""));
    assert_eq!(meta(&sb.path().join("back/script.sh")), (then, 0o750));
    assert_success(&sb.ftpc(&["get", "script.sh", "back/again.sh"], ""));
    assert_ne!(meta(&sb.path().join("back/again.sh")).0, then);
}

/// `ftpc time` against the time service of a running `ftpd serve`: by default the host of
/// the most recent login; `--json`; a closed port is an error (exit 4) that says so.
#[test]
fn ftpc_time_asks_the_servers_time_service() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start_with(
        &sb,
        &[
            "--listen",
            "127.0.0.1:0",
            "--time-listen",
            "127.0.0.1:0",
            "--time-local-stratum",
            "6",
        ],
    );
    let time_addr = server.time_address();
    let out = sb.ftpc(&["time", &time_addr], "");
    assert_success(&out);
    let line = text(&out.stdout);
    assert!(
        line.contains("stratum 6, reference LOCL, leap none"),
        "{line}"
    );
    let out = sb.ftpc(&["time", &time_addr, "--json", "-n", "2"], "");
    assert_success(&out);
    let report: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert!(report["offset"].as_f64().unwrap().abs() < 0.001, "{report}");
    assert_eq!(report["stratum"], 6);
    assert_eq!(report["samples"], 2);
    // Nothing listens: exit 4, in words.
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let out = sb.ftpc(&["time", &format!("127.0.0.1:{port}"), "-n", "1"], "");
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no NTP server answers"),
        "{}",
        text(&out.stderr)
    );
    // Issue 28: several servers, a line each in the order given (the failure in its place,
    // on stderr); -v adds the server's root delay, dispersion and reference time.
    let closed = format!("127.0.0.1:{port}");
    let out = sb.ftpc(
        &["time", "-v", "-n", "1", &time_addr, &closed, &time_addr],
        "",
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    for line in &lines {
        assert!(line.starts_with(&format!("{time_addr}: offset")), "{line}");
        assert!(
            line.contains("root delay 0.000000 s, root dispersion")
                && line.contains("reference time 20"),
            "{line}"
        );
    }
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("time {closed}: no NTP server answers")),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 of 3 servers gave no usable time"),
        "{stderr}"
    );
}

/// ftpd's time service on a loopback port of its own, its clock told synchronised or not;
/// its address, and the service (it stops when dropped).
fn time_service(synchronised: bool) -> (String, ftprep::server::time::TimeService) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    let service = ftprep::server::time::TimeServer::with_clock(
        socket,
        ftprep::server::time::TimeSettings::default(),
        std::sync::Arc::new(move || ftprep::server::time::ClockStatus {
            synchronised,
            estimated_error: Duration::ZERO,
            maximum_error: Duration::ZERO,
        }),
    )
    .start()
    .unwrap();
    (addr, service)
}

/// `ftpc time --watch` polls, a line each, until Ctrl-C, which ends it with success, also while a poll is waiting for a reply that does not come (a press then was
/// lost, and the watch went on).
#[test]
fn ctrl_c_ends_ftpc_time_watch_cleanly() {
    let sb = Sandbox::new();
    // A server that answers: ours, on its own thread.
    let (ours, service) = time_service(true);
    let mut term = Terminal::spawn(&sb, &["time", &ours, "-n", "1", "--watch", "8"]);
    wait_until("a poll", || term.screen().contains("stratum 3"));
    term.type_keys("\x03");
    let screen = term.screen();
    let status = term.exit_status();
    assert!(status.success(), "{status:?}: {screen}");
    assert!(
        service
            .counters()
            .answered
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );

    // A server that never answers: Ctrl-C while the poll waits (4 samples, 2 s each).
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let mut term = Terminal::spawn(&sb, &["time", &silent_addr, "--watch", "60"]);
    let mut buf = [0u8; 64];
    silent
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    silent.recv_from(&mut buf).expect("the first request");
    let pressed = Instant::now();
    term.type_keys("\x03");
    let screen = term.screen();
    let status = term.exit_status();
    assert!(status.success(), "{status:?}: {screen}");
    assert!(
        pressed.elapsed() < ftprep::client::time::SAMPLE_TIMEOUT,
        "it waited for the poll to time out: {:?}",
        pressed.elapsed()
    );
}

/// Waits (polling, with a deadline) for `child` to exit; its status. `why` explains a
/// child that does not.
fn wait_for_exit(child: &mut Child, why: impl Fn() -> String) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "{}", why());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `command` to its end with `stdin` as its input.
fn finish(mut command: Command, stdin: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that exits without reading its input closes the pipe: not an error here.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

/// `ftpc` for a second person on the same machine: a config directory of their own.
fn ftpc_as(sb: &Sandbox, person: &str, args: &[&str], stdin: &str) -> Output {
    let mut command = sb.command(FTPC, args);
    command.env("XDG_CONFIG_HOME", sb.path().join(person).join(".config"));
    finish(command, stdin)
}

/// Alice and Bob, each logged in to a running server: Bob in the sandbox's own home (so
/// `sb.ftpc` and `Terminal` act as him), Alice in a home of hers (`ftpc_as(.., "alice", ..)`).
fn alice_and_bob(sb: &Sandbox) -> RunningServer {
    sb.adduser("alice", "pw-a");
    sb.adduser("bob", "pw-b");
    let server = RunningServer::start(sb);
    assert_success(&sb.first_login(&server.addr, "bob", "pw-b"));
    let login = [
        "--server",
        &server.addr,
        "--accept-new",
        "login",
        "alice",
        "--password-stdin",
    ];
    assert_success(&ftpc_as(sb, "alice", &login, "pw-a\n"));
    server
}

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

/// `ftpc sync` and `ftpc check` as a user types them (issue 15).
#[test]
fn sync_and_check_through_the_binaries() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    for name in ["a/one", "a/two", "b/three"] {
        let path = sb.path().join("site").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, name).unwrap();
    }
    let out = sb.ftpc(&["sync", "site/", ":www"], "");
    assert_success(&out);
    assert!(
        text(&out.stdout).starts_with("3 files sent ("),
        "{}",
        text(&out.stdout)
    );
    let root = sb.path().join("ftp-root/alice/www");
    assert_eq!(std::fs::read(root.join("b/three")).unwrap(), b"b/three");
    let out = sb.ftpc(&["sync", "site/", ":www"], "");
    assert!(
        text(&out.stdout).starts_with("0 files sent (0 B), 3 unchanged"),
        "{}",
        text(&out.stdout)
    );
    assert_success(&sb.ftpc(&["check", "site/", ":www"], ""));

    std::fs::write(sb.path().join("site/a/one"), "ONE?").unwrap();
    std::fs::remove_file(sb.path().join("site/a/two")).unwrap();
    let out = sb.ftpc(&["check", "site/", ":www"], "");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "differs: a/one\nonly remote: a/two\n1 files the same, 1 differ, 0 only local, 1 only remote\n"
    );
    let out = sb.ftpc(&["sync", "--delete", "--dry-run", "site/", ":www"], "");
    assert_success(&out);
    assert!(
        text(&out.stdout).contains("delete a/two\n"),
        "{}",
        text(&out.stdout)
    );
    // Issue 28: a dry run moved nothing, so it tells no time and no rate.
    let summary = text(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned();
    assert!(
        summary.starts_with("would be: 1 files sent (") && !summary.contains("/s"),
        "{summary}"
    );
    assert!(root.join("a/two").exists());
    assert_success(&sb.ftpc(&["sync", "--delete", "site/", ":www"], ""));
    assert!(!root.join("a/two").exists());
    assert_success(&sb.ftpc(&["check", "site/", ":www"], ""));

    // And back down, into a fresh directory: files received, not sent.
    let out = sb.ftpc(&["sync", ":www/", "copy"], "");
    assert_success(&out);
    assert!(
        text(&out.stdout).starts_with("2 files received ("),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        std::fs::read(sb.path().join("copy/a/one")).unwrap(),
        b"ONE?"
    );
    // Neither side remote: a usage error.
    let out = sb.ftpc(&["sync", "site", "www"], "");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    // Over three connections, and over one; -j out of range is a usage error.
    std::fs::write(sb.path().join("site/b/four"), "4").unwrap();
    assert_success(&sb.ftpc(&["sync", "-j", "3", "site/", ":www"], ""));
    assert_eq!(std::fs::read(root.join("b/four")).unwrap(), b"4");
    assert_success(&sb.ftpc(&["get", "-r", "-j", "1", "www", "one"], ""));
    assert_eq!(
        std::fs::read(sb.path().join("one/www/b/four")).unwrap(),
        b"4"
    );
    for bad in ["0", "17", "x"] {
        let out = sb.ftpc(&["put", "-r", "-j", bad, "site", "w2"], "");
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("from 1 to 16"),
            "{}",
            text(&out.stderr)
        );
    }
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

/// Issue 28: on a host whose clock is not synchronised, `ftpc time` failed with no word of
/// what to do; `--watch 1` tripped the server's rate limit. The refusal names the admin's
/// option; `--watch` under 8 s and `-n 0` are refused as usage errors; a `RATE` kiss makes
/// the watch twice as slow, and says so.
#[test]
fn ftpc_time_says_what_to_do_and_never_polls_faster_than_allowed() {
    let sb = Sandbox::new();
    // An ftpd on a host it is told is unsynchronised: leap indicator 3.
    let (addr, _service) = time_service(false);
    let out = sb.ftpc(&["time", &addr, "-n", "1"], "");
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("ftpd serve --time-local-stratum"),
        "{}",
        text(&out.stderr)
    );
    for args in [
        ["--watch", "0.5"],
        ["--watch", "7.9"],
        ["-n", "0"],
        ["-n", "9"],
    ] {
        let out = sb.ftpc(&["time", &addr, args[0], args[1]], "");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }

    // A server that answers only with Kiss-o'-Death RATE.
    let kisser = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let kisser_addr = kisser.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut buf = [0u8; 128];
        while let Ok((len, from)) = kisser.recv_from(&mut buf) {
            let Ok(request) = ftprep::ntp::Packet::decode(&buf[..len]) else {
                continue;
            };
            let kiss = ftprep::ntp::Packet {
                version: 4,
                mode: ftprep::ntp::MODE_SERVER,
                stratum: 0,
                reference_id: *b"RATE",
                origin: request.transmit,
                ..Default::default()
            };
            let _ = kisser.send_to(&kiss.encode(), from);
        }
    });
    let mut term = Terminal::spawn(&sb, &["time", &kisser_addr, "--watch", "8"]);
    term.wait_for("asking every 16 s now");
    term.type_keys("\x03");
    let screen = term.screen();
    let status = term.exit_status();
    assert!(status.success(), "{status:?}: {screen}");
    assert!(screen.contains("Kiss-o'-Death RATE"), "{screen}");
}

/// Issue 28: `ls -la`, `ls -lh`, `ls -a`, wildcards and several paths in `ls`; several
/// paths to `mkdir` and `rmdir`; `rm -rf` of what may not be there; names as they are into
/// a pipe, NUL-ended with `-0`.
#[test]
fn ls_mkdir_rmdir_and_rm_take_what_people_type() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    let ftpc = |args: &[&str]| sb.ftpc(args, "");
    assert_success(&ftpc(&["mkdir", "-p", "docs/old", "empty1", "empty2"]));
    let home = sb.path().join("ftp-root/alice");
    std::fs::write(home.join("docs/a.txt"), vec![1u8; 1536]).unwrap();
    std::fs::write(home.join("docs/b.txt"), b"b").unwrap();
    std::fs::write(home.join("docs/.hidden"), b"h").unwrap();
    std::fs::write(home.join("docs/line\nbreak"), b"x").unwrap();

    let out = ftpc(&["ls", "docs"]);
    assert_success(&out);
    assert_eq!(text(&out.stdout), "a.txt\nb.txt\nline\nbreak\nold/\n");
    let out = ftpc(&["ls", "-a", "-0", "docs"]);
    assert_success(&out);
    assert_eq!(
        text(&out.stdout),
        ".hidden\0a.txt\0b.txt\0line\nbreak\0old/\0"
    );
    let out = ftpc(&["ls", "-lah", "docs"]);
    assert_success(&out);
    let shown = text(&out.stdout);
    assert!(
        shown.contains(".hidden") && shown.contains(" 1.5K "),
        "{shown}"
    );
    let out = ftpc(&["ls", "docs/*.txt"]);
    assert_success(&out);
    assert_eq!(text(&out.stdout), "docs/a.txt\ndocs/b.txt\n");
    let out = ftpc(&["ls", "docs/old", "docs/b.txt", "empty1"]);
    assert_success(&out);
    assert_eq!(text(&out.stdout), "docs/b.txt\n\ndocs/old:\n\nempty1:\n");
    let out = ftpc(&["ls", "docs/*.pdf"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));

    assert_success(&ftpc(&["rmdir", "empty1", "empty2"]));
    assert!(!home.join("empty1").exists() && !home.join("empty2").exists());
    let out = ftpc(&["rm", "docs/nothing"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_success(&ftpc(&["rm", "-rf", "docs/nothing", "docs/*.pdf", "docs"]));
    assert!(!home.join("docs").exists());
    drop(server);
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
        .trim()
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

/// The names in the sandbox's directory, but for the home the commands run with.
fn names_here(sb: &Sandbox) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(sb.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "home")
        .collect();
    names.sort();
    names
}

/// Issue 28: pipes, as with scp and curl: `tar c dir | ftpc put - backup.tar`, `ftpc get
/// FILE -` and `ftpc cat` to standard output; in a batch, whose standard input is the
/// commands, `put -` is refused.
#[test]
fn standard_input_and_output_carry_files() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    // Larger than a chunk, so it streams; not a multiple of one.
    let data: Vec<u8> = (0..3_000_123u32).map(|i| (i % 251) as u8).collect();
    let mut child = sb
        .command(FTPC, &["put", "-", "from-stdin.bin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feed = data.clone();
    let writer = std::thread::spawn(move || stdin.write_all(&feed));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert_success(&out);
    let home = sb.path().join("ftp-root/alice");
    assert_eq!(std::fs::read(home.join("from-stdin.bin")).unwrap(), data);

    let out = sb.ftpc(&["get", "from-stdin.bin", "-"], "");
    assert_success(&out);
    assert!(out.stdout == data, "get - wrote {} bytes", out.stdout.len());
    std::fs::write(home.join("a.txt"), b"first\n").unwrap();
    std::fs::write(home.join("b.txt"), b"second\n").unwrap();
    let out = sb.ftpc(&["cat", "*.txt"], "");
    assert_success(&out);
    assert_eq!(text(&out.stdout), "first\nsecond\n");
    let out = sb.ftpc(&["cat", "missing"], "");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));

    let out = sb.ftpc(&["shell", "-b", "-"], "put - x\n");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(!home.join("x").exists());
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

/// Issue 28: messages that misled. A small `put` the server refused first printed a success
/// line; `mv f nodir/x` blamed `f`.
#[test]
fn messages_blame_what_failed_and_claim_no_success_first() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    std::fs::write(sb.path().join("small"), vec![7u8; 100_000]).unwrap();
    assert_success(&sb.ftpc(&["put", "small"], ""));
    let term = Terminal::spawn(&sb, &["put", "small"]);
    term.wait_for("already exists");
    let screen = Arc::clone(&term.screen);
    let status = term.exit_status();
    assert_eq!(status.code(), Some(1));
    let shown = screen.lock().unwrap().clone();
    assert!(!shown.contains(" in 0."), "a success line first: {shown}");

    let out = sb.ftpc(&["mv", "small", "nodir/x"], "");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).starts_with("ftpc: mv nodir/x: "),
        "{}",
        text(&out.stderr)
    );
    let out = sb.ftpc(&["mv", "nothere", "x"], "");
    assert!(
        text(&out.stderr).starts_with("ftpc: mv nothere: "),
        "{}",
        text(&out.stderr)
    );
    drop(server);
}

/// Issue 28: a `get -r` error printed a name with a line break raw, so a name from the
/// server could forge a line of output; names in errors are escaped.
#[test]
fn a_name_with_a_line_break_is_escaped_in_errors() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    let name = "bad\nftpc: all done";
    let home = sb.path().join("ftp-root/alice/mix");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join(name), "x").unwrap();
    std::fs::create_dir_all(sb.path().join("mix").join(name)).unwrap();
    for args in [&["get", "-r", "mix"][..], &["get", "-r", "-f", "mix"]] {
        let out = sb.ftpc(args, "");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = text(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("mix/bad\\nftpc: all done: "), "{stderr}");
    }
    drop(server);
}

/// Issue 28: an interrupted `ftpc get` left `.ftprep-part-...` without a word about `-c`; it
/// now says how to go on, exits 130 as an interrupted command does, and `get -c` finishes.
#[test]
fn an_interrupted_get_says_how_to_continue() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    let home = sb.path().join("ftp-root/alice");
    std::fs::create_dir_all(&home).unwrap();
    let big = std::fs::File::create(home.join("big")).unwrap();
    big.set_len(1 << 30).unwrap();
    drop(big);
    let mut term = Terminal::spawn(&sb, &["get", "big"]);
    let partial = || {
        std::fs::read_dir(sb.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().starts_with(".ftprep-part-"))
    };
    wait_until("the download started", partial);
    term.type_keys("\x03");
    term.wait_for("the same command with -c continues it");
    let status = term.exit_status();
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert!(partial());
    assert_success(&sb.ftpc(&["get", "-c", "big"], ""));
    assert_eq!(
        std::fs::metadata(sb.path().join("big")).unwrap().len(),
        1 << 30
    );
    assert!(!partial());

    // The same when the connection is lost half way: the server dies mid-download.
    let mut again = sb.command(FTPC, &["get", "big", "again"]);
    let again = again
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the second download started", partial);
    let mut server = server;
    server.child.kill().unwrap();
    let out = again.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("was lost is kept: the same command with -c continues it"),
        "{stderr}"
    );
    assert!(partial());
}

/// Issue 28: `sync` printed a line per symlink on every run; they are counted in one line
/// now, and `-L` sends what they point to (a link back up the tree is left out as a loop,
/// a link to nothing as broken).
#[test]
fn sync_counts_symlinks_or_follows_them() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    let site = sb.path().join("site");
    std::fs::create_dir_all(site.join("real")).unwrap();
    std::fs::write(site.join("real/f"), b"data").unwrap();
    std::fs::write(sb.path().join("outside.txt"), b"outside").unwrap();
    std::os::unix::fs::symlink("../outside.txt", site.join("file-link")).unwrap();
    std::os::unix::fs::symlink("real", site.join("dir-link")).unwrap();
    std::os::unix::fs::symlink("..", site.join("real/up")).unwrap();
    std::os::unix::fs::symlink("nothing", site.join("broken")).unwrap();

    let out = sb.ftpc(&["sync", "site/", ":plain"], "");
    assert_success(&out);
    assert_eq!(
        text(&out.stderr),
        "left out 4 symlinks (sync -l keeps them as links, -L sends what they point to)\n"
    );
    let root = sb.path().join("ftp-root/alice");
    assert!(root.join("plain/real/f").is_file());
    assert!(!root.join("plain/file-link").exists());

    let out = sb.ftpc(&["sync", "-L", "site/", ":followed"], "");
    assert_success(&out);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("up: a link in a loop"), "{stderr}");
    assert!(stderr.contains("broken: a link to nothing"), "{stderr}");
    assert_eq!(
        std::fs::read(root.join("followed/file-link")).unwrap(),
        b"outside"
    );
    assert_eq!(
        std::fs::read(root.join("followed/dir-link/f")).unwrap(),
        b"data"
    );
    // Run again: nothing to send, the same one line.
    let out = sb.ftpc(&["sync", "site/", ":plain"], "");
    assert!(
        text(&out.stdout).starts_with("0 files sent"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        text(&out.stderr).lines().count(),
        1,
        "{}",
        text(&out.stderr)
    );
    // -l keeps the links that stay inside the tree, and names the one that leads out.
    let out = sb.ftpc(&["sync", "-l", "site/", ":kept"], "");
    assert_success(&out);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("file-link: a link out of the tree"),
        "{stderr}"
    );
    assert!(
        text(&out.stdout).contains(", 3 links made;"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        std::fs::read_link(root.join("kept/dir-link")).unwrap(),
        Path::new("real")
    );
    assert_eq!(
        std::fs::read_link(root.join("kept/broken")).unwrap(),
        Path::new("nothing")
    );
    drop(server);
}

/// Issue 28: `--bwlimit RATE`, as rsync and rclone have it: a transfer takes at least as
/// long as its bytes past one chunk take at RATE (a lower bound only: a slow machine
/// cannot make it fail), and arrives whole.
#[test]
fn bwlimit_holds_transfers_to_a_rate() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    let data: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 253) as u8).collect();
    std::fs::write(sb.path().join("three"), &data).unwrap();
    // 3 MiB at 1 MiB/s, the first 512 KiB free: at least 2.5 s each way.
    let started = Instant::now();
    assert_success(&sb.ftpc(&["put", "--bwlimit", "1M", "three"], ""));
    assert!(
        started.elapsed() >= Duration::from_millis(2400),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    assert_success(&sb.ftpc(&["get", "--bwlimit", "1024", "three", "back"], ""));
    assert!(
        started.elapsed() >= Duration::from_millis(2400),
        "{:?}",
        started.elapsed()
    );
    assert!(std::fs::read(sb.path().join("back")).unwrap() == data);
    for bad in ["0", "0.5", "fast"] {
        let out = sb.ftpc(&["put", "--bwlimit", bad, "three", "x"], "");
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", text(&out.stderr));
    }
    drop(server);
}
