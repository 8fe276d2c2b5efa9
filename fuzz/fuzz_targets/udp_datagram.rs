//! Fuzz: the UDP voice header parser never panics, and what it accepts re-encodes to the same header.
#![no_main]
use libfuzzer_sys::fuzz_target;
use voice_core::proto::udp;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = udp::parse(data) {
        let mut out = [0u8; udp::MAX_DATAGRAM];
        let n = udp::write_positional(
            &d.header,
            d.position,
            d.payload,
            &udp::TagKey::UNKEYED,
            &mut out,
        )
        .expect("accepted datagrams re-encode");
        assert_eq!(n, data.len());
        let again = udp::parse(&out[..n]).expect("re-parse");
        assert_eq!(again.header, d.header);
        assert_eq!(again.position, d.position);
        assert_eq!(again.payload, d.payload);
    }
});
