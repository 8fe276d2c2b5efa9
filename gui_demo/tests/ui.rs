//! UI tests with egui_kittest: the real app on a stub backend, fed synthetic engine events.
//! No window, no GPU, no network: the harness runs egui headless and queries its accessibility tree.

use std::sync::{Arc, Mutex};

use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use gui_demo::app::Screen;
use gui_demo::backend::{stub, Backend, Request, StubHandle};
use gui_demo::settings::{InputChoice, OutputChoice, Settings};
use gui_demo::{ConnectRequest, GuiApp};
use voice_client::{ChannelId, EngineStats, Event, RemoteStats, SessionToken};
use voice_core::engine::ConnectionState;
use voice_core::metrics::StreamStats;
use voice_core::proto::tcp::{ChannelInfo, UserInfo};

/// An app on the connect screen whose connector hands out one stub backend and records requests.
fn app(name: &str) -> (GuiApp, StubHandle, Arc<Mutex<Vec<ConnectRequest>>>) {
    let (backend, handle) = stub();
    let mut slot = Some(backend);
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    let connector: gui_demo::Connector = Box::new(move |req, _ctx| {
        seen.lock().unwrap().push(req.clone());
        slot.take()
            .map(|b| Box::new(b) as Box<dyn Backend>)
            .ok_or_else(|| "stub already used".to_string())
    });
    let settings = Settings {
        name: name.into(),
        input: InputChoice::Null,
        output: OutputChoice::Null,
        ..Settings::default()
    };
    (GuiApp::new(settings, connector), handle, requests)
}

fn harness(app: GuiApp) -> Harness<'static, GuiApp> {
    Harness::builder()
        .with_size([1200.0, 800.0])
        .build_ui_state(|ui, app: &mut GuiApp| app.show(ui), app)
}

fn user(id: u32, name: &str) -> UserInfo {
    UserInfo {
        session: SessionToken(id),
        name: name.into(),
    }
}

fn channel(id: u32, name: &str, users: Vec<UserInfo>) -> ChannelInfo {
    ChannelInfo {
        id: ChannelId(id),
        name: name.into(),
        users,
    }
}

/// Connected as "me" (session 1) in Lobby; Team A holds carol.
fn connected() -> (Harness<'static, GuiApp>, StubHandle) {
    let (app, handle, _) = app("me");
    let mut h = harness(app);
    h.get_by_label("Connect").click();
    // Not `run`: the "Connecting…" spinner repaints until the (stub) relay welcomes us.
    h.run_steps(2);
    assert!(
        h.state().session().is_some(),
        "connect screen did not connect"
    );
    for ev in [
        Event::Connected {
            session: SessionToken(1),
            name: "me".into(),
        },
        Event::ChannelList {
            channels: vec![
                channel(1, "Lobby", vec![]),
                channel(2, "Team A", vec![user(7, "carol")]),
            ],
        },
        Event::ChannelJoined {
            channel: channel(1, "Lobby", vec![user(1, "me")]),
        },
    ] {
        handle.events.send(ev).unwrap();
    }
    h.run();
    (h, handle)
}

fn send(h: &mut Harness<'static, GuiApp>, handle: &StubHandle, ev: Event) {
    handle.events.send(ev).unwrap();
    h.run();
}

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
    send(
        &mut h,
        &handle,
        Event::UserJoined {
            channel: ChannelId(1),
            user: user(5, "bob"),
        },
    );
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
    send(
        &mut h,
        &handle,
        Event::UserJoined {
            channel: ChannelId(1),
            user: user(5, "bob"),
        },
    );
    h.get_by_label("bob").click_secondary();
    h.run();
    h.get_by_label("Mute").click();
    h.run();
    assert!(handle
        .sent()
        .contains(&Request::UserMute(SessionToken(5), true)));
    h.get_by_label("bob").click_secondary();
    h.run();
    h.get_by_label("Whisper (toggle)").click();
    h.run();
    assert!(handle
        .sent()
        .contains(&Request::Whisper(Some(SessionToken(5)))));
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
        }],
    };
    handle.stats.send(stats).unwrap();
    h.state_mut().settings.overlay_open = true;
    h.run();
    // In the table (and in the plot legends).
    assert!(h.query_all_by_label("dave").count() >= 1);
    h.get_by_label("12.5 %");
    h.get_by_label("3.5 ms");
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
    send(
        &mut h,
        &handle,
        Event::UserJoined {
            channel: ChannelId(1),
            user: user(5, "bob"),
        },
    );
    h.get_by_label("bob").click_secondary();
    h.run();
    h.get_by_label("Whisper while holding B").click();
    h.run();
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

