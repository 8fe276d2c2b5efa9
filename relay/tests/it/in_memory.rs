//! Multi-client behaviour on the in-memory relay (`relay::memory`) and a simulated clock: the
//! relay's own handshake, control transitions and per-datagram path, with no sockets, threads or
//! sleeps. Whatever the relay sends is returned by the call that caused it, so "nobody else got
//! it" is checked exactly. The socket server's own work (TLS, framing, batches) is tested over
//! loopback in the other modules.

use std::time::Duration;

use crate::world::*;
use relay::Counter;
use voice_core::engine::{ConnectionState, Event};
use voice_core::proto::tcp::{ClientMessage, ServerMessage, VoiceState};
use voice_core::proto::udp::{self, DatagramKind, Header, MAX_DATAGRAM};
use voice_core::proto::SessionToken;

#[test]
fn fan_out_reaches_every_other_member_and_nobody_else() {
    let mut w = World::new(|_| {});
    let mut a = w.peer("a");
    let b = w.peer("b");
    let c = w.peer("c");
    let outsider = w.peer("outsider");
    for p in [&a, &b, &c] {
        w.join(p, 1);
    }
    w.join(&outsider, 2);
    let d = a.voice(SessionToken::NONE, &[0xAB; 160]);
    let out = w.send_udp(&a, &d);
    assert_eq!(destinations(&out), {
        let mut v = vec![b.addr, c.addr];
        v.sort();
        v
    });
    assert!(out.iter().all(|o| o.bytes == d), "the exact bytes");
    let s = w.relay.stats();
    assert_eq!(s.get(Counter::ForwardedPackets), 2);
    assert_eq!(s.get(Counter::VoiceAccepted), 1);
}

#[test]
fn whisper_reaches_only_its_target_in_any_channel() {
    let mut w = World::new(|_| {});
    let mut a = w.peer("a");
    let mut b = w.peer("b");
    let c = w.peer("c");
    let far = w.peer("far");
    let lone = w.peer("lone");
    for p in [&a, &b, &c] {
        w.join(p, 1);
    }
    w.join(&far, 2);
    // Within the channel.
    let d = a.voice(c.session, b"psst");
    assert_eq!(destinations(&w.send_udp(&a, &d)), vec![c.addr]);
    // Across channels, and to a session in no channel.
    let d = a.voice(far.session, b"hey");
    assert_eq!(destinations(&w.send_udp(&a, &d)), vec![far.addr]);
    let d = b.voice(lone.session, b"yo");
    assert_eq!(destinations(&w.send_udp(&b, &d)), vec![lone.addr]);
    // To a session that does not exist: nobody.
    let d = a.voice(SessionToken(9999), b"void");
    assert!(w.send_udp(&a, &d).is_empty());
}

#[test]
fn channels_are_isolated_and_a_move_changes_what_is_heard() {
    let mut w = World::new(|_| {});
    let mut a = w.peer("a");
    let b = w.peer("b");
    let mut c = w.peer("c");
    let d_ = w.peer("d");
    w.join(&a, 1);
    w.join(&b, 1);
    w.join(&c, 2);
    w.join(&d_, 2);
    let one = a.voice(SessionToken::NONE, b"one");
    assert_eq!(destinations(&w.send_udp(&a, &one)), vec![b.addr]);
    let two = c.voice(SessionToken::NONE, b"two");
    assert_eq!(destinations(&w.send_udp(&c, &two)), vec![d_.addr]);
    // b moves to channel 2: it hears channel 2 only.
    w.join(&b, 2);
    let two = c.voice(SessionToken::NONE, b"two again");
    let mut expect = vec![b.addr, d_.addr];
    expect.sort();
    assert_eq!(destinations(&w.send_udp(&c, &two)), expect);
    let one = a.voice(SessionToken::NONE, b"one again");
    assert!(w.send_udp(&a, &one).is_empty(), "a is alone in channel 1");
}

#[test]
fn a_replayed_datagram_is_forwarded_once() {
    let mut w = World::new(|_| {});
    let mut a = w.peer("a");
    let b = w.peer("b");
    w.join(&a, 1);
    w.join(&b, 1);
    let d = a.voice(SessionToken::NONE, b"once");
    assert_eq!(w.send_udp(&a, &d).len(), 1);
    assert!(w.send_udp(&a, &d).is_empty());
    assert_eq!(w.relay.stats().get(Counter::DropDuplicate), 1);
}

