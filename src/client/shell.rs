//! What a person runs on their files: the commands shared by one-shot `ftpc CMD ...` and
//! the interactive shell (`ftpc shell`), the shell itself with its remote working directory,
//! line editing, history and tab completion, and batch mode (`ftpc shell -b FILE`).
//!
//! Output goes to the writers the caller passes, so the binary stays glue and tests can
//! read what a person would see.

use std::cell::RefCell;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use clap::{Parser, Subcommand};
use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};
use tokio::runtime::Runtime;

pub use super::failure::CommandError;
use super::failure::failed;
use super::parallel::{DEFAULT_JOBS, MAX_JOBS};
use super::transfer::{Progress, TransferOptions};
use super::{Client, CredentialStore, KnownHosts, UnknownServer, connect_saved};
use crate::commands::{Entry, EntryKind};
use crate::error::{Error, ErrorKind, Result};
use crate::paths::RemotePath;
use crate::sanitize::for_terminal;
use crate::size::format_size;
use crate::username::Username;

/// The file commands, the same in `ftpc CMD ...` and in the shell.
// The doc comments are clap's help text: `LOCAL [REMOTE]` is a usage line, not a link.
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Debug, Clone, Subcommand)]
pub enum FileCommand {
    /// List remote directories (or the entries named), one name a line; directories end in
    /// `/`, symlinks in `@`. Names starting with `.` only with -a. On a terminal, names are
    /// shown with control characters escaped; into a pipe, as they are (-0: each ended by
    /// NUL, for `xargs -0`).
    // -h is ls's --human-readable, as everywhere, so help is --help alone.
    #[command(disable_help_flag = true)]
    Ls {
        /// Print help.
        #[arg(long, action = clap::ArgAction::Help)]
        help: Option<bool>,
        /// Long format: type, size, modification time (local), name.
        #[arg(short = 'l')]
        long: bool,
        /// Also names starting with `.`.
        #[arg(short = 'a', long = "all")]
        all: bool,
        /// With -l, sizes as 1.5K, 23M, 4.0G.
        #[arg(short = 'h', long = "human-readable")]
        human: bool,
        /// End each name with NUL instead of a newline, and never escape it.
        #[arg(short = '0', long = "null")]
        null: bool,
        /// Remote paths, wildcards in the last component expanded from the listing (default:
        /// the current remote directory).
        #[arg(value_name = "PATH", add = super::complete::remote())]
        paths: Vec<String>,
    },
    /// Show type, size and modification time of a remote entry.
    Stat {
        /// Remote path.
        #[arg(add = super::complete::remote())]
        path: String,
    },
    /// Create remote directories.
    Mkdir {
        /// Also create missing parents; an existing directory is not an error.
        #[arg(short, long)]
        parents: bool,
        /// Remote paths.
        #[arg(required = true, value_name = "PATH", add = super::complete::remote())]
        paths: Vec<String>,
    },
    /// Remove remote files or symlinks (with -r, a directory and everything in it).
    Rm {
        /// Remove directories and their contents.
        #[arg(short, long)]
        recursive: bool,
        /// Nothing there, or no match, is not an error.
        #[arg(short, long)]
        force: bool,
        /// Remote paths (wildcards in the last component expanded from the listing).
        #[arg(required = true, value_name = "PATH", add = super::complete::remote())]
        paths: Vec<String>,
    },
    /// Remove empty remote directories.
    Rmdir {
        /// Remote paths.
        #[arg(required = true, value_name = "PATH", add = super::complete::remote())]
        paths: Vec<String>,
    },
    /// Rename or move within your remote tree (into TO if it is a directory).
    Mv {
        /// Replace an existing target.
        #[arg(short, long)]
        force: bool,
        /// Existing remote path.
        #[arg(add = super::complete::remote())]
        from: String,
        /// New remote path, or an existing directory to move into.
        #[arg(add = super::complete::remote())]
        to: String,
    },
    /// Upload a local file (with -r, a directory tree).
    Put {
        #[command(flatten)]
        flags: TransferFlags,
        /// With -r, follow symlinks to files and directories instead of skipping them.
        #[arg(short = 'L', long = "dereference")]
        follow_links: bool,
        /// LOCAL [REMOTE], or LOCAL... REMOTE-DIRECTORY: local files (wildcards `*`, `?`,
        /// `[...]` expanded) and the remote target (default: the local name, in the current
        /// remote directory). An existing directory receives a file under its own name. With
        /// -r, rsync's rule: `put -r src dest` makes dest/src, `put -r src/ dest` (a trailing
        /// `/` on the source) puts what src holds into dest itself.
        #[arg(required = true, value_name = "LOCAL... [REMOTE]", value_hint = clap::ValueHint::AnyPath)]
        paths: Vec<String>,
    },
    /// Upload local files (wildcards expanded) into the current remote directory.
    Mput {
        #[command(flatten)]
        flags: TransferFlags,
        /// With -r, follow symlinks to files and directories instead of skipping them.
        #[arg(short = 'L', long = "dereference")]
        follow_links: bool,
        /// Local files.
        #[arg(required = true, value_name = "LOCAL", value_hint = clap::ValueHint::AnyPath)]
        paths: Vec<String>,
    },
    /// Download remote files (wildcards expanded from the listing) into the current local
    /// directory.
    Mget {
        #[command(flatten)]
        flags: TransferFlags,
        /// Remote files.
        #[arg(required = true, value_name = "REMOTE", add = super::complete::remote())]
        paths: Vec<String>,
    },
    /// Download a remote file (with -r, a directory tree).
    Get {
        #[command(flatten)]
        flags: TransferFlags,
        /// REMOTE [LOCAL], or REMOTE... LOCAL-DIRECTORY: remote files (wildcards `*`, `?`,
        /// `[...]` in the last component expanded from the listing; quote them) and the local
        /// target (default: the remote name, in the current local directory). As for put:
        /// `get -r src dest` makes dest/src, `get -r src/ dest` fills dest.
        #[arg(required = true, value_name = "REMOTE... [LOCAL]", add = super::complete::remote())]
        paths: Vec<String>,
    },
    /// Write remote files to standard output, one after another (as `get FILE -`).
    Cat {
        /// Remote files (wildcards in the last component expanded from the listing).
        #[arg(required = true, value_name = "REMOTE", add = super::complete::remote())]
        paths: Vec<String>,
    },
    /// Show your disk usage and quota.
    Df,
    /// Copy only what is new or changed from one tree to the other: `sync LOCAL :REMOTE`
    /// uploads, `sync :REMOTE LOCAL` downloads (the side written with a leading `:` is the
    /// server's). rsync's rule: `sync site :www` makes www/site, `sync site/ :www` makes
    /// www hold what site holds (--delete then works inside that target alone). Files count as changed when size or modification time differ (with
    /// --checksum: size or contents); modification times are kept, so an interrupted sync
    /// run again sends only what it had not finished.
    Sync {
        /// Remove from the target what the source does not have.
        #[arg(long)]
        delete: bool,
        /// Say what would be done; change nothing.
        #[arg(short = 'n', long)]
        dry_run: bool,
        /// Compare contents (the server hashes its copies) instead of size and time. rsync
        /// spells it -c too; here -c is --continue, of put and get, so this is --checksum
        /// alone.
        #[arg(long)]
        checksum: bool,
        /// Leave out matching entries on both sides (a pattern without `/` matches names, one
        /// with `/` paths from the top); repeatable.
        #[arg(long, value_name = "GLOB")]
        exclude: Vec<String>,
        /// Follow local symlinks to files and directories and send what they point to (as
        /// rsync's -L); without it they are left out, and counted in one line.
        #[arg(short = 'L', long = "copy-links")]
        copy_links: bool,
        /// Keep symlinks as links on the other side (as rsync's -l), those that point
        /// inside the tree (as rsync's --safe-links: the others are left out and named); a
        /// server whose store keeps no links (an object store) refuses them.
        #[arg(short = 'l', long = "links", conflicts_with = "copy_links")]
        links: bool,
        /// At most RATE bytes a second over all connections (500K, 2M; a bare number is
        /// KiB, as rsync's).
        #[arg(long, value_name = "RATE", value_parser = rate)]
        bwlimit: Option<u64>,
        /// Move files over N connections at once (1 to 16).
        #[arg(short = 'j', long, value_name = "N", default_value_t = DEFAULT_JOBS, value_parser = jobs)]
        jobs: usize,
        /// The source tree.
        #[arg(add = super::complete::local_or_remote())]
        source: String,
        /// The target tree.
        #[arg(add = super::complete::local_or_remote())]
        target: String,
    },
    /// Report files that differ (size or checksum; nothing is downloaded) or exist on one
    /// side only: `check LOCAL :REMOTE`. Exit status 1 if any.
    Check {
        /// Leave out matching entries on both sides, as for sync; repeatable.
        #[arg(long, value_name = "GLOB")]
        exclude: Vec<String>,
        /// The local tree.
        #[arg(value_hint = clap::ValueHint::AnyPath)]
        local: String,
        /// The remote tree, written with a leading `:`.
        #[arg(add = super::complete::local_or_remote())]
        remote: String,
    },
}

