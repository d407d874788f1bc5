//! File data on its way to or from the connection. A blocking thread reads (or writes) and
//! hashes chunks while the async side sends (or receives) the ones before, so the disk, the
//! hash and the network overlap instead of taking turns. Used by both ends of a transfer: a
//! put reads on the client and writes on the server, a get the other way round.
//!
//! Every chunk goes into the [`Checksum`] exactly once, on the thread that touches the file,
//! so it always describes the bytes that were read from or written to disk.

use std::io::{self, Read, Write};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::checksum::{Checksum, Digest};
use crate::commands::MAX_CHUNK;

/// Chunks that may wait between the two sides (1 MiB at 512 KiB chunks): enough to ride
/// out a slow write or a slow send, small enough to keep memory per transfer bounded.
pub const QUEUED_CHUNKS: usize = 2;

fn stopped(what: &str, err: tokio::task::JoinError) -> io::Error {
    io::Error::other(format!("the file {what} stopped: {err}"))
}

/// Hashes what `file` holds from its current position, at most `limit` bytes, and leaves it
/// positioned after them: the part of a resumed transfer that both sides already have.
/// Blocking; [`Checksum::count`] tells how many bytes there were.
///
/// # Errors
/// Read errors.
pub fn hash_held(file: &std::fs::File, limit: u64) -> io::Result<Checksum> {
    let mut checksum = Checksum::new();
    let mut held = file.take(limit);
    let mut buf = vec![0u8; MAX_CHUNK];
    loop {
        match held.read(&mut buf) {
            Ok(0) => return Ok(checksum),
            Ok(n) => checksum.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// As [`hash_held`], but exactly `len` bytes: the file having fewer is an error.
///
/// # Errors
/// Read errors; [`io::ErrorKind::UnexpectedEof`] if the file ended early.
pub fn hash_exactly(file: &std::fs::File, len: u64) -> io::Result<Checksum> {
    let checksum = hash_held(file, len)?;
    if checksum.count() != len {
        return Err(shrank());
    }
    Ok(checksum)
}

fn shrank() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the file shrank while being read",
    )
}

/// Reads a file from its current position in chunks of at most [`MAX_CHUNK`] bytes.
pub struct FileReader {
    chunks: mpsc::Receiver<io::Result<Bytes>>,
    task: JoinHandle<Checksum>,
}

impl FileReader {
    /// Starts reading `len` bytes of `file`. `checksum` already holds the bytes before the
    /// current position (the part of a resumed transfer the peer has).
    pub fn spawn(mut file: std::fs::File, mut checksum: Checksum, len: u64) -> Self {
        let (sender, chunks) = mpsc::channel(QUEUED_CHUNKS);
        let task = tokio::task::spawn_blocking(move || {
            let mut left = len;
            while left > 0 {
                let want = left.min(MAX_CHUNK as u64) as usize;
                let chunk = read_chunk(&mut file, want);
                if let Ok(chunk) = &chunk {
                    checksum.update(chunk);
                    left -= want as u64;
                }
                let failed = chunk.is_err();
                if sender.blocking_send(chunk.map(Bytes::from)).is_err() || failed {
                    break;
                }
            }
            checksum
        });
        FileReader { chunks, task }
    }

    /// The next chunk; `None` once `len` bytes were read.
    ///
    /// # Errors
    /// The read's error; [`io::ErrorKind::UnexpectedEof`] if the file ended early.
    pub async fn next(&mut self) -> io::Result<Option<Bytes>> {
        self.chunks.recv().await.transpose()
    }

    /// The checksum of everything read (and of what it held before), once [`next`]
    /// returned `None`.
    ///
    /// [`next`]: FileReader::next
    ///
    /// # Errors
    /// If the reading thread panicked.
    pub async fn finish(self) -> io::Result<Digest> {
        drop(self.chunks);
        let checksum = self.task.await.map_err(|e| stopped("reader", e))?;
        Ok(checksum.digest())
    }
}

/// Reads exactly `want` bytes into a fresh buffer, without zeroing it first.
fn read_chunk(file: &mut std::fs::File, want: usize) -> io::Result<Vec<u8>> {
    let mut chunk = Vec::with_capacity(want);
    file.take(want as u64).read_to_end(&mut chunk)?;
    if chunk.len() < want {
        return Err(shrank());
    }
    Ok(chunk)
}

/// Appends chunks to a file.
pub struct FileWriter {
    /// Chunks on their way to the thread; dropped to tell it the data ended.
    chunks: Option<mpsc::Sender<Bytes>>,
    task: Option<JoinHandle<io::Result<(std::fs::File, Checksum)>>>,
}

impl FileWriter {
    /// Starts appending to `file` at its current position; `checksum` already holds the
    /// bytes before it.
    pub fn spawn(mut file: std::fs::File, mut checksum: Checksum) -> Self {
        let (chunks, mut incoming) = mpsc::channel::<Bytes>(QUEUED_CHUNKS);
        let task = tokio::task::spawn_blocking(move || {
            while let Some(chunk) = incoming.blocking_recv() {
                file.write_all(&chunk)?;
                checksum.update(&chunk);
            }
            Ok((file, checksum))
        });
        FileWriter {
            chunks: Some(chunks),
            task: Some(task),
        }
    }

    /// Queues the next chunk.
    ///
    /// # Errors
    /// The error that stopped an earlier write (a full disk, say); after one, every later
    /// call fails too.
    pub async fn write(&mut self, data: Bytes) -> io::Result<()> {
        let sent = match &self.chunks {
            Some(chunks) => chunks.send(data).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The thread stopped: its error says why.
        match self.stop().await {
            Err(err) => Err(err),
            Ok(_) => Err(io::Error::other("an earlier write failed")),
        }
    }

    /// Waits for every queued chunk to be written; hands back the file and the checksum.
    ///
    /// # Errors
    /// The first write error.
    pub async fn finish(mut self) -> io::Result<(std::fs::File, Checksum)> {
        self.stop().await
    }

    async fn stop(&mut self) -> io::Result<(std::fs::File, Checksum)> {
        self.chunks = None;
        let task = self
            .task
            .take()
            .ok_or_else(|| io::Error::other("an earlier write failed"))?;
        task.await.map_err(|e| stopped("writer", e))?
    }
}

/// Where the data of a file being received goes: a small file (at most [`MAX_CHUNK`] bytes
/// to come) is held in memory and written by the one blocking call that finishes it (sync,
/// rename), so it costs no thread of its own and no hop per chunk; a larger one streams
/// through a [`FileWriter`]. Server uploads and client downloads both receive this way.
pub enum FileSink {
    /// Written and hashed on a thread as it arrives.
    Streaming(FileWriter),
    /// Kept until the end; `checksum` holds what the file had before.
    Held {
        file: std::fs::File,
        checksum: Box<Checksum>,
        chunks: Vec<Bytes>,
    },
}

/// What a [`FileSink`] got, once the data ended: written, or still held.
pub enum SinkEnded {
    Written(io::Result<(std::fs::File, Checksum)>),
    Held(std::fs::File, Checksum, Vec<Bytes>),
}

impl FileSink {
    /// A sink for `incoming` more bytes, appended to `file` at its current position;
    /// `checksum` already holds the bytes before it.
    pub fn new(file: std::fs::File, checksum: Checksum, incoming: u64) -> Self {
        if incoming <= MAX_CHUNK as u64 {
            FileSink::Held {
                file,
                checksum: Box::new(checksum),
                chunks: Vec::new(),
            }
        } else {
            FileSink::Streaming(FileWriter::spawn(file, checksum))
        }
    }

    /// The next chunk (the caller keeps the total within what was announced).
    ///
    /// # Errors
    /// As [`FileWriter::write`].
    pub async fn write(&mut self, data: Bytes) -> io::Result<()> {
        match self {
            FileSink::Streaming(writer) => writer.write(data).await,
            FileSink::Held { chunks, .. } => {
                chunks.push(data);
                Ok(())
            }
        }
    }

    /// The data ended: waits for a streaming sink's writes.
    pub async fn end(self) -> SinkEnded {
        match self {
            FileSink::Streaming(writer) => SinkEnded::Written(writer.finish().await),
            FileSink::Held {
                file,
                checksum,
                chunks,
            } => SinkEnded::Held(file, *checksum, chunks),
        }
    }
}

impl SinkEnded {
    /// The file, with everything written, and the checksum of all of it. Blocking: writes
    /// what was held.
    ///
    /// # Errors
    /// The first write error.
    pub fn written(self) -> io::Result<(std::fs::File, Checksum)> {
        match self {
            SinkEnded::Written(result) => result,
            SinkEnded::Held(mut file, mut checksum, chunks) => {
                for chunk in chunks {
                    file.write_all(&chunk)?;
                    checksum.update(&chunk);
                }
                Ok((file, checksum))
            }
        }
    }
}

/// Gives `file` a modification time and permission bits (`put -p`). The owner keeps read
/// and write, so the server can still serve and replace what it stores.
pub fn apply_attributes(
    file: &std::fs::File,
    attributes: crate::commands::Attributes,
) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = (attributes.mode & 0o777) | 0o600;
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    let secs = attributes.modified;
    let when = if secs >= 0 {
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.unsigned_abs())
    } else {
        std::time::UNIX_EPOCH - std::time::Duration::from_secs(secs.unsigned_abs())
    };
    file.set_modified(when)
}

