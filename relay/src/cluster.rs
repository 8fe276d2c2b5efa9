//! Rooms across relays: placement by leases in Redis.
//!
//! A room (channel) is hosted by exactly one relay of a cluster: the one holding the key
//! `voice:room:<id>` in Redis, whose value is that relay's advertised `IP:PORT`. A relay claims
//! a room when a client asks to join it and nobody holds it (`SET key me NX PX lease`), renews
//! the leases of the rooms it hosts every third of the lease (a compare-and-`PEXPIRE` script, so
//! it never extends someone else's), and learns it lost one when a renewal finds another owner.
//! A relay that dies stops renewing: its leases expire and the next join through any relay
//! claims the room there.
//!
//! All Redis traffic happens on one thread (`cluster`), never on the event loop: the loop sends
//! [`Request`]s and is woken for each [`Notice`]. When Redis is unreachable the relay keeps
//! hosting what it hosts (a failed renewal is not a loss) and answers new placements with
//! `Error{Placement}`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use mio::Waker;
use voice_proto::ChannelId;

/// Cluster settings (from [`Config`](crate::Config)).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `redis://HOST:PORT/`.
    pub redis: String,
    /// The address clients are redirected to for rooms this relay hosts.
    pub advertise: SocketAddr,
    /// Lease length.
    pub lease: Duration,
}

/// What the event loop asks the cluster thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Who hosts `channel`? Claims it if nobody does.
    Place(ChannelId),
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
}

/// The Redis key of a room's lease.
pub fn room_key(channel: ChannelId) -> String {
    format!("voice:room:{}", channel.0)
}

/// Renews a lease only if we still hold it: 1 renewed, 0 not ours.
const RENEW: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then \
                     return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";

/// The event loop's end of the cluster thread.
#[derive(Debug)]
pub struct Cluster {
    /// This relay's advertised address, as stored in Redis.
    pub me: String,
    requests: mpsc::Sender<Request>,
    notices: mpsc::Receiver<Notice>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
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
        let mut t = Thread {
            client,
            conn: None,
            me: me.clone(),
            lease: cfg.lease,
            hosted: BTreeSet::new(),
            notices: note_tx,
            waker,
        };
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("cluster".into())
            .spawn(move || t.run(&req_rx, &stop2))?;
        Ok(Cluster {
            me,
            requests,
            notices,
            stop,
            thread: Some(thread),
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
            match requests.recv_timeout(wait) {
                Ok(Request::Place(channel)) => {
                    let owner = self.place(channel);
                    self.notify(Notice::Placed { channel, owner });
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            if Instant::now() >= next_renew {
                self.renew_all();
                next_renew = Instant::now() + renew_every;
            }
        }
        // A clean stop hands the rooms back at once instead of waiting for the leases.
        for channel in std::mem::take(&mut self.hosted) {
            let _ = self.with_conn(|c, me, _| {
                redis::cmd("EVAL")
                    .arg("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end")
                    .arg(1)
                    .arg(room_key(channel))
                    .arg(me)
                    .query::<i64>(c)
            });
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

    fn renew_all(&mut self) {
        for channel in self.hosted.clone() {
            let key = room_key(channel);
            let renewed: Option<i64> = self.with_conn(|c, me, lease_ms| {
                redis::cmd("EVAL")
                    .arg(RENEW)
                    .arg(1)
                    .arg(&key)
                    .arg(me)
                    .arg(lease_ms)
                    .query(c)
            });
            match renewed {
                // Redis down: keep serving the room (the lease will tell when it is back).
                None => {}
                Some(1) => {}
                Some(_) => {
                    self.hosted.remove(&channel);
                    let owner: Option<String> = self
                        .with_conn(|c, _, _| redis::cmd("GET").arg(&key).query(c))
                        .flatten();
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
