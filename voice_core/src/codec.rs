//! Opus encoder and decoder for the engine's one format: 48 kHz mono, 20 ms frames.
//!
//! Built on libopus 1.6.1 (bundled by `opusic-sys`, compiled with DRED and deep PLC / OSCE; the
//! neural models are compiled in, nothing is loaded at run time).
//!
//! The encoder runs in VoIP mode with in-band FEC (LBRR) and a packet-loss hint; it writes into a
//! caller-owned buffer and reports whether the packet really carries FEC for the previous frame
//! (asked of libopus, so the header flag never lies). It can add Deep REDundancy (DRED): a
//! low-rate neural description of up to ~1 s of past speech, carried in every packet
//! ([`Encoder::set_dred_duration`], driven by [`dred_duration`]).
//!
//! The decoder decodes a packet, recovers a lost frame from the next packet's FEC, recovers lost
//! frames from a later packet's DRED ([`DredRecovery`], [`Decoder::decode_dred`]), or conceals a
//! lost frame; each returns exactly one frame. At [`DECODER_COMPLEXITY`] concealment is the deep
//! PLC (LPCNet features + FARGAN vocoder).
//! Nothing on the decode path allocates.

use std::ptr::NonNull;

use opusic_sys as sys;
use thiserror::Error;

use crate::FRAME_SAMPLES;
use crate::SAMPLE_RATE;

mod dred;

pub use dred::{DredRecovery, DredSpan};

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

/// The longest DRED history libopus can carry, in 10 ms units (1.04 s).
pub const MAX_DRED_DURATION: u8 = 104;

/// Reported loss (1/1000) from which senders switch from in-band FEC to DRED (see [`loss_plan`]).
pub const DRED_FROM_PERMILLE: u16 = 200;

/// The bitrate target (bits/s) an encoder carrying DRED is held to (a lower target is kept).
///
/// libopus takes DRED's bits out of the target but in VBR the total still grows by ~10 kb/s,
/// and above ~28.4 kb/s without LBRR it quantises DRED finer (libopus `compute_dred_bitrate`:
/// `q0` steps down once `bitrate - 12000` reaches 16384), which costs a third more. Measured
/// against 32 kb/s with LBRR at a 5 % hint (`cargo bench -p voice_benches --bench codec`, and
/// `CODEC_BENCH_WAV=` for 21 s of espeak-ng sentences): at a 28 kb/s target with 200 ms of DRED
/// the stream is +18 % (speech-like signal) and +4.5 % (espeak-ng) in bytes, and the lossless
/// decode's SNR moves 6.1 → 5.6 dB and 10.7 → 9.6 dB; uncapped at 32 kb/s it is +34 % / +19 %
/// for no better speech (5.4 / 9.3 dB).
pub const DRED_MAX_BITRATE: u32 = 28_000;

