//! The TCP control plane: length-prefixed frames carrying postcard-encoded events.
//!
//! A frame is a 4-byte little-endian body length followed by the body. The length is checked
//! against the direction's cap ([`Message::MAX_BODY`]: [`MAX_CLIENT_FRAME`] for what the relay
//! accepts from the internet, [`MAX_SERVER_FRAME`] for what a client accepts from its relay, which
//! must hold a whole channel listing) before anything is buffered for it, so a hostile prefix
//! (say 4 GiB) costs nothing but a closed connection. Bodies are [postcard](https://docs.rs/postcard) encodings of
//! [`ClientMessage`] (client → relay) and [`ServerMessage`] (relay → client): a compact, well-kept
//! serde format whose decoder validates UTF-8 and never trusts a length beyond the bytes it has.

use std::io::{self, Read, Write};
use std::marker::PhantomData;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use thiserror::Error;

use super::register::Secret;
use super::{ChannelId, SessionToken};
use crate::attenuation::{Attenuation, DistanceModel, SpatialError};

/// Version number exchanged in `Hello`; bumped on any incompatible change of these messages.
/// Version 2 added the access token to `Hello`; version 3 the stable user id and voice state
/// in [`UserInfo`], [`ClientMessage::SetVoiceState`] and [`ServerMessage::UserState`].
pub const CONTROL_VERSION: u16 = 3;
/// Longest access token in bytes accepted in `Hello`.
pub const MAX_TOKEN_LEN: usize = 4096;
/// Cap on a client → relay frame body in bytes (the largest, a chat line, needs about 2 KiB).
pub const MAX_CLIENT_FRAME: usize = 64 * 1024;
/// Cap on a relay → client frame body in bytes: `Welcome` and `ChannelList` carry every user, so
/// this bounds how many users one relay can list (see [`listing_bound`]): about 13,500 with
/// 64-byte names and user ids.
pub const MAX_SERVER_FRAME: usize = 2 * 1024 * 1024;
/// Length of the frame prefix.
pub const PREFIX_LEN: usize = 4;
/// Longest user name in bytes (UTF-8).
pub const MAX_NAME_LEN: usize = 64;
/// Longest chat message in bytes (UTF-8).
pub const MAX_CHAT_LEN: usize = 2000;
/// Longest stable user id in bytes (UTF-8): a relay refuses an access token whose `sub` is
/// longer.
pub const MAX_USER_ID_LEN: usize = 64;

/// What a user does with their own microphone and speakers, shown to everyone in their channel
/// (the relay stores and passes it on; it forwards voice the same either way).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VoiceState {
    /// The user muted their microphone (sends no voice).
    pub muted: bool,
    /// The user silenced their output (hears nobody).
    pub deafened: bool,
}

/// A user as other users see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// The user's session token (needed to whisper to them); new on every connection.
    pub session: SessionToken,
    /// Display name.
    pub name: String,
    /// Stable user id: the same on every connection and relay restart (the access token's
    /// `sub`; in open mode the name), at most [`MAX_USER_ID_LEN`] bytes. Keep per-user
    /// preferences (volume, local mute) by it.
    pub user_id: String,
    /// Their microphone and speaker state.
    pub state: VoiceState,
}

/// A channel and, where the message says so, its members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelInfo {
    /// Channel id.
    pub id: ChannelId,
    /// Display name.
    pub name: String,
    /// Members at the time the message was made.
    pub users: Vec<UserInfo>,
}

/// How a 3D channel attenuates and culls voices, announced by [`ServerMessage::ChannelSpatial`].
/// Distances and the rolloff are in thousandths (of a game unit), so the message stays exact and
/// comparable; [`SpatialInfo::attenuation`] gives the renderer's `f32` form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpatialInfo {
    /// The distance model.
    pub model: DistanceModel,
    /// Distance below which the gain is 1, in thousandths of a game unit.
    pub min_distance_milli: u32,
    /// Audible range: beyond it a voice is silent and the relay does not forward it; thousandths.
    pub max_distance_milli: u32,
    /// Rolloff factor in thousandths (1000 = the model's natural slope).
    pub rolloff_milli: u32,
}

impl SpatialInfo {
    /// The renderer's form. `Err` when the values make no valid attenuation (min 0, min ≥ max).
    pub fn attenuation(&self) -> Result<Attenuation, SpatialError> {
        let a = Attenuation {
            model: self.model,
            min_distance: self.min_distance_milli as f32 / 1000.0,
            max_distance: self.max_distance_milli as f32 / 1000.0,
            rolloff: self.rolloff_milli as f32 / 1000.0,
        };
        a.validate().map(|()| a)
    }

