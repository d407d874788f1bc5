//! The users in a file, `users.db`: the embedded default.
//!
//! # Format
//! `users.db` holds one user a line, `name:verifier[ key=value]...`, where the verifier is
//! PostgreSQL's `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` and the optional
//! fields are `quota=<bytes>`, `files=<count>` (most entries: files, directories, links)
//! and, once for each SSH key the user logs in with, `key=<algorithm>:<base64>[:<comment>]`
//! (the comment percent-encoded).
//! Blank lines and lines starting with `#` are comments and are
//! kept as they are when the file is rewritten.
//!
//! Writers take an exclusive lock on `users.db.lock`, read, change, write a temporary file
//! (mode 0600), fsync it and rename it over the old one, so concurrent `ftpd adduser` runs
//! never lose each other's lines and a crash never leaves a half-written file.
//!
//! The server reads through [`UserStore`]; [`FileUserStore`] notices when the file changes and
//! reloads it, keeping its last good table if the new content is corrupt.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{UserAdmin, UserRecord, UserStore};
use crate::auth::Verifier;
use crate::authorized_key::AuthorizedKey;
use crate::error::UserDbError;
use crate::username::Username;

/// A line of `users.db`, kept in order so rewrites preserve comments.
#[derive(Debug, Clone)]
enum Line {
    Text(String),
    User(UserRecord),
}

/// The parsed contents of `users.db`.
#[derive(Debug, Clone, Default)]
pub struct UserFile {
    lines: Vec<Line>,
}

