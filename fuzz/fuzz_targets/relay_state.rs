//! Fuzz: the relay's state machine under arbitrary interleavings of handshakes, joins, leaves,
//! chats, disconnects, UDP registrations and datagrams: no panic, and routing never sends a
//! datagram back to its sender or outside the rules (channel members, or exactly the whisper target).
//! Kicks and bans (by admins and not) and token expiry end sessions the way the server does
//! (`State::take_removals`, then `control::disconnect`); a non-admin never removes anyone.
//! A mute/deafen is stored as sent and told only to the sender's channel, and only when it
//! changed.
#![no_main]
use std::net::SocketAddr;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use relay::config::Config;
use relay::control::{self, HelloContext, Outbox};
use relay::state::State;
use relay::stats::Stats;
use voice_core::proto::register;
use voice_core::proto::tcp::{ClientMessage, ServerMessage, VoiceState, CONTROL_VERSION};
use voice_core::proto::udp::{self, DatagramKind, Header};
use voice_core::proto::{ChannelId, SessionToken};

#[derive(Debug, Arbitrary)]
enum Op {
    Hello(u8),
    Join(u8, u8),
    Leave(u8),
    Chat(u8, String),
    Disconnect(u8),
    Register {
        who: u8,
        port: u8,
        counter: u8,
        forge: bool,
    },
    Voice {
        who: u8,
        port: u8,
        seq: u16,
        target: u8,
    },
    Raw(Vec<u8>, u8),
    Kick {
        who: u8,
        target: u8,
        admin: bool,
        ban: Option<u32>,
    },
    Expire {
        who: u8,
        exp: u16,
        unix_s: u16,
    },
    VoiceState {
        who: u8,
        muted: bool,
        deafened: bool,
    },
}

fn addr(port: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 10_000 + u16::from(port)))
}

