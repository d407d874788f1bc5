//! SCRAM-SHA-256 (RFC 5802 + RFC 7677): key derivation, the PostgreSQL verifier format,
//! and both sides of the four-message exchange. Pure functions and small state machines,
//! no I/O, so the same code serves the server, the client and the tests.
//!
//! This file holds what both sides share (keys, verifiers, nonces, names, the message
//! syntax); `client` and `server` hold each side's steps.
//!
//! # Format
//! The messages are the RFC's strings byte for byte:
//! ```text
//! client-first  n,,n=<user>,r=<client nonce>
//! server-first  r=<client nonce><server nonce>,s=<salt b64>,i=<iterations>
//! client-final  c=biws,r=<nonce>,p=<ClientProof b64>
//! server-final  v=<ServerSignature b64>   or   e=<error>
//! ```

mod client;
mod server;

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use base64::prelude::{BASE64_STANDARD, Engine as _};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The SASL mechanism name of plain SCRAM-SHA-256 (no channel binding).
pub const MECHANISM: &str = "SCRAM-SHA-256";
/// SCRAM-SHA-256 with channel binding, offered over TLS.
pub const MECHANISM_PLUS: &str = "SCRAM-SHA-256-PLUS";
/// The one channel-binding type we use (RFC 5929): a hash of the server's certificate.
pub const CHANNEL_BINDING_TYPE: &str = "tls-server-end-point";
/// PBKDF2 iterations for every new verifier (OWASP's current figure for PBKDF2-HMAC-SHA256).
/// The mock exchange for unknown users announces the same count, so it gives nothing away.
pub const DEFAULT_ITERATIONS: u32 = 600_000;
/// RFC 7677 asks for at least 4096 iterations.
pub const MIN_ITERATIONS: u32 = 4096;
/// A client refuses servers asking for more: a hostile server could otherwise pin its CPU.
pub const MAX_ITERATIONS: u32 = 10_000_000;
/// Length of a freshly generated salt.
pub const SALT_LEN: usize = 16;
/// A salt longer than this in a server-first message is refused rather than hashed.
const MAX_SALT_LEN: usize = 1024;

/// A 32-byte SHA-256 sized key or signature.
pub type Key = [u8; 32];

