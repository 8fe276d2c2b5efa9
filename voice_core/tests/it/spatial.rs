//! Positional rendering against its documented models, measured on the rendered stereo signal:
//! * a 500 Hz tone at azimuth θ (15° steps, full circle, listener turned and moved off the
//!   origin): the level difference between the ears within 1 dB of ILD = 10 dB · sin θ and the
//!   time difference (from the phase at 500 Hz) within 50 µs of Woodworth's (a/c)(φ + sin φ);
//! * gain against distance for every distance model within 0.5 dB of OpenAL's clamped formulas,
//!   written out here independently of the library;
//! * a position jump does not click.

use std::f64::consts::PI;

use voice_core::proto::udp::Position;
use voice_core::spatial::{
    Attenuation, DistanceModel, EarParams, ListenerPose, SpatialVoice, StereoMixer,
    STEREO_FRAME_SAMPLES,
};
use voice_core::FRAME_SAMPLES;

const FREQ: f64 = 500.0;
const AMP: f64 = 8192.0;

fn tone(frame: usize) -> [i16; FRAME_SAMPLES] {
    let mut f = [0i16; FRAME_SAMPLES];
    for (i, s) in f.iter_mut().enumerate() {
        let n = (frame * FRAME_SAMPLES + i) as f64;
        *s = (AMP * (2.0 * PI * FREQ * n / 48_000.0).sin()).round() as i16;
    }
    f
}

/// Renders `frames` frames of the tone with fixed ears; returns the last frame's raw stereo.
fn render_steady(ears: EarParams, frames: usize) -> Vec<f32> {
    let mut voice = SpatialVoice::new();
    let mut mix = StereoMixer::new();
    for k in 0..frames {
        mix.clear();
        mix.add_spatial(&mut voice, &tone(k), ears);
    }
    mix.raw().to_vec()
}

fn channel(st: &[f32], ch: usize) -> Vec<f64> {
    st.iter()
        .skip(ch)
        .step_by(2)
        .map(|&v| f64::from(v))
        .collect()
}

fn rms(x: &[f64]) -> f64 {
    (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64).sqrt()
}

/// The DFT bin at FREQ (960 samples = exactly 10 periods).
fn bin(x: &[f64]) -> (f64, f64) {
    let w = 2.0 * PI * FREQ / 48_000.0;
    x.iter().enumerate().fold((0.0, 0.0), |(re, im), (n, &v)| {
        (re + v * (w * n as f64).cos(), im - v * (w * n as f64).sin())
    })
}

fn listener() -> ListenerPose {
    // Moved off the origin and turned to face +x (so its right is +z), tilted up vector length.
    ListenerPose {
        position: Position::new(10.0, 2.0, -3.0),
        forward: [2.0, 0.0, 0.0],
        up: [0.0, 3.0, 0.0],
    }
}

#[test]
fn level_and_time_difference_follow_the_model_in_15_degree_steps() {
    let l = listener();
    let att = Attenuation {
        model: DistanceModel::Inverse,
        min_distance: 1.0,
        max_distance: 100.0,
        rolloff: 1.0,
    };
    let mut ild_seen = Vec::new();
    for step in 0..24 {
        let theta = f64::from(step * 15).to_radians();
        // forward = +x, right = +z
        let src = Position::new(
            (10.0 + theta.cos()) as f32,
            2.0,
            (-3.0 + theta.sin()) as f32,
        );
        let ears = EarParams::for_source(&l, src, &att, 1.0);
        let st = render_steady(ears, 3);
        let (left, right) = (channel(&st, 0), channel(&st, 1));
        let ild = 20.0 * (rms(&right) / rms(&left)).log10();
        let (lr, li) = bin(&left);
        let (rr, ri) = bin(&right);
        // arg(R · conj(L)) = ω (τ_L − τ_R)
        let phase = (ri * lr - rr * li).atan2(rr * lr + ri * li);
        let itd_us = phase / (2.0 * PI * FREQ) * 1e6;

        let lateral = theta.sin();
        let phi = lateral.asin();
        let want_ild = 10.0 * lateral;
        let want_itd_us = 0.0875 / 343.0 * (phi + phi.sin()) * 1e6;
        assert!(
            (ild - want_ild).abs() <= 1.0,
            "θ={}°: ILD {ild:.2} dB, model {want_ild:.2}",
            step * 15
        );
        assert!(
            (itd_us - want_itd_us).abs() <= 50.0,
            "θ={}°: ITD {itd_us:.1} µs, model {want_itd_us:.1}",
            step * 15
        );
        // The near ear keeps the distance gain (1 at 1 unit): the level is the tone's.
        let near = rms(&left).max(rms(&right));
        assert!((20.0 * (near / (AMP / 32768.0 / 2f64.sqrt())).log10()).abs() < 0.1);
        ild_seen.push(ild);
    }
    // At 90° the right ear leads by ~656 µs and is 10 dB louder; at 270° the mirror image.
    assert!((ild_seen[6] - 10.0).abs() < 0.2 && (ild_seen[18] + 10.0).abs() < 0.2);
}

