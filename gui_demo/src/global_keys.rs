//! Push-to-talk and whisper keys that work while the window is in the background (X11).
//!
//! A window only receives key events while it has the keyboard focus, so a talk key held while
//! a game or a browser has focus would do nothing. Like Mumble's X11 backend, a helper thread
//! (`gui-keys`) asks the X server for the physical state of the whole keyboard
//! (`XQueryKeymap`) every [`POLL`], on a display connection of its own, and looks at the key
//! codes of the configured keys (`XKeysymToKeycode`). It does so only while a key is needed
//! and the window does not have focus (connected, in push-to-talk mode or with a whisper
//! target); otherwise it makes no X requests. The state is published in an atomic; on a press
//! or release the thread asks egui for a frame, and the frame feeds it into the same
//! push-to-talk path as the in-window keys ([`crate::app::Session`]). Neither the audio path
//! nor the UI ever waits for this thread.
//!
//! Nothing is grabbed: the key still reaches the focused application (as in Mumble). When there
//! is no X display (Wayland without XWayland, a headless test, no libX11), [`GlobalKeys::start_x11`]
//! returns the reason and the keys work only while the window has focus; the controls panel says
//! so in one line. Under Wayland with XWayland the X server sees keys only while an X11 window
//! has focus: [`GlobalKeys::caveat`] says that.
//!
//! The key-name ↔ keysym table ([`keysym`], [`key_for_keysym`]) and the edge detector
//! ([`KeyEdges`]) are pure and tested without an X server; the thread is tested with a
//! scripted [`KeySource`].

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use egui::Key;
use x11_dl::keysym as ks;

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
}

/// The X server's keyboard, through a display connection of its own (libX11 loaded at run time
/// by `x11-dl`, as winit does).
struct X11Source {
    xlib: x11_dl::xlib::Xlib,
    display: *mut x11_dl::xlib::Display,
}

// SAFETY: the display connection is opened by `start_x11`, then used (and closed) only by the one
// thread that owns the source; Xlib allows a connection to move between threads as long as it is
// not used from two at once.
unsafe impl Send for X11Source {}

impl X11Source {
    /// Connects to display `name` (`None`: `$DISPLAY`).
    fn open(name: Option<&str>) -> Result<Self, String> {
        let shown = name
            .map(str::to_string)
            .or_else(|| std::env::var("DISPLAY").ok())
            .filter(|d| !d.is_empty());
        let Some(shown) = shown else {
            return Err("no X display".into());
        };
        let c_name = std::ffi::CString::new(shown.as_str())
            .map_err(|_| format!("bad X display name {shown:?}"))?;
        let xlib = x11_dl::xlib::Xlib::open().map_err(|e| format!("no libX11 ({e})"))?;
        // SAFETY: a NUL-terminated name that outlives the call; a null result (no server) is
        // handled.
        let display = unsafe { (xlib.XOpenDisplay)(c_name.as_ptr()) };
        if display.is_null() {
            return Err(format!("cannot open X display {shown}"));
        }
        Ok(X11Source { xlib, display })
    }
}

impl KeySource for X11Source {
    fn keycode(&mut self, keysym: u32) -> Option<u8> {
        // SAFETY: `display` is a live connection owned by this source.
        let code = unsafe { (self.xlib.XKeysymToKeycode)(self.display, keysym.into()) };
        (code != 0).then_some(code)
    }

    fn keymap(&mut self) -> Option<[u8; 32]> {
        let mut map = [0 as std::ffi::c_char; 32];
        // SAFETY: `display` is live; XQueryKeymap writes exactly 32 bytes.
        unsafe { (self.xlib.XQueryKeymap)(self.display, map.as_mut_ptr()) };
        Some(map.map(|b| b as u8))
    }
}

