//! The event loop: one thread, one `mio::Poll`, shaped like quiche's example server.
//!
//! Each turn: compute the next deadline (the housekeeping tick, or zero when a socket was left
//! undrained), `poll` with it (retrying on `Interrupted`), accept every pending connection, drain
//! the UDP socket until `WouldBlock` in `recvmmsg` batches (forwarding each batch with
//! `sendmmsg` before the slots are reused), read every readable TCP stream until `WouldBlock`,
//! run expired timeouts, flush queued writes, and finally drop dead connections, which tells the
//! remaining channel members (`UserLeft`) and removes the session and its UDP binding.
//!
//! Timeouts are checked on a housekeeping tick (at most 100 ms, and at most a quarter of the
//! shortest configured timeout) rather than kept in a timer wheel: with a few thousand
//! connections a scan costs microseconds, and it keeps per-packet work free of timer upkeep.
//!
//! The UDP drain is bounded per turn ([`MAX_UDP_BATCHES_PER_TURN`]) so a flood cannot starve the
//! TCP side; a socket left undrained makes the next poll non-blocking.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token, Waker};
use voice_core::proto::tcp::{encode_frame, ClientMessage, ErrorCode, FrameError, FrameReader};
use voice_core::proto::udp::{self, DatagramKind, Header, UdpError, MAX_DATAGRAM};
use voice_core::proto::SessionToken;

use crate::config::Config;
use crate::control::{self, After, HelloContext, Outbox};
use crate::state::State;
use crate::stats::{Counter, Stats};
use crate::udpio::{RecvBatch, SendBatch, SLOT};
use crate::Error;

const LISTENER: Token = Token(0);
const UDP: Token = Token(1);
const WAKER: Token = Token(2);
const FIRST_CONN: usize = 3;
/// Datagrams per `recvmmsg`.
pub const RECV_BATCH: usize = 64;
/// Datagrams per `sendmmsg`.
pub const SEND_BATCH: usize = 256;
/// Receive batches per loop turn before other sockets get their turn.
pub const MAX_UDP_BATCHES_PER_TURN: usize = 64;

/// Stops a running relay from any thread.
#[derive(Debug, Clone)]
pub struct Stopper {
    flag: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl Stopper {
    /// Asks the loop to return; it does so within one poll wake-up.
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        if let Err(e) = self.waker.wake() {
            log::warn!("waking the relay loop failed: {e}");
        }
    }
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    reader: FrameReader,
    out: Vec<u8>,
    out_pos: usize,
    session: Option<SessionToken>,
    deadline: Instant,
    closing: bool,
    dead: bool,
}

impl Conn {
    fn pending(&self) -> usize {
        self.out.len() - self.out_pos
    }
}

/// A bound relay, ready to [`run`](Relay::run) or [`spawn`](Relay::spawn).
#[derive(Debug)]
pub struct Relay {
    poll: Poll,
    listener: TcpListener,
    udp: UdpSocket,
    stopper: Stopper,
    local: SocketAddr,
    config: Config,
    state: State,
    stats: Stats,
    conns: HashMap<usize, Conn>,
    next_conn: usize,
    dirty: Vec<usize>,
    recv: Option<RecvBatch>,
    send: SendBatch,
    recipients: Vec<SocketAddr>,
    outbox: Outbox,
    udp_pending: bool,
    /// Set whenever a connection may have died since the last reap, so the pure-UDP path never
    /// scans the connection table.
    reap_needed: bool,
    tick: Duration,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn set_buffer(fd: i32, opt: libc::c_int, bytes: usize) {
    let v = bytes.min(i32::MAX as usize) as libc::c_int;
    // SAFETY: setsockopt with a valid fd and a pointer to a c_int of the declared size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        log::warn!("setsockopt({opt}, {bytes}): {}", io::Error::last_os_error());
    }
}

fn bind_pair(addr: SocketAddr) -> Result<(TcpListener, UdpSocket), Error> {
    let attempts = if addr.port() == 0 { 20 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let listener = TcpListener::bind(addr).map_err(|source| Error::Bind { addr, source })?;
        let local = listener.local_addr()?;
        match UdpSocket::bind(local) {
            Ok(udp) => return Ok((listener, udp)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
            Err(source) => {
                return Err(Error::Bind {
                    addr: local,
                    source,
                })
            }
        }
    }
    Err(Error::Bind {
        addr,
        source: last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse)),
    })
}

