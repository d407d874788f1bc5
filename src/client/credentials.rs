//! The credential cache `ftpc` keeps between runs: for each server, the user and the SCRAM
//! keys derived from the password (ClientKey, ServerKey, with the salt and iteration count
//! they are valid for). Never the password; but the keys log in as the user, so the file
//! is mode 0600 in a 0700 directory, and rewritten atomically.
//!
//! # Format
//! One login a line, the most recent last:
//! `<server> <user> <iterations> <salt b64> <ClientKey b64> <ServerKey b64> <transport>`,
//! where the transport is `tls`, `plaintext` or `ca:<path of the CA file>`; `#` comments.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use base64::prelude::{BASE64_STANDARD, Engine as _};

use super::private_file::write_private;
use super::tls::{KnownHosts, Security, UnknownServer};
use crate::auth::{ClientKeys, Key};
use crate::error::{Error, Result};
use crate::username::Username;

const HEADER: &str = "# ftpc saved logins: SCRAM keys derived from passwords (not the passwords).\n\
                      # They log in as these users: keep this file private. `ftpc logout` removes one.\n";

/// How a login reaches its server; chosen at `ftpc login`, reused by later commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// TLS with the certificate pinned in `known_hosts` (the default).
    Tls,
    /// TLS verified against the CA certificates in this PEM file (`--ca`).
    TlsCa(PathBuf),
    /// No TLS (`--plaintext`).
    Plaintext,
}

impl Transport {
    /// The security settings for a connection.
    pub fn security(&self, known_hosts: KnownHosts, unknown: UnknownServer) -> Security {
        match self {
            Transport::Tls => Security::Pinned {
                known_hosts,
                unknown,
            },
            Transport::TlsCa(path) => Security::Ca(path.clone()),
            Transport::Plaintext => Security::Plaintext,
        }
    }

    fn encode(&self) -> String {
        match self {
            Transport::Tls => "tls".into(),
            Transport::TlsCa(path) => format!("ca:{}", path.display()),
            Transport::Plaintext => "plaintext".into(),
        }
    }

    fn decode(text: &str) -> Option<Self> {
        match text {
            "tls" => Some(Transport::Tls),
            "plaintext" => Some(Transport::Plaintext),
            _ => text
                .strip_prefix("ca:")
                .map(|p| Transport::TlsCa(PathBuf::from(p))),
        }
    }
}

/// One saved login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedLogin {
    /// The server's address, as given to `--server`.
    pub server: String,
    /// Who is logged in there.
    pub user: Username,
    /// The cached keys.
    pub keys: ClientKeys,
    /// How to reach the server.
    pub transport: Transport,
}

/// The credentials file.
#[derive(Debug, Clone)]
pub struct CredentialStore {
    path: PathBuf,
}

