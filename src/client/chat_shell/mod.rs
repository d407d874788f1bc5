//! `ftpc chat`: the interactive chat. The line editor runs on this thread; the connection on
//! a thread of its own, which prints what arrives above the prompt (rustyline's external
//! printer) without breaking the line being typed, and reconnects with the cached login
//! when the connection is lost.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, ExternalPrinter, Helper};
use tokio::sync::mpsc;

use super::chat::{ChatClient, Painter, Timeline};
use super::credentials::SavedLogin;
use super::tls::{KnownHosts, UnknownServer};
use crate::chat::{COLOURS, ChatEvent, ChatMessage, FriendState};
use crate::error::{Error, Result};

/// The commands, for `/help` and completion: the command, its arguments, what it does.
const COMMANDS: &[(&str, &str, &str)] = &[
    (
        "/add",
        "NAME",
        "ask NAME to be friends, or accept their request",
    ),
    (
        "/del",
        "NAME",
        "end a friendship, withdraw or decline a request",
    ),
    (
        "/block",
        "NAME",
        "end it with NAME and drop their requests from now on",
    ),
    ("/unblock", "NAME", "stop blocking NAME"),
    ("/friends", "", "friends (online or not) and requests"),
    ("/who", "", "friends online now"),
    ("/msg", "NAME TEXT", "send TEXT to a friend"),
    ("/me", "TEXT", "an action: * you TEXT (to the /to friend)"),
    ("/to", "NAME", "plain lines go to NAME from now on"),
    (
        "/history",
        "[NAME] [N]",
        "the last N (20) messages with NAME",
    ),
    (
        "/color",
        "[COLOUR]",
        "the colour friends see your name in (none: your own)",
    ),
    ("/help", "", "this list"),
    ("/quit", "", "leave (Ctrl-D too)"),
];

/// Said under `/help`: how to write more than one line.
const MULTI_LINE: &str =
    "  Alt-Enter starts a new line of the same message; a pasted block is one message.\n";

/// `/help`: the commands and what they do, in aligned columns.
fn help_text() -> String {
    let usage = |(command, args, _): &(&str, &str, &str)| format!("{command} {args}");
    let width = COMMANDS.iter().map(|c| usage(c).len()).max().unwrap_or(0);
    COMMANDS
        .iter()
        .map(|c| format!("  {:<width$}  {}\n", usage(c), c.2))
        .chain(std::iter::once(MULTI_LINE.to_owned()))
        .collect()
}

/// One line typed at the chat prompt, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// `/add NAME`.
    Add(String),
    /// `/del NAME`.
    Del(String),
    /// `/block NAME`.
    Block(String),
    /// `/unblock NAME`.
    Unblock(String),
    /// `/friends`.
    Friends,
    /// `/who`.
    Who,
    /// `/msg NAME TEXT`, or a plain line to the current `/to` target.
    Msg(String, String),
    /// A plain line, or `/me TEXT` (an action, sent as `/me TEXT` as XMPP's clients do),
    /// to the current target, if there is one.
    Say(String),
    /// `/to NAME`.
    To(String),
    /// `/history [NAME] [N]`.
    History(Option<String>, u32),
    /// `/color COLOUR|none`.
    Color(Option<String>),
    /// `/color`: which colour is ours.
    ShowColor,
    /// `/help`.
    Help,
    /// `/quit`.
    Quit,
    /// Nothing (an empty line).
    Nothing,
}

/// Understands one line; a usage problem comes back in words.
///
/// # Errors
/// An unknown command or missing arguments, with what was expected.
pub fn parse_input(line: &str) -> std::result::Result<Input, String> {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return Ok(Input::Nothing);
    }
    let Some(command) = trimmed.strip_prefix('/') else {
        return Ok(Input::Say(line.trim_end().to_owned()));
    };
    let (word, rest) = command
        .split_once(char::is_whitespace)
        .map_or((command, ""), |(w, r)| (w, r.trim()));
    let one = |what: &str| -> std::result::Result<String, String> {
        match rest.split_whitespace().collect::<Vec<_>>().as_slice() {
            [name] => Ok((*name).to_owned()),
            _ => Err(format!("usage: /{word} {what}")),
        }
    };
    Ok(match word {
        "add" => Input::Add(one("NAME")?),
        "del" => Input::Del(one("NAME")?),
        "block" => Input::Block(one("NAME")?),
        "unblock" => Input::Unblock(one("NAME")?),
        "to" => Input::To(one("NAME")?),
        "friends" => Input::Friends,
        "who" => Input::Who,
        "msg" => match rest.split_once(char::is_whitespace) {
            Some((name, text)) if !text.trim().is_empty() => {
                Input::Msg(name.to_owned(), text.trim().to_owned())
            }
            _ => return Err("usage: /msg NAME TEXT".into()),
        },
        "history" => {
            let mut name = None;
            let mut count = 20;
            for part in rest.split_whitespace() {
                match part.parse::<u32>() {
                    Ok(n) => count = n,
                    Err(_) => name = Some(part.to_owned()),
                }
            }
            Input::History(name, count)
        }
        "me" if !rest.is_empty() => Input::Say(format!("/me {rest}")),
        "me" => return Err("usage: /me TEXT".into()),
        "color" | "colour" if rest.is_empty() => Input::ShowColor,
        "color" | "colour" => {
            let colour = one("COLOUR")?;
            Input::Color((colour != "none").then_some(colour))
        }
        "help" | "?" => Input::Help,
        "quit" | "exit" => Input::Quit,
        _ => return Err(format!("unknown command /{word}: /help lists them")),
    })
}

