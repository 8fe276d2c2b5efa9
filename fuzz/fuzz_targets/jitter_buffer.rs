//! Fuzz: the jitter buffer fed arbitrary packet sequences keeps its invariants: bounded depth, a
//! played packet carries its own payload, packets never repeat or go backwards within a stream.
#![no_main]
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use voice_core::jitter::{JitterBuffer, Playout};
use voice_core::proto::udp::Flags;
use voice_core::Time;

#[derive(Debug, Arbitrary)]
enum Op {
    Push {
        seq: u16,
        ts: u32,
        flags: u8,
        len: u8,
    },
    Pop {
        advance_ms: u8,
    },
}

fuzz_target!(|ops: Vec<Op>| {
    let mut b = JitterBuffer::with_fixed_watermark();
    let mut now = 0u64;
    let mut last: Option<u64> = None;
    let mut resyncs = 0;
    let mut played = 0u64;
    let mut pushed = 0u64;
    for op in ops.into_iter().take(5000) {
        match op {
            Op::Push {
                seq,
                ts,
                flags,
                len,
            } => {
                let mut payload = [0u8; 256];
                payload[..2].copy_from_slice(&seq.to_le_bytes());
                let payload = &payload[..usize::from(len).max(2)];
                let _ = b.push(Time::from_millis(now), seq, ts, Flags(flags), payload);
                pushed += 1;
            }
            Op::Pop { advance_ms } => {
                now += u64::from(advance_ms);
                // The counter itself, not a full stats snapshot (which scans the delay histograms).
                let r = b.metrics_mut().counts.resyncs;
                if r != resyncs {
                    resyncs = r;
                    last = None;
                }
                if let Playout::Packet(f) = b.pop(Time::from_millis(now)) {
                    assert_eq!(&f.payload[..2], &(f.seq as u16).to_le_bytes());
                    assert!(last.is_none_or(|l| f.seq > l));
                    last = Some(f.seq);
                    played += 1;
                }
            }
        }
        assert!(b.depth() <= 64);
    }
    // Every packet played was received once; the snapshot agrees with what was seen.
    let s = b.stats(Time::from_millis(now));
    assert!(played <= s.packets_received);
    assert!(s.packets_received + s.packets_duplicate <= pushed);
    assert!(s.max_buffer_depth <= 64);
});
