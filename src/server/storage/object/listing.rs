//! Listings from the object store, a page at a time: one directory (with a delimiter, so
//! only its own level is read) or a whole tree (through [`Scan`]).

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::StreamExt;
use object_store::list::{PaginatedListOptions, PaginatedListStore};

use super::scan::Scan;
use super::{HEADS_IN_FLIGHT, KEYS_PER_REQUEST, ObjectTree, keys, unavailable};
use crate::commands::{ENTRIES_PER_FRAME, Entry, EntryKind};
use crate::error::StorageError;
use crate::server::storage::Listing;

/// A listing of a single non-directory.
pub struct OneEntry(pub Option<Entry>);

#[async_trait]
impl Listing for OneEntry {
    async fn next_page(&mut self) -> Result<Option<Vec<Entry>>, StorageError> {
        Ok(self.0.take().map(|entry| vec![entry]))
    }
}

/// One directory, a page of keys per request: common prefixes are directories, objects
/// files.
pub struct DirectoryListing {
    pub tree: Arc<ObjectTree>,
    pub prefix: String,
    pub token: Option<String>,
    pub done: bool,
}

#[async_trait]
impl Listing for DirectoryListing {
    async fn next_page(&mut self) -> Result<Option<Vec<Entry>>, StorageError> {
        while !self.done {
            let page = self
                .tree
                .store
                .list_paginated(
                    Some(&self.prefix),
                    PaginatedListOptions {
                        delimiter: Some("/".into()),
                        max_keys: Some(ENTRIES_PER_FRAME.min(KEYS_PER_REQUEST)),
                        page_token: self.token.take(),
                        ..Default::default()
                    },
                )
                .await
                .map_err(unavailable)?;
            self.token = page.page_token;
            self.done = self.token.is_none();
            let mut entries: Vec<Entry> = page
                .result
                .common_prefixes
                .iter()
                .filter_map(keys::shown_name)
                .map(|name| Entry {
                    name,
                    kind: EntryKind::Directory,
                    size: 0,
                    modified: None,
                })
                .collect();
            let shown: Vec<(String, object_store::ObjectMeta)> = page
                .result
                .objects
                .into_iter()
                .filter_map(|meta| keys::shown_name(&meta.location).map(|name| (name, meta)))
                .collect();
            let files: Vec<Entry> = futures_util::stream::iter(shown)
                .map(|(name, meta)| {
                    let tree = Arc::clone(&self.tree);
                    async move { tree.file_entry(name, &meta).await }
                })
                .buffered(HEADS_IN_FLIGHT)
                .collect()
                .await;
            entries.extend(files);
            if !entries.is_empty() {
                return Ok(Some(entries));
            }
        }
        Ok(None)
    }
}

/// A whole tree, a directory before what it holds, named by paths from its root.
pub struct TreeListing {
    pub tree: Arc<ObjectTree>,
    pub scan: Scan,
}

#[async_trait]
impl Listing for TreeListing {
    async fn next_page(&mut self) -> Result<Option<Vec<Entry>>, StorageError> {
        loop {
            let Some(page) = self.scan.next_page().await? else {
                return Ok(None);
            };
            let entries: Vec<Entry> = futures_util::stream::iter(page.entries)
                .map(|entry| {
                    let tree = Arc::clone(&self.tree);
                    async move {
                        match entry.meta {
                            Some(meta) => tree.file_entry(entry.path, &meta).await,
                            None => Entry {
                                name: entry.path,
                                kind: EntryKind::Directory,
                                size: 0,
                                modified: None,
                            },
                        }
                    }
                })
                .buffered(HEADS_IN_FLIGHT)
                .collect()
                .await;
            if !entries.is_empty() {
                return Ok(Some(entries));
            }
        }
    }
}
