//! The one notion of time of the engine and the relay: a monotonic instant in microseconds, always
//! passed in by the caller.
//!
//! Neither `voice_core` nor the relay's state machines read a clock. Drivers (the client's I/O
//! loop, the relay's event loop, a game's frame clock, the simulator, an in-memory test harness)
//! convert their clock into [`Time`] and pass it to every entry point, so engines and a relay can
//! run together on one simulated clock faster than real time, and a C caller can pass a plain
//! `uint64_t`. [`MonotonicClock`] is the conversion from `std::time::Instant` the drivers share.

use std::ops::{Add, Sub};
use std::time::{Duration, Instant};

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

/// `d` in whole microseconds, saturating at `u64::MAX` (about 584 000 years).
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        Time(self.0.saturating_add(micros(d)))
    }
}

impl Sub<Duration> for Time {
    type Output = Time;
    /// Saturating: never before the origin.
    fn sub(self, d: Duration) -> Time {
        Time(self.0.saturating_sub(micros(d)))
    }
}

impl Sub<Time> for Time {
    type Output = Duration;
    /// Saturating difference.
    fn sub(self, rhs: Time) -> Duration {
        self.saturating_since(rhs)
    }
}

/// A driver's clock: [`Time`] as microseconds since the clock was made (`std::time::Instant`).
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    origin: Instant,
}

impl MonotonicClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        MonotonicClock {
            origin: Instant::now(),
        }
    }

    /// A clock whose origin is `origin`.
    pub fn with_origin(origin: Instant) -> Self {
        MonotonicClock { origin }
    }

    /// The time now.
    pub fn now(&self) -> Time {
        self.at(Instant::now())
    }

    /// `instant` on this clock (the origin for instants before it).
    pub fn at(&self, instant: Instant) -> Time {
        Time::from_micros(instant.saturating_duration_since(self.origin).as_micros() as u64)
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
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
        assert_eq!(a + Duration::MAX, Time::from_micros(u64::MAX));
        assert_eq!(a - Duration::from_millis(2), Time::from_millis(3));
        assert_eq!(a - Duration::from_millis(6), Time::ZERO);
    }

    #[test]
    fn clock_counts_from_its_origin() {
        let origin = Instant::now();
        let clock = MonotonicClock::with_origin(origin);
        assert_eq!(clock.at(origin), Time::ZERO);
        assert_eq!(
            clock.at(origin + Duration::from_millis(1500)),
            Time::from_millis(1500)
        );
        assert!(clock.now() >= Time::ZERO);
    }
}
