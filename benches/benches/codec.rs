//! Opus with DRED and deep PLC: what it costs.
//!
//! * Bitrate: mean packet size and kb/s on the speech-like signal at a 32 kb/s target, for the
//!   settings [`loss_plan`] picks per reported loss and a few alternatives (FEC and DRED
//!   together); the share of packets that really carry DRED, how far back it reaches, and the
//!   SNR of the lossless decode (a coarse check that DRED does not take speech's bits).
//! * CPU per stream, per 20 ms frame and as a share of one core: decode at complexity 0 (classic)
//!   and [`DECODER_COMPLEXITY`] (OSCE), concealment (classic vs deep PLC), DRED parse + decode of
//!   a 5-frame burst, and a whole stream at 5 % loss in bursts of 2 filled by DRED or deep PLC.
//!
//! Run: `cargo bench -p voice_benches --bench codec` (add `-- --quick` or `BENCH_QUICK=1` for a
//! smoke run; `CODEC_BENCH_WAV=file.wav` adds the bitrate table for that recording).

use std::hint::black_box;

use voice_benches::{cpu_time_us, quick};
use voice_core::codec::{
    loss_plan, Decoder, DredRecovery, Encoder, EncoderConfig, DECODER_COMPLEXITY, MAX_PACKET,
};
use voice_core::signal::speechlike;
use voice_core::FRAME_SAMPLES;

const FRAME_NS: f64 = 20_000_000.0;

fn encode(pcm: &[i16], cfg: EncoderConfig, dred: u8) -> Vec<Vec<u8>> {
    let mut enc = Encoder::new(cfg).expect("encoder");
    enc.set_dred_duration(dred).expect("dred");
    let mut buf = [0u8; MAX_PACKET];
    pcm.chunks_exact(FRAME_SAMPLES)
        .map(|c| {
            let e = enc.encode(c, &mut buf).expect("encode");
            buf[..e.len].to_vec()
        })
        .collect()
}

/// SNR (dB) of the lossless decode of `packets` against `pcm`, at the best delay (0..1000
/// samples): how much of the target bitrate speech itself got.
fn decoded_snr(pcm: &[i16], packets: &[Vec<u8>]) -> f64 {
    let mut dec = Decoder::new().expect("decoder");
    let mut out = [0i16; FRAME_SAMPLES];
    let mut y = Vec::with_capacity(pcm.len());
    for p in packets {
        dec.decode(p, &mut out).expect("decode");
        y.extend_from_slice(&out);
    }
    let x: Vec<f64> = pcm.iter().map(|&s| f64::from(s)).collect();
    let y: Vec<f64> = y.iter().map(|&s| f64::from(s)).collect();
    let n = x.len().min(y.len()).saturating_sub(1000);
    let delay = (0..1000)
        .max_by(|&a, &b| {
            let c = |d: usize| (0..n).step_by(7).map(|i| x[i] * y[i + d]).sum::<f64>();
            c(a).total_cmp(&c(b))
        })
        .unwrap_or(0);
    let sig: f64 = (0..n).map(|i| x[i] * x[i]).sum();
    let err: f64 = (0..n).map(|i| (x[i] - y[i + delay]).powi(2)).sum();
    10.0 * (sig / err.max(1.0)).log10()
}

fn bench_bitrate(pcm: &[i16]) {
    println!(
        "bitrate on {:.0} s of speech (DRED in 10 ms units; VBR):",
        pcm.len() as f64 / 48_000.0
    );
    println!("  target  FEC  loss%  DRED  bytes/pkt    kb/s  vs 32k/FEC/5%/no DRED  with DRED  reach ms  speech SNR dB");
    let base = encode(
        pcm,
        EncoderConfig {
            packet_loss_percent: 5,
            ..EncoderConfig::default()
        },
        0,
    );
    let mean = |p: &[Vec<u8>]| p.iter().map(Vec::len).sum::<usize>() as f64 / p.len() as f64;
    let base_bytes = mean(&base);
    let mut dred = DredRecovery::new().expect("dred decoder");
    // What loss_plan picks per reported loss (no report, 0, 3 %, 8 %, 20 %), then alternatives:
    // DRED without the bitrate cap, DRED next to LBRR, and speech alone at the cap.
    let mut rows: Vec<(u32, bool, u8, u8)> = [None, Some(0), Some(30), Some(80), Some(200)]
        .into_iter()
        .map(|w| {
            let p = loss_plan(w);
            let c = p.apply_to(EncoderConfig::default());
            (c.bitrate, c.fec, c.packet_loss_percent, p.dred_duration)
        })
        .collect();
    rows.extend_from_slice(&[
        (32_000, false, 20, 20),
        (32_000, true, 40, 20),
        (36_000, true, 25, 20),
        (36_000, true, 25, 40),
        (34_000, true, 25, 20),
        (28_000, false, 20, 0),
    ]);
    for (bitrate, fec, loss, d) in rows {
        let cfg = EncoderConfig {
            bitrate,
            fec,
            packet_loss_percent: loss,
            ..EncoderConfig::default()
        };
        let packets = encode(pcm, cfg, d);
        let bytes = mean(&packets);
        let (mut carried, mut reach) = (0usize, 0usize);
        for p in &packets {
            let span = dred.parse(p, 50).expect("parse");
            if !span.is_empty() {
                carried += 1;
                reach += span.reach;
            }
        }
        println!(
            "  {:5}k  {:3}  {loss:5}  {d:4}  {bytes:9.1}  {:6.1}  {:+19.1} %  {:7.0} %  {:8.0}  {:13.1}",
            bitrate / 1000,
            if fec { "on" } else { "off" },
            bytes * 8.0 * 50.0 / 1000.0,
            (bytes / base_bytes - 1.0) * 100.0,
            carried as f64 * 100.0 / packets.len() as f64,
            reach as f64 / carried.max(1) as f64 / 48.0,
            decoded_snr(pcm, &packets),
        );
    }
}

