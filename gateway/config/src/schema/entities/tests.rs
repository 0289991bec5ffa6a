//! `GET /schemas/{entity}` bodies, checked against the facts of Kong 3.9.3's entity schemas.

use serde_json::{Value, json};

use super::{ENTITY_SCHEMAS, entity_schema_json};

fn schema(name: &str) -> Value {
    entity_schema_json(name).unwrap_or_else(|| panic!("no schema for {name}"))
}

/// The `fields` entries of `body`, as (name, attributes).
fn fields(body: &Value) -> Vec<(String, Value)> {
    body["fields"]
        .as_array()
        .expect("fields is an array")
        .iter()
        .map(|entry| {
            let (name, attrs) = entry
                .as_object()
                .and_then(|m| m.iter().next())
                .expect("a fields entry is an object");
            (name.clone(), attrs.clone())
        })
        .collect()
}

fn field_names(name: &str) -> Vec<String> {
    fields(&schema(name)).into_iter().map(|(n, _)| n).collect()
}

fn field(entity: &str, name: &str) -> Value {
    fields(&schema(entity))
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, attrs)| attrs)
        .unwrap_or_else(|| panic!("{entity} has no field {name}"))
}

/// Every `fields` array below `value` (records, record elements) holds single-key objects.
fn assert_single_key_fields(value: &Value, at: &str) {
    match value {
        Value::Object(m) => {
            if m.get("type") == Some(&json!("record"))
                && let Some(list) = m.get("fields")
            {
                let list = list.as_array().expect("record fields are an array");
                for (i, entry) in list.iter().enumerate() {
                    let obj = entry.as_object().expect("a fields entry is an object");
                    assert_eq!(obj.len(), 1, "{at}.fields[{i}] has one key");
                }
            }
            for (k, v) in m {
                assert_single_key_fields(v, &format!("{at}.{k}"));
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                assert_single_key_fields(v, &format!("{at}[{i}]"));
            }
        }
        _ => {}
    }
}

#[test]
fn every_schema_is_fields_and_entity_checks_of_single_key_objects() {
    for name in ENTITY_SCHEMAS {
        let body = schema(name);
        let top = body.as_object().expect("body is an object");
        let mut keys: Vec<&str> = top.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["entity_checks", "fields"], "{name}");
        for list in ["fields", "entity_checks"] {
            for (i, entry) in body[list].as_array().expect("an array").iter().enumerate() {
                let obj = entry.as_object().expect("an object");
                assert_eq!(obj.len(), 1, "{name}.{list}[{i}] has one key");
            }
        }
        assert!(!fields(&body).is_empty(), "{name}");
        for (fname, attrs) in fields(&body) {
            assert!(attrs["type"].is_string(), "{name}.{fname} has a type");
        }
        assert_single_key_fields(&body, name);
    }
}

#[test]
fn unknown_names_are_none() {
    for name in [
        "not-present",
        "",
        "Services",
        "service",
        "workspaces",
        "key-auths",
    ] {
        assert_eq!(entity_schema_json(name), None, "{name}");
    }
}

#[test]
fn covers_the_stored_entities_and_tags() {
    let mut names = ENTITY_SCHEMAS.to_vec();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "acls",
            "ca_certificates",
            "certificates",
            "consumers",
            "keyauth_credentials",
            "plugins",
            "routes",
            "services",
            "snis",
            "tags",
            "targets",
            "upstreams",
        ]
    );
}

