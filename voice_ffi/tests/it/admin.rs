//! Kick and ban through the C ABI against a live relay (TLS, access tokens, loopback): an admin's
//! `voice_client_kick` / `voice_client_ban` reach the relay, the target gets
//! `VOICE_EVENT_REMOVED` (who, why, how long) and is not reconnected even with `reconnect` set,
//! the admin gets `VOICE_EVENT_USER_REMOVED`; a non-admin's kick comes back as
//! `VOICE_EVENT_ERROR` with the `Forbidden` code. NULL and bad handles, session 0, a reason that
//! is not UTF-8 and calls before the connection is up return error codes.

use std::ffi::{c_char, CString};
use std::ptr;
use std::time::{Duration, Instant};

use relay::token::Claims;
use voice_core::proto::tcp::ErrorCode;
use voice_ffi::admin::*;
use voice_ffi::client::*;
use voice_ffi::stream::*;
use voice_ffi::voice_result::*;

/// Polls `client` until an event of `kind` arrives (others are skipped); `None` on timeout.
fn wait_for(client: *const voice_client, kind: u32, timeout: Duration) -> Option<voice_event> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let mut got = false;
        let mut ev = std::mem::MaybeUninit::<voice_event>::uninit();
        let r = unsafe { voice_client_poll_event(client, ev.as_mut_ptr(), &mut got) };
        assert_eq!(r, VOICE_OK);
        if got {
            let ev = unsafe { ev.assume_init() };
            if ev.kind == kind {
                return Some(ev);
            }
        } else {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    None
}

fn text(buf: &[c_char], len: usize) -> String {
    let bytes: Vec<u8> = buf[..len].iter().map(|&c| c as u8).collect();
    String::from_utf8(bytes).unwrap()
}

/// A started C client named `name` presenting `token`, with app-owned audio.
struct CClient {
    ptr: *mut voice_client,
    _strings: Vec<CString>,
}

impl CClient {
    fn start(relay: &relay::RelayHandle, name: &str, token: &str, reconnect: bool) -> CClient {
        let strings = vec![
            CString::new(relay.local_addr().to_string()).unwrap(),
            CString::new(name).unwrap(),
            CString::new(relay.fingerprint().unwrap().to_string()).unwrap(),
            CString::new(token).unwrap(),
        ];
        unsafe {
            let mut cfg = std::mem::MaybeUninit::uninit();
            assert_eq!(voice_client_config_default(cfg.as_mut_ptr()), VOICE_OK);
            let mut cfg: voice_client_config = cfg.assume_init();
            cfg.server = strings[0].as_ptr();
            cfg.name = strings[1].as_ptr();
            cfg.tls_fingerprint = strings[2].as_ptr();
            cfg.access_token = strings[3].as_ptr();
            cfg.audio = VOICE_AUDIO_APP;
            cfg.reconnect = reconnect;
            let mut c = ptr::null_mut();
            assert_eq!(voice_client_new(&cfg, &mut c), VOICE_OK);
            CClient {
                ptr: c,
                _strings: strings,
            }
        }
    }

    /// Waits until joined and returns our session.
    fn joined(&self) -> u32 {
        let ev =
            wait_for(self.ptr, VOICE_EVENT_CONNECTED, Duration::from_secs(5)).expect("connected");
        assert!(wait_for(self.ptr, VOICE_EVENT_CHANNEL_JOINED, Duration::from_secs(5)).is_some());
        ev.session
    }
}

