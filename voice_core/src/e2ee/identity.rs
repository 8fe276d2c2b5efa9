//! Identity keys, safety numbers, and wrapping a sender key for one member.
//!
//! Every client has an X25519 identity key pair; the 32-byte public key is its identity blob on the
//! control plane. A sender key is wrapped for a member in the shape of HPKE's authenticated mode
//! (RFC 9180 `mode_auth`, DHKEM(X25519) + HKDF-SHA256 + AES-128-GCM), written out here on `ring` and
//! `x25519-dalek` rather than with the `hpke` crate (which needs Rust 1.87 and pulls ML-KEM):
//!
//! ```text
//! enc        = ephemeral public key (32 bytes, fresh per blob)
//! ikm        = X25519(eph, R) || X25519(S, R)          S = sender identity, R = recipient identity
//! prk        = HKDF-Extract(salt = "voice-e2ee v1 wrap", ikm)
//! key        = HKDF-Expand(prk, "voice-e2ee v1 wrap key" || enc || S_pub || R_pub || context, 16)
//! blob       = enc || AES-128-GCM(key, nonce = 0, aad = context, plaintext)   (32 + n + 16 bytes)
//! ```
//! The static-static term authenticates the sender: only the holder of `S` (or of `R`) can make a
//! blob that opens under `S_pub`, so a relay that substitutes an identity is caught by the
//! **safety number**, a digest of the public key both users can compare out of band.

use ring::{aead, hkdf};
use x25519_dalek::{PublicKey, StaticSecret};

use super::{random_bytes, E2eeError};

const WRAP_SALT: &[u8] = b"voice-e2ee v1 wrap";
const WRAP_INFO: &[u8] = b"voice-e2ee v1 wrap key";
const SAFETY_CONTEXT: &str = "voice-e2ee v1 safety number";
/// Bytes a wrapped blob adds to its plaintext (ephemeral key + GCM tag).
pub const WRAP_OVERHEAD: usize = 32 + 16;
/// Length of an identity blob (an X25519 public key).
pub const IDENTITY_LEN: usize = 32;

/// A peer's public identity (X25519 public key).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicIdentity(pub [u8; IDENTITY_LEN]);

impl std::fmt::Debug for PublicIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicIdentity({})", self.safety_number())
    }
}

impl PublicIdentity {
    /// Parses an identity blob received from the control plane.
    pub fn from_blob(blob: &[u8]) -> Result<Self, E2eeError> {
        let b: [u8; IDENTITY_LEN] = blob
            .try_into()
            .map_err(|_| E2eeError::InvalidKey("identity blob must be 32 bytes"))?;
        Ok(PublicIdentity(b))
    }

    /// The safety number: 20 decimal digits in four groups of five (about 66 bits), from
    /// BLAKE3 in key-derivation mode over the public key. Two users compare it out of band.
    pub fn safety_number(&self) -> String {
        let d = blake3::derive_key(SAFETY_CONTEXT, &self.0);
        let groups: Vec<String> = d
            .chunks(5)
            .take(4)
            .map(|c| {
                let mut b = [0u8; 8];
                b[..5].copy_from_slice(c);
                format!("{:05}", u64::from_le_bytes(b) % 100_000)
            })
            .collect();
        groups.join(" ")
    }
}

/// This client's identity key pair.
pub struct Identity {
    secret: StaticSecret,
    public: PublicIdentity,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({})", self.public.safety_number())
    }
}

struct Len(usize);
impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn wrap_key(
    ikm: &[u8],
    enc: &[u8; 32],
    sender: &PublicIdentity,
    recipient: &PublicIdentity,
    context: &[u8],
) -> Result<aead::LessSafeKey, E2eeError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, WRAP_SALT).extract(ikm);
    let info = [
        WRAP_INFO,
        &enc[..],
        &sender.0[..],
        &recipient.0[..],
        context,
    ];
    let mut key = [0u8; 16];
    prk.expand(&info, Len(16))
        .and_then(|okm| okm.fill(&mut key))
        .map_err(|_| E2eeError::Crypto)?;
    let unbound = aead::UnboundKey::new(&aead::AES_128_GCM, &key).map_err(|_| E2eeError::Crypto)?;
    Ok(aead::LessSafeKey::new(unbound))
}

impl Identity {
    /// A fresh identity from the operating system's random source.
    pub fn generate() -> Result<Self, E2eeError> {
        let mut seed = [0u8; 32];
        random_bytes(&mut seed)?;
        Ok(Self::from_secret(seed))
    }

    /// The identity with this secret key (for games that persist it, and for tests).
    pub fn from_secret(secret: [u8; 32]) -> Self {
        let secret = StaticSecret::from(secret);
        let public = PublicIdentity(PublicKey::from(&secret).to_bytes());
        Identity { secret, public }
    }

