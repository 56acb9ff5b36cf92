//! Error messages read as sentences: no word twice in a row ("listing
//! tags tags in ..."), checked on the errors of several commands.

use crate::common::{assert_code, boxwright, run, write};
use crate::env::Env;
use crate::support::{dead_host, tempdir, Registry};

/// Words repeated back to back in `text`, with the line. Case counts: an
/// HTTP reason followed by the registry's code (`Unauthorized:
/// UNAUTHORIZED`) is two things.
fn doubled(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let words: Vec<String> = line
            .split_whitespace()
            .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_string())
            .collect();
        for pair in words.windows(2) {
            if !pair[0].is_empty() && pair[0] == pair[1] {
                out.push(format!("{:?} in {line:?}", pair[0]));
            }
        }
    }
    out
}

#[test]
fn errors_have_no_doubled_words() {
    let reg = Registry::with_basic_auth("u", "p-9f2c");
    let env = Env::new();
    let dir = tempdir();
    let recipe = dir.path().join("r.toml");
    write(
        &recipe,
        "[image]\nname = \"w\"\n\n[[layer]]\n\n[[layer.entry]]\ncontent = \"x\"\ndest = \"/x\"\n",
    );
    let missing = dir.path().join("missing.toml");
    let dead = dead_host();
    let cases: Vec<(Vec<String>, i32)> = vec![
        // A repository that refuses to list its tags: exit 1.
        (vec!["tags".into(), format!("{}/acme/x", reg.host())], 1),
        (
            vec![
                "build".into(),
                recipe.display().to_string(),
                "-o".into(),
                dir.path().join("out").display().to_string(),
                "--push".into(),
                "--retries".into(),
                "0".into(),
                "--to".into(),
                format!("{dead}/acme/x:1"),
            ],
            1,
        ),
        (vec!["build".into(), missing.display().to_string()], 2),
        (
            vec![
                "index".into(),
                "--to".into(),
                format!("{}/acme/x:1", reg.host()),
                format!("{}/acme/x:1", reg.host()),
            ],
            2,
        ),
        (vec!["verify".into(), format!("{}/acme/x:1", reg.host())], 1),
    ];
    for (args, code) in cases {
        let r = run(env.cmd().args(&args));
        assert_code(&r, code);
        assert!(r.stderr.contains("error:"), "{args:?}: {}", r.stderr);
        assert_eq!(doubled(&r.stderr), Vec::<String>::new(), "{args:?}");
    }
    // The tags error names the repository once and what failed.
    let r = run(boxwright().args(["tags", &format!("{}/acme/x", reg.host())]));
    assert!(
        r.stderr.contains(&format!(
            "could not be listed: listing tags in {}/acme/x",
            reg.host()
        )),
        "{}",
        r.stderr
    );
}
