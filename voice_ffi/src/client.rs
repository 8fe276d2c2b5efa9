//! The batteries-included client (`voice_client_*`).
//!
//! Wraps [`::voice_client::Client`]: the engine runs on its own thread; these functions only send it
//! commands or read what it published, so none of them waits on the network. Events are polled with
//! [`voice_client_poll_event`] or, once a callback is set, delivered to it from a library thread.

use std::collections::VecDeque;
use std::ffi::c_char;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ::voice_client::{
    AppCapture, AppPlayback, AudioInput, AudioOutput, ChannelId, Client, ClientConfig,
    DisconnectKind, Event, SessionToken, TransmitMode, UserInfo,
};

use crate::handle::{Handle, Kind, Shared};
use crate::stats_worker::StatsWorker;
use crate::{c_str, copy_str, ffi_guard, try_ptr, try_res, voice_result};

/// Push-to-talk: transmit only while `voice_client_set_push_to_talk(c, true)`.
pub const VOICE_TRANSMIT_PUSH_TO_TALK: u32 = 0;
/// Voice activity: transmit when the input level says someone speaks.
pub const VOICE_TRANSMIT_VOICE_ACTIVITY: u32 = 1;
/// Transmit always.
pub const VOICE_TRANSMIT_CONTINUOUS: u32 = 2;

/// The engine opens the default capture and playback devices (falling back to silence, with a
/// `VOICE_EVENT_AUDIO_NOTICE`, where there are none).
pub const VOICE_AUDIO_DEVICES: u32 = 0;
/// The game owns audio: `voice_client_push_capture` / `voice_client_pull_playback`.
pub const VOICE_AUDIO_APP: u32 = 1;
/// WAV files: `input_wav` is played once voice can flow, `output_wav` records (either may be NULL).
pub const VOICE_AUDIO_FILES: u32 = 2;
/// No audio in or out.
pub const VOICE_AUDIO_NULL: u32 = 3;

/// Event kinds (`voice_event.kind`).
pub const VOICE_EVENT_CONNECTED: u32 = 1;
/// UDP is bound: voice flows.
pub const VOICE_EVENT_UDP_READY: u32 = 2;
/// The connection failed or dropped (`code`: why, `VOICE_DISCONNECT_*`; `text`: the reason for
/// people, e.g. the refused connect and what happens next; `value`: the relay's error code for
/// `VOICE_DISCONNECT_REFUSED`, the `VOICE_REMOVAL_*` for `VOICE_DISCONNECT_REMOVED`); sent at
/// once for each failed attempt. A reconnect follows only with `reconnect` set, and never after
/// `VOICE_DISCONNECT_UNTRUSTED`, `_CONFIGURATION` or `_REMOVED`.
pub const VOICE_EVENT_DISCONNECTED: u32 = 3;
/// `VOICE_EVENT_DISCONNECTED` code: the relay could not be reached or the connection failed
/// underneath (connect, name resolution, socket or TLS errors).
pub const VOICE_DISCONNECT_NETWORK: u32 = 1;
/// `VOICE_EVENT_DISCONNECTED` code: the relay closed the connection without saying why.
pub const VOICE_DISCONNECT_CLOSED: u32 = 2;
/// `VOICE_EVENT_DISCONNECTED` code: the relay broke the protocol (an oversized frame).
pub const VOICE_DISCONNECT_PROTOCOL: u32 = 3;
/// `VOICE_EVENT_DISCONNECTED` code: the relay's certificate was not trusted (unknown, or a
/// pinned fingerprint changed). Not retried.
pub const VOICE_DISCONNECT_UNTRUSTED: u32 = 4;
/// `VOICE_EVENT_DISCONNECTED` code: the client's configuration cannot work (e.g. an unreadable
/// CA file). Not retried.
pub const VOICE_DISCONNECT_CONFIGURATION: u32 = 5;
/// `VOICE_EVENT_DISCONNECTED` code: sent to the relay that hosts the room; reconnecting there.
pub const VOICE_DISCONNECT_REDIRECTED: u32 = 6;
/// `VOICE_EVENT_DISCONNECTED` code: the relay refused the session (`value`: its error code,
/// as in `VOICE_EVENT_ERROR`, which came first with the text).
pub const VOICE_DISCONNECT_REFUSED: u32 = 7;
/// `VOICE_EVENT_DISCONNECTED` code: the relay ended the session (`value`: `VOICE_REMOVAL_*`;
/// `VOICE_EVENT_REMOVED` came first). Not retried.
pub const VOICE_DISCONNECT_REMOVED: u32 = 8;
/// One channel of the relay (`channel`, `name`); sent for each channel in a list.
pub const VOICE_EVENT_CHANNEL: u32 = 4;
/// We joined `channel` (`name`); `VOICE_EVENT_MEMBER` events for its members follow.
pub const VOICE_EVENT_CHANNEL_JOINED: u32 = 5;
/// We left `channel`.
pub const VOICE_EVENT_CHANNEL_LEFT: u32 = 6;
/// `session` (`name`) is a member of `channel` (after a join or a channel list); `text`: the
/// user's stable id (the same on every connection: keep per-user settings by it); `flag`: the
/// user muted their microphone; `flag2`: the user deafened themselves.
pub const VOICE_EVENT_MEMBER: u32 = 7;
/// `session` (`name`) entered our `channel`; `text`, `flag`, `flag2` as for
/// `VOICE_EVENT_MEMBER`.
pub const VOICE_EVENT_USER_JOINED: u32 = 8;
/// `session` left our `channel`.
pub const VOICE_EVENT_USER_LEFT: u32 = 9;
/// Chat in `channel` from `session` (`name`): `text`; `value` = relay time in ms.
pub const VOICE_EVENT_CHAT: u32 = 10;
/// `session` started (`flag` true) or stopped being heard; `flag2`: it is a whisper.
pub const VOICE_EVENT_SPEAKING: u32 = 11;
/// A new RTT measurement in `value` (ms).
pub const VOICE_EVENT_RTT: u32 = 12;
/// The relay refused something: `code`, `text`.
pub const VOICE_EVENT_ERROR: u32 = 13;
/// A command was refused locally: `text` (command: reason) and `code` (see `voice_event.code`).
pub const VOICE_EVENT_COMMAND_FAILED: u32 = 14;
/// An audio notice (e.g. fallback to silence): `text`.
pub const VOICE_EVENT_AUDIO_NOTICE: u32 = 15;
/// The relay's counters arrived (not itemised here; use the Rust API for them).
pub const VOICE_EVENT_SERVER_STATS: u32 = 16;
/// A member `session` of our `channel` (us included) muted (`flag`) or deafened (`flag2`)
/// themselves, or undid it.
pub const VOICE_EVENT_USER_STATE: u32 = 21;