    /// The wire form of `a`, rounded to thousandths. `Err` when `a` is invalid or a value does not
    /// fit (over about 4.29 million units).
    pub fn from_attenuation(a: &Attenuation) -> Result<Self, SpatialError> {
        a.validate()?;
        let milli = |v: f32| {
            let m = (f64::from(v) * 1000.0).round();
            (0.0..=f64::from(u32::MAX))
                .contains(&m)
                .then_some(m as u32)
                .ok_or(SpatialError::BadAttenuation)
        };
        let info = SpatialInfo {
            model: a.model,
            min_distance_milli: milli(a.min_distance)?,
            max_distance_milli: milli(a.max_distance)?,
            rolloff_milli: milli(a.rolloff)?,
        };
        info.attenuation().map(|_| info)
    }
}

/// Machine-readable reason carried by [`ServerMessage::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The frame did not decode as a message.
    Malformed,
    /// A message other than `Hello` arrived before the handshake, or `Hello` twice.
    Handshake,
    /// The client speaks an incompatible control version.
    Version,
    /// Name empty, too long, or with control characters.
    BadName,
    /// Chat too long or empty.
    BadChat,
    /// No such channel.
    NoSuchChannel,
    /// The action needs the sender to be in a channel.
    NotInChannel,
    /// The relay is full.
    Full,
    /// Too many requests.
    RateLimited,
    /// No such session.
    NoSuchSession,
    /// `Hello` carried no access token, or one the relay does not accept (bad signature,
    /// unknown key, expired, not yet valid, wrong audience, `alg` other than EdDSA).
    Unauthorized,
    /// The session's token does not allow this action (a channel outside its list, a whisper
    /// outside its scope, an admin action without the admin claim).
    Forbidden,
    /// Scale-out: the room's placement could not be decided (Redis
    /// unreachable); try again later.
    Placement,
    /// E2EE: an end-to-end identity or wrapped-key blob was too large, or its
    /// recipient is not in the sender's channel.
    BadE2eeBlob,
    /// Permissions: the channel has reached its member cap (`max_members`).
    ChannelFull,
    /// Permissions: the channel admits only the token subjects on its allow-list.
    NotAllowed,
    /// Permissions: another user in the channel already uses this display name (compared
    /// without case, after trimming spaces).
    NameTaken,
    /// Permissions: this user (token subject; in open mode the name) is banned from the relay
    /// for a while (`Hello` refused; the text says how long).
    Banned,
}

/// Longest kick or ban reason in bytes the relay passes on (a longer one is cut at a character
/// boundary).
pub const MAX_REASON_LEN: usize = 200;

/// Why the relay ends a session with [`ServerMessage::Removed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Removal {
    /// An admin kicked the session (it may connect again).
    Kicked,
    /// An admin banned the user: `Hello` is refused with `Error{Banned}` until the ban ends.
    Banned,
    /// The session's access token expired (`exp` plus the relay's leeway passed).
    TokenExpired,
}

/// An access token (a JWT) as carried in `Hello`. On the wire exactly a string; its `Debug`
/// shows only its length, so a logged message never reveals a token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccessToken(pub String);

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AccessToken(<{} bytes>)", self.0.len())
    }
}

