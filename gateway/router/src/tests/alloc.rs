//! `Router::find` must not allocate once the per-connection scratch has warmed up.
//!
//! The lib test binary gets a counting global allocator; it only counts, per thread, so other
//! tests are unaffected.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use super::{RouteExt, build, find_in, route, rq};
use crate::MatchScratch;

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> usize {
    ALLOCS.with(Cell::get)
}

#[test]
fn find_allocates_nothing_after_warm_up() {
    let router = build(&[
        route(1).hosts(&["api.test"]).paths(&["/v1/users"]),
        route(2)
            .hosts(&["*.test"])
            .paths(&["~/v2/(?<user>[^/]+)/(\\d+)"]),
        route(3)
            .header("x-tenant", &["~*^acme", "globex"])
            .paths(&["/"]),
    ]);
    let requests = [
        rq("GET", "/v1/users/%41b/../x", "api.test:8443"),
        rq("POST", "/v2/alice/42/rest", "eu.test"),
        rq("GET", "/other", "none.test").header("X-Tenant", "ACME Inc"),
        rq("GET", "/other", "none.test").header("X-Tenant", "initech"),
    ];
    let mut scratch = MatchScratch::default();
    for r in &requests {
        find_in(&router, r, &mut scratch);
    }
    let before = allocs();
    let mut hits = 0;
    for _ in 0..100 {
        for r in &requests {
            hits += usize::from(find_in(&router, r, &mut scratch).is_some());
        }
    }
    assert_eq!(allocs() - before, 0, "find allocated");
    assert_eq!(hits, 300);
    assert_eq!(scratch.normalized_path(), "/other");
}
