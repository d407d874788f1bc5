//! A file written over SFTP: the data goes to an upload of the core (a hidden partial
//! file), which appears whole in place of the target when the handle is closed, and after
//! a write that failed never (as SFTPGo's atomic mode). Writes come in order, as every
//! client writes a file; an upload cut off stays hidden for a resume.

use bytes::Bytes;
use russh_sftp::protocol::{FileAttributes, OpenFlags};

use super::reply::preserved;
use crate::commands::{EntryKind, ErrorCode};
use crate::error::StorageError;
use crate::server::core::transfers::PutInProgress;
use crate::server::core::{Outcome, UserFiles};

/// A file being written.
pub(super) struct Writing {
    /// Where the file goes (resolved): until it is closed, this session's `stat` of it
    /// answers from here, as a client that creates a file asks right after (sshfs).
    pub(super) path: String,
    put: PutInProgress,
    /// Why a write failed: nothing of the file is kept.
    failed: Option<StorageError>,
    /// Opened without truncating an existing file (as `scp` opens, then sets the size):
    /// the old file's bytes past what was written are kept, up to a size the client sets.
    tail: Option<Tail>,
    /// Opened to append: every write goes to the end, whatever its offset says.
    append: bool,
}

/// What an open without truncation keeps of the file it replaces.
struct Tail {
    path: String,
    /// The old file's size.
    size: u64,
    /// A size the client set (`fsetstat`): the file ends there.
    cut: Option<u64>,
}

fn unsupported(message: &str) -> StorageError {
    StorageError::new(ErrorCode::Unsupported, message)
}

impl Writing {
    /// Opens `path` as `flags` ask:
    /// - write, create, truncate (`sftp`'s `put`): a new file, from its start;
    /// - write, create (`scp`): written over from the start; the old file's bytes past
    ///   what was written are kept, unless the client sets the size;
    /// - write, append (`reput`, `put -a`): what an interrupted upload to `path` kept,
    ///   continued (its size is what `stat` answered), or else the file as it is;
    /// - exclusive: only where nothing is.
    pub(super) async fn open(files: &UserFiles, path: &str, flags: OpenFlags) -> Outcome<Self> {
        if !flags.contains(OpenFlags::WRITE) || flags.contains(OpenFlags::READ) {
            return Err(unsupported(
                "files are written here from their start or at their end: open to write; \
                 reading while writing is not supported",
            ));
        }
        let create = flags.contains(OpenFlags::CREATE);
        let exclusive = create && flags.contains(OpenFlags::EXCLUDE);
        let truncate = flags.contains(OpenFlags::TRUNCATE);
        let append = flags.contains(OpenFlags::APPEND) && !truncate;
        let existing = if exclusive {
            None
        } else {
            match files.stat(path).await {
                Ok(entry) if entry.kind == EntryKind::Directory => {
                    return Err(StorageError::new(ErrorCode::IsADirectory, "is a directory"));
                }
                Ok(entry) => Some(entry.size),
                Err(err) if err.code == ErrorCode::NotFound => None,
                Err(err) => return Err(err),
            }
        };
        if !create && existing.is_none() && !append {
            return Err(StorageError::new(ErrorCode::NotFound, "no such file"));
        }
        let mut put = files.begin_open_put(path, !exclusive, append).await?;
        // As OpenSSH's server: synced to the disk when the client asks (`fsync`), not at
        // every close, which a client waits for before it sends its next file.
        put.set_durable(false);
        let mut tail = None;
        let old = existing.filter(|&size| size > 0);
        match old {
            // Nothing kept to resume: appended to the file as it is.
            Some(size) if append && put.written() == 0 => {
                if let Err(err) = keep_tail(files, &mut put, path, size).await {
                    put.discard(&err).await;
                    return Err(err);
                }
            }
            Some(size) if !append && !truncate => {
                tail = Some(Tail {
                    path: path.to_owned(),
                    size,
                    cut: None,
                });
            }
            _ => {}
        }
        Ok(Writing {
            path: path.to_owned(),
            put,
            failed: None,
            tail,
            append,
        })
    }

    /// The client asked for the file on disk (`fsync@openssh.com`): it is synced, with its
    /// rename, when it is put in place at the close.
    pub(super) fn sync(&mut self) {
        self.put.set_durable(true);
    }

    /// Bytes the file holds so far.
    pub(super) fn written(&self) -> u64 {
        self.put.written()
    }

    /// Writes `data` at `offset`: the end of what was written (anywhere, when appending).
    /// After a refusal, every later write is refused and nothing of the file is kept.
    pub(super) async fn write(&mut self, offset: u64, data: Vec<u8>) -> Outcome<()> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let result = if self.append || offset == self.put.written() {
            self.put.write(Bytes::from(data)).await
        } else {
            Err(unsupported(&format!(
                "writes must come in order: expected offset {}, got {offset}; nothing of this \
                 file is kept",
                self.put.written()
            )))
        };
        if let Err(err) = &result {
            self.failed = Some(err.clone());
        }
        result
    }

    /// Times and permission bits (`put -p`), given to the file when it is put in place; a
    /// size, where it keeps what was written and at most what the old file had.
    pub(super) fn set_attributes(&mut self, attrs: &FileAttributes) -> Outcome<()> {
        if let Some(attributes) = preserved(attrs) {
            self.put.preserve(attributes);
        }
        let written = self.put.written();
        match (attrs.size, &mut self.tail) {
            (None, _) => Ok(()),
            (Some(size), Some(tail)) if size >= written && size <= tail.size.max(written) => {
                tail.cut = Some(size);
                Ok(())
            }
            (Some(size), _) if size == written => Ok(()),
            (Some(_), _) => Err(unsupported(
                "a file being written takes no other size than what was written (or, \
                 written over, what it had)",
            )),
        }
    }

    /// Puts the file in place, with what it keeps of the old one; after a failed write,
    /// never.
    pub(super) async fn finish(self, files: &UserFiles) -> Outcome<()> {
        let Writing {
            mut put,
            failed,
            tail,
            ..
        } = self;
        if let Some(err) = failed {
            put.discard(&err).await;
            return Err(err);
        }
        if let Some(tail) = tail {
            let end = tail.cut.unwrap_or(tail.size).min(tail.size);
            if end > put.written()
                && let Err(err) = keep_tail(files, &mut put, &tail.path, end).await
            {
                put.discard(&err).await;
                return Err(err);
            }
        }
        put.finish_as_written().await
    }

    /// The session ended with the file open: what was written stays hidden, for a resume.
    pub(super) async fn interrupted(self) {
        self.put.interrupted().await;
    }
}

/// Appends the bytes of the file at `path` from where the writing stopped up to `end`.
async fn keep_tail(
    files: &UserFiles,
    put: &mut PutInProgress,
    path: &str,
    end: u64,
) -> Outcome<()> {
    let mut old = files.begin_get(path, put.written()).await?;
    while put.written() < end {
        let Some(mut chunk) = old.next_chunk().await? else {
            break;
        };
        let left = end - put.written();
        if chunk.len() as u64 > left {
            chunk.truncate(usize::try_from(left).unwrap_or(usize::MAX));
        }
        put.write(chunk).await?;
    }
    Ok(())
}
