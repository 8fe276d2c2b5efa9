//! The engine thread: owns the sans-IO [`Engine`], the relay sockets and the audio streams.
//!
//! Threading model (one engine thread per client, plus the device callback threads):
//!
//! ```text
//!  app threads ──Command──► crossbeam channel ──(mio Waker)──► engine thread ──Event──► app
//!                                                               │  mio poll: TCP + UDP + waker
//!  capture callback ─► rtrb SPSC ring ─► (frame complete: wake) ┤  capture → encode → UDP
//!                                                               │
//!  playback callback ◄─ rtrb SPSC ring ◄─ (just before a pull) ◄┘  receivers → mix → playback
//! ```
//!
//! The audio clocks pace the media work ([`crate::pacing`]): a captured frame is encoded and sent
//! the moment the device (or the application) completes it, and a frame is mixed just before the
//! playback consumer needs it. Sources and sinks without a clock (files, tones, null) run on a
//! 20 ms timer. The engine thread blocks only in `poll`, with a deadline that is the earliest of
//! the next timer tick, the next mix, the engine's own timeout and a pending reconnect. Received
//! datagrams are handed to the engine the moment they arrive; decoding happens at the mix. The device callbacks touch
//! only their ring: they never lock, allocate or log, so nothing the network does can stall audio.
//!
//! The audio streams can be replaced while the session goes on ([`Command::SetInput`],
//! [`Command::SetOutput`]): the application's thread opens the new stream (opening a device can
//! take tens of ms, reading a WAV file longer, and this thread is the network's and the
//! playback's clock), this thread swaps it in between two frames and re-derives the pacing, the
//! echo delay hint and capture processing, and the old stream goes back to the application's
//! thread to be closed (closing a device joins its callback thread). The device callbacks are
//! not involved: each stream's callback and ring live and die with that stream.
//!
//! The TCP connection is re-established with exponential backoff (250 ms doubling to 5 s) after a
//! relay restart, a dropped connection or a failed connect; the engine then rejoins the last
//! channel. A connect that fails (refused, unreachable) is reported at once as
//! [`Event::Disconnected`] with the reason and what happens next. With `reconnect` off nothing is
//! retried: the first failed connect or the first drop ends the engine thread.
//!
//! Every change of the connection is reported once as [`Event::Status`]: `Connecting` when an
//! attempt starts, `Reconnecting` with the delay when one failed or the connection dropped,
//! `Failed` when nothing will be retried, and (from the engine) `Connected` with the voice path,
//! UDP or the tunnel through this connection. A status equal to the last one is never repeated.
//! A relay given as `host:port` is resolved on a `voice-resolve` helper thread (the engine thread
//! keeps its media clock meanwhile) before each round of attempts; the addresses are tried IPv6
//! and IPv4 alternately, the next one at once when one fails.
//!
//! The control connection is TLS 1.3 ([`voice_tls::TlsStream`] over the mio stream) unless the
//! application asked for the plaintext development mode. The engine's `Hello` is queued at TCP
//! connect and rustls holds it until the handshake completes. Once the relay's certificate is
//! accepted the driver reports [`Event::ServerFingerprint`]; trust on first use then pins that
//! fingerprint for every reconnect. A refused certificate (untrusted, or a pin that no longer
//! matches) is reported the same way with `accepted: false`, followed by `Disconnected`, and is
//! final: retrying cannot make it trusted.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::net::{TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token};
use voice_core::engine::{ConnectionStatus, DisconnectKind, Engine, EngineStats, Event, Request};
use voice_core::proto::tcp::{FrameError, FrameQueue, FrameReader, ServerMessage};
use voice_core::proto::udp::MAX_DATAGRAM;
use voice_core::{Time, FRAME_DURATION, FRAME_SAMPLES};
use voice_tls::rustls::{self, ClientConnection};
use voice_tls::{ClientTls, Fingerprint, TlsStream, TlsTrust, Transport};

use crate::audio::{InputStream, OutputStream};
use crate::pacing::{PlayoutPacer, PullClock};

const TCP: Token = Token(0);
const UDP: Token = Token(1);
/// The token of the waker that [`crate::Client`] uses to interrupt `poll`.
pub(crate) const WAKER: Token = Token(2);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// A paced capture source that delivered no frame for this long is read on the timer instead
/// (silence, or what it has), so the engine keeps sending as it would from a timer-paced source.
const CAPTURE_STALL: Duration = Duration::from_millis(200);
/// Cap on queued outgoing TCP bytes (a relay that stops reading is treated as gone).
const MAX_TCP_OUT: usize = 1 << 20;

