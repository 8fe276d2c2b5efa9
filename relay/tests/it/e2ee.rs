//! End-to-end encryption through the real relay on 127.0.0.1 (TLS control, UDP voice): the relay
//! forwards sealed datagrams byte for byte, never sees the Opus payload, and relays identity and
//! wrapped-key blobs opaquely and only inside a channel. One relay per test, started here.
use crate::common;

use common::{group, start, Client};
use voice_core::codec::EncoderConfig;
use voice_core::e2ee::{PasswordKeys, SenderKeyRing};
use voice_core::proto::tcp::{ClientMessage, ErrorCode, ServerMessage, MAX_E2EE_IDENTITY};
use voice_core::proto::udp::{self, Flags};
use voice_core::proto::SessionToken;
use voice_core::stream::Sender;
use voice_core::FRAME_SAMPLES;

const PASSWORD: &[u8] = b"0123456789abcdef0123456789abcdef";

fn contains_any_window(haystack: &[u8], needle: &[u8], w: usize) -> bool {
    needle
        .windows(w)
        .any(|n| haystack.windows(w).any(|h| h == n))
}

#[test]
fn forwarded_bytes_never_contain_the_plaintext_opus_payload() {
    let relay = start(|_| {});
    let cs = group(relay.local_addr(), 1, &["alice", "bob", "carol"]);
    let keys = PasswordKeys::new(PASSWORD);
    let alice = cs[0].session;
    let mut enc = keys.encryptor(alice).unwrap();
    let mut sender = Sender::new(alice, EncoderConfig::default()).unwrap();
    sender.set_tag_key(cs[0].key.clone());
    let mut rings = [SenderKeyRing::new(), SenderKeyRing::new()];
    let mut checked = 0;
    for k in 0..50usize {
        let pcm: Vec<i16> = (0..FRAME_SAMPLES)
            .map(|i| {
                let t = (k * FRAME_SAMPLES + i) as f32 / 48_000.0;
                ((t * 440.0 * std::f32::consts::TAU).sin() * 8000.0) as i16
            })
            .collect();
        let mut opus = Vec::new();
        let mut seal = |meta: &[u8], payload: &[u8], out: &mut [u8]| {
            opus = payload.to_vec();
            enc.seal(meta, payload, out)
        };
        let mut buf = [0u8; udp::MAX_DATAGRAM];
        let n = sender
            .encode_sealed(&pcm, SessionToken::NONE, false, &mut seal, &mut buf)
            .unwrap();
        let sent = &buf[..n];
        assert!(
            n <= udp::HEADER_LEN + opus.len() + 10 + udp::TAG_LEN,
            "E2EE adds at most 10 bytes (beside the datagram tag every datagram carries)"
        );
        cs[0].send_udp(sent);
        for (i, c) in cs[1..].iter().enumerate() {
            let got = c.recv_udp(common::WAIT).expect("forwarded");
            assert_eq!(got, sent, "the relay forwards the exact bytes");
            let d = udp::parse(&got).unwrap();
            assert!(d.header.flags.contains(Flags::ENCRYPTED));
            assert_eq!(
                d.header.sender, alice,
                "the header stays readable for routing"
            );
            if opus.len() >= 8 {
                assert!(
                    !contains_any_window(&got, &opus, 8),
                    "8 plaintext bytes in a forwarded datagram"
                );
                checked += 1;
            }
            let plain = keys
                .open(&mut rings[i], alice, &got[..udp::HEADER_LEN], d.payload)
                .expect("members with the password decrypt");
            assert_eq!(plain, &opus[..]);
        }
    }
    assert!(checked >= 90, "{checked} datagrams checked");
}

fn recv_identity(c: &mut Client) -> (SessionToken, Vec<u8>) {
    match c
        .ctl
        .recv_until(|m| matches!(m, ServerMessage::E2eeIdentity { .. }))
    {
        ServerMessage::E2eeIdentity { session, blob } => (session, blob),
        _ => unreachable!(),
    }
}

#[test]
fn identity_and_wrapped_key_blobs_are_relayed_opaquely_inside_the_channel() {
    let relay = start(|_| {});
    let addr = relay.local_addr();
    // Alice announces before joining; Bob joins after her and announces in the channel.
    let mut alice = Client::connect(addr, "alice");
    alice.send(&ClientMessage::E2eeIdentity {
        blob: vec![0xA1; 32],
    });
    alice.join(1);
    let mut bob = Client::connect(addr, "bob");
    bob.join(1);
    assert_eq!(
        recv_identity(&mut bob),
        (alice.session, vec![0xA1; 32]),
        "joiner learns members"
    );
    bob.send(&ClientMessage::E2eeIdentity {
        blob: vec![0xB0; 32],
    });
    assert_eq!(recv_identity(&mut alice), (bob.session, vec![0xB0; 32]));
    // Eve is elsewhere: she learns nobody's identity and receives no key.
    let mut eve = Client::connect(addr, "eve");
    eve.join(2);
    eve.send(&ClientMessage::E2eeIdentity {
        blob: vec![0xEE; 32],
    });

    alice.send(&ClientMessage::E2eeKeys {
        keys: vec![
            (bob.session, vec![7; 88]),
            (eve.session, vec![8; 88]),
            (bob.session, vec![9; 1000]),
        ],
    });
    match bob
        .ctl
        .recv_until(|m| matches!(m, ServerMessage::E2eeKey { .. }))
    {
        ServerMessage::E2eeKey { from, blob } => {
            assert_eq!((from, blob), (alice.session, vec![7; 88]))
        }
        _ => unreachable!(),
    }
    match alice
        .ctl
        .recv_until(|m| matches!(m, ServerMessage::Error { .. }))
    {
        ServerMessage::Error { code, .. } => assert_eq!(code, ErrorCode::BadE2eeBlob),
        _ => unreachable!(),
    }
    eve.ctl.expect_silence();
    bob.ctl.expect_silence();

    alice.send(&ClientMessage::E2eeIdentity {
        blob: vec![1; MAX_E2EE_IDENTITY + 1],
    });
    match alice
        .ctl
        .recv_until(|m| matches!(m, ServerMessage::Error { .. }))
    {
        ServerMessage::Error { code, .. } => assert_eq!(code, ErrorCode::BadE2eeBlob),
        _ => unreachable!(),
    }
    bob.ctl.expect_silence();
}
