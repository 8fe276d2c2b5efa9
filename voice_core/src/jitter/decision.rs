//! The one place that decides what playout does next, in the shape of NetEq's decision logic.
//!
//! Two pure functions over status snapshots, each returning one operation:
//!
//! * [`decide_packet`]: each time the receiver needs the next 20 ms of audio it asks what to take
//!   from storage — play the expected packet ([`PacketOp::Normal`]), recover it from the next
//!   packet's in-band FEC ([`PacketOp::Fec`]) or from a later packet's DRED
//!   ([`PacketOp::Dred`]), conceal it as lost ([`PacketOp::Conceal`]), conceal while *holding*
//!   the playout position because the stream is late rather than lost ([`PacketOp::Expand`]),
//!   skip frames already concealed during such a stall once it turns out they were lost
//!   ([`PacketOp::CatchUp`]), stop (the sender paused, [`PacketOp::Stop`]) or stay silent
//!   ([`PacketOp::Idle`]).
//! * [`decide_stretch`]: once a packet is decoded, whether to move the playout delay toward the
//!   target on this frame — shrink or grow a silent or quiet frame ([`StretchOp::ShrinkSilence`],
//!   [`StretchOp::GrowSilence`]: nobody hears a pause change by a few ms), or time-scale voiced
//!   speech ([`StretchOp::Accelerate`], [`StretchOp::PreemptiveExpand`]) only when the delay is far
//!   above the target or the buffer is about to run dry.
//!
//! The storage ([`super::JitterBuffer`]) carries packet operations out and the receiver
//! ([`crate::stream::Receiver`]) decodes and stretches; metrics are updated where operations are
//! carried out. Nothing here reads a clock or touches audio, so every rule is tested table-style.
//!
//! **Stall versus loss.** When the expected packet is missing and *nothing newer* is held, the
//! stream is late (a delay spike: packets queue up in order) more often than lost. A policy that
//! tracks transit times ([`PacketStatus::hold_on_stall`]) then conceals without advancing: if the
//! expected packet arrives next, it plays right after the concealment and no speech is lost — the
//! delay grew by the spike and comes down later in silence. If a later packet arrives first, the
//! missing ones were lost after all, and the frames already concealed stand in for them.

/// What the storage looks like when the next frame is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketStatus {
    /// Playout is running (false before the start and between talk spurts).
    pub playing: bool,
    /// When not playing: the policy would start now.
    pub start_ready: bool,
    /// Packets held.
    pub depth: usize,
    /// The expected packet is held.
    pub next_held: bool,
    /// Distance (≥ 1) from the expected sequence number to the lowest held packet after it.
    pub following: Option<u64>,
    /// The lowest held packet after the expected one (at distance `following`) carries in-band
    /// FEC, which rebuilds the frame just before it.
    pub following_has_fec: bool,
    /// Frames a later packet's DRED covers before that packet (0: no DRED in this stream).
    pub dred_frames: u32,
    /// FEC recovery is enabled.
    pub fec: bool,
    /// Consecutive frames produced without a packet (concealed, recovered, or stalled).
    pub missing_run: u32,
    /// Of those, frames concealed while holding the playout position.
    pub stalled: u32,
    /// The gap run after which an empty buffer counts as a paused sender.
    pub max_missing_run: u32,
    /// The policy holds the position when nothing newer is held (see the module docs).
    pub hold_on_stall: bool,
}

/// What to take from storage for the next frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketOp {
    /// Not playing: silence.
    Idle,
    /// Decode the expected packet (after concealment this is NetEq's *merge*: the decoder
    /// cross-fades from its concealment into the packet).
    Normal,
    /// Recover the expected frame from the next packet's in-band FEC; advance.
    Fec,
    /// Recover the expected frame from the DRED of the packet `frames_back` frames ahead; advance.
    Dred {
        /// How far ahead the packet carrying the redundancy is (1 = the next one).
        frames_back: u32,
    },
    /// Conceal the expected frame as lost; advance.
    Conceal,
    /// Conceal while holding the playout position (the stream is late, not lost).
    Expand,
    /// Advance over this many frames without playing them: they were concealed during a stall
    /// that turned out to be loss. Ask again afterwards.
    CatchUp(u64),
    /// The sender paused (nothing held for a while): stop and wait for the start condition.
    Stop,
}

