//! Kong's `GET /schemas/{entity}` bodies for the entities gangway stores.
//!
//! Kong answers with `api_helpers.schema_to_jsonable` of the loaded entity schema
//! (`kong/api/routes/kong.lua`): only `fields` and `entity_checks` are kept (name, primary key,
//! cache key, `ttl`, `shorthand_fields`, `transformations` and the like are not output), every
//! function (`custom_validator`, a check's `fn`, a shorthand's `func`) is dropped, and foreign
//! fields lose the referenced `schema`. The schema is the one `Entity.new`
//! (`kong/db/schema/entity.lua`) produced: typedefs (`kong/db/schema/typedefs.lua`) are expanded
//! with the field's own attributes winning, and records without an explicit `required` become
//! `required: true`, down through nested records. Routes follow the default
//! `router_flavor = traditional_compatible`: `snis` elements are wildcard hosts, the route
//! validation check is present, and `expression` / `priority` (expressions flavor only) are not.
//!
//! What is rendered is the schema as loaded. Kong's validator later sets `len_min = 1` on a
//! string field the first time it checks a value there (`kong/db/schema/init.lua`), so a
//! long-running Kong may show that extra attribute; a freshly started one does not.

use serde_json::{Map, Value, json};

use super::{ALL_PROTOCOLS, HTTP_PROTOCOLS};

/// The names [`entity_schema_json`] knows, in Kong's `CORE_ENTITIES` order, then the key-auth
/// and acl plugin entities.
pub const ENTITY_SCHEMAS: &[&str] = &[
    "consumers",
    "certificates",
    "services",
    "routes",
    "snis",
    "upstreams",
    "targets",
    "plugins",
    "tags",
    "ca_certificates",
    "keyauth_credentials",
    "acls",
];

/// Kong's `GET /schemas/{name}` body for an entity gangway stores, or `None` for an unknown name.
pub fn entity_schema_json(name: &str) -> Option<Value> {
    let (fields, entity_checks) = match name {
        "services" => (services(), services_checks()),
        "routes" => (routes(), routes_checks()),
        "consumers" => (
            consumers(),
            vec![single("at_least_one_of", json!(["custom_id", "username"]))],
        ),
        "plugins" => (plugins(), Vec::new()),
        "upstreams" => (upstreams(), upstreams_checks()),
        "targets" => (targets(), Vec::new()),
        "certificates" => (certificates(), certificates_checks()),
        "snis" => (snis(), Vec::new()),
        "ca_certificates" => (ca_certificates(), vec![custom_check(&["cert"])]),
        "tags" => (tags_entity(), Vec::new()),
        "keyauth_credentials" => (keyauth_credentials(), Vec::new()),
        "acls" => (acls(), Vec::new()),
        _ => return None,
    };
    Some(json!({ "fields": fields, "entity_checks": entity_checks }))
}

/// `{name: value}`: one element of a `fields` or `entity_checks` array.
fn single(name: &str, value: Value) -> Value {
    let mut m = Map::new();
    m.insert(name.to_string(), value);
    Value::Object(m)
}

/// A typedef applied with overrides: `extra`'s keys win, as in Kong's `Schema.define` call.
fn with(base: Value, extra: Value) -> Value {
    let (Value::Object(mut m), Value::Object(extra)) = (base, extra) else {
        unreachable!("typedefs and their overrides are objects")
    };
    m.extend(extra);
    Value::Object(m)
}

/// A `conditional` entity check.
fn conditional(if_field: &str, if_match: Value, then_field: &str, then_match: Value) -> Value {
    single(
        "conditional",
        json!({
            "if_field": if_field,
            "if_match": if_match,
            "then_field": then_field,
            "then_match": then_match,
        }),
    )
}

/// A `custom_entity_check`: its `fn` is dropped, `field_sources` stays.
fn custom_check(field_sources: &[&str]) -> Value {
    single(
        "custom_entity_check",
        json!({ "field_sources": field_sources }),
    )
}

// Typedefs (`kong/db/schema/typedefs.lua`), less their `custom_validator` functions.

