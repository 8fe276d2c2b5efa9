//! Clock drift between the loudspeaker and the microphone, for the echo canceller.
//!
//! A microphone and a loudspeaker on different sound cards (a USB webcam beside the laptop's
//! speakers) run on different crystals: 50–200 ppm apart is common. The echo path then moves by
//! that much: 3–12 ms a minute. The Kalman filter follows slow changes at low frequencies, but at
//! 100 ppm a 10 kHz bin's phase turns by 3.6° every 10 ms, faster than the filter may change
//! without giving up its robustness in double talk: on reverberant rooms 30 ppm left 10–12 dB of
//! cancellation after a minute, 200 ppm 3–5 dB (`benches/apm/ECHO.md`).
//!
//! [`DriftCompensator`] keeps the echo path still instead (as Pawig, Enzner & Vary, "Adaptive
//! sampling rate correction for acoustic echo control in voice-over-IP", IEEE TSP 2010, do): the
//! canceller consumes the far end at the microphone's pace, `1 + rate` far-end samples per
//! microphone sample, read at fractional positions with a 16-tap Kaiser-windowed sinc. That also
//! keeps the far end the caller hands in (at the loudspeaker's pace) paired with the capture
//! blocks: no block runs short and is filled with silence.
//!
//! `rate` comes from the filter itself: every [`INTERVAL_BLOCKS`] the learnt echo path is
//! compared with a snapshot taken one interval earlier, and the phase slope across frequency of
//! their cross-spectrum says how far it moved. The slope is read from products of neighbouring
//! bins (`Σ C(k+1)·C*(k)`), which is unambiguous for moves up to half the FFT length. A move is
//! trusted only from a filter that has held a clear path for a few seconds and when the move
//! before it went the same way ([`DriftCompensator::observe`]). A move implying a large rate error
//! corrects the rate in full (a new drift is found in seconds), a small one by 30 % (a found rate
//! does not shake with the measure's noise). A large correction re-opens the filter's learning
//! ([`DriftCompensator::take_reopen`]), and while the rate catches up the measured motion is
//! process noise for the filter ([`DriftCompensator::motion_per_block`]).
//!
//! The filter's measure needs a filter that holds the path, which under 100–200 ppm it does not
//! for 10–30 s (the path moves faster than it learns). The rate is also read from the signals
//! ([`DelaySlope`]: how far the echo moved between two seconds, by GCC-PHAT), which needs no
//! filter: two such moves the same way, each over 10 ppm's worth, correct the rate within the
//! first seconds ([`DriftCompensator::hear`]); the filter's measure then tracks.
//!
//! Rates under 10 ppm are left to the filter, which follows them by itself: the estimate's noise
//! moves nothing, and with no drift the far end is read sample for sample.

use realfft::num_complex::Complex32;

use super::delay_slope::DelaySlope;

/// Interpolator taps (positions `n − 7 ..= n + 8` around `n + fraction`).
const TAPS: usize = 16;
/// How far past a position the interpolator reads (samples): the caller reads the far end this
/// much earlier, so every sample it needs has arrived.
pub(crate) const LOOKAHEAD: usize = TAPS / 2;
/// Fractions the interpolator's table holds (the fraction is rounded to 1/256 of a sample: a
/// timing error of at most 1/512 sample, −50 dB at 10 kHz).
const PHASES: usize = 256;
/// Kaiser window parameter of the interpolator.
const KAISER_BETA: f64 = 7.0;
/// Blocks between two looks at how far the echo path moved (1 s).
pub(crate) const INTERVAL_BLOCKS: u32 = 100;
/// Intervals a filter must have held a clear path before its moves are measured: while it still
/// learns the reverberant tail, its energy moves later as the tail fills in, which reads as a
/// move.
const WARMUP_INTERVALS: u32 = 3;
/// Part of a large measured move (a rate off by more than [`ACQUIRE_RATE`]) the rate is
/// corrected by: all of it (the move is the smaller of two, and a filter that lags its path
/// measures less than the path moved), so a new drift is found in seconds.
const ACQUIRE_GAIN: f64 = 1.0;
/// Part of a small measured move the rate is corrected by: once found, the rate follows slowly,
/// so the measure's noise (±10 ppm a second on a reverberant room) does not shake it.
const TRACK_GAIN: f64 = 0.3;
/// The rate error (30 ppm, three times what the measure scatters by) above which a move is
/// corrected in full.
const ACQUIRE_RATE: f64 = 3e-5;
/// The rate error (10 ppm) above which moves read from the signals correct the rate: they
/// scatter by ±2 ppm on the benchmark's rooms, a fifth of the filter's measure (at 5 ppm, rooms
/// without drift reported ±5 ppm now and then).
const SIGNAL_ACQUIRE_RATE: f64 = 1e-5;
/// Intervals a move read from the signals waits for the next one to confirm it.
const SIGNAL_MOVE_KEPT: u32 = 5;
/// A rate correction this large (20 ppm) re-opens the filter's learning.
const REOPEN_RATE: f64 = 2e-5;
/// Largest rate followed (±1000 ppm): anything faster is not a clock.
const MAX_RATE: f64 = 1e-3;
/// Rates under this (10 ppm) are left to the filter, which follows them by itself (20 ppm cost
/// nothing measurable): the estimate's noise does not move the far end.
const MIN_RATE: f64 = 1e-5;
/// Smallest coherence of the phase slope (|Σ C(k+1)·C*(k)| / Σ |C(k+1)|·|C(k)|) trusted.
const MIN_COHERENCE: f32 = 0.5;
/// Bins the slope is read from (0 – 12 kHz at 960 points and 48 kHz).
const SLOPE_BINS: usize = 240;

