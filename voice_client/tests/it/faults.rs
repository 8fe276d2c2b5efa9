//! Fault tests with the real relay and in-process clients on 127.0.0.1: the relay restarts, a
//! client's UDP source port changes, a client goes silent without goodbye, the relay's
//! certificate changes under a pinned client.
//!
//! The relays here keep one self-signed identity in a directory private to this test process,
//! so a restarted relay shows the same certificate; the clients trust on first use (and so pin
//! it for their reconnects).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use relay::config::Config;
use relay::server::{Relay, RelayHandle};
use voice_client::{
    AccessToken, AudioInput, AudioOutput, ChannelId, Client, ClientConfig, Event, TlsTrust,
    TransmitMode,
};
use voice_core::proto::tcp::{
    encode_frame, ClientMessage, FrameReader, ServerMessage, CONTROL_VERSION,
};

fn identity_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("voice-client-faults-{}", std::process::id()))
}

/// The backend key every relay of this file accepts tokens from.
fn backend_key() -> &'static relay::token::SigningKey {
    static KEY: std::sync::OnceLock<relay::token::SigningKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| relay::token::SigningKey::generate().unwrap())
}

/// A token every relay of this file accepts for `name`.
fn token(name: &str) -> AccessToken {
    let claims = relay::token::Claims::for_name(name, relay::config::DEFAULT_AUDIENCE, 3600);
    AccessToken(backend_key().mint(&claims).unwrap())
}

fn start_relay(listen: SocketAddr, idle_ms: u64) -> RelayHandle {
    let cfg = Config {
        listen,
        token_keys: vec![backend_key().public().to_owned()],
        stats_interval_ms: 0,
        idle_timeout_ms: idle_ms,
        identity_dir: Some(identity_dir()),
        ..Config::default()
    };
    // The first bind creates the identity: one at a time, so no relay reads a half-written one.
    static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = CREATING.lock().unwrap_or_else(|e| e.into_inner());
    Relay::bind(cfg).unwrap().spawn().unwrap()
}

/// A relay with a fresh in-memory certificate (a different fingerprint each time).
fn start_fresh_relay(listen: SocketAddr, plaintext: bool) -> RelayHandle {
    let cfg = Config {
        listen,
        stats_interval_ms: 0,
        insecure_plaintext: plaintext,
        token_keys: vec![backend_key().public().to_owned()],
        ..Config::default()
    };
    Relay::bind(cfg).unwrap().spawn().unwrap()
}

fn null_client(cfg_tweak: impl FnOnce(&mut ClientConfig), server: SocketAddr) -> Client {
    let mut cfg = ClientConfig::new(server, "pin");
    cfg.token = Some(token("pin"));
    cfg.input = AudioInput::Null;
    cfg.output = AudioOutput::Null;
    cfg_tweak(&mut cfg);
    Client::start(cfg).unwrap()
}

#[test]
fn a_changed_certificate_is_refused_with_its_fingerprint_and_not_retried() {
    let first = start_fresh_relay("127.0.0.1:0".parse().unwrap(), false);
    let addr = first.local_addr();
    let fp1 = first.fingerprint().unwrap().to_string();
    let c = null_client(|c| c.tls = TlsTrust::TrustOnFirstUse, addr);
    assert!(wait_event(&c, Duration::from_secs(5), |e| matches!(
        e,
        Event::ServerFingerprint { fingerprint, first_use: true, accepted: true } if *fingerprint == fp1
    )));
    assert!(wait_event(&c, Duration::from_secs(5), |e| matches!(
        e,
        Event::Connected { .. }
    )));
    drop(first);
    // Same address, another certificate: the pin taken on first use refuses it.
    let second = start_fresh_relay(addr, false);
    let fp2 = second.fingerprint().unwrap().to_string();
    assert_ne!(fp1, fp2);
    assert!(wait_event(&c, Duration::from_secs(8), |e| matches!(
        e,
        Event::ServerFingerprint { fingerprint, first_use: false, accepted: false } if *fingerprint == fp2
    )));
    assert!(wait_event(&c, Duration::from_secs(2), |e| matches!(
        e,
        Event::Disconnected { kind: voice_client::DisconnectKind::Untrusted, reason } if reason.contains("changed") && reason.contains(&fp2)
    )));
    // Final: no further attempts (a retry would be another TLS failure at the relay).
    std::thread::sleep(Duration::from_millis(1200));
    let stats = second.stop().unwrap();
    assert_eq!(stats.get(relay::Counter::TlsFailed), 1);
    assert_eq!(stats.get(relay::Counter::SessionsTotal), 0);
}

