//! Shared helpers for the benchmarks in `benches/`: argument handling and number formatting.
//!
//! Every benchmark prints figures and never asserts on time. `--quick` (or `BENCH_QUICK=1`)
//! shrinks the run for a CI smoke test.

/// True when the benchmark should run briefly (CI smoke run).
pub fn quick() -> bool {
    std::env::args().any(|a| a == "--quick")
        || std::env::var("BENCH_QUICK").is_ok_and(|v| v != "0" && !v.is_empty())
}

/// Nanoseconds per operation over `ops` operations taking `elapsed`.
pub fn ns_per(elapsed: std::time::Duration, ops: u64) -> f64 {
    elapsed.as_nanos() as f64 / ops.max(1) as f64
}
