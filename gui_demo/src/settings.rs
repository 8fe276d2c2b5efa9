//! What the demo remembers between runs (eframe persistence) and the connect form's validation.
//!
//! [`Settings`] is `serde(default)` so that a settings file written by an older or newer build
//! still loads: unknown fields are ignored, missing ones take their defaults.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use voice_client::{AudioInput, AudioOutput, TransmitMode};
use voice_core::proto::tcp::MAX_NAME_LEN;

use crate::global_keys::Binding;
use crate::state::UserPrefs;

/// The eframe storage key of [`Settings`].
pub const STORAGE_KEY: &str = "gui_demo.settings";

/// Where the microphone signal comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum InputChoice {
    /// A capture device (`None`: the system default).
    Device(Option<String>),
    /// A test tone at this frequency.
    Tone(f32),
    /// A WAV file, looped.
    Wav(PathBuf),
    /// Silence.
    Null,
}

/// Where the mix goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OutputChoice {
    /// A playback device (`None`: the system default).
    Device(Option<String>),
    /// Discard.
    Null,
}

impl InputChoice {
    /// The engine's audio input for this choice.
    pub fn to_audio(&self) -> AudioInput {
        match self {
            InputChoice::Device(d) => AudioInput::Device(d.clone()),
            InputChoice::Tone(hz) => AudioInput::Tone {
                hz: *hz,
                amplitude: 0.3,
            },
            InputChoice::Wav(path) => AudioInput::Wav {
                path: path.clone(),
                looped: true,
            },
            InputChoice::Null => AudioInput::Null,
        }
    }

    /// Short label for menus.
    pub fn label(&self) -> String {
        match self {
            InputChoice::Device(None) => "default device".into(),
            InputChoice::Device(Some(d)) => d.clone(),
            InputChoice::Tone(hz) => format!("test tone {hz} Hz"),
            InputChoice::Wav(p) => format!("file {}", p.display()),
            InputChoice::Null => "none (silence)".into(),
        }
    }
}

impl OutputChoice {
    /// The engine's audio output for this choice.
    pub fn to_audio(&self) -> AudioOutput {
        match self {
            OutputChoice::Device(d) => AudioOutput::Device(d.clone()),
            OutputChoice::Null => AudioOutput::Null,
        }
    }

    /// Short label for menus.
    pub fn label(&self) -> String {
        match self {
            OutputChoice::Device(None) => "default device".into(),
            OutputChoice::Device(Some(d)) => d.clone(),
            OutputChoice::Null => "none (discard)".into(),
        }
    }
}

/// How the microphone opens, as stored (the engine's enum is not `Deserialize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// While the push-to-talk key (or button) is held.
    PushToTalk,
    /// When the voice-activity gate opens.
    VoiceActivity,
    /// Always.
    Continuous,
}

impl Mode {
    /// The engine's transmit mode.
    pub fn to_engine(self) -> TransmitMode {
        match self {
            Mode::PushToTalk => TransmitMode::PushToTalk,
            Mode::VoiceActivity => TransmitMode::VoiceActivity,
            Mode::Continuous => TransmitMode::Continuous,
        }
    }
}

/// Everything remembered between runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Relay address as typed (`host:port`).
    pub server: String,
    /// Display name.
    pub name: String,
    /// Microphone source.
    pub input: InputChoice,
    /// Speaker sink.
    pub output: OutputChoice,
    /// Transmit mode.
    pub mode: Mode,
    /// Push-to-talk key or mouse button (a [`Binding`] name: `V`, `Mouse8`).
    pub ptt_key: String,
    /// Hold-to-whisper key or mouse button (a [`Binding`] name).
    pub whisper_key: String,
    /// The talk and whisper keys and buttons also work while another window has focus (X11,
    /// see [`crate::global_keys`]).
    pub global_keys: bool,
    /// Voice-activity threshold in dBFS.
    pub vad_threshold_dbfs: f32,
    /// Show chat of every channel, not only ours.
    pub chat_all_channels: bool,
    /// Diagnostics overlay open.
    pub overlay_open: bool,
    /// Local volume and mute per stable user id (`UserInfo::user_id`: the access token's `sub`,
    /// in open mode the name), which survives reconnects and relay restarts, unlike session
    /// tokens (handed out afresh; a restarted relay hands old ones to other people).
    pub user_prefs: BTreeMap<String, UserPrefs>,
    /// Capture processing (echo cancellation, noise suppression, gain control, speech
    /// detection); applied to a microphone, not to file or tone sources.
    pub capture: voice_core::capture::CaptureConfig,
    /// Servers connected to, the most recent first (at most [`MAX_SERVERS`]), each with the
    /// certificate fingerprint trusted on first use: later connections pin it.
    pub servers: Vec<SavedServer>,
}