#[test]
fn pings_are_answered_to_their_bound_sender_only() {
    let mut w = World::new(|_| {});
    let a = w.peer("a");
    let h = Header {
        kind: DatagramKind::Ping,
        ..Header::voice(a.session, 9, 1234)
    };
    let mut buf = [0u8; MAX_DATAGRAM];
    let n = udp::write(&h, b"probe-payload", &a.key, &mut buf).unwrap();
    let out = w.send_udp(&a, &buf[..n]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, a.addr);
    assert_eq!(out[0].bytes.len(), n, "a pong is the size of its ping");
    let pong = udp::parse(&out[0].bytes).unwrap();
    assert_eq!(pong.header.kind, DatagramKind::Pong);
    assert_eq!(pong.payload, b"probe-payload");
    // The same ping from another address gets nothing back.
    let stranger = w.address();
    assert!(w.relay.datagram(w.now, stranger, &buf[..n]).is_empty());
}

#[test]
fn rebinding_by_registration_moves_the_address() {
    let mut w = World::new(|_| {});
    let mut a = w.peer("a");
    let mut b = w.peer("b");
    w.join(&a, 1);
    w.join(&b, 1);
    let old = b.addr;
    b.addr = w.address();
    w.register(&mut b);
    let d = a.voice(SessionToken::NONE, b"after rebinding");
    assert_eq!(destinations(&w.send_udp(&a, &d)), vec![b.addr]);
    // Datagrams from the old address are no longer b's.
    let stale = b.voice(SessionToken::NONE, b"stale");
    assert!(w.relay.datagram(w.now, old, &stale).is_empty());
}

#[test]
fn an_idle_session_times_out_and_its_channel_is_told() {
    let mut w = World::new(|c| c.idle_timeout_ms = 5_000);
    let a = w.peer("a");
    let b = w.peer("b");
    w.join(&a, 1);
    w.join(&b, 1);
    w.drain(a.conn);
    // a keeps its connection alive; b says nothing.
    for _ in 0..6 {
        w.now = w.now + Duration::from_secs(1);
        w.relay
            .send(w.now, a.conn, ClientMessage::Ping { client_time_us: 1 });
        w.relay.advance(w.now);
    }
    assert!(w.relay.is_closed(b.conn));
    assert!(!w.relay.is_closed(a.conn));
    let got = w.drain(a.conn);
    assert!(
        got.iter().any(|m| matches!(m,
            ServerMessage::UserLeft { session, .. } if *session == b.session)),
        "{got:?}"
    );
    assert_eq!(w.relay.stats().get(Counter::TcpIdleTimeout), 1);
}

#[test]
fn a_connection_without_hello_is_closed_at_the_handshake_timeout() {
    let mut w = World::new(|c| c.handshake_timeout_ms = 2_000);
    let conn = w.relay.connect(w.now);
    w.now = w.now + Duration::from_millis(1_999);
    w.relay.advance(w.now);
    assert!(!w.relay.is_closed(conn));
    w.now = w.now + Duration::from_millis(1);
    w.relay.advance(w.now);
    assert!(w.relay.is_closed(conn));
    assert!(w.drain(conn).is_empty(), "closed without an error frame");
    assert_eq!(w.relay.stats().get(Counter::TcpHandshakeTimeout), 1);
}

/// Counts the voice datagrams each node received (pongs and acks left out).
fn voice_heard(e: &Engines, i: usize) -> u64 {
    e.nodes[i].engine_rx_voice
}

/// Three engines: two talk in channel 1, one listens in channel 2.
fn three_engines() -> Engines {
    let mut e = Engines::new();
    e.add("alice", 1);
    e.add("bob", 1);
    e.add("carol", 2);
    e.nodes[0].tone_hz = Some(440.0);
    e.nodes[0].engine.set_push_to_talk(true);
    e.run(Duration::from_secs(2));
    e
}

