//! The loop's side of the cluster directory ([`crate::directory`]): publishing the members of
//! hosted rooms when they change, telling every session about remote changes, and merging remote
//! members into the channel lists this relay sends.

use voice_core::proto::tcp::ServerMessage;

use super::Relay;
use crate::control::Outbox;

impl Relay {
    /// Cluster mode: hands the member list of every hosted room that changed since the last call
    /// to the cluster thread (which writes it to Redis). Cheap when nothing changed: one compare
    /// of the state version.
    pub(super) fn publish_hosted_members(&mut self) {
        let Some(cluster) = &self.cluster else { return };
        let v = self.state.version();
        if v == self.members_version {
            return;
        }
        self.members_version = v;
        for &channel in &self.hosted {
            // Names never change within a session: the tokens tell whether the list did.
            let members = self.state.members(channel);
            if self.published_members.get(&channel).map(Vec::as_slice) == Some(members) {
                continue;
            }
            self.published_members.insert(channel, members.to_vec());
            let Some(info) = self.state.channel_info(channel) else {
                continue;
            };
            cluster.request(crate::cluster::Request::Members {
                channel,
                users: info.users,
            });
        }
    }

    /// Queues `msg` for every session of this relay.
    pub(super) fn tell_everyone(&self, msg: &ServerMessage, out: &mut Outbox) {
        out.extend(self.state.sessions.keys().map(|&s| (s, msg.clone())));
    }

    /// `Welcome` and `ChannelList` with the members of rooms hosted elsewhere added (`None`:
    /// `msg` goes out as it is).
    pub(super) fn with_remote_members(&self, msg: &ServerMessage) -> Option<ServerMessage> {
        if self.directory.is_empty() {
            return None;
        }
        let mut m = msg.clone();
        match &mut m {
            ServerMessage::Welcome { channels, .. } | ServerMessage::ChannelList { channels } => {
                self.directory.merge(channels)
            }
            _ => return None,
        }
        Some(m)
    }
}
