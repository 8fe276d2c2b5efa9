//! Push-to-talk and whisper keys and mouse buttons that work while the window is in the
//! background: from the X server ([`x11`]) or, under Wayland, from the desktop's
//! GlobalShortcuts portal ([`portal`]). Both feed one [`GlobalKeys`]: the app says what to
//! watch ([`GlobalKeys::watch`], [`GlobalKeys::prefer`]) and reads the held bits
//! ([`GlobalKeys::down_bits`]: [`PTT`], [`WHISPER`]); [`GlobalKeys::caveat`] is the settings
//! panel's line saying which source is in use and its limits.
//!
//! **Which source** ([`GlobalKeys::start_best`], [`choose`]): under Wayland (`WAYLAND_DISPLAY`
//! set) the portal first, since through XWayland the X server sees keys only while an X11
//! window has focus; when the session bus offers no portal, the X server through XWayland with
//! that limit and the reason named; elsewhere the X server first, then the portal. When neither
//! works the keys work only while the window has focus and the panel says why (both reasons).
//!
//! **X11.** A window only receives key events while it has the keyboard focus, so a talk key
//! held while a game or a browser has focus would do nothing. Like Mumble's X11 backend, a
//! helper thread (`gui-keys`) asks the X server for the physical state of the whole keyboard
//! (`XQueryKeymap`) every [`POLL`], on a display connection of its own, and looks at the key
//! codes of the configured keys (`XKeysymToKeycode`). It does so only while a key is needed
//! and the window does not have focus (connected, in push-to-talk mode or with a whisper
//! target); otherwise it makes no X requests. The state is published in an atomic; on a press
//! or release the thread asks egui for a frame, and the frame feeds it into the same
//! push-to-talk path as the in-window keys ([`crate::app::Session`]). Neither the audio path
//! nor the UI ever waits for this thread.
//!
//! A mouse button ([`Binding::Mouse`]: middle, back or forward) is followed through the X Input
//! extension's raw button events (XInput 2.2, `XI_RawButtonPress`/`Release` selected on the root
//! window, as Mumble does): the server reports every press of every pointer device wherever the
//! pointer is, also over our own window (which sees a button only while the pointer is over it,
//! whatever has the keyboard focus). The thread waits for them on the connection's socket, so a
//! press is seen at once, and selects them only while a button is watched.
//!
//! Nothing is grabbed: the key or button still reaches the application under it (as in Mumble;
//! a browser still goes back on the back button). When there is no X display (Wayland without
//! XWayland, a headless test, no libX11), [`GlobalKeys::start_x11`] returns the reason. Without
//! libXi or the extension, keys still work and [`GlobalKeys::buttons_unavailable`] says why the
//! buttons do not.
//!
//! **Portal** (see [`portal`]): the desktop binds two shortcuts for us and reports their presses
//! and releases whatever has focus; it takes the keys from other applications meanwhile, and
//! binds no mouse buttons.
//!
//! The key-name ↔ keysym table ([`keysym`], [`key_for_keysym`]), the bindings' names
//! ([`Binding`]) and the edge detector ([`KeyEdges`]) are pure and tested without an X server;
//! the thread is tested with a scripted [`KeySource`], and against a real X server (Xvfb, with
//! button presses made through XTEST) in `tests/it/mouse.rs`; the portal against a fake portal
//! on a private `dbus-daemon` in `tests/it/portal.rs`.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use egui::Key;
use x11_dl::keysym as ks;

use x11::X11Source;

pub mod portal;
pub mod x11;

/// How often the keyboard is sampled while a key is watched (a press shorter than this can be
/// missed; the delay it adds to the start of a transmission is at most this, one Opus frame).
/// At 100 Hz the thread alone took 0.6 % of a core, at the edge of issue 19's 2 % idle budget.
pub const POLL: Duration = Duration::from_millis(20);
/// How often the thread looks for work while no key is watched (not connected, or no
/// push-to-talk and no whisper target): no X round trips then.
pub const IDLE_POLL: Duration = Duration::from_millis(100);
/// Key codes are looked up again after this many polls (the keyboard layout may change).
pub const REMAP_EVERY: u32 = 200;

/// Bit of the push-to-talk key in [`GlobalKeys::down_bits`].
pub const PTT: u8 = 1;
/// Bit of the whisper key in [`GlobalKeys::down_bits`].
pub const WHISPER: u8 = 2;

