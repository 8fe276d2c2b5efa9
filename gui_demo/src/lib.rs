//! `gui_demo`: an egui/eframe client for the voice engine.
//!
//! Shape (after egui's demo app and eframe_template): the model ([`state`], [`history`],
//! [`settings`]) is separate from drawing ([`ui`]); [`app::GuiApp`] glues them and is the
//! [`eframe::App`]. The engine is reached only through [`backend::Backend`]: its events and
//! statistics arrive on channels and are applied once per frame, so the UI never blocks on the
//! network, and tests drive the real UI with [`backend::StubBackend`] and synthetic events.
//!
//! Run it with `cargo run --release -p gui_demo` (see [`cli::USAGE`] for flags).

pub mod app;
pub mod backend;
pub mod cli;
pub mod global_keys;
pub mod history;
pub mod mic_test;
pub mod settings;
pub mod state;
pub mod ui;

pub use app::{ConnectRequest, Connector, GuiApp};

/// Helpers shared by the unit tests.
#[cfg(test)]
pub(crate) mod test_util {
    /// Waits until `what` holds, up to 5 s (the machine may be busy); false if it never did.
    pub fn wait_for(what: impl Fn() -> bool) -> bool {
        for _ in 0..1000 {
            if what() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        false
    }
}