impl AccessToken {
    /// The token text (for the verifier; never log it).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Client → relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMessage {
    /// First message on a connection.
    Hello {
        /// [`CONTROL_VERSION`] of the client.
        version: u16,
        /// Requested display name (a relay that checks tokens uses the token's `name` claim).
        name: String,
        /// The access token (`None`: only a relay in open mode admits the client).
        token: Option<AccessToken>,
    },
    /// Join (or switch to) a channel.
    JoinChannel {
        /// Channel to join.
        channel: ChannelId,
    },
    /// Leave the current channel.
    LeaveChannel,
    /// Send a chat line to the current channel.
    Chat {
        /// The text (UTF-8, at most [`MAX_CHAT_LEN`] bytes).
        text: String,
    },
    /// Round-trip probe; answered by [`ServerMessage::Pong`].
    Ping {
        /// Opaque client time echoed back.
        client_time_us: u64,
    },
    /// Ask for every channel with its members; answered by [`ServerMessage::ChannelList`].
    ListChannels,
    /// Ask for the relay's counters; answered by [`ServerMessage::Stats`].
    StatsRequest,
    /// Tell a sender how its stream arrives here (drives its FEC and bitrate).
    ReceiverReport {
        /// Whose stream this report is about.
        sender: SessionToken,
        /// Loss over the last 10 s in 1/1000.
        loss_permille: u16,
        /// Interarrival jitter in milliseconds.
        jitter_ms: u16,
    },
    /// Polite disconnect.
    Goodbye,
    /// E2EE: this client's public identity, an opaque blob of at most
    /// [`MAX_E2EE_IDENTITY`] bytes. The relay stores it and shows it to the channel's members.
    E2eeIdentity {
        /// The blob (an X25519 public key, see `voice_core::e2ee::identity`).
        blob: Vec<u8>,
    },
    /// E2EE: sender keys wrapped per member, each an opaque blob of at most
    /// [`MAX_E2EE_KEY_BLOB`] bytes, delivered only to recipients in the sender's channel.
    E2eeKeys {
        /// (recipient, blob) pairs.
        keys: Vec<(SessionToken, Vec<u8>)>,
    },
    /// Tunnel fallback: `active` puts this session's voice on the control connection (`true`:
    /// the relay sends it voice as [`ServerMessage::Tunnel`] from now on) or back on UDP
    /// (`false`); `datagram`, when not empty, is one voice datagram byte for byte as it would
    /// have gone over UDP (version 2, tag included), checked and forwarded like one.
    Tunnel {
        /// The session wants its voice over the control connection.
        active: bool,
        /// One whole UDP datagram (header, payload and tag), or empty.
        datagram: Vec<u8>,
    },
    /// Permissions: end `session`'s session (it gets [`ServerMessage::Removed`], its channel
    /// `UserLeft`). Needs the `admin` claim; otherwise `Error{Forbidden}`.
    Kick {
        /// Whom to remove.
        session: SessionToken,
        /// Shown to the removed user (at most [`MAX_REASON_LEN`] bytes are passed on).
        reason: String,
    },
    /// Permissions: kick `session` and refuse its user (token subject; in open mode its name)
    /// at `Hello` for `duration_secs` (0: the relay's default; capped by the relay's maximum).
    /// Needs the `admin` claim.
    Ban {
        /// Whom to remove.
        session: SessionToken,
        /// Shown to the removed user (at most [`MAX_REASON_LEN`] bytes are passed on).
        reason: String,
        /// How long the ban lasts in seconds (0: the relay's default).
        duration_secs: u32,
    },
    /// This client muted or deafened itself (or undid it): the relay stores it (shown in
    /// [`UserInfo::state`]) and tells the channel with [`ServerMessage::UserState`].
    SetVoiceState {
        /// The new state.
        state: VoiceState,
    },
}

/// Largest end-to-end identity blob the relay stores.
pub const MAX_E2EE_IDENTITY: usize = 64;
/// Largest wrapped sender-key blob the relay forwards.
pub const MAX_E2EE_KEY_BLOB: usize = 256;

