//! What real consumers make of boxwright's images: containers run by podman
//! (vfs storage, runc, no network), with a small static program as the
//! image's entrypoint that reports what the container sees (ids, working
//! directory, files' modes and owners, whether it can write a file).

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use crate::support::tools;

/// The probe: prints `stat PATH mode=... uid=... gid=...` for each absolute
/// argument and, for each `w:PATH`, `write PATH ok` or `write PATH errno N`.
const PROBE: &str = r#"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
int main(int argc, char **argv) {
    printf("uid=%u gid=%u\n", (unsigned)getuid(), (unsigned)getgid());
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "w:", 2) == 0) {
            int fd = open(argv[i] + 2, O_WRONLY | O_CREAT | O_EXCL, 0644);
            if (fd < 0) printf("write %s errno %d\n", argv[i] + 2, errno);
            else { printf("write %s ok\n", argv[i] + 2); close(fd); }
            continue;
        }
        struct stat st;
        if (lstat(argv[i], &st) != 0) { printf("stat %s missing\n", argv[i]); continue; }
        printf("stat %s mode=%o uid=%u gid=%u\n", argv[i], (unsigned)st.st_mode,
               (unsigned)st.st_uid, (unsigned)st.st_gid);
    }
    return 0;
}
"#;

/// The probe compiled statically (so an image needs nothing else to run
/// it), kept under target/ by the hash of its source.
fn probe() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("consumers-probe")
        .join(&sha256(PROBE.as_bytes())[7..23]);
    let bin = dir.join("probe");
    if bin.is_file() {
        return bin;
    }
    fs::create_dir_all(&dir).unwrap();
    let src = dir.join("probe.c");
    fs::write(&src, PROBE).unwrap();
    let tmp = dir.join(format!("probe.tmp{}", std::process::id()));
    let out = tools::output(
        Command::new("cc")
            .args(["-static", "-O2", "-o"])
            .arg(&tmp)
            .arg(&src),
    );
    assert!(
        out.status.success(),
        "cc -static (the C compiler and static C library boxwright builds with) failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::rename(&tmp, &bin).unwrap();
    bin
}

/// podman with its own vfs storage under `dir`, run in `dir`: podman names
/// an `oci:` image after its path, which must be lowercase, so sources are
/// given relative to it.
struct Podman {
    dir: PathBuf,
}

impl Podman {
    fn new(dir: &Path) -> Podman {
        Podman {
            dir: dir.to_path_buf(),
        }
    }

    fn run(&self, args: &[&str]) -> String {
        tools::succeed(
            tools::podman(&self.dir.join("podman"))
                .current_dir(&self.dir)
                .args(args),
        )
    }

    /// Pulls `source` (`oci:DIR:TAG`, `oci-archive:...`, DIR relative to
    /// the podman's directory) and runs it with
    /// its own entrypoint and `args`; returns what the container printed.
    fn pull_and_run(&self, source: &str, args: &[&str]) -> String {
        let id = self.run(&["pull", "--quiet", source]);
        let mut all = tools::PODMAN_RUN.to_vec();
        all.push(id.trim());
        all.extend_from_slice(args);
        self.run(&all)
    }
}

/// The line the probe printed for `what` (`stat /tmp`, `write /tmp/x`).
fn line<'a>(out: &'a str, what: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("{what} ")))
        .unwrap_or_else(|| panic!("no {what:?} in:\n{out}"))
}

