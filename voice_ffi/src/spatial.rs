//! Positional audio in the C ABI: positions on the sans-IO encoder and receiver, a stateful
//! stereo spatializer for games that mix themselves, and the client's position, listener pose and
//! channel distance model. Every value is validated here, so an out-of-range position or pose is
//! `VOICE_ERR_INVALID_ARGUMENT` at the call and never reaches the engine.

use voice_core::proto::udp::Position;
use voice_core::spatial::{
    Attenuation, DistanceModel, EarParams, ListenerPose, SpatialVoice, STEREO_FRAME_SAMPLES,
};
use voice_core::stream::Sender;
use voice_core::FRAME_SAMPLES;

use crate::client::{state, voice_client};
use crate::handle::{Handle, Kind};
use crate::stream::{voice_encoder, voice_receiver, RxState};
use crate::{ffi_guard, try_ptr, try_res, voice_result};

/// Distance model: no attenuation (still silent beyond `max_distance`).
pub const VOICE_DISTANCE_NONE: u32 = 0;
/// Distance model: inverse distance, clamped (OpenAL `AL_INVERSE_DISTANCE_CLAMPED`).
pub const VOICE_DISTANCE_INVERSE: u32 = 1;
/// Distance model: linear, clamped (OpenAL `AL_LINEAR_DISTANCE_CLAMPED`).
pub const VOICE_DISTANCE_LINEAR: u32 = 2;
/// Distance model: exponential, clamped (OpenAL `AL_EXPONENT_DISTANCE_CLAMPED`).
pub const VOICE_DISTANCE_EXPONENTIAL: u32 = 3;
/// Interleaved stereo samples of one rendered frame (left, right, …).
pub const VOICE_STEREO_FRAME_SAMPLES: usize = 1920;
const _: () = assert!(VOICE_STEREO_FRAME_SAMPLES == STEREO_FRAME_SAMPLES);

/// A position in game units (x right, y up, −z ahead with the default listener orientation).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct voice_position {
    /// X.
    pub x: f32,
    /// Y.
    pub y: f32,
    /// Z.
    pub z: f32,
}

/// The listener's head: position and orientation (`forward` and `up` need not be unit length but
/// must not be zero or parallel).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct voice_listener_pose {
    /// Where the listener is.
    pub position: voice_position,
    /// Direction the listener faces.
    pub forward: voice_position,
    /// The listener's up direction.
    pub up: voice_position,
}

/// A distance model. Initialise with [`voice_attenuation_default`].
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct voice_attenuation {
    /// `VOICE_DISTANCE_*`.
    pub model: u32,
    /// Gain 1 below this distance (> 0).
    pub min_distance: f32,
    /// Silent beyond this distance (> `min_distance`).
    pub max_distance: f32,
    /// Rolloff factor (≥ 0; 1 = the model's natural slope).
    pub rolloff: f32,
}

/// An opaque spatializer handle: one per remote voice (it keeps the interaural delay history and
/// ramps between frames).
pub struct voice_spatializer {
    _opaque: [u8; 0],
}

impl Kind for SpatialVoice {
    const TAG: u32 = 0x5350_4131; // "SPA1"
}

fn position(p: &voice_position) -> Result<Position, voice_result> {
    let p = Position::new(p.x, p.y, p.z);
    if p.is_finite() {
        Ok(p)
    } else {
        Err(voice_result::VOICE_ERR_INVALID_ARGUMENT)
    }
}

fn pose(p: &voice_listener_pose) -> Result<ListenerPose, voice_result> {
    let pose = ListenerPose {
        position: position(&p.position)?,
        forward: [p.forward.x, p.forward.y, p.forward.z],
        up: [p.up.x, p.up.y, p.up.z],
    };
    pose.validate()
        .map(|()| pose)
        .map_err(|_| voice_result::VOICE_ERR_INVALID_ARGUMENT)
}

