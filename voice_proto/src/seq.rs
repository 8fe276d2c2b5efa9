//! Sequence arithmetic that survives wrap-around.
//!
//! Wire sequence numbers are 16 bits and wrap every 65 536 packets (22 minutes at 50 packets/s).
//! [`SeqUnwrapper`] extends them to a monotonic 64-bit space using serial-number comparison
//! (RFC 1982): a new number is placed at the nearest position to the highest one seen, so reordering
//! and duplicates within ±32 767 packets are resolved correctly across the wrap. [`ReplayWindow`]
//! remembers which recent extended numbers have arrived, to tell duplicates from late packets.
//!
//! Talk spurts do not need special handling here: senders keep numbering consecutively across the
//! silence between spurts (only the timestamp jumps), so a pause never looks like a gap.

/// Signed distance from `b` to `a` in serial-number arithmetic: positive when `a` is newer.
pub fn seq_diff(a: u16, b: u16) -> i16 {
    a.wrapping_sub(b) as i16
}

/// True when `a` is newer than `b` (serial-number order).
pub fn seq_newer(a: u16, b: u16) -> bool {
    seq_diff(a, b) > 0
}

/// Extends 16-bit wire sequence numbers to a monotonic 64-bit space.
#[derive(Debug, Clone, Default)]
pub struct SeqUnwrapper {
    highest: Option<u64>,
}

/// The first extended number is offset so that reordering before it never underflows.
const ORIGIN: u64 = 1 << 32;

impl SeqUnwrapper {
    /// A fresh unwrapper.
    pub fn new() -> Self {
        Self::default()
    }

    /// The extended value of `seq`, updating the highest seen.
    pub fn unwrap(&mut self, seq: u16) -> u64 {
        let ext = self.peek(seq);
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        ext
    }

    /// The extended value `seq` would get, without updating anything.
    pub fn peek(&self, seq: u16) -> u64 {
        match self.highest {
            None => ORIGIN + u64::from(seq),
            Some(h) => {
                let d = i64::from(seq_diff(seq, h as u16));
                (h as i64 + d) as u64
            }
        }
    }

    /// Highest extended number seen.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    /// Forgets everything (sender restarted).
    pub fn reset(&mut self) {
        self.highest = None;
    }
}

/// A sliding bitmap of which of the last [`ReplayWindow::SPAN`] extended numbers have arrived.
#[derive(Debug, Clone, Default)]
pub struct ReplayWindow {
    top: u64,
    bits: [u64; 4],
    started: bool,
}

/// Result of [`ReplayWindow::check_and_set`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayCheck {
    /// First arrival of this number.
    New,
    /// Seen before.
    Duplicate,
    /// Older than the window: cannot tell.
    TooOld,
}

impl ReplayWindow {
    /// Numbers remembered below the highest.
    pub const SPAN: u64 = 256;

    /// A fresh window.
    pub fn new() -> Self {
        Self::default()
    }

    fn bit(&mut self, ext: u64) -> (usize, u64) {
        let i = (ext % Self::SPAN) as usize;
        (i / 64, 1u64 << (i % 64))
    }

    /// Records `ext` and says whether it had been seen.
    pub fn check_and_set(&mut self, ext: u64) -> ReplayCheck {
        if !self.started {
            self.started = true;
            self.top = ext;
            self.bits = [0; 4];
            let (w, m) = self.bit(ext);
            self.bits[w] |= m;
            return ReplayCheck::New;
        }
        if ext > self.top {
            let advance = ext - self.top;
            if advance >= Self::SPAN {
                self.bits = [0; 4];
            } else {
                for n in self.top + 1..=ext {
                    let (w, m) = self.bit(n);
                    self.bits[w] &= !m;
                }
            }
            self.top = ext;
        } else if self.top - ext >= Self::SPAN {
            return ReplayCheck::TooOld;
        }
        let (w, m) = self.bit(ext);
        if self.bits[w] & m != 0 {
            ReplayCheck::Duplicate
        } else {
            self.bits[w] |= m;
            ReplayCheck::New
        }
    }

    /// Forgets everything.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_comparison_across_the_wrap() {
        assert!(seq_newer(0, 65535));
        assert!(seq_newer(5, 65530));
        assert!(!seq_newer(65530, 5));
        assert_eq!(seq_diff(2, 65534), 4);
        assert_eq!(seq_diff(65534, 2), -4);
    }

    #[test]
    fn unwrapper_is_monotonic_across_wraps_with_reordering() {
        let mut u = SeqUnwrapper::new();
        let mut last = u.unwrap(65530);
        let mut seq: u16 = 65530;
        for _ in 0..200_000u32 {
            seq = seq.wrapping_add(1);
            let e = u.unwrap(seq);
            assert_eq!(e, last + 1);
            last = e;
        }
        // A reordered packet from before the last wrap maps below the highest.
        let back = u.unwrap(seq.wrapping_sub(10));
        assert_eq!(back, last - 10);
        assert_eq!(u.highest(), Some(last));
    }

    #[test]
    fn replay_window_detects_duplicates_and_old_numbers() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.check_and_set(1000), ReplayCheck::New);
        assert_eq!(w.check_and_set(1000), ReplayCheck::Duplicate);
        assert_eq!(w.check_and_set(1002), ReplayCheck::New);
        assert_eq!(w.check_and_set(1001), ReplayCheck::New);
        assert_eq!(w.check_and_set(1001), ReplayCheck::Duplicate);
        assert_eq!(w.check_and_set(1300), ReplayCheck::New);
        assert_eq!(w.check_and_set(1001), ReplayCheck::TooOld);
        assert_eq!(w.check_and_set(1299), ReplayCheck::New);
        // Slots reused after the window slides are clear.
        assert_eq!(w.check_and_set(1300 + 256), ReplayCheck::New);
        assert_eq!(w.check_and_set(1300 + 255), ReplayCheck::New);
    }
}
