//! The native protocol's greeting and login, shared by the file service and the chat:
//! hellos are exchanged, the mechanisms offered, and SCRAM's messages carried in frames to
//! and from the core's login ([`super::core::login`]: lockout, audit, no user
//! enumeration), until a user is proven and has what their front end needs.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

use super::core::login::{LoggedIn, Proven, Refusal, Scram};
use super::shared::Shared;
use crate::commands::{ErrorCode, Hello, MAGIC, PROTOCOL_VERSION, Request, Response};
use crate::error::{Error, Result};
use crate::wire::{self, Connection};

/// The answer to [`Request::Mechanisms`].
pub(super) fn mechanisms(tls: bool, limits: &super::config::Limits) -> Response {
    Response::Mechanisms {
        names: super::core::login::offered(tls, limits),
    }
}

/// What a connection over a limit is told right behind our hello.
pub(crate) fn busy_reply(reason: &str) -> Response {
    Response::Error {
        code: ErrorCode::Busy,
        message: format!("server busy: {reason}; try again later"),
    }
}

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

/// Runs SCRAM until a user has proven who they are (`Some`) or the attempt failed
/// (`None`, after the failure was answered). Requests other than login are refused, not
/// served. The success is not announced yet: see [`succeed`].
pub(super) async fn login<'a, S>(
    conn: &mut Connection<S>,
    peer: SocketAddr,
    shared: &'a Arc<Shared>,
    binding: Option<&[u8]>,
) -> Result<Option<Proven<'a>>>
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
            | Request::ReadLink { .. }
            | Request::Keys
            | Request::AddKey { .. }
            | Request::DeleteKey { .. } => {
                conn.write(&Response::Error {
                    code: ErrorCode::AuthRequired,
                    message: "log in first".into(),
                })
                .await?;
            }
        }
    };
    let begun = Scram::begin(shared, peer, &mechanism, &client_first, binding).await;
    let scram = match begun {
        Ok((scram, server_first)) => {
            conn.write(&Response::AuthChallenge {
                message: server_first,
            })
            .await?;
            scram
        }
        Err(refusal) => return refuse(conn, refusal).await,
    };
    let client_final = match conn.expect::<Request>().await? {
        Request::AuthFinish { message } => message,
        _ => {
            return Err(Error::Remote {
                code: ErrorCode::UnexpectedRequest,
                message: "expected AuthFinish".into(),
            });
        }
    };
    match scram.finish(&client_final).await {
        Ok(proven) => Ok(Some(proven)),
        Err(refusal) => refuse(conn, refusal).await,
    }
}

/// Answers a refused login.
async fn refuse<S, T>(conn: &mut Connection<S>, refusal: Refusal) -> Result<Option<T>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let reply = match refusal {
        Refusal::Scram(message) => Response::AuthOutcome { message },
        Refusal::Error(code, message) => Response::Error { code, message },
    };
    conn.write(&reply).await?;
    Ok(None)
}

/// Announces a login that succeeded (`Ok`) or answers why it did not, now that the front
/// end has what it needs (`Err`: a home that cannot be opened): `Some` thing on success.
pub(super) async fn succeed<S, T>(
    conn: &mut Connection<S>,
    outcome: std::result::Result<(LoggedIn, T), Refusal>,
) -> Result<Option<(LoggedIn, T)>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (logged_in, what) = match outcome {
        Ok(done) => done,
        Err(refusal) => return refuse(conn, refusal).await,
    };
    // Only now may frames be large (uploads, messages).
    conn.set_read_limit(wire::MAX_FRAME_LEN);
    conn.write(&Response::AuthOutcome {
        message: logged_in.server_final.clone(),
    })
    .await?;
    Ok(Some((logged_in, what)))
}
