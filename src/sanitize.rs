//! Text a peer chose, made safe to show: for a log line (escaped and cut short, so a
//! megabyte "user name" costs a log line, not a megabyte) and for a terminal (no escape
//! sequences, no line breaks, as `ls` shows odd names).

use std::fmt::Write;

/// How much of a peer's text reaches a log line, in characters.
pub const LOG_CHARS: usize = 64;

/// `text` escaped (`\n`, `\u{1b}`, quotes ...) and cut to [`LOG_CHARS`] characters, with the
/// original length in bytes when cut: `"aaaa…" (1048576 bytes)`.
pub fn for_log(text: &str) -> String {
    let mut shown = String::new();
    let mut chars = text.chars();
    for c in chars.by_ref().take(LOG_CHARS) {
        let _ = write!(shown, "{}", c.escape_debug());
    }
    if chars.next().is_some() {
        let _ = write!(shown, "… ({} bytes)", text.len());
    }
    shown
}

/// `name` as a terminal may print it: control characters (escape sequences, line breaks,
/// tabs, DEL, C1 controls) and backslashes shown as escapes, everything else as is.
pub fn for_terminal(name: &str) -> String {
    let mut shown = String::with_capacity(name.len());
    for c in name.chars() {
        if c == '\\' {
            shown.push_str("\\\\");
        } else if c.is_control() {
            let _ = write!(shown, "{}", c.escape_default());
        } else {
            shown.push(c);
        }
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_text_is_escaped_and_cut() {
        assert_eq!(for_log("alice"), "alice");
        assert_eq!(for_log("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
        let huge = "x".repeat(1 << 20);
        let shown = for_log(&huge);
        assert!(shown.starts_with(&"x".repeat(LOG_CHARS)));
        assert!(shown.ends_with("… (1048576 bytes)"), "{shown}");
        assert!(shown.len() < 100);
    }

    #[test]
    fn terminal_text_has_no_control_characters() {
        assert_eq!(for_terminal("notes.txt"), "notes.txt");
        assert_eq!(for_terminal("évé 日本"), "évé 日本");
        let evil = "a\u{1b}]0;owned\u{7}\nb\rc\u{9b}d\u{7f}\\";
        let shown = for_terminal(evil);
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert_eq!(shown, "a\\u{1b}]0;owned\\u{7}\\nb\\rc\\u{9b}d\\u{7f}\\\\");
    }
}
