//! The audit log (`--audit-log FILE`): one JSON object a line for every login attempt,
//! lockout, change to a user's files and transfer, appended and flushed as it happens.
//!
//! # Format
//! `{"time":"2026-11-25T05:00:00.123Z","event":"put","user":"alice","peer":"127.0.0.1:5000",
//! "via":"sftp","path":"a.txt","bytes":5,"millis":3,"result":"ok"}`; `via` (the front end:
//! `native`, `sftp`), `path`, `bytes`, `millis` and `detail` appear where they apply;
//! `result` is `ok` or the error code.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

/// One audit record.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Record<'a> {
    time: String,
    pub(crate) event: &'a str,
    pub(crate) user: &'a str,
    peer: String,
    /// The front end an operation on files came by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) via: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) millis: Option<u64>,
    pub(crate) result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) detail: Option<String>,
}

impl<'a> Record<'a> {
    /// A record of `event` by `user` from `peer`, stamped now.
    pub(crate) fn new(
        event: &'a str,
        user: &'a str,
        peer: SocketAddr,
        result: impl Into<String>,
    ) -> Self {
        Record {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            event,
            user,
            peer: peer.to_string(),
            result: result.into(),
            ..Record::default()
        }
    }
}

/// The open audit file.
#[derive(Debug)]
pub(crate) struct AuditLog {
    file: Mutex<std::fs::File>,
}

impl AuditLog {
    /// Opens `path` for appending (created mode 0600).
    pub(crate) fn open(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        Ok(AuditLog {
            file: Mutex::new(file),
        })
    }

    /// Appends one record as one line, in a single write.
    pub(crate) fn write(&self, record: &Record<'_>) {
        let Ok(mut line) = serde_json::to_vec(record) else {
            return;
        };
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(err) = file.write_all(&line) {
            tracing::error!(error = %err, "cannot write the audit log");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(&dir.path().join("audit.jsonl")).unwrap();
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        log.write(&Record::new("login", "alice", peer, "ok"));
        let mut put = Record::new("put", "alice", peer, "QuotaExceeded");
        put.path = Some("a \"quoted\"\nname");
        put.bytes = Some(5);
        log.write(&put);
        let text = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "login");
        assert!(lines[0].get("path").is_none());
        assert_eq!(lines[1]["path"], "a \"quoted\"\nname");
        assert_eq!(lines[1]["bytes"], 5);
        assert_eq!(lines[1]["result"], "QuotaExceeded");
    }
}
