//! Fuzz: parsing a packet's DRED and decoding from it never panics and never reports a reach
//! beyond what libopus can carry; every frame the span claims to cover decodes to one frame.
#![no_main]
use libfuzzer_sys::fuzz_target;
use voice_core::codec::{Decoder, DredRecovery, MAX_DRED_DURATION};
use voice_core::FRAME_SAMPLES;

fuzz_target!(|data: &[u8]| {
    let Some((&want, packet)) = data.split_first() else {
        return;
    };
    let frames_wanted = usize::from(want % 24);
    let mut dred = DredRecovery::new().expect("DRED decoder");
    let Ok(span) = dred.parse(packet, frames_wanted) else {
        return;
    };
    assert!(
        span.frames() <= usize::from(MAX_DRED_DURATION) / 2 + 1,
        "{span:?}"
    );
    let mut dec = Decoder::new().expect("decoder");
    let mut out = [0i16; FRAME_SAMPLES];
    for back in (1..=span.frames().min(frames_wanted)).rev() {
        let _ = dec.decode_dred(&dred, back, &mut out);
    }
});
