//! Per-user volume and mute kept across sessions (issue 19). The wire carries no stable user
//! id (`UserInfo` is a session token and a name; with access tokens the name is the token's
//! signed `name` claim, its `sub` stays on the relay), so the demo remembers them by name: saved
//! through eframe's storage, shown in the tree, applied again when the user reappears under a
//! new session token, after the relay restarts (which hands out old tokens to other people) and
//! after the demo restarts. A whisper target follows its user's name across a relay restart too.

use crate::common;

use std::collections::HashMap;

use common::*;
use egui_kittest::kittest::Queryable;
use gui_demo::backend::Request;
use gui_demo::settings::{Settings, STORAGE_KEY};
use gui_demo::state::UserPrefs;
use voice_client::{ChannelId, Event, SessionToken};

/// eframe's storage in memory (the real one is a RON file with the same calls).
#[derive(Default)]
struct Memory(HashMap<String, String>);

impl eframe::Storage for Memory {
    fn get_string(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }

    fn set_string(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }

    fn remove_string(&mut self, key: &str) {
        self.0.remove(key);
    }

    fn flush(&mut self) {}
}

fn prefs_of(h: &egui_kittest::Harness<'static, gui_demo::GuiApp>, who: u32) -> UserPrefs {
    h.state().session().unwrap().state.prefs(SessionToken(who))
}

#[test]
fn volume_and_mute_survive_a_restart_and_follow_the_user() {
    // First run: bob turned up to 150 %, dave muted, from their menus.
    let (mut h, handle) = connected();
    joins(&mut h, &handle, 5, "bob");
    joins(&mut h, &handle, 6, "dave");
    user_menu(&mut h, "dave", "Mute");
    h.key_press(egui::Key::Escape);
    h.run();
    assert!(handle
        .sent()
        .contains(&Request::UserMute(SessionToken(6), true)));
    h.get_by_label("(muted)");
    // The volume slider, as a drag would leave it.
    {
        let app = h.state_mut();
        app.settings.user_prefs.insert(
            "bob".into(),
            UserPrefs {
                volume: 1.5,
                muted: false,
            },
        );
    }
    // Saved the way eframe saves on exit.
    let mut storage = Memory::default();
    eframe::App::save(h.state_mut(), &mut storage);
    drop(h);

    // Second run: settings loaded from the storage, a new engine, new session tokens.
    let loaded: Settings = eframe::get_value(&storage, STORAGE_KEY).expect("settings saved");
    assert!(loaded.user_prefs["dave"].muted);
    assert_eq!(loaded.user_prefs["bob"].volume, 1.5);
    let (mut app, handle, _) = app("me");
    app.settings.user_prefs = loaded.user_prefs;
    let mut h = harness(app);
    h.get_by_label("Connect").click();
    h.run_steps(2);
    welcome(&mut h, &handle, 1, vec![user(15, "bob")]);
    let sent = handle.sent();
    assert!(
        sent.contains(&Request::UserVolume(SessionToken(15), 1.5)),
        "{sent:?}"
    );
    assert!(!sent.iter().any(|r| matches!(r, Request::UserMute(..))));
    h.get_by_label("(150 %)");
    // dave arrives later, under a token of his own: muted as soon as he shows up.
    joins(&mut h, &handle, 16, "dave");
    assert!(handle
        .sent()
        .contains(&Request::UserMute(SessionToken(16), true)));
    h.get_by_label("(muted)");
    // He leaves and comes back (a new token): muted again.
    send(
        &mut h,
        &handle,
        Event::UserLeft {
            channel: ChannelId(1),
            session: SessionToken(16),
        },
    );
    assert!(h.query_by_label("(muted)").is_none());
    joins(&mut h, &handle, 17, "dave");
    assert!(handle
        .sent()
        .contains(&Request::UserMute(SessionToken(17), true)));
    assert!(prefs_of(&h, 17).muted);
    h.get_by_label("(muted)");
    // Unmuted and back to 100 %: forgotten, not saved as a default.
    user_menu(&mut h, "dave", "Mute");
    assert!(!h.state().settings.user_prefs.contains_key("dave"));
}

#[test]
fn after_a_relay_restart_old_tokens_do_not_carry_prefs_to_other_people() {
    let (mut app, handle, _) = app("me");
    app.settings.user_prefs.insert(
        "bob".into(),
        UserPrefs {
            volume: 0.5,
            muted: true,
        },
    );
    let mut h = harness(app);
    h.get_by_label("Connect").click();
    h.run_steps(2);
    welcome(&mut h, &handle, 1, vec![user(5, "bob")]);
    assert!(handle
        .sent()
        .contains(&Request::UserMute(SessionToken(5), true)));
    assert!(prefs_of(&h, 5).muted);
    // We whisper to bob (toggled from his menu).
    h.state_mut()
        .session_mut()
        .unwrap()
        .toggle_whisper(SessionToken(5));
    assert!(handle
        .sent()
        .contains(&Request::Whisper(Some(SessionToken(5)))));
    // The relay restarts; the engine reconnects on its own. The new relay numbers sessions from
    // 1 again: alice now has bob's old token 5, bob has 6.
    send(
        &mut h,
        &handle,
        Event::Disconnected {
            kind: voice_client::DisconnectKind::Network,
            reason: "connection reset; retrying in 1000 ms".into(),
        },
    );
    let before = handle.sent().len();
    welcome(&mut h, &handle, 1, vec![user(5, "alice"), user(6, "bob")]);
    let sent: Vec<Request> = handle.sent().split_off(before);
    let undo_5 = sent
        .iter()
        .position(|r| *r == Request::UserMute(SessionToken(5), false));
    let mute_6 = sent
        .iter()
        .position(|r| *r == Request::UserMute(SessionToken(6), true));
    assert!(
        matches!((undo_5, mute_6), (Some(a), Some(b)) if a < b),
        "token 5's mute is undone in the engine, then bob muted under 6: {sent:?}"
    );
    assert!(sent.contains(&Request::UserVolume(SessionToken(5), 1.0)));
    assert!(sent.contains(&Request::UserVolume(SessionToken(6), 0.5)));
    assert!(!sent.contains(&Request::UserMute(SessionToken(5), true)));
    assert!(!prefs_of(&h, 5).muted);
    assert!(prefs_of(&h, 6).muted);
    // One "(muted)" in the tree: bob's.
    assert_eq!(h.query_all_by_label("(muted)").count(), 1);
    // The whisper follows bob to his new token; alice never gets it.
    let stop = sent.iter().position(|r| *r == Request::Whisper(None));
    let again = sent
        .iter()
        .position(|r| *r == Request::Whisper(Some(SessionToken(6))));
    assert!(
        matches!((stop, again), (Some(a), Some(b)) if a < b),
        "whisper stopped, then sent to bob's new token: {sent:?}"
    );
    assert!(!sent.contains(&Request::Whisper(Some(SessionToken(5)))));
    assert_eq!(
        h.state().session().unwrap().whisper_toggle,
        Some(SessionToken(6))
    );
}
