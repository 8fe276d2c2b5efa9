//! The engine's end-to-end state: which mode, the keys of that mode, and the drop counters.
//!
//! Mixed channels behave like this (documented in `docs/PROTOCOL.md`):
//! * a client with E2EE on never sends plaintext voice and drops every voice datagram without the
//!   `0x40` flag (counted as `plaintext_dropped`): otherwise anyone who can inject datagrams, the
//!   relay included, could speak into an encrypted channel;
//! * a client with E2EE off drops every datagram with the flag (counted `unknown_key_id`);
//! * password clients with different passwords drop each other's frames as `bad_tag`.
//!
//! So two E2EE clients hear each other, and neither hears (nor is heard by) a plaintext client.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use super::frame::{FrameEncryptor, SenderKeyRing};
use super::group::{GroupKeys, DEFAULT_LEAD};
use super::identity::Identity;
use super::password::PasswordKeys;
use super::{DecryptError, DecryptFailures, E2eeError};
use crate::proto::tcp::ClientMessage;
use crate::proto::SessionToken;
use crate::time::Time;

/// How a client protects its voice end to end.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum E2eeMode {
    /// No end-to-end encryption: payloads are plain Opus (the relay could listen).
    #[default]
    Off,
    /// Every sender key derived from this channel secret (high-entropy; see [`super::password`]).
    Password(Vec<u8>),
    /// Per-client identity keys and wrapped per-sender keys ([`super::group`]).
    Keys {
        /// The identity's secret key, to keep the same safety number across runs; `None`: a
        /// fresh identity for this engine.
        identity: Option<[u8; 32]>,
        /// How long a sender keeps its current key after announcing the next.
        lead: Duration,
    },
}

impl E2eeMode {
    /// Identity keys with a fresh identity and the default rotation lead.
    pub fn keys() -> Self {
        E2eeMode::Keys {
            identity: None,
            lead: DEFAULT_LEAD,
        }
    }

    /// The mode's name as the statistics show it.
    pub fn name(&self) -> &'static str {
        match self {
            E2eeMode::Off => "off",
            E2eeMode::Password(_) => "password",
            E2eeMode::Keys { .. } => "keys",
        }
    }
}

impl std::fmt::Debug for E2eeMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret.
        f.write_str(self.name())
    }
}

/// End-to-end statistics.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct E2eeStats {
    /// "off", "password" or "keys".
    pub mode: &'static str,
    /// Frames sealed.
    pub sealed: u64,
    /// Frames opened.
    pub opened: u64,
    /// Dropped encrypted frames: authentication tag did not verify.
    pub decrypt_failed_bad_tag: u64,
    /// Dropped encrypted frames: replayed counter.
    pub decrypt_failed_replay: u64,
    /// Dropped encrypted frames: unknown key id (or E2EE off here).
    pub decrypt_failed_unknown_key_id: u64,
    /// Dropped encrypted frames: malformed SFrame frame.
    pub decrypt_failed_malformed: u64,
    /// Plaintext voice dropped because E2EE is on here.
    pub plaintext_dropped: u64,
    /// Sender-key rotations (keys mode).
    pub rotations: u64,
    /// Wrapped keys rejected (unknown sender identity, bad blob).
    pub rejected_keys: u64,
    /// Our safety number (keys mode).
    pub safety_number: Option<String>,
    /// Every member's safety number as announced to us (keys mode).
    pub member_safety_numbers: Vec<(SessionToken, String)>,
}

enum Keys {
    Off,
    /// E2EE was asked for but its keys could not be made: send nothing, hear nothing.
    Unavailable,
    Password {
        keys: Box<PasswordKeys>,
        enc: Option<Box<FrameEncryptor>>,
        me: SessionToken,
        rings: HashMap<SessionToken, SenderKeyRing>,
    },
    Group(Box<GroupKeys>),
}

/// The end-to-end state of one engine.
pub struct E2eeSession {
    mode: &'static str,
    keys: Keys,
    failures: DecryptFailures,
    plaintext_dropped: u64,
    sealed: u64,
    opened: u64,
}

