//! The `voice-sim` pipeline: recording → Opus packets → trace-driven delivery → jitter buffer →
//! decoder → what the listener hears, all on simulated time.
//!
//! The receiver ticks every 20 ms of its own clock starting at `tick_phase_ms` (0 by default), and
//! output sample 0 is the sender's time 0, so the playout delay is audible in the output (it
//! starts with silence: the phase, then the ticks before playout starts).

use serde::Serialize;

use crate::trace::Trace;
use crate::SimError;
use voice_core::codec::{loss_plan, EncoderConfig, LossPlan};
use voice_core::jitter::JitterConfig;
pub use voice_core::jitter::PolicyChoice;
use voice_core::metrics::StreamStats;
use voice_core::proto::udp;
use voice_core::proto::SessionToken;
use voice_core::stream::{FrameSource, Receiver, Sender};
use voice_core::Time;
use voice_core::{FRAME_DURATION, FRAME_SAMPLES};

/// Simulation settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimConfig {
    /// Playout policy.
    pub policy: PolicyChoice,
    /// In-band FEC: encoded by the sender and used by the receiver.
    pub fec: bool,
    /// Deep redundancy (DRED): carried by the sender once receivers report loss (as the engine's
    /// [`loss_plan`] decides) and used by the receiver.
    pub dred: bool,
    /// Encoder bitrate in bits/s (`None`: the engine default).
    pub bitrate: Option<u32>,
    /// Jitter-buffer limits.
    pub jitter: JitterConfig,
    /// First wire sequence number (near the wrap by default, so long runs cross it).
    pub first_seq: u16,
    /// The receiver's tick phase in ms, `0 ≤ phase < 20`: it ticks at `phase + 20 k` ms of the
    /// sender's clock (real receivers run at an arbitrary phase). Rounded to whole samples.
    pub tick_phase_ms: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            policy: PolicyChoice::default(),
            fec: true,
            dred: true,
            bitrate: None,
            jitter: JitterConfig::default(),
            first_seq: 65_000,
            tick_phase_ms: 0.0,
        }
    }
}

/// The flat metrics `voice-sim --stats` writes: the receiver's own [`StreamStats`] (less
/// [`NOT_WRITTEN`]) and what only a simulation knows, in one JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SimStats {
    /// The receiver's metrics at the end of the run, except `packets_lost`, which is the trace's
    /// ground truth: packets sent minus unique packets received (the receiver can only count the
    /// gaps below the highest sequence number it saw).
    #[serde(flatten, serialize_with = "stream_keys")]
    pub stream: StreamStats,
    /// Packets the sender produced.
    pub packets_sent: u64,
    /// Mean Opus payload bitrate actually sent, bits/s.
    pub payload_bitrate: f64,
    /// Frames the output holds (20 ms each).
    pub output_frames: u64,
    /// Concealment interruptions of 150 ms or more (≥ 8 consecutive concealed frames).
    pub interruptions: u64,
    /// Percentage of played frames that were concealed.
    pub concealment_percent: f64,
    /// Encoder bitrate used, bits/s.
    pub bitrate: u32,
    /// The playout policy (`"adaptive"` or `"fixed"`).
    pub policy: &'static str,
    /// The policy's target delay at the end, in ms.
    pub target_delay_ms: f64,
    /// Inserted plus removed samples, in percent of the output.
    pub tsm_percent: f64,
    /// Lost packets (never arrived) whose neighbours both arrived.
    pub isolated_losses: u64,
    /// Of those, how many were played from the next packet's in-band FEC.
    pub isolated_losses_fec_recovered: u64,
}

/// The [`StreamStats`] fields `voice-sim --stats` leaves out: gauges of a live stream (its
/// depth and 10 s loss now) and counters it has never written, so that the file's keys stay the
/// ones the quality bench and outside scripts read (a test pins them).
pub const NOT_WRITTEN: [&str; 4] = [
    "resyncs",
    "decode_errors",
    "buffer_depth",
    "loss_percent_10s",
];

/// Writes the fields of `stream` but [`NOT_WRITTEN`] into the enclosing object.
fn stream_keys<S: serde::Serializer>(stream: &StreamStats, ser: S) -> Result<S::Ok, S::Error> {
    use serde::ser::{Error as _, SerializeMap as _};
    let serde_json::Value::Object(fields) =
        serde_json::to_value(stream).map_err(S::Error::custom)?
    else {
        return Err(S::Error::custom("stream stats are not an object"));
    };
    let mut map = ser.serialize_map(None)?;
    for (key, value) in fields
        .iter()
        .filter(|(k, _)| !NOT_WRITTEN.contains(&k.as_str()))
    {
        map.serialize_entry(key, value)?;
    }
    map.end()
}

