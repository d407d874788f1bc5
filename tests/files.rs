//! The file service against a real server: streamed transfers with checksums and resume,
//! trees, quotas, and rm/mv/rmdir/stat confined to the home.
//!
//! One suite, written once: each behaviour runs on every storage engine (`disk::NAME` on
//! a directory, `objects::NAME` on an S3 store, `s3s-fs`), through [`on_every_engine!`] at
//! the bottom. The two tests that plant symlinks in the home run on disk alone: an object
//! store keeps no links (`tests/objects.rs` checks its refusal).

mod common;

use std::path::{Path, PathBuf};

use common::s3::S3Server;
use common::{
    TestServer, finish_upload, names_in, names_listed, random_bytes, send_chunk, start_upload,
};
use ftprep::Error;
use ftprep::client::{NoProgress, TransferOptions};
use ftprep::commands::{EntryKind, ErrorCode, MAX_CHUNK};
use ftprep::paths::{PARTIAL_PREFIX, partial_name};

const FORCE: TransferOptions = TransferOptions {
    overwrite: true,
    resume: false,
    follow_links: false,
    preserve: false,
};
const RESUME: TransferOptions = TransferOptions {
    overwrite: false,
    resume: true,
    follow_links: false,
    preserve: false,
};

/// Asserts that each of `names` holds the same bytes under `copy` as under `original`.
fn assert_same_files(copy: &Path, original: &Path, names: &[String]) {
    for name in names {
        assert_eq!(
            std::fs::read(copy.join(name)).unwrap(),
            std::fs::read(original.join(name)).unwrap(),
            "{name}"
        );
    }
}

fn partials_in(dir: &Path) -> Vec<String> {
    names_in(dir)
        .into_iter()
        .filter(|n| n.starts_with(PARTIAL_PREFIX))
        .collect()
}

/// The engines every file test runs on (see the bottom of this file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    /// A directory on disk, the embedded default.
    Disk,
    /// An S3-compatible object store (`s3s-fs`, started for the test).
    Objects,
}

/// A running server on one engine, and a look at what it stored.
struct Lab {
    server: TestServer,
    /// The object store, for [`Engine::Objects`].
    s3: Option<S3Server>,
}

impl std::ops::Deref for Lab {
    type Target = TestServer;

    fn deref(&self) -> &TestServer {
        &self.server
    }
}

/// The prefix of the bucket the object-store server keeps its homes under.
const PREFIX: &str = "team";

impl Lab {
    async fn start(engine: Engine, users: &[(&str, &str)]) -> Self {
        match engine {
            Engine::Disk => Lab {
                server: TestServer::start(users).await,
                s3: None,
            },
            Engine::Objects => {
                let s3 = S3Server::start();
                let server = TestServer::start_objects(users, s3.location(PREFIX)).await;
                Lab {
                    server,
                    s3: Some(s3),
                }
            }
        }
    }

    /// Where `user`'s home is on this machine's disk: the directory, or where the object
    /// store keeps the objects under it (one file per object, named by its key). For
    /// reading what was stored, never for writing.
    fn home(&self, user: &str) -> PathBuf {
        match &self.s3 {
            None => self.server.root.join(user),
            Some(s3) => s3.on_disk(PREFIX).join(user),
        }
    }

    /// Stores `data` at `path` in alice's home (parents made), as another session would.
    async fn seed(&self, path: &str, data: &[u8]) {
        let local = self.server.dir.path().join(".seed");
        std::fs::write(&local, data).unwrap();
        let mut alice = self.server.login("alice", "pw").await;
        if let Some((parent, _)) = path.rsplit_once('/') {
            alice.mkdir(parent, true).await.unwrap();
        }
        alice
            .put_file(&local, path, FORCE, &NoProgress)
            .await
            .unwrap();
    }

    /// What an interrupted upload of `sent` bytes keeps for a resume: all of it on disk;
    /// whole parts of the multipart upload (8 MiB each) in an object store.
    fn kept(&self, sent: u64) -> u64 {
        const PART: u64 = 8 << 20;
        match self.s3 {
            None => sent,
            Some(_) => sent / PART * PART,
        }
    }

    /// Makes the directory `path` (and its parents) in alice's home.
    async fn seed_dir(&self, path: &str) {
        let mut alice = self.server.login("alice", "pw").await;
        alice.mkdir(path, true).await.unwrap();
    }
}

