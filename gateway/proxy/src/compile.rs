//! Compiles a validated [`Config`] into a [`Snapshot`]: builds the router, resolves each
//! route's service, and precomputes per-service upstream facts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use md5::{Digest, Md5};

use gangway_config::ConfigErrors;
use gangway_config::model::{
    Certificate, Config, Id, Plugin, Protocol, Route, Sni, Target, Upstream, same_lists_but_times,
    shared_config,
};
use gangway_config::settings::Settings;
use gangway_net::tls::{
    CertPair, CertStore, CertifiedKey, ClientConfigCache, RootSource, ServerTls,
    client_certificate, server_config,
};
use gangway_pipeline::Catalog;
use gangway_pipeline::identity::Identities;
use gangway_router::{Router, RouterFlavor};

use crate::snapshot::{Compiled, ServiceTarget, Snapshot};
use crate::upstream::balancer::{Balancer, HealthRegistry};

/// What compiling needs besides the config: process-wide state that outlives snapshots.
pub struct CompileShared<'a> {
    /// Settings.
    pub settings: &'a Settings,
    /// The plugins this process can run.
    pub catalog: &'a Catalog,
    /// Target health, kept across reloads.
    pub health: &'a HealthRegistry,
    /// The certificate served when no SNI matches (from `ssl_cert`, or generated at start).
    pub default_cert: &'a CertPair,
    /// The TLS versions, ciphers and resumption the proxy serves (`ssl_cipher_suite`, ...).
    pub server_tls: &'a ServerTls,
    /// The certificate upstreams get when a service names none (`client_ssl`).
    pub client_ssl: Option<&'a Arc<CertifiedKey>>,
    /// Trust anchors for upstream TLS (`lua_ssl_trusted_certificate`).
    pub roots: &'a RootSource,
    /// Upstream TLS configs, kept across compiles so sessions resume after a reload.
    pub client_configs: &'a std::sync::Mutex<ClientConfigCache>,
    /// What the last compile built: each part whose entities are unchanged (the router, TLS,
    /// a balancer, the plugin chains) is taken from it instead of being built again, so a
    /// change to one plugin does not rebuild a thousand routes' matcher.
    pub previous: Option<Arc<Compiled>>,
}

/// Feeds written bytes to an md5 hasher, so the config is hashed as it serializes instead
/// of through a JSON copy (hundreds of MB for a million consumers).
struct HashWriter(Md5);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Kong's configuration hash: the md5 of the config's JSON, as 32 hex characters. A plugin
/// config shared by many instances is hashed once ([`shared_config::compact`]).
pub fn config_hash(config: &Config) -> String {
    // Buffered: serde_json writes many tiny pieces, and md5 is fastest on whole blocks.
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, HashWriter(Md5::new()));
    shared_config::compact(|| serde_json::to_writer(&mut out, config))
        .expect("invariant: the config model serializes");
    let hasher = out
        .into_inner()
        .map_err(|_| ())
        .expect("invariant: writing to a hasher cannot fail");
    let digest = hasher.0.finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hash `/status` reports for `config`: Kong's md5 of the declarative text it was read
/// from, else [`config_hash`].
pub fn snapshot_hash(config: &Config) -> String {
    config
        .source_md5
        .clone()
        .unwrap_or_else(|| config_hash(config))
}

/// The Host header for `host:port`: the port is left out when it is the scheme's default.
pub fn host_header(host: &str, port: u16, tls: bool) -> String {
    let default_port = if tls { 443 } else { 80 };
    if port == default_port {
        host.to_string()
    } else {
        format!("{host}:{port}")
    }
}

/// Builds a snapshot; every problem is reported with its entity path.
pub fn compile(
    config: Config,
    shared: &CompileShared<'_>,
    version: u64,
) -> Result<Snapshot, ConfigErrors> {
    compile_parts(config, None, shared, version)
}

/// Builds a snapshot from `config`'s routes, services, upstreams, certificates and plugins,
/// with `identities` as they are (a database node's index, which writes change by delta):
/// `config`'s own consumers, keys and ACLs, if any, are ignored.
pub fn compile_keeping_identities(
    config: Config,
    identities: Arc<Identities>,
    shared: &CompileShared<'_>,
    version: u64,
) -> Result<Snapshot, ConfigErrors> {
    compile_parts(config, Some(identities), shared, version)
}

