//! Sessions and channels, and the routing decision for every UDP datagram.
//!
//! # Layout
//! One single-threaded loop owns all of this as plain maps: `sessions: HashMap<SessionToken,
//! Session>` (with a multiplicative hasher — tokens are allocated by the relay, never chosen by a
//! peer, so SipHash's flood resistance buys nothing) and `channels: BTreeMap<ChannelId, Channel>`
//! where a channel keeps its members in join order in a `Vec`. The seed sketched a
//! `DashMap<ChannelId, Vec<SessionToken>>`; with one loop there is no other thread to share with,
//! so every shard lock it takes per datagram (sender lookup, channel lookup, N−1 recipient lookups)
//! is pure overhead. Measured with `relay_load` on the 2-core VM: the naive reference forwarder
//! (blocking, `Mutex<HashMap>` lookups per packet and per recipient, one `send_to` each)
//! sustained 80 k delivered datagrams/s, the relay with these plain maps 160 k/s, the same as the
//! minimal forwarder with a fixed `Vec` table (120–160 k/s across runs, the machine's ceiling).
//! Map lookups are not the bottleneck at all (tens of ns against ~5 µs of kernel work per
//! delivered datagram), so nothing justifies a concurrent map; a DashMap itself was not
//! benchmarked. Scaling past one core does not share these maps either: the control plane
//! (the one thread that owns this `State`) publishes an immutable
//! [`Snapshot`](crate::forward::Snapshot) after each change, and each `SO_REUSEPORT` worker
//! reads it and keeps its own per-sender state (see [`forward`](crate::forward)).
//!
//! # Decisions as plain functions
//! [`State::route`] answers "who receives this voice datagram?" from `&State` alone (the
//! reference the snapshot's routing is tested against, and what the fuzz target drives), and
//! [`SenderState::admit`](crate::forward::SenderState::admit) applies the per-sender sequence
//! window and budgets. Neither touches a socket, so both are unit-tested; the server loop only
//! moves bytes.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use voice_proto::time::Time;

use voice_proto::attenuation::Attenuation;
use voice_proto::register::{self, RegisterError, Secret};
use voice_proto::tcp::{ChannelInfo, SpatialInfo, UserInfo, VoiceState};
use voice_proto::udp::{Header, TagKey};
use voice_proto::{ChannelId, SessionToken};

use crate::admission::Grants;
use crate::budget::{Limit, TokenBucket};
use crate::config::Config;
use crate::forward::PositionCell;
use crate::stats::{Counter, Stats};

/// A fast hasher for relay-allocated integer keys (Fibonacci multiplicative hashing).
#[derive(Debug, Default, Clone, Copy)]
pub struct TokenHasher(u64);

impl Hasher for TokenHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Map keyed by session token.
pub type TokenMap<V> = HashMap<SessionToken, V, BuildHasherDefault<TokenHasher>>;

/// Why a datagram was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    /// Sender token is not a live session.
    #[error("unknown session")]
    UnknownSession,
    /// Source address is not the one bound to the sender.
    #[error("source not bound to sender")]
    UnboundSource,
    /// Sequence number seen before.
    #[error("duplicate sequence number")]
    Duplicate,
    /// Sequence number too far behind.
    #[error("sequence number too old")]
    TooOld,
    /// Over the packets/s budget.
    #[error("packet budget exceeded")]
    PacketBudget,
    /// Over the bytes/s budget.
    #[error("byte budget exceeded")]
    ByteBudget,
    /// Channel voice from a sender in no channel.
    #[error("sender not in a channel")]
    NotInChannel,
    /// Whisper target missing or unbound.
    #[error("whisper target missing")]
    WhisperNoTarget,
    /// Whisper to oneself.
    #[error("whisper to self")]
    WhisperSelf,
    /// Whisper outside the sender's token scope (`whisper`: none, or channel and the target is
    /// elsewhere).
    #[error("whisper outside the token's scope")]
    WhisperForbidden,
    /// The authentication tag does not verify with the sender session's key.
    #[error("bad authentication tag")]
    BadTag,
}

