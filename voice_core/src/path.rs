//! Which way voice travels (UDP or the tunnel over the control connection) and the connection
//! status the application shows.
//!
//! [`PathMonitor`] is the decision, as a pure function of its inputs and the time: UDP is used
//! once the relay acknowledged a registration over UDP; the tunnel is used when no
//! `RegisterAck` came within [`PathConfig::udp_timeout`] of the first registration, or when a
//! UDP keep-alive `Ping` stays unanswered that long. While tunneled, the engine keeps sending a
//! UDP `Register` every [`PathConfig::keepalive_interval`] (a registration, not a ping, because
//! the NAT may have given us a new address meanwhile); the first `RegisterAck` that arrives over
//! UDP switches voice back. The tunnel carries the exact datagram bytes, so the relay's checks
//! and the receivers see the same voice either way.
//!
//! Why a `Ping` at all when voice flows: voice from the relay proves only relay → client; a
//! `Pong` proves the round trip. The keep-alive doubles as the NAT keep-alive: most NATs drop an
//! idle UDP mapping after 30 s or more, so the default 500 ms is far inside every timeout and buys
//! a detection of a dead path within `keepalive_interval + udp_timeout` (1.5 s by default).

use std::time::Duration;

use serde::Serialize;

use crate::time::Time;

/// The way voice datagrams travel between this client and the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum VoicePath {
    /// UDP datagrams (the normal path).
    Udp,
    /// The same datagrams inside control frames on the TLS connection (UDP does not get through).
    Tunnel,
}

impl VoicePath {
    /// `"udp"` or `"tunnel"`.
    pub fn name(self) -> &'static str {
        match self {
            VoicePath::Udp => "udp",
            VoicePath::Tunnel => "tunnel",
        }
    }
}

/// The connection as the application shows it. Each change is reported once as
/// [`crate::engine::Event::Status`] and the current value is in the stats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ConnectionStatus {
    /// A connection attempt is under way (`attempt` counts from 1 since the last success);
    /// `last_error` says why the previous attempt failed.
    Connecting {
        /// Attempt number since the last successful connection (from 1).
        attempt: u32,
        /// Why the previous attempt failed, if one did.
        last_error: Option<String>,
    },
    /// Welcomed by the relay, and voice can flow on `path`.
    Connected {
        /// The way voice travels now.
        path: VoicePath,
    },
    /// The connection failed or dropped; the next attempt starts in `in_ms` milliseconds.
    Reconnecting {
        /// Delay before the next attempt in milliseconds.
        in_ms: u64,
        /// Why the connection failed or dropped.
        reason: String,
    },
    /// Given up: reconnecting is off, or nothing a retry could fix (e.g. a refused certificate).
    Failed {
        /// Why.
        reason: String,
    },
}

/// Timing of the path decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathConfig {
    /// UDP keep-alive period: a `Ping` while on UDP, a `Register` probe while tunneled. Also the
    /// NAT keep-alive (keep it well below the NAT's UDP mapping timeout, typically ≥ 30 s).
    pub keepalive_interval: Duration,
    /// UDP is considered blocked when a registration or keep-alive stays unanswered this long.
    pub udp_timeout: Duration,
    /// Fall back to the tunnel at all (off: voice waits for UDP).
    pub tunnel: bool,
}

impl Default for PathConfig {
    fn default() -> Self {
        PathConfig {
            keepalive_interval: Duration::from_millis(500),
            udp_timeout: Duration::from_secs(1),
            tunnel: true,
        }
    }
}

/// Decides between UDP and the tunnel. Feed it every UDP probe sent and every UDP answer
/// received; [`PathMonitor::check`] at [`PathMonitor::deadline`] applies the timeout.
#[derive(Debug, Clone)]
pub struct PathMonitor {
    cfg: PathConfig,
    path: Option<VoicePath>,
    /// The oldest UDP probe (registration or keep-alive) not answered yet.
    unanswered_since: Option<Time>,
}

