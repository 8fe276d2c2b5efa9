//! Positional audio: distance models, the listener's pose, and stereo rendering of mono voices by
//! interaural level and time differences (ILD + ITD).
//!
//! # Conventions
//! Positions are in game units, right-handed as in OpenAL: with the default pose the listener looks
//! down −z with +y up, so +x is to the right. Azimuth θ is measured from straight ahead, positive to
//! the right.
//!
//! # Distance models
//! The distance models themselves ([`Attenuation`], [`DistanceModel`]) are part of the wire and of
//! the relay's culling, so they live in [`voice_proto::attenuation`] and are re-exported here.
//!
//! # Spatialisation
//! From the lateral angle φ = asin(x / |v|) (the source direction's component along the listener's
//! right axis; front and back are not told apart, as with any ILD/ITD renderer):
//! * ITD by Woodworth's spherical head, ITD = (a / c)(φ + sin φ) with a = 8.75 cm and
//!   c = 343 m/s (at most 656 µs), applied as a fractional delay of the far ear;
//! * ILD = [`MAX_ILD_DB`] · |sin φ|, applied as attenuation of the far ear (the near ear keeps the
//!   distance gain).
//!
//! Every change of gain or delay is ramped sample by sample over one 20 ms frame, so a position jump
//! (a teleport) never clicks: gains glide and the delay line's read point slides.

use crate::mixer::soft_clip;
use crate::proto::udp::Position;
use crate::{FRAME_SAMPLES, SAMPLE_RATE};
pub use voice_proto::attenuation::{Attenuation, DistanceModel, SpatialError};

/// Interleaved stereo samples in one frame (left, right, left, …).
pub const STEREO_FRAME_SAMPLES: usize = 2 * FRAME_SAMPLES;
/// Head radius of the ITD model in metres.
pub const HEAD_RADIUS_M: f32 = 0.0875;
/// Speed of sound in m/s.
pub const SPEED_OF_SOUND: f32 = 343.0;
/// Level difference between the ears for a source at 90° in dB.
pub const MAX_ILD_DB: f32 = 10.0;
/// Longest interaural delay the renderer applies, in samples (≥ the model's 656 µs).
const MAX_DELAY: usize = 40;

/// The listener's position and orientation, set by the app every frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ListenerPose {
    /// Where the listener's head is.
    pub position: Position,
    /// Direction the listener looks (need not be unit length).
    pub forward: [f32; 3],
    /// The listener's up direction (need not be unit length or exactly orthogonal to `forward`).
    pub up: [f32; 3],
}

impl Default for ListenerPose {
    /// At the origin, looking down −z, +y up (OpenAL's default).
    fn default() -> Self {
        ListenerPose {
            position: Position::default(),
            forward: [0.0, 0.0, -1.0],
            up: [0.0, 1.0, 0.0],
        }
    }
}

fn dot(a: [f32; 3], b: [f32; 3]) -> f32 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn cross(a: [f32; 3], b: [f32; 3]) -> [f32; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn normalize(a: [f32; 3]) -> Option<[f32; 3]> {
    let n = dot(a, a).sqrt();
    (n.is_finite() && n > 1e-12).then(|| [a[0] / n, a[1] / n, a[2] / n])
}

impl ListenerPose {
    /// Checks that the position is finite and the orientation usable.
    pub fn validate(&self) -> Result<(), SpatialError> {
        if !self.position.is_finite() {
            return Err(SpatialError::BadOrientation);
        }
        self.right().map(|_| ())
    }

    /// The unit vector to the listener's right (forward × up).
    fn right(&self) -> Result<[f32; 3], SpatialError> {
        let f = normalize(self.forward).ok_or(SpatialError::BadOrientation)?;
        let u = normalize(self.up).ok_or(SpatialError::BadOrientation)?;
        normalize(cross(f, u)).ok_or(SpatialError::BadOrientation)
    }

    /// Distance and lateral component (sine of the lateral angle, −1 left … +1 right) of `source`.
    /// A source at the listener's own position is straight ahead.
    pub fn locate(&self, source: Position) -> (f32, f32) {
        let v = [
            source.x - self.position.x,
            source.y - self.position.y,
            source.z - self.position.z,
        ];
        let d = dot(v, v).sqrt();
        let lateral = match (self.right(), d > 1e-6) {
            (Ok(r), true) => (dot(v, r) / d).clamp(-1.0, 1.0),
            _ => 0.0,
        };
        (d, lateral)
    }
}

/// Woodworth's ITD in seconds for a lateral component `lateral` = sin φ (positive: source on the
/// right, so the left ear hears it later).
pub fn itd_seconds(lateral: f32) -> f32 {
    let phi = lateral.clamp(-1.0, 1.0).asin();
    HEAD_RADIUS_M / SPEED_OF_SOUND * (phi + phi.sin())
}

/// The model's level difference right minus left in dB for `lateral` = sin φ.
pub fn ild_db(lateral: f32) -> f32 {
    MAX_ILD_DB * lateral.clamp(-1.0, 1.0)
}

/// Per-ear gain and delay (in samples) for one voice.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EarParams {
    /// Left ear gain.
    pub gain_l: f32,
    /// Right ear gain.
    pub gain_r: f32,
    /// Left ear delay in samples.
    pub delay_l: f32,
    /// Right ear delay in samples.
    pub delay_r: f32,
}

