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
//!
//! This file holds the loop, binding and the handle; `udp` (datagram path) and `tcp`
//! (connections, timeouts, reaping) hold the two halves of the work.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token, Waker};
use voice_core::proto::tcp::{ClientMessage, FrameQueue, FrameReader};
use voice_core::proto::SessionToken;
use voice_tls::{rustls, Fingerprint, TlsStream, Transport};

use crate::config::Config;
use crate::control::Outbox;
use crate::state::State;
use crate::stats::{Counter, Stats};
use crate::udpio::{RecvBatch, SendBatch};
use crate::Error;

mod tcp;
mod tunnel;
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
    stream: Transport<TcpStream>,
    peer: SocketAddr,
    reader: FrameReader<ClientMessage>,
    out: FrameQueue,
    session: Option<SessionToken>,
    deadline: Instant,
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
    udp: UdpSocket,
    stopper: Stopper,
    local: SocketAddr,
    config: Config,
    /// TLS for every accepted connection; `None` only with `insecure_plaintext`.
    tls: Option<crate::identity::Identity>,
    state: State,
    stats: Stats,
    conns: HashMap<usize, Conn>,
    next_conn: usize,
    dirty: Vec<usize>,
    recv: Option<RecvBatch>,
    send: SendBatch,
    recipients: Vec<SocketAddr>,
    /// Connections of tunneled recipients of the datagram being forwarded.
    tunnel_conns: Vec<usize>,
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
        let tls = crate::identity::load(&config)?;
        if tls.is_none() {
            log::warn!(
                "insecure_plaintext: the control connection is NOT encrypted (development only)"
            );
        }
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
            tls,
            stats: Stats::new(),
            conns: HashMap::new(),
            next_conn: FIRST_CONN,
            dirty: Vec::new(),
            recv: Some(RecvBatch::new(RECV_BATCH)),
            send: SendBatch::new(SEND_BATCH),
            recipients: Vec::with_capacity(64),
            tunnel_conns: Vec::new(),
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

    /// The SHA-256 fingerprint of the TLS certificate clients see (`None`: plaintext mode).
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        self.tls.as_ref().map(|t| t.fingerprint)
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
        let thread = std::thread::Builder::new()
            .name("relay".into())
            .spawn(move || self.run())?;
        Ok(RelayHandle {
            addr,
            fingerprint,
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
        self.stats
            .set(Counter::Tunneled, self.state.tunneled_count() as u64);
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
                            deadline: Instant::now() + self.config.handshake_timeout(),
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
