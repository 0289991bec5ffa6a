//! Template tests: access forms and the syntax corner cases penlight and LuaJIT define;
//! `kong_spec` ports the template cases of Kong's request-transformer specs.

use std::borrow::Cow;

mod kong_spec;

use super::{Lookup, Template, TemplateEnv};

/// A request as the template sees it: lowercase header names, decoded query arguments, and
/// the captures of the matched route regex.
#[derive(Default)]
struct Env {
    headers: Vec<(&'static str, &'static [u8])>,
    query: Vec<(&'static str, &'static [u8])>,
    named: Vec<(&'static str, &'static str)>,
    indexed: Vec<Option<&'static str>>,
}

impl TemplateEnv for Env {
    fn header(&self, lower_name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| *n == lower_name)
            .map(|(_, v)| *v)
    }
    fn query_param(&self, name: &str) -> Option<Cow<'_, [u8]>> {
        self.query
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| Cow::Borrowed(*v))
    }
    fn uri_capture_named(&self, name: &str) -> Option<&str> {
        self.named.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
    fn uri_capture_index(&self, index: usize) -> Option<&str> {
        self.indexed.get(index).copied().flatten()
    }
}

/// Kong's test15 request: `GET /requests/user1/foo/user2/bar?q1=20` on
/// `~/requests/user1/(?<user1>\w+)/user2/(?<user2>\S+)`, plus a few headers of our own.
fn env() -> Env {
    Env {
        headers: vec![
            ("host", b"test15.test"),
            ("x-remove-header", b"its a test"),
            ("x-token", b"abc"),
            ("x-empty", b""),
            ("x-foo", b"1"),
        ],
        query: vec![
            ("q1", b"20"),
            ("flag", b"true"),
            ("blank", b""),
            ("a b", b"spaced"),
        ],
        named: vec![("user1", "foo"), ("user2", "bar")],
        indexed: vec![
            Some("/requests/user1/foo/user2/bar"),
            Some("foo"),
            Some("bar"),
        ],
    }
}

fn render(src: &str, env: &Env) -> String {
    let t = Template::compile(src).expect("template compiles");
    let mut out = Vec::new();
    assert!(t.render(env, &mut out), "{src:?} renders a value");
    String::from_utf8(out).expect("utf-8 output")
}

fn check_renders(cases: &[(&str, &str)], env: &Env) {
    for (src, want) in cases {
        assert_eq!(render(src, env), *want, "template {src:?}");
    }
}

fn compile_err(src: &str) -> String {
    Template::compile(src).expect_err(src)
}

#[test]
fn access_forms() {
    check_renders(
        &[
            ("$(headers.host)", "test15.test"),
            ("$(headers.x_remove_header)", "its a test"),
            ("$(headers.X_Remove_Header)", "its a test"),
            ("$(headers[\"x-remove-header\"])", "its a test"),
            ("$(headers['X-Remove-Header'])", "its a test"),
            ("$(headers[\"X_REMOVE_HEADER\"])", "its a test"),
            ("$(headers[ [[x-remove-header]] ])", "its a test"),
            ("$(headers[ [==[x-token]==] ])", "abc"),
            ("$(query_params.q1)", "20"),
            ("$(query_params[\"q1\"])", "20"),
            ("$(query_params['a b'])", "spaced"),
            ("$(query_params.flag)", "true"),
            ("$(uri_captures.user1)", "foo"),
            ("$(uri_captures['user2'])", "bar"),
            ("$(uri_captures[\"user1\"])", "foo"),
            ("$(uri_captures[0])", "/requests/user1/foo/user2/bar"),
            ("$(uri_captures[1])", "foo"),
            ("$(uri_captures[002])", "bar"),
        ],
        &env(),
    );
}

#[test]
fn query_params_are_case_sensitive_and_keep_underscores() {
    let e = Env {
        query: vec![("x_y", b"1"), ("Q", b"2")],
        ..Env::default()
    };
    check_renders(
        &[
            ("$(query_params.x_y)", "1"),
            ("$(query_params['x-y'])", ""),
            ("$(query_params.q)", ""),
        ],
        &e,
    );
}

#[test]
fn whitespace_inside_the_parentheses() {
    check_renders(
        &[
            ("$( headers.host )", "test15.test"),
            ("$(headers . host)", "test15.test"),
            ("$(headers [ 'host' ])", "test15.test"),
            ("$(\n\theaders.host\r\n)", "test15.test"),
            ("$(uri_captures [ 1 ])", "foo"),
            ("$(headers.none   or\n'd')", "d"),
        ],
        &env(),
    );
}

