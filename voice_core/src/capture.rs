//! Capture processing: what the microphone hears, cleaned before it is encoded.
//!
//! [`CaptureProcessor`] is sans-IO like the rest of the crate: 48 kHz mono `i16` frames in, the same
//! frames cleaned in place out, the far-end (playback) signal handed in by the caller. Stages, in
//! signal order, each switchable in [`CaptureConfig`]:
//!
//! 1. **high-pass**: 2nd-order Butterworth at 40 Hz (DC, rumble, handling noise);
//! 2. **echo cancellation** with the engine's own playback mix as the far-end reference: a
//!    frequency-domain Kalman filter models 320 ms of echo path, starting 60 ms before the device
//!    delay set with [`CaptureProcessor::set_echo_delay_ms`], and a residual-echo suppressor
//!    driven by the filter's own uncertainty removes what it cannot (see `capture/echo.rs`);
//! 3. **noise suppression**: RNNoise (a recurrent network over 22 bands, weights compiled in),
//!    then (at [`SuppressionLevel::High`] and above) a spectral post-filter that removes the
//!    residual noise RNNoise leaves, shallow in speech and deep in the pauses (an MMSE
//!    log-spectral amplitude suppressor, 10 ms of added latency); at the lower levels the
//!    output is instead mixed with a floor of the unprocessed signal. Where the noise is 40 dB
//!    under the speech (clean input) the unprocessed signal passes alone;
//! 4. **automatic gain control**: a slew-limited gain (6 dB/s) that brings speech to within 4 dB
//!    of -26 dBFS active level (ITU-T P.56's nominal), adapted on speech chunks only, and a peak
//!    limiter;
//! 5. **voice activity** from RNNoise's speech probability with attack and hangover, replacing the
//!    energy gate of [`crate::vad`].
//!
//! The noise suppressor is `nnnoiseless` (a pure Rust port of RNNoise); the rest is ours.
//! Everything is allocated in [`CaptureProcessor::new`] and the per-frame calls take no lock; a
//! counting allocator in the tests checks that no stage allocates per frame.
//! RNNoise's FFT planner is created on first use in each thread (the first frame). Internally the chain runs on 10 ms chunks ([`CHUNK_SAMPLES`]); the engine's 20 ms
//! frames are two chunks.

use nnnoiseless::DenoiseState;
use serde::{Deserialize, Serialize};

use crate::{FRAME_SAMPLES, SAMPLE_RATE};

mod delay_slope;
mod detector;
mod drift;
mod echo;
mod postfilter;
use detector::SpeechDetector;
use echo::EchoCanceller;
use postfilter::PostFilter;

/// Samples in one processing chunk (10 ms at 48 kHz); frames must be a multiple of it.
pub const CHUNK_SAMPLES: usize = 480;
// A 20 ms frame is whole 10 ms chunks (what makes `far_end_frame` infallible).
const _: () = assert!(FRAME_SAMPLES.is_multiple_of(CHUNK_SAMPLES));

/// How hard the noise suppressor works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SuppressionLevel {
    /// RNNoise with the unprocessed signal kept 12 dB down (noise is attenuated ~12 dB at most).
    Low,
    /// RNNoise alone, as Mumble runs it.
    Moderate,
    /// RNNoise and the residual post-filter: a further 3 dB at most in speech, 20 dB in pauses.
    #[default]
    High,
    /// RNNoise and a deeper post-filter: 6 dB at most in speech, 30 dB in pauses.
    VeryHigh,
}

impl SuppressionLevel {
    /// Linear gain of the unprocessed signal mixed back under the denoised one.
    fn dry_floor(self) -> f32 {
        match self {
            SuppressionLevel::Low => 0.251, // -12 dB
            SuppressionLevel::Moderate | SuppressionLevel::High | SuppressionLevel::VeryHigh => 0.0,
        }
    }

