//! Properties of the jitter buffer under arbitrary arrival patterns (reordering, loss,
//! duplicates, garbage sequence numbers): it never plays a packet twice, never plays packets out
//! of order, never conceals a slot at or before a packet it already played, releases exactly one
//! frame per tick while it holds packets and is playing, hands out each packet's own payload, and
//! holds bounded memory.
//!
//! (Concealed slots are not "played packets": when a run of gaps with nothing held ends in idle,
//! the buffer rewinds to just after the last packet it played, because a sender that paused
//! without an end marker continues from there. Those slots' packets, if they come, play once.)

use std::collections::HashSet;

use proptest::prelude::*;
use voice_core::jitter::{FixedWatermark, JitterBuffer, JitterConfig, Playout};
use voice_core::proto::udp::Flags;
use voice_core::Time;

#[derive(Debug, Clone)]
enum Arrival {
    /// The packet sent `back` ticks ago (0 = now), possibly twice.
    Recent { back: u8, twice: bool },
    /// A random sequence number.
    Garbage(u16),
}

fn arrival() -> impl Strategy<Value = Arrival> {
    prop_oneof![
        10 => (0u8..90, any::<bool>()).prop_map(|(back, twice)| Arrival::Recent { back, twice }),
        1 => any::<u16>().prop_map(Arrival::Garbage),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn invariants_hold(
        start in any::<u16>(),
        ticks in proptest::collection::vec(proptest::collection::vec(arrival(), 0..4), 1..400),
        end_flags in proptest::collection::vec(any::<bool>(), 400),
    ) {
        let cfg = JitterConfig::default();
        let mut b = JitterBuffer::new(cfg, Box::new(FixedWatermark::default()));
        let mut played: HashSet<u64> = HashSet::new();
        let mut last_packet: Option<u64> = None;
        let mut last_slot: Option<u64> = None;
        let mut resyncs = 0;
        let mut pushed = 0u64;
        for (k, arrivals) in ticks.iter().enumerate() {
            let now = Time::from_millis(20 * k as u64);
            for a in arrivals {
                let seq = match a {
                    Arrival::Recent { back, .. } => start.wrapping_add(k as u16).wrapping_sub(u16::from(*back)),
                    Arrival::Garbage(s) => *s,
                };
                let flags = if end_flags[usize::from(seq) % end_flags.len()] && seq % 7 == 0 {
                    Flags::END_OF_SPURT
                } else {
                    Flags::default()
                };
                let payload = seq.to_le_bytes();
                let copies = if matches!(a, Arrival::Recent { twice: true, .. }) { 2 } else { 1 };
                for _ in 0..copies {
                    let _ = b.push(now, seq, u32::from(seq) * 960, flags, &payload);
                    pushed += 1;
                    prop_assert!(b.depth() <= cfg.capacity);
                }
            }
            let st = b.stats(now);
            // Each packet is counted once at most (duplicates and restarts included).
            prop_assert!(st.packets_received + st.packets_duplicate <= pushed);
            if st.resyncs != resyncs {
                // A resynchronisation re-bases the stream: order restarts from there.
                resyncs = st.resyncs;
                played.clear();
                last_packet = None;
                last_slot = None;
            }
            let was_playing = b.is_playing();
            let depth = b.depth();
            match b.pop(now) {
                Playout::Idle => {
                    prop_assert!(!(was_playing && depth > 0), "idle while playing with packets held");
                    last_slot = None;
                }
                Playout::Packet(f) => {
                    prop_assert_eq!(f.payload, &(f.seq as u16).to_le_bytes()[..], "own payload");
                    prop_assert!(played.insert(f.seq), "packet {} played twice", f.seq);
                    prop_assert!(last_packet.is_none_or(|l| f.seq > l), "out of order: {} after {:?}", f.seq, last_packet);
                    prop_assert!(last_slot.is_none_or(|l| f.seq > l), "slot order: {} after {:?}", f.seq, last_slot);
                    last_packet = Some(f.seq);
                    last_slot = Some(f.seq);
                }
                Playout::Missing { seq, next } => {
                    prop_assert!(last_packet.is_none_or(|l| seq > l), "gap {} at or before a played packet", seq);
                    prop_assert!(last_slot.is_none_or(|l| seq == l + 1 || seq > l), "gap out of order");
                    if let Some(n) = next {
                        prop_assert_eq!(n.seq, seq + 1);
                    }
                    last_slot = Some(seq);
                }
                Playout::Recover { seq, from, frames_back, .. } => {
                    prop_assert!(last_packet.is_none_or(|l| seq > l), "recovery {} at or before a played packet", seq);
                    prop_assert_eq!(from.seq, seq + u64::from(frames_back));
                    last_slot = Some(seq);
                }
                Playout::Stall { seq } => {
                    prop_assert!(last_packet.is_none_or(|l| seq > l), "stall {} at or before a played packet", seq);
                    prop_assert!(last_slot.is_none_or(|l| seq >= l), "stall out of order");
                }
            }
            prop_assert!(b.depth() <= cfg.capacity);
        }
    }
}
