//! End-to-end encryption in the C API (SFrame, RFC 9605; see `docs/PROTOCOL.md`).
//!
//! * For the client: `voice_client_config.e2ee_mode` (and password / identity fields),
//!   [`voice_client_e2ee_stats`] (drops by reason) and [`voice_client_safety_number`].
//! * For games that own their transport (the sans-IO encoder and receiver), keys come from the
//!   game: a [`voice_e2ee_sealer`] seals the payload of [`voice_encoder_encode_sealed`] with one
//!   sender key (key id + 32-byte base key); a [`voice_e2ee_opener`] holds the keys of one remote
//!   sender and opens in [`voice_receiver_push_sealed`]. [`voice_e2ee_password_key`] derives the
//!   base key of password mode, so a game can interoperate with password-mode clients.

use voice_core::e2ee::{
    DecryptFailures, E2eeMode, FrameEncryptor, PasswordKeys, SenderKeyRing, BASE_KEY_LEN,
};
use voice_core::proto::udp;
use voice_core::proto::SessionToken;
use voice_core::stream::{SendError, Sender};
use voice_core::{Time, FRAME_SAMPLES};

use crate::client::{voice_client, voice_client_config};
use crate::handle::{Handle, Kind};
use crate::stream::{voice_encoder, voice_receiver, RxState};
use crate::{ffi_guard, try_res, voice_result};

/// `voice_client_config.e2ee_mode`: no end-to-end encryption.
pub const VOICE_E2EE_OFF: u32 = 0;
/// `voice_client_config.e2ee_mode`: keys derived from `e2ee_password`.
pub const VOICE_E2EE_PASSWORD: u32 = 1;
/// `voice_client_config.e2ee_mode`: identity keys, sender keys wrapped per member.
pub const VOICE_E2EE_KEYS: u32 = 2;
/// Bytes of a sender base key.
pub const VOICE_E2EE_KEY_LEN: usize = 32;
/// Most bytes sealing adds to a datagram.
pub const VOICE_E2EE_MAX_OVERHEAD: usize = 10;
const _: () = assert!(VOICE_E2EE_KEY_LEN == BASE_KEY_LEN);
const _: () = assert!(VOICE_E2EE_MAX_OVERHEAD == voice_core::e2ee::MAX_OVERHEAD);

/// Reads the E2EE fields of a client configuration.
///
/// # Safety
/// The pointers in `cfg` must be valid for their stated lengths.
pub(crate) unsafe fn mode_from_config(cfg: &voice_client_config) -> Result<E2eeMode, voice_result> {
    match cfg.e2ee_mode {
        VOICE_E2EE_OFF => Ok(E2eeMode::Off),
        VOICE_E2EE_PASSWORD => {
            if cfg.e2ee_password.is_null() {
                return Err(voice_result::VOICE_ERR_NULL);
            }
            if cfg.e2ee_password_len == 0 {
                return Err(voice_result::VOICE_ERR_INVALID_ARGUMENT);
            }
            // SAFETY: the caller promises `e2ee_password_len` readable bytes.
            let pw =
                unsafe { std::slice::from_raw_parts(cfg.e2ee_password, cfg.e2ee_password_len) };
            Ok(E2eeMode::Password(pw.to_vec()))
        }
        VOICE_E2EE_KEYS => {
            let identity = if cfg.e2ee_identity.is_null() {
                None
            } else {
                let mut id = [0u8; 32];
                // SAFETY: the caller promises 32 readable bytes.
                id.copy_from_slice(unsafe { std::slice::from_raw_parts(cfg.e2ee_identity, 32) });
                Some(id)
            };
            Ok(E2eeMode::Keys {
                identity,
                lead: voice_core::e2ee::group::DEFAULT_LEAD,
            })
        }
        _ => Err(voice_result::VOICE_ERR_INVALID_ARGUMENT),
    }
}

