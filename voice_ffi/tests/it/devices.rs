//! Switching audio through the C ABI while connected (issue 19): `voice_client_set_input_*` and
//! `voice_client_set_output_*` against a live relay (TLS, access tokens, loopback). A device that
//! does not exist is `VOICE_ERR_AUDIO` with a `VOICE_EVENT_AUDIO_NOTICE`, the session stays; a
//! WAV file replaces the input, a new recording the output (the old one is finalised); NULL and
//! bad handles, names that are not UTF-8 and clients whose game owns the audio get error codes.

use std::ffi::{c_char, CString};
use std::path::{Path, PathBuf};
use std::ptr;
use std::time::{Duration, Instant};

use voice_ffi::client::*;
use voice_ffi::devices::*;
use voice_ffi::stream::*;
use voice_ffi::voice_result::*;

/// Every event that arrives within `wait`.
fn events_for(client: *const voice_client, wait: Duration) -> Vec<voice_event> {
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    while Instant::now() < deadline {
        let mut got = false;
        let mut ev = std::mem::MaybeUninit::<voice_event>::uninit();
        assert_eq!(
            unsafe { voice_client_poll_event(client, ev.as_mut_ptr(), &mut got) },
            VOICE_OK
        );
        if got {
            out.push(unsafe { ev.assume_init() });
        } else {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    out
}

fn text(e: &voice_event) -> String {
    let bytes: Vec<u8> = e.text[..e.text_len].iter().map(|&c| c as u8).collect();
    String::from_utf8(bytes).unwrap()
}

fn start_relay() -> relay::RelayHandle {
    relay::server::Relay::bind(relay::config::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        stats_interval_ms: 0,
        ..Default::default()
    })
    .unwrap()
    .spawn()
    .unwrap()
}

/// A 48 kHz mono 16-bit WAV file of a 440 Hz tone.
fn write_tone(path: &Path, secs: f64) {
    let n = (secs * 48_000.0) as u32;
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + 2 * n).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes()); // PCM
    b.extend_from_slice(&1u16.to_le_bytes()); // mono
    b.extend_from_slice(&48_000u32.to_le_bytes());
    b.extend_from_slice(&96_000u32.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&(2 * n).to_le_bytes());
    for i in 0..n {
        let s = (f64::from(i) * std::f64::consts::TAU * 440.0 / 48_000.0).sin() * 12_000.0;
        b.extend_from_slice(&(s as i16).to_le_bytes());
    }
    std::fs::write(path, b).unwrap();
}

/// The sample count of a finalised WAV file written by the engine (its RIFF and data sizes are
/// only filled in when the recording is finalised).
fn finalised_samples(path: &Path) -> u32 {
    let b = std::fs::read(path).unwrap();
    let riff = u32::from_le_bytes(b[4..8].try_into().unwrap()) as usize;
    assert_eq!(riff + 8, b.len(), "{} is not finalised", path.display());
    let data = u32::from_le_bytes(b[40..44].try_into().unwrap());
    data / 2
}