/// Most remote senders reported in one [`voice_stats`].
pub const VOICE_MAX_REMOTES: usize = 32;

/// Settings for [`voice_client_new`]. Initialise with [`voice_client_config_default`].
/// [`voice_client_new`] copies everything it needs (strings included): the structure and the
/// strings it points to need not outlive the call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct voice_client_config {
    /// Relay address `"host:port"`, `"v4:port"` or `"[v6]:port"` (NUL-terminated). A host name is
    /// resolved by the client's own thread, never in `voice_client_new`; IPv6 and IPv4
    /// addresses are tried. A name that does not resolve is reported as a failed attempt
    /// (`VOICE_EVENT_STATUS`). Required.
    pub server: *const c_char,
    /// Display name (NUL-terminated UTF-8): 1..=64 bytes, no control characters, not only
    /// spaces. Required.
    pub name: *const c_char,
    /// `VOICE_TRANSMIT_*`.
    pub transmit_mode: u32,
    /// `VOICE_AUDIO_*`.
    pub audio: u32,
    /// With `VOICE_AUDIO_FILES`: WAV to play, or NULL.
    pub input_wav: *const c_char,
    /// With `VOICE_AUDIO_FILES`: WAV to record to, or NULL.
    pub output_wav: *const c_char,
    /// Encoder bitrate in bits/s; 0 = the engine default.
    pub bitrate: u32,
    /// Channel to join once connected; 0 = the relay's default channel.
    pub initial_channel: u32,
    /// Reconnect with backoff (250 ms doubling to 5 s) when the connection fails or drops,
    /// rejoining the channel. false: a refused or dropped connection is reported with
    /// `VOICE_EVENT_DISCONNECTED` and never retried.
    pub reconnect: bool,
    /// The relay's certificate fingerprint to pin, as the relay prints it
    /// (`sha256:` + 64 hex digits; NUL-terminated), or NULL. Borrowed during
    /// `voice_client_new` only.
    pub tls_fingerprint: *const c_char,
    /// A PEM file of CA certificates to trust instead of the public roots, or NULL.
    pub tls_ca_file: *const c_char,
    /// With neither of the above: accept the relay's certificate on first use (and refuse a
    /// different one on reconnect) instead of requiring one from a public CA.
    pub tls_trust_on_first_use: bool,
    /// Development only: no TLS (for a relay started with `--insecure-plaintext`).
    pub insecure_plaintext: bool,
    /// End-to-end encryption (`VOICE_E2EE_*`): off, a channel password, or identity keys.
    pub e2ee_mode: u32,
    /// With `VOICE_E2EE_PASSWORD`: the channel secret (`e2ee_password_len` bytes, high-entropy);
    /// copied during `voice_client_new`.
    pub e2ee_password: *const u8,
    /// Length of `e2ee_password`.
    pub e2ee_password_len: usize,
    /// With `VOICE_E2EE_KEYS`: 32 bytes of identity secret to keep the same safety number across
    /// runs, or NULL for a fresh identity. Copied during `voice_client_new`.
    pub e2ee_identity: *const u8,
    /// Access tokens (issue 13): the token presented in `Hello` (NUL-terminated; a JWT minted
    /// by your backend, or `relay token --name NAME` for development), or NULL for a relay
    /// started with `--open`. Copied during `voice_client_new`; never logged.
    pub access_token: *const c_char,
    /// Capture processing (issue 15): `VOICE_CAPTURE_AUTO` (default: on with
    /// `VOICE_AUDIO_DEVICES`, off otherwise: application audio may be processed already),
    /// `VOICE_CAPTURE_ON` or `VOICE_CAPTURE_OFF`. A bad mode or stage setting is
    /// `VOICE_ERR_INVALID_ARGUMENT`.
    pub capture_mode: u32,
    /// The capture processing stages when on (defaults: every stage, see
    /// `voice_processor_config_default`).
    pub capture: crate::processor::voice_processor_config,
}

/// Capture processing on with device audio, off otherwise.
pub const VOICE_CAPTURE_AUTO: u32 = 0;
/// Capture processing on.
pub const VOICE_CAPTURE_ON: u32 = 1;
/// Capture processing off.
pub const VOICE_CAPTURE_OFF: u32 = 2;

/// One event. Strings are NUL-terminated UTF-8, truncated to fit at a character boundary; the
/// `_len` fields give the bytes written. A chat text from a non-C client may contain a NUL byte:
/// `text_len` then counts past it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct voice_event {
    /// `VOICE_EVENT_*`.
    pub kind: u32,
    /// The session the event is about (0 if none).
    pub session: u32,
    /// The channel the event is about (0 if none).
    pub channel: u32,
    /// Error code for `VOICE_EVENT_ERROR` (the relay's `ErrorCode`), and for
    /// `VOICE_EVENT_COMMAND_FAILED` why the command was refused: 1 not connected, 2 bad chat
    /// text, 3 not in a channel, 4 whisper to yourself, 5 position, pose or distance model out
    /// of range, 6 kick or ban without a session.
    pub code: u32,
    /// Speaking started (`VOICE_EVENT_SPEAKING`); muted (`VOICE_EVENT_MEMBER`,
    /// `VOICE_EVENT_USER_JOINED`, `VOICE_EVENT_USER_STATE`).
    pub flag: bool,
    /// Whisper (`VOICE_EVENT_SPEAKING`); deafened (the member events and
    /// `VOICE_EVENT_USER_STATE`).
    pub flag2: bool,
    /// RTT in ms, chat time in ms, or member count of a channel.
    pub value: f64,
    /// Length of `name` without NUL.
    pub name_len: usize,
    /// User or channel name.
    pub name: [c_char; 72],
    /// Length of `text` without NUL.
    pub text_len: usize,
    /// Chat text, error message or reason; a user's stable id in member events.
    pub text: [c_char; 2048],
}

