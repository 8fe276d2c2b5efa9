//! Fuzz: end-to-end encryption on untrusted bytes. Opening any frame from any sender never panics
//! (channel-secret and identity-key sessions), identity and key blobs of any content are refused
//! or taken without panicking, and a payload sealed by one member opens at another member with
//! the same secret to exactly its bytes, while any single flipped bit of the frame or of the
//! authenticated metadata (the datagram bytes before the payload) makes opening fail.
#![no_main]
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use voice_core::e2ee::{E2eeMode, E2eeSession};
use voice_core::proto::SessionToken;
use voice_core::time::Time;

const SECRET: &[u8] = b"a fuzzing channel secret of plenty of bytes";
const SENDER: SessionToken = SessionToken(1);
const RECEIVER: SessionToken = SessionToken(2);

fn member(mode: &E2eeMode, me: SessionToken) -> E2eeSession {
    let mut s = E2eeSession::new(mode).expect("keys for the mode");
    s.start(me);
    s
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let (metadata, payload) = rest.split_at(usize::from(first % 33).min(rest.len()));
    let password = E2eeMode::Password(SECRET.to_vec());

    // Untrusted frames and blobs.
    let mut rx = member(&password, RECEIVER);
    let _ = rx.open(SENDER, metadata, payload);
    let keys = E2eeMode::Keys {
        identity: Some([9; 32]),
        lead: Duration::from_millis(500),
    };
    let mut group = member(&keys, RECEIVER);
    group.handle_identity(Time::ZERO, SENDER, payload);
    group.handle_key(SENDER, payload);
    let _ = group.open(SENDER, metadata, payload);
    while group.poll_control().is_some() {}

    // Round trip, and tampering.
    let mut tx = member(&password, SENDER);
    let mut frame = vec![0u8; payload.len() + 64];
    let n = tx
        .seal(Time::ZERO, metadata, payload, &mut frame)
        .expect("a buffer 64 bytes longer than the payload is enough");
    let frame = &frame[..n];
    let mut rx = member(&password, RECEIVER);
    assert_eq!(rx.open(SENDER, metadata, frame).ok(), Some(payload));

    let bit = usize::from(first) * 7;
    let mut bad = frame.to_vec();
    bad[(bit / 8) % n] ^= 1 << (bit % 8);
    let mut fresh = member(&password, RECEIVER);
    assert!(
        fresh.open(SENDER, metadata, &bad).is_err(),
        "flipped frame bit accepted"
    );
    if !metadata.is_empty() {
        let mut meta = metadata.to_vec();
        let at = (bit / 8) % meta.len();
        meta[at] ^= 1 << (bit % 8);
        let mut fresh = member(&password, RECEIVER);
        assert!(
            fresh.open(SENDER, &meta, frame).is_err(),
            "flipped metadata bit accepted"
        );
    }
});
