//! `ftpd serve` settings: the same options on the command line and in an optional
//! `ftpd.toml`, command line first, then the file, then the defaults.
//!
//! # Format
//! `ftpd.toml` uses the long option names as keys, e.g.
//! ```toml
//! listen = "0.0.0.0:2121"
//! root = "/srv/ftp"
//! max-login-failures = 5
//! audit-log = "/var/log/ftpd/audit.jsonl"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::TlsSetup;
use super::config::{Config, Limits};
use super::guard::LockoutPolicy;
use crate::error::{Error, Result};

/// The SFTP service's port by default (22 is the system's own `sshd`).
pub const DEFAULT_SFTP_PORT: u16 = 2222;

/// How the log on stderr is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON object a line, for journald and log collectors.
    Json,
}

/// Every `ftpd serve` option; each may come from the command line or `ftpd.toml`.
#[derive(Debug, Clone, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeOptions {
    /// Address to listen on [default: 127.0.0.1:2121].
    #[arg(long, value_name = "ADDR", env = "FTPD_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Where users' files live: a directory holding one home per user, created if missing,
    /// or an S3-compatible bucket as s3://BUCKET/PREFIX (endpoint, region and keys from the
    /// AWS_* variables) [default: ./ftp-root].
    #[arg(long, value_name = "DIR|URL", env = "FTPD_ROOT")]
    pub root: Option<String>,
    /// The user database: a file, or PostgreSQL as postgres://USER@HOST/DATABASE (the
    /// table is created and migrated on start) [default: ./users.db].
    #[arg(long, value_name = "FILE|URL", env = "FTPD_USERS")]
    pub users: Option<String>,
    /// Directory for the server's private state, created 0700 [default: ./ftpd-state].
    #[arg(long, value_name = "DIR", env = "FTPD_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// PEM certificate chain, leaf first [default: a self-signed certificate generated into
    /// the state directory on first start and reused after].
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// PEM private key for --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Serve without TLS: commands, files and sessions in clear. For a lab on loopback only.
    #[arg(long, conflicts_with_all = ["cert", "key"])]
    #[serde(default)]
    pub plaintext: bool,
    /// Connections served at once; more are told the server is busy [default: 1024].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Connections one address may hold at once [default: 64].
    #[arg(long, value_name = "N")]
    pub max_connections_per_ip: Option<usize>,
    /// Logged-in sessions one user may hold at once [default: 32].
    #[arg(long, value_name = "N")]
    pub max_sessions_per_user: Option<usize>,
    /// Seconds a connection has to log in [default: 30].
    #[arg(long, value_name = "SECS")]
    pub login_timeout: Option<u64>,
    /// Seconds a logged-in connection may stay idle, not counting a running transfer
    /// [default: 900].
    #[arg(long, value_name = "SECS")]
    pub idle_timeout: Option<u64>,
    /// Seconds a transfer or listing may make no progress (a client that sends no data,
    /// or reads no reply) before its connection is closed [default: 120].
    #[arg(long, value_name = "SECS")]
    pub stall_timeout: Option<u64>,
    /// Transfers and listings running at once, all users together; more are told the
    /// server is busy [default: 256].
    #[arg(long, value_name = "N")]
    pub max_transfers: Option<usize>,
    /// Failed logins from one address within 15 minutes that lock that address out; a user
    /// name is only slowed down, never locked [default: 10].
    #[arg(long, value_name = "N")]
    pub max_login_failures: Option<u32>,
    /// Seconds a lockout lasts [default: 900].
    #[arg(long, value_name = "SECS")]
    pub lockout: Option<u64>,
    /// Seconds running commands and transfers get to finish after SIGTERM or Ctrl-C
    /// [default: 30].
    #[arg(long, value_name = "SECS")]
    pub shutdown_grace: Option<u64>,
    /// Over TLS, also accept SCRAM-SHA-256 logins without channel binding, for clients that
    /// cannot do SCRAM-SHA-256-PLUS. Off by default: such a login is what a man in the
    /// middle's downgrade looks like.
    #[arg(long)]
    #[serde(default)]
    pub allow_unbound_logins: bool,
    /// UDP address of the chat (QUIC), or `none` [default: the address and port of
    /// --listen, on UDP]. QUIC always encrypts: the chat uses the server's certificate
    /// (the generated one under --plaintext).
    #[arg(long, value_name = "ADDR|none")]
    pub chat_listen: Option<String>,
    /// Chat messages and friend changes one connection may make per second (50 at once,
    /// twice that for all of a user's connections), or `off` (for benchmarks) [default: 20].
    #[arg(long, value_name = "PER_SEC|off")]
    #[serde(default, deserialize_with = "number_or_word")]
    pub chat_rate: Option<String>,
    /// Chat messages kept each way of a conversation, for history [default: 1000].
    #[arg(long, value_name = "N")]
    pub chat_history: Option<u32>,
    /// UDP address of the time service (NTP), or `none` [default: 127.0.0.1:1123; port 123
    /// needs CAP_NET_BIND_SERVICE, see contrib/ftpd.service].
    #[arg(long, value_name = "ADDR|none")]
    pub time_listen: Option<String>,
    /// Stratum served while the host clock is synchronised [default: 3].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=15))]
    pub time_stratum: Option<u8>,
    /// Serve the local clock at this stratum when it is not synchronised (like chrony's
    /// `local stratum N`); without it an unsynchronised clock is served with leap indicator
    /// 3, which no client trusts.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=15))]
    pub time_local_stratum: Option<u8>,
    /// Per-address rate limit of the time service as INTERVAL,BURST,LEAK (chrony's
    /// `ratelimit`: log2 seconds between replies, replies in a row, log2 of the excess per
    /// Kiss-o'-Death), or `off` [default: 3,8,2].
    #[arg(long, value_name = "I,B,L|off")]
    pub time_rate_limit: Option<String>,
    /// TCP address of the SFTP service (SSH), or `none` [default: the IP address of
    /// --listen, port 2222 (or any free port where --listen has port 0)].
    #[arg(long, value_name = "ADDR|none")]
    pub sftp_listen: Option<String>,
    /// The SSH host key (an unencrypted OpenSSH private key) [default: ssh_host_ed25519_key
    /// in the state directory, generated on first start].
    #[arg(long, value_name = "FILE")]
    pub sftp_host_key: Option<PathBuf>,
    /// Also let users log in to SFTP with their password, which the server then sees (the
    /// native login never shows it the password). Off by default: SSH keys only.
    #[arg(long)]
    #[serde(default)]
    pub sftp_passwords: bool,
    /// Append an audit record (one JSON object a line) for every login and every change.
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// Format of the log on stderr [default: text].
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
}