impl voice_event {
    /// A member event (`VOICE_EVENT_MEMBER`, `VOICE_EVENT_USER_JOINED`): session, name, stable
    /// id in `text`, muted in `flag`, deafened in `flag2`.
    pub(crate) fn user(kind: u32, channel: ChannelId, user: &UserInfo) -> Self {
        let mut e = voice_event::new(kind).name(&user.name).text(&user.user_id);
        e.channel = channel.0;
        e.session = user.session.0;
        e.flag = user.state.muted;
        e.flag2 = user.state.deafened;
        e
    }

    pub(crate) fn new(kind: u32) -> Self {
        voice_event {
            kind,
            session: 0,
            channel: 0,
            code: 0,
            flag: false,
            flag2: false,
            value: 0.0,
            name_len: 0,
            name: [0; 72],
            text_len: 0,
            text: [0; 2048],
        }
    }

    pub(crate) fn name(mut self, s: &str) -> Self {
        self.name_len = copy_str(s, &mut self.name);
        self
    }

    pub(crate) fn text(mut self, s: &str) -> Self {
        self.text_len = copy_str(s, &mut self.text);
        self
    }
}

/// Flattens an engine event into C events (lists become one event per item).
fn flatten(ev: Event, out: &mut VecDeque<voice_event>) {
    use voice_event as E;
    match ev {
        Event::Connected { session, name } => {
            let mut e = E::new(VOICE_EVENT_CONNECTED).name(&name);
            e.session = session.0;
            out.push_back(e);
        }
        Event::UdpReady => out.push_back(E::new(VOICE_EVENT_UDP_READY)),
        Event::Status(status) => out.push_back(crate::net::status_event(&status)),
        // A refusal reaches C as the `Disconnected` that follows (its text names the fingerprint).
        Event::ServerFingerprint { .. } => {}
        Event::Disconnected { kind, reason } => {
            let mut e = E::new(VOICE_EVENT_DISCONNECTED).text(&reason);
            e.code = kind.code();
            e.value = match kind {
                DisconnectKind::Refused(code) => f64::from(code as u32),
                DisconnectKind::Removed(r) => f64::from(crate::admin::removal_code(r)),
                _ => 0.0,
            };
            out.push_back(e);
        }
        Event::ChannelList { channels } => {
            for c in channels {
                let mut e = E::new(VOICE_EVENT_CHANNEL).name(&c.name);
                e.channel = c.id.0;
                e.value = c.users.len() as f64;
                out.push_back(e);
                for u in c.users {
                    out.push_back(E::user(VOICE_EVENT_MEMBER, c.id, &u));
                }
            }
        }
        Event::ChannelJoined { channel } => {
            let mut e = E::new(VOICE_EVENT_CHANNEL_JOINED).name(&channel.name);
            e.channel = channel.id.0;
            e.value = channel.users.len() as f64;
            out.push_back(e);
            for u in channel.users {
                out.push_back(E::user(VOICE_EVENT_MEMBER, channel.id, &u));
            }
        }
        Event::ChannelLeft { channel } => {
            let mut e = E::new(VOICE_EVENT_CHANNEL_LEFT);
            e.channel = channel.0;
            out.push_back(e);
        }
        Event::UserJoined { channel, user } => {
            out.push_back(E::user(VOICE_EVENT_USER_JOINED, channel, &user))
        }
        Event::UserState {
            channel,
            session,
            state,
        } => {
            let mut e = E::new(VOICE_EVENT_USER_STATE);
            e.channel = channel.0;
            e.session = session.0;
            e.flag = state.muted;
            e.flag2 = state.deafened;
            out.push_back(e);
        }
        Event::UserLeft { channel, session } => {
            let mut e = E::new(VOICE_EVENT_USER_LEFT);
            e.channel = channel.0;
            e.session = session.0;
            out.push_back(e);
        }
        Event::Chat {
            channel,
            from,
            from_name,
            text,
            server_time_ms,
        } => {
            let mut e = E::new(VOICE_EVENT_CHAT).name(&from_name).text(&text);
            e.channel = channel.0;
            e.session = from.0;
            e.value = server_time_ms as f64;
            out.push_back(e);
        }
        Event::Speaking {
            session,
            speaking,
            whisper,
        } => {
            let mut e = E::new(VOICE_EVENT_SPEAKING);
            e.session = session.0;
            e.flag = speaking;
            e.flag2 = whisper;
            out.push_back(e);
        }
        Event::Rtt { ms } => {
            let mut e = E::new(VOICE_EVENT_RTT);
            e.value = ms;
            out.push_back(e);
        }
        Event::ServerStats { .. } => out.push_back(E::new(VOICE_EVENT_SERVER_STATS)),
        Event::CommandFailed { command, error } => {
            let mut e = E::new(VOICE_EVENT_COMMAND_FAILED).text(&format!("{command}: {error}"));
            e.code = error.code();
            out.push_back(e);
        }
        Event::AudioNotice { message } => {
            out.push_back(E::new(VOICE_EVENT_AUDIO_NOTICE).text(&message))
        }
        Event::Error { code, message } => {
            let mut e = E::new(VOICE_EVENT_ERROR).text(&message);
            e.code = code as u32;
            out.push_back(e);
        }
        Event::Removed {
            removal,
            by,
            reason,
            ban_secs,
        } => out.push_back(crate::admin::removed_event(removal, &by, &reason, ban_secs)),
        Event::UserRemoved {
            session,
            name,
            ban_secs,
        } => out.push_back(crate::admin::user_removed_event(session, &name, ban_secs)),
        Event::ChannelMembers {
            channel,
            relay,
            users,
        } => crate::directory::channel_members_events(channel, &relay, users, out),
    }
}

/// Per-remote-sender statistics.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct voice_remote_stats {
    /// The sender's session.
    pub session: u32,
    /// Heard right now.
    pub speaking: bool,
    /// Its stream: received, lost, late, concealed, recovered, buffer depth and delay, jitter.
    pub stream: crate::stream::voice_stream_stats,
}