/// Relay → client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerMessage {
    /// Answer to `Hello`: who you are and how to prove it over UDP.
    Welcome {
        /// Your session token.
        session: SessionToken,
        /// The secret for UDP registration (see [`super::register`]).
        secret: Secret,
        /// Name the relay accepted for you.
        name: String,
        /// Channels with their members.
        channels: Vec<ChannelInfo>,
        /// Channel a client joins unless told otherwise.
        default_channel: ChannelId,
        /// Relay clock in milliseconds.
        server_time_ms: u64,
    },
    /// You are now in `channel`, with these members (you included).
    Joined {
        /// The channel joined.
        channel: ChannelInfo,
    },
    /// You left your channel.
    Left {
        /// The channel left.
        channel: ChannelId,
    },
    /// Someone entered your channel.
    UserJoined {
        /// The channel.
        channel: ChannelId,
        /// Who.
        user: UserInfo,
    },
    /// Someone left your channel (switched, left, disconnected or timed out).
    UserLeft {
        /// The channel.
        channel: ChannelId,
        /// Who.
        session: SessionToken,
    },
    /// A chat line in your channel.
    Chat {
        /// The channel.
        channel: ChannelId,
        /// Sender's session.
        from: SessionToken,
        /// Sender's name at the time.
        from_name: String,
        /// The text.
        text: String,
        /// Relay clock in milliseconds when the line was routed.
        server_time_ms: u64,
    },
    /// Answer to `Ping`.
    Pong {
        /// The client's value, echoed.
        client_time_us: u64,
        /// Relay clock in milliseconds.
        server_time_ms: u64,
    },
    /// Every channel with its members.
    ChannelList {
        /// The channels.
        channels: Vec<ChannelInfo>,
    },
    /// A receiver's report about your stream.
    ReceiverReport {
        /// Who is reporting.
        from: SessionToken,
        /// Loss over the last 10 s in 1/1000.
        loss_permille: u16,
        /// Interarrival jitter in milliseconds.
        jitter_ms: u16,
    },
    /// The relay's counters as (name, value) pairs.
    Stats {
        /// Counters.
        counters: Vec<(String, u64)>,
    },
    /// A request failed; the connection stays open unless the relay says otherwise.
    Error {
        /// What went wrong.
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
    },
    /// E2EE: a channel member's public identity blob (when it announces one, and
    /// for every member when this client joins).
    E2eeIdentity {
        /// Whose identity.
        session: SessionToken,
        /// The opaque blob, exactly as announced.
        blob: Vec<u8>,
    },
    /// E2EE: a sender key wrapped for this client by `from`.
    E2eeKey {
        /// The sender.
        from: SessionToken,
        /// The opaque blob, exactly as sent.
        blob: Vec<u8>,
    },
    /// Scale-out: the room asked for with `JoinChannel` is hosted by
    /// another relay of the cluster; reconnect there (same name) and join it again.
    Redirect {
        /// The room.
        channel: ChannelId,
        /// The hosting relay's address, `IP:PORT` (TCP control and UDP voice).
        relay: String,
    },
    /// Tunnel fallback: one voice datagram, byte for byte as the relay would have sent it over
    /// UDP (version 2, tagged with this session's key), for a session whose voice is on the
    /// control connection.
    Tunnel {
        /// One whole UDP datagram (header, payload and tag).
        datagram: Vec<u8>,
    },
    /// Positional audio: the channel just joined is 3D: render its voices by position with these
    /// settings (sent right after [`ServerMessage::Joined`]; a `Joined` without it means a 2D
    /// channel).
    ChannelSpatial {
        /// The channel.
        channel: ChannelId,
        /// Its distance model and audible range.
        spatial: SpatialInfo,
    },
    /// Permissions: the relay ends this session (kicked, banned, or its token expired); the
    /// connection closes after this message. A client should not reconnect on its own.
    Removed {
        /// Why.
        removal: Removal,
        /// Display name of the admin who did it (empty when the relay did, e.g. at token expiry).
        by: String,
        /// The admin's reason (may be empty), or the relay's explanation.
        reason: String,
        /// For a ban: how long it lasts in seconds (0 otherwise).
        ban_secs: u32,
    },
    /// Permissions: answer to the admin's `Kick` or `Ban`: the session is gone.
    UserRemoved {
        /// The removed session.
        session: SessionToken,
        /// Its display name.
        name: String,
        /// Length of the ban in seconds (0: a kick).
        ban_secs: u32,
    },
    /// Scale-out: every member of `channel`, complete, replacing the list shown before: this
    /// relay's own sessions, then the members hosted by another relay of the cluster (sessions
    /// at or above [`FIRST_REMOTE_SESSION`](crate::FIRST_REMOTE_SESSION)). Sent by a
    /// relay in a cluster to every session whenever that list changes.
    ChannelMembers {
        /// The channel.
        channel: ChannelId,
        /// The `IP:PORT` of the relay hosting it (empty when none is known, e.g. nobody is in
        /// it).
        relay: String,
        /// Its members, under tokens of the relay this message comes from.
        users: Vec<UserInfo>,
    },
    /// A member of your channel (you included) muted or deafened themselves, or undid it.
    UserState {
        /// The channel.
        channel: ChannelId,
        /// Who.
        session: SessionToken,
        /// Their new state.
        state: VoiceState,
    },
}

/// Why a frame could not be read or written.
#[derive(Debug, Error)]
pub enum FrameError {
    /// The length exceeds the direction's cap; the stream cannot be resynchronised.
    #[error("frame length {len} exceeds the {max}-byte maximum")]
    TooLarge {
        /// The length found (or the bytes that would have been buffered).
        len: u64,
        /// The cap.
        max: usize,
    },
    /// The body did not decode; the frame has been consumed and the stream is still in sync.
    #[error("malformed frame body: {0}")]
    Malformed(#[from] postcard::Error),
    /// Reading from the stream failed.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
}

/// A message type of one direction, with the cap on its frame bodies.
pub trait Message: Serialize + DeserializeOwned {
    /// Largest body encoded or accepted for this type.
    const MAX_BODY: usize;
}

impl Message for ClientMessage {
    const MAX_BODY: usize = MAX_CLIENT_FRAME;
}

impl Message for ServerMessage {
    const MAX_BODY: usize = MAX_SERVER_FRAME;
}

/// An upper bound on the body of a `Welcome` or `ChannelList` listing channels whose names have
/// these lengths in bytes and `users` users (with names of up to [`MAX_NAME_LEN`] bytes and ids
/// of up to [`MAX_USER_ID_LEN`]). A relay
/// checks its configuration against [`MAX_SERVER_FRAME`] with it.
pub fn listing_bound(channel_name_lens: impl IntoIterator<Item = usize>, users: usize) -> usize {
    // postcard: u32 and usize lengths are varints of at most 5 (u32) or 10 (u64) bytes.
    const VARINT_U32: usize = 5;
    const VARINT_U64: usize = 10;
    // Welcome: variant, session, secret, name, channel count, default channel, server time.
    let fixed =
        1 + VARINT_U32 + 32 + VARINT_U64 + MAX_NAME_LEN + VARINT_U64 + VARINT_U32 + VARINT_U64;
    // Session, name, user id, voice state (two bools).
    let per_user = VARINT_U32 + VARINT_U64 + MAX_NAME_LEN + VARINT_U64 + MAX_USER_ID_LEN + 2;
    let channels: usize = channel_name_lens
        .into_iter()
        .map(|n| VARINT_U32 + VARINT_U64 + n + VARINT_U64)
        .sum();
    fixed + channels + users * per_user
}

/// Appends one framed message to `out`; a body over `M`'s cap is refused and nothing is appended.
pub fn encode_frame<M: Message>(msg: &M, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; PREFIX_LEN]);
    // Serialise through `&mut Vec` so that on failure the bytes already queued are still there.
    if let Err(e) = postcard::to_io(msg, &mut *out) {
        out.truncate(start);
        return Err(FrameError::Malformed(e));
    }
    let body = out.len() - start - PREFIX_LEN;
    if body > M::MAX_BODY {
        out.truncate(start);
        return Err(FrameError::TooLarge {
            len: body as u64,
            max: M::MAX_BODY,
        });
    }
    out[start..start + PREFIX_LEN].copy_from_slice(&(body as u32).to_le_bytes());
    Ok(())
}

