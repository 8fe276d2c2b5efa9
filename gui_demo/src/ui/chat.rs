//! The chat: the log (sender, local time, channel), scoping to our channel or all channels, and the
//! input line that sends to our channel.
//!
//! Each line is one wrapped text layout, so a long word breaks inside the panel instead of
//! running past its edge. Our own lines show our name in the accent colour, lines that mention
//! our name are highlighted, and `http(s)://` links in a line open on click. The row above the
//! input always has the same height (target channel, or the whisper hint), so the input never
//! moves.

use egui::text::{LayoutJob, TextFormat};
use egui::{Color32, FontId, RichText};

use crate::app::Session;
use crate::backend::Request;
use crate::settings::Settings;
use crate::state::ChatLine;
use crate::ui::WHISPER;

/// Background of lines that mention us.
pub const MENTION_BG: Color32 = Color32::from_rgba_premultiplied(90, 70, 10, 90);
/// Colour of our own name in the log.
pub const OWN: Color32 = Color32::from_rgb(110, 170, 255);

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
    // What is on screen is read.
    if all {
        session.state.mark_read(None);
    } else if let Some(ch) = scope {
        session.state.mark_read(Some(ch));
    }
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

/// The `http://` and `https://` links in a text, as byte ranges.
pub fn links(text: &str) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(pos) = ["http://", "https://"]
        .iter()
        .filter_map(|p| text[from..].find(p).map(|i| from + i))
        .min()
    {
        let end = text[pos..]
            .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"'))
            .map_or(text.len(), |i| pos + i);
        // A sentence's full stop or closing bracket is not part of the link.
        let trimmed = text[pos..end].trim_end_matches(['.', ',', ')', ';', ':', '!', '?']);
        out.push(pos..pos + trimmed.len());
        from = end;
    }
    out
}

pub use crate::state::mentions;

fn chat_line(ui: &mut egui::Ui, session: &Session, line: &ChatLine, show_channel: bool) {
    let v = ui.visuals();
    let font = FontId::proportional(14.0);
    let plain = TextFormat::simple(font.clone(), v.text_color());
    let weak = TextFormat::simple(font.clone(), v.weak_text_color());
    let mut job = LayoutJob::default();
    job.append(&format_time(line.unix_ms), 0.0, weak.clone());
    let mut link_ranges = Vec::new();
    if line.is_system() {
        let mut f = weak.clone();
        f.italics = true;
        job.append(&format!(" {}", line.text), 0.0, f);
    } else {
        if show_channel {
            if let Some(ch) = line.channel {
                let name = format!(" #{}", session.state.channel_name(ch));
                job.append(&name, 0.0, weak.clone());
            }
        }
        let who = TextFormat::simple(
            font.clone(),
            if line.own { OWN } else { v.strong_text_color() },
        );
        job.append(&format!(" {}: ", line.from), 0.0, who);
        let mut body = plain.clone();
        if !line.own && mentions(&line.text, &session.state.my_name) {
            body.background = MENTION_BG;
        }
        let mut at = 0;
        let link_fmt = TextFormat {
            color: v.hyperlink_color,
            underline: egui::Stroke::new(1.0, v.hyperlink_color),
            ..body.clone()
        };
        for r in links(&line.text) {
            job.append(&line.text[at..r.start], 0.0, body.clone());
            let s = job.text.len();
            job.append(&line.text[r.clone()], 0.0, link_fmt.clone());
            link_ranges.push((s..job.text.len(), line.text[r.clone()].to_string()));
            at = r.end;
        }
        job.append(&line.text[at..], 0.0, body);
    }
    job.wrap.max_width = ui.available_width();
    let label = egui::Label::new(job).wrap().sense(egui::Sense::click());
    let (pos, galley, r) = label.layout_in_ui(ui);
    let text = galley.text().to_string();
    r.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Label, true, &text));
    if ui.is_rect_visible(r.rect) {
        ui.painter().galley(pos, galley.clone(), v_text(ui));
    }
    if link_ranges.is_empty() {
        return;
    }
    let hit = r.hover_pos().and_then(|p| {
        let byte = char_to_byte(&galley.job.text, galley.cursor_from_pos(p - pos).index.0);
        link_ranges.iter().find(|(range, _)| range.contains(&byte))
    });
    if let Some((_, url)) = hit {
        ui.ctx().set_cursor_icon(egui::CursorIcon::PointingHand);
        if r.clicked() {
            ui.ctx().open_url(egui::OpenUrl::new_tab(url));
        }
    }
}

fn v_text(ui: &egui::Ui) -> Color32 {
    ui.visuals().text_color()
}

fn char_to_byte(text: &str, chars: usize) -> usize {
    text.char_indices()
        .nth(chars)
        .map_or(text.len(), |(b, _)| b)
}

fn input_line(ui: &mut egui::Ui, session: &mut Session) {
    let (target, hint) = match session.state.my_channel {
        Some(ch) => (
            format!("To #{}", session.state.channel_name(ch)),
            "Type a message, Enter sends",
        ),
        None => ("Not in a channel".to_string(), "Join a channel to chat"),
    };
    // One row of fixed height above the input: the target, and the whisper hint beside it when
    // whispering (it never pushes the input down).
    let whisper = session
        .whisper_target()
        .map(|t| session.state.display_name(t));
    // Widths come from the panel, not from what the rows above happened to take.
    let full = ui.available_width();
    let l = ui
        .horizontal(|ui| {
            ui.set_height(18.0);
            ui.set_max_width(full);
            let l = ui.add(egui::Label::new(RichText::new(target).small()).truncate());
            if let Some(name) = whisper {
                ui.add(
                    egui::Label::new(
                        RichText::new(format!("voice: whisper to {name}"))
                            .small()
                            .color(WHISPER),
                    )
                    .truncate(),
                );
            }
            l
        })
        .inner;
    ui.horizontal(|ui| {
        let send_w = 56.0;
        let edit = egui::TextEdit::singleline(&mut session.chat_input)
            .hint_text(hint)
            .desired_width((full - send_w).max(60.0));
        let r = ui.add(edit).labelled_by(l.id);
        let enter = r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        if (ui.button("Send").clicked() || enter) && !session.chat_input.trim().is_empty() {
            let text = std::mem::take(&mut session.chat_input);
            session.send(Request::Chat(text));
            r.request_focus();
        }
    });
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
