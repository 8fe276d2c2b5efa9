//! The application: screens, the once-per-frame pump from the engine, keys, and persistence.
//!
//! [`GuiApp::show`] is the whole frame and is what both eframe ([`eframe::App::ui`]) and the
//! egui_kittest tests call. Each frame it
//! 1. drains the backend's event and statistics channels into [`SessionState`] and [`History`]
//!    (never blocking: the backend's helper threads did the waiting);
//! 2. asks for the channel list every [`LIST_REFRESH_S`] (presence events only cover our own
//!    channel) and right after a join;
//! 3. handles keys: F3 toggles the diagnostics overlay, the push-to-talk and whisper keys (or
//!    mouse buttons) are sampled (keys ignored while a text field has focus, so typing a "v" in
//!    chat does not talk); while another window has focus (for a mouse button, or the desktop's
//!    shortcuts portal: always), the X server's or the desktop's state from
//!    [`crate::global_keys`] counts too, and what that thread watches is updated;
//! 4. draws the screen (see [`crate::ui`]);
//! 5. asks for the next frame only when a clock-driven part needs one (retry countdown, channel
//!    list refresh): otherwise only news repaints, so an idle window costs nothing.
//!
//! How to reach an engine is injected as a [`Connector`], so tests run the real UI on a
//! [`crate::backend::StubBackend`].

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc;

use egui::{Key, Modifiers};
use voice_client::{ChannelId, Event, SessionToken, VadConfig};

use crate::backend::{Backend, Request};
use crate::global_keys::{self, Availability, Binding, GlobalKeys};
use crate::history::History;
use crate::settings::{self, InputChoice, ServerField, Settings};
use crate::state::{split_retry, ChatLine, SessionState, Status, UserPrefs};

/// Seconds between channel-list refreshes while connected.
pub const LIST_REFRESH_S: f64 = 2.0;

/// What the connect screen hands to a [`Connector`].
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectRequest {
    /// The relay (host names already resolved).
    pub server: SocketAddr,
    /// Our name.
    pub name: String,
    /// The settings at the time of connecting (audio choices, mode, …).
    pub settings: Settings,
}

/// Starts an engine for a request. `Err` is shown on the connect screen.
pub type Connector =
    Box<dyn FnMut(&ConnectRequest, &egui::Context) -> Result<Box<dyn Backend>, String>>;

/// The channel to join once welcomed (`--channel`): by id, or by name once the list is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinTarget {
    /// A channel id.
    Id(ChannelId),
    /// A channel name (compared without regard to case).
    Name(String),
}

/// The connect screen's fields.
#[derive(Debug, Default)]
pub struct ConnectForm {
    /// Why the last attempt was refused.
    pub error: Option<String>,
    /// The user has typed into the form (problems are shown only then, or after a submit).
    pub touched: bool,
    /// A host name being resolved off the UI thread: the host, and where the answer arrives.
    pub resolving: Option<(String, mpsc::Receiver<Result<SocketAddr, String>>)>,
    /// The microphone test, while it runs.
    pub mic_test: Option<crate::mic_test::MicTest>,
}

/// Which key a "press a key…" capture sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRole {
    /// The push-to-talk key.
    Talk,
    /// The hold-to-whisper key.
    Whisper,
}

