//! Ported from Kong's `08-router_spec.lua`, flavor `traditional_compatible`: wildcard hosts,
//! headers, SNIs, the "edge-cases" ordering section and sub-route splitting.

use super::{RouteExt, build, pick, route, route_id, rq};
use gangway_config::model::Route;

fn wildcard_use_case() -> Vec<Route> {
    vec![
        route(1).hosts(&["*.route.com"]),
        route(2).hosts(&["route.*"]),
    ]
}

#[test]
fn wildcard_host_leftmost_rightmost_and_any_port() {
    let r = build(&wildcard_use_case());
    assert_eq!(pick(&r, rq("GET", "/", "foo.route.com")), Some(1));
    assert_eq!(pick(&r, rq("GET", "/", "route.org")), Some(2));
    assert_eq!(pick(&r, rq("GET", "/", "route.org:123")), Some(2));
    assert_eq!(pick(&r, rq("GET", "/", "foo.route.com:123")), Some(1));
    assert_eq!(pick(&r, rq("GET", "/", "route.com.evil")), Some(2));
    assert_eq!(pick(&r, rq("GET", "/", "xroute.com")), None);
}

#[test]
fn wildcard_host_matches_port_specific_routes() {
    let mut uc = wildcard_use_case();
    uc.push(route(3).hosts(&["*.route.net:123"]));
    uc.push(route(4).hosts(&["route.*:123"]));
    let r = build(&uc);
    assert_eq!(pick(&r, rq("GET", "/", "foo.route.net:123")), Some(3));
    assert_eq!(pick(&r, rq("GET", "/", "foo.route.net:456")), None);
    assert_eq!(pick(&r, rq("GET", "/", "route.org:123")), Some(4));
}

#[test]
fn wildcard_host_prefers_port_specific_for_default_ports() {
    for port in ["80", "443"] {
        let mut uc = wildcard_use_case();
        uc.push(route(3).hosts(&[&format!("route.*:{port}")]));
        let r = build(&uc);
        assert_eq!(pick(&r, rq("GET", "/", "route.org:123")), Some(2));
        assert_eq!(
            pick(&r, rq("GET", "/", &format!("route.org:{port}"))),
            Some(3)
        );
    }
}

#[test]
fn wildcard_host_does_not_take_precedence_over_a_plain_host() {
    let mut uc = wildcard_use_case();
    uc.insert(0, route(3).hosts(&["plain.route.com"]));
    uc.push(route(4).hosts(&["route.com"]));
    let r = build(&uc);
    assert_eq!(pick(&r, rq("GET", "/", "route.com")), Some(4));
    assert_eq!(pick(&r, rq("GET", "/", "route.org")), Some(3));
    assert_eq!(pick(&r, rq("GET", "/", "plain.route.com")), Some(1));
    assert_eq!(pick(&r, rq("GET", "/", "foo.route.com")), Some(2));
}

#[test]
fn wildcard_and_plain_host_with_paths() {
    let r = build(&[
        route(1).hosts(&["*.route.com"]).paths(&["/path1"]),
        route(2).hosts(&["plain.route.com"]).paths(&["/path2"]),
    ]);
    assert_eq!(pick(&r, rq("GET", "/path1", "plain.route.com")), Some(1));
    assert_eq!(pick(&r, rq("GET", "/path2", "plain.route.com")), Some(2));
}

#[test]
fn wildcard_host_port_vs_wildcard_host_ties_break_on_uuid() {
    let r = build(&[
        route(1).hosts(&["route.*"]),
        route(2).hosts(&["route.*:80", "route.com.*"]),
    ]);
    assert_eq!(pick(&r, rq("GET", "/", "route.org:80")), Some(2));

    let r = build(&[
        route(1).hosts(&["route.*"]),
        route(2).hosts(&["route.*:123"]),
        route(3).hosts(&["route.*:80"]),
    ]);
    assert_eq!(pick(&r, rq("GET", "/", "route.org:123")), Some(2));
}

