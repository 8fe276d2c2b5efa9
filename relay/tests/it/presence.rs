//! Control plane over real sockets: presence order, chat scope, ping, disconnects, churn.

use crate::common;

use common::*;
use voice_core::proto::tcp::{ClientMessage, ErrorCode, ServerMessage};
use voice_core::proto::{ChannelId, SessionToken};

fn user_joined(m: ServerMessage) -> (ChannelId, SessionToken) {
    match m {
        ServerMessage::UserJoined { channel, user } => (channel, user.session),
        m => panic!("expected UserJoined, got {m:?}"),
    }
}

fn user_left(m: ServerMessage) -> (ChannelId, SessionToken) {
    match m {
        ServerMessage::UserLeft { channel, session } => (channel, session),
        m => panic!("expected UserLeft, got {m:?}"),
    }
}

#[test]
fn welcome_then_presence_in_order_to_exactly_the_right_members() {
    let relay = start(|_| {});
    let addr = relay.local_addr();
    let mut a = Client::connect(addr, "a");
    let mut b = Client::connect(addr, "b");
    let mut c = Client::connect(addr, "c");
    assert_eq!(a.session, SessionToken(1));
    assert_eq!(b.session, SessionToken(2));
    assert!(
        a.channels.iter().all(|ch| ch.users.is_empty()),
        "nobody joined yet"
    );
    let joined = a.join(1);
    assert_eq!(joined.users.len(), 1);
    let joined = b.join(1);
    let members: Vec<_> = joined.users.iter().map(|u| u.session).collect();
    assert_eq!(members, vec![a.session, b.session]);
    assert_eq!(user_joined(a.recv()), (ChannelId(1), b.session));
    c.join(2);
    // b switches 1 -> 2: a sees b leave, c sees b join.
    b.join(2);
    assert_eq!(user_left(a.recv()), (ChannelId(1), b.session));
    assert_eq!(user_joined(c.recv()), (ChannelId(2), b.session));
    // b leaves: only c hears it, b gets Left.
    b.send(&ClientMessage::LeaveChannel);
    assert_eq!(
        b.recv(),
        ServerMessage::Left {
            channel: ChannelId(2)
        }
    );
    assert_eq!(user_left(c.recv()), (ChannelId(2), b.session));
    a.ctl.expect_silence();
    // ListChannels shows the final layout.
    a.send(&ClientMessage::ListChannels);
    let ServerMessage::ChannelList { channels } = a.recv() else {
        panic!("expected ChannelList")
    };
    let of = |id| -> Vec<SessionToken> {
        channels
            .iter()
            .find(|ch| ch.id == ChannelId(id))
            .unwrap()
            .users
            .iter()
            .map(|u| u.session)
            .collect()
    };
    assert_eq!(of(1), vec![a.session]);
    assert_eq!(of(2), vec![c.session]);
    // Unknown channel.
    a.send(&ClientMessage::JoinChannel {
        channel: ChannelId(99),
    });
    assert!(matches!(
        a.recv(),
        ServerMessage::Error {
            code: ErrorCode::NoSuchChannel,
            ..
        }
    ));
}

#[test]
fn chat_reaches_the_channel_only_and_echoes_to_sender() {
    let relay = start(|_| {});
    let mut g = group(relay.local_addr(), 1, &["a", "b"]);
    let mut other = group(relay.local_addr(), 2, &["c"]);
    g[0].send(&ClientMessage::Chat {
        text: "hello 🌍".into(),
    });
    for c in &mut g {
        match c.recv() {
            ServerMessage::Chat {
                channel,
                from,
                from_name,
                text,
                ..
            } => {
                assert_eq!(
                    (channel, from_name.as_str(), text.as_str()),
                    (ChannelId(1), "a", "hello 🌍")
                );
                let _ = from;
            }
            m => panic!("expected Chat, got {m:?}"),
        }
    }
    other[0].ctl.expect_silence();
    let mut lone = Client::connect(relay.local_addr(), "lone");
    lone.send(&ClientMessage::Chat { text: "x".into() });
    assert!(matches!(
        lone.recv(),
        ServerMessage::Error {
            code: ErrorCode::NotInChannel,
            ..
        }
    ));
}

#[test]
fn tcp_ping_is_answered() {
    let relay = start(|_| {});
    let mut a = Client::connect(relay.local_addr(), "a");
    a.send(&ClientMessage::Ping {
        client_time_us: 123_456,
    });
    assert!(
        matches!(a.recv(), ServerMessage::Pong { client_time_us: 123_456, server_time_ms } if server_time_ms > 0)
    );
}

