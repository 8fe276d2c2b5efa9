//! Relay configuration: defaults, an optional TOML file, and command-line flags (flags win).
//!
//! Everything that bounds resource use lives here so an operator can tune it and tests can make
//! timeouts short. Durations are in milliseconds in the file. See `relay/deploy/relay.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use voice_proto::attenuation::Attenuation;
use voice_proto::tcp::{listing_bound, SpatialInfo, MAX_SERVER_FRAME};
use voice_proto::ChannelId;

use crate::budget::Limit;

/// The default listen address: TCP control and UDP voice on the same port.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:7400";

/// The most forwarding workers a relay runs.
pub const MAX_WORKERS: usize = 256;

/// Where the `relay` binary keeps its self-signed identity unless told otherwise.
pub const DEFAULT_IDENTITY_DIR: &str = "relay-identity";

/// Why a configuration could not be built.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML for [`Config`].
    #[error("parsing {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: Box<toml::de::Error>,
    },
    /// A command-line problem.
    #[error("{0}")]
    Usage(String),
    /// The values are inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// One channel offered by the relay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelConfig {
    /// Channel id (unique, clients refer to it).
    pub id: u32,
    /// Display name.
    pub name: String,
    /// Makes the channel 3D: its distance model and audible range (`max_distance`), announced to
    /// joiners and used to cull voice by proximity. Absent: a 2D channel. In TOML:
    /// `spatial = { model = "Inverse", min_distance = 1.0, max_distance = 40.0, rolloff = 1.0 }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spatial: Option<Attenuation>,
    /// Permissions: at most this many members at once; a `JoinChannel` beyond it gets
    /// `Error{ChannelFull}`. Absent: no cap (the relay's `max_sessions` still applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_members: Option<usize>,
    /// Permissions: only these token subjects (`sub`; in open mode, names) may join; anyone else
    /// gets `Error{NotAllowed}`. Absent: everyone the token's `channels` claim admits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
}

/// Everything the relay can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// TCP and UDP listen address (port 0: any free port, same for both). `[::]:PORT` listens
    /// dual-stack: IPv6, and IPv4 as mapped addresses (Linux default `net.ipv6.bindv6only = 0`).
    pub listen: SocketAddr,
    /// Channels offered.
    pub channels: Vec<ChannelConfig>,
    /// The channel announced as default in `Welcome`.
    pub default_channel: u32,
    /// Maximum sessions (completed handshakes); more get `Error{Full}`.
    pub max_sessions: usize,
    /// Maximum TCP connections (including ones still in the handshake); more are closed at once.
    pub max_connections: usize,
    /// Close a connection that has not sent `Hello` within this many ms.
    pub handshake_timeout_ms: u64,
    /// Close a connection that sent no frame within this many ms.
    pub idle_timeout_ms: u64,
    /// Disconnect a peer whose unsent outgoing bytes exceed this.
    pub max_outgoing_bytes: usize,
    /// Voice packets per second per session.
    pub voice_packets: Limit,
    /// Voice bytes per second per session.
    pub voice_bytes: Limit,
    /// Control messages per second per session (all kinds).
    pub control_messages: Limit,
    /// Chat lines per second per session.
    pub chat_messages: Limit,
    /// Log a stats line this often (ms); 0 disables.
    pub stats_interval_ms: u64,
    /// `SO_RCVBUF` / `SO_SNDBUF` for the UDP socket in bytes (0: kernel default).
    pub udp_buffer_bytes: usize,
    /// Use `recvmmsg`/`sendmmsg` batches (Linux); `false` uses one syscall per datagram.
    pub batch_io: bool,
    /// Forwarding workers: UDP sockets sharing the port with `SO_REUSEPORT`, each drained by its
    /// own thread (the first by the control loop). 0 (the default): one per available core.
    pub workers: usize,
    /// Scale-out: `redis://HOST:PORT/` of the cluster's Redis. `None` (the default): the relay
    /// runs alone and hosts every room itself.
    pub redis: Option<String>,
    /// Scale-out: the `IP:PORT` clients are redirected to for rooms this relay hosts (default:
    /// the bound address, which must then be reachable by clients).
    pub advertise: Option<SocketAddr>,
    /// Scale-out: room lease length in ms (renewed every third of it); a dead relay's rooms
    /// are placed again after at most this long.
    pub lease_ms: u64,
    /// Development only: serve the control connection without TLS (names, chat and the UDP
    /// registration secret travel in the clear).
    pub insecure_plaintext: bool,
    /// PEM certificate chain for TLS (with `tls_key`). Without both, the relay uses the identity
    /// in `identity_dir`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Where the self-signed identity lives (`cert.pem`, `key.pem`): created with a new
    /// certificate on first start, reused afterwards so the fingerprint clients pinned stays
    /// valid. `None` (the library default): a fresh in-memory certificate for each start. The
    /// `relay` binary defaults it to `./relay-identity`.
    pub identity_dir: Option<PathBuf>,
    /// Development only: admit a `Hello` without an access token, under the name it asks for,
    /// with every channel and whisper to anyone (`--open`). With `token_keys` too, a `Hello`
    /// that carries a token is still checked and gets the token's rights (e.g. `admin`).
    pub open: bool,
    /// Ed25519 public keys (base64url, as `relay keygen` prints them) whose tokens the relay
    /// accepts. Empty (and not `open`): the relay's own key, `token-key.pem` in `identity_dir`
    /// (see `admission`).
    pub token_keys: Vec<String>,
    /// The audience (`aud`) tokens must name: this relay's name.
    pub token_audience: String,
    /// Check the authentication tag of every datagram (the default). `false` is for
    /// measurement only (`relay_load` compares both): datagrams are then trusted by their source
    /// address alone, as before datagram version 2.
    pub check_datagram_tags: bool,
    /// Permissions: length in seconds of a ban whose `Ban` asks for 0 (default one hour).
    pub ban_default_secs: u32,
    /// Permissions: the longest ban in seconds an admin can ask for (longer requests are cut to
    /// it; default one week). Bans are kept in memory: a restart lifts them.
    pub ban_max_secs: u32,
}

