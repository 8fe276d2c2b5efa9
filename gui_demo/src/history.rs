//! The last minute of engine statistics, as time series for the diagnostics plots.
//!
//! Every [`EngineStats`] snapshot (a few per second, from the backend's stats thread) adds one point
//! per series. Cumulative counters (late, concealed, FEC-recovered frames) are turned into rates per
//! second between consecutive snapshots, which is what one wants to see moving on a plot; the totals
//! stay in the latest snapshot for the table. Points older than [`WINDOW_S`] are dropped.

use std::collections::{BTreeMap, VecDeque};

use voice_client::{EngineStats, SessionToken};
use voice_core::engine::ConnectionState;

/// How much history is kept, in seconds.
pub const WINDOW_S: f64 = 60.0;

/// One plotted quantity: `[t, value]` points with `t` in seconds on the app clock.
pub type Series = VecDeque<[f64; 2]>;

/// The series of one remote sender.
#[derive(Debug, Clone, Default)]
pub struct SenderSeries {
    /// Last known name.
    pub name: String,
    /// Jitter-buffer depth in packets.
    pub depth: Series,
    /// Loss over the last 10 s, %.
    pub loss_percent: Series,
    /// Interarrival jitter, ms.
    pub jitter_ms: Series,
    /// Late packets per second.
    pub late_per_s: Series,
    /// Concealed frames per second.
    pub concealed_per_s: Series,
    /// FEC-recovered frames per second.
    pub fec_per_s: Series,
    last: Option<(f64, u64, u64, u64)>,
}

/// Statistics over the last minute.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// The newest snapshot.
    pub latest: Option<EngineStats>,
    /// TCP round trip, ms.
    pub rtt_ms: Series,
    /// Input level, dBFS.
    pub input_dbfs: Series,
    /// Per remote sender (senders silent for a minute disappear).
    pub senders: BTreeMap<SessionToken, SenderSeries>,
}

fn push(series: &mut Series, t: f64, v: f64) {
    series.push_back([t, v]);
}

fn prune(series: &mut Series, oldest: f64) {
    while series.front().is_some_and(|p| p[0] < oldest) {
        series.pop_front();
    }
}

impl History {
    /// Adds one snapshot taken at app time `t` (seconds).
    pub fn record(&mut self, t: f64, stats: EngineStats) {
        // A lost connection measures nothing: the ping plot stops instead of repeating the last
        // value as if it were live.
        let live = stats.state == ConnectionState::Connected;
        if let (true, Some(rtt)) = (live, stats.rtt_ms) {
            push(&mut self.rtt_ms, t, rtt);
        }
        // Senders the engine no longer knows (they left, or we did) leave the plots and legends.
        self.senders
            .retain(|s, _| stats.remotes.iter().any(|r| r.session == *s));
        push(
            &mut self.input_dbfs,
            t,
            f64::from(stats.input_level_dbfs.max(-90.0)),
        );
        for r in &stats.remotes {
            let s = self.senders.entry(r.session).or_default();
            s.name.clone_from(&r.name);
            push(&mut s.depth, t, f64::from(r.stream.buffer_depth));
            push(&mut s.loss_percent, t, r.stream.loss_percent_10s);
            push(&mut s.jitter_ms, t, r.stream.jitter_ms);
            let now = (
                t,
                r.stream.packets_late,
                r.stream.frames_concealed,
                r.stream.frames_fec_recovered,
            );
            if let Some((t0, late0, conc0, fec0)) = s.last {
                let dt = t - t0;
                if dt > 0.0 {
                    let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
                    push(&mut s.late_per_s, t, rate(now.1, late0));
                    push(&mut s.concealed_per_s, t, rate(now.2, conc0));
                    push(&mut s.fec_per_s, t, rate(now.3, fec0));
                }
            }
            s.last = Some(now);
        }
        self.latest = Some(stats);
        self.prune(t);
    }

    /// Drops points older than the window and senders with nothing left to plot.
    pub fn prune(&mut self, now: f64) {
        let oldest = now - WINDOW_S;
        prune(&mut self.rtt_ms, oldest);
        prune(&mut self.input_dbfs, oldest);
        for s in self.senders.values_mut() {
            for series in [
                &mut s.depth,
                &mut s.loss_percent,
                &mut s.jitter_ms,
                &mut s.late_per_s,
                &mut s.concealed_per_s,
                &mut s.fec_per_s,
            ] {
                prune(series, oldest);
            }
        }
        self.senders.retain(|_, s| !s.depth.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use voice_client::RemoteStats;
    use voice_core::metrics::StreamStats;

    use super::*;

    fn stats(late: u64, rtt: f64) -> EngineStats {
        EngineStats {
            state: ConnectionState::Connected,
            session: SessionToken(1),
            channel: None,
            udp_ready: true,
            path: Some(voice_client::VoicePath::Udp),
            status: voice_client::ConnectionStatus::Connected {
                path: voice_client::VoicePath::Udp,
            },
            tunnel_tx_packets: 0,
            tunnel_rx_packets: 0,
            rtt_ms: Some(rtt),
            udp_rtt_ms: None,
            transmitting: false,
            muted: false,
            deafened: false,
            whisper: None,
            input_level_dbfs: -30.0,
            tx_packets: 0,
            tx_bytes: 0,
            rx_packets: 0,
            rx_malformed: 0,
            rx_dropped: 0,
            encoder_loss_hint: 0,
            remotes: vec![RemoteStats {
                session: SessionToken(5),
                name: "bob".into(),
                speaking: true,
                volume: 1.0,
                muted: false,
                stream: StreamStats {
                    packets_late: late,
                    buffer_depth: 3,
                    ..StreamStats::default()
                },
                encrypted: false,
            }],
            spatial: None,
            playback_pacing: None,
            capture: None,
            e2ee: Default::default(),
        }
    }

    #[test]
    fn counters_become_rates_and_old_points_go() {
        let mut h = History::default();
        h.record(0.0, stats(0, 10.0));
        h.record(0.5, stats(2, 11.0));
        let bob = &h.senders[&SessionToken(5)];
        assert_eq!(bob.late_per_s.back(), Some(&[0.5, 4.0]));
        assert_eq!(bob.depth.len(), 2);
        h.record(61.0, stats(2, 12.0));
        assert_eq!(h.rtt_ms.len(), 1);
        assert_eq!(h.senders[&SessionToken(5)].depth.len(), 1);
        h.prune(200.0);
        assert!(h.senders.is_empty());
    }

    #[test]
    fn departed_senders_and_dead_links_stop_plotting() {
        let mut h = History::default();
        h.record(0.0, stats(0, 10.0));
        assert!(h.senders.contains_key(&SessionToken(5)));
        let mut gone = stats(0, 10.0);
        gone.remotes.clear();
        gone.state = ConnectionState::Disconnected;
        h.record(1.0, gone);
        assert!(h.senders.is_empty(), "bob left: out of the legends");
        assert_eq!(h.rtt_ms.len(), 1, "no ping points while disconnected");
    }
}