impl ServeOptions {
    /// Reads `ftpd.toml`.
    ///
    /// # Errors
    /// An unreadable file, or one with unknown keys or bad values (naming them).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::local(path, e))?;
        toml::from_str(&text).map_err(|e| Error::local(path, e.to_string().trim_end()))
    }

    /// These options, with the gaps filled from `file`.
    pub fn or(self, file: ServeOptions) -> ServeOptions {
        // A certificate given on one side is used whole, never mixed with a key from the other.
        let (cert, key) = if self.cert.is_some() {
            (self.cert, self.key)
        } else {
            (file.cert, file.key)
        };
        ServeOptions {
            listen: self.listen.or(file.listen),
            root: self.root.or(file.root),
            users: self.users.or(file.users),
            state_dir: self.state_dir.or(file.state_dir),
            cert,
            key,
            plaintext: self.plaintext || file.plaintext,
            allow_unbound_logins: self.allow_unbound_logins || file.allow_unbound_logins,
            chat_listen: self.chat_listen.or(file.chat_listen),
            chat_rate: self.chat_rate.or(file.chat_rate),
            chat_history: self.chat_history.or(file.chat_history),
            time_listen: self.time_listen.or(file.time_listen),
            time_stratum: self.time_stratum.or(file.time_stratum),
            time_local_stratum: self.time_local_stratum.or(file.time_local_stratum),
            time_rate_limit: self.time_rate_limit.or(file.time_rate_limit),
            max_connections: self.max_connections.or(file.max_connections),
            max_connections_per_ip: self.max_connections_per_ip.or(file.max_connections_per_ip),
            max_sessions_per_user: self.max_sessions_per_user.or(file.max_sessions_per_user),
            login_timeout: self.login_timeout.or(file.login_timeout),
            idle_timeout: self.idle_timeout.or(file.idle_timeout),
            stall_timeout: self.stall_timeout.or(file.stall_timeout),
            max_transfers: self.max_transfers.or(file.max_transfers),
            max_login_failures: self.max_login_failures.or(file.max_login_failures),
            lockout: self.lockout.or(file.lockout),
            shutdown_grace: self.shutdown_grace.or(file.shutdown_grace),
            sftp_listen: self.sftp_listen.or(file.sftp_listen),
            sftp_host_key: self.sftp_host_key.or(file.sftp_host_key),
            sftp_passwords: self.sftp_passwords || file.sftp_passwords,
            audit_log: self.audit_log.or(file.audit_log),
            log_format: self.log_format.or(file.log_format),
        }
    }

    /// Where the chat listens: `None` when it is turned off, else the address and whether
    /// the admin named it (a default that is taken only costs a warning).
    ///
    /// # Errors
    /// An address that is neither `none` nor `IP:PORT`.
    pub fn chat_listen_addr(&self, listening: SocketAddr) -> Result<Option<(SocketAddr, bool)>> {
        match self.chat_listen.as_deref().map(str::trim) {
            Some("none") => Ok(None),
            Some(addr) => addr.parse().map(|a| Some((a, true))).map_err(|_| {
                Error::Usage(format!("chat-listen {addr:?}: expected IP:PORT or none"))
            }),
            None => Ok(Some((listening, false))),
        }
    }

    /// The chat's bounds.
    ///
    /// # Errors
    /// A rate that is neither `off` nor a positive number.
    pub fn chat_settings(&self) -> Result<super::chat::ChatSettings> {
        let mut settings = super::chat::ChatSettings::default();
        if let Some(history) = self.chat_history {
            settings.history = history;
        }
        match self.chat_rate.as_deref().map(str::trim) {
            None => {}
            Some("off") => {
                settings.rate = f64::INFINITY;
                settings.burst = f64::INFINITY;
            }
            Some(text) => match text.parse::<f64>() {
                Ok(rate) if rate.is_finite() && rate > 0.0 => {
                    settings.burst = settings.burst / settings.rate * rate;
                    settings.rate = rate;
                }
                _ => {
                    return Err(Error::Usage(format!(
                        "chat-rate {text:?}: expected a positive number or off"
                    )));
                }
            },
        }
        Ok(settings)
    }

    /// Where the SFTP service listens: `None` when it is turned off, else the address and
    /// whether the admin named it (a default that is taken only costs a warning). By
    /// default beside `listening`, on [`DEFAULT_SFTP_PORT`]; a lab listening on port 0
    /// gets any free port for SFTP too.
    ///
    /// # Errors
    /// An address that is neither `none` nor `IP:PORT`.
    pub fn sftp_listen_addr(&self, listening: SocketAddr) -> Result<Option<(SocketAddr, bool)>> {
        match self.sftp_listen.as_deref().map(str::trim) {
            Some("none") => Ok(None),
            Some(addr) => addr.parse().map(|a| Some((a, true))).map_err(|_| {
                Error::Usage(format!("sftp-listen {addr:?}: expected IP:PORT or none"))
            }),
            None => {
                let port = if listening.port() == 0 {
                    0
                } else {
                    DEFAULT_SFTP_PORT
                };
                Ok(Some((SocketAddr::new(listening.ip(), port), false)))
            }
        }
    }

    /// The SSH host key: the admin's (`--sftp-host-key`), or the one generated in the state
    /// directory.
    ///
    /// # Errors
    /// The key cannot be read, or made.
    pub fn sftp_host_key(&self, state_dir: &Path) -> Result<russh::keys::PrivateKey> {
        match &self.sftp_host_key {
            Some(path) => super::sftp::host_key::load(path),
            None => super::sftp::host_key::load_or_create(state_dir).map(|(key, _)| key),
        }
    }

    /// Where the time service listens, and whether that address was asked for (a default
    /// that is taken is worth a warning, not a refusal to start); `None` when it is off.
    ///
    /// # Errors
    /// An address that is neither `none` nor `IP:PORT`.
    pub fn time_listen_addr(&self) -> Result<Option<(SocketAddr, bool)>> {
        match self.time_listen.as_deref().map(str::trim) {
            Some("none") => Ok(None),
            Some(addr) => addr.parse().map(|addr| Some((addr, true))).map_err(|_| {
                Error::Usage(format!("time-listen {addr:?}: expected IP:PORT or none"))
            }),
            None => Ok(super::time::DEFAULT_TIME_LISTEN
                .parse()
                .ok()
                .map(|addr| (addr, false))),
        }
    }

    /// What the time service serves.
    ///
    /// # Errors
    /// A rate limit that is neither `off` nor three numbers.
    pub fn time_settings(&self) -> Result<super::time::TimeSettings> {
        let defaults = super::time::TimeSettings::default();
        let rate = match self.time_rate_limit.as_deref().map(str::trim) {
            None => defaults.rate,
            Some("off") => None,
            Some(text) => {
                let bad = || {
                    Error::Usage(format!(
                        "time-rate-limit {text:?}: expected INTERVAL,BURST,LEAK or off"
                    ))
                };
                let parts: Vec<&str> = text.split(',').map(str::trim).collect();
                let [interval, burst, leak] = parts[..] else {
                    return Err(bad());
                };
                Some(super::time::RateLimit {
                    interval: interval
                        .parse()
                        .ok()
                        .filter(|i: &i8| (-4..=12).contains(i))
                        .ok_or_else(bad)?,
                    burst: burst.parse().ok().filter(|b| *b >= 1).ok_or_else(bad)?,
                    leak: leak.parse().ok().filter(|l| *l <= 4).ok_or_else(bad)?,
                })
            }
        };
        Ok(super::time::TimeSettings {
            stratum: self.time_stratum.unwrap_or(defaults.stratum),
            local_stratum: self.time_local_stratum,
            rate,
        })
    }

    /// The address to listen on.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 2121)))
    }

    /// The server configuration, defaults filled in.
    ///
    /// # Errors
    /// A certificate without a key, or TLS options together with plaintext.
    pub fn config(&self) -> Result<Config> {
        let defaults = Limits::default();
        let secs =
            |value: Option<u64>, default: Duration| value.map_or(default, Duration::from_secs);
        let tls = match (self.plaintext, &self.cert, &self.key) {
            (true, None, None) => TlsSetup::Plaintext,
            (true, _, _) => {
                return Err(Error::Usage(
                    "plaintext and cert/key exclude each other".into(),
                ));
            }
            (false, Some(cert), Some(key)) => TlsSetup::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            (false, None, None) => TlsSetup::SelfSigned,
            (false, _, _) => return Err(Error::Usage("cert and key go together".into())),
        };
        Ok(Config {
            root: match self.root.as_deref().unwrap_or("./ftp-root").parse() {
                Ok(root) => root,
                Err(never) => match never {},
            },
            users: match self.users.as_deref().unwrap_or("./users.db").parse() {
                Ok(users) => users,
                Err(never) => match never {},
            },
            state_dir: self
                .state_dir
                .clone()
                .unwrap_or_else(|| "./ftpd-state".into()),
            tls,
            audit_log: self.audit_log.clone(),
            limits: Limits {
                max_connections: self
                    .max_connections
                    .unwrap_or(defaults.max_connections)
                    .max(1),
                max_connections_per_ip: self
                    .max_connections_per_ip
                    .unwrap_or(defaults.max_connections_per_ip)
                    .max(1),
                max_sessions_per_user: self
                    .max_sessions_per_user
                    .unwrap_or(defaults.max_sessions_per_user)
                    .max(1),
                login_timeout: secs(self.login_timeout, defaults.login_timeout),
                idle_timeout: secs(self.idle_timeout, defaults.idle_timeout),
                stall_timeout: secs(self.stall_timeout, defaults.stall_timeout)
                    .max(Duration::from_secs(1)),
                max_transfers: self.max_transfers.unwrap_or(defaults.max_transfers).max(1),
                lockout: LockoutPolicy {
                    max_failures: self
                        .max_login_failures
                        .unwrap_or(defaults.lockout.max_failures)
                        .max(1),
                    lockout: secs(self.lockout, defaults.lockout.lockout),
                    ..defaults.lockout
                },
                shutdown_grace: secs(self.shutdown_grace, defaults.shutdown_grace),
                require_channel_binding: !self.allow_unbound_logins,
            },
        })
    }
}

