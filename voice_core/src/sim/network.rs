//! Seeded models of a network path and the built-in profiles.
//!
//! A [`NetworkProfile`] turns a packet's send time into an arrival time (or a loss), packet by
//! packet, from a seeded ChaCha8 generator: the same seed always gives the same trace.
//!
//! * latency: a fixed base delay;
//! * jitter: none, normal (truncated at the base), or Pareto (heavy-tailed extra delay);
//! * spikes: occasional queue build-ups — extra delay that drains linearly over a duration;
//! * loss: Gilbert-Elliott two-state bursts (mean burst = 1 / p(bad→good));
//! * reordering: a packet held back by an extra delay; duplication: a second copy shortly after;
//! * clock drift: the receiver's clock runs `drift_ppm` off the sender's.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Pareto};

use super::trace::{Trace, TraceRow};
use super::SimError;
use crate::FRAME_DURATION;

/// Per-packet delay variation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum JitterModel {
    /// Constant latency.
    None,
    /// Normal with standard deviation `sigma_ms`, truncated so delay never goes below 1 ms.
    Normal {
        /// Standard deviation in ms.
        sigma_ms: f64,
    },
    /// Extra delay `Pareto(scale, shape) - scale`: mostly small, sometimes very large.
    Pareto {
        /// Scale in ms.
        scale_ms: f64,
        /// Shape (tail index); smaller is heavier.
        shape: f64,
    },
}

/// Gilbert-Elliott bursty loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GilbertElliott {
    /// Probability per packet of moving from the good to the bad state.
    pub p_good_to_bad: f64,
    /// Probability per packet of moving from the bad to the good state.
    pub p_bad_to_good: f64,
    /// Loss probability in the good state.
    pub loss_good: f64,
    /// Loss probability in the bad state.
    pub loss_bad: f64,
}

impl GilbertElliott {
    /// A model with average loss `loss` (0–1) in bursts of mean length `burst` packets
    /// (every packet in the bad state is lost, none in the good state).
    pub fn with_mean(loss: f64, burst: f64) -> Self {
        let p_bg = 1.0 / burst.max(1.0);
        let loss = loss.clamp(0.0, 0.99);
        GilbertElliott {
            p_good_to_bad: loss * p_bg / (1.0 - loss),
            p_bad_to_good: p_bg,
            loss_good: 0.0,
            loss_bad: 1.0,
        }
    }
}

/// Occasional delay spikes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spikes {
    /// Probability per packet that a spike starts (when none is running).
    pub probability: f64,
    /// Extra delay at the spike's start in ms.
    pub extra_ms: f64,
    /// Time the extra delay takes to drain to zero, in ms.
    pub duration_ms: f64,
}

/// A complete path model.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkProfile {
    /// Name (for built-ins, the name `--profile` takes).
    pub name: String,
    /// Base one-way latency in ms.
    pub latency_ms: f64,
    /// Delay variation.
    pub jitter: JitterModel,
    /// Bursty loss, if any.
    pub loss: Option<GilbertElliott>,
    /// Delay spikes, if any.
    pub spikes: Option<Spikes>,
    /// Probability that a packet is held back by `reorder_extra_ms`.
    pub reorder_probability: f64,
    /// Extra delay of a reordered packet.
    pub reorder_extra_ms: f64,
    /// Probability that a packet arrives twice.
    pub duplicate_probability: f64,
    /// Receiver clock rate offset in parts per million (positive: receiver clock runs fast).
    pub drift_ppm: f64,
}

/// Names of the built-in profiles.
pub const PROFILE_NAMES: &[&str] = &[
    "clean",
    "jitter20",
    "pareto",
    "ge5",
    "ge10",
    "drift",
    "drift-slow",
    "reorder",
];

impl NetworkProfile {
    fn base(name: &str, latency_ms: f64) -> Self {
        NetworkProfile {
            name: name.into(),
            latency_ms,
            jitter: JitterModel::None,
            loss: None,
            spikes: None,
            reorder_probability: 0.0,
            reorder_extra_ms: 0.0,
            duplicate_probability: 0.0,
            drift_ppm: 0.0,
        }
    }

