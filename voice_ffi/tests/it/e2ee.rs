//! The end-to-end C API, sans-IO: a game seals with keys it owns, a receiver opens with an opener;
//! replay, bit flips and plaintext are refused with `VOICE_ERR_DECRYPT` and counted by reason.

use std::mem::MaybeUninit;
use std::ptr;

use voice_ffi::e2ee::*;
use voice_ffi::stream::*;
use voice_ffi::voice_result::{self, *};

const PASSWORD: &[u8] = b"0123456789abcdef0123456789abcdef";
const SENDER: u32 = 7;
const KID: u64 = 0x01_2345;

fn tone(k: usize) -> Vec<i16> {
    (0..960)
        .map(|i| (((k * 960 + i) as f32 * 0.0576).sin() * 8000.0) as i16)
        .collect()
}

fn failures(o: *mut voice_e2ee_opener) -> [u64; 4] {
    let mut f = [0u64; 4];
    let [a, b, c, d] = &mut f;
    assert_eq!(
        unsafe { voice_e2ee_opener_failures(o, a, b, c, d) },
        VOICE_OK
    );
    f
}

#[test]
fn seal_open_replay_tamper_and_plaintext_through_the_c_api() {
    unsafe {
        let mut key = [0u8; VOICE_E2EE_KEY_LEN];
        assert_eq!(
            voice_e2ee_password_key(
                PASSWORD.as_ptr(),
                PASSWORD.len(),
                SENDER,
                KID,
                key.as_mut_ptr()
            ),
            VOICE_OK
        );
        let mut sealer = ptr::null_mut();
        assert_eq!(
            voice_e2ee_sealer_new(KID, key.as_ptr(), 31, &mut sealer),
            VOICE_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            voice_e2ee_sealer_new(KID, key.as_ptr(), key.len(), &mut sealer),
            VOICE_OK
        );
        let mut ec = MaybeUninit::uninit();
        assert_eq!(voice_encoder_config_default(ec.as_mut_ptr()), VOICE_OK);
        let mut ec = ec.assume_init();
        ec.session = SENDER;
        let mut enc = ptr::null_mut();
        assert_eq!(voice_encoder_new(&ec, &mut enc), VOICE_OK);
        let mut plain_enc = ptr::null_mut();
        assert_eq!(voice_encoder_new(&ec, &mut plain_enc), VOICE_OK);

        let mut rc = MaybeUninit::uninit();
        assert_eq!(voice_receiver_config_default(rc.as_mut_ptr()), VOICE_OK);
        let rc = rc.assume_init();
        let mut rx = ptr::null_mut();
        assert_eq!(voice_receiver_new(&rc, &mut rx), VOICE_OK);
        let mut opener = ptr::null_mut();
        assert_eq!(voice_e2ee_opener_new(&mut opener), VOICE_OK);

        let mut sealed = Vec::new();
        let mut plain = Vec::new();
        for k in 0..21 {
            let pcm = tone(k);
            let mut buf = [0u8; 1200];
            let mut n = 0usize;
            assert_eq!(
                voice_encoder_encode_sealed(
                    enc,
                    sealer,
                    pcm.as_ptr(),
                    960,
                    0,
                    false,
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut n
                ),
                VOICE_OK
            );
            sealed.push(buf[..n].to_vec());
            assert_eq!(
                voice_encoder_encode(
                    plain_enc,
                    pcm.as_ptr(),
                    960,
                    0,
                    false,
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut n
                ),
                VOICE_OK
            );
            plain.push(buf[..n].to_vec());
            assert!(sealed[k].len() <= plain[k].len() + VOICE_E2EE_MAX_OVERHEAD);
            assert_eq!(sealed[k][2] & 0x40, 0x40, "encrypted flag");
            assert_ne!(sealed[k][20..], plain[k][20..]);
        }
        // No key yet: unknown key id.
        assert_eq!(
            voice_receiver_push_sealed(rx, opener, 0, sealed[0].as_ptr(), sealed[0].len()),
            VOICE_ERR_DECRYPT
        );
        assert_eq!(failures(opener), [0, 0, 1, 0]);
        assert_eq!(
            voice_e2ee_opener_add_key(opener, KID, key.as_ptr(), key.len()),
            VOICE_OK
        );
        for (k, d) in sealed[..20].iter().enumerate() {
            assert_eq!(
                voice_receiver_push_sealed(rx, opener, k as u64 * 20_000, d.as_ptr(), d.len()),
                VOICE_OK
            );
        }
        // Replay, a bit flip in the payload and in the header, plaintext.
        assert_eq!(
            voice_receiver_push_sealed(rx, opener, 0, sealed[3].as_ptr(), sealed[3].len()),
            VOICE_ERR_DECRYPT
        );
        for at in [30usize, 9] {
            let mut x = sealed[20].clone();
            let i = at.min(x.len() - 1);
            x[i] ^= 0x10;
            assert_eq!(
                voice_receiver_push_sealed(rx, opener, 0, x.as_ptr(), x.len()),
                VOICE_ERR_DECRYPT
            );
        }
        assert_eq!(
            voice_receiver_push_sealed(rx, opener, 0, plain[5].as_ptr(), plain[5].len()),
            VOICE_ERR_DECRYPT
        );
        assert_eq!(failures(opener), [2, 1, 2, 0]);
        let d = &sealed[20];
        assert_eq!(
            voice_receiver_push_sealed(rx, opener, 400_000, d.as_ptr(), d.len()),
            VOICE_OK
        );
        let mut st = MaybeUninit::uninit();
        assert_eq!(voice_receiver_stats(rx, 400_000, st.as_mut_ptr()), VOICE_OK);
        assert_eq!(st.assume_init().packets_received, 21);

        assert_eq!(voice_e2ee_opener_remove_key(opener, KID), VOICE_OK);
        assert_eq!(voice_e2ee_sealer_free(sealer), VOICE_OK);
        assert_eq!(voice_e2ee_opener_free(opener), VOICE_OK);
        assert_eq!(voice_e2ee_opener_free(opener), VOICE_ERR_INVALID_HANDLE);
        assert_eq!(voice_encoder_free(enc), VOICE_OK);
        assert_eq!(voice_encoder_free(plain_enc), VOICE_OK);
        assert_eq!(voice_receiver_free(rx), VOICE_OK);
        assert_eq!(
            voice_e2ee_password_key(ptr::null(), 0, 1, 1, key.as_mut_ptr()),
            voice_result::VOICE_ERR_NULL
        );
    }
}
