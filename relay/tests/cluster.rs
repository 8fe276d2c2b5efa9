//! Rooms across relays, with real processes: a `redis-server` on a loopback port and three
//! `relay` binaries joined to it. Clients entering through different relays are redirected to the
//! room's host and hear each other; after `kill -9` of the host they reconnect through the relay
//! they entered by, the room is placed again, audio is back within 5 s and presence is exact
//! within 10 s; chat the relay acknowledged (echoed) is neither lost nor doubled.
//!
//! The directory: every relay shows every room's members, wherever the room is hosted, live
//! (`ChannelMembers`) and in its channel lists; a dead host's members leave every tree.
//!
//! Skipped, with a message, only when `redis-server` is not installed (`scripts/install-deps.sh`
//! installs it, so CI runs this).

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use voice_core::proto::tcp::{ClientMessage, ServerMessage, VoiceState};
use voice_core::proto::{ChannelId, SessionToken};

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
    start_redis_on(free_port())
}

/// `redis-server` on `port` (empty: no persistence), or `None` when it is not installed.
fn start_redis_on(port: u16) -> Option<(Proc, u16)> {
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

/// Connects through `entry` and joins `room`, following redirects. `None` when a relay on the
/// way is down or the join failed (the caller retries).
fn enter_room(entry: SocketAddr, name: &str, room: u32) -> Option<(Client, Vec<String>)> {
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
            channel: ChannelId(room),
        });
        // The directory's updates may come first.
        let reply = std::iter::from_fn(|| c.ctl.try_recv(WAIT))
            .take(100)
            .find(|m| !matches!(m, ServerMessage::ChannelMembers { .. }))?;
        match reply {
            ServerMessage::Joined { channel } => {
                let names = channel.users.iter().map(|u| u.name.clone()).collect();
                return Some((c, names));
            }
            ServerMessage::Redirect { channel, relay } => {
                assert_eq!(channel, ChannelId(room));
                at = relay.parse().unwrap();
            }
            _ => return None,
        }
    }
    None
}

/// [`enter_room`] (the test room) again every 100 ms until it works or `limit` passes.
fn enter_until(entry: SocketAddr, name: &str, limit: Duration) -> (Client, Vec<String>) {
    enter_room_until(entry, name, ROOM, limit)
}