fn uuid() -> Value {
    json!({
        "type": "string",
        "uuid": true,
        "auto": true,
        "description": "A string representing a UUID (universally unique identifier).",
    })
}

fn auto_timestamp_s() -> Value {
    json!({
        "type": "integer",
        "timestamp": true,
        "auto": true,
        "description": "An integer representing an automatic Unix timestamp in seconds.",
    })
}

fn auto_timestamp_ms() -> Value {
    json!({
        "type": "number",
        "timestamp": true,
        "auto": true,
        "description": "A number representing an automatic Unix timestamp in milliseconds.",
    })
}

fn utf8_name() -> Value {
    json!({
        "type": "string",
        "unique": true,
        "description": "A unique string representing a UTF-8 encoded name.",
    })
}

fn tag() -> Value {
    json!({
        "type": "string",
        "required": true,
        "description": "A string representing a tag.",
    })
}

fn tags() -> Value {
    json!({
        "type": "set",
        "elements": tag(),
        "description": "A set of strings representing tags.",
    })
}

fn protocol() -> Value {
    json!({
        "type": "string",
        "one_of": ALL_PROTOCOLS,
        "description": "A string representing a protocol, such as HTTP or HTTPS.",
    })
}

fn host() -> Value {
    json!({
        "type": "string",
        "description": "A string representing a host name, such as example.com.",
    })
}

fn host_with_optional_port() -> Value {
    json!({
        "type": "string",
        "description": "A string representing a host name with an optional port number, such as example.com or example.com:8080.",
    })
}

fn wildcard_host() -> Value {
    json!({
        "type": "string",
        "description": "A string representing a wildcard host name, such as *.example.com.",
    })
}

fn ip_or_cidr() -> Value {
    json!({
        "type": "string",
        "description": "A string representing an IP address or CIDR block, such as 192.168.1.1 or 192.168.0.0/16.",
    })
}

fn port() -> Value {
    json!({
        "type": "integer",
        "between": [0, 65535],
        "description": "An integer representing a port number between 0 and 65535, inclusive.",
    })
}

fn path() -> Value {
    json!({
        "type": "string",
        "starts_with": "/",
        "match_none": [{ "pattern": "//", "err": "must not have empty segments" }],
        "description": "A string representing a URL path, such as /path/to/resource. Must start with a forward slash (/) and must not contain empty segments (i.e., two consecutive forward slashes).",
    })
}

fn header_name() -> Value {
    json!({
        "type": "string",
        "description": "A string representing an HTTP header name.",
    })
}

fn headers() -> Value {
    json!({
        "type": "map",
        "keys": header_name(),
        "values": { "type": "array", "elements": { "type": "string" } },
        "description": "A map of header names to arrays of header values.",
    })
}

fn sni() -> Value {
    json!({
        "type": "string",
        "description": "A string representing an SNI (server name indication) value for TLS.",
    })
}

fn certificate() -> Value {
    json!({ "type": "string", "description": "A string representing a certificate." })
}

fn key() -> Value {
    json!({ "type": "string", "description": "A string representing a key." })
}

/// `typedefs.sources` / `typedefs.destinations`: a set of `{ip, port}` records. The element
/// record is not a top-level field, so `Entity.new` leaves it without `required`.
fn ip_port_set(description: &str) -> Value {
    json!({
        "type": "set",
        "elements": {
            "type": "record",
            "fields": [{ "ip": ip_or_cidr() }, { "port": port() }],
            "entity_checks": [{ "at_least_one_of": ["ip", "port"] }],
        },
        "description": description,
    })
}

/// A field of `type = "foreign"`; Admin API strips its `schema`.
fn foreign(reference: &str, description: Option<&str>, extra: Value) -> Value {
    let mut m = json!({ "type": "foreign", "reference": reference });
    if let Some(description) = description {
        m["description"] = description.into();
    }
    with(m, extra)
}

/// The `consumer` of a credential-like plugin entity (key-auth, acl `daos.lua`).
fn credential_consumer() -> Value {
    foreign(
        "consumers",
        None,
        json!({ "required": true, "on_delete": "cascade" }),
    )
}

