//! The relay's counters: one `u64` per [`Counter`], indexed by the enum, so counting on the hot path
//! is an array increment with no hashing, locking or allocation.
//!
//! Every drop has its own counter (named `drop_<reason>`), so an operator (or a test) asking with
//! `StatsRequest` can tell *why* traffic was refused. Gauges (`sessions`, `connections`,
//! `udp_bound`) are written by the loop before each snapshot.

macro_rules! counters {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// One counter of [`Stats`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(usize)]
        pub enum Counter {
            $($(#[$doc])* $variant,)*
        }

        impl Counter {
            /// Every counter, in report order.
            pub const ALL: &'static [Counter] = &[$(Counter::$variant,)*];

            /// The name used in `Stats` replies and log lines.
            pub fn name(self) -> &'static str {
                match self {
                    $(Counter::$variant => $name,)*
                }
            }
        }
    };
}

counters! {
    /// Gauge: sessions that completed the handshake.
    Sessions => "sessions",
    /// Gauge: open TCP connections (with or without a session).
    Connections => "connections",
    /// Gauge: sessions with a bound UDP address.
    UdpBound => "udp_bound",
    /// Sessions created since start.
    SessionsTotal => "sessions_total",
    /// Datagrams received.
    UdpRxPackets => "udp_rx_packets",
    /// Bytes received in datagrams.
    UdpRxBytes => "udp_rx_bytes",
    /// Voice datagrams accepted for forwarding.
    VoiceAccepted => "voice_accepted",
    /// Datagrams sent to recipients (one per recipient).
    ForwardedPackets => "forwarded_packets",
    /// Bytes sent to recipients.
    ForwardedBytes => "forwarded_bytes",
    /// Copies of channel voice not sent: the recipient is out of the sender's range (3D channel).
    VoiceCulled => "voice_culled",
    /// Forwarded datagrams the kernel refused (send buffer full or error).
    DropSendFailed => "drop_send_failed",
    /// Datagram shorter than the header.
    DropTooShort => "drop_too_short",
    /// Datagram longer than the maximum.
    DropTooLong => "drop_too_long",
    /// Unknown protocol version.
    DropBadVersion => "drop_bad_version",
    /// Unknown datagram kind, or a kind only the relay sends.
    DropBadKind => "drop_bad_kind",
    /// Sender token 0.
    DropNoSender => "drop_no_sender",
    /// Positional flag set but the block is cut short or not finite.
    DropBadPosition => "drop_bad_position",
    /// Sender token not a live session.
    DropUnknownSession => "drop_unknown_session",
    /// Source address differs from the one bound to the sender token.
    DropUnboundSource => "drop_unbound_source",
    /// Sequence number already seen.
    DropDuplicate => "drop_duplicate",
    /// Sequence number too far behind the highest seen.
    DropTooOld => "drop_too_old",
    /// Sender over its packets/s budget.
    DropPacketBudget => "drop_packet_budget",
    /// Sender over its bytes/s budget.
    DropByteBudget => "drop_byte_budget",
    /// Channel voice from a sender in no channel.
    DropNotInChannel => "drop_not_in_channel",
    /// Whisper to a session that does not exist or is not bound.
    DropWhisperNoTarget => "drop_whisper_no_target",
    /// Whisper to oneself.
    DropWhisperSelf => "drop_whisper_self",
    /// Registrations accepted.
    RegisterOk => "register_ok",
    /// Registration for an unknown session.
    RegisterUnknownSession => "register_unknown_session",
    /// Registration with a bad MAC or length.
    RegisterBadProof => "register_bad_proof",
    /// Registration with a counter not above the last one.
    RegisterReplay => "register_replay",
    /// UDP pings answered.
    UdpPings => "udp_pings",
    /// Control frames received.
    TcpFramesIn => "tcp_frames_in",
    /// Control frames that failed to decode (answered with `Error{Malformed}`).
    TcpMalformed => "tcp_malformed",
    /// Connections closed for a length prefix above the cap.
    TcpOversizeClosed => "tcp_oversize_closed",
    /// Connections closed by the handshake timeout.
    TcpHandshakeTimeout => "tcp_handshake_timeout",
    /// Connections closed by the idle timeout.
    TcpIdleTimeout => "tcp_idle_timeout",
    /// Connections closed because their outgoing buffer overflowed.
    TcpOverflowClosed => "tcp_overflow_closed",
    /// Connections refused because the relay is at its connection limit.
    TcpRefused => "tcp_refused",
    /// Connections closed for a TLS failure: a failed handshake (a plaintext client on the TLS
    /// port, a certificate the client refused), a bad record.
    TlsFailed => "tls_failed",
    /// Handshakes rejected (version, name, full, not-Hello).
    HandshakeRejected => "handshake_rejected",
    /// Control requests refused by the per-session rate limit.
    TcpRateLimited => "tcp_rate_limited",
    /// Chat lines routed.
    ChatMessages => "chat_messages",
    /// `Hello` without an access token on a relay that requires one.
    TokenMissing => "token_missing",
    /// Access token expired or not yet valid.
    TokenExpired => "token_expired",
    /// Access token whose signature does not verify.
    TokenBadSignature => "token_bad_signature",
    /// Access token signed by a key the relay does not know.
    TokenUnknownKey => "token_unknown_key",
    /// Access token for another relay (wrong `aud`).
    TokenWrongAudience => "token_wrong_audience",
    /// Access token that does not parse, is too long, or names an algorithm other than EdDSA.
    TokenMalformed => "token_malformed",
    /// Requests refused by the session's token (channel outside its list, admin action
    /// without the admin claim).
    Forbidden => "forbidden",
    /// Whisper outside the sender's token scope.
    DropWhisperForbidden => "drop_whisper_forbidden",
    /// Datagram whose authentication tag does not verify with its sender session's key
    /// (spoofed, altered, or tagged with another session's key).
    DropBadTag => "drop_bad_tag",
    /// Gauge: sessions whose voice travels through the control connection (tunnel fallback).
    Tunneled => "tunneled",
    /// Datagrams received through a tunnel (`Tunnel` messages with a datagram).
    TunnelRxPackets => "tunnel_rx_packets",
    /// Copies of voice datagrams queued into tunnels, one per tunneled recipient.
    TunnelForwarded => "tunnel_forwarded",
    /// Joins refused: the channel is at its `max_members` cap.
    JoinChannelFull => "join_channel_full",
    /// Joins refused: the joiner's token subject is not on the channel's `allow` list.
    JoinNotAllowed => "join_not_allowed",
    /// Joins refused: a member of the channel already uses the joiner's display name.
    JoinNameTaken => "join_name_taken",
    /// Sessions an admin kicked (bans not included).
    Kicks => "kicks",
    /// Sessions an admin banned.
    Bans => "bans",
    /// `Hello`s refused because their user is banned.
    HelloBanned => "hello_banned",
    /// Sessions ended because their access token expired.
    TokenExpiredClosed => "token_expired_closed",
}

