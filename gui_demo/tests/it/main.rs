//! gui_demo's integration tests, one module per former `tests/NAME.rs`, built as one test binary:
//! one link and one copy of egui and the code they share instead of one per file (this was most
//! of CI's build time). Run one file's tests with `cargo test --release -p gui_demo --test it NAME::`.

#[path = "../common/mod.rs"]
mod common;

mod backend;
mod issue19;
mod map;
mod mic;
mod moderation;
mod mouse;
mod portal;
mod servers;
mod snapshot;
mod ui;
mod user_prefs;
