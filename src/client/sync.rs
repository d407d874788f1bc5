//! `ftpc sync` and `ftpc check`: compare a local tree with a remote one and copy only what
//! differs (by size and modification time, or by checksum), optionally deleting what the
//! source no longer has; or just report the differences.
//!
//! Both sides are read whole first: the local tree by an iterative walk (symlinks are not
//! followed), the remote one in one `ListTree` request. Copies go through the same paths as
//! `put -r` and `get -r` (whole small files pipelined, each renamed into place only once
//! complete and checked) and keep modification times, so a sync that was interrupted, run
//! again, copies only what it had not finished, and a sync with nothing changed copies
//! nothing.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use tokio::io::{AsyncRead, AsyncWrite};

use super::Client;
use super::transfer::{Downloads, PendingUpload, Progress, TransferOptions, hash_local_file};
use crate::checksum::Digest;
use crate::commands::{EntryKind, ErrorCode, Request, Response};
use crate::error::{Error, Result};
use crate::paths::MAX_DEPTH;

/// What a sync may do besides copying.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// Remove from the target what the source does not have (`--delete`).
    pub delete: bool,
    /// Say what would be done, do nothing (`--dry-run`).
    pub dry_run: bool,
    /// Compare contents (size, then XXH3-128; the server hashes its copy) instead of size
    /// and modification time (`--checksum`).
    pub checksum: bool,
    /// Entries left out on both sides (`--exclude GLOB`): a pattern without `/` is matched
    /// against each name, one with `/` against the path from the tree's top.
    pub exclude: Vec<glob::Pattern>,
    /// Follow local symlinks to files and directories, sending what they point to
    /// (`-L`/`--copy-links`, as rsync's); without it they are left out and counted.
    pub follow_links: bool,
    /// Keep symlinks as links on the other side (`-l`/`--links`, as rsync's), those that
    /// point inside the tree (rsync's `--safe-links`); the others are left out and said.
    pub keep_links: bool,
}

/// What a sync did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Files copied, and their bytes.
    pub sent: u64,
    pub bytes: u64,
    /// Files already the same on both sides.
    pub unchanged: u64,
    /// Entries removed from the target (a directory counts once).
    pub deleted: u64,
    /// Directories made on the target.
    pub made: u64,
    /// What was done, a line each: `send PATH`, `delete PATH`, `mkdir PATH`.
    pub actions: Vec<String>,
    /// Entries left out (special files, names that are not UTF-8, broken links, loops),
    /// with why.
    pub skipped: Vec<String>,
    /// Local symlinks left out (without `follow_links`): counted, not listed, as they are
    /// the same on every run.
    pub links: u64,
    /// Symlinks made on the target (`keep_links`).
    pub linked: u64,
}

/// What `check` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Files on both sides with the same size and checksum.
    pub same: u64,
    /// Paths that differ: size, checksum, or a file on one side and a directory on the other.
    pub differ: Vec<String>,
    /// Paths only on the local side...
    pub only_local: Vec<String>,
    /// ...and only on the remote one.
    pub only_remote: Vec<String>,
}

impl CheckReport {
    /// Whether the two trees hold the same.
    pub fn is_same(&self) -> bool {
        self.differ.is_empty() && self.only_local.is_empty() && self.only_remote.is_empty()
    }
}

/// One entry of a tree, by its path from the tree's top.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SyncEntry {
    is_dir: bool,
    size: u64,
    modified: Option<i64>,
    /// A symlink's target (only with `keep_links`).
    link: Option<String>,
}

impl SyncEntry {
    /// A symlink to `target`.
    fn link(target: String) -> Self {
        SyncEntry {
            is_dir: false,
            size: 0,
            modified: None,
            link: Some(target),
        }
    }

    /// Whether `other` is the same kind of entry (a link to the same place counts as the
    /// same kind; to another place, as another).
    fn same_kind(&self, other: &SyncEntry) -> bool {
        self.is_dir == other.is_dir && self.link == other.link
    }
}