/// Compiles `--exclude` patterns.
fn patterns(typed: &[String]) -> Result<Vec<glob::Pattern>> {
    typed
        .iter()
        .map(|p| {
            glob::Pattern::new(p)
                .map_err(|e| Error::Usage(format!("--exclude {}: {e}", for_terminal(p))))
        })
        .collect()
}

/// The options every transfer command takes.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct TransferFlags {
    /// Transfer directories and everything in them.
    #[arg(short, long)]
    pub recursive: bool,
    /// Replace existing targets.
    #[arg(short, long)]
    pub force: bool,
    /// Continue an interrupted transfer from what already arrived; files already there and
    /// identical are skipped.
    #[arg(short = 'c', long = "continue")]
    pub resume: bool,
    /// Keep modification times and permission bits.
    #[arg(short = 'p', long)]
    pub preserve: bool,
    /// With -r, move files over N connections at once (1 to 16).
    #[arg(short = 'j', long, value_name = "N", default_value_t = DEFAULT_JOBS, value_parser = jobs)]
    pub jobs: usize,
    /// At most RATE bytes a second over all connections (500K, 2M; a bare number is KiB,
    /// as rsync's).
    #[arg(long, value_name = "RATE", value_parser = rate)]
    pub bwlimit: Option<u64>,
}

/// `--bwlimit RATE`: bytes a second, with a unit (K, M, G) or, bare, KiB as rsync takes it.
fn rate(typed: &str) -> std::result::Result<u64, String> {
    let bytes = match typed.trim().parse::<u64>() {
        Ok(kib) => kib.checked_mul(1024).ok_or("too large")?,
        Err(_) => crate::size::parse_size(typed)?,
    };
    if bytes < super::bandwidth::MIN_RATE {
        return Err(format!(
            "at least {} bytes a second (1K)",
            super::bandwidth::MIN_RATE
        ));
    }
    Ok(bytes)
}

/// `-j N`: from 1 to [`MAX_JOBS`].
fn jobs(typed: &str) -> std::result::Result<usize, String> {
    match typed.parse::<usize>() {
        Ok(n) if (1..=MAX_JOBS).contains(&n) => Ok(n),
        _ => Err(format!("a number of connections from 1 to {MAX_JOBS}")),
    }
}

