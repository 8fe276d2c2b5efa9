//! Hostile or broken control connections are closed or answered with errors while everyone
//! else keeps being served.

use crate::common;

use std::time::Duration;

use common::*;
use voice_core::proto::tcp::{ClientMessage, ErrorCode, ServerMessage, CONTROL_VERSION};

fn still_serving(g: &mut [Client]) {
    let d = g[0].talk(b"still here");
    g[1].expect_udp(&d);
    g[0].send(&ClientMessage::Ping { client_time_us: 1 });
    assert!(matches!(
        g[0].ctl
            .recv_until(|m| matches!(m, ServerMessage::Pong { .. })),
        ServerMessage::Pong { .. }
    ));
}

#[test]
fn four_gib_length_prefix_closes_only_that_connection() {
    let relay = start(|_| {});
    let mut g = group(relay.local_addr(), 1, &["a", "b"]);
    let mut evil = Client::connect(relay.local_addr(), "evil");
    evil.join(1);
    evil.ctl.send_raw(&u32::MAX.to_le_bytes());
    evil.ctl.send_raw(&[0; 64]);
    assert!(
        evil.ctl.closed_within(WAIT),
        "oversized frame must close the connection"
    );
    // Members see it leave.
    for c in g.iter_mut() {
        c.ctl.recv_until(
            |m| matches!(m, ServerMessage::UserLeft { session, .. } if *session == evil.session),
        );
    }
    let stats = g[0].stats();
    assert_eq!(stats["tcp_oversize_closed"], 1);
    // Also before the handshake.
    let mut raw = Control::connect(relay.local_addr());
    raw.send_raw(&(1u32 << 31).to_le_bytes());
    assert!(raw.closed_within(WAIT));
    still_serving(&mut g);
}

#[test]
fn half_sent_frames_are_closed_by_handshake_and_idle_timeouts() {
    let relay = start(|c| {
        c.handshake_timeout_ms = 300;
        c.idle_timeout_ms = 600;
    });
    // Before the handshake: prefix promises 100 bytes, 3 arrive.
    let mut pre = Control::connect(relay.local_addr());
    pre.send_raw(&[100, 0, 0, 0, 1, 2, 3]);
    // After the handshake: same trick.
    let mut post = Client::connect(relay.local_addr(), "half");
    post.join(1);
    post.ctl.send_raw(&[50, 0, 0, 0, 9]);
    let mut watcher = Client::connect(relay.local_addr(), "watcher");
    watcher.join(1);
    post.ctl
        .recv_until(|m| matches!(m, ServerMessage::UserJoined { .. }));
    assert!(
        pre.closed_within(Duration::from_secs(2)),
        "handshake timeout did not fire"
    );
    // The watcher keeps pinging so only the half-sent one idles out.
    let mut saw_left = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    'outer: while std::time::Instant::now() < deadline {
        watcher.send(&ClientMessage::Ping { client_time_us: 0 });
        while let Some(m) = watcher.ctl.try_recv(Duration::from_millis(100)) {
            if let ServerMessage::UserLeft { session, .. } = m {
                assert_eq!(session, post.session);
                saw_left = true;
                break 'outer;
            }
        }
    }
    assert!(saw_left, "idle timeout did not produce UserLeft");
    assert!(post.ctl.closed_within(Duration::from_secs(1)));
    let stats = watcher.stats();
    assert_eq!(stats["tcp_handshake_timeout"], 1);
    assert_eq!(stats["tcp_idle_timeout"], 1);
}

#[test]
fn invalid_utf8_chat_is_malformed_and_the_connection_stays_usable() {
    let relay = start(|_| {});
    let mut g = group(relay.local_addr(), 1, &["a", "b"]);
    // postcard: variant 3 (Chat), string of 2 bytes that are not UTF-8.
    let body = [3u8, 2, 0xFF, 0xFE];
    let mut frame = (body.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&body);
    g[0].ctl.send_raw(&frame);
    assert!(matches!(
        g[0].recv(),
        ServerMessage::Error {
            code: ErrorCode::Malformed,
            ..
        }
    ));
    g[1].ctl.expect_silence();
    g[0].send(&ClientMessage::Chat {
        text: "valid".into(),
    });
    assert!(matches!(g[1].recv(), ServerMessage::Chat { .. }));
    assert!(matches!(g[0].recv(), ServerMessage::Chat { .. }));
    assert_eq!(g[0].stats()["tcp_malformed"], 1);
    still_serving(&mut g);
}

#[test]
fn bad_handshakes_are_rejected_and_closed() {
    let relay = start(|c| c.max_sessions = 2);
    let addr = relay.local_addr();
    let expect = |first: ClientMessage, code: ErrorCode| {
        let mut c = Control::connect(addr);
        c.send(&first);
        match c.recv() {
            ServerMessage::Error { code: got, .. } => assert_eq!(got, code),
            m => panic!("expected Error, got {m:?}"),
        }
        assert!(c.closed_within(WAIT));
    };
    expect(
        ClientMessage::Hello {
            version: CONTROL_VERSION + 1,
            name: "a".into(),
            token: None,
        },
        ErrorCode::Version,
    );
    // A token from a backend that signs a name no client could show.
    let bad_name = relay::token::Claims {
        name: "bad\nname".into(),
        ..relay::token::Claims::for_name("bad", relay::config::DEFAULT_AUDIENCE, 60)
    };
    expect(
        ClientMessage::Hello {
            version: CONTROL_VERSION,
            name: "bad".into(),
            token: token_with(addr, &bad_name).map(voice_core::proto::tcp::AccessToken),
        },
        ErrorCode::BadName,
    );
    expect(ClientMessage::ListChannels, ErrorCode::Handshake);
    let mut g = group(addr, 1, &["a", "a"]); // duplicate names are allowed
    expect(hello(addr, "c"), ErrorCode::Full);
    still_serving(&mut g);
}

#[test]
fn a_peer_that_stops_reading_is_disconnected_alone() {
    let relay = start(|c| {
        c.max_outgoing_bytes = 16 * 1024;
        // A cap this small only holds the channel listing of a small relay (checked at start).
        c.max_sessions = 16;
        c.control_messages.rate = 1e6;
        c.control_messages.burst = 1e6;
    });
    let mut g = group(relay.local_addr(), 1, &["a", "b"]);
    let mut slow = Client::connect(relay.local_addr(), "slow");
    slow.join(1);
    for c in g.iter_mut() {
        c.ctl
            .recv_until(|m| matches!(m, ServerMessage::UserJoined { .. }));
    }
    // Ask for far more reply bytes than the socket buffers plus the cap can hold, never reading.
    let mut burst = Vec::new();
    for _ in 0..20_000 {
        voice_core::proto::tcp::encode_frame(&ClientMessage::StatsRequest, &mut burst).unwrap();
    }
    slow.ctl
        .tcp
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = std::io::Write::write_all(&mut slow.ctl.tcp, &burst);
    for c in g.iter_mut() {
        c.ctl.recv_until(
            |m| matches!(m, ServerMessage::UserLeft { session, .. } if *session == slow.session),
        );
    }
    assert_eq!(g[0].stats()["tcp_overflow_closed"], 1);
    still_serving(&mut g);
}