#[test]
fn a_self_signed_relay_is_refused_by_default_and_its_fingerprint_reported() {
    let relay = start_fresh_relay("127.0.0.1:0".parse().unwrap(), false);
    let fp = relay.fingerprint().unwrap().to_string();
    let c = null_client(|_| {}, relay.local_addr());
    assert!(wait_event(&c, Duration::from_secs(5), |e| matches!(
        e,
        Event::ServerFingerprint { fingerprint, first_use: true, accepted: false } if *fingerprint == fp
    )));
    assert!(wait_event(&c, Duration::from_secs(2), |e| matches!(
        e,
        Event::Disconnected { kind: voice_client::DisconnectKind::Untrusted, reason } if reason.contains("not trusted") && reason.contains(&fp)
    )));
    // Pinning what was reported gets in.
    let pinned = null_client(
        |c| c.tls = TlsTrust::Pinned(fp.parse().unwrap()),
        relay.local_addr(),
    );
    assert!(wait_event(&pinned, Duration::from_secs(5), |e| matches!(
        e,
        Event::Connected { .. }
    )));
}

#[test]
fn a_client_without_a_valid_token_hears_unauthorized_and_a_valid_one_connects() {
    let relay = start_fresh_relay("127.0.0.1:0".parse().unwrap(), false);
    let fp = relay.fingerprint().unwrap();
    let pinned = |c: &mut ClientConfig| {
        c.tls = TlsTrust::Pinned(fp);
        c.reconnect = false;
    };
    let none = null_client(
        |c| {
            pinned(c);
            c.token = None;
        },
        relay.local_addr(),
    );
    assert!(wait_event(&none, Duration::from_secs(5), |e| matches!(
        e,
        Event::Error {
            code: voice_core::proto::tcp::ErrorCode::Unauthorized,
            ..
        }
    )));
    // The relay closes after refusing: the drop says why, typed.
    assert!(wait_event(&none, Duration::from_secs(5), |e| matches!(
        e,
        Event::Disconnected {
            kind: voice_client::DisconnectKind::Refused(
                voice_core::proto::tcp::ErrorCode::Unauthorized
            ),
            ..
        }
    )));
    let other_key = relay::token::SigningKey::generate().unwrap();
    let claims = relay::token::Claims::for_name("pin", relay::config::DEFAULT_AUDIENCE, 60);
    let forged = null_client(
        |c| {
            pinned(c);
            c.token = Some(AccessToken(other_key.mint(&claims).unwrap()));
        },
        relay.local_addr(),
    );
    assert!(wait_event(&forged, Duration::from_secs(5), |e| matches!(
        e,
        Event::Error { code: voice_core::proto::tcp::ErrorCode::Unauthorized, message }
            if message.contains("unknown key")
    )));
    let honest = null_client(pinned, relay.local_addr());
    assert!(wait_event(&honest, Duration::from_secs(5), |e| matches!(
        e,
        Event::Connected { .. }
    )));
    let stats = relay.stop().unwrap();
    assert_eq!(stats.get(relay::Counter::TokenMissing), 1);
    assert_eq!(stats.get(relay::Counter::TokenUnknownKey), 1);
    assert_eq!(stats.get(relay::Counter::SessionsTotal), 1);
}

#[test]
fn the_plaintext_development_mode_connects_when_both_sides_ask_for_it() {
    let relay = start_fresh_relay("127.0.0.1:0".parse().unwrap(), true);
    let c = null_client(|c| c.insecure_plaintext = true, relay.local_addr());
    let saw_fingerprint = std::cell::Cell::new(false);
    assert!(wait_event(&c, Duration::from_secs(5), |e| {
        saw_fingerprint.set(saw_fingerprint.get() | matches!(e, Event::ServerFingerprint { .. }));
        matches!(e, Event::Connected { .. })
    }));
    assert!(!saw_fingerprint.get());
}

fn client(server: SocketAddr, name: &str, talk: bool) -> Client {
    let mut cfg = ClientConfig::new(server, name);
    cfg.token = Some(token(name));
    cfg.tls = TlsTrust::TrustOnFirstUse;
    cfg.input = if talk {
        AudioInput::Tone {
            hz: 300.0,
            amplitude: 0.3,
        }
    } else {
        AudioInput::Null
    };
    cfg.output = AudioOutput::Null;
    cfg.engine.transmit = TransmitMode::Continuous;
    // Well inside the shortest idle timeout used here, as real clients are (5 s vs 30 s).
    cfg.engine.ping_interval = Duration::from_millis(300);
    let c = Client::start(cfg).unwrap();
    c.join_channel(ChannelId(2));
    c
}

