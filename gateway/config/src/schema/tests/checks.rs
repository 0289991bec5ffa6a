//! Entity checks: Kong's texts, where they are reported, and when they are skipped.

use serde_json::{Map, Value, json};

use super::{errors_of, run, schema};
use crate::schema::{EntityCheck, Field, Match, Schema};

fn pair() -> Vec<(&'static str, Field)> {
    vec![
        ("a", Field::string()),
        ("b", Field::string()),
        ("c", Field::string()),
    ]
}

fn with(check: EntityCheck) -> Schema {
    Schema::new("test", Field::record(pair()).with_check(check))
}

#[test]
fn at_least_one_of_reports_on_the_record() {
    let s = with(EntityCheck::AtLeastOneOf(vec!["a", "b"]));
    assert_eq!(
        errors_of(&s, json!({"a": null, "c": "x"})),
        vec!["plugins[0].config: at least one of these fields must be non-empty: 'a', 'b'"]
    );
    assert!(errors_of(&s, json!({"b": "x"})).is_empty());
    // Absent config: the check still runs on the filled record.
    assert_eq!(run(&s, None).1.len(), 1);
}

#[test]
fn empty_values_do_not_count_as_set() {
    let s = Schema::new(
        "test",
        Field::record(vec![
            ("list", Field::array(Field::string())),
            ("m", Field::map(Field::string(), Field::string())),
            ("s", Field::string().len_min(0)),
        ])
        .with_check(EntityCheck::AtLeastOneOf(vec!["list", "m", "s"])),
    );
    assert_eq!(
        errors_of(&s, json!({"list": [], "m": {}, "s": ""})),
        vec!["plugins[0].config: at least one of these fields must be non-empty: 'list', 'm', 's'"]
    );
}

#[test]
fn only_one_of() {
    let s = with(EntityCheck::OnlyOneOf(vec!["a", "b"]));
    let message = "plugins[0].config: exactly one of these fields must be non-empty: 'a', 'b'";
    assert_eq!(errors_of(&s, json!({"a": "x", "b": "y"})), vec![message]);
    assert_eq!(errors_of(&s, json!({})), vec![message]);
    assert!(errors_of(&s, json!({"a": "x"})).is_empty());
}

#[test]
fn distinct() {
    let s = with(EntityCheck::Distinct(vec!["a", "b", "c"]));
    assert_eq!(
        errors_of(&s, json!({"a": "x", "c": "x"})),
        vec!["plugins[0].config: values of these fields must be distinct: 'a', 'b', 'c'"]
    );
    assert!(errors_of(&s, json!({"a": "x", "b": "y"})).is_empty());
}

#[test]
fn mutually_required() {
    let s = with(EntityCheck::MutuallyRequired(vec!["a", "b"]));
    assert_eq!(
        errors_of(&s, json!({"a": "x"})),
        vec!["plugins[0].config: all or none of these fields must be set: 'a', 'b'"]
    );
    assert!(errors_of(&s, json!({})).is_empty());
    assert!(errors_of(&s, json!({"a": "x", "b": "y"})).is_empty());
}

#[test]
fn mutually_exclusive() {
    let s = with(EntityCheck::MutuallyExclusive(vec!["a", "b"]));
    assert_eq!(
        errors_of(&s, json!({"a": "x", "b": "y"})),
        vec!["plugins[0].config: only one or none of these fields must be set: 'a', 'b'"]
    );
    assert!(errors_of(&s, json!({"b": "y"})).is_empty());
}

#[test]
fn mutually_exclusive_sets_name_the_set_members() {
    let s = with(EntityCheck::MutuallyExclusiveSets {
        set1: vec!["a"],
        set2: vec!["b", "c"],
    });
    assert_eq!(
        errors_of(&s, json!({"a": "x", "c": "z"})),
        vec!["plugins[0].config: these sets are mutually exclusive: ('a'), ('c')"]
    );
    assert!(errors_of(&s, json!({"b": "y", "c": "z"})).is_empty());
}

