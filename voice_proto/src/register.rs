//! Binding a UDP address to a session by proof.
//!
//! Over TCP the relay hands each session a 32-byte secret. To register (or re-register after a NAT
//! rebinding) its UDP address, the client sends a [`DatagramKind::Register`](super::udp::DatagramKind)
//! datagram whose payload is a strictly increasing 64-bit counter and a 16-byte BLAKE3 keyed MAC of
//! (session token, counter) under that secret. The secret itself never crosses UDP, and a captured
//! registration cannot be replayed because the relay only accepts counters above the last one it saw.

use thiserror::Error;

use super::SessionToken;

/// Length of the per-session secret handed out in `Welcome`.
pub const SECRET_LEN: usize = 32;
/// Length of the registration payload: counter (8) + MAC (16).
pub const REGISTER_PAYLOAD_LEN: usize = 8 + MAC_LEN;
const MAC_LEN: usize = 16;
const CONTEXT: &[u8] = b"voice-engine register v1";

/// The secret that proves ownership of a session.
pub type Secret = [u8; SECRET_LEN];

/// Why a registration payload was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RegisterError {
    /// The payload is not exactly [`REGISTER_PAYLOAD_LEN`] bytes.
    #[error("registration payload has {0} bytes, expected {REGISTER_PAYLOAD_LEN}")]
    BadLength(usize),
    /// The MAC does not match the session's secret.
    #[error("registration MAC does not verify")]
    BadMac,
    /// The counter is not above the last accepted one (a replay).
    #[error("registration counter {got} is not above {last}")]
    Replayed {
        /// Counter in the datagram.
        got: u64,
        /// Last accepted counter.
        last: u64,
    },
}

fn mac(secret: &Secret, session: SessionToken, counter: u64) -> [u8; MAC_LEN] {
    let mut h = blake3::Hasher::new_keyed(secret);
    h.update(CONTEXT);
    h.update(&session.0.to_le_bytes());
    h.update(&counter.to_le_bytes());
    let full = h.finalize();
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&full.as_bytes()[..MAC_LEN]);
    out
}

/// Builds the registration payload for `session` with `counter` (which must grow every time).
pub fn sign(secret: &Secret, session: SessionToken, counter: u64) -> [u8; REGISTER_PAYLOAD_LEN] {
    let mut out = [0u8; REGISTER_PAYLOAD_LEN];
    out[..8].copy_from_slice(&counter.to_le_bytes());
    out[8..].copy_from_slice(&mac(secret, session, counter));
    out
}

/// Verifies a registration payload; `last_counter` is the highest counter accepted so far (0 if none).
/// Returns the new counter on success. Comparison of the MAC is constant-time.
pub fn verify(
    secret: &Secret,
    session: SessionToken,
    payload: &[u8],
    last_counter: u64,
) -> Result<u64, RegisterError> {
    if payload.len() != REGISTER_PAYLOAD_LEN {
        return Err(RegisterError::BadLength(payload.len()));
    }
    let mut counter_bytes = [0u8; 8];
    counter_bytes.copy_from_slice(&payload[..8]);
    let counter = u64::from_le_bytes(counter_bytes);
    let expected = mac(secret, session, counter);
    let diff = expected
        .iter()
        .zip(&payload[8..])
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if diff != 0 {
        return Err(RegisterError::BadMac);
    }
    if counter <= last_counter {
        return Err(RegisterError::Replayed {
            got: counter,
            last: last_counter,
        });
    }
    Ok(counter)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: Secret = [7u8; SECRET_LEN];

    #[test]
    fn signed_payload_verifies_once() {
        let p = sign(&SECRET, SessionToken(3), 5);
        assert_eq!(verify(&SECRET, SessionToken(3), &p, 0), Ok(5));
        assert_eq!(
            verify(&SECRET, SessionToken(3), &p, 5),
            Err(RegisterError::Replayed { got: 5, last: 5 })
        );
    }

    #[test]
    fn wrong_secret_session_or_length_is_rejected() {
        let p = sign(&SECRET, SessionToken(3), 1);
        assert_eq!(
            verify(&[8u8; 32], SessionToken(3), &p, 0),
            Err(RegisterError::BadMac)
        );
        assert_eq!(
            verify(&SECRET, SessionToken(4), &p, 0),
            Err(RegisterError::BadMac)
        );
        assert_eq!(
            verify(&SECRET, SessionToken(3), &p[..10], 0),
            Err(RegisterError::BadLength(10))
        );
        let mut tampered = p;
        tampered[0] ^= 1;
        assert_eq!(
            verify(&SECRET, SessionToken(3), &tampered, 0),
            Err(RegisterError::BadMac)
        );
    }
}
