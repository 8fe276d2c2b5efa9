//! End-to-end encryption in the client engine, with a scripted relay on simulated time: password
//! mode, identity-keys mode over the control messages, and mixed channels (two E2EE clients and
//! one without) as `docs/PROTOCOL.md` documents them.
use crate::common;
use common::tone;
use voice_core::e2ee::E2eeMode;
use voice_core::engine::{Engine, EngineConfig};
use voice_core::proto::register;
use voice_core::proto::tcp::{ChannelInfo, ClientMessage, ServerMessage, UserInfo};
use voice_core::proto::udp::{self, DatagramKind, Flags, Header, MAX_DATAGRAM};
use voice_core::proto::{ChannelId, SessionToken};
use voice_core::vad::TransmitMode;
use voice_core::{Time, FRAME_SAMPLES};

const SECRET: [u8; 32] = [3; 32];
const PASSWORD: &[u8] = b"a 128-bit secret from the game..";

fn lobby(users: &[u32]) -> ChannelInfo {
    ChannelInfo {
        id: ChannelId(1),
        name: "Lobby".into(),
        users: users
            .iter()
            .map(|s| UserInfo {
                session: SessionToken(*s),
                name: format!("u{s}"),
                user_id: format!("u{s}"),
                state: Default::default(),
            })
            .collect(),
    }
}

fn control(e: &mut Engine) -> Vec<ClientMessage> {
    std::iter::from_fn(|| e.poll_control()).collect()
}

fn datagrams(e: &mut Engine) -> Vec<Vec<u8>> {
    let mut buf = [0u8; MAX_DATAGRAM];
    std::iter::from_fn(|| e.poll_datagram(&mut buf).map(|n| buf[..n].to_vec())).collect()
}

/// Connected, UDP bound, in the Lobby with `members` (all sessions, including `me`).
/// Returns the engine and the control messages it sent after `Welcome`.
fn engine(me: u32, e2ee: E2eeMode, members: &[u32], now: Time) -> (Engine, Vec<ClientMessage>) {
    let mut e = Engine::new(EngineConfig {
        name: format!("u{me}"),
        transmit: TransmitMode::Continuous,
        e2ee,
        ..EngineConfig::default()
    })
    .unwrap();
    e.connect(now);
    let _ = control(&mut e);
    e.handle_control(
        now,
        ServerMessage::Welcome {
            session: SessionToken(me),
            secret: SECRET,
            name: format!("u{me}"),
            channels: vec![lobby(&[])],
            default_channel: ChannelId(1),
            server_time_ms: 0,
        },
    );
    let sent = control(&mut e);
    e.handle_timeout(now);
    let reg = datagrams(&mut e)
        .into_iter()
        .find(|d| udp::parse(d).unwrap().header.kind == DatagramKind::Register)
        .unwrap();
    let counter = register::verify(
        &SECRET,
        SessionToken(me),
        udp::parse(&reg).unwrap().payload,
        0,
    )
    .unwrap();
    let mut ack = [0u8; 64];
    let n = udp::write(
        &Header {
            kind: DatagramKind::RegisterAck,
            ..Header::voice(SessionToken(me), 0, 0)
        },
        &counter.to_le_bytes(),
        &udp::TagKey::derive(&SECRET),
        &mut ack,
    )
    .unwrap();
    e.handle_datagram(now, &ack[..n]);
    e.handle_control(
        now,
        ServerMessage::Joined {
            channel: lobby(members),
        },
    );
    let _ = control(&mut e);
    while e.poll_event().is_some() {}
    (e, sent)
}

/// Captures `frames` frames of tone at `e` and returns the voice datagrams.
fn talk(e: &mut Engine, t0: u64, frames: u64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for k in 0..frames {
        e.handle_capture(Time::from_millis(t0 + 20 * k), &tone(k as usize));
        out.extend(
            datagrams(e)
                .into_iter()
                .filter(|d| udp::parse(d).unwrap().header.kind == DatagramKind::Voice),
        );
    }
    out
}

