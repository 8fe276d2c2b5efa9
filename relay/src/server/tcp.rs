//! The TCP side of the loop: read frames until `WouldBlock`, run the handshake and
//! [`control`](crate::control) transitions, queue framed replies under the per-connection cap,
//! flush them, expire timeouts, and reap dead connections with a clean `UserLeft`.

use std::io;
use voice_proto::time::Time;

use voice_proto::tcp::{ClientMessage, ErrorCode, FrameError, ServerMessage};
use voice_tls::Transport;

use super::{unix_ms, Relay};
use crate::control::{self, After, HelloContext, Outbox};
use crate::stats::Counter;

impl Relay {
    pub(super) fn read_conn(&mut self, id: usize) {
        self.reap_needed = true;
        let now = self.clock.now();
        loop {
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            if c.dead || c.closing {
                // Nothing more is read from a closing connection; a hung-up peer is reaped.
                let mut sink = [0u8; 512];
                match io::Read::read(&mut c.stream, &mut sink) {
                    Ok(0) => c.dead = true,
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => c.dead = true,
                }
                return;
            }
            let read = c.reader.read_from(&mut c.stream);
            if c.stream.wants_write() {
                // Handshake messages (or an alert) that did not fit the socket yet.
                self.dirty.push(id);
            }
            match read {
                Ok(0) => {
                    log::debug!("conn {id} ({}) closed by peer", c.peer);
                    c.dead = true;
                    return;
                }
                Ok(_) => self.process_frames(id, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if e.kind() == io::ErrorKind::InvalidData
                        && matches!(c.stream, Transport::Tls(_))
                    {
                        self.stats.inc(Counter::TlsFailed);
                        log::info!("conn {id} ({}): TLS: {e}; closing", c.peer);
                    } else {
                        log::debug!("conn {id} read: {e}");
                    }
                    c.dead = true;
                    return;
                }
            }
        }
    }

    pub(super) fn process_frames(&mut self, id: usize, now: Time) {
        loop {
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            if c.closing || c.dead {
                return;
            }
            let session = c.session;
            let msg = match c.reader.next_message() {
                Ok(None) => return,
                Ok(Some(m)) => {
                    self.stats.inc(Counter::TcpFramesIn);
                    m
                }
                Err(FrameError::Malformed(e)) => {
                    self.stats.inc(Counter::TcpFramesIn);
                    self.stats.inc(Counter::TcpMalformed);
                    log::debug!("conn {id}: malformed frame: {e}");
                    if session.is_some() {
                        c.deadline = now + self.config.idle_timeout();
                        let err = control::error(ErrorCode::Malformed, "frame did not decode");
                        self.queue(id, &err);
                    } else {
                        let err = control::error(ErrorCode::Handshake, "expected Hello");
                        self.stats.inc(Counter::HandshakeRejected);
                        self.queue(id, &err);
                        self.close_after_flush(id, now);
                    }
                    continue;
                }
                Err(e) => {
                    self.stats.inc(Counter::TcpOversizeClosed);
                    log::debug!("conn {id} ({}): {e}; closing", c.peer);
                    c.dead = true;
                    return;
                }
            };
            match session {
                None => self.on_hello(id, msg, now),
                Some(who) => {
                    c.deadline = now + self.config.idle_timeout();
                    if let ClientMessage::Tunnel { active, datagram } = msg {
                        self.on_tunnel(who, active, &datagram, now);
                        continue;
                    }
                    if self.defer_join(who, &msg) {
                        continue;
                    }
                    let mut out = std::mem::take(&mut self.outbox);
                    // The reply to a `StatsRequest` shows every worker's counters.
                    let merged = (msg == ClientMessage::StatsRequest).then(|| {
                        self.refresh_gauges();
                        self.merged_stats()
                    });
                    let after = control::handle_with_stats(
                        &mut self.state,
                        &mut self.stats,
                        merged,
                        who,
                        msg,
                        now,
                        unix_ms(),
                        &mut out,
                    );
                    if after == After::Close {
                        if let Some(c) = self.conns.get_mut(&id) {
                            c.session = None;
                        }
                        self.close_after_flush(id, now);
                    }
                    self.deliver(&mut out);
                    self.outbox = out;
                    self.apply_removals(now);
                }
            }
        }
    }

    /// Ends the sessions a control transition removed (kick, ban, expired token): what was
    /// queued for them (their `Removed` notice) is already in their connection's buffer; the
    /// session ends now (`UserLeft` to its channel, UDP binding gone) and the connection closes
    /// once that buffer is written.
    pub(super) fn apply_removals(&mut self, now: Time) {
        let removals = self.state.take_removals();
        if removals.is_empty() {
            return;
        }
        let mut out = std::mem::take(&mut self.outbox);
        for who in removals {
            let Some(conn) = self.state.sessions.get(&who).map(|s| s.conn) else {
                continue;
            };
            control::disconnect(&mut self.state, who, &mut out);
            if let Some(c) = self.conns.get_mut(&conn) {
                c.session = None;
            }
            self.close_after_flush(conn, now);
        }
        self.deliver(&mut out);
        self.outbox = out;
    }