/// A snapshot of the client.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct voice_stats {
    /// 0 disconnected, 1 handshaking, 2 connected.
    pub state: u32,
    /// Our session (0 when not connected).
    pub session: u32,
    /// Our channel (0 when none).
    pub channel: u32,
    /// UDP bound.
    pub udp_ready: bool,
    /// Transmitting now.
    pub transmitting: bool,
    /// Last TCP round trip in ms (negative: none yet).
    pub rtt_ms: f64,
    /// Input level in dBFS.
    pub input_level_dbfs: f32,
    /// Voice datagrams sent.
    pub tx_packets: u64,
    /// Number of valid entries in `remotes`.
    pub remote_count: usize,
    /// Per remote sender (the first `VOICE_MAX_REMOTES`).
    pub remotes: [voice_remote_stats; VOICE_MAX_REMOTES],
    /// The playback consumer's pulls pace the mix (`voice_client_pull_playback` with
    /// `VOICE_AUDIO_APP`, or a sound card); the two fields below are 0 otherwise.
    pub playback_paced: bool,
    /// How long before the consumer's next pull each frame is mixed now, ms: it grows each time
    /// the consumer found too little and relaxes after a quiet while.
    pub playback_lead_ms: f32,
    /// Samples the consumer asked for that were not ready, over all pulls.
    pub playback_starved_samples: u64,
}

pub(crate) struct ClientState {
    /// Answers `voice_client_stats`; declared first so it is joined before the client goes.
    pub(crate) stats: StatsWorker,
    pub(crate) client: Arc<Client>,
    pending: Mutex<VecDeque<voice_event>>,
    pub(crate) capture: Mutex<Option<AppCapture>>,
    pub(crate) playback: Mutex<Option<AppPlayback>>,
    callback: Mutex<Option<(Arc<AtomicBool>, JoinHandle<()>)>>,
    /// Capture processing runs (fixed when the client is made).
    processing: bool,
}

impl ClientState {
    fn stop_callback(&self) {
        let taken = self
            .callback
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((stop, thread)) = taken {
            stop.store(true, Ordering::Release);
            let _ = thread.join();
        }
    }
}

impl Kind for ClientState {
    const TAG: u32 = 0x434c_4931; // "CLI1"
}

impl Drop for ClientState {
    fn drop(&mut self) {
        self.stop_callback();
    }
}

/// An opaque client handle. Never constructed in Rust: pointers to it are handle cells.
pub struct voice_client {
    _opaque: [u8; 0],
}

pub(crate) fn state<'a>(c: *const voice_client) -> Result<Shared<'a, ClientState>, voice_result> {
    // SAFETY: `voice_client` is a transparent name for the handle cell; the kind tag is checked.
    unsafe { Handle::get(c.cast::<Handle<ClientState>>()) }
}

/// Writes the default configuration (push-to-talk, own devices, reconnect, relay default channel)
/// to `*out`; `server` and `name` are left NULL for the caller to set.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn voice_client_config_default(
    out: *mut voice_client_config,
) -> voice_result {
    ffi_guard!({
        let out = try_ptr!(mut out);
        *out = voice_client_config {
            server: std::ptr::null(),
            name: std::ptr::null(),
            transmit_mode: VOICE_TRANSMIT_PUSH_TO_TALK,
            audio: VOICE_AUDIO_DEVICES,
            input_wav: std::ptr::null(),
            output_wav: std::ptr::null(),
            bitrate: 0,
            initial_channel: 0,
            reconnect: true,
            tls_fingerprint: std::ptr::null(),
            tls_ca_file: std::ptr::null(),
            tls_trust_on_first_use: false,
            insecure_plaintext: false,
            e2ee_mode: crate::e2ee::VOICE_E2EE_OFF,
            e2ee_password: std::ptr::null(),
            e2ee_password_len: 0,
            e2ee_identity: std::ptr::null(),
            access_token: std::ptr::null(),
            capture_mode: VOICE_CAPTURE_AUTO,
            capture: crate::processor::voice_processor_config::defaults(),
        };
        voice_result::VOICE_OK
    })
}