/// What the application sends the engine thread: an engine [`Request`], or one of the
/// requests only the thread can carry out (stats replies, sockets, shutdown).
#[derive(Debug)]
pub enum Command {
    /// Carry out an engine request.
    Request(Request),
    /// Reply with a stats snapshot.
    Stats(Sender<EngineStats>),
    /// Replace the UDP socket with one on a new local port (network change) and re-register.
    RebindUdp,
    /// Replace the capture stream with this one (opened by the caller) and hand the old one
    /// back on `old`, to be dropped off the engine thread ([`crate::Client::set_input`]).
    SetInput {
        /// The new stream.
        stream: Box<InputStream>,
        /// Receives the stream it replaced.
        old: Sender<InputStream>,
    },
    /// Replace the playback stream with this one and hand the old one back on `old`, to be
    /// finished (a recording finalised) and dropped off the engine thread
    /// ([`crate::Client::set_output`]).
    SetOutput {
        /// The new stream.
        stream: Box<OutputStream>,
        /// Receives the stream it replaced.
        old: Sender<OutputStream>,
    },
    /// Report this to the application as [`Event::AudioNotice`] (in order with the events the
    /// engine thread reports).
    AudioNotice(String),
    /// Stop the thread.
    Shutdown,
}

/// Everything the engine thread needs.
pub struct Driver {
    pub(crate) server: SocketAddr,
    /// The relay the client was configured with (scale-out): `server` moves on `Redirect`, and a
    /// dropped connection goes back here so the cluster can place the room again.
    pub(crate) entry: Option<SocketAddr>,
    pub(crate) engine: Engine,
    pub(crate) input: InputStream,
    pub(crate) output: OutputStream,
    pub(crate) commands: Receiver<Command>,
    pub(crate) events: Sender<Event>,
    pub(crate) reconnect: bool,
    /// `None`: the plaintext development mode.
    pub(crate) tls: Option<TlsSetup>,
    /// Set when the relay's certificate was refused: the connection ends for good.
    pub(crate) refused: bool,
    pub(crate) poll: Poll,
    pub(crate) connected: Arc<AtomicBool>,
    /// The last status reported (each change is reported once).
    pub(crate) status: Option<ConnectionStatus>,
    /// Connection attempts since the last success.
    pub(crate) attempt: u32,
    /// Why the last attempt failed or the last connection dropped.
    pub(crate) last_error: Option<String>,
    /// The relay as `host:port`, resolved before each connection round (`None`: `server`).
    pub(crate) host: Option<String>,
    /// Resolved addresses not tried yet in this round.
    pub(crate) addrs: std::collections::VecDeque<SocketAddr>,
    /// A resolution under way on a helper thread.
    pub(crate) resolving: Option<Receiver<Result<Vec<SocketAddr>, String>>>,
    /// Wakes `poll` when the resolver answers.
    pub(crate) waker: Arc<mio::Waker>,
}

/// The client's TLS state across reconnects: the trust policy (an acceptance on first use turns
/// into a pin) and the rustls configuration built from it.
#[derive(Debug)]
pub struct TlsSetup {
    trust: TlsTrust,
    server_name: Option<String>,
    built: Option<ClientTls>,
}

impl TlsSetup {
    /// A setup for `trust`; `server_name` is checked by chain verification (default: the IP).
    pub fn new(trust: TlsTrust, server_name: Option<String>) -> TlsSetup {
        TlsSetup {
            trust,
            server_name,
            built: None,
        }
    }

    fn connection(&mut self, server: SocketAddr) -> Result<ClientConnection, String> {
        let name = match &self.server_name {
            Some(n) => rustls::pki_types::ServerName::try_from(n.clone())
                .map_err(|e| format!("TLS server name {n:?}: {e}"))?,
            None => server.ip().into(),
        };
        if self.built.is_none() {
            self.built = Some(ClientTls::new(&self.trust).map_err(|e| format!("TLS: {e}"))?);
        }
        let tls = self.built.as_ref().ok_or("TLS setup missing")?;
        tls.connect(name).map_err(|e| format!("TLS: {e}"))
    }

    /// The relay's certificate passed with fingerprint `fp`: returns whether this was its first
    /// use, and pins it from now on if so.
    fn accepted(&mut self, fp: Fingerprint) -> bool {
        if self.trust == TlsTrust::TrustOnFirstUse {
            self.trust = TlsTrust::Pinned(fp);
            self.built = None;
            return true;
        }
        false
    }

    /// Why the certificate with fingerprint `seen` was refused, in words for the user.
    fn refusal(&self, seen: Option<Fingerprint>, err: &str) -> String {
        let seen = seen.map_or_else(|| "unknown".to_owned(), |f| f.to_string());
        match &self.trust {
            TlsTrust::Pinned(want) => format!(
                "the relay's certificate changed: pinned {want}, presented {seen}; refusing \
                 (if the operator rotated it, pin the new fingerprint)"
            ),
            _ => format!(
                "the relay's certificate is not trusted ({err}); its fingerprint is {seen}: pin it \
                 (TlsTrust::Pinned, voice-bot --fingerprint) or accept it on first use"
            ),
        }
    }
}

struct Conn {
    stream: Transport<TcpStream>,
    /// The TLS handshake's outcome was reported.
    tls_reported: bool,
    connected: bool,
    reader: FrameReader<ServerMessage>,
    out: FrameQueue,
}

/// Whether the engine thread goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Go,
    Stop,
}

