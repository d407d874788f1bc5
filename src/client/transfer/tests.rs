//! The transfers' own tests.

use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::commands::{Hello, MAX_CHUNK};
use crate::wire::Connection;

/// The server's end of a pipe, hellos exchanged: the tests play a server by hand.
async fn fake_server(stream: tokio::io::DuplexStream) -> Connection<tokio::io::DuplexStream> {
    let mut conn = Connection::new(stream);
    let _: Hello = conn.expect().await.unwrap();
    conn.write(&Hello::ours()).await.unwrap();
    let names = vec![crate::auth::MECHANISM.to_owned()];
    conn.write(&Response::Mechanisms { names }).await.unwrap();
    conn
}

/// A small file of a tree download, held until its finish: written, checked, given its
/// attributes and renamed into place; or, if its checksum differs from the server's,
/// nothing of it stays.
#[test]
fn a_held_download_is_checked_before_it_is_put_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let data = b"the bytes of a small file".to_vec();
    let chunks = vec![
        Bytes::from(data[..9].to_vec()),
        Bytes::from(data[9..].to_vec()),
    ];
    let held = |name: &str, theirs: Digest| {
        let (part, file) = partial::create(dir.path(), name).unwrap();
        ReceivedFile {
            size: data.len() as u64,
            part,
            data: SinkEnded::Held(file, Checksum::new(), chunks.clone()),
            theirs,
            attributes: Some(crate::commands::Attributes {
                modified: 1_000_000_000,
                mode: 0o640,
            }),
        }
    };

    let good = held("good", Checksum::of(&data));
    assert_eq!(good.held_bytes(), data.len() as u64);
    let part = good.part.clone();
    let target = dir.path().join("good");
    finish_download(good, target.clone(), false, Vec::new()).unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), data);
    assert!(!part.exists());
    let meta = std::fs::metadata(&target).unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!(meta.mtime(), 1_000_000_000);
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);

    let bad = held("bad", Checksum::of(b"something else"));
    let part = bad.part.clone();
    let target = dir.path().join("bad");
    let err = finish_download(bad, target.clone(), false, Vec::new()).unwrap_err();
    assert!(matches!(err, Error::ChecksumMismatch), "{err}");
    assert!(!target.exists() && !part.exists());
}

/// A single small file goes up in one `Put`, answered once: one round trip. A larger
/// one, and a resume (which must learn where to go on), start with `PutStart`.
#[tokio::test]
async fn a_small_single_upload_is_one_request_and_one_answer() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    std::fs::write(&small, b"a few bytes").unwrap();
    let large = dir.path().join("large");
    std::fs::write(&large, vec![3u8; MAX_CHUNK + 1]).unwrap();
    let (near, far) = tokio::io::duplex(4 * MAX_CHUNK);
    let server = tokio::spawn(async move {
        let mut conn = fake_server(far).await;
        let mut seen = Vec::new();
        while let Ok(Some(request)) = conn.read::<Request>().await {
            let reply = match &request {
                Request::Put { .. } => Response::Ok,
                _ => Response::Error {
                    code: ErrorCode::InvalidPath,
                    message: "enough".into(),
                },
            };
            seen.push(request);
            conn.write(&reply).await.unwrap();
        }
        seen
    });
    let mut client = Client::handshake(near).await.unwrap();
    let done = client
        .put_file(&small, "up", TransferOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(done.size, 11);
    let resume = TransferOptions {
        resume: true,
        ..TransferOptions::default()
    };
    assert!(
        client
            .put_file(&small, "again", resume, &NoProgress)
            .await
            .is_err()
    );
    let options = TransferOptions::default();
    assert!(
        client
            .put_file(&large, "big", options, &NoProgress)
            .await
            .is_err()
    );
    drop(client);

    let seen = server.await.unwrap();
    assert_eq!(seen.len(), 3, "{seen:?}");
    match &seen[0] {
        Request::Put {
            path,
            overwrite: false,
            preserve: None,
            data,
            checksum,
        } => {
            assert_eq!(path, "up");
            assert_eq!(&data[..], b"a few bytes");
            assert_eq!(*checksum, Checksum::of(b"a few bytes"));
        }
        other => panic!("expected one Put, got {other:?}"),
    }
    assert!(
        matches!(&seen[1], Request::PutStart { path, resume: true, .. } if path == "again"),
        "{:?}",
        seen[1]
    );
    assert!(
        matches!(&seen[2], Request::PutStart { path, size, .. } if path == "big" && *size == MAX_CHUNK as u64 + 1),
        "{:?}",
        seen[2]
    );
}

