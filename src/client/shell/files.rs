//! The file commands that take several paths, wildcards and trees.

use super::*;

impl Session {
    /// Uploads each of `typed` (local wildcards expanded) to `remote`; several sources go
    /// into `remote` as a directory (the current one without it).
    pub(super) async fn put_all(
        &mut self,
        typed: &[String],
        remote: Option<String>,
        flags: TransferFlags,
        follow_links: bool,
        io: &mut Output<'_>,
    ) -> std::result::Result<(), CommandError> {
        let (recursive, options) = (flags.recursive, flags.options(follow_links));
        self.limit_bandwidth(flags.bwlimit);
        let mut sources = Vec::new();
        for pattern in typed {
            sources.extend(expand_local(pattern).map_err(failed(format!("put {pattern}")))?);
        }
        if recursive {
            self.connect_helpers(flags.jobs, io.err).await;
        }
        // Several sources: the target is a directory they go into, as with cp.
        let remote = match remote {
            Some(dir) if sources.len() > 1 => {
                let resolved = self.resolve(&dir).map_err(failed(format!("put {dir}")))?;
                if !self.is_remote_dir(&resolved).await {
                    return Err(failed(format!("put {dir}"))(Error::Usage(
                        "not a directory: several files go into an existing directory".into(),
                    )));
                }
                Some(format!("{}/", dir.trim_end_matches('/')))
            }
            other => other,
        };
        for local in sources {
            self.put_one(&local, remote.as_deref(), recursive, options, io)
                .await?;
        }
        Ok(())
    }

    pub(super) async fn put_one(
        &mut self,
        local: &Path,
        remote: Option<&str>,
        recursive: bool,
        options: TransferOptions,
        io: &mut Output<'_>,
    ) -> std::result::Result<(), CommandError> {
        let ctx = format!("put {}", local.display());
        // -r over files and directories together (`put -r mix/*`): files go as files.
        let tree = recursive && local.is_dir();
        let target = if tree {
            // rsync's rule: `src` goes into the target as `target/src`, `src/` (its
            // contents) into the target itself.
            let name = (!names_contents(local.as_os_str().as_encoded_bytes()))
                .then(|| local_name(local).ok())
                .flatten();
            let dir = self
                .resolve(remote.unwrap_or(""))
                .map_err(failed(ctx.clone()))?;
            match name {
                Some(name) => RemotePath::parse(&dir)
                    .and_then(|dir| dir.join(&name))
                    .map_err(|e| failed(ctx.clone())(e.into()))?
                    .to_string(),
                None => dir,
            }
        } else {
            let name = local_name(local).map_err(failed(ctx.clone()))?;
            let mut target = self
                .resolve(remote.unwrap_or(&name))
                .map_err(failed(ctx.clone()))?;
            // Like cp: an existing directory receives the file under its own name.
            if remote.is_some() && self.is_remote_dir(&target).await {
                target = RemotePath::parse(&target)
                    .and_then(|dir| dir.join(&name))
                    .map_err(|e| failed(ctx.clone())(e.into()))?
                    .to_string();
            }
            target
        };
        if tree {
            let report = self
                .client
                .put_tree(local, &target, options, io.progress)
                .await
                .map_err(failed(ctx))?;
            warn_skipped(io.err, &report.skipped);
            Ok(())
        } else {
            self.client
                .put_file(local, &target, options, io.progress)
                .await
                .map(drop)
                .map_err(failed(ctx))
        }
    }

    /// Where a local tree `source` (as typed) goes under `remote` (as typed), by rsync's
    /// rule: `site` into `remote/site`, `site/` (its contents) into `remote` itself.
    pub(super) fn remote_tree_target(&self, source: &str, remote: &str) -> Result<String> {
        let dir = self.resolve(remote)?;
        let name = Path::new(source).file_name().and_then(|n| n.to_str());
        match name {
            Some(name) if !names_contents(source.as_bytes()) => {
                Ok(RemotePath::parse(&dir)?.join(name)?.to_string())
            }
            _ => Ok(dir),
        }
    }