/// What can go wrong in a SCRAM exchange, on either side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// A message does not follow RFC 5802's grammar.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The server's nonce does not start with the client's, or the client echoed a wrong one.
    #[error("SCRAM nonce mismatch")]
    NonceMismatch,
    /// The server asked for an iteration count outside what we accept.
    #[error(
        "server asks for {0} PBKDF2 iterations (accepted: {MIN_ITERATIONS} to {MAX_ITERATIONS})"
    )]
    BadIterationCount(u32),
    /// The proof was wrong: wrong password, unknown user, or stale cached keys.
    #[error("authentication failed: wrong username or password")]
    AuthenticationFailed,
    /// The server's signature did not verify: it does not hold this user's verifier.
    #[error("the server could not prove it knows the password verifier")]
    BadServerSignature,
    /// The server ended the exchange with `e=<reason>`.
    #[error(
        "server refused authentication: {}",
        crate::sanitize::for_terminal(.0)
    )]
    ServerError(String),
    /// A mandatory extension (`m=`) or an authorization identity.
    #[error("unsupported SCRAM feature: {0}")]
    Unsupported(&'static str),
    /// The client asked for channel binding where the server has none (no TLS).
    #[error("channel binding is not supported on this connection")]
    ChannelBindingNotSupported,
    /// The client asked for a channel-binding type other than `tls-server-end-point`.
    #[error("unsupported channel-binding type")]
    UnsupportedChannelBindingType,
    /// The client said (flag `y`) it supports channel binding but thinks the server does not,
    /// while the server does: someone removed it on the way (a downgrade).
    #[error("the server supports channel binding, but the client was told it does not")]
    ServerSupportsChannelBinding,
    /// The channel-binding data differs from the server's: the client's TLS connection ends
    /// somewhere else (a man in the middle relaying the login).
    #[error("channel bindings do not match: the connection is being intercepted")]
    ChannelBindingMismatch,
    /// Over TLS the server requires SCRAM-SHA-256-PLUS, and the client logged in without
    /// channel binding (which a downgrade by a man in the middle would look like).
    #[error("this server requires channel binding (SCRAM-SHA-256-PLUS) over TLS")]
    ChannelBindingRequired,
    /// The mechanism name and the gs2 flag disagree (PLUS without `p=`, or `p=` without PLUS).
    #[error("mechanism and channel-binding flag disagree")]
    MechanismMismatch,
    /// The password cannot be used (empty, or prohibited by SASLprep).
    #[error("unusable password: {0}")]
    BadPassword(&'static str),
    /// A stored verifier string is not in PostgreSQL's format.
    #[error("invalid SCRAM verifier: {0}")]
    BadVerifier(&'static str),
}

impl ScramError {
    /// The RFC 5802 `server-error-value` a server sends for this error in `e=`.
    pub fn server_error_value(&self) -> &'static str {
        match self {
            ScramError::AuthenticationFailed => "invalid-proof",
            ScramError::Unsupported("mandatory extension") => "extensions-not-supported",
            ScramError::ChannelBindingNotSupported => "channel-binding-not-supported",
            ScramError::UnsupportedChannelBindingType => "unsupported-channel-binding-type",
            ScramError::ServerSupportsChannelBinding | ScramError::ChannelBindingRequired => {
                "server-does-support-channel-binding"
            }
            ScramError::ChannelBindingMismatch => "channel-bindings-dont-match",
            ScramError::Malformed("username encoding") => "invalid-username-encoding",
            ScramError::Malformed(_) => "invalid-encoding",
            _ => "other-error",
        }
    }
}

type HmacSha256 = Hmac<Sha256>;

pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> Key {
    // HMAC accepts keys of every length, so this cannot fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn sha256(data: &[u8]) -> Key {
    Sha256::digest(data).into()
}

/// The password as SCRAM hashes it: SASLprep'd (RFC 4013). Where SASLprep refuses the string
/// we hash the raw bytes, as PostgreSQL does, so verifiers copied from it keep working.
fn prepared_password(password: &str) -> Cow<'_, [u8]> {
    match stringprep::saslprep(password) {
        Ok(Cow::Borrowed(s)) => Cow::Borrowed(s.as_bytes()),
        Ok(Cow::Owned(s)) => Cow::Owned(s.into_bytes()),
        Err(_) => Cow::Borrowed(password.as_bytes()),
    }
}

/// Checks a new password: not empty, and acceptable to SASLprep (so every RFC client agrees).
///
/// # Errors
/// [`ScramError::BadPassword`] saying why.
pub fn check_new_password(password: &str) -> Result<(), ScramError> {
    if password.is_empty() {
        return Err(ScramError::BadPassword("the password is empty"));
    }
    match stringprep::saslprep(password) {
        Ok(p) if p.is_empty() => Err(ScramError::BadPassword(
            "the password is empty after SASLprep",
        )),
        Ok(_) => Ok(()),
        Err(_) => Err(ScramError::BadPassword(
            "it contains characters SASLprep prohibits",
        )),
    }
}

/// SaltedPassword := Hi(Normalize(password), salt, i), the expensive step.
pub fn salted_password(password: &str, salt: &[u8], iterations: u32) -> Key {
    pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(&prepared_password(password), salt, iterations)
}

/// Random bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::fill(&mut bytes[..]);
    bytes
}

/// A fresh nonce: 18 random bytes, base64 (printable, never a comma).
pub fn new_nonce() -> String {
    BASE64_STANDARD.encode(random_bytes::<18>())
}

/// What a client may cache instead of the password: enough to run a full exchange
/// against this salt and iteration count without the PBKDF2 cost.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientKeys {
    /// The salt the server announced when the keys were derived.
    pub salt: Vec<u8>,
    /// The iteration count the server announced.
    pub iterations: u32,
    /// ClientKey := HMAC(SaltedPassword, "Client Key").
    pub client_key: Key,
    /// ServerKey := HMAC(SaltedPassword, "Server Key").
    pub server_key: Key,
}

