//! The file service on an S3-compatible object store (`--root s3://bucket/prefix`), against
//! a real S3 server (`s3s-fs`, started by the tests): the same commands as on disk, keys
//! confined to the user's prefix, multipart uploads checked before they appear, resumed on
//! the same node or another, and a store that goes away as a clear error.
//!
//! Without `s3s-fs` installed these tests fail, saying what to install
//! (`scripts/test.sh` installs it).

mod common;

use common::s3::S3Server;
use common::{
    TestServer, code_of, files_under, names_listed, random_bytes, send_chunk, start_upload,
};
use ftprep::client::{NoProgress, TransferOptions};
use ftprep::commands::{EntryKind, ErrorCode, MAX_CHUNK, Request};

const RESUME: TransferOptions = TransferOptions {
    overwrite: true,
    resume: true,
    follow_links: false,
    preserve: false,
};

/// One multipart part: what the server sends to the store at a time.
const PART: usize = 8 << 20;

#[tokio::test]
async fn files_and_directories_work_as_on_disk() {
    let s3 = S3Server::start();
    let server = TestServer::start_objects(&[("alice", "pw")], s3.location("team")).await;
    let mut alice = server.login("alice", "pw").await;
    let local = server.dir.path().join("local");
    std::fs::create_dir(&local).unwrap();
    let small = b"a small note".to_vec();
    let big = random_bytes(2 * PART + 12_345, 1);
    std::fs::write(local.join("note.txt"), &small).unwrap();
    std::fs::write(local.join("big.bin"), &big).unwrap();

    alice.mkdir("docs", false).await.unwrap();
    alice.mkdir("a/b/c", true).await.unwrap();
    let err = alice.mkdir("docs", false).await.unwrap_err();
    assert_eq!(code_of(&err), Some(ErrorCode::AlreadyExists), "{err}");
    let err = alice.mkdir("nowhere/x", false).await.unwrap_err();
    assert_eq!(code_of(&err), Some(ErrorCode::NotFound), "{err}");
    let err = alice.mkdir(".ftprep-dir", false).await.unwrap_err();
    assert_eq!(code_of(&err), Some(ErrorCode::InvalidPath), "{err}");
    // An object store keeps no links (sync -l): a typed refusal, nothing stored.
    let err = alice.symlink("docs/link", "x").await.unwrap_err();
    assert_eq!(code_of(&err), Some(ErrorCode::Unsupported), "{err}");

    let options = TransferOptions::default();
    alice
        .put_file(
            &local.join("note.txt"),
            "docs/note.txt",
            options,
            &NoProgress,
        )
        .await
        .unwrap();
    let put = alice
        .put_file(&local.join("big.bin"), "docs/big.bin", options, &NoProgress)
        .await
        .unwrap();
    assert_eq!(put.size, big.len() as u64);
    let err = alice
        .put_file(
            &local.join("note.txt"),
            "docs/note.txt",
            options,
            &NoProgress,
        )
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), Some(ErrorCode::AlreadyExists), "{err}");
    let err = alice
        .put_file(
            &local.join("note.txt"),
            "missing/note.txt",
            options,
            &NoProgress,
        )
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), Some(ErrorCode::NotFound), "{err}");

    assert_eq!(names_listed(&mut alice, "").await, ["a", "docs"]);
    assert_eq!(
        names_listed(&mut alice, "docs").await,
        ["big.bin", "note.txt"]
    );
    let stat = alice.stat("docs/big.bin").await.unwrap();
    assert_eq!((stat.kind, stat.size), (EntryKind::File, big.len() as u64));
    assert_eq!(alice.stat("a/b").await.unwrap().kind, EntryKind::Directory);
    let tree: Vec<(String, EntryKind)> = alice
        .list_tree("")
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.kind))
        .collect();
    let dir = |n: &str| (n.to_owned(), EntryKind::Directory);
    let file = |n: &str| (n.to_owned(), EntryKind::File);
    assert_eq!(
        tree,
        [
            dir("a"),
            dir("a/b"),
            dir("a/b/c"),
            dir("docs"),
            file("docs/big.bin"),
            file("docs/note.txt")
        ]
    );

    for (remote, data) in [("docs/big.bin", &big), ("docs/note.txt", &small)] {
        let back = local.join("back");
        let got = alice
            .get_file(
                remote,
                &back,
                TransferOptions {
                    overwrite: true,
                    ..options
                },
                &NoProgress,
            )
            .await
            .unwrap();
        assert_eq!(got.size, data.len() as u64);
        assert_eq!(&std::fs::read(&back).unwrap(), data, "{remote}");
    }
    let (size, digest) = alice.checksum("docs/big.bin").await.unwrap();
    assert_eq!(
        (size, digest),
        (big.len() as u64, ftprep::checksum::Checksum::of(&big))
    );

    // Renames: a file (copy, then delete), then a whole directory.
    alice
        .rename("docs/note.txt", "a/b/note.txt", false)
        .await
        .unwrap();
    alice.rename("a", "z", false).await.unwrap();
    let err = alice.rename("docs", "docs/inner", false).await.unwrap_err();
    assert_eq!(code_of(&err), Some(ErrorCode::InvalidPath), "{err}");
    assert_eq!(names_listed(&mut alice, "").await, ["docs", "z"]);
    assert_eq!(names_listed(&mut alice, "z/b").await, ["c", "note.txt"]);
    let err = alice.rmdir("z/b").await.unwrap_err();
    assert_eq!(code_of(&err), Some(ErrorCode::DirectoryNotEmpty), "{err}");
    alice.rmdir("z/b/c").await.unwrap();
    let err = alice.remove("z", false).await.unwrap_err();
    assert_eq!(code_of(&err), Some(ErrorCode::IsADirectory), "{err}");

    // What the store holds: the files' bytes and one 4 KiB per directory (docs, z, z/b).
    let (used, _) = alice.usage().await.unwrap();
    assert_eq!(used, big.len() as u64 + small.len() as u64 + 3 * 4096);
    alice.remove("z", true).await.unwrap();
    assert_eq!(names_listed(&mut alice, "").await, ["docs"]);
    let (used, _) = alice.usage().await.unwrap();
    assert_eq!(used, big.len() as u64 + 4096);

    // A tree up and down, over several connections.
    let tree = local.join("tree");
    for d in 0..3 {
        std::fs::create_dir_all(tree.join(format!("d{d}"))).unwrap();
        for f in 0..7 {
            std::fs::write(tree.join(format!("d{d}/f{f}")), format!("{d}/{f}")).unwrap();
        }
    }
    let sent = alice
        .put_tree(&tree, "tree", TransferOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(sent.files, 21);
    let got = alice
        .get_tree(
            "tree",
            &local.join("tree-back"),
            TransferOptions::default(),
            &NoProgress,
        )
        .await
        .unwrap();
    assert_eq!(got.files, 21);
    assert_eq!(
        std::fs::read(local.join("tree-back/d2/f6")).unwrap(),
        b"2/6"
    );
    alice.remove("tree", true).await.unwrap();

    // Every key lies under the user's prefix, whatever the names.
    alice.mkdir("odd %2F..%2Fbob", false).await.unwrap();
    assert_eq!(
        names_listed(&mut alice, "").await,
        ["docs", "odd %2F..%2Fbob"]
    );
    let stored = files_under(&s3.on_disk(""));
    assert!(!stored.is_empty());
    for key in &stored {
        assert!(key.starts_with("team/alice/"), "{key} outside the prefix");
    }
}