/// Framed messages waiting to be written to a non-blocking stream.
///
/// Written bytes are reclaimed as they go: the queue compacts once the written prefix reaches
/// [`FrameQueue::COMPACT_AT`] (a peer that reads slowly but never catches up would otherwise grow
/// the buffer without bound), and a queue that has drained gives back capacity above
/// [`FrameQueue::KEEP_CAPACITY`] (one burst does not pin memory for the life of the connection).
#[derive(Debug, Default)]
pub struct FrameQueue {
    buf: Vec<u8>,
    pos: usize,
}

impl FrameQueue {
    /// Written-prefix size at which the pending bytes are moved to the front.
    pub const COMPACT_AT: usize = 64 * 1024;
    /// Capacity kept once the queue has drained.
    pub const KEEP_CAPACITY: usize = 16 * 1024;

    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one framed message (see [`encode_frame`]).
    pub fn push<M: Message>(&mut self, msg: &M) -> Result<(), FrameError> {
        encode_frame(msg, &mut self.buf)
    }

    /// Bytes queued and not yet written.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether everything queued has been written.
    pub fn is_empty(&self) -> bool {
        self.pending() == 0
    }

    /// Bytes of memory held (for limits and tests).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Writes until the queue is empty or `w` would block. `Ok`: the bytes written this call.
    /// A write of zero bytes is `WriteZero`; other errors are returned as they come.
    pub fn write_to<W: Write>(&mut self, w: &mut W) -> io::Result<usize> {
        let mut written = 0;
        while !self.is_empty() {
            match w.write(&self.buf[self.pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    written += n;
                    self.consume(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(written)
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            if self.buf.capacity() > Self::KEEP_CAPACITY {
                self.buf.shrink_to(Self::KEEP_CAPACITY);
            }
        } else if self.pos >= Self::COMPACT_AT {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }
}

/// Reassembles frames of `M` from a byte stream, holding at most one frame (plus prefix) in
/// memory.
///
/// Feed bytes with [`FrameReader::read_from`] or [`FrameReader::push`], then call
/// [`FrameReader::next_message`] until it returns `Ok(None)`.
#[derive(Debug)]
pub struct FrameReader<M> {
    buf: Vec<u8>,
    start: usize,
    message: PhantomData<fn() -> M>,
}

impl<M: Message> Default for FrameReader<M> {
    fn default() -> Self {
        FrameReader {
            buf: Vec::new(),
            start: 0,
            message: PhantomData,
        }
    }
}

impl<M: Message> FrameReader<M> {
    /// An empty reader.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes buffered and not yet consumed.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// How many more bytes may be buffered before the cap is reached.
    pub fn room(&self) -> usize {
        (PREFIX_LEN + M::MAX_BODY).saturating_sub(self.buffered())
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }

    /// Appends bytes received from the stream. Fails (buffering nothing) when they exceed [`Self::room`].
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), FrameError> {
        if bytes.len() > self.room() {
            return Err(FrameError::TooLarge {
                len: (self.buffered() + bytes.len()) as u64,
                max: M::MAX_BODY,
            });
        }
        self.compact();
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// Reads once from `r` into the free room. Returns the bytes read (0 = end of stream).
    pub fn read_from<R: Read>(&mut self, r: &mut R) -> io::Result<usize> {
        self.compact();
        let room = self.room();
        if room == 0 {
            return Ok(0);
        }
        let old = self.buf.len();
        let chunk = room.min(16 * 1024);
        self.buf.resize(old + chunk, 0);
        match r.read(&mut self.buf[old..]) {
            Ok(n) => {
                self.buf.truncate(old + n);
                Ok(n)
            }
            Err(e) => {
                self.buf.truncate(old);
                Err(e)
            }
        }
    }

    /// The next complete frame's body, if any, checked against the cap.
    fn next_body(&mut self) -> Result<Option<(usize, usize)>, FrameError> {
        let avail = &self.buf[self.start..];
        if avail.len() < PREFIX_LEN {
            return Ok(None);
        }
        let len = u32::from_le_bytes([avail[0], avail[1], avail[2], avail[3]]) as usize;
        if len > M::MAX_BODY {
            return Err(FrameError::TooLarge {
                len: len as u64,
                max: M::MAX_BODY,
            });
        }
        if avail.len() < PREFIX_LEN + len {
            return Ok(None);
        }
        let body_start = self.start + PREFIX_LEN;
        self.start = body_start + len;
        Ok(Some((body_start, len)))
    }

    /// Decodes the next complete message. `Ok(None)`: need more bytes. `Err(Malformed)`: that
    /// frame was skipped and the reader is still usable. `Err(TooLarge)`: close the connection.
    pub fn next_message(&mut self) -> Result<Option<M>, FrameError> {
        match self.next_body()? {
            None => Ok(None),
            Some((at, len)) => {
                let body = &self.buf[at..at + len];
                match postcard::from_bytes::<M>(body) {
                    Ok(m) => Ok(Some(m)),
                    Err(e) => Err(FrameError::Malformed(e)),
                }
            }
        }
    }
}

/// Checks a display name: 1..=[`MAX_NAME_LEN`] bytes, no control characters, not only spaces.
pub fn validate_name(name: &str) -> bool {
    !name.trim().is_empty() && name.len() <= MAX_NAME_LEN && !name.chars().any(char::is_control)
}

/// Checks a chat line: 1..=[`MAX_CHAT_LEN`] bytes.
pub fn validate_chat(text: &str) -> bool {
    !text.is_empty() && text.len() <= MAX_CHAT_LEN
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_client_messages() -> Vec<ClientMessage> {
        vec![
            ClientMessage::Hello {
                version: CONTROL_VERSION,
                name: "ännä".into(),
                token: Some(AccessToken("a.b.c".into())),
            },
            ClientMessage::JoinChannel {
                channel: ChannelId(3),
            },
            ClientMessage::LeaveChannel,
            ClientMessage::Chat { text: "hi".into() },
            ClientMessage::Ping { client_time_us: 42 },
            ClientMessage::ListChannels,
            ClientMessage::StatsRequest,
            ClientMessage::ReceiverReport {
                sender: SessionToken(2),
                loss_permille: 50,
                jitter_ms: 7,
            },
            ClientMessage::Goodbye,
            ClientMessage::Kick {
                session: SessionToken(4),
                reason: "spam".into(),
            },
            ClientMessage::Ban {
                session: SessionToken(4),
                reason: String::new(),
                duration_secs: 600,
            },
            ClientMessage::SetVoiceState {
                state: VoiceState {
                    muted: true,
                    deafened: true,
                },
            },
        ]
    }

    fn all_server_messages() -> Vec<ServerMessage> {
        let user = UserInfo {
            session: SessionToken(1),
            name: "a".into(),
            user_id: "u-1".into(),
            state: VoiceState {
                muted: true,
                deafened: false,
            },
        };
        let chan = ChannelInfo {
            id: ChannelId(1),
            name: "Lobby".into(),
            users: vec![user.clone()],
        };
        vec![
            ServerMessage::Welcome {
                session: SessionToken(1),
                secret: [9; 32],
                name: "a".into(),
                channels: vec![chan.clone()],
                default_channel: ChannelId(1),
                server_time_ms: 5,
            },
            ServerMessage::Joined {
                channel: chan.clone(),
            },
            ServerMessage::Left {
                channel: ChannelId(1),
            },
            ServerMessage::UserJoined {
                channel: ChannelId(1),
                user,
            },
            ServerMessage::UserLeft {
                channel: ChannelId(1),
                session: SessionToken(1),
            },
            ServerMessage::Chat {
                channel: ChannelId(1),
                from: SessionToken(1),
                from_name: "a".into(),
                text: "x".into(),
                server_time_ms: 1,
            },
            ServerMessage::Pong {
                client_time_us: 1,
                server_time_ms: 2,
            },
            ServerMessage::ChannelList {
                channels: vec![chan],
            },
            ServerMessage::ReceiverReport {
                from: SessionToken(3),
                loss_permille: 1,
                jitter_ms: 2,
            },
            ServerMessage::Stats {
                counters: vec![("x".into(), 1)],
            },
            ServerMessage::Error {
                code: ErrorCode::BadChat,
                message: "too long".into(),
            },
            ServerMessage::Removed {
                removal: Removal::Banned,
                by: "admin".into(),
                reason: "spam".into(),
                ban_secs: 600,
            },
            ServerMessage::UserRemoved {
                session: SessionToken(4),
                name: "troll".into(),
                ban_secs: 0,
            },
            ServerMessage::ChannelMembers {
                channel: ChannelId(2),
                relay: "127.0.0.1:7401".into(),
                users: vec![UserInfo {
                    session: SessionToken(0x8000_0001),
                    name: "carol".into(),
                    user_id: "carol".into(),
                    state: VoiceState::default(),
                }],
            },
            ServerMessage::UserState {
                channel: ChannelId(2),
                session: SessionToken(4),
                state: VoiceState {
                    muted: false,
                    deafened: true,
                },
            },
        ]
    }

    #[test]
    fn every_message_round_trips_through_frames_split_anywhere() {
        let mut wire = Vec::new();
        for m in all_client_messages() {
            encode_frame(&m, &mut wire).unwrap();
        }
        for split in [1usize, 3, 7, wire.len()] {
            let mut reader = FrameReader::<ClientMessage>::new();
            let mut got = Vec::new();
            for chunk in wire.chunks(split) {
                reader.push(chunk).unwrap();
                while let Some(m) = reader.next_message().unwrap() {
                    got.push(m);
                }
            }
            assert_eq!(got, all_client_messages());
            assert_eq!(reader.buffered(), 0);
        }
        let mut wire = Vec::new();
        for m in all_server_messages() {
            encode_frame(&m, &mut wire).unwrap();
        }
        let mut reader = FrameReader::<ServerMessage>::new();
        reader.push(&wire).unwrap();
        let mut got = Vec::new();
        while let Some(m) = reader.next_message().unwrap() {
            got.push(m);
        }
        assert_eq!(got, all_server_messages());
    }

    #[test]
    fn huge_length_prefix_is_rejected_without_buffering_a_body() {
        let mut reader = FrameReader::<ClientMessage>::new();
        reader.push(&u32::MAX.to_le_bytes()).unwrap();
        assert!(matches!(
            reader.next_message(),
            Err(FrameError::TooLarge {
                len: 0xFFFF_FFFF,
                max: MAX_CLIENT_FRAME
            })
        ));
        assert!(reader.buffered() <= PREFIX_LEN);
    }

    #[test]
    fn push_beyond_the_cap_is_refused() {
        let mut reader = FrameReader::<ClientMessage>::new();
        assert!(reader
            .push(&vec![0u8; PREFIX_LEN + MAX_CLIENT_FRAME + 1])
            .is_err());
        assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn malformed_body_is_skipped_and_stream_stays_in_sync() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&3u32.to_le_bytes());
        wire.extend_from_slice(&[0xFF, 0xFF, 0xFF]);
        // A Chat whose string bytes are invalid UTF-8.
        let mut chat = Vec::new();
        encode_frame(&ClientMessage::Chat { text: "ab".into() }, &mut chat).unwrap();
        let n = chat.len();
        chat[n - 2] = 0xC3;
        chat[n - 1] = 0x28;
        wire.extend_from_slice(&chat);
        encode_frame(&ClientMessage::LeaveChannel, &mut wire).unwrap();
        let mut reader = FrameReader::<ClientMessage>::new();
        reader.push(&wire).unwrap();
        assert!(matches!(
            reader.next_message(),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            reader.next_message(),
            Err(FrameError::Malformed(_))
        ));
        assert_eq!(
            reader.next_message().unwrap(),
            Some(ClientMessage::LeaveChannel)
        );
    }

    #[test]
    fn half_sent_frame_waits_for_the_rest() {
        let mut wire = Vec::new();
        encode_frame(
            &ClientMessage::Chat {
                text: "hello".into(),
            },
            &mut wire,
        )
        .unwrap();
        let mut reader = FrameReader::<ClientMessage>::new();
        reader.push(&wire[..wire.len() - 1]).unwrap();
        assert!(reader.next_message().unwrap().is_none());
        reader.push(&wire[wire.len() - 1..]).unwrap();
        assert!(reader.next_message().unwrap().is_some());
    }

    #[test]
    fn oversized_message_is_not_encoded() {
        let mut out = vec![1, 2];
        let big = ClientMessage::Chat {
            text: "x".repeat(MAX_CLIENT_FRAME + 1),
        };
        assert!(matches!(
            encode_frame(&big, &mut out),
            Err(FrameError::TooLarge { .. })
        ));
        assert_eq!(out, vec![1, 2]);
    }

    #[test]
    fn a_listing_of_every_user_fits_the_server_cap_and_its_bound() {
        // 12,000 users with the longest names and ids, over three channels with long names.
        let names = ["x".repeat(200), "Team A".into(), "y".repeat(64)];
        let users = 12_000usize;
        let mut channels: Vec<ChannelInfo> = names
            .iter()
            .enumerate()
            .map(|(i, n)| ChannelInfo {
                id: ChannelId(u32::MAX - i as u32),
                name: n.clone(),
                users: Vec::new(),
            })
            .collect();
        for u in 0..users {
            channels[u % 3].users.push(UserInfo {
                session: SessionToken(u32::MAX - u as u32),
                name: "n".repeat(MAX_NAME_LEN),
                user_id: "i".repeat(MAX_USER_ID_LEN),
                state: VoiceState {
                    muted: true,
                    deafened: true,
                },
            });
        }
        let welcome = ServerMessage::Welcome {
            session: SessionToken(u32::MAX),
            secret: [0xFF; 32],
            name: "n".repeat(MAX_NAME_LEN),
            channels,
            default_channel: ChannelId(u32::MAX),
            server_time_ms: u64::MAX,
        };
        let mut wire = Vec::new();
        encode_frame(&welcome, &mut wire).unwrap();
        let body = wire.len() - PREFIX_LEN;
        let bound = listing_bound(names.iter().map(String::len), users);
        assert!(body <= bound, "{body} > {bound}");
        assert!(bound <= MAX_SERVER_FRAME);
        // A client reads it; the relay's reader would refuse a frame that size from a client.
        let mut reader = FrameReader::<ServerMessage>::new();
        reader.push(&wire).unwrap();
        assert_eq!(reader.next_message().unwrap(), Some(welcome));
        let mut relay_side = FrameReader::<ClientMessage>::new();
        relay_side.push(&wire[..PREFIX_LEN]).unwrap();
        assert!(matches!(
            relay_side.next_message(),
            Err(FrameError::TooLarge { .. })
        ));
    }

    /// A writer that accepts at most `per_call` bytes, then would block after `calls` writes.
    struct Trickle {
        got: Vec<u8>,
        per_call: usize,
        calls: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.calls == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls -= 1;
            let n = b.len().min(self.per_call);
            self.got.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_queue_read_slowly_but_never_empty_stays_bounded_and_in_order() {
        let mut q = FrameQueue::new();
        let mut peer = Trickle {
            got: Vec::new(),
            per_call: 1000,
            calls: 0,
        };
        let msg = ClientMessage::Chat {
            text: "x".repeat(500),
        };
        let mut sent = 0usize;
        // The peer reads a little less than is queued each round: the queue never drains.
        for _ in 0..5000 {
            q.push(&msg).unwrap();
            q.push(&msg).unwrap();
            sent += 2;
            peer.calls = 1;
            q.write_to(&mut peer).unwrap();
            assert!(q.pending() > 0);
            assert!(q.capacity() <= 2 * (FrameQueue::COMPACT_AT + q.pending()) + 4096);
        }
        peer.calls = usize::MAX;
        peer.per_call = usize::MAX;
        q.write_to(&mut peer).unwrap();
        assert!(q.is_empty());
        assert!(q.capacity() <= FrameQueue::KEEP_CAPACITY);
        let mut reader = FrameReader::<ClientMessage>::new();
        let mut got = 0;
        for chunk in peer.got.chunks(50_000) {
            reader.push(chunk).unwrap();
            while let Some(m) = reader.next_message().unwrap() {
                assert_eq!(m, msg);
                got += 1;
            }
        }
        assert_eq!(got, sent);
    }

    /// A message whose serialisation always fails.
    #[derive(Debug, Deserialize)]
    struct Unencodable;

    impl Serialize for Unencodable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("cannot encode"))
        }
    }

    impl Message for Unencodable {
        const MAX_BODY: usize = MAX_CLIENT_FRAME;
    }

    #[test]
    fn a_failed_encoding_keeps_what_was_queued() {
        let mut out = Vec::new();
        encode_frame(&ClientMessage::LeaveChannel, &mut out).unwrap();
        let queued = out.clone();
        assert!(matches!(
            encode_frame(&Unencodable, &mut out),
            Err(FrameError::Malformed(_))
        ));
        assert_eq!(out, queued);
    }

    #[test]
    fn a_token_is_a_plain_string_on_the_wire_and_never_in_debug_output() {
        let with = ClientMessage::Hello {
            version: CONTROL_VERSION,
            name: "a".into(),
            token: Some(AccessToken("secret.jwt.sig".into())),
        };
        let body = postcard::to_allocvec(&with).unwrap();
        // variant 0, version 3, name "a", Some, "secret.jwt.sig"
        assert_eq!(&body[..5], &[0, 3, 1, b'a', 1]);
        assert_eq!(body[5] as usize, "secret.jwt.sig".len());
        assert!(!format!("{with:?}").contains("secret"));
    }

    #[test]
    fn names_and_chat_are_validated() {
        assert!(validate_name("Ann"));
        assert!(!validate_name(""));
        assert!(!validate_name("   "));
        assert!(!validate_name("a\nb"));
        assert!(!validate_name(&"x".repeat(MAX_NAME_LEN + 1)));
        assert!(validate_chat("hi"));
        assert!(!validate_chat(""));
        assert!(!validate_chat(&"x".repeat(MAX_CHAT_LEN + 1)));
    }
}
