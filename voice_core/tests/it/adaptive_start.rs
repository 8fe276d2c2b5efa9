//! The adaptive policy starts playout below the fixed watermark's 40 ms on a clean path, and keeps
//! the buffer delay there (≤ 25 ms) without concealing.
use crate::common;
use common::*;
use voice_core::jitter::{AdaptivePolicy, JitterBuffer, JitterConfig};
use voice_core::sim::network::NetworkProfile;
use voice_core::sim::run::{run, PolicyChoice, SimConfig};

#[test]
fn first_packet_plays_within_40_ms_of_arrival() {
    for latency in [3u64, 11, 25, 39] {
        let mut b = JitterBuffer::new(JitterConfig::default(), Box::new(AdaptivePolicy::default()));
        let mut first = None;
        for k in 0..20u64 {
            let arrival = tick(k) + std::time::Duration::from_millis(latency);
            // Packets arrive between ticks; deliver the ones that arrived by tick k+1.
            push(&mut b, arrival, k as u16);
            if first.is_none() && pop(&mut b, tick(k + 1)).is_some() {
                first = Some(
                    tick(k + 1)
                        .saturating_since(tick(0) + std::time::Duration::from_millis(latency)),
                );
            } else if first.is_some() {
                let _ = pop(&mut b, tick(k + 1));
            }
        }
        let waited = first.expect("playout started");
        assert!(
            waited < std::time::Duration::from_millis(40),
            "latency {latency}: waited {waited:?}"
        );
    }
}

#[test]
fn clean_path_buffer_delay_is_at_most_25_ms_with_no_concealment() {
    let samples = speechlike(6.0);
    let packets = samples.len().div_ceil(voice_core::FRAME_SAMPLES);
    let trace = NetworkProfile::builtin("clean")
        .unwrap()
        .generate(packets, 3);
    let adaptive = run(&samples, &trace, &SimConfig::default()).unwrap();
    assert_eq!(adaptive.stats.policy, "adaptive", "adaptive is the default");
    assert_eq!(adaptive.stats.frames_concealed, 0);
    assert!(
        adaptive.stats.mean_buffer_delay_ms <= 25.0,
        "{:?}",
        adaptive.stats
    );
    let fixed = run(
        &samples,
        &trace,
        &SimConfig {
            policy: PolicyChoice::parse("fixed").unwrap(),
            ..SimConfig::default()
        },
    )
    .unwrap();
    assert!(adaptive.stats.mean_end_to_end_delay_ms + 10.0 <= fixed.stats.mean_end_to_end_delay_ms);
}
