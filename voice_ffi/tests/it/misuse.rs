//! Misuse of the C ABI returns error codes instead of crashing: NULL handles and pointers, double
//! frees, too-small buffers, bad arguments, and calls after the relay went away.

use std::ffi::CString;
use std::ptr;
use std::time::{Duration, Instant};

use voice_ffi::client::*;
use voice_ffi::processor::*;
use voice_ffi::spatial::*;
use voice_ffi::stream::*;
use voice_ffi::voice_result::{self, *};
use voice_ffi::{voice_abi_version, voice_error_message, VOICE_ABI_VERSION};

#[test]
fn null_pointers_are_errors() {
    unsafe {
        assert_eq!(voice_client_config_default(ptr::null_mut()), VOICE_ERR_NULL);
        assert_eq!(
            voice_client_new(ptr::null(), ptr::null_mut()),
            VOICE_ERR_NULL
        );
        assert_eq!(voice_client_join(ptr::null(), 1), VOICE_ERR_NULL);
        assert_eq!(
            voice_client_send_chat(ptr::null(), b"x".as_ptr(), 1),
            VOICE_ERR_NULL
        );
        let mut got = false;
        let mut ev = std::mem::MaybeUninit::<voice_event>::uninit();
        assert_eq!(
            voice_client_poll_event(ptr::null(), ev.as_mut_ptr(), &mut got),
            VOICE_ERR_NULL
        );
        assert_eq!(voice_client_free(ptr::null_mut()), VOICE_OK);
        assert_eq!(
            voice_encoder_new(ptr::null(), ptr::null_mut()),
            VOICE_ERR_NULL
        );
        let mut rc = std::mem::MaybeUninit::uninit();
        assert_eq!(voice_receiver_config_default(rc.as_mut_ptr()), VOICE_OK);
        let rc: voice_receiver_config = rc.assume_init();
        assert_eq!(voice_receiver_new(&rc, ptr::null_mut()), VOICE_ERR_NULL);
        assert_eq!(
            voice_receiver_new(ptr::null(), ptr::null_mut()),
            VOICE_ERR_NULL
        );
        let mut src = 0u32;
        let mut pcm = [0i16; VOICE_FRAME_SAMPLES];
        assert_eq!(
            voice_receiver_pop(ptr::null_mut(), 0, pcm.as_mut_ptr(), pcm.len(), &mut src),
            VOICE_ERR_NULL
        );
        let mut n = 0usize;
        assert_eq!(
            voice_error_message(0, ptr::null_mut(), 10, &mut n),
            VOICE_ERR_NULL
        );
    }
    assert_eq!(voice_abi_version(), VOICE_ABI_VERSION);
}

#[test]
fn double_free_and_use_after_free_are_detected() {
    unsafe {
        let mut cfg = std::mem::MaybeUninit::uninit();
        assert_eq!(voice_encoder_config_default(cfg.as_mut_ptr()), VOICE_OK);
        let cfg = cfg.assume_init();
        let mut enc = ptr::null_mut();
        assert_eq!(voice_encoder_new(&cfg, &mut enc), VOICE_OK);
        assert_eq!(voice_encoder_free(enc), VOICE_OK);
        assert_eq!(voice_encoder_free(enc), VOICE_ERR_INVALID_HANDLE);
        assert_eq!(voice_encoder_skip_frame(enc), VOICE_ERR_INVALID_HANDLE);
        let mut rc = std::mem::MaybeUninit::uninit();
        voice_receiver_config_default(rc.as_mut_ptr());
        let rc: voice_receiver_config = rc.assume_init();
        let mut rx = ptr::null_mut();
        assert_eq!(voice_receiver_new(&rc, &mut rx), VOICE_OK);
        assert_eq!(voice_receiver_free(rx), VOICE_OK);
        assert_eq!(voice_receiver_free(rx), VOICE_ERR_INVALID_HANDLE);
    }
}