/// The default `token_audience`.
pub const DEFAULT_AUDIENCE: &str = "voice-relay";

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN.parse().expect("valid default address"),
            channels: vec![
                ChannelConfig {
                    id: 1,
                    name: "Lobby".into(),
                    spatial: None,
                    max_members: None,
                    allow: None,
                },
                ChannelConfig {
                    id: 2,
                    name: "Team A".into(),
                    spatial: None,
                    max_members: None,
                    allow: None,
                },
                ChannelConfig {
                    id: 3,
                    name: "Team B".into(),
                    spatial: None,
                    max_members: None,
                    allow: None,
                },
            ],
            default_channel: 1,
            max_sessions: 1000,
            max_connections: 1100,
            handshake_timeout_ms: 5_000,
            idle_timeout_ms: 30_000,
            max_outgoing_bytes: 256 * 1024,
            voice_packets: Limit {
                rate: 100.0,
                burst: 50.0,
            },
            voice_bytes: Limit {
                rate: 40_000.0,
                burst: 20_000.0,
            },
            control_messages: Limit {
                rate: 50.0,
                burst: 100.0,
            },
            chat_messages: Limit {
                rate: 5.0,
                burst: 10.0,
            },
            stats_interval_ms: 10_000,
            udp_buffer_bytes: 4 * 1024 * 1024,
            batch_io: true,
            workers: 0,
            redis: None,
            advertise: None,
            lease_ms: 3_000,
            insecure_plaintext: false,
            tls_cert: None,
            tls_key: None,
            identity_dir: None,
            open: false,
            token_keys: Vec::new(),
            token_audience: DEFAULT_AUDIENCE.into(),
            check_datagram_tags: true,
            ban_default_secs: 3600,
            ban_max_secs: 7 * 24 * 3600,
        }
    }
}

/// Text printed for `--help`.
pub const USAGE: &str = "\
relay — voice relay (TCP control + UDP voice on one port)

