//! Keys the relay cannot read: the sans-IO key manager of one client in one channel.
//!
//! Each client has an [`Identity`]; members' public identities arrive as opaque blobs over the
//! control plane. Every sender makes its own random sender keys and wraps each one for every member
//! ([`Identity::wrap`]); the relay only moves the blobs. The key schedule:
//!
//! * **Session start** and **joining a channel**: a fresh random key, active at once. The members
//!   already in the channel receive this current key when their identities arrive
//!   ([`GroupKeys::joined_channel`]): they are the only ones who heard it.
//! * **Membership change** (a member's identity announced, a member left): a fresh random key with
//!   the next key id, wrapped for every current member and queued ([`GroupKeys::poll_delivery`]),
//!   becomes *pending*; the sender keeps sealing with the current key for the rotation lead
//!   (default [`DEFAULT_LEAD`]) and then switches. Receivers therefore hold the new key before the
//!   first frame that uses it arrives: no audio is lost at a rotation as long as the control plane
//!   delivers within the lead. A second change during the lead replaces the pending key (a member
//!   who left never sees a key that is used).
//! * A **joiner** only receives keys made after it joined: it cannot read audio from before.
//!   A **leaver** can read at most the rotation lead of audio after it left.
//! * Key ids count up from 0 modulo 2^16, so key id + counter stay within 5 header bytes; a key
//!   whose 2^24-frame counter budget (93 h) runs out is rotated like a membership change.
//!
//! Wrapped key blob plaintext: `kid u64 LE || base key (32 bytes)`; the wrap context is
//! `"voice-e2ee v1 sender key" || from u32 LE || to u32 LE`, so a blob cannot be replayed to another
//! member or attributed to another sender.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use super::frame::{FrameEncryptor, SenderKeyRing};
use super::identity::{Identity, PublicIdentity};
use super::{random_bytes, DecryptError, DecryptFailures, E2eeError, BASE_KEY_LEN};
use crate::proto::SessionToken;
use crate::time::Time;

/// How long a sender keeps its current key after announcing the next one.
pub const DEFAULT_LEAD: Duration = Duration::from_millis(500);
/// Key ids wrap at this bound (2 header bytes).
pub const KID_LIMIT: u64 = 1 << 16;
const CONTEXT: &[u8] = b"voice-e2ee v1 sender key";
/// Plaintext length of a wrapped sender key.
const KEY_BLOB_PLAIN: usize = 8 + BASE_KEY_LEN;

/// One wrapped sender key to hand to the control plane for member `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDelivery {
    /// The recipient.
    pub to: SessionToken,
    /// The opaque wrapped key ([`Identity::wrap`] output).
    pub blob: Vec<u8>,
}

struct Pending {
    enc: FrameEncryptor,
    key: (u64, [u8; BASE_KEY_LEN]),
    at: Time,
}

/// The key manager: own sending keys, members' identities, a key ring per remote sender.
/// Inputs: [`Self::set_session`], [`Self::member_identity`], [`Self::member_left`],
/// [`Self::handle_key`], [`Self::handle_timeout`]. Outputs: poll [`Self::poll_delivery`] until `None`
/// after each input; [`Self::poll_timeout`] says when to call [`Self::handle_timeout`].
pub struct GroupKeys {
    identity: Identity,
    me: SessionToken,
    members: BTreeMap<SessionToken, PublicIdentity>,
    current: Option<FrameEncryptor>,
    current_key: Option<(u64, [u8; BASE_KEY_LEN])>,
    pending: Option<Pending>,
    /// Members that were in the channel when we joined: their identities get our current key
    /// (they were the only audience of it) instead of a rotation.
    existing: Vec<SessionToken>,
    next_kid: u64,
    lead: Duration,
    rings: HashMap<SessionToken, SenderKeyRing>,
    outbox: VecDeque<KeyDelivery>,
    failures: DecryptFailures,
    rotations: u64,
    rejected_keys: u64,
}

impl std::fmt::Debug for GroupKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupKeys")
            .field("me", &self.me)
            .field("members", &self.members.len())
            .field("rotations", &self.rotations)
            .finish_non_exhaustive()
    }
}

impl GroupKeys {
    /// A manager for `identity` with the given rotation lead.
    pub fn new(identity: Identity, lead: Duration) -> Self {
        GroupKeys {
            identity,
            me: SessionToken::NONE,
            members: BTreeMap::new(),
            current: None,
            current_key: None,
            pending: None,
            existing: Vec::new(),
            next_kid: 0,
            lead,
            rings: HashMap::new(),
            outbox: VecDeque::new(),
            failures: DecryptFailures::default(),
            rotations: 0,
            rejected_keys: 0,
        }
    }

