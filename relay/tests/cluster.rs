//! Rooms across relays, with real processes: a `redis-server` on a loopback port and three
//! `relay` binaries joined to it. Clients entering through different relays are redirected to the
//! room's host and hear each other; after `kill -9` of the host they reconnect through the relay
//! they entered by, the room is placed again, audio is back within 5 s and presence is exact
//! within 10 s; chat the relay acknowledged (echoed) is neither lost nor doubled.
//!
//! Skipped, with a message, only when `redis-server` is not installed (`scripts/install-deps.sh`
//! installs it, so CI runs this).

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use voice_core::proto::tcp::{ClientMessage, ServerMessage};
use voice_core::proto::ChannelId;

use relay::token::{Claims, SigningKey};

/// The backend key whose public half every relay of the cluster accepts (`--token-key`).
fn backend_key() -> &'static SigningKey {
    static KEY: std::sync::OnceLock<SigningKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate().expect("Ed25519 key generation"))
}

/// A token for `name` that every relay of the cluster accepts.
fn token(name: &str) -> String {
    let claims = Claims::for_name(name, relay::config::DEFAULT_AUDIENCE, 3600);
    backend_key().mint(&claims).expect("minting a token")
}

/// Room lease in these tests: a dead host's rooms are placed again within this.
const LEASE_MS: u64 = 1000;
const ROOM: u32 = 2;

/// A child process killed (SIGKILL) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `redis-server` on a free loopback port, or `None` when it is not installed.
fn start_redis() -> Option<(Proc, u16)> {
    let port = free_port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let child = match child {
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

/// The one place this file starts a relay: the binary in cluster mode (plaintext control, so
/// the test client needs no certificate per relay), two workers.
fn start_relay(redis_port: u16) -> (Proc, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_relay"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--insecure-plaintext",
            "--workers",
            "2",
            "--redis",
            &format!("redis://127.0.0.1:{redis_port}/"),
            "--lease-ms",
            &LEASE_MS.to_string(),
            "--token-key",
            backend_key().public(),
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start relay");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected line {line:?}"))
        .parse()
        .unwrap();
    remember(addr, None);
    // Keep reading stdout so the relay never blocks on a full pipe.
    std::thread::Builder::new()
        .name("relay-stdout".into())
        .spawn(move || {
            let mut sink = String::new();
            while out.read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        })
        .unwrap();
    (Proc(child), addr)
}

/// Connects through `entry` and joins the room, following redirects. `None` when a relay on
/// the way is down or the join failed (the caller retries).
fn enter(entry: SocketAddr, name: &str) -> Option<(Client, Vec<String>)> {
    let mut at = entry;
    for _ in 0..3 {
        if TcpStream::connect_timeout(&at, Duration::from_millis(200)).is_err() {
            return None;
        }
        let mut c = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Client::connect_with(at, name, Some(token(name)))
        }))
        .ok()?;
        c.send(&ClientMessage::JoinChannel {
            channel: ChannelId(ROOM),
        });
        match c.ctl.try_recv(WAIT)? {
            ServerMessage::Joined { channel } => {
                let names = channel.users.iter().map(|u| u.name.clone()).collect();
                return Some((c, names));
            }
            ServerMessage::Redirect { channel, relay } => {
                assert_eq!(channel, ChannelId(ROOM));
                at = relay.parse().unwrap();
            }
            _ => return None,
        }
    }
    None
}

/// [`enter`] again every 100 ms until it works or `limit` passes.
fn enter_until(entry: SocketAddr, name: &str, limit: Duration) -> (Client, Vec<String>) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(r) = enter(entry, name) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{name} could not rejoin within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Reads control messages until `names` (sorted) is exactly who `c` sees in the room, starting
/// from `seen` (its `Joined` list).
fn presence_until(c: &mut Client, seen: &mut Vec<String>, names: &[&str], deadline: Instant) {
    let want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    loop {
        let mut now_seen = seen.clone();
        now_seen.sort();
        if now_seen == want {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            left > Duration::ZERO,
            "{}: presence {now_seen:?}, want {want:?}",
            c.name
        );
        match c.ctl.try_recv(left.min(Duration::from_millis(500))) {
            Some(ServerMessage::UserJoined { user, .. }) => seen.push(user.name),
            Some(ServerMessage::UserLeft { .. }) => {}
            Some(_) | None => {}
        }
    }
}

