//! Proximity culling over real sockets: 100 speakers spread over a 3D room, each listener receives
//! exactly the audible ones (the exact bytes), and the relay counts what it culled, with four
//! forwarding workers (a position received by one worker culls on every other). A 2D channel with
//! the same positions forwards everything. Positions are datagram version 2: a block whose tag
//! does not verify moves nobody. Voice through the tunnel fallback is culled the same way, and a
//! tunneled listener like a UDP one.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Client, WAIT};
use relay::config::ChannelConfig;
use relay::RelayHandle;
use voice_core::proto::tcp::{ServerMessage, SpatialInfo};
use voice_core::proto::udp::{self, DatagramKind, Header, Position, TagKey, MAX_DATAGRAM};
use voice_core::proto::{ChannelId, SessionToken};
use voice_core::spatial::{Attenuation, DistanceModel};

const ROOM_3D: u32 = 7;
const ROOM_2D: u32 = 8;
const RANGE: f32 = 30.0;

/// Forwarding workers of every relay here: more than one, so that a listener's position and a
/// talker's voice are often received by different workers.
const WORKERS: usize = 4;

/// The one place relay and clients start: a relay (TLS, access tokens, [`WORKERS`] workers) with a
/// 3D channel (linear, range 30) and a 2D one, and `n` registered clients joined to `channel` (the
/// 3D join checked for `ChannelSpatial`).
fn room(n: usize, channel: u32) -> (RelayHandle, Vec<Client>) {
    let att = Attenuation {
        model: DistanceModel::Linear,
        min_distance: 1.0,
        max_distance: RANGE,
        rolloff: 1.0,
    };
    let relay = common::start(|c| {
        c.channels.push(ChannelConfig {
            id: ROOM_3D,
            name: "arena".into(),
            spatial: Some(att),
            max_members: None,
            allow: None,
        });
        c.channels.push(ChannelConfig {
            id: ROOM_2D,
            name: "flat".into(),
            spatial: None,
            max_members: None,
            allow: None,
        });
        c.max_sessions = 200;
        c.workers = WORKERS;
    });
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let mut c = Client::connect(relay.local_addr(), &format!("p{i}"));
        c.join(channel);
        if channel == ROOM_3D {
            match c.recv() {
                ServerMessage::ChannelSpatial {
                    channel: ChannelId(ROOM_3D),
                    spatial,
                } => assert_eq!(spatial, SpatialInfo::from_attenuation(&att).unwrap()),
                other => panic!("expected ChannelSpatial, got {other:?}"),
            }
        }
        clients.push(c);
    }
    (relay, clients)
}

/// Deterministic positions in a 120 × 10 × 120 room.
fn positions(n: usize) -> Vec<Position> {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..n)
        .map(|_| Position::new(next() * 120.0, next() * 10.0, next() * 120.0))
        .collect()
}

fn datagram(kind: DatagramKind, c: &Client, seq: u16, p: Position, payload: &[u8]) -> Vec<u8> {
    tagged(kind, c, seq, p, payload, &c.key)
}

