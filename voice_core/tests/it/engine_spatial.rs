//! The engine's positional path: its own position rides on voice and pings, a `ChannelSpatial`
//! makes the channel 3D, and `mix_stereo` places a talker by its datagrams' position (real Opus
//! end to end between two engines, simulated clock); in a 2D channel both ears are equal.

use crate::common;

use std::time::Duration;

use common::tone;
use voice_core::engine::{Engine, EngineConfig};
use voice_core::proto::register;
use voice_core::proto::tcp::{ChannelInfo, ServerMessage, SpatialInfo, UserInfo};
use voice_core::proto::udp::{self, DatagramKind, Header, Position, MAX_DATAGRAM};
use voice_core::proto::{ChannelId, SessionToken};
use voice_core::spatial::{Attenuation, DistanceModel, ListenerPose, STEREO_FRAME_SAMPLES};
use voice_core::vad::TransmitMode;
use voice_core::Time;

const SECRET: [u8; 32] = [3; 32];

fn drain_datagrams(e: &mut Engine) -> Vec<Vec<u8>> {
    let mut buf = [0u8; MAX_DATAGRAM];
    std::iter::from_fn(|| e.poll_datagram(&mut buf).map(|n| buf[..n].to_vec())).collect()
}

/// The one place engines start: session `me`, connected, registered, in channel 1 with both
/// users, and (when `spatial` is given) told the channel is 3D.
fn engine(me: u32, spatial: Option<Attenuation>) -> Engine {
    let now = Time::from_millis(0);
    let mut e = Engine::new(EngineConfig {
        name: format!("u{me}"),
        transmit: TransmitMode::Continuous,
        ..EngineConfig::default()
    })
    .unwrap();
    e.connect(now);
    let users: Vec<UserInfo> = [1, 2]
        .iter()
        .map(|&s| UserInfo {
            session: SessionToken(s),
            name: format!("u{s}"),
            user_id: format!("u{s}"),
            state: Default::default(),
        })
        .collect();
    let lobby = ChannelInfo {
        id: ChannelId(1),
        name: "arena".into(),
        users,
    };
    e.handle_control(
        now,
        ServerMessage::Welcome {
            session: SessionToken(me),
            secret: SECRET,
            name: format!("u{me}"),
            channels: vec![lobby.clone()],
            default_channel: ChannelId(1),
            server_time_ms: 0,
        },
    );
    e.handle_timeout(now);
    for d in drain_datagrams(&mut e) {
        let p = udp::parse(&d).unwrap();
        if p.header.kind == DatagramKind::Register {
            let counter = register::verify(&SECRET, SessionToken(me), p.payload, 0).unwrap();
            let mut ack = [0u8; 64];
            let h = Header {
                kind: DatagramKind::RegisterAck,
                ..Header::voice(SessionToken(me), 0, 0)
            };
            let key = udp::TagKey::derive(&SECRET);
            let n = udp::write(&h, &counter.to_le_bytes(), &key, &mut ack).unwrap();
            e.handle_datagram(now, &ack[..n]);
        }
    }
    assert!(e.udp_ready());
    e.handle_control(now, ServerMessage::Joined { channel: lobby });
    if let Some(a) = spatial {
        e.handle_control(
            now,
            ServerMessage::ChannelSpatial {
                channel: ChannelId(1),
                spatial: SpatialInfo::from_attenuation(&a).unwrap(),
            },
        );
    }
    while e.poll_control().is_some() {}
    while e.poll_event().is_some() {}
    e
}

/// Alice (1) at `at` talks a tone for 2 s; bob (2) at the origin facing −z mixes stereo.
/// Returns bob's left and right RMS over the second second.
fn listen(spatial: Option<Attenuation>, at: Position) -> (f64, f64) {
    listen_with(spatial, at, true)
}

