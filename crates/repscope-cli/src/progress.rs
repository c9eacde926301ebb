//! Progress bars on stderr (indicatif), silenced by --quiet.
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use repscope::progress::Progress;

/// One bar per stage, with an ETA when the amount of work is known.
pub struct Bars {
    quiet: bool,
    current: Mutex<Option<ProgressBar>>,
    name: Mutex<String>,
}

impl Bars {
    pub fn new(quiet: bool) -> Self {
        Bars {
            quiet,
            current: Mutex::new(None),
            name: Mutex::new(String::new()),
        }
    }
}

impl Progress for Bars {
    fn stage(&self, name: &str, total: u64) {
        if self.quiet {
            return;
        }
        let bar = if total > 0 {
            let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template(
                    "{msg:>20} [{bar:30}] {pos}/{len} {per_sec} ({elapsed}, eta {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b
        } else {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template("{msg:>20} {spinner} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.enable_steady_tick(std::time::Duration::from_millis(200));
            b
        };
        bar.set_message(name.to_string());
        if let Ok(mut n) = self.name.lock() {
            *n = name.to_string();
        }
        if let Ok(mut c) = self.current.lock() {
            if let Some(old) = c.take() {
                old.finish_and_clear();
            }
            *c = Some(bar);
        }
    }
    fn advance(&self, n: u64) {
        if let Ok(c) = self.current.lock() {
            if let Some(b) = c.as_ref() {
                b.inc(n);
            }
        }
    }
    fn status(&self, line: &str) {
        if let (Ok(c), Ok(n)) = (self.current.lock(), self.name.lock()) {
            if let Some(b) = c.as_ref() {
                b.set_message(format!("{n}: {line}"));
            }
        }
    }
    fn finish_stage(&self) {
        if let Ok(mut c) = self.current.lock() {
            if let Some(b) = c.take() {
                b.finish_and_clear();
            }
        }
    }
}