fn attenuation(a: &voice_attenuation) -> Result<Attenuation, voice_result> {
    let model = match a.model {
        VOICE_DISTANCE_NONE => DistanceModel::None,
        VOICE_DISTANCE_INVERSE => DistanceModel::Inverse,
        VOICE_DISTANCE_LINEAR => DistanceModel::Linear,
        VOICE_DISTANCE_EXPONENTIAL => DistanceModel::Exponential,
        _ => return Err(voice_result::VOICE_ERR_INVALID_ARGUMENT),
    };
    let att = Attenuation {
        model,
        min_distance: a.min_distance,
        max_distance: a.max_distance,
        rolloff: a.rolloff,
    };
    att.validate()
        .map(|()| att)
        .map_err(|_| voice_result::VOICE_ERR_INVALID_ARGUMENT)
}

/// Writes the default distance model (inverse, 1 to 50 units, rolloff 1) to `*out`.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn voice_attenuation_default(out: *mut voice_attenuation) -> voice_result {
    ffi_guard!({
        let out = try_ptr!(mut out);
        let d = Attenuation::default();
        *out = voice_attenuation {
            model: VOICE_DISTANCE_INVERSE,
            min_distance: d.min_distance,
            max_distance: d.max_distance,
            rolloff: d.rolloff,
        };
        voice_result::VOICE_OK
    })
}

/// Writes the gain (0..=1) of `*attenuation` at `distance` to `*gain`.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn voice_attenuation_gain(
    attenuation: *const voice_attenuation,
    distance: f32,
    gain: *mut f32,
) -> voice_result {
    ffi_guard!({
        let a = try_res!(attenuation_of(attenuation));
        let gain = try_ptr!(mut gain);
        if !(distance.is_finite() && distance >= 0.0) {
            return voice_result::VOICE_ERR_INVALID_ARGUMENT;
        }
        *gain = a.gain(distance);
        voice_result::VOICE_OK
    })
}

fn attenuation_of(a: *const voice_attenuation) -> Result<Attenuation, voice_result> {
    // SAFETY: the caller passes NULL or a valid pointer.
    match unsafe { a.as_ref() } {
        Some(a) => attenuation(a),
        None => Err(voice_result::VOICE_ERR_NULL),
    }
}

/// Puts `*position` on every following datagram of this encoder (the positional block), or stops
/// with NULL. A non-finite coordinate is `VOICE_ERR_INVALID_ARGUMENT` and changes nothing.
///
/// Thread safety: one thread at a time per encoder; a concurrent call returns `VOICE_ERR_BUSY`.
#[no_mangle]
pub unsafe extern "C" fn voice_encoder_set_position(
    encoder: *mut voice_encoder,
    position: *const voice_position,
) -> voice_result {
    ffi_guard!({
        let mut s = try_res!(unsafe { Handle::<Sender>::get_mut(encoder.cast()) });
        // SAFETY: NULL or a valid pointer (caller's contract).
        let p = match unsafe { position.as_ref() } {
            Some(p) => Some(try_res!(self::position(p))),
            None => None,
        };
        match s.set_position(p) {
            Ok(()) => voice_result::VOICE_OK,
            Err(_) => voice_result::VOICE_ERR_INVALID_ARGUMENT,
        }
    })
}

/// Writes the last position this receiver's sender put on its datagrams to `*out` and sets
/// `*known` to true; when none arrived yet, `*known` is false and `*out` is left alone.
///
/// Thread safety: one thread at a time per receiver; a concurrent call returns `VOICE_ERR_BUSY`.
#[no_mangle]
pub unsafe extern "C" fn voice_receiver_position(
    receiver: *mut voice_receiver,
    out: *mut voice_position,
    known: *mut bool,
) -> voice_result {
    ffi_guard!({
        let st = try_res!(unsafe { Handle::<RxState>::get_mut(receiver.cast()) });
        if out.is_null() || known.is_null() {
            return voice_result::VOICE_ERR_NULL;
        }
        // SAFETY: both checked non-null; the caller owns them.
        unsafe {
            if let Some(p) = st.position {
                *out = voice_position {
                    x: p.x,
                    y: p.y,
                    z: p.z,
                };
                *known = true;
            } else {
                *known = false;
            }
        }
        voice_result::VOICE_OK
    })
}

/// Creates a spatializer for one remote voice; `*out` receives a handle to release with
/// [`voice_spatializer_free`].
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn voice_spatializer_new(out: *mut *mut voice_spatializer) -> voice_result {
    ffi_guard!({
        if out.is_null() {
            return voice_result::VOICE_ERR_NULL;
        }
        let h = Handle::into_raw(SpatialVoice::new());
        // SAFETY: checked non-null.
        unsafe { *out = h.cast() };
        voice_result::VOICE_OK
    })
}

