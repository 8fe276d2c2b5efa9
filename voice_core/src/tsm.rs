//! Time-scale modification of decoded speech: shorten or lengthen a 20 ms frame without clicks.
//!
//! The receiver uses this to move its playout delay toward the policy's target while audio is
//! playing, in the manner of WebRTC NetEq's *accelerate* and *preemptive expand*:
//!
//! * In **voiced speech** the frame is shortened or lengthened by exactly one pitch period (found by
//!   normalised cross-correlation between 2.5 ms and 10 ms, i.e. 100–400 Hz), and the two periods
//!   around the cut are cross-faded over the whole period. Because the removed (or repeated)
//!   stretch is one period of a periodic signal, the result keeps its pitch and has no
//!   discontinuity. Frames that are not periodic enough (correlation below
//!   [`MIN_CORRELATION`]) are left alone.
//! * In **silence** (frame RMS below [`SILENCE_RMS`]) up to half a frame can go or come at once,
//!   with the same cross-fade: nobody hears a pause grow or shrink by 10 ms.
//!
//! The functions are pure: they read one frame and write the result into a caller buffer,
//! returning how many samples they wrote. They never allocate.

use crate::jitter::decision::{decide_stretch, FrameClass, StretchOp, StretchStatus};
use crate::{FRAME_DURATION, FRAME_SAMPLES, SAMPLE_RATE};

/// Shortest pitch period searched (2.5 ms at 48 kHz = 400 Hz).
pub const MIN_PERIOD: usize = 120;
/// Longest pitch period searched (10 ms at 48 kHz = 100 Hz); two periods fit in one frame.
pub const MAX_PERIOD: usize = FRAME_SAMPLES / 2;
/// Normalised correlation a frame needs before a period is cut out of or repeated in speech.
pub const MIN_CORRELATION: f64 = 0.75;
/// RMS (of 16-bit samples) below which a frame counts as silence (about −50 dBFS).
pub const SILENCE_RMS: f64 = 100.0;
/// The longest output [`shorten`] or [`lengthen`] can write.
pub const MAX_OUTPUT: usize = FRAME_SAMPLES + MAX_PERIOD;

/// What to do to a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stretch {
    /// Remove samples (play faster, reduce delay).
    Shorten,
    /// Insert samples (play slower, add delay).
    Lengthen,
}

/// Root mean square of a frame.
pub fn rms(x: &[i16]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
}

/// The best pitch period of `frame` and its normalised correlation: the lag `p` in
/// `MIN_PERIOD..=MAX_PERIOD` that maximises the correlation between `frame[0..p]` and
/// `frame[p..2p]`, computed over the first `MAX_PERIOD` samples (searched at 4:1 decimation,
/// refined at full rate).
pub fn pitch_period(frame: &[i16; FRAME_SAMPLES]) -> (usize, f64) {
    let corr = |lag: usize, step: usize| -> f64 {
        let (mut xy, mut xx, mut yy) = (0.0f64, 0.0f64, 0.0f64);
        let mut i = 0;
        while i < lag {
            let a = f64::from(frame[i]);
            let b = f64::from(frame[i + lag]);
            xy += a * b;
            xx += a * a;
            yy += b * b;
            i += step;
        }
        if xx <= 0.0 || yy <= 0.0 {
            0.0
        } else {
            xy / (xx * yy).sqrt()
        }
    };
    let mut best = (MIN_PERIOD, f64::MIN);
    for lag in (MIN_PERIOD..=MAX_PERIOD).step_by(4) {
        let c = corr(lag, 4);
        if c > best.1 {
            best = (lag, c);
        }
    }
    let (coarse, _) = best;
    best = (coarse, f64::MIN);
    for lag in coarse.saturating_sub(4).max(MIN_PERIOD)..=(coarse + 4).min(MAX_PERIOD) {
        let c = corr(lag, 1);
        if c > best.1 {
            best = (lag, c);
        }
    }
    best
}

/// How many samples may be cut out of or repeated in voiced speech: one pitch period if the frame
/// is periodic enough, else 0 (leave it alone). A silent frame allows half a frame.
pub fn pitch_cut(frame: &[i16; FRAME_SAMPLES]) -> usize {
    if rms(frame) < SILENCE_RMS {
        return MAX_PERIOD;
    }
    let (period, c) = pitch_period(frame);
    if c >= MIN_CORRELATION {
        period
    } else {
        0
    }
}

