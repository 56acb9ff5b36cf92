//! The process's stdout, which carries only results (digests, tables,
//! JSON). Its broken-pipe errors are marked, so that `main` can tell a
//! closed stdout (`boxwright build ... | head -c 10`), which is not a
//! failure, from any other broken pipe (a credential helper that closed its
//! stdin), which is.

use std::io::{self, Write};

/// The process's stdout, locked, with broken pipes marked [`StdoutClosed`].
pub fn stdout() -> Stdout {
    Stdout(io::stdout().lock())
}

/// Write `text` to stdout and flush it.
pub fn print(text: &str) -> io::Result<()> {
    let mut out = stdout();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Write `value` as pretty JSON and a newline to stdout: the command's
/// document, so a stopped run's report is not written after it
/// ([`super::stopped`]).
pub fn print_json<T: serde::Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    super::stopped::disarm();
    print(&boxwright::render::json(value)?)?;
    Ok(())
}

/// The end of a command that pushes: its warnings on stderr, then the
/// `--json` report, or the digest when it succeeded.
pub fn print_outcome(
    reporter: &boxwright::progress::SharedReporter,
    json: bool,
    report: &impl Outcome,
) -> anyhow::Result<()> {
    for w in report.warnings() {
        reporter.log(boxwright::progress::Level::Warn, &w);
    }
    if json {
        print_json(report)
    } else if report.succeeded() {
        Ok(print(&format!("{}\n", report.digest()))?)
    } else {
        Ok(())
    }
}

/// The report of a command that writes one image to registries.
pub trait Outcome: serde::Serialize {
    fn warnings(&self) -> Vec<String>;
    fn succeeded(&self) -> bool;
    /// The digest every destination now names.
    fn digest(&self) -> &boxwright::oci::Digest;
}

pub struct Stdout(io::StdoutLock<'static>);

/// Marks an `io::Error` as coming from writing stdout.
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout was closed")
    }
}

impl std::error::Error for StdoutClosed {}

fn mark(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        io::Error::new(io::ErrorKind::BrokenPipe, StdoutClosed)
    } else {
        e
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(mark)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(mark)
    }
}
