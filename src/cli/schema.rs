//! `boxwright schema`: the JSON Schema (draft-07) of the recipe format, for
//! editors. taplo and VS Code's Even Better TOML use JSON Schema for TOML
//! completion and checks: save the output and point them at it
//! (`#:schema ./recipe.schema.json` on the recipe's first line, or a
//! `[[rule]]` in `.taplo.toml`).
//!
//! The schema is written by hand in `schema/recipe.schema.json` (every field
//! with a description and its default) rather than derived, because the
//! recipe structs keep spans (`toml::Spanned`) and custom types (modes) that
//! a derive would describe wrongly. `tests/it/schema.rs` keeps it honest:
//! for every table, its property names equal the keys the parser accepts,
//! and every recipe of the repository validates against it.

use anyhow::Result;
use clap::Args;

/// The schema, as shipped in `schema/recipe.schema.json`.
pub const RECIPE_SCHEMA: &str = include_str!("../../schema/recipe.schema.json");

#[derive(Args, Debug)]
pub struct SchemaArgs {}

/// Print the schema on stdout.
pub fn run(_args: SchemaArgs) -> Result<()> {
    Ok(super::stdout::print(RECIPE_SCHEMA)?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_schema_is_json_of_draft_07() {
        let v: serde_json::Value = serde_json::from_str(super::RECIPE_SCHEMA).unwrap();
        assert_eq!(v["$schema"], "http://json-schema.org/draft-07/schema#");
        assert_eq!(v["required"][0], "image");
    }
}