/// The X keysym of an egui key (`None` for keys without a fixed keysym, such as `Fn`).
/// Letters map to their lower-case keysym, which is what `XKeysymToKeycode` needs.
pub fn keysym(key: Key) -> Option<u32> {
    use Key as K;
    let letters = [
        K::A,
        K::B,
        K::C,
        K::D,
        K::E,
        K::F,
        K::G,
        K::H,
        K::I,
        K::J,
        K::K,
        K::L,
        K::M,
        K::N,
        K::O,
        K::P,
        K::Q,
        K::R,
        K::S,
        K::T,
        K::U,
        K::V,
        K::W,
        K::X,
        K::Y,
        K::Z,
    ];
    if let Some(i) = letters.iter().position(|k| *k == key) {
        return Some(ks::XK_a + i as u32);
    }
    let digits = [
        K::Num0,
        K::Num1,
        K::Num2,
        K::Num3,
        K::Num4,
        K::Num5,
        K::Num6,
        K::Num7,
        K::Num8,
        K::Num9,
    ];
    if let Some(i) = digits.iter().position(|k| *k == key) {
        return Some(ks::XK_0 + i as u32);
    }
    let functions = [
        K::F1,
        K::F2,
        K::F3,
        K::F4,
        K::F5,
        K::F6,
        K::F7,
        K::F8,
        K::F9,
        K::F10,
        K::F11,
        K::F12,
        K::F13,
        K::F14,
        K::F15,
        K::F16,
        K::F17,
        K::F18,
        K::F19,
        K::F20,
        K::F21,
        K::F22,
        K::F23,
        K::F24,
        K::F25,
        K::F26,
        K::F27,
        K::F28,
        K::F29,
        K::F30,
        K::F31,
        K::F32,
        K::F33,
        K::F34,
        K::F35,
    ];
    if let Some(i) = functions.iter().position(|k| *k == key) {
        return Some(ks::XK_F1 + i as u32);
    }
    OTHERS.iter().find(|(k, _)| *k == key).map(|(_, s)| *s)
}

/// The egui key of an X keysym (the inverse of [`keysym`]; upper-case letters map too).
pub fn key_for_keysym(sym: u32) -> Option<Key> {
    let sym = if (ks::XK_A..=ks::XK_Z).contains(&sym) {
        sym - ks::XK_A + ks::XK_a
    } else {
        sym
    };
    Key::ALL.iter().copied().find(|k| keysym(*k) == Some(sym))
}

/// What talks (or whispers) while held: a key, or a mouse button.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Binding {
    /// A keyboard key.
    Key(Key),
    /// A mouse button by its X number: [`MOUSE_MIDDLE`], [`MOUSE_BACK`] or [`MOUSE_FORWARD`] (the
    /// left and right buttons cannot be bound: every click would talk).
    Mouse(u8),
}

/// X number of the middle mouse button.
pub const MOUSE_MIDDLE: u8 = 2;
/// X number of the "back" side button (egui's `Extra1`, Windows' XButton1, often "mouse 4").
pub const MOUSE_BACK: u8 = 8;
/// X number of the "forward" side button (egui's `Extra2`, often "mouse 5").
pub const MOUSE_FORWARD: u8 = 9;

/// The prefix of a mouse binding's stored name (`Mouse8`).
const MOUSE_PREFIX: &str = "Mouse";

impl Binding {
    /// The binding stored as `name`: an [`egui::Key`] name (`V`, `F13`, `ControlLeft`) or
    /// `Mouse` and the X button number (`Mouse2`, `Mouse8`, `Mouse9`). `None`: unknown.
    pub fn parse(name: &str) -> Option<Binding> {
        if let Some(n) = name.strip_prefix(MOUSE_PREFIX) {
            let b = n.parse::<u8>().ok()?;
            return Self::pointer_button(b).map(|_| Binding::Mouse(b));
        }
        Key::from_name(name).map(Binding::Key)
    }

    /// The name [`Binding::parse`] reads back (stored in the settings).
    pub fn name(self) -> String {
        match self {
            Binding::Key(k) => k.name().to_string(),
            Binding::Mouse(b) => format!("{MOUSE_PREFIX}{b}"),
        }
    }

    /// The egui pointer button of X button `button`, for the bindable ones.
    pub fn pointer_button(button: u8) -> Option<egui::PointerButton> {
        match button {
            MOUSE_MIDDLE => Some(egui::PointerButton::Middle),
            MOUSE_BACK => Some(egui::PointerButton::Extra1),
            MOUSE_FORWARD => Some(egui::PointerButton::Extra2),
            _ => None,
        }
    }

    /// The binding of an egui pointer button (`None` for the left and right buttons).
    pub fn from_pointer(button: egui::PointerButton) -> Option<Binding> {
        [MOUSE_MIDDLE, MOUSE_BACK, MOUSE_FORWARD]
            .into_iter()
            .find(|b| Self::pointer_button(*b) == Some(button))
            .map(Binding::Mouse)
    }
}

