//! The app's only door to the engine: [`Backend`], with the real [`ClientBackend`] and the
//! [`StubBackend`] that tests drive.
//!
//! The UI never blocks on the network. Commands are fire-and-forget ([`Request`] values handed to
//! the engine's command queue). Switching a device ([`Backend::set_input`],
//! [`Backend::set_output`]) opens it on the UI thread, as starting the engine does: one click
//! waits for the device (tens of ms), never for the relay. Events and statistics arrive on channels that the app drains once
//! per frame:
//! * the `gui-events` thread forwards [`Client::events`] to the app's channel and asks egui for a
//!   repaint, so a chat line or a presence change shows up at once even when the window is idle;
//! * the `gui-stats` thread calls [`Client::stats`] (which can wait up to a second for the engine
//!   thread) every [`STATS_PERIOD`] and hands the snapshot over the same way, but asks for a
//!   repaint only while the plots are visible or when the snapshot changes something the main
//!   window shows ([`worth_repaint`]): an idle connected window is not redrawn four times a second.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
pub use voice_client::Request;
use voice_client::{
    AudioError, AudioInput, AudioOutput, Client, ClientConfig, ClientError, EngineStats, Event,
};

/// How often the stats thread asks the engine for a snapshot.
pub const STATS_PERIOD: Duration = Duration::from_millis(250);

/// Most statistics snapshots held for the app (one minute at [`STATS_PERIOD`]).
pub const STATS_QUEUE: usize = 240;

/// The engine as the app sees it.
pub trait Backend {
    /// Hands a command to the engine (never blocks).
    fn send(&mut self, command: Request);
    /// Events that arrived since the last call (never blocks).
    fn drain_events(&mut self) -> Vec<Event>;
    /// Statistics snapshots that arrived since the last call, oldest first (never blocks).
    fn drain_stats(&mut self) -> Vec<EngineStats>;
    /// The relay address, for display.
    fn server(&self) -> String;
    /// Whether every statistics snapshot should repaint (plots visible). Off, only snapshots
    /// that change what the main window shows do (see [`worth_repaint`]).
    fn set_live(&mut self, live: bool) {
        let _ = live;
    }
    /// Replaces the capture source while connected (the session, channel and chat stay). On
    /// failure the old source stays in use and the engine also reports why as an
    /// [`Event::AudioNotice`]; [`AudioError::EngineStopped`] means only a restart can apply it.
    fn set_input(&mut self, input: AudioInput) -> Result<(), AudioError>;
    /// Replaces the playback sink while connected, as [`Backend::set_input`] does.
    fn set_output(&mut self, output: AudioOutput) -> Result<(), AudioError>;
    /// Stops the engine. With `wait`, returns when it has ended (app exit); without, finishes
    /// in the background so the UI does not stall. Dropping a backend closes it without waiting.
    fn close(&mut self, wait: bool) {
        let _ = wait;
    }
}

fn drain<T>(rx: &Receiver<T>) -> Vec<T> {
    let mut out = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(v) => out.push(v),
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => return out,
        }
    }
}