/// An app whose connector hands out the given stub backends in turn.
fn app_n(n: usize) -> (GuiApp, Vec<StubHandle>, Arc<Mutex<Vec<ConnectRequest>>>) {
    let mut backends = Vec::new();
    let mut handles = Vec::new();
    for _ in 0..n {
        let (b, h) = stub();
        backends.push(b);
        handles.push(h);
    }
    backends.reverse();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    let connector: gui_demo::Connector = Box::new(move |req, _ctx| {
        seen.lock().unwrap().push(req.clone());
        backends
            .pop()
            .map(|b| Box::new(b) as Box<dyn Backend>)
            .ok_or_else(|| "no more stubs".to_string())
    });
    let settings = Settings {
        name: "me".into(),
        input: InputChoice::Null,
        output: OutputChoice::Null,
        ..Settings::default()
    };
    (GuiApp::new(settings, connector), handles, requests)
}

fn welcome(h: &mut Harness<'static, GuiApp>, handle: &StubHandle, me: u32, extra: Vec<UserInfo>) {
    let mut lobby = vec![user(me, "me")];
    lobby.extend(extra);
    for ev in [
        Event::Connected {
            session: SessionToken(me),
            name: "me".into(),
        },
        Event::ChannelList {
            channels: vec![
                channel(1, "Lobby", vec![]),
                channel(2, "Team A", vec![user(7, "carol")]),
            ],
        },
        Event::ChannelJoined {
            channel: channel(1, "Lobby", lobby),
        },
    ] {
        handle.events.send(ev).unwrap();
    }
    h.run();
}

fn small_harness(app: GuiApp) -> Harness<'static, GuiApp> {
    Harness::builder()
        .with_size([640.0, 420.0])
        .build_ui_state(|ui, app: &mut GuiApp| app.show(ui), app)
}

fn stats_with(remotes: Vec<RemoteStats>, state: ConnectionState, level: f32) -> EngineStats {
    EngineStats {
        state,
        session: SessionToken(1),
        channel: Some(ChannelId(1)),
        udp_ready: true,
        rtt_ms: Some(3.5),
        udp_rtt_ms: None,
        transmitting: false,
        muted: false,
        deafened: false,
        whisper: None,
        input_level_dbfs: level,
        tx_packets: 0,
        tx_bytes: 0,
        rx_packets: 0,
        rx_malformed: 0,
        encoder_loss_hint: 0,
        remotes,
    }
}

fn remote(id: u32, name: &str) -> RemoteStats {
    RemoteStats {
        session: SessionToken(id),
        name: name.into(),
        speaking: false,
        volume: 1.0,
        muted: false,
        stream: StreamStats::default(),
    }
}

// Defect 1: the WAV path field keeps every slash, typed one key at a time.
#[test]
fn wav_path_field_keeps_slashes() {
    let (mut app, _handle, _) = app("me");
    app.settings.input = InputChoice::Wav(std::path::PathBuf::new());
    let mut h = harness(app);
    h.run();
    let typed = "/home/me/speech.wav";
    h.get_by_label("WAV path").focus();
    h.run();
    for c in typed.chars() {
        h.get_by_label("WAV path").type_text(&c.to_string());
        h.run();
    }
    assert_eq!(
        h.state().settings.input,
        InputChoice::Wav(typed.into()),
        "the field ate characters"
    );
    assert_eq!(h.get_by_label("WAV path").value().as_deref(), Some(typed));
}