    /// A built-in profile by name (see [`PROFILE_NAMES`]).
    pub fn builtin(name: &str) -> Result<Self, SimError> {
        let mut p = Self::base(name, 40.0);
        match name {
            // A good wired path: small, steady delay.
            "clean" => {
                p.latency_ms = 25.0;
                p.jitter = JitterModel::Normal { sigma_ms: 1.0 };
            }
            // A busy Wi-Fi hop: normal jitter with σ = 20 ms.
            "jitter20" => {
                p.latency_ms = 60.0;
                p.jitter = JitterModel::Normal { sigma_ms: 20.0 };
            }
            // Heavy-tailed jitter with occasional 300 ms spikes.
            "pareto" => {
                p.jitter = JitterModel::Pareto {
                    scale_ms: 5.0,
                    shape: 2.5,
                };
                p.spikes = Some(Spikes {
                    probability: 0.002,
                    extra_ms: 300.0,
                    duration_ms: 400.0,
                });
            }
            // Gilbert-Elliott loss, 5 % and 10 % average, mean burst 2 packets.
            "ge5" => {
                p.jitter = JitterModel::Normal { sigma_ms: 2.0 };
                p.loss = Some(GilbertElliott::with_mean(0.05, 2.0));
            }
            "ge10" => {
                p.jitter = JitterModel::Normal { sigma_ms: 2.0 };
                p.loss = Some(GilbertElliott::with_mean(0.10, 2.0));
            }
            // Receiver clock 200 ppm fast / slow relative to the sender.
            "drift" => {
                p.jitter = JitterModel::Normal { sigma_ms: 2.0 };
                p.drift_ppm = 200.0;
            }
            "drift-slow" => {
                p.jitter = JitterModel::Normal { sigma_ms: 2.0 };
                p.drift_ppm = -200.0;
            }
            // Explicit reordering and duplication on a steady path.
            "reorder" => {
                p.jitter = JitterModel::Normal { sigma_ms: 2.0 };
                p.reorder_probability = 0.05;
                p.reorder_extra_ms = 35.0;
                p.duplicate_probability = 0.02;
            }
            other => return Err(SimError::UnknownProfile(other.to_string())),
        }
        Ok(p)
    }

