//! The UDP side: a [`Worker`] owns one (`SO_REUSEPORT`) socket and drains it in `recvmmsg`
//! batches (or one `recv_from` at a time with `batch_io = false`), decides per datagram with the
//! control plane's published [`Snapshot`] and its own [`Senders`], and forwards the exact
//! received bytes with `sendmmsg` before the receive slots are reused. Pongs are answered here;
//! registrations go to the control plane (which owns the secrets) through a closure, and their
//! acks are sent here or by the control plane, never larger than the request.
//!
//! Worker 0 runs inside the control thread's loop; workers 1.. run [`run_worker`] on their own
//! threads. Every per-datagram decision is `Path::on_datagram`: one place to add a check.
//! Datagrams that arrive through a tunnel (a session's control connection, on the control
//! thread) take the same path through worker 0 ([`Worker::on_tunneled`]); accepted voice with
//! tunneled recipients is handed to the control thread, which owns the connections.
//!
//! Every Voice, Register and Ping datagram's tag is checked first, against its sender session's
//! key from the snapshot (`drop_bad_tag`); forwarded voice leaves with its tag unchanged, and
//! replies are tagged with the recipient's key.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use arc_swap::cache::Cache;
use arc_swap::ArcSwap;
use mio::net::UdpSocket;
use mio::{Events, Poll, Token, Waker};
use voice_proto::udp::{self, DatagramKind, Header, Position, TagKey, UdpError, MAX_DATAGRAM};
use voice_proto::SessionToken;

use super::tunnel::TunnelCopy;
use super::{MAX_UDP_BATCHES_PER_TURN, RECV_BATCH, SEND_BATCH};
use crate::forward::{Senders, Snapshot, WorkerStats};
use crate::state::{DropReason, Limits};
use crate::stats::Counter;
use crate::udpio::{RecvBatch, SendBatch, SLOT};

/// A `Register` datagram handed to the control plane.
#[derive(Debug)]
pub(crate) struct Registration {
    /// Where it came from (the address to bind).
    pub src: SocketAddr,
    /// Its header.
    pub header: Header,
    /// Its payload (the proof).
    pub payload: Vec<u8>,
}

/// What the control plane says about a registration: `Some(counter)` to ack it now, `None`
/// when it failed or will be acked later.
pub(crate) type Registrar<'a> = dyn FnMut(Registration) -> Option<u64> + 'a;

/// Where a datagram came from.
#[derive(Debug, Clone, Copy)]
enum Origin {
    /// This worker's socket, from this address.
    Udp(SocketAddr),
    /// The control connection of this (admitted) session: tunnel fallback.
    Tunnel(SessionToken),
}

/// One UDP socket and everything its forwarding path owns.
pub(crate) struct Worker {
    path: Path,
    recv: Option<RecvBatch>,
    send: SendBatch,
    /// The control plane's latest snapshot, cached: a load is one atomic read of a pointer
    /// that only changes when the control plane publishes.
    snap: Cache<Arc<ArcSwap<Snapshot>>, Arc<Snapshot>>,
    batch_io: bool,
    /// The socket was left undrained (poll again without blocking).
    pub(crate) pending: bool,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("udp", &self.path.udp)
            .field("senders", &self.path.senders.len())
            .field("pending", &self.pending)
            .finish()
    }
}

/// The per-datagram decision and what it writes: this worker's socket (for replies), sender
/// states, recipients and counters.
#[derive(Debug)]
struct Path {
    udp: UdpSocket,
    senders: Senders,
    recipients: Vec<SocketAddr>,
    stats: Arc<WorkerStats>,
    /// Check datagram tags (`check_datagram_tags`; off only to measure what the check costs).
    check_tags: bool,
    /// Tunneled recipients of the datagram being decided.
    tunnel_to: Vec<SessionToken>,
    /// Copies for tunneled members go to the control thread (it owns the connections).
    to_control: mpsc::SyncSender<TunnelCopy>,
    /// Wakes the control thread (workers 1..; worker 0 runs on it and is drained each turn).
    control: Option<Arc<Waker>>,
}

impl Worker {
    pub(crate) fn new(
        udp: UdpSocket,
        limits: Limits,
        batch_io: bool,
        check_tags: bool,
        snapshot: Arc<ArcSwap<Snapshot>>,
        to_control: mpsc::SyncSender<TunnelCopy>,
    ) -> Self {
        Worker {
            path: Path {
                udp,
                senders: Senders::new(limits),
                recipients: Vec::with_capacity(64),
                stats: Arc::new(WorkerStats::default()),
                check_tags,
                tunnel_to: Vec::new(),
                to_control,
                control: None,
            },
            recv: Some(RecvBatch::new(RECV_BATCH)),
            send: SendBatch::new(SEND_BATCH),
            snap: Cache::new(snapshot),
            batch_io,
            pending: false,
        }
    }

