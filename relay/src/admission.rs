//! Who may open a session, and with which rights.
//!
//! Secure by default: every `Hello` must carry an access token ([`crate::token`]) that verifies
//! against the relay's keys and names the relay's audience. The keys are, in this order:
//! 1. `open` — no check at all (development on a trusted network): the name in `Hello` is taken
//!    as is and the session may join any channel and whisper to anyone, as before tokens existed.
//!    With `token_keys` as well, a `Hello` that does carry a token is checked against them and
//!    gets the token's rights (so an admin can moderate an open relay); one without is admitted
//!    by name;
//! 2. `token_keys` — the operator's (or the game backend's) Ed25519 public keys;
//! 3. otherwise the relay's own signing key: `token-key.pem` in `identity_dir`, created on first
//!    start like the TLS certificate, so `relay token --name alice` (same directory) mints a
//!    token this relay accepts; without a directory (the library default, tests) a key in memory
//!    for one run, used through [`Admission::mint`].
//!
//! A refused token is answered `Error{Unauthorized}` naming the reason (expired, wrong audience…)
//! but never the token; the reason is counted (`token_rejected_*`).

use std::path::PathBuf;

use voice_proto::tcp::{AccessToken, ErrorCode, MAX_TOKEN_LEN};
use voice_proto::ChannelId;

use crate::config::Config;
use crate::stats::Counter;
use crate::token::{ChannelScope, Claims, SigningKey, TokenError, Verifier, WhisperScope};

/// What a session may do, from its token (or open mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grants {
    /// Stable user id (`sub`); in open mode the display name.
    pub sub: String,
    /// Channels the session may join.
    pub channels: ChannelScope,
    /// Whom it may whisper to.
    pub whisper: WhisperScope,
    /// May kick and ban.
    pub admin: bool,
    /// The token's `exp` (seconds since the Unix epoch): the relay ends the session once it
    /// (plus the leeway) has passed. `None` in open mode.
    pub expires: Option<u64>,
}

impl Grants {
    /// Open mode: any channel, whisper to anyone, no admin.
    pub fn open(name: &str) -> Grants {
        Grants {
            sub: name.to_owned(),
            channels: ChannelScope::Word("all".into()),
            whisper: WhisperScope::Any,
            admin: false,
            expires: None,
        }
    }

    /// True when both sessions were admitted by access tokens of the same user (`sub`); a
    /// session admitted by name (open mode) is nobody's same user.
    pub fn same_token_user(&self, other: &Grants) -> bool {
        self.expires.is_some() && other.expires.is_some() && self.sub == other.sub
    }

    /// True when the session may join `channel`.
    pub fn may_join(&self, channel: ChannelId) -> bool {
        match &self.channels {
            ChannelScope::Word(w) => w == "all",
            ChannelScope::List(ids) => ids.contains(&channel.0),
        }
    }

    fn from_claims(c: Claims) -> Grants {
        Grants {
            sub: c.sub,
            channels: c.channels,
            whisper: c.whisper,
            admin: c.admin,
            expires: Some(c.exp),
        }
    }
}

/// Why admission failed: the code and text of the `Error` reply, and the counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Error code for the reply.
    pub code: ErrorCode,
    /// Reply text (names the reason, never the token).
    pub message: String,
    /// Counter to increment.
    pub counter: Counter,
}

/// Why the admission keys could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    /// A configured key or the relay's own key is unusable.
    #[error("access tokens: {0}")]
    Token(#[from] TokenError),
}

/// The relay's admission policy.
#[derive(Debug)]
pub struct Admission {
    /// Admit a `Hello` without a token (open mode).
    open: bool,
    verifier: Option<Verifier>,
    signing: Option<SigningKey>,
    audience: String,
    key_file: Option<PathBuf>,
}

impl Admission {
    /// The policy `config` asks for (see the module doc). May create `token-key.pem`.
    pub fn load(config: &Config) -> Result<Admission, AdmissionError> {
        let audience = config.token_audience.clone();
        if config.open {
            let verifier = if config.token_keys.is_empty() {
                None
            } else {
                Some(Verifier::new(&config.token_keys, &audience)?)
            };
            return Ok(Admission {
                open: true,
                verifier,
                signing: None,
                audience,
                key_file: None,
            });
        }
        if !config.token_keys.is_empty() {
            return Ok(Admission {
                open: false,
                verifier: Some(Verifier::new(&config.token_keys, &audience)?),
                signing: None,
                audience,
                key_file: None,
            });
        }
        let (signing, key_file) = match &config.identity_dir {
            Some(dir) => {
                let (k, created) = SigningKey::load_or_create(dir)?;
                let path = dir.join(crate::token::SIGNING_KEY_FILE);
                if created {
                    log::info!("generated a token signing key in {}", path.display());
                }
                (k, Some(path))
            }
            None => (SigningKey::generate()?, None),
        };
        Ok(Admission {
            open: false,
            verifier: Some(Verifier::new(&[signing.public().to_owned()], &audience)?),
            signing: Some(signing),
            audience,
            key_file,
        })
    }