/// Every key that is not a letter, digit or function key, with its keysym.
const OTHERS: &[(Key, u32)] = &[
    (Key::ArrowDown, ks::XK_Down),
    (Key::ArrowLeft, ks::XK_Left),
    (Key::ArrowRight, ks::XK_Right),
    (Key::ArrowUp, ks::XK_Up),
    (Key::Escape, ks::XK_Escape),
    (Key::Tab, ks::XK_Tab),
    (Key::Backspace, ks::XK_BackSpace),
    (Key::Enter, ks::XK_Return),
    (Key::Insert, ks::XK_Insert),
    (Key::Delete, ks::XK_Delete),
    (Key::Home, ks::XK_Home),
    (Key::End, ks::XK_End),
    (Key::PageUp, ks::XK_Prior),
    (Key::PageDown, ks::XK_Next),
    (Key::Copy, ks::XF86XK_Copy),
    (Key::Cut, ks::XF86XK_Cut),
    (Key::Paste, ks::XF86XK_Paste),
    (Key::Space, ks::XK_space),
    (Key::Colon, ks::XK_colon),
    (Key::Comma, ks::XK_comma),
    (Key::Minus, ks::XK_minus),
    (Key::Period, ks::XK_period),
    (Key::Plus, ks::XK_plus),
    (Key::Equals, ks::XK_equal),
    (Key::Semicolon, ks::XK_semicolon),
    (Key::OpenBracket, ks::XK_bracketleft),
    (Key::CloseBracket, ks::XK_bracketright),
    (Key::OpenCurlyBracket, ks::XK_braceleft),
    (Key::CloseCurlyBracket, ks::XK_braceright),
    (Key::Backtick, ks::XK_grave),
    (Key::Backslash, ks::XK_backslash),
    (Key::Slash, ks::XK_slash),
    (Key::Pipe, ks::XK_bar),
    (Key::Questionmark, ks::XK_question),
    (Key::Exclamationmark, ks::XK_exclam),
    (Key::Quote, ks::XK_apostrophe),
    (Key::BrowserBack, ks::XF86XK_Back),
    (Key::BrowserForward, ks::XF86XK_Forward),
    (Key::BrowserRefresh, ks::XF86XK_Refresh),
    (Key::BrowserSearch, ks::XF86XK_Search),
    (Key::BrowserHome, ks::XF86XK_HomePage),
    (Key::BrowserFavorites, ks::XF86XK_Favorites),
    (Key::BrowserStop, ks::XF86XK_Stop),
    (Key::MediaPlayPause, ks::XF86XK_AudioPlay),
    (Key::MediaTrackNext, ks::XF86XK_AudioNext),
    (Key::MediaTrackPrevious, ks::XF86XK_AudioPrev),
    (Key::MediaStop, ks::XF86XK_AudioStop),
    (Key::AudioVolumeMute, ks::XF86XK_AudioMute),
    (Key::AudioVolumeDown, ks::XF86XK_AudioLowerVolume),
    (Key::AudioVolumeUp, ks::XF86XK_AudioRaiseVolume),
    (Key::LaunchMail, ks::XF86XK_Mail),
    (Key::LaunchApp1, ks::XF86XK_MyComputer),
    (Key::LaunchApp2, ks::XF86XK_Calculator),
    (Key::ShiftLeft, ks::XK_Shift_L),
    (Key::ShiftRight, ks::XK_Shift_R),
    (Key::ControlLeft, ks::XK_Control_L),
    (Key::ControlRight, ks::XK_Control_R),
    (Key::AltLeft, ks::XK_Alt_L),
    (Key::AltRight, ks::XK_Alt_R),
    (Key::SuperLeft, ks::XK_Super_L),
    (Key::SuperRight, ks::XK_Super_R),
    (Key::CapsLock, ks::XK_Caps_Lock),
    (Key::NumLock, ks::XK_Num_Lock),
    (Key::ScrollLock, ks::XK_Scroll_Lock),
    (Key::PrintScreen, ks::XK_Print),
    (Key::Pause, ks::XK_Pause),
    (Key::Menu, ks::XK_Menu),
    (Key::Eject, ks::XF86XK_Eject),
    (Key::Help, ks::XK_Help),
    (Key::Power, ks::XF86XK_PowerOff),
    (Key::Sleep, ks::XF86XK_Sleep),
    (Key::Clear, ks::XK_Clear),
];

/// Whether key code `code` is down in an `XQueryKeymap` bit vector (bit `code % 8` of byte
/// `code / 8`).
pub fn is_down(keymap: &[u8; 32], code: u8) -> bool {
    keymap[usize::from(code / 8)] & (1 << (code % 8)) != 0
}

/// Turns samples of the watched keys (bits [`PTT`], [`WHISPER`]) into presses and releases.
///
/// There is no debounce: the X server reports the physical key state, which has no autorepeat
/// and no bounce (the keyboard driver already debounced it).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KeyEdges {
    down: u8,
}

impl KeyEdges {
    /// Takes one sample; returns the bits that changed (0: nothing happened).
    pub fn update(&mut self, now: u8) -> u8 {
        let changed = self.down ^ now;
        self.down = now;
        changed
    }

    /// The keys held at the last sample.
    pub fn down(&self) -> u8 {
        self.down
    }
}

