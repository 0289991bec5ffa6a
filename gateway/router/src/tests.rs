//! Router tests: shared helpers, plus cases ported from Kong's `spec/01-unit/08-router_spec.lua`
//! (the `traditional_compatible` flavor) in the submodules.
//!
//! Kong's spec calls `select()`, which skips path normalization; our `find` always normalizes,
//! so ported requests use paths that are already normalized unless a case is about
//! normalization. Route numbers in assertions are 1-based, like Kong's `use_case[n]`.

mod alloc;
mod kong_exec;
mod kong_priority;
mod kong_select;
mod scale;

use uuid::Uuid;

use super::{HeaderSource, MatchScratch, RouteMatch, RouteRequest, Router, RouterFlavor};
use gangway_config::model::{PathHandling, Protocol, Route};

/// A route with Kong's defaults and the id `e8fb37f1-102d-461e-9c51-6608a6bb81<nn>` that Kong's
/// spec uses for `use_case[nn]`.
pub(crate) fn route(n: u32) -> Route {
    route_id(&format!("e8fb37f1-102d-461e-9c51-6608a6bb81{n:02}"))
}

/// A route with Kong's defaults and the given id.
pub(crate) fn route_id(id: &str) -> Route {
    Route {
        id: Uuid::parse_str(id).expect("test ids are valid"),
        name: None,
        protocols: vec![Protocol::Http, Protocol::Https],
        methods: None,
        hosts: None,
        paths: None,
        headers: None,
        snis: None,
        sources: None,
        destinations: None,
        strip_path: true,
        preserve_host: false,
        regex_priority: 0,
        path_handling: PathHandling::V0,
        https_redirect_status_code: 426,
        request_buffering: true,
        response_buffering: true,
        service: None,
        tags: None,
        created_at: 0,
        updated_at: 0,
    }
}

fn strings(v: &[&str]) -> Option<Vec<String>> {
    Some(v.iter().map(|s| (*s).to_owned()).collect())
}

/// Builder-style setters for test routes.
pub(crate) trait RouteExt {
    fn hosts(self, v: &[&str]) -> Self;
    fn paths(self, v: &[&str]) -> Self;
    fn methods(self, v: &[&str]) -> Self;
    fn snis(self, v: &[&str]) -> Self;
    fn header(self, name: &str, values: &[&str]) -> Self;
    fn regex_priority(self, p: i64) -> Self;
    fn strip(self, on: bool) -> Self;
}

impl RouteExt for Route {
    fn hosts(mut self, v: &[&str]) -> Self {
        self.hosts = strings(v);
        self
    }
    fn paths(mut self, v: &[&str]) -> Self {
        self.paths = strings(v);
        self
    }
    fn methods(mut self, v: &[&str]) -> Self {
        self.methods = strings(v);
        self
    }
    fn snis(mut self, v: &[&str]) -> Self {
        self.snis = strings(v);
        self
    }
    fn header(mut self, name: &str, values: &[&str]) -> Self {
        let values = strings(values).expect("some");
        self.headers
            .get_or_insert_with(Default::default)
            .insert(name.to_owned(), values);
        self
    }
    fn regex_priority(mut self, p: i64) -> Self {
        self.regex_priority = p;
        self
    }
    fn strip(mut self, on: bool) -> Self {
        self.strip_path = on;
        self
    }
}

/// Request headers as (lower-case name, value) pairs.
#[derive(Debug, Default, Clone)]
pub(crate) struct Hdrs(pub Vec<(String, Vec<u8>)>);

impl HeaderSource for Hdrs {
    fn values<'s>(&'s self, lower_name: &str) -> impl Iterator<Item = &'s [u8]> {
        self.0
            .iter()
            .filter(move |(k, _)| k == lower_name)
            .map(|(_, v)| v.as_slice())
    }
}

/// A test request; defaults to plain http on port 8000 with no headers.
#[derive(Debug, Clone)]
pub(crate) struct Rq<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub host: &'a str,
    pub port: u16,
    pub headers: Hdrs,
    pub sni: Option<&'a str>,
    pub https: bool,
}

pub(crate) fn rq<'a>(method: &'a str, path: &'a str, host: &'a str) -> Rq<'a> {
    Rq {
        method,
        path,
        host,
        port: 8000,
        headers: Hdrs::default(),
        sni: None,
        https: false,
    }
}

impl<'a> Rq<'a> {
    /// Adds a header; the name is lower-cased and `_` becomes `-`, like nginx's lookup.
    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        let name = name.to_ascii_lowercase().replace('_', "-");
        self.headers.0.push((name, value.as_bytes().to_vec()));
        self
    }
    pub(crate) fn tls(mut self, sni: &'a str) -> Self {
        self.https = true;
        self.sni = Some(sni);
        self
    }
}

pub(crate) fn build(routes: &[Route]) -> Router {
    Router::build(routes, RouterFlavor::TraditionalCompatible).expect("routes compile")
}

pub(crate) fn find_in(
    router: &Router,
    r: &Rq<'_>,
    scratch: &mut MatchScratch,
) -> Option<RouteMatch> {
    let req = RouteRequest {
        method: r.method,
        host: r.host,
        port: r.port,
        path: r.path,
        headers: &r.headers,
        sni: r.sni,
        https: r.https,
    };
    router.find(&req, scratch)
}

