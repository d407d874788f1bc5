//! What every front end calls, whatever it speaks: the native protocol (`session` and
//! `handler`), SFTP, and the chat for its login. Nothing here knows a frame, a request or a
//! reply; front ends parse what arrives, call in, and say what comes back their own way.
//!
//! - `login`: SCRAM against the stored verifier, lockouts, audit, the limit of sessions;
//! - `files`: one logged-in user's files (jail, quotas, locks, transfer places, audit);
//! - `keys`: the SSH keys a logged-in user manages themselves.

pub(crate) mod files;
pub(crate) mod keys;
pub(crate) mod login;
pub(crate) mod transfers;

pub(crate) use files::{Outcome, UserFiles};
