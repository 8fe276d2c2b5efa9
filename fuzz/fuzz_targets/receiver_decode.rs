//! Fuzz: a receiver fed arbitrary datagrams (garbage Opus payloads included) never panics and
//! always yields exactly one 20 ms frame per tick.
#![no_main]
use libfuzzer_sys::fuzz_target;
use voice_core::jitter::{FixedWatermark, JitterConfig};
use voice_core::proto::udp;
use voice_core::stream::Receiver;
use voice_core::{Time, FRAME_SAMPLES};

fuzz_target!(|datagrams: Vec<Vec<u8>>| {
    let mut rx = Receiver::new(JitterConfig::default(), Box::new(FixedWatermark::default()))
        .expect("decoder");
    let mut out = [0i16; FRAME_SAMPLES];
    for (k, d) in datagrams.iter().take(500).enumerate() {
        let now = Time::from_millis(20 * k as u64);
        if let Ok(p) = udp::parse(d) {
            let _ = rx.handle_datagram(now, &p.header, p.payload);
        }
        let _ = rx.tick(now, &mut out);
    }
    let _ = rx.stats(Time::from_millis(20 * datagrams.len() as u64));
});