fn tmp() -> PathBuf {
    let d = std::env::temp_dir().join(format!("ffi_devices_{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn cstr(p: &Path) -> CString {
    CString::new(p.to_str().unwrap()).unwrap()
}

#[test]
fn null_and_bad_handles_are_error_codes() {
    let name = CString::new("x").unwrap();
    unsafe {
        assert_eq!(
            voice_client_set_input_device(ptr::null(), ptr::null()),
            VOICE_ERR_NULL
        );
        assert_eq!(
            voice_client_set_output_device(ptr::null(), name.as_ptr()),
            VOICE_ERR_NULL
        );
        assert_eq!(
            voice_client_set_input_wav(ptr::null(), name.as_ptr(), false),
            VOICE_ERR_NULL
        );
        assert_eq!(
            voice_client_set_output_wav(ptr::null(), name.as_ptr()),
            VOICE_ERR_NULL
        );
        // A handle of another kind.
        let mut cfg = std::mem::MaybeUninit::uninit();
        assert_eq!(voice_encoder_config_default(cfg.as_mut_ptr()), VOICE_OK);
        let cfg = cfg.assume_init();
        let mut enc = ptr::null_mut();
        assert_eq!(voice_encoder_new(&cfg, &mut enc), VOICE_OK);
        assert_eq!(
            voice_client_set_input_device(enc.cast(), ptr::null()),
            VOICE_ERR_INVALID_HANDLE
        );
        assert_eq!(
            voice_client_set_output_wav(enc.cast(), name.as_ptr()),
            VOICE_ERR_INVALID_HANDLE
        );
        assert_eq!(voice_encoder_free(enc), VOICE_OK);
    }
}

#[test]
fn devices_and_files_switch_while_connected_and_failures_keep_the_old_stream() {
    let relay = start_relay();
    let d = tmp();
    write_tone(&d.join("tone.wav"), 1.0);
    let (rec1, rec2) = (d.join("rec1.wav"), d.join("rec2.wav"));
    let strings = [
        CString::new(relay.local_addr().to_string()).unwrap(),
        CString::new("carl").unwrap(),
        CString::new(relay.fingerprint().unwrap().to_string()).unwrap(),
        CString::new(relay.token_for("carl").unwrap()).unwrap(),
        cstr(&rec1),
    ];
    let c = unsafe {
        let mut cfg = std::mem::MaybeUninit::uninit();
        assert_eq!(voice_client_config_default(cfg.as_mut_ptr()), VOICE_OK);
        let mut cfg: voice_client_config = cfg.assume_init();
        cfg.server = strings[0].as_ptr();
        cfg.name = strings[1].as_ptr();
        cfg.tls_fingerprint = strings[2].as_ptr();
        cfg.access_token = strings[3].as_ptr();
        cfg.audio = VOICE_AUDIO_FILES;
        cfg.output_wav = strings[4].as_ptr();
        // Capture processing on the file input too (it is off with files by default).
        cfg.capture_mode = VOICE_CAPTURE_ON;
        let mut c = ptr::null_mut();
        assert_eq!(voice_client_new(&cfg, &mut c), VOICE_OK);
        c
    };
    let start = events_for(c, Duration::from_secs(2));
    let connected: Vec<&voice_event> = start
        .iter()
        .filter(|e| e.kind == VOICE_EVENT_CONNECTED)
        .collect();
    assert_eq!(connected.len(), 1, "connected once");
    let session = connected[0].session;
    assert!(start.iter().any(|e| e.kind == VOICE_EVENT_CHANNEL_JOINED));

    let missing = CString::new("no such device 7f3a").unwrap();
    let not_utf8 = [0xFFu8 as c_char, 0xFEu8 as c_char, 0];
    unsafe {
        // A device that does not exist (or no sound card at all): refused, reported.
        assert_eq!(
            voice_client_set_input_device(c, missing.as_ptr()),
            VOICE_ERR_AUDIO
        );
        assert_eq!(
            voice_client_set_output_device(c, missing.as_ptr()),
            VOICE_ERR_AUDIO
        );
        assert_eq!(
            voice_client_set_input_device(c, not_utf8.as_ptr()),
            VOICE_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            voice_client_set_input_wav(c, ptr::null(), true),
            VOICE_ERR_NULL
        );
        assert_eq!(voice_client_set_output_wav(c, ptr::null()), VOICE_ERR_NULL);
        let nowhere = cstr(&d.join("no-such-dir").join("x.wav"));
        assert_eq!(
            voice_client_set_input_wav(c, nowhere.as_ptr(), false),
            VOICE_ERR_AUDIO
        );
        assert_eq!(
            voice_client_set_output_wav(c, nowhere.as_ptr()),
            VOICE_ERR_AUDIO
        );
        // Files: the input becomes the tone, the recording moves on (the first is finalised).
        let tone = cstr(&d.join("tone.wav"));
        assert_eq!(voice_client_set_input_wav(c, tone.as_ptr(), true), VOICE_OK);
    }
    std::thread::sleep(Duration::from_millis(300));
    let second = cstr(&rec2);
    assert_eq!(
        unsafe { voice_client_set_output_wav(c, second.as_ptr()) },
        VOICE_OK
    );
    // Recorded since the start (about 2.3 s, 110 000 samples): the failed switches kept it.
    let first = finalised_samples(&rec1);
    assert!(first > 48_000, "the first recording holds {first} samples");
    let after = events_for(c, Duration::from_millis(500));
    let notices: Vec<String> = after
        .iter()
        .filter(|e| e.kind == VOICE_EVENT_AUDIO_NOTICE)
        .map(text)
        .collect();
    assert!(
        notices.iter().any(|t| t.contains("no such device 7f3a")),
        "{notices:?}"
    );
    assert!(
        notices.iter().any(|t| t.contains("no-such-dir")),
        "{notices:?}"
    );
    for e in &after {
        assert!(
            ![VOICE_EVENT_CONNECTED, VOICE_EVENT_DISCONNECTED].contains(&e.kind),
            "the session must stay: event kind {}",
            e.kind
        );
    }
    let mut stats = std::mem::MaybeUninit::<voice_stats>::uninit();
    assert_eq!(
        unsafe { voice_client_stats(c, stats.as_mut_ptr()) },
        VOICE_OK
    );
    let stats = unsafe { stats.assume_init() };
    assert_eq!(stats.session, session, "the same session");
    // The capture chain ran on the tone's frames (about 0.8 s; before it there was no input).
    // Nobody else talks: the canceller has heard no far end, so
    // it has no echo estimate.
    let mut capture = std::mem::MaybeUninit::<voice_ffi::processor::voice_capture_stats>::uninit();
    assert_eq!(
        unsafe { voice_client_capture_stats(c, capture.as_mut_ptr()) },
        VOICE_OK
    );
    let capture = unsafe { capture.assume_init() };
    assert!(capture.frames >= 20, "{capture:?}");
    assert!(capture.erle_db.is_nan(), "{capture:?}");
    assert_eq!(capture.echo_delay_ms, -1, "{capture:?}");
    assert_eq!(unsafe { voice_client_free(c) }, VOICE_OK);
    let second = finalised_samples(&rec2);
    assert!(
        second > 12_000,
        "the second recording holds {second} samples"
    );
    assert_eq!(
        unsafe { voice_client_set_input_device(c, ptr::null()) },
        VOICE_ERR_INVALID_HANDLE
    );

    // The game owns the audio: nothing to switch.
    let app = [
        CString::new(relay.local_addr().to_string()).unwrap(),
        CString::new("dana").unwrap(),
    ];
    unsafe {
        let mut cfg = std::mem::MaybeUninit::uninit();
        assert_eq!(voice_client_config_default(cfg.as_mut_ptr()), VOICE_OK);
        let mut cfg: voice_client_config = cfg.assume_init();
        cfg.server = app[0].as_ptr();
        cfg.name = app[1].as_ptr();
        cfg.audio = VOICE_AUDIO_APP;
        cfg.reconnect = false;
        let mut a = ptr::null_mut();
        assert_eq!(voice_client_new(&cfg, &mut a), VOICE_OK);
        assert_eq!(
            voice_client_set_input_device(a, ptr::null()),
            VOICE_ERR_UNSUPPORTED
        );
        assert_eq!(
            voice_client_set_output_wav(a, second_path(&d).as_ptr()),
            VOICE_ERR_UNSUPPORTED
        );
        assert_eq!(voice_client_free(a), VOICE_OK);
    }
    std::fs::remove_dir_all(&d).ok();
}

fn second_path(d: &Path) -> CString {
    cstr(&d.join("never.wav"))
}
