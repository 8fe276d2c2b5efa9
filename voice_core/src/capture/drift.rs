//! Clock drift between the loudspeaker and the microphone, for the echo canceller.
//!
//! A microphone and a loudspeaker on different sound cards (a USB webcam beside the laptop's
//! speakers) run on different crystals: 50–200 ppm apart is common. The echo path then moves by
//! that much: 3–12 ms a minute. The Kalman filter follows slow changes at low frequencies, but a
//! tenth of a sample every 10 ms turns a 10 kHz bin's phase by 7°, faster than the filter may
//! change without giving up its robustness in double talk, and the cancellation falls from 40 to
//! 10–20 dB within a minute (`voice_core/tests/it/capture.rs`, the drift test).
//!
//! [`DriftCompensator`] keeps the echo path still instead (as Pawig, Enzner & Vary, "Adaptive
//! sampling rate correction for acoustic echo control in voice-over-IP", IEEE TSP 2010, do): the
//! far end is read at fractional positions that advance by `1 + rate` samples per microphone
//! sample, with a 16-tap windowed-sinc interpolator. `rate` comes from the filter itself: every
//! [`INTERVAL_BLOCKS`] the learnt echo path is compared with a snapshot taken one interval
//! earlier, and the phase slope across frequency of their cross-spectrum says how far it moved.
//! The slope is read from products of neighbouring bins (`Σ C(k+1)·C*(k)`), which is unambiguous
//! for moves up to half the FFT length. Each measured move corrects `rate` by half of what it
//! implies, so the loop settles within seconds and then only follows what is left.
//!
//! With no drift the rate stays near zero and the interpolator's taps near a unit impulse: the far
//! end is read as it was (the integer path is used exactly while the rate and skew are zero).

use realfft::num_complex::Complex32;

/// Interpolator taps (positions `n − 7 ..= n + 8` around `n + fraction`).
const TAPS: usize = 16;
/// Fractions the interpolator's table holds (the fraction is rounded to 1/256 of a sample: a
/// timing error of at most 1/512 sample, −50 dB at 10 kHz).
const PHASES: usize = 256;
/// Kaiser window parameter of the interpolator.
const KAISER_BETA: f64 = 7.0;
/// Blocks between two looks at how far the echo path moved (0.5 s).
pub(crate) const INTERVAL_BLOCKS: u32 = 50;
/// Part of each measured move the rate is corrected by.
const LOOP_GAIN: f64 = 0.5;
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
    /// Whether `snapshot` is usable (taken, and nothing moved the filter since).
    snapshot_valid: bool,
    /// Blocks since the snapshot, and how many of them had far-end activity.
    blocks: u32,
    active_blocks: u32,
    /// How much the far-end read position advances per sample beyond one (`−ppm · 1e-6` for a
    /// microphone running `ppm` fast).
    rate: f64,
    /// Where the far end is read now, relative to the nominal position (samples).
    skew: f64,
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
            blocks: 0,
            active_blocks: 0,
            rate: 0.0,
            skew: 0.0,
        }
    }

    /// The current read offset (samples; negative: the far end is read earlier than nominal).
    pub(crate) fn skew(&self) -> f64 {
        self.skew
    }

    /// The drift followed now, in ppm of the microphone's clock against the far end's (positive:
    /// the microphone runs fast, the echo arrives later and later).
    pub(crate) fn ppm(&self) -> f64 {
        -self.rate * 1e6
    }

    /// Moves the read offset by `samples` without moving the read position (the caller moved
    /// its bulk delay by the same amount the other way).
    pub(crate) fn rebase(&mut self, samples: f64) {
        self.skew += samples;
    }

    /// Reads `out.len()` far-end samples ending at nominal absolute position `end` (exclusive)
    /// from `ring` (absolute position `a` at `ring[a % ring.len()]`; positions outside
    /// `valid` read as silence), each at its drift-corrected position, and advances the skew.
    pub(crate) fn read(&mut self, ring: &[f32], end: i64, valid: (i64, i64), out: &mut [f32]) {
        let len = ring.len() as i64;
        let at = |pos: i64| -> f32 {
            if pos < valid.0 || pos >= valid.1 {
                0.0
            } else {
                ring[(pos % len) as usize]
            }
        };
        let start = end - out.len() as i64;
        let rate = if self.rate.abs() >= MIN_RATE {
            self.rate
        } else {
            0.0
        };
        if rate == 0.0 && self.skew == 0.0 {
            for (i, o) in out.iter_mut().enumerate() {
                *o = at(start + i as i64);
            }
            return;
        }
        for (i, o) in out.iter_mut().enumerate() {
            let pos = (start + i as i64) as f64 + self.skew;
            let n = pos.floor();
            let mut phase = ((pos - n) * PHASES as f64).round() as usize;
            let mut n = n as i64;
            if phase == PHASES {
                phase = 0;
                n += 1;
            }
            let first = n - (TAPS as i64 / 2 - 1);
            *o = self.table[phase]
                .iter()
                .enumerate()
                .map(|(t, w)| w * at(first + t as i64))
                .sum();
            self.skew += rate;
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
    }

    /// Once per block, after the filter's update: every [`INTERVAL_BLOCKS`], how far the learnt
    /// echo path `h` moved since the snapshot corrects the rate, when the move can be trusted
    /// (far end active in most blocks, a filter that holds a clear echo path (`converged`), a
    /// coherent phase slope, a plausible size).
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
        if self.snapshot_valid && converged && 2 * self.active_blocks >= self.blocks {
            if let Some(moved) = self.measure(h) {
                let samples = f64::from(self.blocks) * super::CHUNK_SAMPLES as f64;
                if moved.abs() <= 2.0 * MAX_RATE * samples {
                    self.rate =
                        (self.rate - LOOP_GAIN * moved / samples).clamp(-MAX_RATE, MAX_RATE);
                }
            }
        }
        self.snapshot.copy_from_slice(h);
        self.snapshot_valid = true;
        self.blocks = 0;
        self.active_blocks = 0;
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