fn compile_parts(
    mut config: Config,
    kept: Option<Arc<Identities>>,
    shared: &CompileShared<'_>,
    version: u64,
) -> Result<Snapshot, ConfigErrors> {
    let health = shared.health;
    let mut errors = ConfigErrors::default();
    let previous = shared.previous.as_deref();
    let unchanged =
        |same: fn(&Config, &Config) -> bool| previous.filter(|p| same(&p.config, &config));
    let tls = match unchanged(|a, b| {
        same_lists_but_times(
            &a.certificates,
            &b.certificates,
            Certificate::same_but_times,
        ) && same_lists_but_times(&a.snis, &b.snis, Sni::same_but_times)
    }) {
        Some(p) => Some(p.tls.clone()),
        None => match CertStore::build(
            &config.certificates,
            &config.snis,
            shared.default_cert.clone(),
        ) {
            Ok(store) => Some(server_config(Arc::new(store), shared.server_tls)),
            Err(e) => {
                errors.0.extend(e.0);
                None
            }
        },
    };
    let router = match unchanged(|a, b| {
        same_lists_but_times(&a.routes, &b.routes, Route::same_but_times)
            && disabled_services(a).eq(disabled_services(b))
    }) {
        Some(p) => Some(p.router.clone()),
        None => match Router::build_without(
            &config.routes,
            RouterFlavor::TraditionalCompatible,
            leads_to_disabled_service(&config),
        ) {
            Ok(r) => Some(Arc::new(r)),
            Err(e) => {
                errors.0.extend(e.0);
                None
            }
        },
    };
    let mut balancers = Vec::with_capacity(config.upstreams.len());
    for (i, u) in config.upstreams.iter().enumerate() {
        let targets = targets_of(&config, u.id);
        if let Some(kept) = previous.and_then(|p| unchanged_balancer(p, u, &targets)) {
            balancers.push(kept);
            continue;
        }
        match Balancer::build(u, &targets, health, &format!("upstreams[{i}]")) {
            Ok(b) => balancers.push(Arc::new(b)),
            Err(e) => errors.0.extend(e.0),
        }
    }
    let by_name: HashMap<&str, usize> = balancers
        .iter()
        .enumerate()
        .map(|(i, b)| (b.name.as_str(), i))
        .collect();
    let upstream_entities: HashMap<&str, &Upstream> = (config.upstreams.iter())
        .map(|u| (u.name.as_str(), u))
        .collect();
    let mut client_configs = shared
        .client_configs
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let services: Vec<ServiceTarget> = config
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let tls = matches!(
                s.protocol,
                Protocol::Https | Protocol::Grpcs | Protocol::Tls
            );
            let tls_client = tls.then(|| {
                let verify = s.tls_verify.unwrap_or(shared.settings.upstream_tls_verify);
                let cas: Vec<_> = s
                    .ca_certificates
                    .iter()
                    .flatten()
                    .filter_map(|id| config.ca_certificates.iter().find(|c| c.id == *id))
                    .collect();
                let own_roots = if cas.is_empty() {
                    None
                } else {
                    match RootSource::from_ca_certificates(&cas) {
                        Ok(r) => Some(r),
                        Err(e) => {
                            errors.push(format!("services[{i}].ca_certificates"), e.to_string());
                            None
                        }
                    }
                };
                // Kong presents the service's certificate, else its upstream entity's.
                let upstream = upstream_entities.get(s.host.as_str());
                let presented = (s.client_certificate.as_ref())
                    .or_else(|| upstream.and_then(|u| u.client_certificate.as_ref()))
                    .and_then(|fk| config.certificates.iter().find(|c| c.id == fk.id))
                    // A certificate that does not load is reported as `certificates[n]`.
                    .and_then(|c| client_certificate(&c.cert, &c.key).ok())
                    // Kong's `proxy_ssl_certificate` (`client_ssl`) when the service has none.
                    .or_else(|| shared.client_ssl.cloned());
                client_configs.get(
                    verify,
                    s.tls_verify_depth,
                    own_roots.as_ref().unwrap_or(shared.roots),
                    presented.as_ref(),
                )
            });
            ServiceTarget {
                id: s.id,
                name: s.name.clone(),
                tls,
                host: s.host.clone(),
                port: s.port,
                host_header: host_header(&s.host, s.port, tls),
                path: s.path.clone(),
                connect_timeout: Duration::from_millis(u64::from(s.connect_timeout)),
                read_timeout: Duration::from_millis(u64::from(s.read_timeout)),
                write_timeout: Duration::from_millis(u64::from(s.write_timeout)),
                retries: s.retries,
                enabled: s.enabled,
                balancer: by_name.get(s.host.as_str()).copied(),
                tls_client,
            }
        })
        .collect();
    let by_id: HashMap<_, _> = config
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id, i))
        .collect();
    let route_service = config
        .routes
        .iter()
        .map(|r| r.service.and_then(|fk| by_id.get(&fk.id).copied()))
        .collect();
    // Chains depend on the plugins and on each route's id and service.
    let pipeline = match unchanged(|a, b| {
        same_lists_but_times(&a.plugins, &b.plugins, Plugin::same_but_times)
            && same_lists_but_times(&a.routes, &b.routes, Route::same_but_times)
    }) {
        Some(p) => p.pipeline.clone(),
        None => {
            let instances = shared
                .catalog
                .compile(&config, &shared.settings.plugins, &mut errors);
            Arc::new(gangway_pipeline::chain::build(
                &config,
                instances,
                &mut errors,
            ))
        }
    };
    // Compilers index routes and plugins as flat lists; name them as the file declared them.
    for e in &mut errors.0 {
        e.path = config.origins.locate(&e.path);
    }
    let (Some(router), Some(tls)) = (router, tls) else {
        return Err(errors);
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let (hash, identities) = match kept {
        Some(identities) => {
            config.consumers = Vec::new();
            config.keyauth_credentials = Vec::new();
            config.acls = Vec::new();
            (config.source_md5.clone().unwrap_or_default(), identities)
        }
        None => {
            let hash = config.source_md5.clone().unwrap_or_default();
            let identities = Arc::new(Identities::build(
                std::mem::take(&mut config.consumers),
                std::mem::take(&mut config.keyauth_credentials),
                std::mem::take(&mut config.acls),
            ));
            (hash, identities)
        }
    };
    // Targets no longer configured leave the registry (Kong drops their checkers on a
    // reload): it grew by every target ever configured, and one that came back kept its
    // old state.
    health.keep_only(balancers.iter().flat_map(|b| &b.targets).map(|t| &t.health));
    Ok(Snapshot {
        version,
        hash,
        compiled: Arc::new(Compiled {
            conn_policy: Arc::new(crate::conn_policy::connection_policy(
                &config,
                shared.settings,
            )),
            config,
            router,
            route_service,
            services,
            balancers,
            tls,
            pipeline,
            log_rows: Default::default(),
        }),
        identities,
    })
}