/// What a simulation produces.
#[derive(Debug, Clone)]
pub struct SimOutput {
    /// 48 kHz mono samples as heard; sample 0 is the sender's time 0.
    pub audio: Vec<i16>,
    /// The metrics.
    pub stats: SimStats,
    /// How each output frame was produced.
    pub sources: Vec<FrameSource>,
    /// For every frame taken from the jitter buffer: the tick (ms of receiver time) and the
    /// send → playout delay of its packet, in ms.
    pub frame_delays_ms: Vec<(f64, f64)>,
    /// The Opus payload of every packet the sender produced, by packet index (what
    /// `voice-sim --write-packets` saves, so other receivers can be fed the same packets).
    pub payloads: Vec<Vec<u8>>,
}

/// Report period of receivers in the engine (`EngineConfig::report_interval`).
const REPORT_EVERY: usize = 100;
/// Window of the loss they report (10 s).
const REPORT_WINDOW: usize = 500;

/// The encoder's loss protection for each packet as the engine's feedback loop sets it: every 2 s
/// the receiver reports the loss of the last 10 s, and the sender applies [`loss_plan`] to the
/// packets it encodes after that report (before the first report: the plan for no report).
fn loss_plans(trace: &Trace, packets: usize) -> Vec<LossPlan> {
    let mut arrived = vec![false; packets];
    for r in trace.rows.iter().filter(|r| (r.seq as usize) < packets) {
        if r.arrival_ms.is_some() {
            arrived[r.seq as usize] = true;
        }
    }
    (0..packets)
        .map(|k| {
            // The last report made before packet k was encoded.
            let reports = k / REPORT_EVERY;
            if reports < 1 {
                return loss_plan(None);
            }
            let end = reports * REPORT_EVERY;
            let start = end.saturating_sub(REPORT_WINDOW);
            let lost = arrived[start..end].iter().filter(|a| !**a).count();
            loss_plan(Some((lost * 1000 / (end - start).max(1)) as u16))
        })
        .collect()
}

