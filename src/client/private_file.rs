//! The client's own files (credentials, known hosts): private to their owner, and written
//! whole or not at all.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Replaces `path` with `bytes`, whole or not at all: a temporary file beside it (0600),
/// synced, then renamed over it.
///
/// # Errors
/// I/O errors, naming the file.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    // NamedTempFile is created with mode 0600.
    let mut tmp = tempfile::Builder::new()
        .prefix(".ftpc.")
        .tempfile_in(dir)
        .map_err(|e| Error::local(path, e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| Error::local(path, e))?;
    tmp.persist(path).map_err(|e| Error::local(path, e.error))?;
    Ok(())
}