/// Feeds datagrams one per 20 ms and mixes; returns the output's mean absolute sample.
fn listen(e: &mut Engine, t0: u64, ds: &[Vec<u8>]) -> f64 {
    let mut sum = 0f64;
    let mut n = 0usize;
    let mut out = [0i16; FRAME_SAMPLES];
    for (k, d) in ds.iter().enumerate() {
        let now = Time::from_millis(t0 + 20 * k as u64);
        e.handle_datagram(now, d);
        e.mix(now, &mut out);
        sum += out.iter().map(|s| f64::from(s.unsigned_abs())).sum::<f64>();
        n += FRAME_SAMPLES;
    }
    sum / n as f64
}

#[test]
fn password_mode_mixed_channel_replay_and_tamper() {
    let t = Time::from_millis(1000);
    let all = [1, 2, 3, 4];
    let (mut a, _) = engine(1, E2eeMode::Password(PASSWORD.to_vec()), &all, t);
    let (mut b, _) = engine(2, E2eeMode::Password(PASSWORD.to_vec()), &all, t);
    let (mut c, _) = engine(3, E2eeMode::Off, &all, t);
    let (mut d, _) = engine(4, E2eeMode::Password(b"another secret".to_vec()), &all, t);

    let from_a = talk(&mut a, 1000, 100);
    assert_eq!(from_a.len(), 100);
    let from_c = talk(&mut c, 1000, 100);
    let plain_len: Vec<usize> = from_c.iter().map(Vec::len).collect();
    for (i, dg) in from_a.iter().enumerate() {
        let p = udp::parse(dg).unwrap();
        assert!(p.header.flags.contains(Flags::ENCRYPTED));
        // The same tone through the same encoder: the sealed datagram is at most 10 bytes larger.
        assert!(
            dg.len() <= plain_len[i] + 10,
            "{} vs {}",
            dg.len(),
            plain_len[i]
        );
        assert!(!udp::parse(&from_c[i])
            .unwrap()
            .header
            .flags
            .contains(Flags::ENCRYPTED));
    }

    // B (same password) hears A; C (no E2EE) and D (other password) hear nothing.
    assert!(listen(&mut b, 1000, &from_a) > 100.0);
    assert!(listen(&mut c, 1000, &from_a) < 1.0);
    assert!(listen(&mut d, 1000, &from_a) < 1.0);
    let sb = b.stats(Time::from_millis(4000));
    assert_eq!(sb.e2ee.mode, "password");
    assert_eq!(sb.e2ee.opened, 100);
    assert_eq!(
        sb.e2ee.decrypt_failed_bad_tag + sb.e2ee.decrypt_failed_replay,
        0
    );
    assert!(sb
        .remotes
        .iter()
        .any(|r| r.session == SessionToken(1) && r.encrypted));
    let sc = c.stats(Time::from_millis(4000));
    assert_eq!(sc.e2ee.decrypt_failed_unknown_key_id, 100);
    let sd = d.stats(Time::from_millis(4000));
    assert_eq!(sd.e2ee.decrypt_failed_bad_tag, 100);

    // B refuses C's plaintext voice (anyone could inject it).
    let _ = listen(&mut b, 5000, &from_c);
    let sb = b.stats(Time::from_millis(8000));
    assert_eq!(sb.e2ee.plaintext_dropped, 100);
    assert!(
        sb.remotes.iter().all(|r| r.session != SessionToken(3)),
        "C never becomes audible"
    );

    // Replay of an old datagram, and a bit flip anywhere in the datagram.
    b.handle_datagram(Time::from_millis(8000), &from_a[50]);
    assert_eq!(
        b.stats(Time::from_millis(8000)).e2ee.decrypt_failed_replay,
        1
    );
    let fresh = talk(&mut a, 3000, 3);
    let mut flips = 0;
    for (byte, bit) in [(2usize, 3u8), (4, 0), (9, 7), (21, 1), (30, 4)] {
        let mut x = fresh[0].clone();
        if byte == 2 && bit == 3 {
            // Flags byte: clearing nothing relevant to parsing but changing the metadata.
            x[2] ^= 0x08;
        } else {
            x[byte] ^= 1 << bit;
        }
        b.handle_datagram(Time::from_millis(8020), &x);
        flips += 1;
    }
    let s = b.stats(Time::from_millis(8020));
    assert_eq!(
        s.e2ee.decrypt_failed_bad_tag
            + s.e2ee.decrypt_failed_malformed
            + s.e2ee.decrypt_failed_unknown_key_id,
        flips
    );
    b.handle_datagram(Time::from_millis(8040), &fresh[0]);
    assert_eq!(b.stats(Time::from_millis(8040)).e2ee.opened, 101);
}