/// A real engine: a [`Client`] plus the two helper threads.
pub struct ClientBackend {
    client: Option<Arc<Client>>,
    server: String,
    events: Receiver<Event>,
    stats: Receiver<EngineStats>,
    live: Arc<AtomicBool>,
    /// Dropping this wakes the stats thread and tells it to end.
    stop: Option<Sender<()>>,
    events_thread: Option<JoinHandle<()>>,
    stats_thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ClientBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBackend")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl ClientBackend {
    /// Starts the engine and the helper threads. `repaint` is called whenever something arrives.
    pub fn start(
        cfg: ClientConfig,
        repaint: impl Fn() + Send + Sync + 'static,
    ) -> Result<Self, ClientError> {
        let server = cfg.server.to_string();
        let client = Arc::new(Client::start(cfg)?);
        let repaint = Arc::new(repaint);
        let (stop, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
        // A minute of snapshots: while the window does not repaint they wait here, so the plots
        // are complete when the overlay opens.
        let (st_tx, st_rx) = crossbeam_channel::bounded(STATS_QUEUE);

        let engine_events = client.events().clone();
        let r = repaint.clone();
        let events = std::thread::Builder::new()
            .name("gui-events".into())
            .spawn(move || {
                // Ends when the engine thread drops its sender (client shut down) or the app
                // drops its receiver.
                let mut last_list = None;
                while let Ok(ev) = engine_events.recv() {
                    let news = event_is_news(&ev, &mut last_list);
                    if ev_tx.send(ev).is_err() {
                        break;
                    }
                    if news {
                        r();
                    }
                }
            })?;

        let c = client.clone();
        let live = Arc::new(AtomicBool::new(false));
        let l = live.clone();
        let st_rx2 = st_rx.clone();
        let stats = std::thread::Builder::new()
            .name("gui-stats".into())
            .spawn(move || stats_loop(&c, &stop_rx, (&st_tx, &st_rx2), &l, &*repaint))?;

        Ok(ClientBackend {
            client: Some(client),
            server,
            events: ev_rx,
            stats: st_rx,
            live,
            stop: Some(stop),
            events_thread: Some(events),
            stats_thread: Some(stats),
        })
    }
}

/// Whether an engine event must be drawn at once. Not: a ping measurement (shown with the next
/// frame), a channel list equal to the previous one (the periodic refresh while nothing changed).
pub fn event_is_news(ev: &Event, last_list: &mut Option<Event>) -> bool {
    match ev {
        Event::Rtt { .. } => false,
        Event::ChannelList { .. } => {
            if last_list.as_ref() == Some(ev) {
                false
            } else {
                *last_list = Some(ev.clone());
                true
            }
        }
        _ => true,
    }
}

/// Input level change (dB) that is worth redrawing the level meter for.
pub const LEVEL_STEP_DB: f32 = 3.0;

/// Whether a statistics snapshot changes what the window shows enough to redraw it: always while
/// `live` (plots visible); otherwise when the connection state, the voice path, transmitting, the
/// set of heard senders or the input level (by [`LEVEL_STEP_DB`], above the meter's floor) moved.
pub fn worth_repaint(prev: Option<&EngineStats>, new: &EngineStats, live: bool) -> bool {
    let Some(p) = prev else {
        return true;
    };
    let heard = |s: &EngineStats| {
        s.remotes
            .iter()
            .filter(|r| r.speaking)
            .map(|r| r.session)
            .collect::<Vec<_>>()
    };
    let level = |s: &EngineStats| s.input_level_dbfs.max(-60.0);
    live || p.state != new.state
        || p.udp_ready != new.udp_ready
        || p.transmitting != new.transmitting
        || p.muted != new.muted
        || (level(p) - level(new)).abs() >= LEVEL_STEP_DB
        || heard(p) != heard(new)
}

fn stats_loop(
    client: &Client,
    stop: &Receiver<()>,
    (tx, rx): (&Sender<EngineStats>, &Receiver<EngineStats>),
    live: &AtomicBool,
    repaint: &dyn Fn(),
) {
    let mut shown: Option<EngineStats> = None;
    loop {
        if let Some(s) = client.stats() {
            let worth = worth_repaint(shown.as_ref(), &s, live.load(Ordering::Relaxed));
            // A full queue means the UI is not drawing: the oldest snapshot makes room, so the
            // newest is what the next frame shows.
            if tx.is_full() {
                let _ = rx.try_recv();
            }
            let _ = tx.try_send(s.clone());
            if worth {
                shown = Some(s);
                repaint();
            }
        }
        // Sleeps one period, or ends at once when the backend drops the stop sender.
        if !matches!(
            stop.recv_timeout(STATS_PERIOD),
            Err(RecvTimeoutError::Timeout)
        ) {
            return;
        }
    }
}

impl Backend for ClientBackend {
    fn send(&mut self, command: Request) {
        let Some(c) = self.client.as_deref() else {
            return;
        };
        c.request(command);
    }

    fn drain_events(&mut self) -> Vec<Event> {
        drain(&self.events)
    }

    fn drain_stats(&mut self) -> Vec<EngineStats> {
        drain(&self.stats)
    }

    fn server(&self) -> String {
        self.server.clone()
    }

    fn set_live(&mut self, live: bool) {
        self.live.store(live, Ordering::Relaxed);
    }

    fn set_input(&mut self, input: AudioInput) -> Result<(), AudioError> {
        let c = self.client.as_deref().ok_or(AudioError::EngineStopped)?;
        c.set_input(input)
    }

    fn set_output(&mut self, output: AudioOutput) -> Result<(), AudioError> {
        let c = self.client.as_deref().ok_or(AudioError::EngineStopped)?;
        c.set_output(output)
    }

