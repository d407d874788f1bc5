//! The embedded engine: the secret in a file of the state directory (0600).

use std::io::{self, Read, Write};
use std::path::Path;

use super::{SECRET_LEN, create_state_dir};
use crate::auth::random_bytes;

const FILE_NAME: &str = "mock-secret";

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
