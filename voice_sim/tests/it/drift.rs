//! A sender clock ±200 ppm off the receiver's does not make the buffer creep over 10 minutes.
use crate::common;
use common::*;
use voice_sim::network::NetworkProfile;
use voice_sim::run::{run, SimConfig};

// One test per direction, so the two 10-minute simulations run on two cores at once.
#[test]
fn sender_clock_fast_does_not_creep_over_ten_minutes() {
    drift_does_not_creep_over_ten_minutes("drift");
}

#[test]
fn sender_clock_slow_does_not_creep_over_ten_minutes() {
    drift_does_not_creep_over_ten_minutes("drift-slow");
}

fn drift_does_not_creep_over_ten_minutes(profile: &str) {
    let samples = speechlike_with_pauses(600.0);
    let packets = samples.len().div_ceil(voice_core::FRAME_SAMPLES);
    let trace = NetworkProfile::builtin(profile)
        .unwrap()
        .generate(packets, 4);
    let out = run(&samples, &trace, &SimConfig::default()).unwrap();
    // A fixed 2-packet watermark conceals ~5 % of frames here (drift drains it) or creeps to
    // 140 ms; what is left with the adaptive policy is the σ = 2 ms jitter's far tail.
    assert!(
        out.stats.stream.frames_concealed * 2000 <= out.stats.stream.frames_played,
        "{profile}: {:?}",
        out.stats
    );
    // Buffer delay = send → playout minus the path's latency (and its drift), which the
    // receiver cannot change: compare it minute by minute against the first minute.
    let ppm = if profile == "drift" { 200e-6 } else { -200e-6 };
    let buffer_delay = |from: f64, to: f64| {
        let d: Vec<f64> = out
            .frame_delays_ms
            .iter()
            .filter(|(t, _)| (from..to).contains(t))
            .map(|(t, d)| d - 40.0 - ppm * (t - d))
            .collect();
        d.iter().sum::<f64>() / d.len() as f64
    };
    let first = buffer_delay(5_000.0, 60_000.0);
    for minute in 1..10 {
        let m = f64::from(minute) * 60_000.0;
        let now = buffer_delay(m, m + 60_000.0);
        assert!(
            (now - first).abs() <= 20.0,
            "{profile}: minute {minute} buffer delay {now:.1} ms vs {first:.1} ms at the start"
        );
    }
    assert!(first < 40.0, "{profile}: buffer delay {first:.1} ms");
}
