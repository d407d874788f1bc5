//! The local partial files of downloads, made so that a directory others can write to
//! cannot turn them against the user: a fresh download creates a new file under a random
//! name (`O_CREAT | O_EXCL | O_NOFOLLOW`, so neither a planted link nor a planted file is
//! ever opened), and a resume takes only a regular file owned by the user with one link.
//!
//! Names: `.ftprep-part-` + 32 hex digits of the target name's SHA-256 + `-` + 16 random
//! hex digits, so a resume finds the partial files of one target and no two downloads share
//! one.

use std::fs::File;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::paths::{PARTIAL_PREFIX, partial_name};

/// The partial files of `target` in `dir` that a resume may take (regular files of ours),
/// largest first.
///
/// # Errors
/// `dir` cannot be read.
pub fn ours(dir: &Path, target: &str) -> io::Result<Vec<PathBuf>> {
    let stem = partial_name(target);
    let mut found = Vec::new();
    for item in std::fs::read_dir(dir)? {
        let item = item?;
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(&stem) else {
            continue;
        };
        if !(rest.is_empty() || rest.starts_with('-')) {
            continue;
        }
        let path = item.path();
        if let Ok(meta) = std::fs::symlink_metadata(&path)
            && is_ours(&meta)
        {
            found.push((meta.len(), path));
        }
    }
    found.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
    Ok(found.into_iter().map(|(_, path)| path).collect())
}

/// Every partial file of ours in `dir`, whatever its target (one read of the directory
/// for a whole tree's worth of downloads into it).
///
/// # Errors
/// `dir` cannot be read.
pub fn all_ours(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for item in std::fs::read_dir(dir)? {
        let item = item?;
        if !item
            .file_name()
            .as_encoded_bytes()
            .starts_with(PARTIAL_PREFIX.as_bytes())
        {
            continue;
        }
        let path = item.path();
        if let Ok(meta) = std::fs::symlink_metadata(&path)
            && is_ours(&meta)
        {
            found.push(path);
        }
    }
    Ok(found)
}

/// Whether `path` is named as a partial file of `target`.
pub fn is_partial_of(path: &Path, target: &str) -> bool {
    let stem = partial_name(target);
    path.file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| name.strip_prefix(&stem))
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
}

/// A regular file, owned by this user, with no other name.
fn is_ours(meta: &std::fs::Metadata) -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    let uid = unsafe { libc::geteuid() };
    meta.file_type().is_file() && meta.uid() == uid && meta.nlink() == 1
}

/// Opens the partial file at `path` for a resume, if it is still one of ours: opened
/// without following a link and without blocking on a FIFO, then checked again on the open
/// file. `None` if it is not.
///
/// # Errors
/// I/O errors other than "not there" or "a link".
pub fn open_ours(path: &Path) -> io::Result<Option<File>> {
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(is_ours(&file.metadata()?).then_some(file))
}

/// Creates a new partial file for `target` in `dir`.
///
/// # Errors
/// The file cannot be created.
pub fn create(dir: &Path, target: &str) -> io::Result<(PathBuf, File)> {
    let stem = partial_name(target);
    loop {
        let path = dir.join(format!("{stem}-{:016x}", rand::random::<u64>()));
        let created = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path);
        match created {
            Ok(file) => return Ok((path, file)),
            // Someone took the name in between: draw another.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 11.7: a link planted at the predictable partial name made `ftpc get` truncate
    /// and overwrite the file it pointed to.
    #[test]
    fn a_planted_link_is_neither_followed_nor_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("bashrc");
        std::fs::write(&victim, b"precious").unwrap();
        let planted = dir.path().join(partial_name("report.pdf"));
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        let planted_new = dir
            .path()
            .join(format!("{}-0000000000000001", partial_name("report.pdf")));
        std::os::unix::fs::symlink(&victim, &planted_new).unwrap();
        assert!(ours(dir.path(), "report.pdf").unwrap().is_empty());
        assert!(open_ours(&planted).unwrap().is_none());
        let (path, mut file) = create(dir.path(), "report.pdf").unwrap();
        assert_ne!(path, planted);
        std::io::Write::write_all(&mut file, b"new").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        // A hard link to another file is refused for resume too.
        let linked = dir
            .path()
            .join(format!("{}-0000000000000002", partial_name("x")));
        std::fs::hard_link(&victim, &linked).unwrap();
        assert!(ours(dir.path(), "x").unwrap().is_empty());
        assert!(open_ours(&linked).unwrap().is_none());
    }

    #[test]
    fn resume_finds_the_largest_of_our_partial_files() {
        let dir = tempfile::tempdir().unwrap();
        let (small, _) = create(dir.path(), "f").unwrap();
        let (large, mut file) = create(dir.path(), "f").unwrap();
        std::io::Write::write_all(&mut file, b"0123").unwrap();
        create(dir.path(), "other").unwrap();
        assert_eq!(ours(dir.path(), "f").unwrap(), [large.clone(), small]);
        assert!(open_ours(&large).unwrap().is_some());
    }
}