impl UserFile {
    /// Parses the file's text; `path` is only used in error messages.
    ///
    /// # Errors
    /// [`UserDbError::Corrupt`] naming the first bad line.
    pub fn parse(text: &str, path: &Path) -> Result<Self, UserDbError> {
        let mut lines = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (index, raw) in text.lines().enumerate() {
            let corrupt = |reason: String| UserDbError::Corrupt {
                path: path.to_owned(),
                line: index + 1,
                reason,
            };
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                lines.push(Line::Text(raw.to_owned()));
                continue;
            }
            let mut fields = trimmed.split_whitespace();
            let (name, verifier) = fields
                .next()
                .and_then(|f| f.split_once(':'))
                .ok_or_else(|| corrupt("expected name:verifier".into()))?;
            let name = Username::parse(name).map_err(|e| corrupt(e.to_string()))?;
            let verifier: Verifier = verifier.parse().map_err(|e| corrupt(format!("{e}")))?;
            let mut record = UserRecord::new(name, verifier);
            for field in fields {
                match field.split_once('=') {
                    Some(("quota", value)) => {
                        record.quota = Some(
                            crate::size::parse_size(value)
                                .map_err(|e| corrupt(format!("quota: {e}")))?,
                        );
                    }
                    Some(("files", value)) => {
                        record.files =
                            Some(value.parse().map_err(|e| corrupt(format!("files: {e}")))?);
                    }
                    Some(("key", value)) => {
                        let key = AuthorizedKey::from_field(value)
                            .map_err(|e| corrupt(format!("key: {e}")))?;
                        record.add_key(key).map_err(|e| corrupt(e.to_string()))?;
                    }
                    _ => {
                        return Err(corrupt(format!(
                            "unknown field {:?} (known: quota=BYTES, files=COUNT, key=KEY)",
                            crate::sanitize::for_log(field)
                        )));
                    }
                }
            }
            if !seen.insert(record.name.clone()) {
                return Err(corrupt(format!("user {} appears twice", record.name)));
            }
            lines.push(Line::User(record));
        }
        Ok(UserFile { lines })
    }

    /// The users, in file order.
    pub fn users(&self) -> impl Iterator<Item = &UserRecord> {
        self.lines.iter().filter_map(|line| match line {
            Line::User(record) => Some(record),
            Line::Text(_) => None,
        })
    }

    fn find_mut(&mut self, name: &Username) -> Option<&mut UserRecord> {
        self.lines.iter_mut().find_map(|line| match line {
            Line::User(record) if &record.name == name => Some(record),
            _ => None,
        })
    }

    /// Adds a user.
    ///
    /// # Errors
    /// [`UserDbError::UserExists`].
    pub fn add(&mut self, record: UserRecord) -> Result<(), UserDbError> {
        if self.find_mut(&record.name).is_some() {
            return Err(UserDbError::UserExists(record.name.to_string()));
        }
        self.lines.push(Line::User(record));
        Ok(())
    }

    /// Sets or clears a user's quota.
    ///
    /// # Errors
    /// [`UserDbError::NoSuchUser`].
    pub fn set_quota(&mut self, name: &Username, quota: Option<u64>) -> Result<(), UserDbError> {
        let record = self
            .find_mut(name)
            .ok_or_else(|| UserDbError::NoSuchUser(name.to_string()))?;
        record.quota = quota;
        Ok(())
    }

    /// Sets or clears a user's file-count quota.
    ///
    /// # Errors
    /// [`UserDbError::NoSuchUser`].
    pub fn set_file_quota(
        &mut self,
        name: &Username,
        files: Option<u64>,
    ) -> Result<(), UserDbError> {
        let record = self
            .find_mut(name)
            .ok_or_else(|| UserDbError::NoSuchUser(name.to_string()))?;
        record.files = files;
        Ok(())
    }

    /// Replaces a user's verifier.
    ///
    /// # Errors
    /// [`UserDbError::NoSuchUser`].
    pub fn set_verifier(&mut self, name: &Username, verifier: Verifier) -> Result<(), UserDbError> {
        let record = self
            .find_mut(name)
            .ok_or_else(|| UserDbError::NoSuchUser(name.to_string()))?;
        record.verifier = verifier;
        Ok(())
    }

    /// Adds an SSH key to a user's.
    ///
    /// # Errors
    /// [`UserDbError::NoSuchUser`], or as [`UserRecord::add_key`].
    pub fn add_key(&mut self, name: &Username, key: AuthorizedKey) -> Result<(), UserDbError> {
        self.find_mut(name)
            .ok_or_else(|| UserDbError::NoSuchUser(name.to_string()))?
            .add_key(key)
    }

    /// Removes a user's SSH key by its fingerprint.
    ///
    /// # Errors
    /// [`UserDbError::NoSuchUser`], or as [`UserRecord::remove_key`].
    pub fn remove_key(
        &mut self,
        name: &Username,
        fingerprint: &str,
    ) -> Result<AuthorizedKey, UserDbError> {
        self.find_mut(name)
            .ok_or_else(|| UserDbError::NoSuchUser(name.to_string()))?
            .remove_key(fingerprint)
    }

    /// Removes a user.
    ///
    /// # Errors
    /// [`UserDbError::NoSuchUser`].
    pub fn remove(&mut self, name: &Username) -> Result<(), UserDbError> {
        let before = self.lines.len();
        self.lines
            .retain(|line| !matches!(line, Line::User(record) if &record.name == name));
        if self.lines.len() == before {
            return Err(UserDbError::NoSuchUser(name.to_string()));
        }
        Ok(())
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            match line {
                Line::Text(text) => out.push_str(text),
                Line::User(record) => {
                    out.push_str(&format!("{}:{}", record.name, record.verifier));
                    if let Some(quota) = record.quota {
                        out.push_str(&format!(" quota={quota}"));
                    }
                    if let Some(files) = record.files {
                        out.push_str(&format!(" files={files}"));
                    }
                    for key in &record.keys {
                        out.push_str(&format!(" key={}", key.to_field()));
                    }
                }
            }
            out.push('\n');
        }
        out
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> UserDbError + '_ {
    move |source| UserDbError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads and parses `users.db`; a missing file is an empty database.
///
/// # Errors
/// I/O errors, or [`UserDbError::Corrupt`].
pub fn read(path: &Path) -> Result<UserFile, UserDbError> {
    match std::fs::read_to_string(path) {
        Ok(text) => UserFile::parse(&text, path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(UserFile::default()),
        Err(e) => Err(io_error(path)(e)),
    }
}

/// Temporary copies of `users.db` being written start with this.
const TEMP_PREFIX: &str = ".users.db.";

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".lock");
    path.with_file_name(name)
}

