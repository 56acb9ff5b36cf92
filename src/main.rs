//! The `boxwright` binary: start the one async runtime of the process, parse
//! the arguments, run the command, print results on stdout and everything
//! else on stderr, and map errors to exit codes (0 ok, 1 operation failed,
//! 2 bad input or usage).

mod cli;
mod ui;

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Parser;

use boxwright::registry::credentials::redact_secrets;

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
            // Any text a server sent is shown without a secret of ours it echoed.
            let _ = writeln!(stderr, "error: {}", redact_secrets(&err.to_string()));
            // A cause whose text an error above already holds is not repeated.
            for cause in boxwright::error::shown_chain(&*err).skip(1) {
                let _ = writeln!(
                    stderr,
                    "  caused by: {}",
                    redact_secrets(&cause.to_string())
                );
            }
            if boxwright::error::is_bad_input(&err) {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// Every command runs on this one runtime; synchronous work (the build's
/// rayon threads) runs on its blocking pool.
fn run(cli: Cli) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(cli::run(cli))
}

/// Only a closed stdout: any other broken pipe is a failure.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .is_some_and(|inner| inner.is::<cli::StdoutClosed>())
    })
}
