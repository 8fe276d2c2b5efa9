//! The load generator: a fleet of sessions on a pool of UDP sockets, driven at 50 packets/s each
//! with `sendmmsg`, received with `recvmmsg`, measuring delivery, loss and latency.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use voice_tls::rustls::{ClientConnection, StreamOwned};
use voice_tls::{ClientTls, TlsTrust};

use relay::udpio::{to_storage, RecvBatch};
use voice_core::proto::register::{self, Secret};
use voice_core::proto::tcp::{
    encode_frame, ClientMessage, FrameReader, ServerMessage, CONTROL_VERSION,
};
use voice_core::proto::udp::{self, DatagramKind, Header, TagKey, HEADER_LEN};
use voice_core::proto::{ChannelId, SessionToken};

/// UDP sockets shared by the sessions.
pub const SOCKETS: usize = 16;
/// Voice payload bytes (a 32 kbit/s Opus frame); the first 12 carry timestamp and step id.
pub const PAYLOAD: usize = 80;
const DGRAM: usize = HEADER_LEN + PAYLOAD + udp::TAG_LEN;
/// Packets per second per speaker.
pub const PPS: u64 = 50;
const HIST_US: usize = 200_000;

/// One measured step.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepResult {
    /// Datagrams sent by speakers.
    pub sent: u64,
    /// Deliveries expected (sent × (N − 1)).
    pub expected: u64,
    /// Deliveries received.
    pub received: u64,
    /// Step duration in seconds.
    pub secs: f64,
    /// Median one-way latency through the forwarder, µs.
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
}

impl StepResult {
    /// Deliveries per second.
    pub fn delivered_pps(&self) -> f64 {
        self.received as f64 / self.secs
    }
    /// Offered deliveries per second.
    pub fn offered_pps(&self) -> f64 {
        self.expected as f64 / self.secs
    }
    /// Loss in percent.
    pub fn loss_pct(&self) -> f64 {
        if self.expected == 0 {
            return 0.0;
        }
        100.0 * (1.0 - self.received as f64 / self.expected as f64).max(0.0)
    }
}

/// Sessions ready to talk through one forwarder.
#[derive(Debug)]
pub struct Fleet {
    socks: Vec<UdpSocket>,
    tokens: Vec<SessionToken>,
    /// Each session's datagram tag key (unkeyed for the reference forwarders, which check none).
    keys: Vec<TagKey>,
    _tcp: Vec<Control>,
    fwd: SocketAddr,
    n: usize,
    seq: Vec<u16>,
    epoch: Instant,
}

fn pool() -> io::Result<Vec<UdpSocket>> {
    (0..SOCKETS)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0")?;
            crate::set_buffers(s.as_raw_fd(), 4 << 20);
            s.set_read_timeout(Some(Duration::from_millis(200)))?;
            Ok(s)
        })
        .collect()
}

/// A control connection: TLS 1.3 (trust on first use) to the relay.
type Control = StreamOwned<ClientConnection, TcpStream>;

fn control_send(tcp: &mut Control, msg: &ClientMessage) -> io::Result<()> {
    let mut buf = Vec::new();
    encode_frame(msg, &mut buf).map_err(io::Error::other)?;
    tcp.write_all(&buf)
}

