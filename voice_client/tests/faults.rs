//! Fault tests with the real relay and in-process clients on 127.0.0.1: the relay restarts, a
//! client's UDP source port changes, a client goes silent without goodbye.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use relay::config::Config;
use relay::server::{Relay, RelayHandle};
use voice_client::{AudioInput, AudioOutput, ChannelId, Client, ClientConfig, Event, TransmitMode};
use voice_core::proto::tcp::{
    encode_frame, ClientMessage, FrameReader, ServerMessage, CONTROL_VERSION,
};

fn start_relay(listen: SocketAddr, idle_ms: u64) -> RelayHandle {
    let cfg = Config {
        listen,
        stats_interval_ms: 0,
        idle_timeout_ms: idle_ms,
        ..Config::default()
    };
    Relay::bind(cfg).unwrap().spawn().unwrap()
}

fn client(server: SocketAddr, name: &str, talk: bool) -> Client {
    let mut cfg = ClientConfig::new(server, name);
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
    let mut raw = TcpStream::connect(addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut out = Vec::new();
    encode_frame(
        &ClientMessage::Hello {
            version: CONTROL_VERSION,
            name: "ghost".into(),
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
