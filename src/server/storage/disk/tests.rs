//! The disk engine's own tests.
use super::*;
use std::io::Read;

async fn tree() -> (tempfile::TempDir, Arc<dyn UserTree>) {
    let dir = tempfile::tempdir().unwrap();
    let storage = FsStorage::open(&dir.path().join("root")).unwrap();
    let user = Username::parse("alice").unwrap();
    let tree = storage.open_home(&user).await.unwrap();
    (dir, tree)
}

fn path(raw: &str) -> RemotePath {
    RemotePath::parse(raw).unwrap()
}

/// Every entry of a listing, sorted by name.
async fn list_all(tree: &dyn UserTree, at: &str) -> Result<Vec<Entry>, StorageError> {
    let mut listing = tree.list(&path(at)).await?;
    let mut entries = Vec::new();
    while let Some(page) = listing.next_page().await? {
        assert!(page.len() <= ENTRIES_PER_FRAME);
        entries.extend(page);
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

#[tokio::test]
async fn mkdir_and_list() {
    let (dir, tree) = tree().await;
    tree.mkdir(&path("a"), false).await.unwrap();
    let err = tree.mkdir(&path("a"), false).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::AlreadyExists);
    assert_eq!(
        tree.mkdir(&path("x/y"), false).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    tree.mkdir(&path("x/y/z"), true).await.unwrap();
    tree.mkdir(&path("x/y"), true).await.unwrap();
    assert!(dir.path().join("root/alice/x/y/z").is_dir());
    let names: Vec<_> = list_all(&*tree, "").await.unwrap();
    let names: Vec<_> = names.iter().map(|e| (e.name.as_str(), e.kind)).collect();
    assert_eq!(
        names,
        [("a", EntryKind::Directory), ("x", EntryKind::Directory)]
    );
    assert_eq!(
        list_all(&*tree, "nope").await.unwrap_err().code,
        ErrorCode::NotFound
    );
}

#[tokio::test]
async fn a_large_directory_is_listed_in_pages_whole() {
    let (dir, tree) = tree().await;
    let home = dir.path().join("root/alice");
    let count = ENTRIES_PER_FRAME * 2 + 5;
    for i in 0..count {
        std::fs::write(home.join(format!("f{i:05}")), b"").unwrap();
    }
    let mut listing = tree.list(&path("")).await.unwrap();
    let mut pages = 0;
    let mut names = std::collections::BTreeSet::new();
    while let Some(page) = listing.next_page().await.unwrap() {
        pages += 1;
        names.extend(page.into_iter().map(|e| e.name));
    }
    assert_eq!(pages, 3);
    assert_eq!(names.len(), count);
}

/// The first entries are read at once, the rest on a thread: around the point where one
/// hands over to the other, every entry is listed once and a partial upload never.
#[tokio::test]
async fn listings_around_the_inline_entries_are_whole() {
    for count in [INLINE_ENTRIES - 1, INLINE_ENTRIES, INLINE_ENTRIES + 1] {
        let (dir, tree) = tree().await;
        let home = dir.path().join("root/alice");
        let expected: std::collections::BTreeSet<_> =
            (0..count).map(|i| format!("f{i:03}")).collect();
        for name in &expected {
            std::fs::write(home.join(name), b"").unwrap();
        }
        std::fs::write(home.join(partial_name("f000")), b"partial").unwrap();
        let listed: Vec<_> = list_all(&*tree, "")
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(listed.len(), count, "{count} entries");
        assert_eq!(
            listed
                .into_iter()
                .collect::<std::collections::BTreeSet<_>>(),
            expected
        );
    }
}

/// Issue 11.14: `Get` of a FIFO blocked a server thread until a writer appeared.
#[tokio::test]
async fn a_fifo_is_refused_at_once_not_waited_on() {
    let (dir, tree) = tree().await;
    let fifo = dir.path().join("root/alice/pipe");
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo reads a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let opened = tokio::time::timeout(
        Duration::from_secs(10),
        tree.open_download(&path("pipe"), 0),
    )
    .await
    .expect("answered without waiting for a writer");
    let err = opened.err().unwrap();
    assert_eq!(err.code, ErrorCode::PermissionDenied, "{err}");
}

#[tokio::test]
async fn stale_partial_uploads_are_removed_and_fresh_ones_kept() {
    let (dir, tree) = tree().await;
    let home = dir.path().join("root/alice");
    let stale = home.join(partial_name("old-target"));
    let fresh = home.join(partial_name("recent-target"));
    for path in [&stale, &fresh] {
        std::fs::write(path, b"partial").unwrap();
    }
    let two_days_ago = SystemTime::now() - Duration::from_secs(2 * 24 * 60 * 60);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(two_days_ago)
        .unwrap();
    let upload = tree
        .begin_upload(&path("new"), 3.into(), false, false)
        .await
        .unwrap();
    upload.abort(false).await;
    assert!(!stale.exists());
    assert!(fresh.exists());
    // Partial files are neither listed nor reachable by name.
    assert!(list_all(&*tree, "").await.unwrap().is_empty());
    let name = partial_name("recent-target");
    assert_eq!(
        tree.stat(&path(&name)).await.unwrap_err().code,
        ErrorCode::InvalidPath
    );
    assert_eq!(
        tree.remove(&path(&name), false).await.unwrap_err().code,
        ErrorCode::InvalidPath
    );
}

/// Issue 27.14: homes were created with the umask's bits (0755 in an existing root
/// under umask 022), so every local user could read every home.
#[tokio::test]
async fn a_home_is_created_0700_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("root")).unwrap();
    let storage = FsStorage::open(&dir.path().join("root")).unwrap();
    // SAFETY: umask only sets the process's file mode mask; 022 is the usual one.
    let before = unsafe { libc::umask(0o022) };
    let opened = storage.open_home(&Username::parse("alice").unwrap()).await;
    // SAFETY: as above, putting back what was there.
    unsafe { libc::umask(before) };
    opened.unwrap();
    let mode = std::fs::metadata(dir.path().join("root/alice"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");
}

/// Issue 27.3: `put -p` of a tree with old modification times failed at random. An
/// upload's partial file carried the original's old time, and another upload's sweep of
/// stale partial files removed it before its rename. An upload in progress holds its
/// partial file's lock, and a locked partial file is never swept, whatever its time.
#[tokio::test]
async fn an_upload_in_progress_is_never_swept_whatever_its_time() {
    let dir = tempfile::tempdir().unwrap();
    let storage = FsStorage::open(&dir.path().join("root")).unwrap();
    let alice = Username::parse("alice").unwrap();
    let home = dir.path().join("root/alice");
    let tree = storage.open_home(&alice).await.unwrap();
    let mut first = tree
        .begin_upload(&path("old-photo"), 5.into(), false, false)
        .await
        .unwrap();
    first.write(Bytes::from_static(b"hello")).await.unwrap();
    // The time a client keeps with -p, years ago, on the partial file in progress.
    let years_ago = SystemTime::now() - Duration::from_secs(5 * 365 * 24 * 60 * 60);
    std::fs::File::options()
        .write(true)
        .open(home.join(partial_name("old-photo")))
        .unwrap()
        .set_modified(years_ago)
        .unwrap();
    // Another session (the home opened anew, so its directories are due a sweep)
    // uploads into the same directory and sweeps it for stale partial files.
    drop(tree);
    let tree = storage.open_home(&alice).await.unwrap();
    let second = tree
        .begin_upload(&path("next"), 3.into(), false, false)
        .await
        .unwrap();
    second.abort(false).await;
    first
        .finish(Some(Checksum::of(b"hello")), None)
        .await
        .expect("the upload in progress was left alone");
    assert_eq!(std::fs::read(home.join("old-photo")).unwrap(), b"hello");
}

#[tokio::test]
async fn resume_keeps_a_matching_partial_and_restarts_a_longer_one() {
    let (dir, tree) = tree().await;
    let partial = dir.path().join("root/alice").join(partial_name("f"));
    let data = b"0123456789";

    // Four bytes held: the upload continues after them, and the hash covers all ten.
    std::fs::write(&partial, &data[..4]).unwrap();
    let mut upload = tree
        .begin_upload(&path("f"), 10.into(), false, true)
        .await
        .unwrap();
    assert_eq!(upload.offset(), 4);
    upload.write(Bytes::from_static(&data[4..])).await.unwrap();
    upload.finish(Some(Checksum::of(data)), None).await.unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("root/alice/f")).unwrap(),
        data
    );

    // More held than the new file's size: start over from byte 0 (not from where the
    // re-hash stopped, which would leave a hole of zeros at the start).
    std::fs::write(&partial, b"a much longer partial file").unwrap();
    let mut upload = tree
        .begin_upload(&path("f"), 10.into(), true, true)
        .await
        .unwrap();
    assert_eq!(upload.offset(), 0);
    upload
        .write(Bytes::from_static(b"abcdefghij"))
        .await
        .unwrap();
    upload
        .finish(Some(Checksum::of(b"abcdefghij")), None)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("root/alice/f")).unwrap(),
        b"abcdefghij"
    );
    assert!(!partial.exists());
}

