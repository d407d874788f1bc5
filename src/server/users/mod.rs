//! The users: who may log in, and the salted verifier each one proves against.
//!
//! [`UserStore`] is what a login reads, [`UserAdmin`] what the admin commands change; each
//! engine implements both, in a file of its own:
//! - `file`: `users.db`, the embedded default (format, locked atomic edits, hot reload);
//! - `postgres`: the same records in PostgreSQL, shared by every node.

pub mod file;
pub mod postgres;

use async_trait::async_trait;

use crate::auth::Verifier;
use crate::authorized_key::{AuthorizedKey, MAX_KEYS_PER_USER};
use crate::error::UserDbError;
use crate::username::Username;

/// Looks users up at login. Another engine (PostgreSQL, LDAP) implements this.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// The record of `name`, or `None` if there is no such user.
    ///
    /// # Errors
    /// The store could not be consulted.
    async fn user(&self, name: &Username) -> Result<Option<UserRecord>, UserDbError>;

    /// The record of `name` for a logged-in session's checks (quotas, whether the user
    /// still exists), asked for on every upload: a store may answer from what it remembers
    /// as long as it forgets a user the moment they change. Logins always use
    /// [`UserStore::user`].
    ///
    /// # Errors
    /// The store could not be consulted.
    async fn user_for_session(&self, name: &Username) -> Result<Option<UserRecord>, UserDbError> {
        self.user(name).await
    }

    /// Each iteration count the users' verifiers have, with how many have it: unknown
    /// names are answered with counts drawn from this, so a count does not tell a real
    /// user from an unknown name.
    ///
    /// # Errors
    /// The store could not be consulted.
    async fn iteration_counts(&self) -> Result<Vec<(u32, u64)>, UserDbError>;
}

/// One user's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The login name.
    pub name: Username,
    /// The salted verifier.
    pub verifier: Verifier,
    /// Most bytes the user may store, if limited.
    pub quota: Option<u64>,
    /// Most entries (files, directories, links) the user may have, if limited.
    pub files: Option<u64>,
    /// The SSH public keys the user logs in with over SFTP.
    pub keys: Vec<AuthorizedKey>,
}

impl UserRecord {
    /// A record without a quota.
    pub fn new(name: Username, verifier: Verifier) -> Self {
        UserRecord {
            name,
            verifier,
            quota: None,
            files: None,
            keys: Vec::new(),
        }
    }

    /// Whether `offered` is one of the user's SSH keys.
    pub fn has_key(&self, offered: &russh::keys::PublicKey) -> bool {
        self.keys.iter().any(|key| key.matches(offered))
    }

    /// Adds `key`, unless the user has it already or has as many as they may.
    ///
    /// # Errors
    /// [`UserDbError::KeyExists`], [`UserDbError::TooManyKeys`].
    pub fn add_key(&mut self, key: AuthorizedKey) -> Result<(), UserDbError> {
        if self
            .keys
            .iter()
            .any(|k| k.fingerprint() == key.fingerprint())
        {
            return Err(UserDbError::KeyExists {
                user: self.name.to_string(),
                fingerprint: key.fingerprint(),
            });
        }
        if self.keys.len() >= MAX_KEYS_PER_USER {
            return Err(UserDbError::TooManyKeys(self.name.to_string()));
        }
        self.keys.push(key);
        Ok(())
    }

    /// Removes the key with `fingerprint` (`SHA256:…`; the prefix may be left out).
    ///
    /// # Errors
    /// [`UserDbError::NoSuchKey`].
    pub fn remove_key(&mut self, fingerprint: &str) -> Result<AuthorizedKey, UserDbError> {
        let wanted = fingerprint.trim();
        let position = self.keys.iter().position(|k| {
            let have = k.fingerprint();
            have == wanted || have.strip_prefix("SHA256:") == Some(wanted)
        });
        match position {
            Some(index) => Ok(self.keys.remove(index)),
            None => Err(UserDbError::NoSuchKey {
                user: self.name.to_string(),
                fingerprint: crate::sanitize::for_log(wanted),
            }),
        }
    }
}

/// What the admin commands change, the same whichever engine keeps the users.
#[async_trait::async_trait]
pub trait UserAdmin: Send + Sync {
    /// Adds a user.
    async fn add(&self, record: UserRecord) -> Result<(), UserDbError>;
    /// Sets or clears a user's quota of bytes.
    async fn set_quota(&self, name: &Username, quota: Option<u64>) -> Result<(), UserDbError>;
    /// Sets or clears a user's quota of entries.
    async fn set_file_quota(&self, name: &Username, files: Option<u64>) -> Result<(), UserDbError>;
    /// Replaces a user's verifier.
    async fn set_verifier(&self, name: &Username, verifier: Verifier) -> Result<(), UserDbError>;
    /// Removes a user.
    async fn remove(&self, name: &Username) -> Result<(), UserDbError>;
    /// Adds an SSH key to a user's (as [`UserRecord::add_key`]).
    async fn add_key(&self, name: &Username, key: AuthorizedKey) -> Result<(), UserDbError>;
    /// Removes a user's SSH key by its fingerprint (as [`UserRecord::remove_key`]).
    async fn remove_key(
        &self,
        name: &Username,
        fingerprint: &str,
    ) -> Result<AuthorizedKey, UserDbError>;
    /// Every user.
    async fn users(&self) -> Result<Vec<UserRecord>, UserDbError>;
}
