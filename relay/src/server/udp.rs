//! The UDP side of the loop: drain the socket in `recvmmsg` batches (or one `recv_from` at a
//! time with `batch_io = false`), decide per datagram with [`State`](crate::state::State), and
//! forward the exact received bytes with `sendmmsg` before the receive slots are reused.
//! Registration acks and pongs are answered here, never larger than the request.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Instant;

use voice_core::proto::udp::{self, DatagramKind, Header, UdpError, MAX_DATAGRAM};
use voice_core::proto::SessionToken;

use super::{Relay, MAX_UDP_BATCHES_PER_TURN, RECV_BATCH};
use crate::stats::Counter;
use crate::udpio::SLOT;

impl Relay {
    pub(super) fn drain_udp(&mut self) {
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
                                // Cannot fail: the batch was just flushed if full, and
                                // `data` is a received slot. Counted if it ever did.
                                if !self.send.push(i, data.len(), &self.recipients[r]) {
                                    self.count_flush(0, 0, 1);
                                }
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
    pub(super) fn drain_udp_simple(&mut self) {
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

    pub(super) fn count_flush(&mut self, sent: usize, bytes: usize, failed: usize) {
        self.stats.add(Counter::ForwardedPackets, sent as u64);
        self.stats.add(Counter::ForwardedBytes, bytes as u64);
        self.stats.add(Counter::DropSendFailed, failed as u64);
    }

    /// Decides what to do with one datagram. Returns true when it should be forwarded to
    /// `self.recipients`; replies (RegisterAck, Pong) are sent here.
    pub(super) fn on_datagram(&mut self, now: Instant, data: &[u8], src: SocketAddr) -> bool {
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
                    UdpError::BadPosition => Counter::DropBadPosition,
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
                        let culled =
                            self.state
                                .cull_out_of_range(&h, d.position, &mut self.recipients);
                        self.stats.add(Counter::VoiceCulled, culled as u64);
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
                        self.state.record_position(h.sender, d.position);
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

    pub(super) fn reply(&mut self, header: &Header, payload: &[u8], dst: SocketAddr) {
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
}