/// What survives a restart of the engine (a device picked after it stopped): the chat and its unread counts, mute
/// and deafen, and the channel we were in.
#[derive(Debug, Clone, Default)]
pub struct Carry {
    chat: Vec<ChatLine>,
    unread: std::collections::BTreeMap<ChannelId, crate::state::Unread>,
    muted: bool,
    deafened: bool,
    channel: Option<ChannelId>,
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
    /// Notices the user has dismissed (count of the notice list at the time).
    pub notices_seen: usize,
    /// Failed connection attempts since the last welcome.
    pub attempts: u32,
    /// App time of the engine's next connection attempt, when it said.
    pub retry_at: Option<f64>,
    /// The channel we were last in (rejoined after a manual reconnect).
    pub last_channel: Option<ChannelId>,
    /// App time of the first frame of this session.
    pub started: Option<f64>,
    /// The key being set by pressing it, if any (the keys do not talk meanwhile).
    pub capturing: Option<KeyRole>,
    /// The key or button just set by pressing it: it does not talk until released.
    pub just_set: Option<Binding>,
    /// Whether the keys work while another window has focus (set by the app every frame).
    pub global_keys: Availability,
    /// The keys from outside the window are reported whatever has focus, also our window (the
    /// desktop's shortcuts portal, [`global_keys::Provider::Portal`]); otherwise only while
    /// another window has focus (the X server). Set by the app every frame.
    pub global_keys_everywhere: bool,
    last_list_request: Option<f64>,
    last_stats_t: f64,
    join_after_welcome: Option<JoinTarget>,
    prefs_applied: HashSet<SessionToken>,
    /// The whisper targets (toggle, hold) by name across a welcome, until found again.
    whisper_names: [Option<String>; 2],
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
            notices_seen: 0,
            attempts: 0,
            retry_at: None,
            last_channel: None,
            started: None,
            capturing: None,
            just_set: None,
            global_keys: Availability::Unavailable("not started".into()),
            global_keys_everywhere: false,
            last_list_request: None,
            last_stats_t: f64::MIN,
            join_after_welcome: None,
            prefs_applied: HashSet::new(),
            whisper_names: [None, None],
        }
    }

    /// Sends a command to the engine.
    pub fn send(&mut self, c: Request) {
        self.backend.send(c);
    }

    /// What a manual reconnect keeps.
    pub fn carry(&self) -> Carry {
        Carry {
            chat: self.state.chat.clone(),
            unread: self.state.unread.clone(),
            muted: self.muted,
            deafened: self.deafened,
            channel: self.state.my_channel.or(self.last_channel),
        }
    }

    /// Restores what [`Session::carry`] kept, on a fresh engine.
    fn restore(&mut self, carry: Carry) {
        self.state.chat = carry.chat;
        self.state.unread = carry.unread;
        self.muted = carry.muted;
        self.deafened = carry.deafened;
        if self.muted {
            self.send(Request::Mute(true));
        }
        if self.deafened {
            self.send(Request::Deafen(true));
        }
        if let Some(ch) = carry.channel {
            self.last_channel = Some(ch);
            self.join_after_welcome = Some(JoinTarget::Id(ch));
        }
    }

    /// Drains what the engine reported since the last frame. `t` is app time in seconds;
    /// `settings` supplies the remembered per-user volume and mute.
    pub fn pump(&mut self, t: f64, settings: &Settings) {
        let now_ms = unix_ms();
        self.started.get_or_insert(t);
        for ev in self.backend.drain_events() {
            match &ev {
                Event::Connected { .. } => {
                    self.attempts = 0;
                    self.retry_at = None;
                }
                Event::Disconnected { reason, .. } => {
                    self.attempts += 1;
                    self.retry_at = split_retry(reason).1.map(|ms| t + ms as f64 / 1000.0);
                }
                _ => {}
            }
            let welcomed = matches!(ev, Event::Connected { .. });
            let listed = matches!(ev, Event::ChannelList { .. });
            if welcomed {
                self.forget_token_prefs();
                self.forget_whisper_tokens();
            }
            self.state.apply_event(ev, now_ms);
            if welcomed {
                if let Some(JoinTarget::Id(ch)) = &self.join_after_welcome {
                    let ch = *ch;
                    self.join_after_welcome = None;
                    self.send(Request::Join(ch));
                }
            }
            if listed {
                self.join_by_name(now_ms);
            }
        }
        if self.state.my_channel.is_some() {
            self.last_channel = self.state.my_channel;
        }
        self.apply_saved_prefs(settings);
        self.find_whisper_targets();
        // Snapshots queue up while nothing repaints (plots hidden): they were taken one
        // `STATS_PERIOD` apart, so they are placed back in time instead of all at `t`.
        let stats = self.backend.drain_stats();
        let n = stats.len();
        let period = crate::backend::STATS_PERIOD.as_secs_f64();
        for (k, s) in stats.into_iter().enumerate() {
            let at = (t - (n - 1 - k) as f64 * period).max(self.last_stats_t);
            self.last_stats_t = at;
            self.history.record(at, s);
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

    fn join_by_name(&mut self, now_ms: u64) {
        let Some(JoinTarget::Name(want)) = &self.join_after_welcome else {
            return;
        };
        let want = want.clone();
        self.join_after_welcome = None;
        let found = self
            .state
            .channels
            .iter()
            .find(|(_, n)| n.name.eq_ignore_ascii_case(&want))
            .map(|(id, _)| *id);
        match found {
            Some(id) => self.send(Request::Join(id)),
            None => self
                .state
                .notice(format!("there is no channel named {want:?}"), now_ms),
        }
    }

    /// On a welcome: the volume and mute set per session token during the last connection are
    /// undone in the engine (which keeps them across its reconnects, by token) and forgotten
    /// here, because the tokens are handed out afresh (a restarted relay numbers them from 1,
    /// so bob's old token may now be alice's). [`Session::apply_saved_prefs`] then applies them
    /// again by user id to whoever the new channel lists show.
    fn forget_token_prefs(&mut self) {
        let old: Vec<(SessionToken, UserPrefs)> = self.state.prefs.drain().collect();
        for (who, p) in old {
            if p.muted {
                self.send(Request::UserMute(who, false));
            }
            if p.volume != 1.0 {
                self.send(Request::UserVolume(who, 1.0));
            }
        }
        self.prefs_applied.clear();
    }

    /// On a welcome: the whisper targets' tokens may name someone else now (see
    /// [`Session::forget_token_prefs`]), so whispering stops and the targets are kept by name
    /// until [`Session::find_whisper_targets`] finds them in the new channel lists.
    fn forget_whisper_tokens(&mut self) {
        let slots = [self.whisper_toggle.take(), self.whisper_hold.take()];
        for (pending, token) in self.whisper_names.iter_mut().zip(slots) {
            if let Some(name) = token.and_then(|t| self.state.user_name(t)) {
                *pending = Some(name.to_string());
            }
        }
        if slots[0].is_some() || (slots[1].is_some() && self.whisper_held) {
            self.send(Request::Whisper(None));
        }
    }

    /// Sets the whisper targets kept by name across a welcome once the channel lists show
    /// exactly one user of that name (a target set meanwhile from the menu wins).
    fn find_whisper_targets(&mut self) {
        if self.whisper_names.iter().all(Option::is_none) {
            return;
        }
        let me = self.state.me;
        let find = |name: &str| {
            let mut found = self
                .state
                .channels
                .values()
                .flat_map(|n| n.users.iter())
                .filter(|(s, m)| Some(**s) != me && !s.is_remote() && m.name == name)
                .map(|(s, _)| *s);
            let first = found.next()?;
            found.next().is_none().then_some(first)
        };
        let slots = [self.whisper_toggle, self.whisper_hold];
        let mut found = [None, None];
        for (i, pending) in self.whisper_names.iter_mut().enumerate() {
            if slots[i].is_some() {
                *pending = None;
            } else if let Some(t) = pending.as_deref().and_then(find) {
                found[i] = Some(t);
                *pending = None;
            }
        }
        if let Some(t) = found[1] {
            self.whisper_hold = Some(t);
        }
        if let Some(t) = found[0] {
            self.whisper_toggle = Some(t);
            let target = self.whisper_target();
            self.send(Request::Whisper(target));
        }
    }

    /// Sends the remembered volume and mute (kept by stable user id) of every user seen for the
    /// first time.
    fn apply_saved_prefs(&mut self, settings: &Settings) {
        if settings.user_prefs.is_empty() {
            return;
        }
        let me = self.state.me;
        let fresh: Vec<(SessionToken, String)> = self
            .state
            .channels
            .values()
            .flat_map(|n| n.users.iter())
            .filter(|(s, _)| Some(**s) != me && !self.prefs_applied.contains(*s))
            .map(|(s, m)| (*s, m.user_id.clone()))
            .collect();
        for (who, id) in fresh {
            self.prefs_applied.insert(who);
            let Some(p) = settings.user_prefs.get(&id).copied() else {
                continue;
            };
            if p.muted {
                self.send(Request::UserMute(who, true));
            }
            if p.volume != 1.0 {
                self.send(Request::UserVolume(who, p.volume));
            }
            self.state.prefs.insert(who, p);
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

    /// Samples the talk and whisper keys (or mouse buttons). In the window, egui's state counts
    /// (for a key not while a text field has focus, so typing a "v" in chat does not talk; for
    /// neither while a key is being set); outside it, the X server's or the desktop's (`global`:
    /// [`global_keys::PTT`] and [`global_keys::WHISPER`] bits, see [`crate::global_keys`]) if
    /// the setting allows it: for a key while another window has focus (from the desktop's
    /// shortcuts portal always: the desktop takes a bound key from every window, ours too), for
    /// a mouse button always (the window sees a button only while the pointer is over it).
    pub fn keys(&mut self, ctx: &egui::Context, settings: &Settings, global: u8) {
        let down = |b: Binding| {
            ctx.input(|i| match b {
                Binding::Key(k) => i.key_down(k),
                Binding::Mouse(m) => {
                    Binding::pointer_button(m).is_some_and(|p| i.pointer.button_down(p))
                }
            })
        };
        if self.just_set.is_some_and(|b| !down(b)) {
            self.just_set = None;
        }
        let setting = self.capturing.is_some() || self.just_set.is_some();
        let typing = ctx.egui_wants_keyboard_input();
        let focused = ctx.input(|i| i.focused);
        let in_window = |b: Binding| {
            let blocked = setting || (typing && matches!(b, Binding::Key(_)));
            !blocked && down(b)
        };
        let outside = |b: Binding, bit: u8| {
            let seen = match b {
                Binding::Key(_) => !focused || self.global_keys_everywhere,
                Binding::Mouse(_) => true,
            };
            settings.global_keys && !setting && seen && global & bit != 0
        };
        let (ptt_b, whisper_b) = (settings.ptt(), settings.whisper());
        let ptt = in_window(ptt_b) || self.talk_button_held || outside(ptt_b, global_keys::PTT);
        let whisper = (in_window(whisper_b) || outside(whisper_b, global_keys::WHISPER))
            && self.whisper_hold.is_some();
        if whisper != self.whisper_held {
            self.whisper_held = whisper;
            let t = self.whisper_target();
            self.send(Request::Whisper(t));
        }
        let transmit = ptt || whisper;
        if transmit != self.ptt_held {
            self.ptt_held = transmit;
            log::debug!(
                "push-to-talk {} (window focused: {focused})",
                if transmit { "on" } else { "off" },
            );
            self.send(Request::PushToTalk(transmit));
        }
    }

    /// What the background watcher needs now: the talk key or button in push-to-talk mode,
    /// the whisper one while a hold-to-whisper target is set; none while not connected or while
    /// a key is being set. A key is watched only while the window does not have focus
    /// (`focused`: the window's own keys count then, and the X server is not asked 50 times a
    /// second for nothing); a mouse button always (the window sees it only under the pointer,
    /// and following it costs nothing until it is pressed).
    pub fn watched_keys(
        &self,
        settings: &Settings,
        focused: bool,
    ) -> (Option<Binding>, Option<Binding>) {
        if !settings.global_keys || !self.state.is_live() || self.capturing.is_some() {
            return (None, None);
        }
        let needed = |b: &Binding| matches!(b, Binding::Mouse(_)) || !focused;
        let ptt = (settings.mode == crate::settings::Mode::PushToTalk)
            .then(|| settings.ptt())
            .filter(needed);
        let whisper = self.whisper_hold.map(|_| settings.whisper()).filter(needed);
        (ptt, whisper)
    }

    /// When the window must be drawn again although nothing arrives: the connecting counter and
    /// the retry countdown tick each second, the channel list is refreshed every
    /// [`LIST_REFRESH_S`]. `None`: only news
    /// (an engine event, a statistics change worth showing) repaints.
    pub fn next_repaint(&self, t: f64) -> Option<f64> {
        match self.state.status {
            Status::Connected { .. } => Some(LIST_REFRESH_S),
            Status::Disconnected { .. } => self.retry_at.map(|at| {
                let left = at - t;
                if left <= 0.0 {
                    1.0
                } else {
                    // Just after the displayed whole second changes.
                    (left - left.floor()).max(0.05)
                }
            }),
            // The seconds counter of "Connecting to …".
            Status::Connecting => Some(1.0),
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
    /// Capture and playback device names, once enumerated (junk entries filtered out).
    pub devices: Option<(Vec<String>, Vec<String>)>,
    device_scan: Option<mpsc::Receiver<(Vec<String>, Vec<String>)>>,
    connector: Connector,
    join_on_connect: Option<JoinTarget>,
    carry: Option<Carry>,
    global_keys: Result<GlobalKeys, String>,
}

/// Drops device names that are not devices a user would pick: ALSA's descriptive lines
/// ("Discard all samples (playback) or generate zero samples (capture)" is the `null` plugin),
/// multi-line descriptions, and duplicates.
pub fn usable_device_names(names: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        let n = n.trim().to_string();
        let junk = n.is_empty()
            || n.contains('\n')
            || n.starts_with("Discard all samples")
            || n.eq_ignore_ascii_case("null");
        if !junk && !out.contains(&n) {
            out.push(n);
        }
    }
    out
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
            carry: None,
            global_keys: Err("not started".into()),
        }
    }

    /// Lets the talk and whisper keys work while another window has focus, through `keys`
    /// (`Err`: why they cannot; the controls panel says so).
    pub fn set_global_keys(&mut self, keys: Result<GlobalKeys, String>) {
        self.global_keys = keys;
    }

    /// Whether the keys work while another window has focus.
    pub fn global_keys_availability(&self) -> Availability {
        match &self.global_keys {
            Ok(g) if g.running() => {
                let mouse = [self.settings.ptt(), self.settings.whisper()]
                    .iter()
                    .any(|b| matches!(b, Binding::Mouse(_)));
                let buttons = g
                    .buttons_unavailable()
                    .filter(|_| mouse)
                    .map(|why| format!("mouse buttons only in this window: {why}"));
                Availability::Active(buttons.or_else(|| g.caveat()))
            }
            Ok(g) => Availability::Unavailable(match g.provider() {
                global_keys::Provider::X11 => "the X connection ended".into(),
                global_keys::Provider::Portal => g
                    .caveat()
                    .unwrap_or_else(|| "the shortcuts portal's connection ended".into()),
            }),
            Err(why) => Availability::Unavailable(why.clone()),
        }
    }

    /// Lists audio devices on a background thread (cpal enumeration can take a while).
    pub fn scan_devices(&mut self) {
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("gui-devices".into())
            .spawn(move || {
                let (i, o) = voice_client::audio::device_names();
                let _ = tx.send((usable_device_names(i), usable_device_names(o)));
            });
        match spawned {
            Ok(_) => self.device_scan = Some(rx),
            Err(e) => log::warn!("device scan thread: {e}"),
        }
    }

    /// Joins this channel once welcomed (the `--channel` flag).
    pub fn join_on_connect(&mut self, channel: Option<JoinTarget>) {
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

    /// True while a host name is being resolved.
    pub fn resolving(&self) -> bool {
        matches!(&self.screen, Screen::Connect(f) if f.resolving.is_some())
    }

    /// Validates the form and starts an engine; a host name is resolved on a helper thread
    /// first (the connect screen says so, and [`GuiApp::show`] picks the answer up). On failure
    /// stays on (or returns to) the connect screen with the reason.
    pub fn connect(&mut self, ctx: &egui::Context) {
        let (field, name) = match settings::validate(&self.settings.server, &self.settings.name) {
            Ok(v) => v,
            Err(e) => return self.refuse(e.to_string()),
        };
        self.settings.name.clone_from(&name);
        // The engine opens the input next: the microphone test lets go of it first.
        if let Screen::Connect(form) = &mut self.screen {
            form.mic_test = None;
        }
        if let InputChoice::Wav(path) = &self.settings.input {
            if !Path::new(path).is_file() {
                return self.refuse(format!("WAV file not found: {}", path.display()));
            }
        }
        match field {
            ServerField::Addr(addr) => self.start(addr, name, ctx),
            ServerField::Host(host, port) => {
                let (tx, rx) = mpsc::channel();
                let c = ctx.clone();
                let field = ServerField::Host(host.clone(), port);
                let spawned = std::thread::Builder::new()
                    .name("gui-resolve".into())
                    .spawn(move || {
                        let _ = tx.send(settings::resolve(&field));
                        c.request_repaint();
                    });
                match spawned {
                    Ok(_) => {
                        self.screen = Screen::Connect(ConnectForm {
                            error: None,
                            touched: true,
                            resolving: Some((host, rx)),
                            mic_test: None,
                        });
                    }
                    Err(e) => self.refuse(format!("cannot start the resolver: {e}")),
                }
            }
        }
    }

    fn refuse(&mut self, error: String) {
        self.screen = Screen::Connect(ConnectForm {
            error: Some(error),
            touched: true,
            resolving: None,
            mic_test: None,
        });
    }

    fn start(&mut self, server: SocketAddr, name: String, ctx: &egui::Context) {
        let req = ConnectRequest {
            server,
            name,
            settings: self.settings.clone(),
        };
        match (self.connector)(&req, ctx) {
            Ok(backend) => {
                self.settings.remember_server();
                let mut s = Session::new(backend);
                s.join_after_welcome = self.join_on_connect.clone();
                s.send(Request::Mode(self.settings.mode.to_engine()));
                s.send(Request::Vad(VadConfig {
                    threshold_dbfs: self.settings.vad_threshold_dbfs,
                    ..VadConfig::default()
                }));
                if let Some(c) = self.carry.take() {
                    s.restore(c);
                }
                self.screen = Screen::Main(Box::new(s));
            }
            Err(e) => self.refuse(e),
        }
    }

    /// Drops the engine and returns to the connect screen.
    pub fn disconnect(&mut self) {
        self.screen = Screen::Connect(ConnectForm::default());
    }

    /// Restarts the engine with the current settings, keeping the chat, mute and deafen and
    /// the channel (per-user volume and mute are remembered by name in the settings anyway).
    pub fn reconnect(&mut self, ctx: &egui::Context) {
        self.carry = self.session().map(Session::carry);
        self.disconnect();
        self.connect(ctx);
        if let Some(s) = self.session_mut() {
            s.state
                .system("reconnected with the new settings".into(), unix_ms());
        }
    }

    fn poll_background(&mut self, ctx: &egui::Context) {
        if let Some(rx) = &self.device_scan {
            if let Ok(list) = rx.try_recv() {
                self.devices = Some(list);
                self.device_scan = None;
            }
        }
        let answer = match &self.screen {
            Screen::Connect(ConnectForm {
                resolving: Some((_, rx)),
                ..
            }) => match rx.try_recv() {
                Ok(r) => Some(r),
                Err(mpsc::TryRecvError::Empty) => None,
                Err(mpsc::TryRecvError::Disconnected) => Some(Err("resolver ended".into())),
            },
            _ => None,
        };
        match answer {
            Some(Ok(addr)) => {
                let name = self.settings.name.trim().to_string();
                self.start(addr, name, ctx);
            }
            Some(Err(e)) => self.refuse(e),
            None => {}
        }
    }

    /// One frame: pump, keys, draw.
    pub fn show(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        self.poll_background(&ctx);
        // F3 is a key like any other while a key is being set, and once it is the talk or
        // whisper key (the Diagnostics button still opens the overlay).
        let capturing = self.session().is_some_and(|s| s.capturing.is_some());
        let bound = [self.settings.ptt(), self.settings.whisper()].contains(&Binding::Key(Key::F3));
        if !capturing && !bound && ctx.input_mut(|i| i.consume_key(Modifiers::NONE, Key::F3)) {
            self.settings.overlay_open = !self.settings.overlay_open;
        }
        let t = ctx.input(|i| i.time);
        let availability = self.global_keys_availability();
        let global = self.global_keys.as_ref().map_or(0, GlobalKeys::down_bits);
        let everywhere = self
            .global_keys
            .as_ref()
            .is_ok_and(|g| g.provider() == global_keys::Provider::Portal);
        let action = match &mut self.screen {
            Screen::Connect(form) => {
                crate::ui::connect::show(ui, form, &mut self.settings, self.devices.as_ref())
            }
            Screen::Main(session) => {
                session.pump(t, &self.settings);
                if let Some(fp) = session.state.trusted_first_use.take() {
                    let server = self.settings.server.clone();
                    self.settings.learn_fingerprint(&server, &fp);
                }
                session.global_keys = availability;
                session.global_keys_everywhere = everywhere;
                session.keys(&ctx, &self.settings, global);
                // Statistics repaint at their own pace only while the plots are visible.
                session.backend.set_live(self.settings.overlay_open);
                crate::ui::main_window(ui, session, &mut self.settings, self.devices.as_ref())
            }
        };
        match action {
            crate::ui::Action::None => {}
            crate::ui::Action::Connect => self.connect(&ctx),
            crate::ui::Action::Disconnect => self.disconnect(),
            crate::ui::Action::Reconnect => self.reconnect(&ctx),
        }
        if let Ok(g) = &self.global_keys {
            // The portal reports its shortcuts whatever has focus: watch them regardless.
            let focused = ctx.input(|i| i.focused) && !everywhere;
            g.prefer(self.settings.ptt(), self.settings.whisper());
            let (ptt, whisper) = self
                .session()
                .map_or((None, None), |s| s.watched_keys(&self.settings, focused));
            g.watch(ptt, whisper);
        }
        if let Some(s) = self.session() {
            if let Some(after) = s.next_repaint(t) {
                ctx.request_repaint_after(std::time::Duration::from_secs_f64(after));
            }
        }
    }
}

impl eframe::App for GuiApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
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
