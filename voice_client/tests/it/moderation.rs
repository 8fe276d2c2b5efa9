//! Kick and ban end to end on 127.0.0.1 (TLS, access tokens): the Rust `Client` API and the
//! `voice-bot` flags against a real relay. An admin's `Client::ban` removes a `voice-bot`, which
//! prints the `Removed` event and stops before its duration instead of reconnecting; a
//! `voice-bot --kick NAME` with the admin claim removes a `Client`, which gets `Event::Removed`
//! and does not reconnect although `reconnect` is on; without the claim the bot's kick is refused.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::relays::*;
use relay::token::Claims;
use relay::RelayHandle;
use voice_client::{
    AccessToken, AudioInput, AudioOutput, Client, ClientConfig, ConnectionStatus, Event, Removal,
    TlsTrust,
};

fn admin_token(relay: &RelayHandle, name: &str) -> String {
    relay
        .mint_token(&Claims {
            admin: true,
            ..Claims::for_name(name, relay.audience(), 3600)
        })
        .unwrap()
}

fn client(relay: &RelayHandle, name: &str, token: String) -> Client {
    let mut cfg = ClientConfig::new(relay.local_addr(), name);
    cfg.token = Some(AccessToken(token));
    cfg.tls = TlsTrust::Pinned(relay.fingerprint().unwrap());
    cfg.input = AudioInput::Null;
    cfg.output = AudioOutput::Null;
    cfg.reconnect = true;
    Client::start(cfg).unwrap()
}