#[tokio::test]
async fn a_large_directory_lists_whole_in_pages() {
    let s3 = S3Server::start();
    let server = TestServer::start_objects(&[("alice", "pw")], s3.location("")).await;
    let mut alice = server.login("alice", "pw").await;
    // Objects put there by another tool (straight into the S3 server's files): a prefix
    // without a marker is a directory all the same. More than one page of entries (1,024)
    // and more than one S3 request (1,000 keys).
    let count = 1_100;
    let many = s3.on_disk("alice/many");
    std::fs::create_dir_all(&many).unwrap();
    for i in 0..count {
        std::fs::write(many.join(format!("f{i:05}")), i.to_string()).unwrap();
    }
    assert_eq!(names_listed(&mut alice, "").await, ["many"]);
    let mut listed = names_listed(&mut alice, "many").await;
    listed.dedup();
    assert_eq!(listed.len(), count);
    let tree = alice.list_tree("").await.unwrap();
    assert_eq!(tree.len(), count + 1, "the directory, then each file once");
    assert_eq!(tree[0].name, "many");
    let back = server.dir.path().join("f01099");
    alice
        .get_file(
            "many/f01099",
            &back,
            TransferOptions::default(),
            &NoProgress,
        )
        .await
        .unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), b"1099");
}

/// Sends the first `bytes` of `data` as an upload of all of it to `target`, then stops
/// (as a dropped connection would), and waits until the server has let the upload go.
async fn interrupted_upload(server: &TestServer, target: &str, data: &[u8], bytes: usize) {
    let mut client = server.login("alice", "pw").await;
    start_upload(&mut client, target, data.len() as u64, true).await;
    for chunk in data[..bytes].chunks(MAX_CHUNK) {
        send_chunk(&mut client, chunk).await;
    }
    // A request out of turn ends the upload, keeping its data for a resume; the answer
    // comes once the server has done so.
    let err = client.raw_request(&Request::Usage).await.unwrap_err();
    assert_eq!(code_of(&err), Some(ErrorCode::UnexpectedRequest), "{err}");
}