/// The targets of upstream `id`, in config order.
fn targets_of(config: &Config, id: Id) -> Vec<&Target> {
    config
        .targets
        .iter()
        .filter(|t| t.upstream.id == id)
        .collect()
}

/// `previous`'s balancer for `upstream` when neither the upstream nor its targets changed.
/// The ids of disabled services, in config order.
fn disabled_services(config: &Config) -> impl Iterator<Item = Id> + '_ {
    config.services.iter().filter(|s| !s.enabled).map(|s| s.id)
}

/// Whether route `i` leads to a disabled service (Kong's router skips those).
fn leads_to_disabled_service(config: &Config) -> impl Fn(usize) -> bool + '_ {
    let disabled: std::collections::HashSet<Id> = disabled_services(config).collect();
    move |i| {
        config.routes[i]
            .service
            .as_ref()
            .is_some_and(|s| disabled.contains(&s.id))
    }
}

fn unchanged_balancer(
    previous: &Compiled,
    upstream: &Upstream,
    targets: &[&Target],
) -> Option<Arc<Balancer>> {
    let i = previous
        .config
        .upstreams
        .iter()
        .position(|u| u.id == upstream.id)?;
    let before = &previous.config.upstreams[i];
    let same_targets = same_lists_but_times(
        &targets_of(&previous.config, upstream.id),
        targets,
        |a, b| a.same_but_times(b),
    );
    (before.same_but_times(upstream) && same_targets).then(|| previous.balancers[i].clone())
}

