//! `ftpc`: the ftprep client. `ftpc login alice` once, then commands reuse the login;
//! `ftpc` alone (or `ftpc shell`) opens an interactive shell.
//!
//! Exit codes: 0 success; 1 the command failed (the server refused it, or a local file
//! problem); 2 usage error; 3 authentication failed or a login is needed; 4 the connection
//! or the protocol failed.

use std::io::{BufReader, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use ftprep::client::bench::{BenchOptions, LiveCounts, Mix};
use ftprep::client::chat_commands::{ChatCommand, ChatOutput};
use ftprep::client::shell::{self, FileCommand, Output, Session};
use ftprep::client::time::TimeArgs;
use ftprep::client::{
    self, Client, CredentialStore, KnownHosts, SavedLogin, Transport, UnknownServer, progress,
};
use ftprep::error::ErrorKind;
use ftprep::username::Username;

/// Transfers allocate and free a 512 KiB buffer per chunk. glibc's allocator returns such
/// memory to the kernel and faults it in again, page by page, a little later; jemalloc
/// keeps it for reuse.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The heading of the options every command takes: listed apart from a command's own.
const CONNECTION: &str = "Connection (any command)";

/// ftprep client: log in once to an ftpd server, then work with your remote files.
/// Without a command, opens the interactive shell.
// The doc comments are clap's help text: `HOST[:PORT]` is a usage line, not a link.
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Parser)]
#[command(name = "ftpc", version)]
struct Cli {
    /// Server address [USER@]HOST[:PORT] (port 2121 if not given; IPv6 as [::1]:2121).
    /// Default: the server of your most recent login, or 127.0.0.1:2121 for a first login.
    /// With USER@, the saved login there must be USER's.
    #[arg(long, global = true, value_name = "[USER@]HOST:PORT", env = "FTPC_SERVER", help_heading = CONNECTION)]
    server: Option<String>,
    /// Trust a server seen for the first time without asking (scripts); a server whose
    /// certificate CHANGED is still refused.
    #[arg(long, global = true, help_heading = CONNECTION)]
    accept_new: bool,
    /// At login: verify the server's certificate against the CA certificates in this PEM
    /// file instead of pinning it.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        conflicts_with = "plaintext",
        help_heading = CONNECTION
    )]
    ca: Option<PathBuf>,
    /// At login: talk to a server started with --plaintext (no TLS; loopback labs only).
    #[arg(long, global = true, help_heading = CONNECTION)]
    plaintext: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

// As for `Cli`: `[:PORT]` in the help text is a usage line, not a link.
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Subcommand)]
enum Command {
    /// Log in and remember the login for later commands (the password is never stored). On
    /// a terminal, a wrong password may be typed again, three tries in all, as ssh allows.
    Login {
        /// Your user name on the server, or USER@HOST[:PORT] as ssh takes it.
        #[arg(value_name = "USER[@HOST[:PORT]]")]
        user: String,
        /// Read the password as one line from standard input instead of the terminal.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Forget the saved login for the server.
    Logout,
    /// The servers whose certificates you trust (`known_hosts`): `list` them, or `remove
    /// SERVER` so the next connection asks again (as `ssh-keygen -R`), after the admin
    /// confirmed a new certificate.
    KnownHosts {
        #[command(subcommand)]
        action: KnownHostsAction,
    },
    /// Interactive shell (line editing, history, tab completion); with -b, or when standard
    /// input is not a terminal, runs commands from a file or stdin and stops at the first
    /// failure.
    Shell {
        /// Batch file with one command a line (`-` for standard input).
        #[arg(short = 'b', long = "batch", value_name = "FILE")]
        batch: Option<PathBuf>,
    },
    /// Load generator: CLIENTS concurrent clients for SECS seconds, each looping over
    /// connect + login (cached keys) + a mix of commands, with the saved login. Prints
    /// logins/s, commands/s, p50/p99/max latency and every error; exits 1 if any happened.
    Bench {
        /// Concurrent clients (no -c: that is --continue in put and get).
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Seconds to run.
        #[arg(short, long, value_name = "SECS", default_value_t = 10.0)]
        duration: f64,
        /// What each client does after logging in.
        #[arg(long, value_enum, default_value_t = Mix::Commands)]
        mix: Mix,
        /// Bytes the transfer mix puts and gets.
        #[arg(long, value_name = "SIZE", default_value = "64K", value_parser = parse_size)]
        file_size: u64,
    },
    /// Ask NTP time servers (an ftpd, chrony, ntpd) how far this machine's clock is off.
    /// Never changes the clock.
    Time(TimeArgs),
    /// Chat, interactively: messages, requests and presence appear above the prompt as they
    /// come; /help lists the commands (/add, /del, /friends, /msg, /to, /history, /color,
    /// /quit). Over QUIC, always encrypted: --plaintext does not apply to the chat.
    Chat,
    #[command(flatten)]
    ChatOnce(ChatCommand),
    /// Print a shell completion script: `ftpc completions bash > /etc/bash_completion.d/ftpc`
    /// (or zsh, fish, elvish, powershell). It asks ftpc as you press Tab, so remote names
    /// complete too (`ftpc get <Tab>`, `ftpc sync :<Tab>`), over the saved login for
    /// FTPC_SERVER or the most recent one, within 3 s, never asking anything.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: client::complete::Shell,
    },
    /// Print the manual page (roff): `ftpc man > ~/.local/share/man/man1/ftpc.1`.
    Man,
    #[command(flatten)]
    File(FileCommand),
}

