//! Config validation: the schema's Kong messages, and what the compiler adds.

use serde_json::{Value, json};

use super::super::{config, schema};
use gangway_config::ConfigErrors;

/// The problems the schema, then the compiler, report for `config`, as `path: message`.
fn problems(config: Value) -> Vec<String> {
    let mut errors = ConfigErrors::default();
    let filled = schema().validate(Some(&config), "config", &mut errors);
    if !errors.is_empty() {
        return errors.0.iter().map(ToString::to_string).collect();
    }
    match config::compile(&filled) {
        Ok(_) => Vec::new(),
        Err(p) => p
            .into_iter()
            .map(|(f, m)| format!("config.{f}: {m}"))
            .collect(),
    }
}

#[test]
fn config_errors_carry_kongs_messages() {
    assert_eq!(
        problems(json!({"http_method": "HELLO!"})),
        ["config.http_method: invalid value: HELLO!"]
    );
    assert_eq!(
        problems(json!({"http_method": "FETCH"})),
        ["config.http_method: invalid method: FETCH"]
    );
    assert_eq!(
        problems(json!({"add": {"querystring": ["uri_param2:"]}})),
        ["config.add.querystring[0]: key 'uri_param2' has no value"]
    );
    let bad = problems(json!({"add": {"querystring": ["uri_param2:$(uri_captures user2)"]}}));
    assert_eq!(bad.len(), 1);
    assert!(
        bad[0].starts_with(
            "config.add.querystring[0]: value '$(uri_captures user2)' is not in supported \
             format, error:"
        ),
        "{bad:?}"
    );
    assert_eq!(
        problems(json!({"add": {"headers": ["just_a_key"]}})),
        ["config.add.headers[0]: invalid value: just_a_key"]
    );
    assert_eq!(
        problems(json!({"rename": {"headers": ["x-requ,est-id:x-custom"]}})),
        ["config.rename.headers[0]: 'x-requ,est-id' is not a valid header"]
    );
    assert_eq!(
        problems(json!({"rename": {"headers": ["x-request-id:x custom"]}})),
        ["config.rename.headers[0]: 'x custom' is not a valid header"]
    );
    assert_eq!(
        problems(json!({"remove": {"headers": ["bad header"]}})),
        ["config.remove.headers[0]: 'bad header' is not a valid header"]
    );
    // Header values are templates too; Kong only finds a bad one at request time.
    let bad = problems(json!({"add": {"headers": ["x:$(shared.written = true)"]}}));
    assert!(bad[0].starts_with("config.add.headers[0]: value '$(shared.written = true)'"));
    assert!(
        problems(json!({"replace": {"uri": "/a/$(10 * uri_captures.user1)"}}))[0]
            .starts_with("config.replace.uri: value")
    );
    assert!(
        problems(json!({"add": {"querystring": ["a:$(uri_captures.user1)", "b:v"]}})).is_empty()
    );
}

#[test]
fn schema_fills_every_list() {
    let mut errors = ConfigErrors::default();
    let filled = schema().validate(Some(&json!({})), "config", &mut errors);
    assert!(errors.is_empty());
    let lists = json!({"body": [], "headers": [], "querystring": []});
    let mut replace = lists.clone();
    replace["uri"] = Value::Null;
    assert_eq!(
        filled,
        json!({
            "http_method": null,
            "remove": lists,
            "rename": lists,
            "replace": replace,
            "add": lists,
            "append": lists,
        })
    );
}