// Defect 1: ALSA's descriptive lines are not offered as devices.
#[test]
fn junk_device_names_are_filtered() {
    let names = vec![
        "default".to_string(),
        "Discard all samples (playback) or generate zero samples (capture)".into(),
        "null".into(),
        "HDA Intel PCH, ALC892 Analog\nFront speakers".into(),
        "default".into(),
        "USB Headset".into(),
    ];
    assert_eq!(
        gui_demo::app::usable_device_names(names),
        vec!["default".to_string(), "USB Headset".into()]
    );
}

// Defect 2: a missing speaker gets speaker advice, once.
#[test]
fn missing_speaker_notice_gives_speaker_advice() {
    let (mut h, handle) = connected();
    send(
        &mut h,
        &handle,
        Event::AudioNotice {
            message: "no playback device (audio device: no playback device); output discarded"
                .into(),
        },
    );
    assert_eq!(h.query_all_by_label_contains("No speaker").count(), 1);
    assert!(h.query_all_by_label_contains("test tone").next().is_none());
}

// Defect 3: a long word wraps inside the chat panel.
#[test]
fn long_words_wrap_inside_the_chat() {
    let (app, handle, _) = app("me");
    let mut h = small_harness(app);
    h.get_by_label("Connect").click();
    h.run_steps(2);
    welcome(&mut h, &handle, 1, vec![]);
    let word = "x".repeat(300);
    send(
        &mut h,
        &handle,
        Event::Chat {
            channel: ChannelId(1),
            from: SessionToken(5),
            from_name: "bob".into(),
            text: word.clone(),
            server_time_ms: 1_700_000_000_000,
        },
    );
    let line = h.get_by_label_contains(&word).rect();
    let chat = h.get_by_label("Chat").rect();
    let controls = h.get_by_label("Voice").rect();
    assert!(
        line.left() >= chat.left() - 1.0 && line.right() < controls.left() - 8.0,
        "chat line {line:?} leaves the chat column (heading {chat:?}, controls {controls:?})"
    );
    assert!(line.height() > 30.0, "a 300-letter word takes several rows");
}

// Defect 4: one colour per sender; departed senders leave table, plots and legends.
#[test]
fn overlay_drops_departed_senders() {
    let (mut h, handle) = connected();
    h.state_mut().settings.overlay_open = true;
    handle
        .stats
        .send(stats_with(
            vec![remote(5, "dave"), remote(6, "erin")],
            ConnectionState::Connected,
            -40.0,
        ))
        .unwrap();
    h.run();
    assert!(
        h.query_all_by_label("dave").count() >= 2,
        "table and legend"
    );
    assert_eq!(
        gui_demo::ui::overlay::sender_colour(SessionToken(5)),
        gui_demo::ui::overlay::sender_colour(SessionToken(5))
    );
    assert_ne!(
        gui_demo::ui::overlay::sender_colour(SessionToken(5)),
        gui_demo::ui::overlay::sender_colour(SessionToken(6))
    );
    handle
        .stats
        .send(stats_with(
            vec![remote(6, "erin")],
            ConnectionState::Connected,
            -40.0,
        ))
        .unwrap();
    h.run();
    assert!(h.query_by_label("dave").is_none(), "dave left");
    assert!(h.query_all_by_label("erin").count() >= 2);
}

