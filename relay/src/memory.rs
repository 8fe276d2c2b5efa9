//! A relay in memory: the relay's own decisions without sockets, threads or a clock, for
//! deterministic tests and simulations of engines and a relay together (in the style of quinn's
//! `Pair`).
//!
//! [`MemoryRelay`] runs the very code the event loop runs — the handshake and every control
//! transition ([`control`]), registration ([`State::register`]), and the per-datagram path
//! (parse, tag check, routing, replay window, budgets, proximity culling: `datapath`) — on
//! [`Time`] the caller passes in. Control messages go in and come out as values (the framing and
//! TLS are the socket server's, tested over loopback there); datagrams go in as bytes with their
//! source address and come out as [`Datagram`]s with their destination. Nothing happens between
//! calls, so a test can assert that something was *not* forwarded exactly, not by waiting.
//!
//! What the loop does beyond that — TLS, framing, the outgoing-buffer cap, `SO_REUSEPORT`
//! workers, the cluster — is not here; connection timeouts are ([`MemoryRelay::advance`]).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{mpsc, Arc};
use std::time::{SystemTime, UNIX_EPOCH};

use voice_proto::tcp::{ClientMessage, ErrorCode, ServerMessage};
use voice_proto::time::Time;
use voice_proto::SessionToken;

use crate::admission::Admission;
use crate::control::{self, After, HelloContext, Outbox};
use crate::datapath::{Origin, Path, Registration, Verdict};
use crate::forward::Snapshot;
use crate::server::tunnel::{TunnelCopy, TUNNEL_QUEUE};
use crate::state::State;
use crate::stats::{Counter, Stats};
use crate::tunnel::PathChange;
use crate::{Config, Error};

/// A control connection to a [`MemoryRelay`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(usize);

/// A datagram the relay sends: the exact bytes and where to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The destination (a client's registered address).
    pub to: SocketAddr,
    /// The bytes (forwarded voice is the received datagram, unchanged).
    pub bytes: Vec<u8>,
}

#[derive(Debug)]
struct Conn {
    session: Option<SessionToken>,
    inbox: VecDeque<ServerMessage>,
    /// The relay closed it (after the messages in `inbox`).
    closed: bool,
    deadline: Time,
}

/// The relay's decisions in memory (see the module doc).
#[derive(Debug)]
pub struct MemoryRelay {
    addr: SocketAddr,
    config: Config,
    admission: Admission,
    state: State,
    stats: Stats,
    path: Path,
    snapshot: Arc<Snapshot>,
    tunnel_copies: mpsc::Receiver<TunnelCopy>,
    conns: BTreeMap<ConnId, Conn>,
    next_conn: usize,
    /// The wall clock (ms since the Unix epoch) at `Time::ZERO`: access tokens carry wall-clock
    /// expiry times.
    unix_origin_ms: u64,
}

impl MemoryRelay {
    /// A relay with `config` (validated as `Relay::bind` does; `config.listen` is the address
    /// its datagrams come from). Admission is as configured: with the defaults it mints and
    /// checks its own access tokens ([`MemoryRelay::token_for`]).
    pub fn new(config: Config) -> Result<MemoryRelay, Error> {
        config.validate()?;
        let admission = Admission::load(&config)?;
        let state = State::new(&config);
        let (to_control, tunnel_copies) = mpsc::sync_channel(TUNNEL_QUEUE);
        let path = Path::new(state.limits, config.check_datagram_tags, to_control);
        let snapshot = Arc::new(Snapshot::of(&state, state.version()));
        let unix_origin_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Ok(MemoryRelay {
            addr: config.listen,
            config,
            admission,
            state,
            stats: Stats::new(),
            path,
            snapshot,
            tunnel_copies,
            conns: BTreeMap::new(),
            next_conn: 1,
            unix_origin_ms,
        })
    }

    /// The relay's address (the source of every datagram it sends).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A token this relay accepts for `name` (`None` in open mode or with the operator's keys).
    pub fn token_for(&self, name: &str) -> Option<String> {
        self.admission.token_for(name)
    }

