//! Where captured audio comes from and where mixed audio goes.
//!
//! The engine thread reads 20 ms frames from an [`InputStream`] and writes them to an
//! [`OutputStream`]. File, tone and null backends are plain code on the engine thread, paced by
//! its 20 ms timer. Device backends (cpal) run the device callback on the device's own thread; the
//! callback and the engine thread share nothing but a wait-free single-producer/single-consumer
//! ring (`rtrb`), an atomic latency figure (for the echo canceller's delay hint,
//! [`echo_delay_ms`]) and the atomics with which the device clock paces the engine
//! ([`crate::pacing`]): the callback never locks, never allocates and never logs. The
//! application's own audio ([`AppCapture`], [`AppPlayback`]) works the same way. Where no device can be opened at start the backend
//! falls back to null, and the driver reports that as an
//! [`voice_core::engine::Event::AudioNotice`]. A stream can be replaced while connected
//! ([`crate::Client::set_input`], [`crate::Client::set_output`]): each stream owns its ring and
//! callback, so a switch never touches a running callback.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::pacing::{FrameSignal, PullClock};

#[cfg(feature = "devices")]
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};

/// A running device stream (kept alive by the engine). Without the `devices` feature there is
/// none: the type has no values, so the device variants below cannot be built.
#[cfg(feature = "devices")]
pub type DeviceStream = cpal::Stream;
/// A running device stream; this build has no device support, so there is none.
#[cfg(not(feature = "devices"))]
pub enum DeviceStream {}
use voice_core::{FRAME_SAMPLES, SAMPLE_RATE};
use voice_sim::wav;

/// Where captured audio comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioInput {
    /// A capture device (`None`: the default one).
    Device(Option<String>),
    /// A WAV file, played once from the moment voice can flow (or looped).
    Wav {
        /// The file (any rate / channels; converted to 48 kHz mono).
        path: PathBuf,
        /// Start again at the end.
        looped: bool,
    },
    /// A sine tone.
    Tone {
        /// Frequency in Hz.
        hz: f32,
        /// Peak amplitude, 0–1.
        amplitude: f32,
    },
    /// Silence.
    Null,
    /// The application pushes captured samples itself ([`AppCapture`], e.g. from a game engine's
    /// own audio thread).
    App,
}

impl std::fmt::Display for AudioInput {
    /// For messages: "capture device \"USB Mic\"", "WAV file x.wav", "440 Hz tone", …
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AudioInput::Device(None) => f.write_str("the default capture device"),
            AudioInput::Device(Some(name)) => write!(f, "capture device {name:?}"),
            AudioInput::Wav { path, .. } => write!(f, "WAV file {}", path.display()),
            AudioInput::Tone { hz, .. } => write!(f, "{hz} Hz tone"),
            AudioInput::Null => f.write_str("silence"),
            AudioInput::App => f.write_str("application audio"),
        }
    }
}

/// Where the mixed output goes.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioOutput {
    /// A playback device (`None`: the default one).
    Device(Option<String>),
    /// A 48 kHz mono 16-bit WAV file; sample 0 is the engine's first tick.
    Wav(PathBuf),
    /// Discard.
    Null,
    /// The application pulls mixed samples itself ([`AppPlayback`]).
    App,
}

impl std::fmt::Display for AudioOutput {
    /// For messages: "playback device \"HDMI\"", "WAV file out.wav", …
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AudioOutput::Device(None) => f.write_str("the default playback device"),
            AudioOutput::Device(Some(name)) => write!(f, "playback device {name:?}"),
            AudioOutput::Wav(path) => write!(f, "WAV file {}", path.display()),
            AudioOutput::Null => f.write_str("nothing (discard)"),
            AudioOutput::App => f.write_str("application audio"),
        }
    }
}

/// Ring size for application-owned audio: 200 ms.
const APP_RING: usize = 10 * FRAME_SAMPLES;

/// The application's end of the capture ring: push 48 kHz mono samples from any one thread.
///
/// Wait-free: never locks, never allocates. Samples that do not fit (the engine is not keeping up,
/// more than 200 ms queued) are dropped and the count returned says how many were taken.
///
/// Each push that completes a 20 ms frame wakes the engine thread, which encodes and sends the
/// frame at once: the application's pushes are the capture clock.
pub struct AppCapture {
    ring: rtrb::Producer<i16>,
    signal: Arc<FrameSignal>,
}