#[test]
fn rooms_span_relays_and_survive_the_death_of_their_host() {
    let Some((_redis, redis_port)) = start_redis() else {
        eprintln!("SKIPPED: redis-server is not installed (scripts/install-deps.sh installs it)");
        return;
    };
    let (host, r0) = start_relay(redis_port);
    let (_p1, r1) = start_relay(redis_port);
    let (_p2, r2) = start_relay(redis_port);

    // A first join through r0 places the room there (then that client leaves; the room stays).
    let (seed, _) = enter_until(r0, "seed", Duration::from_secs(5));
    assert_eq!(seed.relay, r0);
    drop(seed);

    // Three clients enter through r1, r2, r1: each is redirected to r0.
    let t0 = Instant::now();
    let (mut a, mut sa) = enter_until(r1, "a", Duration::from_secs(5));
    let redirect_join = t0.elapsed();
    let (mut b, mut sb) = enter_until(r2, "b", Duration::from_secs(5));
    let (mut c, mut sc) = enter_until(r1, "c", Duration::from_secs(5));
    eprintln!("join through another relay, redirect included: {redirect_join:?}");
    for x in [&a, &b, &c] {
        assert_eq!(x.relay, r0, "{} is not on the room's host", x.name);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    presence_until(&mut a, &mut sa, &["a", "b", "c"], deadline);
    presence_until(&mut b, &mut sb, &["a", "b", "c"], deadline);
    presence_until(&mut c, &mut sc, &["a", "b", "c"], deadline);
    let d = a.talk(b"hello across relays");
    b.expect_udp(&d);
    c.expect_udp(&d);

    // A chat line the host acknowledged (its echo to the sender) reaches everyone once.
    a.send(&ClientMessage::Chat {
        text: "before".into(),
    });
    for x in [&mut a, &mut b, &mut c] {
        let m = x
            .ctl
            .recv_until(|m| matches!(m, ServerMessage::Chat { .. }));
        assert!(matches!(m, ServerMessage::Chat { ref text, .. } if text == "before"));
    }

    // kill -9 the host. Everyone reconnects through the relay they entered by.
    drop(host);
    let killed = Instant::now();
    drop((a, b, c));
    let (mut a, mut sa) = enter_until(r1, "a", Duration::from_secs(5));
    let (mut b, mut sb) = enter_until(r2, "b", Duration::from_secs(5));
    let (mut c, mut sc) = enter_until(r1, "c", Duration::from_secs(5));
    let host2 = a.relay;
    assert!(host2 == r1 || host2 == r2, "re-placed on {host2}");
    for x in [&b, &c] {
        assert_eq!(
            x.relay, host2,
            "{} is on another relay than the room",
            x.name
        );
    }
    // Audio back within 5 s of the kill.
    let d = b.talk(b"after fail-over");
    a.expect_udp(&d);
    c.expect_udp(&d);
    let audio_back = killed.elapsed();
    eprintln!("audio back {audio_back:?} after kill -9 of the host");
    assert!(audio_back <= Duration::from_secs(5), "{audio_back:?}");
    // Presence exact within 10 s.
    let deadline = killed + Duration::from_secs(10);
    presence_until(&mut a, &mut sa, &["a", "b", "c"], deadline);
    presence_until(&mut b, &mut sb, &["a", "b", "c"], deadline);
    presence_until(&mut c, &mut sc, &["a", "b", "c"], deadline);
    // Nothing of the old room is replayed: the next chat line is the new one, once.
    b.send(&ClientMessage::Chat {
        text: "after".into(),
    });
    for x in [&mut a, &mut b, &mut c] {
        let m = x
            .ctl
            .recv_until(|m| matches!(m, ServerMessage::Chat { .. }));
        assert!(matches!(m, ServerMessage::Chat { ref text, .. } if text == "after"));
        while let Some(m) = x.ctl.try_recv(QUIET) {
            assert!(
                !matches!(m, ServerMessage::Chat { .. }),
                "{}: chat doubled: {m:?}",
                x.name
            );
        }
    }
}

#[test]
fn without_redis_configured_a_relay_hosts_every_room_itself() {
    let relay = start(|c| c.redis = None);
    let mut g = group(relay.local_addr(), ROOM, &["a", "b"]);
    let d = g[0].talk(b"alone");
    g[1].expect_udp(&d);
}
