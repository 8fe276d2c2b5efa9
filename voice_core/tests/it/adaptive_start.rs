//! The adaptive policy starts playout below the fixed watermark's 40 ms on a clean path.
use crate::common;
use common::*;
use voice_core::jitter::{AdaptivePolicy, JitterBuffer, JitterConfig};

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
