//! `docs/PROTOCOL.md` is normative: this test keeps it honest.
//!
//! * Every ```` ```wire ```` block is decoded with `voice_core::proto` and must give exactly the
//!   value the block states (compared in Rust debug notation, the notation the document uses) and
//!   re-encode to exactly the block's bytes.
//! * The sections `#### ClientMessage N: `Name`` (and `ServerMessage`, `ErrorCode`) must list every
//!   variant the code has, with its postcard variant index, in order; every variant must have at
//!   least one example. The variants are counted by probing the decoder (an index past the last
//!   variant does not decode) and named by exhaustive `match`es below, so adding a message or an
//!   error code without documenting it fails here, and so does documenting one that is not there.
//! * Registration examples are checked against the MAC formula as the document states it
//!   (BLAKE3 keyed with the secret over the context string, token and counter), not only against
//!   the library's `sign`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::Serialize;
use voice_core::proto::register::{self, Secret, REGISTER_PAYLOAD_LEN};
use voice_core::proto::tcp::{
    encode_frame, ClientMessage, ErrorCode, FrameReader, Message, ServerMessage, PREFIX_LEN,
};
use voice_core::proto::udp::{self, DatagramKind, HEADER_LEN};

const DOC_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md");

fn doc() -> String {
    std::fs::read_to_string(DOC_PATH).expect("docs/PROTOCOL.md is readable")
}

/// Variant names, exhaustively: a new variant does not compile until it is named here, and the
/// sections of the document are compared against these names.
fn client_name(m: &ClientMessage) -> &'static str {
    match m {
        ClientMessage::Hello { .. } => "Hello",
        ClientMessage::JoinChannel { .. } => "JoinChannel",
        ClientMessage::LeaveChannel => "LeaveChannel",
        ClientMessage::Chat { .. } => "Chat",
        ClientMessage::Ping { .. } => "Ping",
        ClientMessage::ListChannels => "ListChannels",
        ClientMessage::StatsRequest => "StatsRequest",
        ClientMessage::ReceiverReport { .. } => "ReceiverReport",
        ClientMessage::Goodbye => "Goodbye",
        ClientMessage::Tunnel { .. } => "Tunnel",
        ClientMessage::E2eeIdentity { .. } => "E2eeIdentity",
        ClientMessage::E2eeKeys { .. } => "E2eeKeys",
        ClientMessage::Kick { .. } => "Kick",
        ClientMessage::Ban { .. } => "Ban",
        ClientMessage::SetVoiceState { .. } => "SetVoiceState",
    }
}

fn server_name(m: &ServerMessage) -> &'static str {
    match m {
        ServerMessage::Welcome { .. } => "Welcome",
        ServerMessage::Joined { .. } => "Joined",
        ServerMessage::Left { .. } => "Left",
        ServerMessage::UserJoined { .. } => "UserJoined",
        ServerMessage::UserLeft { .. } => "UserLeft",
        ServerMessage::Chat { .. } => "Chat",
        ServerMessage::Pong { .. } => "Pong",
        ServerMessage::ChannelList { .. } => "ChannelList",
        ServerMessage::ReceiverReport { .. } => "ReceiverReport",
        ServerMessage::Stats { .. } => "Stats",
        ServerMessage::Error { .. } => "Error",
        ServerMessage::Tunnel { .. } => "Tunnel",
        ServerMessage::E2eeIdentity { .. } => "E2eeIdentity",
        ServerMessage::E2eeKey { .. } => "E2eeKey",
        ServerMessage::ChannelSpatial { .. } => "ChannelSpatial",
        ServerMessage::Redirect { .. } => "Redirect",
        ServerMessage::Removed { .. } => "Removed",
        ServerMessage::UserRemoved { .. } => "UserRemoved",
        ServerMessage::ChannelMembers { .. } => "ChannelMembers",
        ServerMessage::UserState { .. } => "UserState",
    }
}

