//! `ftpd`: runs the ftprep server and manages its user database.
//!
//! Exit codes: 0 success, 1 failure (message on stderr), 2 usage error.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use ftprep::auth::{self, Verifier};
use ftprep::server::guard::LockoutPolicy;
use ftprep::server::userdb::{self, UserRecord};
use ftprep::server::{Config, Limits, Server, ServerIdentity, TlsSetup};
use ftprep::size::format_size;
use ftprep::username::Username;

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
    /// Run the server until Ctrl-C or SIGTERM.
    Serve(ServeArgs),
    /// Add a user; prompts twice for the password (no echo).
    Adduser {
        #[command(flatten)]
        args: PasswordArgs,
        /// Most bytes the user may store, e.g. 500M, 10G (default: no limit).
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        quota: Option<u64>,
    },
    /// Remove a user; their files are left on disk.
    Deluser(NameArgs),
    /// Change a user's password; their cached logins stop working.
    Passwd(PasswordArgs),
    /// Set a user's quota (e.g. 10G), or remove it with `none`.
    Quota {
        #[command(flatten)]
        who: NameArgs,
        /// Most bytes the user may store (K, M, G, T: powers of 1024), or `none`.
        #[arg(value_name = "SIZE|none")]
        quota: String,
    },
    /// List the users, one a line, with their quotas.
    Users(UsersFile),
    /// Print the SHA-256 fingerprint of the server's TLS certificate, for users to compare
    /// when their client first connects (generates the self-signed certificate if needed).
    Fingerprint {
        #[command(flatten)]
        tls: TlsArgs,
        /// Directory for the server's private state.
        #[arg(
            long,
            value_name = "DIR",
            default_value = "./ftpd-state",
            env = "FTPD_STATE_DIR"
        )]
        state_dir: PathBuf,
    },
}

#[derive(Args)]
struct TlsArgs {
    /// PEM certificate chain (leaf first). Default: a self-signed certificate generated
    /// into the state directory on first start and reused after.
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// PEM private key for --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
}

impl TlsArgs {
    fn setup(&self) -> TlsSetup {
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => TlsSetup::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            _ => TlsSetup::SelfSigned,
        }
    }
}

fn parse_size(text: &str) -> Result<u64, String> {
    ftprep::size::parse_size(text)
}

#[derive(Args)]
struct UsersFile {
    /// The user database.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "./users.db",
        env = "FTPD_USERS"
    )]
    users: PathBuf,
}

#[derive(Args)]
struct NameArgs {
    /// The user's name: 1-32 of a-z 0-9 _ . - starting with a letter or digit.
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
    /// PBKDF2 iterations for the verifier (at least 4096).
    #[arg(long, value_name = "N", default_value_t = auth::DEFAULT_ITERATIONS)]
    iterations: u32,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:2121",
        env = "FTPD_LISTEN"
    )]
    listen: SocketAddr,
    /// Directory holding one home directory per user (created if missing).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "./ftp-root",
        env = "FTPD_ROOT"
    )]
    root: PathBuf,
    #[command(flatten)]
    file: UsersFile,
    /// Directory for the server's private state (created 0700 if missing).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "./ftpd-state",
        env = "FTPD_STATE_DIR"
    )]
    state_dir: PathBuf,
    #[command(flatten)]
    tls: TlsArgs,
    /// Serve without TLS: commands, files and sessions in clear. For a lab on loopback only.
    #[arg(long, conflicts_with_all = ["cert", "key"])]
    plaintext: bool,
    /// Connections served at once; more are told the server is busy.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_connections)]
    max_connections: usize,
    /// Seconds a connection has to log in.
    #[arg(long, value_name = "SECS", default_value_t = Limits::default().login_timeout.as_secs())]
    login_timeout: u64,
    /// Seconds a logged-in connection may stay idle.
    #[arg(long, value_name = "SECS", default_value_t = Limits::default().idle_timeout.as_secs())]
    idle_timeout: u64,
    /// Failed logins (per user name, and per address) within 15 minutes that lock it out.
    #[arg(long, value_name = "N", default_value_t = Limits::default().lockout.max_failures)]
    max_login_failures: u32,
    /// Seconds running commands and transfers get to finish after SIGTERM or Ctrl-C.
    #[arg(long, value_name = "SECS", default_value_t = Limits::default().shutdown_grace.as_secs())]
    shutdown_grace: u64,
    /// Seconds a lockout lasts.
    #[arg(long, value_name = "SECS", default_value_t = Limits::default().lockout.lockout.as_secs())]
    lockout: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ftpd: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Adduser { args, quota } => {
            let (name, verifier) = new_verifier(&args)?;
            let mut record = UserRecord::new(name.clone(), verifier);
            record.quota = quota;
            userdb::add_user(&args.who.file.users, record)?;
            println!("added user {name}");
            Ok(())
        }
        Command::Quota { who, quota } => {
            let name = Username::parse(&who.name)?;
            let quota = match quota.as_str() {
                "none" => None,
                size => Some(parse_size(size).map_err(anyhow::Error::msg)?),
            };
            userdb::set_quota(&who.file.users, &name, quota)?;
            match quota {
                Some(bytes) => println!("quota of {name}: {}", format_size(bytes)),
                None => println!("{name} has no quota"),
            }
            Ok(())
        }
        Command::Passwd(args) => {
            let (name, verifier) = new_verifier(&args)?;
            userdb::set_verifier(&args.who.file.users, &name, verifier)?;
            println!("changed the password of {name}");
            Ok(())
        }
        Command::Deluser(args) => {
            let name = Username::parse(&args.name)?;
            userdb::remove_user(&args.file.users, &name)?;
            println!("removed user {name}; their files are kept");
            Ok(())
        }
        Command::Fingerprint { tls, state_dir } => {
            let identity =
                ServerIdentity::load(&tls.setup(), &state_dir)?.context("no TLS identity")?;
            println!("{}", identity.fingerprint);
            Ok(())
        }
        Command::Users(file) => {
            for user in userdb::read(&file.users)?.users() {
                match user.quota {
                    Some(quota) => println!("{}\tquota {}", user.name, format_size(quota)),
                    None => println!("{}", user.name),
                }
            }
            Ok(())
        }
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
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FTPD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = Config {
        root: args.root,
        users: args.file.users,
        state_dir: args.state_dir,
        tls: if args.plaintext {
            TlsSetup::Plaintext
        } else {
            args.tls.setup()
        },
        limits: Limits {
            max_connections: args.max_connections.max(1),
            login_timeout: Duration::from_secs(args.login_timeout),
            idle_timeout: Duration::from_secs(args.idle_timeout),
            lockout: LockoutPolicy {
                max_failures: args.max_login_failures.max(1),
                lockout: Duration::from_secs(args.lockout),
                ..LockoutPolicy::default()
            },
            shutdown_grace: Duration::from_secs(args.shutdown_grace),
        },
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let server = Server::open(&config)?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        server.run(listener, shutdown_signal()).await?;
        tracing::info!("stopped");
        Ok(())
    })
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
