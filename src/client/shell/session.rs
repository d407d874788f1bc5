//! A logged-in session: its connection, working directory and the dispatch of one command.

use super::*;
use crate::authorized_key::AuthorizedKey;

/// A logged-in connection with a remote working directory. A connection that was lost (the
/// server timed it out, or a transfer stopped half way and left it out of step) is replaced
/// before the next command, with the same saved login, keeping the working directory.
pub struct Session {
    /// The connection.
    pub client: Client,
    /// Who is logged in.
    pub user: Username,
    /// The server's address.
    pub server: String,
    /// The remote working directory (`cd`).
    pub cwd: RemotePath,
    /// Where the saved login came from, and how the server was trusted: what connecting
    /// again needs.
    pub(super) store: CredentialStore,
    pub(super) known_hosts: KnownHosts,
    pub(super) unknown: UnknownServer,
    /// The last command failed in a way that ends a connection (see [`Error::kind`]).
    pub(super) lost: bool,
    /// The parser of shell lines, built once: building clap's command tree took most of
    /// the client's time per line in batch mode.
    pub(super) line_parser: clap::Command,
}

impl Session {
    /// Connects with the saved login for `server` (or the most recent one).
    ///
    /// # Errors
    /// As [`connect_saved`].
    pub async fn connect(
        store: &CredentialStore,
        server: Option<&str>,
        known_hosts: KnownHosts,
        unknown: UnknownServer,
    ) -> Result<Self> {
        let (client, saved) =
            connect_saved(store, server, known_hosts.clone(), unknown.clone()).await?;
        Ok(Session {
            client,
            user: saved.user,
            server: saved.server,
            cwd: RemotePath::default(),
            store: store.clone(),
            known_hosts,
            unknown,
            lost: false,
            line_parser: <ShellLine as clap::CommandFactory>::command(),
        })
    }

    /// Connects again if the connection was lost; the saved login must still be for the
    /// same user, or the working directory would mean something else.
    pub(super) async fn reconnect_if_lost(&mut self) -> std::result::Result<(), CommandError> {
        if !self.lost && self.client.is_ready().await {
            return Ok(());
        }
        let reconnect = async {
            let (client, saved) = connect_saved(
                &self.store,
                Some(&self.server),
                self.known_hosts.clone(),
                self.unknown.clone(),
            )
            .await?;
            if saved.user != self.user {
                return Err(Error::Usage(format!(
                    "the saved login for {} is now {}; start ftpc again",
                    self.server, saved.user
                )));
            }
            Ok(client)
        };
        self.client = reconnect.await.map_err(failed("reconnect"))?;
        self.lost = false;
        Ok(())
    }

    /// Gives the connection the helpers a tree transfer over `jobs` connections needs
    /// (connecting more with the saved login, or dropping some). If the server takes fewer
    /// (its limit of sessions per user, say), the transfer runs on those it took, with a
    /// warning.
    pub(super) async fn connect_helpers(&mut self, jobs: usize, err: &mut dyn Write) {
        let wanted = jobs.saturating_sub(1);
        let have = self.client.keep_helpers(wanted).await;
        let connects = (have..wanted).map(|_| {
            connect_saved(
                &self.store,
                Some(&self.server),
                self.known_hosts.clone(),
                self.unknown.clone(),
            )
        });
        let mut refusal = None;
        for connected in futures_util::future::join_all(connects).await {
            match connected {
                // The same user, or the work would go into someone else's tree.
                Ok((helper, saved)) if saved.user == self.user => {
                    self.client.add_helpers([helper]);
                }
                Ok(_) => {}
                Err(e) => {
                    refusal.get_or_insert(e);
                }
            }
        }
        if let Some(e) = refusal {
            let _ = writeln!(
                err,
                "warning: {} of {jobs} connections: {}",
                self.client.keep_helpers(wanted).await + 1,
                for_terminal(&e.to_string())
            );
        }
    }

    /// The `--bwlimit` of the command about to run, on this connection and its helpers
    /// (none: no limit, whatever the command before had).
    pub(super) fn limit_bandwidth(&mut self, rate: Option<u64>) {
        let limit = rate.map(|rate| {
            std::sync::Arc::new(crate::client::bandwidth::Bandwidth::new(
                rate,
                crate::commands::MAX_CHUNK as u64,
            ))
        });
        self.client.set_bandwidth(limit);
    }

    /// Remembers whether `outcome` ended the connection.
    pub(super) fn note<T>(&mut self, outcome: &std::result::Result<T, CommandError>) {
        if let Err(failure) = outcome
            && failure.error.kind() == ErrorKind::Connection
        {
            self.lost = true;
        }
    }

