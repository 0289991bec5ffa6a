//! The template cases of Kong's `spec/03-plugins/36-request-transformer/01-schema_spec.lua`
//! and `02-access_spec.lua` (route numbers are the spec's `testNN.test` hosts).
//!
//! Where Kong runs Lua (or fails with a 500 at request time), gangway refuses the config.

use super::{Env, Template, env, render};

/// `~/(gw/)?api/(?<subpath>htest)$` on `/api/htest`: group 1 did not take part.
fn test29() -> Env {
    Env {
        named: vec![("subpath", "htest")],
        indexed: vec![Some("/api/htest"), None, Some("htest")],
        ..Env::default()
    }
}

/// `~/user1/(?P<user1>\w+)/user2/(?P<user2>\S+)` on `/user1/foo/user2/bar`.
fn test14() -> Env {
    Env {
        indexed: vec![Some("/user1/foo/user2/bar"), Some("foo"), Some("bar")],
        ..env()
    }
}

/// A repeated `X-Foo: 1`, `X-Foo: 2` (the env yields the first value).
fn test25() -> Env {
    Env {
        headers: vec![("x-foo", b"1"), ("user-agent", b"curl")],
        ..Env::default()
    }
}

type Case = (
    &'static str,
    &'static str,
    fn() -> Env,
    Option<&'static str>,
);

/// (spec, config value, request, rendered value or `None` for a config error).
const CASES: &[Case] = &[
    (
        "schema: regex pattern as value",
        "$(uri_captures.user1)",
        env,
        Some("foo"),
    ),
    (
        "schema: regex pattern as value",
        "$(uri_captures.user2)",
        env,
        Some("bar"),
    ),
    ("schema: string as value", "value", env, Some("value")),
    (
        "schema: malformed regex pattern in value",
        "$(uri_captures user2)",
        env,
        None,
    ),
    (
        "test10: querystring parameters on GET",
        "$(uri_captures.user2)",
        env,
        Some("bar"),
    ),
    (
        "test11: should update request path using hash",
        "/requests/user2/$(uri_captures.user2)/user1/$(uri_captures.user1)",
        env,
        Some("/requests/user2/bar/user1/foo"),
    ),
    (
        "test12: hash missing",
        "$(uri_captures.user1 or 'default1')",
        Env::default,
        Some("default1"),
    ),
    (
        "test12: hash missing",
        "$(uri_captures.user2 or 'default2')",
        Env::default,
        Some("default2"),
    ),
    (
        "test13: not a proper expression",
        "/requests/user2/$(10 * uri_captures.user1)",
        env,
        None,
    ),
    (
        "test14: uri template rendered using index",
        "/requests$(uri_captures[0])",
        test14,
        Some("/requests/user1/foo/user2/bar"),
    ),
    (
        "test15: headers/req_querystring",
        "$(uri_captures.user1)",
        env,
        Some("foo"),
    ),
    (
        "test15: headers/req_querystring",
        "$(headers.host)",
        env,
        Some("test15.test"),
    ),
    (
        "test15: headers/req_querystring",
        "$(query_params.q1)",
        env,
        Some("20"),
    ),
    (
        "test16: removed header as template",
        "$(headers['x-remove-header'])",
        env,
        Some("its a test"),
    ),
    (
        "test18: template can be escaped",
        "$('$(uri_captures.user1)')",
        env,
        Some("$(uri_captures.user1)"),
    ),
    ("test19: rendering error (query)", "$(ERROR())", env, None),
    (
        "test21: value from 'kong.ctx.shared'",
        "$(shared.my_version)",
        env,
        None,
    ),
    (
        "test24: rendering error (header), issue #25",
        "$(foo(headers[\"User-Agent\"]) == \"table\" and headers[\"User-Agent\"][1] or headers[\"User-Agent\"])",
        test25,
        None,
    ),
    (
        "test25: type function in template environment",
        "$(type(headers[\"X-Foo\"]) == \"table\" and headers[\"X-Foo\"][1] .. \"-first\" or headers[\"X-Foo\"])",
        test25,
        None,
    ),
    (
        "test28: cannot write in `kong.ctx.shared`",
        "$(shared.written = true)",
        env,
        None,
    ),
    (
        "test29: optional capture prefix",
        "/api/v2/$(uri_captures[\"subpath\"])",
        test29,
        Some("/api/v2/htest"),
    ),
    (
        "untrusted_lua=on",
        "$(require('inspect')(string.sub(query_params.user, 1, 3)))",
        env,
        None,
    ),
    (
        "sandbox: allowed Lua function",
        "$(type(query_params.user))",
        env,
        None,
    ),
    (
        "sandbox: non allowed Lua function",
        "$(string.sub(query_params.user, 1, 3))",
        env,
        None,
    ),
    (
        "sandbox: non whitelisted module",
        "$(require('ngx.process')('somestring'))",
        env,
        None,
    ),
    (
        "sandbox_requires",
        "$(require('inspect')({query_params.user1,query_params.user2}))",
        env,
        None,
    ),
    (
        "sandbox_environment",
        "$(string.format('u1:%s;u2:%s', query_params.user1,query_params.user2))",
        env,
        None,
    ),
];

#[test]
fn kong_request_transformer_spec_cases() {
    for (spec, src, request, want) in CASES {
        match (Template::compile(src), want) {
            (Ok(_), Some(want)) => assert_eq!(render(src, &request()), *want, "{spec}"),
            (Err(e), None) => assert!(e.contains("(no Lua)"), "{spec}: {e}"),
            (got, want) => panic!("{spec}: {src:?} compiled to {got:?}, want {want:?}"),
        }
    }
}

/// Kong's test29: a group that did not take part (`(gw/)?`) renders empty.
#[test]
fn kong_optional_group_renders_empty() {
    assert_eq!(
        render("$(uri_captures[1])|$(uri_captures[2])", &test29()),
        "|htest"
    );
}