async fn round_trip_of_a_multi_mib_file_is_byte_identical(engine: Engine) {
    let server = Lab::start(engine, &[("alice", "pw")]).await;
    let mut alice = server.login("alice", "pw").await;
    let local = server.dir.path().join("local");
    std::fs::create_dir(&local).unwrap();
    let data = random_bytes(5 * 1024 * 1024 + 12345, 1);
    std::fs::write(local.join("big.bin"), &data).unwrap();

    let put = alice
        .put_file(
            &local.join("big.bin"),
            "big.bin",
            TransferOptions::default(),
            &NoProgress,
        )
        .await
        .unwrap();
    assert_eq!((put.size, put.resumed_from), (data.len() as u64, 0));
    assert_eq!(
        std::fs::read(server.home("alice").join("big.bin")).unwrap(),
        data
    );
    let get = alice
        .get_file(
            "big.bin",
            &local.join("back.bin"),
            TransferOptions::default(),
            &NoProgress,
        )
        .await
        .unwrap();
    assert_eq!(get.size, data.len() as u64);
    assert_eq!(std::fs::read(local.join("back.bin")).unwrap(), data);
    assert!(partials_in(&local).is_empty());
    assert!(partials_in(&server.home("alice")).is_empty());

    // An empty file too.
    std::fs::write(local.join("empty"), b"").unwrap();
    alice
        .put_file(
            &local.join("empty"),
            "empty",
            TransferOptions::default(),
            &NoProgress,
        )
        .await
        .unwrap();
    let entry = alice.stat("empty").await.unwrap();
    assert_eq!((entry.kind, entry.size), (EntryKind::File, 0));
}

async fn existing_targets_are_replaced_only_when_forced(engine: Engine) {
    let server = Lab::start(engine, &[("alice", "pw")]).await;
    let mut alice = server.login("alice", "pw").await;
    let local = server.dir.path().join("f.txt");
    std::fs::write(&local, b"new").unwrap();
    server.seed("f.txt", b"old").await;

    let err = alice
        .put_file(&local, "f.txt", TransferOptions::default(), &NoProgress)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Remote {
                code: ErrorCode::AlreadyExists,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        std::fs::read(server.home("alice").join("f.txt")).unwrap(),
        b"old"
    );
    alice
        .put_file(&local, "f.txt", FORCE, &NoProgress)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(server.home("alice").join("f.txt")).unwrap(),
        b"new"
    );

    std::fs::write(&local, b"mine").unwrap();
    let err = alice
        .get_file("f.txt", &local, TransferOptions::default(), &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Local { .. }), "{err}");
    assert_eq!(std::fs::read(&local).unwrap(), b"mine");
    alice
        .get_file("f.txt", &local, FORCE, &NoProgress)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&local).unwrap(), b"new");

    // A directory is never replaced by a file.
    alice.mkdir("dir", false).await.unwrap();
    let err = alice
        .put_file(&local, "dir", FORCE, &NoProgress)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Remote {
                code: ErrorCode::IsADirectory,
                ..
            }
        ),
        "{err}"
    );
}

async fn directory_trees_round_trip_with_r(engine: Engine) {
    let server = Lab::start(engine, &[("alice", "pw")]).await;
    let mut alice = server.login("alice", "pw").await;
    let src = server.dir.path().join("src");
    for dir in ["a/b/c", "a/empty", "d"] {
        std::fs::create_dir_all(src.join(dir)).unwrap();
    }
    let files = [
        ("a/one.txt", 10),
        ("a/b/two.bin", 300_000),
        ("a/b/c/three", 0),
        ("d/four", 5),
    ];
    for (i, (name, len)) in files.iter().enumerate() {
        std::fs::write(src.join(name), random_bytes(*len, i as u64 + 7)).unwrap();
    }
    std::os::unix::fs::symlink("/etc/passwd", src.join("d/link")).unwrap();

    let report = alice
        .put_tree(&src, "tree", TransferOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.files, 4);
    assert_eq!(report.skipped.len(), 1, "{:?}", report.skipped);
    assert!(server.home("alice").join("tree/a/empty").is_dir());
    assert!(!server.home("alice").join("tree/d/link").exists());

    let back = server.dir.path().join("back");
    let report = alice
        .get_tree("tree", &back, TransferOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.files, 4);
    for (name, _) in files {
        assert_eq!(
            std::fs::read(back.join(name)).unwrap(),
            std::fs::read(src.join(name)).unwrap(),
            "{name}"
        );
    }
    assert!(back.join("a/empty").is_dir());
}