// `kong/db/schema/entities/services.lua`

fn services() -> Vec<Value> {
    // `nonzero_timeout` is integer 1..2^31-2.
    let timeout = json!({ "type": "integer", "between": [1, 2_147_483_646], "default": 60000 });
    vec![
        single("id", uuid()),
        single("created_at", auto_timestamp_s()),
        single("updated_at", auto_timestamp_s()),
        single("name", utf8_name()),
        single(
            "retries",
            json!({
                "type": "integer",
                "default": 5,
                "between": [0, 32767],
                "description": "The number of retries to execute upon failure to proxy.",
            }),
        ),
        single(
            "protocol",
            with(protocol(), json!({ "required": true, "default": "http" })),
        ),
        single("host", with(host(), json!({ "required": true }))),
        single(
            "port",
            with(port(), json!({ "required": true, "default": 80 })),
        ),
        single("path", path()),
        single("connect_timeout", timeout.clone()),
        single("write_timeout", timeout.clone()),
        single("read_timeout", timeout),
        single("tags", tags()),
        single(
            "client_certificate",
            foreign(
                "certificates",
                Some(
                    "Certificate to be used as client certificate while TLS handshaking to the upstream server.",
                ),
                json!({}),
            ),
        ),
        single(
            "tls_verify",
            json!({
                "type": "boolean",
                "description": "Whether to enable verification of upstream server TLS certificate. If not set, the global level config `proxy_ssl_verify` will be used.",
            }),
        ),
        single(
            "tls_verify_depth",
            json!({
                "type": "integer",
                "default": null,
                "between": [0, 64],
                "description": "Maximum depth of chain while verifying Upstream server's TLS certificate.",
            }),
        ),
        single(
            "ca_certificates",
            json!({
                "type": "array",
                "elements": { "type": "string", "uuid": true },
                "description": "Array of CA Certificate object UUIDs that are used to build the trust store while verifying upstream server's TLS certificate.",
            }),
        ),
        single(
            "enabled",
            json!({
                "type": "boolean",
                "required": true,
                "default": true,
                "description": "Whether the Service is active. ",
            }),
        ),
    ]
}

fn services_checks() -> Vec<Value> {
    let mut checks = vec![conditional(
        "protocol",
        json!({ "one_of": ["tcp", "tls", "udp", "grpc", "grpcs"] }),
        "path",
        json!({ "eq": null }),
    )];
    for then_field in [
        "client_certificate",
        "tls_verify",
        "tls_verify_depth",
        "ca_certificates",
    ] {
        checks.push(conditional(
            "protocol",
            json!({ "not_one_of": ["https", "tls"] }),
            then_field,
            json!({ "eq": null }),
        ));
    }
    checks
}

// `kong/db/schema/entities/routes.lua` (router_flavor = traditional_compatible)

