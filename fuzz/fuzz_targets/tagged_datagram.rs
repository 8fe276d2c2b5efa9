//! Fuzz: the tagged datagram (version 2). Parsing and tag checking never panic on any input; a
//! datagram whose tag verifies re-encodes to exactly its bytes (positional block included) with
//! the same key; and once the
//! fuzzer's bytes are sealed as a datagram with a session key, flipping any one byte makes the
//! tag fail, and so does another session's key.
#![no_main]
use libfuzzer_sys::fuzz_target;
use voice_core::proto::udp::{self, TagKey, MAX_DATAGRAM, TAG_LEN};

fuzz_target!(|data: &[u8]| {
    let key = TagKey::derive(&[7; 32]);
    let other = TagKey::derive(&[8; 32]);
    let verified = key.verify(data).is_ok();
    if let Ok(d) = udp::parse(data) {
        if verified {
            let mut out = [0u8; MAX_DATAGRAM];
            let n = udp::write_positional(&d.header, d.position, d.payload, &key, &mut out)
                .expect("re-encodes");
            assert_eq!(&out[..n], data);
        }
        // Seal the parsed content with the key: it verifies, and no single-byte change does.
        let mut out = [0u8; MAX_DATAGRAM];
        if let Ok(n) = udp::write_positional(&d.header, d.position, d.payload, &key, &mut out) {
            assert!(key.verify(&out[..n]).is_ok());
            assert!(other.verify(&out[..n]).is_err());
            let i = usize::from(data.first().copied().unwrap_or(0)) % n;
            out[i] ^= 0x01;
            assert!(key.verify(&out[..n]).is_err());
            assert!(n >= TAG_LEN);
        }
    }
});