impl Drop for X11Source {
    fn drop(&mut self) {
        // SAFETY: opened in `open`, closed once, here.
        unsafe { (self.xlib.XCloseDisplay)(self.display) };
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

/// What the app and the thread share.
#[derive(Debug, Default)]
struct Shared {
    /// Keysyms watched (0: none).
    watch: [AtomicU32; 2],
    /// Bits of the watched keys that are down.
    down: AtomicU8,
    stop: AtomicBool,
}

/// The running `gui-keys` thread. Dropping it stops the thread.
pub struct GlobalKeys {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    caveat: Option<String>,
}

impl std::fmt::Debug for GlobalKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlobalKeys")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl GlobalKeys {
    /// Watches the X server's keyboard. `notify` is called (from the thread) on every press and
    /// release of a watched key. `Err` says why it cannot (no X display, no libX11): the keys
    /// then work only while the window has focus.
    pub fn start_x11(notify: impl Fn() + Send + 'static) -> Result<Self, String> {
        Self::start_x11_on(None, notify)
    }

    /// [`GlobalKeys::start_x11`] on display `name` (`None`: `$DISPLAY`), e.g. `":1"`.
    pub fn start_x11_on(
        name: Option<&str>,
        notify: impl Fn() + Send + 'static,
    ) -> Result<Self, String> {
        let source = X11Source::open(name)?;
        let mut keys = Self::start(Box::new(source), notify).map_err(|e| e.to_string())?;
        if std::env::var_os("WAYLAND_DISPLAY").is_some() {
            keys.caveat = Some(
                "Wayland: through XWayland, keys are seen only while an X11 window has focus"
                    .into(),
            );
        }
        Ok(keys)
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
            caveat: None,
        })
    }

    /// Sets the keys to watch (`None`: not needed now, e.g. not connected).
    pub fn watch(&self, ptt: Option<Key>, whisper: Option<Key>) {
        for (slot, key) in self.shared.watch.iter().zip([ptt, whisper]) {
            slot.store(key.and_then(keysym).unwrap_or(0), Ordering::Relaxed);
        }
    }

    /// Which watched keys are down ([`PTT`], [`WHISPER`] bits), as last sampled.
    pub fn down_bits(&self) -> u8 {
        self.shared.down.load(Ordering::Relaxed)
    }

    /// A limit worth telling the user (under Wayland), if any.
    pub fn caveat(&self) -> Option<&str> {
        self.caveat.as_deref()
    }

    /// False once the thread has ended (its source went away).
    pub fn running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for GlobalKeys {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // Ends within one `IDLE_POLL`.
            let _ = t.join();
        }
    }
}

fn poll_loop(source: &mut dyn KeySource, shared: &Shared, notify: &dyn Fn()) {
    let mut edges = KeyEdges::default();
    // The watched keysyms and their key codes.
    let mut mapped: [(u32, Option<u8>); 2] = [(0, None); 2];
    let mut polls = 0u32;
    while !shared.stop.load(Ordering::Relaxed) {
        let syms = [
            shared.watch[0].load(Ordering::Relaxed),
            shared.watch[1].load(Ordering::Relaxed),
        ];
        polls = polls.wrapping_add(1);
        let remap = polls.is_multiple_of(REMAP_EVERY);
        for (m, sym) in mapped.iter_mut().zip(syms) {
            if m.0 != sym || remap {
                *m = (sym, if sym == 0 { None } else { source.keycode(sym) });
            }
        }
        let now = if mapped.iter().all(|(_, c)| c.is_none()) {
            0
        } else {
            let Some(map) = source.keymap() else {
                break;
            };
            let bit = |(_, code): (u32, Option<u8>)| code.is_some_and(|c| is_down(&map, c));
            (u8::from(bit(mapped[0])) * PTT) | (u8::from(bit(mapped[1])) * WHISPER)
        };
        if edges.update(now) != 0 {
            shared.down.store(now, Ordering::Relaxed);
            notify();
        }
        std::thread::sleep(if syms == [0, 0] { IDLE_POLL } else { POLL });
    }
    // Nothing is held once nobody watches.
    shared.down.store(0, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// A keyboard whose key codes are keysym % 200 + 8 and whose held keys the test sets.
    struct Script {
        held: Arc<std::sync::Mutex<Vec<u32>>>,
        queries: Arc<AtomicU32>,
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
    }

    fn wait_for(what: impl Fn() -> bool) -> bool {
        // Up to 5 s: the machine may be busy.
        for _ in 0..2500 {
            if what() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        false
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
        keys.watch(Some(Key::V), Some(Key::B));
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
}