/// The modification time and permission bits of `meta`.
pub fn attributes_of(meta: &std::fs::Metadata) -> crate::commands::Attributes {
    use std::os::unix::fs::MetadataExt;
    crate::commands::Attributes {
        modified: meta.mtime(),
        mode: meta.mode() & 0o777,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Seek;

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[tokio::test]
    async fn reader_yields_the_rest_of_the_file_and_hashes_all_of_it() {
        let data = sample(MAX_CHUNK * 2 + 123);
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&data).unwrap();
        file.rewind().unwrap();
        let checksum = hash_held(&file, 100).unwrap();
        assert_eq!(checksum.count(), 100);
        let mut reader = FileReader::spawn(file, checksum, data.len() as u64 - 100);
        let mut got = Vec::new();
        while let Some(chunk) = reader.next().await.unwrap() {
            assert!(chunk.len() <= MAX_CHUNK);
            got.extend_from_slice(&chunk);
        }
        assert_eq!(got, data[100..]);
        assert_eq!(reader.finish().await.unwrap(), Checksum::of(&data));
    }

    #[tokio::test]
    async fn reader_reports_a_file_shorter_than_announced() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&sample(1000)).unwrap();
        file.rewind().unwrap();
        let mut reader = FileReader::spawn(file, Checksum::new(), 5000);
        let err = reader.next().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(reader.next().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn writer_appends_and_hashes_and_reports_write_errors() {
        let data = sample(MAX_CHUNK + 5);
        let file = tempfile::tempfile().unwrap();
        let mut writer = FileWriter::spawn(file, Checksum::new());
        for chunk in data.chunks(1000) {
            writer.write(Bytes::copy_from_slice(chunk)).await.unwrap();
        }
        let (mut file, checksum) = writer.finish().await.unwrap();
        assert_eq!(checksum.digest(), Checksum::of(&data));
        let mut back = Vec::new();
        file.rewind().unwrap();
        file.read_to_end(&mut back).unwrap();
        assert_eq!(back, data);

        // A file opened read-only cannot be written: the error comes back, and stays.
        let path = tempfile::NamedTempFile::new().unwrap();
        let file = std::fs::File::open(path.path()).unwrap();
        let mut writer = FileWriter::spawn(file, Checksum::new());
        // The queue holds QUEUED_CHUNKS, so one write past it must see the failure.
        let mut failed = None;
        for _ in 0..=QUEUED_CHUNKS + 1 {
            if let Err(err) = writer.write(Bytes::from_static(b"x")).await {
                failed = Some(err);
                break;
            }
        }
        assert!(failed.is_some(), "a write to a read-only file succeeded");
        assert!(writer.finish().await.is_err());
    }
}
