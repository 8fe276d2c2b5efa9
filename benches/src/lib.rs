//! Support code for the benchmarks in `benches/`. Every benchmark prints figures and never
//! asserts on time; `--quick` (or `BENCH_QUICK=1`) shrinks a run to a CI smoke test.
//!
//! For the `relay_load` benchmark (`benches/relay_load.rs`):
//!
//! * [`forwarders`] — two reference forwarders that speak the same datagrams as the relay: a
//!   naive one (blocking `recv_from`, one `send_to` per recipient, `Mutex<HashMap>` state) and a
//!   minimal `recvmmsg`/`sendmmsg` one over a fixed table (the machine's ceiling).
//! * [`loadgen`] — the load generator: S speakers in channels of N members, 50 packets/s each,
//!   send timestamps in the payload, `sendmmsg` out and `recvmmsg` in, loss and latency out.
//!
//! Sessions share a small pool of UDP sockets (session `i` uses socket `i % SOCKETS`) so that
//! speakers due in the same millisecond leave in one `sendmmsg` per socket; the relay allows
//! several sessions to bind the same address, so this is legal traffic for it too.

pub mod forwarders;
pub mod loadgen;
pub mod tokens;

/// CPU time (user + system) of this process in microseconds, from `getrusage(RUSAGE_SELF)`.
pub fn cpu_time_us() -> u64 {
    // SAFETY: getrusage writes a plain C struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to an rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0;
    }
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    us(ru.ru_utime) + us(ru.ru_stime)
}

/// Sets `SO_RCVBUF` and `SO_SNDBUF` (the kernel caps them at `net.core.{r,w}mem_max`).
pub fn set_buffers(fd: i32, bytes: usize) {
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        let v = bytes as libc::c_int;
        // SAFETY: valid fd and pointer to a c_int of the declared size.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

/// Restricts this process (threads created afterwards inherit it) to CPUs `cpus`. Returns
/// false when the kernel refused (nothing changes then).
pub fn pin_to(cpus: std::ops::Range<usize>) -> bool {
    // SAFETY: cpu_set_t is a plain bit mask, valid when zeroed; CPU_SET writes within it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for c in cpus {
        // SAFETY: `set` is a valid cpu_set_t; CPU_SET ignores CPUs beyond its size.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: pid 0 = this thread; a valid mask of the declared size.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 }
}

/// True when the benchmark should run briefly (CI smoke run).
pub fn quick() -> bool {
    std::env::args().any(|a| a == "--quick")
        || std::env::var("BENCH_QUICK").is_ok_and(|v| v != "0" && !v.is_empty())
}

/// Nanoseconds per operation over `ops` operations taking `elapsed`.
pub fn ns_per(elapsed: std::time::Duration, ops: u64) -> f64 {
    elapsed.as_nanos() as f64 / ops.max(1) as f64
}
