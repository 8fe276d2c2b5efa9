//! The relay's TLS identity: the operator's certificate and key (`tls_cert`/`tls_key`), or a
//! self-signed certificate generated with `rcgen` on first start and kept in `identity_dir`
//! (`cert.pem`, and `key.pem` readable by the owner only) so that its fingerprint, which clients
//! pin, survives restarts. Without a directory (the library default, used by tests) the
//! certificate lives in memory for one run.
//!
//! The private key is never logged; only the certificate's SHA-256 fingerprint is printed.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use voice_tls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use voice_tls::{rustls, Fingerprint, TlsError};

use crate::Config;

/// The names a generated certificate carries (clients that pin a fingerprint ignore names).
pub const GENERATED_NAMES: &[&str] = &["localhost", "voice-relay"];

/// Why the identity could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Reading or writing the identity directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Generating a certificate failed.
    #[error("generating a certificate: {0}")]
    Generate(String),
    /// The certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// What the loop needs for TLS.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The rustls configuration (TLS 1.3 only).
    pub config: Arc<ServerConfig>,
    /// SHA-256 of the end-entity certificate.
    pub fingerprint: Fingerprint,
}

/// The identity for `config`: `None` with `insecure_plaintext`.
pub fn load(config: &Config) -> Result<Option<Identity>, IdentityError> {
    if config.insecure_plaintext {
        return Ok(None);
    }
    let (chain, key) = match (&config.tls_cert, &config.tls_key, &config.identity_dir) {
        (Some(cert), Some(key), _) => (voice_tls::load_certs(cert)?, voice_tls::load_key(key)?),
        (_, _, Some(dir)) => persistent(dir)?,
        _ => {
            let (cert, key) = generate()?;
            (
                vec![CertificateDer::from(cert.into_bytes())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.into_bytes())),
            )
        }
    };
    let fingerprint = Fingerprint::of(&chain[0]);
    let config = voice_tls::server_config(chain, key)?;
    Ok(Some(Identity {
        config,
        fingerprint,
    }))
}

/// A new self-signed certificate and its key, both in PEM.
fn generate() -> Result<(Pem, Pem), IdentityError> {
    let names: Vec<String> = GENERATED_NAMES.iter().map(|s| s.to_string()).collect();
    let ck = rcgen::generate_simple_self_signed(names)
        .map_err(|e| IdentityError::Generate(e.to_string()))?;
    Ok((
        Pem {
            pem: ck.cert.pem(),
            der: ck.cert.der().to_vec(),
        },
        Pem {
            pem: ck.key_pair.serialize_pem(),
            der: ck.key_pair.serialize_der(),
        },
    ))
}

struct Pem {
    pem: String,
    der: Vec<u8>,
}

impl Pem {
    fn into_bytes(self) -> Vec<u8> {
        self.der
    }
}

type Loaded = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn persistent(dir: &Path) -> Result<Loaded, IdentityError> {
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if !cert_path.exists() || !key_path.exists() {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| IdentityError::Io { path, source }
        };
        fs::create_dir_all(dir).map_err(io(dir))?;
        let (cert, key) = generate()?;
        // The key first, created readable by the owner only; the certificate last, so a
        // half-written identity (no cert.pem) is regenerated rather than half-used.
        write_new(&key_path, key.pem.as_bytes(), 0o600).map_err(io(&key_path))?;
        write_new(&cert_path, cert.pem.as_bytes(), 0o644).map_err(io(&cert_path))?;
        log::info!("generated a self-signed certificate in {}", dir.display());
    }
    Ok((
        voice_tls::load_certs(&cert_path)?,
        voice_tls::load_key(&key_path)?,
    ))
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_identity_persists_and_keeps_its_fingerprint() {
        let dir = std::env::temp_dir().join(format!("relay-identity-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let cfg = Config {
            identity_dir: Some(dir.clone()),
            ..Config::default()
        };
        let first = load(&cfg).unwrap().unwrap();
        let second = load(&cfg).unwrap().unwrap();
        assert_eq!(first.fingerprint, second.fingerprint);
        let mode = fs::metadata(dir.join("key.pem")).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o077,
            0
        );
        // The operator's files work the same way.
        let own = Config {
            tls_cert: Some(dir.join("cert.pem")),
            tls_key: Some(dir.join("key.pem")),
            ..Config::default()
        };
        assert_eq!(load(&own).unwrap().unwrap().fingerprint, first.fingerprint);
        fs::remove_dir_all(&dir).unwrap();
        // In memory: a new certificate each time.
        let a = load(&Config::default()).unwrap().unwrap();
        let b = load(&Config::default()).unwrap().unwrap();
        assert_ne!(a.fingerprint, b.fingerprint);
        let plain = Config {
            insecure_plaintext: true,
            ..Config::default()
        };
        assert!(load(&plain).unwrap().is_none());
    }

    #[test]
    fn a_missing_key_file_is_a_clear_error() {
        let cfg = Config {
            tls_cert: Some("/nonexistent/cert.pem".into()),
            tls_key: Some("/nonexistent/key.pem".into()),
            ..Config::default()
        };
        let err = load(&cfg).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/cert.pem"), "{err}");
    }
}