#[tokio::test]
async fn an_upload_resumes_on_the_same_node_checked_before_it_appears() {
    let s3 = S3Server::start();
    let server = TestServer::start_objects(&[("alice", "pw")], s3.location("one")).await;
    let local = server.dir.path().join("data.bin");
    let data = random_bytes(3 * PART + 777, 2);
    std::fs::write(&local, &data).unwrap();
    let mut alice = server.login("alice", "pw").await;
    std::fs::write(server.dir.path().join("old"), b"the old version").unwrap();
    alice
        .put_file(
            &server.dir.path().join("old"),
            "data.bin",
            TransferOptions::default(),
            &NoProgress,
        )
        .await
        .unwrap();

    interrupted_upload(&server, "data.bin", &data, 2 * PART + 5).await;
    // Readers never see the unfinished upload.
    assert_eq!(alice.stat("data.bin").await.unwrap().size, 15);
    assert_eq!(names_listed(&mut alice, "").await, ["data.bin"]);

    // The local file changed since: the resume fails its checksum before anything
    // appears, and the old version stays.
    let mut changed = data.clone();
    changed[100] ^= 1;
    std::fs::write(&local, &changed).unwrap();
    let err = alice
        .put_file(&local, "data.bin", RESUME, &NoProgress)
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), Some(ErrorCode::ChecksumMismatch), "{err}");
    assert_eq!(alice.stat("data.bin").await.unwrap().size, 15);

    // Unchanged: it continues after the two whole parts the store holds.
    std::fs::write(&local, &data).unwrap();
    interrupted_upload(&server, "data.bin", &data, 2 * PART + 5).await;
    let done = alice
        .put_file(&local, "data.bin", RESUME, &NoProgress)
        .await
        .unwrap();
    assert_eq!(done.resumed_from, 2 * PART as u64);
    let back = server.dir.path().join("back");
    alice
        .get_file("data.bin", &back, TransferOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), data);
    // Nothing of the upload's own state is left behind.
    assert_eq!(files_under(&s3.on_disk("one")), ["alice/data.bin"]);
}

#[tokio::test]
async fn another_node_resumes_an_upload_and_checks_the_whole_file() {
    let s3 = S3Server::start();
    let node_a = TestServer::start_objects(&[("alice", "pw")], s3.location("shared")).await;
    let node_b = TestServer::start_objects(&[("alice", "pw")], s3.location("shared")).await;
    let local = node_a.dir.path().join("data.bin");
    let data = random_bytes(2 * PART + 4_321, 3);
    std::fs::write(&local, &data).unwrap();

    interrupted_upload(&node_a, "moved.bin", &data, PART + 10).await;
    let mut on_b = node_b.login("alice", "pw").await;
    let done = on_b
        .put_file(&local, "moved.bin", RESUME, &NoProgress)
        .await
        .unwrap();
    assert_eq!(done.resumed_from, PART as u64, "resumed from node A's part");
    let mut on_a = node_a.login("alice", "pw").await;
    let back = node_a.dir.path().join("back");
    on_a.get_file("moved.bin", &back, TransferOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), data);

    // The file changed between the interruption and the resume on B: B can only check the
    // whole object once complete, and removes it again.
    interrupted_upload(&node_a, "changed.bin", &data, PART + 10).await;
    let mut changed = data.clone();
    changed[5] ^= 1;
    std::fs::write(&local, &changed).unwrap();
    let err = on_b
        .put_file(&local, "changed.bin", RESUME, &NoProgress)
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), Some(ErrorCode::ChecksumMismatch), "{err}");
    assert_eq!(names_listed(&mut on_a, "").await, ["moved.bin"]);
}