impl fmt::Debug for ClientKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientKeys")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ClientKeys {
    /// Derives the keys from the password (runs PBKDF2).
    pub fn derive(password: &str, salt: &[u8], iterations: u32) -> Self {
        let salted = salted_password(password, salt, iterations);
        ClientKeys {
            salt: salt.to_vec(),
            iterations,
            client_key: hmac(&salted, &[b"Client Key"]),
            server_key: hmac(&salted, &[b"Server Key"]),
        }
    }
}

/// The salted verifier a server stores, in PostgreSQL's text form:
/// `SCRAM-SHA-256$<iterations>:<salt b64>$<StoredKey b64>:<ServerKey b64>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    /// PBKDF2 iteration count.
    pub iterations: u32,
    /// The user's salt.
    pub salt: Vec<u8>,
    /// StoredKey := H(ClientKey).
    pub stored_key: Key,
    /// ServerKey := HMAC(SaltedPassword, "Server Key").
    pub server_key: Key,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier for `password` with a fresh random salt.
    pub fn generate(password: &str, iterations: u32) -> Self {
        Self::from_password(password, &random_bytes::<SALT_LEN>(), iterations)
    }

    /// A verifier for `password` with the given salt.
    pub fn from_password(password: &str, salt: &[u8], iterations: u32) -> Self {
        let keys = ClientKeys::derive(password, salt, iterations);
        Verifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: sha256(&keys.client_key),
            server_key: keys.server_key,
        }
    }

    /// Whether `password` is the one this verifier was made from: derived with the stored
    /// salt and iteration count, its StoredKey compared in constant time. For front ends
    /// whose clients send the password itself (an SFTP or WebDAV password login), which a
    /// SCRAM login never does. A mock verifier matches no password.
    pub fn matches_password(&self, password: &str) -> bool {
        let keys = ClientKeys::derive(password, &self.salt, self.iterations);
        bool::from(sha256(&keys.client_key).ct_eq(&self.stored_key))
    }

    /// A deterministic stand-in for a user who does not exist: the salt and keys come from a
    /// server secret and the name, so repeated attempts see the same salt, as for a real user.
    /// No proof can match it without knowing the secret.
    ///
    /// Its iteration count is drawn, by name, from `counts` (each iteration count the real
    /// users have, with how many have it), so unknown names get each count as often as
    /// real users do and the count tells nothing; [`DEFAULT_ITERATIONS`] without users.
    pub fn mock(secret: &[u8], username: &str, counts: &[(u32, u64)]) -> Self {
        let salt = hmac(secret, &[b"mock salt\0", username.as_bytes()]);
        let pick = hmac(secret, &[b"mock iterations\0", username.as_bytes()]);
        let mut pick = u64::from_be_bytes(pick[..8].try_into().unwrap_or_default());
        let total: u64 = counts
            .iter()
            .map(|(_, n)| n)
            .fold(0, |a, n| a.saturating_add(*n));
        let mut iterations = DEFAULT_ITERATIONS;
        if total > 0 {
            pick %= total;
            for (count, users) in counts {
                if pick < *users {
                    iterations = *count;
                    break;
                }
                pick -= users;
            }
        }
        Verifier {
            iterations,
            salt: salt[..SALT_LEN].to_vec(),
            stored_key: hmac(secret, &[b"mock stored key\0", username.as_bytes()]),
            server_key: hmac(secret, &[b"mock server key\0", username.as_bytes()]),
        }
    }
}

impl fmt::Display for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{MECHANISM}${}:{}${}:{}",
            self.iterations,
            BASE64_STANDARD.encode(&self.salt),
            BASE64_STANDARD.encode(self.stored_key),
            BASE64_STANDARD.encode(self.server_key)
        )
    }
}

fn decode_key(b64: &str, what: &'static str) -> Result<Key, ScramError> {
    BASE64_STANDARD
        .decode(b64)
        .ok()
        .and_then(|bytes| Key::try_from(bytes.as_slice()).ok())
        .ok_or(ScramError::BadVerifier(what))
}