    /// The post-filter's deepest attenuation in speech and in pauses (dB), if it runs.
    fn post_floors_db(self) -> Option<(f32, f32)> {
        match self {
            SuppressionLevel::Low | SuppressionLevel::Moderate => None,
            SuppressionLevel::High => Some((-3.0, -20.0)),
            SuppressionLevel::VeryHigh => Some((-6.0, -30.0)),
        }
    }

    /// Parses `low`, `moderate`, `high` or `very-high`.
    pub fn parse(s: &str) -> Option<SuppressionLevel> {
        match s {
            "low" => Some(SuppressionLevel::Low),
            "moderate" => Some(SuppressionLevel::Moderate),
            "high" => Some(SuppressionLevel::High),
            "very-high" | "veryhigh" => Some(SuppressionLevel::VeryHigh),
            _ => None,
        }
    }
}

/// The default [`SpeechVadConfig::background_margin_db`].
pub const BACKGROUND_MARGIN_DB: f32 = 6.0;
/// The widest [`SpeechVadConfig::background_margin_db`] the front ends (C, voice-bot, voice-apm)
/// accept: 0 (off) up to this.
pub const MAX_BACKGROUND_MARGIN_DB: f32 = 40.0;

/// Speech detector settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SpeechVadConfig {
    /// Speech probability (0..1) at or above which a 10 ms chunk counts as speech.
    pub threshold: f32,
    /// Speech chunks in a row needed to open (1 = open on the first).
    pub attack_chunks: u32,
    /// 10 ms chunks kept open after the last speech chunk (30 = 300 ms).
    pub hangover_chunks: u32,
    /// Background voices (people across the room, a TV): a speech chunk opens the microphone
    /// only when the noise suppressor's output is at most this many dB under the talker's
    /// level, and well above the lulls of the background. 0 turns the gate off (every voice
    /// RNNoise hears opens it). See `capture/detector.rs`.
    pub background_margin_db: f32,
}

impl Default for SpeechVadConfig {
    fn default() -> Self {
        SpeechVadConfig {
            threshold: 0.6,
            // Two chunks (20 ms): a single chunk of fan noise that RNNoise takes for speech does
            // not open the gate (measured at 10 dB SNR: fan false triggers 8 % → 2 %, speech
            // frames sent 97.6 % → 97.2 %).
            attack_chunks: 2,
            hangover_chunks: 30,
            background_margin_db: BACKGROUND_MARGIN_DB,
        }
    }
}

/// Which capture stages run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CaptureConfig {
    /// High-pass filter (40 Hz).
    pub high_pass: bool,
    /// Acoustic echo cancellation against the far-end signal.
    pub echo_cancel: bool,
    /// Noise suppression; `None` is off.
    pub noise_suppression: Option<SuppressionLevel>,
    /// Automatic gain control (adaptive digital gain and limiter).
    pub gain_control: bool,
    /// Voice activity from speech probability (RNNoise runs for it even with suppression off).
    pub vad: bool,
    /// Speech detector settings.
    pub vad_config: SpeechVadConfig,
    /// Estimate of the echo path delay (device output + input latency) in ms: the canceller's
    /// filter covers echo from 60 ms before it to 260 ms after it.
    pub echo_delay_ms: u32,
}

impl Default for CaptureConfig {
    /// Every stage on, suppression [`SuppressionLevel::High`], 60 ms delay hint.
    fn default() -> Self {
        CaptureConfig {
            high_pass: true,
            echo_cancel: true,
            noise_suppression: Some(SuppressionLevel::default()),
            gain_control: true,
            vad: true,
            vad_config: SpeechVadConfig::default(),
            echo_delay_ms: 60,
        }
    }
}

impl CaptureConfig {
    /// Every stage off: frames pass through unchanged.
    pub fn off() -> Self {
        CaptureConfig {
            high_pass: false,
            echo_cancel: false,
            noise_suppression: None,
            gain_control: false,
            vad: false,
            ..Default::default()
        }
    }

    /// Whether any stage runs.
    pub fn any(&self) -> bool {
        self.high_pass
            || self.echo_cancel
            || self.noise_suppression.is_some()
            || self.gain_control
            || self.vad
    }
}