#[test]
fn literal_text_and_several_templates() {
    check_renders(
        &[
            ("Bearer $(headers.x_token)", "Bearer abc"),
            ("$(uri_captures.user1)$(uri_captures.user2)", "foobar"),
            ("<$(headers.none)>", "<>"),
            (
                "user=$(uri_captures.user1)&q=$(query_params.q1)&h=$(headers.host);",
                "user=foo&q=20&h=test15.test;",
            ),
            ("héllo $(uri_captures.user1) wörld", "héllo foo wörld"),
        ],
        &env(),
    );
}

#[test]
fn missing_values_render_empty_or_the_or_literal() {
    check_renders(
        &[
            ("$(headers.none)", ""),
            ("$(query_params.none)", ""),
            ("$(uri_captures.none)", ""),
            ("$(uri_captures[3])", ""),
            ("$(headers.none or 'none')", "none"),
            ("$(headers.none or \"none\")", "none"),
            ("$(headers.none or query_params.q1)", "20"),
            ("$(headers.none or query_params.none or 'z')", "z"),
            ("$(headers.host or 'x')", "test15.test"),
            // Lua's `or` only replaces nil: an empty value is a value.
            ("$(headers.x_empty or 'd')", ""),
            ("$(query_params.blank or 'd')", ""),
            ("$('lit' or headers.host)", "lit"),
            ("$(headers.none or 'a' or headers.host)", "a"),
        ],
        &env(),
    );
    // No captures at all (a prefix route), as in Kong's test12.
    check_renders(
        &[
            ("$(uri_captures[0])", ""),
            ("$(uri_captures.user1 or 'd')", "d"),
        ],
        &Env::default(),
    );
}