fn control_recv(
    tcp: &mut Control,
    reader: &mut FrameReader<ServerMessage>,
) -> io::Result<ServerMessage> {
    loop {
        if let Some(m) = reader.next_message().map_err(io::Error::other)? {
            return Ok(m);
        }
        if reader.read_from(tcp)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

impl Fleet {
    fn new(fwd: SocketAddr, n: usize, socks: Vec<UdpSocket>) -> Fleet {
        Fleet {
            socks,
            tokens: Vec::new(),
            keys: Vec::new(),
            _tcp: Vec::new(),
            fwd,
            n,
            seq: Vec::new(),
            epoch: Instant::now(),
        }
    }

    /// `sessions` sessions (a multiple of `n`) announced to a reference forwarder.
    pub fn reference(fwd: SocketAddr, sessions: usize, n: usize) -> io::Result<Fleet> {
        let mut f = Fleet::new(fwd, n, pool()?);
        f.tokens = (1..=sessions as u32).map(SessionToken).collect();
        f.keys = vec![TagKey::UNKEYED; sessions];
        f.seq = vec![0; sessions];
        let proofs = vec![[0u8; register::REGISTER_PAYLOAD_LEN]; sessions];
        f.register_all(&proofs)?;
        Ok(f)
    }

    /// `sessions` sessions with real handshakes, channel joins and registrations on the relay.
    pub fn relay(fwd: SocketAddr, sessions: usize, n: usize) -> io::Result<Fleet> {
        let mut f = Fleet::new(fwd, n, pool()?);
        let mut secrets: Vec<Secret> = Vec::with_capacity(sessions);
        let tls = ClientTls::new(&TlsTrust::TrustOnFirstUse).map_err(io::Error::other)?;
        for i in 0..sessions {
            let tcp = TcpStream::connect(fwd)?;
            tcp.set_nodelay(true)?;
            let conn = tls.connect(fwd.ip().into()).map_err(io::Error::other)?;
            let mut tcp = StreamOwned::new(conn, tcp);
            let mut reader = FrameReader::new();
            control_send(
                &mut tcp,
                &ClientMessage::Hello {
                    version: CONTROL_VERSION,
                    name: format!("u{i}"),
                    token: Some(crate::tokens::token(&format!("u{i}"))),
                },
            )?;
            let ServerMessage::Welcome {
                session, secret, ..
            } = control_recv(&mut tcp, &mut reader)?
            else {
                return Err(io::Error::other("expected Welcome"));
            };
            let channel = ChannelId((i / n) as u32 + 1);
            control_send(&mut tcp, &ClientMessage::JoinChannel { channel })?;
            while !matches!(
                control_recv(&mut tcp, &mut reader)?,
                ServerMessage::Joined { .. }
            ) {}
            f.tokens.push(session);
            secrets.push(secret);
            f.keys.push(TagKey::derive(&secret));
            f._tcp.push(tcp);
        }
        f.seq = vec![0; sessions];
        let proofs: Vec<_> = f
            .tokens
            .iter()
            .zip(&secrets)
            .map(|(t, s)| register::sign(s, *t, 1))
            .collect();
        f.register_all(&proofs)?;
        Ok(f)
    }

    fn register_all(&mut self, proofs: &[[u8; register::REGISTER_PAYLOAD_LEN]]) -> io::Result<()> {
        let mut acked = vec![false; self.tokens.len()];
        let index: std::collections::HashMap<u32, usize> = self
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.0, i))
            .collect();
        for _round in 0..5 {
            for (i, t) in self.tokens.iter().enumerate() {
                if acked[i] {
                    continue;
                }
                let h = Header {
                    kind: DatagramKind::Register,
                    ..Header::voice(*t, 0, 0)
                };
                let mut buf = [0u8; 64];
                let len = udp::write(&h, &proofs[i], &self.keys[i], &mut buf)
                    .map_err(io::Error::other)?;
                self.socks[i % SOCKETS].send_to(&buf[..len], self.fwd)?;
                if i % 64 == 63 {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            for s in &self.socks {
                let mut buf = [0u8; 256];
                while let Ok((len, _)) = s.recv_from(&mut buf) {
                    if let Ok(d) = udp::parse(&buf[..len]) {
                        if d.header.kind == DatagramKind::RegisterAck {
                            if let Some(&i) = index.get(&d.header.sender.0) {
                                acked[i] = true;
                            }
                        }
                    }
                }
            }
            if acked.iter().all(|&a| a) {
                return Ok(());
            }
        }
        Err(io::Error::other(format!(
            "{} of {} registrations unacknowledged",
            acked.iter().filter(|a| !**a).count(),
            acked.len()
        )))
    }

    /// Runs the first `active` sessions (whole channels) for `duration` and measures.
    pub fn run_step(
        &mut self,
        active: usize,
        duration: Duration,
        step: u32,
    ) -> io::Result<StepResult> {
        let active = active.min(self.tokens.len()) / self.n * self.n;
        let stop = AtomicBool::new(false);
        let mut receivers = Vec::new();
        for s in &self.socks {
            s.set_nonblocking(true)?;
            receivers.push(mio::net::UdpSocket::from_std(s.try_clone()?));
        }
        let epoch = self.epoch;
        let (sent, (received, hist)) = std::thread::scope(|sc| -> io::Result<_> {
            let rx = std::thread::Builder::new()
                .name("loadgen-recv".into())
                .spawn_scoped(sc, || receive(receivers, &stop, step, epoch))?;
            let sent = self.send(active, duration, step);
            std::thread::sleep(Duration::from_millis(300));
            stop.store(true, Ordering::SeqCst);
            let r = rx
                .join()
                .map_err(|_| io::Error::other("receiver panicked"))??;
            Ok((sent, r))
        })?;
        let pct = |p: f64| -> u64 {
            let total: u64 = hist.iter().map(|&c| u64::from(c)).sum();
            let want = (total as f64 * p).ceil() as u64;
            let mut acc = 0u64;
            for (us, &c) in hist.iter().enumerate() {
                acc += u64::from(c);
                if acc >= want && want > 0 {
                    return us as u64;
                }
            }
            HIST_US as u64
        };
        Ok(StepResult {
            sent,
            expected: sent * (self.n as u64 - 1),
            received,
            secs: duration.as_secs_f64(),
            p50_us: pct(0.50),
            p99_us: pct(0.99),
        })
    }

    /// Paces `active` speakers at 50 packets/s each, one `sendmmsg` per socket per millisecond.
    fn send(&mut self, active: usize, duration: Duration, step: u32) -> u64 {
        // SAFETY: zeroed C structs are valid.
        let mut dst: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let dst_len = to_storage(&self.fwd, &mut dst);
        let per_tick = active.div_ceil(20) + SOCKETS;
        let mut bufs: Vec<Vec<[u8; DGRAM]>> = vec![vec![[0u8; DGRAM]; per_tick]; SOCKETS];
        let mut counts = [0usize; SOCKETS];
        let ticks = duration.as_millis() as u64;
        let t0 = Instant::now();
        let mut sent = 0u64;
        for tick in 0..ticks {
            let target = t0 + Duration::from_millis(tick);
            let now = Instant::now();
            if target > now {
                std::thread::sleep(target - now);
            }
            counts.fill(0);
            let phase = (tick % 20) as usize;
            let mut i = phase;
            while i < active {
                let sock = i % SOCKETS;
                self.seq[i] = self.seq[i].wrapping_add(1);
                let h = Header::voice(self.tokens[i], self.seq[i], u32::from(self.seq[i]) * 960);
                let mut payload = [0x55u8; PAYLOAD];
                let ts = self.epoch.elapsed().as_nanos() as u64;
                payload[..8].copy_from_slice(&ts.to_le_bytes());
                payload[8..12].copy_from_slice(&step.to_le_bytes());
                let slot = &mut bufs[sock][counts[sock]];
                if udp::write(&h, &payload, &self.keys[i], slot).is_ok() {
                    counts[sock] += 1;
                }
                i += 20;
            }
            for (sock, bufs) in bufs.iter_mut().enumerate() {
                sent += send_mmsg(
                    self.socks[sock].as_raw_fd(),
                    &mut dst,
                    dst_len,
                    &mut bufs[..counts[sock]],
                ) as u64;
            }
        }
        sent
    }
}

/// Sends every buffer to `dst` with `sendmmsg`; returns how many the kernel took.
fn send_mmsg(
    fd: i32,
    dst: &mut libc::sockaddr_storage,
    dst_len: libc::socklen_t,
    bufs: &mut [[u8; DGRAM]],
) -> usize {
    if bufs.is_empty() {
        return 0;
    }
    let mut iov: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: DGRAM,
        })
        .collect();
    let mut hdrs: Vec<libc::mmsghdr> = iov
        .iter_mut()
        .map(|v| {
            // SAFETY: zeroed mmsghdr is valid.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = (dst as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = dst_len;
            h.msg_hdr.msg_iov = v;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    let mut done = 0;
    while done < hdrs.len() {
        // SAFETY: headers point at live buffers for the duration of the call.
        let r =
            unsafe { libc::sendmmsg(fd, hdrs[done..].as_mut_ptr(), (hdrs.len() - done) as u32, 0) };
        if r <= 0 {
            break;
        }
        done += r as usize;
    }
    done
}

fn receive(
    mut socks: Vec<mio::net::UdpSocket>,
    stop: &AtomicBool,
    step: u32,
    epoch: Instant,
) -> io::Result<(u64, Vec<u32>)> {
    let mut poll = mio::Poll::new()?;
    for (i, s) in socks.iter_mut().enumerate() {
        poll.registry()
            .register(s, mio::Token(i), mio::Interest::READABLE)?;
    }
    let mut events = mio::Events::with_capacity(64);
    let mut hist = vec![0u32; HIST_US + 1];
    let mut received = 0u64;
    let mut rb = RecvBatch::new(64);
    // Drain everything once at start (edge-triggered readiness).
    let mut ready: Vec<usize> = (0..socks.len()).collect();
    while !stop.load(Ordering::SeqCst) {
        for &i in &ready {
            while let Ok(n) = rb.recv(socks[i].as_raw_fd()) {
                let now = epoch.elapsed().as_nanos() as u64;
                for k in 0..n {
                    let (data, _) = rb.get(k);
                    let Ok(d) = udp::parse(data) else { continue };
                    if d.header.kind != DatagramKind::Voice || d.payload.len() < 12 {
                        continue;
                    }
                    let ts = u64::from_le_bytes(d.payload[..8].try_into().expect("8 bytes"));
                    let s = u32::from_le_bytes(d.payload[8..12].try_into().expect("4 bytes"));
                    if s != step {
                        continue;
                    }
                    received += 1;
                    let us = (now.saturating_sub(ts) / 1000) as usize;
                    hist[us.min(HIST_US)] += 1;
                }
            }
        }
        ready.clear();
        poll.poll(&mut events, Some(Duration::from_millis(20)))?;
        ready.extend(events.iter().map(|e| e.token().0));
    }
    for s in &mut socks {
        let _ = poll.registry().deregister(s);
    }
    Ok((received, hist))
}

/// Reads `addr <a>` from a child's stdout line.
pub fn parse_addr_line(line: &str) -> Option<SocketAddr> {
    line.strip_prefix("addr ")?.trim().parse().ok()
}
