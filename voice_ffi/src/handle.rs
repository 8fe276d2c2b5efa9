//! Guarded opaque handles: NULL, freed, foreign, wrong-kind and concurrently used handles become
//! error codes, not crashes.
//!
//! A handle is a heap cell: a fixed `#[repr(C)]` head (magic number, kind tag, use counter) and
//! the value. Every call reads the head before touching the value:
//! - the magic says the cell is alive (`VOICE_ERR_INVALID_HANDLE` once freed);
//! - the kind tag says it is the right kind of handle, so `voice_client_leave(receiver)` is
//!   `VOICE_ERR_INVALID_HANDLE` instead of a read of a receiver as a client (the head has the same
//!   layout in every cell, so reading it through the wrong type is sound);
//! - the use counter admits any number of shared users ([`Handle::get`], for the client, whose
//!   state is thread-safe) or one exclusive user ([`Handle::get_mut`], for the encoder and the
//!   receiver, whose libopus state must never be entered from two threads): a second thread gets
//!   `VOICE_ERR_BUSY` at once (never blocks), and `free` while a call is in flight also gets
//!   `VOICE_ERR_BUSY` instead of pulling the value from under it.
//!
//! `free` drops the value and marks the cell dead, then parks the (small) cell in a bounded
//! graveyard instead of returning it to the allocator, so a double free or a use after free of one
//! of the last [`GRAVEYARD`] handles reads a dead cell and returns `VOICE_ERR_INVALID_HANDLE`.
//! Older cells are released; beyond that, use after free is the caller's undefined behaviour, as
//! in any C library.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::voice_result;

const LIVE: u64 = 0x564f_4943_452d_4f4b; // "VOICE-OK"
const DEAD: u64 = 0x6465_6164_6465_6164; // "deaddead"
/// How many freed cells are kept to catch double frees.
pub(crate) const GRAVEYARD: usize = 1024;
/// Set in the use counter while one caller holds the value exclusively (or it is being freed).
const EXCLUSIVE: u32 = 1 << 31;

/// Which kind of object a handle holds; every type behind a handle has its own tag.
pub(crate) trait Kind: Send + 'static {
    /// The tag written into the head and checked on every call.
    const TAG: u32;
}

/// The part of every cell that is read before the value's type is trusted.
#[repr(C)]
struct Head {
    magic: AtomicU64,
    tag: u32,
    /// Shared users, or [`EXCLUSIVE`].
    users: AtomicU32,
}

/// The cell behind every opaque handle.
#[repr(C)]
pub(crate) struct Handle<T> {
    head: Head,
    value: UnsafeCell<Option<T>>,
}

struct Parked(#[allow(dead_code)] Box<dyn Send>);
static GRAVE: Mutex<VecDeque<Parked>> = Mutex::new(VecDeque::new());

/// Shared access to a handle's value; released when dropped.
pub(crate) struct Shared<'a, T> {
    cell: &'a Handle<T>,
}

impl<T> Deref for Shared<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the value was `Some` when this guard was made, and `free` cannot take it while
        // the use counter is non-zero.
        unsafe { (*self.cell.value.get()).as_ref() }.expect("live handle holds a value")
    }
}

impl<T> Drop for Shared<'_, T> {
    fn drop(&mut self) {
        self.cell.head.users.fetch_sub(1, Ordering::Release);
    }
}

/// Exclusive access to a handle's value; released when dropped.
pub(crate) struct Exclusive<'a, T> {
    cell: &'a Handle<T>,
}

impl<T> Deref for Exclusive<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: as in `Shared`, and nobody else holds the cell.
        unsafe { (*self.cell.value.get()).as_ref() }.expect("live handle holds a value")
    }
}

impl<T> DerefMut for Exclusive<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the EXCLUSIVE bit is ours: no other reference to the value exists.
        unsafe { (*self.cell.value.get()).as_mut() }.expect("live handle holds a value")
    }
}

impl<T> Drop for Exclusive<'_, T> {
    fn drop(&mut self) {
        self.cell.head.users.store(0, Ordering::Release);
    }
}

impl<T: Kind> Handle<T> {
    /// Moves `value` to the heap and returns the raw handle.
    pub(crate) fn into_raw(value: T) -> *mut Handle<T> {
        Box::into_raw(Box::new(Handle {
            head: Head {
                magic: AtomicU64::new(LIVE),
                tag: T::TAG,
                users: AtomicU32::new(0),
            },
            value: UnsafeCell::new(Some(value)),
        }))
    }

    /// Checks that `p` is a live cell of kind `T`.
    unsafe fn check<'a>(p: *const Handle<T>) -> Result<&'a Handle<T>, voice_result> {
        if p.is_null() {
            return Err(voice_result::VOICE_ERR_NULL);
        }
        // SAFETY: non-null pointers are handles this library returned (caller's contract); every
        // cell starts with the same `#[repr(C)]` head, so reading it is sound whatever the kind;
        // the graveyard keeps recently freed cells readable.
        let head = unsafe { &*p.cast::<Head>() };
        if head.magic.load(Ordering::Acquire) != LIVE || head.tag != T::TAG {
            return Err(voice_result::VOICE_ERR_INVALID_HANDLE);
        }
        // SAFETY: the tag says the cell holds a `T`.
        Ok(unsafe { &*p })
    }

