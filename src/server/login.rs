//! The native protocol's greeting and login, shared by the file service and the chat:
//! hellos are exchanged, the mechanisms offered, SCRAM run until a user is authenticated
//! (with lockout, audit and no user enumeration) and their home opened.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

use super::Shared;
use super::audit::Record;
use super::counters::Place;
use super::storage::UserTree;
use crate::auth::{self, ClientFirstMessage, ServerExchange, Verifier};
use crate::commands::{ErrorCode, Hello, MAGIC, PROTOCOL_VERSION, Request, Response};
use crate::error::{Error, Result};
use crate::username::Username;
use crate::wire::{self, Connection};

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

/// The mechanisms offered, most preferred first: channel binding only over TLS, and over
/// TLS nothing else unless the admin allows logins without it.
fn offered(tls: bool, limits: &super::Limits) -> Vec<String> {
    let mut names = Vec::new();
    if tls {
        names.push(auth::MECHANISM_PLUS.to_owned());
    }
    if !tls || !limits.require_channel_binding {
        names.push(auth::MECHANISM.to_owned());
    }
    names
}

/// The answer to [`Request::Mechanisms`].
pub(super) fn mechanisms(tls: bool, limits: &super::Limits) -> Response {
    Response::Mechanisms {
        names: offered(tls, limits),
    }
}

/// What a connection over a limit is told right behind our hello.
pub(crate) fn busy_reply(reason: &str) -> Response {
    Response::Error {
        code: ErrorCode::Busy,
        message: format!("server busy: {reason}; try again later"),
    }
}

/// Who logged in, their tree, and their place under the per-user session limit.
pub(super) type LoggedIn = (Username, Arc<dyn UserTree>, Place<Username>);

/// Exchanges hellos: ours goes first, with the mechanisms offered (`offered`, from
/// [`mechanisms`]) right behind it, so a client learns them without asking; then theirs is
/// checked.
pub(super) async fn hello<S>(conn: &mut Connection<S>, offered: Response) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    send_greeting(conn, &offered).await?;
    their_hello(conn).await
}

/// Sends the greeting on the stream itself: our hello, then `second`, in one write (the
/// bytes [`greeting`] makes for a TLS handshake to carry).
pub(super) async fn send_greeting<S>(conn: &mut Connection<S>, second: &Response) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    conn.feed(&Hello::ours()).await?;
    conn.write(second).await
}

/// Reads the client's hello and checks that it speaks our protocol, in our version.
pub(super) async fn their_hello<S>(conn: &mut Connection<S>) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let theirs: Hello = conn.expect().await?;
    if theirs.magic != MAGIC {
        return Err(Error::BadMagic);
    }
    if theirs.version != PROTOCOL_VERSION {
        return Err(Error::VersionMismatch {
            client: theirs.version,
            server: PROTOCOL_VERSION,
        });
    }
    Ok(())
}

