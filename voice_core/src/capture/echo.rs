//! Acoustic echo cancellation: a partitioned-block frequency-domain Kalman filter (the linear
//! echo path) followed by a residual-echo suppressor driven by the filter's own uncertainty.
//!
//! **Linear stage.** The echo path is modelled as [`PARTITIONS`] blocks of 10 ms (320 ms) of FIR
//! filter in the frequency domain (overlap-save, 960-point real FFTs, 481 bins). Each bin of each
//! partition is a state of a Kalman filter (Enzner & Vary 2006, "Frequency-domain adaptive Kalman
//! filter for acoustic echo control in hands-free telephones"; the partitioned, diagonalised form
//! of Kuech et al. 2014): a random walk `H ← A·H` with process noise `(1 − A²)·|H|²`, observed
//! through the far-end spectrum, with the observation noise (near-end speech, noise, and the echo
//! the filter does not model yet) estimated per bin from the recent error. The Kalman gain is
//! therefore a step size that is large while the filter is uncertain and the error is echo, and
//! small while someone in the room talks: double talk does not need a detector to stop the filter
//! from diverging. Every update is constrained to a causal 480-tap block (gradient constraint).
//!
//! **Residual echo.** What the linear filter cannot remove is estimated from its state error
//! covariance: `Σ_p P_p·|X_p|²` is the expected power of the echo it mis-predicts in each bin.
//! A spectral-subtraction gain `max(floor, 1 − c·residual / |E|²)` removes it: early in a call (the
//! filter uncertain) and in far-end-only speech it suppresses down to the floor; where the near end
//! is much louder than the expected residual, the gain stays near one and the near end passes.
//! The over-subtraction `c` is [`RESIDUAL_WEIGHT`] (8) while only the far end talks and
//! [`DOUBLE_TALK_WEIGHT`] (1) in double talk: a block whose error power, summed over the bins,
//! stands [`DOUBLE_TALK_RATIO`] (5 dB) above the expected residual plus the room's steady noise
//! (the error's running minimum) for [`DOUBLE_TALK_BLOCKS`] blocks in a row holds someone in the
//! room. With 8 everywhere the suppressor also bites into the near end's quieter bins, where the
//! residual is locally as loud as the near end; the run of blocks keeps a short excursion of the
//! error (a far-end sound the filter has not heard yet) from passing as double talk, and the
//! noise term keeps a fan or a hum as loud as the echo from passing as a talker, either of which
//! would let echo through.
//!
//! Why not WebRTC's AEC3 (`sonora`, used before): on the benchmark's rooms (a dense reverberant
//! tail 19–22 dB above the direct path) AEC3's linear filter removed only 2–7 dB of echo and its
//! suppressor switched the near end off in 20–68 % of the double-talk frames (near-end PESQ 1.05,
//! AECMOS degradation 1.3–2.5; `benches/apm/ECHO.md`). This canceller reaches ~13 dB linear
//! ERLE through double talk on the same rooms, and with the suppressor keeps ≥ 29 dB in far-end
//! speech while the near end comes through (`docs/CAPTURE.md`).
//!
//! The far end is delayed by a bulk delay derived from the caller's hint (device output + input
//! latency) so the filter's 320 ms cover echo arriving from [`HINT_MARGIN_MS`] before the hint to
//! well after it. Where the hint is off, the filter's own energy moves the span: a peak near its
//! end moves it later, a peak at its start earlier, with what was learnt shifted along
//! ([`EchoCanceller::realign`]). The far end is consumed at the microphone's pace, corrected
//! for clock drift between the two devices (`super::drift`). Everything is allocated in
//! [`EchoCanceller::new`]; [`EchoCanceller::process`] neither allocates nor locks.

use std::sync::Arc;

use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

use super::drift::{DriftCompensator, LOOKAHEAD};
use super::CHUNK_SAMPLES;
use crate::SAMPLE_RATE;

