//! The silence between talk spurts is neither concealed nor counted as loss.
use crate::common;
use common::*;
use voice_core::proto::udp::Flags;

#[test]
fn gap_between_spurts_is_not_loss() {
    let mut b = buffer();
    let mut seq = 200u16;
    let mut k = 0u64;
    let mut concealed = 0;
    let mut played = 0;
    for spurt in 0..3 {
        for i in 0..10 {
            let flags = if i == 9 {
                Flags::END_OF_SPURT
            } else {
                Flags::default()
            };
            b.push(tick(k), seq, (k * 960) as u32, flags, &[1; 20]);
            seq = seq.wrapping_add(1);
            match pop(&mut b, tick(k)) {
                Some(Ok(_)) => played += 1,
                Some(Err(_)) => concealed += 1,
                None => {}
            }
            k += 1;
        }
        // Drain, then 2 s of silence: the sender sends nothing, numbering continues after.
        for _ in 0..(if spurt < 2 { 100 } else { 5 }) {
            match pop(&mut b, tick(k)) {
                Some(Ok(_)) => played += 1,
                Some(Err(_)) => concealed += 1,
                None => {}
            }
            k += 1;
        }
    }
    assert_eq!(played, 30);
    assert_eq!(concealed, 0, "silence is not concealed");
    let st = b.stats(tick(k));
    assert_eq!(st.packets_lost, 0);
    assert_eq!(st.loss_percent_10s, 0.0);
}

#[test]
fn a_pause_without_end_marker_stops_concealing_after_a_short_run() {
    let mut b = buffer();
    for s in 0..5u16 {
        push(&mut b, tick(s as u64), s);
    }
    let mut gaps = 0;
    let mut idle = 0;
    for k in 0..60 {
        match pop(&mut b, tick(k)) {
            Some(Err(_)) => gaps += 1,
            None => idle += 1,
            Some(Ok(_)) => {}
        }
    }
    assert!(
        gaps <= 10,
        "concealment stops after max_missing_run, got {gaps}"
    );
    assert!(idle > 40);
    // The next spurt starts cleanly at the watermark.
    push(&mut b, tick(60), 5);
    push(&mut b, tick(60), 6);
    assert_eq!(pop(&mut b, tick(61)).unwrap().unwrap() as u16, 5);
}
