//! The cors plugin end to end (assertions ported from Kong's spec/03-plugins/13-cors): the
//! preflight answer, headers on proxied responses, on other plugins' answers and on the
//! gateway's own errors.

use crate::harness::{Gangway, Response, Upstream, free_port, request};

const DEFAULT_METHODS: &str = "GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT";

const ROUTES: &str = r#"    routes:
      - name: cors1
        paths: ["/cors1"]
        plugins:
          - name: cors
      - name: cors2
        paths: ["/cors2"]
        plugins:
          - name: cors
            config:
              origins: [example.test]
              methods: [GET]
              headers: [origin, type, accepts]
              exposed_headers: [x-auth-token]
              max_age: 23
              credentials: true
      - name: cors3
        paths: ["/cors3"]
        plugins:
          - name: cors
            config:
              origins: [example.test]
              methods: [GET]
              headers: [origin, type, accepts]
              exposed_headers: [x-auth-token]
              max_age: 23
              preflight_continue: true
      - name: cors4
        paths: ["/cors4"]
        plugins:
          - name: cors
          - name: key-auth
      - name: cors5
        paths: ["/cors5"]
        plugins:
          - name: cors
            config:
              origins: ["*"]
              credentials: true
      - name: cors9
        paths: ["/cors9"]
        plugins:
          - name: cors
            config:
              origins: ['.*\.?example(?:-foo)?.test']
      - name: cors10
        paths: ["/cors10"]
        plugins:
          - name: cors
            config:
              origins: ["http://my-site.test", "http://my-other-site.test"]
      - name: cors11
        paths: ["/cors11"]
        plugins:
          - name: cors
            config:
              origins: ["http://my-site.test", "https://my-other-site.test:9000"]
      - name: cors12
        paths: ["/cors12"]
        plugins:
          - name: cors
            config:
              credentials: true
              max_age: 1728000
              headers: [DNT, X-CustomHeader, Keep-Alive, User-Agent]
              methods: null
              origins: [a.xxx.test, allowed-domain.test]
      - name: cors13
        paths: ["/cors13"]
        plugins:
          - name: cors
            config:
              private_network: true
              origins: [allowed-domain.test]
      - name: cors14
        paths: ["/cors14"]
        plugins:
          - name: cors
            config:
              origins: [foo.bar, "*"]
      - name: cors15
        paths: ["/cors15"]
        plugins:
          - name: cors
            config:
              allow_origin_absent: false
              origins: [foo.bar]
              exposed_headers: [x-auth-token]
              credentials: true
      - name: cors16
        paths: ["/cors16"]
        plugins:
          - name: cors
            config:
              origins: [foo.bar]
              exposed_headers: [x-auth-token]
              credentials: true
      - name: upstream
        paths: ["/cors-upstream"]
        plugins:
          - name: cors
            config:
              origins: [example.test]
  - name: dead
    url: http://127.0.0.1:DEAD_PORT
    routes:
      - name: timeout
        paths: ["/cors-timeout"]
        plugins:
          - name: cors
            config:
              origins: [example.test]
              methods: [GET]
              exposed_headers: [x-auth-token]
              max_age: 10
              preflight_continue: true
"#;

fn start() -> (Upstream, Gangway) {
    let up = Upstream::start();
    let routes = ROUTES.replace("DEAD_PORT", &free_port().to_string());
    let config = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: echo\n    url: http://{}\n{routes}",
        up.addr
    );
    let gw = Gangway::start(&config);
    (up, gw)
}

fn send(gw: &Gangway, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    request(gw.proxy, method, path, headers, b"").expect("request")
}

fn preflight(gw: &Gangway, path: &str, origin: &str) -> Response {
    send(
        gw,
        "OPTIONS",
        path,
        &[("Origin", origin), ("Access-Control-Request-Method", "GET")],
    )
}

/// Kong's assertion that none of the listed CORS headers is present.
fn assert_absent(r: &Response, names: &[&str]) {
    for n in names {
        assert_eq!(r.header(n), None, "{n} in {:?}", r.headers);
    }
}