/// What the sender's encoder should be told for the worst loss (in 1/1000) that receivers
/// reported over the last seconds (`None` before any report): in-band FEC, the packet-loss hint,
/// the DRED history and the bitrate cap. Apply with [`LossPlan::apply_to`] + [`Encoder::apply`]
/// and [`Encoder::set_dred_duration`].
///
/// * No report yet, or under 20 % loss: no DRED; in-band FEC and the hint [`loss_hint`] gives.
///   DRED's initial state and signalling ride in every packet (~7–10 kb/s at these rates), which a
///   clean path should not pay; isolated losses and short bursts are covered by FEC, the stall
///   logic of the receive path and deep PLC.
/// * 20 % and more ([`DRED_FROM_PERMILLE`]): DRED replaces in-band FEC, 400 ms of history (hint
///   40), the target held to [`DRED_MAX_BITRATE`]: +18 % / −2 % bytes on the speech-like signal /
///   espeak-ng speech against 32 kb/s with FEC at a 5 % hint, reaching ~400 ms back.
///
/// Why not from 1 % or 10 %: with DRED from 10 %, the bursty class (where some paths report more
/// than 10 %) scored 2.42 / 3.98 / 3.15 (PESQ / ViSQOL / PLCMOS) against 2.50 / 4.00 / 3.20 with
/// FEC alone (`benches/quality.sh`, 2026-11-28). And on the benchmark's bursty (Gilbert-Elliott ~8 %) and LTE classes (3 seeds ×
/// 2 tick phases × 2 clips, `benches/quality.sh`), DRED from 1 % (200 ms, LBRR off, 28 kb/s)
/// recovered ~19 frames per clip but scored 0.25 PESQ *below* FEC alone (2.32 vs 2.57 bursty,
/// 2.59 vs 2.86 LTE) for +0.01–0.02 PLCMOS; at 32 kb/s with 100 ms it was still 0.08–0.16 below,
/// and keeping LBRR beside DRED left DRED almost unused at +25 % bytes. A single lost frame
/// rebuilt by DRED is a vocoder's rendering, less faithful than LBRR's (log-spectral distance 7.3
/// dB against LBRR's 4.9 and deep PLC's 7.6 in `tests/it/dred.rs`); bursts are where DRED wins (level
/// error 8 dB against deep PLC's 36 over 5 lost frames), so it is kept for paths that lose a lot.
pub fn loss_plan(worst_reported_permille: Option<u16>) -> LossPlan {
    let (hint, dred) = match worst_reported_permille {
        None | Some(0..DRED_FROM_PERMILLE) => {
            return LossPlan {
                fec: true,
                packet_loss_percent: loss_hint(worst_reported_permille),
                dred_duration: 0,
            }
        }
        Some(_) => (40, 40),
    };
    LossPlan {
        fec: false,
        packet_loss_percent: hint,
        dred_duration: dred,
    }
}

/// The encoder's loss-protection settings; see [`loss_plan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LossPlan {
    /// In-band FEC (LBRR) on or off.
    pub fec: bool,
    /// The packet-loss hint given to libopus (%).
    pub packet_loss_percent: u8,
    /// DRED history in 10 ms units (0 = off).
    pub dred_duration: u8,
}

impl LossPlan {
    /// `config` with this plan's FEC and loss hint, and with DRED on its bitrate held to
    /// [`DRED_MAX_BITRATE`] (everything else kept).
    pub fn apply_to(&self, config: EncoderConfig) -> EncoderConfig {
        let bitrate = if self.dred_duration > 0 {
            config.bitrate.min(DRED_MAX_BITRATE)
        } else {
            config.bitrate
        };
        EncoderConfig {
            bitrate,
            fec: self.fec,
            packet_loss_percent: self.packet_loss_percent,
            ..config
        }
    }
}

/// Loss-driven DRED: how much history (10 ms units, for [`Encoder::set_dred_duration`]) each
/// packet should carry for the worst reported loss (1/1000; `None` before any report): 0 on a
/// clean path and under [`DRED_FROM_PERMILLE`] (20 %), 400 ms from there. DRED only gets bits when
/// the loss hint is above zero and the bitrate leaves room: use [`loss_plan`] for the whole set.
pub fn dred_duration(worst_reported_permille: Option<u16>) -> u8 {
    loss_plan(worst_reported_permille).dred_duration
}

/// The decoder complexity the engine uses: 5 and up turns on the deep PLC (LPCNet features and
/// the FARGAN vocoder) for concealment and DRED, 6 adds OSCE LACE and 7 OSCE NoLACE enhancement
/// of decoded SILK speech (libopus 1.6.1 `opus_decoder.c`).
///
/// The engine uses 5: deep PLC without OSCE. With OSCE (7) the decoder's output overshot to
/// full scale on a voiced test signal after a concealed frame (a 18 785 sample step where the
/// plain decode's largest is 14 158, `tests/it/tsm.rs`), and it costs 1.2–1.5 % of a core per stream
/// against 0.3–0.6 % (`cargo bench -p voice_benches --bench codec`).
pub const DECODER_COMPLEXITY: u8 = 5;

/// Encoded frames larger than this are refused (well under [`crate::proto::udp::MAX_PAYLOAD`]).
pub const MAX_PACKET: usize = 1000;

/// An error code from libopus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusError(pub i32);