#[cfg(test)]
mod tests {
    use gangway_config::schema::{Field, Schema};
    use gangway_pipeline::{Catalog, Plugin, Spec};
    use md5::{Digest, Md5};

    /// key-auth and acl as names only: plugins that do nothing, with empty configs.
    fn stub_catalog() -> Catalog {
        struct Nothing;
        impl Plugin for Nothing {}
        static STUBS: [Spec; 3] = [
            Spec {
                name: "key-auth",
                priority: 1250,
                schema: || Schema::new("key-auth", Field::record(Vec::new())),
                build: |_| Ok(Box::new(Nothing)),
            },
            Spec {
                name: "acl",
                priority: 950,
                schema: || Schema::new("acl", Field::record(Vec::new())),
                build: |_| Ok(Box::new(Nothing)),
            },
            Spec {
                name: "correlation-id",
                priority: 1,
                schema: || {
                    Schema::new(
                        "correlation-id",
                        Field::record(vec![("header_name", Field::string())]),
                    )
                },
                build: |_| Ok(Box::new(Nothing)),
            },
        ];
        Catalog::new(&STUBS)
    }

    #[test]
    fn streaming_hash_equals_the_md5_of_the_json() {
        let config = gangway_config::declarative::load_str(
            "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://x\nconsumers:\n  - username: a\n    keyauth_credentials:\n      - key: k\n",
            &gangway_pipeline::Catalog::default(),
        )
        .expect("config");
        let json = serde_json::to_vec(&config).expect("serializes");
        let want: String = Md5::digest(&json)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(super::config_hash(&config), want);
    }

    #[test]
    fn a_shared_plugin_config_is_hashed_once_and_still_changes_the_hash() {
        let doc = |minute: u32| {
            let yaml = format!(
                "_format_version: \"3.0\"\nconsumers:\n  - username: a\n    plugins:\n      - name: correlation-id\n        config: {{header_name: X-{minute}}}\n  - username: b\n    plugins:\n      - name: correlation-id\n        config: {{header_name: X-{minute}}}\n"
            );
            gangway_config::declarative::load_str(&yaml, &stub_catalog()).expect("config")
        };
        let (one, again, other) = (doc(1), doc(1), doc(2));
        assert!(
            std::sync::Arc::ptr_eq(&one.plugins[0].config, &one.plugins[1].config),
            "equal configs are shared"
        );
        assert_eq!(super::config_hash(&one), super::config_hash(&again));
        assert_ne!(super::config_hash(&one), super::config_hash(&other));
        let full = serde_json::to_value(&one).expect("serializes");
        assert_eq!(
            full["plugins"][1]["config"]["header_name"], "X-1",
            "only the hash abbreviates"
        );
    }

