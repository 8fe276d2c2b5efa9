//! Audio controls: transmit mode, push-to-talk and whisper keys, a hold-to-talk button, mute and
//! deafen, the input level meter, and the capture / playback choice (a device, or a file / tone /
//! null fallback where there is no device).

use std::path::{Path, PathBuf};

use egui::{Color32, RichText};
use voice_client::{AudioError, VadConfig};

use crate::app::{KeyRole, Session};
use crate::backend::Request;
use crate::global_keys::{Availability, Binding, MOUSE_BACK, MOUSE_FORWARD, MOUSE_MIDDLE};
use crate::settings::{InputChoice, Mode, OutputChoice, Settings};
use crate::ui::{SPEAKING, WARN, WHISPER};
use voice_core::capture::{SuppressionLevel, BACKGROUND_MARGIN_DB};

/// Level meter range (dBFS at the left edge).
const METER_FLOOR_DBFS: f32 = -60.0;

/// Draws the controls. A device picked is switched to at once, without reconnecting. Returns
/// true when only a restart can apply it (the engine has stopped).
pub fn show(
    ui: &mut egui::Ui,
    session: &mut Session,
    settings: &mut Settings,
    devices: Option<&(Vec<String>, Vec<String>)>,
) -> bool {
    // Shrinks horizontally: a side panel would otherwise grow to fill the window.
    egui::ScrollArea::vertical()
        .auto_shrink([true, false])
        .show(ui, |ui| controls(ui, session, settings, devices))
        .inner
}

fn controls(
    ui: &mut egui::Ui,
    session: &mut Session,
    settings: &mut Settings,
    devices: Option<&(Vec<String>, Vec<String>)>,
) -> bool {
    ui.heading("Voice");
    ui.separator();
    let before = settings.mode;
    ui.radio_value(&mut settings.mode, Mode::PushToTalk, "Push to talk");
    ui.radio_value(&mut settings.mode, Mode::VoiceActivity, "Voice activity");
    ui.radio_value(&mut settings.mode, Mode::Continuous, "Always on");
    if settings.mode != before {
        session.send(Request::Mode(settings.mode.to_engine()));
    }
    match settings.mode {
        Mode::PushToTalk => {
            key_picker(ui, session, KeyRole::Talk, &mut settings.ptt_key);
            let talk = ui.add(egui::Button::new("Hold to talk").sense(egui::Sense::drag()));
            session.talk_button_held = talk.is_pointer_button_down_on();
        }
        Mode::VoiceActivity => {
            let r = ui.add(
                egui::Slider::new(&mut settings.vad_threshold_dbfs, -70.0..=-10.0)
                    .text("gate dBFS"),
            );
            if r.changed() {
                session.send(Request::Vad(VadConfig {
                    threshold_dbfs: settings.vad_threshold_dbfs,
                    ..VadConfig::default()
                }));
            }
        }
        Mode::Continuous => {}
    }
    key_picker(ui, session, KeyRole::Whisper, &mut settings.whisper_key);
    global_keys_line(ui, session, settings);
    ui.add_space(4.0);
    ui.horizontal(|ui| {
        if ui.toggle_value(&mut session.muted, "Mute mic").changed() {
            session.send(Request::Mute(session.muted));
        }
        if ui.toggle_value(&mut session.deafened, "Deafen").changed() {
            session.send(Request::Deafen(session.deafened));
        }
    });
    level_meter(ui, session, settings);
    capture_controls(ui, session, settings);
    ui.add_space(8.0);
    ui.heading("Audio devices");
    ui.separator();
    // Audio notices are shown once: in the banner until dismissed, then here by the pickers.
    if session.notices_seen >= session.state.notices.len() {
        for n in &session.state.audio_notices {
            ui.add(egui::Label::new(RichText::new(n).color(WARN)).wrap());
        }
    }
    // The engine's notice already says what is missing: no second hint from the device list.
    let hint = session.state.audio_notices.is_empty();
    let (input, output) = (settings.input.clone(), settings.output.clone());
    if device_pickers(ui, settings, devices, hint) {
        return switch_live(session, settings, input, output);
    }
    false
}