/// The modified Bessel function of the first kind, order 0 (series).
fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    for k in 1..30 {
        term *= (x / (2.0 * k as f64)).powi(2);
        sum += term;
    }
    sum
}

/// Follows and undoes the drift between the far end's clock and the microphone's. See the module
/// documentation.
pub(crate) struct DriftCompensator {
    /// Interpolator taps per fraction.
    table: Box<[[f32; TAPS]; PHASES]>,
    /// The learnt echo path one interval ago.
    snapshot: Box<[[Complex32; super::echo::BINS]]>,
    /// Whether `snapshot` is usable (taken from a converged filter, and nothing moved the filter
    /// since).
    snapshot_valid: bool,
    /// The move measured at the end of the last interval, if it could be trusted (samples).
    last_move: Option<f64>,
    /// Intervals in a row that ended with a filter holding a clear echo path.
    converged_intervals: u32,
    /// The rate moved enough that what the filter learnt no longer fits (see
    /// [`DriftCompensator::take_reopen`]).
    reopen: bool,
    /// Blocks since the snapshot, and how many of them had far-end activity.
    blocks: u32,
    active_blocks: u32,
    /// How much the far-end read position advances per microphone sample beyond one (`−ppm ·
    /// 1e-6` for a microphone running `ppm` fast).
    rate: f64,
    /// The echo's move read from the signals (acquisition before the filter holds the path),
    /// and the last interval's.
    signals: DelaySlope,
    /// The last move the signals gave (samples an interval), and intervals since.
    last_signal_move: Option<(f64, u32)>,
}

/// Two consecutive moves that agree in direction, as (the smaller, the larger); `None` when they
/// point different ways (a filter still converging, or noise: a clock moves the echo steadily).
fn agreeing(now: f64, before: f64) -> Option<(f64, f64)> {
    (now.signum() == before.signum()).then(|| {
        if now.abs() < before.abs() {
            (now, before)
        } else {
            (before, now)
        }
    })
}

impl DriftCompensator {
    /// No drift assumed; everything allocated here.
    pub(crate) fn new(partitions: usize) -> Self {
        let mut table = Box::new([[0.0f32; TAPS]; PHASES]);
        let half = TAPS as f64 / 2.0;
        let norm = bessel_i0(KAISER_BETA);
        for (phase, taps) in table.iter_mut().enumerate() {
            let frac = phase as f64 / PHASES as f64;
            let mut sum = 0.0;
            for (i, w) in taps.iter_mut().enumerate() {
                // Tap i sits at offset i − 7 from n; the wanted point at `frac`.
                let t = i as f64 - (half - 1.0) - frac;
                let sinc = if t == 0.0 {
                    1.0
                } else {
                    (std::f64::consts::PI * t).sin() / (std::f64::consts::PI * t)
                };
                let r = t / half;
                let window = if r.abs() < 1.0 {
                    bessel_i0(KAISER_BETA * (1.0 - r * r).sqrt()) / norm
                } else {
                    0.0
                };
                *w = (sinc * window) as f32;
                sum += sinc * window;
            }
            taps.iter_mut().for_each(|w| *w /= sum as f32);
        }
        DriftCompensator {
            table,
            snapshot: vec![[Complex32::default(); super::echo::BINS]; partitions]
                .into_boxed_slice(),
            snapshot_valid: false,
            last_move: None,
            converged_intervals: 0,
            reopen: false,
            blocks: 0,
            active_blocks: 0,
            rate: 0.0,
            signals: DelaySlope::new(),
            last_signal_move: None,
        }
    }