#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Subcommand)]
enum KnownHostsAction {
    /// Each trusted server and its certificate's fingerprint.
    List,
    /// Forget the certificate of SERVER (HOST[:PORT]).
    Remove {
        /// The server, as you connect to it.
        server: String,
    },
}

fn parse_size(text: &str) -> Result<u64, String> {
    ftprep::size::parse_size(text)
}

fn main() -> ExitCode {
    // A shell asking for completions (`COMPLETE=bash ftpc -- ftpc get ...`) is answered here.
    clap_complete::CompleteEnv::with_factory(Cli::command)
        .var(client::complete::VARIABLE)
        .complete();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("ftpc: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match run(cli, runtime) {
        Ok(code) => code,
        Err(err) => {
            if is_broken_pipe(&err) {
                // `ftpc ls | head` is not a failure.
                return ExitCode::SUCCESS;
            }
            eprintln!("ftpc: {err:#}");
            ExitCode::from(exit_code(&err))
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// What `ftpc man` says beyond the commands.
fn manual_page() -> ftprep::manual::Page<'static> {
    ftprep::manual::Page {
        section: "1",
        more_commands: vec![("SHELL COMMANDS", shell::commands())],
        sections: vec![
            (
                "FILES",
                vec![
                    (
                        "~/.config/ftpc/credentials",
                        "Saved logins (mode 0600): per server, the user and the keys derived \
                         from the password at ftpc login, never the password.",
                    ),
                    (
                        "~/.config/ftpc/known_hosts",
                        "The servers trusted, one `SERVER FINGERPRINT` a line (ftpc \
                         known-hosts).",
                    ),
                    (
                        "~/.config/ftpc/chat-delivered",
                        "The last chat message shown per login, so none is shown twice.",
                    ),
                    (
                        "~/.local/share/ftpc/history, chat-history",
                        "The shell's and the chat's line history.",
                    ),
                ],
            ),
            (
                "ENVIRONMENT",
                vec![
                    ("FTPC_SERVER", "The server, as --server takes it."),
                    (
                        "XDG_CONFIG_HOME, XDG_DATA_HOME",
                        "Where the files above live (~/.config, ~/.local/share by default).",
                    ),
                    ("NO_COLOR", "Set and not empty: no colours in the chat."),
                    ("TMPDIR", "Where put - keeps standard input until it ends."),
                    ("SHELL", "What ! alone starts in the shell."),
                ],
            ),
            (
                "EXIT STATUS",
                vec![
                    ("0", "Success."),
                    (
                        "1",
                        "The command failed: the server refused it, or a local file problem.",
                    ),
                    ("2", "Usage error."),
                    ("3", "Authentication failed, or a login is needed."),
                    ("4", "The connection or the protocol failed."),
                    ("130", "Interrupted by Ctrl-C during a transfer."),
                ],
            ),
            (
                "EXAMPLES",
                vec![
                    (
                        "ftpc login alice@files.example.org",
                        "Log in once; later commands reuse it.",
                    ),
                    (
                        "ftpc put -r -p photos backup/",
                        "Upload a tree into backup/photos, keeping times.",
                    ),
                    (
                        "ftpc sync --delete site :www",
                        "Make the remote www the same as the local site.",
                    ),
                    ("tar c dir | ftpc put - dir.tar", "Upload standard input."),
                    (
                        "ftpc ls -0 | xargs -0 ...",
                        "Names as they are, for scripts.",
                    ),
                    (
                        "ftpc time -v",
                        "How far this clock is off, by the server's time service.",
                    ),
                    ("ftpc friends add bob; ftpc chat", "Chat with a friend."),
                ],
            ),
        ],
    }
}

/// The name a file command is typed with, for what to say after Ctrl-C.
fn file_command_name(command: &FileCommand) -> &'static str {
    match command {
        FileCommand::Get { .. } => "get",
        FileCommand::Put { .. } => "put",
        FileCommand::Mget { .. } => "mget",
        FileCommand::Mput { .. } => "mput",
        FileCommand::Sync { .. } => "sync",
        _ => "",
    }
}

/// A failed command and a line on how to go on, printed after it.
#[derive(Debug)]
struct Hinted {
    error: shell::CommandError,
    hint: &'static str,
}

impl std::fmt::Display for Hinted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\nftpc: {}", self.error, self.hint)
    }
}