impl AppCapture {
    /// Queues `pcm`; returns how many samples were accepted.
    pub fn push(&mut self, pcm: &[i16]) -> usize {
        let before = self.ring.buffer().capacity() - self.ring.slots();
        let n = push_slice(&mut self.ring, pcm);
        self.signal.pushed(before, before + n);
        n
    }
}

/// The application's end of the playback ring: pull mixed 48 kHz mono samples from any one thread.
///
/// Wait-free. When fewer samples are ready than asked for, the rest of `out` is filled with
/// silence and the count returned says how many were real.
///
/// The application's pulls are the playback clock: the engine thread learns their period and
/// size and mixes each frame just before the pull that needs it (see [`crate::pacing`]), so pull
/// at a steady rate, in chunks of any size.
pub struct AppPlayback {
    ring: rtrb::Consumer<i16>,
    clock: Arc<PullClock>,
}

impl AppPlayback {
    /// Fills `out`; returns how many samples came from the engine (the rest is silence).
    pub fn pull(&mut self, out: &mut [i16]) -> usize {
        let n = pop_slice(&mut self.ring, out);
        out[n..].fill(0);
        self.clock.pulled(out.len(), n);
        n
    }
}

/// Queues as much of `pcm` as fits in `ring` (wait-free); returns how many samples that was.
fn push_slice(ring: &mut rtrb::Producer<i16>, pcm: &[i16]) -> usize {
    let n = pcm.len().min(ring.slots());
    let Ok(mut chunk) = ring.write_chunk(n) else {
        return 0;
    };
    let (a, b) = chunk.as_mut_slices();
    a.copy_from_slice(&pcm[..a.len()]);
    b.copy_from_slice(&pcm[a.len()..a.len() + b.len()]);
    chunk.commit_all();
    n
}

/// Takes as many samples from `ring` as are queued, up to `out.len()`, into the start of `out`
/// (wait-free); returns how many that was.
fn pop_slice(ring: &mut rtrb::Consumer<i16>, out: &mut [i16]) -> usize {
    let n = out.len().min(ring.slots());
    let Ok(chunk) = ring.read_chunk(n) else {
        return 0;
    };
    let (a, b) = chunk.as_slices();
    out[..a.len()].copy_from_slice(a);
    out[a.len()..a.len() + b.len()].copy_from_slice(b);
    chunk.commit_all();
    n
}

/// Creates the capture ring: the engine's reading end and the application's writing end.
pub fn app_capture_ring() -> (InputStream, AppCapture) {
    let (p, c) = rtrb::RingBuffer::new(APP_RING);
    let signal = FrameSignal::new();
    (
        InputStream {
            kind: InputKind::Ring(c),
            started: false,
            signal: Some(signal.clone()),
        },
        AppCapture { ring: p, signal },
    )
}

/// Creates the playback ring: the engine's writing end and the application's reading end.
pub fn app_playback_ring() -> (OutputStream, AppPlayback) {
    let (p, c) = rtrb::RingBuffer::new(APP_RING);
    let clock = PullClock::new();
    (
        OutputStream::Ring {
            ring: p,
            clock: clock.clone(),
        },
        AppPlayback { ring: c, clock },
    )
}