/// The server's side of a download: `chunks` data frames of 1000 bytes, then `GetDone`.
async fn serve_download(stream: tokio::io::DuplexStream, chunks: usize) {
    let mut conn = fake_server(stream).await;
    for _ in 0..chunks {
        let data = Bytes::from(vec![7u8; 1000]);
        conn.write(&Response::Data { data }).await.unwrap();
    }
    let checksum = Checksum::of(&vec![7u8; 1000 * chunks]);
    conn.write(&Response::GetDone { checksum }).await.unwrap();
}

/// A client of [`serve_listing`] with `entries`.
async fn listed(entries: Vec<crate::commands::Entry>) -> Client<tokio::io::DuplexStream> {
    let (near, far) = tokio::io::duplex(1 << 16);
    tokio::spawn(serve_listing(far, entries));
    Client::handshake(near).await.unwrap()
}

/// A directory `target` where a link `sub` to the (empty) directory `outside` was
/// planted: (outside, target), in `tmp`.
fn planted_link(tmp: &Path) -> (PathBuf, PathBuf) {
    let outside = tmp.join("outside");
    std::fs::create_dir(&outside).unwrap();
    let target = tmp.join("target");
    std::fs::create_dir(&target).unwrap();
    std::os::unix::fs::symlink(&outside, target.join("sub")).unwrap();
    (outside, target)
}

/// A hostile server: answers every `List` with `entries`, every `Get` with "hello".
async fn serve_listing(stream: tokio::io::DuplexStream, entries: Vec<crate::commands::Entry>) {
    let mut conn = fake_server(stream).await;
    while let Ok(Some(request)) = conn.read::<Request>().await {
        match request {
            Request::List { .. } | Request::ListTree { .. } => {
                let entries = entries.clone();
                conn.write(&Response::Entries { entries }).await.unwrap();
                conn.write(&Response::Ok).await.unwrap();
            }
            Request::Get { .. } => {
                conn.write(&Response::GetReady {
                    size: 5,
                    offset: 0,
                    attributes: None,
                })
                .await
                .unwrap();
                let data = Bytes::from_static(b"hello");
                conn.write(&Response::Data { data }).await.unwrap();
                let checksum = Checksum::of(b"hello");
                conn.write(&Response::GetDone { checksum }).await.unwrap();
            }
            _ => conn.write(&Response::Ok).await.unwrap(),
        }
    }
}

/// Issue 11.4: a server listing `../../.bash_profile` made `ftpc get -r` write it
/// outside the target, and exit 0.
#[tokio::test]
async fn a_tree_download_refuses_names_that_leave_the_target() {
    let home = tempfile::tempdir().unwrap();
    let work = home.path().join("work");
    std::fs::create_dir(&work).unwrap();
    for evil in ["../../.bash_profile", "..", "a/b", "x\0y", ""] {
        let entry = crate::commands::Entry {
            name: evil.to_owned(),
            kind: EntryKind::File,
            size: 5,
            modified: None,
        };
        let mut client = listed(vec![entry]).await;
        let target = work.join("photos");
        let err = client
            .get_tree(
                "docs/photos",
                &target,
                TransferOptions::default(),
                &NoProgress,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::UnsafeName { .. }), "{evil:?}: {err}");
        assert!(err.to_string().contains("unsafe name"), "{err}");
    }
    assert!(!home.path().join(".bash_profile").exists());
    let mut names: Vec<_> = std::fs::read_dir(home.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["work"]);
    assert!(
        std::fs::read_dir(work.join("photos"))
            .unwrap()
            .next()
            .is_none()
    );
}

