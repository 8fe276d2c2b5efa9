//! What a forwarding worker reads and owns.
//!
//! The control plane (the thread that owns [`State`]) publishes an immutable [`Snapshot`] of
//! who is bound where and who is in which channel each time membership or a binding changes;
//! workers load it once per receive batch through an [`ArcSwap`](arc_swap::ArcSwap) and never
//! take a lock or write anything shared on the forwarding path. Per-sender state (sequence
//! window, packet and byte budgets) is a [`SenderState`] owned by the worker whose socket the
//! sender's datagrams arrive on (the kernel's `SO_REUSEPORT` 4-tuple hash keeps one address on
//! one worker). Counters are a [`WorkerStats`] per worker: written by that worker alone, summed
//! by the control plane when asked.
//!
//! # Address changes
//! A sender that re-registers from a new address may land on another worker. The old worker's
//! state for it is keyed by `(token, address)`: datagrams from the old address no longer pass the
//! snapshot's source check, and the entry is dropped on the worker's next housekeeping pass. The
//! new worker starts a fresh window and fresh budgets for the new binding. A rebinding needs a
//! registration proof with a growing counter, so only the session's owner can trigger it, and
//! the replay window of the new binding rejects repeats from then on.
//!
//! # Positions (proximity culling in 3D channels)
//! A member's position arrives on its own Voice and Ping datagrams, which may reach a different
//! worker than the datagrams of a talker who needs it for culling. Each session therefore owns a
//! [`PositionCell`] (three atomics) allocated by the control plane in [`State`] and shared, by
//! `Arc`, through every [`Snapshot`]: the worker that accepts a member's datagram stores the
//! position there (relaxed stores, no lock, no read-modify-write), and any worker culling a
//! talker's voice reads the listeners' cells. Joining or leaving a channel gives the session a
//! fresh, empty cell (published with the membership change), so a position never outlives the
//! channel it was sent in; a worker still on the previous snapshot for one batch writes into
//! the old cell, which only delays the next position by one datagram. Coordinates are stored
//! separately, so a reader racing a writer may see a mix of two consecutive positions of one
//! member (20 ms apart): culling at a channel's range is insensitive to that, and it never
//! yields a non-finite coordinate.
//!
//! # Tunneled sessions
//! A session whose voice rides its control connection (tunnel fallback) is left out of the UDP
//! recipients ([`Snapshot::route`]) and listed by [`Snapshot::tunnel_recipients`] instead: a
//! worker that accepted a datagram for such members hands a copy to the control plane (which
//! owns the connections) over a channel. Voice that arrives through a tunnel is decided on the
//! control thread by worker 0's per-datagram path (tag check included) with the same snapshot
//! and the same [`Senders`] checks ([`Senders::accept_tunneled`]), its sender authenticated by
//! the connection instead of a source address.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use voice_proto::time::Time;

use voice_proto::seq::{ReplayCheck, ReplayWindow, SeqUnwrapper};
use voice_proto::udp::{Header, Position, TagKey};
use voice_proto::{ChannelId, SessionToken};

use crate::budget::TokenBucket;
use crate::state::{DropReason, Limits, State, TokenMap};
use crate::stats::{Counter, Stats, COUNTERS};
use crate::token::WhisperScope;

/// One session as the forwarding path sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Bound UDP address, once registered.
    pub udp: Option<SocketAddr>,
    /// Current channel.
    pub channel: Option<ChannelId>,
    /// The key of the tags on its datagrams (and on the replies it is sent).
    pub tag_key: TagKey,
    /// Whom its token lets it whisper to.
    pub whisper: WhisperScope,
    /// Its voice travels through the control connection.
    pub tunnel: bool,
    /// It said it is deafened: it is sent no voice.
    pub deafened: bool,
}

/// A session's last known position, shared by every forwarding worker (see the module
/// documentation): written by the worker that accepts the session's datagram, read by any
/// worker culling voice in a 3D channel. Unknown until the first position arrives.
#[derive(Debug)]
pub struct PositionCell {
    /// `f32` bits of x, y, z; x holds a NaN while unknown (the wire only carries finite values).
    xyz: [AtomicU32; 3],
}

/// The bit pattern of x meaning "no position yet".
const UNKNOWN: u32 = f32::NAN.to_bits();

