//! The tunnel fallback's decisions: who among the recipients of a voice datagram is tunneled
//! (their copy goes into their control connection as `ServerMessage::Tunnel`), and whether a
//! datagram that arrived through a tunnel is accepted.
//!
//! [`State`] holds the flag and the reference answer ([`State::tunnel_recipients`]); the
//! forwarding path decides with the published [`Snapshot`](crate::forward::Snapshot)
//! ([`Snapshot::tunnel_recipients`](crate::forward::Snapshot::tunnel_recipients),
//! [`Senders::accept_tunneled`](crate::forward::Senders::accept_tunneled)), tested equal here.
//! A tunneled datagram gets exactly the checks a UDP one gets (replay window, packet and byte
//! budgets, channel or whisper routing), with one difference: its sender is authenticated by
//! the control connection it came on (the header's sender must be that connection's session)
//! instead of by its UDP source address. The server moves the bytes (`server/tunnel.rs`).

use voice_proto::tcp::{ErrorCode, ServerMessage};
use voice_proto::time::Time;
use voice_proto::udp::Header;
use voice_proto::SessionToken;

use crate::control;
use crate::state::State;
use crate::stats::{Counter, Stats};

/// What a session's `Tunnel` message did to its path.
#[derive(Debug, Clone, PartialEq)]
pub enum PathChange {
    /// Nothing to change (or no such session).
    Unchanged,
    /// The path changed: publish a new snapshot so the forwarding path routes around (or back
    /// to) the session.
    Changed,
    /// Over the session's request budget: the path stays, and this error goes to its
    /// connection `conn`.
    Refused {
        /// The session's connection.
        conn: usize,
        /// `Error{RateLimited}`.
        error: ServerMessage,
    },
}

impl State {
    /// `who` asks for its voice on its control connection (`active`) or back on UDP. A change
    /// republishes the snapshot, so it is charged to the session's control request budget (a
    /// client flips a few times per outage); over budget it is refused and counted.
    pub fn request_tunnel(
        &mut self,
        stats: &mut Stats,
        who: SessionToken,
        active: bool,
        now: Time,
    ) -> PathChange {
        let Some(s) = self.sessions.get_mut(&who) else {
            return PathChange::Unchanged;
        };
        if s.tunnel == active {
            return PathChange::Unchanged;
        }
        if !s.control.take(now, 1.0) {
            stats.inc(Counter::TcpRateLimited);
            return PathChange::Refused {
                conn: s.conn,
                error: control::error(ErrorCode::RateLimited, "too many path changes"),
            };
        }
        self.set_tunnel(who, active);
        PathChange::Changed
    }

    /// Puts `who`'s voice on its control connection (`true`) or back on UDP (`false`).
    pub fn set_tunnel(&mut self, who: SessionToken, active: bool) {
        if let Some(s) = self.sessions.get_mut(&who) {
            if s.tunnel != active {
                s.tunnel = active;
                self.bump_version();
            }
        }
    }

