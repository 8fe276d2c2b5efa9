//! The client engine as a sans-IO state machine: what a game or app embeds, minus the sockets.
//!
//! Inputs, each with the current [`Time`]:
//! * [`Engine::connect`] when a TCP connection to the relay is up, [`Engine::disconnected`] when it
//!   is gone;
//! * [`Engine::handle_control`] for every [`ServerMessage`] read from TCP;
//! * [`Engine::handle_datagram`] for every UDP datagram received;
//! * [`Engine::handle_capture`] with each captured 20 ms frame; [`Engine::mix`] once per playout
//!   tick for the mixed 20 ms output frame;
//! * [`Engine::handle_timeout`] when [`Engine::poll_timeout`]'s deadline passes;
//! * commands, one [`Request`] each through [`Engine::apply`] or its own method: join, leave,
//!   chat, whisper, push-to-talk, mute, deafen, per-user volume and mute.
//!
//! Outputs are polled **until `None`** after every input: [`Engine::poll_control`] (messages to
//! write on TCP), [`Engine::poll_datagram`] (datagrams to send on UDP), [`Engine::poll_event`]
//! (presence, chat, speaking, errors, connection state for the application).
//!
//! Receive path: datagrams are demultiplexed by sender into one [`Receiver`] each (jitter buffer,
//! Opus decoder with FEC and PLC, metrics); [`Engine::mix`] ticks every receiver once and mixes
//! them with per-user gain and mute and clipping protection. Send path: the [`Transmitter`]
//! (push-to-talk, voice activity, continuous) decides per frame, the [`Sender`] encodes with in-band
//! FEC whose strength follows the loss that receivers report back over TCP.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use serde::Serialize;

use crate::capture::{CaptureConfig, CaptureProcessor, CaptureStats};
use crate::codec::EncoderConfig;
use crate::jitter::{JitterConfig, PolicyChoice};
use crate::metrics::StreamStats;
use crate::mixer::Mixer;
use crate::path::PathMonitor;
pub use crate::path::{ConnectionStatus, PathConfig, VoicePath};
use crate::proto::register::{self, Secret};
use crate::proto::tcp::{
    validate_chat, AccessToken, ChannelInfo, ClientMessage, ErrorCode, Removal, ServerMessage,
    UserInfo, VoiceState, CONTROL_VERSION, MAX_CHAT_LEN,
};
use crate::proto::udp::{self, DatagramKind, Header, Position, TagKey, MAX_DATAGRAM};
use crate::proto::{ChannelId, SessionToken};
use crate::spatial::{
    Attenuation, EarParams, ListenerPose, SpatialError, SpatialVoice, StereoMixer,
    STEREO_FRAME_SAMPLES,
};
use crate::stream::{FrameSource, Receiver, Sender};
use crate::time::Time;
use crate::vad::{FrameDecision, TransmitMode, Transmitter, VadConfig};
use crate::FRAME_SAMPLES;

/// Most remote senders tracked at once (bounds memory against a hostile relay).
pub const MAX_REMOTES: usize = 128;

/// Engine settings.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Display name sent in `Hello`.
    pub name: String,
    /// Encoder settings (FEC and loss hint adapt at run time).
    pub encoder: EncoderConfig,
    /// Jitter-buffer limits for every remote sender.
    pub jitter: JitterConfig,
    /// Playout policy for every remote sender.
    pub policy: PolicyChoice,
    /// When the microphone opens.
    pub transmit: TransmitMode,
    /// Voice-activity gate.
    pub vad: VadConfig,
    /// TCP ping (RTT) period.
    pub ping_interval: Duration,
    /// UDP keep-alive (NAT) period, UDP timeout and tunnel fallback ([`PathConfig`]).
    pub path: PathConfig,
    /// First retry delay of an unanswered UDP registration (doubles up to 2 s).
    pub register_retry: Duration,
    /// How often receiver reports go back to each sender.
    pub report_interval: Duration,
    /// Join the relay's default channel after `Welcome` when there is no channel to rejoin.
    pub auto_join: bool,
    /// The channel to join right after the first `Welcome` (instead of the default channel).
    pub initial_channel: Option<ChannelId>,
    /// A remote sender silent this long is forgotten (its decoder freed).
    pub remote_idle_timeout: Duration,
    /// Capture processing (high-pass, echo cancellation against our own playback mix, noise
    /// suppression, gain control, speech detection). Off here (tests and simulations feed clean
    /// signals); the client turns it on for a microphone.
    pub capture: CaptureConfig,
    /// End-to-end encryption of the voice payload ([`crate::e2ee`]); off by default.
    pub e2ee: crate::e2ee::E2eeMode,
    /// The access token presented in `Hello` (minted by the relay operator's or the game's
    /// backend; `None` only for a relay in open mode). Never logged.
    pub token: Option<AccessToken>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            name: "user".into(),
            encoder: EncoderConfig::default(),
            jitter: JitterConfig::default(),
            policy: PolicyChoice::default(),
            transmit: TransmitMode::PushToTalk,
            vad: VadConfig::default(),
            ping_interval: Duration::from_secs(5),
            path: PathConfig::default(),
            register_retry: Duration::from_millis(250),
            report_interval: Duration::from_secs(2),
            auto_join: true,
            initial_channel: None,
            remote_idle_timeout: Duration::from_secs(30),
            capture: CaptureConfig::off(),
            e2ee: crate::e2ee::E2eeMode::Off,
            token: None,
        }
    }
}

/// Connection state as the application sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ConnectionState {
    /// No TCP connection.
    Disconnected,
    /// TCP up, waiting for `Welcome`.
    Handshaking,
    /// Welcomed; `registered` says whether UDP is bound too.
    Connected,
}

/// Something the application should know about.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Event {
    /// The relay welcomed us.
    Connected {
        /// Our session token.
        session: SessionToken,
        /// The name the relay accepted.
        name: String,
    },
    /// Our UDP address is bound: voice flows over UDP.
    UdpReady,
    /// The connection status changed (reported once per change). The engine reports
    /// `Connected { path }` when voice can first flow and whenever the path changes; the I/O
    /// driver reports `Connecting`, `Reconnecting` and `Failed`.
    Status(ConnectionStatus),
    /// The relay presented a TLS certificate with this SHA-256 fingerprint (`sha256:` + 64 hex
    /// digits). Reported by the I/O driver once per handshake, before `Connected`; an application
    /// that trusts on first use stores a `first_use` fingerprint and pins it next time.
    ServerFingerprint {
        /// The fingerprint.
        fingerprint: String,
        /// No pin or CA vouched for it before: trust on first use accepted it, or (with
        /// `accepted: false`) the client refused it for lack of trust.
        first_use: bool,
        /// The client went on with the connection; `false`: refused (unknown, or a pinned
        /// fingerprint changed) and a `Disconnected` with the reason follows.
        accepted: bool,
    },
    /// The connection is gone (a reconnect may follow: the `Status` event after it says).
    Disconnected {
        /// Why, for a program to act on.
        kind: DisconnectKind,
        /// Why, for people (names the relay's message, the address, the fingerprint, and what
        /// happens next).
        reason: String,
    },
    /// Every channel with its members.
    ChannelList {
        /// The channels.
        channels: Vec<ChannelInfo>,
    },
    /// We are in `channel` now, with these members.
    ChannelJoined {
        /// The channel with its members.
        channel: ChannelInfo,
    },
    /// We left our channel.
    ChannelLeft {
        /// The channel.
        channel: ChannelId,
    },
    /// Someone entered our channel.
    UserJoined {
        /// The channel.
        channel: ChannelId,
        /// Who.
        user: UserInfo,
    },
    /// Someone left our channel.
    UserLeft {
        /// The channel.
        channel: ChannelId,
        /// Who.
        session: SessionToken,
    },
    /// A chat line in our channel.
    Chat {
        /// The channel.
        channel: ChannelId,
        /// Sender.
        from: SessionToken,
        /// Sender's name.
        from_name: String,
        /// The text.
        text: String,
        /// Relay time in ms.
        server_time_ms: u64,
    },
    /// A user (us included) started or stopped being heard.
    Speaking {
        /// Who.
        session: SessionToken,
        /// Started (true) or stopped (false).
        speaking: bool,
        /// The voice is a whisper to us (or, for ourselves, from us).
        whisper: bool,
    },
    /// A new RTT measurement.
    Rtt {
        /// Round trip in ms.
        ms: f64,
    },
    /// The relay's counters, answering [`Engine::request_server_stats`].
    ServerStats {
        /// (name, value) pairs.
        counters: Vec<(String, u64)>,
    },
    /// A command was refused locally (not connected, bad chat text, whispering to ourselves, …);
    /// the same error [`Engine::apply`] returned.
    CommandFailed {
        /// The command ([`Request::name`]).
        command: &'static str,
        /// Why ([`CommandError::code`] gives a stable number for other languages).
        error: CommandError,
    },
    /// Something about audio devices the user should know (e.g. a fallback to the null device).
    AudioNotice {
        /// What happened.
        message: String,
    },
    /// The relay refused something.
    Error {
        /// What.
        code: ErrorCode,
        /// Detail.
        message: String,
    },
    /// Permissions: the relay ended our session (kicked, banned, or our access token expired).
    /// The connection closes next (a `Disconnected` follows) and the client does not reconnect
    /// on its own.
    Removed {
        /// Why.
        removal: Removal,
        /// Name of the admin who did it (empty: the relay itself).
        by: String,
        /// The admin's reason or the relay's explanation (may be empty).
        reason: String,
        /// For a ban: its length in seconds (0 otherwise).
        ban_secs: u32,
    },
    /// Permissions: a session we kicked or banned ([`Request::Kick`], [`Request::Ban`]) is gone.
    UserRemoved {
        /// The removed session.
        session: SessionToken,
        /// Its name.
        name: String,
        /// Ban length in seconds (0: a kick).
        ban_secs: u32,
    },
    /// A member of our channel (us included) muted or deafened themselves, or undid it.
    /// [`Engine::channels`] already shows it.
    UserState {
        /// The channel.
        channel: ChannelId,
        /// Who.
        session: SessionToken,
        /// Their new state.
        state: VoiceState,
    },
    /// Scale-out: the members of `channel` changed; `users` is its complete list (the relay's
    /// own sessions, then members hosted by another relay of the cluster, which
    /// [`SessionToken::is_remote`] tells apart) and replaces the one shown before.
    /// [`Engine::channels`] already shows it. Only a relay in a cluster sends it, for every
    /// channel (for our own channel `UserJoined`/`UserLeft` come as well).
    ChannelMembers {
        /// The channel.
        channel: ChannelId,
        /// The relay hosting it (`IP:PORT`; empty when none is known).
        relay: String,
        /// Its members, under tokens of the relay we are connected to.
        users: Vec<UserInfo>,
    },
}