impl std::fmt::Display for OpusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.0 {
            sys::OPUS_BAD_ARG => "invalid argument",
            sys::OPUS_BUFFER_TOO_SMALL => "buffer too small",
            sys::OPUS_INTERNAL_ERROR => "internal error",
            sys::OPUS_INVALID_PACKET => "corrupted stream",
            sys::OPUS_UNIMPLEMENTED => "request not implemented",
            sys::OPUS_INVALID_STATE => "invalid state",
            sys::OPUS_ALLOC_FAIL => "memory allocation failed",
            _ => "unknown error",
        };
        write!(f, "{what} ({})", self.0)
    }
}

impl std::error::Error for OpusError {}

/// A codec failure.
#[derive(Debug, Error)]
pub enum CodecError {
    /// libopus reported an error.
    #[error("opus: {0}")]
    Opus(#[from] OpusError),
    /// The PCM slice is not exactly one frame.
    #[error("expected {FRAME_SAMPLES} samples, got {0}")]
    FrameSize(usize),
    /// A decode produced a different number of samples than one frame.
    #[error("decoder produced {0} samples instead of {FRAME_SAMPLES}")]
    DecodedSize(usize),
    /// A DRED recovery was asked for, but the last parsed packet carried no DRED.
    #[error("no DRED data parsed")]
    NoDred,
    /// A DRED recovery was asked for a frame the parsed DRED does not reach.
    #[error("DRED does not cover frame {frames_back} before the packet (covers {covered})")]
    DredRange {
        /// The frame asked for (1 = the frame just before the packet).
        frames_back: usize,
        /// Frames the parsed DRED reaches back.
        covered: usize,
    },
}

/// Maps a libopus return value: negative is an error code, anything else a count.
fn check_code(r: i32) -> Result<usize, OpusError> {
    usize::try_from(r).map_err(|_| OpusError(r))
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
    /// Owned libopus encoder state (created by `opus_encoder_create`, destroyed in `Drop`).
    st: NonNull<sys::OpusEncoder>,
    config: EncoderConfig,
    dred_duration: u8,
}

// SAFETY: the encoder state is plain memory owned exclusively by this value (no thread-local or
// shared state in libopus); moving it to another thread is sound. It is not `Sync`: every call
// that touches it takes `&mut self`.
unsafe impl Send for Encoder {}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("config", &self.config)
            .field("dred_duration", &self.dred_duration)
            .finish()
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        // SAFETY: `st` came from `opus_encoder_create` and is destroyed exactly once, here.
        unsafe { sys::opus_encoder_destroy(self.st.as_ptr()) }
    }
}

impl Encoder {
    /// A new encoder with `config` (DRED off).
    pub fn new(config: EncoderConfig) -> Result<Self, CodecError> {
        let mut err = 0;
        // SAFETY: plain constructor; `err` is a valid out-pointer for the duration of the call.
        let raw = unsafe {
            sys::opus_encoder_create(SAMPLE_RATE as i32, 1, sys::OPUS_APPLICATION_VOIP, &mut err)
        };
        check_code(err)?;
        let st = NonNull::new(raw).ok_or(OpusError(sys::OPUS_ALLOC_FAIL))?;
        let mut e = Encoder {
            st,
            config,
            dred_duration: 0,
        };
        e.ctl(
            sys::OPUS_SET_COMPLEXITY_REQUEST,
            i32::from(config.complexity.min(10)),
        )?;
        // This is a voice engine: tell Opus so. It keeps the speech modes (SILK / hybrid), which
        // are the ones that carry in-band FEC, even for tonal input it might take for music.
        e.ctl(sys::OPUS_SET_SIGNAL_REQUEST, sys::OPUS_SIGNAL_VOICE)?;
        e.apply(config)?;
        Ok(e)
    }

    /// One `OPUS_SET_*` request whose single argument is an `opus_int32`.
    fn ctl(&mut self, request: i32, value: i32) -> Result<(), OpusError> {
        // SAFETY: `st` is a live encoder owned by `self`; every caller passes a SET request that
        // reads exactly one `opus_int32` vararg, which is what is passed.
        let r = unsafe { sys::opus_encoder_ctl(self.st.as_ptr(), request, value) };
        check_code(r).map(drop)
    }