    /// This client's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The blob to announce on the control plane (the public identity).
    pub fn identity_blob(&self) -> [u8; 32] {
        self.identity.public().0
    }

    /// Starts a new session as `me`: forgets members, rings and keys, and makes a first key that is
    /// active at once.
    pub fn set_session(&mut self, me: SessionToken) -> Result<(), E2eeError> {
        self.me = me;
        self.members.clear();
        self.rings.clear();
        self.outbox.clear();
        self.pending = None;
        self.existing.clear();
        let (kid, key) = self.fresh_key()?;
        self.current = Some(FrameEncryptor::new(kid, &key)?);
        self.current_key = Some((kid, key));
        Ok(())
    }

    /// This client joined a channel whose members (besides us) are `existing`: forget the
    /// previous channel's members and keys and start a fresh key at once (nobody here heard the old
    /// one). When an existing member's identity arrives, it receives the current key (and the
    /// pending one) instead of causing a rotation: the existing members were the only audience of
    /// what we sent since joining. Members announced later cause a rotation as usual.
    pub fn joined_channel(
        &mut self,
        now: Time,
        existing: impl IntoIterator<Item = SessionToken>,
    ) -> Result<(), E2eeError> {
        self.members.clear();
        self.rings.clear();
        self.outbox.clear();
        self.pending = None;
        self.existing = existing.into_iter().filter(|s| *s != self.me).collect();
        let (kid, key) = self.fresh_key()?;
        self.current = Some(FrameEncryptor::new(kid, &key)?);
        self.current_key = Some((kid, key));
        let _ = now;
        Ok(())
    }

    fn wrap_for(
        &self,
        to: SessionToken,
        public: &PublicIdentity,
        (kid, key): &(u64, [u8; BASE_KEY_LEN]),
    ) -> Result<KeyDelivery, E2eeError> {
        let mut plain = [0u8; KEY_BLOB_PLAIN];
        plain[..8].copy_from_slice(&kid.to_le_bytes());
        plain[8..].copy_from_slice(key);
        let blob = self
            .identity
            .wrap(public, &Self::context(self.me, to), &plain)?;
        Ok(KeyDelivery { to, blob })
    }

    /// Forgets every member (this client left its channel) and re-keys so that nobody who heard
    /// the old key can read what is sent next.
    pub fn clear_members(&mut self, now: Time) -> Result<(), E2eeError> {
        self.members.clear();
        self.rings.clear();
        self.existing.clear();
        self.rotate(now)
    }

    fn fresh_key(&mut self) -> Result<(u64, [u8; BASE_KEY_LEN]), E2eeError> {
        let mut key = [0u8; BASE_KEY_LEN];
        random_bytes(&mut key)?;
        let kid = self.next_kid;
        self.next_kid = (self.next_kid + 1) % KID_LIMIT;
        Ok((kid, key))
    }

    fn context(from: SessionToken, to: SessionToken) -> Vec<u8> {
        let mut c = CONTEXT.to_vec();
        c.extend_from_slice(&from.0.to_le_bytes());
        c.extend_from_slice(&to.0.to_le_bytes());
        c
    }

    /// Makes the next key, wraps it for every member and schedules it.
    fn rotate(&mut self, now: Time) -> Result<(), E2eeError> {
        let (kid, key) = self.fresh_key()?;
        // A pending key that was never used is simply replaced: drop its deliveries.
        self.outbox.clear();
        for (&to, public) in &self.members {
            let d = self.wrap_for(to, public, &(kid, key))?;
            self.outbox.push_back(d);
        }
        let enc = FrameEncryptor::new(kid, &key)?;
        if self.members.is_empty() || self.current.is_none() {
            self.current = Some(enc);
            self.current_key = Some((kid, key));
            self.pending = None;
        } else {
            self.pending = Some(Pending {
                enc,
                key: (kid, key),
                at: now + self.lead,
            });
        }
        self.rotations += 1;
        Ok(())
    }

    /// A member's identity was announced (joined, or changed its identity): re-key.
    pub fn member_identity(
        &mut self,
        now: Time,
        session: SessionToken,
        blob: &[u8],
    ) -> Result<(), E2eeError> {
        if session == self.me {
            return Ok(());
        }
        let public = PublicIdentity::from_blob(blob)?;
        if let Some(i) = self.existing.iter().position(|s| *s == session) {
            self.existing.swap_remove(i);
            if let std::collections::btree_map::Entry::Vacant(slot) = self.members.entry(session) {
                slot.insert(public);
                for key in [self.current_key, self.pending.as_ref().map(|p| p.key)]
                    .into_iter()
                    .flatten()
                {
                    let d = self.wrap_for(session, &public, &key)?;
                    self.outbox.push_back(d);
                }
                return Ok(());
            }
        }
        if self.members.insert(session, public) != Some(public) {
            // A changed identity invalidates the keys it sent before.
            self.rings.remove(&session);
            self.rotate(now)?;
        }
        Ok(())
    }