/// A setting that may be written as a number (`chat-rate = 20`) or a word (`"off"`).
fn number_or_word<'de, D>(deserializer: D) -> std::result::Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(f64),
        Word(String),
    }
    Ok(
        Option::<Either>::deserialize(deserializer)?.map(|v| match v {
            Either::Number(n) => n.to_string(),
            Either::Word(w) => w,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_wins_over_the_file_and_defaults_fill_the_rest() {
        let file: ServeOptions = toml::from_str(
            "listen = \"0.0.0.0:9000\"\nroot = \"/srv/ftp\"\nmax-login-failures = 5\nlog-format = \"json\"\n",
        )
        .unwrap();
        let cli = ServeOptions {
            root: Some("/data".into()),
            ..ServeOptions::default()
        };
        let merged = cli.or(file);
        assert_eq!(merged.listen_addr(), "0.0.0.0:9000".parse().unwrap());
        assert_eq!(merged.log_format, Some(LogFormat::Json));
        let config = merged.config().unwrap();
        assert_eq!(config.root, PathBuf::from("/data").into());
        assert_eq!(config.users, PathBuf::from("./users.db").into());
        assert_eq!(config.limits.lockout.max_failures, 5);
        assert_eq!(config.limits.login_timeout, Duration::from_secs(30));
        assert_eq!(config.tls, TlsSetup::SelfSigned);
        assert!(toml::from_str::<ServeOptions>("colour = \"blue\"\n").is_err());
        assert!(toml::from_str::<ServeOptions>("max-connections = \"many\"\n").is_err());
        let half = ServeOptions {
            cert: Some("c.pem".into()),
            ..ServeOptions::default()
        };
        assert!(half.config().is_err());
    }
}
