//! `relay_load`: the relay against two reference forwarders under the same offered load, for
//! 1, 2, 4, … forwarding threads.
//!
//! `cargo bench -p voice_benches --bench relay_load [-- --quick]` (or `BENCH_QUICK=1`).
//! `BENCH_WORKERS=1,2,4` picks the thread counts (default: powers of two up to the CPU count,
//! at least 1 and 2; quick: 1 and 2); `BENCH_ONLY=minimal,relay` picks forwarders.
//!
//! This process is the load generator; each forwarder runs in a child process (this binary
//! re-executed with `--role fwd KIND N CHANNELS WORKERS`) that prints `addr ADDR` and answers
//! `cpu` on stdin with its `getrusage` CPU time (all its threads). For each forwarder and thread
//! count the offered load is raised step by step (more channels of N members, every member
//! speaking at 50 packets/s, up to 400 channels per thread) until two steps are not sustainable
//! (loss above 1 % or median latency above 2 ms): the highest delivered rate of a sustainable
//! step is its ceiling. With at least `threads + 2` CPUs the forwarder is pinned to CPUs
//! `0..threads` and the load generator to the rest; with fewer they share every CPU (said in
//! the output). The relay runs with `--workers` = the thread count; the minimal forwarder with
//! one `SO_REUSEPORT` socket per thread. `relay-untagged` is the relay with
//! `check_datagram_tags = false` (measurement only): the summary compares the relay's CPU per
//! forwarded datagram with and without checking datagram tags, step by step, in the same run.
//! Numbers are printed, never asserted. Loopback only; every loop is bounded in count and time.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use voice_benches::loadgen::{parse_addr_line, Fleet, StepResult, PPS};

const N: usize = 5;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--role") {
        return child(&args[1..]);
    }
    let quick = args.iter().any(|a| a == "--quick") || std::env::var_os("BENCH_QUICK").is_some();
    let (steps, secs): (&[usize], f64) = if quick {
        (&[10, 40], 0.5)
    } else {
        (
            &[
                40, 80, 120, 160, 200, 240, 320, 400, 480, 640, 800, 960, 1280, 1600,
            ],
            1.5,
        )
    };
    let cpus = num_cpus();
    let workers: Vec<usize> = match std::env::var("BENCH_WORKERS") {
        Ok(v) if !v.is_empty() => v.split(',').filter_map(|w| w.trim().parse().ok()).collect(),
        _ if quick => vec![1, 2],
        _ => {
            let mut w = vec![1, 2];
            while w[w.len() - 1] * 2 <= cpus {
                w.push(w[w.len() - 1] * 2);
            }
            w
        }
    };
    let duration = Duration::from_secs_f64(secs);
    println!(
        "relay_load: channels of {N} members, every member speaks at {PPS} packets/s, 80-byte payloads; \
         {} s per step{}",
        secs,
        if quick { " (quick)" } else { "" }
    );
    println!("machine: {cpus} CPUs; forwarding threads: {workers:?}");
    let mut summary = Vec::new();
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    for &w in &workers {
        for kind in [
            "minimal",
            "naive",
            "relay",
            "relay-untagged",
            "relay-nobatch",
        ] {
            // The naive and unbatched forwarders are single-threaded references.
            if (quick && kind == "relay-nobatch")
                || (w > 1 && matches!(kind, "naive" | "relay-nobatch"))
                || (!only.is_empty() && !only.split(',').any(|o| o == kind))
            {
                continue;
            }
            let max = 400 * w;
            let steps: Vec<usize> = steps.iter().copied().filter(|&c| c <= max).collect();
            match measure(kind, w, &steps, duration) {
                Ok(s) => summary.push(s),
                Err(e) => println!("{kind} x{w}: failed: {e}"),
            }
        }
    }
    pin_to_all();
    report(&summary);
    report_workers(&summary, &workers);
}

