//! Support code for the `relay_load` benchmark (see `benches/relay_load.rs`).