/// A frame the processor cannot take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CaptureError {
    /// The frame length is not a positive multiple of [`CHUNK_SAMPLES`].
    #[error("frame of {0} samples is not a positive multiple of {CHUNK_SAMPLES}")]
    FrameLength(usize),
}

/// What the processor measured on the last frame.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct CaptureStats {
    /// Highest speech probability over the frame's chunks (0 when the detector is off).
    pub speech_probability: f32,
    /// Whether the detector (with hangover) says speech.
    pub speech: bool,
    /// The echo canceller's echo return loss enhancement (dB): microphone over output power while
    /// the far end plays, smoothed over about a second, once there was far-end speech. Near-end
    /// speech at the same time counts against it (as in every ERLE measurement): it reads the
    /// echo removed when the far end talks alone.
    pub erle_db: Option<f64>,
    /// The echo canceller's echo path delay estimate in ms (its filter's largest tap, to the
    /// sample), once it has learnt some echo.
    pub echo_delay_ms: Option<i32>,
    /// The clock drift between the far end (loudspeaker) and the microphone that the echo
    /// canceller measures, in ppm (positive: the microphone runs fast and the echo arrives later
    /// and later). From 10 ppm on, the canceller reads the far end at the microphone's rate; 0
    /// before it has measured anything, or with the canceller off.
    pub clock_drift_ppm: f64,
    /// Frames processed.
    pub frames: u64,
    /// Far-end chunks received.
    pub far_end_chunks: u64,
}

/// The capture chain. See the module documentation.
pub struct CaptureProcessor {
    cfg: CaptureConfig,
    /// The echo canceller (fed with the far end).
    echo: Option<EchoCanceller>,
    rnnoise: Option<Box<DenoiseState<'static>>>,
    /// Residual-noise post-filter after RNNoise, with its floors in speech and in pauses (dB).
    post: Option<(PostFilter, (f32, f32))>,
    /// The post-filter's current floor (dB), slewed between the two.
    post_floor_db: f32,
    /// The speech detector's state, kept even when voice activity is not reported.
    detector: SpeechDetector,
    a: [f32; CHUNK_SAMPLES],
    b: [f32; CHUNK_SAMPLES],
    /// Input of the previous chunk: RNNoise's output lags its input by one chunk.
    dry: [f32; CHUNK_SAMPLES],
    far: [f32; CHUNK_SAMPLES],
    /// Weight of the unprocessed signal in the suppressor's output (slewed per chunk).
    dry_weight: f32,
    levels: LevelTracker,
    agc: Agc,
    hpf: HighPass,
    stats: CaptureStats,
}

impl std::fmt::Debug for CaptureProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureProcessor")
            .field("cfg", &self.cfg)
            .field("stats", &self.stats)
            .finish()
    }
}

impl CaptureProcessor {
    /// A processor running the stages `cfg` selects (all buffers allocated here).
    pub fn new(cfg: CaptureConfig) -> Self {
        let echo = cfg
            .echo_cancel
            .then(|| EchoCanceller::new(cfg.echo_delay_ms));
        let rnnoise = (cfg.noise_suppression.is_some() || cfg.vad || cfg.gain_control)
            .then(DenoiseState::new);
        let post = cfg
            .noise_suppression
            .and_then(SuppressionLevel::post_floors_db)
            .map(|floors| (PostFilter::new(floors.1), floors));
        CaptureProcessor {
            cfg,
            echo,
            rnnoise,
            post,
            post_floor_db: 0.0,
            detector: SpeechDetector::new(),
            a: [0.0; CHUNK_SAMPLES],
            b: [0.0; CHUNK_SAMPLES],
            dry: [0.0; CHUNK_SAMPLES],
            far: [0.0; CHUNK_SAMPLES],
            dry_weight: 0.0,
            levels: LevelTracker::default(),
            agc: Agc::default(),
            hpf: HighPass::new(),
            stats: CaptureStats::default(),
        }
    }

