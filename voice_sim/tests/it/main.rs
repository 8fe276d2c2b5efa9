//! voice_sim's integration tests: the receive path on simulated networks (adaptive playout,
//! FEC, clock drift, delay spikes, time-scaling) and `voice-sim` end to end, built as one test
//! binary. Run one file's tests with `cargo test --release -p voice_sim --test it NAME::`.

mod common;

mod adaptive_start;
mod adaptive_target;
mod drift;
mod fec_isolated_losses;
mod spike_recovery;
mod tsm;
mod voice_sim;