async fn whole_file_puts_are_pipelined_and_answered_in_order(engine: Engine) {
    use ftprep::checksum::Checksum;
    use ftprep::commands::{Request, Response};
    let server = Lab::start(engine, &[("alice", "pw")]).await;
    let mut alice = server.login("alice", "pw").await;
    server.seed("taken", b"old").await;
    // Ten sent before any answer is read: one with a wrong checksum, one onto a file that
    // exists, one outside the home, one larger than a Put may carry.
    let put = |path: &str, data: &[u8], checksum| Request::Put {
        path: path.into(),
        overwrite: false,
        preserve: None,
        data: bytes::Bytes::copy_from_slice(data),
        checksum,
    };
    let mut expected = Vec::new();
    for i in 0..10u64 {
        let data = random_bytes(100 + i as usize * 1000, i);
        let (request, outcome) = match i {
            3 => (
                put("f3", &data, Checksum::of(b"other")),
                Some(ErrorCode::ChecksumMismatch),
            ),
            5 => (
                put("taken", &data, Checksum::of(&data)),
                Some(ErrorCode::AlreadyExists),
            ),
            7 => (
                put("../bob/f7", &data, Checksum::of(&data)),
                Some(ErrorCode::InvalidPath),
            ),
            8 => {
                let big = vec![8u8; MAX_CHUNK + 1];
                (
                    put("f8", &big, Checksum::of(&big)),
                    Some(ErrorCode::UnexpectedRequest),
                )
            }
            _ => (put(&format!("f{i}"), &data, Checksum::of(&data)), None),
        };
        alice.send_raw(&request).await.unwrap();
        expected.push((i, data, outcome));
    }
    for (i, data, outcome) in expected {
        match (alice.raw_reply().await, outcome) {
            (Ok(Response::Ok), None) => {
                assert_eq!(
                    std::fs::read(server.home("alice").join(format!("f{i}"))).unwrap(),
                    data
                );
            }
            (Err(Error::Remote { code, .. }), Some(want)) => assert_eq!(code, want, "put {i}"),
            (other, want) => panic!("put {i}: {other:?}, expected {want:?}"),
        }
    }
    assert_eq!(
        std::fs::read(server.home("alice").join("taken")).unwrap(),
        b"old"
    );
    assert!(!server.home("alice").join("f3").exists());
    assert!(partials_in(&server.home("alice")).is_empty());
    assert!(!server.home("alice").join("f8").exists());
    // The connection is in step: the next request gets its own answer.
    assert_eq!(alice.stat("f9").await.unwrap().size, 9100);
}

async fn a_tree_of_small_files_goes_up_pipelined_and_stops_at_a_refusal_in_step(engine: Engine) {
    let server = Lab::start(engine, &[("alice", "pw")]).await;
    let mut alice = server.login("alice", "pw").await;
    let src = server.dir.path().join("src");
    for d in 0..4 {
        std::fs::create_dir_all(src.join(format!("d{d}"))).unwrap();
    }
    let mut files = Vec::new();
    for i in 0..200u64 {
        let name = format!("d{}/f{i:03}", i % 4);
        std::fs::write(
            src.join(&name),
            random_bytes(1 + (i as usize * 37) % 5000, i),
        )
        .unwrap();
        files.push(name);
    }
    // One larger than a whole-file put, among them.
    std::fs::write(src.join("d1/big"), random_bytes(MAX_CHUNK + 10, 99)).unwrap();
    files.push("d1/big".into());
    // A target that exists: without -f, the tree stops there, with that file named.
    server.seed_dir("tree/d2").await;
    server.seed("tree/d2/f010", b"mine").await;
    let err = alice
        .put_tree(&src, "tree", TransferOptions::default(), &NoProgress)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("tree/d2/f010"), "{err}");
    assert_eq!(
        std::fs::read(server.home("alice").join("tree/d2/f010")).unwrap(),
        b"mine"
    );
    assert!(alice.is_in_step());
    assert_eq!(
        alice.stat("tree/d2").await.unwrap().kind,
        EntryKind::Directory
    );
    // With -f, all of it, byte for byte.
    let report = alice
        .put_tree(&src, "tree", FORCE, &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.files, files.len() as u64);
    assert_same_files(&server.home("alice").join("tree"), &src, &files);
}

