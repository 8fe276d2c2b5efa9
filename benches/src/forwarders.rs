//! Reference forwarders for the benchmark. Both use the voice_core header and a fixed channel
//! layout: session token `t` (from 1) is in channel `(t - 1) / n`. Clients announce their address
//! with a `Register` datagram (no proof checked) and get a `RegisterAck`.
//!
//! The minimal forwarder also runs on several threads ([`run_minimal_threads`]): one
//! `SO_REUSEPORT` socket each, sharing an address table whose slots are written once (at
//! registration) and then only read — the least a multi-threaded forwarder can share.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, OnceLock};

use relay::udpio::{RecvBatch, SendBatch};
use voice_core::proto::udp::{self, DatagramKind, Header};

fn ack(sock: &UdpSocket, h: &Header, src: SocketAddr) {
    let a = Header {
        kind: DatagramKind::RegisterAck,
        ..*h
    };
    let mut buf = [0u8; 64];
    if let Ok(n) = udp::write(&a, &1u64.to_le_bytes(), &udp::TagKey::UNKEYED, &mut buf) {
        let _ = sock.send_to(&buf[..n], src);
    }
}

/// The naive forwarder: blocking `recv_from`, a `Mutex<HashMap>` for addresses and channels,
/// a freshly allocated recipient list and one `send_to` per recipient. Runs on the calling thread
/// forever.
pub fn run_naive(sock: UdpSocket, n: u32) {
    let addrs: Arc<Mutex<HashMap<u32, SocketAddr>>> = Arc::default();
    let channels: Arc<Mutex<HashMap<u32, Vec<u32>>>> = Arc::default();
    let mut buf = [0u8; 2048];
    loop {
        let Ok((len, src)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Ok(d) = udp::parse(&buf[..len]) else {
            continue;
        };
        let t = d.header.sender.0;
        match d.header.kind {
            DatagramKind::Register => {
                addrs.lock().expect("lock").insert(t, src);
                let mut ch = channels.lock().expect("lock");
                let members = ch.entry((t - 1) / n).or_default();
                if !members.contains(&t) {
                    members.push(t);
                }
                ack(&sock, &d.header, src);
            }
            DatagramKind::Voice => {
                let members: Vec<u32> = channels
                    .lock()
                    .expect("lock")
                    .get(&((t - 1) / n))
                    .cloned()
                    .unwrap_or_default();
                for m in members {
                    if m == t {
                        continue;
                    }
                    let dst = addrs.lock().expect("lock").get(&m).copied();
                    if let Some(dst) = dst {
                        let _ = sock.send_to(&buf[..len], dst);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The minimal forwarder's address table: slot `t` holds session `t`'s address once it
/// registered (first registration wins; the benchmark never rebinds).
pub type Table = Arc<[OnceLock<SocketAddr>]>;

/// A table for sessions `1..=sessions`.
pub fn table(sessions: usize) -> Table {
    (0..=sessions).map(|_| OnceLock::new()).collect()
}

/// The minimal forwarder on `threads` threads: `threads` `SO_REUSEPORT` sockets on one loopback
/// port sharing one [`Table`]. Returns the address; the threads run until the process exits.
pub fn run_minimal_threads(
    threads: usize,
    n: u32,
    sessions: usize,
    buffer: usize,
) -> std::io::Result<SocketAddr> {
    let first = relay::udpio::bind_reuseport("127.0.0.1:0".parse().expect("addr"))?;
    let addr = first.local_addr()?;
    let mut socks = vec![first];
    for _ in 1..threads {
        socks.push(relay::udpio::bind_reuseport(addr)?);
    }
    let t = table(sessions);
    for (i, sock) in socks.into_iter().enumerate() {
        crate::set_buffers(sock.as_raw_fd(), buffer);
        let t = t.clone();
        std::thread::Builder::new()
            .name(format!("minimal-{i}"))
            .spawn(move || run_minimal_on(sock, n, &t))?;
    }
    Ok(addr)
}

/// The minimal forwarder on one socket with its own table (see [`run_minimal_on`]).
pub fn run_minimal(sock: UdpSocket, n: u32) {
    run_minimal_on(sock, n, &table(1 << 16));
}

/// The minimal forwarder: `recvmmsg` 64 at a time, a fixed table indexed by token, and
/// `sendmmsg` of the whole fan-out batch (the same batch primitives as the relay). Blocks in
/// `poll(2)` when idle. Runs on the calling thread forever.
pub fn run_minimal_on(sock: UdpSocket, n: u32, table: &[OnceLock<SocketAddr>]) {
    sock.set_nonblocking(true).expect("nonblocking");
    let fd = sock.as_raw_fd();
    let mut rb = RecvBatch::new(64);
    let mut sb = SendBatch::new(256);
    loop {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 1000) };
        while let Ok(count) = rb.recv(fd) {
            for i in 0..count {
                let (data, src) = rb.get(i);
                let (Ok(d), Some(src)) = (udp::parse(data), src) else {
                    continue;
                };
                let t = d.header.sender.0 as usize;
                match d.header.kind {
                    DatagramKind::Register => {
                        if let Some(slot) = table.get(t) {
                            let _ = slot.set(src);
                            ack(&sock, &d.header, src);
                        }
                    }
                    DatagramKind::Voice => {
                        let first = ((t as u32 - 1) / n * n + 1) as usize;
                        for m in first..first + n as usize {
                            if m == t {
                                continue;
                            }
                            if let Some(dst) = table.get(m).and_then(OnceLock::get) {
                                if sb.is_full() {
                                    sb.flush(fd, &rb);
                                }
                                sb.push(i, data.len(), dst);
                            }
                        }
                    }
                    _ => {}
                }
            }
            sb.flush(fd, &rb);
        }
    }
}
