//! UI tests with egui_kittest: the real app on a stub backend, fed synthetic engine events.
//! No window, no GPU, no network: the harness runs egui headless and queries its accessibility tree.

use crate::common;

use common::*;
use egui_kittest::kittest::Queryable;
use gui_demo::app::Screen;
use gui_demo::backend::{Request, StubHandle};
use voice_client::{ChannelId, EngineStats, Event, RemoteStats, SessionToken, VoiceState};
use voice_core::engine::ConnectionState;
use voice_core::metrics::StreamStats;

#[test]
fn f3_shows_and_hides_the_overlay() {
    let (mut h, _handle) = connected();
    assert!(h.query_by_label("Diagnostics").is_none());
    h.key_press(egui::Key::F3);
    h.run();
    assert!(h.state().settings.overlay_open);
    h.get_by_label("Diagnostics");
    h.get_by_label("Session token");
    h.key_press(egui::Key::F3);
    h.run();
    assert!(!h.state().settings.overlay_open);
    assert!(h.query_by_label("Diagnostics").is_none());
    // The status-bar button does the same.
    h.get_by_label("Diagnostics (F3)").click();
    h.run();
    assert!(h.query_by_label("Diagnostics").is_some());
}

#[test]
fn user_joined_and_left_update_the_tree() {
    let (mut h, handle) = connected();
    assert!(h.query_by_label("bob").is_none());
    joins(&mut h, &handle, 5, "bob");
    h.get_by_label("bob");
    h.get_by_label_contains("# Lobby  (2)");
    let s = h.state().session().unwrap();
    assert_eq!(s.state.channel_of(SessionToken(5)), Some(ChannelId(1)));
    send(
        &mut h,
        &handle,
        Event::UserLeft {
            channel: ChannelId(1),
            session: SessionToken(5),
        },
    );
    assert!(h.query_by_label("bob").is_none());
    h.get_by_label_contains("# Lobby  (1)");
}

#[test]
fn chat_event_is_appended() {
    let (mut h, handle) = connected();
    let before = h.state().session().unwrap().state.chat.len();
    send(
        &mut h,
        &handle,
        Event::Chat {
            channel: ChannelId(1),
            from: SessionToken(5),
            from_name: "bob".into(),
            text: "hello there".into(),
            server_time_ms: 1_700_000_000_000,
        },
    );
    h.get_by_label_contains("bob: hello there");
    let chat = &h.state().session().unwrap().state.chat;
    assert_eq!(chat.len(), before + 1);
    assert_eq!(chat.last().unwrap().text, "hello there");
}

#[test]
fn chat_input_sends_to_the_engine() {
    let (mut h, handle) = connected();
    h.state_mut().session_mut().unwrap().chat_input = "hi all".into();
    h.run();
    h.get_by_label("Send").click();
    h.run();
    assert!(handle.sent().contains(&Request::Chat("hi all".into())));
    assert!(h.state().session().unwrap().chat_input.is_empty());
}

#[test]
fn connect_form_validates_its_input() {
    let (app, _handle, requests) = app("");
    let mut h = harness(app);
    // Empty name: refused, stays on the connect screen, the connector is never called.
    h.get_by_label("Connect").click();
    h.run();
    assert!(matches!(h.state().screen, Screen::Connect(_)));
    assert!(h
        .state()
        .connect_error()
        .is_some_and(|e| e.contains("name")));
    h.get_by_label_contains("name must");
    // A bad address is refused too.
    h.state_mut().settings.server = "not an address".into();
    h.state_mut().settings.name = "alice".into();
    h.run();
    h.get_by_label("Connect").click();
    h.run();
    // Said once (not as a live problem and again as "could not connect").
    assert_eq!(h.query_all_by_label_contains("server must be").count(), 1);
    h.get_by_label("Connect").click();
    h.run();
    assert!(matches!(h.state().screen, Screen::Connect(_)));
    assert!(requests.lock().unwrap().is_empty());
    // Typed into the form: accepted, trimmed, and handed to the connector.
    h.state_mut().settings.server = "127.0.0.1:7400".into();
    h.state_mut().settings.name.clear();
    h.run();
    let name = h.get_by_label("Name");
    name.focus();
    name.type_text("  alice ");
    h.run();
    h.get_by_label("Connect").click();
    h.run_steps(2);
    assert!(h.state().session().is_some());
    let reqs = requests.lock().unwrap();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].name, "alice");
    assert_eq!(reqs[0].server, "127.0.0.1:7400".parse().unwrap());
}

