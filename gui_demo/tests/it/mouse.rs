//! Push-to-talk on a mouse button (issue 19: "mouse buttons", set by pressing them): set in the
//! controls panel by pressing the button, talking from inside the window and, through the
//! keys thread, from anywhere on the screen. The last test runs the thread against a real X
//! server (Xvfb) with button presses made through XTEST, which `scripts/install-deps.sh`
//! installs (xvfb, libxtst6, libxi6), so the test command and CI run it.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use egui::PointerButton;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use gui_demo::backend::Request;
use gui_demo::global_keys::{Binding, GlobalKeys, KeySource, MOUSE_BACK, MOUSE_FORWARD, PTT};
use gui_demo::GuiApp;

/// Presses or releases `button` over the middle of the window's lower part (not on a button).
fn pointer(h: &mut Harness<'static, GuiApp>, button: PointerButton, pressed: bool) {
    let pos = egui::pos2(600.0, 780.0);
    let events = &mut h.input_mut().events;
    events.push(egui::Event::PointerMoved(pos));
    events.push(egui::Event::PointerButton {
        pos,
        button,
        pressed,
        modifiers: egui::Modifiers::NONE,
    });
    h.run();
}

#[test]
fn a_mouse_button_is_set_by_pressing_it_and_talks() {
    let (mut h, handle) = connected();
    set_talk_key(&mut h);
    assert_eq!(
        h.state().session().unwrap().capturing,
        Some(gui_demo::app::KeyRole::Talk)
    );
    // A left click elsewhere is not a binding: it cancels, as before.
    pointer(&mut h, PointerButton::Primary, true);
    pointer(&mut h, PointerButton::Primary, false);
    assert_eq!(h.state().session().unwrap().capturing, None);
    assert_eq!(h.state().settings.ptt_key, "V");
    set_talk_key(&mut h);
    pointer(&mut h, PointerButton::Extra1, true);
    assert_eq!(h.state().settings.ptt_key, "Mouse8");
    assert_eq!(h.state().settings.ptt(), Binding::Mouse(MOUSE_BACK));
    assert!(
        last_ptt(&handle).is_none(),
        "the press that set it does not talk"
    );
    pointer(&mut h, PointerButton::Extra1, false);
    assert_eq!(
        gui_demo::ui::controls::binding_label(Binding::Mouse(MOUSE_BACK)),
        "Mouse back"
    );
    // Pressed again, it talks; released, it stops.
    pointer(&mut h, PointerButton::Extra1, true);
    assert_eq!(last_ptt(&handle), Some(Request::PushToTalk(true)));
    pointer(&mut h, PointerButton::Extra1, false);
    assert_eq!(last_ptt(&handle), Some(Request::PushToTalk(false)));
    // Unlike a key, the button talks while the chat input has focus (typing is not clicking),
    // and the key V no longer does.
    h.get_by_label("To #Lobby").focus();
    h.run();
    h.key_down(egui::Key::V);
    h.run();
    assert_eq!(last_ptt(&handle), Some(Request::PushToTalk(false)));
    h.key_up(egui::Key::V);
    pointer(&mut h, PointerButton::Extra1, true);
    assert_eq!(last_ptt(&handle), Some(Request::PushToTalk(true)));
    pointer(&mut h, PointerButton::Extra1, false);
    // The whisper menu names the button it is held on.
    h.state_mut().settings.whisper_key = Binding::Mouse(MOUSE_FORWARD).name();
    h.get_by_label("carol").click_secondary();
    h.run();
    h.get_by_label("Whisper while holding Mouse forward");
}

/// A mouse for the keys thread whose button events the test queues, standing in for the X
/// server; it records whether the thread follows the buttons.
struct Clicks {
    queue: Arc<Mutex<Vec<(u8, bool)>>>,
    following: Arc<Mutex<bool>>,
}

impl KeySource for Clicks {
    fn keycode(&mut self, _keysym: u32) -> Option<u8> {
        None
    }

    fn keymap(&mut self) -> Option<[u8; 32]> {
        Some([0; 32])
    }

    fn follow_buttons(&mut self, on: bool) -> Result<(), String> {
        *self.following.lock().map_err(|e| e.to_string())? = on;
        Ok(())
    }

    fn buttons(&mut self, wait: Duration) -> Option<Vec<(u8, bool)>> {
        std::thread::sleep(wait.min(Duration::from_millis(5)));
        Some(std::mem::take(&mut *self.queue.lock().ok()?))
    }
}

