//! Snapshot tests (issue 19's checks): the main window at the 640×420 minimum size and at
//! 1280×800, the F3 overlay at 1280×800 and the connect screen, drawn to pictures and compared
//! with the PNGs in `gui_demo/tests/snapshots/`.
//!
//! egui_kittest's own snapshots need a GPU renderer (wgpu), too heavy for CI. Instead,
//! [`CpuRenderer`] receives the font atlas and image textures as egui hands them out (the
//! [`egui_kittest::TestRenderer`] hook), and [`rasterise`] fills egui's tessellated triangles on
//! the CPU the way egui's glow painter does: vertex colour × bilinear texture sample, sRGB values
//! with premultiplied alpha, blended `ONE, ONE_MINUS_SRC_ALPHA`, clipped to each mesh's clip
//! rectangle; egui's feathering supplies the anti-aliasing. The picture is what the demo shows
//! except for the exact text hinting of a GPU.
//!
//! A picture may differ from its PNG in at most [`MAX_DIFFERENT`] of its pixels (a pixel differs
//! when a channel is off by more than [`CHANNEL_TOLERANCE`]), room for rounding and for the font
//! atlas's packing order (it differs between runs, and bilinear sampling at a glyph's edge sees
//! its neighbours: a handful of pixels move by a few levels), not for a moved widget. The chat's
//! times are chosen to read the same in every time zone. On a mismatch the new picture and a difference image are written beside the test
//! binary's temporary directory and named in the failure. After an intended change, regenerate
//! with `UPDATE_SNAPSHOTS=1 cargo test --release -p gui_demo --test it snapshot::`, look at the
//! pictures and commit them.

use crate::common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use common::*;
use egui::epaint::{ClippedPrimitive, Primitive};
use egui::{Color32, ColorImage, TextureFilter, TextureId, TexturesDelta};
use egui_kittest::Harness;
use gui_demo::settings::{InputChoice, OutputChoice, SavedServer, Settings};
use gui_demo::state::UserPrefs;
use gui_demo::GuiApp;
use voice_client::{ChannelId, Event, SessionToken};

/// Largest share of pixels that may differ from the stored picture.
const MAX_DIFFERENT: f64 = 0.002;
/// A channel this far from the stored value (of 255) still matches.
const CHANNEL_TOLERANCE: u8 = 12;

/// A texture as the GPU would hold it.
struct Texture {
    image: ColorImage,
    nearest: bool,
}

/// The textures egui allocated, kept up to date from each frame's [`TexturesDelta`].
#[derive(Default)]
struct Textures(HashMap<TextureId, Texture>);

impl Textures {
    fn apply(&mut self, delta: &TexturesDelta) {
        for (id, d) in delta
            .set
            .iter()
            .flat_map(|(id, ds)| ds.iter().map(move |d| (id, d)))
        {
            let egui::ImageData::Color(patch) = &d.image;
            let nearest = d.options.magnification == TextureFilter::Nearest;
            match d.pos {
                None => {
                    self.0.insert(
                        *id,
                        Texture {
                            image: (**patch).clone(),
                            nearest,
                        },
                    );
                }
                Some([x0, y0]) => {
                    let Some(t) = self.0.get_mut(id) else {
                        continue;
                    };
                    let [w, h] = patch.size;
                    let tw = t.image.size[0];
                    for y in 0..h {
                        for x in 0..w {
                            let (tx, ty) = (x0 + x, y0 + y);
                            if tx < tw && ty < t.image.size[1] {
                                t.image.pixels[ty * tw + tx] = patch.pixels[y * w + x];
                            }
                        }
                    }
                }
            }
        }
        for id in &delta.free {
            self.0.remove(id);
        }
    }
}

/// The harness's renderer: it only keeps the textures (drawing happens in [`rasterise`]).
struct CpuRenderer(Arc<Mutex<Textures>>);

impl egui_kittest::TestRenderer for CpuRenderer {
    fn handle_delta(&mut self, delta: &mut TexturesDelta) {
        if let Ok(mut t) = self.0.lock() {
            t.apply(delta);
        }
        delta.clear();
    }
}

/// A premultiplied sRGBA colour, 0–1.
type Rgba = [f32; 4];

fn rgba(c: Color32) -> Rgba {
    c.to_array().map(|v| f32::from(v) / 255.0)
}

