//! What a person runs on their files: the commands shared by one-shot `ftpc CMD ...` and
//! the interactive shell (`ftpc shell`), the shell itself with its remote working directory,
//! line editing, history and tab completion, and batch mode (`ftpc shell -b FILE`).
//!
//! Output goes to the writers the caller passes, so the binary stays glue and tests can
//! read what a person would see.
//!
//! - `command`: the commands (clap) people type, one-shot and in the shell;
//! - `session`: a logged-in [`Session`] and the dispatch of one command; `files`: the file
//!   commands that take several paths, wildcards and trees;
//! - `output`: reports, listings, and the writers output goes to;
//! - `repl`: the interactive shell and batch mode; `complete`: tab completion.

mod command;
mod complete;
mod files;
mod output;
mod repl;
mod session;
#[cfg(test)]
mod tests;

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

pub use command::*;
use complete::*;
use files::*;
pub use output::*;
pub use repl::*;
pub use session::*;
