//! The speech detector: RNNoise's per-chunk speech probability turned into "someone at the
//! microphone is talking", with attack, hangover and a gate against background voices.
//!
//! RNNoise hears speech, not *whose* speech: people talking across the room, or a TV, are speech
//! to it and held a voice-activity microphone open all the time (98 % of babble-only frames sent
//! at 10 dB SNR before this gate). What tells the user apart from them is level: the person at the
//! microphone is louder than the voices across the room. A chunk RNNoise calls speech therefore
//! also has to pass two level tests on the noise suppressor's output (stationary noise removed,
//! levels smoothed over ~50 ms):
//!
//! * **above the floor**: at least [`FLOOR_MARGIN_DB`] (10 dB) over the lowest level of the last
//!   4–5 s — the lulls of a background of voices; in a quiet room or in stationary noise that
//!   floor is the suppressed silence, far below any speech;
//! * **and near the talker**: at most [`SpeechVadConfig::background_margin_db`] (6 dB) under the
//!   talker's level — a peak tracker of speech chunks that rises at once and falls by 0.5 dB/s,
//!   so it follows a user who moves away from the microphone within seconds — unless the chunk
//!   stands [`CLEAR_MARGIN_DB`] (25 dB) over the floor: no background is that far above its own
//!   lulls, and this keeps the onsets of words, which rise through the talker's level from below,
//!   in quiet rooms and stationary noise.
//!
//! The talker's level is learnt only while the far end is silent: during far-end speech the voice
//! the microphone hears may be the echo, loud before the canceller has converged. The levels are
//! tested at the higher of the chunk's own and the smoothed one (an onset is not held back by the
//! smoothing). Quieter syllables inside an utterance stay open through the hangover. A second
//! person at the same microphone at a similar level is not background and passes; a background
//! that starts before the user has said anything has no talker level to stand under and must pass
//! the floor test alone.
//!
//! Measured with `benches/apm` (three espeak-ng clips, speech frames sent / noise-only frames
//! sent, before → after): at 10 dB SNR babble 100 / 98.4 % → 96.6 / 0 %, hum and fan 97.2 / 2.1 %
//! → 97.2 / 0 %, white 97.6 / 0 % → 97.2 / 0 %, pink unchanged (97.5 / 0 %), clean speech 99.1 %
//! unchanged; at 0 dB SNR white 97.0 / 4.8 % → 95.8 / 0.5 %, fan 94.1 / 6.4 % → 93.0 / 0.5 %.

use super::SpeechVadConfig;

/// Chunks (10 ms) per block of the sliding minimum, and blocks in the window: the floor is the
/// lowest smoothed level over the last 4–5 s.
const FLOOR_BLOCK_CHUNKS: u32 = 100;
const FLOOR_BLOCKS: usize = 5;
/// One-pole smoothing of the chunk power (per 10 ms chunk): about 50 ms, so the floor is a
/// lull in the background, not a single quiet chunk between two syllables.
const LEVEL_SMOOTHING: f32 = 0.8;
/// A speech chunk must stand this far (dB) above the floor.
const FLOOR_MARGIN_DB: f32 = 10.0;
/// A speech chunk this far (dB) above the floor is the talker's whatever the talker's level:
/// no background of voices has lulls that deep under its own peaks.
const CLEAR_MARGIN_DB: f32 = 25.0;
/// The talker level's rise towards a louder speech chunk (per chunk), and its fall per chunk
/// otherwise (0.5 dB/s).
const TALKER_ATTACK: f32 = 0.3;
const TALKER_RELEASE_DB: f32 = 0.005;

/// The lowest smoothed level (dB) over the last [`FLOOR_BLOCKS`] blocks.
#[derive(Debug, Clone, Copy)]
struct Floor {
    smoothed: f32,
    blocks: [f32; FLOOR_BLOCKS],
    chunks: u32,
}

impl Floor {
    fn new() -> Self {
        Floor {
            smoothed: 0.0,
            blocks: [f32::INFINITY; FLOOR_BLOCKS],
            chunks: 0,
        }
    }

