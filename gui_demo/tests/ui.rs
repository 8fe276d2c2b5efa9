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
    h.get_by_label("hello there");
    h.get_by_label("bob:");
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
    h.get_by_label_contains("Could not connect: name must");
    // A bad address is refused too.
    h.state_mut().settings.server = "not an address".into();
    h.state_mut().settings.name = "alice".into();
    h.run();
    h.get_by_label_contains("server must be IP:PORT");
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
    let msg = "no capture device (none); sending silence";
    // In the banner, as a system line in the chat log, and in the audio panel.
    assert_eq!(h.query_all_by_label(msg).count(), 3);
    h.get_by_label("Dismiss").click();
    h.run();
    assert_eq!(h.query_all_by_label(msg).count(), 2);
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
