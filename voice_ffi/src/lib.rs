//! `voice_ffi`: the C ABI of the voice engine, in the manner of rustls-ffi and wasmtime's C API.
//!
//! Two levels, both complete:
//! 1. [`client`] — the batteries-included client (`voice_client_*`): connect, join, chat, whisper,
//!    push-to-talk / voice activity, mute / deafen, per-user volume, events polled or delivered to a
//!    callback, a stats snapshot, and audio either through the engine's own devices or owned by the
//!    game (`voice_client_push_capture` / `voice_client_pull_playback`).
//! 2. [`stream`] — sans-IO pieces for games that carry voice over their own netcode: an encoder
//!    (`voice_encoder_*`, 20 ms PCM → datagram bytes) and a per-sender receiver
//!    (`voice_receiver_*`: jitter buffer, decoder, PLC/FEC, metrics; bytes in with a time, one
//!    20 ms frame out per tick).
//!
//! Conventions (also at the top of `include/voice.h`): opaque handles with `_new`/`_free`; every
//! fallible function returns [`voice_result`] with stable values; out-params written only on
//! success; every buffer followed by its length; NULL → [`voice_result::VOICE_ERR_NULL`]; every
//! exported body runs inside [`ffi_guard!`], so a panic becomes
//! [`voice_result::VOICE_ERR_PANIC`] and never unwinds into C.
#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)]

pub mod client;
mod handle;
mod stats_worker;
pub mod stream;
// After the existing modules, so that their functions form the last blocks of include/voice.h:
// E2EE, then capture processing (issue 15), then the network path (issue 16), then positional
// audio (issue 21). The comments keep rustfmt from sorting the declarations (their order is the
// header's order).
pub mod e2ee;
pub mod processor;
// Network path (issue 16).
pub mod net;
// Positional audio (issue 21).
pub mod spatial;
// Permissions: kick and ban (issue 13).
pub mod admin;
// Scale-out: the cluster's directory of rooms and members (issue 18).
pub mod directory;
// Switching audio devices and files while connected (issue 19), last.
pub mod devices;

use std::ffi::c_char;

/// Version of this C ABI. Bumped on any incompatible change of the header.
///
/// 2: handles carry a kind tag, `VOICE_ERR_BUSY` and `VOICE_ERR_WRONG_SENDER`, the receiver takes a
/// `voice_receiver_config` (fixed or adaptive playout, expected sender), `voice_stream_stats`
/// gained counters, `voice_error_message` reports the size it needs.
///
/// 3: one stream-stats struct: `voice_remote_stats` holds a `voice_stream_stats` (`stream`)
/// instead of nine of its fields, and `voice_stream_stats` gained `resyncs`,
/// `frames_dred_recovered`, `frames_skipped` and `frames_stalled`.
///
/// 4: `voice_capture_stats` gained `clock_drift_ppm` (the echo canceller follows clock drift
/// between loudspeaker and microphone).
///
/// 5: `voice_processor_config` (and so `voice_client_config.capture`) gained
/// `background_voice_margin_db` (the speech detector ignores background voices).
pub const VOICE_ABI_VERSION: u32 = 5;
/// Major version of the library (`voice_version()` as numbers; the shared library's SONAME is
/// `libvoice.so.MAJOR`).
pub const VOICE_VERSION_MAJOR: u32 = 0;
/// Minor version of the library.
pub const VOICE_VERSION_MINOR: u32 = 1;
/// Patch version of the library.
pub const VOICE_VERSION_PATCH: u32 = 0;
// The header's literals must follow the crate version (cbindgen cannot evaluate `env!`).
const _: () = assert!(
    VOICE_VERSION_MAJOR == parse_u32(env!("CARGO_PKG_VERSION_MAJOR"))
        && VOICE_VERSION_MINOR == parse_u32(env!("CARGO_PKG_VERSION_MINOR"))
        && VOICE_VERSION_PATCH == parse_u32(env!("CARGO_PKG_VERSION_PATCH")),
    "update VOICE_VERSION_* to the crate version"
);

