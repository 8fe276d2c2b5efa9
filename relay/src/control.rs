//! The control plane as state transitions: a decoded [`ClientMessage`] in, changes to [`State`]
//! and a list of `(recipient, ServerMessage)` out. No sockets and no clock here (the caller passes
//! `now` and the wall-clock milliseconds), so presence ordering, chat scoping, rate limits and
//! error replies are unit-tested below; the server only frames and queues what comes out.
//!
//! Permissions live here too: a channel's allow-list, member cap and one-name-per-user rule at
//! `JoinChannel`, bans at `Hello`, an admin's `Kick`/`Ban`, and the end of sessions whose token
//! expired: the decisions are in [`permissions`]. A transition that ends another session
//! queues its notice and lists the session in [`State::removals`]; the server delivers the
//! notice, then ends the session and closes its connection.

use voice_proto::time::Time;

use voice_proto::register::Secret;
use voice_proto::tcp::{
    validate_chat, validate_name, ClientMessage, ErrorCode, ServerMessage, VoiceState,
    CONTROL_VERSION, MAX_E2EE_IDENTITY, MAX_E2EE_KEY_BLOB,
};
use voice_proto::{ChannelId, SessionToken};

use crate::admission::Admission;
use crate::permissions;
use crate::state::State;
use crate::stats::{Counter, Stats};

/// Messages to deliver: `(recipient session, message)`, in order.
pub type Outbox = Vec<(SessionToken, ServerMessage)>;

/// What the connection should do after a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Keep reading.
    Continue,
    /// Flush what is queued, then close (the session is already removed).
    Close,
}

/// An `Error` reply.
pub fn error(code: ErrorCode, message: impl Into<String>) -> ServerMessage {
    ServerMessage::Error {
        code,
        message: message.into(),
    }
}

/// Inputs of the handshake besides the message.
#[derive(Debug, Clone, Copy)]
pub struct HelloContext<'a> {
    /// The server's connection id.
    pub conn: usize,
    /// Fresh random secret for this session.
    pub secret: Secret,
    /// Monotonic now.
    pub now: Time,
    /// Wall clock in ms since the Unix epoch.
    pub unix_ms: u64,
    /// Session limit.
    pub max_sessions: usize,
    /// Who may open a session.
    pub admission: &'a Admission,
}

/// A fresh random session secret (`None`, logged, when the system's generator fails: the
/// session is refused).
pub fn fresh_secret() -> Option<Secret> {
    let mut secret = [0u8; 32];
    match getrandom::fill(&mut secret) {
        Ok(()) => Some(secret),
        Err(e) => {
            log::error!("getrandom failed: {e}; refusing the session");
            None
        }
    }
}

/// Handles the first message of a connection. `Ok`: the new session and its `Welcome`.
/// `Err`: the error to send before closing.
pub fn hello(
    state: &mut State,
    stats: &mut Stats,
    msg: ClientMessage,
    cx: HelloContext<'_>,
) -> Result<(SessionToken, ServerMessage), ServerMessage> {
    let reject = |stats: &mut Stats, code, text: &str| {
        stats.inc(Counter::HandshakeRejected);
        Err(error(code, text))
    };
    let ClientMessage::Hello {
        version,
        name,
        token,
    } = msg
    else {
        return reject(stats, ErrorCode::Handshake, "expected Hello");
    };
    if version != CONTROL_VERSION {
        return reject(
            stats,
            ErrorCode::Version,
            &format!("control version {version} unsupported; this relay speaks {CONTROL_VERSION}"),
        );
    }
    let (name, grants) = match cx.admission.admit(&name, token.as_ref()) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            stats.inc(refusal.counter);
            return reject(stats, refusal.code, &refusal.message);
        }
    };
    if !validate_name(&name) {
        return reject(stats, ErrorCode::BadName, "invalid name");
    }
    if let Some(left) = state.banned_for(&grants.sub, cx.now) {
        stats.inc(Counter::HelloBanned);
        return reject(
            stats,
            ErrorCode::Banned,
            &format!(
                "you are banned from this relay for {} more seconds",
                left.as_secs().max(1)
            ),
        );
    }
    if state.sessions.len() >= cx.max_sessions {
        return reject(stats, ErrorCode::Full, "relay is full");
    }
    let Some(session) = state.add_session(name.clone(), cx.secret, cx.conn, cx.now) else {
        return reject(stats, ErrorCode::Full, "relay has no session tokens left");
    };
    if let Some(s) = state.sessions.get_mut(&session) {
        s.grants = grants;
    }
    stats.inc(Counter::SessionsTotal);
    let welcome = ServerMessage::Welcome {
        session,
        secret: cx.secret,
        name,
        channels: state.channel_list(),
        default_channel: state.default_channel,
        server_time_ms: cx.unix_ms,
    };
    Ok((session, welcome))
}