/// Why the control connection is being dropped.
#[derive(Debug)]
struct Dropped {
    kind: DisconnectKind,
    reason: String,
    /// Redirected to the relay hosting the room: reconnect there at once.
    redirected: bool,
}

/// The engine thread's state between turns of its loop.
struct LoopState {
    /// The engine's time base.
    origin: Instant,
    udp: Option<UdpSocket>,
    conn: Option<Conn>,
    backoff: Duration,
    reconnect_at: Option<Instant>,
    /// The 20 ms timer.
    next_tick: Instant,
    events: Events,
    dgram: [u8; MAX_DATAGRAM + 1],
    frame: [i16; FRAME_SAMPLES],
    next_delay_check: Instant,
    echo_delay: Option<u32>,
    /// The capture source has a clock of its own (a device, the application's pushes).
    capture_paced: bool,
    last_capture: Instant,
    /// The playback consumer's clock, when it has one.
    pull_clock: Option<Arc<PullClock>>,
    pacer: PlayoutPacer,
    /// When the pacer wants the next frame mixed.
    next_mix: Option<Instant>,
}

/// The engine's time: microseconds since `origin`. (`LoopState::now` where the whole state is
/// not borrowed elsewhere.)
fn time_since(origin: Instant) -> Time {
    Time::from_micros(origin.elapsed().as_micros() as u64)
}

impl LoopState {
    /// The engine's time now.
    fn now(&self) -> Time {
        time_since(self.origin)
    }
}

impl Driver {
    /// Runs until [`Command::Shutdown`] (or the command channel closes). Returns the output stream
    /// so the caller can finalise a recording.
    ///
    /// Each turn of the loop: connect (or resolve) when due, wait in `poll`, read the sockets,
    /// carry out the application's commands, run the engine's timers and the media, write what
    /// the engine queued, and handle a dropped connection.
    pub fn run(mut self) -> OutputStream {
        let mut st = self.start();
        loop {
            if self.connect_step(&mut st) == Flow::Stop || self.resolver_step(&mut st) == Flow::Stop
            {
                break;
            }
            if self.wait(&mut st) == Flow::Stop {
                break;
            }
            let mut dropped = self.socket_step(&mut st);
            if self.command_step(&mut st) == Flow::Stop {
                break;
            }
            self.media_step(&mut st);
            if let Some(reason) = self.output_step(&mut st) {
                dropped.get_or_insert(Dropped {
                    kind: DisconnectKind::Network,
                    reason,
                    redirected: false,
                });
            }
            if let Some(d) = dropped {
                if self.handle_drop(&mut st, d) == Flow::Stop {
                    break;
                }
            }
        }
        self.connected.store(false, Ordering::Release);
        self.output
    }

    /// The loop's state before the first turn: a UDP socket, a connection due at once, the media
    /// clocks.
    fn start(&mut self) -> LoopState {
        let udp = match self.bind_udp() {
            Ok(u) => Some(u),
            Err(e) => {
                self.emit(Event::Disconnected {
                    kind: DisconnectKind::Network,
                    reason: format!("cannot open a UDP socket: {e}"),
                });
                None
            }
        };
        // The audio clocks (crate::pacing): a capture device or the application's pushes wake
        // `poll` when a frame is complete; a playback consumer's pulls time the mixing.
        self.input.set_waker(self.waker.clone());
        LoopState {
            origin: Instant::now(),
            udp,
            conn: None,
            backoff: FIRST_BACKOFF,
            reconnect_at: Some(Instant::now()),
            next_tick: Instant::now(),
            events: Events::with_capacity(64),
            dgram: [0u8; MAX_DATAGRAM + 1],
            frame: [0i16; FRAME_SAMPLES],
            next_delay_check: Instant::now() + Duration::from_secs(1),
            echo_delay: None,
            capture_paced: self.input.paced(),
            last_capture: Instant::now(),
            pull_clock: self.output.pull_clock().cloned(),
            pacer: PlayoutPacer::new(),
            next_mix: None,
        }
    }

