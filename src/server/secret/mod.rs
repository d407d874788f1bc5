//! The server's private secret, from which unknown users' mock salts are derived. It is kept
//! in the state directory so the mock salt a prober sees for a name stays the same across
//! restarts, just as a real user's salt does: `file` keeps it in the state directory,
//! `postgres` in the database every node shares. This file makes the state directory.

pub mod file;
pub mod postgres;

pub use file::load_or_create;

use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

/// Bytes of secret.
pub const SECRET_LEN: usize = 32;

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
