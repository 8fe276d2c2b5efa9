//! Fuzz: the TCP frame reader and both message decoders never panic or over-allocate, whatever
//! bytes arrive and however they are split.
#![no_main]
use libfuzzer_sys::fuzz_target;
use voice_core::proto::tcp::{ClientMessage, FrameError, FrameReader, ServerMessage};

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(1, |b| usize::from(*b).max(1));
    for server_side in [false, true] {
        let mut r = FrameReader::new();
        'feed: for chunk in data.chunks(split) {
            if r.push(chunk).is_err() {
                break;
            }
            loop {
                let res = if server_side {
                    r.next_message::<ClientMessage>().map(|m| m.is_some())
                } else {
                    r.next_message::<ServerMessage>().map(|m| m.is_some())
                };
                match res {
                    Ok(true) | Err(FrameError::Malformed(_)) => {}
                    Ok(false) => break,
                    Err(_) => break 'feed,
                }
            }
        }
    }
});
