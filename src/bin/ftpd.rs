//! `ftpd`: runs the ftprep server and manages its user database.
//!
//! Exit codes: 0 success, 1 failure (message on stderr), 2 usage error.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, CommandFactory, Parser, Subcommand};
use ftprep::auth::{self, Verifier};
use ftprep::server::UserDatabase;
use ftprep::server::backends::{admin_chat_store, user_admin};
use ftprep::server::settings::{LogFormat, ServeOptions};
use ftprep::server::time::TimeServer;
use ftprep::server::users::UserRecord;
use ftprep::server::{Server, ServerIdentity};
use ftprep::size::format_size;
use ftprep::username::Username;

/// Transfers allocate and free a 512 KiB buffer per chunk. glibc's allocator returns such
/// memory to the kernel and faults it in again, page by page, a little later; jemalloc
/// keeps it for reuse.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// ftprep server: serves each user's own directory tree to `ftpc` after a SCRAM-SHA-256
/// login, and manages the users who may log in.
#[derive(Parser)]
#[command(name = "ftpd", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server until Ctrl-C or SIGTERM. Options also come from ftpd.toml (keys are the
    /// long option names); the command line wins.
    Serve(Box<ServeArgs>),
    /// Add a user; prompts twice for the password (no echo).
    Adduser {
        #[command(flatten)]
        args: PasswordArgs,
        /// Most bytes the user may store, e.g. 500M, 10G (default: no limit).
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        quota: Option<u64>,
        /// Most files, directories and links the user may have (default: no limit).
        #[arg(long, value_name = "COUNT")]
        files: Option<u64>,
    },
    /// Remove a user; their files are left on disk.
    Deluser {
        #[command(flatten)]
        who: NameArgs,
        /// The server's state directory, whose chat database loses the user's friends and
        /// messages.
        #[arg(
            long,
            value_name = "DIR",
            env = "FTPD_STATE_DIR",
            default_value = "./ftpd-state"
        )]
        state_dir: PathBuf,
    },
    /// Change a user's password; their cached logins stop working.
    Passwd(PasswordArgs),
    /// Set a user's quota (e.g. 10G) and/or file-count quota (--files), or remove one with
    /// `none`.
    Quota {
        #[command(flatten)]
        who: NameArgs,
        /// Most bytes the user may store (K, M, G, T: powers of 1024), or `none`.
        #[arg(value_name = "SIZE|none", required_unless_present = "files")]
        quota: Option<String>,
        /// Most files, directories and links the user may have, or `none`.
        #[arg(long, value_name = "COUNT|none")]
        files: Option<String>,
    },
    /// List the users, one a line, with their quotas.
    Users(UsersFile),
    /// Let a user log in over SFTP with an SSH public key: FILE is their `.pub` file (or
    /// `-` for standard input), one key a line.
    Addkey {
        #[command(flatten)]
        who: NameArgs,
        /// The public key file, e.g. id_ed25519.pub, or - for standard input.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// List a user's SSH keys as `ssh-keygen -l` does: bits, fingerprint, comment, type.
    Keys(NameArgs),
    /// Remove a user's SSH key by its fingerprint (SHA256:..., as `ftpd keys` shows it).
    Delkey {
        #[command(flatten)]
        who: NameArgs,
        /// The key's fingerprint.
        #[arg(value_name = "FINGERPRINT")]
        fingerprint: String,
    },
    /// Print the SHA-256 fingerprint of the server's TLS certificate, for users to compare
    /// when their client first connects (generates the self-signed certificate if needed).
    /// Reads the same settings as `serve` (--config, --state-dir, --cert).
    Fingerprint(FingerprintArgs),
    /// Print a shell completion script: `ftpd completions bash > /etc/bash_completion.d/ftpd`
    /// (or zsh, fish, elvish, powershell).
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `ftpd man > /usr/local/share/man/man8/ftpd.8`.
    Man,
}

#[derive(Args)]
struct UsersFile {
    /// The user database: a file, or PostgreSQL as postgres://USER@HOST/DATABASE.
    #[arg(
        long,
        value_name = "FILE|URL",
        default_value = "./users.db",
        env = "FTPD_USERS"
    )]
    users: UserDatabase,
}

