//! Drawing. Every function here reads the model and returns what the user asked for; none of them
//! talks to the network or waits.
//!
//! Layout of the main window: a status bar on top (connection, RTT, overlay and disconnect buttons)
//! with a notice banner under it, the channel tree on the left, audio controls on the right, the
//! chat in the middle, and the diagnostics overlay as a floating window.

pub mod chat;
pub mod connect;
pub mod controls;
pub mod overlay;
pub mod tree;

use egui::{Color32, RichText};

use crate::app::Session;
use crate::settings::Settings;
use crate::state::Status;

/// A request from the UI that the app carries out after drawing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing.
    None,
    /// Validate the connect form and connect.
    Connect,
    /// Back to the connect screen.
    Disconnect,
    /// Restart the engine with the current settings (audio device change).
    Reconnect,
}

/// Colour of "speaking" indicators.
pub const SPEAKING: Color32 = Color32::from_rgb(80, 200, 90);
/// Colour of "whispering" indicators.
pub const WHISPER: Color32 = Color32::from_rgb(230, 160, 40);
/// Colour of warnings.
pub const WARN: Color32 = Color32::from_rgb(235, 120, 60);

/// Draws the main window.
pub fn main_window(
    ui: &mut egui::Ui,
    session: &mut Session,
    settings: &mut Settings,
    devices: Option<&(Vec<String>, Vec<String>)>,
) -> Action {
    let mut action = Action::None;
    egui::Panel::top("status").show(ui, |ui| {
        ui.horizontal(|ui| {
            status_line(ui, session);
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                if ui.button("Disconnect").clicked() {
                    action = Action::Disconnect;
                }
                ui.toggle_value(&mut settings.overlay_open, "Diagnostics (F3)");
            });
        });
        notice_banner(ui, session);
    });
    egui::Panel::left("tree")
        .default_size(240.0)
        .resizable(true)
        .show(ui, |ui| tree::show(ui, session, settings));
    egui::Panel::right("controls")
        .default_size(260.0)
        .resizable(true)
        .show(ui, |ui| {
            if controls::show(ui, session, settings, devices) {
                action = Action::Reconnect;
            }
        });
    egui::CentralPanel::default().show(ui, |ui| chat::show(ui, session, settings));
    overlay::show(ui.ctx(), session, &mut settings.overlay_open);
    action
}

/// A small filled circle (status and speaking indicators; no emoji font needed).
pub fn dot(ui: &mut egui::Ui, colour: Color32) {
    let (rect, _) = ui.allocate_exact_size(egui::vec2(10.0, 10.0), egui::Sense::hover());
    ui.painter().circle_filled(rect.center(), 4.5, colour);
}

fn status_line(ui: &mut egui::Ui, session: &Session) {
    let s = &session.state;
    match &s.status {
        Status::Connecting => {
            ui.spinner();
            ui.label(format!("Connecting to {}…", session.backend.server()));
        }
        Status::Connected { udp } => {
            dot(ui, SPEAKING);
            ui.label(format!(
                "{} on {}{}",
                s.my_name,
                session.backend.server(),
                if *udp { "" } else { " (voice path pending)" }
            ));
        }
        Status::Disconnected { reason } => {
            dot(ui, WARN);
            ui.label(format!("Disconnected ({reason}); reconnecting…"));
        }
    }
    if let Some(ms) = s.rtt_ms {
        ui.separator();
        ui.label(format!("ping {ms:.1} ms"));
    }
    if let Some(ch) = s.my_channel {
        ui.separator();
        ui.label(format!("#{}", s.channel_name(ch)));
    }
}

fn notice_banner(ui: &mut egui::Ui, session: &mut Session) {
    let n = session.state.notices.len();
    if n <= session.notices_seen {
        return;
    }
    let unseen = session.state.notices[session.notices_seen..].to_vec();
    egui::Frame::new()
        .fill(ui.visuals().warn_fg_color.gamma_multiply(0.15))
        .inner_margin(6.0)
        .corner_radius(4.0)
        .show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.vertical(|ui| {
                    for text in &unseen {
                        ui.horizontal_wrapped(|ui| {
                            ui.label(RichText::new("Notice:").color(WARN).strong());
                            ui.label(RichText::new(text).strong());
                        });
                    }
                });
                if ui.small_button("Dismiss").clicked() {
                    session.notices_seen = n;
                }
            });
        });
}