/// A link planted where a subdirectory of the tree goes is not followed.
#[tokio::test]
async fn a_tree_download_does_not_follow_a_planted_directory_link() {
    let tmp = tempfile::tempdir().unwrap();
    let (outside, target) = planted_link(tmp.path());
    let dir = crate::commands::Entry {
        name: "sub".to_owned(),
        kind: EntryKind::Directory,
        size: 0,
        modified: None,
    };
    let mut client = listed(vec![dir]).await;
    let err = client
        .get_tree("t", &target, TransferOptions::default(), &NoProgress)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("symlink"), "{err}");
    assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
    // Nor when the listing names a file in it without listing the directory first.
    let file = crate::commands::Entry {
        name: "sub/file".to_owned(),
        kind: EntryKind::File,
        size: 5,
        modified: None,
    };
    let mut client = listed(vec![file]).await;
    let err = client
        .get_tree("t", &target, TransferOptions::default(), &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnsafeName { .. }), "{err}");
    assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
}

/// `sync :REMOTE DIR` takes no path from a server that goes through a directory the
/// server did not list first (here a link planted on this side).
#[tokio::test]
async fn a_sync_down_does_not_write_through_an_unlisted_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let (outside, target) = planted_link(tmp.path());
    let file = crate::commands::Entry {
        name: "sub/file".to_owned(),
        kind: EntryKind::File,
        size: 5,
        modified: Some(1),
    };
    let mut client = listed(vec![file]).await;
    let options = crate::client::sync::SyncOptions {
        delete: true,
        ..Default::default()
    };
    let err = client
        .sync_down("t", &target, &options, &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnsafeName { .. }), "{err}");
    assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
    assert!(target.join("sub").exists(), "nothing deleted");
}

/// Issue 27.2: a listing naming `sub` twice (a directory, then a file) and then
/// `sub/canary` made `sync` skip entering `sub` and write through the link planted
/// there. A listing with a name twice is refused, by every command that reads one.
#[tokio::test]
async fn a_listing_with_a_name_twice_is_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let (outside, target) = planted_link(tmp.path());
    let entry = |name: &str, kind| crate::commands::Entry {
        name: name.to_owned(),
        kind,
        size: 5,
        modified: Some(1),
    };
    let hostile = vec![
        entry("sub", EntryKind::Directory),
        entry("sub", EntryKind::File),
        entry("sub/canary", EntryKind::File),
    ];
    let options = crate::client::sync::SyncOptions::default();
    let err = listed(hostile.clone())
        .await
        .sync_down("t", &target, &options, &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DuplicateName { .. }), "{err}");
    assert!(err.to_string().contains("\"sub\" twice"), "{err}");
    let err = listed(hostile.clone())
        .await
        .get_tree("t", &target, TransferOptions::default(), &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DuplicateName { .. }), "{err}");
    let err = listed(hostile).await.list("t").await.unwrap_err();
    assert!(matches!(err, Error::DuplicateName { .. }), "{err}");
    assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
    // The link is still there, untouched.
    assert!(target.join("sub").is_symlink());
}

/// Issue 27.2: every local directory on the way is entered through a handle that never
/// follows a link, and is the one written to even if the path is swapped for a link
/// after it was checked.
#[test]
fn local_directories_are_entered_without_following_links() {
    let tmp = tempfile::tempdir().unwrap();
    let (outside, target) = planted_link(tmp.path());
    // A link on the way, last or in the middle, is refused.
    for below in ["sub", "sub/deeper"] {
        let err = LocalDir::open(&target, &target.join(below)).err().unwrap();
        assert!(err.to_string().contains("symlink"), "{below}: {err}");
    }
    // A real directory, swapped for a link once opened: writes still go to it.
    let real = target.join("real");
    std::fs::create_dir(&real).unwrap();
    let opened = LocalDir::open(&target, &real).unwrap();
    std::fs::rename(&real, target.join("moved")).unwrap();
    std::os::unix::fs::symlink(&outside, &real).unwrap();
    let (part, _) = partial::create(&opened.path, "f").unwrap();
    std::fs::rename(&part, opened.path.join("f")).unwrap();
    assert!(target.join("moved/f").is_file());
    assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
    // Errors name the directory the user knows, not the handle.
    let err = shown_in(Error::local(&opened.path.join("f"), "boom"), &opened, &real);
    assert!(
        err.to_string().contains(&*real.join("f").to_string_lossy()),
        "{err}"
    );
}

