//! The client library follows `Redirect` on its own: two relays in one cluster (a real
//! `redis-server` on a loopback port), alice places room 2 on relay A, bob is configured with
//! relay B only and still ends up in alice's room, hearing her. Skipped, with a message, only
//! when `redis-server` is not installed (`scripts/install-deps.sh` installs it).

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> Option<(Proc, u16)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = match Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
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

/// The backend key whose public half every relay of the cluster accepts.
fn backend_key() -> &'static relay::token::SigningKey {
    static KEY: std::sync::OnceLock<relay::token::SigningKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| relay::token::SigningKey::generate().expect("Ed25519 key generation"))
}

/// A token for `name` that every relay of the cluster accepts.
fn token(name: &str) -> String {
    let claims = relay::token::Claims::for_name(name, relay::config::DEFAULT_AUDIENCE, 3600);
    backend_key().mint(&claims).expect("minting a token")
}

/// The one place this file starts a relay: in-process, in the cluster, plaintext control.
fn start_relay(redis_port: u16) -> relay::server::RelayHandle {
    let cfg = relay::Config {
        token_keys: vec![backend_key().public().to_string()],
        listen: "127.0.0.1:0".parse().unwrap(),
        stats_interval_ms: 0,
        insecure_plaintext: true,
        redis: Some(format!("redis://127.0.0.1:{redis_port}/")),
        lease_ms: 1000,
        ..relay::Config::default()
    };
    relay::Relay::bind(cfg).unwrap().spawn().unwrap()
}

fn bot(server: SocketAddr, args: &[&str], out: &Path) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_voice-bot"))
            .arg("--server")
            .arg(server.to_string())
            .arg("--insecure-plaintext")
            .arg("--token")
            .arg(token(
                args.iter()
                    .position(|a| *a == "--name")
                    .and_then(|i| args.get(i + 1))
                    .expect("a bot has a --name"),
            ))
            .args(args)
            .stdout(std::fs::File::create(out).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

fn json_lines(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_client_configured_with_another_relay_is_redirected_to_the_rooms_host() {
    let Some((_redis, port)) = start_redis() else {
        eprintln!("SKIPPED: redis-server is not installed (scripts/install-deps.sh installs it)");
        return;
    };
    let a = start_relay(port);
    let b = start_relay(port);
    let dir = std::env::temp_dir().join(format!("cluster_client_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let alice = bot(
        a.local_addr(),
        &["--name", "alice", "--channel", "2", "--tone", "440"],
        &dir.join("alice.jsonl"),
    );
    std::thread::sleep(Duration::from_millis(700));
    let mut bob = bot(
        b.local_addr(),
        &["--name", "bob", "--channel", "2", "--duration", "3"],
        &dir.join("bob.jsonl"),
    );
    let status = bob.0.wait().unwrap();
    assert!(status.success(), "bob exited with {status}");
    drop(alice);
    let lines = json_lines(&dir.join("bob.jsonl"));
    let events: Vec<&serde_json::Value> = lines.iter().filter_map(|l| l.get("event")).collect();
    let redirect = format!("redirected to {}", a.local_addr());
    assert!(
        events
            .iter()
            .any(|e| e["Disconnected"]["reason"] == redirect.as_str()),
        "no redirect to relay A in {events:?}"
    );
    let joined = events
        .iter()
        .filter_map(|e| e.get("ChannelJoined"))
        .next_back()
        .expect("bob never joined");
    let names: Vec<&str> = joined["channel"]["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["name"].as_str())
        .collect();
    assert!(names.contains(&"alice"), "room members {names:?}");
    let heard: u64 = lines
        .iter()
        .filter_map(|l| l.get("stats"))
        .next_back()
        .and_then(|s| s["remotes"].as_array())
        .into_iter()
        .flatten()
        .filter(|r| r["name"] == "alice")
        .filter_map(|r| r["stream"]["packets_received"].as_u64())
        .sum();
    assert!(heard >= 50, "bob heard {heard} packets from alice");
}