    /// The secret key bytes (to persist the identity; handle like a password).
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.secret.to_bytes()
    }

    /// The public identity.
    pub fn public(&self) -> PublicIdentity {
        self.public
    }

    /// Wraps `plaintext` for `recipient`; `context` is authenticated (sender and recipient
    /// tokens, key id) and must be given again to [`Self::unwrap`].
    pub fn wrap(
        &self,
        recipient: &PublicIdentity,
        context: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, E2eeError> {
        let mut eph = [0u8; 32];
        random_bytes(&mut eph)?;
        self.wrap_with_ephemeral(eph, recipient, context, plaintext)
    }

    /// [`Self::wrap`] with the caller's ephemeral secret (deterministic tests and test vectors).
    pub fn wrap_with_ephemeral(
        &self,
        ephemeral: [u8; 32],
        recipient: &PublicIdentity,
        context: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, E2eeError> {
        let eph = StaticSecret::from(ephemeral);
        let enc = PublicKey::from(&eph).to_bytes();
        let r = PublicKey::from(recipient.0);
        let dh1 = eph.diffie_hellman(&r);
        let dh2 = self.secret.diffie_hellman(&r);
        if !dh1.was_contributory() || !dh2.was_contributory() {
            return Err(E2eeError::InvalidKey(
                "recipient identity is a low-order point",
            ));
        }
        let mut ikm = [0u8; 64];
        ikm[..32].copy_from_slice(dh1.as_bytes());
        ikm[32..].copy_from_slice(dh2.as_bytes());
        let key = wrap_key(&ikm, &enc, &self.public, recipient, context)?;
        let mut out = Vec::with_capacity(WRAP_OVERHEAD + plaintext.len());
        out.extend_from_slice(&enc);
        let mut body = plaintext.to_vec();
        key.seal_in_place_append_tag(
            aead::Nonce::assume_unique_for_key([0; 12]),
            aead::Aad::from(context),
            &mut body,
        )
        .map_err(|_| E2eeError::Crypto)?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Opens a blob that `sender` wrapped for this identity with `context`.
    pub fn unwrap(
        &self,
        sender: &PublicIdentity,
        context: &[u8],
        blob: &[u8],
    ) -> Result<Vec<u8>, E2eeError> {
        if blob.len() < WRAP_OVERHEAD {
            return Err(E2eeError::InvalidKey("wrapped blob too short"));
        }
        let enc: [u8; 32] = blob[..32].try_into().map_err(|_| E2eeError::Crypto)?;
        let dh1 = self.secret.diffie_hellman(&PublicKey::from(enc));
        let dh2 = self.secret.diffie_hellman(&PublicKey::from(sender.0));
        if !dh1.was_contributory() || !dh2.was_contributory() {
            return Err(E2eeError::InvalidKey("low-order point in wrapped blob"));
        }
        let mut ikm = [0u8; 64];
        ikm[..32].copy_from_slice(dh1.as_bytes());
        ikm[32..].copy_from_slice(dh2.as_bytes());
        let key = wrap_key(&ikm, &enc, sender, &self.public, context)?;
        let mut body = blob[32..].to_vec();
        let n = key
            .open_in_place(
                aead::Nonce::assume_unique_for_key([0; 12]),
                aead::Aad::from(context),
                &mut body,
            )
            .map_err(|_| E2eeError::InvalidKey("wrapped blob did not verify"))?
            .len();
        body.truncate(n);
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_opens_only_for_the_recipient_from_the_claimed_sender() {
        let (a, b, c) = (
            Identity::from_secret([1; 32]),
            Identity::from_secret([2; 32]),
            Identity::from_secret([3; 32]),
        );
        let blob = a.wrap(&b.public(), b"ctx", b"sender key").unwrap();
        assert_eq!(blob.len(), WRAP_OVERHEAD + 10);
        assert_eq!(b.unwrap(&a.public(), b"ctx", &blob).unwrap(), b"sender key");
        assert!(c.unwrap(&a.public(), b"ctx", &blob).is_err(), "not for c");
        assert!(b.unwrap(&c.public(), b"ctx", &blob).is_err(), "not from c");
        assert!(
            b.unwrap(&a.public(), b"other", &blob).is_err(),
            "context bound"
        );
        let mut bad = blob.clone();
        bad[40] ^= 1;
        assert!(b.unwrap(&a.public(), b"ctx", &bad).is_err());
        assert!(b.unwrap(&a.public(), b"ctx", &blob[..20]).is_err());
    }

    #[test]
    fn safety_numbers_are_stable_and_distinct() {
        let a = Identity::from_secret([1; 32]).public();
        let s = a.safety_number();
        assert_eq!(s.len(), 23);
        assert_eq!(s, Identity::from_secret([1; 32]).public().safety_number());
        assert_ne!(s, Identity::from_secret([2; 32]).public().safety_number());
        assert!(PublicIdentity::from_blob(&[0; 31]).is_err());
        assert!(Identity::from_secret([1; 32])
            .wrap(&PublicIdentity([0; 32]), b"", b"k")
            .is_err());
    }
}
