//! Completion of remote names in bash, zsh and fish (clap_complete's completion through the
//! binary, `COMPLETE=bash ftpc`): `ftpc get <Tab>` lists the remote directory over the saved
//! login, as scp's completion does, and `ftpc sync :<Tab>` too; local arguments complete
//! local paths. Completion never asks anything: an unknown server, a lost login or a slow
//! network complete nothing, within [`DEADLINE`].

use std::ffi::OsStr;
use std::time::Duration;

use clap_complete::engine::{
    ArgValueCompleter, CompletionCandidate, PathCompleter, ValueCompleter,
};

use super::credentials::CredentialStore;
use super::tls::{KnownHosts, UnknownServer};
use super::{Client, connect_saved};
use crate::commands::EntryKind;
use crate::paths::RemotePath;

/// How long a Tab may wait for the server.
pub const DEADLINE: Duration = Duration::from_secs(3);

/// The environment variable through which a shell asks `ftpc` for completions.
pub const VARIABLE: &str = "COMPLETE";

/// The shells `ftpc completions` writes a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    /// bash 4.4 or later.
    Bash,
    /// zsh.
    Zsh,
    /// fish.
    Fish,
    /// elvish.
    Elvish,
    /// PowerShell.
    Powershell,
}

/// Writes the script that makes `shell` complete `ftpc`'s arguments by asking `ftpc` (what
/// `COMPLETE=bash ftpc` prints): commands and options, local paths, and remote names.
///
/// # Errors
/// The output cannot be written.
pub fn write_registration(shell: Shell, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    use clap_complete::env::{Bash, Elvish, EnvCompleter, Fish, Powershell, Zsh};
    let completer: &dyn EnvCompleter = match shell {
        Shell::Bash => &Bash,
        Shell::Zsh => &Zsh,
        Shell::Fish => &Fish,
        Shell::Elvish => &Elvish,
        Shell::Powershell => &Powershell,
    };
    completer.write_registration(VARIABLE, "ftpc", "ftpc", "ftpc", out)
}

/// For an argument that names remote files.
pub fn remote() -> ArgValueCompleter {
    ArgValueCompleter::new(|current: &OsStr| match current.to_str() {
        Some(current) => remote_names(current, ""),
        None => Vec::new(),
    })
}

/// For an argument that is local, or remote when written `:PATH` (sync, check).
pub fn local_or_remote() -> ArgValueCompleter {
    ArgValueCompleter::new(|current: &OsStr| {
        match current.to_str().and_then(|c| c.strip_prefix(':')) {
            Some(remote) => remote_names(remote, ":"),
            None => PathCompleter::any().complete(current),
        }
    })
}

/// The remote names that complete `current`: the entries of its directory that start with
/// its last part, directories with a `/`, each written after `mark` (`:` for sync).
fn remote_names(current: &str, mark: &str) -> Vec<CompletionCandidate> {
    let (dir, prefix) = match current.rfind('/') {
        Some(i) => (&current[..=i], &current[i + 1..]),
        None => ("", current),
    };
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    let listed = runtime.block_on(async { tokio::time::timeout(DEADLINE, list(dir)).await });
    let Ok(Some(entries)) = listed else {
        return Vec::new();
    };
    entries
        .into_iter()
        .filter(|(name, _)| name.starts_with(prefix) && is_plain(name))
        .map(|(name, kind)| {
            let slash = if kind == EntryKind::Directory {
                "/"
            } else {
                ""
            };
            CompletionCandidate::new(format!("{mark}{dir}{name}{slash}"))
        })
        .collect()
}

/// A name a shell may be handed: no control or bidirectional character (a server's name
/// must not write to the terminal through the completion list).
fn is_plain(name: &str) -> bool {
    crate::sanitize::for_terminal(name) == name
}

/// The entries of the remote directory `dir` (relative to the home, as the commands take
/// it), over the login saved for `FTPC_SERVER` or the most recent one; `None` on any failure.
async fn list(dir: &str) -> Option<Vec<(String, EntryKind)>> {
    let store = CredentialStore::default_location().ok()?;
    let known_hosts = KnownHosts::default_location().ok()?;
    let server = std::env::var("FTPC_SERVER").ok();
    let server = match server.as_deref() {
        Some(raw) => Some(super::destination(raw).ok()?.1),
        None => None,
    };
    let (mut client, _): (Client, _) = connect_saved(
        &store,
        server.as_deref(),
        known_hosts,
        UnknownServer::Refuse,
    )
    .await
    .ok()?;
    let path = RemotePath::parse(dir).ok()?.to_string();
    let entries = client.list(&path).await.ok()?;
    let _ = client.close().await;
    Some(entries.into_iter().map(|e| (e.name, e.kind)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_reach_the_shell() {
        assert!(is_plain("notes.txt"));
        assert!(is_plain("my notes ü.txt"));
        assert!(!is_plain("a\nb"));
        assert!(!is_plain("x\u{1b}]0;owned\u{7}"));
        assert!(!is_plain("a\u{202e}b"));
        assert!(!is_plain("a\\b"));
    }
}
