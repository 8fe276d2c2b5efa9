//! The diagnostics overlay (F3 or the status-bar button): relay address and session token, TCP
//! ping, and per sender the jitter-buffer depth, loss % over the last 10 s, late and concealed
//! frames and FEC recoveries, as numbers and plotted over the last minute.

use egui::RichText;
use egui_plot::{Corner, Legend, Line, Plot, PlotPoints};

use crate::app::Session;
use crate::history::{Series, WINDOW_S};

/// The overlay window's title (tests look for it).
pub const TITLE: &str = "Diagnostics";

/// Draws the overlay if `open`; its close button clears `open`.
pub fn show(ctx: &egui::Context, session: &Session, open: &mut bool) {
    if !*open {
        return;
    }
    let now = ctx.input(|i| i.time);
    // Docked by default over the right-hand side, so the tree and the chat stay visible.
    let screen = ctx.content_rect();
    egui::Window::new(TITLE)
        .open(open)
        .pivot(egui::Align2::RIGHT_TOP)
        .default_pos([screen.right() - 8.0, screen.top() + 36.0])
        .default_size([600.0, (screen.height() - 60.0).max(300.0)])
        .resizable(true)
        .show(ctx, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| {
                summary(ui, session);
                ui.separator();
                senders_table(ui, session);
                ui.separator();
                plots(ui, session, now);
            });
        });
}

fn summary(ui: &mut egui::Ui, session: &Session) {
    let st = &session.state;
    let latest = session.history.latest.as_ref();
    egui::Grid::new("diag_summary")
        .num_columns(4)
        .spacing([16.0, 2.0])
        .show(ui, |ui| {
            ui.label("Relay");
            ui.monospace(session.backend.server());
            ui.label("Session token");
            ui.monospace(st.me.map_or("-".into(), |s| s.0.to_string()));
            ui.end_row();
            ui.label("TCP ping");
            let rtt = latest.and_then(|s| s.rtt_ms).or(st.rtt_ms);
            ui.monospace(rtt.map_or("-".into(), |ms| format!("{ms:.1} ms")));
            ui.label("UDP ping");
            ui.monospace(
                latest
                    .and_then(|s| s.udp_rtt_ms)
                    .map_or("-".into(), |ms| format!("{ms:.1} ms")),
            );
            ui.end_row();
            if let Some(s) = latest {
                ui.label("Sent");
                ui.monospace(format!("{} pkts, {} B", s.tx_packets, s.tx_bytes));
                ui.label("Received");
                ui.monospace(format!("{} pkts ({} bad)", s.rx_packets, s.rx_malformed));
                ui.end_row();
                ui.label("Voice path");
                ui.monospace(if s.udp_ready { "UDP bound" } else { "pending" });
                ui.label("FEC loss hint");
                ui.monospace(format!("{} %", s.encoder_loss_hint));
                ui.end_row();
            }
        });
}

fn senders_table(ui: &mut egui::Ui, session: &Session) {
    let Some(latest) = session.history.latest.as_ref() else {
        ui.weak("Waiting for engine statistics…");
        return;
    };
    if latest.remotes.is_empty() {
        ui.weak("Nobody has sent voice yet.");
        return;
    }
    egui::Grid::new("diag_senders")
        .striped(true)
        .num_columns(8)
        .spacing([12.0, 2.0])
        .show(ui, |ui| {
            for h in [
                "sender",
                "depth",
                "loss 10s",
                "jitter",
                "late",
                "concealed",
                "FEC",
                "received",
            ] {
                ui.label(RichText::new(h).strong());
            }
            ui.end_row();
            for r in &latest.remotes {
                let s = &r.stream;
                let name = if r.name.is_empty() {
                    format!("#{}", r.session.0)
                } else {
                    r.name.clone()
                };
                ui.label(if r.speaking {
                    RichText::new(name).color(crate::ui::SPEAKING)
                } else {
                    RichText::new(name)
                });
                ui.monospace(s.buffer_depth.to_string());
                ui.monospace(format!("{:.1} %", s.loss_percent_10s));
                ui.monospace(format!("{:.1} ms", s.jitter_ms));
                ui.monospace(s.packets_late.to_string());
                ui.monospace(s.frames_concealed.to_string());
                ui.monospace(s.frames_fec_recovered.to_string());
                ui.monospace(s.packets_received.to_string());
                ui.end_row();
            }
        });
}

fn points(series: &Series, now: f64) -> PlotPoints<'static> {
    series.iter().map(|[t, v]| [t - now, *v]).collect()
}

fn plot(ui: &mut egui::Ui, id: &str, y_label: &str, lines: Vec<(String, PlotPoints<'static>)>) {
    ui.label(RichText::new(id).strong());
    // Room for the legend: one row per line (click an entry to hide it).
    let height = (lines.len() as f32 * 18.0 + 20.0).max(105.0);
    Plot::new(id)
        .height(height)
        .legend(Legend::default().position(Corner::LeftTop))
        .include_x(-WINDOW_S)
        .include_x(0.0)
        .include_y(0.0)
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .x_axis_label("seconds ago")
        .y_axis_label(y_label)
        .show(ui, |p| {
            for (name, pts) in lines {
                p.line(Line::new(name, pts));
            }
        });
}

fn plots(ui: &mut egui::Ui, session: &Session, now: f64) {
    let h = &session.history;
    plot(
        ui,
        "TCP ping",
        "ms",
        vec![("rtt".into(), points(&h.rtt_ms, now))],
    );
    let per_sender = |f: &dyn Fn(&crate::history::SenderSeries) -> &Series| {
        h.senders
            .values()
            .map(|s| (s.name.clone(), points(f(s), now)))
            .collect::<Vec<_>>()
    };
    plot(
        ui,
        "Jitter-buffer depth",
        "packets",
        per_sender(&|s| &s.depth),
    );
    plot(ui, "Loss over 10 s", "%", per_sender(&|s| &s.loss_percent));
    let mut events = Vec::new();
    for s in h.senders.values() {
        events.push((format!("{} late", s.name), points(&s.late_per_s, now)));
        events.push((
            format!("{} concealed", s.name),
            points(&s.concealed_per_s, now),
        ));
        events.push((format!("{} FEC", s.name), points(&s.fec_per_s, now)));
    }
    plot(
        ui,
        "Late / concealed / FEC-recovered frames",
        "per s",
        events,
    );
}