/// Issue 11.12: empty `Data` frames every few seconds kept `get` waiting past its reply
/// timeout. Frames without data are no progress.
#[tokio::test]
async fn a_download_that_makes_no_progress_times_out() {
    let (near, far) = tokio::io::duplex(1 << 16);
    tokio::spawn(async move {
        let mut conn = fake_server(far).await;
        let _: Request = conn.expect().await.unwrap();
        conn.write(&Response::GetReady {
            size: 10,
            offset: 0,
            attributes: None,
        })
        .await
        .unwrap();
        // The hostile part: a frame now and then, never any data.
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let data = Bytes::new();
            if conn.write(&Response::Data { data }).await.is_err() {
                return;
            }
        }
    });
    let mut client = Client::handshake(near).await.unwrap();
    client.set_reply_timeout(Duration::from_millis(500));
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let err = client
        .get_file(
            "f",
            &dir.path().join("f"),
            TransferOptions::default(),
            &NoProgress,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(!client.is_in_step());
}

/// Issue 11.12: endless `Entries` frames took `ftpc` to 282 MB.
#[tokio::test]
async fn a_listing_is_capped() {
    let (near, far) = tokio::io::duplex(1 << 20);
    tokio::spawn(async move {
        let mut conn = fake_server(far).await;
        let _: Request = conn.expect().await.unwrap();
        let entry = crate::commands::Entry {
            name: "x".repeat(200),
            kind: EntryKind::File,
            size: 0,
            modified: None,
        };
        let entries = vec![entry; 1024];
        loop {
            let entries = entries.clone();
            if conn.write(&Response::Entries { entries }).await.is_err() {
                return;
            }
        }
    });
    let mut client = Client::handshake(near).await.unwrap();
    let err = client.list("d").await.unwrap_err();
    assert!(
        err.to_string().contains("larger than this client accepts"),
        "{err}"
    );
    assert!(!client.is_in_step());
}

#[tokio::test]
async fn a_download_that_stops_half_way_leaves_the_connection_out_of_step() {
    let chunks = 8;
    let expected = 1000 * chunks as u64;
    let target = tempfile::NamedTempFile::new().unwrap();

    // All frames written: in step.
    let (near, far) = tokio::io::duplex(4 * MAX_CHUNK);
    tokio::spawn(serve_download(far, chunks));
    let mut client = Client::handshake(near).await.unwrap();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(target.path())
        .unwrap();
    let mut sink = FileSink::Streaming(FileWriter::spawn(file, Checksum::new()));
    let progress = &NoProgress;
    let received = client
        .receive_data(&mut sink, expected, target.path(), progress)
        .await;
    assert!(received.is_ok(), "{received:?}");
    assert!(client.is_in_step());

    // A file that cannot be written (as on a full disk): the first chunk fails while
    // the rest are on their way.
    let (near, far) = tokio::io::duplex(4 * MAX_CHUNK);
    tokio::spawn(serve_download(far, chunks));
    let mut client = Client::handshake(near).await.unwrap();
    let read_only = std::fs::File::open(target.path()).unwrap();
    let mut sink = FileSink::Streaming(FileWriter::spawn(read_only, Checksum::new()));
    let received = client
        .receive_data(&mut sink, expected, target.path(), progress)
        .await;
    assert!(matches!(received, Err(Error::Local { .. })), "{received:?}");
    assert!(!client.is_in_step());
}