fn error_name(c: ErrorCode) -> &'static str {
    match c {
        ErrorCode::Malformed => "Malformed",
        ErrorCode::Handshake => "Handshake",
        ErrorCode::Version => "Version",
        ErrorCode::BadName => "BadName",
        ErrorCode::BadChat => "BadChat",
        ErrorCode::NoSuchChannel => "NoSuchChannel",
        ErrorCode::NotInChannel => "NotInChannel",
        ErrorCode::Full => "Full",
        ErrorCode::RateLimited => "RateLimited",
        ErrorCode::NoSuchSession => "NoSuchSession",
        ErrorCode::Placement => "Placement",
        ErrorCode::BadE2eeBlob => "BadE2eeBlob",
        ErrorCode::Unauthorized => "Unauthorized",
        ErrorCode::Forbidden => "Forbidden",
        ErrorCode::ChannelFull => "ChannelFull",
        ErrorCode::NotAllowed => "NotAllowed",
        ErrorCode::NameTaken => "NameTaken",
        ErrorCode::Banned => "Banned",
    }
}

/// Every variant of `T` in index order, found by decoding `[index, 0, 0, …]`: zero bytes decode
/// as 0, empty strings and empty lists, so every variant that exists decodes, and the first index
/// that does not is the variant count. Indices above it must not decode either.
fn probe<T: DeserializeOwned>() -> Vec<T> {
    let mut found = Vec::new();
    for i in 0..128u8 {
        let mut body = vec![0u8; 128];
        body[0] = i;
        match postcard::from_bytes::<T>(&body) {
            Ok(v) if found.len() == usize::from(i) => found.push(v),
            Ok(_) => panic!("variant {i} decodes after a gap"),
            Err(_) => {}
        }
    }
    assert!(!found.is_empty());
    found
}

/// One fenced ```` ```wire ```` block: `key: value` lines, indented lines continuing the last key.
#[derive(Debug)]
struct Block {
    line: usize,
    fields: BTreeMap<String, String>,
}

impl Block {
    fn get(&self, key: &str) -> &str {
        self.fields
            .get(key)
            .unwrap_or_else(|| panic!("wire block at line {} has no `{key}:`", self.line))
    }

    fn bytes(&self, key: &str) -> Vec<u8> {
        self.get(key)
            .split_whitespace()
            .map(|t| {
                assert_eq!(t.len(), 2, "line {}: `{t}` is not one hex byte", self.line);
                u8::from_str_radix(t, 16)
                    .unwrap_or_else(|_| panic!("line {}: `{t}` is not hex", self.line))
            })
            .collect()
    }
}

fn wire_blocks(doc: &str) -> Vec<Block> {
    fenced_blocks(doc, "```wire")
}

fn fenced_blocks(doc: &str, fence: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    let mut last_key = String::new();
    for (n, line) in doc.lines().enumerate() {
        let n = n + 1;
        match &mut current {
            None if line.trim_end() == fence => {
                current = Some(Block {
                    line: n,
                    fields: BTreeMap::new(),
                });
            }
            None => {}
            Some(_) if line.trim_end() == "```" => blocks.push(current.take().unwrap()),
            Some(b) if line.starts_with(' ') => {
                let v = b
                    .fields
                    .get_mut(&last_key)
                    .unwrap_or_else(|| panic!("line {n}: continuation without a key"));
                v.push(' ');
                v.push_str(line.trim());
            }
            Some(b) => {
                let (k, v) = line
                    .split_once(':')
                    .unwrap_or_else(|| panic!("line {n}: expected `key: value`"));
                last_key = k.trim().to_owned();
                let old = b.fields.insert(last_key.clone(), v.trim().to_owned());
                assert!(old.is_none(), "line {n}: `{last_key}` given twice");
            }
        }
    }
    assert!(current.is_none(), "unterminated wire block");
    blocks
}

/// `#### ClientMessage 3: `Chat`` → ("ClientMessage", 3, "Chat"), in document order.
fn sections(doc: &str) -> Vec<(String, usize, String)> {
    doc.lines()
        .filter_map(|l| l.strip_prefix("#### "))
        .filter_map(|h| {
            let (ty, rest) = h.split_once(' ')?;
            let (idx, name) = rest.split_once(": ")?;
            let name = name.strip_prefix('`')?.strip_suffix('`')?;
            Some((ty.to_owned(), idx.parse().ok()?, name.to_owned()))
        })
        .collect()
}