impl TransferFlags {
    /// The library's options for these flags.
    fn options(self, follow_links: bool) -> TransferOptions {
        TransferOptions {
            overwrite: self.force,
            resume: self.resume,
            follow_links,
            preserve: self.preserve,
        }
    }
}

/// What a sync did: each action when dry (nothing was done), then one summary line; a dry
/// run moved nothing, so it has no time or rate to tell.
fn write_sync_report(
    out: &mut dyn Write,
    report: &super::sync::SyncReport,
    dry_run: bool,
    downloading: bool,
    took: std::time::Duration,
) -> std::io::Result<()> {
    if dry_run {
        for action in &report.actions {
            writeln!(out, "{}", for_terminal(action))?;
        }
    }
    let moved = if downloading { "received" } else { "sent" };
    let mut counts = format!(
        "{} files {moved} ({}), {} unchanged, {} deleted, {} directories made",
        report.sent,
        format_size(report.bytes),
        report.unchanged,
        report.deleted,
        report.made,
    );
    if report.linked > 0 {
        counts.push_str(&format!(", {} links made", report.linked));
    }
    if dry_run {
        return writeln!(out, "would be: {counts}");
    }
    let secs = took.as_secs_f64().max(1e-3);
    writeln!(
        out,
        "{counts}; {secs:.2} s, {}/s",
        format_size((report.bytes as f64 / secs) as u64)
    )
}

/// What check found: a line per difference, then a summary line.
fn write_check_report(
    out: &mut dyn Write,
    report: &super::sync::CheckReport,
) -> std::io::Result<()> {
    for path in &report.differ {
        writeln!(out, "differs: {}", for_terminal(path))?;
    }
    for path in &report.only_local {
        writeln!(out, "only local: {}", for_terminal(path))?;
    }
    for path in &report.only_remote {
        writeln!(out, "only remote: {}", for_terminal(path))?;
    }
    writeln!(
        out,
        "{} files the same, {} differ, {} only local, {} only remote",
        report.same,
        report.differ.len(),
        report.only_local.len(),
        report.only_remote.len()
    )
}

/// clap's message for a line that does not parse, on one line: what is wrong and what is
/// missing, without the usage block (`help COMMAND` shows that).
fn usage_message(rendered: &str) -> String {
    let parts: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|line| !line.starts_with("Usage:") && !line.starts_with("For more information"))
        .filter(|line| !line.is_empty())
        .collect();
    let joined = parts.join(" ");
    let message = joined.trim_start_matches("error: ");
    if message.is_empty() {
        "invalid command".to_owned()
    } else {
        message.to_owned()
    }
}

