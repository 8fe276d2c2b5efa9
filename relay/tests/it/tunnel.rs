//! The tunnel fallback at the relay, over real TLS connections and UDP sockets with tokens:
//! a datagram in `ClientMessage::Tunnel` is decided exactly like one from UDP (tag, sender,
//! replay window, kind), the relay bridges both ways (tunneled voice to UDP members, UDP voice
//! to tunneled members as `ServerMessage::Tunnel`, the exact bytes), with several workers too,
//! and only an admitted session can tunnel.

use crate::common;

use std::collections::HashMap;

use common::{group, hello, start, voice_bytes, Client, Control, QUIET, WAIT};
use voice_core::proto::tcp::{ClientMessage, ErrorCode, ServerMessage};
use voice_core::proto::udp::{self, DatagramKind, Header, MAX_DATAGRAM};
use voice_core::proto::SessionToken;

fn delta(before: &HashMap<String, u64>, after: &HashMap<String, u64>, k: &str) -> u64 {
    after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0)
}

fn tunnel(c: &mut Client, active: bool, datagram: Vec<u8>) {
    c.send(&ClientMessage::Tunnel { active, datagram });
}

/// The next `ServerMessage::Tunnel` datagram on `c`'s control connection (others skipped).
fn tunneled(c: &mut Client) -> Vec<u8> {
    match c
        .ctl
        .recv_until(|m| matches!(m, ServerMessage::Tunnel { .. }))
    {
        ServerMessage::Tunnel { datagram } => datagram,
        _ => unreachable!(),
    }
}

/// No `ServerMessage::Tunnel` arrives on `c`'s control connection for [`QUIET`].
fn no_tunneled(c: &mut Client) {
    while let Some(m) = c.ctl.try_recv(QUIET) {
        assert!(
            !matches!(m, ServerMessage::Tunnel { .. }),
            "unexpected tunneled datagram"
        );
    }
}

fn bridge(workers: usize) {
    let relay = start(|c| c.workers = workers);
    let mut g = group(relay.local_addr(), 1, &["a", "b", "c"]);
    let before = g[1].stats();
    tunnel(&mut g[0], true, Vec::new());
    // A reply on the same connection: the switch has been taken (and published) before it.
    let _ = g[0].stats();

    // UDP voice reaches the tunneled member through its connection, the others over UDP.
    for _ in 0..5 {
        let d = g[1].talk(b"from b over udp");
        assert_eq!(tunneled(&mut g[0]), d, "the exact bytes, tag included");
        g[2].expect_udp(&d);
    }
    g[0].expect_no_udp();

    // Tunneled voice reaches the UDP members over UDP, byte for byte.
    for _ in 0..5 {
        let d = g[0].voice(SessionToken::NONE, b"from a through the tunnel");
        tunnel(&mut g[0], true, d.clone());
        g[1].expect_udp(&d);
        g[2].expect_udp(&d);
    }

    // The checks a UDP datagram gets: a bad tag, another session's tag on a's header, a's tag
    // on b's header (a connection speaks only for its session), a replay, a Ping.
    let mut flipped = g[0].voice(SessionToken::NONE, b"tampered");
    flipped[udp::HEADER_LEN] ^= 1;
    tunnel(&mut g[0], true, flipped);
    let (a, b) = (g[0].session, g[1].session);
    let b_key = g[1].key.clone();
    tunnel(
        &mut g[0],
        true,
        voice_bytes(&b_key, a, 900, SessionToken::NONE, b"b's key"),
    );
    tunnel(
        &mut g[0],
        true,
        voice_bytes(&b_key, b, 900, SessionToken::NONE, b"as b"),
    );
    let replay = g[0].voice(SessionToken::NONE, b"once");
    tunnel(&mut g[0], true, replay.clone());
    g[1].expect_udp(&replay);
    g[2].expect_udp(&replay);
    tunnel(&mut g[0], true, replay);
    let ping = Header {
        kind: DatagramKind::Ping,
        ..Header::voice(a, 0, 0)
    };
    let mut buf = [0u8; MAX_DATAGRAM];
    let n = udp::write(&ping, &[0; 8], &g[0].key, &mut buf).unwrap();
    tunnel(&mut g[0], true, buf[..n].to_vec());
    tunnel(&mut g[0], true, vec![0xff; 10]);
    g[1].expect_no_udp();
    g[2].expect_no_udp();

    // Back on UDP: b's voice reaches a over UDP again, nothing through the connection.
    tunnel(&mut g[0], false, Vec::new());
    let _ = g[0].stats();
    let d = g[1].talk(b"udp again");
    g[0].expect_udp(&d);
    g[2].expect_udp(&d);
    no_tunneled(&mut g[0]);

    let after = g[1].stats();
    assert_eq!(delta(&before, &after, "tunnel_forwarded"), 5);
    assert_eq!(delta(&before, &after, "tunnel_rx_packets"), 6 + 5 + 1);
    assert_eq!(delta(&before, &after, "drop_bad_tag"), 2);
    assert_eq!(delta(&before, &after, "drop_unbound_source"), 1);
    assert_eq!(delta(&before, &after, "drop_duplicate"), 1);
    assert_eq!(delta(&before, &after, "drop_bad_kind"), 1);
    assert_eq!(delta(&before, &after, "drop_too_short"), 1);
    assert_eq!(delta(&before, &after, "voice_accepted"), 5 + 5 + 1 + 1);
    assert_eq!(after.get("tunneled"), Some(&0));
}

