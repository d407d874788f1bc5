//! The SSH keys a logged-in user manages themselves (`ftpc keys`), kept by the user store
//! beside their verifier, in force for the next SFTP login; each change audited.

use std::net::SocketAddr;

use super::Outcome;
use crate::authorized_key::AuthorizedKey;
use crate::commands::ErrorCode;
use crate::error::{StorageError, UserDbError};
use crate::server::audit::Record;
use crate::server::shared::Shared;
use crate::username::Username;

/// One user's SSH keys, as they reach them.
pub(crate) struct UserKeys<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) user: &'a Username,
    pub(crate) peer: SocketAddr,
}

/// A refusal of the user store, as a client is told it.
fn refusal(err: UserDbError) -> StorageError {
    let code = match &err {
        UserDbError::KeyExists { .. } => ErrorCode::AlreadyExists,
        UserDbError::NoSuchKey { .. } | UserDbError::NoSuchUser(_) => ErrorCode::NotFound,
        UserDbError::TooManyKeys(_) => ErrorCode::QuotaExceeded,
        UserDbError::Key(_) => ErrorCode::Unsupported,
        UserDbError::Database(_) | UserDbError::Io { .. } => ErrorCode::Busy,
        UserDbError::Corrupt { .. } | UserDbError::UserExists(_) | UserDbError::NoFile(_) => {
            ErrorCode::Internal
        }
    };
    if code == ErrorCode::Busy || code == ErrorCode::Internal {
        tracing::error!(error = %err, "cannot change a user's keys");
        return StorageError::new(
            code,
            "the user database cannot be changed now; try again later",
        );
    }
    StorageError::new(code, err.to_string())
}

impl UserKeys<'_> {
    /// The user's keys, in the order they were added.
    pub(crate) async fn list(&self) -> Outcome<Vec<AuthorizedKey>> {
        match self.shared.users.user(self.user).await {
            Ok(Some(record)) => Ok(record.keys),
            Ok(None) => Err(refusal(UserDbError::NoSuchUser(self.user.to_string()))),
            Err(err) => Err(refusal(err)),
        }
    }

    /// Adds the key on `line` (a `.pub` file's line).
    pub(crate) async fn add(&self, line: &str) -> Outcome<AuthorizedKey> {
        let result = async {
            let key = AuthorizedKey::parse(line).map_err(|e| refusal(e.into()))?;
            self.admin()?
                .add_key(self.user, key.clone())
                .await
                .map_err(refusal)?;
            Ok(key)
        }
        .await;
        self.audit("addkey", result.as_ref().map(AuthorizedKey::fingerprint));
        result
    }

    /// Removes the key with `fingerprint`.
    pub(crate) async fn remove(&self, fingerprint: &str) -> Outcome<AuthorizedKey> {
        let result = async {
            self.admin()?
                .remove_key(self.user, fingerprint)
                .await
                .map_err(refusal)
        }
        .await;
        self.audit("delkey", result.as_ref().map(AuthorizedKey::fingerprint));
        result
    }

    fn admin(&self) -> Outcome<&dyn crate::server::users::UserAdmin> {
        self.shared.admin.as_deref().ok_or_else(|| {
            StorageError::new(
                ErrorCode::Unsupported,
                "this server's users cannot be changed from a session",
            )
        })
    }

    fn audit(&self, event: &str, result: Result<String, &StorageError>) {
        let (outcome, detail) = match result {
            Ok(fingerprint) => ("ok".to_owned(), fingerprint),
            Err(err) => (format!("{:?}", err.code), err.message.clone()),
        };
        let (user, peer) = (self.user, self.peer);
        tracing::info!(%user, %peer, event, result = %outcome, "keys");
        let mut record = Record::new(event, user.as_str(), peer, outcome);
        record.detail = Some(detail);
        self.shared.audit(&record);
    }
}