async fn a_tree_of_small_files_comes_down_pipelined_and_stops_at_a_refusal_in_step(engine: Engine) {
    let server = Lab::start(engine, &[("alice", "pw")]).await;
    let mut alice = server.login("alice", "pw").await;
    let tree = server.dir.path().join("src");
    let mut files = Vec::new();
    for i in 0..200u64 {
        let name = format!("d{}/f{i:03}", i % 4);
        std::fs::create_dir_all(tree.join(format!("d{}", i % 4))).unwrap();
        std::fs::write(tree.join(&name), random_bytes((i as usize * 53) % 9000, i)).unwrap();
        files.push(name);
    }
    std::fs::write(tree.join("d1/big"), random_bytes(3 * MAX_CHUNK + 5, 98)).unwrap();
    files.push("d1/big".into());
    alice
        .put_tree(&tree, "tree", FORCE, &NoProgress)
        .await
        .unwrap();
    // A local file in the way: without -f the tree stops there, naming it.
    let back = server.dir.path().join("back");
    std::fs::create_dir_all(back.join("d2")).unwrap();
    std::fs::write(back.join("d2/f010"), b"mine").unwrap();
    // And a partial file an earlier, interrupted download of d3/f007 left.
    std::fs::create_dir_all(back.join("d3")).unwrap();
    let stale = back.join(format!("d3/{}-0000000000000001", partial_name("f007")));
    std::fs::write(&stale, b"half").unwrap();
    let err = alice
        .get_tree("tree", &back, TransferOptions::default(), &NoProgress)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("f010"), "{err}");
    assert_eq!(std::fs::read(back.join("d2/f010")).unwrap(), b"mine");
    assert!(alice.is_in_step());
    assert_eq!(
        alice.stat("tree/d1/big").await.unwrap().size,
        3 * MAX_CHUNK as u64 + 5
    );
    // With -f, all of it, byte for byte, and no partial file left anywhere.
    let report = alice
        .get_tree("tree", &back, FORCE, &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.files, files.len() as u64);
    assert_same_files(&back, &tree, &files);
    assert!(!stale.exists());
    for d in 0..4 {
        assert!(partials_in(&back.join(format!("d{d}"))).is_empty());
    }
}

/// The peers (address and port: one per connection) of the audit log's `event` records.
fn audited_peers(server: &TestServer, event: &str) -> std::collections::HashSet<String> {
    let text = std::fs::read_to_string(server.dir.path().join("audit.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["event"] == event && r["result"] == "ok")
        .map(|r| r["peer"].as_str().unwrap().to_owned())
        .collect()
}

async fn a_tree_goes_up_and_down_over_several_connections(engine: Engine) {
    let server = Lab::start(engine, &[("alice", "pw")]).await;
    let mut alice = server.login("alice", "pw").await;
    let mut helpers = Vec::new();
    for _ in 0..3 {
        helpers.push(server.login("alice", "pw").await);
    }
    alice.add_helpers(helpers);
    assert_eq!(alice.keep_helpers(3).await, 3);
    let src = server.dir.path().join("src");
    let mut files = Vec::new();
    for i in 0..300u64 {
        let name = format!("d{}/f{i:03}", i % 5);
        std::fs::create_dir_all(src.join(format!("d{}", i % 5))).unwrap();
        std::fs::write(src.join(&name), random_bytes((i as usize * 41) % 7000, i)).unwrap();
        files.push(name);
    }
    std::fs::write(src.join("d3/big"), random_bytes(2 * MAX_CHUNK + 3, 97)).unwrap();
    files.push("d3/big".into());
    // A target in the way: the refusal names it, and every connection stays in step.
    server.seed_dir("tree/d4").await;
    server.seed("tree/d4/f299", b"mine").await;
    let err = alice
        .put_tree(&src, "tree", TransferOptions::default(), &NoProgress)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("tree/d4/f299"), "{err}");
    assert!(alice.is_in_step());
    assert_eq!(alice.keep_helpers(3).await, 3, "the helpers stay usable");

    let report = alice
        .put_tree(&src, "tree", FORCE, &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.files, files.len() as u64);
    assert_same_files(&server.home("alice").join("tree"), &src, &files);
    // Each connection has its own peer port: the uploads came over more than one.
    let peers = audited_peers(&server, "put");
    assert!(peers.len() > 1, "uploads over {peers:?}");

    let back = server.dir.path().join("back");
    let report = alice
        .get_tree("tree", &back, FORCE, &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.files, files.len() as u64);
    assert_same_files(&back, &src, &files);
    let peers = audited_peers(&server, "get");
    assert!(peers.len() > 1, "downloads over {peers:?}");

    // Fewer helpers: the next transfer runs on those left.
    assert_eq!(alice.keep_helpers(1).await, 1);
    let again = server.dir.path().join("again");
    let report = alice
        .get_tree("tree", &again, FORCE, &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.files, files.len() as u64);
}

#[tokio::test]
async fn a_whole_tree_is_listed_in_one_request() {
    let server = TestServer::start(&[("alice", "pw")]).await;
    let mut alice = server.login("alice", "pw").await;
    let tree = server.root.join("alice/tree");
    std::fs::create_dir_all(tree.join("a/b/c")).unwrap();
    std::fs::create_dir_all(tree.join("d")).unwrap();
    std::fs::write(tree.join("a/one"), b"1").unwrap();
    std::fs::write(tree.join("a/b/c/three"), b"333").unwrap();
    std::fs::write(tree.join("d/two"), b"22").unwrap();
    std::fs::write(
        tree.join(format!("d/{}-0000000000000001", partial_name("x"))),
        b"part",
    )
    .unwrap();
    // A link to a directory is listed as a link, and not entered.
    std::os::unix::fs::symlink(tree.join("a"), tree.join("d/link")).unwrap();
    let listed: Vec<(String, EntryKind, u64)> = alice
        .list_tree("tree")
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            let size = if e.kind == EntryKind::File { e.size } else { 0 };
            (e.name, e.kind, size)
        })
        .collect();
    let dir = |n: &str| (n.to_owned(), EntryKind::Directory, 0);
    let file = |n: &str, s| (n.to_owned(), EntryKind::File, s);
    assert_eq!(
        listed,
        [
            dir("a"),
            dir("a/b"),
            dir("a/b/c"),
            file("a/b/c/three", 3),
            file("a/one", 1),
            dir("d"),
            ("d/link".to_owned(), EntryKind::Symlink, 0),
            file("d/two", 2),
        ]
    );
    // A file is not a tree; the home is.
    let err = alice.list_tree("tree/d/two").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Remote {
                code: ErrorCode::NotADirectory,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(alice.list_tree("").await.unwrap().len(), listed.len() + 1);
}

