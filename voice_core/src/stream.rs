//! One voice stream end to end: [`Sender`] (PCM → datagrams) and [`Receiver`] (datagrams → PCM).
//!
//! These are the sans-IO building blocks that the client engine keeps one of per remote sender and
//! that `voice-sim` and the C "stream" API drive directly: time is an argument, buffers are the
//! caller's, nothing here touches a socket or a clock.

use std::time::Duration;

use crate::codec::{CodecError, Decoder, DredRecovery, Encoder, EncoderConfig, MAX_PACKET};
use crate::jitter::decision::{self, FrameClass, StretchStatus};
use crate::jitter::{JitterBuffer, JitterConfig, Playout, PlayoutPolicy, PushOutcome, Redundancy};
use crate::metrics::StreamStats;
use crate::proto::udp::{self, DatagramKind, Flags, Header, Position, TagKey, UdpError};
use crate::proto::SessionToken;
use crate::time::Time;
use crate::tsm::{self, Stretch};
use crate::{FRAME_DURATION, FRAME_SAMPLES};

/// Encodes 20 ms frames and wraps them in voice datagrams with sequence numbers and timestamps.
#[derive(Debug)]
pub struct Sender {
    encoder: Encoder,
    session: SessionToken,
    seq: u16,
    timestamp: u32,
    in_spurt: bool,
    payload: [u8; MAX_PACKET],
    position: Option<Position>,
    tag_key: TagKey,
}

