//! Logging in, whatever the front end: SCRAM-SHA-256(-PLUS) against the stored verifier,
//! with the delays and lockouts of repeated failures, the audit, no user enumeration (an
//! unknown name gets a mock verifier and fails at the proof, as a wrong password does), and
//! the user's limit of sessions. A front end carries the messages its own way, then asks
//! for the user's files ([`Proven::open_files`]) or not (the chat).

use std::net::SocketAddr;
use std::sync::Arc;

use super::files::UserFiles;
use crate::auth::{self, ClientFirstMessage, ServerExchange, Verifier};
use crate::commands::ErrorCode;
use crate::server::audit::Record;
use crate::server::counters::Place;
use crate::server::guard::Verdict;
use crate::server::shared::Shared;
use crate::server::users::UserRecord;
use crate::username::Username;

/// Why a login ended without a user, as the client is to be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The exchange failed (a wrong password and an unknown name alike): the SCRAM error,
    /// `e=<value>`, as the server-final message.
    Scram(String),
    /// Not decided by a proof: an unsupported mechanism, a user database away, too many
    /// sessions, a home that cannot be opened.
    Error(ErrorCode, String),
}

/// A SCRAM login after the client's first message, waiting for its final one.
pub(crate) struct Scram<'a> {
    shared: &'a Arc<Shared>,
    peer: SocketAddr,
    claim: Claim,
    exchange: ServerExchange,
}

/// A name a client claims, looked up: the verdict on its address (whose delay has been
/// waited), the user's record if the name is a user's, and the iteration counts a mock
/// verifier draws from. Every front end's login starts here, so a lockout, a delay and
/// an unknown name cost and look the same whichever way the user proves who they are.
struct Claim {
    /// The name, if it can be a user's.
    name: Option<Username>,
    /// The name as logs may show it.
    shown: String,
    verdict: Verdict,
    /// The user, if the name is one.
    record: Option<UserRecord>,
    counts: Vec<(u32, u64)>,
}

impl Claim {
    /// Looks `raw` up. A name that cannot be a user's (too long, odd characters) is
    /// neither stored nor logged as sent: only its escaped start. A lockout is decided here
    /// but only shows as the failure a wrong proof gets. The user and the iteration counts
    /// are looked up meanwhile, for every name alike: an unknown name costs no other work
    /// than a known one.
    async fn look_up(shared: &Shared, peer: SocketAddr, raw: &str) -> Result<Self, Refusal> {
        let name = Username::parse(raw).ok();
        let shown = match &name {
            Some(name) => name.as_str().to_owned(),
            None => crate::sanitize::for_log(raw),
        };
        let (verdict, looked_up, counts) = tokio::join!(
            shared.guard.check(name.as_ref(), peer.ip()),
            async {
                match &name {
                    Some(name) => Some(shared.users.user(name).await),
                    None => None,
                }
            },
            shared.users.iteration_counts()
        );
        if !verdict.delay.is_zero() {
            tokio::time::sleep(verdict.delay).await;
        }
        let record = match looked_up {
            Some(Ok(record)) => record,
            None => None,
            Some(Err(err)) => {
                // The same answer whatever the name, so it tells nothing about users.
                tracing::error!(error = %err, "user store failed; refusing login");
                return Err(Refusal::Error(
                    ErrorCode::Busy,
                    "server busy: the user database is unavailable; try again later".into(),
                ));
            }
        };
        Ok(Claim {
            name,
            shown,
            verdict,
            record,
            counts: counts.unwrap_or_default(),
        })
    }

    /// The verifier to prove against: the user's, or for an unknown or impossible name a
    /// mock, so the proof fails exactly as a wrong password's does.
    fn verifier(&self, shared: &Shared) -> Verifier {
        match &self.record {
            Some(record) => record.verifier.clone(),
            None => {
                let key = self.name.as_ref().map_or("", Username::as_str);
                Verifier::mock(&shared.secret, key, &self.counts)
            }
        }
    }

    /// Whether a proof that held lets the user in: a user, and an address not locked.
    fn admissible(&self) -> bool {
        self.record.is_some() && !self.verdict.locked
    }

