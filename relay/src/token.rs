//! Access tokens: JSON Web Tokens signed with Ed25519 (`alg: EdDSA`), minted by the operator's or
//! the game's backend with any JWT library, checked by the relay against its configured public
//! keys. [`mint`] and [`keygen`] are what `relay token` and `relay keygen` run (for development
//! and tests).
//!
//! Claims ([`Claims`]): `sub` (stable user id), `name` (display name), `channels` (`"all"` or a
//! list of channel ids), `whisper` (`"none"`, `"channel"`: same channel only, `"any"`), `admin`,
//! `exp` and `nbf` (seconds since the Unix epoch; 30 s leeway) and `aud` (the relay's name).
//!
//! Every rejection is its own [`TokenError`] (fuzzed: `fuzz/fuzz_targets/access_token.rs`).
//! The header is read by hand before any signature work, so `alg: none` (or any algorithm but
//! EdDSA) is refused by name. A token whose `kid` names a configured key is checked with that
//! key only (so a bad signature is told apart from an unknown key); a token without `kid` is
//! tried against every key. Tokens are never logged: errors name the claim, not the token.
//!
//! The relay checks the token of every `Hello` (control version 2 and later) unless it runs in open mode;
//! see `admission`. Without configured keys it signs with its own key ([`SigningKey`]), kept in
//! its identity directory as `token-key.pem` next to its TLS certificate.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::signature::KeyPair as _;
use serde::{Deserialize, Serialize};
use voice_proto::tcp::MAX_USER_ID_LEN;
use voice_proto::ChannelId;

/// Seconds of clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 30;

/// Which channels a token admits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ChannelScope {
    /// The word `"all"`.
    Word(String),
    /// These channel ids.
    List(Vec<u32>),
}

/// Whom the holder may whisper to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WhisperScope {
    /// Nobody.
    #[default]
    None,
    /// Members of the holder's channel.
    Channel,
    /// Anyone on the relay.
    Any,
}

impl WhisperScope {
    /// Whether a session in channel `from` may whisper to one in channel `to`.
    pub fn allows(self, from: Option<ChannelId>, to: Option<ChannelId>) -> bool {
        match self {
            WhisperScope::None => false,
            WhisperScope::Channel => from.is_some() && from == to,
            WhisperScope::Any => true,
        }
    }
}

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Stable user id.
    pub sub: String,
    /// Display name.
    pub name: String,
    /// Channels the holder may join.
    pub channels: ChannelScope,
    /// Whisper scope.
    #[serde(default)]
    pub whisper: WhisperScope,
    /// May kick and ban.
    #[serde(default)]
    pub admin: bool,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Not valid before, seconds since the epoch.
    #[serde(default)]
    pub nbf: u64,
    /// The relay's name.
    pub aud: String,
}

impl Claims {
    /// True when the token admits `channel`.
    pub fn may_join(&self, channel: ChannelId) -> bool {
        match &self.channels {
            ChannelScope::Word(w) => w == "all",
            ChannelScope::List(ids) => ids.contains(&channel.0),
        }
    }

    /// `Ok` when the token admits `channel`.
    pub fn check_channel(&self, channel: ChannelId) -> Result<(), TokenError> {
        if self.may_join(channel) {
            Ok(())
        } else {
            Err(TokenError::ChannelNotAllowed(channel.0))
        }
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts, or the header or claims are not the expected JSON.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The header names another algorithm than EdDSA (e.g. `none`).
    #[error("token algorithm {0:?} is not allowed (only EdDSA)")]
    AlgorithmNotAllowed(String),
    /// `exp` is in the past.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// The signature does not verify with the key it names (or with any key).
    #[error("token signature does not verify")]
    BadSignature,
    /// `aud` is not this relay's name.
    #[error("token is for another relay (wrong audience)")]
    WrongAudience,
    /// The `kid` names no configured key.
    #[error("token signed by an unknown key")]
    UnknownKey,
    /// The token does not admit this channel.
    #[error("token does not allow channel {0}")]
    ChannelNotAllowed(u32),
    /// A configured public key is unusable.
    #[error("bad public key: {0}")]
    BadKey(String),
}

/// The id of a public key: the first 8 bytes of its SHA-256, in hex (the JWT `kid`).
pub fn key_id(public: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, public);
    d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks tokens against the relay's public keys and name.
pub struct Verifier {
    keys: Vec<(String, DecodingKey)>,
    audience: String,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field(
                "key_ids",
                &self.keys.iter().map(|k| &k.0).collect::<Vec<_>>(),
            )
            .field("audience", &self.audience)
            .finish()
    }
}