impl EarParams {
    /// Both ears at `gain`, no delay: a 2D voice.
    pub fn centered(gain: f32) -> Self {
        EarParams {
            gain_l: gain,
            gain_r: gain,
            delay_l: 0.0,
            delay_r: 0.0,
        }
    }

    /// The ears for a voice at `source` heard by `listener` with `attenuation`, scaled by `volume`.
    pub fn for_source(
        listener: &ListenerPose,
        source: Position,
        attenuation: &Attenuation,
        volume: f32,
    ) -> Self {
        let (d, lateral) = listener.locate(source);
        let g = attenuation.gain(d) * volume;
        let far = 10f32.powf(-ild_db(lateral).abs() / 20.0);
        let delay = itd_seconds(lateral).abs() * SAMPLE_RATE as f32;
        if lateral >= 0.0 {
            EarParams {
                gain_l: g * far,
                gain_r: g,
                delay_l: delay,
                delay_r: 0.0,
            }
        } else {
            EarParams {
                gain_l: g,
                gain_r: g * far,
                delay_l: 0.0,
                delay_r: delay,
            }
        }
    }
}

/// One voice's rendering state: the last input samples (for the interaural delay) and the ear
/// parameters of the previous frame (to ramp from). No allocation after construction.
#[derive(Debug, Clone)]
pub struct SpatialVoice {
    /// `MAX_DELAY + 1` samples of history, the current frame, and one zero (read with weight 0
    /// by the interpolation at delay 0).
    buf: Box<[f32]>,
    last: Option<EarParams>,
}

impl Default for SpatialVoice {
    fn default() -> Self {
        SpatialVoice {
            buf: vec![0.0; MAX_DELAY + 1 + FRAME_SAMPLES + 1].into_boxed_slice(),
            last: None,
        }
    }
}

impl SpatialVoice {
    /// A silent voice.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets the ramp and the delay history (after a silence: the next frame starts at its
    /// target without gliding from a stale position).
    pub fn reset(&mut self) {
        self.buf.fill(0.0);
        self.last = None;
    }

    /// Renders one mono frame into the interleaved stereo accumulator `acc` (added, not
    /// overwritten), ramping from the previous frame's parameters to `target`.
    pub fn render(
        &mut self,
        frame: &[i16; FRAME_SAMPLES],
        target: EarParams,
        acc: &mut [f32; STEREO_FRAME_SAMPLES],
    ) {
        let h = MAX_DELAY + 1;
        self.buf.copy_within(FRAME_SAMPLES..FRAME_SAMPLES + h, 0);
        for (b, &s) in self.buf[h..h + FRAME_SAMPLES].iter_mut().zip(frame.iter()) {
            *b = f32::from(s) / 32768.0;
        }
        let clamp = |d: f32| d.clamp(0.0, MAX_DELAY as f32);
        let from = self.last.unwrap_or(target);
        let to = target;
        let step = 1.0 / FRAME_SAMPLES as f32;
        let buf = &self.buf;
        let read = |pos: f32| {
            // pos ≥ 0 by construction (h ≥ delay + 1).
            let i = pos as usize;
            let frac = pos - i as f32;
            buf[i] + (buf[i + 1] - buf[i]) * frac
        };
        for (n, out) in acc.chunks_exact_mut(2).enumerate() {
            let t = (n + 1) as f32 * step;
            let lerp = |a: f32, b: f32| a + (b - a) * t;
            let base = (h + n) as f32;
            let dl = clamp(lerp(from.delay_l, to.delay_l));
            let dr = clamp(lerp(from.delay_r, to.delay_r));
            out[0] += read(base - dl) * lerp(from.gain_l, to.gain_l);
            out[1] += read(base - dr) * lerp(from.gain_r, to.gain_r);
        }
        self.last = Some(target);
    }
}

