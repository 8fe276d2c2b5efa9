//! The sans-IO client engine driven by a scripted relay on simulated time.
use crate::common;
use common::tone;
use voice_core::engine::{
    CommandError, DisconnectKind, Engine, EngineConfig, Event, Request, MAX_REMOTES,
};
use voice_core::proto::register;
use voice_core::proto::tcp::{ChannelInfo, ClientMessage, ServerMessage, UserInfo, VoiceState};
use voice_core::proto::udp::{self, DatagramKind, Flags, Header, MAX_DATAGRAM};
use voice_core::proto::{ChannelId, SessionToken};
use voice_core::vad::TransmitMode;
use voice_core::{Time, FRAME_SAMPLES};

const SECRET: [u8; 32] = [3; 32];

fn lobby(users: &[(u32, &str)]) -> ChannelInfo {
    ChannelInfo {
        id: ChannelId(1),
        name: "Lobby".into(),
        users: users
            .iter()
            .map(|(s, n)| UserInfo {
                session: SessionToken(*s),
                name: (*n).into(),
                user_id: (*n).into(),
                state: Default::default(),
            })
            .collect(),
    }
}

/// `channel` with alice (user id "alice") shown under the display name "ally".
fn renamed(mut channel: ChannelInfo) -> ChannelInfo {
    for u in &mut channel.users {
        if u.name == "alice" {
            u.name = "ally".into();
        }
    }
    channel
}

/// The relay tells `e` that `session` joined its channel (the Lobby).
fn joins_lobby(e: &mut Engine, now: Time, session: u32, name: &str) {
    e.handle_control(
        now,
        ServerMessage::UserJoined {
            channel: ChannelId(1),
            user: UserInfo {
                session: SessionToken(session),
                name: name.into(),
                user_id: name.into(),
                state: Default::default(),
            },
        },
    );
}

fn drain_control(e: &mut Engine) -> Vec<ClientMessage> {
    std::iter::from_fn(|| e.poll_control()).collect()
}

fn drain_datagrams(e: &mut Engine) -> Vec<Vec<u8>> {
    let mut buf = [0u8; MAX_DATAGRAM];
    std::iter::from_fn(|| e.poll_datagram(&mut buf).map(|n| buf[..n].to_vec())).collect()
}

fn drain_events(e: &mut Engine) -> Vec<Event> {
    std::iter::from_fn(|| e.poll_event()).collect()
}

/// Brings an engine to "connected, UDP bound, in the Lobby" as session `me`.
fn connected(me: u32, name: &str, now: Time) -> Engine {
    let mut e = Engine::new(EngineConfig {
        name: name.into(),
        transmit: TransmitMode::Continuous,
        ..EngineConfig::default()
    })
    .unwrap();
    e.connect(now);
    assert!(matches!(
        drain_control(&mut e).as_slice(),
        [ClientMessage::Hello { name: n, .. }] if n == name
    ));
    e.handle_control(
        now,
        ServerMessage::Welcome {
            session: SessionToken(me),
            secret: SECRET,
            name: name.into(),
            channels: vec![lobby(&[])],
            default_channel: ChannelId(1),
            server_time_ms: 0,
        },
    );
    assert_eq!(
        drain_control(&mut e),
        vec![ClientMessage::JoinChannel {
            channel: ChannelId(1)
        }],
        "auto-joins the default channel"
    );
    e.handle_timeout(now);
    let sent = drain_datagrams(&mut e);
    let reg: Vec<&Vec<u8>> = sent
        .iter()
        .filter(|d| udp::parse(d).unwrap().header.kind == DatagramKind::Register)
        .collect();
    assert_eq!(reg.len(), 1, "one registration");
    let d = udp::parse(reg[0]).unwrap();
    assert_eq!(d.header.sender, SessionToken(me));
    let counter = register::verify(&SECRET, SessionToken(me), d.payload, 0).unwrap();
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
            channel: lobby(&[(me, name)]),
        },
    );
    let _ = drain_control(&mut e); // the first ping
    let ev = drain_events(&mut e);
    assert!(ev.contains(&Event::UdpReady));
    assert!(ev.iter().any(|e| matches!(e, Event::ChannelJoined { .. })));
    e
}