    /// Takes one chunk's mean-square power; returns its smoothed level (dB) and the floor (dB)
    /// before it.
    fn observe(&mut self, power: f32) -> (f32, f32) {
        self.smoothed = LEVEL_SMOOTHING * self.smoothed + (1.0 - LEVEL_SMOOTHING) * power;
        let level = 10.0 * self.smoothed.max(1e-12).log10();
        let floor = self.blocks.iter().copied().fold(f32::INFINITY, f32::min);
        let block = (self.chunks / FLOOR_BLOCK_CHUNKS) as usize % FLOOR_BLOCKS;
        if self.chunks.is_multiple_of(FLOOR_BLOCK_CHUNKS) {
            self.blocks[block] = f32::INFINITY;
        }
        // The smoother starts from zero: its first chunks would read as a deep lull.
        if self.chunks >= 5 {
            self.blocks[block] = self.blocks[block].min(level);
        }
        self.chunks = self.chunks.wrapping_add(1);
        (level, floor)
    }
}

/// Attack and hangover over per-chunk verdicts.
#[derive(Debug, Clone, Copy, Default)]
struct Hysteresis {
    run: u32,
    hangover: u32,
    open: bool,
}

impl Hysteresis {
    fn step(&mut self, speech: bool, cfg: &SpeechVadConfig) -> bool {
        self.run = if speech {
            self.run.saturating_add(1)
        } else {
            0
        };
        if self.run >= cfg.attack_chunks.max(1) {
            self.hangover = cfg.hangover_chunks;
            self.open = true;
        } else if self.hangover > 0 {
            self.hangover -= 1;
        } else {
            self.open = false;
        }
        self.open
    }
}

/// The detector's state. See the module documentation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpeechDetector {
    floor: Floor,
    /// Any speech, background voices included (drives the post-filter's floors).
    any: Hysteresis,
    /// Speech above the background: the verdict the microphone opens on.
    near: Hysteresis,
    /// The talker's level (dB): a peak tracker over speech chunks.
    talker_db: f32,
}

impl SpeechDetector {
    pub(crate) fn new() -> Self {
        SpeechDetector {
            floor: Floor::new(),
            any: Hysteresis::default(),
            near: Hysteresis::default(),
            talker_db: -120.0,
        }
    }

    /// One 10 ms chunk: RNNoise's speech probability, the mean-square power (±1.0 scale) of the
    /// noise suppressor's output, and whether the far end played within the echo canceller's
    /// span (then the voice heard may be its echo, whose level is not the talker's).
    pub(crate) fn observe(
        &mut self,
        prob: f32,
        power: f32,
        far_heard: bool,
        cfg: &SpeechVadConfig,
    ) {
        let (smoothed, floor) = self.floor.observe(power);
        // Tests use the faster of the chunk's own level and the smoothed one, so an onset is not
        // held back by the smoothing; the floor and the talker level use the smoothed one.
        let level = smoothed.max(10.0 * power.max(1e-12).log10());
        let speech = prob >= cfg.threshold;
        if speech && !far_heard && smoothed > self.talker_db {
            self.talker_db += TALKER_ATTACK * (smoothed - self.talker_db);
        } else {
            self.talker_db -= TALKER_RELEASE_DB;
        }
        let above = cfg.background_margin_db <= 0.0
            || ((level >= self.talker_db - cfg.background_margin_db
                || level >= floor + CLEAR_MARGIN_DB)
                // No floor yet (the first 50 ms of a stream): not yet known to be above it.
                && level >= floor + FLOOR_MARGIN_DB);
        self.any.step(speech, cfg);
        self.near.step(speech && above, cfg);
    }

    /// Whether someone is speaking, background voices included (with hangover).
    pub(crate) fn any_speech(&self) -> bool {
        self.any.open
    }

