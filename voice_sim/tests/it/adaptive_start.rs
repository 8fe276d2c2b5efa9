//! The adaptive policy keeps the buffer delay on a clean path at most 25 ms (below the fixed
//! watermark's 40 ms) without concealing.
use crate::common::*;
use voice_sim::network::NetworkProfile;
use voice_sim::run::{run, SimConfig};

#[test]
fn clean_path_buffer_delay_is_at_most_25_ms_with_no_concealment() {
    let samples = speechlike(6.0);
    let packets = samples.len().div_ceil(voice_core::FRAME_SAMPLES);
    let trace = NetworkProfile::builtin("clean")
        .unwrap()
        .generate(packets, 3);
    let adaptive = run(&samples, &trace, &SimConfig::default()).unwrap();
    assert_eq!(adaptive.stats.policy, "adaptive", "adaptive is the default");
    assert_eq!(adaptive.stats.stream.frames_concealed, 0);
    assert!(
        adaptive.stats.stream.mean_buffer_delay_ms <= 25.0,
        "{:?}",
        adaptive.stats
    );
    let fixed = run(&samples, &trace, &fixed_policy()).unwrap();
    assert!(
        adaptive.stats.stream.mean_end_to_end_delay_ms + 10.0
            <= fixed.stats.stream.mean_end_to_end_delay_ms
    );
}
