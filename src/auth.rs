//! SCRAM-SHA-256 (RFC 5802 + RFC 7677): key derivation, the PostgreSQL verifier format,
//! and both sides of the four-message exchange. Pure functions and small state machines,
//! no I/O, so the same code serves the server, the client and the tests.
//!
//! # Format
//! The messages are the RFC's strings byte for byte:
//! ```text
//! client-first  n,,n=<user>,r=<client nonce>
//! server-first  r=<client nonce><server nonce>,s=<salt b64>,i=<iterations>
//! client-final  c=biws,r=<nonce>,p=<ClientProof b64>
//! server-final  v=<ServerSignature b64>   or   e=<error>
//! ```

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

/// The client's first step: remembers its nonce and the message it sent.
#[derive(Debug, Clone)]
pub struct ClientFirst {
    nonce: String,
    bare: String,
    binding: ChannelBinding,
}

impl ClientFirst {
    /// Starts an exchange for `username` with a fresh nonce and no channel binding.
    pub fn new(username: &str) -> Self {
        Self::with_binding(username, ChannelBinding::None)
    }

    /// Starts an exchange with the given channel binding.
    pub fn with_binding(username: &str, binding: ChannelBinding) -> Self {
        let mut first = Self::with_nonce(username, &new_nonce());
        first.binding = binding;
        first
    }

    /// Starts an exchange with a given nonce (tests reproduce the RFC's example with it).
    pub fn with_nonce(username: &str, nonce: &str) -> Self {
        ClientFirst {
            nonce: nonce.to_owned(),
            bare: format!("n={},r={nonce}", escape_username(username)),
            binding: ChannelBinding::None,
        }
    }

    /// The SASL mechanism to announce with this message.
    pub fn mechanism(&self) -> &'static str {
        self.binding.mechanism()
    }

    /// The client-first-message: gs2 header (no authzid), then the bare message.
    pub fn message(&self) -> String {
        format!("{}{}", self.binding.gs2_header(), self.bare)
    }

    /// Parses and checks the server-first-message.
    ///
    /// # Errors
    /// A malformed message, a nonce that does not extend ours, or an absurd iteration count.
    pub fn receive_server_first(self, server_first: &str) -> Result<ServerChallenge, ScramError> {
        let attrs = attributes(server_first)?;
        let mut it = attrs.into_iter();
        let nonce = expect(&mut it, b'r', "server-first must start with r=")?;
        let salt = expect(&mut it, b's', "server-first lacks s=")?;
        let iterations = expect(&mut it, b'i', "server-first lacks i=")?;
        if !valid_nonce(nonce) {
            return Err(ScramError::Malformed("the nonce has invalid characters"));
        }
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::NonceMismatch);
        }
        let salt = BASE64_STANDARD
            .decode(salt)
            .map_err(|_| ScramError::Malformed("the salt is not base64"))?;
        if salt.is_empty() || salt.len() > MAX_SALT_LEN {
            return Err(ScramError::Malformed("the salt is empty or too long"));
        }
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| ScramError::Malformed("the iteration count is not a number"))?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(ScramError::BadIterationCount(iterations));
        }
        Ok(ServerChallenge {
            c_attribute: self.binding.c_attribute(),
            client_first_bare: self.bare,
            server_first: server_first.to_owned(),
            nonce: nonce.to_owned(),
            salt,
            iterations,
        })
    }
}

/// What the server asked for: the salt and iteration count to derive keys with.
#[derive(Debug, Clone)]
pub struct ServerChallenge {
    c_attribute: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    /// The user's salt, as the server announced it.
    pub salt: Vec<u8>,
    /// The iteration count, as the server announced it.
    pub iterations: u32,
}