/// The next event matching `pred` within `timeout` (others skipped).
fn wait_event(
    c: &Client,
    timeout: Duration,
    mut pred: impl FnMut(&Event) -> bool,
) -> Option<Event> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.events().recv_timeout(left) {
            Ok(ev) if pred(&ev) => return Some(ev),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

fn bot(relay: &RelayHandle, token: &str, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_voice-bot"))
        .arg("--server")
        .arg(relay.local_addr().to_string())
        .arg("--fingerprint")
        .arg(relay.fingerprint().unwrap().to_string())
        .arg("--token")
        .arg(token)
        .args(["--stats-interval", "200"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// The bot's events (JSON) once it has exited, and how long it ran.
fn bot_events(child: Child, started: Instant) -> (Vec<serde_json::Value>, Duration) {
    let out = child.wait_with_output().unwrap();
    let ran = started.elapsed();
    let events = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|l| l.get("event").cloned())
        .collect();
    (events, ran)
}

fn session_of(c: &Client, name: &str) -> voice_client::SessionToken {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        c.request_channel_list();
        if let Some(Event::ChannelList { channels }) =
            wait_event(c, Duration::from_millis(300), |e| {
                matches!(e, Event::ChannelList { .. })
            })
        {
            if let Some(u) = channels
                .iter()
                .flat_map(|ch| &ch.users)
                .find(|u| u.name == name)
            {
                return u.session;
            }
        }
    }
    panic!("{name} never showed up");
}

#[test]
fn an_admin_client_bans_a_bot_which_stops_instead_of_reconnecting() {
    let relay = start_relay();
    let admin = client(&relay, "mod", admin_token(&relay, "mod"));
    let started = Instant::now();
    let target = bot(
        &relay,
        &relay.token_for("troll").unwrap(),
        &["--name", "troll", "--duration", "20"],
    );
    let troll = session_of(&admin, "troll");
    admin.ban(troll, "flooding", 600);
    let removed = wait_event(&admin, Duration::from_secs(5), |e| {
        matches!(e, Event::UserRemoved { .. })
    });
    assert_eq!(
        removed,
        Some(Event::UserRemoved {
            session: troll,
            name: "troll".into(),
            ban_secs: 600
        })
    );
    let (events, ran) = bot_events(target, started);
    assert!(
        ran < Duration::from_secs(15),
        "the bot stopped early ({ran:?})"
    );
    let removed: Vec<_> = events.iter().filter_map(|e| e.get("Removed")).collect();
    assert_eq!(removed.len(), 1, "{events:?}");
    assert_eq!(removed[0]["removal"], "Banned");
    assert_eq!(removed[0]["by"], "mod");
    assert_eq!(removed[0]["reason"], "flooding");
    assert_eq!(removed[0]["ban_secs"], 600);
    let connects = events
        .iter()
        .filter(|e| e.get("Connected").is_some())
        .count();
    assert_eq!(connects, 1, "no reconnect after the ban");
    admin.shutdown().unwrap();
}

#[test]
fn a_bot_with_the_admin_claim_kicks_by_name_and_one_without_is_refused() {
    let relay = start_relay();
    let target = client(&relay, "troll", relay.token_for("troll").unwrap());
    assert!(wait_event(&target, Duration::from_secs(5), |e| {
        matches!(e, Event::ChannelJoined { .. })
    })
    .is_some());

    // Without the admin claim: refused, the target stays.
    let started = Instant::now();
    let plain = bot(
        &relay,
        &relay.token_for("pleb").unwrap(),
        &["--name", "pleb", "--kick", "troll", "--duration", "1.5"],
    );
    let (events, _) = bot_events(plain, started);
    let refused = events
        .iter()
        .filter_map(|e| e.get("Error"))
        .any(|e| e["code"] == format!("{:?}", voice_core::proto::tcp::ErrorCode::Forbidden));
    assert!(refused, "{events:?}");
    assert!(target.is_connected());

    // With it: the target is told who and why and does not come back.
    let started = Instant::now();
    let admin = bot(
        &relay,
        &admin_token(&relay, "mod"),
        &[
            "--name",
            "mod",
            "--kick",
            "troll",
            "--reason",
            "spam",
            "--duration",
            "1.5",
        ],
    );
    let removed = wait_event(&target, Duration::from_secs(5), |e| {
        matches!(e, Event::Removed { .. })
    });
    assert_eq!(
        removed,
        Some(Event::Removed {
            removal: Removal::Kicked,
            by: "mod".into(),
            reason: "spam".into(),
            ban_secs: 0
        })
    );
    assert!(wait_event(&target, Duration::from_secs(5), |e| matches!(
        e,
        Event::Disconnected {
            kind: voice_client::DisconnectKind::Removed(Removal::Kicked),
            ..
        }
    ))
    .is_some());
    let failed = wait_event(&target, Duration::from_secs(5), |e| {
        matches!(
            e,
            Event::Status(ConnectionStatus::Failed { .. }) | Event::Connected { .. }
        )
    });
    assert!(
        matches!(failed, Some(Event::Status(ConnectionStatus::Failed { .. }))),
        "{failed:?}"
    );
    assert!(!target.is_connected());
    let (events, _) = bot_events(admin, started);
    assert!(
        events.iter().any(|e| e.get("UserRemoved").is_some()),
        "{events:?}"
    );
    target.shutdown().unwrap();
}

#[test]
fn a_bot_bans_by_name_for_the_seconds_it_was_given() {
    let relay = start_relay();
    let target = client(&relay, "troll", relay.token_for("troll").unwrap());
    assert!(wait_event(&target, Duration::from_secs(5), |e| {
        matches!(e, Event::ChannelJoined { .. })
    })
    .is_some());
    let started = Instant::now();
    let admin = bot(
        &relay,
        &admin_token(&relay, "mod"),
        &["--name", "mod", "--ban", "troll:120", "--duration", "1.5"],
    );
    let removed = wait_event(&target, Duration::from_secs(5), |e| {
        matches!(e, Event::Removed { .. })
    });
    assert_eq!(
        removed,
        Some(Event::Removed {
            removal: Removal::Banned,
            by: "mod".into(),
            reason: String::new(),
            ban_secs: 120
        })
    );
    let (events, _) = bot_events(admin, started);
    let done: Vec<_> = events.iter().filter_map(|e| e.get("UserRemoved")).collect();
    assert_eq!(done.len(), 1, "{events:?}");
    assert_eq!(done[0]["ban_secs"], 120);
    target.shutdown().unwrap();
}
