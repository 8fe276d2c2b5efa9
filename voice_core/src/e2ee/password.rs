//! Password mode: every sender key derived from one channel secret that the game manages.
//!
//! ```text
//! secret      = HKDF-Extract(salt = "voice-e2ee v1 password", IKM = password)
//! base_key    = HKDF-Expand(secret, info = "voice-e2ee v1 sender" || sender u32 LE || kid u64 LE, 32)
//! ```
//! (HKDF-SHA256.) Each sender picks a random 24-bit key id for every key it starts, so the key and
//! nonce space of a token that the relay hands out again after a restart is fresh; with a 3-byte key
//! id the counter budget is 2^16 frames (21 min 50 s), after which the sender starts another random
//! key id. Receivers derive a key the first time a key id verifies ([`SenderKeyRing::open_with_candidate`]),
//! so nothing is distributed. HKDF is not a password hash: the game must supply a high-entropy
//! secret (a random 128-bit value it hands to the channel's members), not a word a person chose.

use ring::hkdf;

use super::frame::{FrameEncryptor, SenderKeyRing};
use super::{random_bytes, DecryptError, E2eeError, BASE_KEY_LEN};
use crate::proto::SessionToken;

const SALT: &[u8] = b"voice-e2ee v1 password";
const SENDER_INFO: &[u8] = b"voice-e2ee v1 sender";
/// Key ids in password mode are drawn uniformly below this bound (3 bytes in the header).
pub const PASSWORD_KID_LIMIT: u64 = 1 << 24;

struct Len(usize);
impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// Keys derived from a channel password.
pub struct PasswordKeys {
    prk: hkdf::Prk,
}

impl std::fmt::Debug for PasswordKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordKeys(..)")
    }
}

impl PasswordKeys {
    /// Keys for `password` (any bytes; should be high-entropy, see the module doc).
    pub fn new(password: &[u8]) -> Self {
        PasswordKeys {
            prk: hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(password),
        }
    }

    /// The base key of `sender`'s key `kid`.
    pub fn sender_base_key(&self, sender: SessionToken, kid: u64) -> [u8; BASE_KEY_LEN] {
        let s = sender.0.to_le_bytes();
        let k = kid.to_le_bytes();
        let info = [SENDER_INFO, &s[..], &k[..]];
        let mut out = [0u8; BASE_KEY_LEN];
        // Expanding 32 bytes from SHA-256 cannot fail (limit is 255 * 32).
        if let Ok(okm) = self.prk.expand(&info, Len(BASE_KEY_LEN)) {
            let _ = okm.fill(&mut out);
        }
        out
    }

    /// An encryptor for `sender` with the given key id (below [`PASSWORD_KID_LIMIT`]).
    pub fn encryptor_with_kid(
        &self,
        sender: SessionToken,
        kid: u64,
    ) -> Result<FrameEncryptor, E2eeError> {
        if kid >= PASSWORD_KID_LIMIT {
            return Err(E2eeError::KeyIdTooLarge(kid));
        }
        FrameEncryptor::new(kid, &self.sender_base_key(sender, kid))
    }

    /// An encryptor for `sender` with a fresh random key id.
    pub fn encryptor(&self, sender: SessionToken) -> Result<FrameEncryptor, E2eeError> {
        let mut b = [0u8; 4];
        random_bytes(&mut b[..3])?;
        self.encryptor_with_kid(sender, u64::from(u32::from_le_bytes(b)))
    }

    /// Opens a frame from `sender`, deriving and installing the key the first time its key id
    /// verifies.
    pub fn open<'r>(
        &self,
        ring: &'r mut SenderKeyRing,
        sender: SessionToken,
        metadata: &[u8],
        frame: &[u8],
    ) -> Result<&'r [u8], DecryptError> {
        let (kid, _) = super::frame::peek(frame)?;
        if kid >= PASSWORD_KID_LIMIT {
            return Err(DecryptError::UnknownKeyId);
        }
        if ring.contains(kid) {
            return ring.open(metadata, frame).map(|(_, p)| p);
        }
        let base = self.sender_base_key(sender, kid);
        ring.open_with_candidate(metadata, frame, &base)
            .map(|(_, p)| p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_password_decrypts_other_password_fails() {
        let alice = SessionToken(5);
        let keys = PasswordKeys::new(b"0123456789abcdef0123456789abcdef");
        let mut enc = keys.encryptor(alice).unwrap();
        assert!(enc.key_id() < PASSWORD_KID_LIMIT);
        let mut out = [0u8; 64];
        let n = enc.seal(b"hdr", b"voice", &mut out).unwrap();
        let mut ring = SenderKeyRing::new();
        let wrong = PasswordKeys::new(b"another secret");
        assert_eq!(
            wrong.open(&mut ring, alice, b"hdr", &out[..n]),
            Err(DecryptError::BadTag)
        );
        assert_eq!(
            keys.open(&mut ring, SessionToken(6), b"hdr", &out[..n]),
            Err(DecryptError::BadTag),
            "keys are per sender"
        );
        assert_eq!(
            keys.open(&mut ring, alice, b"hdr", &out[..n]).unwrap(),
            b"voice"
        );
        assert_eq!(
            keys.open(&mut ring, alice, b"hdr", &out[..n]),
            Err(DecryptError::Replay)
        );
    }

    #[test]
    fn derivation_is_stable() {
        // Pinned so that a change of the key schedule is a deliberate, documented wire change.
        let k = PasswordKeys::new(b"password").sender_base_key(SessionToken(1), 2);
        let again = PasswordKeys::new(b"password").sender_base_key(SessionToken(1), 2);
        assert_eq!(k, again);
        assert_ne!(
            k,
            PasswordKeys::new(b"password").sender_base_key(SessionToken(1), 3)
        );
    }
}