/// Where the thread reads the keyboard: the X server, or a script in tests.
pub trait KeySource: Send {
    /// The key code that produces `keysym` on this keyboard (`None`: no such key).
    fn keycode(&mut self, keysym: u32) -> Option<u8>;
    /// The state of every key, one bit per key code. `None` ends the thread (the source is gone).
    fn keymap(&mut self) -> Option<[u8; 32]>;
    /// Starts (`on`) or stops reporting mouse button presses and releases. `Err` says why this
    /// source cannot (the default: a source without a mouse).
    fn follow_buttons(&mut self, on: bool) -> Result<(), String> {
        let _ = on;
        Err("no mouse".into())
    }
    /// The mouse button presses (`true`) and releases since the last call, by X button number,
    /// waiting up to `wait` for the first. Called only while [`KeySource::follow_buttons`]
    /// succeeded. `None` ends the thread (the source is gone).
    fn buttons(&mut self, wait: Duration) -> Option<Vec<(u8, bool)>> {
        std::thread::sleep(wait);
        Some(Vec::new())
    }
}

/// Whether the keys work outside the window, as the controls panel says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// They do (with a limit worth telling, under Wayland).
    Active(Option<String>),
    /// Only while the window has focus, for this reason.
    Unavailable(String),
}

/// Where the keys outside the window come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// The X server's keyboard state (or a scripted [`KeySource`] in tests): seen only while
    /// another window has focus (our window's own keys count then), and never taken from the
    /// application that has focus.
    X11,
    /// The desktop's GlobalShortcuts portal (Wayland): the desktop reports the shortcuts it
    /// bound for us whatever has focus, and takes their keys from every other application.
    Portal,
}

/// What the app and the thread share.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// What is watched per slot (talk, whisper), as [`encode`]d: 0 is nothing.
    pub(crate) watch: [AtomicU32; 2],
    /// The user's bindings per slot, [`encode`]d, watched or not (the portal asks the desktop
    /// for these keys).
    pub(crate) prefer: [AtomicU32; 2],
    /// Bits of the watched keys and buttons that are down.
    pub(crate) down: AtomicU8,
    /// What the source says about itself for the settings panel (which source, its limits).
    pub(crate) status: Mutex<Option<String>>,
    pub(crate) stop: AtomicBool,
}

impl Shared {
    /// The watched slots ([`PTT`], [`WHISPER`] bits of those with a binding).
    pub(crate) fn watched_bits(&self) -> u8 {
        let w = |i: usize| self.watch[i].load(Ordering::Relaxed) != 0;
        (u8::from(w(0)) * PTT) | (u8::from(w(1)) * WHISPER)
    }

    /// Replaces the status line.
    pub(crate) fn set_status(&self, text: impl Into<String>) {
        if let Ok(mut s) = self.status.lock() {
            *s = Some(text.into());
        }
    }

    /// Publishes the keys held now (`now`: [`PTT`], [`WHISPER`] bits) and calls `notify` when
    /// that changed: the one place either source hands a press or release to the app.
    pub(crate) fn publish(&self, edges: &mut KeyEdges, now: u8, notify: &dyn Fn()) {
        if edges.update(now) != 0 {
            self.down.store(now, Ordering::Relaxed);
            notify();
        }
    }
}

/// Marks a mouse button in an [`encode`]d binding (keysyms stay below 2^29).
const BUTTON: u32 = 1 << 31;

/// A binding as one number for an atomic: its keysym (0 for a key without one, or `None`), or
/// [`BUTTON`] | the X button number.
pub(crate) fn encode(b: Option<Binding>) -> u32 {
    match b {
        Some(Binding::Key(k)) => keysym(k).unwrap_or(0),
        Some(Binding::Mouse(button)) => BUTTON | u32::from(button),
        None => 0,
    }
}

/// The binding of an [`encode`]d number (`None` for 0 or an unknown keysym).
pub(crate) fn decode(code: u32) -> Option<Binding> {
    if code & BUTTON != 0 {
        Some(Binding::Mouse((code & 0xff) as u8))
    } else if code == 0 {
        None
    } else {
        key_for_keysym(code).map(Binding::Key)
    }
}

/// The running `gui-keys` thread. Dropping it stops the thread.
pub struct GlobalKeys {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    provider: Provider,
    buttons_unavailable: Option<String>,
}

impl std::fmt::Debug for GlobalKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlobalKeys")
            .field("provider", &self.provider)
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

/// What [`GlobalKeys::start_best`] says when the XWayland fallback is all there is.
pub const XWAYLAND_CAVEAT: &str =
    "Wayland: through XWayland, keys are seen only while an X11 window has focus";

