//! proxy-cache end to end with the memory strategy (assertions ported from Kong's
//! spec/03-plugins/31-proxy-cache/02-access_spec.lua where they apply). The echo upstream's
//! body names its connection and request count, so an identical body proves a cached answer,
//! and its request counter proves the upstream was not asked.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::harness::{Gangway, Response, Upstream, config_with_routes, request};

const ROUTES: &str = r#"      - name: r1
        paths: ["/r1"]
        plugins:
          - name: proxy-cache
            config:
              strategy: memory
              content_type: ["text/plain", "application/json"]
      - name: ttl
        paths: ["/ttl"]
        plugins:
          - name: proxy-cache
            config:
              strategy: memory
              cache_ttl: 1
      - name: storage
        paths: ["/storage"]
        plugins:
          - name: proxy-cache
            config:
              strategy: memory
              cache_ttl: 1
              storage_ttl: 60
      - name: cc
        paths: ["/cc"]
        plugins:
          - name: proxy-cache
            config:
              strategy: memory
              cache_control: true
      - name: methods
        paths: ["/methods"]
        plugins:
          - name: proxy-cache
            config:
              strategy: memory
              content_type: ["text/html; charset=utf-8", "application/json"]
              response_code: [200, 417]
              request_method: ["GET", "HEAD", "POST"]
      - name: vary_headers
        paths: ["/vary-headers"]
        plugins:
          - name: proxy-cache
            config:
              strategy: memory
              response_code: [200]
              vary_headers: ["foo"]
      - name: vary_query
        paths: ["/vary-query"]
        plugins:
          - name: proxy-cache
            config:
              strategy: memory
              response_code: [200]
              vary_query_params: ["foo"]
      - name: any_type
        paths: ["/any-type"]
        plugins:
          - name: proxy-cache
            config:
              strategy: memory
              content_type: ["*/*"]
      - name: xml_utf8
        paths: ["/xml-utf8"]
        plugins:
          - name: proxy-cache
            config:
              strategy: memory
              content_type: ["application/xml; charset=UTF-8"]
      - name: ignore_case
        paths: ["/ignore-case"]
        plugins:
          - name: proxy-cache
            config:
              strategy: memory
              response_code: [404]
              ignore_uri_case: true
      - name: acknowledge_case
        paths: ["/acknowledge-case"]
        plugins:
          - name: proxy-cache
            config:
              strategy: memory
              response_code: [404]
              ignore_uri_case: false
      - name: quiet
        paths: ["/quiet"]
        plugins:
          - name: proxy-cache
            config:
              strategy: memory
              response_headers:
                age: false
                X-Cache-Status: false
                X-Cache-Key: false
      - name: auth
        paths: ["/auth"]
        plugins:
          - name: key-auth
          - name: proxy-cache
            config:
              strategy: memory
      - name: auth2
        paths: ["/auth2"]
        plugins:
          - name: key-auth
          - name: proxy-cache
            config:
              strategy: memory
      - name: answered
        paths: ["/answered"]
        plugins:
          - name: proxy-cache
            config:
              strategy: memory
          - name: request-termination
            config:
              status_code: 200
              content_type: application/json
              body: '{"from":"plugin"}'
consumers:
  - username: bob
    keyauth_credentials:
      - key: bob
  - username: alice
    keyauth_credentials:
      - key: alice
"#;

fn start() -> (Upstream, Gangway) {
    let up = Upstream::start();
    let gw = Gangway::start(&config_with_routes(up.addr, ROUTES));
    (up, gw)
}

fn get(gw: &Gangway, path: &str, headers: &[(&str, &str)]) -> Response {
    send(gw, "GET", path, headers)
}

fn send(gw: &Gangway, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    request(gw.proxy, method, path, headers, b"")
        .unwrap_or_else(|e| panic!("{method} {path}: {e}\nlog:\n{}", gw.log()))
}

fn status(r: &Response) -> Option<&str> {
    r.header("X-Cache-Status")
}

