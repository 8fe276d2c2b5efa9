//! The capture processor allocates nothing per frame: a counting global allocator watches
//! 200 frames after warm-up. Only the counting thread's allocations count: the test harness's own
//! thread may allocate meanwhile (it did, under load).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use voice_core::capture::{CaptureConfig, CaptureProcessor, SuppressionLevel};
use voice_core::FRAME_SAMPLES;

struct Counting;
thread_local! {
    /// Set on the thread under test while its allocations count (const-initialised, no
    /// destructor: reading it never allocates).
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn no_allocation_per_frame() {
    let off = CaptureConfig::off();
    let cases = [
        (
            "high-pass",
            CaptureConfig {
                high_pass: true,
                ..off
            },
        ),
        (
            "rnnoise (moderate)",
            CaptureConfig {
                noise_suppression: Some(SuppressionLevel::Moderate),
                ..off
            },
        ),
        (
            "rnnoise + post-filter (high)",
            CaptureConfig {
                noise_suppression: Some(SuppressionLevel::High),
                ..off
            },
        ),
        (
            "rnnoise + deeper post-filter (very-high)",
            CaptureConfig {
                noise_suppression: Some(SuppressionLevel::VeryHigh),
                ..off
            },
        ),
        (
            "agc",
            CaptureConfig {
                gain_control: true,
                ..off
            },
        ),
        ("vad", CaptureConfig { vad: true, ..off }),
        (
            "echo",
            CaptureConfig {
                echo_cancel: true,
                ..off
            },
        ),
        ("everything", CaptureConfig::default()),
    ];
    let mut failed = Vec::new();
    for (level, cfg) in cases {
        let mut p = CaptureProcessor::new(cfg);
        let mut far = [0i16; FRAME_SAMPLES];
        let mut near = [0i16; FRAME_SAMPLES];
        let mut x: u32 = 1;
        let mut fill = |buf: &mut [i16]| {
            for s in buf.iter_mut() {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                *s = ((x >> 16) as i16) / 8;
            }
        };
        for round in 0..400 {
            if round == 200 {
                COUNTING.with(|c| c.set(true));
            }
            // A moved delay hint shifts the echo canceller's span (and its learnt path): the
            // same code its own realignment runs.
            if round == 250 || round == 300 {
                p.set_echo_delay_ms(if round == 250 { 300 } else { 60 });
            }
            fill(&mut far);
            fill(&mut near);
            p.far_end(&far).unwrap();
            let _ = p.process(&mut near).unwrap();
            let _ = p.stats();
        }
        COUNTING.with(|c| c.set(false));
        let n = ALLOCS.swap(0, Ordering::SeqCst);
        if n != 0 {
            failed.push(format!("{level}: {n}"));
        }
    }
    assert!(failed.is_empty(), "allocations in 200 frames: {failed:?}");
}
