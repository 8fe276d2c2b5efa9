//! The committed `include/voice.h` must equal a fresh generation by the pinned cbindgen, and
//! carries every stream metric the core keeps.
//! Regenerate with `UPDATE_HEADER=1 cargo test -p voice_ffi --test header`.

use std::path::Path;

#[test]
fn committed_header_is_current() {
    let crate_dir = env!("CARGO_MANIFEST_DIR");
    let config = cbindgen::Config::from_file(Path::new(crate_dir).join("cbindgen.toml"))
        .expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("header generation");
    let mut fresh = Vec::new();
    bindings.write(&mut fresh);
    let path = Path::new(crate_dir).join("../include/voice.h");
    if std::env::var_os("UPDATE_HEADER").is_some() {
        std::fs::write(&path, &fresh).expect("write header");
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "include/voice.h is stale: run `UPDATE_HEADER=1 cargo test -p voice_ffi --test header` \
         and commit the result"
    );
}

/// The field names of `typedef struct NAME { ... } NAME;` in the committed header.
fn header_fields(name: &str) -> Vec<String> {
    let header =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../include/voice.h"))
            .expect("include/voice.h");
    let start = format!("typedef struct {name} {{");
    let body = header
        .split_once(&start)
        .and_then(|(_, rest)| rest.split_once(&format!("}} {name};")))
        .unwrap_or_else(|| panic!("no struct {name} in the header"))
        .0;
    body.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//") && l.ends_with(';'))
        .map(|l| {
            let decl = l.trim_end_matches(';');
            decl.rsplit(' ').next().unwrap_or(decl).to_string()
        })
        .collect()
}

#[test]
fn voice_stream_stats_carries_every_stream_metric_of_the_core() {
    let core = serde_json::to_value(voice_core::metrics::StreamStats::default()).unwrap();
    let mut want: Vec<String> = core
        .as_object()
        .unwrap()
        .keys()
        // Needs the send time: known only in simulation.
        .filter(|k| *k != "mean_end_to_end_delay_ms")
        .cloned()
        .chain([
            "datagrams_malformed".into(),
            "datagrams_wrong_sender".into(),
        ])
        .collect();
    want.sort();
    let mut have = header_fields("voice_stream_stats");
    have.sort();
    assert_eq!(
        have, want,
        "voice_stream_stats and StreamStats differ: add the field to both"
    );
    assert_eq!(
        header_fields("voice_remote_stats"),
        ["session", "speaking", "stream"],
        "a remote's stream metrics are one voice_stream_stats"
    );
}