/// End-to-end counters of a client.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct voice_e2ee_stats {
    /// `VOICE_E2EE_*` of the client.
    pub mode: u32,
    /// Frames sealed.
    pub sealed: u64,
    /// Frames opened.
    pub opened: u64,
    /// Dropped: authentication tag did not verify.
    pub decrypt_failed_bad_tag: u64,
    /// Dropped: replayed counter.
    pub decrypt_failed_replay: u64,
    /// Dropped: unknown key id (or E2EE off here).
    pub decrypt_failed_unknown_key_id: u64,
    /// Dropped: malformed frame.
    pub decrypt_failed_malformed: u64,
    /// Plaintext voice dropped because E2EE is on.
    pub plaintext_dropped: u64,
    /// Sender-key rotations.
    pub rotations: u64,
}

/// End-to-end encryption (SFrame, RFC 9605) — the functions of this feature follow.
///
/// Writes the client's end-to-end counters to `*out` (waits for the engine thread like
/// `voice_client_stats`; `VOICE_ERR_IO` if it does not answer).
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn voice_client_e2ee_stats(
    client: *const voice_client,
    out: *mut voice_e2ee_stats,
) -> voice_result {
    ffi_guard!({
        let st = try_res!(crate::client::state(client));
        if out.is_null() {
            return voice_result::VOICE_ERR_NULL;
        }
        let Some(s) = st.stats.snapshot() else {
            return voice_result::VOICE_ERR_IO;
        };
        let e = s.e2ee;
        let v = voice_e2ee_stats {
            mode: match e.mode {
                "password" => VOICE_E2EE_PASSWORD,
                "keys" => VOICE_E2EE_KEYS,
                _ => VOICE_E2EE_OFF,
            },
            sealed: e.sealed,
            opened: e.opened,
            decrypt_failed_bad_tag: e.decrypt_failed_bad_tag,
            decrypt_failed_replay: e.decrypt_failed_replay,
            decrypt_failed_unknown_key_id: e.decrypt_failed_unknown_key_id,
            decrypt_failed_malformed: e.decrypt_failed_malformed,
            plaintext_dropped: e.plaintext_dropped,
            rotations: e.rotations,
        };
        // SAFETY: checked non-null.
        unsafe { *out = v };
        voice_result::VOICE_OK
    })
}

/// Writes the safety number of `session` (0: this client's own) as NUL-terminated text
/// ("12345 67890 12345 67890") into `buf` (`len` ≥ 24); `*written` receives its length without
/// the NUL. `VOICE_ERR_UNSUPPORTED` outside identity-keys mode or for a member whose identity has
/// not arrived; `VOICE_ERR_BUFFER_TOO_SMALL` if `len` < 24.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn voice_client_safety_number(
    client: *const voice_client,
    session: u32,
    buf: *mut u8,
    len: usize,
    written: *mut usize,
) -> voice_result {
    ffi_guard!({
        let st = try_res!(crate::client::state(client));
        if buf.is_null() || written.is_null() {
            return voice_result::VOICE_ERR_NULL;
        }
        let Some(s) = st.stats.snapshot() else {
            return voice_result::VOICE_ERR_IO;
        };
        let number = if session == 0 || session == s.session.0 {
            s.e2ee.safety_number.clone()
        } else {
            s.e2ee
                .member_safety_numbers
                .iter()
                .find(|(m, _)| m.0 == session)
                .map(|(_, n)| n.clone())
        };
        let Some(number) = number else {
            return voice_result::VOICE_ERR_UNSUPPORTED;
        };
        if len < number.len() + 1 {
            return voice_result::VOICE_ERR_BUFFER_TOO_SMALL;
        }
        // SAFETY: the caller promises `len` writable bytes; checked above.
        let out = unsafe { std::slice::from_raw_parts_mut(buf, len) };
        out[..number.len()].copy_from_slice(number.as_bytes());
        out[number.len()] = 0;
        // SAFETY: checked non-null.
        unsafe { *written = number.len() };
        voice_result::VOICE_OK
    })
}

