//! The diagnostics overlay (F3 or the status-bar button): relay address and session token, TCP
//! ping, what capture processing measures (speech probability, echo removed and its delay), and
//! per sender the jitter-buffer depth, loss % over the last 10 s, late and concealed
//! frames and FEC recoveries, as numbers and plotted over the last minute.
//!
//! Each sender has one colour ([`sender_colour`]) in the table and in every plot; the legends sit
//! beside the plots (never over the data), and senders who left are gone from both (the history
//! keeps only senders the engine still reports).

use egui::{Color32, RichText};
use egui_plot::{Line, LineStyle, Plot, PlotPoints};
use voice_client::SessionToken;

use crate::app::Session;
use crate::history::{Series, WINDOW_S};

/// Width of the legend column beside each plot.
const LEGEND_W: f32 = 130.0;

/// One colour per sender, the same in the table and every plot (by session token).
pub fn sender_colour(session: SessionToken) -> Color32 {
    const PALETTE: [Color32; 8] = [
        Color32::from_rgb(86, 180, 233),
        Color32::from_rgb(230, 159, 0),
        Color32::from_rgb(0, 158, 115),
        Color32::from_rgb(204, 121, 167),
        Color32::from_rgb(240, 228, 66),
        Color32::from_rgb(213, 94, 0),
        Color32::from_rgb(160, 160, 255),
        Color32::from_rgb(200, 200, 200),
    ];
    PALETTE[session.0 as usize % PALETTE.len()]
}

/// The colour of the ping line (no sender).
const PING: Color32 = Color32::from_rgb(120, 200, 255);

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
            // A lost connection has no ping: the last value would read as live.
            let live = st.is_live();
            let rtt = latest.and_then(|s| s.rtt_ms).or(st.rtt_ms).filter(|_| live);
            ui.monospace(rtt.map_or("-".into(), |ms| format!("{ms:.1} ms")));
            ui.label("UDP ping");
            ui.monospace(
                latest
                    .and_then(|s| s.udp_rtt_ms)
                    .filter(|_| live)
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
                if let Some(c) = &s.capture {
                    ui.label("Microphone");
                    let verdict = if c.speech { "speech" } else { "quiet" };
                    ui.monospace(format!("{verdict} {:.0} %", c.speech_probability * 100.0));
                    ui.label("Echo removed (ERLE)").on_hover_text(
                        "While the far end talks alone; your own voice at the same time lowers it",
                    );
                    ui.monospace(c.erle_db.map_or("-".into(), |db| format!("{db:.1} dB")));
                    ui.end_row();
                    ui.label("Echo delay");
                    ui.monospace(c.echo_delay_ms.map_or("-".into(), |ms| format!("{ms} ms")));
                    ui.label("Clock drift")
                        .on_hover_text("Between your loudspeaker and your microphone, as the echo canceller measures it");
                    ui.monospace(format!("{:+.0} ppm", c.clock_drift_ppm));
                    ui.end_row();
                }
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
                let mut text = RichText::new(name).color(sender_colour(r.session));
                if r.speaking {
                    text = text.strong();
                }
                ui.label(text);
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

fn points(series: &Series, now: f64) -> Vec<[f64; 2]> {
    series.iter().map(|[t, v]| [t - now, *v]).collect()
}

/// One plotted line: legend text, colour, style, points.
struct Trace {
    name: String,
    colour: Color32,
    style: LineStyle,
    points: Vec<[f64; 2]>,
}

fn plot(ui: &mut egui::Ui, id: &str, y_label: &str, traces: Vec<Trace>, key: &[(&str, LineStyle)]) {
    ui.label(RichText::new(id).strong());
    ui.horizontal_top(|ui| {
        let width = (ui.available_width() - LEGEND_W - 8.0).max(120.0);
        Plot::new(id)
            .width(width)
            .height(105.0)
            .include_x(-WINDOW_S)
            .include_x(0.0)
            .include_y(0.0)
            .allow_drag(false)
            .allow_zoom(false)
            .allow_scroll(false)
            .x_axis_label("seconds ago")
            .y_axis_label(y_label)
            .show(ui, |p| {
                for t in &traces {
                    p.line(
                        Line::new(t.name.clone(), PlotPoints::from(t.points.clone()))
                            .color(t.colour)
                            .style(t.style),
                    );
                }
            });
        // The legend beside the plot: one row per sender (and a key for the line styles).
        ui.vertical(|ui| {
            ui.set_width(LEGEND_W);
            let mut seen = Vec::new();
            for t in &traces {
                if seen.contains(&t.name) {
                    continue;
                }
                seen.push(t.name.clone());
                ui.horizontal(|ui| {
                    let (rect, _) =
                        ui.allocate_exact_size(egui::vec2(14.0, 10.0), egui::Sense::hover());
                    ui.painter()
                        .hline(rect.x_range(), rect.center().y, (3.0, t.colour));
                    ui.add(egui::Label::new(RichText::new(&t.name).small()).truncate());
                });
            }
            for (what, style) in key {
                ui.weak(format!("{} {what}", style_mark(*style)));
            }
        });
    });
}

fn style_mark(style: LineStyle) -> &'static str {
    match style {
        LineStyle::Solid => "——",
        LineStyle::Dashed { .. } => "- -",
        LineStyle::Dotted { .. } => "···",
    }
}

fn sender_name(s: &crate::history::SenderSeries, who: SessionToken) -> String {
    if s.name.is_empty() {
        format!("#{}", who.0)
    } else {
        s.name.clone()
    }
}

fn plots(ui: &mut egui::Ui, session: &Session, now: f64) {
    let h = &session.history;
    let live = session.state.is_live();
    plot(
        ui,
        "TCP ping",
        "ms",
        vec![Trace {
            name: if live { "ping" } else { "ping (disconnected)" }.into(),
            colour: PING,
            style: LineStyle::Solid,
            points: points(&h.rtt_ms, now),
        }],
        &[],
    );
    let per_sender = |f: &dyn Fn(&crate::history::SenderSeries) -> &Series| {
        h.senders
            .iter()
            .map(|(who, s)| Trace {
                name: sender_name(s, *who),
                colour: sender_colour(*who),
                style: LineStyle::Solid,
                points: points(f(s), now),
            })
            .collect::<Vec<_>>()
    };
    plot(
        ui,
        "Jitter-buffer depth",
        "packets",
        per_sender(&|s| &s.depth),
        &[],
    );
    plot(
        ui,
        "Loss over 10 s",
        "%",
        per_sender(&|s| &s.loss_percent),
        &[],
    );
    // One colour per sender, one line style per kind of event.
    let late = LineStyle::Solid;
    let concealed = LineStyle::Dashed { length: 6.0 };
    let fec = LineStyle::Dotted { spacing: 4.0 };
    let mut events = Vec::new();
    for (who, s) in &h.senders {
        for (series, style) in [
            (&s.late_per_s, late),
            (&s.concealed_per_s, concealed),
            (&s.fec_per_s, fec),
        ] {
            events.push(Trace {
                name: sender_name(s, *who),
                colour: sender_colour(*who),
                style,
                points: points(series, now),
            });
        }
    }
    plot(
        ui,
        "Late / concealed / FEC-recovered frames",
        "per s",
        events,
        &[("late", late), ("concealed", concealed), ("FEC", fec)],
    );
}
