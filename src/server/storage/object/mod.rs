//! Users' files in an S3-compatible object store (`--root s3://bucket/prefix`), through
//! the `object_store` crate: the same [`Storage`](super::Storage)/[`UserTree`] the clients
//! see on disk.
//!
//! Layout: a user's file `a/b.txt` is the object `PREFIX/USER/a/b.txt`; each part of the
//! key comes from one checked path component, percent-encoded by `object_store`, so no key
//! can leave `PREFIX/USER/` however the path was written. A directory made by `mkdir` is a
//! zero-byte marker `DIR/.ftprep-dir`; a prefix that holds objects without a marker (put
//! there by other tools) is a directory too. Names starting with `.ftprep-` are reserved
//! and never listed.
//!
//! - `keys`: from user paths to object keys and back.
//! - `listing`: one directory or a whole tree, a page at a time.
//! - `scan`: a user's tree as a stream of entries, a page of keys at a time.
//! - `upload`: multipart uploads, verified before they become visible, resumable on any
//!   node.
//! - `download`: one streamed GET per download.

mod download;
pub(super) mod keys;
mod listing;
pub mod postgres;
mod scan;
mod upload;
mod usage;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path;
use object_store::{
    ClientOptions, GetOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};

use super::deadline::{Deadlines, METADATA_DEADLINE};
use super::ledger::Ledger;
use super::{
    Announced, Download, Listing, MAX_FILE_SIZE, Upload, Usage, UserTree, refuse_bad_move,
    refuse_home, refuse_reserved, refuse_upload,
};
use crate::checksum::Digest;
use crate::commands::{Entry, EntryKind, ErrorCode};
use crate::error::StorageError;
use crate::paths::{MAX_DEPTH, RemotePath};
use crate::username::Username;
use keys::Keys;
use listing::{DirectoryListing, OneEntry, TreeListing};
use scan::Scan;
use upload::UploadStates;
pub use upload::{HeldChecksums, SharedStates};
use usage::HomeUsage;
pub use usage::{SharedCount, SharedCounts};

/// Where the files live in an object store: `s3://bucket/prefix`, and settings that
/// override the `AWS_*` environment (endpoint, region, keys), as tests and benchmarks use.
#[derive(Clone, PartialEq, Eq)]
pub struct ObjectLocation {
    /// `s3://bucket` or `s3://bucket/prefix`.
    pub url: String,
    /// `object_store` S3 settings (`endpoint`, `region`, `access_key_id`, `allow_http`,
    /// ...) applied over the environment's.
    pub options: Vec<(String, String)>,
}

impl std::fmt::Debug for ObjectLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Options may hold a secret key: name them, never print their values.
        let names: Vec<&str> = self.options.iter().map(|(k, _)| k.as_str()).collect();
        write!(f, "ObjectLocation({}, options: {names:?})", self.url)
    }
}

/// Largest object S3 stores (5 TiB), below [`MAX_FILE_SIZE`].
const MAX_OBJECT_SIZE: u64 = 5 << 40;

/// How long a request is retried before the client is told the store is unavailable.
const STORE_RETRY_TIMEOUT: Duration = Duration::from_secs(10);
const STORE_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a single request (a part of an upload, up to hundreds of MiB for the largest
/// files, or a 16 MiB range of a download) may take. What can be abandoned has a shorter
/// deadline as a whole ([`METADATA_DEADLINE`]).
const STORE_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Most pages of a listing fetched per request: S3 answers at most 1,000 keys at a time.
const KEYS_PER_REQUEST: usize = 1000;

/// HEAD requests in flight at once while a listing reads files' preserved times.
const HEADS_IN_FLIGHT: usize = 32;

/// Every user's tree in one bucket (under one prefix).
pub struct ObjectStorage {
    store: Arc<AmazonS3>,
    /// `s3://bucket/prefix`, naming this store's counts in the database.
    root: String,
    /// Where usage is counted when several nodes share the store.
    shared_usage: Option<Arc<dyn SharedCounts>>,
    /// Where interrupted uploads are described.
    states: Arc<UploadStates>,
    base: Path,
    homes: Mutex<HashMap<Username, Weak<ObjectTree>>>,
    held: Arc<HeldChecksums>,
}

impl std::fmt::Debug for ObjectStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectStorage({})", self.store)
    }
}