/// A sender failure.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Encoding failed.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// Writing the datagram failed (output buffer too small).
    #[error(transparent)]
    Wire(#[from] UdpError),
    /// End-to-end sealing failed.
    #[error(transparent)]
    Seal(#[from] crate::e2ee::E2eeError),
}

impl Sender {
    /// A sender for `session` with the given encoder settings.
    pub fn new(session: SessionToken, config: EncoderConfig) -> Result<Self, CodecError> {
        Ok(Sender {
            encoder: Encoder::new(config)?,
            session,
            seq: 0,
            timestamp: 0,
            in_spurt: false,
            payload: [0; MAX_PACKET],
            position: None,
            tag_key: TagKey::UNKEYED,
        })
    }

    /// Starts numbering from `seq` and `timestamp` (random starting points hide stream age).
    pub fn with_start(mut self, seq: u16, timestamp: u32) -> Self {
        self.seq = seq;
        self.timestamp = timestamp;
        self
    }

    /// The key that tags every datagram from now on (the session's, derived from its `Welcome`
    /// secret; [`TagKey::UNKEYED`] until set, for streams no relay checks).
    pub fn set_tag_key(&mut self, key: TagKey) {
        self.tag_key = key;
    }

    /// Changes the session token (after a reconnect).
    pub fn set_session(&mut self, session: SessionToken) {
        self.session = session;
    }

    /// Puts `position` on every following datagram (positional block), or stops with `None`.
    /// A non-finite position is refused with [`UdpError::BadPosition`] and changes nothing.
    pub fn set_position(&mut self, position: Option<Position>) -> Result<(), UdpError> {
        if position.is_some_and(|p| !p.is_finite()) {
            return Err(UdpError::BadPosition);
        }
        self.position = position;
        Ok(())
    }

    /// The position put on datagrams, if any.
    pub fn position(&self) -> Option<Position> {
        self.position
    }

    /// The encoder, to change its settings.
    pub fn encoder_mut(&mut self) -> &mut Encoder {
        &mut self.encoder
    }

    /// The sequence number the next datagram will carry.
    pub fn next_seq(&self) -> u16 {
        self.seq
    }

    /// Encodes one frame and writes a complete datagram to `out`, returning its length.
    ///
    /// `target` is [`SessionToken::NONE`] for the channel or a whisper recipient. Set
    /// `end_of_spurt` on the last frame before transmission stops (push-to-talk released,
    /// voice activity ended). On error nothing is consumed: sequence and timestamp stay put.
    pub fn encode(
        &mut self,
        pcm: &[i16],
        target: SessionToken,
        end_of_spurt: bool,
        out: &mut [u8],
    ) -> Result<usize, SendError> {
        let enc = self.encoder.encode(pcm, &mut self.payload)?;
        let header = self.voice_header(Flags::default(), target, end_of_spurt, enc.has_fec);
        let n = udp::write_positional(
            &header,
            self.position,
            &self.payload[..enc.len],
            &self.tag_key,
            out,
        )?;
        self.in_spurt = !end_of_spurt;
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(FRAME_SAMPLES as u32);
        Ok(n)
    }

    /// Like [`Sender::encode`], but the payload is sealed end to end by `seal` (called with the
    /// header bytes and the positional block, if any, as metadata, the Opus payload, and the space
    /// after them, short of the tag) and the header carries [`Flags::ENCRYPTED`]. On error nothing is consumed and `out` is untouched.
    pub fn encode_sealed(
        &mut self,
        pcm: &[i16],
        target: SessionToken,
        end_of_spurt: bool,
        seal: &mut crate::e2ee::SealFn<'_>,
        out: &mut [u8],
    ) -> Result<usize, SendError> {
        let enc = self.encoder.encode(pcm, &mut self.payload)?;
        let header = self.voice_header(Flags::ENCRYPTED, target, end_of_spurt, enc.has_fec);
        // The SFrame metadata is everything before the payload: the header and, when a
        // position is set, the positional block (so the position is authenticated end to end).
        let mut head = [0u8; udp::MAX_METADATA];
        let meta_len = udp::write_metadata(&header, self.position, &mut head)?;
        let room = out.len().min(udp::MAX_DATAGRAM);
        if room < meta_len + udp::TAG_LEN {
            return Err(UdpError::BufferTooSmall {
                need: meta_len + udp::TAG_LEN,
                have: out.len(),
            }
            .into());
        }
        let n = seal(
            &head[..meta_len],
            &self.payload[..enc.len],
            &mut out[meta_len..room - udp::TAG_LEN],
        )?;
        out[..meta_len].copy_from_slice(&head[..meta_len]);
        // The datagram tag over header, positional block and sealed payload, last, as for every
        // datagram.
        let body = meta_len + n;
        let tag = self.tag_key.tag(&out[..body]);
        out[body..body + udp::TAG_LEN].copy_from_slice(&tag);
        self.in_spurt = !end_of_spurt;
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(FRAME_SAMPLES as u32);
        Ok(body + udp::TAG_LEN)
    }

    /// The header of the next voice datagram: `flags` plus the talk-spurt and FEC flags.
    fn voice_header(
        &self,
        mut flags: Flags,
        target: SessionToken,
        end_of_spurt: bool,
        has_fec: bool,
    ) -> Header {
        if !self.in_spurt {
            flags = flags.with(Flags::START_OF_SPURT);
        }
        if end_of_spurt {
            flags = flags.with(Flags::END_OF_SPURT);
        }
        if has_fec {
            flags = flags.with(Flags::FEC);
        }
        Header {
            kind: DatagramKind::Voice,
            flags,
            seq: self.seq,
            timestamp: self.timestamp,
            sender: self.session,
            target,
        }
    }

    /// Lets one frame period pass without sending (silence between spurts): the timestamp keeps
    /// running, the sequence number does not, so the receiver sees no loss.
    pub fn skip_frame(&mut self) {
        self.in_spurt = false;
        self.timestamp = self.timestamp.wrapping_add(FRAME_SAMPLES as u32);
    }
}

/// How a played frame was produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameSource {
    /// Not playing: silence.
    Silence,
    /// Decoded from its own packet.
    Packet,
    /// Recovered from redundancy: the next packet's in-band FEC or a later packet's DRED.
    Fec,
    /// Concealed (PLC).
    Concealed,
}