    /// Every counter (the control plane's and the datagram path's).
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        self.path.stats.add_to(&mut s);
        self.state.report_gauges(&mut s, self.conns.len());
        s
    }

    /// A new control connection at `now` (it must say `Hello` within the handshake timeout).
    pub fn connect(&mut self, now: Time) -> ConnId {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        self.conns.insert(
            id,
            Conn {
                session: None,
                inbox: VecDeque::new(),
                closed: false,
                deadline: now + self.config.handshake_timeout(),
            },
        );
        id
    }

    /// The session `conn` opened (`None` before a `Welcome` or after it ended).
    pub fn session(&self, conn: ConnId) -> Option<SessionToken> {
        self.conns.get(&conn).and_then(|c| c.session)
    }

    /// The next message the relay sent on `conn`.
    pub fn receive(&mut self, conn: ConnId) -> Option<ServerMessage> {
        self.conns.get_mut(&conn)?.inbox.pop_front()
    }

    /// True once the relay closed `conn` (or the peer hung up); what it sent before stays
    /// readable with [`MemoryRelay::receive`].
    pub fn is_closed(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_none_or(|c| c.closed)
    }

    /// A message from the peer on `conn` at `now`, handled as the event loop handles a decoded
    /// frame. Datagrams a `Tunnel` message makes the relay send over UDP are returned.
    pub fn send(&mut self, now: Time, conn: ConnId, msg: ClientMessage) -> Vec<Datagram> {
        let Some(c) = self.conns.get_mut(&conn) else {
            return Vec::new();
        };
        if c.closed {
            return Vec::new();
        }
        self.stats.inc(Counter::TcpFramesIn);
        let mut sent = Vec::new();
        match c.session {
            None => self.hello(now, conn, msg),
            Some(who) => {
                c.deadline = now + self.config.idle_timeout();
                if let ClientMessage::Tunnel { active, datagram } = msg {
                    self.tunnel(now, who, active, &datagram, &mut sent);
                } else {
                    self.handle(now, conn, who, msg);
                }
            }
        }
        self.publish();
        sent
    }

    /// A frame that did not decode on `conn`: `Error{Malformed}` for a session (the connection
    /// stays), `Error{Handshake}` and closed before `Hello`.
    pub fn send_malformed(&mut self, now: Time, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.closed {
            return;
        }
        self.stats.inc(Counter::TcpFramesIn);
        self.stats.inc(Counter::TcpMalformed);
        if c.session.is_some() {
            c.deadline = now + self.config.idle_timeout();
            c.inbox
                .push_back(control::error(ErrorCode::Malformed, "frame did not decode"));
        } else {
            self.stats.inc(Counter::HandshakeRejected);
            c.inbox
                .push_back(control::error(ErrorCode::Handshake, "expected Hello"));
            c.closed = true;
        }
    }

    /// The peer closed `conn`: its session ends (`UserLeft` to its channel).
    pub fn hang_up(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.remove(&conn) {
            if let Some(who) = c.session {
                let mut out = Outbox::new();
                control::disconnect(&mut self.state, who, &mut out);
                self.deliver(out);
            }
        }
        self.publish();
    }

    /// Runs the relay's timers up to `now`: handshake and idle timeouts close connections (and
    /// end their sessions), sessions whose token expired are told and ended, ended bans and
    /// departed senders are forgotten.
    pub fn advance(&mut self, now: Time) {
        let expired: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| !c.closed && now >= c.deadline)
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            c.closed = true;
            let counter = match c.session.take() {
                Some(who) => {
                    let mut out = Outbox::new();
                    control::disconnect(&mut self.state, who, &mut out);
                    self.deliver(out);
                    Counter::TcpIdleTimeout
                }
                None => Counter::TcpHandshakeTimeout,
            };
            self.stats.inc(counter);
        }
        self.state.prune_bans(now);
        let mut out = Outbox::new();
        let unix_ms = self.unix_ms(now);
        crate::permissions::expire_tokens(&mut self.state, &mut self.stats, unix_ms, &mut out);
        self.deliver(out);
        self.apply_removals();
        self.publish();
        self.path.senders.retain_live(&self.snapshot);
    }

    /// A datagram from `src` at `now`: what the relay sends because of it (forwarded copies, or
    /// the answer to a registration or ping). Copies for tunneled members are queued on their
    /// connections as `ServerMessage::Tunnel`.
    pub fn datagram(&mut self, now: Time, src: SocketAddr, data: &[u8]) -> Vec<Datagram> {
        let mut sent = Vec::new();
        self.decide(now, data, Origin::Udp(src), &mut sent);
        sent
    }

    fn decide(&mut self, now: Time, data: &[u8], origin: Origin, sent: &mut Vec<Datagram>) {
        let snap = Arc::clone(&self.snapshot);
        let state = &mut self.state;
        let stats = &mut self.stats;
        let mut registrar = |reg: Registration| reg.verify(state, stats);
        match self
            .path
            .on_datagram(&snap, now, data, origin, &mut registrar)
        {
            Verdict::Forward => {
                for r in 0..self.path.recipients.len() {
                    sent.push(Datagram {
                        to: self.path.recipients[r],
                        bytes: data.to_vec(),
                    });
                    self.path.count_flush(1, data.len(), 0);
                }
            }
            Verdict::Reply { dst, len } => sent.push(Datagram {
                to: dst,
                bytes: self.path.reply(len).to_vec(),
            }),
            Verdict::Drop => {}
        }
        self.publish();
        while let Ok(copy) = self.tunnel_copies.try_recv() {
            let msg = ServerMessage::Tunnel {
                datagram: copy.datagram,
            };
            for who in copy.recipients {
                let Some(s) = self.state.sessions.get(&who).filter(|s| s.tunnel) else {
                    continue;
                };
                if let Some(c) = self.conns.get_mut(&ConnId(s.conn)) {
                    c.inbox.push_back(msg.clone());
                    self.stats.inc(Counter::TunnelForwarded);
                }
            }
        }
    }

    fn unix_ms(&self, now: Time) -> u64 {
        self.unix_origin_ms + now.as_micros() / 1000
    }

    /// Publishes a new snapshot for the datagram path when the state changed.
    fn publish(&mut self) {
        let v = self.state.version();
        if v != self.snapshot.generation {
            self.snapshot = Arc::new(Snapshot::of(&self.state, v));
        }
    }

    fn hello(&mut self, now: Time, conn: ConnId, msg: ClientMessage) {
        let reply = match control::fresh_secret() {
            None => Err(None),
            Some(secret) => {
                let cx = HelloContext {
                    conn: conn.0,
                    secret,
                    now,
                    unix_ms: self.unix_ms(now),
                    max_sessions: self.config.max_sessions,
                    admission: &self.admission,
                };
                control::hello(&mut self.state, &mut self.stats, msg, cx).map_err(Some)
            }
        };
        let idle = self.config.idle_timeout();
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        match reply {
            Ok((token, welcome)) => {
                c.session = Some(token);
                c.deadline = now + idle;
                c.inbox.push_back(welcome);
            }
            Err(error) => {
                c.inbox.extend(error);
                c.closed = true;
            }
        }
    }

    fn handle(&mut self, now: Time, conn: ConnId, who: SessionToken, msg: ClientMessage) {
        let mut out = Outbox::new();
        let unix_ms = self.unix_ms(now);
        // A `StatsRequest` is answered with the datagram path's counters too.
        let merged = (msg == ClientMessage::StatsRequest).then(|| self.stats());
        let after = control::handle_with_stats(
            &mut self.state,
            &mut self.stats,
            merged,
            who,
            msg,
            now,
            unix_ms,
            &mut out,
        );
        // The reply goes out before the connection closes.
        self.deliver(out);
        if after == After::Close {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.session = None;
                c.closed = true;
            }
        }
        self.apply_removals();
    }

    /// A `Tunnel` message from `who`: the path change ([`State::request_tunnel`]), then the
    /// datagram through the same per-datagram path as UDP.
    fn tunnel(
        &mut self,
        now: Time,
        who: SessionToken,
        active: bool,
        data: &[u8],
        sent: &mut Vec<Datagram>,
    ) {
        match self.state.request_tunnel(&mut self.stats, who, active, now) {
            PathChange::Changed => self.publish(),
            PathChange::Refused { conn, error } => {
                if let Some(c) = self.conns.get_mut(&ConnId(conn)) {
                    c.inbox.push_back(error);
                }
            }
            PathChange::Unchanged => {}
        }
        if !data.is_empty() {
            self.decide(now, data, Origin::Tunnel(who), sent);
        }
    }

    /// Queues each message on its recipient's connection.
    fn deliver(&mut self, out: Outbox) {
        for (to, msg) in out {
            let Some(conn) = self.state.sessions.get(&to).map(|s| ConnId(s.conn)) else {
                continue;
            };
            if let Some(c) = self.conns.get_mut(&conn).filter(|c| !c.closed) {
                c.inbox.push_back(msg);
            }
        }
    }

    /// Ends the sessions a transition removed (kick, ban, expired token): their notice is
    /// already queued; their connection closes after it.
    fn apply_removals(&mut self) {
        for who in self.state.take_removals() {
            let Some(conn) = self.state.sessions.get(&who).map(|s| ConnId(s.conn)) else {
                continue;
            };
            let mut out = Outbox::new();
            control::disconnect(&mut self.state, who, &mut out);
            self.deliver(out);
            if let Some(c) = self.conns.get_mut(&conn) {
                c.session = None;
                c.closed = true;
            }
        }
    }
}