fn pin_to_all() {
    voice_benches::pin_to(0..num_cpus());
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

struct Summary {
    kind: &'static str,
    workers: usize,
    steps: Vec<(usize, StepResult, f64)>,
}

impl Summary {
    /// Highest delivered rate at a sustainable step: loss ≤ 1 % and median latency ≤ 2 ms
    /// (above that, queues are building and the rate would not hold for long).
    fn max_rate(&self) -> f64 {
        self.steps
            .iter()
            .filter(|(_, r, _)| sustainable(r))
            .map(|(_, r, _)| r.delivered_pps())
            .fold(0.0, f64::max)
    }
}

struct Fwd {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    addr: SocketAddr,
}

impl Fwd {
    fn spawn(kind: &str, channels: usize, workers: usize) -> std::io::Result<Fwd> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args([
                "--role",
                "fwd",
                kind,
                &N.to_string(),
                &channels.to_string(),
                &workers.to_string(),
            ])
            .env(
                voice_benches::tokens::ENV,
                voice_benches::tokens::key().public(),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("stdin"))?;
        let mut stdout = BufReader::new(
            child
                .stdout
                .take()
                .ok_or_else(|| std::io::Error::other("stdout"))?,
        );
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let addr = parse_addr_line(&line)
            .ok_or_else(|| std::io::Error::other(format!("bad line {line:?}")))?;
        Ok(Fwd {
            child,
            stdin,
            stdout,
            addr,
        })
    }

    fn cpu_us(&mut self) -> u64 {
        let _ = writeln!(self.stdin, "cpu");
        let mut line = String::new();
        let _ = self.stdout.read_line(&mut line);
        line.trim()
            .strip_prefix("cpu ")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Fwd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn measure(
    kind: &'static str,
    workers: usize,
    steps: &[usize],
    duration: Duration,
) -> std::io::Result<Summary> {
    let max_channels = *steps.iter().max().unwrap_or(&1);
    let cpus = num_cpus();
    let pinned = cpus >= workers + 2;
    // The child pins itself (see `child`); this process takes the other CPUs.
    if pinned {
        voice_benches::pin_to(workers..cpus);
    } else {
        pin_to_all();
    }
    let mut fwd = Fwd::spawn(kind, max_channels, workers)?;
    let sessions = max_channels * N;
    let mut fleet = if kind.starts_with("relay") {
        Fleet::relay(fwd.addr, sessions, N)?
    } else {
        Fleet::reference(fwd.addr, sessions, N)?
    };
    println!(
        "\n== {kind}, {workers} thread{} ({sessions} sessions set up; {}) ==",
        if workers == 1 { "" } else { "s" },
        if pinned {
            format!("forwarder on CPUs 0..{workers}, load generator on {workers}..{cpus}")
        } else {
            "forwarder and load generator share the CPUs".to_owned()
        }
    );
    println!(
        "{:>8} {:>12} {:>12} {:>7} {:>9} {:>9} {:>10}",
        "speakers", "offered/s", "delivered/s", "loss%", "p50 µs", "p99 µs", "cpu µs/pkt"
    );
    let mut out = Summary {
        kind,
        workers,
        steps: Vec::new(),
    };
    let mut failures = 0;
    for (i, &channels) in steps.iter().enumerate() {
        let cpu0 = fwd.cpu_us();
        let r = fleet.run_step(channels * N, duration, i as u32 + 1)?;
        let cpu = fwd.cpu_us().saturating_sub(cpu0);
        let per_pkt = cpu as f64 / r.received.max(1) as f64;
        println!(
            "{:>8} {:>12.0} {:>12.0} {:>7.2} {:>9} {:>9} {:>10.2}",
            channels * N,
            r.offered_pps(),
            r.delivered_pps(),
            r.loss_pct(),
            r.p50_us,
            r.p99_us,
            per_pkt
        );
        out.steps.push((channels * N, r, per_pkt));
        if !sustainable(&r) {
            failures += 1;
            if failures >= 2 {
                break;
            }
        }
    }
    Ok(out)
}

fn sustainable(r: &StepResult) -> bool {
    r.loss_pct() <= 1.0 && r.p50_us <= 2_000
}

fn report(all: &[Summary]) {
    let get = |k: &str| all.iter().find(|s| s.kind == k && s.workers == 1);
    println!("\n== summary: max sustainable delivered packets/s (loss <= 1 %, p50 <= 2 ms) ==");
    for s in all {
        println!("{:>14} x{}: {:>10.0}/s", s.kind, s.workers, s.max_rate());
    }
    println!("-- one thread --");
    let Some(relay) = get("relay") else { return };
    let rr = relay.max_rate();
    for (k, target) in [("minimal", "target >= 80 %"), ("naive", "target >= 200 %")] {
        if let Some(s) = get(k) {
            let m = s.max_rate();
            if m > 0.0 {
                println!("relay / {k}: {:.0} % ({target})", 100.0 * rr / m);
            }
        }
    }
    if let Some(untagged) = get("relay-untagged") {
        let mut ratios = Vec::new();
        for (sp, r, cpu) in &relay.steps {
            let Some((_, ru, cpu_u)) = untagged.steps.iter().find(|s| s.0 == *sp) else {
                continue;
            };
            if *cpu_u > 0.0 && sustainable(r) && sustainable(ru) {
                ratios.push(cpu / cpu_u);
                println!(
                    "tags at {sp} speakers: {cpu:.2} µs CPU per forwarded datagram checked, {cpu_u:.2} µs unchecked ({:.2}x)",
                    cpu / cpu_u
                );
            }
        }
        if !ratios.is_empty() {
            ratios.sort_by(f64::total_cmp);
            println!(
                "relay CPU per forwarded datagram, tags checked / unchecked: median {:.2}x over {} steps (target <= 1.1x)",
                ratios[ratios.len() / 2],
                ratios.len()
            );
        }
    }
    if let Some(nb) = get("relay-nobatch") {
        if nb.max_rate() > 0.0 {
            println!("relay batched / unbatched: {:.2}x", rr / nb.max_rate());
        }
    }
    if let Some(min) = get("minimal") {
        let half = min.max_rate() / 2.0;
        if let Some((sp, r, cpu)) = relay.steps.iter().min_by(|a, b| {
            (a.1.offered_pps() - half)
                .abs()
                .total_cmp(&(b.1.offered_pps() - half).abs())
        }) {
            println!(
                "relay at ~half the ceiling ({half:.0}/s): {sp} speakers, offered {:.0}/s, loss {:.2} %, \
                 p50 {} µs, p99 {} µs (target < 1000 µs), {:.2} µs CPU per forwarded datagram",
                r.offered_pps(),
                r.loss_pct(),
                r.p50_us,
                r.p99_us,
                cpu
            );
        }
    }
}

/// The step nearest to `pps` offered deliveries/s.
fn near(s: &Summary, pps: f64) -> Option<&(usize, StepResult, f64)> {
    s.steps.iter().min_by(|a, b| {
        (a.1.offered_pps() - pps)
            .abs()
            .total_cmp(&(b.1.offered_pps() - pps).abs())
    })
}

/// Per thread count: the relay's ceiling beside the minimal forwarder's, latency at half the
/// relay's ceiling, and CPU per delivered datagram against one thread's.
fn report_workers(all: &[Summary], workers: &[usize]) {
    println!(
        "\n== per thread count (targets: relay >= 0.9x minimal; p99 < 1000 µs at half the \
         ceiling; CPU per datagram within 10 % of one thread's) =="
    );
    println!(
        "{:>7} {:>12} {:>12} {:>7} {:>8} {:>8} {:>11} {:>11} {:>9}",
        "threads",
        "minimal/s",
        "relay/s",
        "ratio",
        "p50 µs",
        "p99 µs",
        "cpu µs/pkt",
        "min µs/pkt",
        "vs 1 thr"
    );
    let find = |k: &str, w: usize| all.iter().find(|s| s.kind == k && s.workers == w);
    let mut base_cpu = None;
    for &w in workers {
        let (Some(relay), min) = (find("relay", w), find("minimal", w)) else {
            continue;
        };
        let rr = relay.max_rate();
        let mr = min.map_or(0.0, Summary::max_rate);
        let half = near(relay, rr / 2.0);
        let cpu = half.map_or(0.0, |h| h.2);
        let min_cpu = min.and_then(|m| near(m, rr / 2.0)).map_or(0.0, |h| h.2);
        if w == 1 {
            base_cpu = Some(cpu);
        }
        println!(
            "{:>7} {:>12.0} {:>12.0} {:>7.2} {:>8} {:>8} {:>11.2} {:>11.2} {:>9}",
            w,
            mr,
            rr,
            if mr > 0.0 { rr / mr } else { 0.0 },
            half.map_or(0, |h| h.1.p50_us),
            half.map_or(0, |h| h.1.p99_us),
            cpu,
            min_cpu,
            base_cpu
                .filter(|b| *b > 0.0)
                .map_or("-".to_owned(), |b| format!(
                    "{:+.0} %",
                    100.0 * (cpu / b - 1.0)
                )),
        );
    }
}

/// Child process: run one forwarder and answer `cpu` requests until stdin closes.
fn child(args: &[String]) {
    let kind = args.get(1).cloned().unwrap_or_default();
    let n: u32 = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(N as u32);
    let channels: u32 = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(1);
    let workers: usize = args.get(4).and_then(|v| v.parse().ok()).unwrap_or(1);
    if num_cpus() >= workers + 2 {
        voice_benches::pin_to(0..workers);
    }
    let addr = match kind.as_str() {
        "relay" | "relay-untagged" | "relay-nobatch" => {
            let cfg = relay::Config {
                listen: "127.0.0.1:0".parse().expect("addr"),
                channels: (1..=channels)
                    .map(|id| relay::config::ChannelConfig {
                        id,
                        name: format!("c{id}"),
                        spatial: None,
                        max_members: None,
                        allow: None,
                    })
                    .collect(),
                // Room for the largest step; a listing of 10,000 users still fits one frame.
                max_sessions: 10_000,
                max_connections: 10_000,
                max_outgoing_bytes: 2 << 20,
                idle_timeout_ms: 3_600_000,
                stats_interval_ms: 0,
                batch_io: kind != "relay-nobatch",
                check_datagram_tags: kind != "relay-untagged",
                token_keys: voice_benches::tokens::relay_keys(),
                workers,
                ..relay::Config::default()
            };
            let r = relay::Relay::bind(cfg).expect("bind relay");
            let addr = r.local_addr();
            let h = r.spawn().expect("spawn relay");
            std::mem::forget(h); // runs until the process exits
            addr
        }
        "minimal" => voice_benches::forwarders::run_minimal_threads(
            workers,
            n,
            channels as usize * n as usize,
            4 << 20,
        )
        .expect("bind minimal forwarder"),
        "naive" => {
            let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
            voice_benches::set_buffers(std::os::fd::AsRawFd::as_raw_fd(&sock), 4 << 20);
            let addr = sock.local_addr().expect("addr");
            let naive = kind == "naive";
            std::thread::Builder::new()
                .name(kind.clone())
                .spawn(move || {
                    if naive {
                        voice_benches::forwarders::run_naive(sock, n)
                    } else {
                        voice_benches::forwarders::run_minimal(sock, n)
                    }
                })
                .expect("spawn forwarder");
            addr
        }
        other => {
            eprintln!("unknown forwarder {other}");
            std::process::exit(2);
        }
    };
    println!("addr {addr}");
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim() == "cpu" {
            println!("cpu {}", voice_benches::cpu_time_us());
        }
    }
}
