//! A stall (the awaited packet missing, nothing newer held) keeps the frame of delay it added only
//! where the adaptive target wants it: on a path whose delay already meets the target, a lost
//! packet costs one concealed frame and the rest of the stream plays on time, instead of being
//! rebuilt from the next packet's FEC and moving the rest of the utterance 20 ms later.
use crate::common;
use common::*;
use voice_core::jitter::{AdaptivePolicy, JitterBuffer, JitterConfig, Playout};
use voice_core::proto::udp::Flags;
use voice_core::{Time, FRAME_SAMPLES};

/// Packets in each run.
const PACKETS: u64 = 240;
/// The packet the tests delay or lose.
const EVENT: u64 = 200;

/// What happened to each packet and the stall and FEC counts of a run.
struct Run {
    /// For each packet, the tick at which it played (`None`: not played).
    played: Vec<Option<u64>>,
    /// Frames concealed while holding the position.
    stalled: u64,
    /// Frames the buffer released for recovery from redundancy.
    fec: u64,
}

/// Transit in ms of packet `k` on a path with 20–36 ms of delay (latency 20 ms, jitter spread
/// evenly over 0–16 ms), so the adaptive target settles near 16 ms.
fn transit(k: u64) -> f64 {
    20.0 + ((k * 7) % 17) as f64
}

/// Sends `PACKETS` packets (every one carrying in-band FEC) over a path with the given transit
/// per packet (`None`: lost) through an adaptive jitter buffer that takes one frame per 20 ms
/// tick, delivering what has arrived by each tick before it.
fn run(transit_of: impl Fn(u64) -> Option<f64>) -> Run {
    let mut b = JitterBuffer::new(JitterConfig::default(), Box::new(AdaptivePolicy::default()));
    let mut arrivals: Vec<(f64, u64)> = (0..PACKETS)
        .filter_map(|k| transit_of(k).map(|t| (20.0 * k as f64 + t, k)))
        .collect();
    arrivals.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut played = vec![None; PACKETS as usize];
    let mut next = 0;
    let mut first = None;
    let mut fec = 0;
    for t in 0..PACKETS + 20 {
        while next < arrivals.len() && arrivals[next].0 <= 20.0 * t as f64 {
            let (at, k) = arrivals[next];
            b.push(
                Time::from_millis_f64(at),
                1000 + k as u16,
                k as u32 * FRAME_SAMPLES as u32,
                if k + 1 == PACKETS {
                    Flags(Flags::FEC.0 | Flags::END_OF_SPURT.0)
                } else {
                    Flags::FEC
                },
                &[0xAB; 40],
            );
            next += 1;
        }
        match b.pop(tick(t)) {
            Playout::Packet(f) => {
                let base = *first.get_or_insert(f.seq - (f.seq as u16 - 1000) as u64);
                played[(f.seq - base) as usize] = Some(t);
            }
            Playout::Recover { .. } => fec += 1,
            _ => {}
        }
    }
    let st = b.stats(tick(PACKETS + 20));
    Run {
        played,
        stalled: st.frames_stalled,
        fec,
    }
}

#[test]
fn a_lost_packet_whose_fec_comes_late_is_concealed_where_the_delay_meets_the_target() {
    let steady = run(|k| Some(transit(k)));
    // Packet EVENT is lost; the next one (whose FEC carries it) takes more than 20 ms, as every
    // packet on this path does, so at EVENT's turn nothing newer is held: a stall, ended by the
    // FEC packet at the next turn.
    let lost = run(|k| (k != EVENT).then(|| transit(k)));
    assert_eq!(lost.stalled, steady.stalled + 1);
    assert_eq!(
        lost.fec, 0,
        "the concealed frame stands in for the lost one"
    );
    assert_eq!(lost.played[EVENT as usize], None);
    assert_eq!(
        lost.played[EVENT as usize + 1..],
        steady.played[EVENT as usize + 1..],
        "and the rest of the stream plays on time"
    );
}

#[test]
fn before_the_target_is_an_estimate_a_lost_packet_is_rebuilt_from_fec_after_a_stall() {
    // Packet 5 is lost before the policy has seen enough packets to estimate its target: the
    // stall ended by the next packet keeps its frame, and FEC rebuilds the lost one.
    let early = run(|k| (k != 5).then(|| transit(k)));
    assert_eq!(early.fec, 1, "rebuilt from the next packet's FEC");
    assert_eq!(early.played[5], None);
    assert!(early.played[6].is_some());
}