#[derive(Args)]
struct NameArgs {
    /// The user's name: 1-32 of a-z 0-9 _ . - starting with a letter or digit.
    #[arg(value_parser = valid_username)]
    name: String,
    #[command(flatten)]
    file: UsersFile,
}

#[derive(Args)]
struct PasswordArgs {
    #[command(flatten)]
    who: NameArgs,
    /// Read the password as one line from standard input instead of the terminal.
    #[arg(long)]
    password_stdin: bool,
    /// PBKDF2 iterations for the verifier (4096 to 10,000,000).
    #[arg(
        long,
        value_name = "N",
        default_value_t = auth::DEFAULT_ITERATIONS,
        value_parser = clap::value_parser!(u32)
            .range(i64::from(auth::MIN_ITERATIONS)..=i64::from(auth::MAX_ITERATIONS))
    )]
    iterations: u32,
}

#[derive(Args)]
struct ServeArgs {
    /// Settings file [default: ./ftpd.toml, if it exists].
    #[arg(long, value_name = "FILE", env = "FTPD_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    options: ServeOptions,
}

/// What `ftpd fingerprint` needs of the server's settings: where its certificate is.
#[derive(Args)]
struct FingerprintArgs {
    /// Settings file [default: ./ftpd.toml, if it exists].
    #[arg(long, value_name = "FILE", env = "FTPD_CONFIG")]
    config: Option<PathBuf>,
    /// The server's state directory, holding a generated certificate [default: ./ftpd-state].
    #[arg(long, value_name = "DIR", env = "FTPD_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// The server's PEM certificate chain, when it was given one.
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// The PEM private key for --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// The SFTP service's address (on by default; `none`: off): its host key's fingerprint
    /// is printed too, on a line of its own as `ssh-keygen -lf` prints it.
    #[arg(long, value_name = "ADDR|none")]
    sftp_listen: Option<String>,
    /// The SSH host key, when it was given one.
    #[arg(long, value_name = "FILE")]
    sftp_host_key: Option<PathBuf>,
}

impl FingerprintArgs {
    /// The server's settings as `serve` would see them, for these options.
    fn resolve(self) -> anyhow::Result<ServeOptions> {
        ServeArgs {
            config: self.config,
            options: ServeOptions {
                state_dir: self.state_dir,
                cert: self.cert,
                key: self.key,
                sftp_listen: self.sftp_listen,
                sftp_host_key: self.sftp_host_key,
                ..ServeOptions::default()
            },
        }
        .resolve()
    }
}

impl ServeArgs {
    /// The command-line options completed from the settings file.
    fn resolve(self) -> anyhow::Result<ServeOptions> {
        let file = match self.config {
            Some(path) => Some(ServeOptions::load(&path)?),
            None => {
                let default = PathBuf::from("ftpd.toml");
                default
                    .exists()
                    .then(|| ServeOptions::load(&default))
                    .transpose()?
            }
        };
        Ok(match file {
            Some(file) => self.options.or(file),
            None => self.options,
        })
    }
}

/// A user name as the command line takes it: a bad one is a usage error (exit 2).
fn valid_username(text: &str) -> Result<String, String> {
    Username::parse(text)
        .map(|name| name.as_str().to_owned())
        .map_err(|e| e.to_string())
}