    /// The rate the far end is read at beyond one sample per microphone sample: the measured
    /// one, or 0 under [`MIN_RATE`].
    pub(crate) fn rate(&self) -> f64 {
        if self.rate.abs() >= MIN_RATE {
            self.rate
        } else {
            0.0
        }
    }

    /// How fast the echo path moved over the last interval beyond what the rate makes up for
    /// (samples per block; moves under [`MIN_RATE`]'s worth are taken as the measure's noise):
    /// the filter turns this into process noise, so it follows the path while the rate catches
    /// up instead of trusting what it learnt before.
    pub(crate) fn motion_per_block(&self) -> f32 {
        let interval = f64::from(INTERVAL_BLOCKS) * super::CHUNK_SAMPLES as f64;
        self.last_move.map_or(0.0, |m| {
            ((m.abs() - MIN_RATE * interval).max(0.0) / f64::from(INTERVAL_BLOCKS)) as f32
        })
    }

    /// Whether the rate moved by [`REOPEN_RATE`] or more since the last call: the far end is
    /// now read differently enough that the filter should learn as at the start of a call.
    pub(crate) fn take_reopen(&mut self) -> bool {
        std::mem::take(&mut self.reopen)
    }

    /// The drift followed now, in ppm of the microphone's clock against the far end's (positive:
    /// the microphone runs fast, the echo arrives later and later).
    pub(crate) fn ppm(&self) -> f64 {
        -self.rate * 1e6
    }

    /// Reads `out.len()` far-end samples from `ring` (absolute position `a` at
    /// `ring[a % ring.len()]`; positions outside `valid` read as silence), the last at absolute
    /// position `end − (1 + rate)` and each one `1 + rate` after the one before, interpolated
    /// where the position is fractional.
    pub(crate) fn read(&self, ring: &[f32], end: f64, valid: (i64, i64), out: &mut [f32]) {
        let len = ring.len() as i64;
        let at = |pos: i64| -> f32 {
            if pos < valid.0 || pos >= valid.1 {
                0.0
            } else {
                ring[(pos % len) as usize]
            }
        };
        let step = 1.0 + self.rate();
        let start = end - out.len() as f64 * step;
        if step == 1.0 && start.fract() == 0.0 {
            for (i, o) in out.iter_mut().enumerate() {
                *o = at(start as i64 + i as i64);
            }
            return;
        }
        for (i, o) in out.iter_mut().enumerate() {
            let pos = start + i as f64 * step;
            let n = pos.floor();
            let mut phase = ((pos - n) * PHASES as f64).round() as usize;
            let mut n = n as i64;
            if phase == PHASES {
                phase = 0;
                n += 1;
            }
            let first = n - (LOOKAHEAD as i64 - 1);
            *o = self.table[phase]
                .iter()
                .enumerate()
                .map(|(t, w)| w * at(first + t as i64))
                .sum();
        }
    }

    /// Whether the next [`DriftCompensator::observe`] ends an interval (the caller works out
    /// `converged` only then).
    pub(crate) fn due(&self) -> bool {
        self.blocks + 1 >= INTERVAL_BLOCKS
    }

    /// The filter moved as a whole (a realignment, a new hint): the snapshot no longer lines up.
    pub(crate) fn invalidate(&mut self) {
        self.snapshot_valid = false;
        self.last_move = None;
        self.signals.reset();
        self.last_signal_move = None;
    }

    /// One block of the far end as paired with the microphone (after the rate and the bulk
    /// delay) and the microphone block, before the canceller: what the signal measure reads.
    pub(crate) fn hear(&mut self, far: &[f32], mic: &[f32]) {
        self.signals.hear(far, mic);
    }