    /// Shared access to a live handle's value: any number of threads at once.
    pub(crate) unsafe fn get<'a>(p: *const Handle<T>) -> Result<Shared<'a, T>, voice_result>
    where
        T: Sync,
    {
        let h = unsafe { Self::check(p) }?;
        let users = h.head.users.fetch_add(1, Ordering::Acquire);
        let guard = Shared { cell: h };
        if users & EXCLUSIVE != 0 {
            // Being freed right now (shared handles are never held exclusively otherwise).
            return Err(voice_result::VOICE_ERR_INVALID_HANDLE);
        }
        // Re-check after registering: a free that won the race has marked the cell dead.
        if h.head.magic.load(Ordering::Acquire) != LIVE {
            return Err(voice_result::VOICE_ERR_INVALID_HANDLE);
        }
        Ok(guard)
    }

    /// Exclusive access to a live handle's value; `VOICE_ERR_BUSY` while another call holds it.
    pub(crate) unsafe fn get_mut<'a>(p: *mut Handle<T>) -> Result<Exclusive<'a, T>, voice_result> {
        let h = unsafe { Self::check(p) }?;
        if h.head
            .users
            .compare_exchange(0, EXCLUSIVE, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Err(voice_result::VOICE_ERR_BUSY);
        }
        let guard = Exclusive { cell: h };
        if h.head.magic.load(Ordering::Acquire) != LIVE {
            return Err(voice_result::VOICE_ERR_INVALID_HANDLE);
        }
        Ok(guard)
    }

    /// Drops the value and parks the dead cell. NULL is a no-op success; a cell in use by another
    /// call is left alone with `VOICE_ERR_BUSY`.
    pub(crate) unsafe fn free(p: *mut Handle<T>) -> voice_result {
        if p.is_null() {
            return voice_result::VOICE_OK;
        }
        let h = match unsafe { Self::check(p) } {
            Ok(h) => h,
            Err(e) => return e,
        };
        // Take the cell exclusively; a call in flight keeps it.
        if let Err(users) =
            h.head
                .users
                .compare_exchange(0, EXCLUSIVE, Ordering::Acquire, Ordering::Relaxed)
        {
            // A concurrent free that got here first holds EXCLUSIVE and is about to mark it dead.
            return if users == EXCLUSIVE && h.head.magic.load(Ordering::Acquire) != LIVE {
                voice_result::VOICE_ERR_INVALID_HANDLE
            } else {
                voice_result::VOICE_ERR_BUSY
            };
        }
        if h.head
            .magic
            .compare_exchange(LIVE, DEAD, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return voice_result::VOICE_ERR_INVALID_HANDLE;
        }
        // The EXCLUSIVE bit stays set for ever: the cell is dead.
        // SAFETY: we hold the cell exclusively and marked it dead, so nobody else touches the value.
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
// SAFETY: a parked cell's value is `None` and its magic is DEAD; only the head is ever read.
unsafe impl<T> Send for SendCell<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    struct A(u32);
    impl Kind for A {
        const TAG: u32 = 1;
    }
    struct B;
    impl Kind for B {
        const TAG: u32 = 2;
    }

    #[test]
    fn an_exclusive_user_makes_every_other_call_and_free_busy() {
        let p = Handle::into_raw(A(5));
        unsafe {
            let mut held = Handle::get_mut(p).unwrap();
            held.0 += 1;
            assert!(matches!(
                Handle::get_mut(p),
                Err(voice_result::VOICE_ERR_BUSY)
            ));
            assert_eq!(Handle::free(p), voice_result::VOICE_ERR_BUSY);
            drop(held);
            assert_eq!(Handle::get_mut(p).unwrap().0, 6);
            assert_eq!(Handle::free(p), voice_result::VOICE_OK);
            assert!(matches!(
                Handle::get_mut(p),
                Err(voice_result::VOICE_ERR_INVALID_HANDLE)
            ));
        }
    }

    #[test]
    fn shared_users_coexist_and_hold_off_free() {
        let p = Handle::into_raw(A(1));
        unsafe {
            let a = Handle::get(p).unwrap();
            let b = Handle::get(p).unwrap();
            assert_eq!(a.0 + b.0, 2);
            assert_eq!(Handle::free(p), voice_result::VOICE_ERR_BUSY);
            drop((a, b));
            assert_eq!(Handle::free(p), voice_result::VOICE_OK);
            assert_eq!(Handle::free(p), voice_result::VOICE_ERR_INVALID_HANDLE);
        }
    }

    #[test]
    fn a_cell_of_another_kind_is_refused_before_its_value_is_read() {
        let p = Handle::into_raw(A(1));
        unsafe {
            let wrong = p.cast::<Handle<B>>();
            assert!(matches!(
                Handle::get_mut(wrong),
                Err(voice_result::VOICE_ERR_INVALID_HANDLE)
            ));
            assert_eq!(Handle::free(wrong), voice_result::VOICE_ERR_INVALID_HANDLE);
            assert_eq!(Handle::free(p), voice_result::VOICE_OK);
        }
    }
}