#[test]
fn field_order_follows_kong() {
    let expected: &[(&str, &[&str])] = &[
        (
            "services",
            &[
                "id",
                "created_at",
                "updated_at",
                "name",
                "retries",
                "protocol",
                "host",
                "port",
                "path",
                "connect_timeout",
                "write_timeout",
                "read_timeout",
                "tags",
                "client_certificate",
                "tls_verify",
                "tls_verify_depth",
                "ca_certificates",
                "enabled",
            ],
        ),
        (
            "routes",
            &[
                "id",
                "created_at",
                "updated_at",
                "name",
                "protocols",
                "https_redirect_status_code",
                "strip_path",
                "preserve_host",
                "request_buffering",
                "response_buffering",
                "tags",
                "service",
                "snis",
                "sources",
                "destinations",
                "methods",
                "hosts",
                "paths",
                "headers",
                "regex_priority",
                "path_handling",
            ],
        ),
        (
            "consumers",
            &[
                "id",
                "created_at",
                "updated_at",
                "username",
                "custom_id",
                "tags",
            ],
        ),
        (
            "plugins",
            &[
                "id",
                "name",
                "instance_name",
                "created_at",
                "updated_at",
                "route",
                "service",
                "consumer",
                "config",
                "protocols",
                "enabled",
                "tags",
            ],
        ),
        (
            "upstreams",
            &[
                "id",
                "created_at",
                "name",
                "updated_at",
                "algorithm",
                "hash_on",
                "hash_fallback",
                "hash_on_header",
                "hash_fallback_header",
                "hash_on_cookie",
                "hash_on_cookie_path",
                "hash_on_query_arg",
                "hash_fallback_query_arg",
                "hash_on_uri_capture",
                "hash_fallback_uri_capture",
                "slots",
                "healthchecks",
                "tags",
                "host_header",
                "client_certificate",
                "use_srv_name",
            ],
        ),
        (
            "targets",
            &[
                "id",
                "created_at",
                "updated_at",
                "upstream",
                "target",
                "weight",
                "tags",
            ],
        ),
        (
            "certificates",
            &[
                "id",
                "created_at",
                "updated_at",
                "cert",
                "key",
                "cert_alt",
                "key_alt",
                "tags",
                "snis",
            ],
        ),
        (
            "snis",
            &[
                "id",
                "name",
                "created_at",
                "updated_at",
                "tags",
                "certificate",
            ],
        ),
        (
            "ca_certificates",
            &[
                "id",
                "created_at",
                "updated_at",
                "cert",
                "cert_digest",
                "tags",
            ],
        ),
        ("tags", &["tag", "entity_name", "entity_id"]),
        (
            "keyauth_credentials",
            &["id", "created_at", "consumer", "key", "tags"],
        ),
        ("acls", &["id", "created_at", "consumer", "group", "tags"]),
    ];
    assert_eq!(expected.len(), ENTITY_SCHEMAS.len());
    for (entity, names) in expected {
        assert_eq!(field_names(entity), *names, "{entity}");
    }
}

#[test]
fn typedefs_expand_to_their_attributes() {
    assert_eq!(
        field("services", "id"),
        json!({
            "type": "string",
            "uuid": true,
            "auto": true,
            "description": "A string representing a UUID (universally unique identifier).",
        })
    );
    assert_eq!(
        field("services", "created_at"),
        json!({
            "type": "integer",
            "timestamp": true,
            "auto": true,
            "description": "An integer representing an automatic Unix timestamp in seconds.",
        })
    );
    // Targets keep millisecond timestamps.
    assert_eq!(field("targets", "updated_at")["type"], "number");
    assert_eq!(
        field("services", "port"),
        json!({
            "type": "integer",
            "between": [0, 65535],
            "required": true,
            "default": 80,
            "description": "An integer representing a port number between 0 and 65535, inclusive.",
        })
    );
    // `typedefs.host`'s custom_validator is a function: nothing of it remains.
    assert_eq!(
        field("services", "host"),
        json!({
            "type": "string",
            "required": true,
            "description": "A string representing a host name, such as example.com.",
        })
    );
    assert_eq!(
        field("services", "connect_timeout"),
        json!({ "type": "integer", "between": [1, 2_147_483_646], "default": 60000 })
    );
    assert_eq!(
        field("services", "tls_verify_depth")["default"],
        Value::Null
    );
    assert!(
        field("services", "tls_verify_depth")
            .as_object()
            .is_some_and(|m| m.contains_key("default"))
    );
    assert_eq!(
        field("services", "tags"),
        json!({
            "type": "set",
            "elements": {
                "type": "string",
                "required": true,
                "description": "A string representing a tag.",
            },
            "description": "A set of strings representing tags.",
        })
    );
}

#[test]
fn route_protocols_and_flavor() {
    let protocols = field("routes", "protocols");
    assert_eq!(protocols["default"], json!(["http", "https"]));
    assert_eq!(protocols["required"], true);
    assert_eq!(protocols["len_min"], 1);
    assert_eq!(
        protocols["elements"]["one_of"],
        json!([
            "grpc",
            "grpcs",
            "http",
            "https",
            "tcp",
            "tls",
            "tls_passthrough",
            "udp"
        ])
    );
    // expression and priority exist only under router_flavor = expressions.
    let names = field_names("routes");
    assert!(!names.iter().any(|n| n == "expression" || n == "priority"));
    // traditional_compatible: wildcard SNIs, and the route validation check.
    assert_eq!(
        field("routes", "snis")["elements"]["description"],
        "A string representing a wildcard host name, such as *.example.com."
    );
    let checks = schema("routes")["entity_checks"].clone();
    assert_eq!(checks.as_array().map(Vec::len), Some(3));
    assert_eq!(
        checks[2]["custom_entity_check"]["run_with_missing_fields"],
        true
    );
    assert!(checks[2]["custom_entity_check"].get("fn").is_none());
}

#[test]
fn credential_key_is_unique_and_auto() {
    assert_eq!(
        field("keyauth_credentials", "key"),
        json!({ "type": "string", "required": false, "unique": true, "auto": true })
    );
}

