//! Kong's `kong/plugins/rate-limiting/schema.lua` and `kong/tools/redis/schema.lua`, with
//! Kong Enterprise's cluster and sentinel fields in the `redis` record.

use serde_json::{Map, Value, json};

use super::windows::Period;
use gangway_config::schema::{EntityCheck, Field, Match, Schema};

/// The config schema.
pub fn schema() -> Schema {
    let limit = |text| Field::number().gt(0).describe(text);
    let flag = |default: bool| Field::boolean().required().default(json!(default));
    let mut config = Field::record(vec![
        (
            "second",
            limit("The number of HTTP requests that can be made per second."),
        ),
        (
            "minute",
            limit("The number of HTTP requests that can be made per minute."),
        ),
        (
            "hour",
            limit("The number of HTTP requests that can be made per hour."),
        ),
        (
            "day",
            limit("The number of HTTP requests that can be made per day."),
        ),
        (
            "month",
            limit("The number of HTTP requests that can be made per month."),
        ),
        (
            "year",
            limit("The number of HTTP requests that can be made per year."),
        ),
        (
            "limit_by",
            Field::string()
                .default(json!("consumer"))
                .one_of(&["consumer", "credential", "ip", "service", "header", "path"])
                .describe("The entity that is used when aggregating the limits."),
        ),
        (
            "header_name",
            Field::string()
                .matches(HEADER_NAME)
                .describe("A string representing an HTTP header name."),
        ),
        (
            "path",
            Field::string()
                .starts_with("/")
                .custom_validator(no_empty_segments)
                .describe("A string representing a URL path, such as /path/to/resource."),
        ),
        (
            "policy",
            Field::string()
                .default(json!("local"))
                .len_min(0)
                .one_of(&["local", "cluster", "redis"])
                .describe(
                    "The rate-limiting policies to use for retrieving and incrementing the limits.",
                ),
        ),
        (
            "fault_tolerant",
            flag(true).describe(
                "Proxy requests even when the counter store cannot be reached (without rate-limit headers); when false, clients get 500.",
            ),
        ),
        ("redis", redis()),
        (
            "hide_client_headers",
            flag(false).describe("Optionally hide informative response headers."),
        ),
        (
            "error_code",
            Field::number()
                .default(json!(429))
                .gt(0)
                .describe("Set a custom error code to return when the rate limit is exceeded."),
        ),
        (
            "error_message",
            Field::string()
                .default(json!("API rate limit exceeded"))
                .describe("Set a custom error message to return when the rate limit is exceeded."),
        ),
        (
            "sync_rate",
            Field::number().required().default(json!(-1)).describe(
                "How often to sync counter data to the central data store. A value of -1 results in synchronous behavior.",
            ),
        ),
    ])
    .custom_validator(periods_and_sync_rate);
    for (name, field, target) in [
        ("redis_host", Field::string(), "redis.host"),
        ("redis_port", Field::integer(), "redis.port"),
        (
            "redis_password",
            Field::string().len_min(0),
            "redis.password",
        ),
        ("redis_username", Field::string(), "redis.username"),
        ("redis_ssl", Field::boolean(), "redis.ssl"),
        ("redis_ssl_verify", Field::boolean(), "redis.ssl_verify"),
        ("redis_server_name", Field::string(), "redis.server_name"),
        ("redis_timeout", Field::integer(), "redis.timeout"),
        ("redis_database", Field::integer(), "redis.database"),
    ] {
        config = config.shorthand(name, field, target);
    }
    let when = |field: &'static str, value: &str, then: &'static str| {
        EntityCheck::conditional(field, Match::eq(json!(value)), then, Match::required())
    };
    Schema::new(super::NAME, config)
        .with_check(EntityCheck::AtLeastOneOf(
            Period::ALL
                .iter()
                .map(|p| match p {
                    Period::Second => "config.second",
                    Period::Minute => "config.minute",
                    Period::Hour => "config.hour",
                    Period::Day => "config.day",
                    Period::Month => "config.month",
                    Period::Year => "config.year",
                })
                .collect(),
        ))
        .with_check(EntityCheck::Custom {
            fields: vec!["config.policy"],
            check: redis_host_required,
        })
        .with_check(when("config.policy", "redis", "config.redis.port"))
        .with_check(when("config.policy", "redis", "config.redis.timeout"))
        .with_check(when("config.limit_by", "header", "config.header_name"))
        .with_check(when("config.limit_by", "path", "config.path"))
}

/// Kong's `typedefs.header_name`: an RFC 7230 token.
const HEADER_NAME: &str = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$";

fn no_empty_segments(value: &Value) -> Result<(), String> {
    match value.as_str() {
        Some(path) if path.contains("//") => Err("must not have empty segments".into()),
        _ => Ok(()),
    }
}