impl CredentialStore {
    /// The store at `path`.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        CredentialStore { path: path.into() }
    }

    /// The store in the user's config directory (`$XDG_CONFIG_HOME/ftpc/credentials`).
    ///
    /// # Errors
    /// If no config directory can be determined (no `HOME`).
    pub fn default_location() -> Result<Self> {
        let dir = dirs::config_dir().ok_or_else(|| Error::Credentials {
            path: PathBuf::from("~/.config/ftpc/credentials"),
            reason: "cannot find the config directory (is HOME set?)".into(),
        })?;
        Ok(Self::at(dir.join("ftpc").join("credentials")))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, reason: impl Into<String>) -> Error {
        Error::Credentials {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    /// Every saved login, oldest first; a missing file has none.
    ///
    /// # Errors
    /// An unreadable or corrupt file (naming the line).
    pub fn load(&self) -> Result<Vec<SavedLogin>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.error(e.to_string())),
        };
        let mut logins = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let login = parse_line(line).ok_or_else(|| {
                self.error(format!(
                    "line {} is corrupt; run ftpc logout, then log in again",
                    index + 1
                ))
            })?;
            logins.push(login);
        }
        Ok(logins)
    }

    /// The login for `server`, or the most recent one if `server` is `None`.
    ///
    /// # Errors
    /// As [`CredentialStore::load`].
    pub fn find(&self, server: Option<&str>) -> Result<Option<SavedLogin>> {
        let logins = self.load()?;
        Ok(match server {
            Some(server) => logins.into_iter().rfind(|l| l.server == server),
            None => logins.into_iter().last(),
        })
    }

    /// Saves a login, replacing any earlier one for the same server; it becomes the most recent.
    ///
    /// # Errors
    /// I/O errors, or a corrupt existing file.
    pub fn save(&self, login: SavedLogin) -> Result<()> {
        let mut logins = self.load()?;
        logins.retain(|l| l.server != login.server);
        logins.push(login);
        self.write(&logins)
    }

    /// Removes the login for `server` (or the most recent one); returns what was removed.
    ///
    /// # Errors
    /// I/O errors, or a corrupt existing file.
    pub fn remove(&self, server: Option<&str>) -> Result<Option<SavedLogin>> {
        let mut logins = self.load()?;
        let index = match server {
            Some(server) => logins.iter().rposition(|l| l.server == server),
            None => logins.len().checked_sub(1),
        };
        let Some(index) = index else {
            return Ok(None);
        };
        let removed = logins.remove(index);
        self.write(&logins)?;
        Ok(Some(removed))
    }

    fn write(&self, logins: &[SavedLogin]) -> Result<()> {
        let dir = self
            .path
            .parent()
            .ok_or_else(|| self.error("has no parent directory"))?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| self.error(e.to_string()))?;
        let mut text = String::from(HEADER);
        for l in logins {
            text.push_str(&format!(
                "{} {} {} {} {} {} {}\n",
                l.server,
                l.user,
                l.keys.iterations,
                BASE64_STANDARD.encode(&l.keys.salt),
                BASE64_STANDARD.encode(l.keys.client_key),
                BASE64_STANDARD.encode(l.keys.server_key),
                l.transport.encode(),
            ));
        }
        write_private(&self.path, text.as_bytes()).map_err(|e| self.error(e.to_string()))
    }
}

fn parse_line(line: &str) -> Option<SavedLogin> {
    // The transport comes last and may hold a path with spaces.
    let fields: Vec<&str> = line.splitn(7, ' ').collect();
    let [
        server,
        user,
        iterations,
        salt,
        client_key,
        server_key,
        transport,
    ] = fields.as_slice()
    else {
        return None;
    };
    let key = |b64: &str| -> Option<Key> {
        Key::try_from(BASE64_STANDARD.decode(b64).ok()?.as_slice()).ok()
    };
    Some(SavedLogin {
        server: (*server).to_owned(),
        user: Username::parse(user).ok()?,
        keys: ClientKeys {
            salt: BASE64_STANDARD.decode(salt).ok()?,
            iterations: iterations.parse().ok()?,
            client_key: key(client_key)?,
            server_key: key(server_key)?,
        },
        transport: Transport::decode(transport)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn login(server: &str, user: &str) -> SavedLogin {
        SavedLogin {
            server: server.into(),
            user: Username::parse(user).unwrap(),
            keys: ClientKeys::derive("pw", b"salt", 4096),
            transport: Transport::Tls,
        }
    }

    #[test]
    fn save_find_remove_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::at(dir.path().join("cfg/ftpc/credentials"));
        assert_eq!(store.find(None).unwrap(), None);
        store.save(login("a:1", "alice")).unwrap();
        store.save(login("b:2", "bob")).unwrap();
        let mut with_ca = login("c:3", "carol");
        with_ca.transport = Transport::TlsCa(PathBuf::from("/etc/my ca.pem"));
        store.save(with_ca.clone()).unwrap();
        assert_eq!(store.find(Some("c:3")).unwrap().unwrap(), with_ca);
        store.remove(Some("c:3")).unwrap();
        store.save(login("a:1", "carol")).unwrap();
        assert_eq!(store.find(None).unwrap().unwrap().user.as_str(), "carol");
        assert_eq!(
            store.find(Some("b:2")).unwrap().unwrap(),
            login("b:2", "bob")
        );
        assert_eq!(store.load().unwrap().len(), 2);
        let mode = std::fs::metadata(store.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(store.path()).unwrap();
        assert!(!text.contains("pw"));
        assert_eq!(
            store.remove(Some("b:2")).unwrap().unwrap().user.as_str(),
            "bob"
        );
        assert_eq!(store.remove(Some("b:2")).unwrap(), None);
        assert_eq!(store.load().unwrap().len(), 1);
        std::fs::write(store.path(), "x y\n").unwrap();
        assert!(store.load().unwrap_err().to_string().contains("line 1"));
    }
}
