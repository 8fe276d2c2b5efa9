//! The UDP voice datagram.
//!
//! ```text
//!  0        1        2        3        4                 6                 8
//! +--------+--------+--------+--------+--------+--------+--------+--------+
//! |version |  kind  | flags  |reserved|   seq (u16 LE)  | reserved (u16)  |
//! +--------+--------+--------+--------+--------+--------+--------+--------+
//! |      timestamp (u32 LE, 48 kHz)   |     sender token (u32 LE)         |
//! +--------+--------+--------+--------+--------+--------+--------+--------+
//! |      target token (u32 LE)        |  [positional block] payload (Opus, or kind-specific) ...
//! +--------+--------+--------+--------+
//! ... payload |  tag (8 bytes): keyed BLAKE3 of every byte before it, truncated  |
//! ```
//!
//! When flag bit 7 ([`Flags::POSITIONAL`]) is set, a 12-byte positional block follows the header:
//! the sender's x, y, z position as three `f32` little-endian values in game units (finite; a
//! block with NaN or an infinity, or a datagram too short for the block, is rejected). The payload
//! starts after it and ends where the tag begins. Relay and client both parse here, so the two
//! never disagree.
//!
//! Version 2 ends every datagram with an 8-byte authentication tag ([`TAG_LEN`]): the first 8
//! bytes of BLAKE3 in keyed mode over all preceding bytes (header, positional block if any, and
//! payload), with the session's [`TagKey`], derived from the secret of its `Welcome`
//! ([`TagKey::derive`]). A client tags what it sends with its own key; the relay checks the tag
//! of every datagram against the key of the session its sender field names before acting on it
//! (culling by position included), forwards Voice unchanged (tag included), and tags its replies
//! (`RegisterAck`, `Pong`) with the recipient's key. Receivers of forwarded voice cannot check
//! its tag (they do not hold the sender's key); they skip it.
//!
//! The header is a `#[repr(C)]` struct of byte arrays (alignment 1), so it is read in place from any
//! received buffer with bytemuck and the payload is returned as a borrowed slice: parsing copies
//! nothing. Multi-byte fields are explicitly little-endian. Reserved bytes are written as zero and
//! ignored on receipt, so a later version can use them (with the version byte and the reserved
//! flag bits) for payload encryption or positional data.

use bytemuck::{Pod, Zeroable};
use thiserror::Error;

use super::SessionToken;

/// The protocol version this build writes and accepts (2: every datagram ends with a tag).
pub const PROTOCOL_VERSION: u8 = 2;
/// Length of the authentication tag that ends every datagram.
pub const TAG_LEN: usize = 8;
/// The BLAKE3 `derive_key` context that turns a session secret into its [`TagKey`].
pub const TAG_KEY_CONTEXT: &str = "voice-engine datagram tag v2";
/// Length of the fixed header in bytes.
pub const HEADER_LEN: usize = std::mem::size_of::<RawHeader>();
/// Hard maximum size of one datagram (header + payload). Chosen to stay below common path MTUs
/// (1280-byte IPv6 minimum minus IP/UDP headers) so voice is never IP-fragmented.
pub const MAX_DATAGRAM: usize = 1200;
/// Hard maximum payload size.
pub const MAX_PAYLOAD: usize = MAX_DATAGRAM - HEADER_LEN - TAG_LEN;

/// The key that tags a session's datagrams. Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct TagKey([u8; 32]);

impl std::fmt::Debug for TagKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TagKey(<secret>)")
    }
}

impl TagKey {
    /// The all-zero key: for streams that no relay checks (a sans-IO loopback, tests). It
    /// authenticates nothing.
    pub const UNKEYED: TagKey = TagKey([0; 32]);

    /// The key of the session whose `Welcome` carried `secret`:
    /// `BLAKE3.derive_key(TAG_KEY_CONTEXT, secret)`.
    pub fn derive(secret: &super::register::Secret) -> TagKey {
        TagKey(blake3::derive_key(TAG_KEY_CONTEXT, secret))
    }

