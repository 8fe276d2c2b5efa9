//! The cluster directory through the client library: two relays in one cluster (a real
//! `redis-server` on a loopback port, relays in-process), alice in room 2 on relay A, bob in
//! room 3 on relay B. Each `Client` gets `Event::ChannelMembers` for the other's room, with the
//! other relay's address and a remote session token, within 2 s of the join and of the leave;
//! a client welcomed later finds the remote members in its channel list.
//! Skipped, with a message, only when `redis-server` is not installed
//! (`scripts/install-deps.sh` installs it).

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use voice_client::{AccessToken, AudioInput, AudioOutput, ChannelId, Client, ClientConfig, Event};

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> Option<(Proc, u16)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = match Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => Proc(c),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("starting redis-server: {e}"),
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((child, port));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("redis-server did not listen on {port}");
}

fn backend_key() -> &'static relay::token::SigningKey {
    static KEY: std::sync::OnceLock<relay::token::SigningKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| relay::token::SigningKey::generate().expect("Ed25519 key generation"))
}

fn start_relay(redis_port: u16) -> relay::server::RelayHandle {
    let cfg = relay::Config {
        token_keys: vec![backend_key().public().to_string()],
        listen: "127.0.0.1:0".parse().unwrap(),
        stats_interval_ms: 0,
        insecure_plaintext: true,
        redis: Some(format!("redis://127.0.0.1:{redis_port}/")),
        lease_ms: 1000,
        ..relay::Config::default()
    };
    relay::Relay::bind(cfg).unwrap().spawn().unwrap()
}

/// A client of `relay`, welcomed; returns it with the channel list of its `Welcome`.
fn client(
    relay: &relay::server::RelayHandle,
    name: &str,
) -> (Watched, Vec<voice_core::proto::tcp::ChannelInfo>) {
    let claims = relay::token::Claims::for_name(name, relay::config::DEFAULT_AUDIENCE, 3600);
    let mut cfg = ClientConfig::new(relay.local_addr(), name);
    cfg.token = Some(AccessToken(backend_key().mint(&claims).unwrap()));
    cfg.insecure_plaintext = true;
    cfg.input = AudioInput::Null;
    cfg.output = AudioOutput::Null;
    cfg.engine.auto_join = false;
    let mut w = Watched {
        c: Client::start(cfg).unwrap(),
        seen: Vec::new(),
    };
    let welcome = wait_event(&mut w, Duration::from_secs(5), |e| {
        matches!(e, Event::ChannelList { .. })
    });
    let Some(Event::ChannelList { channels }) = welcome else {
        panic!("{name} was not welcomed")
    };
    (w, channels)
}

fn join(w: &mut Watched, room: u32) {
    w.c.join_channel(ChannelId(room));
    wait_event(
        w,
        Duration::from_secs(5),
        |e| matches!(e, Event::ChannelJoined { channel } if channel.id == ChannelId(room)),
    )
    .unwrap_or_else(|| panic!("no join of room {room}"));
}

/// A client and every event it reported so far.
struct Watched {
    c: Client,
    seen: Vec<Event>,
}

/// The first event matching `pred` that `w` reported, waiting up to `timeout` for it.
fn wait_event(
    w: &mut Watched,
    timeout: Duration,
    mut pred: impl FnMut(&Event) -> bool,
) -> Option<Event> {
    if let Some(i) = w.seen.iter().position(&mut pred) {
        return Some(w.seen.remove(i));
    }
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match w.c.events().recv_timeout(left) {
            Ok(ev) if pred(&ev) => return Some(ev),
            Ok(ev) => w.seen.push(ev),
            Err(_) => return None,
        }
    }
}

/// Waits (2 s) for the `ChannelMembers` of `room` that lists exactly `names`; returns its relay.
fn members_of(w: &mut Watched, room: u32, names: &[&str]) -> String {
    let ev = wait_event(w, Duration::from_secs(2), |e| match e {
        Event::ChannelMembers { channel, users, .. } => {
            *channel == ChannelId(room)
                && users
                    .iter()
                    .map(|u| u.name.as_str())
                    .eq(names.iter().copied())
        }
        _ => false,
    })
    .unwrap_or_else(|| panic!("no ChannelMembers for room {room} listing {names:?}"));
    let Event::ChannelMembers { relay, users, .. } = ev else {
        unreachable!()
    };
    assert!(users.iter().all(|u| u.session.is_remote()), "{users:?}");
    relay
}

#[test]
fn each_client_sees_the_members_of_the_room_hosted_by_the_other_relay() {
    let Some((_redis, port)) = start_redis() else {
        eprintln!("SKIPPED: redis-server is not installed (scripts/install-deps.sh installs it)");
        return;
    };
    let a = start_relay(port);
    let b = start_relay(port);
    let (mut alice, _) = client(&a, "alice");
    let (mut bob, _) = client(&b, "bob");
    join(&mut alice, 2);
    join(&mut bob, 3);
    assert_eq!(
        members_of(&mut alice, 3, &["bob"]),
        b.local_addr().to_string()
    );
    assert_eq!(
        members_of(&mut bob, 2, &["alice"]),
        a.local_addr().to_string()
    );

    // Someone welcomed by B now finds alice (remote) and bob (B's own) in the list.
    let (_carol, list) = client(&b, "carol");
    let find = |room: u32| {
        list.iter()
            .find(|c| c.id == ChannelId(room))
            .map(|c| {
                c.users
                    .iter()
                    .map(|u| (u.name.as_str(), u.session.is_remote()))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    assert_eq!(find(2), [("alice", true)]);
    assert_eq!(find(3), [("bob", false)]);

    bob.c.leave_channel();
    assert_eq!(members_of(&mut alice, 3, &[]), "");
}
