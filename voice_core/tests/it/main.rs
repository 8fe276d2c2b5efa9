//! voice_core's integration tests, one module per former `tests/NAME.rs`, built as one test
//! binary: one link and one copy of the code they share instead of one per file (this was most
//! of CI's build time). `capture_alloc` stays its own binary: its counting global allocator
//! would count every other test's allocations. Run one file's tests with
//! `cargo test --release -p voice_core --test it NAME::`.

#[path = "../common/mod.rs"]
mod common;

mod adaptive_start;
mod capture;
mod dred;
mod e2ee_engine;
mod e2ee_rotation;
mod engine;
mod engine_directory;
mod engine_permissions;
mod engine_spatial;
mod fec_and_plc;
mod flood;
mod jitter_props;
mod keepalive;
mod late_packets;
mod loss_window;
mod positional_sealed;
mod protocol_doc;
mod receive_accounting;
mod reorder;
mod spatial;
mod talk_spurts;
mod watermark;
mod wraparound;
