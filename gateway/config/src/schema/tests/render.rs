//! `GET /schemas/plugins/{name}` rendering.

use serde_json::{Value, json};

use super::key_auth;
use crate::schema::{ALL_PROTOCOLS, EntityCheck, Field, HTTP_PROTOCOLS, Match, Schema};

#[test]
fn key_auth_renders_like_kong() {
    let expected = json!({
        "fields": [
            {"consumer": {
                "type": "foreign",
                "reference": "consumers",
                "eq": null,
                "description": "Custom type for representing a foreign key with a null value allowed.",
            }},
            {"protocols": {
                "type": "set",
                "required": true,
                "default": ["grpc", "grpcs", "http", "https"],
                "elements": {"type": "string", "one_of": ["grpc", "grpcs", "http", "https"]},
                "description": "A set of strings representing HTTP protocols.",
            }},
            {"config": {
                "type": "record",
                "required": true,
                "fields": [
                    {"key_names": {
                        "type": "array", "required": true, "default": ["apikey"],
                        "elements": {"type": "string"},
                    }},
                    {"hide_credentials": {"type": "boolean", "required": true, "default": false}},
                    {"anonymous": {"type": "string"}},
                    {"key_in_header": {"type": "boolean", "required": true, "default": true}},
                    {"key_in_query": {"type": "boolean", "required": true, "default": true}},
                    {"key_in_body": {"type": "boolean", "required": true, "default": false}},
                    {"run_on_preflight": {"type": "boolean", "required": true, "default": true}},
                    {"realm": {"type": "string", "required": false}},
                ],
            }},
        ],
        "entity_checks": [],
    });
    assert_eq!(key_auth().to_kong_json(), expected);
}

