//! A sliding replay window over SFrame counters (like the IPsec / SRTP anti-replay window).
//!
//! Checked before decryption, updated only after the tag verified, so forged frames cannot move it.

/// Frames older than this many counters behind the newest accepted one are rejected as replays.
pub(crate) const WINDOW: u64 = 128;

/// Accepted counters of one key: the highest one and a bitmap of the [`WINDOW`] before it.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReplayWindow {
    /// Highest accepted counter + 1 (0 = nothing accepted yet).
    top: u64,
    /// Bit i set: counter `top - 1 - i` was accepted.
    seen: u128,
}

impl ReplayWindow {
    /// True if `ctr` may be accepted (new, or inside the window and not seen).
    pub(crate) fn check(&self, ctr: u64) -> bool {
        if ctr >= self.top {
            return true;
        }
        let back = self.top - 1 - ctr;
        back < WINDOW && self.seen & (1u128 << back) == 0
    }

    /// Records `ctr` as accepted (call only after [`Self::check`] and a verified tag).
    pub(crate) fn accept(&mut self, ctr: u64) {
        if ctr >= self.top {
            let shift = ctr + 1 - self.top;
            self.seen = if shift >= WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.top = ctr + 1;
        } else {
            let back = self.top - 1 - ctr;
            self.seen |= 1u128 << back;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_each_counter_once_in_any_order_within_the_window() {
        let mut w = ReplayWindow::default();
        for c in [5u64, 3, 7, 4, 6, 0] {
            assert!(w.check(c), "{c}");
            w.accept(c);
            assert!(!w.check(c), "{c} replayed");
        }
        assert!(w.check(1) && w.check(2) && w.check(8));
    }

    #[test]
    fn rejects_counters_older_than_the_window() {
        let mut w = ReplayWindow::default();
        w.accept(1000);
        assert!(w.check(1000 - WINDOW + 1));
        assert!(!w.check(1000 - WINDOW));
        w.accept(1000 + 2 * WINDOW);
        assert!(!w.check(1001));
        assert!(w.check(1000 + WINDOW + 1));
    }
}
