//! The engine's notion of time: [`voice_proto::time`], shared with the relay (a monotonic instant in
//! microseconds, always passed in by the caller; nothing in `voice_core` reads a clock).

pub use voice_proto::time::{MonotonicClock, Time};
