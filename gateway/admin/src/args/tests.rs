//! Unit tests: Kong's body decoding, key nesting and coercion, with concrete inputs.
//!
//! Expected values come from Kong's `spec/01-unit/01-db/03-arguments_spec.lua` where it has a
//! case, otherwise from reading `kong/api/arguments.lua`, `arguments_decoder.lua` and
//! `api_helpers.lua`; each test says which.

use axum::body::Bytes;
use gangway_config::schema::Field;
use serde_json::{Value, json};

use super::{
    BodyError, Brackets, Expect, MAX_ARGS, MAX_NESTING, coerce, decode_body, decode_query, nest,
    nest_with,
};

/// Nests a literal urlencoded string the way a form body is read.
fn form(query: &str) -> Value {
    decode_query(query.as_bytes(), Brackets::Map).expect("test forms are within the limit")
}

/// Decodes `body` sent with `content_type`.
async fn body(content_type: Option<&str>, body: &'static str) -> Result<Value, BodyError> {
    decode_body(content_type, Bytes::from_static(body.as_bytes())).await
}

/// Coerces `value` against `expect` and returns it.
fn coerced(mut value: Value, expect: &Expect) -> Value {
    coerce(&mut value, expect);
    value
}

const MULTIPART: &str = "multipart/form-data; boundary=XyZ";

// --- Content-Type and body rules (api_helpers.lua `before_filter`, `parse_params`) ---

#[tokio::test]
async fn empty_body_without_content_type_is_an_empty_object() {
    assert_eq!(body(None, "").await, Ok(json!({})));
}

#[tokio::test]
async fn body_without_content_type_is_415() {
    // spec/02-integration/04-admin_api/03-consumers_routes_spec.lua "returns 415 on missing
    // content-type with body".
    assert_eq!(
        body(None, "invalid").await,
        Err(BodyError::UnsupportedMediaType)
    );
}