fn routes() -> Vec<Value> {
    let boolean = |default: bool, description: &str| {
        json!({
            "type": "boolean",
            "required": true,
            "default": default,
            "description": description,
        })
    };
    vec![
        single("id", uuid()),
        single("created_at", auto_timestamp_s()),
        single("updated_at", auto_timestamp_s()),
        single("name", utf8_name()),
        single(
            "protocols",
            json!({
                "type": "set",
                "len_min": 1,
                "required": true,
                "elements": protocol(),
                "mutually_exclusive_subsets": [
                    ["http", "https"],
                    ["tcp", "tls", "udp"],
                    ["tls_passthrough"],
                    ["grpc", "grpcs"],
                ],
                "default": ["http", "https"],
                "description": "An array of the protocols this Route should allow.",
            }),
        ),
        single(
            "https_redirect_status_code",
            json!({
                "type": "integer",
                "one_of": [426, 301, 302, 307, 308],
                "default": 426,
                "required": true,
                "description": "The status code Kong responds with when all properties of a Route match except the protocol",
            }),
        ),
        single(
            "strip_path",
            boolean(
                true,
                "When matching a Route via one of the paths, strip the matching prefix from the upstream request URL.",
            ),
        ),
        single(
            "preserve_host",
            boolean(
                false,
                "When matching a Route via one of the hosts domain names, use the request Host header in the upstream request headers.",
            ),
        ),
        single(
            "request_buffering",
            boolean(
                true,
                "Whether to enable request body buffering or not. With HTTP 1.1.",
            ),
        ),
        single(
            "response_buffering",
            boolean(true, "Whether to enable response body buffering or not."),
        ),
        single("tags", tags()),
        single(
            "service",
            foreign(
                "services",
                Some(
                    "The Service this Route is associated to. This is where the Route proxies traffic to.",
                ),
                json!({}),
            ),
        ),
        // Only the `traditional` flavor uses `typedefs.sni` here.
        single(
            "snis",
            json!({
                "type": "set",
                "elements": wildcard_host(),
                "description": "A list of SNIs that match this Route.",
            }),
        ),
        single(
            "sources",
            ip_port_set(
                "A set of sources, each of which is a record with at least one of 'ip' or 'port'.",
            ),
        ),
        single(
            "destinations",
            ip_port_set(
                "A set of destinations, each of which is a record with at least one of 'ip' or 'port'.",
            ),
        ),
        single(
            "methods",
            json!({
                "type": "set",
                "elements": {
                    "type": "string",
                    "match": "^%u+$",
                    "description": "A string representing an HTTP method, such as GET, POST, PUT, or DELETE. The string must contain only uppercase letters.",
                },
                "description": "A set of strings representing HTTP methods. Each method must be a valid HTTP method.",
            }),
        ),
        single(
            "hosts",
            json!({
                "type": "array",
                "elements": {
                    "type": "string",
                    "match_all": [{
                        "pattern": "^[^*]*%*?[^*]*$",
                        "err": "invalid wildcard: must have at most one wildcard",
                    }],
                    "match_any": {
                        "patterns": ["^%*%.", "%.%*$", "^[^*]*$"],
                        "err": "invalid wildcard: must be placed at leftmost or rightmost label",
                    },
                },
                "description": "An array of strings representing hosts. A valid host is a string containing one or more labels separated by periods, with at most one wildcard label ('*')",
            }),
        ),
        single(
            "paths",
            json!({
                "type": "array",
                "elements": {
                    "type": "string",
                    "match_any": {
                        "patterns": ["^/", "^~/"],
                        "err": "should start with: / (fixed path) or ~/ (regex path)",
                    },
                    "match_none": [{ "pattern": "//", "err": "must not have empty segments" }],
                    "description": "A string representing a router path. It must start with a forward slash ('/') for a fixed path, or the sequence '~/' for a regex path. It must not have empty segments.",
                },
                "description": "An array of strings representing router paths.",
            }),
        ),
        single(
            "headers",
            with(
                headers(),
                json!({
                    "keys": with(header_name(), json!({
                        "match_none": [{
                            "pattern": "^[Hh][Oo][Ss][Tt]$",
                            "err": "cannot contain 'host' header, which must be specified in the 'hosts' attribute",
                        }],
                    })),
                }),
            ),
        ),
        single(
            "regex_priority",
            json!({
                "type": "integer",
                "default": 0,
                "description": "A number used to choose which route resolves a given request when several routes match it using regexes simultaneously.",
            }),
        ),
        single(
            "path_handling",
            json!({
                "type": "string",
                "default": "v0",
                "one_of": ["v0", "v1"],
                "description": "Controls how the Service path, Route path and requested path are combined when sending a request to the upstream.",
            }),
        ),
    ]
}

fn routes_checks() -> Vec<Value> {
    vec![
        single(
            "conditional",
            json!({
                "if_field": "protocols",
                "if_match": {
                    "elements": {
                        "type": "string",
                        "not_one_of": ["grpcs", "https", "tls", "tls_passthrough"],
                    },
                },
                "then_field": "snis",
                "then_match": { "len_eq": 0 },
                "then_err": "'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls' or 'tls_passthrough'",
            }),
        ),
        // The path_handling=v1 deprecation warning.
        custom_check(&["path_handling"]),
        // The route validation of the traditional_compatible and expressions flavors.
        single(
            "custom_entity_check",
            json!({
                "field_sources": [
                    "id", "protocols", "snis", "sources", "destinations", "methods", "hosts",
                    "paths", "headers", "expression", "regex_priority", "priority",
                ],
                "run_with_missing_fields": true,
            }),
        ),
    ]
}

