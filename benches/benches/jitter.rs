//! Jitter buffer and codec costs.
//!
//! * ns per push + pop of our ring-slot [`JitterBuffer`] versus a naive baseline
//!   (`Mutex<BinaryHeap>` of owned packets), measured side by side in one run, on the same
//!   arrival pattern (5 % of packets swapped with their neighbour);
//! * CPU per decoded stream: Opus decode, FEC recovery and PLC per 20 ms frame, as a share of
//!   one core (decode ns / 20 ms).
//!
//! Run: `cargo bench -p voice_benches --bench jitter` (add `-- --quick` for a smoke run).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::Instant;

use voice_benches::{ns_per, quick};
use voice_core::codec::{Decoder, Encoder, EncoderConfig, MAX_PACKET};
use voice_core::jitter::{JitterBuffer, Playout};
use voice_core::{Time, FRAME_SAMPLES};

/// A min-heap of (sequence, owned payload).
type PacketHeap = BinaryHeap<Reverse<(u64, Vec<u8>)>>;

/// The naive baseline: a locked binary heap of owned packets, popped when the head is expected.
struct LockedHeap {
    heap: Mutex<PacketHeap>,
    next: Mutex<Option<u64>>,
}

impl LockedHeap {
    fn push(&self, seq: u64, payload: &[u8]) {
        let next = *self.next.lock().unwrap_or_else(|e| e.into_inner());
        if next.is_some_and(|n| seq < n) {
            return;
        }
        self.heap
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Reverse((seq, payload.to_vec())));
    }

    fn pop(&self) -> Option<usize> {
        let mut heap = self.heap.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let expected = next.get_or_insert_with(|| heap.peek().map_or(0, |Reverse((s, _))| *s));
        let out = match heap.peek() {
            Some(Reverse((s, _))) if *s == *expected => heap.pop().map(|Reverse((_, p))| p.len()),
            _ => None,
        };
        *expected += 1;
        out
    }
}

fn arrival_order(n: u64) -> Vec<u64> {
    let mut order: Vec<u64> = (0..n).collect();
    let mut x: u32 = 0x9E37_79B9;
    let mut i = 0;
    while i + 1 < order.len() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        if x.is_multiple_of(20) {
            order.swap(i, i + 1);
            i += 2;
        } else {
            i += 1;
        }
    }
    order
}

fn bench_buffers(n: u64) {
    let payload = [0x5Au8; 80];
    let order = arrival_order(n);

    let mut ours = JitterBuffer::with_fixed_watermark();
    let start = Instant::now();
    let mut played = 0u64;
    for (k, &seq) in order.iter().enumerate() {
        let now = Time::from_millis(20 * k as u64);
        let _ = ours.push(
            now,
            seq as u16,
            (seq * 960) as u32,
            Default::default(),
            &payload,
        );
        if let Playout::Packet(f) = ours.pop(now) {
            played += black_box(f.payload.len()) as u64 / 80;
        }
    }
    let ours_ns = ns_per(start.elapsed(), n);

    let heap = LockedHeap {
        heap: Mutex::new(BinaryHeap::new()),
        next: Mutex::new(None),
    };
    let start = Instant::now();
    let mut heap_played = 0u64;
    for &seq in &order {
        heap.push(seq, &payload);
        if let Some(len) = heap.pop() {
            heap_played += black_box(len) as u64 / 80;
        }
    }
    let heap_ns = ns_per(start.elapsed(), n);
    println!("jitter buffer, {n} packets, 5% adjacent reordering, one push + one pop per packet:");
    println!("  ring slots (ours)       {ours_ns:8.1} ns per push+pop   ({played} played)");
    println!("  Mutex<BinaryHeap>       {heap_ns:8.1} ns per push+pop   ({heap_played} played)");
    println!("  ratio heap / ours       {:8.2}x", heap_ns / ours_ns);
}

fn bench_codec(frames: usize) {
    let mut enc = Encoder::new(EncoderConfig::default()).expect("encoder");
    let mut packets = Vec::with_capacity(frames);
    let mut buf = [0u8; MAX_PACKET];
    let mut pcm = [0i16; FRAME_SAMPLES];
    let enc_start = Instant::now();
    for f in 0..frames {
        for (i, s) in pcm.iter_mut().enumerate() {
            let t = (f * FRAME_SAMPLES + i) as f64 / 48_000.0;
            let env = 0.5 - 0.5 * (t * 4.0 * std::f64::consts::TAU).cos();
            *s = ((t * 180.0 * std::f64::consts::TAU).sin() * env * 9000.0) as i16;
        }
        let e = enc.encode(&pcm, &mut buf).expect("encode");
        packets.push(buf[..e.len].to_vec());
    }
    let enc_ns = ns_per(enc_start.elapsed(), frames as u64);
    let mut out = [0i16; FRAME_SAMPLES];
    let mut dec = Decoder::new().expect("decoder");
    let start = Instant::now();
    for p in &packets {
        dec.decode(p, &mut out).expect("decode");
    }
    let dec_ns = ns_per(start.elapsed(), frames as u64);
    let mut dec = Decoder::new().expect("decoder");
    let start = Instant::now();
    for p in &packets {
        dec.decode_fec(p, &mut out).expect("fec");
    }
    let fec_ns = ns_per(start.elapsed(), frames as u64);
    let mut dec = Decoder::new().expect("decoder");
    dec.decode(&packets[0], &mut out).expect("decode");
    let start = Instant::now();
    for _ in 0..frames {
        dec.conceal(&mut out).expect("plc");
    }
    let plc_ns = ns_per(start.elapsed(), frames as u64);
    let frame_ns = 20_000_000.0;
    println!("Opus 48 kHz mono, 20 ms frames, {frames} frames, 32 kb/s with FEC:");
    for (what, ns) in [
        ("encode", enc_ns),
        ("decode", dec_ns),
        ("FEC recover", fec_ns),
        ("PLC conceal", plc_ns),
    ] {
        println!(
            "  {what:12} {:8.1} us/frame   {:6.3} % of one core per stream",
            ns / 1000.0,
            ns / frame_ns * 100.0
        );
    }
}

fn main() {
    let q = quick();
    bench_buffers(if q { 20_000 } else { 2_000_000 });
    bench_codec(if q { 200 } else { 5_000 });
}
