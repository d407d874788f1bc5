//! The chat's one-shot commands (`friends`, `send`, `inbox`, `color`), the same on the
//! command line and in the file shell: each connects with the saved login, does one thing,
//! prints, and leaves.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use super::chat::{ChatClient, DeliveredMarks, INBOX_MESSAGES, Painter};
use super::{CredentialStore, KnownHosts, SavedLogin, UnknownServer};
use crate::chat::FriendState;
use crate::error::{Error, Result};
use crate::sanitize::for_terminal;
use crate::username::Username;

/// A chat command that does one thing and ends.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ChatCommand {
    /// Chat: list your friends (presence, waiting requests), or `add NAME` (ask, or accept
    /// their request) / `del NAME` (end a friendship both ways, withdraw or decline) /
    /// `block NAME` (end it, and drop their requests silently from now on) / `unblock
    /// NAME` / `blocked` (the names you block). The chat runs over QUIC, always encrypted:
    /// --plaintext does not apply to it.
    Friends {
        #[command(subcommand)]
        action: Option<FriendAction>,
    },
    /// Chat: send TEXT to a friend; exits 0 once the server has stored it.
    Send {
        /// The friend.
        #[arg(value_parser = valid_username)]
        name: String,
        /// The message (UTF-8, at most 4 KiB); several words are sent as one line, as
        /// `echo` joins them.
        #[arg(required = true, num_args = 1.., value_name = "TEXT")]
        text: Vec<String>,
    },
    /// Chat: print the messages waiting for you (time, sender, text), oldest first, and
    /// acknowledge them; each is printed once.
    Inbox {
        /// With nothing waiting, wait up to SECS for a message.
        #[arg(long, value_name = "SECS", default_value_t = 0.0)]
        wait: f64,
        /// One JSON object a message: id, at (ms since 1970), from, text.
        #[arg(long)]
        json: bool,
    },
    /// Chat: the colour friends see your name in (red, green, yellow, blue, magenta, cyan,
    /// or bright-...), or `none` for the one derived from your name; with no colour, says
    /// which it is.
    Color {
        /// The colour, or none.
        colour: Option<String>,
    },
}

/// What `friends` does besides listing.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum FriendAction {
    /// Ask NAME to be friends, or accept their request.
    Add {
        #[arg(value_parser = valid_username)]
        name: String,
    },
    /// End the friendship with NAME (both ways), or withdraw or decline a request.
    Del {
        #[arg(value_parser = valid_username)]
        name: String,
    },
    /// Block NAME: end what there is between you (they are not told) and drop their
    /// friend requests silently from now on.
    Block {
        #[arg(value_parser = valid_username)]
        name: String,
    },
    /// Stop blocking NAME.
    Unblock {
        #[arg(value_parser = valid_username)]
        name: String,
    },
    /// The names you block, one a line.
    Blocked,
}

/// A user name as the command line takes it: a bad one is a usage error.
fn valid_username(text: &str) -> std::result::Result<String, String> {
    Username::parse(text)
        .map(|name| name.as_str().to_owned())
        .map_err(|e| e.to_string())
}

/// Where a chat command writes, and how.
pub struct ChatOutput<'a> {
    /// Results.
    pub out: &'a mut dyn Write,
    /// Warnings.
    pub err: &'a mut dyn Write,
    /// Names in colour (a terminal).
    pub colour: bool,
}

impl ChatCommand {
    /// Connects with `saved`, runs the command, and closes.
    ///
    /// # Errors
    /// The connection or login fails, the server refuses, or the output cannot be written.
    pub async fn run(
        self,
        saved: &SavedLogin,
        store: &CredentialStore,
        trust: (KnownHosts, UnknownServer),
        io: ChatOutput<'_>,
    ) -> Result<()> {
        let mut chat = ChatClient::connect_saved(saved, trust.0, trust.1).await?;
        let outcome = self.run_on(&mut chat, saved, store, io).await;
        chat.close().await;
        outcome
    }

    async fn run_on(
        self,
        chat: &mut ChatClient,
        saved: &SavedLogin,
        store: &CredentialStore,
        io: ChatOutput<'_>,
    ) -> Result<()> {
        let painter = Painter::for_output(io.colour);
        match self {
            ChatCommand::Friends { action: None } => {
                for friend in chat.friends().await? {
                    let state = match friend.state {
                        FriendState::Friends if friend.online => "online",
                        FriendState::Friends => "offline",
                        FriendState::Asked => "asked (waiting for their answer)",
                        FriendState::AskedBy => "asks you (friends add to accept)",
                    };
                    let name = painter.name(&friend.name, friend.color.as_deref(), false);
                    writeln!(io.out, "{name}\t{state}")?;
                }
            }
            ChatCommand::Friends {
                action: Some(action),
            } => match action {
                FriendAction::Add { name } => chat.add(&name).await?,
                FriendAction::Del { name } => chat.del(&name).await?,
                FriendAction::Block { name } => chat.block(&name).await?,
                FriendAction::Unblock { name } => chat.unblock(&name).await?,
                FriendAction::Blocked => {
                    for name in chat.blocked().await? {
                        writeln!(io.out, "{}", for_terminal(&name))?;
                    }
                }
            },
            ChatCommand::Send { name, text } => {
                chat.send(&name, &text.join(" ")).await?;
            }
            ChatCommand::Color { colour: None } => match chat.own_color().await? {
                Some(colour) => writeln!(io.out, "{colour}")?,
                None => writeln!(
                    io.out,
                    "none (your name shows in {}, derived from it)",
                    super::chat::derived_colour(saved.user.as_str())
                )?,
            },
            ChatCommand::Color {
                colour: Some(colour),
            } => {
                let colour = (colour != "none").then_some(colour);
                chat.set_color(colour.as_deref()).await?;
            }
            ChatCommand::Inbox { wait, json } => {
                let marks = DeliveredMarks::beside(store);
                let user = saved.user.as_str();
                chat.resume_after(marks.get(&saved.server, user));
                let wait = Duration::try_from_secs_f64(wait)
                    .map_err(|_| Error::Usage("--wait takes seconds, 0 or more".into()))?;
                let inbox = chat.inbox(wait).await?;
                let mut colours = HashMap::new();
                if painter.colour && !json {
                    for friend in chat.friends().await? {
                        colours.insert(friend.name, friend.color);
                    }
                }
                for message in &inbox.messages {
                    if json {
                        let line = serde_json::to_string(message)
                            .map_err(|e| Error::Usage(format!("cannot write JSON: {e}")))?;
                        writeln!(io.out, "{line}")?;
                    } else {
                        let chosen = colours.get(&message.from).and_then(|c| c.as_deref());
                        writeln!(io.out, "{}", painter.message(message, chosen, false))?;
                    }
                }
                // Printed, then remembered here, then acknowledged: a broken connection in
                // between shows nothing twice. The acknowledgement covers what an earlier run
                // showed but could not acknowledge, too.
                if let Some(last) = inbox.messages.last() {
                    marks.set(&saved.server, user, last.id)?;
                }
                if chat.delivered() > 0 {
                    chat.ack(chat.delivered()).await?;
                }
                if inbox.more {
                    writeln!(
                        io.err,
                        "ftpc: more messages are waiting than one inbox takes \
                         ({INBOX_MESSAGES} or 16 MiB); run inbox again for the rest"
                    )?;
                }
            }
        }
        Ok(())
    }
}