#[test]
fn wildcard_or_plain_host_with_uri_and_method() {
    let mut uc = wildcard_use_case();
    uc.push(
        route(1)
            .hosts(&["*.domain.com", "example.com"])
            .paths(&["/path"])
            .methods(&["GET", "TRACE"]),
    );
    let r = build(&uc);
    assert_eq!(pick(&r, rq("POST", "/path", "foo.domain.com")), None);
    assert_eq!(pick(&r, rq("GET", "/path", "foo.domain.com")), Some(3));
    assert_eq!(pick(&r, rq("TRACE", "/path", "example.com")), Some(3));
}

#[test]
fn wildcard_host_with_uri_regex() {
    let r = build(&[
        route(1)
            .hosts(&["*.example.com"])
            .paths(&["~/users/\\d+/profile"]),
        route(2).hosts(&["*.example.com"]).paths(&["/users"]),
    ]);
    assert_eq!(
        pick(&r, rq("GET", "/users/123/profile", "test.example.com")),
        Some(1)
    );
    assert_eq!(pick(&r, rq("GET", "/users", "test.example.com")), Some(2));
}

#[test]
fn routes_with_more_headers_first() {
    let r = build(&[
        route(1)
            .header("version", &["v1", "v2"])
            .header("user_agent", &["foo", "bar"]),
        route(2)
            .header("version", &["v1", "v2"])
            .header("user_agent", &["foo", "bar"])
            .header("location", &["east", "west"]),
    ]);
    let req = rq("GET", "/", "")
        .header("version", "v1")
        .header("user_agent", "foo")
        .header("location", "north")
        .header("location", "west");
    assert_eq!(pick(&r, req), Some(2));
}

#[test]
fn header_names_and_values_are_case_insensitive() {
    let r = build(&[
        route(1).header("USER_AGENT", &["foo", "bar"]),
        route(2).header("user_agent", &["BAZ"]),
    ]);
    assert_eq!(
        pick(&r, rq("GET", "/", "").header("user_agent", "foo")),
        Some(1)
    );
    assert_eq!(
        pick(&r, rq("GET", "/", "").header("USER_AGENT", "baz")),
        Some(2)
    );
    assert_eq!(
        pick(&r, rq("GET", "/", "").header("user-agent", "FOO")),
        Some(1)
    );
}

#[test]
fn wildcard_sni() {
    let r = build(&[route(1).snis(&["*.sni.test"]), route(2).snis(&["sni.*"])]);
    for sni in ["foo.sni.test", "foo.bar.sni.test"] {
        assert_eq!(
            pick(&r, rq("GET", "/", "any.test").tls(sni)),
            Some(1),
            "{sni}"
        );
    }
    for sni in ["sni.foo", "sni.foo.bar"] {
        assert_eq!(
            pick(&r, rq("GET", "/", "any.test").tls(sni)),
            Some(2),
            "{sni}"
        );
    }
    for sni in ["bar.sni.foo", "foo.sni.test.bar"] {
        assert_eq!(pick(&r, rq("GET", "/", "any.test").tls(sni)), None, "{sni}");
    }
}

/// Kong's "edge-cases" use_case (routes 1..7).
fn edge_use_case() -> Vec<Route> {
    let m = &["POST", "PUT", "PATCH"];
    vec![
        route(1).hosts(&["domain-1.org", "domain-2.org"]),
        route(2).methods(&["TRACE"]),
        route(3).paths(&["/my-route"]),
        route(4)
            .paths(&["/route-4"])
            .hosts(&["domain-1.org", "domain-2.org"]),
        route(5).hosts(&["domain-1.org", "domain-2.org"]).methods(m),
        route(6).methods(m).paths(&["/route-6"]),
        route(7)
            .hosts(&["domain-with-uri-1.org", "domain-with-uri-2.org"])
            .methods(m)
            .paths(&["/my-route-uri"]),
    ]
}

