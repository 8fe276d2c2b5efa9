//! On the ge5 profile (5 % loss, mean burst 2) in-band FEC recovers ≥ 90 % of isolated losses.
use crate::common;
use common::*;
use voice_sim::network::NetworkProfile;
use voice_sim::run::{run, SimConfig};

#[test]
fn fec_recovers_nine_in_ten_isolated_losses_on_ge5() {
    // Voiced throughout: Opus (SILK) sends no LBRR for frames its VAD calls inactive, so a loss
    // in a pause has no FEC to recover (and nothing audible to lose); this measures the receiver.
    let samples: Vec<i16> = speechlike(60.0)
        .iter()
        .zip(speechlike(60.125).iter().skip(6000))
        .map(|(&a, &b)| a.saturating_add(b))
        .collect();
    let packets = samples.len().div_ceil(voice_core::FRAME_SAMPLES);
    let trace = NetworkProfile::builtin("ge5")
        .unwrap()
        .generate(packets, 11);
    let out = run(&samples, &trace, &SimConfig::default()).unwrap();
    let s = out.stats;
    assert!(s.isolated_losses >= 30, "{s:?}");
    assert!(
        s.isolated_losses_fec_recovered * 10 >= s.isolated_losses * 9,
        "{} of {} isolated losses recovered",
        s.isolated_losses_fec_recovered,
        s.isolated_losses
    );
    let no_fec = run(
        &samples,
        &trace,
        &SimConfig {
            fec: false,
            ..SimConfig::default()
        },
    )
    .unwrap();
    assert_eq!(no_fec.stats.isolated_losses_fec_recovered, 0);
    assert!(no_fec.stats.stream.frames_concealed > s.stream.frames_concealed);
}
