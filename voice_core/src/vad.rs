//! Deciding when to transmit: push-to-talk, voice activity, or always.
//!
//! [`Transmitter`] turns "is the key held / is there speech" into per-frame decisions with
//! talk-spurt boundaries: the frame on which transmission stops is sent with the end-of-spurt flag,
//! so receivers stop at once instead of concealing. Voice activity is an energy gate with an
//! attack threshold and a hangover (trailing frames kept so word endings are not clipped), or,
//! with capture processing on, the speech detector of [`crate::capture`].

use serde::{Deserialize, Serialize};

use crate::mixer::level_dbfs;

/// How the microphone opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum TransmitMode {
    /// Only while push-to-talk is held.
    #[default]
    PushToTalk,
    /// When the input level says someone is speaking.
    VoiceActivity,
    /// Always (bots, tests).
    Continuous,
}

/// What to do with one captured frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameDecision {
    /// Do not send.
    Silent,
    /// Send.
    Send,
    /// Send, flagged as the last frame of the talk spurt.
    SendLast,
}

/// Voice-activity gate settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VadConfig {
    /// Level (dBFS) above which a frame counts as speech.
    pub threshold_dbfs: f32,
    /// Frames kept transmitting after the level falls (15 = 300 ms).
    pub hangover_frames: u32,
}

impl Default for VadConfig {
    fn default() -> Self {
        VadConfig {
            threshold_dbfs: -45.0,
            hangover_frames: 15,
        }
    }
}

/// The per-frame transmit decision state.
#[derive(Debug, Clone, Default)]
pub struct Transmitter {
    /// Current mode.
    pub mode: TransmitMode,
    /// Gate settings for [`TransmitMode::VoiceActivity`].
    pub vad: VadConfig,
    ptt: bool,
    muted: bool,
    active: bool,
    hangover: u32,
    level: f32,
}

impl Transmitter {
    /// A transmitter in `mode`.
    pub fn new(mode: TransmitMode, vad: VadConfig) -> Self {
        Transmitter {
            mode,
            vad,
            level: -100.0,
            ..Default::default()
        }
    }

    /// Push-to-talk key state.
    pub fn set_push_to_talk(&mut self, held: bool) {
        self.ptt = held;
    }

    /// Microphone mute (overrides every mode).
    pub fn set_muted(&mut self, muted: bool) {
        self.muted = muted;
    }

    /// Whether the microphone is muted.
    pub fn muted(&self) -> bool {
        self.muted
    }

    /// Whether the last decision sent a frame (the local "speaking" indicator).
    pub fn is_transmitting(&self) -> bool {
        self.active
    }

    /// Input level of the last frame in dBFS.
    pub fn input_level_dbfs(&self) -> f32 {
        self.level
    }

    /// Decides for one captured frame.
    pub fn decide(&mut self, frame: &[i16]) -> FrameDecision {
        self.decide_with_speech(frame, None)
    }

    /// Decides for one captured frame; in [`TransmitMode::VoiceActivity`], `speech` (a speech
    /// detector's verdict, hangover included: [`crate::capture`]) replaces the energy gate.
    pub fn decide_with_speech(&mut self, frame: &[i16], speech: Option<bool>) -> FrameDecision {
        self.level = level_dbfs(frame);
        let want = !self.muted
            && match self.mode {
                TransmitMode::Continuous => true,
                TransmitMode::PushToTalk => self.ptt,
                TransmitMode::VoiceActivity if speech.is_some() => speech == Some(true),
                TransmitMode::VoiceActivity => {
                    if self.level >= self.vad.threshold_dbfs {
                        self.hangover = self.vad.hangover_frames;
                        true
                    } else if self.hangover > 0 {
                        self.hangover -= 1;
                        true
                    } else {
                        false
                    }
                }
            };
        let was = self.active;
        match (was, want) {
            (_, true) => {
                self.active = true;
                FrameDecision::Send
            }
            (true, false) => {
                // Close the spurt with this frame so receivers stop cleanly.
                self.active = false;
                FrameDecision::SendLast
            }
            (false, false) => FrameDecision::Silent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_to_talk_closes_the_spurt_on_release() {
        let mut t = Transmitter::new(TransmitMode::PushToTalk, VadConfig::default());
        let f = [1000i16; 960];
        assert_eq!(t.decide(&f), FrameDecision::Silent);
        t.set_push_to_talk(true);
        assert_eq!(t.decide(&f), FrameDecision::Send);
        t.set_push_to_talk(false);
        assert_eq!(t.decide(&f), FrameDecision::SendLast);
        assert_eq!(t.decide(&f), FrameDecision::Silent);
    }

    #[test]
    fn a_speech_detector_replaces_the_energy_gate() {
        let mut t = Transmitter::new(TransmitMode::VoiceActivity, VadConfig::default());
        let loud = [10_000i16; 960];
        assert_eq!(
            t.decide_with_speech(&loud, Some(false)),
            FrameDecision::Silent
        );
        assert_eq!(
            t.decide_with_speech(&[0; 960], Some(true)),
            FrameDecision::Send
        );
        assert_eq!(
            t.decide_with_speech(&loud, Some(false)),
            FrameDecision::SendLast
        );
        // Other modes ignore it.
        t.mode = TransmitMode::Continuous;
        assert_eq!(
            t.decide_with_speech(&[0; 960], Some(false)),
            FrameDecision::Send
        );
    }

    #[test]
    fn voice_activity_has_hangover() {
        let mut t = Transmitter::new(
            TransmitMode::VoiceActivity,
            VadConfig {
                threshold_dbfs: -40.0,
                hangover_frames: 3,
            },
        );
        let loud = [8000i16; 960];
        let quiet = [3i16; 960];
        assert_eq!(t.decide(&quiet), FrameDecision::Silent);
        assert_eq!(t.decide(&loud), FrameDecision::Send);
        for _ in 0..3 {
            assert_eq!(t.decide(&quiet), FrameDecision::Send);
        }
        assert_eq!(t.decide(&quiet), FrameDecision::SendLast);
        assert_eq!(t.decide(&quiet), FrameDecision::Silent);
    }

    #[test]
    fn mute_overrides_everything() {
        let mut t = Transmitter::new(TransmitMode::Continuous, VadConfig::default());
        assert_eq!(t.decide(&[0; 960]), FrameDecision::Send);
        t.set_muted(true);
        assert_eq!(t.decide(&[0; 960]), FrameDecision::SendLast);
        assert_eq!(t.decide(&[0; 960]), FrameDecision::Silent);
    }
}
