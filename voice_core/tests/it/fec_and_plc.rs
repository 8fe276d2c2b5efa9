//! A single loss with the next packet buffered is recovered from in-band FEC; a burst is concealed.
use crate::common;
use common::*;
use voice_core::stream::FrameSource;
use voice_core::FRAME_SAMPLES;

fn play(lost: &[usize], fec: bool) -> (Vec<FrameSource>, voice_core::metrics::StreamStats) {
    let dg = datagrams(30, 300);
    let mut rx = receiver();
    rx.set_fec(fec);
    let mut sources = Vec::new();
    let mut out = [0i16; FRAME_SAMPLES];
    // Packets arrive 25 ms after sending; the receiver ticks every 20 ms.
    for k in 0..40u64 {
        let now = tick(k);
        if k >= 2 && ((k - 2) as usize) < dg.len() && !lost.contains(&((k - 2) as usize)) {
            let (h, p) = parse(&dg[(k - 2) as usize]);
            let _ = rx.handle_datagram(now, &h, p);
        }
        sources.push(rx.tick(now, &mut out).0);
    }
    (sources, rx.stats(tick(40)))
}

#[test]
fn single_loss_is_recovered_from_fec() {
    let (sources, st) = play(&[10], true);
    assert_eq!(st.frames_fec_recovered, 1);
    assert_eq!(st.frames_concealed, 0);
    assert_eq!(
        sources.iter().filter(|s| **s == FrameSource::Fec).count(),
        1
    );
    assert_eq!(st.packets_lost, 1);
}

#[test]
fn without_fec_the_same_loss_is_concealed() {
    let (_, st) = play(&[10], false);
    assert_eq!(st.frames_fec_recovered, 0);
    assert_eq!(st.frames_concealed, 1);
    assert_eq!(st.concealment_events, 1);
}

#[test]
fn a_burst_is_concealed_and_only_its_last_frame_recovered() {
    let (sources, st) = play(&[10, 11, 12], true);
    // 10 and 11 have no packet after them in the buffer: PLC. 12 is followed by 13: FEC.
    assert_eq!(st.frames_concealed, 2);
    assert_eq!(st.frames_fec_recovered, 1);
    assert_eq!(st.concealment_events, 1);
    let first_gap = sources
        .iter()
        .position(|s| *s == FrameSource::Concealed)
        .unwrap();
    assert_eq!(
        &sources[first_gap..first_gap + 3],
        &[
            FrameSource::Concealed,
            FrameSource::Concealed,
            FrameSource::Fec
        ]
    );
    assert_eq!(st.frames_played, 30);
}

#[test]
fn every_tick_yields_exactly_one_frame_of_audio() {
    let dg = datagrams(10, 0);
    let mut rx = receiver();
    let mut out = [1i16; FRAME_SAMPLES];
    let (h, p) = parse(&dg[0]);
    let _ = rx.handle_datagram(tick(0), &h, p);
    let (h, p) = parse(&dg[1]);
    let _ = rx.handle_datagram(tick(0), &h, p);
    let (src, _) = rx.tick(tick(1), &mut out);
    assert_eq!(src, FrameSource::Packet);
    let energy: i64 = out.iter().map(|&s| i64::from(s).abs()).sum();
    assert!(energy > 0);
}
