//! The SFrame cipher suite `AES_128_CTR_HMAC_SHA256_32` (RFC 9605 §4.5) with every per-key
//! computation done once, when the key is installed.
//!
//! The `sframe` crate computes the same bytes (a test here checks it frame by frame) but prepares
//! the AES key schedule and the HMAC key (two SHA-256 compressions of the padded key) again for
//! every frame, and its SHA-256 is the portable one. Per 20 ms frame the HMAC dominates: on a CPU
//! without SHA instructions, preparing the HMAC key once and hashing with `ring`'s assembly
//! SHA-256 halves the cost of a seal plus an open (`cargo bench -p voice_benches --bench e2ee`
//! prints both side by side). The `sframe` crate still parses and writes the SFrame header.
//!
//! Per RFC 9605:
//! * `sframe_secret = HKDF-Extract("", base_key)`;
//!   `sframe_key = HKDF-Expand(sframe_secret, "SFrame 1.0 Secret key " ‖ KID(u64) ‖ suite(u16), 48)`,
//!   split into the AES-128 key (16 bytes) and the HMAC key (32);
//!   `sframe_salt = HKDF-Expand(sframe_secret, "SFrame 1.0 Secret salt " ‖ KID ‖ suite, 12)`;
//! * `nonce = sframe_salt XOR counter` (the counter big-endian in the last 8 bytes);
//! * ciphertext = AES-128-CTR with the initial counter block `nonce ‖ 00000000`;
//! * tag = the first 4 bytes of `HMAC-SHA256(auth_key, len(aad) ‖ len(ct) ‖ 4 ‖ nonce ‖ aad ‖ ct)`
//!   (lengths as u64 big-endian), where `aad = header ‖ metadata`.

use aes::cipher::{InnerIvInit, KeyInit, StreamCipher};
use ring::{hkdf, hmac};

use super::{CIPHER_SUITE_ID, TAG_LEN};

/// AES-128 key bytes.
const ENC_KEY_LEN: usize = 16;
/// HMAC-SHA256 key bytes.
const AUTH_KEY_LEN: usize = 32;
/// Nonce (and salt) bytes.
const NONCE_LEN: usize = 12;

/// An HKDF output length, as `ring` asks for it.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// One sender key, derived and prepared: AES key schedule, HMAC key state, salt.
#[derive(Clone)]
pub(crate) struct FrameKey {
    aes: aes::Aes128,
    auth: hmac::Key,
    salt: [u8; NONCE_LEN],
}

impl FrameKey {
    /// Derives the key of key id `kid` from a sender's `base_key` (RFC 9605 §4.4.2).
    pub(crate) fn derive(kid: u64, base_key: &[u8]) -> FrameKey {
        let secret = hkdf::Salt::new(hkdf::HKDF_SHA256, &[]).extract(base_key);
        let expand = |label: &[u8], out: &mut [u8]| {
            let info = [
                b"SFrame 1.0 ".as_slice(),
                label,
                &kid.to_be_bytes(),
                &CIPHER_SUITE_ID.to_be_bytes(),
            ];
            secret
                .expand(&info, Len(out.len()))
                .and_then(|okm| okm.fill(out))
                .expect("HKDF-SHA256 output lengths below 255 × 32 bytes");
        };
        let mut key = [0u8; ENC_KEY_LEN + AUTH_KEY_LEN];
        expand(b"Secret key ", &mut key);
        let mut salt = [0u8; NONCE_LEN];
        expand(b"Secret salt ", &mut salt);
        let aes = aes::Aes128::new_from_slice(&key[..ENC_KEY_LEN]).expect("16-byte AES key");
        let auth = hmac::Key::new(hmac::HMAC_SHA256, &key[ENC_KEY_LEN..]);
        key.fill(0);
        FrameKey { aes, auth, salt }
    }

    fn nonce(&self, counter: u64) -> [u8; NONCE_LEN] {
        let mut nonce = self.salt;
        for (n, c) in nonce[NONCE_LEN - 8..].iter_mut().zip(counter.to_be_bytes()) {
            *n ^= c;
        }
        nonce
    }

    /// XORs the key stream of frame `counter` into `data` (encrypts or decrypts).
    fn apply_keystream(&self, nonce: &[u8; NONCE_LEN], data: &mut [u8]) {
        let mut iv = [0u8; 16];
        iv[..NONCE_LEN].copy_from_slice(nonce);
        let core = ctr::CtrCore::<aes::Aes128, ctr::flavors::Ctr32BE>::inner_iv_init(
            self.aes.clone(),
            &iv.into(),
        );
        ctr::Ctr32BE::from_core(core).apply_keystream(data);
    }