USAGE: relay [--listen ADDR] [--config FILE] [--cert PEM --key PEM | --identity-dir DIR]
             [--insecure-plaintext] [--workers N]
             [--redis URL [--advertise ADDR] [--lease-ms MS]]
             [--open] [--token-key PUBLIC ...] [--audience NAME]

  --listen ADDR         TCP and UDP listen address (default 0.0.0.0:7400); overrides the file.
                        [::]:7400 listens on IPv6 and IPv4 (dual-stack).
                        Port 0 picks a free port, the same for TCP and UDP
  --config FILE         TOML configuration (see deploy/relay.toml)
  --cert PEM            TLS certificate chain (PEM), with --key
  --key PEM             TLS private key (PEM)
  --identity-dir DIR    where the self-signed identity is created on first start and reused
                        (default ./relay-identity when no --cert/--key)
  --insecure-plaintext  development only: no TLS on the control connection
  --workers N           forwarding threads, each with its own SO_REUSEPORT UDP socket
                        (default: one per available core; 1: a single thread, as before)
  --redis URL           join a cluster: rooms placed across relays with leases in this Redis
                        (redis://127.0.0.1:6379/); without it the relay runs alone
  --advertise ADDR      the IP:PORT clients are redirected to for rooms hosted here
  --lease-ms MS         room lease length (default 3000)
  --open                development only: admit clients without an access token (with
                        --token-key, a token that is presented is still checked: admins)
  --token-key PUBLIC    accept tokens signed by this Ed25519 public key (base64url, from
                        `relay keygen`); repeatable. Without it (and without --open) the relay
                        signs with its own key, DIR/token-key.pem: `relay token --name NAME`
                        mints a token for it
  --audience NAME       the `aud` tokens must carry (default voice-relay)
  --help                this text

The control connection is TLS 1.3. Once bound, the relay prints on stdout
`listening on IP:PORT`, then (with TLS) `fingerprint sha256:<64 hex digits>`: the SHA-256 of
its certificate, which clients pin.
Exit status: 0 clean stop (SIGINT/SIGTERM) or --help; 1 unusable configuration file, bind
failure or I/O error; 2 bad command line.
Logging: RUST_LOG=info (default), debug, trace.";

impl Config {
    /// Reads a TOML file; missing keys keep their defaults.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let cfg: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Builds the configuration from command-line arguments (without the program name).
    /// `Ok(None)` means `--help` was asked for.
    pub fn from_args<I: IntoIterator<Item = String>>(
        args: I,
    ) -> Result<Option<Config>, ConfigError> {
        let mut listen: Option<SocketAddr> = None;
        let mut file: Option<PathBuf> = None;
        let mut cert: Option<PathBuf> = None;
        let mut key: Option<PathBuf> = None;
        let mut identity: Option<PathBuf> = None;
        let mut plaintext = false;
        let mut workers: Option<usize> = None;
        let mut redis: Option<String> = None;
        let mut advertise: Option<SocketAddr> = None;
        let mut lease_ms: Option<u64> = None;
        let mut open = false;
        let mut keys: Vec<String> = Vec::new();
        let mut audience: Option<String> = None;
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            let mut value = |flag: &str| {
                it.next()
                    .ok_or_else(|| ConfigError::Usage(format!("{flag} needs a value\n\n{USAGE}")))
            };
            match a.as_str() {
                "--listen" => {
                    let v = value("--listen")?;
                    listen = Some(
                        v.parse()
                            .map_err(|e| ConfigError::Usage(format!("--listen {v}: {e}")))?,
                    );
                }
                "--config" => file = Some(PathBuf::from(value("--config")?)),
                "--cert" => cert = Some(PathBuf::from(value("--cert")?)),
                "--key" => key = Some(PathBuf::from(value("--key")?)),
                "--identity-dir" => identity = Some(PathBuf::from(value("--identity-dir")?)),
                "--insecure-plaintext" => plaintext = true,
                "--redis" => redis = Some(value("--redis")?),
                "--advertise" => {
                    let v = value("--advertise")?;
                    advertise = Some(
                        v.parse()
                            .map_err(|e| ConfigError::Usage(format!("--advertise {v}: {e}")))?,
                    );
                }
                "--lease-ms" => {
                    let v = value("--lease-ms")?;
                    lease_ms = Some(
                        v.parse()
                            .map_err(|e| ConfigError::Usage(format!("--lease-ms {v}: {e}")))?,
                    );
                }
                "--workers" => {
                    let v = value("--workers")?;
                    workers = Some(
                        v.parse()
                            .map_err(|e| ConfigError::Usage(format!("--workers {v}: {e}")))?,
                    );
                }
                "--open" => open = true,
                "--token-key" => keys.push(value("--token-key")?),
                "--audience" => audience = Some(value("--audience")?),
                "--help" | "-h" => return Ok(None),
                other => {
                    return Err(ConfigError::Usage(format!(
                        "unknown argument {other}\n\n{USAGE}"
                    )))
                }
            }
        }
        let mut cfg = match file {
            Some(f) => Config::from_file(&f)?,
            None => Config::default(),
        };
        if let Some(l) = listen {
            cfg.listen = l;
        }
        if let Some(w) = workers {
            cfg.workers = w;
        }
        if redis.is_some() {
            cfg.redis = redis;
        }
        if advertise.is_some() {
            cfg.advertise = advertise;
        }
        if let Some(l) = lease_ms {
            cfg.lease_ms = l;
        }
        if cert.is_some() || key.is_some() {
            cfg.tls_cert = cert;
            cfg.tls_key = key;
        }
        if identity.is_some() {
            cfg.identity_dir = identity;
        }
        if cfg.identity_dir.is_none() && cfg.tls_cert.is_none() {
            cfg.identity_dir = Some(PathBuf::from(DEFAULT_IDENTITY_DIR));
        }
        cfg.insecure_plaintext |= plaintext;
        cfg.open |= open;
        if !keys.is_empty() {
            cfg.token_keys = keys;
        }
        if let Some(a) = audience {
            cfg.token_audience = a;
        }
        cfg.validate()?;
        Ok(Some(cfg))
    }

    /// Checks internal consistency.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.channels.is_empty() {
            return bad("at least one channel is needed".into());
        }
        for c in &self.channels {
            if let Some(a) = &c.spatial {
                if SpatialInfo::from_attenuation(a).is_err() {
                    return bad(format!(
                        "channel {}: spatial needs 0 < min_distance < max_distance <= 4e6 and \
                         rolloff >= 0",
                        c.id
                    ));
                }
            }
        }
        for c in &self.channels {
            if c.max_members == Some(0) {
                return bad(format!(
                    "channel {}: max_members must be at least 1 (absent: no cap)",
                    c.id
                ));
            }
        }
        if self.ban_default_secs == 0 || self.ban_max_secs < self.ban_default_secs {
            return bad("bans need 0 < ban_default_secs <= ban_max_secs".into());
        }
        let mut ids: Vec<u32> = self.channels.iter().map(|c| c.id).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return bad("channel ids must be unique".into());
        }
        if !ids.contains(&self.default_channel) {
            return bad(format!(
                "default_channel {} is not a configured channel",
                self.default_channel
            ));
        }
        for (name, l) in [
            ("voice_packets", self.voice_packets),
            ("voice_bytes", self.voice_bytes),
            ("control_messages", self.control_messages),
            ("chat_messages", self.chat_messages),
        ] {
            if !(l.rate > 0.0 && l.burst >= 1.0) {
                return bad(format!("{name}: rate must be > 0 and burst >= 1"));
            }
        }
        if self.voice_bytes.burst < voice_proto::udp::MAX_DATAGRAM as f64 {
            return bad("voice_bytes.burst must hold at least one maximum datagram".into());
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return bad("tls_cert and tls_key go together (--cert and --key)".into());
        }
        if self.redis.is_some() && self.lease_ms < 100 {
            return bad("lease_ms must be at least 100".into());
        }
        if self.workers > MAX_WORKERS {
            return bad(format!("workers must be at most {MAX_WORKERS}"));
        }
        if self.token_audience.is_empty() {
            return bad("token_audience must not be empty".into());
        }
        if self.handshake_timeout_ms == 0 || self.idle_timeout_ms == 0 {
            return bad("timeouts must be > 0".into());
        }
        // `Welcome` and `ChannelList` list every user in one frame: the largest possible listing
        // must fit the protocol's frame cap, and the outgoing buffer cap must not cut it off.
        let listing = |users| listing_bound(self.channels.iter().map(|c| c.name.len()), users);
        let max_listing = listing(self.max_sessions);
        if max_listing > MAX_SERVER_FRAME {
            let fit = MAX_SERVER_FRAME.saturating_sub(listing(0)) / (listing(1) - listing(0));
            return bad(format!(
                "max_sessions {}: a channel listing could reach {max_listing} bytes, over the \
                 control protocol's {MAX_SERVER_FRAME}-byte frame cap; at most {fit} sessions fit \
                 with these channel names",
                self.max_sessions
            ));
        }
        if self.max_outgoing_bytes < max_listing {
            return bad(format!(
                "max_outgoing_bytes {} is below the largest channel listing ({max_listing} bytes \
                 for max_sessions {}): clients would be disconnected on Welcome",
                self.max_outgoing_bytes, self.max_sessions
            ));
        }
        Ok(())
    }

    /// The default channel as a typed id.
    pub fn default_channel_id(&self) -> ChannelId {
        ChannelId(self.default_channel)
    }

    /// The number of forwarding workers to run: `workers`, or one per available core for 0.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_WORKERS)),
            n => n,
        }
    }

    /// Handshake timeout.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }

    /// Idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_flags_override() {
        Config::default().validate().unwrap();
        let cfg = Config::from_args(["--listen".to_owned(), "127.0.0.1:9".to_owned()])
            .unwrap()
            .unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:9".parse().unwrap());
        assert!(Config::from_args(["--help".to_owned()]).unwrap().is_none());
        assert!(Config::from_args(["--bogus".to_owned()]).is_err());
        let cfg = Config::from_args(["--workers".to_owned(), "3".to_owned()])
            .unwrap()
            .unwrap();
        assert_eq!(cfg.worker_count(), 3);
        assert!(Config::default().worker_count() >= 1);
        assert!(Config::from_args(["--workers".to_owned(), "x".to_owned()]).is_err());
        assert!(Config::from_args(["--workers".to_owned(), "9999".to_owned()]).is_err());
    }

    #[test]
    fn sample_file_parses() {
        let text = include_str!("../deploy/relay.toml");
        let cfg: Config = toml::from_str(text).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.default_channel_id(), ChannelId(1));
    }

    #[test]
    fn a_3d_channel_parses_and_bad_ranges_are_refused() {
        let text = r#"
            default_channel = 4
            [[channels]]
            id = 4
            name = "Arena"
            spatial = { model = "Linear", min_distance = 1.0, max_distance = 40.0, rolloff = 1.0 }
        "#;
        let cfg: Config = toml::from_str(text).unwrap();
        cfg.validate().unwrap();
        let a = cfg.channels[0].spatial.unwrap();
        assert_eq!(
            (a.model, a.max_distance),
            (voice_proto::attenuation::DistanceModel::Linear, 40.0)
        );
        let bad: Config =
            toml::from_str(&text.replace("max_distance = 40.0", "max_distance = 0.5")).unwrap();
        assert!(bad.validate().is_err());
        assert!(toml::from_str::<Config>(&text.replace("Linear", "Cubic")).is_err());
    }

    #[test]
    fn channel_caps_and_allow_lists_parse_and_a_zero_cap_is_refused() {
        let text = r#"
            [[channels]]
            id = 1
            name = "Lobby"
            [[channels]]
            id = 2
            name = "Staff"
            max_members = 2
            allow = ["alice", "bob"]
        "#;
        let cfg: Config = toml::from_str(text).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.channels[0].max_members, None);
        assert_eq!(cfg.channels[0].allow, None);
        assert_eq!(cfg.channels[1].max_members, Some(2));
        assert_eq!(
            cfg.channels[1].allow.as_deref(),
            Some(&["alice".to_owned(), "bob".to_owned()][..])
        );
        let zero: Config =
            toml::from_str(&text.replace("max_members = 2", "max_members = 0")).unwrap();
        assert!(zero.validate().is_err());
        let bans = Config {
            ban_default_secs: 10,
            ban_max_secs: 5,
            ..Config::default()
        };
        assert!(bans.validate().is_err());
    }

    #[test]
    fn inconsistent_values_are_rejected() {
        let c = Config {
            default_channel: 99,
            ..Config::default()
        };
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.channels.push(c.channels[0].clone());
        assert!(c.validate().is_err());
    }

    #[test]
    fn the_largest_listing_must_fit_a_frame_and_the_outgoing_cap() {
        let too_many = Config {
            max_sessions: 100_000,
            max_connections: 100_000,
            max_outgoing_bytes: 64 << 20,
            ..Config::default()
        };
        let err = too_many.validate().unwrap_err().to_string();
        assert!(err.contains("sessions fit"), "{err}");
        let many = Config {
            max_sessions: 10_000,
            max_connections: 10_000,
            max_outgoing_bytes: 2 << 20,
            ..Config::default()
        };
        many.validate().unwrap();
        let tight = Config {
            max_outgoing_bytes: 1 << 20,
            ..many
        };
        let err = tight.validate().unwrap_err().to_string();
        assert!(err.contains("max_outgoing_bytes"), "{err}");
    }
}