impl Default for PositionCell {
    fn default() -> Self {
        PositionCell {
            xyz: [
                AtomicU32::new(UNKNOWN),
                AtomicU32::new(0),
                AtomicU32::new(0),
            ],
        }
    }
}

impl PositionCell {
    /// Stores `p` (finite: [`udp::parse`](voice_proto::udp::parse) refuses others).
    #[inline]
    pub fn store(&self, p: Position) {
        // y and z before x: a reader that sees x known sees this or the previous y, z.
        self.xyz[1].store(p.y.to_bits(), Ordering::Relaxed);
        self.xyz[2].store(p.z.to_bits(), Ordering::Relaxed);
        self.xyz[0].store(p.x.to_bits(), Ordering::Release);
    }

    /// The last stored position, if any.
    #[inline]
    pub fn load(&self) -> Option<Position> {
        let x = f32::from_bits(self.xyz[0].load(Ordering::Acquire));
        if x.is_nan() {
            return None;
        }
        let y = f32::from_bits(self.xyz[1].load(Ordering::Relaxed));
        let z = f32::from_bits(self.xyz[2].load(Ordering::Relaxed));
        Some(Position::new(x, y, z))
    }
}

/// An immutable view of sessions, bindings and channel membership, published by the control
/// plane after every change.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Increases with every publication.
    pub generation: u64,
    peers: TokenMap<Peer>,
    /// Bound members of each channel in join order, with their addresses (tunneled ones left
    /// out).
    channels: HashMap<ChannelId, Vec<(SessionToken, SocketAddr)>>,
    /// Every session's position cell (shared with [`State`] and later snapshots).
    positions: TokenMap<Arc<PositionCell>>,
    /// Audible range (`max_distance`) of each 3D channel; 2D channels are absent.
    ranges: HashMap<ChannelId, f32>,
    /// Tunneled members of each channel in join order (only channels that have some).
    tunneled: HashMap<ChannelId, Vec<SessionToken>>,
}

impl Snapshot {
    /// The view of `state`, numbered `generation`.
    pub fn of(state: &State, generation: u64) -> Snapshot {
        let peers = state
            .sessions
            .iter()
            .map(|(&t, s)| {
                (
                    t,
                    Peer {
                        udp: s.udp,
                        channel: s.channel,
                        tag_key: s.tag_key.clone(),
                        whisper: s.grants.whisper,
                        tunnel: s.tunnel,
                        deafened: s.voice.deafened,
                    },
                )
            })
            .collect();
        let channels = state
            .channels
            .values()
            .map(|c| {
                let bound = c
                    .members
                    .iter()
                    .filter_map(|t| {
                        let s = state
                            .sessions
                            .get(t)
                            .filter(|s| !s.tunnel && !s.voice.deafened)?;
                        s.udp.map(|a| (*t, a))
                    })
                    .collect();
                (c.id, bound)
            })
            .collect();
        let positions = state
            .sessions
            .iter()
            .map(|(&t, s)| (t, Arc::clone(&s.position)))
            .collect();
        let ranges = state
            .channels
            .values()
            .filter_map(|c| c.spatial.map(|a| (c.id, a.max_distance)))
            .collect();
        let tunneled = state
            .channels
            .values()
            .filter_map(|c| {
                let t: Vec<SessionToken> = c
                    .members
                    .iter()
                    .copied()
                    .filter(|t| state.sessions.get(t).is_some_and(|s| s.tunnel))
                    .collect();
                (!t.is_empty()).then_some((c.id, t))
            })
            .collect();
        Snapshot {
            generation,
            peers,
            channels,
            positions,
            ranges,
            tunneled,
        }
    }

    /// Records `sender`'s position from an accepted datagram (`None` keeps the last one).
    pub fn record_position(&self, sender: SessionToken, position: Option<Position>) {
        if let (Some(p), Some(cell)) = (position, self.positions.get(&sender)) {
            cell.store(p);
        }
    }

    /// `session`'s last recorded position.
    pub fn position(&self, session: SessionToken) -> Option<Position> {
        self.positions.get(&session)?.load()
    }

