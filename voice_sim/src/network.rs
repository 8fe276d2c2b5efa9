//! Seeded models of a network path and the built-in profiles.
//!
//! A [`NetworkProfile`] turns a packet's send time into an arrival time (or a loss), packet by
//! packet, from a seeded ChaCha8 generator: the same seed always gives the same trace.
//!
//! * latency: a fixed base delay;
//! * jitter: none, normal (truncated at the base), Pareto (heavy-tailed extra delay) or uniform
//!   extra delay;
//! * spikes: occasional queue build-ups — extra delay that drains linearly over a duration;
//! * loss: Gilbert-Elliott two-state bursts (mean burst = 1 / p(bad→good));
//! * reordering: a packet held back by an extra delay; duplication: a second copy shortly after;
//! * clock drift: the receiver's clock runs `drift_ppm` off the sender's.
//!
//! Two kinds of built-in profile:
//!
//! * **path classes** ([`CLASS_NAMES`]: `clean`, `wifi`, `lte`, `bursty`, `reorder`, `dup`) are
//!   ranges of parameters. [`NetworkProfile::for_seed`] draws one point of the ranges from the
//!   seed (with a generator separate from the trace's), so two seeds differ in their parameters and
//!   not only in their noise; [`NetworkProfile::builtin`] gives the middle of the ranges.
//! * **fixed profiles** (`jitter20`, `pareto`, `ge5`, `ge10`, `drift`, `drift-slow`) have one set
//!   of parameters whatever the seed; tests rely on their exact figures.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Pareto};

