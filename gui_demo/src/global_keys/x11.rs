//! The X11 source of [`super::GlobalKeys`]: the X server's keyboard state (`XQueryKeymap`,
//! polled) and raw mouse button events (XInput 2.2), on a display connection of its own.
//!
//! libX11 and libXi are loaded at run time by `x11-dl`, as winit does, so the binary runs
//! without them (and says why the keys then need the window's focus).

use std::time::Duration;

use super::KeySource;

/// The X server's keyboard and mouse buttons, through a display connection of its own (libX11,
/// and libXi for the buttons, loaded at run time by `x11-dl`, as winit does).
pub(super) struct X11Source {
    xlib: x11_dl::xlib::Xlib,
    display: *mut x11_dl::xlib::Display,
    /// XInput 2 and its major opcode, or why the buttons cannot be followed.
    pub(super) xi: Result<(x11_dl::xinput2::XInput2, i32), String>,
}

// SAFETY: the display connection is opened by `start_x11`, then used (and closed) only by the one
// thread that owns the source; Xlib allows a connection to move between threads as long as it is
// not used from two at once.
unsafe impl Send for X11Source {}

impl X11Source {
    /// Connects to display `name` (`None`: `$DISPLAY`).
    pub(super) fn open(name: Option<&str>) -> Result<Self, String> {
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
        let xi = Self::xinput(&xlib, display);
        Ok(X11Source { xlib, display, xi })
    }

    /// XInput 2.2 on `display`, with the extension's opcode (raw events arrive as generic
    /// events carrying it).
    fn xinput(
        xlib: &x11_dl::xlib::Xlib,
        display: *mut x11_dl::xlib::Display,
    ) -> Result<(x11_dl::xinput2::XInput2, i32), String> {
        let xi = x11_dl::xinput2::XInput2::open().map_err(|e| format!("no libXi ({e})"))?;
        let (mut opcode, mut event, mut error) = (0, 0, 0);
        // SAFETY: `display` is live; the name is NUL-terminated; the out-pointers are valid.
        let present = unsafe {
            (xlib.XQueryExtension)(
                display,
                c"XInputExtension".as_ptr(),
                &mut opcode,
                &mut event,
                &mut error,
            )
        };
        if present == 0 {
            return Err("the X server has no XInput extension".into());
        }
        // 2.2: raw events reach every client selecting them, also while another one grabs.
        let (mut major, mut minor) = (2, 2);
        // SAFETY: `display` is live; the version pointers are valid.
        let status = unsafe { (xi.XIQueryVersion)(display, &mut major, &mut minor) };
        if status != 0 || (major, minor) < (2, 1) {
            return Err(format!("XInput {major}.{minor} (2.1 needed)"));
        }
        Ok((xi, opcode))
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

    fn follow_buttons(&mut self, on: bool) -> Result<(), String> {
        use x11_dl::xinput2 as xi2;
        let (xi, _) = self.xi.as_ref().map_err(Clone::clone)?;
        // Room for every XI2 event type's bit (XIMaskLen(XI_LASTEVENT)).
        let mut mask = [0u8; 4];
        if on {
            xi2::XISetMask(&mut mask, xi2::XI_RawButtonPress);
            xi2::XISetMask(&mut mask, xi2::XI_RawButtonRelease);
        }
        let mut select = xi2::XIEventMask {
            deviceid: xi2::XIAllMasterDevices,
            mask_len: mask.len() as i32,
            mask: mask.as_mut_ptr(),
        };
        // SAFETY: `display` is live; `select` points at `mask`, which outlives the calls; an
        // all-zero mask removes the selection.
        unsafe {
            let root = (self.xlib.XDefaultRootWindow)(self.display);
            (xi.XISelectEvents)(self.display, root, &mut select, 1);
            (self.xlib.XFlush)(self.display);
        }
        Ok(())
    }

    fn buttons(&mut self, wait: Duration) -> Option<Vec<(u8, bool)>> {
        use x11_dl::{xinput2 as xi2, xlib};
        let Ok((_, opcode)) = &self.xi else {
            std::thread::sleep(wait);
            return Some(Vec::new());
        };
        let mut out = Vec::new();
        // SAFETY: `display` is live and used by this thread only; every event read is a full
        // XEvent; a generic event's data is read only after XGetEventData succeeded for it and
        // freed once; an XI_RawButton* event's data is an XIRawEvent.
        unsafe {
            if (self.xlib.XPending)(self.display) == 0 {
                let mut fd = libc::pollfd {
                    fd: (self.xlib.XConnectionNumber)(self.display),
                    events: libc::POLLIN,
                    revents: 0,
                };
                let ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
                libc::poll(&mut fd, 1, ms);
            }
            while (self.xlib.XPending)(self.display) > 0 {
                let mut ev: xlib::XEvent = std::mem::zeroed();
                (self.xlib.XNextEvent)(self.display, &mut ev);
                if ev.get_type() != xlib::GenericEvent {
                    continue;
                }
                let mut cookie = ev.generic_event_cookie;
                if cookie.extension != *opcode
                    || (self.xlib.XGetEventData)(self.display, &mut cookie) == 0
                {
                    continue;
                }
                let pressed = match cookie.evtype {
                    xi2::XI_RawButtonPress => Some(true),
                    xi2::XI_RawButtonRelease => Some(false),
                    _ => None,
                };
                if let Some(pressed) = pressed {
                    let raw = &*(cookie.data as *const xi2::XIRawEvent);
                    if let Ok(b) = u8::try_from(raw.detail) {
                        out.push((b, pressed));
                    }
                }
                (self.xlib.XFreeEventData)(self.display, &mut cookie);
            }
        }
        Some(out)
    }
}

impl Drop for X11Source {
    fn drop(&mut self) {
        // SAFETY: opened in `open`, closed once, here.
        unsafe { (self.xlib.XCloseDisplay)(self.display) };
    }
}
