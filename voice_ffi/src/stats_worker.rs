//! Stats snapshots without blocking the caller's thread on a channel.
//!
//! [`Client::stats`] waits for the engine thread's answer on a crossbeam channel. A thread that
//! blocks there gets a `std::thread::Thread` handle made for it (crossbeam's waiter context asks
//! for `thread::current()`); for a thread Rust did not create, such as a game's main thread calling
//! `voice_client_stats`, that handle is never released, and valgrind reports it as "possibly lost"
//! at exit. So the blocking wait happens on a library thread (`voice-ffi-stats`, one per client,
//! joined when the client is freed), and the C caller waits on a `Mutex` + `Condvar`, which need no
//! thread handle.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ::voice_client::{Client, EngineStats};

/// How long a caller waits for a snapshot (the engine thread itself is given 1 s).
const WAIT: Duration = Duration::from_millis(1500);

#[derive(Default)]
struct Slot {
    /// Requests made so far.
    asked: u64,
    /// The last request answered (all up to it).
    answered: u64,
    result: Option<EngineStats>,
    stop: bool,
}

struct Shared {
    slot: Mutex<Slot>,
    cv: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One client's stats thread.
pub(crate) struct StatsWorker {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl StatsWorker {
    /// Starts the thread for `client`.
    pub(crate) fn start(client: Arc<Client>) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot::default()),
            cv: Condvar::new(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("voice-ffi-stats".into())
            .spawn(move || loop {
                let target = {
                    let mut slot = s.lock();
                    while !slot.stop && slot.answered == slot.asked {
                        slot = s.cv.wait(slot).unwrap_or_else(|e| e.into_inner());
                    }
                    if slot.stop {
                        return;
                    }
                    slot.asked
                };
                let result = client.stats();
                let mut slot = s.lock();
                slot.answered = target;
                slot.result = result;
                s.cv.notify_all();
            })?;
        Ok(StatsWorker {
            shared,
            thread: Some(thread),
        })
    }

    /// A fresh snapshot, or `None` when the engine does not answer in time.
    pub(crate) fn snapshot(&self) -> Option<EngineStats> {
        let deadline = Instant::now() + WAIT;
        let mut slot = self.shared.lock();
        slot.asked += 1;
        let mine = slot.asked;
        self.shared.cv.notify_all();
        while slot.answered < mine {
            let left = deadline.checked_duration_since(Instant::now())?;
            slot = self
                .shared
                .cv
                .wait_timeout(slot, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        slot.result.clone()
    }
}

impl Drop for StatsWorker {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
