//! The tunnel fallback end to end on 127.0.0.1: the real relay, in-process clients, and a real
//! proxy (TCP and UDP on one port) in front of the relay for one client. Blocking the proxy's
//! UDP mid-call moves that client's voice into its TLS control connection within 2 s in both
//! directions; unblocking brings it back to UDP within 5 s. A client whose UDP never gets
//! through talks over the tunnel from the start, and a NAT rebinding (the proxy moves to a new
//! source port behind the client's back) is recovered by a registration.

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::relays::*;
use relay::server::RelayHandle;
use voice_client::{
    AccessToken, AudioInput, AudioOutput, ChannelId, Client, ClientConfig, ConnectionStatus, Event,
    TlsTrust, TransmitMode, VoicePath,
};

/// A client that talks (a continuous tone) and listens, in channel 2, connecting to `server`
/// (the relay or a proxy in front of it), pinning the relay's certificate and presenting a token
/// it minted.
fn client(relay: &RelayHandle, server: SocketAddr, name: &str) -> Client {
    let mut cfg = ClientConfig::new(server, name);
    cfg.tls = TlsTrust::Pinned(relay.fingerprint().expect("TLS by default"));
    cfg.token = Some(AccessToken(
        relay.token_for(name).expect("the relay's own key"),
    ));
    cfg.input = AudioInput::Tone {
        hz: 300.0,
        amplitude: 0.3,
    };
    cfg.output = AudioOutput::Null;
    cfg.engine.transmit = TransmitMode::Continuous;
    let c = Client::start(cfg).unwrap();
    c.join_channel(ChannelId(2));
    c
}

/// A proxy for one client: TCP connections are piped to the relay unchanged; UDP is forwarded
/// both ways unless blocked, from one upstream socket that [`Proxy::rebind`] replaces (what a NAT
/// does when its mapping expires).
struct Proxy {
    addr: SocketAddr,
    blocked: Arc<AtomicBool>,
    rebind: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Proxy {
    fn start(relay: SocketAddr, blocked: bool) -> Proxy {
        // The same port number for TCP and UDP, as the relay has.
        let (front, listener) = (0..20)
            .find_map(|_| {
                let u = UdpSocket::bind("127.0.0.1:0").ok()?;
                let l = TcpListener::bind(u.local_addr().ok()?).ok()?;
                Some((u, l))
            })
            .expect("a free port for TCP and UDP");
        let addr = front.local_addr().unwrap();
        let blocked = Arc::new(AtomicBool::new(blocked));
        let rebind = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        listener.set_nonblocking(true).unwrap();
        let s = stop.clone();
        threads.push(
            std::thread::Builder::new()
                .name("proxy-tcp".into())
                .spawn(move || {
                    let mut pipes = Vec::new();
                    while !s.load(Ordering::Relaxed) {
                        match listener.accept() {
                            Ok((down, _)) => {
                                let up = TcpStream::connect(relay).unwrap();
                                down.set_nonblocking(false).unwrap();
                                pipes
                                    .push(pipe(down.try_clone().unwrap(), up.try_clone().unwrap()));
                                pipes.push(pipe(up, down));
                            }
                            Err(_) => std::thread::sleep(Duration::from_millis(5)),
                        }
                    }
                    drop(pipes);
                })
                .unwrap(),
        );
        let (b, r, s) = (blocked.clone(), rebind.clone(), stop.clone());
        threads.push(
            std::thread::Builder::new()
                .name("proxy-udp".into())
                .spawn(move || udp_loop(front, relay, &b, &r, &s))
                .unwrap(),
        );
        Proxy {
            addr,
            blocked,
            rebind,
            stop,
            threads,
        }
    }

    fn block(&self, on: bool) {
        self.blocked.store(on, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Copies `from` into `to` until either closes (then shuts both down).
fn pipe(mut from: TcpStream, mut to: TcpStream) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("proxy-pipe".into())
        .spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Both);
            let _ = from.shutdown(std::net::Shutdown::Both);
        })
        .unwrap()
}