    /// The tag of `bytes` (everything before the tag).
    pub fn tag(&self, bytes: &[u8]) -> [u8; TAG_LEN] {
        let full = blake3::keyed_hash(&self.0, bytes);
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(&full.as_bytes()[..TAG_LEN]);
        t
    }

    /// Checks the tag that ends `datagram` (constant-time comparison).
    pub fn verify(&self, datagram: &[u8]) -> Result<(), UdpError> {
        if datagram.len() < HEADER_LEN + TAG_LEN {
            return Err(UdpError::TooShort(datagram.len()));
        }
        let (body, tag) = datagram.split_at(datagram.len() - TAG_LEN);
        let want = self.tag(body);
        let diff = want.iter().zip(tag).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff == 0 {
            Ok(())
        } else {
            Err(UdpError::BadTag)
        }
    }
}

/// What a datagram carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DatagramKind {
    /// An Opus voice frame, forwarded by the relay.
    Voice = 1,
    /// Client → relay: bind this source address to the sender session (payload: [`super::register`]).
    Register = 2,
    /// Relay → client: the registration was accepted (payload: the 8-byte counter echoed).
    RegisterAck = 3,
    /// Client → relay: keep-alive / UDP round trip probe (payload echoed).
    Ping = 4,
    /// Relay → client: answer to [`DatagramKind::Ping`] with the same payload.
    Pong = 5,
}

impl DatagramKind {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Voice,
            2 => Self::Register,
            3 => Self::RegisterAck,
            4 => Self::Ping,
            5 => Self::Pong,
            _ => return None,
        })
    }
}

/// Header flag bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Flags(pub u8);

impl Flags {
    /// Last frame of a talk spurt: the silence that follows is not packet loss.
    pub const END_OF_SPURT: Flags = Flags(0x01);
    /// The Opus payload carries in-band FEC (LBRR) for the previous frame.
    pub const FEC: Flags = Flags(0x02);
    /// First frame of a talk spurt (like the RTP marker bit).
    pub const START_OF_SPURT: Flags = Flags(0x04);
    /// Reserved for a later version: payload is encrypted.
    pub const RESERVED_ENCRYPTED: Flags = Flags(0x40);
    /// The payload is an SFrame frame (RFC 9605) sealing the Opus payload end to end; every byte
    /// before it is the frame's authenticated metadata (`voice_core::e2ee`). Same bit as
    /// [`Flags::RESERVED_ENCRYPTED`].
    pub const ENCRYPTED: Flags = Flags(0x40);
    /// Former name of [`Flags::POSITIONAL`] (the bit was reserved for it).
    pub const RESERVED_POSITIONAL: Flags = Flags(0x80);
    /// A 12-byte positional block ([`Position`]) follows the header. Set and cleared by
    /// [`write_positional`] from its `position` argument, never by the caller.
    pub const POSITIONAL: Flags = Flags(0x80);

    /// True when every bit of `other` is set.
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union of both sets of bits.
    #[must_use]
    pub fn with(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }
}

/// Length of the positional block in bytes.
pub const POSITION_LEN: usize = 12;

/// A sender's position in game units (right-handed: x right, y up, −z forward, as OpenAL).
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Position {
    /// X coordinate.
    pub x: f32,
    /// Y coordinate.
    pub y: f32,
    /// Z coordinate.
    pub z: f32,
}

impl Position {
    /// A position from its coordinates.
    pub const fn new(x: f32, y: f32, z: f32) -> Self {
        Position { x, y, z }
    }

    /// True when every coordinate is finite (the only positions the wire carries).
    pub fn is_finite(self) -> bool {
        self.x.is_finite() && self.y.is_finite() && self.z.is_finite()
    }

    /// Euclidean distance to `other`.
    pub fn distance(self, other: Position) -> f32 {
        self.distance_squared(other).sqrt()
    }