/// What an application asks of the engine: one value per user action, so a UI, a script or a
/// test can queue, record or replay them. [`Engine::apply`] carries one out; each also has its own
/// method (`join_channel`, `send_chat`, …).
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Join (or switch to) a channel.
    Join(ChannelId),
    /// Join the channel with this name as soon as the channel tree shows it (until then the
    /// request waits; a later join request replaces it).
    JoinNamed(String),
    /// Leave the channel.
    Leave,
    /// Say something in our channel.
    Chat(String),
    /// Whisper to one session (`None`: talk to the channel again).
    Whisper(Option<SessionToken>),
    /// Whisper to the user with this name as soon as they are known: the channel tree is asked
    /// for again every second until they appear.
    WhisperNamed(String),
    /// Push-to-talk held or released.
    PushToTalk(bool),
    /// Transmit mode.
    Mode(TransmitMode),
    /// Voice-activity gate.
    Vad(VadConfig),
    /// Microphone mute.
    Mute(bool),
    /// Output deafen.
    Deafen(bool),
    /// One user's gain (0.0–4.0).
    UserVolume(SessionToken, f32),
    /// One user muted locally.
    UserMute(SessionToken, bool),
    /// Ask for the whole channel tree ([`Event::ChannelList`]).
    ListChannels,
    /// Ask for the relay's counters ([`Event::ServerStats`]).
    ServerStats,
    /// Capture processing stages.
    Capture(CaptureConfig),
    /// Echo path delay hint in ms (device output + input latency and buffering).
    EchoDelay(u32),
    /// This client's position for positional audio ([`Engine::set_position`]).
    Position(Option<Position>),
    /// The listener's pose ([`Engine::set_listener`]).
    Listener(ListenerPose),
    /// Override of the channel's distance model ([`Engine::set_channel_attenuation`]).
    ChannelAttenuation(Option<Attenuation>),
    /// Permissions: remove a session from the relay (needs the `admin` claim in our token;
    /// otherwise the relay answers `Error{Forbidden}`).
    Kick {
        /// Whom.
        session: SessionToken,
        /// Shown to them (at most 200 bytes are passed on).
        reason: String,
    },
    /// Permissions: remove a session and refuse its user for `duration_secs` (0: the relay's
    /// default length). Needs the `admin` claim.
    Ban {
        /// Whom.
        session: SessionToken,
        /// Shown to them.
        reason: String,
        /// Ban length in seconds (0: the relay's default).
        duration_secs: u32,
    },
}

impl Request {
    /// A short name for logs and [`Event::CommandFailed`].
    pub fn name(&self) -> &'static str {
        match self {
            Request::Join(_) => "join",
            Request::JoinNamed(_) => "join_named",
            Request::Leave => "leave",
            Request::Chat(_) => "chat",
            Request::Whisper(_) => "whisper",
            Request::WhisperNamed(_) => "whisper_named",
            Request::PushToTalk(_) => "push_to_talk",
            Request::Mode(_) => "mode",
            Request::Vad(_) => "vad",
            Request::Mute(_) => "mute",
            Request::Deafen(_) => "deafen",
            Request::UserVolume(..) => "user_volume",
            Request::UserMute(..) => "user_mute",
            Request::ListChannels => "list_channels",
            Request::ServerStats => "server_stats",
            Request::Capture(_) => "capture",
            Request::EchoDelay(_) => "echo_delay",
            Request::Position(_) => "position",
            Request::Listener(_) => "listener",
            Request::ChannelAttenuation(_) => "channel_attenuation",
            Request::Kick { .. } => "kick",
            Request::Ban { .. } => "ban",
        }
    }
}

/// Why a connection ended ([`Event::Disconnected`]), for a program to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum DisconnectKind {
    /// The relay could not be reached or the connection failed underneath (connect, name
    /// resolution, socket or TLS errors). Retried with back-off when reconnecting is on.
    Network,
    /// The relay closed the connection without saying why (it stopped, or timed us out).
    Closed,
    /// The relay broke the protocol (an oversized frame).
    Protocol,
    /// The relay's TLS certificate was not trusted: unknown, or a pinned fingerprint changed
    /// (an `Event::ServerFingerprint` with `accepted: false` came first). Final.
    Untrusted,
    /// The client's own configuration cannot work (e.g. an unreadable CA file). Final.
    Configuration,
    /// Sent to the relay of the cluster that hosts the room; reconnecting there at once.
    Redirected,
    /// The relay refused the session with this error before welcoming it (`Full`, `Banned`,
    /// `Version`, a bad token, …; an [`Event::Error`] with the text came first).
    Refused(ErrorCode),
    /// The relay ended the session: kicked, banned or token expired (an [`Event::Removed`]
    /// came first). Final: the client does not reconnect on its own.
    Removed(Removal),
}

impl DisconnectKind {
    /// The number C sees in `voice_event.code` (`VOICE_DISCONNECT_*`).
    pub fn code(self) -> u32 {
        match self {
            DisconnectKind::Network => 1,
            DisconnectKind::Closed => 2,
            DisconnectKind::Protocol => 3,
            DisconnectKind::Untrusted => 4,
            DisconnectKind::Configuration => 5,
            DisconnectKind::Redirected => 6,
            DisconnectKind::Refused(_) => 7,
            DisconnectKind::Removed(_) => 8,
        }
    }
}

/// Why a command was refused locally.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
pub enum CommandError {
    /// Not connected to a relay.
    #[error("not connected")]
    NotConnected,
    /// Chat text empty or over the limit.
    #[error("chat text must be 1..={MAX_CHAT_LEN} bytes")]
    BadChat,
    /// Not in a channel.
    #[error("not in a channel")]
    NotInChannel,
    /// Whisper target is ourselves.
    #[error("cannot whisper to yourself")]
    WhisperSelf,
    /// A position, pose or distance model out of range.
    #[error(transparent)]
    Spatial(#[from] SpatialError),
    /// A kick or ban without a session to remove (session 0).
    #[error("no session given")]
    NoSession,
}

impl CommandError {
    /// A stable number per error, for bindings that cannot match on the enum (the C ABI's
    /// `voice_event.code` of `VOICE_EVENT_COMMAND_FAILED`): 1 not connected, 2 bad chat text,
    /// 3 not in a channel, 4 whisper to yourself, 5 position, pose or distance model out of range,
    /// 6 kick or ban without a session.
    pub fn code(&self) -> u32 {
        match self {
            CommandError::NotConnected => 1,
            CommandError::BadChat => 2,
            CommandError::NotInChannel => 3,
            CommandError::WhisperSelf => 4,
            CommandError::Spatial(_) => 5,
            CommandError::NoSession => 6,
        }
    }
}

/// One remote sender as the statistics show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RemoteStats {
    /// Session.
    pub session: SessionToken,
    /// Name, if known.
    pub name: String,
    /// Heard right now.
    pub speaking: bool,
    /// Gain applied in the mix.
    pub volume: f32,
    /// Muted locally.
    pub muted: bool,
    /// Stream metrics (depth, loss % over 10 s, late, concealed, FEC-recovered, …).
    pub stream: StreamStats,
    /// The last frame heard from this sender was end-to-end encrypted and verified.
    pub encrypted: bool,
}