#[test]
fn identity_keys_over_the_control_plane() {
    let t = Time::from_millis(1000);
    // A is alone in the Lobby; B joins.
    let (mut a, a_sent) = engine(1, E2eeMode::keys(), &[1], t);
    let (mut b, b_sent) = engine(2, E2eeMode::keys(), &[1, 2], t);
    let blob = |sent: &[ClientMessage]| {
        sent.iter()
            .find_map(|m| match m {
                ClientMessage::E2eeIdentity { blob } => Some(blob.clone()),
                _ => None,
            })
            .expect("identity announced before joining")
    };
    assert!(matches!(a_sent[0], ClientMessage::E2eeIdentity { .. }));
    let (ida, idb) = (blob(&a_sent), blob(&b_sent));
    // The relay: A sees B join and B's identity; B (joiner) gets A's identity.
    a.handle_control(
        t,
        ServerMessage::UserJoined {
            channel: ChannelId(1),
            user: UserInfo {
                session: SessionToken(2),
                name: "u2".into(),
                user_id: "u2".into(),
                state: Default::default(),
            },
        },
    );
    a.handle_control(
        t,
        ServerMessage::E2eeIdentity {
            session: SessionToken(2),
            blob: idb,
        },
    );
    b.handle_control(
        t,
        ServerMessage::E2eeIdentity {
            session: SessionToken(1),
            blob: ida,
        },
    );
    let relay = |from: u32, sent: Vec<ClientMessage>, to: &mut Engine| {
        for m in sent {
            if let ClientMessage::E2eeKeys { keys } = m {
                for (_, blob) in keys {
                    to.handle_control(
                        t,
                        ServerMessage::E2eeKey {
                            from: SessionToken(from),
                            blob,
                        },
                    );
                }
            }
        }
    };
    let from_a = control(&mut a);
    let from_b = control(&mut b);
    relay(1, from_a, &mut b);
    relay(2, from_b, &mut a);
    // B already holds A's pending key; A switches after the lead. B's current key reached A.
    assert_eq!(
        a.safety_number(SessionToken(2)),
        b.safety_number(SessionToken(2)),
        "both sides show B's safety number"
    );
    let later = 1000 + 600;
    a.handle_timeout(Time::from_millis(later));
    let voice = talk(&mut a, later, 50);
    assert!(listen(&mut b, later, &voice) > 100.0);
    let voice_b = talk(&mut b, later, 50);
    assert!(listen(&mut a, later, &voice_b) > 100.0);
    let (sa, sb) = (
        a.stats(Time::from_millis(3000)),
        b.stats(Time::from_millis(3000)),
    );
    assert_eq!(sb.e2ee.opened, 50);
    assert_eq!(sa.e2ee.opened, 50);
    assert_eq!(
        sb.e2ee.decrypt_failed_unknown_key_id + sa.e2ee.decrypt_failed_unknown_key_id,
        0
    );
    assert!(sb
        .e2ee
        .member_safety_numbers
        .iter()
        .any(|(s, _)| *s == SessionToken(1)));
}
