//! Command-line flags: they pre-fill (and override) the remembered settings so that scripts can run
//! the demo without clicking.

use std::path::PathBuf;

use voice_client::ChannelId;

use crate::app::JoinTarget;
use crate::global_keys::Binding;
use crate::settings::{InputChoice, Mode, OutputChoice, Settings};

/// Usage text for `--help`.
pub const USAGE: &str = "\
usage: gui_demo [--server ADDR] [--name NAME] [--connect] [--overlay]
                [--input default|DEVICE_NAME|tone[:HZ]|null|wav:PATH]
                [--output default|DEVICE_NAME|null] [--mode ptt|vad|continuous]
                [--channel NAME|ID] [--size WxH] [--talk-key KEY] [--version]
                [--fingerprint SHA256 | --insecure-plaintext] [--token JWT | --token-file FILE]

  --server ADDR     relay address (IP:PORT or HOST:PORT); remembered
  --name NAME       display name; remembered
  --connect         connect at start instead of showing the connect screen
  --overlay         open the diagnostics overlay (F3) at start
  --input SRC       capture source; a missing device falls back to silence with a notice
  --output SINK     playback sink; a missing device falls back to discarding with a notice
  --mode MODE       push-to-talk (key V by default), voice activity, or continuous
  --channel CHAN    join this channel (its name as shown, or its numeric id) after connecting
  --size WxH        initial window size in points (default 1200x760)
  --talk-key KEY    push-to-talk key (V, F13, ControlLeft, …) or mouse button (Mouse2 middle,
                    Mouse8 back, Mouse9 forward); remembered
  --version         print the version and exit
  --fingerprint FP  pin the relay's TLS certificate (the `fingerprint sha256:…` line the relay
                    prints); without it the first certificate seen is trusted and shown in the
                    chat log, and a different one later is refused
  --insecure-plaintext  development only: no TLS (a relay started with the same flag)
  --token JWT       the access token the relay requires (`relay token --name NAME` mints one
                    for a development relay); not needed for a relay started with --open
  --token-file FILE the access token, read from FILE (surrounding white space trimmed)

ALSA's own error lines on stderr are silenced; set GUI_DEMO_ALSA_ERRORS=1 to see them.";

/// Parsed flags. `None` means "keep the remembered value".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    /// `--server`.
    pub server: Option<String>,
    /// `--name`.
    pub name: Option<String>,
    /// `--connect`.
    pub connect: bool,
    /// `--overlay`.
    pub overlay: bool,
    /// `--input`.
    pub input: Option<InputChoice>,
    /// `--output`.
    pub output: Option<OutputChoice>,
    /// `--mode`.
    pub mode: Option<Mode>,
    /// `--channel`: a name, or a number taken as an id.
    pub channel: Option<JoinTarget>,
    /// `--version`.
    pub version: bool,
    /// `--size`.
    pub size: Option<[f32; 2]>,
    /// `--fingerprint`.
    pub fingerprint: Option<voice_client::Fingerprint>,
    /// `--insecure-plaintext`.
    pub insecure_plaintext: bool,
    /// `--token` or `--token-file` (its `Debug` shows only its length).
    pub token: Option<voice_client::AccessToken>,
    /// `--talk-key`.
    pub talk_key: Option<Binding>,
}