/// Most frames one tick can consume (two when shortening, plus headroom).
const MAX_POPS: usize = 4;
/// Capacity of the output buffer: what one tick can leave behind plus the longest stretched frame.
const OUT_CAP: usize = FRAME_SAMPLES + tsm::MAX_OUTPUT;
/// Weight 1/N of each new packet in the smoothed slack.
const SLACK_SMOOTHING: i64 = 8;
/// A slack this far from the smoothed value replaces it at once.
const SLACK_JUMP_US: i64 = 60_000;
/// A frame this far (in amplitude) below the talker's recent level counts as quiet.
const QUIET_RATIO: f64 = 0.03;
/// Per-frame decay of the talker level tracker (about −1 dB per second).
const LEVEL_DECAY: f64 = 0.9977;

/// One remote sender's receive path: jitter buffer, Opus decoder (packet / FEC / PLC) and metrics.
///
/// Every [`Receiver::tick`] returns exactly one 20 ms frame. What to take from the jitter buffer
/// and whether to time-scale a decoded frame are decided in one place,
/// [`crate::jitter::decision`]; the receiver carries the decisions out and counts them.
///
/// With a policy that tracks transit times (the adaptive one) the receiver keeps a small output
/// buffer of decoded samples and time-scales decoded frames ([`crate::tsm`]) to move the playout
/// delay toward the policy's target — in silence and quiet frames first, in voiced speech only
/// when far above the target or about to run dry: it takes a frame from the jitter buffer
/// whenever the output buffer holds less than one frame, which is sometimes twice in a tick
/// (shortening) and sometimes not at all (lengthening). With the fixed policy it decodes exactly
/// one packet per tick.
#[derive(Debug)]
pub struct Receiver {
    buffer: JitterBuffer,
    decoder: Decoder,
    use_fec: bool,
    concealing: bool,
    last_source: FrameSource,
    out: Box<[i16; OUT_CAP]>,
    out_len: usize,
    since_voiced_stretch: u32,
    pops: [(u64, FrameSource); MAX_POPS],
    /// Exponentially smoothed slack (µs) that the time-scaling decisions use.
    smoothed_slack: Option<i64>,
    /// For each pop of the last tick: samples of earlier audio queued ahead of it.
    leads: [usize; MAX_POPS],
    n_pops: usize,
    /// The talker's recent level (RMS of active frames, slowly decaying).
    level: f64,
    /// Consecutive silent decoded frames.
    silent_run: u32,
    /// The DRED decoder (None: DRED recovery off).
    dred: Option<Box<DredRecovery>>,
    /// Sequence number of the packet whose DRED was parsed last.
    dred_parsed: Option<u64>,
}

/// How many frames back the decision may ask DRED for: the longest history senders put in a
/// packet ([`crate::codec::loss_plan`]: 400 ms). A packet whose DRED reaches less is found out
/// when it is parsed, and the frame is concealed instead.
pub const DRED_MAX_FRAMES: u32 = 20;

impl Receiver {
    /// A receiver with the given jitter-buffer limits and playout policy.
    pub fn new(config: JitterConfig, policy: Box<dyn PlayoutPolicy>) -> Result<Self, CodecError> {
        Ok(Receiver {
            buffer: JitterBuffer::new(config, policy),
            decoder: Decoder::new()?,
            use_fec: true,
            concealing: false,
            last_source: FrameSource::Silence,
            out: Box::new([0; OUT_CAP]),
            out_len: 0,
            since_voiced_stretch: u32::MAX,
            pops: [(0, FrameSource::Silence); MAX_POPS],
            leads: [0; MAX_POPS],
            smoothed_slack: None,
            n_pops: 0,
            level: 0.0,
            silent_run: 0,
            dred: Some(Box::new(DredRecovery::new()?)),
            dred_parsed: None,
        }
        .with_recovery())
    }

    fn with_recovery(mut self) -> Self {
        self.apply_recovery();
        self
    }

    /// Tells the jitter buffer what the decision may recover from (FEC, DRED).
    fn apply_recovery(&mut self) {
        let dred = if self.dred.is_some() {
            DRED_MAX_FRAMES
        } else {
            0
        };
        self.buffer.set_recovery(self.use_fec, dred);
    }