fn sample(t: &Texture, u: f32, v: f32) -> Rgba {
    let [w, h] = t.image.size;
    let at = |x: i64, y: i64| {
        let x = x.clamp(0, w as i64 - 1) as usize;
        let y = y.clamp(0, h as i64 - 1) as usize;
        rgba(t.image.pixels[y * w + x])
    };
    let (x, y) = (u * w as f32 - 0.5, v * h as f32 - 0.5);
    if t.nearest {
        return at((x + 0.5).floor() as i64, (y + 0.5).floor() as i64);
    }
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let (x0, y0) = (x0 as i64, y0 as i64);
    let (a, b, c, d) = (
        at(x0, y0),
        at(x0 + 1, y0),
        at(x0, y0 + 1),
        at(x0 + 1, y0 + 1),
    );
    std::array::from_fn(|i| {
        let top = a[i] + (b[i] - a[i]) * fx;
        let bottom = c[i] + (d[i] - c[i]) * fx;
        top + (bottom - top) * fy
    })
}

/// What eframe clears the window to before painting (its default `App::clear_color`, which the
/// demo keeps, as an opaque window shows it).
const CLEAR: Rgba = [12.0 / 255.0, 12.0 / 255.0, 12.0 / 255.0, 1.0];

/// Fills `primitives` into a `size` picture (physical pixels) over [`CLEAR`].
fn rasterise(
    primitives: &[ClippedPrimitive],
    textures: &Textures,
    size: [usize; 2],
    pixels_per_point: f32,
) -> image::RgbaImage {
    let [w, h] = size;
    let mut frame: Vec<Rgba> = vec![CLEAR; w * h];
    for p in primitives {
        let Primitive::Mesh(mesh) = &p.primitive else {
            continue;
        };
        let Some(tex) = textures.0.get(&mesh.texture_id) else {
            continue;
        };
        let clip = p.clip_rect;
        let cx0 = ((clip.min.x * pixels_per_point).round().max(0.0) as usize).min(w);
        let cy0 = ((clip.min.y * pixels_per_point).round().max(0.0) as usize).min(h);
        let cx1 = ((clip.max.x * pixels_per_point).round().max(0.0) as usize).min(w);
        let cy1 = ((clip.max.y * pixels_per_point).round().max(0.0) as usize).min(h);
        for tri in mesh.indices.chunks_exact(3) {
            let v = [0, 1, 2].map(|k| &mesh.vertices[tri[k] as usize]);
            let pos = v.map(|v| (v.pos.x * pixels_per_point, v.pos.y * pixels_per_point));
            let area = edge(pos[0], pos[1], pos[2]);
            if area.abs() < 1e-6 {
                continue;
            }
            let xs = pos.map(|p| p.0);
            let ys = pos.map(|p| p.1);
            let min = |a: [f32; 3]| a.iter().copied().fold(f32::INFINITY, f32::min);
            let max = |a: [f32; 3]| a.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let x0 = (min(xs).floor().max(0.0) as usize).max(cx0);
            let y0 = (min(ys).floor().max(0.0) as usize).max(cy0);
            let x1 = ((max(xs).ceil().max(0.0)) as usize).min(cx1);
            let y1 = ((max(ys).ceil().max(0.0)) as usize).min(cy1);
            let colours = v.map(|v| rgba(v.color));
            for y in y0..y1 {
                for x in x0..x1 {
                    let c = (x as f32 + 0.5, y as f32 + 0.5);
                    // Barycentric weights; a pixel centre on an edge belongs to one of the
                    // two triangles sharing it (the edge's direction decides), never both.
                    let ws = [(1, 2), (2, 0), (0, 1)].map(|(i, j)| {
                        let e = edge(pos[i], pos[j], c) / area;
                        let (dx, dy) = (pos[j].0 - pos[i].0, pos[j].1 - pos[i].1);
                        let owner =
                            (dy * area.signum() > 0.0) || (dy == 0.0 && dx * area.signum() < 0.0);
                        (e, owner)
                    });
                    if ws
                        .iter()
                        .any(|(e, owner)| *e < 0.0 || (*e == 0.0 && !owner))
                    {
                        continue;
                    }
                    let b = ws.map(|(e, _)| e);
                    let u = b[0] * v[0].uv.x + b[1] * v[1].uv.x + b[2] * v[2].uv.x;
                    let vv = b[0] * v[0].uv.y + b[1] * v[1].uv.y + b[2] * v[2].uv.y;
                    let t = sample(tex, u, vv);
                    let src: Rgba = std::array::from_fn(|i| {
                        (b[0] * colours[0][i] + b[1] * colours[1][i] + b[2] * colours[2][i]) * t[i]
                    });
                    let dst = &mut frame[y * w + x];
                    for i in 0..4 {
                        dst[i] = src[i] + dst[i] * (1.0 - src[3]);
                    }
                }
            }
        }
    }
    let mut out = image::RgbaImage::new(w as u32, h as u32);
    for (px, c) in out.pixels_mut().zip(&frame) {
        *px = image::Rgba([to_u8(c[0]), to_u8(c[1]), to_u8(c[2]), 255]);
    }
    out
}

