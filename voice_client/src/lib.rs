//! `voice_client`: the voice engine with its I/O, ready to embed.
//!
//! [`Client::start`] spawns one engine thread that connects to a relay (TLS 1.3 over TCP for
//! control, trusted as [`ClientConfig::tls`] says; UDP for voice),
//! keeps the connection alive (ping, reconnect with backoff, rejoin), captures audio from a device or
//! a file, encodes, sends, receives, runs one jitter buffer and decoder per remote sender, mixes and
//! plays or records the result. The application talks to it through [`Client`] methods (commands
//! over a channel, never blocking on the network) and reads [`Event`]s from [`Client::events`].
//! The protocol logic itself is the sans-IO [`voice_core::engine::Engine`]; this crate only moves
//! bytes and samples. See [`driver`] for the threading model.
//!
//! ```no_run
//! use voice_client::{AudioInput, AudioOutput, Client, ClientConfig, Event};
//!
//! let mut cfg = ClientConfig::new("127.0.0.1:7400".parse().unwrap(), "alice");
//! // The fingerprint the relay printed at start (`fingerprint sha256:…`).
//! let fp = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
//! cfg.tls = voice_client::TlsTrust::Pinned(fp.parse().unwrap());
//! // The access token the game's backend minted (development: `relay token --name alice`).
//! cfg.token = Some(voice_client::AccessToken(std::env::var("VOICE_TOKEN").unwrap_or_default()));
//! cfg.input = AudioInput::Wav { path: "hello.wav".into(), looped: false };
//! cfg.output = AudioOutput::Null;
//! let client = Client::start(cfg).expect("engine thread");
//! client.set_transmit_mode(voice_client::TransmitMode::Continuous);
//! client.send_chat("hi all");
//! while let Ok(event) = client.events().recv_timeout(std::time::Duration::from_secs(5)) {
//!     println!("{event:?}");
//!     if matches!(event, Event::ChannelJoined { .. }) {
//!         break;
//!     }
//! }
//! ```

pub mod audio;
pub mod driver;
pub mod pacing;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use mio::{Poll, Waker};

pub use audio::{AppCapture, AppPlayback, AudioError, AudioInput, AudioOutput};
use driver::{Command, Driver};
/// What capture processing measured ([`EngineStats::capture`]).
pub use voice_core::capture::CaptureStats;
/// End-to-end encryption: the mode in [`EngineConfig::e2ee`] and its statistics.
pub use voice_core::e2ee::group::DEFAULT_LEAD as E2EE_DEFAULT_LEAD;
pub use voice_core::e2ee::{E2eeMode, E2eeStats};
use voice_core::engine::Engine;
pub use voice_core::engine::{
    ConnectionStatus, DisconnectKind, EngineConfig, EngineStats, Event, PathConfig, RemoteStats,
    Request, VoicePath,
};
pub use voice_core::proto::tcp::{AccessToken, Removal, UserInfo, VoiceState};
pub use voice_core::proto::udp::Position;
pub use voice_core::proto::{ChannelId, SessionToken};
pub use voice_core::spatial::{Attenuation, DistanceModel, ListenerPose, SpatialError};
pub use voice_core::vad::{TransmitMode, VadConfig};
pub use voice_tls::{Fingerprint, TlsTrust};

