//! Walks over a user's tree without recursion: one directory handle per level, at most
//! [`MAX_DEPTH`] levels held at once, so neither the stack nor the descriptors a walk takes
//! depend on what a user built. Trees deeper than that can only come from outside the server
//! (paths and renames are bounded); [`measure`] stops at the bound and says so, and
//! [`remove_tree`] moves what lies deeper up to the home and removes it from there.

use std::ffi::{OsStr, OsString};
use std::io;

use cap_std::fs::Dir;

use crate::paths::{MAX_DEPTH, PARTIAL_PREFIX};

/// What a directory costs against a quota, whatever the filesystem reports for it (most
/// give a directory one 4 KiB block; 20,000 empty directories are not free).
pub const DIRECTORY_BYTES: u64 = 4096;

/// What a tree holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of files (partial uploads included) plus [`DIRECTORY_BYTES`] per directory.
    pub bytes: u64,
    /// Entries of every kind: files, directories, symlinks.
    pub entries: u64,
}

impl Usage {
    /// One entry of this type and length.
    pub fn entry(is_dir: bool, len: u64) -> Usage {
        Usage {
            bytes: if is_dir { DIRECTORY_BYTES } else { len },
            entries: 1,
        }
    }

    /// Both together.
    #[must_use]
    pub fn plus(mut self, other: Usage) -> Usage {
        self.add(other);
        self
    }

    fn add(&mut self, other: Usage) {
        self.bytes = self.bytes.saturating_add(other.bytes);
        self.entries = self.entries.saturating_add(other.entries);
    }
}

/// What [`measure`] found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Measured {
    /// Everything beneath the root (not the root itself).
    pub totals: Usage,
    /// Level of the deepest entry (1 for the root's own entries; 0 for an empty root).
    pub deepest: usize,
    /// Directories at the level limit whose contents were not visited.
    pub unvisited: u64,
}

