//! Opus encoder and decoder for the engine's one format: 48 kHz mono, 20 ms frames.
//!
//! The encoder runs in VoIP mode with in-band FEC (LBRR) and a packet-loss hint; it writes into a
//! caller-owned buffer and reports whether the packet really carries FEC for the previous frame
//! (asked of libopus, so the header flag never lies). The decoder decodes a packet, recovers a lost
//! frame from the next packet's FEC, or conceals a lost frame (PLC); each returns exactly one frame.

use thiserror::Error;

use crate::FRAME_SAMPLES;
use crate::SAMPLE_RATE;

/// The encoder's default bitrate in bits/s: wideband-to-fullband speech with room for FEC.
pub const DEFAULT_BITRATE: u32 = 32_000;
/// The encoder's packet-loss hint (%) before any receiver has reported: enough for Opus to add
/// in-band FEC from the first packet, then [`loss_hint`] takes over.
pub const DEFAULT_LOSS_HINT: u8 = 5;

/// Loss-driven FEC: the encoder's packet-loss hint from the worst loss (in 1/1000) that receivers
/// reported over the last seconds, or `None` before any report. A clean path gets 0 (no bits spent
/// on FEC: on a lossless path FEC only costs quality); any loss gets at least 2 % and at most 40 %.
pub fn loss_hint(worst_reported_permille: Option<u16>) -> u8 {
    match worst_reported_permille {
        None => DEFAULT_LOSS_HINT,
        Some(0) => 0,
        Some(p) => (u32::from(p).div_ceil(10) as u8).clamp(2, 40),
    }
}

/// Encoded frames larger than this are refused (well under [`crate::proto::udp::MAX_PAYLOAD`]).
pub const MAX_PACKET: usize = 1000;

/// A codec failure.
#[derive(Debug, Error)]
pub enum CodecError {
    /// libopus reported an error.
    #[error("opus: {0}")]
    Opus(#[from] opus::Error),
    /// The PCM slice is not exactly one frame.
    #[error("expected {FRAME_SAMPLES} samples, got {0}")]
    FrameSize(usize),
    /// A decode produced a different number of samples than one frame.
    #[error("decoder produced {0} samples instead of {FRAME_SAMPLES}")]
    DecodedSize(usize),
}

/// Encoder settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderConfig {
    /// Target bitrate in bits/s.
    pub bitrate: u32,
    /// In-band FEC on or off.
    pub fec: bool,
    /// Expected packet loss in percent (0–100): how much FEC the encoder spends.
    pub packet_loss_percent: u8,
    /// Discontinuous transmission (very low rate in silence).
    pub dtx: bool,
    /// Complexity 0–10.
    pub complexity: u8,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        EncoderConfig {
            bitrate: DEFAULT_BITRATE,
            fec: true,
            packet_loss_percent: DEFAULT_LOSS_HINT,
            dtx: false,
            complexity: 9,
        }
    }
}

/// One encoded frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoded {
    /// Bytes written to the output buffer.
    pub len: usize,
    /// The packet carries in-band FEC for the previous frame.
    pub has_fec: bool,
}

/// Opus encoder, 48 kHz mono, 20 ms frames.
pub struct Encoder {
    inner: opus::Encoder,
    config: EncoderConfig,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("config", &self.config)
            .finish()
    }
}

impl Encoder {
    /// A new encoder with `config`.
    pub fn new(config: EncoderConfig) -> Result<Self, CodecError> {
        let mut inner =
            opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip)?;
        inner.set_complexity(i32::from(config.complexity.min(10)))?;
        // This is a voice engine: tell Opus so. It keeps the speech modes (SILK / hybrid), which
        // are the ones that carry in-band FEC, even for tonal input it might take for music.
        inner.set_signal(opus::Signal::Voice)?;
        let mut e = Encoder { inner, config };
        e.apply(config)?;
        Ok(e)
    }

    /// Changes the settings (bitrate, FEC, loss hint, DTX) on the fly.
    pub fn apply(&mut self, config: EncoderConfig) -> Result<(), CodecError> {
        self.inner.set_bitrate(opus::Bitrate::Bits(
            config.bitrate.clamp(6_000, 510_000) as i32
        ))?;
        self.inner.set_inband_fec(config.fec)?;
        self.inner
            .set_packet_loss_perc(i32::from(config.packet_loss_percent.min(100)))?;
        self.inner.set_dtx(config.dtx)?;
        self.config = config;
        Ok(())
    }

    /// The current settings.
    pub fn config(&self) -> EncoderConfig {
        self.config
    }

    /// Encodes one 20 ms frame into `out`.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<Encoded, CodecError> {
        if pcm.len() != FRAME_SAMPLES {
            return Err(CodecError::FrameSize(pcm.len()));
        }
        let limit = out.len().min(MAX_PACKET);
        let len = self.inner.encode(pcm, &mut out[..limit])?;
        Ok(Encoded {
            len,
            has_fec: packet_has_fec(&out[..len]),
        })
    }
}