const M: usize = CHUNK_SAMPLES;
const WINDOW: usize = 2 * M;
/// Bins of the filter's spectra.
pub(super) const BINS: usize = WINDOW / 2 + 1;
/// Filter length in 10 ms blocks: 320 ms of echo path.
pub(crate) const PARTITIONS: usize = 32;
/// How much earlier than the delay hint the filter starts (ms): the hint is an estimate.
pub(crate) const HINT_MARGIN_MS: u32 = 60;
/// A new delay hint moves the bulk delay only when it is this far (ms) from the current one.
pub(crate) const HINT_HYSTERESIS_MS: u32 = 40;
/// Blocks between two looks at where the filter's energy sits ([`EchoCanceller::realign`]).
const REALIGN_BLOCKS: u64 = 25;
/// Where a realignment puts the filter's peak when the echo runs past the span (blocks in).
const REALIGN_TO: usize = 6;
/// How far a realignment moves the span earlier when the echo may start before it (blocks):
/// the filter then holds only the echo's tail, whose start says little about where the echo
/// starts, so the step is large.
const REALIGN_EARLIER: usize = 12;
/// Far-end history kept for the bulk delay (1 s of samples).
const FAR_RING: usize = SAMPLE_RATE as usize;
/// Largest bulk delay (samples): leaves room for the current block in the ring.
const MAX_BULK: usize = FAR_RING - 2 * M;

/// Kalman transition factor `A` (per 10 ms block): how fast the echo path may change.
const TRANSITION: f32 = 0.9999;
/// Initial state variance per bin (scale: samples in ±1.0, unnormalised FFTs).
const INITIAL_VARIANCE: f32 = 0.1;
/// Smoothing of the observation-noise estimate from the error power (per block).
const NOISE_SMOOTHING: f32 = 0.5;
/// Added to the innovation variance: keeps the gain bounded where the far end is silent.
const REGULARISATION: f32 = 0.1;
/// Over-subtraction of the residual-echo estimate in the suppressor.
const RESIDUAL_WEIGHT: f32 = 8.0;
/// Over-subtraction in double talk (see the module documentation).
const DOUBLE_TALK_WEIGHT: f32 = 1.0;
/// Error power over expected residual-echo power (summed over the bins) above which a block
/// holds near-end sound: 5 dB.
const DOUBLE_TALK_RATIO: f32 = 3.16;
/// Blocks in a row above [`DOUBLE_TALK_RATIO`] before the suppressor treats them as double talk.
const DOUBLE_TALK_BLOCKS: u32 = 4;
/// Blocks per window of the error's running minimum (the room's steady noise is the lowest
/// error of the current and the previous window, 1.5–3 s: longer than the gaps between words,
/// short enough to follow a fan switched on within seconds).
const NOISE_FLOOR_BLOCKS: u64 = 150;
/// Lowest suppressor gain (power): −20 dB.
const SUPPRESSION_FLOOR: f32 = 0.01;
/// Smoothing of the suppressor's error and residual powers (per block).
const SUPPRESSOR_SMOOTHING: f32 = 0.5;
/// Far-end power (per sample, ±1.0 scale) above which a block counts as far-end activity for the
/// ERLE estimate: −60 dBFS.
const FAR_ACTIVE_POWER: f32 = 1e-6;
/// A chunk whose output power is under this fraction of the microphone's (−10 dB) is echo
/// ([`EchoCanceller::echo_dominated`]).
const ECHO_DOMINATED_RATIO: f32 = 0.1;
/// Far-end power (per sample) under which a block is silence (−100 dBFS): the filter does not
/// adapt while every block of its span is.
const FAR_SILENT_POWER: f32 = 1e-10;
/// ERLE (dB) from which the filter's moves are measured for the drift estimate.
const DRIFT_MIN_ERLE_DB: f64 = 3.0;
/// Smoothing of the ERLE estimate's powers (per far-end-active block, ~1 s).
const ERLE_SMOOTHING: f32 = 0.99;

/// Where the filter holds the most energy ([`EchoCanceller::peak_partition`]).
struct Peak {
    partition: usize,
    energy: f32,
    mean: f32,
}

/// The slot of `x` holding the far-end spectrum `part` blocks before the newest one.
fn slot(newest: usize, part: usize) -> usize {
    (newest + PARTITIONS - part) % PARTITIONS
}