/// Decodes `hex` as a `T` body, checks the stated value and the re-encoding; returns the value.
fn check_body<T: DeserializeOwned + Serialize + Debug>(b: &Block) -> T {
    let bytes = b.bytes("hex");
    let v: T = postcard::from_bytes(&bytes)
        .unwrap_or_else(|e| panic!("line {}: hex does not decode: {e}", b.line));
    assert_eq!(
        format!("{v:?}"),
        b.get("value"),
        "line {}: hex decodes to another value",
        b.line
    );
    assert_eq!(
        postcard::to_allocvec(&v).unwrap(),
        bytes,
        "line {}: the value re-encodes to other bytes",
        b.line
    );
    v
}

/// Same for a whole frame: prefix and body.
fn check_frame<M: Message + Debug>(b: &Block) -> M {
    let bytes = b.bytes("hex");
    let mut reader = FrameReader::<M>::new();
    reader.push(&bytes).unwrap();
    let v = reader
        .next_message()
        .unwrap_or_else(|e| panic!("line {}: frame does not decode: {e}", b.line))
        .unwrap_or_else(|| panic!("line {}: incomplete frame", b.line));
    assert_eq!(
        reader.buffered(),
        0,
        "line {}: bytes after the frame",
        b.line
    );
    assert_eq!(format!("{v:?}"), b.get("value"), "line {}", b.line);
    let len = u32::from_le_bytes(bytes[..PREFIX_LEN].try_into().unwrap()) as usize;
    assert_eq!(
        len,
        bytes.len() - PREFIX_LEN,
        "line {}: length prefix",
        b.line
    );
    let mut again = Vec::new();
    encode_frame(&v, &mut again).unwrap();
    assert_eq!(again, bytes, "line {}: re-encodes to other bytes", b.line);
    v
}

/// The datagram tag exactly as the document words it: BLAKE3 `derive_key` with the context
/// string over the session secret gives the key; the tag is the first 8 bytes of BLAKE3 keyed
/// with it over every byte before the tag.
fn tag_as_documented(secret: &Secret, body: &[u8]) -> [u8; 8] {
    let key = blake3::derive_key("voice-engine datagram tag v2", secret);
    blake3::keyed_hash(&key, body).as_bytes()[..8]
        .try_into()
        .unwrap()
}

/// A datagram: header (debug notation) and payload as stated, the tag made with the block's
/// `secret` as documented, the positional block (if any) as stated in `position`, and
/// `udp::write_positional` gives the bytes.
fn check_datagram(b: &Block, payload: &[u8]) -> udp::Header {
    let bytes = b.bytes("hex");
    let secret: Secret = b.bytes("secret").try_into().expect("32-byte secret");
    let (body, tag) = bytes.split_at(bytes.len() - udp::TAG_LEN);
    assert_eq!(
        tag,
        tag_as_documented(&secret, body),
        "line {}: tag",
        b.line
    );
    let key = udp::TagKey::derive(&secret);
    assert_eq!(key.verify(&bytes), Ok(()), "line {}", b.line);
    let d = udp::parse(&bytes).unwrap_or_else(|e| panic!("line {}: {e}", b.line));
    assert_eq!(
        format!("{:?}", d.header),
        b.get("header"),
        "line {}",
        b.line
    );
    assert_eq!(d.payload, payload, "line {}: payload", b.line);
    let stated = b.fields.get("position").map(String::as_str);
    assert_eq!(
        d.position.map(|p| format!("{p:?}")).as_deref(),
        stated,
        "line {}: position",
        b.line
    );
    let mut again = vec![0u8; bytes.len()];
    let n = udp::write_positional(&d.header, d.position, d.payload, &key, &mut again).unwrap();
    assert_eq!(
        &again[..n],
        &bytes[..],
        "line {}: re-encodes differently",
        b.line
    );
    d.header
}

/// The registration MAC exactly as the document words it.
fn mac_as_documented(secret: &Secret, session: u32, counter: u64) -> [u8; 16] {
    let mut msg = b"voice-engine register v1".to_vec();
    msg.extend_from_slice(&session.to_le_bytes());
    msg.extend_from_slice(&counter.to_le_bytes());
    let full = blake3::keyed_hash(secret, &msg);
    full.as_bytes()[..16].try_into().unwrap()
}

