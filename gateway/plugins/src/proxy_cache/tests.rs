//! Unit tests: Kong's `spec/03-plugins/31-proxy-cache/01-schema_spec.lua` and
//! `05-cache_key_spec.lua`, keys checked against SHA-256 values computed by hand from Kong's
//! algorithm, the cacheability rules of its handler, and the store's expiry and bound.

use serde_json::{Value, json};

use super::cache_control::{Directive, Directives, lua_tonumber, resource_ttl};
use super::config::{self, MEMORY_ONLY};
use super::key::{self, Arg};
use super::mime::{self, MediaType};
use super::store::{DICTIONARY_BYTES, Entry, MAX_ENTRY_BYTES, Store};
use super::{ProxyCache, Slot, Stage, build, kept_on_store, schema};
use gangway_config::ConfigErrors;

/// Validates `config` with the schema and builds the plugin.
fn plugin(config: Value) -> ProxyCache {
    let mut errors = ConfigErrors::default();
    let filled = schema().validate(Some(&config), "config", &mut errors);
    assert!(errors.is_empty(), "schema errors: {errors:?}");
    assert!(build(&filled).is_ok());
    let conf = serde_json::from_value::<config::Config>(filled).expect("config shape");
    super::compile(conf).expect("config compiles")
}

fn problems(config: Value) -> Vec<String> {
    let mut errors = ConfigErrors::default();
    schema().validate(Some(&config), "config", &mut errors);
    errors.0.iter().map(ToString::to_string).collect()
}