/// Why a link at `path` (from the tree's top) to `target` is not kept, if it is not: it
/// must lead somewhere inside the tree, as rsync's `--safe-links` asks.
fn unsafe_link(path: &str, target: &str) -> Option<&'static str> {
    let inside =
        crate::paths::RemotePath::parse(path).is_ok_and(|at| at.check_link_target(target).is_ok());
    (!inside).then_some("a link out of the tree (left out, as rsync's --safe-links does)")
}

type Tree = BTreeMap<String, SyncEntry>;

impl SyncOptions {
    fn excludes(&self, path: &str) -> bool {
        let name = path.rsplit('/').next().unwrap_or(path);
        self.exclude.iter().any(|pattern| {
            if pattern.as_str().contains('/') {
                pattern.matches(path)
            } else {
                pattern.matches(name)
            }
        })
    }
}

/// What must go from `target` so that `source` can take its place: what the source has as
/// another kind, and (with `delete`) what it does not have; a directory once, with what it
/// holds. Each path, and whether it is a directory.
fn deletions(source: &Tree, target: &Tree, delete: bool) -> Vec<(String, bool)> {
    let mut gone: Vec<String> = Vec::new();
    let mut doomed = Vec::new();
    for (path, item) in target {
        if beneath_any(path, &gone) {
            continue;
        }
        let replaced = source.get(path).is_some_and(|s| !s.same_kind(item));
        if !(replaced || delete && !source.contains_key(path)) {
            continue;
        }
        if item.is_dir {
            gone.push(path.clone());
        }
        doomed.push((path.clone(), item.is_dir));
    }
    doomed
}

/// How both directions copy: over what is there, times and permission bits kept.
const MIRRORED: TransferOptions = TransferOptions {
    overwrite: true,
    resume: false,
    follow_links: false,
    preserve: true,
};

/// Whether `path` lies beneath one of the directories in `gone`.
fn beneath_any(path: &str, gone: &[String]) -> bool {
    gone.iter().any(|dir| {
        path.len() > dir.len()
            && path.starts_with(dir.as_str())
            && path.as_bytes()[dir.len()] == b'/'
    })
}

