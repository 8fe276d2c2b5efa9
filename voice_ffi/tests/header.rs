//! The committed `include/voice.h` must equal a fresh generation by the pinned cbindgen.
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
