//! Rooms across relays: placement by leases in Redis.
//!
//! A room (channel) is hosted by exactly one relay of a cluster: the one holding the key
//! `voice:room:<id>` in Redis, whose value is that relay's advertised `IP:PORT`. A relay claims
//! a room when a client asks to join it and nobody holds it (`SET key me NX PX lease`), renews
//! the leases of the rooms it hosts every third of the lease (a compare-and-`PEXPIRE` script, so
//! it never extends someone else's), and learns it lost one when a renewal finds another owner
//! (a renewal that finds no owner at all claims the room again: its members are still here).
//! A relay that dies stops renewing: its leases expire and the next join through any relay
//! claims the room there.
//!
//! The host of a room also publishes its members ([`crate::directory`]): [`Request::Members`]
//! writes them next to the lease, which carries them: the renewal extends both, and a dead host's
//! entries expire with its leases.
//!
//! All Redis traffic happens on two threads (`cluster` for leases and member lists, `directory`
//! for reading the other relays' lists), never on the event loop: the loop sends [`Request`]s and
//! is woken for each [`Notice`]. When Redis is unreachable the relay keeps hosting what it hosts
//! (a failed renewal is not a loss), answers new placements with `Error{Placement}`, and shows
//! the other relays' members as it last read them.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use mio::Waker;
use voice_proto::tcp::UserInfo;
use voice_proto::ChannelId;

use crate::directory::{members_key, RoomEntry, DIRECTORY_CHANNEL};

/// Cluster settings (from [`Config`](crate::Config)).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `redis://HOST:PORT/`.
    pub redis: String,
    /// The address clients are redirected to for rooms this relay hosts.
    pub advertise: SocketAddr,
    /// Lease length.
    pub lease: Duration,
    /// Every configured room (the directory re-reads all of them).
    pub channels: Vec<ChannelId>,
}

/// What the event loop asks the cluster thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Who hosts `channel`? Claims it if nobody does.
    Place(ChannelId),
    /// The members of a room this relay hosts changed: publish them (only while the lease is
    /// ours; a burst of changes to one room is written once, the latest).
    Members {
        /// The room.
        channel: ChannelId,
        /// Its members in join order.
        users: Vec<UserInfo>,
    },
}

/// What the cluster thread tells the event loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// `channel` is hosted by `owner` (this relay's advertised address when it claimed it);
    /// `None`: Redis could not be asked.
    Placed {
        /// The room.
        channel: ChannelId,
        /// Its host.
        owner: Option<String>,
    },
    /// This relay no longer holds `channel`'s lease; `owner` holds it now (if known).
    Lost {
        /// The room.
        channel: ChannelId,
        /// Its new host.
        owner: Option<String>,
    },
    /// The directory's entry for `channel` (`None`: no relay publishes members for it).
    Directory {
        /// The room.
        channel: ChannelId,
        /// What its host published.
        entry: Option<RoomEntry>,
    },
    /// The directory was read whole (the notices before this one); unused remote tokens may go.
    Resynced,
}

/// The Redis key of a room's lease.
pub fn room_key(channel: ChannelId) -> String {
    format!("voice:room:{}", channel.0)
}

/// Renews a lease (KEYS[1]) and the room's member list (KEYS[2]) only if we still hold the
/// lease: 1 renewed, 0 not ours.
const RENEW: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then \
                     redis.call('pexpire', KEYS[2], ARGV[2]) \
                     return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";

/// Writes a room's member list (KEYS[2]) with the lease's (KEYS[1]) remaining time and
/// publishes it, only if we hold the lease: 1 written, 0 not ours.
const PUBLISH_MEMBERS: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then \
     local ttl = redis.call('pttl', KEYS[1]) \
     if ttl > 0 then redis.call('set', KEYS[2], ARGV[2], 'PX', ttl) end \
     redis.call('publish', ARGV[3], ARGV[2]) return 1 else return 0 end";

/// Hands a room back (lease and member list) if it is ours and tells the others it is empty.
const RELEASE: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then \
     redis.call('del', KEYS[1], KEYS[2]) redis.call('publish', ARGV[3], ARGV[2]) \
     return 1 else return 0 end";

/// The event loop's end of the cluster thread.
#[derive(Debug)]
pub struct Cluster {
    /// This relay's advertised address, as stored in Redis.
    pub me: String,
    requests: mpsc::Sender<Request>,
    notices: mpsc::Receiver<Notice>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    directory: Option<std::thread::JoinHandle<()>>,
}