/// Everything a client needs to start.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The relay (TCP and UDP on the same port). Ignored when [`ClientConfig::host`] is set.
    pub server: SocketAddr,
    /// The relay as `host:port` (a DNS name, `1.2.3.4:7400` or `[::1]:7400`): resolved on a
    /// helper thread before every connection round, never on the caller's thread; the addresses
    /// are tried IPv6 and IPv4 alternately (IPv6 first, as RFC 8305 orders them), the next one
    /// at once when one fails. A DNS name is also the name the relay's certificate must carry
    /// unless [`ClientConfig::tls_server_name`] says otherwise.
    pub host: Option<String>,
    /// Engine settings (name, codec, jitter buffer, transmit mode, …).
    pub engine: EngineConfig,
    /// Audio source.
    pub input: AudioInput,
    /// Audio sink.
    pub output: AudioOutput,
    /// Reconnect (with backoff) after a failed connect or a dropped connection, rejoining the
    /// last channel. Off: the first failure is reported as [`Event::Disconnected`] and the engine
    /// thread stops; nothing is retried.
    pub reconnect: bool,
    /// When a device cannot be opened, fall back to null audio (with an [`Event::AudioNotice`])
    /// instead of failing.
    pub audio_fallback: bool,
    /// Whom to trust as the relay (TLS 1.3 on the control connection). The default,
    /// [`TlsTrust::System`], accepts only a certificate from a public CA: a relay with a
    /// self-signed certificate is refused with an [`Event::ServerFingerprint`] naming its
    /// fingerprint, which the application can pin ([`TlsTrust::Pinned`]) or accept once
    /// ([`TlsTrust::TrustOnFirstUse`]).
    pub tls: TlsTrust,
    /// The name the relay's certificate must carry for [`TlsTrust::System`] and
    /// [`TlsTrust::CaFile`] (`None`: the server's IP address). Pinned and TOFU ignore names.
    pub tls_server_name: Option<String>,
    /// Development only: no TLS (for a relay started with `--insecure-plaintext`). Names,
    /// chat and the UDP registration secret then travel in the clear.
    pub insecure_plaintext: bool,
    /// The access token presented in `Hello` (a JWT minted by the operator's or game's
    /// backend, or `relay token` for development); `None` only for a relay started with
    /// `--open`. Its `Debug` shows only its length. Overrides `engine.token` when set.
    pub token: Option<AccessToken>,
    /// Positional audio: this client's starting position, carried on its voice and pings
    /// (`None`: none until [`Client::set_position`]).
    pub position: Option<Position>,
    /// Positional audio: the listener's starting pose (default: origin, looking down −z).
    pub listener: ListenerPose,
    /// Positional audio: a distance model for whatever channel the client is in, overriding the
    /// relay's (`None`: the relay's `ChannelSpatial` decides; 2D channels stay unattenuated).
    /// The client's playback is mono: in a 3D channel each talker gets its distance gain.
    pub channel_attenuation: Option<Attenuation>,
}

impl ClientConfig {
    /// End-to-end encryption of the voice payload (sets [`EngineConfig::e2ee`]): a channel
    /// password the game manages ([`E2eeMode::Password`]) or identity keys with wrapped per-sender
    /// keys ([`E2eeMode::keys`]). Off by default.
    #[must_use]
    pub fn with_e2ee(mut self, mode: E2eeMode) -> Self {
        self.engine.e2ee = mode;
        self
    }

    /// Defaults: default devices with fallback, push-to-talk, reconnect on.
    pub fn new(server: SocketAddr, name: &str) -> Self {
        ClientConfig {
            server,
            host: None,
            engine: EngineConfig {
                name: name.to_string(),
                ..EngineConfig::default()
            },
            input: AudioInput::Device(None),
            output: AudioOutput::Device(None),
            reconnect: true,
            audio_fallback: true,
            tls: TlsTrust::System,
            tls_server_name: None,
            insecure_plaintext: false,
            token: None,
            position: None,
            listener: ListenerPose::default(),
            channel_attenuation: None,
        }
    }
}

impl ClientConfig {
    /// Defaults as [`ClientConfig::new`], for a relay given as `host:port` (resolved by the
    /// engine thread's helper, see [`ClientConfig::host`]).
    pub fn with_host(host: &str, name: &str) -> Self {
        let mut cfg = ClientConfig::new(SocketAddr::from(([0, 0, 0, 0], 0)), name);
        cfg.host = Some(host.to_string());
        cfg
    }
}

/// The DNS name in `host:port`, if it is one (not an IP literal).
fn dns_name(host: &str) -> Option<String> {
    if host.starts_with('[') {
        return None;
    }
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    if name.is_empty() || name.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    Some(name.to_string())
}