fn cache_key(r: &Response) -> String {
    let key = r.header("X-Cache-Key").expect("X-Cache-Key").to_owned();
    assert_eq!(key.len(), 64, "{key}");
    assert!(
        key.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    key
}

#[test]
fn caches_a_simple_request() {
    let (up, gw) = start();
    let first = get(&gw, "/r1/get", &[]);
    assert_eq!(first.status, 200);
    assert_eq!(status(&first), Some("Miss"));
    assert_eq!(first.header("Age"), None);
    let key = cache_key(&first);
    let asked = up.requests.load(Ordering::Relaxed);

    let second = get(&gw, "/r1/get", &[]);
    assert_eq!(second.status, 200);
    assert_eq!(status(&second), Some("Hit"));
    assert_eq!(cache_key(&second), key);
    assert_eq!(second.body, first.body, "the cached body is sent unchanged");
    let age: u64 = second
        .header("Age")
        .expect("Age on a hit")
        .parse()
        .expect("Age is a number");
    assert!(age <= 1, "{age}");
    assert_eq!(second.header("Content-Type"), first.header("Content-Type"));
    assert_eq!(second.header("X-Upstream"), Some("echo"));
    assert_eq!(second.headers_named("Content-Length").len(), 1);
    // Kong marks a hit as proxied: Via as on the miss, no X-Kong-Response-Latency.
    assert_eq!(second.headers_named("Via"), first.headers_named("Via"));
    assert!(second.header("Via").is_some_and(|v| v.contains("gangway/")));
    assert_eq!(second.header("X-Kong-Response-Latency"), None);
    assert_eq!(
        up.requests.load(Ordering::Relaxed),
        asked,
        "no upstream call"
    );
}

#[test]
fn request_params_are_part_of_the_key() {
    let (_up, gw) = start();
    assert_eq!(status(&get(&gw, "/r1/get?a=b&b=c", &[])), Some("Miss"));
    assert_eq!(status(&get(&gw, "/r1/get?a=c", &[])), Some("Miss"));
    assert_eq!(status(&get(&gw, "/r1/get?b=c&a=b", &[])), Some("Hit"));
    assert_eq!(status(&get(&gw, "/r1/get?a&b", &[])), Some("Miss"));
    assert_eq!(status(&get(&gw, "/r1/get?a&b", &[])), Some("Hit"));
    // Without a query the request line is part of the key: a different path is another key.
    assert_eq!(status(&get(&gw, "/r1/other", &[])), Some("Miss"));
}

#[test]
fn a_subset_of_query_params_or_headers_can_make_the_key() {
    let (_up, gw) = start();
    assert_eq!(
        status(&get(&gw, "/vary-query/get?foo=b&b=c", &[])),
        Some("Miss")
    );
    assert_eq!(
        status(&get(&gw, "/vary-query/get?b=d&foo=b", &[])),
        Some("Hit")
    );

    let foo = |v| [("foo", v)];
    assert_eq!(
        status(&get(&gw, "/vary-headers/get", &foo("bar"))),
        Some("Miss")
    );
    assert_eq!(
        status(&get(&gw, "/vary-headers/get", &foo("bar"))),
        Some("Hit")
    );
    assert_eq!(
        status(&get(&gw, "/vary-headers/get", &foo("baz"))),
        Some("Miss")
    );
}

#[test]
fn uncacheable_requests_and_responses_bypass() {
    let (_up, gw) = start();
    let post = send(
        &gw,
        "POST",
        "/r1/post",
        &[("Content-Type", "application/json")],
    );
    assert_eq!(post.status, 200);
    assert_eq!(status(&post), Some("Bypass"));
    assert_eq!(post.header("X-Cache-Key"), None);

    for _ in 0..2 {
        let failed = get(&gw, "/r1/status/500", &[("x-echo-status", "500")]);
        assert_eq!(failed.status, 500);
        assert_eq!(status(&failed), Some("Bypass"), "a 500 is never stored");
        let teapot = get(&gw, "/r1/status/418", &[("x-echo-status", "418")]);
        assert_eq!(status(&teapot), Some("Bypass"));
        let xml = get(
            &gw,
            "/r1/xml",
            &[("x-echo-content-type", "application/xml")],
        );
        assert_eq!(xml.status, 200);
        assert_eq!(status(&xml), Some("Bypass"));
        // Kong matches the configured types exactly, parameters included.
        let utf8 = [("x-echo-content-type", "application/json; charset=utf-8")];
        assert_eq!(status(&get(&gw, "/r1/utf8", &utf8)), Some("Bypass"));
    }
}

#[test]
fn non_default_methods_and_statuses_are_cached_when_listed() {
    let (_up, gw) = start();
    for expected in ["Miss", "Hit"] {
        let r = send(&gw, "POST", "/methods/post", &[]);
        assert_eq!((r.status, status(&r)), (200, Some(expected)));
        let r = get(&gw, "/methods/status/417", &[("x-echo-status", "417")]);
        assert_eq!((r.status, status(&r)), (417, Some(expected)));
    }
}

#[test]
fn head_and_chunked_responses_are_cached() {
    let (_up, gw) = start();
    let first = get(&gw, "/r1/stream", &[("x-echo-chunked", "1")]);
    assert_eq!(status(&first), Some("Miss"));
    let second = get(&gw, "/r1/stream", &[("x-echo-chunked", "1")]);
    assert_eq!(status(&second), Some("Hit"));
    assert_eq!(second.body, first.body);

    let head = send(&gw, "HEAD", "/r1/head", &[]);
    assert_eq!((head.status, status(&head)), (200, Some("Miss")));
    let head = send(&gw, "HEAD", "/r1/head", &[]);
    assert_eq!((head.status, status(&head)), (200, Some("Hit")));
    assert!(head.body.is_empty());
}

#[test]
fn content_type_wildcards_and_parameters() {
    let (_up, gw) = start();
    let xml = [("x-echo-content-type", "application/xml")];
    for expected in ["Miss", "Hit"] {
        let r = get(&gw, "/any-type/xml", &xml);
        assert_eq!(r.header("Content-Type"), Some("application/xml"));
        assert_eq!(status(&r), Some(expected));
    }
    assert_eq!(status(&get(&gw, "/xml-utf8/xml", &xml)), Some("Bypass"));
    let invalid = [("x-echo-content-type", "application/xml;")];
    let r = get(&gw, "/xml-utf8/invalid", &invalid);
    assert_eq!((r.status, status(&r)), (200, Some("Bypass")));
}

#[test]
fn respects_cache_ttl() {
    let (up, gw) = start();
    assert_eq!(status(&get(&gw, "/ttl/get", &[])), Some("Miss"));
    assert_eq!(status(&get(&gw, "/ttl/get", &[])), Some("Hit"));
    let asked = up.requests.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(status(&get(&gw, "/ttl/get", &[])), Some("Miss"));
    assert_eq!(up.requests.load(Ordering::Relaxed), asked + 1);
    assert_eq!(status(&get(&gw, "/ttl/get", &[])), Some("Hit"));

    // Kept in storage past cache_ttl: the stale entry is fetched again, not served.
    assert_eq!(status(&get(&gw, "/storage/get", &[])), Some("Miss"));
    assert_eq!(status(&get(&gw, "/storage/get", &[])), Some("Hit"));
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(status(&get(&gw, "/storage/get", &[])), Some("Refresh"));
    assert_eq!(status(&get(&gw, "/storage/get", &[])), Some("Hit"));
}

#[test]
fn respects_cache_control() {
    let (_up, gw) = start();
    let cc = |v: &'static str| ("x-echo-response-header", v);
    let week = [cc("Cache-Control: max-age=604800")];
    assert_eq!(status(&get(&gw, "/cc/week", &week)), Some("Miss"));
    assert_eq!(status(&get(&gw, "/cc/week", &week)), Some("Hit"));
    let shared = [cc("Cache-Control: s-maxage=604800")];
    assert_eq!(status(&get(&gw, "/cc/shared", &shared)), Some("Miss"));
    let never = [cc("Cache-Control: public, max-age=0")];
    for _ in 0..2 {
        assert_eq!(status(&get(&gw, "/cc/never", &never)), Some("Bypass"));
    }
    let private = [cc("Cache-Control: private, max-age=60")];
    assert_eq!(status(&get(&gw, "/cc/private", &private)), Some("Bypass"));
    // No Cache-Control and no Expires: a TTL of 0, never stored.
    assert_eq!(status(&get(&gw, "/cc/none", &[])), Some("Bypass"));

    let fresh = [
        cc("Cache-Control: max-age=604800"),
        ("Cache-Control", "min-fresh=1000000"),
    ];
    assert_eq!(status(&get(&gw, "/cc/week", &fresh)), Some("Refresh"));
    let no_cache = [("Cache-Control", "no-cache")];
    assert_eq!(status(&get(&gw, "/cc/week", &no_cache)), Some("Bypass"));

    let r = get(
        &gw,
        "/cc/absent?not=here",
        &[("Cache-Control", "only-if-cached")],
    );
    assert_eq!(r.status, 504);
}

#[test]
fn ignore_uri_case_in_the_key() {
    let (_up, gw) = start();
    let not_found = [("x-echo-status", "404")];
    let first = get(&gw, "/ignore-case/kong", &not_found);
    assert_eq!((first.status, status(&first)), (404, Some("Miss")));
    let second = get(&gw, "/ignore-case/KONG", &not_found);
    assert_eq!((second.status, status(&second)), (404, Some("Hit")));
    assert_eq!(cache_key(&first), cache_key(&second));
    assert_eq!(first.body, second.body);

    let first = get(&gw, "/acknowledge-case/kong", &not_found);
    assert_eq!(status(&first), Some("Miss"));
    let second = get(&gw, "/acknowledge-case/KONG", &not_found);
    assert_eq!(status(&second), Some("Miss"));
    assert_ne!(cache_key(&first), cache_key(&second));
}

#[test]
fn diagnostic_headers_follow_response_headers_or_kong_debug() {
    let (_up, gw) = start();
    for _ in 0..2 {
        let r = get(&gw, "/quiet/get", &[]);
        assert_eq!(r.status, 200);
        assert_eq!(status(&r), None);
        assert_eq!(r.header("X-Cache-Key"), None);
        assert_eq!(r.header("Age"), None);
    }
    let r = get(&gw, "/quiet/get", &[("kong-debug", "1")]);
    assert_eq!(status(&r), Some("Hit"));
    assert!(r.header("Age").is_some());
    cache_key(&r);
}

/// Also pins the bug where `wants_body` read every plugin's slot at step 0, so proxy-cache
/// behind key-auth never stored a response.
#[test]
fn authenticated_routes_keep_a_cache_per_consumer() {
    let (_up, gw) = start();
    let anonymous = get(&gw, "/auth/get", &[]);
    assert_eq!(anonymous.status, 401);
    assert_eq!(status(&anonymous), None);

    let mut keys = Vec::new();
    for who in ["bob", "alice"] {
        let first = get(&gw, "/auth/get", &[("apikey", who)]);
        assert_eq!((first.status, status(&first)), (200, Some("Miss")), "{who}");
        let second = get(&gw, "/auth/get", &[("apikey", who)]);
        assert_eq!(status(&second), Some("Hit"), "{who}");
        keys.push(cache_key(&first));
    }
    assert_ne!(keys[0], keys[1]);
    let other_route = get(&gw, "/auth2/get", &[("apikey", "bob")]);
    assert_ne!(cache_key(&other_route), keys[0]);
}

#[test]
fn a_plugin_answer_after_proxy_cache_is_cached_too() {
    let (up, gw) = start();
    for expected in ["Miss", "Hit"] {
        let r = get(&gw, "/answered/get", &[]);
        assert_eq!((r.status, status(&r)), (200, Some(expected)));
        assert_eq!(r.text(), r#"{"from":"plugin"}"#);
        assert_eq!(r.header("Content-Type"), Some("application/json"));
    }
    assert_eq!(up.requests.load(Ordering::Relaxed), 0);
}

/// A cacheable response too big for the store streams through uncached: it used to be
/// buffered for the cache and, past the 64 MiB buffering cap, answered 502.
#[test]
fn a_response_too_big_to_cache_streams_through() {
    let (up, gw) = start();
    const SIZE: usize = 70_000_000;
    let size = SIZE.to_string();
    let headers = [
        ("x-echo-body-size", size.as_str()),
        ("x-echo-content-type", "text/plain"),
    ];
    for round in 0..2 {
        let before = up.requests.load(Ordering::Relaxed);
        let r = get(&gw, "/r1/big", &headers);
        assert_eq!(r.status, 200, "round {round}");
        assert_eq!(r.body.len(), SIZE, "round {round}: the whole body");
        assert_eq!(status(&r), Some("Miss"), "round {round}: not stored");
        assert_eq!(up.requests.load(Ordering::Relaxed), before + 1);
    }
}

/// A cacheable body of unknown length is buffered for the store only until it outgrows
/// what the store keeps (16 MiB); then it streams through uncached, chunked or until close
/// as the upstream sent it. Past 64 MiB such a body used to fail with 502.
#[test]
fn a_body_of_unknown_length_too_big_to_cache_streams_through() {
    let (up, gw) = start();
    const SIZE: usize = 70_000_000;
    let size = SIZE.to_string();
    for framing in ["x-echo-chunked", "x-echo-close"] {
        for round in 0..2 {
            let headers = [
                ("x-echo-body-size", size.as_str()),
                ("x-echo-content-type", "text/plain"),
                (framing, "1"),
            ];
            let before = up.requests.load(Ordering::Relaxed);
            let r = get(&gw, "/r1/big", &headers);
            assert_eq!(r.status, 200, "{framing} round {round}");
            assert_eq!(
                r.body.len(),
                SIZE,
                "{framing} round {round}: the whole body"
            );
            assert!(
                r.body.iter().all(|&b| b == b'x'),
                "{framing}: the body intact"
            );
            assert_eq!(
                status(&r),
                Some("Miss"),
                "{framing} round {round}: not stored"
            );
            assert_eq!(up.requests.load(Ordering::Relaxed), before + 1);
        }
    }
    // A small one of unknown length is still stored.
    let headers = [
        ("x-echo-body-size", "100000"),
        ("x-echo-content-type", "text/plain"),
        ("x-echo-chunked", "1"),
    ];
    let statuses: Vec<_> = (0..2)
        .map(|_| status(&get(&gw, "/r1/small", &headers)).map(str::to_owned))
        .collect();
    assert_eq!(statuses, [Some("Miss".to_owned()), Some("Hit".to_owned())]);
}

/// As in Kong, the memory strategy's dictionary must be declared: Kong's own names, or
/// those of `KONG_NGINX_HTTP_LUA_SHARED_DICT`. Any other name is refused with Kong's
/// message; gangway used to make a new 128 MiB store for it.
#[test]
fn only_declared_dictionaries_hold_the_cache() {
    let up = Upstream::start();
    let gw = Gangway::start_with(
        crate::harness::Options::new(config_with_routes(
            up.addr,
            "      - paths: [\"/mine\"]\n        plugins:\n          - name: proxy-cache\n            config: {strategy: memory, memory: {dictionary_name: my_cache}}\n",
        ))
        .env("KONG_NGINX_HTTP_LUA_SHARED_DICT", "my_cache 8m")
        .admin(),
    );
    let statuses: Vec<_> = (0..2)
        .map(|_| status(&get(&gw, "/mine", &[])).map(str::to_owned))
        .collect();
    assert_eq!(statuses, [Some("Miss".to_owned()), Some("Hit".to_owned())]);
    let made_up = serde_json::json!({
        "_format_version": "3.0",
        "services": [{"name": "s", "url": format!("http://{}", up.addr), "routes": [{
            "paths": ["/other"],
            "plugins": [{"name": "proxy-cache",
                         "config": {"strategy": "memory", "memory": {"dictionary_name": "made_up"}}}],
        }]}],
    });
    let json_type = [("Content-Type", "application/json")];
    let r = gw.admin(
        "POST",
        "/config",
        &json_type,
        made_up.to_string().as_bytes(),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("missing shared dict 'made_up'"),
        "{}",
        r.text()
    );
    assert_eq!(
        status(&get(&gw, "/mine", &[])),
        Some("Hit"),
        "the old config stays"
    );
}

/// A hit sets the stored headers as Kong's `kong.response.exit` does, replacing what an
/// earlier plugin set under the same name: rate-limiting's headers came twice.
#[test]
fn a_hit_sends_each_header_of_an_earlier_plugin_once() {
    let up = Upstream::start();
    let gw = Gangway::start(&config_with_routes(
        up.addr,
        r#"      - paths: ["/limited"]
        plugins:
          - name: rate-limiting
            config: {minute: 100, policy: local}
          - name: proxy-cache
            config: {strategy: memory}
"#,
    ));
    assert_eq!(status(&get(&gw, "/limited", &[])), Some("Miss"));
    let hit = get(&gw, "/limited", &[]);
    assert_eq!(status(&hit), Some("Hit"));
    for name in [
        "ratelimit-limit",
        "ratelimit-remaining",
        "x-ratelimit-limit-minute",
    ] {
        assert_eq!(
            hit.headers_named(name).len(),
            1,
            "{name}: {:?}",
            hit.headers_named(name)
        );
    }
}

/// Kong's proxy-cache Admin API: an entry can be read and purged by key (in every
/// instance's cache, or one instance's), and `DELETE /proxy-cache` empties them all. It
/// answered 404 to every such path.
#[test]
fn the_admin_api_reads_and_purges_cached_entries() {
    let up = Upstream::start();
    let gw = Gangway::start_with(
        crate::harness::Options::new(config_with_routes(
            up.addr,
            "      - paths: [\"/cached\"]\n        plugins:\n          - name: proxy-cache\n            id: 5c1a8d0e-43a6-4b6e-9f3e-2b1c6a7d9e01\n            config: {strategy: memory}\n",
        ))
        .admin(),
    );
    let plugin = "5c1a8d0e-43a6-4b6e-9f3e-2b1c6a7d9e01";
    let miss = get(&gw, "/cached", &[]);
    assert_eq!(status(&miss), Some("Miss"));
    let key = cache_key(&miss);
    assert_eq!(status(&get(&gw, "/cached", &[])), Some("Hit"));

    let read = gw.admin("GET", &format!("/proxy-cache/{key}"), &[], b"");
    assert_eq!(read.status, 200, "{}", read.text());
    let cached = read.json();
    assert_eq!(cached["status"], 200);
    assert_eq!(cached["body"], miss.text());
    assert_eq!(cached["body_len"], miss.body.len());
    assert_eq!(cached["version"], 1);
    let one = format!("/proxy-cache/{plugin}/caches/{key}");
    assert_eq!(gw.admin("GET", &one, &[], b"").status, 200);

    let purged = gw.admin("DELETE", &format!("/proxy-cache/{key}"), &[], b"");
    assert_eq!(purged.status, 204);
    assert_eq!(gw.admin("GET", &one, &[], b"").status, 404);
    assert_eq!(status(&get(&gw, "/cached", &[])), Some("Miss"), "purged");
    assert_eq!(status(&get(&gw, "/cached", &[])), Some("Hit"));

    assert_eq!(gw.admin("DELETE", "/proxy-cache", &[], b"").status, 204);
    assert_eq!(status(&get(&gw, "/cached", &[])), Some("Miss"), "flushed");
    let other = format!(
        "/proxy-cache/{}/caches/{key}",
        "00000000-0000-4000-8000-000000000000"
    );
    assert_eq!(gw.admin("GET", &other, &[], b"").status, 404);
    assert_eq!(gw.admin("GET", "/proxy-cache/nope", &[], b"").status, 404);
}
