//! Running a docker credential helper (`docker-credential-<name> <verb>`):
//! bounded in time and in what it may print, and stopped when the run is
//! cancelled. A helper may wait on a keyring being unlocked, so the time
//! bound is generous; one that never answers, or prints without end, is an
//! error naming the program, never a hang.

use std::io::{Read as _, Write as _};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};

use crate::cancel;
use crate::error::bad_input;

/// How long a helper may take to answer.
pub(super) const HELPER_TIMEOUT: Duration = Duration::from_secs(120);

/// The most a helper may print (its answer is a small JSON object).
const MAX_OUTPUT: u64 = 1 << 20;

/// What a helper printed on stdout, and how it exited.
pub(super) struct HelperOutput {
    pub status: std::process::ExitStatus,
    pub stdout: Vec<u8>,
}

pub(super) fn helper_program(name: &str) -> anyhow::Result<String> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(bad_input(format!(
            "invalid credential helper name {name:?}"
        )));
    }
    Ok(format!("docker-credential-{name}"))
}

/// Run `docker-credential-<name> <verb>` with `input` on its stdin, and
/// wait for it: its program name and what it printed (never quoted in
/// errors: it may hold a secret).
pub(super) fn run_helper(
    name: &str,
    verb: &str,
    input: &[u8],
    helper_path: Option<&std::ffi::OsStr>,
) -> anyhow::Result<(String, HelperOutput)> {
    run_helper_within(name, verb, input, helper_path, HELPER_TIMEOUT)
}

fn run_helper_within(
    name: &str,
    verb: &str,
    input: &[u8],
    helper_path: Option<&std::ffi::OsStr>,
    timeout: Duration,
) -> anyhow::Result<(String, HelperOutput)> {
    let program = helper_program(name)?;
    let mut cmd = Command::new(&program);
    if let Some(p) = helper_path {
        cmd.env("PATH", p);
    }
    let mut child = cmd
        .arg(verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| match e.kind() {
            // The auth file names a helper this machine lacks: the user's to mend.
            std::io::ErrorKind::NotFound => bad_input(format!(
                "{program} is not installed (not found on PATH): install it, or remove the \
                 entry that names it"
            )),
            _ => anyhow!(e).context(format!("running {program} {verb}")),
        })?;
    let stdout = child.stdout.take();
    let (sent, read) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let got = match stdout {
            Some(s) => s.take(MAX_OUTPUT + 1).read_to_end(&mut buf).map(|_| buf),
            None => Ok(buf),
        };
        let _ = sent.send(got);
    });
    // Written on a thread of its own, so that a helper that reads nothing
    // is bounded by the timeout below rather than blocking the write; one
    // that exits without reading (a broken pipe) may still answer.
    let (wrote, written) = mpsc::channel();
    if let Some(mut stdin) = child.stdin.take() {
        let input = input.to_vec();
        std::thread::spawn(move || {
            let r = match stdin.write_all(&input) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                r => r,
            };
            let _ = wrote.send(r);
        });
    }
    let started = Instant::now();
    let stopped = |child: &mut std::process::Child, why: anyhow::Error| {
        let _ = child.kill();
        let _ = child.wait();
        Err(why)
    };
    let status = loop {
        if let Ok(Err(e)) = written.try_recv() {
            return stopped(
                &mut child,
                anyhow!(e).context(format!("writing to {program}")),
            );
        }
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("running {program}"))?
        {
            break status;
        }
        if cancel::requested() {
            return stopped(&mut child, anyhow!(cancel::Cancelled));
        }
        if started.elapsed() >= timeout {
            return stopped(
                &mut child,
                anyhow!(
                    "{program} {verb} did not answer within {} s; check that it works \
                     on its own (echo SERVER | {program} {verb})",
                    timeout.as_secs_f32()
                ),
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = match read.recv_timeout(Duration::from_secs(5)) {
        Ok(Ok(out)) if out.len() as u64 > MAX_OUTPUT => {
            anyhow::bail!("{program} {verb} printed more than {MAX_OUTPUT} bytes")
        }
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return Err(anyhow!(e).context(format!("reading {program}'s answer"))),
        Err(_) => anyhow::bail!(
            "{program} {verb} exited, but its output was not closed (a process it started \
             still holds it)"
        ),
    };
    Ok((program, HelperOutput { status, stdout }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn helper(dir: &std::path::Path, name: &str, script: &str) {
        let p = dir.join(format!("docker-credential-{name}"));
        std::fs::write(&p, script).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn a_helper_is_bounded_in_time_and_output_and_its_answer_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = format!("{}:/usr/bin:/bin", dir.path().display());
        let path = Some(std::ffi::OsStr::new(&path));
        helper(
            dir.path(),
            "echo",
            "#!/bin/sh\necho \"got $(cat) for $1\"\n",
        );
        let (program, out) = run_helper("echo", "get", b"ghcr.io", path).unwrap();
        assert_eq!(program, "docker-credential-echo");
        assert!(out.status.success());
        assert_eq!(out.stdout, b"got ghcr.io for get\n");

        let pid = dir.path().join("pid");
        helper(
            dir.path(),
            "hang",
            &format!("#!/bin/sh\necho $$ > '{}'\nexec sleep 30\n", pid.display()),
        );
        let started = Instant::now();
        let Err(err) = run_helper_within("hang", "get", b"x", path, Duration::from_millis(300))
        else {
            panic!("a helper that never answers was waited for")
        };
        assert!(started.elapsed() < Duration::from_secs(10));
        let said = format!("{err:#}");
        assert!(
            said.contains("docker-credential-hang get did not answer"),
            "{said}"
        );
        let pid = std::fs::read_to_string(&pid).unwrap();
        let alive = Command::new("kill")
            .args(["-0", pid.trim()])
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(!alive.success(), "the helper still runs");

        helper(dir.path(), "flood", "#!/bin/sh\nexec yes\n");
        let Err(err) = run_helper("flood", "get", b"x", path) else {
            panic!("a helper's endless output was read")
        };
        let said = format!("{err:#}");
        assert!(said.contains("printed more than 1048576 bytes"), "{said}");

        assert!(helper_program("../evil").is_err());

        // One that answers without reading its input, however long: the
        // write does not hold the answer up, nor fail it.
        helper(
            dir.path(),
            "deaf",
            "#!/bin/sh\nexec 0<&-\necho '{\"Secret\":\"s\"}'\n",
        );
        let big = vec![b'x'; 4 << 20];
        let (_, out) = run_helper("deaf", "store", &big, path).unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, b"{\"Secret\":\"s\"}\n");
        let Err(err) = run_helper_within("hang", "store", &big, path, Duration::from_millis(300))
        else {
            panic!("a helper that neither reads nor answers was waited for")
        };
        assert!(format!("{err:#}").contains("did not answer"), "{err:#}");

        let Err(err) = run_helper("not-installed", "get", b"x", path) else {
            panic!("a missing helper ran")
        };
        let said = format!("{err:#}");
        assert!(crate::error::is_bad_input(&err), "{said}");
        assert!(
            said.contains("docker-credential-not-installed is not installed"),
            "{said}"
        );
    }
}