#[test]
fn fields_and_entity_checks_are_arrays_in_declaration_order() {
    let body = serde_json::to_string(&key_auth().to_kong_json()).expect("serializes");
    assert!(body.contains(r#""entity_checks":[]"#), "{body}");
    assert!(!body.contains(r#""fields":{"#), "{body}");
    let names: Vec<String> = key_auth().to_kong_json()["fields"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|f| f.as_object()?.keys().next().cloned())
        .collect();
    assert_eq!(names, ["consumer", "protocols", "config"]);
}

#[test]
fn all_protocols_render_as_typedefs_protocols() {
    let s = Schema::new("x", Field::record(vec![])).protocols(HTTP_PROTOCOLS, ALL_PROTOCOLS);
    let body = s.to_kong_json();
    assert_eq!(body["fields"].as_array().expect("array").len(), 2);
    assert_eq!(
        body["fields"][0]["protocols"],
        json!({
            "type": "set",
            "required": true,
            "default": ["grpc", "grpcs", "http", "https"],
            "elements": {
                "type": "string",
                "one_of": ["grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough", "udp"],
                "description": "A string representing a protocol, such as HTTP or HTTPS.",
            },
            "description": "A set of strings representing protocols.",
        })
    );
}

#[test]
fn scope_restrictions_render_in_kong_order() {
    let s = Schema::new("acme", Field::record(vec![]))
        .no_route()
        .no_service()
        .no_consumer();
    let body = s.to_kong_json();
    let names: Vec<&String> = body["fields"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|f| f.as_object()?.keys().next())
        .collect();
    assert_eq!(
        names,
        ["consumer", "service", "route", "protocols", "config"]
    );
    assert_eq!(
        body["fields"][2]["route"],
        json!({
            "type": "foreign", "reference": "routes", "eq": null,
            "description": "A reference to the 'routes' table with a null value allowed.",
        })
    );
}

fn even(_: &Value) -> Result<(), String> {
    Ok(())
}

fn sample() -> Schema {
    let nested = Field::record(vec![
        (
            "port",
            Field::integer().between(0, 65535).default(json!(6379)),
        ),
        ("ratio", Field::number().between(0.0, 1.0).gt(0.5)),
    ])
    .with_check(EntityCheck::AtLeastOneOf(vec!["port", "ratio"]));
    Schema::new(
        "sample",
        Field::record(vec![
            ("redis", nested),
            (
                "rules",
                Field::array(Field::record(vec![
                    ("name", Field::string().len_min(0).matches("^[a-z]+$")),
                    ("inner", Field::record(vec![])),
                ])),
            ),
            (
                "headers",
                Field::map(Field::string(), Field::set(Field::string().uuid())),
            ),
            (
                "secret",
                Field::string()
                    .referenceable()
                    .encrypted()
                    .custom_validator(even)
                    .describe("A secret."),
            ),
            ("optional", Field::record(vec![]).optional()),
        ]),
    )
    .with_check(EntityCheck::conditional(
        "config.redis.port",
        Match::gt(1000),
        "config.secret",
        Match::required(),
    ))
}

#[test]
fn nested_shapes_rules_and_checks_render() {
    let config = &sample().to_kong_json()["fields"][1]["config"];
    assert_eq!(
        config["fields"][0]["redis"],
        json!({
            "type": "record",
            "required": true,
            "fields": [
                {"port": {"type": "integer", "default": 6379, "between": [0, 65535]}},
                {"ratio": {"type": "number", "gt": 0.5, "between": [0, 1]}},
            ],
            "entity_checks": [{"at_least_one_of": ["port", "ratio"]}],
        })
    );
    // Records inside arrays are not made required.
    assert_eq!(
        config["fields"][1]["rules"],
        json!({
            "type": "array",
            "elements": {"type": "record", "fields": [
                {"name": {"type": "string", "len_min": 0, "match": "^[a-z]+$"}},
                {"inner": {"type": "record", "fields": []}},
            ]},
        })
    );
    assert_eq!(
        config["fields"][2]["headers"],
        json!({
            "type": "map",
            "keys": {"type": "string"},
            "values": {"type": "set", "elements": {"type": "string", "uuid": true}},
        })
    );
    // The custom validator is a function: not rendered.
    assert_eq!(
        config["fields"][3]["secret"],
        json!({
            "type": "string", "referenceable": true, "encrypted": true,
            "description": "A secret.",
        })
    );
    assert_eq!(
        config["fields"][4]["optional"],
        json!({"type": "record", "required": false, "fields": []})
    );
}

#[test]
fn plugin_level_checks_render_at_the_top() {
    assert_eq!(
        sample().to_kong_json()["entity_checks"],
        json!([{"conditional": {
            "if_field": "config.redis.port",
            "if_match": {"gt": 1000},
            "then_field": "config.secret",
            "then_match": {"required": true},
        }}])
    );
}

#[test]
fn every_check_kind_renders_under_its_kong_name() {
    fn ok(_: &serde_json::Map<String, Value>) -> Result<(), (Option<String>, String)> {
        Ok(())
    }
    let checks = vec![
        EntityCheck::OnlyOneOf(vec!["a", "b"]),
        EntityCheck::Distinct(vec!["a", "b"]),
        EntityCheck::MutuallyRequired(vec!["a", "b"]),
        EntityCheck::MutuallyExclusive(vec!["a", "b"]),
        EntityCheck::MutuallyExclusiveSets {
            set1: vec!["a"],
            set2: vec!["b"],
        },
        EntityCheck::ConditionalAtLeastOneOf {
            if_field: "a",
            if_match: Match::one_of(&["x"]),
            then_at_least_one_of: vec!["b"],
            then_err: Some("need %s"),
            else_match: None,
            else_then_at_least_one_of: vec![],
            else_then_err: None,
        },
        EntityCheck::Conditional {
            if_field: "a",
            if_match: Match::eq(json!("x")).and_required(),
            then_field: "b",
            then_match: Match::not_one_of(&["y"]),
            then_err: Some("bad"),
        },
        EntityCheck::Custom {
            fields: vec!["a"],
            check: ok,
        },
    ];
    let mut record = Field::record(vec![("a", Field::string()), ("b", Field::string())]);
    record.entity_checks = checks;
    let s = Schema::new("x", record);
    assert_eq!(
        s.config_to_kong_json(),
        json!({
            "fields": [{"a": {"type": "string"}}, {"b": {"type": "string"}}],
            "entity_checks": [
                {"only_one_of": ["a", "b"]},
                {"distinct": ["a", "b"]},
                {"mutually_required": ["a", "b"]},
                {"mutually_exclusive": ["a", "b"]},
                {"mutually_exclusive_sets": {"set1": ["a"], "set2": ["b"]}},
                {"conditional_at_least_one_of": {
                    "if_field": "a", "if_match": {"one_of": ["x"]},
                    "then_at_least_one_of": ["b"], "then_err": "need %s",
                }},
                {"conditional": {
                    "if_field": "a", "if_match": {"required": true, "eq": "x"},
                    "then_field": "b", "then_match": {"not_one_of": ["y"]}, "then_err": "bad",
                }},
                {"custom_entity_check": {"field_sources": ["a"]}},
            ],
        })
    );
}

#[test]
fn config_schema_alone_for_the_deprecated_endpoint() {
    let body = key_auth().config_to_kong_json();
    assert_eq!(body["entity_checks"], json!([]));
    assert_eq!(body["fields"].as_array().expect("array").len(), 8);
    assert_eq!(body["fields"][0]["key_names"]["default"], json!(["apikey"]));
}
