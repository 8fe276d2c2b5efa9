//! The session model: what the UI shows, updated only by [`SessionState::apply_event`].
//!
//! This module owns the channel tree (channels → users), who is speaking, the chat log, notices
//! and connection status. It knows nothing about egui or the network: every engine [`Event`] goes
//! through one pure function, so tests feed synthetic events and check the result without a relay.
//!
//! Presence is channel-scoped in the protocol: `UserJoined` / `UserLeft` only arrive for our own
//! channel. The rest of the tree comes from `ChannelList` snapshots, which the app asks for every
//! couple of seconds (see [`crate::app`]). A user is in at most one channel, so adding a user to one
//! channel removes them from every other. In a cluster, `ChannelMembers` replaces a channel's
//! members live, with those on other relays ([`SessionToken::is_remote`]) too.

use std::collections::{BTreeMap, HashMap};

use voice_client::{
    ChannelId, ConnectionStatus, Event, SessionToken, UserInfo, VoicePath, VoiceState,
};

/// Most chat lines kept (older ones are dropped first).
pub const MAX_CHAT_LINES: usize = 1000;
/// Most notices kept.
pub const MAX_NOTICES: usize = 20;

/// Where the connection stands, as the UI shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Status {
    /// The engine is starting and has not been welcomed yet.
    #[default]
    Connecting,
    /// Welcomed by the relay.
    Connected {
        /// UDP is bound too (voice flows).
        udp: bool,
    },
    /// The connection dropped (the engine reconnects with backoff).
    Disconnected {
        /// Why.
        reason: String,
    },
}

/// One channel of the tree.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChannelNode {
    /// Display name.
    pub name: String,
    /// Members by session.
    pub users: BTreeMap<SessionToken, Member>,
}

/// A member of a channel as the tree shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Member {
    /// Display name.
    pub name: String,
    /// Stable user id (per-user volume and mute are remembered by it).
    pub user_id: String,
    /// Their own mute / deafen.
    pub state: VoiceState,
}

impl From<UserInfo> for Member {
    fn from(u: UserInfo) -> Member {
        Member {
            name: u.name,
            user_id: u.user_id,
            state: u.state,
        }
    }
}

/// One line of the chat log (chat or a system line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLine {
    /// The channel it was said in (`None` for system lines).
    pub channel: Option<ChannelId>,
    /// Sender name as displayed (empty for system lines; duplicates disambiguated, "bob (2)").
    pub from: String,
    /// We sent it.
    pub own: bool,
    /// The text.
    pub text: String,
    /// Wall-clock time in Unix milliseconds (relay time for chat, local for system lines).
    pub unix_ms: u64,
}

impl ChatLine {
    /// True for lines the client itself wrote (connection changes, errors).
    pub fn is_system(&self) -> bool {
        self.channel.is_none()
    }
}

/// Chat lines that arrived for a channel while it was not in view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Unread {
    /// Lines not seen.
    pub lines: usize,
    /// Of these, lines that mention our name.
    pub mentions: usize,
}

/// How a user is heard right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Speaking {
    /// The voice is a whisper (to us, or from us for our own session).
    pub whisper: bool,
}

/// Local per-user choices (mixing gain and mute), remembered by stable user id across sessions.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct UserPrefs {
    /// Gain, 0–4 (1 = unchanged).
    pub volume: f32,
    /// Muted locally.
    pub muted: bool,
}

impl Default for UserPrefs {
    fn default() -> Self {
        UserPrefs {
            volume: 1.0,
            muted: false,
        }
    }
}