/// A layer above a base, or above another layer of the recipe, leaves the
/// directories it writes into as the layers below made them: the base's
/// 1777 `/tmp` and its user's 0700 home, the recipe's own 0770 data
/// directory, stay so, and the container's user still writes there; the
/// base's `/bin`, a link to `usr/bin` as on Debian 12, stays a link.
/// (Writing their parents as 0755 root directories would have unpackers give
/// that mode and owner to the directories already there, and replace the
/// link by a directory.)
#[test]
fn layers_above_others_keep_the_directories_they_write_into() {
    let dir = crate::support::tempdir();
    let ctx = dir.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::copy(probe(), ctx.join("probe")).unwrap();
    // Directories copied into /tmp, the home and a new /opt/tree, each 0700.
    for d in ["tmpfiles", "homefiles", "optfiles"] {
        fs::create_dir(ctx.join(d)).unwrap();
        write(&ctx.join(d).join("f"), d);
        fs::set_permissions(ctx.join(d).join("f"), fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(ctx.join(d), fs::Permissions::from_mode(0o700)).unwrap();
    }
    write(
        &ctx.join("base.toml"),
        r#"tags = ["1"]
[image]
name = "base"
[config]
entrypoint = ["/bin/probe"]
user = "1000:1000"
[[layer]]
[[layer.entry]]
src = "probe"
dest = "/usr/bin/probe"
mode = 0o755
[[layer.entry]]
symlink = "usr/bin"
dest = "/bin"
[[layer.entry]]
dir = true
dest = "/tmp"
mode = 0o1777
[[layer.entry]]
dir = true
dest = "/home/app"
mode = 0o700
uid = 1000
gid = 1000
"#,
    );
    ok(boxwright()
        .args(["build", "--quiet", "-o"])
        .arg(dir.path().join("base"))
        .arg(ctx.join("base.toml")));
    write(
        &dir.path().join("app.toml"),
        r#"tags = ["1"]
[image]
name = "app"
base = "oci:base:1"
[[layer]]
name = "data"
[[layer.entry]]
dir = true
dest = "/srv/data"
mode = 0o770
uid = 1000
gid = 1000
[[layer]]
name = "config"
[[layer.entry]]
content = "a = 1\n"
dest = "/tmp/app/app.conf"
[[layer.entry]]
content = "b = 2\n"
dest = "/home/app/.config/app.conf"
[[layer.entry]]
content = "c = 3\n"
dest = "/srv/data/seed"
[[layer.entry]]
content = "d = 4\n"
dest = "/bin/app.conf"
[[layer]]
name = "trees"
[[layer.entry]]
src = "tmpfiles"
dest = "/tmp"
[[layer.entry]]
src = "homefiles"
dest = "/home/app"
uid = 1000
gid = 1000
[[layer.entry]]
src = "optfiles"
dest = "/opt/tree"
"#,
    );
    let app = dir.path().join("app");
    ok(boxwright()
        .args(["build", "--quiet", "--context"])
        .arg(&ctx)
        .arg("-o")
        .arg(&app)
        .arg(dir.path().join("app.toml")));

    let out = Podman::new(dir.path()).pull_and_run(
        "oci:app:1",
        &[
            "/tmp",
            "/home/app",
            "/srv/data",
            "/srv",
            "/tmp/app",
            "/bin",
            "/usr/bin/app.conf",
            "/opt/tree",
            "/opt/tree/f",
            "/home/app/f",
            "w:/tmp/x",
            "w:/home/app/x",
            "w:/srv/data/x",
        ],
    );
    assert_eq!(line(&out, "uid=1000"), "uid=1000 gid=1000", "{out}");
    assert_eq!(line(&out, "stat /tmp"), "stat /tmp mode=41777 uid=0 gid=0");
    assert_eq!(
        line(&out, "stat /home/app"),
        "stat /home/app mode=40700 uid=1000 gid=1000"
    );
    assert_eq!(
        line(&out, "stat /srv/data"),
        "stat /srv/data mode=40770 uid=1000 gid=1000"
    );
    // Directories no layer below holds are made as before: 0755 root.
    assert_eq!(line(&out, "stat /srv"), "stat /srv mode=40755 uid=0 gid=0");
    assert_eq!(
        line(&out, "stat /tmp/app"),
        "stat /tmp/app mode=40755 uid=0 gid=0"
    );
    assert_eq!(line(&out, "stat /bin"), "stat /bin mode=120777 uid=0 gid=0");
    assert_eq!(
        line(&out, "stat /usr/bin/app.conf"),
        "stat /usr/bin/app.conf mode=100644 uid=0 gid=0"
    );
    // A directory `src` gives its contents, not its own mode, as Docker's
    // COPY does: into /tmp and the home above, and into a new directory.
    assert_eq!(
        line(&out, "stat /opt/tree"),
        "stat /opt/tree mode=40755 uid=0 gid=0"
    );
    assert_eq!(
        line(&out, "stat /opt/tree/f"),
        "stat /opt/tree/f mode=100644 uid=0 gid=0"
    );
    assert_eq!(
        line(&out, "stat /home/app/f"),
        "stat /home/app/f mode=100644 uid=1000 gid=1000"
    );
    for path in ["/tmp/x", "/home/app/x", "/srv/data/x"] {
        assert_eq!(
            line(&out, &format!("write {path}")),
            format!("write {path} ok"),
            "{out}"
        );
    }
}

/// `docker load` and `podman load` take a docker-archive only when each of
/// its `RepoTags` is an image reference, whose repository is lowercase: a
/// docker-archive of an image named with capitals is refused before anything
/// is built (exit 2, naming the recipe and the name, no file written); in
/// lowercase it loads under every tag (which may hold capitals).
#[test]
fn a_docker_archive_is_written_only_under_names_podman_load_takes() {
    let dir = crate::support::tempdir();
    let recipe = |name: &str| {
        let path = dir.path().join(format!("{name}.toml"));
        write(
            &path,
            &format!(
                "tags = [\"V1.0\", \"latest\"]\n[image]\nname = \"{name}\"\n[[layer]]\n[[layer.entry]]\ncontent = \"x\"\ndest = \"/x\"\n"
            ),
        );
        path
    };
    let refused = dir.path().join("refused.tar");
    let r = run(boxwright()
        .args(["build", "--quiet", "--format", "docker-archive", "-o"])
        .arg(&refused)
        .arg(recipe("My_App")));
    assert_code(&r, 2);
    assert!(
        r.stderr.contains("My_App.toml") && r.stderr.contains("\"My_App:V1.0\""),
        "{}",
        r.stderr
    );
    assert!(!refused.exists());
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        1,
        "only the recipe"
    );

    let archive = dir.path().join("app.tar");
    ok(boxwright()
        .args(["build", "--quiet", "--format", "docker-archive", "-o"])
        .arg(&archive)
        .arg(recipe("my_app.v2")));
    let loaded = Podman::new(dir.path()).run(&["load", "--quiet", "-i", "app.tar"]);
    assert_eq!(
        loaded.lines().collect::<Vec<_>>(),
        [
            "Loaded image: localhost/my_app.v2:V1.0",
            "Loaded image: localhost/my_app.v2:latest"
        ]
    );
}

