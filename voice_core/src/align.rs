//! Finding a known signal inside a recording: the lag and how well it matches.
//!
//! Used by the end-to-end tests (is what A said in B's recording?) and the latency benchmark
//! (how long after A said it?). A coarse search on 8×-decimated signals finds the neighbourhood,
//! a full-rate search refines it; the score is the normalised cross-correlation at that lag
//! (1.0 = identical up to gain, ~0 = unrelated or silence).

/// Where `reference` best matches inside `recording`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Alignment {
    /// Offset in samples of `reference[0]` within `recording`.
    pub lag: usize,
    /// Normalised cross-correlation at that lag (−1..=1).
    pub correlation: f64,
}

fn decimate(x: &[i16], k: usize) -> Vec<f64> {
    x.chunks(k)
        .map(|c| c.iter().map(|&v| f64::from(v)).sum::<f64>() / c.len() as f64)
        .collect()
}

fn ncc(a: &[f64], b: &[f64]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa <= 0.0 || bb <= 0.0 {
        0.0
    } else {
        ab / (aa * bb).sqrt()
    }
}

fn raw_dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Searches lags `0..=max_lag` for the best match of `reference` in `recording`.
/// Returns `None` when the recording is too short to hold the reference at any lag.
pub fn align(reference: &[i16], recording: &[i16], max_lag: usize) -> Option<Alignment> {
    if reference.is_empty() || recording.len() < reference.len() / 2 {
        return None;
    }
    const K: usize = 8;
    let r = decimate(reference, K);
    let y = decimate(recording, K);
    let max_coarse = (max_lag / K).min(y.len().saturating_sub(1));
    let mut best = (0usize, f64::MIN);
    for lag in 0..=max_coarse {
        let n = r.len().min(y.len() - lag);
        if n < r.len() / 2 {
            break;
        }
        let score = ncc(&r[..n], &y[lag..lag + n]);
        if score > best.1 {
            best = (lag, score);
        }
    }
    let rf: Vec<f64> = reference.iter().map(|&v| f64::from(v)).collect();
    let yf: Vec<f64> = recording.iter().map(|&v| f64::from(v)).collect();
    let centre = best.0 * K;
    let lo = centre.saturating_sub(2 * K);
    let hi = (centre + 2 * K).min(max_lag);
    let mut fine = (centre, f64::MIN);
    for lag in lo..=hi {
        if lag >= yf.len() {
            break;
        }
        let n = rf.len().min(yf.len() - lag);
        let score = raw_dot(&rf[..n], &yf[lag..lag + n]);
        if score > fine.1 {
            fine = (lag, score);
        }
    }
    let lag = fine.0;
    let n = rf.len().min(yf.len().saturating_sub(lag));
    Some(Alignment {
        lag,
        correlation: ncc(&rf[..n], &yf[lag..lag + n]),
    })
}

/// Energy (sum of squares) of a signal, normalised per sample.
pub fn mean_power(x: &[i16]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_delayed_copy_and_rejects_noise() {
        let sig: Vec<i16> = (0..24_000)
            .map(|i| {
                let t = i as f64 / 48_000.0;
                ((t * 200.0 * std::f64::consts::TAU).sin() * (t * 3.0).sin() * 9000.0) as i16
            })
            .collect();
        let mut rec = vec![0i16; 3_333];
        rec.extend(sig.iter().map(|&s| s / 2));
        rec.extend(vec![0i16; 5_000]);
        let a = align(&sig, &rec, 10_000).unwrap();
        assert_eq!(a.lag, 3_333);
        assert!(a.correlation > 0.99);
        let silence = vec![0i16; 40_000];
        assert_eq!(align(&sig, &silence, 10_000).unwrap().correlation, 0.0);
    }
}