fn to_u8(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// Twice the signed area of triangle `a b p` (which side of `a→b` the point `p` is on).
fn edge(a: (f32, f32), b: (f32, f32), p: (f32, f32)) -> f32 {
    (b.0 - a.0) * (p.1 - a.1) - (b.1 - a.1) * (p.0 - a.0)
}

/// The harness's last frame as a picture.
fn picture(h: &Harness<'static, GuiApp>, textures: &Arc<Mutex<Textures>>) -> image::RgbaImage {
    let out = h.output();
    let ppp = out.pixels_per_point;
    let primitives = h.ctx.tessellate(out.shapes.clone(), ppp);
    let rect = h.ctx.content_rect();
    let size = [
        (rect.width() * ppp).round() as usize,
        (rect.height() * ppp).round() as usize,
    ];
    let t = textures.lock().expect("textures");
    rasterise(&primitives, &t, size, ppp)
}

fn snapshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots")
}

/// Compares `img` with `tests/snapshots/{name}.png` (see the module documentation).
fn check(name: &str, img: &image::RgbaImage) {
    let path = snapshot_dir().join(format!("{name}.png"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(snapshot_dir()).expect("snapshot dir");
        img.save(&path).expect("writes the snapshot");
        return;
    }
    let stored = image::open(&path)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (UPDATE_SNAPSHOTS=1 writes it; look at it before committing)",
                path.display()
            )
        })
        .to_rgba8();
    assert_eq!(
        stored.dimensions(),
        img.dimensions(),
        "{name}: the picture's size changed"
    );
    let mut diff = image::RgbaImage::new(img.width(), img.height());
    let mut different = 0usize;
    for ((a, b), d) in img.pixels().zip(stored.pixels()).zip(diff.pixels_mut()) {
        let off =
            a.0.iter()
                .zip(b.0)
                .any(|(x, y)| x.abs_diff(y) > CHANNEL_TOLERANCE);
        if off {
            different += 1;
            *d = image::Rgba([255, 0, 0, 255]);
        } else {
            *d = image::Rgba([a.0[0] / 4, a.0[1] / 4, a.0[2] / 4, 255]);
        }
    }
    let share = different as f64 / (img.width() * img.height()) as f64;
    if share > MAX_DIFFERENT {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let new = dir.join(format!("{name}.new.png"));
        let marked = dir.join(format!("{name}.diff.png"));
        let _ = img.save(&new);
        let _ = diff.save(&marked);
        panic!(
            "{name}: {different} pixels ({:.2} %) differ from {} (at most {:.2} % may); \
             the new picture is {}, the differences in red in {}",
            share * 100.0,
            path.display(),
            MAX_DIFFERENT * 100.0,
            new.display(),
            marked.display()
        );
    }
}

/// A harness of `size` drawing through [`CpuRenderer`], on an app whose remembered settings say
/// bob is muted and erin at 150 %.
fn harness_at(
    size: [f32; 2],
) -> (
    Harness<'static, GuiApp>,
    Arc<Mutex<Textures>>,
    gui_demo::backend::StubHandle,
) {
    let (backend, handle) = gui_demo::backend::stub();
    let mut slot = Some(backend);
    let connector: gui_demo::Connector = Box::new(move |_req, _ctx| {
        slot.take()
            .map(|b| Box::new(b) as Box<dyn gui_demo::backend::Backend>)
            .ok_or_else(|| "stub already used".to_string())
    });
    let mut settings = Settings {
        name: "me".into(),
        input: InputChoice::Null,
        output: OutputChoice::Null,
        ..Settings::default()
    };
    settings.user_prefs.insert(
        "bob".into(),
        UserPrefs {
            volume: 1.0,
            muted: true,
        },
    );
    settings.user_prefs.insert(
        "erin".into(),
        UserPrefs {
            volume: 1.5,
            muted: false,
        },
    );
    let textures = Arc::new(Mutex::new(Textures::default()));
    let h = Harness::builder()
        .with_size(size)
        .renderer(CpuRenderer(textures.clone()))
        .build_ui_state(
            |ui, app: &mut GuiApp| app.show(ui),
            GuiApp::new(settings, connector),
        );
    (h, textures, handle)
}

