//! Access tokens on a live relay (TLS, real sockets): every bad token of issue 13 is refused
//! with `Error{Unauthorized}` and a closed connection, counted by reason, while an honest pair
//! in the same relay keeps talking. A token for other channels is admitted but its `JoinChannel`
//! outside the list is `Error{Forbidden}`. Open mode admits a `Hello` without a token.

use crate::common;

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::*;
use relay::token::{ChannelScope, Claims, SigningKey, WhisperScope};
use voice_core::proto::tcp::{
    AccessToken, ClientMessage, ErrorCode, ServerMessage, CONTROL_VERSION,
};

fn delta(before: &HashMap<String, u64>, after: &HashMap<String, u64>, k: &str) -> u64 {
    after[k] - before[k]
}

/// Sends a `Hello` with `token` on a fresh connection; expects `Error{code}` and a close.
fn refused(addr: std::net::SocketAddr, token: Option<String>, code: ErrorCode) -> String {
    let mut c = Control::connect(addr);
    c.send(&ClientMessage::Hello {
        version: CONTROL_VERSION,
        name: "intruder".into(),
        token: token.map(AccessToken),
    });
    let message = match c.recv() {
        ServerMessage::Error { code: got, message } => {
            assert_eq!(got, code, "{message}");
            message
        }
        other => panic!("expected Error, got {other:?}"),
    };
    assert!(c.closed_within(WAIT));
    message
}

/// The honest pair still hears each other.
fn still_talking(g: &mut [Client]) {
    let d = g[0].talk(b"still here");
    g[1].expect_udp(&d);
}

#[test]
fn every_bad_token_is_refused_by_reason_and_honest_clients_are_unaffected() {
    let relay = start(|_| {});
    let addr = relay.local_addr();
    let mut g = group(addr, 1, &["alice", "bob"]);
    let before = g[0].stats();
    let now = relay::token::now_secs();
    let claims = Claims::for_name("mallory", relay.audience(), 3600);
    let mint = |c: &Claims| relay.mint_token(c).unwrap();

    // No token at all.
    refused(addr, None, ErrorCode::Unauthorized);
    // Expired (beyond the 30 s leeway) and not yet valid.
    let expired = Claims {
        exp: now - 3600,
        nbf: now - 7200,
        ..claims.clone()
    };
    let text = refused(addr, Some(mint(&expired)), ErrorCode::Unauthorized);
    assert!(text.contains("expired"), "{text}");
    let early = Claims {
        nbf: now + 3600,
        ..claims.clone()
    };
    refused(addr, Some(mint(&early)), ErrorCode::Unauthorized);
    // A wrong signature: our kid and claims, another key's signature.
    let good = mint(&claims);
    let other = SigningKey::generate().unwrap();
    let theirs = other.mint(&claims).unwrap();
    let mut parts: Vec<&str> = good.split('.').collect();
    parts[2] = theirs.split('.').nth(2).unwrap();
    let forged = parts.join(".");
    let text = refused(addr, Some(forged.clone()), ErrorCode::Unauthorized);
    assert!(text.contains("signature"), "{text}");
    assert!(!text.contains(&forged), "the reply repeats the token");
    // Claims changed under a valid signature (admin: true).
    let admin_body = URL_SAFE_NO_PAD.encode(
        serde_json::to_vec(&Claims {
            admin: true,
            ..claims.clone()
        })
        .unwrap(),
    );
    let mut parts: Vec<&str> = good.split('.').collect();
    parts[1] = &admin_body;
    refused(addr, Some(parts.join(".")), ErrorCode::Unauthorized);
    // alg: none, no signature.
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap())
    );
    let text = refused(addr, Some(none), ErrorCode::Unauthorized);
    assert!(text.contains("EdDSA"), "{text}");
    // Another relay's audience.
    let wrong_aud = Claims {
        aud: "another-relay".into(),
        ..claims.clone()
    };
    let text = refused(addr, Some(mint(&wrong_aud)), ErrorCode::Unauthorized);
    assert!(text.contains("audience"), "{text}");
    // A key the relay does not know.
    let text = refused(addr, Some(theirs), ErrorCode::Unauthorized);
    assert!(text.contains("unknown key"), "{text}");
    // Garbage and an oversized token.
    refused(addr, Some("garbage".into()), ErrorCode::Unauthorized);
    refused(addr, Some("x".repeat(5000)), ErrorCode::Unauthorized);

    still_talking(&mut g);
    let after = g[0].stats();
    assert_eq!(delta(&before, &after, "token_missing"), 1);
    assert_eq!(delta(&before, &after, "token_expired"), 2);
    assert_eq!(delta(&before, &after, "token_bad_signature"), 2);
    assert_eq!(delta(&before, &after, "token_wrong_audience"), 1);
    assert_eq!(delta(&before, &after, "token_unknown_key"), 1);
    assert_eq!(delta(&before, &after, "token_malformed"), 3);
    assert_eq!(delta(&before, &after, "handshake_rejected"), 10);
    assert_eq!(delta(&before, &after, "sessions_total"), 0);
    assert_eq!(after["sessions"], 2);
}