    /// Squared Euclidean distance to `other` (no square root: for range checks).
    pub fn distance_squared(self, other: Position) -> f32 {
        let (dx, dy, dz) = (self.x - other.x, self.y - other.y, self.z - other.z);
        dx * dx + dy * dy + dz * dz
    }

    fn to_bytes(self) -> [u8; POSITION_LEN] {
        let mut b = [0u8; POSITION_LEN];
        b[0..4].copy_from_slice(&self.x.to_le_bytes());
        b[4..8].copy_from_slice(&self.y.to_le_bytes());
        b[8..12].copy_from_slice(&self.z.to_le_bytes());
        b
    }

    fn from_bytes(b: &[u8; POSITION_LEN]) -> Self {
        let f = |i: usize| f32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Position::new(f(0), f(4), f(8))
    }
}

/// The header exactly as it lies on the wire.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct RawHeader {
    version: u8,
    kind: u8,
    flags: u8,
    reserved0: u8,
    seq: [u8; 2],
    reserved1: [u8; 2],
    timestamp: [u8; 4],
    sender: [u8; 4],
    target: [u8; 4],
}

/// A decoded voice header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// What the datagram carries.
    pub kind: DatagramKind,
    /// Flag bits ([`Flags`]).
    pub flags: Flags,
    /// Per-sender sequence number, +1 per datagram of this kind, wrapping at 2^16.
    pub seq: u16,
    /// Sampling instant of the first sample, in 48 kHz units, wrapping at 2^32.
    pub timestamp: u32,
    /// The session that sent the datagram.
    pub sender: SessionToken,
    /// [`SessionToken::NONE`] for the sender's channel, otherwise the one whisper recipient.
    pub target: SessionToken,
}

impl Header {
    /// A voice header to the sender's channel with no flags.
    pub fn voice(sender: SessionToken, seq: u16, timestamp: u32) -> Self {
        Header {
            kind: DatagramKind::Voice,
            flags: Flags::default(),
            seq,
            timestamp,
            sender,
            target: SessionToken::NONE,
        }
    }

    fn to_raw(self) -> RawHeader {
        RawHeader {
            version: PROTOCOL_VERSION,
            kind: self.kind as u8,
            flags: self.flags.0,
            reserved0: 0,
            seq: self.seq.to_le_bytes(),
            reserved1: [0; 2],
            timestamp: self.timestamp.to_le_bytes(),
            sender: self.sender.0.to_le_bytes(),
            target: self.target.0.to_le_bytes(),
        }
    }
}

/// Why a datagram was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UdpError {
    /// Shorter than the fixed header.
    #[error("datagram of {0} bytes is shorter than the {HEADER_LEN}-byte header")]
    TooShort(usize),
    /// Longer than [`MAX_DATAGRAM`].
    #[error("datagram of {0} bytes exceeds the {MAX_DATAGRAM}-byte maximum")]
    TooLong(usize),
    /// A version this build does not speak.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// An unknown kind byte.
    #[error("unknown datagram kind {0}")]
    UnknownKind(u8),
    /// The sender field is the reserved value 0.
    #[error("sender token is 0")]
    NoSender,
    /// The positional flag is set but the block is cut short or holds a non-finite coordinate
    /// (also returned by [`write_positional`] for a non-finite position).
    #[error("positional block missing or not finite")]
    BadPosition,
    /// The tag does not match the key of the session the datagram claims to come from.
    #[error("authentication tag does not verify")]
    BadTag,
    /// The caller's output buffer cannot hold the datagram.
    #[error("output buffer of {have} bytes cannot hold {need}")]
    BufferTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
}

/// A parsed datagram borrowing its payload from the received buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Datagram<'a> {
    /// The decoded header.
    pub header: Header,
    /// The sender's position, when the positional flag is set.
    pub position: Option<Position>,
    /// Everything between the header (and the positional block, if any) and the tag.
    pub payload: &'a [u8],
    /// The authentication tag (the last [`TAG_LEN`] bytes), not yet checked: see
    /// [`TagKey::verify`].
    pub tag: [u8; TAG_LEN],
}