/// Connected, in Lobby with bob and erin, carol in Team A, a few chat lines (one long word,
/// one mention, one of ours) at a fixed time.
fn main_window(
    size: [f32; 2],
) -> (
    Harness<'static, GuiApp>,
    Arc<Mutex<Textures>>,
    gui_demo::backend::StubHandle,
) {
    use egui_kittest::kittest::Queryable;
    let (mut h, textures, handle) = harness_at(size);
    h.get_by_label("Connect").click();
    h.run_steps(2);
    welcome(&mut h, &handle, 1, vec![user(5, "bob"), user(6, "erin")]);
    let t0 = shown_as_22_13_20();
    for (from, name, text) in [
        (5, "bob", "hi all, is the new relay up?"),
        (
            6,
            "erin",
            "yes: relay.example.org:7400, see https://example.org/relay",
        ),
        (1, "me", "works here, thanks @erin"),
        (5, "bob", "me: can you hear me?"),
        (6, "erin", &"long".repeat(30)),
    ] {
        send(
            &mut h,
            &handle,
            Event::Chat {
                channel: ChannelId(1),
                from: SessionToken(from),
                from_name: name.into(),
                text: text.into(),
                server_time_ms: t0,
            },
        );
    }
    // The client's own lines ("connected as me") carry the current time: pin them.
    if let Some(s) = h.state_mut().session_mut() {
        for line in &mut s.state.chat {
            line.unix_ms = t0;
        }
    }
    h.run();
    (h, textures, handle)
}

/// A time (Unix ms) the chat shows as 22:13:20 in this machine's time zone (the chat's clock is
/// local time), so the pictures do not depend on where the tests run.
fn shown_as_22_13_20() -> u64 {
    let utc: i64 = 1_700_000_000; // 2023-11-14 22:13:20 UTC
    let secs = utc as libc::time_t;
    // SAFETY: `localtime_r` reads `secs` and writes the `tm` we own.
    let offset = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&secs, &mut tm).is_null() {
            0
        } else {
            tm.tm_gmtoff
        }
    };
    let t = (utc - offset) as u64 * 1000;
    assert_eq!(gui_demo::ui::chat::format_time(t), "22:13:20");
    t
}

#[test]
fn main_window_at_the_minimum_size() {
    let (h, t, _) = main_window([640.0, 420.0]);
    check("main_640x420", &picture(&h, &t));
}

#[test]
fn main_window_at_1280x800() {
    let (h, t, _) = main_window([1280.0, 800.0]);
    check("main_1280x800", &picture(&h, &t));
}

#[test]
fn overlay_at_1280x800() {
    // The F3 overlay over the main window: table, plots with their legends beside them, two
    // senders with their colours; ten statistics snapshots, one per frame.
    let (mut h, t, handle) = main_window([1280.0, 800.0]);
    h.state_mut().settings.overlay_open = true;
    for k in 0..10 {
        let mut s = stats_with(
            vec![remote(5, "bob"), remote(6, "erin")],
            voice_core::engine::ConnectionState::Connected,
            -30.0 - k as f32,
        );
        s.rtt_ms = Some(2.0 + f64::from(k % 3));
        handle.stats.send(s).expect("stats");
        h.run();
    }
    check("overlay_1280x800", &picture(&h, &t));
}

#[test]
fn connect_screen_at_the_minimum_size() {
    let (mut h, t, _) = harness_at([640.0, 420.0]);
    // Two servers saved, the one in the field with its certificate pinned.
    h.state_mut().settings.servers = vec![
        SavedServer {
            address: "127.0.0.1:7400".into(),
            fingerprint: Some(format!("sha256:{}", "ab".repeat(32))),
        },
        SavedServer {
            address: "relay.example.org:7400".into(),
            fingerprint: None,
        },
    ];
    h.run();
    check("connect_640x420", &picture(&h, &t));
}

#[test]
fn a_changed_layout_fails_the_comparison() {
    // The comparison is not blind: the 640×420 main window does not pass as the 1280×800 one
    // cropped, nor as the connect screen.
    let (h, t, _) = main_window([640.0, 420.0]);
    let img = picture(&h, &t);
    let (c, ct, _) = {
        let (mut c, ct, handle) = harness_at([640.0, 420.0]);
        c.run();
        (c, ct, handle)
    };
    let other = picture(&c, &ct);
    let different = img
        .pixels()
        .zip(other.pixels())
        .filter(|(a, b)| {
            a.0.iter()
                .zip(b.0)
                .any(|(x, y)| x.abs_diff(y) > CHANNEL_TOLERANCE)
        })
        .count();
    assert!(
        different as f64 / (640.0 * 420.0) > MAX_DIFFERENT * 10.0,
        "{different} pixels"
    );
    // And the picture has content: text pixels (light) on dark panels.
    let light = img.pixels().filter(|p| p.0[0] > 180).count();
    let dark = img.pixels().filter(|p| p.0[0] < 60).count();
    assert!(
        light > 2_000 && dark > 100_000,
        "light {light}, dark {dark}"
    );
}