/// Decides what to take from storage for the next frame.
pub fn decide_packet(s: &PacketStatus) -> PacketOp {
    if !s.playing {
        return if s.depth > 0 && s.start_ready {
            if s.next_held {
                PacketOp::Normal
            } else {
                // Playout starts at the lowest held packet; storage moves the position there.
                PacketOp::CatchUp(0)
            }
        } else {
            PacketOp::Idle
        };
    }
    if s.next_held {
        return PacketOp::Normal;
    }
    match s.following {
        // A stall ended with the next packet, which can repair the missing one: the frame
        // concealed meanwhile becomes the extra frame of delay that FEC needs anyway.
        Some(1) if s.fec && s.following_has_fec => PacketOp::Fec,
        Some(ahead) if s.stalled > 0 => {
            // A stall ended with a later packet: the frames concealed meanwhile stand in for the
            // lost ones. When they stand in for all of them, the last lost frame is kept to be
            // rebuilt from that packet's in-band FEC (as for a stall of one frame above): one
            // concealed frame of the stall stays as the frame of delay FEC needs.
            let skip = u64::from(s.stalled).min(ahead);
            if skip == ahead && ahead >= 2 && s.fec && s.following_has_fec {
                PacketOp::CatchUp(ahead - 1)
            } else {
                PacketOp::CatchUp(skip)
            }
        }
        Some(ahead) if s.dred_frames > 0 && ahead <= u64::from(s.dred_frames) => PacketOp::Dred {
            frames_back: ahead as u32,
        },
        Some(_) => PacketOp::Conceal,
        None if s.depth == 0 && s.missing_run >= s.max_missing_run => PacketOp::Stop,
        None if s.hold_on_stall => PacketOp::Expand,
        None => PacketOp::Conceal,
    }
}

/// How a decoded frame sounds, for deciding where delay may move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameClass {
    /// Silence or background noise: any amount of time can go or come.
    Silent,
    /// Well below the talker's recent level (the tail of a word, a breath).
    Quiet,
    /// Speech.
    Active,
}

/// What the receiver knows when a decoded packet could be time-scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StretchStatus {
    /// Smoothed delay of this packet relative to the fastest recent packet, minus the target, in
    /// µs (positive: more delay than needed).
    pub excess_us: i64,
    /// The frame's class.
    pub class: FrameClass,
    /// Frames since the last time voiced speech was time-scaled.
    pub since_voiced_stretch: u32,
    /// Consecutive silent frames up to and including this one (0 for a frame that is not silent).
    pub silent_run: u32,
}

/// What to do to a decoded frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StretchOp {
    /// Play it as it is.
    None,
    /// Remove part of a silent or quiet frame.
    ShrinkSilence,
    /// Lengthen a silent or quiet frame.
    GrowSilence,
    /// Remove one pitch period of voiced speech.
    Accelerate,
    /// Repeat one pitch period of voiced speech.
    PreemptiveExpand,
}

/// Surplus delay above which silent frames are shrunk (the surplus already leaves out the one
/// frame of the tick lattice that cannot be removed).
pub const SHRINK_SILENCE_US: i64 = 5_000;
/// Deficit below the target beyond which silent frames are grown.
pub const GROW_SILENCE_US: i64 = 5_000;
/// Excess delay above which voiced speech is accelerated too (far above target).
pub const ACCELERATE_US: i64 = 100_000;
/// Deficit beyond which voiced speech is expanded: a whole frame below the target, where the next
/// takes are about to run dry. A smaller deficit waits for a pause (silence grows at 5 ms): every
/// pitch period repeated inside an utterance shifts the rest of it, which listeners hear little of
/// but PESQ charges heavily (seeds 1–6 × phases 0, 10 of `wifi`, `lte`, `reorder`: +0.08, +0.12,
/// +0.14 PESQ against a 5 ms threshold, PLCMOS and concealment unchanged).
pub const EXPAND_VOICED_US: i64 = 20_000;
/// At most one voiced time-scaling per this many frames.
pub const VOICED_EVERY: u32 = 4;
/// Far above the target (a spike that drained), voiced speech may be shortened this often, like
/// NetEq's fast accelerate: the excess is audible as delay, and one pitch period in two frames is
/// still a small tempo change.
pub const VOICED_FAST_EVERY: u32 = 2;
/// Silent frames in a row before delay moves in silence (a pause, not a gap between syllables).
pub const MIN_SILENT_RUN: u32 = 8;

