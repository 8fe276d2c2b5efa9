//! Per-stream metrics: counters, the 10-second loss window, delay histograms and RFC 3550 jitter.
//!
//! [`StreamMetrics`] is owned by the stream it measures and updated in place (no allocation after
//! construction). Other threads read it as a [`StreamStats`] snapshot: a plain `Copy` struct a
//! driver hands over a channel, so nothing is shared and nothing locks.

use std::time::Duration;

use serde::Serialize;

use crate::time::Time;
use crate::SAMPLE_RATE;

/// Width of the sliding loss window.
pub const LOSS_WINDOW: Duration = Duration::from_secs(10);
const LOSS_BUCKETS: usize = 10;
const BUCKET_US: u64 = LOSS_WINDOW.as_micros() as u64 / LOSS_BUCKETS as u64;

/// Packet loss over a sliding window, kept as ten one-second buckets of (expected, received).
///
/// "Expected" grows with the highest sequence number seen, so the silence between talk spurts
/// (where senders keep numbering consecutively) never counts as loss.
#[derive(Debug, Clone, Default)]
pub struct LossWindow {
    buckets: [(u32, u32); LOSS_BUCKETS],
    /// Index (time / bucket width) of the newest bucket.
    newest: Option<u64>,
}

impl LossWindow {
    /// An empty window.
    pub fn new() -> Self {
        Self::default()
    }

    fn roll(&mut self, now: Time) {
        let idx = now.as_micros() / BUCKET_US;
        match self.newest {
            None => self.newest = Some(idx),
            Some(n) if idx > n => {
                let steps = (idx - n).min(LOSS_BUCKETS as u64);
                for k in 1..=steps {
                    self.buckets[((n + k) % LOSS_BUCKETS as u64) as usize] = (0, 0);
                }
                self.newest = Some(idx);
            }
            Some(_) => {}
        }
    }

    /// Adds `expected` newly expected and `received` newly received packets at `now`.
    pub fn record(&mut self, now: Time, expected: u32, received: u32) {
        self.roll(now);
        let n = self.newest.unwrap_or(0);
        let b = &mut self.buckets[(n % LOSS_BUCKETS as u64) as usize];
        b.0 = b.0.saturating_add(expected);
        b.1 = b.1.saturating_add(received);
    }

    /// Loss in percent over the last [`LOSS_WINDOW`] as of `now` (0 when nothing was expected).
    pub fn loss_percent(&mut self, now: Time) -> f64 {
        self.roll(now);
        let (e, r) = self.buckets.iter().fold((0u64, 0u64), |(e, r), b| {
            (e + u64::from(b.0), r + u64::from(b.1))
        });
        if e == 0 {
            0.0
        } else {
            (e.saturating_sub(r)) as f64 * 100.0 / e as f64
        }
    }
}

/// A histogram of delays with 1 ms bins up to 2 s (the last bin holds everything above).
#[derive(Debug, Clone)]
pub struct DelayHistogram {
    bins: Box<[u32; 2001]>,
    count: u64,
    sum_us: u64,
}

impl Default for DelayHistogram {
    fn default() -> Self {
        DelayHistogram {
            bins: Box::new([0; 2001]),
            count: 0,
            sum_us: 0,
        }
    }
}

impl DelayHistogram {
    /// Records one delay.
    pub fn record(&mut self, d: Duration) {
        let us = d.as_micros() as u64;
        let bin = (us / 1000).min(2000) as usize;
        self.bins[bin] = self.bins[bin].saturating_add(1);
        self.count += 1;
        self.sum_us += us;
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Mean in milliseconds (0 when empty).
    pub fn mean_ms(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_us as f64 / self.count as f64 / 1000.0
        }
    }

    /// The `q` quantile (0..=1) in milliseconds, to the upper edge of its 1 ms bin.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, &n) in self.bins.iter().enumerate() {
            seen += u64::from(n);
            if seen >= rank {
                return (i + 1) as f64;
            }
        }
        2001.0
    }
}

/// RFC 3550 §6.4.1 interarrival jitter, in 48 kHz sample units.
#[derive(Debug, Clone, Default)]
pub struct InterarrivalJitter {
    last_transit: Option<i64>,
    jitter: f64,
}