impl Cluster {
    /// Starts the cluster thread; it wakes `waker` for every notice.
    pub fn start(cfg: ClusterConfig, waker: Arc<Waker>) -> std::io::Result<Cluster> {
        let client = redis::Client::open(cfg.redis.as_str())
            .map_err(|e| std::io::Error::other(format!("redis URL {}: {e}", cfg.redis)))?;
        let (requests, req_rx) = mpsc::channel();
        let (note_tx, notices) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let me = cfg.advertise.to_string();
        let reader = crate::directory::Reader {
            client: client.clone(),
            channels: cfg.channels.clone(),
            resync: crate::directory::resync_interval(cfg.lease),
            notices: note_tx.clone(),
            waker: waker.clone(),
        };
        let mut t = Thread {
            client,
            conn: None,
            me: me.clone(),
            lease: cfg.lease,
            hosted: BTreeSet::new(),
            notices: note_tx,
            waker,
            epoch: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            seq: 0,
            lists: Default::default(),
            unpublished: Default::default(),
        };
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("cluster".into())
            .spawn(move || t.run(&req_rx, &stop2))?;
        let stop3 = stop.clone();
        let directory = std::thread::Builder::new()
            .name("directory".into())
            .spawn(move || reader.run(&stop3))?;
        Ok(Cluster {
            me,
            requests,
            notices,
            stop,
            thread: Some(thread),
            directory: Some(directory),
        })
    }

    /// Asks for a placement; the answer comes as a [`Notice`].
    pub fn request(&self, r: Request) {
        if self.requests.send(r).is_err() {
            log::error!("the cluster thread is gone");
        }
    }

    /// The next notice, if any.
    pub fn try_notice(&self) -> Option<Notice> {
        self.notices.try_recv().ok()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(t) = self.directory.take() {
            let _ = t.join();
        }
    }
}

struct Thread {
    client: redis::Client,
    conn: Option<redis::Connection>,
    me: String,
    lease: Duration,
    hosted: BTreeSet<ChannelId>,
    notices: mpsc::Sender<Notice>,
    waker: Arc<Waker>,
    /// When this relay started (Unix ms), in every entry it publishes.
    epoch: u64,
    /// The last entry's sequence number.
    seq: u64,
    /// The member lists of hosted rooms, as the loop last sent them.
    lists: std::collections::BTreeMap<ChannelId, Vec<UserInfo>>,
    /// Rooms whose list Redis did not take (unreachable): written again at the next renewal.
    unpublished: BTreeSet<ChannelId>,
}