#[test]
fn clicking_a_channel_joins_it() {
    let (mut h, handle) = connected();
    h.get_by_label_contains("# Team A").click();
    h.run();
    assert!(handle.sent().contains(&Request::Join(ChannelId(2))));
}

#[test]
fn channel_list_refresh_is_requested() {
    let (h, handle) = connected();
    drop(h);
    assert!(handle.sent().contains(&Request::ListChannels));
}

#[test]
fn context_menu_mutes_and_whispers() {
    let (mut h, handle) = connected();
    joins(&mut h, &handle, 5, "bob");
    user_menu(&mut h, "bob", "Mute");
    assert!(handle
        .sent()
        .contains(&Request::UserMute(SessionToken(5), true)));
    user_menu(&mut h, "bob", "Whisper (toggle)");
    assert!(handle
        .sent()
        .contains(&Request::Whisper(Some(SessionToken(5)))));
}

#[test]
fn others_mute_and_deafen_show_in_the_tree_and_local_prefs_are_kept_by_user_id() {
    let (mut h, handle) = connected();
    let mut bob = user(5, "bob");
    bob.user_id = "u-5".into();
    send(
        &mut h,
        &handle,
        Event::UserJoined {
            channel: ChannelId(1),
            user: bob,
        },
    );
    assert!(h.query_by_label("mic off").is_none() && h.query_by_label("deaf").is_none());
    let state = |muted, deafened| Event::UserState {
        channel: ChannelId(1),
        session: SessionToken(5),
        state: VoiceState { muted, deafened },
    };
    send(&mut h, &handle, state(true, true));
    h.get_by_label("mic off");
    h.get_by_label("deaf");
    send(&mut h, &handle, state(false, true));
    assert!(h.query_by_label("mic off").is_none());
    h.get_by_label("deaf");
    // A local mute is remembered under bob's stable id, not his name.
    user_menu(&mut h, "bob", "Mute");
    let prefs = &h.state().settings.user_prefs;
    assert!(prefs.get("u-5").is_some_and(|p| p.muted), "{prefs:?}");
    assert!(!prefs.contains_key("bob"));
}

#[test]
fn push_to_talk_key_opens_the_microphone() {
    let (mut h, handle) = connected();
    let last_ptt = |handle: &StubHandle| {
        handle
            .sent()
            .into_iter()
            .rfind(|c| matches!(c, Request::PushToTalk(_)))
    };
    assert_eq!(last_ptt(&handle), None);
    h.key_down(egui::Key::V);
    h.run();
    assert_eq!(last_ptt(&handle), Some(Request::PushToTalk(true)));
    h.key_up(egui::Key::V);
    h.run();
    assert_eq!(last_ptt(&handle), Some(Request::PushToTalk(false)));
    // Typing a "v" into the chat box must not talk.
    h.get_by_label("To #Lobby").focus();
    h.key_down(egui::Key::V);
    h.run();
    assert_eq!(last_ptt(&handle), Some(Request::PushToTalk(false)));
}

