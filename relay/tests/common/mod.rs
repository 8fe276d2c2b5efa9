//! Test client for the relay integration tests: TCP frames with timeouts, UDP registration, and
//! voice datagrams built with `voice_core`.
//!
//! Every relay [`start`] starts serves TLS 1.3 with a certificate generated in memory, and
//! [`Control::connect`] pins that certificate's fingerprint (it remembers which relay address has
//! which), so every test here runs over TLS. A relay started with `insecure_plaintext` (the
//! development mode) is reached in plaintext; an address nobody registered (e.g. a relay
//! process a test spawned) is reached with trust on first use unless [`remember`] pinned it.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use voice_tls::rustls::{ClientConnection, StreamOwned};
use voice_tls::{ClientTls, Fingerprint, TlsTrust};

use relay::admission::Admission;
use relay::{Config, Relay, RelayHandle};
use voice_core::proto::register::{self, Secret};
use voice_core::proto::tcp::{
    encode_frame, AccessToken, ChannelInfo, ClientMessage, FrameReader, ServerMessage,
    CONTROL_VERSION,
};
use voice_core::proto::udp::{self, DatagramKind, Header, TagKey, MAX_DATAGRAM};
use voice_core::proto::{ChannelId, SessionToken};

/// How long any expected message may take.
pub const WAIT: Duration = Duration::from_secs(3);
/// How long to wait to be confident something does NOT arrive.
pub const QUIET: Duration = Duration::from_millis(150);

/// Starts a relay on 127.0.0.1 with an ephemeral port and `tweak` applied to the defaults.
pub fn start(tweak: impl FnOnce(&mut Config)) -> RelayHandle {
    let _ = env_logger::builder().is_test(true).try_init();
    let mut cfg = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        stats_interval_ms: 0,
        ..Config::default()
    };
    tweak(&mut cfg);
    let relay = Relay::bind(cfg).unwrap().spawn().unwrap();
    remember(relay.local_addr(), relay.fingerprint());
    MINTERS
        .lock()
        .unwrap()
        .push((relay.local_addr(), relay.admission()));
    relay
}

/// Which relay address accepts tokens from which admission policy (relays started by [`start`]).
static MINTERS: Mutex<Vec<(SocketAddr, Arc<Admission>)>> = Mutex::new(Vec::new());

/// The admission policy of the relay at `addr` (`None`: a relay not started by [`start`]).
fn minter(addr: SocketAddr) -> Option<Arc<Admission>> {
    let minters = MINTERS.lock().unwrap();
    minters
        .iter()
        .rev()
        .find(|(a, _)| *a == addr)
        .map(|(_, m)| m.clone())
}

/// A token the relay at `addr` accepts for `name` (`None`: open mode, or a relay not started by
/// [`start`]).
pub fn token_for(addr: SocketAddr, name: &str) -> Option<String> {
    minter(addr)?.token_for(name)
}

/// A token with exactly these claims, signed by the relay at `addr` (`None` as for
/// [`token_for`]).
pub fn token_with(addr: SocketAddr, claims: &relay::token::Claims) -> Option<String> {
    minter(addr)?.mint(claims)
}

/// `Hello` for `name` with the token the relay at `addr` accepts.
pub fn hello(addr: SocketAddr, name: &str) -> ClientMessage {
    ClientMessage::Hello {
        version: CONTROL_VERSION,
        name: name.into(),
        token: token_for(addr, name).map(AccessToken),
    }
}

/// Which relay address serves which certificate (`None`: plaintext).
static KNOWN: Mutex<Vec<(SocketAddr, Option<Fingerprint>)>> = Mutex::new(Vec::new());

/// Records what the relay at `addr` serves, for [`Control::connect`].
pub fn remember(addr: SocketAddr, fingerprint: Option<Fingerprint>) {
    let mut known = KNOWN.lock().unwrap();
    known.retain(|(a, _)| *a != addr);
    known.push((addr, fingerprint));
}

fn known(addr: SocketAddr) -> Option<Option<Fingerprint>> {
    let known = KNOWN.lock().unwrap();
    known.iter().find(|(a, _)| *a == addr).map(|(_, f)| *f)
}

/// The control stream: TLS (pinned) or, for the development mode, plaintext.
pub enum Stream {
    /// Plaintext (`insecure_plaintext` relays).
    Plain(TcpStream),
    /// TLS 1.3.
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    /// The TCP socket underneath.
    pub fn sock(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &t.sock,
        }
    }

    /// Sets the socket's write timeout.
    pub fn set_write_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        self.sock().set_write_timeout(t)
    }

    /// Sets the socket's read timeout.
    pub fn set_read_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        self.sock().set_read_timeout(t)
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(t) => match t.read(buf) {
                // A relay that closes without close_notify has closed all the same.
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(0),
                r => r,
            },
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(t) => t.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(t) => t.flush(),
        }
    }
}

