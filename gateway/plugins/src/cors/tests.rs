//! Kong's spec/03-plugins/13-cors cases, run on the header logic without sockets.

use serde_json::{Value, json};

use super::*;

fn cors(config: Value) -> Cors {
    compile(&config).expect("valid config")
}

fn get<'a>(edits: &'a HeaderEdits, name: &'a str) -> Option<&'a str> {
    let mut values = edits.values(name, std::iter::empty());
    values
        .next()
        .map(|v| std::str::from_utf8(v).expect("utf-8"))
}

fn all<'a>(edits: &'a HeaderEdits, name: &'a str, upstream: &'a [&'a [u8]]) -> Vec<&'a [u8]> {
    edits.values(name, upstream.iter().copied()).collect()
}

fn preflight(c: &Cors, origin: &str) -> HeaderEdits {
    let mut e = HeaderEdits::default();
    c.preflight(&mut e, origin.as_bytes(), None, None);
    e
}

fn actual(c: &Cors, origin: &str) -> HeaderEdits {
    let mut e = HeaderEdits::default();
    c.actual(&mut e, origin.as_bytes());
    e
}

const CORS_DEFAULT_METHODS: &str = "GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT";

/// Kong's `regex_testcases`: configured origins, then request origin and the expected
/// Access-Control-Allow-Origin (`Some("")` stands for "the request's origin").
#[allow(clippy::type_complexity)]
const REGEX_CASES: &[(&[&str], &[(&str, Option<&str>)])] = &[
    (
        &["foo.test"],
        &[
            ("http://evil.test", Some("foo.test")),
            ("http://foo.test", Some("foo.test")),
            ("http://foo.test.evil.test", Some("foo.test")),
            ("http://something.foo.test", Some("foo.test")),
            ("http://evilfoo.test", Some("foo.test")),
            ("http://foo.test:80", Some("foo.test")),
            ("http://foo.test:8000", Some("foo.test")),
            ("https://foo.test:8000", Some("foo.test")),
            ("http://foo.test:90", Some("foo.test")),
            ("http://foobtest", Some("foo.test")),
            ("https://bar.test:1234", Some("foo.test")),
        ],
    ),
    (
        &["https://bar.test:1234"],
        &[
            ("http://evil.test", Some("https://bar.test:1234")),
            ("http://foo.test:80", Some("https://bar.test:1234")),
            ("https://bar.test:1234", Some("https://bar.test:1234")),
        ],
    ),
    (
        &["foo\\.test"],
        &[
            ("http://evil.test", None),
            ("http://foo.test", Some("")),
            ("http://foo.test.evil.test", None),
            ("http://something.foo.test", None),
            ("http://evilfoo.test", None),
            ("http://foo.test:80", Some("http://foo.test")),
            ("http://foo.test:8000", Some("")),
            ("https://foo.test:8000", Some("")),
            ("http://foo.test:90", Some("")),
            ("http://foobtest", None),
            ("https://bar.test:1234", None),
        ],
    ),
    (
        &["(.*[./])?foo\\.test"],
        &[
            ("http://evil.test", None),
            ("http://foo.test", Some("")),
            ("http://foo.test.evil.test", None),
            ("http://something.foo.test", Some("")),
            ("http://evilfoo.test", None),
            ("http://foo.test:80", Some("http://foo.test")),
            ("http://foo.test:8000", Some("")),
            ("https://foo.test:8000", Some("")),
            ("http://foo.test:90", Some("")),
            ("http://foobtest", None),
            ("https://bar.test:1234", None),
        ],
    ),
    (
        &["(.*[./])?foo\\.test:8000"],
        &[
            ("http://evil.test", None),
            ("http://foo.test", None),
            ("http://foo.test.evil.test", None),
            ("http://something.foo.test", None),
            ("http://evilfoo.test", None),
            ("http://foo.test:80", None),
            ("http://foo.test:8000", Some("")),
            ("https://foo.test:8000", Some("")),
            ("http://foo.test:90", None),
            ("http://foobtest", None),
            ("https://bar.test:1234", None),
        ],
    ),
    (
        &["https://(.*[.])?foo\\.test:8000"],
        &[
            ("http://evil.test", None),
            ("http://foo.test", None),
            ("http://foo.test.evil.test", None),
            ("http://something.foo.test", None),
            ("http://foo.test:80", None),
            ("http://foo.test:8000", None),
            ("https://foo.test:8000", Some("")),
            ("http://foo.test:90", None),
            ("http://foobtest", None),
            ("https://bar.test:1234", None),
        ],
    ),
    (
        &["^http://(.*[.])?foo\\.test(:(80|90))?$"],
        &[
            ("http://evil.test", None),
            ("http://foo.test", Some("")),
            ("http://foo.test.evil.test", None),
            ("http://something.foo.test", Some("")),
            ("http://foo.test:80", Some("http://foo.test")),
            ("http://foo.test:8000", None),
            ("https://foo.test:8000", None),
            ("http://foo.test:90", Some("")),
            ("http://foobtest", None),
            ("https://bar.test:1234", None),
        ],
    ),
    (
        &["foo.test", "bar.test"],
        &[
            ("http://evil.test", None),
            ("http://foo.test", None),
            ("http://foo.test.evil.test", None),
            ("http://foo.test:80", None),
            ("http://foo.test:8000", None),
            ("http://foo.test:90", None),
            ("http://foobtest", None),
            ("https://bar.test:1234", None),
        ],
    ),
    (
        &["http://foo.test", "https://bar.test:1234"],
        &[
            ("http://evil.test", None),
            ("http://foo.test", Some("")),
            ("http://foo.test.evil.test", None),
            ("http://foo.test:80", Some("http://foo.test")),
            ("http://foo.test:8000", None),
            ("http://foo.test:90", None),
            ("http://foobtest", None),
            ("https://bar.test:1234", Some("")),
        ],
    ),
    (
        &["bar.test", "foo\\.test"],
        &[
            ("http://evil.test", None),
            ("http://foo.test", Some("")),
            ("http://foo.test.evil.test", None),
            ("http://something.foo.test", None),
            ("http://foo.test:80", Some("http://foo.test")),
            ("http://foo.test:8000", Some("")),
            ("http://foo.test:90", Some("")),
            ("http://foobtest", None),
            ("https://bar.test:1234", None),
        ],
    ),
    (
        &["bar.test", "(.*\\.)?foo\\.test"],
        &[
            ("http://evil.test", None),
            ("http://foo.test", Some("")),
            ("http://foo.test.evil.test", None),
            ("http://something.foo.test", Some("")),
            ("http://foo.test:80", Some("http://foo.test")),
            ("http://foo.test:8000", Some("")),
            ("http://foo.test:90", Some("")),
            ("http://foobtest", None),
            ("https://bar.test:1234", None),
        ],
    ),
    (
        &["bar.test", "(.*[./])?foo\\.test:8000"],
        &[
            ("http://evil.test", None),
            ("http://foo.test", None),
            ("http://foo.test:80", None),
            ("http://foo.test:8000", Some("")),
            ("https://foo.test:8000", Some("")),
            ("http://foo.test:90", None),
            ("https://bar.test:1234", None),
        ],
    ),
    (
        &["bar.test", "https://(.*\\.)?foo\\.test:8000"],
        &[
            ("http://evil.test", None),
            ("http://something.foo.test", None),
            ("http://foo.test:8000", None),
            ("https://foo.test:8000", Some("")),
            ("https://bar.test:1234", None),
        ],
    ),
];

#[test]
fn kong_regex_testcases_on_preflight() {
    for (origins, cases) in REGEX_CASES {
        let c = cors(json!({ "origins": origins }));
        for (origin, expected) in *cases {
            let e = preflight(&c, origin);
            let expected = expected.map(|v| if v.is_empty() { *origin } else { v });
            assert_eq!(get(&e, ACAO), expected, "{origins:?} given {origin}");
            if expected.is_some() {
                assert_eq!(
                    get(&e, "Access-Control-Allow-Methods"),
                    Some(CORS_DEFAULT_METHODS)
                );
                assert_eq!(get(&e, "Access-Control-Allow-Headers"), None);
                assert_eq!(get(&e, "Access-Control-Expose-Headers"), None);
                assert_eq!(get(&e, ACAC), None);
                assert_eq!(get(&e, "Access-Control-Max-Age"), None);
            }
        }
    }
}

#[test]
fn defaults_allow_every_origin_without_vary() {
    for config in [json!({}), json!({"origins": []}), json!({"origins": ["*"]})] {
        let c = cors(config);
        let e = preflight(&c, "origin1.test");
        assert_eq!(get(&e, ACAO), Some("*"));
        assert_eq!(
            get(&e, "Access-Control-Allow-Methods"),
            Some(CORS_DEFAULT_METHODS)
        );
        assert_eq!(get(&e, "Vary"), None);
        assert_eq!(get(&e, ACAC), None);
        let e = actual(&c, "");
        assert_eq!(get(&e, ACAO), Some("*"));
        assert_eq!(get(&e, "Access-Control-Allow-Methods"), None);
        assert_eq!(get(&e, "Vary"), None);
    }
}

#[test]
fn wildcard_with_credentials_echoes_the_origin() {
    let c = cors(json!({"origins": ["*"], "credentials": true}));
    let e = preflight(&c, "origin5.test");
    assert_eq!(get(&e, ACAO), Some("origin5.test"));
    assert_eq!(get(&e, ACAC), Some("true"));
    assert_eq!(get(&e, "Vary"), Some("Origin"));
    let e = actual(&c, "http://www.example.net:3000");
    assert_eq!(get(&e, ACAO), Some("http://www.example.net:3000"));
    assert_eq!(get(&e, ACAC), Some("true"));
    // Without an origin there is nothing to echo: `*` stays, without credentials.
    let e = actual(&c, "");
    assert_eq!(get(&e, ACAO), Some("*"));
    assert_eq!(get(&e, ACAC), None);
    let c = cors(json!({"origins": ["*"], "credentials": false}));
    let e = actual(&c, "http://www.example.net");
    assert_eq!(get(&e, ACAO), Some("*"));
    assert_eq!(get(&e, ACAC), None);
    assert_eq!(get(&e, "Vary"), None);
}

#[test]
fn a_star_among_several_origins_allows_any_request_origin() {
    let c = cors(json!({"origins": ["foo.bar", "*"]}));
    let e = preflight(&c, "http://www.example.net");
    assert_eq!(get(&e, ACAO), Some("*"));
    assert_eq!(get(&e, ACAC), None);
    let e = actual(&c, "http://www.example.net");
    assert_eq!(get(&e, ACAO), Some("*"));
    // No origin: nothing to match, the header goes.
    let e = actual(&c, "");
    assert_eq!(get(&e, ACAO), None);
    assert!(e.removes_original(ACAO.as_bytes()));
}

#[test]
fn config_options_on_preflight_and_actual_requests() {
    let c = cors(json!({
        "origins": ["example.test"],
        "methods": ["GET"],
        "headers": ["origin", "type", "accepts"],
        "exposed_headers": ["x-auth-token"],
        "max_age": 23,
        "credentials": true,
    }));
    let e = preflight(&c, "origin5.test");
    assert_eq!(get(&e, "Access-Control-Allow-Methods"), Some("GET"));
    assert_eq!(get(&e, ACAO), Some("example.test"));
    assert_eq!(get(&e, "Access-Control-Max-Age"), Some("23"));
    assert_eq!(get(&e, ACAC), Some("true"));
    assert_eq!(
        get(&e, "Access-Control-Allow-Headers"),
        Some("origin,type,accepts")
    );
    assert_eq!(get(&e, "Vary"), Some("Origin"));
    assert_eq!(get(&e, "Access-Control-Expose-Headers"), None);

    let e = actual(&c, "");
    assert_eq!(get(&e, ACAO), Some("example.test"));
    assert_eq!(
        get(&e, "Access-Control-Expose-Headers"),
        Some("x-auth-token")
    );
    assert_eq!(get(&e, ACAC), Some("true"));
    assert_eq!(get(&e, "Vary"), Some("Origin"));
    assert_eq!(get(&e, "Access-Control-Allow-Methods"), None);
    assert_eq!(get(&e, "Access-Control-Allow-Headers"), None);
    assert_eq!(get(&e, "Access-Control-Max-Age"), None);
}

#[test]
fn preflight_echoes_request_headers_and_private_network() {
    let c = cors(json!({"origins": ["*"], "credentials": true}));
    let mut e = HeaderEdits::default();
    c.preflight(&mut e, b"origin5.test", Some(b"origin,accepts"), None);
    assert_eq!(
        get(&e, "Access-Control-Allow-Headers"),
        Some("origin,accepts")
    );
    let c = cors(json!({"origins": ["allowed-domain.test"], "private_network": true}));
    let mut e = HeaderEdits::default();
    c.preflight(&mut e, b"allowed-domain.test", None, Some(b"true"));
    assert_eq!(
        get(&e, "Access-Control-Allow-Private-Network"),
        Some("true")
    );
    let mut e = HeaderEdits::default();
    c.preflight(&mut e, b"allowed-domain.test", None, Some(b"false"));
    assert_eq!(get(&e, "Access-Control-Allow-Private-Network"), None);
}

#[test]
fn plain_origins_match_the_whole_normalized_origin() {
    let c = cors(json!({"origins": ["http://my-site.test", "https://my-other-site.test:9000"]}));
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
        ("http://my-site.test.bad-guys.test", None),
    ] {
        assert_eq!(get(&actual(&c, origin), ACAO), expected, "{origin}");
    }
    // Host-only entries match host-only origins, never a parsed URL.
    let c = cors(json!({"origins": ["example.test", "example.org"]}));
    assert_eq!(get(&actual(&c, "example.test"), ACAO), Some("example.test"));
    assert_eq!(get(&actual(&c, "http://example.test"), ACAO), None);
    assert_eq!(get(&actual(&c, "https://example.test"), ACAO), None);
    assert_eq!(get(&actual(&c, "http://www.example.net"), ACAO), None);
}

