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
/// tabs, DEL, C1 controls), bidirectional controls (which reorder what follows them on
/// the line, "Trojan Source") and backslashes shown as escapes, everything else as is.
pub fn for_terminal(name: &str) -> String {
    let mut shown = String::with_capacity(name.len());
    for c in name.chars() {
        if c == '\\' {
            shown.push_str("\\\\");
        } else if c.is_control() || is_bidi_control(c) {
            let _ = write!(shown, "{}", c.escape_default());
        } else {
            shown.push(c);
        }
    }
    shown
}

/// The Unicode bidirectional formatting characters (UAX #9): marks, embeddings, overrides
/// and isolates.
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
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

    /// Issue 27.12: U+202E and the isolates passed, so a name could show its text reversed
    /// (`evil\u{202e}fdp.exe` shown as `evilexe.pdf`).
    #[test]
    fn terminal_text_has_no_bidi_controls() {
        for c in [
            '\u{061c}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}',
            '\u{202e}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
        ] {
            let shown = for_terminal(&format!("evil{c}fdp.exe"));
            assert!(!shown.contains(c), "{c:?} passed: {shown:?}");
            assert_eq!(shown, format!("evil{}fdp.exe", c.escape_default()));
        }
        // Right-to-left text itself is left alone.
        assert_eq!(for_terminal("שלום مرحبا"), "שלום مرحبا");
    }
}