#[test]
fn a_token_for_other_channels_cannot_join_this_one_and_its_name_wins() {
    let relay = start(|_| {});
    let addr = relay.local_addr();
    let mut g = group(addr, 1, &["alice", "bob"]);
    let claims = Claims {
        channels: ChannelScope::List(vec![2]),
        ..Claims::for_name("carol", relay.audience(), 3600)
    };
    // The client asks for another name; the relay uses the token's.
    let mut c = Client::connect_with(addr, "not-carol", relay.mint_token(&claims));
    assert_eq!(c.name, "not-carol");
    c.send(&ClientMessage::JoinChannel {
        channel: voice_core::proto::ChannelId(1),
    });
    match c.recv() {
        ServerMessage::Error { code, .. } => assert_eq!(code, ErrorCode::Forbidden),
        other => panic!("expected Forbidden, got {other:?}"),
    }
    // Nobody in channel 1 heard of carol; carol's own channel works.
    g[0].ctl.expect_silence();
    let joined = c.join(2);
    assert_eq!(joined.users.len(), 1);
    assert_eq!(joined.users[0].name, "carol");
    still_talking(&mut g);
    assert_eq!(g[0].stats()["forbidden"], 1);
}

#[test]
fn a_relay_with_configured_keys_accepts_their_tokens_only() {
    let backend = SigningKey::generate().unwrap();
    let relay = start(|c| {
        c.token_keys = vec![backend.public().to_owned()];
        c.token_audience = "game-eu-1".into();
    });
    let addr = relay.local_addr();
    // The relay has no key of its own to mint with.
    assert!(relay.token_for("x").is_none());
    let t = backend
        .mint(&Claims::for_name("dave", "game-eu-1", 60))
        .unwrap();
    let mut dave = Client::connect_with(addr, "dave", Some(t));
    dave.join(1);
    let wrong = backend
        .mint(&Claims::for_name("dave", "voice-relay", 60))
        .unwrap();
    refused(addr, Some(wrong), ErrorCode::Unauthorized);
    assert_eq!(dave.stats()["token_wrong_audience"], 1);
}

#[test]
fn open_mode_admits_a_hello_without_a_token() {
    let relay = start(|c| c.open = true);
    assert!(relay.token_for("x").is_none());
    let mut g = group(relay.local_addr(), 1, &["eve", "frank"]);
    assert_eq!(g[0].name, "eve");
    still_talking(&mut g);
}

#[test]
fn whispers_stay_within_the_token_scope_and_honest_whispers_pass() {
    let relay = start(|_| {});
    let addr = relay.local_addr();
    let with = |name: &str, whisper: WhisperScope| {
        let claims = Claims {
            whisper,
            ..Claims::for_name(name, relay.audience(), 3600)
        };
        Client::connect_with(addr, name, relay.mint_token(&claims))
    };
    let mut mute = with("mute", WhisperScope::None);
    let mut local = with("local", WhisperScope::Channel);
    let mut loud = with("loud", WhisperScope::Any);
    let mut near = with("near", WhisperScope::None);
    let mut far = with("far", WhisperScope::None);
    for c in [&mut mute, &mut local, &mut loud, &mut near] {
        c.join(1);
    }
    far.join(2);
    let before = near.stats();
    let whisper = |c: &mut Client, to, payload: &[u8]| {
        let d = c.voice(to, payload);
        c.send_udp(&d);
        d
    };
    // Scope none: not even to a channel mate.
    whisper(&mut mute, near.session, b"psst");
    // Scope channel: a channel mate yes, another channel no.
    let ok = whisper(&mut local, near.session, b"to near");
    whisper(&mut local, far.session, b"to far");
    // Scope any: across channels.
    let across = whisper(&mut loud, far.session, b"across");
    near.expect_udp(&ok);
    far.expect_udp(&across);
    near.expect_no_udp();
    far.expect_no_udp();
    let after = near.stats();
    assert_eq!(delta(&before, &after, "drop_whisper_forbidden"), 2);
    assert_eq!(delta(&before, &after, "voice_accepted"), 2);
}