#[test]
fn overlay_shows_per_sender_statistics() {
    let (mut h, handle) = connected();
    let stats = EngineStats {
        state: ConnectionState::Connected,
        session: SessionToken(1),
        channel: Some(ChannelId(1)),
        udp_ready: true,
        path: Some(voice_client::VoicePath::Udp),
        status: voice_client::ConnectionStatus::Connected {
            path: voice_client::VoicePath::Udp,
        },
        tunnel_tx_packets: 0,
        tunnel_rx_packets: 0,
        rtt_ms: Some(3.5),
        udp_rtt_ms: Some(2.0),
        transmitting: false,
        muted: false,
        deafened: false,
        whisper: None,
        input_level_dbfs: -40.0,
        tx_packets: 10,
        tx_bytes: 1000,
        rx_packets: 20,
        rx_malformed: 0,
        rx_dropped: 0,
        encoder_loss_hint: 0,
        remotes: vec![RemoteStats {
            session: SessionToken(5),
            name: "dave".into(),
            speaking: true,
            volume: 1.0,
            muted: false,
            stream: StreamStats {
                buffer_depth: 3,
                loss_percent_10s: 12.5,
                ..StreamStats::default()
            },
            encrypted: false,
        }],
        spatial: None,
        playback_pacing: None,
        e2ee: Default::default(),
        capture: Some(voice_client::CaptureStats {
            speech_probability: 0.87,
            speech: true,
            erle_db: Some(31.4),
            echo_delay_ms: Some(72),
            frames: 500,
            far_end_chunks: 1000,
            clock_drift_ppm: -83.4,
        }),
    };
    handle.stats.send(stats).unwrap();
    h.state_mut().settings.overlay_open = true;
    h.run();
    // In the table (and in the plot legends).
    assert!(h.query_all_by_label("dave").count() >= 1);
    h.get_by_label("12.5 %");
    h.get_by_label("3.5 ms");
    // What capture processing measured.
    h.get_by_label("speech 87 %");
    h.get_by_label("31.4 dB");
    h.get_by_label("72 ms");
    h.get_by_label("-83 ppm");
    let senders = &h.state().session().unwrap().history.senders;
    assert_eq!(senders[&SessionToken(5)].depth.len(), 1);
}

#[test]
fn audio_notice_is_shown_as_a_banner() {
    let (mut h, handle) = connected();
    send(
        &mut h,
        &handle,
        Event::AudioNotice {
            message: "no capture device (none); sending silence".into(),
        },
    );
    let msg = "No microphone could be opened";
    // Once, in plain words with advice: in the banner; dismissed, by the audio pickers.
    assert_eq!(h.query_all_by_label_contains(msg).count(), 1);
    assert!(h
        .query_all_by_label_contains("capture device")
        .next()
        .is_none());
    h.get_by_label("Dismiss").click();
    h.run();
    assert_eq!(h.query_all_by_label_contains(msg).count(), 1);
    assert!(h.query_by_label("Dismiss").is_none());
}

#[test]
fn whisper_key_whispers_while_held() {
    let (mut h, handle) = connected();
    joins(&mut h, &handle, 5, "bob");
    user_menu(&mut h, "bob", "Whisper while holding B");
    assert_eq!(
        h.state().session().unwrap().whisper_hold,
        Some(SessionToken(5))
    );
    let whisper_and_ptt = |handle: &StubHandle| {
        let sent = handle.sent();
        (
            sent.iter()
                .rfind(|c| matches!(c, Request::Whisper(_)))
                .cloned(),
            sent.iter()
                .rfind(|c| matches!(c, Request::PushToTalk(_)))
                .cloned(),
        )
    };
    h.key_down(egui::Key::B);
    h.run();
    assert_eq!(
        whisper_and_ptt(&handle),
        (
            Some(Request::Whisper(Some(SessionToken(5)))),
            Some(Request::PushToTalk(true))
        )
    );
    h.key_up(egui::Key::B);
    h.run();
    assert_eq!(
        whisper_and_ptt(&handle),
        (
            Some(Request::Whisper(None)),
            Some(Request::PushToTalk(false))
        )
    );
}

/// "Microphone processing" lets background voices through and back out: each click sends the
/// engine the capture settings with the speech detector's background-voice margin off (0) or at
/// its default.
#[test]
fn background_voices_are_ignored_by_default_and_can_be_let_through() {
    let (mut h, handle) = connected();
    // The processing controls are there for a capture device.
    h.state_mut().settings.input = gui_demo::settings::InputChoice::Device(None);
    h.run();
    h.get_by_label("Microphone processing").click();
    h.run();
    let last_margin = |handle: &StubHandle| {
        handle.sent().into_iter().rev().find_map(|r| match r {
            Request::Capture(c) => Some(c.vad_config.background_margin_db),
            _ => None,
        })
    };
    assert_eq!(last_margin(&handle), None, "nothing changed yet");
    h.get_by_label("Ignore background voices").click();
    h.run();
    assert_eq!(last_margin(&handle), Some(0.0));
    assert_eq!(
        h.state().settings.capture.vad_config.background_margin_db,
        0.0
    );
    h.get_by_label("Ignore background voices").click();
    h.run();
    assert_eq!(
        last_margin(&handle),
        Some(voice_core::capture::BACKGROUND_MARGIN_DB)
    );
}
