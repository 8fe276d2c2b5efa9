//! Helpers shared by the behaviour tests: real Opus packets and a simulated 20 ms clock.
#![allow(dead_code)]

use voice_core::codec::EncoderConfig;
use voice_core::jitter::{FixedWatermark, JitterBuffer, JitterConfig};
use voice_core::proto::udp::{self, Header};
use voice_core::proto::SessionToken;
use voice_core::stream::{Receiver, Sender};
use voice_core::{Time, FRAME_SAMPLES, SAMPLE_RATE};

/// Tick `k` of the receiver's 20 ms clock.
pub fn tick(k: u64) -> Time {
    Time::from_millis(20 * k)
}

/// A 440 Hz tone frame (continuous across frames).
pub fn tone(frame: usize) -> [i16; FRAME_SAMPLES] {
    let mut pcm = [0i16; FRAME_SAMPLES];
    for (i, s) in pcm.iter_mut().enumerate() {
        let t = (frame * FRAME_SAMPLES + i) as f64 / f64::from(SAMPLE_RATE);
        *s = ((t * 440.0 * std::f64::consts::TAU).sin() * 8000.0) as i16;
    }
    pcm
}

/// `n` real voice datagrams of a tone, numbered from `first_seq`.
pub fn datagrams(n: usize, first_seq: u16) -> Vec<Vec<u8>> {
    let mut s = Sender::new(SessionToken(5), EncoderConfig::default())
        .unwrap()
        .with_start(first_seq, 0);
    let mut out = Vec::new();
    let mut buf = [0u8; udp::MAX_DATAGRAM];
    for k in 0..n {
        let len = s
            .encode(&tone(k), SessionToken::NONE, k + 1 == n, &mut buf)
            .unwrap();
        out.push(buf[..len].to_vec());
    }
    out
}

/// Parses a datagram built by [`datagrams`].
pub fn parse(d: &[u8]) -> (Header, &[u8]) {
    let p = udp::parse(d).unwrap();
    (p.header, p.payload)
}

/// A jitter buffer with a fixed watermark of 2 packets.
pub fn buffer() -> JitterBuffer {
    JitterBuffer::new(JitterConfig::default(), Box::new(FixedWatermark::default()))
}

/// A receiver with a fixed watermark of 2 packets.
pub fn receiver() -> Receiver {
    Receiver::new(JitterConfig::default(), Box::new(FixedWatermark::default())).unwrap()
}

/// Pushes a bare packet (payload irrelevant) into a buffer.
pub fn push(b: &mut JitterBuffer, now: Time, seq: u16) -> voice_core::jitter::PushOutcome {
    b.push(
        now,
        seq,
        u32::from(seq) * FRAME_SAMPLES as u32,
        Default::default(),
        &[0xAB; 40],
    )
}

/// Pops one tick and reduces it to the sequence played (`Some(seq)`), a gap (`Err(seq)`), or idle.
pub fn pop(b: &mut JitterBuffer, now: Time) -> Option<Result<u64, u64>> {
    use voice_core::jitter::Playout;
    match b.pop(now) {
        Playout::Idle => None,
        Playout::Packet(f) => Some(Ok(f.seq)),
        Playout::Missing { seq, .. } | Playout::Recover { seq, .. } | Playout::Stall { seq } => {
            Some(Err(seq))
        }
    }
}

#[allow(unused_imports)]
pub use voice_core::sim::signal::{speechlike, speechlike_with_pauses};

/// A trace of `packets` packets sent every 20 ms, arriving after `delay_ms(k)` (never lost).
pub fn trace_with(
    packets: usize,
    delay_ms: impl Fn(usize) -> f64,
) -> voice_core::sim::trace::Trace {
    use voice_core::sim::trace::{Trace, TraceRow};
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
pub fn mean_delay(out: &voice_core::sim::run::SimOutput, from_ms: f64, to_ms: f64) -> f64 {
    let d: Vec<f64> = out
        .frame_delays_ms
        .iter()
        .filter(|(t, _)| (from_ms..to_ms).contains(t))
        .map(|(_, d)| *d)
        .collect();
    d.iter().sum::<f64>() / d.len().max(1) as f64
}