/// Waits for an event matching `pred`, up to `timeout`.
fn wait_event(c: &Client, timeout: Duration, pred: impl Fn(&Event) -> bool) -> bool {
    let until = Instant::now() + timeout;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match c.events().recv_timeout(left) {
            Ok(e) if pred(&e) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

fn joined_two(e: &Event) -> bool {
    matches!(e, Event::ChannelJoined { channel } if channel.id == ChannelId(2))
}

/// Packets `listener` has received from anyone so far.
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
fn clients_reconnect_and_rejoin_after_a_relay_restart() {
    let relay = start_relay("127.0.0.1:0".parse().unwrap(), 30_000);
    let addr = relay.local_addr();
    let a = client(addr, "alice", true);
    let b = client(addr, "bob", false);
    assert!(wait_event(&a, Duration::from_secs(5), joined_two));
    assert!(wait_event(&b, Duration::from_secs(5), joined_two));
    assert!(
        wait_until(Duration::from_secs(5), || received(&b) > 20),
        "bob hears alice"
    );

    relay.stop().unwrap();
    assert!(wait_event(&b, Duration::from_secs(5), |e| matches!(
        e,
        Event::Disconnected { .. }
    )));
    // Restart on the same port after a pause: the clients are backing off meanwhile.
    std::thread::sleep(Duration::from_millis(700));
    let relay = start_relay(addr, 30_000);
    let t0 = Instant::now();
    assert!(
        wait_event(&a, Duration::from_secs(10), joined_two),
        "alice rejoins channel 2, not the default"
    );
    assert!(wait_event(&b, Duration::from_secs(10), joined_two));
    let reconnect = t0.elapsed();
    assert!(
        reconnect < Duration::from_secs(6),
        "reconnected in {reconnect:?}"
    );
    // Voice flows again on the new relay (new sessions, new UDP registration).
    assert!(
        wait_until(Duration::from_secs(5), || received(&b) > 20),
        "bob hears alice after the restart"
    );
    drop(a);
    drop(b);
    drop(relay);
}

#[test]
fn audio_resumes_after_the_udp_source_port_changes() {
    let relay = start_relay("127.0.0.1:0".parse().unwrap(), 30_000);
    let addr = relay.local_addr();
    let a = client(addr, "alice", true);
    let b = client(addr, "bob", false);
    assert!(wait_event(&a, Duration::from_secs(5), joined_two));
    assert!(wait_event(&b, Duration::from_secs(5), joined_two));
    assert!(wait_until(Duration::from_secs(5), || received(&b) > 20));
    // Alice's UDP socket moves to a new port (a NAT rebinding): she re-registers with her secret.
    a.rebind_udp();
    assert!(wait_event(&a, Duration::from_secs(5), |e| matches!(
        e,
        Event::UdpReady
    )));
    let before = received(&b);
    assert!(
        wait_until(Duration::from_secs(5), || received(&b) > before + 25),
        "audio from alice resumes from her new port"
    );
    drop(a);
    drop(b);
    drop(relay);
}

#[test]
fn a_client_that_goes_silent_is_announced_as_left_within_the_idle_timeout() {
    let relay = start_relay("127.0.0.1:0".parse().unwrap(), 1_000);
    let addr = relay.local_addr();
    let b = client(addr, "bob", false);
    assert!(wait_event(&b, Duration::from_secs(5), joined_two));
    // A raw client: Hello, join channel 2, then nothing at all (no ping, no goodbye, socket open).
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let tls = voice_tls::ClientTls::new(&TlsTrust::TrustOnFirstUse).unwrap();
    let mut raw = voice_tls::rustls::StreamOwned::new(tls.connect(addr.ip().into()).unwrap(), tcp);
    let mut out = Vec::new();
    encode_frame(
        &ClientMessage::Hello {
            version: CONTROL_VERSION,
            name: "ghost".into(),
            token: Some(token("ghost")),
        },
        &mut out,
    )
    .unwrap();
    encode_frame(
        &ClientMessage::JoinChannel {
            channel: ChannelId(2),
        },
        &mut out,
    )
    .unwrap();
    raw.write_all(&out).unwrap();
    assert!(wait_event(&b, Duration::from_secs(3), |e| matches!(
        e,
        Event::UserJoined { user, .. } if user.name == "ghost"
    )));
    let t0 = Instant::now();
    assert!(
        wait_event(&b, Duration::from_secs(4), |e| matches!(
            e,
            Event::UserLeft { .. }
        )),
        "the silent client is dropped and announced"
    );
    let waited = t0.elapsed();
    assert!(
        waited < Duration::from_millis(2500),
        "UserLeft after {waited:?}"
    );
    // The relay closed the ghost's connection.
    let mut reader = FrameReader::<ServerMessage>::new();
    let mut buf = [0u8; 4096];
    let closed = wait_until(Duration::from_secs(2), || match raw.read(&mut buf) {
        Ok(0) => true,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => true,
        Ok(n) => {
            let _ = reader.push(&buf[..n]);
            while let Ok(Some(_)) = reader.next_message() {}
            false
        }
        Err(_) => false,
    });
    assert!(closed);
    drop(b);
    drop(relay);
}