/// Writes `frame` with `len` samples starting at 0 removed: `frame[0..len]` cross-fades into
/// `frame[len..2len]`, then the rest follows. Returns the samples written (`960 - len`).
pub fn shorten(frame: &[i16; FRAME_SAMPLES], len: usize, out: &mut [i16; MAX_OUTPUT]) -> usize {
    let len = len.min(MAX_PERIOD);
    if len == 0 {
        out[..FRAME_SAMPLES].copy_from_slice(frame);
        return FRAME_SAMPLES;
    }
    for i in 0..len {
        let w = (i as f64 + 0.5) / len as f64;
        let v = f64::from(frame[i]) * (1.0 - w) + f64::from(frame[len + i]) * w;
        out[i] = v.round() as i16;
    }
    let rest = FRAME_SAMPLES - 2 * len;
    out[len..len + rest].copy_from_slice(&frame[2 * len..]);
    FRAME_SAMPLES - len
}

/// Writes `frame` with `len` samples inserted after `frame[..len]`: the stretch
/// `frame[len..2len]` cross-fades back into `frame[0..len]`, and then `frame[len..]` plays again.
/// Returns the samples written (`960 + len`).
pub fn lengthen(frame: &[i16; FRAME_SAMPLES], len: usize, out: &mut [i16; MAX_OUTPUT]) -> usize {
    let len = len.min(MAX_PERIOD);
    out[..len].copy_from_slice(&frame[..len]);
    for i in 0..len {
        let w = (i as f64 + 0.5) / len as f64;
        let v = f64::from(frame[len + i]) * (1.0 - w) + f64::from(frame[i]) * w;
        out[len + i] = v.round() as i16;
    }
    out[2 * len..2 * len + FRAME_SAMPLES - len].copy_from_slice(&frame[len..]);
    FRAME_SAMPLES + len
}

/// What a time-scaling decision does to `frame`: which way and how many samples, or `None` (a
/// voiced frame that is not periodic enough is left alone). Silence moves by the whole surplus
/// or deficit `excess_us` (at most [`MAX_PERIOD`]); voiced speech by one pitch period. The
/// receiver and [`change_rate`] both carry their decisions out through this.
pub fn carry_out(
    op: StretchOp,
    excess_us: i64,
    frame: &[i16; FRAME_SAMPLES],
) -> Option<(Stretch, usize)> {
    let samples = |us: i64| {
        ((us.unsigned_abs() as usize * SAMPLE_RATE as usize).div_ceil(1_000_000))
            .clamp(1, MAX_PERIOD)
    };
    let period = || Some(pitch_cut(frame)).filter(|&len| len > 0);
    match op {
        StretchOp::None => None,
        StretchOp::ShrinkSilence => Some((Stretch::Shorten, samples(excess_us))),
        StretchOp::GrowSilence => Some((Stretch::Lengthen, samples(excess_us))),
        StretchOp::Accelerate => period().map(|len| (Stretch::Shorten, len)),
        StretchOp::PreemptiveExpand => period().map(|len| (Stretch::Lengthen, len)),
    }
}

