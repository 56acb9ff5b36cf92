//! The binary's [`Reporter`]: indicatif bars on a terminal, plain lines when
//! stderr is not a terminal or in CI, nothing with `--quiet`.
//!
//! What is left on a terminal is what a user reads after the command, so
//! every bar is drawn only through the [`MultiProgress`] (a bar is added to
//! it before anything can draw it; a bar drawn on its own would stay on
//! screen as a stale frame), each task's bar is cleared when it finishes,
//! and the [`Finish`] guard clears those whose task never finished (a
//! command that failed half-way).

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use boxwright::progress::{Level, Reporter, SharedReporter};
use boxwright::registry::credentials::redact_secrets;
use boxwright::render::text::one_line;

/// `text` as stderr shows it: without a secret of ours a server echoed,
/// and on one line, its control characters escaped, so that a registry's
/// newline or escape sequence cannot forge a line or rewrite the screen.
pub fn shown(text: &str) -> String {
    one_line(&redact_secrets(text)).into_owned()
}

/// Choose the reporter for this run, and the guard that clears its bars
/// at the end: keep the guard until the command is done, and drop it
/// before printing anything after it (the error).
pub fn reporter(quiet: bool, verbose: bool) -> (SharedReporter, Finish) {
    if quiet {
        return (boxwright::progress::silent(), Finish(None));
    }
    let min = if verbose { Level::Debug } else { Level::Info };
    let ci = std::env::var_os("CI").is_some()
        || std::env::var("GITHUB_ACTIONS").as_deref() == Ok("true");
    if std::io::stderr().is_terminal() && !ci {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        let bars = Arc::new(Bars {
            multi,
            bars: Mutex::new(HashMap::new()),
            min,
        });
        (bars.clone(), Finish(Some(bars)))
    } else {
        let lines = Arc::new(Lines {
            min,
            labels: Mutex::new(HashMap::new()),
        });
        (lines, Finish(None))
    }
}

/// Clears, when dropped, the bars of tasks that never finished.
pub struct Finish(Option<Arc<Bars>>);

impl Drop for Finish {
    fn drop(&mut self) {
        let Some(bars) = &self.0 else { return };
        let left: Vec<ProgressBar> = bars
            .bars
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, b)| b)
            .collect();
        for b in left {
            b.finish_and_clear();
            bars.multi.remove(&b);
        }
        let _ = bars.multi.clear();
    }
}

/// Bar labels are cut to this many characters (a layer's name and its
/// platform fit).
const LABEL_WIDTH: usize = 32;

fn prefix(level: Level) -> &'static str {
    match level {
        Level::Debug => "debug: ",
        Level::Info => "",
        Level::Warn => "warning: ",
    }
}

/// Plain lines: one when a task starts, one when it ends.
struct Lines {
    min: Level,
    labels: Mutex<HashMap<String, String>>,
}

impl Lines {
    fn line(&self, s: &str) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{s}");
    }
}

impl Reporter for Lines {
    fn log(&self, level: Level, msg: &str) {
        if level >= self.min {
            self.line(&format!("{}{}", prefix(level), shown(msg)));
        }
    }
    fn start(&self, id: &str, label: &str, total: Option<u64>) {
        let label = &shown(label);
        self.labels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), label.to_string());
        match total {
            Some(t) => self.line(&format!("{label}: started ({})", indicatif::HumanBytes(t))),
            None => self.line(&format!("{label}: started")),
        }
    }
    fn advance(&self, _: &str, _: u64) {}
    fn finish(&self, id: &str, summary: &str) {
        self.labels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        self.line(&shown(summary));
    }
}

/// One bar per task on a terminal.
struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
    min: Level,
}

impl Reporter for Bars {
    fn log(&self, level: Level, msg: &str) {
        if level >= self.min {
            let _ = self
                .multi
                .println(format!("{}{}", prefix(level), shown(msg)));
        }
    }
    fn start(&self, id: &str, label: &str, total: Option<u64>) {
        // Hidden until the MultiProgress takes it: a new bar draws on
        // stderr by itself, and that frame would never be cleared.
        let style = match total {
            Some(_) => ProgressStyle::with_template(&format!(
                "{{prefix:>{LABEL_WIDTH}.bold}} [{{bar:30}}] {{bytes}}/{{total_bytes}} {{binary_bytes_per_sec}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
            None => ProgressStyle::with_template(&format!(
                "{{prefix:>{LABEL_WIDTH}.bold}} {{spinner}} {{bytes}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        };
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::hidden())
            .with_style(style)
            .with_prefix(shown(label).chars().take(LABEL_WIDTH).collect::<String>());
        let bar = self.multi.add(bar);
        if total.is_none() {
            bar.enable_steady_tick(Duration::from_millis(120));
        }
        let old = self
            .bars
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), bar);
        // A task id started again replaces its bar; the old one goes.
        if let Some(b) = old {
            b.finish_and_clear();
            self.multi.remove(&b);
        }
    }
    fn advance(&self, id: &str, n: u64) {
        if let Some(b) = self.bars.lock().unwrap_or_else(|e| e.into_inner()).get(id) {
            b.inc(n);
        }
    }
    fn finish(&self, id: &str, summary: &str) {
        if let Some(b) = self
            .bars
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
        {
            b.finish_and_clear();
            self.multi.remove(&b);
        }
        let _ = self.multi.println(shown(summary));
    }
}
