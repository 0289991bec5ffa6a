//! ip-restriction (priority 990): rejects clients by address, deny list first, then a
//! non-empty allow list (kong-reference.md 4.4). Lists are parsed when the config loads.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;

use gangway_config::schema::{ALL_PROTOCOLS, EntityCheck, Field, Schema};
use gangway_net::ip_set::IpSet;
use gangway_pipeline::Plugin;
use gangway_pipeline::catalog::ConfigProblem;
use gangway_pipeline::context::AccessCtx;
use gangway_pipeline::flow::Flow;

/// Kong's name.
pub const NAME: &str = "ip-restriction";
/// Kong's PRIORITY.
pub const PRIORITY: i32 = 990;

/// The status of a rejection when `config.status` is not set.
pub const DEFAULT_STATUS: u16 = 403;

/// The `protocols` default of ip-restriction, in Kong's order (it also runs on streams).
pub const DEFAULT_PROTOCOLS: &[&str] = &["http", "https", "tcp", "tls", "grpc", "grpcs"];

/// Kong's config schema (`kong/plugins/ip-restriction/schema.lua`).
pub fn schema() -> Schema {
    let list = |what: &'static str| {
        Field::array(
            Field::string()
                .custom_validator(ip_or_cidr)
                .describe("An IP address or a CIDR range, such as 192.168.1.1 or 192.168.0.0/16."),
        )
        .describe(what)
    };
    Schema::new(
        NAME,
        Field::record(vec![
            (
                "allow",
                list("Addresses and ranges allowed (when set, all others are not)."),
            ),
            ("deny", list("Addresses and ranges refused.")),
            (
                "status",
                Field::number()
                    .optional()
                    .describe("The status of a rejection; 403 when unset."),
            ),
            (
                "message",
                Field::string()
                    .optional()
                    .describe("The message of a rejection; Kong's default names the address."),
            ),
        ]),
    )
    .protocols(DEFAULT_PROTOCOLS, ALL_PROTOCOLS)
    .with_check(EntityCheck::AtLeastOneOf(vec![
        "config.allow",
        "config.deny",
    ]))
}

/// Kong's `typedefs.ip_or_cidr` check.
fn ip_or_cidr(v: &Value) -> Result<(), String> {
    match v.as_str() {
        Some(s) if parse_ip_or_cidr(s).is_none() => Err(format!("invalid ip or cidr range: '{s}'")),
        _ => Ok(()),
    }
}

#[derive(Debug, Deserialize)]
struct Config {
    allow: Option<Vec<String>>,
    deny: Option<Vec<String>>,
    status: Option<serde_json::Number>,
    message: Option<String>,
}

struct IpRestriction {
    allow: IpSet,
    deny: IpSet,
    status: u16,
    message: Option<String>,
}

pub use gangway_net::conn_policy::parse_ip_or_cidr;

fn parse_list(
    list: Option<Vec<String>>,
    field: &str,
    problems: &mut Vec<ConfigProblem>,
) -> Vec<IpNet> {
    let mut out = Vec::new();
    for (i, entry) in list.into_iter().flatten().enumerate() {
        match parse_ip_or_cidr(&entry) {
            Some(net) => out.push(net),
            None => problems.push((
                format!("{field}[{i}]"),
                format!("invalid ip or cidr range: '{entry}'"),
            )),
        }
    }
    out
}

/// Builds the plugin from its validated config.
pub fn build(config: &Value) -> Result<Box<dyn Plugin>, Vec<ConfigProblem>> {
    Ok(Box::new(compile(config)?))
}

