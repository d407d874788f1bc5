//! The user's SSH keys for SFTP, managed over the native protocol after the SCRAM login
//! (`ftpc keys`). What the server sends back is parsed as any key line is: a line that is
//! not a key is a broken reply, never shown raw.

use tokio::io::{AsyncRead, AsyncWrite};

use super::Client;
use crate::authorized_key::AuthorizedKey;
use crate::commands::{Request, Response};
use crate::error::{Error, Result};

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// The SSH keys the user logs in to SFTP with.
    ///
    /// # Errors
    /// I/O, the server's refusal, or a key line that does not parse.
    pub async fn keys(&mut self) -> Result<Vec<AuthorizedKey>> {
        match self.raw_request(&Request::Keys).await? {
            Response::Keys { keys } => keys
                .iter()
                .map(|line| {
                    AuthorizedKey::parse(line)
                        .map_err(|_| Error::UnexpectedReply("a key line that is not a key"))
                })
                .collect(),
            _ => Err(Error::UnexpectedReply("expected the keys")),
        }
    }

    /// Adds `key` to the user's.
    ///
    /// # Errors
    /// I/O, or the server's refusal (the key already there, too many keys).
    pub async fn add_key(&mut self, key: &AuthorizedKey) -> Result<()> {
        self.send(&Request::AddKey { key: key.to_line() }).await?;
        self.expect_ok().await
    }

    /// Removes the user's key with `fingerprint`.
    ///
    /// # Errors
    /// I/O, or the server's refusal (no such key).
    pub async fn delete_key(&mut self, fingerprint: &str) -> Result<()> {
        self.send(&Request::DeleteKey {
            fingerprint: fingerprint.to_owned(),
        })
        .await?;
        self.expect_ok().await
    }
}