#[test]
fn registration_is_retried_until_acknowledged() {
    let mut e = Engine::new(EngineConfig::default()).unwrap();
    let t0 = Time::from_millis(1000);
    e.connect(t0);
    let _ = drain_control(&mut e);
    e.handle_control(
        t0,
        ServerMessage::Welcome {
            session: SessionToken(9),
            secret: SECRET,
            name: "x".into(),
            channels: vec![lobby(&[])],
            default_channel: ChannelId(1),
            server_time_ms: 0,
        },
    );
    let mut counters = Vec::new();
    let mut now = t0;
    for _ in 0..40 {
        e.handle_timeout(now);
        for d in drain_datagrams(&mut e) {
            let p = udp::parse(&d).unwrap();
            if p.header.kind == DatagramKind::Register {
                counters.push(register::verify(&SECRET, SessionToken(9), p.payload, 0).unwrap());
            }
        }
        now = now + std::time::Duration::from_millis(100);
    }
    assert!(counters.len() >= 3, "retries: {counters:?}");
    assert!(counters.windows(2).all(|w| w[1] > w[0]), "counter grows");
}

#[test]
fn voice_flows_between_two_engines_and_is_mixed() {
    let t0 = Time::from_millis(0);
    let mut a = connected(1, "alice", t0);
    let mut b = connected(2, "bob", t0);
    joins_lobby(&mut b, t0, 1, "alice");
    let mut heard = Vec::new();
    let mut out = [0i16; FRAME_SAMPLES];
    for k in 0..100u64 {
        let now = Time::from_millis(20 * k);
        a.handle_capture(now, &tone(k as usize));
        for d in drain_datagrams(&mut a) {
            // The "relay": forward voice to b after 15 ms (exact bytes).
            if udp::parse(&d).unwrap().header.kind == DatagramKind::Voice {
                b.handle_datagram(now + std::time::Duration::from_millis(15), &d);
            }
        }
        b.mix(now, &mut out);
        heard.extend_from_slice(&out);
    }
    let energy: f64 = heard[48_000..].iter().map(|&s| f64::from(s).powi(2)).sum();
    assert!(energy > 1e9, "bob hears alice");
    let stats = b.stats(Time::from_millis(2000));
    assert_eq!(stats.remotes.len(), 1);
    assert_eq!(stats.remotes[0].session, SessionToken(1));
    assert_eq!(stats.remotes[0].stream.frames_concealed, 0);
    let ev = drain_events(&mut b);
    assert!(ev.contains(&Event::Speaking {
        session: SessionToken(1),
        speaking: true,
        whisper: false
    }));
    // Muting alice locally silences her in bob's mix.
    b.set_user_muted(SessionToken(1), true);
    for k in 100..110u64 {
        let now = Time::from_millis(20 * k);
        a.handle_capture(now, &tone(k as usize));
        for d in drain_datagrams(&mut a) {
            b.handle_datagram(now, &d);
        }
        b.mix(now, &mut out);
    }
    assert!(out.iter().all(|&s| s == 0));
}

#[test]
fn whisper_sets_the_target_and_push_to_talk_closes_spurts() {
    let t0 = Time::from_millis(0);
    let mut a = connected(1, "alice", t0);
    a.set_transmit_mode(TransmitMode::PushToTalk);
    a.set_whisper(Some(SessionToken(7))).unwrap();
    assert!(a.set_whisper(Some(SessionToken(1))).is_err());
    a.handle_capture(t0, &tone(0));
    assert!(drain_datagrams(&mut a).is_empty(), "PTT not held: silent");
    a.set_push_to_talk(true);
    a.handle_capture(t0, &tone(1));
    a.handle_capture(t0, &tone(2));
    a.set_push_to_talk(false);
    a.handle_capture(t0, &tone(3));
    a.handle_capture(t0, &tone(4));
    let sent: Vec<Header> = drain_datagrams(&mut a)
        .iter()
        .map(|d| udp::parse(d).unwrap().header)
        .collect();
    assert_eq!(sent.len(), 3);
    assert!(sent.iter().all(|h| h.target == SessionToken(7)));
    assert!(sent[0].flags.contains(Flags::START_OF_SPURT));
    assert!(sent[2].flags.contains(Flags::END_OF_SPURT));
    assert_eq!(sent[1].seq, sent[0].seq.wrapping_add(1));
}