    /// A remote path as typed, resolved against the working directory.
    ///
    /// # Errors
    /// [`Error::Path`] for a path that is malformed or leaves the home.
    pub fn resolve(&self, path: &str) -> Result<String> {
        let joined = if path.starts_with('/') || self.cwd.is_home() {
            path.to_owned()
        } else if path.is_empty() {
            self.cwd.to_string()
        } else {
            format!("{}/{path}", self.cwd)
        };
        Ok(RemotePath::parse(&joined)?.to_string())
    }

    /// Runs one file command, connecting again first if the connection was lost.
    ///
    /// # Errors
    /// [`CommandError`] naming the command and the path as typed.
    pub async fn execute(
        &mut self,
        command: FileCommand,
        io: &mut Output<'_>,
    ) -> std::result::Result<(), CommandError> {
        self.reconnect_if_lost().await?;
        let outcome = self.run(command, io).await;
        self.note(&outcome);
        outcome
    }

    pub(super) async fn run(
        &mut self,
        command: FileCommand,
        io: &mut Output<'_>,
    ) -> std::result::Result<(), CommandError> {
        match command {
            FileCommand::Ls {
                long,
                all,
                human,
                null,
                paths,
                ..
            } => {
                let style = ListingStyle {
                    long,
                    all,
                    human,
                    null,
                    escape: io.terminal && !null,
                };
                self.ls(&paths, style, io).await
            }
            FileCommand::Stat { path } => {
                let entry = async { self.client.stat(&self.resolve(&path)?).await }
                    .await
                    .map_err(failed(format!("stat {path}")))?;
                write_stat(io.out, &entry).map_err(|e| failed("stat")(e.into()))
            }
            FileCommand::Mkdir { parents, paths } => {
                for path in paths {
                    async { self.client.mkdir(&self.resolve(&path)?, parents).await }
                        .await
                        .map_err(failed(format!("mkdir {path}")))?;
                }
                Ok(())
            }
            FileCommand::Rm {
                recursive,
                force,
                paths,
            } => {
                for typed in paths {
                    let ctx = format!("rm {typed}");
                    let expanded = match self.expand_remote(&typed).await {
                        Err(e) if force && is_not_found(&e) => continue,
                        other => other.map_err(failed(&ctx))?,
                    };
                    for path in expanded {
                        match self.client.remove(&path, recursive).await {
                            Err(e) if force && is_not_found(&e) => {}
                            other => other.map_err(failed(&ctx))?,
                        }
                    }
                }
                Ok(())
            }
            FileCommand::Rmdir { paths } => {
                for path in paths {
                    async { self.client.rmdir(&self.resolve(&path)?).await }
                        .await
                        .map_err(failed(format!("rmdir {path}")))?;
                }
                Ok(())
            }
            FileCommand::Mv { force, from, to } => {
                let (source, target) = match (self.resolve(&from), self.resolve(&to)) {
                    (Ok(source), Ok(target)) => (source, target),
                    (Err(e), _) => return Err(failed(format!("mv {from}"))(e)),
                    (_, Err(e)) => return Err(failed(format!("mv {to}"))(e)),
                };
                match self.client.rename(&source, &target, force).await {
                    // The source is there: what is missing is the target's directory.
                    Err(e) if is_not_found(&e) && self.client.stat(&source).await.is_ok() => {
                        Err(failed(format!("mv {to}"))(e))
                    }
                    outcome => outcome.map_err(failed(format!("mv {from}"))),
                }
            }
            FileCommand::Put {
                flags,
                follow_links,
                mut paths,
            } => {
                if let [dash, remote] = paths.as_slice()
                    && dash == "-"
                {
                    return self.put_stdin(remote, flags, io).await;
                }
                let remote = (paths.len() > 1).then(|| paths.pop()).flatten();
                self.put_all(&paths, remote, flags, follow_links, io).await
            }
            FileCommand::Mput {
                flags,
                follow_links,
                paths,
            } => self.put_all(&paths, None, flags, follow_links, io).await,
            FileCommand::Get { flags, mut paths } => {
                if paths.len() > 1 && paths.last().is_some_and(|p| p == "-") {
                    paths.pop();
                    return self.cat(&paths, "get", io).await;
                }
                let local = (paths.len() > 1)
                    .then(|| paths.pop().map(PathBuf::from))
                    .flatten();
                self.get_all(&paths, local, flags, io).await
            }
            FileCommand::Mget { flags, paths } => self.get_all(&paths, None, flags, io).await,
            FileCommand::Cat { paths } => self.cat(&paths, "cat", io).await,
            FileCommand::Sync {
                delete,
                dry_run,
                checksum,
                exclude,
                copy_links,
                links,
                bwlimit,
                jobs,
                source,
                target,
            } => {
                let ctx = format!("sync {source}");
                if !dry_run {
                    self.connect_helpers(jobs, io.err).await;
                }
                self.limit_bandwidth(bwlimit);
                let started = std::time::Instant::now();
                let options = crate::client::sync::SyncOptions {
                    delete,
                    dry_run,
                    checksum,
                    follow_links: copy_links,
                    keep_links: links,
                    exclude: patterns(&exclude).map_err(failed(&ctx))?,
                };
                let report = match (source.strip_prefix(':'), target.strip_prefix(':')) {
                    (None, Some(remote)) => {
                        let remote = self
                            .remote_tree_target(&source, remote)
                            .map_err(failed(&ctx))?;
                        self.client
                            .sync_up(Path::new(&source), &remote, &options, io.progress)
                            .await
                    }
                    (Some(remote), None) => {
                        let resolved = self.resolve(remote).map_err(failed(&ctx))?;
                        let local = local_tree_target(remote, &resolved, &target);
                        self.client
                            .sync_down(&resolved, &local, &options, io.progress)
                            .await
                    }
                    _ => Err(Error::Usage(
                        "one side is local, the other remote, written with a leading `:` \
                         (sync DIR :REMOTE uploads, sync :REMOTE DIR downloads)"
                            .into(),
                    )),
                }
                .map_err(failed(&ctx))?;
                warn_skipped(io.err, &report.skipped);
                if report.links > 0 {
                    let _ = writeln!(
                        io.err,
                        "left out {} symlinks (sync -l keeps them as links, -L sends what they \
                         point to)",
                        report.links
                    );
                }
                let downloading = source.starts_with(':');
                write_sync_report(io.out, &report, dry_run, downloading, started.elapsed())
                    .map_err(|e| failed("sync")(e.into()))
            }
            FileCommand::Check {
                exclude,
                local,
                remote,
            } => {
                let ctx = format!("check {local}");
                let Some(remote) = remote.strip_prefix(':') else {
                    return Err(failed(ctx)(Error::Usage(
                        "check LOCAL :REMOTE (the remote side written with a leading `:`)".into(),
                    )));
                };
                let exclude = patterns(&exclude).map_err(failed(&ctx))?;
                // The same rule as sync's, so `check` compares what `sync` made.
                let remote = self
                    .remote_tree_target(&local, remote)
                    .map_err(failed(&ctx))?;
                let report = self
                    .client
                    .check(Path::new(&local), &remote, &exclude)
                    .await
                    .map_err(failed(&ctx))?;
                write_check_report(io.out, &report).map_err(|e| failed("check")(e.into()))?;
                let differing =
                    report.differ.len() + report.only_local.len() + report.only_remote.len();
                if differing > 0 {
                    return Err(failed(ctx)(Error::TreesDiffer(differing)));
                }
                Ok(())
            }
            FileCommand::Keys { action } => self.keys(action, io).await,
            FileCommand::Df => {
                let usage = self.client.disk_usage().await.map_err(failed("df"))?;
                let (used, entries) = (usage.used, usage.entries);
                let mut line = match usage.quota {
                    Some(quota) => format!(
                        "used {} of {} ({:.1}%)",
                        format_size(used),
                        format_size(quota),
                        used as f64 * 100.0 / quota.max(1) as f64
                    ),
                    None => format!("used {} (no quota)", format_size(used)),
                };
                if let Some(max) = usage.max_entries {
                    line.push_str(&format!("; {entries} of {max} files and directories"));
                }
                writeln!(io.out, "{line}").map_err(|e| failed("df")(e.into()))
            }
        }
    }
}