/// A datagram in `c`'s name with its position, tagged with `key` (`c.key` for its own).
fn tagged(
    kind: DatagramKind,
    c: &Client,
    seq: u16,
    p: Position,
    payload: &[u8],
    key: &TagKey,
) -> Vec<u8> {
    let h = Header {
        kind,
        ..Header::voice(c.session, seq, u32::from(seq) * 960)
    };
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let n = udp::write_positional(&h, Some(p), payload, key, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

/// Every client announces its position with a UDP Ping, then talks once; returns, per client, the
/// senders it received (checking each datagram is the exact bytes sent) and the bytes sent.
fn talk_once(clients: &mut [Client], pos: &[Position]) -> Vec<BTreeSet<SessionToken>> {
    for (c, p) in clients.iter().zip(pos) {
        c.send_udp(&datagram(DatagramKind::Ping, c, 0, *p, &[1; 8]));
        let pong = c.recv_udp(WAIT).expect("pong");
        assert_eq!(udp::parse(&pong).unwrap().header.kind, DatagramKind::Pong);
    }
    let mut sent = Vec::new();
    for (i, (c, p)) in clients.iter().zip(pos).enumerate() {
        let d = datagram(DatagramKind::Voice, c, 1, *p, &[i as u8; 40]);
        c.send_udp(&d);
        sent.push(d);
    }
    // Everything is forwarded well within this on loopback; then each socket is drained with a
    // short bounded wait, which also shows that nothing more arrives.
    std::thread::sleep(Duration::from_millis(300));
    let mut heard = Vec::new();
    for c in clients.iter() {
        let mut from = BTreeSet::new();
        for _ in 0..clients.len() {
            let Some(d) = c.recv_udp(Duration::from_millis(50)) else {
                break;
            };
            let p = udp::parse(&d).unwrap();
            let i = clients
                .iter()
                .position(|o| o.session == p.header.sender)
                .unwrap();
            assert_eq!(d, sent[i], "forwarded bytes differ");
            assert!(from.insert(p.header.sender), "duplicate");
        }
        heard.push(from);
    }
    heard
}

#[test]
fn hundred_speakers_in_a_3d_room_reach_only_listeners_in_range() {
    let n = 100;
    let (_relay, mut clients) = room(n, ROOM_3D);
    let pos = positions(n);
    let heard = talk_once(&mut clients, &pos);
    let mut audible_pairs = 0u64;
    for (i, from) in heard.iter().enumerate() {
        let expected: BTreeSet<SessionToken> = (0..n)
            .filter(|&j| j != i && pos[i].distance(pos[j]) <= RANGE)
            .map(|j| clients[j].session)
            .collect();
        assert_eq!(from, &expected, "listener {i}");
        audible_pairs += expected.len() as u64;
    }
    let all_pairs = (n * (n - 1)) as u64;
    // The room is large against the range: most pairs are out of range, but not all.
    assert!(
        audible_pairs > 0 && audible_pairs < all_pairs / 2,
        "{audible_pairs}"
    );
    let stats = clients[0].stats();
    assert_eq!(stats["voice_accepted"], n as u64);
    assert_eq!(stats["forwarded_packets"], audible_pairs);
    assert_eq!(stats["voice_culled"], all_pairs - audible_pairs);
    println!("3D room: {audible_pairs} of {all_pairs} copies forwarded");
}

#[test]
fn a_2d_channel_forwards_to_everyone_whatever_the_positions() {
    let n = 20;
    let (_relay, mut clients) = room(n, ROOM_2D);
    let pos = positions(n);
    let heard = talk_once(&mut clients, &pos);
    for from in &heard {
        assert_eq!(from.len(), n - 1);
    }
    let stats = clients[0].stats();
    assert_eq!(stats["voice_culled"], 0);
    assert_eq!(stats["forwarded_packets"], (n * (n - 1)) as u64);
}

#[test]
fn a_position_whose_tag_does_not_verify_culls_nobody() {
    // Talker and listener 5 apart in a range of 30. Forged datagrams in the listener's name put it
    // 1000 away (a Ping, and a Voice that would also record the sender's position), from the
    // listener's own bound address, but tagged with another session's key: the relay drops them
    // before it reads the block, and the talker's voice still reaches the listener.
    let (_relay, mut clients) = room(2, ROOM_3D);
    let (near, far) = (
        Position::new(0.0, 0.0, 5.0),
        Position::new(0.0, 0.0, 1005.0),
    );
    let talker = Position::new(0.0, 0.0, 0.0);
    let listener = &clients[1];
    listener.send_udp(&datagram(DatagramKind::Ping, listener, 0, near, &[1; 8]));
    assert!(listener.recv_udp(WAIT).is_some(), "pong");
    let wrong = clients[0].key.clone();
    listener.send_udp(&tagged(
        DatagramKind::Ping,
        listener,
        0,
        far,
        &[2; 8],
        &wrong,
    ));
    listener.send_udp(&tagged(
        DatagramKind::Voice,
        listener,
        9,
        far,
        &[3; 8],
        &wrong,
    ));
    assert_eq!(
        listener.recv_udp(Duration::from_millis(150)),
        None,
        "no pong"
    );
    let d = datagram(DatagramKind::Voice, &clients[0], 1, talker, &[7; 20]);
    clients[0].send_udp(&d);
    assert_eq!(clients[1].recv_udp(WAIT), Some(d), "still in range");
    let stats = clients[0].stats();
    assert_eq!(stats["drop_bad_tag"], 2);
    assert_eq!(stats["voice_culled"], 0);
    assert_eq!(stats["forwarded_packets"], 1);
    // With its own key the same far position does cull: the check above was the tag.
    let listener = &clients[1];
    listener.send_udp(&datagram(DatagramKind::Ping, listener, 0, far, &[4; 8]));
    assert!(listener.recv_udp(WAIT).is_some(), "pong");
    clients[0].send_udp(&datagram(
        DatagramKind::Voice,
        &clients[0],
        2,
        talker,
        &[8; 20],
    ));
    assert_eq!(
        clients[1].recv_udp(Duration::from_millis(300)),
        None,
        "culled"
    );
    assert_eq!(clients[0].stats()["voice_culled"], 1);
}

/// The next `ServerMessage::Tunnel` datagram on `c`'s control connection within `wait` (other
/// messages skipped), or `None`.
fn tunneled(c: &mut Client, wait: Duration) -> Option<Vec<u8>> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match c.ctl.try_recv(left)? {
            ServerMessage::Tunnel { datagram } => return Some(datagram),
            _ => continue,
        }
    }
}

