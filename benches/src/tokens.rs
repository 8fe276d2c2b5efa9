//! Access tokens for benchmarks whose relay runs in a child process: the parent holds a backend
//! signing key ([`key`]) and hands its public half to the child in [`ENV`]; the child's relay
//! accepts exactly that key ([`relay_keys`]); the parent mints each simulated user's token
//! ([`token`]) before the measurement, as a game backend would.

use std::sync::OnceLock;

use relay::token::{Claims, SigningKey};
use voice_core::proto::tcp::AccessToken;

/// The environment variable carrying the public key to a child relay.
pub const ENV: &str = "VOICE_BENCH_TOKEN_KEY";

/// This process's backend key (generated once).
pub fn key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate().expect("Ed25519 key generation"))
}

/// A token for `name` (every channel, whisper to anyone, one hour) signed with [`key`].
pub fn token(name: &str) -> AccessToken {
    let claims = Claims::for_name(name, relay::config::DEFAULT_AUDIENCE, 3600);
    AccessToken(key().mint(&claims).expect("minting a token"))
}

/// In a child relay: the keys to configure (`token_keys`), from [`ENV`]; empty when unset (the
/// relay then uses a key of its own, which no bench client holds).
pub fn relay_keys() -> Vec<String> {
    std::env::var(ENV).map(|k| vec![k]).unwrap_or_default()
}