#[test]
fn a_minimal_config_gets_kongs_defaults() {
    let mut errors = ConfigErrors::default();
    let filled = schema().validate(Some(&json!({"strategy": "memory"})), "config", &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(filled["response_code"], json!([200, 301, 404]));
    assert_eq!(filled["request_method"], json!(["GET", "HEAD"]));
    assert_eq!(
        filled["content_type"],
        json!(["text/plain", "application/json"])
    );
    assert_eq!(filled["cache_ttl"], json!(300));
    assert_eq!(filled["cache_control"], json!(false));
    assert_eq!(filled["ignore_uri_case"], json!(false));
    assert_eq!(filled["storage_ttl"], Value::Null);
    assert_eq!(
        filled["memory"],
        json!({"dictionary_name": "kong_db_cache"})
    );
    assert_eq!(filled["vary_query_params"], Value::Null);
    assert_eq!(filled["vary_headers"], Value::Null);
    assert_eq!(
        filled["response_headers"],
        json!({"age": true, "X-Cache-Status": true, "X-Cache-Key": true})
    );
    let p = plugin(json!({"strategy": "memory"}));
    assert!(p.show_age && p.show_status && p.show_key);
}

#[test]
fn config_errors_carry_kongs_messages() {
    let cases = [
        (
            json!({"strategy": "memory", "response_code": [99]}),
            "config.response_code[0]: value should be between 100 and 900",
        ),
        (
            json!({"strategy": "memory", "response_code": []}),
            "config.response_code: length must be at least 1",
        ),
        (
            json!({"strategy": "memory", "response_code": ""}),
            "config.response_code: expected an array",
        ),
        (
            json!({"strategy": "memory", "response_code": [123.5]}),
            "config.response_code[0]: expected an integer",
        ),
        (
            json!({"strategy": "memory", "cache_ttl": -1}),
            "config.cache_ttl: value must be greater than 0",
        ),
        (
            json!({"strategy": "memory", "request_method": ["DELETE"]}),
            "config.request_method[0]: expected one of: HEAD, GET, POST, PATCH, PUT",
        ),
        (json!({}), "config.strategy: required field missing"),
    ];
    for (config, expected) in cases {
        assert_eq!(problems(config.clone()), [expected], "{config}");
    }
    assert_eq!(
        problems(json!({"strategy": "memory", "response_code": [true, "alo", 123]})),
        [
            "config.response_code[0]: expected an integer",
            "config.response_code[1]: expected an integer"
        ]
    );
}

#[test]
fn redis_is_refused_with_a_clear_message() {
    assert_eq!(
        problems(json!({"strategy": "redis"})),
        [format!("config.strategy: {MEMORY_ONLY}")]
    );
    assert!(MEMORY_ONLY.contains("memory strategy only"));
}

#[test]
fn kong_schema_spec_configs_are_accepted() {
    for config in [
        json!({"strategy": "memory", "response_code": [200, 301], "request_method": ["GET"],
               "content_type": ["application/json"]}),
        json!({"strategy": "memory", "response_code": [123, 200]}),
        json!({"strategy": "memory", "vary_query_params": ["foo"]}),
        json!({"strategy": "memory", "vary_headers": ["foo"]}),
        json!({"strategy": "memory", "content_type": ["application/*", "*/text"]}),
        json!({"strategy": "memory", "content_type": ["*/*"]}),
        json!({"strategy": "memory", "content_type": ["application/json; charset=UTF-8"]}),
        json!({"strategy": "memory", "memory": {"dictionary_name": "kong"}}),
    ] {
        assert!(problems(config.clone()).is_empty(), "{config}");
        plugin(config);
    }
}

/// As Kong: only a declared shared dict (Kong's own, or `lua_shared_dicts`) may hold the
/// cache, so configs cannot make up stores of 128 MiB each.
#[test]
fn an_undeclared_dictionary_is_refused_with_kongs_message() {
    let config = json!({"strategy": "memory", "memory": {"dictionary_name": "made_up"}});
    let found = problems(config);
    assert!(
        found
            .iter()
            .any(|p| p.contains("missing shared dict 'made_up'")),
        "{found:?}"
    );
    assert!(super::store::dictionary("made_up").is_none());
    assert!(super::store::check_declared("kong_db_cache").is_ok());
}

#[test]
fn the_rendered_schema_keeps_kongs_shape() {
    let rendered = schema().to_kong_json();
    let config = &rendered["fields"][1]["config"];
    let names: Vec<&str> = config["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f.as_object()?.keys().next().map(String::as_str))
        .collect();
    assert_eq!(
        names,
        [
            "response_code",
            "request_method",
            "content_type",
            "cache_ttl",
            "strategy",
            "cache_control",
            "ignore_uri_case",
            "storage_ttl",
            "memory",
            "vary_query_params",
            "vary_headers",
            "response_headers"
        ]
    );
    assert_eq!(
        rendered["entity_checks"],
        json!([{"custom_entity_check": {"field_sources": ["config"]}}])
    );
}

#[test]
fn prefix_follows_kongs_prefix_uuid() {
    assert_eq!(key::prefix(Some("c"), Some("r")), "c:r");
    assert_eq!(key::prefix(None, Some("r")), "r");
    assert_eq!(key::prefix(Some("c"), None), "default");
    assert_eq!(key::prefix(None, None), "default");
}

fn args(list: &[(&str, Arg)]) -> key::Args {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn one(v: &str) -> Arg {
    Arg::One(v.to_owned())
}

fn many(v: &[&str]) -> Arg {
    Arg::Many(v.iter().map(|s| (*s).to_owned()).collect())
}

fn text(v: Vec<u8>) -> String {
    String::from_utf8(v).expect("utf-8")
}

#[test]
fn params_key_as_kongs_spec() {
    let vary = |names: &[&str]| names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let ab = args(&[("b", one("2")), ("a", one("1"))]);
    assert_eq!(text(key::params_key(&ab, &[])), "a=1:b=2");
    assert_eq!(text(key::params_key(&args(&[]), &[])), "");
    assert_eq!(text(key::params_key(&args(&[]), &vary(&["a"]))), "");
    assert_eq!(text(key::params_key(&ab, &vary(&["a"]))), "a=1");
    let multi = args(&[("a", many(&["2", "1"]))]);
    assert_eq!(text(key::params_key(&multi, &vary(&["a"]))), "a=1,2");
    let with_b = args(&[("a", many(&["1", "2"])), ("b", one("2"))]);
    assert_eq!(
        text(key::params_key(&with_b, &vary(&["a", "b", "c"]))),
        "a=1,2:b=2"
    );
    let flags = args(&[("b", Arg::Flag), ("a", Arg::Flag)]);
    assert_eq!(text(key::params_key(&flags, &[])), "a:b");
}

#[test]
fn headers_key_as_kongs_spec() {
    let request = |name: &str| -> Vec<String> {
        match name {
            "a" => vec!["2".into(), "1".into()],
            "b" => vec!["2".into()],
            "x-foo" => vec!["bar".into()],
            _ => Vec::new(),
        }
    };
    assert_eq!(text(key::headers_key(&[], request)), "");
    assert_eq!(text(key::headers_key(&["b".into()], request)), "b=2");
    assert_eq!(
        text(key::headers_key(
            &["a".into(), "b".into(), "c".into()],
            request
        )),
        "a=1,2:b=2"
    );
    // The lookup is Kong's normalized one; the key keeps the configured spelling.
    assert_eq!(
        text(key::headers_key(&["X_Foo".into()], request)),
        "X_Foo=bar"
    );
}

fn parse_query(raw: &[u8]) -> key::Args {
    key::args(gangway_pipeline::edits::uri_args(raw, 100))
}

#[test]
fn queries_parse_as_get_uri_args() {
    assert_eq!(
        parse_query(b"a=b&b=c"),
        args(&[("a", one("b")), ("b", one("c"))])
    );
    assert_eq!(
        parse_query(b"a&b"),
        args(&[("a", Arg::Flag), ("b", Arg::Flag)])
    );
    assert_eq!(
        parse_query(b"a=1&&a=2&=x&c="),
        args(&[("a", many(&["1", "2"])), ("c", one(""))])
    );
    assert_eq!(
        parse_query(b"q=a+b%21&n%61me=1"),
        args(&[("q", one("a b!")), ("name", one("1"))])
    );
}

#[test]
fn the_uri_is_the_request_line_cut_at_the_query() {
    let uri = |target: &[u8], ignore| text(key::request_uri(b"GET", target, "HTTP/1.1", ignore));
    assert_eq!(uri(b"/get?a=b", false), "GET /get");
    assert_eq!(uri(b"/get?", false), "GET /get");
    assert_eq!(uri(b"/get", false), "GET /get HTTP/1.1");
    assert_eq!(
        uri(b"/Ignore-Case/KONG", true),
        "get /ignore-case/kong http/1.1"
    );
}

#[test]
fn keys_match_hand_computed_sha256() {
    let route = "6f8bd3c2-1b2a-4c5d-8e9f-0a1b2c3d4e5f";
    let consumer = "0b7e4a5e-7f2d-4f7b-9d0e-3c2b1a0f9e8d";
    // sha256("<route>|GET|GET /get HTTP/1.1||")
    let plain = key::build(route, b"GET", b"GET /get HTTP/1.1", b"", b"");
    assert_eq!(
        plain,
        "cc5639bd5716f48d6d5df2381da879c5fb81f63ff615761b9d30a39a8d3b9180"
    );
    // sha256("<route>|GET|GET /get|a=b:b=c|"), from `GET /get?b=c&a=b HTTP/1.1`.
    let uri = key::request_uri(b"GET", b"/get?b=c&a=b", "HTTP/1.1", false);
    let params = key::params_key(&parse_query(b"b=c&a=b"), &[]);
    assert_eq!(
        key::build(route, b"GET", &uri, &params, b""),
        "08b5b8689e937274a0ad431a2f1ddc296299f64e59fae5cb8f9537ae1d0e3081"
    );
    // sha256("<consumer>:<route>|GET|GET /get|a:b|"), from `GET /get?a&b`.
    let prefix = key::prefix(Some(consumer), Some(route));
    let params = key::params_key(&parse_query(b"a&b"), &[]);
    assert_eq!(
        key::build(&prefix, b"GET", b"GET /get", &params, b""),
        "ce63476f9bd8736efeb614a37840320b2f144bfb4e7a0a96f212a098e2bede5c"
    );
    // sha256("default|POST|POST /x|q=1,2|Foo=bar")
    assert_eq!(
        key::build("default", b"POST", b"POST /x", b"q=1,2", b"Foo=bar"),
        "0572600c1beaddabe3aff1cd96e9bad14d6f3e8232396e52b43c69b2b84c16e1"
    );
}

fn media(kind: &str, subtype: &str, params: &[(&str, &str)]) -> MediaType {
    MediaType {
        kind: kind.into(),
        subtype: subtype.into(),
        params: params
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
    }
}

#[test]
fn media_types_parse_with_kongs_grammar() {
    assert_eq!(
        mime::parse(b"Application/JSON; Charset=utf-8;q=1"),
        Some(media(
            "application",
            "json",
            &[("charset", "utf-8"), ("q", "1")]
        ))
    );
    assert_eq!(mime::parse(b"*"), Some(media("*", "*", &[])));
    assert_eq!(mime::parse(b"*/*"), Some(media("*", "*", &[])));
    assert_eq!(
        mime::parse(b"text/plain; a=\"x y\""),
        Some(media("text", "plain", &[("a", "x y")]))
    );
    for bad in [
        &b"application/xml;"[..],
        b"application/json ",
        b"application",
        b"text/plain; a = b",
        b"",
        b"/json",
    ] {
        assert_eq!(mime::parse(bad), None, "{}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn content_types_match_exactly_as_kong() {
    let m = |expected: &str, actual: &str| {
        let expected = mime::parse(expected.as_bytes()).expect("expected parses");
        mime::matches(&expected, mime::parse(actual.as_bytes()).as_ref())
    };
    assert!(m("application/json", "application/json"));
    assert!(m("application/json", "Application/JSON"));
    assert!(!m("application/json", "application/json; charset=utf-8"));
    assert!(m(
        "application/json; charset=utf-8",
        "application/json;charset=utf-8"
    ));
    assert!(!m("application/xml; charset=UTF-8", "application/xml"));
    assert!(!m(
        "application/xml; charset=UTF-8",
        "application/xml; charset=utf-8"
    ));
    assert!(m("application/*", "application/xml"));
    assert!(m("*/*", "image/png"));
    // Kong's */* even takes a type it cannot parse.
    assert!(m("*/*", "application/xml;"));
    assert!(!m("text/plain", "application/xml;"));
}

#[test]
fn directives_parse_as_kong() {
    let cc = Directives::parse([
        &b"public, max-age=3600"[..],
        b"No-Cache, x=abc, s-maxage = 5",
    ]);
    assert!(cc.has("public") && cc.has("no-cache"));
    assert_eq!(cc.number("max-age"), Some(3600.0));
    assert_eq!(cc.number("x"), None);
    assert!(cc.has("x"));
    // Kong keeps what precedes `=` whole, trailing space included.
    assert!(cc.has("s-maxage ") && !cc.has("s-maxage"));
    assert_eq!(cc.number("s-maxage "), Some(5.0));
    let flag = Directives::parse([&b"max-age="[..]]);
    assert!(flag.has("max-age") && flag.number("max-age").is_none());
    assert_eq!(
        Directives::parse([&b"a=1, a=b"[..]]),
        Directives::parse([&b"a=b"[..]])
    );
    let _ = Directive::Flag;
}

#[test]
fn lua_tonumber_cases() {
    assert_eq!(lua_tonumber(b" 10 "), Some(10.0));
    assert_eq!(lua_tonumber(b"0x10"), Some(16.0));
    assert_eq!(lua_tonumber(b"1e2"), Some(100.0));
    assert_eq!(lua_tonumber(b"-1.5"), Some(-1.5));
    for bad in [&b"inf"[..], b"nan", b"", b"1 2", b"ten", b"0x"] {
        assert_eq!(lua_tonumber(bad), None);
    }
}

#[test]
fn resource_ttl_prefers_s_maxage_then_max_age_then_expires() {
    let now = 1_700_000_000.0;
    let cc = |v: &str| Directives::parse([v.as_bytes()]);
    assert_eq!(
        resource_ttl(&cc("max-age=10, s-maxage=20"), None, now),
        20.0
    );
    assert_eq!(resource_ttl(&cc("max-age=10"), None, now), 10.0);
    assert_eq!(resource_ttl(&cc("max-age=-5"), None, now), 0.0);
    assert_eq!(resource_ttl(&cc("public"), None, now), 0.0);
    // 1_700_000_100 is Tue, 14 Nov 2023 22:15:00 GMT.
    let expires = b"Tue, 14 Nov 2023 22:15:00 GMT";
    assert_eq!(resource_ttl(&cc("public"), Some(expires), now), 100.0);
    assert_eq!(resource_ttl(&cc("public"), Some(b"garbage"), now), 0.0);
    assert_eq!(resource_ttl(&cc("max-age=7"), Some(expires), now), 7.0);
}

#[test]
fn requests_are_cacheable_by_method_and_request_cache_control() {
    let p = plugin(json!({"strategy": "memory"}));
    let none = Directives::default();
    assert!(p.cacheable_request(b"GET", &none));
    assert!(p.cacheable_request(b"HEAD", &none));
    assert!(!p.cacheable_request(b"POST", &none));
    assert!(!p.cacheable_request(b"get", &none));
    let no_store = Directives::parse([&b"no-store"[..]]);
    // Request directives count only with cache_control.
    assert!(p.cacheable_request(b"GET", &no_store));
    let cc = plugin(json!({"strategy": "memory", "cache_control": true}));
    assert!(!cc.cacheable_request(b"GET", &no_store));
    assert!(!cc.cacheable_request(b"GET", &Directives::parse([&b"no-cache"[..]])));
    assert!(cc.cacheable_request(b"GET", &Directives::parse([&b"max-age=5"[..]])));
}

#[test]
fn responses_are_cacheable_by_status_type_and_cache_control() {
    let now = 1_700_000_000.0;
    let none = Directives::default();
    let p = plugin(json!({"strategy": "memory"}));
    let json_ct = Some(&b"application/json"[..]);
    assert!(p.cacheable_response(200, json_ct, &none, None, now));
    assert!(p.cacheable_response(404, Some(b"text/plain"), &none, None, now));
    assert!(!p.cacheable_response(500, json_ct, &none, None, now));
    assert!(!p.cacheable_response(418, json_ct, &none, None, now));
    assert!(!p.cacheable_response(200, Some(b"application/xml"), &none, None, now));
    assert!(!p.cacheable_response(
        200,
        Some(b"application/json; charset=utf-8"),
        &none,
        None,
        now
    ));
    assert!(!p.cacheable_response(200, None, &none, None, now));
    assert!(!p.cacheable_response(200, Some(b""), &none, None, now));
    // Without cache_control the response's directives do not matter.
    let private = Directives::parse([&b"private, max-age=60"[..]]);
    assert!(p.cacheable_response(200, json_ct, &private, None, now));

    let cc = plugin(json!({"strategy": "memory", "cache_control": true}));
    let dirs = |v: &str| Directives::parse([v.as_bytes()]);
    assert!(!cc.cacheable_response(200, json_ct, &private, None, now));
    assert!(!cc.cacheable_response(200, json_ct, &dirs("no-store, max-age=60"), None, now));
    assert!(!cc.cacheable_response(200, json_ct, &dirs("public, max-age=0"), None, now));
    assert!(!cc.cacheable_response(200, json_ct, &none, None, now));
    assert!(cc.cacheable_response(200, json_ct, &dirs("max-age=604800"), None, now));
    assert!(cc.cacheable_response(200, json_ct, &dirs("s-maxage=604800"), None, now));
    let later = b"Tue, 14 Nov 2023 22:15:00 GMT";
    assert!(cc.cacheable_response(200, json_ct, &none, Some(later), now));

    let wide = plugin(json!({"strategy": "memory", "content_type": ["*/*"],
                             "response_code": [200, 417]}));
    assert!(wide.cacheable_response(417, Some(b"application/xml"), &none, None, now));
    let bad = plugin(json!({"strategy": "memory", "content_type": ["application/xml;"]}));
    assert!(!bad.cacheable_response(200, Some(b"application/xml"), &none, None, now));
}

fn entry(timestamp: i64, ttl: f64) -> Entry {
    Entry {
        status: 200,
        content_type: Some("application/json".into()),
        headers: vec![("X-A".into(), b"1".to_vec())],
        body: b"{}".to_vec(),
        timestamp,
        ttl,
        expires_at: None,
    }
}

#[test]
fn staleness_follows_cache_ttl_or_request_directives() {
    let p = plugin(json!({"strategy": "memory", "cache_ttl": 2, "storage_ttl": 60}));
    let none = Directives::default();
    let e = entry(1000, 2.0);
    assert!(!p.is_stale(&e, &none, 1002));
    assert!(p.is_stale(&e, &none, 1003));

    let cc = plugin(json!({"strategy": "memory", "cache_control": true}));
    let dirs = |v: &str| Directives::parse([v.as_bytes()]);
    let e = entry(1000, 2.0);
    // Kong serves an entry past its TTL when the request sets no limit.
    assert!(!cc.is_stale(&e, &none, 1010));
    assert!(cc.is_stale(&e, &dirs("max-age=2"), 1003));
    assert!(!cc.is_stale(&e, &dirs("max-age=2"), 1002));
    assert!(cc.is_stale(&e, &dirs("max-stale=1"), 1004));
    assert!(!cc.is_stale(&e, &dirs("max-stale=1"), 1003));
    assert!(cc.is_stale(&e, &dirs("min-fresh=30"), 1000));
}

#[test]
fn the_store_forgets_entries_after_their_ttl() {
    let store = Store::new(1 << 20);
    let mut e = entry(1000, 1.0);
    e.expires_at = Some(1001.0);
    store.store("k".into(), e.clone());
    assert_eq!(store.fetch("k", 1000.5).as_deref(), Some(&e));
    assert!(store.fetch("k", 1001.0).is_none());
    // Gone for good, not just hidden.
    assert!(store.fetch("k", 0.0).is_none());
    let forever = entry(1000, 1.0);
    store.store("f".into(), forever.clone());
    assert_eq!(store.fetch("f", 1e12).as_deref(), Some(&forever));
    store.purge("f");
    assert!(store.fetch("f", 0.0).is_none());
}

#[test]
fn storage_ttl_decides_how_long_the_store_keeps_an_entry() {
    let now = 5000.0;
    let key = |p: &ProxyCache, name: &str, ttl: f64| {
        p.keep(name.into(), entry(5000, ttl), now);
        p.store.fetch(name, 0.0).and_then(|e| e.expires_at)
    };
    let plain = plugin(json!({"strategy": "memory", "cache_ttl": 7,
                              "memory": {"dictionary_name": "kong_locks"}}));
    assert_eq!(key(&plain, "a", 7.0), Some(5007.0));
    let storage = plugin(
        json!({"strategy": "memory", "cache_ttl": 7, "storage_ttl": 60,
                                "memory": {"dictionary_name": "kong_locks"}}),
    );
    assert_eq!(key(&storage, "b", 7.0), Some(5060.0));
    let cc = plugin(json!({"strategy": "memory", "cache_control": true,
                           "memory": {"dictionary_name": "kong_locks"}}));
    assert_eq!(key(&cc, "c", 42.0), Some(5042.0));
    let zero = plugin(json!({"strategy": "memory", "storage_ttl": 0,
                             "memory": {"dictionary_name": "kong_locks"}}));
    assert_eq!(key(&zero, "d", 7.0), None);
    assert!(zero.store.fetch("d", 1e12).is_some());
    let negative = plugin(json!({"strategy": "memory", "storage_ttl": -1,
                                 "memory": {"dictionary_name": "kong_locks"}}));
    negative.keep("e".into(), entry(5000, 7.0), now);
    assert!(negative.store.fetch("e", 0.0).is_none());
}

#[test]
fn the_store_stays_within_its_bound() {
    let bound = 256 * 1024;
    let store = Store::new(bound);
    for i in 0..200 {
        let mut e = entry(1000, 1.0);
        e.body = vec![b'x'; 8 * 1024];
        store.store(format!("k{i}"), e);
    }
    assert!(store.bytes() <= bound, "{} > {bound}", store.bytes());
    assert!(store.bytes() > bound / 2, "{}", store.bytes());
}

#[test]
fn dictionaries_are_shared_by_name() {
    let dictionary = |name| super::store::dictionary(name).expect("one of Kong's");
    let a = dictionary("kong_healthchecks");
    let b = dictionary("kong_healthchecks");
    let c = dictionary("kong_cluster_events");
    a.store("k".into(), entry(1, 1.0));
    assert!(b.fetch("k", 0.0).is_some());
    assert!(c.fetch("k", 0.0).is_none());
}

#[test]
fn slots_round_trip() {
    let slot = Slot {
        stage: Stage::Store,
        head: true,
        debug: false,
        ttl: 12.5,
        key: "abc".into(),
    };
    assert_eq!(Slot::decode(&slot.encode()), Some(slot));
    assert_eq!(Slot::decode(b""), None);
    assert_eq!(Slot::decode(b"X\0\0\0\0\0\0\0\0\0"), None);
}

#[test]
fn hop_by_hop_and_diagnostic_headers_are_not_stored() {
    for dropped in [
        "connection",
        "transfer-encoding",
        "content-length",
        "x-ratelimit-remaining-minute",
        "ratelimit-remaining",
        "age",
        "x-cache-status",
        "x-cache-key",
        "server",
    ] {
        assert!(!kept_on_store(dropped), "{dropped}");
    }
    for kept in [
        "cache-control",
        "x-upstream",
        "etag",
        "x-ratelimit-limit-minute",
    ] {
        assert!(kept_on_store(kept), "{kept}");
    }
}

/// An entry up to MAX_ENTRY_BYTES is kept whatever the core count: quick_cache's default
/// shards (four a core) left about 1.9 MiB an entry on 16 cores.
#[test]
fn the_largest_entry_kept_fits_the_store() {
    let store = Store::new(DICTIONARY_BYTES);
    let mut big = entry(1000, 60.0);
    big.body = vec![b'x'; MAX_ENTRY_BYTES as usize];
    store.store("big".into(), big);
    assert!(store.fetch("big", 1000.0).is_some());
}