#[test]
fn presence_chat_and_errors_become_events() {
    let t0 = Time::from_millis(0);
    let mut a = connected(1, "alice", t0);
    a.handle_control(
        t0,
        ServerMessage::UserJoined {
            channel: ChannelId(1),
            user: UserInfo {
                session: SessionToken(4),
                name: "dave".into(),
                user_id: "dave".into(),
                state: Default::default(),
            },
        },
    );
    assert_eq!(a.find_user("dave"), Some(SessionToken(4)));
    assert_eq!(a.members().len(), 2);
    a.handle_control(
        t0,
        ServerMessage::UserLeft {
            channel: ChannelId(1),
            session: SessionToken(4),
        },
    );
    assert_eq!(a.members().len(), 1);
    assert!(a.send_chat("").is_err());
    a.send_chat("hello").unwrap();
    assert_eq!(
        drain_control(&mut a),
        vec![ClientMessage::Chat {
            text: "hello".into()
        }]
    );
    let ev = drain_events(&mut a);
    assert!(matches!(ev[0], Event::UserJoined { .. }));
    assert!(matches!(ev[1], Event::UserLeft { .. }));
}

#[test]
fn requests_are_carried_out_and_refusals_become_events() {
    // Before the connection is up, a chat is refused (and said so) but a join is remembered.
    let mut e = Engine::new(EngineConfig::default()).unwrap();
    assert_eq!(
        e.apply(Request::Chat("hi".into())),
        Err(CommandError::NotConnected)
    );
    assert_eq!(e.apply(Request::Join(ChannelId(3))), Ok(()));
    assert!(matches!(
        drain_events(&mut e).as_slice(),
        [Event::CommandFailed {
            command: "chat",
            error: CommandError::NotConnected
        }]
    ));

    let t0 = Time::from_millis(0);
    let mut a = connected(1, "alice", t0);
    a.apply(Request::Chat("hello".into())).unwrap();
    a.apply(Request::Join(ChannelId(2))).unwrap();
    a.apply(Request::Whisper(Some(SessionToken(7)))).unwrap();
    assert_eq!(a.whisper(), Some(SessionToken(7)));
    assert_eq!(
        drain_control(&mut a),
        vec![
            ClientMessage::Chat {
                text: "hello".into()
            },
            ClientMessage::JoinChannel {
                channel: ChannelId(2)
            },
        ]
    );
    // Whispering to ourselves is refused, and the refusal is an event.
    assert_eq!(
        a.apply(Request::Whisper(Some(SessionToken(1)))),
        Err(CommandError::WhisperSelf)
    );
    assert!(drain_events(&mut a).contains(&Event::CommandFailed {
        command: "whisper",
        error: CommandError::WhisperSelf
    }));
    assert_eq!(a.whisper(), Some(SessionToken(7)));
}

