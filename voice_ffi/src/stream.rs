//! Sans-IO voice streams for games with their own netcode (`voice_encoder_*`, `voice_receiver_*`).
//!
//! The encoder turns 20 ms of 48 kHz mono PCM into one datagram (the engine's 20-byte header plus
//! Opus, with in-band FEC); the game carries those bytes however it likes. On the other side, one
//! receiver per remote sender takes the bytes with the arrival time and, on every 20 ms tick, yields
//! exactly one frame: decoded, recovered from FEC, concealed, or silence before playout starts.
//! Time is the caller's monotonic clock in microseconds.
//!
//! The receiver's playout policy is chosen in [`voice_receiver_config`]: the adaptive one (the
//! engine's default: a target delay from arrival statistics, reached by time-scale modification)
//! or a fixed watermark. Both are `voice_core`'s, built through its public
//! [`PolicyChoice`]; this module only validates the C settings and counts what the C side drops
//! before the core sees it (malformed datagrams, datagrams of another sender).

use voice_core::codec::EncoderConfig;
use voice_core::jitter::{AdaptiveConfig, FixedWatermark, JitterConfig, PolicyChoice};
use voice_core::metrics::StreamStats;
use voice_core::proto::udp;
use voice_core::proto::SessionToken;
use voice_core::stream::{FrameSource, Receiver, SendError, Sender};
use voice_core::{Time, FRAME_SAMPLES};

use crate::handle::{Handle, Kind};
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

/// Adaptive playout (the default): the target delay follows a high quantile of the packets'
/// delay relative to the fastest recent one, between `min_delay_ms` and `max_delay_ms`, and is
/// reached by stretching or shortening decoded audio in whole pitch periods.
pub const VOICE_PLAYOUT_ADAPTIVE: u32 = 0;
/// Fixed playout: start once `watermark_packets` packets are buffered, then release exactly one
/// packet per tick.
pub const VOICE_PLAYOUT_FIXED: u32 = 1;

/// Default loss hint of [`voice_encoder_config_default`], in percent.
pub const VOICE_DEFAULT_LOSS_PERCENT: u32 = 5;
const _: () = assert!(VOICE_DEFAULT_LOSS_PERCENT == voice_core::codec::DEFAULT_LOSS_HINT as u32);
/// Largest fixed watermark, in packets.
pub const VOICE_MAX_WATERMARK: u32 = 20;
/// Largest adaptive delay bound, in ms (the jitter buffer holds at most 25 packets = 500 ms).
pub const VOICE_MAX_DELAY_MS: u32 = 500;
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

/// Receiver settings. Initialise with [`voice_receiver_config_default`], then change fields.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct voice_receiver_config {
    /// `VOICE_PLAYOUT_ADAPTIVE` (default) or `VOICE_PLAYOUT_FIXED`.
    pub policy: u32,
    /// With `VOICE_PLAYOUT_FIXED`: packets buffered before playout starts, 1..=`VOICE_MAX_WATERMARK`
    /// (default 2 = 40 ms).
    pub watermark_packets: u32,
    /// With `VOICE_PLAYOUT_ADAPTIVE`: lowest target delay in ms (default 0).
    pub min_delay_ms: u32,
    /// With `VOICE_PLAYOUT_ADAPTIVE`: highest target delay in ms, `min_delay_ms`..=
    /// `VOICE_MAX_DELAY_MS` (default 400).
    pub max_delay_ms: u32,
    /// The session token of the one sender this receiver serves; datagrams of any other sender
    /// are dropped with `VOICE_ERR_WRONG_SENDER` and counted. 0 (default): the sender of the
    /// first well-formed voice datagram. A peer that comes back under a new session token needs
    /// a new receiver (its sequence numbers start afresh too).
    pub sender: u32,
    /// Recover a lost frame from the next packet's in-band FEC (default true); false conceals
    /// every gap.
    pub fec: bool,
}