/// Why an audio backend could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// A WAV file failed.
    #[error(transparent)]
    Wav(#[from] wav::WavError),
    /// The WAV writer failed.
    #[error("recording: {0}")]
    Record(#[from] hound::Error),
    /// No such device, or it cannot do what we need.
    #[error("audio device: {0}")]
    Device(String),
    /// The engine thread has ended (the client was shut down, or its connection failed for
    /// good): there is no stream left to replace.
    #[error("the engine thread has stopped")]
    EngineStopped,
}

/// Names of the capture and playback devices of the default host.
#[cfg(feature = "devices")]
pub fn device_names() -> (Vec<String>, Vec<String>) {
    let host = cpal::default_host();
    let name = |d: cpal::Device| d.description().ok().map(|x| x.name().to_string());
    let inputs = host
        .input_devices()
        .map(|it| it.filter_map(name).collect())
        .unwrap_or_default();
    let outputs = host
        .output_devices()
        .map(|it| it.filter_map(name).collect())
        .unwrap_or_default();
    (inputs, outputs)
}

/// Names of the capture and playback devices: none in a build without the `devices` feature.
#[cfg(not(feature = "devices"))]
pub fn device_names() -> (Vec<String>, Vec<String>) {
    (Vec::new(), Vec::new())
}

#[cfg(not(feature = "devices"))]
const NO_DEVICES: &str = "this build has no sound-card support (cargo feature `devices`); \
    use application audio, a WAV file or a tone";

#[cfg(not(feature = "devices"))]
fn open_capture(_name: Option<&str>) -> Result<InputKind, AudioError> {
    Err(AudioError::Device(NO_DEVICES.into()))
}

#[cfg(not(feature = "devices"))]
fn open_playback(_name: Option<&str>) -> Result<OutputStream, AudioError> {
    Err(AudioError::Device(NO_DEVICES.into()))
}

#[cfg(feature = "devices")]
fn find_device(input: bool, wanted: Option<&str>) -> Result<cpal::Device, AudioError> {
    let host = cpal::default_host();
    let dev = match wanted {
        None => {
            if input {
                host.default_input_device()
            } else {
                host.default_output_device()
            }
        }
        Some(w) => {
            let mut devices = if input {
                host.input_devices()
            } else {
                host.output_devices()
            }
            .map_err(|e| AudioError::Device(e.to_string()))?;
            devices.find(|d| d.description().is_ok_and(|x| x.name() == w))
        }
    };
    dev.ok_or_else(|| {
        AudioError::Device(format!(
            "no {} device{}",
            if input { "capture" } else { "playback" },
            wanted.map(|w| format!(" named {w:?}")).unwrap_or_default()
        ))
    })
}

/// A device config at 48 kHz, with the device's preferred channel count.
#[cfg(feature = "devices")]
fn config_48k(dev: &cpal::Device, input: bool) -> Result<cpal::StreamConfig, AudioError> {
    let def = if input {
        dev.default_input_config()
    } else {
        dev.default_output_config()
    }
    .map_err(|e| AudioError::Device(e.to_string()))?;
    if def.sample_format() != cpal::SampleFormat::F32
        && def.sample_format() != cpal::SampleFormat::I16
    {
        log::debug!("device prefers {:?}; asking for f32", def.sample_format());
    }
    Ok(cpal::StreamConfig {
        channels: def.channels().max(1),
        sample_rate: SAMPLE_RATE,
        buffer_size: cpal::BufferSize::Default,
    })
}

/// A source of captured frames, read by the engine thread: once per timer tick, or for a device
/// or the application's ring, whenever a whole frame has arrived.
pub struct InputStream {
    kind: InputKind,
    /// False until voice can flow; file and tone sources do not advance before that.
    started: bool,
    /// Raised by a device or application producer when a frame is complete.
    signal: Option<Arc<FrameSignal>>,
}

impl std::fmt::Debug for InputStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            InputKind::Samples { .. } => "samples",
            InputKind::Tone { .. } => "tone",
            InputKind::Device { .. } => "device",
            InputKind::Ring(_) => "application ring",
            InputKind::Null => "null",
        };
        f.debug_struct("InputStream")
            .field("kind", &kind)
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

enum InputKind {
    Samples {
        data: Vec<i16>,
        pos: usize,
        looped: bool,
    },
    Tone {
        phase: f64,
        step: f64,
        amplitude: f32,
    },
    // Without the `devices` feature this variant cannot be built (its stream type has no values).
    #[cfg_attr(not(feature = "devices"), allow(dead_code))]
    Device {
        ring: rtrb::Consumer<i16>,
        _stream: DeviceStream,
        /// Capture latency reported by the device (capture instant to callback), µs.
        latency_us: Arc<AtomicU32>,
        /// Raised by the callback when a frame is complete.
        signal: Arc<FrameSignal>,
    },
    Ring(rtrb::Consumer<i16>),
    Null,
}

impl InputStream {
    /// Opens `input`. A device that cannot be opened is an error (the caller decides on fallback).
    pub fn open(input: &AudioInput) -> Result<Self, AudioError> {
        let kind = match input {
            AudioInput::Wav { path, looped } => InputKind::Samples {
                data: wav::read_mono_48k(path)?,
                pos: 0,
                looped: *looped,
            },
            AudioInput::Tone { hz, amplitude } => InputKind::Tone {
                phase: 0.0,
                step: f64::from(*hz) / f64::from(SAMPLE_RATE) * std::f64::consts::TAU,
                amplitude: amplitude.clamp(0.0, 1.0),
            },
            AudioInput::Null => InputKind::Null,
            AudioInput::App => {
                return Err(AudioError::Device(
                    "application audio is created by Client::start".into(),
                ))
            }
            AudioInput::Device(name) => open_capture(name.as_deref())?,
        };
        let signal = match &kind {
            InputKind::Device { signal, .. } => Some(signal.clone()),
            _ => None,
        };
        Ok(InputStream {
            kind,
            started: false,
            signal,
        })
    }

