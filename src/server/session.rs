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

use super::handler;
use super::login::{self, busy_reply};
use super::shared::Shared;
use crate::commands::{ErrorCode, Hello, Request, Response};
use crate::error::{Error, Result};
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

/// How long a closing connection may take to receive its last error reply.
const LINGER: Duration = Duration::from_secs(2);

/// Tells a connection over a limit that the server is busy (unless that went out with the
/// greeting already), and closes it.
pub(crate) async fn refuse_busy<S>(stream: S, reason: &str, greeting: Greeting)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = Connection::new(stream);
    let reply = async {
        match greeting {
            Greeting::ToSend => login::send_greeting(&mut conn, &busy_reply(reason)).await,
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
    shared: &Arc<Shared>,
    cancel: &CancellationToken,
    greeting: Greeting,
) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let login = async {
        let binding = shared.tls.as_ref().map(|tls| &tls.binding[..]);
        match greeting {
            Greeting::ToSend => {
                let offered = login::mechanisms(binding.is_some(), &shared.limits);
                login::hello(conn, offered).await?;
            }
            Greeting::Sent => login::their_hello(conn).await?,
        }
        let Some(proven) = login::login(conn, peer, shared, binding).await? else {
            return Ok(None);
        };
        login::succeed(conn, proven.open_files("native").await).await
    };
    let user = tokio::select! {
        result = tokio::time::timeout(shared.limits.login_timeout, login) => {
            result.map_err(|_| Error::Timeout)??
        }
        () = cancel.cancelled() => return Ok(()),
    };
    // The user's place under their limit of sessions is held until the connection ends.
    let Some((_logged_in, files)) = user else {
        return Ok(());
    };
    let handler = handler::Handler { files };
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
            tracing::debug!(user = %handler.files.user, %peer, "client left");
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
            match handler.files.transfer_slot() {
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