    /// Proximity culling, after [`Senders::accept_voice`] or [`Senders::accept_tunneled`]
    /// filled `out` for `header`: records the sender's `position`, and for channel voice in a
    /// 3D channel from a sender with a position keeps in `out` only members within the
    /// channel's `max_distance` of it (members whose position is unknown stay). Returns how
    /// many recipients were culled; 0 for 2D channels, whispers and senders without a position.
    /// Tunneled listeners are culled by [`Self::cull_tunnel_recipients`] with the same rule.
    pub fn cull_out_of_range(
        &self,
        header: &Header,
        position: Option<Position>,
        out: &mut Vec<SocketAddr>,
    ) -> usize {
        self.record_position(header.sender, position);
        let Some((ch, from, range2)) = self.culling(header, position) else {
            return 0;
        };
        let Some(members) = self.channels.get(&ch) else {
            return 0;
        };
        let before = out.len();
        out.clear();
        out.extend(
            members
                .iter()
                .filter(|(t, _)| *t != header.sender && self.audible(*t, from, range2))
                .map(|(_, a)| *a),
        );
        before - out.len()
    }

    /// Proximity culling of the tunneled recipients [`Self::tunnel_recipients`] put in `out`
    /// for `header`: the rule of [`Self::cull_out_of_range`] (which records the sender's
    /// position; this does not). Returns how many were culled.
    pub fn cull_tunnel_recipients(
        &self,
        header: &Header,
        position: Option<Position>,
        out: &mut Vec<SessionToken>,
    ) -> usize {
        let Some((_, from, range2)) = self.culling(header, position) else {
            return 0;
        };
        let before = out.len();
        out.retain(|t| self.audible(*t, from, range2));
        before - out.len()
    }

    /// The channel, the sender's position and the squared range when voice with `header` and
    /// `position` is subject to culling: channel voice in a 3D channel from a placed sender.
    fn culling(
        &self,
        header: &Header,
        position: Option<Position>,
    ) -> Option<(ChannelId, Position, f32)> {
        let from = position?;
        if !header.target.is_none() {
            return None;
        }
        let ch = self.peers.get(&header.sender)?.channel?;
        let range = *self.ranges.get(&ch)?;
        Some((ch, from, range * range))
    }

    /// Whether listener `t` hears a sender at `from` (unknown positions hear everything).
    fn audible(&self, t: SessionToken, from: Position, range2: f32) -> bool {
        self.position(t)
            .is_none_or(|p| p.distance_squared(from) <= range2)
    }

    /// Whether any session is tunneled (workers skip the tunnel lookup otherwise).
    pub fn has_tunnels(&self) -> bool {
        self.peers.values().any(|p| p.tunnel)
    }

    /// Whether `token` is a live session in this view.
    pub fn contains(&self, token: SessionToken) -> bool {
        self.peers.contains_key(&token)
    }

    /// Checks the tag of `datagram` against the key of `sender`'s session.
    pub fn check_tag(&self, sender: SessionToken, datagram: &[u8]) -> Result<(), DropReason> {
        let p = self.peers.get(&sender).ok_or(DropReason::UnknownSession)?;
        p.tag_key.verify(datagram).map_err(|_| DropReason::BadTag)
    }

    /// The key to tag a reply to `token` with.
    pub fn tag_key(&self, token: SessionToken) -> Option<&TagKey> {
        self.peers.get(&token).map(|p| &p.tag_key)
    }

    /// Whether `src` is the address bound to `sender`.
    pub fn check_source(&self, src: SocketAddr, sender: SessionToken) -> Result<(), DropReason> {
        let p = self.peers.get(&sender).ok_or(DropReason::UnknownSession)?;
        if p.udp == Some(src) {
            Ok(())
        } else {
            Err(DropReason::UnboundSource)
        }
    }

    /// Who receives a voice datagram with `header` from `src`: fills `out` (cleared first) with
    /// recipient addresses. The same decision as [`State::route`] (a test holds them equal).
    pub fn route(
        &self,
        src: SocketAddr,
        header: &Header,
        out: &mut Vec<SocketAddr>,
    ) -> Result<(), DropReason> {
        out.clear();
        let sender = self
            .peers
            .get(&header.sender)
            .ok_or(DropReason::UnknownSession)?;
        if sender.udp != Some(src) {
            return Err(DropReason::UnboundSource);
        }
        self.udp_recipients(sender, header, out)
    }