// `kong/db/schema/entities/consumers.lua`

fn consumers() -> Vec<Value> {
    vec![
        single("id", uuid()),
        single("created_at", auto_timestamp_s()),
        single("updated_at", auto_timestamp_s()),
        single(
            "username",
            json!({
                "type": "string",
                "unique": true,
                "description": "The unique username of the Consumer. You must send at least one of username or custom_id with the request.",
            }),
        ),
        single(
            "custom_id",
            json!({
                "type": "string",
                "unique": true,
                "description": "Stores the existing unique ID of the consumer. You must send at least one of username or custom_id with the request.",
            }),
        ),
        single("tags", tags()),
    ]
}

// `kong/db/schema/entities/plugins.lua`

fn plugins() -> Vec<Value> {
    let scope = |reference: &str, description: &str| {
        foreign(
            reference,
            Some(description),
            json!({ "default": null, "on_delete": "cascade" }),
        )
    };
    vec![
        single("id", uuid()),
        single(
            "name",
            json!({
                "type": "string",
                "required": true,
                "description": "The name of the Plugin that's going to be added.",
            }),
        ),
        single("instance_name", utf8_name()),
        single("created_at", auto_timestamp_s()),
        single("updated_at", auto_timestamp_s()),
        single(
            "route",
            scope(
                "routes",
                "If set, the plugin will only activate when receiving requests via the specified route.",
            ),
        ),
        single(
            "service",
            scope(
                "services",
                "If set, the plugin will only activate when receiving requests via one of the routes belonging to the specified service. ",
            ),
        ),
        single(
            "consumer",
            scope(
                "consumers",
                "If set, the plugin will activate only for requests where the specified has been authenticated.",
            ),
        ),
        // Abstract: no fields of its own (each plugin's subschema brings them), and
        // `Entity.new` skips abstract fields, so no `required` either.
        single(
            "config",
            json!({
                "type": "record",
                "abstract": true,
                "description": "The configuration properties for the Plugin.",
            }),
        ),
        single(
            "protocols",
            json!({
                "type": "set",
                "required": true,
                "default": HTTP_PROTOCOLS,
                "elements": protocol(),
                "description": "A set of strings representing protocols.",
            }),
        ),
        single(
            "enabled",
            json!({
                "type": "boolean",
                "required": true,
                "default": true,
                "description": "Whether the plugin is applied.",
            }),
        ),
        single("tags", tags()),
    ]
}

// `kong/db/schema/entities/upstreams.lua`

fn upstreams() -> Vec<Value> {
    let hash_on = json!({
        "type": "string",
        "default": "none",
        "one_of": ["none", "consumer", "ip", "header", "cookie", "path", "query_arg", "uri_capture"],
    });
    let simple_param = json!({ "type": "string", "len_min": 1 });
    vec![
        single("id", uuid()),
        single("created_at", auto_timestamp_s()),
        single(
            "name",
            json!({
                "type": "string",
                "required": true,
                "unique": true,
                "description": "This is a hostname, which must be equal to the host of a Service.",
            }),
        ),
        single("updated_at", auto_timestamp_s()),
        single(
            "algorithm",
            json!({
                "type": "string",
                "default": "round-robin",
                "one_of": ["consistent-hashing", "least-connections", "round-robin", "latency"],
                "description": "Which load balancing algorithm to use.",
            }),
        ),
        single("hash_on", hash_on.clone()),
        single("hash_fallback", hash_on),
        single("hash_on_header", header_name()),
        single("hash_fallback_header", header_name()),
        single(
            "hash_on_cookie",
            json!({
                "type": "string",
                "description": "The cookie name to take the value from as hash input.",
            }),
        ),
        single(
            "hash_on_cookie_path",
            with(path(), json!({ "default": "/" })),
        ),
        single("hash_on_query_arg", simple_param.clone()),
        single("hash_fallback_query_arg", simple_param.clone()),
        single("hash_on_uri_capture", simple_param.clone()),
        single("hash_fallback_uri_capture", simple_param),
        single(
            "slots",
            json!({
                "type": "integer",
                "default": 10000,
                "between": [10, 65536],
                "description": "The number of slots in the load balancer algorithm.",
            }),
        ),
        single("healthchecks", healthchecks()),
        single("tags", tags()),
        single("host_header", host_with_optional_port()),
        single(
            "client_certificate",
            foreign(
                "certificates",
                Some(
                    "If set, the certificate to be used as client certificate while TLS handshaking to the upstream server.",
                ),
                json!({}),
            ),
        ),
        single(
            "use_srv_name",
            json!({
                "type": "boolean",
                "default": false,
                "description": "If set, the balancer will use SRV hostname.",
            }),
        ),
    ]
}