/// The 1-based number of the matched route, like Kong's `use_case[n]`.
pub(crate) fn pick(router: &Router, r: Rq<'_>) -> Option<usize> {
    find_in(router, &r, &mut MatchScratch::default()).map(|m| m.route + 1)
}

#[test]
fn bad_path_regex_is_reported_with_its_entity_path() {
    let routes = [
        route(1).paths(&["/ok"]),
        route(2).paths(&["/fine", "~/users/(\\d+"]),
        route(3).header("x-a", &["~*("]),
    ];
    let errs = Router::build(&routes, RouterFlavor::TraditionalCompatible)
        .expect_err("bad regexes are rejected");
    assert_eq!(errs.0.len(), 2, "{errs}");
    assert_eq!(errs.0[0].path, "routes[1].paths[1]");
    assert!(
        errs.0[0]
            .message
            .starts_with("invalid regex: '/users/(\\d+' ("),
        "{}",
        errs.0[0]
    );
    assert!(!errs.0[0].message.contains('\n'));
    assert_eq!(errs.0[1].path, "routes[2].headers.x-a[0]");
}

#[test]
fn look_arounds_are_rejected_as_kong_rejects_them_under_traditional_compatible() {
    let routes = [route(1).paths(&["~/(?<=a)b"])];
    assert!(Router::build(&routes, RouterFlavor::TraditionalCompatible).is_err());
}

#[test]
fn stream_routes_are_not_http_candidates() {
    let mut tcp = route(1);
    tcp.protocols = vec![Protocol::Tcp];
    tcp.snis = strings(&["a.test"]);
    let routes = [tcp, route(2).paths(&["/"])];
    assert_eq!(
        pick(&build(&routes), rq("GET", "/", "a.test").tls("a.test")),
        Some(2)
    );
}

#[test]
fn sni_is_only_checked_for_https() {
    let routes = [
        route(1).snis(&["a.test"]).paths(&["/x"]),
        route(2).paths(&["/"]),
    ];
    let router = build(&routes);
    assert_eq!(pick(&router, rq("GET", "/x", "h")), Some(1));
    assert_eq!(pick(&router, rq("GET", "/x", "h").tls("a.test")), Some(1));
    assert_eq!(pick(&router, rq("GET", "/x", "h").tls("b.test")), Some(2));
}

#[test]
fn header_names_with_underscores_match_dashed_request_headers() {
    let routes = [route(1).header("x_api_version", &["2"])];
    assert_eq!(
        pick(
            &build(&routes),
            rq("GET", "/", "h").header("X-Api-Version", "2")
        ),
        Some(1)
    );
}

#[test]
fn header_regex_is_unanchored_and_lower_cased() {
    // Kong lower-cases the whole `~*` value, pattern included.
    let routes = [route(1).header("user-agent", &["~*Chrome/\\d+"])];
    let router = build(&routes);
    assert_eq!(
        pick(
            &router,
            rq("GET", "/", "h").header("user-agent", "Mozilla CHROME/83")
        ),
        Some(1)
    );
    assert_eq!(
        pick(&router, rq("GET", "/", "h").header("user-agent", "curl/8")),
        None
    );
}

#[test]
fn scratch_is_reused_across_routers_and_requests() {
    let a = build(&[route(1).paths(&["~/a/(?<x>\\w+)"])]);
    let b = build(&[route(1).paths(&["~/b/(\\d+)/(?<y>\\d+)"])]);
    let mut scratch = MatchScratch::default();
    assert!(find_in(&a, &rq("GET", "/a/one", "h"), &mut scratch).is_some());
    assert_eq!(scratch.named_capture("x"), Some("one"));
    assert!(find_in(&b, &rq("GET", "/b/1/2", "h"), &mut scratch).is_some());
    assert_eq!(scratch.named_capture("x"), None);
    assert_eq!(scratch.capture(1), Some("1"));
    assert_eq!(scratch.named_capture("y"), Some("2"));
    assert!(find_in(&b, &rq("GET", "/nope", "h"), &mut scratch).is_none());
    assert!(!scratch.has_captures());
    assert_eq!(scratch.normalized_path(), "/nope");
}

#[test]
fn router_is_shareable_across_worker_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Router>();
    fn assert_send<T: Send>() {}
    assert_send::<MatchScratch>();
}

#[test]
fn captures_say_which_of_the_route_paths_produced_them() {
    let routes = [route(1).paths(&["~/u/(?<id>\\d+)$", "~/v/(?<name>\\w+)$"])];
    let router = build(&routes);
    let mut scratch = MatchScratch::default();
    assert!(find_in(&router, &rq("GET", "/v/ann", "h"), &mut scratch).is_some());
    assert_eq!(scratch.captured_path_index(), Some(1));
    assert!(find_in(&router, &rq("GET", "/u/7", "h"), &mut scratch).is_some());
    assert_eq!(scratch.captured_path_index(), Some(0));
    assert!(find_in(&router, &rq("GET", "/w", "h"), &mut scratch).is_none());
    assert_eq!(scratch.captured_path_index(), None);
}
