//! The adaptive playout policy: a target delay estimated from how late packets arrive.
//!
//! Like WebRTC NetEq's delay manager, the estimate works on *relative* delay: each packet's transit
//! (`arrival - timestamp`) minus the smallest transit seen in a sliding window (the fastest recent
//! packet). The clock offset between sender and receiver cancels, and a slow clock drift only moves
//! the window minimum, so a ±200 ppm sender does not make the buffer creep.
//!
//! * **Quantile with forgetting.** Transit times go into a histogram (2 ms bins, ±1 s around an
//!   anchor that follows the floor on long drifting calls) whose
//!   weights decay by a forgetting factor per packet; the target is a high quantile of it (97 % by
//!   default). The target therefore grows within a second or two when jitter rises and shrinks
//!   back when it falls.
//! * **Spikes are not jitter.** A packet far above the current estimate (more than
//!   [`AdaptiveConfig::spike_ms`]) starts a *spike*: it and the packets queued behind it (still
//!   more than 20 ms above the estimate, sent within a second of it) are held out of the histogram,
//!   so one queue build-up does not raise the target for seconds after it drained. If held-out
//!   packets become common (more than 10 % of a ~5 s window) the path has really changed and they
//!   count again.
//! * **Loss and FEC.** A frame is missing at its playout time when its packet is late, or when
//!   the packet was lost and the *next* packet — whose in-band FEC rebuilds it — is not held yet
//!   (it left one frame later). The target is the smallest delay `T` at which that happens no
//!   more often than the quantile allows: `P(d > T) + loss · P(d > T − 20 ms) ≤ 3 %`, with `d` the
//!   relative delay from the histogram and `loss` the recent loss rate (a decaying average whose
//!   start-up bias is divided out, so the first losses of a call count at once). Without loss
//!   this is the 97 % quantile; on a steady path losing 8 % it is about one frame more (the FEC
//!   packet must be waiting); at 1 % loss it barely moves, because rebuilding 1 % of frames is
//!   not worth a frame of delay for everyone. Reordered packets need no margin of their own:
//!   their lateness is in `d`.
//! * **Bounds and start.** The target is clamped to `[min_delay_ms, max_delay_ms]`; before
//!   `warmup` packets have been seen it is `initial_delay_ms`.
//!
//! The policy starts playout when the first held packet has waited, relative to the fastest
//! path, at least the target ([`PlayoutPolicy::should_start`]), so a clean path plays a packet at
//! the first tick after it arrives. While playing, the receiver compares
//! [`PlayoutPolicy::schedule_delay`] with the target and shortens or lengthens the output by time
//! scale modification (see [`crate::tsm`]).

use std::time::Duration;

use super::policy::{BufferView, PlayoutPolicy};
use crate::time::Time;
use crate::{FRAME_DURATION, SAMPLE_RATE};

/// Tuning of [`AdaptivePolicy`] (integers, so a policy choice stays `Eq` and `Copy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdaptiveConfig {
    /// Lowest target delay in ms.
    pub min_delay_ms: u32,
    /// Highest target delay in ms.
    pub max_delay_ms: u32,
    /// Target before `warmup` packets have arrived, in ms.
    pub initial_delay_ms: u32,
    /// Packets needed before the estimate replaces `initial_delay_ms`.
    pub warmup: u32,
    /// The quantile of relative delay aimed for, in per mille (970 = 97 %).
    pub quantile_permille: u32,
    /// Memory of the histogram in packets (forgetting factor `1 - 1/memory`).
    pub memory_packets: u32,
    /// A packet this far (ms) above the estimate starts a delay spike.
    pub spike_ms: u32,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        AdaptiveConfig {
            min_delay_ms: 0,
            max_delay_ms: 400,
            initial_delay_ms: 0,
            warmup: 10,
            quantile_permille: 970,
            memory_packets: 200,
            spike_ms: 80,
        }
    }
}

const BIN_US: i64 = 2_000;
/// Bins cover ±1 s of transit around the anchor.
const BINS: usize = 1000;
const HALF_RANGE_US: i64 = BINS as i64 / 2 * BIN_US;
/// The anchor follows the floor once they are this far apart (drift over a long call).
const RECENTER_US: i64 = 250_000;
/// Blocks of the sliding transit minimum, and their length.
const MIN_BLOCKS: usize = 5;
const MIN_BLOCK_US: u64 = 2_000_000;