/// The echo canceller. See the module documentation.
pub(crate) struct EchoCanceller {
    forward: Arc<dyn RealToComplex<f32>>,
    inverse: Arc<dyn ComplexToReal<f32>>,
    scratch: Box<[Complex32]>,
    /// Far-end samples as handed in, a ring of [`FAR_RING`].
    far: Box<[f32]>,
    /// Far-end samples written in total, and consumed by capture blocks in total.
    far_written: u64,
    far_read: f64,
    /// Bulk delay applied to the far end (samples).
    bulk: usize,
    /// The far-end window of the current block (previous block + this one).
    x_time: Box<[f32; WINDOW]>,
    /// Far-end spectra of the last [`PARTITIONS`] blocks; `newest` indexes the current one.
    x: Box<[[Complex32; BINS]]>,
    newest: usize,
    h: Box<[[Complex32; BINS]]>,
    p: Box<[[f32; BINS]]>,
    noise: Box<[f32; BINS]>,
    error_power: Box<[f32; BINS]>,
    residual_power: Box<[f32; BINS]>,
    /// Blocks in a row whose error stood [`DOUBLE_TALK_RATIO`] above the expected residual and
    /// the noise floor.
    near_run: u32,
    /// The lowest error power (summed over the bins) of the current and of the previous window
    /// of [`NOISE_FLOOR_BLOCKS`]: the room's steady noise is the smaller.
    error_floor: [f32; 2],
    /// Time-domain scratch (nothing in it outlives a call).
    time: Box<[f32; WINDOW]>,
    spectrum: Box<[Complex32; BINS]>,
    error: Box<[Complex32; BINS]>,
    gain: Box<[f32; BINS]>,
    /// Far-end power of each block in the filter's span (indexed like `x`).
    span_power: Box<[f32; PARTITIONS]>,
    mic_power: f32,
    out_power: f32,
    blocks: u64,
    echo_dominated: bool,
    /// Re-read the whole far-end window at the next block (the bulk delay moved).
    reload_window: bool,
    /// Follows and undoes clock drift between the far end and the microphone.
    drift: DriftCompensator,
}

impl EchoCanceller {
    /// A canceller for an echo path around `delay_hint_ms` (device output + input latency).
    pub(crate) fn new(delay_hint_ms: u32) -> Self {
        let mut planner = RealFftPlanner::<f32>::new();
        let forward = planner.plan_fft_forward(WINDOW);
        let inverse = planner.plan_fft_inverse(WINDOW);
        let scratch_len = forward.get_scratch_len().max(inverse.get_scratch_len());
        let mut ec = EchoCanceller {
            forward,
            inverse,
            scratch: vec![Complex32::default(); scratch_len].into_boxed_slice(),
            far: vec![0.0; FAR_RING].into_boxed_slice(),
            far_written: 0,
            far_read: 0.0,
            bulk: 0,
            x_time: Box::new([0.0; WINDOW]),
            x: vec![[Complex32::default(); BINS]; PARTITIONS].into_boxed_slice(),
            newest: 0,
            h: vec![[Complex32::default(); BINS]; PARTITIONS].into_boxed_slice(),
            p: vec![[INITIAL_VARIANCE; BINS]; PARTITIONS].into_boxed_slice(),
            noise: Box::new([0.0; BINS]),
            error_power: Box::new([0.0; BINS]),
            residual_power: Box::new([0.0; BINS]),
            near_run: 0,
            error_floor: [f32::INFINITY; 2],
            time: Box::new([0.0; WINDOW]),
            spectrum: Box::new([Complex32::default(); BINS]),
            error: Box::new([Complex32::default(); BINS]),
            gain: Box::new([1.0; BINS]),
            span_power: Box::new([0.0; PARTITIONS]),
            mic_power: 0.0,
            out_power: 0.0,
            blocks: 0,
            echo_dominated: false,
            reload_window: false,
            drift: DriftCompensator::new(PARTITIONS),
        };
        ec.set_delay_hint_ms(delay_hint_ms);
        ec
    }

    /// Moves the bulk delay to `delay_hint_ms − HINT_MARGIN_MS` (at least 0, in whole 10 ms
    /// blocks) when that is more than [`HINT_HYSTERESIS_MS`] away from where it is: a hint that
    /// wanders with the devices' buffer fill leaves the echo inside the filter's 320 ms. A move
    /// shifts what the filter has learnt with it (see [`EchoCanceller::shift`]).
    pub(crate) fn set_delay_hint_ms(&mut self, delay_hint_ms: u32) {
        let ms = delay_hint_ms.saturating_sub(HINT_MARGIN_MS) as usize;
        let want = (ms * SAMPLE_RATE as usize / 1000 / M).min(MAX_BULK / M);
        let hysteresis = HINT_HYSTERESIS_MS as usize * SAMPLE_RATE as usize / 1000 / M;
        if self.blocks == 0 {
            self.bulk = want * M;
        } else if want.abs_diff(self.bulk / M) > hysteresis {
            self.shift(want as i64 - (self.bulk / M) as i64);
        }
    }