    /// The user, proven and [admissible](Claim::admissible), in a place under their limit
    /// of sessions.
    fn admit<'a>(
        self,
        shared: &'a Arc<Shared>,
        peer: SocketAddr,
        server_final: String,
        front_end: &str,
    ) -> Result<Proven<'a>, Refusal> {
        let Some(UserRecord { name: user, .. }) = self.record else {
            return Err(Refusal::Error(
                ErrorCode::AuthFailed,
                "authentication failed".into(),
            ));
        };
        let max = shared.limits.max_sessions_per_user;
        let Some(place) = shared.per_user.try_acquire(&user, max) else {
            tracing::warn!(%user, %peer, limit = max, "too many sessions; refusing");
            return Err(Refusal::Error(
                ErrorCode::Busy,
                format!("{user} already has {max} sessions open; close one first"),
            ));
        };
        Ok(Proven {
            shared,
            peer,
            user,
            place,
            server_final,
            front_end: front_end.to_owned(),
        })
    }

    /// A failed proof (`reason`), or any proof from a locked address: logged, audited and
    /// counted.
    async fn fail(&self, shared: &Shared, peer: SocketAddr, reason: &str) {
        let user = &self.shown;
        if self.verdict.locked {
            tracing::warn!(%user, %peer, "login refused: locked out after repeated failures");
        } else {
            tracing::warn!(%user, %peer, %reason, "login failed");
        }
        let result = if self.verdict.locked {
            "locked"
        } else {
            "failed"
        };
        let mut record = Record::new("login", user, peer, result);
        record.detail = Some(reason.to_owned());
        shared.audit(&record);
        record_failure(shared, self.name.as_ref(), user, peer).await;
    }
}

/// The mechanisms offered, most preferred first: channel binding only over TLS, and over
/// TLS nothing else unless the admin allows logins without it.
pub(crate) fn offered(tls: bool, limits: &crate::server::config::Limits) -> Vec<String> {
    let mut names = Vec::new();
    if tls {
        names.push(auth::MECHANISM_PLUS.to_owned());
    }
    if !tls || !limits.require_channel_binding {
        names.push(auth::MECHANISM.to_owned());
    }
    names
}

impl<'a> Scram<'a> {
    /// Takes the client's first message for `mechanism` (`binding`: the TLS channel's
    /// binding data, if there is a channel to bind to): the login and the server-first
    /// message to send. Whoever failed recently waits first; the user (or, for an unknown
    /// name, a mock) is looked up meanwhile, so the time tells nothing.
    pub(crate) async fn begin(
        shared: &'a Arc<Shared>,
        peer: SocketAddr,
        mechanism: &str,
        client_first: &str,
        binding: Option<&[u8]>,
    ) -> Result<(Self, String), Refusal> {
        if mechanism != auth::MECHANISM && mechanism != auth::MECHANISM_PLUS {
            return Err(Refusal::Error(
                ErrorCode::AuthFailed,
                format!(
                    "unsupported mechanism \"{}\"; this server offers {}",
                    crate::sanitize::for_log(mechanism),
                    offered(binding.is_some(), &shared.limits).join(", ")
                ),
            ));
        }
        let parsed = ClientFirstMessage::parse(client_first).and_then(|first| {
            ServerExchange::check_binding(&first, mechanism, binding)?;
            if binding.is_some()
                && shared.limits.require_channel_binding
                && mechanism != auth::MECHANISM_PLUS
            {
                return Err(auth::ScramError::ChannelBindingRequired);
            }
            Ok(first)
        });
        let first = match parsed {
            Ok(first) => first,
            Err(err) => {
                tracing::warn!(%peer, error = %err, "login refused before the proof");
                let mut record = Record::new("login", "", peer, "refused");
                record.detail = Some(err.to_string());
                shared.audit(&record);
                record_failure(shared, None, "", peer).await;
                return Err(Refusal::Scram(format!("e={}", err.server_error_value())));
            }
        };
        let claim = Claim::look_up(shared, peer, &first.username).await?;
        let verifier = claim.verifier(shared);
        let (exchange, server_first) = ServerExchange::start(first, verifier, binding);
        let login = Scram {
            shared,
            peer,
            claim,
            exchange,
        };
        Ok((login, server_first))
    }

    /// Takes the client's final message: the user proven (not yet told), or the refusal,
    /// counted and audited.
    pub(crate) async fn finish(self, client_final: &str) -> Result<Proven<'a>, Refusal> {
        let Scram {
            shared,
            peer,
            claim,
            exchange,
        } = self;
        match exchange.finish(client_final) {
            Ok(server_final) if claim.admissible() => claim.admit(shared, peer, server_final, ""),
            result => {
                let err = result
                    .err()
                    .unwrap_or(auth::ScramError::AuthenticationFailed);
                claim.fail(shared, peer, &err.to_string()).await;
                Err(Refusal::Scram(format!("e={}", err.server_error_value())))
            }
        }
    }
}

/// What a front end that checks the proof itself was shown (SSH): a public key whose
/// signature it verified, or the password itself.
#[derive(Clone, Copy)]
pub(crate) enum Credential<'c> {
    /// A key the client proved it holds.
    Key(&'c russh::keys::PublicKey),
    /// The password, as the client sent it.
    Password(&'c str),
}

impl Credential<'_> {
    fn method(&self) -> &'static str {
        match self {
            Credential::Key(_) => "public key",
            Credential::Password(_) => "password",
        }
    }
}