use crate::trace::{Trace, TraceRow};
use crate::SimError;
use voice_core::FRAME_DURATION;

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
    /// Extra delay uniform in `[0, max_ms)`: packets overtake each other by up to `max_ms`.
    Uniform {
        /// Largest extra delay in ms.
        max_ms: f64,
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
    /// Largest extra delay at a spike's start in ms.
    pub extra_ms: f64,
    /// Each spike's height is drawn uniformly between `min_fraction × extra_ms` and `extra_ms`
    /// (1: every spike is `extra_ms` high).
    pub min_fraction: f64,
    /// Time the extra delay of a full-height spike takes to drain to zero, in ms (a lower spike
    /// drains in proportionally less time, at the same rate).
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

/// Names of the path classes: built-in profiles whose parameters [`NetworkProfile::for_seed`]
/// draws per seed from a range.
pub const CLASS_NAMES: &[&str] = &["clean", "wifi", "lte", "bursty", "reorder", "dup"];

/// Names of all built-in profiles: the path classes, then the fixed profiles.
pub const PROFILE_NAMES: &[&str] = &[
    "clean",
    "wifi",
    "lte",
    "bursty",
    "reorder",
    "dup",
    "jitter20",
    "pareto",
    "ge5",
    "ge10",
    "drift",
    "drift-slow",
];

/// Mixed into the seed of the generator that draws a class's parameters, so that it is not the
/// generator of the trace's noise.
const PARAMETER_STREAM: u64 = 0x9e37_79b9_7f4a_7c15;

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

    /// A built-in profile by name (see [`PROFILE_NAMES`]); for a path class, the middle of its
    /// parameter ranges.
    pub fn builtin(name: &str) -> Result<Self, SimError> {
        match Self::class(name, &mut |lo, hi| (lo + hi) / 2.0) {
            Some(p) => Ok(p),
            None => Self::fixed(name),
        }
    }

    /// The profile `--profile NAME --seed N` simulates: for a path class, parameters drawn
    /// uniformly from its ranges by a generator seeded from `seed`; for a fixed profile, the same
    /// as [`NetworkProfile::builtin`].
    pub fn for_seed(name: &str, seed: u64) -> Result<Self, SimError> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ PARAMETER_STREAM);
        let mut draw = |lo: f64, hi: f64| {
            if hi > lo {
                rng.random_range(lo..hi)
            } else {
                lo
            }
        };
        match Self::class(name, &mut draw) {
            Some(p) => Ok(p),
            None => Self::fixed(name),
        }
    }

    /// A path class with each parameter taken by `draw(low, high)`, or `None` if `name` is not a
    /// class. The ranges model the paths the issue tracker's benchmark names.
    fn class(name: &str, draw: &mut dyn FnMut(f64, f64) -> f64) -> Option<Self> {
        let mut p = Self::base(name, 0.0);
        match name {
            // A good wired path: steady delay, about 1 ms of jitter.
            "clean" => {
                p.latency_ms = draw(10.0, 40.0);
                p.jitter = JitterModel::Normal {
                    sigma_ms: draw(0.5, 1.5),
                };
            }
            // Wi-Fi: moderate jitter, and every few seconds a stall of 100–200 ms whose queued
            // packets then drain over several packets; little loss.
            "wifi" => {
                p.latency_ms = draw(5.0, 30.0);
                p.jitter = JitterModel::Normal {
                    sigma_ms: draw(3.0, 8.0),
                };
                let extra_ms = draw(100.0, 200.0);
                p.spikes = Some(Spikes {
                    probability: 1.0 / draw(150.0, 400.0),
                    extra_ms,
                    min_fraction: 0.75,
                    duration_ms: extra_ms * draw(1.0, 2.5),
                });
                p.loss = Some(GilbertElliott::with_mean(draw(0.0, 0.01), 1.5));
            }
            // LTE: heavy-tailed (Pareto) delay and bursty loss of a few percent.
            "lte" => {
                p.latency_ms = draw(30.0, 70.0);
                p.jitter = JitterModel::Pareto {
                    scale_ms: draw(4.0, 10.0),
                    shape: draw(1.6, 2.5),
                };
                p.loss = Some(GilbertElliott::with_mean(draw(0.015, 0.04), draw(1.5, 3.0)));
            }
            // Gilbert-Elliott loss near 8 % in bursts of a few packets, little jitter.
            "bursty" => {
                p.latency_ms = draw(20.0, 50.0);
                p.jitter = JitterModel::Normal {
                    sigma_ms: draw(1.0, 3.0),
                };
                p.loss = Some(GilbertElliott::with_mean(draw(0.06, 0.10), draw(2.0, 4.0)));
            }
            // Tens of ms of uniform extra delay (so packets overtake each other), ~1 % loss.
            "reorder" => {
                p.latency_ms = draw(20.0, 50.0);
                p.jitter = JitterModel::Uniform {
                    max_ms: draw(20.0, 60.0),
                };
                p.loss = Some(GilbertElliott::with_mean(draw(0.005, 0.015), 1.0));
            }
            // A few percent of packets arrive twice, on a steady path.
            "dup" => {
                p.latency_ms = draw(15.0, 40.0);
                p.jitter = JitterModel::Normal {
                    sigma_ms: draw(1.0, 3.0),
                };
                p.duplicate_probability = draw(0.02, 0.05);
            }
            _ => return None,
        }
        Some(p)
    }

    /// A fixed built-in profile.
    fn fixed(name: &str) -> Result<Self, SimError> {
        let mut p = Self::base(name, 40.0);
        match name {
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
                    min_fraction: 1.0,
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
            other => return Err(SimError::UnknownProfile(other.to_string())),
        }
        Ok(p)
    }

    /// The parameters in one line (kept in a generated trace's comments).
    pub fn describe(&self) -> String {
        let mut s = format!("latency_ms={:.2}", self.latency_ms);
        match self.jitter {
            JitterModel::None => {}
            JitterModel::Normal { sigma_ms } => s += &format!(" normal_sigma_ms={sigma_ms:.2}"),
            JitterModel::Pareto { scale_ms, shape } => {
                s += &format!(" pareto_scale_ms={scale_ms:.2} pareto_shape={shape:.2}")
            }
            JitterModel::Uniform { max_ms } => s += &format!(" uniform_max_ms={max_ms:.2}"),
        }
        if let Some(l) = self.loss {
            let mean = l.p_good_to_bad / (l.p_good_to_bad + l.p_bad_to_good);
            s += &format!(
                " ge_loss={:.4} ge_burst={:.2}",
                mean * l.loss_bad + (1.0 - mean) * l.loss_good,
                1.0 / l.p_bad_to_good
            );
        }
        if let Some(k) = self.spikes {
            s += &format!(
                " spike_every_packets={:.0} spike_ms={:.1} spike_min_fraction={:.2} spike_drain_ms={:.1}",
                1.0 / k.probability,
                k.extra_ms,
                k.min_fraction,
                k.duration_ms
            );
        }
        if self.reorder_probability > 0.0 {
            s += &format!(
                " reorder_p={:.3} reorder_ms={:.1}",
                self.reorder_probability, self.reorder_extra_ms
            );
        }
        if self.duplicate_probability > 0.0 {
            s += &format!(" duplicate_p={:.3}", self.duplicate_probability);
        }
        if self.drift_ppm != 0.0 {
            s += &format!(" drift_ppm={:.0}", self.drift_ppm);
        }
        s
    }

    /// Simulates `packets` packets sent every 20 ms from time 0 and returns the trace.
    pub fn generate(&self, packets: usize, seed: u64) -> Trace {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut bad = false;
        // A running spike: its start (ms) and height (ms).
        let mut spike: Option<(f64, f64)> = None;
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
            if let JitterModel::Uniform { max_ms } = self.jitter {
                if max_ms > 0.0 {
                    delay += rng.random_range(0.0..max_ms);
                }
            }
            if let Some(s) = self.spikes {
                // Full-height spikes drain in `duration_ms`; lower ones at the same rate.
                let drain = s.extra_ms / s.duration_ms.max(1e-6);
                if let Some((start, height)) = spike {
                    if (send_ms - start) * drain >= height {
                        spike = None;
                    }
                }
                if spike.is_none() && rng.random::<f64>() < s.probability {
                    let f = s.min_fraction.clamp(0.0, 1.0);
                    let height = if f < 1.0 {
                        s.extra_ms * rng.random_range(f..1.0)
                    } else {
                        s.extra_ms
                    };
                    spike = Some((send_ms, height));
                }
                if let Some((start, height)) = spike {
                    delay += (height - (send_ms - start) * drain).max(0.0);
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
            comments: vec![
                format!("profile={} seed={seed} packets={packets}", self.name),
                self.describe(),
            ],
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