/// A snapshot of the whole engine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EngineStats {
    /// Connection state.
    pub state: ConnectionState,
    /// Our session.
    pub session: SessionToken,
    /// Our channel.
    pub channel: Option<ChannelId>,
    /// UDP bound.
    pub udp_ready: bool,
    /// The way voice travels now (`None`: it cannot flow yet).
    pub path: Option<VoicePath>,
    /// The connection status (the engine alone knows `Connected` and otherwise says
    /// `Connecting { attempt: 0, .. }`; the I/O driver fills in what it knows).
    pub status: ConnectionStatus,
    /// Voice datagrams sent through the tunnel.
    pub tunnel_tx_packets: u64,
    /// Voice datagrams received through the tunnel.
    pub tunnel_rx_packets: u64,
    /// Last TCP round trip in ms.
    pub rtt_ms: Option<f64>,
    /// Last UDP round trip in ms.
    pub udp_rtt_ms: Option<f64>,
    /// Transmitting now.
    pub transmitting: bool,
    /// Microphone muted.
    pub muted: bool,
    /// Output deafened.
    pub deafened: bool,
    /// Whisper target, if any.
    pub whisper: Option<SessionToken>,
    /// Input level in dBFS.
    pub input_level_dbfs: f32,
    /// Voice datagrams sent.
    pub tx_packets: u64,
    /// Voice bytes sent.
    pub tx_bytes: u64,
    /// Datagrams received.
    pub rx_packets: u64,
    /// Datagrams dropped as malformed.
    pub rx_malformed: u64,
    /// Well-formed voice datagrams dropped because no stream could take them: from a new sender
    /// beyond [`MAX_REMOTES`], or one no decoder could be made for (logged).
    pub rx_dropped: u64,
    /// The encoder's current packet-loss hint (%), driven by receiver reports.
    pub encoder_loss_hint: u8,
    /// Per remote sender.
    pub remotes: Vec<RemoteStats>,
    /// End-to-end encryption: mode, sealed/opened frames, `decrypt_failed` by reason, safety numbers.
    pub e2ee: crate::e2ee::E2eeStats,
    /// Positional audio, in a 3D channel (`None` in a 2D one): what a map shows.
    pub spatial: Option<SpatialView>,
    /// How the playback consumer's clock paces the mix, filled by the I/O driver when a sound
    /// card or the application's pulls pace it (`None`: the engine's own 20 ms timer does, or
    /// there is no driver).
    pub playback_pacing: Option<PlaybackPacing>,
    /// What capture processing measured on the last frame: speech probability, echo return loss
    /// enhancement, the echo delay it found (`None` when processing is off).
    pub capture: Option<CaptureStats>,
}

/// The playback clock as the I/O driver sees it: what an integrator tunes their audio thread by.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PlaybackPacing {
    /// How long before the consumer's next pull a frame is mixed now, ms (it grows each time the
    /// consumer starved and relaxes after a quiet while).
    pub lead_ms: f32,
    /// The consumer's period between pulls, ms, once learned.
    pub period_ms: Option<f32>,
    /// Pulls so far.
    pub pulls: u64,
    /// Samples the consumer asked for that were not ready, over all pulls (0 on a consumer that
    /// was always served).
    pub starved_samples: u64,
}

/// Positional audio as a map shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpatialView {
    /// The channel's audible range (`max_distance`).
    pub range: f32,
    /// This client's own position, if set.
    pub me: Option<Position>,
    /// The listener's pose.
    pub listener_position: Position,
    /// Where the listener faces.
    pub listener_forward: [f32; 3],
    /// Every remote sender's last position, by session.
    pub others: Vec<(SessionToken, Position)>,
}

struct Remote {
    receiver: Receiver,
    volume: f32,
    muted: bool,
    speaking: bool,
    whisper: bool,
    last_packet: Time,
    frame: Box<[i16; FRAME_SAMPLES]>,
    /// The sender left: play out what is buffered, accept nothing new, then forget it.
    left: bool,
    /// Last position the sender's datagrams carried.
    position: Option<Position>,
    /// Stereo rendering state (interaural delay history, ramp).
    voice: SpatialVoice,
    /// The last accepted frame was end-to-end encrypted.
    encrypted: bool,
}

/// A datagram waiting to be sent.
type Outgoing = ([u8; MAX_DATAGRAM], usize);

/// The sans-IO client engine. See the module documentation for the contract.
pub struct Engine {
    cfg: EngineConfig,
    state: ConnectionState,
    session: SessionToken,
    name: String,
    secret: Option<Secret>,
    /// Tags our datagrams and checks the relay's replies (derived from `secret`).
    tag_key: TagKey,
    udp_ready: bool,
    register_counter: u64,
    register_delay: Duration,
    next_register: Option<Time>,
    next_ping: Option<Time>,
    next_keepalive: Option<Time>,
    monitor: PathMonitor,
    next_report: Option<Time>,
    rtt: Option<Duration>,
    udp_rtt: Option<Duration>,
    channels: Vec<ChannelInfo>,
    channel: Option<ChannelId>,
    desired_channel: Option<ChannelId>,
    /// A join by name waiting for the channel tree to show that channel.
    join_named: Option<String>,
    /// A whisper by name waiting for that user to be known.
    whisper_named: Option<String>,
    /// When to ask for the channel tree again while `whisper_named` waits.
    next_list_request: Option<Time>,
    /// A `Redirect` not yet taken by the driver.
    redirect: Option<String>,
    /// The relay removed our session (`Removed`), not yet taken by the driver.
    removed: Option<Removal>,
    /// The error the relay answered our `Hello` with (it closes the connection next).
    handshake_error: Option<ErrorCode>,
    members: BTreeMap<SessionToken, String>,
    names: HashMap<SessionToken, String>,
    /// Stable user id of every session we know ([`UserInfo::user_id`]).
    user_ids: HashMap<SessionToken, String>,
    /// Ordered by session, so that decoding, mixing and the events they raise happen in the same
    /// order on every run.
    remotes: BTreeMap<SessionToken, Remote>,
    /// Per-user gain and local mute of the sessions we know, as set by the application.
    prefs: HashMap<SessionToken, (f32, bool)>,
    /// The same by stable user id: a relay that restarts numbers sessions again, and a token
    /// then names someone else; the preferences follow the user ([`Engine::learn_user`]).
    prefs_by_user: HashMap<String, (f32, bool)>,
    /// Our own mute / deafen as the relay shows it to others.
    voice_state: VoiceState,
    sender: Sender,
    transmitter: Transmitter,
    capture: Option<Box<CaptureProcessor>>,
    was_transmitting: bool,
    whisper: Option<SessionToken>,
    deafened: bool,
    reports: HashMap<SessionToken, (u16, Time)>,
    mixer: Mixer,
    stereo: StereoMixer,
    listener: ListenerPose,
    channel_spatial: Option<Attenuation>,
    spatial_override: Option<Attenuation>,
    control_out: VecDeque<ClientMessage>,
    datagrams_out: VecDeque<Outgoing>,
    events: VecDeque<Event>,
    tx_packets: u64,
    tx_bytes: u64,
    rx_packets: u64,
    rx_malformed: u64,
    rx_dropped: u64,
    tunnel_tx: u64,
    tunnel_rx: u64,
    /// The relay was told to tunnel this session's voice.
    told_tunnel: bool,
    e2ee: crate::e2ee::E2eeSession,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("state", &self.state)
            .field("session", &self.session)
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// A disconnected engine.
    pub fn new(cfg: EngineConfig) -> Result<Self, crate::codec::CodecError> {
        // If the end-to-end keys cannot be made (no OS randomness), the session stays enabled
        // without keys: nothing is sent and nothing is heard, never plaintext.
        let e2ee = crate::e2ee::E2eeSession::new(&cfg.e2ee).unwrap_or_else(|e| {
            log::error!("end-to-end encryption unavailable: {e}");
            crate::e2ee::E2eeSession::unavailable(&cfg.e2ee)
        });
        let sender = Sender::new(SessionToken::NONE, cfg.encoder)?;
        let transmitter = Transmitter::new(cfg.transmit, cfg.vad);
        let initial_channel = cfg.initial_channel;
        let path_cfg = cfg.path;
        let capture = cfg
            .capture
            .any()
            .then(|| Box::new(CaptureProcessor::new(cfg.capture)));
        Ok(Engine {
            name: cfg.name.clone(),
            cfg,
            state: ConnectionState::Disconnected,
            session: SessionToken::NONE,
            secret: None,
            tag_key: TagKey::UNKEYED,
            udp_ready: false,
            register_counter: 0,
            register_delay: Duration::ZERO,
            next_register: None,
            next_ping: None,
            next_keepalive: None,
            monitor: PathMonitor::new(path_cfg),
            next_report: None,
            rtt: None,
            udp_rtt: None,
            channels: Vec::new(),
            channel: None,
            desired_channel: initial_channel,
            join_named: None,
            whisper_named: None,
            next_list_request: None,
            redirect: None,
            removed: None,
            handshake_error: None,
            members: BTreeMap::new(),
            names: HashMap::new(),
            user_ids: HashMap::new(),
            remotes: BTreeMap::new(),
            prefs: HashMap::new(),
            prefs_by_user: HashMap::new(),
            voice_state: VoiceState::default(),
            sender,
            transmitter,
            capture,
            was_transmitting: false,
            whisper: None,
            deafened: false,
            reports: HashMap::new(),
            mixer: Mixer::new(),
            stereo: StereoMixer::new(),
            listener: ListenerPose::default(),
            channel_spatial: None,
            spatial_override: None,
            control_out: VecDeque::new(),
            datagrams_out: VecDeque::with_capacity(8),
            events: VecDeque::new(),
            tx_packets: 0,
            tx_bytes: 0,
            rx_packets: 0,
            rx_malformed: 0,
            rx_dropped: 0,
            tunnel_tx: 0,
            tunnel_rx: 0,
            told_tunnel: false,
            e2ee,
        })
    }

    // ----- connection lifecycle -----

    /// A TCP connection to the relay is up: start the handshake.
    pub fn connect(&mut self, _now: Time) {
        self.reset_session();
        self.handshake_error = None;
        self.state = ConnectionState::Handshaking;
        self.control_out.clear();
        self.control_out.push_back(ClientMessage::Hello {
            version: CONTROL_VERSION,
            name: self.cfg.name.clone(),
            token: self.cfg.token.clone(),
        });
    }