impl Verifier {
    /// `public_keys`: raw Ed25519 public keys in base64url (what `relay keygen` prints).
    pub fn new(public_keys: &[String], audience: &str) -> Result<Verifier, TokenError> {
        let mut keys = Vec::new();
        for k in public_keys {
            let raw = URL_SAFE_NO_PAD
                .decode(k.trim())
                .map_err(|e| TokenError::BadKey(e.to_string()))?;
            if raw.len() != 32 {
                return Err(TokenError::BadKey(format!(
                    "an Ed25519 public key has 32 bytes, not {}",
                    raw.len()
                )));
            }
            keys.push((key_id(&raw), DecodingKey::from_ed_der(&raw)));
        }
        Ok(Verifier {
            keys,
            audience: audience.to_owned(),
        })
    }

    /// The claims of a valid token.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = token
            .split('.')
            .next()
            .ok_or_else(|| TokenError::Malformed("empty".into()))?;
        let header = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| TokenError::Malformed("header is not base64url".into()))?;
        let header: serde_json::Value = serde_json::from_slice(&header)
            .map_err(|_| TokenError::Malformed("header is not JSON".into()))?;
        let alg = header.get("alg").and_then(|a| a.as_str()).unwrap_or("");
        if alg != "EdDSA" {
            return Err(TokenError::AlgorithmNotAllowed(alg.to_owned()));
        }
        let kid = header.get("kid").and_then(|k| k.as_str());
        let candidates: Vec<&DecodingKey> = match kid {
            Some(kid) => {
                let k: Vec<_> = self
                    .keys
                    .iter()
                    .filter(|(id, _)| id == kid)
                    .map(|(_, k)| k)
                    .collect();
                if k.is_empty() {
                    return Err(TokenError::UnknownKey);
                }
                k
            }
            None => self.keys.iter().map(|(_, k)| k).collect(),
        };
        if candidates.is_empty() {
            return Err(TokenError::UnknownKey);
        }
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        let mut last = TokenError::BadSignature;
        for key in candidates {
            use jsonwebtoken::errors::ErrorKind as K;
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) => return data.claims.checked(),
                Err(e) => {
                    last = match e.kind() {
                        K::InvalidSignature => TokenError::BadSignature,
                        K::ExpiredSignature => return Err(TokenError::Expired),
                        K::ImmatureSignature => return Err(TokenError::NotYetValid),
                        K::InvalidAudience => return Err(TokenError::WrongAudience),
                        K::InvalidAlgorithm => {
                            return Err(TokenError::AlgorithmNotAllowed(alg.to_owned()))
                        }
                        other => return Err(TokenError::Malformed(format!("{other:?}"))),
                    }
                }
            }
        }
        Err(last)
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A new Ed25519 key pair: (private key as PKCS#8 PEM, public key in base64url).
pub fn keygen() -> Result<(String, String), TokenError> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| TokenError::BadKey("key generation failed".into()))?;
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|_| TokenError::BadKey("key generation failed".into()))?;
    let b64 = STANDARD.encode(pkcs8.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    Ok((pem, URL_SAFE_NO_PAD.encode(pair.public_key().as_ref())))
}

/// Signs `claims` with the PKCS#8 Ed25519 key in the PEM file `key` (with its `kid`).
pub fn mint(key: &Path, claims: &Claims) -> Result<String, TokenError> {
    SigningKey::load(key)?.mint(claims)
}

/// The name of the relay's own signing key in its identity directory.
pub const SIGNING_KEY_FILE: &str = "token-key.pem";

/// An Ed25519 private key that mints tokens: the operator's (`relay keygen`) or the relay's own.
/// Its `Debug` shows only the public key.
#[derive(Clone)]
pub struct SigningKey {
    pkcs8: Vec<u8>,
    public: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &self.public)
            .finish()
    }
}