    fn close(&mut self, wait: bool) {
        self.shut(wait);
    }
}

impl ClientBackend {
    fn shut(&mut self, wait: bool) {
        let Some(stop) = self.stop.take() else {
            return;
        };
        let stats_thread = self.stats_thread.take();
        let events_thread = self.events_thread.take();
        let client = self.client.take();
        let teardown = move || {
            // The stats thread holds a reference to the client: end it first (dropping `stop`
            // wakes it; a `stats()` call in flight returns within a second), then shut the
            // engine down through the last reference, which closes the event channel and so
            // ends the events thread.
            drop(stop);
            if let Some(h) = stats_thread {
                let _ = h.join();
            }
            if let Some(c) = client.and_then(|c| Arc::try_unwrap(c).ok()) {
                if let Err(e) = c.shutdown() {
                    log::warn!("shutting the engine down: {e}");
                }
            }
            if let Some(h) = events_thread {
                let _ = h.join();
            }
        };
        if wait {
            teardown();
            return;
        }
        // If the thread cannot start, the closure is dropped: the stop sender and the client
        // reference go with it, so the threads still end and the client's own `Drop` stops the
        // engine, just without the joins.
        if let Err(e) = std::thread::Builder::new()
            .name("gui-teardown".into())
            .spawn(teardown)
        {
            log::warn!("teardown thread: {e}");
        }
    }
}

impl Drop for ClientBackend {
    fn drop(&mut self) {
        self.shut(false);
    }
}

/// A backend without a network, for tests: it records commands and audio switches and replays
/// injected events.
#[derive(Debug)]
pub struct StubBackend {
    events: Receiver<Event>,
    /// For the audio notice of a failed switch, as the engine sends it.
    notices: Sender<Event>,
    stats: Receiver<EngineStats>,
    sent: Arc<Mutex<Vec<Request>>>,
    audio: Arc<Mutex<StubAudio>>,
}

/// What a [`StubBackend`] did with audio switches.
#[derive(Debug, Default)]
struct StubAudio {
    inputs: Vec<AudioInput>,
    outputs: Vec<AudioOutput>,
    /// The next switches fail like this (a device that cannot be opened, a stopped engine).
    fail: Option<fn() -> AudioError>,
}

/// The test's side of a [`StubBackend`].
#[derive(Debug, Clone)]
pub struct StubHandle {
    /// Events to deliver to the app on its next frame.
    pub events: Sender<Event>,
    /// Statistics snapshots to deliver on the next frame.
    pub stats: Sender<EngineStats>,
    sent: Arc<Mutex<Vec<Request>>>,
    audio: Arc<Mutex<StubAudio>>,
}

impl StubHandle {
    /// The commands the app has sent so far.
    pub fn sent(&self) -> Vec<Request> {
        self.sent.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// The inputs and outputs the app switched to so far (successful switches only).
    pub fn switched(&self) -> (Vec<AudioInput>, Vec<AudioOutput>) {
        self.audio
            .lock()
            .map(|a| (a.inputs.clone(), a.outputs.clone()))
            .unwrap_or_default()
    }

    /// Makes the following switches fail with the error `fail` makes (`None`: succeed again).
    pub fn fail_switches(&self, fail: Option<fn() -> AudioError>) {
        if let Ok(mut a) = self.audio.lock() {
            a.fail = fail;
        }
    }
}

impl StubBackend {
    fn switch(
        &mut self,
        what: String,
        record: impl FnOnce(&mut StubAudio),
    ) -> Result<(), AudioError> {
        let Ok(mut a) = self.audio.lock() else {
            return Err(AudioError::EngineStopped);
        };
        if let Some(fail) = a.fail {
            let e = fail();
            if !matches!(e, AudioError::EngineStopped) {
                let _ = self.notices.send(Event::AudioNotice {
                    message: format!("could not switch the {what}: {e}; keeping the current one"),
                });
            }
            return Err(e);
        }
        record(&mut a);
        Ok(())
    }
}

/// A connected pair: the backend for the app and the handle for the test.
pub fn stub() -> (StubBackend, StubHandle) {
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let (st_tx, st_rx) = crossbeam_channel::unbounded();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let audio = Arc::new(Mutex::new(StubAudio::default()));
    (
        StubBackend {
            events: ev_rx,
            notices: ev_tx.clone(),
            stats: st_rx,
            sent: sent.clone(),
            audio: audio.clone(),
        },
        StubHandle {
            events: ev_tx,
            stats: st_tx,
            sent,
            audio,
        },
    )
}

impl Backend for StubBackend {
    fn send(&mut self, command: Request) {
        if let Ok(mut v) = self.sent.lock() {
            v.push(command);
        }
    }

    fn drain_events(&mut self) -> Vec<Event> {
        drain(&self.events)
    }

    fn drain_stats(&mut self) -> Vec<EngineStats> {
        drain(&self.stats)
    }

    fn server(&self) -> String {
        "stub".into()
    }

    fn set_input(&mut self, input: AudioInput) -> Result<(), AudioError> {
        self.switch(format!("input to {input}"), |a| a.inputs.push(input))
    }

    fn set_output(&mut self, output: AudioOutput) -> Result<(), AudioError> {
        self.switch(format!("output to {output}"), |a| a.outputs.push(output))
    }
}