    /// Downloads each of `typed` (remote wildcards expanded) to `local`; several sources go
    /// into `local` as a directory (the current one without it).
    pub(super) async fn get_all(
        &mut self,
        typed: &[String],
        local: Option<PathBuf>,
        flags: TransferFlags,
        io: &mut Output<'_>,
    ) -> std::result::Result<(), CommandError> {
        let (recursive, options) = (flags.recursive, flags.options(false));
        self.limit_bandwidth(flags.bwlimit);
        if recursive {
            self.connect_helpers(flags.jobs, io.err).await;
        }
        let mut sources = Vec::new();
        for pattern in typed {
            let ctx = format!("get {pattern}");
            let contents = names_contents(pattern.as_bytes());
            let expanded = self.expand_remote(pattern).await.map_err(failed(ctx))?;
            sources.extend(expanded.into_iter().map(|source| (source, contents)));
        }
        let several = sources.len() > 1;
        if several
            && let Some(dir) = &local
            && !dir.is_dir()
        {
            return Err(failed(format!("get {}", dir.display()))(Error::Usage(
                "not a directory: several files go into an existing directory".into(),
            )));
        }
        for (source, contents) in sources {
            let local = match &local {
                Some(dir) if several => {
                    let mut dir = dir.clone().into_os_string();
                    dir.push("/");
                    Some(PathBuf::from(dir))
                }
                other => other.clone(),
            };
            self.get_one(&source, contents, local, recursive, options, io)
                .await?;
        }
        Ok(())
    }

    /// Downloads `source`; `contents` (it was typed with a trailing `/`) puts a tree's
    /// contents into `local` rather than `local/NAME`, as rsync does.
    pub(super) async fn get_one(
        &mut self,
        source: &str,
        contents: bool,
        local: Option<PathBuf>,
        recursive: bool,
        options: TransferOptions,
        io: &mut Output<'_>,
    ) -> std::result::Result<(), CommandError> {
        let ctx = format!("get {}", source.trim_start_matches('/'));
        let name = remote_name(source).map_err(failed(ctx.clone()))?;
        // -r over files and directories together (`get -r 'mix/*'`): files come as files.
        let recursive = recursive && self.is_remote_dir(source).await;
        let local = match local {
            // rsync's rule for a tree: `src` into `local/src`, `src/` into `local` itself.
            Some(local) if recursive && contents => local,
            Some(local) if recursive => local.join(&name),
            None if recursive && contents => PathBuf::from("."),
            // Like cp: an existing directory receives the file under its own name.
            Some(local) if local.is_dir() => local.join(&name),
            Some(local) => local,
            None => PathBuf::from(name),
        };
        if recursive {
            let report = self
                .client
                .get_tree(source, &local, options, io.progress)
                .await
                .map_err(failed(ctx))?;
            warn_skipped(io.err, &report.skipped);
            Ok(())
        } else {
            self.client
                .get_file(source, &local, options, io.progress)
                .await
                .map(drop)
                .map_err(failed(ctx))
        }
    }

    /// `cat` and `get FILE... -`: each file to standard output as it arrives.
    pub(super) async fn cat(
        &mut self,
        typed: &[String],
        command: &str,
        io: &mut Output<'_>,
    ) -> std::result::Result<(), CommandError> {
        let out_failed = |e: std::io::Error| failed(command)(Error::Io(e));
        for pattern in typed {
            let ctx = format!("{command} {pattern}");
            for source in self.expand_remote(pattern).await.map_err(failed(&ctx))? {
                // What went to `out` before goes first, then the file's bytes straight to
                // the same descriptor.
                io.out.flush().map_err(out_failed)?;
                let stdout = std::os::fd::AsFd::as_fd(&std::io::stdout())
                    .try_clone_to_owned()
                    .map_err(out_failed)?;
                // A bar would mix with the data on a terminal.
                let progress: &dyn Progress = if io.terminal {
                    &crate::client::NoProgress
                } else {
                    io.progress
                };
                self.client
                    .get_into(&source, std::fs::File::from(stdout), progress)
                    .await
                    .map_err(failed(&ctx))?;
            }
        }
        Ok(())
    }