impl DropReason {
    /// The counter this drop increments.
    pub fn counter(self) -> Counter {
        match self {
            DropReason::UnknownSession => Counter::DropUnknownSession,
            DropReason::UnboundSource => Counter::DropUnboundSource,
            DropReason::Duplicate => Counter::DropDuplicate,
            DropReason::TooOld => Counter::DropTooOld,
            DropReason::PacketBudget => Counter::DropPacketBudget,
            DropReason::ByteBudget => Counter::DropByteBudget,
            DropReason::NotInChannel => Counter::DropNotInChannel,
            DropReason::WhisperNoTarget => Counter::DropWhisperNoTarget,
            DropReason::WhisperSelf => Counter::DropWhisperSelf,
            DropReason::WhisperForbidden => Counter::DropWhisperForbidden,
            DropReason::BadTag => Counter::DropBadTag,
        }
    }
}

/// Why a UDP registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterFailure {
    /// No such session.
    #[error("unknown session")]
    UnknownSession,
    /// The proof did not verify.
    #[error(transparent)]
    Proof(#[from] RegisterError),
}

impl RegisterFailure {
    /// The counter this failure increments.
    pub fn counter(&self) -> Counter {
        match self {
            RegisterFailure::UnknownSession => Counter::RegisterUnknownSession,
            RegisterFailure::Proof(RegisterError::Replayed { .. }) => Counter::RegisterReplay,
            RegisterFailure::Proof(_) => Counter::RegisterBadProof,
        }
    }
}

/// Per-session limits, copied from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Voice packets/s.
    pub voice_packets: Limit,
    /// Voice bytes/s.
    pub voice_bytes: Limit,
    /// Control messages/s.
    pub control: Limit,
    /// Chat lines/s.
    pub chat: Limit,
}

/// One connected user.
#[derive(Debug)]
pub struct Session {
    /// Its token.
    pub token: SessionToken,
    /// Display name.
    pub name: String,
    /// UDP registration secret.
    pub secret: Secret,
    /// Key of the tags on this session's datagrams (derived from `secret`).
    pub tag_key: TagKey,
    /// The server's connection id for the TCP stream.
    pub conn: usize,
    /// Bound UDP address, once registered.
    pub udp: Option<SocketAddr>,
    /// Its voice travels through the control connection (the client said so with
    /// `ClientMessage::Tunnel`): forwarded voice goes there instead of to `udp`.
    pub tunnel: bool,
    /// Current channel.
    pub channel: Option<ChannelId>,
    /// Last position from an accepted Voice or Ping datagram, written by whichever forwarding
    /// worker receives it (shared through the [`Snapshot`](crate::forward::Snapshot)). A new,
    /// empty cell on joining or leaving a channel, so a position is forgotten on leaving.
    pub position: Arc<PositionCell>,
    register_counter: u64,
    /// Budget for control messages.
    pub control: TokenBucket,
    /// Budget for chat lines.
    pub chat: TokenBucket,
    /// The end-to-end identity blob this client announced (opaque to the relay).
    pub e2ee_identity: Option<Vec<u8>>,
    /// What the session's token allows (set by the handshake; open rights until then).
    pub grants: Grants,
    /// Muted / deafened as the client last said (`ClientMessage::SetVoiceState`).
    pub voice: VoiceState,
}

impl Session {
    /// The user as others see it.
    pub fn info(&self) -> UserInfo {
        UserInfo {
            session: self.token,
            name: self.name.clone(),
            user_id: self.grants.sub.clone(),
            state: self.voice,
        }
    }
}

/// A channel and its members in join order.
#[derive(Debug, Clone)]
pub struct Channel {
    /// Id.
    pub id: ChannelId,
    /// Display name.
    pub name: String,
    /// Members in join order.
    pub members: Vec<SessionToken>,
    /// 3D settings; `None` for a 2D channel.
    pub spatial: Option<Attenuation>,
    /// Member cap (`None`: no cap).
    pub max_members: Option<usize>,
    /// Token subjects that may join (`None`: everyone).
    pub allow: Option<Vec<String>>,
}

impl Channel {
    /// True when `sub` may join (the channel has no allow-list, or lists `sub`).
    pub fn allows(&self, sub: &str) -> bool {
        self.allow
            .as_ref()
            .is_none_or(|list| list.iter().any(|a| a == sub))
    }

    /// True when the channel is at its member cap.
    pub fn is_full(&self) -> bool {
        self.max_members.is_some_and(|m| self.members.len() >= m)
    }
}

/// Two display names that users could not tell apart in one channel: equal after trimming and
/// lower-casing.
pub fn same_name(a: &str, b: &str) -> bool {
    a.trim().to_lowercase() == b.trim().to_lowercase()
}