/// Removes `who` from its channel, telling the remaining members. Returns the channel left.
fn leave(state: &mut State, who: SessionToken, out: &mut Outbox) -> Option<ChannelId> {
    let ch = state.remove_member(who)?;
    for &m in state.members(ch) {
        out.push((
            m,
            ServerMessage::UserLeft {
                channel: ch,
                session: who,
            },
        ));
    }
    Some(ch)
}

/// Ends a session for any reason (goodbye, EOF, reset, timeout, overflow): `UserLeft` to the
/// remaining members, then the session and its UDP binding are gone.
pub fn disconnect(state: &mut State, who: SessionToken, out: &mut Outbox) {
    leave(state, who, out);
    state.remove_session(who);
}

/// [`handle`] where the reply may show counters kept elsewhere: with `merged` (the control
/// plane's counters plus the datagram path's, e.g. for a `StatsRequest`) the transition reads and
/// counts into that, and what it counted is added back to `stats`.
#[allow(clippy::too_many_arguments)]
pub fn handle_with_stats(
    state: &mut State,
    stats: &mut Stats,
    merged: Option<Stats>,
    who: SessionToken,
    msg: ClientMessage,
    now: Time,
    unix_ms: u64,
    out: &mut Outbox,
) -> After {
    let Some(mut merged) = merged else {
        return handle(state, stats, who, msg, now, unix_ms, out);
    };
    let before = merged.clone();
    let after = handle(state, &mut merged, who, msg, now, unix_ms, out);
    for &c in Counter::ALL {
        stats.add(c, merged.get(c).wrapping_sub(before.get(c)));
    }
    after
}