#[test]
fn preflight_gets_defaults_and_an_empty_200() {
    let (_up, gw) = start();
    let r = preflight(&gw, "/cors1", "origin1.test");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-length"), Some("0"));
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some(DEFAULT_METHODS)
    );
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_absent(
        &r,
        &[
            "access-control-allow-headers",
            "access-control-expose-headers",
            "access-control-allow-credentials",
            "access-control-max-age",
            "vary",
        ],
    );
    // With `*` and credentials, the origin is echoed.
    let r = preflight(&gw, "/cors5", "origin5.test");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("origin5.test")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("vary"), Some("Origin"));
    // `*` among several origins.
    let r = preflight(&gw, "/cors14", "http://www.example.net");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
}

#[test]
fn preflight_uses_config_options() {
    let (up, gw) = start();
    let r = preflight(&gw, "/cors2", "origin5.test");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("0"));
    assert_eq!(r.header("access-control-allow-methods"), Some("GET"));
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("example.test")
    );
    assert_eq!(r.header("access-control-max-age"), Some("23"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("origin,type,accepts")
    );
    assert_eq!(r.header("vary"), Some("Origin"));
    assert_absent(&r, &["access-control-expose-headers"]);
    // The preflight never reached the upstream.
    assert_eq!(up.requests.load(std::sync::atomic::Ordering::Relaxed), 0);

    let r = send(
        &gw,
        "OPTIONS",
        "/cors5",
        &[
            ("Origin", "origin5.test"),
            ("Access-Control-Request-Headers", "origin,accepts"),
            ("Access-Control-Request-Method", "GET"),
        ],
    );
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("origin,accepts")
    );
    let r = send(
        &gw,
        "OPTIONS",
        "/cors13",
        &[
            ("Origin", "allowed-domain.test"),
            ("Access-Control-Request-Private-Network", "true"),
            ("Access-Control-Request-Method", "PUT"),
        ],
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-private-network"),
        Some("true")
    );
}

#[test]
fn preflight_continue_proxies_the_preflight_untouched() {
    let (_up, gw) = start();
    let r = send(
        &gw,
        "OPTIONS",
        "/cors3",
        &[
            ("Origin", "example.test"),
            ("Access-Control-Request-Method", "GET"),
            ("x-echo-status", "201"),
        ],
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["method"], "OPTIONS");
    assert_absent(
        &r,
        &[
            "access-control-allow-origin",
            "access-control-allow-methods",
            "vary",
        ],
    );
}

#[test]
fn non_preflight_options_is_proxied_with_cors_headers() {
    let (_up, gw) = start();
    let r = send(&gw, "OPTIONS", "/cors1/anything", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["method"], "OPTIONS");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_absent(&r, &["access-control-allow-methods", "vary"]);
    // Without Access-Control-Request-Method the origin rules apply to the proxied answer.
    let r = send(
        &gw,
        "OPTIONS",
        "/cors10",
        &[("Origin", "http://my-site.test")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://my-site.test")
    );
    for bad in ["http://bad-guys.test", "http://my-site.test.bad-guys.test"] {
        let r = send(&gw, "OPTIONS", "/cors10", &[("Origin", bad)]);
        assert_eq!(r.header("access-control-allow-origin"), None, "{bad}");
    }
}

#[test]
fn actual_requests_get_cors_headers() {
    let (_up, gw) = start();
    let r = gw.get("/cors1");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_absent(
        &r,
        &[
            "access-control-allow-methods",
            "access-control-allow-headers",
            "access-control-expose-headers",
            "access-control-allow-credentials",
            "access-control-max-age",
            "vary",
        ],
    );
    let r = gw.get("/cors2");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("example.test")
    );
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("x-auth-token")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("vary"), Some("Origin"));
    assert_absent(
        &r,
        &["access-control-allow-methods", "access-control-max-age"],
    );
    // An upstream 404 is filtered like any answer.
    let r = send(&gw, "GET", "/cors1/asdasdasd", &[("x-echo-status", "404")]);
    assert_eq!(r.status, 404);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
}

