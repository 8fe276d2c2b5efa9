//! `relay keygen` and `relay token`: an Ed25519 key pair for minting access tokens, and a token
//! minted with it (for development, tests and scripts; production backends mint with their own
//! JWT library). Exit status 0 on success, 2 for a bad command line, 1 for anything else.

use std::path::PathBuf;
use std::process::ExitCode;

use relay::token::{self, ChannelScope, Claims, SigningKey, WhisperScope};

/// What a subcommand ended with: `Err((status, message))`.
pub type Outcome = Result<(), (u8, String)>;

/// Usage of the subcommands.
pub const USAGE: &str = "\
relay keygen [--out FILE]
    writes a new Ed25519 private key (PKCS#8 PEM, mode 0600; default relay-token-key.pem, never
    overwritten) and prints `public <base64url>` (for the relay's token_keys) and `kid <id>`
relay token --name NAME [--key FILE | --identity-dir DIR] [--sub ID] [--aud RELAY_NAME]
            [--channels all|1,2,…] [--whisper none|channel|any] [--admin] [--ttl SECS]
    prints a token (EdDSA JWT) signed with FILE, or with the relay's own key DIR/token-key.pem
    (created if missing; the relay started with the same --identity-dir accepts it); defaults:
    --identity-dir relay-identity, --sub NAME, --aud voice-relay, --channels all,
    --whisper channel, --ttl 3600";

/// Prints the error (if any) and maps it to the exit status.
pub fn run(outcome: Outcome) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, msg)) => {
            eprintln!("relay: {msg}");
            ExitCode::from(code)
        }
    }
}

fn usage(msg: impl std::fmt::Display) -> (u8, String) {
    (2, format!("{msg}\n\n{USAGE}"))
}

/// `relay keygen`.
pub fn keygen(args: impl Iterator<Item = String>) -> Outcome {
    let mut out = PathBuf::from("relay-token-key.pem");
    let mut it = args;
    while let Some(a) = it.next() {
        match a.as_str() {
            "--out" => {
                out = it
                    .next()
                    .ok_or_else(|| usage("--out needs a value"))?
                    .into()
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(usage(format!("unknown argument {other}"))),
        }
    }
    let (pem, public) = token::keygen().map_err(|e| (1, e.to_string()))?;
    let raw = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &public)
        .map_err(|e| (1, e.to_string()))?;
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&out)
        .map_err(|e| (1, format!("{}: {e}", out.display())))?;
    f.write_all(pem.as_bytes())
        .map_err(|e| (1, format!("{}: {e}", out.display())))?;
    println!("public {public}");
    println!("kid {}", token::key_id(&raw));
    Ok(())
}

/// `relay token`.
pub fn token(args: impl Iterator<Item = String>) -> Outcome {
    let mut key: Option<PathBuf> = None;
    let mut dir: Option<PathBuf> = None;
    let mut sub = None;
    let mut name = None;
    let mut aud = "voice-relay".to_owned();
    let mut channels = ChannelScope::Word("all".into());
    let mut whisper = WhisperScope::Channel;
    let mut admin = false;
    let mut ttl: u64 = 3600;
    let mut it = args;
    while let Some(a) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .ok_or_else(|| usage(format!("{flag} needs a value")))
        };
        match a.as_str() {
            "--key" => key = Some(value("--key")?.into()),
            "--identity-dir" => dir = Some(value("--identity-dir")?.into()),
            "--sub" => sub = Some(value("--sub")?),
            "--name" => name = Some(value("--name")?),
            "--aud" => aud = value("--aud")?,
            "--channels" => {
                let v = value("--channels")?;
                channels = if v == "all" {
                    ChannelScope::Word(v)
                } else {
                    ChannelScope::List(
                        v.split(',')
                            .map(|c| c.trim().parse())
                            .collect::<Result<_, _>>()
                            .map_err(|_| usage(format!("--channels {v}: all or ids like 1,2")))?,
                    )
                };
            }
            "--whisper" => {
                whisper = match value("--whisper")?.as_str() {
                    "none" => WhisperScope::None,
                    "channel" => WhisperScope::Channel,
                    "any" => WhisperScope::Any,
                    w => return Err(usage(format!("--whisper {w}: none, channel or any"))),
                }
            }
            "--admin" => admin = true,
            "--ttl" => {
                let v = value("--ttl")?;
                ttl = v
                    .parse()
                    .map_err(|_| usage(format!("--ttl {v}: seconds")))?;
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(usage(format!("unknown argument {other}"))),
        }
    }
    let signer = match (key, dir) {
        (Some(_), Some(_)) => return Err(usage("--key and --identity-dir exclude each other")),
        (Some(k), None) => SigningKey::load(&k).map_err(|e| (1, e.to_string()))?,
        (None, d) => {
            let d = d.unwrap_or_else(|| PathBuf::from(relay::config::DEFAULT_IDENTITY_DIR));
            let (k, created) = SigningKey::load_or_create(&d).map_err(|e| (1, e.to_string()))?;
            if created {
                eprintln!(
                    "relay: created {}",
                    d.join(token::SIGNING_KEY_FILE).display()
                );
            }
            k
        }
    };
    let name = name.ok_or_else(|| usage("--name is required"))?;
    let now = token::now_secs();
    let claims = Claims {
        sub: sub.unwrap_or_else(|| name.clone()),
        name,
        channels,
        whisper,
        admin,
        exp: now + ttl,
        nbf: now.saturating_sub(token::LEEWAY_SECS),
        aud,
    };
    let jwt = signer.mint(&claims).map_err(|e| (1, e.to_string()))?;
    // The token itself is the output (stdout, for the script that asked); it is never logged.
    println!("{jwt}");
    Ok(())
}
