//! `${NAME}` substitution. Values come from `--set NAME=VALUE`, else the
//! environment, else the recipe's `[vars]`, whose defaults may name other
//! variables themselves (`TAG = "${VERSION}-slim"`; as a Dockerfile's ARG
//! default may). `$$` writes a literal `$`.
//!
//! The environment is read only when [`Vars::use_env`] says so: the binary
//! turns it on; a library caller's [`Vars::default`] leaves it off, so that
//! what a build reads is what it was given.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The most that variable values may add to a recipe's strings, all
/// expansions together: a recipe of a few KiB that names a large value a
/// thousand times must not take gigabytes of memory.
pub const MAX_EXPANDED: u64 = 64 << 20;

/// Where variable values come from, in order of precedence.
#[derive(Debug, Default, Clone)]
pub struct Vars {
    /// `--set NAME=VALUE`.
    pub sets: BTreeMap<String, String>,
    /// The recipe's `[vars]` defaults.
    pub defaults: BTreeMap<String, String>,
    /// Read the process environment between `sets` and `defaults` (off by
    /// default; the binary turns it on).
    pub use_env: bool,
    /// Bytes that values have added so far, shared by every copy.
    pub expanded: Arc<AtomicU64>,
}

impl Vars {
    /// The value of `name`, as given: a `[vars]` default is not expanded.
    pub fn lookup(&self, name: &str, scoped: &[(&str, &str)]) -> Option<String> {
        self.find(name, scoped).map(|(v, _)| v)
    }

    /// The value of `name` and whether it is a `[vars]` default.
    fn find(&self, name: &str, scoped: &[(&str, &str)]) -> Option<(String, bool)> {
        if let Some((_, v)) = scoped.iter().find(|(k, _)| *k == name) {
            return Some((v.to_string(), false));
        }
        // The platform's own, never another's: CI runners often export
        // `ARCH` or `OS` (`OS=Windows_NT`) for their own host.
        if PLATFORM_VARS.contains(&name) {
            return None;
        }
        if let Some(v) = self.sets.get(name) {
            return Some((v.clone(), false));
        }
        if self.use_env {
            if let Ok(v) = std::env::var(name) {
                return Some((v, false));
            }
        }
        self.defaults.get(name).map(|v| (v.clone(), true))
    }

    /// Substitute every `${NAME}` in `s`. `scoped` values (per platform:
    /// `ARCH`, `OS`, `VARIANT`) take precedence over everything else.
    pub fn expand(&self, s: &str, scoped: &[(&str, &str)]) -> Result<String, String> {
        self.expand_in(s, scoped, &mut Vec::new())
    }

    /// The value of `name`: a `[vars]` default expanded in turn (`within`:
    /// the defaults being expanded, to refuse one that names itself).
    fn value(
        &self,
        name: &str,
        scoped: &[(&str, &str)],
        within: &mut Vec<String>,
    ) -> Result<Option<String>, String> {
        let Some((v, is_default)) = self.find(name, scoped) else {
            return Ok(None);
        };
        if !is_default || !v.contains('$') {
            return Ok(Some(v));
        }
        if within.iter().any(|n| n == name) {
            within.push(name.to_string());
            return Err(format!(
                "[vars] {} refers to itself ({}); give one of them a value of its own",
                within[0],
                within.join(" -> ")
            ));
        }
        within.push(name.to_string());
        let v = self.expand_in(&v, scoped, within);
        within.pop();
        v.map(Some)
    }