const fn parse_u32(s: &str) -> u32 {
    let b = s.as_bytes();
    let mut i = 0;
    let mut v = 0u32;
    while i < b.len() {
        v = v * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    v
}

/// Result of every fallible call. Values are stable and never renumbered.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum voice_result {
    /// Success.
    VOICE_OK = 0,
    /// A required pointer was NULL.
    VOICE_ERR_NULL = 1,
    /// An argument is out of range or malformed (e.g. not UTF-8, bad address).
    VOICE_ERR_INVALID_ARGUMENT = 2,
    /// The output buffer is too small; nothing was written.
    VOICE_ERR_BUFFER_TOO_SMALL = 3,
    /// The handle was already freed (or is not a handle of this library).
    VOICE_ERR_INVALID_HANDLE = 4,
    /// The client is not connected to a relay.
    VOICE_ERR_NOT_CONNECTED = 5,
    /// The Opus codec failed.
    VOICE_ERR_CODEC = 6,
    /// An operating-system I/O call failed.
    VOICE_ERR_IO = 7,
    /// An audio device or file could not be opened.
    VOICE_ERR_AUDIO = 8,
    /// A datagram or message was malformed; it was dropped and counted.
    VOICE_ERR_MALFORMED = 9,
    /// The call is not possible in this configuration (e.g. pulling playback when the engine
    /// owns the audio device).
    VOICE_ERR_UNSUPPORTED = 10,
    /// A panic was caught at the boundary (a bug in this library).
    VOICE_ERR_PANIC = 11,
    /// Another thread is inside a call on this handle (an encoder, receiver or audio ring is
    /// used by one thread at a time, and a handle in use cannot be freed). Nothing was done;
    /// never blocks.
    VOICE_ERR_BUSY = 12,
    /// A datagram from another sender than the one this receiver serves; dropped and counted
    /// (`voice_stream_stats.datagrams_wrong_sender`).
    VOICE_ERR_WRONG_SENDER = 13,
    /// End-to-end: the frame did not decrypt (bad tag, replay, unknown key id, malformed) and was
    /// dropped; the receiver conceals it.
    VOICE_ERR_DECRYPT = 14,
}

impl voice_result {
    fn message(self) -> &'static str {
        match self {
            Self::VOICE_OK => "ok",
            Self::VOICE_ERR_NULL => "a required pointer was NULL",
            Self::VOICE_ERR_INVALID_ARGUMENT => "invalid argument",
            Self::VOICE_ERR_BUFFER_TOO_SMALL => "output buffer too small",
            Self::VOICE_ERR_INVALID_HANDLE => "handle already freed or not a handle",
            Self::VOICE_ERR_NOT_CONNECTED => "not connected to a relay",
            Self::VOICE_ERR_CODEC => "codec error",
            Self::VOICE_ERR_IO => "i/o error",
            Self::VOICE_ERR_AUDIO => "audio device or file error",
            Self::VOICE_ERR_MALFORMED => "malformed input dropped",
            Self::VOICE_ERR_UNSUPPORTED => "not supported in this configuration",
            Self::VOICE_ERR_PANIC => "internal panic caught at the C boundary",
            Self::VOICE_ERR_BUSY => "handle in use by another thread",
            Self::VOICE_ERR_WRONG_SENDER => "datagram from another sender dropped",
            Self::VOICE_ERR_DECRYPT => "end-to-end decryption failed; frame dropped",
        }
    }
}

/// Runs an FFI body inside the panic boundary: a panic becomes `VOICE_ERR_PANIC`.
#[macro_export]
#[doc(hidden)]
macro_rules! ffi_guard {
    ($body:block) => {{
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(
            || -> $crate::voice_result { $body },
        )) {
            Ok(r) => r,
            Err(_) => $crate::voice_result::VOICE_ERR_PANIC,
        }
    }};
}

/// Dereferences a pointer argument or returns `VOICE_ERR_NULL`.
#[macro_export]
#[doc(hidden)]
macro_rules! try_ptr {
    ($p:expr) => {
        match unsafe { $p.as_ref() } {
            Some(r) => r,
            None => return $crate::voice_result::VOICE_ERR_NULL,
        }
    };
    (mut $p:expr) => {
        match unsafe { $p.as_mut() } {
            Some(r) => r,
            None => return $crate::voice_result::VOICE_ERR_NULL,
        }
    };
}

/// Evaluates a `Result<T, voice_result>` or returns the error code.
#[macro_export]
#[doc(hidden)]
macro_rules! try_res {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(code) => return code,
        }
    };
}