#[test]
fn foreign_fields_reference_without_schema() {
    let mut seen = 0;
    for name in ENTITY_SCHEMAS {
        for (fname, attrs) in fields(&schema(name)) {
            if attrs["type"] == "foreign" {
                seen += 1;
                assert!(attrs["reference"].is_string(), "{name}.{fname}");
                assert!(attrs.get("schema").is_none(), "{name}.{fname}");
            }
        }
    }
    // services.client_certificate, routes.service, plugins route/service/consumer,
    // upstreams.client_certificate, targets.upstream, snis.certificate, two consumers.
    assert_eq!(seen, 10);
    assert_eq!(
        field("plugins", "route"),
        json!({
            "type": "foreign",
            "reference": "routes",
            "default": null,
            "on_delete": "cascade",
            "description": "If set, the plugin will only activate when receiving requests via the specified route.",
        })
    );
}

#[test]
fn plugin_config_is_abstract() {
    assert_eq!(
        field("plugins", "config"),
        json!({
            "type": "record",
            "abstract": true,
            "description": "The configuration properties for the Plugin.",
        })
    );
    assert_eq!(
        field("plugins", "protocols")["default"],
        json!(["grpc", "grpcs", "http", "https"])
    );
}

#[test]
fn upstream_healthchecks_records_are_required_with_defaults() {
    let hc = field("upstreams", "healthchecks");
    assert_eq!(hc["required"], true);
    assert_eq!(hc["default"]["active"]["concurrency"], 10);
    assert_eq!(
        hc["default"]["passive"]["unhealthy"]["http_statuses"],
        json!([429, 500, 503])
    );
    // Fields without a default are left out of the record default.
    assert!(hc["default"]["active"].get("https_sni").is_none());
    assert!(hc["default"]["active"].get("headers").is_none());
    assert!(hc["default"].get("threshold").is_none());
    let hc_fields = fields(&hc);
    let names: Vec<&str> = hc_fields.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["active", "passive", "threshold"]);
    let active = &hc_fields[0].1;
    assert_eq!(active["required"], true);
    let active_fields = fields(active);
    let get = |n: &str| {
        active_fields
            .iter()
            .find(|(name, _)| name == n)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("active.{n}"))
    };
    assert_eq!(get("healthy")["required"], true);
    assert_eq!(get("unhealthy")["required"], true);
    assert_eq!(get("https_sni")["required"], false);
    assert_eq!(get("https_verify_certificate")["required"], true);
    assert_eq!(get("concurrency")["between"], json!([1, 2_147_483_648_u64]));
    assert_eq!(
        hc_fields[2].1,
        json!({ "type": "number", "default": 0, "between": [0, 100] })
    );
    assert_eq!(field("upstreams", "slots")["between"], json!([10, 65536]));
}

#[test]
fn functions_and_transformations_are_not_output() {
    // ca_certificates' cert_digest transformation and the checks' fn are Lua functions.
    let body = schema("ca_certificates");
    assert_eq!(
        body["entity_checks"],
        json!([{ "custom_entity_check": { "field_sources": ["cert"] } }])
    );
    for name in ENTITY_SCHEMAS {
        let text = schema(name).to_string();
        for gone in [
            "custom_validator",
            "\"fn\"",
            "func",
            "transformations",
            "shorthand_fields",
        ] {
            assert!(!text.contains(gone), "{name} has {gone}");
        }
    }
}

/// A whole body, pinned: consumers, as `schema_to_jsonable` renders Kong 3.9.3's definition.
#[test]
fn consumers_body() {
    assert_eq!(
        schema("consumers"),
        json!({
            "fields": [
                {"id": {
                    "type": "string",
                    "uuid": true,
                    "auto": true,
                    "description": "A string representing a UUID (universally unique identifier).",
                }},
                {"created_at": {
                    "type": "integer",
                    "timestamp": true,
                    "auto": true,
                    "description": "An integer representing an automatic Unix timestamp in seconds.",
                }},
                {"updated_at": {
                    "type": "integer",
                    "timestamp": true,
                    "auto": true,
                    "description": "An integer representing an automatic Unix timestamp in seconds.",
                }},
                {"username": {
                    "type": "string",
                    "unique": true,
                    "description": "The unique username of the Consumer. You must send at least one of username or custom_id with the request.",
                }},
                {"custom_id": {
                    "type": "string",
                    "unique": true,
                    "description": "Stores the existing unique ID of the consumer. You must send at least one of username or custom_id with the request.",
                }},
                {"tags": {
                    "type": "set",
                    "elements": {
                        "type": "string",
                        "required": true,
                        "description": "A string representing a tag.",
                    },
                    "description": "A set of strings representing tags.",
                }},
            ],
            "entity_checks": [{"at_least_one_of": ["custom_id", "username"]}],
        })
    );
}
