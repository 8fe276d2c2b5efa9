//! Fuzz: the whole relay's decisions (`relay::memory::MemoryRelay`: handshake with access
//! tokens, every control message decoded from arbitrary bytes, tunnels, registration and the
//! per-datagram path, timeouts) under arbitrary interleavings on a simulated clock. No panic;
//! forwarded voice is the exact bytes received; a registration is only ever answered to its own
//! address; undecodable bytes are never answered; a closed connection has no session.
#![no_main]
use std::net::SocketAddr;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use relay::memory::{ConnId, MemoryRelay};
use relay::Config;
use voice_core::proto::register;
use voice_core::proto::tcp::{
    AccessToken, ClientMessage, FrameReader, ServerMessage, CONTROL_VERSION,
};
use voice_core::proto::udp::{self, DatagramKind, Header, TagKey};
use voice_core::proto::SessionToken;
use voice_core::Time;

#[derive(Debug, Arbitrary)]
enum Op {
    Connect,
    /// `Hello` on connection `conn` with a minted token (or none / a bad one).
    Hello {
        conn: u8,
        name: u8,
        token: u8,
    },
    /// A frame body from arbitrary bytes (decoded as the relay's frame reader would).
    Frame {
        conn: u8,
        body: Vec<u8>,
    },
    /// A malformed frame.
    Malformed {
        conn: u8,
    },
    HangUp {
        conn: u8,
    },
    /// A registration of connection `conn`'s session from `port`.
    Register {
        conn: u8,
        port: u8,
        counter: u8,
    },
    /// Voice (or a ping) of connection `conn`'s session from `port`, tagged correctly.
    Voice {
        conn: u8,
        port: u8,
        seq: u16,
        target: u8,
        ping: bool,
        len: u8,
    },
    /// The same through its control connection (tunnel fallback).
    Tunnel {
        conn: u8,
        active: bool,
        seq: u16,
    },
    /// Arbitrary bytes from `port`.
    Raw {
        port: u8,
        bytes: Vec<u8>,
    },
    Advance {
        ms: u16,
    },
}

fn addr(port: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 2], 20_000 + u16::from(port)))
}

/// A session as the fuzzer knows it (from the relay's `Welcome`).
struct Known {
    conn: ConnId,
    session: SessionToken,
    secret: register::Secret,
}

