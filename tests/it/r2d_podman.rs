//! The R2D layers on a real Debian: `debootstrap` makes a bookworm root
//! filesystem with Debian's python3.11 (cached under target/, keyed by the
//! command, the mirror and debootstrap's version), boxwright turns it into a
//! base layout (one `src` layer), builds the R2D dependency, app and
//! entrypoint layers on it for Debian's paths, and podman (vfs storage, runc,
//! no network) runs the image: the app imports its dependencies from the
//! image and the entrypoint runs the console-script launcher.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use crate::common::*;
use crate::r2d::host_arch;
use crate::support::tools;

const SUITE: &str = "bookworm";
const INCLUDE: &str = "python3.11-minimal,libpython3.11-stdlib";

/// The Debian archive the machine's apt sources name for `SUITE`.
fn debian_mirror() -> String {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir.map(|e| e.unwrap().path()).collect();
        more.sort();
        files.extend(more);
    }
    for f in files {
        let Ok(text) = fs::read_to_string(&f) else {
            continue;
        };
        // deb822 stanzas (`URIs:` and `Suites:`) and one-line `deb URI SUITE ...`.
        for stanza in text.split("\n\n") {
            let field = |name: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.split_whitespace().map(String::from).collect::<Vec<_>>())
            };
            if let (Some(uris), Some(suites)) = (field("URIs:"), field("Suites:")) {
                if suites.iter().any(|s| s == SUITE) {
                    return uris[0].clone();
                }
            }
            for line in stanza.lines() {
                let words: Vec<&str> = line
                    .split_whitespace()
                    .filter(|w| !w.starts_with('['))
                    .collect();
                if words.len() >= 3 && words[0] == "deb" && words[2] == SUITE {
                    return words[1].to_string();
                }
            }
        }
    }
    panic!("no apt source for Debian {SUITE} in /etc/apt/sources.list*: this test needs one");
}

/// A bookworm root filesystem made by debootstrap, reused while its key
/// (the command, the mirror, debootstrap's version) is unchanged.
fn debian_rootfs() -> PathBuf {
    let mirror = debian_mirror();
    let version = fs::read_to_string("/usr/share/debootstrap/version").unwrap_or_default();
    let key = format!("minbase {INCLUDE} {SUITE} {mirror} {}", version.trim());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("r2d-debootstrap")
        .join(&sha256(key.as_bytes())[7..23]);
    let rootfs = dir.join("rootfs");
    if dir.join("complete").is_file() {
        return rootfs;
    }
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let out = tools::output(
        Command::new("debootstrap")
            .args(["--variant=minbase", &format!("--include={INCLUDE}"), SUITE])
            .arg(&rootfs)
            .arg(&mirror),
    );
    assert!(
        out.status.success(),
        "debootstrap {SUITE} from {mirror} failed (it needs root):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    fs::write(dir.join("complete"), key).unwrap();
    rootfs
}

const BASE: &str = r#"tags = ["bookworm"]
[image]
name = "debian"
[config]
cmd = ["/bin/bash"]
[config.env]
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
[[layer]]
name = "rootfs"
[[layer.entry]]
src = "."
dest = "/"
exclude = ["dev/**", "proc/**", "sys/**", "var/cache/apt/**", "var/lib/apt/lists/**"]
"#;

/// The R2D layers of recipes/r2d.toml, for Debian's python3.11.
fn image_recipe(base: &Path) -> String {
    let python = |lock: &str| {
        format!(
            "python = {{ lock = \"{lock}\", version = \"3.11\", site_packages = \"/usr/local/lib/python3.11/dist-packages\", interpreter = \"/usr/bin/python3.11\" }}"
        )
    };
    format!(
        r#"[image]
name = "r2d-debian"
base = "oci:{}:bookworm"
[config]
entrypoint = ["/opt/r2d/entrypoint.sh"]
workdir = "/github/workspace"
[config.env]
PYTHONDONTWRITEBYTECODE = "1"
[[layer]]
name = "python-deps"
[[layer.entry]]
dest = "/usr/local"
{}
[[layer]]
name = "python-app"
[[layer.entry]]
dest = "/usr/local"
{}
[[layer]]
name = "entrypoint"
[[layer.entry]]
src = "fixtures/r2d/entrypoint.sh"
dest = "/opt/r2d/entrypoint.sh"
mode = 0o755
[[layer.entry]]
content = "region = \"eu-west-1\"\nbucket = \"r2d\"\n"
dest = "/github/workspace/main.tf"
mode = 0o644
"#,
        base.display(),
        python("fixtures/r2d/pylock.toml"),
        python("fixtures/r2d/pylock.app.toml"),
    )
}

#[test]
fn the_r2d_layers_on_a_debootstrapped_debian_run_under_podman() {
    let rootfs = debian_rootfs();
    let tmp = TempDir::new().unwrap();
    let base = tmp.path().join("base");
    write(&tmp.path().join("base.toml"), BASE);
    ok(boxwright()
        .args(["build", "--quiet", "--compression", "none", "--context"])
        .arg(&rootfs)
        .arg("-o")
        .arg(&base)
        .arg(tmp.path().join("base.toml")));
    write(&tmp.path().join("r2d.toml"), &image_recipe(&base));
    let archive = tmp.path().join("r2d.tar");
    ok(boxwright()
        .args(["build", "--quiet", "--format", "oci-archive", "--platform"])
        .arg(format!("linux/{}", host_arch()))
        .arg("--context")
        .arg(root())
        .arg("-o")
        .arg(&archive)
        .arg(tmp.path().join("r2d.toml")));

    let storage = tmp.path().join("podman");
    let podman = |args: &[&str]| tools::succeed(tools::podman(&storage).args(args));
    let image = podman(&[
        "pull",
        "--quiet",
        &format!("oci-archive:{}", archive.display()),
    ]);
    let image = image.trim();
    let run = |args: &[&str]| {
        let mut all = tools::PODMAN_RUN.to_vec();
        all.extend_from_slice(args);
        podman(&all)
    };
    // Debian's python3.11 finds the packages in /usr/local/lib/python3.11/dist-packages.
    let files = run(&[
        "--entrypoint",
        "/usr/bin/python3.11",
        image,
        "-c",
        "import diagram_to_iac.cli, hcl2lite, repoprobe\nfor m in (diagram_to_iac.cli, hcl2lite, repoprobe): print(m.__file__)",
    ]);
    assert_eq!(
        files.lines().collect::<Vec<_>>(),
        [
            "/usr/local/lib/python3.11/dist-packages/diagram_to_iac/cli.py",
            "/usr/local/lib/python3.11/dist-packages/hcl2lite/__init__.py",
            "/usr/local/lib/python3.11/dist-packages/repoprobe/__init__.py",
        ]
    );
    // The entrypoint execs the launcher, whose shebang is Debian's python3.11.
    assert_eq!(
        run(&[image, "--dry-run", "."]).trim(),
        "R2D: .: 1 terraform files, 2 settings"
    );
    assert_eq!(
        run(&["--entrypoint", "/usr/local/bin/r2d", image, "--version"]).trim(),
        "r2d 1.4.0"
    );
}