fuzz_target!(|ops: Vec<Op>| {
    let cfg = Config {
        open: true,
        ..Config::default()
    };
    let admission = relay::admission::Admission::load(&cfg).expect("open admission");
    let mut state = State::new(&cfg);
    let mut stats = Stats::new();
    let mut live: Vec<SessionToken> = Vec::new();
    let t0 = voice_core::Time::from_millis(1000);
    let secret = [9u8; 32];
    let mut recipients = Vec::new();
    for (i, op) in ops.into_iter().take(2000).enumerate() {
        let now = t0 + Duration::from_millis(10 * i as u64);
        let pick = |k: u8| live.get(usize::from(k) % live.len().max(1)).copied();
        let mut out = Outbox::new();
        match op {
            Op::Hello(n) => {
                let cx = HelloContext {
                    conn: i,
                    secret,
                    now,
                    unix_ms: 0,
                    max_sessions: 64,
                    admission: &admission,
                };
                let msg = ClientMessage::Hello {
                    version: CONTROL_VERSION,
                    name: format!("u{n}"),
                    token: None,
                };
                if let Ok((s, _)) = control::hello(&mut state, &mut stats, msg, cx) {
                    live.push(s);
                }
            }
            Op::Join(k, ch) => {
                if let Some(s) = pick(k) {
                    let msg = ClientMessage::JoinChannel {
                        channel: ChannelId(u32::from(ch % 5)),
                    };
                    control::handle(&mut state, &mut stats, s, msg, now, 0, &mut out);
                }
            }
            Op::Leave(k) => {
                if let Some(s) = pick(k) {
                    control::handle(
                        &mut state,
                        &mut stats,
                        s,
                        ClientMessage::LeaveChannel,
                        now,
                        0,
                        &mut out,
                    );
                }
            }
            Op::Chat(k, text) => {
                if let Some(s) = pick(k) {
                    control::handle(
                        &mut state,
                        &mut stats,
                        s,
                        ClientMessage::Chat { text },
                        now,
                        0,
                        &mut out,
                    );
                }
            }
            Op::Disconnect(k) => {
                if let Some(s) = pick(k) {
                    control::disconnect(&mut state, s, &mut out);
                    live.retain(|x| *x != s);
                }
            }
            Op::Register {
                who,
                port,
                counter,
                forge,
            } => {
                if let Some(s) = pick(who) {
                    let key = if forge { [1u8; 32] } else { secret };
                    let payload = register::sign(&key, s, u64::from(counter));
                    let _ = state.register(addr(port), s, &payload);
                }
            }
            Op::Voice {
                who,
                port,
                seq,
                target,
            } => {
                if let Some(s) = pick(who) {
                    let target = if target == 0 {
                        SessionToken::NONE
                    } else {
                        SessionToken(u32::from(target))
                    };
                    let header = Header {
                        target,
                        ..Header::voice(s, seq, 0)
                    };
                    let mut buf = [0u8; 64];
                    let n = udp::write(&header, &[1, 2, 3], &udp::TagKey::UNKEYED, &mut buf)
                        .expect("fits");
                    let d = udp::parse(&buf[..n]).expect("valid");
                    recipients.clear();
                    if state.route(addr(port), &d.header, &mut recipients).is_ok() {
                        if target.is_none() {
                            // Every other bound member of the sender's channel, once; never the sender.
                            let ch = state
                                .sessions
                                .get(&s)
                                .and_then(|x| x.channel)
                                .expect("in a channel");
                            let others = state
                                .members(ch)
                                .iter()
                                .filter(|m| **m != s)
                                .filter(|m| state.sessions.get(*m).is_some_and(|x| x.udp.is_some()))
                                .count();
                            assert_eq!(recipients.len(), others);
                        } else {
                            // Exactly the whisper target, never the sender itself.
                            assert_ne!(target, s);
                            let t = state.sessions.get(&target).and_then(|x| x.udp);
                            assert_eq!(recipients.as_slice(), t.as_slice());
                        }
                    }
                }
            }
            Op::Kick {
                who,
                target,
                admin,
                ban,
            } => {
                if let (Some(s), Some(t)) = (pick(who), pick(target)) {
                    if let Some(x) = state.sessions.get_mut(&s) {
                        x.grants.admin = admin;
                    }
                    let msg = match ban {
                        None => ClientMessage::Kick {
                            session: t,
                            reason: "r".into(),
                        },
                        Some(duration_secs) => ClientMessage::Ban {
                            session: t,
                            reason: String::new(),
                            duration_secs,
                        },
                    };
                    control::handle(&mut state, &mut stats, s, msg, now, 0, &mut out);
                    let removed = state.take_removals();
                    if admin {
                        // The target, and for a ban the user's other sessions.
                        assert!(ban.is_some() || removed.len() <= 1);
                        assert!(removed.is_empty() || removed[0] == t);
                    } else {
                        assert!(removed.is_empty(), "a non-admin removed {removed:?}");
                    }
                    for r in removed {
                        control::disconnect(&mut state, r, &mut out);
                        live.retain(|x| *x != r);
                    }
                }
            }
            Op::Expire { who, exp, unix_s } => {
                if let Some(s) = pick(who) {
                    if let Some(x) = state.sessions.get_mut(&s) {
                        x.grants.expires = Some(u64::from(exp));
                    }
                    relay::permissions::expire_tokens(
                        &mut state,
                        &mut stats,
                        u64::from(unix_s) * 1000,
                        &mut out,
                    );
                    for r in state.take_removals() {
                        control::disconnect(&mut state, r, &mut out);
                        live.retain(|x| *x != r);
                    }
                }
            }
            Op::VoiceState {
                who,
                muted,
                deafened,
            } => {
                if let Some(s) = pick(who) {
                    let state_now = VoiceState { muted, deafened };
                    let before = state.sessions.get(&s).map(|x| x.voice);
                    let msg = ClientMessage::SetVoiceState { state: state_now };
                    control::handle(&mut state, &mut stats, s, msg, now, 0, &mut out);
                    let Some(x) = state.sessions.get(&s) else {
                        return;
                    };
                    let told: Vec<_> = out
                        .iter()
                        .filter(|(_, m)| matches!(m, ServerMessage::UserState { .. }))
                        .collect();
                    // Over the control budget the relay answers RateLimited and stores nothing.
                    if x.voice != state_now {
                        assert!(told.is_empty());
                    } else if before == Some(state_now) || x.channel.is_none() {
                        assert!(told.is_empty(), "told {told:?}");
                    } else {
                        let members = state.members(x.channel.unwrap());
                        assert_eq!(told.len(), members.len());
                        for (to, m) in told {
                            assert!(members.contains(to));
                            assert!(
                                matches!(m, ServerMessage::UserState { session, state: st, .. }
                                if *session == s && *st == state_now)
                            );
                        }
                    }
                }
            }
            Op::Raw(bytes, port) => {
                if let Ok(d) = udp::parse(&bytes) {
                    recipients.clear();
                    if d.header.kind == DatagramKind::Voice {
                        let _ = state.route(addr(port), &d.header, &mut recipients);
                    }
                }
            }
        }
        // Membership is consistent: every member's session points back at its channel.
        for (id, _) in state.channels.iter() {
            for m in state.members(*id) {
                assert_eq!(state.sessions.get(m).and_then(|s| s.channel), Some(*id));
            }
        }
    }
});
