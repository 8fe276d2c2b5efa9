//! Switching audio streams without reconnecting (issue 19, "switch devices without
//! reconnecting"), end to end through a real TLS relay on 127.0.0.1.
//!
//! Alice talks continuously, first a 440 Hz tone, then (switched mid-session) a looped WAV file
//! of a 1000 Hz tone; Bob records what he hears to a WAV file and switches his recording to a
//! second file mid-session. Each 100 ms of Bob's recordings is classified by which tone carries
//! its energy (Goertzel). Pass: the first recording holds 440 Hz, then 1000 Hz and never 440 Hz
//! again; the second holds only 1000 Hz, and long after Alice's failed switch to a device that
//! does not exist (the old source stays) and Bob's failed switch to a file he cannot create
//! (the old recording goes on). Neither client reconnects: no `Connected`, `Disconnected` or
//! connecting status after the start, the same session tokens, and Bob never sees Alice leave.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::relays::*;
use relay::server::RelayHandle;
use voice_client::{
    AccessToken, AudioError, AudioInput, AudioOutput, ChannelId, Client, ClientConfig,
    ConnectionStatus, Event, TlsTrust, TransmitMode,
};
use voice_sim::wav;

const SR: usize = 48_000;
/// The classification window: 100 ms.
const WINDOW: usize = SR / 10;

/// A client in channel 2 with UDP up; the events up to then are returned with it.
fn client(
    relay: &RelayHandle,
    name: &str,
    input: AudioInput,
    output: AudioOutput,
) -> (Client, Vec<Event>) {
    let mut cfg = ClientConfig::new(relay.local_addr(), name);
    cfg.tls = TlsTrust::Pinned(relay.fingerprint().expect("TLS by default"));
    cfg.token = Some(AccessToken(relay.token_for(name).expect("own key")));
    cfg.input = input;
    cfg.output = output;
    cfg.audio_fallback = false;
    cfg.engine.transmit = TransmitMode::Continuous;
    let c = Client::start(cfg).unwrap();
    c.join_channel(ChannelId(2));
    let until = Instant::now() + Duration::from_secs(10);
    let (mut joined, mut udp) = (false, false);
    let mut seen = Vec::new();
    while !(joined && udp) && Instant::now() < until {
        if let Ok(ev) = c.events().recv_timeout(Duration::from_millis(100)) {
            joined |= matches!(ev, Event::ChannelJoined { .. });
            udp |= matches!(ev, Event::UdpReady);
            seen.push(ev);
        }
    }
    assert!(
        joined && udp,
        "{name} did not join with UDP in time: {seen:?}"
    );
    (c, seen)
}

fn drain(c: &Client) -> Vec<Event> {
    c.events().try_iter().collect()
}

/// Events that would mean the session was torn down and built again.
fn reconnects(events: &[Event]) -> Vec<&Event> {
    events
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::Connected { .. }
                    | Event::Disconnected { .. }
                    | Event::Status(
                        ConnectionStatus::Connecting { .. }
                            | ConnectionStatus::Reconnecting { .. }
                            | ConnectionStatus::Failed { .. }
                    )
            )
        })
        .collect()
}

/// Power of `x` at `hz` (Goertzel), normalised by the window length.
pub(crate) fn tone_power(x: &[i16], hz: f64) -> f64 {
    let w = std::f64::consts::TAU * hz / SR as f64;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s0 = f64::from(v) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (x.len() as f64).powi(2)
}

/// What a 100 ms window of a recording holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Heard {
    Silence,
    Low,
    High,
    /// Both tones, or neither clearly (a switch inside the window, concealment).
    Mixed,
}

fn classify(rec: &[i16]) -> Vec<Heard> {
    rec.chunks_exact(WINDOW)
        .map(|w| {
            let mean_sq = w.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / w.len() as f64;
            if mean_sq < 1e6 {
                return Heard::Silence;
            }
            let (lo, hi) = (tone_power(w, 440.0), tone_power(w, 1000.0));
            if lo > 10.0 * hi {
                Heard::Low
            } else if hi > 10.0 * lo {
                Heard::High
            } else {
                Heard::Mixed
            }
        })
        .collect()
}