/// [`listen`], or with `stereo` false through the mono mix (both values the mono RMS).
fn listen_with(spatial: Option<Attenuation>, at: Position, stereo: bool) -> (f64, f64) {
    let mut a = engine(1, spatial);
    let mut b = engine(2, spatial);
    a.set_position(Some(at)).unwrap();
    b.set_listener(ListenerPose::default()).unwrap();
    let mut out = [0i16; STEREO_FRAME_SAMPLES];
    let (mut l, mut r, mut n) = (0f64, 0f64, 0f64);
    for k in 0..100u64 {
        let now = Time::from_millis(20 * k);
        a.handle_capture(now, &tone(k as usize));
        for d in drain_datagrams(&mut a) {
            let p = udp::parse(&d).unwrap();
            if p.header.kind == DatagramKind::Voice {
                assert_eq!(p.position, Some(at), "own position on every voice datagram");
                // The tag covers the block: a relay holding alice's key accepts it.
                assert_eq!(udp::TagKey::derive(&SECRET).verify(&d), Ok(()));
                b.handle_datagram(now + Duration::from_millis(15), &d);
            }
        }
        if stereo {
            b.mix_stereo(now, &mut out);
        } else {
            let mut mono = [0i16; voice_core::FRAME_SAMPLES];
            b.mix(now, &mut mono);
            for (o, m) in out.chunks_exact_mut(2).zip(mono) {
                o.fill(m);
            }
        }
        if k >= 50 {
            for f in out.chunks_exact(2) {
                l += f64::from(f[0]).powi(2);
                r += f64::from(f[1]).powi(2);
                n += 1.0;
            }
        }
    }
    assert_eq!(b.remote_positions(), vec![(SessionToken(1), at)]);
    ((l / n).sqrt(), (r / n).sqrt())
}

#[test]
fn a_talker_on_the_right_is_louder_in_the_right_ear_and_fades_with_distance() {
    let att = Attenuation {
        model: DistanceModel::Inverse,
        min_distance: 1.0,
        max_distance: 50.0,
        rolloff: 1.0,
    };
    let (l1, r1) = listen(Some(att), Position::new(1.0, 0.0, 0.0));
    let ild = 20.0 * (r1 / l1).log10();
    assert!((ild - 10.0).abs() < 1.0, "ILD at 90° {ild:.2} dB");
    let (l4, r4) = listen(Some(att), Position::new(4.0, 0.0, 0.0));
    // Inverse model: 4 units is a quarter of the gain at 1 unit (−12 dB).
    let fade = 20.0 * (r4 / r1).log10();
    assert!((fade + 12.04).abs() < 1.0, "4× the distance: {fade:.2} dB");
    assert!((20.0 * (r4 / l4).log10() - 10.0).abs() < 1.0);
    // Out of range: silent.
    let (l, r) = listen(Some(att), Position::new(60.0, 0.0, 0.0));
    assert!(l < 1.0 && r < 1.0, "{l} {r}");
}

#[test]
fn the_mono_mix_applies_the_distance_gain() {
    let att = Attenuation {
        model: DistanceModel::Linear,
        min_distance: 1.0,
        max_distance: 21.0,
        rolloff: 1.0,
    };
    let (near, _) = listen_with(Some(att), Position::new(0.0, 0.0, -1.0), false);
    let (mid, _) = listen_with(Some(att), Position::new(0.0, 0.0, -11.0), false);
    // Linear from 1 to 21: half way is half the gain (−6 dB).
    let fade = 20.0 * (mid / near).log10();
    assert!((fade + 6.02).abs() < 1.0, "{fade:.2} dB");
    let (flat_near, _) = listen_with(None, Position::new(0.0, 0.0, -1.0), false);
    let (flat_far, _) = listen_with(None, Position::new(0.0, 0.0, -11.0), false);
    assert!(
        (20.0 * (flat_far / flat_near).log10()).abs() < 0.5,
        "2D: no fade"
    );
}

#[test]
fn a_2d_channel_is_centred_whatever_the_position() {
    let (l, r) = listen(None, Position::new(3.0, 0.0, 0.0));
    assert!(l > 1000.0, "audible: {l}");
    assert_eq!(l, r);
}

#[test]
fn positions_and_poses_are_validated_and_pings_carry_the_position() {
    let mut e = engine(1, None);
    assert!(e
        .set_position(Some(Position::new(f32::NAN, 0.0, 0.0)))
        .is_err());
    assert!(e
        .set_listener(ListenerPose {
            forward: [0.0; 3],
            ..ListenerPose::default()
        })
        .is_err());
    assert!(e
        .set_channel_attenuation(Some(Attenuation {
            min_distance: 5.0,
            max_distance: 1.0,
            ..Attenuation::default()
        }))
        .is_err());
    assert_eq!(e.spatial_attenuation(), None);
    e.set_channel_attenuation(Some(Attenuation::default()))
        .unwrap();
    assert_eq!(e.spatial_attenuation(), Some(Attenuation::default()));
    let p = Position::new(1.0, 2.0, 3.0);
    e.set_position(Some(p)).unwrap();
    e.handle_timeout(Time::from_millis(60_000));
    let pings: Vec<_> = drain_datagrams(&mut e)
        .into_iter()
        .filter(|d| udp::parse(d).unwrap().header.kind == DatagramKind::Ping)
        .collect();
    assert!(!pings.is_empty());
    assert_eq!(udp::parse(&pings[0]).unwrap().position, Some(p));
}
