//! The tunnel fallback's I/O: voice datagrams carried in control frames for clients whose UDP
//! does not get through. A `ClientMessage::Tunnel` sets the session's path and, with a datagram,
//! is voice like a UDP datagram (same parse, same drop counters, same checks); accepted voice
//! goes to UDP members over UDP and to tunneled members as `ServerMessage::Tunnel`, the exact
//! bytes either way. The decisions are in [`crate::tunnel`].

use std::time::Instant;

use voice_core::proto::tcp::ServerMessage;
use voice_core::proto::udp::{self, DatagramKind, Header, UdpError};
use voice_core::proto::SessionToken;

use super::Relay;
use crate::stats::Counter;

impl Relay {
    /// Voice accepted for forwarding (from UDP or a tunnel): a copy into each tunneled
    /// recipient's control connection.
    pub(super) fn forward_to_tunnels(&mut self, header: &Header, data: &[u8]) {
        let mut conns = std::mem::take(&mut self.tunnel_conns);
        self.state.tunnel_recipients(header, &mut conns);
        if !conns.is_empty() {
            let msg = ServerMessage::Tunnel {
                datagram: data.to_vec(),
            };
            for &conn in &conns {
                self.queue(conn, &msg);
            }
            self.stats.add(Counter::TunnelForwarded, conns.len() as u64);
        }
        self.tunnel_conns = conns;
    }

    /// A `ClientMessage::Tunnel` from `who`.
    pub(super) fn on_tunnel(&mut self, who: SessionToken, active: bool, data: &[u8], now: Instant) {
        self.state.set_tunnel(who, active);
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
        let mut recipients = std::mem::take(&mut self.recipients);
        match self
            .state
            .accept_tunneled(now, who, &h, data.len(), &mut recipients)
        {
            Ok(()) => {
                self.stats.inc(Counter::VoiceAccepted);
                for dst in &recipients {
                    match self.udp.send_to(data, *dst) {
                        Ok(_) => self.count_flush(1, data.len(), 0),
                        Err(_) => self.count_flush(0, 0, 1),
                    }
                }
                self.forward_to_tunnels(&h, data);
            }
            Err(r) => self.stats.inc(r.counter()),
        }
        self.recipients = recipients;
    }
}