impl ObjectStorage {
    /// Connects to the bucket (credentials, region and endpoint from the `AWS_*`
    /// variables, then `location.options`) and checks that it can be listed.
    ///
    /// # Errors
    /// A malformed URL or setting, or a bucket that cannot be reached.
    pub async fn open(location: &ObjectLocation) -> Result<Self, StorageError> {
        let rest = location.url.strip_prefix("s3://").ok_or_else(|| {
            StorageError::new(
                ErrorCode::InvalidPath,
                "an object store root is s3://bucket/prefix",
            )
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(StorageError::new(
                ErrorCode::InvalidPath,
                "an object store root names its bucket: s3://bucket/prefix",
            ));
        }
        // reqwest takes its TLS provider from the process; this server uses ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // Timeouts and retries first: the environment's settings (AWS_ALLOW_HTTP, say)
        // go into the same client options, which a later `with_client_options` would drop.
        let mut builder = AmazonS3Builder::new()
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(STORE_CONNECT_TIMEOUT)
                    .with_timeout(STORE_REQUEST_TIMEOUT),
            )
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: STORE_RETRY_TIMEOUT,
                ..Default::default()
            });
        for (name, value) in std::env::vars() {
            if name.starts_with("AWS_")
                && let Ok(key) = name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>()
            {
                builder = builder.with_config(key, value);
            }
        }
        builder = builder.with_bucket_name(bucket);
        for (key, value) in &location.options {
            let key: AmazonS3ConfigKey = key.parse().map_err(|_| {
                StorageError::new(
                    ErrorCode::InvalidPath,
                    format!("unknown object store setting {key:?}"),
                )
            })?;
            builder = builder.with_config(key, value);
        }
        let store = builder
            .build()
            .map_err(|e| StorageError::new(ErrorCode::InvalidPath, format!("object store: {e}")))?;
        let base = Path::from_iter(prefix.split('/').filter(|p| !p.is_empty()));
        let storage = ObjectStorage {
            store: Arc::new(store),
            root: location.url.clone(),
            shared_usage: None,
            states: Arc::new(UploadStates::Beside),
            base,
            homes: Mutex::default(),
            held: Arc::default(),
        };
        // Fail at start, not at the first login, when the bucket is wrong or unreachable.
        first_keys(&storage.store, &storage.base, 1)
            .await
            .map_err(|e| {
                StorageError::new(
                    ErrorCode::Busy,
                    format!("cannot list the bucket: {}", describe(&e)),
                )
            })?;
        Ok(storage)
    }
}

impl ObjectStorage {
    /// `s3://bucket/prefix`: what names this store's bookkeeping where nodes share it.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Keeps the bookkeeping every node on this store must share where they all see it:
    /// each home's usage count in `counts` (else in this node's memory) and the states of
    /// interrupted uploads in `states` (else hidden objects in the bucket).
    #[must_use]
    pub fn sharing(mut self, counts: Arc<dyn SharedCounts>, states: Arc<dyn SharedStates>) -> Self {
        self.states = Arc::new(UploadStates::Shared(states));
        self.shared_usage = Some(counts);
        self
    }
}

#[async_trait]
impl super::Storage for ObjectStorage {
    async fn open_home(&self, user: &Username) -> Result<Arc<dyn UserTree>, StorageError> {
        // A store that stops answering is told to the client within the deadline.
        let within = |tree: Arc<ObjectTree>| -> Arc<dyn UserTree> {
            Arc::new(Deadlines::new(tree, METADATA_DEADLINE))
        };
        let mut homes = self.homes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tree) = homes.get(user).and_then(Weak::upgrade) {
            return Ok(within(tree));
        }
        homes.retain(|_, weak| weak.strong_count() > 0);
        // Nothing to create: a home is a prefix, there as soon as it holds something.
        let tree = Arc::new(ObjectTree {
            store: Arc::clone(&self.store),
            keys: Keys::new(self.base.clone().join(user.as_str())),
            ledger: Arc::new(match &self.shared_usage {
                Some(counts) => HomeUsage::Shared(counts.of(user)),
                None => HomeUsage::Local(Ledger::default()),
            }),
            held: Arc::clone(&self.held),
            states: Arc::clone(&self.states),
        });
        homes.insert(user.clone(), Arc::downgrade(&tree));
        Ok(within(tree))
    }
}

