//! Switching audio while connected (issue 19): the capture or playback device (or WAV file) of a
//! running client is replaced without reconnecting; the session, channel, chat, per-user
//! settings and jitter buffers stay. Wraps [`::voice_client::Client::set_input`] and
//! [`::voice_client::Client::set_output`].
//!
//! The new stream is opened on the calling thread (a device open can take tens of ms, a WAV
//! file is read and resampled whole), then swapped in by the engine thread between two frames;
//! the call returns once the old stream is closed. If it cannot be opened the old one stays,
//! the call returns `VOICE_ERR_AUDIO`, and a `VOICE_EVENT_AUDIO_NOTICE` says why in words.
//! A client whose game owns the audio (`VOICE_AUDIO_APP`) has nothing to switch:
//! `VOICE_ERR_UNSUPPORTED`.

use std::ffi::c_char;

use ::voice_client::{AudioError, AudioInput, AudioOutput};

use crate::client::{state, voice_client, ClientState};
use crate::{c_str, ffi_guard, try_res, voice_result};

/// The result code of a switch.
fn switched(r: Result<(), AudioError>) -> voice_result {
    match r {
        Ok(()) => voice_result::VOICE_OK,
        // The engine thread ended: the connection failed for good (or was never allowed).
        Err(AudioError::EngineStopped) => voice_result::VOICE_ERR_NOT_CONNECTED,
        Err(_) => voice_result::VOICE_ERR_AUDIO,
    }
}

/// An optional NUL-terminated UTF-8 string: NULL or empty is `None`.
unsafe fn optional_name(p: *const c_char) -> Result<Option<String>, voice_result> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller promises a NUL-terminated string.
    let s = unsafe { c_str(p) }?;
    Ok((!s.is_empty()).then(|| s.to_owned()))
}

/// Whether the game owns this client's audio (`VOICE_AUDIO_APP`). A ring in use by another
/// thread's push or pull is the game's too.
fn app_owned(st: &ClientState) -> bool {
    let capture = st.capture.try_lock().map_or(true, |g| g.is_some());
    let playback = st.playback.try_lock().map_or(true, |g| g.is_some());
    capture || playback
}

/// Switches capture to the input device named `name` (as the system lists it; NULL or "" is the
/// default device) without reconnecting. `VOICE_ERR_AUDIO` when it cannot be opened (no such
/// device, or no sound-card support in this build): the current input stays, and a
/// `VOICE_EVENT_AUDIO_NOTICE` says why. `VOICE_ERR_INVALID_ARGUMENT` for a name that is not
/// UTF-8; `VOICE_ERR_UNSUPPORTED` with `VOICE_AUDIO_APP`; `VOICE_ERR_NOT_CONNECTED` when the
/// client has stopped for good. `name` is copied.
///
/// Thread safety: any thread; blocks while the device opens (not on the network).
#[no_mangle]
pub unsafe extern "C" fn voice_client_set_input_device(
    client: *const voice_client,
    name: *const c_char,
) -> voice_result {
    ffi_guard!({
        let st = try_res!(state(client));
        // SAFETY: the caller promises NULL or a NUL-terminated string.
        let name = try_res!(unsafe { optional_name(name) });
        if app_owned(&st) {
            return voice_result::VOICE_ERR_UNSUPPORTED;
        }
        switched(st.client.set_input(AudioInput::Device(name)))
    })
}

/// Switches playback to the output device named `name` (NULL or "": the default device) without
/// reconnecting. Errors as [`voice_client_set_input_device`]. `name` is copied.
///
/// Thread safety: any thread; blocks while the device opens (not on the network).
#[no_mangle]
pub unsafe extern "C" fn voice_client_set_output_device(
    client: *const voice_client,
    name: *const c_char,
) -> voice_result {
    ffi_guard!({
        let st = try_res!(state(client));
        // SAFETY: the caller promises NULL or a NUL-terminated string.
        let name = try_res!(unsafe { optional_name(name) });
        if app_owned(&st) {
            return voice_result::VOICE_ERR_UNSUPPORTED;
        }
        switched(st.client.set_output(AudioOutput::Device(name)))
    })
}

/// Switches capture to the WAV file at `path` (any rate and channel count; played from its
/// start, once or `looped`) without reconnecting. `VOICE_ERR_NULL` for a NULL `path`,
/// `VOICE_ERR_AUDIO` when it cannot be read (the current input stays; a
/// `VOICE_EVENT_AUDIO_NOTICE` says why); other errors as [`voice_client_set_input_device`].
///
/// Thread safety: any thread; blocks while the file is read.
#[no_mangle]
pub unsafe extern "C" fn voice_client_set_input_wav(
    client: *const voice_client,
    path: *const c_char,
    looped: bool,
) -> voice_result {
    ffi_guard!({
        let st = try_res!(state(client));
        // SAFETY: the caller promises a NUL-terminated string.
        let path = try_res!(unsafe { c_str(path) });
        if app_owned(&st) {
            return voice_result::VOICE_ERR_UNSUPPORTED;
        }
        switched(st.client.set_input(AudioInput::Wav {
            path: path.into(),
            looped,
        }))
    })
}

/// Switches playback to recording into a new WAV file at `path` (48 kHz mono 16-bit; it starts
/// at the switch) without reconnecting. A recording it replaces is finalised. `VOICE_ERR_NULL`
/// for a NULL `path`, `VOICE_ERR_AUDIO` when it cannot be created (the current output stays);
/// other errors as [`voice_client_set_input_device`].
///
/// Thread safety: any thread; blocks while the files are created and finalised.
#[no_mangle]
pub unsafe extern "C" fn voice_client_set_output_wav(
    client: *const voice_client,
    path: *const c_char,
) -> voice_result {
    ffi_guard!({
        let st = try_res!(state(client));
        // SAFETY: the caller promises a NUL-terminated string.
        let path = try_res!(unsafe { c_str(path) });
        if app_owned(&st) {
            return voice_result::VOICE_ERR_UNSUPPORTED;
        }
        switched(st.client.set_output(AudioOutput::Wav(path.into())))
    })
}
