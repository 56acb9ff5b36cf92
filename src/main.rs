//! The `boxwright` binary: start the one async runtime of the process, parse
//! the arguments, run the command, print results on stdout and everything
//! else on stderr, and map errors to exit codes (0 ok, 1 operation failed,
//! 2 bad input or usage, 128 + the signal's number when SIGINT or SIGTERM
//! stopped it, 124 when `--timeout` did).

mod cli;
mod ui;

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::Parser;

use cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            let mut stderr = std::io::stderr().lock();
            // Any text a server sent is shown without a secret of ours it
            // echoed, and on its one line: a newline or an escape sequence
            // in it cannot forge a line or rewrite the screen.
            let _ = writeln!(stderr, "error: {}", ui::shown(&err.to_string()));
            // A cause whose text an error above already holds is not repeated.
            for cause in boxwright::error::shown_chain(&*err).skip(1) {
                let _ = writeln!(stderr, "  caused by: {}", ui::shown(&cause.to_string()));
            }
            if let Some(stopped) = err.downcast_ref::<Stopped>() {
                ExitCode::from(stopped.code())
            } else if boxwright::error::is_bad_input(&err) {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// Every command runs on this one runtime; synchronous work (the build's
/// rayon threads) runs on its blocking pool.
///
/// SIGINT, SIGTERM or the `--timeout` deadline cancels the run
/// ([`boxwright::cancel`]): the command's future is dropped, which removes
/// the temporary files it holds, and the blocking threads are given
/// [`GRACE`] to stop at their next block and remove theirs. An output being
/// replaced is left as it was.
fn run(cli: Cli) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // Threads of their own, so that they are heard while the command's
    // future is busy on this thread, and still while the runtime waits for
    // its blocking threads to stop.
    listen(tx.clone());
    if let Some(limit) = cli.timeout {
        std::thread::spawn(move || {
            std::thread::sleep(limit);
            stop_run(Stopped::Deadline(limit), &tx, || false);
        });
    }
    let outcome = rt.block_on(async {
        tokio::select! {
            r = cli::run(cli) => r,
            // Without a listener (signals could not be set up) and without
            // a deadline, the run goes on.
            Some(stopped) = rx.recv() => Err(stopped.into()),
        }
    });
    // Work that saw the cancellation may fail before the stop is told
    // here: a run that failed once it was stopped was stopped by it.
    let outcome = match (outcome, STOPPED.get()) {
        (Err(e), Some(stopped)) if !e.is::<Stopped>() => Err((*stopped).into()),
        (outcome, _) => outcome,
    };
    if let Some(stopped) = outcome
        .as_ref()
        .err()
        .and_then(|e| e.downcast_ref::<Stopped>())
    {
        // The command's future is dropped: what its push had done is told
        // (with --json) before the runtime is given its grace.
        cli::stopped::write(&stopped.to_string(), true);
        rt.shutdown_timeout(GRACE);
    }
    outcome
}

/// What stopped the run, once something did.
static STOPPED: std::sync::OnceLock<Stopped> = std::sync::OnceLock::new();

/// How long a stopped run's blocking work has to stop.
const GRACE: Duration = Duration::from_secs(5);

/// The run was stopped before it finished.
#[derive(Clone, Copy, Debug, thiserror::Error)]
enum Stopped {
    /// By this signal (its number).
    #[error("interrupted by {}: the run stopped", signal_name(*.0))]
    Signal(u8),
    /// By `--timeout`.
    #[error("timed out: the run took longer than --timeout ({} s) and stopped", .0.as_secs())]
    Deadline(Duration),
}

impl Stopped {
    /// The exit code: 128 + the signal's number, or 124 as `timeout(1)`.
    fn code(self) -> u8 {
        match self {
            Stopped::Signal(n) => 128 + n,
            Stopped::Deadline(_) => 124,
        }
    }
}

fn signal_name(n: u8) -> &'static str {
    match n {
        2 => "SIGINT",
        _ => "SIGTERM",
    }
}

/// Stop the run for `why` (the first stop wins): mark it cancelled, tell
/// `tell`, and give it [`GRACE`] to end (less when `hurry`, polled every
/// 20 ms, says to). A run still going then is ended here, with `why`'s exit
/// code: the command's future is dropped only when its thread is free, and
/// one blocked in a read (a password typed on a terminal) is not, while the
/// runtime waits for its blocking threads (a credential helper that does
/// not answer).
fn stop_run(
    why: Stopped,
    tell: &tokio::sync::mpsc::UnboundedSender<Stopped>,
    mut hurry: impl FnMut() -> bool,
) {
    if STOPPED.set(why).is_err() {
        // Already stopping (the deadline came first): a signal now ends
        // the run at once.
        if let (Stopped::Signal(_), Some(first)) = (why, STOPPED.get()) {
            cli::stopped::write(&first.to_string(), false);
            eprintln!("error: {first}");
            std::process::exit(i32::from(first.code()));
        }
        return;
    }
    boxwright::cancel::request();
    let _ = tell.send(why);
    let deadline = Instant::now() + GRACE;
    while Instant::now() < deadline && !hurry() {
        std::thread::sleep(Duration::from_millis(20));
    }
    // The command's thread did not end in time: its stopped report, unless
    // that thread is writing it.
    cli::stopped::write(&why.to_string(), false);
    eprintln!("error: {why}");
    std::process::exit(i32::from(why.code()));
}

/// Waits, on a thread of its own, for SIGINT or SIGTERM and stops the run
/// ([`stop_run`]); a second signal ends it at once. A plain thread, not a
/// task: the runtime's shutdown would drop a task. The signals are set up
/// before this returns; when they cannot be, nothing is told and the run
/// goes on.
fn listen(tell: tokio::sync::mpsc::UnboundedSender<Stopped>) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    std::thread::spawn(move || {
        let Some(first) = signals.forever().next() else {
            return;
        };
        let n = if first == SIGINT { 2 } else { 15 };
        stop_run(Stopped::Signal(n), &tell, || {
            signals.pending().next().is_some()
        });
    });
}

/// Only a closed stdout: any other broken pipe is a failure.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .is_some_and(|inner| inner.is::<cli::StdoutClosed>())
    })
}
