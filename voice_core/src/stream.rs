//! One voice stream end to end: [`Sender`] (PCM → datagrams) and [`Receiver`] (datagrams → PCM).
//!
//! These are the sans-IO building blocks that the client engine keeps one of per remote sender and
//! that `voice-sim` and the C "stream" API drive directly: time is an argument, buffers are the
//! caller's, nothing here touches a socket or a clock.

use std::time::Duration;

use crate::codec::{CodecError, Decoder, Encoder, EncoderConfig, MAX_PACKET};
use crate::jitter::{JitterBuffer, JitterConfig, Playout, PlayoutPolicy, PushOutcome};
use crate::metrics::StreamStats;
use crate::proto::udp::{self, DatagramKind, Flags, Header, UdpError};
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
        })
    }

    /// Starts numbering from `seq` and `timestamp` (random starting points hide stream age).
    pub fn with_start(mut self, seq: u16, timestamp: u32) -> Self {
        self.seq = seq;
        self.timestamp = timestamp;
        self
    }

    /// Changes the session token (after a reconnect).
    pub fn set_session(&mut self, session: SessionToken) {
        self.session = session;
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
        let mut flags = Flags::default();
        if !self.in_spurt {
            flags = flags.with(Flags::START_OF_SPURT);
        }
        if end_of_spurt {
            flags = flags.with(Flags::END_OF_SPURT);
        }
        if enc.has_fec {
            flags = flags.with(Flags::FEC);
        }
        let header = Header {
            kind: DatagramKind::Voice,
            flags,
            seq: self.seq,
            timestamp: self.timestamp,
            sender: self.session,
            target,
        };
        let n = udp::write(&header, &self.payload[..enc.len], out)?;
        self.in_spurt = !end_of_spurt;
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(FRAME_SAMPLES as u32);
        Ok(n)
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
    /// Recovered from the next packet's in-band FEC.
    Fec,
    /// Concealed (PLC).
    Concealed,
}

/// Most frames one tick can consume (two when shortening, plus headroom).
const MAX_POPS: usize = 4;
/// Capacity of the output buffer: what one tick can leave behind plus the longest stretched frame.
const OUT_CAP: usize = FRAME_SAMPLES + tsm::MAX_OUTPUT;
/// How far above the target a frame may be played before the output is shortened (hysteresis:
/// one frame quantum plus this guard, so a delay on the 20 ms tick lattice does not oscillate).
const SHORTEN_GUARD_US: i64 = 10_000;
/// Weight 1/N of each new packet in the smoothed slack.
const SLACK_SMOOTHING: i64 = 8;
/// A slack this far from the smoothed value replaces it at once.
const SLACK_JUMP_US: i64 = 60_000;
/// Excess over the target above which queued decoded audio (the lead) is trimmed.
const LEAD_SHORTEN_GUARD_US: i64 = 10_000;
/// Above this excess over the target, shorten every frame that allows it ("fast accelerate");
/// below it, at most every [`SLOW_SHORTEN_EVERY`]-th frame.
const FAST_SHORTEN_US: i64 = 60_000;
const SLOW_SHORTEN_EVERY: u32 = 4;

