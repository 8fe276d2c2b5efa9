//! Batched UDP I/O: `recvmmsg` into a fixed ring of receive slots and `sendmmsg` of fan-out
//! batches that point back into those slots, so a forwarded datagram is never copied in user space
//! and nothing is allocated per packet.
//!
//! Nearly all unsafe code of the relay is in this module (the rest is one `setsockopt` in
//! `server`): building `mmsghdr` arrays over owned, never-reallocated buffers, and converting
//! `sockaddr_storage` to and from [`SocketAddr`]. Its safe API cannot make the kernel read outside
//! a received datagram: [`SendBatch::flush`] checks every queued slot and length against the
//! [`RecvBatch`] it sends from.
//!
//! Measured with `cargo bench -p voice_benches --bench relay_load` on the 2-core development VM
//! (load generator on the same CPUs): with `batch_io = false` (one `recv_from`/`send_to` per
//! datagram) the relay sustained 80 k delivered datagrams/s and used 7–8 µs CPU per delivered
//! datagram; with these batches it sustained 160 k/s at 5–6 µs. Most of the per-datagram cost on
//! loopback is the kernel's delivery to the receiver, so batching saves the syscall entry/exit
//! (about 1.5–2 µs per datagram here), which is why it stays on by default.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Bytes per receive slot: one more than the protocol maximum, so an oversized datagram is
/// visible as such (it arrives truncated to `MAX_DATAGRAM + 1` bytes and fails to parse).
pub const SLOT: usize = voice_proto::udp::MAX_DATAGRAM + 1;

/// Writes `addr` into `out`; returns the length to pass to the kernel.
pub fn to_storage(addr: &SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in and sockaddr_in6,
    // which are plain C structs for which all-zero bytes are valid.
    unsafe {
        match addr {
            SocketAddr::V4(a) => {
                let sin = &mut *(out as *mut libc::sockaddr_storage as *mut libc::sockaddr_in);
                *sin = mem::zeroed();
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
                mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
            }
            SocketAddr::V6(a) => {
                let sin6 = &mut *(out as *mut libc::sockaddr_storage as *mut libc::sockaddr_in6);
                *sin6 = mem::zeroed();
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_addr.s6_addr = a.ip().octets();
                sin6.sin6_flowinfo = a.flowinfo();
                sin6.sin6_scope_id = a.scope_id();
                mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
            }
        }
    }
}

