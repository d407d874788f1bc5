//! Listings and downloads from a home on disk.

use super::*;

/// A listing made on a blocking thread, one page ahead of the connection (a reader that
/// stops reading stops the thread too): `produce` hands each entry to `emit`, and stops
/// when `emit` says so. An error ends the listing after the pages before it.
pub(super) fn paged(
    produce: impl FnOnce(&mut dyn FnMut(Entry) -> bool) -> io::Result<()> + Send + 'static,
) -> Box<dyn Listing> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::task::spawn_blocking(move || {
        let mut page = Vec::with_capacity(ENTRIES_PER_FRAME);
        let produced = produce(&mut |entry| {
            page.push(entry);
            if page.len() < ENTRIES_PER_FRAME {
                return true;
            }
            let full = std::mem::replace(&mut page, Vec::with_capacity(ENTRIES_PER_FRAME));
            tx.blocking_send(Ok(full)).is_ok()
        });
        let last = match produced {
            Ok(()) if page.is_empty() => return,
            Ok(()) => Ok(page),
            Err(e) => Err(e.into()),
        };
        let _ = tx.blocking_send(last);
    });
    Box::new(FsListing {
        ready: None,
        pages: Some(rx),
    })
}

/// A listing: entries at hand (a small directory, a non-directory), or pages from a thread
/// reading a directory.
pub(super) struct FsListing {
    /// Entries read before any thread was needed: all of a small directory, or the
    /// description of a non-directory.
    pub(super) ready: Option<Vec<Entry>>,
    pub(super) pages: Option<tokio::sync::mpsc::Receiver<Result<Vec<Entry>, StorageError>>>,
}

impl FsListing {
    /// All of a listing, at hand; no page at all when `entries` is empty.
    pub(super) fn ready(entries: Vec<Entry>) -> Box<dyn Listing> {
        Box::new(FsListing {
            ready: (!entries.is_empty()).then_some(entries),
            pages: None,
        })
    }
}

#[async_trait]
impl Listing for FsListing {
    async fn next_page(&mut self) -> Result<Option<Vec<Entry>>, StorageError> {
        if let Some(ready) = self.ready.take() {
            return Ok(Some(ready));
        }
        match &mut self.pages {
            Some(pages) => pages.recv().await.transpose(),
            None => Ok(None),
        }
    }
}

/// Entries of a directory that [`FsTree::list`] reads on the async thread before it hands
/// the rest to the blocking pool: a `stat` each, so at most this many microseconds there.
pub(super) const INLINE_ENTRIES: usize = 64;

/// Feeds `emit` the entries `items` has left (without partial uploads, and without entries
/// removed since the directory was read) until it says stop. Whether the directory ended.
pub(super) fn list_entries(
    items: &mut ReadDir,
    emit: &mut dyn FnMut(Entry) -> bool,
) -> io::Result<bool> {
    for item in items {
        let item = item?;
        let name = item.file_name().to_string_lossy().into_owned();
        if name.starts_with(PARTIAL_PREFIX) {
            continue;
        }
        match item.metadata() {
            Ok(meta) => {
                if !emit(entry(name, &meta)) {
                    return Ok(false);
                }
            }
            // Removed between reading the directory and looking at the entry.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// A download from an open file, read ahead on a blocking thread.
pub(super) struct FsDownload {
    /// `None` once the end was reached.
    pub(super) reader: Option<FileReader>,
    pub(super) size: u64,
    pub(super) digest: Option<Digest>,
    pub(super) attributes: Attributes,
}

#[async_trait]
impl Download for FsDownload {
    fn size(&self) -> u64 {
        self.size
    }

    async fn next_chunk(&mut self) -> Result<Option<Bytes>, StorageError> {
        let Some(reader) = &mut self.reader else {
            return Ok(None);
        };
        if let Some(chunk) = reader.next().await? {
            return Ok(Some(chunk));
        }
        if let Some(reader) = self.reader.take() {
            self.digest = Some(reader.finish().await?);
        }
        Ok(None)
    }

    fn checksum(&self) -> Digest {
        self.digest.unwrap_or_default()
    }

    fn attributes(&self) -> Option<Attributes> {
        Some(self.attributes)
    }
}