    /// The TCP connection is gone, for the reason the driver saw (`kind`, `reason`). The channel
    /// is remembered and rejoined after the next `Welcome`. A connection the relay closed after
    /// refusing our `Hello` with an error is reported as [`DisconnectKind::Refused`] with that
    /// error's code.
    pub fn disconnected(&mut self, _now: Time, kind: DisconnectKind, reason: &str) {
        if self.state == ConnectionState::Disconnected {
            return;
        }
        let kind = match (kind, self.handshake_error.take()) {
            (DisconnectKind::Closed | DisconnectKind::Network, Some(code)) => {
                DisconnectKind::Refused(code)
            }
            (kind, _) => kind,
        };
        self.reset_session();
        self.events.push_back(Event::Disconnected {
            kind,
            reason: reason.to_string(),
        });
    }

    fn reset_session(&mut self) {
        self.state = ConnectionState::Disconnected;
        self.session = SessionToken::NONE;
        self.secret = None;
        self.tag_key = TagKey::UNKEYED;
        self.udp_ready = false;
        self.next_register = None;
        self.next_ping = None;
        self.next_keepalive = None;
        self.monitor.reset();
        self.told_tunnel = false;
        self.next_report = None;
        self.channel = None;
        self.channel_spatial = None;
        self.members.clear();
        self.remotes.clear();
        self.reports.clear();
        self.datagrams_out.clear();
    }

    /// The UDP socket changed (new local port, or a NAT rebinding is suspected): register again now.
    pub fn udp_rebound(&mut self, now: Time) {
        if self.secret.is_some() {
            self.udp_ready = false;
            self.register_delay = self.cfg.register_retry;
            self.next_register = Some(now);
        }
    }

    // ----- inputs -----

    /// Handles one message from the relay.
    pub fn handle_control(&mut self, now: Time, msg: ServerMessage) {
        self.handle_server_message(now, msg);
        // A channel list, a join or a presence change may be what a join or whisper by name
        // waits for.
        if self.names_pending() {
            self.resolve_names();
        }
    }

    fn handle_server_message(&mut self, now: Time, msg: ServerMessage) {
        match msg {
            ServerMessage::Welcome {
                session,
                secret,
                name,
                channels,
                default_channel,
                ..
            } => {
                self.state = ConnectionState::Connected;
                self.session = session;
                self.secret = Some(secret);
                self.tag_key = TagKey::derive(&secret);
                self.name = name.clone();
                self.sender.set_session(session);
                self.sender.set_tag_key(self.tag_key.clone());
                self.udp_ready = false;
                self.register_delay = self.cfg.register_retry;
                self.next_register = Some(now);
                self.next_ping = Some(now);
                self.next_keepalive = None;
                self.monitor.reset();
                self.next_report = Some(now + self.cfg.report_interval);
                self.learn_users(&channels);
                self.channels = channels.clone();
                if let Some(m) = self.e2ee.start(session) {
                    self.control_out.push_back(m);
                }
                if self.voice_state != VoiceState::default() {
                    self.control_out.push_back(ClientMessage::SetVoiceState {
                        state: self.voice_state,
                    });
                }
                self.events.push_back(Event::Connected { session, name });
                self.events.push_back(Event::ChannelList { channels });
                let rejoin = self
                    .desired_channel
                    .filter(|c| self.channels.iter().any(|ch| ch.id == *c));
                let target = rejoin.or(self.cfg.auto_join.then_some(default_channel));
                if let Some(channel) = target {
                    self.control_out
                        .push_back(ClientMessage::JoinChannel { channel });
                }
            }
            ServerMessage::Joined { channel } => {
                // 2D until a `ChannelSpatial` for this channel follows.
                self.channel_spatial = None;
                self.channel = Some(channel.id);
                self.desired_channel = Some(channel.id);
                self.members = channel
                    .users
                    .iter()
                    .map(|u| (u.session, u.name.clone()))
                    .collect();
                for u in &channel.users {
                    self.learn_user(u);
                }
                self.list_members(&channel);
                self.e2ee
                    .joined_channel(now, channel.users.iter().map(|u| u.session));
                self.events.push_back(Event::ChannelJoined { channel });
            }
            ServerMessage::Left { channel } => {
                self.e2ee.left_channel(now);
                self.channel = None;
                self.channel_spatial = None;
                self.desired_channel = None;
                self.members.clear();
                self.unlist_user(self.session);
                self.events.push_back(Event::ChannelLeft { channel });
            }
            ServerMessage::UserJoined { channel, user } => {
                if Some(channel) == self.channel {
                    self.members.insert(user.session, user.name.clone());
                }
                self.learn_user(&user);
                self.list_user(channel, &user);
                self.events.push_back(Event::UserJoined { channel, user });
            }
            ServerMessage::UserLeft { channel, session } => {
                self.members.remove(&session);
                self.unlist_user(session);
                self.e2ee.member_left(now, session);
                // What is already buffered is the end of what they said: it plays out, and the
                // remote is forgotten once drained ([`Engine::mix`]).
                if let Some(r) = self.remotes.get_mut(&session) {
                    r.left = true;
                    r.receiver.close();
                }
                if self.whisper == Some(session) {
                    self.whisper = None;
                }
                self.events.push_back(Event::UserLeft { channel, session });
            }
            ServerMessage::Chat {
                channel,
                from,
                from_name,
                text,
                server_time_ms,
            } => self.events.push_back(Event::Chat {
                channel,
                from,
                from_name,
                text,
                server_time_ms,
            }),
            ServerMessage::Pong { client_time_us, .. } => {
                let rtt = now.saturating_since(Time::from_micros(client_time_us));
                self.rtt = Some(rtt);
                self.events.push_back(Event::Rtt {
                    ms: rtt.as_secs_f64() * 1000.0,
                });
            }
            ServerMessage::ChannelList { channels } => {
                self.learn_users(&channels);
                self.channels = channels.clone();
                self.events.push_back(Event::ChannelList { channels });
            }
            ServerMessage::ReceiverReport {
                from,
                loss_permille,
                ..
            } => {
                self.reports.insert(from, (loss_permille, now));
                self.adapt_encoder(now);
            }
            ServerMessage::Stats { counters } => {
                self.events.push_back(Event::ServerStats { counters })
            }
            ServerMessage::Error { code, message } => {
                if self.state == ConnectionState::Handshaking {
                    self.handshake_error = Some(code);
                }
                self.events.push_back(Event::Error { code, message })
            }
            ServerMessage::ChannelSpatial { channel, spatial } => {
                if Some(channel) == self.channel {
                    match spatial.attenuation() {
                        Ok(a) => self.channel_spatial = Some(a),
                        Err(e) => {
                            self.channel_spatial = None;
                            log::warn!("relay announced unusable 3D settings: {e}");
                        }
                    }
                }
            }
            ServerMessage::Tunnel { datagram } => self.handle_tunneled(now, &datagram),
            ServerMessage::Redirect { channel, relay } => {
                // Rejoined on the hosting relay after the driver reconnects there.
                self.desired_channel = Some(channel);
                self.redirect = Some(relay);
            }
            ServerMessage::E2eeIdentity { session, blob } => {
                if self.members.contains_key(&session) {
                    self.e2ee.handle_identity(now, session, &blob);
                }
            }
            ServerMessage::E2eeKey { from, blob } => self.e2ee.handle_key(from, &blob),
            ServerMessage::Removed {
                removal,
                by,
                reason,
                ban_secs,
            } => {
                self.removed = Some(removal);
                self.events.push_back(Event::Removed {
                    removal,
                    by,
                    reason,
                    ban_secs,
                });
            }
            ServerMessage::UserRemoved {
                session,
                name,
                ban_secs,
            } => self.events.push_back(Event::UserRemoved {
                session,
                name,
                ban_secs,
            }),
            ServerMessage::ChannelMembers {
                channel,
                relay,
                users,
            } => {
                if let Some(c) = self.channels.iter_mut().find(|c| c.id == channel) {
                    c.users.clone_from(&users);
                }
                for u in &users {
                    self.learn_user(u);
                }
                self.events.push_back(Event::ChannelMembers {
                    channel,
                    relay,
                    users,
                });
            }
            ServerMessage::UserState {
                channel,
                session,
                state,
            } => {
                let listed = self
                    .channels
                    .iter_mut()
                    .filter(|c| c.id == channel)
                    .flat_map(|c| c.users.iter_mut())
                    .find(|u| u.session == session);
                if let Some(u) = listed {
                    u.state = state;
                }
                self.events.push_back(Event::UserState {
                    channel,
                    session,
                    state,
                });
            }
        }
    }

    /// One datagram that came through the tunnel: a whole version-2 datagram, parsed as over
    /// UDP (the tag stripped; forwarded voice carries its sender's tag, which only the relay can
    /// check). Only voice is expected there (registration and keep-alives prove UDP, so they
    /// never travel inside the tunnel).
    fn handle_tunneled(&mut self, now: Time, bytes: &[u8]) {
        let Ok(d) = udp::parse(bytes) else {
            self.rx_malformed += 1;
            return;
        };
        self.tunnel_rx += 1;
        let h = d.header;
        if h.kind == DatagramKind::Voice && h.sender != self.session && !h.sender.is_none() {
            // As over UDP: the positional block is the sender's position, and everything
            // before the payload is the SFrame metadata.
            self.receive_voice(now, &h, d.position, udp::metadata(bytes, &d), d.payload);
        } else {
            self.rx_malformed += 1;
        }
    }