/// The metrics of one stream (one remote sender): what [`voice_receiver_stats`] reports for a
/// receiver handle and `voice_remote_stats.stream` for each sender a client hears: the core's
/// stream metrics, plus the two counts only a receiver handle keeps.
// Filled from `StreamStats` in one place, the `From` impl below.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct voice_stream_stats {
    /// Distinct packets received (each sequence number once), including those that came too
    /// late to play (`packets_late`); duplicates are not counted here.
    pub packets_received: u64,
    /// Packets never received: expected by sequence number minus `packets_received`.
    pub packets_lost: u64,
    /// Packets that arrived after their playout slot and were dropped.
    pub packets_late: u64,
    /// Extra copies of packets already received (dropped).
    pub packets_duplicate: u64,
    /// Packets dropped because the buffer overflowed (flood or sequence jump).
    pub packets_overflow_dropped: u64,
    /// Times the buffer resynchronised to a far-away sequence number.
    pub resyncs: u64,
    /// Frames released while playing (decoded, recovered or concealed).
    pub frames_played: u64,
    /// Frames filled by packet-loss concealment.
    pub frames_concealed: u64,
    /// Frames recovered from the next packet's in-band FEC.
    pub frames_fec_recovered: u64,
    /// Frames recovered from a later packet's deep redundancy (DRED).
    pub frames_dred_recovered: u64,
    /// Lost frames neither concealed nor recovered: skipped while the stream was idle (a sender
    /// back after a long gap) or to bound the buffer.
    pub frames_skipped: u64,
    /// Frames concealed while waiting for a late (not lost) packet; included in
    /// `frames_concealed`.
    pub frames_stalled: u64,
    /// Runs of concealment.
    pub concealment_events: u64,
    /// Opus payloads that failed to decode (concealed instead).
    pub decode_errors: u64,
    /// Datagrams `voice_receiver_push` rejected as malformed (`VOICE_ERR_MALFORMED`). Always 0
    /// in `voice_remote_stats`: a client drops a malformed datagram before it knows its sender.
    pub datagrams_malformed: u64,
    /// Datagrams of another sender `voice_receiver_push` rejected (`VOICE_ERR_WRONG_SENDER`).
    /// Always 0 in `voice_remote_stats`: a client gives every sender its own stream.
    pub datagrams_wrong_sender: u64,
    /// Samples inserted by time-scale modification (adaptive playout lengthening the output).
    pub samples_inserted: u64,
    /// Samples removed by time-scale modification (adaptive playout shortening the output).
    pub samples_removed: u64,
    /// Packets buffered now.
    pub buffer_depth: u32,
    /// Most packets buffered.
    pub max_buffer_depth: u32,
    /// Mean arrival → playout delay, ms.
    pub mean_buffer_delay_ms: f64,
    /// 95th percentile of arrival → playout delay, ms.
    pub p95_buffer_delay_ms: f64,
    /// Loss over the last 10 s, percent.
    pub loss_percent_10s: f64,
    /// Interarrival jitter (RFC 3550), ms.
    pub jitter_ms: f64,
}

impl From<&StreamStats> for voice_stream_stats {
    /// Every field of the core's stream metrics but `mean_end_to_end_delay_ms` (which needs the
    /// send time, known only in simulation); the receiver-handle counts are 0.
    fn from(s: &StreamStats) -> Self {
        voice_stream_stats {
            packets_received: s.packets_received,
            packets_lost: s.packets_lost,
            packets_late: s.packets_late,
            packets_duplicate: s.packets_duplicate,
            packets_overflow_dropped: s.packets_overflow_dropped,
            resyncs: s.resyncs,
            frames_played: s.frames_played,
            frames_concealed: s.frames_concealed,
            frames_fec_recovered: s.frames_fec_recovered,
            frames_dred_recovered: s.frames_dred_recovered,
            frames_skipped: s.frames_skipped,
            frames_stalled: s.frames_stalled,
            concealment_events: s.concealment_events,
            decode_errors: s.decode_errors,
            datagrams_malformed: 0,
            datagrams_wrong_sender: 0,
            samples_inserted: s.samples_inserted,
            samples_removed: s.samples_removed,
            buffer_depth: s.buffer_depth,
            max_buffer_depth: s.max_buffer_depth,
            mean_buffer_delay_ms: s.mean_buffer_delay_ms,
            p95_buffer_delay_ms: s.p95_buffer_delay_ms,
            loss_percent_10s: s.loss_percent_10s,
            jitter_ms: s.jitter_ms,
        }
    }
}

