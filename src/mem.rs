//! The allocator of the `gradtail` binary: the system's, with large allocations asking for
//! 2 MiB pages. Many Linux systems give transparent huge pages only to memory that asks for
//! them (`madvise` mode). Without them a 64 MiB block buffer takes 16 384 page faults on first
//! touch, each zeroing a page and taking the kernel's page-list locks: on 10⁶ coordinates ×
//! 256 samples, 150 000 faults and a tenth of the run's CPU time, most of it on the thread
//! that reads and finishes. With them, 32 faults per 64 MiB.

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations from this size on are advised; smaller ones come from the heap's reused pages.
const LARGE: usize = 4 << 20;

pub struct HugePages;

// SAFETY: every call is passed to `System`; the advice only changes how the pages of an
// allocation just returned are backed, never their contents or extent.
unsafe impl GlobalAlloc for HugePages {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc(layout) };
        advise(p, layout.size());
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.alloc_zeroed(layout) };
        advise(p, layout.size());
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if new_size > layout.size() {
            advise(p, new_size);
        }
        p
    }
}

/// Asks for huge pages over the whole 2 MiB pages inside `bytes` bytes from `ptr`, when the
/// allocation is large; a hint, so a refusal changes nothing but speed.
fn advise(ptr: *mut u8, bytes: usize) {
    #[cfg(target_os = "linux")]
    if !ptr.is_null() && bytes >= LARGE {
        const HUGE: usize = 2 << 20;
        let start = (ptr as usize).next_multiple_of(HUGE);
        let end = (ptr as usize + bytes) / HUGE * HUGE;
        if end > start {
            // SAFETY: the range lies inside the allocation just made; MADV_HUGEPAGE changes
            // how its pages are backed, never their contents.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, bytes, LARGE);
}
