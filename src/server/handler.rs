//! Serves one authenticated request against the user's tree. Every command is matched here
//! without a wildcard arm, so a new request variant does not compile until it is handled.

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};

use super::storage::UserTree;
use crate::commands::{ENTRIES_PER_FRAME, ErrorCode, Request, Response};
use crate::error::{Error, Result, StorageError};
use crate::paths::RemotePath;
use crate::username::Username;
use crate::wire::Connection;

/// Applies `request` and writes its response(s). Refusals are responses; only failures of
/// the connection itself are errors.
pub(super) async fn apply<S>(
    request: Request,
    user: &Username,
    peer: SocketAddr,
    tree: &dyn UserTree,
    conn: &mut Connection<S>,
) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match request {
        Request::AuthStart { .. } | Request::AuthFinish { .. } => {
            conn.write(&Response::Error {
                code: ErrorCode::UnexpectedRequest,
                message: "already logged in".into(),
            })
            .await
        }
        Request::Mkdir { path, parents } => {
            let result = match RemotePath::parse(&path) {
                Ok(remote) => tree.mkdir(&remote, parents).await,
                Err(err) => Err(invalid_path(err)),
            };
            log(user, peer, "mkdir", &path, &result);
            conn.write(&done(result)).await
        }
        Request::List { path } => {
            let result = match RemotePath::parse(&path) {
                Ok(remote) => tree.list(&remote).await,
                Err(err) => Err(invalid_path(err)),
            };
            log(user, peer, "ls", &path, &result);
            match result {
                Ok(entries) => {
                    for batch in entries.chunks(ENTRIES_PER_FRAME) {
                        conn.write(&Response::Entries {
                            entries: batch.to_vec(),
                        })
                        .await?;
                    }
                    conn.write(&Response::Ok).await
                }
                Err(err) => conn.write(&done::<()>(Err(err))).await,
            }
        }
    }
}

fn invalid_path(err: crate::error::PathError) -> StorageError {
    let (code, message) = Error::Path(err).to_reply();
    StorageError::new(code, message)
}

fn done<T>(result: std::result::Result<T, StorageError>) -> Response {
    match result {
        Ok(_) => Response::Ok,
        Err(err) => Response::Error {
            code: err.code,
            message: err.message,
        },
    }
}

fn log<T>(
    user: &Username,
    peer: SocketAddr,
    command: &str,
    path: &str,
    result: &std::result::Result<T, StorageError>,
) {
    match result {
        Ok(_) => tracing::info!(%user, %peer, command, path = %path.escape_debug(), "ok"),
        Err(err) => {
            tracing::info!(%user, %peer, command, path = %path.escape_debug(), code = ?err.code, error = %err, "refused")
        }
    }
}
