//! Voice fan-out over real sockets: exact bytes through `recvmmsg`/`sendmmsg`, UDP ping, rebinding
//! from a new socket. Who hears what (whisper, channel isolation, replay, timeouts) is tested
//! exactly on the in-memory relay (`in_memory.rs`).

use crate::common;

use common::*;
use voice_core::proto::tcp::{ClientMessage, ServerMessage, VoiceState};
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
fn a_deafened_member_is_sent_no_voice_until_it_undeafens() {
    let relay = start(|_| {});
    let mut g = group(relay.local_addr(), 1, &["a", "b", "c"]);
    let set = |c: &mut Client, deafened: bool| {
        let state = VoiceState {
            muted: false,
            deafened,
        };
        c.send(&ClientMessage::SetVoiceState { state });
        // The relay publishes the change to its forwarding workers before it tells anyone.
        c.ctl
            .recv_until(|m| matches!(m, ServerMessage::UserState { state: s, .. } if *s == state));
    };
    set(&mut g[2], true);
    let sent = g[0].talk(&[0x5A; 120]);
    g[1].expect_udp(&sent);
    g[2].expect_no_udp();
    // A whisper to it is accepted and goes nowhere; its own voice still reaches the channel.
    let c = g[2].session;
    let whisper = g[0].voice(c, &[0x33; 80]);
    g[0].send_udp(&whisper);
    g[2].expect_no_udp();
    let sent = g[2].talk(&[0x77; 100]);
    g[0].expect_udp(&sent);
    g[1].expect_udp(&sent);
    set(&mut g[2], false);
    let sent = g[0].talk(&[0x5B; 120]);
    g[1].expect_udp(&sent);
    g[2].expect_udp(&sent);
    let stats = g[0].stats();
    assert_eq!(stats["voice_accepted"], 4, "{stats:?}");
    assert_eq!(stats["forwarded_packets"], 5, "{stats:?}");
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