fn parse_size(text: &str) -> Result<u64, String> {
    ftprep::size::parse_size(text)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // Output cut short by a closed pipe (`ftpd man | head`) is not a failure.
        Err(err)
            if err.chain().any(|e| {
                e.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("ftpd: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs an admin command's database work (PostgreSQL is asynchronous) to its end.
fn block_on<T>(work: impl std::future::Future<Output = T>) -> anyhow::Result<T> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(work))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Adduser { args, quota, files } => {
            let (name, verifier) = new_verifier(&args)?;
            let mut record = UserRecord::new(name.clone(), verifier);
            record.quota = quota;
            record.files = files;
            block_on(async { user_admin(&args.who.file.users).await?.add(record).await })??;
            println!("added user {name}");
            Ok(())
        }
        Command::Quota { who, quota, files } => {
            let name = Username::parse(&who.name)?;
            if let Some(quota) = quota {
                let quota = match quota.as_str() {
                    "none" => None,
                    size => Some(parse_size(size).map_err(anyhow::Error::msg)?),
                };
                block_on(async {
                    user_admin(&who.file.users)
                        .await?
                        .set_quota(&name, quota)
                        .await
                })??;
                match quota {
                    Some(bytes) => println!("quota of {name}: {}", format_size(bytes)),
                    None => println!("{name} has no quota"),
                }
            }
            if let Some(files) = files {
                let files = match files.as_str() {
                    "none" => None,
                    count => Some(count.parse::<u64>().map_err(|e| {
                        anyhow::anyhow!("--files {count:?}: {e} (a whole number, or none)")
                    })?),
                };
                block_on(async {
                    user_admin(&who.file.users)
                        .await?
                        .set_file_quota(&name, files)
                        .await
                })??;
                match files {
                    Some(count) => println!("file quota of {name}: {count} entries"),
                    None => println!("{name} has no file quota"),
                }
            }
            Ok(())
        }
        Command::Passwd(args) => {
            let (name, verifier) = new_verifier(&args)?;
            block_on(async {
                user_admin(&args.who.file.users)
                    .await?
                    .set_verifier(&name, verifier)
                    .await
            })??;
            println!("changed the password of {name}");
            Ok(())
        }
        Command::Deluser {
            who: args,
            state_dir,
        } => {
            let name = Username::parse(&args.name)?;
            block_on(async { user_admin(&args.file.users).await?.remove(&name).await })??;
            let chat = block_on(admin_chat_store(&args.file.users, &state_dir))??;
            match chat {
                Some(store) => {
                    block_on(store.delete_user(name.as_str()))??;
                    println!("removed user {name} and their chat; their files are kept");
                }
                None => println!("removed user {name}; their files are kept"),
            }
            Ok(())
        }
        Command::Fingerprint(args) => {
            let options = args.resolve()?;
            let config = options.config()?;
            let sftp = options.sftp_listen_addr(options.listen_addr())?.is_some();
            if config.tls == ftprep::server::TlsSetup::Plaintext {
                if !sftp {
                    bail!("the server is configured for plaintext: it has no certificate");
                }
                eprintln!(
                    "ftpd: the server is configured for plaintext: it has no certificate; its \
                     SSH host key:"
                );
            }
            let fresh = config.tls == ftprep::server::TlsSetup::SelfSigned
                && !ServerIdentity::has_generated(&config.state_dir);
            if let Some(identity) = ServerIdentity::load(&config.tls, &config.state_dir)? {
                if fresh {
                    // Run from another directory than the server's, this is not its
                    // certificate.
                    eprintln!(
                        "ftpd: there was no certificate in {} yet: created a new one, which \
                         `ftpd serve` uses when started with this state directory",
                        config.state_dir.display()
                    );
                }
                println!("{}", identity.fingerprint);
            }
            if sftp {
                let key = options.sftp_host_key(&config.state_dir)?;
                // As `ssh-keygen -lf` prints it, to compare with what `ssh` shows.
                println!("{}", ftprep::server::sftp::host_key::describe(&key));
            }
            Ok(())
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "ftpd", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => Ok(ftprep::manual::render(
            &Cli::command(),
            &manual_page(),
            &mut std::io::stdout(),
        )?),
        Command::Addkey { who, file } => {
            let name = Username::parse(&who.name)?;
            let text = if file.as_os_str() == "-" {
                ftprep::authorized_key::read_keys(std::io::stdin().lock())
                    .context("cannot read the key from standard input")?
            } else {
                ftprep::authorized_key::read_file(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?
            };
            let keys = ftprep::authorized_key::AuthorizedKey::parse_lines(&text)?;
            let admin = block_on(user_admin(&who.file.users))??;
            for key in keys {
                let shown = key.describe();
                block_on(admin.add_key(&name, key))??;
                println!("added to {name}: {shown}");
            }
            Ok(())
        }
        Command::Keys(who) => {
            let name = Username::parse(&who.name)?;
            let users = block_on(async { user_admin(&who.file.users).await?.users().await })??;
            let user = users
                .into_iter()
                .find(|user| user.name == name)
                .ok_or_else(|| ftprep::error::UserDbError::NoSuchUser(name.to_string()))?;
            for key in &user.keys {
                println!("{}", key.describe());
            }
            Ok(())
        }
        Command::Delkey { who, fingerprint } => {
            let name = Username::parse(&who.name)?;
            let removed = block_on(async {
                user_admin(&who.file.users)
                    .await?
                    .remove_key(&name, &fingerprint)
                    .await
            })??;
            println!("removed from {name}: {}", removed.describe());
            Ok(())
        }
        Command::Users(file) => {
            if let ftprep::server::UserDatabase::File(path) = &file.users
                && !path.exists()
            {
                return Err(ftprep::error::UserDbError::NoFile(
                    ftprep::server::users::file::absolute(path),
                )
                .into());
            }
            for user in block_on(async { user_admin(&file.users).await?.users().await })?? {
                let mut line = user.name.to_string();
                if let Some(quota) = user.quota {
                    line.push_str(&format!("\tquota {}", format_size(quota)));
                }
                if let Some(files) = user.files {
                    line.push_str(&format!("\tfiles {files}"));
                }
                println!("{line}");
            }
            Ok(())
        }
    }
}

/// What `ftpd man` says beyond the commands.
fn manual_page() -> ftprep::manual::Page<'static> {
    ftprep::manual::Page {
        section: "8",
        more_commands: Vec::new(),
        sections: vec![
            (
                "FILES",
                vec![
                    (
                        "./users.db",
                        "The users (--users): one a line, name and SCRAM verifier (PostgreSQL's \
                         format) and quotas; never a password. Mode 0600.",
                    ),
                    (
                        "./ftp-root/USER",
                        "Each user's files (--root), created 0700.",
                    ),
                    (
                        "./ftpd-state/",
                        "The state directory (--state-dir, 0700): the generated certificate \
                         and key (tls-cert.pem, tls-key.pem), the chat (chat.db), the secret \
                         that keys mock logins and QUIC resets.",
                    ),
                    (
                        "./ftpd.toml",
                        "Settings (--config); keys are the long option names.",
                    ),
                ],
            ),
            (
                "ENVIRONMENT",
                vec![
                    (
                        "FTPD_CONFIG, FTPD_LISTEN, FTPD_ROOT, FTPD_USERS, FTPD_STATE_DIR",
                        "As the options of the same names.",
                    ),
                    (
                        "FTPD_LOG",
                        "What the log shows: error, warn, info (default), debug, trace.",
                    ),
                ],
            ),
            (
                "EXIT STATUS",
                vec![
                    ("0", "Success (serve: stopped by Ctrl-C or SIGTERM)."),
                    ("1", "Failure; the message is on standard error."),
                    ("2", "Usage error."),
                ],
            ),
            (
                "EXAMPLES",
                vec![
                    (
                        "ftpd adduser alice && ftpd serve",
                        "A first user, then the server on the defaults.",
                    ),
                    (
                        "ftpd quota bob 10G --files 100000",
                        "Limit a user's bytes and files.",
                    ),
                    (
                        "ftpd serve --time-local-stratum 10",
                        "Serve the local clock in an isolated lab.",
                    ),
                    (
                        "ftpd fingerprint",
                        "What users compare at their first login.",
                    ),
                ],
            ),
        ],
    }
}

fn new_verifier(args: &PasswordArgs) -> anyhow::Result<(Username, Verifier)> {
    let name = Username::parse(&args.who.name)?;
    if !(auth::MIN_ITERATIONS..=auth::MAX_ITERATIONS).contains(&args.iterations) {
        bail!(
            "--iterations must be between {} and {}",
            auth::MIN_ITERATIONS,
            auth::MAX_ITERATIONS
        );
    }
    let password = ftprep::prompt::new_password(name.as_str(), args.password_stdin)?;
    auth::check_new_password(&password)?;
    Ok((name, Verifier::generate(&password, args.iterations)))
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let options = args.resolve()?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("FTPD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match options.log_format.unwrap_or_default() {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().init(),
    }
    let config = options.config()?;
    let listen = options.listen_addr();
    let time_listen = options.time_listen_addr()?;
    let time_settings = options.time_settings()?;
    let chat_settings = options.chat_settings()?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let server = Server::open(&config).await?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let time_socket = match time_listen {
            Some((addr, named)) => unless_default_taken(
                std::net::UdpSocket::bind(addr),
                addr,
                named,
                "time requests",
                "no time service: its default UDP address is taken (set --time-listen)",
            )?,
            None => None,
        };
        let time = match time_socket {
            Some(socket) => Some(
                TimeServer::new(socket, time_settings)
                    .start()
                    .context("cannot start the time service")?,
            ),
            None => None,
        };
        let chat_socket = match options.chat_listen_addr(listener.local_addr()?)? {
            Some((addr, named)) => unless_default_taken(
                std::net::UdpSocket::bind(addr),
                addr,
                named,
                "chat",
                "no chat: its default UDP address is taken (set --chat-listen)",
            )?,
            None => None,
        };
        let chat = match chat_socket {
            Some(socket) => {
                // QUIC always encrypts: under --plaintext the chat uses the generated
                // certificate.
                let identity = match server.identity() {
                    Some(identity) => identity.clone(),
                    None => ServerIdentity::self_signed(&config.state_dir)?,
                };
                let store = server.chat_store()?;
                let service = server.chat(socket, &identity, store, chat_settings)?;
                let stop = tokio_util::sync::CancellationToken::new();
                Some((stop.clone(), tokio::spawn(service.run(stop))))
            }
            None => None,
        };
        let stop = tokio_util::sync::CancellationToken::new();
        let sftp_listener = match options.sftp_listen_addr(listen)? {
            Some((addr, named)) => unless_default_taken(
                tokio::net::TcpListener::bind(addr).await,
                addr,
                named,
                "SFTP",
                "no SFTP: its default address is taken (set --sftp-listen)",
            )?,
            None => None,
        };
        let sftp = match sftp_listener {
            Some(sftp_listener) => {
                let settings = ftprep::server::sftp::SftpSettings {
                    host_key: options.sftp_host_key(&config.state_dir)?,
                    passwords: options.sftp_passwords,
                };
                let service = server.sftp(settings);
                Some(tokio::spawn(service.run(sftp_listener, stop.clone())))
            }
            None => None,
        };
        let stopping = stop.clone();
        server
            .run(listener, async move {
                shutdown_signal().await;
                stopping.cancel();
            })
            .await?;
        stop.cancel();
        if let Some(sftp) = sftp {
            let _ = sftp.await;
        }
        if let Some((stop, chat)) = chat {
            stop.cancel();
            let _ = chat.await;
        }
        if let Some(time) = time {
            let _ = tokio::task::spawn_blocking(move || time.stop()).await;
        }
        tracing::info!("stopped");
        Ok(())
    })
}

/// A service's socket as binding `addr` gave it. Where the address was only the default
/// (`named` false) and is taken (a second server on this host, say), no service: `warning`
/// says so and names the option that moves it. An address the admin named must be had.
fn unless_default_taken<T>(
    bound: std::io::Result<T>,
    addr: std::net::SocketAddr,
    named: bool,
    listening_for: &str,
    warning: &str,
) -> anyhow::Result<Option<T>> {
    match bound {
        Ok(socket) => Ok(Some(socket)),
        Err(err) if !named => {
            tracing::warn!(%addr, error = %err, "{warning}");
            Ok(None)
        }
        Err(err) => {
            Err(anyhow::Error::new(err)
                .context(format!("cannot listen for {listening_for} on {addr}")))
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(err) => {
            tracing::warn!(error = %err, "cannot watch SIGTERM; only Ctrl-C stops the server");
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