/// The command's error is part of the message, so not reported as a source.
impl std::error::Error for Hinted {}

/// Maps the library's error kind to the documented exit code.
fn exit_code(err: &anyhow::Error) -> u8 {
    let kind = err.chain().find_map(|e| {
        e.downcast_ref::<ftprep::Error>()
            .map(ftprep::Error::kind)
            .or_else(|| {
                e.downcast_ref::<shell::CommandError>()
                    .map(|c| c.error.kind())
            })
            .or_else(|| e.downcast_ref::<Hinted>().map(|h| h.error.error.kind()))
            .or_else(|| {
                e.downcast_ref::<shell::BatchError>()
                    .map(|b| b.failure.error.kind())
            })
    });
    match kind {
        Some(ErrorKind::Usage) => 2,
        Some(ErrorKind::Auth) => 3,
        Some(ErrorKind::Connection) => 4,
        Some(ErrorKind::Refused | ErrorKind::Local) | None => 1,
    }
}

/// Connection settings from the command line.
struct Trust {
    known_hosts: KnownHosts,
    unknown: UnknownServer,
    transport: Transport,
}

impl Trust {
    fn from_cli(cli: &Cli) -> anyhow::Result<Self> {
        let unknown = if cli.accept_new {
            UnknownServer::AcceptNew
        } else if std::io::stderr().is_terminal() {
            UnknownServer::Ask(Arc::new(ask_to_trust))
        } else {
            UnknownServer::Refuse
        };
        let transport = match (&cli.ca, cli.plaintext) {
            (_, true) => Transport::Plaintext,
            (Some(ca), false) => Transport::TlsCa(std::path::absolute(ca)?),
            (None, false) => Transport::Tls,
        };
        Ok(Trust {
            known_hosts: KnownHosts::default_location()?,
            unknown,
            transport,
        })
    }
}

/// Asks on the terminal whether to trust a server seen for the first time, as ssh does:
/// `yes`, or the fingerprint pasted from what the admin sent.
fn ask_to_trust(server: &str, fingerprint: &str) -> bool {
    let Ok(tty) = std::fs::File::open("/dev/tty") else {
        return false;
    };
    eprintln!("The authenticity of {server} can't be established.");
    eprintln!("Its certificate fingerprint is {fingerprint}.");
    eprintln!("Compare it with what the server's admin gets from `ftpd fingerprint`.");
    eprint!("Trust this server and connect (yes/no/[fingerprint])? ");
    let mut answer = String::new();
    if std::io::BufRead::read_line(&mut BufReader::new(tty), &mut answer).is_err() {
        return false;
    }
    match client::tls::trust_answer(&answer, fingerprint) {
        Ok(trusted) => trusted,
        Err(why) => {
            eprintln!("{why}");
            false
        }
    }
}