/// The smallest transit over the last `MIN_BLOCKS * MIN_BLOCK_US` of arrival time.
#[derive(Debug, Clone)]
struct SlidingMin {
    blocks: [Option<i64>; MIN_BLOCKS],
    newest: Option<u64>,
}

impl SlidingMin {
    fn new() -> Self {
        SlidingMin {
            blocks: [None; MIN_BLOCKS],
            newest: None,
        }
    }

    fn record(&mut self, now: Time, transit: i64) {
        let idx = now.as_micros() / MIN_BLOCK_US;
        if let Some(n) = self.newest {
            if idx > n {
                for k in 1..=(idx - n).min(MIN_BLOCKS as u64) {
                    self.blocks[((n + k) % MIN_BLOCKS as u64) as usize] = None;
                }
            }
        }
        if self.newest.is_none_or(|n| idx > n) {
            self.newest = Some(idx);
        }
        let b = &mut self.blocks[(idx % MIN_BLOCKS as u64) as usize];
        *b = Some(b.map_or(transit, |m| m.min(transit)));
    }

    fn get(&self) -> Option<i64> {
        self.blocks.iter().flatten().copied().min()
    }
}

/// A playout policy whose target delay follows the measured delay distribution.
#[derive(Debug, Clone)]
pub struct AdaptivePolicy {
    cfg: AdaptiveConfig,
    forget: f64,
    /// Transit times relative to `anchor`, with forgetting.
    hist: Box<[f64; BINS]>,
    anchor: Option<i64>,
    mass: f64,
    seen: u64,
    floor: SlidingMin,
    highest_seq: Option<u64>,
    /// Timestamp (µs) of the packet that started the current spike.
    spike_from: Option<i64>,
    /// Fraction of recent packets held out as spike packets (decaying average).
    held_out: f64,
    /// Fraction of recent packets missing from the sequence (decaying average).
    lost: f64,
    /// Weight the average `lost` has gathered so far (`1 - (1 - 1/250)^steps`): dividing by it
    /// removes the average's bias toward its zero start, so the first losses of a call count.
    lost_norm: f64,
    estimate_us: i64,
}

impl AdaptivePolicy {
    /// A policy with the given tuning.
    pub fn new(cfg: AdaptiveConfig) -> Self {
        let memory = f64::from(cfg.memory_packets.max(2));
        AdaptivePolicy {
            cfg,
            forget: 1.0 - 1.0 / memory,
            hist: Box::new([0.0; BINS]),
            anchor: None,
            mass: 0.0,
            seen: 0,
            floor: SlidingMin::new(),
            highest_seq: None,
            spike_from: None,
            held_out: 0.0,
            lost: 0.0,
            lost_norm: 0.0,
            estimate_us: i64::from(cfg.initial_delay_ms) * 1000,
        }
    }

    /// The tuning.
    pub fn config(&self) -> AdaptiveConfig {
        self.cfg
    }

    fn transit_us(now: Time, timestamp: u64) -> i64 {
        now.as_micros() as i64 - (timestamp as i128 * 1_000_000 / i128::from(SAMPLE_RATE)) as i64
    }

    /// Adds one transit time. The histogram holds transit times, not delays relative to the
    /// floor: when the window minimum moves (an old minimum expires) the quantile does not
    /// jump, and the receiver's comparison `transit >= quantile` does not depend on the floor.
    fn add(&mut self, transit: i64, floor: i64) {
        let anchor = *self.anchor.get_or_insert(floor);
        if (floor - anchor).abs() > RECENTER_US {
            let shift = (floor - anchor) / BIN_US;
            let old = self.hist.clone();
            for (i, w) in self.hist.iter_mut().enumerate() {
                let from = i as i64 + shift;
                *w = if (0..BINS as i64).contains(&from) {
                    old[from as usize]
                } else {
                    0.0
                };
            }
            self.anchor = Some(anchor + shift * BIN_US);
        }
        let anchor = self.anchor.unwrap_or(floor);
        for w in self.hist.iter_mut() {
            *w *= self.forget;
        }
        let bin = ((transit - anchor + HALF_RANGE_US) / BIN_US).clamp(0, BINS as i64 - 1) as usize;
        self.hist[bin] += 1.0;
        self.mass = self.mass * self.forget + 1.0;
    }

