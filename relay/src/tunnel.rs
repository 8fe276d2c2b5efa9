//! The tunnel fallback's decisions, over plain [`State`]: who among the recipients of a voice
//! datagram is tunneled (their copy goes into their control connection as
//! `ServerMessage::Tunnel`), and whether a datagram that arrived through a tunnel is accepted.
//!
//! A tunneled datagram gets exactly the checks a UDP one gets (replay window, packet and byte
//! budgets, channel or whisper routing), with one difference: its sender is authenticated by the
//! control connection it came on (the header's sender must be that connection's session) instead
//! of by its UDP source address. The server moves the bytes (`server/tunnel.rs`).

use std::net::SocketAddr;
use std::time::Instant;

use voice_core::proto::udp::Header;
use voice_core::proto::SessionToken;

use crate::state::{DropReason, State};

impl State {
    /// Puts `who`'s voice on its control connection (`true`) or back on UDP (`false`).
    pub fn set_tunnel(&mut self, who: SessionToken, active: bool) {
        if let Some(s) = self.sessions.get_mut(&who) {
            s.tunnel = active;
        }
    }

    /// The connections of the tunneled sessions that receive a voice datagram with `header`
    /// (cleared first). Pure. Call after the datagram was accepted.
    pub fn tunnel_recipients(&self, header: &Header, out: &mut Vec<usize>) {
        out.clear();
        let tunneled = |t: &SessionToken| {
            self.sessions
                .get(t)
                .filter(|s| s.tunnel && *t != header.sender)
                .map(|s| s.conn)
        };
        if header.target.is_none() {
            let Some(ch) = self.sessions.get(&header.sender).and_then(|s| s.channel) else {
                return;
            };
            out.extend(self.members(ch).iter().filter_map(tunneled));
        } else {
            out.extend(tunneled(&header.target));
        }
    }

    /// The full decision for a voice datagram that `who` sent through its tunnel: the header
    /// must name `who` as sender; then routing (UDP recipients into `out`) and the same replay
    /// window and budgets as UDP voice.
    pub fn accept_tunneled(
        &mut self,
        now: Instant,
        who: SessionToken,
        header: &Header,
        len: usize,
        out: &mut Vec<SocketAddr>,
    ) -> Result<(), DropReason> {
        out.clear();
        if header.sender != who {
            return Err(DropReason::UnboundSource);
        }
        let r = self
            .udp_recipients(header, out)
            .and_then(|()| self.admit_voice(now, header, len));
        if r.is_err() {
            out.clear();
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Three sessions (conns 10, 11, 12) in channel 1, each bound to port 1000 + token.
    fn three() -> (State, Instant, Vec<SessionToken>) {
        let now = Instant::now();
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
        st.set_tunnel(t[1], true);
        let h = Header::voice(t[0], 0, 0);
        let mut udp = Vec::new();
        st.accept_voice(now, addr(1000 + t[0].0 as u16), &h, 100, &mut udp)
            .expect("accepted");
        assert_eq!(udp, vec![addr(1000 + t[2].0 as u16)]);
        let mut conns = Vec::new();
        st.tunnel_recipients(&h, &mut conns);
        assert_eq!(conns, vec![11]);
        // Back on UDP: no tunnel copy any more.
        st.set_tunnel(t[1], false);
        st.tunnel_recipients(&h, &mut conns);
        assert!(conns.is_empty());
    }

    #[test]
    fn tunneled_voice_gets_the_udp_checks_and_reaches_both_kinds_of_member() {
        let (mut st, now, t) = three();
        st.set_tunnel(t[0], true);
        st.set_tunnel(t[2], true);
        let mut udp = Vec::new();
        let h = Header::voice(t[0], 7, 0);
        st.accept_tunneled(now, t[0], &h, 100, &mut udp)
            .expect("accepted");
        assert_eq!(udp, vec![addr(1000 + t[1].0 as u16)]);
        let mut conns = Vec::new();
        st.tunnel_recipients(&h, &mut conns);
        assert_eq!(conns, vec![12], "not back to the sender");
        assert_eq!(
            st.accept_tunneled(now, t[0], &h, 100, &mut udp),
            Err(DropReason::Duplicate)
        );
        assert!(udp.is_empty());
        let forged = Header::voice(t[1], 8, 0);
        assert_eq!(
            st.accept_tunneled(now, t[0], &forged, 100, &mut udp),
            Err(DropReason::UnboundSource),
            "a connection speaks only for its own session"
        );
        // A whisper to a tunneled target: no UDP copy, one tunnel copy.
        let mut w = Header::voice(t[1], 9, 0);
        w.target = t[2];
        st.accept_voice(now, addr(1000 + t[1].0 as u16), &w, 100, &mut udp)
            .expect("whisper accepted");
        assert!(udp.is_empty());
        st.tunnel_recipients(&w, &mut conns);
        assert_eq!(conns, vec![12]);
        // Outside any channel: refused like UDP voice.
        st.remove_member(t[0]);
        let h = Header::voice(t[0], 10, 0);
        assert_eq!(
            st.accept_tunneled(now, t[0], &h, 100, &mut udp),
            Err(DropReason::NotInChannel)
        );
    }
}
