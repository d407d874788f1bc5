//! The packets a session answers with: statuses for the core's refusals, attributes of
//! entries, and the replies of extensions.

use bytes::Bytes;
use russh_sftp::extensions::Statvfs;
use russh_sftp::protocol::{ExtendedReply, FileAttributes, Packet, Status, StatusCode};

use crate::commands::{Attributes, Entry, EntryKind, ErrorCode};
use crate::error::StorageError;
use crate::server::core::Outcome;
use crate::server::core::files::UserQuota;
use crate::server::storage::Usage;

/// Blocks as `df` counts them in a `statvfs@openssh.com` reply.
const BLOCK: u64 = 4096;

pub(super) fn status(id: u32, code: StatusCode, message: &str) -> Packet {
    Packet::Status(Status {
        id,
        status_code: code,
        error_message: message.to_owned(),
        language_tag: "en-US".to_owned(),
    })
}

pub(super) fn ok(id: u32) -> Packet {
    status(id, StatusCode::Ok, "ok")
}

/// The SFTP status for a refusal of the core, with its message.
pub(super) fn refused(id: u32, err: &StorageError) -> Packet {
    let code = match err.code {
        ErrorCode::NotFound => StatusCode::NoSuchFile,
        ErrorCode::PermissionDenied | ErrorCode::InvalidPath => StatusCode::PermissionDenied,
        ErrorCode::Unsupported => StatusCode::OpUnsupported,
        _ => StatusCode::Failure,
    };
    status(id, code, &err.message)
}

/// The answer to `result`: success, or its refusal.
pub(super) fn done<T>(id: u32, result: Outcome<T>) -> Packet {
    match result {
        Ok(_) => ok(id),
        Err(err) => refused(id, &err),
    }
}

pub(super) fn extended_reply<T: serde::Serialize>(id: u32, value: &T) -> Packet {
    match russh_sftp::ser::to_bytes(value) {
        Ok(data) => Packet::ExtendedReply(ExtendedReply {
            id,
            data: data.to_vec(),
        }),
        Err(err) => status(id, StatusCode::Failure, &err.to_string()),
    }
}

/// The arguments of an extended request, if they decode.
pub(super) fn decode<T: serde::de::DeserializeOwned>(data: Vec<u8>) -> Option<T> {
    russh_sftp::de::from_bytes(&mut Bytes::from(data)).ok()
}

/// The times and permission bits a client sets on a file it writes, if it sets a time.
pub(super) fn preserved(attrs: &FileAttributes) -> Option<Attributes> {
    let modified = i64::from(attrs.mtime?);
    let mode = attrs.permissions.map_or(0o644, |bits| bits & 0o777);
    Some(Attributes { modified, mode })
}

/// SFTP attributes of an entry: type and permission bits, size, times.
pub(super) fn attributes(entry: &Entry) -> FileAttributes {
    let permissions = match entry.kind {
        EntryKind::Directory => 0o040_755,
        EntryKind::Symlink => 0o120_777,
        EntryKind::File | EntryKind::Other => 0o100_644,
    };
    let time = entry.modified.and_then(|t| u32::try_from(t.max(0)).ok());
    FileAttributes {
        size: Some(entry.size),
        uid: None,
        user: None,
        gid: None,
        group: None,
        permissions: Some(permissions),
        atime: time,
        mtime: time,
    }
}

/// Attributes of a file `size` bytes long (one being written, or the part of one an
/// interrupted upload kept).
pub(super) fn file_of_size(size: u64) -> FileAttributes {
    let mut attrs = FileAttributes::empty();
    attrs.size = Some(size);
    attrs.permissions = Some(0o100_644);
    attrs
}

/// What `df` shows of the home: the quota as the disk's size and what is left of it as
/// free (without a quota, a size nothing will reach); the file-count quota as inodes.
pub(super) fn statvfs(usage: &Usage, quota: &UserQuota) -> Statvfs {
    let blocks = |bytes: u64| bytes.div_ceil(BLOCK);
    let total = quota.bytes.map_or(u64::MAX / BLOCK, blocks);
    let used = blocks(usage.bytes).min(total);
    let inodes = quota.entries.unwrap_or(u64::MAX / 2);
    let free_inodes = inodes.saturating_sub(usage.entries);
    Statvfs {
        block_size: BLOCK,
        fragment_size: BLOCK,
        blocks: total,
        blocks_free: total - used,
        blocks_avail: total - used,
        inodes,
        inodes_free: free_inodes,
        inodes_avail: free_inodes,
        fs_id: 0,
        flags: 0,
        name_max: 255,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn df_shows_the_quota_and_what_is_left_of_it() {
        let usage = Usage {
            bytes: 10 * BLOCK + 1,
            entries: 3,
        };
        let quota = UserQuota {
            bytes: Some(100 * BLOCK),
            entries: Some(10),
        };
        let vfs = statvfs(&usage, &quota);
        assert_eq!(
            (vfs.blocks, vfs.blocks_free, vfs.blocks_avail),
            (100, 89, 89)
        );
        assert_eq!((vfs.inodes, vfs.inodes_free), (10, 7));
        // Over the quota (it was lowered): nothing free, no wrap.
        let over = statvfs(
            &Usage {
                bytes: 200 * BLOCK,
                entries: 20,
            },
            &quota,
        );
        assert_eq!((over.blocks_free, over.inodes_free), (0, 0));
        let unlimited = statvfs(&usage, &UserQuota::default());
        assert_eq!(unlimited.blocks_free, unlimited.blocks - 11);
    }
}
