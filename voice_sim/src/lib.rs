//! `voice_sim`: the receive path on a simulated network, and the offline tools around it.
//!
//! Everything here runs beside the sans-IO core (`voice_core`), never inside it: the core has no
//! files and no randomness of its own, and nothing in it depends on this crate.
//!
//! | module | owns |
//! |---|---|
//! | [`network`] | seeded models of a path: latency, normal and Pareto jitter, delay spikes, Gilbert-Elliott bursty loss, reordering, duplication and clock drift, with named built-in profiles |
//! | [`trace`] | the trace file: which packet was sent when and arrived when (or never) |
//! | [`run`] | the `voice-sim` pipeline: encodes a recording, delivers its packets as a trace says, runs the real jitter buffer and decoder on simulated time, and returns what a listener hears plus the metrics |
//! | [`wav`] | reading WAV files (any rate, resampled to 48 kHz mono) and writing 48 kHz mono ones |
//!
//! Same seed, same trace, same output: every test built on it is reproducible. The binaries
//! `voice-sim` (a recording through a simulated network) and `voice-apm` (a recording through
//! the capture processing) are the command-line faces of this crate. The speech-like test signal
//! they and the tests use is `voice_core::signal`.

pub mod network;
pub mod run;
pub mod trace;
pub mod wav;

use thiserror::Error;

/// A simulator failure.
#[derive(Debug, Error)]
pub enum SimError {
    /// The trace file could not be read.
    #[error("trace {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line of the trace does not parse.
    #[error("trace line {line}: {message}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The trace covers fewer packets than the input needs.
    #[error("trace covers {have} packets but the input needs {need}")]
    TooShort {
        /// Packets covered by the trace.
        have: usize,
        /// Packets the input needs.
        need: usize,
    },
    /// No built-in profile has that name.
    #[error("unknown profile {0:?} (known: {known})", known = network::PROFILE_NAMES.join(", "))]
    UnknownProfile(String),
    /// The tick phase is outside `0 ≤ phase < 20` ms.
    #[error("tick phase {0} ms is outside 0 <= phase < 20")]
    TickPhase(f64),
    /// The codec failed.
    #[error(transparent)]
    Codec(#[from] voice_core::codec::CodecError),
}