/// Runs SCRAM until a user is authenticated (`Some`, with their home open) or the attempt
/// failed (`None`, after the failure was answered). Requests other than login are refused,
/// not served. Success is announced only once the home is ready, so a client that has seen
/// it can rely on its home existing.
pub(super) async fn login<S>(
    conn: &mut Connection<S>,
    peer: SocketAddr,
    shared: &Shared,
    binding: Option<&[u8]>,
) -> Result<Option<LoggedIn>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mechanism, client_first) = loop {
        match conn.expect::<Request>().await? {
            Request::AuthStart { mechanism, message } => break (mechanism, message),
            Request::Mechanisms => {
                conn.write(&mechanisms(binding.is_some(), &shared.limits))
                    .await?;
            }
            Request::AuthFinish { .. } => {
                return Err(Error::Remote {
                    code: ErrorCode::UnexpectedRequest,
                    message: "AuthFinish before AuthStart".into(),
                });
            }
            Request::Mkdir { .. }
            | Request::List { .. }
            | Request::Stat { .. }
            | Request::Remove { .. }
            | Request::Rmdir { .. }
            | Request::Rename { .. }
            | Request::PutStart { .. }
            | Request::PutData { .. }
            | Request::PutFinish { .. }
            | Request::Get { .. }
            | Request::Checksum { .. }
            | Request::Usage
            | Request::Put { .. }
            | Request::ListTree { .. }
            | Request::Symlink { .. }
            | Request::ReadLink { .. } => {
                conn.write(&Response::Error {
                    code: ErrorCode::AuthRequired,
                    message: "log in first".into(),
                })
                .await?;
            }
        }
    };
    if mechanism != auth::MECHANISM && mechanism != auth::MECHANISM_PLUS {
        conn.write(&Response::Error {
            code: ErrorCode::AuthFailed,
            message: format!(
                "unsupported mechanism \"{}\"; this server offers {}",
                crate::sanitize::for_log(&mechanism),
                offered(binding.is_some(), &shared.limits).join(", ")
            ),
        })
        .await?;
        return Ok(None);
    }
    let parsed = ClientFirstMessage::parse(&client_first).and_then(|first| {
        ServerExchange::check_binding(&first, &mechanism, binding)?;
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
            let message = format!("e={}", err.server_error_value());
            conn.write(&Response::AuthOutcome { message }).await?;
            return Ok(None);
        }
    };
    // A name that cannot be a user's (too long, odd characters) is neither stored nor
    // logged as sent: only its escaped start. It gets the same exchange and answer as a
    // wrong password.
    let name = Username::parse(&first.username).ok();
    let shown = match &name {
        Some(name) => name.as_str().to_owned(),
        None => crate::sanitize::for_log(&first.username),
    };
    // Slow down whoever failed recently; a lockout is decided here but only shows as the
    // same failure a wrong password gets, after the same exchange. The user and the
    // iteration counts (for a mock) are looked up meanwhile, for every name alike: an
    // unknown name costs no other work than a known one, so the time tells nothing.
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
    // Unknown or impossible names get a mock verifier: the exchange looks the same and
    // fails at the proof, exactly as a wrong password does.
    let known = match (&name, looked_up) {
        (Some(name), Some(found)) => match found {
            Ok(Some(record)) => Some((name.clone(), record.verifier)),
            Ok(None) => None,
            Err(err) => {
                // The same answer whatever the name, so it tells nothing about users.
                tracing::error!(error = %err, "user store failed; refusing login");
                conn.write(&Response::Error {
                    code: ErrorCode::Busy,
                    message: "server busy: the user database is unavailable; try again later"
                        .into(),
                })
                .await?;
                return Ok(None);
            }
        },
        _ => None,
    };
    let verifier = match &known {
        Some((_, verifier)) => verifier.clone(),
        None => {
            let counts = counts.unwrap_or_default();
            let key = name.as_ref().map_or("", Username::as_str);
            Verifier::mock(&shared.secret, key, &counts)
        }
    };
    let (exchange, server_first) = ServerExchange::start(first, verifier, binding);
    conn.write(&Response::AuthChallenge {
        message: server_first,
    })
    .await?;
    let client_final = match conn.expect::<Request>().await? {
        Request::AuthFinish { message } => message,
        _ => {
            return Err(Error::Remote {
                code: ErrorCode::UnexpectedRequest,
                message: "expected AuthFinish".into(),
            });
        }
    };
    match (exchange.finish(&client_final), known) {
        (Ok(server_final), Some((name, _))) if !verdict.locked => {
            let max = shared.limits.max_sessions_per_user;
            let Some(user_slot) = shared.per_user.try_acquire(&name, max) else {
                tracing::warn!(user = %name, %peer, limit = max, "too many sessions; refusing");
                conn.write(&Response::Error {
                    code: ErrorCode::Busy,
                    message: format!("{name} already has {max} sessions open; close one first"),
                })
                .await?;
                return Ok(None);
            };
            let tree = match shared.storage.open_home(&name).await {
                Ok(tree) => tree,
                Err(err) => {
                    tracing::error!(user = %name, error = %err, "cannot open home directory");
                    let (code, message) = (err.code, err.message);
                    conn.write(&Response::Error { code, message }).await?;
                    return Ok(None);
                }
            };
            tracing::info!(user = %name, %peer, "login succeeded");
            shared.audit(&Record::new("login", name.as_str(), peer, "ok"));
            // Only now may frames be large (uploads, messages).
            conn.set_read_limit(wire::MAX_FRAME_LEN);
            conn.write(&Response::AuthOutcome {
                message: server_final,
            })
            .await?;
            Ok(Some((name, tree, user_slot)))
        }
        (result, _) => {
            let err = result
                .err()
                .unwrap_or(auth::ScramError::AuthenticationFailed);
            let user = &shown;
            if verdict.locked {
                tracing::warn!(%user, %peer, "login refused: locked out after repeated failures");
            } else {
                tracing::warn!(%user, %peer, reason = %err, "login failed");
            }
            let result = if verdict.locked { "locked" } else { "failed" };
            let mut record = Record::new("login", &shown, peer, result);
            record.detail = Some(err.to_string());
            shared.audit(&record);
            record_failure(shared, name.as_ref(), &shown, peer).await;
            let message = format!("e={}", err.server_error_value());
            conn.write(&Response::AuthOutcome { message }).await?;
            Ok(None)
        }
    }
}
