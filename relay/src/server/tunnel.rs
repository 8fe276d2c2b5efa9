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

use voice_proto::tcp::ServerMessage;
use voice_proto::SessionToken;

use super::Relay;
use crate::stats::Counter;
use crate::tunnel::PathChange;

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
    /// `Hello` the relay accepted): the path change ([`State::request_tunnel`]), then a datagram
    /// in it is decided by worker 0's per-datagram path exactly like one from a UDP socket: the
    /// same parse, tag check, routing, replay window, budgets and counters.
    ///
    /// [`State::request_tunnel`]: crate::state::State::request_tunnel
    pub(super) fn on_tunnel(&mut self, who: SessionToken, active: bool, data: &[u8], now: Time) {
        match self.state.request_tunnel(&mut self.stats, who, active, now) {
            // Workers route around (or back to) this member from their next batch on.
            PathChange::Changed => self.publish(),
            PathChange::Refused { conn, error } => self.queue(conn, &error),
            PathChange::Unchanged => {}
        }
        if !data.is_empty() {
            self.worker.on_tunneled(who, data);
        }
    }
}
