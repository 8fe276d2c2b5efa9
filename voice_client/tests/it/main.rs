//! voice_client's integration tests, one module per former `tests/NAME.rs`, built as one test
//! binary: one link and one copy of the code they share instead of one per file (this was most
//! of CI's build time). `cluster.rs` (clients across relays, with its own redis-server) stays its
//! own binary. Run one file's tests with `cargo test --release -p voice_client --test it NAME::`.

mod app_audio;
mod cluster_directory;
mod e2e;
mod e2ee;
mod faults;
mod hosts;
mod moderation;
mod refused;
mod relays;
mod switch_audio;
mod tunnel;