/// Starts an upload by hand and sends the first `chunks` chunks of `data`.
async fn partial_upload(
    server: &TestServer,
    target: &str,
    data: &[u8],
    chunks: usize,
    overwrite: bool,
) -> ftprep::client::Client {
    let mut client = server.login("alice", "pw").await;
    start_upload(&mut client, target, data.len() as u64, overwrite).await;
    for chunk in data.chunks(MAX_CHUNK).take(chunks) {
        send_chunk(&mut client, chunk).await;
    }
    client
}

async fn interrupted_upload_leaves_the_target_untouched_and_resumes(engine: Engine) {
    let server = Lab::start(engine, &[("alice", "pw")]).await;
    let data = random_bytes(5 * MAX_CHUNK + 999, 3);
    let local = server.dir.path().join("data.bin");
    std::fs::write(&local, &data).unwrap();
    let home = server.home("alice");
    server.seed("data.bin", b"the old version").await;

    // The connection drops after two chunks.
    let dropped = partial_upload(&server, "data.bin", &data, 2, true).await;
    drop(dropped);
    let mut alice = server.login("alice", "pw").await;
    // Readers never see partial data: the target is the old file, the partial is hidden.
    assert_eq!(
        std::fs::read(home.join("data.bin")).unwrap(),
        b"the old version"
    );
    let names = names_listed(&mut alice, "").await;
    assert_eq!(names, ["data.bin"]);

    let options = TransferOptions {
        overwrite: true,
        resume: true,
        follow_links: false,
        preserve: false,
    };
    let done = alice
        .put_file(&local, "data.bin", options, &NoProgress)
        .await
        .unwrap();
    assert_eq!(done.resumed_from, server.kept(2 * MAX_CHUNK as u64));
    assert_eq!(std::fs::read(home.join("data.bin")).unwrap(), data);
    assert!(partials_in(&home).is_empty());

    // Without -c, a new upload starts from zero and still ends byte-identical.
    drop(partial_upload(&server, "again.bin", &data, 1, false).await);
    let mut alice = server.login("alice", "pw").await;
    let done = alice
        .put_file(&local, "again.bin", TransferOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(done.resumed_from, 0);
    assert_eq!(std::fs::read(home.join("again.bin")).unwrap(), data);
}

async fn a_corrupted_chunk_is_caught_by_the_checksum(engine: Engine) {
    let server = Lab::start(engine, &[("alice", "pw")]).await;
    let data = random_bytes(3 * MAX_CHUNK, 4);
    let home = server.home("alice");
    server.seed("target", b"keep me").await;
    let mut client = partial_upload(&server, "target", &data, 1, true).await;
    let mut damaged = data[MAX_CHUNK..].to_vec();
    damaged[1000] ^= 0x40;
    for chunk in damaged.chunks(MAX_CHUNK) {
        send_chunk(&mut client, chunk).await;
    }
    let err = finish_upload(&mut client, &data).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Remote {
                code: ErrorCode::ChecksumMismatch,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(std::fs::read(home.join("target")).unwrap(), b"keep me");
    assert!(partials_in(&home).is_empty());
    // The session is still usable.
    client.mkdir("after", false).await.unwrap();
}

async fn interrupted_download_resumes_and_a_bad_partial_is_caught(engine: Engine) {
    let server = Lab::start(engine, &[("alice", "pw")]).await;
    let mut alice = server.login("alice", "pw").await;
    let data = random_bytes(3 * MAX_CHUNK + 17, 5);
    server.seed("remote.bin", &data).await;
    let local_dir = server.dir.path().join("dl");
    std::fs::create_dir(&local_dir).unwrap();
    let local = local_dir.join("copy.bin");
    let part = local_dir.join(partial_name("copy.bin"));

    // What an interrupted `get` left behind: the first part of the file.
    std::fs::write(&part, &data[..MAX_CHUNK + 5]).unwrap();
    let done = alice
        .get_file("remote.bin", &local, RESUME, &NoProgress)
        .await
        .unwrap();
    assert_eq!(done.resumed_from, MAX_CHUNK as u64 + 5);
    assert_eq!(std::fs::read(&local).unwrap(), data);
    assert!(!part.exists());

    // A partial whose bytes differ from the server's: the whole-file checksum fails and
    // nothing is put in place.
    let local2 = local_dir.join("copy2.bin");
    let part2 = local_dir.join(partial_name("copy2.bin"));
    let mut wrong = data[..100].to_vec();
    wrong[50] ^= 1;
    std::fs::write(&part2, &wrong).unwrap();
    let err = alice
        .get_file("remote.bin", &local2, RESUME, &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ChecksumMismatch), "{err}");
    assert!(!local2.exists() && !part2.exists());
}

async fn quota_stops_an_upload_and_nothing_partial_remains(engine: Engine) {
    let server = Lab::start(engine, &[("alice", "pw")]).await;
    let db = std::fs::read_to_string(&server.users).unwrap();
    std::fs::write(&server.users, db.replace('\n', " quota=1M\n")).unwrap();
    let mut alice = server.login("alice", "pw").await;
    let local = server.dir.path().join("f");
    std::fs::write(&local, random_bytes(600 * 1024, 6)).unwrap();
    alice
        .put_file(&local, "first", TransferOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(alice.usage().await.unwrap(), (600 * 1024, Some(1 << 20)));

    let err = alice
        .put_file(&local, "second", TransferOptions::default(), &NoProgress)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Remote {
                code: ErrorCode::QuotaExceeded,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("quota exceeded (used 600.0 KiB of 1.0 MiB"),
        "{err}"
    );
    let home = server.home("alice");
    assert_eq!(names_in(&home), ["first"]);
    // Replacing a file counts only the difference.
    alice
        .put_file(&local, "first", FORCE, &NoProgress)
        .await
        .unwrap();
    alice.remove("first", false).await.unwrap();
    alice
        .put_file(&local, "second", TransferOptions::default(), &NoProgress)
        .await
        .unwrap();
}

#[tokio::test]
async fn rm_mv_rmdir_stay_inside_the_home() {
    let server = TestServer::start(&[("alice", "pw")]).await;
    let mut alice = server.login("alice", "pw").await;
    let home = server.root.join("alice");
    let outside = server.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("precious"), b"do not touch").unwrap();
    std::os::unix::fs::symlink(&outside, home.join("link")).unwrap();
    std::fs::write(home.join("file"), b"x").unwrap();
    alice.mkdir("dir/sub", true).await.unwrap();

    for (what, result) in [
        (
            "rm -r link/precious",
            alice.remove("link/precious", true).await,
        ),
        ("rm ../x", alice.remove("../x", true).await),
        ("rm -r /", alice.remove("/", true).await),
        ("rmdir link", alice.rmdir("link").await),
        (
            "mv link/precious",
            alice.rename("link/precious", "stolen", false).await,
        ),
        (
            "mv file link/",
            alice.rename("file", "link/file", false).await,
        ),
        ("mv file ../up", alice.rename("file", "../up", false).await),
        (
            "mv dir dir/sub",
            alice.rename("dir", "dir/sub/inner", false).await,
        ),
    ] {
        assert!(result.is_err(), "{what} succeeded");
    }
    assert_eq!(
        std::fs::read(outside.join("precious")).unwrap(),
        b"do not touch"
    );
    assert_eq!(names_in(&outside), ["precious"]);

    // rm of the symlink removes the link, never what it points to.
    alice.remove("link", true).await.unwrap();
    assert_eq!(names_in(&outside), ["precious"]);

    let err = alice.rmdir("dir").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Remote {
                code: ErrorCode::DirectoryNotEmpty,
                ..
            }
        ),
        "{err}"
    );
    let err = alice.remove("dir", false).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Remote {
                code: ErrorCode::IsADirectory,
                ..
            }
        ),
        "{err}"
    );
    alice.rmdir("dir/sub").await.unwrap();

    // mv refuses to overwrite without -f, and moves into an existing directory.
    std::fs::write(home.join("other"), b"y").unwrap();
    let err = alice.rename("file", "other", false).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Remote {
                code: ErrorCode::AlreadyExists,
                ..
            }
        ),
        "{err}"
    );
    alice.rename("file", "dir", false).await.unwrap();
    assert_eq!(std::fs::read(home.join("dir/file")).unwrap(), b"x");
    alice.rename("other", "dir/file", true).await.unwrap();
    assert_eq!(std::fs::read(home.join("dir/file")).unwrap(), b"y");

    alice.remove("dir", true).await.unwrap();
    assert!(names_in(&home).is_empty());
    let err = alice.stat("dir").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Remote {
                code: ErrorCode::NotFound,
                ..
            }
        ),
        "{err}"
    );
}

