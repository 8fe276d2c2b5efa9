//! UDP keep-alive (the NAT keep-alive) and the tunnel fallback on simulated time: keep-alives go
//! out every `keepalive_interval` (configurable), an unanswered one moves voice into the tunnel
//! `udp_timeout` later, registrations probe UDP while tunneled and the first acknowledgement
//! brings voice back. Each path change is one `Event::Status`.

use std::time::Duration;

use voice_core::engine::{ConnectionStatus, Engine, EngineConfig, Event, PathConfig, VoicePath};
use voice_core::proto::tcp::{ChannelInfo, ClientMessage, ServerMessage};
use voice_core::proto::udp::{self, DatagramKind, Header, TagKey, MAX_DATAGRAM};
use voice_core::proto::{ChannelId, SessionToken};
use voice_core::vad::TransmitMode;
use voice_core::Time;

const ME: SessionToken = SessionToken(4);
/// The session secret of `Welcome`; the relay tags its replies with the key derived from it.
const SECRET: [u8; 32] = [1; 32];

fn ms(n: u64) -> Time {
    Time::from_micros(n * 1000)
}

fn reply(kind: DatagramKind, payload: &[u8]) -> Vec<u8> {
    let mut buf = [0u8; MAX_DATAGRAM];
    let h = Header {
        kind,
        ..Header::voice(ME, 0, 0)
    };
    let n = udp::write(&h, payload, &TagKey::derive(&SECRET), &mut buf).unwrap();
    buf[..n].to_vec()
}

/// A welcomed engine with a 2 s keep-alive and a 1 s UDP timeout.
fn welcomed() -> Engine {
    let mut e = Engine::new(EngineConfig {
        transmit: TransmitMode::Continuous,
        path: PathConfig {
            keepalive_interval: Duration::from_secs(2),
            udp_timeout: Duration::from_secs(1),
            tunnel: true,
        },
        ..EngineConfig::default()
    })
    .unwrap();
    e.connect(ms(0));
    e.handle_control(
        ms(0),
        ServerMessage::Welcome {
            session: ME,
            secret: SECRET,
            name: "me".into(),
            channels: vec![ChannelInfo {
                id: ChannelId(1),
                name: "Lobby".into(),
                users: vec![],
            }],
            default_channel: ChannelId(1),
            server_time_ms: 0,
        },
    );
    e.handle_control(
        ms(0),
        ServerMessage::Joined {
            channel: ChannelInfo {
                id: ChannelId(1),
                name: "Lobby".into(),
                users: vec![],
            },
        },
    );
    e
}

/// Runs `e` from `from` to `to` in 10 ms steps; returns the UDP datagram kinds sent with their
/// times, the control messages and the status events. `answer` decides whether UDP probes are
/// answered (a `Pong` for a `Ping`, a `RegisterAck` for a `Register`, at once).
#[allow(clippy::type_complexity)]
fn run(
    e: &mut Engine,
    from: u64,
    to: u64,
    answer: bool,
) -> (
    Vec<(u64, DatagramKind)>,
    Vec<ClientMessage>,
    Vec<ConnectionStatus>,
) {
    let (mut sent, mut control, mut status) = (Vec::new(), Vec::new(), Vec::new());
    let mut buf = [0u8; MAX_DATAGRAM];
    for t in (from..=to).step_by(10) {
        if e.poll_timeout().is_some_and(|d| d <= ms(t)) {
            e.handle_timeout(ms(t));
        }
        while let Some(n) = e.poll_datagram(&mut buf) {
            let d = udp::parse(&buf[..n]).unwrap();
            sent.push((t, d.header.kind));
            if answer {
                let back = match d.header.kind {
                    DatagramKind::Ping => reply(DatagramKind::Pong, d.payload),
                    DatagramKind::Register => reply(DatagramKind::RegisterAck, &[0; 8]),
                    _ => continue,
                };
                e.handle_datagram(ms(t), &back);
            }
        }
        control.extend(std::iter::from_fn(|| e.poll_control()));
        status.extend(
            std::iter::from_fn(|| e.poll_event()).filter_map(|ev| match ev {
                Event::Status(s) => Some(s),
                _ => None,
            }),
        );
    }
    (sent, control, status)
}

fn tunnel_msgs(control: &[ClientMessage]) -> Vec<(bool, usize)> {
    control
        .iter()
        .filter_map(|m| match m {
            ClientMessage::Tunnel { active, datagram } => Some((*active, datagram.len())),
            _ => None,
        })
        .collect()
}

