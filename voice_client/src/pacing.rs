//! The audio clocks pace the engine thread's media work.
//!
//! With a sound card or application-owned audio, the device (or the application's push and pull)
//! is the clock, not a timer on the engine thread:
//!
//! * **Capture**: the producer (device callback, [`crate::AppCapture::push`]) raises a
//!   [`FrameSignal`] when its ring has gathered a whole 20 ms frame, which wakes the engine's
//!   `poll`; the frame is encoded and sent at once instead of waiting up to 20 ms for a timer tick.
//! * **Playback**: the consumer (device callback, [`crate::AppPlayback::pull`]) stamps each pull on
//!   a [`PullClock`]. The [`PlayoutPacer`] learns the consumer's period and chunk size from those
//!   stamps and mixes the next frame just in time: `lead` before the first pull that the ring's
//!   fill cannot serve. A frame is therefore decoded from packets that arrived up to that moment
//!   and waits in the ring about `lead`, instead of a whole frame or two. When the consumer starves
//!   (the engine thread woke too late) the lead grows; after a quiet while it shrinks again.
//!
//! Sources and sinks without a clock of their own (files, tones, `Null`) and a consumer that stops
//! pulling fall back to the engine's 20 ms timer, as does a producer that stops pushing.
//!
//! Everything the audio side touches here is a few atomics: no lock, no allocation, no logging.
//! The pacer itself runs on the engine thread and takes times as arguments, so its logic is
//! tested on a simulated clock.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use voice_core::engine::PlaybackPacing;
use voice_core::FRAME_SAMPLES;

/// Wakes the engine thread when a capture ring holds a whole frame.
#[derive(Debug, Default)]
pub struct FrameSignal {
    waker: OnceLock<Arc<mio::Waker>>,
}

impl FrameSignal {
    /// A signal with no waker yet (the engine installs it with [`FrameSignal::set_waker`]).
    pub fn new() -> Arc<FrameSignal> {
        Arc::new(FrameSignal::default())
    }

    /// Installs the waker of the engine thread's `poll` (once; later calls are ignored).
    pub fn set_waker(&self, waker: Arc<mio::Waker>) {
        let _ = self.waker.set(waker);
    }

    /// Called by the producer after it pushed: wakes the engine when this push completed a frame
    /// (`before` samples were queued before it, `after` now). Wait-free apart from the eventfd
    /// write of the wake itself, which never blocks.
    pub fn pushed(&self, before: usize, after: usize) {
        if before < FRAME_SAMPLES && after >= FRAME_SAMPLES {
            if let Some(w) = self.waker.get() {
                let _ = w.wake();
            }
        }
    }
}

/// What a playback consumer publishes at each pull, read by the engine thread.
#[derive(Debug)]
pub struct PullClock {
    origin: Instant,
    pulls: AtomicU64,
    last_us: AtomicU64,
    last_len: AtomicU32,
    short: AtomicU64,
}

/// One reading of a [`PullClock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PullSnapshot {
    /// Pulls so far.
    pub pulls: u64,
    /// When the last pull happened, µs on the clock's time base ([`PullClock::now_us`]).
    pub last_us: u64,
    /// Samples the last pull asked for.
    pub last_len: usize,
    /// Samples asked for but not in the ring, over all pulls (the engine was late).
    pub short: u64,
}

impl PullClock {
    /// A clock whose time base starts now.
    pub fn new() -> Arc<PullClock> {
        Arc::new(PullClock {
            origin: Instant::now(),
            pulls: AtomicU64::new(0),
            last_us: AtomicU64::new(0),
            last_len: AtomicU32::new(0),
            short: AtomicU64::new(0),
        })
    }

    /// Microseconds since the clock's origin.
    pub fn now_us(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }

    /// The instant `us` microseconds after the clock's origin.
    pub fn instant_at(&self, us: u64) -> Instant {
        self.origin + std::time::Duration::from_micros(us)
    }