#[test]
fn string_literal_escapes_follow_luajit() {
    check_renders(
        &[
            (r"$('it\'s')", "it's"),
            (r#"$("a\"b")"#, "a\"b"),
            (r#"$("it's")"#, "it's"),
            (r"$('\65\066\x43')", "ABC"),
            (r"$('\u{e9}\u{1F600}')", "é😀"),
            (
                r"$('a\z   
                b')",
                "ab",
            ),
            (r"$('t\tn\nr\r\\')", "t\tn\nr\r\\"),
            (r"$('\a\b\f\v')", "\x07\x08\x0c\x0b"),
            ("$('line\\\nnext')", "line\nnext"),
            ("$([[long 'x' \"y\"]])", "long 'x' \"y\""),
            ("$([==[a]]b]=]c]==])", "a]]b]=]c"),
            ("$([[\nskipped first newline]])", "skipped first newline"),
            ("$('')", ""),
        ],
        &env(),
    );
}

#[test]
fn penlight_has_no_escape_character() {
    check_renders(
        &[
            // Kong's spec escapes with a string expression (test18).
            ("$('$(uri_captures.user1)')", "$(uri_captures.user1)"),
            (r"\$(headers.host)", r"\test15.test"),
            ("$$(headers.host)", "$test15.test"),
            ("$headers.host", "$headers.host"),
            ("$ (headers.host)", "$ (headers.host)"),
            ("costs 5$", "costs 5$"),
            ("(a) $(headers.host) (b)", "(a) test15.test (b)"),
            // `%b()` fails for an unclosed `$(`; a later one can still match.
            ("$(headers.host", "$(headers.host"),
            ("$(a $(headers.host)", "$(a test15.test"),
            ("x) $(headers.host)", "x) test15.test"),
            ("#$(headers.host)", "#test15.test"),
        ],
        &env(),
    );
}

#[test]
fn literals_and_the_empty_template() {
    for (src, want) in [
        ("plain value", Some("plain value")),
        ("$('x')", Some("x")),
        ("a$('')b$(\"c\")", Some("abc")),
        ("$('')", Some("")),
        ("$(headers.host)", None),
        ("a $(headers.none or 'b')", None),
        ("", None),
    ] {
        let t = Template::compile(src).expect("compiles");
        assert_eq!(t.is_literal(), want, "{src:?}");
        if let Some(lit) = want {
            assert_eq!(render(src, &Env::default()), lit);
        }
    }
    // Kong's param_value returns nil for an empty value: no value to set.
    let t = Template::compile("").expect("compiles");
    let mut out = Vec::new();
    assert!(!t.render(&env(), &mut out));
    assert!(out.is_empty());
}

#[test]
fn render_appends_to_the_buffer() {
    let t = Template::compile("-$(headers.x_token)").expect("compiles");
    let mut out = b"pre".to_vec();
    assert!(t.render(&env(), &mut out));
    assert_eq!(out, b"pre-abc");
}

#[test]
fn lookups_lists_what_is_read() {
    let t = Template::compile(
        "$(headers.X_Foo) $(query_params.q or uri_captures[2] or 'd' or headers.dead) $(uri_captures.n)",
    )
    .expect("compiles");
    let got: Vec<&Lookup> = t.lookups().collect();
    assert_eq!(
        got,
        [
            &Lookup::Header("x-foo".into()),
            &Lookup::Query("q".into()),
            &Lookup::UriCaptureIndex(2),
            &Lookup::UriCaptureName("n".into()),
        ]
    );
    assert_eq!(
        Template::compile("$('x' or headers.a)")
            .expect("compiles")
            .lookups()
            .count(),
        0
    );
}

#[test]
fn unsupported_expressions_say_no_lua() {
    let no_lua = "gangway supports headers, query_params and uri_captures lookups only (no Lua)";
    assert_eq!(
        compile_err("$(string.upper(headers.x))"),
        format!("unsupported template expression 'string.upper(headers.x)': {no_lua}")
    );
    for src in [
        "$(headers)",
        "$(headers.x.y)",
        "$(headers[\"x\"][1])",
        "$(headers[1])",
        "$(query_params[1])",
        "$(uri_captures[-1])",
        "$(uri_captures[1.5])",
        "$(uri_captures[0x1])",
        "$(uri_captures[1e0])",
        "$(uri_captures[99999999999999999999999])",
        "$(uri_captures .5)",
        "$(headers.x or)",
        "$(or 'a')",
        "$(headers.x or or 'a')",
        "$(headers.x and 'a')",
        "$(not headers.x)",
        "$(headers.x .. 'a')",
        "$(headers.x -- comment)",
        "$(nil)",
        "$(1)",
        "$(true)",
        "$((headers.x))",
        "$(headers.x, headers.y)",
        "$('a' 'b')",
        "$(headers[[x]])",
        "$(ngx.var.uri)",
        "$(kong.request.get_path())",
        "ok $(headers.host) $(bad())",
    ] {
        let err = compile_err(src);
        assert!(
            err.starts_with("unsupported template expression '"),
            "{src:?}: {err}"
        );
        assert!(err.ends_with(no_lua), "{src:?}: {err}");
    }
    assert_eq!(
        compile_err("$()"),
        format!("empty template expression '$()': {no_lua}")
    );
    assert!(compile_err("x $(  \n ) y").starts_with("empty template expression"));
}

#[test]
fn lua_syntax_errors_are_config_errors() {
    assert_eq!(
        compile_err("$(headers.end)"),
        "invalid template expression 'headers.end': 'end' is a Lua keyword, write [\"end\"] instead of .end"
    );
    assert!(compile_err("$(headers.or)").contains("'or' is a Lua keyword"));
    for (src, why) in [
        ("$('abc)", "unfinished string"),
        ("$(headers[')'])", "unfinished string"),
        ("$('a\nb')", "unfinished string"),
        ("$('a\\", "unfinished string"),
        (r"$('a\qb')", "invalid escape sequence"),
        (r"$('\256')", "invalid escape sequence"),
        (r"$('\x4')", "invalid escape sequence"),
        (r"$('\u{110000}')", "invalid escape sequence"),
        (r"$('\u{}')", "invalid escape sequence"),
        (r"$('\u{+41}')", "invalid escape sequence"),
        (r"$('\xff')", "the string is not valid UTF-8"),
        (r"$('\u{D800}')", "the string is not valid UTF-8"),
        ("$([=[x]])", "unfinished long string"),
        ("$([=x])", "invalid long string delimiter"),
    ] {
        let err = Template::compile(src).err();
        let Some(err) = err else {
            // `$('a\` never closes its parenthesis: plain text, like penlight.
            assert_eq!(src, "$('a\\");
            continue;
        };
        assert!(
            err.starts_with("invalid string literal in template expression '"),
            "{src:?}: {err}"
        );
        assert!(err.ends_with(why), "{src:?}: {err}");
    }
}
