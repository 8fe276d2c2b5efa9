//! Client-side figures on loopback, through the real relay:
//!
//! * **mouth-to-ear latency** excluding device buffers: tone bursts are pushed in real time into
//!   speaker A's capture ring (as a sound card would) and detected in listener B's playback ring
//!   (pulled in real time, as a sound card would). It covers frame accumulation, encode, UDP to the
//!   relay and back, B's jitter buffer, decode and mix. Printed with B's own jitter-buffer delay
//!   for the breakdown.
//!   The same again with UDP blocked (the clients reach the relay through a TCP-only forwarder, so
//!   their UDP goes nowhere and voice falls back to the TLS tunnel), side by side in one run.
//! * **CPU per received stream**: a listener's engine-thread CPU time (from
//!   `/proc/self/task/*/stat`) with 16 simultaneous speakers, minus the same listener with none,
//!   divided by 16 — as a share of one core.
//!
//! Run: `cargo bench -p voice_benches --bench client_latency` (`BENCH_QUICK=1` for a smoke run).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use voice_benches::quick;
use voice_client::{
    AudioInput, AudioOutput, Client, ClientConfig, ConnectionStatus, Event, TransmitMode, VoicePath,
};

fn relay() -> relay::server::RelayHandle {
    let cfg = relay::config::Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        stats_interval_ms: 0,
        ..Default::default()
    };
    relay::server::Relay::bind(cfg)
        .expect("bind relay")
        .spawn()
        .expect("spawn relay")
}

/// A TCP-only forwarder to `to` on a fresh loopback port: clients given its address reach the
/// relay's control port, while their UDP to the same port reaches nothing (UDP "blocked"). Serves
/// at most `max_conns` connections; each pipe ends when either side closes.
fn tcp_only_forwarder(to: SocketAddr, max_conns: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind forwarder");
    let addr = listener.local_addr().expect("forwarder addr");
    let pipe = |mut from: TcpStream, mut to: TcpStream| {
        move || {
            let mut buf = [0u8; 16 * 1024];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 || to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        }
    };
    std::thread::Builder::new()
        .name("tcp-forwarder".into())
        .spawn(move || {
            for conn in listener.incoming().take(max_conns) {
                let Ok(down) = conn else { continue };
                let Ok(up) = TcpStream::connect(to) else {
                    continue;
                };
                let _ = down.set_nodelay(true);
                let _ = up.set_nodelay(true);
                let (d2, u2) = match (down.try_clone(), up.try_clone()) {
                    (Ok(d), Ok(u)) => (d, u),
                    _ => continue,
                };
                let _ = std::thread::Builder::new()
                    .name("fwd-up".into())
                    .spawn(pipe(down, up));
                let _ = std::thread::Builder::new()
                    .name("fwd-down".into())
                    .spawn(pipe(u2, d2));
            }
        })
        .expect("spawn forwarder");
    addr
}

fn client(
    relay: &relay::server::RelayHandle,
    name: &str,
    input: AudioInput,
    output: AudioOutput,
) -> Client {
    client_via(relay, relay.local_addr(), name, input, output)
}

fn client_via(
    relay: &relay::server::RelayHandle,
    server: SocketAddr,
    name: &str,
    input: AudioInput,
    output: AudioOutput,
) -> Client {
    let mut cfg = ClientConfig::new(server, name);
    cfg.token = relay.token_for(name).map(voice_client::AccessToken);
    // TLS 1.3 to the relay's in-memory self-signed certificate.
    cfg.tls = voice_client::TlsTrust::TrustOnFirstUse;
    cfg.input = input;
    cfg.output = output;
    cfg.engine.transmit = TransmitMode::Continuous;
    Client::start(cfg).expect("client")
}

fn wait_joined(c: &Client) {
    wait_joined_on(c, VoicePath::Udp)
}

/// Waits until `c` is in its channel with voice flowing on `path`.
fn wait_joined_on(c: &Client, path: VoicePath) {
    let until = Instant::now() + Duration::from_secs(8);
    let mut joined = false;
    let mut ready = false;
    while !(joined && ready) && Instant::now() < until {
        match c.events().recv_timeout(Duration::from_millis(100)) {
            Ok(Event::ChannelJoined { .. }) => joined = true,
            Ok(Event::UdpReady) if path == VoicePath::Udp => ready = true,
            Ok(Event::Status(ConnectionStatus::Connected { path: p })) if p == path => ready = true,
            _ => {}
        }
    }
    assert!(
        joined && ready,
        "client did not join on {} in time",
        path.name()
    );
}

/// CPU time (µs) of this process's thread whose name starts with `prefix`.
fn thread_cpu_us(prefix: &str) -> Option<u64> {
    let ticks = 100u64; // USER_HZ on Linux
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let path = entry.ok()?.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim_end().starts_with(prefix) {
            let stat = std::fs::read_to_string(path.join("stat")).ok()?;
            let after = &stat[stat.rfind(')')? + 2..];
            let f: Vec<&str> = after.split_whitespace().collect();
            let ut: u64 = f.get(11)?.parse().ok()?;
            let st: u64 = f.get(12)?.parse().ok()?;
            return Some((ut + st) * 1_000_000 / ticks);
        }
    }
    None
}

