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