/// Decides whether and how to time-scale a decoded frame.
pub fn decide_stretch(s: &StretchStatus) -> StretchOp {
    // Only inside a pause: a lone low frame between words is part of the utterance.
    let quiet = s.class == FrameClass::Silent && s.silent_run >= MIN_SILENT_RUN;
    let voiced_ok = s.since_voiced_stretch >= VOICED_EVERY;
    if s.excess_us >= SHRINK_SILENCE_US && quiet {
        return StretchOp::ShrinkSilence;
    }
    if s.excess_us >= ACCELERATE_US && s.since_voiced_stretch >= VOICED_FAST_EVERY {
        return StretchOp::Accelerate;
    }
    if s.excess_us <= -GROW_SILENCE_US && quiet {
        return StretchOp::GrowSilence;
    }
    if s.excess_us <= -EXPAND_VOICED_US && voiced_ok {
        return StretchOp::PreemptiveExpand;
    }
    StretchOp::None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn playing() -> PacketStatus {
        PacketStatus {
            playing: true,
            depth: 3,
            fec: true,
            max_missing_run: 10,
            hold_on_stall: true,
            ..PacketStatus::default()
        }
    }

    #[test]
    fn packet_decisions() {
        let table: &[(PacketStatus, PacketOp)] = &[
            (PacketStatus::default(), PacketOp::Idle),
            (
                PacketStatus {
                    depth: 1,
                    start_ready: true,
                    next_held: true,
                    ..PacketStatus::default()
                },
                PacketOp::Normal,
            ),
            (
                PacketStatus {
                    depth: 1,
                    start_ready: true,
                    ..PacketStatus::default()
                },
                PacketOp::CatchUp(0),
            ),
            (
                PacketStatus {
                    next_held: true,
                    ..playing()
                },
                PacketOp::Normal,
            ),
            (
                PacketStatus {
                    following: Some(1),
                    following_has_fec: true,
                    ..playing()
                },
                PacketOp::Fec,
            ),
            (
                PacketStatus {
                    following: Some(1),
                    following_has_fec: true,
                    fec: false,
                    ..playing()
                },
                PacketOp::Conceal,
            ),
            (
                PacketStatus {
                    following: Some(3),
                    dred_frames: 5,
                    ..playing()
                },
                PacketOp::Dred { frames_back: 3 },
            ),
            (
                PacketStatus {
                    following: Some(7),
                    dred_frames: 5,
                    ..playing()
                },
                PacketOp::Conceal,
            ),
            (
                PacketStatus {
                    following: Some(4),
                    stalled: 2,
                    ..playing()
                },
                PacketOp::CatchUp(2),
            ),
            (
                PacketStatus {
                    following: Some(1),
                    stalled: 5,
                    ..playing()
                },
                PacketOp::CatchUp(1),
            ),
            // A stall that stood in for every lost frame keeps the last one for the FEC of the
            // packet after the gap…
            (
                PacketStatus {
                    following: Some(3),
                    following_has_fec: true,
                    stalled: 3,
                    ..playing()
                },
                PacketOp::CatchUp(2),
            ),
            (
                PacketStatus {
                    following: Some(3),
                    following_has_fec: true,
                    stalled: 6,
                    ..playing()
                },
                PacketOp::CatchUp(2),
            ),
            // …but not when that packet carries none, or FEC is off.
            (
                PacketStatus {
                    following: Some(3),
                    stalled: 3,
                    ..playing()
                },
                PacketOp::CatchUp(3),
            ),
            (
                PacketStatus {
                    following: Some(3),
                    following_has_fec: true,
                    fec: false,
                    stalled: 3,
                    ..playing()
                },
                PacketOp::CatchUp(3),
            ),
            (
                PacketStatus {
                    following: Some(1),
                    following_has_fec: true,
                    stalled: 1,
                    ..playing()
                },
                PacketOp::Fec,
            ),
            (
                PacketStatus {
                    depth: 0,
                    ..playing()
                },
                PacketOp::Expand,
            ),
            (
                PacketStatus {
                    depth: 0,
                    hold_on_stall: false,
                    ..playing()
                },
                PacketOp::Conceal,
            ),
            (
                PacketStatus {
                    depth: 0,
                    missing_run: 10,
                    ..playing()
                },
                PacketOp::Stop,
            ),
        ];
        for (i, (status, op)) in table.iter().enumerate() {
            assert_eq!(decide_packet(status), *op, "row {i}: {status:?}");
        }
    }

    #[test]
    fn delay_moves_in_silence_first() {
        let s = |excess_ms: i64, class, since| StretchStatus {
            excess_us: excess_ms * 1000,
            class,
            since_voiced_stretch: since,
            silent_run: match class {
                Silent => MIN_SILENT_RUN,
                _ => 0,
            },
        };
        use FrameClass::*;
        let table = [
            (s(0, Active, 10), StretchOp::None),
            (s(30, Silent, 10), StretchOp::ShrinkSilence),
            (s(30, Quiet, 10), StretchOp::None),
            (s(30, Active, 10), StretchOp::None),
            (s(120, Active, 10), StretchOp::Accelerate),
            (s(120, Active, 1), StretchOp::None),
            (s(120, Active, VOICED_FAST_EVERY), StretchOp::Accelerate),
            (s(-10, Silent, 10), StretchOp::GrowSilence),
            (s(-3, Active, 10), StretchOp::None),
            (s(-15, Active, 10), StretchOp::None),
            (s(-20, Active, 10), StretchOp::PreemptiveExpand),
            (s(-20, Active, 2), StretchOp::None),
        ];
        for (i, (status, op)) in table.iter().enumerate() {
            assert_eq!(decide_stretch(status), *op, "row {i}: {status:?}");
        }
        let between_words = StretchStatus {
            silent_run: MIN_SILENT_RUN - 1,
            ..s(30, Silent, 10)
        };
        assert_eq!(decide_stretch(&between_words), StretchOp::None);
    }
}