    /// Starts a connection when one is due (or a resolution of the relay's host name first).
    fn connect_step(&mut self, st: &mut LoopState) -> Flow {
        if st.conn.is_some() {
            return Flow::Go;
        }
        let Some(at) = st.reconnect_at else {
            return Flow::Go;
        };
        if Instant::now() < at {
            return Flow::Go;
        }
        st.reconnect_at = None;
        if !self.next_address(&mut st.udp) {
            // Resolving: the resolver wakes `poll` with the answer.
            return Flow::Go;
        }
        self.attempt += 1;
        self.emit(Event::Status(ConnectionStatus::Connecting {
            attempt: self.attempt,
            last_error: self.last_error.clone(),
        }));
        match TcpStream::connect(self.server) {
            Ok(mut stream) => {
                let _ = self.poll.registry().register(
                    &mut stream,
                    TCP,
                    Interest::READABLE | Interest::WRITABLE,
                );
                let stream = match self.tls.as_mut() {
                    None => Transport::Plain(stream),
                    Some(tls) => match tls.connection(self.server) {
                        Ok(c) => Transport::Tls(Box::new(TlsStream::new(c, stream))),
                        Err(reason) => {
                            // A configuration problem (e.g. an unreadable CA file): no retry
                            // can fix it.
                            let _ = self.poll.registry().deregister(&mut stream);
                            self.emit(Event::Disconnected {
                                kind: DisconnectKind::Configuration,
                                reason: reason.clone(),
                            });
                            self.emit(Event::Status(ConnectionStatus::Failed { reason }));
                            return Flow::Stop;
                        }
                    },
                };
                st.conn = Some(Conn {
                    stream,
                    tls_reported: false,
                    connected: false,
                    reader: FrameReader::new(),
                    out: FrameQueue::new(),
                });
            }
            Err(e) if !self.addrs.is_empty() => {
                log::debug!("connect to {} failed: {e}; next address", self.server);
                self.attempt -= 1;
                st.reconnect_at = Some(Instant::now());
            }
            Err(e) => {
                let reason = format!("connect to {} failed: {e}", self.server);
                match self.connect_failed(DisconnectKind::Network, reason, &mut st.backoff) {
                    Some(at) => st.reconnect_at = Some(at),
                    None => return Flow::Stop,
                }
            }
        }
        Flow::Go
    }