/// Where command output goes.
pub struct Output<'a> {
    /// Results (listings, stat, df).
    pub out: &'a mut dyn Write,
    /// Warnings (entries skipped by -r).
    pub err: &'a mut dyn Write,
    /// Transfer progress.
    pub progress: &'a dyn Progress,
    /// `out` is a terminal: names from the server are shown escaped there, and as they are
    /// into a pipe or a file.
    pub terminal: bool,
    /// Standard input is free for data (a command of its own, not the shell's input):
    /// `put - NAME` reads it.
    pub stdin: bool,
}

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
    store: CredentialStore,
    known_hosts: KnownHosts,
    unknown: UnknownServer,
    /// The last command failed in a way that ends a connection (see [`Error::kind`]).
    lost: bool,
    /// The parser of shell lines, built once: building clap's command tree took most of
    /// the client's time per line in batch mode.
    line_parser: clap::Command,
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
    async fn reconnect_if_lost(&mut self) -> std::result::Result<(), CommandError> {
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
    async fn connect_helpers(&mut self, jobs: usize, err: &mut dyn Write) {
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
    fn limit_bandwidth(&mut self, rate: Option<u64>) {
        let limit = rate.map(|rate| {
            std::sync::Arc::new(super::bandwidth::Bandwidth::new(
                rate,
                crate::commands::MAX_CHUNK as u64,
            ))
        });
        self.client.set_bandwidth(limit);
    }

    /// Remembers whether `outcome` ended the connection.
    fn note<T>(&mut self, outcome: &std::result::Result<T, CommandError>) {
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

    async fn run(
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
                let options = super::sync::SyncOptions {
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
    /// Uploads each of `typed` (local wildcards expanded) to `remote`; several sources go
    /// into `remote` as a directory (the current one without it).
    async fn put_all(
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

    async fn put_one(
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
    fn remote_tree_target(&self, source: &str, remote: &str) -> Result<String> {
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
    async fn get_all(
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
    async fn get_one(
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
    async fn cat(
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
                    &super::NoProgress
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
    async fn put_stdin(
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
    async fn ls(
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
    async fn expand_remote(&mut self, typed: &str) -> Result<Vec<String>> {
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

    async fn is_remote_dir(&mut self, path: &str) -> bool {
        matches!(self.client.stat(path).await, Ok(entry) if entry.kind == EntryKind::Directory)
    }
}

/// Where a remote tree `typed` (resolved: `resolved`) goes under the local `target`, by
/// rsync's rule: `:www` into `target/www`, `:www/` (its contents) into `target` itself.
fn local_tree_target(typed: &str, resolved: &str, target: &str) -> PathBuf {
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
fn names_contents(typed: &[u8]) -> bool {
    typed.ends_with(b"/") || typed == b"." || typed == b".." || typed.ends_with(b"/.")
}

/// A matched path shown as the person typed its directory: `ls docs/*.txt` shows
/// `docs/a.txt`, `ls *.txt` shows `a.txt`.
fn display_name(typed: &str, matched: &str) -> String {
    let name = matched.rsplit('/').next().unwrap_or(matched);
    match typed.rfind('/') {
        Some(i) => format!("{}{name}", &typed[..=i]),
        None => name.to_owned(),
    }
}

fn local_name(local: &Path) -> Result<String> {
    local
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| Error::local(local, "has no file name to use remotely; name the target"))
}

/// True for a name with wildcard characters.
fn is_pattern(name: &str) -> bool {
    name.contains(['*', '?', '['])
}

/// A local path as typed: itself if it exists (or has no wildcard), else what its
/// wildcards match, sorted.
fn expand_local(typed: &str) -> Result<Vec<PathBuf>> {
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

fn remote_name(remote: &str) -> Result<String> {
    RemotePath::parse(remote)?
        .file_name()
        .map(str::to_owned)
        .ok_or_else(|| Error::Usage("the home directory has no name; name the local target".into()))
}

fn warn_skipped(err: &mut dyn Write, skipped: &[String]) {
    for line in skipped {
        let _ = writeln!(err, "skipped {}", crate::sanitize::for_terminal(line));
    }
    if !skipped.is_empty() {
        let _ = writeln!(
            err,
            "skipped {} entries in all (listed above)",
            skipped.len()
        );
    }
}

fn mark(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::Directory => "/",
        EntryKind::Symlink => "@",
        EntryKind::File | EntryKind::Other => "",
    }
}

fn local_time(modified: Option<i64>) -> String {
    modified
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_else(|| "-".repeat(16))
}

/// How `ls` shows a listing.
#[derive(Debug, Clone, Copy, Default)]
struct ListingStyle {
    /// Type, size, time and name.
    long: bool,
    /// Names starting with `.` too.
    all: bool,
    /// Sizes as 1.5K, 23M.
    human: bool,
    /// Each name ended by NUL.
    null: bool,
    /// Control characters in names escaped (the output is a terminal).
    escape: bool,
}

/// Whether an error says there is nothing there (for `rm -f`).
fn is_not_found(error: &Error) -> bool {
    matches!(
        error,
        Error::Remote {
            code: crate::commands::ErrorCode::NotFound,
            ..
        }
    )
}

/// `ls -h`'s size: at most four characters and a unit, rounded up as GNU ls does, so a
/// size never looks smaller than it is.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    if bytes < 1024 {
        return bytes.to_string();
    }
    let mut value = bytes as f64;
    for (i, unit) in UNITS.iter().enumerate() {
        value /= 1024.0;
        let shown = if value < 10.0 {
            (value * 10.0).ceil() / 10.0
        } else {
            value.ceil()
        };
        if shown < 1024.0 || i == UNITS.len() - 1 {
            return if shown < 10.0 {
                format!("{shown:.1}{unit}")
            } else {
                format!("{shown:.0}{unit}")
            };
        }
    }
    unreachable!("the last unit returns")
}

/// `ls` output: names, or with `long` type, size, time and name.
fn write_listing(
    out: &mut dyn Write,
    entries: &[Entry],
    style: ListingStyle,
) -> std::io::Result<()> {
    let end = if style.null { "\0" } else { "\n" };
    for entry in entries {
        if !style.all && entry.name.starts_with('.') {
            continue;
        }
        let name = if style.escape {
            for_terminal(&entry.name)
        } else {
            entry.name.clone()
        };
        if style.long {
            let kind = match entry.kind {
                EntryKind::Directory => 'd',
                EntryKind::Symlink => 'l',
                EntryKind::File => '-',
                EntryKind::Other => '?',
            };
            let size = if style.human {
                human_size(entry.size)
            } else {
                entry.size.to_string()
            };
            write!(
                out,
                "{kind} {size:>12} {} {name}{}{end}",
                local_time(entry.modified),
                mark(entry.kind)
            )?;
        } else {
            write!(out, "{name}{}{end}", mark(entry.kind))?;
        }
    }
    Ok(())
}

fn write_stat(out: &mut dyn Write, entry: &Entry) -> std::io::Result<()> {
    let kind = match entry.kind {
        EntryKind::Directory => "directory",
        EntryKind::Symlink => "symlink",
        EntryKind::File => "file",
        EntryKind::Other => "other",
    };
    writeln!(out, "name: {}", for_terminal(&entry.name))?;
    writeln!(out, "type: {kind}")?;
    writeln!(out, "size: {} ({})", entry.size, format_size(entry.size))?;
    writeln!(out, "modified: {}", local_time(entry.modified))
}

/// One line typed into the shell.
#[derive(Debug, Parser)]
#[command(
    name = "ftpc shell",
    no_binary_name = true,
    disable_version_flag = true,
    override_usage = "COMMAND [OPTIONS] [ARGS]   (help COMMAND for one command)",
    about = "Paths are relative to the remote directory (cd) unless they start with /; local \
             paths to the local one (lcd)."
)]
struct ShellLine {
    #[command(subcommand)]
    command: ShellCommand,
}

#[derive(Debug, Subcommand)]
enum ShellCommand {
    #[command(flatten)]
    File(FileCommand),
    /// Change the remote directory (default: your home).
    Cd {
        /// Remote directory.
        path: Option<String>,
    },
    /// Print the remote directory.
    Pwd,
    /// Change the local directory (default: your home).
    Lcd {
        /// Local directory.
        path: Option<PathBuf>,
    },
    /// Print the local directory.
    Lpwd,
    /// List local files: the local `ls`, with whatever flags and paths it is given
    /// (`lls -la`).
    Lls {
        /// Flags and paths for `ls`.
        #[arg(
            allow_hyphen_values = true,
            trailing_var_arg = true,
            value_name = "ARGS"
        )]
        args: Vec<String>,
    },
    /// Create local directories.
    Lmkdir {
        /// Also create missing parents; an existing directory is not an error.
        #[arg(short, long)]
        parents: bool,
        /// Local paths.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Ask NTP time servers how far this machine's clock is off (as `ftpc time`).
    Time(super::time::TimeArgs),
    /// Chat interactively until /quit, then back to this shell (as `ftpc chat`).
    Chat,
    #[command(flatten)]
    ChatOnce(super::chat_commands::ChatCommand),
    /// Leave the shell.
    #[command(visible_aliases = ["quit", "bye"])]
    Exit,
}

/// The shell's commands, as its parser knows them (for the manual page).
pub fn commands() -> clap::Command {
    <ShellLine as clap::CommandFactory>::command()
}

/// The words the shell knows, for completion.
const SHELL_WORDS: &[&str] = &[
    "bye", "cat", "cd", "chat", "check", "color", "df", "exit", "friends", "get", "help", "inbox",
    "lcd", "lls", "lmkdir", "lpwd", "ls", "mget", "mkdir", "mput", "mv", "put", "pwd", "quit",
    "rm", "rmdir", "send", "stat", "sync", "time",
];

/// Whether the shell goes on after a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Read the next line.
    Continue,
    /// `exit` was typed.
    Exit,
    /// `chat` was typed: the caller runs the chat on the terminal, then reads on.
    Chat,
}

impl Session {
    /// Runs one shell line: a file command, a shell command, `help`, or nothing (blank or `#`).
    ///
    /// # Errors
    /// [`CommandError`]: a line that does not parse is an [`Error::Usage`].
    pub async fn execute_line(
        &mut self,
        line: &str,
        io: &mut Output<'_>,
    ) -> std::result::Result<Flow, CommandError> {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            return Ok(Flow::Continue);
        }
        if let Some(command) = trimmed.strip_prefix('!') {
            io.out.flush().map_err(|e| failed(trimmed)(Error::Io(e)))?;
            return run_local(command.trim())
                .map(|()| Flow::Continue)
                .map_err(failed(trimmed));
        }
        let words = shlex::split(trimmed).ok_or_else(|| CommandError {
            context: trimmed.to_owned(),
            error: Error::Usage("unbalanced quotes".into()),
        })?;
        let parsed = match self
            .line_parser
            .try_get_matches_from_mut(&words)
            .and_then(|matches| <ShellLine as clap::FromArgMatches>::from_arg_matches(&matches))
        {
            Ok(parsed) => parsed,
            Err(e)
                if matches!(
                    e.kind(),
                    clap::error::ErrorKind::DisplayHelp
                        | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                ) =>
            {
                let _ = write!(io.out, "{}", e.render());
                return Ok(Flow::Continue);
            }
            Err(e) => {
                return Err(CommandError {
                    context: words.first().cloned().unwrap_or_default(),
                    error: Error::Usage(usage_message(&e.render().to_string())),
                });
            }
        };
        let local_failed = |ctx: &str| {
            let ctx = ctx.to_owned();
            move |e: std::io::Error| CommandError {
                context: ctx,
                error: Error::Io(e),
            }
        };
        match parsed.command {
            ShellCommand::File(command) => self.execute(command, io).await?,
            ShellCommand::Cd { path } => {
                let typed = path.unwrap_or_else(|| "/".into());
                self.reconnect_if_lost().await?;
                let target = async {
                    let target = self.resolve(&typed)?;
                    let entry = self.client.stat(&target).await?;
                    if entry.kind != EntryKind::Directory {
                        return Err(Error::Usage("not a directory".into()));
                    }
                    Ok(RemotePath::parse(&target)?)
                }
                .await
                .map_err(failed(format!("cd {typed}")));
                self.note(&target);
                self.cwd = target?;
            }
            ShellCommand::Pwd => writeln!(io.out, "{}", self.cwd).map_err(local_failed("pwd"))?,
            ShellCommand::Lcd { path } => {
                let target = match path.or_else(dirs::home_dir) {
                    Some(path) => path,
                    None => PathBuf::from("/"),
                };
                std::env::set_current_dir(&target)
                    .map_err(local_failed(&format!("lcd {}", target.display())))?;
            }
            ShellCommand::Lpwd => {
                let cwd = std::env::current_dir().map_err(local_failed("lpwd"))?;
                writeln!(io.out, "{}", cwd.display()).map_err(local_failed("lpwd"))?;
            }
            ShellCommand::Lls { args } => {
                let ctx = format!("lls {}", args.join(" "));
                let listed = std::process::Command::new("ls")
                    .args(&args)
                    .stdin(std::process::Stdio::null())
                    .output()
                    .map_err(local_failed(ctx.trim_end()))?;
                io.out
                    .write_all(&listed.stdout)
                    .and_then(|()| io.err.write_all(&listed.stderr))
                    .map_err(local_failed(ctx.trim_end()))?;
                if !listed.status.success() {
                    return Err(CommandError {
                        context: ctx.trim_end().to_owned(),
                        error: Error::Local {
                            path: PathBuf::from("ls"),
                            message: format!("failed ({})", listed.status),
                        },
                    });
                }
            }
            ShellCommand::Lmkdir { parents, paths } => {
                for path in paths {
                    let ctx = format!("lmkdir {}", path.display());
                    let made = if parents {
                        std::fs::create_dir_all(&path)
                    } else {
                        std::fs::create_dir(&path)
                    };
                    made.map_err(local_failed(&ctx))?;
                }
            }
            ShellCommand::Time(args) => {
                args.run(Some(&self.server), io.out, io.err).await?;
            }
            ShellCommand::ChatOnce(command) => {
                let ctx = format!("chat at {}", self.server);
                let saved = self.saved_login().map_err(failed(&ctx))?;
                let chat_io = super::chat_commands::ChatOutput {
                    out: io.out,
                    err: io.err,
                    colour: std::io::IsTerminal::is_terminal(&std::io::stdout()),
                };
                let trust = (self.known_hosts.clone(), self.unknown.clone());
                command
                    .run(&saved, &self.store, trust, chat_io)
                    .await
                    .map_err(failed(&ctx))?;
            }
            ShellCommand::Chat => return Ok(Flow::Chat),
            ShellCommand::Exit => return Ok(Flow::Exit),
        }
        Ok(Flow::Continue)
    }

    /// The saved login this shell runs on, for the chat: the same user on the same server.
    ///
    /// # Errors
    /// [`Error::NotLoggedIn`] after a logout, [`Error::Usage`] if another user logged in
    /// since.
    pub fn saved_login(&self) -> Result<super::SavedLogin> {
        let saved = self
            .store
            .find(Some(&self.server))?
            .ok_or_else(|| Error::NotLoggedIn {
                server: Some(self.server.clone()),
            })?;
        if saved.user != self.user {
            return Err(Error::Usage(format!(
                "the saved login for {} is now {}; start ftpc again",
                self.server, saved.user
            )));
        }
        Ok(saved)
    }

    /// The prompt: user, server and remote directory.
    pub fn prompt(&self) -> String {
        format!("{}@{}:{}> ", self.user, self.server, self.cwd)
    }
}

/// What to tell someone who interrupted `command` (its name): how to finish the job.
pub fn after_interrupt(command: &str) -> &'static str {
    match command {
        "get" | "put" | "mget" | "mput" => {
            "interrupted; what arrived is kept: the same command with -c continues it"
        }
        "sync" => "interrupted; the same sync again finishes the job and sends nothing twice",
        _ => "interrupted",
    }
}

/// What to tell someone whose `command` lost its connection half way, if it left work to
/// finish: how to finish it.
pub fn after_lost_connection(command: &str) -> Option<&'static str> {
    match command {
        "get" | "put" | "mget" | "mput" => Some(
            "what arrived before the connection was lost is kept: the same command with -c continues it",
        ),
        "sync" => Some("the same sync again finishes the job and sends nothing twice"),
        _ => None,
    }
}

/// `!COMMAND`: runs COMMAND with `sh -c` on this terminal (`!` alone: your shell), as
/// sftp does. A command that fails fails the line.
fn run_local(command: &str) -> Result<()> {
    let mut local = if command.is_empty() {
        std::process::Command::new(std::env::var_os("SHELL").unwrap_or_else(|| "/bin/sh".into()))
    } else {
        let mut sh = std::process::Command::new("/bin/sh");
        sh.args(["-c", command]);
        sh
    };
    let status = local.status()?;
    if status.success() {
        return Ok(());
    }
    Err(Error::Local {
        path: PathBuf::from("sh"),
        message: format!("failed ({status})"),
    })
}

/// A batch line that failed, with its line number.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}:{line}: {failure}")]
pub struct BatchError {
    /// The batch file's name (`-` for standard input).
    pub source_name: String,
    /// 1-based line number.
    pub line: usize,
    /// What failed.
    pub failure: Box<CommandError>,
}

/// Runs commands line by line, like `sftp -b`: stops at the first failure.
///
/// # Errors
/// [`BatchError`] naming the line that failed.
pub fn run_batch(
    runtime: &Runtime,
    session: &mut Session,
    input: impl BufRead,
    source_name: &str,
    io: &mut Output<'_>,
) -> std::result::Result<(), BatchError> {
    for (index, line) in input.lines().enumerate() {
        let fail = |failure| BatchError {
            source_name: source_name.to_owned(),
            line: index + 1,
            failure: Box::new(failure),
        };
        let line = line.map_err(|e| {
            fail(CommandError {
                context: "read".into(),
                error: Error::Io(e),
            })
        })?;
        // As with `sftp -b`: a line that starts with `-` may fail without ending the batch.
        let (line, may_fail) = match line.trim_start().strip_prefix('-') {
            Some(rest) => (rest.to_owned(), true),
            None => (line, false),
        };
        match runtime.block_on(session.execute_line(&line, io)) {
            Ok(Flow::Continue) => {}
            Ok(Flow::Exit) => return Ok(()),
            Err(failure) if may_fail => {
                let _ = writeln!(io.err, "{source_name}:{}: {failure}", index + 1);
            }
            Ok(Flow::Chat) => {
                return Err(fail(CommandError {
                    context: "chat".into(),
                    error: Error::Usage(
                        "the chat needs a terminal; in a batch use friends, send and inbox".into(),
                    ),
                }));
            }
            Err(failure) => return Err(fail(failure)),
        }
    }
    Ok(())
}

/// Runs the interactive shell until `exit` or end of input; errors are printed and the shell
/// goes on. History is kept in `history` if given.
///
/// # Errors
/// Only if the terminal cannot be used.
pub fn run_interactive(
    runtime: Rc<Runtime>,
    session: Session,
    history: Option<PathBuf>,
    progress: &dyn Progress,
) -> Result<()> {
    let session = Rc::new(RefCell::new(session));
    let helper = ShellHelper {
        runtime: Rc::clone(&runtime),
        session: Rc::clone(&session),
        files: FilenameCompleter::new(),
    };
    let mut editor: Editor<ShellHelper, rustyline::history::DefaultHistory> =
        // Tab on an ambiguous prefix lists the candidates, as bash does.
        Editor::with_config(
            rustyline::Config::builder()
                .completion_type(rustyline::CompletionType::List)
                .build(),
        )
        .map_err(|e| Error::Usage(format!("cannot use the terminal: {e}")))?;
    editor.set_helper(Some(helper));
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    loop {
        let prompt = session.borrow().prompt();
        let typed = match editor.readline(&prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(Error::Usage(format!("cannot read the terminal: {e}"))),
        };
        // A paste of several lines arrives as one: each runs, in order.
        let mut exit = false;
        for line in typed.lines() {
            if !line.trim().is_empty() {
                let _ = editor.add_history_entry(line);
                // Saved as each line is entered: a shell that dies keeps its history.
                if let Some(path) = &history {
                    save_history(&mut editor, path);
                }
            }
            let mut io = Output {
                out: &mut stdout,
                err: &mut stderr,
                progress,
                terminal: std::io::IsTerminal::is_terminal(&std::io::stdout()),
                stdin: false,
            };
            let mut current = session.borrow_mut();
            // Ctrl-C stops the command, not the shell: the connection is replaced before
            // the next one (a transfer keeps its partial data for -c).
            let result = runtime.block_on(async {
                tokio::select! {
                    result = current.execute_line(line, &mut io) => Some(result),
                    _ = tokio::signal::ctrl_c() => None,
                }
            });
            let result = match result {
                Some(result) => result,
                None => {
                    progress.fail();
                    current.lost = true;
                    let command = line.split_whitespace().next().unwrap_or_default();
                    eprintln!("{}", after_interrupt(command));
                    Ok(Flow::Continue)
                }
            };
            drop(current);
            match result {
                Ok(Flow::Continue) => {}
                Ok(Flow::Exit) => {
                    exit = true;
                    break;
                }
                Ok(Flow::Chat) => {
                    let current = session.borrow();
                    let chat_history = history.as_deref().map(|h| h.with_file_name("chat-history"));
                    let chat = current.saved_login().and_then(|saved| {
                        super::chat_shell::run_interactive(
                            saved,
                            current.known_hosts.clone(),
                            current.unknown.clone(),
                            chat_history,
                        )
                    });
                    if let Err(e) = chat {
                        eprintln!("chat: {e}");
                    }
                }
                Err(failure) => eprintln!("{failure}"),
            }
        }
        if exit {
            break;
        }
    }
    if let Some(path) = &history {
        save_history(&mut editor, path);
    }
    Ok(())
}

/// Writes the shell's history (its directory made first).
fn save_history(editor: &mut Editor<ShellHelper, rustyline::history::DefaultHistory>, path: &Path) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = editor.save_history(path);
}

/// Completes command names, remote paths, and local paths for `lcd`, `lls` and `put`.
struct ShellHelper {
    runtime: Rc<Runtime>,
    session: Rc<RefCell<Session>>,
    files: FilenameCompleter,
}

/// Where the word being completed starts in `before` (the line up to the cursor), and the
/// word as the shell will read it: quotes and backslash escapes honoured, as `shlex` does.
fn current_word(before: &str) -> (usize, String) {
    let (mut start, mut word) = (0, String::new());
    let (mut quote, mut escaped) = (None::<char>, false);
    for (i, c) in before.char_indices() {
        if escaped {
            word.push(c);
            escaped = false;
            continue;
        }
        match (quote, c) {
            (Some('\''), '\'') | (Some('"'), '"') => quote = None,
            (Some('"'), '\\') | (None, '\\') => escaped = true,
            (Some(_), _) => word.push(c),
            (None, '\'' | '"') => quote = Some(c),
            (None, c) if c.is_whitespace() => {
                start = i + c.len_utf8();
                word.clear();
            }
            (None, _) => word.push(c),
        }
    }
    (start, word)
}

/// `word` written so that the shell reads it back as it is: spaces, quotes, backslashes and
/// other characters `shlex` treats specially get a backslash.
fn escape_word(word: &str) -> String {
    let mut escaped = String::with_capacity(word.len());
    for c in word.chars() {
        if c.is_whitespace() || "\\'\"$`|&;<>()*?[]{}#~!".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

impl ShellHelper {
    fn remote_candidates(&self, word: &str) -> Vec<Pair> {
        let (dir, prefix) = match word.rfind('/') {
            Some(i) => (&word[..=i], &word[i + 1..]),
            None => ("", word),
        };
        let Ok(mut session) = self.session.try_borrow_mut() else {
            return Vec::new();
        };
        let Ok(resolved) = session.resolve(dir) else {
            return Vec::new();
        };
        let listing = self.runtime.block_on(session.client.list(&resolved));
        listing
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.name.starts_with(prefix))
            .map(|e| {
                let slash = if e.kind == EntryKind::Directory {
                    "/"
                } else {
                    ""
                };
                Pair {
                    display: format!("{}{slash}", for_terminal(&e.name)),
                    replacement: format!("{}{slash}", escape_word(&format!("{dir}{}", e.name))),
                }
            })
            .collect()
    }
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let (start, word) = current_word(before);
        let word = word.as_str();
        let command = before.split_whitespace().next().unwrap_or("");
        if start == 0 {
            let words = SHELL_WORDS
                .iter()
                .filter(|w| w.starts_with(word))
                .map(|w| Pair {
                    display: (*w).to_owned(),
                    replacement: format!("{w} "),
                })
                .collect();
            return Ok((0, words));
        }
        let args_before = before[..start]
            .split_whitespace()
            .skip(1)
            .filter(|w| !w.starts_with('-'))
            .count();
        let local = matches!(command, "lcd" | "lls")
            || (command == "put" && args_before == 0)
            || (command == "get" && args_before == 1);
        if local {
            return self.files.complete(line, pos, ctx);
        }
        Ok((start, self.remote_candidates(word)))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}
impl Highlighter for ShellHelper {}
impl Validator for ShellHelper {}
impl Helper for ShellHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12.5: remote completion of `my` gave `my notes.txt`, which does not parse.
    #[test]
    fn completed_words_read_back_as_the_names_they_complete() {
        for name in [
            "my notes.txt",
            "it's",
            "a\\b",
            "say \"hi\"",
            "$HOME",
            "plain",
            "é t",
        ] {
            let line = format!("get {}", escape_word(name));
            assert_eq!(shlex::split(&line).unwrap(), ["get", name], "{line}");
            // And the word being typed is found again, unescaped, to complete further.
            assert_eq!(current_word(&line), (4, name.to_owned()), "{line}");
        }
        assert_eq!(current_word("ls my\\ no"), (3, "my no".to_owned()));
        assert_eq!(current_word("ls 'my no"), (3, "my no".to_owned()));
        assert_eq!(current_word("ls "), (3, String::new()));
        assert_eq!(current_word("ls"), (0, "ls".to_owned()));
    }

    #[test]
    fn shell_lines_parse() {
        let parse = |line: &str| ShellLine::try_parse_from(shlex::split(line).unwrap());
        assert!(matches!(
            parse("put -rfc 'my dir' remote").unwrap().command,
            ShellCommand::File(FileCommand::Put {
                flags: TransferFlags {
                    recursive: true,
                    force: true,
                    resume: true,
                    preserve: false,
                    jobs: DEFAULT_JOBS,
                    bwlimit: None,
                },
                ..
            })
        ));
        assert!(matches!(
            parse("get --bwlimit 512 f").unwrap().command,
            ShellCommand::File(FileCommand::Get {
                flags: TransferFlags {
                    bwlimit: Some(524_288),
                    ..
                },
                ..
            })
        ));
        assert!(matches!(
            parse("get -r -j 3 dir").unwrap().command,
            ShellCommand::File(FileCommand::Get {
                flags: TransferFlags { jobs: 3, .. },
                ..
            })
        ));
        assert!(parse("get -r -j 0 dir").is_err());
        assert!(matches!(parse("quit").unwrap().command, ShellCommand::Exit));
        assert!(matches!(
            parse("cd").unwrap().command,
            ShellCommand::Cd { path: None }
        ));
        assert!(parse("frobnicate").is_err());
        assert!(parse("mkdir").is_err());
    }

    /// Issue 11.12: `ls` printed escape sequences and newlines from names as they came.
    #[test]
    fn listing_escapes_what_a_terminal_would_obey() {
        let entries = [Entry {
            name: "a\u{1b}]0;owned\u{7}\nfake-line".into(),
            kind: EntryKind::File,
            size: 1,
            modified: None,
        }];
        for long in [false, true] {
            let mut out = Vec::new();
            let style = ListingStyle {
                long,
                escape: true,
                ..ListingStyle::default()
            };
            write_listing(&mut out, &entries, style).unwrap();
            let text = String::from_utf8(out).unwrap();
            assert_eq!(text.lines().count(), 1, "{text:?}");
            assert!(!text.trim_end().chars().any(char::is_control), "{text:?}");
            assert!(
                text.contains("a\\u{1b}]0;owned\\u{7}\\nfake-line"),
                "{text:?}"
            );
        }
    }

    #[test]
    fn long_listing_shows_kind_size_and_name() {
        let entries = [
            Entry {
                name: "d".into(),
                kind: EntryKind::Directory,
                size: 4096,
                modified: None,
            },
            Entry {
                name: "f".into(),
                kind: EntryKind::File,
                size: 12,
                modified: Some(0),
            },
        ];
        let long = ListingStyle {
            long: true,
            ..ListingStyle::default()
        };
        let mut out = Vec::new();
        write_listing(&mut out, &entries, long).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert!(
            lines[0].starts_with("d         4096 ---------------- d/"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("-           12 19") && lines[1].ends_with(" f"),
            "{text}"
        );
        let mut out = Vec::new();
        write_listing(&mut out, &entries, ListingStyle::default()).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "d/\nf\n");
    }

    /// Issue 28: `ls -a` shows what starts with `.`, which plain `ls` leaves out; into a
    /// pipe names go as they are, with -0 each ended by NUL; -h sizes as GNU ls shows them.
    #[test]
    fn listing_styles_as_ls_has_them() {
        let entry = |name: &str, size| Entry {
            name: name.into(),
            kind: EntryKind::File,
            size,
            modified: None,
        };
        let entries = [
            entry(".hidden", 1),
            entry("two\nlines", 1536),
            entry("big", 5 << 30),
        ];
        let show = |style| {
            let mut out = Vec::new();
            write_listing(&mut out, &entries, style).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(show(ListingStyle::default()), "two\nlines\nbig\n");
        let all = ListingStyle {
            all: true,
            null: true,
            ..ListingStyle::default()
        };
        assert_eq!(show(all), ".hidden\0two\nlines\0big\0");
        let human = ListingStyle {
            long: true,
            human: true,
            ..ListingStyle::default()
        };
        let shown = show(human);
        assert!(
            shown.contains("         1.5K ") && shown.contains("         5.0G "),
            "{shown}"
        );
        assert_eq!(human_size(0), "0");
        assert_eq!(human_size(1023), "1023");
        assert_eq!(human_size(1024), "1.0K");
        assert_eq!(human_size(1025), "1.1K");
        assert_eq!(human_size(10 * 1024), "10K");
        assert_eq!(human_size(10 * 1024 + 1), "11K");
        assert_eq!(human_size(1024 * 1024 - 1), "1.0M");
        assert_eq!(human_size(u64::MAX), "16E");
        assert_eq!(human_size(1024 * 1024), "1.0M");
    }
}
