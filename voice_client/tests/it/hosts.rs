//! Host names and IPv6 on loopback: a relay listening dual-stack on `[::]:PORT` serves a client
//! given `localhost:PORT` (resolved by the engine's helper thread, IPv4 here) and one given
//! `[::1]:PORT` (IPv6), and they hear each other; a host that cannot be resolved is reported
//! as a failed attempt.

use std::time::{Duration, Instant};

use relay::config::Config;
use relay::server::{Relay, RelayHandle};
use voice_client::{
    AccessToken, AudioInput, AudioOutput, ChannelId, Client, ClientConfig, ConnectionStatus, Event,
    TlsTrust, TransmitMode, VoicePath,
};

/// The relay of every test here: dual-stack on `[::]`, TLS with an in-memory certificate, tokens
/// signed by its own key.
fn start_relay() -> RelayHandle {
    let cfg = Config {
        listen: "[::]:0".parse().unwrap(),
        stats_interval_ms: 0,
        ..Config::default()
    };
    Relay::bind(cfg).unwrap().spawn().unwrap()
}

/// A client of `host`; with `relay`, pinning its certificate and presenting a token it minted.
fn client(relay: Option<&RelayHandle>, host: &str, name: &str, reconnect: bool) -> Client {
    let mut cfg = ClientConfig::with_host(host, name);
    cfg.tls = TlsTrust::TrustOnFirstUse;
    if let Some(relay) = relay {
        cfg.tls = TlsTrust::Pinned(relay.fingerprint().expect("TLS by default"));
        cfg.token = Some(AccessToken(
            relay.token_for(name).expect("the relay's own key"),
        ));
    }
    cfg.input = AudioInput::Tone {
        hz: 300.0,
        amplitude: 0.3,
    };
    cfg.output = AudioOutput::Null;
    cfg.engine.transmit = TransmitMode::Continuous;
    cfg.reconnect = reconnect;
    let c = Client::start(cfg).unwrap();
    c.join_channel(ChannelId(2));
    c
}

fn received(listener: &Client) -> u64 {
    listener
        .stats()
        .map(|s| s.remotes.iter().map(|r| r.stream.packets_received).sum())
        .unwrap_or(0)
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

#[test]
fn a_dual_stack_relay_serves_a_host_name_and_an_ipv6_literal() {
    let relay = start_relay();
    let port = relay.local_addr().port();
    assert!(relay.local_addr().is_ipv6());
    let a = client(Some(&relay), &format!("localhost:{port}"), "alice", true);
    let b = client(Some(&relay), &format!("[::1]:{port}"), "bob", true);
    assert!(
        wait_until(Duration::from_secs(8), || received(&a) > 20
            && received(&b) > 20),
        "alice (IPv4 via the name) and bob (IPv6) hear each other"
    );
    for c in [&a, &b] {
        let s = c.stats().unwrap();
        assert_eq!(s.path, Some(VoicePath::Udp), "{:?}", s.status);
    }
}

#[test]
fn a_host_that_does_not_resolve_is_a_failed_attempt() {
    // No port: the resolver refuses it without asking any DNS server.
    let c = client(None, "localhost", "nobody", false);
    let mut statuses = Vec::new();
    let until = Instant::now() + Duration::from_secs(5);
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match c.events().recv_timeout(left) {
            Ok(Event::Status(s)) => statuses.push(s),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    assert_eq!(
        statuses[0],
        ConnectionStatus::Connecting {
            attempt: 1,
            last_error: None
        }
    );
    assert!(
        matches!(&statuses[1], ConnectionStatus::Failed { reason } if reason.contains("cannot resolve localhost")),
        "{statuses:?}"
    );
}
