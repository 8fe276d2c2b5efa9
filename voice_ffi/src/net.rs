//! Connection status and voice path (transport: tunnel fallback, honest connection state).
//!
//! Every change of the connection status arrives once as a `VOICE_EVENT_STATUS` event;
//! [`voice_client_connection`] reads the current status, the voice path (UDP or the tunnel
//! through the control connection) and the tunnel counters at any time.

use std::ffi::c_char;

use ::voice_client::{ConnectionStatus, VoicePath};

use crate::client::{state, voice_client, voice_event};
use crate::{copy_str, voice_result};

/// The connection status changed (sent once per change): `code` is a `VOICE_STATUS_*`; `value`
/// is the attempt number (`VOICE_STATUS_CONNECTING`, from 1), the voice path
/// (`VOICE_STATUS_CONNECTED`: `VOICE_PATH_*`) or the delay before the next attempt in ms
/// (`VOICE_STATUS_RECONNECTING`); `text` is the previous attempt's error (connecting; empty on
/// the first attempt) or the reason (reconnecting, failed).
pub const VOICE_EVENT_STATUS: u32 = 17;

/// A connection attempt is under way.
pub const VOICE_STATUS_CONNECTING: u32 = 1;
/// Welcomed by the relay and voice can flow (on the path given).
pub const VOICE_STATUS_CONNECTED: u32 = 2;
/// The connection failed or dropped; another attempt follows.
pub const VOICE_STATUS_RECONNECTING: u32 = 3;
/// Given up (reconnect is off, or nothing a retry could fix).
pub const VOICE_STATUS_FAILED: u32 = 4;

/// Voice cannot flow yet.
pub const VOICE_PATH_NONE: u32 = 0;
/// Voice travels as UDP datagrams.
pub const VOICE_PATH_UDP: u32 = 1;
/// Voice travels inside the TLS control connection (UDP does not get through).
pub const VOICE_PATH_TUNNEL: u32 = 2;

/// The connection as [`voice_client_connection`] reports it. Strings are NUL-terminated UTF-8,
/// truncated at a character boundary.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct voice_connection {
    /// `VOICE_STATUS_*` (`VOICE_STATUS_CONNECTING` with `attempt` 0 before the first attempt).
    pub status: u32,
    /// `VOICE_PATH_*`.
    pub path: u32,
    /// With `VOICE_STATUS_CONNECTING`: the attempt number (from 1).
    pub attempt: u32,
    /// With `VOICE_STATUS_RECONNECTING`: the delay before the next attempt in ms.
    pub retry_in_ms: u64,
    /// Voice datagrams sent through the tunnel so far.
    pub tunnel_tx_packets: u64,
    /// Voice datagrams received through the tunnel so far.
    pub tunnel_rx_packets: u64,
    /// Last UDP round trip in ms (negative: none yet).
    pub udp_rtt_ms: f64,
    /// Length of `text` without NUL.
    pub text_len: usize,
    /// The last error (connecting) or the reason (reconnecting, failed); empty otherwise.
    pub text: [c_char; 512],
}

fn path_code(path: Option<VoicePath>) -> u32 {
    match path {
        None => VOICE_PATH_NONE,
        Some(VoicePath::Udp) => VOICE_PATH_UDP,
        Some(VoicePath::Tunnel) => VOICE_PATH_TUNNEL,
    }
}

/// `(status code, attempt, retry in ms, path, text)` of a status.
fn parts(s: &ConnectionStatus) -> (u32, u32, u64, Option<VoicePath>, &str) {
    match s {
        ConnectionStatus::Connecting {
            attempt,
            last_error,
        } => (
            VOICE_STATUS_CONNECTING,
            *attempt,
            0,
            None,
            last_error.as_deref().unwrap_or(""),
        ),
        ConnectionStatus::Connected { path } => (VOICE_STATUS_CONNECTED, 0, 0, Some(*path), ""),
        ConnectionStatus::Reconnecting { in_ms, reason } => {
            (VOICE_STATUS_RECONNECTING, 0, *in_ms, None, reason)
        }
        ConnectionStatus::Failed { reason } => (VOICE_STATUS_FAILED, 0, 0, None, reason),
    }
}

/// The C event for a status change.
pub(crate) fn status_event(s: &ConnectionStatus) -> voice_event {
    let (code, attempt, in_ms, path, text) = parts(s);
    let mut e = voice_event::new(VOICE_EVENT_STATUS).text(text);
    e.code = code;
    e.value = match code {
        VOICE_STATUS_CONNECTING => f64::from(attempt),
        VOICE_STATUS_CONNECTED => f64::from(path_code(path)),
        VOICE_STATUS_RECONNECTING => in_ms as f64,
        _ => 0.0,
    };
    e
}

/// Connection status and tunnel fallback — the functions of this feature follow.
///
/// Writes the connection status, the voice path and the tunnel counters to `*out`. Like
/// `voice_client_stats`, the snapshot is taken by a library thread (`VOICE_ERR_IO` if the
/// engine does not answer within a second).
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn voice_client_connection(
    client: *const voice_client,
    out: *mut voice_connection,
) -> voice_result {
    crate::ffi_guard!({
        let st = crate::try_res!(state(client));
        if out.is_null() {
            return voice_result::VOICE_ERR_NULL;
        }
        let Some(s) = st.stats.snapshot() else {
            return voice_result::VOICE_ERR_IO;
        };
        let (status, attempt, retry_in_ms, _, text) = parts(&s.status);
        let mut c = voice_connection {
            status,
            path: path_code(s.path),
            attempt,
            retry_in_ms,
            tunnel_tx_packets: s.tunnel_tx_packets,
            tunnel_rx_packets: s.tunnel_rx_packets,
            udp_rtt_ms: s.udp_rtt_ms.unwrap_or(-1.0),
            text_len: 0,
            text: [0; 512],
        };
        c.text_len = copy_str(text, &mut c.text);
        // SAFETY: checked non-null; the caller provides a writable `voice_connection`.
        unsafe { out.write(c) };
        voice_result::VOICE_OK
    })
}
