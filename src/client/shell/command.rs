//! The commands people type: the file commands shared by `ftpc CMD` and the shell, and the shell's own.

use super::*;

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
        #[arg(value_name = "PATH", add = crate::client::complete::remote())]
        paths: Vec<String>,
    },
    /// Show type, size and modification time of a remote entry.
    Stat {
        /// Remote path.
        #[arg(add = crate::client::complete::remote())]
        path: String,
    },
    /// Create remote directories.
    Mkdir {
        /// Also create missing parents; an existing directory is not an error.
        #[arg(short, long)]
        parents: bool,
        /// Remote paths.
        #[arg(required = true, value_name = "PATH", add = crate::client::complete::remote())]
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
        #[arg(required = true, value_name = "PATH", add = crate::client::complete::remote())]
        paths: Vec<String>,
    },
    /// Remove empty remote directories.
    Rmdir {
        /// Remote paths.
        #[arg(required = true, value_name = "PATH", add = crate::client::complete::remote())]
        paths: Vec<String>,
    },
    /// Rename or move within your remote tree (into TO if it is a directory).
    Mv {
        /// Replace an existing target.
        #[arg(short, long)]
        force: bool,
        /// Existing remote path.
        #[arg(add = crate::client::complete::remote())]
        from: String,
        /// New remote path, or an existing directory to move into.
        #[arg(add = crate::client::complete::remote())]
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
        #[arg(required = true, value_name = "REMOTE", add = crate::client::complete::remote())]
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
        #[arg(required = true, value_name = "REMOTE... [LOCAL]", add = crate::client::complete::remote())]
        paths: Vec<String>,
    },
    /// Write remote files to standard output, one after another (as `get FILE -`).
    Cat {
        /// Remote files (wildcards in the last component expanded from the listing).
        #[arg(required = true, value_name = "REMOTE", add = crate::client::complete::remote())]
        paths: Vec<String>,
    },
    /// Show your disk usage and quota.
    Df,
    /// Your SSH keys for SFTP (`sftp`, `scp`, rclone): list them, `keys add FILE` (a .pub
    /// file, e.g. ~/.ssh/id_ed25519.pub), `keys del FINGERPRINT`.
    Keys {
        #[command(subcommand)]
        action: Option<KeysAction>,
    },
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
        #[arg(add = crate::client::complete::local_or_remote())]
        source: String,
        /// The target tree.
        #[arg(add = crate::client::complete::local_or_remote())]
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
        #[arg(add = crate::client::complete::local_or_remote())]
        remote: String,
    },
}

/// Compiles `--exclude` patterns.
pub(super) fn patterns(typed: &[String]) -> Result<Vec<glob::Pattern>> {
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
pub(super) fn rate(typed: &str) -> std::result::Result<u64, String> {
    let bytes = match typed.trim().parse::<u64>() {
        Ok(kib) => kib.checked_mul(1024).ok_or("too large")?,
        Err(_) => crate::size::parse_size(typed)?,
    };
    if bytes < crate::client::bandwidth::MIN_RATE {
        return Err(format!(
            "at least {} bytes a second (1K)",
            crate::client::bandwidth::MIN_RATE
        ));
    }
    Ok(bytes)
}

/// `-j N`: from 1 to [`MAX_JOBS`].
pub(super) fn jobs(typed: &str) -> std::result::Result<usize, String> {
    match typed.parse::<usize>() {
        Ok(n) if (1..=MAX_JOBS).contains(&n) => Ok(n),
        _ => Err(format!("a number of connections from 1 to {MAX_JOBS}")),
    }
}

impl TransferFlags {
    /// The library's options for these flags.
    pub(super) fn options(self, follow_links: bool) -> TransferOptions {
        TransferOptions {
            overwrite: self.force,
            resume: self.resume,
            follow_links,
            preserve: self.preserve,
        }
    }
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
pub(super) struct ShellLine {
    #[command(subcommand)]
    pub(super) command: ShellCommand,
}

/// What `keys` does.
#[derive(Debug, Clone, Subcommand)]
pub enum KeysAction {
    /// List your keys as `ssh-keygen -l` does (the default).
    List,
    /// Add the keys of a .pub file, one a line.
    Add {
        /// The public key file, e.g. ~/.ssh/id_ed25519.pub.
        file: PathBuf,
    },
    /// Remove a key by its fingerprint (SHA256:..., as `keys` shows it).
    Del {
        /// The key's fingerprint.
        fingerprint: String,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum ShellCommand {
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
    Time(crate::client::time::TimeArgs),
    /// Chat interactively until /quit, then back to this shell (as `ftpc chat`).
    Chat,
    #[command(flatten)]
    ChatOnce(crate::client::chat_commands::ChatCommand),
    /// Leave the shell.
    #[command(visible_aliases = ["quit", "bye"])]
    Exit,
}

/// The shell's commands, as its parser knows them (for the manual page).
pub fn commands() -> clap::Command {
    <ShellLine as clap::CommandFactory>::command()
}

/// The words the shell knows, for completion.
pub(super) const SHELL_WORDS: &[&str] = &[
    "bye", "cat", "cd", "chat", "check", "color", "df", "exit", "friends", "get", "help", "inbox",
    "lcd", "lls", "lmkdir", "lpwd", "ls", "mget", "mkdir", "mput", "mv", "put", "pwd", "quit",
    "rm", "rmdir", "send", "stat", "sync", "time",
];
