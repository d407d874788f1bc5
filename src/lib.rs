//! ftprep: a small, secure, self-hosted file service. `ftpd` serves, `ftpc` is the client.
//!
//! # Layout
//! - [`error`]: the one typed error of the library and the kinds a caller can match on.
//! - [`auth`]: SCRAM-SHA-256 (RFC 5802 + RFC 7677): keys, verifiers, both sides of a login.
//! - [`authorized_key`]: SSH public keys for SFTP logins, as `.pub` lines and fingerprints.
//! - [`commands`]: the vocabulary on the wire: hello, requests, responses, error codes. Data only.
//! - [`chat`]: the chat's vocabulary (requests, replies, pushed events) over QUIC. Data only.
//! - [`wire`]: frames (4-byte big-endian length + bincode 2 payload) and a framed connection.
//! - [`ntp`]: the NTP packet and the client's arithmetic (RFC 5905), for the time service.
//! - [`paths`]: remote paths, validated and normalised before anything touches storage.
//! - [`checksum`]: the whole-file checksum both ends of a transfer compare (XXH3-128).
//! - [`pipeline`]: file data read or written and checksummed on a thread beside the
//!   connection, for both ends of a transfer.
//! - [`username`]: the one rule for user names, shared by adduser, users.db and login.
//! - [`prompt`]: reading passwords from the terminal (no echo) or from standard input.
//! - [`size`]: byte sizes for people (`10G` in, `1.5 GiB` out).
//! - [`sanitize`]: a peer's text made safe for a log line or a terminal.
//! - [`tls`]: the crypto provider, certificate fingerprints and channel-binding data.
//! - [`server`]: listener, per-connection session (hello → login → commands), SFTP over
//!   SSH, the chat and time services, and each concern (users, lockout, quota, storage, chat store) behind a
//!   trait, its engines opened in one place (`server::backends`).
//! - [`deadline`]: a time limit on any future; [`manual`]: the manual pages, from the
//!   command-line definitions.
//! - [`client`]: connect, log in (password or cached keys), one method per command, and the
//!   credential cache `ftpc` keeps between runs.
//!
//! Data flows one way: bytes → frame → `Request` → session (auth gate) → storage → `Response`
//! → frame.

pub mod auth;
pub mod authorized_key;
pub mod chat;
pub mod checksum;
pub mod client;
pub mod commands;
pub mod deadline;
pub mod error;
pub mod manual;
pub mod ntp;
pub mod paths;
pub mod pipeline;
pub mod prompt;
pub mod sanitize;
pub mod server;
pub mod size;
pub mod tls;
pub mod username;
pub mod wire;

pub use error::{Error, Result};
