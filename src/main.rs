//! The `boxwright` binary: parse arguments, call the library, print results on
//! stdout and everything else on stderr, map errors to exit codes (0 ok,
//! 1 operation failed, 2 bad input or usage).

mod cli;
mod commands {
    pub mod bench;
}
mod ui;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use boxwright::build::{self, BuildOptions};
use boxwright::error::bad_input;
use boxwright::layer::{Codec, Compression};
use boxwright::recipe::{self, LoadOptions, Vars};
use boxwright::{inspect, layout};
use cli::{Cli, Command, CompressionArg};

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

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn run(cli: Cli) -> Result<()> {
    let reporter = ui::reporter(cli.quiet, cli.verbose);
    match cli.command {
        Command::Build(args) => {
            let opts = LoadOptions {
                vars: Vars {
                    sets: args.sets.into_iter().collect(),
                    defaults: Default::default(),
                    use_env: true,
                },
                context: args.context.clone(),
                platforms: args.platform.clone(),
            };
            let plan = recipe::load(&args.recipe, &opts)?;
            let codec = match args.compression {
                CompressionArg::Gzip => Codec::Gzip,
                CompressionArg::Zstd => Codec::Zstd,
                CompressionArg::None => Codec::None,
            };
            let level = args.level.unwrap_or(codec.default_level());
            if !codec.level_range().contains(&level) {
                return Err(bad_input(format!(
                    "--level {level} is out of range for {:?} ({}..={})",
                    args.compression,
                    codec.level_range().start(),
                    codec.level_range().end()
                )));
            }
            let jobs = match args.jobs {
                Some(j) => usize::from(j),
                None => std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1),
            };
            let output = args
                .output
                .unwrap_or_else(|| PathBuf::from("out").join(&plan.name));
            let opts = BuildOptions {
                output,
                jobs,
                compression: Compression { codec, level },
                reporter,
            };
            let result = build::build(&plan, &opts)
                .with_context(|| format!("building {}", args.recipe.display()))?;
            let mut out = std::io::stdout().lock();
            if args.json {
                serde_json::to_writer_pretty(&mut out, &result)?;
                writeln!(out)?;
            } else {
                writeln!(out, "{}", result.digest)?;
            }
        }
        Command::Inspect(args) => {
            let (dir, name) = layout::split_layout_ref(&args.layout);
            let l = layout::Layout::open(&dir)?;
            let i = inspect::inspect(&l, name.as_deref())?;
            let mut out = std::io::stdout().lock();
            if args.json {
                serde_json::to_writer_pretty(&mut out, &i)?;
                writeln!(out)?;
            } else {
                write!(out, "{}", inspect::render(&i))?;
            }
        }
        Command::Bench(args) => commands::bench::run(args, reporter, cli.quiet)?,
    }
    Ok(())
}
