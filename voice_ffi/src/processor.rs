//! Capture processing for applications that own their audio (sans-IO): the engine's
//! [`voice_core::capture::CaptureProcessor`] behind a handle. A game hands in what its
//! loudspeakers play (`voice_processor_far_end`) and cleans each microphone frame in place
//! (`voice_processor_process`), which also says whether the frame holds speech.

use voice_core::capture::{
    CaptureConfig, CaptureProcessor, CaptureStats, SpeechVadConfig, SuppressionLevel,
    MAX_BACKGROUND_MARGIN_DB,
};

use crate::handle::{Handle, Kind};
use crate::{ffi_guard, try_ptr, try_res, voice_result};

/// Samples in one processing chunk (10 ms at 48 kHz): frame lengths are multiples of it.
pub const VOICE_PROCESSOR_CHUNK_SAMPLES: usize = 480;

/// Noise suppression: RNNoise with the input kept 12 dB down.
pub const VOICE_SUPPRESSION_LOW: u32 = 0;
/// Noise suppression: RNNoise alone (as Mumble runs it).
pub const VOICE_SUPPRESSION_MODERATE: u32 = 1;
/// Noise suppression: RNNoise, then the residual-noise post-filter (3 dB at most in speech,
/// 20 dB in pauses; default).
pub const VOICE_SUPPRESSION_HIGH: u32 = 2;
/// Noise suppression: RNNoise, then a deeper post-filter (6 dB in speech, 30 dB in pauses).
pub const VOICE_SUPPRESSION_VERY_HIGH: u32 = 3;

/// Capture processing stages. Initialise with [`voice_processor_config_default`] (every stage on).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct voice_processor_config {
    /// High-pass filter (40 Hz: DC, rumble).
    pub high_pass: bool,
    /// Echo cancellation against the far-end signal (`voice_processor_far_end`).
    pub echo_cancel: bool,
    /// Noise suppression.
    pub noise_suppression: bool,
    /// `VOICE_SUPPRESSION_*` (with `noise_suppression`).
    pub suppression_level: u32,
    /// Automatic gain control.
    pub gain_control: bool,
    /// Speech detection (the `speech` result of `voice_processor_process`).
    pub speech_detection: bool,
    /// Echo path delay hint in ms (output + input latency and buffering), 0..=500 (default 60).
    /// The canceller's filter covers echo from 60 ms before the hint to 260 ms after it (changes
    /// under 40 ms are ignored).
    pub echo_delay_ms: u32,
    /// Background voices (with `speech_detection`): speech opens the microphone only when it is
    /// at most this many dB under the talker's level (and well above the background's lulls),
    /// so people talking across the room or a TV do not. 0..=40 (default 6); 0 turns the gate
    /// off (every voice opens it).
    pub background_voice_margin_db: f32,
}

/// What the processor measured on the last frame.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct voice_capture_stats {
    /// Highest speech probability (0..1) over the frame's 10 ms chunks.
    pub speech_probability: f32,
    /// The speech detector's verdict (hangover included).
    pub speech: bool,
    /// Echo return loss enhancement in dB: microphone over output power while the far end plays
    /// (near-end speech at the same time lowers it); NaN until the canceller has an estimate (or
    /// when it is off).
    pub erle_db: f64,
    /// The canceller's echo delay estimate in ms; -1 when it has none.
    pub echo_delay_ms: i32,
    /// Frames processed.
    pub frames: u64,
    /// The clock drift between the far end and the microphone the canceller measures (ppm;
    /// positive: the microphone runs fast). From 10 ppm on it reads the far end at the
    /// microphone's rate; 0 before it has measured anything, or when it is off.
    pub clock_drift_ppm: f64,
}

impl From<&CaptureStats> for voice_capture_stats {
    fn from(s: &CaptureStats) -> Self {
        voice_capture_stats {
            speech_probability: s.speech_probability,
            speech: s.speech,
            erle_db: s.erle_db.unwrap_or(f64::NAN),
            echo_delay_ms: s.echo_delay_ms.unwrap_or(-1),
            frames: s.frames,
            clock_drift_ppm: s.clock_drift_ppm,
        }
    }
}

