//! Sans-IO voice streams for games with their own netcode (`voice_encoder_*`, `voice_receiver_*`).
//!
//! The encoder turns 20 ms of 48 kHz mono PCM into one datagram (the engine's 20-byte header plus
//! Opus, with in-band FEC); the game carries those bytes however it likes. On the other side, one
//! receiver per remote sender takes the bytes with the arrival time and, on every 20 ms tick, yields
//! exactly one frame: decoded, recovered from FEC, concealed, or silence before playout starts.
//! Time is the caller's monotonic clock in microseconds.

use voice_core::codec::EncoderConfig;
use voice_core::jitter::{FixedWatermark, JitterConfig};
use voice_core::proto::udp;
use voice_core::proto::SessionToken;
use voice_core::stream::{FrameSource, Receiver, SendError, Sender};
use voice_core::{Time, FRAME_SAMPLES};

use crate::handle::Handle;
use crate::{ffi_guard, try_ptr, try_res, voice_result};

/// Samples in one frame (20 ms at 48 kHz, mono).
pub const VOICE_FRAME_SAMPLES: usize = 960;
/// Largest datagram the encoder writes.
pub const VOICE_MAX_DATAGRAM: usize = 1200;
const _: () =
    assert!(VOICE_FRAME_SAMPLES == FRAME_SAMPLES && VOICE_MAX_DATAGRAM == udp::MAX_DATAGRAM);

/// The frame was silence (not playing: before the watermark or between talk spurts).
pub const VOICE_SOURCE_SILENCE: u32 = 0;
/// The frame was decoded from its packet.
pub const VOICE_SOURCE_PACKET: u32 = 1;
/// The frame was recovered from the next packet's in-band FEC.
pub const VOICE_SOURCE_FEC: u32 = 2;
/// The frame was concealed (packet loss concealment).
pub const VOICE_SOURCE_CONCEALED: u32 = 3;

/// Encoder settings. Initialise with [`voice_encoder_config_default`].
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct voice_encoder_config {
    /// Bitrate in bits/s (6000..=510000).
    pub bitrate: u32,
    /// In-band FEC on.
    pub fec: bool,
    /// Expected loss in percent (0..=100): how much FEC to spend.
    pub packet_loss_percent: u32,
    /// Session token written into the header as sender (non-zero).
    pub session: u32,
}

/// Stream metrics of one receiver.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct voice_stream_stats {
    /// Unique packets received.
    pub packets_received: u64,
    /// Packets never received.
    pub packets_lost: u64,
    /// Packets that arrived after their slot.
    pub packets_late: u64,
    /// Duplicate packets.
    pub packets_duplicate: u64,
    /// Frames released while playing.
    pub frames_played: u64,
    /// Frames concealed.
    pub frames_concealed: u64,
    /// Frames recovered from FEC.
    pub frames_fec_recovered: u64,
    /// Runs of concealment.
    pub concealment_events: u64,
    /// Packets buffered now.
    pub buffer_depth: u32,
    /// Most packets buffered.
    pub max_buffer_depth: u32,
    /// Mean arrival → playout delay, ms.
    pub mean_buffer_delay_ms: f64,
    /// Loss over the last 10 s, percent.
    pub loss_percent_10s: f64,
    /// Interarrival jitter, ms.
    pub jitter_ms: f64,
}

/// An opaque encoder handle. Never constructed in Rust: pointers to it are handle cells.
pub struct voice_encoder {
    _opaque: [u8; 0],
}
/// An opaque receiver handle. Never constructed in Rust: pointers to it are handle cells.
pub struct voice_receiver {
    _opaque: [u8; 0],
}

/// Writes the default encoder settings (32 kb/s, FEC on, 10 % loss hint, session 1) to `*out`.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn voice_encoder_config_default(
    out: *mut voice_encoder_config,
) -> voice_result {
    ffi_guard!({
        let out = try_ptr!(mut out);
        let d = EncoderConfig::default();
        *out = voice_encoder_config {
            bitrate: d.bitrate,
            fec: d.fec,
            packet_loss_percent: u32::from(d.packet_loss_percent),
            session: 1,
        };
        voice_result::VOICE_OK
    })
}