fn count(v: &[Heard], h: Heard) -> usize {
    v.iter().filter(|x| **x == h).count()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("switch_{name}_{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn tone_wav(path: &Path, hz: f64, secs: f64) {
    let n = (secs * SR as f64) as usize;
    let samples: Vec<i16> = (0..n)
        .map(|i| ((i as f64 * std::f64::consts::TAU * hz / SR as f64).sin() * 16_000.0) as i16)
        .collect();
    wav::write_mono_48k(path, &samples).unwrap();
}

#[test]
fn input_and_output_switch_mid_session_without_reconnecting() {
    let relay = start_relay();
    let d = tmp("mid_session");
    // A whole number of periods of 1000 Hz in 1 s: the loop has no seam.
    tone_wav(&d.join("high.wav"), 1000.0, 1.0);
    let (b1, b2) = (d.join("bob1.wav"), d.join("bob2.wav"));

    let (bob, _) = client(
        &relay,
        "bob",
        AudioInput::Null,
        AudioOutput::Wav(b1.clone()),
    );
    let (alice, _) = client(
        &relay,
        "alice",
        AudioInput::Tone {
            hz: 440.0,
            amplitude: 0.5,
        },
        AudioOutput::Null,
    );
    let alice_session = alice.stats().expect("stats").session;
    let bob_session = bob.stats().expect("stats").session;
    // Bob sees Alice arrive once; from here on nothing may leave or arrive.
    let until = Instant::now() + Duration::from_secs(5);
    let mut arrived = false;
    while !arrived && Instant::now() < until {
        arrived = matches!(
            bob.events().recv_timeout(Duration::from_millis(100)),
            Ok(Event::UserJoined { user, .. }) if user.session == alice_session
        );
    }
    assert!(arrived, "bob did not see alice join");
    std::thread::sleep(Duration::from_millis(1500));

    // Tone → file.
    alice
        .set_input(AudioInput::Wav {
            path: d.join("high.wav"),
            looped: true,
        })
        .expect("switch to the WAV file");
    std::thread::sleep(Duration::from_millis(1000));
    // Bob's recording moves to a second file; the first is finalised.
    bob.set_output(AudioOutput::Wav(b2.clone()))
        .expect("switch the recording");
    std::thread::sleep(Duration::from_millis(1000));

    // A device that does not exist: refused, the WAV file goes on.
    let err = alice
        .set_input(AudioInput::Device(Some("no such microphone 7f3a".into())))
        .expect_err("an unknown device cannot be opened");
    assert!(matches!(err, AudioError::Device(_)), "{err}");
    // A recording that cannot be created: refused, the second recording goes on.
    let missing = d.join("no-such-dir").join("x.wav");
    bob.set_output(AudioOutput::Wav(missing))
        .expect_err("a file in a missing directory cannot be created");
    std::thread::sleep(Duration::from_millis(1500));

    // Still the same sessions, nothing reconnected.
    assert_eq!(alice.stats().expect("stats").session, alice_session);
    assert_eq!(bob.stats().expect("stats").session, bob_session);
    let alice_events = drain(&alice);
    let bob_events = drain(&bob);
    assert!(
        reconnects(&alice_events).is_empty(),
        "alice reconnected: {:?}",
        reconnects(&alice_events)
    );
    assert!(
        reconnects(&bob_events).is_empty(),
        "bob reconnected: {:?}",
        reconnects(&bob_events)
    );
    assert!(
        !bob_events.iter().any(|e| match e {
            Event::UserLeft { session, .. } => *session == alice_session,
            Event::UserJoined { user, .. } => user.session == alice_session,
            _ => false,
        }),
        "bob saw alice leave or join: {bob_events:?}"
    );
    let notices: Vec<&String> = alice_events
        .iter()
        .filter_map(|e| match e {
            Event::AudioNotice { message } => Some(message),
            _ => None,
        })
        .collect();
    assert!(
        notices
            .iter()
            .any(|m| m.contains("no such microphone 7f3a")),
        "the failed switch is reported as an audio notice: {notices:?}"
    );
    assert!(
        bob_events.iter().any(
            |e| matches!(e, Event::AudioNotice { message } if message.contains("no-such-dir"))
        ),
        "bob's failed switch is reported: {bob_events:?}"
    );

    // Application audio: a new ring whose end the application takes.
    assert!(alice.take_app_capture().is_none());
    alice.set_input(AudioInput::App).expect("application ring");
    assert!(alice.take_app_capture().is_some());

    alice.shutdown().unwrap();
    bob.shutdown().unwrap();

    let first = classify(&wav::read_mono_48k(&b1).expect("the first recording is finalised"));
    let second = classify(&wav::read_mono_48k(&b2).unwrap());
    eprintln!("first recording:  {first:?}");
    eprintln!("second recording: {second:?}");
    let last_low = first.iter().rposition(|h| *h == Heard::Low);
    let first_high = first.iter().position(|h| *h == Heard::High);
    assert!(
        count(&first, Heard::Low) >= 8,
        "bob heard the 440 Hz tone first"
    );
    assert!(
        count(&first, Heard::High) >= 5,
        "then the file's 1000 Hz tone"
    );
    assert!(
        last_low < first_high,
        "440 Hz never comes back after the switch"
    );
    assert!(count(&first, Heard::Mixed) <= 3, "{first:?}");
    assert_eq!(count(&second, Heard::Low), 0, "{second:?}");
    assert!(count(&second, Heard::Mixed) <= 1, "{second:?}");
    // 2.5 s from the recording switch to the application ring; the failed switches came 1 s in,
    // so 1.5 s of 1000 Hz means the file played on well past them.
    assert!(
        count(&second, Heard::High) >= 15,
        "the file went on playing after the failed switch, and the recording after its own: \
         {second:?}"
    );
    std::fs::remove_dir_all(&d).ok();
}

/// voice-bot's scripted switches: `--switch-input` changes what a listener hears mid-run,
/// `--switch-output` moves the bot's recording, and neither reconnects.
#[test]
fn voice_bot_switches_its_source_and_sink_during_the_run() {
    let relay = start_relay();
    let d = tmp("bot");
    let (r1, r2, heard) = (d.join("r1.wav"), d.join("r2.wav"), d.join("heard.wav"));
    let (listener, _) = client(
        &relay,
        "listener",
        AudioInput::Tone {
            hz: 1000.0,
            amplitude: 0.5,
        },
        AudioOutput::Wav(heard.clone()),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_voice-bot"))
        .args(["--server", &relay.local_addr().to_string()])
        .args(["--fingerprint", &relay.fingerprint().unwrap().to_string()])
        .args(["--token", &relay.token_for("bot").unwrap()])
        .args(["--name", "bot", "--channel", "2", "--duration", "4"])
        .args(["--tone", "440", "--record", r1.to_str().unwrap()])
        .args(["--switch-input", "2:tone:1000"])
        .args(["--switch-output", &format!("2:wav:{}", r2.display())])
        .args(["--switch-input", "3:device:no such microphone 7f3a"])
        .output()
        .unwrap();
    assert!(out.status.success(), "voice-bot failed: {out:?}");
    listener.shutdown().unwrap();
    let lines = String::from_utf8(out.stdout).unwrap();
    let connected = lines.matches("\"Connected\":{\"name\"").count();
    assert_eq!(connected, 1, "the bot connected once: {lines}");
    assert!(
        lines.contains("AudioNotice") && lines.contains("no such microphone 7f3a"),
        "the failed switch is an AudioNotice event: {lines}"
    );
    // The listener heard 440 Hz, then 1000 Hz (it talks 1000 Hz itself, but hears only others).
    let h = classify(&wav::read_mono_48k(&heard).unwrap());
    eprintln!("listener: {h:?}");
    let last_low = h.iter().rposition(|x| *x == Heard::Low);
    let first_high = h.iter().position(|x| *x == Heard::High);
    assert!(
        count(&h, Heard::Low) >= 5 && count(&h, Heard::High) >= 5,
        "{h:?}"
    );
    assert!(last_low < first_high, "{h:?}");
    // The bot's first recording ends at the switch, the second starts there: both hold the
    // listener's 1000 Hz.
    let (a, b) = (
        classify(&wav::read_mono_48k(&r1).unwrap()),
        classify(&wav::read_mono_48k(&r2).unwrap()),
    );
    eprintln!("bot: {a:?} / {b:?}");
    assert!(count(&a, Heard::High) >= 5 && count(&b, Heard::High) >= 5);
    assert!(a.len() < 30 && b.len() < 30, "each holds part of the run");
    std::fs::remove_dir_all(&d).ok();
}
