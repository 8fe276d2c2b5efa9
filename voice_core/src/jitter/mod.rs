//! The per-sender jitter buffer: packets in by arrival, exactly one 20 ms frame out per tick.
//!
//! One [`JitterBuffer`] per remote sender. It orders packets by (unwrapped) sequence number in a
//! fixed ring of slots indexed by `seq % capacity` (the ordering a `BinaryHeap` would give, with
//! O(1) insert and pop and no allocation after construction; see `benches/` for the comparison).
//!
//! Contract, tick by tick:
//! * Playout does not start until the [`PlayoutPolicy`] says so (the fixed policy's default: 2 packets).
//! * Once playing, every [`JitterBuffer::pop`] releases the next expected sequence number: the packet
//!   ([`Playout::Packet`]) or a gap ([`Playout::Missing`], which carries the following packet if it is
//!   already held, so the decoder can recover the gap from its in-band FEC).
//! * A packet older than what has been played is dropped at once and counted as late; duplicates are
//!   dropped and counted.
//! * After a talk spurt ends (its end marker played, or a run of gaps with nothing held) the buffer
//!   goes idle and waits for the watermark again, so the silence between spurts is neither
//!   concealed nor counted as loss. After a run of gaps it rewinds to just after the last packet it
//!   played: a sender that paused without an end marker (or whose packets a delay spike held back)
//!   continues from there, and those packets play once instead of being dropped as late.
//! * Memory is bounded by the ring: a packet too far ahead slides the window (dropping what falls
//!   out, counted as overflow), a depth beyond `max_depth` drops the oldest, and a run of packets far
//!   behind (a restarted sender) resynchronises the stream.
//!
//! The buffer is sans-IO and single-owner: the thread that decodes owns it; packets reach that
//! thread by queue, so the audio side never waits on the network side.

pub mod adaptive;
pub mod decision;
pub mod policy;

use std::time::Duration;

use crate::metrics::{StreamMetrics, StreamStats};
use crate::proto::udp::{Flags, MAX_PAYLOAD};
use crate::seq::{ReplayCheck, ReplayWindow, SeqUnwrapper};
use crate::time::Time;
pub use adaptive::{AdaptiveConfig, AdaptivePolicy};
pub use decision::{PacketOp, PacketStatus};
pub use policy::{BufferView, FixedWatermark, PlayoutPolicy, PolicyChoice};

/// Sizing and recovery limits of a jitter buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// Ring slots: the furthest ahead of the playout point a packet may be (64 = 1.28 s).
    pub capacity: usize,
    /// Most packets held while playing; beyond it the oldest are dropped (bounds the delay).
    pub max_depth: usize,
    /// Consecutive gaps with nothing held after which the stream counts as paused (goes idle).
    pub max_missing_run: u32,
    /// Consecutive packets further behind than `capacity` after which the sender counts as restarted.
    pub restart_after_stale: u32,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            capacity: 64,
            max_depth: 25,
            max_missing_run: 10,
            restart_after_stale: 8,
        }
    }
}

/// What [`JitterBuffer::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Held for playout.
    Buffered,
    /// Its slot has already been played (or skipped): dropped and counted late.
    Late,
    /// Already received: dropped and counted.
    Duplicate,
    /// The payload exceeds the protocol maximum: dropped.
    Oversized,
}

/// A packet released for playout, borrowed from the buffer until the next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Unwrapped sequence number.
    pub seq: u64,
    /// Wire timestamp.
    pub timestamp: u32,
    /// The timestamp unwrapped to 64 bits (as the policy sees it).
    pub timestamp_ext: u64,
    /// Header flags.
    pub flags: Flags,
    /// When the packet arrived.
    pub arrival: Time,
    /// The Opus payload.
    pub payload: &'a [u8],
}

/// What one tick of playout yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Playout<'a> {
    /// Not playing (before the watermark, or between talk spurts): output silence.
    Idle,
    /// The expected packet.
    Packet(Frame<'a>),
    /// The expected packet is lost: conceal it (the position has moved past it). `next` is the
    /// following packet if it is already held (it stays held for the next tick).
    Missing {
        /// The missing sequence number.
        seq: u64,
        /// The next packet, if held.
        next: Option<Frame<'a>>,
    },
    /// The expected packet is lost and a held packet carries redundancy for it: recover it.
    Recover {
        /// The missing sequence number.
        seq: u64,
        /// The packet carrying the redundancy (it stays held and plays in its own turn).
        from: Frame<'a>,
        /// How far ahead `from` is (1 = the next packet).
        frames_back: u32,
        /// Which redundancy to decode.
        via: Redundancy,
    },
    /// The expected packet has not arrived and nothing newer has: the stream is late, not lost.
    /// Conceal while the position stays put, so the packet still plays if it comes next.
    Stall {
        /// The awaited sequence number.
        seq: u64,
    },
}