    /// `put - NAME`: standard input, of a size nobody knows in advance, kept in a private
    /// temporary file (unlinked, in `$TMPDIR`) until it ends, then uploaded as any file.
    pub(super) async fn put_stdin(
        &mut self,
        remote: &str,
        flags: TransferFlags,
        io: &mut Output<'_>,
    ) -> std::result::Result<(), CommandError> {
        let ctx = format!("put - {remote}");
        self.limit_bandwidth(flags.bwlimit);
        if !io.stdin {
            return Err(failed(ctx)(Error::Usage(
                "standard input carries the commands here; use put - NAME as a command of its own"
                    .into(),
            )));
        }
        let spooled =
            tokio::task::spawn_blocking(|| -> std::io::Result<tempfile::NamedTempFile> {
                let mut spool = tempfile::NamedTempFile::new()?;
                std::io::copy(&mut std::io::stdin().lock(), spool.as_file_mut())?;
                spool.as_file().sync_data()?;
                Ok(spool)
            })
            .await
            .map_err(std::io::Error::other)
            .and_then(|spooled| spooled)
            .map_err(|e| failed(&ctx)(Error::Io(e)))?;
        let target = self.resolve(remote).map_err(failed(&ctx))?;
        let options = TransferOptions {
            preserve: false,
            ..flags.options(false)
        };
        self.client
            .put_file(spooled.path(), &target, options, io.progress)
            .await
            .map(drop)
            .map_err(failed(ctx))
    }

    /// `ls`: each path a directory's listing (under its name when several are asked, as
    /// `ls` does) or the entry itself; wildcards list what matches.
    pub(super) async fn ls(
        &mut self,
        typed: &[String],
        style: ListingStyle,
        io: &mut Output<'_>,
    ) -> std::result::Result<(), CommandError> {
        let typed: Vec<String> = if typed.is_empty() {
            vec![String::new()]
        } else {
            typed.to_vec()
        };
        let write_failed = |e: std::io::Error| failed("ls")(e.into());
        let mut singles = Vec::new();
        let mut dirs = Vec::new();
        for path in &typed {
            let ctx = format!("ls {path}");
            let ctx = ctx.trim_end();
            let resolved = self.resolve(path).map_err(failed(ctx))?;
            let is_pattern = RemotePath::parse(&resolved)
                .ok()
                .and_then(|p| p.file_name().map(is_pattern))
                .unwrap_or(false);
            if is_pattern {
                for matched in self.expand_remote(path).await.map_err(failed(ctx))? {
                    let mut entry = self.client.stat(&matched).await.map_err(failed(ctx))?;
                    entry.name = display_name(path, &matched);
                    singles.push(entry);
                }
                continue;
            }
            if resolved.is_empty() || self.is_remote_dir(&resolved).await {
                dirs.push((path.clone(), resolved));
            } else {
                let mut entry = self.client.stat(&resolved).await.map_err(failed(ctx))?;
                entry.name = path.clone();
                singles.push(entry);
            }
        }
        singles.sort_by(|a, b| a.name.cmp(&b.name));
        // Named entries are shown whatever their names start with, as ls does.
        let shown = ListingStyle { all: true, ..style };
        write_listing(io.out, &singles, shown).map_err(write_failed)?;
        let headed = typed.len() > 1;
        for (i, (path, resolved)) in dirs.iter().enumerate() {
            let ctx = format!("ls {path}");
            let entries = self
                .client
                .list(resolved)
                .await
                .map_err(failed(ctx.trim_end()))?;
            if headed {
                if i > 0 || !singles.is_empty() {
                    writeln!(io.out).map_err(write_failed)?;
                }
                let name = if style.escape {
                    for_terminal(path)
                } else {
                    path.clone()
                };
                writeln!(io.out, "{name}:").map_err(write_failed)?;
            }
            write_listing(io.out, &entries, style).map_err(write_failed)?;
        }
        Ok(())
    }