fn policy() -> Schema {
    Schema::new(
        "test",
        Field::record(vec![
            (
                "policy",
                Field::string()
                    .default(json!("local"))
                    .one_of(&["local", "redis"]),
            ),
            ("host", Field::string()),
            ("port", Field::integer()),
        ])
        .with_check(EntityCheck::conditional(
            "policy",
            Match::eq(json!("redis")),
            "host",
            Match::required(),
        ))
        .with_check(EntityCheck::Conditional {
            if_field: "policy",
            if_match: Match::eq(json!("redis")),
            then_field: "port",
            then_match: Match::gt(1000),
            then_err: Some("port must be high when '%s' is redis"),
        }),
    )
}

#[test]
fn conditional_required_reports_the_field_and_the_record() {
    assert!(errors_of(&policy(), json!({})).is_empty());
    assert_eq!(
        errors_of(&policy(), json!({"policy": "redis"})),
        vec![
            "plugins[0].config.host: required field missing",
            "plugins[0].config: failed conditional validation given value of field 'policy'",
        ]
    );
}

#[test]
fn conditional_rule_failure_uses_then_err() {
    assert_eq!(
        errors_of(
            &policy(),
            json!({"policy": "redis", "host": "h", "port": 80})
        ),
        vec![
            "plugins[0].config.port: value must be greater than 1000",
            "plugins[0].config: port must be high when 'policy' is redis",
        ]
    );
    assert!(
        errors_of(
            &policy(),
            json!({"policy": "redis", "host": "h", "port": 6379})
        )
        .is_empty()
    );
}

#[test]
fn conditional_with_one_of_and_eq_matches() {
    let s = Schema::new(
        "test",
        Field::record(vec![
            ("ldaps", Field::boolean().default(json!(false))),
            ("start_tls", Field::boolean().default(json!(false))),
        ])
        .with_check(EntityCheck::Conditional {
            if_field: "ldaps",
            if_match: Match::eq(json!(true)),
            then_field: "start_tls",
            then_match: Match::eq(json!(false)),
            then_err: Some("'ldaps' and 'start_tls' cannot be enabled simultaneously"),
        }),
    );
    assert_eq!(
        errors_of(&s, json!({"ldaps": true, "start_tls": true})),
        vec![
            "plugins[0].config.start_tls: value must be false",
            "plugins[0].config: 'ldaps' and 'start_tls' cannot be enabled simultaneously",
        ]
    );
}

#[test]
fn conditional_at_least_one_of_then_and_else() {
    let s = Schema::new(
        "test",
        Field::record(vec![
            ("mode", Field::string()),
            ("a", Field::string()),
            ("b", Field::string()),
            ("c", Field::string()),
        ])
        .with_check(EntityCheck::ConditionalAtLeastOneOf {
            if_field: "mode",
            if_match: Match::one_of(&["x"]),
            then_at_least_one_of: vec!["a", "b"],
            then_err: None,
            else_match: Some(Match::one_of(&["y"])),
            else_then_at_least_one_of: vec!["c"],
            else_then_err: Some("mode y needs %s"),
        }),
    );
    assert_eq!(
        errors_of(&s, json!({"mode": "x"})),
        vec!["plugins[0].config: at least one of these fields must be non-empty: 'a', 'b'"]
    );
    assert_eq!(
        errors_of(&s, json!({"mode": "y", "a": "1"})),
        vec!["plugins[0].config: mode y needs 'c'"]
    );
    assert!(errors_of(&s, json!({"mode": "z"})).is_empty());
    assert!(errors_of(&s, json!({"mode": "x", "b": "1"})).is_empty());
}

#[test]
fn checks_needing_valid_fields_skip_invalid_ones() {
    let s = with(EntityCheck::MutuallyRequired(vec!["a", "b"]));
    assert_eq!(
        errors_of(&s, json!({"a": 5})),
        vec!["plugins[0].config.a: expected a string"]
    );
    // at_least_one_of runs with invalid fields, like Kong.
    let s = with(EntityCheck::AtLeastOneOf(vec!["a", "b"]));
    assert_eq!(
        errors_of(&s, json!({"a": ""})),
        vec![
            "plugins[0].config.a: length must be at least 1",
            "plugins[0].config: at least one of these fields must be non-empty: 'a', 'b'",
        ]
    );
}

