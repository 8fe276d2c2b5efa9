//! `spatial`: what positional audio costs.
//!
//! 1. Rendering: CPU per stream for one 20 ms frame through the ILD/ITD renderer with a moving
//!    source (distance gain, fractional interaural delay, ramps), as a share of one core.
//! 2. Relay: CPU per forwarded datagram in a 2D channel against a 3D channel, in one run, each
//!    scenario in its own child relay process (this binary re-executed with `--role relay`, which
//!    answers `cpu` on stdin with its `getrusage` CPU time): 100 members, 10 of them speaking at
//!    50 packets/s with positions in tagged (version 2) datagrams, each member presenting an
//!    access token, over real loopback UDP; the 3D channel once with everyone in
//!    range (same deliveries as 2D: the difference is the culling itself) and once spread over a
//!    room where most pairs are out of range.
//!
//! `cargo bench -p voice_benches --bench spatial [-- --quick]`. Numbers are printed, never
//! asserted. Loopback only; every loop is bounded in count and time.

use std::hint::black_box;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use voice_benches::{cpu_time_us, quick};
use voice_core::proto::tcp::{
    encode_frame, ClientMessage, FrameReader, ServerMessage, CONTROL_VERSION,
};
use voice_core::proto::udp::{self, DatagramKind, Header, Position, TagKey, MAX_DATAGRAM};
use voice_core::proto::ChannelId;
use voice_core::spatial::{
    Attenuation, DistanceModel, EarParams, ListenerPose, SpatialVoice, StereoMixer,
};
use voice_core::FRAME_SAMPLES;

const MEMBERS: usize = 100;
const SPEAKERS: usize = 10;
const RANGE: f32 = 30.0;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--role") {
        return child();
    }
    let quick = quick();
    render_cost(if quick { 500 } else { 20_000 });
    let secs = if quick { 0.5 } else { 3.0 };
    println!(
        "relay: {MEMBERS} members, {SPEAKERS} speaking at 50 packets/s with positions, \
         {secs} s per scenario, each in its own relay process"
    );
    println!("  scenario                     forwarded  culled   relay CPU µs  µs/forwarded  µs/received");
    let mut base = None;
    for (name, channel, spread) in [
        ("2D channel", 1u32, 120.0f32),
        ("3D, everyone in range", 2, 10.0),
        ("3D, spread over 120 units", 2, 120.0),
    ] {
        match relay_scenario(channel, spread, secs) {
            Ok(r) => {
                let per_fwd = r.cpu_us as f64 / r.forwarded.max(1) as f64;
                let per_rx = r.cpu_us as f64 / r.received_by_relay.max(1) as f64;
                let vs = match base {
                    None => {
                        base = Some(per_fwd);
                        String::new()
                    }
                    Some(b) => format!(
                        "  ({:+.1} % per forwarded vs 2D)",
                        100.0 * (per_fwd / b - 1.0)
                    ),
                };
                println!(
                    "  {name:<27} {:>9} {:>7} {:>14} {:>13.2} {:>12.1}{vs}",
                    r.forwarded, r.culled, r.cpu_us, per_fwd, per_rx
                );
            }
            Err(e) => println!("  {name}: failed: {e}"),
        }
    }
}

fn render_cost(frames: usize) {
    let listener = ListenerPose::default();
    let att = Attenuation {
        model: DistanceModel::Inverse,
        min_distance: 1.0,
        max_distance: 50.0,
        rolloff: 1.0,
    };
    let mut pcm = [0i16; FRAME_SAMPLES];
    for (i, s) in pcm.iter_mut().enumerate() {
        *s = ((i as f32 * 0.0575).sin() * 8000.0) as i16;
    }
    let mut voice = SpatialVoice::new();
    let mut mix = StereoMixer::new();
    let cpu0 = cpu_time_us();
    let t0 = Instant::now();
    for k in 0..frames {
        // A source circling the listener at 3-7 units: every frame new gains and delays.
        let a = k as f32 * 0.05;
        let r = 5.0 + 2.0 * (k as f32 * 0.01).sin();
        let p = Position::new(r * a.cos(), 0.0, r * a.sin());
        let ears = EarParams::for_source(&listener, p, &att, 1.0);
        mix.clear();
        mix.add_spatial(&mut voice, &pcm, ears);
        black_box(mix.raw());
    }
    let wall = t0.elapsed();
    let cpu = cpu_time_us() - cpu0;
    let ns = cpu as f64 * 1000.0 / frames as f64;
    println!(
        "render: {frames} frames, {:.2} µs CPU per stream per 20 ms frame ({:.3} % of a core; \
         wall {:.2} µs/frame; includes clearing the stereo accumulator)",
        ns / 1000.0,
        100.0 * ns / 20_000_000.0,
        wall.as_secs_f64() * 1e6 / frames as f64
    );
}