impl Options {
    /// Parses flags (without the program name). `Ok(None)` means `--help` was asked for.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
        let mut o = Options::default();
        let mut it = args.into_iter();
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "-h" | "--help" => return Ok(None),
                "--server" => o.server = Some(value()?),
                "--name" => o.name = Some(value()?),
                "--connect" => o.connect = true,
                "--fingerprint" => {
                    let v = value()?;
                    o.fingerprint =
                        Some(v.parse().map_err(|e| format!("--fingerprint {v:?}: {e}"))?);
                }
                "--insecure-plaintext" => o.insecure_plaintext = true,
                "--token" => o.token = Some(voice_client::AccessToken(value()?)),
                "--token-file" => {
                    let path = value()?;
                    let t = std::fs::read_to_string(&path)
                        .map_err(|e| format!("--token-file {path}: {e}"))?;
                    o.token = Some(voice_client::AccessToken(t.trim().to_owned()));
                }
                "--overlay" => o.overlay = true,
                "--input" => o.input = Some(parse_input(&value()?)?),
                "--output" => o.output = Some(parse_output(&value()?)),
                "--mode" => {
                    o.mode = Some(match value()?.as_str() {
                        "ptt" | "push-to-talk" => Mode::PushToTalk,
                        "vad" | "voice-activity" => Mode::VoiceActivity,
                        "continuous" => Mode::Continuous,
                        m => return Err(format!("--mode {m:?}: expected ptt, vad or continuous")),
                    });
                }
                "--channel" => {
                    let v = value()?;
                    let v = v.trim().trim_start_matches('#').to_string();
                    if v.is_empty() {
                        return Err("--channel needs a name or an id".into());
                    }
                    o.channel = Some(match v.parse::<u32>() {
                        Ok(id) => JoinTarget::Id(ChannelId(id)),
                        Err(_) => JoinTarget::Name(v),
                    });
                }
                "-V" | "--version" => o.version = true,
                "--talk-key" => {
                    let v = value()?;
                    o.talk_key = Some(Binding::parse(&v).ok_or_else(|| {
                        format!("--talk-key {v:?}: not a key name, Mouse2, Mouse8 or Mouse9")
                    })?);
                }
                "--size" => {
                    let v = value()?;
                    let (w, h) = v
                        .split_once('x')
                        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
                        .ok_or_else(|| format!("--size {v:?}: expected WxH"))?;
                    o.size = Some([w, h]);
                }
                other => return Err(format!("unknown flag {other:?}")),
            }
        }
        Ok(Some(o))
    }

    /// Applies the flags over remembered settings.
    pub fn apply(&self, s: &mut Settings) {
        if let Some(v) = &self.server {
            s.server.clone_from(v);
        }
        if let Some(v) = &self.name {
            s.name.clone_from(v);
        }
        if let Some(v) = &self.input {
            s.input = v.clone();
        }
        if let Some(v) = &self.output {
            s.output = v.clone();
        }
        if let Some(v) = self.mode {
            s.mode = v;
        }
        if self.overlay {
            s.overlay_open = true;
        }
        if let Some(b) = self.talk_key {
            s.ptt_key = b.name();
        }
    }
}

fn parse_input(v: &str) -> Result<InputChoice, String> {
    Ok(match v {
        "default" => InputChoice::Device(None),
        "null" => InputChoice::Null,
        "tone" => InputChoice::Tone(440.0),
        _ => {
            if let Some(hz) = v.strip_prefix("tone:") {
                InputChoice::Tone(
                    hz.parse()
                        .map_err(|_| format!("--input {v:?}: tone needs Hz"))?,
                )
            } else if let Some(path) = v.strip_prefix("wav:") {
                InputChoice::Wav(PathBuf::from(path))
            } else {
                InputChoice::Device(Some(v.to_string()))
            }
        }
    })
}

fn parse_output(v: &str) -> OutputChoice {
    match v {
        "default" => OutputChoice::Device(None),
        "null" => OutputChoice::Null,
        _ => OutputChoice::Device(Some(v.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Options>, String> {
        Options::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn flags() {
        let o = parse(&[
            "--server",
            "127.0.0.1:1",
            "--name",
            "a",
            "--connect",
            "--overlay",
            "--input",
            "tone:300",
            "--output",
            "null",
            "--mode",
            "vad",
            "--size",
            "800x600",
            "--talk-key",
            "Mouse8",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(o.input, Some(InputChoice::Tone(300.0)));
        assert_eq!(o.output, Some(OutputChoice::Null));
        assert_eq!(o.mode, Some(Mode::VoiceActivity));
        assert_eq!(o.size, Some([800.0, 600.0]));
        assert!(o.connect && o.overlay);
        let mut s = Settings::default();
        o.apply(&mut s);
        assert_eq!((s.server.as_str(), s.name.as_str()), ("127.0.0.1:1", "a"));
        assert!(s.overlay_open);
        assert_eq!(s.ptt(), Binding::Mouse(8));
        assert!(parse(&["--talk-key", "Mouse1"]).is_err());
        assert_eq!(
            parse(&["--talk-key", "F13"]).unwrap().unwrap().talk_key,
            Some(Binding::Key(egui::Key::F13))
        );
        assert_eq!(parse(&["--help"]), Ok(None));
        assert!(parse(&["--version"]).unwrap().unwrap().version);
        assert_eq!(
            parse(&["--channel", "Team A"]).unwrap().unwrap().channel,
            Some(JoinTarget::Name("Team A".into()))
        );
        assert_eq!(
            parse(&["--channel", "3"]).unwrap().unwrap().channel,
            Some(JoinTarget::Id(ChannelId(3)))
        );
        assert!(parse(&["--bogus"]).is_err());
        assert!(parse(&["--name"]).is_err());
        assert_eq!(
            parse(&["--input", "wav:x.wav"]).unwrap().unwrap().input,
            Some(InputChoice::Wav("x.wav".into()))
        );
    }
}
