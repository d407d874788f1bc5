//! Downloading one file into a hidden partial beside the target, renamed into place once its checksum matches the server's.

use super::*;

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// Downloads `remote` to the local file `local`.
    ///
    /// The data goes to a partial file beside `local`, created afresh under a random name
    /// (never following a link, never opening what someone else put there) once the server
    /// has said it sends the file, so a download that never starts leaves nothing. `resume`
    /// continues the largest earlier partial file of the same target that is a regular file
    /// of ours.
    ///
    /// # Errors
    /// As [`Client::put_file`], plus [`Error::ChecksumMismatch`].
    pub async fn get_file(
        &mut self,
        remote: &str,
        local: &Path,
        options: TransferOptions,
        progress: &dyn Progress,
    ) -> Result<Transferred> {
        RemotePath::parse(remote)?;
        let name = local
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::local(local, "not a file name"))?
            .to_owned();
        if !options.overwrite && tokio::fs::symlink_metadata(local).await.is_ok() {
            if options.resume
                && let Some((size, digest)) = hash_local_file(local).await?
            {
                // Resuming, a target that is already here whole is done, not an error.
                return self.done_if_same(remote, size, digest).await;
            }
            return Err(Error::local(local, "already exists (use -f to replace it)"));
        }
        let dir = match local.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let parent_dir = dir.clone();
        let earlier = {
            let (dir, name) = (dir.clone(), name.clone());
            tokio::task::spawn_blocking(move || partial::ours(&dir, &name))
                .await
                .map_err(std::io::Error::other)
                .and_then(|found| found)
                .map_err(|e| Error::local(&parent_dir, e))?
        };
        let mut resumed: Option<(PathBuf, std::fs::File)> = None;
        let mut held = Checksum::new();
        if options.resume
            && let Some(path) = earlier.first()
            && let Some(file) = partial::open_ours(path).map_err(|e| Error::local(path, e))?
        {
            let len = file.metadata().map_err(|e| Error::local(path, e))?.len();
            let remote_size = self.stat(remote).await?.size;
            let mut file = file;
            if len <= remote_size {
                (file, held) = hash_prefix(file, len)
                    .await
                    .map_err(|e| Error::local(path, e))?;
            }
            resumed = Some((path.clone(), file));
        }
        let offset = held.count();
        self.send(&Request::Get {
            path: remote.to_owned(),
            offset,
        })
        .await?;
        let (size, attributes) = match self.reply().await? {
            Response::GetReady {
                size,
                offset: o,
                attributes,
            } if o == offset && offset <= size => (size, attributes),
            _ => return Err(Error::UnexpectedReply("expected GetReady")),
        };
        let opened = match resumed {
            Some(found) => Ok(found),
            None => partial::create(&dir, &name),
        };
        let (part, file) = match opened {
            Ok(opened) => opened,
            Err(err) => {
                // The server is sending already: the connection cannot be used again.
                self.in_step = false;
                return Err(Error::local(&dir, err));
            }
        };
        // Earlier partial files of this target that this download does not continue.
        for stale in earlier.iter().filter(|p| **p != part) {
            let _ = std::fs::remove_file(stale);
        }
        if offset == 0
            && let Err(err) = file.set_len(0)
        {
            self.in_step = false;
            return Err(Error::local(&part, err));
        }
        progress.start(&name, size, offset);
        let mut sink = FileSink::Streaming(FileWriter::spawn(file, held));
        let received = self
            .receive_data(&mut sink, size - offset, &part, progress)
            .await;
        let landed = async {
            let theirs = received?;
            // Streamed: written already, so this does not block.
            let (file, written) = sink
                .end()
                .await
                .written()
                .map_err(|e| Error::local(&part, e))?;
            if written.digest() != theirs {
                drop(file);
                let _ = tokio::fs::remove_file(&part).await;
                return Err(Error::ChecksumMismatch);
            }
            if options.preserve
                && let Some(attributes) = attributes
            {
                crate::pipeline::apply_attributes(&file, attributes)
                    .map_err(|e| Error::local(&part, e))?;
            }
            tokio::fs::File::from_std(file)
                .sync_all()
                .await
                .map_err(|e| Error::local(&part, e))?;
            if !options.overwrite && tokio::fs::symlink_metadata(local).await.is_ok() {
                return Err(Error::local(local, "already exists (use -f to replace it)"));
            }
            // rename() replaces a link at `local` itself; it never writes through one.
            tokio::fs::rename(&part, local)
                .await
                .map_err(|e| Error::local(local, e))
        }
        .await;
        ended(progress, &landed);
        landed?;
        Ok(Transferred {
            size,
            resumed_from: offset,
        })
    }

    /// Downloads `remote` into `out` as it arrives, for `get FILE -` and `cat`: an open
    /// file or pipe (standard output), written on a thread of its own. The data cannot be
    /// taken back, so a checksum that differs at the end is reported after it was written.
    ///
    /// # Errors
    /// As [`Client::get_file`]; [`Error::ChecksumMismatch`] once everything was written.
    pub async fn get_into(
        &mut self,
        remote: &str,
        out: std::fs::File,
        progress: &dyn Progress,
    ) -> Result<Transferred> {
        RemotePath::parse(remote)?;
        self.send(&Request::Get {
            path: remote.to_owned(),
            offset: 0,
        })
        .await?;
        let size = match self.reply().await? {
            Response::GetReady {
                size, offset: 0, ..
            } => size,
            _ => return Err(Error::UnexpectedReply("expected GetReady")),
        };
        let shown = Path::new("-");
        progress.start(remote, size, 0);
        let mut sink = FileSink::Streaming(FileWriter::spawn(out, Checksum::new()));
        let received = self.receive_data(&mut sink, size, shown, progress).await;
        progress.finish();
        let theirs = received?;
        let (_, written) = sink
            .end()
            .await
            .written()
            .map_err(|e| Error::local(shown, e))?;
        if written.digest() != theirs {
            return Err(Error::ChecksumMismatch);
        }
        Ok(Transferred {
            size,
            resumed_from: 0,
        })
    }

    /// A resumed transfer whose target already exists: done if the file on the server has
    /// `size` bytes and checksum `digest` too, refused (as without `-c`) if it differs.
    pub(super) async fn done_if_same(
        &mut self,
        remote: &str,
        size: u64,
        digest: Digest,
    ) -> Result<Transferred> {
        let (theirs, their_digest) = self.checksum(remote).await?;
        if theirs == size && their_digest == digest {
            return Ok(Transferred {
                size,
                resumed_from: size,
            });
        }
        Err(Error::Remote {
            code: ErrorCode::AlreadyExists,
            message: "already exists and differs (use -f to replace it)".into(),
        })
    }

    /// Hands data frames to `sink` until `GetDone`; returns the server's checksum. Stopping
    /// anywhere but at `GetDone` or an error reply leaves frames on their way, so the
    /// connection is out of step from then on ([`Client::is_in_step`]).
    pub(super) async fn receive_data(
        &mut self,
        sink: &mut FileSink,
        expected: u64,
        part: &Path,
        progress: &dyn Progress,
    ) -> Result<Digest> {
        let received = self.receive_frames(sink, expected, part, progress).await;
        if let Err(err) = &received
            && !matches!(err, Error::Remote { .. })
        {
            self.in_step = false;
        }
        received
    }

    pub(super) async fn receive_frames(
        &mut self,
        sink: &mut FileSink,
        expected: u64,
        part: &Path,
        progress: &dyn Progress,
    ) -> Result<Digest> {
        let mut received = 0u64;
        // Frames that carry no data are no progress: a server cannot keep a download
        // waiting forever with them.
        let mut progressed = tokio::time::Instant::now();
        loop {
            match self.reply().await? {
                Response::Data { data } => {
                    self.pace(data.len()).await;
                    if data.is_empty() {
                        if progressed.elapsed() > self.reply_timeout {
                            return Err(Error::Timeout);
                        }
                        continue;
                    }
                    progressed = tokio::time::Instant::now();
                    received += data.len() as u64;
                    if received > expected {
                        return Err(Error::UnexpectedReply("more data than announced"));
                    }
                    let len = data.len() as u64;
                    sink.write(data).await.map_err(|e| Error::local(part, e))?;
                    progress.advance(len);
                }
                Response::GetDone { checksum } => {
                    if received != expected {
                        return Err(Error::UnexpectedReply("the download ended early"));
                    }
                    return Ok(checksum);
                }
                _ => return Err(Error::UnexpectedReply("expected data")),
            }
        }
    }
}
