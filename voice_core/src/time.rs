//! The engine's notion of time: a monotonic instant in microseconds, always passed in by the caller.
//!
//! Nothing in `voice_core` reads a clock. Drivers convert their clock (`std::time::Instant`, a game's
//! frame clock, a simulator) into [`Time`] and pass it to every entry point, so tests run on
//! simulated time faster than real time and a C caller can pass a plain `uint64_t`.

use std::ops::{Add, Sub};
use std::time::Duration;

/// A point on the caller's monotonic clock, in microseconds from an arbitrary origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(u64);

impl Time {
    /// The origin.
    pub const ZERO: Time = Time(0);

    /// From microseconds since the origin.
    pub const fn from_micros(us: u64) -> Self {
        Time(us)
    }

    /// From milliseconds since the origin.
    pub const fn from_millis(ms: u64) -> Self {
        Time(ms * 1000)
    }

    /// From (possibly fractional) milliseconds; negative values clamp to the origin.
    pub fn from_millis_f64(ms: f64) -> Self {
        Time((ms * 1000.0).round().max(0.0) as u64)
    }

    /// Microseconds since the origin.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Milliseconds since the origin, fractional.
    pub fn as_millis_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    /// `self - earlier`, or zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Time) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        Time(self.0.saturating_add(d.as_micros() as u64))
    }
}

impl Sub<Time> for Time {
    type Output = Duration;
    /// Saturating difference.
    fn sub(self, rhs: Time) -> Duration {
        self.saturating_since(rhs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let a = Time::from_millis(5);
        assert_eq!(a + Duration::from_millis(15), Time::from_millis(20));
        assert_eq!(Time::from_millis(20) - a, Duration::from_millis(15));
        assert_eq!(a - Time::from_millis(20), Duration::ZERO);
        assert_eq!(Time::from_millis_f64(1.5).as_micros(), 1500);
        assert_eq!(Time::from_millis_f64(-3.0), Time::ZERO);
    }
}