/// An opaque encoder handle. Never constructed in Rust: pointers to it are handle cells.
pub struct voice_encoder {
    _opaque: [u8; 0],
}
/// An opaque receiver handle. Never constructed in Rust: pointers to it are handle cells.
pub struct voice_receiver {
    _opaque: [u8; 0],
}

impl Kind for Sender {
    const TAG: u32 = 0x454e_4331; // "ENC1"
}

/// What a receiver handle holds: the core receiver and what the C side dropped before it.
pub(crate) struct RxState {
    pub(crate) rx: Receiver,
    /// The sender served; `None` until the first well-formed voice datagram when configured 0.
    pub(crate) sender: Option<SessionToken>,
    pub(crate) malformed: u64,
    pub(crate) wrong_sender: u64,
    /// Last position the sender's datagrams carried (positional audio).
    pub(crate) position: Option<udp::Position>,
}

impl Kind for RxState {
    const TAG: u32 = 0x5243_5631; // "RCV1"
}

/// Writes the default encoder settings (32 kb/s, FEC on, `VOICE_DEFAULT_LOSS_PERCENT` = 5 % loss
/// hint, session 1) to `*out`.
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

/// Creates an encoder; `*out` receives a handle to release with [`voice_encoder_free`]. The
/// configuration is copied: it need not outlive the call.
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

/// Frees an encoder. NULL is accepted; a second free returns `VOICE_ERR_INVALID_HANDLE`, a free
/// while another thread is inside a call on it returns `VOICE_ERR_BUSY` (and frees nothing).
///
/// Thread safety: no other call on this encoder may start afterwards.
#[no_mangle]
pub unsafe extern "C" fn voice_encoder_free(encoder: *mut voice_encoder) -> voice_result {
    ffi_guard!({ unsafe { Handle::<Sender>::free(encoder.cast()) } })
}

/// Encodes one frame (`frames` must be `VOICE_FRAME_SAMPLES`) into a datagram in `out`
/// (`out_len` ≥ `VOICE_MAX_DATAGRAM` always suffices); `*written` receives its length.
/// `target` 0 addresses the channel, otherwise a whisper recipient. Set `end_of_spurt` on the
/// last frame before transmission pauses. On `VOICE_ERR_BUFFER_TOO_SMALL` nothing is written and
/// no sequence number is used: the next successful encode carries the one this call would have,
/// so the receiver sees no loss.
///
/// Thread safety: one thread at a time per encoder; a concurrent call returns `VOICE_ERR_BUSY`
/// without touching the codec.
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
        let mut s = try_res!(unsafe { Handle::<Sender>::get_mut(encoder.cast()) });
        if pcm.is_null() || out.is_null() || written.is_null() {
            return voice_result::VOICE_ERR_NULL;
        }
        if frames != FRAME_SAMPLES {
            return voice_result::VOICE_ERR_INVALID_ARGUMENT;
        }
        // SAFETY: the caller promises the sizes.
        let pcm = unsafe { std::slice::from_raw_parts(pcm, frames) };
        // The caller's buffer itself: `Sender::encode` checks its size before writing and, on
        // that error, keeps its sequence number and timestamp (a staging buffer here would let
        // the sender count a datagram that was never handed out).
        // SAFETY: the caller promises `out_len` writable bytes.
        let out = unsafe { std::slice::from_raw_parts_mut(out, out_len) };
        let n = match s.encode(pcm, SessionToken(target), end_of_spurt, out) {
            Ok(n) => n,
            Err(SendError::Codec(_)) => return voice_result::VOICE_ERR_CODEC,
            Err(SendError::Wire(_)) => return voice_result::VOICE_ERR_BUFFER_TOO_SMALL,
            Err(SendError::Seal(_)) => return voice_result::VOICE_ERR_INVALID_ARGUMENT,
        };
        // SAFETY: checked non-null.
        unsafe { *written = n };
        voice_result::VOICE_OK
    })
}

