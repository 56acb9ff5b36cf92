//! `url = "https://..."`: a file downloaded at plan time (or `file:PATH`,
//! relative to the build context), pinned by `sha256` (one hex string, or a
//! table by `ARCH`; variables are expanded in both), or with `extract` one
//! member of the downloaded zip or tar archive. Downloads and extracted
//! members live in the blob cache, so a second build reads no network; the
//! layer entry is the cached file with the recipe's mode and owner (default
//! 0755 for a member the archive marks executable, else 0644) and the
//! build's time, never the archive's.

use anyhow::Result;

use super::{EntryCx, EntrySource};
use crate::python::{archive, fetch};
use crate::recipe::entry::{push_name, EntryKind, Stamp};
use crate::recipe::schema::Sha256Pin;
use crate::supply::sbom::Component;

pub(super) fn resolve(cx: &EntryCx) -> Result<EntrySource> {
    let e = cx.section;
    let Some(url_str) = &e.url else {
        unreachable!("resolved only when `url` is set")
    };
    let expanded = (cx.expand)(url_str)?;
    let url = in_context(cx, url_str, expanded.clone())?;
    // A file of the context that does not match its pin is the recipe's
    // mistake, not a failed download: bad input, at the entry.
    let local = url != expanded;
    // Sent as it is, shown (and put in the SBOM) without its credentials.
    let sent = url.clone();
    let url = fetch::without_credentials(&sent).into_owned();
    let Some(pin) = &e.sha256 else {
        return Err(cx.recipe.err(
            url_str.span(),
            format!("url {url:?} has no sha256: downloads must be pinned for the build to be reproducible (add sha256 = \"<hex>\", or a table by ARCH)"),
        ));
    };
    let arch = (cx.expand)(&toml::Spanned::new(pin.span(), "${ARCH}".to_string()))?;
    let hex = match pin.get_ref() {
        Sha256Pin::One(h) => h.clone(),
        Sha256Pin::ByArch(by) => match by.get(&arch) {
            Some(h) => h.clone(),
            None => {
                let have: Vec<&str> = by.keys().map(String::as_str).collect();
                return Err(cx.recipe.err(
                    pin.span(),
                    format!(
                        "url {url:?} has no sha256 for ARCH {arch:?} (it has: {}); add one, or build without that platform",
                        have.join(", ")
                    ),
                ));
            }
        },
    };
    let hex = (cx.expand)(&toml::Spanned::new(pin.span(), hex))?;
    // Named at the pin only: `cx.at` is the entry's location, a second one.
    let want = fetch::parse_sha256(&hex, &format!("url {url:?}"))
        .map_err(|err| cx.recipe.err(pin.span(), err))?;
    // Checked before anything is downloaded: a name the url cannot give.
    if e.extract.is_none() && cx.dest.is_dir() {
        let name = file_name(&url);
        if matches!(name, "" | "." | "..") {
            return Err(cx.recipe.err(
                e.dest.span(),
                format!(
                    "dest {:?} ends with `/` but the url names no file (its last part is {name:?}); give the full path",
                    cx.dest.text
                ),
            ));
        }
    }
    let cache = cx.env.cache()?;
    let file = fetch::fetch(cache, &sent, &want, &*cx.env.reporter).map_err(|err| {
        if local || crate::error::is_bad_input(&err) {
            cx.recipe.err(url_str.span(), format!("{err:#}"))
        } else {
            err
        }
    })?;
    let (src, default_mode, name) = match &e.extract {
        Some(field) => {
            let member = (cx.expand)(field)?;
            let base = member.rsplit('/').next().unwrap_or(&member);
            if matches!(base, "" | "." | "..") || member.contains('\0') {
                return Err(cx.recipe.err(
                    field.span(),
                    format!("extract {member:?} does not name a file in the archive; give the member's path, e.g. \"bin/tool\""),
                ));
            }
            let m = archive::extract(cache, &file, &want, &member, &url)
                .map_err(|err| prefix_input(&cx.at, err))?;
            let mode = if m.executable { 0o755 } else { 0o644 };
            let base = member.rsplit('/').next().unwrap_or(&member).to_string();
            (m.path, mode, base)
        }
        None => (file, 0o644, file_name(&url).to_string()),
    };
    let meta = std::fs::metadata(&src)?;
    let (size, stamp) = (meta.len(), Stamp::of(&meta));
    let mut dest = cx.dest.path.clone();
    if cx.dest.is_dir() {
        push_name(&mut dest, name.as_bytes());
    }
    let attrs = &cx.attrs;
    Ok(EntrySource::Fetched {
        entry: attrs.entry(
            dest,
            EntryKind::File { src, size, stamp },
            attrs.mode.unwrap_or(default_mode),
        ),
        component: Component::url(&url, want.hex()),
    })
}

/// The last part of `url`'s path, which a `dest` ending in `/` names the
/// file after.
fn file_name(url: &str) -> &str {
    let last = url.split(['?', '#']).next().unwrap_or(url);
    last.rsplit('/').next().unwrap_or("")
}

/// `file:PATH` without `//` is a path relative to the build context, which
/// must stay inside it; it becomes the `file://` URL of the resolved file.
/// Other URLs are returned as they are.
fn in_context(cx: &EntryCx, field: &crate::recipe::schema::Str, url: String) -> Result<String> {
    let Some(rel) = url.strip_prefix("file:").filter(|r| !r.starts_with("//")) else {
        return Ok(url);
    };
    let path = cx.context.join(rel).canonicalize().map_err(|e| {
        cx.recipe.err(
            field.span(),
            format!(
                "url {url:?}: {rel:?} cannot be read in the build context {}: {e}",
                cx.context.display()
            ),
        )
    })?;
    if !path.starts_with(cx.context) {
        return Err(cx.recipe.err(
            field.span(),
            format!("url {url:?} is outside the build context {}; put the file inside it, or use file:///ABSOLUTE/PATH", cx.context.display()),
        ));
    }
    Ok(format!("file://{}", path.display()))
}

/// Bad-input errors get the entry's location; others are left as they are.
fn prefix_input(at: &str, err: anyhow::Error) -> anyhow::Error {
    if crate::error::is_bad_input(&err) {
        crate::error::bad_input(format!("{at}: {err}"))
    } else {
        err
    }
}
