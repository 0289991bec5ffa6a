//! Ported from Kong's `08-router_spec.lua`, `select()` sections, flavor
//! `traditional_compatible`. Each test names the Kong case it mirrors.

use super::{RouteExt, build, pick, route, route_id, rq};
use crate::config::model::Route;
use crate::router::Router;

/// Kong's shared `select()` use_case table (routes 1..15).
fn select_use_case() -> Vec<Route> {
    vec![
        route(1).hosts(&["domain-1.org", "domain-2.org"]),
        route(2).methods(&["TRACE"]),
        route(3).paths(&["/my-route"]),
        route(4)
            .paths(&["/route-4"])
            .hosts(&["domain-1.org", "domain-2.org"]),
        route(5)
            .hosts(&["domain-1.org", "domain-2.org"])
            .methods(&["POST", "PUT", "PATCH"]),
        route(6)
            .methods(&["POST", "PUT", "PATCH"])
            .paths(&["/route-6"]),
        route(7)
            .hosts(&["domain-with-uri-1.org", "domain-with-uri-2.org"])
            .methods(&["POST", "PUT", "PATCH"])
            .paths(&["/my-route-uri"]),
        route(8).paths(&["/serviceless"]),
        route(9).header("location", &["my-location-1", "my-location-2"]),
        route(10)
            .header("location", &["my-location-1"])
            .header("version", &["v1", "v2"]),
        route(11)
            .header("location", &["my-location-1", "my-location-2"])
            .paths(&["/headers-uri"]),
        route(12)
            .hosts(&["domain-with-headers-1.org", "domain-with-headers-2.org"])
            .header("location", &["my-location-1", "my-location-2"])
            .methods(&["POST", "PUT", "PATCH"])
            .paths(&["/headers-host-uri-method"]),
        route(13).hosts(&["domain-1.org:321", "domain-2.org"]),
        route(14).hosts(&["domain-3.org:321"]),
        route(15).header(
            "user_agent",
            &["~*windows|linux|os\\s+x\\s*[\\d\\._]+|solaris|bsd"],
        ),
    ]
}

fn select_router() -> Router {
    build(&select_use_case())
}

#[test]
fn host() {
    assert_eq!(
        pick(&select_router(), rq("GET", "/", "domain-1.org")),
        Some(1)
    );
}

#[test]
fn host_ignores_default_port() {
    assert_eq!(
        pick(&select_router(), rq("GET", "/", "domain-1.org:80")),
        Some(1)
    );
}

#[test]
fn host_matches_specific_port() {
    assert_eq!(
        pick(&select_router(), rq("GET", "/", "domain-1.org:321")),
        Some(13)
    );
}

#[test]
fn host_matches_specific_port_on_port_only_route() {
    assert_eq!(
        pick(&select_router(), rq("GET", "/", "domain-3.org:321")),
        Some(14)
    );
}

#[test]
fn host_fails_just_because_of_port_on_port_only_route() {
    assert_eq!(
        pick(&select_router(), rq("GET", "/", "domain-3.org:123")),
        None
    );
}

#[test]
fn uri() {
    assert_eq!(
        pick(&select_router(), rq("GET", "/my-route", "domain.org")),
        Some(3)
    );
}

#[test]
fn uri_with_empty_host() {
    assert_eq!(
        pick(&select_router(), rq("GET", "/my-route-uri", "")),
        Some(3)
    );
}

#[test]
fn method() {
    assert_eq!(
        pick(&select_router(), rq("TRACE", "/", "domain.org")),
        Some(2)
    );
}

#[test]
fn host_and_uri() {
    assert_eq!(
        pick(&select_router(), rq("GET", "/route-4", "domain-1.org")),
        Some(4)
    );
}

#[test]
fn host_and_method() {
    assert_eq!(
        pick(&select_router(), rq("POST", "/", "domain-1.org")),
        Some(5)
    );
}

#[test]
fn uri_and_method() {
    assert_eq!(
        pick(&select_router(), rq("PUT", "/route-6", "domain.org")),
        Some(6)
    );
}

#[test]
fn host_uri_and_method() {
    let r = select_router();
    assert_eq!(
        pick(&r, rq("PUT", "/my-route-uri", "domain-with-uri-2.org")),
        Some(7)
    );
}