fn udp_loop(
    front: UdpSocket,
    relay: SocketAddr,
    blocked: &AtomicBool,
    rebind: &AtomicBool,
    stop: &AtomicBool,
) {
    let upstream = || {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        u.set_nonblocking(true).unwrap();
        u
    };
    front.set_nonblocking(true).unwrap();
    let mut back = upstream();
    let mut client: Option<SocketAddr> = None;
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        if rebind.swap(false, Ordering::SeqCst) {
            back = upstream();
        }
        let mut idle = true;
        while let Ok((n, from)) = front.recv_from(&mut buf) {
            idle = false;
            client = Some(from);
            if !blocked.load(Ordering::Relaxed) {
                let _ = back.send_to(&buf[..n], relay);
            }
        }
        while let Ok((n, _)) = back.recv_from(&mut buf) {
            idle = false;
            if let (Some(c), false) = (client, blocked.load(Ordering::Relaxed)) {
                let _ = front.send_to(&buf[..n], c);
            }
        }
        if idle {
            std::thread::sleep(Duration::from_micros(500));
        }
    }
}

/// Packets `listener` has received from anyone so far.
fn received(listener: &Client) -> u64 {
    listener
        .stats()
        .map(|s| s.remotes.iter().map(|r| r.stream.packets_received).sum())
        .unwrap_or(0)
}