/// How many servers the connect screen remembers.
pub const MAX_SERVERS: usize = 10;

/// A server connected to before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedServer {
    /// The address as typed (`host:port`).
    pub address: String,
    /// The relay certificate's fingerprint (`sha256:…`) accepted on the first connection;
    /// `None` until one was (or over plaintext).
    pub fingerprint: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            server: "127.0.0.1:7400".into(),
            name: String::new(),
            input: InputChoice::Device(None),
            output: OutputChoice::Device(None),
            mode: Mode::PushToTalk,
            ptt_key: egui::Key::V.name().into(),
            whisper_key: egui::Key::B.name().into(),
            global_keys: true,
            vad_threshold_dbfs: -45.0,
            chat_all_channels: false,
            overlay_open: false,
            user_prefs: BTreeMap::new(),
            capture: voice_core::capture::CaptureConfig::default(),
            servers: Vec::new(),
        }
    }
}

impl Settings {
    /// The push-to-talk key or button (V if the stored name is unknown).
    pub fn ptt(&self) -> Binding {
        Binding::parse(&self.ptt_key).unwrap_or(Binding::Key(egui::Key::V))
    }

    /// Puts the server field's address first in [`Settings::servers`] (keeping what was
    /// learnt about it), dropping the oldest beyond [`MAX_SERVERS`].
    pub fn remember_server(&mut self) {
        let address = self.server.trim().to_string();
        let saved = match self.servers.iter().position(|s| s.address == address) {
            Some(i) => self.servers.remove(i),
            None => SavedServer {
                address,
                fingerprint: None,
            },
        };
        self.servers.insert(0, saved);
        self.servers.truncate(MAX_SERVERS);
    }

    /// Records the fingerprint accepted on first use for `address`, unless one is saved.
    pub fn learn_fingerprint(&mut self, address: &str, fingerprint: &str) {
        let address = address.trim();
        if let Some(s) = self.servers.iter_mut().find(|s| s.address == address) {
            s.fingerprint.get_or_insert_with(|| fingerprint.to_string());
        }
    }

    /// The fingerprint saved for the server field's address.
    pub fn saved_fingerprint(&self) -> Option<&str> {
        let address = self.server.trim();
        self.servers
            .iter()
            .find(|s| s.address == address)
            .and_then(|s| s.fingerprint.as_deref())
    }

    /// Forgets the server field's address and its fingerprint (its certificate changed on
    /// purpose, or it is gone).
    pub fn forget_server(&mut self) {
        let address = self.server.trim().to_string();
        self.servers.retain(|s| s.address != address);
    }

    /// How to trust the relay's certificate: the `--fingerprint` given on the command line,
    /// else the one saved for this server, else trust on first use (then saved).
    pub fn tls_trust(
        &self,
        command_line: Option<&voice_client::Fingerprint>,
    ) -> Result<voice_client::TlsTrust, String> {
        use voice_client::TlsTrust;
        if let Some(fp) = command_line {
            return Ok(TlsTrust::Pinned(*fp));
        }
        match self.saved_fingerprint() {
            Some(saved) => saved.parse().map(TlsTrust::Pinned).map_err(|e| {
                format!(
                    "the saved certificate fingerprint of {} is unreadable ({e}): Forget the server",
                    self.server.trim()
                )
            }),
            None => Ok(TlsTrust::TrustOnFirstUse),
        }
    }

    /// The hold-to-whisper key or button (B if the stored name is unknown).
    pub fn whisper(&self) -> Binding {
        Binding::parse(&self.whisper_key).unwrap_or(Binding::Key(egui::Key::B))
    }
}

