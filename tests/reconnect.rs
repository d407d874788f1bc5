//! A download that fails half way on the local side (as on a full disk) must not break the
//! shell's next command. A test binary of its own: it lowers the process's file-size limit,
//! which would disturb tests running beside it.

mod common;

use common::TestServer;
use ftprep::Error;
use ftprep::client::NoProgress;
use ftprep::client::shell::Output;
use ftprep::commands::MAX_CHUNK;

/// Lowers RLIMIT_FSIZE while alive, with SIGXFSZ ignored, so that writes past `limit` fail
/// with EFBIG instead of killing the process: a full disk, as far as the writer can tell.
struct FileSizeLimit(libc::rlimit);

impl FileSizeLimit {
    fn set(limit: u64) -> Self {
        let mut old = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: plain system calls on valid pointers; the signal disposition is a constant.
        unsafe {
            assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut old), 0);
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lowered = libc::rlimit {
                rlim_cur: limit,
                rlim_max: old.rlim_max,
            };
            assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lowered), 0);
        }
        FileSizeLimit(old)
    }
}

impl Drop for FileSizeLimit {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe {
            libc::setrlimit(libc::RLIMIT_FSIZE, &self.0);
        }
    }
}

#[tokio::test]
async fn a_download_that_fails_half_way_does_not_break_the_next_command() {
    let server = TestServer::start(&[("alice", "pw")]).await;
    let home = server.root.join("alice");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join("big.bin"), vec![5u8; 8 * MAX_CHUNK]).unwrap();
    let mut session = server.session("alice", "pw").await;
    let local = tempfile::tempdir().unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut io = Output {
        out: &mut out,
        err: &mut err,
        progress: &NoProgress,
        terminal: false,
        stdin: false,
    };

    let limit = FileSizeLimit::set(2 * MAX_CHUNK as u64);
    let get = format!("get big.bin {}", local.path().join("big.bin").display());
    let failure = session.execute_line(&get, &mut io).await.unwrap_err();
    drop(limit);
    assert!(matches!(failure.error, Error::Local { .. }), "{failure}");
    assert!(!local.path().join("big.bin").exists());

    // Data frames of the failed download were still on their way; the next command must
    // not read them as its reply.
    session.execute_line("mkdir after", &mut io).await.unwrap();
    assert!(home.join("after").is_dir());
}