/// A TLS client connection to `addr` trusting `trust`; the handshake completes on first use.
pub fn tls_stream(addr: SocketAddr, trust: &TlsTrust) -> StreamOwned<ClientConnection, TcpStream> {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_nodelay(true).unwrap();
    let tls = ClientTls::new(trust).unwrap();
    let conn = tls.connect(addr.ip().into()).unwrap();
    StreamOwned::new(conn, tcp)
}

/// A TCP control connection without UDP.
pub struct Control {
    pub tcp: Stream,
    reader: FrameReader<ServerMessage>,
}

impl Control {
    /// Connects the way the relay at `addr` expects (see the module doc).
    pub fn connect(addr: SocketAddr) -> Control {
        let tcp = match known(addr) {
            Some(None) => {
                let tcp = TcpStream::connect(addr).unwrap();
                tcp.set_nodelay(true).unwrap();
                Stream::Plain(tcp)
            }
            Some(Some(fp)) => Stream::Tls(Box::new(tls_stream(addr, &TlsTrust::Pinned(fp)))),
            None => Stream::Tls(Box::new(tls_stream(addr, &TlsTrust::TrustOnFirstUse))),
        };
        Control {
            tcp,
            reader: FrameReader::new(),
        }
    }

    pub fn send(&mut self, m: &ClientMessage) {
        let mut buf = Vec::new();
        encode_frame(m, &mut buf).unwrap();
        self.tcp.write_all(&buf).unwrap();
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).unwrap();
    }

    /// The next message within `timeout`, `None` on timeout. Panics on EOF.
    pub fn try_recv(&mut self, timeout: Duration) -> Option<ServerMessage> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.reader.next_message().unwrap() {
                return Some(m);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.tcp.set_read_timeout(Some(left)).unwrap();
            match self.reader.read_from(&mut self.tcp) {
                Ok(0) => panic!("relay closed the connection"),
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None
                }
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    pub fn recv(&mut self) -> ServerMessage {
        self.try_recv(WAIT).expect("no message from relay in time")
    }

    /// True when the relay closes the connection within `timeout` (unread messages are skipped).
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.tcp.set_read_timeout(Some(left)).unwrap();
            match self.tcp.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return false
                }
                Err(_) => return true,
            }
        }
    }

    /// Asserts that nothing arrives for [`QUIET`].
    pub fn expect_silence(&mut self) {
        if let Some(m) = self.try_recv(QUIET) {
            panic!("unexpected message {m:?}");
        }
    }

    /// Reads until a message matching `pred` (others are skipped).
    pub fn recv_until(&mut self, mut pred: impl FnMut(&ServerMessage) -> bool) -> ServerMessage {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = self
                .try_recv(left)
                .expect("expected message did not arrive");
            if pred(&m) {
                return m;
            }
        }
    }

    /// The relay's counters.
    pub fn stats(&mut self) -> HashMap<String, u64> {
        self.send(&ClientMessage::StatsRequest);
        match self.recv_until(|m| matches!(m, ServerMessage::Stats { .. })) {
            ServerMessage::Stats { counters } => counters.into_iter().collect(),
            _ => unreachable!(),
        }
    }
}

/// A full client: handshake done, UDP registered.
pub struct Client {
    pub ctl: Control,
    pub udp: UdpSocket,
    pub session: SessionToken,
    pub secret: Secret,
    /// The key that tags this session's datagrams (derived from `secret`).
    pub key: TagKey,
    pub name: String,
    pub relay: SocketAddr,
    pub channels: Vec<ChannelInfo>,
    seq: u16,
    counter: u64,
}

impl Client {
    /// Hello (with the token [`token_for`] mints) + Welcome, then UDP registration
    /// acknowledged.
    pub fn connect(relay: SocketAddr, name: &str) -> Client {
        Client::connect_with(relay, name, token_for(relay, name))
    }

    /// As [`Client::connect`], presenting `token`.
    pub fn connect_with(relay: SocketAddr, name: &str, token: Option<String>) -> Client {
        let mut ctl = Control::connect(relay);
        ctl.send(&ClientMessage::Hello {
            version: CONTROL_VERSION,
            name: name.into(),
            token: token.map(AccessToken),
        });
        let ServerMessage::Welcome {
            session,
            secret,
            channels,
            ..
        } = ctl.recv()
        else {
            panic!("expected Welcome");
        };
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut c = Client {
            ctl,
            udp,
            session,
            secret,
            key: TagKey::derive(&secret),
            name: name.into(),
            relay,
            channels,
            seq: 0,
            counter: 0,
        };
        c.register();
        c
    }

