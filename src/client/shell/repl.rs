//! The shell's loop: one line at a time, interactive (line editing, history) or from a batch file.

use super::*;

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
                let chat_io = crate::client::chat_commands::ChatOutput {
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
    pub fn saved_login(&self) -> Result<crate::client::SavedLogin> {
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
pub(super) fn run_local(command: &str) -> Result<()> {
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
                        crate::client::chat_shell::run_interactive(
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
pub(super) fn save_history(
    editor: &mut Editor<ShellHelper, rustyline::history::DefaultHistory>,
    path: &Path,
) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = editor.save_history(path);
}
