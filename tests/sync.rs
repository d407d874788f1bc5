//! `sync` and `check` against a real server: only what changed is copied, times are kept,
//! `--delete`, `--dry-run`, `--exclude` and `--checksum` do what they say, and a sync run
//! again after an interruption finishes the job without copying anything twice.

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime};

use common::TestServer;
use ftprep::client::sync::SyncOptions;
use ftprep::client::{NoProgress, Progress};
use ftprep::commands::{ErrorCode, MAX_CHUNK};

fn write(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

/// Sets a file's modification time `secs_ago` seconds back (whole seconds, as sync compares).
fn age(path: &Path, secs_ago: u64) {
    let when = SystemTime::now() - Duration::from_secs(secs_ago);
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(when).unwrap();
}

/// Counts what a display is told.
#[derive(Default)]
struct Told {
    starts: std::sync::Mutex<Vec<(String, u64)>>,
    bytes: std::sync::atomic::AtomicU64,
    finishes: std::sync::atomic::AtomicU64,
}

impl Progress for Told {
    fn start(&self, name: &str, total: u64, _: u64) {
        self.starts.lock().unwrap().push((name.to_owned(), total));
    }
    fn advance(&self, bytes: u64) {
        self.bytes
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
    }
    fn finish(&self) {
        self.finishes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

fn mtime(path: &Path) -> i64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().mtime()
}

/// Every file under `root`, by path from it, with its contents.
fn files_in(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        for item in std::fs::read_dir(&dir).unwrap() {
            let path = item.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                found.push((rel, std::fs::read(&path).unwrap()));
            }
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn sync_up_copies_only_what_changed_and_deletes_what_is_gone() {
    let server = TestServer::start(&[("alice", "pw")]).await;
    let mut alice = server.login("alice", "pw").await;
    let src = server.dir.path().join("src");
    for i in 0..30 {
        write(
            &src.join(format!("d{}/f{i}", i % 3)),
            format!("file {i}").as_bytes(),
        );
    }
    write(&src.join("big"), &vec![7u8; MAX_CHUNK * 2 + 3]);
    write(&src.join("d0/scratch.tmp"), b"not for the server");
    std::fs::create_dir_all(src.join("empty")).unwrap();
    for (path, _) in files_in(&src) {
        age(&src.join(path), 3600);
    }
    let options = SyncOptions {
        delete: true,
        exclude: vec![glob::Pattern::new("*.tmp").unwrap()],
        ..SyncOptions::default()
    };
    let first = alice
        .sync_up(&src, "mirror", &options, &NoProgress)
        .await
        .unwrap();
    assert_eq!((first.sent, first.unchanged, first.deleted), (31, 0, 0));
    let mirror = server.root.join("alice/mirror");
    let mut expected = files_in(&src);
    expected.retain(|(path, _)| !path.ends_with(".tmp"));
    assert_eq!(files_in(&mirror), expected);
    assert!(mirror.join("empty").is_dir());
    assert_eq!(mtime(&mirror.join("d1/f4")), mtime(&src.join("d1/f4")));
    assert_eq!(mtime(&mirror.join("big")), mtime(&src.join("big")));

    // Nothing changed: nothing sent.
    let again = alice
        .sync_up(&src, "mirror", &options, &NoProgress)
        .await
        .unwrap();
    assert_eq!((again.sent, again.unchanged, again.deleted), (0, 31, 0));

    // Two changed, one new, one gone; a file only the server has (excluded) stays.
    write(&src.join("d0/f0"), b"changed, longer than before");
    write(&src.join("d1/f1"), b"file X");
    write(&src.join("d2/new"), b"new");
    std::fs::remove_file(src.join("d2/f2")).unwrap();
    write(&mirror.join("keep.tmp"), b"theirs");
    let dry = SyncOptions {
        dry_run: true,
        ..options.clone()
    };
    let planned = alice
        .sync_up(&src, "mirror", &dry, &NoProgress)
        .await
        .unwrap();
    assert_eq!((planned.sent, planned.deleted), (3, 1));
    assert!(
        planned.actions.contains(&"delete d2/f2".to_owned()),
        "{:?}",
        planned.actions
    );
    assert!(planned.actions.contains(&"send d2/new".to_owned()));
    assert!(mirror.join("d2/f2").exists(), "a dry run changes nothing");
    let done = alice
        .sync_up(&src, "mirror", &options, &NoProgress)
        .await
        .unwrap();
    assert_eq!((done.sent, done.deleted), (3, 1));
    let mut expected = files_in(&src);
    expected.retain(|(path, _)| !path.ends_with(".tmp"));
    expected.push(("keep.tmp".into(), b"theirs".to_vec()));
    expected.sort();
    assert_eq!(files_in(&mirror), expected);

    // Same size and time, other contents: only --checksum sees it.
    let before = mtime(&src.join("d1/f4"));
    write(&src.join("d1/f4"), b"file Y");
    let file = std::fs::File::options()
        .write(true)
        .open(src.join("d1/f4"))
        .unwrap();
    file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(before as u64))
        .unwrap();
    let by_time = alice
        .sync_up(&src, "mirror", &options, &NoProgress)
        .await
        .unwrap();
    assert_eq!(by_time.sent, 0);
    let by_contents = SyncOptions {
        checksum: true,
        ..options.clone()
    };
    let by_sum = alice
        .sync_up(&src, "mirror", &by_contents, &NoProgress)
        .await
        .unwrap();
    assert_eq!(by_sum.actions, ["send d1/f4"]);
    assert_eq!(std::fs::read(mirror.join("d1/f4")).unwrap(), b"file Y");
}

#[tokio::test]
async fn sync_down_mirrors_and_run_again_finishes_without_copying_twice() {
    let server = TestServer::start(&[("alice", "pw")]).await;
    let mut alice = server.login("alice", "pw").await;
    let tree = server.root.join("alice/site");
    for i in 0..40 {
        write(
            &tree.join(format!("p{}/page{i}.html", i % 4)),
            format!("<p>{i}</p>").as_bytes(),
        );
    }
    let back = server.dir.path().join("back");
    write(&back.join("stray"), b"only here");
    let options = SyncOptions {
        delete: true,
        ..SyncOptions::default()
    };
    let first = alice
        .sync_down("site", &back, &options, &NoProgress)
        .await
        .unwrap();
    assert_eq!((first.sent, first.deleted), (40, 1));
    assert_eq!(files_in(&back), files_in(&tree));
    assert_eq!(
        mtime(&back.join("p2/page6.html")),
        mtime(&tree.join("p2/page6.html"))
    );
    // As if the first run had stopped part way: what is missing (or half there as a
    // partial file, never under its name) is copied, nothing else.
    for i in (0..40).step_by(3) {
        std::fs::remove_file(back.join(format!("p{}/page{i}.html", i % 4))).unwrap();
    }
    // One display over the whole tree: one start, every byte, one finish.
    let told = Told::default();
    let again = alice
        .sync_down("site", &back, &options, &told)
        .await
        .unwrap();
    assert_eq!((again.sent, again.unchanged), (14, 26));
    assert_eq!(
        *told.starts.lock().unwrap(),
        [("14 files".to_owned(), again.bytes)]
    );
    assert_eq!(
        told.bytes.load(std::sync::atomic::Ordering::Relaxed),
        again.bytes
    );
    assert_eq!(told.finishes.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(files_in(&back), files_in(&tree));
    let quiet = Told::default();
    let idle = alice
        .sync_down("site", &back, &options, &quiet)
        .await
        .unwrap();
    assert_eq!(idle.sent, 0);
    assert!(
        quiet.starts.lock().unwrap().is_empty(),
        "no display for nothing"
    );
    // A source that is not there (a typo) is an error, not an empty tree that --delete
    // would make the target into.
    let err = alice
        .sync_down("stie", &back, &options, &NoProgress)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ftprep::Error::Remote {
                code: ftprep::commands::ErrorCode::NotFound,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(files_in(&back), files_in(&tree));
}

#[tokio::test]
async fn check_reports_what_differs_by_size_and_checksum() {
    let server = TestServer::start(&[("alice", "pw")]).await;
    let mut alice = server.login("alice", "pw").await;
    let local = server.dir.path().join("here");
    let remote = server.root.join("alice/there");
    for name in ["same", "a/same2"] {
        write(&local.join(name), b"equal");
        write(&remote.join(name), b"equal");
    }
    let report = alice.check(&local, "there", &[]).await.unwrap();
    assert!(report.is_same(), "{report:?}");
    assert_eq!(report.same, 2);
    write(&local.join("a/same2"), b"EQUAL");
    write(&local.join("mine"), b"1");
    write(&remote.join("theirs"), b"2");
    write(&remote.join("longer"), b"22");
    write(&local.join("longer"), b"2");
    let report = alice.check(&local, "there", &[]).await.unwrap();
    assert_eq!(report.differ, ["a/same2", "longer"]);
    assert_eq!(report.only_local, ["mine"]);
    assert_eq!(report.only_remote, ["theirs"]);
    let ignoring = [
        glob::Pattern::new("mine").unwrap(),
        glob::Pattern::new("theirs").unwrap(),
    ];
    let report = alice.check(&local, "there", &ignoring).await.unwrap();
    assert!(report.only_local.is_empty() && report.only_remote.is_empty());
}

/// Issue 28: `sync -l` keeps symlinks as links, as rsync's `-l` with `--safe-links`: both
/// ways, once (a second run makes none), a changed link replaced; a link out of the tree is
/// left out and named on either side, whatever the server says; the server refuses to make
/// one that leaves the home, and `ReadLink` of anything else.
#[tokio::test]
async fn sync_l_keeps_links_inside_the_tree_both_ways_and_never_one_out() {
    use std::os::unix::fs::symlink;
    let server = TestServer::start(&[("alice", "pw")]).await;
    let mut alice = server.login("alice", "pw").await;
    let src = server.dir.path().join("src");
    write(&src.join("a/file"), b"data");
    symlink("file", src.join("a/link")).unwrap();
    symlink("../a/file", src.join("a/up")).unwrap();
    symlink("a", src.join("dirlink")).unwrap();
    symlink("/etc/passwd", src.join("out")).unwrap();
    symlink("../../x", src.join("a/escape")).unwrap();
    let options = SyncOptions {
        keep_links: true,
        delete: true,
        ..SyncOptions::default()
    };
    let first = alice
        .sync_up(&src, "tree", &options, &NoProgress)
        .await
        .unwrap();
    assert_eq!((first.sent, first.linked), (1, 3), "{first:?}");
    assert_eq!(first.skipped.len(), 2, "{:?}", first.skipped);
    assert!(
        first
            .skipped
            .iter()
            .all(|s| s.contains("a link out of the tree"))
    );
    let home = server.root.join("alice/tree");
    let link = |path: &Path| std::fs::read_link(path).unwrap();
    assert_eq!(link(&home.join("a/link")), Path::new("file"));
    assert_eq!(link(&home.join("a/up")), Path::new("../a/file"));
    assert_eq!(link(&home.join("dirlink")), Path::new("a"));
    assert!(std::fs::symlink_metadata(home.join("out")).is_err());
    let again = alice
        .sync_up(&src, "tree", &options, &NoProgress)
        .await
        .unwrap();
    assert_eq!(
        (again.sent, again.linked, again.deleted),
        (0, 0, 0),
        "{again:?}"
    );
    // A link pointing elsewhere now is replaced.
    std::fs::remove_file(src.join("a/link")).unwrap();
    symlink("up", src.join("a/link")).unwrap();
    let changed = alice
        .sync_up(&src, "tree", &options, &NoProgress)
        .await
        .unwrap();
    assert_eq!((changed.linked, changed.deleted), (1, 1), "{changed:?}");
    assert_eq!(link(&home.join("a/link")), Path::new("up"));

    // Down again, into a new tree: the same links, made locally. One the admin planted that
    // leads out is left out, whatever the server answers about it.
    symlink("/etc", home.join("planted")).unwrap();
    let copy = server.dir.path().join("copy");
    let down = alice
        .sync_down("tree", &copy, &options, &NoProgress)
        .await
        .unwrap();
    assert_eq!((down.sent, down.linked), (1, 3), "{down:?}");
    assert!(
        down.skipped.iter().any(|s| s.contains("planted")),
        "{down:?}"
    );
    assert_eq!(link(&copy.join("a/link")), Path::new("up"));
    assert_eq!(link(&copy.join("dirlink")), Path::new("a"));
    assert!(std::fs::symlink_metadata(copy.join("planted")).is_err());
    let again = alice
        .sync_down("tree", &copy, &options, &NoProgress)
        .await
        .unwrap();
    assert_eq!((again.sent, again.linked), (0, 0), "{again:?}");

    // The server makes no link that leaves the home, and reads only links.
    for target in ["../x", "/etc/passwd", "a/../../x", ""] {
        let err = alice.symlink("bad", target).await.unwrap_err();
        assert_eq!(
            common::code_of(&err),
            Some(ErrorCode::InvalidPath),
            "{target}: {err}"
        );
    }
    let err = alice.symlink("tree/a/file", "x").await.unwrap_err();
    assert_eq!(
        common::code_of(&err),
        Some(ErrorCode::AlreadyExists),
        "{err}"
    );
    let err = alice.read_link("tree/a/file").await.unwrap_err();
    assert_eq!(common::code_of(&err), Some(ErrorCode::InvalidPath), "{err}");
    assert_eq!(alice.read_link("tree/dirlink").await.unwrap(), "a");
}
