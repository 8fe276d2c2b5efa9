//! Moderation in the GUI (egui_kittest, stub backend): an admin kicks or bans from a user's
//! context menu (the relay decides whether the token may), and a removed user sees why.

use crate::common;

use common::*;
use egui_kittest::kittest::Queryable;
use gui_demo::backend::Request;
use voice_client::{Event, Removal, SessionToken};

#[test]
fn the_user_menu_kicks_and_bans() {
    let (mut h, handle) = connected();
    joins(&mut h, &handle, 5, "troll");
    user_menu(&mut h, "troll", "Moderate");
    h.get_by_label("Kick").click();
    h.run();
    assert!(handle.sent().contains(&Request::Kick {
        session: SessionToken(5),
        reason: String::new(),
    }));
    user_menu(&mut h, "troll", "Moderate");
    h.get_by_label("Ban for 1 hour").click();
    h.run();
    assert!(handle.sent().contains(&Request::Ban {
        session: SessionToken(5),
        reason: String::new(),
        duration_secs: 3600,
    }));
    // The relay's confirmation lands in the log.
    send(
        &mut h,
        &handle,
        Event::UserRemoved {
            session: SessionToken(5),
            name: "troll".into(),
            ban_secs: 3600,
        },
    );
    assert!(h
        .query_all_by_label_contains("troll (#5) banned for 1 h")
        .next()
        .is_some());
}

#[test]
fn a_removed_user_sees_who_and_why() {
    let (mut h, handle) = connected();
    send(
        &mut h,
        &handle,
        Event::Removed {
            removal: Removal::Kicked,
            by: "mod".into(),
            reason: "spam".into(),
            ban_secs: 0,
        },
    );
    assert!(h
        .query_all_by_label_contains("You were kicked from the relay by mod: spam")
        .next()
        .is_some());
}
