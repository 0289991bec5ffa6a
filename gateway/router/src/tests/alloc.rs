//! `Router::find` must not allocate once the per-connection scratch has warmed up.
//!
//! The lib test binary gets a counting global allocator; it only counts, per thread, so other
//! tests are unaffected.

use super::{RouteExt, build, find_in, route, rq};
use crate::MatchScratch;
use gangway_test_support::alloc::{Counting, allocations as allocs};

#[global_allocator]
static GLOBAL: Counting = Counting;

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
