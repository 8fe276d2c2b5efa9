//! Whom the client trusts ([`TlsTrust`], [`ClientTls`]), certificate [`Fingerprint`]s, PEM
//! loading, and the relay's TLS 1.3 server configuration.
//!
//! A pinned or trust-on-first-use connection still checks the handshake signature against the
//! presented certificate's key (so the peer holds the private key of the pinned certificate); it
//! only skips the chain-to-a-root and name checks, which a self-signed relay cannot pass.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{self, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore,
    ServerConfig, SignatureScheme,
};

use crate::TlsError;

/// The SHA-256 digest of a certificate (its DER bytes), as Mumble and browsers show it.
///
/// Written as `sha256:` and 64 lowercase hex digits; parsing also accepts the bare hex, upper
/// case, and `:` separators (`AB:CD:…`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of(der: &[u8]) -> Fingerprint {
        let d = ring::digest::digest(&ring::digest::SHA256, der);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Fingerprint(out)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A string that is not a SHA-256 fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a SHA-256 fingerprint (want 64 hex digits, optionally `sha256:` and `:` separators)")]
pub struct FingerprintError;

impl FromStr for Fingerprint {
    type Err = FingerprintError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let s = s
            .strip_prefix("sha256:")
            .or_else(|| s.strip_prefix("SHA256:"))
            .unwrap_or(s);
        let digits: Vec<u8> = s.bytes().filter(|&b| b != b':').collect();
        if digits.len() != 64 {
            return Err(FingerprintError);
        }
        let mut out = [0u8; 32];
        for (i, pair) in digits.chunks(2).enumerate() {
            let hex = std::str::from_utf8(pair).map_err(|_| FingerprintError)?;
            out[i] = u8::from_str_radix(hex, 16).map_err(|_| FingerprintError)?;
        }
        Ok(Fingerprint(out))
    }
}

/// Whom a client trusts to be the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsTrust {
    /// A certificate chaining to the public web roots (Mozilla's list, built in) for the server
    /// name. For a relay with a certificate from a public CA.
    System,
    /// A certificate chaining to one of the CA certificates in this PEM file.
    CaFile(PathBuf),
    /// Exactly the certificate with this fingerprint (what the relay printed at start).
    Pinned(Fingerprint),
    /// Whatever certificate the relay presents first; the client reports its fingerprint and
    /// pins it for the rest of its life, so a changed certificate on reconnect is refused.
    TrustOnFirstUse,
}

/// Reads every certificate from a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |message: String| TlsError::Pem {
        path: path.to_owned(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem("no CERTIFICATE in the file".into()));
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) from a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Pem {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(crypto::ring::default_provider())
}

/// The relay's TLS configuration: TLS 1.3 only, no client certificates.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(cfg))
}

#[derive(Debug)]
enum Check {
    Chain(Arc<WebPkiServerVerifier>),
    Pinned(Fingerprint),
    Any,
}

/// Records the fingerprint of every certificate presented, then applies the policy.
#[derive(Debug)]
struct Verifier {
    check: Check,
    seen: Arc<Mutex<Option<Fingerprint>>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fp = Fingerprint::of(end_entity);
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(fp);
        }
        match &self.check {
            Check::Chain(v) => {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            Check::Pinned(want) if *want == fp => Ok(ServerCertVerified::assertion()),
            Check::Pinned(_) => Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            )),
            Check::Any => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client's TLS setup for one trust policy: the rustls configuration plus the slot where the
/// verifier records the fingerprint of the certificate the relay presented.
#[derive(Debug, Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
    seen: Arc<Mutex<Option<Fingerprint>>>,
}

impl ClientTls {
    /// Builds the configuration (TLS 1.3 only) for `trust`; reads the CA file if there is one.
    pub fn new(trust: &TlsTrust) -> Result<ClientTls, TlsError> {
        let provider = provider();
        let check = match trust {
            TlsTrust::System | TlsTrust::CaFile(_) => {
                let mut roots = RootCertStore::empty();
                if let TlsTrust::CaFile(path) = trust {
                    for c in load_certs(path)? {
                        roots.add(c)?;
                    }
                } else {
                    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                }
                let v =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| rustls::Error::General(e.to_string()))?;
                Check::Chain(v)
            }
            TlsTrust::Pinned(fp) => Check::Pinned(*fp),
            TlsTrust::TrustOnFirstUse => Check::Any,
        };
        let seen = Arc::new(Mutex::new(None));
        let verifier = Arc::new(Verifier {
            check,
            seen: seen.clone(),
            provider: provider.clone(),
        });
        let config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(ClientTls {
            config: Arc::new(config),
            seen,
        })
    }

    /// A new client connection to `server_name` (a DNS name or an IP address).
    pub fn connect(&self, server_name: ServerName<'static>) -> Result<ClientConnection, TlsError> {
        if let Ok(mut seen) = self.seen.lock() {
            *seen = None;
        }
        Ok(ClientConnection::new(self.config.clone(), server_name)?)
    }

    /// The rustls configuration (for a blocking `rustls::StreamOwned`, e.g. in tests).
    pub fn config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }

    /// The fingerprint of the certificate the relay presented in the latest handshake, accepted
    /// or not; `None` before one arrived.
    pub fn seen(&self) -> Option<Fingerprint> {
        self.seen.lock().ok().and_then(|s| *s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_print_and_parse() {
        let fp = Fingerprint::of(b"certificate");
        let text = fp.to_string();
        assert!(
            text.starts_with("sha256:") && text.len() == 7 + 64,
            "{text}"
        );
        assert_eq!(text.parse::<Fingerprint>().unwrap(), fp);
        let colons: String = text[7..]
            .to_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(colons.parse::<Fingerprint>().unwrap(), fp);
        assert!("sha256:12".parse::<Fingerprint>().is_err());
        assert!(text.replace('a', "g").parse::<Fingerprint>().is_err() || !text.contains('a'));
    }

    #[test]
    fn a_missing_ca_file_is_a_clear_error() {
        let err = ClientTls::new(&TlsTrust::CaFile("/nonexistent/ca.pem".into())).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
