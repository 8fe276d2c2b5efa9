//! `voice-sim` end to end: counts equal a trace's ground truth; output sample 0 is sender time 0.
use std::path::PathBuf;
use std::process::Command;

use voice_core::signal::speechlike;
use voice_core::stream::FrameSource;
use voice_core::FRAME_SAMPLES;
use voice_sim::network::{NetworkProfile, CLASS_NAMES, PROFILE_NAMES};
use voice_sim::run::{run, PolicyChoice, SimConfig};
use voice_sim::trace::{Trace, TraceRow};
use voice_sim::wav;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("voice_sim_{name}_{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn stats(path: &PathBuf) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn counts_equal_the_traces_ground_truth() {
    let d = dir("truth");
    let input = d.join("in.wav");
    let samples = speechlike(4.0);
    wav::write_mono_48k(&input, &samples).unwrap();
    let packets = samples.len().div_ceil(FRAME_SAMPLES);
    // Hand-made trace: 40 ms latency; losses (single and a burst of 3), two duplicates,
    // one packet reordered past its neighbour, one packet 300 ms late.
    let lost = [10usize, 50, 51, 52, 120];
    let mut csv = String::from("# known ground truth\nseq,send_ms,arrival_ms\n");
    for s in 0..packets {
        let send = 20 * s;
        if lost.contains(&s) {
            csv += &format!("{s},{send},\n");
            continue;
        }
        let arrival = match s {
            31 => send + 15,  // overtakes 30 (reordering), both in time
            80 => send + 340, // far too late
            _ => send + 40,
        };
        csv += &format!("{s},{send},{arrival}\n");
        if s == 60 || s == 150 {
            csv += &format!("{s},{send},{}\n", arrival + 3);
        }
    }
    let trace = d.join("t.csv");
    std::fs::write(&trace, &csv).unwrap();
    let out = d.join("out.wav");
    let st = d.join("stats.json");
    let status = Command::new(env!("CARGO_BIN_EXE_voice-sim"))
        .args(["--input", input.to_str().unwrap()])
        .args(["--output", out.to_str().unwrap()])
        .args(["--trace", trace.to_str().unwrap()])
        .args(["--policy", "fixed", "--stats", st.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let j = stats(&st);
    let truth = Trace::parse(&csv).unwrap().ground_truth(packets);
    assert_eq!(j["packets_sent"], truth.sent);
    assert_eq!(j["packets_lost"], truth.lost);
    assert_eq!(j["packets_duplicate"], truth.duplicates);
    assert_eq!(j["packets_received"], truth.received);
    assert_eq!(j["packets_late"], 1);
    // Single losses (10, 120), the burst's last (52) and the late packet's slot (80, followed by
    // 81 in the buffer) are FEC-recovered; 50 and 51 have nothing after them held: concealed.
    assert_eq!(j["frames_fec_recovered"], 4);
    assert_eq!(j["frames_concealed"], 2);
    assert_eq!(j["concealment_events"], 1);
    assert_eq!(j["frames_played"], packets as u64);
    for key in [
        "packets_sent",
        "packets_received",
        "packets_lost",
        "packets_late",
        "packets_duplicate",
        "frames_played",
        "frames_concealed",
        "frames_fec_recovered",
        "concealment_events",
        "mean_buffer_delay_ms",
        "p95_buffer_delay_ms",
        "mean_end_to_end_delay_ms",
        "max_buffer_depth",
    ] {
        assert!(j.get(key).is_some(), "missing key {key}");
    }
    // Output: 48 kHz mono, silent until playout starts (40 ms latency + watermark), then audio.
    let heard = wav::read_mono_48k(&out).unwrap();
    assert!(heard.len() >= samples.len());
    let e2e = j["mean_end_to_end_delay_ms"].as_f64().unwrap();
    assert!((60.0..=80.0).contains(&e2e), "end-to-end {e2e}");
    let silent = (e2e as usize - 5) * 48;
    assert!(heard[..silent].iter().all(|&s| s == 0));
    assert!(heard[silent + 960 * 4..].iter().any(|&s| s != 0));
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn output_is_the_input_delayed_on_a_clean_path() {
    let samples = speechlike(3.0);
    let packets = samples.len().div_ceil(FRAME_SAMPLES);
    let trace = NetworkProfile::builtin("clean")
        .unwrap()
        .generate(packets, 1);
    let out = run(&samples, &trace, &SimConfig::default()).unwrap();
    assert_eq!(out.stats.stream.frames_concealed, 0);
    assert_eq!(out.stats.stream.packets_lost, 0);
    // Find the lag with the best correlation: it must equal the end-to-end delay.
    let e2e = out.stats.stream.mean_end_to_end_delay_ms;
    let best = (0..200)
        .map(|ms| {
            let lag = ms * 48;
            let c: f64 = samples
                .iter()
                .zip(&out.audio[lag..])
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum();
            (ms, c)
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap()
        .0 as f64;
    // Opus adds its own 6.5 ms algorithmic delay on top of the network + buffer delay.
    assert!((best - e2e).abs() <= 8.0, "lag {best} vs e2e {e2e}");
}

#[test]
fn every_builtin_profile_runs_and_is_deterministic() {
    let samples = speechlike(2.0);
    let packets = samples.len().div_ceil(FRAME_SAMPLES);
    for name in PROFILE_NAMES {
        let trace = NetworkProfile::builtin(name).unwrap().generate(packets, 9);
        let a = run(&samples, &trace, &SimConfig::default()).unwrap();
        let b = run(&samples, &trace, &SimConfig::default()).unwrap();
        assert_eq!(a.audio, b.audio, "{name}");
        assert_eq!(a.stats, b.stats, "{name}");
        let truth = trace.ground_truth(packets);
        assert_eq!(a.stats.stream.packets_lost, truth.lost, "{name}");
        assert_eq!(a.stats.stream.packets_duplicate, truth.duplicates, "{name}");
    }
}

#[test]
fn bad_invocations_fail_with_a_clear_message() {
    let d = dir("bad");
    let input = d.join("in.wav");
    wav::write_mono_48k(&input, &speechlike(1.0)).unwrap();
    let short = d.join("short.csv");
    std::fs::write(&short, "seq,send_ms,arrival_ms\n0,0,40\n1,20,60\n").unwrap();
    let run_sim = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_voice-sim"))
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    let out = d.join("o.wav");
    let (code, err) = run_sim(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--trace",
        short.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("trace covers 2 packets"), "{err}");
    let (code, err) = run_sim(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--profile",
        "nope",
        "--seed",
        "1",
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown profile"), "{err}");
    let (code, _) = run_sim(&["--input", input.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn policy_flag_selects_fixed_or_adaptive_and_adaptive_is_the_default() {
    let d = dir("policy");
    let input = d.join("in.wav");
    wav::write_mono_48k(&input, &speechlike(2.0)).unwrap();
    let out = d.join("out.wav");
    for (args, want) in [
        (&["--policy", "fixed"][..], "fixed"),
        (&["--policy", "adaptive"][..], "adaptive"),
        (&[][..], "adaptive"),
    ] {
        let st = d.join("stats.json");
        let status = Command::new(env!("CARGO_BIN_EXE_voice-sim"))
            .args(["--input", input.to_str().unwrap()])
            .args(["--output", out.to_str().unwrap()])
            .args(["--profile", "jitter20", "--seed", "2"])
            .args(args)
            .args(["--stats", st.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success(), "{args:?}");
        let j = stats(&st);
        assert_eq!(j["policy"], want, "{args:?}");
        for key in [
            "samples_inserted",
            "samples_removed",
            "tsm_percent",
            "isolated_losses",
            "isolated_losses_fec_recovered",
        ] {
            assert!(j.get(key).is_some(), "missing key {key}");
        }
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_voice-sim"))
        .args([
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ])
        .args(["--profile", "clean", "--seed", "1", "--policy", "nope"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("adaptive, fixed"));
    std::fs::remove_dir_all(&d).ok();
}

/// A trace with a constant 41 ms latency: every phase plays the same frames, shifted.
fn constant_latency(packets: usize) -> Trace {
    Trace {
        rows: (0..packets as u32)
            .map(|seq| TraceRow {
                seq,
                send_ms: f64::from(seq) * 20.0,
                arrival_ms: Some(f64::from(seq) * 20.0 + 41.0),
            })
            .collect(),
        comments: vec![],
    }
}

#[test]
fn tick_phase_shifts_the_ticks_and_keeps_sample_0_at_sender_time_0() {
    let samples = speechlike(2.0);
    let packets = samples.len().div_ceil(FRAME_SAMPLES);
    let trace = constant_latency(packets);
    let mut played: Vec<(f64, Vec<i16>)> = Vec::new();
    for phase in [0.0, 5.0, 10.0, 15.0] {
        let cfg = SimConfig {
            policy: PolicyChoice::parse("fixed").unwrap(),
            tick_phase_ms: phase,
            ..SimConfig::default()
        };
        let out = run(&samples, &trace, &cfg).unwrap();
        assert_eq!(out.stats.stream.frames_concealed, 0, "phase {phase}");
        let first = out
            .sources
            .iter()
            .position(|s| *s != FrameSource::Silence)
            .unwrap();
        // Tick k is at phase + 20 k ms of the sender's clock, and output sample 0 is sender time 0:
        // everything before the first played tick is silence.
        let start_ms = phase + 20.0 * first as f64;
        let start = (start_ms * 48.0) as usize;
        assert!(start_ms >= 41.0, "phase {phase}: played at {start_ms} ms");
        assert!(out.audio[..start].iter().all(|&s| s == 0), "phase {phase}");
        assert!(out.audio[start..start + 960].iter().any(|&s| s != 0));
        // Packet 0 (sent at 0) is heard at the first played tick: the stats say so too.
        let e2e = out.stats.stream.mean_end_to_end_delay_ms;
        assert!(
            (e2e - start_ms).abs() < 1.0,
            "phase {phase}: {e2e} vs {start_ms}"
        );
        played.push((start_ms, out.audio[start..].to_vec()));
    }
    // Same frames from the first played tick on, whatever the phase; the start moves with it.
    let n = played
        .iter()
        .map(|(_, a)| a.len())
        .min()
        .unwrap()
        .min(samples.len());
    for (start_ms, audio) in &played[1..] {
        assert_eq!(&audio[..n], &played[0].1[..n], "start {start_ms}");
    }
    let starts: Vec<f64> = played.iter().map(|(s, _)| *s).collect();
    assert!(
        starts.windows(2).all(|w| w[0] != w[1]),
        "phases must move the start: {starts:?}"
    );
    // Out of range is a clear error.
    let bad = SimConfig {
        tick_phase_ms: 20.0,
        ..SimConfig::default()
    };
    let e = run(&samples, &trace, &bad).unwrap_err();
    assert!(e.to_string().contains("tick phase"), "{e}");
}

#[test]
fn tick_phase_flag_delays_what_is_heard_on_a_clean_path() {
    let d = dir("phase");
    let input = d.join("in.wav");
    let samples = speechlike(2.0);
    wav::write_mono_48k(&input, &samples).unwrap();
    let trace = d.join("t.csv");
    constant_latency(samples.len().div_ceil(FRAME_SAMPLES))
        .write(&trace)
        .unwrap();
    let heard = |phase: &str| {
        let out = d.join(format!("out{phase}.wav"));
        let status = Command::new(env!("CARGO_BIN_EXE_voice-sim"))
            .args(["--input", input.to_str().unwrap()])
            .args(["--output", out.to_str().unwrap()])
            .args(["--trace", trace.to_str().unwrap()])
            .args(["--policy", "fixed", "--tick-phase", phase])
            .args(["--stats", d.join("s.json").to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success(), "phase {phase}");
        let a = wav::read_mono_48k(&out).unwrap();
        a.iter().position(|&s| s != 0).unwrap()
    };
    // The same frames are played on a grid shifted by the phase: what is heard first moves by
    // the phase modulo one 20 ms tick (with a 2-packet start on this 41 ms path: 80 → 65 ms).
    let p0 = heard("0") as i64;
    let p5 = heard("5") as i64;
    let p15 = heard("15") as i64;
    assert_eq!((p5 - p0).rem_euclid(960), 5 * 48, "{p0} {p5}");
    assert_eq!((p15 - p0).rem_euclid(960), 15 * 48, "{p0} {p15}");
    let bad = Command::new(env!("CARGO_BIN_EXE_voice-sim"))
        .args(["--input", input.to_str().unwrap()])
        .args(["--output", d.join("x.wav").to_str().unwrap()])
        .args(["--trace", trace.to_str().unwrap(), "--tick-phase", "25"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--tick-phase"));
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn write_packets_saves_every_opus_payload_by_index() {
    let d = dir("packets");
    let input = d.join("in.wav");
    let samples = speechlike(1.0);
    wav::write_mono_48k(&input, &samples).unwrap();
    let packets = samples.len().div_ceil(FRAME_SAMPLES);
    let file = d.join("p.bin");
    let status = Command::new(env!("CARGO_BIN_EXE_voice-sim"))
        .args(["--input", input.to_str().unwrap()])
        .args(["--output", d.join("o.wav").to_str().unwrap()])
        .args(["--profile", "bursty", "--seed", "4"])
        .args(["--write-packets", file.to_str().unwrap()])
        .args(["--stats", d.join("s.json").to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = std::fs::read(&file).unwrap();
    let mut at = 0;
    let mut decoder = voice_core::codec::Decoder::new().unwrap();
    let mut pcm = [0i16; FRAME_SAMPLES];
    for k in 0..packets {
        let index = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let len = u16::from_le_bytes(bytes[at + 4..at + 6].try_into().unwrap()) as usize;
        assert_eq!(index as usize, k);
        assert!(len > 0);
        let payload = &bytes[at + 6..at + 6 + len];
        // Each is a complete Opus packet of one 20 ms frame.
        decoder.decode(payload, &mut pcm).unwrap();
        at += 6 + len;
    }
    assert_eq!(at, bytes.len());
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn path_classes_draw_their_parameters_per_seed() {
    for name in CLASS_NAMES {
        let a = NetworkProfile::for_seed(name, 1).unwrap();
        let b = NetworkProfile::for_seed(name, 2).unwrap();
        assert_ne!(a, b, "{name}: seeds must differ in parameters");
        assert_eq!(a, NetworkProfile::for_seed(name, 1).unwrap(), "{name}");
        // The trace records the drawn parameters.
        let t = a.generate(100, 1);
        assert!(
            t.comments.iter().any(|c| c.contains("latency_ms=")),
            "{name}"
        );
    }
    // The fixed profiles do not depend on the seed.
    for name in ["jitter20", "pareto", "ge5", "ge10", "drift", "drift-slow"] {
        assert_eq!(
            NetworkProfile::for_seed(name, 1).unwrap(),
            NetworkProfile::builtin(name).unwrap()
        );
    }
}

/// One class trace per seed: loss rate, mean loss-burst length, delays (ms) and duplicates per
/// thousand packets.
struct Figures {
    loss: f64,
    burst: f64,
    delays: Vec<f64>,
    dups_per_mille: u64,
}

fn class_figures(name: &str, seeds: u64) -> Vec<Figures> {
    const N: usize = 3000;
    (0..seeds)
        .map(|seed| {
            let t = NetworkProfile::for_seed(name, seed)
                .unwrap()
                .generate(N, seed);
            let truth = t.ground_truth(N);
            let (mut lost, mut bursts, mut prev_lost) = (0usize, 0usize, false);
            let mut delays = Vec::new();
            let mut seen = vec![false; N];
            for r in &t.rows {
                if std::mem::replace(&mut seen[r.seq as usize], true) {
                    continue;
                }
                match r.arrival_ms {
                    None => {
                        lost += 1;
                        bursts += usize::from(!prev_lost);
                        prev_lost = true;
                    }
                    Some(a) => {
                        delays.push(a - r.send_ms);
                        prev_lost = false;
                    }
                }
            }
            Figures {
                loss: lost as f64 / N as f64,
                burst: if bursts == 0 {
                    0.0
                } else {
                    lost as f64 / bursts as f64
                },
                delays,
                dups_per_mille: truth.duplicates * 1000 / N as u64,
            }
        })
        .collect()
}

fn quantile(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q) as usize]
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = v.collect();
    v.iter().sum::<f64>() / v.len() as f64
}

#[test]
fn path_classes_match_their_descriptions() {
    let spread = |f: &Figures, lo: f64, hi: f64| quantile(&f.delays, hi) - quantile(&f.delays, lo);
    // clean: ~1 ms jitter, no loss.
    for f in class_figures("clean", 6) {
        assert_eq!((f.loss, f.dups_per_mille), (0.0, 0));
        assert!(spread(&f, 0.5, 0.99) < 5.0);
    }
    // wifi: spikes of roughly 100–200 ms above the median, little loss.
    let wifi = class_figures("wifi", 6);
    for f in &wifi {
        assert!(f.loss < 0.015, "wifi loss {}", f.loss);
        let spike = spread(f, 0.5, 0.999);
        assert!((60.0..=220.0).contains(&spike), "wifi spike {spike}");
    }
    // lte: heavy tail and bursty loss of a few percent.
    let lte = class_figures("lte", 6);
    let loss = mean(lte.iter().map(|f| f.loss));
    assert!((0.015..=0.04).contains(&loss), "lte loss {loss}");
    assert!(mean(lte.iter().map(|f| f.burst)) > 1.4, "lte bursts");
    for f in &lte {
        // Heavy-tailed: the far tail is much longer than the body.
        assert!(
            spread(f, 0.5, 0.999) > 4.0 * spread(f, 0.5, 0.9),
            "lte tail"
        );
    }
    // bursty: ~8 % in bursts of a few packets.
    let bursty = class_figures("bursty", 6);
    let loss = mean(bursty.iter().map(|f| f.loss));
    assert!((0.06..=0.10).contains(&loss), "bursty loss {loss}");
    let burst = mean(bursty.iter().map(|f| f.burst));
    assert!((2.0..=4.0).contains(&burst), "bursty burst {burst}");
    // reorder: tens of ms of uniform extra delay, ~1 % loss.
    for f in class_figures("reorder", 6) {
        assert!((0.002..=0.025).contains(&f.loss), "reorder loss {}", f.loss);
        let s = spread(&f, 0.01, 0.99);
        assert!((15.0..=65.0).contains(&s), "reorder spread {s}");
    }
    // dup: a few percent duplicates, no loss.
    for f in class_figures("dup", 6) {
        assert_eq!(f.loss, 0.0);
        assert!(
            (15..=55).contains(&f.dups_per_mille),
            "dup {}",
            f.dups_per_mille
        );
    }
}

/// The keys `voice-sim --stats` writes and the JSON type of each: the quality bench
/// (`benches/quality/quality.py`), README and outside scripts read them by name.
const STATS_KEYS: [(&str, &str); 30] = [
    ("bitrate", "integer"),
    ("concealment_events", "integer"),
    ("concealment_percent", "number"),
    ("frames_concealed", "integer"),
    ("frames_dred_recovered", "integer"),
    ("frames_fec_recovered", "integer"),
    ("frames_played", "integer"),
    ("frames_skipped", "integer"),
    ("frames_stalled", "integer"),
    ("interruptions", "integer"),
    ("isolated_losses", "integer"),
    ("isolated_losses_fec_recovered", "integer"),
    ("jitter_ms", "number"),
    ("max_buffer_depth", "integer"),
    ("mean_buffer_delay_ms", "number"),
    ("mean_end_to_end_delay_ms", "number"),
    ("output_frames", "integer"),
    ("p95_buffer_delay_ms", "number"),
    ("packets_duplicate", "integer"),
    ("packets_late", "integer"),
    ("packets_lost", "integer"),
    ("packets_overflow_dropped", "integer"),
    ("packets_received", "integer"),
    ("packets_sent", "integer"),
    ("payload_bitrate", "number"),
    ("policy", "string"),
    ("samples_inserted", "integer"),
    ("samples_removed", "integer"),
    ("target_delay_ms", "number"),
    ("tsm_percent", "number"),
];

#[test]
fn stats_file_has_exactly_the_documented_keys_and_types() {
    let d = dir("keys");
    let input = d.join("in.wav");
    wav::write_mono_48k(&input, &speechlike(1.0)).unwrap();
    let st = d.join("stats.json");
    let status = Command::new(env!("CARGO_BIN_EXE_voice-sim"))
        .args(["--input", input.to_str().unwrap()])
        .args(["--output", d.join("out.wav").to_str().unwrap()])
        .args(["--profile", "wifi", "--seed", "3"])
        .args(["--stats", st.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let j = stats(&st);
    let mut keys: Vec<(&str, &str)> = j
        .as_object()
        .expect("a JSON object")
        .iter()
        .map(|(k, v)| {
            let kind = match v {
                serde_json::Value::Number(n) if n.is_u64() => "integer",
                serde_json::Value::Number(_) => "number",
                serde_json::Value::String(_) => "string",
                _ => "other",
            };
            (k.as_str(), kind)
        })
        .collect();
    keys.sort();
    assert_eq!(keys, STATS_KEYS);
    std::fs::remove_dir_all(&d).ok();
}
