//! The `boxwright` binary: parse arguments, call the library, print results on
//! stdout and everything else on stderr, map errors to exit codes (0 ok,
//! 1 operation failed, 2 bad input or usage).

mod cli;
mod commands;
mod ui;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use boxwright::{inspect, layout};
use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "error: {err}");
            for cause in err.chain().skip(1) {
                let _ = writeln!(stderr, "  caused by: {cause}");
            }
            if boxwright::error::is_bad_input(&err) {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// Only a closed stdout: any other broken pipe is a failure.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .is_some_and(|inner| inner.is::<commands::StdoutClosed>())
    })
}

fn run(cli: Cli) -> Result<()> {
    let reporter = ui::reporter(cli.quiet, cli.verbose);
    match cli.command {
        Command::Build(args) => commands::build::run(args, reporter)?,
        Command::Push(args) => commands::push::run(args, reporter)?,
        Command::Login(args) => commands::login::run_login(args, reporter)?,
        Command::Logout(args) => commands::login::run_logout(args, reporter)?,
        Command::Verify(args) => commands::verify::run(args, reporter)?,
        Command::Tags(args) => commands::tags::run(args, reporter)?,
        Command::Copy(args) => commands::copy::run(args, reporter)?,
        Command::Pull(args) => commands::pull::run(args, reporter)?,
        Command::Index(args) => commands::index::run(args, reporter)?,
        Command::Completions(args) => commands::completions::run(args)?,
        Command::Schema(args) => commands::schema::run(args)?,
        Command::Inspect(args) => {
            let (dir, name) = layout::split_layout_ref(&args.layout);
            let l = layout::Layout::open(&dir)?;
            let i = inspect::inspect(&l, name.as_deref())?;
            let mut out = crate::commands::stdout();
            if args.json {
                out.write_all(&serde_json::to_vec_pretty(&i)?)?;
                writeln!(out)?;
            } else {
                write!(out, "{}", inspect::render(&i))?;
            }
        }
        Command::Bench(args) => commands::bench::run(args, reporter, cli.quiet)?,
    }
    Ok(())
}
