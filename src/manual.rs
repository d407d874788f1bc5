//! One manual page per binary, made from the same clap definitions as `--help`, so the two
//! cannot disagree: every command with its options, then the sections a page needs that
//! `--help` has no room for (the shell's commands, FILES, ENVIRONMENT, EXIT STATUS,
//! EXAMPLES).

use std::io::{self, Write};

/// What a page says beyond the commands: sections of `(term, text)` items, in order.
#[derive(Debug, Default)]
pub struct Page<'a> {
    /// The manual section (`1` for `ftpc`, `8` for `ftpd`).
    pub section: &'a str,
    /// More command trees, each under a heading of its own (`SHELL COMMANDS`).
    pub more_commands: Vec<(&'a str, clap::Command)>,
    /// `(HEADING, [(term, text)])`: FILES, ENVIRONMENT, EXIT STATUS, EXAMPLES.
    pub sections: Vec<(&'a str, Vec<(&'a str, &'a str)>)>,
}

/// Text as roff prints it: backslashes and leading dots or quotes cannot act as requests.
fn escape(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    escaped
        .lines()
        .map(|line| {
            if line.starts_with('.') || line.starts_with('\'') {
                format!("\\&{line}")
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// How an argument is written: `-r, --recursive`, `--server [USER@]HOST:PORT`, `PATH...`.
fn arg_term(arg: &clap::Arg) -> String {
    let value = arg
        .get_value_names()
        .map(|names| {
            names
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| arg.get_id().as_str().to_uppercase());
    let takes_value = arg.get_action().takes_values();
    let mut names = Vec::new();
    if let Some(short) = arg.get_short() {
        names.push(format!("\\fB\\-{short}\\fR"));
    }
    if let Some(long) = arg.get_long() {
        names.push(format!("\\fB\\-\\-{}\\fR", escape(long)));
    }
    if names.is_empty() {
        let dots = if matches!(arg.get_num_args(), Some(r) if r.max_values() > 1) {
            "..."
        } else {
            ""
        };
        return format!("\\fI{}\\fR{dots}", escape(&value));
    }
    let mut term = names.join(", ");
    if takes_value {
        term.push_str(&format!(" \\fI{}\\fR", escape(&value)));
    }
    term
}

/// The arguments of `command` as a list, help and version flags left out, and (for a
/// subcommand) the global options the page lists once at the top.
fn write_args(out: &mut dyn Write, command: &clap::Command, globals: bool) -> io::Result<()> {
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if arg.is_hide_set() || id == "help" || id == "version" || (arg.is_global_set() && !globals)
        {
            continue;
        }
        let help = arg
            .get_long_help()
            .or_else(|| arg.get_help())
            .map(ToString::to_string)
            .unwrap_or_default();
        writeln!(out, ".TP\n{}\n{}", arg_term(arg), escape(&help))?;
    }
    Ok(())
}

/// Each subcommand of `command` (and theirs), under its whole name: `ftpc friends add`.
fn write_commands(out: &mut dyn Write, prefix: &str, command: &clap::Command) -> io::Result<()> {
    for sub in command.get_subcommands() {
        let name = sub.get_name();
        if name == "help" || sub.is_hide_set() {
            continue;
        }
        let whole = if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix} {name}")
        };
        writeln!(out, ".SS \"{}\"", escape(&whole))?;
        let about = sub
            .get_long_about()
            .or_else(|| sub.get_about())
            .map(ToString::to_string)
            .unwrap_or_default();
        writeln!(out, "{}", escape(&about))?;
        let mut usage = sub.clone().bin_name(&whole);
        let usage = usage.render_usage().to_string();
        let usage = usage.trim_start_matches("Usage: ").trim();
        writeln!(out, ".PP\n.B {}", escape(usage))?;
        write_args(out, sub, false)?;
        write_commands(out, &whole, sub)?;
    }
    Ok(())
}

/// Renders the page of `command` (a binary's whole clap tree) with `page`'s other sections.
///
/// # Errors
/// Only if `out` cannot be written.
pub fn render(command: &clap::Command, page: &Page<'_>, out: &mut dyn Write) -> io::Result<()> {
    let mut command = command.clone();
    command.build();
    let name = command.get_name().to_owned();
    let version = command.get_version().unwrap_or_default().to_owned();
    writeln!(
        out,
        ".TH {} {} \"\" \"{} {}\"",
        name.to_uppercase(),
        page.section,
        escape(&name),
        escape(&version)
    )?;
    let about = command
        .get_about()
        .map(ToString::to_string)
        .unwrap_or_default();
    let first = about.lines().next().unwrap_or_default();
    writeln!(out, ".SH NAME\n{} \\- {}", escape(&name), escape(first))?;
    writeln!(
        out,
        ".SH SYNOPSIS\n\\fB{}\\fR [\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]",
        escape(&name)
    )?;
    let long = command
        .get_long_about()
        .or_else(|| command.get_about())
        .map(ToString::to_string)
        .unwrap_or_default();
    writeln!(out, ".SH DESCRIPTION\n{}", escape(&long))?;
    writeln!(out, ".SH OPTIONS")?;
    write_args(out, &command, true)?;
    writeln!(out, ".SH COMMANDS")?;
    write_commands(out, &name, &command)?;
    for (heading, tree) in &page.more_commands {
        let mut tree = tree.clone();
        tree.build();
        writeln!(out, ".SH {}", escape(heading))?;
        write_commands(out, "", &tree)?;
    }
    for (heading, items) in &page.sections {
        writeln!(out, ".SH {}", escape(heading))?;
        for (term, text) in items {
            writeln!(out, ".TP\n\\fB{}\\fR\n{}", escape(term), escape(text))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> clap::Command {
        clap::Command::new("tool")
            .version("1.0")
            .about("does things")
            .arg(clap::Arg::new("server").long("server").help("where"))
            .subcommand(
                clap::Command::new("put")
                    .about("uploads .files")
                    .arg(
                        clap::Arg::new("recursive")
                            .short('r')
                            .long("recursive")
                            .action(clap::ArgAction::SetTrue)
                            .help("trees too"),
                    )
                    .arg(clap::Arg::new("path").num_args(1..).help("what")),
            )
            .subcommand(
                clap::Command::new("friends")
                    .about("the chat's friends")
                    .subcommand(clap::Command::new("add").about("asks")),
            )
    }

    /// Every command, nested ones too, has its heading, usage and options; extra sections
    /// follow; roff requests in text are neutralised.
    #[test]
    fn every_command_and_section_is_on_the_page() {
        let page = Page {
            section: "1",
            more_commands: vec![(
                "SHELL COMMANDS",
                clap::Command::new("shell")
                    .no_binary_name(true)
                    .subcommand(clap::Command::new("cd").about("changes directory")),
            )],
            sections: vec![("FILES", vec![("~/.config/tool", "settings")])],
        };
        let mut out = Vec::new();
        render(&tree(), &page, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        for expected in [
            ".TH TOOL 1",
            ".SH NAME\ntool \\- does things",
            "\\fB\\-\\-server\\fR \\fISERVER\\fR\nwhere",
            ".SS \"tool put\"\nuploads .files",
            ".B tool put [OPTIONS] [path]...",
            "\\fB\\-r\\fR, \\fB\\-\\-recursive\\fR\ntrees too",
            ".SS \"tool friends add\"\nasks",
            ".SH SHELL COMMANDS\n.SS \"cd\"\nchanges directory",
            ".SH FILES\n.TP\n\\fB~/.config/tool\\fR\nsettings",
        ] {
            assert!(
                text.contains(expected),
                "{expected:?} missing from:\n{text}"
            );
        }
        assert_eq!(
            escape(".hidden\n'quote\na\\b"),
            "\\&.hidden\n\\&'quote\na\\eb"
        );
    }
}