impl voice_processor_config {
    fn to_core(self) -> Result<CaptureConfig, voice_result> {
        let level = match self.suppression_level {
            VOICE_SUPPRESSION_LOW => SuppressionLevel::Low,
            VOICE_SUPPRESSION_MODERATE => SuppressionLevel::Moderate,
            VOICE_SUPPRESSION_HIGH => SuppressionLevel::High,
            VOICE_SUPPRESSION_VERY_HIGH => SuppressionLevel::VeryHigh,
            _ => return Err(voice_result::VOICE_ERR_INVALID_ARGUMENT),
        };
        if self.echo_delay_ms > 500
            || !(0.0..=MAX_BACKGROUND_MARGIN_DB).contains(&self.background_voice_margin_db)
        {
            return Err(voice_result::VOICE_ERR_INVALID_ARGUMENT);
        }
        Ok(CaptureConfig {
            high_pass: self.high_pass,
            echo_cancel: self.echo_cancel,
            noise_suppression: self.noise_suppression.then_some(level),
            gain_control: self.gain_control,
            vad: self.speech_detection,
            vad_config: SpeechVadConfig {
                background_margin_db: self.background_voice_margin_db,
                ..SpeechVadConfig::default()
            },
            echo_delay_ms: self.echo_delay_ms,
        })
    }

    pub(crate) fn defaults() -> Self {
        voice_processor_config {
            high_pass: true,
            echo_cancel: true,
            noise_suppression: true,
            suppression_level: VOICE_SUPPRESSION_HIGH,
            gain_control: true,
            speech_detection: true,
            echo_delay_ms: CaptureConfig::default().echo_delay_ms,
            background_voice_margin_db: SpeechVadConfig::default().background_margin_db,
        }
    }
}

/// Converts the C stage settings for the client (`voice_client_config.capture`).
pub(crate) fn capture_config(c: &voice_processor_config) -> Result<CaptureConfig, voice_result> {
    c.to_core()
}

struct ProcState(CaptureProcessor);

impl Kind for ProcState {
    const TAG: u32 = 0x4150_4d31; // "APM1"
}

/// An opaque capture processor handle. Never constructed in Rust: pointers to it are handle cells.
pub struct voice_processor {
    _opaque: [u8; 0],
}

/// Writes the default stages (all on, `VOICE_SUPPRESSION_HIGH`, 60 ms delay hint) to `*out`.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn voice_processor_config_default(
    out: *mut voice_processor_config,
) -> voice_result {
    ffi_guard!({
        let out = try_ptr!(mut out);
        *out = voice_processor_config::defaults();
        voice_result::VOICE_OK
    })
}

/// Creates a capture processor (48 kHz mono); `*out` receives a handle to free with
/// [`voice_processor_free`]. The configuration is copied. An unknown suppression level or a
/// delay over 500 ms or a background-voice margin outside 0..=40 dB (or NaN) is
/// `VOICE_ERR_INVALID_ARGUMENT` (`*out` untouched).
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn voice_processor_new(
    config: *const voice_processor_config,
    out: *mut *mut voice_processor,
) -> voice_result {
    ffi_guard!({
        let c = try_ptr!(config);
        if out.is_null() {
            return voice_result::VOICE_ERR_NULL;
        }
        let cfg = try_res!(c.to_core());
        let st = ProcState(CaptureProcessor::new(cfg));
        // SAFETY: checked non-null.
        unsafe { *out = Handle::into_raw(st).cast() };
        voice_result::VOICE_OK
    })
}

/// Frees a processor. NULL is accepted; a second free returns `VOICE_ERR_INVALID_HANDLE`.
///
/// Thread safety: no other call on this processor may start afterwards.
#[no_mangle]
pub unsafe extern "C" fn voice_processor_free(processor: *mut voice_processor) -> voice_result {
    ffi_guard!({ unsafe { Handle::<ProcState>::free(processor.cast()) } })
}