/// [`enter_room`] again every 100 ms until it works or `limit` passes.
fn enter_room_until(
    entry: SocketAddr,
    name: &str,
    room: u32,
    limit: Duration,
) -> (Client, Vec<String>) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(r) = enter_room(entry, name, room) {
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

/// A channel tree kept the way a client written from PROTOCOL.md keeps it: `Welcome`, then
/// `Joined`/`UserJoined`/`UserLeft` for its own channel, `ChannelList` snapshots, and
/// `ChannelMembers` replacing a channel's members.
struct Tree {
    me: SessionToken,
    rooms: BTreeMap<u32, Vec<(SessionToken, String)>>,
}

impl Tree {
    fn new(c: &Client) -> Tree {
        let mut t = Tree {
            me: c.session,
            rooms: BTreeMap::new(),
        };
        t.list(&c.channels);
        t
    }

    fn list(&mut self, channels: &[voice_core::proto::tcp::ChannelInfo]) {
        self.rooms = channels
            .iter()
            .map(|c| {
                let users = c
                    .users
                    .iter()
                    .map(|u| (u.session, u.name.clone()))
                    .collect();
                (c.id.0, users)
            })
            .collect();
    }

    fn apply(&mut self, m: &ServerMessage) {
        match m {
            ServerMessage::ChannelList { channels } => self.list(channels),
            ServerMessage::Joined { channel } => {
                for users in self.rooms.values_mut() {
                    users.retain(|(s, _)| *s != self.me);
                }
                let users = self.rooms.entry(channel.id.0).or_default();
                users.retain(|(s, _)| s.is_remote());
                users.extend(channel.users.iter().map(|u| (u.session, u.name.clone())));
            }
            ServerMessage::Left { channel } => {
                if let Some(users) = self.rooms.get_mut(&channel.0) {
                    users.retain(|(s, _)| *s != self.me);
                }
            }
            ServerMessage::UserJoined { channel, user } => self
                .rooms
                .entry(channel.0)
                .or_default()
                .push((user.session, user.name.clone())),
            ServerMessage::UserLeft { channel, session } => {
                if let Some(users) = self.rooms.get_mut(&channel.0) {
                    users.retain(|(s, _)| s != session);
                }
            }
            ServerMessage::ChannelMembers { channel, users, .. } => {
                let shown = users.iter().map(|u| (u.session, u.name.clone())).collect();
                self.rooms.insert(channel.0, shown);
            }
            _ => {}
        }
    }

    /// Room → sorted names, rooms with members only.
    fn names(&self) -> BTreeMap<u32, Vec<String>> {
        self.rooms
            .iter()
            .filter(|(_, u)| !u.is_empty())
            .map(|(&id, u)| {
                let mut n: Vec<String> = u.iter().map(|(_, n)| n.clone()).collect();
                n.sort();
                (id, n)
            })
            .collect()
    }

    /// The token `name` is shown under.
    fn token_of(&self, name: &str) -> SessionToken {
        self.rooms
            .values()
            .flatten()
            .find(|(_, n)| n == name)
            .unwrap_or_else(|| panic!("{name} is not in the tree"))
            .0
    }
}

fn want(rooms: &[(u32, &[&str])]) -> BTreeMap<u32, Vec<String>> {
    rooms
        .iter()
        .map(|(id, names)| {
            let mut n: Vec<String> = names.iter().map(|s| s.to_string()).collect();
            n.sort();
            (*id, n)
        })
        .collect()
}

/// Reads `c`'s control messages into `tree` until it shows exactly `rooms`; with `poll_list`
/// it also asks for the channel list every 500 ms. Returns when it did; fails at `deadline`.
fn converge(
    c: &mut Client,
    tree: &mut Tree,
    rooms: &[(u32, &[&str])],
    deadline: Instant,
    poll_list: bool,
) -> Instant {
    let want = want(rooms);
    let mut next_poll = Instant::now();
    loop {
        if tree.names() == want {
            return Instant::now();
        }
        let now = Instant::now();
        assert!(
            now < deadline,
            "{} on {}: tree {:?}, want {want:?}",
            c.name,
            c.relay,
            tree.names()
        );
        if poll_list && now >= next_poll {
            c.send(&ClientMessage::ListChannels);
            next_poll = now + Duration::from_millis(500);
        }
        let wait = deadline
            .min(next_poll.max(now + Duration::from_millis(10)))
            .saturating_duration_since(now)
            .min(Duration::from_millis(100));
        if let Some(m) = c.ctl.try_recv(wait) {
            tree.apply(&m);
        }
    }
}

/// The relay's counter `name`, read by `c` (other messages on the way go into `tree`).
fn counter(c: &mut Client, tree: &mut Tree, name: &str) -> u64 {
    c.send(&ClientMessage::StatsRequest);
    loop {
        match c.ctl.recv() {
            ServerMessage::Stats { counters } => {
                return counters
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| *v)
                    .unwrap_or_else(|| panic!("no counter {name}"))
            }
            m => tree.apply(&m),
        }
    }
}