/// Parses a received datagram without copying it. Never panics, never allocates. The tag is
/// returned, not checked ([`TagKey::verify`] needs the sender's key).
pub fn parse(bytes: &[u8]) -> Result<Datagram<'_>, UdpError> {
    if bytes.len() < HEADER_LEN + TAG_LEN {
        return Err(UdpError::TooShort(bytes.len()));
    }
    if bytes.len() > MAX_DATAGRAM {
        return Err(UdpError::TooLong(bytes.len()));
    }
    let (head, rest) = bytes.split_at(HEADER_LEN);
    let (mut payload, tag_bytes) = rest.split_at(rest.len() - TAG_LEN);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(tag_bytes);
    let raw: &RawHeader = bytemuck::from_bytes(head);
    if raw.version != PROTOCOL_VERSION {
        return Err(UdpError::UnsupportedVersion(raw.version));
    }
    let kind = DatagramKind::from_u8(raw.kind).ok_or(UdpError::UnknownKind(raw.kind))?;
    let sender = SessionToken(u32::from_le_bytes(raw.sender));
    if sender.is_none() {
        return Err(UdpError::NoSender);
    }
    let flags = Flags(raw.flags);
    let mut position = None;
    if flags.contains(Flags::POSITIONAL) {
        let Some((block, rest)) = payload.split_first_chunk::<POSITION_LEN>() else {
            return Err(UdpError::BadPosition);
        };
        let p = Position::from_bytes(block);
        if !p.is_finite() {
            return Err(UdpError::BadPosition);
        }
        position = Some(p);
        payload = rest;
    }
    Ok(Datagram {
        header: Header {
            kind,
            flags,
            seq: u16::from_le_bytes(raw.seq),
            timestamp: u32::from_le_bytes(raw.timestamp),
            sender,
            target: SessionToken(u32::from_le_bytes(raw.target)),
        },
        position,
        payload,
        tag,
    })
}

/// Writes the bytes of `header` alone (e.g. the metadata an end-to-end cipher authenticates).
pub fn write_header(header: &Header, out: &mut [u8; HEADER_LEN]) {
    out.copy_from_slice(bytemuck::bytes_of(&header.to_raw()));
}

/// Longest run of bytes before the payload: the header and the positional block.
pub const MAX_METADATA: usize = HEADER_LEN + POSITION_LEN;

/// Writes the bytes that precede the payload: `header` (with [`Flags::POSITIONAL`] set when
/// `position` is `Some`, cleared otherwise) and the positional block; returns their length
/// ([`HEADER_LEN`] or [`MAX_METADATA`]). They are the metadata an end-to-end cipher
/// authenticates. A non-finite position is [`UdpError::BadPosition`] and leaves `out` untouched.
pub fn write_metadata(
    header: &Header,
    position: Option<Position>,
    out: &mut [u8; MAX_METADATA],
) -> Result<usize, UdpError> {
    if position.is_some_and(|p| !p.is_finite()) {
        return Err(UdpError::BadPosition);
    }
    let mut raw = header.to_raw();
    raw.flags = if position.is_some() {
        raw.flags | Flags::POSITIONAL.0
    } else {
        raw.flags & !Flags::POSITIONAL.0
    };
    out[..HEADER_LEN].copy_from_slice(bytemuck::bytes_of(&raw));
    match position {
        Some(p) => {
            out[HEADER_LEN..].copy_from_slice(&p.to_bytes());
            Ok(MAX_METADATA)
        }
        None => Ok(HEADER_LEN),
    }
}