/// An object store failure the user can do nothing about but wait: logged in full, told
/// briefly.
fn unavailable(err: object_store::Error) -> StorageError {
    match err {
        object_store::Error::NotFound { .. } => not_found(),
        object_store::Error::AlreadyExists { .. } => {
            StorageError::new(ErrorCode::AlreadyExists, "already exists")
        }
        other => {
            tracing::warn!(error = %describe(&other), "object store request failed");
            StorageError::new(
                ErrorCode::Busy,
                "the file store is unavailable; try again later",
            )
        }
    }
}

/// An object store error in a line: escaped (it may quote what the store answered) and
/// bounded, but whole enough to say why (the store's code and message).
fn describe(err: &object_store::Error) -> String {
    err.to_string()
        .chars()
        .take(1000)
        .flat_map(char::escape_debug)
        .collect()
}

/// The first (at most `count`) keys under `dir/`.
async fn first_keys(
    store: &AmazonS3,
    dir: &Path,
    count: usize,
) -> object_store::Result<Vec<object_store::ObjectMeta>> {
    let page = store
        .list_paginated(
            Some(&keys::dir_prefix(dir)),
            PaginatedListOptions {
                max_keys: Some(count),
                ..Default::default()
            },
        )
        .await?;
    Ok(page.result.objects)
}

/// A HEAD of `key` that also reads the attributes kept with it (`put -p`).
async fn head(store: &AmazonS3, key: &Path) -> object_store::Result<object_store::GetResult> {
    store
        .get_opts(
            key,
            GetOptions {
                head: true,
                ..Default::default()
            },
        )
        .await
}

/// A file as a HEAD describes it.
#[derive(Debug, Clone)]
struct FileHead {
    meta: object_store::ObjectMeta,
    attributes: Option<crate::commands::Attributes>,
}

impl FileHead {
    fn of(found: &object_store::GetResult) -> Self {
        FileHead {
            meta: found.meta.clone(),
            attributes: keys::stored_attributes(&found.attributes),
        }
    }

    /// Its entry in a listing: the time `put -p` gave it, else when it was stored.
    fn entry(&self, name: String) -> Entry {
        Entry {
            name,
            kind: EntryKind::File,
            size: self.meta.size,
            modified: Some(
                self.attributes
                    .map_or(self.meta.last_modified.timestamp(), |a| a.modified),
            ),
        }
    }
}

/// Nothing at a path: the answer a missing file gets on disk too.
fn not_found() -> StorageError {
    StorageError::new(ErrorCode::NotFound, "no such file or directory")
}

/// What a key stands for.
#[derive(Debug, Clone)]
enum Found {
    File(FileHead),
    Directory,
}

/// One user's tree: every key under `PREFIX/USER/`.
#[derive(Clone)]
struct ObjectTree {
    store: Arc<AmazonS3>,
    keys: Keys,
    ledger: Arc<HomeUsage>,
    held: Arc<HeldChecksums>,
    states: Arc<UploadStates>,
}

impl ObjectTree {
    /// Where an upload to `path` goes and keeps its state for a resume.
    fn target(&self, path: &RemotePath) -> upload::Target {
        upload::Target {
            store: Arc::clone(&self.store),
            state_key: keys::state_key(
                &self.keys.of(&path.parent()),
                path.file_name().unwrap_or_default(),
            ),
            key: self.keys.of(path),
            ledger: Arc::clone(&self.ledger),
            held: Arc::clone(&self.held),
            states: Arc::clone(&self.states),
        }
    }

