//! Opus with DRED and deep PLC: what it costs.
//!
//! * Bitrate: mean packet size and kb/s on the speech-like signal for DRED off and on, at the
//!   plain 32 kb/s target and with [`dred_bitrate`]'s raised target, for several loss hints;
//!   the share of packets that really carry DRED and how far back it reaches.
//! * CPU per stream, per 20 ms frame and as a share of one core: decode at complexity 0 (classic)
//!   and [`DECODER_COMPLEXITY`] (OSCE), concealment (classic vs deep PLC), DRED parse + decode of
//!   a 5-frame burst, and a whole stream at 5 % loss in bursts of 2 filled by DRED or deep PLC.
//!
//! Run: `cargo bench -p voice_benches --bench codec` (add `-- --quick` or `BENCH_QUICK=1` for a
//! smoke run).

use std::hint::black_box;
use std::time::Instant;

use voice_benches::{ns_per, quick};
use voice_core::codec::{
    dred_bitrate, Decoder, DredRecovery, Encoder, EncoderConfig, DECODER_COMPLEXITY, MAX_PACKET,
};
use voice_core::sim::signal::speechlike;
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

fn bench_bitrate(pcm: &[i16]) {
    println!(
        "bitrate on {:.0} s of speech-like signal (FEC on; DRED in 10 ms units):",
        pcm.len() as f64 / 48_000.0
    );
    println!("  target   loss%  DRED   bytes/pkt    kb/s   vs 32k/no DRED   with DRED   reach ms");
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
    for loss in [5u8, 10, 20] {
        for d in [0u8, 10, 20] {
            for raised in [false, true] {
                if raised && d == 0 {
                    continue;
                }
                let bitrate = if raised { dred_bitrate(32_000, d) } else { 32_000 };
                let cfg = EncoderConfig {
                    bitrate,
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
                    "  {:5}k  {loss:5}  {d:4}  {bytes:10.1}  {:6.1}   {:+13.1} %   {:7.0} %   {:8.0}",
                    bitrate / 1000,
                    bytes * 8.0 * 50.0 / 1000.0,
                    (bytes / base_bytes - 1.0) * 100.0,
                    carried as f64 * 100.0 / packets.len() as f64,
                    reach as f64 / carried.max(1) as f64 / 48.0,
                );
            }
        }
    }
}

fn line(what: &str, ns: f64) {
    println!(
        "  {what:44} {:8.1} us/frame   {:6.3} % of one core",
        ns / 1000.0,
        ns / FRAME_NS * 100.0
    );
}

fn bench_cpu(pcm: &[i16]) {
    let cfg = EncoderConfig {
        bitrate: 40_000,
        packet_loss_percent: 20,
        ..EncoderConfig::default()
    };
    let packets = encode(pcm, cfg, 20);
    let n = packets.len();
    let mut out = [0i16; FRAME_SAMPLES];
    println!("CPU per stream, {n} frames (40 kb/s, FEC, 20 % loss hint, DRED 200 ms):");
    for c in [0u8, DECODER_COMPLEXITY] {
        let mut dec = Decoder::with_complexity(c).expect("decoder");
        let t = Instant::now();
        for p in &packets {
            dec.decode(p, &mut out).expect("decode");
            black_box(&out);
        }
        line(&format!("decode, complexity {c}"), ns_per(t.elapsed(), n as u64));
    }
    for c in [0u8, DECODER_COMPLEXITY] {
        // Concealment runs after real speech: alternate 4 decoded and 1 concealed frame, and
        // charge the concealed ones (decode time at the same complexity subtracted).
        let mut dec = Decoder::with_complexity(c).expect("decoder");
        let (mut conceal_ns, mut count) = (0.0, 0u64);
        for (i, p) in packets.iter().enumerate() {
            if i % 5 == 4 {
                let t = Instant::now();
                dec.conceal(&mut out).expect("conceal");
                conceal_ns += t.elapsed().as_nanos() as f64;
                count += 1;
            } else {
                dec.decode(p, &mut out).expect("decode");
            }
        }
        line(
            &format!("conceal one frame, complexity {c}"),
            conceal_ns / count.max(1) as f64,
        );
    }
    // A 5-frame burst recovered from the next packet's DRED: parse + 5 decodes, per burst and
    // per recovered frame.
    let mut dec = Decoder::new().expect("decoder");
    let mut dred = DredRecovery::new().expect("dred");
    let (mut parse_ns, mut dec_ns, mut bursts) = (0.0, 0.0, 0u64);
    let mut i = 0;
    while i + 10 <= n {
        for p in &packets[i..i + 4] {
            dec.decode(p, &mut out).expect("decode");
        }
        let next = &packets[i + 9];
        let t = Instant::now();
        let span = dred.parse(next, 5).expect("parse");
        parse_ns += t.elapsed().as_nanos() as f64;
        let t = Instant::now();
        for back in (1..=5).rev() {
            if span.covers(back) {
                dec.decode_dred(&dred, back, &mut out).expect("dred decode");
            } else {
                dec.conceal(&mut out).expect("conceal");
            }
        }
        dec_ns += t.elapsed().as_nanos() as f64;
        dec.decode(next, &mut out).expect("decode");
        bursts += 1;
        i += 10;
    }
    let b = bursts.max(1) as f64;
    line("DRED parse (5 frames wanted), per parse", parse_ns / b);
    line("DRED decode, per recovered frame", dec_ns / b / 5.0);
    // A whole stream at 5 % loss, losses in bursts of 2 (every 40th frame starts one), at
    // DECODER_COMPLEXITY: the receive path's decoder cost per played frame.
    for fill in ["deep PLC", "DRED"] {
        let mut dec = Decoder::new().expect("decoder");
        let t = Instant::now();
        let mut j = 0;
        while j < n {
            if j % 40 == 0 && j + 2 < n {
                if fill == "DRED" {
                    let span = dred.parse(&packets[j + 2], 2).expect("parse");
                    for back in [2, 1] {
                        if span.covers(back) {
                            dec.decode_dred(&dred, back, &mut out).expect("dred");
                        } else {
                            dec.conceal(&mut out).expect("conceal");
                        }
                    }
                } else {
                    dec.conceal(&mut out).expect("conceal");
                    dec.conceal(&mut out).expect("conceal");
                }
                j += 2;
            } else {
                dec.decode(&packets[j], &mut out).expect("decode");
                j += 1;
            }
            black_box(&out);
        }
        line(
            &format!("stream, 5 % loss in pairs, filled by {fill}"),
            ns_per(t.elapsed(), n as u64),
        );
    }
}

fn main() {
    let q = quick();
    let pcm = speechlike(if q { 2.0 } else { 20.0 });
    bench_bitrate(&pcm);
    bench_cpu(&pcm);
}