/// The bytes of `datagram` before the payload of its parse `d` (header and any block the header
/// announces): the metadata an end-to-end cipher authenticates. The tag after the payload is not
/// part of it.
pub fn metadata<'a>(datagram: &'a [u8], d: &Datagram<'_>) -> &'a [u8] {
    let len = (d.payload.as_ptr() as usize)
        .checked_sub(datagram.as_ptr() as usize)
        .filter(|&n| n <= datagram.len())
        .unwrap_or(HEADER_LEN.min(datagram.len()));
    &datagram[..len]
}

/// Writes `header`, `payload` and the tag made with `key` into `out` and returns the datagram
/// length (no positional block: the positional flag is cleared). On error `out` is left untouched.
pub fn write(
    header: &Header,
    payload: &[u8],
    key: &TagKey,
    out: &mut [u8],
) -> Result<usize, UdpError> {
    write_positional(header, None, payload, key, out)
}

/// Writes `header`, the positional block when `position` is `Some` (setting
/// [`Flags::POSITIONAL`], clearing it otherwise), `payload` and the tag made with `key` over all
/// of them into `out`; returns the datagram length. A non-finite position is
/// [`UdpError::BadPosition`]. On error `out` is left untouched.
pub fn write_positional(
    header: &Header,
    position: Option<Position>,
    payload: &[u8],
    key: &TagKey,
    out: &mut [u8],
) -> Result<usize, UdpError> {
    let mut head = [0u8; MAX_METADATA];
    let meta = write_metadata(header, position, &mut head)?;
    let need = meta + payload.len() + TAG_LEN;
    if need > MAX_DATAGRAM {
        return Err(UdpError::TooLong(need));
    }
    if out.len() < need {
        return Err(UdpError::BufferTooSmall {
            need,
            have: out.len(),
        });
    }
    let body = need - TAG_LEN;
    out[..meta].copy_from_slice(&head[..meta]);
    out[meta..body].copy_from_slice(payload);
    let tag = key.tag(&out[..body]);
    out[body..need].copy_from_slice(&tag);
    Ok(need)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            kind: DatagramKind::Voice,
            flags: Flags::FEC.with(Flags::END_OF_SPURT),
            seq: 0xBEEF,
            timestamp: 0xDEAD_BEEF,
            sender: SessionToken(7),
            target: SessionToken(9),
        }
    }

    #[test]
    fn header_is_twenty_bytes_with_alignment_one() {
        assert_eq!(HEADER_LEN, 20);
        assert_eq!(std::mem::align_of::<RawHeader>(), 1);
    }

    const K: TagKey = TagKey::UNKEYED;

    #[test]
    fn round_trip_borrows_payload() {
        let mut buf = [0u8; MAX_DATAGRAM];
        let n = write(&sample(), b"opus!", &K, &mut buf).unwrap();
        assert_eq!(n, HEADER_LEN + 5 + TAG_LEN);
        let d = parse(&buf[..n]).unwrap();
        assert_eq!(d.header, sample());
        assert_eq!(d.payload, b"opus!");
        assert_eq!(d.payload.as_ptr(), buf[HEADER_LEN..].as_ptr());
        assert_eq!(d.tag, K.tag(&buf[..n - TAG_LEN]));
    }

    #[test]
    fn the_tag_binds_every_byte_to_the_session_key() {
        let alice = TagKey::derive(&[1; 32]);
        let bob = TagKey::derive(&[2; 32]);
        let mut buf = [0u8; MAX_DATAGRAM];
        let n = write(&sample(), b"opus!", &alice, &mut buf).unwrap();
        assert_eq!(alice.verify(&buf[..n]), Ok(()));
        // Another session's key, any flipped bit, a cut datagram: refused.
        assert_eq!(bob.verify(&buf[..n]), Err(UdpError::BadTag));
        for i in 0..n {
            let mut bad = buf;
            bad[i] ^= 0x10;
            assert_eq!(alice.verify(&bad[..n]), Err(UdpError::BadTag), "byte {i}");
        }
        assert_eq!(alice.verify(&buf[..n - 1]), Err(UdpError::BadTag));
        assert_eq!(
            alice.verify(&buf[..HEADER_LEN]),
            Err(UdpError::TooShort(HEADER_LEN))
        );
        assert!(!format!("{alice:?}").contains('1'));
    }

    #[test]
    fn fields_are_little_endian_at_documented_offsets() {
        let mut buf = [0u8; HEADER_LEN + TAG_LEN];
        write(&sample(), &[], &K, &mut buf).unwrap();
        assert_eq!(buf[0], PROTOCOL_VERSION);
        assert_eq!(buf[1], 1);
        assert_eq!(buf[2], 0x03);
        assert_eq!(&buf[4..6], &[0xEF, 0xBE]);
        assert_eq!(&buf[8..12], &[0xEF, 0xBE, 0xAD, 0xDE]);
        assert_eq!(&buf[12..16], &[7, 0, 0, 0]);
        assert_eq!(&buf[16..20], &[9, 0, 0, 0]);
    }

    #[test]
    fn malformed_inputs_are_typed_errors() {
        assert_eq!(parse(&[]), Err(UdpError::TooShort(0)));
        assert_eq!(parse(&[1]), Err(UdpError::TooShort(1)));
        assert_eq!(parse(&[1; 19]), Err(UdpError::TooShort(19)));
        assert_eq!(parse(&[1; 27]), Err(UdpError::TooShort(27)));
        assert_eq!(
            parse(&[1; MAX_DATAGRAM + 1]),
            Err(UdpError::TooLong(MAX_DATAGRAM + 1))
        );
        let mut buf = [0u8; 40];
        write(&sample(), &[0; 12], &K, &mut buf).unwrap();
        let mut bad = buf;
        bad[0] = 1;
        assert_eq!(parse(&bad), Err(UdpError::UnsupportedVersion(1)));
        let mut bad = buf;
        bad[1] = 0xFF;
        assert_eq!(parse(&bad), Err(UdpError::UnknownKind(0xFF)));
        let mut bad = buf;
        bad[12..16].fill(0);
        assert_eq!(parse(&bad), Err(UdpError::NoSender));
    }

    #[test]
    fn write_rejects_small_buffers_and_oversized_payloads_untouched() {
        let mut small = [0xAAu8; 10];
        assert!(matches!(
            write(&sample(), &[], &K, &mut small),
            Err(UdpError::BufferTooSmall { need: 28, have: 10 })
        ));
        assert_eq!(small, [0xAA; 10]);
        let mut buf = [0u8; 2000];
        assert!(matches!(
            write(&sample(), &[0; MAX_PAYLOAD + 1], &K, &mut buf),
            Err(UdpError::TooLong(_))
        ));
    }

    #[test]
    fn positional_block_round_trips_after_the_header() {
        let mut buf = [0u8; MAX_DATAGRAM];
        let p = Position::new(1.5, -2.0, 1000.25);
        let n = write_positional(&sample(), Some(p), b"opus", &K, &mut buf).unwrap();
        assert_eq!(n, HEADER_LEN + POSITION_LEN + 4 + TAG_LEN);
        assert_eq!(buf[0], PROTOCOL_VERSION);
        assert_eq!(buf[2], 0x83);
        assert_eq!(&buf[20..24], &1.5f32.to_le_bytes());
        assert_eq!(&buf[24..28], &(-2.0f32).to_le_bytes());
        assert_eq!(&buf[28..32], &1000.25f32.to_le_bytes());
        assert_eq!(&buf[32..36], b"opus");
        let d = parse(&buf[..n]).unwrap();
        assert_eq!(d.position, Some(p));
        assert_eq!(d.payload, b"opus");
        assert_eq!(d.tag, K.tag(&buf[..n - TAG_LEN]));
        assert!(d.header.flags.contains(Flags::POSITIONAL));
        // The end-to-end metadata is the header and the block; `write_metadata` gives the same.
        assert_eq!(metadata(&buf[..n], &d), &buf[..HEADER_LEN + POSITION_LEN]);
        let mut head = [0u8; MAX_METADATA];
        assert_eq!(
            write_metadata(&d.header, d.position, &mut head),
            Ok(MAX_METADATA)
        );
        assert_eq!(&head[..], &buf[..MAX_METADATA]);
        // Re-encoding what was parsed gives the same bytes (the fuzz target's property).
        let mut again = [0u8; MAX_DATAGRAM];
        let m = write_positional(&d.header, d.position, d.payload, &K, &mut again).unwrap();
        assert_eq!(&again[..m], &buf[..n]);
        // `write` never emits the flag without the block.
        let n = write(&d.header, b"x", &K, &mut buf).unwrap();
        let d = parse(&buf[..n]).unwrap();
        assert_eq!((d.position, d.payload), (None, &b"x"[..]));
        assert_eq!(buf[2], 0x03);
    }

    #[test]
    fn the_tag_covers_the_positional_block() {
        let key = TagKey::derive(&[3; 32]);
        let mut buf = [0u8; MAX_DATAGRAM];
        let p = Position::new(4.0, 0.0, -8.0);
        let n = write_positional(&sample(), Some(p), b"opus", &key, &mut buf).unwrap();
        assert_eq!(key.verify(&buf[..n]), Ok(()));
        for i in HEADER_LEN..HEADER_LEN + POSITION_LEN {
            let mut moved = buf;
            moved[i] ^= 0x01;
            assert_eq!(key.verify(&moved[..n]), Err(UdpError::BadTag), "byte {i}");
        }
    }

    #[test]
    fn bad_positional_blocks_are_rejected() {
        let mut buf = [0u8; MAX_DATAGRAM];
        let n = write_positional(
            &sample(),
            Some(Position::new(0.0, 1.0, 2.0)),
            &[],
            &K,
            &mut buf,
        )
        .unwrap();
        assert_eq!(n, HEADER_LEN + POSITION_LEN + TAG_LEN);
        for cut in HEADER_LEN..n {
            let want = if cut < HEADER_LEN + TAG_LEN {
                UdpError::TooShort(cut)
            } else {
                UdpError::BadPosition
            };
            assert_eq!(parse(&buf[..cut]), Err(want), "cut at {cut}");
        }
        let mut nan = buf;
        nan[24..28].copy_from_slice(&f32::NAN.to_le_bytes());
        assert_eq!(parse(&nan[..n]), Err(UdpError::BadPosition));
        let mut inf = buf;
        inf[28..32].copy_from_slice(&f32::INFINITY.to_le_bytes());
        assert_eq!(parse(&inf[..n]), Err(UdpError::BadPosition));
        let mut out = [0xAAu8; 64];
        assert_eq!(
            write_positional(
                &sample(),
                Some(Position::new(f32::NAN, 0.0, 0.0)),
                &[],
                &K,
                &mut out
            ),
            Err(UdpError::BadPosition)
        );
        assert_eq!(out, [0xAA; 64]);
        let mut small = [0xAAu8; HEADER_LEN + POSITION_LEN + TAG_LEN - 1];
        assert_eq!(
            write_positional(&sample(), Some(Position::default()), &[], &K, &mut small),
            Err(UdpError::BufferTooSmall {
                need: HEADER_LEN + POSITION_LEN + TAG_LEN,
                have: HEADER_LEN + POSITION_LEN + TAG_LEN - 1
            })
        );
        assert_eq!(small, [0xAA; HEADER_LEN + POSITION_LEN + TAG_LEN - 1]);
    }

    #[test]
    fn reserved_bytes_are_ignored_on_receipt() {
        let mut buf = [0u8; HEADER_LEN + TAG_LEN];
        write(&sample(), &[], &K, &mut buf).unwrap();
        buf[3] = 0x55;
        buf[6] = 0x66;
        assert_eq!(parse(&buf).unwrap().header, sample());
    }
}
