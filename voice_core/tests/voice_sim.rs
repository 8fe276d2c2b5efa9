//! `voice-sim` end to end: counts equal a trace's ground truth; output sample 0 is sender time 0.
use std::path::PathBuf;
use std::process::Command;

use voice_core::sim::network::{NetworkProfile, PROFILE_NAMES};
use voice_core::sim::run::{run, SimConfig};
use voice_core::sim::signal::speechlike;
use voice_core::sim::trace::Trace;
use voice_core::{wav, FRAME_SAMPLES};

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
    assert_eq!(out.stats.frames_concealed, 0);
    assert_eq!(out.stats.packets_lost, 0);
    // Find the lag with the best correlation: it must equal the end-to-end delay.
    let e2e = out.stats.mean_end_to_end_delay_ms;
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
        assert_eq!(a.stats.packets_lost, truth.lost, "{name}");
        assert_eq!(a.stats.packets_duplicate, truth.duplicates, "{name}");
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