    /// The 4-byte tag over `aad = header ‖ metadata` and the ciphertext `ct`.
    fn tag(
        &self,
        nonce: &[u8; NONCE_LEN],
        header: &[u8],
        metadata: &[u8],
        ct: &[u8],
    ) -> [u8; TAG_LEN] {
        let aad_len = (header.len() + metadata.len()) as u64;
        let mut mac = hmac::Context::with_key(&self.auth);
        mac.update(&aad_len.to_be_bytes());
        mac.update(&(ct.len() as u64).to_be_bytes());
        mac.update(&(TAG_LEN as u64).to_be_bytes());
        mac.update(nonce);
        mac.update(header);
        mac.update(metadata);
        mac.update(ct);
        let full = mac.sign();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full.as_ref()[..TAG_LEN]);
        tag
    }

    /// Encrypts `data` in place (the payload of frame `counter`) and returns the tag over
    /// `header`, `metadata` and the ciphertext.
    pub(crate) fn seal(
        &self,
        counter: u64,
        header: &[u8],
        metadata: &[u8],
        data: &mut [u8],
    ) -> [u8; TAG_LEN] {
        let nonce = self.nonce(counter);
        self.apply_keystream(&nonce, data);
        self.tag(&nonce, header, metadata, data)
    }

    /// Checks `tag` over `header`, `metadata` and the ciphertext `data` of frame `counter`, then
    /// decrypts `data` in place. On a wrong tag `data` is left as it was and `false` returned.
    pub(crate) fn open(
        &self,
        counter: u64,
        header: &[u8],
        metadata: &[u8],
        data: &mut [u8],
        tag: &[u8],
    ) -> bool {
        let nonce = self.nonce(counter);
        let want = self.tag(&nonce, header, metadata, data);
        // Constant time: the comparison does not stop at the first differing byte.
        let diff = want.iter().zip(tag).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if tag.len() != TAG_LEN || diff != 0 {
            return false;
        }
        self.apply_keystream(&nonce, data);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sframe::frame::{EncryptedFrameView, MediaFrameView, SingleUseCounter};
    use sframe::header::SframeHeader;
    use sframe::key::{DecryptionKey, EncryptionKey};

    /// Seals with the `sframe` crate (the reference) into a fresh buffer.
    fn reference_seal(kid: u64, base: &[u8], ctr: u64, meta: &[u8], payload: &[u8]) -> Vec<u8> {
        let key = EncryptionKey::derive_from(super::super::CIPHER_SUITE, kid, base).unwrap();
        let mut counter = SingleUseCounter::new(ctr);
        let frame = MediaFrameView::try_with_meta_data(&mut counter, payload, meta).unwrap();
        let mut buf = Vec::new();
        frame
            .encrypt_into(&key, &mut buf)
            .unwrap()
            .sframe_cipher_text()
            .to_vec()
    }

    fn ours_seal(kid: u64, base: &[u8], ctr: u64, meta: &[u8], payload: &[u8]) -> Vec<u8> {
        let key = FrameKey::derive(kid, base);
        let header = SframeHeader::new(kid, ctr);
        let mut out = vec![0u8; header.len()];
        header.serialize(&mut out).unwrap();
        let hl = out.len();
        out.extend_from_slice(payload);
        let (head, body) = out.split_at_mut(hl);
        let tag = key.seal(ctr, head, meta, body);
        out.extend_from_slice(&tag);
        out
    }

    #[test]
    fn frames_are_byte_identical_to_the_sframe_crate_both_ways() {
        let mut base = [0u8; 32];
        for (i, b) in base.iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        for (kid, ctr) in [
            (0u64, 0u64),
            (1, 1),
            (7, 255),
            (8, 256),
            (300, 65_535),
            (0xAB_CDEF, 70_000),
        ] {
            for len in [0usize, 1, 15, 16, 17, 80, 160, 1200] {
                let payload: Vec<u8> = (0..len).map(|i| (i * 31 + kid as usize) as u8).collect();
                let meta: Vec<u8> = (0..(len % 23)).map(|i| i as u8 ^ 0x5A).collect();
                let theirs = reference_seal(kid, &base, ctr, &meta, &payload);
                let ours = ours_seal(kid, &base, ctr, &meta, &payload);
                assert_eq!(ours, theirs, "kid {kid} ctr {ctr} len {len}");
                // And the crate opens ours.
                let dk = DecryptionKey::derive_from(super::super::CIPHER_SUITE, kid, base).unwrap();
                let view = EncryptedFrameView::try_with_meta_data(&ours, &meta).unwrap();
                let mut buf = Vec::new();
                let plain = view.decrypt_into(&dk, &mut buf).unwrap();
                assert_eq!(plain.payload(), &payload[..]);
            }
        }
    }

    #[test]
    fn open_rejects_a_changed_byte_anywhere_and_leaves_the_data() {
        let key = FrameKey::derive(5, &[9u8; 32]);
        let header = [0x55u8];
        let meta = [1u8, 2, 3];
        let mut data = *b"opus payload bytes";
        let tag = key.seal(5, &header, &meta, &mut data);
        let ct = data;
        // Right tag: decrypts.
        let mut d = ct;
        assert!(key.open(5, &header, &meta, &mut d, &tag));
        assert_eq!(&d, b"opus payload bytes");
        // Wrong counter, header, metadata, ciphertext or tag: refused, data untouched.
        let mut d = ct;
        assert!(!key.open(6, &header, &meta, &mut d, &tag));
        assert_eq!(d, ct);
        assert!(!key.open(5, &[0x56], &meta, &mut d, &tag));
        assert!(!key.open(5, &header, &[1, 2, 4], &mut d, &tag));
        let mut bad = ct;
        bad[3] ^= 1;
        assert!(!key.open(5, &header, &meta, &mut bad, &tag));
        let mut t = tag;
        t[0] ^= 0x80;
        assert!(!key.open(5, &header, &meta, &mut d, &t));
        assert!(!key.open(5, &header, &meta, &mut d, &tag[..3]));
        assert_eq!(d, ct);
    }
}