    fn refresh(&mut self, floor: i64) {
        if self.seen < u64::from(self.cfg.warmup) {
            return;
        }
        let anchor = self.anchor.unwrap_or(floor);
        self.estimate_us = self.miss_budget_us() + anchor - floor;
    }

    /// The recent loss rate, without the average's bias toward its zero start.
    fn loss_rate(&self) -> f64 {
        if self.lost_norm > 0.0 {
            (self.lost / self.lost_norm).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    /// The smallest transit (relative to the anchor) at which frames go missing at most as often
    /// as the quantile allows: a frame is missing when its packet is late, or when it is lost
    /// and the next packet — whose in-band FEC carries it — is not held one frame ahead:
    /// `P(d > T) + loss · P(d > T - 20 ms) <= 1 - quantile`. Without loss this is the quantile.
    fn miss_budget_us(&self) -> i64 {
        const FEC_BINS: usize = (FRAME_DURATION.as_micros() as i64 / BIN_US) as usize;
        let budget = 1.0 - f64::from(self.cfg.quantile_permille.min(1000)) / 1000.0;
        let loss = self.loss_rate();
        let mass = self.mass.max(f64::MIN_POSITIVE);
        // Cumulative mass of the bins up to each of the last FEC_BINS + 1 bins (a ring).
        let mut ring = [0.0f64; FEC_BINS + 1];
        let mut acc = 0.0;
        for (i, &w) in self.hist.iter().enumerate() {
            acc += w;
            ring[i % (FEC_BINS + 1)] = acc;
            let behind = if i >= FEC_BINS {
                ring[(i - FEC_BINS) % (FEC_BINS + 1)]
            } else {
                0.0
            };
            let late = (1.0 - acc / mass).max(0.0);
            let unrepaired = loss * (1.0 - behind / mass).max(0.0);
            if late + unrepaired <= budget + 1e-9 {
                return (i as i64 + 1) * BIN_US - HALF_RANGE_US;
            }
        }
        HALF_RANGE_US
    }

    fn bounded_us(&self) -> i64 {
        self.estimate_us.clamp(
            i64::from(self.cfg.min_delay_ms) * 1000,
            i64::from(self.cfg.max_delay_ms.max(self.cfg.min_delay_ms)) * 1000,
        )
    }
}

impl Default for AdaptivePolicy {
    fn default() -> Self {
        Self::new(AdaptiveConfig::default())
    }
}

impl PlayoutPolicy for AdaptivePolicy {
    fn name(&self) -> &'static str {
        "adaptive"
    }

    fn on_arrival(&mut self, now: Time, seq: u64, timestamp: u64) {
        let transit = Self::transit_us(now, timestamp);
        self.floor.record(now, transit);
        let floor = self.floor.get().unwrap_or(transit);
        let relative = transit - floor;
        self.seen += 1;
        match self.highest_seq {
            Some(h) if seq > h + 1 => {
                for _ in 0..(seq - h - 1).min(64) {
                    self.lost += (1.0 - self.lost) / 250.0;
                    self.lost_norm += (1.0 - self.lost_norm) / 250.0;
                }
            }
            Some(h) if seq < h => self.lost = (self.lost - 1.0 / 250.0).max(0.0),
            _ => {}
        }
        self.lost -= self.lost / 250.0;
        self.lost_norm += (1.0 - self.lost_norm) / 250.0;
        self.highest_seq = Some(self.highest_seq.map_or(seq, |h| h.max(seq)));

        let estimate = self.estimate_us;
        let ts_us = (timestamp as i128 * 1_000_000 / i128::from(SAMPLE_RATE)) as i64;
        let warm = self.seen > u64::from(self.cfg.warmup);
        let starts_spike = warm && relative > estimate + i64::from(self.cfg.spike_ms) * 1000;
        let in_spike = self.spike_from.is_some_and(|from| {
            ts_us >= from && ts_us - from <= 1_000_000 && relative > estimate + 20_000
        });
        let hold_out = (starts_spike || in_spike) && self.held_out < 0.1;
        self.held_out += (if hold_out { 1.0 } else { 0.0 } - self.held_out) / 250.0;
        if starts_spike && !in_spike {
            self.spike_from = Some(ts_us);
        }
        if hold_out {
            return;
        }
        if !in_spike {
            self.spike_from = None;
        }
        self.add(transit, floor);
        self.refresh(floor);
    }

    fn should_start(&self, now: Time, view: BufferView) -> bool {
        if view.depth == 0 {
            return false;
        }
        let target = self.target_delay();
        match (view.next_timestamp, self.floor.get()) {
            (Some(ts), Some(floor)) => {
                Self::transit_us(now, ts) - floor >= target.as_micros() as i64
                    || view.oldest_wait >= target + Duration::from_millis(60)
            }
            _ => view.oldest_wait >= target || view.holds_end_of_spurt,
        }
    }

    fn target_delay(&self) -> Duration {
        Duration::from_micros(self.bounded_us() as u64)
    }

    fn holds_on_stall(&self) -> bool {
        true
    }

    fn schedule_delay(&self, now: Time, timestamp: u64) -> Option<i64> {
        self.floor
            .get()
            .map(|floor| Self::transit_us(now, timestamp) - floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(p: &mut AdaptivePolicy, from: u64, n: u64, delay_ms: impl Fn(u64) -> f64) {
        for k in from..from + n {
            let at = Time::from_millis_f64(20.0 * k as f64 + delay_ms(k));
            p.on_arrival(at, k, k * 960);
        }
    }

    #[test]
    fn steady_path_gives_a_small_target_and_jitter_a_larger_one() {
        let mut p = AdaptivePolicy::default();
        feed(&mut p, 0, 200, |_| 30.0);
        assert!(p.target_delay() <= Duration::from_millis(4));
        feed(&mut p, 200, 300, |k| 30.0 + (k % 5) as f64 * 10.0);
        let t = p.target_delay().as_millis();
        assert!((38..=46).contains(&t), "target {t}");
    }

    /// Feeds packets `from..from + n` of a steady path (30–32 ms transit), dropping every
    /// `lose_every`-th one (0: none).
    fn feed_lossy(p: &mut AdaptivePolicy, from: u64, n: u64, lose_every: u64) {
        for k in from..from + n {
            if lose_every > 0 && k % lose_every == lose_every / 2 {
                continue;
            }
            let at = Time::from_millis_f64(20.0 * k as f64 + 30.0 + (k % 3) as f64);
            p.on_arrival(at, k, k * 960);
        }
    }

    #[test]
    fn loss_adds_the_frame_fec_needs_only_where_it_pays() {
        let target = |lose_every| {
            let mut p = AdaptivePolicy::default();
            feed_lossy(&mut p, 0, 1000, lose_every);
            p.target_delay().as_millis()
        };
        let clean = target(0);
        assert!(clean <= 4, "clean {clean}");
        // 8 % loss on a steady path: the packet after a gap must already wait one frame ahead.
        let lossy = target(12);
        assert!((20..=26).contains(&lossy), "8 % loss: {lossy}");
        // 1 % loss: rebuilding 1 % of frames is not worth a frame of delay.
        let light = target(100);
        assert!(light <= clean + 2, "1 % loss: {light} against {clean}");
    }

    #[test]
    fn the_first_losses_of_a_call_count_at_once() {
        // Three losses in the first 60 packets (5 %): the unbiased loss rate already asks for
        // the FEC frame, where the plain decaying average (still near 1 %) would not.
        let mut p = AdaptivePolicy::default();
        feed_lossy(&mut p, 0, 60, 20);
        assert!(p.loss_rate() > 0.03, "loss rate {}", p.loss_rate());
        assert!(
            p.target_delay() >= Duration::from_millis(18),
            "{:?}",
            p.target_delay()
        );
    }

    #[test]
    fn a_lone_spike_is_held_out() {
        let mut p = AdaptivePolicy::default();
        feed(&mut p, 0, 200, |k| 30.0 + (k % 3) as f64);
        let before = p.target_delay();
        feed(&mut p, 200, 20, |k| 30.0 + 300.0 - 15.0 * (k - 200) as f64);
        feed(&mut p, 220, 10, |k| 30.0 + (k % 3) as f64);
        assert!(p.target_delay() <= before + Duration::from_millis(10));
    }
}
