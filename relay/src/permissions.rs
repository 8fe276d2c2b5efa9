//! Permissions: the rules a session's token and the relay's configuration impose beyond
//! admission. A channel's `allow` list and `max_members` cap and the one-name-per-user rule at
//! `JoinChannel` ([`refuse_join`]); an admin's `Kick` and `Ban` ([`remove`], bans kept in
//! [`State::bans`] and checked at `Hello`); and the end of sessions whose access token expired
//! ([`expire_tokens`], on the caller's clock). Plain functions over [`State`], called from
//! [`control`](crate::control) and unit-tested there; a decision to end a session queues its
//! `Removed` notice and lists the session in [`State::removals`] for the server to end once the
//! notice is written.

use voice_proto::time::Time;

use voice_proto::tcp::{ErrorCode, Removal, ServerMessage, MAX_REASON_LEN};
use voice_proto::{ChannelId, SessionToken};

use crate::control::{error, Outbox};
use crate::state::State;
use crate::stats::{Counter, Stats};

/// The channel's own rules for a joiner not yet in it (allow-list, member cap, names in use):
/// the counter, code and text of the refusal, or `None`. The joiner stays where it was.
pub fn refuse_join(
    state: &State,
    who: SessionToken,
    channel: ChannelId,
) -> Option<(Counter, ErrorCode, String)> {
    let ch = state.channels.get(&channel)?;
    let s = state.sessions.get(&who)?;
    if !ch.allows(&s.grants.sub) {
        return Some((
            Counter::JoinNotAllowed,
            ErrorCode::NotAllowed,
            format!(
                "channel {} admits only the users on its allow-list",
                channel.0
            ),
        ));
    }
    if ch.is_full() {
        return Some((
            Counter::JoinChannelFull,
            ErrorCode::ChannelFull,
            format!(
                "channel {} is full ({} members)",
                channel.0,
                ch.members.len()
            ),
        ));
    }
    if state.name_taken(channel, who) {
        return Some((
            Counter::JoinNameTaken,
            ErrorCode::NameTaken,
            format!(
                "the name \"{}\" is already used in channel {}",
                s.name, channel.0
            ),
        ));
    }
    None
}

/// `text` cut to at most `max` bytes at a character boundary.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// An admin's `Kick` (`ban: None`) or `Ban` (`Some(requested seconds)`): the target is told
/// why ([`ServerMessage::Removed`]), the admin gets [`ServerMessage::UserRemoved`], and the
/// target is queued in [`State::removals`] for the server to end once those are delivered. A
/// ban does the same to every other session of the target's user (same `sub`). A session
/// without the admin claim gets `Error{Forbidden}` and nothing changes.
#[allow(clippy::too_many_arguments)]
pub fn remove(
    state: &mut State,
    stats: &mut Stats,
    who: SessionToken,
    target: SessionToken,
    reason: String,
    ban: Option<u32>,
    now: Time,
    out: &mut Outbox,
) {
    let (what, done) = if ban.is_some() {
        ("ban", "banned")
    } else {
        ("kick", "kicked")
    };
    let Some(actor) = state.sessions.get(&who) else {
        return;
    };
    if !actor.grants.admin {
        stats.inc(Counter::Forbidden);
        out.push((
            who,
            error(
                ErrorCode::Forbidden,
                format!("to {what} you need the admin claim in your access token"),
            ),
        ));
        return;
    }
    let by = actor.name.clone();
    let Some(t) = state.sessions.get(&target) else {
        out.push((who, error(ErrorCode::NoSuchSession, "no such session")));
        return;
    };
    let (name, sub) = (t.name.clone(), t.grants.sub.clone());
    let reason = truncate(reason, MAX_REASON_LEN);
    let (removal, ban_secs) = match ban {
        None => {
            stats.inc(Counter::Kicks);
            (Removal::Kicked, 0)
        }
        Some(requested) => {
            let secs = state.ban_policy.length(requested);
            let length = std::time::Duration::from_secs(u64::from(secs));
            // `Time` saturates: a length the clock cannot represent bans until the end of time.
            let until = now + length;
            state.ban(&sub, until);
            stats.inc(Counter::Bans);
            (Removal::Banned, secs)
        }
    };
    log::info!("session {target} {done} by session {who}");
    let (by_name, reason_copy) = (by.clone(), reason.clone());
    out.push((
        target,
        ServerMessage::Removed {
            removal,
            by,
            reason,
            ban_secs,
        },
    ));
    if target != who {
        out.push((
            who,
            ServerMessage::UserRemoved {
                session: target,
                name,
                ban_secs,
            },
        ));
    }
    if !state.removals.contains(&target) {
        state.removals.push(target);
    }
    if removal == Removal::Banned {
        // The user's other sessions (another device) go too: a ban refuses the user.
        let others: Vec<(SessionToken, String)> = state
            .sessions
            .values()
            .filter(|s| s.token != target && s.grants.sub == sub)
            .filter(|s| !state.removals.contains(&s.token))
            .map(|s| (s.token, s.name.clone()))
            .collect();
        for (other, name) in others {
            out.push((
                other,
                ServerMessage::Removed {
                    removal,
                    by: by_name.clone(),
                    reason: reason_copy.clone(),
                    ban_secs,
                },
            ));
            if other != who {
                out.push((
                    who,
                    ServerMessage::UserRemoved {
                        session: other,
                        name,
                        ban_secs,
                    },
                ));
            }
            state.removals.push(other);
        }
    }
}

/// Ends every session whose access token has expired (its `exp` plus
/// [`LEEWAY_SECS`](crate::token::LEEWAY_SECS), the same grace `Hello` gives) at `unix_ms`: each
/// is told ([`ServerMessage::Removed`] with [`Removal::TokenExpired`]) and queued in
/// [`State::removals`]. A client that wants to stay reconnects with a fresh token before then.
pub fn expire_tokens(state: &mut State, stats: &mut Stats, unix_ms: u64, out: &mut Outbox) {
    let leeway = crate::token::LEEWAY_SECS;
    let expired: Vec<SessionToken> = state
        .sessions
        .values()
        .filter(|s| {
            s.grants
                .expires
                .is_some_and(|exp| exp.saturating_add(leeway).saturating_mul(1000) < unix_ms)
        })
        .map(|s| s.token)
        .filter(|t| !state.removals.contains(t))
        .collect();
    for t in expired {
        stats.inc(Counter::TokenExpiredClosed);
        log::info!("session {t}: access token expired; closing");
        out.push((
            t,
            ServerMessage::Removed {
                removal: Removal::TokenExpired,
                by: String::new(),
                reason: "your access token expired; reconnect with a fresh one".into(),
                ban_secs: 0,
            },
        ));
        state.removals.push(t);
    }
}
