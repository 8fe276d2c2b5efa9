//! End-to-end encryption: what SFrame costs per 20 ms frame and per datagram.
//!
//! * Bytes: the overhead SFrame adds to each payload (header + 4-byte tag) at the counter ranges a
//!   stream goes through (target ≤ 10 bytes).
//! * CPU: seal + open of one typical Opus payload (80 bytes, 32 kb/s) with
//!   `AES_128_CTR_HMAC_SHA256_32`, per frame and per stream (target ≤ 5 µs), beside the same
//!   seal + open by the `sframe` crate in the same run (the baseline); password-mode key
//!   derivation (once per new key id), and wrapping one sender key for one member (once per
//!   member per rotation).
//!
//! Run: `cargo bench -p voice_benches --bench e2ee` (`-- --quick` or `BENCH_QUICK=1`: smoke run).

use std::hint::black_box;
use std::time::Instant;

use voice_benches::{cpu_time_us, quick};
use voice_core::e2ee::{FrameEncryptor, Identity, PasswordKeys, SenderKeyRing};
use voice_core::proto::SessionToken;

/// Nanoseconds of this process's CPU time per call (CPU time, not wall time: the figure holds on
/// a shared, loaded machine as long as the caches are not thrashed).
fn per_op_ns(iters: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..iters / 10 {
        f();
    }
    let wall = Instant::now();
    let cpu = cpu_time_us();
    for _ in 0..iters {
        f();
    }
    let cpu_ns = (cpu_time_us() - cpu) as f64 * 1000.0;
    let _ = wall;
    cpu_ns / f64::from(iters)
}

fn main() {
    let iters: u32 = if quick() { 2_000 } else { 200_000 };
    let meta = [0x5Au8; 20];
    let payload: Vec<u8> = (0..80u8).collect();
    let key = [7u8; 32];

    println!("== SFrame overhead per datagram (AES_128_CTR_HMAC_SHA256_32) ==");
    for (kid, ctr) in [
        (0u64, 0u64),
        (3, 300),
        (1_000, 70_000),
        (0xFFFF, 70_000),
        (0xAB_CDEF, 65_535),
    ] {
        let mut enc = FrameEncryptor::new(kid, &key).expect("key");
        let mut out = [0u8; 256];
        // The header depends only on key id and counter: advance the counter by sealing.
        for _ in 0..ctr {
            let _ = enc.seal(&meta, &payload, &mut out);
        }
        let n = enc.seal(&meta, &payload, &mut out).expect("seal");
        println!(
            "kid {kid:>8}  counter {ctr:>6}  added bytes {:>2}",
            n - payload.len()
        );
    }

    println!("== CPU ==");
    let mut enc = FrameEncryptor::new(1, &key).expect("key");
    let mut out = [0u8; 256];
    let seal_ns = per_op_ns(iters, || {
        let n = enc
            .seal(&meta, black_box(&payload), &mut out)
            .expect("seal");
        black_box(n);
    });
    let mut enc2 = FrameEncryptor::new(2, &key).expect("key");
    let mut ring2 = SenderKeyRing::new();
    ring2.insert(2, &key).expect("key");
    let both_ns = per_op_ns(iters, || {
        let n = enc2
            .seal(&meta, black_box(&payload), &mut out)
            .expect("seal");
        let p = ring2.open(&meta, &out[..n]).expect("open");
        black_box(p);
    });
    // Baseline, same run: the `sframe` crate sealing and opening the same frame with the same
    // suite (it prepares the AES and HMAC keys per frame and hashes with portable SHA-256).
    let suite = sframe::CipherSuite::AesCtr128HmacSha256_32;
    let ek = sframe::key::EncryptionKey::derive_from(suite, 2u64, key).expect("key");
    let dk = sframe::key::DecryptionKey::derive_from(suite, 2u64, key).expect("key");
    let (mut sealed_buf, mut opened_buf) = (Vec::new(), Vec::new());
    let mut ctr = 0u64;
    let crate_ns = per_op_ns(iters, || {
        let mut counter = sframe::frame::SingleUseCounter::new(ctr);
        ctr += 1;
        let frame = sframe::frame::MediaFrameView::try_with_meta_data(
            &mut counter,
            black_box(&payload),
            &meta,
        )
        .expect("frame");
        let sealed = frame.encrypt_into(&ek, &mut sealed_buf).expect("seal");
        let view = sframe::frame::EncryptedFrameView::try_with_meta_data(
            sealed.sframe_cipher_text(),
            &meta,
        )
        .expect("view");
        black_box(view.decrypt_into(&dk, &mut opened_buf).expect("open"));
    });
    println!("seal 80-byte payload            {:>8.0} ns", seal_ns);
    println!(
        "seal + open per 20 ms frame     {:>8.0} ns  ({:.4} % of one core per stream; target 5000 ns)",
        both_ns,
        both_ns / 20_000_000.0 * 100.0
    );
    println!(
        "  the sframe crate, same frame  {:>8.0} ns  (ours takes {:.2}x its time)",
        crate_ns,
        both_ns / crate_ns
    );

    let pw = PasswordKeys::new(b"0123456789abcdef0123456789abcdef");
    let derive_ns = per_op_ns(iters / 10, || {
        black_box(
            pw.encryptor_with_kid(SessionToken(3), 0x12_3456)
                .expect("key"),
        );
    });
    println!(
        "password key derivation         {:>8.0} ns  (once per new key id)",
        derive_ns
    );
    let (a, b) = (
        Identity::from_secret([1; 32]),
        Identity::from_secret([2; 32]),
    );
    let bp = b.public();
    let wrap_ns = per_op_ns(iters / 100, || {
        black_box(a.wrap(&bp, b"ctx", &[0u8; 40]).expect("wrap"));
    });
    println!(
        "wrap one sender key for a member {:>7.0} ns  (per member per rotation)",
        wrap_ns
    );
}
