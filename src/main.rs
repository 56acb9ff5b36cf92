//! The `boxwright` binary: start the one async runtime of the process, parse
//! the arguments, run the command, print results on stdout and everything
//! else on stderr, and map errors to exit codes (0 ok, 1 operation failed,
//! 2 bad input or usage, 128 + the signal's number when SIGINT or SIGTERM
//! stopped it).

mod cli;
mod ui;

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, Ordering};
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
            if let Some(Interrupted(signal)) = err.downcast_ref() {
                ExitCode::from(128 + signal)
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
/// SIGINT or SIGTERM cancels the run ([`boxwright::cancel`]): the command's
/// future is dropped, which removes the temporary files it holds, and the
/// blocking threads are given [`GRACE`] to stop at their next block and
/// remove theirs. An output being replaced is left as it was.
fn run(cli: Cli) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    // A thread of its own, so that it is heard while the command's future
    // is busy on this thread, and still while the runtime waits for its
    // blocking threads to stop.
    listen(tx);
    let outcome = rt.block_on(async {
        tokio::select! {
            r = cli::run(cli) => r,
            // Without a listener (signals could not be set up), the run goes on.
            Ok(signal) = &mut rx => Err(Interrupted(signal).into()),
        }
    });
    // Work that saw the cancellation may fail before the signal is told
    // here: a run that failed once a signal came was stopped by it.
    let outcome = match (outcome, SIGNALLED.load(Ordering::SeqCst)) {
        (Err(e), n) if n != 0 && !e.is::<Interrupted>() => Err(Interrupted(n).into()),
        (outcome, _) => outcome,
    };
    if let Err(e) = &outcome {
        if e.is::<Interrupted>() {
            rt.shutdown_timeout(GRACE);
        }
    }
    outcome
}

/// The signal that stopped the run (its number), 0 while none came.
static SIGNALLED: AtomicU8 = AtomicU8::new(0);

/// How long an interrupted run's blocking work has to stop.
const GRACE: Duration = Duration::from_secs(5);

/// The run was stopped by this signal (its number).
#[derive(Debug, thiserror::Error)]
#[error("interrupted by {}: the run stopped", signal_name(*.0))]
struct Interrupted(u8);

fn signal_name(n: u8) -> &'static str {
    match n {
        2 => "SIGINT",
        _ => "SIGTERM",
    }
}

/// Waits, on a thread of its own, for SIGINT or SIGTERM, marks the run
/// cancelled and tells `stop`. The command's future is dropped only when
/// its thread is free: one blocked in a read (a password typed on a
/// terminal) is not, and the command's runtime then waits up to [`GRACE`]
/// for its blocking threads (a credential helper that does not answer). So
/// a second signal, or [`GRACE`] without the run having ended, ends the
/// process here. A plain thread, not a task: the runtime's shutdown would
/// drop a task. The signals are set up before this returns; when they
/// cannot be, nothing is told and the run goes on.
fn listen(stop: tokio::sync::oneshot::Sender<u8>) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    std::thread::spawn(move || {
        let Some(first) = signals.forever().next() else {
            return;
        };
        let n = if first == SIGINT { 2 } else { 15 };
        SIGNALLED.store(n, Ordering::SeqCst);
        boxwright::cancel::request();
        let _ = stop.send(n);
        let deadline = Instant::now() + GRACE;
        while Instant::now() < deadline && signals.pending().next().is_none() {
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("error: {}", Interrupted(n));
        std::process::exit(128 + i32::from(n));
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
