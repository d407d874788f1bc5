//! The native protocol's requests once logged in, each turned into a call of the core
//! ([`UserFiles`]) and its answer into frames. Every request is matched here without a
//! wildcard arm, so a new variant does not compile until it is handled. Refusals are
//! responses; only failures of the connection itself end the session.

use std::time::Instant;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

use super::core::keys::UserKeys;
use super::core::transfers::PutInProgress;
use super::core::{Outcome, UserFiles};
use crate::authorized_key::AuthorizedKey;
use crate::checksum::Digest;
use crate::commands::{Attributes, ErrorCode, MAX_CHUNK, Request, Response};
use crate::error::{Error, Result, StorageError};
use crate::wire::Connection;

/// One logged-in user's session of the native protocol.
pub(super) struct Handler {
    pub(super) files: UserFiles,
}

impl Handler {
    /// The user's SSH keys, as they manage them themselves.
    fn keys(&self) -> UserKeys<'_> {
        UserKeys {
            shared: &self.files.shared,
            user: &self.files.user,
            peer: self.files.peer,
        }
    }
}

/// The answer to a request that succeeds with nothing to say, or its refusal.
fn reply<T>(result: Outcome<T>) -> Response {
    match result {
        Ok(_) => Response::Ok,
        Err(err) => refusal(err),
    }
}

fn refusal(err: StorageError) -> Response {
    Response::Error {
        code: err.code,
        message: err.message,
    }
}

fn unexpected(message: &str) -> Response {
    Response::Error {
        code: ErrorCode::UnexpectedRequest,
        message: message.into(),
    }
}