/// Copies `s` into a C buffer as NUL-terminated UTF-8, truncating at a character boundary.
pub(crate) fn copy_str(s: &str, dst: &mut [c_char]) -> usize {
    if dst.is_empty() {
        return 0;
    }
    let mut n = s.len().min(dst.len() - 1);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    for (d, b) in dst.iter_mut().zip(&s.as_bytes()[..n]) {
        *d = *b as c_char;
    }
    dst[n] = 0;
    n
}

/// The library version as a static NUL-terminated string (never freed).
///
/// Thread safety: any thread.
#[no_mangle]
pub extern "C" fn voice_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The ABI version this library was built with (compare with `VOICE_ABI_VERSION`).
///
/// Thread safety: any thread.
#[no_mangle]
pub extern "C" fn voice_abi_version() -> u32 {
    VOICE_ABI_VERSION
}

/// Renders `code` as text (unknown codes get a generic text), in the manner of `snprintf`:
/// `*written` always receives the full length of the text in bytes, without the NUL, whatever
/// `len` is; `buf` receives as much of it as fits in `len - 1` bytes (cut at a character
/// boundary) and a NUL. Returns `VOICE_OK` when the whole text fitted and
/// `VOICE_ERR_BUFFER_TOO_SMALL` when it was cut (`buf` then holds the cut text when `len` > 0).
/// `len` = 0 with `buf` NULL asks for the size only: allocate `*written + 1` bytes.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn voice_error_message(
    code: u32,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> voice_result {
    ffi_guard!({
        if written.is_null() || (buf.is_null() && len != 0) {
            return voice_result::VOICE_ERR_NULL;
        }
        let text = result_from_u32(code).map_or("unknown result code", voice_result::message);
        if len > 0 {
            // SAFETY: the caller promises `buf` holds `len` bytes.
            let dst = unsafe { std::slice::from_raw_parts_mut(buf, len) };
            copy_str(text, dst);
        }
        // SAFETY: checked non-null above.
        unsafe { *written = text.len() };
        if text.len() < len {
            voice_result::VOICE_OK
        } else {
            voice_result::VOICE_ERR_BUFFER_TOO_SMALL
        }
    })
}

fn result_from_u32(v: u32) -> Option<voice_result> {
    use voice_result::*;
    Some(match v {
        0 => VOICE_OK,
        1 => VOICE_ERR_NULL,
        2 => VOICE_ERR_INVALID_ARGUMENT,
        3 => VOICE_ERR_BUFFER_TOO_SMALL,
        4 => VOICE_ERR_INVALID_HANDLE,
        5 => VOICE_ERR_NOT_CONNECTED,
        6 => VOICE_ERR_CODEC,
        7 => VOICE_ERR_IO,
        8 => VOICE_ERR_AUDIO,
        9 => VOICE_ERR_MALFORMED,
        10 => VOICE_ERR_UNSUPPORTED,
        11 => VOICE_ERR_PANIC,
        12 => VOICE_ERR_BUSY,
        13 => VOICE_ERR_WRONG_SENDER,
        14 => VOICE_ERR_DECRYPT,
        _ => return None,
    })
}

/// Reads a NUL-terminated UTF-8 string argument.
pub(crate) unsafe fn c_str<'a>(p: *const c_char) -> Result<&'a str, voice_result> {
    if p.is_null() {
        return Err(voice_result::VOICE_ERR_NULL);
    }
    // SAFETY: the caller promises a NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| voice_result::VOICE_ERR_INVALID_ARGUMENT)
}

#[cfg(test)]
mod result_tests {
    use super::*;

    #[test]
    fn every_result_code_has_its_own_message() {
        // The codes are dense from 0; the first unknown one ends them.
        let known: Vec<voice_result> = (0..64).map_while(result_from_u32).collect();
        assert_eq!(known.last(), Some(&voice_result::VOICE_ERR_DECRYPT));
        for (v, r) in known.iter().enumerate() {
            assert_eq!(*r as u32, v as u32);
        }
        let mut messages: Vec<&str> = known.iter().map(|r| r.message()).collect();
        messages.sort();
        messages.dedup();
        assert_eq!(messages.len(), known.len());
        assert!(result_from_u32(known.len() as u32).is_none());
    }
}
