//! Shared harness for the UI tests: the real app on stub backends, synthetic engine events.
// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use gui_demo::backend::{stub, Backend, StubHandle};
use gui_demo::settings::{InputChoice, OutputChoice, Settings};
use gui_demo::{ConnectRequest, GuiApp};
use voice_client::{ChannelId, EngineStats, Event, RemoteStats, SessionToken};
use voice_core::engine::ConnectionState;
use voice_core::metrics::StreamStats;
use voice_core::proto::tcp::{ChannelInfo, UserInfo};

/// An app on the connect screen whose connector hands out one stub backend and records requests.
pub fn app(name: &str) -> (GuiApp, StubHandle, Arc<Mutex<Vec<ConnectRequest>>>) {
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

pub fn harness(app: GuiApp) -> Harness<'static, GuiApp> {
    Harness::builder()
        .with_size([1200.0, 800.0])
        .build_ui_state(|ui, app: &mut GuiApp| app.show(ui), app)
}

pub fn user(id: u32, name: &str) -> UserInfo {
    UserInfo {
        session: SessionToken(id),
        name: name.into(),
        user_id: name.into(),
        state: Default::default(),
    }
}

pub fn channel(id: u32, name: &str, users: Vec<UserInfo>) -> ChannelInfo {
    ChannelInfo {
        id: ChannelId(id),
        name: name.into(),
        users,
    }
}

/// Connected as "me" (session 1) in Lobby; Team A holds carol.
pub fn connected() -> (Harness<'static, GuiApp>, StubHandle) {
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

pub fn send(h: &mut Harness<'static, GuiApp>, handle: &StubHandle, ev: Event) {
    handle.events.send(ev).unwrap();
    h.run();
}

/// An app whose connector hands out the given stub backends in turn.
pub fn app_n(n: usize) -> (GuiApp, Vec<StubHandle>, Arc<Mutex<Vec<ConnectRequest>>>) {
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

pub fn welcome(
    h: &mut Harness<'static, GuiApp>,
    handle: &StubHandle,
    me: u32,
    extra: Vec<UserInfo>,
) {
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

pub fn small_harness(app: GuiApp) -> Harness<'static, GuiApp> {
    Harness::builder()
        .with_size([640.0, 420.0])
        .build_ui_state(|ui, app: &mut GuiApp| app.show(ui), app)
}

pub fn stats_with(remotes: Vec<RemoteStats>, state: ConnectionState, level: f32) -> EngineStats {
    EngineStats {
        state,
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
        rx_dropped: 0,
        encoder_loss_hint: 0,
        remotes,
        spatial: None,
        playback_pacing: None,
        e2ee: Default::default(),
        capture: None,
    }
}

pub fn remote(id: u32, name: &str) -> RemoteStats {
    RemoteStats {
        session: SessionToken(id),
        name: name.into(),
        speaking: false,
        volume: 1.0,
        muted: false,
        stream: StreamStats::default(),
        encrypted: false,
    }
}

/// The last push-to-talk request the app sent to the engine.
pub fn last_ptt(handle: &StubHandle) -> Option<gui_demo::backend::Request> {
    handle
        .sent()
        .into_iter()
        .rfind(|c| matches!(c, gui_demo::backend::Request::PushToTalk(_)))
}

/// Runs frames until `done` (the keys thread samples every 20 ms), for at least five seconds.
pub fn frames_until(
    h: &mut Harness<'static, GuiApp>,
    done: impl Fn(&Harness<'static, GuiApp>) -> bool,
) {
    for _ in 0..500 {
        h.run_steps(1);
        if done(h) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// `name` (session `id`) joins our channel, Lobby.
pub fn joins(h: &mut Harness<'static, GuiApp>, handle: &StubHandle, id: u32, name: &str) {
    send(
        h,
        handle,
        Event::UserJoined {
            channel: ChannelId(1),
            user: user(id, name),
        },
    );
}

/// Opens `who`'s menu in the channel tree (a right click) and clicks `item` in it.
pub fn user_menu(h: &mut Harness<'static, GuiApp>, who: &str, item: &str) {
    h.get_by_label(who).click_secondary();
    h.run();
    h.get_by_label(item).click();
    h.run();
}

/// Clicks the "Talk key" setting: the next key or mouse button pressed sets it.
pub fn set_talk_key(h: &mut Harness<'static, GuiApp>) {
    h.get_by_role_and_label(egui::accesskit::Role::Button, "Talk key")
        .click();
    h.run();
}

/// Waits until `what` holds, up to 5 s (the machine may be busy); false if it never did.
pub fn wait_for(what: impl Fn() -> bool) -> bool {
    for _ in 0..1000 {
        if what() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    false
}

/// Opens the combo box labelled `combo` and picks `option` in it.
pub fn pick(h: &mut Harness<'static, GuiApp>, combo: &str, option: &str) {
    h.get_by_role_and_label(egui::accesskit::Role::ComboBox, combo)
        .click();
    h.run();
    h.get_by_label(option).click();
    h.run();
}