#[test]
fn tunneled_voice_is_checked_like_udp_and_bridged_both_ways() {
    bridge(1);
}

/// With four workers, UDP senders land on worker threads other than the control thread's:
/// their copies for the tunneled member are handed to the control thread.
#[test]
fn the_bridge_works_across_workers() {
    bridge(4);
}

#[test]
fn only_an_admitted_session_can_tunnel() {
    let relay = start(|_| {});
    let addr = relay.local_addr();
    let mut g = group(addr, 1, &["a", "b"]);
    let before = g[1].stats();
    let d = g[0].voice(SessionToken::NONE, b"before hello");

    // Before Hello: the handshake error, and the connection closes.
    let mut early = Control::connect(addr);
    early.send(&ClientMessage::Tunnel {
        active: true,
        datagram: d.clone(),
    });
    match early.recv() {
        ServerMessage::Error { code, .. } => assert_eq!(code, ErrorCode::Handshake),
        m => panic!("expected Error, got {m:?}"),
    }
    assert!(early.closed_within(WAIT));

    // A Hello without a token is refused and closed: no tunnel after it either.
    let mut anon = Control::connect(addr);
    anon.send(&ClientMessage::Hello {
        version: voice_core::proto::tcp::CONTROL_VERSION,
        name: "anon".into(),
        token: None,
    });
    match anon.recv() {
        ServerMessage::Error { code, .. } => assert_eq!(code, ErrorCode::Unauthorized),
        m => panic!("expected Error, got {m:?}"),
    }
    assert!(anon.closed_within(WAIT));
    g[1].expect_no_udp();

    // An admitted session on another connection cannot speak for a either.
    let mut other = Control::connect(addr);
    other.send(&hello(addr, "mallory"));
    assert!(matches!(other.recv(), ServerMessage::Welcome { .. }));
    other.send(&ClientMessage::Tunnel {
        active: true,
        datagram: d,
    });
    g[1].expect_no_udp();
    let after = g[1].stats();
    assert_eq!(delta(&before, &after, "tunnel_rx_packets"), 1);
    assert_eq!(delta(&before, &after, "voice_accepted"), 0);
    assert_eq!(delta(&before, &after, "drop_unbound_source"), 1);
}

#[test]
fn a_flood_of_path_changes_is_held_to_the_control_budget() {
    let relay = start(|_| {});
    let mut g = group(relay.local_addr(), 1, &["a", "b"]);
    let before = g[1].stats();
    // Each change republishes the routing snapshot: 400 alternating requests at once exceed
    // the budget (burst 100, 50/s).
    for i in 0..400 {
        tunnel(&mut g[0], i % 2 == 0, Vec::new());
    }
    let mut refused = 0;
    while let Some(m) = g[0].ctl.try_recv(QUIET) {
        if let ServerMessage::Error { code, .. } = m {
            assert_eq!(code, ErrorCode::RateLimited);
            refused += 1;
        }
    }
    let after = g[1].stats();
    // Once the budget is spent every other message is a refused change (the one after it
    // asks for the path the session still has, which is free).
    assert!(refused >= 120, "{refused} of 400 changes refused");
    assert_eq!(delta(&before, &after, "tcp_rate_limited"), refused);
    // The session is still served, voice still flows.
    std::thread::sleep(std::time::Duration::from_millis(200));
    tunnel(&mut g[0], false, Vec::new());
    let _ = g[0].stats();
    let d = g[1].talk(b"still here");
    g[0].expect_udp(&d);
}