/// Lets one frame period pass without sending (silence between talk spurts).
///
/// Thread safety: one thread at a time per encoder; a concurrent call returns `VOICE_ERR_BUSY`.
#[no_mangle]
pub unsafe extern "C" fn voice_encoder_skip_frame(encoder: *mut voice_encoder) -> voice_result {
    ffi_guard!({
        let mut s = try_res!(unsafe { Handle::<Sender>::get_mut(encoder.cast()) });
        s.skip_frame();
        voice_result::VOICE_OK
    })
}

/// Writes the default receiver settings to `*out`: adaptive playout between 0 and 400 ms,
/// a fixed watermark of 2 packets should `policy` be switched to `VOICE_PLAYOUT_FIXED`, the
/// sender of the first datagram, FEC recovery on.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn voice_receiver_config_default(
    out: *mut voice_receiver_config,
) -> voice_result {
    ffi_guard!({
        let out = try_ptr!(mut out);
        let a = AdaptiveConfig::default();
        *out = voice_receiver_config {
            policy: VOICE_PLAYOUT_ADAPTIVE,
            watermark_packets: FixedWatermark::DEFAULT_PACKETS as u32,
            min_delay_ms: a.min_delay_ms,
            max_delay_ms: a.max_delay_ms,
            sender: 0,
            fec: true,
        };
        voice_result::VOICE_OK
    })
}

fn policy_of(c: &voice_receiver_config) -> Result<PolicyChoice, voice_result> {
    match c.policy {
        VOICE_PLAYOUT_FIXED if (1..=VOICE_MAX_WATERMARK).contains(&c.watermark_packets) => {
            Ok(PolicyChoice::Fixed(c.watermark_packets as usize))
        }
        VOICE_PLAYOUT_ADAPTIVE
            if c.min_delay_ms <= c.max_delay_ms && c.max_delay_ms <= VOICE_MAX_DELAY_MS =>
        {
            let d = AdaptiveConfig::default();
            Ok(PolicyChoice::Adaptive(AdaptiveConfig {
                min_delay_ms: c.min_delay_ms,
                max_delay_ms: c.max_delay_ms,
                initial_delay_ms: d.initial_delay_ms.clamp(c.min_delay_ms, c.max_delay_ms),
                ..d
            }))
        }
        _ => Err(voice_result::VOICE_ERR_INVALID_ARGUMENT),
    }
}

/// Creates a receiver for one remote sender; `*out` receives a handle to free with
/// [`voice_receiver_free`]. The configuration is copied: it need not outlive the call. A value
/// out of its documented range is `VOICE_ERR_INVALID_ARGUMENT` (`*out` untouched).
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn voice_receiver_new(
    config: *const voice_receiver_config,
    out: *mut *mut voice_receiver,
) -> voice_result {
    ffi_guard!({
        let c = try_ptr!(config);
        if out.is_null() {
            return voice_result::VOICE_ERR_NULL;
        }
        let policy = try_res!(policy_of(c));
        let Ok(mut rx) = Receiver::new(JitterConfig::default(), policy.build()) else {
            return voice_result::VOICE_ERR_CODEC;
        };
        rx.set_fec(c.fec);
        let st = RxState {
            rx,
            sender: (c.sender != 0).then_some(SessionToken(c.sender)),
            malformed: 0,
            wrong_sender: 0,
            position: None,
        };
        // SAFETY: checked non-null.
        unsafe { *out = Handle::into_raw(st).cast() };
        voice_result::VOICE_OK
    })
}

/// Frees a receiver. NULL is accepted; a second free returns `VOICE_ERR_INVALID_HANDLE`, a free
/// while another thread is inside a call on it returns `VOICE_ERR_BUSY` (and frees nothing).
///
/// Thread safety: no other call on this receiver may start afterwards.
#[no_mangle]
pub unsafe extern "C" fn voice_receiver_free(receiver: *mut voice_receiver) -> voice_result {
    ffi_guard!({ unsafe { Handle::<RxState>::free(receiver.cast()) } })
}