/// The status events `c` reported until `pred` matched one (or `timeout`): `(events, matched)`.
fn statuses_until(
    c: &Client,
    timeout: Duration,
    pred: impl Fn(&ConnectionStatus) -> bool,
) -> (Vec<ConnectionStatus>, bool) {
    let until = Instant::now() + timeout;
    let mut seen = Vec::new();
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match c.events().recv_timeout(left) {
            Ok(Event::Status(s)) => {
                let hit = pred(&s);
                seen.push(s);
                if hit {
                    return (seen, true);
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    (seen, false)
}

fn on(path: VoicePath) -> impl Fn(&ConnectionStatus) -> bool {
    move |s| *s == ConnectionStatus::Connected { path }
}

/// Samples both listeners' received counts every 20 ms for `span`; returns the longest time
/// either went without a new packet.
fn longest_gap(a: &Client, b: &Client, span: Duration) -> Duration {
    let t0 = Instant::now();
    let mut last = [(received(a), t0), (received(b), t0)];
    let mut worst = Duration::ZERO;
    while t0.elapsed() < span {
        std::thread::sleep(Duration::from_millis(20));
        for (i, c) in [a, b].into_iter().enumerate() {
            let n = received(c);
            let now = Instant::now();
            if n > last[i].0 {
                worst = worst.max(now - last[i].1);
                last[i] = (n, now);
            }
        }
    }
    for (_, at) in last {
        worst = worst.max(at.elapsed());
    }
    worst
}

#[test]
fn blocked_udp_moves_voice_into_the_tunnel_and_back() {
    let relay = start_relay_with(1);
    let proxy = Proxy::start(relay.local_addr(), false);
    let a = client(&relay, proxy.addr, "alice");
    let b = client(&relay, relay.local_addr(), "bob");
    let (_, up) = statuses_until(&a, Duration::from_secs(5), on(VoicePath::Udp));
    assert!(up, "alice on UDP");
    assert!(
        wait_until(Duration::from_secs(5), || received(&a) > 20
            && received(&b) > 20),
        "both hear each other over UDP"
    );

    proxy.block(true);
    let t_block = Instant::now();
    let gap = longest_gap(&a, &b, Duration::from_millis(3500));
    let (seen, tunneled) = statuses_until(&a, Duration::from_millis(100), on(VoicePath::Tunnel));
    assert!(tunneled, "alice reports the tunnel once: {seen:?}");
    assert_eq!(seen.len(), 1, "exactly one status event: {seen:?}");
    println!("UDP blocked: longest gap without voice in either direction {gap:?}");
    assert!(gap <= Duration::from_secs(2), "voice gap {gap:?}");
    let sa = a.stats().unwrap();
    assert_eq!(sa.path, Some(VoicePath::Tunnel));
    assert_eq!(
        sa.status,
        ConnectionStatus::Connected {
            path: VoicePath::Tunnel
        }
    );
    assert!(
        sa.tunnel_tx_packets > 20 && sa.tunnel_rx_packets > 20,
        "{sa:?}"
    );
    assert!(t_block.elapsed() >= Duration::from_secs(3));

    proxy.block(false);
    let t_unblock = Instant::now();
    let (seen, back) = statuses_until(&a, Duration::from_secs(5), on(VoicePath::Udp));
    let took = t_unblock.elapsed();
    println!("UDP unblocked: back on UDP after {took:?}");
    assert!(back, "alice back on UDP within 5 s: {seen:?}");
    assert_eq!(seen.len(), 1, "exactly one status event: {seen:?}");
    let tunneled_tx = a.stats().unwrap().tunnel_tx_packets;
    let gap = longest_gap(&a, &b, Duration::from_secs(1));
    assert!(
        gap < Duration::from_millis(500),
        "voice after the switch back: {gap:?}"
    );
    let sa = a.stats().unwrap();
    assert_eq!(sa.path, Some(VoicePath::Udp));
    assert_eq!(
        sa.tunnel_tx_packets, tunneled_tx,
        "no more voice in the tunnel"
    );
    let stats = relay.stop().unwrap();
    assert!(stats.get(relay::stats::Counter::TunnelRxPackets) > 20);
    assert!(stats.get(relay::stats::Counter::TunnelForwarded) > 20);
}

#[test]
fn a_client_whose_udp_never_gets_through_talks_through_the_tunnel() {
    let relay = start_relay_with(1);
    let proxy = Proxy::start(relay.local_addr(), true);
    let t0 = Instant::now();
    let a = client(&relay, proxy.addr, "alice");
    let b = client(&relay, relay.local_addr(), "bob");
    let (seen, tunneled) = statuses_until(&a, Duration::from_secs(5), on(VoicePath::Tunnel));
    assert!(tunneled, "{seen:?}");
    assert!(
        matches!(
            seen[..],
            [
                ConnectionStatus::Connecting {
                    attempt: 1,
                    last_error: None
                },
                _
            ]
        ),
        "Connecting, then the tunnel, nothing else: {seen:?}"
    );
    println!("no UDP at all: on the tunnel after {:?}", t0.elapsed());
    assert!(
        wait_until(Duration::from_secs(5), || received(&a) > 20
            && received(&b) > 20),
        "both hear each other through alice's tunnel"
    );
    drop(proxy);
}

/// With several workers, UDP senders land on worker threads other than the control thread's:
/// their voice still reaches the tunneled member (handed to the control thread), and the
/// tunneled member's voice reaches every UDP member.
#[test]
fn a_tunneled_member_hears_and_is_heard_across_workers() {
    let relay = start_relay_with(4);
    let proxy = Proxy::start(relay.local_addr(), true);
    let a = client(&relay, proxy.addr, "alice");
    let others: Vec<Client> = ["bob", "carol", "dave"]
        .iter()
        .map(|n| client(&relay, relay.local_addr(), n))
        .collect();
    let (seen, tunneled) = statuses_until(&a, Duration::from_secs(5), on(VoicePath::Tunnel));
    assert!(tunneled, "{seen:?}");
    let heard_from = |listener: &Client, min: u64| {
        listener.stats().map_or(0, |s| {
            s.remotes
                .iter()
                .filter(|r| r.stream.packets_received > min)
                .count()
        })
    };
    assert!(
        wait_until(Duration::from_secs(8), || heard_from(&a, 20) == 3
            && others.iter().all(|o| heard_from(o, 20) == 3)),
        "alice hears all three through her tunnel and all hear her: alice {:?}",
        a.stats().map(|s| s
            .remotes
            .iter()
            .map(|r| (r.name.clone(), r.stream.packets_received))
            .collect::<Vec<_>>())
    );
    drop(others);
    drop(a);
    drop(proxy);
    let stats = relay.stop().unwrap();
    assert!(stats.get(relay::stats::Counter::TunnelForwarded) > 60);
    assert!(stats.get(relay::stats::Counter::TunnelRxPackets) > 20);
}

#[test]
fn a_nat_rebinding_is_recovered_by_registering_again() {
    let relay = start_relay_with(1);
    let proxy = Proxy::start(relay.local_addr(), false);
    let a = client(&relay, proxy.addr, "alice");
    let b = client(&relay, relay.local_addr(), "bob");
    assert!(statuses_until(&a, Duration::from_secs(5), on(VoicePath::Udp)).1);
    assert!(wait_until(Duration::from_secs(5), || received(&b) > 20));
    // The NAT maps alice to a new public port; her client does not know. The relay drops what
    // comes from the unbound port, the keep-alives go unanswered, and voice resumes.
    proxy.rebind.store(true, Ordering::SeqCst);
    let gap = longest_gap(&a, &b, Duration::from_secs(4));
    println!("NAT rebinding: longest gap without voice {gap:?}");
    assert!(gap <= Duration::from_secs(2), "voice gap {gap:?}");
    assert!(
        wait_until(Duration::from_secs(5), || a.stats().unwrap().path
            == Some(VoicePath::Udp)),
        "back on UDP from the new port"
    );
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
