//! Large tables of empty slots for the counters (the local policy's counts, a Redis store's
//! windows): zeroed by the kernel rather than written, and backed by huge pages.
//!
//! Writing a million empty slots would touch every page of a table that fills over a whole
//! window, a stall of milliseconds for the request that opens the window; fresh zeroed
//! memory costs nothing until a slot is used.

/// Types whose all-zero bytes are a valid, empty value (atomics of 0).
///
/// # Safety
///
/// Every field must be valid when all of its bytes are zero.
pub unsafe trait ZeroIsEmpty: Default {}

/// `n` empty slots, in memory the kernel backs with huge pages where it can: a table of a
/// million keys spans thousands of small pages and every lookup lands on a random one, so
/// with small pages most lookups miss the TLB as well as the cache. Hosts that set
/// transparent huge pages to `madvise` (Debian's and Amazon Linux's default) give them only to
/// memory that asks. Measured at a million consumers (perf, two rounds): the local counts'
/// prefetch's share of samples fell by about 40%.
pub fn slots<T: ZeroIsEmpty>(n: usize) -> Box<[T]> {
    let layout = match std::alloc::Layout::array::<T>(n) {
        Ok(layout) if layout.size() > 0 => layout,
        _ => return (0..n).map(|_| T::default()).collect(),
    };
    // SAFETY: the layout has a non-zero size. All-zero bytes are a valid `T` (`ZeroIsEmpty`).
    // The memory comes from the global allocator with `Layout::array::<T>(n)`, the layout a
    // `Box<[T]>` of length `n` is freed with.
    unsafe {
        let at = std::alloc::alloc_zeroed(layout);
        if at.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        // A zeroed allocation this large is fresh mmap'd memory nothing has touched yet, so
        // the advice applies from the first fault.
        advise_huge_pages(at, layout.size());
        Box::from_raw(std::ptr::slice_from_raw_parts_mut(at.cast::<T>(), n))
    }
}

/// Asks for huge pages over the 2 MiB-aligned part of the `len` bytes at `at`, if any.
fn advise_huge_pages(at: *mut u8, len: usize) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 * 1024 * 1024;
        let start = (at as usize).next_multiple_of(HUGE);
        let end = (at as usize + len) / HUGE * HUGE;
        if start < end {
            // SAFETY: the range lies inside one live allocation; MADV_HUGEPAGE changes how
            // it is backed, never what it holds.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (at, len);
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[derive(Default)]
    struct Pair(AtomicU64, AtomicU64);

    // SAFETY: two `AtomicU64`s.
    unsafe impl ZeroIsEmpty for Pair {}

    #[test]
    fn slots_are_empty_at_every_size() {
        for n in [0, 1, 1000, 300_000] {
            let slots = slots::<Pair>(n);
            assert_eq!(slots.len(), n);
            assert!(
                slots
                    .iter()
                    .all(|p| p.0.load(Ordering::Relaxed) == 0 && p.1.load(Ordering::Relaxed) == 0)
            );
        }
    }
}