/// Why the connect form cannot be submitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// The address is not `host:port`.
    #[error("server must be HOST:PORT (e.g. 127.0.0.1:7400 or relay.example.org:7400)")]
    BadServer,
    /// The name is empty, too long, or has control characters.
    #[error("name must be 1–{MAX_NAME_LEN} bytes, not only spaces, no control characters")]
    BadName,
}

/// The server field, parsed without touching the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerField {
    /// An IP address with a port: dial it.
    Addr(SocketAddr),
    /// A host name with a port: resolve it first (off the UI thread, see [`crate::app`]).
    Host(String, u16),
}

/// Parses the server field: `IP:PORT`, `[IPv6]:PORT` or `HOST:PORT` (a DNS name made of letters,
/// digits, `-` and `.`). No lookup happens here.
pub fn parse_server(text: &str) -> Result<ServerField, FormError> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return if addr.port() == 0 {
            Err(FormError::BadServer)
        } else {
            Ok(ServerField::Addr(addr))
        };
    }
    let (host, port) = text.rsplit_once(':').ok_or(FormError::BadServer)?;
    let port = match port.parse::<u16>() {
        Ok(p) if p != 0 => p,
        _ => return Err(FormError::BadServer),
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && host.chars().any(|c| c.is_ascii_alphabetic());
    if host_ok {
        Ok(ServerField::Host(host.to_string(), port))
    } else {
        Err(FormError::BadServer)
    }
}

/// Resolves a parsed server field (blocking on DNS for host names: call it off the UI thread).
/// IPv4 answers are preferred (the relay usually listens on one family).
pub fn resolve(field: &ServerField) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    match field {
        ServerField::Addr(a) => Ok(*a),
        ServerField::Host(host, port) => {
            let addrs: Vec<SocketAddr> = (host.as_str(), *port)
                .to_socket_addrs()
                .map_err(|e| format!("cannot resolve {host}: {e}"))?
                .collect();
            addrs
                .iter()
                .find(|a| a.is_ipv4())
                .or_else(|| addrs.first())
                .copied()
                .ok_or_else(|| format!("cannot resolve {host}: no addresses"))
        }
    }
}

/// Checks the name field the way the relay will.
pub fn check_name(name: &str) -> Result<String, FormError> {
    let name = name.trim();
    if voice_core::proto::tcp::validate_name(name) {
        Ok(name.to_string())
    } else {
        Err(FormError::BadName)
    }
}

