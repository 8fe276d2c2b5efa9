//! Soak: many simulated clients from one load process against a relay in its own process.
//!
//! Clients connect, register UDP, join channels, switch at random, talk (voice datagrams at
//! 50 packets/s for a rotating subset), whisper, chat and disconnect / reconnect at random for the
//! configured time. Then activity stops and the run checks, failing (exit status 1) on any
//! violation:
//! * every connected client's view of its channel (built only from the events it received)
//!   equals the relay's truth (a `ChannelList` taken after the traffic settled);
//! * every chat line came back to its sender exactly once and no client received any line twice;
//! * the relay process is still alive (no panic) and its memory after everyone left is back near
//!   its baseline (within 16 MiB — allocator caches aside).
//!
//! It prints sessions, datagrams/s held, drops by reason and peak / final RSS of the relay.
//!
//! `cargo bench -p voice_benches --bench soak` runs 10 minutes with 1000 clients;
//! `SOAK_SECS=30` (or `BENCH_QUICK=1`, as in CI) shortens it, `SOAK_CLIENTS=N` changes the count.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mio::net::{TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token};
use voice_core::proto::register;
use voice_core::proto::tcp::{
    encode_frame, ClientMessage, FrameReader, ServerMessage, CONTROL_VERSION,
};
use voice_core::proto::udp::{self, DatagramKind, Header};
use voice_core::proto::{ChannelId, SessionToken};
use voice_tls::{ClientTls, TlsStream, TlsTrust, Transport};

const UDP_SOCKETS: usize = 16;
/// Channels in the relay config: rooms of about 20 at 1000 clients.
const CHANNELS: u32 = 50;

/// Deterministic xorshift generator (no dependency, reproducible runs).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

struct Sim {
    stream: Transport<TcpStream>,
    reader: FrameReader<ServerMessage>,
    out: Vec<u8>,
    session: Option<SessionToken>,
    secret: [u8; 32],
    registered: bool,
    view: Option<(ChannelId, BTreeSet<SessionToken>)>,
    seq: u16,
    talking: bool,
    chat_seen: HashSet<String>,
    closing: bool,
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn relay_role() {
    let cfg = relay::config::Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        stats_interval_ms: 0,
        max_sessions: 5000,
        max_connections: 6000,
        token_keys: voice_benches::tokens::relay_keys(),
        // The outgoing cap must hold a listing of every session (the relay checks).
        max_outgoing_bytes: 1 << 20,
        channels: (1..=CHANNELS)
            .map(|id| relay::config::ChannelConfig {
                id,
                name: format!("room {id}"),
                spatial: None,
                max_members: None,
                allow: None,
            })
            .collect(),
        ..Default::default()
    };
    let relay = relay::server::Relay::bind(cfg).expect("bind");
    println!("addr {}", relay.local_addr());
    let _ = io::stdout().flush();
    let _ = relay.run();
}

