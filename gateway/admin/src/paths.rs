//! The Admin API's paths, resolved the way Kong generates them from the entity schemas
//! (`kong/api/endpoints.lua`): for every kind a collection and an entity path, and for every
//! foreign key `field -> parent` the paths `/{kind}/{k}/{field}`, `/{parent}/{p}/{kind}` and
//! `/{parent}/{p}/{kind}/{k}`. A few of those Kong disables; a few others are Kong's own
//! additions.

use axum::http::Method;
use gangway_config::dao::{Foreign, KINDS, Kind, kind_by_admin_name, kind_named};

/// One Admin API endpoint, with the path's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `/`: node information.
    Root,
    /// `/status`.
    Status,
    /// `/endpoints`.
    Endpoints,
    /// `/plugins/enabled`.
    PluginsEnabled,
    /// `/config` (DB-less: export and replace).
    Config,
    /// `/schemas/{entity}`.
    Schema(String),
    /// `/schemas/plugins/{name}`.
    PluginSchema(String),
    /// `/plugins/schema/{name}`: Kong's deprecated form, answering the `config` record alone.
    PluginConfigSchema(String),
    /// `/schemas/plugins/validate`.
    ValidatePlugin,
    /// `/schemas/{entity}/validate`.
    ValidateEntity(String),
    /// `/{kind}`.
    Collection(&'static Kind),
    /// `/{kind}/{key}`.
    Entity(&'static Kind, String),
    /// `/{kind}/{key}/{field}`: the entity a foreign key points at.
    Foreign(&'static Kind, String, &'static Foreign),
    /// `/{parent}/{key}/{kind}`: the children of one parent.
    Children {
        /// The parent's kind.
        parent: &'static Kind,
        /// The parent's address.
        key: String,
        /// The children's kind.
        child: &'static Kind,
        /// The children's foreign key to the parent.
        fk: &'static Foreign,
    },
    /// `/{parent}/{key}/{kind}/{child_key}`: one child of one parent.
    Child {
        /// The parent's kind.
        parent: &'static Kind,
        /// The parent's address.
        key: String,
        /// The child's kind.
        child: &'static Kind,
        /// The child's foreign key to the parent.
        fk: &'static Foreign,
        /// The child's address.
        child_key: String,
    },
    /// `/upstreams/{u}/health`.
    UpstreamHealth(String),
    /// `/upstreams/{u}/targets/{t}[/{address}]/healthy|unhealthy`.
    TargetHealth {
        /// The upstream's address.
        upstream: String,
        /// The target's id or `host:port`.
        target: String,
        /// One address of the target, or all of them.
        address: Option<String>,
        /// `healthy` or `unhealthy`.
        healthy: bool,
    },
    /// `/metrics`: the prometheus plugin's exposition, as Kong serves it here too.
    Metrics,
    /// `/tags` and `/tags/{tag}`.
    Tags(Option<String>),
    /// `/proxy-cache`, `/proxy-cache/{key}` and `/proxy-cache/{plugin}/caches/{key}`: the
    /// proxy-cache plugin's purge API.
    ProxyCache {
        /// One instance's cache, or every one's.
        plugin: Option<String>,
        /// One entry, or (without a plugin) all of them.
        key: Option<String>,
    },
}

const READ: &[Method] = &[Method::GET];
const COLLECTION: &[Method] = &[Method::GET, Method::POST];
const ENTITY: &[Method] = &[Method::GET, Method::PUT, Method::PATCH, Method::DELETE];

impl Endpoint {
    /// The methods the endpoint answers (HEAD and OPTIONS are added for every one).
    pub fn methods(&self) -> &'static [Method] {
        match self {
            Endpoint::Root
            | Endpoint::Status
            | Endpoint::Metrics
            | Endpoint::Endpoints
            | Endpoint::PluginsEnabled
            | Endpoint::Schema(_)
            | Endpoint::PluginSchema(_)
            | Endpoint::PluginConfigSchema(_)
            | Endpoint::UpstreamHealth(_)
            | Endpoint::Tags(_) => READ,
            Endpoint::ValidatePlugin | Endpoint::ValidateEntity(_) => &[Method::POST],
            Endpoint::TargetHealth { .. } => &[Method::PUT],
            Endpoint::ProxyCache { key: None, .. } => &[Method::DELETE],
            Endpoint::ProxyCache { .. } => &[Method::GET, Method::DELETE],
            Endpoint::Config | Endpoint::Collection(_) | Endpoint::Children { .. } => COLLECTION,
            Endpoint::Entity(..) | Endpoint::Foreign(..) | Endpoint::Child { .. } => ENTITY,
        }
    }

    /// Kong's `Allow` list: the methods, HEAD where GET is, OPTIONS, sorted.
    pub fn allow(&self) -> String {
        let mut names: Vec<&str> = self.methods().iter().map(Method::as_str).collect();
        if names.contains(&"GET") {
            names.push("HEAD");
        }
        names.push("OPTIONS");
        names.sort_unstable();
        names.join(", ")
    }
}