/// Why a client could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Audio could not be opened and fallback is off.
    #[error(transparent)]
    Audio(#[from] AudioError),
    /// The codec could not be created.
    #[error(transparent)]
    Codec(#[from] voice_core::codec::CodecError),
    /// Polling or thread creation failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A position, listener pose or distance model in the configuration is out of range.
    #[error(transparent)]
    Spatial(#[from] SpatialError),
}

/// How long [`Client::set_input`] and [`Client::set_output`] wait for the engine thread to hand
/// the replaced stream back (it does so within one turn of its loop, a few ms).
const SWAP_WAIT: Duration = Duration::from_secs(1);

/// A running client. Dropping it stops the engine thread and finalises any recording.
pub struct Client {
    commands: Sender<Command>,
    events: Receiver<Event>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<audio::OutputStream>>,
    app_capture: std::sync::Mutex<Option<AppCapture>>,
    app_playback: std::sync::Mutex<Option<AppPlayback>>,
    connected: Arc<AtomicBool>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    /// Opens audio, spawns the engine thread and starts connecting.
    pub fn start(cfg: ClientConfig) -> Result<Client, ClientError> {
        let mut notices = Vec::new();
        let mut app_capture = None;
        let mut app_playback = None;
        let input = match audio::InputStream::open(&cfg.input) {
            Ok(i) => i,
            Err(_) if cfg.input == AudioInput::App => {
                let (stream, app) = audio::app_capture_ring();
                app_capture = Some(app);
                stream
            }
            Err(e) if cfg.audio_fallback && matches!(cfg.input, AudioInput::Device(_)) => {
                let msg = format!("no capture device ({e}); sending silence");
                log::warn!("{msg}");
                notices.push(msg);
                audio::InputStream::null()
            }
            Err(e) => return Err(e.into()),
        };
        let output = match audio::OutputStream::open(&cfg.output) {
            Ok(o) => o,
            Err(_) if cfg.output == AudioOutput::App => {
                let (stream, app) = audio::app_playback_ring();
                app_playback = Some(app);
                stream
            }
            Err(e) if cfg.audio_fallback && matches!(cfg.output, AudioOutput::Device(_)) => {
                let msg = format!("no playback device ({e}); output discarded");
                log::warn!("{msg}");
                notices.push(msg);
                audio::OutputStream::Null
            }
            Err(e) => return Err(e.into()),
        };
        let mut engine_cfg = cfg.engine.clone();
        if cfg.token.is_some() {
            engine_cfg.token = cfg.token.clone();
        }
        let mut engine = Engine::new(engine_cfg)?;
        engine.set_position(cfg.position)?;
        engine.set_listener(cfg.listener)?;
        engine.set_channel_attenuation(cfg.channel_attenuation)?;
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), driver::WAKER)?);
        let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
        let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
        for message in notices {
            let _ = ev_tx.send(Event::AudioNotice { message });
        }
        let connected = Arc::new(AtomicBool::new(false));
        let driver = Driver {
            connected: connected.clone(),
            server: cfg.server,
            entry: None,
            engine,
            input,
            output,
            commands: cmd_rx,
            events: ev_tx,
            reconnect: cfg.reconnect,
            tls: if cfg.insecure_plaintext {
                None
            } else {
                Some(driver::TlsSetup::new(
                    cfg.tls.clone(),
                    cfg.tls_server_name
                        .clone()
                        .or_else(|| cfg.host.as_deref().and_then(dns_name)),
                ))
            },
            refused: false,
            poll,
            status: None,
            attempt: 0,
            last_error: None,
            host: cfg.host.clone(),
            addrs: Default::default(),
            resolving: None,
            waker: waker.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("voice-engine-{}", cfg.engine.name))
            .spawn(move || driver.run())?;
        Ok(Client {
            commands: cmd_tx,
            events: ev_rx,
            waker,
            thread: Some(thread),
            app_capture: std::sync::Mutex::new(app_capture),
            app_playback: std::sync::Mutex::new(app_playback),
            connected,
        })
    }

    fn send(&self, cmd: Command) {
        if self.commands.send(cmd).is_ok() {
            let _ = self.waker.wake();
        }
    }

    /// Takes the application's end of the capture ring (once; only with [`AudioInput::App`]).
    pub fn take_app_capture(&self) -> Option<AppCapture> {
        self.app_capture
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Takes the application's end of the playback ring (once; only with [`AudioOutput::App`]).
    pub fn take_app_playback(&self) -> Option<AppPlayback> {
        self.app_playback
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Whether the relay has welcomed us and the connection is up (updated by the engine thread).
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Events from the engine (presence, chat, speaking, errors, connection state).
    pub fn events(&self) -> &Receiver<Event> {
        &self.events
    }

    /// Hands one [`Request`] to the engine thread (never blocks). Refusals come back as
    /// [`Event::CommandFailed`]. The methods below are shorthands for the common ones.
    pub fn request(&self, request: Request) {
        self.send(Command::Request(request));
    }

    /// Joins (or switches to) a channel.
    pub fn join_channel(&self, channel: ChannelId) {
        self.request(Request::Join(channel));
    }

    /// Joins the channel with this name once the relay's channel list is known.
    pub fn join_channel_named(&self, name: &str) {
        self.request(Request::JoinNamed(name.to_string()));
    }

    /// Leaves the channel.
    pub fn leave_channel(&self) {
        self.request(Request::Leave);
    }

    /// Sends a chat line to the channel.
    pub fn send_chat(&self, text: &str) {
        self.request(Request::Chat(text.to_string()));
    }

    /// Whispers to one session (`None`: talk to the channel again).
    pub fn set_whisper(&self, target: Option<SessionToken>) {
        self.request(Request::Whisper(target));
    }

    /// Whispers to the user with this name, as soon as the name is known.
    pub fn whisper_to_named(&self, name: &str) {
        self.request(Request::WhisperNamed(name.to_string()));
    }

    /// Push-to-talk key state.
    pub fn set_push_to_talk(&self, held: bool) {
        self.request(Request::PushToTalk(held));
    }

    /// How the microphone opens.
    pub fn set_transmit_mode(&self, mode: TransmitMode) {
        self.request(Request::Mode(mode));
    }

    /// Voice-activity gate settings.
    pub fn set_vad(&self, vad: VadConfig) {
        self.request(Request::Vad(vad));
    }

    /// Mutes the microphone.
    pub fn set_muted(&self, muted: bool) {
        self.request(Request::Mute(muted));
    }

    /// Deafens the output.
    pub fn set_deafened(&self, deafened: bool) {
        self.request(Request::Deafen(deafened));
    }

    /// One user's volume (1.0 = unchanged, up to 4.0).
    pub fn set_user_volume(&self, session: SessionToken, volume: f32) {
        self.request(Request::UserVolume(session, volume));
    }

    /// Mutes one user locally.
    pub fn set_user_muted(&self, session: SessionToken, muted: bool) {
        self.request(Request::UserMute(session, muted));
    }

    /// Sets this client's position (positional audio; carried on voice and pings). An invalid
    /// value is refused with [`Event::CommandFailed`].
    pub fn set_position(&self, position: Option<Position>) {
        self.request(Request::Position(position));
    }

    /// Sets the listener's pose (call as the player moves or turns).
    pub fn set_listener(&self, pose: ListenerPose) {
        self.request(Request::Listener(pose));
    }

    /// Overrides the current channel's distance model (`None`: the relay's).
    pub fn set_channel_attenuation(&self, attenuation: Option<Attenuation>) {
        self.request(Request::ChannelAttenuation(attenuation));
    }

    /// Asks for every channel with its members ([`Event::ChannelList`]).
    pub fn request_channel_list(&self) {
        self.request(Request::ListChannels);
    }

    /// Permissions: asks the relay to remove `session` (needs the `admin` claim in our
    /// token). Answered by [`Event::UserRemoved`], or [`Event::Error`] with `Forbidden` (not an
    /// admin) or `NoSuchSession`. The removed client gets [`Event::Removed`].
    pub fn kick(&self, session: SessionToken, reason: &str) {
        self.request(Request::Kick {
            session,
            reason: reason.to_string(),
        });
    }

    /// Permissions: removes `session` and refuses its user for `duration_secs` (0: the relay's
    /// default; the relay caps it). As [`Client::kick`] otherwise.
    pub fn ban(&self, session: SessionToken, reason: &str, duration_secs: u32) {
        self.request(Request::Ban {
            session,
            reason: reason.to_string(),
            duration_secs,
        });
    }

    /// Asks the relay for its counters ([`Event::ServerStats`]).
    pub fn request_server_stats(&self) {
        self.request(Request::ServerStats);
    }

    /// Switches the capture source while the session goes on: the relay connection, the
    /// channel, chat, per-user settings, the encoder and every jitter buffer stay as they are;
    /// listeners hear the new source continue the same stream.
    ///
    /// The new source is opened here, on the calling thread (opening a device or reading a
    /// WAV file can take a while; the engine thread, which keeps the network and playback
    /// going meanwhile, never waits for it), then handed to the engine thread, which swaps it
    /// in between two frames and re-derives what depends on the source: capture pacing (the
    /// device's clock or the 20 ms timer), the echo delay hint and capture processing (the
    /// echo canceller starts afresh). The old stream is closed on this thread. A file or tone
    /// starts from its beginning.
    ///
    /// [`AudioInput::App`] makes a new capture ring: take its end with
    /// [`Client::take_app_capture`] (an [`AppCapture`] taken before no longer feeds the engine).
    ///
    /// If the source cannot be opened (no device of that name, an unreadable file) the old one
    /// stays in use, the error is returned and also reported as an [`Event::AudioNotice`] for
    /// applications that show events. Unlike [`Client::start`] there is no fallback to
    /// silence: the caller asked for this source. [`AudioError::EngineStopped`] once the engine
    /// thread has ended.
    pub fn set_input(&self, input: AudioInput) -> Result<(), AudioError> {
        let opened = if input == AudioInput::App {
            let (stream, app) = audio::app_capture_ring();
            Ok((stream, Some(app)))
        } else {
            audio::InputStream::open(&input).map(|s| (s, None))
        };
        let (stream, app) = match opened {
            Ok(pair) => pair,
            Err(e) => {
                let message =
                    format!("could not switch the input to {input}: {e}; keeping the current one");
                log::warn!("{message}");
                self.send(Command::AudioNotice(message));
                return Err(e);
            }
        };
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.swap(Command::SetInput {
            stream: Box::new(stream),
            old: tx,
        })?;
        if let Some(app) = app {
            *self.app_capture.lock().unwrap_or_else(|e| e.into_inner()) = Some(app);
        }
        // Dropped here: closing a device joins its callback thread.
        drop(rx.recv_timeout(SWAP_WAIT));
        Ok(())
    }

    /// Switches the playback sink while the session goes on, as [`Client::set_input`] does
    /// for capture: everything else stays, the jitter buffers and the mix go on, and the playout
    /// pacing, the echo delay hint and capture processing are derived again for the new sink.
    /// A recording ([`AudioOutput::Wav`]) that is replaced is finalised here; a new one starts
    /// at the switch. [`AudioOutput::App`] makes a new playback ring (take its end with
    /// [`Client::take_app_playback`]). On failure the old sink stays, and the error is
    /// returned and reported as an [`Event::AudioNotice`].
    pub fn set_output(&self, output: AudioOutput) -> Result<(), AudioError> {
        let opened = if output == AudioOutput::App {
            let (stream, app) = audio::app_playback_ring();
            Ok((stream, Some(app)))
        } else {
            audio::OutputStream::open(&output).map(|s| (s, None))
        };
        let (stream, app) = match opened {
            Ok(pair) => pair,
            Err(e) => {
                let message = format!(
                    "could not switch the output to {output}: {e}; keeping the current one"
                );
                log::warn!("{message}");
                self.send(Command::AudioNotice(message));
                return Err(e);
            }
        };
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.swap(Command::SetOutput {
            stream: Box::new(stream),
            old: tx,
        })?;
        if let Some(app) = app {
            *self.app_playback.lock().unwrap_or_else(|e| e.into_inner()) = Some(app);
        }
        if let Ok(old) = rx.recv_timeout(SWAP_WAIT) {
            if let Err(e) = old.finish() {
                let message = format!("finishing the previous recording: {e}");
                log::warn!("{message}");
                self.send(Command::AudioNotice(message));
            }
        }
        Ok(())
    }

    /// Hands a stream swap to the engine thread; [`AudioError::EngineStopped`] when it is gone.
    fn swap(&self, cmd: Command) -> Result<(), AudioError> {
        self.commands
            .send(cmd)
            .map_err(|_| AudioError::EngineStopped)?;
        let _ = self.waker.wake();
        Ok(())
    }

    /// Moves to a new local UDP port and re-registers (after a network change).
    pub fn rebind_udp(&self) {
        self.send(Command::RebindUdp);
    }

    /// A stats snapshot (RTT, per-sender depth, loss % over 10 s, late, concealed, FEC, …).
    /// `None` if the engine thread does not answer within a second.
    pub fn stats(&self) -> Option<EngineStats> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.send(Command::Stats(tx));
        rx.recv_timeout(Duration::from_secs(1)).ok()
    }

    /// Stops the engine thread (saying goodbye to the relay) and finalises the recording.
    pub fn shutdown(mut self) -> Result<(), AudioError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), AudioError> {
        self.send(Command::Shutdown);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(output)) => output.finish(),
            _ => Ok(()),
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            log::warn!("finishing the recording: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dns_names_are_told_from_ip_literals() {
        assert_eq!(
            super::dns_name("relay.example:7400").as_deref(),
            Some("relay.example")
        );
        assert_eq!(super::dns_name("localhost:1").as_deref(), Some("localhost"));
        assert_eq!(super::dns_name("127.0.0.1:7400"), None);
        assert_eq!(super::dns_name("[::1]:7400"), None);
        assert_eq!(super::dns_name(":7400"), None);
    }
}