#[test]
fn every_relay_shows_every_rooms_members_and_forgets_a_dead_hosts() {
    let Some((_redis, redis_port)) = start_redis() else {
        eprintln!("SKIPPED: redis-server is not installed (scripts/install-deps.sh installs it)");
        return;
    };
    let (host, r0) = start_relay(redis_port);
    let (_p1, r1) = start_relay(redis_port);
    let (_p2, r2) = start_relay(redis_port);
    let two = Duration::from_secs(2);

    // w1 is in room 1, placed on r1; w2 is on r2 in no room.
    let (mut w1, _) = enter_room_until(r1, "w1", 1, Duration::from_secs(5));
    assert_eq!(w1.relay, r1);
    let mut t1 = Tree::new(&w1);
    let mut w2 = Client::connect_with(r2, "w2", Some(token("w2")));
    let mut t2 = Tree::new(&w2);
    converge(
        &mut w1,
        &mut t1,
        &[(1, &["w1"])],
        Instant::now() + two,
        false,
    );
    converge(
        &mut w2,
        &mut t2,
        &[(1, &["w1"])],
        Instant::now() + two,
        false,
    );
    assert!(t2.token_of("w1").is_remote());
    assert!(!t1.token_of("w1").is_remote());

    // a joins room 2 on r0 (placed there at this join), b enters through r2 (redirected to
    // r0): both watchers see them appear, live, within 2 s of the `JoinChannel`.
    let mut a = Client::connect_with(r0, "a", Some(token("a")));
    let joined = Instant::now();
    a.send(&ClientMessage::JoinChannel {
        channel: ChannelId(ROOM),
    });
    let one_a: &[(u32, &[&str])] = &[(1, &["w1"]), (2, &["a"])];
    let seen2 = converge(&mut w2, &mut t2, one_a, joined + two, false);
    let seen1 = converge(&mut w1, &mut t1, one_a, joined + two, false);
    eprintln!(
        "directory: a join on r0 (placement included) seen on r2 after {:?}, on r1 after {:?}",
        seen2 - joined,
        seen1 - joined
    );
    a.ctl
        .recv_until(|m| matches!(m, ServerMessage::Joined { .. }));
    let joined = Instant::now();
    let (b, _) = enter_until(r2, "b", Duration::from_secs(5));
    assert_eq!(b.relay, r0);
    let a_b: &[(u32, &[&str])] = &[(1, &["w1"]), (2, &["a", "b"])];
    converge(&mut w2, &mut t2, a_b, joined + two, false);
    converge(&mut w1, &mut t1, a_b, joined + two, false);
    assert!(t1.token_of("a").is_remote() && t2.token_of("b").is_remote());

    // a mutes on r0: a watcher on r2 sees it in the room's member list, with a's stable id.
    let muted = VoiceState {
        muted: true,
        deafened: false,
    };
    let said = Instant::now();
    a.send(&ClientMessage::SetVoiceState { state: muted });
    let shown = w2.ctl.recv_until(|m| {
        matches!(m, ServerMessage::ChannelMembers { channel, users, .. }
            if *channel == ChannelId(ROOM)
                && users.iter().any(|u| u.name == "a" && u.user_id == "a" && u.state == muted))
    });
    assert!(matches!(shown, ServerMessage::ChannelMembers { .. }));
    assert!(
        said.elapsed() < two,
        "a mute reached r2 after {:?}",
        said.elapsed()
    );
    t2.apply(&shown);

    // Someone connecting now sees everyone in its Welcome.
    let z = Client::connect_with(r2, "z", Some(token("z")));
    assert_eq!(Tree::new(&z).names(), want(a_b));
    drop(z);

    // A remote member is no session of this relay: a whisper to it is dropped, counted.
    let before = counter(&mut w2, &mut t2, "drop_whisper_no_target");
    let d = w2.voice(t2.token_of("a"), b"psst");
    let give_up = Instant::now() + two;
    loop {
        w2.send_udp(&d);
        if counter(&mut w2, &mut t2, "drop_whisper_no_target") > before {
            break;
        }
        assert!(Instant::now() < give_up, "the whisper was not counted");
        std::thread::sleep(Duration::from_millis(50));
    }
    a.expect_no_udp();

    // b leaves: gone from both trees within 2 s.
    drop(b);
    let left = Instant::now();
    let gone2 = converge(&mut w2, &mut t2, one_a, left + two, false);
    converge(&mut w1, &mut t1, one_a, left + two, false);
    eprintln!(
        "directory: a leave on r0 seen on r2 after {:?}",
        gone2 - left
    );

    // kill -9 the host of room 2. a and b come back through r1 and r2: the room is placed on
    // r1 (a enters first). Every tree is exact within 10 s of the kill, from live updates alone
    // (nobody asks for the channel list).
    drop(host);
    let killed = Instant::now();
    drop(a);
    let (mut a, _) = enter_until(r1, "a", Duration::from_secs(5));
    let (mut b, _) = enter_until(r2, "b", Duration::from_secs(5));
    assert_eq!((a.relay, b.relay), (r1, r1), "room 2 re-placed elsewhere");
    let deadline = killed + Duration::from_secs(10);
    let w2_exact = converge(&mut w2, &mut t2, a_b, deadline, false);
    converge(&mut w1, &mut t1, a_b, deadline, false);
    let mut ta = Tree::new(&a);
    converge(&mut a, &mut ta, a_b, deadline, false);
    let mut tb = Tree::new(&b);
    converge(&mut b, &mut tb, a_b, deadline, false);
    eprintln!(
        "directory: exact on every client {:?} after kill -9 of the host (w2 live: {:?})",
        killed.elapsed(),
        w2_exact - killed
    );
    // On r1 (the new host) they are local members; on r2 remote ones under new tokens.
    assert!(!t1.token_of("a").is_remote() && !ta.token_of("b").is_remote());
    assert!(ta.token_of("w1") == t1.token_of("w1"));
    assert!(t2.token_of("a").is_remote());
    // w2's live tree is what its relay lists.
    w2.send(&ClientMessage::ListChannels);
    let mut listed = Tree::new(&w2);
    let m = w2
        .ctl
        .recv_until(|m| matches!(m, ServerMessage::ChannelList { .. }));
    listed.apply(&m);
    assert_eq!(listed.names(), t2.names());
}