#[test]
fn regex_on_host_only_origins() {
    let c = cors(json!({"origins": [".*\\.?example(?:-foo)?.test"]}));
    for (origin, ok) in [
        ("example.test", true),
        ("www.example.test", true),
        ("example-foo.test", true),
        ("www.example-foo.test", true),
        ("www.example-fo0.test", false),
    ] {
        let e = actual(&c, origin);
        assert_eq!(get(&e, ACAO), ok.then_some(origin), "{origin}");
        assert_eq!(get(&e, "Vary"), Some("Origin"));
    }
}

#[test]
fn header_filter_appends_vary_and_replaces_the_upstream_allow_origin() {
    let c = cors(json!({"origins": ["example.test"]}));
    let e = actual(&c, "example.test");
    assert_eq!(
        all(&e, "vary", &[b"Accept-Encoding"]),
        vec![b"Accept-Encoding" as &[u8], b"Origin"]
    );
    let c = cors(json!({
        "credentials": true,
        "max_age": 1728000,
        "headers": ["DNT", "X-CustomHeader"],
        "origins": ["a.xxx.test", "allowed-domain.test"],
    }));
    let e = actual(&c, "allowed-domain.test");
    assert_eq!(
        all(&e, "access-control-allow-origin", &[b"*"]),
        vec![b"allowed-domain.test" as &[u8]]
    );
    assert_eq!(get(&e, ACAC), Some("true"));
    let e = actual(&c, "disallowed-domain.test");
    assert!(all(&e, "access-control-allow-origin", &[b"*"]).is_empty());
    assert_eq!(get(&e, ACAC), Some("true"));
}