/// The redundancy a lost frame is recovered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redundancy {
    /// Opus in-band FEC (LBRR) of the next packet.
    InBandFec,
    /// Opus deep redundancy (DRED) of a later packet.
    Dred,
}

#[derive(Debug, Clone)]
struct Slot {
    seq: Option<u64>,
    timestamp: u32,
    timestamp_ext: u64,
    flags: Flags,
    arrival: Time,
    len: u16,
    data: Box<[u8; MAX_PAYLOAD]>,
}

impl Slot {
    fn empty() -> Self {
        Slot {
            seq: None,
            timestamp: 0,
            timestamp_ext: 0,
            flags: Flags::default(),
            arrival: Time::ZERO,
            len: 0,
            data: Box::new([0; MAX_PAYLOAD]),
        }
    }

    fn frame(&self, seq: u64) -> Frame<'_> {
        Frame {
            seq,
            timestamp: self.timestamp,
            timestamp_ext: self.timestamp_ext,
            flags: self.flags,
            arrival: self.arrival,
            payload: &self.data[..usize::from(self.len)],
        }
    }
}

/// A per-sender jitter buffer. See the module documentation for the contract.
#[derive(Debug)]
pub struct JitterBuffer {
    cfg: JitterConfig,
    policy: Box<dyn PlayoutPolicy>,
    unwrap: SeqUnwrapper,
    ts_unwrap: TimestampUnwrapper,
    replay: ReplayWindow,
    slots: Box<[Slot]>,
    depth: usize,
    playing: bool,
    /// Lowest sequence number that may still be stored; while playing, the next one to play.
    base: Option<u64>,
    missing_run: u32,
    stale_run: u32,
    /// Sequence number after the last packet actually played (where a paused stream resumes).
    resume_at: Option<u64>,
    /// Frames concealed while holding the position (a stall).
    stalled: u32,
    /// Lowest sequence number seen (loss counts the range from here to the highest).
    lowest_seen: Option<u64>,
    fec: bool,
    dred_frames: u32,
    /// No more packets will come (the sender left): once what is held has played, stop.
    closed: bool,
    /// Frames concealed after `resume_at` before the last stop (not skipped when playout resumes).
    concealed_before_stop: u64,
    metrics: StreamMetrics,
}

impl JitterBuffer {
    /// A buffer with the given limits and start policy.
    pub fn new(cfg: JitterConfig, policy: Box<dyn PlayoutPolicy>) -> Self {
        let cfg = JitterConfig {
            capacity: cfg.capacity.max(4),
            max_depth: cfg.max_depth.clamp(2, cfg.capacity.max(4)),
            ..cfg
        };
        JitterBuffer {
            slots: (0..cfg.capacity).map(|_| Slot::empty()).collect(),
            cfg,
            policy,
            unwrap: SeqUnwrapper::new(),
            ts_unwrap: TimestampUnwrapper::default(),
            replay: ReplayWindow::new(),
            depth: 0,
            playing: false,
            base: None,
            missing_run: 0,
            stale_run: 0,
            resume_at: None,
            stalled: 0,
            lowest_seen: None,
            fec: true,
            dred_frames: 0,
            closed: false,
            concealed_before_stop: 0,
            metrics: StreamMetrics::new(),
        }
    }

    /// A buffer with default limits and the fixed policy's 2-packet watermark.
    pub fn with_fixed_watermark() -> Self {
        Self::new(JitterConfig::default(), Box::new(FixedWatermark::default()))
    }

    /// The start policy.
    pub fn policy(&self) -> &dyn PlayoutPolicy {
        self.policy.as_ref()
    }

    /// Packets held now.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Whether playout is running (false before the watermark and between talk spurts).
    pub fn is_playing(&self) -> bool {
        self.playing
    }

    /// The live metrics (decode-side counters are added by the owner of the decoder).
    pub fn metrics_mut(&mut self) -> &mut StreamMetrics {
        &mut self.metrics
    }

    /// A metrics snapshot as of `now`.
    pub fn stats(&mut self, now: Time) -> StreamStats {
        self.metrics.snapshot(now)
    }