/// Applies a device choice to the running engine without reconnecting. A choice that cannot be
/// opened is undone (the old stream stays; the engine's notice says why); a WAV path is applied
/// once it names a file (not at every key typed). Returns true only when the engine has
/// stopped, so that a restart is the one way to apply the choice.
fn switch_live(
    session: &mut Session,
    settings: &mut Settings,
    input: InputChoice,
    output: OutputChoice,
) -> bool {
    let mut restart = false;
    if settings.input != input {
        let ready = match &settings.input {
            InputChoice::Wav(path) => path.is_file(),
            _ => true,
        };
        if ready {
            match session.backend.set_input(settings.input.to_audio()) {
                Ok(()) => forget_notice(session, "no capture device"),
                Err(AudioError::EngineStopped) => restart = true,
                // Typing a WAV path keeps the new text; anything else shows what plays.
                Err(_) if matches!(settings.input, InputChoice::Wav(_)) => {}
                Err(_) => settings.input = input,
            }
        }
    }
    if settings.output != output {
        match session.backend.set_output(settings.output.to_audio()) {
            Ok(()) => forget_notice(session, "no playback device"),
            Err(AudioError::EngineStopped) => restart = true,
            Err(_) => settings.output = output,
        }
    }
    restart
}

/// Drops the "no microphone" or "no speaker" notice (by the engine message it renders) once
/// another device is in use.
fn forget_notice(session: &mut Session, engine_message: &str) {
    let text = crate::state::plain_audio_notice(engine_message);
    session.state.audio_notices.retain(|n| *n != text);
}

/// A key setting: a button showing the key or mouse button; clicked, it waits for the next key
/// or middle/side mouse button pressed ("press a key…"; Escape cancels) and stores its name
/// (see [`Binding::parse`]).
fn key_picker(ui: &mut egui::Ui, session: &mut Session, role: KeyRole, key: &mut String) {
    let label = match role {
        KeyRole::Talk => "Talk key",
        KeyRole::Whisper => "Whisper key",
    };
    ui.horizontal(|ui| {
        let l = ui.label(label);
        let waiting = session.capturing == Some(role);
        let text = if waiting {
            RichText::new("press a key or mouse button… (Esc cancels)").color(WHISPER)
        } else {
            let shown = Binding::parse(key).map_or_else(|| key.clone(), binding_label);
            RichText::new(shown).monospace()
        };
        let r = ui
            .add(egui::Button::new(text).selected(waiting))
            .labelled_by(l.id)
            .on_hover_text(
                "Click, then press the key or mouse button to use \
                 (middle, back or forward button)",
            );
        if !waiting {
            if r.clicked() {
                session.capturing = Some(role);
            }
            return;
        }
        if let Some(pressed) = ui.input(|i| captured_binding(&i.events)) {
            if pressed != Binding::Key(egui::Key::Escape) {
                *key = pressed.name();
                session.just_set = Some(pressed);
            }
            session.capturing = None;
            r.surrender_focus();
        } else if r.clicked_elsewhere() {
            session.capturing = None;
        }
    });
}

/// A key's name for people: "Left Ctrl" rather than egui's "ControlLeft".
pub fn key_label(key: egui::Key) -> &'static str {
    use egui::Key as K;
    match key {
        K::ControlLeft => "Left Ctrl",
        K::ControlRight => "Right Ctrl",
        K::ShiftLeft => "Left Shift",
        K::ShiftRight => "Right Shift",
        K::AltLeft => "Left Alt",
        K::AltRight => "Right Alt",
        K::SuperLeft => "Left Super",
        K::SuperRight => "Right Super",
        k => k.name(),
    }
}

/// A key's or mouse button's name for people: "Left Ctrl", "Mouse back".
pub fn binding_label(binding: Binding) -> String {
    match binding {
        Binding::Key(k) => key_label(k).into(),
        Binding::Mouse(MOUSE_MIDDLE) => "Mouse middle".into(),
        Binding::Mouse(MOUSE_BACK) => "Mouse back".into(),
        Binding::Mouse(MOUSE_FORWARD) => "Mouse forward".into(),
        Binding::Mouse(b) => format!("Mouse button {b}"),
    }
}

/// The first key or bindable mouse button pressed among `events` (not a key repeat, not the
/// left or right button), for a "press a key…" capture.
pub fn captured_binding(events: &[egui::Event]) -> Option<Binding> {
    events.iter().find_map(|e| match e {
        egui::Event::Key {
            key,
            pressed: true,
            repeat: false,
            ..
        } => Some(Binding::Key(*key)),
        egui::Event::PointerButton {
            button,
            pressed: true,
            ..
        } => Binding::from_pointer(*button),
        _ => None,
    })
}

/// Whether the keys also work while another window has focus, or why they cannot (one line).
fn global_keys_line(ui: &mut egui::Ui, session: &Session, settings: &mut Settings) {
    match &session.global_keys {
        Availability::Active(caveat) => {
            let r = ui
                .checkbox(&mut settings.global_keys, "Keys work in other windows too")
                .on_hover_text(
                    "The talk and whisper keys work while another application has focus \
                     (through X11 the key still reaches that application; through the \
                     desktop's shortcuts portal the desktop keeps it)",
                );
            if let (Some(c), true) = (caveat, settings.global_keys) {
                r.on_hover_text(c.as_str());
                ui.add(egui::Label::new(RichText::new(c).small().weak()).truncate());
            }
        }
        Availability::Unavailable(why) => {
            let text = format!("Keys work only while this window has focus ({why})");
            ui.add(egui::Label::new(RichText::new(&text).small().weak()).truncate())
                .on_hover_text(text);
        }
    }
}

