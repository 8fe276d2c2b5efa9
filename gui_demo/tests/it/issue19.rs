//! UI tests for the defects of issue 19 (and what a new user expects), one test per defect where
//! egui_kittest can drive it: the real app on stub backends, at 1200×800 and at the 640×420
//! minimum window size.

use crate::common;

use common::*;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use gui_demo::app::Screen;
use gui_demo::backend::Request;
use gui_demo::settings::{InputChoice, OutputChoice};
use gui_demo::GuiApp;
use voice_client::{AudioError, AudioInput, AudioOutput, ChannelId, Event, SessionToken};
use voice_core::engine::ConnectionState;

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
                kind: voice_client::DisconnectKind::Network,
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
    user_menu(&mut h, "bob", "Whisper (toggle)");
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

// Defect 9: a restart (a device picked after the engine stopped) keeps chat, mute, channel and
// per-user preferences.
#[test]
fn a_restart_keeps_chat_channel_and_user_prefs() {
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
    user_menu(&mut h, "bob", "Mute");
    assert!(h.state().settings.user_prefs["bob"].muted);
    h.get_by_label("Mute mic").click();
    h.run();
    // A device picked after the engine stopped: only a restart applies it.
    handles[0].fail_switches(Some(|| AudioError::EngineStopped));
    pick(&mut h, "Output", "default device");
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

// Defect 6: while the first connection is pending the window says so, counts, and can cancel.
#[test]
fn connecting_counts_and_can_be_cancelled() {
    let (app, _handle, _) = app("me");
    let mut h = harness(app);
    h.get_by_label("Connect").click();
    h.run_steps(2);
    h.get_by_label_contains("Connecting to stub…");
    let s = h.state().session().unwrap();
    assert_eq!(s.next_repaint(0.0), Some(1.0), "the counter ticks");
    h.get_by_label("Cancel").click();
    h.run_steps(2);
    assert!(matches!(h.state().screen, Screen::Connect(_)));
}

/// A keyboard for the global-keys thread whose held keys the test sets (key code = keysym % 200
/// + 8), standing in for the X server.
struct HeldKeys(std::sync::Arc<std::sync::Mutex<Vec<u32>>>);

impl gui_demo::global_keys::KeySource for HeldKeys {
    fn keycode(&mut self, keysym: u32) -> Option<u8> {
        u8::try_from(keysym % 200 + 8).ok()
    }

    fn keymap(&mut self) -> Option<[u8; 32]> {
        let mut map = [0u8; 32];
        let held = self.0.lock().ok()?.clone();
        for sym in held {
            let c = self.keycode(sym)?;
            map[usize::from(c / 8)] |= 1 << (c % 8);
        }
        Some(map)
    }
}

// Defect 13: push-to-talk works while another window has focus.
#[test]
fn talk_key_works_while_another_window_has_focus() {
    use gui_demo::global_keys::{keysym, GlobalKeys};
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (mut app, handle, _) = app("me");
    app.set_global_keys(Ok(GlobalKeys::start(
        Box::new(HeldKeys(held.clone())),
        || {},
    )
    .expect("keys thread")));
    let mut h = harness(app);
    h.get_by_label("Connect").click();
    h.run_steps(2);
    welcome(&mut h, &handle, 1, vec![]);
    h.get_by_label("Keys work in other windows too");
    // Another window has focus; V is held there.
    h.input_mut().focused = false;
    held.lock().unwrap().push(keysym(egui::Key::V).unwrap());
    frames_until(&mut h, |_| last_ptt(&handle).is_some());
    assert_eq!(last_ptt(&handle), Some(Request::PushToTalk(true)));
    held.lock().unwrap().clear();
    frames_until(&mut h, |_| {
        last_ptt(&handle) == Some(Request::PushToTalk(false))
    });
    assert_eq!(last_ptt(&handle), Some(Request::PushToTalk(false)));
    // With our window focused, the window's own key state decides (typing a "v" into the chat
    // must not talk): the X server's alone does nothing.
    h.input_mut().focused = true;
    h.get_by_label("To #Lobby").focus();
    h.run();
    held.lock().unwrap().push(keysym(egui::Key::V).unwrap());
    std::thread::sleep(std::time::Duration::from_millis(50));
    h.run_steps(3);
    assert_eq!(last_ptt(&handle), Some(Request::PushToTalk(false)));
    // Switched off in the settings: the background key does nothing.
    h.state_mut().settings.global_keys = false;
    h.input_mut().focused = false;
    h.run_steps(3);
    assert_eq!(last_ptt(&handle), Some(Request::PushToTalk(false)));
}

// Defect 13: without an X display the keys fall back to the window, and the panel says so.
#[test]
fn without_a_display_the_panel_says_keys_need_focus() {
    let (mut app, handle, _) = app("me");
    app.set_global_keys(Err("no X display".into()));
    let mut h = harness(app);
    h.get_by_label("Connect").click();
    h.run_steps(2);
    welcome(&mut h, &handle, 1, vec![]);
    h.get_by_label("Keys work only while this window has focus (no X display)");
    assert!(h.query_by_label("Keys work in other windows too").is_none());
    // The in-window key still talks.
    h.key_down(egui::Key::V);
    h.run();
    assert_eq!(last_ptt(&handle), Some(Request::PushToTalk(true)));
}

// The talk key is set by pressing it; Escape cancels; F3 is a key like any other meanwhile.
#[test]
fn talk_key_is_set_by_pressing_it() {
    let (mut h, handle) = connected();
    set_talk_key(&mut h);
    assert_eq!(
        h.state().session().unwrap().capturing,
        Some(gui_demo::app::KeyRole::Talk)
    );
    h.key_press(egui::Key::F3);
    h.run();
    assert_eq!(h.state().settings.ptt_key, "F3");
    assert!(!h.state().settings.overlay_open, "F3 was taken as the key");
    assert_eq!(h.state().session().unwrap().capturing, None);
    assert!(
        last_ptt(&handle).is_none(),
        "pressing the new key did not talk"
    );
    set_talk_key(&mut h);
    h.key_press(egui::Key::Escape);
    h.run();
    assert_eq!(h.state().settings.ptt_key, "F3", "Escape cancels");
    // The new key talks.
    h.key_down(egui::Key::F3);
    h.run();
    assert_eq!(last_ptt(&handle), Some(Request::PushToTalk(true)));
    h.key_up(egui::Key::F3);
    h.run();
    assert!(
        !h.state().settings.overlay_open,
        "F3 talks now, it does not open the overlay"
    );
    // The key that sets a new one does not talk while it is still held.
    set_talk_key(&mut h);
    h.key_down(egui::Key::ControlLeft);
    h.run_steps(2);
    assert_eq!(h.state().settings.ptt_key, "ControlLeft");
    assert_eq!(last_ptt(&handle), Some(Request::PushToTalk(false)));
    h.key_up(egui::Key::ControlLeft);
    h.run();
    h.key_down(egui::Key::ControlLeft);
    h.run();
    assert_eq!(last_ptt(&handle), Some(Request::PushToTalk(true)));
    assert_eq!(
        gui_demo::ui::controls::key_label(egui::Key::ControlLeft),
        "Left Ctrl"
    );
}

// Unread chat per channel in the tree; joining the channel clears it.
#[test]
fn unread_counts_show_in_the_tree() {
    let (mut h, handle) = connected();
    let line = |text: &str| Event::Chat {
        channel: ChannelId(2),
        from: SessionToken(7),
        from_name: "carol".into(),
        text: text.into(),
        server_time_ms: 1_700_000_000_000,
    };
    send(&mut h, &handle, line("anyone?"));
    h.get_by_label("1 new");
    send(&mut h, &handle, line("me, are you there?"));
    h.get_by_label("2 new, 1 mention");
    // Lines in our own channel are read as they arrive.
    send(
        &mut h,
        &handle,
        Event::Chat {
            channel: ChannelId(1),
            from: SessionToken(5),
            from_name: "bob".into(),
            text: "here".into(),
            server_time_ms: 1_700_000_000_000,
        },
    );
    h.get_by_label("2 new, 1 mention");
    send(
        &mut h,
        &handle,
        Event::ChannelJoined {
            channel: channel(2, "Team A", vec![user(1, "me"), user(7, "carol")]),
        },
    );
    assert!(h.query_all_by_label_contains(" new").next().is_none());
    // A line for the Lobby now counts there, until All channels shows it.
    send(
        &mut h,
        &handle,
        Event::Chat {
            channel: ChannelId(1),
            from: SessionToken(5),
            from_name: "bob".into(),
            text: "left us?".into(),
            server_time_ms: 1_700_000_000_000,
        },
    );
    h.get_by_label("1 new");
    h.get_by_label("All channels").click();
    h.run();
    assert!(h.query_all_by_label_contains(" new").next().is_none());
}

/// The background colours of the drawn text that contains `needle`.
fn text_backgrounds(h: &Harness<'static, GuiApp>, needle: &str) -> Vec<egui::Color32> {
    fn walk(shape: &egui::Shape, needle: &str, out: &mut Vec<egui::Color32>) {
        match shape {
            egui::Shape::Vec(v) => v.iter().for_each(|s| walk(s, needle, out)),
            egui::Shape::Text(t) if t.galley.job.text.contains(needle) => {
                let job = &t.galley.job;
                for s in &job.sections {
                    if job.text[s.byte_range.start.0..s.byte_range.end.0].contains(needle) {
                        out.push(s.format.background);
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for c in &h.output().shapes {
        walk(&c.shape, needle, &mut out);
    }
    out
}

// Lines that mention our name are highlighted; others, and our own, are not.
#[test]
fn mentions_of_our_name_are_highlighted() {
    use gui_demo::ui::chat::MENTION_BG;
    let (mut h, handle) = connected();
    let line = |from: u32, text: &str| Event::Chat {
        channel: ChannelId(1),
        from: SessionToken(from),
        from_name: if from == 1 { "me" } else { "bob" }.into(),
        text: text.into(),
        server_time_ms: 1_700_000_000_000,
    };
    send(&mut h, &handle, line(5, "ping Me please"));
    send(&mut h, &handle, line(5, "nothing for you, memes"));
    send(&mut h, &handle, line(1, "me again"));
    h.run_steps(1);
    assert_eq!(text_backgrounds(&h, "ping Me please"), vec![MENTION_BG]);
    let plain = text_backgrounds(&h, "nothing for you, memes");
    assert_eq!(plain.len(), 1);
    assert_ne!(plain[0], MENTION_BG);
    let own = text_backgrounds(&h, "me again");
    assert_eq!(own.len(), 1);
    assert_ne!(own[0], MENTION_BG, "our own line is not a mention");
}

// Defect 13: the whisper key works while another window has focus, once a target is bound.
#[test]
fn whisper_key_works_while_another_window_has_focus() {
    use gui_demo::global_keys::{keysym, GlobalKeys};
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (mut app, handle, _) = app("me");
    app.set_global_keys(Ok(GlobalKeys::start(
        Box::new(HeldKeys(held.clone())),
        || {},
    )
    .expect("keys thread")));
    let mut h = harness(app);
    h.get_by_label("Connect").click();
    h.run_steps(2);
    welcome(&mut h, &handle, 1, vec![user(5, "bob")]);
    h.input_mut().focused = false;
    // Without a bound target, B held elsewhere does nothing.
    held.lock().unwrap().push(keysym(egui::Key::B).unwrap());
    std::thread::sleep(std::time::Duration::from_millis(50));
    h.run_steps(3);
    assert_eq!(last_ptt(&handle), None);
    held.lock().unwrap().clear();
    h.state_mut().session_mut().unwrap().whisper_hold = Some(SessionToken(5));
    h.run_steps(2);
    held.lock().unwrap().push(keysym(egui::Key::B).unwrap());
    frames_until(&mut h, |_| last_ptt(&handle).is_some());
    let sent = handle.sent();
    assert!(
        sent.contains(&Request::Whisper(Some(SessionToken(5)))),
        "{sent:?}"
    );
    assert_eq!(last_ptt(&handle), Some(Request::PushToTalk(true)));
    held.lock().unwrap().clear();
    frames_until(&mut h, |_| {
        last_ptt(&handle) == Some(Request::PushToTalk(false))
    });
    assert_eq!(
        handle
            .sent()
            .into_iter()
            .rfind(|c| matches!(c, Request::Whisper(_))),
        Some(Request::Whisper(None))
    );
}

// What a user expects: devices switch without reconnecting (the chat, the channel and the
// connection stay); a device that cannot be opened is undone and the engine's notice shown.
#[test]
fn devices_switch_live_without_reconnecting() {
    let (app, handles, requests) = app_n(2);
    let mut h = harness(app);
    h.get_by_label("Connect").click();
    h.run_steps(2);
    welcome(&mut h, &handles[0], 1, vec![user(5, "bob")]);
    send(
        &mut h,
        &handles[0],
        Event::Chat {
            channel: ChannelId(1),
            from: SessionToken(5),
            from_name: "bob".into(),
            text: "still here".into(),
            server_time_ms: 1_700_000_000_000,
        },
    );
    pick(&mut h, "Input", "test tone 440 Hz");
    pick(&mut h, "Output", "default device");
    h.run_steps(2);
    let (inputs, outputs) = handles[0].switched();
    assert_eq!(
        inputs,
        vec![AudioInput::Tone {
            hz: 440.0,
            amplitude: 0.3
        }]
    );
    assert_eq!(outputs, vec![AudioOutput::Device(None)]);
    assert_eq!(h.state().settings.input, InputChoice::Tone(440.0));
    assert_eq!(h.state().settings.output, OutputChoice::Device(None));
    // One connection, the same session, the chat on screen, no restart offered.
    assert_eq!(requests.lock().unwrap().len(), 1);
    assert!(h.state().session().unwrap().state.is_live());
    h.get_by_label_contains("still here");
    assert!(h.query_all_by_label_contains("Apply").next().is_none());
    assert!(h.query_all_by_label_contains("Connecting").next().is_none());

    // A device that cannot be opened: the choice is undone, the engine's notice shown once.
    handles[0].fail_switches(Some(|| AudioError::Device("device busy".into())));
    pick(&mut h, "Output", "none (discard)");
    h.run_steps(2);
    assert_eq!(h.state().settings.output, OutputChoice::Device(None));
    assert_eq!(handles[0].switched().1.len(), 1);
    assert_eq!(requests.lock().unwrap().len(), 1, "no reconnect");
    assert!(
        h.query_all_by_label_contains("device busy").count() >= 1,
        "the failed switch is shown"
    );

    // A WAV path is applied once it names a file, not at every key typed.
    handles[0].fail_switches(None);
    let wav = std::env::temp_dir().join(format!("gui_switch_{}.wav", std::process::id()));
    std::fs::write(&wav, b"not checked by the stub").unwrap();
    pick(&mut h, "Input", "WAV file (looped)");
    assert_eq!(handles[0].switched().0.len(), 1, "input.wav does not exist");
    // An empty field to type into, key by key: "/", "/tmp", … are not files.
    h.state_mut().settings.input = InputChoice::Wav(std::path::PathBuf::new());
    h.run();
    h.get_by_label("WAV path").focus();
    h.run();
    for c in wav.to_str().unwrap().chars() {
        h.get_by_label("WAV path").type_text(&c.to_string());
        h.run();
    }
    std::fs::remove_file(&wav).ok();
    let inputs = handles[0].switched().0;
    assert_eq!(inputs.len(), 2, "{inputs:?}");
    assert_eq!(
        inputs[1],
        AudioInput::Wav {
            path: wav.clone(),
            looped: true
        }
    );
    assert_eq!(requests.lock().unwrap().len(), 1, "no reconnect");
}
