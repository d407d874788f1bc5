//! The jail: every path stays inside the user's home, whatever `..`, `/`, NUL or symlinks
//! a client tries, and users cannot see each other's trees.

mod common;

use common::{TestServer, names_in, names_listed};
use ftprep::Error;
use ftprep::commands::{ErrorCode, Request, Response};

#[tokio::test]
async fn escapes_are_refused_and_nothing_is_created_outside() {
    let server = TestServer::start(&[("alice", "pw")]).await;
    let mut alice = server.login("alice", "pw").await;
    let outside = server.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let home = server.root.join("alice");
    std::os::unix::fs::symlink(&outside, home.join("link")).unwrap();
    std::os::unix::fs::symlink("..", home.join("parent")).unwrap();
    let before = names_in(server.dir.path());

    // Refused by the client before sending, and by the server when sent raw.
    for path in ["../escape", "/../x", "a/../../x", "..", "./../../etc"] {
        let err = alice.mkdir(path, true).await.unwrap_err();
        assert!(matches!(err, Error::Path(_)), "{path}: {err}");
        let reply = alice
            .raw_request(&Request::Mkdir {
                path: path.into(),
                parents: true,
            })
            .await;
        assert!(
            matches!(
                reply,
                Err(Error::Remote {
                    code: ErrorCode::InvalidPath,
                    ..
                })
            ),
            "{path}: {reply:?}"
        );
    }
    // Symlinks are followed only while they stay beneath the home.
    for path in [
        "link/x",
        "link",
        "parent/x",
        "parent/bob",
        "parent/alice/link/y",
    ] {
        let err = alice.mkdir(path, true).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::Remote {
                    code: ErrorCode::PermissionDenied,
                    ..
                }
            ),
            "{path}: {err}"
        );
        assert!(alice.list(path).await.is_err(), "{path} listed");
    }
    assert_eq!(names_in(server.dir.path()), before);
    assert!(names_in(&outside).is_empty());
    assert_eq!(names_in(&server.root), ["alice"]);

    // A leading `/` is the home, and `..` inside the home is fine.
    alice.mkdir("/inside/deeper", true).await.unwrap();
    alice
        .mkdir("inside/deeper/../sibling", false)
        .await
        .unwrap();
    assert_eq!(names_in(&home.join("inside")), ["deeper", "sibling"]);
}

#[tokio::test]
async fn nul_and_empty_components_are_refused_by_the_server() {
    let server = TestServer::start(&[("alice", "pw")]).await;
    let mut alice = server.login("alice", "pw").await;
    for path in ["a\0b", "a//b", "//a"] {
        let reply = alice
            .raw_request(&Request::Mkdir {
                path: path.into(),
                parents: true,
            })
            .await;
        assert!(
            matches!(
                reply,
                Err(Error::Remote {
                    code: ErrorCode::InvalidPath,
                    ..
                })
            ),
            "{path:?}: {reply:?}"
        );
    }
    assert!(names_in(&server.root.join("alice")).is_empty());
    // The session is still usable after refusals.
    let reply = alice
        .raw_request(&Request::List { path: "".into() })
        .await
        .unwrap();
    assert!(matches!(reply, Response::Ok), "{reply:?}");
}

#[tokio::test]
async fn users_only_see_their_own_home() {
    let server = TestServer::start(&[("alice", "pw"), ("bob", "pw2")]).await;
    let mut alice = server.login("alice", "pw").await;
    let mut bob = server.login("bob", "pw2").await;
    alice.mkdir("alice-private", false).await.unwrap();
    bob.mkdir("bob-stuff", false).await.unwrap();
    let names = names_listed(&mut bob, "/").await;
    assert_eq!(names, ["bob-stuff"]);
    assert!(bob.list("../alice").await.is_err());
    assert_eq!(names_in(&server.root.join("alice")), ["alice-private"]);
}

#[tokio::test]
async fn mkdir_and_ls_behave_like_their_shell_namesakes() {
    let server = TestServer::start(&[("alice", "pw")]).await;
    let mut alice = server.login("alice", "pw").await;
    alice.mkdir("remote/dir", true).await.unwrap();
    let err = alice.mkdir("remote/dir", false).await.unwrap_err();
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
    assert_eq!(err.to_string(), "already exists");
    alice.mkdir("remote/dir", true).await.unwrap();
    let err = alice.mkdir("missing/child", false).await.unwrap_err();
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
    std::fs::write(server.root.join("alice/remote/file.txt"), b"hello").unwrap();
    let err = alice.mkdir("remote/file.txt/sub", true).await.unwrap_err();
    assert!(matches!(err, Error::Remote { .. }), "{err}");

    let entries = alice.list("remote").await.unwrap();
    let summary: Vec<_> = entries
        .iter()
        .map(|e| (e.name.as_str(), e.kind, e.size))
        .collect();
    assert_eq!(summary[0].0, "dir");
    assert_eq!(
        summary[1],
        ("file.txt", ftprep::commands::EntryKind::File, 5)
    );
    let err = alice.list("nothing-here").await.unwrap_err();
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

    // Listings larger than one frame arrive whole and sorted.
    let big = server.root.join("alice/big");
    std::fs::create_dir(&big).unwrap();
    for i in 0..2500 {
        std::fs::create_dir(big.join(format!("d{i:05}"))).unwrap();
    }
    let entries = alice.list("big").await.unwrap();
    assert_eq!(entries.len(), 2500);
    assert!(entries.windows(2).all(|w| w[0].name < w[1].name));
}
