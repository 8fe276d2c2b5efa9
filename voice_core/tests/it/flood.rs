//! Floods and huge sequence jumps resynchronise instead of growing memory.
use crate::common;
use common::*;
use voice_core::jitter::JitterConfig;

#[test]
fn a_flood_does_not_grow_the_buffer() {
    let cfg = JitterConfig::default();
    let mut b = buffer();
    // 100 000 packets in a burst, 10 per tick, with random-ish numbers.
    let mut seq = 0u16;
    for k in 0..10_000u64 {
        for _ in 0..10 {
            push(&mut b, tick(k), seq);
            seq = seq.wrapping_add(1);
        }
        let _ = pop(&mut b, tick(k));
        assert!(b.depth() <= cfg.capacity);
    }
    let st = b.stats(tick(10_000));
    assert!(st.max_buffer_depth as usize <= cfg.capacity);
    assert!(st.packets_overflow_dropped > 50_000);
}

#[test]
fn a_huge_jump_ahead_resynchronises() {
    let mut b = buffer();
    for s in 0..4u16 {
        push(&mut b, tick(0), s);
    }
    let _ = pop(&mut b, tick(1));
    push(&mut b, tick(1), 20_000);
    push(&mut b, tick(1), 20_001);
    assert!(b.depth() <= 3);
    let st = b.stats(tick(2));
    assert!(st.resyncs >= 1);
    // Playout reaches the new packets within a few ticks.
    let mut reached = false;
    for k in 2..100 {
        if let Some(Ok(s)) = pop(&mut b, tick(k)) {
            if s as u16 == 20_000 {
                reached = true;
                break;
            }
        }
    }
    assert!(reached);
}

#[test]
fn a_restarted_sender_far_behind_is_followed() {
    let mut b = buffer();
    for k in 0..50u64 {
        push(&mut b, tick(k), 30_000 + k as u16);
        let _ = pop(&mut b, tick(k));
    }
    // The sender restarts from 100: far behind, would look late forever.
    let mut played_new = false;
    for k in 50..120u64 {
        push(&mut b, tick(k), 100 + (k - 50) as u16);
        if let Some(Ok(s)) = pop(&mut b, tick(k)) {
            played_new |= (s as u16) < 1000;
        }
    }
    assert!(played_new, "the buffer follows the restarted stream");
}

/// Regression (found by `fuzz/receiver_decode`): the packet that triggered the restart was
/// counted twice — once as late in the old stream, once as the first of the new one.
#[test]
fn a_restart_counts_every_packet_once() {
    let cfg = JitterConfig::default();
    let mut b = buffer();
    let mut pushed = 0u64;
    for k in 0..20u64 {
        push(&mut b, tick(k), 30_000 + k as u16);
        pushed += 1;
        let _ = pop(&mut b, tick(k));
    }
    // The sender restarts from 100.
    for k in 20..60u64 {
        push(&mut b, tick(k), 100 + (k - 20) as u16);
        pushed += 1;
        let _ = pop(&mut b, tick(k));
    }
    let st = b.stats(tick(60));
    assert_eq!(st.resyncs, 1);
    assert_eq!(st.packets_received, pushed);
    // Only the packets before the restart were late; the trigger starts the new stream.
    assert_eq!(st.packets_late, u64::from(cfg.restart_after_stale) - 1);
}

#[test]
fn random_garbage_numbers_keep_memory_bounded() {
    let mut b = buffer();
    let mut x: u32 = 12345;
    for k in 0..50_000u64 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        push(&mut b, tick(k / 4), x as u16);
        if k % 4 == 0 {
            let _ = pop(&mut b, tick(k / 4));
        }
        assert!(b.depth() <= JitterConfig::default().capacity);
    }
}
