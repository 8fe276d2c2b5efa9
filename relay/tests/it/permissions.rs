//! Permissions on a live relay (TLS, access tokens, real sockets): a channel's member cap and
//! allow-list, one display name per channel, kick and ban by an admin (the target is told why,
//! the channel sees `UserLeft`, a ban refuses reconnection until it ends), a non-admin's kick
//! refused, and a session cut when its token expires. Every refusal is counted, and an honest
//! pair alongside keeps talking.

use crate::common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use relay::config::ChannelConfig;
use relay::token::{Claims, SigningKey};
use relay::RelayHandle;
use voice_core::proto::tcp::{
    AccessToken, ClientMessage, ErrorCode, Removal, ServerMessage, CONTROL_VERSION,
};
use voice_core::proto::{ChannelId, SessionToken};

fn delta(before: &HashMap<String, u64>, after: &HashMap<String, u64>, k: &str) -> u64 {
    after[k] - before[k]
}

fn channel(id: u32, name: &str) -> ChannelConfig {
    ChannelConfig {
        id,
        name: name.into(),
        spatial: None,
        max_members: None,
        allow: None,
    }
}

/// A token with the admin claim for `name`.
fn admin_token(relay: &RelayHandle, name: &str) -> String {
    let claims = Claims {
        admin: true,
        ..Claims::for_name(name, relay.audience(), 3600)
    };
    relay.mint_token(&claims).unwrap()
}

/// Expects `Error{code}` next on `c`; returns its text.
fn expect_error(c: &mut Client, code: ErrorCode) -> String {
    match c.recv() {
        ServerMessage::Error { code: got, message } => {
            assert_eq!(got, code, "{message}");
            message
        }
        other => panic!("expected Error{{{code:?}}}, got {other:?}"),
    }
}

/// The members of `channel` as the relay lists them.
fn members(c: &mut Client, channel: u32) -> Vec<SessionToken> {
    c.send(&ClientMessage::ListChannels);
    let ServerMessage::ChannelList { channels } = c
        .ctl
        .recv_until(|m| matches!(m, ServerMessage::ChannelList { .. }))
    else {
        unreachable!()
    };
    channels
        .into_iter()
        .find(|ch| ch.id == ChannelId(channel))
        .map(|ch| ch.users.into_iter().map(|u| u.session).collect())
        .unwrap_or_default()
}

/// `a` talks and `b` hears the exact bytes.
fn still_talking(a: &mut Client, b: &Client) {
    let d = a.talk(b"still here");
    b.expect_udp(&d);
}

/// A `Hello` on a fresh connection; `Ok` with the `Welcome`'s session, `Err` with the error.
fn try_hello(
    addr: SocketAddr,
    name: &str,
    token: Option<String>,
) -> Result<SessionToken, (ErrorCode, String)> {
    let mut c = Control::connect(addr);
    c.send(&ClientMessage::Hello {
        version: CONTROL_VERSION,
        name: name.into(),
        token: token.map(AccessToken),
    });
    match c.recv() {
        ServerMessage::Welcome { session, .. } => Ok(session),
        ServerMessage::Error { code, message } => {
            assert!(c.closed_within(WAIT), "refused Hello must close");
            Err((code, message))
        }
        other => panic!("expected Welcome or Error, got {other:?}"),
    }
}

