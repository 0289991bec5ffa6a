//! The fast path must give what the generic path gives: the same entities, the same errors
//! in the same order, with the same paths.

use serde_json::Value;

use super::super::node::Node;
use super::super::{load_text, parse_value_with};
use super::{Fast, Run, list};
use crate::plugins::TestPlugins;
use crate::{Config, ConfigErrors};

const NOW: i64 = 1_700_000_000;

/// Replaces what is random by design (uuid4 ids, generated keys) with fixed markers.
fn normalised(config: &Config) -> (Value, Vec<Option<i64>>) {
    fn walk(v: &mut Value) {
        match v {
            Value::String(s)
                if uuid::Uuid::parse_str(s).is_ok_and(|u| u.get_version_num() == 4) =>
            {
                *s = "v4".into();
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            Value::Object(o) => o.values_mut().for_each(walk),
            _ => {}
        }
    }
    let mut json = serde_json::to_value(config).expect("serializes");
    walk(&mut json);
    for cred in json["keyauth_credentials"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        if cred["id"] == "v4" {
            cred["key"] = "random".into();
        }
    }
    let expiry = config
        .keyauth_credentials
        .iter()
        .map(|k| k.expires_at.map(std::num::NonZeroI64::get))
        .collect();
    (json, expiry)
}

fn outcome(r: &Result<Config, ConfigErrors>) -> Result<(Value, Vec<Option<i64>>), Vec<String>> {
    match r {
        Ok(c) => Ok(normalised(c)),
        Err(e) => Err(e.0.iter().map(ToString::to_string).collect()),
    }
}

/// Loads `text` through the streaming fast path and through the generic path (serde_norway,
/// every element a `Value`), and asserts both agree; returns the fast result.
fn same(text: &str) -> Result<Config, ConfigErrors> {
    let fast = load_text(text, NOW, true, &TestPlugins);
    let value: Value = serde_norway::from_str(text).expect("valid YAML");
    let generic = parse_value_with(value.clone(), NOW, false, &TestPlugins, None);
    assert_eq!(outcome(&fast), outcome(&generic), "for:\n{text}");
    let fast_from_value = parse_value_with(value, NOW, true, &TestPlugins, None);
    assert_eq!(
        outcome(&fast_from_value),
        outcome(&generic),
        "from a value:\n{text}"
    );
    fast
}

#[test]
fn clean_consumers_match_the_generic_path() {
    let cfg = same(
        r#"
_format_version: "3.0"
_comment: x
consumers:
  - username: alice
    custom_id: A-1
    tags: [gold, eu]
    created_at: 1600000000
    updated_at: 5
    _comment: ignored
    keyauth_credentials:
      - key: alice-1
        ttl: 60
        tags: [t]
      - key: alice-2
        ttl: 0
        consumer: whatever
        created_at: 7
      - id: 1b2f6b8e-5a2c-4b8a-9a4e-3f6d1c2b4a10
    acls:
      - group: gold
        tags: [a]
      - group: silver
        created_at: 9
  - custom_id: only-custom
    keyauth_credentials: []
  - id: 6a3c3f0e-0b1e-4f8e-9d3a-2c1b0a9f8e7d
    username: bob
    tags: null
    created_at: null
    keyauth_credentials:
      - key: bob-1
        ttl: null
keyauth_credentials:
  - consumer: alice
    key: flat-1
  - consumer: A-1
    key: flat-2
  - consumer: 6a3c3f0e-0b1e-4f8e-9d3a-2c1b0a9f8e7d
    key: flat-3
acls:
  - consumer: bob
    group: bronze
"#,
    )
    .expect("valid");
    assert_eq!(cfg.consumers.len(), 3);
    assert_eq!(cfg.keyauth_credentials.len(), 7);
    assert_eq!(cfg.acls.len(), 3);
    assert_eq!(
        cfg.keyauth_credentials[0].expires_at.map(|e| e.get()),
        Some(NOW + 60)
    );
    assert_eq!(cfg.consumers[0].created_at, 1_600_000_000);
    assert_eq!(cfg.consumers[0].updated_at, NOW);
}

#[test]
fn errors_match_in_order_and_path() {
    same(
        r#"
_format_version: "3.0"
keyauth_credentials:
  - consumer: nobody
    key: dup
  - consumer: carol
    key: dup
  - consumer: {username: carol}
    key: k-obj
  - key: no-consumer
  - consumer: carol
    key: bad-ttl
    ttl: -1
  - "not a record"
consumers:
  - username: carol
    keyauth_credentials:
      - key: dup
      - key: c-2
        bogus: 1
  - username: carol
    custom_id: x
  - username: dave
    custom_id: x
    plugins:
      - name: request-termination
    keyauth_credentials:
      - key: c-2
    acls:
      - group: g
  - username: erin
    id: not-a-uuid
  - username: null
  - 5
  - username: frank
    keyauth_credentials: null
  - username: gina
    acls:
      - tags: [x]
  - username: hank
    created_at: -5
  - username: ivan
    tags: [1]
acls:
  - consumer: nobody
    group: g
  - consumer: ivan
    group: g
  - consumer: ivan
"#,
    )
    .expect_err("invalid");
}

#[test]
fn lists_of_the_wrong_shape_match() {
    for text in [
        "_format_version: \"3.0\"\nconsumers: {}\n",
        "_format_version: \"3.0\"\nconsumers: null\n",
        "_format_version: \"3.0\"\nconsumers: []\nacls: []\nkeyauth_credentials: []\n",
        "_format_version: \"3.0\"\nacls: 5\nkeyauth_credentials: [1, [], {}]\n",
        "_format_version: \"3.0\"\nconsumers:\n  - username: a\n    acls: {}\n",
        "_format_version: \"3.0\"\nconsumers:\n  - username: a\n    username: b\n  - username: c\n    keyauth_credentials:\n      - key: k\n        key: k2\n",
    ] {
        let _ = same(text);
    }
}

#[test]
fn json_and_fallback_documents_match() {
    same(
        r#"{"_format_version": "3.0", "consumers": [{"username": "a", "keyauth_credentials": [{"key": "k"}]}, {"username": "a"}]}"#,
    )
    .expect_err("duplicate username");
    // Anchors send the whole text through serde_norway; the elements still take the fast
    // path from the parsed value.
    let cfg = same(
        "_format_version: \"3.0\"\nconsumers:\n  - username: a\n    tags: &t [x]\n  - username: b\n    tags: *t\n",
    )
    .expect("valid");
    assert_eq!(cfg.consumers[1].tags.as_ref().map(|t| t.len()), Some(1));
}

#[test]
fn generated_keys_and_ids_match() {
    let cfg = same(
        "_format_version: \"3.0\"\nconsumers:\n  - custom_id: c\n    keyauth_credentials:\n      - ttl: 5\n",
    )
    .expect("valid");
    let key = &cfg.keyauth_credentials[0].key;
    assert_eq!(key.len(), 32);
    assert!(key.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(cfg.consumers[0].id.get_version_num(), 4);
}

#[test]
fn files_load_as_their_text_does() {
    let dir = std::env::temp_dir().join(format!("gangway-fast-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let good = dir.join("good.yml");
    let text = "_format_version: \"3.0\"\nconsumers:\n  - username: a\n    keyauth_credentials:\n      - key: k\n  - username: a\n";
    std::fs::write(&good, text).expect("write");
    let from_file = super::super::load_file(&good, &TestPlugins);
    assert_eq!(
        outcome(&from_file),
        outcome(&super::super::load_str(text, &TestPlugins))
    );
    let bad = dir.join("bad.yml");
    std::fs::write(&bad, b"_format_version: \"3.0\"\n_comment: \"\xff\"\n").expect("write");
    let errors = super::super::load_file(&bad, &TestPlugins).expect_err("not UTF-8");
    assert!(
        errors.0[0].message.starts_with("cannot read") && errors.0[0].message.contains("UTF-8"),
        "{errors}"
    );
    let missing =
        super::super::load_file(&dir.join("missing.yml"), &TestPlugins).expect_err("missing");
    assert!(missing.0[0].message.starts_with("cannot read"), "{missing}");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn the_million_entity_types_stay_compact() {
    use crate::model::{Acl, Consumer, KeyauthCredential};
    // Every byte here is a megabyte per million consumers.
    assert_eq!(size_of::<Consumer>(), 72);
    assert_eq!(size_of::<KeyauthCredential>(), 72);
    assert_eq!(size_of::<Acl>(), 64);
}

#[test]
fn top_level_credentials_and_acls_alone_match() {
    let cfg = same(
        r#"
_format_version: "3.0"
consumers:
  - username: a
    custom_id: ca
  - username: b
    plugins:
      - name: request-termination
keyauth_credentials:
  - consumer: a
    key: k1
  - consumer: ca
    key: k2
  - consumer: b
    key: k3
"#,
    )
    .expect("valid");
    assert_eq!(cfg.keyauth_credentials.len(), 3);
    same(
        r#"
_format_version: "3.0"
consumers:
  - username: a
keyauth_credentials:
  - consumer: a
    key: k1
  - consumer: ghost
    key: k2
  - consumer: a
    key: k2
  - consumer: a
    key: k1
acls:
  - consumer: ghost
    group: g
  - consumer: a
    group: g
  - consumer: spook
    group: h
"#,
    )
    .expect_err("unresolved and repeated");
}

#[test]
fn consumers_referenced_by_id_maps_take_the_fast_path() {
    let text = r#"
_format_version: "3.0"
consumers:
  - id: 6a3c3f0e-0b1e-4f8e-9d3a-2c1b0a9f8e7d
    username: a
keyauth_credentials:
  - consumer: {id: 6a3c3f0e-0b1e-4f8e-9d3a-2c1b0a9f8e7d}
    key: k1
acls:
  - consumer: {id: 6a3c3f0e-0b1e-4f8e-9d3a-2c1b0a9f8e7d}
    group: g
"#;
    let cfg = same(text).expect("valid");
    assert_eq!(
        cfg.keyauth_credentials[0].consumer,
        cfg.consumers[0].id.into()
    );
    assert_eq!(cfg.acls[0].consumer, cfg.consumers[0].id.into());

    let value: Value = serde_norway::from_str(text).expect("valid YAML");
    let mut fast = Fast::new(NOW);
    for kind in ["keyauth_credentials", "acls"] {
        for (i, element) in value[kind].as_array().expect("list").iter().enumerate() {
            fast.push(kind, i, Node::from_value(element.clone()));
        }
        let runs = &list(&fast.lists, kind).expect("list seen").runs;
        assert!(
            matches!(runs.as_slice(), [Run::Fast { count: 1, .. }]),
            "{kind} by {{id}} stays off the generic path"
        );
    }

    same(
        r#"
_format_version: "3.0"
consumers:
  - username: a
keyauth_credentials:
  - consumer: {id: 00000000-0000-4000-8000-000000000000}
    key: ghost
  - consumer: {id: not-a-uuid}
    key: bad-id
  - consumer: {id: 6a3c3f0e-0b1e-4f8e-9d3a-2c1b0a9f8e7d, username: a}
    key: two-fields
acls:
  - consumer: {username: a}
    group: g
"#,
    )
    .expect_err("unknown and malformed references");
}

#[test]
fn consumers_with_nested_plugins_stay_fast_and_match() {
    let text = r#"
_format_version: "3.0"
plugins:
  - name: correlation-id
consumers:
  - username: a
    keyauth_credentials: [{key: ka}]
    plugins:
      - name: request-termination
        config: {}
      - name: acl
        id: 0b7a4b0e-6f3a-4c2d-9e1f-2a3b4c5d6e7f
  - username: b
    plugins: []
  - username: c
    plugins:
      - name: request-termination
"#;
    let cfg = same(text).expect("valid");
    let of = |name: &str| {
        cfg.plugins
            .iter()
            .filter(|p| p.consumer.is_some())
            .filter(|p| p.name == name)
            .count()
    };
    assert_eq!(of("request-termination"), 2);
    assert_eq!(of("acl"), 1);
    assert_eq!(cfg.plugins.len(), 4);

    let value: Value = serde_norway::from_str(text).expect("valid YAML");
    let mut fast = Fast::new(NOW);
    for (i, element) in value["consumers"]
        .as_array()
        .expect("list")
        .iter()
        .enumerate()
    {
        fast.push("consumers", i, Node::from_value(element.clone()));
    }
    let runs = &list(&fast.lists, "consumers").expect("list seen").runs;
    assert!(
        matches!(
            runs.as_slice(),
            [Run::Fast {
                count: 3,
                plugins: 3,
                ..
            }]
        ),
        "consumers with plugins stay off the generic path"
    );

    // A plugin's own errors keep their nested path, and a second plugin of one name on one
    // consumer is refused as Kong refuses it.
    let err = same(
        r#"
_format_version: "3.0"
consumers:
  - username: a
    plugins:
      - name: no-such-plugin
      - name: acl
        id: not-a-uuid
  - username: b
    plugins:
      - name: acl
      - name: acl
      - 7
"#,
    )
    .expect_err("invalid");
    let messages: Vec<String> = err.0.iter().map(ToString::to_string).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("consumers[0].plugins[1].id")),
        "{messages:?}"
    );
}

#[test]
fn nested_plugins_with_equal_configs_share_one_and_match_the_generic_path() {
    let cfg = same(
        r#"
_format_version: "3.0"
consumers:
  - username: a
    plugins: [{name: acl, config: {}}]
  - username: b
    plugins: [{config: {}, name: acl}]
  - username: c
    plugins: [{name: acl, config: null}]
"#,
    )
    .expect("valid");
    assert_eq!(cfg.plugins.len(), 3);
    assert!(std::sync::Arc::ptr_eq(
        &cfg.plugins[0].config,
        &cfg.plugins[1].config
    ));

    let err = same(
        r#"
_format_version: "3.0"
consumers:
  - username: a
    plugins: [{name: acl, config: {nope: 1}}]
  - username: b
    plugins: [{name: acl, config: {nope: 1}}]
"#,
    )
    .expect_err("unknown field");
    let text = err.to_string();
    assert!(
        text.contains("consumers[0].plugins[0].config.nope"),
        "{text}"
    );
    assert!(
        text.contains("consumers[1].plugins[0].config.nope"),
        "{text}"
    );
}

#[test]
fn nested_plugins_in_every_usual_shape_match_the_generic_path() {
    let cfg = same(
        r#"
_format_version: "3.0"
plugins:
  - name: correlation-id
consumers:
  - username: a
    plugins:
      - name: request-termination
        enabled: false
        protocols: [http, https]
        tags: [plan, gold]
        instance_name: a-plan
        created_at: 1700000000
        updated_at: 1700000001
        config: {}
      - name: acl
        id: 0b7a4b0e-6f3a-4c2d-9e1f-2a3b4c5d6e7f
        enabled: null
        tags: null
  - username: b
    plugins:
      - {name: request-termination, config: {}, protocols: [grpc]}
"#,
    )
    .expect("valid");
    let a_plan = cfg
        .plugins
        .iter()
        .find(|p| p.instance_name.as_deref() == Some("a-plan"))
        .expect("a's plan");
    assert!(!a_plan.enabled);
    assert_eq!(a_plan.created_at, 1_700_000_000);
    assert_eq!(
        a_plan.tags,
        Some(vec!["plan".to_owned(), "gold".to_owned()])
    );

    // Refused alike, whether a plugin is read in the usual shape or handed to the generic
    // code (a route scope, a protocol Kong does not know, a mistyped or repeated field).
    same(
        r#"
_format_version: "3.0"
consumers:
  - username: a
    plugins:
      - name: acl
        route: nowhere
      - name: key-auth
      - name: correlation-id
        protocols: [http, gopher]
      - name: acl
        enabled: yes-please
      - name: request-termination
        instance_name: "bad name!"
      - name: request-termination
        name: acl
      - name: request-termination
        config: {nope: 1}
      - name: no-such-plugin
      - name: acl
        created_at: -1
"#,
    )
    .expect_err("invalid");
}
