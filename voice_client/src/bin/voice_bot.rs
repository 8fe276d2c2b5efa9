//! `voice-bot`: a headless client that joins a relay, talks from a WAV file or a tone, records what
//! it hears, and prints events and stats as JSON lines.
//!
//! ```text
//! voice-bot --server HOST:PORT --name alice [--channel ID|NAME] [--play IN.wav [--loop] | --tone HZ]
//!           [--whisper NAME] [--record OUT.wav] [--duration SECS] [--chat TEXT]... [--mode continuous|vad|ptt] (default: continuous with --play/--tone, else silent)
//!           [--input-device NAME|default] [--output-device NAME|default] [--stats-interval MS] [--no-reconnect]
//!           [--fingerprint SHA256 | --ca CA.pem [--server-name NAME] | --tofu | --insecure-plaintext]
//!           [--apm on|off] [--no-hpf] [--no-aec] [--no-ns] [--no-agc] [--no-speech-vad]
//!           [--ns-level low|moderate|high|very-high] [--echo-delay MS] [--vad-background-db DB]
//!           [--token JWT | --token-file FILE]
//!           [--position X,Y,Z | --path X,Y,Z;X,Y,Z;... [--speed UNITS_PER_S]] [--model MODEL:MIN:MAX:ROLLOFF]
//!           [--kick NAME]... [--ban NAME[:SECS]]... [--reason TEXT] [--mute] [--deafen]
//!           [--switch-input SECS:SOURCE]... [--switch-output SECS:SINK]...
//! ```
//! `--switch-input 5:tone:880` (or `wav:PATH`, `device:NAME`, `device:default`, `null`) and
//! `--switch-output 5:wav:PATH` (or `device:NAME`, `device:default`, `null`) change the capture
//! source or the playback sink that many seconds into the run, without reconnecting; a switch
//! that fails keeps the current one and prints the `AudioNotice` event.
//! `--mute` and `--deafen` start the bot with its microphone muted or its output silenced; the
//! relay shows that to the channel (`UserState` events, and `state` in every listed user).
//! Permissions: `--kick NAME` and `--ban NAME[:SECS]` (SECS 0 or absent: the relay's default
//! length) remove every user of that name the bot sees (in the channel listings, refreshed each
//! `--stats-interval` until found), once each, with `--reason` shown to them. The relay obeys
//! only a bot whose token has the admin claim (`relay token --admin …`); otherwise the answer is
//! an `Error` event with code `Forbidden`. A kicked or banned bot prints the `Removed` event and
//! exits (status 1) without reconnecting.
//! Exit status: 0 after `--duration`, 1 when the run ended early (removed by the relay, or a
//! connection that failed for good), 2 for a bad command line.
//! Capture processing (`voice_core::capture`: high-pass, echo cancellation, noise suppression,
//! gain control, speech detection for `--mode vad`) is on by default with `--input-device` and off
//! for files and tones; `--apm` overrides that, the `--no-*` flags switch single stages off.
//! `--vad-background-db` is how far (dB) under the talker's level speech may be and still open
//! the microphone in `--mode vad` (default 6; voices further down, across the room, do not; 0:
//! every voice does).
//! `--token` (or `--token-file`, whose contents are trimmed) is the access token the relay
//! requires (`relay token --name NAME` mints one for a development relay); only a relay started
//! with `--open` admits a bot without one.
//! Positional audio: `--position` places the bot; `--path` makes it walk the waypoints in a loop
//! (back to the first after the last) at `--speed` units/s (default 2), facing where it walks,
//! its position updated every 100 ms and printed as `{"t_ms":…,"position":[x,y,z]}` with each
//! stats line. `--model` (`none`, `inverse`, `linear`, `exponential`) overrides the channel's
//! distance model.
//! The control connection is TLS 1.3. `--fingerprint` pins the relay's certificate (the
//! `fingerprint sha256:…` line the relay prints), `--ca` trusts a private CA, `--tofu` accepts
//! whatever certificate comes first (and refuses a different one on reconnect); with none of
//! them only a certificate from a public CA is accepted, and a refusal names the fingerprint
//! seen. `--insecure-plaintext` talks to a relay started with that flag (development only).
//! Each stdout line is one JSON object: `{"t_ms":…,"event":{…}}` for events, `{"t_ms":…,"stats":{…}}`
//! every `--stats-interval` and once at the end (`"final":true`). In a cluster the presence lines
//! include `{"ChannelMembers":{"channel":…,"relay":…,"users":[…]}}`: a channel's whole member
//! list whenever it changes, members on other relays under session numbers from 2147483648 up.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::json;
use voice_client::{
    Attenuation, AudioInput, AudioOutput, ChannelId, Client, ClientConfig, DistanceModel, Event,
    ListenerPose, Position, TlsTrust, TransmitMode,
};
use voice_core::capture::{CaptureConfig, SuppressionLevel, MAX_BACKGROUND_MARGIN_DB};