    /// Sends a registration and waits for its ack.
    pub fn register(&mut self) {
        self.counter += 1;
        let payload = register::sign(&self.secret, self.session, self.counter);
        let h = Header {
            kind: DatagramKind::Register,
            ..Header::voice(self.session, 0, 0)
        };
        let mut buf = [0u8; MAX_DATAGRAM];
        let n = udp::write(&h, &payload, &self.key, &mut buf).unwrap();
        for _ in 0..5 {
            self.udp.send_to(&buf[..n], self.relay).unwrap();
            if let Some(ack) = self.recv_udp(Duration::from_millis(500)) {
                let d = udp::parse(&ack).unwrap();
                assert_eq!(d.header.kind, DatagramKind::RegisterAck);
                assert_eq!(
                    self.key.verify(&ack),
                    Ok(()),
                    "the ack is tagged with our key"
                );
                assert_eq!(d.header.sender, self.session);
                assert_eq!(d.payload, &self.counter.to_le_bytes());
                assert!(ack.len() <= n);
                return;
            }
        }
        panic!("registration not acknowledged");
    }

    pub fn send(&mut self, m: &ClientMessage) {
        self.ctl.send(m);
    }

    pub fn recv(&mut self) -> ServerMessage {
        self.ctl.recv()
    }

    /// Joins `channel` and returns the `Joined` member list.
    pub fn join(&mut self, channel: u32) -> ChannelInfo {
        self.send(&ClientMessage::JoinChannel {
            channel: ChannelId(channel),
        });
        match self.ctl.recv() {
            ServerMessage::Joined { channel } => channel,
            other => panic!("expected Joined, got {other:?}"),
        }
    }

    /// A voice datagram from this client with the next sequence number.
    pub fn voice(&mut self, target: SessionToken, payload: &[u8]) -> Vec<u8> {
        self.seq = self.seq.wrapping_add(1);
        voice_bytes(&self.key, self.session, self.seq, target, payload)
    }

    pub fn send_udp(&self, bytes: &[u8]) {
        self.udp.send_to(bytes, self.relay).unwrap();
    }

    /// Builds and sends a channel voice datagram; returns its bytes.
    pub fn talk(&mut self, payload: &[u8]) -> Vec<u8> {
        let d = self.voice(SessionToken::NONE, payload);
        self.send_udp(&d);
        d
    }

    pub fn recv_udp(&self, timeout: Duration) -> Option<Vec<u8>> {
        self.udp.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = [0u8; 2048];
        match self.udp.recv_from(&mut buf) {
            Ok((n, _)) => Some(buf[..n].to_vec()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
            Err(e) => panic!("udp recv: {e}"),
        }
    }

    /// Expects exactly `bytes` to arrive.
    pub fn expect_udp(&self, bytes: &[u8]) {
        let got = self.recv_udp(WAIT).expect("datagram did not arrive");
        assert_eq!(got, bytes, "forwarded bytes differ");
    }

    /// Expects no datagram for [`QUIET`].
    pub fn expect_no_udp(&self) {
        if let Some(d) = self.recv_udp(QUIET) {
            panic!("unexpected datagram {:?}", udp::parse(&d));
        }
    }

    pub fn stats(&mut self) -> HashMap<String, u64> {
        self.ctl.stats()
    }
}

/// Re-computes the tag of `datagram` with `key` (after a test changed its bytes).
pub fn retag(key: &TagKey, datagram: &mut [u8]) {
    let body = datagram.len() - udp::TAG_LEN;
    let tag = key.tag(&datagram[..body]);
    datagram[body..].copy_from_slice(&tag);
}

/// A voice datagram with explicit fields, tagged with `key`.
pub fn voice_bytes(
    key: &TagKey,
    sender: SessionToken,
    seq: u16,
    target: SessionToken,
    payload: &[u8],
) -> Vec<u8> {
    let h = Header {
        target,
        ..Header::voice(sender, seq, u32::from(seq) * 960)
    };
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let n = udp::write(&h, payload, key, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

/// `n` clients all joined to `channel`, with the presence traffic drained.
pub fn group(relay: SocketAddr, channel: u32, names: &[&str]) -> Vec<Client> {
    let mut cs: Vec<Client> = Vec::new();
    for name in names {
        let mut c = Client::connect(relay, name);
        c.join(channel);
        for other in &mut cs {
            match other.recv() {
                ServerMessage::UserJoined { user, .. } => assert_eq!(user.session, c.session),
                m => panic!("expected UserJoined, got {m:?}"),
            }
        }
        cs.push(c);
    }
    cs
}