#[test]
fn allow_origin_absent_false_skips_requests_without_origin() {
    let config = |absent: bool| {
        json!({
            "allow_origin_absent": absent,
            "origins": ["foo.bar"],
            "exposed_headers": ["x-auth-token"],
            "credentials": true,
        })
    };
    let c = cors(config(false));
    assert!(actual(&c, "").is_empty());
    let c = cors(config(true));
    let e = actual(&c, "");
    assert_eq!(get(&e, ACAO), Some("foo.bar"));
    assert_eq!(get(&e, ACAC), Some("true"));
    assert_eq!(
        get(&e, "Access-Control-Expose-Headers"),
        Some("x-auth-token")
    );
}

#[test]
fn normalizes_origins_like_luasocket() {
    let n = |o: &str| {
        let n = normalize_origin(o);
        (n.domain, n.host)
    };
    let pair = |d: &str, h: &str| (d.to_owned(), h.to_owned());
    assert_eq!(n("http://foo.test:80"), pair("http://foo.test", "foo.test"));
    assert_eq!(
        n("https://foo.test:443/x?y"),
        pair("https://foo.test", "foo.test")
    );
    assert_eq!(
        n("https://foo.test:80"),
        pair("https://foo.test:80", "foo.test")
    );
    assert_eq!(
        n("http://u:p@foo.test:8"),
        pair("http://foo.test:8", "foo.test")
    );
    assert_eq!(n("foo.test"), pair("foo.test", "foo.test"));
    assert_eq!(n("foo.test:8000"), pair("foo.test:8000", "foo.test:8000"));
    assert_eq!(n("null"), pair("null", "null"));
    assert_eq!(n("//foo.test"), pair("foo.test", "foo.test"));
    assert_eq!(n("http://[::1]:8080"), pair("http://::1:8080", "::1"));
    assert_eq!(n("http://[::1]"), pair("http://::1", "::1"));
    assert_eq!(n("http://"), pair("http://", "http://"));
}

