//! Ported from Kong's `08-router_spec.lua` `exec()` sections: captures, stripped paths,
//! normalization and the `#slash handling` fixture run through the whole router.

use super::{RouteExt, build, find_in, route, route_id, rq};
use crate::upstream_uri::path_handling_cases::CASES;
use crate::{MatchScratch, RouteMatch, Router, RouterFlavor, upstream_path};
use gangway_config::model::PathHandling;

fn exec(router: &Router, path: &str, scratch: &mut MatchScratch) -> Option<RouteMatch> {
    find_in(router, &rq("GET", path, "domain.org"), scratch)
}

/// Kong's `upstream_uri` for a match, with no service path.
fn upstream(router: &Router, path: &str, strip: bool) -> (Option<String>, String) {
    let mut scratch = MatchScratch::default();
    let m = exec(router, path, &mut scratch).expect("matches");
    let prefix = strip
        .then(|| m.matched_path(&scratch).map(str::to_owned))
        .flatten();
    let mut out = Vec::new();
    upstream_path(
        None,
        strip,
        PathHandling::V0,
        RouterFlavor::TraditionalCompatible,
        scratch.normalized_path(),
        m.matched_len,
        &mut out,
    );
    (prefix, String::from_utf8(out).expect("ascii"))
}

#[test]
fn uri_captures_with_an_optional_group_fix_13014() {
    let r = build(&[route(1).paths(&["~/(users/)?1984/(?<subpath>profile)$"])]);
    let mut s = MatchScratch::default();
    assert!(exec(&r, "/1984/profile", &mut s).is_some());
    assert!(s.has_captures());
    assert_eq!(s.capture(1), None);
    assert_eq!(s.named_capture("subpath"), Some("profile"));
    assert_eq!(s.named_capture("scope"), None);
}

#[test]
fn uri_captures_from_a_uri_regex() {
    let r = build(&[route(1).paths(&["~/users/(?P<user_id>\\d+)/profile/?(?P<scope>[a-z]*)"])]);
    let mut s = MatchScratch::default();
    for _ in 0..2 {
        assert!(exec(&r, "/users/1984/profile", &mut s).is_some());
        assert_eq!(s.capture(1), Some("1984"));
        assert_eq!(s.named_capture("user_id"), Some("1984"));
        assert_eq!(s.capture(2), Some(""));
        assert_eq!(s.named_capture("scope"), Some(""));
        assert_eq!(s.capture(0), Some("/users/1984/profile"));
        assert_eq!(s.capture_len(), 3);
    }
    assert!(exec(&r, "/users/1984/profile/email", &mut s).is_some());
    assert_eq!(s.capture(2), Some("email"));
    assert_eq!(s.named_capture("scope"), Some("email"));
    assert_eq!(s.capture(0), Some("/users/1984/profile/email"));
    let named: Vec<_> = s.named_captures().collect();
    assert_eq!(named, vec![("user_id", "1984"), ("scope", "email")]);
}

#[test]
fn uri_captures_are_normalized_fix_7913() {
    let r = build(&[
        route(1).paths(&["~/users/(?P<fullname>[a-zA-Z\\s\\d%]+)/profile/?(?P<scope>[a-z]*)"])
    ]);
    let mut s = MatchScratch::default();
    assert!(exec(&r, "/users/%6aohn%20doe/profile", &mut s).is_some());
    assert_eq!(s.capture(1), Some("john doe"));
    assert_eq!(s.named_capture("fullname"), Some("john doe"));
    assert_eq!(s.named_capture("scope"), Some(""));
    assert_eq!(s.capture(0), Some("/users/john doe/profile"));
}

#[test]
fn no_uri_captures_from_a_prefix_or_a_regex_without_groups() {
    let mut s = MatchScratch::default();
    let prefix = build(&[route(1).paths(&["/hello"])]);
    assert!(exec(&prefix, "/hello/world", &mut s).is_some());
    assert!(!s.has_captures());
    assert_eq!(s.capture(0), None);
    assert_eq!(upstream(&prefix, "/hello/world", true).1, "/world");

    let regex = build(&[route(1).paths(&["~/users/\\d+/profile"])]);
    assert!(exec(&regex, "/users/1984/profile", &mut s).is_some());
    assert!(!s.has_captures());
}

#[test]
fn allows_url_encoded_paths_if_they_are_reserved_characters() {
    let r = build(&[route(1).paths(&["/endel%2Fst"])]);
    assert_eq!(
        upstream(&r, "/endel%2Fst", false),
        (None, "/endel%2Fst".into())
    );
    assert_eq!(
        upstream(&r, "/endel%2fst", true),
        (Some("/endel%2Fst".into()), "/".into())
    );
}

fn strip_use_case() -> Router {
    build(&[
        route_id("00000000-0000-4000-8000-000000000001").paths(&["/my-route", "/xx-route"]),
        route_id("00000000-0000-4000-8000-000000000002")
            .methods(&["POST"])
            .paths(&["/my-route", "/xx-route"])
            .strip(false),
    ])
}

