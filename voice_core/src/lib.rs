//! `voice_core`: the sans-IO heart of the voice engine.
//!
//! **Contract: no sockets, no threads, no clock.** Every entry point that depends on time takes a
//! [`Time`] argument; every output is returned or written into a caller-owned buffer. The same code
//! therefore runs inside the relay, the client engine, the C API, the `voice-sim` simulator (crate
//! `voice_sim`, beside this one) and the tests, where simulated time runs far faster than real time.
//!
//! | module | owns |
//! |---|---|
//! | [`align`] | locating a known signal in a recording (tests, latency benchmark) |
//! | [`proto`] | the wire: UDP voice header, TCP control frames and events, UDP registration proof |
//! | [`seq`] | wrap-around-safe sequence arithmetic, duplicate detection |
//! | [`jitter`] | the per-sender jitter buffer and its playout policy |
//! | [`capture`] | capture processing: high-pass, echo cancellation, noise suppression, gain control, speech detection |
//! | [`codec`] | Opus encode / decode / FEC / PLC |
//! | [`e2ee`] | end-to-end encryption of the payload: SFrame, password keys, wrapped sender keys |
//! | [`tsm`] | time-scale modification: shortening / lengthening decoded speech by pitch periods |
//! | [`stream`] | a sender (PCM → datagrams) and a receiver (datagrams → PCM) |
//! | [`mixer`] | mixing decoded frames with gain and clipping protection |
//! | [`spatial`] | positional audio: distance models, listener pose, ILD/ITD stereo rendering |
//! | [`vad`] | push-to-talk / voice-activity transmit decisions with talk-spurt boundaries |
//! | [`engine`] | the client state machine: control events, UDP binding, send and receive paths |
//! | [`metrics`] | counters, 10 s loss window, delay histograms, RFC 3550 jitter |
//! | [`signal`] | a synthetic speech-like test signal (tests, simulations, benchmarks) |

pub mod align;
pub mod capture;
pub mod codec;
pub mod e2ee;
pub mod engine;
pub mod jitter;
pub mod metrics;
pub mod mixer;
pub mod path;
pub mod signal;
pub mod spatial;
pub mod stream;
pub mod time;
pub mod tsm;
pub mod vad;

use std::time::Duration;

pub use time::Time;
/// The wire protocol (the `voice_proto` crate, shared with the relay).
pub use voice_proto as proto;
/// Sequence numbers (from `voice_proto`).
pub use voice_proto::seq;

/// The engine's sample rate in Hz.
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples in one frame (20 ms at 48 kHz, mono).
pub const FRAME_SAMPLES: usize = 960;
/// Duration of one frame.
pub const FRAME_DURATION: Duration = Duration::from_millis(20);

/// Any error of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A UDP datagram was malformed.
    #[error(transparent)]
    Udp(#[from] proto::udp::UdpError),
    /// A TCP frame was malformed or too large.
    #[error(transparent)]
    Frame(#[from] proto::tcp::FrameError),
    /// A UDP registration failed to verify.
    #[error(transparent)]
    Register(#[from] proto::register::RegisterError),
    /// The codec failed.
    #[error(transparent)]
    Codec(#[from] codec::CodecError),
    /// Sending failed.
    #[error(transparent)]
    Send(#[from] stream::SendError),
    /// A capture frame had the wrong length.
    #[error(transparent)]
    Capture(#[from] capture::CaptureError),
    /// End-to-end encryption could not be set up or failed.
    #[error(transparent)]
    E2ee(#[from] e2ee::E2eeError),
}