/// Handles one message from an established session.
pub fn handle(
    state: &mut State,
    stats: &mut Stats,
    who: SessionToken,
    msg: ClientMessage,
    now: Time,
    unix_ms: u64,
    out: &mut Outbox,
) -> After {
    let Some(session) = state.sessions.get_mut(&who) else {
        return After::Close;
    };
    if msg == ClientMessage::Goodbye {
        disconnect(state, who, out);
        return After::Close;
    }
    let chat_over = matches!(msg, ClientMessage::Chat { .. }) && !session.chat.check(now, 1.0);
    if chat_over || !session.control.take(now, 1.0) {
        stats.inc(Counter::TcpRateLimited);
        out.push((who, error(ErrorCode::RateLimited, "too many requests")));
        return After::Continue;
    }
    match msg {
        ClientMessage::Hello { .. } => {
            out.push((who, error(ErrorCode::Handshake, "already said Hello")));
        }
        ClientMessage::JoinChannel { channel } => join(state, stats, who, channel, out),
        ClientMessage::LeaveChannel => match leave(state, who, out) {
            Some(channel) => out.push((who, ServerMessage::Left { channel })),
            None => out.push((who, error(ErrorCode::NotInChannel, "not in a channel"))),
        },
        ClientMessage::Chat { text } => chat(state, stats, who, text, unix_ms, out),
        ClientMessage::Ping { client_time_us } => out.push((
            who,
            ServerMessage::Pong {
                client_time_us,
                server_time_ms: unix_ms,
            },
        )),
        ClientMessage::ListChannels => out.push((
            who,
            ServerMessage::ChannelList {
                channels: state.channel_list(),
            },
        )),
        ClientMessage::StatsRequest => out.push((
            who,
            ServerMessage::Stats {
                counters: stats.snapshot(),
            },
        )),
        ClientMessage::ReceiverReport {
            sender,
            loss_permille,
            jitter_ms,
        } => {
            if state.sessions.contains_key(&sender) {
                out.push((
                    sender,
                    ServerMessage::ReceiverReport {
                        from: who,
                        loss_permille,
                        jitter_ms,
                    },
                ));
            } else {
                out.push((who, error(ErrorCode::NoSuchSession, "no such session")));
            }
        }
        ClientMessage::Goodbye => {}
        // Voice, not control: the server carries tunneled datagrams (`server/tunnel.rs`)
        // without this rate limit (the voice budgets apply instead; only a change of path
        // is charged to the control budget there).
        ClientMessage::Tunnel { .. } => {}
        ClientMessage::E2eeIdentity { blob } => e2ee_identity(state, who, blob, out),
        ClientMessage::E2eeKeys { keys } => e2ee_keys(state, who, keys, out),
        ClientMessage::Kick { session, reason } => {
            permissions::remove(state, stats, who, session, reason, None, now, out)
        }
        ClientMessage::Ban {
            session,
            reason,
            duration_secs,
        } => permissions::remove(
            state,
            stats,
            who,
            session,
            reason,
            Some(duration_secs),
            now,
            out,
        ),
        ClientMessage::SetVoiceState { state: voice } => set_voice_state(state, who, voice, out),
    }
    After::Continue
}

/// Stores a client's mute / deafen state and tells its channel (the client included); a
/// repeat of the current state changes nothing and says nothing.
fn set_voice_state(state: &mut State, who: SessionToken, voice: VoiceState, out: &mut Outbox) {
    let Some(s) = state.sessions.get_mut(&who) else {
        return;
    };
    if s.voice == voice {
        return;
    }
    s.voice = voice;
    let channel = s.channel;
    // A cluster republishes member lists when the version moves.
    state.bump_version();
    if let Some(channel) = channel {
        for &m in state.members(channel) {
            out.push((
                m,
                ServerMessage::UserState {
                    channel,
                    session: who,
                    state: voice,
                },
            ));
        }
    }
}

/// Stores a client's end-to-end identity blob and shows it to its channel. The relay never looks
/// inside: it only bounds the size.
fn e2ee_identity(state: &mut State, who: SessionToken, blob: Vec<u8>, out: &mut Outbox) {
    if blob.is_empty() || blob.len() > MAX_E2EE_IDENTITY {
        out.push((
            who,
            error(ErrorCode::BadE2eeBlob, "identity blob of bad size"),
        ));
        return;
    }
    let Some(s) = state.sessions.get_mut(&who) else {
        return;
    };
    s.e2ee_identity = Some(blob.clone());
    if let Some(channel) = s.channel {
        for &m in state.members(channel) {
            if m != who {
                out.push((
                    m,
                    ServerMessage::E2eeIdentity {
                        session: who,
                        blob: blob.clone(),
                    },
                ));
            }
        }
    }
}

/// Delivers wrapped sender keys, each to its recipient, only inside the sender's channel.
fn e2ee_keys(
    state: &mut State,
    who: SessionToken,
    keys: Vec<(SessionToken, Vec<u8>)>,
    out: &mut Outbox,
) {
    let channel = state.sessions.get(&who).and_then(|s| s.channel);
    let mut refused = 0usize;
    for (to, blob) in keys {
        let same_channel = channel.is_some()
            && to != who
            && state.sessions.get(&to).and_then(|s| s.channel) == channel;
        if !same_channel || blob.is_empty() || blob.len() > MAX_E2EE_KEY_BLOB {
            refused += 1;
            continue;
        }
        out.push((to, ServerMessage::E2eeKey { from: who, blob }));
    }
    if refused > 0 {
        out.push((
            who,
            error(
                ErrorCode::BadE2eeBlob,
                format!(
                    "{refused} wrapped key(s) refused: bad size or recipient not in your channel"
                ),
            ),
        ));
    }
}

