//! Playout waits for the watermark (seed: 2 packets), then releases exactly one frame per tick.
use crate::common;
use common::*;

#[test]
fn playout_waits_for_the_watermark() {
    let mut b = buffer();
    assert_eq!(pop(&mut b, tick(0)), None, "empty buffer is idle");
    push(&mut b, tick(0), 100);
    assert_eq!(
        pop(&mut b, tick(1)),
        None,
        "one packet is below the watermark"
    );
    assert!(!b.is_playing());
    push(&mut b, tick(1), 101);
    let first = pop(&mut b, tick(2)).expect("two packets reach the watermark");
    assert!(first.is_ok());
    assert!(b.is_playing());
}

#[test]
fn one_frame_per_tick_and_nothing_more() {
    let mut b = buffer();
    // A burst of 6 packets arrives at once.
    for s in 0..6u16 {
        push(&mut b, tick(0), 1000 + s);
    }
    let mut played = Vec::new();
    for k in 0..6 {
        played.push(pop(&mut b, tick(k)).unwrap().unwrap());
        assert_eq!(
            b.depth(),
            5 - k as usize,
            "exactly one frame leaves per tick"
        );
    }
    let base = played[0];
    assert_eq!(played, (base..base + 6).collect::<Vec<_>>());
}

#[test]
fn a_lone_end_of_spurt_packet_still_plays() {
    use voice_core::proto::udp::Flags;
    let mut b = buffer();
    b.push(tick(0), 7, 0, Flags::END_OF_SPURT, &[1; 10]);
    assert!(matches!(pop(&mut b, tick(1)), Some(Ok(_))));
    assert_eq!(
        pop(&mut b, tick(2)),
        None,
        "spurt over: idle, no concealment"
    );
}