    /// Changes the settings (bitrate, FEC, loss hint, DTX) on the fly.
    pub fn apply(&mut self, config: EncoderConfig) -> Result<(), CodecError> {
        self.ctl(
            sys::OPUS_SET_BITRATE_REQUEST,
            config.bitrate.clamp(6_000, 510_000) as i32,
        )?;
        self.ctl(sys::OPUS_SET_INBAND_FEC_REQUEST, i32::from(config.fec))?;
        self.ctl(
            sys::OPUS_SET_PACKET_LOSS_PERC_REQUEST,
            i32::from(config.packet_loss_percent.min(100)),
        )?;
        self.ctl(sys::OPUS_SET_DTX_REQUEST, i32::from(config.dtx))?;
        self.config = config;
        Ok(())
    }

    /// The current settings.
    pub fn config(&self) -> EncoderConfig {
        self.config
    }

    /// Sets how much history each packet's DRED carries, in 10 ms units (0 = DRED off, at most
    /// [`MAX_DRED_DURATION`]; larger values are clamped). libopus only spends bits on DRED when
    /// the packet-loss hint is above zero and the bitrate leaves room ([`loss_plan`]); how many
    /// of the requested frames fit is its decision, packet by packet.
    pub fn set_dred_duration(&mut self, frames_10ms: u8) -> Result<(), CodecError> {
        let d = frames_10ms.min(MAX_DRED_DURATION);
        self.ctl(sys::OPUS_SET_DRED_DURATION_REQUEST, i32::from(d))?;
        self.dred_duration = d;
        Ok(())
    }

    /// The DRED history requested of the encoder, in 10 ms units (0 = off).
    pub fn dred_duration(&self) -> u8 {
        self.dred_duration
    }

    /// Encodes one 20 ms frame into `out`.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<Encoded, CodecError> {
        if pcm.len() != FRAME_SAMPLES {
            return Err(CodecError::FrameSize(pcm.len()));
        }
        let limit = out.len().min(MAX_PACKET);
        // SAFETY: `st` is a live encoder owned by `self`; `pcm` holds exactly FRAME_SAMPLES mono
        // samples (checked above) and libopus only reads them; `out` is valid for `limit` bytes
        // of writes and libopus writes at most `max_data_bytes` = `limit`.
        let r = unsafe {
            sys::opus_encode(
                self.st.as_ptr(),
                pcm.as_ptr(),
                FRAME_SAMPLES as i32,
                out.as_mut_ptr(),
                limit as i32,
            )
        };
        let len = check_code(r)?;
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
    let r = unsafe { sys::opus_packet_has_lbrr(packet.as_ptr(), packet.len() as i32) };
    r == 1
}

/// Opus decoder, 48 kHz mono, 20 ms frames.
pub struct Decoder {
    /// Owned libopus decoder state (created by `opus_decoder_create`, destroyed in `Drop`).
    st: NonNull<sys::OpusDecoder>,
    complexity: u8,
}

// SAFETY: as for `Encoder`: exclusively owned plain memory, every use through `&mut self`.
unsafe impl Send for Decoder {}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("complexity", &self.complexity)
            .finish_non_exhaustive()
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: `st` came from `opus_decoder_create` and is destroyed exactly once, here.
        unsafe { sys::opus_decoder_destroy(self.st.as_ptr()) }
    }
}

impl Decoder {
    /// A new decoder at [`DECODER_COMPLEXITY`] (deep PLC on). Its state is ~187 KiB
    /// (18 KiB for a libopus built without the neural models), allocated here once.
    pub fn new() -> Result<Self, CodecError> {
        Self::with_complexity(DECODER_COMPLEXITY)
    }

    /// A new decoder at `complexity` (0–10; see [`DECODER_COMPLEXITY`] for what each level turns
    /// on; below 5 concealment is classic Opus PLC).
    pub fn with_complexity(complexity: u8) -> Result<Self, CodecError> {
        let mut err = 0;
        // SAFETY: plain constructor; `err` is a valid out-pointer for the duration of the call.
        let raw = unsafe { sys::opus_decoder_create(SAMPLE_RATE as i32, 1, &mut err) };
        check_code(err)?;
        let st = NonNull::new(raw).ok_or(OpusError(sys::OPUS_ALLOC_FAIL))?;
        let mut d = Decoder { st, complexity: 0 };
        d.set_complexity(complexity)?;
        Ok(d)
    }