struct Scenario {
    cpu_us: u64,
    forwarded: u64,
    culled: u64,
    received_by_relay: u64,
}

fn frame(tcp: &mut TcpStream, m: &ClientMessage) -> std::io::Result<()> {
    let mut buf = Vec::new();
    encode_frame(m, &mut buf).map_err(std::io::Error::other)?;
    tcp.write_all(&buf)
}

fn read_until(
    tcp: &mut TcpStream,
    reader: &mut FrameReader<ServerMessage>,
    mut pred: impl FnMut(&ServerMessage) -> bool,
) -> std::io::Result<ServerMessage> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        while let Some(m) = reader.next_message().map_err(std::io::Error::other)? {
            if pred(&m) {
                return Ok(m);
            }
        }
        let mut b = [0u8; 4096];
        let n = tcp.read(&mut b)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        reader.push(&b[..n]).map_err(std::io::Error::other)?;
    }
    Err(std::io::ErrorKind::TimedOut.into())
}

/// One child relay, `MEMBERS` sessions in `channel` at positions spread over `spread` units.
fn relay_scenario(channel: u32, spread: f32, secs: f64) -> std::io::Result<Scenario> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(["--role", "relay"])
        .env(
            voice_benches::tokens::ENV,
            voice_benches::tokens::key().public(),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().expect("stdin");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line)?;
    let relay: SocketAddr = line
        .trim()
        .strip_prefix("addr ")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad child line {line:?}")))?;
    let result = drive(relay, channel, spread, secs, &mut stdin, &mut out);
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn cpu_of(stdin: &mut impl Write, out: &mut impl BufRead) -> std::io::Result<u64> {
    writeln!(stdin, "cpu")?;
    stdin.flush()?;
    let mut line = String::new();
    out.read_line(&mut line)?;
    line.trim()
        .strip_prefix("cpu ")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad cpu line"))
}