/// Derives the password-mode base key of `sender`'s key `kid` from `password` (`password_len`
/// bytes) into `out` (`VOICE_E2EE_KEY_LEN` bytes).
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn voice_e2ee_password_key(
    password: *const u8,
    password_len: usize,
    sender: u32,
    kid: u64,
    out: *mut u8,
) -> voice_result {
    ffi_guard!({
        if password.is_null() || out.is_null() {
            return voice_result::VOICE_ERR_NULL;
        }
        // SAFETY: the caller promises the lengths.
        let pw = unsafe { std::slice::from_raw_parts(password, password_len) };
        let key = PasswordKeys::new(pw).sender_base_key(SessionToken(sender), kid);
        // SAFETY: the caller promises VOICE_E2EE_KEY_LEN writable bytes.
        unsafe { std::ptr::copy_nonoverlapping(key.as_ptr(), out, BASE_KEY_LEN) };
        voice_result::VOICE_OK
    })
}

/// An opaque sealer (one sender key). Never constructed in Rust: pointers to it are handle cells.
pub struct voice_e2ee_sealer {
    _opaque: [u8; 0],
}

/// An opaque opener (the keys of one remote sender). Pointers to it are handle cells.
pub struct voice_e2ee_opener {
    _opaque: [u8; 0],
}

impl Kind for FrameEncryptor {
    const TAG: u32 = 0x5345_4131; // "SEA1"
}

struct Opener {
    ring: SenderKeyRing,
    failures: DecryptFailures,
}

impl Kind for Opener {
    const TAG: u32 = 0x4f50_4e31; // "OPN1"
}

fn key_slice<'a>(key: *const u8, key_len: usize) -> Result<&'a [u8], voice_result> {
    if key.is_null() {
        return Err(voice_result::VOICE_ERR_NULL);
    }
    if key_len != BASE_KEY_LEN {
        return Err(voice_result::VOICE_ERR_INVALID_ARGUMENT);
    }
    // SAFETY: the caller promises `key_len` readable bytes.
    Ok(unsafe { std::slice::from_raw_parts(key, key_len) })
}

/// Creates a sealer for key id `kid` (at most 2^24 − 1) with the 32-byte base `key` (copied);
/// its counter starts at 0. Release with [`voice_e2ee_sealer_free`]. Use a new key (and key id)
/// before the counter runs out: sealing then returns `VOICE_ERR_UNSUPPORTED`.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn voice_e2ee_sealer_new(
    kid: u64,
    key: *const u8,
    key_len: usize,
    out: *mut *mut voice_e2ee_sealer,
) -> voice_result {
    ffi_guard!({
        let key = try_res!(key_slice(key, key_len));
        if out.is_null() {
            return voice_result::VOICE_ERR_NULL;
        }
        let Ok(enc) = FrameEncryptor::new(kid, key) else {
            return voice_result::VOICE_ERR_INVALID_ARGUMENT;
        };
        // SAFETY: checked non-null.
        unsafe { *out = Handle::into_raw(enc).cast() };
        voice_result::VOICE_OK
    })
}

/// Frees a sealer (NULL accepted).
///
/// Thread safety: no other call on this sealer may start afterwards.
#[no_mangle]
pub unsafe extern "C" fn voice_e2ee_sealer_free(sealer: *mut voice_e2ee_sealer) -> voice_result {
    ffi_guard!({ unsafe { Handle::<FrameEncryptor>::free(sealer.cast()) } })
}