    /// Routing of a voice datagram that `who` sent through its control connection: the header
    /// must name `who` as its sender (a connection speaks only for its own session); then the
    /// UDP recipients exactly as [`Self::route`] gives them.
    pub fn route_tunneled(
        &self,
        who: SessionToken,
        header: &Header,
        out: &mut Vec<SocketAddr>,
    ) -> Result<(), DropReason> {
        out.clear();
        if header.sender != who {
            return Err(DropReason::UnboundSource);
        }
        let sender = self
            .peers
            .get(&header.sender)
            .ok_or(DropReason::UnknownSession)?;
        self.udp_recipients(sender, header, out)
    }

    /// The tunneled sessions that receive an accepted voice datagram with `header` (cleared
    /// first; never the sender).
    pub fn tunnel_recipients(&self, header: &Header, out: &mut Vec<SessionToken>) {
        out.clear();
        let tunneled = |t: &SessionToken| {
            *t != header.sender && self.peers.get(t).is_some_and(|p| p.tunnel && !p.deafened)
        };
        if header.target.is_none() {
            let Some(ch) = self.peers.get(&header.sender).and_then(|p| p.channel) else {
                return;
            };
            if let Some(members) = self.tunneled.get(&ch) {
                out.extend(members.iter().copied().filter(|t| tunneled(t)));
            }
        } else if tunneled(&header.target) {
            out.push(header.target);
        }
    }

    fn udp_recipients(
        &self,
        sender: &Peer,
        header: &Header,
        out: &mut Vec<SocketAddr>,
    ) -> Result<(), DropReason> {
        if header.target.is_none() {
            let ch = sender.channel.ok_or(DropReason::NotInChannel)?;
            let members = self.channels.get(&ch).ok_or(DropReason::NotInChannel)?;
            out.extend(
                members
                    .iter()
                    .filter(|(t, _)| *t != header.sender)
                    .map(|(_, a)| *a),
            );
            Ok(())
        } else {
            if header.target == header.sender {
                return Err(DropReason::WhisperSelf);
            }
            let target = self
                .peers
                .get(&header.target)
                .ok_or(DropReason::WhisperNoTarget)?;
            if !sender.whisper.allows(sender.channel, target.channel) {
                return Err(DropReason::WhisperForbidden);
            }
            if target.tunnel || target.deafened {
                // Its copy goes through the tunnel; a deafened target gets none.
                return Ok(());
            }
            let addr = target.udp.ok_or(DropReason::WhisperNoTarget)?;
            out.push(addr);
            Ok(())
        }
    }
}

/// The address a tunneled sender's state is kept under (it has no UDP source).
const TUNNEL_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::UNSPECIFIED,
    0,
));

/// A sender's sequence window and budgets, owned by one worker.
#[derive(Debug)]
pub struct SenderState {
    /// The address this state belongs to (a rebinding starts a new state).
    pub addr: SocketAddr,
    seq: SeqUnwrapper,
    replay: ReplayWindow,
    packets: TokenBucket,
    bytes: TokenBucket,
}

impl SenderState {
    /// A fresh window and full budgets for a sender bound to `addr`.
    pub fn new(addr: SocketAddr, limits: &Limits, now: Time) -> Self {
        SenderState {
            addr,
            seq: SeqUnwrapper::new(),
            replay: ReplayWindow::new(),
            packets: TokenBucket::new(limits.voice_packets, now),
            bytes: TokenBucket::new(limits.voice_bytes, now),
        }
    }

    /// Applies the replay window and budgets to a routed datagram of `len` bytes.
    pub fn admit(&mut self, now: Time, header: &Header, len: usize) -> Result<(), DropReason> {
        let ext = self.seq.peek(header.seq);
        match self.replay.check_and_set(ext) {
            ReplayCheck::New => {
                self.seq.unwrap(header.seq);
            }
            ReplayCheck::Duplicate => return Err(DropReason::Duplicate),
            ReplayCheck::TooOld => return Err(DropReason::TooOld),
        }
        if !self.packets.check(now, 1.0) {
            return Err(DropReason::PacketBudget);
        }
        if !self.bytes.check(now, len as f64) {
            return Err(DropReason::ByteBudget);
        }
        self.packets.consume(1.0);
        self.bytes.consume(len as f64);
        Ok(())
    }
}

/// The senders one worker has seen, keyed by token.
#[derive(Debug)]
pub struct Senders {
    map: TokenMap<SenderState>,
    limits: Limits,
}