#[test]
fn every_wire_example_decodes_to_its_stated_value_and_back() {
    let doc = doc();
    let blocks = wire_blocks(&doc);
    let mut client = BTreeSet::new();
    let mut server = BTreeSet::new();
    let mut errors = BTreeSet::new();
    let mut kinds = BTreeSet::new();
    let mut on_server = |m: &ServerMessage| {
        server.insert(server_name(m));
        if let ServerMessage::Error { code, .. } = m {
            errors.insert(error_name(*code));
        }
    };
    for b in &blocks {
        match b.get("type") {
            "ClientMessage" => {
                client.insert(client_name(&check_body::<ClientMessage>(b)));
            }
            "ServerMessage" => on_server(&check_body::<ServerMessage>(b)),
            "ClientFrame" => {
                client.insert(client_name(&check_frame::<ClientMessage>(b)));
            }
            "ServerFrame" => on_server(&check_frame::<ServerMessage>(b)),
            "Datagram" => {
                let h = check_datagram(b, &b.bytes("payload"));
                kinds.insert(h.kind as u8);
            }
            "Register" => {
                let secret: Secret = b.bytes("secret").try_into().expect("32-byte secret");
                let counter: u64 = b.get("counter").parse().expect("counter");
                let bytes = b.bytes("hex");
                let d = udp::parse(&bytes).unwrap();
                let mut payload = counter.to_le_bytes().to_vec();
                payload.extend_from_slice(&mac_as_documented(&secret, d.header.sender.0, counter));
                assert_eq!(payload.len(), REGISTER_PAYLOAD_LEN);
                let h = check_datagram(b, &payload);
                assert_eq!(h.kind, DatagramKind::Register);
                assert_eq!(register::sign(&secret, h.sender, counter)[..], payload[..]);
                assert_eq!(
                    register::verify(&secret, h.sender, &payload, 0),
                    Ok(counter)
                );
                assert_eq!(
                    bytes.len(),
                    HEADER_LEN + REGISTER_PAYLOAD_LEN + udp::TAG_LEN
                );
                kinds.insert(h.kind as u8);
            }
            other => panic!("line {}: unknown wire block type `{other}`", b.line),
        }
    }
    let all_client: BTreeSet<_> = probe::<ClientMessage>().iter().map(client_name).collect();
    let all_server: BTreeSet<_> = probe::<ServerMessage>().iter().map(server_name).collect();
    let all_errors: BTreeSet<_> = probe::<ErrorCode>().into_iter().map(error_name).collect();
    assert_eq!(client, all_client, "client messages without an example");
    assert_eq!(server, all_server, "server messages without an example");
    assert_eq!(errors, all_errors, "error codes without an example");
    assert_eq!(
        kinds,
        (1..=5).collect(),
        "datagram kinds without an example"
    );
}

#[test]
fn every_variant_has_a_section_with_its_index_and_nothing_else_does() {
    let doc = doc();
    let documented = sections(&doc);
    let mut expected = Vec::new();
    let client: Vec<_> = probe::<ClientMessage>().iter().map(client_name).collect();
    let server: Vec<_> = probe::<ServerMessage>().iter().map(server_name).collect();
    let errors: Vec<_> = probe::<ErrorCode>().into_iter().map(error_name).collect();
    for (ty, names) in [
        ("ClientMessage", &client),
        ("ServerMessage", &server),
        ("ErrorCode", &errors),
    ] {
        for (i, n) in names.iter().enumerate() {
            expected.push((ty.to_owned(), i, (*n).to_owned()));
        }
        let count = format!("`{ty}`, {} variants", names.len());
        assert!(doc.contains(&count), "the document must say {count}");
    }
    assert_eq!(documented, expected);
}

