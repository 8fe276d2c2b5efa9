//! The cluster's directory of rooms and their members, so every relay's channel tree shows
//! everyone, wherever they are connected.
//!
//! **Writing.** The relay hosting a room keeps `voice:members:<id>` in Redis: a [`RoomEntry`]
//! (postcard) with the room's members. The cluster thread writes it whenever the membership
//! changes, with a script that checks the room's lease is still this relay's and gives the entry
//! the lease's remaining time to live (the lease renewal extends both), then publishes the same
//! bytes on [`DIRECTORY_CHANNEL`]. A relay that dies stops renewing: its entries expire with its
//! leases. A clean stop deletes them and publishes an empty entry.
//!
//! **Reading.** Each relay runs a `directory` thread with two Redis connections: one subscribed
//! to [`DIRECTORY_CHANNEL`] (a change reaches every relay within milliseconds), one that re-reads
//! every configured room's entry with one `MGET` every [`resync_interval`] (that is how expired
//! entries, i.e. dead relays, and messages missed while disconnected are noticed). Entries go to
//! the event loop as [`Notice::Directory`]; nothing here runs
//! on the event loop or the forwarding path.
//!
//! **Showing.** [`View`] (plain state, tested below without sockets) keeps the remote members per
//! room under tokens this relay allocates from
//! [`FIRST_REMOTE_SESSION`] upward (its own sessions stay below), one per (hosting relay, its
//! start time, its session), never reused while the relay runs. The loop merges them into
//! `Welcome` and `ChannelList`, and sends every session a `ChannelMembers` with a channel's whole
//! list (its own members, then these) whenever that list changes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use mio::Waker;
use serde::{Deserialize, Serialize};
use voice_proto::tcp::{ChannelInfo, ServerMessage, UserInfo};
use voice_proto::{ChannelId, SessionToken, FIRST_REMOTE_SESSION};

use crate::cluster::Notice;

/// The Redis pub/sub channel on which hosts announce membership changes.
pub const DIRECTORY_CHANNEL: &str = "voice:directory";

/// The Redis key of a room's member list.
pub fn members_key(channel: ChannelId) -> String {
    format!("voice:members:{}", channel.0)
}

/// How often every relay re-reads the whole directory: half a lease, within 0.2–1 s, so a dead
/// host's rooms leave every tree at most about a lease plus this after its last renewal.
pub fn resync_interval(lease: Duration) -> Duration {
    (lease / 2).clamp(Duration::from_millis(200), Duration::from_secs(1))
}

/// One room's members as its host publishes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomEntry {
    /// The room.
    pub channel: ChannelId,
    /// The host's advertised `IP:PORT`.
    pub relay: String,
    /// When the host started (Unix ms): with `relay`, tells its incarnations apart (session
    /// tokens restart at 1 when a relay restarts).
    pub epoch: u64,
    /// Grows with every entry the host writes (wall-clock µs, kept monotonic), so an entry
    /// older than one already shown is ignored.
    pub seq: u64,
    /// The members, in join order, under the host's own session tokens.
    pub users: Vec<UserInfo>,
}

impl RoomEntry {
    /// The bytes stored in Redis and published.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Parses stored or published bytes (`None`: not an entry; logged by the caller).
    pub fn decode(bytes: &[u8]) -> Option<RoomEntry> {
        postcard::from_bytes(bytes).ok()
    }
}

/// A remote room as this relay shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Room {
    relay: String,
    epoch: u64,
    seq: u64,
    /// Under this relay's aliases.
    users: Vec<UserInfo>,
}

/// Remote rooms and the tokens this relay shows for their members.
#[derive(Debug)]
pub struct View {
    me: String,
    rooms: BTreeMap<ChannelId, Room>,
    /// (host, host epoch, host's token) → our token.
    aliases: HashMap<(String, u64, u32), SessionToken>,
    next_alias: u32,
}

impl View {
    /// An empty view for the relay advertised as `me` (its own entries are never shown).
    pub fn new(me: String) -> View {
        View {
            me,
            rooms: BTreeMap::new(),
            aliases: HashMap::new(),
            next_alias: FIRST_REMOTE_SESSION,
        }
    }