/// Paths Kong generates but turns off: targets only live under their upstream, and an SNI's
/// certificate is not reachable from the SNI.
fn disabled(kind: &Kind, fk: Option<&Foreign>) -> bool {
    kind.name == "targets" || (kind.name == "snis" && fk.is_some_and(|f| f.field == "certificate"))
}

/// The endpoint for the path `segments` (percent-decoded, without empty segments).
pub fn resolve(segments: &[&str]) -> Option<Endpoint> {
    match segments {
        [] => Some(Endpoint::Root),
        ["status"] => Some(Endpoint::Status),
        ["metrics"] => Some(Endpoint::Metrics),
        ["endpoints"] => Some(Endpoint::Endpoints),
        ["config"] => Some(Endpoint::Config),
        ["plugins", "enabled"] => Some(Endpoint::PluginsEnabled),
        ["plugins", "schema", name] => Some(Endpoint::PluginConfigSchema((*name).to_owned())),
        ["schemas", "plugins", "validate"] => Some(Endpoint::ValidatePlugin),
        ["schemas", "plugins", name] => Some(Endpoint::PluginSchema((*name).to_owned())),
        ["schemas", name, "validate"] => Some(Endpoint::ValidateEntity((*name).to_owned())),
        ["schemas", name] => Some(Endpoint::Schema((*name).to_owned())),
        ["upstreams", key, "health"] => Some(Endpoint::UpstreamHealth((*key).to_owned())),
        [
            "upstreams",
            key,
            "targets",
            target,
            verb @ ("healthy" | "unhealthy"),
        ] => Some(Endpoint::TargetHealth {
            upstream: (*key).to_owned(),
            target: (*target).to_owned(),
            address: None,
            healthy: *verb == "healthy",
        }),
        [
            "upstreams",
            key,
            "targets",
            target,
            address,
            verb @ ("healthy" | "unhealthy"),
        ] => Some(Endpoint::TargetHealth {
            upstream: (*key).to_owned(),
            target: (*target).to_owned(),
            address: Some((*address).to_owned()),
            healthy: *verb == "healthy",
        }),
        ["proxy-cache"] => Some(Endpoint::ProxyCache {
            plugin: None,
            key: None,
        }),
        ["proxy-cache", key] => Some(Endpoint::ProxyCache {
            plugin: None,
            key: Some((*key).to_owned()),
        }),
        ["proxy-cache", plugin, "caches", key] => Some(Endpoint::ProxyCache {
            plugin: Some((*plugin).to_owned()),
            key: Some((*key).to_owned()),
        }),
        ["tags"] => Some(Endpoint::Tags(None)),
        ["tags", tag] => Some(Endpoint::Tags(Some((*tag).to_owned()))),
        [collection] => {
            let kind = kind_by_admin_name(collection)?;
            (!disabled(kind, None)).then_some(Endpoint::Collection(kind))
        }
        [collection, key] => {
            let kind = kind_by_admin_name(collection)?;
            (!disabled(kind, None)).then(|| Endpoint::Entity(kind, (*key).to_owned()))
        }
        [collection, key, tail] => {
            let kind = kind_by_admin_name(collection)?;
            if let Some(fk) = kind.foreign.iter().find(|f| f.field == *tail) {
                return (!disabled(kind, Some(fk)))
                    .then(|| Endpoint::Foreign(kind, (*key).to_owned(), fk));
            }
            let (child, fk) = child_of(kind, tail)?;
            Some(Endpoint::Children {
                parent: kind,
                key: (*key).to_owned(),
                child,
                fk,
            })
        }
        [collection, key, tail, child_key] => {
            let kind = kind_by_admin_name(collection)?;
            let (child, fk) = child_of(kind, tail)?;
            Some(Endpoint::Child {
                parent: kind,
                key: (*key).to_owned(),
                child,
                fk,
                child_key: (*child_key).to_owned(),
            })
        }
        _ => None,
    }
}

/// The kind nested as `/{parent}/{p}/{segment}`, and its foreign key to `parent`.
fn child_of(parent: &Kind, segment: &str) -> Option<(&'static Kind, &'static Foreign)> {
    KINDS.iter().find_map(|child| {
        if child.nested_name != segment {
            return None;
        }
        let fk = child.foreign.iter().find(|f| f.kind == parent.name)?;
        Some((child, fk))
    })
}