/// The `healthchecks` record. Kong generates its fields by iterating a Lua hash table
/// (`gen_fields` in upstreams.lua), so its own order changes from one process to the next
/// (LuaJIT seeds its string hashes at random); this follows the order the defaults are written
/// in there, with `threshold` last as Kong appends it. Every record is `required: true`
/// (`make_records_required`); `https_sni` and `headers` have no default and `required: false`.
fn healthchecks() -> Value {
    let seconds =
        |default: u64| json!({ "type": "number", "between": [0, 65535], "default": default });
    let counter = json!({ "type": "integer", "between": [0, 255], "default": 0 });
    let statuses = |default: &[u64]| {
        json!({
            "type": "array",
            "elements": { "type": "integer", "between": [100, 999] },
            "default": default,
        })
    };
    let check_type = json!({
        "type": "string",
        "one_of": ["tcp", "http", "https", "grpc", "grpcs"],
        "default": "http",
    });
    let record = |fields: Vec<Value>, default: &Value| json!({ "type": "record", "fields": fields, "default": default, "required": true });

    let active_healthy_statuses: &[u64] = &[200, 302];
    let active_unhealthy_statuses: &[u64] = &[429, 404, 500, 501, 502, 503, 504, 505];
    let passive_healthy_statuses: &[u64] = &[
        200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 306, 307,
        308,
    ];
    let passive_unhealthy_statuses: &[u64] = &[429, 500, 503];

    let active_healthy = json!({
        "interval": 0,
        "http_statuses": active_healthy_statuses,
        "successes": 0,
    });
    let active_unhealthy = json!({
        "interval": 0,
        "http_statuses": active_unhealthy_statuses,
        "tcp_failures": 0,
        "timeouts": 0,
        "http_failures": 0,
    });
    let active_default = json!({
        "type": "http",
        "timeout": 1,
        "concurrency": 10,
        "http_path": "/",
        "https_verify_certificate": true,
        "healthy": active_healthy,
        "unhealthy": active_unhealthy,
    });
    let passive_healthy = json!({
        "http_statuses": passive_healthy_statuses,
        "successes": 0,
    });
    let passive_unhealthy = json!({
        "http_statuses": passive_unhealthy_statuses,
        "tcp_failures": 0,
        "timeouts": 0,
        "http_failures": 0,
    });
    let passive_default = json!({
        "type": "http",
        "healthy": passive_healthy,
        "unhealthy": passive_unhealthy,
    });

    let active = record(
        vec![
            single("type", check_type.clone()),
            single("timeout", seconds(1)),
            single(
                "concurrency",
                json!({ "type": "integer", "between": [1, 2_147_483_648_u64], "default": 10 }),
            ),
            single("http_path", with(path(), json!({ "default": "/" }))),
            single("https_sni", with(sni(), json!({ "required": false }))),
            single(
                "https_verify_certificate",
                json!({ "type": "boolean", "default": true, "required": true }),
            ),
            single("headers", with(headers(), json!({ "required": false }))),
            single(
                "healthy",
                record(
                    vec![
                        single("interval", seconds(0)),
                        single("http_statuses", statuses(active_healthy_statuses)),
                        single("successes", counter.clone()),
                    ],
                    &active_healthy,
                ),
            ),
            single(
                "unhealthy",
                record(
                    vec![
                        single("interval", seconds(0)),
                        single("http_statuses", statuses(active_unhealthy_statuses)),
                        single("tcp_failures", counter.clone()),
                        single("timeouts", counter.clone()),
                        single("http_failures", counter.clone()),
                    ],
                    &active_unhealthy,
                ),
            ),
        ],
        &active_default,
    );
    let passive = record(
        vec![
            single("type", check_type),
            single(
                "healthy",
                record(
                    vec![
                        single("http_statuses", statuses(passive_healthy_statuses)),
                        single("successes", counter.clone()),
                    ],
                    &passive_healthy,
                ),
            ),
            single(
                "unhealthy",
                record(
                    vec![
                        single("http_statuses", statuses(passive_unhealthy_statuses)),
                        single("tcp_failures", counter.clone()),
                        single("timeouts", counter.clone()),
                        single("http_failures", counter),
                    ],
                    &passive_unhealthy,
                ),
            ),
        ],
        &passive_default,
    );
    json!({
        "type": "record",
        "default": { "active": active_default, "passive": passive_default },
        "fields": [
            { "active": active },
            { "passive": passive },
            { "threshold": { "type": "number", "default": 0, "between": [0, 100] } },
        ],
        "required": true,
        "description": "The array of healthchecks.",
    })
}