/// Reads an address the kernel wrote into `s` (`None` for families other than IPv4/IPv6).
pub fn from_storage(s: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match i32::from(s.ss_family) {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, and it is large enough.
            let sin = unsafe { &*(s as *const libc::sockaddr_storage as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above for sockaddr_in6.
            let sin6 =
                unsafe { &*(s as *const libc::sockaddr_storage as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Binds a UDP socket on `addr` with `SO_REUSEPORT` set before the bind, non-blocking: several
/// such sockets on one address form a group among which the kernel spreads datagrams by a hash of
/// the 4-tuple, so one sender's datagrams always reach the same socket (while the group is
/// unchanged). Only sockets of the same effective user may join the group.
pub fn bind_reuseport(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    use std::os::fd::FromRawFd;
    let domain = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe {
        libc::socket(
            domain,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket we own; from here the UdpSocket closes it on every path.
    let sock = unsafe { std::net::UdpSocket::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    // SAFETY: setsockopt with a valid fd and a pointer to a c_int of the declared size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEPORT,
            (&one as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zeroed sockaddr_storage is valid; `to_storage` fills it and returns its length.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = to_storage(&addr, &mut storage);
    // SAFETY: `storage` holds a sockaddr of `len` bytes.
    let r = unsafe { libc::bind(fd, (&storage as *const libc::sockaddr_storage).cast(), len) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sock)
}

/// A ring of receive slots filled by one `recvmmsg` call.
pub struct RecvBatch {
    bufs: Box<[u8]>,
    iovecs: Box<[libc::iovec]>,
    addrs: Box<[libc::sockaddr_storage]>,
    hdrs: Box<[libc::mmsghdr]>,
    filled: usize,
}

// SAFETY: the raw pointers inside `iovecs`/`hdrs` point only into the boxed buffers owned by the
// same struct (heap allocations that move with it and are never reallocated); they are rebuilt
// before every system call.
unsafe impl Send for RecvBatch {}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("slots", &self.hdrs.len())
            .field("filled", &self.filled)
            .finish()
    }
}

impl RecvBatch {
    /// `slots` receive slots of [`SLOT`] bytes.
    pub fn new(slots: usize) -> Self {
        // SAFETY: iovec, sockaddr_storage and mmsghdr are C structs valid when zeroed.
        let zero_iov: libc::iovec = unsafe { mem::zeroed() };
        let zero_addr: libc::sockaddr_storage = unsafe { mem::zeroed() };
        let zero_hdr: libc::mmsghdr = unsafe { mem::zeroed() };
        RecvBatch {
            bufs: vec![0u8; slots * SLOT].into_boxed_slice(),
            iovecs: vec![zero_iov; slots].into_boxed_slice(),
            addrs: vec![zero_addr; slots].into_boxed_slice(),
            hdrs: vec![zero_hdr; slots].into_boxed_slice(),
            filled: 0,
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Receives up to [`Self::capacity`] datagrams without blocking. `Ok(0)` is never returned:
    /// an empty socket is `Err(WouldBlock)`.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let base = self.bufs.as_mut_ptr();
        for i in 0..self.hdrs.len() {
            self.iovecs[i] = libc::iovec {
                // SAFETY: i * SLOT + SLOT <= bufs.len().
                iov_base: unsafe { base.add(i * SLOT) }.cast(),
                iov_len: SLOT,
            };
            let h = &mut self.hdrs[i];
            h.msg_hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_iov = &mut self.iovecs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        self.filled = 0;
        // SAFETY: every header points at live buffers owned by self, sized as declared.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        self.filled = n as usize;
        Ok(self.filled)
    }

    /// Datagrams from the last [`Self::recv`].
    pub fn len(&self) -> usize {
        self.filled
    }

    /// True when the last receive got nothing.
    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// Datagram `i` of the last receive: its bytes and source address.
    ///
    /// # Panics
    /// When `i` is not below [`Self::capacity`] (like slice indexing).
    pub fn get(&self, i: usize) -> (&[u8], Option<SocketAddr>) {
        let h = &self.hdrs[i];
        let len = (h.msg_len as usize).min(SLOT);
        let data = &self.bufs[i * SLOT..i * SLOT + len];
        (data, from_storage(&self.addrs[i], h.msg_hdr.msg_namelen))
    }

    /// Bytes received in slot `i` by the last [`Self::recv`]; `None` for a slot it did not fill.
    pub fn received_len(&self, i: usize) -> Option<usize> {
        (i < self.filled).then(|| (self.hdrs[i].msg_len as usize).min(SLOT))
    }

    fn slot_ptr(&self, i: usize) -> *const u8 {
        self.bufs[i * SLOT..].as_ptr()
    }
}

/// Outcome of [`SendBatch::flush`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Datagrams the kernel accepted.
    pub sent: usize,
    /// Bytes in those datagrams.
    pub bytes: usize,
    /// Datagrams dropped (send buffer full or an error).
    pub failed: usize,
}

/// A batch of `(slot of a RecvBatch, length, destination)` sent with one `sendmmsg`.
pub struct SendBatch {
    entries: Vec<(u32, u32)>,
    iovecs: Box<[libc::iovec]>,
    addrs: Box<[libc::sockaddr_storage]>,
    addr_lens: Box<[libc::socklen_t]>,
    hdrs: Box<[libc::mmsghdr]>,
}

// SAFETY: as for RecvBatch: pointers are rebuilt before each call and point into owned buffers or
// into the RecvBatch borrowed for the duration of `flush`.
unsafe impl Send for SendBatch {}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch")
            .field("queued", &self.entries.len())
            .finish()
    }
}

impl SendBatch {
    /// Room for `capacity` datagrams.
    pub fn new(capacity: usize) -> Self {
        // SAFETY: C structs valid when zeroed.
        let zero_iov: libc::iovec = unsafe { mem::zeroed() };
        let zero_addr: libc::sockaddr_storage = unsafe { mem::zeroed() };
        let zero_hdr: libc::mmsghdr = unsafe { mem::zeroed() };
        SendBatch {
            entries: Vec::with_capacity(capacity),
            iovecs: vec![zero_iov; capacity].into_boxed_slice(),
            addrs: vec![zero_addr; capacity].into_boxed_slice(),
            addr_lens: vec![0; capacity].into_boxed_slice(),
            hdrs: vec![zero_hdr; capacity].into_boxed_slice(),
        }
    }

    /// True when no more datagrams fit.
    pub fn is_full(&self) -> bool {
        self.entries.len() == self.hdrs.len()
    }

    /// Queued datagrams.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Queues the first `len` bytes of receive slot `slot` for `dst` and returns true. Returns
    /// false and queues nothing when the batch [`is full`](Self::is_full) (flush first) or `len`
    /// exceeds a slot ([`SLOT`]).
    ///
    /// Safe code may pass any slot and length: [`Self::flush`] checks each entry against the
    /// [`RecvBatch`] it reads from (slot received by its last `recv`, length within what that
    /// slot received) and sends nothing for an entry that fails, so no byte outside a received
    /// datagram ever reaches the kernel.
    pub fn push(&mut self, slot: usize, len: usize, dst: &SocketAddr) -> bool {
        let i = self.entries.len();
        if i >= self.hdrs.len() || len > SLOT {
            return false;
        }
        let (Ok(slot), Ok(len)) = (u32::try_from(slot), u32::try_from(len)) else {
            return false;
        };
        self.addr_lens[i] = to_storage(dst, &mut self.addrs[i]);
        self.entries.push((slot, len));
        true
    }

    /// Sends everything queued (datagram data read from `from`) and empties the batch. A full
    /// socket buffer drops the rest of the batch: late voice is worthless, and waiting would
    /// stall every other sender.
    ///
    /// An entry whose slot was not filled by `from`'s last receive, or whose length exceeds the
    /// bytes received in that slot, is not sent and counts as failed.
    pub fn flush(&mut self, fd: RawFd, from: &RecvBatch) -> Flushed {
        let mut out = Flushed::default();
        // Keep only entries that lie within a received datagram, moving their addresses along.
        let mut n = 0;
        for i in 0..self.entries.len() {
            let (slot, len) = self.entries[i];
            if from
                .received_len(slot as usize)
                .is_some_and(|got| len as usize <= got)
            {
                self.entries[n] = (slot, len);
                self.addrs[n] = self.addrs[i];
                self.addr_lens[n] = self.addr_lens[i];
                n += 1;
            } else {
                out.failed += 1;
            }
        }
        self.entries.truncate(n);
        for (i, &(slot, len)) in self.entries.iter().enumerate() {
            self.iovecs[i] = libc::iovec {
                // Checked above: `slot` < from.len() and `len` <= the bytes received in it
                // (<= SLOT), so the iovec lies inside the slot.
                iov_base: from.slot_ptr(slot as usize) as *mut libc::c_void,
                iov_len: len as usize,
            };
            let h = &mut self.hdrs[i];
            h.msg_hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = self.addr_lens[i];
            h.msg_hdr.msg_iov = &mut self.iovecs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        let mut done = 0;
        while done < n {
            // SAFETY: headers done..n point at live buffers: our address array and the slots of
            // `from`, which is borrowed for this call; lengths are within the slots.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdrs[done..].as_mut_ptr(),
                    (n - done) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => {
                        out.failed += n - done;
                        break;
                    }
                    _ => {
                        // This datagram failed (e.g. unreachable destination): skip it.
                        log::debug!("sendmmsg: {e}");
                        out.failed += 1;
                        done += 1;
                    }
                }
            } else {
                let r = r as usize;
                out.sent += r;
                out.bytes += self.entries[done..done + r]
                    .iter()
                    .map(|e| e.1 as usize)
                    .sum::<usize>();
                done += r;
            }
        }
        self.entries.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn addresses_round_trip() {
        for a in ["127.0.0.1:7400", "[::1]:9", "[fe80::1%2]:5"] {
            let a: SocketAddr = a.parse().unwrap();
            // SAFETY: zeroed sockaddr_storage is valid.
            let mut s: libc::sockaddr_storage = unsafe { mem::zeroed() };
            let len = to_storage(&a, &mut s);
            assert_eq!(from_storage(&s, len), Some(a));
        }
    }

    /// Receives exactly one datagram of `len` bytes into a fresh 4-slot batch.
    fn receive_one(relay: &std::net::UdpSocket, len: usize) -> RecvBatch {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        a.send_to(&vec![0x5A; len], relay.local_addr().unwrap())
            .unwrap();
        let mut rb = RecvBatch::new(4);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while std::time::Instant::now() < deadline {
            match rb.recv(relay.as_raw_fd()) {
                Ok(n) => {
                    assert_eq!(n, 1);
                    return rb;
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
        panic!("datagram did not arrive");
    }

    #[test]
    fn out_of_bounds_slots_and_lengths_are_never_sent() {
        let relay = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let dst = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        dst.set_read_timeout(Some(std::time::Duration::from_millis(300)))
            .unwrap();
        let to = dst.local_addr().unwrap();
        let rb = receive_one(&relay, 30);
        assert_eq!(rb.received_len(0), Some(30));
        assert_eq!(rb.received_len(1), None);
        let mut sb = SendBatch::new(8);
        // Longer than a slot (the reported case: 4804 bytes from a 1201-byte slot): refused.
        assert!(!sb.push(0, 4 * SLOT, &to));
        assert!(!sb.push(0, SLOT + 1, &to));
        // Within a slot but past what was received, a slot past the ring, a slot not filled by
        // the last receive: queued, then refused by flush.
        assert!(sb.push(0, SLOT, &to));
        assert!(sb.push(0, 31, &to));
        assert!(sb.push(rb.capacity() + 5, 30, &to));
        assert!(sb.push(1, 1, &to));
        // The one valid entry goes out, in full and alone.
        assert!(sb.push(0, 30, &to));
        let f = sb.flush(relay.as_raw_fd(), &rb);
        assert_eq!(
            f,
            Flushed {
                sent: 1,
                bytes: 30,
                failed: 4
            }
        );
        assert!(sb.is_empty());
        let mut buf = [0u8; 8192];
        let (n, _) = dst.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], &[0x5A; 30]);
        assert!(dst.recv_from(&mut buf).is_err(), "a refused entry was sent");
    }

    #[test]
    fn a_full_batch_refuses_instead_of_panicking() {
        let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut sb = SendBatch::new(2);
        assert!(sb.push(0, 1, &to));
        assert!(sb.push(0, 1, &to));
        assert!(sb.is_full());
        assert!(!sb.push(0, 1, &to));
        assert_eq!(sb.len(), 2);
    }

    #[test]
    fn batch_receive_and_forward_is_byte_exact() {
        let relay = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        for i in 0..3u8 {
            a.send_to(&[i; 30], relay.local_addr().unwrap()).unwrap();
        }
        let mut rb = RecvBatch::new(8);
        let mut got = 0;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while got < 3 && std::time::Instant::now() < deadline {
            if let Ok(n) = rb.recv(relay.as_raw_fd()) {
                let mut sb = SendBatch::new(8);
                for i in 0..n {
                    let (d, src) = rb.get(i);
                    assert_eq!(src, Some(a.local_addr().unwrap()));
                    assert!(sb.push(i, d.len(), &b.local_addr().unwrap()));
                }
                got += n;
                assert_eq!(sb.flush(relay.as_raw_fd(), &rb).sent, n);
            }
        }
        for i in 0..3u8 {
            let mut buf = [0u8; 64];
            let (n, _) = b.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[i; 30]);
        }
    }
}