/// Everything the UI shows about one connection, rebuilt from engine events.
#[derive(Debug, Clone, Default)]
pub struct SessionState {
    /// Connection status.
    pub status: Status,
    /// The way voice travels while connected (UDP, or the tunnel through the control connection).
    pub voice_path: Option<VoicePath>,
    /// Our session token once welcomed.
    pub me: Option<SessionToken>,
    /// The name the relay accepted.
    pub my_name: String,
    /// Our channel.
    pub my_channel: Option<ChannelId>,
    /// The channel tree.
    pub channels: BTreeMap<ChannelId, ChannelNode>,
    /// Who is heard right now.
    pub speaking: HashMap<SessionToken, Speaking>,
    /// Chat and system lines, oldest first.
    pub chat: Vec<ChatLine>,
    /// Audio notices and errors worth a banner, oldest first.
    pub notices: Vec<String>,
    /// Audio notices alone, in plain language (see [`plain_audio_notice`]); the audio panel shows
    /// them once the banner is dismissed.
    pub audio_notices: Vec<String>,
    /// Last TCP round trip in ms.
    pub rtt_ms: Option<f64>,
    /// The relay's counters from the last `ServerStats`.
    pub server_counters: Vec<(String, u64)>,
    /// Local per-user volume and mute.
    pub prefs: HashMap<SessionToken, UserPrefs>,
    /// Set by `ChannelJoined`: the app should refresh the channel list now.
    pub want_channel_list: bool,
    /// A certificate fingerprint just trusted on first use, for the app to save with the server
    /// (taken by it).
    pub trusted_first_use: Option<String>,
    /// Unread chat per channel: lines from others for a channel other than ours (the chat shows
    /// our channel). Cleared by joining the channel, or by showing all channels
    /// ([`SessionState::mark_read`]).
    pub unread: BTreeMap<ChannelId, Unread>,
}

