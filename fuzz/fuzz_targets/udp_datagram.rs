//! Fuzz: the UDP voice header parser never panics, and what it accepts re-encodes to the same header.
#![no_main]
use libfuzzer_sys::fuzz_target;
use voice_core::proto::udp;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = udp::parse(data) {
        let mut out = [0u8; udp::MAX_DATAGRAM];
        let n = udp::write(&d.header, d.payload, &udp::TagKey::UNKEYED, &mut out)
            .expect("accepted datagrams re-encode");
        assert_eq!(n, data.len());
        assert_eq!(udp::parse(&out[..n]).expect("re-parse").header, d.header);
    }
});