#[test]
fn ping_measures_rtt_and_reconnect_rejoins_the_last_channel() {
    let t0 = Time::from_millis(0);
    let mut a = connected(1, "alice", t0);
    a.join_channel(ChannelId(5)).unwrap();
    let _ = drain_control(&mut a);
    a.handle_control(
        t0,
        ServerMessage::Joined {
            channel: ChannelInfo {
                id: ChannelId(5),
                name: "Five".into(),
                users: vec![],
            },
        },
    );
    let t_ping = Time::from_millis(5_000);
    a.handle_timeout(t_ping);
    let ping = drain_control(&mut a)
        .into_iter()
        .find_map(|m| match m {
            ClientMessage::Ping { client_time_us } => Some(client_time_us),
            _ => None,
        })
        .expect("a ping after the interval");
    a.handle_control(
        Time::from_micros(ping + 12_000),
        ServerMessage::Pong {
            client_time_us: ping,
            server_time_ms: 0,
        },
    );
    let rtt = a.stats(t_ping).rtt_ms.unwrap();
    assert!((rtt - 12.0).abs() < 0.01);
    // Drop and reconnect: Hello, then after Welcome a JoinChannel for channel 5, not the default.
    a.disconnected(t_ping, DisconnectKind::Network, "reset");
    assert!(drain_events(&mut a).iter().any(|e| matches!(
        e,
        Event::Disconnected {
            kind: DisconnectKind::Network,
            ..
        }
    )));
    a.connect(t_ping);
    let _ = drain_control(&mut a);
    a.handle_control(
        t_ping,
        ServerMessage::Welcome {
            session: SessionToken(11),
            secret: SECRET,
            name: "alice".into(),
            channels: vec![
                lobby(&[]),
                ChannelInfo {
                    id: ChannelId(5),
                    name: "Five".into(),
                    users: vec![],
                },
            ],
            default_channel: ChannelId(1),
            server_time_ms: 0,
        },
    );
    assert_eq!(
        drain_control(&mut a),
        vec![ClientMessage::JoinChannel {
            channel: ChannelId(5)
        }]
    );
}

#[test]
fn malformed_datagrams_are_counted_not_fatal() {
    let t0 = Time::from_millis(0);
    let mut a = connected(1, "alice", t0);
    for junk in [&b""[..], &[1u8][..], &[0xFF; 30][..], &[1u8; 2000][..]] {
        a.handle_datagram(t0, junk);
    }
    assert_eq!(a.stats(t0).rx_malformed, 4);
}

#[test]
fn receiver_reports_raise_the_encoder_loss_hint() {
    let t0 = Time::from_millis(0);
    let mut a = connected(1, "alice", t0);
    let before = a.stats(t0).encoder_loss_hint;
    a.handle_control(
        t0,
        ServerMessage::ReceiverReport {
            from: SessionToken(2),
            loss_permille: 250,
            jitter_ms: 3,
        },
    );
    // 25 % loss is past DRED_FROM_PERMILLE (20 %): the sender carries DRED with the hint at 40.
    let after = a.stats(t0).encoder_loss_hint;
    assert_eq!(after, 40);
    assert!(after > before);
    a.handle_control(
        t0,
        ServerMessage::ReceiverReport {
            from: SessionToken(3),
            loss_permille: 30,
            jitter_ms: 3,
        },
    );
    // The worst report of the last 10 s still decides.
    assert_eq!(a.stats(t0).encoder_loss_hint, 40);
    let t1 = Time::from_millis(11_000);
    a.handle_control(
        t1,
        ServerMessage::ReceiverReport {
            from: SessionToken(3),
            loss_permille: 30,
            jitter_ms: 3,
        },
    );
    a.handle_timeout(t1);
    assert_eq!(a.stats(t1).encoder_loss_hint, 3, "3 % loss: in-band FEC");
}

/// Feeds `n` frames of alice's voice to bob (exact bytes, 15 ms later) and mixes each tick.
fn talk(a: &mut Engine, b: &mut Engine, from: u64, n: u64, out: &mut Vec<i16>) {
    let mut frame = [0i16; FRAME_SAMPLES];
    for k in from..from + n {
        let now = Time::from_millis(20 * k);
        a.handle_capture(now, &tone(k as usize));
        for d in drain_datagrams(a) {
            if udp::parse(&d).unwrap().header.kind == DatagramKind::Voice {
                b.handle_datagram(now + std::time::Duration::from_millis(15), &d);
            }
        }
        b.mix(now, &mut frame);
        out.extend_from_slice(&frame);
    }
}