fn run(cli: Cli, runtime: tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let store = CredentialStore::default_location()?;
    let trust = Trust::from_cli(&cli)?;
    let (server_user, server) = match cli.server.as_deref() {
        Some(raw) => {
            let (user, server) = client::destination(raw)?;
            (user, Some(server))
        }
        None => (None, None),
    };
    let server = server.as_deref();
    // `--server bob@host`: the login saved there must be bob's.
    if let (Some(user), Some(host)) = (&server_user, server)
        && !matches!(cli.command, Some(Command::Login { .. }))
        && let Some(saved) = store.find(Some(host))?
        && &saved.user != user
    {
        return Err(ftprep::Error::Usage(format!(
            "the login saved for {host} is {}'s, not {user}'s: ftpc login {user}@{host}",
            saved.user
        ))
        .into());
    }
    match cli.command {
        Some(Command::Time(args)) => {
            let login = store.find(server)?.map(|login| login.server);
            runtime.block_on(async {
                let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
                // Ctrl-C ends a --watch: that is how it is meant to stop.
                tokio::select! {
                    outcome = args.run(login.as_deref(), &mut out, &mut err) => outcome,
                    _ = tokio::signal::ctrl_c() => Ok(()),
                }
            })?;
        }
        Some(Command::Chat) => {
            let saved = store
                .find(server)?
                .ok_or_else(|| ftprep::Error::NotLoggedIn {
                    server: server.map(str::to_owned),
                })?;
            drop(runtime);
            let history = dirs::data_dir().map(|d| d.join("ftpc").join("chat-history"));
            ftprep::client::chat_shell::run_interactive(
                saved,
                trust.known_hosts.clone(),
                trust.unknown.clone(),
                history,
            )?;
        }
        Some(Command::ChatOnce(command)) => {
            let saved = store
                .find(server)?
                .ok_or_else(|| ftprep::Error::NotLoggedIn {
                    server: server.map(str::to_owned),
                })?;
            let context = format!("chat at {}", saved.server);
            let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
            let io = ChatOutput {
                out: &mut out,
                err: &mut err,
                colour: std::io::stdout().is_terminal(),
            };
            let trust = (trust.known_hosts.clone(), trust.unknown.clone());
            runtime
                .block_on(command.run(&saved, &store, trust, io))
                .context(context)?;
        }
        Some(Command::Completions { shell }) => {
            client::complete::write_registration(shell, &mut std::io::stdout())?;
        }
        Some(Command::Man) => {
            ftprep::manual::render(&Cli::command(), &manual_page(), &mut std::io::stdout())?
        }
        Some(Command::Login {
            user,
            password_stdin,
        }) => {
            let (user, server) = login_destination(&user, server_user, server)?;
            runtime.block_on(login(
                &store,
                &trust,
                server.as_deref(),
                &user,
                password_stdin,
            ))?
        }
        Some(Command::KnownHosts { action }) => match action {
            KnownHostsAction::List => {
                for (server, fingerprint) in trust.known_hosts.list()? {
                    println!("{server} {fingerprint}");
                }
            }
            KnownHostsAction::Remove { server } => {
                let server = client::server_address(&server)?;
                if trust.known_hosts.remove(&server)? {
                    eprintln!(
                        "removed {server} from {}; the next connection asks again",
                        trust.known_hosts.path().display()
                    );
                } else {
                    return Err(ftprep::Error::Usage(format!(
                        "{server} is not in {}",
                        trust.known_hosts.path().display()
                    ))
                    .into());
                }
            }
        },
        Some(Command::Logout) => match store.remove(server)? {
            Some(login) => eprintln!("logged out {} from {}", login.user, login.server),
            None => eprintln!("not logged in"),
        },
        Some(Command::File(command)) => {
            let progress = progress::for_stderr();
            let done = runtime.block_on(async {
                let (hosts, unknown) = (trust.known_hosts.clone(), trust.unknown.clone());
                let mut session = Session::connect(&store, server, hosts, unknown).await?;
                let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr());
                let mut io = Output {
                    out: &mut out,
                    err: &mut err,
                    progress: progress.as_ref(),
                    terminal: std::io::stdout().is_terminal(),
                    stdin: true,
                };
                let name = file_command_name(&command);
                // Ctrl-C during a transfer: say how to finish it (the partial data stays).
                tokio::select! {
                    outcome = session.execute(command, &mut io) => match outcome {
                        Ok(()) => {}
                        // Lost half way: say how to finish, as for Ctrl-C.
                        Err(error) if error.error.kind() == ErrorKind::Connection => {
                            progress.fail();
                            return Err(match shell::after_lost_connection(name) {
                                Some(hint) => Hinted { error, hint }.into(),
                                None => error.into(),
                            });
                        }
                        Err(error) => return Err(error.into()),
                    },
                    _ = tokio::signal::ctrl_c() => {
                        progress.fail();
                        eprintln!("ftpc: {}", shell::after_interrupt(name));
                        return Ok(ExitCode::from(130));
                    }
                }
                // A clean goodbye; the command's outcome is already known.
                let _ = session.client.close().await;
                anyhow::Ok(ExitCode::SUCCESS)
            })?;
            return Ok(done);
        }
        Some(Command::Bench {
            clients,
            duration,
            mix,
            file_size,
        }) => {
            let options = BenchOptions {
                clients,
                duration: Duration::from_secs_f64(duration.max(0.1)),
                mix,
                file_size: usize::try_from(file_size)?,
            };
            return runtime.block_on(bench(&store, &trust, server, options));
        }
        Some(Command::Shell { batch }) => {
            return shell_mode(&store, &trust, server, runtime, batch);
        }
        None => return shell_mode(&store, &trust, server, runtime, None),
    }
    Ok(ExitCode::SUCCESS)
}