#[test]
fn host_and_uri_have_higher_priority_than_method() {
    let r = build(&edge_use_case());
    assert_eq!(pick(&r, rq("TRACE", "/", "domain-2.org")), Some(1));
    assert_eq!(pick(&r, rq("TRACE", "/my-route", "domain.org")), Some(3));
}

#[test]
fn half_uri_and_host_match_does_not_supersede_another_route() {
    let r = build(&[
        route(1).hosts(&["host1.com"]).paths(&["/v1/path"]),
        route(2).hosts(&["host2.com"]).paths(&["/"]),
    ]);
    assert_eq!(pick(&r, rq("GET", "/v1/path", "host1.com")), Some(1));
    assert_eq!(pick(&r, rq("GET", "/v1/path", "host2.com")), Some(2));
}

#[test]
fn half_wildcard_host_and_method_match_does_not_supersede_another_route() {
    let r = build(&[
        route(1).hosts(&["host.*"]).methods(&["GET"]),
        route(2).hosts(&["host.*"]).methods(&["POST"]),
    ]);
    assert_eq!(pick(&r, rq("GET", "/", "host.com")), Some(1));
    assert_eq!(pick(&r, rq("POST", "/", "host.com")), Some(2));
}

#[test]
fn half_uri_regex_and_method_match_does_not_supersede_another_route() {
    let r = build(&[
        route(1).methods(&["GET"]).paths(&["~/users/\\d+/profile"]),
        route(2).methods(&["POST"]).paths(&["~/users/\\d*/profile"]),
    ]);
    assert_eq!(
        pick(&r, rq("GET", "/users/123/profile", "domain.org")),
        Some(1)
    );
    assert_eq!(
        pick(&r, rq("POST", "/users/123/profile", "domain.org")),
        Some(2)
    );
}

#[test]
fn method_does_not_supersede_uri_prefix() {
    let r = build(&[route(1).methods(&["GET"]), route(2).paths(&["/example"])]);
    assert_eq!(pick(&r, rq("GET", "/example", "domain.org")), Some(2));
    assert_eq!(
        pick(&r, rq("GET", "/example/status/200", "domain.org")),
        Some(2)
    );
}

#[test]
fn method_does_not_supersede_wildcard_host() {
    let r = build(&[route(1).methods(&["GET"]), route(2).hosts(&["domain.*"])]);
    assert_eq!(pick(&r, rq("GET", "/", "nothing.com")), Some(1));
    assert_eq!(pick(&r, rq("GET", "/", "domain.com")), Some(2));
}

#[test]
fn root_uri_is_a_catch_all_that_supersedes_nothing() {
    let mut uc = edge_use_case();
    uc.insert(
        0,
        route_id("e8fb37f1-102d-461e-9c51-6608a6bb810f").paths(&["/"]),
    );
    let r = build(&uc);
    assert_eq!(pick(&r, rq("GET", "/", "domain.org")), Some(1));
    assert_eq!(pick(&r, rq("GET", "/my-route", "domain.org")), Some(4));
    assert_eq!(
        pick(&r, rq("GET", "/my-route/hello/world", "domain.org")),
        Some(4)
    );
    assert_eq!(pick(&r, rq("GET", "/foobar/baz", "domain.org")), Some(1));
}

#[test]
fn multiple_routes_of_same_category_with_conflicting_values() {
    let mut uc = edge_use_case();
    for i in 1..=5 {
        uc.push(
            route_id(&format!("e8fb37f1-102d-461e-9c51-6608a6bb811{i}"))
                .hosts(&["domain.org"])
                .paths(&["/my-uri"]),
        );
    }
    uc.push(
        route_id("e8fb37f1-102d-461e-9c51-6608a6bb8121")
            .hosts(&["domain.org"])
            .paths(&["/my-target-uri"]),
    );
    let last = uc.len();
    assert_eq!(
        pick(&build(&uc), rq("GET", "/my-target-uri", "domain.org")),
        Some(last)
    );
}