    /// Simulates `packets` packets sent every 20 ms from time 0 and returns the trace.
    pub fn generate(&self, packets: usize, seed: u64) -> Trace {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut bad = false;
        let mut spike_start: Option<f64> = None;
        let frame_ms = FRAME_DURATION.as_secs_f64() * 1000.0;
        let normal = match self.jitter {
            JitterModel::Normal { sigma_ms } => Normal::new(0.0, sigma_ms.max(0.0)).ok(),
            _ => None,
        };
        let pareto = match self.jitter {
            JitterModel::Pareto { scale_ms, shape } => {
                Pareto::new(scale_ms.max(1e-6), shape.max(0.1))
                    .ok()
                    .map(|d| (d, scale_ms))
            }
            _ => None,
        };
        let mut rows = Vec::with_capacity(packets + packets / 16);
        for seq in 0..packets {
            let send_ms = seq as f64 * frame_ms;
            // Loss (state transition first, then the state's loss probability).
            let lost = match self.loss {
                Some(ge) => {
                    let flip: f64 = rng.random();
                    bad = if bad {
                        flip >= ge.p_bad_to_good
                    } else {
                        flip < ge.p_good_to_bad
                    };
                    let p = if bad { ge.loss_bad } else { ge.loss_good };
                    rng.random::<f64>() < p
                }
                None => false,
            };
            let mut delay = self.latency_ms;
            if let Some(n) = &normal {
                delay += n.sample(&mut rng);
            }
            if let Some((d, scale)) = &pareto {
                delay += d.sample(&mut rng) - scale;
            }
            if let Some(s) = self.spikes {
                if let Some(start) = spike_start {
                    if send_ms - start >= s.duration_ms {
                        spike_start = None;
                    }
                }
                if spike_start.is_none() && rng.random::<f64>() < s.probability {
                    spike_start = Some(send_ms);
                }
                if let Some(start) = spike_start {
                    delay += s.extra_ms * (1.0 - (send_ms - start) / s.duration_ms).max(0.0);
                }
            }
            if self.reorder_probability > 0.0 && rng.random::<f64>() < self.reorder_probability {
                delay += self.reorder_extra_ms;
            }
            let delay = delay.max(1.0);
            let arrival = send_ms * (1.0 + self.drift_ppm * 1e-6) + delay;
            let dup = self.duplicate_probability > 0.0
                && rng.random::<f64>() < self.duplicate_probability;
            let seq = seq as u32;
            if lost {
                rows.push(TraceRow {
                    seq,
                    send_ms,
                    arrival_ms: None,
                });
                continue;
            }
            rows.push(TraceRow {
                seq,
                send_ms,
                arrival_ms: Some(arrival),
            });
            if dup {
                rows.push(TraceRow {
                    seq,
                    send_ms,
                    arrival_ms: Some(arrival + rng.random_range(0.5..10.0)),
                });
            }
        }
        Trace {
            rows,
            comments: vec![format!(
                "profile={} seed={seed} packets={packets}",
                self.name
            )],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_trace_other_seed_other_trace() {
        let p = NetworkProfile::builtin("jitter20").unwrap();
        assert_eq!(p.generate(500, 7), p.generate(500, 7));
        assert_ne!(p.generate(500, 7), p.generate(500, 8));
    }

    #[test]
    fn gilbert_elliott_hits_its_average_loss_and_burst_length() {
        let p = NetworkProfile::builtin("ge5").unwrap();
        let t = p.generate(200_000, 1);
        let lost: Vec<bool> = t.rows.iter().map(|r| r.arrival_ms.is_none()).collect();
        let rate = lost.iter().filter(|&&l| l).count() as f64 / lost.len() as f64;
        assert!((rate - 0.05).abs() < 0.005, "loss {rate}");
        let bursts = lost.windows(2).filter(|w| !w[0] && w[1]).count() as f64;
        let mean_burst = lost.iter().filter(|&&l| l).count() as f64 / bursts;
        assert!((mean_burst - 2.0).abs() < 0.15, "burst {mean_burst}");
    }

    #[test]
    fn jitter20_has_sigma_near_20_and_reorders() {
        let p = NetworkProfile::builtin("jitter20").unwrap();
        let t = p.generate(50_000, 3);
        let delays: Vec<f64> = t
            .rows
            .iter()
            .map(|r| r.arrival_ms.unwrap() - r.send_ms)
            .collect();
        let mean = delays.iter().sum::<f64>() / delays.len() as f64;
        let var = delays.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / delays.len() as f64;
        assert!((var.sqrt() - 20.0).abs() < 1.0, "sigma {}", var.sqrt());
        let reordered = t
            .rows
            .windows(2)
            .filter(|w| w[1].arrival_ms < w[0].arrival_ms)
            .count();
        assert!(reordered > 1000);
    }

    #[test]
    fn drift_stretches_the_receiver_clock() {
        let p = NetworkProfile::builtin("drift").unwrap();
        let t = p.generate(30_000, 5); // 10 minutes
        let last = t.rows.last().unwrap();
        let skew = last.arrival_ms.unwrap() - last.send_ms - p.latency_ms;
        // 200 ppm of 600 s = 120 ms.
        assert!((skew - 120.0).abs() < 10.0, "skew {skew}");
    }

    #[test]
    fn unknown_profile_is_a_clear_error() {
        let e = NetworkProfile::builtin("nope").unwrap_err();
        assert!(e.to_string().contains("clean"));
    }
}