    /// The timer's share of permissions: sessions whose token expired are told and ended;
    /// ended bans are forgotten.
    pub(super) fn expire_sessions(&mut self, now: Time) {
        self.state.prune_bans(now);
        let mut out = std::mem::take(&mut self.outbox);
        crate::permissions::expire_tokens(&mut self.state, &mut self.stats, unix_ms(), &mut out);
        self.deliver(&mut out);
        self.outbox = out;
        self.apply_removals(now);
    }

    pub(super) fn on_hello(&mut self, id: usize, msg: ClientMessage, now: Time) {
        let Some(secret) = control::fresh_secret() else {
            self.close_after_flush(id, now);
            return;
        };
        let cx = HelloContext {
            conn: id,
            secret,
            now,
            unix_ms: unix_ms(),
            max_sessions: self.config.max_sessions,
            admission: &self.admission,
        };
        match control::hello(&mut self.state, &mut self.stats, msg, cx) {
            Ok((token, welcome)) => {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.session = Some(token);
                    c.deadline = now + self.config.idle_timeout();
                    log::info!("session {token} from {}", c.peer);
                }
                self.queue(id, &welcome);
            }
            Err(err) => {
                self.queue(id, &err);
                self.close_after_flush(id, now);
            }
        }
    }

    pub(super) fn close_after_flush(&mut self, id: usize, now: Time) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.closing = true;
            c.deadline = c.deadline.min(now + self.config.handshake_timeout());
            self.dirty.push(id);
        }
    }

    /// Frames `msg` into connection `id`'s outgoing buffer; overflowing the cap kills it.
    pub(super) fn queue(&mut self, id: usize, msg: &ServerMessage) {
        // Cluster mode: channel lists show the members of rooms hosted elsewhere too.
        let merged = self.with_remote_members(msg);
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.dead {
            return;
        }
        // A list too long with them (a huge cluster) still goes out with this relay's own.
        let pushed = match merged.as_ref().map(|m| c.out.push(m)) {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => {
                log::warn!("channel list with other relays' members: {e}; sending this relay's");
                c.out.push(msg)
            }
            None => c.out.push(msg),
        };
        if let Err(e) = pushed {
            log::error!("encoding a reply failed: {e}");
            return;
        }
        if c.out.pending() > self.config.max_outgoing_bytes {
            self.stats.inc(Counter::TcpOverflowClosed);
            log::info!("conn {id} ({}): outgoing buffer over cap; closing", c.peer);
            c.dead = true;
            self.reap_needed = true;
            return;
        }
        self.dirty.push(id);
    }

    pub(super) fn deliver(&mut self, out: &mut Outbox) {
        for (to, msg) in out.drain(..) {
            if let Some(conn) = self.state.sessions.get(&to).map(|s| s.conn) {
                self.queue(conn, &msg);
            }
        }
    }

    pub(super) fn flush_dirty(&mut self) {
        if self.dirty.is_empty() {
            return;
        }
        self.reap_needed = true;
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for id in dirty.drain(..) {
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            if c.dead {
                continue;
            }
            if let Err(e) = c.out.write_to(&mut c.stream) {
                log::debug!("conn {id} write: {e}");
                c.dead = true;
                continue;
            }
            if c.out.is_empty() && c.closing && !c.close_sent {
                c.stream.close_notify();
                c.close_sent = true;
            }
            if let Err(e) = c.stream.flush_tls() {
                log::debug!("conn {id} write: {e}");
                c.dead = true;
                continue;
            }
            if c.out.is_empty() && c.closing && !c.stream.wants_write() {
                c.dead = true;
            }
        }
        self.dirty = dirty;
    }

    pub(super) fn expire(&mut self, now: Time) {
        self.reap_needed = true;
        for (id, c) in &mut self.conns {
            if !c.dead && now >= c.deadline {
                let counter = if c.session.is_some() {
                    Counter::TcpIdleTimeout
                } else {
                    Counter::TcpHandshakeTimeout
                };
                if !c.closing {
                    self.stats.inc(counter);
                }
                log::debug!("conn {id} ({}): {}; closing", c.peer, counter.name());
                c.dead = true;
            }
        }
    }

    /// Drops dead connections; returns true when that queued messages for others.
    pub(super) fn reap(&mut self) -> bool {
        if !std::mem::take(&mut self.reap_needed) || !self.conns.values().any(|c| c.dead) {
            return false;
        }
        let dead: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.dead)
            .map(|(&id, _)| id)
            .collect();
        let mut out = std::mem::take(&mut self.outbox);
        for id in dead {
            let Some(mut c) = self.conns.remove(&id) else {
                continue;
            };
            let _ = self.poll.registry().deregister(c.stream.sock_mut());
            if let Some(who) = c.session {
                log::info!("session {who} ended");
                control::disconnect(&mut self.state, who, &mut out);
            }
        }
        let queued = !out.is_empty();
        self.deliver(&mut out);
        self.outbox = out;
        queued
    }
}