#[test]
fn answers_of_other_plugins_and_gateway_errors_get_cors_headers() {
    let (_up, gw) = start();
    let r = gw.get("/cors4");
    assert_eq!(r.status, 401, "key-auth answered");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_absent(&r, &["access-control-allow-methods", "vary"]);
    let r = gw.get("/cors-timeout");
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("example.test")
    );
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("x-auth-token")
    );
    assert_eq!(r.header("vary"), Some("Origin"));
    assert_absent(
        &r,
        &[
            "access-control-allow-credentials",
            "access-control-allow-methods",
            "access-control-max-age",
        ],
    );
}

#[test]
fn origin_matching_on_actual_requests() {
    let (_up, gw) = start();
    for (domain, ok) in [
        ("example.test", true),
        ("www.example.test", true),
        ("example-foo.test", true),
        ("www.example-foo.test", true),
        ("www.example-fo0.test", false),
    ] {
        let r = send(&gw, "GET", "/cors9", &[("Origin", domain)]);
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("access-control-allow-origin"),
            ok.then_some(domain),
            "{domain}"
        );
        assert_eq!(r.header("vary"), Some("Origin"));
    }
    for (origin, expected) in [
        ("http://my-site.test", Some("http://my-site.test")),
        ("http://my-site.test:80", Some("http://my-site.test")),
        ("http://my-site.test:8000", None),
        ("https://my-site.test", None),
        (
            "https://my-other-site.test:9000",
            Some("https://my-other-site.test:9000"),
        ),
        ("https://my-other-site.test:9001", None),
    ] {
        let r = send(&gw, "GET", "/cors11", &[("Origin", origin)]);
        assert_eq!(
            r.header("access-control-allow-origin"),
            expected,
            "{origin}"
        );
    }
    let r = send(
        &gw,
        "GET",
        "/cors5",
        &[("Origin", "http://www.example.net:3000")],
    );
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://www.example.net:3000")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("vary"), Some("Origin"));
}

#[test]
fn vary_is_appended_and_a_foreign_allow_origin_removed() {
    let (_up, gw) = start();
    let r = send(
        &gw,
        "GET",
        "/cors-upstream",
        &[
            ("Origin", "example.test"),
            ("x-echo-response-header", "Vary: Accept-Encoding"),
        ],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.headers_named("vary"), vec!["Accept-Encoding", "Origin"]);

    let upstream_acao = ("x-echo-response-header", "Access-Control-Allow-Origin: *");
    let also = ("x-echo-response-header", "Response-Header: is-added");
    let r = send(
        &gw,
        "GET",
        "/cors12",
        &[("Origin", "allowed-domain.test"), upstream_acao, also],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("response-header"), Some("is-added"));
    assert_eq!(
        r.headers_named("access-control-allow-origin"),
        vec!["allowed-domain.test"]
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("vary"), Some("Origin"));
    let r = send(
        &gw,
        "GET",
        "/cors12",
        &[("Origin", "disallowed-domain.test"), upstream_acao, also],
    );
    assert_eq!(r.header("response-header"), Some("is-added"));
    assert_eq!(r.header("access-control-allow-origin"), None);
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
}

#[test]
fn allow_origin_absent() {
    let (_up, gw) = start();
    for origin in [None, Some("")] {
        let headers: Vec<(&str, &str)> = origin.map(|o| ("Origin", o)).into_iter().collect();
        let r = send(&gw, "GET", "/cors15", &headers);
        assert_eq!(r.status, 200);
        assert_absent(
            &r,
            &[
                "access-control-allow-origin",
                "access-control-allow-credentials",
                "access-control-expose-headers",
            ],
        );
        let r = send(&gw, "GET", "/cors16", &headers);
        assert_eq!(r.header("access-control-allow-origin"), Some("foo.bar"));
        assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
        assert_eq!(
            r.header("access-control-expose-headers"),
            Some("x-auth-token")
        );
    }
}