impl SigningKey {
    fn from_pkcs8(pkcs8: Vec<u8>) -> Result<SigningKey, TokenError> {
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8)
            .map_err(|_| TokenError::BadKey("not an Ed25519 key".into()))?;
        let public = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        Ok(SigningKey { pkcs8, public })
    }

    /// A fresh key held in memory only.
    pub fn generate() -> Result<SigningKey, TokenError> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| TokenError::BadKey("key generation failed".into()))?;
        SigningKey::from_pkcs8(pkcs8.as_ref().to_vec())
    }

    /// Reads a PKCS#8 PEM Ed25519 private key.
    pub fn load(path: &Path) -> Result<SigningKey, TokenError> {
        match voice_tls::load_key(path).map_err(|e| TokenError::BadKey(e.to_string()))? {
            voice_tls::pki_types::PrivateKeyDer::Pkcs8(k) => {
                SigningKey::from_pkcs8(k.secret_pkcs8_der().to_vec())
            }
            _ => Err(TokenError::BadKey("want a PKCS#8 Ed25519 key".into())),
        }
    }

    /// The key in `dir`/[`SIGNING_KEY_FILE`], created (mode 0600, directory too) when missing.
    /// Returns the key and whether it was created now.
    pub fn load_or_create(dir: &Path) -> Result<(SigningKey, bool), TokenError> {
        let path = dir.join(SIGNING_KEY_FILE);
        if path.exists() {
            return Ok((SigningKey::load(&path)?, false));
        }
        let io = |e: std::io::Error| TokenError::BadKey(format!("{}: {e}", path.display()));
        std::fs::create_dir_all(dir).map_err(io)?;
        let (pem, _) = keygen()?;
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        // create_new: two processes racing to create it cannot both win; the loser reads it.
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut f) => {
                f.write_all(pem.as_bytes()).map_err(io)?;
                f.sync_all().map_err(io)?;
                Ok((SigningKey::load(&path)?, true))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Ok((SigningKey::load(&path)?, false))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The public key in base64url (what a relay's `token_keys` lists).
    pub fn public(&self) -> &str {
        &self.public
    }

    /// Signs `claims` (the header names this key's `kid`); refuses a `sub` the relay would
    /// refuse.
    pub fn mint(&self, claims: &Claims) -> Result<String, TokenError> {
        claims.check_subject()?;
        let raw = URL_SAFE_NO_PAD
            .decode(&self.public)
            .map_err(|e| TokenError::BadKey(e.to_string()))?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key_id(&raw));
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(&self.pkcs8))
            .map_err(|e| TokenError::BadKey(e.to_string()))
    }
}

impl Claims {
    /// `sub` is what clients see as the stable user id: 1..=[`MAX_USER_ID_LEN`] bytes, no
    /// control characters.
    fn check_subject(&self) -> Result<(), TokenError> {
        let sub = &self.sub;
        if sub.is_empty() || sub.len() > MAX_USER_ID_LEN || sub.chars().any(char::is_control) {
            return Err(TokenError::Malformed(format!(
                "sub must be 1 to {MAX_USER_ID_LEN} bytes without control characters"
            )));
        }
        Ok(())
    }

    fn checked(self) -> Result<Claims, TokenError> {
        self.check_subject().map(|()| self)
    }