/// Applies `change` to `users.db` under an exclusive lock and writes the result atomically
/// (temporary file, fsync, rename, fsync of the directory). The file is created mode 0600.
///
/// # Errors
/// Whatever `change` returns, a corrupt existing file (which is left untouched), or I/O.
pub fn modify(
    path: &Path,
    change: impl FnOnce(&mut UserFile) -> Result<(), UserDbError>,
) -> Result<(), UserDbError> {
    let lock_file = lock_path(path);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_file)
        .map_err(io_error(&lock_file))?;
    lock.lock().map_err(io_error(&lock_file))?;

    let mut file = read(path)?;
    change(&mut file)?;

    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    remove_leftovers(dir);
    // NamedTempFile creates its file with mode 0600.
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
        .map_err(io_error(dir))?;
    tmp.write_all(file.render().as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(io_error(tmp.path()))?;
    tmp.persist(path).map_err(|e| io_error(path)(e.error))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))?;
    drop(lock);
    Ok(())
}

/// Deletes temporary files a writer killed mid-write left behind. Only called under the
/// lock, so no live writer owns any of them.
fn remove_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// [`modify`] for a change to users that must already be there: where there is no file,
/// nothing is created (not even the lock), and the error says where it looked.
fn modify_existing(
    path: &Path,
    change: impl FnOnce(&mut UserFile) -> Result<(), UserDbError>,
) -> Result<(), UserDbError> {
    if !path.exists() {
        return Err(UserDbError::NoFile(absolute(path)));
    }
    modify(path, change)
}

/// `path` from the root, for messages that say where something was looked for.
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Adds a user (`ftpd adduser`).
///
/// # Errors
/// [`UserDbError::UserExists`], a corrupt file, or I/O.
pub fn add_user(path: &Path, record: UserRecord) -> Result<(), UserDbError> {
    modify(path, |file| file.add(record))
}

/// Sets or clears a user's quota (`ftpd quota`).
///
/// # Errors
/// [`UserDbError::NoSuchUser`], a corrupt file, or I/O.
pub fn set_quota(path: &Path, name: &Username, quota: Option<u64>) -> Result<(), UserDbError> {
    modify_existing(path, |file| file.set_quota(name, quota))
}

/// Sets or clears a user's file-count quota (`ftpd quota --files`).
///
/// # Errors
/// [`UserDbError::NoSuchUser`], a corrupt file, or I/O.
pub fn set_file_quota(path: &Path, name: &Username, files: Option<u64>) -> Result<(), UserDbError> {
    modify_existing(path, |file| file.set_file_quota(name, files))
}

/// Replaces a user's verifier (`ftpd passwd`).
///
/// # Errors
/// [`UserDbError::NoSuchUser`], a corrupt file, or I/O.
pub fn set_verifier(path: &Path, name: &Username, verifier: Verifier) -> Result<(), UserDbError> {
    modify_existing(path, |file| file.set_verifier(name, verifier))
}

/// Removes a user (`ftpd deluser`); their files are left alone.
///
/// # Errors
/// [`UserDbError::NoSuchUser`], a corrupt file, or I/O.
pub fn remove_user(path: &Path, name: &Username) -> Result<(), UserDbError> {
    modify_existing(path, |file| file.remove(name))
}

/// `users.db` at this path, as the admin commands change it.
pub struct AdminFile(pub PathBuf);

#[async_trait::async_trait]
impl UserAdmin for AdminFile {
    async fn add(&self, record: UserRecord) -> Result<(), UserDbError> {
        add_user(&self.0, record)
    }

    async fn set_quota(&self, name: &Username, quota: Option<u64>) -> Result<(), UserDbError> {
        set_quota(&self.0, name, quota)
    }

    async fn set_file_quota(&self, name: &Username, files: Option<u64>) -> Result<(), UserDbError> {
        set_file_quota(&self.0, name, files)
    }

    async fn set_verifier(&self, name: &Username, verifier: Verifier) -> Result<(), UserDbError> {
        set_verifier(&self.0, name, verifier)
    }

    async fn remove(&self, name: &Username) -> Result<(), UserDbError> {
        remove_user(&self.0, name)
    }

    async fn users(&self) -> Result<Vec<UserRecord>, UserDbError> {
        Ok(read(&self.0)?.users().cloned().collect())
    }

    async fn add_key(&self, name: &Username, key: AuthorizedKey) -> Result<(), UserDbError> {
        modify_existing(&self.0, |file| file.add_key(name, key))
    }

