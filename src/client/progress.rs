//! A progress bar for transfers (bytes, rate, ETA), drawn on stderr only when it is a
//! terminal: scripts and CI see nothing but errors. After each file, one summary line
//! (size, time, rate), as scp prints. Rate and ETA count only the bytes that move now: the
//! part a resume found already there is neither fast nor slow.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressState, ProgressStyle};

use super::transfer::{NoProgress, Progress};
use crate::size::format_size;

/// Bytes per second over `moved` bytes in `elapsed`; `None` before it means anything.
pub fn rate(moved: u64, elapsed: Duration) -> Option<f64> {
    let secs = elapsed.as_secs_f64();
    (secs > 0.0 && moved > 0).then(|| moved as f64 / secs)
}

/// The line printed when a file is done: `report.pdf: 470.8 KiB in 0.2 s (2.3 MiB/s)`, and
/// for a resume what was already there.
pub fn summary(name: &str, total: u64, already: u64, elapsed: Duration) -> String {
    let moved = total.saturating_sub(already);
    let speed = rate(moved, elapsed)
        .map(|r| format!(", {}/s", format_size(r as u64)))
        .unwrap_or_default();
    let resumed = if already > 0 {
        format!(", {} of it already there", format_size(already))
    } else {
        String::new()
    };
    format!(
        "{name}: {} in {:.1} s{speed}{resumed}",
        format_size(total),
        elapsed.as_secs_f64()
    )
}

/// The file being moved now.
#[derive(Debug)]
struct Current {
    bar: ProgressBar,
    name: String,
    total: u64,
    already: u64,
    started: Instant,
}

/// One bar per file transfer.
#[derive(Debug, Default)]
pub struct BarProgress {
    current: Mutex<Option<Current>>,
}

/// The bar's layout for a terminal `width` columns wide: the whole line (name, bar, bytes,
/// rate, ETA) where it fits, less of it where it would not, so a line never wraps.
fn template(width: u16) -> &'static str {
    match width {
        100.. => {
            "{msg:20!} {bar:30} {bytes:>10}/{total_bytes:<10} {moved_rate:>12} ETA {moved_eta}"
        }
        72.. => "{msg:16!} {wide_bar} {bytes:>10}/{total_bytes:<10} {moved_rate:>12}",
        40.. => "{msg:12!} {wide_bar} {percent:>3}% {moved_rate:>11}",
        _ => "{wide_bar} {percent:>3}%",
    }
}

/// The bar's style: [`template`], with rate and ETA counted from what moved since the
/// start (`done` bytes were there already), not from the position.
fn style(width: u16, done: u64) -> Option<ProgressStyle> {
    let rate_key = move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
        let moved = state.pos().saturating_sub(done);
        if let Some(r) = rate(moved, state.elapsed()) {
            let _ = write!(w, "{}/s", format_size(r as u64));
        }
    };
    let eta_key = move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
        let moved = state.pos().saturating_sub(done);
        let left = state.len().unwrap_or(0).saturating_sub(state.pos());
        if let Some(r) = rate(moved, state.elapsed()) {
            let _ = write!(w, "{}s", (left as f64 / r).ceil() as u64);
        }
    };
    ProgressStyle::with_template(template(width))
        .ok()
        .map(|style| {
            style
                .with_key("moved_rate", rate_key)
                .with_key("moved_eta", eta_key)
        })
}

impl Progress for BarProgress {
    fn start(&self, name: &str, total: u64, done: u64) {
        let bar = ProgressBar::new(total);
        let width = console::Term::stderr()
            .size_checked()
            .map_or(80, |(_, cols)| cols);
        if let Some(style) = style(width, done) {
            bar.set_style(style);
        }
        bar.set_message(name.to_owned());
        bar.set_position(done);
        if let Ok(mut slot) = self.current.lock() {
            *slot = Some(Current {
                bar,
                name: name.to_owned(),
                total,
                already: done,
                started: Instant::now(),
            });
        }
    }

    fn advance(&self, bytes: u64) {
        if let Ok(slot) = self.current.lock()
            && let Some(current) = slot.as_ref()
        {
            current.bar.inc(bytes);
        }
    }

    fn fail(&self) {
        if let Ok(mut slot) = self.current.lock()
            && let Some(current) = slot.take()
        {
            current.bar.finish_and_clear();
        }
    }

    fn finish(&self) {
        if let Ok(mut slot) = self.current.lock()
            && let Some(current) = slot.take()
        {
            let complete = current.bar.position() >= current.total;
            current.bar.finish_and_clear();
            if complete {
                eprintln!(
                    "{}",
                    summary(
                        &crate::sanitize::for_terminal(&current.name),
                        current.total,
                        current.already,
                        current.started.elapsed()
                    )
                );
            }
        }
    }
}

/// A bar when stderr is a terminal, nothing otherwise.
pub fn for_stderr() -> Box<dyn Progress> {
    if std::io::stderr().is_terminal() {
        Box::new(BarProgress::default())
    } else {
        Box::new(NoProgress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what a bar draws on a terminal `width` columns wide.
    #[derive(Debug)]
    struct Screen {
        width: u16,
        lines: std::sync::Arc<Mutex<Vec<String>>>,
    }

    impl indicatif::TermLike for Screen {
        fn width(&self) -> u16 {
            self.width
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.write_str(s)
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            if let Ok(mut lines) = self.lines.lock() {
                lines.push(s.to_owned());
            }
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Issue 28: bars wrapped on a terminal 60 columns wide. Each layout fits its width.
    #[test]
    fn a_bar_fits_the_terminal() {
        for width in [24u16, 40, 60, 72, 80, 99, 100, 160] {
            let lines = std::sync::Arc::new(Mutex::new(Vec::new()));
            let screen = Screen {
                width,
                lines: std::sync::Arc::clone(&lines),
            };
            let bar = ProgressBar::with_draw_target(
                Some(123 << 30),
                indicatif::ProgressDrawTarget::term_like(Box::new(screen)),
            );
            bar.set_style(style(width, 0).unwrap());
            bar.set_message("a-very-long-name-of-a-file-that-goes-on.iso");
            bar.set_position(45 << 30);
            bar.tick();
            let drawn = lines.lock().unwrap().clone();
            assert!(!drawn.is_empty(), "{width}: nothing drawn");
            for line in drawn {
                let shown = line.chars().count();
                assert!(
                    shown <= usize::from(width),
                    "{width}: {shown} columns: {line:?}"
                );
            }
        }
    }

    /// Issue 12.9: after a resume the rate counted the bytes already held (11.58 GiB/s).
    #[test]
    fn the_rate_counts_only_what_moved() {
        let second = Duration::from_secs(1);
        assert_eq!(rate(10 << 20, second), Some((10 << 20) as f64));
        assert_eq!(rate(0, second), None);
        assert_eq!(rate(5, Duration::ZERO), None);
        let line = summary("big.iso", 12 << 30, (12 << 30) - (10 << 20), second);
        assert_eq!(
            line,
            "big.iso: 12.0 GiB in 1.0 s, 10.0 MiB/s, 12.0 GiB of it already there"
        );
        assert_eq!(
            summary("f", 2048, 0, Duration::from_millis(500)),
            "f: 2.0 KiB in 0.5 s, 4.0 KiB/s"
        );
    }
}
