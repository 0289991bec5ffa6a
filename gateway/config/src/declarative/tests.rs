use super::*;

/// The loader with the test plugins.
fn load_str(text: &str) -> Result<Config, ConfigErrors> {
    super::load_str(text, &crate::plugins::TestPlugins)
}

fn errors_of(yaml: &str) -> Vec<String> {
    match load_str(yaml) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn nested_and_flat_forms_resolve_references_by_name_and_id() {
    let cfg = load_str(
        r#"
_format_version: "3.0"
services:
  - name: weather
    url: https://api.example.com:8443/v1
    routes:
      - name: forecast
        paths: ["/forecast"]
        plugins:
          - name: key-auth
consumers:
  - username: alice
    keyauth_credentials:
      - key: alice-key
    acls:
      - group: gold
routes:
  - name: flat
    service: weather
    hosts: ["example.com"]
keyauth_credentials:
  - consumer: alice
    key: second-key
    ttl: 60
upstreams:
  - name: pool.internal
    targets:
      - target: 10.0.0.1
      - target: "10.0.0.2:9000"
        weight: 50
"#,
    )
    .expect("valid config");
    let svc = &cfg.services[0];
    assert_eq!(
        (
            svc.protocol,
            svc.host.as_str(),
            svc.port,
            svc.path.as_deref()
        ),
        (model::Protocol::Https, "api.example.com", 8443, Some("/v1"))
    );
    assert_eq!(cfg.routes.len(), 2);
    assert!(
        cfg.routes
            .iter()
            .all(|r| r.service.map(|s| s.id) == Some(svc.id))
    );
    assert_eq!(
        cfg.plugins[0].route.map(|r| r.id),
        Some(
            cfg.routes
                .iter()
                .find(|r| r.name.as_deref() == Some("forecast"))
                .expect("route")
                .id
        )
    );
    assert_eq!(cfg.keyauth_credentials.len(), 2);
    assert!(
        cfg.keyauth_credentials
            .iter()
            .all(|k| k.consumer.id == cfg.consumers[0].id)
    );
    assert!(
        cfg.keyauth_credentials
            .iter()
            .any(|k| k.expires_at.is_some())
    );
    assert_eq!(&*cfg.acls[0].group, "gold");
    let targets: Vec<_> = cfg
        .targets
        .iter()
        .map(|t| (t.target.as_str(), t.weight))
        .collect();
    assert_eq!(targets, [("10.0.0.1:8000", 100), ("10.0.0.2:9000", 50)]);
}

use super::super::model;

#[test]
fn ids_are_deterministic_uuid5_from_the_endpoint_key() {
    let yaml = "_format_version: \"3.0\"\nservices:\n  - name: s1\n    url: http://x\n";
    let a = load_str(yaml).expect("a");
    let b = load_str(yaml).expect("b");
    assert_eq!(a.services[0].id, b.services[0].id);
    assert_eq!(a.services[0].id.get_version_num(), 5);
}

#[test]
fn every_error_is_collected_with_its_path() {
    let errs = errors_of(
        r#"
_format_version: "3.0"
services:
  - name: s1
    host: example.com
    port: 70000
    bogus: 1
    routes:
      - name: r1
        protocols: ["ftp"]
        paths: ["/a"]
      - name: r2
        protocols: ["http"]
consumers:
  - tags: ["x"]
keyauth_credentials:
  - consumer: nobody
    key: k
"#,
    );
    let joined = errs.join("\n");
    for want in [
        "services[0].port: value should be between 0 and 65535",
        "services[0].bogus: unknown field",
        "services[0].routes[0].protocols[0]: expected one of",
        "services[0].routes[1]: must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'http'",
        "consumers[0]: at least one of these fields must be non-empty: 'custom_id', 'username'",
        "keyauth_credentials[0].consumer: the foreign key cannot be resolved with 'nobody'",
    ] {
        assert!(joined.contains(want), "missing {want:?} in:\n{joined}");
    }
}

#[test]
fn format_versions_and_unknown_keys() {
    assert!(
        errors_of("services: []\n")
            .iter()
            .any(|e| e.contains("_format_version: required field missing"))
    );
    assert!(
        errors_of("_format_version: \"9.9\"\n")
            .iter()
            .any(|e| e.contains("unsupported declarative configuration _format_version"))
    );
    assert!(
        errors_of("_format_version: \"3.0\"\nservicez: []\n")
            .iter()
            .any(|e| e == "servicez: unknown field")
    );
    assert!(
        errors_of("_format_version: \"3.0\"\nvaults: []\n")
            .iter()
            .any(|e| e.contains("not supported"))
    );
}

#[test]
fn old_format_versions_gain_the_regex_marker() {
    let cfg = load_str(
        "_format_version: \"1.1\"\nservices:\n  - name: s\n    url: http://x\n    routes:\n      - paths: [\"/plain\", \"/users/\\\\d+\"]\n",
    )
    .expect("config");
    assert_eq!(
        cfg.routes[0].paths.as_deref(),
        Some(&["/plain".to_string(), "~/users/\\d+".to_string()][..])
    );
}

#[test]
fn duplicates_are_uniqueness_violations() {
    let errs = errors_of(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://a\n  - name: s\n    url: http://b\n",
    );
    assert!(
        errs.iter().any(|e| e.contains(
            "uniqueness violation: 'services' entity with name set to 's' already declared"
        )),
        "{errs:?}"
    );
}

#[test]
fn upstream_healthchecks_merge_over_kong_defaults() {
    let cfg = load_str(
        "_format_version: \"3.0\"\nupstreams:\n  - name: u\n    hash_on: header\n    hash_on_header: X-User\n    healthchecks:\n      passive:\n        unhealthy:\n          tcp_failures: 3\n",
    )
    .expect("config");
    let u = &cfg.upstreams[0];
    assert_eq!(u.healthchecks.passive.unhealthy.tcp_failures, 3);
    assert_eq!(
        u.healthchecks.passive.unhealthy.http_statuses,
        [429, 500, 503],
        "defaults kept"
    );
    assert_eq!(
        u.algorithm,
        model::Algorithm::ConsistentHashing,
        "hash_on sets the algorithm"
    );
}

#[test]
fn route_hosts_and_snis_follow_kongs_rules() {
    let errs = errors_of(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://x\n    routes:\n      - hosts: [\"a.*.com\", \"ok.example.com:8000\", \"*.fine.com\"]\n        snis: [\"x.com\"]\n        protocols: [\"http\"]\n",
    );
    let joined = errs.join("\n");
    assert!(joined.contains("hosts[0]: invalid wildcard"), "{joined}");
    assert!(
        !joined.contains("hosts[1]") && !joined.contains("hosts[2]"),
        "{joined}"
    );
    assert!(joined.contains("snis: 'snis' can only be set"), "{joined}");
}

#[test]
fn sources_and_destinations_are_stream_only_and_checked() {
    let errs = errors_of(
        r#"_format_version: "3.0"
services:
  - name: s
    url: http://x
    routes:
      - paths: ["/a"]
        sources: [{ip: 10.0.0.0/8}]
      - paths: ["/b"]
        protocols: [grpc]
        destinations: [{port: 80}]
      - protocols: [tcp]
        sources: [{ip: 10.0.0.1, port: 80}, {ip: "not-an-ip"}, {}, {port: 70000}]
"#,
    );
    assert_eq!(
        errs,
        [
            "services[0].routes[0].sources: cannot set 'sources' when 'protocols' is 'http' or 'https'",
            "services[0].routes[1].destinations: cannot set 'destinations' when 'protocols' is 'grpc' or 'grpcs'",
            "services[0].routes[2].sources[1].ip: invalid ip or cidr range: 'not-an-ip'",
            "services[0].routes[2].sources[2]: at least one of these fields must be non-empty: 'ip', 'port'",
            "services[0].routes[2].sources[3].port: value should be between 0 and 65535",
        ]
    );
    let cfg = load_str(
        "_format_version: \"3.0\"\nroutes:\n  - protocols: [tcp]\n    sources: [{ip: 10.0.0.1, port: 80}]\n",
    )
    .expect("a stream route with a source is valid");
    assert_eq!(
        cfg.routes[0].sources,
        Some(vec![model::CidrPort {
            ip: Some("10.0.0.1".into()),
            port: Some(80)
        }])
    );
}

#[test]
fn top_level_meta_keys_are_type_checked() {
    let ok = load_str("_format_version: \"3.0\"\n_transform: false\n_comment: hi\n_ignore: []\n");
    assert!(ok.is_ok(), "{ok:?}");
    let errs = load_str("_format_version: \"3.0\"\n_transform: maybe\n_comment: [1]\n")
        .expect_err("bad meta keys")
        .to_string();
    assert!(errs.contains("_transform: expected a boolean"), "{errs}");
    assert!(errs.contains("_comment: expected a string"), "{errs}");
}

#[test]
fn names_follow_kongs_utf8_name_rule() {
    let errs = load_str(
        "_format_version: \"3.0\"\nservices:\n  - name: \"bad name\"\n    url: http://x\n    routes:\n      - name: caf\u{00e9}-ok\n        paths: [\"/\"]\n",
    )
    .expect_err("space in a name")
    .to_string();
    assert!(
        errs.contains("services[0].name: invalid value 'bad name': the only accepted ascii characters are alphanumerics or ., -, _, and ~"),
        "{errs}"
    );
    assert!(!errs.contains("routes"), "UTF-8 is allowed: {errs}");
}

#[test]
fn plain_route_paths_must_be_normalized() {
    let errs = load_str(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://x\n    routes:\n      - name: r\n        paths: [\"/a/../b\", \"/%7Euser\", \"/ok/%2F\", \"~/re/../x\"]\n",
    )
    .expect_err("non-normalized paths")
    .to_string();
    assert!(
        errs.contains("routes[0].paths[0]: non-normalized path, consider use '/b' instead"),
        "{errs}"
    );
    assert!(
        errs.contains("routes[0].paths[1]: non-normalized path, consider use '/~user' instead"),
        "{errs}"
    );
    assert!(
        !errs.contains("paths[2]"),
        "reserved triplets stay encoded: {errs}"
    );
    assert!(
        !errs.contains("paths[3]"),
        "regex paths are not normalized: {errs}"
    );
}

/// Entities a database holds: one service, one consumer.
struct Stored;

impl Existing for Stored {
    fn resolve(&self, kind: &str, key: &str) -> Option<Uuid> {
        let known = match kind {
            "services" => ("stored-service", Uuid::from_u128(1)),
            "consumers" => ("stored-consumer", Uuid::from_u128(2)),
            _ => return None,
        };
        (key == known.0 || key == known.1.to_string()).then_some(known.1)
    }
}

#[test]
fn fragments_resolve_references_in_what_already_exists() {
    let doc = serde_json::json!({
        "_format_version": "3.0",
        "routes": [{"name": "r", "paths": ["/"], "service": {"name": "stored-service"}}],
        "keyauth_credentials": [{"key": "k", "consumer": {"id": Uuid::from_u128(2).to_string()}}],
    });
    let config = load_fragment(doc, &Stored, &crate::plugins::TestPlugins).expect("valid");
    assert_eq!(
        config.routes[0].service.map(|s| s.id),
        Some(Uuid::from_u128(1))
    );
    assert_eq!(
        config.keyauth_credentials[0].consumer.id,
        Uuid::from_u128(2)
    );

    let unknown = serde_json::json!({
        "_format_version": "3.0",
        "routes": [{"name": "r", "paths": ["/"], "service": {"name": "nope"}}],
    });
    let errors = load_fragment(unknown, &Stored, &crate::plugins::TestPlugins)
        .expect_err("unresolvable")
        .to_string();
    assert!(
        errors.contains("routes[0].service: the foreign key cannot be resolved with 'nope' for an existing 'services' entity"),
        "{errors}"
    );
}

#[test]
fn entities_with_a_cache_key_get_kongs_ids_from_it() {
    let text = r#"_format_version: "3.0"
services:
  - name: s
    url: http://x
    routes:
      - name: r
        paths: ["/"]
        plugins:
          - name: key-auth
consumers:
  - username: alice
    acls:
      - group: gold
acls:
  - consumer: alice
    group: silver
"#;
    let a = load_str(text).expect("valid");
    let b = load_str(text).expect("valid");
    let route = a.routes[0].id;
    let ns = |kind| namespace(kind);
    assert_eq!(
        a.plugins[0].id,
        Uuid::new_v5(
            &ns("plugins"),
            format!("plugins:*:key-auth:{route}::").as_bytes()
        )
    );
    let alice = a.consumers[0].id;
    let gold = a.acls.iter().find(|x| &*x.group == "gold").expect("gold");
    assert_eq!(
        gold.id,
        Uuid::new_v5(&ns("acls"), format!("acls:*:{alice}:gold").as_bytes())
    );
    let silver = a
        .acls
        .iter()
        .find(|x| &*x.group == "silver")
        .expect("silver");
    assert_eq!(silver.id, Uuid::new_v5(&ns("acls"), b"acls:*:alice:silver"));
    // Deterministic: the same file gives the same ids (what makes db_import idempotent).
    assert_eq!(a.plugins[0].id, b.plugins[0].id);
    let ids = |c: &Config| c.acls.iter().map(|x| x.id).collect::<Vec<_>>();
    assert_eq!(ids(&a), ids(&b));
}

#[test]
fn a_document_built_entity_by_entity_loads_as_the_whole_document_does() {
    let at = serde_json::json!(1_700_000_000);
    let entities: Vec<(&str, Value)> = vec![
        (
            "services",
            serde_json::json!({"name": "s", "url": "http://a", "created_at": at, "updated_at": at}),
        ),
        (
            "routes",
            serde_json::json!({"name": "r", "service": "s", "paths": ["/a"], "created_at": at, "updated_at": at}),
        ),
        (
            "consumers",
            serde_json::json!({"username": "ann", "created_at": at, "updated_at": at}),
        ),
        (
            "consumers",
            serde_json::json!({"username": "bob", "custom_id": "b-1", "created_at": at, "updated_at": at}),
        ),
        (
            "keyauth_credentials",
            serde_json::json!({"consumer": "ann", "key": "k-ann", "created_at": at}),
        ),
        (
            "acls",
            serde_json::json!({"consumer": "bob", "group": "gold", "created_at": at}),
        ),
    ];
    let assemble = |extra: Option<(&str, Value)>| {
        let mut builder = DocumentBuilder::new();
        let mut whole = Map::new();
        whole.insert("_format_version".into(), "3.0".into());
        for (kind, entity) in entities.iter().cloned().chain(extra) {
            builder.push(kind, entity.clone());
            let list = whole
                .entry(kind)
                .or_insert_with(|| Value::Array(Vec::new()));
            list.as_array_mut().expect("list").push(entity);
        }
        builder.begin("upstreams");
        whole.insert("upstreams".into(), Value::Array(Vec::new()));
        (builder, Value::Object(whole))
    };

    let (builder, whole) = assemble(None);
    let built = builder.finish(&crate::plugins::TestPlugins).expect("valid");
    let parsed = parse_value(whole, &crate::plugins::TestPlugins).expect("valid");
    assert_eq!(built, parsed);
    assert_eq!(built.consumers.len(), 2);
    assert_eq!(built.keyauth_credentials.len(), 1);

    let duplicate = serde_json::json!({"consumer": "bob", "key": "k-ann", "created_at": at});
    let (builder, whole) = assemble(Some(("keyauth_credentials", duplicate)));
    let built = builder
        .finish(&crate::plugins::TestPlugins)
        .expect_err("duplicate key");
    let parsed = parse_value(whole, &crate::plugins::TestPlugins).expect_err("duplicate key");
    assert_eq!(built, parsed);
    assert!(
        built.to_string().contains("uniqueness violation"),
        "{built}"
    );
}

/// `config` with its plugins (and their paths) in id order: a builder keeps plugin rows
/// in the usual shape apart from the rest, so its order may differ from a whole document's.
fn plugins_by_id(mut config: Config) -> Config {
    let paths: Vec<String> = config.origins.plugins.iter().map(str::to_owned).collect();
    let mut pairs: Vec<_> = std::mem::take(&mut config.plugins)
        .into_iter()
        .zip(paths)
        .collect();
    pairs.sort_by_key(|(p, _)| p.id);
    let (plugins, paths): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
    config.plugins = plugins;
    config.origins.plugins = paths.into_iter().collect();
    config
}

/// The problems, one per line, sorted.
fn sorted_lines(errors: &ConfigErrors) -> Vec<String> {
    let mut lines: Vec<String> = errors.to_string().lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

#[test]
fn plugin_rows_load_as_whole_plugins_and_share_equal_configs() {
    let at = 1_700_000_000i64;
    let id = |name: &str| Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes());
    let consumer = |name: &str| serde_json::json!({"username": name, "id": id(name).to_string(), "created_at": at, "updated_at": at});
    // (consumer, plugin, config text or none, the other fields as stored)
    let usual =
        r#"{"enabled": true, "protocols": ["http", "https"], "tags": ["plan"], "ordering": null}"#;
    let rows = [
        ("a", "acl", Some("{}"), usual),
        ("b", "acl", Some("{}"), usual),
        ("c", "acl", None, r#"{"enabled": false, "tags": null}"#),
        ("a", "request-termination", Some("{}"), "{}"),
        // Refused, each by the generic code or the rows' own checks, with the same words.
        (
            "b",
            "request-termination",
            Some(r#"{"status_code": 500}"#),
            "{}",
        ),
        ("zed", "acl", Some("{}"), "{}"),
        (
            "c",
            "request-termination",
            Some("{}"),
            r#"{"enabled": "yes"}"#,
        ),
        ("c", "rate-limiting", Some("{}"), "{}"),
        (
            "a",
            "correlation-id",
            None,
            r#"{"protocols": ["http", "gopher"]}"#,
        ),
    ];
    let assemble = |rows: &[(&str, &str, Option<&str>, &str)]| {
        let mut builder = DocumentBuilder::new();
        let mut whole = Map::new();
        whole.insert("_format_version".into(), "3.0".into());
        let mut consumers = Vec::new();
        for name in ["a", "b", "c"] {
            builder.push("consumers", consumer(name));
            consumers.push(consumer(name));
        }
        whole.insert("consumers".into(), Value::Array(consumers));
        let mut list = Vec::new();
        for (owner, name, config, rest) in rows {
            let plugin_id = id(&format!("{owner}{name}"));
            let mut entity: Map<String, Value> = serde_json::from_str(rest).expect("JSON");
            entity.insert("id".into(), plugin_id.to_string().into());
            entity.insert("name".into(), (*name).into());
            entity.insert(
                "consumer".into(),
                serde_json::json!({"id": id(owner).to_string()}),
            );
            entity.insert("created_at".into(), at.into());
            entity.insert("updated_at".into(), at.into());
            let shared = config.map(|text| {
                let value: Value = serde_json::from_str(text).expect("JSON");
                entity.insert("config".into(), value);
                builder.add_config(text).expect("JSON")
            });
            let row = PluginRow {
                id: plugin_id,
                name,
                instance_name: None,
                route: None,
                service: None,
                consumer: Some(id(owner)),
                rest,
                created_at: Some(at),
            };
            builder.push_plugin_row(row, shared).expect("an object");
            list.push(Value::Object(entity));
        }
        whole.insert("plugins".into(), Value::Array(list));
        (builder, Value::Object(whole))
    };

    let (builder, whole) = assemble(&rows[..4]);
    let built = builder.finish(&crate::plugins::TestPlugins).expect("valid");
    let parsed = parse_value(whole, &crate::plugins::TestPlugins).expect("valid");
    assert_eq!(plugins_by_id(built.clone()), plugins_by_id(parsed));
    assert_eq!(built.plugins.len(), 4);
    let config = |i: usize| std::sync::Arc::as_ptr(&built.plugins[i].config);
    assert_eq!(config(0), config(1), "equal configs are one copy");
    assert_eq!(built.plugins[0].tags, Some(vec!["plan".to_owned()]));

    let (builder, whole) = assemble(&rows);
    let built = builder
        .finish(&crate::plugins::TestPlugins)
        .expect_err("refused");
    let parsed = parse_value(whole, &crate::plugins::TestPlugins).expect_err("refused");
    assert_eq!(sorted_lines(&built), sorted_lines(&parsed));
    for expected in [
        "plugins[4].config.status_code",
        "the foreign key cannot be resolved",
        "plugins[6].enabled",
        "plugin 'rate-limiting' not enabled",
        "plugins[8].protocols[1]",
    ] {
        assert!(built.to_string().contains(expected), "{expected}: {built}");
    }
    assert!(DocumentBuilder::new().add_config("{").is_err());
    let row = PluginRow {
        id: id("x"),
        name: "acl",
        instance_name: None,
        route: None,
        service: None,
        consumer: None,
        rest: "[]",
        created_at: None,
    };
    assert!(DocumentBuilder::new().push_plugin_row(row, None).is_err());
}

#[test]
fn dynamic_ordering_and_consumer_scoped_plugins_never_load_together() {
    let doc = |with_consumer_plugin: bool| {
        let mut consumer = serde_json::json!({"username": "ann"});
        if with_consumer_plugin {
            consumer["plugins"] = serde_json::json!([{"name": "request-termination"}]);
        }
        serde_json::json!({
            "_format_version": "3.0",
            "plugins": [{"name": "acl", "ordering": {"before": {"access": ["key-auth"]}}}],
            "consumers": [consumer],
        })
    };
    assert!(parse_value(doc(false), &crate::plugins::TestPlugins).is_ok());
    let err = parse_value(doc(true), &crate::plugins::TestPlugins).expect_err("refused");
    assert_eq!(
        err.to_string(),
        "plugins[0].ordering: dynamic plugin ordering cannot be combined with consumer-scoped plugins"
    );
}

#[test]
fn uuid_v5_is_the_uuid_crates_v5() {
    for (ns, name) in [
        (Uuid::NAMESPACE_DNS, "example.com"),
        (namespace("consumers"), "user-0"),
        (
            namespace("plugins"),
            "plugins:*:rate-limiting:::0b7a4b0e-6f3a-4c2d-9e1f-2a3b4c5d6e7f",
        ),
        (Uuid::nil(), ""),
    ] {
        assert_eq!(
            uuid_v5(&ns, name.as_bytes()),
            Uuid::new_v5(&ns, name.as_bytes())
        );
    }
}

#[test]
fn a_files_config_hash_is_the_md5_of_its_text_whichever_reader_loads_it() {
    let dir = std::env::temp_dir().join(format!("gangway-md5-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let usual = "_format_version: \"3.0\"\nconsumers:\n  - username: a\n";
    // Declined by the scanner (a block scalar), then by libyaml's reader (an anchor).
    let libyaml =
        "_format_version: \"3.0\"\nconsumers:\n  - username: a\n    custom_id: |\n      x\n";
    let generic = "_format_version: \"3.0\"\nconsumers:\n  - &a\n    username: a\n";
    for (name, text) in [("usual", usual), ("libyaml", libyaml), ("generic", generic)] {
        let path = dir.join(format!("{name}.yml"));
        std::fs::write(&path, text).expect("write");
        let config = load_file(&path, &crate::plugins::TestPlugins).expect(name);
        assert_eq!(config.consumers.len(), 1, "{name}");
        assert_eq!(config.source_md5, Some(text_md5(text)), "{name}");
    }
    // A directory opens, but neither reads nor hashes: the generic loader's error.
    let err = load_file(&dir, &crate::plugins::TestPlugins).expect_err("a directory");
    assert!(err.to_string().contains("cannot read"), "{err}");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// Kong dry-runs each route regex with the router's options; one the router cannot compile
/// is refused where the route is parsed.
#[test]
fn route_regexes_the_router_cannot_compile_are_refused() {
    let errs = load_str(
        "_format_version: \"3.0\"\nroutes:\n  - name: r\n    paths: [\"~/ok/(?<id>\\\\d+)$\", \"~/a(\"]\n    headers:\n      x-v: [\"~*^v[0-9]$\", \"~*a{2,1}\", \"(plain\"]\n",
    )
    .expect_err("bad regexes")
    .to_string();
    assert!(
        errs.contains("routes[0].paths[1]: invalid regex: '/a(' (regex parse error:"),
        "{errs}"
    );
    assert!(
        errs.contains("routes[0].headers.x-v[1]: invalid regex: 'a{2,1}'"),
        "{errs}"
    );
    assert!(
        !errs.contains("paths[0]") && !errs.contains("x-v[0]") && !errs.contains("x-v[2]"),
        "valid regexes and plain values pass: {errs}"
    );
}

/// Kong's `typedefs.tag`: printable ASCII but `,` and `/` (which `?tags=` splits on), or
/// UTF-8; never empty. Every entity took any string.
#[test]
fn tags_are_checked_as_kong_checks_them() {
    let errs = load_str(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://x\n    tags: [\"team,x\", \"ok tag\", \"été\"]\n    routes:\n      - name: r\n        paths: [\"/\"]\n        tags: [\"\"]\n        plugins:\n          - name: key-auth\n            tags: [\"a/b\"]\nconsumers:\n  - username: u\n    tags: [\"tab\\there\"]\n",
    )
    .expect_err("bad tags")
    .to_string();
    for (path, tag) in [
        ("services[0].tags[0]", "team,x"),
        ("routes[0].tags[0]", ""),
        ("tags[0]", "a/b"),
        ("consumers[0].tags[0]", "tab\there"),
    ] {
        let want = format!(
            "{path}: invalid tag '{tag}': expected printable ascii (except `,` and `/`) or valid utf-8 sequences"
        );
        assert!(errs.contains(&want), "{want}\n{errs}");
    }
    assert!(
        !errs.contains("tags[1]") && !errs.contains("tags[2]"),
        "{errs}"
    );
}

/// Kong's checks on a service's host, path and url scheme, and on route methods; each of
/// these was taken and failed later, at proxy time or never matching.
#[test]
fn service_hosts_paths_schemes_and_route_methods_are_checked() {
    let errs = load_str(
        "_format_version: \"3.0\"\nservices:\n  - name: a\n    host: \"bad host\"\n  - name: b\n    url: ftp://x.example\n  - name: c\n    host: c.example\n    path: \"/a b\"\n    routes:\n      - name: r\n        paths: [\"/\"]\n        methods: [\"GET\", \"post\"]\n",
    )
    .expect_err("bad values")
    .to_string();
    for want in [
        "services[0].host: invalid value: bad host",
        "services[1].protocol: expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp",
        "services[2].path: invalid path: '/a b' (characters outside of the reserved list of RFC 3986 found)",
        "routes[0].methods[1]: invalid value: post",
    ] {
        assert!(errs.contains(want), "{want}\n{errs}");
    }
    assert!(!errs.contains("methods[0]"), "{errs}");
}

/// Kong's conditional checks on a service's protocol: the upstream TLS fields need https
/// or tls (on an http service they were taken and did nothing), stream and gRPC services
/// take no path, and CA ids are UUIDs (others were dropped without a word).
#[test]
fn service_fields_that_need_another_protocol_are_refused() {
    let errs = load_str(
        "_format_version: \"3.0\"\nservices:\n  - name: a\n    url: http://a.example\n    tls_verify: true\n    tls_verify_depth: 2\n  - name: b\n    url: grpc://b.example:50051/x\n  - name: c\n    url: https://c.example\n    tls_verify: true\n    ca_certificates: [\"not-a-uuid\"]\n",
    )
    .expect_err("fields the protocol does not take")
    .to_string();
    for want in [
        "services[0].tls_verify: value must be null",
        "services[0].tls_verify_depth: value must be null",
        "services[0]: failed conditional validation given value of field 'protocol'",
        "services[1].path: value must be null",
        "services[2].ca_certificates[0]: expected a valid UUID",
    ] {
        assert!(errs.contains(want), "{want}\n{errs}");
    }
    assert!(!errs.contains("services[2].tls_verify"), "{errs}");
    load_str(
        "_format_version: \"3.0\"\nservices:\n  - name: t\n    protocol: tls\n    host: t.example\n    port: 443\n    tls_verify: true\n  - name: h\n    url: https://h.example\n    tls_verify: false\n    tls_verify_depth: 3\n",
    )
    .expect("https and tls services take them");
}