    /// Whether someone near the microphone is speaking (with hangover): what opens it.
    pub(crate) fn near_speech(&self) -> bool {
        self.near.open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn power_db(db: f32) -> f32 {
        10f32.powf(db / 10.0)
    }

    /// Babble: speech probability high all the time, the level wandering -40 ± 4 dB over about
    /// a second.
    fn babble_db(i: u32) -> f32 {
        -40.0 + 4.0 * (i as f32 * 0.06).sin()
    }

    /// A steady background of voices 10 dB under the talker: it does not open the microphone,
    /// neither before the talker has spoken nor after; the talker does; with the gate off the
    /// background does too.
    #[test]
    fn background_voices_below_the_talker_do_not_open_the_microphone() {
        let cfg = SpeechVadConfig::default();
        let off = SpeechVadConfig {
            background_margin_db: 0.0,
            ..cfg
        };
        let mut gated = SpeechDetector::new();
        let mut plain = SpeechDetector::new();
        let mut opened = 0;
        for i in 0..1000 {
            gated.observe(0.95, power_db(babble_db(i)), false, &cfg);
            plain.observe(0.95, power_db(babble_db(i)), false, &off);
            // The floor has seen a whole lull after about a second.
            if i >= 150 && gated.near_speech() {
                opened += 1;
            }
        }
        assert_eq!(opened, 0, "babble alone opened the microphone");
        assert!(gated.any_speech() && plain.near_speech());
        // The talker, 10 dB over the background's mean, for a second.
        let mut talked = 0;
        for _ in 0..100 {
            gated.observe(0.95, power_db(-30.0), false, &cfg);
            talked += u32::from(gated.near_speech());
        }
        assert!(
            talked >= 95,
            "the talker opened it on {talked} of 100 chunks"
        );
        // The talker pauses: once the hangover has run out the background keeps it shut.
        let mut opened = 0;
        for i in 0..500 {
            gated.observe(0.95, power_db(babble_db(i)), false, &cfg);
            if i >= SpeechVadConfig::default().hangover_chunks + 10 && gated.near_speech() {
                opened += 1;
            }
        }
        assert_eq!(
            opened, 0,
            "babble in the talker's pause opened the microphone"
        );
    }

    /// Loud speech while the far end plays may be its echo: it does not set the talker's level,
    /// so the quieter user who speaks next (over a background of voices) still opens the
    /// microphone.
    #[test]
    fn echo_of_the_far_end_is_not_taken_for_the_talker() {
        let cfg = SpeechVadConfig::default();
        let background = |i: u32| -50.0 + 4.0 * (i as f32 * 0.06).sin();
        let run = |far_heard: bool| {
            let mut d = SpeechDetector::new();
            for i in 0..600 {
                d.observe(0.95, power_db(background(i)), false, &cfg);
            }
            // The far end's echo, 20 dB over the background, for 2 s.
            for _ in 0..200 {
                d.observe(0.95, power_db(-30.0), far_heard, &cfg);
            }
            for i in 0..100 {
                d.observe(0.95, power_db(background(i)), false, &cfg);
            }
            // The user, 8 dB over the background and 12 dB under the echo.
            (0..100)
                .filter(|_| {
                    d.observe(0.95, power_db(-42.0), false, &cfg);
                    d.near_speech()
                })
                .count()
        };
        assert!(
            run(true) >= 95,
            "the user was heard on {} of 100",
            run(true)
        );
        // Had the echo been the talker, the user would be background.
        assert!(run(false) <= 40, "{}", run(false));
    }

    /// Stationary noise the suppressor removed leaves a floor far below speech: quiet speech
    /// still opens the detector at once after its attack.
    #[test]
    fn after_suppressed_noise_quiet_speech_opens_at_once() {
        let cfg = SpeechVadConfig::default();
        let mut d = SpeechDetector::new();
        for _ in 0..500 {
            d.observe(0.05, power_db(-75.0), false, &cfg);
        }
        assert!(!d.near_speech());
        d.observe(0.9, power_db(-50.0), false, &cfg);
        d.observe(0.9, power_db(-50.0), false, &cfg);
        assert!(d.near_speech());
    }
}
