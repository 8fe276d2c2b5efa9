//! One voice stream end to end: [`Sender`] (PCM → datagrams) and [`Receiver`] (datagrams → PCM).
//!
//! These are the sans-IO building blocks that the client engine keeps one of per remote sender and
//! that `voice-sim` and the C "stream" API drive directly: time is an argument, buffers are the
//! caller's, nothing here touches a socket or a clock.

use crate::codec::{CodecError, Decoder, Encoder, EncoderConfig, MAX_PACKET};
use crate::jitter::{JitterBuffer, JitterConfig, Playout, PlayoutPolicy, PushOutcome};
use crate::metrics::StreamStats;
use crate::proto::udp::{self, DatagramKind, Flags, Header, UdpError};
use crate::proto::SessionToken;
use crate::time::Time;
use crate::FRAME_SAMPLES;

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

/// One remote sender's receive path: jitter buffer, Opus decoder (packet / FEC / PLC) and metrics.
#[derive(Debug)]
pub struct Receiver {
    buffer: JitterBuffer,
    decoder: Decoder,
    use_fec: bool,
    concealing: bool,
    last_source: FrameSource,
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

    /// Produces the frame for the tick at `now` into `out` (exactly one 20 ms frame).
    ///
    /// Returns the unwrapped sequence number played (if any) with the frame's source. Never fails:
    /// a payload that does not decode is concealed and counted.
    pub fn tick(
        &mut self,
        now: Time,
        out: &mut [i16; FRAME_SAMPLES],
    ) -> (FrameSource, Option<u64>) {
        let use_fec = self.use_fec;
        let (mut result, seq, failed) = match self.buffer.pop(now) {
            Playout::Idle => {
                out.fill(0);
                (FrameSource::Silence, None, false)
            }
            Playout::Packet(f) => {
                let ok = self.decoder.decode(f.payload, out).is_ok();
                (FrameSource::Packet, Some(f.seq), !ok)
            }
            Playout::Missing { seq, next } => match next {
                Some(n) if use_fec && n.flags.contains(Flags::FEC) => {
                    let ok = self.decoder.decode_fec(n.payload, out).is_ok();
                    (FrameSource::Fec, Some(seq), !ok)
                }
                _ => (FrameSource::Concealed, Some(seq), true),
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
        self.last_source = result;
        (result, seq)
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
