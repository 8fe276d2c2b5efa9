//! Hostile or broken datagrams are dropped and counted, and the relay keeps serving everyone.
//! Undecodable datagrams are sent over real sockets (the receive path must survive them); the
//! per-datagram decisions after parsing (binding, replay window, routing, budgets, tags) run on
//! the in-memory relay, where "nobody got it" is exact.

use crate::common;
use crate::world::*;

use std::collections::HashMap;
use std::net::UdpSocket;
use std::time::Duration;

use common::*;
use relay::Counter;
use voice_core::proto::tcp::{ClientMessage, ServerMessage};
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

/// Two peers in channel 1.
fn pair() -> (World, Peer, Peer) {
    let mut w = World::new(|_| {});
    let a = w.peer("a");
    let b = w.peer("b");
    w.join(&a, 1);
    w.join(&b, 1);
    (w, a, b)
}

#[test]
fn valid_token_from_unbound_address_is_dropped_and_never_rebinds() {
    let (mut w, mut a, b) = pair();
    let spoofer = w.address();
    for seq in 100..110 {
        let d = a.voice_seq(seq, SessionToken::NONE, b"spoof");
        assert!(
            w.relay.datagram(w.now, spoofer, &d).is_empty(),
            "nothing forwarded or answered"
        );
    }
    assert_eq!(w.relay.stats().get(Counter::DropUnboundSource), 10);
    // The real owner still works: its binding did not move.
    let d = a.voice(SessionToken::NONE, b"still here");
    assert_eq!(destinations(&w.send_udp(&a, &d)), vec![b.addr]);
}

#[test]
fn replayed_and_out_of_window_sequence_numbers_are_dropped() {
    let (mut w, a, b) = pair();
    let first = a.voice_seq(1000, SessionToken::NONE, b"one");
    assert_eq!(destinations(&w.send_udp(&a, &first)), vec![b.addr]);
    assert!(w.send_udp(&a, &first).is_empty(), "an exact replay");
    let ahead = a.voice_seq(1300, SessionToken::NONE, b"ahead");
    assert_eq!(destinations(&w.send_udp(&a, &ahead)), vec![b.addr]);
    let stale = a.voice_seq(1001, SessionToken::NONE, b"stale"); // 299 behind
    assert!(w.send_udp(&a, &stale).is_empty());
    let late_ok = a.voice_seq(1299, SessionToken::NONE, b"late but fine");
    assert_eq!(destinations(&w.send_udp(&a, &late_ok)), vec![b.addr]);
    let s = w.relay.stats();
    assert_eq!(s.get(Counter::DropDuplicate), 1);
    assert_eq!(s.get(Counter::DropTooOld), 1);
    let next = a.voice_seq(1301, SessionToken::NONE, b"next");
    assert_eq!(destinations(&w.send_udp(&a, &next)), vec![b.addr]);
}

#[test]
fn sender_not_in_a_channel_is_dropped() {
    let (mut w, mut a, mut b) = pair();
    let mut lone = w.peer("lone");
    let d = lone.voice(SessionToken::NONE, b"anyone?");
    assert!(w.send_udp(&lone, &d).is_empty());
    // Leaving a channel also stops channel voice.
    w.relay.send(w.now, b.conn, ClientMessage::LeaveChannel);
    assert!(w
        .drain(b.conn)
        .iter()
        .any(|m| matches!(m, ServerMessage::Left { .. })));
    let d = b.voice(SessionToken::NONE, b"after leaving");
    assert!(w.send_udp(&b, &d).is_empty());
    assert_eq!(w.relay.stats().get(Counter::DropNotInChannel), 2);
    w.join(&b, 1);
    let d = a.voice(SessionToken::NONE, b"still here");
    assert_eq!(destinations(&w.send_udp(&a, &d)), vec![b.addr]);
}