impl std::fmt::Debug for E2eeSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("E2eeSession")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl E2eeSession {
    /// The state for `mode`.
    pub fn new(mode: &E2eeMode) -> Result<Self, E2eeError> {
        let keys = match mode {
            E2eeMode::Off => Keys::Off,
            E2eeMode::Password(p) => Keys::Password {
                keys: Box::new(PasswordKeys::new(p)),
                enc: None,
                me: SessionToken::NONE,
                rings: HashMap::new(),
            },
            E2eeMode::Keys { identity, lead } => {
                let id = match identity {
                    Some(s) => Identity::from_secret(*s),
                    None => Identity::generate()?,
                };
                Keys::Group(Box::new(GroupKeys::new(id, *lead)))
            }
        };
        Ok(E2eeSession {
            mode: mode.name(),
            keys,
            failures: DecryptFailures::default(),
            plaintext_dropped: 0,
            sealed: 0,
            opened: 0,
        })
    }

    /// A session for `mode` whose keys could not be made: enabled, but it seals and opens nothing.
    pub fn unavailable(mode: &E2eeMode) -> Self {
        E2eeSession {
            mode: mode.name(),
            keys: if *mode == E2eeMode::Off {
                Keys::Off
            } else {
                Keys::Unavailable
            },
            failures: DecryptFailures::default(),
            plaintext_dropped: 0,
            sealed: 0,
            opened: 0,
        }
    }

    /// True unless the mode is off.
    pub fn enabled(&self) -> bool {
        !matches!(self.keys, Keys::Off)
    }

    /// A new session `me` started (after `Welcome`): fresh sending keys, and in keys mode the
    /// identity announcement to send before joining a channel.
    pub fn start(&mut self, me: SessionToken) -> Option<ClientMessage> {
        match &mut self.keys {
            Keys::Off | Keys::Unavailable => None,
            Keys::Password {
                keys,
                enc,
                me: m,
                rings,
            } => {
                *m = me;
                rings.clear();
                *enc = keys.encryptor(me).ok().map(Box::new);
                None
            }
            Keys::Group(g) => {
                if let Err(e) = g.set_session(me) {
                    log::warn!("end-to-end keys could not start: {e}");
                }
                Some(ClientMessage::E2eeIdentity {
                    blob: g.identity_blob().to_vec(),
                })
            }
        }
    }

