//! Synthetic test signals for simulations, tests and benchmarks.

use crate::SAMPLE_RATE;

/// A speech-like 48 kHz mono signal: harmonics of a gliding pitch (110–170 Hz) under a 4 Hz
/// syllable envelope. Voiced throughout, so Opus codes it in its speech modes (with in-band FEC)
/// and its waveform survives coding well enough for correlation checks.
pub fn speechlike(seconds: f64) -> Vec<i16> {
    let rate = f64::from(SAMPLE_RATE);
    let n = (seconds * rate) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / rate;
            let env = (0.5 - 0.5 * (t * 4.0 * std::f64::consts::TAU).cos()).powi(2);
            let f0 = 140.0 + 30.0 * (t * 0.7 * std::f64::consts::TAU).sin();
            // Harmonics 1..8 of the phase θ by the recurrence
            // sin((h+1)θ) = 2 cos θ sin(hθ) − sin((h−1)θ): two trigonometric calls instead of
            // seven (10-minute simulations spent a fifth of their time here).
            let theta = t * f0 * std::f64::consts::TAU;
            let (sin1, cos1) = theta.sin_cos();
            let (mut prev, mut cur, mut v) = (0.0, sin1, 0.0);
            for h in 1..8 {
                v += cur / f64::from(h);
                (prev, cur) = (cur, 2.0 * cos1 * cur - prev);
            }
            (v * env * 6000.0) as i16
        })
        .collect()
}

/// [`speechlike`] with the pauses real speech has: 400 ms of silence after every 1.6 s of voice
/// (where a receiver can move its delay without time-scaling voiced sound).
pub fn speechlike_with_pauses(seconds: f64) -> Vec<i16> {
    let mut x = speechlike(seconds);
    let rate = SAMPLE_RATE as usize;
    for (i, s) in x.iter_mut().enumerate() {
        if i % (2 * rate) >= rate * 16 / 10 {
            *s = 0;
        }
    }
    x
}