/// Starts a client: opens audio, spawns the engine thread and begins connecting. On success
/// `*out` receives a handle the caller must release with [`voice_client_free`]. The
/// configuration and its strings are copied: they need not outlive the call. A bad address or
/// name is `VOICE_ERR_INVALID_ARGUMENT`. A relay that cannot be reached is not an error here: it
/// is reported as `VOICE_EVENT_DISCONNECTED`.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn voice_client_new(
    config: *const voice_client_config,
    out: *mut *mut voice_client,
) -> voice_result {
    ffi_guard!({
        let cfg = try_ptr!(config);
        if out.is_null() {
            return voice_result::VOICE_ERR_NULL;
        }
        let server = try_res!(unsafe { c_str(cfg.server) });
        let name = try_res!(unsafe { c_str(cfg.name) });
        // "host:port": resolved by the engine's helper thread, not on the caller's thread.
        let port_ok = server
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            return voice_result::VOICE_ERR_INVALID_ARGUMENT;
        }
        if !voice_core::proto::tcp::validate_name(name) {
            return voice_result::VOICE_ERR_INVALID_ARGUMENT;
        }
        let mut c = ClientConfig::with_host(server, name);
        c.engine.e2ee = try_res!(unsafe { crate::e2ee::mode_from_config(cfg) });
        c.reconnect = cfg.reconnect;
        c.insecure_plaintext = cfg.insecure_plaintext;
        if !cfg.access_token.is_null() {
            let t = try_res!(unsafe { c_str(cfg.access_token) });
            c.token = Some(::voice_client::AccessToken(t.to_owned()));
        }
        if !cfg.tls_fingerprint.is_null() {
            let fp = try_res!(unsafe { c_str(cfg.tls_fingerprint) });
            let Ok(fp) = fp.parse() else {
                return voice_result::VOICE_ERR_INVALID_ARGUMENT;
            };
            c.tls = ::voice_client::TlsTrust::Pinned(fp);
        } else if !cfg.tls_ca_file.is_null() {
            let path = try_res!(unsafe { c_str(cfg.tls_ca_file) });
            c.tls = ::voice_client::TlsTrust::CaFile(path.into());
        } else if cfg.tls_trust_on_first_use {
            c.tls = ::voice_client::TlsTrust::TrustOnFirstUse;
        }
        c.engine.initial_channel =
            (cfg.initial_channel != 0).then_some(ChannelId(cfg.initial_channel));
        c.engine.transmit = match cfg.transmit_mode {
            VOICE_TRANSMIT_PUSH_TO_TALK => TransmitMode::PushToTalk,
            VOICE_TRANSMIT_VOICE_ACTIVITY => TransmitMode::VoiceActivity,
            VOICE_TRANSMIT_CONTINUOUS => TransmitMode::Continuous,
            _ => return voice_result::VOICE_ERR_INVALID_ARGUMENT,
        };
        if cfg.bitrate != 0 {
            if !(6_000..=510_000).contains(&cfg.bitrate) {
                return voice_result::VOICE_ERR_INVALID_ARGUMENT;
            }
            c.engine.encoder.bitrate = cfg.bitrate;
        }
        (c.input, c.output) = match cfg.audio {
            VOICE_AUDIO_DEVICES => (AudioInput::Device(None), AudioOutput::Device(None)),
            VOICE_AUDIO_APP => (AudioInput::App, AudioOutput::App),
            VOICE_AUDIO_NULL => (AudioInput::Null, AudioOutput::Null),
            VOICE_AUDIO_FILES => {
                let input = if cfg.input_wav.is_null() {
                    AudioInput::Null
                } else {
                    AudioInput::Wav {
                        path: try_res!(unsafe { c_str(cfg.input_wav) }).into(),
                        looped: false,
                    }
                };
                let output = if cfg.output_wav.is_null() {
                    AudioOutput::Null
                } else {
                    AudioOutput::Wav(try_res!(unsafe { c_str(cfg.output_wav) }).into())
                };
                (input, output)
            }
            _ => return voice_result::VOICE_ERR_INVALID_ARGUMENT,
        };
        let capture = try_res!(crate::processor::capture_config(&cfg.capture));
        let capture_on = match cfg.capture_mode {
            VOICE_CAPTURE_AUTO => cfg.audio == VOICE_AUDIO_DEVICES,
            VOICE_CAPTURE_ON => true,
            VOICE_CAPTURE_OFF => false,
            _ => return voice_result::VOICE_ERR_INVALID_ARGUMENT,
        };
        let processing = capture_on && capture.any();
        if capture_on {
            c.engine.capture = capture;
        }
        let client = match Client::start(c) {
            Ok(c) => c,
            Err(::voice_client::ClientError::Audio(_)) => return voice_result::VOICE_ERR_AUDIO,
            Err(::voice_client::ClientError::Codec(_)) => return voice_result::VOICE_ERR_CODEC,
            Err(::voice_client::ClientError::Io(_)) => return voice_result::VOICE_ERR_IO,
            Err(::voice_client::ClientError::Spatial(_)) => {
                return voice_result::VOICE_ERR_INVALID_ARGUMENT
            }
        };

        let client = Arc::new(client);
        let Ok(stats) = StatsWorker::start(client.clone()) else {
            return voice_result::VOICE_ERR_IO;
        };
        let st = ClientState {
            capture: Mutex::new(client.take_app_capture()),
            playback: Mutex::new(client.take_app_playback()),
            stats,
            client,
            pending: Mutex::new(VecDeque::new()),
            callback: Mutex::new(None),
            processing,
        };
        // SAFETY: checked non-null above.
        unsafe { *out = Handle::into_raw(st).cast::<voice_client>() };
        voice_result::VOICE_OK
    })
}

/// Says goodbye to the relay, stops the engine (and callback) threads, finalises recordings and
/// frees the client. NULL is accepted. A second free returns `VOICE_ERR_INVALID_HANDLE`; a free
/// while another thread is inside a call on this client returns `VOICE_ERR_BUSY` (nothing freed).
///
/// Thread safety: no other call on this client may start afterwards.
#[no_mangle]
pub unsafe extern "C" fn voice_client_free(client: *mut voice_client) -> voice_result {
    ffi_guard!({ unsafe { Handle::<ClientState>::free(client.cast()) } })
}

/// Joins (or switches to) `channel`; before the connection is up, joins it once connected.
///
/// Thread safety: any thread; the command is queued to the engine thread.
#[no_mangle]
pub unsafe extern "C" fn voice_client_join(
    client: *const voice_client,
    channel: u32,
) -> voice_result {
    ffi_guard!({
        let st = try_res!(state(client));
        st.client.join_channel(ChannelId(channel));
        voice_result::VOICE_OK
    })
}

/// Leaves the current channel. `VOICE_ERR_NOT_CONNECTED` when not connected.
///
/// Thread safety: any thread; the command is queued to the engine thread.
#[no_mangle]
pub unsafe extern "C" fn voice_client_leave(client: *const voice_client) -> voice_result {
    ffi_guard!({
        let st = try_res!(state(client));
        if !st.client.is_connected() {
            return voice_result::VOICE_ERR_NOT_CONNECTED;
        }
        st.client.leave_channel();
        voice_result::VOICE_OK
    })
}

/// Whispers to `session` instead of the channel; 0 returns to the channel.
///
/// Thread safety: any thread; the command is queued to the engine thread.
#[no_mangle]
pub unsafe extern "C" fn voice_client_whisper(
    client: *const voice_client,
    session: u32,
) -> voice_result {
    ffi_guard!({
        let st = try_res!(state(client));
        st.client
            .set_whisper((session != 0).then_some(SessionToken(session)));
        voice_result::VOICE_OK
    })
}

/// Push-to-talk key state.
///
/// Thread safety: any thread; the command is queued to the engine thread.
#[no_mangle]
pub unsafe extern "C" fn voice_client_set_push_to_talk(
    client: *const voice_client,
    held: bool,
) -> voice_result {
    ffi_guard!({
        let st = try_res!(state(client));
        st.client.set_push_to_talk(held);
        voice_result::VOICE_OK
    })
}

