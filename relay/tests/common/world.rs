//! A deterministic world for multi-client tests: one [`MemoryRelay`] and any number of clients
//! (raw-protocol [`Peer`]s or whole [`Engine`]s) on one simulated clock, with no sockets, threads
//! or sleeps. What the relay sends is returned by the call that caused it, so "nothing was
//! forwarded" is an exact assertion rather than a wait.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use relay::memory::{ConnId, Datagram, MemoryRelay};
use relay::Config;
use voice_core::engine::{Engine, EngineConfig, Event};
use voice_core::proto::register::{self, Secret};
use voice_core::proto::tcp::{AccessToken, ClientMessage, ServerMessage, CONTROL_VERSION};
use voice_core::proto::udp::{self, DatagramKind, Header, TagKey, MAX_DATAGRAM};
use voice_core::proto::{ChannelId, SessionToken};
use voice_core::{Time, FRAME_SAMPLES};

/// The relay and the clock.
pub struct World {
    /// Simulated time.
    pub now: Time,
    /// The relay.
    pub relay: MemoryRelay,
    next_port: u16,
}

impl World {
    /// A relay with the defaults (access tokens required) and `tweak` applied.
    pub fn new(tweak: impl FnOnce(&mut Config)) -> World {
        let mut cfg = Config {
            listen: "10.0.0.1:64738".parse().unwrap(),
            stats_interval_ms: 0,
            ..Config::default()
        };
        tweak(&mut cfg);
        World {
            now: Time::from_millis(1000),
            relay: MemoryRelay::new(cfg).unwrap(),
            next_port: 40000,
        }
    }

    /// A fresh client address.
    pub fn address(&mut self) -> SocketAddr {
        self.next_port += 1;
        SocketAddr::from(([10, 0, 1, 1], self.next_port))
    }

    /// A raw-protocol client: Hello with a minted token, Welcome, registration acknowledged.
    pub fn peer(&mut self, name: &str) -> Peer {
        let conn = self.relay.connect(self.now);
        let token = self.relay.token_for(name).map(AccessToken);
        self.relay.send(
            self.now,
            conn,
            ClientMessage::Hello {
                version: CONTROL_VERSION,
                name: name.into(),
                token,
            },
        );
        let Some(ServerMessage::Welcome {
            session, secret, ..
        }) = self.relay.receive(conn)
        else {
            panic!("expected Welcome");
        };
        let mut p = Peer {
            conn,
            session,
            secret,
            key: TagKey::derive(&secret),
            addr: self.address(),
            seq: 0,
            counter: 0,
        };
        self.register(&mut p);
        p
    }

    /// Registers `p` from its current address; asserts the exact acknowledgement.
    pub fn register(&mut self, p: &mut Peer) {
        p.counter += 1;
        let payload = register::sign(&p.secret, p.session, p.counter);
        let h = Header {
            kind: DatagramKind::Register,
            ..Header::voice(p.session, 0, 0)
        };
        let mut buf = [0u8; MAX_DATAGRAM];
        let n = udp::write(&h, &payload, &p.key, &mut buf).unwrap();
        let out = self.relay.datagram(self.now, p.addr, &buf[..n]);
        assert_eq!(out.len(), 1, "one acknowledgement");
        assert_eq!(out[0].to, p.addr);
        let d = udp::parse(&out[0].bytes).unwrap();
        assert_eq!(d.header.kind, DatagramKind::RegisterAck);
        assert_eq!(p.key.verify(&out[0].bytes), Ok(()));
        assert_eq!(d.payload, &p.counter.to_le_bytes());
    }

    /// `p` joins `channel`; returns the messages it got (the first is `Joined`).
    pub fn join(&mut self, p: &Peer, channel: u32) -> Vec<ServerMessage> {
        self.relay.send(
            self.now,
            p.conn,
            ClientMessage::JoinChannel {
                channel: ChannelId(channel),
            },
        );
        let got = self.drain(p.conn);
        assert!(
            matches!(got.first(), Some(ServerMessage::Joined { .. })),
            "expected Joined, got {got:?}"
        );
        got
    }

    /// Every message the relay has sent `conn` so far.
    pub fn drain(&mut self, conn: ConnId) -> Vec<ServerMessage> {
        std::iter::from_fn(|| self.relay.receive(conn)).collect()
    }

    /// `p` sends `bytes` over UDP; what the relay sends because of it.
    pub fn send_udp(&mut self, p: &Peer, bytes: &[u8]) -> Vec<Datagram> {
        self.relay.datagram(self.now, p.addr, bytes)
    }
}

/// A client that speaks the protocol by hand.
pub struct Peer {
    /// Its control connection.
    pub conn: ConnId,
    /// Its session.
    pub session: SessionToken,
    /// The session secret.
    pub secret: Secret,
    /// The datagram tag key.
    pub key: TagKey,
    /// Its UDP address.
    pub addr: SocketAddr,
    seq: u16,
    counter: u64,
}

impl Peer {
    /// A voice datagram with the next sequence number.
    pub fn voice(&mut self, target: SessionToken, payload: &[u8]) -> Vec<u8> {
        self.seq = self.seq.wrapping_add(1);
        self.voice_seq(self.seq, target, payload)
    }