impl Senders {
    /// No sender yet; new ones get budgets from `limits`.
    pub fn new(limits: Limits) -> Self {
        Senders {
            map: TokenMap::default(),
            limits,
        }
    }

    /// Route with `snap`, then admit with this worker's state for the sender (created, or
    /// replaced when the sender's binding moved to `src`): the full decision for one voice
    /// datagram. `out` is empty unless it returns `Ok`.
    pub fn accept_voice(
        &mut self,
        snap: &Snapshot,
        now: Time,
        src: SocketAddr,
        header: &Header,
        len: usize,
        out: &mut Vec<SocketAddr>,
    ) -> Result<(), DropReason> {
        let r = snap.route(src, header, out).and_then(|()| {
            let limits = &self.limits;
            let s = self
                .map
                .entry(header.sender)
                .or_insert_with(|| SenderState::new(src, limits, now));
            if s.addr == TUNNEL_ADDR {
                // Back from the tunnel on the address it stayed bound to: the same window.
                s.addr = src;
            } else if s.addr != src {
                *s = SenderState::new(src, limits, now);
            }
            s.admit(now, header, len)
        });
        if r.is_err() {
            out.clear();
        }
        r
    }

    /// [`Self::accept_voice`] for a datagram that arrived through `who`'s control connection
    /// (worker 0's `Senders`, on the control thread): routing with
    /// [`Snapshot::route_tunneled`], then the same replay window and budgets (the state the
    /// sender's UDP voice on this worker built, when there is one: switching paths does not
    /// reopen the replay window).
    pub fn accept_tunneled(
        &mut self,
        snap: &Snapshot,
        now: Time,
        who: SessionToken,
        header: &Header,
        len: usize,
        out: &mut Vec<SocketAddr>,
    ) -> Result<(), DropReason> {
        let r = snap.route_tunneled(who, header, out).and_then(|()| {
            let limits = &self.limits;
            self.map
                .entry(header.sender)
                .or_insert_with(|| SenderState::new(TUNNEL_ADDR, limits, now))
                .admit(now, header, len)
        });
        if r.is_err() {
            out.clear();
        }
        r
    }

    /// Forgets senders that are gone from `snap`, or no longer bound to the address their
    /// state belongs to, or (state created by tunneled voice) no longer tunneled
    /// (housekeeping, off the per-datagram path).
    pub fn retain_live(&mut self, snap: &Snapshot) {
        self.map.retain(|t, s| {
            snap.peers
                .get(t)
                .is_some_and(|p| p.udp == Some(s.addr) || (s.addr == TUNNEL_ADDR && p.tunnel))
        });
    }

