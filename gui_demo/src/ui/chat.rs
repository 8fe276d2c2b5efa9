//! The chat: the log (sender, local time, channel), scoping to our channel or all channels, and the
//! input line that sends to our channel.

use egui::RichText;

use crate::app::Session;
use crate::backend::Request;
use crate::settings::Settings;
use crate::state::ChatLine;
use crate::ui::WHISPER;

/// Draws the chat.
pub fn show(ui: &mut egui::Ui, session: &mut Session, settings: &mut Settings) {
    ui.horizontal(|ui| {
        ui.heading("Chat");
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            ui.checkbox(&mut settings.chat_all_channels, "All channels");
        });
    });
    ui.separator();
    egui::Panel::bottom("chat_input").show(ui, |ui| input_line(ui, session));
    let scope = session.state.my_channel;
    let all = settings.chat_all_channels;
    egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .stick_to_bottom(true)
        .show(ui, |ui| {
            for line in &session.state.chat {
                if all || line.is_system() || line.channel == scope {
                    chat_line(ui, session, line, all);
                }
            }
        });
}

fn chat_line(ui: &mut egui::Ui, session: &Session, line: &ChatLine, show_channel: bool) {
    ui.horizontal_wrapped(|ui| {
        ui.weak(format_time(line.unix_ms));
        if line.is_system() {
            ui.label(RichText::new(&line.text).italics().weak());
            return;
        }
        if show_channel {
            if let Some(ch) = line.channel {
                ui.weak(format!("#{}", session.state.channel_name(ch)));
            }
        }
        ui.label(RichText::new(format!("{}:", line.from)).strong());
        ui.label(&line.text);
    });
}

fn input_line(ui: &mut egui::Ui, session: &mut Session) {
    let (target, hint) = match session.state.my_channel {
        Some(ch) => (
            format!("To #{}", session.state.channel_name(ch)),
            "Type a message, Enter sends",
        ),
        None => ("Not in a channel".to_string(), "Join a channel to chat"),
    };
    ui.horizontal(|ui| {
        let l = ui.label(target);
        let edit = egui::TextEdit::singleline(&mut session.chat_input)
            .hint_text(hint)
            .desired_width(ui.available_width() - 60.0);
        let r = ui.add(edit).labelled_by(l.id);
        let enter = r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        if (ui.button("Send").clicked() || enter) && !session.chat_input.trim().is_empty() {
            let text = std::mem::take(&mut session.chat_input);
            session.send(Request::Chat(text));
            r.request_focus();
        }
    });
    if let Some(t) = session.whisper_target() {
        let name = session.state.user_name(t).unwrap_or("?").to_string();
        ui.label(RichText::new(format!("Voice goes to {name} only (whisper)")).color(WHISPER));
    }
}

/// `HH:MM:SS` in local time.
pub fn format_time(unix_ms: u64) -> String {
    let secs = (unix_ms / 1000) as libc::time_t;
    // SAFETY: `localtime_r` only reads `secs` and writes the `tm` we own; it is the thread-safe
    // variant (no shared static buffer).
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&secs, &mut tm).is_null() {
            None
        } else {
            Some(tm)
        }
    };
    match tm {
        Some(tm) => format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec),
        None => {
            let s = unix_ms / 1000;
            format!(
                "{:02}:{:02}:{:02} UTC",
                (s / 3600) % 24,
                (s / 60) % 60,
                s % 60
            )
        }
    }
}