impl PathMonitor {
    /// A monitor with no session (no path).
    pub fn new(cfg: PathConfig) -> Self {
        PathMonitor {
            cfg,
            path: None,
            unanswered_since: None,
        }
    }

    /// The settings.
    pub fn config(&self) -> PathConfig {
        self.cfg
    }

    /// The session ended: no path until the next one.
    pub fn reset(&mut self) {
        self.path = None;
        self.unanswered_since = None;
    }

    /// The current path (`None`: no session, or still waiting for UDP's first answer).
    pub fn path(&self) -> Option<VoicePath> {
        self.path
    }

    /// A UDP registration or keep-alive was sent at `now`.
    pub fn probe_sent(&mut self, now: Time) {
        self.unanswered_since.get_or_insert(now);
    }

    /// A `RegisterAck` arrived over UDP: voice goes over UDP. Returns the new path if it changed.
    #[must_use]
    pub fn registered(&mut self) -> Option<VoicePath> {
        self.unanswered_since = None;
        if self.path != Some(VoicePath::Udp) {
            self.path = Some(VoicePath::Udp);
            return self.path;
        }
        None
    }

    /// A `Pong` arrived over UDP: UDP answers, but the path stays as it is. A `Pong` does not
    /// end tunneling: only a registration proves the binding the relay forwards to.
    pub fn pong(&mut self) {
        self.unanswered_since = None;
    }

    /// When [`PathMonitor::check`] next has something to decide.
    pub fn deadline(&self) -> Option<Time> {
        if !self.cfg.tunnel || self.path == Some(VoicePath::Tunnel) {
            return None;
        }
        self.unanswered_since.map(|t| t + self.cfg.udp_timeout)
    }

    /// Applies the timeout at `now`. Returns the new path if it changed (to the tunnel).
    #[must_use]
    pub fn check(&mut self, now: Time) -> Option<VoicePath> {
        if self.deadline().is_some_and(|d| now >= d) {
            self.path = Some(VoicePath::Tunnel);
            self.unanswered_since = None;
            return self.path;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Time {
        Time::from_micros(n * 1000)
    }

    #[test]
    fn udp_on_first_ack_tunnel_after_unanswered_registration() {
        let mut m = PathMonitor::new(PathConfig::default());
        m.probe_sent(ms(0));
        m.probe_sent(ms(250));
        assert_eq!(m.deadline(), Some(ms(1000)), "timed from the oldest probe");
        assert_eq!(m.check(ms(999)), None);
        assert_eq!(m.check(ms(1000)), Some(VoicePath::Tunnel));
        assert_eq!(m.deadline(), None, "no timeout while tunneled");
        m.probe_sent(ms(1500));
        m.pong();
        assert_eq!(
            m.path(),
            Some(VoicePath::Tunnel),
            "a pong does not end tunneling"
        );
        assert_eq!(m.registered(), Some(VoicePath::Udp));
        assert_eq!(m.registered(), None, "no change, no report");
    }

    #[test]
    fn unanswered_keepalive_moves_to_the_tunnel() {
        let mut m = PathMonitor::new(PathConfig::default());
        m.probe_sent(ms(0));
        assert_eq!(m.registered(), Some(VoicePath::Udp));
        m.probe_sent(ms(500));
        m.pong();
        assert_eq!(m.deadline(), None, "a pong answers the keep-alive");
        m.probe_sent(ms(1000));
        m.probe_sent(ms(1500));
        assert_eq!(m.check(ms(1999)), None);
        assert_eq!(m.check(ms(2000)), Some(VoicePath::Tunnel));
        m.reset();
        assert_eq!(m.path(), None);
        assert_eq!(m.deadline(), None);
    }

    #[test]
    fn tunnel_off_waits_for_udp() {
        let mut m = PathMonitor::new(PathConfig {
            tunnel: false,
            ..PathConfig::default()
        });
        m.probe_sent(ms(0));
        assert_eq!(m.deadline(), None);
        assert_eq!(m.check(ms(60_000)), None);
        assert_eq!(m.path(), None);
    }
}
