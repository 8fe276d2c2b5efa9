//! `relay`: the voice relay of the voice engine.
//!
//! One `mio` control loop (plus `workers - 1` `SO_REUSEPORT` forwarding threads) serves the TCP control plane (TLS 1.3 unless
//! [`Config::insecure_plaintext`]) (handshake, channels, presence,
//! chat, stats) and the UDP voice plane (registration by proof, fan-out of the exact received
//! bytes to the sender's channel or a whisper target) on the same address and port (default
//! [`config::DEFAULT_LISTEN`]). Protocol decisions are plain functions over plain state, tested
//! without sockets; the loop only moves bytes. The wire format is `voice_proto`, specified
//! for people (and other implementations) in `docs/PROTOCOL.md`.
//!
//! | module | owns |
//! |---|---|
//! | [`admission`] | who may open a session: access tokens or open mode, and the session's rights |
//! | [`config`] | defaults, TOML file, command-line flags |
//! | [`state`] | sessions, channels, the routing decision for each datagram |
//! | [`budget`] | token buckets (time passed in) |
//! | [`cluster`] | rooms across relays: leases in Redis, on their own thread |
//! | [`directory`] | rooms' members across relays: published to Redis, merged into channel lists |
//! | [`forward`] | what forwarding workers read (the published snapshot) and own (sender state, counters) |
//! | [`control`] | TCP messages as state transitions producing outgoing messages |
//! | `datapath` | the per-datagram decision (parse, tag, routing, replay, budgets, culling) as a verdict |
//! | [`permissions`] | channel allow-lists, member caps and names at join; kick, ban, token expiry |
//! | [`memory`] | the relay's decisions in memory, on a caller's clock: deterministic tests with engines |
//! | [`identity`] | the TLS certificate: the operator's, or self-signed and persisted |
//! | [`stats`] | counters, including every drop by reason |
//! | [`token`] | access tokens (EdDSA JWTs): verification, minting, key generation |
//! | [`udpio`] | `recvmmsg`/`sendmmsg` batches (the unsafe code, but for one `setsockopt` in `server`) |
//! | [`server`] | the event loop, timeouts, buffers, [`Relay`] and [`RelayHandle`] |
//!
//! ```no_run
//! let relay = relay::Relay::bind(relay::Config::default())?;
//! println!("listening on {}", relay.local_addr());
//! let handle = relay.spawn()?;
//! // ...
//! handle.stop()?;
//! # Ok::<(), relay::Error>(())
//! ```
//!
//! Linux only (it uses `recvmmsg`/`sendmmsg` through `libc`).

pub mod admission;
pub mod budget;
pub mod cluster;
pub mod config;
pub mod control;
mod datapath;
pub mod directory;
pub mod forward;
pub mod identity;
pub mod memory;
pub mod permissions;
pub mod server;
pub mod state;
pub mod stats;
pub mod token;
pub mod tunnel;
pub mod udpio;

pub use config::Config;
pub use server::{Relay, RelayHandle, Stopper};
pub use stats::{Counter, Stats};

/// Any error of the relay.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// Binding the listen address failed.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The TLS identity could not be loaded or created.
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    /// The access-token keys could not be set up.
    #[error(transparent)]
    Admission(#[from] admission::AdmissionError),
    /// An I/O error of the event loop.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
