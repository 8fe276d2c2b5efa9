//! Sequence numbers wrap at 2^16 without a hiccup: no loss, no late, in order.
use crate::common;
use common::*;

#[test]
fn playout_is_continuous_across_the_wrap() {
    let mut b = buffer();
    let first: u16 = 65_530;
    let mut played = Vec::new();
    for k in 0..20u64 {
        push(&mut b, tick(k), first.wrapping_add(k as u16));
        if let Some(r) = pop(&mut b, tick(k)) {
            played.push(r.expect("no gaps on a clean path"));
        }
    }
    assert!(played.len() >= 18);
    for w in played.windows(2) {
        assert_eq!(w[1], w[0] + 1);
    }
    let wire: Vec<u16> = played.iter().map(|&e| e as u16).collect();
    assert!(wire.contains(&65_535) && wire.contains(&0));
    let st = b.stats(tick(20));
    assert_eq!(st.packets_lost, 0);
    assert_eq!(st.packets_late, 0);
}

#[test]
fn reordering_across_the_wrap_is_resolved() {
    let mut b = buffer();
    for s in [65_534u16, 0, 65_535, 1] {
        push(&mut b, tick(0), s);
    }
    let played: Vec<u16> = (1..5)
        .map(|k| pop(&mut b, tick(k)).unwrap().unwrap() as u16)
        .collect();
    assert_eq!(played, vec![65_534, 65_535, 0, 1]);
}