    fn slot_index(&self, seq: u64) -> usize {
        (seq % self.cfg.capacity as u64) as usize
    }

    fn held(&self, seq: u64) -> bool {
        self.slots[self.slot_index(seq)].seq == Some(seq)
    }

    fn drop_slot(&mut self, seq: u64) -> bool {
        let i = self.slot_index(seq);
        if self.slots[i].seq == Some(seq) {
            self.slots[i].seq = None;
            self.depth -= 1;
            true
        } else {
            false
        }
    }

    /// Forgets the stream entirely (the sender restarted); metrics are kept.
    fn restart(&mut self) {
        for s in self.slots.iter_mut() {
            s.seq = None;
        }
        self.depth = 0;
        self.playing = false;
        self.base = None;
        self.missing_run = 0;
        self.stale_run = 0;
        self.resume_at = None;
        self.stalled = 0;
        self.lowest_seen = None;
        self.unwrap.reset();
        self.ts_unwrap = TimestampUnwrapper::default();
        self.replay.reset();
        self.metrics.counts.resyncs += 1;
    }

    /// Offers a received packet. `now` is its arrival time.
    pub fn push(
        &mut self,
        now: Time,
        seq: u16,
        timestamp: u32,
        flags: Flags,
        payload: &[u8],
    ) -> PushOutcome {
        if payload.len() > MAX_PAYLOAD {
            return PushOutcome::Oversized;
        }
        let ext = self.unwrap.peek(seq);
        match self.replay.check_and_set(ext) {
            ReplayCheck::Duplicate => {
                self.metrics.counts.packets_duplicate += 1;
                return PushOutcome::Duplicate;
            }
            ReplayCheck::TooOld | ReplayCheck::New => {}
        }
        // Far behind the playout point: a run of these means the sender restarted its sequence.
        // Decided before any accounting, so the packet that triggers the restart is counted once,
        // as the first of the new stream.
        let far_behind = self
            .base
            .is_some_and(|base| ext < base && base - ext > self.cfg.capacity as u64);
        if far_behind {
            self.stale_run += 1;
            if self.stale_run >= self.cfg.restart_after_stale {
                self.restart();
                return self.push(now, seq, timestamp, flags, payload);
            }
        }
        let prev_highest = self.unwrap.highest();
        self.unwrap.unwrap(seq);
        let mut newly_expected = match prev_highest {
            None => 1,
            Some(h) => ext.saturating_sub(h),
        };
        // A packet older than every one seen so far (the first packets of a stream arriving out
        // of order) widens the expected range downward.
        match self.lowest_seen {
            Some(l) if ext < l && l - ext < self.cfg.capacity as u64 => {
                newly_expected += l - ext;
                self.lowest_seen = Some(ext);
            }
            None => self.lowest_seen = Some(ext),
            _ => {}
        }
        self.metrics.expected += newly_expected;
        self.metrics.counts.packets_received += 1;
        self.metrics
            .loss
            .record(now, newly_expected.min(u64::from(u32::MAX)) as u32, 1);

        // Before anything has played, an earlier packet moves the start back instead of being late.
        if let Some(base) = self.base {
            if !self.playing
                && self.resume_at.is_none()
                && ext < base
                && base - ext < cap_u64(&self.cfg)
            {
                let highest = self.unwrap.highest().unwrap_or(ext);
                if highest - ext < cap_u64(&self.cfg) {
                    self.base = Some(ext);
                }
            }
        }
        if let Some(base) = self.base {
            if ext < base {
                self.metrics.counts.packets_late += 1;
                if !far_behind {
                    self.stale_run = 0;
                    // Too late to play, but its delay is exactly what the policy must learn.
                    let ts = self.ts_unwrap.unwrap(timestamp);
                    self.policy.on_arrival(now, ext, ts);
                }
                return PushOutcome::Late;
            }
        }
        self.stale_run = 0;
        let ts = self.ts_unwrap.unwrap(timestamp);
        self.metrics.jitter.record(now, ts);

        let base = *self.base.get_or_insert(ext);
        let cap = self.cfg.capacity as u64;
        if ext >= base + cap {
            // Too far ahead: slide the window so this packet fits at its top.
            let new_base = ext + 1 - cap;
            let mut dropped = 0;
            for s in base..new_base.min(base + cap) {
                if self.drop_slot(s) {
                    dropped += 1;
                }
            }
            self.metrics.counts.packets_overflow_dropped += dropped;
            self.metrics.counts.resyncs += 1;
            // Resume at the oldest packet still held (or this one): no concealing across the jump.
            let resume = self.lowest_held(new_base).map_or(ext, |held| held.min(ext));
            self.base = Some(resume);
        }
        let i = self.slot_index(ext);
        let slot = &mut self.slots[i];
        slot.seq = Some(ext);
        slot.timestamp = timestamp;
        slot.timestamp_ext = ts;
        slot.flags = flags;
        slot.arrival = now;
        slot.len = payload.len() as u16;
        slot.data[..payload.len()].copy_from_slice(payload);
        self.depth += 1;
        self.policy.on_arrival(now, ext, ts);
        let depth = self.depth as u32;
        let c = &mut self.metrics.counts;
        c.buffer_depth = depth;
        c.max_buffer_depth = c.max_buffer_depth.max(depth);
        PushOutcome::Buffered
    }