    /// The tunneled sessions that receive a voice datagram with `header` (cleared first; never
    /// the sender). Pure. Call after the datagram was accepted.
    pub fn tunnel_recipients(&self, header: &Header, out: &mut Vec<SessionToken>) {
        out.clear();
        let tunneled = |t: &SessionToken| {
            *t != header.sender
                && self
                    .sessions
                    .get(t)
                    .is_some_and(|s| s.tunnel && !s.voice.deafened)
        };
        if header.target.is_none() {
            let Some(ch) = self.sessions.get(&header.sender).and_then(|s| s.channel) else {
                return;
            };
            out.extend(self.members(ch).iter().copied().filter(|t| tunneled(t)));
        } else if tunneled(&header.target) {
            out.push(header.target);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use voice_proto::time::Time;

    use super::*;
    use crate::config::Config;
    use crate::forward::{Senders, Snapshot};
    use crate::state::DropReason;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Three sessions in channel 1, each bound to port 1000 + token.
    fn three() -> (State, Time, Vec<SessionToken>) {
        let now = Time::from_millis(1000);
        let mut st = State::new(&Config::default());
        let ch = st.default_channel;
        let mut tokens = Vec::new();
        for i in 0..3u16 {
            let t = st
                .add_session(format!("u{i}"), [0; 32], 10 + usize::from(i), now)
                .expect("token");
            st.sessions.get_mut(&t).expect("session").udp = Some(addr(1000 + t.0 as u16));
            st.add_member(t, ch);
            tokens.push(t);
        }
        (st, now, tokens)
    }

    #[test]
    fn udp_voice_reaches_tunneled_members_through_their_connection_only() {
        let (mut st, now, t) = three();
        let v = st.version();
        st.set_tunnel(t[1], true);
        assert!(st.version() > v, "workers must see the change");
        let snap = Snapshot::of(&st, st.version());
        assert!(snap.has_tunnels());
        let h = Header::voice(t[0], 0, 0);
        let mut udp = Vec::new();
        let mut w = Senders::new(st.limits);
        w.accept_voice(&snap, now, addr(1000 + t[0].0 as u16), &h, 100, &mut udp)
            .expect("accepted");
        assert_eq!(udp, vec![addr(1000 + t[2].0 as u16)]);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        snap.tunnel_recipients(&h, &mut a);
        st.tunnel_recipients(&h, &mut b);
        assert_eq!(a, vec![t[1]]);
        assert_eq!(a, b);
        // Back on UDP: no tunnel copy any more, the UDP copy again.
        st.set_tunnel(t[1], false);
        let snap = Snapshot::of(&st, st.version());
        assert!(!snap.has_tunnels());
        snap.tunnel_recipients(&h, &mut a);
        assert!(a.is_empty());
        let h = Header::voice(t[0], 1, 0);
        w.accept_voice(&snap, now, addr(1000 + t[0].0 as u16), &h, 100, &mut udp)
            .expect("accepted");
        assert_eq!(udp.len(), 2);
    }

    #[test]
    fn switching_paths_keeps_one_replay_window() {
        let (mut st, now, t) = three();
        let src = addr(1000 + t[0].0 as u16);
        let mut w = Senders::new(st.limits);
        let mut out = Vec::new();
        let h1 = Header::voice(t[0], 1, 0);
        let snap = Snapshot::of(&st, st.version());
        w.accept_voice(&snap, now, src, &h1, 100, &mut out)
            .expect("over UDP");
        st.set_tunnel(t[0], true);
        let snap = Snapshot::of(&st, st.version());
        assert_eq!(
            w.accept_tunneled(&snap, now, t[0], &h1, 100, &mut out),
            Err(DropReason::Duplicate),
            "a UDP datagram replayed through the tunnel"
        );
        let h2 = Header::voice(t[0], 2, 0);
        w.accept_tunneled(&snap, now, t[0], &h2, 100, &mut out)
            .expect("through the tunnel");
        st.set_tunnel(t[0], false);
        let snap = Snapshot::of(&st, st.version());
        assert_eq!(
            w.accept_voice(&snap, now, src, &h2, 100, &mut out),
            Err(DropReason::Duplicate),
            "a tunneled datagram replayed over UDP"
        );
        w.accept_voice(&snap, now, src, &Header::voice(t[0], 3, 0), 100, &mut out)
            .expect("over UDP again");
    }

    #[test]
    fn tunneled_voice_gets_the_udp_checks_and_reaches_both_kinds_of_member() {
        let (mut st, now, t) = three();
        st.set_tunnel(t[0], true);
        st.set_tunnel(t[2], true);
        // The tunneled sender never got UDP through.
        st.sessions.get_mut(&t[0]).expect("session").udp = None;
        let snap = Snapshot::of(&st, st.version());
        let mut control = Senders::new(st.limits);
        let mut udp = Vec::new();
        let h = Header::voice(t[0], 7, 0);
        control
            .accept_tunneled(&snap, now, t[0], &h, 100, &mut udp)
            .expect("accepted");
        assert_eq!(udp, vec![addr(1000 + t[1].0 as u16)]);
        let mut to = Vec::new();
        snap.tunnel_recipients(&h, &mut to);
        assert_eq!(to, vec![t[2]], "not back to the sender");
        assert_eq!(
            control.accept_tunneled(&snap, now, t[0], &h, 100, &mut udp),
            Err(DropReason::Duplicate)
        );
        assert!(udp.is_empty());
        // Housekeeping keeps a tunneled sender's window: the replay stays a duplicate.
        control.retain_live(&snap);
        assert_eq!(control.len(), 1);
        assert_eq!(
            control.accept_tunneled(&snap, now, t[0], &h, 100, &mut udp),
            Err(DropReason::Duplicate)
        );
        let forged = Header::voice(t[1], 8, 0);
        assert_eq!(
            control.accept_tunneled(&snap, now, t[0], &forged, 100, &mut udp),
            Err(DropReason::UnboundSource),
            "a connection speaks only for its own session"
        );
        // A whisper to a tunneled target: no UDP copy, one tunnel copy.
        let mut w = Header::voice(t[1], 9, 0);
        w.target = t[2];
        Senders::new(st.limits)
            .accept_voice(&snap, now, addr(1000 + t[1].0 as u16), &w, 100, &mut udp)
            .expect("whisper accepted");
        assert!(udp.is_empty());
        snap.tunnel_recipients(&w, &mut to);
        assert_eq!(to, vec![t[2]]);
        // Budgets: a flood through the tunnel is cut like one over UDP.
        let burst = st.limits.voice_packets.burst as u16;
        let ok = (100..100 + burst * 4)
            .filter(|&seq| {
                let h = Header::voice(t[0], seq, 0);
                control
                    .accept_tunneled(&snap, now, t[0], &h, 100, &mut udp)
                    .is_ok()
            })
            .count();
        assert!(ok < burst as usize, "{ok} of a flood accepted");
        // Outside any channel: refused like UDP voice; gone: forgotten by housekeeping.
        st.remove_member(t[0]);
        let snap = Snapshot::of(&st, st.version());
        let h = Header::voice(t[0], 1000, 0);
        assert_eq!(
            control.accept_tunneled(&snap, now, t[0], &h, 100, &mut udp),
            Err(DropReason::NotInChannel)
        );
        st.remove_session(t[0]);
        control.retain_live(&Snapshot::of(&st, st.version()));
        assert!(control.is_empty());
    }
}