    /// Moves the bulk delay by `blocks` (later when positive) and the learnt echo path, the far
    /// end's spectra and their variances with it, so the model stays aligned: partition `p` after
    /// a move of `d` is partition `p + d` before it. Partitions with nothing to come from start
    /// over (no coefficients, the initial variance, no far end yet); the far-end window is
    /// re-read at the next block.
    fn shift(&mut self, blocks: i64) {
        let now = (self.bulk / M) as i64;
        let to = (now + blocks).clamp(0, (MAX_BULK / M) as i64);
        let d = to - now;
        if d == 0 {
            return;
        }
        self.bulk = to as usize * M;
        let n = PARTITIONS as i64;
        // Ascending when taking from older partitions (d > 0), descending otherwise, so every
        // source is read before it is overwritten.
        for i in 0..n {
            let r = if d > 0 { i } else { n - 1 - i };
            let from = r + d;
            let dst = slot(self.newest, r as usize);
            if (0..n).contains(&from) {
                let src = slot(self.newest, from as usize);
                self.x[dst] = self.x[src];
                self.h[r as usize] = self.h[from as usize];
                self.p[r as usize] = self.p[from as usize];
                self.span_power[dst] = self.span_power[src];
            } else {
                self.x[dst] = [Complex32::default(); BINS];
                self.h[r as usize] = [Complex32::default(); BINS];
                self.p[r as usize] = [INITIAL_VARIANCE; BINS];
                self.span_power[dst] = 0.0;
            }
        }
        self.reload_window = true;
        self.drift.invalidate();
    }

    /// Every [`REALIGN_BLOCKS`]: where the filter holds most of its energy says where the echo
    /// is, once that is a clear peak (four times the mean partition's energy). A peak in the last
    /// quarter of the span means the echo runs past its end: if the filter already cancels
    /// something (ERLE over 6 dB), the span moves later so the peak sits [`REALIGN_TO`] blocks in.
    /// A peak in the first two blocks with a bulk delay to spare means the echo may start before
    /// the span (the filter then holds only its tail, and cancels little of it): the span moves
    /// earlier by [`REALIGN_EARLIER`] blocks. A hint that is roughly right is kept.
    fn realign(&mut self) {
        if !self.blocks.is_multiple_of(REALIGN_BLOCKS) {
            return;
        }
        let Some(peak) = self.peak_partition() else {
            return;
        };
        if peak.energy < 4.0 * peak.mean {
            return;
        }
        let peak = peak.partition;
        if peak >= PARTITIONS - PARTITIONS / 4 && self.erle_db().is_some_and(|e| e >= 6.0) {
            self.shift((peak - REALIGN_TO) as i64);
        } else if peak < 2 && self.bulk > 0 {
            self.shift(-(REALIGN_EARLIER as i64));
        }
    }

    /// The partition holding the most filter energy, its energy and the mean partition's, once
    /// the filter holds some (one pass over the coefficients).
    fn peak_partition(&self) -> Option<Peak> {
        let mut peak = Peak {
            partition: 0,
            energy: 0.0,
            mean: 0.0,
        };
        for (i, part) in self.h.iter().enumerate() {
            let e = part.iter().map(|h| h.norm_sqr()).sum::<f32>();
            peak.mean += e / PARTITIONS as f32;
            if e > peak.energy {
                (peak.partition, peak.energy) = (i, e);
            }
        }
        (peak.energy > 1e-6).then_some(peak)
    }

    /// Hands in one 10 ms chunk of far-end (loudspeaker) audio, ±1.0 scale.
    pub(crate) fn far_end(&mut self, chunk: &[f32; M]) {
        let start = (self.far_written % FAR_RING as u64) as usize;
        for (i, &s) in chunk.iter().enumerate() {
            self.far[(start + i) % FAR_RING] = s;
        }
        self.far_written += M as u64;
    }

