//! Hostile or broken datagrams are dropped and counted, and the relay keeps serving everyone.

use crate::common;

use std::collections::HashMap;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::*;
use voice_core::proto::tcp::ClientMessage;
use voice_core::proto::udp::{self, DatagramKind, Header, MAX_DATAGRAM, PROTOCOL_VERSION};
use voice_core::proto::SessionToken;

/// Normal fan-out still works: a talks, b hears exactly that.
fn still_serving(g: &mut [Client]) {
    let d = g[0].talk(b"still here");
    g[1].expect_udp(&d);
}

fn delta(before: &HashMap<String, u64>, after: &HashMap<String, u64>, k: &str) -> u64 {
    after[k] - before[k]
}

#[test]
fn garbage_datagrams_are_dropped_by_reason() {
    let relay = start(|_| {});
    let mut g = group(relay.local_addr(), 1, &["a", "b"]);
    let before = g[0].stats();
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = relay.local_addr();
    s.send_to(&[], to).unwrap();
    s.send_to(&[1], to).unwrap();
    s.send_to(&[1; 19], to).unwrap();
    s.send_to(&vec![1u8; MAX_DATAGRAM + 1], to).unwrap();
    s.send_to(&vec![1u8; 9000], to).unwrap();
    let mut bad_version = voice_bytes(&g[0].key, g[0].session, 1, SessionToken::NONE, b"x");
    bad_version[0] = PROTOCOL_VERSION + 1;
    s.send_to(&bad_version, to).unwrap();
    // Garbage also from the bound socket of a member.
    g[0].send_udp(&bad_version);
    g[0].send_udp(&[0xFF; 3]);
    still_serving(&mut g);
    g[0].expect_no_udp();
    let after = g[0].stats();
    assert_eq!(delta(&before, &after, "drop_too_short"), 4);
    assert_eq!(delta(&before, &after, "drop_too_long"), 2);
    assert_eq!(delta(&before, &after, "drop_bad_version"), 2);
    assert_eq!(delta(&before, &after, "forwarded_packets"), 1);
}

#[test]
fn valid_token_from_unbound_address_is_dropped_and_never_rebinds() {
    let relay = start(|_| {});
    let mut g = group(relay.local_addr(), 1, &["a", "b"]);
    let before = g[0].stats();
    let spoofer = UdpSocket::bind("127.0.0.1:0").unwrap();
    for seq in 100..110 {
        let d = voice_bytes(&g[0].key, g[0].session, seq, SessionToken::NONE, b"spoof");
        spoofer.send_to(&d, relay.local_addr()).unwrap();
    }
    g[1].expect_no_udp();
    // The real owner still works (binding unchanged), and a replayed old registration from the
    // spoofer does not move it either.
    still_serving(&mut g);
    let after = g[0].stats();
    assert_eq!(delta(&before, &after, "drop_unbound_source"), 10);
    // Nothing answered the spoofer.
    spoofer.set_read_timeout(Some(QUIET)).unwrap();
    assert!(spoofer.recv_from(&mut [0u8; 64]).is_err());
}

#[test]
fn replayed_and_out_of_window_sequence_numbers_are_dropped() {
    let relay = start(|_| {});
    let mut g = group(relay.local_addr(), 1, &["a", "b"]);
    let before = g[0].stats();
    let a = g[0].session;
    let first = voice_bytes(&g[0].key, a, 1000, SessionToken::NONE, b"one");
    g[0].send_udp(&first);
    g[1].expect_udp(&first);
    g[0].send_udp(&first); // exact replay
    g[1].expect_no_udp();
    let ahead = voice_bytes(&g[0].key, a, 1300, SessionToken::NONE, b"ahead");
    g[0].send_udp(&ahead);
    g[1].expect_udp(&ahead);
    let stale = voice_bytes(&g[0].key, a, 1001, SessionToken::NONE, b"stale"); // 299 behind
    g[0].send_udp(&stale);
    g[1].expect_no_udp();
    let late_ok = voice_bytes(&g[0].key, a, 1299, SessionToken::NONE, b"late but fine");
    g[0].send_udp(&late_ok);
    g[1].expect_udp(&late_ok);
    let after = g[0].stats();
    assert_eq!(delta(&before, &after, "drop_duplicate"), 1);
    assert_eq!(delta(&before, &after, "drop_too_old"), 1);
    let d = voice_bytes(&g[0].key, a, 1301, SessionToken::NONE, b"next");
    g[0].send_udp(&d);
    g[1].expect_udp(&d);
}

#[test]
fn sender_not_in_a_channel_is_dropped() {
    let relay = start(|_| {});
    let mut g = group(relay.local_addr(), 1, &["a", "b"]);
    let mut lone = Client::connect(relay.local_addr(), "lone");
    let before = g[0].stats();
    lone.talk(b"anyone?");
    g[0].expect_no_udp();
    g[1].expect_no_udp();
    // Leaving a channel also stops channel voice.
    g[1].send(&ClientMessage::LeaveChannel);
    g[1].ctl
        .recv_until(|m| matches!(m, voice_core::proto::tcp::ServerMessage::Left { .. }));
    g[1].talk(b"after leaving");
    g[0].expect_no_udp();
    let after = lone.stats();
    assert_eq!(delta(&before, &after, "drop_not_in_channel"), 2);
    g[1].join(1);
    still_serving(&mut g);
}

