//! The relay does what `docs/PROTOCOL.md` says, point by point, over real sockets on 127.0.0.1:
//! the sequence window's edge, errors before and after the handshake and whether they close,
//! name rules, whisper from anywhere, the error answers of the control plane, trailing bytes, empty
//! voice payloads, the header fields of `RegisterAck` and `Pong`, the counter each drop lands in,
//! the silent handshake timeout, rejoining one's own channel, and a byte budget that counts headers.

use crate::common;
use crate::world::*;
use relay::Counter;

use std::collections::HashMap;
use std::io::{ErrorKind, Read};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::*;
use voice_core::proto::register;
use voice_core::proto::tcp::{encode_frame, ClientMessage, ErrorCode, ServerMessage};
use voice_core::proto::udp::{
    self, DatagramKind, Flags, Header, TagKey, MAX_DATAGRAM, MAX_PAYLOAD,
};
use voice_core::proto::{ChannelId, SessionToken};

fn delta(before: &HashMap<String, u64>, after: &HashMap<String, u64>, k: &str) -> u64 {
    after[k] - before[k]
}

fn error_code(m: ServerMessage) -> ErrorCode {
    match m {
        ServerMessage::Error { code, .. } => code,
        other => panic!("expected Error, got {other:?}"),
    }
}

/// The connection still works: a ping is answered.
fn alive(c: &mut Client) {
    c.send(&ClientMessage::Ping { client_time_us: 77 });
    assert!(matches!(
        c.ctl
            .recv_until(|m| matches!(m, ServerMessage::Pong { .. })),
        ServerMessage::Pong {
            client_time_us: 77,
            ..
        }
    ));
}