/// Whether `name` has `key` among their SSH keys, for a client asking before it signs
/// (`SSH_MSG_USERAUTH_REQUEST` without a signature). Not a login: nothing is counted, and an
/// unknown name answers as a known one without the key does.
pub(crate) async fn has_key(shared: &Shared, name: &str, key: &russh::keys::PublicKey) -> bool {
    let Ok(name) = Username::parse(name) else {
        return false;
    };
    match shared.users.user(&name).await {
        Ok(Some(record)) => record.has_key(key),
        Ok(None) => false,
        Err(err) => {
            tracing::error!(error = %err, "user store failed; refusing a key");
            false
        }
    }
}

/// Logs `name` in with `credential` from `peer` over `front_end` (`sftp`): the delays and
/// lockouts of repeated failures, the audit and the limit of sessions hold as for SCRAM,
/// and an unknown name costs what a known one does (a mock verifier is derived for a
/// password) and fails alike.
pub(crate) async fn check<'a>(
    shared: &'a Arc<Shared>,
    peer: SocketAddr,
    name: &str,
    credential: Credential<'_>,
    front_end: &str,
) -> Result<Proven<'a>, Refusal> {
    let claim = Claim::look_up(shared, peer, name).await?;
    let proven = match credential {
        Credential::Key(key) => claim.record.as_ref().is_some_and(|user| user.has_key(key)),
        Credential::Password(password) => {
            // The same derivation for every name: a mock verifier for an unknown one.
            let verifier = claim.verifier(shared);
            let password = password.to_owned();
            let matched =
                tokio::task::spawn_blocking(move || verifier.matches_password(&password)).await;
            matched.unwrap_or(false)
        }
    };
    if proven && claim.admissible() {
        return claim.admit(shared, peer, String::new(), front_end);
    }
    let reason = format!("{front_end}: {}", credential.method());
    claim.fail(shared, peer, &reason).await;
    Err(Refusal::Error(
        ErrorCode::AuthFailed,
        "authentication failed".into(),
    ))
}

/// A user who proved who they are, holding a place under their limit of sessions; the
/// login succeeds once the front end has what it needs.
pub(crate) struct Proven<'a> {
    shared: &'a Arc<Shared>,
    peer: SocketAddr,
    user: Username,
    place: Place<Username>,
    /// The server-final message (the server's signature) to send.
    server_final: String,
    /// The front end they came by (`native`, `chat`, `sftp`), for the audit.
    front_end: String,
}

/// A logged-in user, holding their place under the limit of sessions until dropped.
pub(crate) struct LoggedIn {
    pub(crate) user: Username,
    /// Held, never read: dropping it gives the place back.
    _place: Place<Username>,
    /// The server-final message to send.
    pub(crate) server_final: String,
}

impl<'a> Proven<'a> {
    /// The login succeeds with the user's files open: success is announced only once the
    /// home is ready, so a client that has seen it can rely on its home existing. `via`
    /// names the front end in the audit of what they do.
    pub(crate) async fn open_files(
        self,
        via: &'static str,
    ) -> Result<(LoggedIn, UserFiles), Refusal> {
        let tree = match self.shared.storage.open_home(&self.user).await {
            Ok(tree) => tree,
            Err(err) => {
                tracing::error!(user = %self.user, error = %err, "cannot open home directory");
                return Err(Refusal::Error(err.code, err.message));
            }
        };
        let files = UserFiles {
            user: self.user.clone(),
            peer: self.peer,
            tree,
            shared: Arc::clone(self.shared),
            via,
        };
        Ok((self.succeeded(), files))
    }

    /// The login succeeds without files (the chat).
    pub(crate) fn without_files(self) -> LoggedIn {
        self.succeeded()
    }

    fn succeeded(self) -> LoggedIn {
        let (user, peer) = (&self.user, self.peer);
        tracing::info!(%user, %peer, "login succeeded");
        let mut record = Record::new("login", user.as_str(), peer, "ok");
        if !self.front_end.is_empty() {
            record.detail = Some(self.front_end.clone());
        }
        self.shared.audit(&record);
        LoggedIn {
            user: self.user,
            _place: self.place,
            server_final: self.server_final,
        }
    }
}

/// Counts a failed login (by `name` if it could be a user's) and logs any lockout it
/// starts. `shown` is the claimed name as logs may show it.
async fn record_failure(shared: &Shared, name: Option<&Username>, shown: &str, peer: SocketAddr) {
    if let Some(locked) = shared.guard.record_failure(name, peer.ip()).await {
        let mut record = Record::new("lockout", shown, peer, "locked");
        record.detail = Some(format!("address {locked}"));
        shared.audit(&record);
        let policy = shared.limits.lockout;
        tracing::warn!(
            %peer,
            address = %locked,
            failures = policy.max_failures,
            minutes = policy.lockout.as_secs() / 60,
            "address locked out after repeated failed logins"
        );
    }
}