fn line(what: &str, ns: f64) {
    println!(
        "  {what:52} {:8.1} us/frame   {:6.3} % of one core",
        ns / 1000.0,
        ns / FRAME_NS * 100.0
    );
}

/// CPU time (this process, user + system) spent in `f`, in ns: the figure that counts on a
/// shared machine, where wall time also counts waiting for a core.
fn cpu_ns(f: impl FnOnce()) -> f64 {
    let t = cpu_time_us();
    f();
    (cpu_time_us() - t) as f64 * 1000.0
}

/// Plays `packets` through one decoder at `complexity`, with the frames `lost(i)` says missing,
/// filled by `fill`: a receive path's decoder work. Returns CPU ns per played frame.
fn stream(packets: &[Vec<u8>], complexity: u8, lost: impl Fn(usize) -> bool, dred: bool) -> f64 {
    let mut dec = Decoder::with_complexity(complexity).expect("decoder");
    let mut rec = DredRecovery::new().expect("dred");
    let mut out = [0i16; FRAME_SAMPLES];
    let n = packets.len();
    cpu_ns(|| {
        let mut missing = 0usize;
        for (i, p) in packets.iter().enumerate() {
            if lost(i) {
                missing += 1;
                continue;
            }
            if missing > 0 {
                let span = if dred {
                    rec.parse(p, missing).expect("parse")
                } else {
                    rec.clear();
                    rec.span()
                };
                for back in (1..=missing).rev() {
                    if span.covers(back) {
                        dec.decode_dred(&rec, back, &mut out).expect("dred");
                    } else {
                        dec.conceal(&mut out).expect("conceal");
                    }
                    black_box(&out);
                }
                missing = 0;
            }
            dec.decode(p, &mut out).expect("decode");
            black_box(&out);
        }
    }) / n as f64
}

fn bench_cpu(pcm: &[i16]) {
    let plan = loss_plan(Some(80));
    let cfg = plan.apply_to(EncoderConfig::default());
    let packets = encode(pcm, cfg, plan.dred_duration);
    let n = packets.len();
    println!("decoder CPU per stream (process CPU time), {n} frames at 32 kb/s, {plan:?}:");
    for c in [0u8, 5, 6, DECODER_COMPLEXITY] {
        line(
            &format!("no loss, complexity {c}"),
            stream(&packets, c, |_| false, false),
        );
    }
    // 5 % loss: one frame in 20 (isolated), and in bursts (5 of every 100).
    for c in [0u8, 5, DECODER_COMPLEXITY] {
        line(
            &format!("5 % isolated loss, concealed, complexity {c}"),
            stream(&packets, c, |i| i % 20 == 19, false),
        );
    }
    line(
        &format!("5 % isolated loss, DRED, complexity {DECODER_COMPLEXITY}"),
        stream(&packets, DECODER_COMPLEXITY, |i| i % 20 == 19, true),
    );
    for c in [0u8, 5, DECODER_COMPLEXITY] {
        line(
            &format!("5 % loss in bursts of 5, concealed, complexity {c}"),
            stream(&packets, c, |i| i % 100 >= 95, false),
        );
    }
    for c in [5u8, DECODER_COMPLEXITY] {
        line(
            &format!("5 % loss in bursts of 5, DRED, complexity {c}"),
            stream(&packets, c, |i| i % 100 >= 95, true),
        );
    }
    // DRED parse alone, per parse, for 1 and 5 frames wanted.
    let mut rec = DredRecovery::new().expect("dred");
    for want in [1usize, 5] {
        let ns = cpu_ns(|| {
            for p in &packets {
                black_box(rec.parse(p, want).expect("parse"));
            }
        }) / n as f64;
        line(
            &format!("DRED parse, {want} frame(s) wanted (per parse)"),
            ns,
        );
    }
}

fn main() {
    let q = quick();
    let pcm = speechlike(if q { 2.0 } else { 20.0 });
    bench_bitrate(&pcm);
    // Real speech, when given: `CODEC_BENCH_WAV=speech.wav` (any rate, mono), e.g. from
    // `espeak-ng -w speech.wav "..."`.
    if let Some(path) = std::env::var_os("CODEC_BENCH_WAV") {
        match voice_sim::wav::read_mono_48k(std::path::Path::new(&path)) {
            Ok(speech) => {
                println!("{}:", std::path::Path::new(&path).display());
                bench_bitrate(&speech);
            }
            Err(e) => println!("CODEC_BENCH_WAV: {e}"),
        }
    }
    bench_cpu(&pcm);
}
