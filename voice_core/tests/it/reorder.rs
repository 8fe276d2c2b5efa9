//! Reordered packets play in sequence order.
use crate::common;
use common::*;

#[test]
fn reordered_packets_play_in_order() {
    let mut b = buffer();
    let arrival_order = [0u16, 2, 1, 4, 3, 6, 5, 7];
    // Two arrivals per tick for the first four ticks, so the buffer runs ahead.
    for (i, s) in arrival_order.iter().enumerate() {
        push(&mut b, tick(i as u64 / 2), 500 + s);
    }
    let played: Vec<u64> = (0..8)
        .map(|k| pop(&mut b, tick(4 + k)).unwrap().unwrap())
        .collect();
    let base = played[0];
    assert_eq!(played, (base..base + 8).collect::<Vec<_>>());
    assert_eq!(b.stats(tick(20)).packets_late, 0);
}

#[test]
fn a_packet_arriving_before_its_slot_fills_the_gap() {
    let mut b = buffer();
    push(&mut b, tick(0), 10);
    push(&mut b, tick(0), 12);
    assert!(pop(&mut b, tick(1)).unwrap().is_ok()); // 10
    push(&mut b, tick(1), 11); // late in arrival, but before its slot
    let s11 = pop(&mut b, tick(2)).unwrap();
    let s12 = pop(&mut b, tick(3)).unwrap();
    assert!(s11.is_ok() && s12.is_ok());
    assert_eq!(s12.unwrap(), s11.unwrap() + 1);
}