#[test]
fn receiver_report_is_forwarded_to_the_sender() {
    let relay = start(|_| {});
    let mut g = group(relay.local_addr(), 1, &["a", "b"]);
    let a = g[0].session;
    g[1].send(&ClientMessage::ReceiverReport {
        sender: a,
        loss_permille: 12,
        jitter_ms: 3,
    });
    assert_eq!(
        g[0].recv(),
        ServerMessage::ReceiverReport {
            from: g[1].session,
            loss_permille: 12,
            jitter_ms: 3
        }
    );
    g[1].send(&ClientMessage::ReceiverReport {
        sender: SessionToken(999),
        loss_permille: 0,
        jitter_ms: 0,
    });
    assert!(matches!(
        g[1].recv(),
        ServerMessage::Error {
            code: ErrorCode::NoSuchSession,
            ..
        }
    ));
}

#[test]
fn killed_and_departing_clients_produce_user_left_and_lose_their_binding() {
    let relay = start(|_| {});
    let mut g = group(relay.local_addr(), 1, &["a", "b", "c"]);
    let c = g.pop().unwrap();
    let (c_session, c_key, c_udp) = (c.session, c.key.clone(), c.udp.try_clone().unwrap());
    drop(c); // TCP stream closed without Goodbye.
    assert_eq!(user_left(g[0].recv()), (ChannelId(1), c_session));
    assert_eq!(user_left(g[1].recv()), (ChannelId(1), c_session));
    // Its UDP binding is gone: voice from its old socket is not forwarded.
    c_udp
        .send_to(
            &voice_bytes(&c_key, c_session, 1, SessionToken::NONE, b"ghost"),
            relay.local_addr(),
        )
        .unwrap();
    g[0].expect_no_udp();
    // Goodbye: clean close and UserLeft.
    let b = g.pop().unwrap();
    let mut b = b;
    b.send(&ClientMessage::Goodbye);
    assert!(b.ctl.closed_within(WAIT));
    assert_eq!(user_left(g[0].recv()), (ChannelId(1), b.session));
    let stats = g[0].stats();
    assert_eq!(stats["sessions"], 1);
    assert!(stats["drop_unknown_session"] >= 1);
}

#[test]
fn rapid_join_leave_churn_ends_consistent() {
    let relay = start(|c| {
        c.control_messages.rate = 10_000.0;
        c.control_messages.burst = 10_000.0;
    });
    let addr = relay.local_addr();
    let mut clients: Vec<Client> = (0..6)
        .map(|i| Client::connect(addr, &format!("u{i}")))
        .collect();
    // Pipeline many requests without waiting for answers.
    for round in 0..50u32 {
        for (i, c) in clients.iter_mut().enumerate() {
            let ch = 1 + (round + i as u32) % 3;
            c.send(&ClientMessage::JoinChannel {
                channel: ChannelId(ch),
            });
            if (round + i as u32).is_multiple_of(7) {
                c.send(&ClientMessage::LeaveChannel);
            }
        }
    }
    // Final placement: client i in channel 1 + i % 3.
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(&ClientMessage::JoinChannel {
            channel: ChannelId(1 + i as u32 % 3),
        });
    }
    // Each client's own view must match (drain until its last Joined arrives).
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(&ClientMessage::Ping { client_time_us: 7 });
        let mut last_joined = None;
        loop {
            match c.recv() {
                ServerMessage::Joined { channel } => last_joined = Some(channel.id),
                ServerMessage::Pong {
                    client_time_us: 7, ..
                } => break,
                _ => {}
            }
        }
        assert_eq!(last_joined, Some(ChannelId(1 + i as u32 % 3)));
    }
    clients[0].send(&ClientMessage::ListChannels);
    let ServerMessage::ChannelList { channels } = clients[0]
        .ctl
        .recv_until(|m| matches!(m, ServerMessage::ChannelList { .. }))
    else {
        unreachable!()
    };
    for ch in &channels {
        let mut got: Vec<_> = ch.users.iter().map(|u| u.session).collect();
        got.sort();
        let mut want: Vec<_> = clients
            .iter()
            .enumerate()
            .filter(|(i, _)| ChannelId(1 + *i as u32 % 3) == ch.id)
            .map(|(_, c)| c.session)
            .collect();
        want.sort();
        assert_eq!(got, want, "membership of {}", ch.id);
    }
    // Voice follows the final membership.
    let d = clients[0].talk(b"final");
    clients[3].expect_udp(&d);
    clients[1].expect_no_udp();
}
