//! The tunnel fallback's I/O: voice datagrams carried in control frames for clients whose UDP
//! does not get through. A `ClientMessage::Tunnel` sets the session's path and, with a datagram,
//! is voice like a UDP datagram (same parse, same drop counters, same checks); accepted voice
//! goes to UDP members over UDP and to tunneled members as `ServerMessage::Tunnel`, the exact
//! bytes either way. The decisions are in [`crate::tunnel`] and [`crate::forward`].
//!
//! Threads: tunneled datagrams arrive on the control thread (which owns the connections); it
//! decides them with the published snapshot and its own [`Senders`](crate::forward::Senders)
//! (a tunneled sender has no UDP source, so no worker sees it) and sends the UDP copies from
//! socket 0. UDP voice a worker accepted for tunneled members comes to the control thread as a
//! [`TunnelCopy`] over a bounded channel (workers 1.. wake it), and is queued into their
//! connections here.

use std::time::Instant;

use voice_core::proto::tcp::ServerMessage;
use voice_core::proto::udp::{self, DatagramKind, UdpError};
use voice_core::proto::SessionToken;

use super::Relay;
use crate::stats::Counter;

/// Copies a worker hands to the control thread before it refuses more (then dropped and
/// counted as `drop_send_failed`).
pub(crate) const TUNNEL_QUEUE: usize = 4096;

/// A UDP voice datagram a worker accepted, for the tunneled recipients it found in its snapshot.
#[derive(Debug)]
pub(crate) struct TunnelCopy {
    /// The tunneled recipients.
    pub recipients: Vec<SessionToken>,
    /// The exact datagram.
    pub datagram: Vec<u8>,
}

impl Relay {
    /// Queues `datagram` into the connection of every recipient still tunneled.
    fn queue_tunneled(&mut self, recipients: &[SessionToken], datagram: Vec<u8>) {
        let conns: Vec<usize> = recipients
            .iter()
            .filter_map(|t| self.state.sessions.get(t).filter(|s| s.tunnel))
            .map(|s| s.conn)
            .collect();
        if conns.is_empty() {
            return;
        }
        let msg = ServerMessage::Tunnel { datagram };
        for &conn in &conns {
            self.queue(conn, &msg);
        }
        self.stats.add(Counter::TunnelForwarded, conns.len() as u64);
    }

    /// Takes the copies the workers accepted for tunneled members.
    pub(super) fn take_tunnel_copies(&mut self) {
        while let Ok(c) = self.tunnel_copies.try_recv() {
            self.queue_tunneled(&c.recipients, c.datagram);
        }
    }

    /// A `ClientMessage::Tunnel` from `who`.
    pub(super) fn on_tunnel(&mut self, who: SessionToken, active: bool, data: &[u8], now: Instant) {
        self.state.set_tunnel(who, active);
        // Workers route around (or back to) this member from their next batch on.
        self.publish();
        if data.is_empty() {
            return;
        }
        self.stats.inc(Counter::TunnelRxPackets);
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
                return;
            }
        };
        let h = d.header;
        if h.kind != DatagramKind::Voice {
            // Registration and keep-alives prove UDP; inside the tunnel they mean nothing.
            self.stats.inc(Counter::DropBadKind);
            return;
        }
        let snap = self.snapshot.load_full();
        let mut recipients = std::mem::take(&mut self.recipients);
        match self
            .tunnel_senders
            .accept_tunneled(&snap, now, who, &h, data.len(), &mut recipients)
        {
            Ok(()) => {
                self.stats.inc(Counter::VoiceAccepted);
                for dst in &recipients {
                    match self.worker.socket().send_to(data, *dst) {
                        Ok(_) => {
                            self.stats.inc(Counter::ForwardedPackets);
                            self.stats.add(Counter::ForwardedBytes, data.len() as u64);
                        }
                        Err(_) => self.stats.inc(Counter::DropSendFailed),
                    }
                }
                let mut to = std::mem::take(&mut self.tunnel_to);
                snap.tunnel_recipients(&h, &mut to);
                if !to.is_empty() {
                    self.queue_tunneled(&to, data.to_vec());
                }
                self.tunnel_to = to;
            }
            Err(r) => self.stats.inc(r.counter()),
        }
        self.recipients = recipients;
    }
}
