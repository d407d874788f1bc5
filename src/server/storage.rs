//! Where users' files live, behind two traits: [`Storage`] opens a user's home and hands back
//! a [`UserTree`], which can only reach what lies beneath that home. The embedded default,
//! [`FsStorage`], is a directory on disk; an object store can implement the same traits.
//!
//! The jail is enforced by directory handles (cap-std `Dir`), not by comparing strings: every
//! path is resolved beneath the home handle, `..` and symlinks included, and anything that
//! would resolve outside it fails. Once restricted, never unrestricted.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use async_trait::async_trait;
use cap_std::ambient_authority;
use cap_std::fs::{Dir, Metadata};

use crate::commands::{Entry, EntryKind, ErrorCode};
use crate::error::StorageError;
use crate::paths::RemotePath;
use crate::username::Username;

/// A place that holds every user's tree.
#[async_trait]
pub trait Storage: Send + Sync {
    /// Opens (creating it on first use) the home of `user`.
    async fn open_home(&self, user: &Username) -> Result<Arc<dyn UserTree>, StorageError>;
}

/// One user's tree; every path is relative to its home and cannot leave it.
#[async_trait]
pub trait UserTree: Send + Sync {
    /// Creates a directory; with `parents`, also its missing parents, and an existing
    /// directory is no error.
    async fn mkdir(&self, path: &RemotePath, parents: bool) -> Result<(), StorageError>;
    /// Lists a directory sorted by name, or describes a single non-directory.
    async fn list(&self, path: &RemotePath) -> Result<Vec<Entry>, StorageError>;
}

/// The embedded default: `ROOT/<user>` directories on the local filesystem.
#[derive(Debug, Clone)]
pub struct FsStorage {
    root: Arc<Dir>,
}

impl FsStorage {
    /// Opens the root directory, creating it (mode 0700) if it does not exist.
    ///
    /// # Errors
    /// I/O errors creating or opening the root.
    pub fn open(root: &Path) -> io::Result<Self> {
        if !root.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(root)?;
        }
        let dir = Dir::open_ambient_dir(root, ambient_authority())?;
        Ok(FsStorage {
            root: Arc::new(dir),
        })
    }
}

use std::os::unix::fs::DirBuilderExt;

/// Runs blocking filesystem work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StorageError::new(ErrorCode::Internal, format!("storage task failed: {e}")))?
}

#[async_trait]
impl Storage for FsStorage {
    async fn open_home(&self, user: &Username) -> Result<Arc<dyn UserTree>, StorageError> {
        let root = Arc::clone(&self.root);
        let name = user.as_str().to_owned();
        let home = blocking(move || {
            match root.create_dir(&name) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e.into()),
                _ => {}
            }
            Ok(root.open_dir(&name)?)
        })
        .await?;
        Ok(Arc::new(FsTree {
            home: Arc::new(home),
        }))
    }
}

/// One user's home on disk, held as a directory handle.
#[derive(Debug)]
struct FsTree {
    home: Arc<Dir>,
}

fn entry(name: String, meta: &Metadata) -> Entry {
    let file_type = meta.file_type();
    let kind = if file_type.is_dir() {
        EntryKind::Directory
    } else if file_type.is_symlink() {
        EntryKind::Symlink
    } else if file_type.is_file() {
        EntryKind::File
    } else {
        EntryKind::Other
    };
    let modified = meta
        .modified()
        .ok()
        .map(|t| t.into_std())
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_secs()).ok());
    Entry {
        name,
        kind,
        size: meta.len(),
        modified,
    }
}

#[async_trait]
impl UserTree for FsTree {
    async fn mkdir(&self, path: &RemotePath, parents: bool) -> Result<(), StorageError> {
        let home = Arc::clone(&self.home);
        let is_home = path.is_home();
        let rel = path.to_relative();
        blocking(move || {
            if parents {
                if let Err(err) = home.create_dir_all(&rel) {
                    // An existing symlink out of the home reports "exists"; say what it is.
                    return Err(match home.metadata(&rel) {
                        Err(meta) if meta.kind() == io::ErrorKind::PermissionDenied => meta.into(),
                        _ => err.into(),
                    });
                }
                // create_dir_all succeeds on an existing directory; make sure it is one.
                if !home.metadata(&rel)?.is_dir() {
                    return Err(StorageError::new(
                        ErrorCode::AlreadyExists,
                        "already exists",
                    ));
                }
                return Ok(());
            }
            if is_home {
                return Err(StorageError::new(
                    ErrorCode::AlreadyExists,
                    "already exists",
                ));
            }
            home.create_dir(&rel).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => StorageError::new(
                    ErrorCode::NotFound,
                    "parent directory does not exist (use -p)",
                ),
                _ => e.into(),
            })
        })
        .await
    }

    async fn list(&self, path: &RemotePath) -> Result<Vec<Entry>, StorageError> {
        let home = Arc::clone(&self.home);
        let rel = path.to_relative();
        let name = path.file_name().unwrap_or(".").to_owned();
        blocking(move || {
            let meta = home.metadata(&rel)?;
            if !meta.is_dir() {
                return Ok(vec![entry(name, &meta)]);
            }
            let mut entries = Vec::new();
            for item in home.read_dir(&rel)? {
                let item = item?;
                let meta = item.metadata()?;
                entries.push(entry(
                    item.file_name().to_string_lossy().into_owned(),
                    &meta,
                ));
            }
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(entries)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let names: Vec<_> = tree.list(&path("")).await.unwrap();
        let names: Vec<_> = names.iter().map(|e| (e.name.as_str(), e.kind)).collect();
        assert_eq!(
            names,
            [("a", EntryKind::Directory), ("x", EntryKind::Directory)]
        );
        assert_eq!(
            tree.list(&path("nope")).await.unwrap_err().code,
            ErrorCode::NotFound
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
            assert!(tree.list(&path(raw)).await.is_err());
        }
        assert!(tree.list(&path("link")).await.is_err());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }
}