/// What one entry at the prompt holds: a message of several lines (typed with Alt-Enter, or
/// pasted) is one piece; commands pasted one a line are one piece each.
fn pieces(entry: &str) -> Vec<&str> {
    let first = entry.trim_start();
    let word = first
        .strip_prefix('/')
        .map(|c| c.split(char::is_whitespace).next().unwrap_or(""));
    match word {
        Some(word) if !matches!(word, "msg" | "me") => entry.lines().collect(),
        _ => vec![entry],
    }
}

/// What the editor thread shares with the connection thread.
#[derive(Default)]
struct EditorState {
    /// Friends' names, for completion.
    friends: Mutex<Vec<String>>,
    /// Where plain lines go.
    target: Mutex<Option<String>>,
}

/// Runs the chat until `/quit` or end of input.
///
/// # Errors
/// The first connection fails (later losses reconnect), or the terminal cannot be used.
pub fn run_interactive(
    saved: SavedLogin,
    known_hosts: KnownHosts,
    unknown: UnknownServer,
    history: Option<PathBuf>,
) -> Result<()> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        return Err(Error::Usage(
            "the chat is interactive and needs a terminal; scripts use ftpc send, \
             ftpc inbox and ftpc friends"
                .into(),
        ));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let first = runtime.block_on(ChatClient::connect_saved(
        &saved,
        known_hosts.clone(),
        unknown.clone(),
    ))?;
    let shared = Arc::new(EditorState::default());
    let mut editor: Editor<ChatHelper, rustyline::history::DefaultHistory> = Editor::with_config(
        rustyline::Config::builder()
            .completion_type(rustyline::CompletionType::List)
            .build(),
    )
    .map_err(|e| Error::Usage(format!("cannot use the terminal: {e}")))?;
    editor.set_helper(Some(ChatHelper {
        shared: Arc::clone(&shared),
    }));
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    // Alt-Enter (ESC then Enter, as terminals send it) starts a new line of the message.
    editor.bind_sequence(
        rustyline::KeyEvent(rustyline::KeyCode::Enter, rustyline::Modifiers::ALT),
        rustyline::Cmd::Newline,
    );
    let printer = editor
        .create_external_printer()
        .map_err(|e| Error::Usage(format!("cannot use the terminal: {e}")))?;
    let (lines, inbox) = mpsc::unbounded_channel::<Input>();
    let me = crate::sanitize::for_terminal(saved.user.as_str());
    let connection = Link {
        client: Some(first),
        saved,
        known_hosts,
        unknown,
        shared: Arc::clone(&shared),
        painter: Painter::for_output(true),
        colours: HashMap::new(),
        printer: Box::new(printer),
        delivered: 0,
        timeline: Timeline::today(),
        sent_shown: 0,
    };
    let worker = std::thread::Builder::new()
        .name("ftpc-chat".into())
        .spawn(move || runtime.block_on(connection.run(inbox)))?;
    println!("chat as {me}: /help lists the commands, /quit leaves");
    loop {
        let prompt = match shared.target.lock().map(|t| t.clone()) {
            Ok(Some(target)) => format!("to {}> ", crate::sanitize::for_terminal(&target)),
            _ => "chat> ".to_owned(),
        };
        let line = match editor.readline(&prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(Error::Usage(format!("cannot read the terminal: {e}"))),
        };
        for line in pieces(&line) {
            if !line.trim().is_empty() {
                let _ = editor.add_history_entry(line);
            }
            match parse_input(line) {
                Ok(Input::Quit) => {
                    drop(lines);
                    save_history(&mut editor, history.as_deref());
                    let _ = worker.join();
                    return Ok(());
                }
                Ok(Input::Help) => print!("{}", help_text()),
                // The prompt shows the new target at once: set here, before the next prompt.
                Ok(Input::To(name)) => {
                    if let Ok(mut target) = shared.target.lock() {
                        *target = Some(name);
                    }
                }
                Ok(Input::Nothing) => {}
                Ok(input) => {
                    if lines.send(input).is_err() {
                        break;
                    }
                }
                Err(usage) => eprintln!("{usage}"),
            }
        }
    }
    drop(lines);
    save_history(&mut editor, history.as_deref());
    let _ = worker.join();
    Ok(())
}

