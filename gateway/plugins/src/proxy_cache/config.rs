//! proxy-cache's config: Kong's `schema.lua` and the shape `build` reads.

use serde::Deserialize;
use serde_json::json;

use super::NAME;
use gangway_config::schema::{ALL_PROTOCOLS, EntityCheck, Field, HTTP_PROTOCOLS, Schema};

/// The message for a strategy other than `memory` (Kong's open-source edition has no other;
/// `redis` is an Enterprise one).
pub(super) const MEMORY_ONLY: &str =
    "expected one of: memory (gangway supports the memory strategy only)";

/// Kong's `kong/plugins/proxy-cache/schema.lua`.
pub fn schema() -> Schema {
    let strings = || Field::array(Field::string());
    let flag = || Field::boolean().default(json!(true));
    Schema::new(
        NAME,
        Field::record(vec![
            (
                "response_code",
                Field::array(Field::integer().between(100, 900))
                    .required()
                    .default(json!([200, 301, 404]))
                    .len_min(1)
                    .describe("Upstream response status code considered cacheable."),
            ),
            (
                "request_method",
                Field::array(Field::string().one_of(&["HEAD", "GET", "POST", "PATCH", "PUT"]))
                    .required()
                    .default(json!(["GET", "HEAD"]))
                    .describe("Downstream request methods considered cacheable."),
            ),
            (
                "content_type",
                strings()
                    .required()
                    .default(json!(["text/plain", "application/json"]))
                    .describe(
                        "Upstream response content types considered cacheable. The plugin \
                         performs an **exact match** against each specified value.",
                    ),
            ),
            (
                "cache_ttl",
                Field::integer()
                    .default(json!(300))
                    .gt(0)
                    .describe("TTL, in seconds, of cache entities."),
            ),
            (
                "strategy",
                Field::string()
                    .one_of(&["memory"])
                    .required()
                    .err(MEMORY_ONLY)
                    .describe("The backing data store in which to hold cache entities."),
            ),
            (
                "cache_control",
                Field::boolean().default(json!(false)).required().describe(
                    "When enabled, respect the Cache-Control behaviors defined in RFC7234.",
                ),
            ),
            (
                "ignore_uri_case",
                Field::boolean().default(json!(false)).optional(),
            ),
            (
                "storage_ttl",
                Field::integer().describe(
                    "Number of seconds to keep resources in the storage backend. This value is \
                     independent of `cache_ttl` or resource TTLs defined by Cache-Control \
                     behaviors.",
                ),
            ),
            (
                "memory",
                Field::record(vec![(
                    "dictionary_name",
                    Field::string()
                        .required()
                        .default(json!("kong_db_cache"))
                        .describe(
                            "The name of the shared dictionary in which to hold cache entities \
                             when the memory strategy is selected. Note that this dictionary \
                             currently must be defined manually in the Kong Nginx template.",
                        ),
                )]),
            ),
            (
                "vary_query_params",
                strings().describe(
                    "Relevant query parameters considered for the cache key. If undefined, all \
                     params are taken into consideration.",
                ),
            ),
            (
                "vary_headers",
                strings().describe(
                    "Relevant headers considered for the cache key. If undefined, none of the \
                     headers are taken into consideration.",
                ),
            ),
            (
                "response_headers",
                Field::record(vec![
                    ("age", flag()),
                    ("X-Cache-Status", flag()),
                    ("X-Cache-Key", flag()),
                ])
                .describe(
                    "Caching related diagnostic headers that should be included in cached \
                     responses",
                ),
            ),
        ]),
    )
    .protocols(HTTP_PROTOCOLS, ALL_PROTOCOLS)
    // Kong's check that the shared dict exists: the names its nginx template and the
    // injected `lua_shared_dict` directives declare (settings `lua_shared_dicts`).
    .with_check(EntityCheck::Custom {
        fields: vec!["config"],
        check: |entity| {
            let config = entity.get("config");
            let strategy = config
                .and_then(|c| c.get("strategy"))
                .and_then(|s| s.as_str());
            let name = config
                .and_then(|c| c.get("memory"))
                .and_then(|m| m.get("dictionary_name"))
                .and_then(|n| n.as_str());
            match (strategy, name) {
                // An entity-level error, as Kong's custom_entity_check reports it.
                (Some("memory"), Some(name)) => {
                    super::store::check_declared(name).map_err(|e| (None, e))
                }
                _ => Ok(()),
            }
        },
    })
}

#[derive(Debug, Deserialize)]
pub(super) struct Memory {
    pub(super) dictionary_name: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct Diagnostics {
    pub(super) age: Option<bool>,
    #[serde(rename = "X-Cache-Status")]
    pub(super) status: Option<bool>,
    #[serde(rename = "X-Cache-Key")]
    pub(super) key: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Config {
    pub(super) response_code: Vec<i64>,
    pub(super) request_method: Vec<String>,
    pub(super) content_type: Vec<String>,
    pub(super) cache_ttl: Option<i64>,
    pub(super) strategy: String,
    pub(super) cache_control: bool,
    pub(super) ignore_uri_case: Option<bool>,
    pub(super) storage_ttl: Option<i64>,
    pub(super) memory: Memory,
    pub(super) vary_query_params: Option<Vec<String>>,
    pub(super) vary_headers: Option<Vec<String>>,
    pub(super) response_headers: Diagnostics,
}