    /// The path changed to `path`: tell the relay where our voice goes and the application.
    fn path_changed(&mut self, now: Time, path: VoicePath) {
        match path {
            VoicePath::Tunnel => {
                log::info!("UDP does not get through; voice goes through the control connection");
                self.udp_ready = false;
                self.told_tunnel = true;
                self.control_out.push_back(ClientMessage::Tunnel {
                    active: true,
                    datagram: Vec::new(),
                });
                // Probe UDP with registrations (the NAT may have moved us) until one is answered.
                self.next_keepalive = None;
                self.next_register = Some(now + self.cfg.path.keepalive_interval);
            }
            VoicePath::Udp => {
                if std::mem::take(&mut self.told_tunnel) {
                    self.control_out.push_back(ClientMessage::Tunnel {
                        active: false,
                        datagram: Vec::new(),
                    });
                }
                self.next_keepalive = Some(now + self.cfg.path.keepalive_interval);
            }
        }
        self.events
            .push_back(Event::Status(ConnectionStatus::Connected { path }));
    }

    /// The relay this engine was told to move to with `Redirect` (scale-out), once: the driver
    /// connects there and the engine rejoins the room it asked for.
    pub fn take_redirect(&mut self) -> Option<String> {
        self.redirect.take()
    }

    /// Why the relay removed our session (`ServerMessage::Removed`), once: the driver then
    /// treats the closed connection as final instead of reconnecting.
    pub fn take_removal(&mut self) -> Option<Removal> {
        self.removed.take()
    }

    /// Keeps [`Engine::channels`] current with what `Joined` says of our channel (between two
    /// channel lists, presence messages are the news).
    fn list_members(&mut self, channel: &ChannelInfo) {
        for u in &channel.users {
            self.unlist_user(u.session);
        }
        if let Some(c) = self.channels.iter_mut().find(|c| c.id == channel.id) {
            c.users.clone_from(&channel.users);
        }
    }

    /// `user` is in `channel` now (and in no other).
    fn list_user(&mut self, channel: ChannelId, user: &UserInfo) {
        self.unlist_user(user.session);
        if let Some(c) = self.channels.iter_mut().find(|c| c.id == channel) {
            c.users.push(user.clone());
        }
    }

    /// `session` is in no channel.
    fn unlist_user(&mut self, session: SessionToken) {
        for c in &mut self.channels {
            c.users.retain(|u| u.session != session);
        }
    }

    fn learn_users(&mut self, channels: &[ChannelInfo]) {
        for u in channels.iter().flat_map(|c| &c.users) {
            self.learn_user(u);
        }
    }

    /// Records who `user.session` is. When the token was someone else before (a restarted
    /// relay numbers sessions again), the per-user volume and mute set for that someone no
    /// longer apply to it; this user's own (by stable id), if set, do.
    fn learn_user(&mut self, user: &UserInfo) {
        let session = user.session;
        if self.names.get(&session) != Some(&user.name) {
            self.names.insert(session, user.name.clone());
        }
        let id = user.user_id.as_str();
        if self.user_ids.get(&session).is_some_and(|known| known == id) {
            return;
        }
        let had_id = self.user_ids.insert(session, id.to_owned()).is_some();
        let pref = match self.prefs_by_user.get(id) {
            Some(&p) => Some(p),
            // A preference set before the user was known stays with the token.
            None if !had_id => self.prefs.get(&session).copied(),
            None => None,
        };
        match pref {
            Some(p) => {
                self.prefs.insert(session, p);
                self.prefs_by_user.insert(id.to_owned(), p);
            }
            None => {
                self.prefs.remove(&session);
            }
        }
        if let Some(r) = self.remotes.get_mut(&session) {
            (r.volume, r.muted) = pref.unwrap_or((1.0, false));
        }
    }

    /// Sets the encoder's loss protection from what receivers reported over the last 10 s: the
    /// worst receiver decides, so FEC (or, on very lossy paths, DRED) covers the listener who
    /// needs it most ([`crate::codec::loss_plan`]). A setting the encoder refuses is logged, and
    /// the encoder keeps the one it had (the plans `loss_plan` makes are all valid settings).
    fn adapt_encoder(&mut self, now: Time) {
        self.reports
            .retain(|_, (_, at)| now.saturating_since(*at) < Duration::from_secs(10));
        if !self.cfg.encoder.fec {
            return;
        }
        let worst = self.reports.values().map(|(l, _)| *l).max();
        let plan = crate::codec::loss_plan(worst);
        let want = plan.apply_to(self.cfg.encoder);
        let enc = self.sender.encoder_mut();
        let mut result = Ok(());
        if enc.config() != want {
            result = enc.apply(want);
        }
        if result.is_ok() && enc.dred_duration() != plan.dred_duration {
            result = enc.set_dred_duration(plan.dred_duration);
        }
        if let Err(e) = result {
            log::warn!("encoder refused its loss protection: {e}");
        }
    }

