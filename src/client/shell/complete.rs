//! Tab completion of commands, remote paths and local files.

use super::*;

/// Completes command names, remote paths, and local paths for `lcd`, `lls` and `put`.
pub(super) struct ShellHelper {
    pub(super) runtime: Rc<Runtime>,
    pub(super) session: Rc<RefCell<Session>>,
    pub(super) files: FilenameCompleter,
}

/// Where the word being completed starts in `before` (the line up to the cursor), and the
/// word as the shell will read it: quotes and backslash escapes honoured, as `shlex` does.
pub(super) fn current_word(before: &str) -> (usize, String) {
    let (mut start, mut word) = (0, String::new());
    let (mut quote, mut escaped) = (None::<char>, false);
    for (i, c) in before.char_indices() {
        if escaped {
            word.push(c);
            escaped = false;
            continue;
        }
        match (quote, c) {
            (Some('\''), '\'') | (Some('"'), '"') => quote = None,
            (Some('"'), '\\') | (None, '\\') => escaped = true,
            (Some(_), _) => word.push(c),
            (None, '\'' | '"') => quote = Some(c),
            (None, c) if c.is_whitespace() => {
                start = i + c.len_utf8();
                word.clear();
            }
            (None, _) => word.push(c),
        }
    }
    (start, word)
}

/// `word` written so that the shell reads it back as it is: spaces, quotes, backslashes and
/// other characters `shlex` treats specially get a backslash.
pub(super) fn escape_word(word: &str) -> String {
    let mut escaped = String::with_capacity(word.len());
    for c in word.chars() {
        if c.is_whitespace() || "\\'\"$`|&;<>()*?[]{}#~!".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

impl ShellHelper {
    pub(super) fn remote_candidates(&self, word: &str) -> Vec<Pair> {
        let (dir, prefix) = match word.rfind('/') {
            Some(i) => (&word[..=i], &word[i + 1..]),
            None => ("", word),
        };
        let Ok(mut session) = self.session.try_borrow_mut() else {
            return Vec::new();
        };
        let Ok(resolved) = session.resolve(dir) else {
            return Vec::new();
        };
        let listing = self.runtime.block_on(session.client.list(&resolved));
        listing
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.name.starts_with(prefix))
            .map(|e| {
                let slash = if e.kind == EntryKind::Directory {
                    "/"
                } else {
                    ""
                };
                Pair {
                    display: format!("{}{slash}", for_terminal(&e.name)),
                    replacement: format!("{}{slash}", escape_word(&format!("{dir}{}", e.name))),
                }
            })
            .collect()
    }
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let (start, word) = current_word(before);
        let word = word.as_str();
        let command = before.split_whitespace().next().unwrap_or("");
        if start == 0 {
            let words = SHELL_WORDS
                .iter()
                .filter(|w| w.starts_with(word))
                .map(|w| Pair {
                    display: (*w).to_owned(),
                    replacement: format!("{w} "),
                })
                .collect();
            return Ok((0, words));
        }
        let args_before = before[..start]
            .split_whitespace()
            .skip(1)
            .filter(|w| !w.starts_with('-'))
            .count();
        let local = matches!(command, "lcd" | "lls")
            || (command == "put" && args_before == 0)
            || (command == "get" && args_before == 1);
        if local {
            return self.files.complete(line, pos, ctx);
        }
        Ok((start, self.remote_candidates(word)))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}
impl Highlighter for ShellHelper {}
impl Validator for ShellHelper {}
impl Helper for ShellHelper {}