fn upstreams_checks() -> Vec<Value> {
    let required = || json!({ "required": true });
    let only = |options: &[&str]| json!({ "one_of": options });
    let on = |field: &str, value: &str, then_field: &str, then_match: Value| {
        conditional(
            field,
            json!({ "match": format!("^{value}$") }),
            then_field,
            then_match,
        )
    };
    vec![
        on("hash_on", "header", "hash_on_header", required()),
        on(
            "hash_fallback",
            "header",
            "hash_fallback_header",
            required(),
        ),
        on("hash_on", "cookie", "hash_on_cookie", required()),
        on("hash_fallback", "cookie", "hash_on_cookie", required()),
        on("hash_on", "none", "hash_fallback", only(&["none"])),
        on("hash_on", "cookie", "hash_fallback", only(&["none"])),
        on(
            "hash_on",
            "consumer",
            "hash_fallback",
            only(&[
                "none",
                "ip",
                "header",
                "cookie",
                "path",
                "query_arg",
                "uri_capture",
            ]),
        ),
        on(
            "hash_on",
            "ip",
            "hash_fallback",
            only(&[
                "none",
                "consumer",
                "header",
                "cookie",
                "path",
                "query_arg",
                "uri_capture",
            ]),
        ),
        on(
            "hash_on",
            "path",
            "hash_fallback",
            only(&[
                "none",
                "consumer",
                "header",
                "cookie",
                "query_arg",
                "ip",
                "uri_capture",
            ]),
        ),
        single(
            "distinct",
            json!(["hash_on_header", "hash_fallback_header"]),
        ),
        on("hash_on", "query_arg", "hash_on_query_arg", required()),
        on(
            "hash_fallback",
            "query_arg",
            "hash_fallback_query_arg",
            required(),
        ),
        single(
            "distinct",
            json!(["hash_on_query_arg", "hash_fallback_query_arg"]),
        ),
        on("hash_on", "uri_capture", "hash_on_uri_capture", required()),
        on(
            "hash_fallback",
            "uri_capture",
            "hash_fallback_uri_capture",
            required(),
        ),
        single(
            "distinct",
            json!(["hash_on_uri_capture", "hash_fallback_uri_capture"]),
        ),
    ]
}

// `kong/db/schema/entities/targets.lua`