/// Reads the local tree at `root` without following symlinks (reported as skipped), at most
/// [`MAX_DEPTH`] levels down; excluded entries (and what they hold) left out. A missing root
/// is an empty tree as a target (`missing_is_empty`), an error as a source, as for
/// [`Client::scan_remote`].
fn scan_local(
    root: &Path,
    options: &SyncOptions,
    missing_is_empty: bool,
    skipped: &mut Vec<String>,
    links: &mut u64,
) -> Result<Tree> {
    use std::os::unix::fs::MetadataExt;
    let mut tree = Tree::new();
    // The directories above each one, by device and inode: a followed link to one of them
    // is a loop (a link to a sibling is only a second way in).
    let mut above = Vec::new();
    match std::fs::symlink_metadata(root) {
        Ok(meta) if meta.is_dir() => above.push((meta.dev(), meta.ino())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && missing_is_empty => {
            return Ok(tree);
        }
        Ok(_) | Err(_) => return Err(Error::local(root, "is not a directory")),
    }
    let mut pending = vec![(root.to_owned(), String::new(), 0usize, above)];
    while let Some((dir, prefix, depth, above)) = pending.pop() {
        let items = std::fs::read_dir(&dir).map_err(|e| Error::local(&dir, e))?;
        for item in items {
            let item = item.map_err(|e| Error::local(&dir, e))?;
            let path = item.path();
            let Some(name) = item.file_name().to_str().map(str::to_owned) else {
                skipped.push(format!("{}: name is not UTF-8", path.display()));
                continue;
            };
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            if options.excludes(&rel) {
                continue;
            }
            let mut meta = std::fs::symlink_metadata(&path).map_err(|e| Error::local(&path, e))?;
            if meta.file_type().is_symlink() {
                if options.keep_links && !options.follow_links {
                    let target = std::fs::read_link(&path).map_err(|e| Error::local(&path, e))?;
                    let Some(target) = target.to_str() else {
                        skipped.push(format!(
                            "{}: a link whose target is not UTF-8",
                            path.display()
                        ));
                        continue;
                    };
                    if let Some(why) = unsafe_link(&rel, target) {
                        skipped.push(format!("{}: {why}", path.display()));
                        continue;
                    }
                    tree.insert(rel, SyncEntry::link(target.to_owned()));
                    continue;
                }
                if !options.follow_links {
                    *links += 1;
                    continue;
                }
                match std::fs::metadata(&path) {
                    Ok(target) => meta = target,
                    Err(e) => {
                        skipped.push(format!("{}: a link to nothing ({e})", path.display()));
                        continue;
                    }
                }
            }
            let modified = Some(meta.mtime());
            let id = (meta.dev(), meta.ino());
            if meta.is_dir() && above.contains(&id) {
                skipped.push(format!("{}: a link in a loop", path.display()));
                continue;
            }
            if meta.is_dir() {
                tree.insert(
                    rel.clone(),
                    SyncEntry {
                        is_dir: true,
                        size: 0,
                        modified,
                        link: None,
                    },
                );
                if depth + 1 < MAX_DEPTH {
                    let mut inner = above.clone();
                    inner.push(id);
                    pending.push((path, rel, depth + 1, inner));
                }
            } else if meta.is_file() {
                tree.insert(
                    rel,
                    SyncEntry {
                        is_dir: false,
                        size: meta.len(),
                        modified,
                        link: None,
                    },
                );
            } else {
                skipped.push(format!(
                    "{}: not a regular file or directory",
                    path.display()
                ));
            }
        }
    }
    Ok(tree)
}

/// The same file on both sides by size and modification time.
fn looks_same(a: &SyncEntry, b: &SyncEntry) -> bool {
    a.size == b.size && a.modified.is_some() && a.modified == b.modified
}

/// Checksum requests in flight at most.
const CHECKSUMS_IN_FLIGHT: usize = 64;

/// Whether the file at `path` must be copied onto `target`: missing or of another kind
/// there, or different by the chosen comparison (`same`: the paths found equal by checksum,
/// with `--checksum`).
fn needs_copy(
    path: &str,
    source: &SyncEntry,
    target: Option<&SyncEntry>,
    options: &SyncOptions,
    same: &HashSet<String>,
) -> bool {
    let Some(target) = target.filter(|t| !t.is_dir && t.link.is_none()) else {
        return true;
    };
    if options.checksum {
        return !same.contains(path);
    }
    !looks_same(source, target)
}

/// The links of `source` that `target` lacks (what it had there of another kind, or a link
/// elsewhere, was deleted first), each also told in `report`.
fn links_to_make(source: &Tree, target: &Tree, report: &mut SyncReport) -> Vec<(String, String)> {
    let mut links = Vec::new();
    for (path, item) in source {
        let Some(to) = &item.link else { continue };
        if target.get(path).is_some_and(|t| t.same_kind(item)) {
            report.unchanged += 1;
            continue;
        }
        report.actions.push(format!("link {path} -> {to}"));
        report.linked += 1;
        links.push((path.clone(), to.clone()));
    }
    links
}

fn join(top: &str, rel: &str) -> String {
    if top.is_empty() || top == "/" {
        rel.to_owned()
    } else {
        format!("{}/{rel}", top.trim_end_matches('/'))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// The remote tree at `remote`, excluded entries left out. One that does not exist is
    /// empty as a target (`missing_is_empty`), an error as a source: a mistyped source
    /// must not make `--delete` empty the target.
    async fn scan_remote(
        &mut self,
        remote: &str,
        options: &SyncOptions,
        missing_is_empty: bool,
        skipped: &mut Vec<String>,
    ) -> Result<Tree> {
        let entries = match self.list_tree(remote).await {
            Ok(entries) => entries,
            Err(Error::Remote {
                code: ErrorCode::NotFound,
                ..
            }) if missing_is_empty => return Ok(Tree::new()),
            Err(err) => return Err(err),
        };
        let mut tree = Tree::new();
        let mut left_out: Vec<String> = Vec::new();
        let mut links = Vec::new();
        for entry in entries {
            if beneath_any(&entry.name, &left_out) {
                continue;
            }
            if options.excludes(&entry.name) {
                left_out.push(entry.name);
                continue;
            }
            let is_dir = match entry.kind {
                EntryKind::Directory => true,
                EntryKind::File => false,
                EntryKind::Symlink if options.keep_links => {
                    links.push(entry.name);
                    continue;
                }
                // Links (without -l) and special files are neither copied nor deleted.
                EntryKind::Symlink | EntryKind::Other => continue,
            };
            tree.insert(
                entry.name,
                SyncEntry {
                    is_dir,
                    size: entry.size,
                    modified: entry.modified,
                    link: None,
                },
            );
        }
        // What each link points to, checked as a peer's word: one out of the tree is left
        // out, whatever the server says.
        for path in links {
            let target = self.read_link(&join(remote, &path)).await?;
            match unsafe_link(&path, &target) {
                Some(why) => skipped.push(format!("{}: {why}", join(remote, &path))),
                None => {
                    tree.insert(path, SyncEntry::link(target));
                }
            }
        }
        Ok(tree)
    }

    /// The files on both sides with the same size whose contents are the same too: the
    /// server's checksums (asked for [`CHECKSUMS_IN_FLIGHT`] at a time) against ours.
    async fn same_by_checksum(
        &mut self,
        local: &Path,
        remote: &str,
        ours: &Tree,
        theirs: &Tree,
    ) -> Result<HashSet<String>> {
        let candidates: Vec<&String> = ours
            .iter()
            .filter(|(path, item)| {
                theirs
                    .get(*path)
                    .is_some_and(|t| !t.is_dir && !item.is_dir && t.size == item.size)
            })
            .map(|(path, _)| path)
            .collect();
        let remote_paths: Vec<String> = candidates.iter().map(|p| join(remote, p)).collect();
        let sums = self.checksums(&remote_paths).await?;
        let mut same = HashSet::new();
        for (path, sum) in candidates.into_iter().zip(sums) {
            // A file the server could not hash (gone meanwhile, say) counts as changed.
            let Ok((size, theirs)) = sum else { continue };
            if hash_local_file(&local.join(path))
                .await?
                .is_some_and(|(ours_size, ours)| ours_size == size && ours == theirs)
            {
                same.insert(path.clone());
            }
        }
        Ok(same)
    }

    /// The server's size and checksum of each of `paths`, several asked for at once
    /// (replies come in order); a refusal for one is its own outcome.
    async fn checksums(&mut self, paths: &[String]) -> Result<Vec<Result<(u64, Digest)>>> {
        // Every path checked before any request goes: no error may leave replies unread.
        for path in paths {
            crate::paths::RemotePath::parse(path)?;
        }
        let mut sums = Vec::with_capacity(paths.len());
        let mut asked = 0;
        for i in 0..paths.len() {
            while asked < paths.len() && asked < i + CHECKSUMS_IN_FLIGHT {
                self.send(&Request::Checksum {
                    path: paths[asked].clone(),
                })
                .await?;
                asked += 1;
            }
            match self.reply().await {
                Ok(Response::Checksum { size, checksum }) => sums.push(Ok((size, checksum))),
                Ok(_) => {
                    self.in_step = false;
                    return Err(Error::UnexpectedReply("expected a checksum"));
                }
                Err(err @ Error::Remote { .. }) => sums.push(Err(err)),
                Err(err) => return Err(err),
            }
        }
        Ok(sums)
    }

    /// Makes the remote tree `remote` hold what the local tree `local` holds: copies new and
    /// changed files (modification times and permission bits kept), makes missing
    /// directories and, with `delete`, removes what `local` does not have.
    ///
    /// # Errors
    /// The first failure; what was copied before it stays (run it again to finish).
    pub async fn sync_up(
        &mut self,
        local: &Path,
        remote: &str,
        options: &SyncOptions,
        progress: &dyn Progress,
    ) -> Result<SyncReport> {
        let mut report = SyncReport::default();
        let ours = scan_local(
            local,
            options,
            false,
            &mut report.skipped,
            &mut report.links,
        )?;
        let theirs = self
            .scan_remote(remote, options, true, &mut report.skipped)
            .await?;
        if !options.dry_run {
            self.mkdir(remote, true).await?;
        }
        // What the source does not have (or has as another kind) goes first.
        for (path, is_dir) in deletions(&ours, &theirs, options.delete) {
            if !options.dry_run {
                self.remove(&join(remote, &path), is_dir).await?;
            }
            report.actions.push(format!("delete {path}"));
            report.deleted += 1;
        }
        let (dirs, uploads) = self
            .plan_upload(local, remote, (&ours, &theirs), options, &mut report)
            .await?;
        let links = links_to_make(&ours, &theirs, &mut report);
        if options.dry_run {
            return Ok(report);
        }
        // The directories (in path order, so each after its parent), then the files.
        for dir in dirs {
            self.mkdir(&dir, true).await?;
        }
        self.send_files(&uploads, MIRRORED, progress).await?;
        for (path, target) in links {
            self.symlink(&join(remote, &path), &target).await?;
        }
        Ok(report)
    }

    /// What `sync_up` must copy from `ours` (the local tree) to `theirs` (the remote one):
    /// the remote directories to make and the files to upload, each also told in `report`.
    async fn plan_upload(
        &mut self,
        local: &Path,
        remote: &str,
        (ours, theirs): (&Tree, &Tree),
        options: &SyncOptions,
        report: &mut SyncReport,
    ) -> Result<(Vec<String>, Vec<PendingUpload>)> {
        let same = if options.checksum {
            self.same_by_checksum(local, remote, ours, theirs).await?
        } else {
            HashSet::new()
        };
        let same = &same;
        let mut dirs = Vec::new();
        let mut uploads = Vec::new();
        for (path, item) in ours {
            if item.link.is_some() {
                continue;
            }
            // (What was deleted above was of another kind, or not in the source at all.)
            let target = theirs.get(path).filter(|t| t.same_kind(item));
            if item.is_dir {
                if target.is_none() {
                    report.actions.push(format!("mkdir {path}"));
                    report.made += 1;
                    dirs.push(join(remote, path));
                }
                continue;
            }
            if !needs_copy(path, item, target, options, same) {
                report.unchanged += 1;
                continue;
            }
            report.actions.push(format!("send {path}"));
            report.sent += 1;
            report.bytes += item.size;
            uploads.push(PendingUpload {
                local: local.join(path),
                remote: join(remote, path),
                size: item.size,
            });
        }
        Ok((dirs, uploads))
    }

    /// Makes the local tree `local` hold what the remote tree `remote` holds: the mirror of
    /// [`Client::sync_up`].
    ///
    /// # Errors
    /// As [`Client::sync_up`].
    pub async fn sync_down(
        &mut self,
        remote: &str,
        local: &Path,
        options: &SyncOptions,
        progress: &dyn Progress,
    ) -> Result<SyncReport> {
        let mut report = SyncReport::default();
        let theirs = self
            .scan_remote(remote, options, false, &mut report.skipped)
            .await?;
        let ours = scan_local(local, options, true, &mut report.skipped, &mut report.links)?;
        if !options.dry_run {
            tokio::fs::create_dir_all(local)
                .await
                .map_err(|e| Error::local(local, e))?;
        }
        for (path, is_dir) in deletions(&theirs, &ours, options.delete) {
            if !options.dry_run {
                let target = local.join(&path);
                let removed = if is_dir {
                    // Never follows a link: it removes the link, not what it points to.
                    tokio::fs::remove_dir_all(&target).await
                } else {
                    tokio::fs::remove_file(&target).await
                };
                removed.map_err(|e| Error::local(&target, e))?;
            }
            report.actions.push(format!("delete {path}"));
            report.deleted += 1;
        }
        let same = if options.checksum {
            self.same_by_checksum(local, remote, &ours, &theirs).await?
        } else {
            HashSet::new()
        };
        let links = links_to_make(&theirs, &ours, &mut report);
        let mut downloads = Downloads::into(local);
        for (path, item) in &theirs {
            if item.link.is_some() {
                continue;
            }
            // (What was deleted above was of another kind, or not in the source at all.)
            let target = ours.get(path).filter(|o| o.same_kind(item));
            let local_path = local.join(path);
            if item.is_dir {
                if target.is_none() {
                    report.actions.push(format!("mkdir {path}"));
                    report.made += 1;
                }
                if !options.dry_run {
                    super::transfer::enter_local_dir(&local_path).await?;
                }
                continue;
            }
            let remote_path = join(remote, path);
            if !needs_copy(path, item, target, options, &same) {
                report.unchanged += 1;
                continue;
            }
            report.actions.push(format!("send {path}"));
            report.sent += 1;
            report.bytes += item.size;
            downloads.add(remote_path, item.size, &local_path);
        }
        if !options.dry_run {
            self.get_all(downloads, MIRRORED, progress).await?;
            for (path, target) in links {
                super::transfer::make_local_link(local, &local.join(&path), &target)?;
            }
        }
        Ok(report)
    }

    /// Compares the local tree `local` with the remote tree `remote` by size and checksum
    /// (the server hashes its files; nothing is downloaded).
    ///
    /// # Errors
    /// Either tree cannot be read; the connection.
    pub async fn check(
        &mut self,
        local: &Path,
        remote: &str,
        exclude: &[glob::Pattern],
    ) -> Result<CheckReport> {
        let options = SyncOptions {
            exclude: exclude.to_vec(),
            ..SyncOptions::default()
        };
        let (mut skipped, mut links) = (Vec::new(), 0);
        let ours = scan_local(local, &options, false, &mut skipped, &mut links)?;
        let theirs = self
            .scan_remote(remote, &options, false, &mut skipped)
            .await?;
        let same = self.same_by_checksum(local, remote, &ours, &theirs).await?;
        let mut report = CheckReport::default();
        for (path, item) in &ours {
            match theirs.get(path) {
                None => report.only_local.push(path.clone()),
                Some(other) if other.is_dir != item.is_dir => report.differ.push(path.clone()),
                Some(_) if item.is_dir => {}
                Some(_) if same.contains(path) => report.same += 1,
                Some(_) => report.differ.push(path.clone()),
            }
        }
        report.only_remote = theirs
            .keys()
            .filter(|path| !ours.contains_key(*path))
            .cloned()
            .collect();
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusions_match_names_or_paths() {
        let options = SyncOptions {
            exclude: vec![
                glob::Pattern::new("*.tmp").unwrap(),
                glob::Pattern::new("build/out").unwrap(),
            ],
            ..SyncOptions::default()
        };
        assert!(options.excludes("a.tmp"));
        assert!(options.excludes("deep/down/b.tmp"));
        assert!(options.excludes("build/out"));
        assert!(!options.excludes("other/build/out"));
        assert!(!options.excludes("a.txt"));
    }

    #[test]
    fn what_goes_from_the_target_goes_once_and_only_with_delete_unless_its_kind_changed() {
        let tree = |entries: &[(&str, bool)]| -> Tree {
            entries
                .iter()
                .map(|(path, is_dir)| {
                    let item = SyncEntry {
                        is_dir: *is_dir,
                        size: 0,
                        modified: None,
                        link: None,
                    };
                    ((*path).to_owned(), item)
                })
                .collect()
        };
        let source = tree(&[("kept", false), ("now_a_file", false), ("now_a_dir", true)]);
        let target = tree(&[
            ("kept", false),
            ("now_a_file", true),
            ("now_a_file/inside", false),
            ("now_a_dir", false),
            ("old", true),
            ("old/a", false),
            ("old/b", true),
            ("old/b/c", false),
        ]);
        let changed = [
            ("now_a_dir".to_owned(), false),
            ("now_a_file".to_owned(), true),
        ];
        let mut without_delete = deletions(&source, &target, false);
        without_delete.sort();
        assert_eq!(without_delete, changed);
        let mut with_delete = deletions(&source, &target, true);
        with_delete.sort();
        let mut expected = changed.to_vec();
        expected.push(("old".to_owned(), true));
        assert_eq!(with_delete, expected);
    }

    #[test]
    fn what_lies_beneath_a_removed_directory_is_known() {
        let gone = vec!["a/b".to_owned()];
        assert!(beneath_any("a/b/c", &gone));
        assert!(!beneath_any("a/b", &gone));
        assert!(!beneath_any("a/bc", &gone));
        assert_eq!(join("", "x/y"), "x/y");
        assert_eq!(join("top/", "x"), "top/x");
    }
}