const USAGE: &str = "usage: voice-bot --server HOST:PORT --name NAME [--channel ID|NAME] \
[--play IN.wav [--loop] | --tone HZ] [--whisper NAME] [--record OUT.wav] [--duration SECS] \
[--chat TEXT]... [--mode continuous|vad|ptt] [--input-device NAME|default] \
[--output-device NAME|default] [--stats-interval MS] [--no-reconnect] \
[--fingerprint SHA256 | --ca CA.pem [--server-name NAME] | --tofu | --insecure-plaintext] \
[--apm on|off] [--no-hpf] [--no-aec] [--no-ns] [--no-agc] [--no-speech-vad] \
[--ns-level low|moderate|high|very-high] [--echo-delay MS] [--vad-background-db DB] \
[--e2ee-password SECRET | --e2ee-password-env VAR | --e2ee-keys [--e2ee-identity HEX64]] \
[--token JWT | --token-file FILE] \
[--position X,Y,Z | --path X,Y,Z;X,Y,Z;... [--speed UNITS_PER_S]] [--model MODEL:MIN:MAX:ROLLOFF] \
[--kick NAME]... [--ban NAME[:SECS]]... [--reason TEXT] [--mute] [--deafen] \
[--switch-input SECS:SOURCE]... [--switch-output SECS:SINK]...";

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
    /// Waypoints (one: standing still).
    path: Vec<Position>,
    speed: f32,
    model: Option<Attenuation>,
    token: Option<String>,
    /// Users to remove by name: `None` a kick, `Some(secs)` a ban (0: the relay's default).
    remove: Vec<(String, Option<u32>)>,
    reason: String,
    /// Start with the microphone muted.
    muted: bool,
    /// Start with the output silenced.
    deafened: bool,
    /// Audio switches during the run, in the order given.
    switches: Vec<(Duration, Switch)>,
}

/// A change of audio source or sink during the run (`--switch-input`, `--switch-output`).
#[derive(Debug, Clone, PartialEq)]
enum Switch {
    Input(AudioInput),
    Output(AudioOutput),
}

/// `SECS:SPEC` of `--switch-input` / `--switch-output`.
fn parse_switch(s: &str, input: bool) -> Result<(Duration, Switch), String> {
    let bad = || {
        let kinds = if input {
            "tone:HZ, wav:PATH, device:NAME|default or null"
        } else {
            "wav:PATH, device:NAME|default or null"
        };
        format!("{s:?}: expected SECS:SPEC with SPEC one of {kinds}")
    };
    let (secs, spec) = s.split_once(':').ok_or_else(bad)?;
    let secs: f64 = secs.parse().map_err(|_| bad())?;
    if !(0.0..=86_400.0).contains(&secs) {
        return Err(bad());
    }
    let (kind, arg) = spec.split_once(':').unwrap_or((spec, ""));
    let device = |d: &str| (d != "default").then(|| d.to_owned());
    let switch = match (input, kind, arg) {
        (_, "null", "") => {
            if input {
                Switch::Input(AudioInput::Null)
            } else {
                Switch::Output(AudioOutput::Null)
            }
        }
        (_, "device", d) if !d.is_empty() => {
            if input {
                Switch::Input(AudioInput::Device(device(d)))
            } else {
                Switch::Output(AudioOutput::Device(device(d)))
            }
        }
        (_, "wav", p) if !p.is_empty() => {
            if input {
                Switch::Input(AudioInput::Wav {
                    path: p.into(),
                    looped: false,
                })
            } else {
                Switch::Output(AudioOutput::Wav(p.into()))
            }
        }
        (true, "tone", hz) => {
            let hz: f32 = hz.parse().map_err(|_| bad())?;
            if !(1.0..=20_000.0).contains(&hz) {
                return Err(bad());
            }
            Switch::Input(AudioInput::Tone { hz, amplitude: 0.3 })
        }
        _ => return Err(bad()),
    };
    Ok((Duration::from_secs_f64(secs), switch))
}