    /// Runs on its own thread: wake the control thread with `waker` when handing it a copy.
    pub(crate) fn set_control_waker(&mut self, waker: Arc<Waker>) {
        self.path.control = Some(waker);
    }

    /// This worker's counters.
    pub(crate) fn stats(&self) -> &Arc<WorkerStats> {
        &self.path.stats
    }

    /// This worker's socket.
    pub(crate) fn socket(&self) -> &UdpSocket {
        &self.path.udp
    }

    /// This worker's socket, to register with a poll.
    pub(crate) fn socket_mut(&mut self) -> &mut UdpSocket {
        &mut self.path.udp
    }

    /// A datagram that arrived through `who`'s control connection (tunnel fallback; only the
    /// control thread, which owns worker 0, calls this). Decided by the same per-datagram path
    /// as one from the socket (parse, tag, routing, replay window, budgets), with the
    /// connection instead of a source address authenticating the sender; UDP copies leave from
    /// this socket, tunneled recipients get theirs through the control thread's queue.
    pub(crate) fn on_tunneled(&mut self, who: SessionToken, data: &[u8]) {
        let now = Instant::now();
        let snap = self.snap.load();
        let path = &mut self.path;
        if path.on_datagram(snap, now, data, Origin::Tunnel(who), &mut |_| None) {
            for r in 0..path.recipients.len() {
                match path.udp.send_to(data, path.recipients[r]) {
                    Ok(_) => path.count_flush(1, data.len(), 0),
                    Err(_) => path.count_flush(0, 0, 1),
                }
            }
        }
    }

    /// Forgets senders that left or moved (off the per-datagram path).
    pub(crate) fn housekeep(&mut self) {
        let snap = self.snap.load();
        self.path.senders.retain_live(snap);
    }

