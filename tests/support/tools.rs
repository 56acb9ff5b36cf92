//! The external programs the tests run, and one way to run them: a test
//! that needs a missing program FAILS (it never skips), and its message says
//! how to get the program, so that a green run always means "checked".

use std::path::Path;
use std::process::{Child, Command, Output};

/// Program -> the Debian package that provides it. `scripts/test` installs
/// the packages of all but `script` and `bash` when they are missing; those
/// two are part of every Debian system.
const PACKAGES: &[(&str, &str)] = &[
    ("docker-registry", "docker-registry"),
    ("htpasswd", "apache2-utils"),
    ("skopeo", "skopeo"),
    ("umoci", "umoci"),
    ("oci-image-tool", "oci-image-tool"),
    ("jq", "jq"),
    ("openssl", "openssl"),
    ("tmux", "tmux"),
    ("curl", "curl"),
    ("python3.11", "python3.11"),
    ("podman", "podman"),
    ("runc", "runc"),
    ("debootstrap", "debootstrap"),
    ("buildah", "buildah"),
    ("cc", "gcc"),
    ("newuidmap", "uidmap"),
    ("script", "bsdutils"),
    ("bash", "bash"),
];

/// The message of a test that could not run `program`.
pub fn missing(program: &str, err: &std::io::Error) -> String {
    let package = PACKAGES
        .iter()
        .find(|(p, _)| *p == program)
        .map_or(program, |(_, pkg)| pkg);
    format!(
        "this test needs `{program}` (Debian package `{package}`) and could not run it: {err}. \
         Run the tests with scripts/test, which installs every program they need."
    )
}

/// Runs `cmd` to completion; panics with [`missing`] when its program
/// cannot be started.
pub fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("{}", missing(&program(cmd), &e)))
}

/// Starts `cmd`; panics with [`missing`] when its program cannot be started.
pub fn spawn(cmd: &mut Command) -> Child {
    cmd.spawn()
        .unwrap_or_else(|e| panic!("{}", missing(&program(cmd), &e)))
}

/// Runs `cmd` (an external tool) to completion and insists that it
/// succeeded, showing its output otherwise; its stdout.
pub fn succeed(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// podman with its own vfs storage under `storage` (`root/` and `run/`),
/// as containers run on this machine: cgroupfs, events in a file, runc.
pub fn podman(storage: &Path) -> Command {
    let mut c = Command::new("podman");
    c.arg("--root")
        .arg(storage.join("root"))
        .arg("--runroot")
        .arg(storage.join("run"))
        .args(["--storage-driver", "vfs", "--cgroup-manager=cgroupfs"])
        .args(["--events-backend=file", "--runtime", "runc"]);
    c
}

/// `podman run` as a container runs on this machine: removed when done,
/// no network, and limits the machine's runtime takes.
pub const PODMAN_RUN: &[&str] = &[
    "run",
    "--rm",
    "--network=none",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1000:1000",
];

/// Fails the test at once, with [`missing`], unless `program` is on PATH:
/// for programs run indirectly (by a script under test).
pub fn require(program: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()));
    if !found {
        let err = std::io::Error::new(std::io::ErrorKind::NotFound, "not found on PATH");
        panic!("{}", missing(program, &err));
    }
}

fn program(cmd: &Command) -> String {
    cmd.get_program().to_string_lossy().into_owned()
}