    /// A member left: forget its keys and re-key so it cannot read what follows.
    pub fn member_left(&mut self, now: Time, session: SessionToken) -> Result<(), E2eeError> {
        self.rings.remove(&session);
        self.existing.retain(|s| *s != session);
        if self.members.remove(&session).is_some() {
            self.rotate(now)?;
        }
        Ok(())
    }

    /// A wrapped sender key arrived from `from`. Rejected (and counted) when the sender's identity
    /// is unknown or the blob does not verify.
    pub fn handle_key(&mut self, from: SessionToken, blob: &[u8]) -> Result<u64, E2eeError> {
        let r = self.open_key(from, blob);
        if r.is_err() {
            self.rejected_keys += 1;
        }
        r
    }

    fn open_key(&mut self, from: SessionToken, blob: &[u8]) -> Result<u64, E2eeError> {
        let public = *self
            .members
            .get(&from)
            .ok_or(E2eeError::InvalidKey("key from a sender without identity"))?;
        let plain = self
            .identity
            .unwrap(&public, &Self::context(from, self.me), blob)?;
        if plain.len() != KEY_BLOB_PLAIN {
            return Err(E2eeError::InvalidKey(
                "wrapped sender key has the wrong length",
            ));
        }
        let kid = u64::from_le_bytes(plain[..8].try_into().map_err(|_| E2eeError::Crypto)?);
        self.rings
            .entry(from)
            .or_default()
            .insert(kid, &plain[8..])?;
        Ok(kid)
    }

    /// The next wrapped key to send. Poll until `None` after every input.
    #[must_use]
    pub fn poll_delivery(&mut self) -> Option<KeyDelivery> {
        self.outbox.pop_front()
    }

    /// When the pending key becomes active.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.pending.as_ref().map(|p| p.at)
    }

    /// Activates the pending key once its lead has passed.
    pub fn handle_timeout(&mut self, now: Time) {
        if self.pending.as_ref().is_some_and(|p| now >= p.at) {
            if let Some(p) = self.pending.take() {
                self.current = Some(p.enc);
                self.current_key = Some(p.key);
            }
        }
    }

    /// Seals one payload with the active key (activating a due pending key first). Rotates when
    /// the active key's counter budget is spent.
    pub fn seal(
        &mut self,
        now: Time,
        metadata: &[u8],
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, E2eeError> {
        self.handle_timeout(now);
        if self.current.as_ref().is_some_and(|c| c.remaining() == 0) {
            self.current = None;
            self.current_key = None;
            self.rotate(now)?;
        }
        match self.current.as_mut() {
            Some(c) => c.seal(metadata, payload, out),
            None => Err(E2eeError::InvalidKey("no session started")),
        }
    }

    /// Opens a frame from `sender`; failures are counted by reason.
    pub fn open(
        &mut self,
        sender: SessionToken,
        metadata: &[u8],
        frame: &[u8],
    ) -> Result<&[u8], DecryptError> {
        let Some(ring) = self.rings.get_mut(&sender) else {
            self.failures.count(DecryptError::UnknownKeyId);
            return Err(DecryptError::UnknownKeyId);
        };
        match ring.open(metadata, frame) {
            Ok((_, p)) => Ok(p),
            Err(e) => {
                self.failures.count(e);
                Err(e)
            }
        }
    }

    /// Dropped frames by reason.
    pub fn failures(&self) -> DecryptFailures {
        self.failures
    }

    /// Rotations made so far.
    pub fn rotations(&self) -> u64 {
        self.rotations
    }

    /// Wrapped keys rejected so far.
    pub fn rejected_keys(&self) -> u64 {
        self.rejected_keys
    }

    /// The key id frames are sealed with now.
    pub fn current_key_id(&self) -> Option<u64> {
        self.current.as_ref().map(|c| c.key_id())
    }

    /// The safety number of `session` as announced to us, or our own for our session.
    pub fn safety_number(&self, session: SessionToken) -> Option<String> {
        if session == self.me {
            return Some(self.identity.public().safety_number());
        }
        self.members.get(&session).map(|p| p.safety_number())
    }

    /// True if at least one key from `session` is installed (its audio can be decrypted).
    pub fn has_keys_from(&self, session: SessionToken) -> bool {
        self.rings
            .get(&session)
            .is_some_and(|r| r.key_ids().next().is_some())
    }
}