    /// Applies what Redis says about `channel` (`None`: no entry). `hosted_here`: this relay
    /// hosts the room now (its own members are authoritative; any remote entry is stale).
    /// Returns, when the remote members shown changed, a `ChannelMembers` with them alone (the
    /// loop adds its own members before telling its sessions).
    pub fn apply(
        &mut self,
        channel: ChannelId,
        entry: Option<RoomEntry>,
        hosted_here: bool,
    ) -> Option<ServerMessage> {
        let entry = entry.filter(|e| e.channel == channel && !hosted_here && e.relay != self.me);
        if let (Some(e), Some(r)) = (&entry, self.rooms.get(&channel)) {
            if r.relay == e.relay && r.epoch == e.epoch && e.seq <= r.seq {
                return None;
            }
        }
        let Some(e) = entry.filter(|e| !e.users.is_empty()) else {
            self.rooms.remove(&channel)?;
            return Some(ServerMessage::ChannelMembers {
                channel,
                relay: String::new(),
                users: Vec::new(),
            });
        };
        let mut users = Vec::with_capacity(e.users.len());
        for u in &e.users {
            let key = (e.relay.clone(), e.epoch, u.session.0);
            let alias = match self.aliases.get(&key) {
                Some(&a) => a,
                None => {
                    if self.next_alias == u32::MAX {
                        log::error!("directory: remote session tokens exhausted");
                        continue;
                    }
                    let a = SessionToken(self.next_alias);
                    self.next_alias += 1;
                    self.aliases.insert(key, a);
                    a
                }
            };
            users.push(UserInfo {
                session: alias,
                ..u.clone()
            });
        }
        let room = Room {
            relay: e.relay,
            epoch: e.epoch,
            seq: e.seq,
            users,
        };
        let changed = self
            .rooms
            .get(&channel)
            .is_none_or(|r| r.relay != room.relay || r.users != room.users);
        let msg = ServerMessage::ChannelMembers {
            channel,
            relay: room.relay.clone(),
            users: room.users.clone(),
        };
        self.rooms.insert(channel, room);
        changed.then_some(msg)
    }

    /// Forgets the tokens of remote members no room shows any more (called after a full
    /// re-read, so a member moving between two rooms of one host keeps its token).
    pub fn prune(&mut self) {
        let live: HashSet<SessionToken> = self
            .rooms
            .values()
            .flat_map(|r| r.users.iter().map(|u| u.session))
            .collect();
        self.aliases.retain(|_, a| live.contains(a));
    }

    /// Adds the remote members to a channel list (`Welcome`, `ChannelList`).
    pub fn merge(&self, channels: &mut [ChannelInfo]) {
        for c in channels {
            if let Some(r) = self.rooms.get(&c.id) {
                c.users.extend(r.users.iter().cloned());
            }
        }
    }

    /// The members of `channel` hosted elsewhere, under this relay's tokens.
    pub fn users(&self, channel: ChannelId) -> &[UserInfo] {
        self.rooms.get(&channel).map_or(&[], |r| &r.users)
    }

    /// The relay hosting `channel`'s remote members, if any.
    pub fn host(&self, channel: ChannelId) -> Option<&str> {
        self.rooms.get(&channel).map(|r| r.relay.as_str())
    }

    /// True when no remote room has members.
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }
}

/// The reading side: a thread subscribed to the directory that also re-reads it periodically.
pub(crate) struct Reader {
    pub client: redis::Client,
    pub channels: Vec<ChannelId>,
    pub resync: Duration,
    pub notices: mpsc::Sender<Notice>,
    pub waker: Arc<Waker>,
}

