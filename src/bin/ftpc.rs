//! `ftpc`: the ftprep client. `ftpc login alice` once, then commands reuse the login.
//!
//! Exit codes: 0 success; 1 the command failed (the server refused it, or a local file
//! problem); 2 usage error; 3 authentication failed or a login is needed; 4 the connection
//! or the protocol failed.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ftprep::client::{self, Client, CredentialStore, SavedLogin};
use ftprep::commands::EntryKind;
use ftprep::error::ErrorKind;
use ftprep::username::Username;

/// ftprep client: log in once to an ftpd server, then work with your remote files.
#[derive(Parser)]
#[command(name = "ftpc", version)]
struct Cli {
    /// Server address HOST:PORT. Default: the server of your most recent login, or
    /// 127.0.0.1:2121 for a first login.
    #[arg(long, global = true, value_name = "HOST:PORT", env = "FTPC_SERVER")]
    server: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Log in and remember the login for later commands (the password is never stored).
    Login {
        /// Your user name on the server.
        user: String,
        /// Read the password as one line from standard input instead of the terminal.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Forget the saved login for the server.
    Logout,
    /// Create a remote directory.
    Mkdir {
        /// Also create missing parents; an existing directory is not an error.
        #[arg(short, long)]
        parents: bool,
        /// Remote path, relative to your home directory.
        path: String,
    },
    /// List a remote directory, one name a line; directories end in `/`, symlinks in `@`.
    Ls {
        /// Remote path (default: your home directory).
        path: Option<String>,
    },
}

fn main() -> ExitCode {
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
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ftpc: {err:#}");
            ExitCode::from(exit_code(&err))
        }
    }
}

/// Maps the library's error kind to the documented exit code.
fn exit_code(err: &anyhow::Error) -> u8 {
    match err
        .chain()
        .find_map(|e| e.downcast_ref::<ftprep::Error>())
        .map(ftprep::Error::kind)
    {
        Some(ErrorKind::Auth) => 3,
        Some(ErrorKind::Connection) => 4,
        Some(ErrorKind::Refused | ErrorKind::Local) | None => 1,
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let store = CredentialStore::default_location()?;
    match cli.command {
        Command::Login {
            user,
            password_stdin,
        } => {
            let server = cli
                .server
                .as_deref()
                .unwrap_or(client::DEFAULT_SERVER)
                .to_owned();
            let context = format!("login {user}");
            let user = Username::parse(&user)
                .map_err(ftprep::Error::from)
                .context(context.clone())?;
            // Ask first: the server gives an unauthenticated connection only so long.
            let password = ftprep::prompt::login_password(
                &format!("Password for {user}@{server}: "),
                password_stdin,
            )?;
            let mut client = Client::connect(&server).await.context(context.clone())?;
            let keys = client
                .login_with_password(&user, &password)
                .await
                .context(context)?;
            store.save(SavedLogin {
                server: server.clone(),
                user: user.clone(),
                keys,
            })?;
            eprintln!("logged in to {server} as {user}");
        }
        Command::Logout => match store.remove(cli.server.as_deref())? {
            Some(login) => eprintln!("logged out {} from {}", login.user, login.server),
            None => eprintln!("not logged in"),
        },
        Command::Mkdir { parents, path } => {
            let (mut client, _) = client::connect_saved(&store, cli.server.as_deref()).await?;
            client
                .mkdir(&path, parents)
                .await
                .with_context(|| format!("mkdir {path}"))?;
        }
        Command::Ls { path } => {
            let path = path.unwrap_or_default();
            let (mut client, _) = client::connect_saved(&store, cli.server.as_deref()).await?;
            let entries = client
                .list(&path)
                .await
                .with_context(|| format!("ls {path}"))?;
            let mut out = std::io::stdout().lock();
            for entry in entries {
                let mark = match entry.kind {
                    EntryKind::Directory => "/",
                    EntryKind::Symlink => "@",
                    EntryKind::File | EntryKind::Other => "",
                };
                if let Err(err) = writeln!(out, "{}{mark}", entry.name) {
                    // A closed pipe (`ftpc ls | head`) is not a failure.
                    if err.kind() == std::io::ErrorKind::BrokenPipe {
                        return Ok(());
                    }
                    return Err(err.into());
                }
            }
        }
    }
    Ok(())
}