#[test]
fn whisper_to_missing_self_or_departed_target_is_dropped() {
    let (mut w, mut a, b) = pair();
    let c = w.peer("c");
    w.join(&c, 1);
    let d = a.voice(SessionToken(4242), b"nobody");
    assert!(w.send_udp(&a, &d).is_empty());
    let d = a.voice(a.session, b"myself");
    assert!(w.send_udp(&a, &d).is_empty());
    // c leaves the relay; a whisper to it right after is dropped.
    w.relay.hang_up(c.conn);
    assert!(w
        .drain(a.conn)
        .iter()
        .any(|m| matches!(m, ServerMessage::UserLeft { session, .. } if *session == c.session)));
    let d = a.voice(c.session, b"gone");
    assert!(w.send_udp(&a, &d).is_empty());
    let s = w.relay.stats();
    assert_eq!(s.get(Counter::DropWhisperNoTarget), 2);
    assert_eq!(s.get(Counter::DropWhisperSelf), 1);
    let d = a.voice(SessionToken::NONE, b"still here");
    assert_eq!(destinations(&w.send_udp(&a, &d)), vec![b.addr]);
}

#[test]
fn flooding_sender_is_held_to_its_budget_and_others_still_get_through() {
    const RATE: f64 = 100.0;
    const BURST: f64 = 50.0;
    let mut w = World::new(|c| {
        c.voice_packets.rate = RATE;
        c.voice_packets.burst = BURST;
    });
    let mut flooder = w.peer("flooder");
    let mut b = w.peer("b");
    let c = w.peer("c");
    for p in [&flooder, &b, &c] {
        w.join(p, 1);
    }
    // 10x the budget: 1000 packets in 1 s of simulated time, one every millisecond; b talks
    // every 20 ms throughout and is never held back.
    let mut from_flooder = 0u64;
    for i in 0..1000u32 {
        w.now = w.now + Duration::from_millis(1);
        let d = flooder.voice(SessionToken::NONE, &[7; 100]);
        from_flooder += w
            .send_udp(&flooder, &d)
            .iter()
            .filter(|o| o.to == c.addr)
            .count() as u64;
        if i % 20 == 0 {
            let d = b.voice(SessionToken::NONE, b"not starved");
            assert_eq!(destinations(&w.send_udp(&b, &d)), {
                let mut v = vec![flooder.addr, c.addr];
                v.sort();
                v
            });
        }
    }
    // The burst, then the rate: 50 + 100 per second (one more for the refill's rounding).
    let allowed = (BURST + RATE * 1.0) as u64;
    assert!(
        (allowed - 1..=allowed + 1).contains(&from_flooder),
        "{from_flooder} forwarded, budget {allowed}"
    );
    assert_eq!(
        w.relay.stats().get(Counter::DropPacketBudget),
        1000 - from_flooder
    );
}

#[test]
fn a_bad_tag_or_another_sessions_tag_is_dropped_and_counted() {
    let (mut w, mut a, b) = pair();
    let c = w.peer("c");
    w.join(&c, 1);
    // From a's own address: a flipped payload bit (tag no longer matches), a's header under b's
    // tag (b cannot speak for a even when it knows a's address), an all-zero tag.
    let mut flipped = a.voice(SessionToken::NONE, b"tampered");
    flipped[udp::HEADER_LEN] ^= 1;
    assert!(w.send_udp(&a, &flipped).is_empty());
    let impostor = voice_bytes(&b.key, a.session, 500, SessionToken::NONE, b"b speaks as a");
    assert!(w.send_udp(&a, &impostor).is_empty());
    let mut zero = a.voice(SessionToken::NONE, b"zero tag");
    let n = zero.len();
    zero[n - udp::TAG_LEN..].fill(0);
    assert!(w.send_udp(&a, &zero).is_empty());
    // A registration under another session's tag does not bind either.
    let reg = Header {
        kind: DatagramKind::Register,
        ..Header::voice(a.session, 0, 0)
    };
    let mut buf = [0u8; MAX_DATAGRAM];
    let proof = voice_core::proto::register::sign(&a.secret, a.session, 1000);
    let len = udp::write(&reg, &proof, &b.key, &mut buf).unwrap();
    assert!(w.send_udp(&b, &buf[..len]).is_empty());
    // The honest datagram after them passes, from a's unchanged binding.
    let d = a.voice(SessionToken::NONE, b"honest");
    let mut expect = vec![b.addr, c.addr];
    expect.sort();
    assert_eq!(destinations(&w.send_udp(&a, &d)), expect);
    let s = w.relay.stats();
    assert_eq!(s.get(Counter::DropBadTag), 4);
    // Only the three peers' own registrations succeeded.
    assert_eq!(s.get(Counter::RegisterOk), 3);
    assert_eq!(s.get(Counter::VoiceAccepted), 1);
}
