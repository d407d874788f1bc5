//! A tree in the object store read as a stream: a page of keys per request (no delimiter),
//! turned into entries, a directory before what it holds. Keys under one prefix come out
//! of S3 together and in order, so the directories a key lies in are known from the key
//! itself: no recursion, no memory beyond one page and the current directory path.

use std::collections::VecDeque;
use std::sync::Arc;

use object_store::aws::AmazonS3;
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path;

use super::keys::{self, DIRECTORY_MARKER};
use super::{KEYS_PER_REQUEST, unavailable};
use crate::commands::{ENTRIES_PER_FRAME, EntryKind};
use crate::error::StorageError;

/// One entry of a tree, named by its path from the tree's root (`a/b/c`).
#[derive(Debug, Clone)]
pub struct ScanEntry {
    pub path: String,
    pub kind: EntryKind,
    pub size: u64,
    /// A file's object, for its preserved attributes.
    pub meta: Option<object_store::ObjectMeta>,
}

/// What one page of keys held.
#[derive(Debug, Default)]
pub struct ScanPage {
    /// Every key (markers and upload state included): what a removal or a move handles.
    pub keys: Vec<Path>,
    /// What a user sees: at most [`ENTRIES_PER_FRAME`].
    pub entries: Vec<ScanEntry>,
    /// The most components any key of this page has below the root.
    pub deepest: usize,
}

pub struct Scan {
    store: Arc<AmazonS3>,
    root: Path,
    prefix: String,
    token: Option<String>,
    done: bool,
    /// The directory (path from the root, decoded) the last key was in.
    current: Vec<String>,
    /// Entries beyond a page's worth, for the next page.
    queued: VecDeque<ScanEntry>,
}

impl Scan {
    pub fn new(store: Arc<AmazonS3>, root: Path) -> Self {
        Scan {
            prefix: keys::dir_prefix(&root),
            store,
            root,
            token: None,
            done: false,
            current: Vec::new(),
            queued: VecDeque::new(),
        }
    }

    /// The next page; `None` at the end.
    pub async fn next_page(&mut self) -> Result<Option<ScanPage>, StorageError> {
        let mut page = ScanPage::default();
        if self.queued.len() < ENTRIES_PER_FRAME && !self.done {
            let listed = self
                .store
                .list_paginated(
                    Some(&self.prefix),
                    PaginatedListOptions {
                        max_keys: Some(KEYS_PER_REQUEST),
                        page_token: self.token.take(),
                        ..Default::default()
                    },
                )
                .await
                .map_err(unavailable)?;
            self.token = listed.page_token;
            self.done = self.token.is_none();
            for object in listed.result.objects {
                self.add(&object, &mut page.deepest);
                page.keys.push(object.location);
            }
        }
        let take = self.queued.len().min(ENTRIES_PER_FRAME);
        page.entries = self.queued.drain(..take).collect();
        if page.keys.is_empty() && page.entries.is_empty() && self.done {
            return Ok(None);
        }
        Ok(Some(page))
    }

    /// Queues the entries one key brings: directories not seen yet, then the file.
    fn add(&mut self, object: &object_store::ObjectMeta, deepest: &mut usize) {
        let Some(rest) = object.location.prefix_match(&self.root) else {
            return;
        };
        let parts: Vec<String> = rest.map(|p| p.as_ref().to_owned()).collect();
        *deepest = (*deepest).max(parts.len());
        let Some((last, dirs)) = parts.split_last() else {
            return;
        };
        // Names no client could have made hide the key and all below them.
        let Some(dirs) = dirs
            .iter()
            .map(|d| keys::decoded(d))
            .collect::<Option<Vec<String>>>()
        else {
            return;
        };
        let same = self
            .current
            .iter()
            .zip(&dirs)
            .take_while(|(a, b)| a == b)
            .count();
        self.current.truncate(same);
        for dir in &dirs[same..] {
            self.current.push(dir.clone());
            self.queued.push_back(ScanEntry {
                path: self.current.join("/"),
                kind: EntryKind::Directory,
                size: 0,
                meta: None,
            });
        }
        if last == DIRECTORY_MARKER {
            return;
        }
        if let Some(name) = keys::decoded(last) {
            let path = if dirs.is_empty() {
                name
            } else {
                format!("{}/{name}", dirs.join("/"))
            };
            self.queued.push_back(ScanEntry {
                path,
                kind: EntryKind::File,
                size: object.size,
                meta: Some(object.clone()),
            });
        }
    }
}