impl GlobalKeys {
    /// The best source this session offers, in this order: under Wayland (`WAYLAND_DISPLAY`
    /// set) the desktop's GlobalShortcuts portal, then the X server through XWayland (with
    /// [`XWAYLAND_CAVEAT`] and why the portal is not used); elsewhere the X server, then the
    /// portal. `Err` names why neither works: the keys then work only while the window has
    /// focus.
    pub fn start_best(notify: impl Fn() + Send + Sync + 'static) -> Result<Self, String> {
        let notify = Arc::new(notify);
        let n = notify.clone();
        let portal = move || Self::start_portal(move || n());
        let x11 = move || Self::start_x11(move || notify());
        choose(std::env::var_os("WAYLAND_DISPLAY").is_some(), portal, x11)
    }

    /// Watches the X server's keyboard and mouse buttons. `notify` is called (from the thread)
    /// on every press and release of a watched key or button. `Err` says why it cannot (no X
    /// display, no libX11): the keys then work only while the window has focus.
    pub fn start_x11(notify: impl Fn() + Send + 'static) -> Result<Self, String> {
        Self::start_x11_on(None, notify)
    }

    /// [`GlobalKeys::start_x11`] on display `name` (`None`: `$DISPLAY`), e.g. `":1"`.
    pub fn start_x11_on(
        name: Option<&str>,
        notify: impl Fn() + Send + 'static,
    ) -> Result<Self, String> {
        let source = X11Source::open(name)?;
        let buttons_unavailable = source.xi.as_ref().err().cloned();
        let mut keys = Self::start(Box::new(source), notify).map_err(|e| e.to_string())?;
        keys.buttons_unavailable = buttons_unavailable;
        keys.shared
            .set_status("through the X server (the key still reaches the other window)");
        Ok(keys)
    }

    /// Asks the session bus's GlobalShortcuts portal (`org.freedesktop.portal.Desktop`) for
    /// the talk and whisper shortcuts (see [`portal`]). `Err` says why it cannot (no session
    /// bus, no portal, a portal without GlobalShortcuts), after at most
    /// [`portal::CONNECT_TIMEOUT`].
    pub fn start_portal(notify: impl Fn() + Send + 'static) -> Result<Self, String> {
        Self::start_portal_on(None, notify)
    }

    /// [`GlobalKeys::start_portal`] on the bus at D-Bus `address` (`None`: the session bus).
    pub fn start_portal_on(
        address: Option<&str>,
        notify: impl Fn() + Send + 'static,
    ) -> Result<Self, String> {
        let portal = portal::Portal::connect(address)?;
        let shared = Arc::new(Shared::default());
        shared.set_status(portal::IDLE_STATUS);
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("gui-keys".into())
            .spawn(move || portal.run(&s, &notify))
            .map_err(|e| e.to_string())?;
        Ok(GlobalKeys {
            shared,
            thread: Some(thread),
            provider: Provider::Portal,
            buttons_unavailable: Some(
                "the desktop's shortcuts portal binds keys, not mouse buttons".into(),
            ),
        })
    }

    /// Watches `source` on a new thread (see the module documentation).
    pub fn start(
        mut source: Box<dyn KeySource>,
        notify: impl Fn() + Send + 'static,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("gui-keys".into())
            .spawn(move || poll_loop(&mut *source, &s, &notify))?;
        Ok(GlobalKeys {
            shared,
            thread: Some(thread),
            provider: Provider::X11,
            buttons_unavailable: None,
        })
    }

    /// Sets what to watch (`None`: not needed now, e.g. not connected).
    pub fn watch(&self, ptt: Option<Binding>, whisper: Option<Binding>) {
        for (slot, b) in self.shared.watch.iter().zip([ptt, whisper]) {
            slot.store(encode(b), Ordering::Relaxed);
        }
    }

    /// The user's talk and whisper bindings, watched or not. The portal asks the desktop for
    /// these keys (again when they change); the X server needs only [`GlobalKeys::watch`].
    pub fn prefer(&self, ptt: Binding, whisper: Binding) {
        for (slot, b) in self.shared.prefer.iter().zip([ptt, whisper]) {
            slot.store(encode(Some(b)), Ordering::Relaxed);
        }
    }

    /// Which watched keys are down ([`PTT`], [`WHISPER`] bits), as last sampled.
    pub fn down_bits(&self) -> u8 {
        self.shared.down.load(Ordering::Relaxed)
    }

    /// Where the keys come from.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// Which source this is and its limits, for the settings panel ("through the X server…",
    /// the XWayland limit, the portal's bound shortcuts or why it bound none).
    pub fn caveat(&self) -> Option<String> {
        self.shared.status.lock().ok().and_then(|s| s.clone())
    }

    /// Why mouse buttons are not seen outside the window (no libXi, no XInput 2, the portal),
    /// if so.
    pub fn buttons_unavailable(&self) -> Option<&str> {
        self.buttons_unavailable.as_deref()
    }