#[test]
fn only_a_regular_file_being_replaced_is_held_open() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file"), b"old").unwrap();
    std::os::unix::fs::symlink("file", dir.path().join("link")).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let parent = Dir::open_ambient_dir(dir.path(), ambient_authority()).unwrap();
    let held = hold_replaced(&parent, "file").unwrap();
    // The handle outlives the name: what rename() replaces stays readable until dropped.
    std::fs::remove_file(dir.path().join("file")).unwrap();
    let mut old = String::new();
    held.into_std().read_to_string(&mut old).unwrap();
    assert_eq!(old, "old");
    for other in ["link", "sub", "missing"] {
        assert!(hold_replaced(&parent, other).is_none(), "{other}");
    }
}

#[tokio::test]
async fn sessions_of_one_user_share_one_home_handle() {
    let dir = tempfile::tempdir().unwrap();
    let storage = FsStorage::open(&dir.path().join("root")).unwrap();
    let alice = Username::parse("alice").unwrap();
    let first = storage.open_home(&alice).await.unwrap();
    let second = storage.open_home(&alice).await.unwrap();
    assert!(Arc::ptr_eq(&first, &second));
    // A home replaced on disk is opened afresh.
    std::fs::rename(dir.path().join("root/alice"), dir.path().join("old")).unwrap();
    let third = storage.open_home(&alice).await.unwrap();
    assert!(!Arc::ptr_eq(&first, &third));
    third.mkdir(&path("fresh"), false).await.unwrap();
    assert!(dir.path().join("root/alice/fresh").is_dir());
    drop((first, second, third));
    let bob = Username::parse("bob").unwrap();
    storage.open_home(&bob).await.unwrap();
    assert_eq!(
        storage.homes.lock().unwrap().len(),
        1,
        "dead entries are dropped"
    );
}

#[tokio::test]
async fn symlink_out_of_home_is_refused() {
    let (dir, tree) = tree().await;
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, dir.path().join("root/alice/link")).unwrap();
    std::os::unix::fs::symlink("../..", dir.path().join("root/alice/up")).unwrap();
    for raw in ["link/x", "up/x", "up/outside/x"] {
        let err = tree.mkdir(&path(raw), true).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::PermissionDenied, "{raw}: {err}");
        assert!(list_all(&*tree, raw).await.is_err());
    }
    assert!(list_all(&*tree, "link").await.is_err());
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
}