#[tokio::test]
async fn an_unreachable_store_is_a_clear_error_and_the_server_keeps_serving() {
    let mut s3 = S3Server::start();
    let server = TestServer::start_objects(&[("alice", "pw")], s3.location("gone")).await;
    let mut alice = server.login("alice", "pw").await;
    alice.mkdir("before", false).await.unwrap();
    s3.kill();
    let err = alice.mkdir("after", false).await.unwrap_err();
    assert_eq!(code_of(&err), Some(ErrorCode::Busy), "{err}");
    assert!(err.to_string().contains("unavailable"), "{err}");
    // The session and the server are still there: other requests are answered.
    let err = alice.list("").await.unwrap_err();
    assert_eq!(code_of(&err), Some(ErrorCode::Busy), "{err}");
    let mut again = server.login("alice", "pw").await;
    assert!(again.stat("before").await.is_err());
}

/// Issue 27.8: a store that accepts connections and never answers (stopped with SIGSTOP)
/// held `ls` until the client gave up after 60 s, and a `put` for 120 s. Each is told the
/// store is unavailable within the server's deadline, and all is well once it answers.
#[tokio::test]
async fn a_store_that_never_answers_is_unavailable_within_the_deadline() {
    let s3 = S3Server::start();
    let server = TestServer::start_objects(&[("alice", "pw")], s3.location("frozen")).await;
    let mut alice = server.login("alice", "pw").await;
    alice.mkdir("before", false).await.unwrap();
    let local = server.dir.path().join("small");
    std::fs::write(&local, b"hello").unwrap();
    s3.freeze();
    // The promise is 10 s (the README's); a request's own timeout is 2 minutes.
    let promised = std::time::Duration::from_secs(20);
    let asked = std::time::Instant::now();
    let err = alice.list("").await.unwrap_err();
    assert_eq!(code_of(&err), Some(ErrorCode::Busy), "{err}");
    assert!(err.to_string().contains("unavailable"), "{err}");
    assert!(
        asked.elapsed() < promised,
        "told after {:?}",
        asked.elapsed()
    );
    let asked = std::time::Instant::now();
    let err = alice
        .put_file(&local, "small", Default::default(), &NoProgress)
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), Some(ErrorCode::Busy), "{err}");
    assert!(
        asked.elapsed() < promised,
        "told after {:?}",
        asked.elapsed()
    );
    s3.thaw();
    let names: Vec<String> = alice
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["before"]);
    alice
        .put_file(&local, "small", Default::default(), &NoProgress)
        .await
        .unwrap();
}

/// Issue 27.7: with a file-count quota of 4, six concurrent uploads of new files all
/// succeeded on the object store (on disk the limit held). An upload counts as an entry
/// from its start, and is checked again once it does.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_uploads_never_pass_the_file_count_quota() {
    let s3 = S3Server::start();
    let server = TestServer::start_objects(&[("alice", "pw")], s3.location("files")).await;
    let alice_name = ftprep::username::Username::parse("alice").unwrap();
    ftprep::server::users::file::set_file_quota(&server.users, &alice_name, Some(4)).unwrap();
    let local = server.dir.path().join("data");
    std::fs::write(&local, b"data").unwrap();
    let mut clients = Vec::new();
    for _ in 0..6 {
        clients.push(server.login("alice", "pw").await);
    }
    let stored = common::concurrent_new_files(&mut clients, &local).await;
    assert!(
        (1..=4).contains(&stored),
        "{stored} of 6 stored under a quota of 4"
    );
    let mut alice = server.login("alice", "pw").await;
    let listed = alice.list("").await.unwrap().len();
    assert_eq!(listed, stored);
    let usage = alice.disk_usage().await.unwrap();
    assert_eq!(
        usage.entries, stored as u64,
        "no upload left its entry behind"
    );
}