    /// False once the thread has ended (its source went away).
    pub fn running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

/// The fallback order of [`GlobalKeys::start_best`], with the sources passed in (tests pass
/// their own): under Wayland the portal first, else the X server first; the reasons of the
/// sources that failed go into the caveat (or the error) of what is used.
pub fn choose(
    wayland: bool,
    portal: impl FnOnce() -> Result<GlobalKeys, String>,
    x11: impl FnOnce() -> Result<GlobalKeys, String>,
) -> Result<GlobalKeys, String> {
    if wayland {
        let no_portal = match portal() {
            Ok(keys) => return Ok(keys),
            Err(why) => why,
        };
        match x11() {
            Ok(keys) => {
                keys.shared
                    .set_status(format!("{XWAYLAND_CAVEAT} ({no_portal})"));
                Ok(keys)
            }
            Err(no_x) => Err(format!("{no_portal}; {no_x}")),
        }
    } else {
        let no_x = match x11() {
            Ok(keys) => return Ok(keys),
            Err(why) => why,
        };
        portal().map_err(|no_portal| format!("{no_x}; {no_portal}"))
    }
}

impl Drop for GlobalKeys {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // Ends within one `IDLE_POLL` (the portal's thread also closes its session first,
            // within `portal::CALL_TIMEOUT`).
            let _ = t.join();
        }
    }
}

/// The mouse buttons held, from the press and release events seen.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HeldButtons {
    /// Bit `b` set: X button `b` is down (buttons 0–31; higher ones are not tracked).
    held: u32,
}

impl HeldButtons {
    /// Takes one event: X button `button` was pressed (`true`) or released.
    pub fn event(&mut self, button: u8, pressed: bool) {
        let Some(bit) = 1u32.checked_shl(u32::from(button)) else {
            return;
        };
        if pressed {
            self.held |= bit;
        } else {
            self.held &= !bit;
        }
    }

    /// Whether X button `button` is down.
    pub fn is_down(&self, button: u8) -> bool {
        1u32.checked_shl(u32::from(button))
            .is_some_and(|bit| self.held & bit != 0)
    }

    /// Forgets every press (once events stop being followed, a release could be missed).
    pub fn clear(&mut self) {
        self.held = 0;
    }
}