    /// Turns recovery from senders' deep redundancy (DRED) on (the default) or off.
    pub fn set_dred(&mut self, on: bool) -> Result<(), CodecError> {
        if on && self.dred.is_none() {
            self.dred = Some(Box::new(DredRecovery::new()?));
        } else if !on {
            self.dred = None;
        }
        self.dred_parsed = None;
        self.apply_recovery();
        Ok(())
    }

    /// Turns FEC recovery on or off (off: every gap is concealed).
    pub fn set_fec(&mut self, on: bool) {
        self.use_fec = on;
        self.apply_recovery();
    }

    /// The jitter buffer.
    pub fn buffer(&self) -> &JitterBuffer {
        &self.buffer
    }

    /// Offers a parsed voice datagram that arrived at `now`.
    pub fn handle_datagram(&mut self, now: Time, header: &Header, payload: &[u8]) -> PushOutcome {
        self.buffer
            .push(now, header.seq, header.timestamp, header.flags, payload)
    }

    /// How the most recent frame was produced.
    pub fn last_source(&self) -> FrameSource {
        self.last_source
    }

    /// The frames taken from the jitter buffer during the last [`Receiver::tick`], in order:
    /// unwrapped sequence number and how each was produced (empty if the tick only drained the
    /// output buffer or was silent).
    pub fn last_frames(&self) -> &[(u64, FrameSource)] {
        &self.pops[..self.n_pops]
    }