#[test]
fn a_sender_outside_the_channel_does_not_become_a_remote() {
    let t0 = Time::from_millis(0);
    let mut a = connected(1, "alice", t0);
    let mut b = connected(2, "bob", t0);
    let mut heard = Vec::new();
    talk(&mut a, &mut b, 0, 20, &mut heard);
    assert!(
        b.stats(t0).remotes.is_empty(),
        "alice is not in bob's channel"
    );
    assert!(heard.iter().all(|&s| s == 0));
    // Whispering to bob is allowed from anywhere.
    a.set_whisper(Some(SessionToken(2))).unwrap();
    talk(&mut a, &mut b, 20, 20, &mut heard);
    assert_eq!(b.stats(t0).remotes.len(), 1);
}

#[test]
fn a_leaving_sender_is_played_out_and_no_ghost_comes_back() {
    let t0 = Time::from_millis(0);
    let mut a = connected(1, "alice", t0);
    let mut b = connected(2, "bob", t0);
    joins_lobby(&mut b, t0, 1, "alice");
    let mut heard = Vec::new();
    talk(&mut a, &mut b, 0, 50, &mut heard);
    // Alice says three more frames that bob has received but not yet played, then leaves.
    let mut in_flight = Vec::new();
    for k in 50..53u64 {
        a.handle_capture(Time::from_millis(20 * k), &tone(k as usize));
        in_flight.extend(drain_datagrams(&mut a));
    }
    for d in &in_flight {
        b.handle_datagram(Time::from_millis(20 * 50), d);
    }
    let held = b.stats(t0).remotes[0].stream.buffer_depth;
    assert!(held >= 3, "held {held}");
    b.handle_control(
        Time::from_millis(20 * 50),
        ServerMessage::UserLeft {
            channel: ChannelId(1),
            session: SessionToken(1),
        },
    );
    let before = b.stats(t0).remotes[0].stream;
    let mut frame = [0i16; FRAME_SAMPLES];
    let mut tail = Vec::new();
    for k in 50..60u64 {
        b.mix(Time::from_millis(20 * k), &mut frame);
        tail.extend_from_slice(&frame);
        // A straggler datagram after the leave is ignored.
        b.handle_datagram(Time::from_millis(20 * k), &in_flight[0]);
    }
    let energy: f64 = tail[..3 * FRAME_SAMPLES]
        .iter()
        .map(|&s| f64::from(s).powi(2))
        .sum();
    assert!(energy > 1e8, "the buffered end of the sentence is heard");
    assert!(
        // The held packets plus at most one frame of decoded lead, then silence.
        tail[(held as usize + 1) * FRAME_SAMPLES..]
            .iter()
            .all(|&s| s == 0),
        "nothing is concealed after it"
    );
    assert!(
        b.stats(t0).remotes.is_empty(),
        "the remote is forgotten once drained"
    );
    assert_eq!(before.frames_concealed, 0);
    let ev = drain_events(&mut b);
    assert!(ev.contains(&Event::Speaking {
        session: SessionToken(1),
        speaking: false,
        whisper: false
    }));
}

#[test]
fn senders_beyond_max_remotes_are_dropped_and_counted_not_malformed() {
    let t0 = Time::from_millis(0);
    let mut a = connected(1, "alice", t0);
    let extra = 3;
    let key = udp::TagKey::derive(&[9; 32]);
    let before = a.stats(t0).rx_packets;
    for k in 0..(MAX_REMOTES + extra) as u32 {
        let s = 100 + k;
        joins_lobby(&mut a, t0, s, &format!("u{s}"));
        let mut d = [0u8; 64];
        let n = udp::write(
            &Header::voice(SessionToken(s), 0, 0),
            &[0xF8; 20],
            &key,
            &mut d,
        )
        .unwrap();
        a.handle_datagram(t0, &d[..n]);
    }
    let st = a.stats(t0);
    assert_eq!(st.remotes.len(), MAX_REMOTES);
    assert_eq!(st.rx_dropped, extra as u64);
    assert_eq!(st.rx_malformed, 0);
    assert_eq!(st.rx_packets - before, (MAX_REMOTES + extra) as u64);
}