// Defects 5 and 6: a lost relay greys the tree, clears the ping, says why and when the next
// attempt is, and offers Cancel.
#[test]
fn lost_relay_is_shown_honestly_and_can_be_cancelled() {
    let (mut h, handle) = connected();
    send(&mut h, &handle, Event::Rtt { ms: 0.1 });
    h.get_by_label_contains("ping 0.1 ms");
    for _ in 0..2 {
        handle
            .events
            .send(Event::Disconnected {
                reason: "connect to 127.0.0.1:7400 failed: Connection refused (os error 111); \
                         retrying in 4000 ms"
                    .into(),
            })
            .unwrap();
    }
    // Not `run`: the countdown asks for a repaint every second.
    h.run_steps(3);
    assert!(h.query_all_by_label_contains("ping").next().is_none());
    h.get_by_label_contains("Retry 3 in 4 s · cannot reach stub: Connection refused");
    h.get_by_label_contains("Not connected: last known state");
    let s = h.state().session().unwrap();
    assert_eq!(s.attempts, 2);
    assert!(s.next_repaint(0.0).is_some(), "the countdown ticks");
    // Only one chat line for the drop, not one per failed attempt.
    assert_eq!(
        s.state
            .chat
            .iter()
            .filter(|l| l.text.starts_with("disconnected"))
            .count(),
        1
    );
    // The overlay says "-" rather than the last ping.
    handle
        .stats
        .send(stats_with(vec![], ConnectionState::Disconnected, -60.0))
        .unwrap();
    h.state_mut().settings.overlay_open = true;
    h.run_steps(2);
    assert!(
        h.query_by_label("3.5 ms").is_none(),
        "stale ping in the overlay"
    );
    h.state_mut().settings.overlay_open = false;
    h.run_steps(2);
    h.get_by_label("Cancel").click();
    h.run();
    assert!(matches!(h.state().screen, Screen::Connect(_)));
}

// Defect 7 and 12: at 640×420 the chat input, Send and Dismiss are visible and do not overlap;
// the banner and the whisper hint move nothing.
#[test]
fn small_window_keeps_everything_reachable_and_still() {
    let (app, handle, _) = app("me");
    let mut h = small_harness(app);
    h.get_by_label("Connect").click();
    h.run_steps(2);
    welcome(&mut h, &handle, 1, vec![user(5, "bob")]);
    let window = egui::Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(640.0, 420.0));
    let heading_before = h.get_by_label("Chat").rect();
    send(
        &mut h,
        &handle,
        Event::AudioNotice {
            message: "no capture device (x); sending silence".into(),
        },
    );
    for label in ["Send", "Dismiss", "Disconnect", "Chat", "All channels"] {
        let r = h.get_by_label(label).rect();
        assert!(window.contains_rect(r), "{label} at {r:?} is cut off");
    }
    let chat = h.get_by_label("Chat").rect();
    let all = h.get_by_label("All channels").rect();
    assert!(
        !chat.intersects(all),
        "Chat {chat:?} overlaps All channels {all:?}"
    );
    assert_eq!(
        h.get_by_label("Chat").rect(),
        heading_before,
        "banner moved the chat"
    );
    h.get_by_label("Dismiss").click();
    h.run();
    assert_eq!(
        h.get_by_label("Chat").rect(),
        heading_before,
        "dismiss moved the chat"
    );
    // Whispering shows a hint beside the target, not above the input.
    let rects = |h: &Harness<'static, GuiApp>| {
        h.query_all_by_label("To #Lobby")
            .map(|n| n.rect())
            .collect::<Vec<_>>()
    };
    let before = rects(&h);
    assert!(
        before.iter().any(|r| r.width() > 100.0),
        "the chat input is wide enough to type in: {before:?}"
    );
    h.get_by_label("bob").click_secondary();
    h.run();
    h.get_by_label("Whisper (toggle)").click();
    h.run();
    h.key_press(egui::Key::Escape);
    h.run();
    h.get_by_label_contains("whisper to bob");
    assert_eq!(rects(&h), before, "the whisper hint moved the input");
}

// Defect 8: the level reads as text beside the meter.
#[test]
fn level_meter_text_is_beside_the_bar() {
    let (mut h, handle) = connected();
    handle
        .stats
        .send(stats_with(vec![], ConnectionState::Connected, -40.0))
        .unwrap();
    h.run();
    h.get_by_label("-40 dB");
}