/// Validates the whole connect form: the address to dial (or resolve) and the name to send.
pub fn validate(server: &str, name: &str) -> Result<(ServerField, String), FormError> {
    Ok((parse_server(server)?, check_name(name)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_field() {
        assert!(parse_server("127.0.0.1:7400").is_ok());
        assert!(parse_server(" [::1]:7400 ").is_ok());
        assert_eq!(
            parse_server("localhost:9").unwrap(),
            ServerField::Host("localhost".into(), 9)
        );
        assert_eq!(
            parse_server("relay.example.org:7400").unwrap(),
            ServerField::Host("relay.example.org".into(), 7400)
        );
        for bad in [
            "",
            "127.0.0.1",
            "127.0.0.1:0",
            "host name:7400",
            "1.2.3.4:99999",
            "localhost:",
            ":7400",
            "a/b:7400",
        ] {
            assert_eq!(parse_server(bad), Err(FormError::BadServer), "{bad:?}");
        }
    }

    #[test]
    fn localhost_resolves_without_the_network() {
        let a = resolve(&ServerField::Host("localhost".into(), 9)).expect("resolves");
        assert!(a.ip().is_loopback() && a.port() == 9);
    }

    #[test]
    fn name_field() {
        assert_eq!(check_name(" alice ").unwrap(), "alice");
        assert!(check_name("   ").is_err());
        assert!(check_name("a\u{7}b").is_err());
        assert!(check_name(&"x".repeat(MAX_NAME_LEN + 1)).is_err());
    }

    #[test]
    fn settings_load_with_missing_fields() {
        let s: Settings = serde_json_like();
        assert_eq!(s.server, "10.0.0.1:1");
        assert_eq!(s.ptt(), Binding::Key(egui::Key::V));
    }

    #[test]
    fn user_prefs_are_remembered() {
        let mut s = Settings::default();
        s.user_prefs.insert(
            "bob".into(),
            UserPrefs {
                volume: 1.5,
                muted: true,
            },
        );
        let text = serde_json::to_string(&s).expect("saves");
        let back: Settings = serde_json::from_str(&text).expect("loads");
        assert_eq!(back.user_prefs["bob"], s.user_prefs["bob"]);
    }

    #[test]
    fn a_mouse_button_binding_is_remembered() {
        let s = Settings {
            ptt_key: Binding::Mouse(crate::global_keys::MOUSE_BACK).name(),
            whisper_key: Binding::Mouse(crate::global_keys::MOUSE_FORWARD).name(),
            ..Settings::default()
        };
        let text = serde_json::to_string(&s).expect("saves");
        assert!(text.contains(r#""ptt_key":"Mouse8""#), "{text}");
        let back: Settings = serde_json::from_str(&text).expect("loads");
        assert_eq!(back.ptt(), Binding::Mouse(8));
        assert_eq!(back.whisper(), Binding::Mouse(9));
        // A button that cannot be bound (edited by hand) falls back to the default key.
        let odd: Settings = serde_json::from_str(r#"{"ptt_key":"Mouse1"}"#).expect("loads");
        assert_eq!(odd.ptt(), Binding::Key(egui::Key::V));
    }

    #[test]
    fn servers_are_remembered_most_recent_first_with_their_fingerprint() {
        let mut s = Settings::default();
        for a in ["a:1", "b:2", " a:1 "] {
            s.server = a.into();
            s.remember_server();
        }
        let order: Vec<&str> = s.servers.iter().map(|x| x.address.as_str()).collect();
        assert_eq!(order, ["a:1", "b:2"]);
        s.learn_fingerprint("b:2", "sha256:11");
        s.learn_fingerprint("b:2", "sha256:22");
        s.learn_fingerprint("c:3", "sha256:33");
        assert_eq!(
            s.servers[1].fingerprint.as_deref(),
            Some("sha256:11"),
            "first one kept"
        );
        assert_eq!(s.servers.len(), 2, "unknown servers are not added");
        s.server = "b:2".into();
        assert_eq!(s.saved_fingerprint(), Some("sha256:11"));
        s.remember_server();
        assert_eq!(s.servers[0].fingerprint.as_deref(), Some("sha256:11"));
        for i in 0..20 {
            s.server = format!("h{i}:1");
            s.remember_server();
        }
        assert_eq!(s.servers.len(), MAX_SERVERS);
        assert_eq!(s.servers[0].address, "h19:1");
        s.forget_server();
        assert_eq!(s.servers[0].address, "h18:1");
        let text = serde_json::to_string(&s).expect("saves");
        let back: Settings = serde_json::from_str(&text).expect("loads");
        assert_eq!(back.servers, s.servers);
    }

    #[test]
    fn the_saved_fingerprint_is_pinned_unless_the_command_line_pins_one() {
        use voice_client::TlsTrust;
        let fp = |b: u8| format!("sha256:{}", format!("{b:02x}").repeat(32));
        let mut s = Settings {
            server: "relay:7400".into(),
            ..Settings::default()
        };
        assert!(matches!(s.tls_trust(None), Ok(TlsTrust::TrustOnFirstUse)));
        s.remember_server();
        s.learn_fingerprint("relay:7400", &fp(0xab));
        let saved: voice_client::Fingerprint = fp(0xab).parse().expect("fingerprint");
        assert!(matches!(s.tls_trust(None), Ok(TlsTrust::Pinned(p)) if p == saved));
        let given: voice_client::Fingerprint = fp(0xcd).parse().expect("fingerprint");
        assert!(matches!(s.tls_trust(Some(&given)), Ok(TlsTrust::Pinned(p)) if p == given));
        s.servers[0].fingerprint = Some("sha256:zz".into());
        let e = s.tls_trust(None).expect_err("unreadable");
        assert!(e.contains("relay:7400") && e.contains("Forget"), "{e}");
    }

    fn serde_json_like() -> Settings {
        // eframe stores RON; JSON exercises the same `serde(default)` path.
        serde_json::from_str(r#"{"server":"10.0.0.1:1","unknown":3}"#).expect("loads")
    }
}