impl SessionState {
    /// Applies one engine event. `now_unix_ms` stamps system lines.
    pub fn apply_event(&mut self, event: Event, now_unix_ms: u64) {
        match event {
            Event::Connected { session, name } => {
                self.status = Status::Connected { udp: false };
                self.me = Some(session);
                self.my_name = name.clone();
                // Session tokens are handed out afresh on every welcome (a restarted relay
                // numbers them from 1 again, so an old token may now be someone else): the
                // members shown are those of the next channel list, not the last connection's.
                for node in self.channels.values_mut() {
                    node.users.clear();
                }
                self.system(
                    format!("connected as {name} (session {})", session.0),
                    now_unix_ms,
                );
            }
            Event::UdpReady => self.status = Status::Connected { udp: true },
            Event::Status(status) => {
                self.voice_path = match status {
                    ConnectionStatus::Connected { path } => Some(path),
                    _ => None,
                };
                // Voice flows over the tunnel too, without a `UdpReady`.
                if self.voice_path.is_some() && matches!(self.status, Status::Connected { .. }) {
                    self.status = Status::Connected { udp: true };
                }
            }
            Event::ServerFingerprint {
                fingerprint,
                first_use,
                accepted,
            } => {
                if accepted && first_use {
                    self.trusted_first_use = Some(fingerprint.clone());
                }
                let what = match (accepted, first_use) {
                    (true, true) => "trusted on first use",
                    (true, false) => "verified",
                    (false, _) => "REFUSED",
                };
                self.system(
                    format!("relay certificate {fingerprint}: {what}"),
                    now_unix_ms,
                );
            }
            Event::Disconnected { reason, .. } => {
                // One chat line per lost connection, not one per failed retry.
                if matches!(self.status, Status::Connected { .. }) {
                    self.system(format!("disconnected: {reason}"), now_unix_ms);
                }
                self.status = Status::Disconnected { reason };
                self.speaking.clear();
                self.my_channel = None;
                // Nothing measured any more: no stale ping in the status bar.
                self.rtt_ms = None;
            }
            Event::ChannelList { channels } => {
                self.channels = channels
                    .into_iter()
                    .map(|c| {
                        let users = c
                            .users
                            .into_iter()
                            .map(|u| (u.session, Member::from(u)))
                            .collect();
                        (
                            c.id,
                            ChannelNode {
                                name: c.name,
                                users,
                            },
                        )
                    })
                    .collect();
                // Our own channel is authoritative from presence events; a list cannot predate
                // our join in a way that drops us, but make sure we show up where we are.
                if let (Some(me), Some(ch)) = (self.me, self.my_channel) {
                    self.place_me(ch, me);
                }
            }
            Event::ChannelJoined { channel } => {
                self.my_channel = Some(channel.id);
                let node = self.channels.entry(channel.id).or_default();
                node.name = channel.name.clone();
                node.users.clear();
                for u in channel.users {
                    self.place_user(channel.id, u.session, u.into());
                }
                if let Some(me) = self.me {
                    self.place_me(channel.id, me);
                }
                self.speaking.retain(|s, _| Some(*s) == self.me);
                self.unread.remove(&channel.id);
                self.want_channel_list = true;
                self.system(format!("joined #{}", channel.name), now_unix_ms);
            }
            Event::ChannelLeft { channel } => {
                if let (Some(me), Some(node)) = (self.me, self.channels.get_mut(&channel)) {
                    node.users.remove(&me);
                }
                if self.my_channel == Some(channel) {
                    self.my_channel = None;
                }
                self.speaking.clear();
                self.want_channel_list = true;
            }
            Event::UserJoined { channel, user } => {
                self.place_user(channel, user.session, user.into())
            }
            Event::UserState {
                channel,
                session,
                state,
            } => {
                if let Some(m) = self
                    .channels
                    .get_mut(&channel)
                    .and_then(|n| n.users.get_mut(&session))
                {
                    m.state = state;
                }
            }
            Event::UserLeft { channel, session } => {
                if let Some(node) = self.channels.get_mut(&channel) {
                    node.users.remove(&session);
                }
                self.speaking.remove(&session);
            }
            Event::Chat {
                channel,
                from,
                from_name,
                text,
                server_time_ms,
            } => {
                let shown = if self.user_name(from).is_some() {
                    self.display_name(from)
                } else {
                    from_name
                };
                let own = self.me == Some(from);
                if !own && self.my_channel != Some(channel) {
                    let u = self.unread.entry(channel).or_default();
                    u.lines += 1;
                    u.mentions += usize::from(mentions(&text, &self.my_name));
                }
                self.push_chat(ChatLine {
                    channel: Some(channel),
                    from: shown,
                    own,
                    text,
                    unix_ms: server_time_ms,
                });
            }
            Event::Speaking {
                session,
                speaking,
                whisper,
            } => {
                if speaking {
                    self.speaking.insert(session, Speaking { whisper });
                } else {
                    self.speaking.remove(&session);
                }
            }
            Event::Rtt { ms } => self.rtt_ms = Some(ms),
            Event::ServerStats { counters } => self.server_counters = counters,
            Event::CommandFailed { command, error } => {
                self.notice(format!("{command} failed: {error}"), now_unix_ms);
            }
            Event::AudioNotice { message } => {
                // Shown once, in plain words: in the banner, then (dismissed) in the audio panel.
                let text = plain_audio_notice(&message);
                if !self.audio_notices.contains(&text) && self.audio_notices.len() < MAX_NOTICES {
                    self.audio_notices.push(text.clone());
                    self.notices.push(text);
                    if self.notices.len() > MAX_NOTICES {
                        self.notices.remove(0);
                    }
                }
            }
            Event::Error { code, message } => {
                self.notice(format!("relay refused ({code:?}): {message}"), now_unix_ms);
            }
            Event::Removed {
                removal,
                by,
                reason,
                ban_secs,
            } => self.notice(removal_text(removal, &by, &reason, ban_secs), now_unix_ms),
            Event::UserRemoved {
                session,
                name,
                ban_secs,
            } => {
                let what = match ban_secs {
                    0 => "kicked".to_string(),
                    s => format!("banned for {}", duration_text(s)),
                };
                self.system(format!("{name} (#{}) {what}", session.0), now_unix_ms);
            }
            Event::ChannelMembers { channel, users, .. } => {
                // A relay in a cluster: the channel's whole list (members on other relays too).
                if let Some(node) = self.channels.get_mut(&channel) {
                    node.users = users
                        .into_iter()
                        .map(|u| (u.session, Member::from(u)))
                        .collect();
                }
            }
        }
    }