fn spawn_relay() -> (Child, SocketAddr) {
    let exe = std::env::current_exe().expect("exe");
    let mut child = Command::new(exe)
        .arg("--role-relay")
        .env(
            voice_benches::tokens::ENV,
            voice_benches::tokens::key().public(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn relay");
    let mut line = String::new();
    let mut out = child.stdout.take().expect("stdout");
    let mut b = [0u8; 1];
    while out.read(&mut b).map(|n| n == 1).unwrap_or(false) && b[0] != b'\n' {
        line.push(b[0] as char);
    }
    let addr = line
        .strip_prefix("addr ")
        .and_then(|a| a.parse().ok())
        .expect("relay address");
    (child, addr)
}

fn send(sim: &mut Sim, msg: &ClientMessage) {
    let _ = encode_frame(msg, &mut sim.out);
}

fn flush(sim: &mut Sim) -> io::Result<()> {
    while !sim.out.is_empty() {
        match sim.stream.write(&sim.out) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                sim.out.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    sim.stream.flush_tls()
}

struct Report {
    violations: Vec<String>,
}

impl Report {
    fn fail(&mut self, v: String) {
        if self.violations.len() < 20 {
            eprintln!("violation: {v}");
        }
        self.violations.push(v);
    }
}

/// Applies one server message to a simulated client's view.
fn apply(
    sim: &mut Sim,
    msg: ServerMessage,
    report: &mut Report,
    chat_back: &mut HashMap<String, u32>,
) {
    match msg {
        ServerMessage::Welcome {
            session, secret, ..
        } => {
            sim.session = Some(session);
            sim.secret = secret;
        }
        ServerMessage::Joined { channel } => {
            sim.view = Some((
                channel.id,
                channel.users.iter().map(|u| u.session).collect(),
            ));
        }
        ServerMessage::Left { .. } => sim.view = None,
        ServerMessage::UserJoined { channel, user } => match sim.view.as_mut() {
            Some((c, m)) if *c == channel => {
                m.insert(user.session);
            }
            _ => report.fail(format!(
                "UserJoined for {channel} outside the client's channel"
            )),
        },
        ServerMessage::UserLeft { channel, session } => match sim.view.as_mut() {
            Some((c, m)) if *c == channel => {
                if !m.remove(&session) {
                    report.fail(format!("UserLeft for non-member {session}"));
                }
            }
            _ => report.fail(format!(
                "UserLeft for {channel} outside the client's channel"
            )),
        },
        ServerMessage::Chat { from, text, .. } => {
            if !sim.chat_seen.insert(text.clone()) {
                report.fail(format!("chat {text:?} received twice"));
            }
            if Some(from) == sim.session {
                *chat_back.entry(text).or_default() += 1;
            }
        }
        _ => {}
    }
}

struct Wave {
    sims: HashMap<usize, Sim>,
    poll: Poll,
    sessions_total: u64,
    voice_sent: u64,
    voice_rx: u64,
    peak_rss: u64,
    chat_lines: usize,
    lost: usize,
}

/// One wave: `clients` clients connect and act for `secs`, then views and chat are checked.
fn wave(addr: SocketAddr, relay_pid: u32, clients: usize, secs: u64, report: &mut Report) -> Wave {
    let mut poll = Poll::new().expect("poll");
    let mut udps: Vec<UdpSocket> = (0..UDP_SOCKETS)
        .map(|_| UdpSocket::bind("127.0.0.1:0".parse().expect("addr")).expect("udp"))
        .collect();
    for (i, u) in udps.iter_mut().enumerate() {
        poll.registry()
            .register(u, Token(1_000_000 + i), Interest::READABLE)
            .expect("register udp");
    }
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let mut sims: HashMap<usize, Sim> = HashMap::new();
    let mut next_token = 0usize;
    let mut chat_sent: HashSet<String> = HashSet::new();
    let mut chat_back: HashMap<String, u32> = HashMap::new();
    let mut chat_n = 0u64;
    let mut sessions_total = 0u64;
    let mut voice_sent = 0u64;
    let mut voice_rx = 0u64;
    let mut peak_rss = 0u64;
    // Every simulated client speaks TLS 1.3, trusting the relay's certificate on first use.
    let tls = ClientTls::new(&TlsTrust::TrustOnFirstUse).expect("TLS client configuration");
    let connect = |poll: &Poll, next_token: &mut usize| -> Option<(usize, Sim)> {
        let mut stream = TcpStream::connect(addr).ok()?;
        let tok = *next_token;
        *next_token += 1;
        poll.registry()
            .register(
                &mut stream,
                Token(tok),
                Interest::READABLE | Interest::WRITABLE,
            )
            .ok()?;
        let conn = tls.connect(addr.ip().into()).ok()?;
        let mut sim = Sim {
            stream: Transport::Tls(Box::new(TlsStream::new(conn, stream))),
            reader: FrameReader::new(),
            out: Vec::new(),
            session: None,
            secret: [0; 32],
            registered: false,
            view: None,
            seq: 0,
            talking: false,
            chat_seen: HashSet::new(),
            closing: false,
        };
        send(
            &mut sim,
            &ClientMessage::Hello {
                version: CONTROL_VERSION,
                name: format!("soak{tok}"),
                token: Some(voice_benches::tokens::token(&format!("soak{tok}"))),
            },
        );
        Some((tok, sim))
    };
    for _ in 0..clients {
        if let Some((t, s)) = connect(&poll, &mut next_token) {
            sims.insert(t, s);
            sessions_total += 1;
        }
    }

    let start = Instant::now();
    let traffic_end = start + Duration::from_secs(secs);
    let settle_end = traffic_end + Duration::from_secs(3);
    let mut events = Events::with_capacity(4096);
    let mut next_tick = Instant::now();
    let mut buf = [0u8; 2048];
    let mut counter = 1u64;
    let mut tick_no = 0u64;
    let mut last_report = Instant::now();
    let mut asked_truth = false;
    let mut truth: Option<Vec<(ChannelId, BTreeSet<SessionToken>)>> = None;
    while Instant::now() < settle_end + Duration::from_secs(5) && truth.is_none() {
        let _ = poll.poll(&mut events, Some(Duration::from_millis(5)));
        for ev in events.iter() {
            let Token(t) = ev.token();
            if t >= 1_000_000 {
                let u = &udps[t - 1_000_000];
                while let Ok((n, _)) = u.recv_from(&mut buf) {
                    if let Ok(d) = udp::parse(&buf[..n]) {
                        match d.header.kind {
                            DatagramKind::Voice => voice_rx += 1,
                            DatagramKind::RegisterAck => {
                                if let Some(s) = sims
                                    .values_mut()
                                    .find(|s| s.session == Some(d.header.sender))
                                {
                                    s.registered = true;
                                }
                            }
                            _ => {}
                        }
                    }
                }
                continue;
            }
            let mut dead = false;
            if let Some(sim) = sims.get_mut(&t) {
                if ev.is_readable() {
                    loop {
                        match sim.reader.read_from(&mut sim.stream) {
                            Ok(0) => {
                                dead = true;
                                break;
                            }
                            Ok(_) => {}
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(_) => {
                                dead = true;
                                break;
                            }
                        }
                        while let Ok(Some(msg)) = sim.reader.next_message() {
                            if let ServerMessage::ChannelList { channels } = &msg {
                                if asked_truth {
                                    truth = Some(
                                        channels
                                            .iter()
                                            .map(|c| {
                                                (c.id, c.users.iter().map(|u| u.session).collect())
                                            })
                                            .collect(),
                                    );
                                }
                            }
                            apply(sim, msg, report, &mut chat_back);
                        }
                    }
                }
            }
            if dead {
                if let Some(sim) = sims.get(&t) {
                    if !sim.closing {
                        report.fail(format!("relay closed client {t} unexpectedly"));
                    }
                }
                sims.remove(&t);
            }
        }

        // One 20 ms tick of client behaviour.
        let now = Instant::now();
        if now >= next_tick {
            next_tick = now + Duration::from_millis(20);
            tick_no += 1;
            let active = now < traffic_end;
            let toks: Vec<usize> = sims.keys().copied().collect();
            for t in toks {
                let Some(sim) = sims.get_mut(&t) else {
                    continue;
                };
                let Some(session) = sim.session else {
                    // Still connecting: push out the Hello once the socket is writable.
                    if flush(sim).is_err() {
                        sim.closing = true;
                    }
                    continue;
                };
                if !sim.registered && rng.below(10) == 0 {
                    counter += 1;
                    let payload = register::sign(&sim.secret, session, counter);
                    let header = Header {
                        kind: DatagramKind::Register,
                        ..Header::voice(session, 0, 0)
                    };
                    let mut d = [0u8; 64];
                    if let Ok(n) =
                        udp::write(&header, &payload, &udp::TagKey::derive(&sim.secret), &mut d)
                    {
                        let _ = udps[t % UDP_SOCKETS].send_to(&d[..n], addr);
                    }
                }
                if sim.view.is_none() && sim.out.is_empty() && rng.below(5) == 0 {
                    let ch = ChannelId(1 + rng.below(u64::from(CHANNELS)) as u32);
                    send(sim, &ClientMessage::JoinChannel { channel: ch });
                }
                if active {
                    // Per client per tick: rare switches, chats, talk toggles, ping.
                    match rng.below(2500) {
                        0..=2 => {
                            let ch = ChannelId(1 + rng.below(u64::from(CHANNELS)) as u32);
                            send(sim, &ClientMessage::JoinChannel { channel: ch });
                        }
                        3..=4 => {
                            chat_n += 1;
                            let text = format!("c{t}-{chat_n}");
                            if sim.view.is_some() {
                                chat_sent.insert(text.clone());
                            }
                            send(sim, &ClientMessage::Chat { text });
                        }
                        // Talk spurts: about 2 % of clients talk at any time, ~2 s each.
                        5 if !sim.talking => sim.talking = rng.below(2) == 0,
                        6..=30 if sim.talking => sim.talking = false,
                        11 => {
                            // Disconnect without goodbye; a fresh client takes its place.
                            sim.closing = true;
                        }
                        _ => {}
                    }
                    if sim.talking && sim.registered && sim.view.is_some() {
                        let whisper = rng.below(20) == 0;
                        let target = if whisper {
                            sim.view
                                .as_ref()
                                .and_then(|(_, m)| m.iter().find(|s| **s != session).copied())
                                .unwrap_or(SessionToken::NONE)
                        } else {
                            SessionToken::NONE
                        };
                        let header = Header {
                            target,
                            ..Header::voice(session, sim.seq, u32::from(sim.seq) * 960)
                        };
                        sim.seq = sim.seq.wrapping_add(1);
                        let mut d = [0u8; 120];
                        if let Ok(n) = udp::write(
                            &header,
                            &[0x55; 60],
                            &udp::TagKey::derive(&sim.secret),
                            &mut d,
                        ) {
                            if udps[t % UDP_SOCKETS].send_to(&d[..n], addr).is_ok() {
                                voice_sent += 1;
                            }
                        }
                    }
                }
                // Like real clients: a ping every 5 s keeps the idle timeout away.
                if (tick_no + t as u64).is_multiple_of(250) {
                    send(sim, &ClientMessage::Ping { client_time_us: 1 });
                }
                if flush(sim).is_err() {
                    sim.closing = true;
                }
            }
            // Replace closed clients with new ones while traffic runs.
            let closing: Vec<usize> = sims
                .iter()
                .filter(|(_, s)| s.closing)
                .map(|(t, _)| *t)
                .collect();
            for t in closing {
                if let Some(mut s) = sims.remove(&t) {
                    let _ = poll.registry().deregister(s.stream.sock_mut());
                    // Its chat lines may legitimately never echo now.
                    chat_sent.retain(|c| !c.starts_with(&format!("c{t}-")));
                }
                if active {
                    if let Some((nt, ns)) = connect(&poll, &mut next_token) {
                        sims.insert(nt, ns);
                        sessions_total += 1;
                    }
                }
            }
            if now >= traffic_end && !asked_truth && now >= traffic_end + Duration::from_secs(2) {
                asked_truth = true;
                if let Some(sim) = sims.values_mut().next() {
                    send(sim, &ClientMessage::ListChannels);
                    let _ = flush(sim);
                }
            }
            if last_report.elapsed() >= Duration::from_secs(10) {
                last_report = Instant::now();
                let rss = rss_kib(relay_pid).unwrap_or(0);
                peak_rss = peak_rss.max(rss);
                println!(
                    "  t={:>4}s clients={} voice sent={} received={} relay RSS={} KiB",
                    start.elapsed().as_secs(),
                    sims.len(),
                    voice_sent,
                    voice_rx,
                    rss
                );
            }
        }
    }

    // Views against the relay's truth.
    match &truth {
        None => report.fail("no ChannelList answer after the traffic settled".into()),
        Some(channels) => {
            let by_member: HashMap<SessionToken, (ChannelId, &BTreeSet<SessionToken>)> = channels
                .iter()
                .flat_map(|(id, m)| m.iter().map(move |s| (*s, (*id, m))))
                .collect();
            let mut checked = 0;
            for sim in sims.values() {
                let Some(s) = sim.session else { continue };
                let truth_view = by_member.get(&s).map(|(id, m)| (*id, (*m).clone()));
                if sim.view != truth_view {
                    report.fail(format!(
                        "client {s}: view {:?} != relay {:?}",
                        sim.view.as_ref().map(|v| (v.0, v.1.len())),
                        truth_view.as_ref().map(|v| (v.0, v.1.len()))
                    ));
                }
                checked += 1;
            }
            println!(
                "  views checked: {checked} clients agree with the relay: {}",
                report.violations.is_empty()
            );
        }
    }
    let mut lost = 0;
    for text in &chat_sent {
        match chat_back.get(text) {
            Some(1) => {}
            Some(n) => report.fail(format!("chat {text} echoed {n} times")),
            None => lost += 1,
        }
    }
    if lost > 0 {
        report.fail(format!("{lost} chat lines never echoed to their sender"));
    }
    Wave {
        sims,
        poll,
        sessions_total,
        voice_sent,
        voice_rx,
        peak_rss,
        chat_lines: chat_sent.len(),
        lost,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--role-relay") {
        relay_role();
        return;
    }
    let quick = voice_benches::quick();
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 30 } else { 600 });
    let clients: usize = std::env::var("SOAK_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let (mut relay, addr) = spawn_relay();
    std::thread::sleep(Duration::from_millis(200));
    let first = rss_kib(relay.id()).unwrap_or(0);
    println!(
        "soak: {clients} clients, {secs} s, relay pid {} at {addr}, fresh RSS {first} KiB",
        relay.id()
    );
    // Warm-up wave: the same population joins, talks briefly and leaves, so the baseline includes
    // what the allocator keeps after a full house (a leak shows as growth beyond it).
    let mut warm = Report {
        violations: Vec::new(),
    };
    let w = wave(addr, relay.id(), clients, 5, &mut warm);
    drop(w);
    std::thread::sleep(Duration::from_secs(2));
    let baseline = rss_kib(relay.id()).unwrap_or(0);
    println!("  baseline RSS after a warm-up wave of {clients} clients: {baseline} KiB");
    let mut report = warm;
    let start = Instant::now();
    let w = wave(addr, relay.id(), clients, secs, &mut report);
    let Wave {
        mut sims,
        mut poll,
        sessions_total,
        voice_sent,
        voice_rx,
        peak_rss,
        chat_lines,
        lost,
    } = w;
    let mut events = Events::with_capacity(64);
    // Ask for counters, then everyone leaves; memory must come back down.
    let mut counters = Vec::new();
    if let Some((t, _)) = sims.iter().next().map(|(t, s)| (*t, s.session)) {
        if let Some(sim) = sims.get_mut(&t) {
            send(sim, &ClientMessage::StatsRequest);
            let _ = flush(sim);
            let until = Instant::now() + Duration::from_secs(3);
            while Instant::now() < until && counters.is_empty() {
                let _ = poll.poll(&mut events, Some(Duration::from_millis(20)));
                let _ = sim.reader.read_from(&mut sim.stream);
                while let Ok(Some(msg)) = sim.reader.next_message() {
                    if let ServerMessage::Stats { counters: c } = msg {
                        counters = c;
                    }
                }
            }
        }
    }
    let peak = peak_rss.max(rss_kib(relay.id()).unwrap_or(0));
    for (_, mut s) in sims.drain() {
        s.closing = true;
        send(&mut s, &ClientMessage::Goodbye);
        let _ = flush(&mut s);
    }
    std::thread::sleep(Duration::from_secs(2));
    let alive = matches!(relay.try_wait(), Ok(None));
    if !alive {
        report.fail("the relay process died".into());
    }
    let final_rss = rss_kib(relay.id()).unwrap_or(0);
    let _ = relay.kill();
    let _ = relay.wait();
    let wall = start.elapsed().as_secs_f64().max(1.0);
    println!("soak results:");
    println!("  sessions over the run: {sessions_total}");
    println!(
        "  voice datagrams sent {voice_sent} ({:.0}/s), forwarded copies received {voice_rx} ({:.0}/s)",
        voice_sent as f64 / wall,
        voice_rx as f64 / wall
    );
    println!(
        "  chat lines sent {chat_lines} (all echoed exactly once: {})",
        lost == 0
    );
    let drops: Vec<String> = counters
        .iter()
        .filter(|(k, v)| k.starts_with("drop_") && *v > 0)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!(
        "  relay drops by reason: {}",
        if drops.is_empty() {
            "none".into()
        } else {
            drops.join(" ")
        }
    );
    println!("  relay RSS: baseline {baseline} KiB, peak {peak} KiB, after everyone left {final_rss} KiB");
    if final_rss > baseline + 16 * 1024 {
        report.fail(format!(
            "relay memory did not return to baseline: {final_rss} KiB vs {baseline} KiB"
        ));
    }
    if report.violations.is_empty() {
        println!("soak: ok");
    } else {
        println!("soak: {} violation(s)", report.violations.len());
        std::process::exit(1);
    }
}