// Defect 9: Apply keeps chat, mute, channel and per-user preferences.
#[test]
fn apply_keeps_chat_channel_and_user_prefs() {
    let (app, handles, requests) = app_n(2);
    let mut h = harness(app);
    h.get_by_label("Connect").click();
    h.run_steps(2);
    welcome(&mut h, &handles[0], 1, vec![user(5, "bob")]);
    // Move to Team A, chat, mute bob.
    send(
        &mut h,
        &handles[0],
        Event::ChannelJoined {
            channel: channel(2, "Team A", vec![user(1, "me"), user(5, "bob")]),
        },
    );
    send(
        &mut h,
        &handles[0],
        Event::Chat {
            channel: ChannelId(2),
            from: SessionToken(5),
            from_name: "bob".into(),
            text: "remember me".into(),
            server_time_ms: 1_700_000_000_000,
        },
    );
    h.get_by_label("bob").click_secondary();
    h.run();
    h.get_by_label("Mute").click();
    h.run();
    assert!(h.state().settings.user_prefs["bob"].muted);
    h.get_by_label("Mute mic").click();
    h.run();
    h.state_mut().session_mut().unwrap().audio_dirty = true;
    h.run();
    h.get_by_label("Apply (restarts the connection)").click();
    h.run_steps(2);
    assert_eq!(requests.lock().unwrap().len(), 2);
    assert!(h
        .state()
        .session()
        .unwrap()
        .state
        .chat
        .iter()
        .any(|l| l.text == "remember me"));
    let second = &handles[1];
    // bob comes back under a new session token.
    welcome(&mut h, second, 3, vec![user(9, "bob")]);
    h.run();
    let sent = second.sent();
    assert!(sent.contains(&Request::Join(ChannelId(2))), "{sent:?}");
    assert!(sent.contains(&Request::Mute(true)), "{sent:?}");
    assert!(
        sent.contains(&Request::UserMute(SessionToken(9), true)),
        "{sent:?}"
    );
    // Back in Team A, the old line is on screen again.
    send(
        &mut h,
        second,
        Event::ChannelJoined {
            channel: channel(2, "Team A", vec![user(3, "me"), user(9, "bob")]),
        },
    );
    h.get_by_label_contains("remember me");
    h.get_by_label("(muted)");
}

// Defect 10: a host name is resolved off the UI thread and the connection starts.
#[test]
fn host_names_are_resolved() {
    let (mut app, _handle, requests) = app("me");
    app.settings.server = "localhost:7400".into();
    let mut h = harness(app);
    h.get_by_label("Connect").click();
    h.run_steps(1);
    for _ in 0..200 {
        if h.state().session().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        h.run_steps(1);
    }
    assert!(h.state().session().is_some(), "never connected");
    let reqs = requests.lock().unwrap();
    assert!(reqs[0].server.ip().is_loopback());
    assert_eq!(reqs[0].server.port(), 7400);
}

// Defect 11: two "bob"s are told apart.
#[test]
fn duplicate_names_are_disambiguated() {
    let (mut h, handle) = connected();
    for id in [5, 9] {
        send(
            &mut h,
            &handle,
            Event::UserJoined {
                channel: ChannelId(1),
                user: user(id, "bob"),
            },
        );
    }
    h.get_by_label("bob");
    h.get_by_label("bob (2)");
    send(
        &mut h,
        &handle,
        Event::Chat {
            channel: ChannelId(1),
            from: SessionToken(9),
            from_name: "bob".into(),
            text: "it's me".into(),
            server_time_ms: 1_700_000_000_000,
        },
    );
    h.get_by_label_contains("bob (2): it's me");
}

// Defect 14: no error before typing; a missing WAV file says so.
#[test]
fn connect_screen_errors_are_specific() {
    let (mut app, _handle, requests) = app("");
    app.settings.name.clear();
    let mut h = harness(app);
    h.run();
    assert!(h.query_all_by_label_contains("name must").next().is_none());
    h.state_mut().settings.name = "me".into();
    h.state_mut().settings.input = InputChoice::Wav("/nonexistent/speech.wav".into());
    h.run();
    h.get_by_label("Connect").click();
    h.run();
    h.get_by_label_contains("WAV file not found: /nonexistent/speech.wav");
    assert!(h
        .query_all_by_label_contains("Could not connect")
        .next()
        .is_none());
    assert!(requests.lock().unwrap().is_empty());
}

