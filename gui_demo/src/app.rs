//! The application: screens, the once-per-frame pump from the engine, keys, and persistence.
//!
//! [`GuiApp::show`] is the whole frame and is what both eframe ([`eframe::App::ui`]) and the
//! egui_kittest tests call. Each frame it
//! 1. drains the backend's event and statistics channels into [`SessionState`] and [`History`]
//!    (never blocking: the backend's helper threads did the waiting);
//! 2. asks for the channel list every [`LIST_REFRESH_S`] (presence events only cover our own
//!    channel) and right after a join;
//! 3. handles keys: F3 toggles the diagnostics overlay, the push-to-talk and whisper keys are
//!    sampled (ignored while a text field has focus, so typing a "v" in chat does not talk);
//! 4. draws the screen (see [`crate::ui`]).
//!
//! How to reach an engine is injected as a [`Connector`], so tests run the real UI on a
//! [`crate::backend::StubBackend`].

use std::net::SocketAddr;
use std::sync::mpsc;

use egui::{Key, Modifiers};
use voice_client::{ChannelId, SessionToken, VadConfig};

use crate::backend::{Backend, Request};
use crate::history::History;
use crate::settings::{self, Settings};
use crate::state::{SessionState, Status};

/// Seconds between channel-list refreshes while connected.
pub const LIST_REFRESH_S: f64 = 2.0;

/// What the connect screen hands to a [`Connector`].
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectRequest {
    /// The relay.
    pub server: SocketAddr,
    /// Our name.
    pub name: String,
    /// The settings at the time of connecting (audio choices, mode, …).
    pub settings: Settings,
}

/// Starts an engine for a request. `Err` is shown on the connect screen.
pub type Connector =
    Box<dyn FnMut(&ConnectRequest, &egui::Context) -> Result<Box<dyn Backend>, String>>;

/// The connect screen's fields.
#[derive(Debug, Clone, Default)]
pub struct ConnectForm {
    /// Why the last attempt was refused.
    pub error: Option<String>,
}

/// One live connection and everything the main window shows about it.
pub struct Session {
    /// The engine.
    pub backend: Box<dyn Backend>,
    /// Presence, chat, notices.
    pub state: SessionState,
    /// The last minute of statistics.
    pub history: History,
    /// The chat input line.
    pub chat_input: String,
    /// Microphone muted.
    pub muted: bool,
    /// Output deafened.
    pub deafened: bool,
    /// Whisper target set from the context menu ("toggle").
    pub whisper_toggle: Option<SessionToken>,
    /// Target of the hold-to-whisper key.
    pub whisper_hold: Option<SessionToken>,
    /// The push-to-talk key or button is held.
    pub ptt_held: bool,
    /// The talk button is held (pointer).
    pub talk_button_held: bool,
    /// The whisper key is held.
    pub whisper_held: bool,
    /// Audio settings changed since connecting; a restart applies them.
    pub audio_dirty: bool,
    /// Notices the user has dismissed (count of the notice list at the time).
    pub notices_seen: usize,
    last_list_request: Option<f64>,
    join_after_welcome: Option<ChannelId>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session over a freshly started backend.
    pub fn new(backend: Box<dyn Backend>) -> Self {
        Session {
            backend,
            state: SessionState::default(),
            history: History::default(),
            chat_input: String::new(),
            muted: false,
            deafened: false,
            whisper_toggle: None,
            whisper_hold: None,
            ptt_held: false,
            talk_button_held: false,
            whisper_held: false,
            audio_dirty: false,
            notices_seen: 0,
            last_list_request: None,
            join_after_welcome: None,
        }
    }

    /// Sends a command to the engine.
    pub fn send(&mut self, c: Request) {
        self.backend.send(c);
    }

    /// Drains what the engine reported since the last frame. `t` is app time in seconds.
    pub fn pump(&mut self, t: f64) {
        let now_ms = unix_ms();
        for ev in self.backend.drain_events() {
            let welcomed = matches!(ev, voice_client::Event::Connected { .. });
            self.state.apply_event(ev, now_ms);
            if welcomed {
                if let Some(ch) = self.join_after_welcome.take() {
                    self.send(Request::Join(ch));
                }
            }
        }
        for s in self.backend.drain_stats() {
            self.history.record(t, s);
        }
        self.history.prune(t);
        let due = self
            .last_list_request
            .is_none_or(|last| t - last >= LIST_REFRESH_S);
        let connected = matches!(self.state.status, Status::Connected { .. });
        if connected && (due || self.state.want_channel_list) {
            self.state.want_channel_list = false;
            self.last_list_request = Some(t);
            self.send(Request::ListChannels);
        }
    }

    /// Whisper target now: the held key's target wins over the toggled one.
    pub fn whisper_target(&self) -> Option<SessionToken> {
        if self.whisper_held {
            self.whisper_hold.or(self.whisper_toggle)
        } else {
            self.whisper_toggle
        }
    }

    /// Toggles whispering to `who` (from the context menu).
    pub fn toggle_whisper(&mut self, who: SessionToken) {
        self.whisper_toggle = if self.whisper_toggle == Some(who) {
            None
        } else {
            Some(who)
        };
        let t = self.whisper_target();
        self.send(Request::Whisper(t));
    }

