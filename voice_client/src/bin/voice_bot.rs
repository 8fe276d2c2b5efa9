//! `voice-bot`: a headless client that joins a relay, talks from a WAV file or a tone, records what
//! it hears, and prints events and stats as JSON lines.
//!
//! ```text
//! voice-bot --server HOST:PORT --name alice [--channel ID|NAME] [--play IN.wav [--loop] | --tone HZ]
//!           [--whisper NAME] [--record OUT.wav] [--duration SECS] [--chat TEXT]... [--mode continuous|vad|ptt] (default: continuous with --play/--tone, else silent)
//!           [--input-device NAME|default] [--output-device NAME|default] [--stats-interval MS] [--no-reconnect]
//!           [--fingerprint SHA256 | --ca CA.pem [--server-name NAME] | --tofu | --insecure-plaintext]
//!           [--apm on|off] [--no-hpf] [--no-aec] [--no-ns] [--no-agc] [--no-speech-vad]
//!           [--ns-level low|moderate|high|very-high] [--echo-delay MS]
//!           [--token JWT | --token-file FILE]
//! ```
//! Capture processing (`voice_core::capture`: high-pass, echo cancellation, noise suppression,
//! gain control, speech detection for `--mode vad`) is on by default with `--input-device` and off
//! for files and tones; `--apm` overrides that, the `--no-*` flags switch single stages off.
//! `--token` (or `--token-file`, whose contents are trimmed) is the access token the relay
//! requires (`relay token --name NAME` mints one for a development relay); only a relay started
//! with `--open` admits a bot without one.
//! The control connection is TLS 1.3. `--fingerprint` pins the relay's certificate (the
//! `fingerprint sha256:…` line the relay prints), `--ca` trusts a private CA, `--tofu` accepts
//! whatever certificate comes first (and refuses a different one on reconnect); with none of
//! them only a certificate from a public CA is accepted, and a refusal names the fingerprint
//! seen. `--insecure-plaintext` talks to a relay started with that flag (development only).
//! Each stdout line is one JSON object: `{"t_ms":…,"event":{…}}` for events, `{"t_ms":…,"stats":{…}}`
//! every `--stats-interval` and once at the end (`"final":true`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::json;
use voice_client::{
    AudioInput, AudioOutput, ChannelId, Client, ClientConfig, Event, TlsTrust, TransmitMode,
};
use voice_core::capture::{CaptureConfig, SuppressionLevel};

const USAGE: &str = "usage: voice-bot --server HOST:PORT --name NAME [--channel ID|NAME] \
[--play IN.wav [--loop] | --tone HZ] [--whisper NAME] [--record OUT.wav] [--duration SECS] \
[--chat TEXT]... [--mode continuous|vad|ptt] [--input-device NAME|default] \
[--output-device NAME|default] [--stats-interval MS] [--no-reconnect] \
[--fingerprint SHA256 | --ca CA.pem [--server-name NAME] | --tofu | --insecure-plaintext] \
[--apm on|off] [--no-hpf] [--no-aec] [--no-ns] [--no-agc] [--no-speech-vad] \
[--ns-level low|moderate|high|very-high] [--echo-delay MS] \
[--e2ee-password SECRET | --e2ee-password-env VAR | --e2ee-keys [--e2ee-identity HEX64]] \
[--token JWT | --token-file FILE]";

struct Args {
    /// `host:port`, resolved by the client's engine (IPv6 and IPv4 tried).
    server: String,
    name: String,
    channel: Option<String>,
    input: AudioInput,
    output: AudioOutput,
    whisper: Option<String>,
    duration: Duration,
    chats: Vec<String>,
    mode: TransmitMode,
    stats_interval: Duration,
    reconnect: bool,
    tls: TlsTrust,
    server_name: Option<String>,
    insecure_plaintext: bool,
    /// Capture processing on/off (`None`: on with a capture device).
    apm: Option<bool>,
    capture: CaptureConfig,
    e2ee: voice_client::E2eeMode,
    token: Option<String>,
}

