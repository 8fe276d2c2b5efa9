//! Reading and writing WAV files in the engine's format (48 kHz, mono, 16-bit).
//!
//! Input may be any sample rate, mono or multi-channel, 16-bit integer or 32-bit float: channels are
//! averaged and the rate is converted to 48 kHz with a windowed-sinc (Blackman) low-pass resampler.

use std::path::Path;

use thiserror::Error;

use voice_core::SAMPLE_RATE;

/// A WAV failure.
#[derive(Debug, Error)]
pub enum WavError {
    /// The file could not be read, parsed or written.
    #[error("{path}: {source}")]
    Hound {
        /// The file.
        path: String,
        /// What went wrong.
        source: hound::Error,
    },
    /// A sample format this reader does not take.
    #[error("{path}: unsupported sample format ({bits}-bit {format:?})")]
    Format {
        /// The file.
        path: String,
        /// Bits per sample.
        bits: u16,
        /// Integer or float.
        format: hound::SampleFormat,
    },
}

/// Reads `path` as 48 kHz mono 16-bit samples (converting channels and rate as needed).
pub fn read_mono_48k(path: &Path) -> Result<Vec<i16>, WavError> {
    let p = path.display().to_string();
    let err = |source| WavError::Hound {
        path: p.clone(),
        source,
    };
    let mut reader = hound::WavReader::open(path).map_err(err)?;
    let spec = reader.spec();
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, 16) => reader
            .samples::<i16>()
            .map(|s| s.map(|v| f32::from(v) / 32768.0))
            .collect::<Result<_, _>>()
            .map_err(err)?,
        (hound::SampleFormat::Int, b @ (8 | 24 | 32)) => {
            let scale = (1u64 << (b - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| v as f32 / scale))
                .collect::<Result<_, _>>()
                .map_err(err)?
        }
        (hound::SampleFormat::Float, 32) => reader
            .samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(err)?,
        (format, bits) => {
            return Err(WavError::Format {
                path: p,
                bits,
                format,
            })
        }
    };
    let ch = usize::from(spec.channels.max(1));
    let mono: Vec<f32> = interleaved
        .chunks(ch)
        .map(|c| c.iter().sum::<f32>() / c.len() as f32)
        .collect();
    let resampled = resample(&mono, spec.sample_rate, SAMPLE_RATE);
    Ok(resampled.iter().map(|&s| to_i16(s)).collect())
}

fn to_i16(s: f32) -> i16 {
    (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// Writes 48 kHz mono 16-bit samples to `path`.
pub fn write_mono_48k(path: &Path, samples: &[i16]) -> Result<(), WavError> {
    let p = path.display().to_string();
    let err = |source| WavError::Hound {
        path: p.clone(),
        source,
    };
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(err)?;
    {
        let mut i16w = w.get_i16_writer(samples.len() as u32);
        for &s in samples {
            i16w.write_sample(s);
        }
        i16w.flush().map_err(err)?;
    }
    w.finalize().map_err(err)
}

/// Converts `input` from `from` Hz to `to` Hz with a windowed-sinc low-pass interpolator
/// (32 zero crossings each side, Blackman window, cut-off at the lower Nyquist frequency).
pub fn resample(input: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to || input.is_empty() || from == 0 || to == 0 {
        return input.to_vec();
    }
    const ZEROS: f64 = 32.0;
    let ratio = f64::from(to) / f64::from(from);
    let cutoff = ratio.min(1.0) * 0.97;
    let half_width = ZEROS / cutoff;
    let out_len = (input.len() as f64 * ratio).round() as usize;
    let mut out = Vec::with_capacity(out_len);
    for n in 0..out_len {
        let t = n as f64 / ratio;
        let lo = (t - half_width).ceil().max(0.0) as usize;
        let hi = ((t + half_width).floor() as usize).min(input.len() - 1);
        let mut acc = 0.0f64;
        for (k, &x) in input.iter().enumerate().take(hi + 1).skip(lo) {
            let d = k as f64 - t;
            let x_arg = d * cutoff;
            let sinc = if x_arg.abs() < 1e-12 {
                1.0
            } else {
                (std::f64::consts::PI * x_arg).sin() / (std::f64::consts::PI * x_arg)
            };
            let w_pos = (d + half_width) / (2.0 * half_width);
            let window = 0.42 - 0.5 * (std::f64::consts::TAU * w_pos).cos()
                + 0.08 * (2.0 * std::f64::consts::TAU * w_pos).cos();
            acc += f64::from(x) * cutoff * sinc * window;
        }
        out.push(acc as f32);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resampling_keeps_a_tone_and_its_length() {
        let from = 16_000;
        let tone: Vec<f32> = (0..16_000)
            .map(|i| (i as f32 / from as f32 * 440.0 * std::f32::consts::TAU).sin() * 0.5)
            .collect();
        let up = resample(&tone, from, 48_000);
        assert_eq!(up.len(), 48_000);
        // Compare against the ideal tone away from the edges.
        let err: f32 = (1000..47_000)
            .map(|i| {
                let ideal = (i as f32 / 48_000.0 * 440.0 * std::f32::consts::TAU).sin() * 0.5;
                (up[i] - ideal).abs()
            })
            .fold(0.0, f32::max);
        assert!(err < 0.01, "max error {err}");
    }

    #[test]
    fn wav_round_trip_and_stereo_downmix() {
        let dir = std::env::temp_dir().join(format!("voice_core_wav_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mono = dir.join("m.wav");
        let samples: Vec<i16> = (0..4800).map(|i| (i % 200) as i16 * 100).collect();
        write_mono_48k(&mono, &samples).unwrap();
        assert_eq!(read_mono_48k(&mono).unwrap(), samples);

        let stereo = dir.join("s.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 48_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&stereo, spec).unwrap();
        for _ in 0..10 {
            w.write_sample(1000i16).unwrap();
            w.write_sample(3000i16).unwrap();
        }
        w.finalize().unwrap();
        assert_eq!(read_mono_48k(&stereo).unwrap(), vec![2000i16; 10]);
        assert!(read_mono_48k(&dir.join("missing.wav")).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