/// Creates an encoder; `*out` receives a handle to release with [`voice_encoder_free`].
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn voice_encoder_new(
    config: *const voice_encoder_config,
    out: *mut *mut voice_encoder,
) -> voice_result {
    ffi_guard!({
        let c = try_ptr!(config);
        if out.is_null() {
            return voice_result::VOICE_ERR_NULL;
        }
        if !(6_000..=510_000).contains(&c.bitrate) || c.packet_loss_percent > 100 || c.session == 0
        {
            return voice_result::VOICE_ERR_INVALID_ARGUMENT;
        }
        let cfg = EncoderConfig {
            bitrate: c.bitrate,
            fec: c.fec,
            packet_loss_percent: c.packet_loss_percent as u8,
            ..EncoderConfig::default()
        };
        let Ok(sender) = Sender::new(SessionToken(c.session), cfg) else {
            return voice_result::VOICE_ERR_CODEC;
        };
        // SAFETY: checked non-null.
        unsafe { *out = Handle::into_raw(sender).cast() };
        voice_result::VOICE_OK
    })
}

/// Frees an encoder. NULL is accepted; a second free returns `VOICE_ERR_INVALID_HANDLE`.
///
/// Thread safety: no other call on this encoder may run concurrently or afterwards.
#[no_mangle]
pub unsafe extern "C" fn voice_encoder_free(encoder: *mut voice_encoder) -> voice_result {
    ffi_guard!({ unsafe { Handle::<Sender>::free(encoder.cast()) } })
}

/// Encodes one frame (`frames` must be `VOICE_FRAME_SAMPLES`) into a datagram in `out`
/// (`out_len` ≥ `VOICE_MAX_DATAGRAM` always suffices); `*written` receives its length.
/// `target` 0 addresses the channel, otherwise a whisper recipient. Set `end_of_spurt` on the
/// last frame before transmission pauses.
///
/// Thread safety: one thread at a time per encoder.
#[no_mangle]
pub unsafe extern "C" fn voice_encoder_encode(
    encoder: *mut voice_encoder,
    pcm: *const i16,
    frames: usize,
    target: u32,
    end_of_spurt: bool,
    out: *mut u8,
    out_len: usize,
    written: *mut usize,
) -> voice_result {
    ffi_guard!({
        // SAFETY: handle cell cast.
        let s = try_res!(unsafe { Handle::<Sender>::get_mut(encoder.cast()) });
        if pcm.is_null() || out.is_null() || written.is_null() {
            return voice_result::VOICE_ERR_NULL;
        }
        if frames != FRAME_SAMPLES {
            return voice_result::VOICE_ERR_INVALID_ARGUMENT;
        }
        // SAFETY: the caller promises the sizes.
        let pcm = unsafe { std::slice::from_raw_parts(pcm, frames) };
        let mut buf = [0u8; udp::MAX_DATAGRAM];
        let n = match s.encode(pcm, SessionToken(target), end_of_spurt, &mut buf) {
            Ok(n) => n,
            Err(SendError::Codec(_)) => return voice_result::VOICE_ERR_CODEC,
            Err(SendError::Wire(_)) => return voice_result::VOICE_ERR_BUFFER_TOO_SMALL,
        };
        if n > out_len {
            return voice_result::VOICE_ERR_BUFFER_TOO_SMALL;
        }
        // SAFETY: `out` holds `out_len` ≥ n bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(buf.as_ptr(), out, n);
            *written = n;
        }
        voice_result::VOICE_OK
    })
}

/// Lets one frame period pass without sending (silence between talk spurts).
///
/// Thread safety: one thread at a time per encoder.
#[no_mangle]
pub unsafe extern "C" fn voice_encoder_skip_frame(encoder: *mut voice_encoder) -> voice_result {
    ffi_guard!({
        let s = try_res!(unsafe { Handle::<Sender>::get_mut(encoder.cast()) });
        s.skip_frame();
        voice_result::VOICE_OK
    })
}

/// Creates a receiver for one remote sender with a fixed watermark of `watermark_packets`
/// (0 = the default of 2, i.e. 40 ms); `*out` receives a handle to free with
/// [`voice_receiver_free`].
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn voice_receiver_new(
    watermark_packets: u32,
    out: *mut *mut voice_receiver,
) -> voice_result {
    ffi_guard!({
        if out.is_null() {
            return voice_result::VOICE_ERR_NULL;
        }
        if watermark_packets > 20 {
            return voice_result::VOICE_ERR_INVALID_ARGUMENT;
        }
        let n = if watermark_packets == 0 {
            FixedWatermark::DEFAULT_PACKETS
        } else {
            watermark_packets as usize
        };
        let Ok(r) = Receiver::new(JitterConfig::default(), Box::new(FixedWatermark::new(n))) else {
            return voice_result::VOICE_ERR_CODEC;
        };
        // SAFETY: checked non-null.
        unsafe { *out = Handle::into_raw(r).cast() };
        voice_result::VOICE_OK
    })
}

