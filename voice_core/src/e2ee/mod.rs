//! End-to-end encryption of the voice payload with SFrame (RFC 9605).
//!
//! The relay forwards the exact bytes it receives, so end-to-end encryption needs no help from it:
//! each sender encrypts its Opus payload with its own *sender key*, the 20-byte UDP header (and any
//! block the header announces before the payload) stays readable for routing and is authenticated
//! as SFrame metadata, and every receiver keeps a key ring per remote sender.
//!
//! ```text
//! [UDP header, flag 0x40 set][positional block?] [SFrame header][ciphertext][4-byte tag]
//! \________________ authenticated metadata ____/  \_______ replaces the Opus payload ______/
//! ```
//!
//! * Cipher suite: `AES_128_CTR_HMAC_SHA256_32` (RFC 9605 §4.5, value 0x0003), the short-tag
//!   suite the RFC describes for audio, where a 4-byte tag per 20 ms frame is the accepted trade
//!   (a forgery succeeds with probability 2^-32 per attempt and costs the attacker one datagram
//!   against a receiver that drops and counts every failure). AES-GCM would add 16 bytes.
//! * Overhead: SFrame header (1 config byte + key id + counter bytes) + 4-byte tag. Every
//!   [`FrameEncryptor`] keeps key id + counter within 5 bytes, so a datagram grows by at most
//!   [`MAX_OVERHEAD`] = 10 bytes; a sender rotates to a fresh key before its counter would need
//!   more (see [`max_counter_for`]).
//! * Implementation: the `sframe` crate (RFC 9605 with its test vectors, rust-crypto backend,
//!   caller-provided buffers). Key ring, replay window and drop accounting are ours, in this module,
//!   because they depend on our sender tokens and metrics.
//!
//! Keys come from one of two places:
//! * [`password`]: a channel secret the game manages; every sender key is derived from it, so
//!   nothing needs to be distributed;
//! * [`identity`] + [`group`]: per-client X25519 identity keys; each sender makes fresh random
//!   sender keys and wraps them for every member, so the relay never holds a media key.
//!
//! Contract like the rest of `voice_core`: no sockets, no threads, no clock; buffers are the
//! caller's. Randomness comes from the operating system (`getrandom`) only where fresh keys are
//! made, and every such entry point also has a variant that takes the bytes from the caller.

pub mod frame;
pub mod group;
pub mod identity;
pub mod password;
mod replay;
pub mod session;
mod suite;

pub use frame::{max_counter_for, FrameEncryptor, SenderKeyRing};
pub use identity::{Identity, PublicIdentity};
pub use password::PasswordKeys;
pub use session::{E2eeMode, E2eeSession, E2eeStats};

/// A payload sealer as [`crate::stream::Sender::encode_sealed`] takes it: (metadata, payload,
/// output) → bytes written.
pub type SealFn<'a> = dyn FnMut(&[u8], &[u8], &mut [u8]) -> Result<usize, E2eeError> + 'a;

/// The SFrame cipher suite used on the wire (RFC 9605 value 0x0003).
pub const CIPHER_SUITE: sframe::CipherSuite = sframe::CipherSuite::AesCtr128HmacSha256_32;
/// The cipher suite's IANA value, for documents and the C API.
pub const CIPHER_SUITE_ID: u16 = 0x0003;
/// Length of the authentication tag in bytes.
pub const TAG_LEN: usize = 4;
/// Most bytes SFrame adds to a payload (header ≤ 6 + tag 4).
pub const MAX_OVERHEAD: usize = 10;
/// Length of a sender's base key (the SFrame "base_key" from which key and salt are derived).
pub const BASE_KEY_LEN: usize = 32;

/// Why an encrypted frame was dropped. Each reason is counted separately ([`DecryptFailures`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DecryptError {
    /// The authentication tag did not verify: the frame was altered, or made with another key.
    #[error("authentication tag did not verify")]
    BadTag,
    /// The counter was already accepted under this key (or is older than the replay window).
    #[error("replayed or too old frame counter")]
    Replay,
    /// No key with this key id is known for the sender.
    #[error("unknown key id")]
    UnknownKeyId,
    /// The SFrame header or the frame is truncated or malformed.
    #[error("malformed SFrame frame")]
    Malformed,
}

/// Why encryption failed. The output buffer is left untouched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum E2eeError {
    /// The counter budget of the current key is used up: rotate to a new key first.
    #[error("frame counter of key id {0} exhausted; rotate the sender key")]
    CounterExhausted(u64),
    /// The key id does not leave room for a counter within the overhead budget.
    #[error("key id {0} is too large (at most 2^24 - 1)")]
    KeyIdTooLarge(u64),
    /// The output buffer is too small.
    #[error("output buffer of {have} bytes cannot hold {need}")]
    BufferTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// Key material had the wrong length or a peer's blob did not parse or verify.
    #[error("invalid key material: {0}")]
    InvalidKey(&'static str),
    /// The cryptographic library failed (should not happen with valid keys).
    #[error("encryption failed")]
    Crypto,
}

/// Dropped encrypted frames by reason (`decrypt_failed` in the stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecryptFailures {
    /// Authentication tag did not verify (tampering, wrong key or password).
    pub bad_tag: u64,
    /// Replayed or too-old counter.
    pub replay: u64,
    /// Key id not (or no longer) known for this sender.
    pub unknown_key_id: u64,
    /// Truncated or malformed SFrame frame.
    pub malformed: u64,
}

impl DecryptFailures {
    /// Counts one failure.
    pub fn count(&mut self, e: DecryptError) {
        match e {
            DecryptError::BadTag => self.bad_tag += 1,
            DecryptError::Replay => self.replay += 1,
            DecryptError::UnknownKeyId => self.unknown_key_id += 1,
            DecryptError::Malformed => self.malformed += 1,
        }
    }

    /// All failures together.
    pub fn total(&self) -> u64 {
        self.bad_tag + self.replay + self.unknown_key_id + self.malformed
    }
}

/// Fills `out` with bytes from the operating system's random source.
pub(crate) fn random_bytes(out: &mut [u8]) -> Result<(), E2eeError> {
    getrandom::fill(out).map_err(|_| E2eeError::InvalidKey("no operating-system randomness"))
}