/// Releases a spatializer. NULL is a no-op.
///
/// Thread safety: no other call on this spatializer may start afterwards.
#[no_mangle]
pub unsafe extern "C" fn voice_spatializer_free(
    spatializer: *mut voice_spatializer,
) -> voice_result {
    ffi_guard!({ unsafe { Handle::<SpatialVoice>::free(spatializer.cast()) } })
}

/// Renders one mono 20 ms frame (`pcm`, `frames` ≥ `VOICE_FRAME_SAMPLES`; the first 960 are used)
/// of a voice at `*source`, heard by `*listener` through `*attenuation` at `volume` (0..=4), and
/// **adds** it to the interleaved stereo accumulator `out` (`out_len` ≥
/// `VOICE_STEREO_FRAME_SAMPLES`, full scale ±1.0): clear it once per tick, render every voice,
/// then convert. Level and delay glide from the previous call's, so a jump does not click.
///
/// Thread safety: one thread at a time per spatializer; a concurrent call returns `VOICE_ERR_BUSY`.
#[no_mangle]
pub unsafe extern "C" fn voice_spatializer_render(
    spatializer: *mut voice_spatializer,
    listener: *const voice_listener_pose,
    source: *const voice_position,
    attenuation: *const voice_attenuation,
    volume: f32,
    pcm: *const i16,
    frames: usize,
    out: *mut f32,
    out_len: usize,
) -> voice_result {
    ffi_guard!({
        let mut voice = try_res!(unsafe { Handle::<SpatialVoice>::get_mut(spatializer.cast()) });
        let listener = try_res!(pose(try_ptr!(listener)));
        let source = try_res!(position(try_ptr!(source)));
        let att = try_res!(attenuation_of(attenuation));
        if pcm.is_null() || out.is_null() {
            return voice_result::VOICE_ERR_NULL;
        }
        if !(0.0..=4.0).contains(&volume) {
            return voice_result::VOICE_ERR_INVALID_ARGUMENT;
        }
        if frames < FRAME_SAMPLES || out_len < STEREO_FRAME_SAMPLES {
            return voice_result::VOICE_ERR_BUFFER_TOO_SMALL;
        }
        // SAFETY: the caller promises `frames` readable samples and `out_len` writable floats.
        let (pcm, out) = unsafe {
            (
                &*pcm.cast::<[i16; FRAME_SAMPLES]>(),
                &mut *out.cast::<[f32; STEREO_FRAME_SAMPLES]>(),
            )
        };
        let ears = EarParams::for_source(&listener, source, &att, volume);
        voice.render(pcm, ears, out);
        voice_result::VOICE_OK
    })
}

/// Sets this client's position (carried on its voice and pings; the relay culls by it in 3D
/// channels), or stops sending one with NULL.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn voice_client_set_position(
    client: *const voice_client,
    position: *const voice_position,
) -> voice_result {
    ffi_guard!({
        let st = try_res!(state(client));
        // SAFETY: NULL or a valid pointer (caller's contract).
        let p = match unsafe { position.as_ref() } {
            Some(p) => Some(try_res!(self::position(p))),
            None => None,
        };
        st.client.set_position(p);
        voice_result::VOICE_OK
    })
}

/// Sets the listener's pose (call as the player moves or turns).
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn voice_client_set_listener(
    client: *const voice_client,
    listener: *const voice_listener_pose,
) -> voice_result {
    ffi_guard!({
        let st = try_res!(state(client));
        let pose = try_res!(pose(try_ptr!(listener)));
        st.client.set_listener(pose);
        voice_result::VOICE_OK
    })
}

/// Overrides the current channel's distance model, or returns to the relay's (3D channels) with
/// NULL. The client's own playback is mono: each talker gets its distance gain.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn voice_client_set_channel_attenuation(
    client: *const voice_client,
    attenuation: *const voice_attenuation,
) -> voice_result {
    ffi_guard!({
        let st = try_res!(state(client));
        let a = if attenuation.is_null() {
            None
        } else {
            Some(try_res!(attenuation_of(attenuation)))
        };
        st.client.set_channel_attenuation(a);
        voice_result::VOICE_OK
    })
}