#[test]
fn a_channel_cap_and_allow_list_refuse_joins_and_the_joiner_stays_put() {
    let relay = start(|c| {
        c.channels = vec![
            channel(1, "Lobby"),
            ChannelConfig {
                max_members: Some(2),
                ..channel(2, "Pair")
            },
            ChannelConfig {
                allow: Some(vec!["alice".into()]),
                ..channel(3, "Staff")
            },
        ];
    });
    let addr = relay.local_addr();
    let mut pair = group(addr, 2, &["alice", "bob"]);
    let mut carol = Client::connect(addr, "carol");
    carol.join(1);
    let before = carol.stats();

    // Over the cap: refused, carol stays in the Lobby, the pair is unaffected.
    carol.send(&ClientMessage::JoinChannel {
        channel: ChannelId(2),
    });
    let text = expect_error(&mut carol, ErrorCode::ChannelFull);
    assert!(text.contains("full"), "{text}");
    assert_eq!(members(&mut carol, 1), vec![carol.session]);
    assert_eq!(
        members(&mut carol, 2),
        vec![pair[0].session, pair[1].session]
    );
    pair[0].ctl.expect_silence();
    let (a, b) = pair.split_at_mut(1);
    still_talking(&mut a[0], &b[0]);

    // Not on the allow-list: refused, bob stays in the pair.
    pair[1].send(&ClientMessage::JoinChannel {
        channel: ChannelId(3),
    });
    expect_error(&mut pair[1], ErrorCode::NotAllowed);
    // alice is on it: she moves, bob sees her leave.
    pair[0].join(3);
    match pair[1].recv() {
        ServerMessage::UserLeft { channel, session } => {
            assert_eq!((channel, session), (ChannelId(2), pair[0].session))
        }
        other => panic!("expected UserLeft, got {other:?}"),
    }
    // Below the cap again: carol gets in.
    let joined = carol.join(2);
    assert_eq!(joined.users.len(), 2);

    let after = carol.stats();
    assert_eq!(delta(&before, &after, "join_channel_full"), 1);
    assert_eq!(delta(&before, &after, "join_not_allowed"), 1);
    assert_eq!(delta(&before, &after, "forbidden"), 0);
}

/// A token for display name `name` with its own subject `sub`.
fn token_as(relay: &RelayHandle, sub: &str, name: &str) -> String {
    relay
        .mint_token(&Claims {
            sub: sub.into(),
            ..Claims::for_name(name, relay.audience(), 3600)
        })
        .unwrap()
}

#[test]
fn a_name_already_used_in_a_channel_is_refused_there_but_not_elsewhere() {
    let relay = start(|_| {});
    let addr = relay.local_addr();
    let mut first = group(addr, 1, &["bob", "alice"]);
    // Other users (other subjects) whose tokens name them "bob" and "BOB " (the same name to a
    // listener).
    let mut second = Client::connect_with(addr, "bob", Some(token_as(&relay, "bob-2", "bob")));
    let mut shouting = Client::connect_with(addr, "BOB ", Some(token_as(&relay, "bob-3", "BOB ")));
    let before = second.stats();
    second.send(&ClientMessage::JoinChannel {
        channel: ChannelId(1),
    });
    let text = expect_error(&mut second, ErrorCode::NameTaken);
    assert!(text.contains("\"bob\""), "{text}");
    shouting.send(&ClientMessage::JoinChannel {
        channel: ChannelId(1),
    });
    expect_error(&mut shouting, ErrorCode::NameTaken);
    // Nobody in channel 1 heard of them, and the refused stay in no channel.
    first[0].ctl.expect_silence();
    first[1].ctl.expect_silence();
    assert_eq!(
        members(&mut second, 1),
        vec![first[0].session, first[1].session]
    );
    // Another channel is fine; then the case-variant cannot join the second "bob" there either.
    second.join(2);
    shouting.send(&ClientMessage::JoinChannel {
        channel: ChannelId(2),
    });
    expect_error(&mut shouting, ErrorCode::NameTaken);
    let (a, b) = first.split_at_mut(1);
    still_talking(&mut a[0], &b[0]);
    // The same user (same `sub`) on a second device, or reconnecting while the relay still
    // holds its old session, is not refused.
    let mut again = Client::connect(addr, "bob");
    again.join(1);
    let after = second.stats();
    assert_eq!(delta(&before, &after, "join_name_taken"), 3);
}

