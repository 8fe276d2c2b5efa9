//! Key rotation with identity keys, on simulated time: members join and leave 20 times while
//! everybody talks; control messages (identities, wrapped keys) and datagrams travel with fixed
//! latencies as the relay would move them.
//!
//! Asserted: members present throughout decrypt every frame (zero drops, hence zero concealment,
//! caused by 20 rotations); a joiner decrypts nothing sealed before it joined; a leaver that keeps
//! its keys and still sees the datagrams decrypts nothing sealed after the rotation lead.

use std::collections::BTreeMap;
use std::time::Duration;

use voice_core::e2ee::group::GroupKeys;
use voice_core::e2ee::{DecryptError, Identity};
use voice_core::proto::SessionToken;
use voice_core::Time;

const LEAD: Duration = Duration::from_millis(500);
const CTRL_LATENCY: Duration = Duration::from_millis(80);
const UDP_LATENCY: Duration = Duration::from_millis(30);
const FRAME: Duration = Duration::from_millis(20);

enum Ctl {
    Identity(SessionToken, [u8; 32]),
    Key(SessionToken, Vec<u8>),
    Left(SessionToken),
}

struct Frame {
    from: SessionToken,
    sealed_at: Time,
    meta: [u8; 20],
    bytes: Vec<u8>,
    plain: Vec<u8>,
}

struct Member {
    keys: GroupKeys,
    joined: Time,
    left: Option<Time>,
    /// (sealed_at, from, result)
    opened: Vec<(Time, SessionToken, Result<(), DecryptError>)>,
}

struct World {
    now: Time,
    members: BTreeMap<SessionToken, Member>,
    ctl: Vec<(Time, SessionToken, Ctl)>,
    udp: Vec<(Time, Frame)>,
    seq: u32,
}

impl World {
    fn present(&self) -> Vec<SessionToken> {
        self.members
            .iter()
            .filter(|(_, m)| m.left.is_none())
            .map(|(s, _)| *s)
            .collect()
    }

    fn join(&mut self, s: SessionToken) {
        let mut keys = GroupKeys::new(Identity::from_secret([s.0 as u8; 32]), LEAD);
        keys.set_session(s).unwrap();
        keys.joined_channel(self.now, self.present()).unwrap();
        let id = keys.identity_blob();
        let at = self.now + CTRL_LATENCY;
        for p in self.present() {
            let theirs = self.members[&p].keys.identity_blob();
            self.ctl.push((at, p, Ctl::Identity(s, id)));
            self.ctl.push((at, s, Ctl::Identity(p, theirs)));
        }
        self.members.insert(
            s,
            Member {
                keys,
                joined: self.now,
                left: None,
                opened: Vec::new(),
            },
        );
    }

    fn leave(&mut self, s: SessionToken) {
        self.members.get_mut(&s).unwrap().left = Some(self.now);
        let at = self.now + CTRL_LATENCY;
        for p in self.present() {
            self.ctl.push((at, p, Ctl::Left(s)));
        }
    }

    fn flush_deliveries(&mut self) {
        let present = self.present();
        for s in present.clone() {
            while let Some(d) = self.members.get_mut(&s).unwrap().keys.poll_delivery() {
                // The relay delivers only inside the channel.
                if present.contains(&d.to) {
                    self.ctl
                        .push((self.now + CTRL_LATENCY, d.to, Ctl::Key(s, d.blob)));
                }
            }
        }
    }

    fn step(&mut self) {
        let now = self.now;
        // Control messages due.
        let (due, later): (Vec<_>, Vec<_>) = self.ctl.drain(..).partition(|(t, _, _)| *t <= now);
        self.ctl = later;
        for (_, to, msg) in due {
            let Some(m) = self.members.get_mut(&to).filter(|m| m.left.is_none()) else {
                continue;
            };
            match msg {
                Ctl::Identity(s, id) => m.keys.member_identity(now, s, &id).unwrap(),
                Ctl::Key(from, blob) => {
                    m.keys.handle_key(from, &blob).unwrap();
                }
                Ctl::Left(s) => m.keys.member_left(now, s).unwrap(),
            }
        }
        self.flush_deliveries();
        // Datagrams due: to everyone who ever joined (a leaver keeps listening).
        let (due, later): (Vec<_>, Vec<_>) = self.udp.drain(..).partition(|(t, _)| *t <= now);
        self.udp = later;
        for (_, f) in due {
            for (s, m) in self.members.iter_mut() {
                if *s == f.from {
                    continue;
                }
                let r = m.keys.open(f.from, &f.meta, &f.bytes).map(|p| {
                    assert_eq!(p, &f.plain[..]);
                });
                m.opened.push((f.sealed_at, f.from, r));
            }
        }
        // Everybody present talks.
        for s in self.present() {
            self.seq += 1;
            let mut meta = [0u8; 20];
            meta[..4].copy_from_slice(&s.0.to_le_bytes());
            meta[4..8].copy_from_slice(&self.seq.to_le_bytes());
            let plain: Vec<u8> = (0..60).map(|i| (self.seq as u8).wrapping_add(i)).collect();
            let mut out = [0u8; 128];
            let m = self.members.get_mut(&s).unwrap();
            let n = m.keys.seal(now, &meta, &plain, &mut out).unwrap();
            assert!(n <= plain.len() + 10, "overhead");
            self.udp.push((
                now + UDP_LATENCY,
                Frame {
                    from: s,
                    sealed_at: now,
                    meta,
                    bytes: out[..n].to_vec(),
                    plain,
                },
            ));
        }
        self.now = self.now + FRAME;
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step();
        }
    }
}