fn save_history(
    editor: &mut Editor<ChatHelper, rustyline::history::DefaultHistory>,
    path: Option<&Path>,
) {
    if let Some(path) = path {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = editor.save_history(path);
    }
}

/// The connection's side: requests from the editor, events from the server, reconnects.
struct Link {
    client: Option<ChatClient>,
    saved: SavedLogin,
    known_hosts: KnownHosts,
    unknown: UnknownServer,
    shared: Arc<EditorState>,
    painter: Painter,
    /// Friends' chosen colours.
    colours: HashMap<String, Option<String>>,
    printer: Box<dyn ExternalPrinter + Send>,
    /// The highest message id shown, carried across reconnects.
    delivered: u64,
    /// Which day the last time shown was on.
    timeline: Timeline,
    /// The highest id of our own messages shown (a resend's carbon is not shown twice).
    sent_shown: u64,
}

impl Link {
    fn print(&mut self, line: String) {
        let _ = self.printer.print(line);
    }

    async fn run(mut self, mut lines: mpsc::UnboundedReceiver<Input>) {
        if let Err(err) = self.roster().await {
            self.print(format!("{err}"));
        }
        loop {
            let Some(client) = self.client.as_mut() else {
                if !self.reconnect(&mut lines).await {
                    return;
                }
                continue;
            };
            let outcome = tokio::select! {
                line = lines.recv() => match line {
                    Some(input) => self.apply(input).await,
                    None => {
                        if let Some(client) = self.client.take() {
                            client.close().await;
                        }
                        return;
                    }
                },
                event = client.next_event() => match event {
                    Ok(Some(event)) => self.show(event).await,
                    Ok(None) => Err(Error::ConnectionClosed),
                    Err(err) => Err(err),
                },
            };
            if let Err(err) = outcome {
                if is_refusal(&err) {
                    self.print(format!("{err}"));
                } else {
                    self.print(match err {
                        Error::ConnectionClosed => "connection lost; reconnecting...".into(),
                        err => format!("connection lost ({err}); reconnecting..."),
                    });
                    if let Some(client) = self.client.take() {
                        self.delivered = self.delivered.max(client.delivered());
                    }
                }
            }
        }
    }