// Defect 14: --channel by name joins the channel of that name once the list is known.
#[test]
fn channel_by_name_is_joined() {
    let (mut app, handle, _) = app("me");
    app.join_on_connect(Some(gui_demo::app::JoinTarget::Name("team a".into())));
    let mut h = harness(app);
    h.get_by_label("Connect").click();
    h.run_steps(2);
    welcome(&mut h, &handle, 1, vec![]);
    assert!(handle.sent().contains(&Request::Join(ChannelId(2))));
}

// Defect 15: idle statistics do not repaint; visible plots and real changes do.
#[test]
fn idle_statistics_do_not_repaint() {
    use gui_demo::backend::worth_repaint;
    let a = stats_with(vec![remote(5, "bob")], ConnectionState::Connected, -50.0);
    let mut b = a.clone();
    b.input_level_dbfs = -51.5;
    assert!(!worth_repaint(Some(&a), &b, false), "level noise");
    assert!(worth_repaint(Some(&a), &b, true), "plots visible");
    b.input_level_dbfs = -30.0;
    assert!(worth_repaint(Some(&a), &b, false), "a real level change");
    let mut c = a.clone();
    c.remotes[0].speaking = true;
    assert!(worth_repaint(Some(&a), &c, false), "someone is heard");
    let mut d = a.clone();
    d.state = ConnectionState::Disconnected;
    assert!(worth_repaint(Some(&a), &d, false));
    // Periodic news that changes nothing does not wake the window.
    use gui_demo::backend::event_is_news;
    let mut last = None;
    let list = Event::ChannelList {
        channels: vec![channel(1, "Lobby", vec![])],
    };
    assert!(event_is_news(&list, &mut last));
    assert!(!event_is_news(&list, &mut last));
    assert!(!event_is_news(&Event::Rtt { ms: 1.0 }, &mut last));
    assert!(event_is_news(
        &Event::ChannelList {
            channels: vec![channel(1, "Lobby", vec![user(5, "bob")])],
        },
        &mut last
    ));
    // Connected and idle, the app itself only wakes for the channel list refresh.
    let (h, _handle) = connected();
    assert_eq!(
        h.state().session().unwrap().next_repaint(10.0),
        Some(gui_demo::app::LIST_REFRESH_S)
    );
}

// Chat: own lines, mentions and links.
#[test]
fn chat_mentions_and_links() {
    use gui_demo::ui::chat::{links, mentions};
    assert!(mentions("hey Me, look", "me"));
    assert!(!mentions("memes", "me"));
    let t = "see https://example.org/a?b=1. and http://x.y";
    let found: Vec<&str> = links(t).into_iter().map(|r| &t[r]).collect();
    assert_eq!(found, vec!["https://example.org/a?b=1", "http://x.y"]);
    let (mut h, handle) = connected();
    h.state_mut().session_mut().unwrap().state.my_name = "me".into();
    send(
        &mut h,
        &handle,
        Event::Chat {
            channel: ChannelId(1),
            from: SessionToken(1),
            from_name: "me".into(),
            text: "my own line".into(),
            server_time_ms: 1_700_000_000_000,
        },
    );
    let own = h.state().session().unwrap().state.chat.last().unwrap().own;
    assert!(own);
}

// Chat: a link in a line opens on click.
#[test]
fn chat_links_open_on_click() {
    let (mut h, handle) = connected();
    send(
        &mut h,
        &handle,
        Event::Chat {
            channel: ChannelId(1),
            from: SessionToken(5),
            from_name: "bo".into(),
            text: "https://example.org/some/long/path/to/click".into(),
            server_time_ms: 1_700_000_000_000,
        },
    );
    h.get_by_label_contains("https://example.org").click();
    h.step();
    let opened = h.output().platform_output.commands.iter().any(|c| {
        matches!(c, egui::OutputCommand::OpenUrl(u) if u.url == "https://example.org/some/long/path/to/click")
    });
    assert!(opened, "{:?}", h.output().platform_output.commands);
}