fn openal_gain(model: DistanceModel, d: f64, min: f64, max: f64, r: f64) -> f64 {
    if d > max {
        return 0.0;
    }
    let d = d.clamp(min, max);
    match model {
        DistanceModel::None => 1.0,
        DistanceModel::Inverse => min / (min + r * (d - min)),
        DistanceModel::Linear => (1.0 - r * (d - min) / (max - min)).max(0.0),
        DistanceModel::Exponential => (d / min).powf(-r),
    }
}

#[test]
fn gain_against_distance_follows_each_model_within_half_a_db() {
    let l = ListenerPose::default();
    let reference = rms(&channel(&render_steady(EarParams::centered(1.0), 3), 0));
    for model in [
        DistanceModel::None,
        DistanceModel::Inverse,
        DistanceModel::Linear,
        DistanceModel::Exponential,
    ] {
        for (min, max, r) in [(1.0, 50.0, 1.0), (2.0, 30.0, 0.5), (0.5, 20.0, 2.0)] {
            let att = Attenuation {
                model,
                min_distance: min as f32,
                max_distance: max as f32,
                rolloff: r as f32,
            };
            for d in [
                0.1, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 19.5, 29.0, 45.0, 60.0,
            ] {
                // Straight ahead: no interaural difference, so each ear is the distance gain.
                let ears = EarParams::for_source(&l, Position::new(0.0, 0.0, -d as f32), &att, 1.0);
                let got = rms(&channel(&render_steady(ears, 2), 0)) / reference;
                let want = openal_gain(model, d, min, max, r);
                if want < 1e-3 {
                    assert!(
                        got < 1e-3,
                        "{model:?} {min}/{max}/{r} at {d}: {got} not silent"
                    );
                } else {
                    let err = 20.0 * (got / want).log10();
                    assert!(
                        err.abs() <= 0.5,
                        "{model:?} {min}/{max}/{r} at {d}: {got:.4} vs {want:.4} ({err:.2} dB)"
                    );
                }
            }
        }
    }
}

#[test]
fn a_position_jump_glides_instead_of_clicking() {
    let l = ListenerPose::default();
    let att = Attenuation::default();
    let left = EarParams::for_source(&l, Position::new(-1.0, 0.0, 0.0), &att, 1.0);
    let right = EarParams::for_source(&l, Position::new(3.0, 0.0, 0.0), &att, 1.0);
    let mut voice = SpatialVoice::new();
    let mut mix = StereoMixer::new();
    let mut prev = [0f32; 2];
    let mut max_step = 0f32;
    for k in 0..4 {
        mix.clear();
        let ears = if k < 2 { left } else { right };
        mix.add_spatial(&mut voice, &tone(k), ears);
        let raw: &[f32; STEREO_FRAME_SAMPLES] = mix.raw();
        for fr in raw.chunks_exact(2) {
            if k > 0 {
                for c in 0..2 {
                    max_step = max_step.max((fr[c] - prev[c]).abs());
                }
            }
            prev = [fr[0], fr[1]];
        }
    }
    // The tone's own largest step is A·ω/fs; sliding the delay by 31 samples over one frame
    // shifts the pitch by ~3 %, gain ramps add a little. An abrupt switch would step by up to ~2A.
    let tone_step = (AMP / 32768.0 * 2.0 * PI * FREQ / 48_000.0) as f32;
    assert!(
        max_step < 1.2 * tone_step,
        "largest step {max_step} vs the tone's {tone_step}"
    );
}

#[test]
fn stereo_mixer_centres_2d_voices_and_clips_softly() {
    let mut mix = StereoMixer::new();
    let loud = [30_000i16; FRAME_SAMPLES];
    mix.add_centered(&loud, 1.0);
    mix.add_centered(&loud, 1.0);
    assert_eq!(mix.sources(), 2);
    let mut out = [0i16; STEREO_FRAME_SAMPLES];
    mix.finish(&mut out);
    assert!(out.iter().all(|&s| s > 30_000));
    assert!(out.chunks_exact(2).all(|f| f[0] == f[1]));
}