#[test]
fn twenty_joins_and_leaves_lose_no_frame_and_lock_out_joiners_and_leavers() {
    let (a, b) = (SessionToken(1), SessionToken(2));
    let mut w = World {
        now: Time::ZERO,
        members: BTreeMap::new(),
        ctl: Vec::new(),
        udp: Vec::new(),
        seq: 0,
    };
    w.join(a);
    w.join(b);
    w.run_for(Duration::from_secs(1));
    // 20 membership changes: 10 joiners, each leaving again, one second apart.
    let mut events = 0;
    for i in 0..10u32 {
        let x = SessionToken(10 + i);
        w.join(x);
        events += 1;
        w.run_for(Duration::from_secs(1));
        w.leave(x);
        events += 1;
        w.run_for(Duration::from_secs(1));
    }
    assert_eq!(events, 20);
    w.run_for(Duration::from_secs(1));

    // A and B were present throughout: from the moment both had each other's first rotated key,
    // not one frame between them failed, across every rotation.
    let settle = Time::ZERO + LEAD + CTRL_LATENCY * 2;
    for (me, other) in [(a, b), (b, a)] {
        let m = &w.members[&me];
        let relevant: Vec<_> = m
            .opened
            .iter()
            .filter(|(t, from, _)| *from == other && *t >= settle)
            .collect();
        assert!(relevant.len() > 1000, "{} frames", relevant.len());
        let failed: Vec<_> = relevant.iter().filter(|(_, _, r)| r.is_err()).collect();
        assert!(
            failed.is_empty(),
            "{me} lost {} frames: {:?}",
            failed.len(),
            &failed[..failed.len().min(5)]
        );
        assert!(m.keys.rotations() >= 20, "{} rotations", m.keys.rotations());
    }
    // From joiners too, every frame sealed once the joiner's key could have arrived (two control
    // hops after it joined) decrypts at A and B.
    for me in [a, b] {
        for (t, from, r) in &w.members[&me].opened {
            if let Some(x) = w.members.get(from).filter(|_| *from != a && *from != b) {
                if *t >= x.joined + CTRL_LATENCY * 2 {
                    assert!(r.is_ok(), "{me} failed a frame of joiner {from}: {r:?}");
                }
            }
        }
    }

    for i in 0..10u32 {
        let x = &w.members[&SessionToken(10 + i)];
        let left = x.left.unwrap();
        for (t, from, r) in &x.opened {
            if *from != a && *from != b {
                continue;
            }
            if *t < x.joined {
                // A joiner cannot read what was said before it joined.
                assert!(r.is_err(), "joiner {i} read a frame from before it joined");
            }
            if *t >= x.joined + LEAD + CTRL_LATENCY * 3 && *t < left {
                assert!(r.is_ok(), "member {i} failed a frame while present: {r:?}");
            }
            if *t >= left + CTRL_LATENCY + LEAD + FRAME {
                // The rotation after the leave locks the leaver out.
                assert_eq!(
                    *r,
                    Err(DecryptError::UnknownKeyId),
                    "leaver {i} read later audio"
                );
            }
        }
    }
}

#[test]
fn a_forged_or_misattributed_key_blob_is_rejected_and_counted() {
    let t = Time::ZERO;
    let mut a = GroupKeys::new(Identity::from_secret([1; 32]), LEAD);
    let mut b = GroupKeys::new(Identity::from_secret([2; 32]), LEAD);
    let mut c = GroupKeys::new(Identity::from_secret([3; 32]), LEAD);
    let (sa, sb, sc) = (SessionToken(1), SessionToken(2), SessionToken(3));
    a.set_session(sa).unwrap();
    b.set_session(sb).unwrap();
    c.set_session(sc).unwrap();
    a.member_identity(t, sb, &b.identity_blob()).unwrap();
    a.member_identity(t, sc, &c.identity_blob()).unwrap();
    b.member_identity(t, sa, &a.identity_blob()).unwrap();
    b.member_identity(t, sc, &c.identity_blob()).unwrap();
    let to_b = std::iter::from_fn(|| a.poll_delivery())
        .find(|d| d.to == sb)
        .unwrap();
    // Claimed to come from C: does not verify under C's identity.
    assert!(b.handle_key(sc, &to_b.blob).is_err());
    let mut flipped = to_b.blob.clone();
    flipped[50] ^= 0x20;
    assert!(b.handle_key(sa, &flipped).is_err());
    assert_eq!(b.rejected_keys(), 2);
    assert!(b.handle_key(sa, &to_b.blob).is_ok());
    assert!(b.has_keys_from(sa));
}