#[test]
fn whisper_to_missing_self_or_departed_target_is_dropped() {
    let relay = start(|_| {});
    let mut g = group(relay.local_addr(), 1, &["a", "b", "c"]);
    let before = g[0].stats();
    let me = g[0].session;
    let d = g[0].voice(SessionToken(4242), b"nobody");
    g[0].send_udp(&d);
    let d = g[0].voice(me, b"myself");
    g[0].send_udp(&d);
    // c leaves the relay; a whisper to it right after is dropped.
    let c = g.pop().unwrap();
    let c_session = c.session;
    drop(c);
    g[0].ctl
        .recv_until(|m| matches!(m, voice_core::proto::tcp::ServerMessage::UserLeft { .. }));
    let d = g[0].voice(c_session, b"gone");
    g[0].send_udp(&d);
    g[0].expect_no_udp();
    g[1].expect_no_udp();
    let after = g[0].stats();
    assert_eq!(delta(&before, &after, "drop_whisper_no_target"), 2);
    assert_eq!(delta(&before, &after, "drop_whisper_self"), 1);
    still_serving(&mut g);
}

#[test]
fn flooding_sender_is_held_to_its_budget_and_others_still_get_through() {
    const RATE: f64 = 100.0;
    const BURST: f64 = 50.0;
    let relay = start(|c| {
        c.voice_packets.rate = RATE;
        c.voice_packets.burst = BURST;
    });
    let mut g = group(relay.local_addr(), 1, &["flooder", "b", "c"]);
    let before = g[1].stats();
    let started = Instant::now();
    // 10x the budget: 1000 packets within ~1 s.
    for i in 0..1000u32 {
        g[0].talk(&[7; 100]);
        if i % 100 == 99 {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Another member talks while the flood is on and is heard.
    let d = g[1].talk(b"not starved");
    let mut heard_b = false;
    let mut from_flooder = 0u64;
    while let Some(p) = g[2].recv_udp(Duration::from_millis(300)) {
        if p == d {
            heard_b = true;
        } else {
            from_flooder += 1;
        }
    }
    assert!(heard_b, "a normal sender was starved by the flood");
    let allowed = BURST + RATE * (elapsed + 0.1);
    assert!(
        (from_flooder as f64) <= allowed,
        "{from_flooder} forwarded > budget {allowed:.0}"
    );
    assert!(
        from_flooder >= BURST as u64,
        "budget should let the burst through"
    );
    let after = g[1].stats();
    assert!(delta(&before, &after, "drop_packet_budget") >= 1000 - allowed as u64);
    still_serving(&mut g[1..]);
}

#[test]
fn a_bad_tag_or_another_sessions_tag_is_dropped_and_counted() {
    let relay = start(|_| {});
    let mut g = group(relay.local_addr(), 1, &["a", "b", "c"]);
    let before = g[0].stats();
    let (a, b_key) = (g[0].session, g[1].key.clone());
    // From a's own bound socket: a flipped payload bit (tag no longer matches), a's header under
    // b's tag (b cannot speak for a even when it knows a's address), an all-zero tag.
    let mut flipped = g[0].voice(SessionToken::NONE, b"tampered");
    flipped[udp::HEADER_LEN] ^= 1;
    g[0].send_udp(&flipped);
    let impostor = voice_bytes(&b_key, a, 500, SessionToken::NONE, b"b speaks as a");
    g[0].send_udp(&impostor);
    let mut zero = g[0].voice(SessionToken::NONE, b"zero tag");
    let n = zero.len();
    zero[n - udp::TAG_LEN..].fill(0);
    g[0].send_udp(&zero);
    // A registration under another session's tag does not bind either.
    let reg = Header {
        kind: DatagramKind::Register,
        ..Header::voice(a, 0, 0)
    };
    let mut buf = [0u8; MAX_DATAGRAM];
    let proof = voice_core::proto::register::sign(&g[0].secret, a, 1000);
    let len = udp::write(&reg, &proof, &b_key, &mut buf).unwrap();
    g[1].send_udp(&buf[..len]);
    g[1].expect_no_udp();
    g[2].expect_no_udp();
    // The honest datagrams around them pass, from a's unchanged binding.
    let d = g[0].talk(b"honest");
    g[1].expect_udp(&d);
    g[2].expect_udp(&d);
    let after = g[0].stats();
    assert_eq!(delta(&before, &after, "drop_bad_tag"), 4);
    assert_eq!(delta(&before, &after, "register_ok"), 0);
    assert_eq!(delta(&before, &after, "voice_accepted"), 1);
}
