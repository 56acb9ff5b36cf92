//! libFuzzer target: any bytes as a recipe, read and planned (no layer is
//! built) against a small build context. `load_bytes` must not panic, and
//! every error must be bad input (exit code 2) or an I/O error naming a path.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use boxwright::recipe::{load_bytes, LoadOptions, Vars};
use libfuzzer_sys::fuzz_target;

/// A build context with a directory, files and symlinks, made once.
fn context() -> &'static (tempfile::TempDir, PathBuf) {
    static CONTEXT: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    CONTEXT.get_or_init(|| {
        let dir = tempfile::TempDir::new().expect("a temporary directory");
        let files = dir.path().join("files/sub");
        std::fs::create_dir_all(&files).expect("creating the context");
        std::fs::write(dir.path().join("files/a.txt"), "a\n").expect("writing the context");
        std::fs::write(files.join("c.txt"), "c\n").expect("writing the context");
        std::os::unix::fs::symlink("a.txt", dir.path().join("files/link"))
            .expect("writing the context");
        let recipe = dir.path().join("fuzz.toml");
        (dir, recipe)
    })
}

fuzz_target!(|data: &[u8]| {
    let (dir, recipe) = context();
    let opts = LoadOptions {
        vars: Vars {
            use_env: false,
            ..Vars::default()
        },
        ..LoadOptions::default()
    };
    if let Err(err) = load_bytes(recipe, data, &opts) {
        let msg = format!("{err:#}");
        let io_naming_a_path = err.chain().any(|e| e.is::<std::io::Error>())
            && msg.contains(&*dir.path().to_string_lossy());
        assert!(
            boxwright::error::is_bad_input(&err) || io_naming_a_path,
            "an error that is not bad input: {msg}"
        );
    }
});
