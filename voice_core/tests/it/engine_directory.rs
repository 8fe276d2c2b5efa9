//! The cluster directory in the sans-IO engine: `ChannelMembers` replaces one channel's members
//! in [`Engine::channels`] (the relay's own and, with tokens from `FIRST_REMOTE_SESSION` up, those
//! on other relays), leaves the other channels alone, and becomes one `Event::ChannelMembers`.

use voice_core::engine::{Engine, EngineConfig, Event};
use voice_core::proto::tcp::{ChannelInfo, ServerMessage, UserInfo};
use voice_core::proto::{ChannelId, SessionToken, FIRST_REMOTE_SESSION};
use voice_core::Time;

fn user(session: u32, name: &str) -> UserInfo {
    UserInfo {
        session: SessionToken(session),
        name: name.into(),
        user_id: name.into(),
        state: Default::default(),
    }
}

fn names(e: &Engine, channel: u32) -> Vec<(u32, String)> {
    e.channels()
        .iter()
        .find(|c| c.id == ChannelId(channel))
        .map(|c| {
            c.users
                .iter()
                .map(|u| (u.session.0, u.name.clone()))
                .collect()
        })
        .unwrap_or_default()
}

const R: u32 = FIRST_REMOTE_SESSION;

#[test]
fn channel_members_replace_the_list_of_their_channel_only() {
    let now = Time::from_millis(0);
    let mut e = Engine::new(EngineConfig {
        name: "me".into(),
        auto_join: false,
        ..EngineConfig::default()
    })
    .unwrap();
    e.connect(now);
    // The Welcome of a relay in a cluster: a local member and a remote one in room 2.
    e.handle_control(
        now,
        ServerMessage::Welcome {
            session: SessionToken(1),
            secret: [7; 32],
            name: "me".into(),
            channels: vec![
                ChannelInfo {
                    id: ChannelId(1),
                    name: "Lobby".into(),
                    users: vec![],
                },
                ChannelInfo {
                    id: ChannelId(2),
                    name: "Room".into(),
                    users: vec![user(5, "loc"), user(R, "ann")],
                },
            ],
            default_channel: ChannelId(1),
            server_time_ms: 0,
        },
    );
    while e.poll_event().is_some() {}
    assert!(SessionToken(R).is_remote() && !SessionToken(R - 1).is_remote());

    let update = vec![user(5, "loc"), user(R, "ann"), user(R + 1, "bob")];
    e.handle_control(
        now,
        ServerMessage::ChannelMembers {
            channel: ChannelId(2),
            relay: "10.0.0.2:7400".into(),
            users: update.clone(),
        },
    );
    assert_eq!(
        names(&e, 2),
        vec![(5, "loc".into()), (R, "ann".into()), (R + 1, "bob".into())]
    );
    assert_eq!(names(&e, 1), vec![]);
    let evs: Vec<Event> = std::iter::from_fn(|| e.poll_event()).collect();
    assert_eq!(
        evs,
        vec![Event::ChannelMembers {
            channel: ChannelId(2),
            relay: "10.0.0.2:7400".into(),
            users: update,
        }]
    );

    // The remote members left.
    e.handle_control(
        now,
        ServerMessage::ChannelMembers {
            channel: ChannelId(2),
            relay: "10.0.0.2:7400".into(),
            users: vec![user(5, "loc")],
        },
    );
    assert_eq!(names(&e, 2), vec![(5, "loc".into())]);
    assert!(matches!(
        e.poll_event(),
        Some(Event::ChannelMembers { ref users, .. }) if users.len() == 1
    ));

    // A channel the engine does not know changes nothing but is still reported.
    e.handle_control(
        now,
        ServerMessage::ChannelMembers {
            channel: ChannelId(9),
            relay: "10.0.0.2:7400".into(),
            users: vec![user(R + 2, "cid")],
        },
    );
    assert_eq!(e.channels().len(), 2);
    assert!(matches!(
        e.poll_event(),
        Some(Event::ChannelMembers {
            channel: ChannelId(9),
            ..
        })
    ));
}
