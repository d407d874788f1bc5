//! A file read over SFTP: one download from the core, followed while the client reads in
//! order (as every client does, many reads in flight), opened again where it reads
//! elsewhere.

use bytes::{Buf, Bytes, BytesMut};
use russh_sftp::protocol::{Data, Packet, StatusCode};

use super::reply::{refused, status};
use crate::server::core::UserFiles;
use crate::server::core::transfers::GetInProgress;

/// The most bytes one read or write moves (what `limits@openssh.com` announces).
pub(super) const MAX_IO: u32 = 255 * 1024;

/// A file being read: the download from the position where reading stopped.
pub(super) struct Reading {
    pub(super) path: String,
    /// The file's size when it was opened.
    size: u64,
    get: Option<GetInProgress>,
    /// The offset the download has reached (after `buffer`).
    position: u64,
    /// Data read ahead of the position the client asked for.
    buffer: Bytes,
}

impl Reading {
    /// `path`, `size` bytes long; nothing is read before the first request.
    pub(super) fn new(path: String, size: u64) -> Self {
        Reading {
            path,
            size,
            get: None,
            position: 0,
            buffer: Bytes::new(),
        }
    }

    /// At most `len` bytes (and [`MAX_IO`]) from `offset`, or the end of the file.
    pub(super) async fn read(
        &mut self,
        files: &UserFiles,
        id: u32,
        offset: u64,
        len: u32,
    ) -> Packet {
        let wanted = len.min(MAX_IO) as usize;
        if offset >= self.size {
            return status(id, StatusCode::Eof, "end of file");
        }
        // Data ahead of the position is kept; a read elsewhere starts the download again.
        let buffered_from = self.position - self.buffer.len() as u64;
        if self.get.is_none() || offset < buffered_from || offset > self.position {
            match files.begin_get(&self.path, offset).await {
                Ok(get) => {
                    self.get = Some(get);
                    self.position = offset;
                    self.buffer = Bytes::new();
                }
                Err(err) => return refused(id, &err),
            }
        } else {
            let skip = (offset - buffered_from) as usize;
            self.buffer.advance(skip.min(self.buffer.len()));
        }
        let mut out = BytesMut::with_capacity(wanted);
        while out.len() < wanted {
            if self.buffer.is_empty() {
                let Some(get) = self.get.as_mut() else {
                    break;
                };
                match get.next_chunk().await {
                    Ok(Some(chunk)) => {
                        self.position += chunk.len() as u64;
                        self.buffer = chunk;
                    }
                    Ok(None) => break,
                    Err(err) => return refused(id, &err),
                }
            }
            let take = (wanted - out.len()).min(self.buffer.len());
            out.extend_from_slice(&self.buffer.split_to(take));
        }
        if out.is_empty() {
            return status(id, StatusCode::Eof, "end of file");
        }
        Packet::Data(Data {
            id,
            data: out.to_vec(),
        })
    }

    /// The handle is closed: a file read to its end is recorded as a transfer.
    pub(super) fn close(self) {
        if let Some(get) = self.get
            && self.buffer.is_empty()
            && self.position == get.size()
        {
            get.done();
        }
    }
}