#[test]
fn rejects_bad_regexes_and_methods_with_kong_messages() {
    let err = compile(&json!({"origins": [".*.example.com", "invalid_**regex"]}))
        .err()
        .expect("invalid");
    assert_eq!(
        err,
        vec![(
            "origins[1]".to_owned(),
            "'invalid_**regex' is not a valid regex".to_owned()
        )]
    );
    let err = compile(&json!({"methods": ["FAKE"]}))
        .err()
        .expect("invalid");
    assert_eq!(
        err[0].1,
        "expected one of: GET, HEAD, PUT, PATCH, POST, DELETE, OPTIONS, TRACE, CONNECT"
    );
    for ok in [
        json!({"origins": ["*"]}),
        json!({"origins": ["example.com"]}),
        json!({"origins": [".*\\.example(?:-foo)?\\.com"]}),
        json!({"methods": METHODS}),
    ] {
        assert!(compile(&ok).is_ok(), "{ok}");
    }
}

#[test]
fn nested_quantifiers_are_refused_like_pcre() {
    for bad in ["a**", "a+*", "a{2}*", "a*{2}", "a*??", "a++?", "(a)?*"] {
        assert!(repeats_a_quantifier(bad), "{bad}");
    }
    for ok in [
        "a*?",
        "a+?",
        "a*+",
        "a{2}?",
        "(?:a)*",
        "[*+?]*",
        "\\**",
        "a{x}*",
        ".*\\.example(?:-foo)?\\.com",
        "(?i)a*",
        "[]*]+",
    ] {
        assert!(!repeats_a_quantifier(ok), "{ok}");
    }
}