    /// Claims for a development token: `sub` = `name`, every channel, whisper to anyone, no
    /// admin, valid from now (minus the leeway) for `ttl_secs`.
    pub fn for_name(name: &str, audience: &str, ttl_secs: u64) -> Claims {
        let now = now_secs();
        Claims {
            sub: name.to_owned(),
            name: name.to_owned(),
            channels: ChannelScope::Word("all".into()),
            whisper: WhisperScope::Any,
            admin: false,
            exp: now + ttl_secs,
            nbf: now.saturating_sub(LEEWAY_SECS),
            aud: audience.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Keys {
        dir: std::path::PathBuf,
        public: String,
    }

    impl Keys {
        fn new(tag: &str) -> Keys {
            let dir =
                std::env::temp_dir().join(format!("relay-token-{}-{tag}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let (pem, public) = keygen().unwrap();
            std::fs::write(dir.join("key.pem"), pem).unwrap();
            Keys { dir, public }
        }

        fn mint(&self, c: &Claims) -> String {
            mint(&self.dir.join("key.pem"), c).unwrap()
        }
    }

    impl Drop for Keys {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn claims() -> Claims {
        Claims {
            sub: "user-1".into(),
            name: "alice".into(),
            channels: ChannelScope::List(vec![1, 2]),
            whisper: WhisperScope::Channel,
            admin: false,
            exp: now_secs() + 3600,
            nbf: now_secs() - 10,
            aud: "relay-test".into(),
        }
    }

    #[test]
    fn a_valid_token_yields_its_claims_and_channel_scope() {
        let k = Keys::new("valid");
        let v = Verifier::new(std::slice::from_ref(&k.public), "relay-test").unwrap();
        let got = v.verify(&k.mint(&claims())).unwrap();
        assert_eq!(got, claims());
        assert!(got.check_channel(ChannelId(2)).is_ok());
        assert_eq!(
            got.check_channel(ChannelId(3)),
            Err(TokenError::ChannelNotAllowed(3))
        );
        let all = Claims {
            channels: ChannelScope::Word("all".into()),
            ..claims()
        };
        assert!(v.verify(&k.mint(&all)).unwrap().may_join(ChannelId(99)));
    }

    #[test]
    fn a_subject_clients_could_not_be_shown_is_neither_minted_nor_accepted() {
        let k = Keys::new("subject");
        let v = Verifier::new(std::slice::from_ref(&k.public), "relay-test").unwrap();
        let fits = Claims {
            sub: "s".repeat(MAX_USER_ID_LEN),
            ..claims()
        };
        assert!(v.verify(&k.mint(&fits)).is_ok());
        let key = SigningKey::load(&k.dir.join("key.pem")).unwrap();
        for sub in [
            "s".repeat(MAX_USER_ID_LEN + 1),
            String::new(),
            "a\nb".into(),
        ] {
            let bad = Claims { sub, ..claims() };
            assert!(matches!(key.mint(&bad), Err(TokenError::Malformed(_))));
            // Signed by a backend that does not check: refused at the relay.
            let raw = URL_SAFE_NO_PAD.decode(key.public()).unwrap();
            let mut header = Header::new(Algorithm::EdDSA);
            header.kid = Some(key_id(&raw));
            let token =
                jsonwebtoken::encode(&header, &bad, &EncodingKey::from_ed_der(&key.pkcs8)).unwrap();
            assert!(matches!(v.verify(&token), Err(TokenError::Malformed(_))));
        }
    }

    #[test]
    fn expired_and_not_yet_valid_tokens_are_refused() {
        let k = Keys::new("time");
        let v = Verifier::new(std::slice::from_ref(&k.public), "relay-test").unwrap();
        let expired = Claims {
            exp: now_secs() - 3600,
            ..claims()
        };
        assert_eq!(v.verify(&k.mint(&expired)), Err(TokenError::Expired));
        let early = Claims {
            nbf: now_secs() + 3600,
            ..claims()
        };
        assert_eq!(v.verify(&k.mint(&early)), Err(TokenError::NotYetValid));
    }

    #[test]
    fn a_wrong_audience_is_refused() {
        let k = Keys::new("aud");
        let v = Verifier::new(std::slice::from_ref(&k.public), "another-relay").unwrap();
        assert_eq!(v.verify(&k.mint(&claims())), Err(TokenError::WrongAudience));
    }

    #[test]
    fn an_unknown_key_and_a_wrong_signature_are_told_apart() {
        let ours = Keys::new("ours");
        let theirs = Keys::new("theirs");
        let v = Verifier::new(std::slice::from_ref(&ours.public), "relay-test").unwrap();
        assert_eq!(
            v.verify(&theirs.mint(&claims())),
            Err(TokenError::UnknownKey)
        );
        // Our kid, another key's signature: a forged token.
        let good = ours.mint(&claims());
        let forged = theirs.mint(&claims());
        let mut parts: Vec<&str> = good.split('.').collect();
        parts[2] = forged.split('.').nth(2).unwrap();
        assert_eq!(v.verify(&parts.join(".")), Err(TokenError::BadSignature));
        // Changed claims under a valid signature.
        let admin = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&Claims {
                admin: true,
                ..claims()
            })
            .unwrap(),
        );
        let mut parts: Vec<&str> = good.split('.').collect();
        parts[1] = &admin;
        assert_eq!(v.verify(&parts.join(".")), Err(TokenError::BadSignature));
    }

    #[test]
    fn a_created_signing_key_persists_privately_and_verifies() {
        let dir = std::env::temp_dir().join(format!("relay-signing-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (k, created) = SigningKey::load_or_create(&dir).unwrap();
        assert!(created);
        let (again, created) = SigningKey::load_or_create(&dir).unwrap();
        assert!(!created);
        assert_eq!(k.public(), again.public());
        let mode = std::fs::metadata(dir.join(SIGNING_KEY_FILE)).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o077,
            0
        );
        let v = Verifier::new(&[k.public().to_owned()], "voice-relay").unwrap();
        let c = Claims::for_name("alice", "voice-relay", 60);
        assert_eq!(v.verify(&again.mint(&c).unwrap()).unwrap(), c);
        assert!(!format!("{k:?}").contains("pkcs8"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn alg_none_and_garbage_are_refused_by_name() {
        let k = Keys::new("none");
        let v = Verifier::new(std::slice::from_ref(&k.public), "relay-test").unwrap();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).unwrap());
        assert_eq!(
            v.verify(&format!("{header}.{body}.")),
            Err(TokenError::AlgorithmNotAllowed("none".into()))
        );
        let hs = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        assert_eq!(
            v.verify(&format!("{hs}.{body}.c2ln")),
            Err(TokenError::AlgorithmNotAllowed("HS256".into()))
        );
        assert!(matches!(v.verify("garbage"), Err(TokenError::Malformed(_))));
        assert!(matches!(v.verify(""), Err(TokenError::Malformed(_))));
        assert!(matches!(
            Verifier::new(&["AAAA".into()], "x"),
            Err(TokenError::BadKey(_))
        ));
    }
}