/// Ban lengths from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct BanPolicy {
    /// Length of a ban that asks for 0 seconds.
    pub default_secs: u32,
    /// Longest ban.
    pub max_secs: u32,
}

impl BanPolicy {
    /// The length a `Ban` asking for `requested` seconds gets.
    pub fn length(&self, requested: u32) -> u32 {
        match requested {
            0 => self.default_secs,
            n => n.min(self.max_secs),
        }
    }
}

/// All sessions and channels.
#[derive(Debug)]
pub struct State {
    /// Live sessions.
    pub sessions: TokenMap<Session>,
    /// Configured channels.
    pub channels: BTreeMap<ChannelId, Channel>,
    /// Channel announced in `Welcome`.
    pub default_channel: ChannelId,
    /// Per-session limits.
    pub limits: Limits,
    /// Ban lengths.
    pub ban_policy: BanPolicy,
    /// Banned users (token subject; in open mode the name) and when each ban ends. Kept in
    /// memory only; expired entries are dropped when looked up or by [`State::prune_bans`].
    pub bans: HashMap<String, Time>,
    /// Sessions a control transition decided to end (kicked, banned, token expired): the
    /// server delivers what was queued for them, then ends them ([`State::take_removals`]).
    pub removals: Vec<SessionToken>,
    next_token: u32,
    /// The last token [`State::add_session`] may hand out: `u32::MAX` alone, just below
    /// [`FIRST_REMOTE_SESSION`](voice_proto::FIRST_REMOTE_SESSION) in a cluster (the
    /// tokens above name members of rooms hosted elsewhere).
    pub last_token: u32,
    version: u64,
}

impl State {
    /// Empty state with the configured channels.
    pub fn new(cfg: &Config) -> Self {
        State {
            sessions: TokenMap::default(),
            channels: cfg
                .channels
                .iter()
                .map(|c| {
                    let id = ChannelId(c.id);
                    (
                        id,
                        Channel {
                            id,
                            name: c.name.clone(),
                            members: Vec::new(),
                            spatial: c.spatial,
                            max_members: c.max_members,
                            allow: c.allow.clone(),
                        },
                    )
                })
                .collect(),
            default_channel: cfg.default_channel_id(),
            limits: Limits {
                voice_packets: cfg.voice_packets,
                voice_bytes: cfg.voice_bytes,
                control: cfg.control_messages,
                chat: cfg.chat_messages,
            },
            ban_policy: BanPolicy {
                default_secs: cfg.ban_default_secs,
                max_secs: cfg.ban_max_secs,
            },
            bans: HashMap::new(),
            removals: Vec::new(),
            next_token: 1,
            last_token: if cfg.redis.is_some() {
                voice_proto::FIRST_REMOTE_SESSION - 1
            } else {
                u32::MAX
            },
            version: 0,
        }
    }

    /// Creates a session with the next token (monotonic from 1, never reused). `None` once every
    /// token up to [`State::last_token`] has been handed out: the relay then answers `Error{Full}` to every
    /// further `Hello` until it restarts (tokens are never reused, so a stale token in a datagram
    /// or a whisper can never reach a newer session).
    pub fn add_session(
        &mut self,
        name: String,
        secret: Secret,
        conn: usize,
        now: Time,
    ) -> Option<SessionToken> {
        // 0 is the reserved "no session" value; `next_token` wraps to it after u32::MAX and
        // stays there, meaning "exhausted".
        if self.next_token == 0 || self.next_token > self.last_token {
            return None;
        }
        let token = SessionToken(self.next_token);
        self.next_token = self.next_token.wrapping_add(1);
        self.version += 1;
        let l = self.limits;
        self.sessions.insert(
            token,
            Session {
                token,
                name,
                secret,
                tag_key: TagKey::derive(&secret),
                conn,
                udp: None,
                tunnel: false,
                channel: None,
                position: Arc::default(),
                register_counter: 0,
                control: TokenBucket::new(l.control, now),
                chat: TokenBucket::new(l.chat, now),
                e2ee_identity: None,
                grants: Grants::open(""),
                voice: VoiceState::default(),
            },
        );
        Some(token)
    }

    /// Sets the next token to hand out (tests of token exhaustion).
    #[cfg(test)]
    pub(crate) fn set_next_token(&mut self, next: u32) {
        self.next_token = next;
    }

