//! Fuzz: the trace-file parser never panics on arbitrary text.
#![no_main]
use libfuzzer_sys::fuzz_target;
use voice_sim::trace::Trace;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(t) = Trace::parse(text) {
            let _ = t.ground_truth(t.packets().min(100_000));
        }
    }
});