impl ServerChallenge {
    /// Builds the client-final-message from keys derived for this salt and count.
    pub fn respond(self, keys: &ClientKeys) -> (String, ClientFinal) {
        let without_proof = format!("c={},r={}", self.c_attribute, self.nonce);
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let stored_key = sha256(&keys.client_key);
        let signature = hmac(&stored_key, &[auth_message.as_bytes()]);
        let mut proof = keys.client_key;
        for (p, s) in proof.iter_mut().zip(signature) {
            *p ^= s;
        }
        let expected = hmac(&keys.server_key, &[auth_message.as_bytes()]);
        let message = format!("{without_proof},p={}", BASE64_STANDARD.encode(proof));
        (
            message,
            ClientFinal {
                expected_server_signature: expected,
            },
        )
    }
}

/// The client's last step: the server signature it expects.
#[derive(Debug, Clone)]
pub struct ClientFinal {
    expected_server_signature: Key,
}

impl ClientFinal {
    /// Checks the server-final-message: success only if the server proved it holds the verifier.
    ///
    /// # Errors
    /// [`ScramError::ServerError`] for `e=`, [`ScramError::BadServerSignature`] for a wrong `v=`.
    pub fn verify_server_final(&self, server_final: &str) -> Result<(), ScramError> {
        let attrs = attributes(server_final)?;
        match attrs.first() {
            Some((b'e', reason)) if *reason == "invalid-proof" => {
                Err(ScramError::AuthenticationFailed)
            }
            Some((b'e', reason)) => Err(ScramError::ServerError((*reason).to_owned())),
            Some((b'v', sig)) => {
                let sig = BASE64_STANDARD
                    .decode(sig)
                    .map_err(|_| ScramError::Malformed("the server signature is not base64"))?;
                if bool::from(sig.ct_eq(&self.expected_server_signature)) {
                    Ok(())
                } else {
                    Err(ScramError::BadServerSignature)
                }
            }
            _ => Err(ScramError::Malformed("server-final must be v= or e=")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Server side
// ---------------------------------------------------------------------------------------------

/// The gs2 channel-binding flag a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gs2Flag {
    /// `n`: the client does not support channel binding.
    No,
    /// `y`: the client supports it but thinks the server does not.
    Supported,
    /// `p=<type>`: the client binds to the channel.
    Bound(String),
}

/// A parsed client-first-message.
#[derive(Debug, Clone)]
pub struct ClientFirstMessage {
    /// The unescaped username (`n=`).
    pub username: String,
    /// The channel-binding flag.
    pub flag: Gs2Flag,
    gs2_header: String,
    nonce: String,
    bare: String,
}

impl ClientFirstMessage {
    /// Parses a client-first-message. Whether its channel-binding flag is acceptable is
    /// decided by [`ServerExchange::check_binding`], which knows the transport.
    ///
    /// # Errors
    /// Malformed messages, an authzid, or a mandatory extension.
    pub fn parse(msg: &str) -> Result<Self, ScramError> {
        let (flag, rest) = msg
            .split_once(',')
            .ok_or(ScramError::Malformed("missing gs2 header"))?;
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or(ScramError::Malformed("missing gs2 header"))?;
        let parsed_flag = match flag {
            "n" => Gs2Flag::No,
            "y" => Gs2Flag::Supported,
            f => match f.strip_prefix("p=") {
                Some(name)
                    if !name.is_empty()
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') =>
                {
                    Gs2Flag::Bound(name.to_owned())
                }
                _ => return Err(ScramError::Malformed("bad gs2 channel-binding flag")),
            },
        };
        if !authzid.is_empty() {
            return Err(ScramError::Unsupported("authorization identity"));
        }
        let attrs = attributes(bare)?;
        let mut it = attrs.into_iter();
        let username = unescape_username(expect(&mut it, b'n', "client-first lacks n=")?)?;
        let nonce = expect(&mut it, b'r', "client-first lacks r=")?;
        if !valid_nonce(nonce) {
            return Err(ScramError::Malformed("the nonce has invalid characters"));
        }
        Ok(ClientFirstMessage {
            username,
            flag: parsed_flag,
            gs2_header: format!("{flag},{authzid},"),
            nonce: nonce.to_owned(),
            bare: bare.to_owned(),
        })
    }
}

/// The server's side of one exchange, between server-first and client-final.
#[derive(Debug, Clone)]
pub struct ServerExchange {
    verifier: Verifier,
    /// What `c=` must decode to: the gs2 header, plus our binding data for `p=`.
    expected_binding: Vec<u8>,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

impl ServerExchange {
    /// Checks the channel-binding flag against the mechanism the client named and what this
    /// connection offers (`server_binding`: the `tls-server-end-point` data over TLS, `None`
    /// in plaintext). Done before the user is looked up, so it reveals nothing about users.
    ///
    /// # Errors
    /// [`ScramError::MechanismMismatch`], [`ScramError::ChannelBindingNotSupported`],
    /// [`ScramError::UnsupportedChannelBindingType`] or
    /// [`ScramError::ServerSupportsChannelBinding`] (a downgrade).
    pub fn check_binding(
        first: &ClientFirstMessage,
        mechanism: &str,
        server_binding: Option<&[u8]>,
    ) -> Result<(), ScramError> {
        match (&first.flag, mechanism) {
            (Gs2Flag::Bound(kind), MECHANISM_PLUS) => {
                if server_binding.is_none() {
                    Err(ScramError::ChannelBindingNotSupported)
                } else if kind != CHANNEL_BINDING_TYPE {
                    Err(ScramError::UnsupportedChannelBindingType)
                } else {
                    Ok(())
                }
            }
            (Gs2Flag::Supported, MECHANISM) if server_binding.is_some() => {
                Err(ScramError::ServerSupportsChannelBinding)
            }
            (Gs2Flag::No | Gs2Flag::Supported, MECHANISM) => Ok(()),
            _ => Err(ScramError::MechanismMismatch),
        }
    }

    /// Answers a client-first-message (already accepted by [`ServerExchange::check_binding`])
    /// with the user's verifier (or a mock one) and a fresh server nonce. Returns the exchange
    /// state and the server-first-message.
    pub fn start(
        client_first: ClientFirstMessage,
        verifier: Verifier,
        server_binding: Option<&[u8]>,
    ) -> (Self, String) {
        Self::start_with_nonce(client_first, verifier, server_binding, &new_nonce())
    }

    /// [`ServerExchange::start`] with a given server nonce (for the RFC test vector).
    pub fn start_with_nonce(
        client_first: ClientFirstMessage,
        verifier: Verifier,
        server_binding: Option<&[u8]>,
        server_nonce: &str,
    ) -> (Self, String) {
        let nonce = format!("{}{server_nonce}", client_first.nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64_STANDARD.encode(&verifier.salt),
            verifier.iterations
        );
        let mut expected_binding = client_first.gs2_header.into_bytes();
        if matches!(client_first.flag, Gs2Flag::Bound(_)) {
            expected_binding.extend_from_slice(server_binding.unwrap_or_default());
        }
        let exchange = ServerExchange {
            verifier,
            expected_binding,
            client_first_bare: client_first.bare,
            server_first: server_first.clone(),
            nonce,
        };
        (exchange, server_first)
    }

    /// Checks the client-final-message. On success returns the server-final-message (`v=`).
    ///
    /// # Errors
    /// [`ScramError::AuthenticationFailed`] for a wrong proof (the same for unknown users),
    /// other variants for malformed messages; [`ScramError::server_error_value`] gives `e=`.
    pub fn finish(self, client_final: &str) -> Result<String, ScramError> {
        let (without_proof, proof) = client_final
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("client-final lacks p="))?;
        let attrs = attributes(without_proof)?;
        let mut it = attrs.into_iter();
        let binding = expect(&mut it, b'c', "client-final must start with c=")?;
        let nonce = expect(&mut it, b'r', "client-final lacks r=")?;
        let binding = BASE64_STANDARD
            .decode(binding)
            .map_err(|_| ScramError::Malformed("c= is not base64"))?;
        if !bool::from(binding.ct_eq(&self.expected_binding)) {
            return Err(ScramError::ChannelBindingMismatch);
        }
        if nonce != self.nonce {
            return Err(ScramError::NonceMismatch);
        }
        let proof = BASE64_STANDARD
            .decode(proof)
            .map_err(|_| ScramError::Malformed("the proof is not base64"))?;
        let proof =
            Key::try_from(proof.as_slice()).map_err(|_| ScramError::AuthenticationFailed)?;
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let signature = hmac(&self.verifier.stored_key, &[auth_message.as_bytes()]);
        let mut client_key = proof;
        for (k, s) in client_key.iter_mut().zip(signature) {
            *k ^= s;
        }
        if bool::from(sha256(&client_key).ct_eq(&self.verifier.stored_key)) {
            let server_signature = hmac(&self.verifier.server_key, &[auth_message.as_bytes()]);
            Ok(format!("v={}", BASE64_STANDARD.encode(server_signature)))
        } else {
            Err(ScramError::AuthenticationFailed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7677, section 3.
    const USER: &str = "user";
    const PASSWORD: &str = "pencil";
    const CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn rfc_verifier() -> Verifier {
        let salt = BASE64_STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        Verifier::from_password(PASSWORD, &salt, 4096)
    }

    /// Each refusal has the `e=` value RFC 5802 (section 7) names for it; the rest say
    /// `other-error`, which tells an attacker nothing more.
    #[test]
    fn refusals_have_the_rfc_5802_server_error_values() {
        let cases = [
            (ScramError::AuthenticationFailed, "invalid-proof"),
            (ScramError::NonceMismatch, "other-error"),
            (
                ScramError::Unsupported("mandatory extension"),
                "extensions-not-supported",
            ),
            (
                ScramError::Unsupported("authorization identity"),
                "other-error",
            ),
            (
                ScramError::ChannelBindingNotSupported,
                "channel-binding-not-supported",
            ),
            (
                ScramError::UnsupportedChannelBindingType,
                "unsupported-channel-binding-type",
            ),
            (
                ScramError::ServerSupportsChannelBinding,
                "server-does-support-channel-binding",
            ),
            (
                ScramError::ChannelBindingRequired,
                "server-does-support-channel-binding",
            ),
            (
                ScramError::ChannelBindingMismatch,
                "channel-bindings-dont-match",
            ),
            (
                ScramError::Malformed("username encoding"),
                "invalid-username-encoding",
            ),
            (
                ScramError::Malformed("missing gs2 header"),
                "invalid-encoding",
            ),
            (ScramError::MechanismMismatch, "other-error"),
            (ScramError::BadIterationCount(1), "other-error"),
        ];
        for (error, value) in cases {
            assert_eq!(error.server_error_value(), value, "{error:?}");
        }
    }

    /// A password SASLprep maps to nothing (a soft hyphen) is as empty as "".
    #[test]
    fn new_passwords_are_checked() {
        assert_eq!(
            check_new_password(""),
            Err(ScramError::BadPassword("the password is empty"))
        );
        assert_eq!(
            check_new_password("\u{AD}"),
            Err(ScramError::BadPassword(
                "the password is empty after SASLprep"
            ))
        );
        assert!(matches!(
            check_new_password("a\u{7}b"),
            Err(ScramError::BadPassword(_))
        ));
        assert_eq!(check_new_password("pencil"), Ok(()));
    }

    /// Salts and nonces are fresh each time, and a nonce is 18 bytes of base64.
    #[test]
    fn randomness_is_fresh() {
        let (a, b) = (random_bytes::<16>(), random_bytes::<16>());
        assert_ne!(a, b);
        assert!(a.iter().any(|&x| x > 1) || b.iter().any(|&x| x > 1));
        let (n, m) = (new_nonce(), new_nonce());
        assert_ne!(n, m);
        assert_eq!(n.len(), 24);
        assert!(valid_nonce(&n), "{n}");
    }

    /// A nonce is printable ASCII but `,` (RFC 5802, section 7), and not empty.
    #[test]
    fn nonces_are_printable_ascii() {
        assert!(valid_nonce("!~abc%)"));
        for bad in ["", "b c", "b\u{7f}", "b\u{e9}", "a,b", "tab\t"] {
            assert!(!valid_nonce(bad), "{bad:?}");
        }
        for bad in [
            "n,,n=a,r=",
            "n,,n=a,r=b c",
            "n,,n=a,r=b\u{7f}",
            "n,,n=a,r=\u{e9}",
        ] {
            assert_eq!(
                ClientFirstMessage::parse(bad).unwrap_err(),
                ScramError::Malformed("the nonce has invalid characters"),
                "{bad:?}"
            );
        }
        let first = ClientFirst::with_nonce(USER, "abc");
        assert_eq!(
            first
                .receive_server_first("r=abc d,s=AA==,i=4096")
                .unwrap_err(),
            ScramError::Malformed("the nonce has invalid characters")
        );
    }

    /// The server's last word: a wrong password, another refusal, a signature that is
    /// not the server's, or nothing readable.
    #[test]
    fn the_client_reads_server_final_as_rfc_5802_says() {
        let first = ClientFirst::with_nonce(USER, CLIENT_NONCE);
        let challenge = first.receive_server_first(SERVER_FIRST).unwrap();
        let keys = ClientKeys::derive(PASSWORD, &challenge.salt, challenge.iterations);
        let (_, state) = challenge.respond(&keys);
        assert_eq!(
            state.verify_server_final("e=invalid-proof"),
            Err(ScramError::AuthenticationFailed)
        );
        assert_eq!(
            state.verify_server_final("e=channel-bindings-dont-match"),
            Err(ScramError::ServerError(
                "channel-bindings-dont-match".into()
            ))
        );
        assert_eq!(
            state.verify_server_final("v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            Err(ScramError::BadServerSignature)
        );
        assert!(matches!(
            state.verify_server_final("v=***"),
            Err(ScramError::Malformed(_))
        ));
        assert!(matches!(
            state.verify_server_final("x=1"),
            Err(ScramError::Malformed(_))
        ));
        assert_eq!(state.verify_server_final(SERVER_FINAL), Ok(()));
    }

    /// A salt is 1 to MAX_SALT_LEN bytes; a channel-binding name is letters, digits, `.`
    /// and `-` (RFC 5802's cb-name).
    #[test]
    fn salts_and_binding_names_have_their_bounds() {
        let first = || ClientFirst::with_nonce(USER, "abc");
        let with_salt = |len: usize| {
            format!(
                "r=abcdef,s={},i=4096",
                BASE64_STANDARD.encode(vec![7u8; len])
            )
        };
        assert!(
            first()
                .receive_server_first(&with_salt(MAX_SALT_LEN))
                .is_ok()
        );
        assert!(first().receive_server_first(&with_salt(1)).is_ok());
        for len in [0, MAX_SALT_LEN + 1] {
            assert_eq!(
                first().receive_server_first(&with_salt(len)).unwrap_err(),
                ScramError::Malformed("the salt is empty or too long"),
                "{len}"
            );
        }
        let parsed = ClientFirstMessage::parse("p=a.b-9,,n=a,r=b").unwrap();
        assert_eq!(parsed.flag, Gs2Flag::Bound("a.b-9".into()));
        for bad in ["p=a_b,,n=a,r=b", "p=a b,,n=a,r=b", "p=,,n=a,r=b"] {
            assert_eq!(
                ClientFirstMessage::parse(bad).unwrap_err(),
                ScramError::Malformed("bad gs2 channel-binding flag"),
                "{bad}"
            );
        }
    }

    /// Keys and verifiers never show their secrets in logs.
    #[test]
    fn debug_output_keeps_the_keys_secret() {
        let keys = ClientKeys::derive(PASSWORD, b"salt", MIN_ITERATIONS);
        let shown = format!("{keys:?}");
        assert!(
            shown.contains("ClientKeys") && shown.contains("4096"),
            "{shown}"
        );
        assert!(
            !shown.contains(&BASE64_STANDARD.encode(keys.client_key)),
            "{shown}"
        );
        assert!(
            !shown.contains(&format!("{:?}", keys.client_key)),
            "{shown}"
        );
        let verifier = rfc_verifier();
        let shown = format!("{verifier:?}");
        assert!(
            shown.contains("Verifier") && shown.contains("4096"),
            "{shown}"
        );
        assert!(
            !shown.contains(&BASE64_STANDARD.encode(verifier.stored_key)),
            "{shown}"
        );
        assert!(
            !shown.contains(&format!("{:?}", verifier.server_key)),
            "{shown}"
        );
    }

    #[test]
    fn rfc7677_client_side_byte_for_byte() {
        let first = ClientFirst::with_nonce(USER, CLIENT_NONCE);
        assert_eq!(first.message(), CLIENT_FIRST);
        let challenge = first.receive_server_first(SERVER_FIRST).unwrap();
        assert_eq!(challenge.iterations, 4096);
        let keys = ClientKeys::derive(PASSWORD, &challenge.salt, challenge.iterations);
        let (client_final, state) = challenge.respond(&keys);
        assert_eq!(client_final, CLIENT_FINAL);
        state.verify_server_final(SERVER_FINAL).unwrap();
    }

    #[test]
    fn rfc7677_server_side_byte_for_byte() {
        let first = ClientFirstMessage::parse(CLIENT_FIRST).unwrap();
        assert_eq!(first.username, USER);
        let (exchange, server_first) =
            ServerExchange::start_with_nonce(first, rfc_verifier(), None, SERVER_NONCE);
        assert_eq!(server_first, SERVER_FIRST);
        assert_eq!(exchange.finish(CLIENT_FINAL).unwrap(), SERVER_FINAL);
    }

    #[test]
    fn wrong_password_fails_at_the_proof_and_mock_fails_the_same_way() {
        let run = |verifier: Verifier, password: &str| {
            let first = ClientFirst::new(USER);
            let parsed = ClientFirstMessage::parse(&first.message()).unwrap();
            let (exchange, server_first) = ServerExchange::start(parsed, verifier, None);
            let challenge = first.receive_server_first(&server_first).unwrap();
            let keys = ClientKeys::derive(password, &challenge.salt, challenge.iterations);
            exchange.finish(&challenge.respond(&keys).0)
        };
        assert!(run(rfc_verifier(), PASSWORD).is_ok());
        assert_eq!(
            run(rfc_verifier(), "pencil2"),
            Err(ScramError::AuthenticationFailed)
        );
        let mut mock = Verifier::mock(b"secret", USER, &[]);
        mock.iterations = MIN_ITERATIONS; // keep the unit test fast
        assert_eq!(run(mock, PASSWORD), Err(ScramError::AuthenticationFailed));
    }

    #[test]
    fn mock_verifier_is_stable_per_name_and_secret() {
        let a = Verifier::mock(b"secret", "ghost", &[]);
        assert_eq!(a, Verifier::mock(b"secret", "ghost", &[]));
        assert_ne!(a.salt, Verifier::mock(b"secret", "ghost2", &[]).salt);
        assert_ne!(a.salt, Verifier::mock(b"other", "ghost", &[]).salt);
        assert_eq!(a.salt.len(), SALT_LEN);
        assert_eq!(a.iterations, DEFAULT_ITERATIONS);
    }

    /// Issue 11.10: every unknown name said `i=600000`, so a user created with another
    /// count stood out. Unknown names now get the counts users have, as often as they have
    /// them.
    #[test]
    fn mock_iteration_counts_follow_the_users() {
        let only = Verifier::mock(b"secret", "ghost", &[(4096, 3)]);
        assert_eq!(only.iterations, 4096);
        let counts = [(4096, 1), (600_000, 3)];
        let mut seen = std::collections::HashMap::<u32, u32>::new();
        for i in 0..4000 {
            let mock = Verifier::mock(b"secret", &format!("ghost{i}"), &counts);
            *seen.entry(mock.iterations).or_default() += 1;
            // Stable per name.
            assert_eq!(
                mock.iterations,
                Verifier::mock(b"secret", &format!("ghost{i}"), &counts).iterations
            );
        }
        assert_eq!(seen.len(), 2, "{seen:?}");
        let share = f64::from(seen[&4096]) / 4000.0;
        assert!((0.2..0.3).contains(&share), "4096 for {share} of names");
        // Three counts, none of them the default: each as often as users have it.
        let counts = [(4096, 1), (5000, 1), (6000, 2)];
        let mut seen = std::collections::HashMap::<u32, u32>::new();
        for i in 0..4000 {
            let mock = Verifier::mock(b"secret", &format!("ghost{i}"), &counts);
            *seen.entry(mock.iterations).or_default() += 1;
        }
        let share = |count| f64::from(seen.get(&count).copied().unwrap_or(0)) / 4000.0;
        assert!((0.2..0.3).contains(&share(4096)), "{seen:?}");
        assert!((0.2..0.3).contains(&share(5000)), "{seen:?}");
        assert!((0.45..0.55).contains(&share(6000)), "{seen:?}");
    }

    #[test]
    fn postgres_verifier_round_trips() {
        let text = rfc_verifier().to_string();
        assert!(text.starts_with("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"));
        assert_eq!(text.parse::<Verifier>().unwrap(), rfc_verifier());
        for bad in [
            "",
            "md5abc",
            "SCRAM-SHA-256$x:W22Z$a:b",
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$abc:def",
            "SCRAM-SHA-256$4096:!!$AAAA:BBBB",
        ] {
            assert!(bad.parse::<Verifier>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn client_refuses_bad_server_first() {
        let first = || ClientFirst::with_nonce(USER, "abc");
        let cases = [
            (
                "r=xyz123,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
                ScramError::NonceMismatch,
            ),
            (
                "r=abc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
                ScramError::NonceMismatch,
            ),
            (
                "r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=20000000",
                ScramError::BadIterationCount(20_000_000),
            ),
            (
                "r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1",
                ScramError::BadIterationCount(1),
            ),
            (
                "m=ext,r=abcdef,s=AA==,i=4096",
                ScramError::Unsupported("mandatory extension"),
            ),
        ];
        for (msg, err) in cases {
            assert_eq!(first().receive_server_first(msg).unwrap_err(), err, "{msg}");
        }
        for msg in [
            "",
            "garbage",
            "r=abcdef",
            "r=abcdef,s=***,i=4096",
            "r=abcdef,s=AA==,i=x",
        ] {
            assert!(matches!(
                first().receive_server_first(msg),
                Err(ScramError::Malformed(_))
            ));
        }
    }

    #[test]
    fn server_refuses_bad_client_messages() {
        for msg in [
            "",
            "n,",
            "x,,n=a,r=b",
            "n,,r=b",
            "n,,n=a",
            "n,,n=a=b,r=c",
            "n,,n=a,r=b,c",
        ] {
            assert!(ClientFirstMessage::parse(msg).is_err(), "{msg:?} accepted");
        }
        assert!(ClientFirstMessage::parse("p=,,n=a,r=b").is_err());
        assert!(ClientFirstMessage::parse("y,,n=a,r=b").is_ok());
        let first = ClientFirstMessage::parse(CLIENT_FIRST).unwrap();
        let (exchange, _) =
            ServerExchange::start_with_nonce(first, rfc_verifier(), None, SERVER_NONCE);
        for msg in [
            "",
            "c=biws,r=wrong,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            "c=eSws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AAAA",
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AAAA",
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        ] {
            assert!(exchange.clone().finish(msg).is_err(), "{msg:?} accepted");
        }
    }

    /// Runs a whole exchange with the client's and the server's views of the channel.
    fn bound_login(
        client: ChannelBinding,
        mechanism: &str,
        server: Option<&[u8]>,
    ) -> Result<(), ScramError> {
        let first = ClientFirst::with_binding(USER, client);
        let parsed = ClientFirstMessage::parse(&first.message())?;
        ServerExchange::check_binding(&parsed, mechanism, server)?;
        let (exchange, server_first) = ServerExchange::start(parsed, rfc_verifier(), server);
        let challenge = first.receive_server_first(&server_first)?;
        let keys = ClientKeys::derive(PASSWORD, &challenge.salt, challenge.iterations);
        let (client_final, state) = challenge.respond(&keys);
        let server_final = exchange.finish(&client_final)?;
        state.verify_server_final(&server_final)
    }

    #[test]
    fn channel_binding_plus_and_downgrades() {
        let cert_hash = [7u8; 32];
        let plus = || ChannelBinding::TlsServerEndPoint(cert_hash.to_vec());
        // Bound to the same certificate: success, and the gs2 header says so.
        assert_eq!(
            bound_login(plus(), MECHANISM_PLUS, Some(&cert_hash)),
            Ok(())
        );
        let first = ClientFirst::with_binding(USER, plus());
        assert!(
            first
                .message()
                .starts_with("p=tls-server-end-point,,n=user,r=")
        );
        assert_eq!(first.mechanism(), MECHANISM_PLUS);
        // A relay terminating TLS with another certificate: the bindings differ.
        assert_eq!(
            bound_login(plus(), MECHANISM_PLUS, Some(&[8u8; 32])),
            Err(ScramError::ChannelBindingMismatch)
        );
        // `y` to a server that supports binding: someone stripped PLUS on the way.
        assert_eq!(
            bound_login(
                ChannelBinding::SupportedNotUsed,
                MECHANISM,
                Some(&cert_hash)
            ),
            Err(ScramError::ServerSupportsChannelBinding)
        );
        assert_eq!(
            bound_login(ChannelBinding::SupportedNotUsed, MECHANISM, None),
            Ok(())
        );
        // PLUS where there is no TLS, and names that disagree with the flag.
        assert_eq!(
            bound_login(plus(), MECHANISM_PLUS, None),
            Err(ScramError::ChannelBindingNotSupported)
        );
        assert_eq!(
            bound_login(plus(), MECHANISM, Some(&cert_hash)),
            Err(ScramError::MechanismMismatch)
        );
        assert_eq!(
            bound_login(ChannelBinding::None, MECHANISM_PLUS, Some(&cert_hash)),
            Err(ScramError::MechanismMismatch)
        );
        let other_type = ClientFirstMessage::parse("p=tls-unique,,n=user,r=abc").unwrap();
        assert_eq!(
            ServerExchange::check_binding(&other_type, MECHANISM_PLUS, Some(&cert_hash)),
            Err(ScramError::UnsupportedChannelBindingType)
        );
        assert_eq!(
            ScramError::ChannelBindingMismatch.server_error_value(),
            "channel-bindings-dont-match"
        );
    }

    #[test]
    fn username_escaping() {
        assert_eq!(escape_username("a,b=c"), "a=2Cb=3Dc");
        assert_eq!(unescape_username("a=2Cb=3Dc").unwrap(), "a,b=c");
        assert!(unescape_username("a=2").is_err());
        assert!(unescape_username("a=41").is_err());
    }

    #[test]
    fn saslprep_applies_to_passwords() {
        // U+00A0 (no-break space) maps to a space under SASLprep.
        assert_eq!(
            salted_password("a\u{00A0}b", b"salt", 4096),
            salted_password("a b", b"salt", 4096)
        );
        assert!(check_new_password("").is_err());
        assert!(check_new_password("bad\u{0007}bell").is_err());
        assert!(check_new_password("pencil").is_ok());
    }
}
