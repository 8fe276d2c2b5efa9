//! The relay the single-relay tests talk to: on loopback, an ephemeral port, TLS and tokens by
//! default, no periodic stats lines.

use relay::config::Config;
use relay::server::{Relay, RelayHandle};

/// A relay on `127.0.0.1` with the default number of forwarding workers.
pub fn start_relay() -> RelayHandle {
    start_relay_with(Config::default().workers)
}

/// A relay on `127.0.0.1` with `workers` forwarding threads (0: the default).
pub fn start_relay_with(workers: usize) -> RelayHandle {
    let cfg = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        stats_interval_ms: 0,
        workers,
        ..Config::default()
    };
    Relay::bind(cfg).unwrap().spawn().unwrap()
}