    /// A silent source.
    pub fn null() -> Self {
        InputStream {
            kind: InputKind::Null,
            started: false,
            signal: None,
        }
    }

    /// Whether the source has its own clock (a device, the application's pushes): frames are
    /// read when complete ([`InputStream::frame_ready`]) rather than on the engine's timer.
    pub fn paced(&self) -> bool {
        self.signal.is_some()
    }

    /// Whether a whole frame is queued (always false for a source without a clock).
    pub fn frame_ready(&self) -> bool {
        match &self.kind {
            InputKind::Device { ring, .. } | InputKind::Ring(ring) => ring.slots() >= FRAME_SAMPLES,
            _ => false,
        }
    }

    /// Installs the engine thread's waker, raised when a frame is complete.
    pub fn set_waker(&self, waker: Arc<mio::Waker>) {
        if let Some(s) = &self.signal {
            s.set_waker(waker);
        }
    }

    /// Marks that voice can flow: file and tone sources start advancing.
    pub fn start(&mut self) {
        self.started = true;
    }

    /// Whether a finite source (a WAV played once) has been played to its end.
    pub fn finished(&self) -> bool {
        matches!(&self.kind, InputKind::Samples { data, pos, looped: false } if *pos >= data.len())
    }

    /// Reads one frame (silence where nothing is available).
    pub fn read_frame(&mut self, out: &mut [i16; FRAME_SAMPLES]) {
        out.fill(0);
        match &mut self.kind {
            InputKind::Samples { data, pos, looped } => {
                if !self.started || data.is_empty() {
                    return;
                }
                for o in out.iter_mut() {
                    if *pos >= data.len() {
                        if *looped {
                            *pos = 0;
                        } else {
                            break;
                        }
                    }
                    *o = data[*pos];
                    *pos += 1;
                }
            }
            InputKind::Tone {
                phase,
                step,
                amplitude,
            } => {
                if !self.started {
                    return;
                }
                for o in out.iter_mut() {
                    *o = (phase.sin() * f64::from(*amplitude) * 32767.0) as i16;
                    *phase = (*phase + *step) % std::f64::consts::TAU;
                }
            }
            InputKind::Device { ring, .. } | InputKind::Ring(ring) => {
                // Keep capture latency bounded: with more than 2 frames queued (the producer ran
                // ahead, e.g. while we were not yet reading), drop the oldest.
                while ring.slots() > 2 * FRAME_SAMPLES {
                    if let Ok(chunk) = ring.read_chunk(FRAME_SAMPLES) {
                        chunk.commit_all();
                    }
                }
                pop_slice(ring, out);
            }
            InputKind::Null => {}
        }
    }
}

/// The echo path delay of a device pair in ms, for the echo canceller: from a frame's hand-off
/// to the playback ring until it is heard, plus from the microphone until the engine reads it
/// (device latencies as the devices report them, and the samples queued in both rings). `None`
/// unless both ends are devices.
pub fn echo_delay_ms(input: &InputStream, output: &OutputStream) -> Option<u32> {
    let (
        InputKind::Device {
            ring: cap,
            latency_us: cap_lat,
            ..
        },
        OutputStream::Device {
            ring: play,
            latency_us: play_lat,
            ..
        },
    ) = (&input.kind, output)
    else {
        return None;
    };
    let queued = cap.slots() + (play.buffer().capacity() - play.slots());
    let us = u64::from(cap_lat.load(Ordering::Relaxed))
        + u64::from(play_lat.load(Ordering::Relaxed))
        + queued as u64 * 1_000_000 / u64::from(SAMPLE_RATE);
    Some((us / 1000).min(500) as u32)
}