    /// Senders tracked.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no sender is tracked.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// One worker's counters: written by that worker alone (a relaxed load and store, no
/// read-modify-write, no contention), read by the control plane for `Stats`.
#[derive(Debug)]
#[repr(align(128))]
pub struct WorkerStats {
    values: [AtomicU64; COUNTERS],
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            values: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl WorkerStats {
    /// Adds `n` (only the owning worker calls this).
    #[inline]
    pub fn add(&self, c: Counter, n: u64) {
        let v = &self.values[c as usize];
        v.store(v.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self, c: Counter) {
        self.add(c, 1);
    }

    /// Adds every counter into `into`.
    pub fn add_to(&self, into: &mut Stats) {
        for &c in Counter::ALL {
            into.add(c, self.values[c as usize].load(Ordering::Relaxed));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use voice_proto::attenuation::Attenuation;
    use voice_proto::register;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Sessions 1..=n, each bound to port 1000+token, all in channel 1.
    fn state(n: u32) -> (State, Time) {
        let now = Time::from_millis(1000);
        let mut st = State::new(&Config::default());
        for i in 1..=n {
            let t = st
                .add_session(format!("u{i}"), [i as u8; 32], i as usize, now)
                .unwrap();
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
    fn snapshot_routes_exactly_like_the_state() {
        let (mut st, _) = state(5);
        st.remove_member(SessionToken(4));
        st.add_member(SessionToken(4), ChannelId(2));
        st.remove_member(SessionToken(5));
        st.sessions.get_mut(&SessionToken(3)).unwrap().udp = None;
        st.set_tunnel(SessionToken(2), true);
        st.add_session("u6".into(), [6; 32], 6, Time::from_millis(1000))
            .unwrap();
        let p = register::sign(&[6; 32], SessionToken(6), 1);
        st.register(addr(1006), SessionToken(6), &p).unwrap();
        st.add_member(SessionToken(6), ChannelId(1));
        st.sessions
            .get_mut(&SessionToken(6))
            .unwrap()
            .voice
            .deafened = true;
        let snap = Snapshot::of(&st, 1);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for sender in 0..8 {
            for target in 0..8 {
                for port in [1001, 1002, 1004, 1005, 1006, 4000] {
                    let h = voice(sender, target, 0);
                    assert_eq!(
                        snap.route(addr(port), &h, &mut a),
                        st.route(addr(port), &h, &mut b),
                        "sender {sender} target {target} port {port}"
                    );
                    assert_eq!(a, b);
                }
                let h = voice(sender, target, 0);
                let who = SessionToken(sender);
                let (mut ta, mut tb) = (Vec::new(), Vec::new());
                let r = snap.route_tunneled(who, &h, &mut a);
                let expected = st.sessions.get(&who).map(|s| s.udp);
                if let Some(Some(src)) = expected {
                    assert_eq!(r, st.route(src, &h, &mut b), "tunneled {sender} {target}");
                    assert_eq!(a, b);
                }
                snap.tunnel_recipients(&h, &mut ta);
                st.tunnel_recipients(&h, &mut tb);
                assert_eq!(ta, tb, "tunnel recipients {sender} {target}");
            }
        }
    }

    #[test]
    fn a_deafened_member_is_sent_no_voice_until_it_undeafens() {
        let (mut st, _) = state(3);
        let deafen = |st: &mut State, on: bool| {
            st.sessions
                .get_mut(&SessionToken(3))
                .unwrap()
                .voice
                .deafened = on;
        };
        let mut out = Vec::new();
        deafen(&mut st, true);
        let snap = Snapshot::of(&st, 1);
        // Channel voice reaches the others only; a whisper to it is accepted and goes nowhere.
        assert_eq!(snap.route(addr(1001), &voice(1, 0, 0), &mut out), Ok(()));
        assert_eq!(out, vec![addr(1002)]);
        assert_eq!(snap.route(addr(1001), &voice(1, 3, 0), &mut out), Ok(()));
        assert!(out.is_empty());
        // It still talks: its own voice goes to the channel.
        assert_eq!(snap.route(addr(1003), &voice(3, 0, 0), &mut out), Ok(()));
        assert_eq!(out, vec![addr(1001), addr(1002)]);
        deafen(&mut st, false);
        let snap = Snapshot::of(&st, 2);
        assert_eq!(snap.route(addr(1001), &voice(1, 0, 0), &mut out), Ok(()));
        assert_eq!(out, vec![addr(1002), addr(1003)]);
    }

    #[test]
    fn replays_and_old_sequence_numbers_are_dropped() {
        let (st, now) = state(2);
        let snap = Snapshot::of(&st, 1);
        let mut w = Senders::new(st.limits);
        let mut out = Vec::new();
        let mut send = |w: &mut Senders, seq: u16| {
            w.accept_voice(&snap, now, addr(1001), &voice(1, 0, seq), 60, &mut out)
        };
        assert_eq!(send(&mut w, 10), Ok(()));
        assert_eq!(send(&mut w, 10), Err(DropReason::Duplicate));
        assert_eq!(send(&mut w, 9), Ok(()));
        assert_eq!(send(&mut w, 10 + 300), Ok(()));
        assert_eq!(send(&mut w, 11), Err(DropReason::TooOld));
    }

    #[test]
    fn budgets_bound_a_flood() {
        let (st, now) = state(2);
        let snap = Snapshot::of(&st, 1);
        let mut w = Senders::new(st.limits);
        let mut out = Vec::new();
        let burst = st.limits.voice_packets.burst as u16;
        let ok = (0..burst * 10)
            .filter(|&seq| {
                w.accept_voice(&snap, now, addr(1001), &voice(1, 0, seq), 60, &mut out)
                    .is_ok()
            })
            .count();
        assert_eq!(ok, burst as usize);
        let max = voice_proto::udp::MAX_DATAGRAM;
        let n = (0..50u16)
            .filter(|&s| {
                w.accept_voice(&snap, now, addr(1002), &voice(2, 0, s), max, &mut out)
                    .is_ok()
            })
            .count();
        assert_eq!(n, (st.limits.voice_bytes.burst / max as f64) as usize);
    }

    #[test]
    fn a_rebinding_starts_fresh_state_and_the_old_address_is_refused() {
        let (mut st, now) = state(2);
        let t = SessionToken(1);
        let mut w = Senders::new(st.limits);
        let mut out = Vec::new();
        let snap = Snapshot::of(&st, 1);
        for seq in 0..5 {
            let h = voice(1, 0, seq);
            w.accept_voice(&snap, now, addr(1001), &h, 60, &mut out)
                .unwrap();
        }
        // Rebind to a new address (a new proof with a higher counter).
        let p = register::sign(&[1; 32], t, 2);
        st.register(addr(3001), t, &p).unwrap();
        let snap = Snapshot::of(&st, 2);
        let h = voice(1, 0, 5);
        assert_eq!(
            w.accept_voice(&snap, now, addr(1001), &h, 60, &mut out),
            Err(DropReason::UnboundSource)
        );
        assert!(out.is_empty());
        w.accept_voice(&snap, now, addr(3001), &h, 60, &mut out)
            .unwrap();
        assert_eq!(out, vec![addr(1002)]);
        assert_eq!(
            w.accept_voice(&snap, now, addr(3001), &h, 60, &mut out),
            Err(DropReason::Duplicate)
        );
        // Housekeeping keeps the live binding only; a session gone is forgotten.
        w.retain_live(&snap);
        assert_eq!(w.len(), 1);
        st.sessions.remove(&t);
        w.retain_live(&Snapshot::of(&st, 3));
        assert!(w.is_empty());
    }

    #[test]
    fn a_3d_channel_culls_by_range_and_nothing_else_does() {
        let (mut st, now) = state(5);
        let at = |x: f32| Some(Position::new(x, 0.0, 0.0));
        let mut w = Senders::new(st.limits);
        let mut out = Vec::new();
        let mut send = |snap: &Snapshot, h: &Header, p: Option<Position>| {
            w.accept_voice(snap, now, addr(1000 + h.sender.0 as u16), h, 60, &mut out)
                .unwrap();
            let culled = snap.cull_out_of_range(h, p, &mut out);
            (out.clone(), culled)
        };
        // 2D: positions are recorded but nothing is culled.
        let snap = Snapshot::of(&st, 1);
        for (i, x) in [(2, 5.0), (3, 100.0), (4, 20.0)] {
            snap.record_position(SessionToken(i), at(x));
        }
        assert_eq!(send(&snap, &voice(1, 0, 1), at(0.0)).1, 0);
        st.channels.get_mut(&ChannelId(1)).unwrap().spatial = Some(Attenuation {
            max_distance: 20.0,
            ..Attenuation::default()
        });
        // A later snapshot shares the cells: the positions recorded through the first one hold.
        let snap = Snapshot::of(&st, 2);
        assert_eq!(snap.position(SessionToken(3)), at(100.0));
        // 3D: 2 at 5 and 4 at exactly 20 hear, 3 at 100 does not, 5 (position unknown) does.
        assert_eq!(
            send(&snap, &voice(1, 0, 2), at(0.0)),
            (vec![addr(1002), addr(1004), addr(1005)], 1)
        );
        // A sender without a position, and a whisper, are not culled.
        assert_eq!(send(&snap, &voice(1, 0, 3), None).1, 0);
        assert_eq!(send(&snap, &voice(1, 3, 4), at(0.0)), (vec![addr(1003)], 0));
        // The sender's own position is recorded from its datagram; leaving forgets it.
        assert_eq!(snap.position(SessionToken(1)), at(0.0));
        st.remove_member(SessionToken(3));
        assert_eq!(Snapshot::of(&st, 3).position(SessionToken(3)), None);
        assert_eq!(
            st.channel_spatial(ChannelId(1))
                .map(|s| s.max_distance_milli),
            Some(20_000)
        );
        assert_eq!(st.channel_spatial(ChannelId(2)), None);
    }

    #[test]
    fn tunneled_voice_and_tunneled_listeners_are_culled_like_udp() {
        let (mut st, now) = state(5);
        st.channels.get_mut(&ChannelId(1)).unwrap().spatial = Some(Attenuation {
            max_distance: 20.0,
            ..Attenuation::default()
        });
        // 3 (far) and 4 (near) listen through the tunnel; 2 (near) and 5 (far) over UDP.
        st.set_tunnel(SessionToken(3), true);
        st.set_tunnel(SessionToken(4), true);
        let snap = Snapshot::of(&st, 1);
        let at = |x: f32| Some(Position::new(x, 0.0, 0.0));
        for (i, x) in [(2, 5.0), (3, 100.0), (4, 10.0), (5, 50.0)] {
            snap.record_position(SessionToken(i), at(x));
        }
        let mut w = Senders::new(st.limits);
        let (mut out, mut to) = (Vec::new(), Vec::new());
        // A UDP talker at 0: the far tunneled listener is culled like the far UDP one.
        let h = voice(1, 0, 1);
        w.accept_voice(&snap, now, addr(1001), &h, 60, &mut out)
            .unwrap();
        assert_eq!(snap.cull_out_of_range(&h, at(0.0), &mut out), 1);
        snap.tunnel_recipients(&h, &mut to);
        assert_eq!(to, [SessionToken(3), SessionToken(4)]);
        assert_eq!(snap.cull_tunnel_recipients(&h, at(0.0), &mut to), 1);
        assert_eq!(
            (out.as_slice(), to.as_slice()),
            (&[addr(1002)][..], &[SessionToken(4)][..])
        );
        // A tunneled talker (4, moving to 60): its position is recorded from the tunneled
        // datagram, and both kinds of listener are culled around it.
        let h = voice(4, 0, 1);
        w.accept_tunneled(&snap, now, SessionToken(4), &h, 60, &mut out)
            .unwrap();
        assert_eq!(snap.cull_out_of_range(&h, at(60.0), &mut out), 2);
        assert_eq!(snap.position(SessionToken(4)), at(60.0));
        snap.tunnel_recipients(&h, &mut to);
        assert_eq!(snap.cull_tunnel_recipients(&h, at(60.0), &mut to), 1);
        assert_eq!(
            (out.as_slice(), to.as_slice()),
            (&[addr(1005)][..], &[][..])
        );
        // Without a position, or as a whisper, nothing is culled.
        snap.tunnel_recipients(&voice(1, 0, 2), &mut to);
        assert_eq!(
            snap.cull_tunnel_recipients(&voice(1, 0, 2), None, &mut to),
            0
        );
        snap.tunnel_recipients(&voice(1, 3, 3), &mut to);
        assert_eq!(
            snap.cull_tunnel_recipients(&voice(1, 3, 3), at(0.0), &mut to),
            0
        );
        assert_eq!(to, [SessionToken(3)]);
    }

    #[test]
    fn position_cells_are_shared_across_workers_threads() {
        // Two threads stand for two workers: one records positions from a member's datagrams,
        // the other reads them while culling; every read is a recorded position or none.
        let (st, _) = state(2);
        let snap = Arc::new(Snapshot::of(&st, 1));
        let writer = {
            let snap = Arc::clone(&snap);
            std::thread::Builder::new()
                .name("position-writer".into())
                .spawn(move || {
                    for i in 0..10_000u32 {
                        let v = (i % 100) as f32;
                        snap.record_position(SessionToken(2), Some(Position::new(v, v, v)));
                    }
                })
                .unwrap()
        };
        for _ in 0..10_000 {
            if let Some(p) = snap.position(SessionToken(2)) {
                let ok = |c: f32| (0.0..100.0).contains(&c) && c.fract() == 0.0;
                assert!(ok(p.x) && ok(p.y) && ok(p.z), "{p:?}");
            }
        }
        writer.join().unwrap();
        assert_eq!(
            snap.position(SessionToken(2)),
            Some(Position::new(99.0, 99.0, 99.0))
        );
    }

    #[test]
    fn worker_stats_sum_into_stats() {
        let (a, b) = (WorkerStats::default(), WorkerStats::default());
        a.inc(Counter::ForwardedPackets);
        b.add(Counter::ForwardedPackets, 4);
        b.inc(Counter::DropTooShort);
        let mut s = Stats::new();
        s.inc(Counter::ForwardedPackets);
        a.add_to(&mut s);
        b.add_to(&mut s);
        assert_eq!(s.get(Counter::ForwardedPackets), 6);
        assert_eq!(s.total_drops(), 1);
    }
}
