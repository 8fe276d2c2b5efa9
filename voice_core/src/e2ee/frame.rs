//! Sealing and opening one voice payload: [`FrameEncryptor`] (sender) and [`SenderKeyRing`]
//! (receiver, one per remote sender).
//!
//! The sender seals the Opus payload with its current key id and counter; the bytes before the
//! payload (UDP header with flag `0x40`, positional block) are the SFrame metadata, so a change to
//! any of them fails the tag. The receiver looks the key id up in that sender's ring, screens the
//! counter with the key's replay window, verifies and decrypts, and only then marks the counter seen.
//!
//! A ring holds a few keys at once so that a rotation never loses audio: the next key is installed
//! (announced) before the sender switches to it, and the previous key stays until it is retired.

use sframe::header::SframeHeader;

use super::replay::ReplayWindow;
use super::suite::FrameKey;
use super::{DecryptError, E2eeError, BASE_KEY_LEN, MAX_OVERHEAD, TAG_LEN};

/// Bytes a key id occupies in the SFrame header (0 when it fits the config byte).
fn field_len(v: u64) -> usize {
    if v < 8 {
        0
    } else {
        (64 - v.leading_zeros() as usize).div_ceil(8)
    }
}

/// The highest counter a sender may use with key id `kid` so that key id + counter take at most
/// 5 header bytes and the frame grows by at most [`MAX_OVERHEAD`] bytes. `None` when the key id
/// itself is too large (more than 3 bytes).
pub fn max_counter_for(kid: u64) -> Option<u64> {
    let kid_bytes = field_len(kid);
    if kid_bytes > 3 {
        return None;
    }
    let budget = MAX_OVERHEAD - TAG_LEN - 1 - kid_bytes;
    Some((1u64 << (8 * budget)) - 1)
}

/// The sending half: one sender key (key id + base key) and its frame counter.
pub struct FrameEncryptor {
    key: FrameKey,
    kid: u64,
    next_counter: u64,
    max_counter: u64,
}

impl std::fmt::Debug for FrameEncryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("FrameEncryptor")
            .field("kid", &self.kid)
            .field("next_counter", &self.next_counter)
            .finish_non_exhaustive()
    }
}

impl FrameEncryptor {
    /// An encryptor for sender key `kid` with the 32-byte `base_key`, counting from 0.
    pub fn new(kid: u64, base_key: &[u8]) -> Result<Self, E2eeError> {
        if base_key.len() != BASE_KEY_LEN {
            return Err(E2eeError::InvalidKey("base key must be 32 bytes"));
        }
        let max_counter = max_counter_for(kid).ok_or(E2eeError::KeyIdTooLarge(kid))?;
        Ok(FrameEncryptor {
            key: FrameKey::derive(kid, base_key),
            kid,
            next_counter: 0,
            max_counter,
        })
    }

    /// The key id written into every frame.
    pub fn key_id(&self) -> u64 {
        self.kid
    }

    /// The counter the next frame will carry.
    pub fn next_counter(&self) -> u64 {
        self.next_counter
    }

    /// Frames left before this key must be replaced.
    pub fn remaining(&self) -> u64 {
        if self.next_counter > self.max_counter {
            0
        } else {
            (self.max_counter - self.next_counter).saturating_add(1)
        }
    }

