//! The attacks of the security review (issue 11), each performed against a real server:
//! quotas that wrap, trees deep enough to crash a recursive walk, uploads that share a
//! partial file, quotas dodged by moving a file mid-upload.

mod common;

use common::{TestServer, finish_upload, names_in, names_listed, send_chunk, start_upload};
use ftprep::Error;
use ftprep::client::{Client, NoProgress, TransferOptions};
use ftprep::commands::{ErrorCode, Request, Response};
use ftprep::paths::MAX_DEPTH;
use ftprep::server::storage::{DIRECTORY_BYTES, MAX_FILE_SIZE};

/// The error code of a refusal.
fn code<T: std::fmt::Debug>(result: ftprep::Result<T>) -> ErrorCode {
    match result {
        Err(Error::Remote { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Sets (or with `None` clears) alice's quota in `users.db`; the running server reloads it.
fn set_quota(server: &TestServer, quota: Option<u64>) {
    let alice = ftprep::username::Username::parse("alice").unwrap();
    ftprep::server::users::file::set_quota(&server.users, &alice, quota).unwrap();
}

async fn put_start(client: &mut Client, path: &str, size: u64) -> ftprep::Result<Response> {
    client
        .raw_request(&Request::PutStart {
            path: path.into(),
            size,
            overwrite: false,
            resume: false,
            preserve: None,
        })
        .await
}

/// Issue 11.1: `used - reclaimed + size` wrapped, and a user over quota streamed as much
/// as they liked into a hidden partial file.
#[tokio::test]
async fn sizes_that_would_wrap_the_quota_check_are_refused() {
    let server = TestServer::start(&[("alice", "pw")]).await;
    let mut alice = server.login("alice", "pw").await;
    let local = server.dir.path().join("f");
    std::fs::write(&local, vec![1u8; 1536 * 1024]).unwrap();
    alice
        .put_file(&local, "big", TransferOptions::default(), &NoProgress)
        .await
        .unwrap();
    set_quota(&server, Some(1 << 20));
    let (used, quota) = alice.usage().await.unwrap();
    assert_eq!(quota, Some(1 << 20));
    assert!(used > 1 << 20, "already over quota: {used}");

    // The exact size of the report, and its neighbours.
    for size in [u64::MAX - used + 1, u64::MAX - used + 2, u64::MAX] {
        let reply = put_start(&mut alice, "evil", size).await;
        assert_eq!(code(reply), ErrorCode::QuotaExceeded, "size {size}");
    }
    // Within the sane maximum but beyond the quota, and the quota being already spent.
    assert_eq!(
        code(put_start(&mut alice, "evil", 2 << 20).await),
        ErrorCode::QuotaExceeded
    );
    assert_eq!(
        code(put_start(&mut alice, "evil", 1).await),
        ErrorCode::QuotaExceeded
    );
    // Nothing was left behind, hidden or not.
    assert_eq!(names_in(&server.root.join("alice")), ["big"]);

    // Without a quota: the sane maximum, and the free space, still hold.
    set_quota(&server, None);
    assert_eq!(alice.usage().await.unwrap().1, None);
    assert_eq!(
        code(put_start(&mut alice, "evil", MAX_FILE_SIZE + 1).await),
        ErrorCode::QuotaExceeded
    );
    assert_eq!(
        code(put_start(&mut alice, "evil", MAX_FILE_SIZE).await),
        ErrorCode::NoSpace,
        "16 TiB does not fit on the test machine's disk"
    );
    assert_eq!(names_in(&server.root.join("alice")), ["big"]);
}

/// Issue 11.1: a partial file never grows past the size announced.
#[tokio::test]
async fn an_upload_cannot_send_more_than_it_announced() {
    let server = TestServer::start(&[("alice", "pw")]).await;
    let mut alice = server.login("alice", "pw").await;
    start_upload(&mut alice, "f", 10, false).await;
    send_chunk(&mut alice, b"0123456789").await;
    send_chunk(&mut alice, b"more").await;
    let reply = finish_upload(&mut alice, b"0123456789more").await;
    assert_eq!(code(reply), ErrorCode::UnexpectedRequest);
    assert!(names_in(&server.root.join("alice")).is_empty());
}

/// Issue 11.2: chains of `mkdir -p` moved into each other gave a tree deep enough to
/// overflow the recursive walk behind `Usage` and crash the server.
#[tokio::test]
async fn trees_cannot_grow_deeper_than_the_bound() {
    let server = TestServer::start(&[("alice", "pw")]).await;
    let mut alice = server.login("alice", "pw").await;
    let chain = |levels: usize| vec!["d"; levels].join("/");
    alice.mkdir(&chain(MAX_DEPTH), true).await.unwrap();
    let too_deep = alice.mkdir(&format!("{}/x", chain(MAX_DEPTH)), true).await;
    assert!(matches!(too_deep, Err(Error::Path(_))), "{too_deep:?}");
    // The server refuses it too, whatever the client checks.
    let reply = alice
        .raw_request(&Request::Mkdir {
            path: format!("{}/x", chain(MAX_DEPTH)),
            parents: true,
        })
        .await;
    assert_eq!(code(reply), ErrorCode::InvalidPath);

    // Moving a tree deeper is refused when it would pass the bound, allowed otherwise.
    alice
        .mkdir(&format!("a/{}", chain(100)), true)
        .await
        .unwrap();
    alice
        .mkdir(&format!("b/{}", chain(100)), true)
        .await
        .unwrap();
    let into = format!("b/{}/a", chain(100));
    let err = alice.rename("a", &into, false).await.unwrap_err();
    assert!(err.to_string().contains("levels deep"), "{err}");
    alice
        .rename("a", &format!("b/{}/a", chain(5)), false)
        .await
        .unwrap();
    alice
        .rename(&format!("b/{}/a", chain(5)), "c", false)
        .await
        .unwrap();

    let (used, _) = alice.usage().await.unwrap();
    let dirs = (MAX_DEPTH + 101 + 101) as u64;
    assert_eq!(used, dirs * DIRECTORY_BYTES);
}

/// Issue 11.2: a tree far deeper than the bound, made outside the server (or before it
/// had one), neither crashes a walk nor resists `rm -r`.
#[tokio::test]
async fn a_tree_built_deeper_than_the_bound_is_counted_and_removed() {
    let server = TestServer::start(&[("alice", "pw")]).await;
    let mut alice = server.login("alice", "pw").await;
    let levels = MAX_DEPTH * 3;
    let mut deep = server.root.join("alice/deep");
    for _ in 0..levels {
        deep.push("d");
    }
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("f"), b"x").unwrap();

    let mut fresh = server.login("alice", "pw").await;
    let (used, _) = fresh.usage().await.unwrap();
    assert_eq!(
        used,
        MAX_DEPTH as u64 * DIRECTORY_BYTES,
        "counted up to the bound"
    );
    alice.remove("deep", true).await.unwrap();
    assert!(names_in(&server.root.join("alice")).is_empty());
    assert_eq!(alice.usage().await.unwrap().0, 0);
    alice.mkdir("still-serving", false).await.unwrap();
}

/// Issue 11.8: directories count against the quota, and the count is kept, not walked.
#[tokio::test]
async fn directories_count_against_the_quota() {
    let server = TestServer::start(&[("alice", "pw")]).await;
    set_quota(&server, Some(100 << 10));
    let mut alice = server.login("alice", "pw").await;
    let fit = 100 * 1024 / DIRECTORY_BYTES;
    for i in 0..fit {
        alice.mkdir(&format!("dir{i}"), false).await.unwrap();
    }
    assert_eq!(alice.usage().await.unwrap().0, fit * DIRECTORY_BYTES);
    let reply = alice.mkdir("one-too-many", false).await;
    assert_eq!(code(reply), ErrorCode::QuotaExceeded);
    // `mkdir -p` of what exists adds nothing and is no error, even at the quota.
    alice.mkdir("dir1", true).await.unwrap();
    alice.rmdir("dir0").await.unwrap();
    alice.mkdir("now-it-fits", false).await.unwrap();
    // A file does not fit either once the directories took the room.
    let local = server.dir.path().join("f");
    std::fs::write(&local, b"12345").unwrap();
    let put = alice
        .put_file(&local, "f", TransferOptions::default(), &NoProgress)
        .await;
    assert_eq!(code(put), ErrorCode::QuotaExceeded);
}

/// Issue 11.9: overwrite a file, and from another session move the file away mid-upload:
/// the upload had counted on replacing it, and usage ended at twice the quota.
#[tokio::test]
async fn moving_the_replaced_file_away_mid_upload_does_not_dodge_the_quota() {
    let server = TestServer::start(&[("alice", "pw")]).await;
    set_quota(&server, Some(1 << 20));
    let mut alice = server.login("alice", "pw").await;
    let local = server.dir.path().join("f");
    let data = vec![7u8; 900 * 1024];
    std::fs::write(&local, &data).unwrap();
    alice
        .put_file(&local, "big", TransferOptions::default(), &NoProgress)
        .await
        .unwrap();

    let mut uploader = server.login("alice", "pw").await;
    start_upload(&mut uploader, "big", data.len() as u64, true).await;
    for chunk in data.chunks(256 * 1024) {
        send_chunk(&mut uploader, chunk).await;
    }
    alice.rename("big", "moved", false).await.unwrap();
    let reply = finish_upload(&mut uploader, &data).await;
    assert_eq!(code(reply), ErrorCode::QuotaExceeded);
    assert_eq!(names_in(&server.root.join("alice")), ["moved"]);
    let (used, quota) = alice.usage().await.unwrap();
    assert!(used <= quota.unwrap(), "{used}");
}

/// Issue 11.11: upload `d1/f` half way, `mv d1 d2`, upload `d2/f`: both wrote the same
/// partial file, and the first finished "verified" with a mixture of both.
#[tokio::test]
async fn two_uploads_never_share_a_partial_file() {
    let server = TestServer::start(&[("alice", "pw")]).await;
    let mut alice = server.login("alice", "pw").await;
    alice.mkdir("d1", false).await.unwrap();
    // Larger than one chunk: its data streams to the partial file as it arrives (a smaller
    // upload is held until it finishes).
    let first: Vec<u8> = vec![1u8; ftprep::commands::MAX_CHUNK + 64 * 1024];
    let mut uploader = server.login("alice", "pw").await;
    start_upload(&mut uploader, "d1/f", first.len() as u64, false).await;
    send_chunk(&mut uploader, &first[..32 * 1024]).await;
    // A round trip on the uploader's connection is not possible mid-upload; wait for the
    // chunk to reach the partial file by watching the disk.
    let partial = server
        .root
        .join("alice/d1")
        .join(ftprep::paths::partial_name("f"));
    let arrived = async {
        while std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0) < 32 * 1024 {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), arrived)
        .await
        .expect("the first chunk reached the partial file");
    alice.rename("d1", "d2", false).await.unwrap();

    let mut second = server.login("alice", "pw").await;
    let reply = put_start(&mut second, "d2/f", 10).await;
    assert_eq!(code(reply), ErrorCode::Busy);

    for chunk in first[32 * 1024..].chunks(ftprep::commands::MAX_CHUNK) {
        send_chunk(&mut uploader, chunk).await;
    }
    assert_eq!(
        finish_upload(&mut uploader, &first).await.unwrap(),
        Response::Ok
    );
    assert_eq!(
        std::fs::read(server.root.join("alice/d2/f")).unwrap(),
        first
    );
}

/// Runs a whole SCRAM exchange by hand for `name` (any string) with `password`; the
/// server's last word.
async fn login_as(server: &TestServer, name: &str, password: &str) -> Response {
    use ftprep::auth::{ChannelBinding, ClientFirst, ClientKeys};
    let mut client = server.connect().await;
    let first = ClientFirst::with_binding(name, ChannelBinding::None);
    let reply = client
        .raw_request(&Request::AuthStart {
            mechanism: first.mechanism().into(),
            message: first.message(),
        })
        .await
        .unwrap();
    let Response::AuthChallenge { message } = reply else {
        return reply;
    };
    let challenge = first.receive_server_first(&message).unwrap();
    let keys = ClientKeys::derive(password, &challenge.salt, challenge.iterations);
    let (client_final, _) = challenge.respond(&keys);
    client
        .raw_request(&Request::AuthFinish {
            message: client_final,
        })
        .await
        .unwrap()
}

/// Issue 11.3: 128 failed logins with ~1 MiB names grew the server by 165 MB and wrote
/// 138 MB to the audit log and 134 MB to the log.
#[tokio::test]
async fn impossible_names_are_neither_stored_nor_logged_whole() {
    let server = TestServer::start(&[("alice", "pw")]).await;
    let wrong_password = login_as(&server, "alice", "nope").await;
    assert_eq!(
        wrong_password,
        Response::AuthOutcome {
            message: "e=invalid-proof".into()
        }
    );
    let audit = server.dir.path().join("audit.jsonl");
    let before = std::fs::metadata(&audit).unwrap().len();
    let huge = "x".repeat(900 * 1024);
    // A frame that large is refused before the login has begun (issue 27.6)...
    let mut client = server.connect().await;
    let first = ftprep::auth::ClientFirst::with_binding(&huge, ftprep::auth::ChannelBinding::None);
    let refused = client
        .raw_request(&Request::AuthStart {
            mechanism: first.mechanism().into(),
            message: first.message(),
        })
        .await;
    assert_eq!(code(refused), ErrorCode::FrameTooLarge);
    // ...and any name that fits one gets the same answer as a wrong password.
    let long = "x".repeat(3000);
    for name in [long.as_str(), "ALICE", "bob\u{1b}[31m", "a\nb"] {
        assert_eq!(
            login_as(&server, name, "pw").await,
            wrong_password,
            "the same answer as a wrong password"
        );
    }
    let written = std::fs::metadata(&audit).unwrap().len() - before;
    assert!(written < 2048, "{written} bytes of audit for five attempts");
    // A path longer than any valid one is refused, and logged only in part.
    let mut alice = server.login("alice", "pw").await;
    let before = std::fs::metadata(&audit).unwrap().len();
    let reply = alice
        .raw_request(&Request::Mkdir {
            path: huge.clone(),
            parents: false,
        })
        .await;
    assert_eq!(code(reply), ErrorCode::InvalidPath);
    let written = std::fs::metadata(&audit).unwrap().len() - before;
    assert!(
        written < 1024,
        "{written} bytes of audit for one refused mkdir"
    );
    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(!text.contains('\u{1b}'), "escaped: {text}");
    assert!(
        text.contains("(921600 bytes)"),
        "the length is said: {text}"
    );
    // The server still serves alice.
    server
        .login("alice", "pw")
        .await
        .mkdir("ok", false)
        .await
        .unwrap();
}

/// Issue 11.6: transfers and listings each hold a thread while they run; past the limit
/// the server says it is busy instead of letting a few accounts take every thread.
#[tokio::test]
async fn transfers_past_the_limit_are_told_the_server_is_busy() {
    let mut limits = common::fast_limits();
    limits.max_transfers = 1;
    let server = TestServer::start_with(&[("alice", "pw")], limits).await;
    let mut holder = server.login("alice", "pw").await;
    start_upload(&mut holder, "slow", 10, false).await;
    let mut other = server.login("alice", "pw").await;
    assert_eq!(code(other.list("").await), ErrorCode::Busy);
    assert_eq!(code(put_start(&mut other, "f", 1).await), ErrorCode::Busy);
    // Commands that stream nothing still work.
    other.mkdir("d", false).await.unwrap();
    send_chunk(&mut holder, b"0123456789").await;
    assert_eq!(
        finish_upload(&mut holder, b"0123456789").await.unwrap(),
        Response::Ok
    );
    let names = names_listed(&mut other, "").await;
    assert_eq!(names, ["d", "slow"]);
}

/// Issue 11.8, the option: a file-count quota (as SFTPGo's), over files, directories and
/// links, so 20,000 empty directories are not free.
#[tokio::test]
async fn a_file_count_quota_limits_files_and_directories() {
    let server = TestServer::start(&[("alice", "pw")]).await;
    let alice_name = ftprep::username::Username::parse("alice").unwrap();
    ftprep::server::users::file::set_file_quota(&server.users, &alice_name, Some(3)).unwrap();
    let mut alice = server.login("alice", "pw").await;
    alice.mkdir("a", false).await.unwrap();
    alice.mkdir("b", false).await.unwrap();
    let local = server.dir.path().join("f");
    std::fs::write(&local, b"data").unwrap();
    let plain = TransferOptions::default();
    alice
        .put_file(&local, "f", plain, &NoProgress)
        .await
        .unwrap();
    assert_eq!(
        code(alice.mkdir("c", false).await),
        ErrorCode::QuotaExceeded
    );
    let err = alice.put_file(&local, "g", plain, &NoProgress).await;
    assert_eq!(code(err), ErrorCode::QuotaExceeded);
    // Replacing a file adds no entry.
    let force = TransferOptions {
        overwrite: true,
        resume: false,
        follow_links: false,
        preserve: false,
    };
    alice
        .put_file(&local, "f", force, &NoProgress)
        .await
        .unwrap();
    let usage = alice.disk_usage().await.unwrap();
    assert_eq!((usage.entries, usage.max_entries), (3, Some(3)));
    alice.remove("f", false).await.unwrap();
    alice.mkdir("c", false).await.unwrap();
    assert_eq!(names_in(&server.root.join("alice")), ["a", "b", "c"]);
}