    #[test]
    fn compile_errors_name_nested_routes_and_plugins_as_declared() {
        let config = gangway_config::declarative::load_str(
            r#"_format_version: "3.0"
routes:
  - name: flat
    paths: ["/flat"]
services:
  - name: s
    url: http://x
    routes:
      - name: ok
        paths: ["/ok"]
      - name: bad
        paths: ["/bad"]
        plugins:
          - name: key-auth
            ordering:
              after: {access: [acl]}
          - name: acl
            ordering:
              after: {access: [key-auth]}
"#,
            &stub_catalog(),
        )
        .expect("loads: the cycle is a compile-time problem");
        let errors = crate::compile_standalone(config, stub_catalog())
            .err()
            .expect("invalid");
        let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"services[0].routes[1]"), "{errors}");
        assert!(
            errors.to_string().contains(
                "services[0].routes[1]: plugin ordering has a cycle among: key-auth, acl"
            ),
            "{errors}"
        );
    }

    #[test]
    fn flat_paths_stay_flat() {
        let origins = gangway_config::model::Origins {
            routes: ["routes[0]", "services[2].routes[0]"].into_iter().collect(),
            plugins: ["consumers[1].plugins[0]"].into_iter().collect(),
        };
        assert_eq!(origins.locate("routes[0].paths[1]"), "routes[0].paths[1]");
        assert_eq!(
            origins.locate("routes[1].hosts[0]"),
            "services[2].routes[0].hosts[0]"
        );
        assert_eq!(
            origins.locate("plugins[0].config.x"),
            "consumers[1].plugins[0].config.x"
        );
        assert_eq!(origins.locate("plugins[7].name"), "plugins[7].name");
        assert_eq!(origins.locate("services[0].url"), "services[0].url");
    }

    #[test]
    fn a_reload_rebuilds_only_the_parts_whose_entities_changed() {
        use std::sync::Arc;
        let base = r#"_format_version: "3.0"
services:
  - name: s
    url: http://a
    routes:
      - name: r
        paths: ["/r"]
upstreams:
  - name: a
  - name: b
targets:
  - {upstream: a, target: "127.0.0.1:1"}
  - {upstream: b, target: "127.0.0.1:2"}
plugins:
  - name: key-auth
    route: r
"#;
        let load = |text: &str| {
            gangway_config::declarative::load_str(text, &stub_catalog()).expect("config")
        };
        let gateway = crate::standalone_gateway(load(base), stub_catalog()).expect("gateway");
        let reload = |text: &str| {
            let before = gateway.snapshot();
            let after = gateway.replace_config(|| Ok(load(text))).expect("reloads");
            (before, after)
        };

        // A later load of the same file stamps its entities with a later time: nothing is
        // rebuilt for that.
        let before = gateway.snapshot();
        let mut later = load(base);
        for r in &mut later.routes {
            (r.created_at, r.updated_at) = (r.created_at + 7, r.updated_at + 7);
        }
        for p in &mut later.plugins {
            (p.created_at, p.updated_at) = (p.created_at + 7, p.updated_at + 7);
        }
        for u in &mut later.upstreams {
            (u.created_at, u.updated_at) = (u.created_at + 7, u.updated_at + 7);
        }
        for t in &mut later.targets {
            (t.created_at, t.updated_at) = (t.created_at + 7.0, t.updated_at + 7.0);
        }
        let after = gateway.replace_config(|| Ok(later)).expect("reloads");
        assert!(Arc::ptr_eq(&before.router, &after.router), "routes kept");
        assert!(
            Arc::ptr_eq(&before.pipeline, &after.pipeline),
            "plugins kept"
        );
        assert!(Arc::ptr_eq(&before.balancers[0], &after.balancers[0]));
        assert!(Arc::ptr_eq(&before.balancers[1], &after.balancers[1]));

        let acl = base.replace("name: key-auth", "name: acl");
        let (before, after) = reload(&acl);
        assert!(
            !Arc::ptr_eq(&before.pipeline, &after.pipeline),
            "plugins rebuilt"
        );
        assert!(Arc::ptr_eq(&before.router, &after.router), "routes kept");
        assert!(Arc::ptr_eq(&before.tls, &after.tls), "certificates kept");
        assert!(Arc::ptr_eq(&before.balancers[0], &after.balancers[0]));
        assert!(Arc::ptr_eq(&before.balancers[1], &after.balancers[1]));

        let moved = acl.replace("127.0.0.1:2", "127.0.0.1:3");
        assert_eq!(gateway.shared.health.len(), 2);
        let (before, after) = reload(&moved);
        assert_eq!(
            gateway.shared.health.len(),
            2,
            "the removed target's state is forgotten"
        );
        assert!(
            Arc::ptr_eq(&before.balancers[0], &after.balancers[0]),
            "upstream a kept"
        );
        assert!(
            !Arc::ptr_eq(&before.balancers[1], &after.balancers[1]),
            "upstream b rebuilt with its new target"
        );
        assert!(Arc::ptr_eq(&before.router, &after.router));
        assert!(Arc::ptr_eq(&before.pipeline, &after.pipeline));

        let (before, after) = reload(&moved.replace(r#"paths: ["/r"]"#, r#"paths: ["/s"]"#));
        assert!(
            !Arc::ptr_eq(&before.router, &after.router),
            "routes rebuilt"
        );
        assert!(
            !Arc::ptr_eq(&before.pipeline, &after.pipeline),
            "chains follow the routes"
        );
        assert!(Arc::ptr_eq(&before.tls, &after.tls));
        assert!(Arc::ptr_eq(&before.balancers[1], &after.balancers[1]));
        assert_eq!(after.version, before.version + 1);
    }
}
