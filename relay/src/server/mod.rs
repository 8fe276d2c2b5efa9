//! The event loop: one control thread with one `mio::Poll`, shaped like quiche's example
//! server, plus `workers - 1` forwarding threads (see [Workers](#workers)).
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
//!
//! This file holds the loop, binding and the handle; `udp` (datagram path) and `tcp`
//! (connections, timeouts, reaping) hold the two halves of the work, and `cluster` the loop's
//! side of rooms across relays (placements, redirects, the directory).
//!
//! # Workers
//! With `workers = N > 1` the relay binds N UDP sockets on the same address with
//! `SO_REUSEPORT`; the kernel spreads senders over them by a hash of the 4-tuple, so one
//! sender's datagrams always reach the same socket. Socket 0 is drained by this control loop,
//! sockets 1.. by one thread each with its own poll. The control loop owns [`State`] alone and,
//! whenever its [`version`](State::version) moved, publishes an immutable
//! [`Snapshot`] through an `ArcSwap` before any reply that could make
//! a client send voice goes out (`Joined`, `RegisterAck`). Workers read the snapshot without a
//! lock and keep their own per-sender state and counters (summed for `Stats`). `Register`
//! datagrams arriving at another worker are passed to the control loop over a channel (it owns
//! the secrets) and acknowledged from socket 0, which has the same local address.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use voice_proto::time::{MonotonicClock, Time};

use arc_swap::ArcSwap;
use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token, Waker};
use voice_proto::tcp::{ClientMessage, FrameQueue, FrameReader};
use voice_proto::SessionToken;
use voice_tls::{rustls, Fingerprint, TlsStream, Transport};

use crate::admission::Admission;
use crate::config::Config;
use crate::control::Outbox;
use crate::datapath::Registration;
use crate::forward::{Snapshot, WorkerStats};
use crate::state::State;
use crate::stats::{Counter, Stats};
use crate::token::Claims;
use crate::Error;
use tunnel::{TunnelCopy, TUNNEL_QUEUE};
use udp::{Spawnable, Worker, WORKER_UDP, WORKER_WAKER};

mod cluster;
mod tcp;
pub(crate) mod tunnel;
mod udp;

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
    /// The control loop's waker first, then one per worker thread.
    wakers: Vec<Arc<Waker>>,
}

impl Stopper {
    /// Asks the loop (and every worker) to return; each does so within one poll wake-up.
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        for w in &self.wakers {
            if let Err(e) = w.wake() {
                log::warn!("waking the relay loop failed: {e}");
            }
        }
    }
}

#[derive(Debug)]
struct Conn {
    stream: Transport<TcpStream>,
    peer: SocketAddr,
    reader: FrameReader<ClientMessage>,
    out: FrameQueue,
    session: Option<SessionToken>,
    deadline: Time,
    closing: bool,
    /// `close_notify` queued (TLS): sent once, when a closing connection's frames are out.
    close_sent: bool,
    dead: bool,
}