    /// Changes the decoder complexity (0–10, clamped).
    pub fn set_complexity(&mut self, complexity: u8) -> Result<(), CodecError> {
        let c = complexity.min(10);
        // SAFETY: `st` is a live decoder owned by `self`; OPUS_SET_COMPLEXITY reads exactly one
        // `opus_int32` vararg, which is what is passed.
        let r = unsafe {
            sys::opus_decoder_ctl(
                self.st.as_ptr(),
                sys::OPUS_SET_COMPLEXITY_REQUEST,
                i32::from(c),
            )
        };
        check_code(r)?;
        self.complexity = c;
        Ok(())
    }

    /// The decoder complexity.
    pub fn complexity(&self) -> u8 {
        self.complexity
    }

    fn check(n: usize) -> Result<(), CodecError> {
        if n == FRAME_SAMPLES {
            Ok(())
        } else {
            Err(CodecError::DecodedSize(n))
        }
    }

    /// `opus_decode` into `out`; an empty `data` is a loss (concealment).
    fn raw_decode(
        &mut self,
        data: &[u8],
        out: &mut [i16; FRAME_SAMPLES],
        fec: bool,
    ) -> Result<(), CodecError> {
        let len = i32::try_from(data.len()).map_err(|_| OpusError(sys::OPUS_INVALID_PACKET))?;
        let ptr = if data.is_empty() {
            std::ptr::null()
        } else {
            data.as_ptr()
        };
        // SAFETY: `st` is a live decoder owned by `self`; `ptr`/`len` describe a live slice (or
        // NULL/0, libopus's loss signal) that libopus only reads; `out` has room for
        // FRAME_SAMPLES mono samples and libopus writes at most `frame_size` = FRAME_SAMPLES
        // (a longer packet is refused with OPUS_BUFFER_TOO_SMALL).
        let r = unsafe {
            sys::opus_decode(
                self.st.as_ptr(),
                ptr,
                len,
                out.as_mut_ptr(),
                FRAME_SAMPLES as i32,
                i32::from(fec),
            )
        };
        Self::check(check_code(r)?)
    }

    /// Decodes `packet` into one frame.
    pub fn decode(
        &mut self,
        packet: &[u8],
        out: &mut [i16; FRAME_SAMPLES],
    ) -> Result<(), CodecError> {
        self.raw_decode(packet, out, false)
    }

    /// Recovers the frame *before* `next_packet` from its in-band FEC.
    pub fn decode_fec(
        &mut self,
        next_packet: &[u8],
        out: &mut [i16; FRAME_SAMPLES],
    ) -> Result<(), CodecError> {
        if next_packet.is_empty() {
            return Err(OpusError(sys::OPUS_INVALID_PACKET).into());
        }
        self.raw_decode(next_packet, out, true)
    }

    /// Conceals one lost frame (deep PLC at complexity 5 and up, classic Opus PLC below).
    pub fn conceal(&mut self, out: &mut [i16; FRAME_SAMPLES]) -> Result<(), CodecError> {
        self.raw_decode(&[], out, false)
    }