    /// The far-end block that pairs with the next capture block: the capture side consumes the
    /// far end at its own pace, so jitter between the two call sequences does not move the echo.
    /// Its pace is the microphone's clock: `M · (1 + rate)` far-end samples per block, where
    /// `rate` is the drift between the clocks ([`DriftCompensator`]), so the far end stays paired
    /// with what the loudspeaker played when the microphone heard it. A block not handed in by
    /// the time the capture side needs it counts as silence (the far end that arrives later pairs
    /// with later capture blocks), and the capture side catches up when the far end is more than
    /// half the ring ahead.
    fn next_far_block(&mut self) {
        let rate = self.drift.rate();
        self.far_read += M as f64 * (1.0 + rate);
        let needed = self.far_read.ceil() as u64;
        if needed > self.far_written {
            // Nothing was handed in for this block: nothing played, so the far end was silent
            // (pairing the microphone with the last block again would invent an echo).
            let start = (self.far_written % FAR_RING as u64) as usize;
            for i in 0..(needed - self.far_written) as usize {
                self.far[(start + i) % FAR_RING] = 0.0;
            }
            self.far_written = needed;
        }
        let ahead = self.far_written - needed;
        if ahead as usize > FAR_RING / 2 {
            self.far_read += (ahead as usize - FAR_RING / 2) as f64;
        }
        // The interpolator reads up to `LOOKAHEAD` samples past a position; everything is read
        // that much earlier, so it never needs a sample that has not arrived.
        let end = self.far_read - (self.bulk + LOOKAHEAD) as f64;
        let oldest_kept = (self.far_written as i64 - FAR_RING as i64).max(0);
        let from = if self.reload_window { 0 } else { M };
        self.reload_window = false;
        self.x_time.copy_within(M.., 0);
        self.drift.read(
            &self.far,
            end,
            (oldest_kept, self.far_written as i64),
            &mut self.x_time[from..],
        );
    }