#[test]
fn strips_the_matched_prefix() {
    let r = strip_use_case();
    assert_eq!(
        upstream(&r, "/my-route/hello/world", true),
        (Some("/my-route".into()), "/hello/world".into())
    );
    assert_eq!(
        upstream(&r, "/my-route", true),
        (Some("/my-route".into()), "/".into())
    );
    for _ in 0..2 {
        assert_eq!(
            upstream(&r, "/xx-route", true),
            (Some("/xx-route".into()), "/".into())
        );
        assert_eq!(
            upstream(&r, "/my-route", true),
            (Some("/my-route".into()), "/".into())
        );
    }
}

#[test]
fn does_not_strip_when_strip_path_is_off() {
    let r = strip_use_case();
    let mut s = MatchScratch::default();
    let m = find_in(
        &r,
        &rq("POST", "/my-route/hello/world", "domain.org"),
        &mut s,
    )
    .expect("match");
    assert_eq!(m.route, 1);
    let mut out = Vec::new();
    upstream_path(
        None,
        false,
        PathHandling::V0,
        RouterFlavor::TraditionalCompatible,
        s.normalized_path(),
        m.matched_len,
        &mut out,
    );
    assert_eq!(out, b"/my-route/hello/world");
}

#[test]
fn does_not_strip_root_uri() {
    let r = build(&[route(1).paths(&["/"])]);
    assert_eq!(
        upstream(&r, "/my-route/hello/world", true),
        (Some("/".into()), "/my-route/hello/world".into())
    );
}

#[test]
fn strips_a_uri_regex_with_and_without_groups() {
    for re in ["~/users/\\d+/profile", "~/users/(\\d+)/profile"] {
        let r = build(&[route(1).paths(&[re])]);
        let got = upstream(&r, "/users/123/profile/hello/world", true);
        assert_eq!(
            got,
            (Some("/users/123/profile".into()), "/hello/world".into()),
            "{re}"
        );
    }
}

/// Kong strips `#matched_text` bytes from the start of the path (`kong/router/atc.lua`,
/// `req_uri:sub(#request_prefix + 1)`), which differs from stripping up to the match's end
/// when an unanchored branch matched past the start.
#[test]
fn a_regex_matched_past_the_start_strips_its_length() {
    let r = build(&[route(1).paths(&["~/a|/b"])]);
    let (_, upstream_uri) = upstream(&r, "/x/b/rest", true);
    assert_eq!(upstream_uri, "/b/rest");
}

#[test]
fn normalizes_client_uri_before_matching_and_proxying() {
    let r = build(&[
        route(1).paths(&["/plain/a.b.c"]),
        route(2).paths(&["~/reg%65x/\\d+"]),
    ]);
    let mut s = MatchScratch::default();
    assert_eq!(
        exec(&r, "/plain/./a.b%2Ec", &mut s).map(|m| m.route),
        Some(0)
    );
    assert_eq!(s.normalized_path(), "/plain/a.b.c");
    // Regex paths are not normalized (Kong 3.x), so a decoded request no longer matches.
    assert_eq!(exec(&r, "/reg%65x/123", &mut s), None);
    assert_eq!(s.normalized_path(), "/regex/123");
}

#[test]
fn gracefully_handles_invalid_utf8_sequences() {
    let r = build(&[route(1).paths(&["/"])]);
    let mut s = MatchScratch::default();
    assert_eq!(exec(&r, "/%fc%80%80%80%80%af", &mut s), None);
}

/// Kong's `#slash handling` tests: every v0 fixture row through the router, once with the
/// route path as a prefix (or host-only when the row has no route path) and once as the
/// injected regex `~/[0]?<route path>`.
#[test]
fn slash_handling_fixture_through_the_router() {
    let mut ran = 0;
    for (i, case) in CASES.iter().enumerate() {
        for &strip in case.strip {
            if !case.handling.contains(&PathHandling::V0) {
                continue;
            }
            let host = format!("localbin-{i}.com");
            let mut variants = vec![route(1).hosts(&[&host]).strip(strip)];
            if let Some(p) = case.route {
                variants[0] = variants[0].clone().paths(&[p]);
                let regex = format!("~/[0]?{}", &p[1..]);
                variants.push(route(1).hosts(&[&host]).paths(&[&regex]).strip(strip));
            }
            for r in variants {
                let desc = format!(
                    "row {} {:?} strip={strip} req={}",
                    i + 1,
                    r.paths,
                    case.request
                );
                let router = build(std::slice::from_ref(&r));
                let mut s = MatchScratch::default();
                let m = find_in(&router, &rq("GET", case.request, &host), &mut s).expect(&desc);
                let mut out = Vec::new();
                upstream_path(
                    Some(case.service),
                    strip,
                    PathHandling::V0,
                    RouterFlavor::TraditionalCompatible,
                    s.normalized_path(),
                    m.matched_len,
                    &mut out,
                );
                assert_eq!(
                    String::from_utf8(out).expect("ascii"),
                    case.expected,
                    "{desc}"
                );
                ran += 1;
            }
        }
    }
    assert_eq!(ran, 194, "every v0 row, prefix and regex variants");
}