    async fn remove_key(
        &self,
        name: &Username,
        fingerprint: &str,
    ) -> Result<AuthorizedKey, UserDbError> {
        let mut removed = None;
        modify_existing(&self.0, |file| {
            removed = Some(file.remove_key(name, fingerprint)?);
            Ok(())
        })?;
        removed.ok_or_else(|| UserDbError::NoSuchUser(name.to_string()))
    }
}

/// Identifies one version of the file cheaply: a rename gives a new inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

fn stamp(path: &Path) -> io::Result<Option<Stamp>> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(Stamp {
            inode: m.ino(),
            len: m.len(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
        })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[derive(Debug, Default)]
struct Loaded {
    table: HashMap<Username, UserRecord>,
    /// Each iteration count the verifiers have, with how many: counted once per load, not
    /// on every login of an unknown name.
    counts: Vec<(u32, u64)>,
    stamp: Option<Stamp>,
}

impl Loaded {
    /// The lookup table and the iteration counts of `file`.
    fn of(file: &UserFile, stamp: Option<Stamp>) -> Self {
        let table: HashMap<Username, UserRecord> =
            file.users().map(|r| (r.name.clone(), r.clone())).collect();
        let mut counts = std::collections::BTreeMap::<u32, u64>::new();
        for record in table.values() {
            *counts.entry(record.verifier.iterations).or_default() += 1;
        }
        Loaded {
            table,
            counts: counts.into_iter().collect(),
            stamp,
        }
    }
}

/// The embedded user store: `users.db`, re-read whenever it changes on disk.
#[derive(Debug, Clone)]
pub struct FileUserStore {
    path: PathBuf,
    loaded: Arc<Mutex<Loaded>>,
}

impl FileUserStore {
    /// Loads `users.db` strictly: a corrupt line is an error, so the server refuses to start.
    ///
    /// # Errors
    /// I/O errors or [`UserDbError::Corrupt`].
    pub fn open(path: &Path) -> Result<Self, UserDbError> {
        let stamp = stamp(path).map_err(io_error(path))?;
        let loaded = Loaded::of(&read(path)?, stamp);
        Ok(FileUserStore {
            path: path.to_owned(),
            loaded: Arc::new(Mutex::new(loaded)),
        })
    }

    /// How many users are loaded.
    pub fn len(&self) -> usize {
        self.loaded.lock().map(|l| l.table.len()).unwrap_or(0)
    }

    /// True if no user is loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Re-reads the file if it changed since the last look. A corrupt file is logged and the
    /// last good table kept (its stamp is remembered, so the error is logged once).
    fn refresh(&self) {
        let Ok(mut loaded) = self.loaded.lock() else {
            return;
        };
        let current = match stamp(&self.path) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "cannot stat users.db");
                return;
            }
        };
        if current == loaded.stamp {
            return;
        }
        loaded.stamp = current;
        match read(&self.path) {
            Ok(file) => {
                *loaded = Loaded::of(&file, current);
                tracing::info!(users = loaded.table.len(), "reloaded users.db");
            }
            Err(e) => {
                tracing::error!(error = %e, "users.db changed but cannot be used; keeping the last good table");
            }
        }
    }
}

#[async_trait]
impl UserStore for FileUserStore {
    async fn user(&self, name: &Username) -> Result<Option<UserRecord>, UserDbError> {
        // The common case, an unchanged file, costs one stat here and no thread hop; only
        // a changed file is re-read, on the blocking pool.
        if let Ok(current) = stamp(&self.path)
            && let Ok(loaded) = self.loaded.lock()
            && loaded.stamp == current
        {
            return Ok(loaded.table.get(name).cloned());
        }
        let store = self.clone();
        let name = name.clone();
        tokio::task::spawn_blocking(move || {
            store.refresh();
            store
                .loaded
                .lock()
                .map(|l| l.table.get(&name).cloned())
                .unwrap_or(None)
        })
        .await
        .map_err(|e| UserDbError::Io {
            path: self.path.clone(),
            source: io::Error::other(e),
        })
    }