#[test]
fn an_admin_kick_tells_the_target_why_and_the_channel_sees_it_leave() {
    let relay = start(|_| {});
    let addr = relay.local_addr();
    let mut admin = Client::connect_with(addr, "mod", Some(admin_token(&relay, "mod")));
    admin.join(1);
    let mut others = group(addr, 1, &["troll", "carol"]);
    for o in &others {
        match admin.recv() {
            ServerMessage::UserJoined { user, .. } => assert_eq!(user.session, o.session),
            m => panic!("expected UserJoined, got {m:?}"),
        }
    }
    let before = admin.stats();
    let troll = others[0].session;
    admin.send(&ClientMessage::Kick {
        session: troll,
        reason: "spam".into(),
    });
    // The target: told who and why, then the connection closes.
    assert_eq!(
        others[0].recv(),
        ServerMessage::Removed {
            removal: Removal::Kicked,
            by: "mod".into(),
            reason: "spam".into(),
            ban_secs: 0,
        }
    );
    assert!(others[0].ctl.closed_within(WAIT));
    // The admin: confirmation, then the usual UserLeft; carol: UserLeft.
    assert_eq!(
        admin.recv(),
        ServerMessage::UserRemoved {
            session: troll,
            name: "troll".into(),
            ban_secs: 0,
        }
    );
    let left = ServerMessage::UserLeft {
        channel: ChannelId(1),
        session: troll,
    };
    assert_eq!(admin.recv(), left);
    assert_eq!(others[1].recv(), left);
    // Its voice is no longer forwarded; the others keep talking.
    let d = others[0].talk(b"after the kick");
    others[1].expect_no_udp();
    let _ = d;
    still_talking(&mut others[1], &admin);
    let after = admin.stats();
    assert_eq!(delta(&before, &after, "kicks"), 1);
    assert_eq!(delta(&before, &after, "bans"), 0);
    assert_eq!(after["sessions"], 2);
    // A kick is not a ban: the troll may come back.
    assert!(try_hello(addr, "troll", token_for(addr, "troll")).is_ok());
    // Kicking a session that does not exist is an error, not a crash.
    admin.send(&ClientMessage::Kick {
        session: SessionToken(9999),
        reason: String::new(),
    });
    expect_error(&mut admin, ErrorCode::NoSuchSession);
}

#[test]
fn a_kick_or_ban_without_the_admin_claim_is_forbidden_and_changes_nothing() {
    let relay = start(|_| {});
    let addr = relay.local_addr();
    let mut g = group(addr, 1, &["alice", "bob"]);
    let before = g[0].stats();
    let bob = g[1].session;
    g[0].send(&ClientMessage::Kick {
        session: bob,
        reason: "go away".into(),
    });
    let text = expect_error(&mut g[0], ErrorCode::Forbidden);
    assert!(text.contains("admin"), "{text}");
    g[0].send(&ClientMessage::Ban {
        session: bob,
        reason: String::new(),
        duration_secs: 60,
    });
    expect_error(&mut g[0], ErrorCode::Forbidden);
    // Bob heard nothing, is still in the channel and still talks.
    g[1].ctl.expect_silence();
    assert_eq!(members(&mut g[0], 1), vec![g[0].session, bob]);
    let (a, b) = g.split_at_mut(1);
    still_talking(&mut b[0], &a[0]);
    still_talking(&mut a[0], &b[0]);
    let after = g[0].stats();
    assert_eq!(delta(&before, &after, "forbidden"), 2);
    assert_eq!(delta(&before, &after, "kicks"), 0);
    assert_eq!(delta(&before, &after, "bans"), 0);
    // Bob can still reconnect under another session: nobody was banned.
    assert!(try_hello(addr, "bob", token_for(addr, "bob")).is_ok());
}

