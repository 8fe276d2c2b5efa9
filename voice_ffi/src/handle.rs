//! Guarded opaque handles: NULL, freed and foreign pointers become error codes, not crashes.
//!
//! A handle is a heap cell holding a magic number and the value. Every call checks the magic
//! before touching the value. `free` drops the value and marks the cell dead, then parks the
//! (small) cell in a bounded graveyard instead of returning it to the allocator, so a double free
//! or a use after free of one of the last [`GRAVEYARD`] handles reads a dead cell and returns
//! `VOICE_ERR_INVALID_HANDLE`. Older cells are released; beyond that, use after free is the
//! caller's undefined behaviour, as in any C library.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::voice_result;

const LIVE: u64 = 0x564f_4943_452d_4f4b; // "VOICE-OK"
const DEAD: u64 = 0x6465_6164_6465_6164; // "deaddead"
/// How many freed cells are kept to catch double frees.
pub(crate) const GRAVEYARD: usize = 1024;

/// The cell behind every opaque handle.
pub(crate) struct Handle<T> {
    magic: AtomicU64,
    value: UnsafeCell<Option<T>>,
}

struct Parked(#[allow(dead_code)] Box<dyn Send>);
static GRAVE: Mutex<VecDeque<Parked>> = Mutex::new(VecDeque::new());

impl<T: Send + 'static> Handle<T> {
    /// Moves `value` to the heap and returns the raw handle.
    pub(crate) fn into_raw(value: T) -> *mut Handle<T> {
        Box::into_raw(Box::new(Handle {
            magic: AtomicU64::new(LIVE),
            value: UnsafeCell::new(Some(value)),
        }))
    }

    unsafe fn check<'a>(p: *const Handle<T>) -> Result<&'a Handle<T>, voice_result> {
        // SAFETY: non-null pointers are handles this library returned (caller's contract); the
        // graveyard keeps recently freed cells readable.
        let h = unsafe { p.as_ref() }.ok_or(voice_result::VOICE_ERR_NULL)?;
        if h.magic.load(Ordering::Acquire) != LIVE {
            return Err(voice_result::VOICE_ERR_INVALID_HANDLE);
        }
        Ok(h)
    }

    /// Shared access to a live handle's value.
    pub(crate) unsafe fn get<'a>(p: *const Handle<T>) -> Result<&'a T, voice_result> {
        let h = unsafe { Self::check(p) }?;
        // SAFETY: live handle; shared access as documented per function.
        unsafe { (*h.value.get()).as_ref() }.ok_or(voice_result::VOICE_ERR_INVALID_HANDLE)
    }

    /// Exclusive access to a live handle's value (the caller must not use it concurrently).
    pub(crate) unsafe fn get_mut<'a>(p: *mut Handle<T>) -> Result<&'a mut T, voice_result> {
        let h = unsafe { Self::check(p) }?;
        // SAFETY: live handle; the header documents these functions as not thread-safe per handle.
        unsafe { (*h.value.get()).as_mut() }.ok_or(voice_result::VOICE_ERR_INVALID_HANDLE)
    }

    /// Drops the value and parks the dead cell. NULL is a no-op success.
    pub(crate) unsafe fn free(p: *mut Handle<T>) -> voice_result {
        if p.is_null() {
            return voice_result::VOICE_OK;
        }
        // SAFETY: as in `check`.
        let h = unsafe { &*p };
        if h.magic
            .compare_exchange(LIVE, DEAD, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return voice_result::VOICE_ERR_INVALID_HANDLE;
        }
        // SAFETY: we won the LIVE→DEAD race, so nobody else frees it.
        let value = unsafe { (*h.value.get()).take() };
        drop(value);
        // SAFETY: the cell was made by `into_raw`; it now holds `None`.
        let cell: Box<Handle<T>> = unsafe { Box::from_raw(p) };
        let mut grave = GRAVE.lock().unwrap_or_else(|e| e.into_inner());
        grave.push_back(Parked(Box::new(SendCell(cell))));
        while grave.len() > GRAVEYARD {
            grave.pop_front();
        }
        voice_result::VOICE_OK
    }
}

/// A dead cell holds `None`, so moving it between threads is sound.
struct SendCell<T>(#[allow(dead_code)] Box<Handle<T>>);
// SAFETY: a parked cell's value is `None` and its magic is DEAD; only the atomic is ever read.
unsafe impl<T> Send for SendCell<T> {}
