//! The adaptive target grows when jitter rises and shrinks back after it falls (forgetting).
use std::time::Duration;

use voice_core::jitter::{AdaptivePolicy, PlayoutPolicy};
use voice_core::Time;
use voice_sim::network::NetworkProfile;

/// Feeds `seconds` of a built-in profile's arrivals, starting at packet `from`; returns the next.
fn feed(p: &mut AdaptivePolicy, profile: &str, from: u64, seconds: u64, seed: u64) -> u64 {
    let n = seconds * 50;
    let trace = NetworkProfile::builtin(profile)
        .unwrap()
        .generate(n as usize, seed);
    let mut arrivals: Vec<(f64, u64)> = trace
        .rows
        .iter()
        .filter_map(|r| {
            let offset = r.arrival_ms? - r.send_ms;
            Some((
                20.0 * (from + u64::from(r.seq)) as f64 + offset,
                from + u64::from(r.seq),
            ))
        })
        .collect();
    arrivals.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (at, seq) in arrivals {
        p.on_arrival(Time::from_millis_f64(at), seq, seq * 960);
    }
    from + n
}

#[test]
fn target_grows_under_jitter_and_shrinks_back_after() {
    let mut p = AdaptivePolicy::default();
    let mut next = feed(&mut p, "clean", 0, 10, 1);
    let calm = p.target_delay();
    assert!(calm <= Duration::from_millis(15), "calm target {calm:?}");
    next = feed(&mut p, "jitter20", next, 10, 2);
    let jittery = p.target_delay();
    assert!(
        jittery >= calm + Duration::from_millis(50),
        "σ = 20 ms must raise the target: {calm:?} → {jittery:?}"
    );
    // 15 s: the floor (fastest packet) is the minimum over a 10 s window.
    feed(&mut p, "clean", next, 15, 3);
    let after = p.target_delay();
    assert!(
        after <= calm + Duration::from_millis(10),
        "the target must come back down: {jittery:?} → {after:?}"
    );
}
