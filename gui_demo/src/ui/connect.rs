//! The connect screen: server address, name, audio choices, and why the last attempt failed.
//!
//! Fields are validated live (the Connect button says what is wrong) and again on submit.

use egui::RichText;

use crate::app::ConnectForm;
use crate::settings::{self, Mode, Settings};
use crate::ui::{controls, Action, WARN};

/// Draws the connect screen.
pub fn show(
    ui: &mut egui::Ui,
    form: &mut ConnectForm,
    settings: &mut Settings,
    devices: Option<&(Vec<String>, Vec<String>)>,
) -> Action {
    let mut action = Action::None;
    egui::CentralPanel::default().show(ui, |ui| {
        ui.vertical_centered(|ui| {
            ui.add_space(40.0);
            ui.heading("Voice demo");
            ui.add_space(12.0);
        });
        egui::Grid::new("connect")
            .num_columns(2)
            .spacing([12.0, 8.0])
            .show(ui, |ui| {
                let l = ui.label("Server");
                ui.add(
                    egui::TextEdit::singleline(&mut settings.server)
                        .hint_text("127.0.0.1:7400")
                        .desired_width(240.0),
                )
                .labelled_by(l.id);
                ui.end_row();
                let l = ui.label("Name");
                let name = ui
                    .add(
                        egui::TextEdit::singleline(&mut settings.name)
                            .hint_text("your name")
                            .desired_width(240.0),
                    )
                    .labelled_by(l.id);
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
        controls::device_pickers(ui, settings, devices);
        ui.add_space(12.0);
        let problem = settings::validate(&settings.server, &settings.name).err();
        if let Some(p) = &problem {
            ui.label(RichText::new(p.to_string()).color(WARN));
        }
        if ui.button("Connect").clicked() {
            action = Action::Connect;
        }
        if let Some(e) = &form.error {
            ui.add_space(8.0);
            ui.label(RichText::new(format!("Could not connect: {e}")).color(WARN));
        }
    });
    action
}