/// Like `voice_encoder_encode`, but the Opus payload is sealed with `sealer` and the datagram
/// carries the encrypted flag (at most `VOICE_E2EE_MAX_OVERHEAD` more bytes). On error nothing is
/// written and neither sequence number nor counter is used.
///
/// Thread safety: one thread at a time per encoder and per sealer (`VOICE_ERR_BUSY` otherwise).
#[no_mangle]
pub unsafe extern "C" fn voice_encoder_encode_sealed(
    encoder: *mut voice_encoder,
    sealer: *mut voice_e2ee_sealer,
    pcm: *const i16,
    frames: usize,
    target: u32,
    end_of_spurt: bool,
    out: *mut u8,
    out_len: usize,
    written: *mut usize,
) -> voice_result {
    ffi_guard!({
        let mut s = try_res!(unsafe { Handle::<Sender>::get_mut(encoder.cast()) });
        let mut k = try_res!(unsafe { Handle::<FrameEncryptor>::get_mut(sealer.cast()) });
        if pcm.is_null() || out.is_null() || written.is_null() {
            return voice_result::VOICE_ERR_NULL;
        }
        if frames != FRAME_SAMPLES {
            return voice_result::VOICE_ERR_INVALID_ARGUMENT;
        }
        // SAFETY: the caller promises the sizes.
        let pcm = unsafe { std::slice::from_raw_parts(pcm, frames) };
        // SAFETY: the caller promises `out_len` writable bytes.
        let out = unsafe { std::slice::from_raw_parts_mut(out, out_len) };
        let enc: &mut FrameEncryptor = &mut k;
        let mut seal = |m: &[u8], p: &[u8], o: &mut [u8]| enc.seal(m, p, o);
        let n = match s.encode_sealed(pcm, SessionToken(target), end_of_spurt, &mut seal, out) {
            Ok(n) => n,
            Err(SendError::Codec(_)) => return voice_result::VOICE_ERR_CODEC,
            Err(SendError::Wire(_)) => return voice_result::VOICE_ERR_BUFFER_TOO_SMALL,
            Err(SendError::Seal(voice_core::e2ee::E2eeError::BufferTooSmall { .. })) => {
                return voice_result::VOICE_ERR_BUFFER_TOO_SMALL
            }
            Err(SendError::Seal(_)) => return voice_result::VOICE_ERR_UNSUPPORTED,
        };
        // SAFETY: checked non-null.
        unsafe { *written = n };
        voice_result::VOICE_OK
    })
}

/// Creates an opener with no keys; release with [`voice_e2ee_opener_free`].
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn voice_e2ee_opener_new(out: *mut *mut voice_e2ee_opener) -> voice_result {
    ffi_guard!({
        if out.is_null() {
            return voice_result::VOICE_ERR_NULL;
        }
        let o = Opener {
            ring: SenderKeyRing::new(),
            failures: DecryptFailures::default(),
        };
        // SAFETY: checked non-null.
        unsafe { *out = Handle::into_raw(o).cast() };
        voice_result::VOICE_OK
    })
}

/// Frees an opener (NULL accepted).
///
/// Thread safety: no other call on this opener may start afterwards.
#[no_mangle]
pub unsafe extern "C" fn voice_e2ee_opener_free(opener: *mut voice_e2ee_opener) -> voice_result {
    ffi_guard!({ unsafe { Handle::<Opener>::free(opener.cast()) } })
}

/// Installs (or replaces) key `kid` with the 32-byte base `key` (copied). An opener holds the 4
/// most recently added keys; install the next key before the sender uses it.
///
/// Thread safety: one thread at a time per opener.
#[no_mangle]
pub unsafe extern "C" fn voice_e2ee_opener_add_key(
    opener: *mut voice_e2ee_opener,
    kid: u64,
    key: *const u8,
    key_len: usize,
) -> voice_result {
    ffi_guard!({
        let mut o = try_res!(unsafe { Handle::<Opener>::get_mut(opener.cast()) });
        let key = try_res!(key_slice(key, key_len));
        match o.ring.insert(kid, key) {
            Ok(()) => voice_result::VOICE_OK,
            Err(_) => voice_result::VOICE_ERR_INVALID_ARGUMENT,
        }
    })
}