    /// Seals one payload. `metadata` is every datagram byte before the payload.
    pub fn seal(
        &mut self,
        now: Time,
        metadata: &[u8],
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, E2eeError> {
        let r = match &mut self.keys {
            Keys::Off | Keys::Unavailable => Err(E2eeError::InvalidKey(
                "end-to-end encryption is off or unavailable",
            )),
            Keys::Password { keys, enc, me, .. } => {
                if enc.as_ref().is_none_or(|e| e.remaining() == 0) {
                    *enc = Some(Box::new(keys.encryptor(*me)?));
                }
                match enc.as_mut() {
                    Some(e) => e.seal(metadata, payload, out),
                    None => Err(E2eeError::Crypto),
                }
            }
            Keys::Group(g) => g.seal(now, metadata, payload, out),
        };
        if r.is_ok() {
            self.sealed += 1;
        }
        r
    }

    /// Opens one encrypted payload from `sender`; failures are counted by reason.
    pub fn open(
        &mut self,
        sender: SessionToken,
        metadata: &[u8],
        frame: &[u8],
    ) -> Result<&[u8], DecryptError> {
        let r = match &mut self.keys {
            Keys::Off | Keys::Unavailable => Err(DecryptError::UnknownKeyId),
            Keys::Password { keys, rings, .. } => {
                if !rings.contains_key(&sender) && rings.len() >= crate::engine::MAX_REMOTES {
                    Err(DecryptError::UnknownKeyId)
                } else {
                    keys.open(rings.entry(sender).or_default(), sender, metadata, frame)
                }
            }
            Keys::Group(g) => {
                // GroupKeys counts its own failures; keep one counter here.
                g.open(sender, metadata, frame)
            }
        };
        match r {
            Ok(p) => {
                self.opened += 1;
                Ok(p)
            }
            Err(e) => {
                self.failures.count(e);
                Err(e)
            }
        }
    }

    /// A plaintext voice datagram arrived while E2EE is on: count it (the caller drops it).
    pub fn count_plaintext(&mut self) {
        self.plaintext_dropped += 1;
    }

    /// A member left the channel.
    pub fn member_left(&mut self, now: Time, session: SessionToken) {
        match &mut self.keys {
            Keys::Off | Keys::Unavailable => {}
            Keys::Password { rings, .. } => {
                rings.remove(&session);
            }
            Keys::Group(g) => {
                if let Err(e) = g.member_left(now, session) {
                    log::warn!("re-key after a leave failed: {e}");
                }
            }
        }
    }

    /// We joined a channel whose members are `existing` (see [`GroupKeys::joined_channel`]).
    pub fn joined_channel(&mut self, now: Time, existing: impl IntoIterator<Item = SessionToken>) {
        match &mut self.keys {
            Keys::Off | Keys::Unavailable => {}
            Keys::Password { rings, .. } => rings.clear(),
            Keys::Group(g) => {
                if let Err(e) = g.joined_channel(now, existing) {
                    log::warn!("fresh key after joining failed: {e}");
                }
            }
        }
    }

    /// We left our channel.
    pub fn left_channel(&mut self, now: Time) {
        match &mut self.keys {
            Keys::Off | Keys::Unavailable => {}
            Keys::Password { rings, .. } => rings.clear(),
            Keys::Group(g) => {
                if let Err(e) = g.clear_members(now) {
                    log::warn!("re-key after leaving failed: {e}");
                }
            }
        }
    }

    /// A member's identity blob arrived.
    pub fn handle_identity(&mut self, now: Time, session: SessionToken, blob: &[u8]) {
        if let Keys::Group(g) = &mut self.keys {
            if let Err(e) = g.member_identity(now, session, blob) {
                log::warn!("identity of {session} rejected: {e}");
            }
        }
    }

    /// A wrapped sender key arrived.
    pub fn handle_key(&mut self, from: SessionToken, blob: &[u8]) {
        if let Keys::Group(g) = &mut self.keys {
            if let Err(e) = g.handle_key(from, blob) {
                log::warn!("sender key from {from} rejected: {e}");
            }
        }
    }

    /// Wrapped keys to send, as one control message. Poll until `None`.
    #[must_use]
    pub fn poll_control(&mut self) -> Option<ClientMessage> {
        let Keys::Group(g) = &mut self.keys else {
            return None;
        };
        let mut keys = Vec::new();
        while let Some(d) = g.poll_delivery() {
            keys.push((d.to, d.blob));
        }
        (!keys.is_empty()).then_some(ClientMessage::E2eeKeys { keys })
    }

    /// When [`Self::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Time> {
        match &self.keys {
            Keys::Group(g) => g.poll_timeout(),
            _ => None,
        }
    }

    /// Activates a pending sender key when its lead has passed.
    pub fn handle_timeout(&mut self, now: Time) {
        if let Keys::Group(g) = &mut self.keys {
            g.handle_timeout(now);
        }
    }

    /// The safety number of `session` (keys mode; our own for our session).
    pub fn safety_number(&self, session: SessionToken) -> Option<String> {
        match &self.keys {
            Keys::Group(g) => g.safety_number(session),
            _ => None,
        }
    }

    /// The group key manager (keys mode), for inspection.
    pub fn group(&self) -> Option<&GroupKeys> {
        match &self.keys {
            Keys::Group(g) => Some(g),
            _ => None,
        }
    }

    /// A snapshot of the counters; `members` are the sessions whose safety numbers to list.
    pub fn stats<'a>(&self, members: impl Iterator<Item = &'a SessionToken>) -> E2eeStats {
        let (rotations, rejected_keys, safety_number, member_safety_numbers) = match &self.keys {
            Keys::Group(g) => (
                g.rotations(),
                g.rejected_keys(),
                Some(g.identity().public().safety_number()),
                members
                    .filter_map(|s| g.safety_number(*s).map(|n| (*s, n)))
                    .collect(),
            ),
            _ => (0, 0, None, Vec::new()),
        };
        E2eeStats {
            mode: self.mode,
            sealed: self.sealed,
            opened: self.opened,
            decrypt_failed_bad_tag: self.failures.bad_tag,
            decrypt_failed_replay: self.failures.replay,
            decrypt_failed_unknown_key_id: self.failures.unknown_key_id,
            decrypt_failed_malformed: self.failures.malformed,
            plaintext_dropped: self.plaintext_dropped,
            rotations,
            rejected_keys,
            safety_number,
            member_safety_numbers,
        }
    }

    /// Dropped encrypted frames by reason.
    pub fn failures(&self) -> DecryptFailures {
        self.failures
    }
}