    async fn iteration_counts(&self) -> Result<Vec<(u32, u64)>, UserDbError> {
        let loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        Ok(loaded.counts.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn record(name: &str) -> UserRecord {
        UserRecord::new(
            Username::parse(name).unwrap(),
            Verifier::from_password("pw", b"salt", 4096),
        )
    }

    #[test]
    fn parse_keeps_comments_and_names_bad_lines() {
        let v = Verifier::from_password("pw", b"salt", 4096);
        let text = format!("# users\n\nalice:{v}\nbob:{v} quota=1073741824\n");
        let file = UserFile::parse(&text, Path::new("users.db")).unwrap();
        assert_eq!(file.users().count(), 2);
        assert_eq!(file.users().nth(1).unwrap().quota, Some(1 << 30));
        assert_eq!(file.render(), text);
        let short = UserFile::parse(&format!("carol:{v} quota=10G\n"), Path::new("u")).unwrap();
        assert_eq!(short.users().next().unwrap().quota, Some(10 << 30));
        let files = UserFile::parse(&format!("dave:{v} files=1000\n"), Path::new("u")).unwrap();
        assert_eq!(files.users().next().unwrap().files, Some(1000));
        assert!(files.render().ends_with(" files=1000\n"));
        assert!(UserFile::parse(&format!("dave:{v} files=many\n"), Path::new("u")).is_err());
        for (bad, line) in [
            (format!("# x\nalice:{v}\nbob\n"), 3),
            (format!("Alice:{v}\n"), 1),
            ("carol:SCRAM-SHA-256$4096:xx\n".to_owned(), 1),
            (format!("alice:{v}\nalice:{v}\n"), 2),
            (format!("alice:{v} quota=lots\n"), 1),
            (format!("alice:{v} colour=blue\n"), 1),
        ] {
            match UserFile::parse(&bad, Path::new("users.db")) {
                Err(UserDbError::Corrupt { line: l, .. }) => assert_eq!(l, line, "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        let err = UserFile::parse("bob\n", Path::new("/etc/users.db")).unwrap_err();
        assert!(err.to_string().starts_with("/etc/users.db:1: "), "{err}");
    }

    #[test]
    fn modify_is_atomic_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.db");
        modify(&path, |f| f.add(record("alice"))).unwrap();
        modify(&path, |f| f.add(record("bob"))).unwrap();
        assert!(matches!(
            modify(&path, |f| f.add(record("bob"))),
            Err(UserDbError::UserExists(_))
        ));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<_> = read(&path)
            .unwrap()
            .users()
            .map(|u| u.name.to_string())
            .collect();
        assert_eq!(names, ["alice", "bob"]);
        modify(&path, |f| f.remove(&Username::parse("alice").unwrap())).unwrap();
        assert_eq!(read(&path).unwrap().users().count(), 1);
        // A corrupt file is never rewritten.
        std::fs::write(&path, "garbage\n").unwrap();
        assert!(modify(&path, |f| f.add(record("carol"))).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "garbage\n");
        // A temporary file left by a writer killed mid-write is cleaned up by the next one.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(dir.path().join(".users.db.crashed"), "half a fi").unwrap();
        modify(&path, |f| f.add(record("carol"))).unwrap();
        // No temporary files are left behind.
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(".users.db."))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[tokio::test]
    async fn store_reloads_and_keeps_last_good_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.db");
        modify(&path, |f| f.add(record("alice"))).unwrap();
        let store = FileUserStore::open(&path).unwrap();
        let alice = Username::parse("alice").unwrap();
        let bob = Username::parse("bob").unwrap();
        assert!(store.user(&alice).await.unwrap().is_some());
        assert!(store.user(&bob).await.unwrap().is_none());
        assert_eq!(store.iteration_counts().await.unwrap(), [(4096, 1)]);
        modify(&path, |f| f.add(record("bob"))).unwrap();
        assert!(store.user(&bob).await.unwrap().is_some());
        // The counts follow the file as it is reloaded.
        assert_eq!(store.iteration_counts().await.unwrap(), [(4096, 2)]);
        std::fs::write(&path, "not a user line at all\n").unwrap();
        assert!(store.user(&bob).await.unwrap().is_some());
        assert_eq!(store.iteration_counts().await.unwrap(), [(4096, 2)]);
        assert!(FileUserStore::open(&path).is_err());
    }
}
