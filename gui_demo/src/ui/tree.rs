//! The channel tree: channels (click to join) and their users with speaking indicators and a
//! per-user context menu (whisper toggle, hold-to-whisper binding, local mute, volume).
//!
//! Names are shown disambiguated ("bob (2)"), with each user's own mute and deafen as the relay
//! reports them; local volume and mute are remembered by stable user id in the settings. While the connection is down the tree is drawn greyed out: it is the last
//! known state, not the current one.

use egui::{RichText, Sense};
use voice_client::SessionToken;

use crate::app::Session;
use crate::backend::Request;
use crate::settings::Settings;
use crate::state::{Member, Unread};
use crate::ui::{dot, lock, SPEAKING, WARN, WHISPER};

/// Draws the tree.
pub fn show(ui: &mut egui::Ui, session: &mut Session, settings: &mut Settings) {
    ui.heading("Channels");
    ui.separator();
    // A snapshot: the rows below may send commands through `session` while we iterate.
    let channels = session.state.channels.clone();
    if channels.is_empty() {
        ui.weak("(waiting for the channel list)");
    }
    if !session.state.is_live() && !channels.is_empty() {
        ui.add(egui::Label::new(RichText::new("Not connected: last known state").italics()).wrap());
        ui.disable();
    }
    egui::ScrollArea::vertical().show(ui, |ui| {
        for (id, node) in channels {
            let mine = session.state.my_channel == Some(id);
            let label = format!("# {}  ({})", node.name, node.users.len());
            let unread = session.state.unread.get(&id).copied();
            let r = ui
                .horizontal(|ui| {
                    let r = ui
                        .selectable_label(mine, RichText::new(label).strong())
                        .on_hover_text(if mine {
                            "You are here"
                        } else {
                            "Click to join"
                        });
                    if let Some(u) = unread {
                        unread_badge(ui, u);
                    }
                    r
                })
                .inner;
            if r.clicked() && !mine {
                session.send(Request::Join(id));
            }
            ui.indent(("channel", id.0), |ui| {
                for (who, member) in &node.users {
                    let shown = session.state.display_name(*who);
                    user_row(ui, session, settings, *who, member, &shown);
                }
            });
        }
    });
}

/// "3 new" beside a channel with unread chat; "3 new, 1 mention" (highlighted) when some of it
/// mentions us.
fn unread_badge(ui: &mut egui::Ui, u: Unread) {
    let text = match u.mentions {
        0 => format!("{} new", u.lines),
        1 => format!("{} new, 1 mention", u.lines),
        m => format!("{} new, {m} mentions", u.lines),
    };
    let colour = if u.mentions > 0 {
        WHISPER
    } else {
        ui.visuals().strong_text_color()
    };
    ui.add(egui::Label::new(RichText::new(text).small().color(colour)).truncate())
        .on_hover_text("Chat lines you have not seen: join the channel or tick All channels");
}

