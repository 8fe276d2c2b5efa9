//! The wire protocol: the one definition shared by the relay and every client, and nothing
//! else (no codec, no audio), so the relay builds without libopus.
//!
//! * [`udp`] — the voice datagram: a fixed 20-byte little-endian header read and written with
//!   bytemuck, followed by the Opus payload (never copied by the parser).
//! * [`tcp`] — the control plane: length-prefixed frames with a hard cap, carrying postcard-encoded
//!   [`ClientMessage`](tcp::ClientMessage) / [`ServerMessage`](tcp::ServerMessage) events.
//! * [`register`] — the proof that binds a UDP address to a session: a keyed MAC over a counter,
//!   made with the secret handed out over TCP, so the secret itself never crosses UDP.
//! * [`seq`] — sequence numbers: unwrapping the 16-bit wire counter and the replay window.
//! * [`attenuation`] — the distance models a channel announces and the relay culls by.
//! * [`time`] — the monotonic [`Time`](time::Time) every state machine on both ends is driven with.
//!
//! `docs/PROTOCOL.md` describes the same wire for people; this crate is the normative code.
//! `voice_core` re-exports it as `voice_core::proto` (and `seq`, and the attenuation types in
//! `voice_core::spatial`).

pub mod attenuation;
pub mod register;
pub mod seq;
pub mod tcp;
pub mod time;
pub mod udp;

use serde::{Deserialize, Serialize};

/// Identifies a session (a connected user) to the relay and to other users.
///
/// Tokens travel in every forwarded voice header and are needed to whisper, so they are public:
/// a token alone never authorises anything. `0` is reserved and means "no session".
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
pub struct SessionToken(pub u32);

impl SessionToken {
    /// The reserved "no session" value (in a header's target field: the sender's channel).
    pub const NONE: SessionToken = SessionToken(0);

    /// True for the reserved value 0.
    pub fn is_none(self) -> bool {
        self.0 == 0
    }

    /// True for a member of a room hosted by another relay of a cluster, as the relay this
    /// client is connected to names it (a token at or above [`FIRST_REMOTE_SESSION`]); such a
    /// member is listed in the channel tree but is no session of this relay: a whisper to it is
    /// dropped and a `Kick`, `Ban` or `ReceiverReport` naming it is refused with `NoSuchSession`.
    pub fn is_remote(self) -> bool {
        self.0 >= FIRST_REMOTE_SESSION
    }
}

/// Scale-out: the first session token a relay gives to members of rooms hosted by other relays
/// of its cluster (`ServerMessage::ChannelMembers`). A relay in a cluster allocates its own
/// sessions below it, so the two ranges never collide.
pub const FIRST_REMOTE_SESSION: u32 = 0x8000_0000;

impl std::fmt::Display for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Identifies a channel on a relay.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
pub struct ChannelId(pub u32);

impl std::fmt::Display for ChannelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "channel {}", self.0)
    }
}
