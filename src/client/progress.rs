//! A progress bar for transfers (bytes, rate, ETA), drawn on stderr only when it is a
//! terminal: scripts and CI see nothing but errors.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

use super::transfer::{NoProgress, Progress};

/// One bar per file transfer.
#[derive(Debug, Default)]
pub struct BarProgress {
    bar: Mutex<Option<ProgressBar>>,
}

impl Progress for BarProgress {
    fn start(&self, name: &str, total: u64, done: u64) {
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(
            "{msg:20!} {bar:30} {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} ETA {eta}",
        ) {
            bar.set_style(style);
        }
        bar.set_message(name.to_owned());
        bar.set_position(done);
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some(bar);
        }
    }

    fn advance(&self, bytes: u64) {
        if let Ok(slot) = self.bar.lock()
            && let Some(bar) = slot.as_ref()
        {
            bar.inc(bytes);
        }
    }

    fn finish(&self) {
        if let Ok(mut slot) = self.bar.lock()
            && let Some(bar) = slot.take()
        {
            bar.finish_and_clear();
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