/// Opens the subdirectory `name` of `dir`, read from its listing; `None` if it was removed
/// or replaced by something else since.
fn open_listed(dir: &Dir, name: &OsStr) -> io::Result<Option<Dir>> {
    match dir.open_dir(name) {
        Ok(opened) => Ok(Some(opened)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Ok(None),
        Err(e) => Err(e),
    }
}

/// One directory being walked: its handle and the subdirectories still to visit.
struct Level {
    dir: Dir,
    subdirs: Vec<OsString>,
}

/// Reads `dir` once: adds its non-directories to `totals`, returns its subdirectories.
fn read_level(dir: &Dir, totals: &mut Usage) -> io::Result<Vec<OsString>> {
    let mut subdirs = Vec::new();
    for item in dir.entries()? {
        let item = item?;
        let is_dir = item.file_type()?.is_dir();
        if is_dir {
            totals.add(Usage::entry(true, 0));
            subdirs.push(item.file_name());
            continue;
        }
        match item.metadata() {
            Ok(meta) => totals.add(Usage::entry(false, meta.len())),
            // Removed between reading the directory and looking at the entry.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(subdirs)
}

/// Sizes and depth of everything beneath `root`, visiting at most `max_levels` levels (the
/// root's own entries are level 1). Directories at the last level are counted but not
/// entered. With `stop_at_limit`, the walk ends at the first such directory (for "would
/// this fit" questions, where one is enough to say no).
pub fn measure(root: &Dir, max_levels: usize, stop_at_limit: bool) -> io::Result<Measured> {
    let mut found = Measured::default();
    if max_levels == 0 {
        return Ok(found);
    }
    let first = read_level(root, &mut found.totals)?;
    found.deepest = usize::from(found.totals.entries > 0);
    let mut levels = vec![Level {
        dir: root.try_clone()?,
        subdirs: first,
    }];
    loop {
        // The next subdirectory sits at level `depth`; its entries one below.
        let depth = levels.len();
        let Some(level) = levels.last_mut() else {
            break;
        };
        let Some(name) = level.subdirs.pop() else {
            levels.pop();
            continue;
        };
        if depth >= max_levels {
            found.unvisited += 1;
            if stop_at_limit {
                break;
            }
            continue;
        }
        let Some(dir) = open_listed(&level.dir, &name)? else {
            continue;
        };
        let before = found.totals.entries;
        let subdirs = read_level(&dir, &mut found.totals)?;
        if found.totals.entries > before {
            found.deepest = found.deepest.max(depth + 1);
        }
        levels.push(Level { dir, subdirs });
    }
    Ok(found)
}

/// Visits everything beneath `root`, each directory before what it holds, with at most
/// [`MAX_DEPTH`] directory handles held: `visit` gets each entry's path relative to `root`
/// (`/` between names) and its metadata (a symlink's own, never its target's), and ends the
/// walk by returning false. Partial uploads are left out; directories [`MAX_DEPTH`] levels
/// down are listed but not entered.
pub fn each_entry(
    root: &Dir,
    mut visit: impl FnMut(String, cap_std::fs::Metadata) -> bool,
) -> io::Result<()> {
    let Some(first) = read_named(root, "", &mut visit)? else {
        return Ok(());
    };
    let mut levels = vec![(root.try_clone()?, first)];
    loop {
        let depth = levels.len();
        let Some((dir, subdirs)) = levels.last_mut() else {
            return Ok(());
        };
        let Some((name, path)) = subdirs.pop() else {
            levels.pop();
            continue;
        };
        if depth >= MAX_DEPTH {
            continue;
        }
        let Some(child) = open_listed(dir, &name)? else {
            continue;
        };
        let Some(subdirs) = read_named(&child, &path, &mut visit)? else {
            return Ok(());
        };
        levels.push((child, subdirs));
    }
}

/// Subdirectories still to enter: name, and path from the walk's root.
type Subdirs = Vec<(OsString, String)>;

/// Reads `dir` (at `prefix` from the walk's root) once, visiting each entry; its
/// subdirectories, or `None` once `visit` asked to stop.
fn read_named(
    dir: &Dir,
    prefix: &str,
    visit: &mut impl FnMut(String, cap_std::fs::Metadata) -> bool,
) -> io::Result<Option<Subdirs>> {
    let mut subdirs = Vec::new();
    for item in dir.entries()? {
        let item = item?;
        let name = item.file_name();
        let shown = name.to_string_lossy();
        if shown.starts_with(PARTIAL_PREFIX) {
            continue;
        }
        let meta = match item.metadata() {
            Ok(meta) => meta,
            // Removed between reading the directory and looking at the entry.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let path = if prefix.is_empty() {
            shown.into_owned()
        } else {
            format!("{prefix}/{shown}")
        };
        let is_dir = meta.is_dir();
        if !visit(path.clone(), meta) {
            return Ok(None);
        }
        if is_dir {
            subdirs.push((name, path));
        }
    }
    Ok(Some(subdirs))
}

/// Removes the directory `name` in `parent` and everything beneath it, adding what goes to
/// `removed` (also when it fails half way). Holds at most [`MAX_DEPTH`] directory handles: a directory deeper than that is
/// first moved up into `home` under a hidden name and removed from there, so a tree of any
/// depth goes.
pub fn remove_tree(parent: &Dir, name: &str, home: &Dir, removed: &mut Usage) -> io::Result<()> {
    let mut roots = vec![(parent.try_clone()?, OsString::from(name))];
    while let Some((root_parent, root_name)) = roots.pop() {
        let root = root_parent.open_dir(&root_name)?;
        let subdirs = read_and_remove_files(&root, removed)?;
        let mut levels = vec![(root_name, Level { dir: root, subdirs })];
        loop {
            let depth = levels.len();
            let Some((_, level)) = levels.last_mut() else {
                break;
            };
            let Some(sub) = level.subdirs.pop() else {
                let Some((done, level)) = levels.pop() else {
                    break;
                };
                drop(level);
                let above = levels.last().map_or(&root_parent, |(_, l)| &l.dir);
                above.remove_dir(&done)?;
                removed.add(Usage::entry(true, 0));
                continue;
            };
            if depth >= MAX_DEPTH {
                let hidden = format!("{PARTIAL_PREFIX}rm-{:016x}", rand::random::<u64>());
                level.dir.rename(&sub, home, &hidden)?;
                roots.push((home.try_clone()?, OsString::from(hidden)));
                continue;
            }
            let dir = match level.dir.open_dir(&sub) {
                Ok(dir) => dir,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let subdirs = read_and_remove_files(&dir, removed)?;
            levels.push((sub, Level { dir, subdirs }));
        }
    }
    Ok(())
}

/// Removes the non-directories in `dir`, adding them to `removed`; returns its subdirectories.
fn read_and_remove_files(dir: &Dir, removed: &mut Usage) -> io::Result<Vec<OsString>> {
    let mut subdirs = Vec::new();
    for item in dir.entries()? {
        let item = item?;
        if item.file_type()?.is_dir() {
            subdirs.push(item.file_name());
            continue;
        }
        let len = item.metadata().map(|m| m.len()).unwrap_or(0);
        match item.remove_file() {
            Ok(()) => removed.add(Usage::entry(false, len)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(subdirs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cap_std::ambient_authority;

    fn open(path: &std::path::Path) -> Dir {
        Dir::open_ambient_dir(path, ambient_authority()).unwrap()
    }

    /// A chain of `levels` directories named `d`, with a 3-byte file at the bottom.
    fn chain(base: &std::path::Path, levels: usize) -> std::path::PathBuf {
        let mut path = base.to_owned();
        for _ in 0..levels {
            path.push("d");
        }
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("f"), b"abc").unwrap();
        path
    }

    #[test]
    fn measure_counts_files_directories_and_depth() {
        let tmp = tempfile::tempdir().unwrap();
        chain(tmp.path(), 3);
        std::fs::write(tmp.path().join("top"), b"12345").unwrap();
        std::os::unix::fs::symlink("top", tmp.path().join("link")).unwrap();
        let found = measure(&open(tmp.path()), MAX_DEPTH, false).unwrap();
        assert_eq!(found.totals.entries, 6);
        assert_eq!(found.totals.bytes, 3 * DIRECTORY_BYTES + 3 + 5 + 3);
        assert_eq!(found.deepest, 4);
        assert_eq!(found.unvisited, 0);
        // Limited to two levels: d/d is counted, not entered.
        let shallow = measure(&open(tmp.path()), 2, false).unwrap();
        assert_eq!(shallow.deepest, 2);
        assert_eq!(shallow.unvisited, 1);
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(measure(&open(empty.path()), 5, false).unwrap().deepest, 0);
    }

    /// The attack from the report: a tree far deeper than any walk may hold handles for,
    /// built outside the server. Measuring stops at the bound; removing takes all of it.
    #[test]
    fn a_tree_deeper_than_the_bound_is_measured_safely_and_removed_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        std::fs::create_dir(&home).unwrap();
        // Built level by level through a handle: the path would pass PATH_MAX.
        let levels = MAX_DEPTH * 3 + 7;
        let mut dir = open(&home);
        dir.create_dir("top").unwrap();
        dir = dir.open_dir("top").unwrap();
        for _ in 0..levels {
            dir.create_dir("d").unwrap();
            dir = dir.open_dir("d").unwrap();
        }
        dir.write("f", b"abc").unwrap();
        drop(dir);
        let home_dir = open(&home);
        let found = measure(&home_dir, MAX_DEPTH, false).unwrap();
        assert_eq!(found.deepest, MAX_DEPTH);
        assert_eq!(found.unvisited, 1);
        let mut removed = Usage::default();
        remove_tree(&home_dir, "top", &home_dir, &mut removed).unwrap();
        assert_eq!(removed.entries, levels as u64 + 2);
        assert_eq!(removed.bytes, (levels as u64 + 1) * DIRECTORY_BYTES + 3);
        assert_eq!(std::fs::read_dir(&home).unwrap().count(), 0, "nothing left");
    }

    #[test]
    fn remove_tree_takes_a_wide_tree() {
        let tmp = tempfile::tempdir().unwrap();
        for i in 0..50 {
            chain(&tmp.path().join("t").join(i.to_string()), 2);
        }
        let dir = open(tmp.path());
        let mut removed = Usage::default();
        remove_tree(&dir, "t", &dir, &mut removed).unwrap();
        assert_eq!(removed.entries, 1 + 50 * 4);
        assert!(!tmp.path().join("t").exists());
    }
}