#[test]
fn a_ban_refuses_the_user_until_it_ends_and_is_capped_by_the_relay() {
    let relay = start(|c| {
        c.ban_default_secs = 1;
        c.ban_max_secs = 1;
    });
    let addr = relay.local_addr();
    let mut admin = Client::connect_with(addr, "mod", Some(admin_token(&relay, "mod")));
    let mut troll = Client::connect(addr, "troll");
    // The same user on a second device.
    let mut phone = Client::connect(addr, "troll");
    let before = admin.stats();
    // Asks for an hour; the relay's maximum (1 s here) applies.
    admin.send(&ClientMessage::Ban {
        session: troll.session,
        reason: "flooding".into(),
        duration_secs: 3600,
    });
    assert_eq!(
        troll.recv(),
        ServerMessage::Removed {
            removal: Removal::Banned,
            by: "mod".into(),
            reason: "flooding".into(),
            ban_secs: 1,
        }
    );
    assert!(troll.ctl.closed_within(WAIT));
    // The ban reaches the user's other session too.
    assert!(matches!(
        phone.recv(),
        ServerMessage::Removed {
            removal: Removal::Banned,
            ban_secs: 1,
            ..
        }
    ));
    assert!(phone.ctl.closed_within(WAIT));
    for session in [troll.session, phone.session] {
        match admin.recv() {
            ServerMessage::UserRemoved {
                ban_secs,
                name,
                session: s,
            } => assert_eq!((ban_secs, name.as_str(), s), (1, "troll", session)),
            other => panic!("expected UserRemoved, got {other:?}"),
        }
    }
    // Refused at Hello with a fresh token of the same subject, with a clear error.
    let (code, text) = try_hello(addr, "troll", token_for(addr, "troll")).unwrap_err();
    assert_eq!(code, ErrorCode::Banned);
    assert!(text.contains("banned"), "{text}");
    // Another user is not affected.
    assert!(try_hello(addr, "carol", token_for(addr, "carol")).is_ok());
    // Once the ban ends the user is welcome again (bounded: a few tries over at most 3 s).
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut refused = 1;
    loop {
        match try_hello(addr, "troll", token_for(addr, "troll")) {
            Ok(_) => break,
            Err((ErrorCode::Banned, _)) if Instant::now() < deadline => {
                refused += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("still refused after the ban: {e:?}"),
        }
    }
    let after = admin.stats();
    assert_eq!(delta(&before, &after, "bans"), 1);
    assert_eq!(delta(&before, &after, "hello_banned"), refused);
}

#[test]
fn an_open_relay_with_admin_keys_bans_by_name() {
    let key = SigningKey::generate().unwrap();
    let relay = start(|c| {
        c.open = true;
        c.token_keys = vec![key.public().to_owned()];
    });
    let addr = relay.local_addr();
    let claims = Claims {
        admin: true,
        ..Claims::for_name("mod", relay.audience(), 3600)
    };
    let mut admin = Client::connect_with(addr, "mod", Some(key.mint(&claims).unwrap()));
    // No token: admitted by name.
    let mut eve = Client::connect_with(addr, "eve", None);
    let mut dave = Client::connect_with(addr, "dave", None);
    // Without the admin claim a name-only user cannot ban.
    dave.send(&ClientMessage::Ban {
        session: eve.session,
        reason: String::new(),
        duration_secs: 60,
    });
    expect_error(&mut dave, ErrorCode::Forbidden);
    admin.send(&ClientMessage::Ban {
        session: eve.session,
        reason: String::new(),
        duration_secs: 60,
    });
    assert!(matches!(
        eve.recv(),
        ServerMessage::Removed {
            removal: Removal::Banned,
            ban_secs: 60,
            ..
        }
    ));
    assert!(matches!(
        admin.recv(),
        ServerMessage::UserRemoved { ban_secs: 60, .. }
    ));
    assert_eq!(
        try_hello(addr, "eve", None).unwrap_err().0,
        ErrorCode::Banned
    );
    assert!(try_hello(addr, "eve2", None).is_ok());
    // A bad token is still refused on an open relay.
    assert_eq!(
        try_hello(addr, "x", Some("not.a.token".into()))
            .unwrap_err()
            .0,
        ErrorCode::Unauthorized
    );
}

#[test]
fn a_session_whose_token_expires_is_told_and_closed_while_others_stay() {
    let relay = start(|_| {});
    let addr = relay.local_addr();
    let mut g = group(addr, 1, &["alice", "bob"]);
    let before = g[0].stats();
    // Expired 29 s ago: still inside the 30 s leeway at Hello, past it within about a second.
    let claims = Claims {
        exp: relay::token::now_secs() - 29,
        ..Claims::for_name("late", relay.audience(), 0)
    };
    let mut late = Client::connect_with(addr, "late", relay.mint_token(&claims));
    late.join(1);
    for c in g.iter_mut() {
        assert!(matches!(c.recv(), ServerMessage::UserJoined { .. }));
    }
    match late
        .ctl
        .recv_until(|m| matches!(m, ServerMessage::Removed { .. }))
    {
        ServerMessage::Removed {
            removal,
            by,
            ban_secs,
            ..
        } => {
            assert_eq!(removal, Removal::TokenExpired);
            assert_eq!((by.as_str(), ban_secs), ("", 0));
        }
        _ => unreachable!(),
    }
    assert!(late.ctl.closed_within(WAIT));
    let left = ServerMessage::UserLeft {
        channel: ChannelId(1),
        session: late.session,
    };
    assert_eq!(g[0].recv(), left);
    assert_eq!(g[1].recv(), left);
    let (a, b) = g.split_at_mut(1);
    still_talking(&mut a[0], &b[0]);
    let after = g[0].stats();
    assert_eq!(delta(&before, &after, "token_expired_closed"), 1);
    assert_eq!(after["sessions"], 2);
}
