//! Mixing several decoded 20 ms frames into one, with per-source gain and clipping protection.
//!
//! Sources are summed in `f32` (no intermediate overflow), then a soft knee limits peaks: below
//! 0.7 full scale the signal passes unchanged, above it is compressed smoothly towards (never past)
//! full scale, so two loud talkers at once never wrap or click. No allocation after construction.

use crate::FRAME_SAMPLES;

/// Accumulates frames for one output tick.
#[derive(Debug, Clone)]
pub struct Mixer {
    acc: Box<[f32; FRAME_SAMPLES]>,
    sources: usize,
}

impl Default for Mixer {
    fn default() -> Self {
        Mixer {
            acc: Box::new([0.0; FRAME_SAMPLES]),
            sources: 0,
        }
    }
}

const KNEE: f32 = 0.7;

/// The soft knee: identity below 0.7 full scale, smoothly compressed towards (never past) 1 above.
pub(crate) fn soft_clip(x: f32) -> f32 {
    let a = x.abs();
    if a <= KNEE {
        x
    } else {
        // Smoothly map (KNEE, ∞) onto (KNEE, 1): continuous value and slope at the knee.
        let over = (a - KNEE) / (1.0 - KNEE);
        let y = KNEE + (1.0 - KNEE) * over.tanh();
        y.copysign(x)
    }
}

impl Mixer {
    /// A silent mixer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a new tick.
    pub fn clear(&mut self) {
        self.acc.fill(0.0);
        self.sources = 0;
    }

    /// Adds one source frame scaled by `gain` (1.0 = unchanged).
    pub fn add(&mut self, frame: &[i16; FRAME_SAMPLES], gain: f32) {
        if gain <= 0.0 {
            return;
        }
        let g = gain / 32768.0;
        for (a, &s) in self.acc.iter_mut().zip(frame.iter()) {
            *a += f32::from(s) * g;
        }
        self.sources += 1;
    }

    /// Sources added since [`Mixer::clear`].
    pub fn sources(&self) -> usize {
        self.sources
    }

    /// Writes the mixed, clip-protected frame to `out`.
    pub fn finish(&self, out: &mut [i16; FRAME_SAMPLES]) {
        for (o, &a) in out.iter_mut().zip(self.acc.iter()) {
            *o = (soft_clip(a) * 32767.0).round() as i16;
        }
    }
}

/// Root-mean-square level of a frame in dBFS (−100 for digital silence).
pub fn level_dbfs(frame: &[i16]) -> f32 {
    if frame.is_empty() {
        return -100.0;
    }
    let sum: f64 = frame.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    let rms = (sum / frame.len() as f64).sqrt() / 32768.0;
    if rms <= 1e-5 {
        -100.0
    } else {
        (20.0 * rms.log10()) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_sources_sum_exactly() {
        let mut m = Mixer::new();
        m.add(&[1000; FRAME_SAMPLES], 1.0);
        m.add(&[-300; FRAME_SAMPLES], 1.0);
        m.add(&[5000; FRAME_SAMPLES], 0.0);
        let mut out = [0; FRAME_SAMPLES];
        m.finish(&mut out);
        assert_eq!(out[0], 700);
        assert_eq!(m.sources(), 2);
    }

    #[test]
    fn loud_sources_never_wrap() {
        let mut m = Mixer::new();
        for _ in 0..4 {
            m.add(&[30_000; FRAME_SAMPLES], 1.0);
        }
        let mut out = [0; FRAME_SAMPLES];
        m.finish(&mut out);
        assert!(out[0] > 30_000, "loud but limited: {}", out[0]);
        m.clear();
        m.add(&[-32_768; FRAME_SAMPLES], 2.0);
        m.finish(&mut out);
        assert!(out[0] < -30_000);
    }

    #[test]
    fn soft_clip_is_continuous_at_the_knee() {
        let below = soft_clip(KNEE - 1e-4);
        let above = soft_clip(KNEE + 1e-4);
        assert!((above - below).abs() < 1e-3);
        assert!(soft_clip(100.0) <= 1.0);
    }

    #[test]
    fn levels() {
        assert_eq!(level_dbfs(&[0; 960]), -100.0);
        let full = level_dbfs(&[32767; 960]);
        assert!(full.abs() < 0.01);
    }
}
