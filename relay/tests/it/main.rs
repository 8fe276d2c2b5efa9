//! The relay's integration tests, one module per former `tests/NAME.rs`, built as one test
//! binary: one link and one copy of the code they share instead of one per file (this was most
//! of CI's build time). `cluster.rs` (rooms across relays, with its own redis-server) stays its
//! own binary. Run one file's tests with `cargo test --release -p relay --test it NAME::`.

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/world.rs"]
mod world;

mod access_tokens;
mod bad_tcp;
mod bad_udp;
mod e2ee;
mod fanout;
mod in_memory;
mod membership_props;
mod permissions;
mod presence;
mod protocol_agreement;
mod protocol_doc;
mod proximity;
mod relay_binary;
mod tls;
mod tunnel;
mod workers;