/// Hands in far-end audio: what the loudspeaker is about to play, `frames` samples (a positive
/// multiple of `VOICE_PROCESSOR_CHUNK_SAMPLES`, 48 kHz mono). Call it with each playback block,
/// before the capture blocks it may echo into. A bad length is `VOICE_ERR_INVALID_ARGUMENT`.
///
/// Thread safety: one thread at a time per processor; a concurrent call returns `VOICE_ERR_BUSY`.
#[no_mangle]
pub unsafe extern "C" fn voice_processor_far_end(
    processor: *mut voice_processor,
    pcm: *const i16,
    frames: usize,
) -> voice_result {
    ffi_guard!({
        let mut st = try_res!(unsafe { Handle::<ProcState>::get_mut(processor.cast()) });
        if pcm.is_null() {
            return voice_result::VOICE_ERR_NULL;
        }
        if frames == 0 || !frames.is_multiple_of(VOICE_PROCESSOR_CHUNK_SAMPLES) {
            return voice_result::VOICE_ERR_INVALID_ARGUMENT;
        }
        // SAFETY: the caller passes `frames` readable samples at `pcm` (checked non-null).
        let pcm = unsafe { std::slice::from_raw_parts(pcm, frames) };
        match st.0.far_end(pcm) {
            Ok(()) => voice_result::VOICE_OK,
            Err(_) => voice_result::VOICE_ERR_INVALID_ARGUMENT,
        }
    })
}

/// Cleans `frames` captured samples in place (a positive multiple of
/// `VOICE_PROCESSOR_CHUNK_SAMPLES`, 48 kHz mono) and writes whether they hold speech to
/// `*speech` (false when speech detection is off). A bad length is `VOICE_ERR_INVALID_ARGUMENT`
/// (`pcm` untouched). With noise suppression on, the output lags the input by one 10 ms chunk.
///
/// Thread safety: one thread at a time per processor; a concurrent call returns `VOICE_ERR_BUSY`.
#[no_mangle]
pub unsafe extern "C" fn voice_processor_process(
    processor: *mut voice_processor,
    pcm: *mut i16,
    frames: usize,
    speech: *mut bool,
) -> voice_result {
    ffi_guard!({
        let mut st = try_res!(unsafe { Handle::<ProcState>::get_mut(processor.cast()) });
        if pcm.is_null() || speech.is_null() {
            return voice_result::VOICE_ERR_NULL;
        }
        if frames == 0 || !frames.is_multiple_of(VOICE_PROCESSOR_CHUNK_SAMPLES) {
            return voice_result::VOICE_ERR_INVALID_ARGUMENT;
        }
        // SAFETY: the caller passes `frames` writable samples at `pcm` (checked non-null).
        let pcm = unsafe { std::slice::from_raw_parts_mut(pcm, frames) };
        match st.0.process(pcm) {
            Ok(s) => {
                // SAFETY: checked non-null.
                unsafe { *speech = s };
                voice_result::VOICE_OK
            }
            Err(_) => voice_result::VOICE_ERR_INVALID_ARGUMENT,
        }
    })
}

/// Updates the echo path delay hint (0..=500 ms; more is `VOICE_ERR_INVALID_ARGUMENT`).
///
/// Thread safety: one thread at a time per processor; a concurrent call returns `VOICE_ERR_BUSY`.
#[no_mangle]
pub unsafe extern "C" fn voice_processor_set_echo_delay(
    processor: *mut voice_processor,
    delay_ms: u32,
) -> voice_result {
    ffi_guard!({
        let mut st = try_res!(unsafe { Handle::<ProcState>::get_mut(processor.cast()) });
        if delay_ms > 500 {
            return voice_result::VOICE_ERR_INVALID_ARGUMENT;
        }
        st.0.set_echo_delay_ms(delay_ms);
        voice_result::VOICE_OK
    })
}

/// Writes what the processor measured on the last frame to `*out`.
///
/// Thread safety: one thread at a time per processor; a concurrent call returns `VOICE_ERR_BUSY`.
#[no_mangle]
pub unsafe extern "C" fn voice_processor_stats(
    processor: *mut voice_processor,
    out: *mut voice_capture_stats,
) -> voice_result {
    ffi_guard!({
        let st = try_res!(unsafe { Handle::<ProcState>::get_mut(processor.cast()) });
        let out = try_ptr!(mut out);
        *out = (&st.0.stats()).into();
        voice_result::VOICE_OK
    })
}
