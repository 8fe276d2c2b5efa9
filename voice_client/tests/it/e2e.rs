//! End to end on 127.0.0.1: the real relay and `voice-bot` processes.
//!
//! Pass criterion for "A is in B's recording": A's input is cut into 0.5 s segments, each segment
//! is located in B's recording at its own best lag (the adaptive playout may shift the lag by a
//! few ms between segments through time-scale modification), and the median normalised
//! cross-correlation is above 0.6. Opus at 32 kb/s keeps this harmonic test signal's waveform to
//! about 0.8–0.9 on loopback; an unrelated or silent recording scores near 0. For "absent", the
//! recording's mean power must stay below 1 % of the input's (only silence is mixed when nobody
//! is heard).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use relay::config::Config;
use voice_core::align::{align, mean_power};
use voice_core::signal::speechlike;
use voice_sim::wav;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("e2e_{name}_{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Median over 0.5 s segments of `input` of the best normalised correlation found in `rec`.
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

/// Each relay's address and certificate fingerprint: the bots pin it (`--fingerprint`).
/// Each relay's admission policy: the bots present a token it minted (`--token`).
#[allow(clippy::type_complexity)]
static FINGERPRINTS: std::sync::Mutex<
    Vec<(
        std::net::SocketAddr,
        String,
        std::sync::Arc<relay::admission::Admission>,
    )>,
> = std::sync::Mutex::new(Vec::new());

/// A relay on TLS with an in-memory certificate.
fn start_relay() -> relay::server::RelayHandle {
    let cfg = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        stats_interval_ms: 0,
        ..Config::default()
    };
    let relay = relay::server::Relay::bind(cfg).unwrap().spawn().unwrap();
    let fp = relay.fingerprint().expect("TLS by default").to_string();
    FINGERPRINTS
        .lock()
        .unwrap()
        .push((relay.local_addr(), fp, relay.admission()));
    relay
}

