//! Permissions (issue 13): an admin removes a session from the relay (`voice_client_kick`,
//! `voice_client_ban`), and the events that report removals (`VOICE_EVENT_REMOVED` to the
//! removed client, `VOICE_EVENT_USER_REMOVED` to the admin).
//!
//! The relay decides: a client whose access token lacks the `admin` claim gets
//! `VOICE_EVENT_ERROR` with the `Forbidden` code (11) and nothing changes. A removed client does
//! not reconnect on its own, whatever its `reconnect` setting.

use std::ffi::c_char;

use ::voice_client::{Removal, SessionToken};

use crate::client::{state, voice_client, voice_event};
use crate::{c_str, ffi_guard, try_res, voice_result};

/// The relay ended our session (`code`: `VOICE_REMOVAL_*`; `name`: the admin's name, empty when
/// the relay did it; `text`: the reason; `value`: ban length in seconds, 0 unless banned). The
/// connection closes next (`VOICE_EVENT_DISCONNECTED`) and is not retried.
pub const VOICE_EVENT_REMOVED: u32 = 18;
/// A session we kicked or banned is gone (`session`, `name`; `value`: ban length in seconds,
/// 0 for a kick).
pub const VOICE_EVENT_USER_REMOVED: u32 = 19;

/// `VOICE_EVENT_REMOVED` code: an admin kicked us (we may connect again).
pub const VOICE_REMOVAL_KICKED: u32 = 0;
/// `VOICE_EVENT_REMOVED` code: an admin banned us; the relay refuses us until the ban ends.
pub const VOICE_REMOVAL_BANNED: u32 = 1;
/// `VOICE_EVENT_REMOVED` code: our access token expired; connect again with a fresh one.
pub const VOICE_REMOVAL_TOKEN_EXPIRED: u32 = 2;

/// The C event for `Event::Removed`.
pub(crate) fn removed_event(
    removal: Removal,
    by: &str,
    reason: &str,
    ban_secs: u32,
) -> voice_event {
    let mut e = voice_event::new(VOICE_EVENT_REMOVED).text(reason);
    e = e.name(by);
    e.code = removal_code(removal);
    e.value = f64::from(ban_secs);
    e
}

/// `VOICE_REMOVAL_*` of `removal`.
pub(crate) fn removal_code(removal: Removal) -> u32 {
    match removal {
        Removal::Kicked => VOICE_REMOVAL_KICKED,
        Removal::Banned => VOICE_REMOVAL_BANNED,
        Removal::TokenExpired => VOICE_REMOVAL_TOKEN_EXPIRED,
    }
}

/// The C event for `Event::UserRemoved`.
pub(crate) fn user_removed_event(session: SessionToken, name: &str, ban_secs: u32) -> voice_event {
    let mut e = voice_event::new(VOICE_EVENT_USER_REMOVED).name(name);
    e.session = session.0;
    e.value = f64::from(ban_secs);
    e
}

/// Checks the arguments shared by kick and ban and returns the reason text (NULL: empty).
unsafe fn removal_args<'a>(session: u32, reason: *const c_char) -> Result<&'a str, voice_result> {
    if session == 0 {
        return Err(voice_result::VOICE_ERR_INVALID_ARGUMENT);
    }
    if reason.is_null() {
        return Ok("");
    }
    // SAFETY: non-NULL, NUL-terminated (caller's contract).
    unsafe { c_str(reason) }
}

/// Asks the relay to remove `session` (it gets `VOICE_EVENT_REMOVED`, its channel
/// `VOICE_EVENT_USER_LEFT`; we get `VOICE_EVENT_USER_REMOVED`). Needs the `admin` claim in our
/// access token, otherwise the relay answers `VOICE_EVENT_ERROR` (code 11, Forbidden).
/// `reason` (NUL-terminated UTF-8, or NULL for none; the relay passes on at most 200 bytes) is
/// shown to the removed user; it is copied before the call returns.
/// `VOICE_ERR_INVALID_ARGUMENT` for session 0 or a reason that is not UTF-8;
/// `VOICE_ERR_NOT_CONNECTED` when not connected.
///
/// Thread safety: any thread; the command is queued to the engine thread.
#[no_mangle]
pub unsafe extern "C" fn voice_client_kick(
    client: *const voice_client,
    session: u32,
    reason: *const c_char,
) -> voice_result {
    ffi_guard!({
        let st = try_res!(state(client));
        // SAFETY: caller's contract on `reason`.
        let reason = try_res!(unsafe { removal_args(session, reason) });
        if !st.client.is_connected() {
            return voice_result::VOICE_ERR_NOT_CONNECTED;
        }
        st.client.kick(SessionToken(session), reason);
        voice_result::VOICE_OK
    })
}

/// As `voice_client_kick`, and the relay refuses the user (its token subject; on an `--open`
/// relay its name) for `duration_secs` seconds (0: the relay's default, one hour unless
/// configured; the relay caps long bans at its `ban_max_secs`). Bans live in the relay's memory.
///
/// Thread safety: any thread; the command is queued to the engine thread.
#[no_mangle]
pub unsafe extern "C" fn voice_client_ban(
    client: *const voice_client,
    session: u32,
    reason: *const c_char,
    duration_secs: u32,
) -> voice_result {
    ffi_guard!({
        let st = try_res!(state(client));
        // SAFETY: caller's contract on `reason`.
        let reason = try_res!(unsafe { removal_args(session, reason) });
        if !st.client.is_connected() {
            return voice_result::VOICE_ERR_NOT_CONNECTED;
        }
        st.client.ban(SessionToken(session), reason, duration_secs);
        voice_result::VOICE_OK
    })
}