#[test]
fn tunneled_voice_and_tunneled_listeners_are_culled_like_udp() {
    // A talks over UDP at 0; B (at 10) and C (at 100) listen through the tunnel, range 30. The
    // relay culls C's tunneled copy as it would a UDP one; C's tunneled voice carries its
    // position (the same bytes as over UDP), which is recorded and culls around it.
    let (_relay, mut clients) = room(3, ROOM_3D);
    let at = |z: f32| Position::new(0.0, 0.0, z);
    for (c, z) in clients.iter().zip([0.0, 10.0, 100.0]) {
        c.send_udp(&datagram(DatagramKind::Ping, c, 0, at(z), &[1; 8]));
        assert!(c.recv_udp(WAIT).is_some(), "pong");
    }
    for c in &mut clients[1..] {
        c.send(&voice_core::proto::tcp::ClientMessage::Tunnel {
            active: true,
            datagram: Vec::new(),
        });
        // A reply on the same connection: the switch was taken (and published) before it.
        let _ = c.stats();
    }
    let before = clients[0].stats()["voice_culled"];
    let d = datagram(DatagramKind::Voice, &clients[0], 1, at(0.0), &[5; 20]);
    clients[0].send_udp(&d);
    assert_eq!(tunneled(&mut clients[1], WAIT), Some(d), "B in range");
    assert_eq!(tunneled(&mut clients[2], QUIET_TUNNEL), None, "C culled");
    assert_eq!(clients[0].stats()["voice_culled"], before + 1);

    // C talks through its tunnel from 100: nobody is within range.
    let far = datagram(DatagramKind::Voice, &clients[2], 1, at(100.0), &[6; 20]);
    clients[2].send(&voice_core::proto::tcp::ClientMessage::Tunnel {
        active: true,
        datagram: far,
    });
    assert_eq!(tunneled(&mut clients[1], QUIET_TUNNEL), None, "B culled");
    assert_eq!(clients[0].recv_udp(QUIET_TUNNEL), None, "A culled");
    assert_eq!(clients[0].stats()["voice_culled"], before + 3);
    // From 5, tunneled: A hears it over UDP and B through its tunnel, the exact bytes.
    let near = datagram(DatagramKind::Voice, &clients[2], 2, at(5.0), &[7; 20]);
    clients[2].send(&voice_core::proto::tcp::ClientMessage::Tunnel {
        active: true,
        datagram: near.clone(),
    });
    assert_eq!(clients[0].recv_udp(WAIT), Some(near.clone()), "A in range");
    assert_eq!(tunneled(&mut clients[1], WAIT), Some(near), "B in range");
    // C's position was recorded from its tunneled voice: A's voice now reaches C as well.
    let d = datagram(DatagramKind::Voice, &clients[0], 2, at(0.0), &[8; 20]);
    clients[0].send_udp(&d);
    assert_eq!(
        tunneled(&mut clients[2], WAIT),
        Some(d.clone()),
        "C now in range"
    );
    assert_eq!(tunneled(&mut clients[1], WAIT), Some(d), "B still in range");
    assert_eq!(clients[0].stats()["voice_culled"], before + 3);
}

/// How long a culled copy is waited for before concluding it was not sent.
const QUIET_TUNNEL: Duration = Duration::from_millis(300);
