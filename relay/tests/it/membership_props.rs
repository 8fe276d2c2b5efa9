//! Property: whatever interleaving of connects, joins, switches, leaves, chats and disconnects,
//! every client's view of its channel (built only from the events it received) equals the relay's
//! truth, and every chat line reaches each member of the sender's channel exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use voice_core::Time;

use proptest::prelude::*;
use relay::config::Config;
use relay::control::{self, After, HelloContext, Outbox};
use relay::state::State;
use relay::stats::Stats;
use voice_core::proto::tcp::{ClientMessage, ServerMessage, CONTROL_VERSION};
use voice_core::proto::{ChannelId, SessionToken};

#[derive(Debug, Clone)]
enum Op {
    Connect,
    Join(usize, u32),
    Leave(usize),
    Chat(usize),
    Disconnect(usize),
    Goodbye(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Connect),
        4 => (0usize..8, 1u32..5).prop_map(|(c, ch)| Op::Join(c, ch)),
        1 => (0usize..8).prop_map(Op::Leave),
        2 => (0usize..8).prop_map(Op::Chat),
        1 => (0usize..8).prop_map(Op::Disconnect),
        1 => (0usize..8).prop_map(Op::Goodbye),
    ]
}

#[derive(Default, Debug)]
struct View {
    channel: Option<(ChannelId, BTreeSet<SessionToken>)>,
    chats: u64,
}

fn deliver(out: Outbox, views: &mut BTreeMap<SessionToken, View>) {
    for (to, msg) in out {
        let Some(v) = views.get_mut(&to) else {
            continue;
        };
        match msg {
            ServerMessage::Joined { channel } => {
                v.channel = Some((
                    channel.id,
                    channel.users.iter().map(|u| u.session).collect(),
                ))
            }
            ServerMessage::Left { .. } => v.channel = None,
            ServerMessage::UserJoined { channel, user } => {
                if let Some((c, m)) = v.channel.as_mut() {
                    assert_eq!(*c, channel, "UserJoined for another channel");
                    m.insert(user.session);
                }
            }
            ServerMessage::UserLeft { channel, session } => {
                if let Some((c, m)) = v.channel.as_mut() {
                    assert_eq!(*c, channel, "UserLeft for another channel");
                    assert!(m.remove(&session), "UserLeft for a non-member");
                }
            }
            ServerMessage::Chat { .. } => v.chats += 1,
            _ => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn every_view_matches_the_relay(ops in proptest::collection::vec(op(), 1..120)) {
        let cfg = Config::default();
        let mut state = State::new(&cfg);
        let mut stats = Stats::new();
        let admission = relay::admission::Admission::load(&Config { open: true, ..Config::default() }).unwrap();
        let mut views: BTreeMap<SessionToken, View> = BTreeMap::new();
        let mut live: Vec<SessionToken> = Vec::new();
        let mut expected_chats: BTreeMap<SessionToken, u64> = BTreeMap::new();
        let t0 = Time::from_millis(1000);
        for (i, op) in ops.into_iter().enumerate() {
            let now = t0 + Duration::from_secs(i as u64);
            let mut out = Outbox::new();
            let pick = |k: usize| live.get(k % live.len().max(1)).copied();
            match op {
                Op::Connect => {
                    let cx = HelloContext { conn: i, secret: [1; 32], now, unix_ms: 0, max_sessions: 1000, admission: &admission };
                    let hello = ClientMessage::Hello { version: CONTROL_VERSION, name: format!("u{i}"), token: None };
                    let (s, _welcome) = control::hello(&mut state, &mut stats, hello, cx).unwrap();
                    views.insert(s, View::default());
                    live.push(s);
                }
                Op::Join(k, ch) => if let Some(s) = pick(k) {
                    control::handle(&mut state, &mut stats, s, ClientMessage::JoinChannel { channel: ChannelId(ch) }, now, 0, &mut out);
                },
                Op::Leave(k) => if let Some(s) = pick(k) {
                    control::handle(&mut state, &mut stats, s, ClientMessage::LeaveChannel, now, 0, &mut out);
                },
                Op::Chat(k) => if let Some(s) = pick(k) {
                    if let Some(ch) = state.sessions.get(&s).and_then(|x| x.channel) {
                        for &m in state.members(ch) {
                            *expected_chats.entry(m).or_default() += 1;
                        }
                    }
                    control::handle(&mut state, &mut stats, s, ClientMessage::Chat { text: "hi".into() }, now, 0, &mut out);
                },
                Op::Disconnect(k) => if let Some(s) = pick(k) {
                    control::disconnect(&mut state, s, &mut out);
                    live.retain(|x| *x != s);
                    views.remove(&s);
                },
                Op::Goodbye(k) => if let Some(s) = pick(k) {
                    let after = control::handle(&mut state, &mut stats, s, ClientMessage::Goodbye, now, 0, &mut out);
                    prop_assert_eq!(after, After::Close);
                    live.retain(|x| *x != s);
                    views.remove(&s);
                },
            }
            deliver(out, &mut views);
            for s in &live {
                let truth = state.sessions.get(s).and_then(|x| x.channel)
                    .map(|ch| (ch, state.members(ch).iter().copied().collect::<BTreeSet<_>>()));
                prop_assert_eq!(&views[s].channel, &truth, "view of {:?}", s);
                prop_assert_eq!(views[s].chats, expected_chats.get(s).copied().unwrap_or(0));
            }
        }
    }
}
