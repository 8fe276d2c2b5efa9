//! `voice-apm`: run a recording through the capture processor (or a baseline) for the benchmark.
//!
//! ```text
//! voice-apm --input NEAR.wav --output OUT.wav [--far FAR.wav] [--mode ours|rnnoise|none]
//!           [--no-hpf] [--no-aec] [--no-ns] [--no-agc] [--ns-level low|moderate|high|very-high]
//!           [--delay-ms N] [--vad VAD.txt] [--vad-background-db DB] [--echo-trace TRACE.txt]
//!           [--far-ppm PPM]
//! ```
//!
//! `ours` is [`voice_core::capture::CaptureProcessor`]; `rnnoise` is plain RNNoise on 10 ms frames as
//! Mumble runs it; `none` copies the input. `--vad` writes one character per 20 ms frame, `1` when
//! the frame would be sent in voice-activity mode (ours: the speech detector; none: the energy
//! gate of `voice_core::vad`); `--vad-background-db` sets the detector's margin over background
//! voices (0: off; default `voice_core::capture::BACKGROUND_MARGIN_DB`). `--far-ppm` hands the far end in at the loudspeaker's clock when
//! the microphone's runs `PPM` fast (by the end of microphone frame `i`, the far frames that
//! started before `(i + 1) · 960 · (1 − PPM · 1e-6)`), as a client does; without it, frame `i` of
//! each file goes in together. `--echo-trace` writes, once a second of `ours` with a far end, the echo
//! canceller's delay estimate, ERLE and the clock drift it follows (`seconds delay_ms erle_db
//! drift_ppm`, `-` where it has none). Prints one JSON line: audio seconds and the CPU seconds
//! this thread spent processing.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use voice_core::capture::{
    CaptureConfig, CaptureProcessor, SuppressionLevel, CHUNK_SAMPLES, MAX_BACKGROUND_MARGIN_DB,
};
use voice_core::vad::{FrameDecision, TransmitMode, Transmitter, VadConfig};
use voice_core::{FRAME_SAMPLES, SAMPLE_RATE};
use voice_sim::wav;