/// Offers a received datagram (`len` bytes) that arrived at `now_us`. A malformed datagram
/// (not a voice datagram of this protocol) is dropped with `VOICE_ERR_MALFORMED` and counted in
/// `datagrams_malformed`; one from another sender than the receiver's is dropped with
/// `VOICE_ERR_WRONG_SENDER` and counted in `datagrams_wrong_sender`. Duplicates and late packets
/// are `VOICE_OK` and counted in `packets_duplicate` / `packets_late`. The receiver stays usable.
///
/// Thread safety: one thread at a time per receiver; a concurrent call returns `VOICE_ERR_BUSY`.
#[no_mangle]
pub unsafe extern "C" fn voice_receiver_push(
    receiver: *mut voice_receiver,
    now_us: u64,
    packet: *const u8,
    len: usize,
) -> voice_result {
    ffi_guard!({
        let mut st = try_res!(unsafe { Handle::<RxState>::get_mut(receiver.cast()) });
        if packet.is_null() {
            return voice_result::VOICE_ERR_NULL;
        }
        // SAFETY: the caller promises `len` readable bytes.
        let bytes = unsafe { std::slice::from_raw_parts(packet, len) };
        match udp::parse(bytes) {
            Ok(d) if d.header.kind == udp::DatagramKind::Voice => {
                let from = d.header.sender;
                match st.sender {
                    Some(s) if s != from => {
                        st.wrong_sender += 1;
                        return voice_result::VOICE_ERR_WRONG_SENDER;
                    }
                    Some(_) => {}
                    None => st.sender = Some(from),
                }
                if d.position.is_some() {
                    st.position = d.position;
                }
                let _ = st
                    .rx
                    .handle_datagram(Time::from_micros(now_us), &d.header, d.payload);
                voice_result::VOICE_OK
            }
            _ => {
                st.malformed += 1;
                voice_result::VOICE_ERR_MALFORMED
            }
        }
    })
}

/// Produces the frame for the tick at `now_us` into `pcm` (`frames` ≥ `VOICE_FRAME_SAMPLES`;
/// exactly `VOICE_FRAME_SAMPLES` are written) and its origin (`VOICE_SOURCE_*`) into `*source`.
/// Call exactly once every 20 ms (with the adaptive policy the receiver may take two packets in
/// one tick, or none, to move its delay; it still returns one frame per call).
///
/// Thread safety: one thread at a time per receiver; a concurrent call returns `VOICE_ERR_BUSY`.
#[no_mangle]
pub unsafe extern "C" fn voice_receiver_pop(
    receiver: *mut voice_receiver,
    now_us: u64,
    pcm: *mut i16,
    frames: usize,
    source: *mut u32,
) -> voice_result {
    ffi_guard!({
        let mut st = try_res!(unsafe { Handle::<RxState>::get_mut(receiver.cast()) });
        if pcm.is_null() || source.is_null() {
            return voice_result::VOICE_ERR_NULL;
        }
        if frames < FRAME_SAMPLES {
            return voice_result::VOICE_ERR_BUFFER_TOO_SMALL;
        }
        let mut frame = [0i16; FRAME_SAMPLES];
        let (src, _) = st.rx.tick(Time::from_micros(now_us), &mut frame);
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
/// Thread safety: one thread at a time per receiver; a concurrent call returns `VOICE_ERR_BUSY`.
#[no_mangle]
pub unsafe extern "C" fn voice_receiver_stats(
    receiver: *mut voice_receiver,
    now_us: u64,
    out: *mut voice_stream_stats,
) -> voice_result {
    ffi_guard!({
        let mut st = try_res!(unsafe { Handle::<RxState>::get_mut(receiver.cast()) });
        let out = try_ptr!(mut out);
        let s = st.rx.stats(Time::from_micros(now_us));
        *out = voice_stream_stats {
            datagrams_malformed: st.malformed,
            datagrams_wrong_sender: st.wrong_sender,
            ..voice_stream_stats::from(&s)
        };
        voice_result::VOICE_OK
    })
}