impl Drop for CClient {
    fn drop(&mut self) {
        assert_eq!(unsafe { voice_client_free(self.ptr) }, VOICE_OK);
    }
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

fn admin_token(relay: &relay::RelayHandle, name: &str) -> String {
    relay
        .mint_token(&Claims {
            admin: true,
            ..Claims::for_name(name, relay.audience(), 3600)
        })
        .unwrap()
}

#[test]
fn null_and_bad_handles_and_bad_arguments_are_error_codes() {
    let reason = CString::new("spam").unwrap();
    unsafe {
        assert_eq!(
            voice_client_kick(ptr::null(), 1, reason.as_ptr()),
            VOICE_ERR_NULL
        );
        assert_eq!(
            voice_client_ban(ptr::null(), 1, ptr::null(), 60),
            VOICE_ERR_NULL
        );
        // A handle of another kind.
        let mut cfg = std::mem::MaybeUninit::uninit();
        assert_eq!(voice_encoder_config_default(cfg.as_mut_ptr()), VOICE_OK);
        let cfg = cfg.assume_init();
        let mut enc = ptr::null_mut();
        assert_eq!(voice_encoder_new(&cfg, &mut enc), VOICE_OK);
        assert_eq!(
            voice_client_kick(enc.cast(), 1, ptr::null()),
            VOICE_ERR_INVALID_HANDLE
        );
        assert_eq!(
            voice_client_ban(enc.cast(), 1, ptr::null(), 0),
            VOICE_ERR_INVALID_HANDLE
        );
        assert_eq!(voice_encoder_free(enc), VOICE_OK);
    }
    // A client that cannot be connected yet (nothing listens on port 9).
    let relay_less = CString::new("127.0.0.1:9").unwrap();
    let name = CString::new("lonely").unwrap();
    unsafe {
        let mut cfg = std::mem::MaybeUninit::uninit();
        voice_client_config_default(cfg.as_mut_ptr());
        let mut cfg: voice_client_config = cfg.assume_init();
        cfg.server = relay_less.as_ptr();
        cfg.name = name.as_ptr();
        cfg.audio = VOICE_AUDIO_NULL;
        cfg.reconnect = false;
        let mut c = ptr::null_mut();
        assert_eq!(voice_client_new(&cfg, &mut c), VOICE_OK);
        assert_eq!(
            voice_client_kick(c, 0, reason.as_ptr()),
            VOICE_ERR_INVALID_ARGUMENT
        );
        let not_utf8 = [0xFFu8 as c_char, 0xFEu8 as c_char, 0];
        assert_eq!(
            voice_client_ban(c, 2, not_utf8.as_ptr(), 0),
            VOICE_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            voice_client_kick(c, 2, reason.as_ptr()),
            VOICE_ERR_NOT_CONNECTED
        );
        assert_eq!(
            voice_client_ban(c, 2, ptr::null(), 60),
            VOICE_ERR_NOT_CONNECTED
        );
        assert_eq!(voice_client_free(c), VOICE_OK);
        assert_eq!(
            voice_client_kick(c, 2, ptr::null()),
            VOICE_ERR_INVALID_HANDLE
        );
    }
}

#[test]
fn an_admin_kicks_and_bans_through_the_c_abi_and_the_targets_are_told() {
    let relay = start_relay();
    let admin = CClient::start(&relay, "mod", &admin_token(&relay, "mod"), false);
    let _admin_session = admin.joined();
    // `reconnect` on: a removed client still does not come back by itself.
    let troll = CClient::start(&relay, "troll", &relay.token_for("troll").unwrap(), true);
    let troll_session = troll.joined();
    let spammer = CClient::start(
        &relay,
        "spammer",
        &relay.token_for("spammer").unwrap(),
        true,
    );
    let spammer_session = spammer.joined();

    // A non-admin's kick: the relay refuses it, nothing happens to the target.
    let reason = CString::new("no reason").unwrap();
    unsafe {
        assert_eq!(
            voice_client_kick(troll.ptr, spammer_session, reason.as_ptr()),
            VOICE_OK
        );
    }
    let err = wait_for(troll.ptr, VOICE_EVENT_ERROR, Duration::from_secs(5)).expect("refusal");
    assert_eq!(err.code, ErrorCode::Forbidden as u32);

    // The admin kicks the troll.
    let reason = CString::new("spam").unwrap();
    unsafe {
        assert_eq!(
            voice_client_kick(admin.ptr, troll_session, reason.as_ptr()),
            VOICE_OK
        );
    }
    let done = wait_for(admin.ptr, VOICE_EVENT_USER_REMOVED, Duration::from_secs(5))
        .expect("the admin is told");
    assert_eq!(done.session, troll_session);
    assert_eq!(text(&done.name, done.name_len), "troll");
    assert_eq!(done.value, 0.0);
    let removed = wait_for(troll.ptr, VOICE_EVENT_REMOVED, Duration::from_secs(5))
        .expect("the target is told");
    assert_eq!(removed.code, VOICE_REMOVAL_KICKED);
    assert_eq!(text(&removed.name, removed.name_len), "mod");
    assert_eq!(text(&removed.text, removed.text_len), "spam");
    let gone = wait_for(troll.ptr, VOICE_EVENT_DISCONNECTED, Duration::from_secs(5))
        .expect("the connection closes");
    assert_eq!(gone.code, VOICE_DISCONNECT_REMOVED);
    assert_eq!(gone.value, f64::from(VOICE_REMOVAL_KICKED));
    // No reconnect: no new CONNECTED within a second (the backoff would start at 250 ms).
    assert!(wait_for(troll.ptr, VOICE_EVENT_CONNECTED, Duration::from_secs(1)).is_none());

    // The admin bans the spammer for ten minutes (reason NULL: none).
    unsafe {
        assert_eq!(
            voice_client_ban(admin.ptr, spammer_session, ptr::null(), 600),
            VOICE_OK
        );
    }
    let removed = wait_for(spammer.ptr, VOICE_EVENT_REMOVED, Duration::from_secs(5))
        .expect("the banned user is told");
    assert_eq!(removed.code, VOICE_REMOVAL_BANNED);
    assert_eq!(removed.value, 600.0);
    assert_eq!(removed.text_len, 0);
    let done = wait_for(admin.ptr, VOICE_EVENT_USER_REMOVED, Duration::from_secs(5))
        .expect("the admin is told");
    assert_eq!((done.session, done.value), (spammer_session, 600.0));
    // Banned: a new client of the same user is refused at Hello.
    let again = CClient::start(
        &relay,
        "spammer",
        &relay.token_for("spammer").unwrap(),
        false,
    );
    let err = wait_for(again.ptr, VOICE_EVENT_ERROR, Duration::from_secs(5)).expect("refused");
    assert_eq!(err.code, ErrorCode::Banned as u32);
}
