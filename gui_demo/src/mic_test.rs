//! The connect screen's microphone test: the chosen input's level, live, before connecting
//! (issue 19: "a mic test").
//!
//! A `gui-mic-test` thread opens the input exactly as the engine will
//! ([`voice_client::audio::InputStream`], so a device that cannot be opened fails here the same
//! way), reads 20 ms frames (when the device has one; a tone or file on its own 20 ms clock) and
//! publishes each frame's level ([`voice_core::mixer::level_dbfs`]) in an atomic, asking egui for
//! a frame. The window never waits for it. Dropping the test stops the thread and closes the
//! device (the app does so before the engine opens it).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use voice_client::audio::InputStream;
use voice_core::FRAME_SAMPLES;

use crate::settings::InputChoice;

/// One frame of audio.
const FRAME: Duration = Duration::from_millis(20);

#[derive(Default)]
struct Shared {
    /// The last frame's level in dBFS (`f32` bits).
    level: AtomicU32,
    /// Frames measured so far.
    frames: AtomicU32,
    /// Why the input could not be opened.
    error: Mutex<Option<String>>,
    stop: AtomicBool,
}

/// A running microphone test. Dropping it stops the test.
pub struct MicTest {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// The input being tested.
    pub input: InputChoice,
}

impl std::fmt::Debug for MicTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MicTest")
            .field("input", &self.input)
            .finish_non_exhaustive()
    }
}

impl MicTest {
    /// Starts measuring `input`; `notify` is called (from the thread) after every frame and on
    /// an error.
    pub fn start(input: &InputChoice, notify: impl Fn() + Send + 'static) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let audio = input.to_audio();
        let thread = std::thread::Builder::new()
            .name("gui-mic-test".into())
            .spawn(move || {
                // Opened here: a device stream stays on the thread that reads it.
                let mut stream = match InputStream::open(&audio) {
                    Ok(stream) => stream,
                    Err(e) => {
                        if let Ok(mut slot) = s.error.lock() {
                            *slot = Some(format!("cannot open the input: {e}"));
                        }
                        notify();
                        return;
                    }
                };
                stream.start();
                measure(&mut stream, &s, &notify);
            })?;
        Ok(MicTest {
            shared,
            thread: Some(thread),
            input: input.clone(),
        })
    }

    /// The last frame's level in dBFS, once a frame was measured.
    pub fn level_dbfs(&self) -> Option<f32> {
        (self.shared.frames.load(Ordering::Relaxed) > 0)
            .then(|| f32::from_bits(self.shared.level.load(Ordering::Relaxed)))
    }

    /// Frames measured so far.
    pub fn frames(&self) -> u32 {
        self.shared.frames.load(Ordering::Relaxed)
    }

    /// Why the input could not be opened, if it could not.
    pub fn error(&self) -> Option<String> {
        self.shared.error.lock().ok().and_then(|e| e.clone())
    }
}

impl Drop for MicTest {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // Ends within one frame.
            let _ = t.join();
        }
    }
}

fn measure(stream: &mut InputStream, shared: &Shared, notify: &dyn Fn()) {
    let mut frame = [0i16; FRAME_SAMPLES];
    let mut next = Instant::now() + FRAME;
    while !shared.stop.load(Ordering::Relaxed) {
        if stream.paced() {
            // A device: a frame whenever one is complete.
            if !stream.frame_ready() {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
        } else {
            // A tone, a file or silence: one frame per 20 ms.
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
            next += FRAME;
        }
        stream.read_frame(&mut frame);
        let db = voice_core::mixer::level_dbfs(&frame);
        shared.level.store(db.to_bits(), Ordering::Relaxed);
        shared.frames.fetch_add(1, Ordering::Relaxed);
        notify();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::wait_for;

    #[test]
    fn a_tone_measures_its_level() {
        let t = MicTest::start(&InputChoice::Tone(440.0), || {}).expect("thread");
        assert!(wait_for(|| t.frames() >= 3), "frames measured");
        // A sine at amplitude 0.3: RMS 0.3/√2, -13.5 dBFS.
        let db = t.level_dbfs().expect("level");
        assert!((db - -13.5).abs() < 0.5, "{db}");
        assert_eq!(t.error(), None);
        let silent = MicTest::start(&InputChoice::Null, || {}).expect("thread");
        assert!(wait_for(|| silent.frames() >= 2));
        assert!(silent.level_dbfs().expect("level") < -80.0);
    }

    #[test]
    fn an_input_that_cannot_be_opened_says_why() {
        let t = MicTest::start(&InputChoice::Wav("/nonexistent/speech.wav".into()), || {})
            .expect("thread");
        assert!(wait_for(|| t.error().is_some()));
        let e = t.error().unwrap_or_default();
        assert!(e.starts_with("cannot open the input"), "{e}");
        assert_eq!(t.level_dbfs(), None);
    }
}