    /// What is at `key`: a file, a directory (marker, or a prefix holding something), or
    /// nothing.
    async fn find(&self, key: &Path) -> Result<Option<Found>, StorageError> {
        // The directory test comes first, not beside the HEAD: some stores (s3s-fs keeps
        // objects as files) answer a HEAD of a key that is also a prefix with a server
        // error, which is retried for a second or more, instead of "not found".
        if self.is_directory(key).await? {
            return Ok(Some(Found::Directory));
        }
        match head(&self.store, key).await {
            Ok(found) => Ok(Some(Found::File(FileHead::of(&found)))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Whether `key` is a directory: the home, or a prefix holding something (its
    /// marker counts).
    async fn is_directory(&self, key: &Path) -> Result<bool, StorageError> {
        if *key == *self.keys.home() {
            return Ok(true);
        }
        let held = first_keys(&self.store, key, 1).await.map_err(unavailable)?;
        Ok(!held.is_empty())
    }

    /// Whether `dir/` holds anything a user could see or would lose: any key but its own
    /// marker.
    async fn holds_more_than_marker(&self, dir: &Path) -> Result<bool, StorageError> {
        let held = first_keys(&self.store, dir, 2).await.map_err(unavailable)?;
        let marker = keys::marker(dir);
        Ok(held.iter().any(|o| o.location != marker))
    }

    /// The directory an entry goes into must be there.
    async fn require_directory(&self, dir: &Path) -> Result<(), StorageError> {
        match self.find(dir).await? {
            Some(Found::Directory) => Ok(()),
            Some(Found::File(_)) => Err(StorageError::new(
                ErrorCode::NotADirectory,
                "a parent is not a directory",
            )),
            None => Err(StorageError::new(
                ErrorCode::NotFound,
                "the target directory does not exist",
            )),
        }
    }

    async fn put_marker(&self, dir: &Path) -> Result<(), StorageError> {
        self.store
            .put(&keys::marker(dir), PutPayload::default())
            .await
            .map_err(unavailable)?;
        self.ledger.add(Usage::entry(true, 0)).await;
        Ok(())
    }

    /// A listed file's entry, with the modification time it was given (`put -p`, `sync`)
    /// when there is one: that needs a HEAD, since listings do not carry user metadata.
    async fn file_entry(&self, name: String, meta: &object_store::ObjectMeta) -> Entry {
        match head(&self.store, &meta.location).await {
            Ok(found) => FileHead::of(&found).entry(name),
            // Gone or unreadable since it was listed: as the listing saw it.
            Err(_) => FileHead {
                meta: meta.clone(),
                attributes: None,
            }
            .entry(name),
        }
    }

    /// Deletes every key under `dir/` (and so `dir` itself), counting what went; whatever
    /// went before a failure is counted too.
    async fn remove_all(&self, dir: &Path) -> Result<(), StorageError> {
        let mut scan = Scan::new(Arc::clone(&self.store), dir.clone());
        let mut removed = Usage::default();
        let result = async {
            while let Some(page) = scan.next_page().await? {
                let locations: Vec<Path> = page.keys.into_iter().collect();
                let deleted: Vec<_> = self
                    .store
                    .delete_stream(
                        futures_util::stream::iter(locations.into_iter().map(Ok)).boxed(),
                    )
                    .try_collect()
                    .await
                    .map_err(unavailable)?;
                drop(deleted);
                for entry in page.entries {
                    removed =
                        removed.plus(Usage::entry(entry.kind == EntryKind::Directory, entry.size));
                }
            }
            Ok::<(), StorageError>(())
        }
        .await;
        // The directory itself, as the walk on disk counts it.
        removed = removed.plus(Usage::entry(true, 0));
        self.ledger.remove(removed).await;
        result
    }
}

#[async_trait]
impl UserTree for ObjectTree {
    async fn mkdir(&self, path: &RemotePath, parents: bool) -> Result<(), StorageError> {
        refuse_reserved(path)?;
        if path.is_home() {
            return if parents {
                Ok(())
            } else {
                Err(StorageError::new(
                    ErrorCode::AlreadyExists,
                    "already exists",
                ))
            };
        }
        if !parents {
            self.require_directory(&self.keys.of(&path.parent()))
                .await?;
            return match self.find(&self.keys.of(path)).await? {
                Some(_) => Err(StorageError::new(
                    ErrorCode::AlreadyExists,
                    "already exists",
                )),
                None => self.put_marker(&self.keys.of(path)).await,
            };
        }
        let mut at = RemotePath::default();
        for name in path.components() {
            at = at
                .join(name)
                .map_err(|e| StorageError::new(ErrorCode::InvalidPath, e.to_string()))?;
            let key = self.keys.of(&at);
            match self.find(&key).await? {
                Some(Found::Directory) => {}
                Some(Found::File(_)) => {
                    return Err(StorageError::new(
                        ErrorCode::NotADirectory,
                        "a parent is not a directory",
                    ));
                }
                None => self.put_marker(&key).await?,
            }
        }
        Ok(())
    }

    async fn list(&self, path: &RemotePath) -> Result<Box<dyn Listing>, StorageError> {
        refuse_reserved(path)?;
        let key = self.keys.of(path);
        match self.find(&key).await? {
            None => Err(not_found()),
            Some(Found::File(file)) => {
                let name = path.file_name().unwrap_or_default().to_owned();
                Ok(Box::new(OneEntry(Some(file.entry(name)))))
            }
            Some(Found::Directory) => Ok(Box::new(DirectoryListing {
                tree: Arc::new(self.clone()),
                prefix: keys::dir_prefix(&key),
                token: None,
                done: false,
            })),
        }
    }

    async fn list_tree(&self, path: &RemotePath) -> Result<Box<dyn Listing>, StorageError> {
        refuse_reserved(path)?;
        let key = self.keys.of(path);
        match self.find(&key).await? {
            Some(Found::Directory) => Ok(Box::new(TreeListing {
                tree: Arc::new(self.clone()),
                scan: Scan::new(Arc::clone(&self.store), key),
            })),
            Some(Found::File(_)) => Err(StorageError::new(
                ErrorCode::NotADirectory,
                "not a directory",
            )),
            None => Err(not_found()),
        }
    }

    async fn stat(&self, path: &RemotePath) -> Result<Entry, StorageError> {
        refuse_reserved(path)?;
        let name = path.file_name().unwrap_or_default().to_owned();
        match self.find(&self.keys.of(path)).await? {
            Some(Found::File(file)) => Ok(file.entry(name)),
            Some(Found::Directory) => Ok(Entry {
                name,
                kind: EntryKind::Directory,
                size: 0,
                modified: None,
            }),
            None => Err(not_found()),
        }
    }

    async fn remove(&self, path: &RemotePath, recursive: bool) -> Result<(), StorageError> {
        refuse_home(path)?;
        refuse_reserved(path)?;
        let key = self.keys.of(path);
        match self.find(&key).await? {
            None => Err(not_found()),
            Some(Found::File(file)) => {
                self.store.delete(&key).await.map_err(unavailable)?;
                self.ledger
                    .remove(Usage::entry(false, file.meta.size))
                    .await;
                Ok(())
            }
            Some(Found::Directory) if !recursive => Err(StorageError::new(
                ErrorCode::IsADirectory,
                "is a directory (use rmdir, or rm -r)",
            )),
            Some(Found::Directory) => self.remove_all(&key).await,
        }
    }

    async fn rmdir(&self, path: &RemotePath) -> Result<(), StorageError> {
        refuse_home(path)?;
        refuse_reserved(path)?;
        let key = self.keys.of(path);
        match self.find(&key).await? {
            None => Err(not_found()),
            Some(Found::File(_)) => Err(StorageError::new(
                ErrorCode::NotADirectory,
                "not a directory",
            )),
            Some(Found::Directory) => {
                if self.holds_more_than_marker(&key).await? {
                    return Err(StorageError::new(
                        ErrorCode::DirectoryNotEmpty,
                        "directory not empty",
                    ));
                }
                self.store
                    .delete(&keys::marker(&key))
                    .await
                    .map_err(unavailable)?;
                self.ledger.remove(Usage::entry(true, 0)).await;
                Ok(())
            }
        }
    }

    async fn rename(
        &self,
        from: &RemotePath,
        to: &RemotePath,
        overwrite: bool,
    ) -> Result<(), StorageError> {
        refuse_bad_move(from, to)?;
        let (source, target) = (self.keys.of(from), self.keys.of(to));
        let found = self.find(&source).await?.ok_or_else(not_found)?;
        self.require_directory(&self.keys.of(&to.parent())).await?;
        let replaced = self.find(&target).await?;
        if replaced.is_some() && !overwrite {
            return Err(StorageError::new(
                ErrorCode::AlreadyExists,
                "target already exists (use -f to replace it)",
            ));
        }
        match (&found, &replaced) {
            (Found::File(_), Some(Found::Directory)) => {
                return Err(StorageError::new(ErrorCode::IsADirectory, "is a directory"));
            }
            (Found::Directory, Some(Found::File(_))) => {
                return Err(StorageError::new(
                    ErrorCode::NotADirectory,
                    "not a directory",
                ));
            }
            (_, Some(Found::Directory)) if self.holds_more_than_marker(&target).await? => {
                return Err(StorageError::new(
                    ErrorCode::DirectoryNotEmpty,
                    "directory not empty",
                ));
            }
            _ => {}
        }
        match found {
            Found::File(_) => {
                self.store
                    .copy(&source, &target)
                    .await
                    .map_err(unavailable)?;
                self.store.delete(&source).await.map_err(unavailable)?;
                if let Some(Found::File(old)) = replaced {
                    self.ledger.remove(Usage::entry(false, old.meta.size)).await;
                }
                Ok(())
            }
            Found::Directory => {
                if let Some(Found::Directory) = replaced {
                    let _ = self.store.delete(&keys::marker(&target)).await;
                    self.ledger.remove(Usage::entry(true, 0)).await;
                }
                self.move_tree(&source, &target, to.depth()).await
            }
        }
    }

    async fn usage(&self) -> Result<Usage, StorageError> {
        if let Some(counted) = self.ledger.current().await? {
            return Ok(counted);
        }
        let mut scan = Scan::new(Arc::clone(&self.store), self.keys.home().clone());
        let mut totals = Usage::default();
        while let Some(page) = scan.next_page().await? {
            for entry in page.entries {
                totals = totals.plus(Usage::entry(entry.kind == EntryKind::Directory, entry.size));
            }
        }
        self.ledger.recounted(totals).await;
        Ok(totals)
    }

    async fn begin_upload(
        &self,
        path: &RemotePath,
        size: Announced,
        overwrite: bool,
        resume: bool,
    ) -> Result<Box<dyn Upload>, StorageError> {
        let largest = MAX_FILE_SIZE.min(MAX_OBJECT_SIZE);
        let exact = match size {
            Announced::Exactly(size) => size,
            Announced::AtMost(_) => 0,
        };
        refuse_upload(path, exact, largest)?;
        let (key, parent_key) = (self.keys.of(path), self.keys.of(&path.parent()));
        // The directory it goes into and what is there now, at once.
        let (parent, found) = tokio::join!(self.require_directory(&parent_key), self.find(&key));
        parent?;
        let replaces = match found? {
            Some(Found::Directory) => {
                return Err(StorageError::new(ErrorCode::IsADirectory, "is a directory"));
            }
            Some(Found::File(_)) if !overwrite => {
                return Err(StorageError::new(
                    ErrorCode::AlreadyExists,
                    "already exists (use -f to replace it)",
                ));
            }
            Some(Found::File(file)) => file.meta.size,
            None => 0,
        };
        let upload =
            upload::ObjectUpload::begin(self.target(path), size, replaces, overwrite, resume)
                .await?;
        Ok(Box::new(upload))
    }

    async fn kept_partial(&self, path: &RemotePath) -> Result<Option<u64>, StorageError> {
        refuse_reserved(path)?;
        if path.is_home() {
            return Ok(None);
        }
        upload::kept(&self.target(path)).await
    }

    async fn checksum(&self, path: &RemotePath) -> Result<(u64, Digest), StorageError> {
        refuse_reserved(path)?;
        let mut download =
            download::ObjectDownload::open(&self.store, &self.keys.of(path), 0).await?;
        while download.next_chunk().await?.is_some() {}
        Ok((download.size(), download.checksum()))
    }

    async fn open_download(
        &self,
        path: &RemotePath,
        offset: u64,
    ) -> Result<Box<dyn Download>, StorageError> {
        refuse_reserved(path)?;
        let key = self.keys.of(path);
        if self.is_directory(&key).await? {
            return Err(StorageError::new(
                ErrorCode::IsADirectory,
                "is a directory (use -r)",
            ));
        }
        Ok(Box::new(
            download::ObjectDownload::open(&self.store, &key, offset).await?,
        ))
    }
}

impl ObjectTree {
    /// Moves every key under `source/` to the same place under `target/`: a copy, then a
    /// delete, key by key. Checks first that nothing would end up deeper than
    /// [`MAX_DEPTH`], so a refused move changes nothing.
    async fn move_tree(
        &self,
        source: &Path,
        target: &Path,
        to_depth: usize,
    ) -> Result<(), StorageError> {
        let mut scan = Scan::new(Arc::clone(&self.store), source.clone());
        while let Some(page) = scan.next_page().await? {
            if page.deepest + to_depth > MAX_DEPTH {
                return Err(super::too_deep());
            }
        }
        let mut scan = Scan::new(Arc::clone(&self.store), source.clone());
        while let Some(page) = scan.next_page().await? {
            for key in page.keys {
                let Some(rest) = key.prefix_match(source) else {
                    continue;
                };
                let moved = rest.fold(target.clone(), |at, part| at.join(part));
                self.store.copy(&key, &moved).await.map_err(unavailable)?;
                self.store.delete(&key).await.map_err(unavailable)?;
            }
        }
        // An implicit directory (no marker) leaves none behind; the moved one gets one.
        if self.find(target).await?.is_none() {
            self.store
                .put(&keys::marker(target), PutPayload::default())
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }
}
