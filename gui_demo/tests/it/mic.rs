//! The connect screen's microphone test (issue 19: "a mic test"): the chosen input's level
//! before connecting, from a real input stream on its own thread.

use crate::common;

use common::*;
use egui_kittest::kittest::Queryable;
use gui_demo::app::Screen;
use gui_demo::settings::InputChoice;
use gui_demo::GuiApp;

fn mic_level(h: &egui_kittest::Harness<'static, GuiApp>) -> Option<f32> {
    match &h.state().screen {
        Screen::Connect(form) => form.mic_test.as_ref().and_then(|t| t.level_dbfs()),
        Screen::Main(_) => None,
    }
}

#[test]
fn the_microphone_test_shows_the_inputs_level_until_connecting() {
    let (mut app, _handle, requests) = app("me");
    app.settings.input = InputChoice::Tone(440.0);
    let mut h = harness(app);
    h.run();
    assert!(h.query_by_label("Level").is_none(), "off until asked");
    h.get_by_label("Test microphone").click();
    h.run();
    frames_until(&mut h, |h| mic_level(h).is_some());
    // A tone at amplitude 0.3 is -13.5 dBFS.
    let db = mic_level(&h).expect("measured");
    assert!((db - -13.5).abs() < 0.5, "{db}");
    h.run_steps(2);
    h.get_by_label("Level");
    assert!(h.query_by_label("≤-60 dB").is_none());
    // Another input: the test follows it (silence reads as the bottom of the scale).
    h.state_mut().settings.input = InputChoice::Null;
    h.run_steps(2);
    frames_until(&mut h, |h| mic_level(h).is_some_and(|db| db < -80.0));
    h.run_steps(2);
    h.get_by_label("≤-60 dB");
    // Clicked again, it stops.
    h.get_by_label("Test microphone").click();
    h.run();
    assert!(h.query_by_label("Level").is_none());
    // Running while connecting: stopped first (the engine opens the input next).
    h.get_by_label("Test microphone").click();
    h.run();
    h.get_by_label("Connect").click();
    h.run_steps(2);
    assert!(matches!(h.state().screen, Screen::Main(_)));
    assert_eq!(requests.lock().unwrap().len(), 1);
}

#[test]
fn an_input_that_cannot_be_opened_is_reported_by_the_test() {
    let (mut app, _handle, _) = app("me");
    app.settings.input = InputChoice::Wav("/nonexistent/speech.wav".into());
    let mut h = harness(app);
    h.run();
    h.get_by_label("Test microphone").click();
    h.run();
    frames_until(&mut h, |h| {
        h.query_by_label_contains("cannot open the input").is_some()
    });
    h.get_by_label_contains("cannot open the input");
}