#[test]
fn more_headers_has_priority_over_longer_paths() {
    let r = build(&[
        route(1)
            .header("version", &["v1"])
            .paths(&["/my-route/hello"]),
        route(2)
            .header("version", &["v1"])
            .header("location", &["us-east"])
            .paths(&["/my-route"]),
    ]);
    for path in ["/my-route/hello", "/my-route/hello/world"] {
        let req = rq("GET", path, "domain.org")
            .header("version", "v1")
            .header("location", "us-east");
        assert_eq!(pick(&r, req), Some(2), "{path}");
    }
}

#[test]
fn prefix_matching_ignores_regex_priority() {
    let r = build(&[
        route(1).paths(&["/.*"]).hosts(&["domain-1.org"]),
        route(2)
            .paths(&["/"])
            .hosts(&["domain-2.org"])
            .regex_priority(5),
        route(3).paths(&["/v1"]).hosts(&["domain-2.org"]),
    ]);
    assert_eq!(pick(&r, rq("GET", "/v1", "domain-2.org")), Some(3));
}

#[test]
fn regex_priority_orders_regex_routes() {
    let r = build(&[
        route(1).paths(&["~/api/.*"]),
        route(2).paths(&["~/api/v1/.*"]).regex_priority(10),
        route(3).paths(&["~/api/v1/x"]).regex_priority(-1),
    ]);
    assert_eq!(pick(&r, rq("GET", "/api/v1/x", "h")), Some(2));
    assert_eq!(pick(&r, rq("GET", "/api/v2/x", "h")), Some(1));
}

#[test]
fn both_regex_and_prefix_paths_are_split_into_sub_routes() {
    let r = build(&[
        route(1)
            .paths(&["~/some/thing/else", "/foo"])
            .hosts(&["domain-1.org"]),
        route(2).paths(&["/foo/bar"]).hosts(&["domain-1.org"]),
    ]);
    assert_eq!(
        pick(&r, rq("GET", "/some/thing/else", "domain-1.org")),
        Some(1)
    );
    assert_eq!(pick(&r, rq("GET", "/foo/bar", "domain-1.org")), Some(2));
    assert_eq!(pick(&r, rq("GET", "/foo", "domain-1.org")), Some(1));
}

#[test]
fn overlapping_prefixes_are_split_into_sub_routes() {
    let r = build(&[
        route(1)
            .paths(&["/foo", "/foo/bar/baz"])
            .hosts(&["domain-1.org"]),
        route(2).paths(&["/foo/bar"]).hosts(&["domain-1.org"]),
    ]);
    assert_eq!(pick(&r, rq("GET", "/foo", "domain-1.org")), Some(1));
    assert_eq!(pick(&r, rq("GET", "/foo/bar", "domain-1.org")), Some(2));
    assert_eq!(
        pick(&r, rq("GET", "/foo/bar/baz/x", "domain-1.org")),
        Some(1)
    );
}

#[test]
fn route_with_multiple_paths_and_no_service() {
    let r = build(&[route(1).paths(&["/foo", "/foobar", "/", "~/some/thing/else"])]);
    for path in ["/foo", "/foobar", "/", "/some/thing/else"] {
        assert_eq!(pick(&r, rq("GET", path, "domain.org")), Some(1), "{path}");
    }
}

#[test]
fn special_characters_in_paths() {
    let r = build(&[route(1).paths(&["/\\d"]), route(2).paths(&["~/\\d+\""])]);
    assert_eq!(pick(&r, rq("GET", "/\\d", "domain.org")), Some(1));
    assert_eq!(pick(&r, rq("GET", "/123\"", "domain.org")), Some(2));
}

#[test]
fn host_matching_is_case_sensitive() {
    let r = build(&[route(1).hosts(&["example.com"])]);
    assert_eq!(pick(&r, rq("GET", "/", "example.com")), Some(1));
    assert_eq!(pick(&r, rq("GET", "/", "EXAMPLE.com")), None);
}
