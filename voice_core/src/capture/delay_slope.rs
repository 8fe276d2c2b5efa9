//! How fast the echo's delay moves, read from the signals themselves (GCC-PHAT), so that clock
//! drift is found before the echo canceller's filter has converged.
//!
//! [`super::drift::DriftCompensator`] measures drift from how the canceller's learnt echo path
//! moves, which needs a filter that holds the path: under 100–200 ppm the path moves faster than
//! the filter converges, and the drift took 10–30 s to find. This measure needs no filter. Once an
//! interval (1 s) it takes the last [`WINDOW`] microphone samples and the far end paired with them
//! (as the canceller reads it, so the measure is what is left after the rate it follows) and forms
//! their phase-transform-weighted cross-spectrum `G = M·F* / |M·F*|` (generalised cross-correlation
//! with phase transform, Knapp & Carter 1976): the room's response, whitened. The room does not
//! change from one second to the next, so the cross-spectrum of two consecutive `G`s is a pure
//! delay — how far the echo moved in between — and the peak of its inverse transform, refined by
//! a parabola through its neighbours, reads it to a fraction of a sample. What the peak holds of a
//! perfect one (its coherence) says whether to trust it.

use std::sync::Arc;

use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

/// The transform length (683 ms at 48 kHz): the far end a window is compared with.
const LEN: usize = 32_768;
/// Microphone samples per window (341 ms): echo delays up to `LEN − WINDOW` (341 ms) fit, the
/// canceller's 320 ms span after its bulk delay.
const WINDOW: usize = 16_384;
/// The band the phase transform is taken over: 100 Hz – 4 kHz (speech, and where a window's
/// own smearing under 200 ppm — 3 samples — costs little coherence).
const BIN_LO: usize = 100 * LEN / 48_000;
const BIN_HI: usize = 4_000 * LEN / 48_000;
/// Largest move looked for per interval between two windows (samples): ±1000 ppm over a second
/// is 48.
const MAX_LAG: usize = 48;
/// Intervals a usable window is kept to compare the next usable one with (the far end pauses).
const MAX_AGE: u32 = 3;
/// Smallest coherence trusted (peak over a perfect peak).
const MIN_COHERENCE: f32 = 0.15;
/// Mean-square level (±1.0 scale) both signals must exceed over a window (−60 dBFS).
const MIN_POWER: f32 = 1e-6;

/// Which of the two rings.
#[derive(Clone, Copy)]
enum Ring {
    Far,
    Mic,
}

/// See the module documentation.
pub(crate) struct DelaySlope {
    forward: Arc<dyn RealToComplex<f32>>,
    inverse: Arc<dyn ComplexToReal<f32>>,
    scratch: Box<[Complex32]>,
    /// The far end as paired with the microphone, and the microphone, rings of [`LEN`].
    far: Box<[f32]>,
    mic: Box<[f32]>,
    written: usize,
    time: Box<[f32]>,
    far_spectrum: Box<[Complex32]>,
    mic_spectrum: Box<[Complex32]>,
    /// The whitened cross-spectrum of the last window, when it was usable.
    previous: Box<[Complex32]>,
    previous_valid: bool,
    /// Intervals since `previous` was taken.
    age: u32,
}

impl DelaySlope {
    /// Everything allocated here.
    pub(crate) fn new() -> Self {
        let mut planner = RealFftPlanner::<f32>::new();
        let forward = planner.plan_fft_forward(LEN);
        let inverse = planner.plan_fft_inverse(LEN);
        let scratch_len = forward.get_scratch_len().max(inverse.get_scratch_len());
        let bins = LEN / 2 + 1;
        DelaySlope {
            forward,
            inverse,
            scratch: vec![Complex32::default(); scratch_len].into_boxed_slice(),
            far: vec![0.0; LEN].into_boxed_slice(),
            mic: vec![0.0; LEN].into_boxed_slice(),
            written: 0,
            time: vec![0.0; LEN].into_boxed_slice(),
            far_spectrum: vec![Complex32::default(); bins].into_boxed_slice(),
            mic_spectrum: vec![Complex32::default(); bins].into_boxed_slice(),
            previous: vec![Complex32::default(); bins].into_boxed_slice(),
            previous_valid: false,
            age: 0,
        }
    }

    /// One block: the far end the canceller paired with the microphone block, and that block.
    pub(crate) fn hear(&mut self, far: &[f32], mic: &[f32]) {
        for (&f, &m) in far.iter().zip(mic) {
            let at = self.written % LEN;
            self.far[at] = f;
            self.mic[at] = m;
            self.written += 1;
        }
    }

    /// Forget the last window (the far end was moved as a whole).
    pub(crate) fn reset(&mut self) {
        self.previous_valid = false;
    }

    /// Transforms the last `n` samples of `ring`, placed at the end of a zeroed [`LEN`], into
    /// its spectrum; returns their energy.
    fn transform(&mut self, ring: Ring, n: usize) -> f32 {
        let (samples, spectrum) = match ring {
            Ring::Far => (&self.far, &mut self.far_spectrum),
            Ring::Mic => (&self.mic, &mut self.mic_spectrum),
        };
        let start = self.written % LEN;
        self.time[..LEN - n].fill(0.0);
        let mut energy = 0.0f32;
        for i in LEN - n..LEN {
            let v = samples[(start + i) % LEN];
            self.time[i] = v;
            energy += v * v;
        }
        let _ = self
            .forward
            .process_with_scratch(&mut self.time, spectrum, &mut self.scratch);
        energy
    }

