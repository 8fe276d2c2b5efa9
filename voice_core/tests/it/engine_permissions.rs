//! Kick and ban in the sans-IO engine, on simulated time: `Request::Kick`/`Ban` become the wire
//! messages only when connected and with a session; a relay's `Removed` becomes an event and is
//! handed to the driver once (so it does not reconnect); `UserRemoved` becomes an event.

use voice_core::engine::{CommandError, DisconnectKind, Engine, EngineConfig, Event, Request};
use voice_core::proto::tcp::{ChannelInfo, ClientMessage, Removal, ServerMessage};
use voice_core::proto::{ChannelId, SessionToken};
use voice_core::Time;

fn drain_control(e: &mut Engine) -> Vec<ClientMessage> {
    std::iter::from_fn(|| e.poll_control()).collect()
}

fn drain_events(e: &mut Engine) -> Vec<Event> {
    std::iter::from_fn(|| e.poll_event()).collect()
}

fn welcomed(now: Time) -> Engine {
    let mut e = Engine::new(EngineConfig {
        name: "mod".into(),
        ..EngineConfig::default()
    })
    .unwrap();
    e.connect(now);
    e.handle_control(
        now,
        ServerMessage::Welcome {
            session: SessionToken(1),
            secret: [7; 32],
            name: "mod".into(),
            channels: vec![ChannelInfo {
                id: ChannelId(1),
                name: "Lobby".into(),
                users: Vec::new(),
            }],
            default_channel: ChannelId(1),
            server_time_ms: 0,
        },
    );
    drain_control(&mut e);
    drain_events(&mut e);
    e
}

#[test]
fn kick_and_ban_requests_need_a_connection_and_a_session() {
    let now = Time::from_millis(0);
    let mut idle = Engine::new(EngineConfig::default()).unwrap();
    assert_eq!(
        idle.apply(Request::Kick {
            session: SessionToken(2),
            reason: String::new(),
        }),
        Err(CommandError::NotConnected)
    );
    assert!(drain_control(&mut idle).is_empty());

    let mut e = welcomed(now);
    assert_eq!(
        e.apply(Request::Ban {
            session: SessionToken::NONE,
            reason: String::new(),
            duration_secs: 5,
        }),
        Err(CommandError::NoSession)
    );
    assert!(matches!(
        drain_events(&mut e).as_slice(),
        [Event::CommandFailed {
            command: "ban",
            error: CommandError::NoSession
        }]
    ));
    e.apply(Request::Kick {
        session: SessionToken(2),
        reason: "spam".into(),
    })
    .unwrap();
    e.apply(Request::Ban {
        session: SessionToken(3),
        reason: String::new(),
        duration_secs: 60,
    })
    .unwrap();
    assert_eq!(
        drain_control(&mut e),
        vec![
            ClientMessage::Kick {
                session: SessionToken(2),
                reason: "spam".into(),
            },
            ClientMessage::Ban {
                session: SessionToken(3),
                reason: String::new(),
                duration_secs: 60,
            },
        ]
    );
}

#[test]
fn removal_notices_become_events_and_the_driver_is_told_once() {
    let now = Time::from_millis(0);
    let mut e = welcomed(now);
    assert_eq!(e.take_removal(), None);
    e.handle_control(
        now,
        ServerMessage::UserRemoved {
            session: SessionToken(4),
            name: "troll".into(),
            ban_secs: 0,
        },
    );
    e.handle_control(
        now,
        ServerMessage::Removed {
            removal: Removal::Banned,
            by: "admin".into(),
            reason: "spam".into(),
            ban_secs: 600,
        },
    );
    assert_eq!(
        drain_events(&mut e),
        vec![
            Event::UserRemoved {
                session: SessionToken(4),
                name: "troll".into(),
                ban_secs: 0,
            },
            Event::Removed {
                removal: Removal::Banned,
                by: "admin".into(),
                reason: "spam".into(),
                ban_secs: 600,
            },
        ]
    );
    // The connection then closes: the removal survives the disconnect for the driver, once.
    e.disconnected(now, DisconnectKind::Closed, "closed by relay");
    assert_eq!(e.take_removal(), Some(Removal::Banned));
    assert_eq!(e.take_removal(), None);
}