    /// A voice datagram with sequence number `seq`.
    pub fn voice_seq(&self, seq: u16, target: SessionToken, payload: &[u8]) -> Vec<u8> {
        crate::common::voice_bytes(&self.key, self.session, seq, target, payload)
    }
}

/// The addresses `out` goes to, sorted.
pub fn destinations(out: &[Datagram]) -> Vec<SocketAddr> {
    let mut v: Vec<SocketAddr> = out.iter().map(|d| d.to).collect();
    v.sort();
    v
}

/// A whole engine in the world: its control connection and UDP address.
pub struct Node {
    /// The engine.
    pub engine: Engine,
    /// Its control connection.
    pub conn: ConnId,
    /// Its UDP address.
    pub addr: SocketAddr,
    /// Every event it reported, in order.
    pub events: Vec<Event>,
    /// Datagrams the relay sent it.
    pub datagrams_in: u64,
    /// Of those, voice (not acks or pongs).
    pub engine_rx_voice: u64,
    /// A tone it captures each frame (`None`: silence).
    pub tone_hz: Option<f32>,
    phase: f32,
}

/// Engines and a relay on one clock.
pub struct Engines {
    /// The relay and the clock.
    pub world: World,
    /// The engines, in the order added.
    pub nodes: Vec<Node>,
}

impl Engines {
    /// A relay with the defaults and no engines.
    pub fn new() -> Engines {
        Engines {
            world: World::new(|_| {}),
            nodes: Vec::new(),
        }
    }

    /// Adds an engine named `name` that joins `channel` on its own after `Welcome`.
    pub fn add(&mut self, name: &str, channel: u32) -> usize {
        let cfg = EngineConfig {
            name: name.into(),
            token: self.world.relay.token_for(name).map(AccessToken),
            initial_channel: Some(ChannelId(channel)),
            ..EngineConfig::default()
        };
        let mut engine = Engine::new(cfg).unwrap();
        let conn = self.world.relay.connect(self.world.now);
        engine.connect(self.world.now);
        let addr = self.world.address();
        self.nodes.push(Node {
            engine,
            conn,
            addr,
            events: Vec::new(),
            datagrams_in: 0,
            engine_rx_voice: 0,
            tone_hz: None,
            phase: 0.0,
        });
        self.nodes.len() - 1
    }

    /// Moves control messages and datagrams between the engines and the relay until nothing
    /// is left to move (bounded: a loop that never settles fails the test).
    pub fn settle(&mut self) {
        let now = self.world.now;
        let by_addr: BTreeMap<SocketAddr, usize> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.addr, i))
            .collect();
        let mut buf = [0u8; MAX_DATAGRAM];
        for _ in 0..1000 {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                let conn = self.nodes[i].conn;
                while let Some(m) = self.nodes[i].engine.poll_control() {
                    moved = true;
                    let sent = self.world.relay.send(now, conn, m);
                    self.deliver(&by_addr, sent);
                }
                while let Some(m) = self.world.relay.receive(conn) {
                    moved = true;
                    self.nodes[i].engine.handle_control(now, m);
                }
                let addr = self.nodes[i].addr;
                while let Some(n) = self.nodes[i].engine.poll_datagram(&mut buf) {
                    moved = true;
                    let sent = self.world.relay.datagram(now, addr, &buf[..n]);
                    self.deliver(&by_addr, sent);
                }
                while let Some(e) = self.nodes[i].engine.poll_event() {
                    self.nodes[i].events.push(e);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the world did not settle");
    }

    fn deliver(&mut self, by_addr: &BTreeMap<SocketAddr, usize>, sent: Vec<Datagram>) {
        for d in sent {
            if let Some(&j) = by_addr.get(&d.to) {
                self.nodes[j].datagrams_in += 1;
                if udp::parse(&d.bytes).is_ok_and(|p| p.header.kind == DatagramKind::Voice) {
                    self.nodes[j].engine_rx_voice += 1;
                }
                self.nodes[j]
                    .engine
                    .handle_datagram(self.world.now, &d.bytes);
            }
        }
    }

    /// Runs `d` of simulated time in 20 ms frames: each engine captures a frame (its tone or
    /// silence), mixes one, runs its timers, and everything moves.
    pub fn run(&mut self, d: Duration) {
        let end = self.world.now + d;
        self.settle();
        while self.world.now < end {
            self.world.now = self.world.now + Duration::from_millis(20);
            let now = self.world.now;
            for n in &mut self.nodes {
                let mut pcm = [0i16; FRAME_SAMPLES];
                if let Some(hz) = n.tone_hz {
                    for s in pcm.iter_mut() {
                        *s = (n.phase.sin() * 8000.0) as i16;
                        n.phase += std::f32::consts::TAU * hz / 48_000.0;
                    }
                    n.phase %= std::f32::consts::TAU;
                }
                n.engine.handle_timeout(now);
                n.engine.handle_capture(now, &pcm);
                let mut out = [0i16; FRAME_SAMPLES];
                n.engine.mix(now, &mut out);
            }
            self.world.relay.advance(now);
            self.settle();
        }
    }
}