#[test]
fn single_header_value() {
    let r = select_router();
    let get = || rq("GET", "/", "");
    assert_eq!(pick(&r, get().header("location", "my-location-1")), Some(9));
    assert_eq!(pick(&r, get().header("location", "my-location-2")), Some(9));
    let multi = get()
        .header("location", "my-location-3")
        .header("location", "my-location-2");
    assert_eq!(pick(&r, multi), Some(9));
    assert_eq!(pick(&r, get().header("location", "my-location-3")), None);
    let none = get()
        .header("location", "my-location-3")
        .header("location", "foo");
    assert_eq!(pick(&r, none), None);
    let ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
              Chrome/83.0.4103.116 Safari/537.36";
    assert_eq!(pick(&r, get().header("user_agent", ua)), Some(15));
}

#[test]
fn multiple_header_values() {
    let r = select_router();
    let get = || rq("GET", "/", "");
    let v1 = get()
        .header("location", "my-location-1")
        .header("version", "v1");
    assert_eq!(pick(&r, v1), Some(10));
    let v2 = get()
        .header("location", "my-location-1")
        .header("version", "v2");
    assert_eq!(pick(&r, v2), Some(10));
    let any = get()
        .header("location", "my-location-3")
        .header("location", "my-location-1")
        .header("version", "v2");
    assert_eq!(pick(&r, any), Some(10));
    // Falls back to route 9.
    let fallback = get()
        .header("location", "my-location-3")
        .header("location", "my-location-2")
        .header("version", "v2");
    assert_eq!(pick(&r, fallback), Some(9));
}

#[test]
fn headers_and_uri() {
    let req = rq("GET", "/headers-uri", "").header("location", "my-location-2");
    assert_eq!(pick(&select_router(), req), Some(11));
}

#[test]
fn host_headers_uri_and_method() {
    let req = rq(
        "PUT",
        "/headers-host-uri-method",
        "domain-with-headers-1.org",
    )
    .header("location", "my-location-2");
    assert_eq!(pick(&select_router(), req), Some(12));
}

#[test]
fn serviceless() {
    assert_eq!(
        pick(&select_router(), rq("GET", "/serviceless", "")),
        Some(8)
    );
}

#[test]
fn uri_prefix_matches_when_given_uri_is_in_request_uri_prefix() {
    assert_eq!(
        pick(
            &select_router(),
            rq("GET", "/my-route/some/path", "domain.org")
        ),
        Some(3)
    );
}

#[test]
fn misses() {
    let r = select_router();
    assert_eq!(
        pick(&r, rq("GET", "/", "domain-3.org")),
        None,
        "invalid [host]"
    );
    assert_eq!(
        pick(&r, rq("GET", "/route-4", "domain-3.org")),
        None,
        "host in [host + uri]"
    );
    assert_eq!(
        pick(&r, rq("GET", "/some-uri", "domain-with-uri-2.org")),
        None,
        "method"
    );
    assert_eq!(
        pick(&r, rq("PUT", "/some-uri-foo", "domain-with-uri-2.org")),
        None,
        "uri"
    );
    let not_prefix = rq("GET", "/some-other-prefix/my-route", "domain.org");
    assert_eq!(pick(&r, not_prefix), None, "[uri] in URI but not in prefix");
    let bad = |m, p| rq(m, p, "").header("location", "invalid-location");
    assert_eq!(pick(&r, bad("GET", "/")), None, "invalid [headers]");
    assert_eq!(
        pick(&r, bad("GET", "/headers-uri")),
        None,
        "headers in [headers + uri]"
    );
    assert_eq!(pick(&r, bad("PUT", "/headers-uri-method")), None);
    let with_host = rq(
        "PUT",
        "/headers-host-uri-method",
        "domain-with-headers-1.org",
    )
    .header("location", "invalid-location");
    assert_eq!(
        pick(&r, with_host),
        None,
        "headers in [headers + host + uri + method]"
    );
}

#[test]
fn does_not_supersede_another_route_with_a_longer_uri() {
    let r = build(&[
        route(1).paths(&["/my-route/hello"]),
        route(2).paths(&["/my-route"]),
    ]);
    assert_eq!(
        pick(&r, rq("GET", "/my-route/hello", "domain.org")),
        Some(1)
    );
    assert_eq!(
        pick(&r, rq("GET", "/my-route/hello/world", "domain.org")),
        Some(1)
    );
    assert_eq!(pick(&r, rq("GET", "/my-route", "domain.org")), Some(2));
    assert_eq!(
        pick(&r, rq("GET", "/my-route/world", "domain.org")),
        Some(2)
    );
}