const USAGE: &str = "usage: voice-apm --input NEAR.wav --output OUT.wav [--far FAR.wav] \
[--mode ours|rnnoise|none] [--no-hpf] [--no-aec] [--no-ns] [--no-agc] \
[--ns-level low|moderate|high|very-high] [--delay-ms N] [--vad VAD.txt] [--vad-background-db DB] \
[--echo-trace TRACE.txt] [--far-ppm PPM]";

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("voice-apm: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> Result<(), String> {
    let mut input = None;
    let mut output = None;
    let mut far = None;
    let mut vad_out: Option<PathBuf> = None;
    let mut trace_out: Option<PathBuf> = None;
    let mut mode = "ours".to_string();
    let mut far_ppm = 0.0f64;
    let mut cfg = CaptureConfig::default();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--input" => input = Some(PathBuf::from(val()?)),
            "--output" => output = Some(PathBuf::from(val()?)),
            "--far" => far = Some(PathBuf::from(val()?)),
            "--vad" => vad_out = Some(PathBuf::from(val()?)),
            "--echo-trace" => trace_out = Some(PathBuf::from(val()?)),
            "--mode" => mode = val()?,
            "--no-hpf" => cfg.high_pass = false,
            "--no-aec" => cfg.echo_cancel = false,
            "--no-ns" => cfg.noise_suppression = None,
            "--no-agc" => cfg.gain_control = false,
            "--ns-level" => {
                let v = val()?;
                cfg.noise_suppression =
                    Some(SuppressionLevel::parse(&v).ok_or(format!("bad --ns-level {v}"))?);
            }
            "--vad-background-db" => {
                let s = val()?;
                cfg.vad_config.background_margin_db = s
                    .parse()
                    .ok()
                    .filter(|db| (0.0..=MAX_BACKGROUND_MARGIN_DB).contains(db))
                    .ok_or(format!(
                        "--vad-background-db {s:?}: 0..={MAX_BACKGROUND_MARGIN_DB} dB"
                    ))?
            }
            "--far-ppm" => far_ppm = val()?.parse().map_err(|e| format!("--far-ppm: {e}"))?,
            "--delay-ms" => {
                cfg.echo_delay_ms = val()?.parse().map_err(|e| format!("--delay-ms: {e}"))?
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    let input = input.ok_or("--input is required")?;
    let output = output.ok_or("--output is required")?;
    let mut near = wav::read_mono_48k(&input).map_err(|e| e.to_string())?;
    let far = match far {
        Some(p) => Some(wav::read_mono_48k(&p).map_err(|e| e.to_string())?),
        None => None,
    };
    near.resize(near.len().div_ceil(FRAME_SAMPLES) * FRAME_SAMPLES, 0);
    let frames = near.len() / FRAME_SAMPLES;
    let mut vad = String::with_capacity(frames);
    let mut trace = String::new();
    let started = Instant::now();
    let cpu_started = thread_cpu_seconds();
    match mode.as_str() {
        "ours" => {
            if far.is_none() {
                cfg.echo_cancel = false;
            }
            let mut p = CaptureProcessor::new(cfg);
            let silence = [0i16; FRAME_SAMPLES];
            let mut handed = 0usize;
            for (i, frame) in near.chunks_exact_mut(FRAME_SAMPLES).enumerate() {
                if let Some(far) = far.as_ref() {
                    let played = ((i + 1) * FRAME_SAMPLES) as f64 * (1.0 - far_ppm * 1e-6);
                    while ((handed * FRAME_SAMPLES) as f64) < played {
                        let f = far
                            .get(handed * FRAME_SAMPLES..(handed + 1) * FRAME_SAMPLES)
                            .unwrap_or(&silence);
                        p.far_end(f).map_err(|e| e.to_string())?;
                        handed += 1;
                    }
                }
                let speech = p.process(frame).map_err(|e| e.to_string())?;
                vad.push(if speech { '1' } else { '0' });
                let per_second = SAMPLE_RATE as usize / FRAME_SAMPLES;
                if far.is_some() && (i + 1) % per_second == 0 {
                    let st = p.stats();
                    let show = |v: Option<String>| v.unwrap_or_else(|| "-".into());
                    trace.push_str(&format!(
                        "{} {} {} {:.1}\n",
                        (i + 1) / per_second,
                        show(st.echo_delay_ms.map(|d| d.to_string())),
                        show(st.erle_db.map(|e| format!("{e:.1}"))),
                        st.clock_drift_ppm,
                    ));
                }
            }
        }
        "rnnoise" => {
            let mut st = nnnoiseless::DenoiseState::new();
            let mut inp = [0.0f32; CHUNK_SAMPLES];
            let mut out = [0.0f32; CHUNK_SAMPLES];
            for chunk in near.chunks_exact_mut(CHUNK_SAMPLES) {
                for (d, &s) in inp.iter_mut().zip(chunk.iter()) {
                    *d = s as f32;
                }
                st.process_frame(&mut out, &inp);
                for (s, o) in chunk.iter_mut().zip(out.iter()) {
                    *s = o.round().clamp(-32768.0, 32767.0) as i16;
                }
            }
        }
        "none" => {
            let mut t = Transmitter::new(TransmitMode::VoiceActivity, VadConfig::default());
            for frame in near.chunks_exact(FRAME_SAMPLES) {
                let d = t.decide(frame);
                vad.push(if d == FrameDecision::Silent { '0' } else { '1' });
            }
        }
        m => return Err(format!("unknown --mode {m}")),
    }
    // CPU time of this thread where the OS tells it (Linux), else wall time.
    let cpu = match (cpu_started, thread_cpu_seconds()) {
        (Some(a), Some(b)) => b - a,
        _ => started.elapsed().as_secs_f64(),
    };
    wav::write_mono_48k(&output, &near).map_err(|e| e.to_string())?;
    if let Some(p) = trace_out {
        std::fs::write(&p, &trace).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    if let Some(p) = vad_out {
        std::fs::write(&p, &vad).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    let seconds = near.len() as f64 / SAMPLE_RATE as f64;
    println!(
        "{{\"seconds\":{seconds:.3},\"cpu_seconds\":{cpu:.4},\"core_percent\":{:.3}}}",
        100.0 * cpu / seconds
    );
    Ok(())
}

/// User + system CPU seconds of the calling thread, from `/proc/thread-self/stat` (clock ticks
/// of 10 ms; the benchmark runs seconds of audio, so the resolution is enough).
fn thread_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