/// Runs `input` (48 kHz mono) through the path described by `trace`.
pub fn run(input: &[i16], trace: &Trace, cfg: &SimConfig) -> Result<SimOutput, SimError> {
    let packets = input.len().div_ceil(FRAME_SAMPLES);
    if !(0.0..20.0).contains(&cfg.tick_phase_ms) {
        return Err(SimError::TickPhase(cfg.tick_phase_ms));
    }
    // The phase in whole output samples (48 per ms), and in ms exactly as many samples.
    let phase_samples = (cfg.tick_phase_ms * 48.0).round() as usize;
    let phase_ms = phase_samples as f64 / 48.0;
    if trace.packets() < packets {
        return Err(SimError::TooShort {
            have: trace.packets(),
            need: packets,
        });
    }
    // Encode every frame up front: the sender's behaviour does not depend on the path.
    let enc_cfg = EncoderConfig {
        bitrate: cfg.bitrate.unwrap_or(EncoderConfig::default().bitrate),
        fec: cfg.fec,
        ..EncoderConfig::default()
    };
    let mut sender = Sender::new(SessionToken(1), enc_cfg)?.with_start(cfg.first_seq, 0);
    let plans = loss_plans(trace, packets);
    let mut payload_bytes = 0u64;
    let mut datagrams: Vec<Vec<u8>> = Vec::with_capacity(packets);
    let mut frame = [0i16; FRAME_SAMPLES];
    let mut buf = [0u8; udp::MAX_DATAGRAM];
    for k in 0..packets {
        let chunk = &input[k * FRAME_SAMPLES..((k + 1) * FRAME_SAMPLES).min(input.len())];
        frame.fill(0);
        frame[..chunk.len()].copy_from_slice(chunk);
        if cfg.fec || cfg.dred {
            let mut plan = plans[k];
            if !cfg.dred && plan.dred_duration > 0 {
                // In-band FEC alone: the hint the loss asks for, no DRED.
                plan = LossPlan {
                    fec: true,
                    dred_duration: 0,
                    ..plan
                };
            }
            plan.fec &= cfg.fec;
            let enc = sender.encoder_mut();
            let want = plan.apply_to(enc_cfg);
            if enc.config() != want {
                enc.apply(want)?;
            }
            if enc.dred_duration() != plan.dred_duration {
                enc.set_dred_duration(plan.dred_duration)?;
            }
        }
        let n = sender
            .encode(&frame, SessionToken::NONE, k + 1 == packets, &mut buf)
            .map_err(|e| match e {
                voice_core::stream::SendError::Codec(c) => SimError::Codec(c),
                voice_core::stream::SendError::Wire(w) => SimError::Parse {
                    line: 0,
                    message: w.to_string(),
                },
                voice_core::stream::SendError::Seal(s) => SimError::Parse {
                    line: 0,
                    message: s.to_string(),
                },
            })?;
        payload_bytes += (n - udp::HEADER_LEN - udp::TAG_LEN) as u64;
        datagrams.push(buf[..n].to_vec());
    }

    // Arrivals in time order (stable: equal times keep file order).
    let mut arrivals: Vec<(f64, usize)> = trace
        .rows
        .iter()
        .filter(|r| (r.seq as usize) < packets)
        .filter_map(|r| r.arrival_ms.map(|a| (a, r.seq as usize)))
        .collect();
    arrivals.sort_by(|a, b| a.0.total_cmp(&b.0));
    let send_ms = |seq: usize| seq as f64 * FRAME_DURATION.as_secs_f64() * 1000.0;

    let mut rx = Receiver::new(cfg.jitter, cfg.policy.build())?;
    rx.set_fec(cfg.fec);
    rx.set_dred(cfg.dred)?;
    // Unwrapped sequence number of packet 0, learnt from the first frame played.
    let mut first_ext: Option<u64> = None;
    let last_arrival = arrivals.last().map(|a| a.0).unwrap_or(0.0);
    let max_ticks = (last_arrival / 20.0).ceil() as usize + packets + cfg.jitter.capacity * 2 + 100;
    let mut audio = Vec::with_capacity(phase_samples + max_ticks * FRAME_SAMPLES);
    // Before the first tick, at `phase_ms`, the listener hears nothing.
    audio.resize(phase_samples, 0);
    let mut sources = Vec::with_capacity(max_ticks);
    let mut next = 0usize;
    let mut out = [0i16; FRAME_SAMPLES];
    let mut concealed_run = 0u32;
    let mut interruptions = 0u64;
    let mut played_as: Vec<Option<FrameSource>> = vec![None; packets];
    let mut frame_delays_ms = Vec::with_capacity(max_ticks);
    for tick in 0..max_ticks {
        let now_ms = phase_ms + tick as f64 * 20.0;
        let now = Time::from_millis_f64(now_ms);
        while next < arrivals.len() && arrivals[next].0 <= now_ms {
            let (at, seq) = arrivals[next];
            let d = udp::parse(&datagrams[seq]).map_err(|e| SimError::Parse {
                line: 0,
                message: e.to_string(),
            })?;
            let _ = rx.handle_datagram(Time::from_millis_f64(at), &d.header, d.payload);
            next += 1;
        }
        let (source, _) = rx.tick(now, &mut out);
        let mut e2e = Vec::new();
        let leads: Vec<_> = rx.last_frame_leads().collect();
        for (&(ext, src), lead) in rx.last_frames().iter().zip(leads) {
            // Map the unwrapped sequence number back to the packet index.
            let base = *first_ext
                .get_or_insert_with(|| ext - u64::from((ext as u16).wrapping_sub(cfg.first_seq)));
            let index = (ext - base) as usize;
            if index < packets {
                played_as[index] = Some(src);
                let sent = Time::from_millis_f64(send_ms(index));
                let heard = now + lead;
                e2e.push(heard.saturating_since(sent));
                frame_delays_ms.push((now_ms, heard.as_millis_f64() - send_ms(index)));
            }
        }
        for d in e2e {
            rx.record_end_to_end(d);
        }
        if source == FrameSource::Concealed {
            concealed_run += 1;
            if concealed_run == 8 {
                interruptions += 1;
            }
        } else {
            concealed_run = 0;
        }
        audio.extend_from_slice(&out);
        sources.push(source);
        if next >= arrivals.len()
            && !rx.buffer().is_playing()
            && rx.buffer().depth() == 0
            && audio.len() >= input.len()
        {
            break;
        }
    }
    let end = Time::from_millis_f64(phase_ms + sources.len() as f64 * 20.0);
    let s = rx.stats(end);
    let mut arrived = vec![false; packets];
    for &(_, seq) in &arrivals {
        arrived[seq] = true;
    }
    let isolated: Vec<usize> = (1..packets.saturating_sub(1))
        .filter(|&k| !arrived[k] && arrived[k - 1] && arrived[k + 1])
        .collect();
    let isolated_fec = isolated
        .iter()
        .filter(|&&k| played_as[k] == Some(FrameSource::Fec))
        .count();
    let output_samples = (phase_samples + sources.len() * FRAME_SAMPLES) as f64;
    let stats = SimStats {
        stream: StreamStats {
            packets_lost: (packets as u64).saturating_sub(s.packets_received),
            ..s
        },
        packets_sent: packets as u64,
        payload_bitrate: payload_bytes as f64 * 8.0 / (packets.max(1) as f64 * 0.02),
        output_frames: sources.len() as u64,
        interruptions,
        concealment_percent: if s.frames_played == 0 {
            0.0
        } else {
            s.frames_concealed as f64 * 100.0 / s.frames_played as f64
        },
        bitrate: enc_cfg.bitrate,
        policy: rx.buffer().policy().name(),
        target_delay_ms: rx.buffer().policy().target_delay().as_secs_f64() * 1000.0,
        tsm_percent: if output_samples > 0.0 {
            (s.samples_inserted + s.samples_removed) as f64 * 100.0 / output_samples
        } else {
            0.0
        },
        isolated_losses: isolated.len() as u64,
        isolated_losses_fec_recovered: isolated_fec as u64,
    };
    let payloads = datagrams
        .iter()
        .map(|d| {
            udp::parse(d)
                .map(|d| d.payload.to_vec())
                .map_err(|e| SimError::Parse {
                    line: 0,
                    message: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SimOutput {
        audio,
        stats,
        sources,
        frame_delays_ms,
        payloads,
    })
}