#[test]
fn small_buffers_and_bad_arguments_leave_outputs_untouched() {
    unsafe {
        let mut cfg = std::mem::MaybeUninit::uninit();
        voice_encoder_config_default(cfg.as_mut_ptr());
        let mut cfg: voice_encoder_config = cfg.assume_init();
        cfg.session = 0;
        let mut enc = ptr::null_mut();
        assert_eq!(
            voice_encoder_new(&cfg, &mut enc),
            VOICE_ERR_INVALID_ARGUMENT
        );
        assert!(enc.is_null());
        cfg.session = 3;
        assert_eq!(voice_encoder_new(&cfg, &mut enc), VOICE_OK);
        let pcm = [100i16; VOICE_FRAME_SAMPLES];
        let mut small = [0u8; 4];
        let mut written = 12345usize;
        assert_eq!(
            voice_encoder_encode(
                enc,
                pcm.as_ptr(),
                pcm.len(),
                0,
                false,
                small.as_mut_ptr(),
                4,
                &mut written
            ),
            VOICE_ERR_BUFFER_TOO_SMALL
        );
        assert_eq!(written, 12345);
        assert_eq!(small, [0; 4]);
        let mut buf = [0u8; VOICE_MAX_DATAGRAM];
        assert_eq!(
            voice_encoder_encode(
                enc,
                pcm.as_ptr(),
                10,
                0,
                false,
                buf.as_mut_ptr(),
                buf.len(),
                &mut written
            ),
            VOICE_ERR_INVALID_ARGUMENT
        );
        voice_encoder_free(enc);

        let mut msg = [0 as std::ffi::c_char; 8];
        let mut n = 0usize;
        assert_eq!(
            voice_error_message(VOICE_ERR_NULL as u32, msg.as_mut_ptr(), 8, &mut n),
            VOICE_ERR_BUFFER_TOO_SMALL
        );
        assert_eq!(n, "a required pointer was NULL".len(), "the size it needs");
        assert_eq!(msg[7], 0, "truncated to fit with its NUL");
        let mut big = [0 as std::ffi::c_char; 64];
        assert_eq!(
            voice_error_message(9999, big.as_mut_ptr(), 64, &mut n),
            VOICE_OK
        );

        let mut rc = std::mem::MaybeUninit::uninit();
        voice_receiver_config_default(rc.as_mut_ptr());
        let mut rc: voice_receiver_config = rc.assume_init();
        rc.policy = VOICE_PLAYOUT_FIXED;
        rc.watermark_packets = 99;
        let mut rx = ptr::null_mut();
        assert_eq!(voice_receiver_new(&rc, &mut rx), VOICE_ERR_INVALID_ARGUMENT);
        rc.watermark_packets = 2;
        assert_eq!(voice_receiver_new(&rc, &mut rx), VOICE_OK);
        for junk in [&[][..], &[1u8][..], &[0xFF; 40][..]] {
            assert_eq!(
                voice_receiver_push(rx, 0, junk.as_ptr(), junk.len()),
                VOICE_ERR_MALFORMED
            );
        }
        voice_receiver_free(rx);
    }
}

fn wait_for(client: *const voice_client, kind: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let mut got = false;
        let mut ev = std::mem::MaybeUninit::<voice_event>::uninit();
        let r = unsafe { voice_client_poll_event(client, ev.as_mut_ptr(), &mut got) };
        assert_eq!(r, VOICE_OK);
        if got && unsafe { ev.assume_init() }.kind == kind {
            return true;
        }
        if !got {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    false
}

#[test]
fn calls_after_the_relay_goes_away_return_not_connected() {
    let relay = relay::server::Relay::bind(relay::config::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        stats_interval_ms: 0,
        ..Default::default()
    })
    .unwrap()
    .spawn()
    .unwrap();
    let server = CString::new(relay.local_addr().to_string()).unwrap();
    let fingerprint = CString::new(relay.fingerprint().unwrap().to_string()).unwrap();
    let name = CString::new("ffi-test").unwrap();
    let token = CString::new(relay.token_for("ffi-test").unwrap()).unwrap();
    unsafe {
        let mut cfg = std::mem::MaybeUninit::uninit();
        voice_client_config_default(cfg.as_mut_ptr());
        let mut cfg: voice_client_config = cfg.assume_init();
        cfg.server = server.as_ptr();
        cfg.name = name.as_ptr();
        cfg.tls_fingerprint = fingerprint.as_ptr();
        cfg.access_token = token.as_ptr();
        cfg.audio = VOICE_AUDIO_APP;
        cfg.reconnect = false;
        let mut c = ptr::null_mut();
        assert_eq!(voice_client_new(&cfg, &mut c), VOICE_OK);
        assert!(wait_for(
            c,
            VOICE_EVENT_CHANNEL_JOINED,
            Duration::from_secs(5)
        ));
        assert_eq!(voice_client_send_chat(c, b"hi".as_ptr(), 2), VOICE_OK);
        assert_eq!(
            voice_client_send_chat(c, [0xFFu8, 0xFE].as_ptr(), 2),
            VOICE_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            voice_client_set_user_volume(c, 1, f32::NAN),
            VOICE_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            voice_client_set_transmit_mode(c, 77),
            VOICE_ERR_INVALID_ARGUMENT
        );
        // Positional audio: bad values are refused at the call, good ones accepted.
        let here = voice_position {
            x: 1.0,
            y: 0.0,
            z: -2.0,
        };
        let nan = voice_position {
            x: f32::NAN,
            ..here
        };
        assert_eq!(voice_client_set_position(c, &here), VOICE_OK);
        assert_eq!(
            voice_client_set_position(c, &nan),
            VOICE_ERR_INVALID_ARGUMENT
        );
        assert_eq!(voice_client_set_position(c, ptr::null()), VOICE_OK);
        let up = voice_position {
            x: 0.0,
            y: 1.0,
            z: 0.0,
        };
        let pose = voice_listener_pose {
            position: here,
            forward: voice_position {
                x: 0.0,
                y: 0.0,
                z: -1.0,
            },
            up,
        };
        assert_eq!(voice_client_set_listener(c, &pose), VOICE_OK);
        let parallel = voice_listener_pose {
            forward: up,
            ..pose
        };
        assert_eq!(
            voice_client_set_listener(c, &parallel),
            VOICE_ERR_INVALID_ARGUMENT
        );
        assert_eq!(voice_client_set_listener(c, ptr::null()), VOICE_ERR_NULL);
        let mut att = std::mem::MaybeUninit::uninit();
        assert_eq!(voice_attenuation_default(att.as_mut_ptr()), VOICE_OK);
        let mut att: voice_attenuation = att.assume_init();
        assert_eq!(voice_client_set_channel_attenuation(c, &att), VOICE_OK);
        att.rolloff = -1.0;
        assert_eq!(
            voice_client_set_channel_attenuation(c, &att),
            VOICE_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            voice_client_set_channel_attenuation(c, ptr::null()),
            VOICE_OK
        );
        // App audio works without blocking.
        let pcm = [0i16; 960];
        let mut accepted = 0usize;
        assert_eq!(
            voice_client_push_capture(c, pcm.as_ptr(), pcm.len(), &mut accepted),
            VOICE_OK
        );
        assert_eq!(accepted, 960);
        let mut out = [1i16; 480];
        let mut written = 0usize;
        assert_eq!(
            voice_client_pull_playback(c, out.as_mut_ptr(), out.len(), &mut written),
            VOICE_OK
        );
        let mut stats = std::mem::MaybeUninit::<voice_stats>::uninit();
        assert_eq!(voice_client_stats(c, stats.as_mut_ptr()), VOICE_OK);
        assert_eq!(stats.assume_init().state, 2);
        // Application audio leaves capture processing off (`VOICE_CAPTURE_AUTO`).
        let mut capture = std::mem::MaybeUninit::<voice_capture_stats>::uninit();
        assert_eq!(
            voice_client_capture_stats(c, capture.as_mut_ptr()),
            VOICE_ERR_UNSUPPORTED
        );
        assert_eq!(
            voice_client_capture_stats(c, ptr::null_mut()),
            VOICE_ERR_NULL
        );

        drop(relay);
        assert!(wait_for(
            c,
            VOICE_EVENT_DISCONNECTED,
            Duration::from_secs(5)
        ));
        let r: voice_result = voice_client_send_chat(c, b"hi".as_ptr(), 2);
        assert_eq!(r, VOICE_ERR_NOT_CONNECTED);
        assert_eq!(voice_client_leave(c), VOICE_ERR_NOT_CONNECTED);
        assert_eq!(voice_client_request_channels(c), VOICE_ERR_NOT_CONNECTED);
        assert_eq!(voice_client_free(c), VOICE_OK);
        assert_eq!(voice_client_free(c), VOICE_ERR_INVALID_HANDLE);
        assert_eq!(voice_client_join(c, 1), VOICE_ERR_INVALID_HANDLE);
    }
}

