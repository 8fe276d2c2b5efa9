//! Non-blocking TLS over a socket: [`TlsStream`], and [`Transport`] (plaintext or TLS).
//!
//! Contract (the same as a non-blocking socket's): `read` returns plaintext, `Ok(0)` at the end of
//! the stream (with or without the peer's `close_notify`: both mean the connection is over), or
//! `WouldBlock` when no complete record is buffered; a protocol failure (bad record, failed
//! handshake, a plaintext client on the TLS port) is an `InvalidData` error carrying the rustls
//! error. `write` accepts plaintext only when every earlier TLS byte has reached the socket;
//! otherwise it answers `WouldBlock`, and the loop calls [`TlsStream::flush_tls`] when the socket
//! becomes writable again. Handshake messages produced while reading are flushed at once (what does
//! not fit stays queued: [`TlsStream::wants_write`]).

use std::io::{self, Read, Write};

use rustls::Connection;

use crate::Fingerprint;

/// A rustls connection over a non-blocking socket `S`.
#[derive(Debug)]
pub struct TlsStream<S> {
    conn: Connection,
    sock: S,
    eof: bool,
}

impl<S: Read + Write> TlsStream<S> {
    /// Wraps `sock`; `conn` is a fresh client or server connection.
    pub fn new(conn: impl Into<Connection>, sock: S) -> Self {
        TlsStream {
            conn: conn.into(),
            sock,
            eof: false,
        }
    }

    /// The socket.
    pub fn sock(&self) -> &S {
        &self.sock
    }

    /// The socket, mutably (to register it with a poll; never read or write it directly).
    pub fn sock_mut(&mut self) -> &mut S {
        &mut self.sock
    }

    /// True until the handshake has completed.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// True while TLS bytes wait for the socket.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// The fingerprint of the peer's end-entity certificate, once the handshake has seen it.
    pub fn peer_fingerprint(&self) -> Option<Fingerprint> {
        self.conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| Fingerprint::of(c))
    }

    /// Queues a `close_notify` alert (flushed by the next [`flush_tls`](Self::flush_tls)).
    pub fn close_notify(&mut self) {
        self.conn.send_close_notify();
    }

    /// Writes queued TLS bytes until none remain or the socket would block (which is not an error).
    pub fn flush_tls(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl<S: Read + Write> Read for TlsStream<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed the socket without `close_notify`: the stream is over all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if self.eof {
                return Ok(0);
            }
            match self.conn.read_tls(&mut self.sock) {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if let Err(err) = self.conn.process_new_packets() {
                // Best effort: the alert rustls queued tells the peer why.
                let _ = self.flush_tls();
                return Err(io::Error::new(io::ErrorKind::InvalidData, err));
            }
            self.flush_tls()?;
        }
    }
}

impl<S: Read + Write> Write for TlsStream<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.flush_tls()?;
        if self.conn.wants_write() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.conn.writer().write(buf)?;
        if n == 0 && !buf.is_empty() {
            // rustls's plaintext buffer is full (still handshaking): try again later.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.flush_tls()?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_tls()
    }
}

/// The control connection as the loops see it: plaintext (development only) or TLS.
#[derive(Debug)]
pub enum Transport<S> {
    /// No encryption: only behind an explicit `insecure_plaintext` switch.
    Plain(S),
    /// TLS 1.3.
    Tls(Box<TlsStream<S>>),
}

impl<S: Read + Write> Transport<S> {
    /// The socket (to register it with a poll, query addresses or set options).
    pub fn sock(&self) -> &S {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(t) => t.sock(),
        }
    }

    /// The socket, mutably.
    pub fn sock_mut(&mut self) -> &mut S {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(t) => t.sock_mut(),
        }
    }

    /// True while TLS bytes wait for the socket (never for plaintext).
    pub fn wants_write(&self) -> bool {
        matches!(self, Transport::Tls(t) if t.wants_write())
    }

    /// True while a TLS handshake is in progress.
    pub fn is_handshaking(&self) -> bool {
        matches!(self, Transport::Tls(t) if t.is_handshaking())
    }

    /// The peer certificate's fingerprint (TLS, after the handshake).
    pub fn peer_fingerprint(&self) -> Option<Fingerprint> {
        match self {
            Transport::Plain(_) => None,
            Transport::Tls(t) => t.peer_fingerprint(),
        }
    }

    /// Queues a `close_notify` (TLS only).
    pub fn close_notify(&mut self) {
        if let Transport::Tls(t) = self {
            t.close_notify();
        }
    }

    /// Flushes queued TLS bytes (no-op for plaintext); `WouldBlock` is not an error.
    pub fn flush_tls(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(_) => Ok(()),
            Transport::Tls(t) => t.flush_tls(),
        }
    }
}

impl<S: Read + Write> Read for Transport<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(t) => t.read(buf),
        }
    }
}

impl<S: Read + Write> Write for Transport<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(t) => t.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
            Transport::Tls(t) => t.flush(),
        }
    }
}