    /// The channel a user is in, if the tree knows it.
    pub fn channel_of(&self, session: SessionToken) -> Option<ChannelId> {
        self.channels
            .iter()
            .find(|(_, n)| n.users.contains_key(&session))
            .map(|(id, _)| *id)
    }

    /// A user as the tree shows it, if it knows them.
    pub fn member(&self, session: SessionToken) -> Option<&Member> {
        self.channels.values().find_map(|n| n.users.get(&session))
    }

    /// A user's display name, if the tree knows it.
    pub fn user_name(&self, session: SessionToken) -> Option<&str> {
        self.member(session).map(|m| m.name.as_str())
    }

    /// A channel's display name (or "channel N" when unknown).
    pub fn channel_name(&self, id: ChannelId) -> String {
        self.channels
            .get(&id)
            .map(|n| n.name.clone())
            .unwrap_or_else(|| format!("channel {}", id.0))
    }

    /// A user's name as shown: the name, or "name (2)", "name (3)" … for later sessions (by
    /// token order) that share it, so that two "bob"s can be told apart in the tree and the chat.
    pub fn display_name(&self, session: SessionToken) -> String {
        let Some(name) = self.user_name(session) else {
            return format!("#{}", session.0);
        };
        let mut same: Vec<SessionToken> = self
            .channels
            .values()
            .flat_map(|n| n.users.iter())
            .filter(|(_, m)| m.name == name)
            .map(|(s, _)| *s)
            .collect();
        same.sort();
        match same.iter().position(|s| *s == session) {
            Some(i) if i > 0 => format!("{name} ({})", i + 1),
            _ => name.to_string(),
        }
    }

    /// True while the tree and statistics describe a live connection.
    pub fn is_live(&self) -> bool {
        matches!(self.status, Status::Connected { .. })
    }

    /// Marks the chat of `channel` read (`None`: every channel).
    pub fn mark_read(&mut self, channel: Option<ChannelId>) {
        match channel {
            Some(ch) => {
                self.unread.remove(&ch);
            }
            None => self.unread.clear(),
        }
    }

    /// Local volume and mute of one user.
    pub fn prefs(&self, session: SessionToken) -> UserPrefs {
        self.prefs.get(&session).copied().unwrap_or_default()
    }

    /// Makes sure we are shown in `channel` (as the relay listed us when it did).
    fn place_me(&mut self, channel: ChannelId, me: SessionToken) {
        let member = self.member(me).cloned().unwrap_or_else(|| Member {
            name: self.my_name.clone(),
            ..Member::default()
        });
        self.place_user(channel, me, member);
    }

    fn place_user(&mut self, channel: ChannelId, session: SessionToken, member: Member) {
        for (id, node) in self.channels.iter_mut() {
            if *id != channel {
                node.users.remove(&session);
            }
        }
        let node = self.channels.entry(channel).or_insert_with(|| ChannelNode {
            name: format!("channel {}", channel.0),
            users: BTreeMap::new(),
        });
        node.users.insert(session, member);
    }

    fn push_chat(&mut self, line: ChatLine) {
        self.chat.push(line);
        if self.chat.len() > MAX_CHAT_LINES {
            let extra = self.chat.len() - MAX_CHAT_LINES;
            self.chat.drain(..extra);
        }
    }

    /// Adds a system line to the chat log.
    pub fn system(&mut self, text: String, now_unix_ms: u64) {
        self.push_chat(ChatLine {
            channel: None,
            from: String::new(),
            own: false,
            text,
            unix_ms: now_unix_ms,
        });
    }

    /// Adds a notice (banner) and the same text as a system line.
    pub fn notice(&mut self, text: String, now_unix_ms: u64) {
        self.system(text.clone(), now_unix_ms);
        self.notices.push(text);
        if self.notices.len() > MAX_NOTICES {
            self.notices.remove(0);
        }
    }
}