#[tokio::test]
async fn text_plain_with_body_is_415() {
    assert_eq!(
        body(Some("text/plain"), "hello").await,
        Err(BodyError::UnsupportedMediaType)
    );
    // Same spec file: "returns 415 on invalid content-type".
    assert_eq!(
        body(Some("invalid"), r#"{"hello": "world"}"#).await,
        Err(BodyError::UnsupportedMediaType)
    );
}

#[tokio::test]
async fn unsupported_content_type_is_415_even_without_a_body() {
    // before_filter refuses any other type before looking at the body.
    assert_eq!(
        body(Some("text/plain"), "").await,
        Err(BodyError::UnsupportedMediaType)
    );
    assert_eq!(
        body(Some(""), "").await,
        Err(BodyError::UnsupportedMediaType)
    );
}

#[tokio::test]
async fn content_type_match_is_a_case_sensitive_prefix() {
    assert_eq!(
        body(Some("application/json; charset=utf-8"), r#"{"a":1}"#).await,
        Ok(json!({"a": 1}))
    );
    assert_eq!(
        body(Some("Application/JSON"), r#"{"a":1}"#).await,
        Err(BodyError::UnsupportedMediaType)
    );
    assert_eq!(
        body(
            Some("application/x-www-form-urlencoded; charset=utf-8"),
            "a=1"
        )
        .await,
        Ok(json!({"a": "1"}))
    );
}

#[tokio::test]
async fn json_body_is_neither_nested_nor_coerced() {
    assert_eq!(
        body(
            Some("application/json"),
            r#"{"config.minute":"5","paths[]":"/a","n":""}"#
        )
        .await,
        Ok(json!({"config.minute": "5", "paths[]": "/a", "n": ""}))
    );
}

#[tokio::test]
async fn malformed_json_is_bad_json() {
    // spec/02-integration/04-admin_api/10-services_routes_spec.lua "handles malformed JSON body".
    assert_eq!(
        body(Some("application/json"), r#"{"hello": "world""#).await,
        Err(BodyError::BadJson)
    );
}

#[tokio::test]
async fn empty_json_body_is_bad_json() {
    // 03-consumers_routes_spec.lua "returns 400 on missing body with application/json".
    assert_eq!(
        body(Some("application/json"), "").await,
        Err(BodyError::BadJson)
    );
    assert_eq!(
        body(Some("application/json"), "  ").await,
        Err(BodyError::BadJson)
    );
}

#[tokio::test]
async fn json_array_body_passes_through() {
    assert_eq!(
        body(Some("application/json"), r#"[{"a":1}]"#).await,
        Ok(json!([{"a": 1}]))
    );
}

#[tokio::test]
async fn json_scalar_or_null_body_is_bad_json() {
    for text in [r#""abc""#, "5", "true", "null"] {
        assert_eq!(
            body(Some("application/json"), text).await,
            Err(BodyError::BadJson),
            "{text}"
        );
    }
}

#[tokio::test]
async fn empty_form_body_is_an_empty_object() {
    assert_eq!(
        body(Some("application/x-www-form-urlencoded"), "").await,
        Ok(json!({}))
    );
}

#[tokio::test]
async fn form_body_nests_and_keeps_strings() {
    assert_eq!(
        body(
            Some("application/x-www-form-urlencoded"),
            "name=rl&config.minute=5&service.id=7e1f&enabled=true"
        )
        .await,
        Ok(json!({
            "name": "rl",
            "config": {"minute": "5"},
            "service": {"id": "7e1f"},
            "enabled": "true"
        }))
    );
}

#[test]
fn too_many_form_arguments_is_400() {
    // spec/02-integration/04-admin_api/21-truncated_arguments_spec.lua: 1001 arguments.
    let over: Vec<String> = (1..=MAX_ARGS + 1).map(|i| format!("a={i}")).collect();
    let error = decode_query(over.join("&").as_bytes(), Brackets::Map);
    assert_eq!(error, Err(BodyError::BadForm("Too many arguments".into())));

    let at_limit: Vec<String> = (1..=MAX_ARGS).map(|i| format!("a={i}")).collect();
    let value = decode_query(at_limit.join("&").as_bytes(), Brackets::Map)
        .expect("1000 arguments are allowed");
    assert_eq!(value["a"].as_array().map(Vec::len), Some(MAX_ARGS));
}

#[test]
fn body_errors_map_to_kong_statuses_and_bodies() {
    assert_eq!(BodyError::UnsupportedMediaType.status(), 415);
    assert_eq!(BodyError::UnsupportedMediaType.message(), None);
    assert_eq!(BodyError::UnsupportedMediaType.body(), "");

    assert_eq!(BodyError::BadJson.status(), 400);
    assert_eq!(
        BodyError::BadJson.message().as_deref(),
        Some("Cannot parse JSON body")
    );
    assert_eq!(
        BodyError::BadJson.body(),
        r#"{"message":"Cannot parse JSON body"}"#
    );

    assert_eq!(BodyError::MultipleContentTypes.status(), 400);
    assert_eq!(
        BodyError::MultipleContentTypes.message().as_deref(),
        Some("Multiple Content-Type headers not allowed")
    );
    assert_eq!(
        BodyError::MultipleContentTypes.body(),
        "Multiple Content-Type headers not allowed"
    );

    let too_many = BodyError::BadForm("Too many arguments".into());
    assert_eq!(too_many.status(), 400);
    assert_eq!(too_many.body(), r#"{"message":"Too many arguments"}"#);
}

// --- urlencoded pairs (ngx_http_lua_parse_args) ---

#[test]
fn name_without_equals_is_true_and_empty_value_is_empty_string() {
    assert_eq!(form("enabled&name="), json!({"enabled": true, "name": ""}));
}

#[test]
fn empty_names_and_empty_pairs_are_dropped() {
    assert_eq!(form("=x&&a=1&"), json!({"a": "1"}));
}

#[test]
fn plus_and_percent_escapes_are_decoded() {
    assert_eq!(
        form("tags=a+b&path=%2Fx%3Fy&v=a%3Db"),
        json!({"tags": "a b", "path": "/x?y", "v": "a=b"})
    );
}

// --- Multipart (lapis parse_multipart via arguments.lua) ---

#[tokio::test]
async fn multipart_text_fields_and_file_part_are_strings() {
    let body = "--XyZ\r\n\
        Content-Disposition: form-data; name=\"name\"\r\n\r\n\
        my-cert\r\n\
        --XyZ\r\n\
        Content-Disposition: form-data; name=\"config.minute\"\r\n\r\n\
        5\r\n\
        --XyZ\r\n\
        Content-Disposition: form-data; name=\"cert\"; filename=\"dir/cert.pem\"\r\n\
        Content-Type: application/x-pem-file\r\n\r\n\
        -----BEGIN CERTIFICATE-----\r\nMIIB\r\n\
        --XyZ\r\n\
        Content-Disposition: form-data; name=\"meta\"\r\n\
        Content-Type: application/json\r\n\r\n\
        {\"a\":1}\r\n\
        --XyZ--\r\n";
    assert_eq!(
        decode_body(Some(MULTIPART), Bytes::from_static(body.as_bytes())).await,
        Ok(json!({
            "name": "my-cert",
            "config": {"minute": "5"},
            "cert": "-----BEGIN CERTIFICATE-----\r\nMIIB",
            "meta": "{\"a\":1}"
        }))
    );
}

#[tokio::test]
async fn multipart_repeated_name_keeps_the_last_part() {
    let body = "--XyZ\r\n\
        Content-Disposition: form-data; name=\"hosts\"\r\n\r\n\
        a\r\n\
        --XyZ\r\n\
        Content-Disposition: form-data; name=\"hosts\"\r\n\r\n\
        b\r\n\
        --XyZ--\r\n";
    assert_eq!(
        decode_body(Some(MULTIPART), Bytes::from_static(body.as_bytes())).await,
        Ok(json!({"hosts": "b"}))
    );
}

#[tokio::test]
async fn multipart_part_without_name_is_dropped() {
    let body = "--XyZ\r\n\
        Content-Type: text/plain\r\n\r\n\
        orphan\r\n\
        --XyZ\r\n\
        Content-Disposition: form-data; name=\"a\"\r\n\r\n\
        1\r\n\
        --XyZ--\r\n";
    assert_eq!(
        decode_body(Some(MULTIPART), Bytes::from_static(body.as_bytes())).await,
        Ok(json!({"a": "1"}))
    );
}

#[tokio::test]
async fn malformed_multipart_reads_as_empty() {
    let truncated = "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1";
    assert_eq!(
        decode_body(Some(MULTIPART), Bytes::from_static(truncated.as_bytes())).await,
        Ok(json!({}))
    );
    assert_eq!(
        body(Some("multipart/form-data"), "a=1").await,
        Ok(json!({}))
    );
    assert_eq!(body(Some(MULTIPART), "").await, Ok(json!({})));
}

// --- Key notation (arguments_decoder.lua) ---

#[test]
fn dotted_keys_nest_objects() {
    assert_eq!(
        nest([("config.minute".into(), "5".into())]),
        json!({"config": {"minute": "5"}})
    );
    assert_eq!(
        form("a.b.c=1&a.b.d=2"),
        json!({"a": {"b": {"c": "1", "d": "2"}}})
    );
}

#[test]
fn append_brackets_make_arrays() {
    assert_eq!(
        form("paths[]=/a&paths[]=/b"),
        json!({"paths": ["/a", "/b"]})
    );
    // spec: decode_arg("x[]", "a") is { x = { "a" } }.
    assert_eq!(form("paths[]=/a"), json!({"paths": ["/a"]}));
}

#[test]
fn indexed_brackets_are_one_based_in_any_order() {
    assert_eq!(
        form("paths[1]=/a&paths[2]=/b"),
        json!({"paths": ["/a", "/b"]})
    );
    assert_eq!(
        form("paths[2]=/b&paths[1]=/a"),
        json!({"paths": ["/a", "/b"]})
    );
}

#[test]
fn repeated_plain_name_makes_an_array_and_a_single_one_stays_scalar() {
    assert_eq!(form("hosts=a&hosts=b"), json!({"hosts": ["a", "b"]}));
    assert_eq!(form("hosts=a"), json!({"hosts": "a"}));
}

#[test]
fn index_gaps_and_zero_give_objects_keyed_by_index() {
    // spec: decode_arg("x[2]", "a") is { x = { nil, "a" } }, not a sequence.
    assert_eq!(form("x[2]=a"), json!({"x": {"2": "a"}}));
    assert_eq!(form("x[0]=a"), json!({"x": {"0": "a"}}));
    assert_eq!(form("x[1000000]=a"), json!({"x": {"1000000": "a"}}));
}

#[test]
fn bracket_keys_build_maps() {
    assert_eq!(
        form("headers[x-foo]=bar&headers[x-baz]=qux"),
        json!({"headers": {"x-foo": "bar", "x-baz": "qux"}})
    );
    assert_eq!(
        form("config.headers.x-foo[]=bar"),
        json!({"config": {"headers": {"x-foo": ["bar"]}}})
    );
}

#[test]
fn dots_inside_brackets_belong_to_the_key() {
    // spec "decodes complex nested parameters": a.b.c[test.key].
    assert_eq!(
        form("a.b.c[test.key]=d&a.b.c[test.key]=e"),
        json!({"a": {"b": {"c": {"test.key": ["d", "e"]}}}})
    );
    assert_eq!(
        form("a[x.y].nested=ww"),
        json!({"a": {"x.y": {"nested": "ww"}}})
    );
}

#[test]
fn double_encoded_brackets_count_as_brackets() {
    // spec: "a%5Bescaped_k_1%5D", "a%5Bescaped%5B_k_4%5D" (shortest match).
    assert_eq!(
        form("a%255Bescaped_k_1%255D=bar&a%255bx%255d=y"),
        json!({"a": {"escaped_k_1": "bar", "x": "y"}})
    );
    assert_eq!(
        form("a%255Bescaped%255B_k_4%255D=vvv"),
        json!({"a": {"escaped%5B_k_4": "vvv"}})
    );
    assert_eq!(
        form("key%255B5%255D%255B1%255D=v"),
        json!({"key": {"5": ["v"]}})
    );
}

#[test]
fn nested_brackets_build_nested_arrays_and_maps() {
    // spec "decodes multidimensional arrays and maps".
    assert_eq!(form("key[][]=value"), json!({"key": [["value"]]}));
    assert_eq!(form("x[1][1]=a"), json!({"x": [["a"]]}));
    assert_eq!(
        form("key[foo][bar].key=value"),
        json!({"key": {"foo": {"bar": {"key": "value"}}}})
    );
    assert_eq!(
        form("x.r[1].s[a][2].t[b].u=a"),
        json!({"x": {"r": [{"s": {"a": {"2": {"t": {"b": {"u": "a"}}}}}}]}})
    );
}

#[test]
fn append_bracket_inside_a_name_is_position_one() {
    // spec: decode_map_array_arg("x[][a]", "a") is { x = { [1] = { a = "a" } } }.
    assert_eq!(form("x[][a]=a"), json!({"x": [{"a": "a"}]}));
}

#[test]
fn append_bracket_before_a_dot_nests_into_the_array_itself() {
    // nest_path returns the array table for a trailing `[]` given `{}`, so `.bar` lands in it.
    assert_eq!(form("foo[].bar=1"), json!({"foo": {"bar": "1"}}));
}

#[test]
fn leading_brackets_stay_in_the_parameter_name() {
    // spec: decode{ ["[5][1][4].key"] = "value" } is { ["[5]"] = {{ [4] = { key = "value" } }} }.
    assert_eq!(
        form("[5][1][4].key=value"),
        json!({"[5]": [{"4": {"key": "value"}}]})
    );
}

#[test]
fn unclosed_bracket_is_a_plain_key() {
    assert_eq!(form("foo[bar=1"), json!({"foo[bar": "1"}));
}

#[test]
fn long_runs_of_unclosed_brackets_decode_in_linear_time() {
    // Quadratic scanning would take minutes here; the name stays one literal key.
    let name = format!("a{}", "[".repeat(200_000));
    assert_eq!(form(&format!("{name}=x")), json!({ name: "x" }));
    let name = format!("a{}]", "[".repeat(200_000));
    assert_eq!(
        form(&format!("{name}=x"))["a"].as_object().map(|m| m.len()),
        Some(1)
    );
}

#[test]
fn empty_dot_segments_are_skipped() {
    assert_eq!(form("a..b=1"), json!({"a": {"b": "1"}}));
}

#[test]
fn leading_or_trailing_dot_keeps_the_name_whole() {
    // Kong files these under the key `name` (a typo in decode_arg); kept literal here.
    assert_eq!(form(".a=1&b.=2"), json!({".a": "1", "b.": "2"}));
}

#[test]
fn literal_brackets_keep_map_names_whole_but_still_index_arrays() {
    // decode_map_array_arg: maps only for POST, PUT and PATCH.
    let pairs = || {
        [
            ("tags[contains]".to_string(), "x".to_string()),
            ("a[1]".into(), "y".into()),
            ("b.c[d]".into(), "z".into()),
        ]
    };
    assert_eq!(
        nest_with(pairs(), Brackets::Literal),
        json!({"tags[contains]": "x", "a": ["y"], "b": {"c[d]": "z"}})
    );
    assert_eq!(
        nest_with(pairs(), Brackets::Map),
        json!({"tags": {"contains": "x"}, "a": ["y"], "b": {"c": {"d": "z"}}})
    );
    assert_eq!(
        Brackets::for_method(&axum::http::Method::GET),
        Brackets::Literal
    );
    assert_eq!(
        Brackets::for_method(&axum::http::Method::PATCH),
        Brackets::Map
    );
}

#[test]
fn deeper_than_the_nesting_limit_stays_one_key() {
    let deep = format!("a{}", "[1]".repeat(MAX_NESTING));
    let value = form(&format!("{deep}=x"));
    assert_eq!(value, json!({ deep: "x" }));

    let fits = format!("a{}", "[1]".repeat(MAX_NESTING - 1));
    assert!(form(&format!("{fits}=x"))["a"].is_array());
}

// --- Merging names (arguments.lua `combine`) ---

#[test]
fn scalars_meeting_at_one_place_become_an_array() {
    // spec "decodes different array representations" (second half): a[]=3, a[1]=4,
    // a[2]={5,6} gives { { "3", "4" }, { "5", "6" } }.
    assert_eq!(
        form("a[]=3&a[1]=4&a[2]=5&a[2]=6"),
        json!({"a": [["3", "4"], ["5", "6"]]})
    );
    // First half: a={1,2}, a[]=3, a[1]=4 gives { { "1", "3", "4" }, "2" }.
    assert_eq!(
        form("a=1&a=2&a[]=3&a[1]=4"),
        json!({"a": [["1", "3", "4"], "2"]})
    );
}

#[test]
fn indexed_elements_merge_with_their_fields() {
    // spec "decodes complex nested parameters combinations".
    let value = form(
        "a[1]=a&a[1].cat=tommy&a[2]=b1&a[2]=b2&a[2].dog=jake&a[one]=a&a[one].cat=tommy\
         &a[3].cat=tommy&a[3].cat=the&a[3].cat=cat",
    );
    assert_eq!(
        value,
        json!({"a": {
            "1": {"1": "a", "cat": "tommy"},
            "2": {"1": "b1", "2": "b2", "dog": "jake"},
            "one": {"1": "a", "cat": "tommy"},
            "3": {"cat": ["tommy", "the", "cat"]}
        }})
    );
}

#[test]
fn spec_monster_combines_recursively() {
    // spec "merges arguments together, creating arrays when finding repeated names,
    // recursively", fed as the names that decode to its pieces.
    let value = form(
        "a[99]=wayne&a[1]=first&a.b.c[]=true&a[]=a&a[]=b&a[]=c&a.b.c.d=&c=test\
         &a=1&a=2&a=3",
    );
    assert_eq!(
        value,
        json!({
            "a": {
                "99": "wayne",
                "1": ["first", "a", "1"],
                "b": {"c": {"1": "true", "d": ""}},
                "2": ["b", "2"],
                "3": ["c", "3"]
            },
            "c": "test"
        })
    );
}

// --- Coercion (arguments.lua `infer_value`) ---

fn person() -> Expect {
    // spec "infers every field using the schema".
    Expect::record([
        ("name", Expect::String),
        ("age", Expect::Number),
        ("has_license", Expect::Boolean),
        ("aliases", Expect::array(Expect::String)),
        ("comments", Expect::String),
    ])
}

#[test]
fn coerces_every_field_the_schema_knows() {
    let value = form("name=peter&age=45&has_license=true&aliases=peta&comments=");
    assert_eq!(
        coerced(value, &person()),
        json!({
            "name": "peter",
            "age": 45,
            "has_license": true,
            "aliases": ["peta"],
            "comments": null
        })
    );
    // spec "infers values when provided with a schema": aliases[]=peta.
    let value = form("aliases[]=peta");
    assert_eq!(coerced(value, &person()), json!({"aliases": ["peta"]}));
}

#[test]
fn numbers_follow_lua_tonumber() {
    let expect = Expect::record([("n", Expect::Number), ("i", Expect::Integer)]);
    let cases = [
        ("2", json!(2)),
        ("2.5", json!(2.5)),
        (" 5 ", json!(5)),
        ("+5", json!(5)),
        ("-3", json!(-3)),
        ("1e3", json!(1000)),
        ("0x10", json!(16)),
        (".5", json!(0.5)),
        ("9007199254740993", json!(9_007_199_254_740_993_i64)),
        ("abc", json!("abc")),
        ("inf", json!("inf")),
        ("nan", json!("nan")),
        ("1_000", json!("1_000")),
        ("0x", json!("0x")),
    ];
    for (text, expected) in cases {
        let value = coerced(json!({"n": text, "i": text}), &expect);
        assert_eq!(value, json!({"n": expected, "i": expected}), "{text:?}");
    }
}

#[test]
fn integers_are_not_rounded() {
    // spec: infer_value("2.5", { type = "integer" }) is 2.5.
    assert_eq!(
        coerced(
            json!({"i": "2.5"}),
            &Expect::record([("i", Expect::Integer)])
        ),
        json!({"i": 2.5})
    );
}

#[test]
fn booleans_are_exactly_true_or_false() {
    let expect = Expect::record([("a", Expect::Boolean), ("b", Expect::Boolean)]);
    assert_eq!(
        coerced(json!({"a": "false", "b": "TRUE"}), &expect),
        json!({"a": false, "b": "TRUE"})
    );
    // A bare form key (`?b`) is already true.
    assert_eq!(coerced(form("b"), &expect), json!({"b": true}));
}

#[test]
fn empty_string_clears_any_known_field() {
    // spec "infers nulls from empty strings".
    let expect = Expect::record([
        ("s", Expect::String),
        ("n", Expect::Integer),
        ("b", Expect::Boolean),
        ("arr", Expect::array(Expect::String)),
        ("m", Expect::map(Expect::String)),
        ("r", Expect::record([("x", Expect::String)])),
        ("any", Expect::Any),
    ]);
    let value = form("s=&n=&b=&arr=&m=&r=&any=&unknown=");
    assert_eq!(
        coerced(value, &expect),
        json!({
            "s": null, "n": null, "b": null, "arr": null, "m": null, "r": null, "any": null,
            "unknown": ""
        })
    );
}

#[test]
fn empty_append_element_is_a_null_element() {
    let expect = Expect::record([("paths", Expect::array(Expect::String))]);
    assert_eq!(coerced(form("paths[]="), &expect), json!({"paths": [null]}));
}

#[test]
fn single_value_becomes_a_one_element_array() {
    // spec "infers arrays and sets".
    let expect = Expect::record([
        ("hosts", Expect::array(Expect::String)),
        ("ports", Expect::array(Expect::Integer)),
    ]);
    assert_eq!(
        coerced(form("hosts=a&ports=2"), &expect),
        json!({"hosts": ["a"], "ports": [2]})
    );
    assert_eq!(
        coerced(form("hosts=a&hosts=b&ports[]=1&ports[]=x"), &expect),
        json!({"hosts": ["a", "b"], "ports": [1, "x"]})
    );
}

#[test]
fn array_with_gaps_is_left_for_validation() {
    let expect = Expect::record([("paths", Expect::array(Expect::String))]);
    assert_eq!(
        coerced(form("paths[2]=/b"), &expect),
        json!({"paths": {"2": "/b"}})
    );
}

#[test]
fn records_and_maps_coerce_what_they_hold() {
    // spec "infers maps" and "infers records".
    let expect = Expect::record([
        (
            "config",
            Expect::record([
                ("minute", Expect::Integer),
                ("limits", Expect::map(Expect::Number)),
                ("nested", Expect::record([("on", Expect::Boolean)])),
            ]),
        ),
        ("service", Expect::record([("id", Expect::String)])),
    ]);
    let value = form(
        "config.minute=5&config.limits[a]=1.5&config.limits.b=2&config.nested.on=true\
         &config.other=7&service.id=",
    );
    assert_eq!(
        coerced(value, &expect),
        json!({
            "config": {
                "minute": 5,
                "limits": {"a": 1.5, "b": 2},
                "nested": {"on": true},
                "other": "7"
            },
            "service": {"id": null}
        })
    );
}

#[test]
fn shapes_that_do_not_fit_are_left_alone() {
    let expect = Expect::record([
        ("r", Expect::record([("x", Expect::Integer)])),
        ("m", Expect::map(Expect::Integer)),
        ("foreign", Expect::record([("id", Expect::String)])),
    ]);
    assert_eq!(
        coerced(form("r[]=1&m=5&foreign=abc"), &expect),
        json!({"r": ["1"], "m": "5", "foreign": "abc"})
    );
}

#[test]
fn schema_fields_convert_to_expectations() {
    let config = Field::record(vec![
        ("minute", Field::integer()),
        ("ratio", Field::number()),
        ("hide", Field::boolean()),
        ("names", Field::set(Field::string())),
        ("limits", Field::map(Field::string(), Field::integer())),
        ("consumer", Field::foreign("consumers")),
    ]);
    let expect = Expect::record([("config", Expect::from(&config))]);
    let value = form(
        "config.minute=5&config.ratio=0.5&config.hide=false&config.names=a\
         &config.limits.x=3&config.consumer.id=",
    );
    assert_eq!(
        coerced(value, &expect),
        json!({"config": {
            "minute": 5,
            "ratio": 0.5,
            "hide": false,
            "names": ["a"],
            "limits": {"x": 3},
            "consumer": {"id": null}
        }})
    );
}