/// Mutes (true) or unmutes the microphone.
///
/// Thread safety: any thread; the command is queued to the engine thread.
#[no_mangle]
pub unsafe extern "C" fn voice_client_set_muted(
    client: *const voice_client,
    muted: bool,
) -> voice_result {
    ffi_guard!({
        let st = try_res!(state(client));
        st.client.set_muted(muted);
        voice_result::VOICE_OK
    })
}

/// Deafens (true: silence all output) or undeafens.
///
/// Thread safety: any thread; the command is queued to the engine thread.
#[no_mangle]
pub unsafe extern "C" fn voice_client_set_deafened(
    client: *const voice_client,
    deafened: bool,
) -> voice_result {
    ffi_guard!({
        let st = try_res!(state(client));
        st.client.set_deafened(deafened);
        voice_result::VOICE_OK
    })
}

/// Mutes one user locally.
///
/// Thread safety: any thread; the command is queued to the engine thread.
#[no_mangle]
pub unsafe extern "C" fn voice_client_set_user_muted(
    client: *const voice_client,
    session: u32,
    muted: bool,
) -> voice_result {
    ffi_guard!({
        let st = try_res!(state(client));
        st.client.set_user_muted(SessionToken(session), muted);
        voice_result::VOICE_OK
    })
}

/// Asks the relay for every channel with its members (`VOICE_EVENT_CHANNEL` / `_MEMBER`).
/// `VOICE_ERR_NOT_CONNECTED` when not connected.
///
/// Thread safety: any thread; the command is queued to the engine thread.
#[no_mangle]
pub unsafe extern "C" fn voice_client_request_channels(
    client: *const voice_client,
) -> voice_result {
    ffi_guard!({
        let st = try_res!(state(client));
        if !st.client.is_connected() {
            return voice_result::VOICE_ERR_NOT_CONNECTED;
        }
        st.client.request_channel_list();
        voice_result::VOICE_OK
    })
}

/// Sets one user's volume: 1.0 unchanged, 0.0 silent, up to 4.0. NaN or negative is rejected.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn voice_client_set_user_volume(
    client: *const voice_client,
    session: u32,
    volume: f32,
) -> voice_result {
    ffi_guard!({
        let st = try_res!(state(client));
        if !(0.0..=4.0).contains(&volume) {
            return voice_result::VOICE_ERR_INVALID_ARGUMENT;
        }
        st.client.set_user_volume(SessionToken(session), volume);
        voice_result::VOICE_OK
    })
}

/// Changes the transmit mode (`VOICE_TRANSMIT_*`).
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn voice_client_set_transmit_mode(
    client: *const voice_client,
    mode: u32,
) -> voice_result {
    ffi_guard!({
        let st = try_res!(state(client));
        let m = match mode {
            VOICE_TRANSMIT_PUSH_TO_TALK => TransmitMode::PushToTalk,
            VOICE_TRANSMIT_VOICE_ACTIVITY => TransmitMode::VoiceActivity,
            VOICE_TRANSMIT_CONTINUOUS => TransmitMode::Continuous,
            _ => return voice_result::VOICE_ERR_INVALID_ARGUMENT,
        };
        st.client.set_transmit_mode(m);
        voice_result::VOICE_OK
    })
}

/// Sends `len` bytes of UTF-8 `text` as chat to the current channel. `len` must be 1..=2000 and
/// is checked before `text` is read; the bytes must be UTF-8 without NUL (receivers get the text
/// NUL-terminated), otherwise `VOICE_ERR_INVALID_ARGUMENT`. `VOICE_ERR_NOT_CONNECTED` when not
/// connected.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn voice_client_send_chat(
    client: *const voice_client,
    text: *const u8,
    len: usize,
) -> voice_result {
    ffi_guard!({
        let st = try_res!(state(client));
        if text.is_null() {
            return voice_result::VOICE_ERR_NULL;
        }
        // The length first: the caller only promises `len` bytes when `len` is in range.
        if !(1..=voice_core::proto::tcp::MAX_CHAT_LEN).contains(&len) {
            return voice_result::VOICE_ERR_INVALID_ARGUMENT;
        }
        // SAFETY: the caller promises `len` readable bytes.
        let bytes = unsafe { std::slice::from_raw_parts(text, len) };
        let Ok(s) = std::str::from_utf8(bytes) else {
            return voice_result::VOICE_ERR_INVALID_ARGUMENT;
        };
        if s.contains('\0') || !voice_core::proto::tcp::validate_chat(s) {
            return voice_result::VOICE_ERR_INVALID_ARGUMENT;
        }
        if !st.client.is_connected() {
            return voice_result::VOICE_ERR_NOT_CONNECTED;
        }
        st.client.send_chat(s);
        voice_result::VOICE_OK
    })
}

fn next_event(st: &ClientState) -> Option<voice_event> {
    let mut pending = st.pending.lock().unwrap_or_else(|e| e.into_inner());
    while pending.is_empty() {
        match st.client.events().try_recv() {
            Ok(ev) => flatten(ev, &mut pending),
            Err(_) => return None,
        }
    }
    pending.pop_front()
}

/// Takes the next event, if any: on `VOICE_OK`, `*got` says whether `*out` was filled.
/// While a callback is set, events go to the callback and this returns none.
///
/// Thread safety: any thread (events are handed out once, to whichever thread asks first).
#[no_mangle]
pub unsafe extern "C" fn voice_client_poll_event(
    client: *const voice_client,
    out: *mut voice_event,
    got: *mut bool,
) -> voice_result {
    ffi_guard!({
        let st = try_res!(state(client));
        if out.is_null() || got.is_null() {
            return voice_result::VOICE_ERR_NULL;
        }
        // While a callback is set its thread owns the events: a poll returns none instead of
        // racing it for them (found by the C# binding's tests).
        if st
            .callback
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
        {
            // SAFETY: checked non-null.
            unsafe { *got = false };
            return voice_result::VOICE_OK;
        }
        let ev = next_event(&st);
        // SAFETY: both checked non-null.
        unsafe {
            *got = ev.is_some();
            if let Some(e) = ev {
                *out = e;
            }
        }
        voice_result::VOICE_OK
    })
}