/// The highest owner a recipe may give, 4294967294, is the file's owner in
/// the container; 4294967295 is `(uid_t)-1`, which unpackers' `chown` takes
/// as "leave the owner as it is", so the file would be root's: it is refused
/// at its line (exit 2).
#[test]
fn the_highest_owner_a_recipe_takes_is_the_one_the_container_sees() {
    let dir = crate::support::tempdir();
    fs::copy(probe(), dir.path().join("probe")).unwrap();
    let recipe = |id: &str| {
        format!(
            "tags = [\"1\"]\n[image]\nname = \"owners\"\n[config]\nentrypoint = [\"/probe\", \"/owned\"]\n[[layer]]\n[[layer.entry]]\nsrc = \"probe\"\ndest = \"/probe\"\n[[layer.entry]]\ncontent = \"x\"\ndest = \"/owned\"\nuid = {id}\ngid = {id}\n"
        )
    };
    write(&dir.path().join("recipe.toml"), &recipe("4294967295"));
    let r = run(boxwright()
        .args(["build", "--quiet", "-o"])
        .arg(dir.path().join("owners"))
        .arg(dir.path().join("recipe.toml")));
    assert_code(&r, 2);
    assert!(r.stderr.contains("recipe.toml:14:7"), "{}", r.stderr);
    assert!(!dir.path().join("owners").exists());

    write(&dir.path().join("recipe.toml"), &recipe("4294967294"));
    ok(boxwright()
        .args(["build", "--quiet", "-o"])
        .arg(dir.path().join("owners"))
        .arg(dir.path().join("recipe.toml")));
    let out = Podman::new(dir.path()).pull_and_run("oci:owners:1", &[]);
    assert_eq!(
        line(&out, "stat /owned"),
        "stat /owned mode=100644 uid=4294967294 gid=4294967294"
    );
}