    /// The stages this processor runs.
    pub fn config(&self) -> &CaptureConfig {
        &self.cfg
    }

    /// Updates the echo path delay hint (device output latency + input latency, in ms).
    pub fn set_echo_delay_ms(&mut self, ms: u32) {
        self.cfg.echo_delay_ms = ms;
        if let Some(echo) = self.echo.as_mut() {
            echo.set_delay_hint_ms(ms);
        }
    }

    /// Hands in far-end audio (what the loudspeaker is about to play), a multiple of 10 ms.
    /// Call it with each playback frame before the capture frames it may echo into.
    pub fn far_end(&mut self, pcm: &[i16]) -> Result<(), CaptureError> {
        if pcm.is_empty() || !pcm.len().is_multiple_of(CHUNK_SAMPLES) {
            return Err(CaptureError::FrameLength(pcm.len()));
        }
        self.render(pcm);
        Ok(())
    }

    /// [`CaptureProcessor::far_end`] for one 20 ms frame, which cannot have a wrong length.
    pub fn far_end_frame(&mut self, frame: &[i16; FRAME_SAMPLES]) {
        self.render(frame);
    }

    /// Feeds far-end audio of a whole number of 10 ms chunks to the echo canceller.
    fn render(&mut self, pcm: &[i16]) {
        let Some(echo) = self.echo.as_mut() else {
            return;
        };
        for chunk in pcm.chunks_exact(CHUNK_SAMPLES) {
            for (f, &s) in self.far.iter_mut().zip(chunk) {
                *f = s as f32 / 32768.0;
            }
            echo.far_end(&self.far);
            self.stats.far_end_chunks += 1;
        }
    }

    /// Cleans one capture frame in place (a multiple of 10 ms) and returns whether it holds speech
    /// (the detector with hangover; `false` when the detector is off).
    pub fn process(&mut self, pcm: &mut [i16]) -> Result<bool, CaptureError> {
        if pcm.is_empty() || !pcm.len().is_multiple_of(CHUNK_SAMPLES) {
            return Err(CaptureError::FrameLength(pcm.len()));
        }
        let mut best = 0.0f32;
        for chunk in pcm.chunks_exact_mut(CHUNK_SAMPLES) {
            let p = self.process_chunk(chunk);
            best = best.max(p);
        }
        self.stats.frames += 1;
        self.stats.speech_probability = best;
        if let Some(echo) = self.echo.as_mut() {
            self.stats.erle_db = echo.erle_db();
            self.stats.echo_delay_ms = echo.delay_ms();
            self.stats.clock_drift_ppm = echo.drift_ppm();
        }
        Ok(self.stats.speech)
    }