    /// Seals `payload` and writes the SFrame frame (header, ciphertext, tag) to `out`, returning its
    /// length. `metadata` (the datagram bytes before the payload) is authenticated, not written.
    /// On error `out` is untouched and the counter is not consumed.
    pub fn seal(
        &mut self,
        metadata: &[u8],
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, E2eeError> {
        let ctr = self.next_counter;
        if ctr > self.max_counter {
            return Err(E2eeError::CounterExhausted(self.kid));
        }
        let header_len = 1 + field_len(self.kid) + field_len(ctr);
        let need = header_len + payload.len() + TAG_LEN;
        if out.len() < need {
            return Err(E2eeError::BufferTooSmall {
                need,
                have: out.len(),
            });
        }
        let header = SframeHeader::new(self.kid, ctr);
        debug_assert_eq!(header.len(), header_len);
        let (head, rest) = out.split_at_mut(header_len);
        header
            .serialize(&mut *head)
            .map_err(|_| E2eeError::Crypto)?;
        let (body, tail) = rest.split_at_mut(payload.len());
        body.copy_from_slice(payload);
        let tag = self.key.seal(ctr, head, metadata, body);
        tail[..TAG_LEN].copy_from_slice(&tag);
        self.next_counter += 1;
        Ok(need)
    }
}

/// Most keys a ring holds per sender (current, next, previous, and one spare).
pub const RING_KEYS: usize = 4;

struct RingKey {
    kid: u64,
    key: FrameKey,
    window: ReplayWindow,
}

/// The receiving half for one remote sender: up to [`RING_KEYS`] keys by key id, each with its
/// own replay window. Inserting a fifth key evicts the oldest inserted one.
pub struct SenderKeyRing {
    keys: Vec<RingKey>,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for SenderKeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderKeyRing")
            .field("kids", &self.key_ids().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Default for SenderKeyRing {
    fn default() -> Self {
        SenderKeyRing {
            keys: Vec::with_capacity(RING_KEYS),
            scratch: Vec::with_capacity(crate::proto::udp::MAX_DATAGRAM + MAX_OVERHEAD),
        }
    }
}

/// Reads the key id and counter of an SFrame frame without decrypting it.
pub fn peek(frame: &[u8]) -> Result<(u64, u64), DecryptError> {
    let h = parse(frame)?.header;
    Ok((h.key_id(), h.counter()))
}

/// An SFrame frame taken apart.
struct Parts<'a> {
    header: SframeHeader,
    /// The header's bytes (authenticated with the metadata).
    header_bytes: &'a [u8],
    ciphertext: &'a [u8],
    tag: &'a [u8],
}

impl Parts<'_> {
    /// Verifies the frame with `key` and `metadata` and decrypts it into `out` (replacing what
    /// was there).
    fn open_into(
        &self,
        key: &FrameKey,
        metadata: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), DecryptError> {
        out.clear();
        out.extend_from_slice(self.ciphertext);
        let ctr = self.header.counter();
        if key.open(ctr, self.header_bytes, metadata, out, self.tag) {
            Ok(())
        } else {
            Err(DecryptError::BadTag)
        }
    }
}

/// Splits an SFrame frame into header, ciphertext and tag.
fn parse(frame: &[u8]) -> Result<Parts<'_>, DecryptError> {
    let header = SframeHeader::deserialize(frame).map_err(|_| DecryptError::Malformed)?;
    let hl = header.len();
    if frame.len() < hl + TAG_LEN {
        return Err(DecryptError::Malformed);
    }
    let (header_bytes, rest) = frame.split_at(hl);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    Ok(Parts {
        header,
        header_bytes,
        ciphertext,
        tag,
    })
}

impl SenderKeyRing {
    /// An empty ring.
    pub fn new() -> Self {
        Self::default()
    }

    /// Installs (or replaces) key `kid`. A replaced key starts a fresh replay window.
    pub fn insert(&mut self, kid: u64, base_key: &[u8]) -> Result<(), E2eeError> {
        if base_key.len() != BASE_KEY_LEN {
            return Err(E2eeError::InvalidKey("base key must be 32 bytes"));
        }
        self.install(
            kid,
            FrameKey::derive(kid, base_key),
            ReplayWindow::default(),
        );
        Ok(())
    }

    /// Puts `key` in the ring under `kid`, replacing a key of that id or evicting the oldest.
    fn install(&mut self, kid: u64, key: FrameKey, window: ReplayWindow) {
        self.keys.retain(|k| k.kid != kid);
        if self.keys.len() == RING_KEYS {
            self.keys.remove(0);
        }
        self.keys.push(RingKey { kid, key, window });
    }

    /// Forgets key `kid` (its frames then fail with [`DecryptError::UnknownKeyId`]).
    pub fn remove(&mut self, kid: u64) {
        self.keys.retain(|k| k.kid != kid);
    }

    /// True if key `kid` is installed.
    pub fn contains(&self, kid: u64) -> bool {
        self.keys.iter().any(|k| k.kid == kid)
    }