#[test]
fn engines_hear_their_channel_and_nothing_else() {
    let e = three_engines();
    for n in &e.nodes {
        assert_eq!(n.engine.state(), ConnectionState::Connected);
        assert!(n.engine.udp_ready());
    }
    // Alice's voice reached Bob (about 50 frames a second), and not Carol or Alice herself.
    assert!(voice_heard(&e, 1) >= 80, "bob heard {}", voice_heard(&e, 1));
    assert_eq!(voice_heard(&e, 2), 0);
    assert_eq!(voice_heard(&e, 0), 0);
    assert!(e.nodes[1].events.iter().any(|ev| matches!(
        ev,
        Event::ChannelJoined { channel } if channel.users.len() == 2
    )));
    let relay = e.world.relay.stats();
    assert_eq!(relay.total_drops(), 0, "nothing dropped on a clean world");
}

#[test]
fn the_same_world_runs_the_same_way_twice() {
    let fingerprint = |e: &Engines| {
        let mut s = String::new();
        for n in &e.nodes {
            s += &format!(
                "{} {} {:?}\n",
                n.engine_rx_voice,
                n.datagrams_in,
                n.events
                    .iter()
                    .map(|ev| format!("{ev:?}"))
                    .collect::<Vec<_>>()
            );
        }
        s += &format!("{:?}", e.world.relay.stats().snapshot());
        s
    };
    let one = fingerprint(&three_engines());
    let two = fingerprint(&three_engines());
    assert_eq!(one, two);
}

#[test]
fn a_tunneled_member_sends_and_receives_through_its_control_connection() {
    let mut w = World::new(|_| {});
    let mut a = w.peer("a");
    let mut b = w.peer("b");
    for p in [&a, &b] {
        w.join(p, 1);
    }
    for p in [&a, &b] {
        w.drain(p.conn);
    }
    // a's UDP stops getting through: it moves its voice onto its control connection.
    let d = a.voice(SessionToken::NONE, b"through the tunnel");
    let sent = w.relay.send(
        w.now,
        a.conn,
        ClientMessage::Tunnel {
            active: true,
            datagram: d.clone(),
        },
    );
    assert_eq!(
        destinations(&sent),
        vec![b.addr],
        "UDP members get it over UDP"
    );
    assert_eq!(sent[0].bytes, d, "the exact bytes");
    // b's voice reaches a inside its connection, and not over UDP.
    let d = b.voice(SessionToken::NONE, b"to the tunneled member");
    assert!(w.send_udp(&b, &d).is_empty());
    assert_eq!(w.drain(a.conn), vec![ServerMessage::Tunnel { datagram: d }]);
    let s = w.relay.stats();
    assert_eq!(s.get(Counter::TunnelForwarded), 1);
    assert_eq!(s.get(Counter::Tunneled), 1);
}

#[test]
fn a_mute_is_shown_to_the_channel_and_to_whoever_joins_later_with_the_stable_id() {
    let mut e = Engines::new();
    let alice = e.add("alice", 1);
    let bob = e.add("bob", 1);
    let carol = e.add("carol", 2);
    e.run(Duration::from_millis(200));
    let muted = VoiceState {
        muted: true,
        deafened: false,
    };
    e.nodes[alice].engine.set_muted(true);
    e.settle();
    let told = |n: &Node| {
        n.events
            .iter()
            .filter(|ev| matches!(ev, Event::UserState { state, .. } if *state == muted))
            .count()
    };
    // The channel, alice included, is told once; carol's channel is not.
    assert_eq!(told(&e.nodes[alice]), 1);
    assert_eq!(told(&e.nodes[bob]), 1);
    assert_eq!(told(&e.nodes[carol]), 0);
    let session = e.nodes[alice].engine.session();
    let shown = |n: &Node| {
        n.engine
            .channels()
            .iter()
            .flat_map(|c| &c.users)
            .find(|u| u.session == session)
            .map(|u| (u.user_id.clone(), u.state))
    };
    assert_eq!(shown(&e.nodes[bob]), Some(("alice".into(), muted)));
    // carol joins channel 1: her `Joined` lists alice muted.
    e.nodes[carol]
        .engine
        .join_channel(voice_core::proto::ChannelId(1))
        .unwrap();
    e.settle();
    let joined = e.nodes[carol].events.iter().rev().find_map(|ev| match ev {
        Event::ChannelJoined { channel } => Some(channel.clone()),
        _ => None,
    });
    let listed = joined.expect("carol joined").users;
    assert!(listed
        .iter()
        .any(|u| u.session == session && u.user_id == "alice" && u.state == muted));
}
