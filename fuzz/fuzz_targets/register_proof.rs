//! Fuzz: registration proof verification never panics and never accepts a forged MAC.
#![no_main]
use libfuzzer_sys::fuzz_target;
use voice_core::proto::register;
use voice_core::proto::SessionToken;

fuzz_target!(|data: &[u8]| {
    let secret = [0x42u8; register::SECRET_LEN];
    if let Ok(counter) = register::verify(&secret, SessionToken(7), data, 0) {
        // Only a genuine signature verifies.
        assert_eq!(
            register::sign(&secret, SessionToken(7), counter)[..],
            data[..]
        );
    }
});