    /// Samples the talk and whisper keys (ignored while typing).
    fn keys(&mut self, ctx: &egui::Context, settings: &Settings) {
        let typing = ctx.egui_wants_keyboard_input();
        let (ptt_key, whisper_key) = (settings.ptt(), settings.whisper());
        let (ptt_down, whisper_down) =
            ctx.input(|i| (i.key_down(ptt_key), i.key_down(whisper_key)));
        let ptt = (!typing && ptt_down) || self.talk_button_held;
        let whisper = !typing && whisper_down && self.whisper_hold.is_some();
        if whisper != self.whisper_held {
            self.whisper_held = whisper;
            let t = self.whisper_target();
            self.send(Request::Whisper(t));
        }
        let transmit = ptt || whisper;
        if transmit != self.ptt_held {
            self.ptt_held = transmit;
            self.send(Request::PushToTalk(transmit));
        }
    }
}

/// Which screen is up.
pub enum Screen {
    /// Server and name form.
    Connect(ConnectForm),
    /// Connected (or reconnecting).
    Main(Box<Session>),
}

/// The demo application.
pub struct GuiApp {
    /// Remembered settings.
    pub settings: Settings,
    /// The current screen.
    pub screen: Screen,
    /// Capture and playback device names, once enumerated.
    pub devices: Option<(Vec<String>, Vec<String>)>,
    device_scan: Option<mpsc::Receiver<(Vec<String>, Vec<String>)>>,
    connector: Connector,
    join_on_connect: Option<ChannelId>,
}

impl GuiApp {
    /// An app on the connect screen.
    pub fn new(settings: Settings, connector: Connector) -> Self {
        GuiApp {
            settings,
            screen: Screen::Connect(ConnectForm::default()),
            devices: None,
            device_scan: None,
            connector,
            join_on_connect: None,
        }
    }

    /// Lists audio devices on a background thread (cpal enumeration can take a while).
    pub fn scan_devices(&mut self) {
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("gui-devices".into())
            .spawn(move || {
                let _ = tx.send(voice_client::audio::device_names());
            });
        match spawned {
            Ok(_) => self.device_scan = Some(rx),
            Err(e) => log::warn!("device scan thread: {e}"),
        }
    }

    /// Joins this channel once welcomed (the `--channel` flag).
    pub fn join_on_connect(&mut self, channel: Option<ChannelId>) {
        self.join_on_connect = channel;
    }

    /// The live session, if connected.
    pub fn session(&self) -> Option<&Session> {
        match &self.screen {
            Screen::Main(s) => Some(s),
            Screen::Connect(_) => None,
        }
    }

    /// The live session, mutably.
    pub fn session_mut(&mut self) -> Option<&mut Session> {
        match &mut self.screen {
            Screen::Main(s) => Some(s),
            Screen::Connect(_) => None,
        }
    }

    /// The connect form's error, if on the connect screen.
    pub fn connect_error(&self) -> Option<&str> {
        match &self.screen {
            Screen::Connect(f) => f.error.as_deref(),
            Screen::Main(_) => None,
        }
    }

    /// Validates the form and starts an engine. On failure stays on (or returns to) the connect
    /// screen with the reason.
    pub fn connect(&mut self, ctx: &egui::Context) {
        let result = settings::validate(&self.settings.server, &self.settings.name)
            .map_err(|e| e.to_string())
            .and_then(|(server, name)| {
                self.settings.name.clone_from(&name);
                let req = ConnectRequest {
                    server,
                    name,
                    settings: self.settings.clone(),
                };
                (self.connector)(&req, ctx)
            });
        match result {
            Ok(backend) => {
                let mut s = Session::new(backend);
                s.join_after_welcome = self.join_on_connect;
                s.send(Request::Mode(self.settings.mode.to_engine()));
                s.send(Request::Vad(VadConfig {
                    threshold_dbfs: self.settings.vad_threshold_dbfs,
                    ..VadConfig::default()
                }));
                self.screen = Screen::Main(Box::new(s));
            }
            Err(e) => {
                self.screen = Screen::Connect(ConnectForm { error: Some(e) });
            }
        }
    }

    /// Drops the engine and returns to the connect screen.
    pub fn disconnect(&mut self) {
        self.screen = Screen::Connect(ConnectForm::default());
    }

    /// One frame: pump, keys, draw.
    pub fn show(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        if let Some(rx) = &self.device_scan {
            if let Ok(list) = rx.try_recv() {
                self.devices = Some(list);
                self.device_scan = None;
            }
        }
        if ctx.input_mut(|i| i.consume_key(Modifiers::NONE, Key::F3)) {
            self.settings.overlay_open = !self.settings.overlay_open;
        }
        let t = ctx.input(|i| i.time);
        let action = match &mut self.screen {
            Screen::Connect(form) => {
                crate::ui::connect::show(ui, form, &mut self.settings, self.devices.as_ref())
            }
            Screen::Main(session) => {
                session.pump(t);
                session.keys(&ctx, &self.settings);
                crate::ui::main_window(ui, session, &mut self.settings, self.devices.as_ref())
            }
        };
        match action {
            crate::ui::Action::None => {}
            crate::ui::Action::Connect => self.connect(&ctx),
            crate::ui::Action::Disconnect => self.disconnect(),
            crate::ui::Action::Reconnect => {
                self.disconnect();
                self.connect(&ctx);
            }
        }
    }
}

impl eframe::App for GuiApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
        if self.session().is_some() {
            // The backend's threads repaint on news; this keeps the clock-driven parts (channel
            // list refresh, plot scrolling) going even if the engine is quiet.
            ui.ctx()
                .request_repaint_after(std::time::Duration::from_millis(500));
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, settings::STORAGE_KEY, &self.settings);
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        // Say goodbye to the relay before the process ends.
        if let Some(s) = self.session_mut() {
            s.backend.close(true);
        }
    }
}

/// Wall-clock time in Unix milliseconds.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