async fn bench(
    store: &CredentialStore,
    trust: &Trust,
    server: Option<&str>,
    options: BenchOptions,
) -> anyhow::Result<ExitCode> {
    let login = store
        .find(server)?
        .ok_or_else(|| ftprep::Error::NotLoggedIn {
            server: server.map(str::to_owned),
        })?;
    let security = login
        .transport
        .security(trust.known_hosts.clone(), trust.unknown.clone());
    eprintln!(
        "bench: {} clients for {:.1} s against {} as {} ({:?} mix)",
        options.clients,
        options.duration.as_secs_f64(),
        login.server,
        login.user,
        options.mix
    );
    let live = Arc::new(LiveCounts::default());
    let progress = std::io::stderr().is_terminal().then(|| {
        let live = Arc::clone(&live);
        tokio::spawn(async move {
            let started = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                eprint!(
                    "\r{:>5.1} s  logins {}  commands {}  errors {}   ",
                    started.elapsed().as_secs_f64(),
                    live.logins.load(Ordering::Relaxed),
                    live.commands.load(Ordering::Relaxed),
                    live.errors.load(Ordering::Relaxed)
                );
            }
        })
    });
    let report = client::bench::run(&login, &security, &options, live).await?;
    if let Some(task) = progress {
        task.abort();
        eprintln!();
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("elapsed   {:.2} s", report.elapsed.as_secs_f64());
    for (what, latency, rate) in [
        ("logins", report.logins, report.logins_per_sec()),
        ("commands", report.commands, report.commands_per_sec()),
    ] {
        println!(
            "{what:<9} {:>8} {:>10.1}/s   p50 {:.2} ms   p99 {:.2} ms   max {:.2} ms",
            latency.count,
            rate,
            ms(latency.p50),
            ms(latency.p99),
            ms(latency.max)
        );
    }
    if report.resumed > 0 {
        println!(
            "resumed   {:>8} of the TLS handshakes ({:.0}%)",
            report.resumed,
            report.resumed as f64 * 100.0 / report.logins.count.max(1) as f64
        );
    }
    println!("errors    {:>8}", report.error_count());
    for (message, count) in &report.errors {
        println!("  {count:>8} x {message}");
    }
    Ok(if report.error_count() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// After this long at the password prompt, connect again: the server gives an
/// unauthenticated connection only so long (30 s by default).
const PROMPT_PATIENCE: Duration = Duration::from_secs(15);

/// Passwords a person may type at `ftpc login` before it gives up.
const PASSWORD_TRIES: u32 = 3;

/// Who logs in where: `login alice` (with `--server`, or the most recent server), or `login
/// alice@host[:port]`, which must not contradict `--server`.
fn login_destination(
    typed: &str,
    server_user: Option<Username>,
    server: Option<&str>,
) -> anyhow::Result<(String, Option<String>)> {
    let (user, host) = match typed.rsplit_once('@') {
        Some(_) => {
            let (user, host) = client::destination(typed)?;
            (user, Some(host))
        }
        None => (
            Some(Username::parse(typed).map_err(|e| ftprep::Error::Usage(e.to_string()))?),
            None,
        ),
    };
    let user = user.map(|u| u.as_str().to_owned()).unwrap_or_default();
    if let Some(named) = server_user
        && named.as_str() != user
    {
        return Err(
            ftprep::Error::Usage(format!("login {user}, but --server names {named}")).into(),
        );
    }
    match (host, server) {
        (Some(host), Some(server)) if host != server => {
            Err(ftprep::Error::Usage(format!("login {typed}, but --server names {server}")).into())
        }
        (Some(host), _) => Ok((user, Some(host))),
        (None, server) => Ok((user, server.map(str::to_owned))),
    }
}

async fn login(
    store: &CredentialStore,
    trust: &Trust,
    server: Option<&str>,
    user: &str,
    password_stdin: bool,
) -> anyhow::Result<()> {
    // Without --server, the server of the most recent login (over the transport it used,
    // unless --plaintext or --ca says otherwise), as every other command does.
    let saved = match server {
        Some(_) => None,
        None => store.find(None)?,
    };
    let server = match (server, &saved) {
        (Some(server), _) => server.to_owned(),
        (None, Some(saved)) => saved.server.clone(),
        (None, None) => client::DEFAULT_SERVER.to_owned(),
    };
    let transport = match (&trust.transport, &saved) {
        (Transport::Tls, Some(saved)) => saved.transport.clone(),
        (chosen, _) => chosen.clone(),
    };
    let context = format!("login {user}");
    let user = Username::parse(user)
        .map_err(ftprep::Error::from)
        .context(context.clone())?;
    // Connect first, so the certificate is checked (and a new one confirmed) before the
    // password is asked for.
    let security = transport.security(trust.known_hosts.clone(), trust.unknown.clone());
    let connected = Instant::now();
    let mut client = Client::connect(&server, &security)
        .await
        .context(context.clone())?;
    let password =
        ftprep::prompt::login_password(&format!("Password for {user}@{server}: "), password_stdin)?;
    if connected.elapsed() > PROMPT_PATIENCE {
        client = Client::connect(&server, &security)
            .await
            .context(context.clone())?;
    }
    let mut password = password;
    let mut tries = 1;
    let keys = loop {
        match client.login_with_password(&user, &password).await {
            Ok(keys) => break keys,
            // On a terminal a mistyped password may be typed again, as ssh allows.
            Err(e) if e.kind() == ErrorKind::Auth && !password_stdin && tries < PASSWORD_TRIES => {
                eprintln!("Permission denied, please try again.");
                tries += 1;
                password = ftprep::prompt::login_password(
                    &format!("Password for {user}@{server}: "),
                    false,
                )?;
                // The server ends a connection after a failed login.
                client = Client::connect(&server, &security)
                    .await
                    .context(context.clone())?;
            }
            Err(e) => return Err(anyhow::Error::new(e).context(context)),
        }
    };
    store.save(SavedLogin {
        server: server.clone(),
        user: user.clone(),
        keys,
        transport,
    })?;
    eprintln!("logged in to {server} as {user}");
    Ok(())
}

fn shell_mode(
    store: &CredentialStore,
    trust: &Trust,
    server: Option<&str>,
    runtime: tokio::runtime::Runtime,
    batch: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let (hosts, unknown) = (trust.known_hosts.clone(), trust.unknown.clone());
    let mut session = runtime.block_on(Session::connect(store, server, hosts, unknown))?;
    let interactive = batch.is_none() && std::io::stdin().is_terminal();
    if interactive {
        let history = dirs::data_dir().map(|d| d.join("ftpc").join("history"));
        let progress = progress::for_stderr();
        shell::run_interactive(Rc::new(runtime), session, history, progress.as_ref())?;
        return Ok(ExitCode::SUCCESS);
    }
    let progress = progress::for_stderr();
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let mut io = Output {
        out: &mut out,
        err: &mut err,
        progress: progress.as_ref(),
        terminal: std::io::stdout().is_terminal(),
        stdin: false,
    };
    let result = match batch.as_deref() {
        None => shell::run_batch(
            &runtime,
            &mut session,
            std::io::stdin().lock(),
            "-",
            &mut io,
        ),
        Some(path) if path.as_os_str() == "-" => shell::run_batch(
            &runtime,
            &mut session,
            std::io::stdin().lock(),
            "-",
            &mut io,
        ),
        Some(path) => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("batch file {}", path.display()))?;
            let name = path.display().to_string();
            shell::run_batch(&runtime, &mut session, BufReader::new(file), &name, &mut io)
        }
    };
    result?;
    Ok(ExitCode::SUCCESS)
}
