//! A sealed (E2EE, flag 0x40) voice datagram with a position (flag 0x80): the block stays in
//! clear between the header and the SFrame frame, the datagram tag (version 2) covers it, and it is
//! part of the SFrame metadata, so even a party holding the session's tag key (the relay) cannot
//! move a talker without the receiver's open failing.

use crate::common;

use common::tone;
use voice_core::codec::EncoderConfig;
use voice_core::e2ee::{PasswordKeys, SenderKeyRing};
use voice_core::proto::udp::{self, Flags, Position, TagKey, HEADER_LEN, POSITION_LEN, TAG_LEN};
use voice_core::proto::SessionToken;
use voice_core::stream::Sender;

const KID: u64 = 0x01_2345;

#[test]
fn a_sealed_positional_datagram_authenticates_its_block_twice() {
    let me = SessionToken(3);
    let key = TagKey::derive(&[9; 32]);
    let keys = PasswordKeys::new(b"a 128-bit secret from the game..");
    let mut enc = keys.encryptor_with_kid(me, KID).unwrap();
    let mut tx = Sender::new(me, EncoderConfig::default()).unwrap();
    tx.set_tag_key(key.clone());
    let at = Position::new(1.5, 0.0, -12.25);
    tx.set_position(Some(at)).unwrap();
    let mut buf = [0u8; udp::MAX_DATAGRAM];
    let mut seal = |meta: &[u8], plain: &[u8], out: &mut [u8]| enc.seal(meta, plain, out);
    let n = tx
        .encode_sealed(&tone(0), SessionToken::NONE, false, &mut seal, &mut buf)
        .unwrap();
    let dgram = &buf[..n];

    // Layout: header, block in clear, SFrame frame, datagram tag over all of it.
    let d = udp::parse(dgram).unwrap();
    assert!(d
        .header
        .flags
        .contains(Flags::ENCRYPTED.with(Flags::POSITIONAL)));
    assert_eq!(d.position, Some(at));
    assert_eq!(&dgram[HEADER_LEN..HEADER_LEN + 4], &1.5f32.to_le_bytes());
    assert_eq!(key.verify(dgram), Ok(()));
    let meta = udp::metadata(dgram, &d);
    assert_eq!(meta, &dgram[..HEADER_LEN + POSITION_LEN]);
    assert_eq!(d.payload.len(), n - HEADER_LEN - POSITION_LEN - TAG_LEN);

    // A receiver with the password opens it with the header and block as metadata.
    let mut ring = SenderKeyRing::new();
    ring.insert(KID, &keys.sender_base_key(me, KID)).unwrap();
    let (kid, plain) = ring.open(meta, d.payload).unwrap();
    assert_eq!(kid, KID);
    assert!(!plain.is_empty());

    // Moving the talker and re-tagging with the session key (what a relay could do): the
    // datagram tag verifies again, but the SFrame frame does not open.
    let mut moved = dgram.to_vec();
    moved[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&100.0f32.to_le_bytes());
    let body = n - TAG_LEN;
    let t = key.tag(&moved[..body]);
    moved[body..].copy_from_slice(&t);
    assert_eq!(key.verify(&moved), Ok(()));
    let d2 = udp::parse(&moved).unwrap();
    assert_eq!(d2.position, Some(Position::new(100.0, 0.0, -12.25)));
    let mut ring = SenderKeyRing::new();
    ring.insert(KID, &keys.sender_base_key(me, KID)).unwrap();
    assert!(ring.open(udp::metadata(&moved, &d2), d2.payload).is_err());
    // Without re-tagging, the relay's check already refuses the moved block.
    let mut forged = dgram.to_vec();
    forged[HEADER_LEN + 8] ^= 0x01;
    assert_eq!(key.verify(&forged), Err(udp::UdpError::BadTag));
}
