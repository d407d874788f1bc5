//! The real binaries, as an admin and a user would run them, each test in its own
//! temporary directory with its own HOME: this file holds the harness (a sandbox, a
//! running server, a pseudo-terminal), each area its own file.

/// The tests' own S3 server, for `ftpd serve --root s3://…`.
#[path = "../common/s3.rs"]
#[allow(dead_code)]
mod s3;

mod admin;
mod chat;
mod files;
mod login;
mod sftp;
mod shell;
mod time;

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
        Self::spawn_with_env(sandbox, all, &[])
    }

    /// As [`RunningServer::spawn`], with these environment variables set.
    fn spawn_with_env(sandbox: &Sandbox, all: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = sandbox
            .command(FTPD, all)
            .envs(env.iter().copied())
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

/// Waits (polling, with a deadline) until `condition` holds.
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "gave up waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
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