fn bot(server: std::net::SocketAddr, args: &[&str], out: &Path) -> Child {
    let name = args
        .iter()
        .position(|a| *a == "--name")
        .and_then(|i| args.get(i + 1))
        .expect("a bot has a --name");
    let (fp, token) = FINGERPRINTS
        .lock()
        .unwrap()
        .iter()
        .find(|(a, _, _)| *a == server)
        .map(|(_, f, adm)| (f.clone(), adm.token_for(name).expect("the relay's own key")))
        .expect("a relay started by start_relay");
    Command::new(env!("CARGO_BIN_EXE_voice-bot"))
        .arg("--server")
        .arg(server.to_string())
        .arg("--fingerprint")
        .arg(fp)
        .arg("--token")
        .arg(token)
        .args(args)
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn wait_ok(mut c: Child) {
    let status = c.wait().unwrap();
    assert!(status.success(), "bot exited with {status}");
}

fn json_lines(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn events(lines: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    lines.iter().filter_map(|l| l.get("event")).collect()
}

fn chats(lines: &[serde_json::Value]) -> Vec<String> {
    events(lines)
        .iter()
        .filter_map(|e| e.get("Chat"))
        .filter_map(|c| c["text"].as_str().map(String::from))
        .collect()
}

#[test]
fn channel_voice_presence_chat_and_rtt() {
    let relay = start_relay();
    let server = relay.local_addr();
    let d = tmp("channel");
    let input = speechlike(3.0);
    wav::write_mono_48k(&d.join("a.wav"), &input).unwrap();
    let s = |f: &str| d.join(f).to_str().unwrap().to_string();
    let b = bot(
        server,
        &[
            "--name",
            "bob",
            "--channel",
            "1",
            "--record",
            &s("b.wav"),
            "--duration",
            "6",
        ],
        &d.join("b.jsonl"),
    );
    let c = bot(
        server,
        &[
            "--name",
            "carol",
            "--channel",
            "1",
            "--record",
            &s("c.wav"),
            "--duration",
            "6",
            // Capture processing on (it is off without a device): her stats lines carry it.
            "--apm",
            "on",
        ],
        &d.join("c.jsonl"),
    );
    let dd = bot(
        server,
        &[
            "--name",
            "dave",
            "--channel",
            "2",
            "--record",
            &s("d.wav"),
            "--duration",
            "6",
        ],
        &d.join("d.jsonl"),
    );
    std::thread::sleep(Duration::from_millis(800));
    let a = bot(
        server,
        &[
            "--name",
            "alice",
            "--channel",
            "1",
            "--play",
            &s("a.wav"),
            "--duration",
            "4.5",
            "--chat",
            "hello lobby",
        ],
        &d.join("a.jsonl"),
    );
    for child in [a, b, c, dd] {
        wait_ok(child);
    }
    let power = mean_power(&input);
    for who in ["b", "c"] {
        let rec = wav::read_mono_48k(&d.join(format!("{who}.wav"))).unwrap();
        let score = heard(&input, &rec);
        eprintln!("{who}: median segment correlation {score:.3}");
        assert!(
            score > 0.6,
            "{who} should hear alice: correlation {score:.3}"
        );
    }
    let rec_d = wav::read_mono_48k(&d.join("d.wav")).unwrap();
    assert!(
        mean_power(&rec_d) < power * 0.01,
        "dave is in another channel and must hear nothing"
    );

    let lines_b = json_lines(&d.join("b.jsonl"));
    let ev_b = events(&lines_b);
    // Bob learns who is in his channel from the member list on joining, then from UserJoined.
    let mut joined: Vec<&str> = ev_b
        .iter()
        .filter_map(|e| e.get("UserJoined"))
        .filter_map(|u| u["user"]["name"].as_str())
        .collect();
    for e in ev_b.iter().filter_map(|e| e.get("ChannelJoined")) {
        if let Some(users) = e["channel"]["users"].as_array() {
            joined.extend(users.iter().filter_map(|u| u["name"].as_str()));
        }
    }
    assert!(
        ev_b.iter()
            .filter_map(|e| e.get("UserJoined"))
            .any(|u| u["user"]["name"] == "alice"),
        "alice joined after bob: a UserJoined event"
    );
    assert!(
        joined.contains(&"carol") && joined.contains(&"alice"),
        "{joined:?}"
    );
    assert!(joined.iter().all(|n| *n != "dave"));
    let left = ev_b.iter().filter(|e| e.get("UserLeft").is_some()).count();
    assert!(left >= 1, "alice leaving is seen by bob");
    assert_eq!(chats(&lines_b), vec!["hello lobby"]);
    assert_eq!(chats(&json_lines(&d.join("c.jsonl"))), vec!["hello lobby"]);
    assert!(chats(&json_lines(&d.join("d.jsonl"))).is_empty());
    let rtt = lines_b
        .iter()
        .filter_map(|l| l.get("stats"))
        .filter_map(|s| s["rtt_ms"].as_f64())
        .next_back()
        .expect("bob reports an RTT");
    assert!((0.0..200.0).contains(&rtt), "rtt {rtt}");
    // Carol's final stats line says what her capture processing did: every frame of her (silent)
    // input went through it, and what she played, Alice's voice, was handed to her echo
    // canceller as its far end.
    let capture = json_lines(&d.join("c.jsonl"))
        .iter()
        .filter_map(|l| l.get("stats"))
        .map(|s| s["capture"].clone())
        .next_back()
        .expect("carol's stats");
    assert!(capture["frames"].as_u64() > Some(100), "{capture}");
    assert!(capture["far_end_chunks"].as_u64() > Some(100), "{capture}");
    assert!(capture["clock_drift_ppm"].is_number(), "{capture}");
    let speaking = ev_b
        .iter()
        .filter_map(|e| e.get("Speaking"))
        .any(|s| s["speaking"] == true);
    assert!(speaking, "bob sees alice speaking");
    drop(relay);
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn whisper_reaches_only_its_target() {
    let relay = start_relay();
    let server = relay.local_addr();
    let d = tmp("whisper");
    let input = speechlike(3.0);
    wav::write_mono_48k(&d.join("a.wav"), &input).unwrap();
    let s = |f: &str| d.join(f).to_str().unwrap().to_string();
    let b = bot(
        server,
        &[
            "--name",
            "bob",
            "--channel",
            "1",
            "--record",
            &s("b.wav"),
            "--duration",
            "6",
        ],
        &d.join("b.jsonl"),
    );
    // Carol is in another channel: a whisper reaches her whatever channel she is in.
    let c = bot(
        server,
        &[
            "--name",
            "carol",
            "--channel",
            "2",
            "--record",
            &s("c.wav"),
            "--duration",
            "6",
        ],
        &d.join("c.jsonl"),
    );
    std::thread::sleep(Duration::from_millis(800));
    let a = bot(
        server,
        &[
            "--name",
            "alice",
            "--channel",
            "1",
            "--play",
            &s("a.wav"),
            "--whisper",
            "carol",
            "--duration",
            "4.5",
        ],
        &d.join("a.jsonl"),
    );
    for child in [a, b, c] {
        wait_ok(child);
    }
    let rec_c = wav::read_mono_48k(&d.join("c.wav")).unwrap();
    let score = heard(&input, &rec_c);
    assert!(score > 0.6, "carol hears the whisper: {score:.3}");
    let rec_b = wav::read_mono_48k(&d.join("b.wav")).unwrap();
    assert!(
        mean_power(&rec_b) < mean_power(&input) * 0.01,
        "bob, in alice's channel, must not hear the whisper"
    );
    drop(relay);
    std::fs::remove_dir_all(&d).ok();
}