/// An event callback: `userdata` first, then the event (valid only during the call).
pub type voice_event_callback =
    Option<unsafe extern "C" fn(userdata: *mut std::ffi::c_void, event: *const voice_event)>;

struct UserData(*mut std::ffi::c_void);
// SAFETY: the caller promises the userdata may be used from the library's callback thread.
unsafe impl Send for UserData {}

/// Delivers every event to `callback(userdata, event)` from a library thread named
/// `voice-ffi-events`, until it is replaced or cleared (`callback` NULL). Setting a callback
/// replaces (and joins) the previous one; after clearing, events are polled again.
///
/// Thread safety: any thread; the callback runs on the library's thread and must not call
/// `voice_client_free` or `voice_client_set_event_callback` on this client.
#[no_mangle]
pub unsafe extern "C" fn voice_client_set_event_callback(
    client: *const voice_client,
    callback: voice_event_callback,
    userdata: *mut std::ffi::c_void,
) -> voice_result {
    ffi_guard!({
        let st = try_res!(state(client));
        st.stop_callback();
        let Some(cb) = callback else {
            return voice_result::VOICE_OK;
        };
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let events = st.client.events().clone();
        let ud = UserData(userdata);
        let thread = std::thread::Builder::new()
            .name("voice-ffi-events".into())
            .spawn(move || {
                let ud = ud;
                let mut queue = VecDeque::new();
                while !stop2.load(Ordering::Acquire) {
                    match events.recv_timeout(Duration::from_millis(50)) {
                        Ok(ev) => flatten(ev, &mut queue),
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                    }
                    while let Some(e) = queue.pop_front() {
                        // SAFETY: the caller's callback, with its own userdata.
                        unsafe { cb(ud.0, &e) };
                    }
                }
            });
        match thread {
            Ok(t) => {
                *st.callback.lock().unwrap_or_else(|e| e.into_inner()) = Some((stop, t));
                voice_result::VOICE_OK
            }
            Err(_) => voice_result::VOICE_ERR_IO,
        }
    })
}

/// The engine's stats for a call that writes them to `out`: a bad handle, a NULL `out` and an
/// engine thread that does not answer (`VOICE_ERR_IO`) are its errors.
fn stats_snapshot<T>(
    client: *const voice_client,
    out: *mut T,
) -> Result<voice_core::engine::EngineStats, voice_result> {
    let st = state(client)?;
    if out.is_null() {
        return Err(voice_result::VOICE_ERR_NULL);
    }
    st.stats.snapshot().ok_or(voice_result::VOICE_ERR_IO)
}

/// Writes a stats snapshot to `*out` (per-sender depth, loss % over 10 s, late, concealed,
/// FEC-recovered, jitter; RTT). Waits up to 1.5 s for the engine thread (`VOICE_ERR_IO` if it
/// does not answer); the caller's thread only waits on a condition variable, so a thread the
/// library did not create is left with nothing allocated for it.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn voice_client_stats(
    client: *const voice_client,
    out: *mut voice_stats,
) -> voice_result {
    ffi_guard!({
        let s = try_res!(stats_snapshot(client, out));
        let mut remotes = [voice_remote_stats::default(); VOICE_MAX_REMOTES];
        for (dst, r) in remotes.iter_mut().zip(&s.remotes) {
            *dst = voice_remote_stats {
                session: r.session.0,
                speaking: r.speaking,
                stream: (&r.stream).into(),
            };
        }
        let snapshot = voice_stats {
            state: match s.state {
                voice_core::engine::ConnectionState::Disconnected => 0,
                voice_core::engine::ConnectionState::Handshaking => 1,
                voice_core::engine::ConnectionState::Connected => 2,
            },
            session: s.session.0,
            channel: s.channel.map_or(0, |c| c.0),
            udp_ready: s.udp_ready,
            transmitting: s.transmitting,
            rtt_ms: s.rtt_ms.unwrap_or(-1.0),
            input_level_dbfs: s.input_level_dbfs,
            tx_packets: s.tx_packets,
            remote_count: s.remotes.len().min(VOICE_MAX_REMOTES),
            remotes,
            playback_paced: s.playback_pacing.is_some(),
            playback_lead_ms: s.playback_pacing.map_or(0.0, |p| p.lead_ms),
            playback_starved_samples: s.playback_pacing.map_or(0, |p| p.starved_samples),
        };
        // SAFETY: checked non-null.
        unsafe { *out = snapshot };
        voice_result::VOICE_OK
    })
}

/// Writes what capture processing measured on the last frame to `*out`: speech probability and
/// verdict, the echo canceller's echo return loss enhancement and the echo delay it found (the
/// same fields `voice_processor_stats` gives a sans-IO processor). Waits like `voice_client_stats`
/// (`VOICE_ERR_IO` if the engine thread does not answer). `VOICE_ERR_UNSUPPORTED`, at once, when
/// capture processing is off (`VOICE_CAPTURE_OFF`, `VOICE_CAPTURE_AUTO` with application audio,
/// or every stage switched off).
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn voice_client_capture_stats(
    client: *const voice_client,
    out: *mut crate::processor::voice_capture_stats,
) -> voice_result {
    ffi_guard!({
        // Processing off is known without asking the engine thread.
        if !out.is_null() && !try_res!(state(client)).processing {
            return voice_result::VOICE_ERR_UNSUPPORTED;
        }
        let s = try_res!(stats_snapshot(client, out));
        let Some(capture) = &s.capture else {
            return voice_result::VOICE_ERR_UNSUPPORTED;
        };
        // SAFETY: checked non-null.
        unsafe { *out = capture.into() };
        voice_result::VOICE_OK
    })
}

