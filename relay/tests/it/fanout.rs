//! Voice fan-out over real sockets: exact bytes, whisper, channel isolation, UDP ping.

use crate::common;

use common::*;
use voice_core::proto::udp::{self, DatagramKind, Header, MAX_DATAGRAM};

#[test]
fn fan_out_delivers_identical_bytes_to_every_other_member_only() {
    let relay = start(|_| {});
    let mut g = group(relay.local_addr(), 1, &["a", "b", "c"]);
    let sent = g[0].talk(&[0xAB; 160]);
    g[1].expect_udp(&sent);
    g[2].expect_udp(&sent);
    g[0].expect_no_udp();
    // Larger payload, other sender.
    let sent = g[2].talk(&(0..=255u8).cycle().take(900).collect::<Vec<_>>());
    g[0].expect_udp(&sent);
    g[1].expect_udp(&sent);
    g[2].expect_no_udp();
    let stats = g[0].stats();
    assert_eq!(stats["forwarded_packets"], 4);
    assert_eq!(stats["voice_accepted"], 2);
}

#[test]
fn whisper_reaches_only_its_target_in_any_channel() {
    let relay = start(|_| {});
    let mut g = group(relay.local_addr(), 1, &["a", "b", "c"]);
    let mut far = Client::connect(relay.local_addr(), "far");
    far.join(2);
    let target = g[2].session;
    let d = g[0].voice(target, b"psst");
    g[0].send_udp(&d);
    g[2].expect_udp(&d);
    g[1].expect_no_udp();
    // Whisper across channels, and to a session in no channel.
    let d = g[0].voice(far.session, b"hey");
    g[0].send_udp(&d);
    far.expect_udp(&d);
    let mut lone = Client::connect(relay.local_addr(), "lone");
    let d = g[1].voice(lone.session, b"yo");
    g[1].send_udp(&d);
    lone.expect_udp(&d);
    g[0].expect_no_udp();
    assert_eq!(lone.stats()["forwarded_packets"], 3);
}

#[test]
fn channels_are_isolated() {
    let relay = start(|_| {});
    let mut one = group(relay.local_addr(), 1, &["a", "b"]);
    let mut two = group(relay.local_addr(), 2, &["c", "d"]);
    let d1 = one[0].talk(b"one");
    let d2 = two[0].talk(b"two");
    one[1].expect_udp(&d1);
    two[1].expect_udp(&d2);
    one[1].expect_no_udp();
    two[1].expect_no_udp();
    one[0].expect_no_udp();
    two[0].expect_no_udp();
    // After b switches to channel 2 it hears channel 2 only.
    one[1].join(2);
    let d = two[0].talk(b"two again");
    one[1].expect_udp(&d);
    two[1].expect_udp(&d);
    one[0].talk(b"one again");
    one[1].expect_no_udp();
}

#[test]
fn udp_ping_from_bound_session_is_echoed_same_size() {
    let relay = start(|_| {});
    let c = Client::connect(relay.local_addr(), "a");
    let h = Header {
        kind: DatagramKind::Ping,
        ..Header::voice(c.session, 9, 1234)
    };
    let mut buf = [0u8; MAX_DATAGRAM];
    let n = udp::write(&h, b"probe-payload", &c.key, &mut buf).unwrap();
    c.send_udp(&buf[..n]);
    let pong = c.recv_udp(WAIT).expect("pong");
    assert_eq!(pong.len(), n);
    let d = udp::parse(&pong).unwrap();
    assert_eq!(d.header.kind, DatagramKind::Pong);
    assert_eq!(d.payload, b"probe-payload");
    // The same ping from an unbound socket gets nothing back.
    let stranger = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    stranger.send_to(&buf[..n], relay.local_addr()).unwrap();
    stranger.set_read_timeout(Some(QUIET)).unwrap();
    let mut b = [0u8; 64];
    assert!(stranger.recv_from(&mut b).is_err());
}

#[test]
fn rebinding_by_registration_moves_the_address() {
    let relay = start(|_| {});
    let mut g = group(relay.local_addr(), 1, &["a", "b"]);
    // b moves to a new socket (NAT rebinding) and re-registers with a higher counter.
    g[1].udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    g[1].register();
    let d = g[0].talk(b"after rebinding");
    g[1].expect_udp(&d);
}
