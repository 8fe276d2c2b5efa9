//! Loss percentage covers the last 10 s only and rolls off.
use crate::common;
use common::*;

#[test]
fn loss_window_rolls_off_after_ten_seconds() {
    let mut b = buffer();
    // Second 0..5: every 10th packet lost (10 %).
    let mut k = 0u64;
    while k < 250 {
        if k % 10 != 5 {
            push(&mut b, tick(k), k as u16);
        }
        let _ = pop(&mut b, tick(k));
        k += 1;
    }
    let early = b.stats(tick(k)).loss_percent_10s;
    assert!((early - 10.0).abs() < 1.0, "loss {early}");
    // Seconds 5..20: clean.
    while k < 1000 {
        push(&mut b, tick(k), k as u16);
        let _ = pop(&mut b, tick(k));
        k += 1;
    }
    let st = b.stats(tick(k));
    assert_eq!(st.loss_percent_10s, 0.0, "old losses have rolled off");
    assert_eq!(st.packets_lost, 25, "the lifetime count keeps them");
    // Mid-way (at 12 s) part of the lossy period is still inside the window.
    let mut b2 = buffer();
    for k in 0..600u64 {
        if k < 250 && k % 10 == 5 {
            continue;
        }
        push(&mut b2, tick(k), k as u16);
    }
    let mid = b2.stats(tick(600)).loss_percent_10s;
    assert!(mid > 0.5 && mid < 10.0, "partially rolled off: {mid}");
}