fuzz_target!(|ops: Vec<Op>| {
    let cfg = Config {
        listen: "10.0.0.1:64738".parse().expect("address"),
        handshake_timeout_ms: 2_000,
        idle_timeout_ms: 5_000,
        ..Config::default()
    };
    let mut relay = MemoryRelay::new(cfg).expect("relay");
    let mut now = Time::from_millis(1000);
    let mut conns: Vec<ConnId> = Vec::new();
    let mut known: Vec<Known> = Vec::new();
    let pick = |conns: &[ConnId], i: u8| conns.get(usize::from(i) % conns.len().max(1)).copied();
    for op in ops.into_iter().take(400) {
        match op {
            Op::Connect => conns.push(relay.connect(now)),
            Op::Hello { conn, name, token } => {
                let Some(c) = pick(&conns, conn) else {
                    continue;
                };
                let name = format!("user{}", name % 8);
                let token = match token % 3 {
                    0 => relay.token_for(&name).map(AccessToken),
                    1 => None,
                    _ => Some(AccessToken("not.a.token".into())),
                };
                relay.send(
                    now,
                    c,
                    ClientMessage::Hello {
                        version: CONTROL_VERSION,
                        name,
                        token,
                    },
                );
            }
            Op::Frame { conn, body } => {
                let Some(c) = pick(&conns, conn) else {
                    continue;
                };
                let mut reader = FrameReader::<ClientMessage>::new();
                let mut frame = (body.len() as u32).to_le_bytes().to_vec();
                frame.extend_from_slice(&body);
                if reader.push(&frame).is_err() {
                    continue;
                }
                match reader.next_message() {
                    Ok(Some(m)) => {
                        // A tunneled datagram in arbitrary bytes carries no valid tag.
                        assert!(relay.send(now, c, m).is_empty());
                    }
                    Ok(None) => {}
                    Err(_) => relay.send_malformed(now, c),
                }
            }
            Op::Malformed { conn } => {
                if let Some(c) = pick(&conns, conn) {
                    relay.send_malformed(now, c);
                }
            }
            Op::HangUp { conn } => {
                if let Some(c) = pick(&conns, conn) {
                    relay.hang_up(c);
                }
            }
            Op::Register {
                conn,
                port,
                counter,
            } => {
                let Some(k) = known.get(usize::from(conn) % known.len().max(1)) else {
                    continue;
                };
                let proof = register::sign(&k.secret, k.session, u64::from(counter));
                let h = Header {
                    kind: DatagramKind::Register,
                    ..Header::voice(k.session, 0, 0)
                };
                let mut buf = [0u8; udp::MAX_DATAGRAM];
                let key = TagKey::derive(&k.secret);
                let n = udp::write(&h, &proof, &key, &mut buf).expect("fits");
                for d in relay.datagram(now, addr(port), &buf[..n]) {
                    assert_eq!(d.to, addr(port), "only an ack, to the registering address");
                }
            }
            Op::Voice {
                conn,
                port,
                seq,
                target,
                ping,
                len,
            } => {
                let Some(k) = known.get(usize::from(conn) % known.len().max(1)) else {
                    continue;
                };
                let target = known
                    .get(usize::from(target) % (known.len() + 1))
                    .map_or(SessionToken::NONE, |t| t.session);
                let h = Header {
                    kind: if ping {
                        DatagramKind::Ping
                    } else {
                        DatagramKind::Voice
                    },
                    target,
                    ..Header::voice(k.session, seq, u32::from(seq) * 960)
                };
                let mut buf = [0u8; udp::MAX_DATAGRAM];
                let key = TagKey::derive(&k.secret);
                let payload = vec![0x5A; usize::from(len)];
                let n = udp::write(&h, &payload, &key, &mut buf).expect("fits");
                for d in relay.datagram(now, addr(port), &buf[..n]) {
                    if ping {
                        assert_eq!(d.to, addr(port), "a pong goes to its ping's source");
                    } else {
                        assert_eq!(d.bytes, &buf[..n], "the exact bytes");
                    }
                }
            }
            Op::Tunnel { conn, active, seq } => {
                let Some(k) = known.get(usize::from(conn) % known.len().max(1)) else {
                    continue;
                };
                let mut buf = [0u8; udp::MAX_DATAGRAM];
                let key = TagKey::derive(&k.secret);
                let n = udp::write(
                    &Header::voice(k.session, seq, 0),
                    b"tunneled",
                    &key,
                    &mut buf,
                )
                .expect("fits");
                relay.send(
                    now,
                    k.conn,
                    ClientMessage::Tunnel {
                        active,
                        datagram: buf[..n].to_vec(),
                    },
                );
            }
            Op::Raw { port, bytes } => {
                // Without a session's secret no tag verifies: nothing is forwarded or answered.
                assert!(relay.datagram(now, addr(port), &bytes).is_empty());
            }
            Op::Advance { ms } => {
                now = now + Duration::from_millis(u64::from(ms));
                relay.advance(now);
            }
        }
        // Learn the sessions the relay welcomed; a closed connection's queue only drains.
        for &c in &conns {
            while let Some(m) = relay.receive(c) {
                if let ServerMessage::Welcome {
                    session, secret, ..
                } = m
                {
                    known.push(Known {
                        conn: c,
                        session,
                        secret,
                    });
                }
            }
            if relay.is_closed(c) {
                assert!(
                    relay.session(c).is_none(),
                    "a closed connection has no session"
                );
            }
        }
    }
});