    /// A channel with its members, as sent to clients.
    pub fn channel_info(&self, id: ChannelId) -> Option<ChannelInfo> {
        let ch = self.channels.get(&id)?;
        Some(ChannelInfo {
            id,
            name: ch.name.clone(),
            users: ch
                .members
                .iter()
                .filter_map(|t| self.sessions.get(t).map(Session::info))
                .collect(),
        })
    }

    /// Every channel with its members.
    pub fn channel_list(&self) -> Vec<ChannelInfo> {
        self.channels
            .keys()
            .filter_map(|&id| self.channel_info(id))
            .collect()
    }

    /// Verifies a registration and binds (or rebinds) `src` to the session.
    pub fn register(
        &mut self,
        src: SocketAddr,
        sender: SessionToken,
        payload: &[u8],
    ) -> Result<u64, RegisterFailure> {
        let s = self
            .sessions
            .get_mut(&sender)
            .ok_or(RegisterFailure::UnknownSession)?;
        let counter = register::verify(&s.secret, sender, payload, s.register_counter)?;
        s.register_counter = counter;
        s.udp = Some(src);
        self.version += 1;
        Ok(counter)
    }

    /// Whether `src` is the address bound to `sender`.
    pub fn check_source(&self, src: SocketAddr, sender: SessionToken) -> Result<(), DropReason> {
        let s = self
            .sessions
            .get(&sender)
            .ok_or(DropReason::UnknownSession)?;
        if s.udp == Some(src) {
            Ok(())
        } else {
            Err(DropReason::UnboundSource)
        }
    }

    /// Who receives a voice datagram with `header` from `src`: fills `out` (cleared first) with
    /// recipient addresses. Pure: nothing in the state changes.
    pub fn route(
        &self,
        src: SocketAddr,
        header: &Header,
        out: &mut Vec<SocketAddr>,
    ) -> Result<(), DropReason> {
        out.clear();
        let sender = self
            .sessions
            .get(&header.sender)
            .ok_or(DropReason::UnknownSession)?;
        if sender.udp != Some(src) {
            return Err(DropReason::UnboundSource);
        }
        self.udp_recipients(header, out)
    }

    /// The UDP addresses that receive a voice datagram with `header` whose sender exists and
    /// was authenticated (by source address, or by its tunnel). Tunneled members are left out
    /// ([`Self::tunnel_recipients`] lists them).
    pub(crate) fn udp_recipients(
        &self,
        header: &Header,
        out: &mut Vec<SocketAddr>,
    ) -> Result<(), DropReason> {
        let sender = self
            .sessions
            .get(&header.sender)
            .ok_or(DropReason::UnknownSession)?;
        if header.target.is_none() {
            let ch = sender.channel.ok_or(DropReason::NotInChannel)?;
            let channel = self.channels.get(&ch).ok_or(DropReason::NotInChannel)?;
            for m in &channel.members {
                if *m == header.sender {
                    continue;
                }
                // A deafened member hears nobody: nothing is sent to it.
                if let Some(addr) = self
                    .sessions
                    .get(m)
                    .filter(|s| !s.tunnel && !s.voice.deafened)
                    .and_then(|s| s.udp)
                {
                    out.push(addr);
                }
            }
            Ok(())
        } else {
            if header.target == header.sender {
                return Err(DropReason::WhisperSelf);
            }
            let target = self
                .sessions
                .get(&header.target)
                .ok_or(DropReason::WhisperNoTarget)?;
            if !sender.grants.whisper.allows(sender.channel, target.channel) {
                return Err(DropReason::WhisperForbidden);
            }
            if target.tunnel || target.voice.deafened {
                // Its copy goes through the tunnel; a deafened target gets none.
                return Ok(());
            }
            let addr = target.udp.ok_or(DropReason::WhisperNoTarget)?;
            out.push(addr);
            Ok(())
        }
    }

    /// Ends `who`'s session (and its UDP binding). The caller took it out of its channel.
    pub fn remove_session(&mut self, who: SessionToken) -> Option<Session> {
        let s = self.sessions.remove(&who)?;
        self.version += 1;
        Some(s)
    }