    /// Called by the consumer after each pull: `asked` samples wanted, `got` of them were in the
    /// ring. Wait-free.
    pub fn pulled(&self, asked: usize, got: usize) {
        self.last_us.store(self.now_us(), Ordering::Relaxed);
        self.last_len
            .store(asked.min(u32::MAX as usize) as u32, Ordering::Relaxed);
        if got < asked {
            self.short
                .fetch_add((asked - got) as u64, Ordering::Relaxed);
        }
        self.pulls.fetch_add(1, Ordering::Release);
    }

    /// The consumer's latest pull as the engine thread sees it.
    pub fn snapshot(&self) -> PullSnapshot {
        let pulls = self.pulls.load(Ordering::Acquire);
        PullSnapshot {
            pulls,
            last_us: self.last_us.load(Ordering::Relaxed),
            last_len: self.last_len.load(Ordering::Relaxed) as usize,
            short: self.short.load(Ordering::Relaxed),
        }
    }
}

/// The lead a pacer starts with: how long before the consumer needs a frame it is mixed, µs.
pub const START_LEAD_US: u64 = 6_000;
/// The least lead (engine thread wake-up and mixing must fit in it), µs.
pub const MIN_LEAD_US: u64 = 4_000;
/// The most lead: beyond a frame the timer-driven engine would do as well, µs.
pub const MAX_LEAD_US: u64 = 20_000;
/// Added to the lead each time the consumer starved, µs.
const LEAD_STEP_US: u64 = 3_000;
/// Taken off the lead after [`RELAX_AFTER_US`] without starving, µs.
const LEAD_RELAX_US: u64 = 1_000;
/// How long the consumer must be served without starving before the lead shrinks, µs.
const RELAX_AFTER_US: u64 = 10_000_000;
/// A consumer that has not pulled for this long is not pacing anything: the timer takes over, µs.
pub const STALE_US: u64 = 200_000;
/// Pull intervals beyond this are pauses, not the consumer's period, µs.
const MAX_PERIOD_US: u64 = 100_000;

/// Decides when the engine thread mixes the next frame for a consumer with its own clock.
#[derive(Debug, Clone)]
pub struct PlayoutPacer {
    seen: PullSnapshot,
    /// Smoothed interval between pulls, µs (`None` until two pulls were seen).
    period_us: Option<f64>,
    /// Where the consumer's clock put its last pull, µs: its earliest phase, not its latest
    /// (a consumer thread is woken late now and then, never early; a late pull must not make the
    /// pacer expect the next one late).
    grid_us: f64,
    /// A pull the period is measured from (count, µs): over many pulls the consumer's clock
    /// shows through its thread's wake-up jitter.
    base: Option<(u64, f64)>,
    /// The largest pull of the current and the previous window of pulls.
    chunk: usize,
    window_max: usize,
    prev_window_max: usize,
    window_pulls: u32,
    lead_us: u64,
    /// Since when the consumer has not starved (µs on the clock's base).
    clean_since_us: u64,
}

impl Default for PlayoutPacer {
    fn default() -> Self {
        PlayoutPacer::new()
    }
}

impl PlayoutPacer {
    /// A pacer that has seen no pull yet.
    pub fn new() -> PlayoutPacer {
        PlayoutPacer {
            seen: PullSnapshot::default(),
            period_us: None,
            grid_us: 0.0,
            base: None,
            chunk: 0,
            window_max: 0,
            prev_window_max: 0,
            window_pulls: 0,
            lead_us: START_LEAD_US,
            clean_since_us: 0,
        }
    }

    /// The current lead, µs.
    pub fn lead_us(&self) -> u64 {
        self.lead_us
    }

    /// The consumer's learned period, µs.
    pub fn period_us(&self) -> Option<f64> {
        self.period_us
    }

