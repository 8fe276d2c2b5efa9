//! `voice_tls`: TLS 1.3 for the control (TCP) connection of the voice engine.
//!
//! The relay and the client both run non-blocking `mio` loops, so neither can use a blocking TLS
//! stream. [`TlsStream`] drives a rustls [`Connection`](rustls::Connection) over any non-blocking `Read + Write`
//! socket in the style of rustls's `tlsserver-mio` example: `read` pulls TLS records with
//! `read_tls`, runs `process_new_packets` and hands out plaintext; `write` first flushes the TLS
//! bytes still waiting for the socket (answering `WouldBlock` while any remain, so at most one
//! write's worth of data is ever buffered inside rustls) and then encrypts. [`Transport`] is the
//! socket as the loops see it: plaintext (the explicit development mode) or TLS.
//!
//! Trust ([`TlsTrust`]): the system roots (Mozilla's, from `webpki-roots`), a CA file, a pinned
//! SHA-256 [`Fingerprint`] of the relay's certificate, or trust on first use. Whatever the policy,
//! the fingerprint of the certificate the relay presented is recorded ([`ClientTls::seen`]) so the
//! client can tell the user what it saw, also when it refused it. The crypto provider is `ring`
//! (builds with a C compiler alone); only TLS 1.3 is offered on either side.
//!
//! | module | owns |
//! |---|---|
//! | [`stream`] | [`TlsStream`] and [`Transport`] (the non-blocking I/O) |
//! | [`trust`] | [`Fingerprint`], [`TlsTrust`], [`ClientTls`], the server configuration |

pub mod stream;
pub mod trust;

pub use rustls;
pub use rustls::pki_types;
pub use stream::{TlsStream, Transport};
pub use trust::{
    load_certs, load_key, server_config, ClientTls, Fingerprint, FingerprintError, TlsTrust,
};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or held nothing usable.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
    /// rustls refused the configuration or the connection.
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
}