    /// Reconnects with the cached login, backing off; false if the editor went away.
    async fn reconnect(&mut self, lines: &mut mpsc::UnboundedReceiver<Input>) -> bool {
        let mut wait = Duration::from_millis(500);
        loop {
            match ChatClient::connect_saved(
                &self.saved,
                self.known_hosts.clone(),
                self.unknown.clone(),
            )
            .await
            {
                Ok(mut client) => {
                    client.resume_after(self.delivered);
                    self.client = Some(client);
                    self.print("reconnected".into());
                    let _ = self.roster().await;
                    return true;
                }
                Err(err @ (Error::LoginExpired { .. } | Error::CertificateChanged { .. })) => {
                    self.print(format!("cannot reconnect: {err}"));
                    return false;
                }
                Err(_) => {}
            }
            // Lines typed meanwhile are refused in words, not queued behind the outage.
            let deadline = tokio::time::sleep(wait);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    () = &mut deadline => break,
                    line = lines.recv() => match line {
                        Some(_) => self.print("not connected; reconnecting...".into()),
                        None => return false,
                    },
                }
            }
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    }

    fn client(&mut self) -> Result<&mut ChatClient> {
        self.client.as_mut().ok_or(Error::ConnectionClosed)
    }

    /// Fetches the friends list, keeps their colours and names (for completion); the list.
    async fn refresh_friends(&mut self) -> Result<Vec<crate::chat::Friend>> {
        let friends = self.client()?.friends().await?;
        self.colours = friends
            .iter()
            .filter(|f| f.state == FriendState::Friends)
            .map(|f| (f.name.clone(), f.color.clone()))
            .collect();
        if let Ok(mut names) = self.shared.friends.lock() {
            *names = friends.iter().map(|f| f.name.clone()).collect();
        }
        Ok(friends)
    }

    /// Says which friends are online (at the start, after a reconnect, and for `/who`):
    /// presence is pushed only as it changes.
    async fn roster(&mut self) -> Result<()> {
        let online: Vec<String> = self
            .refresh_friends()
            .await?
            .into_iter()
            .filter(|f| f.state == FriendState::Friends && f.online)
            .map(|f| self.name(&f.name))
            .collect();
        self.print(match online.as_slice() {
            [] => "* none of your friends is online".into(),
            [one] => format!("* {one} is online"),
            many => format!("* online: {}", many.join(", ")),
        });
        Ok(())
    }

    fn name(&self, name: &str) -> String {
        let chosen = self.colours.get(name).and_then(|c| c.as_deref());
        self.painter.name(name, chosen, false)
    }

    async fn apply(&mut self, input: Input) -> Result<()> {
        match input {
            Input::Add(name) => {
                self.client()?.add(&name).await?;
                let friends = self.refresh_friends().await?;
                let state = friends.iter().find(|f| f.name == name).map(|f| f.state);
                let shown = self.name(&name);
                // Accepted: the friendship's event says so. Otherwise asked, or nothing at
                // all for a name that does not exist or blocks us, which must look the same.
                if state != Some(FriendState::Friends) {
                    self.print(format!("* asked {shown}; waiting for their answer"));
                }
            }
            Input::Del(name) => {
                self.client()?.del(&name).await?;
                self.print(format!(
                    "* nothing between you and {} now",
                    self.name(&name)
                ));
                self.refresh_friends().await?;
            }
            Input::Block(name) => {
                self.client()?.block(&name).await?;
                self.print(format!(
                    "* {} is blocked: nothing between you, and their requests are dropped",
                    self.name(&name)
                ));
                self.refresh_friends().await?;
            }
            Input::Unblock(name) => {
                self.client()?.unblock(&name).await?;
                self.print(format!("* {} is no longer blocked", self.name(&name)));
            }
            Input::Friends => {
                let friends = self.refresh_friends().await?;
                if friends.is_empty() {
                    self.print("* no friends yet: /add NAME".into());
                }
                for friend in friends {
                    let state = match friend.state {
                        FriendState::Friends if friend.online => "online",
                        FriendState::Friends => "offline",
                        FriendState::Asked => "asked, no answer yet",
                        FriendState::AskedBy => "asks you: /add to accept, /del to decline",
                    };
                    let line = format!("  {}  {state}", self.name(&friend.name));
                    self.print(line);
                }
            }
            Input::Msg(to, text) => self.send(&to, &text).await?,
            Input::Say(text) => {
                let target = self.shared.target.lock().ok().and_then(|t| t.clone());
                match target {
                    Some(to) => self.send(&to, &text).await?,
                    None => self.print("to whom? /to NAME first, or /msg NAME TEXT".into()),
                }
            }
            Input::Who => self.roster().await?,
            // Set by the editor, which shows it in the prompt at once.
            Input::To(_) => {}
            Input::History(name, count) => {
                let with = name.or_else(|| self.shared.target.lock().ok().and_then(|t| t.clone()));
                let Some(with) = with else {
                    self.print("history with whom? /history NAME".into());
                    return Ok(());
                };
                let me = self.saved.user.as_str().to_owned();
                let messages = self.client()?.history(&with, count).await?;
                for message in messages {
                    let own = message.from == me;
                    let line = self.line(&message, own);
                    self.print(line);
                }
            }
            Input::ShowColor => {
                let line = match self.client()?.own_color().await? {
                    Some(c) => format!("* friends see your name in {c}"),
                    None => format!(
                        "* friends see your name in its own colour ({}); /color COLOUR changes it",
                        super::chat::derived_colour(self.saved.user.as_str())
                    ),
                };
                self.print(line);
            }
            Input::Color(colour) => {
                self.client()?.set_color(colour.as_deref()).await?;
                self.print(match colour {
                    Some(c) => format!("* friends see your name in {c}"),
                    None => "* friends see your name in its own colour".into(),
                });
            }
            Input::Help | Input::Quit | Input::Nothing => {}
        }
        Ok(())
    }

    async fn send(&mut self, to: &str, text: &str) -> Result<()> {
        let (id, at) = self.client()?.send(to, text).await?;
        self.sent_shown = self.sent_shown.max(id);
        let me = self.saved.user.to_string();
        let line = self.line(
            &ChatMessage {
                id,
                from: me,
                to: to.to_owned(),
                at,
                text: text.to_owned(),
            },
            true,
        );
        self.print(line);
        Ok(())
    }

    /// A message as the chat shows it, after a line naming its day if that changed.
    fn line(&mut self, message: &ChatMessage, own: bool) -> String {
        let chosen = self.colours.get(&message.from).and_then(|c| c.as_deref());
        let (day, when) = self.timeline.stamp(message.at);
        let width = console::Term::stdout()
            .size_checked()
            .map(|(_, columns)| usize::from(columns));
        let mut line = self.painter.chat_line(message, chosen, own, &when, width);
        if own {
            line.push_str(&format!("  (to {})", self.name(&message.to)));
        }
        match day {
            Some(day) => format!("{day}\n{line}"),
            None => line,
        }
    }

    async fn show(&mut self, event: ChatEvent) -> Result<()> {
        match event {
            ChatEvent::Message(message) => {
                let line = self.line(&message, false);
                self.print(line);
                self.delivered = self.delivered.max(message.id);
                self.client()?.ack(message.id).await?;
            }
            ChatEvent::Presence { name, online } => {
                let state = if online { "online" } else { "offline" };
                let line = format!("* {} is {state}", self.name(&name));
                self.print(line);
            }
            ChatEvent::FriendRequest { from } => {
                let shown = self.name(&from);
                let plain = crate::sanitize::for_terminal(&from);
                self.print(format!(
                    "* {shown} asks to be friends: /add {plain} to accept, /del {plain} to decline"
                ));
                self.refresh_friends().await?;
            }
            ChatEvent::Friendship { name, state } => {
                self.refresh_friends().await?;
                let line = match state {
                    Some(FriendState::Friends) => {
                        format!("* you and {} are friends now", self.name(&name))
                    }
                    _ => format!("* {} and you are no longer friends", self.name(&name)),
                };
                self.print(line);
            }
            // What an earlier connection showed but could not acknowledge, acknowledged now.
            ChatEvent::CaughtUp if self.delivered > 0 => {
                let delivered = self.delivered;
                self.client()?.ack(delivered).await?;
            }
            ChatEvent::CaughtUp => {}
            // Sent from another session of ours.
            ChatEvent::Sent(message) if message.id > self.sent_shown => {
                self.sent_shown = message.id;
                let line = self.line(&message, true);
                self.print(line);
            }
            ChatEvent::Sent(_) => {}
            ChatEvent::Color { name, color } => {
                self.colours.insert(name.clone(), color);
                let line = format!("* {} has a new colour", self.name(&name));
                self.print(line);
            }
        }
        Ok(())
    }
}

