//! The binary's [`Reporter`]: indicatif bars on a terminal, plain lines when
//! stderr is not a terminal or in CI, nothing with `--quiet`.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use boxwright::progress::{Level, Reporter, SharedReporter};

/// Choose the reporter for this run.
pub fn reporter(quiet: bool, verbose: bool) -> SharedReporter {
    if quiet {
        return boxwright::progress::silent();
    }
    let min = if verbose { Level::Debug } else { Level::Info };
    let ci = std::env::var_os("CI").is_some()
        || std::env::var("GITHUB_ACTIONS").as_deref() == Ok("true");
    if std::io::stderr().is_terminal() && !ci {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        Arc::new(Bars {
            multi,
            bars: Mutex::new(HashMap::new()),
            min,
        })
    } else {
        Arc::new(Lines {
            min,
            labels: Mutex::new(HashMap::new()),
        })
    }
}

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
            self.line(&format!("{}{msg}", prefix(level)));
        }
    }
    fn start(&self, id: &str, label: &str, total: Option<u64>) {
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
        self.line(summary);
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
            let _ = self.multi.println(format!("{}{msg}", prefix(level)));
        }
    }
    fn start(&self, id: &str, label: &str, total: Option<u64>) {
        let bar = match total {
            Some(t) => {
                let b = ProgressBar::new(t);
                b.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>20.bold} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                b
            }
            None => {
                let b = ProgressBar::new_spinner();
                b.enable_steady_tick(Duration::from_millis(120));
                b
            }
        };
        bar.set_prefix(label.chars().take(20).collect::<String>());
        let bar = self.multi.add(bar);
        self.bars
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), bar);
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
        let _ = self.multi.println(summary);
    }
}