    /// The pacing as the engine's statistics show it, with the clock's latest reading.
    pub fn report(&self, snap: PullSnapshot) -> PlaybackPacing {
        PlaybackPacing {
            lead_ms: self.lead_us as f32 / 1000.0,
            period_ms: self.period_us.map(|p| (p / 1000.0) as f32),
            pulls: snap.pulls,
            starved_samples: snap.short,
        }
    }

    /// Takes in the consumer's latest pull at `now_us`.
    pub fn observe(&mut self, now_us: u64, snap: PullSnapshot) {
        if snap.pulls > self.seen.pulls {
            let new = snap.pulls - self.seen.pulls;
            let at = snap.last_us as f64;
            let mut on_grid = false;
            if self.seen.pulls > 0 {
                let interval = snap.last_us.saturating_sub(self.seen.last_us) / new;
                if interval > 0 && interval <= MAX_PERIOD_US {
                    let i = interval as f64;
                    let (base_pulls, base_at) =
                        *self.base.get_or_insert((self.seen.pulls, self.grid_us));
                    let span = snap.pulls - base_pulls;
                    // The mean interval since the base pull (the base is taken when a period
                    // is first measured, and renewed now and then below).
                    self.period_us = Some(if span > 0 {
                        (at - base_at) / span as f64
                    } else {
                        i
                    });
                    if span >= 2_000 {
                        // Measure from a recent pull: the period follows a changed consumer.
                        self.base = Some((snap.pulls, at));
                    }
                    if let Some(p) = self.period_us {
                        // Early against the grid: the grid moves there; late: it follows
                        // slowly (a lasting change of phase, or drift the period has not
                        // caught up with yet).
                        let expected = self.grid_us + p * new as f64;
                        self.grid_us = if at <= expected {
                            at
                        } else {
                            expected + (at - expected) / 16.0
                        };
                        on_grid = true;
                    }
                }
            }
            if !on_grid {
                // The first pull, or the first after a pause: a new grid and a new period base.
                self.grid_us = at;
                self.base = None;
            }
            self.window_max = self.window_max.max(snap.last_len);
            self.window_pulls += new.min(u64::from(u32::MAX)) as u32;
            if self.window_pulls >= 50 {
                self.prev_window_max = self.window_max;
                self.window_max = snap.last_len;
                self.window_pulls = 0;
            }
            self.chunk = self.window_max.max(self.prev_window_max);
        }
        if snap.short > self.seen.short && self.seen.pulls > 0 {
            self.lead_us = (self.lead_us + LEAD_STEP_US).min(MAX_LEAD_US);
            self.clean_since_us = now_us;
        } else if now_us.saturating_sub(self.clean_since_us) >= RELAX_AFTER_US {
            self.lead_us = self.lead_us.saturating_sub(LEAD_RELAX_US).max(MIN_LEAD_US);
            self.clean_since_us = now_us;
        }
        if self.seen.pulls == 0 && snap.pulls > 0 {
            self.clean_since_us = now_us;
        }
        self.seen = snap;
    }

