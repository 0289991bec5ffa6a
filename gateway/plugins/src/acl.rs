//! acl (priority 950): lets consumers through by ACL group (kong-reference.md 4.5).

use serde::Deserialize;
use serde_json::{Value, json};

use gangway_config::schema::{EntityCheck, Field, Schema};
use gangway_pipeline::Plugin;
use gangway_pipeline::catalog::ConfigProblem;
use gangway_pipeline::context::AccessCtx;
use gangway_pipeline::flow::Flow;

/// Kong's name.
pub const NAME: &str = "acl";
/// Kong's PRIORITY.
pub const PRIORITY: i32 = 950;

const FORBIDDEN: &str = "You cannot consume this service";

/// Kong's `kong/plugins/acl/schema.lua`.
pub fn schema() -> Schema {
    Schema::new(
        NAME,
        Field::record(vec![
            ("allow", Field::array(Field::string())),
            ("deny", Field::array(Field::string())),
            (
                "hide_groups_header",
                Field::boolean().required().default(json!(false)),
            ),
            (
                "always_use_authenticated_groups",
                Field::boolean().required().default(json!(false)),
            ),
        ]),
    )
    .no_consumer()
    .with_check(EntityCheck::OnlyOneOf(vec!["config.allow", "config.deny"]))
    .with_check(EntityCheck::AtLeastOneOf(vec![
        "config.allow",
        "config.deny",
    ]))
}

#[derive(Debug, Deserialize)]
struct Config {
    allow: Option<Vec<String>>,
    deny: Option<Vec<String>>,
    hide_groups_header: bool,
    always_use_authenticated_groups: bool,
}

struct Acl {
    groups: Vec<String>,
    allow: bool,
    hide_groups_header: bool,
    always_use_authenticated_groups: bool,
}

/// Builds the plugin from its validated config.
pub fn build(config: &Value) -> Result<Box<dyn Plugin>, Vec<ConfigProblem>> {
    let conf: Config =
        serde_json::from_value(config.clone()).map_err(|e| vec![(String::new(), e.to_string())])?;
    // Kong's `only_one_of` counts an empty list as unset.
    let set = |list: Option<Vec<String>>| list.filter(|l| !l.is_empty());
    let (groups, allow) = match (set(conf.allow), set(conf.deny)) {
        (Some(a), None) => (a, true),
        (None, Some(d)) => (d, false),
        _ => {
            return Err(vec![(
                String::new(),
                "exactly one of these fields must be non-empty: 'allow', 'deny'".to_owned(),
            )]);
        }
    };
    Ok(Box::new(Acl {
        groups,
        allow,
        hide_groups_header: conf.hide_groups_header,
        always_use_authenticated_groups: conf.always_use_authenticated_groups,
    }))
}

impl Acl {
    fn blocked<'g>(&self, mut groups: impl Iterator<Item = &'g str>) -> bool {
        let member = groups.any(|g| self.groups.iter().any(|c| c == g));
        if self.allow { !member } else { member }
    }

    fn no_groups(ctx: &AccessCtx<'_>) -> Flow {
        if ctx.state.credential.is_some() {
            Flow::error(403, FORBIDDEN)
        } else {
            Flow::error(401, "Unauthorized")
        }
    }
}

impl Plugin for Acl {
    fn access(&self, ctx: &mut AccessCtx<'_>) -> Flow {
        let consumer = ctx.state.consumer;
        let use_authenticated = consumer.is_none() || self.always_use_authenticated_groups;
        if use_authenticated && !ctx.state.authenticated_groups.is_empty() {
            let blocked = self.blocked(ctx.state.authenticated_groups.iter().map(String::as_str));
            if blocked {
                return Flow::error(403, FORBIDDEN);
            }
            if !self.hide_groups_header {
                let joined = ctx.state.authenticated_groups.join(", ");
                ctx.state
                    .headers
                    .set("X-Authenticated-Groups", joined.as_bytes());
            }
            return Flow::Continue;
        }
        let Some(consumer) = consumer else {
            return Self::no_groups(ctx);
        };
        let identities = &ctx.identities;
        if identities.groups(consumer).next().is_none() {
            if self.allow {
                return Self::no_groups(ctx);
            }
            // A deny list lets a consumer without groups through, and Kong still sends its
            // (empty) group list upstream.
            if !self.hide_groups_header {
                ctx.state.headers.set("X-Consumer-Groups", b"");
            }
            return Flow::Continue;
        }
        if self.blocked(identities.groups(consumer)) {
            return Flow::error(403, FORBIDDEN);
        }
        if !self.hide_groups_header {
            let joined = identities.groups(consumer).collect::<Vec<_>>().join(", ");
            ctx.state
                .headers
                .set("X-Consumer-Groups", joined.as_bytes());
        }
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    /// Kong's `only_one_of` counts an empty list as unset: `deny: []` beside an allow list
    /// is a valid config (it was refused), two empty lists are not.
    #[test]
    fn an_empty_second_list_counts_as_unset() {
        let conf = |allow: serde_json::Value, deny: serde_json::Value| {
            json!({"allow": allow, "deny": deny, "hide_groups_header": false,
                   "always_use_authenticated_groups": false, "include_consumer_groups": false})
        };
        assert!(super::build(&conf(json!(["admin"]), json!([]))).is_ok());
        assert!(super::build(&conf(json!([]), json!(["banned"]))).is_ok());
        assert!(super::build(&conf(json!([]), json!([]))).is_err());
        assert!(super::build(&conf(json!(["a"]), json!(["b"]))).is_err());
    }
}