#[test]
fn a_missing_required_field_is_reported_as_required_for_the_check() {
    let s = Schema::new(
        "test",
        Field::record(vec![
            ("a", Field::string().required()),
            ("b", Field::string()),
        ])
        .with_check(EntityCheck::OnlyOneOf(vec!["a", "b"])),
    );
    assert_eq!(
        errors_of(&s, json!({"b": "x"})),
        vec!["plugins[0].config.a: field required for entity check"]
    );
}

fn no_localhost(record: &Map<String, Value>) -> Result<(), (Option<String>, String)> {
    match record.get("a").and_then(Value::as_str) {
        Some("localhost") => Err((Some("a".into()), "must not be localhost".into())),
        Some("bad") => Err((None, "a is bad".into())),
        _ => Ok(()),
    }
}

#[test]
fn custom_checks_report_at_a_field_or_the_record_and_skip_invalid_input() {
    let s = with(EntityCheck::Custom {
        fields: vec!["a"],
        check: no_localhost,
    });
    assert_eq!(
        errors_of(&s, json!({"a": "localhost"})),
        vec!["plugins[0].config.a: must not be localhost"]
    );
    assert_eq!(
        errors_of(&s, json!({"a": "bad"})),
        vec!["plugins[0].config: a is bad"]
    );
    assert_eq!(
        errors_of(&s, json!({"a": 1})),
        vec!["plugins[0].config.a: expected a string"]
    );
}

#[test]
fn nested_record_checks_report_at_the_nested_record() {
    let s = schema(vec![(
        "redis",
        Field::record(pair()).with_check(EntityCheck::AtLeastOneOf(vec!["a", "b"])),
    )]);
    assert_eq!(
        errors_of(&s, json!({})),
        vec!["plugins[0].config.redis: at least one of these fields must be non-empty: 'a', 'b'"]
    );
}

fn rate_limiting_like() -> Schema {
    Schema::new(
        "rate-limiting",
        Field::record(vec![
            ("second", Field::number().gt(0)),
            ("minute", Field::number().gt(0)),
            (
                "policy",
                Field::string()
                    .default(json!("local"))
                    .one_of(&["local", "redis"]),
            ),
            (
                "redis",
                Field::record(vec![("host", Field::string()), ("port", Field::integer())]),
            ),
        ]),
    )
    .with_check(EntityCheck::AtLeastOneOf(vec![
        "config.second",
        "config.minute",
    ]))
    .with_check(EntityCheck::conditional(
        "config.policy",
        Match::eq(json!("redis")),
        "config.redis.host",
        Match::required(),
    ))
}

#[test]
fn plugin_level_checks_use_dotted_names_and_report_at_the_plugin() {
    let s = rate_limiting_like();
    assert_eq!(
        errors_of(&s, json!({"policy": "redis"})),
        vec![
            "plugins[0]: at least one of these fields must be non-empty: 'config.second', 'config.minute'",
            "plugins[0].config.redis.host: required field missing",
            "plugins[0]: failed conditional validation given value of field 'config.policy'",
        ]
    );
    // An invalid 0 still counts as set, as Kong's `is_nonempty` says.
    assert_eq!(
        errors_of(&s, json!({"second": 0})),
        vec!["plugins[0].config.second: value must be greater than 0"]
    );
    let ok = json!({"minute": 5, "policy": "redis", "redis": {"host": "r"}});
    assert!(errors_of(&s, ok).is_empty());
}

#[test]
fn plugin_level_checks_at_a_bare_config_path() {
    let s = rate_limiting_like();
    let mut errors = crate::ConfigErrors::default();
    s.validate(Some(&json!({"policy": 5})), "config", &mut errors);
    assert_eq!(
        errors.to_string(),
        "config.policy: expected a string\n\
         at least one of these fields must be non-empty: 'config.second', 'config.minute'"
    );
}

#[test]
fn checks_skip_vault_references() {
    let s = Schema::new(
        "test",
        Field::record(vec![
            ("a", Field::string().referenceable()),
            ("b", Field::string()),
        ])
        .with_check(EntityCheck::MutuallyExclusive(vec!["a", "b"])),
    );
    assert!(errors_of(&s, json!({"a": "{vault://env/a}", "b": "x"})).is_empty());
    assert_eq!(errors_of(&s, json!({"a": "plain", "b": "x"})).len(), 1);
}