    fn process_chunk(&mut self, chunk: &mut [i16]) -> f32 {
        for (a, &s) in self.a.iter_mut().zip(chunk.iter()) {
            *a = s as f32 / 32768.0;
        }
        if self.cfg.high_pass {
            self.hpf.process(&mut self.a);
        }
        if let Some(echo) = self.echo.as_mut() {
            echo.process(&mut self.a);
        }
        let mut prob = 0.0;
        let mut suppressed_power = 0.0;
        if let Some(rn) = self.rnnoise.as_mut() {
            // RNNoise works on the i16 scale.
            for (b, a) in self.b.iter_mut().zip(self.a.iter()) {
                *b = a * 32768.0;
            }
            let mut out = [0.0f32; CHUNK_SAMPLES];
            prob = rn.process_frame(&mut out, &self.b);
            // What is left of a chunk the echo canceller took far down is residual echo: the far
            // end's speech, which must neither open the speech detector nor raise the gain, and
            // which the post-filter should treat as noise.
            if self.echo.as_ref().is_some_and(|e| e.echo_dominated()) {
                prob = 0.0;
            }
            self.levels.observe(mean_square(&self.a), prob);
            suppressed_power = mean_square(&out) / (32768.0 * 32768.0);
            if let Some(level) = self.cfg.noise_suppression {
                // Where the noise is inaudible anyway (clean input), pass the input: RNNoise costs
                // a little speech quality even on clean speech.
                let target = level.dry_floor().max(self.levels.clean_weight());
                self.dry_weight += (target - self.dry_weight).clamp(-0.02, 0.02);
                let w = self.dry_weight;
                for ((a, o), d) in self.a.iter_mut().zip(out.iter()).zip(self.dry.iter()) {
                    *a = (o + w * (d - o)) / 32768.0;
                }
                // Keep this chunk's input to pair with RNNoise's next (one chunk late) output.
                self.dry.copy_from_slice(&self.b);
            }
        }
        if let Some((post, (speech_db, pause_db))) = self.post.as_mut() {
            // Shallow while the detector (with its hangover) hears speech, deep in the pauses,
            // 3 dB per chunk between (1 dB measured 0.00-0.03 DNSMOS lower: the pauses reach
            // their floor later); nothing where the input is clean (bypass above).
            let want = if self.detector.any_speech() {
                *speech_db
            } else {
                *pause_db
            } * (1.0 - self.dry_weight);
            self.post_floor_db += (want - self.post_floor_db).clamp(-3.0, 3.0);
            post.set_floor_db(self.post_floor_db);
            post.process(&mut self.a, prob);
        }
        if self.cfg.gain_control {
            self.agc
                .process(&mut self.a, prob >= self.cfg.vad_config.threshold);
        }
        for (s, a) in chunk.iter_mut().zip(self.a.iter()) {
            *s = (a * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
        }
        if self.rnnoise.is_some() {
            let far_heard = self.echo.as_ref().is_some_and(|e| e.far_end_heard());
            self.detector
                .observe(prob, suppressed_power, far_heard, &self.cfg.vad_config);
            self.stats.speech = self.cfg.vad && self.detector.near_speech();
        }
        prob
    }

    /// What was measured on the last frame.
    pub fn stats(&self) -> CaptureStats {
        self.stats
    }
}

fn mean_square(x: &[f32]) -> f32 {
    x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32
}

fn db(power: f32) -> f32 {
    10.0 * power.max(1e-12).log10()
}

/// Speech and noise levels of the input, from RNNoise's speech probability.
#[derive(Debug, Clone, Copy)]
struct LevelTracker {
    speech_db: f32,
    noise_db: f32,
    noise_chunks: u32,
}

impl Default for LevelTracker {
    fn default() -> Self {
        LevelTracker {
            speech_db: -26.0,
            // Until noise has been heard, assume it is there (suppress fully).
            noise_db: -40.0,
            noise_chunks: 0,
        }
    }
}

impl LevelTracker {
    fn observe(&mut self, power: f32, prob: f32) {
        let level = db(power);
        if prob > 0.7 && level > self.noise_db + 6.0 {
            self.speech_db += 0.02 * (level - self.speech_db);
        } else if prob < 0.2 {
            self.noise_chunks = self.noise_chunks.saturating_add(1);
            // Fast down, slow up: tracks the floor, ignores a passing door slam.
            let k = if level < self.noise_db { 0.2 } else { 0.02 };
            self.noise_db += k * (level - self.noise_db);
        }
    }