/// A bound relay, ready to [`run`](Relay::run) or [`spawn`](Relay::spawn).
#[derive(Debug)]
pub struct Relay {
    poll: Poll,
    listener: TcpListener,
    /// Worker 0: its socket is drained by this loop.
    worker: Worker,
    /// Workers 1..: started by [`Relay::run`].
    spawn_workers: Vec<Spawnable>,
    /// Every worker's counters (0 first).
    worker_stats: Vec<Arc<WorkerStats>>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    /// The state version the current snapshot shows.
    published: u64,
    registrations: mpsc::Receiver<Registration>,
    registrations_tx: mpsc::Sender<Registration>,
    /// Scale-out: the Redis placement thread (`None`: the relay runs alone).
    cluster: Option<crate::cluster::Cluster>,
    /// Rooms this relay hosts (cluster mode).
    hosted: std::collections::HashSet<voice_proto::ChannelId>,
    /// Joins waiting for a placement answer: (session, room).
    pending_joins: Vec<(SessionToken, voice_proto::ChannelId)>,
    /// Cluster mode: the members of rooms other relays host, as this relay shows them.
    directory: crate::directory::View,
    /// Cluster mode: the members of hosted rooms as last handed to the cluster thread.
    published_members: HashMap<voice_proto::ChannelId, Vec<voice_proto::tcp::UserInfo>>,
    /// The state version those lists were computed at.
    members_version: u64,
    /// Cluster mode: the directory changed since the last `ChannelMembers` were sent.
    directory_dirty: bool,
    /// Cluster mode: every channel's members as sessions were last told.
    told: HashMap<voice_proto::ChannelId, Vec<voice_proto::tcp::UserInfo>>,
    stopper: Stopper,
    local: SocketAddr,
    config: Config,
    /// TLS for every accepted connection; `None` only with `insecure_plaintext`.
    tls: Option<crate::identity::Identity>,
    /// Who may open a session (access tokens or open mode).
    admission: Arc<Admission>,
    state: State,
    stats: Stats,
    conns: HashMap<usize, Conn>,
    next_conn: usize,
    dirty: Vec<usize>,
    /// Tunnel fallback: voice the workers accepted for tunneled members.
    tunnel_copies: mpsc::Receiver<TunnelCopy>,
    outbox: Outbox,
    /// Set whenever a connection may have died since the last reap, so the pure-UDP path never
    /// scans the connection table.
    reap_needed: bool,
    tick: Duration,
    /// The relay's time (workers share its origin).
    clock: MonotonicClock,
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

/// Binds one UDP socket on `addr`: plain, or `SO_REUSEPORT` when several workers share it.
fn bind_udp(addr: SocketAddr, reuseport: bool) -> io::Result<UdpSocket> {
    if reuseport {
        crate::udpio::bind_reuseport(addr).map(UdpSocket::from_std)
    } else {
        UdpSocket::bind(addr)
    }
}

fn bind_pair(addr: SocketAddr, reuseport: bool) -> Result<(TcpListener, UdpSocket), Error> {
    let attempts = if addr.port() == 0 { 20 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let listener = TcpListener::bind(addr).map_err(|source| Error::Bind { addr, source })?;
        let local = listener.local_addr()?;
        match bind_udp(local, reuseport) {
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
        let tls = crate::identity::load(&config)?;
        if tls.is_none() {
            log::warn!(
                "insecure_plaintext: the control connection is NOT encrypted (development only)"
            );
        }
        let workers = config.worker_count();
        let reuseport = workers > 1;
        let admission = Arc::new(Admission::load(&config)?);
        if admission.is_open() {
            log::warn!(
                "open mode: clients are admitted WITHOUT an access token (development only)"
            );
        } else if let Some(path) = admission.key_file() {
            log::info!(
                "access tokens: signed by {}; mint one with `relay token --identity-dir {} --name NAME`",
                path.display(),
                path.parent().map_or(".".into(), |d| d.display().to_string())
            );
        }
        let (mut listener, udp) = bind_pair(config.listen, reuseport)?;
        let local = listener.local_addr()?;
        let mut sockets = vec![udp];
        for _ in 1..workers {
            sockets.push(bind_udp(local, true).map_err(|source| Error::Bind {
                addr: local,
                source,
            })?);
        }
        if config.udp_buffer_bytes > 0 {
            for udp in &sockets {
                set_buffer(udp.as_raw_fd(), libc::SO_RCVBUF, config.udp_buffer_bytes);
                set_buffer(udp.as_raw_fd(), libc::SO_SNDBUF, config.udp_buffer_bytes);
            }
        }
        let clock = MonotonicClock::new();
        let state = State::new(&config);
        let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::of(&state, 0)));
        let (tunnel_tx, tunnel_copies) = mpsc::sync_channel(TUNNEL_QUEUE);
        let mut workers_iter = sockets.into_iter().map(|udp| {
            Worker::new(
                udp,
                state.limits,
                config.batch_io,
                config.check_datagram_tags,
                snapshot.clone(),
                tunnel_tx.clone(),
                clock,
            )
        });
        let mut worker = workers_iter
            .next()
            .ok_or_else(|| Error::Io(io::Error::other("at least one worker socket is bound")))?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        poll.registry()
            .register(worker.socket_mut(), UDP, Interest::READABLE)?;
        let mut wakers = vec![Arc::new(Waker::new(poll.registry(), WAKER)?)];
        let mut worker_stats = vec![worker.stats().clone()];
        let mut spawn_workers = Vec::new();
        for mut w in workers_iter {
            let wpoll = Poll::new()?;
            wpoll
                .registry()
                .register(w.socket_mut(), WORKER_UDP, Interest::READABLE)?;
            wakers.push(Arc::new(Waker::new(wpoll.registry(), WORKER_WAKER)?));
            w.set_control_waker(wakers[0].clone());
            worker_stats.push(w.stats().clone());
            spawn_workers.push(Spawnable {
                worker: w,
                poll: wpoll,
            });
        }
        let shortest = config.handshake_timeout().min(config.idle_timeout());
        let tick = (shortest / 4).clamp(Duration::from_millis(1), Duration::from_millis(100));
        let (registrations_tx, registrations) = mpsc::channel();
        let cluster = match &config.redis {
            None => None,
            Some(url) => Some(
                crate::cluster::Cluster::start(
                    crate::cluster::ClusterConfig {
                        redis: url.clone(),
                        advertise: config.advertise.unwrap_or(local),
                        lease: Duration::from_millis(config.lease_ms),
                        channels: state.channels.keys().copied().collect(),
                    },
                    wakers[0].clone(),
                )
                .map_err(Error::Io)?,
            ),
        };
        let directory = crate::directory::View::new(config.advertise.unwrap_or(local).to_string());
        Ok(Relay {
            cluster,
            hosted: Default::default(),
            pending_joins: Vec::new(),
            directory,
            published_members: HashMap::new(),
            members_version: u64::MAX,
            directory_dirty: false,
            told: HashMap::new(),
            poll,
            listener,
            worker,
            spawn_workers,
            worker_stats,
            published: state.version(),
            snapshot,
            registrations,
            registrations_tx,
            stopper: Stopper {
                flag: Arc::new(AtomicBool::new(false)),
                wakers,
            },
            local,
            state,
            config,
            tls,
            admission,
            stats: Stats::new(),
            conns: HashMap::new(),
            next_conn: FIRST_CONN,
            dirty: Vec::new(),
            tunnel_copies,
            outbox: Vec::new(),
            reap_needed: false,
            tick,
            clock,
        })
    }

