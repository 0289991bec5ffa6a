//! A large route table: matching must pick the right route (speed is a benchmark's job).

use uuid::Uuid;

use super::{RouteExt, build, pick, route_id, rq};
use gangway_config::model::Route;

fn numbered(n: u128) -> Route {
    route_id(&Uuid::from_u128(0x1000_0000_0000_4000_8000_0000_0000_0000 | n).to_string())
}

#[test]
fn ten_thousand_prefix_and_host_routes() {
    const N: usize = 10_000;
    let mut routes: Vec<Route> = (0..N)
        .map(|i| {
            let host = format!("tenant-{}.example.com", i % 100);
            let path = format!("/api/v{}/resource-{i}", i % 7);
            numbered(i as u128).hosts(&[&host]).paths(&[&path])
        })
        .collect();
    // Unindexed routes mixed in: a wildcard host, a regex and a catch-all.
    routes.push(
        numbered(N as u128)
            .hosts(&["*.example.com"])
            .paths(&["/api"]),
    );
    routes.push(numbered(N as u128 + 1).paths(&["~/api/v\\d+/special$"]));
    routes.push(numbered(N as u128 + 2).paths(&["/"]));
    let router = build(&routes);

    for i in [0usize, 1, 99, 100, 4242, 9_998, 9_999] {
        let host = format!("tenant-{}.example.com", i % 100);
        let path = format!("/api/v{}/resource-{i}/sub?", i % 7);
        let path = path.trim_end_matches('?');
        assert_eq!(
            pick(&router, rq("GET", path, &host)),
            Some(i + 1),
            "{host}{path}"
        );
        // Same path on another tenant's host falls back to the wildcard-host route.
        let other = format!("tenant-{}.example.com", (i + 1) % 100);
        assert_eq!(
            pick(&router, rq("GET", path, &other)),
            Some(N + 1),
            "{other}{path}"
        );
    }
    // `resource-1` is a prefix of `resource-10`..: the longer prefix must win.
    assert_eq!(
        pick(
            &router,
            rq("GET", "/api/v3/resource-10", "tenant-10.example.com")
        ),
        Some(11)
    );
    assert_eq!(
        pick(&router, rq("GET", "/api/v3/special", "unknown.test")),
        Some(N + 2)
    );
    assert_eq!(
        pick(&router, rq("GET", "/other", "tenant-1.example.com")),
        Some(N + 3)
    );
}