#[test]
fn a_too_small_datagram_buffer_drops_what_does_not_fit_and_does_not_wedge_the_queue() {
    let t0 = Time::from_millis(0);
    let mut a = connected(1, "alice", t0);
    joins_lobby(&mut a, t0, 2, "bob");
    drain_datagrams(&mut a);
    for k in 0..3u64 {
        a.handle_capture(Time::from_millis(20 * k), &tone(k as usize));
    }
    // Three voice datagrams are queued; a 10-byte buffer fits none of them (20-byte header).
    let mut small = [0u8; 10];
    assert_eq!(a.poll_datagram(&mut small), None);
    // Whatever was queued after them still comes out; the queue is not stuck.
    a.handle_capture(Time::from_millis(60), &tone(3));
    let sent = drain_datagrams(&mut a);
    assert_eq!(
        sent.len(),
        1,
        "only the datagram queued after the failed poll is left"
    );
    assert_eq!(udp::parse(&sent[0]).unwrap().header.seq, 3);
}

#[test]
fn two_listeners_fed_the_same_datagrams_mix_and_report_identically() {
    // Six talkers at once; two identical listeners get the same datagrams at the same times.
    // Remotes are kept in session order, so both decode, mix and raise events in one order:
    // bit-identical audio and the same event sequence (a hash map's order differs per instance).
    let t0 = Time::from_millis(0);
    let mut talkers: Vec<Engine> = (1..=6)
        .map(|s| connected(s, &format!("talker{s}"), t0))
        .collect();
    let mut listeners = [connected(20, "ear", t0), connected(20, "ear", t0)];
    for l in listeners.iter_mut() {
        for s in 1..=6 {
            joins_lobby(l, t0, s, &format!("talker{s}"));
        }
        let _ = drain_events(l);
    }
    let mut heard = [Vec::new(), Vec::new()];
    let mut events = [Vec::new(), Vec::new()];
    let mut out = [0i16; FRAME_SAMPLES];
    for k in 0..50u64 {
        let now = Time::from_millis(20 * k);
        for (i, t) in talkers.iter_mut().enumerate() {
            t.handle_capture(now, &tone(k as usize * (i + 1)));
            for d in drain_datagrams(t) {
                if udp::parse(&d).unwrap().header.kind == DatagramKind::Voice {
                    for l in listeners.iter_mut() {
                        l.handle_datagram(now + std::time::Duration::from_millis(5), &d);
                    }
                }
            }
        }
        for (i, l) in listeners.iter_mut().enumerate() {
            l.mix(now, &mut out);
            heard[i].extend_from_slice(&out);
            events[i].extend(drain_events(l));
        }
    }
    assert!(heard[0].iter().any(|&s| s != 0), "the talkers are heard");
    assert_eq!(heard[0], heard[1]);
    let speaking: Vec<&Event> = events[0]
        .iter()
        .filter(|e| matches!(e, Event::Speaking { .. }))
        .collect();
    assert_eq!(speaking.len(), 6, "each talker starts speaking once");
    assert_eq!(events[0], events[1]);
}

fn channel(id: u32, name: &str, users: &[(u32, &str)]) -> ChannelInfo {
    let mut c = lobby(users);
    c.id = ChannelId(id);
    c.name = name.into();
    c
}

#[test]
fn a_join_by_name_waits_for_the_channel_tree_to_show_the_channel() {
    let t0 = Time::from_millis(0);
    let mut e = connected(1, "alice", t0);
    e.apply(Request::JoinNamed("Team".into())).unwrap();
    assert!(e.names_pending());
    assert!(
        drain_control(&mut e).is_empty(),
        "no such channel known yet"
    );
    e.handle_control(
        t0,
        ServerMessage::ChannelList {
            channels: vec![lobby(&[(1, "alice")]), channel(7, "Team", &[])],
        },
    );
    assert_eq!(
        drain_control(&mut e),
        vec![ClientMessage::JoinChannel {
            channel: ChannelId(7)
        }]
    );
    assert!(!e.names_pending());
    // A join by id replaces a join by name that still waits.
    e.apply(Request::JoinNamed("Nowhere".into())).unwrap();
    e.apply(Request::Join(ChannelId(1))).unwrap();
    assert!(!e.names_pending());
}

