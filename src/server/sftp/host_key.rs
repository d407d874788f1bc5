//! The SSH host key: generated on first start into the state directory (Ed25519, 0600, in
//! OpenSSH's own format, as `ssh-keygen` writes it) and reused on every start, or one of the
//! admin's. Clients pin it on first contact, so losing it makes every client warn.

use std::io::Write;
use std::path::{Path, PathBuf};

use russh::keys::ssh_key::{Algorithm, LineEnding, PrivateKey};

use crate::authorized_key::AuthorizedKey;
use crate::error::{Error, Result};

/// The generated key's name in the state directory.
pub const HOST_KEY_FILE: &str = "ssh_host_ed25519_key";

/// Where the generated key lives in `state_dir`.
pub fn generated_path(state_dir: &Path) -> PathBuf {
    state_dir.join(HOST_KEY_FILE)
}

fn key_error(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::local(
        path,
        std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string()),
    )
}

/// Reads the host key at `path` (an unencrypted OpenSSH private key).
///
/// # Errors
/// The file cannot be read, or holds no usable key.
pub fn load(path: &Path) -> Result<PrivateKey> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::local(path, e))?;
    let key = PrivateKey::from_openssh(&text).map_err(|e| key_error(path, e))?;
    if key.is_encrypted() {
        return Err(key_error(
            path,
            "the host key is encrypted; ftpd needs it without a passphrase",
        ));
    }
    AuthorizedKey::from_public(key.public_key()).map_err(|e| key_error(path, e))?;
    Ok(key)
}

/// The host key in `state_dir`, made (Ed25519, mode 0600, written whole under a temporary
/// name first) if there is none yet; `made` says whether it was.
///
/// # Errors
/// The state directory cannot be used, or the key there cannot be read.
pub fn load_or_create(state_dir: &Path) -> Result<(PrivateKey, bool)> {
    let path = generated_path(state_dir);
    if path.exists() {
        return Ok((load(&path)?, false));
    }
    crate::server::secret::create_state_dir(state_dir).map_err(|e| Error::local(state_dir, e))?;
    let mut key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
        .map_err(|e| key_error(&path, e))?;
    key.set_comment("ftpd host key");
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| key_error(&path, e))?;
    // NamedTempFile creates its file with mode 0600.
    let mut tmp = tempfile::Builder::new()
        .prefix(".ssh_host_key.")
        .tempfile_in(state_dir)
        .map_err(|e| Error::local(state_dir, e))?;
    tmp.write_all(text.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| Error::local(tmp.path(), e))?;
    match tmp.persist_noclobber(&path) {
        Ok(_) => {
            let fingerprint = describe(&key);
            tracing::info!(path = %path.display(), key = %fingerprint, "generated an SSH host key");
            Ok((key, true))
        }
        // Another process (a second `ftpd fingerprint`) made one first: use theirs.
        Err(err) if err.error.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok((load(&path)?, false))
        }
        Err(err) => Err(Error::local(&path, err.error)),
    }
}

/// The host key as `ssh-keygen -lf` prints it: `256 SHA256:… comment (ED25519)`.
pub fn describe(key: &PrivateKey) -> String {
    match AuthorizedKey::from_public(key.public_key()) {
        Ok(public) => public.describe(),
        Err(err) => format!("unusable host key: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generated_once_private_reused_and_readable_by_ssh_keygen() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let (first, made) = load_or_create(&state).unwrap();
        assert!(made);
        let path = generated_path(&state);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (again, made) = load_or_create(&state).unwrap();
        assert!(!made);
        assert_eq!(first.public_key(), again.public_key());
        assert!(describe(&first).starts_with("256 SHA256:"));
        assert!(describe(&first).ends_with(" ftpd host key (ED25519)"));
        // No temporary file is left beside it.
        let names: Vec<_> = std::fs::read_dir(&state)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(HOST_KEY_FILE)]);
    }

    #[test]
    fn a_file_that_is_no_key_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "not a key").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("key"), "{err}");
    }
}