fn parse_point(s: &str) -> Result<Position, String> {
    let v: Vec<f32> = s
        .split(',')
        .map(|c| c.trim().parse::<f32>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("{s:?} is not X,Y,Z"))?;
    match v[..] {
        [x, y, z] if Position::new(x, y, z).is_finite() => Ok(Position::new(x, y, z)),
        _ => Err(format!("{s:?} is not X,Y,Z")),
    }
}

fn parse_model(s: &str) -> Result<Attenuation, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let bad =
        || format!("--model {s:?}: MODEL:MIN:MAX:ROLLOFF (model none|inverse|linear|exponential)");
    let [m, min, max, r] = parts[..] else {
        return Err(bad());
    };
    let num = |v: &str| v.parse::<f32>().map_err(|_| bad());
    let a = Attenuation {
        model: DistanceModel::from_name(m).ok_or_else(bad)?,
        min_distance: num(min)?,
        max_distance: num(max)?,
        rolloff: num(r)?,
    };
    a.validate().map_err(|e| format!("--model {s:?}: {e}"))?;
    Ok(a)
}

/// Where a walker on the closed polyline `path` is after `t` seconds at `speed`, and the
/// direction it faces (unit vector; −z when standing still).
fn walk(path: &[Position], speed: f32, t: f32) -> (Position, [f32; 3]) {
    let still = [0.0, 0.0, -1.0];
    let Some(&first) = path.first() else {
        return (Position::default(), still);
    };
    let n = path.len();
    let seg = |i: usize| (path[i], path[(i + 1) % n]);
    let total: f32 = (0..n).map(|i| seg(i).0.distance(seg(i).1)).sum();
    if n < 2 || total <= 0.0 || speed <= 0.0 {
        return (first, still);
    }
    let mut d = (speed * t).rem_euclid(total);
    for i in 0..n {
        let (a, b) = seg(i);
        let len = a.distance(b);
        if d <= len && len > 0.0 {
            let f = d / len;
            let p = Position::new(
                a.x + (b.x - a.x) * f,
                a.y + (b.y - a.y) * f,
                a.z + (b.z - a.z) * f,
            );
            let dir = [(b.x - a.x) / len, (b.y - a.y) / len, (b.z - a.z) / len];
            return (p, dir);
        }
        d -= len;
    }
    (first, still)
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
        muted: false,
        deafened: false,
        switches: Vec::new(),
        tls: TlsTrust::System,
        server_name: None,
        insecure_plaintext: false,
        path: Vec::new(),
        speed: 2.0,
        model: None,
        apm: None,
        capture: CaptureConfig::default(),
        e2ee: voice_client::E2eeMode::Off,
        token: None,
        remove: Vec::new(),
        reason: String::new(),
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
            "--kick" => a.remove.push((v("--kick")?, None)),
            "--ban" => {
                let s = v("--ban")?;
                let (name, secs) = match s.rsplit_once(':') {
                    Some((n, secs)) if secs.parse::<u32>().is_ok() => {
                        (n.to_string(), secs.parse().unwrap_or(0))
                    }
                    _ => (s.clone(), 0),
                };
                a.remove.push((name, Some(secs)));
            }
            "--reason" => a.reason = v("--reason")?,
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
            "--mute" => a.muted = true,
            "--switch-input" => {
                let s = v("--switch-input")?;
                a.switches
                    .push(parse_switch(&s, true).map_err(|e| format!("--switch-input {e}"))?);
            }
            "--switch-output" => {
                let s = v("--switch-output")?;
                a.switches
                    .push(parse_switch(&s, false).map_err(|e| format!("--switch-output {e}"))?);
            }
            "--deafen" => a.deafened = true,
            "--fingerprint" => {
                let s = v("--fingerprint")?;
                let fp = s.parse().map_err(|e| format!("--fingerprint {s:?}: {e}"))?;
                a.tls = TlsTrust::Pinned(fp);
            }
            "--ca" => a.tls = TlsTrust::CaFile(v("--ca")?.into()),
            "--server-name" => a.server_name = Some(v("--server-name")?),
            "--tofu" => a.tls = TlsTrust::TrustOnFirstUse,
            "--insecure-plaintext" => a.insecure_plaintext = true,
            "--position" => a.path = vec![parse_point(&v("--position")?)?],
            "--path" => {
                a.path = v("--path")?
                    .split(';')
                    .filter(|p| !p.trim().is_empty())
                    .map(parse_point)
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("--path: {e}"))?;
                if a.path.is_empty() {
                    return Err("--path needs at least one X,Y,Z".into());
                }
            }
            "--speed" => {
                let s = v("--speed")?;
                a.speed = s
                    .parse()
                    .ok()
                    .filter(|v: &f32| v.is_finite() && *v >= 0.0)
                    .ok_or(format!("--speed {s:?} is not units/s"))?;
            }
            "--model" => a.model = Some(parse_model(&v("--model")?)?),
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
            "--vad-background-db" => {
                let s = v("--vad-background-db")?;
                a.capture.vad_config.background_margin_db = s
                    .parse()
                    .ok()
                    .filter(|db| (0.0..=MAX_BACKGROUND_MARGIN_DB).contains(db))
                    .ok_or(format!(
                        "--vad-background-db {s:?}: 0..={MAX_BACKGROUND_MARGIN_DB} dB"
                    ))?;
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

/// Kicks or bans every user named in `pending` that `ev` shows (a listing, a join), once each.
fn remove_seen(
    client: &Client,
    ev: &Event,
    pending: &mut Vec<(String, Option<u32>)>,
    reason: &str,
) {
    let users: Vec<&voice_core::proto::tcp::UserInfo> = match ev {
        Event::ChannelList { channels } => channels.iter().flat_map(|c| &c.users).collect(),
        Event::ChannelJoined { channel } => channel.users.iter().collect(),
        Event::UserJoined { user, .. } => vec![user],
        _ => return,
    };
    pending.retain(|(name, ban)| {
        let hits: Vec<_> = users.iter().filter(|u| &u.name == name).collect();
        for u in &hits {
            match ban {
                None => client.kick(u.session, reason),
                Some(secs) => client.ban(u.session, reason, *secs),
            }
        }
        hits.is_empty()
    });
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
    cfg.channel_attenuation = a.model;
    let pose_at = |t: f32| {
        let (p, forward) = walk(&a.path, a.speed, t);
        let pose = ListenerPose {
            position: p,
            forward,
            up: [0.0, 1.0, 0.0],
        };
        // Walking straight up or down has no usable forward: keep the default facing then.
        let pose = if pose.validate().is_ok() {
            pose
        } else {
            ListenerPose {
                position: p,
                ..ListenerPose::default()
            }
        };
        (p, pose)
    };
    if !a.path.is_empty() {
        let (p, pose) = pose_at(0.0);
        cfg.position = Some(p);
        cfg.listener = pose;
    }
    // A numeric channel is joined straight after the handshake, never passing through the default.
    cfg.engine.initial_channel = a
        .channel
        .as_deref()
        .and_then(|c| c.parse().ok())
        .map(ChannelId);
    let client = Client::start(cfg).map_err(|e| e.to_string())?;
    if a.muted {
        client.set_muted(true);
    }
    if a.deafened {
        client.set_deafened(true);
    }
    if let Some(ch) = a.channel.as_deref().filter(|c| c.parse::<u32>().is_err()) {
        client.join_channel_named(ch);
    }
    if let Some(w) = &a.whisper {
        client.whisper_to_named(w);
    }
    let deadline = start + a.duration;
    let mut next_stats = start + a.stats_interval;
    let step = Duration::from_millis(100);
    let mut next_move = start + step;
    let mut chats = a.chats.clone().into_iter();
    let mut joined = false;
    let mut last_reason = String::new();
    let mut to_remove = a.remove.clone();
    let mut switches = a.switches.clone();
    switches.sort_by_key(|(at, _)| *at);
    let mut switches = switches.into_iter().peekable();
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        while let Some((_, switch)) = switches.next_if(|(at, _)| start + *at <= now) {
            // A failure keeps the current stream; the engine reports it as an AudioNotice.
            let _ = match switch {
                Switch::Input(input) => client.set_input(input),
                Switch::Output(output) => client.set_output(output),
            };
        }
        let walking = a.path.len() > 1;
        let mut wake = if walking {
            deadline.min(next_stats).min(next_move)
        } else {
            deadline.min(next_stats)
        };
        if let Some((at, _)) = switches.peek() {
            wake = wake.min(start + *at);
        }
        let wait = wake.saturating_duration_since(now);
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
                if let Event::Disconnected { reason, .. } = &ev {
                    last_reason.clone_from(reason);
                }
                if !to_remove.is_empty() {
                    remove_seen(&client, &ev, &mut to_remove, &a.reason);
                }
                let v = serde_json::to_value(&ev).unwrap_or_default();
                line(start, "event", v);
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                return Err(format!("engine thread stopped: {last_reason}"))
            }
        }
        if walking && Instant::now() >= next_move {
            next_move += step;
            let (p, pose) = pose_at(start.elapsed().as_secs_f32());
            client.set_position(Some(p));
            client.set_listener(pose);
        }
        if Instant::now() >= next_stats {
            next_stats += a.stats_interval;
            if !to_remove.is_empty() && client.is_connected() {
                client.request_channel_list();
            }
            if !a.path.is_empty() {
                let (p, _) = pose_at(start.elapsed().as_secs_f32());
                line(start, "position", json!([p.x, p.y, p.z]));
            }
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
    let args = match parse() {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("voice-bot: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // A run that ends early (e.g. kicked or banned, or a refused connection without reconnect)
    // is not a command-line mistake: no usage text.
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("voice-bot: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_walker_follows_the_closed_path_at_its_speed() {
        let square = [
            Position::new(0.0, 0.0, 0.0),
            Position::new(10.0, 0.0, 0.0),
            Position::new(10.0, 0.0, 10.0),
        ];
        // 2 units/s: after 2.5 s, half way along the first side, facing +x.
        let (p, dir) = walk(&square, 2.0, 2.5);
        assert_eq!((p, dir), (Position::new(5.0, 0.0, 0.0), [1.0, 0.0, 0.0]));
        // After 7.5 s (15 units): half way along the second side, facing +z.
        let (p, dir) = walk(&square, 2.0, 7.5);
        assert_eq!((p, dir), (Position::new(10.0, 0.0, 5.0), [0.0, 0.0, 1.0]));
        // The loop closes: the perimeter is 20 + 10·√2; a full lap later it is back at the start.
        let lap = (20.0 + 200f32.sqrt()) / 2.0;
        let (p, _) = walk(&square, 2.0, lap + 2.5);
        assert!(p.distance(Position::new(5.0, 0.0, 0.0)) < 1e-3);
        // One waypoint or no speed: standing still.
        assert_eq!(walk(&square[..1], 2.0, 9.0).0, square[0]);
        assert_eq!(walk(&square, 0.0, 9.0).0, square[0]);
    }

    #[test]
    fn positions_and_models_parse_or_fail_clearly() {
        assert_eq!(parse_point("1, 2,-3.5"), Ok(Position::new(1.0, 2.0, -3.5)));
        assert!(parse_point("1,2").is_err());
        assert!(parse_point("1,2,NaN").is_err());
        let m = parse_model("linear:1:40:1").unwrap();
        assert_eq!((m.model, m.max_distance), (DistanceModel::Linear, 40.0));
        assert!(parse_model("linear:5:1:1").is_err());
        assert!(parse_model("cubic:1:40:1").is_err());
    }
}