    /// Handles one received UDP datagram. Malformed datagrams are counted and dropped.
    pub fn handle_datagram(&mut self, now: Time, bytes: &[u8]) {
        let d = match udp::parse(bytes) {
            Ok(d) => d,
            Err(_) => {
                self.rx_malformed += 1;
                return;
            }
        };
        self.rx_packets += 1;
        let h = d.header;
        // The relay tags its replies with our key; forwarded voice carries its sender's tag,
        // which only the relay can check.
        if matches!(h.kind, DatagramKind::RegisterAck | DatagramKind::Pong)
            && self.tag_key.verify(bytes).is_err()
        {
            self.rx_malformed += 1;
            return;
        }
        match h.kind {
            DatagramKind::RegisterAck if h.sender == self.session && !self.session.is_none() => {
                if !self.udp_ready {
                    self.udp_ready = true;
                    self.events.push_back(Event::UdpReady);
                }
                self.next_register = None;
                if let Some(path) = self.monitor.registered() {
                    self.path_changed(now, path);
                }
            }
            DatagramKind::Pong if h.sender == self.session && d.payload.len() == 8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(d.payload);
                let sent = Time::from_micros(u64::from_le_bytes(b));
                self.udp_rtt = Some(now.saturating_since(sent));
                self.monitor.pong();
            }
            DatagramKind::Voice if h.sender != self.session && !h.sender.is_none() => {
                // Everything before the payload (header and positional block) is the SFrame
                // metadata.
                self.receive_voice(now, &h, d.position, udp::metadata(bytes, &d), d.payload)
            }
            _ => self.rx_malformed += 1,
        }
    }

    fn receive_voice(
        &mut self,
        now: Time,
        h: &Header,
        position: Option<Position>,
        metadata: &[u8],
        payload: &[u8],
    ) {
        let encrypted = h.flags.contains(udp::Flags::ENCRYPTED);
        if !encrypted && self.e2ee.enabled() {
            self.e2ee.count_plaintext();
            return;
        }
        if !self.remotes.contains_key(&h.sender) {
            // Only members of our channel, or someone whispering to us, become a remote: a
            // datagram still in flight after its sender left must not recreate it (a ghost that
            // conceals and sends receiver reports until it times out).
            let expected = self.members.contains_key(&h.sender) || h.target == self.session;
            if !expected {
                return;
            }
            if self.remotes.len() >= MAX_REMOTES {
                self.rx_dropped += 1;
                return;
            }
            let receiver = match Receiver::new(self.cfg.jitter, self.cfg.policy.build()) {
                Ok(r) => r,
                Err(e) => {
                    log::warn!("no decoder for sender {}: {e}", h.sender.0);
                    self.rx_dropped += 1;
                    return;
                }
            };
            let (volume, muted) = self.prefs.get(&h.sender).copied().unwrap_or((1.0, false));
            self.remotes.insert(
                h.sender,
                Remote {
                    receiver,
                    volume,
                    muted,
                    speaking: false,
                    whisper: false,
                    last_packet: now,
                    frame: Box::new([0; FRAME_SAMPLES]),
                    left: false,
                    position: None,
                    voice: SpatialVoice::new(),
                    encrypted: false,
                },
            );
        }
        if let Some(r) = self.remotes.get_mut(&h.sender).filter(|r| !r.left) {
            let payload = if encrypted {
                match self.e2ee.open(h.sender, metadata, payload) {
                    Ok(p) => p,
                    // Dropped and counted by reason; the jitter buffer conceals the gap.
                    Err(_) => return,
                }
            } else {
                payload
            };
            r.last_packet = now;
            r.whisper = !h.target.is_none();
            r.encrypted = encrypted;
            // Only a datagram that was accepted (opened, when encrypted) moves its sender.
            if let Some(p) = position {
                r.position = Some(p);
            }
            // Late and duplicate packets are counted by the receiver's jitter buffer; nothing
            // else is to be done with the outcome here.
            let _counted = r.receiver.handle_datagram(now, h, payload);
        }
    }

    /// Handles one captured 20 ms frame: runs capture processing (when on), decides whether to
    /// send it and queues the datagram.
    pub fn handle_capture(&mut self, now: Time, pcm: &[i16; FRAME_SAMPLES]) {
        let mut processed = *pcm;
        let speech = match self.capture.as_mut() {
            Some(p) => {
                let speech = p.process(&mut processed).unwrap_or(false);
                p.config().vad.then_some(speech)
            }
            None => None,
        };
        let pcm = &processed;
        let decision = self.transmitter.decide_with_speech(pcm, speech);
        let path = self.monitor.path();
        let can_send = path.is_some()
            && self.state == ConnectionState::Connected
            && (self.channel.is_some() || self.whisper.is_some());
        let transmitting = can_send && decision != FrameDecision::Silent;
        if transmitting {
            let target = self.whisper.unwrap_or(SessionToken::NONE);
            let mut buf = [0u8; MAX_DATAGRAM];
            let last = decision == FrameDecision::SendLast;
            let sent = if self.e2ee.enabled() {
                let e2ee = &mut self.e2ee;
                let mut seal = |meta: &[u8], payload: &[u8], out: &mut [u8]| {
                    e2ee.seal(now, meta, payload, out)
                };
                self.sender
                    .encode_sealed(pcm, target, last, &mut seal, &mut buf)
            } else {
                self.sender.encode(pcm, target, last, &mut buf)
            };
            if let Ok(n) = sent {
                self.tx_packets += 1;
                self.tx_bytes += n as u64;
                if path == Some(VoicePath::Tunnel) {
                    self.tunnel_tx += 1;
                    self.control_out.push_back(ClientMessage::Tunnel {
                        active: true,
                        datagram: buf[..n].to_vec(),
                    });
                } else {
                    self.datagrams_out.push_back((buf, n));
                }
            }
        } else {
            self.sender.skip_frame();
        }
        let now_tx = transmitting && decision == FrameDecision::Send;
        if now_tx != self.was_transmitting {
            self.was_transmitting = now_tx;
            self.events.push_back(Event::Speaking {
                session: self.session,
                speaking: now_tx,
                whisper: self.whisper.is_some(),
            });
        }
    }

    /// Produces one mixed 20 ms output frame: every remote sender's receiver ticks exactly once.
    /// Mono: in a 3D channel a sender's distance gain applies (no left/right; see
    /// [`Engine::mix_stereo`]).
    pub fn mix(&mut self, now: Time, out: &mut [i16; FRAME_SAMPLES]) {
        self.mixer.clear();
        self.tick_remotes(now);
        let att = self.spatial_attenuation();
        let listener = self.listener.position;
        for r in self.remotes.values() {
            if r.speaking && !self.deafened && !r.muted {
                let distance_gain = match (att, r.position, r.whisper) {
                    (Some(a), Some(p), false) => a.gain(p.distance(listener)),
                    _ => 1.0,
                };
                self.mixer.add(&r.frame, r.volume * distance_gain);
            }
        }
        self.mixer.finish(out);
        // What the loudspeaker will play is the echo canceller's far-end reference.
        if let Some(p) = self.capture.as_mut() {
            p.far_end_frame(out);
        }
        self.forget_drained();
    }

    /// Produces one interleaved stereo 20 ms frame (left, right, …), ticking every receiver exactly
    /// once like [`Engine::mix`] (call one of the two per frame, not both). In a 3D channel (the
    /// relay's [`ServerMessage::ChannelSpatial`] or [`Engine::set_channel_attenuation`]) a sender
    /// whose datagrams carry a position is placed by its distance model and ILD/ITD relative to
    /// the [listener pose](Engine::set_listener); whispers, senders without a position and every
    /// voice of a 2D channel are centred.
    pub fn mix_stereo(&mut self, now: Time, out: &mut [i16; STEREO_FRAME_SAMPLES]) {
        self.stereo.clear();
        self.tick_remotes(now);
        let att = self.spatial_attenuation();
        for r in self.remotes.values_mut() {
            if !r.speaking {
                // The next spurt starts where the sender then is, without a glide.
                r.voice.reset();
                continue;
            }
            if self.deafened || r.muted {
                continue;
            }
            match (att, r.position, r.whisper) {
                (Some(a), Some(p), false) => {
                    let ears = EarParams::for_source(&self.listener, p, &a, r.volume);
                    self.stereo.add_spatial(&mut r.voice, &r.frame, ears);
                }
                _ => self.stereo.add_centered(&r.frame, r.volume),
            }
        }
        self.stereo.finish(out);
        // The echo canceller's far-end reference is what the loudspeakers play, down-mixed.
        if let Some(p) = self.capture.as_mut() {
            let mut mono = [0i16; FRAME_SAMPLES];
            for (m, lr) in mono.iter_mut().zip(out.chunks_exact(2)) {
                *m = ((i32::from(lr[0]) + i32::from(lr[1])) / 2) as i16;
            }
            p.far_end_frame(&mono);
        }
        self.forget_drained();
    }

    fn tick_remotes(&mut self, now: Time) {
        for (session, r) in self.remotes.iter_mut() {
            let (source, _) = r.receiver.tick(now, &mut r.frame);
            let speaking = source != FrameSource::Silence;
            if speaking != r.speaking {
                r.speaking = speaking;
                self.events.push_back(Event::Speaking {
                    session: *session,
                    speaking,
                    whisper: r.whisper,
                });
            }
        }
    }

    fn forget_drained(&mut self) {
        self.remotes.retain(|session, r| {
            let gone = r.left && r.receiver.is_drained();
            if gone && r.speaking {
                self.events.push_back(Event::Speaking {
                    session: *session,
                    speaking: false,
                    whisper: false,
                });
            }
            !gone
        });
    }

    /// Periodic work: UDP registration retries, pings, receiver reports, forgetting idle senders.
    pub fn handle_timeout(&mut self, now: Time) {
        if self.state != ConnectionState::Connected {
            return;
        }
        self.e2ee.handle_timeout(now);
        if self.whisper_named.is_some() && self.next_list_request.is_none_or(|t| now >= t) {
            // The user may be in a channel we have no presence events for: ask again (we are
            // connected, so this is `request_channel_list` without its check).
            self.control_out.push_back(ClientMessage::ListChannels);
            self.next_list_request = Some(now + std::time::Duration::from_secs(1));
        }
        if let (Some(at), Some(secret)) = (self.next_register, self.secret) {
            if now >= at {
                self.register_counter += 1;
                let payload = register::sign(&secret, self.session, self.register_counter);
                let header = Header {
                    kind: DatagramKind::Register,
                    ..Header::voice(self.session, 0, 0)
                };
                self.queue_datagram(&header, &payload);
                self.monitor.probe_sent(now);
                if self.monitor.path() == Some(VoicePath::Tunnel) {
                    self.next_register = Some(now + self.cfg.path.keepalive_interval);
                } else {
                    self.next_register = Some(now + self.register_delay);
                    self.register_delay = (self.register_delay * 2).min(Duration::from_secs(2));
                }
            }
        }
        if let Some(at) = self.next_ping {
            if now >= at {
                self.control_out.push_back(ClientMessage::Ping {
                    client_time_us: now.as_micros(),
                });
                self.next_ping = Some(now + self.cfg.ping_interval);
            }
        }
        if let Some(at) = self.next_keepalive {
            if now >= at {
                let header = Header {
                    kind: DatagramKind::Ping,
                    ..Header::voice(self.session, 0, 0)
                };
                // The position rides on the keep-alive too, so the relay knows where a listener
                // who does not talk stands (proximity culling).
                let mut buf = [0u8; MAX_DATAGRAM];
                let payload = now.as_micros().to_le_bytes();
                if let Ok(n) = udp::write_positional(
                    &header,
                    self.sender.position(),
                    &payload,
                    &self.tag_key,
                    &mut buf,
                ) {
                    self.datagrams_out.push_back((buf, n));
                }
                self.monitor.probe_sent(now);
                self.next_keepalive = Some(now + self.cfg.path.keepalive_interval);
            }
        }
        if let Some(path) = self.monitor.check(now) {
            self.path_changed(now, path);
        }
        if let Some(at) = self.next_report {
            if now >= at {
                self.send_reports(now);
                self.adapt_encoder(now);
                self.next_report = Some(now + self.cfg.report_interval);
            }
        }
        let idle = self.cfg.remote_idle_timeout;
        let mut gone = Vec::new();
        self.remotes.retain(|s, r| {
            let keep = now.saturating_since(r.last_packet) < idle;
            if !keep && r.speaking {
                gone.push(*s);
            }
            keep
        });
        for session in gone {
            self.events.push_back(Event::Speaking {
                session,
                speaking: false,
                whisper: false,
            });
        }
    }

    fn send_reports(&mut self, now: Time) {
        for (session, r) in self.remotes.iter_mut() {
            if now.saturating_since(r.last_packet) > Duration::from_secs(10) {
                continue;
            }
            let s = r.receiver.stats(now);
            self.control_out.push_back(ClientMessage::ReceiverReport {
                sender: *session,
                loss_permille: (s.loss_percent_10s * 10.0).round().clamp(0.0, 1000.0) as u16,
                jitter_ms: s.jitter_ms.round().clamp(0.0, 65_535.0) as u16,
            });
        }
    }

    fn queue_datagram(&mut self, header: &Header, payload: &[u8]) {
        let mut buf = [0u8; MAX_DATAGRAM];
        if let Ok(n) = udp::write(header, payload, &self.tag_key, &mut buf) {
            self.datagrams_out.push_back((buf, n));
        }
    }

    // ----- outputs -----

    // ----- positional audio -----

    /// Sets this client's own position (carried on every voice datagram and UDP ping from now
    /// on), or stops sending one with `None`. Usually the same as the listener position.
    pub fn set_position(&mut self, position: Option<Position>) -> Result<(), SpatialError> {
        self.sender
            .set_position(position)
            .map_err(|_| SpatialError::BadPosition)
    }

    /// This client's own position, if set.
    pub fn position(&self) -> Option<Position> {
        self.sender.position()
    }

    /// Sets the listener's pose for [`Engine::mix_stereo`] (call every frame as the player moves).
    pub fn set_listener(&mut self, pose: ListenerPose) -> Result<(), SpatialError> {
        pose.validate()?;
        self.listener = pose;
        Ok(())
    }

    /// The listener's pose.
    pub fn listener(&self) -> ListenerPose {
        self.listener
    }

    /// Overrides the distance model of whatever channel this client is in (`None`: use what the
    /// relay announced; a channel the relay did not announce as 3D becomes 3D with `Some`).
    pub fn set_channel_attenuation(
        &mut self,
        attenuation: Option<Attenuation>,
    ) -> Result<(), SpatialError> {
        if let Some(a) = &attenuation {
            a.validate()?;
        }
        self.spatial_override = attenuation;
        Ok(())
    }

    /// The attenuation the renderer uses now: the app's override, else the relay's for the
    /// current channel; `None` in a 2D channel.
    pub fn spatial_attenuation(&self) -> Option<Attenuation> {
        self.spatial_override.or(self.channel_spatial)
    }

    /// The relay's 3D settings for the current channel (`None`: 2D).
    pub fn channel_spatial(&self) -> Option<Attenuation> {
        self.channel_spatial
    }

    /// Last known position of every remote sender that sent one (for a map).
    pub fn remote_positions(&self) -> Vec<(SessionToken, Position)> {
        let mut v: Vec<_> = self
            .remotes
            .iter()
            .filter_map(|(s, r)| r.position.map(|p| (*s, p)))
            .collect();
        v.sort_by_key(|(s, _)| *s);
        v
    }

    /// The next message to write on TCP. Poll until `None`.
    #[must_use]
    pub fn poll_control(&mut self) -> Option<ClientMessage> {
        self.control_out
            .pop_front()
            .or_else(|| self.e2ee.poll_control())
    }

    /// Copies the next datagram to send into `out` and returns its length. Poll until `None`.
    ///
    /// Pass a buffer of [`MAX_DATAGRAM`] bytes: no datagram is longer. A datagram that does not
    /// fit a smaller `out` is dropped (with a warning) rather than left at the head of the queue,
    /// where it would hold back every datagram behind it.
    #[must_use]
    pub fn poll_datagram(&mut self, out: &mut [u8]) -> Option<usize> {
        loop {
            let (buf, n) = self.datagrams_out.pop_front()?;
            if out.len() >= n {
                out[..n].copy_from_slice(&buf[..n]);
                return Some(n);
            }
            log::warn!(
                "poll_datagram: a {n}-byte datagram does not fit the {}-byte buffer; dropped",
                out.len()
            );
        }
    }

    /// The next event for the application. Poll until `None`.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Engine::handle_timeout`] next has work (besides the 20 ms media ticks).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        if self.state != ConnectionState::Connected {
            return None;
        }
        // Compared as plain microseconds (`u64::MAX`: no deadline). Taking the minimum of the
        // `Option<Time>`s themselves let the optimiser compare the unused payload of a `None`
        // before its tag, which valgrind reports as a jump on uninitialised memory (it happened
        // in one CI run in several).
        let us = |t: Option<Time>| match t {
            Some(t) => t.as_micros(),
            None => u64::MAX,
        };
        let next = [
            us(self.next_register),
            us(self.next_ping),
            us(self.next_keepalive),
            us(self.monitor.deadline()),
            us(self.next_report),
            us(self.e2ee.poll_timeout()),
            // A whisper by name waits: ask for the channel tree (at once the first time).
            us(self
                .whisper_named
                .as_ref()
                .map(|_| self.next_list_request.unwrap_or(Time::ZERO))),
        ]
        .into_iter()
        .min()
        .unwrap_or(u64::MAX);
        (next != u64::MAX).then_some(Time::from_micros(next))
    }

    // ----- commands -----

    /// Carries out `request`. A refusal (not connected, bad chat text, whispering to ourselves, …)
    /// is reported as [`Event::CommandFailed`] and returned.
    pub fn apply(&mut self, request: Request) -> Result<(), CommandError> {
        let name = request.name();
        let result = match request {
            Request::Join(ch) => {
                self.join_named = None;
                self.join_channel(ch)
            }
            Request::JoinNamed(name) => {
                self.join_named = Some(name);
                self.resolve_names();
                Ok(())
            }
            Request::WhisperNamed(name) => {
                self.whisper_named = Some(name);
                self.next_list_request = None;
                self.resolve_names();
                Ok(())
            }
            Request::Leave => self.leave_channel(),
            Request::Chat(text) => self.send_chat(&text),
            Request::Whisper(t) => {
                self.whisper_named = None;
                self.set_whisper(t)
            }
            Request::ListChannels => self.request_channel_list(),
            Request::ServerStats => self.request_server_stats(),
            Request::PushToTalk(on) => {
                self.set_push_to_talk(on);
                Ok(())
            }
            Request::Mode(m) => {
                self.set_transmit_mode(m);
                Ok(())
            }
            Request::Vad(v) => {
                self.set_vad(v);
                Ok(())
            }
            Request::Mute(m) => {
                self.set_muted(m);
                Ok(())
            }
            Request::Deafen(d) => {
                self.set_deafened(d);
                Ok(())
            }
            Request::UserVolume(s, v) => {
                self.set_user_volume(s, v);
                Ok(())
            }
            Request::UserMute(s, m) => {
                self.set_user_muted(s, m);
                Ok(())
            }
            Request::Capture(c) => {
                self.set_capture(c);
                Ok(())
            }
            Request::EchoDelay(ms) => {
                self.set_echo_delay_ms(ms);
                Ok(())
            }
            Request::Position(p) => self.set_position(p).map_err(CommandError::from),
            Request::Listener(pose) => self.set_listener(pose).map_err(CommandError::from),
            Request::ChannelAttenuation(a) => {
                self.set_channel_attenuation(a).map_err(CommandError::from)
            }
            Request::Kick { session, reason } => self.kick(session, &reason, None),
            Request::Ban {
                session,
                reason,
                duration_secs,
            } => self.kick(session, &reason, Some(duration_secs)),
        };
        if let Err(err) = &result {
            self.events.push_back(Event::CommandFailed {
                command: name,
                error: err.clone(),
            });
        }
        result
    }

    fn require_connected(&self) -> Result<(), CommandError> {
        if self.state == ConnectionState::Connected {
            Ok(())
        } else {
            Err(CommandError::NotConnected)
        }
    }

    /// Joins (or switches to) `channel`; before the connection is up, remembers it and joins it
    /// right after `Welcome` instead of the default channel.
    pub fn join_channel(&mut self, channel: ChannelId) -> Result<(), CommandError> {
        self.desired_channel = Some(channel);
        if self.state == ConnectionState::Connected {
            self.control_out
                .push_back(ClientMessage::JoinChannel { channel });
        }
        Ok(())
    }

    /// True while a join or whisper by name ([`Request::JoinNamed`], [`Request::WhisperNamed`])
    /// waits for its channel or user.
    pub fn names_pending(&self) -> bool {
        self.join_named.is_some() || self.whisper_named.is_some()
    }

    /// Carries out a join or whisper by name once the channel tree shows the channel or user.
    fn resolve_names(&mut self) {
        if let Some(name) = &self.join_named {
            if let Some(id) = self.channels.iter().find(|c| &c.name == name).map(|c| c.id) {
                if self.join_channel(id).is_ok() {
                    self.join_named = None;
                }
            }
        }
        if let Some(name) = &self.whisper_named {
            if let Some(s) = self.find_user(name) {
                if self.set_whisper(Some(s)).is_ok() {
                    self.whisper_named = None;
                    self.next_list_request = None;
                }
            }
        }
    }

    /// True once we are in the channel we asked for (or asked for none).
    pub fn settled(&self) -> bool {
        self.desired_channel.is_none_or(|d| self.channel == Some(d))
    }

    /// Leaves the current channel.
    pub fn leave_channel(&mut self) -> Result<(), CommandError> {
        self.require_connected()?;
        if self.channel.is_none() {
            return Err(CommandError::NotInChannel);
        }
        self.control_out.push_back(ClientMessage::LeaveChannel);
        Ok(())
    }

    /// Sends a chat line to the current channel.
    pub fn send_chat(&mut self, text: &str) -> Result<(), CommandError> {
        self.require_connected()?;
        if !validate_chat(text) {
            return Err(CommandError::BadChat);
        }
        if self.channel.is_none() {
            return Err(CommandError::NotInChannel);
        }
        self.control_out.push_back(ClientMessage::Chat {
            text: text.to_string(),
        });
        Ok(())
    }

    /// Asks the relay for every channel with its members (answered by [`Event::ChannelList`]).
    pub fn request_channel_list(&mut self) -> Result<(), CommandError> {
        self.require_connected()?;
        self.control_out.push_back(ClientMessage::ListChannels);
        Ok(())
    }

    /// Asks the relay to remove `session` (`ban: None`: a kick; `Some(secs)`: a ban, 0 = the
    /// relay's default length). Answered by [`Event::UserRemoved`], or `Error{Forbidden}`
    /// without the admin claim.
    pub fn kick(
        &mut self,
        session: SessionToken,
        reason: &str,
        ban: Option<u32>,
    ) -> Result<(), CommandError> {
        self.require_connected()?;
        if session.is_none() {
            return Err(CommandError::NoSession);
        }
        let reason = reason.to_string();
        self.control_out.push_back(match ban {
            None => ClientMessage::Kick { session, reason },
            Some(duration_secs) => ClientMessage::Ban {
                session,
                reason,
                duration_secs,
            },
        });
        Ok(())
    }

    /// Asks the relay for its counters (answered by [`Event::ServerStats`]).
    pub fn request_server_stats(&mut self) -> Result<(), CommandError> {
        self.require_connected()?;
        self.control_out.push_back(ClientMessage::StatsRequest);
        Ok(())
    }

    /// Sends voice only to `target` (a whisper) instead of the channel; `None` returns to the channel.
    pub fn set_whisper(&mut self, target: Option<SessionToken>) -> Result<(), CommandError> {
        if target.is_some() && target == Some(self.session) && !self.session.is_none() {
            return Err(CommandError::WhisperSelf);
        }
        self.whisper = target.filter(|t| !t.is_none());
        Ok(())
    }

    /// Push-to-talk key state.
    pub fn set_push_to_talk(&mut self, held: bool) {
        self.transmitter.set_push_to_talk(held);
    }

    /// Changes how the microphone opens.
    pub fn set_transmit_mode(&mut self, mode: TransmitMode) {
        self.transmitter.mode = mode;
    }

    /// Voice-activity gate settings.
    pub fn set_vad(&mut self, vad: VadConfig) {
        self.transmitter.vad = vad;
    }

    /// Switches capture processing stages (a new processor when they change; the echo canceller
    /// then adapts again).
    pub fn set_capture(&mut self, cfg: CaptureConfig) {
        if cfg == self.cfg.capture {
            return;
        }
        self.cfg.capture = cfg;
        self.restart_capture();
    }

    /// Starts capture processing afresh with the same stages (after a device change: a new
    /// microphone or speaker is a new echo path, noise floor and level).
    pub fn restart_capture(&mut self) {
        let cfg = self.cfg.capture;
        self.capture = cfg.any().then(|| Box::new(CaptureProcessor::new(cfg)));
    }

    /// The capture processing stages in use.
    pub fn capture_config(&self) -> CaptureConfig {
        self.cfg.capture
    }

    /// Updates the echo path delay hint (device output + input latency and buffering, ms).
    pub fn set_echo_delay_ms(&mut self, ms: u32) {
        self.cfg.capture.echo_delay_ms = ms;
        if let Some(p) = self.capture.as_mut() {
            p.set_echo_delay_ms(ms);
        }
    }

    /// What capture processing measured on the last frame (`None` when it is off).
    pub fn capture_stats(&self) -> Option<CaptureStats> {
        self.capture.as_ref().map(|p| p.stats())
    }

    /// Mutes or unmutes our microphone (the channel sees it: [`Event::UserState`]).
    pub fn set_muted(&mut self, muted: bool) {
        self.transmitter.set_muted(muted);
        self.announce_voice_state(VoiceState {
            muted,
            ..self.voice_state
        });
    }

    /// Deafens (silences all output) or undeafens (the channel sees it).
    pub fn set_deafened(&mut self, deafened: bool) {
        self.deafened = deafened;
        self.announce_voice_state(VoiceState {
            deafened,
            ..self.voice_state
        });
    }

    /// Tells the relay our mute / deafen when it changed (on connecting, `Welcome` sends it
    /// when it is not the default).
    fn announce_voice_state(&mut self, state: VoiceState) {
        if state == self.voice_state {
            return;
        }
        self.voice_state = state;
        if self.state == ConnectionState::Connected {
            self.control_out
                .push_back(ClientMessage::SetVoiceState { state });
        }
    }

    /// Sets one user's gain (0.0–4.0, 1.0 = unchanged); remembered across reconnects, by the
    /// user's stable id once it is known (so it follows the user when a restarted relay
    /// renumbers sessions).
    pub fn set_user_volume(&mut self, session: SessionToken, volume: f32) {
        let v = if volume.is_finite() {
            volume.clamp(0.0, 4.0)
        } else {
            1.0
        };
        self.update_pref(session, |p| p.0 = v);
    }

    /// Mutes or unmutes one user locally; remembered across reconnects, by user id as
    /// [`Engine::set_user_volume`].
    pub fn set_user_muted(&mut self, session: SessionToken, muted: bool) {
        self.update_pref(session, |p| p.1 = muted);
    }

    /// Changes one user's (gain, mute): for the token, for the user's id once known, and on
    /// the stream being mixed.
    fn update_pref(&mut self, session: SessionToken, change: impl FnOnce(&mut (f32, bool))) {
        let pref = self.prefs.entry(session).or_insert((1.0, false));
        change(pref);
        let pref = *pref;
        if let Some(id) = self.user_ids.get(&session) {
            self.prefs_by_user.insert(id.clone(), pref);
        }
        if let Some(r) = self.remotes.get_mut(&session) {
            (r.volume, r.muted) = pref;
        }
    }

    // ----- queries -----

    /// Connection state.
    pub fn state(&self) -> ConnectionState {
        self.state
    }

    /// Our session token ([`SessionToken::NONE`] when not connected).
    pub fn session(&self) -> SessionToken {
        self.session
    }

    /// Our current channel.
    pub fn channel(&self) -> Option<ChannelId> {
        self.channel
    }

    /// Members of our channel (session → name).
    pub fn members(&self) -> &BTreeMap<SessionToken, String> {
        &self.members
    }

    /// Channels as last reported by the relay: the last channel list (`Welcome`, `ChannelList`,
    /// `ChannelMembers`) with the presence news of our own channel since (`Joined`,
    /// `UserJoined`, `UserLeft`, `UserState`).
    pub fn channels(&self) -> &[ChannelInfo] {
        &self.channels
    }

    /// The stable user id of `session`, once a channel list or presence message showed it.
    pub fn user_id(&self, session: SessionToken) -> Option<&str> {
        self.user_ids.get(&session).map(String::as_str)
    }

    /// Our own mute / deafen as the relay shows it.
    pub fn voice_state(&self) -> VoiceState {
        self.voice_state
    }

    /// The session of the first user called `name` that we know of.
    pub fn find_user(&self, name: &str) -> Option<SessionToken> {
        let mut found: Vec<SessionToken> = self
            .names
            .iter()
            .filter(|(s, n)| n.as_str() == name && **s != self.session)
            .map(|(s, _)| *s)
            .collect();
        found.sort();
        found.first().copied()
    }

    /// The current whisper target.
    pub fn whisper(&self) -> Option<SessionToken> {
        self.whisper
    }

    /// Whether UDP is bound.
    pub fn udp_ready(&self) -> bool {
        self.udp_ready
    }

    /// The way voice travels now: `None` until UDP is acknowledged or the tunnel is chosen.
    pub fn voice_path(&self) -> Option<VoicePath> {
        if self.state == ConnectionState::Connected {
            self.monitor.path()
        } else {
            None
        }
    }

    /// A snapshot of everything measurable.
    pub fn stats(&mut self, now: Time) -> EngineStats {
        let mut remotes: Vec<RemoteStats> = self
            .remotes
            .iter_mut()
            .map(|(s, r)| RemoteStats {
                session: *s,
                name: self.names.get(s).cloned().unwrap_or_default(),
                speaking: r.speaking,
                volume: r.volume,
                muted: r.muted,
                stream: r.receiver.stats(now),
                encrypted: r.encrypted,
            })
            .collect();
        remotes.sort_by_key(|r| r.session);
        EngineStats {
            state: self.state,
            session: self.session,
            channel: self.channel,
            udp_ready: self.udp_ready,
            path: self.voice_path(),
            status: match self.voice_path() {
                Some(path) => ConnectionStatus::Connected { path },
                None => ConnectionStatus::Connecting {
                    attempt: 0,
                    last_error: None,
                },
            },
            tunnel_tx_packets: self.tunnel_tx,
            tunnel_rx_packets: self.tunnel_rx,
            rtt_ms: self.rtt.map(|d| d.as_secs_f64() * 1000.0),
            udp_rtt_ms: self.udp_rtt.map(|d| d.as_secs_f64() * 1000.0),
            transmitting: self.was_transmitting,
            muted: self.transmitter.muted(),
            deafened: self.deafened,
            whisper: self.whisper,
            input_level_dbfs: self.transmitter.input_level_dbfs(),
            tx_packets: self.tx_packets,
            tx_bytes: self.tx_bytes,
            rx_packets: self.rx_packets,
            rx_malformed: self.rx_malformed,
            rx_dropped: self.rx_dropped,
            encoder_loss_hint: self.sender.encoder_mut().config().packet_loss_percent,
            remotes,
            spatial: self.spatial_attenuation().map(|a| SpatialView {
                range: a.max_distance,
                me: self.sender.position(),
                listener_position: self.listener.position,
                listener_forward: self.listener.forward,
                others: self.remote_positions(),
            }),
            e2ee: self.e2ee.stats(self.members.keys()),
            playback_pacing: None,
            capture: self.capture_stats(),
        }
    }

    /// The end-to-end state (mode, keys, counters).
    pub fn e2ee(&self) -> &crate::e2ee::E2eeSession {
        &self.e2ee
    }

    /// The safety number of `session` (ours for our own session) in identity-keys mode.
    pub fn safety_number(&self, session: SessionToken) -> Option<String> {
        self.e2ee.safety_number(session)
    }
}