    /// Removes the echo from one 10 ms chunk of microphone audio in place (±1.0 scale).
    pub(crate) fn process(&mut self, mic: &mut [f32; M]) {
        self.next_far_block();
        self.drift.hear(&self.x_time[M..], mic);
        self.newest = (self.newest + 1) % PARTITIONS;
        self.time.copy_from_slice(&self.x_time[..]);
        let newest = self.newest;
        let _ = self.forward.process_with_scratch(
            &mut self.time[..],
            &mut self.x[newest][..],
            &mut self.scratch,
        );
        let far_power = self.x_time[M..].iter().map(|v| v * v).sum::<f32>() / M as f32;
        self.span_power[newest] = far_power;

        // Echo estimate: Σ_p H_p · X_{n−p}, back to the time domain (overlap-save: last half).
        self.spectrum.fill(Complex32::default());
        for part in 0..PARTITIONS {
            let xp = &self.x[slot(newest, part)];
            for ((s, h), x) in self.spectrum.iter_mut().zip(&self.h[part]).zip(xp) {
                *s += h * x;
            }
        }
        let _ = self.inverse.process_with_scratch(
            &mut self.spectrum[..],
            &mut self.time[..],
            &mut self.scratch,
        );
        let scale = 1.0 / WINDOW as f32;
        let mut mic_power = 0.0;
        self.time[..M].fill(0.0);
        for (t, m) in self.time[M..].iter_mut().zip(mic.iter()) {
            mic_power += m * m;
            *t = m - *t * scale;
        }
        // The error's spectrum (zero first half).
        let _ = self.forward.process_with_scratch(
            &mut self.time[..],
            &mut self.error[..],
            &mut self.scratch,
        );

        // Innovation variance per bin, and the residual-echo power the state error predicts
        // (`gain` holds Σ_p P_p·|X_p|² first, then 1 / innovation variance for the update).
        self.gain.fill(0.0);
        for part in 0..PARTITIONS {
            let xp = &self.x[slot(newest, part)];
            for ((u, p), x) in self.gain.iter_mut().zip(&self.p[part]).zip(xp) {
                *u += p * x.norm_sqr();
            }
        }
        let inv_parts = 2.0 / PARTITIONS as f32;
        for k in 0..BINS {
            let e2 = self.error[k].norm_sqr();
            self.noise[k] = NOISE_SMOOTHING * self.noise[k] + (1.0 - NOISE_SMOOTHING) * e2;
            let uncertain = self.gain[k];
            self.gain[k] = 1.0 / (uncertain + inv_parts * self.noise[k] + REGULARISATION);
            self.error_power[k] =
                SUPPRESSOR_SMOOTHING * self.error_power[k] + (1.0 - SUPPRESSOR_SMOOTHING) * e2;
            self.residual_power[k] = SUPPRESSOR_SMOOTHING * self.residual_power[k]
                + (1.0 - SUPPRESSOR_SMOOTHING) * uncertain;
        }

        // Kalman update of every partition, each constrained to a causal block. Not while the far
        // end has been silent over the filter's whole span: there is nothing to learn from, and
        // the random walk's decay (`A` < 1, process noise ∝ |H|²) would otherwise take the state
        // and its variance to zero over minutes of silence, after which the gain is zero and the
        // filter never learns again.
        let a2 = TRANSITION * TRANSITION;
        // A path moving by `motion` samples per block turns bin k by `π·k/480 · motion`: that
        // much process noise on top of the random walk's.
        let motion = self.drift.motion_per_block() * std::f32::consts::PI / (BINS - 1) as f32;
        let motion2 = motion * motion;
        let far_heard = self.span_power.iter().any(|&p| p > FAR_SILENT_POWER);
        for part in (0..PARTITIONS).filter(|_| far_heard) {
            let xi = slot(newest, part);
            for k in 0..BINS {
                let mu = self.p[part][k] * self.gain[k];
                self.spectrum[k] = self.x[xi][k].conj() * self.error[k] * mu;
            }
            let _ = self.inverse.process_with_scratch(
                &mut self.spectrum[..],
                &mut self.time[..],
                &mut self.scratch,
            );
            for t in self.time[..M].iter_mut() {
                *t *= scale;
            }
            self.time[M..].fill(0.0);
            let _ = self.forward.process_with_scratch(
                &mut self.time[..],
                &mut self.spectrum[..],
                &mut self.scratch,
            );
            for k in 0..BINS {
                let h = (self.h[part][k] + self.spectrum[k]) * TRANSITION;
                self.h[part][k] = h;
                let x2 = self.x[xi][k].norm_sqr();
                let mu = self.p[part][k] * self.gain[k];
                let q = (1.0 - a2) + motion2 * (k * k) as f32;
                self.p[part][k] = a2 * (1.0 - 0.5 * mu * x2) * self.p[part][k] + q * h.norm_sqr();
            }
        }

        // Residual-echo suppression on the error spectrum, gentler in double talk.
        let error_total: f32 = self.error_power.iter().sum();
        let residual_total: f32 = self.residual_power.iter().sum();
        if self.blocks.is_multiple_of(NOISE_FLOOR_BLOCKS) {
            self.error_floor = [f32::INFINITY, self.error_floor[0]];
        }
        self.error_floor[0] = self.error_floor[0].min(error_total);
        let noise = self.error_floor[0].min(self.error_floor[1]);
        self.near_run = if error_total > DOUBLE_TALK_RATIO * (residual_total + noise) {
            self.near_run.saturating_add(1)
        } else {
            0
        };
        let weight = if self.near_run >= DOUBLE_TALK_BLOCKS {
            DOUBLE_TALK_WEIGHT
        } else {
            RESIDUAL_WEIGHT
        };
        for k in 0..BINS {
            let g = 1.0 - weight * self.residual_power[k] / (self.error_power[k] + 1e-12);
            self.error[k] *= g.max(SUPPRESSION_FLOOR);
        }
        let _ = self.inverse.process_with_scratch(
            &mut self.error[..],
            &mut self.time[..],
            &mut self.scratch,
        );
        let mut out_power = 0.0;
        for (m, t) in mic.iter_mut().zip(&self.time[M..]) {
            *m = t * scale;
            out_power += *m * *m;
        }
        // Not gated on the current far-end block: the echo of a syllable outlasts it by the
        // room's reverberation, and the canceller takes nothing away where it expects no echo.
        self.echo_dominated = out_power < ECHO_DOMINATED_RATIO * mic_power;
        if far_power > FAR_ACTIVE_POWER {
            let s = ERLE_SMOOTHING;
            self.mic_power = s * self.mic_power + (1.0 - s) * mic_power / M as f32;
            self.out_power = s * self.out_power + (1.0 - s) * out_power / M as f32;
        }
        // The drift estimate needs a filter that holds a clear echo path (worked out only when
        // it is due).
        let converged = self.drift.due()
            && self.erle_db().is_some_and(|e| e >= DRIFT_MIN_ERLE_DB)
            && self
                .peak_partition()
                .is_some_and(|p| p.energy >= 4.0 * p.mean);
        self.drift
            .observe(&self.h, far_power > FAR_ACTIVE_POWER, converged);
        if self.drift.take_reopen() {
            // The far end is read at a new rate: what was learnt is a starting point, no longer
            // a certainty (as at the start of a call, the filter learns fast again).
            for p in self.p.iter_mut().flatten() {
                *p = p.max(INITIAL_VARIANCE);
            }
        }
        self.blocks += 1;
        self.realign();
    }

