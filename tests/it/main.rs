//! boxwright's integration tests: one test binary that runs the real
//! `boxwright` binary (and, in `client`, the library's registry client)
//! against real consumers (skopeo, umoci, oci-image-tool) and real registries
//! (`docker-registry`), started by `support`. A test whose program is
//! missing fails and says so: run them with `scripts/test`.

#[path = "../support/mod.rs"]
mod support;

mod action;
mod action_supply;
mod action_yml;
mod auth_files;
mod bench;
mod build;
mod build_archive;
mod build_contents;
mod build_errors;
mod build_layout;
mod build_push;
mod build_stream;
mod build_targets;
mod check_reproducible;
mod client;
mod common;
mod consumers;
mod docker_archive_layers;
mod env;
mod fuzz_layout;
mod fuzz_recipe;
mod graph_budget;
mod hardening;
mod harness;
mod harness_proxy;
mod hostile_values;
mod index;
mod index_recipe;
mod inspect_index;
mod inspect_remote;
mod interrupt;
mod layer_cache;
mod layout_documents;
mod layout_names;
mod layout_output;
mod layout_reader;
mod limits;
mod login;
mod mounts;
mod pair;
mod progress_tty;
mod publish;
mod pull;
mod pull_command;
mod pull_fallback;
mod push;
mod push_faults;
mod push_orchestration;
mod push_verify;
mod pusher;
mod python_layers;
mod python_pip;
mod python_untrusted;
mod python_url;
mod r2d;
mod r2d_podman;
mod readme_commands;
mod recipe_errors;
mod refs;
mod registry_documents;
mod schema;
mod sinks;
mod split_auto;
mod supply;
mod supply_anonymous;
mod supply_bounds;
mod supply_copy;
mod supply_layout;
mod supply_rotation;
mod tls;
mod verify;
mod wording;