/// Accumulates voices into one interleaved stereo frame with the mono mixer's soft clipping.
#[derive(Debug, Clone)]
pub struct StereoMixer {
    acc: Box<[f32; STEREO_FRAME_SAMPLES]>,
    sources: usize,
}

impl Default for StereoMixer {
    fn default() -> Self {
        StereoMixer {
            acc: Box::new([0.0; STEREO_FRAME_SAMPLES]),
            sources: 0,
        }
    }
}

impl StereoMixer {
    /// A silent mixer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a new tick.
    pub fn clear(&mut self) {
        self.acc.fill(0.0);
        self.sources = 0;
    }

    /// Adds a voice at the centre (a 2D channel): the same samples in both ears at `gain`.
    pub fn add_centered(&mut self, frame: &[i16; FRAME_SAMPLES], gain: f32) {
        if gain <= 0.0 {
            return;
        }
        let g = gain / 32768.0;
        for (o, &s) in self.acc.chunks_exact_mut(2).zip(frame.iter()) {
            let v = f32::from(s) * g;
            o[0] += v;
            o[1] += v;
        }
        self.sources += 1;
    }

    /// Adds a positioned voice through its rendering state.
    pub fn add_spatial(
        &mut self,
        voice: &mut SpatialVoice,
        frame: &[i16; FRAME_SAMPLES],
        ears: EarParams,
    ) {
        voice.render(frame, ears, &mut self.acc);
        self.sources += 1;
    }

    /// Sources added since [`StereoMixer::clear`].
    pub fn sources(&self) -> usize {
        self.sources
    }

    /// The unclipped accumulator (left, right interleaved), for measurements.
    pub fn raw(&self) -> &[f32; STEREO_FRAME_SAMPLES] {
        &self.acc
    }

    /// Writes the mixed, clip-protected interleaved frame to `out`.
    pub fn finish(&self, out: &mut [i16; STEREO_FRAME_SAMPLES]) {
        for (o, &a) in out.iter_mut().zip(self.acc.iter()) {
            *o = (soft_clip(a) * 32767.0).round() as i16;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attenuation_validation() {
        assert!(Attenuation::default().validate().is_ok());
        for bad in [
            (0.0, 10.0, 1.0),
            (5.0, 5.0, 1.0),
            (1.0, f32::INFINITY, 1.0),
            (1.0, 10.0, -1.0),
            (f32::NAN, 10.0, 1.0),
        ] {
            let a = Attenuation {
                model: DistanceModel::Linear,
                min_distance: bad.0,
                max_distance: bad.1,
                rolloff: bad.2,
            };
            assert_eq!(a.validate(), Err(SpatialError::BadAttenuation), "{bad:?}");
        }
    }

    #[test]
    fn pose_orientation_decides_left_and_right() {
        let p = ListenerPose::default();
        assert!((p.locate(Position::new(5.0, 0.0, 0.0)).1 - 1.0).abs() < 1e-6);
        assert!((p.locate(Position::new(-5.0, 0.0, 0.0)).1 + 1.0).abs() < 1e-6);
        assert!(p.locate(Position::new(0.0, 0.0, -5.0)).1.abs() < 1e-6);
        // Turned to face +x: a source at +x is ahead, one at +z is to the right.
        let turned = ListenerPose {
            forward: [1.0, 0.0, 0.0],
            ..p
        };
        assert!(turned.locate(Position::new(5.0, 0.0, 0.0)).1.abs() < 1e-6);
        assert!((turned.locate(Position::new(0.0, 0.0, 5.0)).1 - 1.0).abs() < 1e-6);
        let parallel = ListenerPose {
            up: [0.0, 0.0, -2.0],
            ..p
        };
        assert_eq!(parallel.validate(), Err(SpatialError::BadOrientation));
    }

    #[test]
    fn model_names_round_trip() {
        for m in [
            DistanceModel::None,
            DistanceModel::Inverse,
            DistanceModel::Linear,
            DistanceModel::Exponential,
        ] {
            assert_eq!(DistanceModel::from_name(m.name()), Some(m));
        }
        assert_eq!(DistanceModel::from_name("log"), None);
    }
}