/// One remote sender's receive path: jitter buffer, Opus decoder (packet / FEC / PLC) and metrics.
///
/// Every [`Receiver::tick`] returns exactly one 20 ms frame. With a policy that tracks transit
/// times (the adaptive one) the receiver keeps a small output buffer of decoded samples and
/// time-scales decoded frames ([`crate::tsm`]) to move the playout delay toward the policy's
/// target: it then takes a frame from the jitter buffer whenever the output buffer holds less
/// than one frame, which is sometimes twice in a tick (shortening) and sometimes not at all
/// (lengthening). With the fixed policy it decodes exactly one packet per tick, as the seed did.
#[derive(Debug)]
pub struct Receiver {
    buffer: JitterBuffer,
    decoder: Decoder,
    use_fec: bool,
    concealing: bool,
    last_source: FrameSource,
    out: Box<[i16; OUT_CAP]>,
    out_len: usize,
    since_shorten: u32,
    pops: [(u64, FrameSource); MAX_POPS],
    /// Exponentially smoothed slack (µs) that the time-scaling decisions use.
    smoothed_slack: Option<i64>,
    /// For each pop of the last tick: samples of earlier audio queued ahead of it.
    leads: [usize; MAX_POPS],
    n_pops: usize,
}

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
            since_shorten: 0,
            pops: [(0, FrameSource::Silence); MAX_POPS],
            leads: [0; MAX_POPS],
            smoothed_slack: None,
            n_pops: 0,
        })
    }

    /// Turns FEC recovery on or off (off: every gap is concealed).
    pub fn set_fec(&mut self, on: bool) {
        self.use_fec = on;
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
            // The frame taken now is heard after the decoded samples already queued: every delay
            // decision and measurement uses that playout instant, not the tick's start.
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
                (FrameSource::Packet, Some(ts)) => self.stretch_for(now, ts, lead),
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

    /// Whether to time-scale the packet with unwrapped timestamp `ts` taken from the buffer at the
    /// tick `now`, with `lead` decoded samples queued ahead of it.
    ///
    /// Two delays matter. The *slack* (how long after its fastest-possible arrival the packet is
    /// taken, measured at the tick) is what protects against late packets; the *lead* (decoded audio
    /// queued ahead) only adds listening delay. So: lengthen when the slack is below the target
    /// (the inserted samples eventually skip a take, adding a frame of slack); when the slack is
    /// comfortably above the target, trim the lead first — that only shortens audio already
    /// decoded and moves no take earlier; only shorten into the next take (which needs the next
    /// packet early) when the slack exceeds the target by a whole frame plus a guard (every 4th
    /// frame, or every frame when far over).
    fn stretch_for(&mut self, now: Time, ts: u64, lead: usize) -> Option<Stretch> {
        self.since_shorten = self.since_shorten.saturating_add(1);
        let policy = self.buffer.policy();
        let raw = policy.schedule_delay(now, ts)?;
        // Decide on a smoothed slack (like NetEq's filtered buffer level): per-packet slack swings
        // with every packet's jitter, and reacting to each swing only trades insertions for
        // removals. Large deviations still act at once (a sudden spike or drop).
        let smoothed = match self.smoothed_slack {
            Some(s) if (raw - s).abs() < SLACK_JUMP_US => s + (raw - s) / SLACK_SMOOTHING,
            _ => raw,
        };
        self.smoothed_slack = Some(smoothed);
        let slack = smoothed;
        let target = policy.target_delay().as_micros() as i64;
        let frame_us = FRAME_DURATION.as_micros() as i64;
        if slack < target {
            return Some(Stretch::Lengthen);
        }
        if lead >= tsm::MAX_PERIOD && slack - target >= LEAD_SHORTEN_GUARD_US {
            return Some(Stretch::Shorten);
        }
        let excess = slack - frame_us - target;
        let due = excess >= FAST_SHORTEN_US || self.since_shorten >= SLOW_SHORTEN_EVERY;
        (excess >= SHORTEN_GUARD_US && due).then_some(Stretch::Shorten)
    }

    /// Appends a decoded frame to the output buffer, time-scaled if asked and possible.
    fn append(&mut self, frame: &[i16; FRAME_SAMPLES], stretch: Option<Stretch>) {
        let at = self.out_len;
        let Some(stretch) = stretch else {
            self.out[at..at + FRAME_SAMPLES].copy_from_slice(frame);
            self.out_len += FRAME_SAMPLES;
            return;
        };
        let len = tsm::plan(frame, stretch);
        let mut tmp = [0i16; tsm::MAX_OUTPUT];
        let n = match stretch {
            Stretch::Shorten => tsm::shorten(frame, len, &mut tmp),
            Stretch::Lengthen => tsm::lengthen(frame, len, &mut tmp),
        };
        self.out[at..at + n].copy_from_slice(&tmp[..n]);
        self.out_len += n;
        let c = &mut self.buffer.metrics_mut().counts;
        match stretch {
            Stretch::Shorten if len > 0 => {
                c.samples_removed += len as u64;
                self.since_shorten = 0;
            }
            Stretch::Lengthen => c.samples_inserted += len as u64,
            Stretch::Shorten => {}
        }
    }

    /// Takes the next frame from the jitter buffer and decodes it into `out`: its source, its
    /// sequence number and (for a packet) its unwrapped timestamp. `None` when idle.
    fn next_frame(
        &mut self,
        now: Time,
        out: &mut [i16; FRAME_SAMPLES],
    ) -> Option<(FrameSource, u64, Option<u64>)> {
        let use_fec = self.use_fec;
        let (mut result, seq, ts, failed) = match self.buffer.pop(now) {
            Playout::Idle => return None,
            Playout::Packet(f) => {
                let ok = self.decoder.decode(f.payload, out).is_ok();
                (FrameSource::Packet, f.seq, Some(f.timestamp_ext), !ok)
            }
            Playout::Missing { seq, next } => match next {
                Some(n) if use_fec && n.flags.contains(Flags::FEC) => {
                    let ok = self.decoder.decode_fec(n.payload, out).is_ok();
                    (FrameSource::Fec, seq, None, !ok)
                }
                _ => (FrameSource::Concealed, seq, None, true),
            },
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