fn user_row(
    ui: &mut egui::Ui,
    session: &mut Session,
    settings: &mut Settings,
    who: SessionToken,
    member: &Member,
    shown: &str,
) {
    let me = session.state.me == Some(who);
    let speaking = session.state.speaking.get(&who).copied();
    let prefs = session.state.prefs(who);
    ui.horizontal(|ui| {
        let colour = match speaking {
            Some(s) if s.whisper => WHISPER,
            Some(_) => SPEAKING,
            None => ui.visuals().weak_text_color().gamma_multiply(0.4),
        };
        dot(ui, colour);
        let mut text = RichText::new(shown);
        if me {
            text = text.strong();
        }
        let r = ui.add(egui::Label::new(text).sense(Sense::click()));
        if me {
            ui.weak("(you)");
        }
        if who.is_remote() {
            ui.weak("↗")
                .on_hover_text("On another relay of the cluster: join the channel to talk");
        }
        // Their own choices, as the relay reports them.
        let whose = if me { "You" } else { shown };
        if member.state.muted {
            ui.label(RichText::new("mic off").small().color(WARN))
                .on_hover_text(format!("{whose} muted the microphone"));
        }
        if member.state.deafened {
            ui.label(RichText::new("deaf").small().color(WARN))
                .on_hover_text(format!("{whose} turned the sound off (hears nobody)"));
        }
        if prefs.muted {
            ui.weak("(muted)");
        } else if (prefs.volume - 1.0).abs() > 0.005 {
            ui.weak(format!("({:.0} %)", prefs.volume * 100.0));
        }
        if session.whisper_toggle == Some(who) {
            ui.label(RichText::new("whisper").color(WHISPER).small());
        }
        // End-to-end encryption: a lock when this user's audio arrives encrypted and verified (for
        // ourselves: when E2EE is on), with the safety number to compare out of band.
        if let Some(latest) = &session.history.latest {
            let e = &latest.e2ee;
            let encrypted = if me {
                !e.mode.is_empty() && e.mode != "off"
            } else {
                latest
                    .remotes
                    .iter()
                    .any(|r| r.session == who && r.encrypted)
            };
            if encrypted {
                let number = if me {
                    e.safety_number.clone()
                } else {
                    e.member_safety_numbers
                        .iter()
                        .find(|(s, _)| *s == who)
                        .map(|(_, n)| n.clone())
                };
                let tip = match number {
                    Some(n) => format!("End-to-end encrypted ({}). Safety number: {n}", e.mode),
                    None => format!("End-to-end encrypted ({})", e.mode),
                };
                lock(ui, SPEAKING).on_hover_text(tip);
            }
        }
        // Nothing to whisper to or moderate on another relay: join the channel for that.
        if me || who.is_remote() {
            return;
        }
        r.context_menu(|ui| user_menu(ui, session, settings, who, &member.user_id, shown));
    });
}

fn user_menu(
    ui: &mut egui::Ui,
    session: &mut Session,
    settings: &mut Settings,
    who: SessionToken,
    user_id: &str,
    shown: &str,
) {
    ui.label(RichText::new(shown).strong());
    ui.separator();
    let mut on = session.whisper_toggle == Some(who);
    if ui.checkbox(&mut on, "Whisper (toggle)").changed() {
        session.toggle_whisper(who);
    }
    let key = crate::ui::controls::binding_label(settings.whisper());
    let mut bound = session.whisper_hold == Some(who);
    if ui
        .checkbox(&mut bound, format!("Whisper while holding {key}"))
        .changed()
    {
        session.whisper_hold = bound.then_some(who);
    }
    let mut prefs = session.state.prefs(who);
    if ui.checkbox(&mut prefs.muted, "Mute").changed() {
        session.send(Request::UserMute(who, prefs.muted));
    }
    let r = ui.add(
        egui::Slider::new(&mut prefs.volume, 0.0..=4.0)
            .fixed_decimals(2)
            .text("Volume"),
    );
    if r.changed() {
        session.send(Request::UserVolume(who, prefs.volume));
    }
    if prefs != session.state.prefs(who) && !user_id.is_empty() {
        // Remembered by stable id for the next session (the token changes on every connect).
        if prefs == crate::state::UserPrefs::default() {
            settings.user_prefs.remove(user_id);
        } else {
            settings.user_prefs.insert(user_id.to_string(), prefs);
        }
    }
    session.state.prefs.insert(who, prefs);
    // Permissions: the relay obeys only a token with the admin claim and refuses others
    // (`Error{Forbidden}`, shown as a notice); the kicked user sees why.
    ui.separator();
    ui.menu_button("Moderate", |ui| {
        let tip = "Needs the admin claim in your access token; the relay refuses otherwise";
        if ui.button("Kick").on_hover_text(tip).clicked() {
            session.send(Request::Kick {
                session: who,
                reason: String::new(),
            });
            ui.close();
        }
        if ui.button("Ban for 1 hour").on_hover_text(tip).clicked() {
            session.send(Request::Ban {
                session: who,
                reason: String::new(),
                duration_secs: 3600,
            });
            ui.close();
        }
    });
}