impl Reader {
    pub fn run(self, stop: &AtomicBool) {
        let mut logged_down = false;
        while !stop.load(Ordering::SeqCst) {
            match self.session(stop, &mut logged_down) {
                Ok(()) => return,
                Err(e) => {
                    // Once per outage, not once per retry.
                    if !logged_down {
                        log::warn!(
                            "directory: Redis: {e}; showing other relays' members as last read"
                        );
                        logged_down = true;
                    }
                }
            }
            // Back off before reconnecting (in short steps so a stop is seen).
            for _ in 0..5 {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let c = self
            .client
            .get_connection_with_timeout(Duration::from_millis(300))?;
        c.set_write_timeout(Some(Duration::from_millis(500)))?;
        Ok(c)
    }

    /// One connected stretch: subscribe, read everything once, then follow messages and
    /// re-read every `resync`. `Ok` only when stopped.
    fn session(&self, stop: &AtomicBool, logged_down: &mut bool) -> redis::RedisResult<()> {
        let mut reads = self.connect()?;
        reads.set_read_timeout(Some(Duration::from_millis(500)))?;
        let mut sub_conn = self.connect()?;
        let mut sub = sub_conn.as_pubsub();
        sub.subscribe(DIRECTORY_CHANNEL)?;
        // Short reads so a stop and the next re-read are never late.
        sub.set_read_timeout(Some(Duration::from_millis(100)))?;
        self.resync(&mut reads)?;
        log::info!("directory: following {DIRECTORY_CHANNEL}");
        *logged_down = false;
        let mut next = Instant::now() + self.resync;
        while !stop.load(Ordering::SeqCst) {
            match sub.get_message() {
                Ok(msg) => match RoomEntry::decode(msg.get_payload_bytes()) {
                    Some(e) => self.notify(Notice::Directory {
                        channel: e.channel,
                        entry: Some(e),
                    }),
                    None => log::warn!("directory: an undecodable announcement was ignored"),
                },
                Err(e) if e.is_timeout() => {}
                Err(e) => return Err(e),
            }
            if Instant::now() >= next {
                self.resync(&mut reads)?;
                next = Instant::now() + self.resync;
            }
        }
        Ok(())
    }

    /// Reads every configured room's entry with one `MGET`.
    fn resync(&self, c: &mut redis::Connection) -> redis::RedisResult<()> {
        if self.channels.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("MGET");
        for &ch in &self.channels {
            cmd.arg(members_key(ch));
        }
        let values: Vec<Option<Vec<u8>>> = cmd.query(c)?;
        for (&channel, v) in self.channels.iter().zip(values) {
            let entry = v.and_then(|b| {
                let e = RoomEntry::decode(&b);
                if e.is_none() {
                    log::warn!("directory: undecodable entry for room {}", channel.0);
                }
                e
            });
            self.notify(Notice::Directory { channel, entry });
        }
        self.notify(Notice::Resynced);
        Ok(())
    }

    fn notify(&self, n: Notice) {
        if self.notices.send(n).is_ok() {
            if let Err(e) = self.waker.wake() {
                log::warn!("directory: waking the loop: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(relay: &str, epoch: u64, seq: u64, users: &[(u32, &str)]) -> RoomEntry {
        RoomEntry {
            channel: ChannelId(2),
            relay: relay.into(),
            epoch,
            seq,
            users: users
                .iter()
                .map(|&(s, n)| UserInfo {
                    session: SessionToken(s),
                    name: n.into(),
                    user_id: n.into(),
                    state: Default::default(),
                })
                .collect(),
        }
    }

    fn members(m: Option<ServerMessage>) -> Option<(String, Vec<(u32, String)>)> {
        match m? {
            ServerMessage::ChannelMembers { relay, users, .. } => Some((
                relay,
                users.into_iter().map(|u| (u.session.0, u.name)).collect(),
            )),
            other => panic!("unexpected {other:?}"),
        }
    }

    const R: u32 = FIRST_REMOTE_SESSION;

    #[test]
    fn remote_members_get_tokens_above_the_local_range_and_keep_them() {
        let mut v = View::new("me:1".into());
        let ch = ChannelId(2);
        let got = members(v.apply(ch, Some(entry("b:1", 7, 1, &[(1, "ann")])), false));
        assert_eq!(got, Some(("b:1".into(), vec![(R, "ann".into())])));
        // Another host's session 1 is another person: another token.
        let got = members(v.apply(
            ChannelId(3),
            Some(RoomEntry {
                channel: ChannelId(3),
                ..entry("c:1", 7, 1, &[(1, "cid")])
            }),
            false,
        ));
        assert_eq!(got, Some(("c:1".into(), vec![(R + 1, "cid".into())])));
        // ann keeps her token as bob joins after her.
        let got = members(v.apply(
            ch,
            Some(entry("b:1", 7, 2, &[(1, "ann"), (2, "bob")])),
            false,
        ));
        assert_eq!(
            got,
            Some(("b:1".into(), vec![(R, "ann".into()), (R + 2, "bob".into())]))
        );
        // The same host restarted: its session 1 is someone new.
        let got = members(v.apply(ch, Some(entry("b:1", 8, 1, &[(1, "dan")])), false));
        assert_eq!(got, Some(("b:1".into(), vec![(R + 3, "dan".into())])));
    }

    #[test]
    fn stale_duplicate_own_and_empty_entries() {
        let mut v = View::new("me:1".into());
        let ch = ChannelId(2);
        assert!(v
            .apply(ch, Some(entry("b:1", 7, 5, &[(1, "ann")])), false)
            .is_some());
        // Older or equal sequence from the same incarnation: ignored.
        assert!(v.apply(ch, Some(entry("b:1", 7, 4, &[])), false).is_none());
        assert!(v
            .apply(ch, Some(entry("b:1", 7, 5, &[(2, "x")])), false)
            .is_none());
        // Newer with the same members (a re-read): nothing to tell.
        assert!(v
            .apply(ch, Some(entry("b:1", 7, 6, &[(1, "ann")])), false)
            .is_none());
        // Empty: the room has no remote members any more, told once.
        let got = members(v.apply(ch, Some(entry("b:1", 7, 7, &[])), false));
        assert_eq!(got, Some((String::new(), vec![])));
        assert!(v.apply(ch, None, false).is_none());
        assert!(v.is_empty());
        // Our own entries, and rooms we host, are never shown.
        assert!(v
            .apply(ch, Some(entry("me:1", 7, 8, &[(1, "a")])), false)
            .is_none());
        assert!(v
            .apply(ch, Some(entry("b:1", 7, 9, &[(1, "a")])), true)
            .is_none());
        // An entry for another channel than the key it was read under is ignored.
        assert!(v
            .apply(ChannelId(9), Some(entry("b:1", 7, 10, &[(1, "a")])), false)
            .is_none());
    }

    #[test]
    fn merge_adds_remote_members_after_local_ones_and_prune_forgets_gone_tokens() {
        let mut v = View::new("me:1".into());
        v.apply(ChannelId(2), Some(entry("b:1", 7, 1, &[(1, "ann")])), false);
        let mut list = vec![
            ChannelInfo {
                id: ChannelId(1),
                name: "Lobby".into(),
                users: vec![UserInfo {
                    session: SessionToken(1),
                    name: "zed".into(),
                    user_id: "zed".into(),
                    state: Default::default(),
                }],
            },
            ChannelInfo {
                id: ChannelId(2),
                name: "Room".into(),
                users: vec![],
            },
        ];
        v.merge(&mut list);
        assert_eq!(list[0].users.len(), 1);
        assert_eq!(list[1].users[0].session, SessionToken(R));
        assert!(list[1].users[0].session.is_remote());
        assert!(!list[0].users[0].session.is_remote());
        // ann leaves; after a prune her token is not reused, a returning ann gets a new one.
        v.apply(ChannelId(2), Some(entry("b:1", 7, 2, &[])), false);
        v.prune();
        let got = members(v.apply(ChannelId(2), Some(entry("b:1", 7, 3, &[(1, "ann")])), false));
        assert_eq!(got, Some(("b:1".into(), vec![(R + 1, "ann".into())])));
    }

    #[test]
    fn entries_survive_the_redis_encoding() {
        let e = entry("10.0.0.2:7400", 1_767_225_600_000, 42, &[(3, "ann")]);
        assert_eq!(RoomEntry::decode(&e.encode()), Some(e));
        assert_eq!(RoomEntry::decode(b"\xff\xff"), None);
    }
}