fn poll_loop(source: &mut dyn KeySource, shared: &Shared, notify: &dyn Fn()) {
    let mut edges = KeyEdges::default();
    // The watched keysyms and their key codes.
    let mut mapped: [(u32, Option<u8>); 2] = [(0, None); 2];
    let mut polls = 0u32;
    let mut following = false;
    let mut buttons = HeldButtons::default();
    let mut refused: Option<String> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        let watch = [
            shared.watch[0].load(Ordering::Relaxed),
            shared.watch[1].load(Ordering::Relaxed),
        ];
        let syms = watch.map(|w| if w & BUTTON != 0 { 0 } else { w });
        let want_buttons = watch.iter().any(|w| w & BUTTON != 0);
        if want_buttons != following {
            match source.follow_buttons(want_buttons) {
                Ok(()) => following = want_buttons,
                Err(why) => {
                    if refused.as_ref() != Some(&why) {
                        log::warn!("mouse buttons are seen only in the window: {why}");
                        refused = Some(why);
                    }
                    following = false;
                }
            }
            buttons.clear();
        }
        polls = polls.wrapping_add(1);
        let remap = polls.is_multiple_of(REMAP_EVERY);
        for (m, sym) in mapped.iter_mut().zip(syms) {
            if m.0 != sym || remap {
                *m = (sym, if sym == 0 { None } else { source.keycode(sym) });
            }
        }
        let keys_watched = mapped.iter().any(|(_, c)| c.is_some());
        let wait = if keys_watched { POLL } else { IDLE_POLL };
        let mut now = 0;
        if keys_watched {
            let Some(map) = source.keymap() else {
                break;
            };
            let bit = |(_, code): (u32, Option<u8>)| code.is_some_and(|c| is_down(&map, c));
            now |= (u8::from(bit(mapped[0])) * PTT) | (u8::from(bit(mapped[1])) * WHISPER);
        }
        if following {
            let Some(events) = source.buttons(wait) else {
                break;
            };
            for (b, pressed) in events {
                buttons.event(b, pressed);
            }
            for (w, bit) in watch.into_iter().zip([PTT, WHISPER]) {
                if w & BUTTON != 0 && buttons.is_down((w & 0xff) as u8) {
                    now |= bit;
                }
            }
        }
        shared.publish(&mut edges, now, notify);
        if !following {
            std::thread::sleep(wait);
        }
    }
    // Nothing is held once nobody watches.
    shared.down.store(0, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::wait_for;

    #[test]
    fn every_mapped_key_round_trips() {
        let mut mapped = 0;
        for k in Key::ALL {
            if let Some(sym) = keysym(*k) {
                mapped += 1;
                assert_eq!(key_for_keysym(sym), Some(*k), "{k:?} ↔ {sym:#x}");
            }
        }
        // All but Fn and IntlBackslash (layout-dependent) have a keysym.
        assert_eq!(mapped, Key::ALL.len() - 2);
        assert_eq!(keysym(Key::Fn), None);
    }

    #[test]
    fn known_keysyms() {
        // Values from X11's keysymdef.h / XF86keysym.h.
        assert_eq!(keysym(Key::V), Some(0x76));
        assert_eq!(keysym(Key::Num0), Some(0x30));
        assert_eq!(keysym(Key::F1), Some(0xffbe));
        assert_eq!(keysym(Key::F35), Some(0xffe0));
        assert_eq!(keysym(Key::ControlRight), Some(0xffe4));
        assert_eq!(keysym(Key::Space), Some(0x20));
        assert_eq!(keysym(Key::PageUp), Some(0xff55));
        assert_eq!(keysym(Key::MediaPlayPause), Some(0x1008_ff14));
        // Upper-case keysyms name the same key.
        assert_eq!(key_for_keysym(0x56), Some(Key::V));
        assert_eq!(key_for_keysym(0x1234_5678), None);
        // The names stored in the settings resolve to keysyms.
        for name in ["V", "B", "F13", "ControlLeft", "Space"] {
            let key = Key::from_name(name).expect(name);
            assert!(keysym(key).is_some(), "{name}");
        }
    }

    #[test]
    fn keymap_bits() {
        let mut map = [0u8; 32];
        map[55 / 8] |= 1 << (55 % 8);
        assert!(is_down(&map, 55));
        assert!(!is_down(&map, 54) && !is_down(&map, 56) && !is_down(&map, 255));
        map[31] = 0x80;
        assert!(is_down(&map, 255));
    }

    #[test]
    fn a_missing_display_is_an_error_not_a_panic() {
        let e = GlobalKeys::start_x11_on(Some(":4999"), || {}).expect_err("no such display");
        assert!(e.contains("4999") || e.contains("libX11"), "{e}");
        let e = GlobalKeys::start_x11_on(Some("a\0b"), || {}).expect_err("bad name");
        assert!(e.contains("bad X display name"), "{e}");
    }

    #[test]
    fn edges_report_presses_and_releases_once() {
        let mut e = KeyEdges::default();
        assert_eq!(e.update(0), 0);
        assert_eq!(e.update(PTT), PTT, "press");
        assert_eq!(e.update(PTT), 0, "held: no new edge");
        assert_eq!(e.update(PTT | WHISPER), WHISPER);
        assert_eq!(e.down(), PTT | WHISPER);
        assert_eq!(e.update(WHISPER), PTT, "release");
        assert_eq!(e.update(0), WHISPER);
        assert_eq!(e.down(), 0);
    }

    #[test]
    fn bindings_have_names_that_read_back() {
        for b in [
            Binding::Key(Key::V),
            Binding::Key(Key::ControlLeft),
            Binding::Key(Key::F13),
            Binding::Mouse(MOUSE_MIDDLE),
            Binding::Mouse(MOUSE_BACK),
            Binding::Mouse(MOUSE_FORWARD),
        ] {
            assert_eq!(Binding::parse(&b.name()), Some(b), "{b:?}");
        }
        assert_eq!(Binding::Mouse(8).name(), "Mouse8");
        assert_eq!(Binding::parse("V"), Some(Binding::Key(Key::V)));
        // The left and right buttons, wheel steps and unknown names are not bindings.
        for bad in [
            "Mouse1", "Mouse3", "Mouse4", "Mouse10", "Mouse", "Mouse-8", "Nope", "",
        ] {
            assert_eq!(Binding::parse(bad), None, "{bad:?}");
        }
        assert_eq!(
            Binding::from_pointer(egui::PointerButton::Extra1),
            Some(Binding::Mouse(MOUSE_BACK))
        );
        assert_eq!(
            Binding::from_pointer(egui::PointerButton::Extra2),
            Some(Binding::Mouse(MOUSE_FORWARD))
        );
        assert_eq!(
            Binding::from_pointer(egui::PointerButton::Middle),
            Some(Binding::Mouse(MOUSE_MIDDLE))
        );
        assert_eq!(Binding::from_pointer(egui::PointerButton::Primary), None);
        assert_eq!(Binding::from_pointer(egui::PointerButton::Secondary), None);
    }

    #[test]
    fn held_buttons_follow_presses_and_releases() {
        let mut h = HeldButtons::default();
        h.event(8, true);
        h.event(9, true);
        assert!(h.is_down(8) && h.is_down(9) && !h.is_down(2));
        h.event(8, false);
        assert!(!h.is_down(8) && h.is_down(9));
        // A release never pressed, and buttons beyond 31, change nothing.
        h.event(2, false);
        h.event(200, true);
        assert!(!h.is_down(200) && !h.is_down(2) && h.is_down(9));
        h.clear();
        assert!(!h.is_down(9));
    }

    /// A keyboard whose key codes are keysym % 200 + 8 and whose held keys the test sets; its
    /// mouse reports the button events the test queues, while followed.
    struct Script {
        held: Arc<std::sync::Mutex<Vec<u32>>>,
        queries: Arc<AtomicU32>,
        clicks: Arc<std::sync::Mutex<Vec<(u8, bool)>>>,
        following: Arc<AtomicBool>,
    }

    impl KeySource for Script {
        fn keycode(&mut self, keysym: u32) -> Option<u8> {
            u8::try_from(keysym % 200 + 8).ok()
        }

        fn keymap(&mut self) -> Option<[u8; 32]> {
            self.queries.fetch_add(1, Ordering::Relaxed);
            let mut map = [0u8; 32];
            let held = self.held.lock().ok()?.clone();
            for sym in held {
                let c = self.keycode(sym)?;
                map[usize::from(c / 8)] |= 1 << (c % 8);
            }
            Some(map)
        }

        fn follow_buttons(&mut self, on: bool) -> Result<(), String> {
            self.following.store(on, Ordering::Relaxed);
            Ok(())
        }

        fn buttons(&mut self, wait: Duration) -> Option<Vec<(u8, bool)>> {
            std::thread::sleep(wait.min(Duration::from_millis(5)));
            Some(std::mem::take(&mut *self.clicks.lock().ok()?))
        }
    }

    #[test]
    fn thread_follows_the_watched_keys() {
        let held = Arc::new(std::sync::Mutex::new(Vec::new()));
        let queries = Arc::new(AtomicU32::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        let keys = GlobalKeys::start(
            Box::new(Script {
                held: held.clone(),
                queries: queries.clone(),
                clicks: Default::default(),
                following: Default::default(),
            }),
            move || {
                let _ = tx.send(());
            },
        )
        .expect("thread");
        // Nothing watched: no keyboard queries, nothing down.
        held.lock().unwrap().push(keysym(Key::V).unwrap());
        std::thread::sleep(IDLE_POLL * 2);
        assert_eq!(queries.load(Ordering::Relaxed), 0);
        assert_eq!(keys.down_bits(), 0);
        // Watching V while it is held: a press.
        keys.watch(Some(Binding::Key(Key::V)), Some(Binding::Key(Key::B)));
        assert!(wait_for(|| keys.down_bits() == PTT));
        assert!(rx.recv_timeout(Duration::from_secs(1)).is_ok(), "notified");
        held.lock().unwrap().push(keysym(Key::B).unwrap());
        assert!(wait_for(|| keys.down_bits() == PTT | WHISPER));
        held.lock().unwrap().clear();
        assert!(wait_for(|| keys.down_bits() == 0));
        // Another key held does not count.
        held.lock().unwrap().push(keysym(Key::X).unwrap());
        std::thread::sleep(POLL * 5);
        assert_eq!(keys.down_bits(), 0);
        assert!(keys.running());
        drop(keys);
    }

    #[test]
    fn thread_follows_a_mouse_button() {
        let clicks = Arc::new(std::sync::Mutex::new(Vec::new()));
        let following = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicU32::new(0));
        let keys = GlobalKeys::start(
            Box::new(Script {
                held: Default::default(),
                queries: queries.clone(),
                clicks: clicks.clone(),
                following: following.clone(),
            }),
            || {},
        )
        .expect("thread");
        // Talk on the back button, whisper on V: buttons followed, the keyboard polled.
        keys.watch(Some(Binding::Mouse(MOUSE_BACK)), Some(Binding::Key(Key::V)));
        assert!(wait_for(|| following.load(Ordering::Relaxed)));
        clicks.lock().unwrap().push((MOUSE_BACK, true));
        assert!(wait_for(|| keys.down_bits() == PTT));
        // Other buttons (left click, the wheel) do not talk.
        clicks
            .lock()
            .unwrap()
            .extend([(1, true), (4, true), (4, false)]);
        std::thread::sleep(POLL * 3);
        assert_eq!(keys.down_bits(), PTT);
        clicks.lock().unwrap().push((MOUSE_BACK, false));
        assert!(wait_for(|| keys.down_bits() == 0));
        assert!(queries.load(Ordering::Relaxed) > 0, "V is polled meanwhile");
        // Held when the watch ends (the window took focus, or we disconnected): not held any
        // more, and the buttons are no longer followed.
        clicks.lock().unwrap().push((MOUSE_FORWARD, true));
        keys.watch(Some(Binding::Mouse(MOUSE_FORWARD)), None);
        assert!(wait_for(|| keys.down_bits() == PTT));
        keys.watch(None, None);
        assert!(wait_for(|| !following.load(Ordering::Relaxed)));
        assert!(wait_for(|| keys.down_bits() == 0));
        // Watched again: the press seen before does not count (its release may have been missed).
        keys.watch(Some(Binding::Mouse(MOUSE_FORWARD)), None);
        assert!(wait_for(|| following.load(Ordering::Relaxed)));
        std::thread::sleep(POLL * 3);
        assert_eq!(keys.down_bits(), 0);
    }
}