fn targets() -> Vec<Value> {
    vec![
        single("id", uuid()),
        single("created_at", auto_timestamp_ms()),
        single("updated_at", auto_timestamp_ms()),
        single(
            "upstream",
            foreign(
                "upstreams",
                Some(
                    "The unique identifier or the name of the upstream for which to update the target.",
                ),
                json!({ "required": true, "on_delete": "cascade" }),
            ),
        ),
        single(
            "target",
            json!({
                "type": "string",
                "required": true,
                "description": "The target address (ip or hostname) and port.",
            }),
        ),
        single(
            "weight",
            json!({
                "type": "integer",
                "default": 100,
                "between": [0, 65535],
                "description": "The weight this target gets within the upstream loadbalancer (0-65535).",
            }),
        ),
        single("tags", tags()),
    ]
}

// `kong/db/schema/entities/certificates.lua`

fn certificates() -> Vec<Value> {
    let secret = |typedef: Value, required: bool, encrypted: bool| {
        let mut f = with(
            typedef,
            json!({ "required": required, "referenceable": true }),
        );
        if encrypted {
            f["encrypted"] = true.into();
        }
        f
    };
    vec![
        single("id", uuid()),
        single("created_at", auto_timestamp_s()),
        single("updated_at", auto_timestamp_s()),
        single("cert", secret(certificate(), true, false)),
        single("key", secret(key(), true, true)),
        single("cert_alt", secret(certificate(), false, false)),
        single("key_alt", secret(key(), false, true)),
        single("tags", tags()),
        single(
            "snis",
            json!({
                "type": "array",
                "elements": wildcard_host(),
                "required": false,
                "transient": true,
            }),
        ),
    ]
}

fn certificates_checks() -> Vec<Value> {
    vec![
        single("mutually_required", json!(["cert_alt", "key_alt"])),
        // The key matches the certificate.
        custom_check(&["cert", "key"]),
        // The alternative key matches the alternative certificate.
        custom_check(&["cert_alt", "key_alt"]),
        // The two certificates use different key types.
        custom_check(&["cert", "cert_alt"]),
    ]
}

// `kong/db/schema/entities/snis.lua`

fn snis() -> Vec<Value> {
    vec![
        single("id", uuid()),
        single(
            "name",
            with(
                wildcard_host(),
                json!({ "required": true, "unique": true, "unique_across_ws": true }),
            ),
        ),
        single("created_at", auto_timestamp_s()),
        single("updated_at", auto_timestamp_s()),
        single("tags", tags()),
        single(
            "certificate",
            foreign(
                "certificates",
                Some(
                    "The id (a UUID) of the certificate with which to associate the SNI hostname.",
                ),
                json!({ "required": true }),
            ),
        ),
    ]
}

// `kong/db/schema/entities/ca_certificates.lua`; its `cert_digest` transformation is a
// function and is not output, nor is the check's `fn` (one PEM, CA constraint, not expired).

fn ca_certificates() -> Vec<Value> {
    vec![
        single("id", uuid()),
        single("created_at", auto_timestamp_s()),
        single("updated_at", auto_timestamp_s()),
        single("cert", with(certificate(), json!({ "required": true }))),
        single("cert_digest", json!({ "type": "string", "unique": true })),
        single("tags", tags()),
    ]
}

// `kong/db/schema/entities/tags.lua`

fn tags_entity() -> Vec<Value> {
    vec![
        single("tag", tag()),
        single(
            "entity_name",
            json!({
                "type": "string",
                "required": true,
                "description": "The name of the Kong Gateway entity being tagged.",
            }),
        ),
        single("entity_id", with(uuid(), json!({ "required": true }))),
    ]
}

// `kong/plugins/key-auth/daos.lua`

fn keyauth_credentials() -> Vec<Value> {
    vec![
        single("id", uuid()),
        single("created_at", auto_timestamp_s()),
        single("consumer", credential_consumer()),
        single(
            "key",
            json!({ "type": "string", "required": false, "unique": true, "auto": true }),
        ),
        single("tags", tags()),
    ]
}

// `kong/plugins/acl/daos.lua`

fn acls() -> Vec<Value> {
    vec![
        single("id", uuid()),
        single("created_at", auto_timestamp_s()),
        single("consumer", credential_consumer()),
        single("group", json!({ "type": "string", "required": true })),
        single("tags", tags()),
    ]
}

#[cfg(test)]
mod tests;