/// Plays `input` `percent` % faster (positive) or slower (negative) the way the receiver moves
/// its delay, for measuring how audible that is: each 20 ms frame adds `percent` % of a frame to
/// the delay owed (a surplus to remove when faster, a deficit to fill when slower), and the
/// receiver's own decision function ([`decide_stretch`]) decides from the owed amount, the
/// frame's class and the pauses so far whether and how this frame is time-scaled — silence in
/// pauses first, voiced speech only when the owed delay is large. The achieved rate can fall
/// short of `percent` at the end of a clip by what is still owed. Offline use only (it
/// allocates); `voice-sim --force-rate` runs it on the received audio.
pub fn change_rate(input: &[i16], percent: f64) -> Vec<i16> {
    let per_frame_us = FRAME_DURATION.as_micros() as f64 * percent / 100.0;
    let mut out = Vec::with_capacity(input.len() + input.len() / 8 + MAX_OUTPUT);
    let mut owed_us = 0.0f64;
    let mut since_voiced_stretch = u32::MAX;
    let mut silent_run = 0u32;
    let mut tmp = [0i16; MAX_OUTPUT];
    for chunk in input.chunks(FRAME_SAMPLES) {
        let Ok(frame) = <&[i16; FRAME_SAMPLES]>::try_from(chunk) else {
            out.extend_from_slice(chunk);
            break;
        };
        owed_us += per_frame_us;
        since_voiced_stretch = since_voiced_stretch.saturating_add(1);
        let silent = rms(frame) < SILENCE_RMS;
        silent_run = if silent { silent_run + 1 } else { 0 };
        let status = StretchStatus {
            excess_us: owed_us as i64,
            class: if silent {
                FrameClass::Silent
            } else {
                FrameClass::Active
            },
            since_voiced_stretch,
            silent_run,
        };
        let Some((stretch, len)) = carry_out(decide_stretch(&status), status.excess_us, frame)
        else {
            out.extend_from_slice(frame);
            continue;
        };
        let moved_us = len as f64 * 1e6 / f64::from(SAMPLE_RATE);
        let n = match stretch {
            Stretch::Shorten => {
                owed_us -= moved_us;
                shorten(frame, len, &mut tmp)
            }
            Stretch::Lengthen => {
                owed_us += moved_us;
                lengthen(frame, len, &mut tmp)
            }
        };
        out.extend_from_slice(&tmp[..n]);
        if !silent && len >= MIN_PERIOD {
            since_voiced_stretch = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voiced(f0: f64) -> [i16; FRAME_SAMPLES] {
        let mut x = [0i16; FRAME_SAMPLES];
        for (i, s) in x.iter_mut().enumerate() {
            let t = i as f64 / 48_000.0;
            let v: f64 = (1..6)
                .map(|h| (t * f0 * h as f64 * std::f64::consts::TAU).sin() / h as f64)
                .sum();
            *s = (v * 6000.0) as i16;
        }
        x
    }

    #[test]
    fn finds_the_pitch_period_of_a_voiced_frame() {
        let (p, c) = pitch_period(&voiced(200.0));
        assert!((239..=241).contains(&p), "period {p}");
        assert!(c > 0.95);
        assert_eq!(pitch_cut(&voiced(200.0)), p);
    }

    #[test]
    fn noise_is_left_alone_and_silence_moves_half_a_frame() {
        let mut x = [0i16; FRAME_SAMPLES];
        let mut r: u32 = 12345;
        for s in x.iter_mut() {
            r = r.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *s = ((r >> 16) as i16) / 4;
        }
        assert_eq!(pitch_cut(&x), 0);
        assert_eq!(pitch_cut(&[3; FRAME_SAMPLES]), MAX_PERIOD);
    }

    #[test]
    fn lengths_add_up() {
        let x = voiced(150.0);
        let mut out = [0i16; MAX_OUTPUT];
        assert_eq!(shorten(&x, 320, &mut out), 640);
        assert_eq!(lengthen(&x, 320, &mut out), 1280);
        assert_eq!(&out[1280 - 640..1280], &x[320..]);
    }

    fn tone(ms: usize, f0: f64) -> impl Iterator<Item = i16> {
        (0..ms * 48).map(move |i| {
            let t = i as f64 / 48_000.0;
            (8000.0 * (std::f64::consts::TAU * f0 * t).sin()) as i16
        })
    }

    #[test]
    fn change_rate_moves_time_in_the_pauses_of_speech() {
        // 150 Hz voice in 1.6 s stretches with 400 ms pauses (as in speech), 20 s.
        let mut x = Vec::new();
        for k in 0..10 {
            x.extend(tone(1600, 140.0 + 5.0 * f64::from(k % 3)));
            x.extend(std::iter::repeat_n(0i16, 400 * 48));
        }
        for percent in [3.0, -3.0] {
            let y = change_rate(&x, percent);
            let rate = (x.len() as f64 - y.len() as f64) / x.len() as f64 * 100.0;
            // What is owed when the last pause ends is at most 1.6 s × 3 % of the last stretch.
            assert!(
                (rate - percent).abs() < 0.35,
                "asked {percent} %, got {rate:.2} %"
            );
            // Faster, every voiced stretch plays untouched: the time went in the pauses. (Slower,
            // a stretch falls a frame behind after 0.67 s and gets a pitch period repeated, as
            // a receiver about to run dry does.)
            let voiced: Vec<i16> = tone(1600, 140.0).collect();
            assert_eq!(
                y.windows(voiced.len()).any(|w| w == voiced.as_slice()),
                percent > 0.0,
                "{percent} %"
            );
        }
        assert_eq!(change_rate(&x, 0.0), x);
    }

    #[test]
    fn change_rate_without_pauses_scales_voice_only_when_far_behind() {
        // 6 s of voice without a pause: 180 ms are owed at 3 %; voiced speech is shortened only
        // once 100 ms are owed (`decision::ACCELERATE_US`) and lengthened from 20 ms.
        let x: Vec<i16> = tone(6000, 150.0).collect();
        let removed_ms = |y: &Vec<i16>| (x.len() as f64 - y.len() as f64) / 48.0;
        let faster = removed_ms(&change_rate(&x, 3.0));
        assert!((70.0..=190.0).contains(&faster), "removed {faster:.1} ms");
        let slower = -removed_ms(&change_rate(&x, -3.0));
        assert!((150.0..=190.0).contains(&slower), "inserted {slower:.1} ms");
    }
}
