//! The real backend against an in-process relay on loopback: events and statistics arrive
//! without the UI waiting, repaints are requested, and closing never stalls the UI thread.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gui_demo::backend::{Backend, ClientBackend, Request};
use relay::config::Config;
use voice_client::{AudioInput, AudioOutput, ClientConfig, Event};

/// A relay on TLS with an in-memory certificate; the backends pin its fingerprint.
fn start_relay() -> relay::server::RelayHandle {
    let cfg = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        stats_interval_ms: 0,
        ..Config::default()
    };
    relay::server::Relay::bind(cfg).unwrap().spawn().unwrap()
}

fn backend(
    relay: &relay::server::RelayHandle,
    name: &str,
    repaints: Arc<AtomicUsize>,
) -> ClientBackend {
    let mut cfg = ClientConfig::new(relay.local_addr(), name);
    cfg.tls = voice_client::TlsTrust::Pinned(relay.fingerprint().expect("TLS"));
    cfg.token = relay.token_for(name).map(voice_client::AccessToken);
    cfg.input = AudioInput::Null;
    cfg.output = AudioOutput::Null;
    ClientBackend::start(cfg, move || {
        repaints.fetch_add(1, Ordering::Relaxed);
    })
    .expect("engine starts")
}

#[test]
fn events_and_stats_flow_and_close_is_prompt() {
    let relay = start_relay();
    let repaints = Arc::new(AtomicUsize::new(0));
    let mut a = backend(&relay, "alice", repaints.clone());
    let mut b = backend(&relay, "bob", Arc::new(AtomicUsize::new(0)));

    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut joined, mut saw_bob, mut stats, mut chat) = (false, false, 0, false);
    let mut chatted = false;
    while Instant::now() < deadline && !(joined && saw_bob && stats > 0 && chat) {
        let t = Instant::now();
        let events = a.drain_events();
        stats += a.drain_stats().len();
        assert!(t.elapsed() < Duration::from_millis(50), "drain blocked");
        for ev in events {
            match ev {
                Event::ChannelJoined { channel } => {
                    joined = true;
                    saw_bob |= channel.users.iter().any(|u| u.name == "bob");
                }
                Event::UserJoined { user, .. } if user.name == "bob" => saw_bob = true,
                Event::Chat {
                    from_name, text, ..
                } if from_name == "bob" && text == "hi" => {
                    chat = true;
                }
                _ => {}
            }
        }
        let _ = b.drain_events();
        if joined && saw_bob && !chatted {
            b.send(Request::Chat("hi".into()));
            chatted = true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        joined && saw_bob && chat,
        "joined {joined} bob {saw_bob} chat {chat}"
    );
    assert!(stats > 0, "no statistics snapshot");
    assert!(repaints.load(Ordering::Relaxed) > 0, "no repaint requested");

    let t = Instant::now();
    drop(b);
    assert!(t.elapsed() < Duration::from_millis(200), "drop stalled");
    let t = Instant::now();
    a.close(true);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "close(true) took {:?}",
        t.elapsed()
    );
}