#[test]
fn directory_entries_live_with_their_hosts_lease_and_go_at_a_clean_stop_or_expiry() {
    let Some((_redis, redis_port)) = start_redis() else {
        eprintln!("SKIPPED: redis-server is not installed (scripts/install-deps.sh installs it)");
        return;
    };
    // a's room 2 on r0 (stopped cleanly later), b's room 3 on r2 (killed later).
    let (mut r0_proc, r0) = start_relay(redis_port);
    let (r2_proc, r2) = start_relay(redis_port);
    let (_a, _) = enter_room_until(r0, "a", ROOM, Duration::from_secs(5));
    let (_b, _) = enter_room_until(r2, "b", 3, Duration::from_secs(5));
    assert_eq!((_a.relay, _b.relay), (r0, r2));

    // A relay started after them learns both rooms from its first read of the directory.
    let (_p1, r1) = start_relay(redis_port);
    let mut w = Client::connect_with(r1, "w", Some(token("w")));
    let mut tw = Tree::new(&w);
    let both: &[(u32, &[&str])] = &[(ROOM, &["a"]), (3, &["b"])];
    converge(
        &mut w,
        &mut tw,
        both,
        Instant::now() + Duration::from_secs(2),
        false,
    );

    // The record in Redis: the host's own token for a, and no longer to live than the lease.
    let redis = redis::Client::open(format!("redis://127.0.0.1:{redis_port}/")).unwrap();
    let mut conn = redis.get_connection().unwrap();
    let key = relay::directory::members_key(ChannelId(ROOM));
    let bytes: Vec<u8> = redis::cmd("GET").arg(&key).query(&mut conn).unwrap();
    let entry = relay::directory::RoomEntry::decode(&bytes).expect("a directory entry");
    assert_eq!(entry.relay, r0.to_string());
    assert_eq!(entry.users.len(), 1);
    assert_eq!(entry.users[0].name, "a");
    assert!(!entry.users[0].session.is_remote());
    let ttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut conn).unwrap();
    assert!(ttl > 0 && ttl <= LEASE_MS as i64, "entry ttl {ttl} ms");

    // SIGTERM: the host hands the room back and announces it empty before it exits.
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    assert_eq!(
        unsafe { libc::kill(r0_proc.0.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let status = r0_proc.0.wait().unwrap();
    assert!(status.success(), "relay exited with {status}");
    let gone: Option<Vec<u8>> = redis::cmd("GET").arg(&key).query(&mut conn).unwrap();
    assert_eq!(gone, None, "the entry outlived a clean stop");
    let m = w.ctl.recv_until(
        |m| matches!(m, ServerMessage::ChannelMembers { channel, .. } if channel.0 == ROOM),
    );
    assert_eq!(
        m,
        ServerMessage::ChannelMembers {
            channel: ChannelId(ROOM),
            relay: String::new(),
            users: vec![],
        }
    );
    tw.apply(&m);

    // kill -9 of b's host, and nobody re-enters: its entry expires with its lease and the next
    // re-read takes b out of w's tree (target: 10 s).
    drop(r2_proc);
    let killed = Instant::now();
    let gone = converge(
        &mut w,
        &mut tw,
        &[],
        killed + Duration::from_secs(10),
        false,
    );
    eprintln!(
        "directory: a dead host's members left the other relays' trees {:?} after kill -9 \
         (lease {LEASE_MS} ms)",
        gone - killed
    );
}

#[test]
fn after_redis_restarts_empty_the_hosts_claim_their_rooms_again_and_the_directory_recovers() {
    let Some((redis_proc, redis_port)) = start_redis() else {
        eprintln!("SKIPPED: redis-server is not installed (scripts/install-deps.sh installs it)");
        return;
    };
    let (_p0, r0) = start_relay(redis_port);
    let (_p1, r1) = start_relay(redis_port);
    let (_a, _) = enter_until(r0, "a", Duration::from_secs(5));
    let mut w = Client::connect_with(r1, "w", Some(token("w")));
    let mut tw = Tree::new(&w);
    let with_a: &[(u32, &[&str])] = &[(ROOM, &["a"])];
    converge(
        &mut w,
        &mut tw,
        with_a,
        Instant::now() + Duration::from_secs(2),
        false,
    );

    // Redis is gone for two leases: the relays keep serving and w keeps seeing a.
    drop(redis_proc);
    let outage = Instant::now() + Duration::from_millis(2 * LEASE_MS);
    while Instant::now() < outage {
        if let Some(m) = w.ctl.try_recv(Duration::from_millis(100)) {
            tw.apply(&m);
        }
        assert_eq!(
            tw.names(),
            want(with_a),
            "the directory changed while Redis was down"
        );
    }

    // Redis is back, empty: r0 claims its room again (a is still there) and publishes it.
    let (_redis, _) = start_redis_on(redis_port).expect("redis-server again");
    let back = Instant::now();
    let redis = redis::Client::open(format!("redis://127.0.0.1:{redis_port}/")).unwrap();
    let mut conn = redis.get_connection().unwrap();
    let key = relay::directory::members_key(ChannelId(ROOM));
    loop {
        let host: Option<String> = redis::cmd("GET")
            .arg(format!("voice:room:{ROOM}"))
            .query(&mut conn)
            .unwrap();
        let members: Option<Vec<u8>> = redis::cmd("GET").arg(&key).query(&mut conn).unwrap();
        if host.as_deref() == Some(r0.to_string().as_str()) && members.is_some() {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "room not claimed again: host {host:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    converge(
        &mut w,
        &mut tw,
        with_a,
        back + Duration::from_secs(5),
        false,
    );
    // A join through r1 goes to a's room, not to a second copy of it.
    let (c, names) = enter_until(r1, "c", Duration::from_secs(5));
    assert_eq!(c.relay, r0);
    assert_eq!(names, ["a", "c"]);
    eprintln!(
        "directory: room re-claimed and shown again {:?} after Redis came back",
        back.elapsed()
    );
}