    /// Lowest held sequence number at or above `from`.
    fn lowest_held(&self, from: u64) -> Option<u64> {
        (from..from + self.cfg.capacity as u64).find(|&s| self.held(s))
    }

    fn view(&self, now: Time) -> BufferView {
        let mut oldest = now;
        let mut end = false;
        for s in self.slots.iter().filter(|s| s.seq.is_some()) {
            oldest = oldest.min(s.arrival);
            end |= s.flags.contains(Flags::END_OF_SPURT);
        }
        let next_timestamp = self
            .lowest_held(self.base.unwrap_or(0))
            .map(|s| self.slots[self.slot_index(s)].timestamp_ext);
        BufferView {
            depth: self.depth,
            oldest_wait: now.saturating_since(oldest),
            holds_end_of_spurt: end,
            next_timestamp,
        }
    }

    /// Sets what the decision may recover a missing frame from: in-band FEC (on by default) and
    /// how many frames before a packet its DRED covers (0, the default: no DRED).
    pub fn set_recovery(&mut self, fec: bool, dred_frames: u32) {
        self.fec = fec;
        self.dred_frames = dred_frames;
    }

    /// Tells the buffer that no more packets will come (the sender left): what is held still
    /// plays, and playout stops at the first gap with nothing after it instead of concealing.
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// The status snapshot [`decision::decide_packet`] decides on, as of `now`.
    pub fn status(&self, now: Time) -> PacketStatus {
        let base = self.base.unwrap_or(0);
        let next_held = self.depth > 0 && self.held(base);
        let following = if self.depth > usize::from(next_held) {
            self.lowest_held(base + 1).map(|s| s - base)
        } else {
            None
        };
        let following_has_fec = following.is_some_and(|d| {
            self.slots[self.slot_index(base + d)]
                .flags
                .contains(Flags::FEC)
        });
        PacketStatus {
            playing: self.playing,
            start_ready: !self.playing
                && self.depth > 0
                && self.policy.should_start(now, self.view(now)),
            depth: self.depth,
            next_held: self.playing && next_held,
            following: if self.playing { following } else { None },
            following_has_fec,
            dred_frames: self.dred_frames,
            fec: self.fec,
            missing_run: self.missing_run,
            stalled: self.stalled,
            max_missing_run: if self.closed {
                0
            } else {
                self.cfg.max_missing_run
            },
            hold_on_stall: self.policy.holds_on_stall(),
        }
    }