/// Whether an Opus packet carries in-band FEC (LBRR) for the previous frame.
pub fn packet_has_fec(packet: &[u8]) -> bool {
    if packet.is_empty() || packet.len() > i32::MAX as usize {
        return false;
    }
    // SAFETY: the pointer and length describe a live, initialised slice; libopus only reads it.
    let r = unsafe { opusic_sys::opus_packet_has_lbrr(packet.as_ptr(), packet.len() as i32) };
    r == 1
}

/// Opus decoder, 48 kHz mono, 20 ms frames.
pub struct Decoder {
    inner: opus::Decoder,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder").finish_non_exhaustive()
    }
}

impl Decoder {
    /// A new decoder.
    pub fn new() -> Result<Self, CodecError> {
        Ok(Decoder {
            inner: opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono)?,
        })
    }

    fn check(n: usize) -> Result<(), CodecError> {
        if n == FRAME_SAMPLES {
            Ok(())
        } else {
            Err(CodecError::DecodedSize(n))
        }
    }

    /// Decodes `packet` into one frame.
    pub fn decode(
        &mut self,
        packet: &[u8],
        out: &mut [i16; FRAME_SAMPLES],
    ) -> Result<(), CodecError> {
        if packet.is_empty() {
            return self.conceal(out);
        }
        Self::check(self.inner.decode(packet, out, false)?)
    }

    /// Recovers the frame *before* `next_packet` from its in-band FEC.
    pub fn decode_fec(
        &mut self,
        next_packet: &[u8],
        out: &mut [i16; FRAME_SAMPLES],
    ) -> Result<(), CodecError> {
        Self::check(self.inner.decode(next_packet, out, true)?)
    }

    /// Conceals one lost frame (Opus PLC).
    pub fn conceal(&mut self, out: &mut [i16; FRAME_SAMPLES]) -> Result<(), CodecError> {
        Self::check(self.inner.decode(&[], out, false)?)
    }

    /// Resets the decoder state (a new talker on this stream).
    pub fn reset(&mut self) -> Result<(), CodecError> {
        self.inner.reset_state()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(frame: usize) -> [i16; FRAME_SAMPLES] {
        let mut pcm = [0i16; FRAME_SAMPLES];
        for (i, s) in pcm.iter_mut().enumerate() {
            let t = (frame * FRAME_SAMPLES + i) as f64 / f64::from(SAMPLE_RATE);
            *s = ((t * 440.0 * std::f64::consts::TAU).sin() * 8000.0) as i16;
        }
        pcm
    }

    #[test]
    fn encode_decode_conceal_and_fec_each_yield_one_frame() {
        let mut enc = Encoder::new(EncoderConfig::default()).unwrap();
        let mut dec = Decoder::new().unwrap();
        let mut buf = [0u8; MAX_PACKET];
        let mut out = [0i16; FRAME_SAMPLES];
        let mut packets = Vec::new();
        for f in 0..10 {
            let e = enc.encode(&tone(f), &mut buf).unwrap();
            assert!(e.len > 0 && e.len <= MAX_PACKET);
            packets.push((buf[..e.len].to_vec(), e.has_fec));
        }
        assert!(
            packets[1..].iter().any(|(_, fec)| *fec),
            "FEC expected with a loss hint"
        );
        dec.decode(&packets[0].0, &mut out).unwrap();
        dec.conceal(&mut out).unwrap();
        dec.decode_fec(&packets[3].0, &mut out).unwrap();
        dec.decode(&packets[3].0, &mut out).unwrap();
        let energy: f64 = out.iter().map(|&s| f64::from(s).powi(2)).sum();
        assert!(energy > 0.0);
    }

    #[test]
    fn wrong_frame_size_and_garbage_are_errors() {
        let mut enc = Encoder::new(EncoderConfig::default()).unwrap();
        let mut buf = [0u8; MAX_PACKET];
        assert!(matches!(
            enc.encode(&[0; 100], &mut buf),
            Err(CodecError::FrameSize(100))
        ));
        let mut dec = Decoder::new().unwrap();
        let mut out = [0i16; FRAME_SAMPLES];
        assert!(dec.decode(&[0xFF; 3], &mut out).is_err());
        assert!(!packet_has_fec(&[]));
        assert!(!packet_has_fec(&[0xFF; 3]));
    }
}