    /// When each of [`Receiver::last_frames`] is heard, relative to the start of the last tick:
    /// decoded audio queued ahead of a frame delays it by that much.
    pub fn last_frame_leads(&self) -> impl Iterator<Item = Duration> + '_ {
        self.leads[..self.n_pops]
            .iter()
            .map(|&n| Duration::from_micros(n as u64 * 1_000_000 / u64::from(crate::SAMPLE_RATE)))
    }

    /// Decoded samples waiting to be played (0 with the fixed policy at every tick boundary).
    pub fn buffered_samples(&self) -> usize {
        self.out_len
    }

    /// The sender left: what is buffered still plays, nothing is concealed after it.
    pub fn close(&mut self) {
        self.buffer.close();
    }

    /// Whether the receiver has nothing left to play: no decoded samples queued, no packet held
    /// and playout stopped. A sender that left can be forgotten once this holds.
    pub fn is_drained(&self) -> bool {
        self.out_len == 0 && self.buffer.depth() == 0 && !self.buffer.is_playing()
    }

    /// Produces the frame for the tick at `now` into `out` (exactly one 20 ms frame).
    ///
    /// Returns the unwrapped sequence number of the last frame taken from the jitter buffer in
    /// this tick (if any) with how the tick's audio was produced: the worst source among the
    /// frames taken (concealed before FEC before packet), the previous frame's source when the
    /// tick only drained decoded samples, or silence. Never fails: a payload that does not decode
    /// is concealed and counted.
    pub fn tick(
        &mut self,
        now: Time,
        out: &mut [i16; FRAME_SAMPLES],
    ) -> (FrameSource, Option<u64>) {
        self.n_pops = 0;
        let had = self.out_len;
        let mut frame = [0i16; FRAME_SAMPLES];
        while self.out_len < FRAME_SAMPLES && self.n_pops < MAX_POPS {
            // The frame taken now is heard after the decoded samples already queued: delay
            // measurements use that playout instant, not the tick's start.
            let lead = self.out_len;
            let plays_at = now
                + Duration::from_micros(lead as u64 * 1_000_000 / u64::from(crate::SAMPLE_RATE));
            let Some((source, seq, ts)) = self.next_frame(plays_at, &mut frame) else {
                break;
            };
            self.pops[self.n_pops] = (seq, source);
            self.leads[self.n_pops] = lead;
            self.n_pops += 1;
            let stretch = match (source, ts) {
                (FrameSource::Packet, Some(ts)) => self.stretch_for(now, ts, lead, &frame),
                _ => None,
            };
            self.append(&frame, stretch);
        }
        let n = self.out_len.min(FRAME_SAMPLES);
        out[..n].copy_from_slice(&self.out[..n]);
        out[n..].fill(0);
        self.out.copy_within(n..self.out_len, 0);
        self.out_len -= n;

        let worst = self.pops[..self.n_pops]
            .iter()
            .map(|p| p.1)
            .max_by_key(|s| match s {
                FrameSource::Silence => 0,
                FrameSource::Packet => 1,
                FrameSource::Fec => 2,
                FrameSource::Concealed => 3,
            });
        let result = match worst {
            Some(s) => s,
            None if had > 0 => self.last_source,
            None => FrameSource::Silence,
        };
        self.last_source = result;
        (result, self.pops[..self.n_pops].last().map(|p| p.0))
    }

    /// Classifies a decoded frame against the talker's recent level.
    fn classify(&mut self, frame: &[i16; FRAME_SAMPLES]) -> FrameClass {
        let rms = tsm::rms(frame);
        self.level = (self.level * LEVEL_DECAY).max(rms);
        if rms < tsm::SILENCE_RMS {
            FrameClass::Silent
        } else if rms < self.level * QUIET_RATIO {
            FrameClass::Quiet
        } else {
            FrameClass::Active
        }
    }

    /// Whether and how to time-scale the packet with unwrapped timestamp `ts` taken from the
    /// buffer at the tick `now`, with `lead` decoded samples queued ahead of it: the status for
    /// [`decision::decide_stretch`] and the number of samples the operation may move.
    ///
    /// Two delays matter. The *slack* (how long after its fastest-possible arrival the packet is
    /// taken, measured at the tick, smoothed like NetEq's filtered buffer level) is what protects
    /// against late packets; the *lead* (decoded audio queued ahead) only adds listening delay.
    /// Below the target the deficit is what is missing; above it, the surplus is the lead plus
    /// whatever exceeds the target by more than one frame (takes happen on the 20 ms tick
    /// lattice, so up to a frame above the target cannot be removed without going below it).
    fn stretch_for(
        &mut self,
        now: Time,
        ts: u64,
        lead: usize,
        frame: &[i16; FRAME_SAMPLES],
    ) -> Option<(Stretch, usize)> {
        self.since_voiced_stretch = self.since_voiced_stretch.saturating_add(1);
        let policy = self.buffer.policy();
        let raw = policy.schedule_delay(now, ts)?;
        let target = policy.target_delay().as_micros() as i64;
        let smoothed = match self.smoothed_slack {
            Some(s) if (raw - s).abs() < SLACK_JUMP_US => s + (raw - s) / SLACK_SMOOTHING,
            _ => raw,
        };
        self.smoothed_slack = Some(smoothed);
        let frame_us = FRAME_DURATION.as_micros() as i64;
        let lead_us = lead as i64 * 1_000_000 / i64::from(crate::SAMPLE_RATE);
        // Growing follows the smoothed slack (one late packet is not a trend); shrinking never
        // removes more than the raw slack of this very packet allows, or the next take would
        // come before its packet.
        let excess_us = if smoothed < target {
            smoothed - target
        } else {
            lead_us + (smoothed.min(raw) - target - frame_us).max(0)
        };
        let class = self.classify(frame);
        self.silent_run = match class {
            FrameClass::Silent => self.silent_run.saturating_add(1),
            _ => 0,
        };
        let status = StretchStatus {
            excess_us,
            class,
            since_voiced_stretch: self.since_voiced_stretch,
            silent_run: self.silent_run,
        };
        tsm::carry_out(decision::decide_stretch(&status), excess_us, frame)
    }

    /// Appends a decoded frame to the output buffer, time-scaled by `len` samples if asked.
    fn append(&mut self, frame: &[i16; FRAME_SAMPLES], stretch: Option<(Stretch, usize)>) {
        let at = self.out_len;
        let Some((stretch, len)) = stretch else {
            self.out[at..at + FRAME_SAMPLES].copy_from_slice(frame);
            self.out_len += FRAME_SAMPLES;
            return;
        };
        let mut tmp = [0i16; tsm::MAX_OUTPUT];
        let n = match stretch {
            Stretch::Shorten => tsm::shorten(frame, len, &mut tmp),
            Stretch::Lengthen => tsm::lengthen(frame, len, &mut tmp),
        };
        self.out[at..at + n].copy_from_slice(&tmp[..n]);
        self.out_len += n;
        if len >= tsm::MIN_PERIOD && tsm::rms(frame) >= tsm::SILENCE_RMS {
            self.since_voiced_stretch = 0;
        }
        let c = &mut self.buffer.metrics_mut().counts;
        match stretch {
            Stretch::Shorten => c.samples_removed += len as u64,
            Stretch::Lengthen => c.samples_inserted += len as u64,
        }
    }

    /// Takes the next frame from the jitter buffer and decodes it into `out`: its source, its
    /// sequence number and (for a packet) its unwrapped timestamp. `None` when idle.
    fn next_frame(
        &mut self,
        now: Time,
        out: &mut [i16; FRAME_SAMPLES],
    ) -> Option<(FrameSource, u64, Option<u64>)> {
        let (mut result, seq, ts, failed) = match self.buffer.pop(now) {
            Playout::Idle => return None,
            Playout::Packet(f) => {
                let ok = self.decoder.decode(f.payload, out).is_ok();
                (FrameSource::Packet, f.seq, Some(f.timestamp_ext), !ok)
            }
            Playout::Recover {
                seq,
                from,
                via: Redundancy::InBandFec,
                ..
            } => {
                let ok = self.decoder.decode_fec(from.payload, out).is_ok();
                (FrameSource::Fec, seq, None, !ok)
            }
            Playout::Recover {
                seq,
                from,
                frames_back,
                via: Redundancy::Dred,
            } => {
                let back = frames_back as usize;
                let recovered = match self.dred.as_deref_mut() {
                    Some(dred) => {
                        if self.dred_parsed != Some(from.seq) {
                            // A packet that does not parse (or carries no DRED) is concealed.
                            if dred.parse(from.payload, back).is_err() {
                                dred.clear();
                            }
                            self.dred_parsed = Some(from.seq);
                        }
                        dred.span().covers(back)
                            && self.decoder.decode_dred(dred, back, out).is_ok()
                    }
                    None => false,
                };
                if recovered {
                    self.buffer.metrics_mut().counts.frames_dred_recovered += 1;
                    self.concealing = false;
                    return Some((FrameSource::Fec, seq, None));
                }
                (FrameSource::Concealed, seq, None, true)
            }
            Playout::Missing { seq, .. } | Playout::Stall { seq } => {
                (FrameSource::Concealed, seq, None, true)
            }
        };
        let m = self.buffer.metrics_mut();
        if failed {
            if result != FrameSource::Concealed {
                m.counts.decode_errors += 1;
            }
            if self.decoder.conceal(out).is_err() {
                out.fill(0);
            }
            result = FrameSource::Concealed;
        }
        match result {
            FrameSource::Concealed => {
                m.counts.frames_concealed += 1;
                if !self.concealing {
                    m.counts.concealment_events += 1;
                }
                self.concealing = true;
            }
            FrameSource::Fec => {
                m.counts.frames_fec_recovered += 1;
                self.concealing = false;
            }
            _ => self.concealing = false,
        }
        Some((result, seq, ts))
    }

    /// Records a send-to-playout delay for a frame whose send time the caller knows.
    pub fn record_end_to_end(&mut self, delay: std::time::Duration) {
        self.buffer.metrics_mut().end_to_end.record(delay);
    }

    /// A metrics snapshot as of `now`.
    pub fn stats(&mut self, now: Time) -> StreamStats {
        self.buffer.stats(now)
    }
}
