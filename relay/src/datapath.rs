//! The per-datagram path: one function ([`Path::on_datagram`]) decides what happens to every
//! datagram, from a socket or a tunnel alike — parse, tag check, routing, replay window, budgets,
//! proximity culling, counters — and says what to send as a [`Verdict`]. No socket and no clock
//! here: the relay's workers (`server::udp`) send what it says, and the in-memory relay
//! ([`crate::memory`]) runs the very same function in deterministic tests.

use std::net::SocketAddr;
use std::sync::{mpsc, Arc};

use mio::Waker;
use voice_proto::time::Time;
use voice_proto::udp::{self, DatagramKind, Header, Position, TagKey, UdpError, MAX_DATAGRAM};
use voice_proto::SessionToken;

use crate::forward::{Senders, Snapshot, WorkerStats};
use crate::server::tunnel::TunnelCopy;
use crate::state::{DropReason, Limits, State};
use crate::stats::{Counter, Stats};

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

impl Registration {
    /// Verifies the proof against `state` (binding the source address on success); counts the
    /// outcome. `Some(counter)`: acknowledge with this counter.
    pub(crate) fn verify(&self, state: &mut State, stats: &mut Stats) -> Option<u64> {
        match state.register(self.src, self.header.sender, &self.payload) {
            Ok(counter) => {
                stats.inc(Counter::RegisterOk);
                Some(counter)
            }
            Err(f) => {
                stats.inc(f.counter());
                None
            }
        }
    }
}

/// What the control plane says about a registration: `Some(counter)` to ack it now, `None`
/// when it failed or will be acked later.
pub(crate) type Registrar<'a> = dyn FnMut(Registration) -> Option<u64> + 'a;

/// Where a datagram came from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Origin {
    /// This worker's socket, from this address.
    Udp(SocketAddr),
    /// The control connection of this (admitted) session: tunnel fallback.
    Tunnel(SessionToken),
}

/// What to do with a datagram, as [`Path::on_datagram`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing to send (dropped and counted, or consumed: a registration acked later).
    Drop,
    /// Send the exact datagram to every address in [`Path::recipients`].
    Forward,
    /// Send the first `len` bytes of [`Path::reply`] to `dst` (RegisterAck, Pong).
    Reply {
        /// Where the answer goes (the datagram's source).
        dst: SocketAddr,
        /// Its length.
        len: usize,
    },
}

/// The per-datagram decision and what it writes: sender states, recipients, the reply buffer
/// and counters. No socket: the caller sends what the verdict says.
#[derive(Debug)]
pub(crate) struct Path {
    /// Sender states (sequence windows, budgets) of the senders this path has seen.
    pub(crate) senders: Senders,
    /// The UDP recipients of the datagram just decided ([`Verdict::Forward`]).
    pub(crate) recipients: Vec<SocketAddr>,
    /// This path's counters.
    pub(crate) stats: Arc<WorkerStats>,
    /// Check datagram tags (`check_datagram_tags`; off only to measure what the check costs).
    check_tags: bool,
    /// Tunneled recipients of the datagram being decided.
    tunnel_to: Vec<SessionToken>,
    /// Copies for tunneled members go to the control thread (it owns the connections).
    to_control: mpsc::SyncSender<TunnelCopy>,
    /// Wakes the control thread (workers 1..; worker 0 runs on it and is drained each turn).
    pub(crate) control: Option<Arc<Waker>>,
    /// The answer of a [`Verdict::Reply`].
    reply_buf: [u8; MAX_DATAGRAM],
}

impl Path {
    /// A path for one worker: its own sender states and counters, tunnel copies to `to_control`.
    pub(crate) fn new(
        limits: Limits,
        check_tags: bool,
        to_control: mpsc::SyncSender<TunnelCopy>,
    ) -> Self {
        Path {
            senders: Senders::new(limits),
            recipients: Vec::with_capacity(64),
            stats: Arc::new(WorkerStats::default()),
            check_tags,
            tunnel_to: Vec::new(),
            to_control,
            control: None,
            reply_buf: [0; MAX_DATAGRAM],
        }
    }

    /// The reply [`Verdict::Reply`] announced.
    pub(crate) fn reply(&self, len: usize) -> &[u8] {
        &self.reply_buf[..len]
    }

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
    /// to the tunneled recipients (a copy to the control thread) and, with
    /// [`Verdict::Forward`], to `self.recipients`.
    fn accepted(
        &mut self,
        snap: &Snapshot,
        h: &Header,
        position: Option<Position>,
        data: &[u8],
        verdict: Result<(), DropReason>,
    ) -> Verdict {
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
                if self.recipients.is_empty() {
                    Verdict::Drop
                } else {
                    Verdict::Forward
                }
            }
            Err(r) => {
                self.stats.inc(r.counter());
                Verdict::Drop
            }
        }
    }

    pub(crate) fn count_flush(&mut self, sent: usize, bytes: usize, failed: usize) {
        self.stats.add(Counter::ForwardedPackets, sent as u64);
        self.stats.add(Counter::ForwardedBytes, bytes as u64);
        self.stats.add(Counter::DropSendFailed, failed as u64);
    }

    /// Decides what to do with one datagram: forward it to [`Path::recipients`], answer it
    /// (RegisterAck, Pong: the bytes in [`Path::reply`]) or drop it (counted). Every
    /// per-datagram check belongs in this function.
    pub(crate) fn on_datagram(
        &mut self,
        snap: &Snapshot,
        now: Time,
        data: &[u8],
        origin: Origin,
        registrar: &mut Registrar<'_>,
    ) -> Verdict {
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
                return Verdict::Drop;
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
                return Verdict::Drop;
            }
        }
        let src = match origin {
            Origin::Udp(src) => src,
            Origin::Tunnel(who) => {
                if h.kind != DatagramKind::Voice {
                    // Registration and keep-alives prove UDP; inside a tunnel they mean nothing.
                    self.stats.inc(Counter::DropBadKind);
                    return Verdict::Drop;
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
                        return match write_ack(key, &h, counter, &mut self.reply_buf) {
                            Some(len) => Verdict::Reply { dst: src, len },
                            None => Verdict::Drop,
                        };
                    }
                }
                Verdict::Drop
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
                            if let Some(len) = write(key, &pong, d.payload, &mut self.reply_buf) {
                                return Verdict::Reply { dst: src, len };
                            }
                        }
                    }
                    Err(r) => self.stats.inc(r.counter()),
                }
                Verdict::Drop
            }
            DatagramKind::RegisterAck | DatagramKind::Pong => {
                self.stats.inc(Counter::DropBadKind);
                Verdict::Drop
            }
        }
    }
}

/// Writes the acknowledgement of a registration (`request` is its header) with the verified
/// `counter`, tagged with the registering session's `key`, into `buf`; its length.
pub(crate) fn write_ack(
    key: &TagKey,
    request: &Header,
    counter: u64,
    buf: &mut [u8; MAX_DATAGRAM],
) -> Option<usize> {
    let ack = Header {
        kind: DatagramKind::RegisterAck,
        flags: udp::Flags::default(),
        timestamp: 0,
        target: SessionToken::NONE,
        ..*request
    };
    write(key, &ack, &counter.to_le_bytes(), buf)
}

/// Writes `header` + `payload` tagged with the recipient session's `key` into `buf`.
fn write(
    key: &TagKey,
    header: &Header,
    payload: &[u8],
    buf: &mut [u8; MAX_DATAGRAM],
) -> Option<usize> {
    match udp::write(header, payload, key, buf) {
        Ok(n) => Some(n),
        Err(e) => {
            log::debug!("reply encode: {e}");
            None
        }
    }
}
