//! One connection, as a small state machine: hello, then login (nothing but the login
//! requests is served before it succeeds), then commands until the peer leaves, idles out
//! or the server shuts down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::StreamExt;
use futures_util::future::Either;
use futures_util::stream::FuturesOrdered;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::audit::Record;
use super::counters::Slot;
use super::handler;
use super::storage::UserTree;
use crate::auth::{self, ClientFirstMessage, ServerExchange, Verifier};
use crate::commands::{ErrorCode, Hello, MAGIC, PROTOCOL_VERSION, Request, Response};
use crate::error::{Error, Result};
use crate::username::Username;
use crate::wire::{self, Connection};

/// Whether the server's greeting (its hello and, right behind it, the mechanisms offered or
/// that it is busy) is still to be sent, or already left with the TLS handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Greeting {
    /// The session sends it first.
    ToSend,
    /// It went out already.
    Sent,
}

/// The greeting's bytes: our hello, then `second` (the mechanisms, or a busy reply).
///
/// # Errors
/// Encoding errors (none for these messages).
pub(crate) fn greeting(second: &Response) -> Result<BytesMut> {
    let mut bytes = BytesMut::new();
    wire::append_frame(&Hello::ours(), &mut bytes)?;
    wire::append_frame(second, &mut bytes)?;
    Ok(bytes)
}

/// Serves one connection to its end; errors are logged, and answered where the peer can
/// still hear it.
pub(crate) async fn run<S>(
    stream: S,
    peer: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    greeting: Greeting,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = Connection::new(stream);
    conn.set_write_deadline(Some(shared.limits.stall_timeout));
    conn.set_read_limit(wire::LOGIN_FRAME_LEN);
    if let Err(err) = serve(&mut conn, peer, &shared, &cancel, greeting).await {
        if matches!(err, Error::ConnectionClosed) {
            tracing::info!(%peer, "client left in the middle of an exchange");
            return;
        }
        tracing::warn!(%peer, error = %err, "closing connection");
        if let Some((code, message)) = reply_for(&err) {
            let reply = Response::Error { code, message };
            if let Ok(Ok(())) = tokio::time::timeout(LINGER, conn.write(&reply)).await {
                conn.linger_close(LINGER).await;
            }
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

/// How long a closing connection may take to receive its last error reply.
const LINGER: Duration = Duration::from_secs(2);

/// What a connection over a limit is told right behind our hello.
pub(crate) fn busy_reply(reason: &str) -> Response {
    Response::Error {
        code: ErrorCode::Busy,
        message: format!("server busy: {reason}; try again later"),
    }
}

/// Tells a connection over a limit that the server is busy (unless that went out with the
/// greeting already), and closes it.
pub(crate) async fn refuse_busy<S>(stream: S, reason: &str, greeting: Greeting)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = Connection::new(stream);
    let reply = async {
        match greeting {
            Greeting::ToSend => send_greeting(&mut conn, &busy_reply(reason)).await,
            Greeting::Sent => Ok(()),
        }
    };
    if tokio::time::timeout(LINGER, reply).await.is_ok() {
        conn.linger_close(LINGER).await;
    }
}

/// The reply a peer gets before we close on `err`, if it can still hear one.
fn reply_for(err: &Error) -> Option<(ErrorCode, String)> {
    match err {
        Error::Io(_) | Error::ConnectionClosed | Error::TruncatedFrame => None,
        _ => Some(err.to_reply()),
    }
}

async fn serve<S>(
    conn: &mut Connection<S>,
    peer: SocketAddr,
    shared: &Shared,
    cancel: &CancellationToken,
    greeting: Greeting,
) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let login = async {
        let binding = shared.tls.as_ref().map(|tls| &tls.binding[..]);
        match greeting {
            Greeting::ToSend => hello(conn, mechanisms(binding.is_some(), &shared.limits)).await?,
            Greeting::Sent => their_hello(conn).await?,
        }
        login(conn, peer, shared, binding).await
    };
    let user = tokio::select! {
        result = tokio::time::timeout(shared.limits.login_timeout, login) => {
            result.map_err(|_| Error::Timeout)??
        }
        () = cancel.cancelled() => return Ok(()),
    };
    // The user's session slot is held until the connection ends.
    let Some((user, tree, _user_slot)) = user else {
        return Ok(());
    };
    let handler = handler::Handler {
        user,
        peer,
        tree,
        shared,
    };
    // Whole-file uploads run several at once (their disk syncs overlap), answered in the
    // order they came; any other request first waits for them to be answered. They share
    // one place among the transfers, held while any is in flight.
    let mut puts = FuturesOrdered::new();
    let mut puts_bytes = 0usize;
    let mut puts_slot = None;
    loop {
        let room = puts.len() < PIPELINED_PUTS && puts_bytes < PIPELINED_PUT_BYTES;
        let request = tokio::select! {
            // Shutdown first: once it has begun, no new request is started.
            biased;
            () = cancel.cancelled() => {
                conn.write_each((&mut puts).map(|(reply, _)| reply)).await?;
                return Ok(());
            }
            Some((reply, len)) = puts.next(), if !puts.is_empty() => {
                puts_bytes -= len;
                if puts.is_empty() {
                    puts_slot = None;
                }
                conn.write(&reply).await?;
                continue;
            }
            read = tokio::time::timeout(shared.limits.idle_timeout, conn.read::<Request>()), if room => {
                match read.map_err(|_| Error::Timeout).and_then(|read| read) {
                    Ok(request) => request,
                    Err(err) => {
                        // The uploads already read still finish (or fail) whole; their
                        // answers go out if the connection can still carry them.
                        let _ = conn.write_each((&mut puts).map(|(reply, _)| reply)).await;
                        return Err(err);
                    }
                }
            }
        };
        let Some(request) = request else {
            conn.write_each((&mut puts).map(|(reply, _)| reply)).await?;
            tracing::debug!(user = %handler.user, %peer, "client left");
            return Ok(());
        };
        let Request::Put {
            path,
            overwrite,
            preserve,
            data,
            checksum,
        } = request
        else {
            conn.write_each((&mut puts).map(|(reply, _)| reply)).await?;
            (puts_bytes, puts_slot) = (0, None);
            handler.apply(request, conn).await?;
            continue;
        };
        if puts_slot.is_none() {
            match handler.transfer_slot() {
                Ok(slot) => puts_slot = Some(slot),
                Err(err) => {
                    let refused = Response::Error {
                        code: err.code,
                        message: err.message,
                    };
                    puts.push_back(Either::Right(std::future::ready((refused, 0))));
                    continue;
                }
            }
        }
        let len = data.len();
        puts_bytes += len;
        let handler = &handler;
        puts.push_back(Either::Left(async move {
            let reply = handler
                .put_whole(path, overwrite, preserve, data, checksum)
                .await;
            (reply, len)
        }));
    }
}

/// Whole-file uploads a session may have in flight at once...
const PIPELINED_PUTS: usize = 64;
/// ...and bytes of them (memory per session stays bounded whatever the client sends).
const PIPELINED_PUT_BYTES: usize = 4 << 20;

/// Who logged in, their tree, and their place under the per-user session limit.
pub(super) type LoggedIn = (Username, Arc<dyn UserTree>, Slot<Username>);

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
async fn send_greeting<S>(conn: &mut Connection<S>, second: &Response) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    conn.feed(&Hello::ours()).await?;
    conn.write(second).await
}

/// Reads the client's hello and checks that it speaks our protocol, in our version.
async fn their_hello<S>(conn: &mut Connection<S>) -> Result<()>
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
