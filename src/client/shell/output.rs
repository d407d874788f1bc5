//! What the commands print: reports, listings, and where output goes.

use super::*;

/// What a sync did: each action when dry (nothing was done), then one summary line; a dry
/// run moved nothing, so it has no time or rate to tell.
pub(super) fn write_sync_report(
    out: &mut dyn Write,
    report: &crate::client::sync::SyncReport,
    dry_run: bool,
    downloading: bool,
    took: std::time::Duration,
) -> std::io::Result<()> {
    if dry_run {
        for action in &report.actions {
            writeln!(out, "{}", for_terminal(action))?;
        }
    }
    let moved = if downloading { "received" } else { "sent" };
    let mut counts = format!(
        "{} files {moved} ({}), {} unchanged, {} deleted, {} directories made",
        report.sent,
        format_size(report.bytes),
        report.unchanged,
        report.deleted,
        report.made,
    );
    if report.linked > 0 {
        counts.push_str(&format!(", {} links made", report.linked));
    }
    if dry_run {
        return writeln!(out, "would be: {counts}");
    }
    let secs = took.as_secs_f64().max(1e-3);
    writeln!(
        out,
        "{counts}; {secs:.2} s, {}/s",
        format_size((report.bytes as f64 / secs) as u64)
    )
}

/// What check found: a line per difference, then a summary line.
pub(super) fn write_check_report(
    out: &mut dyn Write,
    report: &crate::client::sync::CheckReport,
) -> std::io::Result<()> {
    for path in &report.differ {
        writeln!(out, "differs: {}", for_terminal(path))?;
    }
    for path in &report.only_local {
        writeln!(out, "only local: {}", for_terminal(path))?;
    }
    for path in &report.only_remote {
        writeln!(out, "only remote: {}", for_terminal(path))?;
    }
    writeln!(
        out,
        "{} files the same, {} differ, {} only local, {} only remote",
        report.same,
        report.differ.len(),
        report.only_local.len(),
        report.only_remote.len()
    )
}

/// clap's message for a line that does not parse, on one line: what is wrong and what is
/// missing, without the usage block (`help COMMAND` shows that).
pub(super) fn usage_message(rendered: &str) -> String {
    let parts: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|line| !line.starts_with("Usage:") && !line.starts_with("For more information"))
        .filter(|line| !line.is_empty())
        .collect();
    let joined = parts.join(" ");
    let message = joined.trim_start_matches("error: ");
    if message.is_empty() {
        "invalid command".to_owned()
    } else {
        message.to_owned()
    }
}

/// Where command output goes.
pub struct Output<'a> {
    /// Results (listings, stat, df).
    pub out: &'a mut dyn Write,
    /// Warnings (entries skipped by -r).
    pub err: &'a mut dyn Write,
    /// Transfer progress.
    pub progress: &'a dyn Progress,
    /// `out` is a terminal: names from the server are shown escaped there, and as they are
    /// into a pipe or a file.
    pub terminal: bool,
    /// Standard input is free for data (a command of its own, not the shell's input):
    /// `put - NAME` reads it.
    pub stdin: bool,
}

pub(super) fn warn_skipped(err: &mut dyn Write, skipped: &[String]) {
    for line in skipped {
        let _ = writeln!(err, "skipped {}", crate::sanitize::for_terminal(line));
    }
    if !skipped.is_empty() {
        let _ = writeln!(
            err,
            "skipped {} entries in all (listed above)",
            skipped.len()
        );
    }
}

pub(super) fn mark(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::Directory => "/",
        EntryKind::Symlink => "@",
        EntryKind::File | EntryKind::Other => "",
    }
}

pub(super) fn local_time(modified: Option<i64>) -> String {
    modified
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_else(|| "-".repeat(16))
}

/// How `ls` shows a listing.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ListingStyle {
    /// Type, size, time and name.
    pub(super) long: bool,
    /// Names starting with `.` too.
    pub(super) all: bool,
    /// Sizes as 1.5K, 23M.
    pub(super) human: bool,
    /// Each name ended by NUL.
    pub(super) null: bool,
    /// Control characters in names escaped (the output is a terminal).
    pub(super) escape: bool,
}

/// Whether an error says there is nothing there (for `rm -f`).
pub(super) fn is_not_found(error: &Error) -> bool {
    matches!(
        error,
        Error::Remote {
            code: crate::commands::ErrorCode::NotFound,
            ..
        }
    )
}

/// `ls -h`'s size: at most four characters and a unit, rounded up as GNU ls does, so a
/// size never looks smaller than it is.
pub(super) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    if bytes < 1024 {
        return bytes.to_string();
    }
    let mut value = bytes as f64;
    for (i, unit) in UNITS.iter().enumerate() {
        value /= 1024.0;
        let shown = if value < 10.0 {
            (value * 10.0).ceil() / 10.0
        } else {
            value.ceil()
        };
        if shown < 1024.0 || i == UNITS.len() - 1 {
            return if shown < 10.0 {
                format!("{shown:.1}{unit}")
            } else {
                format!("{shown:.0}{unit}")
            };
        }
    }
    unreachable!("the last unit returns")
}

/// `ls` output: names, or with `long` type, size, time and name.
pub(super) fn write_listing(
    out: &mut dyn Write,
    entries: &[Entry],
    style: ListingStyle,
) -> std::io::Result<()> {
    let end = if style.null { "\0" } else { "\n" };
    for entry in entries {
        if !style.all && entry.name.starts_with('.') {
            continue;
        }
        let name = if style.escape {
            for_terminal(&entry.name)
        } else {
            entry.name.clone()
        };
        if style.long {
            let kind = match entry.kind {
                EntryKind::Directory => 'd',
                EntryKind::Symlink => 'l',
                EntryKind::File => '-',
                EntryKind::Other => '?',
            };
            let size = if style.human {
                human_size(entry.size)
            } else {
                entry.size.to_string()
            };
            write!(
                out,
                "{kind} {size:>12} {} {name}{}{end}",
                local_time(entry.modified),
                mark(entry.kind)
            )?;
        } else {
            write!(out, "{name}{}{end}", mark(entry.kind))?;
        }
    }
    Ok(())
}

pub(super) fn write_stat(out: &mut dyn Write, entry: &Entry) -> std::io::Result<()> {
    let kind = match entry.kind {
        EntryKind::Directory => "directory",
        EntryKind::Symlink => "symlink",
        EntryKind::File => "file",
        EntryKind::Other => "other",
    };
    writeln!(out, "name: {}", for_terminal(&entry.name))?;
    writeln!(out, "type: {kind}")?;
    writeln!(out, "size: {} ({})", entry.size, format_size(entry.size))?;
    writeln!(out, "modified: {}", local_time(entry.modified))
}
