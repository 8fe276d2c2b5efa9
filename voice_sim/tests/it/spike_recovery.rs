//! After a 300 ms delay spike the playout delay comes back to within one 20 ms tick of where it
//! was within 3 s. The spike is waited out (no packet dropped as late), and the excess is then
//! taken out by accelerating voiced speech while it is far above the target, and in the pauses
//! of speech.
use crate::common;
use common::*;
use voice_sim::run::{run, SimConfig};

#[test]
fn delay_recovers_within_3_s_of_a_spike() {
    let samples = speechlike_with_pauses(20.0);
    let packets = samples.len().div_ceil(voice_core::FRAME_SAMPLES);
    // 40 ms ± 3 ms, and at 8 s a 300 ms spike that drains over 400 ms.
    let spike_at = 400usize;
    let trace = trace_with(packets, |k| {
        let wobble = [0.0, 2.0, 1.0, 3.0, 0.5][k % 5];
        let extra = if (spike_at..spike_at + 20).contains(&k) {
            300.0 * (1.0 - (k - spike_at) as f64 / 20.0)
        } else {
            0.0
        };
        40.0 + wobble + extra
    });
    let out = run(&samples, &trace, &SimConfig::default()).unwrap();
    let spike_ms = 20.0 * spike_at as f64;
    for w in (0..12).map(|s| spike_ms - 2000.0 + 500.0 * s as f64) {
        eprintln!("{w}: {:.1}", mean_delay(&out, w, w + 500.0));
    }
    eprintln!("{:?}", out.stats);
    let before = mean_delay(&out, spike_ms - 3000.0, spike_ms - 100.0);
    let after = mean_delay(&out, spike_ms + 3000.0, spike_ms + 4000.0);
    assert!(
        (after - before).abs() <= 20.0,
        "delay before the spike {before:.1} ms, 3 s after {after:.1} ms"
    );
    let peak = out
        .frame_delays_ms
        .iter()
        .map(|d| d.1)
        .fold(0.0f64, f64::max);
    assert!(
        peak > before + 100.0,
        "the spike did raise the delay ({peak})"
    );
}