#[test]
fn a_mouse_button_talks_from_anywhere_on_the_screen() {
    let queue = Arc::new(Mutex::new(Vec::new()));
    let following = Arc::new(Mutex::new(false));
    let (mut app, handle, _) = app("me");
    app.settings.ptt_key = Binding::Mouse(MOUSE_BACK).name();
    app.set_global_keys(Ok(GlobalKeys::start(
        Box::new(Clicks {
            queue: queue.clone(),
            following: following.clone(),
        }),
        || {},
    )
    .expect("keys thread")));
    let mut h = harness(app);
    // Not connected: nothing followed.
    h.run_steps(3);
    std::thread::sleep(Duration::from_millis(250));
    assert!(!*following.lock().unwrap());
    h.get_by_label("Connect").click();
    h.run_steps(2);
    welcome(&mut h, &handle, 1, vec![]);
    // Our window has the keyboard focus, the pointer is over another one: the button still
    // talks (a key would reach our window; a button goes to the window under the pointer).
    frames_until(&mut h, |_| *following.lock().unwrap());
    assert!(*following.lock().unwrap(), "followed while connected");
    queue.lock().unwrap().push((MOUSE_BACK, true));
    frames_until(&mut h, |_| last_ptt(&handle).is_some());
    assert_eq!(last_ptt(&handle), Some(Request::PushToTalk(true)));
    queue.lock().unwrap().push((MOUSE_BACK, false));
    frames_until(&mut h, |_| {
        last_ptt(&handle) == Some(Request::PushToTalk(false))
    });
    assert_eq!(last_ptt(&handle), Some(Request::PushToTalk(false)));
    // Another window focused: the same.
    h.input_mut().focused = false;
    queue.lock().unwrap().push((MOUSE_BACK, true));
    frames_until(&mut h, |_| {
        last_ptt(&handle) == Some(Request::PushToTalk(true))
    });
    assert_eq!(last_ptt(&handle), Some(Request::PushToTalk(true)));
    queue.lock().unwrap().push((MOUSE_BACK, false));
    frames_until(&mut h, |_| {
        last_ptt(&handle) == Some(Request::PushToTalk(false))
    });
    // Other buttons do nothing.
    queue
        .lock()
        .unwrap()
        .extend([(1, true), (MOUSE_FORWARD, true), (1, false)]);
    std::thread::sleep(Duration::from_millis(100));
    h.run_steps(3);
    assert_eq!(last_ptt(&handle), Some(Request::PushToTalk(false)));
    // Switched off in the settings: no longer followed, and a press does nothing.
    h.state_mut().settings.global_keys = false;
    frames_until(&mut h, |_| !*following.lock().unwrap());
    assert!(!*following.lock().unwrap());
    queue.lock().unwrap().push((MOUSE_BACK, true));
    std::thread::sleep(Duration::from_millis(100));
    h.run_steps(3);
    assert_eq!(last_ptt(&handle), Some(Request::PushToTalk(false)));
}

/// Xvfb on a display of its own, killed when dropped.
struct Xvfb {
    child: std::process::Child,
    name: String,
}

impl Xvfb {
    fn start() -> Xvfb {
        // A display number unlikely to be taken by another test run or screenshot.sh (99).
        let n = 200 + std::process::id() % 500;
        let name = format!(":{n}");
        let child = std::process::Command::new("Xvfb")
            .args([
                name.as_str(),
                "-screen",
                "0",
                "320x240x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("Xvfb (scripts/install-deps.sh installs it)");
        let socket = format!("/tmp/.X11-unix/X{n}");
        for _ in 0..500 {
            if std::path::Path::new(&socket).exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Xvfb { child, name }
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Presses or releases X button `button` through XTEST, as a second client would.
struct FakeMouse {
    xlib: x11_dl::xlib::Xlib,
    xtst: x11_dl::xtest::Xf86vmode,
    display: *mut x11_dl::xlib::Display,
}

impl FakeMouse {
    fn open(name: &str) -> FakeMouse {
        let xlib = x11_dl::xlib::Xlib::open().expect("libX11");
        let xtst = x11_dl::xtest::Xf86vmode::open().expect("libXtst");
        let c_name = std::ffi::CString::new(name).unwrap();
        let mut display = std::ptr::null_mut();
        for _ in 0..250 {
            // SAFETY: a NUL-terminated name; a null result is retried (Xvfb still starting).
            display = unsafe { (xlib.XOpenDisplay)(c_name.as_ptr()) };
            if !display.is_null() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!display.is_null(), "cannot open {name}");
        FakeMouse {
            xlib,
            xtst,
            display,
        }
    }

    fn button(&self, button: u32, pressed: bool) {
        // SAFETY: `display` is live and used by this thread only.
        unsafe {
            (self.xtst.XTestFakeButtonEvent)(self.display, button, i32::from(pressed), 0);
            (self.xlib.XSync)(self.display, 0);
        }
    }
}

impl Drop for FakeMouse {
    fn drop(&mut self) {
        // SAFETY: opened in `open`, closed once.
        unsafe { (self.xlib.XCloseDisplay)(self.display) };
    }
}

#[test]
fn a_real_x_server_reports_the_back_button_to_the_keys_thread() {
    let x = Xvfb::start();
    let mouse = FakeMouse::open(&x.name);
    let keys = GlobalKeys::start_x11_on(Some(&x.name), || {}).expect("connects to Xvfb");
    assert_eq!(keys.buttons_unavailable(), None, "XInput 2 on Xvfb");
    keys.watch(Some(Binding::Mouse(MOUSE_BACK)), None);
    // The thread selects the raw button events within one idle poll (100 ms).
    std::thread::sleep(Duration::from_millis(300));
    mouse.button(u32::from(MOUSE_BACK), true);
    assert!(wait_for(|| keys.down_bits() == PTT), "press seen");
    mouse.button(u32::from(MOUSE_BACK), false);
    assert!(wait_for(|| keys.down_bits() == 0), "release seen");
    // Another button, and the left one, do not talk.
    mouse.button(u32::from(MOUSE_FORWARD), true);
    mouse.button(1, true);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(keys.down_bits(), 0);
    mouse.button(1, false);
    mouse.button(u32::from(MOUSE_FORWARD), false);
    // Not watched: a press is not followed.
    keys.watch(None, None);
    std::thread::sleep(Duration::from_millis(300));
    mouse.button(u32::from(MOUSE_BACK), true);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(keys.down_bits(), 0);
    mouse.button(u32::from(MOUSE_BACK), false);
    drop(keys);
}