fn datagram(key: &TagKey, h: &Header, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let n = udp::write(h, payload, key, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

#[test]
fn a_datagram_exactly_256_behind_is_too_old_and_255_behind_is_not() {
    let mut w = World::new(|_| {});
    let a = w.peer("a");
    let b = w.peer("b");
    w.join(&a, 1);
    w.join(&b, 1);
    let newest = a.voice_seq(2000, SessionToken::NONE, b"newest");
    assert_eq!(destinations(&w.send_udp(&a, &newest)), vec![b.addr]);
    let edge_in = a.voice_seq(2000 - 255, SessionToken::NONE, b"255 behind");
    assert_eq!(destinations(&w.send_udp(&a, &edge_in)), vec![b.addr]);
    let edge_out = a.voice_seq(2000 - 256, SessionToken::NONE, b"256 behind");
    assert!(w.send_udp(&a, &edge_out).is_empty());
    let s = w.relay.stats();
    assert_eq!(s.get(Counter::DropTooOld), 1);
    assert_eq!(s.get(Counter::VoiceAccepted), 2);
}

#[test]
fn an_undecodable_first_frame_gets_handshake_and_is_closed() {
    let relay = start(|_| {});
    let mut watcher = Client::connect(relay.local_addr(), "watcher");
    let before = watcher.stats();
    let mut c = Control::connect(relay.local_addr());
    // Variant 200 does not exist.
    c.send_raw(&[2, 0, 0, 0, 200, 0]);
    assert_eq!(error_code(c.recv()), ErrorCode::Handshake);
    assert!(c.closed_within(WAIT));
    let after = watcher.stats();
    assert_eq!(delta(&before, &after, "tcp_malformed"), 1);
    assert_eq!(delta(&before, &after, "handshake_rejected"), 1);
    assert_eq!(delta(&before, &after, "sessions_total"), 0);
}

#[test]
fn after_welcome_errors_leave_the_session_open_a_second_hello_included() {
    let relay = start(|_| {});
    let mut g = group(relay.local_addr(), 1, &["a", "b"]);
    let before = g[0].stats();
    g[0].send(&hello(relay.local_addr(), "again"));
    assert_eq!(error_code(g[0].recv()), ErrorCode::Handshake);
    // Undecodable after the handshake: Malformed, still in sync.
    g[0].ctl.send_raw(&[1, 0, 0, 0, 99]);
    assert_eq!(error_code(g[0].recv()), ErrorCode::Malformed);
    alive(&mut g[0]);
    // Still a member: voice still flows, nobody saw it leave.
    let d = g[0].talk(b"still here");
    g[1].expect_udp(&d);
    g[1].ctl.expect_silence();
    let after = g[0].stats();
    assert_eq!(delta(&before, &after, "handshake_rejected"), 0);
    assert_eq!(delta(&before, &after, "tcp_malformed"), 1);
}

#[test]
fn names_of_only_white_space_are_refused_and_closed() {
    let relay = start(|_| {});
    for name in ["   ", " ", "\u{3000}", "\u{a0} \u{a0}"] {
        let mut c = Control::connect(relay.local_addr());
        c.send(&hello(relay.local_addr(), name));
        assert_eq!(error_code(c.recv()), ErrorCode::BadName, "{name:?}");
        assert!(c.closed_within(WAIT));
    }
    // Spaces around other characters are fine, and kept.
    let mut c = Control::connect(relay.local_addr());
    c.send(&hello(relay.local_addr(), " a b "));
    assert!(matches!(c.recv(), ServerMessage::Welcome { name, .. } if name == " a b "));
}

#[test]
fn whisper_from_a_session_in_no_channel_reaches_its_target() {
    let mut w = World::new(|_| {});
    let a = w.peer("a");
    let b = w.peer("b");
    w.join(&a, 2);
    w.join(&b, 2);
    let mut lone = w.peer("lone");
    let d = lone.voice(b.session, b"from nowhere");
    assert_eq!(destinations(&w.send_udp(&lone, &d)), vec![b.addr]);
    // Channel voice from the same session is still dropped.
    let d = lone.voice(SessionToken::NONE, b"to no channel");
    assert!(w.send_udp(&lone, &d).is_empty());
    assert_eq!(w.relay.stats().get(Counter::DropNotInChannel), 1);
}

#[test]
fn control_errors_are_answered_and_the_session_continues() {
    let relay = start(|c| {
        c.chat_messages.rate = 0.001;
        c.chat_messages.burst = 1.0;
    });
    let mut a = Client::connect(relay.local_addr(), "a");
    a.send(&ClientMessage::LeaveChannel);
    assert_eq!(error_code(a.recv()), ErrorCode::NotInChannel);
    a.send(&ClientMessage::Chat { text: "hi".into() });
    assert_eq!(error_code(a.recv()), ErrorCode::NotInChannel);
    a.send(&ClientMessage::JoinChannel {
        channel: ChannelId(99),
    });
    assert_eq!(error_code(a.recv()), ErrorCode::NoSuchChannel);
    a.send(&ClientMessage::ReceiverReport {
        sender: SessionToken(4242),
        loss_permille: 1,
        jitter_ms: 1,
    });
    assert_eq!(error_code(a.recv()), ErrorCode::NoSuchSession);
    a.join(1);
    a.send(&ClientMessage::Chat {
        text: String::new(),
    });
    assert_eq!(error_code(a.recv()), ErrorCode::BadChat);
    a.send(&ClientMessage::Chat {
        text: "x".repeat(2001),
    });
    assert_eq!(error_code(a.recv()), ErrorCode::BadChat);
    // A rejected line used no chat token: the one token of the burst is still there.
    a.send(&ClientMessage::Chat { text: "ok".into() });
    assert!(matches!(a.recv(), ServerMessage::Chat { text, .. } if text == "ok"));
    a.send(&ClientMessage::Chat {
        text: "too soon".into(),
    });
    assert_eq!(error_code(a.recv()), ErrorCode::RateLimited);
    alive(&mut a);
    let stats = a.stats();
    assert_eq!(stats["tcp_rate_limited"], 1);
    assert_eq!(stats["chat_messages"], 1);
}

#[test]
fn the_control_budget_answers_rate_limited_but_goodbye_always_works() {
    let relay = start(|c| {
        c.control_messages.rate = 0.001;
        c.control_messages.burst = 3.0;
    });
    let mut watcher = Client::connect(relay.local_addr(), "w");
    watcher.join(1);
    let mut a = Client::connect(relay.local_addr(), "a");
    a.join(1); // 1 token
    watcher
        .ctl
        .recv_until(|m| matches!(m, ServerMessage::UserJoined { .. }));
    a.send(&ClientMessage::Ping { client_time_us: 1 }); // 2
    assert!(matches!(a.recv(), ServerMessage::Pong { .. }));
    a.send(&ClientMessage::ListChannels); // 3
    assert!(matches!(a.recv(), ServerMessage::ChannelList { .. }));
    a.send(&ClientMessage::Ping { client_time_us: 2 });
    assert_eq!(error_code(a.recv()), ErrorCode::RateLimited);
    a.send(&ClientMessage::Goodbye);
    assert!(a.ctl.closed_within(WAIT));
    watcher.ctl.recv_until(
        |m| matches!(m, ServerMessage::UserLeft { session, .. } if *session == a.session),
    );
}

#[test]
fn trailing_bytes_after_a_message_are_ignored() {
    let relay = start(|_| {});
    let mut a = Client::connect(relay.local_addr(), "a");
    let mut frame = Vec::new();
    encode_frame(
        &ClientMessage::Ping {
            client_time_us: 4321,
        },
        &mut frame,
    )
    .unwrap();
    frame.extend_from_slice(b"trailing junk");
    let body = (frame.len() - 4) as u32;
    frame[..4].copy_from_slice(&body.to_le_bytes());
    a.ctl.send_raw(&frame);
    assert!(matches!(
        a.recv(),
        ServerMessage::Pong {
            client_time_us: 4321,
            ..
        }
    ));
    assert_eq!(a.stats()["tcp_malformed"], 0);
}

#[test]
fn an_empty_voice_payload_is_forwarded_as_is() {
    let relay = start(|_| {});
    let mut g = group(relay.local_addr(), 1, &["a", "b"]);
    let d = g[0].talk(&[]);
    assert_eq!(d.len(), udp::HEADER_LEN + udp::TAG_LEN);
    g[1].expect_udp(&d);
}

#[test]
fn register_ack_and_pong_carry_the_documented_header_fields() {
    let relay = start(|_| {});
    let c = Client::connect(relay.local_addr(), "a");
    // A registration with every ignored field set: the ack echoes seq only.
    let reg = Header {
        kind: DatagramKind::Register,
        flags: Flags(0x07),
        seq: 77,
        timestamp: 123_456,
        sender: c.session,
        target: SessionToken(5),
    };
    let counter = 50;
    let req = datagram(&c.key, &reg, &register::sign(&c.secret, c.session, counter));
    c.send_udp(&req);
    let ack = c.recv_udp(WAIT).expect("RegisterAck");
    assert_eq!(ack.len(), 36);
    assert!(ack.len() < req.len());
    let d = udp::parse(&ack).unwrap();
    assert_eq!(
        d.header,
        Header {
            kind: DatagramKind::RegisterAck,
            flags: Flags(0),
            seq: 77,
            timestamp: 0,
            sender: c.session,
            target: SessionToken::NONE,
        }
    );
    assert_eq!(d.payload, counter.to_le_bytes());
    assert_eq!(&ack[3..4], &[0]);
    assert_eq!(&ack[6..8], &[0, 0]);
    // Ping with every field set and reserved bytes dirty: Pong copies the fields, zeroes reserved.
    let ping_h = Header {
        kind: DatagramKind::Ping,
        flags: Flags(0x05),
        seq: 9,
        timestamp: 99,
        sender: c.session,
        target: SessionToken(3),
    };
    let mut ping = datagram(&c.key, &ping_h, &[1, 2, 3]);
    ping[3] = 0xEE;
    ping[6] = 0xEE;
    retag(&c.key, &mut ping);
    c.send_udp(&ping);
    let pong = c.recv_udp(WAIT).expect("Pong");
    assert_eq!(pong.len(), ping.len());
    let d = udp::parse(&pong).unwrap();
    assert_eq!(
        d.header,
        Header {
            kind: DatagramKind::Pong,
            ..ping_h
        }
    );
    assert_eq!(d.payload, [1, 2, 3]);
    assert_eq!((pong[3], pong[6], pong[7]), (0, 0, 0));
    // An empty ping gets an empty pong.
    let empty = datagram(&c.key, &ping_h, &[]);
    c.send_udp(&empty);
    assert_eq!(
        c.recv_udp(WAIT).expect("Pong").len(),
        udp::HEADER_LEN + udp::TAG_LEN
    );
}

#[test]
fn every_udp_drop_lands_in_its_documented_counter() {
    let relay = start(|_| {});
    let mut g = group(relay.local_addr(), 1, &["a", "b"]);
    let to = relay.local_addr();
    let a = g[0].session;
    let before = g[0].stats();
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    let v = Header::voice(a, 1, 0);
    // Kinds the relay only sends, and unknown kinds.
    for kind in [DatagramKind::RegisterAck, DatagramKind::Pong] {
        g[0].send_udp(&datagram(&g[0].key, &Header { kind, ..v }, &[0; 8]));
    }
    let mut unknown = datagram(&g[0].key, &v, b"x");
    unknown[1] = 9;
    g[0].send_udp(&unknown);
    // Sender 0.
    let mut no_sender = datagram(&g[0].key, &v, b"x");
    no_sender[12..16].fill(0);
    g[0].send_udp(&no_sender);
    // Ping from an unknown session and from an unbound address.
    let key = g[0].key.clone();
    let ping = |sender| {
        datagram(
            &key,
            &Header {
                kind: DatagramKind::Ping,
                ..Header::voice(sender, 0, 0)
            },
            &[],
        )
    };
    stranger.send_to(&ping(SessionToken(4242)), to).unwrap();
    stranger.send_to(&ping(a), to).unwrap();
    // Voice from an unknown session.
    stranger
        .send_to(
            &voice_bytes(
                &TagKey::UNKEYED,
                SessionToken(4242),
                1,
                SessionToken::NONE,
                b"x",
            ),
            to,
        )
        .unwrap();
    // Registrations: unknown session, bad MAC, bad length, replay (counter 1 was used).
    let reg = |sender, payload: &[u8]| {
        datagram(
            &key,
            &Header {
                kind: DatagramKind::Register,
                ..Header::voice(sender, 0, 0)
            },
            payload,
        )
    };
    let good = register::sign(&g[0].secret, a, 1);
    stranger
        .send_to(&reg(SessionToken(4242), &good), to)
        .unwrap();
    let forged = register::sign(&[0; 32], a, 100);
    stranger.send_to(&reg(a, &forged), to).unwrap();
    stranger.send_to(&reg(a, &good[..10]), to).unwrap();
    stranger.send_to(&reg(a, &good), to).unwrap();
    // Nothing of that is answered, and the binding did not move.
    stranger.set_read_timeout(Some(QUIET)).unwrap();
    assert!(stranger.recv_from(&mut [0u8; 64]).is_err());
    let d = g[0].talk(b"still bound");
    g[1].expect_udp(&d);
    let after = g[0].stats();
    for (counter, n) in [
        ("drop_bad_kind", 3),
        ("drop_no_sender", 1),
        ("drop_unknown_session", 2),
        ("drop_unbound_source", 1),
        ("register_unknown_session", 1),
        ("register_bad_proof", 2),
        ("register_replay", 1),
        ("register_ok", 0),
        ("udp_pings", 0),
        ("voice_accepted", 1),
        ("udp_rx_packets", 12),
    ] {
        assert_eq!(delta(&before, &after, counter), n, "{counter}");
    }
}

#[test]
fn the_handshake_timeout_closes_without_an_error_frame() {
    let relay = start(|c| c.handshake_timeout_ms = 200);
    let mut watcher = Client::connect(relay.local_addr(), "w");
    let mut c = Control::connect(relay.local_addr());
    c.tcp
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    let closed = loop {
        assert!(Instant::now() < deadline, "handshake timeout did not fire");
        let mut buf = [0u8; 256];
        match c.tcp.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break true,
        }
    };
    assert!(closed);
    assert!(got.is_empty(), "the relay sent {got:?} before closing");
    assert_eq!(watcher.stats()["tcp_handshake_timeout"], 1);
}

#[test]
fn rejoining_your_own_channel_only_sends_joined_again() {
    let mut w = World::new(|_| {});
    let mut a = w.peer("a");
    let b = w.peer("b");
    w.join(&b, 1);
    let first = w.join(&a, 1);
    w.drain(b.conn);
    let again = w.join(&a, 1);
    assert_eq!(again.len(), 1, "only Joined: {again:?}");
    assert_eq!(first[0], again[0]);
    let ServerMessage::Joined { channel } = &again[0] else {
        unreachable!("join() checks for Joined")
    };
    assert_eq!(channel.users.len(), 2);
    assert!(
        w.drain(b.conn).is_empty(),
        "the other member hears nothing of it"
    );
    let d = a.voice(SessionToken::NONE, b"one copy");
    assert_eq!(destinations(&w.send_udp(&a, &d)), vec![b.addr]);
}

#[test]
fn the_byte_budget_counts_the_header() {
    // Burst 1210 bytes, refilling 1 byte/s: one full datagram leaves 10 bytes, too few for a
    // header-only datagram (20 bytes) — it would pass if only payload bytes counted.
    let mut w = World::new(|c| {
        c.voice_bytes.rate = 1.0;
        c.voice_bytes.burst = (MAX_DATAGRAM + 10) as f64;
    });
    let mut a = w.peer("a");
    let b = w.peer("b");
    w.join(&a, 1);
    w.join(&b, 1);
    let full = a.voice(SessionToken::NONE, &[0x11; MAX_PAYLOAD]);
    assert_eq!(full.len(), MAX_DATAGRAM);
    assert_eq!(destinations(&w.send_udp(&a, &full)), vec![b.addr]);
    let empty = a.voice(SessionToken::NONE, &[]);
    assert!(w.send_udp(&a, &empty).is_empty());
    let s = w.relay.stats();
    assert_eq!(s.get(Counter::DropByteBudget), 1);
    assert_eq!(s.get(Counter::VoiceAccepted), 1);
}

#[test]
fn a_frame_split_across_writes_and_two_frames_in_one_write_both_work() {
    // Framing as documented: a length prefix, the body, nothing between frames.
    let relay = start(|_| {});
    let mut a = Client::connect(relay.local_addr(), "a");
    let mut wire = Vec::new();
    encode_frame(&ClientMessage::Ping { client_time_us: 1 }, &mut wire).unwrap();
    encode_frame(&ClientMessage::Ping { client_time_us: 2 }, &mut wire).unwrap();
    let (head, tail) = wire.split_at(3);
    a.ctl.send_raw(head);
    std::thread::sleep(Duration::from_millis(50));
    a.ctl.send_raw(tail);
    for want in [1, 2] {
        assert!(matches!(
            a.recv(),
            ServerMessage::Pong { client_time_us, .. } if client_time_us == want
        ));
    }
}