    /// Increases with every change the forwarding path cares about (sessions, bindings,
    /// membership made through these methods): the control plane republishes its
    /// [`Snapshot`](crate::forward::Snapshot) when it moved.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The 3D settings of `channel` as announced to clients (`None`: 2D or unknown channel).
    pub fn channel_spatial(&self, channel: ChannelId) -> Option<SpatialInfo> {
        let a = self.channels.get(&channel)?.spatial?;
        SpatialInfo::from_attenuation(&a).ok()
    }

    /// Marks a change the forwarding path must see (made outside the methods above).
    pub(crate) fn bump_version(&mut self) {
        self.version += 1;
    }

    /// Puts `who` into `channel` (appended to the member list). The caller removed it from any
    /// previous channel.
    pub fn add_member(&mut self, who: SessionToken, channel: ChannelId) {
        if let (Some(s), Some(ch)) = (self.sessions.get_mut(&who), self.channels.get_mut(&channel))
        {
            s.channel = Some(channel);
            s.position = Arc::default();
            ch.members.push(who);
            self.version += 1;
        }
    }

    /// Takes `who` out of its channel; returns the channel it was in.
    pub fn remove_member(&mut self, who: SessionToken) -> Option<ChannelId> {
        let s = self.sessions.get_mut(&who)?;
        let ch = s.channel.take()?;
        s.position = Arc::default();
        self.version += 1;
        if let Some(c) = self.channels.get_mut(&ch) {
            c.members.retain(|m| *m != who);
        }
        Some(ch)
    }

    /// Members of `channel` (empty for an unknown channel).
    pub fn members(&self, channel: ChannelId) -> &[SessionToken] {
        self.channels
            .get(&channel)
            .map_or(&[][..], |c| &c.members[..])
    }

    /// Bans `sub` until `until` (a longer existing ban is kept).
    pub fn ban(&mut self, sub: &str, until: Time) {
        let e = self.bans.entry(sub.to_owned()).or_insert(until);
        *e = (*e).max(until);
    }

    /// How much longer `sub` is banned (`None`: not banned). Forgets an expired ban.
    pub fn banned_for(&mut self, sub: &str, now: Time) -> Option<Duration> {
        let until = *self.bans.get(sub)?;
        if until > now {
            Some(until - now)
        } else {
            self.bans.remove(sub);
            None
        }
    }

    /// Writes the gauges (sessions, UDP-bound, tunneled, and the `connections` the caller holds)
    /// into `stats`.
    pub fn report_gauges(&self, stats: &mut Stats, connections: usize) {
        stats.set(Counter::Sessions, self.sessions.len() as u64);
        stats.set(Counter::Connections, connections as u64);
        stats.set(Counter::UdpBound, self.bound_count() as u64);
        stats.set(Counter::Tunneled, self.tunneled_count() as u64);
    }

    /// Forgets every ban that has ended.
    pub fn prune_bans(&mut self, now: Time) {
        self.bans.retain(|_, until| *until > now);
    }

    /// True when a member of `channel` other than `who` uses a name like `who`'s ([`same_name`])
    /// and is another user. The same user (both admitted by tokens with the same `sub`: a
    /// second device, or a reconnect while the relay still holds the old session until its idle
    /// timeout) may appear twice.
    pub fn name_taken(&self, channel: ChannelId, who: SessionToken) -> bool {
        let Some(me) = self.sessions.get(&who) else {
            return false;
        };
        self.members(channel).iter().any(|m| {
            *m != who
                && self.sessions.get(m).is_some_and(|s| {
                    same_name(&s.name, &me.name) && !s.grants.same_token_user(&me.grants)
                })
        })
    }

    /// The sessions to end, in the order they were decided (emptied).
    pub fn take_removals(&mut self) -> Vec<SessionToken> {
        std::mem::take(&mut self.removals)
    }

    /// Sessions whose voice is tunneled.
    pub fn tunneled_count(&self) -> usize {
        self.sessions.values().filter(|s| s.tunnel).count()
    }

