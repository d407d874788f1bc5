//! Uploading one file: small ones in one request, others streamed in chunks and resumed where the server kept a partial.

use super::*;

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// Uploads one local file to `remote`.
    ///
    /// # Errors
    /// Local I/O ([`Error::Local`]), the server's refusal (exists, quota, checksum, ...), or
    /// the connection.
    pub async fn put_file(
        &mut self,
        local: &Path,
        remote: &str,
        options: TransferOptions,
        progress: &dyn Progress,
    ) -> Result<Transferred> {
        RemotePath::parse(remote)?;
        let file = tokio::fs::File::open(local)
            .await
            .map_err(|e| Error::local(local, e))?
            .into_std()
            .await;
        let meta = file.metadata().map_err(|e| Error::local(local, e))?;
        if meta.is_dir() {
            return Err(Error::local(local, "is a directory (use -r)"));
        }
        let size = meta.len();
        // A small file goes whole, in one request with one answer: a round trip fewer than
        // PutStart, PutReady, the data and PutFinish. (A resume must ask where to go on.)
        if !options.resume
            && size <= MAX_CHUNK as u64
            && let Some((data, preserve)) = read_small_file(local, options.preserve).await?
        {
            return self
                .put_small_file(local, remote, data, preserve, options, progress)
                .await;
        }
        self.send(&Request::PutStart {
            path: remote.to_owned(),
            size,
            overwrite: options.overwrite,
            resume: options.resume,
            preserve: options
                .preserve
                .then(|| crate::pipeline::attributes_of(&meta)),
        })
        .await?;
        let offset = match self.reply().await {
            Ok(Response::PutReady { offset }) if offset <= size => offset,
            Ok(_) => return Err(Error::UnexpectedReply("expected PutReady")),
            // Resuming, a target that is already there whole is done, not an error.
            Err(Error::Remote {
                code: ErrorCode::AlreadyExists,
                ..
            }) if options.resume => {
                let (_, local_sum) = hash_prefix(file, size)
                    .await
                    .map_err(|e| Error::local(local, e))?;
                return self.done_if_same(remote, size, local_sum.digest()).await;
            }
            Err(err) => return Err(err),
        };
        let finished = async {
            let sent = self.send_file(file, local, size, offset, progress).await;
            // Stopping before PutFinish leaves the server waiting for the rest of the data.
            let checksum = sent.inspect_err(|_| self.in_step = false)?;
            self.send(&Request::PutFinish { checksum }).await?;
            self.expect_ok().await
        }
        .await;
        ended(progress, &finished);
        finished?;
        Ok(Transferred {
            size,
            resumed_from: offset,
        })
    }

    /// Uploads a small file read whole (`data`) with one `Put`, and waits for its answer.
    pub(super) async fn put_small_file(
        &mut self,
        local: &Path,
        remote: &str,
        data: bytes::Bytes,
        preserve: Option<crate::commands::Attributes>,
        options: TransferOptions,
        progress: &dyn Progress,
    ) -> Result<Transferred> {
        let size = data.len() as u64;
        progress.start(&display_name(local), size, 0);
        self.pace(data.len()).await;
        let sent = self
            .send(&Request::Put {
                path: remote.to_owned(),
                overwrite: options.overwrite,
                preserve,
                checksum: Checksum::of(&data),
                data,
            })
            .await;
        progress.advance(size);
        let answered = match sent {
            Ok(()) => self.expect_ok().await,
            Err(e) => Err(e),
        };
        ended(progress, &answered);
        answered?;
        Ok(Transferred {
            size,
            resumed_from: 0,
        })
    }

    /// Sends `file` from `offset` to `size` in data frames; returns the checksum of all of
    /// it (the server holds the first `offset` bytes already, and the checksum covers them).
    pub(super) async fn send_file(
        &mut self,
        file: std::fs::File,
        local: &Path,
        size: u64,
        offset: u64,
        progress: &dyn Progress,
    ) -> Result<Digest> {
        let (file, held) = hash_prefix(file, offset)
            .await
            .map_err(|e| Error::local(local, e))?;
        progress.start(&display_name(local), size, offset);
        let mut reader = FileReader::spawn(file, held, size - offset);
        // The caller ends the display, once the server has taken the file.
        self.send_data(&mut reader, local, progress).await?;
        reader.finish().await.map_err(|e| Error::local(local, e))
    }

    pub(super) async fn send_data(
        &mut self,
        reader: &mut FileReader,
        local: &Path,
        progress: &dyn Progress,
    ) -> Result<()> {
        let shrank = |e| {
            Error::local(
                local,
                format!("{e} (did the file shrink during the upload?)"),
            )
        };
        while let Some(data) = reader.next().await.map_err(shrank)? {
            let len = data.len() as u64;
            self.pace(data.len()).await;
            self.send(&Request::PutData { data }).await?;
            progress.advance(len);
        }
        Ok(())
    }
}