#[cfg(feature = "devices")]
fn open_capture(name: Option<&str>) -> Result<InputKind, AudioError> {
    let dev = find_device(true, name)?;
    let cfg = config_48k(&dev, true)?;
    let channels = usize::from(cfg.channels);
    let (mut producer, consumer) = rtrb::RingBuffer::<i16>::new(8 * FRAME_SAMPLES);
    let latency_us = Arc::new(AtomicU32::new(0));
    let latency = latency_us.clone();
    let signal = FrameSignal::new();
    let frame_signal = signal.clone();
    let stream = dev
        .build_input_stream(
            cfg,
            move |data: &[f32], info: &cpal::InputCallbackInfo| {
                // Real-time context: no locks, no allocation, no logging.
                let ts = info.timestamp();
                let d = ts.callback.duration_since(ts.capture);
                latency.store(
                    d.as_micros().min(u32::MAX as u128) as u32,
                    Ordering::Relaxed,
                );
                let before = producer.buffer().capacity() - producer.slots();
                for frame in data.chunks(channels) {
                    let mono = frame.iter().sum::<f32>() / channels as f32;
                    let _ = producer.push((mono.clamp(-1.0, 1.0) * 32767.0) as i16);
                }
                let after = producer.buffer().capacity() - producer.slots();
                frame_signal.pushed(before, after);
            },
            |e| log::warn!("capture stream error: {e}"),
            None,
        )
        .map_err(|e| AudioError::Device(e.to_string()))?;
    stream
        .play()
        .map_err(|e| AudioError::Device(e.to_string()))?;
    Ok(InputKind::Device {
        ring: consumer,
        _stream: stream,
        latency_us,
        signal,
    })
}

/// A sink for mixed frames, written by the engine thread: once per timer tick, or for a device
/// or the application's ring, just before the consumer needs the frame.
pub enum OutputStream {
    /// Recording to a WAV file.
    Wav(hound::WavWriter<std::io::BufWriter<std::fs::File>>),
    /// Handing frames to the application through a ring ([`AppPlayback`]).
    Ring {
        /// Producer side of the ring the application reads.
        ring: rtrb::Producer<i16>,
        /// Stamped by each of the application's pulls.
        clock: Arc<PullClock>,
    },
    /// Playing on a device through a ring.
    Device {
        /// Producer side of the ring the callback reads.
        ring: rtrb::Producer<i16>,
        /// Keeps the device stream alive.
        _stream: DeviceStream,
        /// Playback latency reported by the device (callback to playback instant), µs.
        latency_us: Arc<AtomicU32>,
        /// Stamped by each callback.
        clock: Arc<PullClock>,
    },
    /// Discarding.
    Null,
}

impl std::fmt::Debug for OutputStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OutputStream::Wav(_) => "OutputStream::Wav",
            OutputStream::Ring { .. } => "OutputStream::Ring",
            OutputStream::Device { .. } => "OutputStream::Device",
            OutputStream::Null => "OutputStream::Null",
        })
    }
}

impl OutputStream {
    /// Opens `output`.
    pub fn open(output: &AudioOutput) -> Result<Self, AudioError> {
        Ok(match output {
            AudioOutput::Wav(path) => {
                let spec = hound::WavSpec {
                    channels: 1,
                    sample_rate: SAMPLE_RATE,
                    bits_per_sample: 16,
                    sample_format: hound::SampleFormat::Int,
                };
                OutputStream::Wav(hound::WavWriter::create(path, spec)?)
            }
            AudioOutput::Null => OutputStream::Null,
            AudioOutput::App => {
                return Err(AudioError::Device(
                    "application audio is created by Client::start".into(),
                ))
            }
            AudioOutput::Device(name) => open_playback(name.as_deref())?,
        })
    }

    /// Writes one frame.
    pub fn write_frame(&mut self, frame: &[i16; FRAME_SAMPLES]) {
        match self {
            OutputStream::Wav(w) => {
                for &s in frame.iter() {
                    if w.write_sample(s).is_err() {
                        break;
                    }
                }
            }
            OutputStream::Device { ring, .. } | OutputStream::Ring { ring, .. } => {
                // Keep playback latency bounded: skip a frame when 2 are already queued (the
                // consumer started late or runs slow). The engine's timer and the device clock are
                // not locked together, so a slow device drifts into an occasional skipped frame
                // rather than into ever-growing delay.
                if ring.slots() >= FRAME_SAMPLES
                    && ring.buffer().capacity() - ring.slots() < 2 * FRAME_SAMPLES
                {
                    push_slice(ring, frame);
                }
            }
            OutputStream::Null => {}
        }
    }

    /// The consumer's clock, for a sink that has one (a device, the application's ring).
    pub fn pull_clock(&self) -> Option<&Arc<PullClock>> {
        match self {
            OutputStream::Device { clock, .. } | OutputStream::Ring { clock, .. } => Some(clock),
            _ => None,
        }
    }