    /// Takes the resolver's answer, if it has one.
    fn resolver_step(&mut self, st: &mut LoopState) -> Flow {
        if let Some(rx) = &self.resolving {
            let failed = match rx.try_recv() {
                Ok(Ok(list)) => {
                    self.resolving = None;
                    self.addrs = happy_eyeballs_order(list);
                    if self.addrs.is_empty() {
                        Some(format!("{}: no address", self.host_name()))
                    } else {
                        st.reconnect_at = Some(Instant::now());
                        None
                    }
                }
                Ok(Err(reason)) => {
                    self.resolving = None;
                    Some(reason)
                }
                Err(crossbeam_channel::TryRecvError::Empty) => None,
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    self.resolving = None;
                    Some("the resolver thread ended".to_string())
                }
            };
            if let Some(reason) = failed {
                self.resolve_failed(reason, &mut st.backoff, &mut st.reconnect_at);
            }
        }
        if st.reconnect_at.is_none()
            && st.conn.is_none()
            && matches!(self.status, Some(ConnectionStatus::Failed { .. }))
        {
            // A resolution failed and reconnect is off.
            return Flow::Stop;
        }
        Flow::Go
    }

    /// Blocks in `poll` until a socket or the waker is ready, or the earliest deadline: the
    /// timer tick, the next mix, the engine's timeout, a pending reconnect.
    fn wait(&mut self, st: &mut LoopState) -> Flow {
        let engine_due = self
            .engine
            .poll_timeout()
            .map(|t| st.origin + Duration::from_micros(t.as_micros()));
        let deadline = [st.next_mix, engine_due, st.reconnect_at]
            .into_iter()
            .flatten()
            .fold(st.next_tick, Instant::min);
        let timeout = deadline.saturating_duration_since(Instant::now());
        match self.poll.poll(&mut st.events, Some(timeout)) {
            Err(e) if e.kind() != io::ErrorKind::Interrupted => {
                log::error!("poll: {e}");
                Flow::Stop
            }
            _ => Flow::Go,
        }
    }

    /// Handles what `poll` reported: the control connection (connect completion, reads, TLS,
    /// a redirect) and received datagrams. Returns why the connection dropped, if it did.
    fn socket_step(&mut self, st: &mut LoopState) -> Option<Dropped> {
        let mut dropped = None;
        // The event list leaves the state while its events are handled (no allocation: an
        // empty `Events` holds none).
        let events = std::mem::replace(&mut st.events, Events::with_capacity(0));
        for ev in events.iter() {
            match ev.token() {
                TCP => {
                    let Some(mut c) = st.conn.take() else {
                        continue;
                    };
                    let result = self.tcp_ready(st, &mut c, ev);
                    st.conn = Some(c);
                    if let Err(d) = result {
                        dropped.get_or_insert(d);
                    }
                }
                UDP => self.udp_ready(st),
                _ => {}
            }
        }
        st.events = events;
        dropped
    }

    /// The control connection is ready: completes the connect, reads, reports TLS, follows a
    /// redirect.
    fn tcp_ready(
        &mut self,
        st: &mut LoopState,
        c: &mut Conn,
        ev: &mio::event::Event,
    ) -> Result<(), Dropped> {
        let (readable, writable) = (ev.is_readable(), ev.is_writable());
        let fail = |(kind, reason): (DisconnectKind, String)| Dropped {
            kind,
            reason,
            redirected: false,
        };
        if !c.connected && (writable || readable) {
            match c.stream.sock().peer_addr() {
                Ok(_) => {
                    c.connected = true;
                    let _ = c.stream.sock().set_nodelay(true);
                    // The next round resolves the host again.
                    self.addrs.clear();
                    st.backoff = FIRST_BACKOFF;
                    self.engine.connect(st.now());
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    let err = c.stream.sock().take_error().ok().flatten();
                    if err.is_some() || ev.is_error() || ev.is_write_closed() {
                        return Err(fail((
                            DisconnectKind::Network,
                            format!(
                                "connect to {} failed: {}",
                                self.server,
                                err.map_or_else(
                                    || "connection closed".to_string(),
                                    |e| e.to_string()
                                )
                            ),
                        )));
                    }
                    return Ok(());
                }
                Err(e) => {
                    return Err(fail((
                        DisconnectKind::Network,
                        format!("connect to {} failed: {e}", self.server),
                    )))
                }
            }
        }
        if readable {
            self.read_tcp(c, st.now()).map_err(fail)?;
        }
        if !c.tls_reported {
            self.report_tls(c);
        }
        if let Some(to) = self.engine.take_redirect() {
            match to.parse::<SocketAddr>() {
                Ok(addr) => {
                    log::info!("redirected to {addr}");
                    self.entry.get_or_insert(self.server);
                    if self.host.is_some() {
                        // The next connect takes it instead of resolving the configured host
                        // (and rebinds UDP if needed).
                        self.addrs.clear();
                        self.addrs.push_back(addr);
                    } else {
                        self.server = addr;
                    }
                    return Err(Dropped {
                        kind: DisconnectKind::Redirected,
                        reason: format!("redirected to {addr}"),
                        redirected: true,
                    });
                }
                Err(e) => log::warn!("ignoring a redirect to {to:?}: {e}"),
            }
        }
        Ok(())
    }

    /// Hands every datagram from the relay to the engine.
    fn udp_ready(&mut self, st: &mut LoopState) {
        let Some(u) = st.udp.as_ref() else { return };
        loop {
            match u.recv_from(&mut st.dgram) {
                Ok((n, from)) => {
                    if from == self.server {
                        self.engine
                            .handle_datagram(time_since(st.origin), &st.dgram[..n]);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // ICMP port unreachable etc.: the relay may be restarting.
                    log::debug!("udp recv: {e}");
                    break;
                }
            }
        }
    }

    /// Carries out the application's commands.
    fn command_step(&mut self, st: &mut LoopState) -> Flow {
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                Command::Shutdown => {
                    if let Some(c) = st.conn.as_mut() {
                        let _ = c.out.push(&voice_core::proto::tcp::ClientMessage::Goodbye);
                        let _ = c.out.write_to(&mut c.stream);
                        c.stream.close_notify();
                        let _ = c.stream.flush_tls();
                    }
                    return Flow::Stop;
                }
                Command::RebindUdp => {
                    if let Some(mut old) = st.udp.take() {
                        let _ = self.poll.registry().deregister(&mut old);
                    }
                    match self.bind_udp() {
                        Ok(u) => {
                            st.udp = Some(u);
                            self.engine.udp_rebound(st.now());
                        }
                        Err(e) => log::error!("rebind udp: {e}"),
                    }
                }
                Command::SetInput { stream, old } => {
                    let previous = self.swap_input(st, *stream);
                    // The caller drops it (closing a device stream joins its callback
                    // thread); if the caller gave up waiting, it is dropped here.
                    let _ = old.send(previous);
                }
                Command::SetOutput { stream, old } => {
                    let previous = self.swap_output(st, *stream);
                    let _ = old.send(previous);
                }
                Command::AudioNotice(message) => self.emit(Event::AudioNotice { message }),
                Command::Request(request) => {
                    // A refusal is queued as `Event::CommandFailed` and forwarded below.
                    let _ = self.engine.apply(request);
                }
                Command::Stats(reply) => {
                    let mut stats = self.engine.stats(st.now());
                    if let Some(status) = &self.status {
                        stats.status = status.clone();
                    }
                    if let Some(clock) = &st.pull_clock {
                        stats.playback_pacing = Some(st.pacer.report(clock.snapshot()));
                    }
                    let _ = reply.send(stats);
                }
            }
        }
        Flow::Go
    }

    /// Puts `new` in place of the capture stream and returns the old one. The session, the
    /// encoder (its sequence numbers go on, so listeners' jitter buffers see one stream) and the
    /// transmit state stay; what depended on the old source is derived again: whether capture
    /// is paced by the source's clock or by the 20 ms timer, the echo delay hint, and capture
    /// processing, which starts afresh (a new microphone is a new echo path, noise floor and
    /// level). A file or tone starts playing once voice can flow, as at start.
    fn swap_input(&mut self, st: &mut LoopState, new: InputStream) -> InputStream {
        new.set_waker(self.waker.clone());
        let old = std::mem::replace(&mut self.input, new);
        st.capture_paced = self.input.paced();
        st.last_capture = Instant::now();
        self.audio_path_changed(st);
        old
    }

    /// Puts `new` in place of the playback stream and returns the old one. The receivers'
    /// jitter buffers and the mixer stay; the playout pacing starts again on the new consumer's
    /// clock (or the 20 ms timer for a sink without one), and the echo delay hint and capture
    /// processing are derived again (the far end now leaves through another speaker).
    fn swap_output(&mut self, st: &mut LoopState, new: OutputStream) -> OutputStream {
        let old = std::mem::replace(&mut self.output, new);
        st.pull_clock = self.output.pull_clock().cloned();
        st.pacer = PlayoutPacer::new();
        st.next_mix = None;
        self.audio_path_changed(st);
        old
    }

    /// A device changed: capture processing (the echo canceller above all) adapts again from
    /// scratch and the echo delay hint is measured again at the next media step.
    fn audio_path_changed(&mut self, st: &mut LoopState) {
        self.engine.restart_capture();
        st.echo_delay = None;
        st.next_delay_check = Instant::now();
    }

    /// The engine's timers, then the media: capture frames in, mixed frames out, each paced by
    /// its audio clock or by the 20 ms timer; and the echo canceller's delay hint.
    fn media_step(&mut self, st: &mut LoopState) {
        let t = st.now();
        if self.engine.poll_timeout().is_some_and(|d| d <= t) {
            self.engine.handle_timeout(t);
        }
        // File and tone sources start once voice can reach where it is meant to go.
        if self.engine.voice_path().is_some()
            && self.engine.settled()
            && !self.engine.names_pending()
            && (self.engine.channel().is_some() || self.engine.whisper().is_some())
        {
            self.input.start();
        }
        // Capture with a clock of its own: each complete frame at once.
        let mut frames = 0;
        while st.capture_paced && self.input.frame_ready() && frames < 5 {
            self.input.read_frame(&mut st.frame);
            self.engine.handle_capture(st.now(), &st.frame);
            st.last_capture = Instant::now();
            frames += 1;
        }
        // Playback with a clock of its own: mix just before the consumer needs the frame.
        st.next_mix = None;
        let mut mix_paced = false;
        if let Some(clock) = &st.pull_clock {
            st.pacer.observe(clock.now_us(), clock.snapshot());
            let mut frames = 0;
            while let Some(at) = st.pacer.mix_at(clock.now_us(), self.output.queued()) {
                mix_paced = true;
                if self.output.room() < FRAME_SAMPLES {
                    // The ring is full (a consumer pulling more than it holds): wait for it.
                    break;
                }
                if at > clock.now_us() || frames >= 5 {
                    st.next_mix = Some(clock.instant_at(at));
                    break;
                }
                self.engine.mix(time_since(st.origin), &mut st.frame);
                self.output.write_paced_frame(&st.frame);
                frames += 1;
            }
        }
        // The engine's 20 ms timer paces the rest: sources and sinks without a clock, a
        // producer that stopped pushing, a consumer that is not pulling.
        let mut ticks = 0;
        while Instant::now() >= st.next_tick && ticks < 5 {
            let t = st.now();
            if !st.capture_paced || st.last_capture.elapsed() >= CAPTURE_STALL {
                self.input.read_frame(&mut st.frame);
                self.engine.handle_capture(t, &st.frame);
                st.last_capture = Instant::now();
            }
            if !mix_paced {
                self.engine.mix(t, &mut st.frame);
                self.output.write_frame(&st.frame);
            }
            st.next_tick += FRAME_DURATION;
            ticks += 1;
        }
        if Instant::now() >= st.next_tick {
            // Fell far behind (machine stalled): resynchronise the media clock.
            st.next_tick = Instant::now() + FRAME_DURATION;
        }
        // The echo canceller's delay hint follows the devices' latency and ring fill.
        if Instant::now() >= st.next_delay_check {
            st.next_delay_check = Instant::now() + Duration::from_secs(1);
            if let Some(ms) = crate::audio::echo_delay_ms(&self.input, &self.output) {
                if st.echo_delay.is_none_or(|d| d.abs_diff(ms) >= 5) {
                    st.echo_delay = Some(ms);
                    self.engine.set_echo_delay_ms(ms);
                }
            }
        }
    }

    /// Writes what the engine queued: control messages (then TLS), datagrams, events. Returns
    /// why the control connection failed, if it did.
    fn output_step(&mut self, st: &mut LoopState) -> Option<String> {
        let mut failed = None;
        if let Some(c) = st.conn.as_mut() {
            if c.connected {
                while let Some(msg) = self.engine.poll_control() {
                    if c.out.push(&msg).is_err() {
                        log::warn!("dropping an oversized control message");
                    }
                }
                if c.out.pending() > MAX_TCP_OUT {
                    failed = Some("relay is not reading".into());
                } else if let Err(e) = c.out.write_to(&mut c.stream) {
                    failed = Some(e.to_string());
                } else if let Err(e) = c.stream.flush_tls() {
                    failed = Some(e.to_string());
                }
            }
        }
        if let Some(u) = st.udp.as_ref() {
            while let Some(n) = self.engine.poll_datagram(&mut st.dgram) {
                match u.send_to(&st.dgram[..n], self.server) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => log::debug!("udp send: {e}"),
                }
            }
        }
        while let Some(ev) = self.engine.poll_event() {
            self.emit(ev);
        }
        failed
    }

    /// The control connection dropped (or never came up, or was redirected): reports it and
    /// schedules the next attempt, or stops when nothing will be retried.
    fn handle_drop(&mut self, st: &mut LoopState, dropped: Dropped) -> Flow {
        let Dropped {
            kind,
            reason,
            redirected,
        } = dropped;
        let mut was_up = false;
        if let Some(mut c) = st.conn.take() {
            let _ = self.poll.registry().deregister(c.stream.sock_mut());
            was_up = c.connected;
        }
        let refused = std::mem::take(&mut self.refused);
        // Kicked, banned or token expired: reconnecting would be refused or undo an admin's
        // decision, so the drop is final.
        let removed = self.engine.take_removal();
        let (kind, reason) = match removed {
            Some(r) => (
                DisconnectKind::Removed(r),
                format!("{reason}; removed by the relay ({r:?}), not reconnecting"),
            ),
            None => (kind, reason),
        };
        if was_up || refused {
            // The engine reports the drop (it knows the session it loses).
            self.engine.disconnected(st.now(), kind, &reason);
            while let Some(ev) = self.engine.poll_event() {
                self.emit(ev);
            }
            if refused || removed.is_some() || (!self.reconnect && !redirected) {
                self.emit(Event::Status(ConnectionStatus::Failed { reason }));
                return Flow::Stop;
            }
            let wait = if redirected {
                // Straight to the hosting relay.
                Duration::ZERO
            } else {
                if let Some(entry) = self.entry {
                    // The host went away: the entry relay places the room again.
                    self.server = entry;
                }
                let wait = st.backoff;
                st.backoff = (st.backoff * 2).min(MAX_BACKOFF);
                wait
            };
            self.emit(Event::Status(ConnectionStatus::Reconnecting {
                in_ms: wait.as_millis() as u64,
                reason: reason.clone(),
            }));
            self.last_error = Some(reason);
            st.reconnect_at = Some(Instant::now() + wait);
        } else if !self.addrs.is_empty() {
            // Another address of the host: try it at once, as the same attempt.
            log::debug!("{reason}; next address");
            self.attempt -= 1;
            st.reconnect_at = Some(Instant::now());
        } else {
            // The connect itself failed: the engine never saw a connection.
            if let Some(entry) = self.entry {
                self.server = entry;
            }
            match self.connect_failed(kind, reason, &mut st.backoff) {
                Some(at) => st.reconnect_at = Some(at),
                None => return Flow::Stop,
            }
        }
        Flow::Go
    }

    fn host_name(&self) -> &str {
        self.host.as_deref().unwrap_or("")
    }

    /// Picks the address for the next connect: `true` when `self.server` is set to it, `false`
    /// while a resolution is under way (started here when the round's addresses are used up).
    /// Rebinds the UDP socket when the address family changes.
    fn next_address(&mut self, udp: &mut Option<UdpSocket>) -> bool {
        let Some(host) = self.host.clone() else {
            return true;
        };
        if self.resolving.is_some() {
            return false;
        }
        let Some(addr) = self.addrs.pop_front() else {
            let (tx, rx) = crossbeam_channel::bounded(1);
            let waker = self.waker.clone();
            let spawned = std::thread::Builder::new()
                .name("voice-resolve".into())
                .spawn(move || {
                    let r = std::net::ToSocketAddrs::to_socket_addrs(&host)
                        .map(Iterator::collect)
                        .map_err(|e| format!("cannot resolve {host}: {e}"));
                    let _ = tx.send(r);
                    let _ = waker.wake();
                });
            match spawned {
                Ok(_) => self.resolving = Some(rx),
                Err(e) => log::error!("cannot start the resolver thread: {e}"),
            }
            return false;
        };
        if self.server.is_ipv4() != addr.is_ipv4() || self.server.port() == 0 {
            if let Some(mut old) = udp.take() {
                let _ = self.poll.registry().deregister(&mut old);
            }
            self.server = addr;
            match self.bind_udp() {
                Ok(u) => *udp = Some(u),
                Err(e) => log::error!("udp socket for {addr}: {e}"),
            }
        }
        self.server = addr;
        true
    }

    /// A resolution failed: reported like a failed connect (retried with backoff, or final).
    fn resolve_failed(
        &mut self,
        reason: String,
        backoff: &mut Duration,
        reconnect_at: &mut Option<Instant>,
    ) {
        self.attempt += 1;
        self.emit(Event::Status(ConnectionStatus::Connecting {
            attempt: self.attempt,
            last_error: self.last_error.clone(),
        }));
        *reconnect_at = self.connect_failed(DisconnectKind::Network, reason, backoff);
    }

    /// Reports a connect that failed and says what happens next: the time of the next attempt
    /// (backing off), or `None` when `reconnect` is off and the thread should stop.
    fn connect_failed(
        &mut self,
        kind: DisconnectKind,
        reason: String,
        backoff: &mut Duration,
    ) -> Option<Instant> {
        log::debug!("{reason}");
        if !self.reconnect {
            self.emit(Event::Disconnected {
                kind,
                reason: format!("{reason}; not retrying (reconnect is off)"),
            });
            self.emit(Event::Status(ConnectionStatus::Failed { reason }));
            return None;
        }
        let wait = *backoff;
        *backoff = (*backoff * 2).min(MAX_BACKOFF);
        self.emit(Event::Disconnected {
            kind,
            reason: format!("{reason}; retrying in {} ms", wait.as_millis()),
        });
        self.emit(Event::Status(ConnectionStatus::Reconnecting {
            in_ms: wait.as_millis() as u64,
            reason: reason.clone(),
        }));
        self.last_error = Some(reason);
        Some(Instant::now() + wait)
    }

    /// Hands `ev` to the application. A status equal to the last one reported is dropped, so
    /// each change is reported exactly once.
    fn emit(&mut self, ev: Event) {
        match &ev {
            Event::Connected { .. } => self.connected.store(true, Ordering::Release),
            Event::Disconnected { .. } => self.connected.store(false, Ordering::Release),
            Event::Status(status) => {
                if self.status.as_ref() == Some(status) {
                    return;
                }
                if matches!(status, ConnectionStatus::Connected { .. }) {
                    self.attempt = 0;
                    self.last_error = None;
                }
                self.status = Some(status.clone());
            }
            _ => {}
        }
        let _ = self.events.send(ev);
    }

    fn bind_udp(&self) -> io::Result<UdpSocket> {
        // Any local port, on the relay's address family.
        let local = if self.server.is_ipv4() {
            SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0))
        } else {
            SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
        };
        let mut u = UdpSocket::bind(local)?;
        self.poll
            .registry()
            .register(&mut u, UDP, Interest::READABLE)?;
        Ok(u)
    }

    fn read_tcp(&mut self, c: &mut Conn, now: Time) -> Result<(), (DisconnectKind, String)> {
        loop {
            match c.reader.read_from(&mut c.stream) {
                Ok(0) => {
                    if c.reader.room() == 0 {
                        return Err((
                            DisconnectKind::Protocol,
                            "relay sent an oversized frame".into(),
                        ));
                    }
                    return Err((DisconnectKind::Closed, "relay closed the connection".into()));
                }
                Ok(_) => loop {
                    match c.reader.next_message() {
                        Ok(Some(msg)) => self.engine.handle_control(now, msg),
                        Ok(None) => break,
                        Err(FrameError::Malformed(e)) => {
                            log::warn!("malformed message from relay: {e}");
                        }
                        Err(e) => return Err((DisconnectKind::Protocol, e.to_string())),
                    }
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let cert = e
                        .get_ref()
                        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                        .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
                    if let (true, Some(tls)) = (cert, self.tls.as_ref()) {
                        let seen = tls.built.as_ref().and_then(ClientTls::seen);
                        let reason = tls.refusal(seen, &e.to_string());
                        if let Some(fp) = seen {
                            self.emit(Event::ServerFingerprint {
                                fingerprint: fp.to_string(),
                                first_use: !matches!(tls.trust, TlsTrust::Pinned(_)),
                                accepted: false,
                            });
                        }
                        log::warn!("{reason}");
                        self.refused = true;
                        return Err((DisconnectKind::Untrusted, reason));
                    }
                    return Err((DisconnectKind::Network, e.to_string()));
                }
            }
        }
    }

    /// Reports the relay's certificate once the TLS handshake has completed.
    fn report_tls(&mut self, c: &mut Conn) {
        if !matches!(c.stream, Transport::Tls(_)) || c.stream.is_handshaking() {
            return;
        }
        c.tls_reported = true;
        let (Some(fp), Some(tls)) = (c.stream.peer_fingerprint(), self.tls.as_mut()) else {
            return;
        };
        let first_use = tls.accepted(fp);
        self.emit(Event::ServerFingerprint {
            fingerprint: fp.to_string(),
            first_use,
            accepted: true,
        });
    }
}

/// Orders resolved addresses as RFC 8305 does: IPv6 and IPv4 alternately, IPv6 first, each
/// family in the resolver's order.
fn happy_eyeballs_order(list: Vec<SocketAddr>) -> std::collections::VecDeque<SocketAddr> {
    let (v6, v4): (Vec<_>, Vec<_>) = list.into_iter().partition(SocketAddr::is_ipv6);
    let mut out = std::collections::VecDeque::new();
    let (mut a, mut b) = (v6.into_iter(), v4.into_iter());
    loop {
        match (a.next(), b.next()) {
            (None, None) => break,
            (x, y) => out.extend(x.into_iter().chain(y)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_alternate_families_ipv6_first() {
        let a: Vec<SocketAddr> = ["1.1.1.1:1", "2.2.2.2:1", "[::1]:1", "3.3.3.3:1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let got: Vec<String> = happy_eyeballs_order(a)
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(got, ["[::1]:1", "1.1.1.1:1", "2.2.2.2:1", "3.3.3.3:1"]);
    }
}