    fn expand_in(
        &self,
        s: &str,
        scoped: &[(&str, &str)],
        within: &mut Vec<String>,
    ) -> Result<String, String> {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            if let Some(r) = after.strip_prefix('$') {
                out.push('$');
                rest = r;
            } else if let Some(r) = after.strip_prefix('{') {
                let end = r.find('}').ok_or_else(|| {
                    format!("unclosed `${{` in {s:?} (write `$$` for a literal `$`)")
                })?;
                let name = &r[..end];
                if !is_name(name) {
                    return Err(format!("`${{{name}}}` is not a variable name (letters, digits and `_`, not starting with a digit)"));
                }
                match self.value(name, scoped, within)? {
                    Some(v) => {
                        let total = self.expanded.fetch_add(v.len() as u64, Ordering::Relaxed);
                        if total + v.len() as u64 > MAX_EXPANDED {
                            return Err(format!(
                                "variables add more than {} MiB to the recipe's strings (here `${{{name}}}`, {} bytes); put large content in a file and use `src`",
                                MAX_EXPANDED >> 20,
                                v.len()
                            ));
                        }
                        out.push_str(&v);
                    }
                    None if PLATFORM_VARS.contains(&name) => {
                        return Err(format!("variable `{name}` is only defined in per-platform fields ([config], [annotations], [[layer]])"))
                    }
                    None if self.use_env => {
                        return Err(format!(
                            "variable `{name}` has no value: pass --set {name}=VALUE, set it in the environment, or give it a default under [vars]"
                        ))
                    }
                    None => {
                        return Err(format!(
                            "variable `{name}` has no value: give it one in `Vars::sets` (the environment is not read: `Vars::use_env` is off), or a default under [vars]"
                        ))
                    }
                }
                rest = &r[end + 1..];
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// Variables defined per platform.
pub const PLATFORM_VARS: &[&str] = &["OS", "ARCH", "VARIANT"];

pub fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        let mut v = Vars::default();
        v.sets.insert("VERSION".into(), "1.4.0".into());
        v.defaults.insert("VERSION".into(), "0.0.0".into());
        v.defaults.insert("OWNER".into(), "acme".into());
        v
    }

    #[test]
    fn the_environment_is_read_only_when_asked_and_the_error_says_which() {
        // PATH is set in every test process.
        let mut v = Vars::default();
        let e = v.expand("${PATH}", &[]).unwrap_err();
        assert!(e.contains("Vars::use_env` is off"), "{e}");
        v.use_env = true;
        assert_eq!(
            v.expand("${PATH}", &[]).unwrap(),
            std::env::var("PATH").unwrap()
        );
        let e = v.expand("${BOXWRIGHT_SURELY_UNSET_VAR}", &[]).unwrap_err();
        assert!(e.contains("set it in the environment"), "{e}");
    }

    #[test]
    fn platform_variables_come_from_the_platform_alone() {
        let mut v = vars();
        v.use_env = true;
        v.sets.insert("ARCH".into(), "x86_64".into());
        v.defaults.insert("OS".into(), "Windows_NT".into());
        for name in ["ARCH", "OS", "VARIANT"] {
            let e = v.expand(&format!("${{{name}}}"), &[]).unwrap_err();
            assert!(e.contains("only defined in per-platform fields"), "{e}");
        }
        assert_eq!(
            v.expand("${OS}/${ARCH}", &[("ARCH", "arm64"), ("OS", "linux")])
                .unwrap(),
            "linux/arm64"
        );
    }

    #[test]
    fn expands_with_precedence_and_escapes() {
        let v = vars();
        assert_eq!(v.expand("r2d:${VERSION}", &[]).unwrap(), "r2d:1.4.0");
        assert_eq!(
            v.expand("ghcr.io/${OWNER}/x", &[]).unwrap(),
            "ghcr.io/acme/x"
        );
        assert_eq!(v.expand("$$HOME and $5", &[]).unwrap(), "$HOME and $5");
        assert_eq!(
            v.expand("bin/${ARCH}", &[("ARCH", "arm64")]).unwrap(),
            "bin/arm64"
        );
    }

    #[test]
    fn defaults_name_other_variables_and_may_not_name_themselves() {
        let mut v = vars();
        v.defaults.insert("TAG".into(), "${VERSION}-slim".into());
        v.defaults
            .insert("URL".into(), "https://x/${ARCH}/${TAG}".into());
        v.defaults.insert("MONEY".into(), "$$5".into());
        assert_eq!(v.expand("${TAG}", &[]).unwrap(), "1.4.0-slim");
        assert_eq!(
            v.expand("${URL}", &[("ARCH", "arm64")]).unwrap(),
            "https://x/arm64/1.4.0-slim"
        );
        assert_eq!(v.expand("${MONEY}", &[]).unwrap(), "$5");
        // A value given with --set is taken as it is.
        v.sets.insert("RAW".into(), "${NOT_EXPANDED}".into());
        assert_eq!(v.expand("${RAW}", &[]).unwrap(), "${NOT_EXPANDED}");
        v.defaults.insert("A".into(), "${B}".into());
        v.defaults.insert("B".into(), "x${A}".into());
        let e = v.expand("${A}", &[]).unwrap_err();
        assert!(e.contains("A -> B -> A"), "{e}");
        v.defaults.insert("SELF".into(), "${SELF}".into());
        assert!(v.expand("${SELF}", &[]).is_err());
    }

    #[test]
    fn values_add_a_bounded_amount_in_all() {
        let mut v = vars();
        v.defaults.insert("BIG".into(), "x".repeat(1 << 20));
        let copy = v.clone();
        for _ in 0..32 {
            v.expand("${BIG}", &[]).unwrap();
            copy.expand("${BIG}", &[]).unwrap();
        }
        let e = v.expand("a${BIG}", &[]).unwrap_err();
        assert!(
            e.contains("more than 64 MiB") && e.contains("`${BIG}`"),
            "{e}"
        );
    }

    #[test]
    fn names_the_missing_variable() {
        let mut v = vars();
        v.use_env = true;
        let e = v.expand("${NOPE_NOT_SET_ANYWHERE}", &[]).unwrap_err();
        assert!(
            e.contains("NOPE_NOT_SET_ANYWHERE") && e.contains("--set"),
            "{e}"
        );
        assert!(v
            .expand("${ARCH}", &[])
            .unwrap_err()
            .contains("per-platform"));
        assert!(v.expand("${VERSION", &[]).unwrap_err().contains("unclosed"));
        assert!(v
            .expand("${1X}", &[])
            .unwrap_err()
            .contains("not a variable name"));
    }
}
