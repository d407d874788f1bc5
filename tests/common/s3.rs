//! An S3 server of the tests' own: `s3s-fs` (made for integration tests; `scripts/test.sh`
//! installs it) on a loopback port, storing into a temporary directory, stopped when
//! dropped.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use ftprep::server::ObjectLocation;

/// The bucket every test uses.
pub const BUCKET: &str = "ftprep";

pub struct S3Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    dir: tempfile::TempDir,
}

impl S3Server {
    /// Fails the test, saying what to install, when `s3s-fs` is not installed.
    pub fn start() -> Self {
        let binary = s3s_fs().expect(
            "s3s-fs is not installed: cargo install --locked s3s-fs@0.14.1 --features binary \
             (scripts/test.sh does)",
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(BUCKET)).unwrap();
        let mut child = Command::new(binary)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(["--access-key", "test-key", "--secret-key", "test-secret"])
            .arg(dir.path())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Ready once it says where it listens (port 0: the kernel picked one).
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let endpoint = loop {
            let line = lines
                .next()
                .expect("s3s-fs exited before it listened")
                .unwrap();
            if let Some((_, at)) = line.split_once("server is running at ") {
                break at.trim().to_owned();
            }
        };
        // Keep reading its log so that it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        S3Server {
            child,
            endpoint,
            dir,
        }
    }

    /// The bucket under `prefix`, reached with the test keys.
    pub fn location(&self, prefix: &str) -> ObjectLocation {
        ObjectLocation {
            url: format!("s3://{BUCKET}/{prefix}"),
            options: [
                ("endpoint", self.endpoint.as_str()),
                ("region", "us-east-1"),
                ("access_key_id", "test-key"),
                ("secret_access_key", "test-secret"),
                ("allow_http", "true"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        }
    }

    /// Where `s3s-fs` keeps the objects whose keys start with `prefix`.
    pub fn on_disk(&self, prefix: &str) -> PathBuf {
        self.dir.path().join(BUCKET).join(prefix)
    }

    /// Stops the process without ending it (SIGSTOP): the store still accepts connections
    /// and never answers, until [`S3Server::thaw`].
    pub fn freeze(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: a signal to our own child process.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
        // The signal is delivered asynchronously: wait until every thread has stopped.
        let tasks = format!("/proc/{pid}/task");
        let stopped = || {
            std::fs::read_dir(&tasks).unwrap().flatten().all(|task| {
                let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
                // The state follows the command name in parentheses.
                stat.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('T'))
            })
        };
        while !stopped() {
            std::thread::yield_now();
        }
    }

    /// Lets a frozen server run again (SIGCONT).
    pub fn thaw(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: a signal to our own child process.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    }

    /// Stops the server now (the store becomes unreachable).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `$S3S_FS`, or `s3s-fs` on the `PATH` or in `~/.cargo/bin`.
fn s3s_fs() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("S3S_FS") {
        return Some(path.into());
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join("s3s-fs"))
        .find(|candidate| candidate.is_file())
}