    /// Releases the next 20 ms frame at `now`: asks [`decision::decide_packet`] what to do and
    /// carries it out on the storage. With a fixed policy call exactly once per tick; a receiver
    /// that time-scales its output calls it whenever it needs the next frame (sometimes twice in
    /// a tick, sometimes not at all), so the policy controls the consumption rate.
    pub fn pop(&mut self, now: Time) -> Playout<'_> {
        // Each catch-up moves the position forward and is followed by a real decision, so this
        // loop runs at most three times.
        for _ in 0..4 {
            let status = self.status(now);
            match decision::decide_packet(&status) {
                PacketOp::Idle => return Playout::Idle,
                PacketOp::CatchUp(n) => self.catch_up(n),
                PacketOp::Stop => {
                    // The sender paused without an end marker (or it was lost, or a delay spike
                    // holds everything back): stop concealing, and resume where real audio
                    // stopped, so the packets that do come next play instead of being dropped
                    // as late.
                    self.playing = false;
                    self.stalled = 0;
                    if let Some(r) = self.resume_at {
                        self.base = Some(r);
                        // Those frames were concealed already; what lies beyond them is skipped.
                        self.concealed_before_stop = u64::from(self.missing_run);
                    }
                    return Playout::Idle;
                }
                op => return self.carry_out(now, op),
            }
        }
        Playout::Idle
    }

    /// Moves the position: from idle to the lowest held packet (`n` = 0), or over `n` frames
    /// already concealed during a stall.
    fn catch_up(&mut self, n: u64) {
        let base = self.base.unwrap_or(0);
        if !self.playing {
            let first = self.lowest_held(base).unwrap_or(base);
            if self.resume_at.is_some() {
                // Sequence numbers run on through pauses, so what lies between where audio
                // stopped and where it restarts was lost without being heard.
                self.metrics.counts.frames_skipped +=
                    first.saturating_sub(base + self.concealed_before_stop);
            }
            self.base = Some(first);
            self.concealed_before_stop = 0;
            self.playing = true;
            self.missing_run = 0;
            self.stalled = 0;
            return;
        }
        self.base = Some(base + n);
        self.stalled = 0;
    }

    fn carry_out(&mut self, now: Time, op: PacketOp) -> Playout<'_> {
        self.playing = true;
        // Bound the delay: beyond max_depth, skip the oldest held packets.
        while self.depth > self.cfg.max_depth {
            let base = self.base.unwrap_or(0);
            let Some(oldest) = self.lowest_held(base) else {
                break;
            };
            self.drop_slot(oldest);
            self.metrics.counts.packets_overflow_dropped += 1;
            self.metrics.counts.frames_skipped += oldest - base;
            self.base = Some(oldest + 1);
            self.stalled = 0;
        }
        let seq = self.base.unwrap_or(0);
        let i = self.slot_index(seq);
        self.metrics.counts.buffer_depth = self.depth as u32;
        if self.slots[i].seq == Some(seq) {
            // The expected packet (re-checked: the depth bound may have moved the position).
            self.base = Some(seq + 1);
            self.slots[i].seq = None;
            self.depth -= 1;
            self.missing_run = 0;
            self.stalled = 0;
            self.resume_at = Some(seq + 1);
            self.metrics.counts.buffer_depth = self.depth as u32;
            self.metrics.counts.frames_played += 1;
            let waited: Duration = now.saturating_since(self.slots[i].arrival);
            self.metrics.buffer_delay.record(waited);
            let ends_spurt = self.slots[i].flags.contains(Flags::END_OF_SPURT);
            if ends_spurt && !self.held(seq + 1) {
                self.playing = false;
            }
            return Playout::Packet(self.slots[i].frame(seq));
        }
        self.missing_run += 1;
        self.metrics.counts.frames_played += 1;
        match op {
            PacketOp::Expand => {
                self.stalled += 1;
                self.metrics.counts.frames_stalled += 1;
                Playout::Stall { seq }
            }
            PacketOp::Dred { frames_back } => {
                self.base = Some(seq + 1);
                let from = seq + u64::from(frames_back);
                match self.slots[self.slot_index(from)].seq {
                    Some(s) if s == from => Playout::Recover {
                        seq,
                        from: self.slots[self.slot_index(from)].frame(from),
                        frames_back,
                        via: Redundancy::Dred,
                    },
                    _ => Playout::Missing { seq, next: None },
                }
            }
            _ => {
                self.base = Some(seq + 1);
                let next_i = self.slot_index(seq + 1);
                let next = (self.slots[next_i].seq == Some(seq + 1))
                    .then(|| self.slots[next_i].frame(seq + 1));
                match (op, next) {
                    (PacketOp::Fec, Some(from)) => Playout::Recover {
                        seq,
                        from,
                        frames_back: 1,
                        via: Redundancy::InBandFec,
                    },
                    (_, next) => Playout::Missing { seq, next },
                }
            }
        }
    }
}

fn cap_u64(cfg: &JitterConfig) -> u64 {
    cfg.capacity as u64
}

/// Extends 32-bit wire timestamps to 64 bits (same serial arithmetic as sequence numbers).
#[derive(Debug, Clone, Default)]
struct TimestampUnwrapper {
    highest: Option<u64>,
}

impl TimestampUnwrapper {
    fn unwrap(&mut self, ts: u32) -> u64 {
        let ext = match self.highest {
            None => (1u64 << 33) + u64::from(ts),
            Some(h) => {
                let d = i64::from(ts.wrapping_sub(h as u32) as i32);
                (h as i64 + d) as u64
            }
        };
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        ext
    }
}