    /// The installed key ids, oldest first.
    pub fn key_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.keys.iter().map(|k| k.kid)
    }

    /// Verifies and decrypts `frame` (an SFrame frame) with `metadata` (the datagram bytes before
    /// it) and returns the key id and the plaintext, borrowed from the ring's scratch buffer.
    pub fn open(&mut self, metadata: &[u8], frame: &[u8]) -> Result<(u64, &[u8]), DecryptError> {
        let p = parse(frame)?;
        let (kid, ctr) = (p.header.key_id(), p.header.counter());
        let slot = self
            .keys
            .iter()
            .position(|k| k.kid == kid)
            .ok_or(DecryptError::UnknownKeyId)?;
        let k = &mut self.keys[slot];
        if !k.window.check(ctr) {
            return Err(DecryptError::Replay);
        }
        p.open_into(&k.key, metadata, &mut self.scratch)?;
        k.window.accept(ctr);
        Ok((kid, &self.scratch))
    }

    /// Verifies `frame` with a key that is not (yet) in the ring; on success installs it, as
    /// [`Self::insert`] would, and returns the plaintext. Used where keys are derived on demand
    /// (password mode), so a forged key id can never evict a good key.
    pub fn open_with_candidate(
        &mut self,
        metadata: &[u8],
        frame: &[u8],
        base_key: &[u8],
    ) -> Result<(u64, &[u8]), DecryptError> {
        let p = parse(frame)?;
        let (kid, ctr) = (p.header.key_id(), p.header.counter());
        if base_key.len() != BASE_KEY_LEN {
            return Err(DecryptError::Malformed);
        }
        let key = FrameKey::derive(kid, base_key);
        p.open_into(&key, metadata, &mut self.scratch)?;
        let mut window = ReplayWindow::default();
        window.accept(ctr);
        self.install(kid, key, window);
        Ok((kid, &self.scratch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: [u8; 32] = [1; 32];
    const K2: [u8; 32] = [2; 32];
    const META: &[u8] = b"20-byte-udp-header..";

    fn seal(enc: &mut FrameEncryptor, payload: &[u8]) -> Vec<u8> {
        let mut out = [0u8; 256];
        let n = enc.seal(META, payload, &mut out).unwrap();
        out[..n].to_vec()
    }

    #[test]
    fn round_trip_and_overhead_within_ten_bytes() {
        let mut enc = FrameEncryptor::new(3, &K1).unwrap();
        let mut ring = SenderKeyRing::new();
        ring.insert(3, &K1).unwrap();
        for i in 0..300u32 {
            let payload = i.to_le_bytes().repeat(20);
            let f = seal(&mut enc, &payload);
            assert!(f.len() - payload.len() <= MAX_OVERHEAD);
            assert!(!f.windows(8).any(|w| payload.windows(8).any(|p| p == w)));
            let (kid, plain) = ring.open(META, &f).unwrap();
            assert_eq!((kid, plain), (3, &payload[..]));
        }
    }

    #[test]
    fn counter_budget_keeps_overhead_at_ten_bytes() {
        assert_eq!(max_counter_for(7), Some((1 << 40) - 1));
        assert_eq!(max_counter_for(200), Some((1 << 32) - 1));
        assert_eq!(max_counter_for(0xFFFF), Some((1 << 24) - 1));
        assert_eq!(max_counter_for(0xFF_FFFF), Some(0xFFFF));
        assert_eq!(max_counter_for(0x100_0000), None);
        let mut enc = FrameEncryptor::new(0xAB_CDEF, &K1).unwrap();
        enc.next_counter = 0xFFFF;
        let f = seal(&mut enc, &[9; 40]);
        assert_eq!(f.len(), 40 + MAX_OVERHEAD);
        let mut out = [0u8; 256];
        assert_eq!(
            enc.seal(META, &[9; 40], &mut out),
            Err(E2eeError::CounterExhausted(0xAB_CDEF))
        );
        assert_eq!(enc.remaining(), 0);
    }

    #[test]
    fn every_single_bit_flip_is_rejected() {
        let mut enc = FrameEncryptor::new(9, &K1).unwrap();
        let f = seal(&mut enc, b"some opus bytes here");
        for byte in 0..f.len() + META.len() {
            for bit in 0..8 {
                let mut ring = SenderKeyRing::new();
                ring.insert(9, &K1).unwrap();
                let (mut meta, mut frame) = (META.to_vec(), f.clone());
                if byte < META.len() {
                    meta[byte] ^= 1 << bit;
                } else {
                    frame[byte - META.len()] ^= 1 << bit;
                }
                assert!(ring.open(&meta, &frame).is_err(), "flip {byte}:{bit}");
            }
        }
    }

    #[test]
    fn replay_unknown_key_and_bad_tag_are_told_apart() {
        let mut enc = FrameEncryptor::new(1, &K1).unwrap();
        let mut ring = SenderKeyRing::new();
        let f = seal(&mut enc, b"hello");
        assert_eq!(ring.open(META, &f), Err(DecryptError::UnknownKeyId));
        ring.insert(1, &K2).unwrap();
        assert_eq!(ring.open(META, &f), Err(DecryptError::BadTag));
        ring.insert(1, &K1).unwrap();
        assert!(ring.open(META, &f).is_ok());
        assert_eq!(ring.open(META, &f), Err(DecryptError::Replay));
        assert_eq!(ring.open(META, &f[..3]), Err(DecryptError::Malformed));
        assert_eq!(ring.open(META, &[]), Err(DecryptError::Malformed));
        ring.remove(1);
        assert_eq!(ring.open(META, &f), Err(DecryptError::UnknownKeyId));
    }

    #[test]
    fn ring_keeps_the_newest_keys() {
        let mut ring = SenderKeyRing::new();
        for kid in 0..6 {
            ring.insert(kid, &K1).unwrap();
        }
        assert_eq!(ring.key_ids().collect::<Vec<_>>(), vec![2, 3, 4, 5]);
    }

    #[test]
    fn candidate_keys_install_only_when_they_verify() {
        let mut enc = FrameEncryptor::new(77, &K1).unwrap();
        let mut ring = SenderKeyRing::new();
        let f = seal(&mut enc, b"pw");
        assert_eq!(
            ring.open_with_candidate(META, &f, &K2),
            Err(DecryptError::BadTag)
        );
        assert!(!ring.contains(77));
        assert_eq!(
            ring.open_with_candidate(META, &f, &K1).unwrap(),
            (77, &b"pw"[..])
        );
        assert_eq!(ring.open(META, &f), Err(DecryptError::Replay));
        let g = seal(&mut enc, b"next");
        assert_eq!(ring.open(META, &g).unwrap(), (77, &b"next"[..]));
    }
}