/// Every path this Admin API serves, with Kong's `{name}` placeholders, sorted by segment as
/// Kong's `/endpoints` sorts them.
pub fn all() -> Vec<String> {
    let mut paths: Vec<String> = [
        "/",
        "/status",
        "/metrics",
        "/endpoints",
        "/config",
        "/plugins/enabled",
        "/schemas/{name}",
        "/schemas/{db_entity_name}/validate",
        "/schemas/plugins/{name}",
        "/schemas/plugins/validate",
        "/upstreams/{upstreams}/health",
        "/upstreams/{upstreams}/targets/{targets}/healthy",
        "/upstreams/{upstreams}/targets/{targets}/unhealthy",
        "/upstreams/{upstreams}/targets/{targets}/{address}/healthy",
        "/upstreams/{upstreams}/targets/{targets}/{address}/unhealthy",
        "/tags",
        "/tags/{tags}",
    ]
    .map(str::to_owned)
    .to_vec();
    for kind in KINDS {
        if !disabled(kind, None) {
            paths.push(format!("/{}", kind.admin_name));
            paths.push(format!("/{}/{{{}}}", kind.admin_name, kind.name));
        }
        for fk in kind.foreign {
            let Some(parent) = kind_named(fk.kind) else {
                continue;
            };
            if !disabled(kind, Some(fk)) {
                paths.push(format!(
                    "/{}/{{{}}}/{}",
                    kind.admin_name, kind.name, fk.field
                ));
            }
            let nested = format!(
                "/{}/{{{}}}/{}",
                parent.admin_name, parent.name, kind.nested_name
            );
            paths.push(format!("{nested}/{{{}}}", kind.name));
            paths.push(nested);
        }
    }
    paths.sort_by_key(|p| p.replace('/', "\0"));
    paths.dedup();
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(path: &str) -> Option<Endpoint> {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        resolve(&segments)
    }

    #[test]
    fn generated_paths_resolve_as_kong_generates_them() {
        let routes = kind_named("routes").expect("routes");
        let services = kind_named("services").expect("services");
        assert_eq!(at("/routes"), Some(Endpoint::Collection(routes)));
        assert_eq!(
            at("/routes/r1/"),
            Some(Endpoint::Entity(routes, "r1".into()))
        );
        assert!(
            matches!(at("/routes/r1/service"), Some(Endpoint::Foreign(k, key, fk))
            if k == routes && key == "r1" && fk.field == "service")
        );
        assert!(
            matches!(at("/services/s1/routes"), Some(Endpoint::Children { parent, child, .. })
            if parent == services && child == routes)
        );
        assert!(
            matches!(at("/consumers/bob/key-auth/k1"), Some(Endpoint::Child { child, child_key, .. })
            if child.name == "keyauth_credentials" && child_key == "k1")
        );
        assert!(
            matches!(at("/upstreams/u/targets"), Some(Endpoint::Children { child, .. })
            if child.name == "targets")
        );
    }

    #[test]
    fn kong_disables_top_level_targets_and_the_sni_certificate_path() {
        assert_eq!(at("/targets"), None);
        assert_eq!(at("/targets/t1"), None);
        assert_eq!(at("/targets/t1/upstream"), None);
        assert_eq!(at("/snis/a.com/certificate"), None);
        assert!(at("/certificates/c1/snis").is_some());
        assert_eq!(at("/nope"), None);
        assert_eq!(at("/services/s1/nope"), None);
    }

    #[test]
    fn allow_lists_head_and_options_sorted() {
        let routes = kind_named("routes").expect("routes");
        assert_eq!(
            Endpoint::Collection(routes).allow(),
            "GET, HEAD, OPTIONS, POST"
        );
        assert_eq!(
            Endpoint::Entity(routes, "r".into()).allow(),
            "DELETE, GET, HEAD, OPTIONS, PATCH, PUT"
        );
    }

    #[test]
    fn endpoints_are_listed_with_placeholders_sorted_by_segment() {
        let all = all();
        assert!(all.contains(&"/consumers/{consumers}/key-auth/{keyauth_credentials}".to_owned()));
        assert!(all.contains(&"/key-auths/{keyauth_credentials}/consumer".to_owned()));
        assert!(!all.contains(&"/targets".to_owned()));
        let routes = all.iter().position(|p| p == "/routes").expect("listed");
        let routes_id = all
            .iter()
            .position(|p| p == "/routes/{routes}")
            .expect("listed");
        let schemas = all
            .iter()
            .position(|p| p == "/schemas/{name}")
            .expect("listed");
        assert!(routes < routes_id && routes_id < schemas, "{all:?}");
    }
}
