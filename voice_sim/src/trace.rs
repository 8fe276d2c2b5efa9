//! Trace files: the ground truth of one simulated (or recorded) path.
//!
//! CSV with optional `#` comment lines, a header `seq,send_ms,arrival_ms`, then one row per packet
//! in send order with `send_ms = 20 * seq`. An empty `arrival_ms` means the packet was lost.
//! Arrival times may be out of order (reordering) and a `seq` may appear on several rows
//! (duplicates).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::SimError;

/// One row: packet `seq` sent at `send_ms` (sender clock) arrived at `arrival_ms` (receiver clock).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TraceRow {
    /// Packet index from 0.
    pub seq: u32,
    /// Send time in ms on the sender's clock.
    pub send_ms: f64,
    /// Arrival time in ms on the receiver's clock, or `None` if lost.
    pub arrival_ms: Option<f64>,
}

/// A whole trace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trace {
    /// Rows in file order.
    pub rows: Vec<TraceRow>,
    /// Comment lines (without `#`), kept for provenance.
    pub comments: Vec<String>,
}

/// Counts a trace implies for its first `packets` packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroundTruth {
    /// Packets sent.
    pub sent: u64,
    /// Packets with at least one arrival.
    pub received: u64,
    /// Packets with no arrival at all.
    pub lost: u64,
    /// Arrivals beyond the first of the same packet.
    pub duplicates: u64,
}

impl Trace {
    /// Number of packets covered (highest seq + 1).
    pub fn packets(&self) -> usize {
        self.rows
            .iter()
            .map(|r| r.seq as usize + 1)
            .max()
            .unwrap_or(0)
    }

    /// Parses CSV text.
    pub fn parse(text: &str) -> Result<Trace, SimError> {
        let mut trace = Trace::default();
        let mut header_seen = false;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            let err = |message: String| SimError::Parse {
                line: i + 1,
                message,
            };
            if line.is_empty() {
                continue;
            }
            if let Some(c) = line.strip_prefix('#') {
                trace.comments.push(c.trim().to_string());
                continue;
            }
            if !header_seen {
                let cols: Vec<&str> = line.split(',').map(str::trim).collect();
                if cols != ["seq", "send_ms", "arrival_ms"] {
                    return Err(err(format!(
                        "expected header `seq,send_ms,arrival_ms`, found `{line}`"
                    )));
                }
                header_seen = true;
                continue;
            }
            let cols: Vec<&str> = line.split(',').map(str::trim).collect();
            if cols.len() != 3 {
                return Err(err(format!("expected 3 columns, found {}", cols.len())));
            }
            let seq: u32 = cols[0]
                .parse()
                .map_err(|_| err(format!("seq `{}` is not a non-negative integer", cols[0])))?;
            let send_ms: f64 = cols[1]
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .ok_or_else(|| err(format!("send_ms `{}` is not a number", cols[1])))?;
            let arrival_ms = if cols[2].is_empty() {
                None
            } else {
                Some(
                    cols[2]
                        .parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite() && *v >= 0.0)
                        .ok_or_else(|| {
                            err(format!("arrival_ms `{}` is not a time in ms", cols[2]))
                        })?,
                )
            };
            trace.rows.push(TraceRow {
                seq,
                send_ms,
                arrival_ms,
            });
        }
        if !header_seen {
            return Err(SimError::Parse {
                line: text.lines().count().max(1),
                message: "no header `seq,send_ms,arrival_ms`".into(),
            });
        }
        Ok(trace)
    }

    /// Reads and parses a CSV file.
    pub fn read(path: &Path) -> Result<Trace, SimError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Trace::parse(&text)
    }

    /// Renders as CSV.
    pub fn to_csv(&self) -> String {
        let mut s = String::new();
        for c in &self.comments {
            let _ = writeln!(s, "# {c}");
        }
        s.push_str("seq,send_ms,arrival_ms\n");
        for r in &self.rows {
            match r.arrival_ms {
                Some(a) => {
                    let _ = writeln!(s, "{},{},{:.3}", r.seq, r.send_ms, a);
                }
                None => {
                    let _ = writeln!(s, "{},{},", r.seq, r.send_ms);
                }
            }
        }
        s
    }

    /// Writes as a CSV file.
    pub fn write(&self, path: &Path) -> Result<(), SimError> {
        std::fs::write(path, self.to_csv()).map_err(|source| SimError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// What the trace says happened to the first `packets` packets.
    pub fn ground_truth(&self, packets: usize) -> GroundTruth {
        let mut arrivals: BTreeMap<u32, u64> = BTreeMap::new();
        for r in self.rows.iter().filter(|r| (r.seq as usize) < packets) {
            if r.arrival_ms.is_some() {
                *arrivals.entry(r.seq).or_default() += 1;
            }
        }
        let received = arrivals.len() as u64;
        GroundTruth {
            sent: packets as u64,
            received,
            lost: packets as u64 - received,
            duplicates: arrivals.values().map(|n| n - 1).sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comments_losses_duplicates_and_reordering() {
        let t = Trace::parse(
            "# made by hand\nseq,send_ms,arrival_ms\n0,0,30\n1,20,\n2,40,95.5\n3,60,80\n3,60,81\n",
        )
        .unwrap();
        assert_eq!(t.comments, vec!["made by hand"]);
        assert_eq!(t.packets(), 4);
        assert_eq!(t.rows[1].arrival_ms, None);
        assert_eq!(
            t.ground_truth(4),
            GroundTruth {
                sent: 4,
                received: 3,
                lost: 1,
                duplicates: 1
            }
        );
        assert_eq!(Trace::parse(&t.to_csv()).unwrap().rows, t.rows);
    }

    #[test]
    fn bad_lines_name_their_line_number() {
        let e = Trace::parse("seq,send_ms,arrival_ms\n0,0,1\nx,20,30\n").unwrap_err();
        assert!(e.to_string().contains("line 3"), "{e}");
        assert!(Trace::parse("a,b,c\n").is_err());
        assert!(Trace::parse("").is_err());
        assert!(Trace::parse("seq,send_ms,arrival_ms\n0,0,-5\n").is_err());
        assert!(Trace::parse("seq,send_ms,arrival_ms\n0,0\n").is_err());
    }
}