    /// Acquisition from the signals ([`DelaySlope`]): two moves in a row the same way (the
    /// earlier one at most [`SIGNAL_MOVE_KEPT`] intervals old), each implying a rate error over
    /// [`SIGNAL_ACQUIRE_RATE`] and within a factor of two of each other, correct the rate by the
    /// smaller. Returns whether it did.
    fn acquire(&mut self, samples: f64) -> bool {
        let now = self
            .signals
            .measure()
            .filter(|m| m.abs() <= 2.0 * MAX_RATE * samples);
        let before = self
            .last_signal_move
            .filter(|&(_, age)| age < SIGNAL_MOVE_KEPT)
            .map(|(m, _)| m);
        self.last_signal_move = match now {
            Some(m) => Some((m, 0)),
            None => self
                .last_signal_move
                .map(|(m, age)| (m, age.saturating_add(1))),
        };
        let Some((small, large)) = now.zip(before).and_then(|(n, b)| agreeing(n, b)) else {
            return false;
        };
        if small.abs() <= SIGNAL_ACQUIRE_RATE * samples || small.abs() < 0.5 * large.abs() {
            return false;
        }
        self.correct_rate(small / samples);
        // The next pair starts after the correction.
        self.last_signal_move = None;
        true
    }

    /// Once per block, after the filter's update: every [`INTERVAL_BLOCKS`], how far the learnt
    /// echo path `h` moved since the snapshot corrects the rate, when the move can be trusted:
    /// the snapshot and `h` both from a filter that holds a clear echo path (`converged`) and
    /// has held one for [`WARMUP_INTERVALS`] before, the far end active in most blocks, a
    /// coherent phase slope, a plausible size, and the move before it in the same direction (a
    /// filter still converging moves its phase this way and that; a clock moves it steadily).
    /// The smaller of the two moves is taken.
    pub(crate) fn observe(
        &mut self,
        h: &[[Complex32; super::echo::BINS]],
        far_active: bool,
        converged: bool,
    ) {
        self.blocks += 1;
        self.active_blocks += u32::from(far_active);
        if self.blocks < INTERVAL_BLOCKS {
            return;
        }
        let samples = f64::from(self.blocks) * super::CHUNK_SAMPLES as f64;
        let acquired = self.acquire(samples);
        self.converged_intervals = if converged {
            self.converged_intervals.saturating_add(1)
        } else {
            0
        };
        let settled = self.converged_intervals > WARMUP_INTERVALS;
        let moved = (self.snapshot_valid && settled && 2 * self.active_blocks >= self.blocks)
            .then(|| self.measure(h))
            .flatten()
            .filter(|m| m.abs() <= 2.0 * MAX_RATE * samples);
        if let (Some((m, _)), false) = (
            moved.zip(self.last_move).and_then(|(n, b)| agreeing(n, b)),
            acquired,
        ) {
            let error = m / samples;
            let gain = if error.abs() > ACQUIRE_RATE {
                ACQUIRE_GAIN
            } else {
                TRACK_GAIN
            };
            self.correct_rate(gain * error);
        }
        self.last_move = moved;
        self.snapshot.copy_from_slice(h);
        self.snapshot_valid = converged;
        if self.reopen {
            // The filter is about to relearn fast: its catching up would read as a move.
            self.snapshot_valid = false;
            self.last_move = None;
        }
        self.blocks = 0;
        self.active_blocks = 0;
    }

    /// Lowers the rate by `error` (within ±[`MAX_RATE`]); a large enough correction re-opens the
    /// filter's learning.
    fn correct_rate(&mut self, error: f64) {
        let rate = (self.rate - error).clamp(-MAX_RATE, MAX_RATE);
        self.reopen |= (rate - self.rate).abs() >= REOPEN_RATE;
        self.rate = rate;
    }

