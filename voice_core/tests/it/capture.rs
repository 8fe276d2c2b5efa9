//! The capture processor on generated signals: echo cancellation converges, noise suppression
//! raises the SNR, the speech detector passes speech and rejects noise, bad frames are refused.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use voice_core::capture::{
    CaptureConfig, CaptureError, CaptureProcessor, CaptureStats, SuppressionLevel,
};
use voice_core::FRAME_SAMPLES;

const SR: f32 = 48_000.0;

/// Speech-like test signal: a glottal pulse train (pitch gliding 100–180 Hz) through three vowel
/// formant resonators that change every syllable, with a 4 Hz syllable envelope and pauses.
fn synthetic_speech(seconds: f32, seed: u64, pauses: bool) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = (seconds * SR) as usize;
    let vowels = [
        [730.0, 1090.0, 2440.0],
        [270.0, 2290.0, 3010.0],
        [530.0, 1840.0, 2480.0],
        [300.0, 870.0, 2240.0],
        [640.0, 1190.0, 2390.0],
    ];
    let syl = (0.25 * SR) as usize;
    let mut out = vec![0.0f32; n];
    let mut phase = 0.0f32;
    // Resonator states per formant.
    let mut st = [[0.0f32; 2]; 3];
    let mut formants = vowels[0];
    let mut pitch0 = 120.0f32;
    for (i, o) in out.iter_mut().enumerate() {
        if i % syl == 0 {
            formants = vowels[rng.random_range(0..vowels.len())];
            pitch0 = rng.random_range(100.0..180.0);
        }
        let t_syl = (i % syl) as f32 / syl as f32;
        let word = (i / (syl * 4)) % 2;
        let env = if pauses && word == 1 {
            0.0
        } else {
            (std::f32::consts::PI * t_syl).sin().powi(2)
        };
        let pitch = pitch0 * (1.0 + 0.1 * t_syl);
        phase += pitch / SR;
        let pulse = if phase >= 1.0 {
            phase -= 1.0;
            1.0
        } else {
            0.0
        };
        let excitation = pulse + 0.02 * (rng.random::<f32>() - 0.5);
        let mut y = 0.0;
        for (k, f) in formants.iter().enumerate() {
            let bw = 80.0 + 40.0 * k as f32;
            let r = (-std::f32::consts::PI * bw / SR).exp();
            let c = 2.0 * r * (2.0 * std::f32::consts::PI * f / SR).cos();
            let v = excitation + c * st[k][0] - r * r * st[k][1];
            st[k][1] = st[k][0];
            st[k][0] = v;
            y += v / (k as f32 + 1.0);
        }
        *o = y * env;
    }
    normalize(&mut out, 0.1);
    out
}

fn white(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect()
}

fn rms(x: &[f32]) -> f32 {
    (x.iter().map(|v| v * v).sum::<f32>() / x.len().max(1) as f32).sqrt()
}

/// The least-squares gain of `out` on `reference` (how much of `reference` is in `out`).
fn projection(out: &[f32], reference: &[f32]) -> f32 {
    let rr = reference.iter().map(|v| v * v).sum::<f32>();
    out.iter().zip(reference).map(|(a, b)| a * b).sum::<f32>() / rr.max(1e-12)
}

fn normalize(x: &mut [f32], target_rms: f32) {
    let g = target_rms / rms(x).max(1e-9);
    x.iter_mut().for_each(|v| *v *= g);
}