/// The `redis` record (`kong/tools/redis/schema.lua`), plus Kong Enterprise's fields for Redis
/// Cluster and Sentinel.
fn redis() -> Field {
    let node = |host: &'static str, default_host: &str, default_port: u16| {
        Field::record(vec![
            (host, Field::string().default(json!(default_host))),
            (
                "port",
                Field::integer()
                    .default(json!(default_port))
                    .between(0, 65_535),
            ),
        ])
    };
    Field::record(vec![
        (
            "host",
            Field::string().describe("A string representing a host name, such as example.com."),
        ),
        (
            "port",
            Field::integer()
                .default(json!(6379))
                .between(0, 65_535)
                .describe("An integer representing a port number between 0 and 65535, inclusive."),
        ),
        (
            "timeout",
            Field::integer()
                .default(json!(2000))
                .between(0, 2_147_483_646)
                .describe("A timeout in milliseconds (connect and each command)."),
        ),
        (
            "username",
            Field::string().referenceable().describe(
                "Username to use for Redis connections. If undefined, ACL authentication won't be performed. This requires Redis v6.0.0+.",
            ),
        ),
        (
            "password",
            Field::string()
                .len_min(0)
                .referenceable()
                .encrypted()
                .describe("Password to use for Redis connections. If undefined, no AUTH commands are sent to Redis."),
        ),
        (
            "database",
            Field::integer()
                .default(json!(0))
                .describe("Database to use for the Redis connection when using the `redis` strategy"),
        ),
        (
            "ssl",
            Field::boolean()
                .optional()
                .default(json!(false))
                .describe("If set to true, uses SSL to connect to Redis."),
        ),
        (
            "ssl_verify",
            Field::boolean()
                .optional()
                .default(json!(false))
                .describe("If set to true, verifies the validity of the server SSL certificate."),
        ),
        (
            "server_name",
            Field::string()
                .optional()
                .describe("A string representing an SNI (server name indication) value for TLS."),
        ),
        (
            "cluster_nodes",
            Field::array(node("ip", "127.0.0.1", 6379))
                .len_min(1)
                .describe("Cluster addresses to use for Redis connections when the `redis` strategy is defined (Redis Cluster, ElastiCache cluster mode and Serverless)."),
        ),
        (
            "cluster_max_redirections",
            Field::integer()
                .default(json!(5))
                .describe("Maximum retry attempts for redirection."),
        ),
        (
            "sentinel_master",
            Field::string().describe("Sentinel master to use for Redis connections."),
        ),
        (
            "sentinel_role",
            Field::string()
                .one_of(&["master", "slave", "any"])
                .describe("Sentinel role to use for Redis connections."),
        ),
        (
            "sentinel_nodes",
            Field::array(node("host", "127.0.0.1", 26379))
                .len_min(1)
                .describe("Sentinel node addresses to use for Redis connections."),
        ),
        (
            "sentinel_username",
            Field::string()
                .referenceable()
                .describe("Sentinel username to authenticate with a Redis Sentinel instance."),
        ),
        (
            "sentinel_password",
            Field::string()
                .referenceable()
                .encrypted()
                .describe("Sentinel password to authenticate with a Redis Sentinel instance."),
        ),
    ])
    .with_check(EntityCheck::MutuallyExclusive(vec![
        "cluster_nodes",
        "sentinel_nodes",
    ]))
    .with_check(EntityCheck::MutuallyRequired(vec![
        "sentinel_master",
        "sentinel_nodes",
    ]))
}

/// Kong's `validate_periods_order`, and its `sync_rate` rules.
fn periods_and_sync_rate(config: &Value) -> Result<(), String> {
    for (i, lower) in Period::ALL.iter().enumerate() {
        let Some(v1) = config.get(lower.name()).and_then(Value::as_f64) else {
            continue;
        };
        for upper in &Period::ALL[i + 1..] {
            if let Some(v2) = config.get(upper.name()).and_then(Value::as_f64) {
                if v2 < v1 {
                    return Err(format!(
                        "The limit for {}({v2:.1}) cannot be lower than the limit for {}({v1:.1})",
                        upper.name(),
                        lower.name()
                    ));
                }
            }
        }
    }
    let policy = config.get("policy").and_then(Value::as_str);
    let sync_rate = config
        .get("sync_rate")
        .and_then(Value::as_f64)
        .unwrap_or(-1.0);
    if policy != Some("redis") && sync_rate != -1.0 {
        return Err("sync_rate can only be used with the redis policy".into());
    }
    if policy == Some("redis") && sync_rate != -1.0 && sync_rate < 0.02 {
        return Err("sync_rate must be greater than 0.02, or -1 to disable".into());
    }
    Ok(())
}

/// Kong's conditional "policy redis requires redis.host", except that a Redis Cluster or
/// Sentinel setup names its servers in its own fields.
fn redis_host_required(entity: &Map<String, Value>) -> Result<(), (Option<String>, String)> {
    let config = entity.get("config");
    let field = |path: &[&str]| {
        path.iter()
            .try_fold(config?, |v, k| v.get(*k))
            .filter(|v| !v.is_null())
    };
    if field(&["policy"]).and_then(Value::as_str) != Some("redis") {
        return Ok(());
    }
    let elsewhere = field(&["redis", "cluster_nodes"]).is_some()
        || field(&["redis", "sentinel_nodes"]).is_some();
    if elsewhere || field(&["redis", "host"]).is_some() {
        return Ok(());
    }
    Err((
        Some("config.redis.host".into()),
        "required field missing".into(),
    ))
}