/// What the user sees when the relay removed the session (kick, ban, expired token).
pub fn removal_text(
    removal: voice_client::Removal,
    by: &str,
    reason: &str,
    ban_secs: u32,
) -> String {
    use voice_client::Removal;
    let by = if by.is_empty() {
        String::new()
    } else {
        format!(" by {by}")
    };
    let why = if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    };
    match removal {
        Removal::Kicked => format!("You were kicked from the relay{by}{why}"),
        Removal::Banned => format!(
            "You were banned from the relay for {}{by}{why}",
            duration_text(ban_secs)
        ),
        Removal::TokenExpired => {
            format!("Your access token expired{why}. Reconnect with a fresh token.")
        }
    }
}

/// `secs` in the largest whole unit that fits: "90 s", "5 min", "2 h", "3 d".
pub fn duration_text(secs: u32) -> String {
    match secs {
        s if s >= 86_400 && s % 86_400 == 0 => format!("{} d", s / 86_400),
        s if s >= 3_600 && s % 3_600 == 0 => format!("{} h", s / 3_600),
        s if s >= 60 && s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// Whether `text` mentions `name` (case-insensitive, not inside a longer word).
pub fn mentions(text: &str, name: &str) -> bool {
    if name.is_empty() {
        return false;
    }
    let (t, n) = (text.to_lowercase(), name.to_lowercase());
    t.match_indices(&n).any(|(i, _)| {
        let before = t[..i].chars().next_back();
        let after = t[i + n.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

/// An engine audio notice in words a new user understands, with advice that fits what is
/// missing: no microphone means silence is sent (a test tone or WAV file can stand in); no
/// speaker means nothing is heard (only another output device helps).
pub fn plain_audio_notice(message: &str) -> String {
    if message.starts_with("no capture device") {
        "No microphone could be opened, so others hear silence from you. To send sound anyway, \
         choose a test tone or a WAV file as Input."
            .into()
    } else if message.starts_with("no playback device") {
        "No speaker could be opened, so you will not hear anyone. Plug in or choose another \
         Output device."
            .into()
    } else {
        message.to_string()
    }
}

/// Splits an engine disconnect reason ("connect to … failed: …; retrying in 500 ms") into the
/// reason and the retry delay in milliseconds, if the engine will retry.
pub fn split_retry(reason: &str) -> (&str, Option<u64>) {
    if let Some((why, tail)) = reason.rsplit_once("; retrying in ") {
        if let Some(ms) = tail.strip_suffix(" ms").and_then(|m| m.parse().ok()) {
            return (why, Some(ms));
        }
    }
    (reason, None)
}

#[cfg(test)]
mod tests {
    use voice_core::proto::tcp::{ChannelInfo, UserInfo};

    use super::*;

    fn user(id: u32, name: &str) -> UserInfo {
        UserInfo {
            session: SessionToken(id),
            name: name.into(),
            user_id: name.into(),
            state: Default::default(),
        }
    }

    fn welcomed() -> SessionState {
        let mut s = SessionState::default();
        s.apply_event(
            Event::Connected {
                session: SessionToken(1),
                name: "me".into(),
            },
            0,
        );
        s.apply_event(
            Event::ChannelList {
                channels: vec![
                    ChannelInfo {
                        id: ChannelId(1),
                        name: "Lobby".into(),
                        users: vec![],
                    },
                    ChannelInfo {
                        id: ChannelId(2),
                        name: "Team A".into(),
                        users: vec![user(7, "carol")],
                    },
                ],
            },
            0,
        );
        s.apply_event(
            Event::ChannelJoined {
                channel: ChannelInfo {
                    id: ChannelId(1),
                    name: "Lobby".into(),
                    users: vec![user(1, "me"), user(5, "bob")],
                },
            },
            0,
        );
        s
    }

    #[test]
    fn join_places_members_and_me() {
        let s = welcomed();
        assert_eq!(s.my_channel, Some(ChannelId(1)));
        assert_eq!(s.channel_of(SessionToken(1)), Some(ChannelId(1)));
        assert_eq!(s.channel_of(SessionToken(5)), Some(ChannelId(1)));
        assert_eq!(s.channel_of(SessionToken(7)), Some(ChannelId(2)));
        assert!(s.want_channel_list);
    }

    #[test]
    fn a_users_own_mute_and_deafen_are_shown_and_survive_a_list_refresh() {
        let mut s = welcomed();
        let both = VoiceState {
            muted: true,
            deafened: true,
        };
        s.apply_event(
            Event::UserState {
                channel: ChannelId(1),
                session: SessionToken(5),
                state: both,
            },
            0,
        );
        assert_eq!(s.member(SessionToken(5)).map(|m| m.state), Some(both));
        // A state for someone the tree shows elsewhere (or not at all) changes nothing.
        s.apply_event(
            Event::UserState {
                channel: ChannelId(1),
                session: SessionToken(7),
                state: both,
            },
            0,
        );
        assert_eq!(
            s.member(SessionToken(7)).map(|m| m.state),
            Some(VoiceState::default())
        );
        // The next listing carries the relay's view, ids included.
        let mut bob = user(5, "bob");
        bob.user_id = "u-5".into();
        s.apply_event(
            Event::ChannelList {
                channels: vec![ChannelInfo {
                    id: ChannelId(1),
                    name: "Lobby".into(),
                    users: vec![user(1, "me"), bob],
                }],
            },
            0,
        );
        let m = s.member(SessionToken(5)).unwrap();
        assert_eq!(
            (m.user_id.as_str(), m.state),
            ("u-5", VoiceState::default())
        );
    }

    #[test]
    fn user_moves_between_channels() {
        let mut s = welcomed();
        s.apply_event(
            Event::UserJoined {
                channel: ChannelId(1),
                user: user(7, "carol"),
            },
            0,
        );
        assert_eq!(s.channel_of(SessionToken(7)), Some(ChannelId(1)));
        assert!(s.channels[&ChannelId(2)].users.is_empty());
        s.apply_event(
            Event::UserLeft {
                channel: ChannelId(1),
                session: SessionToken(7),
            },
            0,
        );
        assert_eq!(s.channel_of(SessionToken(7)), None);
    }

    #[test]
    fn channel_members_replace_a_channels_list() {
        let mut s = welcomed();
        let r = voice_core::proto::FIRST_REMOTE_SESSION;
        s.apply_event(
            Event::ChannelMembers {
                channel: ChannelId(2),
                relay: "10.0.0.2:7400".into(),
                users: vec![user(7, "carol"), user(r, "ann"), user(r + 1, "dan")],
            },
            0,
        );
        let team: Vec<&str> = s.channels[&ChannelId(2)]
            .users
            .values()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(team, ["carol", "ann", "dan"]);
        s.apply_event(
            Event::ChannelMembers {
                channel: ChannelId(2),
                relay: "10.0.0.2:7400".into(),
                users: vec![user(7, "carol")],
            },
            0,
        );
        assert_eq!(s.channel_of(SessionToken(r)), None);
        assert_eq!(s.channel_of(SessionToken(7)), Some(ChannelId(2)));
    }

    #[test]
    fn speaking_and_disconnect() {
        let mut s = welcomed();
        s.apply_event(
            Event::Speaking {
                session: SessionToken(5),
                speaking: true,
                whisper: true,
            },
            0,
        );
        assert_eq!(
            s.speaking.get(&SessionToken(5)),
            Some(&Speaking { whisper: true })
        );
        s.apply_event(
            Event::Disconnected {
                kind: voice_client::DisconnectKind::Closed,
                reason: "eof".into(),
            },
            9,
        );
        assert!(s.speaking.is_empty());
        assert_eq!(s.my_channel, None);
        assert!(matches!(s.status, Status::Disconnected { .. }));
        assert_eq!(s.chat.last().map(|l| l.unix_ms), Some(9));
    }

    #[test]
    fn list_refresh_keeps_me_in_my_channel() {
        let mut s = welcomed();
        s.apply_event(
            Event::ChannelList {
                channels: vec![ChannelInfo {
                    id: ChannelId(1),
                    name: "Lobby".into(),
                    users: vec![],
                }],
            },
            0,
        );
        assert_eq!(s.channel_of(SessionToken(1)), Some(ChannelId(1)));
        assert!(!s.channels.contains_key(&ChannelId(2)));
    }

    #[test]
    fn duplicate_names_are_told_apart() {
        let mut s = welcomed();
        s.apply_event(
            Event::UserJoined {
                channel: ChannelId(1),
                user: user(9, "bob"),
            },
            0,
        );
        assert_eq!(s.display_name(SessionToken(5)), "bob");
        assert_eq!(s.display_name(SessionToken(9)), "bob (2)");
        s.apply_event(
            Event::Chat {
                channel: ChannelId(1),
                from: SessionToken(9),
                from_name: "bob".into(),
                text: "hi".into(),
                server_time_ms: 0,
            },
            0,
        );
        assert_eq!(s.chat.last().map(|l| l.from.as_str()), Some("bob (2)"));
    }

    #[test]
    fn retry_delay_is_parsed() {
        assert_eq!(
            split_retry("connect to 1.2.3.4:5 failed: refused; retrying in 500 ms"),
            ("connect to 1.2.3.4:5 failed: refused", Some(500))
        );
        assert_eq!(split_retry("eof"), ("eof", None));
    }

    #[test]
    fn audio_notice_advice_fits_what_is_missing() {
        let mic = plain_audio_notice("no capture device (x); sending silence");
        assert!(mic.contains("microphone") && mic.contains("test tone"));
        let spk = plain_audio_notice("no playback device (x); output discarded");
        assert!(spk.contains("speaker") && !spk.contains("tone"));
        let mut s = SessionState::default();
        for _ in 0..2 {
            s.apply_event(
                Event::AudioNotice {
                    message: "no capture device (x); sending silence".into(),
                },
                0,
            );
        }
        assert_eq!(s.notices.len(), 1);
        assert!(s.chat.is_empty(), "audio notices stay out of the chat");
    }

    fn chat(channel: u32, from: u32, text: &str) -> Event {
        Event::Chat {
            channel: ChannelId(channel),
            from: SessionToken(from),
            from_name: "x".into(),
            text: text.into(),
            server_time_ms: 0,
        }
    }

    #[test]
    fn unread_counts_lines_outside_our_channel() {
        let mut s = welcomed();
        s.apply_event(chat(1, 5, "in our channel"), 0);
        s.apply_event(chat(2, 7, "hello"), 0);
        s.apply_event(chat(2, 7, "ME: look"), 0);
        s.apply_event(chat(2, 1, "our own line elsewhere"), 0);
        assert_eq!(s.unread.get(&ChannelId(1)), None);
        assert_eq!(
            s.unread[&ChannelId(2)],
            Unread {
                lines: 2,
                mentions: 1
            }
        );
        s.apply_event(
            Event::ChannelJoined {
                channel: ChannelInfo {
                    id: ChannelId(2),
                    name: "Team A".into(),
                    users: vec![user(7, "carol")],
                },
            },
            0,
        );
        assert!(s.unread.is_empty(), "joining reads the channel");
        s.apply_event(chat(1, 5, "back in the lobby"), 0);
        assert_eq!(s.unread[&ChannelId(1)].lines, 1);
        s.mark_read(None);
        assert!(s.unread.is_empty());
    }

    #[test]
    fn chat_log_is_bounded() {
        let mut s = SessionState::default();
        for i in 0..(MAX_CHAT_LINES + 5) {
            s.system(format!("{i}"), 0);
        }
        assert_eq!(s.chat.len(), MAX_CHAT_LINES);
        assert_eq!(s.chat[0].text, "5");
    }
}
