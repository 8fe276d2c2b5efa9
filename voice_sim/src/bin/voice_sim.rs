//! `voice-sim`: run a recording through a simulated network and the real receive path.
//!
//! ```text
//! voice-sim --input IN.wav --output OUT.wav (--trace TRACE.csv | --profile NAME --seed N)
//!           [--policy adaptive|fixed] [--no-fec] [--no-dred] [--bitrate BPS] [--tick-phase MS]
//!           [--stats STATS.json] [--write-trace T.csv] [--write-packets P.bin]
//!           [--force-rate PERCENT]
//! ```
//!
//! `--force-rate` plays the received audio PERCENT % faster (or slower, when negative) with the
//! receiver's own time-scale modification ([`voice_core::tsm::change_rate`]) before writing it:
//! a measurement of how audible time-scaling is (`benches/quality.sh --tsm`).
//!
//! `--write-packets` saves the Opus payload of every packet, by packet index: for each packet
//! a little-endian `u32` index, a little-endian `u16` length, then the payload bytes.

use std::path::PathBuf;
use std::process::ExitCode;

use voice_core::FRAME_SAMPLES;
use voice_sim::network::{NetworkProfile, PROFILE_NAMES};
use voice_sim::run::SimOutput;
use voice_sim::run::{run, PolicyChoice, SimConfig};
use voice_sim::trace::Trace;
use voice_sim::wav;

const USAGE: &str = "usage: voice-sim --input IN.wav --output OUT.wav \
(--trace TRACE.csv | --profile NAME --seed N) [--policy adaptive|fixed] [--no-fec] [--no-dred] [--bitrate BPS] \
[--tick-phase MS] [--stats STATS.json] [--write-trace TRACE.csv] [--write-packets PACKETS.bin] \
[--force-rate PERCENT]";

#[derive(Default)]
struct Args {
    input: Option<PathBuf>,
    output: Option<PathBuf>,
    trace: Option<PathBuf>,
    profile: Option<String>,
    seed: Option<u64>,
    policy: Option<String>,
    no_fec: bool,
    no_dred: bool,
    bitrate: Option<u32>,
    stats: Option<PathBuf>,
    write_trace: Option<PathBuf>,
    write_packets: Option<PathBuf>,
    tick_phase_ms: Option<f64>,
    force_rate: Option<f64>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            "--input" => a.input = Some(value("--input")?.into()),
            "--output" => a.output = Some(value("--output")?.into()),
            "--trace" => a.trace = Some(value("--trace")?.into()),
            "--profile" => a.profile = Some(value("--profile")?),
            "--seed" => {
                let v = value("--seed")?;
                a.seed = Some(
                    v.parse()
                        .map_err(|_| format!("--seed {v:?} is not a number"))?,
                );
            }
            "--policy" => a.policy = Some(value("--policy")?),
            "--no-fec" => a.no_fec = true,
            "--no-dred" => a.no_dred = true,
            "--bitrate" => {
                let v = value("--bitrate")?;
                let b: u32 = v
                    .parse()
                    .map_err(|_| format!("--bitrate {v:?} is not a number"))?;
                if !(6_000..=510_000).contains(&b) {
                    return Err(format!("--bitrate {b} is outside 6000..=510000"));
                }
                a.bitrate = Some(b);
            }
            "--stats" => a.stats = Some(value("--stats")?.into()),
            "--write-trace" => a.write_trace = Some(value("--write-trace")?.into()),
            "--write-packets" => a.write_packets = Some(value("--write-packets")?.into()),
            "--tick-phase" => {
                let v = value("--tick-phase")?;
                let ms: f64 = v
                    .parse()
                    .ok()
                    .filter(|m: &f64| (0.0..20.0).contains(m))
                    .ok_or_else(|| format!("--tick-phase {v:?} is not a time in 0 <= ms < 20"))?;
                a.tick_phase_ms = Some(ms);
            }
            "--force-rate" => {
                let v = value("--force-rate")?;
                let pct: f64 = v
                    .parse()
                    .ok()
                    .filter(|p: &f64| (-20.0..=20.0).contains(p))
                    .ok_or_else(|| format!("--force-rate {v:?} is not a percentage in -20..=20"))?;
                a.force_rate = Some(pct);
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

fn main_inner() -> Result<(), String> {
    let a = parse_args()?;
    let input = a.input.ok_or("--input is required")?;
    let output = a.output.ok_or("--output is required")?;
    let samples = wav::read_mono_48k(&input).map_err(|e| e.to_string())?;
    let packets = samples.len().div_ceil(FRAME_SAMPLES);
    let trace = match (&a.trace, &a.profile) {
        (Some(t), None) => {
            if a.seed.is_some() {
                return Err("--seed goes with --profile, not --trace".into());
            }
            Trace::read(t).map_err(|e| e.to_string())?
        }
        (None, Some(p)) => {
            let seed = a.seed.ok_or("--profile needs --seed N")?;
            NetworkProfile::for_seed(p, seed)
                .map_err(|e| e.to_string())?
                .generate(packets, seed)
        }
        (Some(_), Some(_)) => return Err("give either --trace or --profile, not both".into()),
        (None, None) => {
            return Err(format!(
                "give --trace TRACE.csv or --profile NAME --seed N (profiles: {})",
                PROFILE_NAMES.join(", ")
            ))
        }
    };
    if let Some(t) = &a.write_trace {
        trace.write(t).map_err(|e| e.to_string())?;
    }
    let policy = match a.policy.as_deref() {
        None => SimConfig::default().policy,
        Some(p) => PolicyChoice::parse(p).ok_or(format!(
            "unknown --policy {p:?} (known: {})",
            PolicyChoice::NAMES.join(", ")
        ))?,
    };
    let cfg = SimConfig {
        policy,
        fec: !a.no_fec,
        dred: !a.no_dred,
        bitrate: a.bitrate,
        tick_phase_ms: a.tick_phase_ms.unwrap_or(0.0),
        ..SimConfig::default()
    };
    let out = run(&samples, &trace, &cfg).map_err(|e| e.to_string())?;
    match a.force_rate {
        Some(pct) => wav::write_mono_48k(&output, &voice_core::tsm::change_rate(&out.audio, pct)),
        None => wav::write_mono_48k(&output, &out.audio),
    }
    .map_err(|e| e.to_string())?;
    if let Some(p) = &a.write_packets {
        std::fs::write(p, packet_file(&out)).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    let json = serde_json::to_string_pretty(&out.stats).map_err(|e| e.to_string())?;
    match &a.stats {
        Some(p) => std::fs::write(p, json + "\n").map_err(|e| format!("{}: {e}", p.display()))?,
        None => eprintln!("{json}"),
    }
    Ok(())
}

/// The `--write-packets` file: per packet, `u32` LE index, `u16` LE length, payload.
fn packet_file(out: &SimOutput) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(out.payloads.iter().map(|p| p.len() + 6).sum());
    for (k, p) in out.payloads.iter().enumerate() {
        bytes.extend_from_slice(&(k as u32).to_le_bytes());
        bytes.extend_from_slice(&(p.len() as u16).to_le_bytes());
        bytes.extend_from_slice(p);
    }
    bytes
}

fn main() -> ExitCode {
    match main_inner() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("voice-sim: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