/// Forgets key `kid` (after a member left and the sender re-keyed).
///
/// Thread safety: one thread at a time per opener.
#[no_mangle]
pub unsafe extern "C" fn voice_e2ee_opener_remove_key(
    opener: *mut voice_e2ee_opener,
    kid: u64,
) -> voice_result {
    ffi_guard!({
        let mut o = try_res!(unsafe { Handle::<Opener>::get_mut(opener.cast()) });
        o.ring.remove(kid);
        voice_result::VOICE_OK
    })
}

/// Writes the opener's drops by reason: bad tag, replay, unknown key id, malformed.
///
/// Thread safety: one thread at a time per opener.
#[no_mangle]
pub unsafe extern "C" fn voice_e2ee_opener_failures(
    opener: *mut voice_e2ee_opener,
    bad_tag: *mut u64,
    replay: *mut u64,
    unknown_key_id: *mut u64,
    malformed: *mut u64,
) -> voice_result {
    ffi_guard!({
        let o = try_res!(unsafe { Handle::<Opener>::get_mut(opener.cast()) });
        if bad_tag.is_null() || replay.is_null() || unknown_key_id.is_null() || malformed.is_null()
        {
            return voice_result::VOICE_ERR_NULL;
        }
        let f = o.failures;
        // SAFETY: checked non-null.
        unsafe {
            *bad_tag = f.bad_tag;
            *replay = f.replay;
            *unknown_key_id = f.unknown_key_id;
            *malformed = f.malformed;
        }
        voice_result::VOICE_OK
    })
}

/// Like `voice_receiver_push`, for a sealed datagram: opens it with `opener` first. A frame that
/// does not open is dropped (`VOICE_ERR_DECRYPT`, counted by reason in the opener) and the
/// receiver conceals it; a datagram without the encrypted flag is refused with
/// `VOICE_ERR_DECRYPT` too (counted as unknown key id): an encrypting game never plays plaintext.
///
/// Thread safety: one thread at a time per receiver and per opener.
#[no_mangle]
pub unsafe extern "C" fn voice_receiver_push_sealed(
    receiver: *mut voice_receiver,
    opener: *mut voice_e2ee_opener,
    now_us: u64,
    packet: *const u8,
    len: usize,
) -> voice_result {
    ffi_guard!({
        let mut st = try_res!(unsafe { Handle::<RxState>::get_mut(receiver.cast()) });
        let mut o = try_res!(unsafe { Handle::<Opener>::get_mut(opener.cast()) });
        if packet.is_null() {
            return voice_result::VOICE_ERR_NULL;
        }
        // SAFETY: the caller promises `len` readable bytes.
        let bytes = unsafe { std::slice::from_raw_parts(packet, len) };
        let d = match udp::parse(bytes) {
            Ok(d) if d.header.kind == udp::DatagramKind::Voice => d,
            _ => {
                st.malformed += 1;
                return voice_result::VOICE_ERR_MALFORMED;
            }
        };
        let from = d.header.sender;
        match st.sender {
            Some(s) if s != from => {
                st.wrong_sender += 1;
                return voice_result::VOICE_ERR_WRONG_SENDER;
            }
            Some(_) => {}
            None => st.sender = Some(from),
        }
        if !d.header.flags.contains(udp::Flags::ENCRYPTED) {
            o.failures
                .count(voice_core::e2ee::DecryptError::UnknownKeyId);
            return voice_result::VOICE_ERR_DECRYPT;
        }
        let o = &mut *o;
        match o.ring.open(udp::metadata(bytes, &d), d.payload) {
            Ok((_, plain)) => {
                // The positional block is part of the authenticated metadata.
                if d.position.is_some() {
                    st.position = d.position;
                }
                let _ = st
                    .rx
                    .handle_datagram(Time::from_micros(now_us), &d.header, plain);
                voice_result::VOICE_OK
            }
            Err(e) => {
                o.failures.count(e);
                voice_result::VOICE_ERR_DECRYPT
            }
        }
    })
}