#[test]
fn a_whisper_by_name_asks_for_the_tree_every_second_until_the_user_appears() {
    let t0 = Time::from_millis(0);
    let mut e = connected(1, "alice", t0);
    let _ = drain_control(&mut e);
    e.apply(Request::WhisperNamed("carol".into())).unwrap();
    assert!(e.names_pending());
    let lists = |e: &mut Engine| {
        drain_control(e)
            .into_iter()
            .filter(|m| *m == ClientMessage::ListChannels)
            .count()
    };
    // Due at once, then once a second.
    assert!(e.poll_timeout().is_some_and(|t| t <= t0));
    let mut asked = 0;
    for ms in (0..=2_500).step_by(100) {
        let now = Time::from_millis(ms);
        if e.poll_timeout().is_some_and(|t| t <= now) {
            e.handle_timeout(now);
        }
        asked += lists(&mut e);
    }
    assert_eq!(asked, 3, "asked at 0, 1 and 2 s");
    assert_eq!(e.whisper(), None);
    e.handle_control(
        Time::from_millis(2_600),
        ServerMessage::ChannelList {
            channels: vec![lobby(&[(1, "alice")]), channel(3, "Far", &[(9, "carol")])],
        },
    );
    assert_eq!(e.whisper(), Some(SessionToken(9)));
    assert!(!e.names_pending());
    for ms in (2_600..=5_000).step_by(100) {
        let now = Time::from_millis(ms);
        if e.poll_timeout().is_some_and(|t| t <= now) {
            e.handle_timeout(now);
        }
        assert_eq!(lists(&mut e), 0, "no more list requests once found");
    }
}

#[test]
fn a_hello_refused_with_an_error_is_reported_as_refused_with_its_code() {
    let mut e = Engine::new(EngineConfig::default()).unwrap();
    let now = Time::from_millis(5);
    e.connect(now);
    let _ = drain_control(&mut e);
    e.handle_control(
        now,
        ServerMessage::Error {
            code: voice_core::proto::tcp::ErrorCode::Full,
            message: "relay is full".into(),
        },
    );
    // The driver sees the relay close the connection.
    e.disconnected(now, DisconnectKind::Closed, "relay closed the connection");
    let events = drain_events(&mut e);
    assert!(
        events.iter().any(|ev| matches!(
            ev,
            Event::Disconnected {
                kind: DisconnectKind::Refused(voice_core::proto::tcp::ErrorCode::Full),
                ..
            }
        )),
        "{events:?}"
    );
    // The next connection that is simply closed is `Closed`: the refusal does not stick.
    e.connect(now);
    let _ = drain_control(&mut e);
    e.disconnected(now, DisconnectKind::Closed, "relay closed the connection");
    assert!(drain_events(&mut e).iter().any(|ev| matches!(
        ev,
        Event::Disconnected {
            kind: DisconnectKind::Closed,
            ..
        }
    )));
}