    /// How many samples later the echo path `h` sits than the snapshot, from the phase slope of
    /// their cross-spectrum (`None` when it is not coherent).
    fn measure(&self, h: &[[Complex32; super::echo::BINS]]) -> Option<f64> {
        let cross = |k: usize| -> Complex32 {
            h.iter()
                .zip(self.snapshot.iter())
                .map(|(now, then)| now[k] * then[k].conj())
                .sum()
        };
        let mut slope = Complex32::default();
        let mut weight = 0.0f32;
        let mut previous = cross(1);
        for k in 2..=SLOPE_BINS {
            let c = cross(k);
            slope += c * previous.conj();
            weight += c.norm() * previous.norm();
            previous = c;
        }
        if weight <= 0.0 || slope.norm() < MIN_COHERENCE * weight {
            return None;
        }
        let window = 2.0 * (super::echo::BINS - 1) as f64;
        Some(-f64::from(slope.arg()) * window / std::f64::consts::TAU)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::echo::BINS;

    /// `h` moved `tau` samples later: every bin turned by `−2π·k·tau / 960`.
    fn moved(h: &[[Complex32; BINS]], tau: f64) -> Vec<[Complex32; BINS]> {
        h.iter()
            .map(|part| {
                let mut out = *part;
                for (k, v) in out.iter_mut().enumerate() {
                    let phi = -std::f64::consts::TAU * k as f64 * tau / (2 * (BINS - 1)) as f64;
                    *v *= Complex32::from_polar(1.0, phi as f32);
                }
                out
            })
            .collect()
    }

    /// A filter-like state: a decaying random path in a few partitions.
    fn path() -> Vec<[Complex32; BINS]> {
        let mut seed = 5u32;
        let mut next = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        (0..8)
            .map(|p| {
                let mut part = [Complex32::default(); BINS];
                for v in part.iter_mut() {
                    *v = Complex32::new(next(), next()) * (-(p as f32) / 2.0).exp();
                }
                part
            })
            .collect()
    }

    #[test]
    fn the_interpolator_reads_a_band_limited_signal_between_its_samples() {
        let mut d = DriftCompensator::new(8);
        d.rate = -150e-6;
        for (hz, floor_db) in [(1000.0, -60.0), (8000.0, -45.0)] {
            let w = std::f64::consts::TAU * hz / 48_000.0;
            let ring: Vec<f32> = (0..4800).map(|n| (w * n as f64).sin() as f32).collect();
            let mut out = vec![0.0f32; 960];
            let end = 3000.37;
            d.read(&ring, end, (0, ring.len() as i64), &mut out);
            let step = 1.0 + d.rate();
            let start = end - out.len() as f64 * step;
            let err: f64 = out
                .iter()
                .enumerate()
                .map(|(i, &o)| (f64::from(o) - (w * (start + i as f64 * step)).sin()).powi(2))
                .sum::<f64>()
                / out.len() as f64;
            let db = 10.0 * (err / 0.5).log10();
            assert!(db < floor_db, "{hz} Hz: error {db:.1} dB");
        }
    }

    #[test]
    fn a_moved_echo_path_is_measured_by_its_phase_slope() {
        let mut d = DriftCompensator::new(8);
        let h = path();
        d.snapshot.copy_from_slice(&h);
        for tau in [0.0, 0.3, -2.5, 7.0, 40.0] {
            let m = d.measure(&moved(&h, tau)).expect("coherent");
            assert!((m - tau).abs() < 0.01, "moved {tau}, measured {m}");
        }
    }

    #[test]
    fn a_steady_move_sets_the_rate_and_a_wavering_one_does_not() {
        let mut d = DriftCompensator::new(8);
        let interval = f64::from(INTERVAL_BLOCKS) * super::super::CHUNK_SAMPLES as f64;
        let mut h = path();
        let run = |d: &mut DriftCompensator, h: &mut Vec<[Complex32; BINS]>, tau: f64| {
            *h = moved(h, tau);
            for _ in 0..INTERVAL_BLOCKS {
                d.observe(h, true, true);
            }
        };
        // A filter moving as a 200 ppm fast microphone moves it, less what the rate already
        // makes up for (the far end read faster moves the path back).
        for _ in 0..30 {
            let tau = (200e-6 + d.rate()) * interval;
            run(&mut d, &mut h, tau);
        }
        assert!((d.ppm() - 200.0).abs() < 5.0, "{} ppm", d.ppm());
        // A converging filter's phase goes this way and that: the rate stays (but for the
        // first 3-sample move paired with the last steady one, a residual of a few hundredths).
        let before = d.ppm();
        for i in 0..20 {
            run(&mut d, &mut h, if i % 2 == 0 { 3.0 } else { -3.0 });
        }
        assert!((d.ppm() - before).abs() < 0.5, "{before} → {} ppm", d.ppm());
        // Not converged: nothing is measured.
        let mut fresh = DriftCompensator::new(8);
        for _ in 0..10 {
            h = moved(&h, 4.8);
            for _ in 0..INTERVAL_BLOCKS {
                fresh.observe(&h, true, false);
            }
        }
        assert_eq!(fresh.ppm(), 0.0);
    }
}