fn to_i16(x: &[f32]) -> Vec<i16> {
    x.iter()
        .map(|v| (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

fn to_f32(x: &[i16]) -> Vec<f32> {
    x.iter().map(|&v| v as f32 / 32768.0).collect()
}

/// Runs `near` (and optionally `far`) through a processor frame by frame; returns the output and
/// the per-frame speech decisions.
fn run(cfg: CaptureConfig, near: &[f32], far: Option<&[f32]>) -> (Vec<f32>, Vec<bool>) {
    let mut p = CaptureProcessor::new(cfg);
    let near = to_i16(near);
    let far = far.map(to_i16);
    let mut out = Vec::with_capacity(near.len());
    let mut speech = Vec::new();
    for (i, frame) in near.chunks_exact(FRAME_SAMPLES).enumerate() {
        if let Some(far) = far.as_ref() {
            p.far_end(&far[i * FRAME_SAMPLES..(i + 1) * FRAME_SAMPLES])
                .unwrap();
        }
        let mut f = frame.to_vec();
        speech.push(p.process(&mut f).unwrap());
        out.extend_from_slice(&f);
    }
    (to_f32(&out), speech)
}

/// Exponentially decaying room response (RT60 in seconds) after `delay_ms` of device delay.
fn room(rt60: f32, delay_ms: f32, gain: f32, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let d = (delay_ms / 1000.0 * SR) as usize;
    let len = (rt60 * SR) as usize;
    let mut h = vec![0.0f32; d + len];
    for i in 0..len {
        let t = i as f32 / SR;
        let decay = (-6.9 * t / rt60).exp();
        h[d + i] = (rng.random::<f32>() * 2.0 - 1.0) * decay;
    }
    h[d] = 1.0;
    let e: f32 = h.iter().map(|v| v * v).sum::<f32>().sqrt();
    h.iter_mut().for_each(|v| *v *= gain / e);
    h
}

/// Direct-form convolution, truncated to `x.len()`; only nonzero taps are visited.
fn convolve(x: &[f32], h: &[f32]) -> Vec<f32> {
    let taps: Vec<(usize, f32)> = h
        .iter()
        .enumerate()
        .filter(|(i, v)| v.abs() > 1e-4 || *i % 8 == 0)
        .map(|(i, v)| (i, *v))
        .collect();
    let mut y = vec![0.0f32; x.len()];
    for (i, yi) in y.iter_mut().enumerate() {
        let mut acc = 0.0;
        for &(k, v) in &taps {
            if k > i {
                break;
            }
            acc += v * x[i - k];
        }
        *yi = acc;
    }
    y
}

/// The high-pass and the echo canceller alone, with the delay hint `echo_delay_ms`.
fn echo_only(echo_delay_ms: u32) -> CaptureConfig {
    CaptureConfig {
        noise_suppression: None,
        gain_control: false,
        vad: false,
        echo_delay_ms,
        ..CaptureConfig::default()
    }
}

#[test]
fn echo_canceller_converges_within_two_seconds() {
    let far = synthetic_speech(4.0, 1, false);
    let h = room(0.3, 80.0, 0.5, 2);
    let echo = convolve(&far, &h);
    let cfg = echo_only(80);
    let (out, _) = run(cfg, &echo, Some(&far));
    let from = (2.0 * SR) as usize;
    let erle = 20.0 * (rms(&echo[from..]) / rms(&out[from..]).max(1e-9)).log10();
    eprintln!("ERLE after 2 s: {erle:.1} dB");
    // 45 dB on this pulse-train talker (AEC3, used before, reached 23); benches/apm measures
    // 30–50 dB from 2 s on espeak-ng speech. The assertion guards convergence, the bench the
    // target.
    assert!(erle >= 30.0, "ERLE {erle:.1} dB after 2 s");
}

#[test]
fn echo_canceller_keeps_near_end_speech() {
    // Double talk: near-end speech stays within a few dB while the echo is removed (the Kalman
    // filter keeps adapting through it, and the suppressor leaves bins the near end dominates).
    let far = synthetic_speech(6.0, 3, false);
    let near = synthetic_speech(6.0, 4, true);
    let echo = convolve(&far, &room(0.25, 60.0, 0.5, 5));
    let mic: Vec<f32> = near.iter().zip(&echo).map(|(a, b)| a + b).collect();
    let cfg = echo_only(60);
    let (out, _) = run(cfg, &mic, Some(&far));
    let from = (3.0 * SR) as usize;
    let kept = 20.0 * (rms(&out[from..]) / rms(&near[from..])).log10();
    let residual: Vec<f32> = out[from..]
        .iter()
        .zip(&near[from..])
        .map(|(o, n)| o - n)
        .collect();
    let removed = 20.0 * (rms(&echo[from..]) / rms(&residual)).log10();
    eprintln!(
        "near end after the canceller: {kept:.1} dB; echo in double talk {removed:.1} dB down"
    );
    assert!(kept > -3.0, "near-end speech lost {kept:.1} dB");
    assert!(
        removed > 5.0,
        "only {removed:.1} dB of echo removed in double talk"
    );
}

#[test]
fn steady_noise_as_loud_as_the_echo_is_not_taken_for_a_talker() {
    // A fan 5 dB under the echo: the error stands well over the residual the filter expects, as
    // in double talk, but it is the room's steady noise, so the suppressor keeps its full weight
    // and the echo stays removed (measured as the output's projection on the echo, per 20 ms
    // frame, over the far end's active frames after 2 s).
    let far = synthetic_speech(8.0, 9, false);
    let echo = convolve(&far, &room(0.2, 40.0, 0.5, 10));
    let mut noise = white(echo.len(), 11);
    normalize(&mut noise, rms(&echo) * 10f32.powf(-5.0 / 20.0));
    let mic: Vec<f32> = echo.iter().zip(&noise).map(|(e, n)| e + n).collect();
    let (out, _) = run(echo_only(40), &mic, Some(&far));
    let (mut kept, mut total) = (0.0f32, 0.0f32);
    for ((o, e), f) in out
        .chunks_exact(FRAME_SAMPLES)
        .zip(echo.chunks_exact(FRAME_SAMPLES))
        .zip(far.chunks_exact(FRAME_SAMPLES))
        .skip((2.0 * SR) as usize / FRAME_SAMPLES)
    {
        if rms(f) < 0.01 {
            continue;
        }
        let ee = e.iter().map(|v| v * v).sum::<f32>();
        let gain = projection(o, e);
        kept += gain * gain * ee;
        total += ee;
    }
    let left = 10.0 * (kept / total).max(1e-12).log10();
    eprintln!("echo left under steady noise 5 dB below it: {left:.1} dB");
    // -29.3 dB, as with the full weight throughout; taking the noise for a talker: -24.3 dB.
    assert!(
        left < -27.0,
        "echo only {left:.1} dB down under steady noise"
    );
}

#[test]
fn double_talk_keeps_the_near_end_whole() {
    // At 0 dB signal-to-echo the near end's quieter syllables are about as loud as the echo the
    // linear filter leaves. The suppressor eases off once the error stands well above the residual
    // it expects (someone in the room talks), so those syllables come through rather than being
    // cut down with the echo. Measured per 20 ms frame as the output's projection on the
    // near-end speech, in dB (0: all of it kept).
    let far = synthetic_speech(8.0, 6, false);
    let mut near = synthetic_speech(8.0, 7, true);
    near[..(4.0 * SR) as usize].fill(0.0);
    let mut echo = convolve(&far, &room(0.3, 80.0, 1.0, 8));
    let active = |x: &[f32]| {
        let loud: Vec<f32> = x
            .chunks_exact(FRAME_SAMPLES)
            .map(rms)
            .filter(|&r| r > 1e-3)
            .collect();
        (loud.iter().map(|r| r * r).sum::<f32>() / loud.len() as f32).sqrt()
    };
    let scale = active(&near[(4.0 * SR) as usize..]) / active(&echo);
    echo.iter_mut().for_each(|e| *e *= scale);
    let mic: Vec<f32> = near.iter().zip(&echo).map(|(a, b)| a + b).collect();
    let (out, _) = run(echo_only(80), &mic, Some(&far));
    let gains_db: Vec<f32> = out
        .chunks_exact(FRAME_SAMPLES)
        .zip(near.chunks_exact(FRAME_SAMPLES))
        .skip((4.5 * SR) as usize / FRAME_SAMPLES)
        .filter(|(_, n)| rms(n) >= 0.01)
        .map(|(o, n)| (20.0 * projection(o, n).abs().max(1e-6).log10()).max(-30.0))
        .collect();
    let mean = gains_db.iter().sum::<f32>() / gains_db.len() as f32;
    let within_3db = gains_db.iter().filter(|&&g| g > -3.0).count();
    let share = 100.0 * within_3db as f32 / gains_db.len() as f32;
    eprintln!(
        "near end in double talk: mean {mean:.2} dB per frame, {share:.1} % of {} frames within 3 dB",
        gains_db.len()
    );
    assert!(
        gains_db.len() > 50,
        "only {} near-end frames",
        gains_db.len()
    );
    assert!(mean > -2.5, "near end {mean:.2} dB down per frame");
}

/// Noise-only and speech segments of the suppressor's output: returns (speech gain dB, noise gain dB).
fn segment_gains(level: SuppressionLevel, noise: &[f32], snr_db: f32) -> (f32, f32) {
    let speech = synthetic_speech(6.0, 7, true);
    let mut noise = noise[..speech.len()].to_vec();
    normalize(&mut noise, rms(&speech) / 10f32.powf(snr_db / 20.0));
    let mic: Vec<f32> = speech.iter().zip(&noise).map(|(a, b)| a + b).collect();
    let cfg = CaptureConfig {
        noise_suppression: Some(level),
        gain_control: false,
        echo_cancel: false,
        ..CaptureConfig::default()
    };
    let (out, _) = run(cfg, &mic, None);
    // Word 1 (1.0–2.0 s) is a pause, word 0 (2.0–3.0 s) speech; skip the first second (adaptation).
    let sr = SR as usize;
    let pause = sr + 480..2 * sr;
    let talk = 2 * sr + 480..3 * sr;
    let noise_gain = 20.0 * (rms(&out[pause.clone()]) / rms(&mic[pause])).log10();
    let speech_gain = 20.0 * (rms(&out[talk.clone()]) / rms(&mic[talk])).log10();
    (speech_gain, noise_gain)
}

#[test]
fn noise_suppression_improves_snr() {
    let noise = white(6 * 48_000, 9);
    let (speech, noise_gain) = segment_gains(SuppressionLevel::High, &noise, 5.0);
    eprintln!("speech {speech:.1} dB, noise {noise_gain:.1} dB");
    assert!(
        noise_gain < -15.0,
        "noise only attenuated {noise_gain:.1} dB"
    );
    assert!(
        speech - noise_gain > 12.0,
        "SNR improved only {:.1} dB",
        speech - noise_gain
    );
}

#[test]
fn suppression_levels_are_ordered() {
    let noise = white(6 * 48_000, 10);
    let [low, moderate, high, very_high] = [
        SuppressionLevel::Low,
        SuppressionLevel::Moderate,
        SuppressionLevel::High,
        SuppressionLevel::VeryHigh,
    ]
    .map(|level| segment_gains(level, &noise, 5.0));
    eprintln!("(speech, noise) dB: low {low:.1?}, moderate {moderate:.1?}, high {high:.1?}, very high {very_high:.1?}");
    // Each level removes more noise than the one below it.
    assert!(low.1 < -6.0);
    assert!(moderate.1 < low.1 - 3.0);
    // The post-filter takes the residual RNNoise leaves in the pauses further down ...
    assert!(high.1 < moderate.1 - 3.0);
    assert!(very_high.1 < high.1 - 1.0);
    // ... and costs the speech little.
    assert!(
        high.0 > moderate.0 - 2.0,
        "speech {:.1} dB against {:.1} dB",
        high.0,
        moderate.0
    );
}

#[test]
fn speech_detector_passes_speech_and_rejects_noise() {
    let speech = synthetic_speech(8.0, 11, true);
    let mut noise = white(speech.len(), 12);
    normalize(&mut noise, rms(&speech) / 10f32.powf(10.0 / 20.0));
    let mic: Vec<f32> = speech.iter().zip(&noise).map(|(a, b)| a + b).collect();
    let (_, decisions) = run(CaptureConfig::default(), &mic, None);
    // Labels from the clean signal: a frame is speech when its clean level is within 30 dB of the peak.
    let levels: Vec<f32> = speech.chunks_exact(FRAME_SAMPLES).map(rms).collect();
    let peak = levels.iter().cloned().fold(0.0, f32::max);
    let (mut hit, mut n_speech, mut false_on, mut n_noise) = (0, 0, 0, 0);
    // The pauses are 1 s long; frames more than 400 ms into a pause are noise-only (hangover aside).
    for (i, (&l, &d)) in levels.iter().zip(&decisions).enumerate().skip(25) {
        let pause_pos = (i * FRAME_SAMPLES) % (2 * 48_000);
        if l > peak * 0.03 {
            n_speech += 1;
            hit += d as u32;
        } else if l == 0.0 && pause_pos >= 48_000 + 19_200 {
            n_noise += 1;
            false_on += d as u32;
        }
    }
    let hit_rate = hit as f32 / n_speech as f32;
    let false_rate = false_on as f32 / n_noise as f32;
    eprintln!("speech frames sent {hit_rate:.3}, noise frames sent {false_rate:.3}");
    assert!(hit_rate >= 0.9, "speech frames sent {hit_rate:.3}");
    assert!(false_rate <= 0.05, "noise frames sent {false_rate:.3}");
}

#[test]
fn all_off_is_transparent_and_bad_frames_are_refused() {
    let x = to_i16(&synthetic_speech(1.0, 13, false));
    let mut p = CaptureProcessor::new(CaptureConfig::off());
    let mut y = x[..FRAME_SAMPLES].to_vec();
    assert!(!p.process(&mut y).unwrap());
    assert_eq!(y, &x[..FRAME_SAMPLES]);
    let mut p = CaptureProcessor::new(CaptureConfig::default());
    let mut short = vec![0i16; 100];
    assert_eq!(p.process(&mut short), Err(CaptureError::FrameLength(100)));
    assert_eq!(p.far_end(&[]), Err(CaptureError::FrameLength(0)));
    assert_eq!(p.stats().frames, 0);
}

#[test]
fn the_engine_runs_the_processor_with_its_playback_as_far_end() {
    use voice_core::engine::{Engine, EngineConfig, Request};
    use voice_core::Time;
    let mut engine = Engine::new(EngineConfig {
        capture: CaptureConfig::default(),
        ..EngineConfig::default()
    })
    .unwrap();
    let noise = to_i16(
        &white(50 * FRAME_SAMPLES, 14)
            .iter()
            .map(|v| v * 0.05)
            .collect::<Vec<_>>(),
    );
    let mut out = [0i16; FRAME_SAMPLES];
    for (i, f) in noise.chunks_exact(FRAME_SAMPLES).enumerate() {
        let t = Time::from_micros(i as u64 * 20_000);
        engine.handle_capture(t, f.try_into().unwrap());
        engine.mix(t, &mut out);
    }
    let s = engine.capture_stats().expect("processing is on");
    assert_eq!(s.frames, 50);
    assert_eq!(s.far_end_chunks, 100, "every mixed frame is the far end");
    assert!(!s.speech, "white noise is not speech");
    engine
        .apply(Request::Capture(CaptureConfig::off()))
        .unwrap();
    assert!(engine.capture_stats().is_none());
}

#[test]
fn echo_canceller_finds_an_echo_the_hint_misses() {
    // The filter spans 320 ms from 60 ms before the delay hint. Echo paths the hint places badly:
    // 250 and 300 ms with the default 60 ms hint (past the span's end with their tails), and
    // 20 ms with a 250 ms hint (before its start: only the tail is inside). The canceller moves
    // its span to where its own filter finds the echo.
    for (echo_ms, hint) in [
        (250.0, 60),
        (300.0, 60),
        (100.0, 250),
        (130.0, 250),
        (80.0, 80),
    ] {
        let far = synthetic_speech(6.0, 1, false);
        let echo = convolve(&far, &room(0.3, echo_ms, 0.5, 2));
        let cfg = echo_only(hint);
        let (out, _) = run(cfg, &echo, Some(&far));
        let from = (4.0 * SR) as usize;
        let erle = 20.0 * (rms(&echo[from..]) / rms(&out[from..]).max(1e-9)).log10();
        eprintln!("echo at {echo_ms} ms, hint {hint} ms: ERLE from 4 s {erle:.1} dB");
        assert!(
            erle >= 25.0,
            "echo at {echo_ms} ms, hint {hint} ms: ERLE {erle:.1} dB"
        );
    }
}

#[test]
fn residual_echo_does_not_open_the_speech_detector() {
    // The far end talks through the room; nobody in the room does. What the canceller leaves is
    // the far end's speech, which the detector must not send as ours. Then the near end talks
    // over the same echo: the detector hears it.
    let far = synthetic_speech(6.0, 3, false);
    let echo = convolve(&far, &room(0.25, 60.0, 0.5, 5));
    let near = synthetic_speech(6.0, 4, true);
    let cfg = CaptureConfig {
        vad: true,
        echo_delay_ms: 60,
        ..CaptureConfig::default()
    };
    let (_, alone) = run(cfg, &echo, Some(&far));
    let skip = (1.0 * SR) as usize / FRAME_SAMPLES;
    let sent = alone[skip..].iter().filter(|&&s| s).count() as f32 / (alone.len() - skip) as f32;
    let mic: Vec<f32> = near.iter().zip(&echo).map(|(a, b)| a + b).collect();
    let (_, talk) = run(cfg, &mic, Some(&far));
    // Frames where the near end speaks (its syllables, pauses excluded), after the first second.
    let speaking: Vec<usize> = (skip..talk.len())
        .filter(|&i| rms(&near[i * FRAME_SAMPLES..(i + 1) * FRAME_SAMPLES]) > 0.05)
        .collect();
    let heard = speaking.iter().filter(|&&i| talk[i]).count() as f32 / speaking.len() as f32;
    eprintln!(
        "far end alone: {:.1} % of frames sent as speech; \
         double talk: {:.1} % of near-end speech frames",
        100.0 * sent,
        100.0 * heard
    );
    assert!(
        sent <= 0.05,
        "residual echo sent as speech in {:.1} % of frames",
        100.0 * sent
    );
    assert!(
        heard >= 0.8,
        "near-end speech heard in only {:.1} % of its frames",
        100.0 * heard
    );
}

/// `x` as a microphone whose clock runs `ppm` faster than the loudspeaker's would record it
/// through a sparse room (`(delay ms, gain)` reflections): sample `i` of the result is the room's
/// output at loudspeaker time `i · (1 − ppm·1e-6)`, read by cubic interpolation.
fn drifting_echo(x: &[f32], reflections: &[(f32, f32)], ppm: f64) -> Vec<f32> {
    let at = |t: f64| -> f32 {
        let i = t.floor();
        let f = (t - i) as f32;
        let i = i as isize;
        let s = |k: isize| -> f32 {
            usize::try_from(i + k)
                .ok()
                .and_then(|k| x.get(k))
                .copied()
                .unwrap_or(0.0)
        };
        let (p0, p1, p2, p3) = (s(-1), s(0), s(1), s(2));
        // Catmull-Rom.
        p1 + 0.5
            * f
            * (p2 - p0
                + f * (2.0 * p0 - 5.0 * p1 + 4.0 * p2 - p3 + f * (3.0 * (p1 - p2) + p3 - p0)))
    };
    let rate = 1.0 - ppm * 1e-6;
    (0..x.len())
        .map(|i| {
            let t = i as f64 * rate;
            reflections
                .iter()
                .map(|&(ms, g)| g * at(t - f64::from(ms) * f64::from(SR) / 1000.0))
                .sum()
        })
        .collect()
}

/// Runs `mic` (recorded at the microphone's clock) through `p` frame by frame, the far end handed
/// in as the loudspeaker plays it at its own clock, `ppm` slower: by the end of microphone frame
/// `i`, the far frames it has started by then. `each` gets the frame's index, the processed frame
/// and the stats after it.
fn run_at_two_clocks(
    p: &mut CaptureProcessor,
    far: &[f32],
    mic: &[f32],
    ppm: f64,
    mut each: impl FnMut(usize, &[i16], CaptureStats),
) {
    let (mic, far) = (to_i16(mic), to_i16(far));
    let mut handed = 0;
    for (i, frame) in mic.chunks_exact(FRAME_SAMPLES).enumerate() {
        let played = ((i + 1) * FRAME_SAMPLES) as f64 * (1.0 - ppm * 1e-6);
        while ((handed * FRAME_SAMPLES) as f64) < played {
            if let Some(f) = far.get(handed * FRAME_SAMPLES..(handed + 1) * FRAME_SAMPLES) {
                p.far_end(f).unwrap();
            }
            handed += 1;
        }
        let mut f = frame.to_vec();
        p.process(&mut f).unwrap();
        each(i, &f, p.stats());
    }
}

#[test]
fn echo_canceller_follows_clock_drift_between_speaker_and_microphone() {
    // A USB microphone beside the laptop's loudspeakers runs on its own clock: at 200 ppm the
    // echo path moves by 12 ms a minute. The canceller follows (it reads the far end at the
    // microphone's rate, found from how the echo moves in the signals and tracked from how its
    // filter moves) instead of losing the echo within seconds: without that, 200 ppm left
    // 11–15 dB after a minute. Each case is compared with the same room without drift.
    let seconds = 30.0;
    let far = synthetic_speech(seconds, 7, false);
    let reflections = [
        (70.0, 0.4),
        (75.0, -0.2),
        (90.0, 0.15),
        (130.0, 0.08),
        (170.0, -0.05),
    ];
    let from = ((seconds - 10.0) * SR) as usize;
    let erle = |ppm: f64| -> (f32, f64) {
        let echo = drifting_echo(&far, &reflections, ppm);
        let mut p = CaptureProcessor::new(echo_only(60));
        let mut out = Vec::with_capacity(echo.len());
        run_at_two_clocks(&mut p, &far, &echo, ppm, |_, frame, _| {
            out.extend_from_slice(frame)
        });
        let (out, stats) = (to_f32(&out), p.stats());
        let erle = 20.0 * (rms(&echo[from..]) / rms(&out[from..]).max(1e-9)).log10();
        eprintln!(
            "{ppm:+} ppm: ERLE over the last 10 s of {seconds} s: {erle:.1} dB; drift measured \
             {:+.1} ppm",
            stats.clock_drift_ppm
        );
        (erle, stats.clock_drift_ppm)
    };
    let (still, none) = erle(0.0);
    assert!(none.abs() < 10.0, "no drift, {none:+.1} ppm measured");
    for ppm in [200.0, -200.0] {
        let (drifting, measured) = erle(ppm);
        assert!(
            drifting >= 30.0,
            "{ppm:+} ppm: ERLE {drifting:.1} dB over the last 10 s (no drift: {still:.1} dB)"
        );
        // What the stats report (and the GUI shows) is the drift.
        assert!(
            (measured - ppm).abs() < 20.0,
            "{ppm:+} ppm drift measured as {measured:+.1} ppm"
        );
    }
}

#[test]
fn drift_is_found_within_seconds_in_a_reverberant_room() {
    // A dense, reverberant room (most of the echo in its tail) and a microphone 150 ppm off the
    // loudspeaker: the path moves faster than the filter learns it, so the drift is read from
    // the signals (how far the echo moves from one second to the next) rather than from the
    // filter, and is found within seconds.
    let seconds = 12.0;
    let far = synthetic_speech(seconds, 9, false);
    let echo = convolve(&far, &room(0.3, 60.0, 0.5, 11));
    for ppm in [150.0, -150.0] {
        // The microphone's clock: the echo read `ppm` fast.
        let heard = drifting_echo(&echo, &[(0.0, 1.0)], ppm);
        let mut p = CaptureProcessor::new(echo_only(60));
        let mut found_at = None;
        run_at_two_clocks(&mut p, &far, &heard, ppm, |i, _, stats| {
            let measured = stats.clock_drift_ppm;
            if found_at.is_none() && (measured - ppm).abs() < 0.2 * ppm.abs() {
                found_at = Some(i as f32 * 0.02);
            }
        });
        let measured = p.stats().clock_drift_ppm;
        eprintln!("{ppm:+} ppm: within 20 % from {found_at:?} s, {measured:+.1} ppm at the end");
        assert!(
            found_at.is_some_and(|t| t <= 8.0),
            "{ppm:+} ppm: found at {found_at:?} s"
        );
        assert!((measured - ppm).abs() < 10.0, "{ppm:+} ppm: {measured:+.1}");
    }
}