fn compile(config: &Value) -> Result<IpRestriction, Vec<ConfigProblem>> {
    let conf: Config =
        serde_json::from_value(config.clone()).map_err(|e| vec![(String::new(), e.to_string())])?;
    let mut problems = Vec::new();
    let empty = |l: &Option<Vec<String>>| l.as_ref().is_none_or(Vec::is_empty);
    if empty(&conf.allow) && empty(&conf.deny) {
        problems.push((
            String::new(),
            "at least one of these fields must be non-empty: 'config.allow', 'config.deny'"
                .to_owned(),
        ));
    }
    let allow = parse_list(conf.allow, "allow", &mut problems);
    let deny = parse_list(conf.deny, "deny", &mut problems);
    // Kong's field is a plain number; kong.response.error needs an HTTP status.
    let status = match &conf.status {
        None => DEFAULT_STATUS,
        Some(n) => match n.as_u64().and_then(|s| u16::try_from(s).ok()) {
            Some(s) if (100..=599).contains(&s) => s,
            _ => {
                problems.push((
                    "status".into(),
                    "value should be between 100 and 599".into(),
                ));
                DEFAULT_STATUS
            }
        },
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(IpRestriction {
        allow: allow.into(),
        deny: deny.into(),
        status,
        message: conf.message,
    })
}

impl IpRestriction {
    /// `None` lets the client through; otherwise the message of the rejection.
    fn check(&self, ip: IpAddr) -> Option<String> {
        // An IPv4-mapped IPv6 client (dual-stack listener) is compared as the IPv4 address
        // it carries, as the kernel's guard and the accept check compare it.
        let blocked = (!self.deny.is_empty() && self.deny.contains(ip))
            || (!self.allow.is_empty() && !self.allow.contains(ip));
        blocked.then(|| match &self.message {
            Some(m) => m.clone(),
            None => format!("IP address not allowed: {}", ip.to_canonical()),
        })
    }
}

impl Plugin for IpRestriction {
    fn access(&self, ctx: &mut AccessCtx<'_>) -> Flow {
        match self.check(ctx.client_ip) {
            None => Flow::Continue,
            Some(message) => {
                tracing::debug!(client = %ctx.client_ip, "ip-restriction: {message}");
                refusal(self.status, message)
            }
        }
    }
}

/// Kong's `kong.response.error(status, message)`, which refuses a status below 400: the
/// request then fails with 500 rather than a refused client getting a success status.
fn refusal(status: u16, message: String) -> Flow {
    if status < 400 {
        tracing::error!(
            status,
            "ip-restriction: status must be 400 or above; answering 500"
        );
        return Flow::error(500, "An unexpected error occurred");
    }
    Flow::error(status, message)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A configured status below 400 never tells a refused client it succeeded.
    #[test]
    fn a_status_below_400_answers_kongs_500() {
        let refused = |status| match refusal(status, "Your IP address is not allowed".into()) {
            Flow::Respond(r) => r.status,
            _ => 0,
        };
        assert_eq!(refused(200), 500);
        assert_eq!(refused(403), 403);
        assert_eq!(refused(451), 451);
    }

    fn plugin(config: Value) -> IpRestriction {
        compile(&config).expect("valid config")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn accepts_kong_schema_examples() {
        for ok in [
            json!({"allow": ["127.0.0.1/32", "127.0.0.2/32"]}),
            json!({"allow": ["127.0.0.1/32"], "status": 403, "message": "Forbidden"}),
            json!({"allow": ["127.0.0.1/8"]}),
            json!({"deny": ["127.0.0.1/32", "127.0.0.2/32"]}),
            json!({"deny": ["127.0.0.2/32"], "allow": ["127.0.0.1/32"]}),
            json!({"allow": ["::/0", "::/1", "::/128", "[::1]"]}),
        ] {
            assert!(compile(&ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_with_kong_messages() {
        let err = compile(&json!({"allow": ["hello"]}))
            .err()
            .expect("invalid");
        assert_eq!(
            err,
            vec![(
                "allow[0]".to_owned(),
                "invalid ip or cidr range: 'hello'".to_owned()
            )]
        );
        let err = compile(&json!({"deny": ["127.0.0.1/32", "127.0.0.2/32", "hello"]}))
            .err()
            .expect("invalid");
        assert_eq!(err[0].0, "deny[2]");
        let bad = [
            "0.0.0.0/a",
            "0.0.0.0/-1",
            "0.0.0.0/33",
            "::/a",
            "::/-1",
            "::/129",
            "::1/a",
            "::1/-1",
            "::1/129",
            "1.2.3.4/08",
            "1.2.3.4/",
            "01.2.3.4",
            "1.2.3",
        ];
        let err = compile(&json!({ "allow": bad })).err().expect("invalid");
        let messages: Vec<String> = err.into_iter().map(|(_, m)| m).collect();
        let expected: Vec<String> = bad
            .iter()
            .map(|b| format!("invalid ip or cidr range: '{b}'"))
            .collect();
        assert_eq!(messages, expected);
        let err = compile(&json!({"allow": [], "deny": []}))
            .err()
            .expect("invalid");
        assert_eq!(
            err[0].1,
            "at least one of these fields must be non-empty: 'config.allow', 'config.deny'"
        );
    }

    fn schema_errors(config: Value) -> Vec<String> {
        let mut errors = gangway_config::ConfigErrors::default();
        schema().validate(Some(&config), "plugins[0].config", &mut errors);
        errors.0.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn schema_reports_kong_messages() {
        assert!(
            schema_errors(json!({"allow": ["127.0.0.1/8"], "status": 403, "message": "x"}))
                .is_empty()
        );
        assert_eq!(
            schema_errors(json!({"allow": 12})),
            vec!["plugins[0].config.allow: expected an array"]
        );
        assert_eq!(
            schema_errors(json!({"allow": ["127.0.0.1/32", "127.0.0.2/32", "hello"]})),
            vec!["plugins[0].config.allow[2]: invalid ip or cidr range: 'hello'"]
        );
        assert_eq!(
            schema_errors(json!({"deny": ["::1/129"]})),
            vec!["plugins[0].config.deny[0]: invalid ip or cidr range: '::1/129'"]
        );
        assert_eq!(
            schema_errors(json!({"allow": [], "deny": []})),
            vec![
                "plugins[0]: at least one of these fields must be non-empty: 'config.allow', 'config.deny'"
            ]
        );
        let mut errors = gangway_config::ConfigErrors::default();
        let filled = schema().validate(
            Some(&json!({"deny": ["::1"]})),
            "plugins[0].config",
            &mut errors,
        );
        assert_eq!(
            filled,
            json!({"allow": null, "deny": ["::1"], "status": null, "message": null})
        );
        assert_eq!(compile(&filled).expect("builds").status, 403);
        let protocols = schema().validate_protocols(None, "plugins[0].protocols", &mut errors);
        assert_eq!(protocols, json!(DEFAULT_PROTOCOLS));
        assert!(errors.0.is_empty());
    }

    #[test]
    fn deny_is_checked_before_allow() {
        let default_message = Some("IP address not allowed: 127.0.0.1".to_owned());
        let p = plugin(json!({"deny": ["127.0.0.1", "127.0.0.2"]}));
        assert_eq!(p.check(ip("127.0.0.1")), default_message);
        assert_eq!(p.check(ip("127.0.0.3")), None);
        let p = plugin(json!({"deny": ["127.0.0.0/24"]}));
        assert!(p.check(ip("127.0.0.1")).is_some());
        let p = plugin(json!({"allow": ["127.0.0.2"]}));
        assert!(p.check(ip("127.0.0.1")).is_some());
        assert!(p.check(ip("127.0.0.2")).is_none());
        let p = plugin(json!({"allow": ["127.0.0.1"], "deny": ["127.0.0.1"]}));
        assert!(p.check(ip("127.0.0.1")).is_some());
        let p = plugin(json!({"allow": ["127.0.0.0/24"], "deny": ["127.0.0.1"]}));
        assert!(p.check(ip("127.0.0.1")).is_some());
        assert!(p.check(ip("127.0.0.9")).is_none());
        let p = plugin(json!({"allow": ["0.0.0.0/0"]}));
        assert!(p.check(ip("10.1.2.3")).is_none());
        assert!(p.check(ip("::1")).is_some(), "IPv4 ranges never match IPv6");
        let p = plugin(json!({"allow": ["127.0.0.1/8"]}));
        assert!(p.check(ip("127.200.0.1")).is_none());
        assert!(p.check(ip("::ffff:127.0.0.1")).is_none(), "v4-mapped");
    }

    #[test]
    fn ipv6_lists() {
        let p = plugin(json!({"deny": ["::1", "::2"]}));
        assert_eq!(
            p.check(ip("::1")),
            Some("IP address not allowed: ::1".to_owned())
        );
        let p = plugin(json!({"deny": ["fe80::/8"]}));
        assert!(p.check(ip("fe80::1")).is_some());
        let p = plugin(json!({"allow": ["::2"]}));
        assert!(p.check(ip("::1")).is_some());
        let p = plugin(json!({"allow": ["::/0"]}));
        assert!(p.check(ip("::1")).is_none());
        let p = plugin(json!({"allow": ["::1/128"], "deny": ["::1/128"]}));
        assert!(p.check(ip("::1")).is_some());
    }

    #[test]
    fn status_and_message_are_configurable() {
        let p = plugin(json!({"deny": ["127.0.0.0/24"], "status": 401, "message": "Forbidden"}));
        assert_eq!(p.status, 401);
        assert_eq!(p.check(ip("127.0.0.1")).as_deref(), Some("Forbidden"));
        assert_eq!(plugin(json!({"deny": ["::1"]})).status, 403);
        assert!(compile(&json!({"deny": ["::1"], "status": 1000})).is_err());
    }
}