    /// When the next frame must be mixed, µs on the clock's base, given `fill` samples queued
    /// for the consumer; `None` when the consumer gives no clock to pace by (not pulling yet, or
    /// not for [`STALE_US`]), and the engine's timer paces instead.
    pub fn mix_at(&self, now_us: u64, fill: usize) -> Option<u64> {
        let period = self.period_us?;
        if self.chunk == 0 || now_us.saturating_sub(self.seen.last_us) > STALE_US {
            return None;
        }
        // The first pull the queued samples cannot serve in full.
        let served = (fill / self.chunk) as f64;
        let starve = self.grid_us + period * (served + 1.0);
        Some((starve as u64).saturating_sub(self.lead_us))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a simulated run measured.
    struct Run {
        /// Mean time from mixing a frame to the pull that starts playing it, µs.
        wait_us: f64,
        /// Samples the consumer asked for but did not get, once settled (see [`run_jittery`]).
        short: u64,
        pacer: PlayoutPacer,
    }

    /// A simulated consumer pulling `chunk` samples every `period_us` from a ring that the engine
    /// fills one frame at a time, paced by the pacer (the timer while it gives no time); the
    /// engine thread wakes `late(t)` after the time `t` it asked for.
    fn run(chunk: usize, period_us: u64, late: impl Fn(u64) -> u64, secs: u64) -> Run {
        run_jittery(chunk, period_us, late, |_| 0, 2, secs)
    }

    /// [`run`] with a consumer whose `k`-th pull comes `jitter(k)` µs after its clock's tick;
    /// starving is counted from pull `settled` on.
    fn run_jittery(
        chunk: usize,
        period_us: u64,
        late: impl Fn(u64) -> u64,
        jitter: impl Fn(u64) -> u64,
        settled: u64,
        secs: u64,
    ) -> Run {
        let mut pacer = PlayoutPacer::new();
        let mut snap = PullSnapshot::default();
        // Frames queued: (mix time, samples of it left).
        let mut ring: std::collections::VecDeque<(u64, usize)> = Default::default();
        let fill = |r: &std::collections::VecDeque<(u64, usize)>| r.iter().map(|f| f.1).sum();
        let (mut wait_sum, mut waits) = (0u64, 0u64);
        let mut next_pull = 1_000u64;
        let mut timer = 0u64;
        let mut wake_at = 0u64;
        let mut first_short = None;
        while next_pull < secs * 1_000_000 {
            let pull_at = next_pull + jitter(snap.pulls);
            if pull_at <= wake_at {
                let now = pull_at;
                let mut want = chunk;
                while want > 0 {
                    let Some(front) = ring.front_mut() else { break };
                    if front.1 == FRAME_SAMPLES {
                        wait_sum += now - front.0;
                        waits += 1;
                    }
                    let n = want.min(front.1);
                    front.1 -= n;
                    want -= n;
                    if front.1 == 0 {
                        ring.pop_front();
                    }
                }
                snap.pulls += 1;
                snap.last_us = now;
                snap.last_len = chunk;
                snap.short += want as u64;
                if snap.pulls == settled {
                    // Until two pulls give a period, the timer paces (and may fall short); a
                    // jittery consumer's period takes a few more to show.
                    first_short = Some(snap.short);
                }
                next_pull += period_us;
                continue;
            }
            let now = wake_at;
            pacer.observe(now, snap);
            let mut frames = 0;
            while pacer.mix_at(now, fill(&ring)).is_some_and(|t| t <= now) && frames < 5 {
                ring.push_back((now, FRAME_SAMPLES));
                frames += 1;
            }
            while timer <= now {
                if pacer.mix_at(now, fill(&ring)).is_none() && fill(&ring) < 2 * FRAME_SAMPLES {
                    ring.push_back((now, FRAME_SAMPLES));
                }
                timer += 20_000;
            }
            let want = pacer
                .mix_at(now, fill(&ring))
                .map_or(timer, |t| t.min(timer));
            let want = want.max(now + 1);
            wake_at = want + late(want);
        }
        Run {
            wait_us: wait_sum as f64 / waits.max(1) as f64,
            short: snap.short - first_short.unwrap_or(0),
            pacer,
        }
    }

    #[test]
    fn a_punctual_engine_mixes_just_before_each_pull() {
        // 20 ms pulls of one frame: each frame is mixed `lead` before its pull and played whole,
        // so a frame waits in the ring about the lead (the timer alone kept it 20-40 ms).
        let r = run(FRAME_SAMPLES, 20_000, |_| 200, 5);
        assert_eq!(r.short, 0, "no pull starves once paced");
        assert!((r.pacer.period_us().unwrap() - 20_000.0).abs() < 1.0);
        assert_eq!(r.pacer.lead_us(), START_LEAD_US);
        assert!(
            r.wait_us < START_LEAD_US as f64 + 1_000.0,
            "frames waited {} µs",
            r.wait_us
        );
    }

    #[test]
    fn small_device_periods_are_served_half_a_frame_at_a_time() {
        // A 10 ms device period: a frame covers two pulls, mixed `lead` before the first.
        let r = run(480, 10_000, |_| 300, 5);
        assert_eq!(r.short, 0);
        assert!((r.pacer.period_us().unwrap() - 10_000.0).abs() < 1.0);
        assert!(r.wait_us < START_LEAD_US as f64 + 1_000.0, "{}", r.wait_us);
    }

    #[test]
    fn large_pulls_are_served_whole() {
        // An application pulling 2048 samples (42.7 ms) at a time: several frames per pull.
        let r = run(2048, 42_667, |_| 300, 5);
        assert_eq!(r.short, 0);
    }

    #[test]
    fn a_consumer_woken_late_now_and_then_is_still_served() {
        // The consumer's thread pulls up to 8 ms after its clock's tick (pseudo-random): the
        // pacer expects pulls on the consumer's clock, not after its latest late pull. (Its
        // period takes a few pulls to show through the jitter: counted from the 25th pull.)
        let jitter = |k: u64| (k.wrapping_mul(2_654_435_761) >> 7) % 8_000;
        for (chunk, period) in [(480, 10_000), (FRAME_SAMPLES, 20_000)] {
            let r = run_jittery(chunk, period, |_| 300, jitter, 25, 10);
            assert_eq!(r.short, 0, "starved");
            assert!(
                r.pacer.lead_us() <= START_LEAD_US + LEAD_STEP_US,
                "lead {}",
                r.pacer.lead_us()
            );
        }
    }

    #[test]
    fn a_late_engine_thread_earns_a_longer_lead_then_keeps_up() {
        // The engine thread wakes 8 ms late for a while (a loaded machine): the consumer starves
        // a few times, the lead grows past the lateness, and then nothing starves any more.
        let late = |t: u64| if t < 2_000_000 { 8_000 } else { 300 };
        let r = run(FRAME_SAMPLES, 20_000, late, 4);
        assert!(r.pacer.lead_us() > 8_000, "lead {}", r.pacer.lead_us());
        assert!(
            r.short > 0 && r.short < 4 * FRAME_SAMPLES as u64,
            "starved {}",
            r.short
        );
        let again = run(FRAME_SAMPLES, 20_000, |_| 8_000, 4);
        assert!(
            again.short < 4 * FRAME_SAMPLES as u64,
            "starved {}",
            again.short
        );
    }

    #[test]
    fn the_lead_relaxes_after_a_quiet_while() {
        let late = |t: u64| if t < 1_000_000 { 9_000 } else { 200 };
        let r = run(FRAME_SAMPLES, 20_000, late, 80);
        assert!(r.pacer.lead_us() >= MIN_LEAD_US);
        assert!(
            r.pacer.lead_us() <= START_LEAD_US,
            "lead {} did not relax",
            r.pacer.lead_us()
        );
    }

    #[test]
    fn without_pulls_the_timer_paces() {
        let mut p = PlayoutPacer::new();
        assert_eq!(p.mix_at(0, 0), None);
        let mut s = PullSnapshot {
            pulls: 1,
            last_us: 10_000,
            last_len: 960,
            short: 960,
        };
        p.observe(10_000, s);
        assert_eq!(p.mix_at(10_000, 0), None, "one pull gives no period");
        s.pulls = 2;
        s.last_us = 30_000;
        p.observe(30_000, s);
        assert_eq!(
            p.lead_us(),
            START_LEAD_US,
            "the start-up underrun costs no lead"
        );
        // Next pull at 50 ms; the ring is empty: mix at 50 ms - lead.
        assert_eq!(p.mix_at(30_000, 0), Some(50_000 - START_LEAD_US));
        // One frame queued serves that pull: the next frame is due before the one after.
        assert_eq!(p.mix_at(30_000, 960), Some(70_000 - START_LEAD_US));
        // The consumer stopped pulling: the timer takes over.
        assert_eq!(p.mix_at(30_000 + STALE_US + 1, 0), None);
    }
}