fn level_meter(ui: &mut egui::Ui, session: &Session, settings: &Settings) {
    let latest = session.history.latest.as_ref();
    let db = latest.map_or(METER_FLOOR_DBFS, |s| s.input_level_dbfs);
    let transmitting = latest.is_some_and(|s| s.transmitting);
    let colour = if transmitting {
        if session.whisper_target().is_some() {
            WHISPER
        } else {
            SPEAKING
        }
    } else {
        Color32::from_gray(110)
    };
    let gate = (settings.mode == Mode::VoiceActivity).then_some(settings.vad_threshold_dbfs);
    meter(ui, db, colour, gate);
    let state = if session.muted {
        RichText::new("muted").color(WARN)
    } else if transmitting {
        RichText::new("transmitting").color(colour)
    } else {
        RichText::new("not transmitting").weak()
    };
    ui.label(state);
}

/// "Level", a bar from -60 dBFS to 0 filled to `db` in `colour`, the number beside it, and the
/// voice-activity gate's marker at `gate` dBFS (shared with the connect screen's mic test).
pub fn meter(ui: &mut egui::Ui, db: f32, colour: Color32, gate: Option<f32>) {
    let fraction = ((db - METER_FLOOR_DBFS) / -METER_FLOOR_DBFS).clamp(0.0, 1.0);
    ui.horizontal(|ui| {
        ui.label("Level");
        // The number sits beside the bar in the normal text colour (never pale on green, never
        // under the gate marker).
        let text = if db <= METER_FLOOR_DBFS {
            format!("≤{METER_FLOOR_DBFS:.0} dB")
        } else {
            format!("{db:.0} dB")
        };
        // Right to left: the number takes what it needs, the bar the rest (never more, so the
        // panel does not creep wider frame by frame).
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            ui.add(egui::Label::new(RichText::new(text).monospace()).extend());
            let width = (ui.available_width() - 2.0).max(20.0);
            let (rect, _) = ui.allocate_exact_size(egui::vec2(width, 12.0), egui::Sense::hover());
            let painter = ui.painter();
            painter.rect_filled(rect, 3.0, ui.visuals().extreme_bg_color);
            let mut filled = rect;
            filled.set_width(rect.width() * fraction);
            painter.rect_filled(filled, 3.0, colour);
            if let Some(gate) = gate {
                let at = ((gate - METER_FLOOR_DBFS) / -METER_FLOOR_DBFS).clamp(0.0, 1.0);
                let x = rect.left() + rect.width() * at;
                painter.vline(x, rect.expand(2.0).y_range(), (2.0, WARN));
            }
        });
    });
}

