//! The connect screen: server address, name, audio choices, and why the last attempt failed.
//!
//! Fields are validated live once the user has typed (not before) and again on submit; at most
//! one problem line is shown. A host name is resolved in the background ("Looking up …").

use egui::RichText;

use crate::app::ConnectForm;
use crate::mic_test::MicTest;
use crate::settings::{self, Mode, Settings};
use crate::ui::{controls, Action, SPEAKING, WARN};

/// Draws the connect screen.
pub fn show(
    ui: &mut egui::Ui,
    form: &mut ConnectForm,
    settings: &mut Settings,
    devices: Option<&(Vec<String>, Vec<String>)>,
) -> Action {
    let mut action = Action::None;
    egui::CentralPanel::default().show(ui, |ui| {
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show(ui, |ui| action = form_ui(ui, form, settings, devices));
    });
    action
}

fn form_ui(
    ui: &mut egui::Ui,
    form: &mut ConnectForm,
    settings: &mut Settings,
    devices: Option<&(Vec<String>, Vec<String>)>,
) -> Action {
    let mut action = Action::None;
    ui.vertical_centered(|ui| {
        ui.add_space(16.0);
        ui.heading("Voice demo");
        ui.add_space(12.0);
    });
    egui::Grid::new("connect")
        .num_columns(2)
        .spacing([12.0, 8.0])
        .show(ui, |ui| {
            let l = ui.label("Server");
            let server = ui
                .add(
                    egui::TextEdit::singleline(&mut settings.server)
                        .hint_text("127.0.0.1:7400 or host:port")
                        .desired_width(240.0),
                )
                .labelled_by(l.id);
            if server.changed() {
                form.touched = true;
                form.error = None;
            }
            ui.end_row();
            if !settings.servers.is_empty() {
                let l = ui.label("Recent");
                if recent_servers(ui, settings, l.id) {
                    form.error = None;
                }
                ui.end_row();
            }
            let l = ui.label("Name");
            let name = ui
                .add(
                    egui::TextEdit::singleline(&mut settings.name)
                        .hint_text("your name")
                        .desired_width(240.0),
                )
                .labelled_by(l.id);
            if name.changed() {
                form.touched = true;
                form.error = None;
            }
            if name.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
                action = Action::Connect;
            }
            ui.end_row();
            ui.label("Transmit");
            ui.horizontal(|ui| {
                ui.radio_value(&mut settings.mode, Mode::PushToTalk, "Push to talk");
                ui.radio_value(&mut settings.mode, Mode::VoiceActivity, "Voice activity");
                ui.radio_value(&mut settings.mode, Mode::Continuous, "Always");
            });
            ui.end_row();
        });
    ui.add_space(8.0);
    controls::device_pickers(ui, settings, devices, true);
    mic_test(ui, form, settings);
    ui.add_space(12.0);
    // One line at most: the reason the last attempt failed, else (once typed into) what is
    // wrong with the form now.
    let problem = settings::validate(&settings.server, &settings.name)
        .err()
        .map(|e| e.to_string());
    let busy = form.resolving.is_some();
    ui.horizontal(|ui| {
        if ui
            .add_enabled(!busy, egui::Button::new("Connect"))
            .clicked()
        {
            action = Action::Connect;
        }
        if let Some((host, _)) = &form.resolving {
            ui.spinner();
            ui.label(format!("Looking up {host}…"));
        }
    });
    if let Some(e) = form
        .error
        .as_ref()
        .or(problem.as_ref().filter(|_| form.touched))
    {
        ui.add_space(4.0);
        ui.add(egui::Label::new(RichText::new(e).color(WARN)).wrap());
    }
    action
}

/// The servers connected to before (a list labelled by `label`; "pinned" on those whose
/// certificate is), the pin of the one in the field, and Forget for it. True when the field changed.
fn recent_servers(ui: &mut egui::Ui, settings: &mut Settings, label: egui::Id) -> bool {
    let mut changed = false;
    ui.horizontal(|ui| {
        let mut chosen = None;
        egui::ComboBox::from_id_salt("recent-servers")
            .selected_text(format!("{} saved", settings.servers.len()))
            .show_ui(ui, |ui| {
                for s in &settings.servers {
                    let text = match s.fingerprint {
                        Some(_) => format!("{} (pinned)", s.address),
                        None => s.address.clone(),
                    };
                    let current = s.address == settings.server.trim();
                    if ui.selectable_label(current, text).clicked() {
                        chosen = Some(s.address.clone());
                    }
                }
            })
            .response
            .labelled_by(label);
        if let Some(address) = chosen {
            settings.server = address;
            changed = true;
        }
        if let Some(fp) = settings.saved_fingerprint() {
            let short: String = fp.chars().take(19).collect();
            ui.weak(format!("certificate pinned ({short}…)"))
                .on_hover_text(format!(
                    "{fp}\nSaved on the first connection; a relay with another certificate is \
                     refused"
                ));
        }
        let saved = settings
            .servers
            .iter()
            .any(|s| s.address == settings.server.trim());
        if saved
            && ui
                .small_button("Forget")
                .on_hover_text(
                    "Forget this server and its certificate fingerprint (after the relay's \
                     certificate changed on purpose)",
                )
                .clicked()
        {
            settings.forget_server();
            changed = true;
        }
    });
    changed
}

/// "Test microphone": while on, the chosen input's level (see [`crate::mic_test`]); restarted
/// when another input is chosen.
fn mic_test(ui: &mut egui::Ui, form: &mut ConnectForm, settings: &Settings) {
    let running = form.mic_test.is_some();
    let r = ui
        .add(egui::Button::new("Test microphone").selected(running))
        .on_hover_text("Shows the input's level before connecting");
    let stale = form
        .mic_test
        .as_ref()
        .is_some_and(|t| t.input != settings.input);
    if r.clicked() && running {
        form.mic_test = None;
    } else if (r.clicked() && !running) || stale {
        let ctx = ui.ctx().clone();
        form.mic_test = None;
        match MicTest::start(&settings.input, move || ctx.request_repaint()) {
            Ok(t) => form.mic_test = Some(t),
            Err(e) => form.error = Some(format!("cannot start the microphone test: {e}")),
        }
    }
    if let Some(t) = &form.mic_test {
        match t.error() {
            Some(e) => {
                ui.add(egui::Label::new(RichText::new(e).color(WARN)).wrap());
            }
            None => {
                let db = t.level_dbfs().unwrap_or(f32::NEG_INFINITY);
                controls::meter(ui, db, SPEAKING, None);
            }
        }
    }
}
