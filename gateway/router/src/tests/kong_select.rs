//! Ported from Kong's `08-router_spec.lua`, `select()` sections, flavor
//! `traditional_compatible`. Each test names the Kong case it mirrors.

use super::{RouteExt, build, pick, route, rq};
use crate::Router;
use gangway_config::model::Route;

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
