//! The server's private secret, from which unknown users' mock salts are derived. It is kept
//! in the state directory so the mock salt a prober sees for a name stays the same across
//! restarts, just as a real user's salt does.

pub mod postgres;

use std::io::{self, Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use crate::auth::random_bytes;

/// Bytes of secret.
pub const SECRET_LEN: usize = 32;
const FILE_NAME: &str = "mock-secret";

/// Creates the state directory (and missing parents) mode 0700, whichever command comes
/// first: it holds the mock-login secret and the TLS key.
///
/// # Errors
/// I/O errors.
pub fn create_state_dir(state_dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
}

/// Makes an existing state directory private again if its mode lets others in (0755 from
/// an older `ftpd fingerprint`, or an admin's `chmod`), as ssh insists on for its keys.
/// Returns the mode it had when it had to be changed.
///
/// # Errors
/// The directory cannot be examined, or its mode cannot be changed (not ours, say).
pub fn tighten_state_dir(state_dir: &Path) -> io::Result<Option<u32>> {
    use std::os::unix::fs::PermissionsExt;
    let meta = match std::fs::metadata(state_dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(None);
    }
    std::fs::set_permissions(state_dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("its mode {mode:04o} lets others read the server's secrets, and it cannot be made 0700: {e}"),
        )
    })?;
    Ok(Some(mode))
}

/// Reads the secret from `state_dir`, creating the directory (0700) and the secret (0600)
/// on first use.
///
/// # Errors
/// I/O errors, or a secret file of the wrong size.
pub fn load_or_create(state_dir: &Path) -> io::Result<[u8; SECRET_LEN]> {
    create_state_dir(state_dir)?;
    let path = state_dir.join(FILE_NAME);
    match std::fs::File::open(&path) {
        Ok(mut file) => {
            let mut secret = [0u8; SECRET_LEN];
            let mut rest = Vec::new();
            file.read_exact(&mut secret)?;
            file.read_to_end(&mut rest)?;
            if !rest.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not {SECRET_LEN} bytes long", path.display()),
                ));
            }
            Ok(secret)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let secret = random_bytes::<SECRET_LEN>();
            let mut tmp = tempfile::Builder::new().tempfile_in(state_dir)?;
            tmp.write_all(&secret)?;
            tmp.as_file().sync_all()?;
            // If another server created it meanwhile, use theirs.
            match tmp.persist_noclobber(&path) {
                Ok(_) => Ok(secret),
                Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
                    load_or_create(state_dir)
                }
                Err(e) => Err(e.error),
            }
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let a = load_or_create(&state).unwrap();
        let b = load_or_create(&state).unwrap();
        assert_eq!(a, b);
        let mode = std::fs::metadata(state.join(FILE_NAME))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(state.join(FILE_NAME), b"short").unwrap();
        assert!(load_or_create(&state).is_err());
    }
}
