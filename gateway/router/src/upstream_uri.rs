//! Building the upstream path from the service path and the (stripped) request path.
//!
//! Kong's `path_handling` v0 (the only algorithm `traditional_compatible` uses) and v1 (honoured
//! by the legacy `traditional` flavor). The inputs are the *normalized* request path and the
//! length of the matched route path, which is what Kong strips.

use super::RouterFlavor;
use gangway_config::model::PathHandling;
use gangway_http::uri::escape_into;

/// Kong's `sanitize_uri_postfix`: a leftover `./` or `../` (from `/route./x`) is dropped.
fn sanitize_postfix(postfix: &[u8]) -> &[u8] {
    match postfix {
        b"." | b".." => b"",
        p if p.starts_with(b"./") => &p[2..],
        p if p.starts_with(b"../") => &p[3..],
        p => p,
    }
}

/// Appends the upstream path (no query string) for a matched request to `out`, escaped as
/// Kong escapes `upstream_uri`. The caller appends `?` and the raw query when there is one.
///
/// - `service_path`: the service's `path`; `None` means `/`.
/// - `strip_path`: the route's `strip_path`.
/// - `path_handling`: the route's `path_handling`; `v1` only applies when `flavor` is
///   [`RouterFlavor::Traditional`], otherwise `v0` is used (as Kong does).
/// - `normalized_path`: [`super::MatchScratch::normalized_path`] of the matching request.
/// - `matched_len`: [`super::RouteMatch::matched_len`]: the byte length of the matched route
///   path (prefix routes) or of the whole regex match (regex routes); `None` when the route
///   has no paths, in which case Kong treats the prefix as `/`.
pub fn upstream_path(
    service_path: Option<&str>,
    strip_path: bool,
    path_handling: PathHandling,
    flavor: RouterFlavor,
    normalized_path: &str,
    matched_len: Option<usize>,
    out: &mut Vec<u8>,
) {
    let base = service_path.unwrap_or("/").as_bytes();
    let req = normalized_path.as_bytes();
    let prefix_len = if strip_path {
        matched_len.unwrap_or(1)
    } else {
        1
    };
    let postfix = sanitize_postfix(req.get(prefix_len..).unwrap_or(b""));
    let req_tail = req.get(1..).unwrap_or(b"");
    let base_trimmed = base.strip_suffix(b"/").unwrap_or(base);
    let mut put = |piece: &[u8]| escape_into(piece, out);

    if flavor == RouterFlavor::Traditional && path_handling == PathHandling::V1 {
        if !strip_path {
            put(base);
            put(req_tail);
        } else if base.ends_with(b"/") && postfix.starts_with(b"/") {
            put(base_trimmed);
            put(postfix);
        } else {
            put(base);
            put(postfix);
        }
        return;
    }

    if base.ends_with(b"/") {
        if !strip_path {
            put(base);
            put(req_tail);
        } else if postfix.is_empty() {
            if base == b"/" {
                put(b"/");
            } else if req.ends_with(b"/") {
                put(base);
            } else {
                put(base_trimmed);
            }
        } else if postfix.starts_with(b"/") {
            put(base_trimmed);
            put(postfix);
        } else {
            put(base);
            put(postfix);
        }
    } else if !strip_path {
        put(base);
        if req != b"/" {
            put(req);
        }
    } else if postfix.is_empty() {
        put(base);
        if req.len() > 1 && req.ends_with(b"/") {
            put(b"/");
        }
    } else {
        put(base);
        if !postfix.starts_with(b"/") {
            put(b"/");
        }
        put(postfix);
    }
}

#[cfg(test)]
#[path = "path_handling_cases.rs"]
pub(super) mod path_handling_cases;

#[cfg(test)]
mod tests {
    use super::path_handling_cases::CASES;
    use super::*;
    use gangway_http::uri::{NormalizeBufs, normalize};

    fn run(
        service: &str,
        route_path: Option<&str>,
        strip: bool,
        handling: PathHandling,
        flavor: RouterFlavor,
        request: &str,
    ) -> String {
        let mut bufs = NormalizeBufs::default();
        let mut path = String::new();
        assert!(normalize(request, &mut bufs, &mut path));
        // For these cases the route path is a prefix of the normalized request path.
        let matched = route_path.map(|p| {
            assert!(path.starts_with(p), "{p} is not a prefix of {path}");
            p.len()
        });
        let mut out = Vec::new();
        upstream_path(
            Some(service),
            strip,
            handling,
            flavor,
            &path,
            matched,
            &mut out,
        );
        String::from_utf8(out).expect("escaped output is ASCII")
    }

    /// Every row of Kong's `spec/fixtures/router_path_handling_tests.lua`, expanded over its
    /// strip_path and path_handling alternatives. v1 rows run under the `traditional` flavor.
    #[test]
    fn kong_path_handling_fixture() {
        let mut ran = 0;
        for (line, case) in CASES.iter().enumerate() {
            for &strip in case.strip {
                for &handling in case.handling {
                    let flavor = match handling {
                        PathHandling::V0 => RouterFlavor::TraditionalCompatible,
                        PathHandling::V1 => RouterFlavor::Traditional,
                    };
                    let got = run(
                        case.service,
                        case.route,
                        strip,
                        handling,
                        flavor,
                        case.request,
                    );
                    assert_eq!(
                        got,
                        case.expected,
                        "line {}: service {} route {:?} strip {strip} {handling:?} request {}",
                        line + 1,
                        case.service,
                        case.route,
                        case.request
                    );
                    ran += 1;
                }
            }
        }
        assert!(ran > 150, "expanded fixture ran {ran} cases");
    }

    #[test]
    fn v1_is_ignored_outside_the_traditional_flavor() {
        let got = run(
            "/srv",
            Some("/rou"),
            true,
            PathHandling::V1,
            RouterFlavor::TraditionalCompatible,
            "/roureq",
        );
        assert_eq!(got, "/srv/req");
    }

    #[test]
    fn absent_service_path_is_root_and_output_is_escaped() {
        let mut out = Vec::new();
        let path = "/a b/\\d";
        upstream_path(
            None,
            false,
            PathHandling::V0,
            RouterFlavor::TraditionalCompatible,
            path,
            None,
            &mut out,
        );
        assert_eq!(out, b"/a%20b/%5Cd");
    }

    #[test]
    fn regex_match_strip_uses_whole_match_length() {
        // Kong: `~/users/\d+/profile` strips `/users/123/profile` from the request.
        let path = "/users/123/profile/hello/world";
        let mut out = Vec::new();
        upstream_path(
            None,
            true,
            PathHandling::V0,
            RouterFlavor::TraditionalCompatible,
            path,
            Some("/users/123/profile".len()),
            &mut out,
        );
        assert_eq!(out, b"/hello/world");
    }

    #[test]
    fn empty_regex_match_strips_nothing() {
        let mut out = Vec::new();
        upstream_path(
            Some("/s"),
            true,
            PathHandling::V0,
            RouterFlavor::TraditionalCompatible,
            "/x",
            Some(0),
            &mut out,
        );
        assert_eq!(out, b"/s/x");
    }
}