#[test]
fn the_variant_index_is_the_first_byte_of_every_body() {
    // The document's claim that a body starts with the one-byte variant index, for every variant.
    for (i, m) in probe::<ClientMessage>().iter().enumerate() {
        assert_eq!(postcard::to_allocvec(m).unwrap()[0], i as u8);
    }
    for (i, m) in probe::<ServerMessage>().iter().enumerate() {
        assert_eq!(postcard::to_allocvec(m).unwrap()[0], i as u8);
    }
    for (i, c) in probe::<ErrorCode>().into_iter().enumerate() {
        assert_eq!(postcard::to_allocvec(&c).unwrap(), [i as u8]);
    }
}

#[test]
fn trailing_bytes_after_a_message_are_ignored_as_documented() {
    let mut body = postcard::to_allocvec(&ClientMessage::Ping { client_time_us: 7 }).unwrap();
    body.extend_from_slice(&[0xAA, 0xBB]);
    let mut frame = (body.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&body);
    let mut reader = FrameReader::<ClientMessage>::new();
    reader.push(&frame).unwrap();
    assert_eq!(
        reader.next_message().unwrap(),
        Some(ClientMessage::Ping { client_time_us: 7 })
    );
    assert_eq!(reader.buffered(), 0);
}

#[test]
fn the_varint_examples_of_the_document_hold() {
    // `0` → 00, `127` → 7f, `128` → 80 01, `300` → ac 02; widths at most 3 / 5 / 10 bytes.
    for (v, bytes) in [
        (0u32, &[0x00][..]),
        (127, &[0x7f]),
        (128, &[0x80, 0x01]),
        (300, &[0xac, 0x02]),
    ] {
        assert_eq!(postcard::to_allocvec(&v).unwrap(), bytes);
    }
    assert_eq!(postcard::to_allocvec(&u16::MAX).unwrap().len(), 3);
    assert_eq!(postcard::to_allocvec(&u32::MAX).unwrap().len(), 5);
    assert_eq!(postcard::to_allocvec(&u64::MAX).unwrap().len(), 10);
    // A value wider than the type does not decode.
    assert!(postcard::from_bytes::<u16>(&[0xff, 0xff, 0x04]).is_err());
    // Strings are length-prefixed UTF-8; invalid UTF-8 does not decode.
    assert_eq!(postcard::to_allocvec("hé").unwrap(), [3, b'h', 0xc3, 0xa9]);
    assert!(postcard::from_bytes::<String>(&[2, 0xff, 0xfe]).is_err());
}

/// The ```` ```sframe ```` example: the base key follows from the password by the documented
/// derivation, sealing the plaintext with that key id and counter and the metadata gives exactly
/// the frame, and the frame opens to the plaintext.
#[test]
fn the_sframe_example_seals_and_opens_as_documented() {
    use voice_core::e2ee::{PasswordKeys, SenderKeyRing};
    use voice_core::proto::SessionToken;
    let blocks = fenced_blocks(&doc(), "```sframe");
    assert!(!blocks.is_empty(), "PROTOCOL.md has an sframe example");
    for b in blocks {
        let password = b.get("password").as_bytes();
        let sender = SessionToken(b.get("sender").parse().unwrap());
        let kid = u64::from_str_radix(b.get("kid").trim_start_matches("0x"), 16).unwrap();
        let counter: u64 = b.get("counter").parse().unwrap();
        let keys = PasswordKeys::new(password);
        assert_eq!(
            keys.sender_base_key(sender, kid).to_vec(),
            b.bytes("base_key")
        );
        let mut enc = keys.encryptor_with_kid(sender, kid).unwrap();
        let (meta, plain, frame) = (b.bytes("metadata"), b.bytes("plaintext"), b.bytes("frame"));
        let mut out = [0u8; 256];
        let mut n = 0;
        for _ in 0..=counter {
            n = enc.seal(&meta, &plain, &mut out).unwrap();
        }
        assert_eq!(&out[..n], &frame[..], "line {}: frame", b.line);
        let mut ring = SenderKeyRing::new();
        let got = keys.open(&mut ring, sender, &meta, &frame).unwrap();
        assert_eq!(got, &plain[..]);
        let mut flipped = meta.clone();
        flipped[2] ^= 0x40;
        assert!(SenderKeyRing::new()
            .open_with_candidate(&flipped, &frame, &keys.sender_base_key(sender, kid))
            .is_err());
    }
}