/// Shows a joiner's identity to the channel and every member's identity to the joiner.
fn e2ee_on_join(state: &State, who: SessionToken, channel: ChannelId, out: &mut Outbox) {
    let mine = state
        .sessions
        .get(&who)
        .and_then(|s| s.e2ee_identity.clone());
    for &m in state.members(channel) {
        if m == who {
            continue;
        }
        if let Some(blob) = &mine {
            out.push((
                m,
                ServerMessage::E2eeIdentity {
                    session: who,
                    blob: blob.clone(),
                },
            ));
        }
        if let Some(blob) = state.sessions.get(&m).and_then(|s| s.e2ee_identity.clone()) {
            out.push((who, ServerMessage::E2eeIdentity { session: m, blob }));
        }
    }
}

fn join(
    state: &mut State,
    stats: &mut Stats,
    who: SessionToken,
    channel: ChannelId,
    out: &mut Outbox,
) {
    if !state.channels.contains_key(&channel) {
        out.push((who, error(ErrorCode::NoSuchChannel, "no such channel")));
        return;
    }
    if !state
        .sessions
        .get(&who)
        .is_some_and(|s| s.grants.may_join(channel))
    {
        stats.inc(Counter::Forbidden);
        out.push((
            who,
            error(
                ErrorCode::Forbidden,
                format!("your access token does not allow channel {}", channel.0),
            ),
        ));
        return;
    }
    let current = state.sessions.get(&who).and_then(|s| s.channel);
    if current != Some(channel) {
        if let Some(refusal) = permissions::refuse_join(state, who, channel) {
            stats.inc(refusal.0);
            out.push((who, error(refusal.1, refusal.2)));
            return;
        }
        leave(state, who, out);
        state.add_member(who, channel);
        let user = state.sessions[&who].info();
        for &m in state.members(channel) {
            if m != who {
                out.push((
                    m,
                    ServerMessage::UserJoined {
                        channel,
                        user: user.clone(),
                    },
                ));
            }
        }
    }
    if let Some(info) = state.channel_info(channel) {
        out.push((who, ServerMessage::Joined { channel: info }));
        if let Some(spatial) = state.channel_spatial(channel) {
            out.push((who, ServerMessage::ChannelSpatial { channel, spatial }));
        }
        if current != Some(channel) {
            e2ee_on_join(state, who, channel, out);
        }
    }
}