    /// Samples queued for the consumer (0 for a sink without a ring).
    pub fn queued(&self) -> usize {
        match self {
            OutputStream::Device { ring, .. } | OutputStream::Ring { ring, .. } => {
                ring.buffer().capacity() - ring.slots()
            }
            _ => 0,
        }
    }

    /// Samples that still fit in the consumer's ring (0 for a sink without a ring).
    pub fn room(&self) -> usize {
        match self {
            OutputStream::Device { ring, .. } | OutputStream::Ring { ring, .. } => ring.slots(),
            _ => 0,
        }
    }

    /// Writes one frame that the pacer asked for: queued whole if it fits (the pacer already
    /// keeps the ring as short as the consumer allows), dropped if the ring is full.
    pub fn write_paced_frame(&mut self, frame: &[i16; FRAME_SAMPLES]) {
        match self {
            OutputStream::Device { ring, .. } | OutputStream::Ring { ring, .. } => {
                if ring.slots() >= FRAME_SAMPLES {
                    push_slice(ring, frame);
                }
            }
            _ => self.write_frame(frame),
        }
    }

    /// Flushes and closes (finalises a WAV header).
    pub fn finish(self) -> Result<(), AudioError> {
        if let OutputStream::Wav(w) = self {
            w.finalize()?;
        }
        Ok(())
    }
}

#[cfg(feature = "devices")]
fn open_playback(name: Option<&str>) -> Result<OutputStream, AudioError> {
    let dev = find_device(false, name)?;
    let cfg = config_48k(&dev, false)?;
    let channels = usize::from(cfg.channels);
    let (producer, mut consumer) = rtrb::RingBuffer::<i16>::new(8 * FRAME_SAMPLES);
    let latency_us = Arc::new(AtomicU32::new(0));
    let latency = latency_us.clone();
    let clock = PullClock::new();
    let pulls = clock.clone();
    let stream = dev
        .build_output_stream(
            cfg,
            move |data: &mut [f32], info: &cpal::OutputCallbackInfo| {
                // Real-time context: no locks, no allocation, no logging. Underrun plays silence.
                let ts = info.timestamp();
                let d = ts.playback.duration_since(ts.callback);
                latency.store(
                    d.as_micros().min(u32::MAX as u128) as u32,
                    Ordering::Relaxed,
                );
                let (mut asked, mut got) = (0, 0);
                for frame in data.chunks_mut(channels) {
                    let s = consumer.pop().map_or(0.0, |v| {
                        got += 1;
                        f32::from(v) / 32768.0
                    });
                    asked += 1;
                    frame.fill(s);
                }
                pulls.pulled(asked, got);
            },
            |e| log::warn!("playback stream error: {e}"),
            None,
        )
        .map_err(|e| AudioError::Device(e.to_string()))?;
    stream
        .play()
        .map_err(|e| AudioError::Device(e.to_string()))?;
    Ok(OutputStream::Device {
        ring: producer,
        _stream: stream,
        latency_us,
        clock,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_sources_wait_for_start_then_play_once() {
        let dir = std::env::temp_dir().join(format!("vc_audio_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("in.wav");
        let samples: Vec<i16> = (0..2000).map(|i| i as i16).collect();
        wav::write_mono_48k(&path, &samples).unwrap();
        let mut s = InputStream::open(&AudioInput::Wav {
            path,
            looped: false,
        })
        .unwrap();
        let mut f = [0i16; FRAME_SAMPLES];
        s.read_frame(&mut f);
        assert!(f.iter().all(|&x| x == 0), "silent before start");
        s.start();
        s.read_frame(&mut f);
        assert_eq!(f[0], 0);
        assert_eq!(f[959], 959);
        s.read_frame(&mut f);
        s.read_frame(&mut f);
        assert_eq!(f[0], 1920);
        assert_eq!(f[100], 0, "zero-padded after the end");
        assert!(s.finished());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn tone_has_the_requested_amplitude() {
        let mut s = InputStream::open(&AudioInput::Tone {
            hz: 440.0,
            amplitude: 0.5,
        })
        .unwrap();
        s.start();
        let mut f = [0i16; FRAME_SAMPLES];
        s.read_frame(&mut f);
        let peak = f.iter().map(|x| x.unsigned_abs()).max().unwrap();
        assert!((16_000..=16_400).contains(&peak), "{peak}");
    }
}
