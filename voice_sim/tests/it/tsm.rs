//! Time-scale modification: every tick yields exactly one 960-sample frame, and a cross-faded
//! removal or insertion leaves no discontinuity (bounded sample-to-sample jump).
use crate::common;
use common::*;
use voice_core::tsm::{lengthen, pitch_period, shorten, MAX_OUTPUT};
use voice_core::FRAME_SAMPLES;
use voice_sim::run::{run, SimConfig};

fn max_jump(x: &[i16]) -> i32 {
    x.windows(2)
        .map(|w| (i32::from(w[1]) - i32::from(w[0])).abs())
        .max()
        .unwrap_or(0)
}

#[test]
fn cross_faded_cuts_and_repeats_have_no_discontinuity() {
    for f0 in [110.0, 170.0, 260.0] {
        let x: Vec<i16> = (0..2 * FRAME_SAMPLES)
            .map(|i| {
                let t = i as f64 / 48_000.0;
                ((t * f0 * std::f64::consts::TAU).sin() * 8000.0
                    + (t * 2.0 * f0 * std::f64::consts::TAU).sin() * 3000.0) as i16
            })
            .collect();
        let frame: [i16; FRAME_SAMPLES] = x[FRAME_SAMPLES..].try_into().unwrap();
        let (p, c) = pitch_period(&frame);
        assert!(c > 0.9, "{f0} Hz: correlation {c}");
        let limit = max_jump(&x) * 11 / 10 + 2;
        let mut out = [0i16; MAX_OUTPUT];
        for stretched in [shorten(&frame, p, &mut out), lengthen(&frame, p, &mut out)] {
            let mut joined = x[..FRAME_SAMPLES].to_vec();
            joined.extend_from_slice(&out[..stretched]);
            assert!(
                max_jump(&joined) <= limit,
                "{f0} Hz, period {p}: jump {} > {limit}",
                max_jump(&joined)
            );
        }
    }
}

#[test]
fn receiver_output_stays_one_frame_per_tick_and_smooth_while_it_time_scales() {
    let samples = speechlike(24.0);
    let packets = samples.len().div_ceil(FRAME_SAMPLES);
    // 150 ms of delay for 3 s, then it falls to 20 ms (5 ms per packet, so no reordering): the
    // adaptive receiver must shorten its output to follow. Its delay estimate forgets slowly (a
    // 97 % quantile over a ~200-packet memory), so the shortening comes some seconds later.
    let trace = trace_with(packets, |k| {
        if k < 150 {
            150.0
        } else {
            (150.0 - 5.0 * (k - 150) as f64).max(20.0) + (k % 3) as f64
        }
    });
    let adaptive = run(&samples, &trace, &SimConfig::default()).unwrap();
    let fixed = run(&samples, &trace, &fixed_policy()).unwrap();
    assert!(
        adaptive.stats.stream.samples_removed > 0,
        "{:?}",
        adaptive.stats
    );
    // Nothing is lost: at most one frame of waiting for a packet that came late on the lattice
    // (concealed while the position holds, so the packet still plays).
    assert!(
        adaptive.stats.stream.frames_concealed <= 1,
        "{:?}",
        adaptive.stats
    );
    assert_eq!(
        adaptive.stats.stream.frames_concealed,
        adaptive.stats.stream.frames_stalled
    );
    assert_eq!(adaptive.stats.stream.packets_late, 0);
    assert_eq!(adaptive.audio.len(), adaptive.sources.len() * FRAME_SAMPLES);
    assert_eq!(
        adaptive.audio.len() as u64,
        adaptive.stats.output_frames * FRAME_SAMPLES as u64
    );
    // Up to the end of the talk spurt: where the stream stops, the output falls to silence at
    // whatever point of the waveform it was (not a time-scaling artefact).
    fn playing(a: &[i16]) -> &[i16] {
        &a[..a.len() - 10 * FRAME_SAMPLES]
    }
    let limit = max_jump(playing(&fixed.audio)) * 13 / 10;
    assert!(
        max_jump(playing(&adaptive.audio)) <= limit,
        "jump {} vs {} without time scaling",
        max_jump(playing(&adaptive.audio)),
        max_jump(playing(&fixed.audio))
    );
}