    /// Sessions with a bound UDP address.
    pub fn bound_count(&self) -> usize {
        self.sessions.values().filter(|s| s.udp.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Sessions 1..=n, each bound to port 1000+token, all in channel 1 except as moved.
    fn state(n: u32) -> (State, Time) {
        let now = Time::from_millis(1000);
        let mut st = State::new(&Config::default());
        for i in 1..=n {
            let t = st
                .add_session(format!("u{i}"), [i as u8; 32], i as usize, now)
                .unwrap();
            assert_eq!(t, SessionToken(i));
            let p = register::sign(&[i as u8; 32], t, 1);
            st.register(addr(1000 + i as u16), t, &p).unwrap();
            st.add_member(t, ChannelId(1));
        }
        (st, now)
    }

    fn voice(sender: u32, target: u32, seq: u16) -> Header {
        Header {
            target: SessionToken(target),
            ..Header::voice(SessionToken(sender), seq, 0)
        }
    }

    #[test]
    fn channel_voice_goes_to_every_other_bound_member() {
        let (mut st, _) = state(4);
        st.remove_member(SessionToken(4));
        st.add_member(SessionToken(4), ChannelId(2));
        let mut out = Vec::new();
        st.route(addr(1001), &voice(1, 0, 0), &mut out).unwrap();
        assert_eq!(out, vec![addr(1002), addr(1003)]);
        // An unbound member is skipped.
        st.sessions.get_mut(&SessionToken(3)).unwrap().udp = None;
        st.route(addr(1001), &voice(1, 0, 0), &mut out).unwrap();
        assert_eq!(out, vec![addr(1002)]);
    }

    #[test]
    fn source_must_match_binding_and_sender_must_exist() {
        let (st, _) = state(2);
        let mut out = vec![addr(1)];
        assert_eq!(
            st.route(addr(9999), &voice(1, 0, 0), &mut out),
            Err(DropReason::UnboundSource)
        );
        assert!(out.is_empty());
        assert_eq!(
            st.route(addr(1001), &voice(7, 0, 0), &mut out),
            Err(DropReason::UnknownSession)
        );
    }

    #[test]
    fn whisper_reaches_only_its_target_in_any_channel() {
        let (mut st, _) = state(3);
        st.remove_member(SessionToken(3));
        let mut out = Vec::new();
        st.route(addr(1001), &voice(1, 3, 0), &mut out).unwrap();
        assert_eq!(out, vec![addr(1003)]);
        assert_eq!(
            st.route(addr(1001), &voice(1, 1, 0), &mut out),
            Err(DropReason::WhisperSelf)
        );
        assert_eq!(
            st.route(addr(1001), &voice(1, 9, 0), &mut out),
            Err(DropReason::WhisperNoTarget)
        );
    }

    #[test]
    fn sender_outside_channels_is_dropped() {
        let (mut st, _) = state(2);
        st.remove_member(SessionToken(1));
        let mut out = Vec::new();
        assert_eq!(
            st.route(addr(1001), &voice(1, 0, 0), &mut out),
            Err(DropReason::NotInChannel)
        );
        assert_eq!(st.members(ChannelId(1)), &[SessionToken(2)]);
    }

    #[test]
    fn tokens_run_out_without_a_panic_and_are_never_reused() {
        let now = Time::from_millis(1000);
        let mut st = State::new(&Config::default());
        st.next_token = u32::MAX - 1;
        let a = st.add_session("a".into(), [1; 32], 1, now);
        let b = st.add_session("b".into(), [2; 32], 2, now);
        assert_eq!(a, Some(SessionToken(u32::MAX - 1)));
        assert_eq!(b, Some(SessionToken(u32::MAX)));
        // Exhausted: refused, also after sessions end (no token is handed out twice).
        assert_eq!(st.add_session("c".into(), [3; 32], 3, now), None);
        st.sessions.clear();
        assert_eq!(st.add_session("d".into(), [4; 32], 4, now), None);
        assert!(st.sessions.is_empty());
    }

    #[test]
    fn registration_needs_proof_and_a_growing_counter_and_rebinds() {
        let (mut st, _) = state(1);
        let t = SessionToken(1);
        let p = register::sign(&[1; 32], t, 5);
        assert_eq!(st.register(addr(2000), t, &p), Ok(5));
        assert_eq!(st.sessions[&t].udp, Some(addr(2000)));
        assert_eq!(
            st.register(addr(2001), t, &p).unwrap_err().counter(),
            Counter::RegisterReplay
        );
        let forged = register::sign(&[9; 32], t, 6);
        assert_eq!(
            st.register(addr(2001), t, &forged).unwrap_err().counter(),
            Counter::RegisterBadProof
        );
        assert_eq!(st.sessions[&t].udp, Some(addr(2000)));
        assert_eq!(
            st.register(addr(2001), SessionToken(5), &p),
            Err(RegisterFailure::UnknownSession)
        );
    }
}
