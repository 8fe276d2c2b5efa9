//! Fuzz: the TCP frame reader and both message decoders never panic or over-allocate, whatever
//! bytes arrive and however they are split.
#![no_main]
use libfuzzer_sys::fuzz_target;
use voice_core::proto::tcp::{ClientMessage, FrameError, FrameReader, Message, ServerMessage};

/// Feeds `data` in chunks of `split` bytes, decoding after each, as a reader of `M` would.
fn feed<M: Message>(data: &[u8], split: usize) {
    let mut r = FrameReader::<M>::new();
    for chunk in data.chunks(split) {
        if r.push(chunk).is_err() {
            return;
        }
        loop {
            match r.next_message() {
                Ok(Some(_)) | Err(FrameError::Malformed(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(r.buffered() <= voice_core::proto::tcp::PREFIX_LEN + M::MAX_BODY);
    }
}

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(1, |b| usize::from(*b).max(1));
    // The relay's side (client messages) and a client's side (server messages).
    feed::<ClientMessage>(data, split);
    feed::<ServerMessage>(data, split);
});
