//! Trees both ways: directories first, then files spread over the connection and its helpers, small ones several at once.

use super::*;

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// Uploads a local directory tree into `remote` (created if missing): first the
    /// directories, then the files, spread over this connection and its helpers
    /// ([`Client::add_helpers`]); small files go several at once on each connection
    /// ([`Request::Put`]), the rest one after another.
    ///
    /// # Errors
    /// The first failure; files before it stay uploaded, and so may files sent after it
    /// before its answer came.
    pub async fn put_tree(
        &mut self,
        local: &Path,
        remote: &str,
        options: TransferOptions,
        progress: &dyn Progress,
    ) -> Result<TreeReport> {
        let mut report = TreeReport::default();
        let uploads = self
            .make_remote_dirs(local, remote, options, &mut report)
            .await?;
        report.files = uploads.len() as u64;
        report.bytes = self.send_files(&uploads, options, progress).await?;
        Ok(report)
    }

    /// Walks the local tree `local`, making each directory under `remote` as it goes; the
    /// files found, to upload.
    pub(super) async fn make_remote_dirs(
        &mut self,
        local: &Path,
        remote: &str,
        options: TransferOptions,
        report: &mut TreeReport,
    ) -> Result<Vec<PendingUpload>> {
        use std::os::unix::fs::MetadataExt;
        let mut uploads = Vec::new();
        let mut pending = vec![(local.to_owned(), remote.to_owned())];
        // Directories entered, by device and inode: a followed link back up is a loop.
        let mut entered = std::collections::HashSet::new();
        if let Ok(meta) = std::fs::metadata(local) {
            entered.insert((meta.dev(), meta.ino()));
        }
        while let Some((dir, remote_dir)) = pending.pop() {
            self.mkdir(&remote_dir, true).await?;
            let mut entries: Vec<_> = std::fs::read_dir(&dir)
                .map_err(|e| Error::local(&dir, e))?
                .collect::<std::io::Result<_>>()
                .map_err(|e| Error::local(&dir, e))?;
            entries.sort_by_key(|e| e.file_name());
            for entry in entries {
                let path = entry.path();
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    report
                        .skipped
                        .push(format!("{}: name is not UTF-8", path.display()));
                    continue;
                };
                let meta = if entry.file_type().is_ok_and(|t| t.is_symlink()) {
                    if !options.follow_links {
                        report
                            .skipped
                            .push(format!("{}: a symlink (-L follows them)", path.display()));
                        continue;
                    }
                    match std::fs::metadata(&path) {
                        Ok(meta) if meta.is_dir() && !entered.insert((meta.dev(), meta.ino())) => {
                            report.skipped.push(format!(
                                "{}: a symlink to a directory already copied (a loop)",
                                path.display()
                            ));
                            continue;
                        }
                        Ok(meta) => meta,
                        Err(e) => {
                            report.skipped.push(format!("{}: {e}", path.display()));
                            continue;
                        }
                    }
                } else {
                    let meta = entry.metadata().map_err(|e| Error::local(&path, e))?;
                    if meta.is_dir() {
                        entered.insert((meta.dev(), meta.ino()));
                    }
                    meta
                };
                let target = remote_child(&remote_dir, &name);
                if meta.is_dir() {
                    pending.push((path, target));
                } else if meta.is_file() {
                    uploads.push(PendingUpload {
                        local: path,
                        remote: target,
                        size: meta.len(),
                    });
                } else {
                    report
                        .skipped
                        .push(format!("{}: not a regular file", path.display()));
                }
            }
        }
        Ok(uploads)
    }

    /// Uploads `uploads` into directories that exist, spread over this connection and its
    /// helpers, under one display; the bytes sent.
    ///
    /// # Errors
    /// The first failure, once every connection's uploads in flight are answered.
    pub(in crate::client) async fn send_files(
        &mut self,
        uploads: &[PendingUpload],
        options: TransferOptions,
        progress: &dyn Progress,
    ) -> Result<u64> {
        let bytes = uploads.iter().map(|u| u.size).fold(0, u64::saturating_add);
        as_whole_tree(progress, uploads.len(), bytes, async |progress| {
            self.spread(uploads, async |client, shared| {
                client.send_shared(shared, options, progress).await
            })
            .await
        })
        .await
    }

    /// One connection's part of [`Client::send_files`]: uploads taken from `shared` until
    /// none are left; every upload sent is answered before this returns, failure or not,
    /// so the connection stays in step.
    pub(super) async fn send_shared(
        &mut self,
        shared: &SharedWork<'_, PendingUpload>,
        options: TransferOptions,
        progress: &dyn Progress,
    ) -> Result<u64> {
        let mut flight = PutsInFlight::default();
        let mut bytes = 0;
        let sent = async {
            while let Some(upload) = shared.take() {
                bytes += self
                    .send_one(
                        &upload.local,
                        upload.remote.clone(),
                        options,
                        &mut flight,
                        progress,
                    )
                    .await?;
            }
            Ok(())
        }
        .await;
        if sent.is_err() && !self.in_step {
            return sent.map(|()| bytes);
        }
        let answered = self.answer_puts(&mut flight).await;
        sent?;
        answered?;
        Ok(bytes)
    }

    /// Uploads one file of a tree: a small one whole, without waiting for its answer
    /// (several in flight); a larger one (or a resume, which must ask where to continue)
    /// streamed, once the answers in flight are read. The bytes sent.
    pub(in crate::client) async fn send_one(
        &mut self,
        path: &Path,
        target: String,
        options: TransferOptions,
        flight: &mut PutsInFlight,
        progress: &dyn Progress,
    ) -> Result<u64> {
        let whole = if options.resume {
            None
        } else {
            read_small_file(path, options.preserve).await?
        };
        if let Some((data, preserve)) = whole {
            let size = data.len() as u64;
            progress.start(&display_name(path), size, 0);
            let sent = self
                .send_whole(flight, target, data, preserve, options)
                .await;
            progress.advance(size);
            progress.finish();
            sent?;
            return Ok(size);
        }
        self.answer_puts(flight).await?;
        let done = self
            .put_file(path, &target, options, progress)
            .await
            .map_err(|e| naming(&target, e))?;
        Ok(done.size - done.resumed_from)
    }

    /// Sends a whole small file without waiting for its answer; first reads answers while
    /// the window is full. A refusal is kept to be returned once all sent are answered.
    pub(super) async fn send_whole(
        &mut self,
        flight: &mut PutsInFlight,
        target: String,
        data: bytes::Bytes,
        preserve: Option<crate::commands::Attributes>,
        options: TransferOptions,
    ) -> Result<()> {
        while flight.targets.len() >= PUTS_IN_FLIGHT || flight.bytes >= PUT_BYTES_IN_FLIGHT {
            self.answer_one_put(flight).await?;
        }
        if let Some(err) = flight.refused.take() {
            self.answer_puts(flight).await?;
            return Err(err);
        }
        let len = data.len();
        self.pace(len).await;
        self.send(&Request::Put {
            path: target.clone(),
            overwrite: options.overwrite,
            preserve,
            checksum: Checksum::of(&data),
            data,
        })
        .await?;
        flight.targets.push_back((target, len));
        flight.bytes += len;
        Ok(())
    }

    /// Reads the answer to the oldest whole-file upload in flight.
    pub(super) async fn answer_one_put(&mut self, flight: &mut PutsInFlight) -> Result<()> {
        let Some((target, len)) = flight.targets.pop_front() else {
            return Ok(());
        };
        flight.bytes -= len;
        match self.expect_ok().await {
            Ok(()) => Ok(()),
            Err(err @ Error::Remote { .. }) => {
                flight.refused.get_or_insert(naming(&target, err));
                Ok(())
            }
            Err(err) => Err(naming(&target, err)),
        }
    }

    /// Reads the answers to every whole-file upload in flight; the first refusal.
    pub(in crate::client) async fn answer_puts(&mut self, flight: &mut PutsInFlight) -> Result<()> {
        while !flight.targets.is_empty() {
            self.answer_one_put(flight).await?;
        }
        match flight.refused.take() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// Downloads a remote directory tree into the local directory `local` (created if
    /// missing).
    ///
    /// # Errors
    /// The first failure; files before it stay downloaded.
    pub async fn get_tree(
        &mut self,
        remote: &str,
        local: &Path,
        options: TransferOptions,
        progress: &dyn Progress,
    ) -> Result<TreeReport> {
        let mut report = TreeReport::default();
        // The target itself is the user's choice; beneath it, only directories made here
        // or found as real directories (never a link someone planted) are entered.
        tokio::fs::create_dir_all(local)
            .await
            .map_err(|e| Error::local(local, e))?;
        // One request lists the whole tree (names checked by `list_tree`), a directory
        // before what it holds: each is made (or entered) before anything goes into it.
        let mut downloads = Downloads::into(local);
        for entry in self.list_tree(remote).await? {
            let source = remote_child(remote, &entry.name);
            let target = local.join(&entry.name);
            match entry.kind {
                EntryKind::Directory => enter_local_dir(&target).await?,
                EntryKind::File if options.resume => {
                    // Each resume asks where its own partial file ends: one at a time.
                    let done = self
                        .get_file(&source, &target, options, progress)
                        .await
                        .map_err(|e| naming(&source, e))?;
                    report.files += 1;
                    report.bytes += done.size - done.resumed_from;
                }
                EntryKind::File => downloads.add(source, entry.size, &target),
                EntryKind::Symlink | EntryKind::Other => {
                    report.skipped.push(format!("{source}: not a regular file"));
                }
            }
        }
        report.files += downloads.len() as u64;
        report.bytes += self.get_all(downloads, options, progress).await?;
        Ok(report)
    }

    /// Downloads `downloads` in batches of a directory's files, spread over this connection
    /// and its helpers, under one display; the bytes received.
    ///
    /// # Errors
    /// As [`Client::get_files`]; batches after the failing one are not started.
    pub(in crate::client) async fn get_all(
        &mut self,
        downloads: Downloads,
        options: TransferOptions,
        progress: &dyn Progress,
    ) -> Result<u64> {
        // Each directory opened without following links, and the partial files that
        // earlier downloads left there: one read of each.
        let mut opened = Vec::with_capacity(downloads.by_dir.len());
        for dir in downloads.by_dir.keys() {
            let (root, owned) = (downloads.root.clone(), dir.clone());
            let found = tokio::task::spawn_blocking(move || {
                let opened = LocalDir::open(&root, &owned)?;
                let stale = partial::all_ours(&opened.path)?;
                Ok::<_, std::io::Error>((opened, stale))
            })
            .await
            .map_err(std::io::Error::other)
            .and_then(|found| found)
            .map_err(|e| Error::local(dir, e))?;
            opened.push(found);
        }
        let mut batches = Vec::new();
        for ((dir, files), (opened, stale)) in downloads.by_dir.iter().zip(&opened) {
            for files in files.chunks(FILES_PER_BATCH) {
                batches.push(Batch {
                    dir,
                    opened,
                    files,
                    stale,
                });
            }
        }
        as_whole_tree(
            progress,
            downloads.len(),
            downloads.bytes,
            async |progress| {
                self.spread(&batches, async |client, shared| {
                    let mut bytes = 0;
                    while let Some(batch) = shared.take() {
                        bytes += client.get_files(batch, options, progress).await?;
                    }
                    Ok(bytes)
                })
                .await
            },
        )
        .await
    }

    /// Downloads the files of `batch` (remote path, local name) into its local directory,
    /// several asked for at once; each goes to a fresh partial file, is checked, synced (the
    /// syncs of several at once) and renamed into place, and the stale partial files of its
    /// name go. The bytes received.
    ///
    /// # Errors
    /// The first failure, once what was asked for before it has been received (the
    /// connection stays in step); files renamed into place before it stay.
    pub(super) async fn get_files(
        &mut self,
        batch: &Batch<'_>,
        options: TransferOptions,
        progress: &dyn Progress,
    ) -> Result<u64> {
        self.get_files_into(batch, options, progress)
            .await
            .map_err(|err| shown_in(err, batch.opened, batch.dir))
    }

    /// [`Client::get_files`], every file operation through the directory's handle.
    pub(super) async fn get_files_into(
        &mut self,
        batch: &Batch<'_>,
        options: TransferOptions,
        progress: &dyn Progress,
    ) -> Result<u64> {
        let (files, dir) = (batch.files, batch.opened.path.as_path());
        let mut asked = 0;
        let mut bytes = 0;
        let mut first_failure: Option<Error> = None;
        let mut finishing = tokio::task::JoinSet::new();
        // Bytes of small files held in memory by the downloads finishing.
        let mut held = 0u64;
        for (i, (source, name)) in files.iter().enumerate() {
            // Ask ahead, up to the window, unless a failure stopped the asking.
            while first_failure.is_none() && asked < files.len() && asked < i + GETS_IN_FLIGHT {
                let (source, name) = &files[asked];
                let target = dir.join(name);
                // A local `stat`: here, not a hop to the blocking pool (as the server does).
                if !options.overwrite && std::fs::symlink_metadata(&target).is_ok() {
                    first_failure = Some(Error::local(
                        &target,
                        "already exists (use -f to replace it)",
                    ));
                    break;
                }
                self.send(&Request::Get {
                    path: source.clone(),
                    offset: 0,
                })
                .await?;
                asked += 1;
            }
            if i >= asked {
                break;
            }
            match self.receive_whole(name, dir, options, progress).await {
                Ok(received) => {
                    bytes += received.size;
                    let (target, overwrite) = (dir.join(name), options.overwrite);
                    let stale: Vec<PathBuf> = batch
                        .stale
                        .iter()
                        .filter(|p| partial::is_partial_of(p, name))
                        .cloned()
                        .collect();
                    let holds = received.held_bytes();
                    held += holds;
                    finishing.spawn_blocking(move || {
                        (holds, finish_download(received, target, overwrite, stale))
                    });
                    while finishing.len() >= SYNCS_AT_ONCE || held > HELD_AT_ONCE {
                        let Some(done) = finishing.join_next().await else {
                            // None left (one that panicked could not say what it held).
                            held = 0;
                            break;
                        };
                        held = held.saturating_sub(joined(done, &mut first_failure));
                    }
                }
                // The server refused this one; the others asked for come all the same.
                Err(err @ Error::Remote { .. }) => {
                    first_failure.get_or_insert(naming(source, err));
                }
                Err(err) => return Err(naming(source, err)),
            }
        }
        while let Some(done) = finishing.join_next().await {
            joined(done, &mut first_failure);
        }
        match first_failure {
            Some(err) => Err(err),
            None => Ok(bytes),
        }
    }

    /// Receives the answer to a `Get` from offset 0 for a fresh partial file in `dir`: what
    /// [`finish_download`] needs to check, write (a small file's data is held until then),
    /// sync and rename it.
    pub(super) async fn receive_whole(
        &mut self,
        name: &str,
        dir: &Path,
        options: TransferOptions,
        progress: &dyn Progress,
    ) -> Result<ReceivedFile> {
        let (size, attributes) = match self.reply().await? {
            Response::GetReady {
                size,
                offset: 0,
                attributes,
            } => (size, attributes),
            _ => {
                // Whatever the server sends next is not known to belong to anything.
                self.in_step = false;
                return Err(Error::UnexpectedReply("expected GetReady from offset 0"));
            }
        };
        let (part, file) = match partial::create(dir, name) {
            Ok(created) => created,
            Err(err) => {
                // The server is sending already: the connection cannot be used again.
                self.in_step = false;
                return Err(Error::local(dir, err));
            }
        };
        progress.start(name, size, 0);
        let mut sink = FileSink::new(file, Checksum::new(), size);
        let received = self.receive_data(&mut sink, size, &part, progress).await;
        progress.finish();
        let data = sink.end().await;
        match received {
            Ok(theirs) => Ok(ReceivedFile {
                size,
                part,
                data,
                theirs,
                attributes: attributes.filter(|_| options.preserve),
            }),
            Err(err) => {
                drop(data);
                let _ = std::fs::remove_file(&part);
                Err(err)
            }
        }
    }
}