impl InterarrivalJitter {
    /// Updates with a packet's arrival time and its (unwrapped) RTP-style timestamp.
    pub fn record(&mut self, arrival: Time, timestamp: u64) {
        let arrival_units =
            (arrival.as_micros() as i128 * i128::from(SAMPLE_RATE) / 1_000_000) as i64;
        let transit = arrival_units - timestamp as i64;
        if let Some(last) = self.last_transit {
            let d = (transit - last).abs() as f64;
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
    }

    /// The current estimate in milliseconds.
    pub fn millis(&self) -> f64 {
        self.jitter * 1000.0 / f64::from(SAMPLE_RATE)
    }
}

/// A snapshot of one stream's metrics, cheap to copy to another thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StreamStats {
    /// Unique packets received (including late ones).
    pub packets_received: u64,
    /// Packets never received: expected (by sequence number) minus received.
    pub packets_lost: u64,
    /// Packets that arrived after their playout slot and were dropped.
    pub packets_late: u64,
    /// Extra copies of packets already received.
    pub packets_duplicate: u64,
    /// Packets dropped because the buffer overflowed (flood or sequence jump).
    pub packets_overflow_dropped: u64,
    /// Times the buffer resynchronised to a far-away sequence number.
    pub resyncs: u64,
    /// Frames released while playing (decoded, FEC-recovered or concealed).
    pub frames_played: u64,
    /// Frames filled by packet-loss concealment.
    pub frames_concealed: u64,
    /// Frames recovered from the next packet's in-band FEC.
    pub frames_fec_recovered: u64,
    /// Frames recovered from a later packet's deep redundancy (DRED).
    pub frames_dred_recovered: u64,
    /// Lost frames that were neither concealed nor recovered: skipped while the stream was idle
    /// (a sender that came back after a long gap) or to bound the buffer.
    pub frames_skipped: u64,
    /// Frames concealed while waiting for a late (not lost) packet; included in
    /// `frames_concealed`.
    pub frames_stalled: u64,
    /// Runs of consecutive concealed frames.
    pub concealment_events: u64,
    /// Opus payloads that failed to decode (concealed instead).
    pub decode_errors: u64,
    /// Packets buffered now.
    pub buffer_depth: u32,
    /// Most packets ever buffered at once.
    pub max_buffer_depth: u32,
    /// Mean time from arrival to playout, in ms.
    pub mean_buffer_delay_ms: f64,
    /// 95th percentile of time from arrival to playout, in ms.
    pub p95_buffer_delay_ms: f64,
    /// Mean time from send to playout, in ms (when the send time is known, e.g. in simulation).
    pub mean_end_to_end_delay_ms: f64,
    /// RFC 3550 interarrival jitter, in ms.
    pub jitter_ms: f64,
    /// Loss over the last 10 s, in percent.
    pub loss_percent_10s: f64,
    /// Samples inserted by time-scale modification (lengthening the output).
    pub samples_inserted: u64,
    /// Samples removed by time-scale modification (shortening the output).
    pub samples_removed: u64,
}

/// The live metrics of one receive stream.
#[derive(Debug, Clone, Default)]
pub struct StreamMetrics {
    /// Running counters and gauges; the delay fields are filled in by [`StreamMetrics::snapshot`].
    pub counts: StreamStats,
    /// Highest-sequence-based expected count (for loss).
    pub expected: u64,
    /// Sliding loss window.
    pub loss: LossWindow,
    /// Arrival → playout delays.
    pub buffer_delay: DelayHistogram,
    /// Send → playout delays, where known.
    pub end_to_end: DelayHistogram,
    /// Interarrival jitter.
    pub jitter: InterarrivalJitter,
}

impl StreamMetrics {
    /// Fresh metrics.
    pub fn new() -> Self {
        Self::default()
    }

    /// A consistent snapshot as of `now`.
    pub fn snapshot(&mut self, now: Time) -> StreamStats {
        let mut s = self.counts;
        s.packets_lost = self.expected.saturating_sub(s.packets_received);
        s.mean_buffer_delay_ms = self.buffer_delay.mean_ms();
        s.p95_buffer_delay_ms = self.buffer_delay.quantile_ms(0.95);
        s.mean_end_to_end_delay_ms = self.end_to_end.mean_ms();
        s.jitter_ms = self.jitter.millis();
        s.loss_percent_10s = self.loss.loss_percent(now);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_mean_and_quantiles() {
        let mut h = DelayHistogram::default();
        for ms in 1..=100u64 {
            h.record(Duration::from_micros(ms * 1000 - 500));
        }
        assert!((h.mean_ms() - 50.0).abs() < 0.01);
        assert_eq!(h.quantile_ms(0.95), 95.0);
        assert_eq!(h.quantile_ms(1.0), 100.0);
        h.record(Duration::from_secs(10));
        assert_eq!(h.quantile_ms(1.0), 2001.0);
    }

    #[test]
    fn jitter_is_zero_for_perfect_pacing_and_grows_with_variation() {
        let mut j = InterarrivalJitter::default();
        for k in 0..50u64 {
            j.record(Time::from_millis(100 + 20 * k), 960 * k);
        }
        assert!(j.millis() < 1e-9);
        for k in 50..500u64 {
            let wobble = if k % 2 == 0 { 10 } else { 0 };
            j.record(Time::from_millis(100 + 20 * k + wobble), 960 * k);
        }
        assert!((j.millis() - 10.0).abs() < 0.5, "{}", j.millis());
    }
}