fn chat(
    state: &mut State,
    stats: &mut Stats,
    who: SessionToken,
    text: String,
    unix_ms: u64,
    out: &mut Outbox,
) {
    let Some(s) = state.sessions.get_mut(&who) else {
        return;
    };
    let Some(channel) = s.channel else {
        out.push((
            who,
            error(ErrorCode::NotInChannel, "join a channel to chat"),
        ));
        return;
    };
    if !validate_chat(&text) {
        out.push((
            who,
            error(ErrorCode::BadChat, "chat must be 1..=2000 bytes"),
        ));
        return;
    }
    s.chat.consume(1.0);
    stats.inc(Counter::ChatMessages);
    let from_name = s.name.clone();
    for &m in state.members(channel) {
        out.push((
            m,
            ServerMessage::Chat {
                channel,
                from: who,
                from_name: from_name.clone(),
                text: text.clone(),
                server_time_ms: unix_ms,
            },
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::permissions::expire_tokens;
    use voice_proto::tcp::{Removal, UserInfo, MAX_REASON_LEN};

    struct Fixture {
        st: State,
        stats: Stats,
        now: Time,
        adm: Admission,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture {
                st: State::new(&Config::default()),
                stats: Stats::new(),
                now: Time::from_millis(1000),
                adm: Admission::load(&Config {
                    open: true,
                    ..Config::default()
                })
                .unwrap(),
            }
        }
        fn connect(&mut self, name: &str) -> SessionToken {
            let cx = HelloContext {
                conn: 0,
                secret: [1; 32],
                now: self.now,
                unix_ms: 1,
                max_sessions: 3,
                admission: &self.adm,
            };
            let msg = ClientMessage::Hello {
                version: CONTROL_VERSION,
                name: name.into(),
                token: None,
            };
            hello(&mut self.st, &mut self.stats, msg, cx).unwrap().0
        }
        fn send(&mut self, who: SessionToken, msg: ClientMessage) -> Outbox {
            let mut out = Vec::new();
            handle(
                &mut self.st,
                &mut self.stats,
                who,
                msg,
                self.now,
                7,
                &mut out,
            );
            out
        }
    }

    fn join(c: u32) -> ClientMessage {
        ClientMessage::JoinChannel {
            channel: ChannelId(c),
        }
    }

    #[test]
    fn welcome_lists_a_full_relay_with_the_longest_names() {
        // The default relay full of users with 64-byte names: the listing is larger than any
        // client frame but must still reach the client in one piece.
        use voice_proto::tcp::{encode_frame, FrameReader, MAX_CLIENT_FRAME, MAX_NAME_LEN};
        let cfg = Config::default();
        let mut f = Fixture::new();
        let hello_as = |f: &mut Fixture, k: usize| {
            let cx = HelloContext {
                conn: k,
                secret: [1; 32],
                now: f.now,
                unix_ms: 1,
                max_sessions: cfg.max_sessions,
                admission: &f.adm,
            };
            let name = format!("{k:0>width$}", width = MAX_NAME_LEN);
            let msg = ClientMessage::Hello {
                version: CONTROL_VERSION,
                name,
                token: None,
            };
            hello(&mut f.st, &mut f.stats, msg, cx).unwrap()
        };
        for k in 0..cfg.max_sessions - 1 {
            let (s, _) = hello_as(&mut f, k);
            f.send(s, join(1 + (k % 3) as u32));
        }
        let (_, welcome) = hello_as(&mut f, cfg.max_sessions);
        let mut wire = Vec::new();
        encode_frame(&welcome, &mut wire).unwrap();
        assert!(wire.len() > MAX_CLIENT_FRAME);
        assert!(wire.len() <= cfg.max_outgoing_bytes);
        let mut reader = FrameReader::<ServerMessage>::new();
        reader.push(&wire).unwrap();
        let Some(ServerMessage::Welcome { channels, .. }) = reader.next_message().unwrap() else {
            panic!("no Welcome");
        };
        let listed: usize = channels.iter().map(|c| c.users.len()).sum();
        assert_eq!(listed, cfg.max_sessions - 1);
    }

    #[test]
    fn handshake_rejections() {
        let mut f = Fixture::new();
        let cx = HelloContext {
            conn: 0,
            secret: [0; 32],
            now: f.now,
            unix_ms: 0,
            max_sessions: 1,
            admission: &f.adm,
        };
        let code = |r: Result<(SessionToken, ServerMessage), ServerMessage>| match r {
            Err(ServerMessage::Error { code, .. }) => code,
            other => panic!("{other:?}"),
        };
        let bad_version = ClientMessage::Hello {
            version: 99,
            name: "a".into(),
            token: None,
        };
        assert_eq!(
            code(hello(&mut f.st, &mut f.stats, bad_version, cx)),
            ErrorCode::Version
        );
        let bad_name = ClientMessage::Hello {
            version: CONTROL_VERSION,
            name: " ".into(),
            token: None,
        };
        assert_eq!(
            code(hello(&mut f.st, &mut f.stats, bad_name, cx)),
            ErrorCode::BadName
        );
        assert_eq!(
            code(hello(
                &mut f.st,
                &mut f.stats,
                ClientMessage::ListChannels,
                cx
            )),
            ErrorCode::Handshake
        );
        let ok = ClientMessage::Hello {
            version: CONTROL_VERSION,
            name: "a".into(),
            token: None,
        };
        let (t, _) = hello(&mut f.st, &mut f.stats, ok.clone(), cx).unwrap();
        assert_eq!(t, SessionToken(1));
        assert_eq!(
            code(hello(&mut f.st, &mut f.stats, ok, cx)),
            ErrorCode::Full
        );
        assert_eq!(f.stats.get(Counter::HandshakeRejected), 4);
    }

    #[test]
    fn hello_answers_full_when_session_tokens_run_out() {
        let mut f = Fixture::new();
        f.st.set_next_token(u32::MAX);
        let last = f.connect("last");
        assert_eq!(last, SessionToken(u32::MAX));
        let cx = HelloContext {
            conn: 1,
            secret: [2; 32],
            now: f.now,
            unix_ms: 1,
            max_sessions: 1000,
            admission: &f.adm,
        };
        let hello_msg = ClientMessage::Hello {
            version: CONTROL_VERSION,
            name: "one too many".into(),
            token: None,
        };
        match hello(&mut f.st, &mut f.stats, hello_msg, cx) {
            Err(ServerMessage::Error {
                code: ErrorCode::Full,
                ..
            }) => {}
            other => panic!("expected Error{{Full}}, got {other:?}"),
        }
        assert_eq!(f.stats.get(Counter::HandshakeRejected), 1);
        assert_eq!(f.stats.get(Counter::SessionsTotal), 1);
        // The session that got the last token keeps working.
        assert_eq!(f.send(last, join(1)).len(), 1);
    }

    #[test]
    fn voice_state_is_stored_shown_and_told_to_the_channel_once() {
        let mut f = Fixture::new();
        let (a, b, c) = (f.connect("a"), f.connect("b"), f.connect("c"));
        f.send(a, join(1));
        f.send(b, join(1));
        f.send(c, join(2));
        let muted = VoiceState {
            muted: true,
            deafened: false,
        };
        let set = |state| ClientMessage::SetVoiceState { state };
        let told = |state| ServerMessage::UserState {
            channel: ChannelId(1),
            session: a,
            state,
        };
        let version = f.st.version();
        // The whole channel hears it, the sender included; the other channel does not.
        assert_eq!(
            f.send(a, set(muted)),
            vec![(a, told(muted)), (b, told(muted))]
        );
        assert!(f.st.version() > version);
        // Saying it again changes nothing.
        assert_eq!(f.send(a, set(muted)), vec![]);
        // Listings and the next joiner see it, with the stable id.
        let shown = |f: &Fixture| f.st.channel_info(ChannelId(1)).unwrap().users[0].clone();
        assert_eq!((shown(&f).user_id.as_str(), shown(&f).state), ("a", muted));
        let out = f.send(c, join(1));
        assert!(out.iter().any(|(to, m)| *to == c
            && matches!(m, ServerMessage::Joined { channel } if channel.users[0].state == muted)));
        // Outside a channel the state is kept and nobody is told.
        f.send(a, ClientMessage::LeaveChannel);
        let both = VoiceState {
            muted: true,
            deafened: true,
        };
        assert_eq!(f.send(a, set(both)), vec![]);
        let out = f.send(a, join(2));
        assert!(out.iter().any(|(_, m)| matches!(m,
            ServerMessage::Joined { channel } if channel.users.iter().any(|u| u.session == a && u.state == both))));
    }

    #[test]
    fn presence_goes_to_exactly_the_right_members_in_order() {
        let mut f = Fixture::new();
        let (a, b, c) = (f.connect("a"), f.connect("b"), f.connect("c"));
        f.send(a, join(1));
        let out = f.send(b, join(1));
        let ua = UserInfo {
            session: a,
            name: "a".into(),
            user_id: "a".into(),
            state: VoiceState::default(),
        };
        let ub = UserInfo {
            session: b,
            name: "b".into(),
            user_id: "b".into(),
            state: VoiceState::default(),
        };
        assert_eq!(
            out,
            vec![
                (
                    a,
                    ServerMessage::UserJoined {
                        channel: ChannelId(1),
                        user: ub.clone()
                    }
                ),
                (
                    b,
                    ServerMessage::Joined {
                        channel: f.st.channel_info(ChannelId(1)).unwrap()
                    }
                ),
            ]
        );
        f.send(c, join(2));
        // b switches 1 -> 2: UserLeft to a, UserJoined to c, Joined to b.
        let out = f.send(b, join(2));
        assert_eq!(
            out[0],
            (
                a,
                ServerMessage::UserLeft {
                    channel: ChannelId(1),
                    session: b
                }
            )
        );
        assert_eq!(
            out[1],
            (
                c,
                ServerMessage::UserJoined {
                    channel: ChannelId(2),
                    user: ub
                }
            )
        );
        assert!(
            matches!(&out[2], (t, ServerMessage::Joined { channel }) if *t == b && channel.users.len() == 2)
        );
        // Re-joining the same channel only re-sends Joined.
        let out = f.send(b, join(2));
        assert_eq!(out.len(), 1);
        // Leave.
        let out = f.send(c, ClientMessage::LeaveChannel);
        assert_eq!(
            out,
            vec![
                (
                    b,
                    ServerMessage::UserLeft {
                        channel: ChannelId(2),
                        session: c
                    }
                ),
                (
                    c,
                    ServerMessage::Left {
                        channel: ChannelId(2)
                    }
                ),
            ]
        );
        // Goodbye from a lone member tells nobody and removes the session.
        let _ = ua;
        let out = f.send(a, ClientMessage::Goodbye);
        assert!(out.is_empty());
        assert!(!f.st.sessions.contains_key(&a));
        assert!(f.st.members(ChannelId(1)).is_empty());
    }

    #[test]
    fn chat_reaches_the_channel_including_the_sender() {
        let mut f = Fixture::new();
        let (a, b, c) = (f.connect("a"), f.connect("b"), f.connect("c"));
        let out = f.send(a, ClientMessage::Chat { text: "x".into() });
        assert!(matches!(
            &out[..],
            [(
                _,
                ServerMessage::Error {
                    code: ErrorCode::NotInChannel,
                    ..
                }
            )]
        ));
        f.send(a, join(1));
        f.send(b, join(1));
        f.send(c, join(2));
        let out = f.send(a, ClientMessage::Chat { text: "hi".into() });
        let to: Vec<_> = out.iter().map(|(t, _)| *t).collect();
        assert_eq!(to, vec![a, b]);
        let out = f.send(
            a,
            ClientMessage::Chat {
                text: String::new(),
            },
        );
        assert!(matches!(
            &out[..],
            [(
                _,
                ServerMessage::Error {
                    code: ErrorCode::BadChat,
                    ..
                }
            )]
        ));
    }

    #[test]
    fn chat_is_rate_limited() {
        let mut f = Fixture::new();
        let a = f.connect("a");
        f.send(a, join(1));
        let burst = f.st.limits.chat.burst as usize;
        let limited = (0..burst + 5)
            .filter(|_| {
                let out = f.send(a, ClientMessage::Chat { text: "x".into() });
                matches!(
                    &out[..],
                    [(
                        _,
                        ServerMessage::Error {
                            code: ErrorCode::RateLimited,
                            ..
                        }
                    )]
                )
            })
            .count();
        assert_eq!(limited, 5);
        assert_eq!(f.stats.get(Counter::TcpRateLimited), 5);
    }

    #[test]
    fn receiver_reports_and_errors() {
        let mut f = Fixture::new();
        let (a, b) = (f.connect("a"), f.connect("b"));
        let rr = |s| ClientMessage::ReceiverReport {
            sender: s,
            loss_permille: 3,
            jitter_ms: 4,
        };
        assert_eq!(
            f.send(a, rr(b)),
            vec![(
                b,
                ServerMessage::ReceiverReport {
                    from: a,
                    loss_permille: 3,
                    jitter_ms: 4
                }
            )]
        );
        assert!(matches!(
            &f.send(a, rr(SessionToken(77)))[..],
            [(
                _,
                ServerMessage::Error {
                    code: ErrorCode::NoSuchSession,
                    ..
                }
            )]
        ));
        assert!(matches!(
            &f.send(a, join(42))[..],
            [(
                _,
                ServerMessage::Error {
                    code: ErrorCode::NoSuchChannel,
                    ..
                }
            )]
        ));
        assert!(matches!(
            &f.send(a, ClientMessage::Ping { client_time_us: 5 })[..],
            [(
                _,
                ServerMessage::Pong {
                    client_time_us: 5,
                    ..
                }
            )]
        ));
    }

    #[test]
    fn a_token_expires_at_exp_plus_the_leeway_on_the_callers_clock() {
        let mut f = Fixture::new();
        let (a, b) = (f.connect("a"), f.connect("b"));
        f.send(a, join(1));
        f.send(b, join(1));
        f.st.sessions.get_mut(&a).unwrap().grants.expires = Some(1_000);
        let edge = (1_000 + crate::token::LEEWAY_SECS) * 1000;
        let mut out = Vec::new();
        expire_tokens(&mut f.st, &mut f.stats, edge, &mut out);
        assert!(out.is_empty() && f.st.removals.is_empty());
        expire_tokens(&mut f.st, &mut f.stats, edge + 1, &mut out);
        assert!(matches!(
            &out[..],
            [(t, ServerMessage::Removed { removal: Removal::TokenExpired, .. })] if *t == a
        ));
        assert_eq!(f.st.take_removals(), vec![a]);
        // Told once, even if the server has not ended it yet when the tick comes again.
        f.st.removals.push(a);
        out.clear();
        expire_tokens(&mut f.st, &mut f.stats, edge + 2, &mut out);
        assert!(out.is_empty());
        assert_eq!(f.stats.get(Counter::TokenExpiredClosed), 1);
    }

    #[test]
    fn a_ban_lasts_its_length_on_the_callers_clock_and_is_capped() {
        let mut f = Fixture::new();
        let (admin, t) = (f.connect("admin"), f.connect("t"));
        f.st.sessions.get_mut(&admin).unwrap().grants.admin = true;
        let max = f.st.ban_policy.max_secs;
        let out = f.send(
            admin,
            ClientMessage::Ban {
                session: t,
                reason: "x".repeat(MAX_REASON_LEN + 50),
                duration_secs: u32::MAX,
            },
        );
        match &out[..] {
            [(
                to,
                ServerMessage::Removed {
                    ban_secs, reason, ..
                },
            ), (back, ServerMessage::UserRemoved { .. })] => {
                assert_eq!((*to, *back, *ban_secs), (t, admin, max));
                assert_eq!(reason.len(), MAX_REASON_LEN);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(f.st.take_removals(), vec![t]);
        let secs = std::time::Duration::from_secs(u64::from(max));
        assert!(f.st.banned_for("t", f.now + secs / 2).is_some());
        assert!(f.st.banned_for("other", f.now).is_none());
        assert!(f.st.banned_for("t", f.now + secs).is_none());
        assert!(f.st.bans.is_empty(), "an ended ban is forgotten");
        assert_eq!(f.st.ban_policy.length(0), f.st.ban_policy.default_secs);
    }

    #[test]
    fn disconnect_tells_remaining_members() {
        let mut f = Fixture::new();
        let (a, b) = (f.connect("a"), f.connect("b"));
        f.send(a, join(3));
        f.send(b, join(3));
        let mut out = Vec::new();
        disconnect(&mut f.st, a, &mut out);
        assert_eq!(
            out,
            vec![(
                b,
                ServerMessage::UserLeft {
                    channel: ChannelId(3),
                    session: a
                }
            )]
        );
        assert_eq!(f.st.members(ChannelId(3)), &[b]);
    }
}
