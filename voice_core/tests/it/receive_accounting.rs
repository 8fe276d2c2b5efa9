//! Receive-path accounting found end to end: a first packet that arrives after its successor is
//! not late, a delay spike is waited out instead of dropping what comes late, and every sequence
//! number of a long burst ends up in exactly one counter.
use crate::common;
use common::*;
use voice_core::jitter::{AdaptivePolicy, JitterBuffer, JitterConfig};
use voice_core::stream::{FrameSource, Receiver};
use voice_core::Time;

#[test]
fn a_first_packet_that_arrives_after_its_successor_plays_first() {
    let mut b = buffer();
    push(&mut b, tick(0), 101);
    push(&mut b, tick(0) + std::time::Duration::from_millis(3), 100);
    let st = b.stats(tick(1));
    assert_eq!(st.packets_late, 0, "{st:?}");
    assert_eq!(st.packets_received, 2);
    assert_eq!(st.packets_lost, 0, "loss is not undercounted");
    let Some(Ok(first)) = pop(&mut b, tick(1)) else {
        panic!("playout starts");
    };
    assert_eq!(first as u16, 100, "the earlier packet plays first");
    assert_eq!(pop(&mut b, tick(2)), Some(Ok(first + 1)));
}

#[test]
fn a_delay_spike_is_waited_out_and_nothing_arrives_late() {
    let mut b = JitterBuffer::new(JitterConfig::default(), Box::new(AdaptivePolicy::default()));
    let mut played = Vec::new();
    let mut stalled = 0;
    for k in 0..80u64 {
        // 20 ms latency; packets 30..36 are held back until tick 37 (a 140 ms spike), then all
        // arrive together.
        let seq = k as u16;
        match k {
            30..=36 => {}
            37 => {
                for s in 30..=37u16 {
                    push(&mut b, tick(k) + std::time::Duration::from_millis(20), s);
                }
            }
            _ => {
                push(&mut b, tick(k) + std::time::Duration::from_millis(20), seq);
            }
        }
        match pop(&mut b, tick(k + 2)) {
            Some(Ok(s)) => played.push(s),
            Some(Err(_)) => stalled += 1,
            None => {}
        }
    }
    let stalled_in_loop = b.stats(tick(82)).frames_stalled;
    while let Some(r) = pop(&mut b, tick(200)) {
        match r {
            Ok(s) => played.push(s),
            Err(_) => break,
        }
    }
    let st = b.stats(tick(200));
    assert_eq!(st.packets_late, 0, "{st:?}");
    assert!(
        stalled > 0 && stalled_in_loop == stalled,
        "{stalled} {st:?}"
    );
    let first = played[0];
    assert_eq!(
        played,
        (first..first + 80).collect::<Vec<_>>(),
        "every packet plays once, in order"
    );
}

#[test]
fn every_frame_of_a_long_burst_is_counted_once() {
    let packets = 120usize;
    let burst = 40..77usize; // 37 lost in a row: longer than the buffer waits before going idle
    let dgrams = datagrams(packets, 500);
    let mut rx = Receiver::new(
        JitterConfig::default(),
        Box::new(voice_core::jitter::FixedWatermark::default()),
    )
    .unwrap();
    let mut out = [0i16; voice_core::FRAME_SAMPLES];
    let mut played_packets = 0u64;
    for k in 0..packets + 10 {
        if let Some(d) = dgrams.get(k).filter(|_| !burst.contains(&k)) {
            let (h, p) = parse(d);
            let _ = rx.handle_datagram(tick(k as u64), &h, p);
        }
        let _ = rx.tick(Time::from_millis(20 * k as u64 + 10), &mut out);
        played_packets += rx
            .last_frames()
            .iter()
            .filter(|f| f.1 == FrameSource::Packet)
            .count() as u64;
    }
    let st = rx.stats(tick(200));
    assert_eq!(played_packets, (packets - burst.len()) as u64);
    assert_eq!(
        played_packets
            + st.frames_concealed
            + st.frames_fec_recovered
            + st.frames_dred_recovered
            + st.frames_skipped,
        packets as u64,
        "{st:?}"
    );
    assert!(st.frames_skipped > 0, "{st:?}");
}
