//! The tunnel fallback's I/O: voice datagrams carried in control frames for clients whose UDP
//! does not get through. A `ClientMessage::Tunnel` sets the session's path and, with a datagram,
//! is voice like a UDP datagram (same parse, same drop counters, same checks); accepted voice
//! goes to UDP members over UDP and to tunneled members as `ServerMessage::Tunnel`, the exact
//! bytes either way. The decisions are in [`crate::tunnel`] and [`crate::forward`].
//!
//! Threads: tunneled datagrams arrive on the control thread (which owns the connections); it
//! hands them to worker 0's per-datagram path (the one every UDP datagram takes, tag check
//! included; a tunneled sender has no UDP source, so no other worker sees it), which sends the
//! UDP copies from socket 0. Voice any worker accepted for tunneled members (worker 0's
//! included) comes to the control thread as a [`TunnelCopy`] over a bounded channel (workers
//! 1.. wake it), and is queued into their connections here.

use voice_proto::time::Time;

use voice_proto::tcp::{ErrorCode, ServerMessage};
use voice_proto::SessionToken;

use super::Relay;
use crate::control;
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

    /// A `ClientMessage::Tunnel` from `who` (an admitted session: the connection carried a
    /// `Hello` the relay accepted). A datagram in it is decided by worker 0's per-datagram path
    /// exactly like one from a UDP socket: the same parse, tag check, routing, replay window,
    /// budgets and counters.
    ///
    /// A change of path republishes the snapshot, so it is charged to the session's control
    /// request budget (a client flips a few times per outage; a flip over budget is ignored and
    /// answered `Error{RateLimited}` like any request over budget, the datagram still taken).
    pub(super) fn on_tunnel(&mut self, who: SessionToken, active: bool, data: &[u8], now: Time) {
        if let Some(s) = self.state.sessions.get_mut(&who) {
            if s.tunnel != active {
                if s.control.take(now, 1.0) {
                    self.state.set_tunnel(who, active);
                    // Workers route around (or back to) this member from their next batch on.
                    self.publish();
                } else {
                    let conn = s.conn;
                    self.stats.inc(Counter::TcpRateLimited);
                    let err = control::error(ErrorCode::RateLimited, "too many path changes");
                    self.queue(conn, &err);
                }
            }
        }
        if !data.is_empty() {
            self.worker.on_tunneled(who, data);
        }
    }
}