    /// The clock drift between the far end and the microphone the canceller follows (ppm;
    /// positive: the microphone runs fast).
    pub(crate) fn drift_ppm(&self) -> f64 {
        self.drift.ppm()
    }

    /// Whether the last chunk was mostly echo: the canceller took it more than 10 dB down. What
    /// is left of it is residual echo, not someone talking in the room (in double talk the near
    /// end keeps the output near the microphone's level).
    pub(crate) fn echo_dominated(&self) -> bool {
        self.echo_dominated
    }

    /// Whether the far end played within the filter's span (320 ms): the microphone may be
    /// hearing its echo.
    pub(crate) fn far_end_heard(&self) -> bool {
        self.span_power.iter().any(|&p| p > FAR_ACTIVE_POWER)
    }

    /// Echo return loss enhancement (dB) over the recent far-end speech, once there was some.
    pub(crate) fn erle_db(&self) -> Option<f64> {
        (self.mic_power > 0.0).then(|| {
            10.0 * (f64::from(self.mic_power) / f64::from(self.out_power).max(1e-20)).log10()
        })
    }

    /// The echo path delay (ms) of the filter's largest tap, once it holds some echo: the
    /// partition with the most energy, then the largest tap of that partition's impulse response
    /// (one inverse FFT, through the scratch buffers `process` refills before it reads them).
    pub(crate) fn delay_ms(&mut self) -> Option<i32> {
        let peak = self.peak_partition()?;
        self.spectrum.copy_from_slice(&self.h[peak.partition]);
        let _ = self.inverse.process_with_scratch(
            &mut self.spectrum[..],
            &mut self.time[..],
            &mut self.scratch,
        );
        let tap = (0..M)
            .max_by(|&a, &b| self.time[a].abs().total_cmp(&self.time[b].abs()))
            .unwrap_or(0);
        let samples = self.bulk + peak.partition * M + tap + LOOKAHEAD;
        Some((samples * 1000 / SAMPLE_RATE as usize) as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic speech-like far end: noise bursts with a 4 Hz envelope.
    fn far_block(i: usize, seed: &mut u32) -> [f32; M] {
        let mut b = [0.0f32; M];
        for (n, v) in b.iter_mut().enumerate() {
            *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let t = (i * M + n) as f32 / SAMPLE_RATE as f32;
            let env = (std::f32::consts::PI * 4.0 * t).sin().abs();
            *v = ((*seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 0.2 * env;
        }
        b
    }

    #[test]
    fn a_silent_far_end_leaves_the_learnt_echo_path_alone() {
        let mut ec = EchoCanceller::new(60);
        let mut seed = 1;
        let mut history = vec![0.0f32; 3 * M];
        // The microphone hears the far end through a 2-tap echo path 15 ms late.
        let mut step = |ec: &mut EchoCanceller, far: [f32; M]| {
            history.drain(..M);
            history.extend_from_slice(&far);
            let mut mic = [0.0f32; M];
            for (n, m) in mic.iter_mut().enumerate() {
                let at = 2 * M + n - 720;
                *m = 0.5 * history[at] + 0.25 * history[at - 1];
            }
            ec.far_end(&far);
            ec.process(&mut mic);
        };
        for i in 0..200 {
            step(&mut ec, far_block(i, &mut seed));
        }
        assert!(ec.erle_db().unwrap() > 20.0, "ERLE {:?}", ec.erle_db());
        assert_eq!(ec.delay_ms(), Some(15), "the path is 15 ms late");
        // The far end stops; once its last block has left the filter's span, 10 s of silence on
        // both sides: nothing to learn from, nothing forgotten.
        for _ in 0..PARTITIONS {
            step(&mut ec, [0.0; M]);
        }
        let learnt = ec.h.to_vec();
        let variance = ec.p.to_vec();
        for _ in 0..1000 {
            step(&mut ec, [0.0; M]);
        }
        assert!(ec.h.iter().zip(&learnt).all(|(a, b)| a == b));
        assert!(ec.p.iter().zip(&variance).all(|(a, b)| a == b));
        // And the far end comes back: still cancelled from the first block.
        for i in 0..50 {
            step(&mut ec, far_block(i, &mut seed));
        }
        assert!(ec.erle_db().unwrap() > 20.0, "ERLE {:?}", ec.erle_db());
    }

    #[test]
    fn far_end_that_stops_arriving_is_silence_not_its_last_block_again() {
        // The far end is handed in for 2 s, then not at all for 2 s (playback stopped) while
        // someone in the room talks, then again. The canceller must not keep pairing the
        // microphone with a stale far block: the near end passes untouched, and what the filter
        // learnt is still there when the far end comes back.
        let mut ec = EchoCanceller::new(60);
        let mut seed = 7;
        let mut history = vec![0.0f32; 2 * M];
        let mut talk = |ec: &mut EchoCanceller, i: usize, seed: &mut u32| -> (f32, f32) {
            let far = far_block(i, seed);
            history.drain(..M);
            history.extend_from_slice(&far);
            let mut mic = [0.0f32; M];
            for (n, m) in mic.iter_mut().enumerate() {
                *m = 0.5 * history[M + n - 240];
            }
            let before = mic.iter().map(|v| v * v).sum::<f32>();
            ec.far_end(&far);
            ec.process(&mut mic);
            (before, mic.iter().map(|v| v * v).sum::<f32>())
        };
        for i in 0..200 {
            talk(&mut ec, i, &mut seed);
        }
        // Once the far end's last block has left the filter's span (its echo has died away) and
        // the suppressor's smoothed residual estimate with it (80 ms more), the output is the
        // near end as it came in, sample for sample.
        let mut worst = 0.0f32;
        for i in 0..200 {
            let near = far_block(1000 + i, &mut seed);
            let mut mic = near;
            ec.process(&mut mic);
            if i >= PARTITIONS + 8 {
                for (o, n) in mic.iter().zip(&near) {
                    worst = worst.max((o - n).abs());
                }
            }
        }
        assert!(
            worst < 1e-5,
            "the near end was changed by up to {worst} with no far end"
        );
        let (mut mic_power, mut left) = (0.0f32, 0.0f32);
        for i in 0..50 {
            let (m, o) = talk(&mut ec, 2000 + i, &mut seed);
            mic_power += m;
            left += o;
        }
        let erle = 10.0 * (mic_power / left.max(1e-20)).log10();
        assert!(
            erle > 20.0,
            "the first 0.5 s after the far end came back: ERLE {erle:.1} dB"
        );
    }

    #[test]
    fn a_new_hint_moves_the_span_and_what_was_learnt_with_it() {
        let mut ec = EchoCanceller::new(60);
        ec.far_end(&[0.0; M]);
        ec.process(&mut [0.0; M]);
        let marker = [Complex32::new(0.5, -0.25); BINS];
        ec.h[12] = marker;
        // 30 ms later: within the hysteresis, nothing moves.
        ec.set_delay_hint_ms(90);
        assert_eq!(ec.bulk, 0);
        assert_eq!(ec.h[12], marker);
        // 100 ms later: the span moves by 10 blocks, the learnt partition 12 becomes 2.
        ec.set_delay_hint_ms(160);
        assert_eq!(ec.bulk, 10 * M);
        assert_eq!(ec.h[2], marker);
        assert!(ec.h[22..]
            .iter()
            .all(|p| p.iter().all(|h| *h == Complex32::default())));
        assert!(ec.p[22..]
            .iter()
            .all(|p| p.iter().all(|v| *v == INITIAL_VARIANCE)));
        // Back to the start: partition 2 returns to 12.
        ec.set_delay_hint_ms(60);
        assert_eq!(ec.bulk, 0);
        assert_eq!(ec.h[12], marker);
    }
}