/// Number of counters.
pub const COUNTERS: usize = Counter::ALL.len();

/// All counters of one relay.
#[derive(Debug, Clone)]
pub struct Stats {
    values: [u64; COUNTERS],
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            values: [0; COUNTERS],
        }
    }
}

impl Stats {
    /// All zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one.
    #[inline]
    pub fn inc(&mut self, c: Counter) {
        self.values[c as usize] += 1;
    }

    /// Adds `n`.
    #[inline]
    pub fn add(&mut self, c: Counter, n: u64) {
        self.values[c as usize] += n;
    }

    /// Overwrites a gauge.
    pub fn set(&mut self, c: Counter, v: u64) {
        self.values[c as usize] = v;
    }

    /// The current value.
    pub fn get(&self, c: Counter) -> u64 {
        self.values[c as usize]
    }

    /// Every counter as `(name, value)`, in [`Counter::ALL`] order (the `Stats` reply body).
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        Counter::ALL
            .iter()
            .map(|&c| (c.name().to_owned(), self.get(c)))
            .collect()
    }

    /// Sum of every `drop_*` counter.
    pub fn total_drops(&self) -> u64 {
        Counter::ALL
            .iter()
            .filter(|c| c.name().starts_with("drop_"))
            .map(|&c| self.get(c))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_snapshot_lists_all() {
        let mut names: Vec<_> = Counter::ALL.iter().map(|c| c.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), COUNTERS);
        let mut s = Stats::new();
        s.inc(Counter::DropTooShort);
        s.add(Counter::DropWhisperSelf, 2);
        assert_eq!(s.total_drops(), 3);
        let snap = s.snapshot();
        assert_eq!(snap.len(), COUNTERS);
        assert!(snap.contains(&("drop_too_short".to_owned(), 1)));
    }
}