    /// How many samples an interval the echo moved later, from the newest window and the last
    /// usable one (up to [`MAX_AGE`] intervals before; `None` when there is no such pair or the
    /// move is not clear). Call once an interval.
    pub(crate) fn measure(&mut self) -> Option<f64> {
        self.age = self.age.saturating_add(1);
        if self.age > MAX_AGE {
            self.previous_valid = false;
        }
        if self.written < LEN {
            return None;
        }
        // The far end: the last LEN samples; the microphone: its last WINDOW, at the end.
        let far_power = self.transform(Ring::Far, LEN);
        let mic_power = self.transform(Ring::Mic, WINDOW);
        let usable = far_power / LEN as f32 > MIN_POWER && mic_power / WINDOW as f32 > MIN_POWER;
        if !usable {
            return None;
        }
        // Whitened cross-spectrum of this window (into `mic_spectrum`), and against the last
        // one's (into `far_spectrum`).
        let had_previous = self.previous_valid;
        for k in 0..self.mic_spectrum.len() {
            let g = if (BIN_LO..=BIN_HI).contains(&k) {
                let g = self.mic_spectrum[k] * self.far_spectrum[k].conj();
                let n = g.norm();
                if n > 1e-20 {
                    g / n
                } else {
                    Complex32::default()
                }
            } else {
                Complex32::default()
            };
            self.far_spectrum[k] = g * self.previous[k].conj();
            self.previous[k] = g;
        }
        self.previous_valid = true;
        let age = std::mem::replace(&mut self.age, 0);
        if !had_previous {
            return None;
        }
        let _ = self.inverse.process_with_scratch(
            &mut self.far_spectrum,
            &mut self.time,
            &mut self.scratch,
        );
        // The peak within ±MAX_LAG per interval between the windows (lag −n sits at LEN − n).
        let at = |lag: i64| self.time[lag.rem_euclid(LEN as i64) as usize];
        let reach = (MAX_LAG as u32 * age) as i64;
        let lag = (-reach..=reach)
            .max_by(|&a, &b| at(a).total_cmp(&at(b)))
            .unwrap_or(0);
        let peak = at(lag);
        // A perfect peak: every bin of the band in phase, counted twice by the real inverse.
        let perfect = 2.0 * (BIN_HI - BIN_LO + 1) as f32;
        if peak < MIN_COHERENCE * perfect {
            return None;
        }
        let (left, right) = (at(lag - 1), at(lag + 1));
        let curvature = left - 2.0 * peak + right;
        let fraction = if curvature < 0.0 {
            (0.5 * (left - right) / curvature).clamp(-0.5, 0.5)
        } else {
            0.0
        };
        Some((lag as f64 + f64::from(fraction)) / f64::from(age))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A speech-like far end: noise bursts under a 3 Hz envelope.
    fn far_signal(n: usize, seed: &mut u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let env = (std::f32::consts::PI * 3.0 * i as f32 / 48_000.0)
                    .sin()
                    .abs();
                ((*seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 0.2 * env
            })
            .collect()
    }

    /// The echo 2000 samples late through a short decaying path, then 7.5 samples later a
    /// second on: the measure reads the move, and nothing where nothing moved.
    #[test]
    fn a_moving_echo_is_read_to_a_fraction_of_a_sample() {
        let mut seed = 7;
        let far = far_signal(4 * 48_000, &mut seed);
        // The microphone at the far end's sample i hears far[i − delay(i)], linearly
        // interpolated; the delay grows 7.5 samples a second from the second second on.
        let delay = |i: usize| {
            2000.0
                + if i >= 96_000 {
                    7.5 * (i - 96_000) as f64 / 48_000.0
                } else {
                    0.0
                }
        };
        let mic: Vec<f32> = (0..far.len())
            .map(|i| {
                let d = delay(i);
                let pos = i as f64 - d;
                if pos < 1.0 {
                    return 0.0;
                }
                let n = pos.floor() as usize;
                let f = (pos - n as f64) as f32;
                let x = far[n] * (1.0 - f) + far[n + 1] * f;
                let tail = if n >= 300 { 0.3 * far[n - 300] } else { 0.0 };
                0.5 * x + tail
            })
            .collect();
        let mut d = DelaySlope::new();
        let mut moves = Vec::new();
        for (i, (f, m)) in far.chunks(480).zip(mic.chunks(480)).enumerate() {
            d.hear(f, m);
            if (i + 1) % 100 == 0 {
                moves.push(d.measure());
            }
        }
        eprintln!("moves per second: {moves:?}");
        // 1 s: no window before it; 2 s: nothing moved; 4 s: 7.5 samples since 3 s.
        assert_eq!(moves[0], None);
        let still = moves[1].expect("a clear peak");
        let moving = moves[3].expect("a clear peak");
        assert!(still.abs() < 0.3, "{moves:?}");
        assert!((moving - 7.5).abs() < 0.5, "{moves:?}");
    }
}
