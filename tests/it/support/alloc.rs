//! A global allocator that counts, for the calling thread, the bytes
//! allocated and not yet freed, and their peak: for tests that measure what
//! one call keeps and what it needs on the way. Per thread, so that tests
//! running beside it do not disturb the count.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Install with `#[global_allocator] static A: Counting = Counting;`.
pub struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn add(n: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + n;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is passed to the system allocator unchanged; the
// counting touches only const-initialised thread-locals, which allocate
// nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            add(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            add(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        add(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            add(new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// What a call kept and needed, in bytes, on this thread.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    /// Allocated during the call and not freed by its end (its result
    /// included).
    pub kept: isize,
    /// The most allocated at once during the call, above where it began.
    pub peak: isize,
}

/// Runs `f`, counting what it allocates on this thread.
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, Measured) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let out = f();
    let end = LIVE.with(Cell::get);
    let peak = PEAK.with(Cell::get);
    (
        out,
        Measured {
            kept: end - start,
            peak: peak - start,
        },
    )
}