impl Handler {
    /// Applies `request` and writes its response(s).
    pub(super) async fn apply<S>(&self, request: Request, conn: &mut Connection<S>) -> Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let files = &self.files;
        match request {
            Request::AuthStart { .. } | Request::AuthFinish { .. } => {
                conn.write(&unexpected("already logged in")).await
            }
            Request::Mechanisms => {
                let tls = files.shared.tls.is_some();
                let limits = &files.shared.limits;
                conn.write(&super::login::mechanisms(tls, limits)).await
            }
            Request::PutData { .. } | Request::PutFinish { .. } => {
                conn.write(&unexpected("no upload in progress")).await
            }
            Request::Put {
                path,
                overwrite,
                preserve,
                data,
                checksum,
            } => {
                // The session pipelines these; one on its own still has a place to take.
                let reply = match files.transfer_slot() {
                    Ok(_slot) => {
                        self.put_whole(path, overwrite, preserve, data, checksum)
                            .await
                    }
                    Err(err) => refusal(err),
                };
                conn.write(&reply).await
            }
            Request::Mkdir { path, parents } => {
                conn.write(&reply(files.mkdir(&path, parents).await)).await
            }
            Request::List { path } => self.list(conn, &path, false).await,
            Request::ListTree { path } => self.list(conn, &path, true).await,
            Request::Stat { path } => match files.stat(&path).await {
                Ok(entry) => conn.write(&Response::Stat { entry }).await,
                Err(err) => conn.write(&refusal(err)).await,
            },
            Request::Remove { path, recursive } => {
                conn.write(&reply(files.remove(&path, recursive).await))
                    .await
            }
            Request::Rmdir { path } => conn.write(&reply(files.rmdir(&path).await)).await,
            Request::Rename {
                from,
                to,
                overwrite,
            } => {
                conn.write(&reply(files.rename(&from, &to, overwrite).await))
                    .await
            }
            Request::Usage => match files.usage().await {
                Ok((usage, quotas)) => {
                    conn.write(&Response::Usage {
                        used: usage.bytes,
                        quota: quotas.bytes,
                        entries: usage.entries,
                        max_entries: quotas.entries,
                    })
                    .await
                }
                Err(err) => conn.write(&refusal(err)).await,
            },
            Request::PutStart {
                path,
                size,
                overwrite,
                resume,
                preserve,
            } => {
                let put = files
                    .begin_put(&path, size, overwrite, resume, preserve)
                    .await;
                match put {
                    Ok(put) => self.receive(conn, put).await,
                    Err(err) => conn.write(&refusal(err)).await,
                }
            }
            Request::Get { path, offset } => self.send(conn, &path, offset).await,
            Request::Checksum { path } => match files.checksum(&path).await {
                Ok((size, checksum)) => conn.write(&Response::Checksum { size, checksum }).await,
                Err(err) => conn.write(&refusal(err)).await,
            },
            Request::Symlink { path, target } => {
                conn.write(&reply(files.symlink(&path, &target).await))
                    .await
            }
            Request::ReadLink { path } => match files.read_link(&path).await {
                Ok(target) => conn.write(&Response::Link { target }).await,
                Err(err) => conn.write(&refusal(err)).await,
            },
            Request::Keys => match self.keys().list().await {
                Ok(keys) => {
                    let keys = keys.iter().map(AuthorizedKey::to_line).collect();
                    conn.write(&Response::Keys { keys }).await
                }
                Err(err) => conn.write(&refusal(err)).await,
            },
            Request::AddKey { key } => conn.write(&reply(self.keys().add(&key).await)).await,
            Request::DeleteKey { fingerprint } => {
                conn.write(&reply(self.keys().remove(&fingerprint).await))
                    .await
            }
        }
    }

    /// A listing, page by page: one page in memory, however large the directory, and a
    /// reader that stops reading hits the write deadline.
    async fn list<S>(&self, conn: &mut Connection<S>, raw: &str, whole_tree: bool) -> Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut listed = match self.files.list(raw, whole_tree).await {
            Ok(listed) => listed,
            Err(err) => return conn.write(&refusal(err)).await,
        };
        loop {
            match listed.listing.next_page().await {
                Ok(Some(entries)) => conn.write(&Response::Entries { entries }).await?,
                Ok(None) => return conn.write(&Response::Ok).await,
                Err(err) => return conn.write(&refusal(err)).await,
            }
        }
    }

    /// Receives an upload: data frames until `PutFinish`, then the verdict. A failure while
    /// writing is remembered and answered at `PutFinish`, so the stream stays in step.
    async fn receive<S>(&self, conn: &mut Connection<S>, mut put: PutInProgress) -> Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let offset = put.offset();
        conn.write(&Response::PutReady { offset }).await?;
        let mut failure: Option<StorageError> = None;
        // An upload must make progress: frames that carry no data do not count.
        let stall = self.files.shared.limits.stall_timeout;
        let mut progressed = tokio::time::Instant::now();
        loop {
            let next = tokio::time::timeout_at(progressed + stall, conn.read::<Request>())
                .await
                .map_err(|_| Error::Timeout)
                .and_then(|read| read?.ok_or(Error::ConnectionClosed))
                .and_then(|request| match request {
                    Request::PutData { data } if data.is_empty() => {
                        if progressed.elapsed() >= stall {
                            Err(Error::Timeout)
                        } else {
                            Ok(Request::PutData { data })
                        }
                    }
                    other => Ok(other),
                });
            match next {
                Ok(Request::PutData { data }) => {
                    if !data.is_empty() {
                        progressed = tokio::time::Instant::now();
                    }
                    if failure.is_none()
                        && let Err(err) = put.write(data).await
                    {
                        failure = Some(err);
                    }
                }
                Ok(Request::PutFinish { checksum }) => {
                    let result = put.finish(checksum, failure).await;
                    return conn.write(&reply(result)).await;
                }
                Ok(_) => {
                    // Keep what arrived: the client can resume once it behaves.
                    put.interrupted().await;
                    return Err(Error::Remote {
                        code: ErrorCode::UnexpectedRequest,
                        message: "an upload is in progress: expected PutData or PutFinish".into(),
                    });
                }
                Err(err) => {
                    // The connection broke: keep the partial data for `put -c`.
                    put.interrupted().await;
                    return Err(err);
                }
            }
        }
    }

    /// A whole file in one request ([`Request::Put`]), at most one chunk; the answer.
    /// Several of a session's run at once (their disk syncs overlap); the session holds
    /// one place among the transfers for all of them.
    pub(super) async fn put_whole(
        &self,
        raw: String,
        overwrite: bool,
        preserve: Option<Attributes>,
        data: Bytes,
        checksum: Digest,
    ) -> Response {
        if data.len() > MAX_CHUNK {
            let err = StorageError::new(
                ErrorCode::UnexpectedRequest,
                format!("a Put carries at most {MAX_CHUNK} bytes; send larger files with PutStart"),
            );
            let size = data.len() as u64;
            self.files
                .record_put(&raw, size, 0, Instant::now(), &Err(err.clone()));
            return refusal(err);
        }
        let result = self
            .files
            .put_whole(raw, overwrite, preserve, data, checksum)
            .await;
        reply(result)
    }

    /// Sends a file from `offset`, then the checksum of all of it.
    async fn send<S>(&self, conn: &mut Connection<S>, raw: &str, offset: u64) -> Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut get = match self.files.begin_get(raw, offset).await {
            Ok(get) => get,
            Err(err) => return conn.write(&refusal(err)).await,
        };
        conn.write(&Response::GetReady {
            size: get.size(),
            offset,
            attributes: get.attributes(),
        })
        .await?;
        loop {
            match get.next_chunk().await {
                Ok(Some(data)) => conn.write(&Response::Data { data }).await?,
                Ok(None) => break,
                Err(err) => return conn.write(&refusal(err)).await,
            }
        }
        let checksum = get.done();
        conn.write(&Response::GetDone { checksum }).await
    }
}
