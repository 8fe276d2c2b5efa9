//! When playout starts: the watermark as a replaceable policy object.
//!
//! The buffer asks its policy, each tick while it is not playing, whether to start; the policy sees
//! a [`BufferView`] and every arrival. [`FixedWatermark`] is the simplest policy (start once N packets
//! are held, 2 by default = 40 ms). An adaptive policy implements the same trait, so the buffer does
//! not change when the policy does. [`PolicyChoice`] names them for `--policy` and configs; the
//! adaptive one ([`super::adaptive`]) is the default.

use std::fmt::Debug;
use std::time::Duration;

use super::adaptive::{AdaptiveConfig, AdaptivePolicy};
use crate::time::Time;
use crate::FRAME_DURATION;

/// What a policy may look at when deciding to start playout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferView {
    /// Packets held.
    pub depth: usize,
    /// How long the oldest held packet has waited.
    pub oldest_wait: Duration,
    /// A held packet ends its talk spurt (so no more packets of it are coming).
    pub holds_end_of_spurt: bool,
    /// Unwrapped 48 kHz timestamp of the packet playout would start with.
    pub next_timestamp: Option<u64>,
}

/// Decides when a jitter buffer starts (or restarts) playout.
pub trait PlayoutPolicy: Debug + Send {
    /// Short name for logs and JSON (`"fixed"`, `"adaptive"`).
    fn name(&self) -> &'static str;

    /// Called for every packet accepted into the buffer, with its unwrapped sequence number and
    /// its unwrapped 48 kHz timestamp.
    fn on_arrival(&mut self, now: Time, seq: u64, timestamp: u64);

    /// Whether to start playout now.
    fn should_start(&self, now: Time, view: BufferView) -> bool;

    /// The delay the policy is aiming for.
    fn target_delay(&self) -> Duration;

    /// How late, relative to the fastest recent packet, the frame with unwrapped timestamp
    /// `timestamp` is when it plays at `now`, in microseconds (negative: earlier than the fastest
    /// packet could have arrived).
    ///
    /// `None` (the default) means the policy does not track transit times: the receiver then
    /// never time-scales and plays exactly one packet per tick. A policy that returns `Some` asks
    /// the receiver to keep this value at or above [`PlayoutPolicy::target_delay`], and no more
    /// than one frame above it, by shortening or lengthening the output.
    fn schedule_delay(&self, _now: Time, _timestamp: u64) -> Option<i64> {
        None
    }

    /// Whether a missing packet with nothing newer held is waited for (concealing without
    /// advancing, see [`super::decision`]) rather than given up at once. Policies that time-scale
    /// say yes: they can take the extra delay back out later.
    fn holds_on_stall(&self) -> bool {
        false
    }
}

/// Start once `packets` packets are held (the default: 2 packets = 40 ms).
///
/// Two exceptions keep short utterances audible: a talk spurt whose last packet is already held
/// starts at once (nothing more is coming to wait for), and a partial spurt whose oldest packet has
/// waited twice the watermark starts anyway (its end marker was lost).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedWatermark {
    packets: usize,
}

impl FixedWatermark {
    /// The seed default: 2 packets.
    pub const DEFAULT_PACKETS: usize = 2;

    /// A watermark of `packets` (at least 1).
    pub fn new(packets: usize) -> Self {
        FixedWatermark {
            packets: packets.max(1),
        }
    }
}

impl Default for FixedWatermark {
    fn default() -> Self {
        Self::new(Self::DEFAULT_PACKETS)
    }
}

impl PlayoutPolicy for FixedWatermark {
    fn name(&self) -> &'static str {
        "fixed"
    }

    fn on_arrival(&mut self, _now: Time, _seq: u64, _timestamp: u64) {}

    fn should_start(&self, _now: Time, view: BufferView) -> bool {
        view.depth >= self.packets
            || (view.depth > 0
                && (view.holds_end_of_spurt || view.oldest_wait >= 2 * self.target_delay()))
    }

    fn target_delay(&self) -> Duration {
        FRAME_DURATION * self.packets as u32
    }
}

/// A playout policy by name, as `--policy` and configs choose it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyChoice {
    /// A fixed watermark of this many packets.
    Fixed(usize),
    /// The adaptive target delay with time-scale modification (the default).
    Adaptive(AdaptiveConfig),
}

impl Default for PolicyChoice {
    fn default() -> Self {
        PolicyChoice::Adaptive(AdaptiveConfig::default())
    }
}

impl PolicyChoice {
    /// The names [`PolicyChoice::parse`] accepts.
    pub const NAMES: &'static [&'static str] = &["adaptive", "fixed"];

    /// Parses a `--policy` value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "fixed" => Some(PolicyChoice::Fixed(FixedWatermark::DEFAULT_PACKETS)),
            "adaptive" => Some(PolicyChoice::Adaptive(AdaptiveConfig::default())),
            _ => None,
        }
    }

    /// A fresh policy object.
    pub fn build(self) -> Box<dyn PlayoutPolicy> {
        match self {
            PolicyChoice::Fixed(n) => Box::new(FixedWatermark::new(n)),
            PolicyChoice::Adaptive(cfg) => Box::new(AdaptivePolicy::new(cfg)),
        }
    }
}
