//! Scale-out (issue 18): the cluster's directory of rooms and their members. A relay in a
//! cluster shows the members of rooms hosted by other relays under session tokens from
//! [`VOICE_FIRST_REMOTE_SESSION`] up (its own sessions stay below), in channel lists
//! (`VOICE_EVENT_CHANNEL` + `VOICE_EVENT_MEMBER`) and, live, in `VOICE_EVENT_CHANNEL_MEMBERS`
//! (every channel's whole list, sent whenever it changes).
//!
//! A remote member is no session of the relay this client is connected to: whispering to it is
//! dropped by the relay, and kicking it fails with `VOICE_EVENT_ERROR` code 9 (`NoSuchSession`).
//! To talk with it, join its channel (the client follows the relay's redirect to the host).

use ::voice_client::ChannelId;
use voice_core::proto::tcp::UserInfo;

use crate::client::voice_event;

/// A relay in a cluster: the members of `channel` changed (`text`: the `IP:PORT` of the relay
/// hosting it, empty when none is known; `value`: how many). One `VOICE_EVENT_MEMBER` per member
/// follows (`channel`, `session`, `name`, and stable id, mute and deafen as there: the relay's
/// own sessions, then those on other relays);
/// together they replace the channel's member list.
pub const VOICE_EVENT_CHANNEL_MEMBERS: u32 = 20;

/// Sessions at or above this value are members of rooms hosted by other relays of a cluster.
pub const VOICE_FIRST_REMOTE_SESSION: u32 = 0x8000_0000;
const _: () = assert!(VOICE_FIRST_REMOTE_SESSION == voice_core::proto::FIRST_REMOTE_SESSION);

/// `VOICE_EVENT_CHANNEL_MEMBERS` and its `VOICE_EVENT_MEMBER`s.
pub(crate) fn channel_members_events(
    channel: ChannelId,
    relay: &str,
    users: Vec<UserInfo>,
    out: &mut std::collections::VecDeque<voice_event>,
) {
    let mut e = voice_event::new(VOICE_EVENT_CHANNEL_MEMBERS).text(relay);
    e.channel = channel.0;
    e.value = users.len() as f64;
    out.push_back(e);
    for u in users {
        out.push_back(voice_event::user(
            crate::client::VOICE_EVENT_MEMBER,
            channel,
            &u,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::voice_client::SessionToken;

    #[test]
    fn channel_members_become_one_event_and_a_member_event_each() {
        let mut out = std::collections::VecDeque::new();
        let users = vec![UserInfo {
            session: SessionToken(VOICE_FIRST_REMOTE_SESSION + 3),
            name: "ann".into(),
            user_id: "ann".into(),
            state: Default::default(),
        }];
        channel_members_events(ChannelId(2), "10.0.0.2:7400", users, &mut out);
        assert_eq!(out.len(), 2);
        let head = out[0];
        assert_eq!(
            (head.kind, head.channel, head.value),
            (VOICE_EVENT_CHANNEL_MEMBERS, 2, 1.0)
        );
        assert_eq!(head.text_len, "10.0.0.2:7400".len());
        let m = out[1];
        assert_eq!(m.kind, crate::client::VOICE_EVENT_MEMBER);
        assert_eq!((m.channel, m.session), (2, VOICE_FIRST_REMOTE_SESSION + 3));
        assert_eq!(m.name_len, 3);
        // None left: the head alone, counting zero.
        out.clear();
        channel_members_events(ChannelId(2), "", Vec::new(), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].value, out[0].text_len), (0.0, 0));
    }
}
