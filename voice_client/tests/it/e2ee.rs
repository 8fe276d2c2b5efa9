//! End-to-end encryption with the real relay and `voice-bot` processes on 127.0.0.1.
//!
//! Password mode, mixed channel: alice and bob share the channel password, carol has E2EE off, all
//! in one channel. Bob hears alice; carol hears nothing and counts alice's frames as
//! `unknown_key_id`; bob drops carol's plaintext (`plaintext_dropped`). Identity-keys mode: two bots
//! exchange identities and wrapped keys through the relay and hear each other.
//! "Heard" as in `e2e.rs`: median normalised cross-correlation of 0.5 s segments above 0.6;
//! "nothing": mean power below 1 % of the input's.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use relay::config::Config;
use voice_core::align::{align, mean_power};
use voice_core::signal::speechlike;
use voice_sim::wav;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("e2ee_{name}_{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn heard(input: &[i16], rec: &[i16]) -> f64 {
    let mut scores: Vec<f64> = input
        .chunks(24_000)
        .filter(|seg| mean_power(seg) > mean_power(input) * 0.2)
        .filter_map(|seg| align(seg, rec, rec.len().saturating_sub(seg.len())))
        .map(|a| a.correlation)
        .collect();
    scores.sort_by(f64::total_cmp);
    scores.get(scores.len() / 2).copied().unwrap_or(0.0)
}

/// One relay (TLS with an in-memory certificate) and bots that pin its fingerprint.
struct Setup {
    relay: relay::server::RelayHandle,
    fingerprint: String,
    dir: PathBuf,
}

impl Setup {
    fn new(name: &str) -> Setup {
        let cfg = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            stats_interval_ms: 0,
            ..Config::default()
        };
        let relay = relay::server::Relay::bind(cfg).unwrap().spawn().unwrap();
        let fingerprint = relay.fingerprint().expect("TLS by default").to_string();
        Setup {
            relay,
            fingerprint,
            dir: tmp(name),
        }
    }

    fn path(&self, f: &str) -> String {
        self.dir.join(f).to_str().unwrap().to_string()
    }

    fn bot(&self, name: &str, args: &[&str]) -> Child {
        Command::new(env!("CARGO_BIN_EXE_voice-bot"))
            .arg("--server")
            .arg(self.relay.local_addr().to_string())
            .arg("--fingerprint")
            .arg(&self.fingerprint)
            .arg("--token")
            .arg(self.relay.token_for(name).expect("the relay's own key"))
            .args(["--name", name, "--channel", "1", "--stats-interval", "500"])
            .args(args)
            .stdout(std::fs::File::create(self.dir.join(format!("{name}.jsonl"))).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap()
    }

    /// The last `stats.e2ee` object the bot printed.
    fn e2ee_stats(&self, name: &str) -> serde_json::Value {
        std::fs::read_to_string(self.dir.join(format!("{name}.jsonl")))
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|l| l.get("stats").map(|s| s["e2ee"].clone()))
            .next_back()
            .expect("stats lines")
    }

    fn recording(&self, name: &str) -> Vec<i16> {
        wav::read_mono_48k(Path::new(&self.path(&format!("{name}.wav")))).unwrap()
    }
}

fn wait_ok(mut c: Child) {
    let status = c.wait().unwrap();
    assert!(status.success(), "bot exited with {status}");
}

#[test]
fn password_mode_in_a_mixed_channel() {
    let s = Setup::new("password");
    let input = speechlike(3.0);
    wav::write_mono_48k(Path::new(&s.path("a.wav")), &input).unwrap();
    let pw = "0123456789abcdef0123456789abcdef";
    let bob = s.bot(
        "bob",
        &[
            "--e2ee-password",
            pw,
            "--record",
            &s.path("bob.wav"),
            "--duration",
            "6",
        ],
    );
    let carol = s.bot(
        "carol",
        &[
            "--record",
            &s.path("carol.wav"),
            "--play",
            &s.path("a.wav"),
            "--duration",
            "6",
        ],
    );
    std::thread::sleep(Duration::from_millis(800));
    let alice = s.bot(
        "alice",
        &[
            "--e2ee-password",
            pw,
            "--play",
            &s.path("a.wav"),
            "--duration",
            "4.5",
        ],
    );
    for c in [alice, bob, carol] {
        wait_ok(c);
    }
    let score = heard(&input, &s.recording("bob"));
    assert!(score > 0.6, "bob hears alice: correlation {score:.3}");
    let carol_rec = s.recording("carol");
    assert!(
        mean_power(&carol_rec) < mean_power(&input) * 0.01,
        "carol (no E2EE) hears nothing of alice"
    );
    let (sb, sc) = (s.e2ee_stats("bob"), s.e2ee_stats("carol"));
    eprintln!("bob e2ee {sb}\ncarol e2ee {sc}");
    assert_eq!(sb["mode"], "password");
    assert!(sb["opened"].as_u64().unwrap() > 100);
    assert_eq!(sb["decrypt_failed_bad_tag"], 0);
    assert_eq!(sb["decrypt_failed_replay"], 0);
    assert!(
        sb["plaintext_dropped"].as_u64().unwrap() > 100,
        "bob drops carol's plaintext"
    );
    assert!(sc["decrypt_failed_unknown_key_id"].as_u64().unwrap() > 100);
    std::fs::remove_dir_all(&s.dir).ok();
}

#[test]
fn identity_keys_through_the_relay() {
    let s = Setup::new("keys");
    let input = speechlike(3.0);
    wav::write_mono_48k(Path::new(&s.path("a.wav")), &input).unwrap();
    let bob = s.bot(
        "bob",
        &[
            "--e2ee-keys",
            "--record",
            &s.path("bob.wav"),
            "--duration",
            "6",
        ],
    );
    std::thread::sleep(Duration::from_millis(800));
    let alice = s.bot(
        "alice",
        &[
            "--e2ee-keys",
            "--play",
            &s.path("a.wav"),
            "--duration",
            "4.5",
        ],
    );
    for c in [alice, bob] {
        wait_ok(c);
    }
    let score = heard(&input, &s.recording("bob"));
    assert!(score > 0.6, "bob hears alice: correlation {score:.3}");
    let sb = s.e2ee_stats("bob");
    eprintln!("bob e2ee {sb}");
    assert_eq!(sb["mode"], "keys");
    assert!(sb["opened"].as_u64().unwrap() > 100);
    assert_eq!(sb["decrypt_failed_bad_tag"], 0);
    assert!(
        sb["rotations"].as_u64().unwrap() >= 1,
        "alice's join re-keys bob"
    );
    assert!(sb["safety_number"].as_str().unwrap().len() == 23);
    std::fs::remove_dir_all(&s.dir).ok();
}