/// Frees a receiver. NULL is accepted; a second free returns `VOICE_ERR_INVALID_HANDLE`.
///
/// Thread safety: no other call on this receiver may run concurrently or afterwards.
#[no_mangle]
pub unsafe extern "C" fn voice_receiver_free(receiver: *mut voice_receiver) -> voice_result {
    ffi_guard!({ unsafe { Handle::<Receiver>::free(receiver.cast()) } })
}

/// Offers a received datagram (`len` bytes) that arrived at `now_us`. A malformed datagram is
/// counted and dropped with `VOICE_ERR_MALFORMED`; the receiver stays usable.
///
/// Thread safety: one thread at a time per receiver.
#[no_mangle]
pub unsafe extern "C" fn voice_receiver_push(
    receiver: *mut voice_receiver,
    now_us: u64,
    packet: *const u8,
    len: usize,
) -> voice_result {
    ffi_guard!({
        let r = try_res!(unsafe { Handle::<Receiver>::get_mut(receiver.cast()) });
        if packet.is_null() {
            return voice_result::VOICE_ERR_NULL;
        }
        // SAFETY: the caller promises `len` readable bytes.
        let bytes = unsafe { std::slice::from_raw_parts(packet, len) };
        match udp::parse(bytes) {
            Ok(d) if d.header.kind == udp::DatagramKind::Voice => {
                let _ = r.handle_datagram(Time::from_micros(now_us), &d.header, d.payload);
                voice_result::VOICE_OK
            }
            _ => voice_result::VOICE_ERR_MALFORMED,
        }
    })
}

/// Produces the frame for the tick at `now_us` into `pcm` (`frames` ≥ `VOICE_FRAME_SAMPLES`;
/// exactly `VOICE_FRAME_SAMPLES` are written) and its origin (`VOICE_SOURCE_*`) into `*source`.
/// Call exactly once every 20 ms.
///
/// Thread safety: one thread at a time per receiver.
#[no_mangle]
pub unsafe extern "C" fn voice_receiver_pop(
    receiver: *mut voice_receiver,
    now_us: u64,
    pcm: *mut i16,
    frames: usize,
    source: *mut u32,
) -> voice_result {
    ffi_guard!({
        let r = try_res!(unsafe { Handle::<Receiver>::get_mut(receiver.cast()) });
        if pcm.is_null() || source.is_null() {
            return voice_result::VOICE_ERR_NULL;
        }
        if frames < FRAME_SAMPLES {
            return voice_result::VOICE_ERR_BUFFER_TOO_SMALL;
        }
        let mut frame = [0i16; FRAME_SAMPLES];
        let (src, _) = r.tick(Time::from_micros(now_us), &mut frame);
        // SAFETY: `pcm` holds at least FRAME_SAMPLES samples; `source` checked.
        unsafe {
            std::ptr::copy_nonoverlapping(frame.as_ptr(), pcm, FRAME_SAMPLES);
            *source = match src {
                FrameSource::Silence => VOICE_SOURCE_SILENCE,
                FrameSource::Packet => VOICE_SOURCE_PACKET,
                FrameSource::Fec => VOICE_SOURCE_FEC,
                FrameSource::Concealed => VOICE_SOURCE_CONCEALED,
            };
        }
        voice_result::VOICE_OK
    })
}

/// Writes the receiver's metrics as of `now_us` to `*out`.
///
/// Thread safety: one thread at a time per receiver.
#[no_mangle]
pub unsafe extern "C" fn voice_receiver_stats(
    receiver: *mut voice_receiver,
    now_us: u64,
    out: *mut voice_stream_stats,
) -> voice_result {
    ffi_guard!({
        let r = try_res!(unsafe { Handle::<Receiver>::get_mut(receiver.cast()) });
        let out = try_ptr!(mut out);
        let s = r.stats(Time::from_micros(now_us));
        *out = voice_stream_stats {
            packets_received: s.packets_received,
            packets_lost: s.packets_lost,
            packets_late: s.packets_late,
            packets_duplicate: s.packets_duplicate,
            frames_played: s.frames_played,
            frames_concealed: s.frames_concealed,
            frames_fec_recovered: s.frames_fec_recovered,
            concealment_events: s.concealment_events,
            buffer_depth: s.buffer_depth,
            max_buffer_depth: s.max_buffer_depth,
            mean_buffer_delay_ms: s.mean_buffer_delay_ms,
            loss_percent_10s: s.loss_percent_10s,
            jitter_ms: s.jitter_ms,
        };
        voice_result::VOICE_OK
    })
}