#[test]
fn devices_mode_without_a_sound_card_falls_back_with_a_notice() {
    let server = CString::new("127.0.0.1:9").unwrap();
    let name = CString::new("nodev").unwrap();
    unsafe {
        let mut cfg = std::mem::MaybeUninit::uninit();
        voice_client_config_default(cfg.as_mut_ptr());
        let mut cfg: voice_client_config = cfg.assume_init();
        cfg.server = server.as_ptr();
        cfg.name = name.as_ptr();
        cfg.audio = VOICE_AUDIO_DEVICES;
        let mut c = ptr::null_mut();
        assert_eq!(voice_client_new(&cfg, &mut c), VOICE_OK);
        let (inputs, outputs) = ::voice_client::audio::device_names();
        if inputs.is_empty() || outputs.is_empty() {
            assert!(
                wait_for(c, VOICE_EVENT_AUDIO_NOTICE, Duration::from_secs(2)),
                "a machine without a sound card gets an audio notice"
            );
        }
        // Pulling playback is only for app-owned audio.
        let mut out = [0i16; 16];
        let mut written = 0usize;
        assert_eq!(
            voice_client_pull_playback(c, out.as_mut_ptr(), out.len(), &mut written),
            VOICE_ERR_UNSUPPORTED
        );
        assert_eq!(voice_client_free(c), VOICE_OK);
    }
}

#[test]
fn a_processor_with_a_bad_background_voice_margin_is_refused() {
    unsafe {
        let mut cfg = std::mem::MaybeUninit::uninit();
        assert_eq!(voice_processor_config_default(cfg.as_mut_ptr()), VOICE_OK);
        let mut cfg: voice_processor_config = cfg.assume_init();
        assert_eq!(cfg.background_voice_margin_db, 6.0);
        for bad in [-1.0, 40.5, f32::NAN, f32::INFINITY] {
            cfg.background_voice_margin_db = bad;
            let mut p = ptr::null_mut();
            assert_eq!(
                voice_processor_new(&cfg, &mut p),
                VOICE_ERR_INVALID_ARGUMENT,
                "{bad}"
            );
            assert!(p.is_null());
        }
        // 0 is the gate turned off, 40 the widest margin.
        for good in [0.0, 40.0] {
            cfg.background_voice_margin_db = good;
            let mut p = ptr::null_mut();
            assert_eq!(voice_processor_new(&cfg, &mut p), VOICE_OK);
            assert_eq!(voice_processor_free(p), VOICE_OK);
        }
    }
}