impl Session {
    /// `keys`: lists, adds or removes the user's SSH keys for SFTP.
    async fn keys(
        &mut self,
        action: Option<KeysAction>,
        io: &mut Output<'_>,
    ) -> std::result::Result<(), CommandError> {
        let written = |e: std::io::Error| failed("keys")(e.into());
        match action.unwrap_or(KeysAction::List) {
            KeysAction::List => {
                let keys = self.client.keys().await.map_err(failed("keys"))?;
                if keys.is_empty() {
                    writeln!(
                        io.err,
                        "no SSH keys yet: `keys add ~/.ssh/id_ed25519.pub` adds one"
                    )
                    .map_err(written)?;
                }
                for key in keys {
                    writeln!(io.out, "{}", key.describe()).map_err(written)?;
                }
                Ok(())
            }
            KeysAction::Add { file } => {
                let shown = for_terminal(&file.display().to_string());
                let context = format!("keys add {shown}");
                let text = crate::authorized_key::read_file(&file)
                    .map_err(|e| failed(context.clone())(Error::local(&file, e)))?;
                let keys = AuthorizedKey::parse_lines(&text)
                    .map_err(|e| failed(context.clone())(Error::Usage(e.to_string())))?;
                for key in keys {
                    self.client
                        .add_key(&key)
                        .await
                        .map_err(failed(context.clone()))?;
                    writeln!(io.out, "added {}", key.describe()).map_err(written)?;
                }
                Ok(())
            }
            KeysAction::Del { fingerprint } => {
                let context = format!("keys del {}", for_terminal(&fingerprint));
                self.client
                    .delete_key(&fingerprint)
                    .await
                    .map_err(failed(context))?;
                Ok(())
            }
        }
    }
}