    /// True in open mode (a `Hello` without a token is admitted).
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// The audience tokens must name.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Where the relay's own signing key lives (`None`: configured keys, open mode, or a key in
    /// memory).
    pub fn key_file(&self) -> Option<&std::path::Path> {
        self.key_file.as_deref()
    }

    /// A token for `claims` signed with the relay's own key (`None` with configured keys or in
    /// open mode: then the operator's backend mints).
    pub fn mint(&self, claims: &Claims) -> Option<String> {
        self.signing.as_ref()?.mint(claims).ok()
    }

    /// A development token for `name` (every channel, whisper to anyone, one hour), as
    /// [`Admission::mint`].
    pub fn token_for(&self, name: &str) -> Option<String> {
        self.mint(&Claims::for_name(name, &self.audience, 3600))
    }

    /// Checks a `Hello`: the display name to use and the session's grants.
    pub fn admit(
        &self,
        hello_name: &str,
        token: Option<&AccessToken>,
    ) -> Result<(String, Grants), Refusal> {
        let verifier = match (&self.verifier, token) {
            (Some(v), Some(_)) => v,
            (Some(v), None) if !self.open => v,
            _ => return Ok((hello_name.to_owned(), Grants::open(hello_name))),
        };
        let refuse = |counter, message: String| Refusal {
            code: ErrorCode::Unauthorized,
            message,
            counter,
        };
        let Some(token) = token else {
            return Err(refuse(
                Counter::TokenMissing,
                "this relay requires an access token".into(),
            ));
        };
        if token.expose().len() > MAX_TOKEN_LEN {
            return Err(refuse(
                Counter::TokenMalformed,
                format!("access token longer than {MAX_TOKEN_LEN} bytes"),
            ));
        }
        match verifier.verify(token.expose()) {
            Ok(claims) => {
                let name = claims.name.clone();
                Ok((name, Grants::from_claims(claims)))
            }
            Err(e) => {
                let counter = match e {
                    TokenError::Expired | TokenError::NotYetValid => Counter::TokenExpired,
                    TokenError::BadSignature => Counter::TokenBadSignature,
                    TokenError::UnknownKey => Counter::TokenUnknownKey,
                    TokenError::WrongAudience => Counter::TokenWrongAudience,
                    TokenError::AlgorithmNotAllowed(_)
                    | TokenError::Malformed(_)
                    | TokenError::ChannelNotAllowed(_)
                    | TokenError::BadKey(_) => Counter::TokenMalformed,
                };
                Err(refuse(counter, format!("access token refused: {e}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_mode_takes_the_name_and_a_keyless_relay_checks_its_own_tokens() {
        let open = Admission::load(&Config {
            open: true,
            ..Config::default()
        })
        .unwrap();
        assert!(open.is_open());
        assert_eq!(open.admit("bob", None).unwrap().0, "bob");
        assert!(open
            .mint(&Claims::for_name("a", "voice-relay", 60))
            .is_none());

        let own = Admission::load(&Config::default()).unwrap();
        assert!(!own.is_open());
        let missing = own.admit("bob", None).unwrap_err();
        assert_eq!(missing.code, ErrorCode::Unauthorized);
        assert_eq!(missing.counter, Counter::TokenMissing);
        let t = own
            .mint(&Claims::for_name("alice", own.audience(), 60))
            .unwrap();
        // The token's name wins over the name in Hello.
        let (name, grants) = own.admit("mallory", Some(&AccessToken(t.clone()))).unwrap();
        assert_eq!(name, "alice");
        assert_eq!(grants.whisper, WhisperScope::Any);
        // Another relay's key (another in-memory key) refuses it, and the text hides the token.
        let other = Admission::load(&Config::default()).unwrap();
        let r = other
            .admit("alice", Some(&AccessToken(t.clone())))
            .unwrap_err();
        assert_eq!(r.counter, Counter::TokenUnknownKey);
        assert!(!r.message.contains(&t));
    }
}
