//! Helpers shared by the simulator tests: the test signal, hand-made traces, delays read from a
//! simulation's output.
#![allow(dead_code)]

#[allow(unused_imports)]
pub use voice_core::signal::{speechlike, speechlike_with_pauses};

/// The simulation's defaults with our fixed 2-packet policy instead of the adaptive one.
pub fn fixed_policy() -> voice_sim::run::SimConfig {
    voice_sim::run::SimConfig {
        policy: voice_core::jitter::PolicyChoice::parse("fixed").unwrap(),
        ..voice_sim::run::SimConfig::default()
    }
}

/// A trace of `packets` packets sent every 20 ms, arriving after `delay_ms(k)` (never lost).
pub fn trace_with(packets: usize, delay_ms: impl Fn(usize) -> f64) -> voice_sim::trace::Trace {
    use voice_sim::trace::{Trace, TraceRow};
    Trace {
        rows: (0..packets)
            .map(|k| TraceRow {
                seq: k as u32,
                send_ms: 20.0 * k as f64,
                arrival_ms: Some(20.0 * k as f64 + delay_ms(k)),
            })
            .collect(),
        comments: Vec::new(),
    }
}

/// Mean send → playout delay (ms) of the frames played between `from_ms` and `to_ms`.
pub fn mean_delay(out: &voice_sim::run::SimOutput, from_ms: f64, to_ms: f64) -> f64 {
    let d: Vec<f64> = out
        .frame_delays_ms
        .iter()
        .filter(|(t, _)| (from_ms..to_ms).contains(t))
        .map(|(_, d)| *d)
        .collect();
    d.iter().sum::<f64>() / d.len().max(1) as f64
}