#[test]
fn keepalives_follow_the_configured_interval_and_an_unanswered_one_moves_voice_into_the_tunnel() {
    let mut e = welcomed();
    let (sent, _, status) = run(&mut e, 0, 9_000, true);
    assert_eq!(sent[0], (0, DatagramKind::Register));
    let pings: Vec<u64> = sent
        .iter()
        .filter(|(_, k)| *k == DatagramKind::Ping)
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(
        pings,
        [2_000, 4_000, 6_000, 8_000],
        "every 2 s after the ack"
    );
    assert_eq!(
        status,
        [ConnectionStatus::Connected {
            path: VoicePath::Udp
        }]
    );
    assert_eq!(e.stats(ms(9_000)).path, Some(VoicePath::Udp));

    // UDP stops answering: the 10 s keep-alive goes unanswered; 1 s later voice is tunneled.
    let (sent, control, status) = run(&mut e, 9_010, 12_000, false);
    assert_eq!(sent, [(10_000, DatagramKind::Ping)]);
    assert_eq!(
        status,
        [ConnectionStatus::Connected {
            path: VoicePath::Tunnel
        }]
    );
    assert_eq!(tunnel_msgs(&control), [(true, 0)], "the relay is told once");
    // Voice now travels in the control connection, not as datagrams.
    let mut frame = [0i16; voice_core::FRAME_SAMPLES];
    frame
        .iter_mut()
        .enumerate()
        .for_each(|(i, s)| *s = ((i % 40) as i16 - 20) * 500);
    e.handle_capture(ms(12_000), &frame);
    let mut buf = [0u8; MAX_DATAGRAM];
    assert_eq!(e.poll_datagram(&mut buf), None);
    let control: Vec<ClientMessage> = std::iter::from_fn(|| e.poll_control()).collect();
    let voice = tunnel_msgs(&control);
    assert!(
        matches!(voice[..], [(true, n)] if n > udp::HEADER_LEN + udp::TAG_LEN),
        "{voice:?}"
    );
    // The tunnel carries a whole version-2 datagram, tagged with this session's key as over UDP.
    let datagram = control
        .iter()
        .find_map(|m| match m {
            ClientMessage::Tunnel { datagram, .. } => Some(datagram),
            _ => None,
        })
        .expect("a tunneled datagram");
    assert_eq!(TagKey::derive(&SECRET).verify(datagram), Ok(()));
    let d = udp::parse(datagram).unwrap();
    assert_eq!((d.header.kind, d.header.sender), (DatagramKind::Voice, ME));

    // While tunneled, UDP is probed with registrations at the keep-alive interval; the first
    // acknowledgement brings voice back.
    let (sent, control, status) = run(&mut e, 12_010, 16_000, false);
    assert_eq!(
        sent,
        [
            (13_000, DatagramKind::Register),
            (15_000, DatagramKind::Register)
        ]
    );
    assert!(status.is_empty() && tunnel_msgs(&control).is_empty());
    let (sent, control, status) = run(&mut e, 16_010, 17_500, true);
    assert_eq!(sent[0], (17_000, DatagramKind::Register));
    assert_eq!(
        status,
        [ConnectionStatus::Connected {
            path: VoicePath::Udp
        }]
    );
    assert_eq!(tunnel_msgs(&control), [(false, 0)]);
    let s = e.stats(ms(17_500));
    assert_eq!((s.path, s.tunnel_tx_packets), (Some(VoicePath::Udp), 1));
}

#[test]
fn with_the_tunnel_off_voice_waits_for_udp() {
    let mut e = Engine::new(EngineConfig {
        path: PathConfig {
            tunnel: false,
            ..PathConfig::default()
        },
        ..EngineConfig::default()
    })
    .unwrap();
    e.connect(ms(0));
    e.handle_control(
        ms(0),
        ServerMessage::Welcome {
            session: ME,
            secret: SECRET,
            name: "me".into(),
            channels: vec![],
            default_channel: ChannelId(1),
            server_time_ms: 0,
        },
    );
    let (sent, control, status) = run(&mut e, 0, 10_000, false);
    assert!(sent.iter().all(|(_, k)| *k == DatagramKind::Register));
    assert!(status.is_empty() && tunnel_msgs(&control).is_empty());
    assert_eq!(e.voice_path(), None);
}

#[test]
fn positional_voice_goes_through_the_tunnel_with_its_block() {
    let mut e = welcomed();
    let p = voice_core::proto::udp::Position::new(1.5, 0.0, -12.25);
    e.set_position(Some(p)).unwrap();
    run(&mut e, 0, 1_000, true);
    // The 2 s keep-alive goes unanswered: voice is tunneled from 3 s on.
    let (_, _, status) = run(&mut e, 1_010, 3_500, false);
    assert_eq!(
        status,
        [ConnectionStatus::Connected {
            path: VoicePath::Tunnel
        }]
    );
    let mut frame = [0i16; voice_core::FRAME_SAMPLES];
    frame
        .iter_mut()
        .enumerate()
        .for_each(|(i, s)| *s = ((i % 40) as i16 - 20) * 500);
    e.handle_capture(ms(3_500), &frame);
    let control: Vec<ClientMessage> = std::iter::from_fn(|| e.poll_control()).collect();
    let datagram = control
        .iter()
        .find_map(|m| match m {
            ClientMessage::Tunnel { datagram, .. } if !datagram.is_empty() => Some(datagram),
            _ => None,
        })
        .expect("a tunneled datagram");
    // The same bytes as over UDP: the positional block (flag 0x80) under the session's tag.
    assert_eq!(TagKey::derive(&SECRET).verify(datagram), Ok(()));
    let d = udp::parse(datagram).unwrap();
    assert_eq!(d.header.kind, DatagramKind::Voice);
    assert_eq!(d.header.flags.0 & 0x80, 0x80);
    assert_eq!(d.position, Some(p));
}
