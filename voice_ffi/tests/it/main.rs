//! voice_ffi's integration tests, one module per former `tests/NAME.rs`, built as one test
//! binary: one link and one copy of the code they share instead of one per file (this was most
//! of CI's build time). `header.rs` stays its own binary: `UPDATE_HEADER=1 cargo test -p
//! voice_ffi --test header` regenerates include/voice.h. Run one file's tests with
//! `cargo test --release -p voice_ffi --test it NAME::`.

mod admin;
mod defects;
mod devices;
mod e2ee;
mod misuse;
