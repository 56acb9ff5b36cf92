//! Progress on a terminal, read as a user reads it: the command runs in a
//! tmux pane, and the screen (`capture-pane`) is checked once it is done.
//! Every bar a command starts must be gone by then (a bar frozen at
//! `0 B/...` above the finished lines is what this guards against), and a
//! layer built per platform says which platform in its lines.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::{noise, write};
use crate::support::{tempdir, tools, Registry};

/// The screen of a tmux pane (200 x 60) that ran `cmd` to its end (its
/// history included, each line without trailing blanks), and the command's
/// exit status. The tmux server is
/// private to the test (its own socket) and sees neither CI nor
/// GITHUB_ACTIONS, so the binary draws bars.
fn screen(dir: &Path, cmd: &str) -> (String, i32) {
    tools::require("tmux");
    static SERVERS: AtomicUsize = AtomicUsize::new(0);
    let sock = dir.join(format!(
        "tmux-{}.sock",
        SERVERS.fetch_add(1, Ordering::SeqCst)
    ));
    let tmux = || {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&sock).args(["-f", "/dev/null"]);
        c.env_remove("CI")
            .env_remove("GITHUB_ACTIONS")
            .env_remove("TMUX")
            .env("TERM", "xterm-256color");
        c
    };
    let script = format!("{cmd}; echo \"__done__ $?\"; sleep 600");
    let out = tools::output(tmux().args(["new-session", "-d", "-x", "200", "-y", "60", &script]));
    assert!(out.status.success(), "tmux new-session: {out:?}");
    let capture = || {
        let out = tools::output(tmux().args(["capture-pane", "-p", "-S", "-"]));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .map(|l| format!("{}\n", l.trim_end()))
            .collect::<String>()
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    let text = loop {
        let text = capture();
        if text.contains("__done__ ") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = tools::output(tmux().arg("kill-server"));
    let status = text
        .lines()
        .find_map(|l| l.strip_prefix("__done__ "))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("the command did not end within 180 s:\n{text}"));
    (text, status)
}

/// Lines that are (part of) a progress bar or spinner: a transfer rate, a
/// bar frozen at zero, or a spinner's braille frame.
fn bar_lines(screen: &str) -> Vec<&str> {
    screen
        .lines()
        .filter(|l| {
            l.contains("B/s")
                || l.contains(" 0 B/")
                || l.chars().any(|c| ('\u{2800}'..='\u{28ff}').contains(&c))
        })
        .collect()
}

fn quoted(p: &Path) -> String {
    format!("'{}'", p.display())
}

#[test]
fn a_big_one_layer_build_leaves_no_bar_on_screen() {
    let dir = tempdir();
    // 24 MB that gzip cannot shrink, in a tree: long enough to be drawn.
    for i in 0..3 {
        std::fs::create_dir_all(dir.path().join("tree")).unwrap();
        std::fs::write(
            dir.path().join(format!("tree/f{i}")),
            noise(8 << 20, 90 + i),
        )
        .unwrap();
    }
    let recipe = dir.path().join("r.toml");
    write(
        &recipe,
        "[image]\nname = \"big\"\n\n[[layer]]\nname = \"layer 1\"\n\n[[layer.entry]]\nsrc = \"tree\"\ndest = \"/data\"\n",
    );
    let cmd = format!(
        "{} build {} -o {} --jobs 1",
        env!("CARGO_BIN_EXE_boxwright"),
        quoted(&recipe),
        quoted(&dir.path().join("out"))
    );
    let (text, status) = screen(dir.path(), &cmd);
    assert_eq!(status, 0, "{text}");
    // Figure: the finished line is there, and no bar at all.
    assert!(text.contains("layer 1: sha256:"), "{text}");
    assert_eq!(bar_lines(&text), Vec::<&str>::new(), "screen:\n{text}");
}

#[test]
fn a_two_platform_build_and_push_labels_platform_layers_and_clears_every_bar() {
    let dir = tempdir();
    let reg = Registry::start();
    std::fs::write(dir.path().join("shared.bin"), noise(6 << 20, 95)).unwrap();
    for (i, arch) in ["amd64", "arm64"].iter().enumerate() {
        std::fs::write(
            dir.path().join(format!("tools-{arch}.bin")),
            noise(4 << 20, 96 + i as u64),
        )
        .unwrap();
    }
    let recipe = dir.path().join("r.toml");
    write(
        &recipe,
        "[image]\nname = \"two\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n\n\
         [[layer]]\nname = \"shared\"\n\n[[layer.entry]]\nsrc = \"shared.bin\"\ndest = \"/shared.bin\"\n\n\
         [[layer]]\nname = \"tools\"\n\n[[layer.entry]]\nsrc = \"tools-${ARCH}.bin\"\ndest = \"/usr/local/bin/tools\"\nmode = 0o755\n",
    );
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join("docker")).unwrap();
    for push in [false, true] {
        let mut cmd = format!(
            "HOME={} DOCKER_CONFIG={} {} build {} -o {} --jobs 1",
            quoted(&home),
            quoted(&home.join("docker")),
            env!("CARGO_BIN_EXE_boxwright"),
            quoted(&recipe),
            quoted(&dir.path().join(format!("out-{push}")))
        );
        if push {
            cmd.push_str(&format!(" --push --to {}/acme/two:1", reg.host()));
        }
        let (text, status) = screen(dir.path(), &cmd);
        assert_eq!(status, 0, "push {push}:\n{text}");
        // Figures: each per-platform layer names its platform; the shared
        // one does not; no bar or spinner is left.
        for arch in ["amd64", "arm64"] {
            assert!(
                text.contains(&format!("tools (linux/{arch}): sha256:")),
                "push {push}:\n{text}"
            );
        }
        assert!(
            text.lines().any(|l| l.starts_with("shared: sha256:")),
            "push {push}:\n{text}"
        );
        assert_eq!(
            bar_lines(&text),
            Vec::<&str>::new(),
            "push {push}, screen:\n{text}"
        );
    }
}

#[test]
fn a_failed_push_leaves_no_bar_above_its_error() {
    let dir = tempdir();
    std::fs::write(dir.path().join("data.bin"), noise(8 << 20, 99)).unwrap();
    let recipe = dir.path().join("r.toml");
    write(
        &recipe,
        "[image]\nname = \"fails\"\n\n[[layer]]\nname = \"data\"\n\n[[layer.entry]]\nsrc = \"data.bin\"\ndest = \"/data.bin\"\n",
    );
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join("docker")).unwrap();
    let cmd = format!(
        "HOME={} DOCKER_CONFIG={} {} build {} -o {} --push --retries 0 --to {}/acme/x:1",
        quoted(&home),
        quoted(&home.join("docker")),
        env!("CARGO_BIN_EXE_boxwright"),
        quoted(&recipe),
        quoted(&dir.path().join("out")),
        crate::support::dead_host()
    );
    let (text, status) = screen(dir.path(), &cmd);
    // Figure: exit 1, the error on screen, and no bar or spinner left.
    assert_eq!(status, 1, "{text}");
    assert!(text.contains("error:"), "{text}");
    assert_eq!(bar_lines(&text), Vec::<&str>::new(), "screen:\n{text}");
}
