//! `[image] base`: the image a build starts from. `scratch` (the default),
//! `oci:PATH[:NAME]` for an OCI layout on disk (relative to the recipe's
//! directory, checked here), or else a registry reference tried with its
//! `base_fallback`s in order.

use std::path::Path;

use anyhow::Result;

use super::schema::{ImageSection, Str};
use super::{Base, Source};
use crate::registry::Reference;

pub(super) fn resolve(
    src: &Source,
    image: &ImageSection,
    recipe_dir: &Path,
    expand: &dyn Fn(&Str) -> Result<String>,
) -> Result<Base> {
    let Some(b) = &image.base else {
        return Ok(Base::Scratch);
    };
    let text = expand(b)?;
    if text == "scratch" {
        return Ok(Base::Scratch);
    }
    if let Some(rest) = text.strip_prefix("oci:") {
        let (dir, name) =
            crate::image::layout::split_layout_ref(&recipe_dir.join(rest).to_string_lossy());
        if !dir.join("oci-layout").is_file() {
            return Err(src.err(
                b.span(),
                format!(
                    "base {text:?}: {} is not an OCI image layout",
                    dir.display()
                ),
            ));
        }
        return Ok(Base::Oci {
            dir,
            name,
            display: text,
        });
    }
    // Registry references are checked now, so that a bad one is refused with
    // its place in the recipe before anything is built.
    let check = |s: &Str| -> Result<String> {
        let text = expand(s)?;
        Reference::parse(&text).map_err(|e| src.err(s.span(), format!("base: {e:#}")))?;
        Ok(text)
    };
    check(b)?;
    let fallback = image
        .base_fallback
        .iter()
        .map(check)
        .collect::<Result<Vec<_>>>()?;
    Ok(Base::Registry {
        reference: text,
        fallback,
    })
}
