//! A small top-down map of a 3D channel (positional audio): the listener in the middle facing up,
//! its audible range as a circle, every talker that sent a position as a labelled dot. Shown only
//! in a 3D channel; drawn from the latest statistics snapshot.

use egui::{Color32, Pos2, Stroke, Vec2};

use crate::app::Session;

/// Side of the square map in points.
const SIDE: f32 = 180.0;

/// Draws the map when the current channel is 3D; nothing otherwise.
pub fn show(ui: &mut egui::Ui, session: &Session) {
    let Some(stats) = session.history.latest.as_ref() else {
        return;
    };
    let Some(view) = stats.spatial.as_ref() else {
        return;
    };
    ui.separator();
    ui.strong("Map (3D channel)");
    let (rect, _) = ui.allocate_exact_size(Vec2::splat(SIDE), egui::Sense::hover());
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 4.0, ui.visuals().extreme_bg_color);
    let centre = rect.center();
    let radius = SIDE * 0.42;
    let scale = radius / view.range.max(1e-3);
    painter.circle_stroke(
        centre,
        radius,
        Stroke::new(1.0, ui.visuals().weak_text_color()),
    );
    // Rotate the world so the listener faces up: forward (fx, fz) maps to screen −y.
    let f = view.listener_forward;
    let len = (f[0] * f[0] + f[2] * f[2]).sqrt();
    let (fx, fz) = if len > 1e-6 {
        (f[0] / len, f[2] / len)
    } else {
        (0.0, -1.0)
    };
    let origin = view.listener_position;
    let to_screen = |x: f32, z: f32| -> Pos2 {
        let (dx, dz) = (x - origin.x, z - origin.z);
        // Components along forward and along right (right = (−fz, fx) in the x/z plane).
        let ahead = dx * fx + dz * fz;
        let right = -dx * fz + dz * fx;
        centre + Vec2::new(right * scale, -ahead * scale)
    };
    painter.circle_filled(centre, 5.0, Color32::from_rgb(80, 160, 255));
    painter.line_segment(
        [centre, centre + Vec2::new(0.0, -12.0)],
        Stroke::new(2.0, Color32::from_rgb(80, 160, 255)),
    );
    for (session_id, p) in &view.others {
        let at = to_screen(p.x, p.z);
        let inside = rect.shrink(4.0).contains(at);
        let at = at.clamp(rect.min + Vec2::splat(4.0), rect.max - Vec2::splat(4.0));
        let speaking = stats
            .remotes
            .iter()
            .any(|r| r.session == *session_id && r.speaking);
        let colour = if speaking {
            Color32::from_rgb(90, 200, 90)
        } else {
            ui.visuals().text_color()
        };
        painter.circle_filled(at, if inside { 4.0 } else { 2.5 }, colour);
        let name = stats
            .remotes
            .iter()
            .find(|r| r.session == *session_id)
            .map_or_else(|| format!("#{}", session_id.0), |r| r.name.clone());
        painter.text(
            at + Vec2::new(6.0, -6.0),
            egui::Align2::LEFT_BOTTOM,
            name,
            egui::FontId::proportional(11.0),
            colour,
        );
    }
    ui.weak(format!("range {:.0} units", view.range));
}
