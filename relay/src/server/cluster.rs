//! The loop's side of the cluster ([`crate::cluster`], [`crate::directory`]): joins waiting for a
//! placement, redirects, rooms lost to another relay, publishing the members of hosted rooms when
//! they change, telling every session when a channel's members change (here or elsewhere), and
//! merging remote members into the channel lists this relay sends.

use voice_proto::tcp::{ClientMessage, ServerMessage};
use voice_proto::SessionToken;

use super::{unix_ms, Relay};

impl Relay {
    /// Cluster mode: a `JoinChannel` for a configured room this relay does not host waits for
    /// the placement thread. Returns true when `msg` was taken.
    pub(super) fn defer_join(&mut self, who: SessionToken, msg: &ClientMessage) -> bool {
        let (Some(cluster), ClientMessage::JoinChannel { channel }) = (&self.cluster, msg) else {
            return false;
        };
        if self.hosted.contains(channel) || !self.state.channels.contains_key(channel) {
            return false;
        }
        // The join costs a control token like any request (a flood is refused by `handle`).
        let now = self.clock.now();
        if !self
            .state
            .sessions
            .get_mut(&who)
            .is_some_and(|s| s.control.take(now, 1.0))
        {
            return false;
        }
        if !self.pending_joins.iter().any(|(_, c)| c == channel) {
            cluster.request(crate::cluster::Request::Place(*channel));
        }
        self.pending_joins.push((who, *channel));
        true
    }

    /// Answers the joins waiting for placements, and moves members of rooms this relay lost.
    pub(super) fn take_placements(&mut self) {
        use crate::cluster::Notice;
        use voice_proto::tcp::{ErrorCode, ServerMessage};
        let Some(cluster) = &self.cluster else { return };
        let me = cluster.me.clone();
        let mut notices = Vec::new();
        while let Some(n) = cluster.try_notice() {
            notices.push(n);
        }
        let now = self.clock.now();
        let mut out = std::mem::take(&mut self.outbox);
        for n in notices {
            match n {
                Notice::Placed { channel, owner } => {
                    let waiting: Vec<SessionToken> = self
                        .pending_joins
                        .iter()
                        .filter(|(_, c)| *c == channel)
                        .map(|(w, _)| *w)
                        .collect();
                    self.pending_joins.retain(|(_, c)| *c != channel);
                    match owner {
                        Some(o) if o == me => {
                            self.hosted.insert(channel);
                            // Whatever the directory showed for it is stale now.
                            if self.directory.apply(channel, None, true).is_some() {
                                self.directory_dirty = true;
                            }
                            for who in waiting {
                                crate::control::handle(
                                    &mut self.state,
                                    &mut self.stats,
                                    who,
                                    ClientMessage::JoinChannel { channel },
                                    now,
                                    unix_ms(),
                                    &mut out,
                                );
                            }
                        }
                        Some(o) => {
                            for who in waiting {
                                out.push((
                                    who,
                                    ServerMessage::Redirect {
                                        channel,
                                        relay: o.clone(),
                                    },
                                ));
                            }
                        }
                        None => {
                            for who in waiting {
                                out.push((
                                    who,
                                    crate::control::error(
                                        ErrorCode::Placement,
                                        "room placement unavailable",
                                    ),
                                ));
                            }
                        }
                    }
                }
                // A room this relay does not offer (a cluster with mismatched channel
                // configurations) is not shown.
                Notice::Directory { channel, .. }
                    if !self.state.channels.contains_key(&channel) => {}
                Notice::Directory { channel, entry } => {
                    let hosted = self.hosted.contains(&channel);
                    if self.directory.apply(channel, entry, hosted).is_some() {
                        self.directory_dirty = true;
                    }
                }
                Notice::Resynced => self.directory.prune(),
                Notice::Lost { channel, owner } => {
                    self.hosted.remove(&channel);
                    self.published_members.remove(&channel);
                    if let Some(o) = owner {
                        for &m in self.state.members(channel) {
                            out.push((
                                m,
                                ServerMessage::Redirect {
                                    channel,
                                    relay: o.clone(),
                                },
                            ));
                        }
                    }
                }
            }
        }
        self.deliver(&mut out);
        self.outbox = out;
    }

    /// Cluster mode, once per loop turn: hands the member list of every hosted room that changed
    /// to the cluster thread (which writes it to Redis), and sends every session a
    /// `ChannelMembers` for every channel whose list (this relay's members and those hosted
    /// elsewhere) changed since it was last told. Cheap when nothing changed: one compare of the
    /// state version and a flag.
    pub(super) fn cluster_turn(&mut self) {
        let Some(cluster) = &self.cluster else { return };
        let v = self.state.version();
        if v == self.members_version && !self.directory_dirty {
            return;
        }
        self.members_version = v;
        self.directory_dirty = false;
        for &channel in &self.hosted {
            // Members, names, ids and mute / deafen states: any change is republished.
            let Some(info) = self.state.channel_info(channel) else {
                continue;
            };
            if self.published_members.get(&channel) == Some(&info.users) {
                continue;
            }
            self.published_members.insert(channel, info.users.clone());
            cluster.request(crate::cluster::Request::Members {
                channel,
                users: info.users,
            });
        }
        let me = cluster.me.clone();
        let mut out = std::mem::take(&mut self.outbox);
        let channels: Vec<_> = self.state.channels.keys().copied().collect();
        for channel in channels {
            let mut users = self
                .state
                .channel_info(channel)
                .map(|i| i.users)
                .unwrap_or_default();
            users.extend(self.directory.users(channel).iter().cloned());
            let same = self
                .told
                .get(&channel)
                .map_or(users.is_empty(), |t| *t == users);
            if same {
                continue;
            }
            let relay = if self.hosted.contains(&channel) {
                me.clone()
            } else {
                self.directory.host(channel).unwrap_or_default().to_owned()
            };
            self.told.insert(channel, users.clone());
            let msg = ServerMessage::ChannelMembers {
                channel,
                relay,
                users,
            };
            out.extend(self.state.sessions.keys().map(|&s| (s, msg.clone())));
        }
        self.deliver(&mut out);
        self.outbox = out;
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