    /// Recovers a lost frame from the DRED that `dred` last parsed: `frames_back` = 1 is the frame
    /// just before the parsed packet, 2 the one before that, and so on.
    ///
    /// To fill a burst of `k` lost frames when a packet arrives: `dred.parse(packet, k)`, then
    /// `decode_dred(dred, k)`, `decode_dred(dred, k - 1)`, …, `decode_dred(dred, 1)` in that order
    /// (each advances the decoder by one frame, like [`Decoder::conceal`]), then
    /// [`Decoder::decode`] the packet itself. Frames the span does not reach
    /// ([`DredSpan::covers`]) are concealed instead; for `frames_back` = 1 in-band FEC, when the
    /// packet has it, is at least as good.
    pub fn decode_dred(
        &mut self,
        dred: &DredRecovery,
        frames_back: usize,
        out: &mut [i16; FRAME_SAMPLES],
    ) -> Result<(), CodecError> {
        let span = dred.span();
        if span.is_empty() {
            return Err(CodecError::NoDred);
        }
        if frames_back == 0 || frames_back > span.frames() {
            return Err(CodecError::DredRange {
                frames_back,
                covered: span.frames(),
            });
        }
        // libopus's offset is the start of the wanted frame, in samples before the packet's first
        // sample (what opus_demo passes: `(lost_count - fr) * frame_size`); bounded by
        // span.frames() ≤ MAX_DRED_DURATION / 2, so it fits an i32.
        let offset = (frames_back * FRAME_SAMPLES) as i32;
        // SAFETY: `st` is a live decoder owned by `self`; `dred.state_ptr()` is a live OpusDRED
        // that a successful `opus_dred_parse` filled (span not empty) and libopus only reads it;
        // `out` has room for FRAME_SAMPLES mono samples = `frame_size`.
        let r = unsafe {
            sys::opus_decoder_dred_decode(
                self.st.as_ptr(),
                dred.state_ptr(),
                offset,
                out.as_mut_ptr(),
                FRAME_SAMPLES as i32,
            )
        };
        Self::check(check_code(r)?)
    }

    /// Resets the decoder state (a new talker on this stream).
    pub fn reset(&mut self) -> Result<(), CodecError> {
        // SAFETY: `st` is a live decoder owned by `self`; OPUS_RESET_STATE takes no argument.
        let r = unsafe { sys::opus_decoder_ctl(self.st.as_ptr(), sys::OPUS_RESET_STATE) };
        check_code(r)?;
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
        assert!(dec.decode_fec(&[], &mut out).is_err());
        assert!(!packet_has_fec(&[]));
        assert!(!packet_has_fec(&[0xFF; 3]));
    }

    #[test]
    fn a_packet_longer_than_one_frame_is_refused() {
        // TOC 0x0B: SILK NB, 60 ms, one frame: more than the 20 ms output buffer holds.
        let mut dec = Decoder::new().unwrap();
        let mut out = [0i16; FRAME_SAMPLES];
        assert!(dec.decode(&[0x0B << 3, 0, 0, 0], &mut out).is_err());
    }

    #[test]
    fn dred_duration_is_zero_when_clean_and_grows_with_loss() {
        assert_eq!(dred_duration(None), 0);
        assert_eq!(dred_duration(Some(0)), 0);
        assert_eq!(dred_duration(Some(80)), 0);
        assert_eq!(dred_duration(Some(150)), 0);
        assert_eq!(dred_duration(Some(DRED_FROM_PERMILLE)), 40);
        assert_eq!(dred_duration(Some(300)), 40);
        assert!(loss_plan(Some(80)).fec);
        assert_eq!(loss_plan(Some(80)).packet_loss_percent, 8);
        assert_eq!(loss_plan(None).packet_loss_percent, DEFAULT_LOSS_HINT);
        let p = loss_plan(Some(250));
        assert!(!p.fec && p.packet_loss_percent == 40 && p.dred_duration == 40);
        let c = p.apply_to(EncoderConfig::default());
        assert_eq!(
            (c.fec, c.packet_loss_percent, c.bitrate),
            (false, 40, DRED_MAX_BITRATE)
        );
        let quiet = EncoderConfig {
            bitrate: 20_000,
            ..EncoderConfig::default()
        };
        assert_eq!(p.apply_to(quiet).bitrate, 20_000);
        assert_eq!(loss_plan(Some(5)).apply_to(quiet).bitrate, 20_000);
        assert_eq!(
            loss_plan(Some(5))
                .apply_to(EncoderConfig::default())
                .bitrate,
            DEFAULT_BITRATE
        );
        let mut enc = Encoder::new(EncoderConfig::default()).unwrap();
        enc.set_dred_duration(200).unwrap();
        assert_eq!(enc.dred_duration(), MAX_DRED_DURATION);
    }

    #[test]
    fn decoder_complexity_is_set_and_clamped() {
        let mut dec = Decoder::new().unwrap();
        assert_eq!(dec.complexity(), DECODER_COMPLEXITY);
        dec.set_complexity(42).unwrap();
        assert_eq!(dec.complexity(), 10);
        dec.reset().unwrap();
    }
}