impl FromStr for Verifier {
    type Err = ScramError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s
            .strip_prefix(MECHANISM)
            .and_then(|r| r.strip_prefix('$'))
            .ok_or(ScramError::BadVerifier(
                "it does not start with SCRAM-SHA-256$",
            ))?;
        let (params, keys) = rest.split_once('$').ok_or(ScramError::BadVerifier(
            "expected <iterations>:<salt>$<StoredKey>:<ServerKey>",
        ))?;
        let (iterations, salt) = params
            .split_once(':')
            .ok_or(ScramError::BadVerifier("expected <iterations>:<salt>"))?;
        let (stored, server) = keys
            .split_once(':')
            .ok_or(ScramError::BadVerifier("expected <StoredKey>:<ServerKey>"))?;
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| ScramError::BadVerifier("the iteration count is not a number"))?;
        if iterations == 0 {
            return Err(ScramError::BadVerifier("the iteration count is zero"));
        }
        let salt = BASE64_STANDARD
            .decode(salt)
            .map_err(|_| ScramError::BadVerifier("the salt is not base64"))?;
        if salt.is_empty() {
            return Err(ScramError::BadVerifier("the salt is empty"));
        }
        Ok(Verifier {
            iterations,
            salt,
            stored_key: decode_key(stored, "StoredKey is not 32 bytes of base64")?,
            server_key: decode_key(server, "ServerKey is not 32 bytes of base64")?,
        })
    }
}

/// `saslname` encoding of RFC 5802: `,` becomes `=2C` and `=` becomes `=3D`.
pub fn escape_username(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// Inverse of [`escape_username`]; any other `=` sequence is an error.
///
/// # Errors
/// [`ScramError::Malformed`] for a bad escape.
pub fn unescape_username(escaped: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some(pos) = rest.find('=') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if tail.starts_with("=2C") {
            out.push(',');
        } else if tail.starts_with("=3D") {
            out.push('=');
        } else {
            return Err(ScramError::Malformed("username encoding"));
        }
        rest = &tail[3..];
    }
    out.push_str(rest);
    Ok(out)
}

fn valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Splits `a=1,b=2` into attributes, checking each has the `x=` form.
fn attributes(msg: &str) -> Result<Vec<(u8, &str)>, ScramError> {
    msg.split(',')
        .map(|part| {
            let bytes = part.as_bytes();
            if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b'=' {
                Ok((bytes[0], &part[2..]))
            } else {
                Err(ScramError::Malformed(
                    "attribute is not of the form x=value",
                ))
            }
        })
        .collect()
}

/// Takes the next attribute, which must be `name`.
fn expect<'a>(
    attrs: &mut impl Iterator<Item = (u8, &'a str)>,
    name: u8,
    what: &'static str,
) -> Result<&'a str, ScramError> {
    match attrs.next() {
        Some((n, v)) if n == name => Ok(v),
        Some((b'm', _)) => Err(ScramError::Unsupported("mandatory extension")),
        _ => Err(ScramError::Malformed(what)),
    }
}

// ---------------------------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------------------------

/// What the client says about channel binding (the gs2 flag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelBinding {
    /// `n`: no channel binding (no TLS).
    None,
    /// `y`: the client supports it but believes the server does not.
    SupportedNotUsed,
    /// `p=tls-server-end-point`: bound to this hash of the server's certificate.
    TlsServerEndPoint(Vec<u8>),
}

impl ChannelBinding {
    /// The gs2 header (no authzid).
    fn gs2_header(&self) -> String {
        match self {
            ChannelBinding::None => "n,,".into(),
            ChannelBinding::SupportedNotUsed => "y,,".into(),
            ChannelBinding::TlsServerEndPoint(_) => format!("p={CHANNEL_BINDING_TYPE},,"),
        }
    }

    /// The `c=` value: the gs2 header, then the binding data, in base64.
    fn c_attribute(&self) -> String {
        let mut input = self.gs2_header().into_bytes();
        if let ChannelBinding::TlsServerEndPoint(data) = self {
            input.extend_from_slice(data);
        }
        BASE64_STANDARD.encode(input)
    }

    /// The SASL mechanism this binding goes with.
    pub fn mechanism(&self) -> &'static str {
        match self {
            ChannelBinding::TlsServerEndPoint(_) => MECHANISM_PLUS,
            ChannelBinding::None | ChannelBinding::SupportedNotUsed => MECHANISM,
        }
    }
}

pub use client::*;
pub use server::*;

#[cfg(test)]
mod tests;