fn drive(
    relay: SocketAddr,
    channel: u32,
    spread: f32,
    secs: f64,
    stdin: &mut impl Write,
    out: &mut impl BufRead,
) -> std::io::Result<Scenario> {
    let mut members = Vec::new();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 40) as f32 / (1u64 << 24) as f32
    };
    for i in 0..MEMBERS {
        let mut tcp = TcpStream::connect(relay)?;
        tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut reader = FrameReader::<ServerMessage>::new();
        frame(
            &mut tcp,
            &ClientMessage::Hello {
                version: CONTROL_VERSION,
                name: format!("m{i}"),
                token: Some(voice_benches::tokens::token(&format!("m{i}"))),
            },
        )?;
        let ServerMessage::Welcome {
            session, secret, ..
        } = read_until(&mut tcp, &mut reader, |m| {
            matches!(m, ServerMessage::Welcome { .. })
        })?
        else {
            unreachable!()
        };
        frame(
            &mut tcp,
            &ClientMessage::JoinChannel {
                channel: ChannelId(channel),
            },
        )?;
        read_until(&mut tcp, &mut reader, |m| {
            matches!(m, ServerMessage::Joined { .. })
        })?;
        let udp = UdpSocket::bind("127.0.0.1:0")?;
        udp.set_read_timeout(Some(Duration::from_millis(500)))?;
        let h = Header {
            kind: DatagramKind::Register,
            ..Header::voice(session, 0, 0)
        };
        let mut buf = [0u8; MAX_DATAGRAM];
        let key = TagKey::derive(&secret);
        let n = udp::write(
            &h,
            &voice_core::proto::register::sign(&secret, session, 1),
            &key,
            &mut buf,
        )
        .map_err(std::io::Error::other)?;
        udp.send_to(&buf[..n], relay)?;
        udp.recv_from(&mut buf)?;
        let p = Position::new(rnd() * spread, 0.0, rnd() * spread);
        // The listener's position, as an engine's UDP ping carries it.
        let ping = Header {
            kind: DatagramKind::Ping,
            ..Header::voice(session, 0, 0)
        };
        let n = udp::write_positional(&ping, Some(p), &[0; 8], &key, &mut buf)
            .map_err(std::io::Error::other)?;
        udp.send_to(&buf[..n], relay)?;
        udp.recv_from(&mut buf)?;
        udp.set_nonblocking(true)?;
        members.push((tcp, session, udp, p, key));
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let socks: Vec<&UdpSocket> = members.iter().map(|m| &m.2).collect();
    let cpu0 = cpu_of(stdin, out)?;
    let (sent, received) = std::thread::scope(|sc| {
        let rx = std::thread::Builder::new()
            .name("spatial-recv".into())
            .spawn_scoped(sc, || {
                let mut got = 0u64;
                let mut buf = [0u8; MAX_DATAGRAM];
                let t_end = Instant::now() + Duration::from_secs_f64(secs + 5.0);
                while Instant::now() < t_end {
                    let mut any = false;
                    for s in &socks {
                        while s.recv_from(&mut buf).is_ok() {
                            got += 1;
                            any = true;
                        }
                    }
                    if !any {
                        if stop.load(std::sync::atomic::Ordering::SeqCst) {
                            break;
                        }
                        std::thread::sleep(Duration::from_micros(500));
                    }
                }
                got
            })
            .expect("spawn receiver");
        let ticks = (secs * 50.0) as u32;
        let t0 = Instant::now();
        let mut sent = 0u64;
        let mut buf = [0u8; MAX_DATAGRAM];
        for k in 1..=ticks {
            let due = t0 + Duration::from_millis(20 * u64::from(k));
            if let Some(w) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(w);
            }
            for (_, session, udp, p, key) in members.iter().take(SPEAKERS) {
                let h = Header::voice(*session, k as u16, k * 960);
                if let Ok(n) = udp::write_positional(&h, Some(*p), &[0x55; 80], key, &mut buf) {
                    if udp.send_to(&buf[..n], relay).is_ok() {
                        sent += 1;
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        (sent, rx.join().unwrap_or(0))
    });
    let cpu1 = cpu_of(stdin, out)?;
    let tcp = &mut members[0].0;
    frame(tcp, &ClientMessage::StatsRequest)?;
    let mut reader = FrameReader::<ServerMessage>::new();
    let ServerMessage::Stats { counters } = read_until(tcp, &mut reader, |m| {
        matches!(m, ServerMessage::Stats { .. })
    })?
    else {
        unreachable!()
    };
    let get = |k: &str| counters.iter().find(|(n, _)| n == k).map_or(0, |(_, v)| *v);
    let forwarded = get("forwarded_packets");
    if forwarded != received {
        println!("  (relay forwarded {forwarded}, clients received {received})");
    }
    Ok(Scenario {
        cpu_us: cpu1 - cpu0,
        forwarded,
        culled: get("voice_culled"),
        received_by_relay: sent,
    })
}

fn child() {
    let att = Attenuation {
        model: DistanceModel::Linear,
        min_distance: 1.0,
        max_distance: RANGE,
        rolloff: 1.0,
    };
    let cfg = relay::Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        channels: vec![
            relay::config::ChannelConfig {
                id: 1,
                name: "flat".into(),
                spatial: None,
                max_members: None,
                allow: None,
            },
            relay::config::ChannelConfig {
                id: 2,
                name: "arena".into(),
                spatial: Some(att),
                max_members: None,
                allow: None,
            },
        ],
        insecure_plaintext: true,
        token_keys: voice_benches::tokens::relay_keys(),
        max_outgoing_bytes: 1 << 20,
        stats_interval_ms: 0,
        ..relay::Config::default()
    };
    let r = relay::Relay::bind(cfg).expect("bind relay");
    let addr = r.local_addr();
    let h = r.spawn().expect("spawn relay");
    std::mem::forget(h); // runs until the process exits
    println!("addr {addr}");
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim() == "cpu" {
            println!("cpu {}", cpu_time_us());
        }
    }
}