async fn the_audit_log_records_logins_changes_and_transfers(engine: Engine) {
    let server = Lab::start(engine, &[("alice", "pw")]).await;
    let mut alice = server.login("alice", "pw").await;
    let _ = server
        .connect()
        .await
        .login_with_password(&ftprep::username::Username::parse("ghost").unwrap(), "x")
        .await;
    alice.mkdir("d", false).await.unwrap();
    let _ = alice.mkdir("d", false).await;
    let local = server.dir.path().join("up");
    std::fs::write(&local, b"12345").unwrap();
    alice
        .put_file(&local, "d/up", TransferOptions::default(), &NoProgress)
        .await
        .unwrap();
    alice.rename("d/up", "d/moved", false).await.unwrap();
    alice.remove("d", true).await.unwrap();
    alice.list("").await.unwrap();

    let text = std::fs::read_to_string(server.dir.path().join("audit.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary: Vec<(String, String, String)> = records
        .iter()
        .map(|r| {
            (
                r["event"].as_str().unwrap().to_owned(),
                r["user"].as_str().unwrap().to_owned(),
                r["result"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("login", "alice", "ok"),
        ("login", "ghost", "failed"),
        ("mkdir", "alice", "ok"),
        ("mkdir", "alice", "AlreadyExists"),
        ("put", "alice", "ok"),
        ("mv", "alice", "ok"),
        ("rm -r", "alice", "ok"),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(summary, expected);
    let put = &records[4];
    assert_eq!(
        (put["path"].as_str(), put["bytes"].as_u64()),
        (Some("d/up"), Some(5))
    );
    assert!(
        put["millis"].is_u64() && records[0]["time"].is_string() && records[0]["peer"].is_string()
    );
    // Every operation names the front end it came by.
    assert!(
        records[2..].iter().all(|r| r["via"] == "native"),
        "{records:?}"
    );
}

async fn the_shell_connects_again_after_the_server_closed_its_connection(engine: Engine) {
    use ftprep::client::shell::Output;
    use ftprep::error::ErrorKind;
    let server = Lab::start(engine, &[("alice", "pw")]).await;
    let mut session = server.session("alice", "pw").await;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut io = Output {
        out: &mut out,
        err: &mut err,
        progress: &NoProgress,
        terminal: false,
        stdin: false,
    };
    session.execute_line("mkdir d", &mut io).await.unwrap();
    session.execute_line("cd d", &mut io).await.unwrap();
    // An upload left half way: the next request is out of place, and the server answers
    // with an error and closes the connection.
    start_upload(&mut session.client, "d/x", 10, false).await;
    let failure = session
        .execute_line("mkdir lost", &mut io)
        .await
        .unwrap_err();
    assert_eq!(failure.error.kind(), ErrorKind::Connection, "{failure}");
    // The next command connects again, as the same user, in the same directory.
    session.execute_line("mkdir e", &mut io).await.unwrap();
    session.execute_line("cd e", &mut io).await.unwrap();
    session.execute_line("pwd", &mut io).await.unwrap();
    assert!(server.home("alice").join("d/e").is_dir());
    assert!(!server.home("alice").join("d/lost").exists());
    assert_eq!(String::from_utf8(out).unwrap(), "/d/e\n");
}

/// Issue 12.3: `put -r -c` of a tree in which any file was already complete failed with
/// "put dir: already exists". Resuming a tree skips what is already there and identical,
/// continues the partial file and sends the rest; the same for `get -r -c`; a file that
/// differs is refused by name.
async fn an_interrupted_tree_transfer_resumes_with_c(engine: Engine) {
    let server = Lab::start(engine, &[("alice", "pw")]).await;
    let mut alice = server.login("alice", "pw").await;
    let src = server.dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    let big = random_bytes(3 * MAX_CHUNK, 11);
    std::fs::write(src.join("a"), b"complete already").unwrap();
    std::fs::write(src.join("sub/big"), &big).unwrap();
    std::fs::write(src.join("sub/c"), b"never sent").unwrap();
    // The interrupted run: `a` arrived whole, `sub/big` half, `sub/c` not at all.
    alice.mkdir("tree/sub", true).await.unwrap();
    let plain = TransferOptions::default();
    alice
        .put_file(&src.join("a"), "tree/a", plain, &NoProgress)
        .await
        .unwrap();
    drop(partial_upload(&server, "tree/sub/big", &big, 1, false).await);

    let report = alice
        .put_tree(&src, "tree", RESUME, &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.files, 3);
    assert_eq!(
        report.bytes,
        big.len() as u64 - server.kept(MAX_CHUNK as u64) + 10,
        "only what was missing"
    );
    assert_eq!(
        std::fs::read(server.home("alice").join("tree/sub/big")).unwrap(),
        big
    );
    assert!(partials_in(&server.home("alice").join("tree/sub")).is_empty());

    // Downloading: one file missing, the others already here.
    let back = server.dir.path().join("back");
    alice
        .get_tree("tree", &back, plain, &NoProgress)
        .await
        .unwrap();
    std::fs::remove_file(back.join("sub/c")).unwrap();
    let report = alice
        .get_tree("tree", &back, RESUME, &NoProgress)
        .await
        .unwrap();
    assert_eq!((report.files, report.bytes), (3, 10));
    assert_eq!(std::fs::read(back.join("sub/c")).unwrap(), b"never sent");

    // A file that differs is not "complete": refused, naming it.
    std::fs::write(src.join("a"), b"changed since").unwrap();
    let err = alice
        .put_tree(&src, "tree", RESUME, &NoProgress)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("tree/a: already exists and differs (use -f to replace it)"),
        "{err}"
    );
}

/// Each behaviour above, once per engine: `disk::NAME` and `objects::NAME`.
macro_rules! on_every_engine {
    ($($name:ident),* $(,)?) => {
        mod disk {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Engine::Disk).await;
                }
            )*
        }
        mod objects {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Engine::Objects).await;
                }
            )*
        }
    };
}

on_every_engine!(
    round_trip_of_a_multi_mib_file_is_byte_identical,
    existing_targets_are_replaced_only_when_forced,
    directory_trees_round_trip_with_r,
    whole_file_puts_are_pipelined_and_answered_in_order,
    a_tree_of_small_files_goes_up_pipelined_and_stops_at_a_refusal_in_step,
    a_tree_of_small_files_comes_down_pipelined_and_stops_at_a_refusal_in_step,
    a_tree_goes_up_and_down_over_several_connections,
    interrupted_upload_leaves_the_target_untouched_and_resumes,
    a_corrupted_chunk_is_caught_by_the_checksum,
    interrupted_download_resumes_and_a_bad_partial_is_caught,
    quota_stops_an_upload_and_nothing_partial_remains,
    the_audit_log_records_logins_changes_and_transfers,
    the_shell_connects_again_after_the_server_closed_its_connection,
    an_interrupted_tree_transfer_resumes_with_c,
);