#[test]
fn longer_uri_wins_while_methods_are_also_defined() {
    let m = &["POST", "PUT", "GET"];
    let r = build(&[
        route(1).methods(m).paths(&["/my-route"]),
        route(2).methods(m).paths(&["/my-route/hello"]),
    ]);
    assert_eq!(
        pick(&r, rq("GET", "/my-route/hello", "domain.org")),
        Some(2)
    );
    assert_eq!(
        pick(&r, rq("GET", "/my-route/hello/world", "domain.org")),
        Some(2)
    );
    assert_eq!(pick(&r, rq("GET", "/my-route", "domain.org")), Some(1));
    assert_eq!(
        pick(&r, rq("GET", "/my-route/world", "domain.org")),
        Some(1)
    );
}

#[test]
fn longer_uri_wins_while_hosts_are_also_defined() {
    let r = build(&[
        route(1).hosts(&["domain.org"]).paths(&["/my-route"]),
        route(2).hosts(&["domain.org"]).paths(&["/my-route/hello"]),
    ]);
    assert_eq!(
        pick(&r, rq("GET", "/my-route/hello", "domain.org")),
        Some(2)
    );
    assert_eq!(
        pick(&r, rq("GET", "/my-route/hello/world", "domain.org")),
        Some(2)
    );
    assert_eq!(pick(&r, rq("GET", "/my-route", "domain.org")), Some(1));
    assert_eq!(
        pick(&r, rq("GET", "/my-route/world", "domain.org")),
        Some(1)
    );
}

#[test]
fn better_uri_for_another_host_does_not_interfere() {
    let r = build(&[
        route(1).hosts(&["example.com"]).paths(&["/my-route"]),
        route(2).hosts(&["example.com"]).paths(&["/my-route/hello"]),
        route(3)
            .hosts(&["example.net"])
            .paths(&["/my-route/hello/world"]),
    ]);
    assert_eq!(
        pick(&r, rq("GET", "/my-route/hello/world", "example.com")),
        Some(2)
    );
    let longer = rq("GET", "/my-route/hello/world/and/goodnight", "example.com");
    assert_eq!(pick(&r, longer), Some(2));
}

#[test]
fn only_matches_uri_prefix_as_a_prefix() {
    let r = build(&[
        route(1).paths(&["/something/my-route"]),
        route(2).hosts(&["example.com"]).paths(&["/my-route"]),
    ]);
    assert_eq!(
        pick(&r, rq("GET", "/something/my-route", "example.com")),
        Some(1)
    );
}

#[test]
fn uri_regex_matches() {
    let r = build(&[route(1).paths(&["~/users/\\d+/profile"])]);
    assert_eq!(
        pick(&r, rq("GET", "/users/123/profile", "domain.org")),
        Some(1)
    );
}

#[test]
fn right_route_among_several_uri_regexes() {
    let r = build(&[
        route(1).paths(&["~/route/persons/\\d{3}"]),
        route(2).paths(&["~/route/persons/\\d{3}/following"]),
        route(3).paths(&["~/route/persons/\\d{3}/[a-z]+"]),
    ]);
    assert_eq!(
        pick(&r, rq("GET", "/route/persons/456", "domain.org")),
        Some(1)
    );
}

#[test]
fn uri_regex_even_if_a_prefix_uri_got_a_match() {
    let r = build(&[
        route(1).paths(&["/route/persons"]),
        route(2).paths(&["~/route/persons/\\d+/profile"]),
    ]);
    assert_eq!(
        pick(&r, rq("GET", "/route/persons/123/profile", "domain.org")),
        Some(2)
    );
}

#[test]
fn uri_regex_even_if_a_uri_got_an_exact_match() {
    let r = build(&[
        route(1).paths(&["/route/fixture"]),
        route(2).paths(&["~/route/(fixture)"]),
    ]);
    assert_eq!(pick(&r, rq("GET", "/route/fixture", "domain.org")), Some(2));
}

#[test]
fn uri_regex_and_host_even_if_a_prefix_uri_got_a_match() {
    let r = build(&[
        route(1).hosts(&["route.com"]).paths(&["/pat"]),
        route(2)
            .hosts(&["route.com"])
            .paths(&["/path"])
            .methods(&["POST"]),
        route(3).hosts(&["route.com"]).paths(&["~/(path)"]),
    ]);
    assert_eq!(pick(&r, rq("GET", "/path", "route.com")), Some(3));
}

#[test]
fn uri_regex_matches_from_the_beginning() {
    let r = build(&[route(1).paths(&["~/prefix/[0-9]+"])]);
    assert_eq!(pick(&r, rq("GET", "/prefix/123", "domain.org")), Some(1));
    assert_eq!(pick(&r, rq("GET", "/extra/prefix/123", "domain.org")), None);
}

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
