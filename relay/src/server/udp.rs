//! The UDP side: a [`Worker`] owns one (`SO_REUSEPORT`) socket and drains it in `recvmmsg`
//! batches (or one `recv_from` at a time with `batch_io = false`), decides per datagram with the
//! control plane's published [`Snapshot`] and its own [`Senders`], and forwards the exact
//! received bytes with `sendmmsg` before the receive slots are reused. Pongs are answered here;
//! registrations go to the control plane (which owns the secrets) through a closure, and their
//! acks are sent here or by the control plane, never larger than the request.
//!
//! Worker 0 runs inside the control thread's loop; workers 1.. run [`run_worker`] on their own
//! threads. Every per-datagram decision is [`Path::on_datagram`](crate::datapath::Path) (in
//! `crate::datapath`, without a socket): one place to add a check; the worker sends what its
//! verdict says.
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
use std::time::Duration;

use arc_swap::cache::Cache;
use arc_swap::ArcSwap;
use mio::net::UdpSocket;
use mio::{Events, Poll, Token, Waker};
use voice_proto::time::MonotonicClock;
use voice_proto::udp::{Header, TagKey, MAX_DATAGRAM};
use voice_proto::SessionToken;

use super::tunnel::TunnelCopy;
use super::{MAX_UDP_BATCHES_PER_TURN, RECV_BATCH, SEND_BATCH};
use crate::datapath::{write_ack, Origin, Path, Registrar, Registration, Verdict};
use crate::forward::{Snapshot, WorkerStats};
use crate::state::Limits;
use crate::stats::Counter;
use crate::udpio::{RecvBatch, SendBatch, SLOT};

/// One UDP socket and everything its forwarding path owns.
pub(crate) struct Worker {
    udp: UdpSocket,
    path: Path,
    recv: Option<RecvBatch>,
    send: SendBatch,
    /// The control plane's latest snapshot, cached: a load is one atomic read of a pointer
    /// that only changes when the control plane publishes.
    snap: Cache<Arc<ArcSwap<Snapshot>>, Arc<Snapshot>>,
    batch_io: bool,
    /// The relay's clock (shared origin with the control thread's).
    clock: MonotonicClock,
    /// The socket was left undrained (poll again without blocking).
    pub(crate) pending: bool,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("udp", &self.udp)
            .field("senders", &self.path.senders.len())
            .field("pending", &self.pending)
            .finish()
    }
}

impl Worker {
    pub(crate) fn new(
        udp: UdpSocket,
        limits: Limits,
        batch_io: bool,
        check_tags: bool,
        snapshot: Arc<ArcSwap<Snapshot>>,
        to_control: mpsc::SyncSender<TunnelCopy>,
        clock: MonotonicClock,
    ) -> Self {
        Worker {
            udp,
            path: Path::new(limits, check_tags, to_control),
            recv: Some(RecvBatch::new(RECV_BATCH)),
            send: SendBatch::new(SEND_BATCH),
            snap: Cache::new(snapshot),
            batch_io,
            clock,
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
        &self.udp
    }

    /// This worker's socket, to register with a poll.
    pub(crate) fn socket_mut(&mut self) -> &mut UdpSocket {
        &mut self.udp
    }

    /// A datagram that arrived through `who`'s control connection (tunnel fallback; only the
    /// control thread, which owns worker 0, calls this). Decided by the same per-datagram path
    /// as one from the socket (parse, tag, routing, replay window, budgets), with the
    /// connection instead of a source address authenticating the sender; UDP copies leave from
    /// this socket, tunneled recipients get theirs through the control thread's queue.
    pub(crate) fn on_tunneled(&mut self, who: SessionToken, data: &[u8]) {
        let now = self.clock.now();
        let snap = self.snap.load();
        let path = &mut self.path;
        let verdict = path.on_datagram(snap, now, data, Origin::Tunnel(who), &mut |_| None);
        if verdict == Verdict::Forward {
            for r in 0..path.recipients.len() {
                match self.udp.send_to(data, path.recipients[r]) {
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
        let fd = self.udp.as_raw_fd();
        for turn in 0..=MAX_UDP_BATCHES_PER_TURN {
            if turn == MAX_UDP_BATCHES_PER_TURN {
                self.pending = true;
                break;
            }
            match recv.recv(fd) {
                Ok(n) => {
                    let now = self.clock.now();
                    // One snapshot per batch: no lock, nothing shared written.
                    let snap = self.snap.load();
                    let path = &mut self.path;
                    for i in 0..n {
                        let (data, src) = recv.get(i);
                        let Some(src) = src else { continue };
                        match path.on_datagram(snap, now, data, Origin::Udp(src), registrar) {
                            Verdict::Forward => {
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
                            Verdict::Reply { dst, len } => {
                                send_reply(&self.udp, path, len, dst);
                            }
                            Verdict::Drop => {}
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
            match self.udp.recv_from(&mut buf) {
                Ok((n, src)) => {
                    let now = self.clock.now();
                    let snap = self.snap.load();
                    match path.on_datagram(snap, now, &buf[..n], Origin::Udp(src), registrar) {
                        Verdict::Forward => {
                            for r in 0..path.recipients.len() {
                                match self.udp.send_to(&buf[..n], path.recipients[r]) {
                                    Ok(_) => path.count_flush(1, n, 0),
                                    Err(_) => path.count_flush(0, 0, 1),
                                }
                            }
                        }
                        Verdict::Reply { dst, len } => send_reply(&self.udp, path, len, dst),
                        Verdict::Drop => {}
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => log::debug!("recv_from: {e}"),
            }
        }
    }
}

/// Sends the reply `path` wrote (`len` bytes) to `dst`; a failure is counted.
fn send_reply(udp: &UdpSocket, path: &Path, len: usize, dst: SocketAddr) {
    if let Err(e) = udp.send_to(path.reply(len), dst) {
        path.stats.inc(Counter::DropSendFailed);
        log::debug!("reply to {dst}: {e}");
    }
}

/// Acknowledges a registration another worker passed on (`request` is its header) from `udp`,
/// tagged with the registering session's `key`.
pub(crate) fn send_ack(
    udp: &UdpSocket,
    stats: &WorkerStats,
    key: &TagKey,
    request: &Header,
    counter: u64,
    dst: SocketAddr,
) {
    let mut buf = [0u8; MAX_DATAGRAM];
    if let Some(n) = write_ack(key, request, counter, &mut buf) {
        if let Err(e) = udp.send_to(&buf[..n], dst) {
            stats.inc(Counter::DropSendFailed);
            log::debug!("ack to {dst}: {e}");
        }
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
    let mut next_tick = worker.clock.now() + tick;
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
            next_tick.saturating_since(worker.clock.now())
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
        let now = worker.clock.now();
        if now >= next_tick {
            worker.housekeep();
            next_tick = now + tick;
        }
    }
    log::debug!("worker {index} stopped");
}