#[test]
fn per_user_volume_and_mute_follow_the_user_id_when_a_restarted_relay_renumbers_sessions() {
    let t0 = Time::from_millis(0);
    let mut bob = connected(2, "bob", t0);
    joins_lobby(&mut bob, t0, 1, "alice");
    joins_lobby(&mut bob, t0, 4, "dave");
    bob.set_user_volume(SessionToken(1), 0.25);
    bob.set_user_muted(SessionToken(4), true);
    // The relay restarts and numbers sessions again: carol now has alice's old token 1, alice
    // has 3 and calls herself "ally" now (same user id), dave has 5.
    bob.disconnected(t0, DisconnectKind::Closed, "relay closed the connection");
    bob.connect(t0);
    let _ = drain_control(&mut bob);
    bob.handle_control(
        t0,
        ServerMessage::Welcome {
            session: SessionToken(2),
            secret: SECRET,
            name: "bob".into(),
            channels: vec![renamed(lobby(&[(1, "carol"), (3, "alice"), (5, "dave")]))],
            default_channel: ChannelId(1),
            server_time_ms: 0,
        },
    );
    bob.handle_control(
        t0,
        ServerMessage::Joined {
            channel: renamed(lobby(&[
                (1, "carol"),
                (2, "bob"),
                (3, "alice"),
                (5, "dave"),
            ])),
        },
    );
    assert_eq!(bob.user_id(SessionToken(3)), Some("alice"));
    let mut talkers = [
        connected(1, "carol", t0),
        connected(3, "alice", t0),
        connected(5, "dave", t0),
    ];
    let mut out = [0i16; FRAME_SAMPLES];
    for k in 0..10u64 {
        let now = Time::from_millis(20 * k);
        for t in &mut talkers {
            t.handle_capture(now, &tone(k as usize));
            for d in drain_datagrams(t) {
                if udp::parse(&d).unwrap().header.kind == DatagramKind::Voice {
                    bob.handle_datagram(now, &d);
                }
            }
        }
        bob.mix(now, &mut out);
    }
    let stats = bob.stats(Time::from_millis(200));
    let of = |s: u32| {
        let r = stats
            .remotes
            .iter()
            .find(|r| r.session == SessionToken(s))
            .expect("heard");
        (r.name.clone(), r.volume, r.muted)
    };
    assert_eq!(of(1), ("carol".into(), 1.0, false), "not alice's volume");
    assert_eq!(
        of(3),
        ("ally".into(), 0.25, false),
        "alice's volume followed her user id, not her name"
    );
    assert_eq!(of(5), ("dave".into(), 1.0, true), "dave is still muted");
}

#[test]
fn own_mute_and_deafen_reach_the_relay_once_and_others_states_are_shown() {
    let t0 = Time::from_millis(0);
    let mut e = Engine::new(EngineConfig {
        name: "bob".into(),
        ..EngineConfig::default()
    })
    .unwrap();
    // Muted before connecting: said right after the welcome.
    e.set_muted(true);
    e.connect(t0);
    let _ = drain_control(&mut e);
    e.handle_control(
        t0,
        ServerMessage::Welcome {
            session: SessionToken(2),
            secret: SECRET,
            name: "bob".into(),
            channels: vec![lobby(&[(1, "alice")])],
            default_channel: ChannelId(1),
            server_time_ms: 0,
        },
    );
    let muted = VoiceState {
        muted: true,
        deafened: false,
    };
    let sent = drain_control(&mut e);
    assert!(
        sent.contains(&ClientMessage::SetVoiceState { state: muted }),
        "{sent:?}"
    );
    // A change while connected is sent; repeating the state is not.
    e.set_deafened(true);
    e.set_deafened(true);
    let both = VoiceState {
        muted: true,
        deafened: true,
    };
    assert_eq!(
        drain_control(&mut e),
        vec![ClientMessage::SetVoiceState { state: both }]
    );
    assert_eq!(e.voice_state(), both);
    // Someone else's state: an event, and the channel list shows it.
    let _ = drain_events(&mut e);
    let alice_muted = ServerMessage::UserState {
        channel: ChannelId(1),
        session: SessionToken(1),
        state: muted,
    };
    e.handle_control(t0, alice_muted);
    assert_eq!(
        drain_events(&mut e),
        vec![Event::UserState {
            channel: ChannelId(1),
            session: SessionToken(1),
            state: muted
        }]
    );
    assert_eq!(e.channels()[0].users[0].state, muted);
    // Not connected: remembered, sent on the next welcome only.
    e.disconnected(t0, DisconnectKind::Closed, "gone");
    e.set_deafened(false);
    assert!(drain_control(&mut e).is_empty());
}
