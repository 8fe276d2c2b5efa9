//! A packet older than what has been played is dropped at once and counted; duplicates too.
use crate::common;
use common::*;

#[test]
fn late_packets_are_dropped_and_counted() {
    let mut b = buffer();
    push(&mut b, tick(0), 0);
    push(&mut b, tick(0), 2);
    assert!(pop(&mut b, tick(1)).unwrap().is_ok()); // plays 0
    assert!(pop(&mut b, tick(2)).unwrap().is_err()); // 1 is missing: concealed
    let depth = b.depth();
    assert_eq!(
        push(&mut b, tick(2), 1),
        voice_core::jitter::PushOutcome::Late
    );
    assert_eq!(b.depth(), depth, "a late packet is not buffered");
    let st = b.stats(tick(3));
    assert_eq!(st.packets_late, 1);
    assert_eq!(st.packets_received, 3);
    assert_eq!(st.packets_lost, 0, "late is not lost");
    // The next tick plays 2, never 1.
    let s = pop(&mut b, tick(3)).unwrap().unwrap();
    assert_eq!(s % 65536, 2);
}

#[test]
fn duplicates_are_dropped_and_counted_even_after_playout() {
    use voice_core::jitter::PushOutcome;
    let mut b = buffer();
    assert_eq!(push(&mut b, tick(0), 40), PushOutcome::Buffered);
    assert_eq!(push(&mut b, tick(0), 40), PushOutcome::Duplicate);
    assert_eq!(push(&mut b, tick(0), 41), PushOutcome::Buffered);
    let _ = pop(&mut b, tick(1));
    assert_eq!(push(&mut b, tick(1), 40), PushOutcome::Duplicate);
    let st = b.stats(tick(2));
    assert_eq!(st.packets_duplicate, 2);
    assert_eq!(st.packets_late, 0);
    assert_eq!(st.packets_received, 2);
}