/// With `VOICE_AUDIO_APP`: queues `frames` captured 48 kHz mono samples; `*accepted` receives how
/// many were taken (the rest did not fit: more than 200 ms is queued). Each completed 20 ms frame
/// is encoded and sent at once: your pushes are the capture clock.
///
/// Thread safety: call from one audio thread at a time; never blocks (a concurrent call gets
/// `VOICE_ERR_BUSY`). Without `VOICE_AUDIO_APP` returns `VOICE_ERR_UNSUPPORTED`.
#[no_mangle]
pub unsafe extern "C" fn voice_client_push_capture(
    client: *const voice_client,
    pcm: *const i16,
    frames: usize,
    accepted: *mut usize,
) -> voice_result {
    ffi_guard!({
        let st = try_res!(state(client));
        if pcm.is_null() || accepted.is_null() {
            return voice_result::VOICE_ERR_NULL;
        }
        let Ok(mut guard) = st.capture.try_lock() else {
            return voice_result::VOICE_ERR_BUSY;
        };
        let Some(cap) = guard.as_mut() else {
            return voice_result::VOICE_ERR_UNSUPPORTED;
        };
        // SAFETY: the caller promises `frames` readable samples.
        let samples = unsafe { std::slice::from_raw_parts(pcm, frames) };
        let n = cap.push(samples);
        // SAFETY: checked non-null.
        unsafe { *accepted = n };
        voice_result::VOICE_OK
    })
}

/// With `VOICE_AUDIO_APP`: fills `pcm` with `frames` mixed 48 kHz mono samples; `*written`
/// receives how many came from the engine (the rest is silence: underrun). Your pulls are the
/// playback clock: the engine learns their period and size and mixes each frame a few ms before
/// the pull that needs it, so pull at a steady rate (any chunk size).
///
/// Thread safety: call from one audio thread at a time; never blocks (a concurrent call gets
/// `VOICE_ERR_BUSY`). Without `VOICE_AUDIO_APP` returns `VOICE_ERR_UNSUPPORTED`.
#[no_mangle]
pub unsafe extern "C" fn voice_client_pull_playback(
    client: *const voice_client,
    pcm: *mut i16,
    frames: usize,
    written: *mut usize,
) -> voice_result {
    ffi_guard!({
        let st = try_res!(state(client));
        if pcm.is_null() || written.is_null() {
            return voice_result::VOICE_ERR_NULL;
        }
        let Ok(mut guard) = st.playback.try_lock() else {
            return voice_result::VOICE_ERR_BUSY;
        };
        let Some(play) = guard.as_mut() else {
            return voice_result::VOICE_ERR_UNSUPPORTED;
        };
        // SAFETY: the caller promises `frames` writable samples.
        let out = unsafe { std::slice::from_raw_parts_mut(pcm, frames) };
        let n = play.pull(out);
        // SAFETY: checked non-null.
        unsafe { *written = n };
        voice_result::VOICE_OK
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use voice_core::engine::CommandError;

    #[test]
    fn a_refused_command_carries_its_typed_reason_as_a_code() {
        let mut out = VecDeque::new();
        flatten(
            Event::CommandFailed {
                command: "whisper",
                error: CommandError::WhisperSelf,
            },
            &mut out,
        );
        let e = out.pop_front().expect("one event");
        assert!(out.is_empty());
        assert_eq!(e.kind, VOICE_EVENT_COMMAND_FAILED);
        assert_eq!(e.code, 4);
        let text: Vec<u8> = e.text[..e.text_len].iter().map(|&c| c as u8).collect();
        assert_eq!(text, b"whisper: cannot whisper to yourself");
    }

    #[test]
    fn members_carry_their_stable_id_and_voice_state_and_a_state_change_is_one_event() {
        use ::voice_client::VoiceState;
        let muted = VoiceState {
            muted: true,
            deafened: false,
        };
        let mut out = VecDeque::new();
        flatten(
            Event::UserJoined {
                channel: ChannelId(2),
                user: UserInfo {
                    session: SessionToken(5),
                    name: "bob".into(),
                    user_id: "u-5".into(),
                    state: muted,
                },
            },
            &mut out,
        );
        flatten(
            Event::UserState {
                channel: ChannelId(2),
                session: SessionToken(5),
                state: VoiceState {
                    muted: false,
                    deafened: true,
                },
            },
            &mut out,
        );
        let [joined, state] = [out[0], out[1]];
        assert_eq!(
            (
                joined.kind,
                joined.channel,
                joined.session,
                joined.flag,
                joined.flag2
            ),
            (VOICE_EVENT_USER_JOINED, 2, 5, true, false)
        );
        let id: Vec<u8> = joined.text[..joined.text_len]
            .iter()
            .map(|&c| c as u8)
            .collect();
        assert_eq!(id, b"u-5");
        assert_eq!(
            (
                state.kind,
                state.channel,
                state.session,
                state.flag,
                state.flag2
            ),
            (VOICE_EVENT_USER_STATE, 2, 5, false, true)
        );
    }

    #[test]
    fn a_disconnect_carries_its_kind_and_the_relays_code() {
        use voice_core::proto::tcp::ErrorCode;
        let cases = [
            (DisconnectKind::Network, VOICE_DISCONNECT_NETWORK, 0.0),
            (DisconnectKind::Closed, VOICE_DISCONNECT_CLOSED, 0.0),
            (DisconnectKind::Protocol, VOICE_DISCONNECT_PROTOCOL, 0.0),
            (DisconnectKind::Untrusted, VOICE_DISCONNECT_UNTRUSTED, 0.0),
            (
                DisconnectKind::Configuration,
                VOICE_DISCONNECT_CONFIGURATION,
                0.0,
            ),
            (DisconnectKind::Redirected, VOICE_DISCONNECT_REDIRECTED, 0.0),
            (
                DisconnectKind::Refused(ErrorCode::Full),
                VOICE_DISCONNECT_REFUSED,
                f64::from(ErrorCode::Full as u32),
            ),
            (
                DisconnectKind::Removed(::voice_client::Removal::Banned),
                VOICE_DISCONNECT_REMOVED,
                f64::from(crate::admin::VOICE_REMOVAL_BANNED),
            ),
        ];
        for (kind, code, value) in cases {
            let mut out = VecDeque::new();
            flatten(
                Event::Disconnected {
                    kind,
                    reason: "why".into(),
                },
                &mut out,
            );
            let e = out.pop_front().expect("one event");
            assert_eq!(
                (e.kind, e.code, e.value),
                (VOICE_EVENT_DISCONNECTED, code, value),
                "{kind:?}"
            );
        }
    }
}
