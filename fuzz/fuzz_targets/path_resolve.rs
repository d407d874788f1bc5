//! Arbitrary remote paths: parsing never panics, and whatever is accepted stays below the
//! home, both as text and when resolved on disk beneath a home with symlinks pointing out.
#![no_main]

use std::path::Component;
use std::sync::OnceLock;

use ftprep::paths::RemotePath;
use ftprep::server::{FsStorage, Storage, UserTree};
use libfuzzer_sys::fuzz_target;

struct Jail {
    runtime: tokio::runtime::Runtime,
    tree: std::sync::Arc<dyn UserTree>,
    outside: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn jail() -> &'static Jail {
    static JAIL: OnceLock<Jail> = OnceLock::new();
    JAIL.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).expect("outside");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let storage = FsStorage::open(&dir.path().join("root")).expect("root");
        let user = ftprep::username::Username::parse("fuzz").expect("name");
        let tree = runtime.block_on(storage.open_home(&user)).expect("home");
        let home = dir.path().join("root/fuzz");
        std::os::unix::fs::symlink(&outside, home.join("out")).expect("link");
        std::os::unix::fs::symlink("..", home.join("up")).expect("link");
        Jail { runtime, tree, outside, _dir: dir }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(path) = RemotePath::parse(text) else {
        return;
    };
    let relative = path.to_relative();
    assert!(
        relative
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir)),
        "{text:?} became {relative:?}"
    );
    let jail = jail();
    let _ = jail.runtime.block_on(jail.tree.mkdir(&path, true));
    let _ = jail.runtime.block_on(jail.tree.stat(&path));
    assert!(
        std::fs::read_dir(&jail.outside).expect("outside").next().is_none(),
        "{text:?} created something outside the home"
    );
});