impl Relay {
    /// Binds TCP and UDP on `config.listen` (port 0: a free port, the same for both).
    pub fn bind(config: Config) -> Result<Relay, Error> {
        config.validate()?;
        let (mut listener, mut udp) = bind_pair(config.listen)?;
        if config.udp_buffer_bytes > 0 {
            set_buffer(udp.as_raw_fd(), libc::SO_RCVBUF, config.udp_buffer_bytes);
            set_buffer(udp.as_raw_fd(), libc::SO_SNDBUF, config.udp_buffer_bytes);
        }
        let local = listener.local_addr()?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        poll.registry()
            .register(&mut udp, UDP, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let shortest = config.handshake_timeout().min(config.idle_timeout());
        let tick = (shortest / 4).clamp(Duration::from_millis(1), Duration::from_millis(100));
        Ok(Relay {
            poll,
            listener,
            udp,
            stopper: Stopper {
                flag: Arc::new(AtomicBool::new(false)),
                waker,
            },
            local,
            state: State::new(&config),
            config,
            stats: Stats::new(),
            conns: HashMap::new(),
            next_conn: FIRST_CONN,
            dirty: Vec::new(),
            recv: Some(RecvBatch::new(RECV_BATCH)),
            send: SendBatch::new(SEND_BATCH),
            recipients: Vec::with_capacity(64),
            outbox: Vec::new(),
            udp_pending: false,
            reap_needed: false,
            tick,
        })
    }

    /// The bound address (TCP and UDP share it).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// A handle that stops [`Relay::run`] from another thread.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Runs the relay on a thread named `relay` and returns a handle to stop it.
    pub fn spawn(self) -> Result<RelayHandle, Error> {
        let addr = self.local;
        let stopper = self.stopper();
        let thread = std::thread::Builder::new()
            .name("relay".into())
            .spawn(move || self.run())?;
        Ok(RelayHandle {
            addr,
            stopper,
            thread: Some(thread),
        })
    }

    /// Runs the loop until stopped. Returns the final counters.
    pub fn run(mut self) -> Result<Stats, Error> {
        let mut events = Events::with_capacity(1024);
        let mut next_tick = Instant::now() + self.tick;
        let stats_every = Duration::from_millis(self.config.stats_interval_ms);
        let mut next_stats = Instant::now() + stats_every;
        log::info!("relay listening on {} (tcp+udp)", self.local);
        while !self.stopper.flag.load(Ordering::SeqCst) {
            let now = Instant::now();
            let timeout = if self.udp_pending {
                Duration::ZERO
            } else {
                next_tick.saturating_duration_since(now)
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e.into());
            }
            let mut udp_ready = self.udp_pending;
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept_all(),
                    UDP => udp_ready = true,
                    WAKER => {}
                    Token(id) => {
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.read_conn(id);
                        }
                        if ev.is_writable() {
                            self.dirty.push(id);
                        }
                    }
                }
            }
            if udp_ready {
                self.drain_udp();
            }
            let now = Instant::now();
            if now >= next_tick {
                self.expire(now);
                next_tick = now + self.tick;
            }
            if stats_every > Duration::ZERO && now >= next_stats {
                self.refresh_gauges();
                self.log_stats();
                next_stats = now + stats_every;
            }
            self.flush_dirty();
            while self.reap() {
                self.flush_dirty();
            }
        }
        self.refresh_gauges();
        self.log_stats();
        log::info!("relay stopped");
        Ok(self.stats)
    }

    fn refresh_gauges(&mut self) {
        self.stats
            .set(Counter::Sessions, self.state.sessions.len() as u64);
        self.stats
            .set(Counter::Connections, self.conns.len() as u64);
        self.stats
            .set(Counter::UdpBound, self.state.bound_count() as u64);
    }

    fn log_stats(&self) {
        let s = &self.stats;
        log::info!(
            "stats: sessions={} conns={} udp_rx={} forwarded={} ({} B) drops={} register_ok={} tcp_frames={}",
            s.get(Counter::Sessions),
            s.get(Counter::Connections),
            s.get(Counter::UdpRxPackets),
            s.get(Counter::ForwardedPackets),
            s.get(Counter::ForwardedBytes),
            s.total_drops(),
            s.get(Counter::RegisterOk),
            s.get(Counter::TcpFramesIn),
        );
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, peer)) => {
                    if self.conns.len() >= self.config.max_connections {
                        self.stats.inc(Counter::TcpRefused);
                        log::warn!("refusing {peer}: connection limit reached");
                        continue;
                    }
                    let id = self.next_conn;
                    self.next_conn += 1;
                    if let Err(e) = self.poll.registry().register(
                        &mut stream,
                        Token(id),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        log::warn!("registering {peer}: {e}");
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    log::debug!("conn {id} from {peer}");
                    self.conns.insert(
                        id,
                        Conn {
                            stream,
                            peer,
                            reader: FrameReader::new(),
                            out: Vec::new(),
                            out_pos: 0,
                            session: None,
                            deadline: Instant::now() + self.config.handshake_timeout(),
                            closing: false,
                            dead: false,
                        },
                    );
                    // Bytes may already be waiting (edge-triggered readiness).
                    self.read_conn(id);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // E.g. EMFILE: log and leave the rest in the backlog for the next turn.
                    log::warn!("accept: {e}");
                    return;
                }
            }
        }
    }

    fn drain_udp(&mut self) {
        self.udp_pending = false;
        if !self.config.batch_io {
            return self.drain_udp_simple();
        }
        let Some(recv) = self.recv.take() else {
            return;
        };
        let mut recv = recv;
        let fd = self.udp.as_raw_fd();
        for turn in 0..=MAX_UDP_BATCHES_PER_TURN {
            if turn == MAX_UDP_BATCHES_PER_TURN {
                self.udp_pending = true;
                break;
            }
            match recv.recv(fd) {
                Ok(n) => {
                    let now = Instant::now();
                    for i in 0..n {
                        let (data, src) = recv.get(i);
                        let Some(src) = src else { continue };
                        if self.on_datagram(now, data, src) {
                            for r in 0..self.recipients.len() {
                                if self.send.is_full() {
                                    let f = self.send.flush(fd, &recv);
                                    self.count_flush(f.sent, f.bytes, f.failed);
                                }
                                self.send.push(i, data.len(), &self.recipients[r]);
                            }
                        }
                    }
                    if !self.send.is_empty() {
                        let f = self.send.flush(fd, &recv);
                        self.count_flush(f.sent, f.bytes, f.failed);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("recvmmsg: {e}");
                    continue;
                }
            }
        }
        self.recv = Some(recv);
    }

    /// One `recv_from` / `send_to` per datagram (portable; `batch_io = false`).
    fn drain_udp_simple(&mut self) {
        let mut buf = [0u8; SLOT];
        for turn in 0..=MAX_UDP_BATCHES_PER_TURN * RECV_BATCH {
            if turn == MAX_UDP_BATCHES_PER_TURN * RECV_BATCH {
                self.udp_pending = true;
                break;
            }
            match self.udp.recv_from(&mut buf) {
                Ok((n, src)) => {
                    let now = Instant::now();
                    if self.on_datagram(now, &buf[..n], src) {
                        for r in 0..self.recipients.len() {
                            match self.udp.send_to(&buf[..n], self.recipients[r]) {
                                Ok(_) => self.count_flush(1, n, 0),
                                Err(_) => self.count_flush(0, 0, 1),
                            }
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => log::debug!("recv_from: {e}"),
            }
        }
    }

    fn count_flush(&mut self, sent: usize, bytes: usize, failed: usize) {
        self.stats.add(Counter::ForwardedPackets, sent as u64);
        self.stats.add(Counter::ForwardedBytes, bytes as u64);
        self.stats.add(Counter::DropSendFailed, failed as u64);
    }

    /// Decides what to do with one datagram. Returns true when it should be forwarded to
    /// `self.recipients`; replies (RegisterAck, Pong) are sent here.
    fn on_datagram(&mut self, now: Instant, data: &[u8], src: SocketAddr) -> bool {
        self.stats.inc(Counter::UdpRxPackets);
        self.stats.add(Counter::UdpRxBytes, data.len() as u64);
        let d = match udp::parse(data) {
            Ok(d) => d,
            Err(e) => {
                self.stats.inc(match e {
                    UdpError::TooShort(_) => Counter::DropTooShort,
                    UdpError::TooLong(_) => Counter::DropTooLong,
                    UdpError::UnsupportedVersion(_) => Counter::DropBadVersion,
                    UdpError::UnknownKind(_) => Counter::DropBadKind,
                    UdpError::NoSender | UdpError::BufferTooSmall { .. } => Counter::DropNoSender,
                });
                return false;
            }
        };
        let h = d.header;
        match h.kind {
            DatagramKind::Voice => {
                match self
                    .state
                    .accept_voice(now, src, &h, data.len(), &mut self.recipients)
                {
                    Ok(()) => {
                        self.stats.inc(Counter::VoiceAccepted);
                        !self.recipients.is_empty()
                    }
                    Err(r) => {
                        self.stats.inc(r.counter());
                        false
                    }
                }
            }
            DatagramKind::Register => {
                match self.state.register(src, h.sender, d.payload) {
                    Ok(counter) => {
                        self.stats.inc(Counter::RegisterOk);
                        let ack = Header {
                            kind: DatagramKind::RegisterAck,
                            flags: udp::Flags::default(),
                            timestamp: 0,
                            target: SessionToken::NONE,
                            ..h
                        };
                        self.reply(&ack, &counter.to_le_bytes(), src);
                    }
                    Err(f) => self.stats.inc(f.counter()),
                }
                false
            }
            DatagramKind::Ping => {
                match self.state.check_source(src, h.sender) {
                    Ok(()) => {
                        self.stats.inc(Counter::UdpPings);
                        let pong = Header {
                            kind: DatagramKind::Pong,
                            ..h
                        };
                        self.reply(&pong, d.payload, src);
                    }
                    Err(r) => self.stats.inc(r.counter()),
                }
                false
            }
            DatagramKind::RegisterAck | DatagramKind::Pong => {
                self.stats.inc(Counter::DropBadKind);
                false
            }
        }
    }

    fn reply(&mut self, header: &Header, payload: &[u8], dst: SocketAddr) {
        let mut buf = [0u8; MAX_DATAGRAM];
        match udp::write(header, payload, &mut buf) {
            Ok(n) => match self.udp.send_to(&buf[..n], dst) {
                Ok(_) => {}
                Err(e) => {
                    self.stats.inc(Counter::DropSendFailed);
                    log::debug!("reply to {dst}: {e}");
                }
            },
            Err(e) => log::debug!("reply encode: {e}"),
        }
    }

    fn read_conn(&mut self, id: usize) {
        self.reap_needed = true;
        let now = Instant::now();
        loop {
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            if c.dead || c.closing {
                // Nothing more is read from a closing connection; a hung-up peer is reaped.
                let mut sink = [0u8; 512];
                match io::Read::read(&mut c.stream, &mut sink) {
                    Ok(0) => c.dead = true,
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => c.dead = true,
                }
                return;
            }
            match c.reader.read_from(&mut c.stream) {
                Ok(0) => {
                    log::debug!("conn {id} ({}) closed by peer", c.peer);
                    c.dead = true;
                    return;
                }
                Ok(_) => self.process_frames(id, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("conn {id} read: {e}");
                    c.dead = true;
                    return;
                }
            }
        }
    }

    fn process_frames(&mut self, id: usize, now: Instant) {
        loop {
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            if c.closing || c.dead {
                return;
            }
            let session = c.session;
            let msg = match c.reader.next_message::<ClientMessage>() {
                Ok(None) => return,
                Ok(Some(m)) => {
                    self.stats.inc(Counter::TcpFramesIn);
                    m
                }
                Err(FrameError::Malformed(e)) => {
                    self.stats.inc(Counter::TcpFramesIn);
                    self.stats.inc(Counter::TcpMalformed);
                    log::debug!("conn {id}: malformed frame: {e}");
                    if session.is_some() {
                        c.deadline = now + self.config.idle_timeout();
                        let err = control::error(ErrorCode::Malformed, "frame did not decode");
                        self.queue(id, &err);
                    } else {
                        let err = control::error(ErrorCode::Handshake, "expected Hello");
                        self.stats.inc(Counter::HandshakeRejected);
                        self.queue(id, &err);
                        self.close_after_flush(id, now);
                    }
                    continue;
                }
                Err(e) => {
                    self.stats.inc(Counter::TcpOversizeClosed);
                    log::debug!("conn {id} ({}): {e}; closing", c.peer);
                    c.dead = true;
                    return;
                }
            };
            match session {
                None => self.on_hello(id, msg, now),
                Some(who) => {
                    c.deadline = now + self.config.idle_timeout();
                    if msg == ClientMessage::StatsRequest {
                        self.refresh_gauges();
                    }
                    let mut out = std::mem::take(&mut self.outbox);
                    let after = control::handle(
                        &mut self.state,
                        &mut self.stats,
                        who,
                        msg,
                        now,
                        unix_ms(),
                        &mut out,
                    );
                    if after == After::Close {
                        if let Some(c) = self.conns.get_mut(&id) {
                            c.session = None;
                        }
                        self.close_after_flush(id, now);
                    }
                    self.deliver(&mut out);
                    self.outbox = out;
                }
            }
        }
    }

    fn on_hello(&mut self, id: usize, msg: ClientMessage, now: Instant) {
        let mut secret = [0u8; 32];
        if let Err(e) = getrandom::fill(&mut secret) {
            log::error!("getrandom failed: {e}; refusing the session");
            self.close_after_flush(id, now);
            return;
        }
        let cx = HelloContext {
            conn: id,
            secret,
            now,
            unix_ms: unix_ms(),
            max_sessions: self.config.max_sessions,
        };
        match control::hello(&mut self.state, &mut self.stats, msg, cx) {
            Ok((token, welcome)) => {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.session = Some(token);
                    c.deadline = now + self.config.idle_timeout();
                    log::info!("session {token} from {}", c.peer);
                }
                self.queue(id, &welcome);
            }
            Err(err) => {
                self.queue(id, &err);
                self.close_after_flush(id, now);
            }
        }
    }

    fn close_after_flush(&mut self, id: usize, now: Instant) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.closing = true;
            c.deadline = c.deadline.min(now + self.config.handshake_timeout());
            self.dirty.push(id);
        }
    }

    /// Frames `msg` into connection `id`'s outgoing buffer; overflowing the cap kills it.
    fn queue(&mut self, id: usize, msg: &voice_core::proto::tcp::ServerMessage) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.dead {
            return;
        }
        if let Err(e) = encode_frame(msg, &mut c.out) {
            log::error!("encoding a reply failed: {e}");
            return;
        }
        if c.pending() > self.config.max_outgoing_bytes {
            self.stats.inc(Counter::TcpOverflowClosed);
            log::info!("conn {id} ({}): outgoing buffer over cap; closing", c.peer);
            c.dead = true;
            self.reap_needed = true;
            return;
        }
        self.dirty.push(id);
    }

    fn deliver(&mut self, out: &mut Outbox) {
        for (to, msg) in out.drain(..) {
            if let Some(conn) = self.state.sessions.get(&to).map(|s| s.conn) {
                self.queue(conn, &msg);
            }
        }
    }

    fn flush_dirty(&mut self) {
        if self.dirty.is_empty() {
            return;
        }
        self.reap_needed = true;
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for id in dirty.drain(..) {
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            while c.pending() > 0 && !c.dead {
                match c.stream.write(&c.out[c.out_pos..]) {
                    Ok(0) => c.dead = true,
                    Ok(n) => c.out_pos += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        log::debug!("conn {id} write: {e}");
                        c.dead = true;
                    }
                }
            }
            if c.pending() == 0 {
                c.out.clear();
                c.out_pos = 0;
                if c.closing {
                    c.dead = true;
                }
            }
        }
        self.dirty = dirty;
    }

    fn expire(&mut self, now: Instant) {
        self.reap_needed = true;
        for (id, c) in &mut self.conns {
            if !c.dead && now >= c.deadline {
                let counter = if c.session.is_some() {
                    Counter::TcpIdleTimeout
                } else {
                    Counter::TcpHandshakeTimeout
                };
                if !c.closing {
                    self.stats.inc(counter);
                }
                log::debug!("conn {id} ({}): {}; closing", c.peer, counter.name());
                c.dead = true;
            }
        }
    }

    /// Drops dead connections; returns true when that queued messages for others.
    fn reap(&mut self) -> bool {
        if !std::mem::take(&mut self.reap_needed) || !self.conns.values().any(|c| c.dead) {
            return false;
        }
        let dead: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.dead)
            .map(|(&id, _)| id)
            .collect();
        let mut out = std::mem::take(&mut self.outbox);
        for id in dead {
            let Some(mut c) = self.conns.remove(&id) else {
                continue;
            };
            let _ = self.poll.registry().deregister(&mut c.stream);
            if let Some(who) = c.session {
                log::info!("session {who} ended");
                control::disconnect(&mut self.state, who, &mut out);
            }
        }
        let queued = !out.is_empty();
        self.deliver(&mut out);
        self.outbox = out;
        queued
    }
}

/// A relay running on its own thread; stops it when dropped.
#[derive(Debug)]
pub struct RelayHandle {
    addr: SocketAddr,
    stopper: Stopper,
    thread: Option<std::thread::JoinHandle<Result<Stats, Error>>>,
}

impl RelayHandle {
    /// The relay's address (TCP and UDP).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the relay and waits for its thread; returns its final counters.
    pub fn stop(mut self) -> Result<Stats, Error> {
        self.stop_inner()
            .unwrap_or_else(|| Err(Error::Io(io::Error::other("relay already stopped"))))
    }

    fn stop_inner(&mut self) -> Option<Result<Stats, Error>> {
        self.stopper.stop();
        let t = self.thread.take()?;
        Some(
            t.join()
                .unwrap_or_else(|_| Err(Error::Io(io::Error::other("relay thread panicked")))),
        )
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        if let Some(Err(e)) = self.stop_inner() {
            log::error!("relay ended with an error: {e}");
        }
    }
}