/// A refusal is shown and the session goes on; anything else is a lost connection.
fn is_refusal(err: &Error) -> bool {
    matches!(err, Error::Chat { .. })
}

/// Completes commands, friends' names and colours.
struct ChatHelper {
    shared: Arc<EditorState>,
}

impl Completer for ChatHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let start = before.rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let word = &before[start..];
        let pair = |s: &str| Pair {
            display: crate::sanitize::for_terminal(s),
            replacement: format!("{s} "),
        };
        let candidates: Vec<Pair> = if start == 0 && word.starts_with('/') {
            COMMANDS
                .iter()
                .map(|(c, _, _)| *c)
                .filter(|c| c.starts_with(word))
                .map(pair)
                .collect()
        } else if before.starts_with("/color") || before.starts_with("/colour") {
            COLOURS
                .iter()
                .chain(&["none"])
                .filter(|c| c.starts_with(word))
                .map(|c| pair(c))
                .collect()
        } else if before.starts_with('/') && before[..start].split_whitespace().count() == 1 {
            let friends = self
                .shared
                .friends
                .lock()
                .map(|f| f.clone())
                .unwrap_or_default();
            // Names come from the server: only a real user name (no control or bidi
            // character can be one) is offered, shown or put into the line.
            friends
                .iter()
                .filter(|f| f.starts_with(word) && crate::username::Username::parse(f).is_ok())
                .map(|f| pair(f))
                .collect()
        } else {
            Vec::new()
        };
        Ok((start, candidates))
    }
}

impl Hinter for ChatHelper {
    type Hint = String;
}
impl Highlighter for ChatHelper {}
impl Validator for ChatHelper {}
impl Helper for ChatHelper {}

#[cfg(test)]
mod tests;