impl Thread {
    fn run(&mut self, requests: &mpsc::Receiver<Request>, stop: &AtomicBool) {
        let renew_every = (self.lease / 3).max(Duration::from_millis(10));
        let mut next_renew = Instant::now() + renew_every;
        while !stop.load(Ordering::SeqCst) {
            // Short waits so a stop is seen quickly.
            let wait = next_renew
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100));
            let first = match requests.recv_timeout(wait) {
                Ok(r) => Some(r),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            // Placements in order; of several member lists of one room only the latest.
            let mut lists: Vec<(ChannelId, Vec<UserInfo>)> = Vec::new();
            for r in first
                .into_iter()
                .chain(std::iter::from_fn(|| requests.try_recv().ok()))
            {
                match r {
                    Request::Place(channel) => {
                        let owner = self.place(channel);
                        self.notify(Notice::Placed { channel, owner });
                    }
                    Request::Members { channel, users } => {
                        lists.retain(|(c, _)| *c != channel);
                        lists.push((channel, users));
                    }
                }
            }
            for (channel, users) in lists {
                self.lists.insert(channel, users);
                self.publish_members(channel);
            }
            if Instant::now() >= next_renew {
                self.renew_all();
                next_renew = Instant::now() + renew_every;
            }
        }
        // A clean stop hands the rooms back at once instead of waiting for the leases.
        for channel in std::mem::take(&mut self.hosted) {
            let empty = self.entry(channel, Vec::new()).encode();
            let _ = self.with_conn(|c, me, _| {
                redis::cmd("EVAL")
                    .arg(RELEASE)
                    .arg(2)
                    .arg(room_key(channel))
                    .arg(members_key(channel))
                    .arg(me)
                    .arg(&empty)
                    .arg(DIRECTORY_CHANNEL)
                    .query::<i64>(c)
            });
        }
    }

    /// The next entry this relay publishes for `channel`.
    fn entry(&mut self, channel: ChannelId, users: Vec<UserInfo>) -> RoomEntry {
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        self.seq = now_us.max(self.seq + 1);
        RoomEntry {
            channel,
            relay: self.me.clone(),
            epoch: self.epoch,
            seq: self.seq,
            users,
        }
    }

    /// Writes and announces a hosted room's members (skipped when the lease is not ours: the
    /// next renewal reports the loss). Redis down: written again at the next renewal.
    fn publish_members(&mut self, channel: ChannelId) {
        self.unpublished.remove(&channel);
        let users = self.lists.get(&channel).cloned().unwrap_or_default();
        let bytes = self.entry(channel, users).encode();
        let written: Option<i64> = self.with_conn(|c, me, _| {
            redis::cmd("EVAL")
                .arg(PUBLISH_MEMBERS)
                .arg(2)
                .arg(room_key(channel))
                .arg(members_key(channel))
                .arg(me)
                .arg(&bytes)
                .arg(DIRECTORY_CHANNEL)
                .query(c)
        });
        if written.is_none() {
            self.unpublished.insert(channel);
        } else if written == Some(0) {
            log::debug!(
                "cluster: members of room {} not published: not ours",
                channel.0
            );
        }
    }

    fn notify(&self, n: Notice) {
        if self.notices.send(n).is_ok() {
            if let Err(e) = self.waker.wake() {
                log::warn!("cluster: waking the loop: {e}");
            }
        }
    }

    /// Runs `f` on a connection (opened on demand, dropped after an error).
    fn with_conn<T>(
        &mut self,
        f: impl FnOnce(&mut redis::Connection, &str, u64) -> redis::RedisResult<T>,
    ) -> Option<T> {
        if self.conn.is_none() {
            match self
                .client
                .get_connection_with_timeout(Duration::from_millis(300))
            {
                Ok(c) => {
                    let _ = c.set_read_timeout(Some(Duration::from_millis(500)));
                    let _ = c.set_write_timeout(Some(Duration::from_millis(500)));
                    self.conn = Some(c);
                }
                Err(e) => {
                    log::warn!("cluster: Redis unreachable: {e}");
                    return None;
                }
            }
        }
        let c = self.conn.as_mut()?;
        let lease_ms = self.lease.as_millis() as u64;
        match f(c, &self.me, lease_ms) {
            Ok(v) => Some(v),
            Err(e) => {
                log::warn!("cluster: Redis: {e}");
                self.conn = None;
                None
            }
        }
    }

    /// Claims `channel` or says who holds it; `None` when Redis did not answer.
    fn place(&mut self, channel: ChannelId) -> Option<String> {
        let key = room_key(channel);
        for _ in 0..3 {
            let claimed: Option<String> = self.with_conn(|c, me, lease_ms| {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(me)
                    .arg("NX")
                    .arg("PX")
                    .arg(lease_ms)
                    .query::<Option<String>>(c)
            })?;
            if claimed.is_some() {
                log::info!("cluster: hosting room {} ({key})", channel.0);
                self.hosted.insert(channel);
                return Some(self.me.clone());
            }
            let owner: Option<String> =
                self.with_conn(|c, _, _| redis::cmd("GET").arg(&key).query(c))?;
            if let Some(owner) = owner {
                if owner == self.me {
                    self.hosted.insert(channel);
                }
                return Some(owner);
            }
            // Expired between the two commands: try to claim again.
        }
        None
    }

    /// `SET key me NX PX lease`: true when this relay holds the lease now.
    fn claim(&mut self, key: &str) -> bool {
        self.with_conn(|c, me, lease_ms| {
            redis::cmd("SET")
                .arg(key)
                .arg(me)
                .arg("NX")
                .arg("PX")
                .arg(lease_ms)
                .query::<Option<String>>(c)
        })
        .flatten()
        .is_some()
    }

    fn renew_all(&mut self) {
        for channel in std::mem::take(&mut self.unpublished) {
            self.publish_members(channel);
        }
        for channel in self.hosted.clone() {
            let key = room_key(channel);
            let renewed: Option<i64> = self.with_conn(|c, me, lease_ms| {
                redis::cmd("EVAL")
                    .arg(RENEW)
                    .arg(2)
                    .arg(&key)
                    .arg(members_key(channel))
                    .arg(me)
                    .arg(lease_ms)
                    .query(c)
            });
            match renewed {
                // Redis down: keep serving the room (the lease will tell when it is back).
                None => {}
                Some(1) => {}
                Some(_) => {
                    let owner: Option<String> = self
                        .with_conn(|c, _, _| redis::cmd("GET").arg(&key).query(c))
                        .flatten();
                    // Nobody holds it (Redis restarted without its data, or the lease ran out
                    // while Redis was unreachable): its members are still here, so this relay
                    // takes it back rather than leave it unplaced (where the next join through
                    // another relay would open a second copy of the room).
                    if owner.is_none() && self.claim(&key) {
                        log::warn!(
                            "cluster: room {} had no lease any more; claimed it again",
                            channel.0
                        );
                        self.publish_members(channel);
                        continue;
                    }
                    self.hosted.remove(&channel);
                    self.lists.remove(&channel);
                    self.unpublished.remove(&channel);
                    log::warn!(
                        "cluster: lost room {} (now {})",
                        channel.0,
                        owner.as_deref().unwrap_or("unplaced")
                    );
                    self.notify(Notice::Lost { channel, owner });
                }
            }
        }
    }
}