/// Capture and playback pickers (shared with the connect screen). With `hint`, says which device
/// kinds were not found. Returns true on a change.
pub fn device_pickers(
    ui: &mut egui::Ui,
    settings: &mut Settings,
    devices: Option<&(Vec<String>, Vec<String>)>,
    hint: bool,
) -> bool {
    let mut changed = false;
    let (inputs, outputs) = match devices {
        Some((i, o)) => (i.as_slice(), o.as_slice()),
        None => (&[][..], &[][..]),
    };
    // Combo boxes fit the panel (the connect screen and a narrow side panel alike).
    let combo_w = (ui.available_width() - 70.0).clamp(90.0, 180.0);
    let mut input = settings.input.clone();
    ui.horizontal(|ui| {
        let l = ui.label("Input");
        egui::ComboBox::from_id_salt("input_device")
            .selected_text(input.label())
            .width(combo_w)
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut input, InputChoice::Device(None), "default device");
                for d in inputs {
                    ui.selectable_value(&mut input, InputChoice::Device(Some(d.clone())), d);
                }
                ui.selectable_value(&mut input, InputChoice::Tone(440.0), "test tone 440 Hz");
                if !matches!(input, InputChoice::Wav(_)) {
                    let wav = InputChoice::Wav(PathBuf::from("input.wav"));
                    ui.selectable_value(&mut input, wav, "WAV file (looped)");
                }
                ui.selectable_value(&mut input, InputChoice::Null, "none (silence)");
            })
            .response
            .labelled_by(l.id);
    });
    if let InputChoice::Wav(path) = &mut input {
        // The text is kept as typed (in egui's memory): rebuilding it from the `PathBuf` every
        // frame would drop a trailing "/" ("/tmp/" == "/tmp" as paths), eating each slash typed.
        let id = ui.scope_id().with("wav_path_text");
        let mut text: String = ui
            .data(|d| d.get_temp::<String>(id))
            .filter(|t| Path::new(t) == path.as_path())
            .unwrap_or_else(|| path.display().to_string());
        ui.horizontal(|ui| {
            let l = ui.label("WAV path");
            if ui
                .add(egui::TextEdit::singleline(&mut text).desired_width(ui.available_width()))
                .labelled_by(l.id)
                .changed()
            {
                *path = PathBuf::from(&text);
            }
        });
        ui.data_mut(|d| d.insert_temp(id, text));
    }
    if input != settings.input {
        settings.input = input;
        changed = true;
    }
    let mut output = settings.output.clone();
    ui.horizontal(|ui| {
        let l = ui.label("Output");
        egui::ComboBox::from_id_salt("output_device")
            .selected_text(output.label())
            .width(combo_w)
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut output, OutputChoice::Device(None), "default device");
                for d in outputs {
                    ui.selectable_value(&mut output, OutputChoice::Device(Some(d.clone())), d);
                }
                ui.selectable_value(&mut output, OutputChoice::Null, "none (discard)");
            })
            .response
            .labelled_by(l.id);
    });
    if output != settings.output {
        settings.output = output;
        changed = true;
    }
    match devices {
        None => {
            ui.weak("Looking for audio devices…");
        }
        Some((i, o)) => {
            // Only about what the user relies on: a missing microphone does not matter while a
            // test tone plays, a missing speaker not when "none" was chosen.
            let no_mic = i.is_empty() && matches!(settings.input, InputChoice::Device(_));
            let no_speaker = o.is_empty() && matches!(settings.output, OutputChoice::Device(_));
            let what = match (no_mic, no_speaker) {
                (true, true) => {
                    "No microphone and no speaker found. You can still connect: choose a test \
                     tone or a WAV file to send sound; you will not hear others."
                }
                (true, false) => {
                    "No microphone found. Choose a test tone or a WAV file to send sound."
                }
                (false, true) => "No speaker found: you can talk, but you will not hear others.",
                (false, false) => "",
            };
            if hint && !what.is_empty() {
                ui.add(egui::Label::new(RichText::new(what).color(WARN)).wrap());
            }
        }
    }
    changed
}

/// Capture processing toggles (issue 15): each stage on or off and the suppression level; a
/// change takes effect at once (the echo canceller adapts again).
fn capture_controls(ui: &mut egui::Ui, session: &mut Session, settings: &mut Settings) {
    if !matches!(settings.input, InputChoice::Device(_)) {
        return;
    }
    let before = settings.capture;
    egui::CollapsingHeader::new("Microphone processing")
        .default_open(false)
        .show(ui, |ui| {
            let c = &mut settings.capture;
            ui.checkbox(&mut c.echo_cancel, "Echo cancellation");
            let mut ns = c.noise_suppression.is_some();
            ui.checkbox(&mut ns, "Noise suppression");
            if ns {
                let mut level = c.noise_suppression.unwrap_or_default();
                // Labelled, so screen readers (and the UI tests) can name it.
                egui::ComboBox::from_label("Suppression level")
                    .selected_text(format!("{level:?}"))
                    .show_ui(ui, |ui| {
                        for l in [
                            SuppressionLevel::Low,
                            SuppressionLevel::Moderate,
                            SuppressionLevel::High,
                            SuppressionLevel::VeryHigh,
                        ] {
                            ui.selectable_value(&mut level, l, format!("{l:?}"));
                        }
                    });
                c.noise_suppression = Some(level);
            } else {
                c.noise_suppression = None;
            }
            ui.checkbox(&mut c.gain_control, "Automatic gain");
            ui.checkbox(&mut c.high_pass, "High-pass filter");
            ui.checkbox(&mut c.vad, "Speech detector (voice activity)");
            if c.vad {
                // Voices well under the user's own (across the room, a TV) do not open the
                // microphone; off, every voice does.
                let was = c.vad_config.background_margin_db > 0.0;
                let mut ignore = was;
                ui.checkbox(&mut ignore, "Ignore background voices")
                    .on_hover_text("Voices well below yours do not open the microphone");
                if ignore != was {
                    c.vad_config.background_margin_db =
                        if ignore { BACKGROUND_MARGIN_DB } else { 0.0 };
                }
            }
        });
    if settings.capture != before {
        session.send(Request::Capture(settings.capture));
    }
}