/// Mouth-to-ear with voice on `path`; returns the p50 in ms.
fn latency(seconds: u64, path: VoicePath) -> Option<f64> {
    let relay = relay();
    let server = match path {
        VoicePath::Udp => relay.local_addr(),
        VoicePath::Tunnel => tcp_only_forwarder(relay.local_addr(), 2),
    };
    let a = client_via(&relay, server, "mouth", AudioInput::App, AudioOutput::Null);
    let b = client_via(&relay, server, "ear", AudioInput::Null, AudioOutput::App);
    wait_joined_on(&a, path);
    wait_joined_on(&b, path);
    let mut cap = a.take_app_capture().expect("capture ring");
    let mut play = b.take_app_playback().expect("playback ring");
    const SR: f64 = 48_000.0;
    let period = 24_000usize; // one burst every 500 ms
    let burst = 480usize; // 10 ms of 1 kHz
    let start = Instant::now() + Duration::from_millis(100);
    let frames = (seconds * 50) as usize;
    let mut sent_at = Vec::new();
    let mut detected_at = Vec::new();
    let mut above = false;
    let mut quiet = 0usize;
    let mut frame = [0i16; 960];
    let mut out = [0i16; 960];
    for k in 0..frames {
        let due = start + Duration::from_millis(20 * k as u64);
        if let Some(w) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(w);
        }
        for (i, s) in frame.iter_mut().enumerate() {
            let n = k * 960 + i;
            let phase = n % period;
            *s = if phase < burst {
                ((n as f64 / SR * 1000.0 * std::f64::consts::TAU).sin() * 12_000.0) as i16
            } else {
                0
            };
            if phase == 0 {
                sent_at.push(due + Duration::from_secs_f64(i as f64 / SR));
            }
        }
        cap.push(&frame);
        let pulled_at = Instant::now();
        play.pull(&mut out);
        for (i, &s) in out.iter().enumerate() {
            let loud = s.unsigned_abs() > 3000;
            if loud && !above {
                detected_at.push(pulled_at + Duration::from_secs_f64(i as f64 / SR));
            }
            // Hysteresis: the burst is over after 5 ms of quiet (the tone's zero crossings are
            // quiet for a few samples each).
            quiet = if loud { 0 } else { quiet + 1 };
            above = loud || (above && quiet < 240);
        }
    }
    let mut lat: Vec<f64> = Vec::new();
    for d in &detected_at {
        if let Some(s) = sent_at.iter().rev().find(|s| **s <= *d) {
            let ms = d.duration_since(*s).as_secs_f64() * 1000.0;
            if ms < 400.0 {
                lat.push(ms);
            }
        }
    }
    lat.sort_by(f64::total_cmp);
    let stats = b.stats();
    if lat.is_empty() {
        println!("mouth-to-ear over {}: no bursts detected", path.name());
        return None;
    }
    let pct = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize];
    println!(
        "mouth-to-ear on loopback via the relay over {} (excl. device buffers), {} bursts: p50 {:.1} ms, p95 {:.1} ms, min {:.1} ms, max {:.1} ms",
        path.name(),
        lat.len(),
        pct(0.5),
        pct(0.95),
        lat[0],
        lat[lat.len() - 1]
    );
    if let Some(r) = stats.as_ref().and_then(|s| s.remotes.first()) {
        println!(
            "  of which the listener's jitter buffer: mean {:.1} ms, p95 {:.1} ms (policy target); frame 20 ms; Opus algorithmic delay 6.5 ms",
            r.stream.mean_buffer_delay_ms, r.stream.p95_buffer_delay_ms
        );
    }
    drop(a);
    drop(b);
    Some(pct(0.5))
}

fn cpu_per_stream(seconds: u64, speakers: usize) {
    let relay = relay();
    let measure = |n: usize| -> f64 {
        let listener = client(
            &relay,
            &format!("listener{n}"),
            AudioInput::Null,
            AudioOutput::Null,
        );
        wait_joined(&listener);
        let talkers: Vec<Client> = (0..n)
            .map(|i| {
                client(
                    &relay,
                    &format!("talker{i}"),
                    AudioInput::Tone {
                        hz: 200.0 + 37.0 * i as f32,
                        amplitude: 0.2,
                    },
                    AudioOutput::Null,
                )
            })
            .collect();
        for t in &talkers {
            wait_joined(t);
        }
        std::thread::sleep(Duration::from_millis(500));
        // Thread names are truncated to 15 bytes by the kernel: "voice-engine-li…".
        let thread = "voice-engine-li";
        let before = thread_cpu_us(thread).unwrap_or(0);
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs(seconds));
        let after = thread_cpu_us(thread).unwrap_or(0);
        let wall = t0.elapsed().as_secs_f64();
        let heard = listener.stats().map_or(0, |s| s.remotes.len());
        drop(talkers);
        drop(listener);
        let share = (after - before) as f64 / 1e6 / wall * 100.0;
        println!("  listener engine thread with {n:2} speaker(s) ({heard} heard): {share:.2} % of one core");
        share
    };
    println!(
        "CPU per received stream ({speakers} simultaneous speakers, decode + jitter buffer + mix):"
    );
    let idle = measure(0);
    let busy = measure(speakers);
    println!(
        "  per received stream: {:.3} % of one core ({:.0} µs per 20 ms frame)",
        (busy - idle) / speakers as f64,
        (busy - idle) / speakers as f64 / 100.0 * 20_000.0
    );
}

fn main() {
    let q = quick();
    let seconds = if q { 3 } else { 15 };
    let udp = latency(seconds, VoicePath::Udp);
    let tunnel = latency(seconds, VoicePath::Tunnel);
    if let (Some(u), Some(t)) = (udp, tunnel) {
        println!(
            "  the tunnel adds {:+.1} ms to the median mouth-to-ear (target ≤ 5 ms)",
            t - u
        );
    }
    cpu_per_stream(if q { 2 } else { 8 }, 16);
}
