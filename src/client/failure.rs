//! A command that failed and what the person typed: the shape every command's error takes
//! on its way to the terminal, whichever room ran it (the shell, time, the binary).

use crate::error::Error;
use crate::sanitize::for_terminal;

/// A command that failed, with what the person typed, for messages such as
/// `mkdir remote/dir: already exists` (a local file the command already names is not named
/// twice: `put nothere.txt: No such file or directory`).
#[derive(Debug)]
pub struct CommandError {
    /// The command and its main argument, as typed.
    pub context: String,
    /// What went wrong (already part of the message, so not reported as a source).
    pub error: Error,
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.error {
            Error::Local { path, message }
                if self.context.ends_with(&format!(" {}", path.display())) =>
            {
                write!(f, "{}: {}", self.context, for_terminal(message))
            }
            error => write!(f, "{}: {error}", self.context),
        }
    }
}

impl std::error::Error for CommandError {}

/// Names the command (`context`) an error came from.
pub fn failed(context: impl Into<String>) -> impl FnOnce(Error) -> CommandError {
    move |error| CommandError {
        context: context.into(),
        error,
    }
}