    /// The bound address (TCP and UDP share it).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The SHA-256 fingerprint of the TLS certificate clients see (`None`: plaintext mode).
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        self.tls.as_ref().map(|t| t.fingerprint)
    }

    /// A token this relay accepts for `claims`, signed with its own key (`None` when it checks
    /// the operator's keys or runs open). For tests and embedded development relays.
    pub fn mint_token(&self, claims: &Claims) -> Option<String> {
        self.admission.mint(claims)
    }

    /// A token for `name` (every channel, whisper to anyone, one hour), as
    /// [`Relay::mint_token`].
    pub fn token_for(&self, name: &str) -> Option<String> {
        self.admission
            .mint(&Claims::for_name(name, self.admission.audience(), 3600))
    }

    /// A handle that stops [`Relay::run`] from another thread.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Runs the relay on a thread named `relay` and returns a handle to stop it.
    pub fn spawn(self) -> Result<RelayHandle, Error> {
        let addr = self.local;
        let fingerprint = self.fingerprint();
        let stopper = self.stopper();
        let admission = Arc::clone(&self.admission);
        let thread = std::thread::Builder::new()
            .name("relay".into())
            .spawn(move || self.run())?;
        Ok(RelayHandle {
            addr,
            fingerprint,
            admission,
            stopper,
            thread: Some(thread),
        })
    }

    /// Forwarding workers (UDP sockets sharing the address).
    pub fn workers(&self) -> usize {
        self.worker_stats.len()
    }

    /// Runs the loop (and the worker threads) until stopped. Returns the final counters, summed
    /// over workers.
    pub fn run(mut self) -> Result<Stats, Error> {
        let mut threads = Vec::new();
        for (i, s) in std::mem::take(&mut self.spawn_workers)
            .into_iter()
            .enumerate()
        {
            let index = i + 1;
            let stop = self.stopper.flag.clone();
            let tx = self.registrations_tx.clone();
            let control = self.stopper.wakers[0].clone();
            let tick = self.tick;
            let t = std::thread::Builder::new()
                .name(format!("relay-w{index}"))
                .spawn(move || udp::run_worker(index, s, stop, tx, control, tick));
            match t {
                Ok(t) => threads.push(t),
                Err(e) => {
                    self.stopper.stop();
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(e.into());
                }
            }
        }
        let r = self.run_control();
        self.stopper.stop();
        for t in threads {
            if t.join().is_err() {
                log::error!("a relay worker panicked");
            }
        }
        r.map(|()| {
            self.refresh_gauges();
            self.log_stats();
            log::info!("relay stopped");
            self.merged_stats()
        })
    }

    fn run_control(&mut self) -> Result<(), Error> {
        let mut events = Events::with_capacity(1024);
        let mut next_tick = self.clock.now() + self.tick;
        let stats_every = Duration::from_millis(self.config.stats_interval_ms);
        let mut next_stats = self.clock.now() + stats_every;
        log::info!(
            "relay listening on {} (tcp+udp, {} worker{})",
            self.local,
            self.workers(),
            if self.workers() == 1 { "" } else { "s" }
        );
        while !self.stopper.flag.load(Ordering::SeqCst) {
            let now = self.clock.now();
            let timeout = if self.worker.pending {
                Duration::ZERO
            } else {
                next_tick.saturating_since(now)
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e.into());
            }
            let mut udp_ready = self.worker.pending;
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
            self.take_registrations();
            self.take_placements();
            if udp_ready {
                self.drain_udp();
            }
            self.take_tunnel_copies();
            let now = self.clock.now();
            if now >= next_tick {
                self.expire(now);
                self.expire_sessions(now);
                self.worker.housekeep();
                next_tick = now + self.tick;
            }
            if stats_every > Duration::ZERO && now >= next_stats {
                self.refresh_gauges();
                self.log_stats();
                next_stats = now + stats_every;
            }
            self.cluster_turn();
            // Members and bindings the replies below announce are visible to every worker
            // before the replies leave.
            self.publish();
            self.flush_dirty();
            while self.reap() {
                self.cluster_turn();
                self.publish();
                self.flush_dirty();
            }
        }
        Ok(())
    }

    /// Publishes a new snapshot when the state changed since the last one.
    fn publish(&mut self) {
        let v = self.state.version();
        if v != self.published {
            self.published = v;
            self.snapshot.store(Arc::new(Snapshot::of(&self.state, v)));
        }
    }

    /// Drains worker 0's socket; registrations are verified inline.
    fn drain_udp(&mut self) {
        let state = &mut self.state;
        let stats = &mut self.stats;
        let snapshot = &self.snapshot;
        let published = &mut self.published;
        self.worker.drain(&mut |reg: Registration| {
            let r = reg.verify(state, stats);
            if r.is_some() && state.version() != *published {
                *published = state.version();
                snapshot.store(Arc::new(Snapshot::of(state, *published)));
            }
            r
        });
    }

    /// Verifies the registrations other workers passed on and acknowledges them from socket 0.
    fn take_registrations(&mut self) {
        while let Ok(reg) = self.registrations.try_recv() {
            if let Some(counter) = reg.verify(&mut self.state, &mut self.stats) {
                self.publish();
                if let Some(s) = self.state.sessions.get(&reg.header.sender) {
                    udp::send_ack(
                        self.worker.socket(),
                        self.worker.stats(),
                        &s.tag_key,
                        &reg.header,
                        counter,
                        reg.src,
                    );
                }
            }
        }
    }

    /// Control counters plus every worker's.
    fn merged_stats(&self) -> Stats {
        let mut s = self.stats.clone();
        for w in &self.worker_stats {
            w.add_to(&mut s);
        }
        s
    }

    fn refresh_gauges(&mut self) {
        self.state.report_gauges(&mut self.stats, self.conns.len());
    }

    fn log_stats(&self) {
        let s = &self.merged_stats();
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
                    let stream = match &self.tls {
                        None => Transport::Plain(stream),
                        Some(tls) => match rustls::ServerConnection::new(tls.config.clone()) {
                            Ok(c) => Transport::Tls(Box::new(TlsStream::new(c, stream))),
                            Err(e) => {
                                log::warn!("TLS session for {peer}: {e}");
                                let _ = self.poll.registry().deregister(&mut stream);
                                continue;
                            }
                        },
                    };
                    self.conns.insert(
                        id,
                        Conn {
                            stream,
                            peer,
                            reader: FrameReader::new(),
                            out: FrameQueue::new(),
                            session: None,
                            deadline: self.clock.now() + self.config.handshake_timeout(),
                            closing: false,
                            close_sent: false,
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
}

/// A relay running on its own thread; stops it when dropped.
#[derive(Debug)]
pub struct RelayHandle {
    addr: SocketAddr,
    fingerprint: Option<Fingerprint>,
    admission: Arc<Admission>,
    stopper: Stopper,
    thread: Option<std::thread::JoinHandle<Result<Stats, Error>>>,
}

impl RelayHandle {
    /// The relay's address (TCP and UDP).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The TLS certificate's fingerprint (`None`: plaintext mode).
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        self.fingerprint
    }

    /// A token this relay accepts for `claims` (see [`Relay::mint_token`]).
    pub fn mint_token(&self, claims: &Claims) -> Option<String> {
        self.admission.mint(claims)
    }

    /// A token for `name` (see [`Relay::token_for`]).
    pub fn token_for(&self, name: &str) -> Option<String> {
        self.admission
            .mint(&Claims::for_name(name, self.admission.audience(), 3600))
    }

    /// The audience tokens for this relay must name.
    pub fn audience(&self) -> &str {
        self.admission.audience()
    }

    /// The relay's admission policy (shared; mints tokens with [`Admission::token_for`]).
    pub fn admission(&self) -> Arc<Admission> {
        Arc::clone(&self.admission)
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
