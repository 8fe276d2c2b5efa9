//! Fuzz: a receiver fed arbitrary datagrams (garbage Opus payloads included), with the playout
//! clock ticking 0–3 times after each, never panics, and counts no more packets than it was
//! offered.
//!
//! The fuzzer chooses the interleaving: bursts with no tick in between (overflow, reordering),
//! long gaps (concealment, stale restart), or one datagram per tick. Ticks are capped at 100 per
//! input (2 s of audio): each is an Opus decode or concealment, which dominates the cost of a run.
#![no_main]
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use voice_core::jitter::{FixedWatermark, JitterConfig};
use voice_core::proto::udp;
use voice_core::stream::Receiver;
use voice_core::{Time, FRAME_SAMPLES};

/// Most playout ticks per input.
const MAX_TICKS: u32 = 100;

#[derive(Debug, Arbitrary)]
struct Step {
    datagram: Vec<u8>,
    ticks: u8,
}

fuzz_target!(|steps: Vec<Step>| {
    let mut rx = Receiver::new(JitterConfig::default(), Box::new(FixedWatermark::default()))
        .expect("decoder");
    let mut out = [0i16; FRAME_SAMPLES];
    let mut ticks = 0u32;
    let mut offered = 0u64;
    for step in steps.iter().take(300) {
        let now = Time::from_millis(20 * u64::from(ticks));
        if let Ok(p) = udp::parse(&step.datagram) {
            offered += 1;
            let _ = rx.handle_datagram(now, &p.header, p.payload);
        }
        for _ in 0..step.ticks % 4 {
            if ticks == MAX_TICKS {
                break;
            }
            let _ = rx.tick(Time::from_millis(20 * u64::from(ticks)), &mut out);
            ticks += 1;
        }
    }
    let s = rx.stats(Time::from_millis(20 * u64::from(ticks)));
    assert!(s.packets_received <= offered);
});
