//! Token buckets that bound what one session may make the relay do.
//!
//! Time is an argument (`now: Time`), so the buckets are tested without sleeping. Each voice
//! datagram costs one packet token and its length in byte tokens; a relay forwarding to N−1
//! members therefore amplifies a sender by at most (N−1) × its budget.

use voice_proto::time::Time;

/// A rate and a burst: the bucket refills at `rate` tokens/s up to `burst` tokens.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct Limit {
    /// Tokens added per second.
    pub rate: f64,
    /// Bucket capacity (and initial fill).
    pub burst: f64,
}

/// A token bucket.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    limit: Limit,
    tokens: f64,
    last: Time,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(limit: Limit, now: Time) -> Self {
        TokenBucket {
            limit,
            tokens: limit.burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Time) {
        let dt = now.saturating_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + dt * self.limit.rate).min(self.limit.burst);
    }

    /// Whether `cost` tokens are available now (nothing is taken).
    pub fn check(&mut self, now: Time, cost: f64) -> bool {
        self.refill(now);
        self.tokens >= cost
    }

    /// Takes `cost` tokens if available and says whether it did.
    pub fn take(&mut self, now: Time, cost: f64) -> bool {
        if self.check(now, cost) {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }

    /// Takes `cost` tokens unconditionally (after a successful [`Self::check`]).
    pub fn consume(&mut self, cost: f64) {
        self.tokens -= cost;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate() {
        let t0 = Time::from_millis(1000);
        let mut b = TokenBucket::new(
            Limit {
                rate: 10.0,
                burst: 5.0,
            },
            t0,
        );
        for _ in 0..5 {
            assert!(b.take(t0, 1.0));
        }
        assert!(!b.take(t0, 1.0));
        // 100 ms later: one token.
        let t1 = t0 + Duration::from_millis(100);
        assert!(b.take(t1, 1.0));
        assert!(!b.take(t1, 1.0));
        // A long pause refills only up to the burst.
        let t2 = t1 + Duration::from_secs(100);
        for _ in 0..5 {
            assert!(b.take(t2, 1.0));
        }
        assert!(!b.take(t2, 1.0));
    }

    #[test]
    fn time_going_backwards_is_harmless() {
        let t0 = Time::from_millis(1000) + Duration::from_secs(1);
        let mut b = TokenBucket::new(
            Limit {
                rate: 1.0,
                burst: 1.0,
            },
            t0,
        );
        assert!(b.take(t0, 1.0));
        assert!(!b.take(t0 - Duration::from_millis(500), 1.0));
    }
}