    /// A remote path as typed, resolved; a wildcard in its last component (`*`, `?`,
    /// `[...]`) is matched against the listing of its directory, names sorted.
    pub(super) async fn expand_remote(&mut self, typed: &str) -> Result<Vec<String>> {
        let resolved = self.resolve(typed)?;
        let path = RemotePath::parse(&resolved)?;
        let Some(last) = path.file_name().filter(|n| is_pattern(n)) else {
            return Ok(vec![resolved]);
        };
        let pattern = glob::Pattern::new(last)
            .map_err(|e| Error::Usage(format!("bad wildcard {last:?}: {e}")))?;
        let dir = path.parent();
        let mut matched = Vec::new();
        for entry in self.client.list(&dir.to_string()).await? {
            // Hidden names only for a pattern that asks for them, as shells do.
            if entry.name.starts_with('.') && !last.starts_with('.') {
                continue;
            }
            if pattern.matches(&entry.name) {
                matched.push(dir.join(&entry.name)?.to_string());
            }
        }
        if matched.is_empty() {
            return Err(Error::Remote {
                code: crate::commands::ErrorCode::NotFound,
                message: "no match".into(),
            });
        }
        Ok(matched)
    }

    pub(super) async fn is_remote_dir(&mut self, path: &str) -> bool {
        matches!(self.client.stat(path).await, Ok(entry) if entry.kind == EntryKind::Directory)
    }
}

/// Where a remote tree `typed` (resolved: `resolved`) goes under the local `target`, by
/// rsync's rule: `:www` into `target/www`, `:www/` (its contents) into `target` itself.
pub(super) fn local_tree_target(typed: &str, resolved: &str, target: &str) -> PathBuf {
    let name = RemotePath::parse(resolved)
        .ok()
        .and_then(|p| p.file_name().map(str::to_owned));
    match name {
        Some(name) if !names_contents(typed.as_bytes()) && !typed.is_empty() => {
            Path::new(target).join(name)
        }
        _ => PathBuf::from(target),
    }
}

/// Whether a tree's path as typed names its contents (rsync's trailing slash: `src/`, and
/// `.` or `..`, which name no directory of their own) rather than the directory itself.
pub(super) fn names_contents(typed: &[u8]) -> bool {
    typed.ends_with(b"/") || typed == b"." || typed == b".." || typed.ends_with(b"/.")
}

/// A matched path shown as the person typed its directory: `ls docs/*.txt` shows
/// `docs/a.txt`, `ls *.txt` shows `a.txt`.
pub(super) fn display_name(typed: &str, matched: &str) -> String {
    let name = matched.rsplit('/').next().unwrap_or(matched);
    match typed.rfind('/') {
        Some(i) => format!("{}{name}", &typed[..=i]),
        None => name.to_owned(),
    }
}

pub(super) fn local_name(local: &Path) -> Result<String> {
    local
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| Error::local(local, "has no file name to use remotely; name the target"))
}

/// True for a name with wildcard characters.
pub(super) fn is_pattern(name: &str) -> bool {
    name.contains(['*', '?', '['])
}

/// A local path as typed: itself if it exists (or has no wildcard), else what its
/// wildcards match, sorted.
pub(super) fn expand_local(typed: &str) -> Result<Vec<PathBuf>> {
    let path = PathBuf::from(typed);
    if !is_pattern(typed) || path.symlink_metadata().is_ok() {
        return Ok(vec![path]);
    }
    let matches = glob::glob(typed).map_err(|e| Error::Usage(format!("bad wildcard: {e}")))?;
    let mut found: Vec<PathBuf> = matches.filter_map(std::result::Result::ok).collect();
    found.sort();
    if found.is_empty() {
        return Err(Error::local(&path, "no match"));
    }
    Ok(found)
}

pub(super) fn remote_name(remote: &str) -> Result<String> {
    RemotePath::parse(remote)?
        .file_name()
        .map(str::to_owned)
        .ok_or_else(|| Error::Usage("the home directory has no name; name the local target".into()))
}
