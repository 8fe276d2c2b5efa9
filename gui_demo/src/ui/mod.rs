//! Drawing. Every function here reads the model and returns what the user asked for; none of them
//! talks to the network or waits.
//!
//! Layout of the main window: a status bar on top (connection, RTT or the retry countdown, overlay
//! and Disconnect / Cancel buttons), the channel tree on the left, audio controls on the right, the
//! chat in the middle, notices floating over the top of the chat (showing or dismissing them moves
//! nothing), and the diagnostics overlay as a floating window. Side panels scale with the window
//! so that the 640×420 minimum keeps the chat input and its buttons usable.

pub mod chat;
pub mod connect;
pub mod controls;
pub mod map;
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
    /// Restart the engine with the current settings (a device picked after the engine stopped;
    /// while it runs, devices switch live).
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
    let width = ui.ctx().content_rect().width();
    let now = ui.ctx().input(|i| i.time);
    egui::Panel::top("status").show(ui, |ui| {
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            // Buttons first (right-aligned, always visible); the status takes what is left.
            let live = session.state.is_live();
            let (text, tip) = if live {
                (
                    "Disconnect",
                    "Leave the relay and return to the connect screen",
                )
            } else {
                ("Cancel", "Stop trying and return to the connect screen")
            };
            if ui.button(text).on_hover_text(tip).clicked() {
                action = Action::Disconnect;
            }
            ui.toggle_value(&mut settings.overlay_open, "Diagnostics (F3)");
            ui.with_layout(egui::Layout::left_to_right(egui::Align::Center), |ui| {
                status_line(ui, session, now);
            });
        });
    });
    // Side panels scale with the window so the chat keeps room at the 640 px minimum.
    egui::Panel::left("tree")
        .default_size((width * 0.22).clamp(130.0, 240.0))
        .min_size(110.0)
        .resizable(true)
        .show(ui, |ui| tree::show(ui, session, settings));
    egui::Panel::right("controls")
        .default_size((width * 0.28).clamp(170.0, 260.0))
        .min_size(150.0)
        .resizable(true)
        .show(ui, |ui| {
            if controls::show(ui, session, settings, devices) {
                action = Action::Reconnect;
            }
            map::show(ui, session);
        });
    let central = egui::CentralPanel::default()
        .show(ui, |ui| chat::show(ui, session, settings))
        .response
        .rect;
    notice_banner(ui.ctx(), central, session);
    overlay::show(ui.ctx(), session, &mut settings.overlay_open);
    action
}

/// A small filled circle (status and speaking indicators; no emoji font needed).
pub fn dot(ui: &mut egui::Ui, colour: Color32) {
    let (rect, _) = ui.allocate_exact_size(egui::vec2(10.0, 10.0), egui::Sense::hover());
    ui.painter().circle_filled(rect.center(), 4.5, colour);
}

/// A small padlock (end-to-end encrypted audio; drawn, no emoji font needed). Returns its response
/// so a tooltip (the safety number) can be attached.
pub fn lock(ui: &mut egui::Ui, colour: Color32) -> egui::Response {
    let (rect, r) = ui.allocate_exact_size(egui::vec2(10.0, 12.0), egui::Sense::hover());
    let p = ui.painter();
    let body = egui::Rect::from_min_max(
        egui::pos2(rect.left() + 1.0, rect.top() + 5.5),
        egui::pos2(rect.right() - 1.0, rect.bottom() - 0.5),
    );
    p.circle_stroke(
        egui::pos2(rect.center().x, rect.top() + 5.0),
        3.0,
        egui::Stroke::new(1.5, colour),
    );
    p.rect_filled(body, 1.0, colour);
    r
}

/// A disconnect reason in plain words: "Connection refused (os error 111)" without the engine's
/// "connect to … failed: " preamble and retry suffix.
pub fn plain_reason(reason: &str) -> String {
    let (why, _) = crate::state::split_retry(reason);
    let why = match why.split_once(" failed: ") {
        Some((head, tail)) if head.starts_with("connect to ") => tail,
        _ => why,
    };
    why.trim_end_matches(" (os error 111)").to_string()
}

fn status_line(ui: &mut egui::Ui, session: &Session, now: f64) {
    let s = &session.state;
    let server = session.backend.server();
    let text = match &s.status {
        Status::Connecting => {
            // A dot and a seconds counter, not a spinner: a spinner redraws the window at full
            // frame rate for as long as the operating system takes to give up on a silent host.
            dot(ui, ui.visuals().weak_text_color());
            let waited = session.started.map_or(0.0, |t0| (now - t0).max(0.0));
            format!("Connecting to {server}… {waited:.0} s")
        }
        Status::Connected { udp } => {
            dot(ui, SPEAKING);
            let mut t = format!(
                "{} on {server}{}",
                s.my_name,
                if *udp { "" } else { " (voice path pending)" }
            );
            if s.voice_path == Some(voice_client::VoicePath::Tunnel) {
                t.push_str("  ·  voice via TCP (UDP blocked)");
            }
            if let Some(ms) = s.rtt_ms {
                t.push_str(&format!("  ·  ping {ms:.1} ms"));
            }
            if let Some(ch) = s.my_channel {
                t.push_str(&format!("  ·  #{}", s.channel_name(ch)));
            }
            t
        }
        Status::Disconnected { reason } => {
            dot(ui, WARN);
            // The countdown first: at 640 px the end of the line is cut off.
            let why = plain_reason(reason);
            match session.retry_at {
                Some(at) => {
                    let left = (at - now).max(0.0).ceil();
                    format!(
                        "Retry {} in {left:.0} s · cannot reach {server}: {why}",
                        session.attempts + 1
                    )
                }
                None => format!("Not connected · cannot reach {server}: {why}"),
            }
        }
    };
    ui.add(egui::Label::new(text.as_str()).truncate())
        .on_hover_text(text);
}

/// Unseen notices as a floating box over the top of the chat: showing or dismissing it moves
/// nothing else.
fn notice_banner(ctx: &egui::Context, over: egui::Rect, session: &mut Session) {
    let n = session.state.notices.len();
    if n <= session.notices_seen {
        return;
    }
    let unseen = session.state.notices[session.notices_seen..].to_vec();
    let width = (over.width() - 16.0).max(120.0);
    egui::Area::new(egui::Id::unique("notice_banner"))
        .order(egui::Order::Foreground)
        .fixed_pos(over.left_top() + egui::vec2(8.0, 36.0))
        .show(ctx, |ui| {
            egui::Frame::popup(ui.style())
                .fill(ui.visuals().window_fill)
                .stroke((1.0, WARN))
                .inner_margin(6.0)
                .show(ui, |ui| {
                    ui.set_width(width - 12.0);
                    ui.horizontal_top(|ui| {
                        let text_w = (ui.available_width() - 70.0).max(60.0);
                        ui.vertical(|ui| {
                            ui.set_max_width(text_w);
                            for text in &unseen {
                                ui.add(egui::Label::new(RichText::new(text).color(WARN)).wrap());
                            }
                        });
                        if ui.button("Dismiss").clicked() {
                            session.notices_seen = n;
                        }
                    });
                });
        });
}