    pub(crate) fn drain(&mut self, registrar: &mut Registrar<'_>) {
        self.pending = false;
        if !self.batch_io {
            return self.drain_simple(registrar);
        }
        let Some(mut recv) = self.recv.take() else {
            return;
        };
        let fd = self.path.udp.as_raw_fd();
        for turn in 0..=MAX_UDP_BATCHES_PER_TURN {
            if turn == MAX_UDP_BATCHES_PER_TURN {
                self.pending = true;
                break;
            }
            match recv.recv(fd) {
                Ok(n) => {
                    let now = Instant::now();
                    // One snapshot per batch: no lock, nothing shared written.
                    let snap = self.snap.load();
                    let path = &mut self.path;
                    for i in 0..n {
                        let (data, src) = recv.get(i);
                        let Some(src) = src else { continue };
                        if path.on_datagram(snap, now, data, Origin::Udp(src), registrar) {
                            for r in 0..path.recipients.len() {
                                if self.send.is_full() {
                                    let f = self.send.flush(fd, &recv);
                                    path.count_flush(f.sent, f.bytes, f.failed);
                                }
                                // Cannot fail: the batch was just flushed if full, and
                                // `data` is a received slot. Counted if it ever did.
                                if !self.send.push(i, data.len(), &path.recipients[r]) {
                                    path.count_flush(0, 0, 1);
                                }
                            }
                        }
                    }
                    if !self.send.is_empty() {
                        let f = self.send.flush(fd, &recv);
                        path.count_flush(f.sent, f.bytes, f.failed);
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
    fn drain_simple(&mut self, registrar: &mut Registrar<'_>) {
        let mut buf = [0u8; SLOT];
        for turn in 0..=MAX_UDP_BATCHES_PER_TURN * RECV_BATCH {
            if turn == MAX_UDP_BATCHES_PER_TURN * RECV_BATCH {
                self.pending = true;
                break;
            }
            let path = &mut self.path;
            match path.udp.recv_from(&mut buf) {
                Ok((n, src)) => {
                    let now = Instant::now();
                    let snap = self.snap.load();
                    if path.on_datagram(snap, now, &buf[..n], Origin::Udp(src), registrar) {
                        for r in 0..path.recipients.len() {
                            match path.udp.send_to(&buf[..n], path.recipients[r]) {
                                Ok(_) => path.count_flush(1, n, 0),
                                Err(_) => path.count_flush(0, 0, 1),
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
}

impl Path {
    /// Accepted voice with tunneled recipients in `snap`: a copy to the control thread, which
    /// queues it into their connections. A full queue drops the copy (counted).
    /// Tunneled listeners out of range of the sender's `position` are culled like UDP ones.
    fn hand_to_tunnels(
        &mut self,
        snap: &Snapshot,
        header: &Header,
        position: Option<Position>,
        data: &[u8],
    ) {
        snap.tunnel_recipients(header, &mut self.tunnel_to);
        let culled = snap.cull_tunnel_recipients(header, position, &mut self.tunnel_to);
        self.stats.add(Counter::VoiceCulled, culled as u64);
        if self.tunnel_to.is_empty() {
            return;
        }
        let copy = TunnelCopy {
            recipients: self.tunnel_to.clone(),
            datagram: data.to_vec(),
        };
        match self.to_control.try_send(copy) {
            Ok(()) => {
                if let Some(w) = &self.control {
                    if let Err(e) = w.wake() {
                        log::warn!("waking the control plane: {e}");
                    }
                }
            }
            Err(_) => self.stats.inc(Counter::DropSendFailed),
        }
    }

    /// Counts the verdict on a voice datagram (from UDP or a tunnel alike); accepted voice is
    /// culled by distance in a 3D channel (recording the sender's `position` first), then goes
    /// to the tunneled recipients (a copy to the control thread) and, when this returns true,
    /// to `self.recipients`.
    fn accepted(
        &mut self,
        snap: &Snapshot,
        h: &Header,
        position: Option<Position>,
        data: &[u8],
        verdict: Result<(), DropReason>,
    ) -> bool {
        match verdict {
            Ok(()) => {
                self.stats.inc(Counter::VoiceAccepted);
                // Proximity culling (3D channels), from the positions in the snapshot's
                // shared cells; also records the sender's own position there.
                let culled = snap.cull_out_of_range(h, position, &mut self.recipients);
                self.stats.add(Counter::VoiceCulled, culled as u64);
                if snap.has_tunnels() {
                    self.hand_to_tunnels(snap, h, position, data);
                }
                !self.recipients.is_empty()
            }
            Err(r) => {
                self.stats.inc(r.counter());
                false
            }
        }
    }

    fn count_flush(&mut self, sent: usize, bytes: usize, failed: usize) {
        self.stats.add(Counter::ForwardedPackets, sent as u64);
        self.stats.add(Counter::ForwardedBytes, bytes as u64);
        self.stats.add(Counter::DropSendFailed, failed as u64);
    }

    /// Decides what to do with one datagram. Returns true when it should be forwarded to
    /// `self.recipients`; replies (RegisterAck, Pong) are sent here. Every per-datagram check
    /// belongs in this function.
    fn on_datagram(
        &mut self,
        snap: &Snapshot,
        now: Instant,
        data: &[u8],
        origin: Origin,
        registrar: &mut Registrar<'_>,
    ) -> bool {
        match origin {
            Origin::Udp(_) => {
                self.stats.inc(Counter::UdpRxPackets);
                self.stats.add(Counter::UdpRxBytes, data.len() as u64);
            }
            Origin::Tunnel(_) => self.stats.inc(Counter::TunnelRxPackets),
        }
        let d = match udp::parse(data) {
            Ok(d) => d,
            Err(e) => {
                self.stats.inc(match e {
                    UdpError::TooShort(_) => Counter::DropTooShort,
                    UdpError::TooLong(_) => Counter::DropTooLong,
                    UdpError::UnsupportedVersion(_) => Counter::DropBadVersion,
                    UdpError::UnknownKind(_) => Counter::DropBadKind,
                    UdpError::BadTag => Counter::DropBadTag,
                    UdpError::NoSender | UdpError::BufferTooSmall { .. } => Counter::DropNoSender,
                    UdpError::BadPosition => Counter::DropBadPosition,
                });
                return false;
            }
        };
        let h = d.header;
        // Every datagram a client sends is tagged with its session's key: checked first.
        if matches!(
            h.kind,
            DatagramKind::Voice | DatagramKind::Register | DatagramKind::Ping
        ) && self.check_tags
        {
            if let Err(r) = snap.check_tag(h.sender, data) {
                self.stats.inc(match (h.kind, r) {
                    (DatagramKind::Register, DropReason::UnknownSession) => {
                        Counter::RegisterUnknownSession
                    }
                    _ => r.counter(),
                });
                return false;
            }
        }
        let src = match origin {
            Origin::Udp(src) => src,
            Origin::Tunnel(who) => {
                if h.kind != DatagramKind::Voice {
                    // Registration and keep-alives prove UDP; inside a tunnel they mean nothing.
                    self.stats.inc(Counter::DropBadKind);
                    return false;
                }
                let r = self.senders.accept_tunneled(
                    snap,
                    now,
                    who,
                    &h,
                    data.len(),
                    &mut self.recipients,
                );
                return self.accepted(snap, &h, d.position, data, r);
            }
        };
        match h.kind {
            DatagramKind::Voice => {
                let r =
                    self.senders
                        .accept_voice(snap, now, src, &h, data.len(), &mut self.recipients);
                self.accepted(snap, &h, d.position, data, r)
            }
            DatagramKind::Register => {
                let reg = Registration {
                    src,
                    header: h,
                    payload: d.payload.to_vec(),
                };
                if let Some(counter) = registrar(reg) {
                    if let Some(key) = snap.tag_key(h.sender) {
                        send_ack(&self.udp, &self.stats, key, &h, counter, src);
                    }
                }
                false
            }
            DatagramKind::Ping => {
                match snap.check_source(src, h.sender) {
                    Ok(()) => {
                        self.stats.inc(Counter::UdpPings);
                        snap.record_position(h.sender, d.position);
                        let pong = Header {
                            kind: DatagramKind::Pong,
                            ..h
                        };
                        if let Some(key) = snap.tag_key(h.sender) {
                            reply(&self.udp, &self.stats, key, &pong, d.payload, src);
                        }
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
}

/// Acknowledges a registration of `request` (its header) with the verified `counter`, tagged
/// with the registering session's `key`.
pub(crate) fn send_ack(
    udp: &UdpSocket,
    stats: &WorkerStats,
    key: &TagKey,
    request: &Header,
    counter: u64,
    dst: SocketAddr,
) {
    let ack = Header {
        kind: DatagramKind::RegisterAck,
        flags: udp::Flags::default(),
        timestamp: 0,
        target: SessionToken::NONE,
        ..*request
    };
    reply(udp, stats, key, &ack, &counter.to_le_bytes(), dst);
}

/// Sends `header` + `payload` to `dst`, tagged with the recipient session's `key`.
fn reply(
    udp: &UdpSocket,
    stats: &WorkerStats,
    key: &TagKey,
    header: &Header,
    payload: &[u8],
    dst: SocketAddr,
) {
    let mut buf = [0u8; MAX_DATAGRAM];
    match udp::write(header, payload, key, &mut buf) {
        Ok(n) => {
            if let Err(e) = udp.send_to(&buf[..n], dst) {
                stats.inc(Counter::DropSendFailed);
                log::debug!("reply to {dst}: {e}");
            }
        }
        Err(e) => log::debug!("reply encode: {e}"),
    }
}

/// A worker that runs on its own thread: its poll, its wake-up and the way to the control plane.
#[derive(Debug)]
pub(crate) struct Spawnable {
    pub(crate) worker: Worker,
    pub(crate) poll: Poll,
}

/// Token of a worker's socket in its own poll.
pub(crate) const WORKER_UDP: Token = Token(0);
/// Token of a worker's waker in its own poll.
pub(crate) const WORKER_WAKER: Token = Token(1);

/// The loop of worker `index` (1..): drain the socket when readable, hand registrations to the
/// control plane, forget departed senders every `tick`, until `stop` is set.
pub(crate) fn run_worker(
    index: usize,
    s: Spawnable,
    stop: Arc<AtomicBool>,
    to_control: mpsc::Sender<Registration>,
    control: Arc<Waker>,
    tick: Duration,
) {
    let Spawnable {
        mut worker,
        mut poll,
    } = s;
    let mut events = Events::with_capacity(64);
    let mut next_tick = Instant::now() + tick;
    let mut registrar = |reg: Registration| {
        if to_control.send(reg).is_ok() {
            if let Err(e) = control.wake() {
                log::warn!("worker {index}: waking the control plane: {e}");
            }
        }
        None
    };
    while !stop.load(Ordering::SeqCst) {
        let timeout = if worker.pending {
            Duration::ZERO
        } else {
            next_tick.saturating_duration_since(Instant::now())
        };
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            log::error!("worker {index}: poll: {e}");
            return;
        }
        let ready = worker.pending || events.iter().any(|e| e.token() == WORKER_UDP);
        if ready {
            worker.drain(&mut registrar);
        }
        let now = Instant::now();
        if now >= next_tick {
            worker.housekeep();
            next_tick = now + tick;
        }
    }
    log::debug!("worker {index} stopped");
}