    /// 1 when the noise is at least 40 dB under the speech (nothing to remove), 0 below 30 dB.
    fn clean_weight(&self) -> f32 {
        if self.noise_chunks < 50 {
            return 0.0;
        }
        ((self.speech_db - self.noise_db - 30.0) / 10.0).clamp(0.0, 1.0)
    }
}

/// Automatic gain control: brings speech to [`Agc::TARGET_DB`] with a slew-limited gain that only
/// adapts on speech, and a limiter that never lets a chunk's peak clip.
#[derive(Debug, Clone, Copy)]
struct Agc {
    speech_db: f32,
    gain_db: f32,
    gain: f32,
}

impl Default for Agc {
    fn default() -> Self {
        Agc {
            speech_db: Agc::TARGET_DB,
            gain_db: 0.0,
            gain: 1.0,
        }
    }
}

impl Agc {
    /// Speech level aimed for: mean square over the chunks RNNoise calls speech, dBFS. Those
    /// include quiet syllable ends, so this reads ~3 dB under the active speech level: -29 here
    /// is -26 dBFS active, ITU-T P.56's nominal level (measured on the benchmark clips: -24 gave
    /// -21 dBFS active, and DNSMOS scored the louder output 0.02-0.14 lower).
    const TARGET_DB: f32 = -29.0;
    /// A level within this many dB of the target is left alone: a microphone already at a good
    /// level is not pumped (the gain only moves to bring the level into the band).
    const DEADBAND_DB: f32 = 4.0;
    /// Highest gain (a quiet microphone) and lowest (a loud one).
    const MAX_GAIN_DB: f32 = 30.0;
    const MIN_GAIN_DB: f32 = -12.0;
    /// Gain change per 10 ms chunk: 6 dB/s.
    const SLEW_DB: f32 = 0.06;
    const PEAK: f32 = 0.9;

    fn process(&mut self, x: &mut [f32], speech: bool) {
        if speech {
            let level = db(mean_square(x));
            self.speech_db += 0.05 * (level - self.speech_db);
            let lo = Agc::TARGET_DB - Agc::DEADBAND_DB - self.speech_db;
            let hi = Agc::TARGET_DB + Agc::DEADBAND_DB - self.speech_db;
            let want = self
                .gain_db
                .clamp(lo, hi)
                .clamp(Agc::MIN_GAIN_DB, Agc::MAX_GAIN_DB);
            self.gain_db += (want - self.gain_db).clamp(-Agc::SLEW_DB, Agc::SLEW_DB);
        }
        let mut target = 10f32.powf(self.gain_db / 20.0);
        let peak = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        if peak * target > Agc::PEAK {
            target = Agc::PEAK / peak;
            // The ramp below starts from the last gain: start it no higher than the limit.
            self.gain = self.gain.min(target);
        }
        // Ramp from the last chunk's gain to this one's: no steps.
        let step = (target - self.gain) / x.len() as f32;
        for v in x.iter_mut() {
            self.gain += step;
            *v *= self.gain;
        }
        self.gain = target;
    }
}

/// 2nd-order Butterworth high-pass at 40 Hz (RBJ cookbook biquad, direct form I). Steeper or
/// higher filters cost PESQ on clean speech through their phase response (measured with scipy on
/// the benchmark clips: 4th order at 70 Hz -0.17, 2nd order at 50 Hz -0.02).
#[derive(Debug, Clone, Copy)]
struct HighPass {
    /// Per section: b0, b1, b2, a1, a2 (a0 normalised to 1).
    coef: [[f32; 5]; 1],
    /// Per section: x1, x2, y1, y2.
    state: [[f32; 4]; 1],
}

impl HighPass {
    const CUTOFF_HZ: f32 = 40.0;

    fn new() -> Self {
        let w0 = 2.0 * std::f32::consts::PI * HighPass::CUTOFF_HZ / SAMPLE_RATE as f32;
        let coef = [std::f32::consts::FRAC_1_SQRT_2].map(|q| {
            let (sin, cos) = w0.sin_cos();
            let alpha = sin / (2.0 * q);
            let a0 = 1.0 + alpha;
            [
                (1.0 + cos) / 2.0 / a0,
                -(1.0 + cos) / a0,
                (1.0 + cos) / 2.0 / a0,
                -2.0 * cos / a0,
                (1.0 - alpha) / a0,
            ]
        });
        HighPass {
            coef,
            state: [[0.0; 4]; 1],
        }
    }

    fn process(&mut self, x: &mut [f32]) {
        for (c, st) in self.coef.iter().zip(self.state.iter_mut()) {
            for v in x.iter_mut() {
                let y = c[0] * *v + c[1] * st[0] + c[2] * st[1] - c[3] * st[2] - c[4] * st[3];
                st[1] = st[0];
                st[0] = *v;
                st[3] = st[2];
                st[2] = y;
                *v = y;
            }
        }
    }
}