#[test]
fn max_age_prints_like_lua() {
    assert_eq!(lua_number(&serde_json::Number::from(23)), "23");
    let n = serde_json::Number::from_f64(3600.0).expect("finite");
    assert_eq!(lua_number(&n), "3600");
    let n = serde_json::Number::from_f64(1.5).expect("finite");
    assert_eq!(lua_number(&n), "1.5");
}

fn schema_run(config: Value) -> (Value, Vec<String>) {
    let mut errors = gangway_config::ConfigErrors::default();
    let filled = schema().validate(Some(&config), "plugins[0].config", &mut errors);
    (filled, errors.0.iter().map(ToString::to_string).collect())
}

#[test]
fn schema_fills_kong_defaults_and_builds() {
    let (filled, errors) = schema_run(json!({}));
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        filled,
        json!({
            "origins": null,
            "headers": null,
            "exposed_headers": null,
            "methods": METHODS,
            "max_age": null,
            "credentials": false,
            "private_network": false,
            "preflight_continue": false,
            "allow_origin_absent": true,
        })
    );
    let c = compile(&filled).expect("builds");
    let e = preflight(&c, "x.test");
    assert_eq!(
        get(&e, "Access-Control-Allow-Methods"),
        Some(CORS_DEFAULT_METHODS)
    );
    // An explicit null keeps Kong's hard-coded method list.
    let (filled, _) = schema_run(json!({"methods": null}));
    let e = preflight(&compile(&filled).expect("builds"), "x.test");
    assert_eq!(
        get(&e, "Access-Control-Allow-Methods"),
        Some(CORS_DEFAULT_METHODS)
    );
}

#[test]
fn schema_reports_kong_messages() {
    let (_, errors) = schema_run(json!({"origins": [".*.example.com", "invalid_**regex"]}));
    assert_eq!(
        errors,
        vec!["plugins[0].config.origins[1]: 'invalid_**regex' is not a valid regex"]
    );
    let (_, errors) = schema_run(json!({"methods": ["FAKE"]}));
    assert_eq!(
        errors,
        vec![
            "plugins[0].config.methods[0]: expected one of: GET, HEAD, PUT, PATCH, POST, DELETE, OPTIONS, TRACE, CONNECT"
        ]
    );
    for ok in [
        json!({"origins": ["*"]}),
        json!({"origins": ["example.com"]}),
        json!({"origins": [".*\\.example(?:-foo)?\\.com"]}),
    ] {
        assert!(schema_run(ok.clone()).1.is_empty(), "{ok}");
    }
}