fn parse() -> Result<Args, String> {
    let mut server = None;
    let mut name = None;
    let mut a = Args {
        server: String::new(),
        name: String::new(),
        channel: None,
        input: AudioInput::Null,
        output: AudioOutput::Null,
        whisper: None,
        duration: Duration::from_secs(10),
        chats: Vec::new(),
        mode: TransmitMode::PushToTalk,
        stats_interval: Duration::from_secs(1),
        reconnect: true,
        tls: TlsTrust::System,
        server_name: None,
        insecure_plaintext: false,
        apm: None,
        capture: CaptureConfig::default(),
        e2ee: voice_client::E2eeMode::Off,
        token: None,
    };
    let mut play: Option<PathBuf> = None;
    let mut mode_given = false;
    let mut looped = false;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut v = |n: &str| it.next().ok_or_else(|| format!("{n} needs a value"));
        match flag.as_str() {
            "--server" => {
                let s = v("--server")?;
                // HOST:PORT, [V6]:PORT or V4:PORT; resolved by the client (not here).
                if !s.contains(':') {
                    return Err(format!("--server {s}: expected HOST:PORT"));
                }
                server = Some(s);
            }
            "--name" => name = Some(v("--name")?),
            "--channel" => a.channel = Some(v("--channel")?),
            "--play" => play = Some(v("--play")?.into()),
            "--loop" => looped = true,
            "--tone" => {
                let s = v("--tone")?;
                let hz: f32 = s.parse().map_err(|_| format!("--tone {s:?} is not Hz"))?;
                a.input = AudioInput::Tone { hz, amplitude: 0.3 };
            }
            "--whisper" => a.whisper = Some(v("--whisper")?),
            "--record" => a.output = AudioOutput::Wav(v("--record")?.into()),
            "--duration" => {
                let s = v("--duration")?;
                let secs: f64 = s
                    .parse()
                    .map_err(|_| format!("--duration {s:?} is not seconds"))?;
                if !(0.0..=86_400.0).contains(&secs) {
                    return Err("--duration must be 0..=86400 s".into());
                }
                a.duration = Duration::from_secs_f64(secs);
            }
            "--chat" => a.chats.push(v("--chat")?),
            "--mode" => {
                mode_given = true;
                a.mode = match v("--mode")?.as_str() {
                    "continuous" => TransmitMode::Continuous,
                    "vad" => TransmitMode::VoiceActivity,
                    "ptt" => TransmitMode::PushToTalk,
                    m => return Err(format!("--mode {m:?}: continuous, vad or ptt")),
                }
            }
            "--input-device" => {
                let d = v("--input-device")?;
                a.input = AudioInput::Device((d != "default").then_some(d));
            }
            "--output-device" => {
                let d = v("--output-device")?;
                a.output = AudioOutput::Device((d != "default").then_some(d));
            }
            "--stats-interval" => {
                let s = v("--stats-interval")?;
                let ms: u64 = s.parse().map_err(|_| format!("--stats-interval {s:?}"))?;
                a.stats_interval = Duration::from_millis(ms.max(50));
            }
            "--no-reconnect" => a.reconnect = false,
            "--fingerprint" => {
                let s = v("--fingerprint")?;
                let fp = s.parse().map_err(|e| format!("--fingerprint {s:?}: {e}"))?;
                a.tls = TlsTrust::Pinned(fp);
            }
            "--ca" => a.tls = TlsTrust::CaFile(v("--ca")?.into()),
            "--server-name" => a.server_name = Some(v("--server-name")?),
            "--tofu" => a.tls = TlsTrust::TrustOnFirstUse,
            "--insecure-plaintext" => a.insecure_plaintext = true,
            "--apm" => {
                a.apm = match v("--apm")?.as_str() {
                    "on" => Some(true),
                    "off" => Some(false),
                    o => return Err(format!("--apm {o:?}: on or off")),
                }
            }
            "--no-hpf" => a.capture.high_pass = false,
            "--no-aec" => a.capture.echo_cancel = false,
            "--no-ns" => a.capture.noise_suppression = None,
            "--no-agc" => a.capture.gain_control = false,
            "--no-speech-vad" => a.capture.vad = false,
            "--ns-level" => {
                let l = v("--ns-level")?;
                a.capture.noise_suppression = Some(SuppressionLevel::parse(&l).ok_or(format!(
                    "--ns-level {l:?}: low, moderate, high or very-high"
                ))?);
            }
            "--echo-delay" => {
                let s = v("--echo-delay")?;
                a.capture.echo_delay_ms = s
                    .parse()
                    .ok()
                    .filter(|ms| *ms <= 500)
                    .ok_or(format!("--echo-delay {s:?}: 0..=500 ms"))?;
            }
            "--e2ee-password" => {
                a.e2ee = voice_client::E2eeMode::Password(v("--e2ee-password")?.into_bytes())
            }
            "--e2ee-password-env" => {
                let var = v("--e2ee-password-env")?;
                let secret = std::env::var(&var)
                    .map_err(|_| format!("--e2ee-password-env: {var} is not set"))?;
                a.e2ee = voice_client::E2eeMode::Password(secret.into_bytes());
            }
            "--e2ee-keys" => {
                if !matches!(a.e2ee, voice_client::E2eeMode::Keys { .. }) {
                    a.e2ee = voice_client::E2eeMode::keys();
                }
            }
            "--e2ee-identity" => {
                let h = v("--e2ee-identity")?;
                let bytes: Vec<u8> = (0..h.len())
                    .step_by(2)
                    .filter_map(|i| h.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
                    .collect();
                let secret: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| "--e2ee-identity needs 64 hex digits".to_string())?;
                a.e2ee = voice_client::E2eeMode::Keys {
                    identity: Some(secret),
                    lead: voice_client::E2EE_DEFAULT_LEAD,
                };
            }
            "--token" => a.token = Some(v("--token")?),
            "--token-file" => {
                let path = v("--token-file")?;
                let t = std::fs::read_to_string(&path)
                    .map_err(|e| format!("--token-file {path}: {e}"))?;
                a.token = Some(t.trim().to_owned());
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if let Some(path) = play {
        a.input = AudioInput::Wav { path, looped };
    }
    // A bot with something to say talks continuously unless told otherwise; a bot with nothing
    // to say keeps its microphone closed (push-to-talk, never pressed).
    if !mode_given && a.input != AudioInput::Null {
        a.mode = TransmitMode::Continuous;
    }
    a.server = server.ok_or("--server is required")?;
    a.name = name.ok_or("--name is required")?;
    Ok(a)
}

fn line(start: Instant, key: &str, value: serde_json::Value) {
    println!(
        "{}",
        json!({ "t_ms": start.elapsed().as_millis() as u64, key: value })
    );
}

fn run(a: Args) -> Result<(), String> {
    let start = Instant::now();
    let mut cfg = ClientConfig::with_host(&a.server, &a.name);
    cfg.input = a.input.clone();
    cfg.output = a.output.clone();
    cfg.reconnect = a.reconnect;
    cfg.tls = a.tls.clone();
    cfg.tls_server_name = a.server_name.clone();
    cfg.insecure_plaintext = a.insecure_plaintext;
    cfg.engine.e2ee = a.e2ee.clone();
    cfg.token = a.token.clone().map(voice_client::AccessToken);
    cfg.engine.transmit = a.mode;
    if a.apm.unwrap_or(matches!(a.input, AudioInput::Device(_))) {
        cfg.engine.capture = a.capture;
    }
    // A numeric channel is joined straight after the handshake, never passing through the default.
    cfg.engine.initial_channel = a
        .channel
        .as_deref()
        .and_then(|c| c.parse().ok())
        .map(ChannelId);
    let client = Client::start(cfg).map_err(|e| e.to_string())?;
    if let Some(ch) = a.channel.as_deref().filter(|c| c.parse::<u32>().is_err()) {
        client.join_channel_named(ch);
    }
    if let Some(w) = &a.whisper {
        client.whisper_to_named(w);
    }
    let deadline = start + a.duration;
    let mut next_stats = start + a.stats_interval;
    let mut chats = a.chats.clone().into_iter();
    let mut joined = false;
    let mut last_reason = String::new();
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let wait = deadline.min(next_stats).saturating_duration_since(now);
        match client.events().recv_timeout(wait) {
            Ok(ev) => {
                if let Event::ChannelJoined { channel } = &ev {
                    let wanted = a.channel.as_deref();
                    let ok =
                        wanted.is_none_or(|w| w == channel.name || w == channel.id.0.to_string());
                    if ok && !joined {
                        joined = true;
                        for text in chats.by_ref() {
                            client.send_chat(&text);
                        }
                    }
                }
                if let Event::Disconnected { reason } = &ev {
                    last_reason.clone_from(reason);
                }
                let v = serde_json::to_value(&ev).unwrap_or_default();
                line(start, "event", v);
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                return Err(format!("engine thread stopped: {last_reason}"))
            }
        }
        if Instant::now() >= next_stats {
            next_stats += a.stats_interval;
            if let Some(s) = client.stats() {
                line(start, "stats", serde_json::to_value(&s).unwrap_or_default());
            }
        }
    }
    if let Some(s) = client.stats() {
        let mut v = serde_json::to_value(&s).unwrap_or_default();
        v["final"] = json!(true);
        line(start, "stats", v);
    }
    client.shutdown().map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .target(env_logger::Target::Stderr)
        .init();
    match parse().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("voice-bot: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
