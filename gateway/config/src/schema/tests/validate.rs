//! Field-level validation and default filling.

use serde_json::{Map, Value, json};

use super::{AT, errors_of, key_auth, run, schema};
use crate::ConfigErrors;
use crate::schema::{ALL_PROTOCOLS, Field, HTTP_PROTOCOLS};

#[test]
fn absent_config_is_filled_with_defaults_and_nulls() {
    let (filled, errors) = run(&key_auth(), None);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        filled,
        json!({
            "key_names": ["apikey"],
            "hide_credentials": false,
            "anonymous": null,
            "key_in_header": true,
            "key_in_query": true,
            "key_in_body": false,
            "run_on_preflight": true,
            "realm": null,
        })
    );
    // Filled in declaration order.
    let keys: Vec<&String> = filled.as_object().expect("record").keys().collect();
    assert_eq!(keys[0], "key_names");
    assert_eq!(keys[7], "realm");
}

#[test]
fn given_values_are_kept() {
    let config = json!({"key_names": ["x-key"], "hide_credentials": true, "anonymous": "anon"});
    let (filled, errors) = run(&key_auth(), Some(&config));
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(filled["key_names"], json!(["x-key"]));
    assert_eq!(filled["hide_credentials"], json!(true));
    assert_eq!(filled["anonymous"], json!("anon"));
    assert_eq!(filled["key_in_query"], json!(true));
}

#[test]
fn explicit_null_stays_null_and_fails_only_when_required() {
    let s = schema(vec![
        ("opt", Field::integer().default(json!(5))),
        ("req", Field::integer().required().default(json!(5))),
    ]);
    let (filled, errors) = run(&s, Some(&json!({"opt": null, "req": null})));
    assert_eq!(filled, json!({"opt": null, "req": null}));
    assert_eq!(
        errors,
        vec!["plugins[0].config.req: required field missing"]
    );
}

#[test]
fn required_field_without_default_is_missing() {
    let s = schema(vec![("host", Field::string().required())]);
    let (filled, errors) = run(&s, None);
    assert_eq!(filled, json!({}));
    assert_eq!(
        errors,
        vec!["plugins[0].config.host: required field missing"]
    );
}

#[test]
fn unknown_fields_are_reported() {
    let errors = errors_of(
        &key_auth(),
        json!({"keys": "foo", "hide_credentials": true}),
    );
    assert_eq!(errors, vec!["plugins[0].config.keys: unknown field"]);
}

#[test]
fn type_errors_use_kong_texts() {
    let s = schema(vec![
        ("s", Field::string()),
        ("i", Field::integer()),
        ("n", Field::number()),
        ("b", Field::boolean()),
        ("a", Field::array(Field::string())),
        ("set", Field::set(Field::string())),
        ("m", Field::map(Field::string(), Field::string())),
        ("r", Field::record(vec![])),
    ]);
    let errors = errors_of(
        &s,
        json!({"s": 1, "i": "1", "n": "1", "b": "true", "a": "x", "set": "x", "m": "x", "r": 1}),
    );
    assert_eq!(
        errors,
        vec![
            "plugins[0].config.s: expected a string",
            "plugins[0].config.i: expected an integer",
            "plugins[0].config.n: expected a number",
            "plugins[0].config.b: expected a boolean",
            "plugins[0].config.a: expected an array",
            "plugins[0].config.set: expected a set",
            "plugins[0].config.m: expected a map",
            "plugins[0].config.r: expected a record",
        ]
    );
}

#[test]
fn integers_reject_fractions_and_normalize_whole_floats() {
    let s = schema(vec![("i", Field::integer())]);
    assert_eq!(
        errors_of(&s, json!({"i": 1.5})),
        vec!["plugins[0].config.i: expected an integer"]
    );
    let (filled, errors) = run(&s, Some(&json!({"i": 5.0})));
    assert!(errors.is_empty());
    assert_eq!(filled["i"], json!(5));
    assert!(filled["i"].is_i64());
}

#[test]
fn value_rules_use_kong_texts() {
    let s = schema(vec![
        ("between", Field::integer().between(0, 100)),
        ("gt", Field::number().gt(0.0)),
        ("gt_frac", Field::number().gt(0.5)),
        ("one_of", Field::string().one_of(&["a", "b"])),
        (
            "codes",
            Field::integer().one_of_values(vec![json!(301), json!(302)]),
        ),
        ("not_one_of", Field::string().not_one_of(&["x", "y"])),
        ("empty", Field::string()),
        ("len_min", Field::string().len_min(3)),
        ("len_eq", Field::array(Field::string()).len_eq(2)),
        ("len_max", Field::string().len_max(2)),
        ("starts", Field::string().starts_with("/")),
        ("match", Field::string().matches(r"^[a-z]+$")),
        ("not_match", Field::string().not_matches(r"//")),
        ("uuid", Field::string().uuid()),
        (
            "contains",
            Field::array(Field::string()).contains(json!("exp")),
        ),
        ("eq", Field::boolean().eq(json!(true))),
        ("ne", Field::string().ne(json!("no"))),
    ]);
    let errors = errors_of(
        &s,
        json!({
            "between": 101, "gt": 0, "gt_frac": 0.5, "one_of": "c", "codes": 303,
            "not_one_of": "x", "empty": "", "len_min": "ab", "len_eq": ["a"], "len_max": "abc",
            "starts": "a", "match": "A1", "not_match": "a//b", "uuid": "nope",
            "contains": ["nbf"], "eq": false, "ne": "no",
        }),
    );
    let expected: Vec<String> = [
        "between: value should be between 0 and 100",
        "gt: value must be greater than 0",
        "gt_frac: value must be greater than 0.5",
        "one_of: expected one of: a, b",
        "codes: expected one of: 301, 302",
        "not_one_of: must not be one of: x, y",
        "empty: length must be at least 1",
        "len_min: length must be at least 3",
        "len_eq: length must be 2",
        "len_max: length must be at most 2",
        "starts: should start with: /",
        "match: invalid value: A1",
        "not_match: invalid value: a//b",
        "uuid: expected a valid UUID",
        "contains: expected to contain: exp",
        "eq: value must be true",
        "ne: value must not be no",
    ]
    .iter()
    .map(|e| format!("{AT}.{e}"))
    .collect();
    assert_eq!(errors, expected);
}

#[test]
fn valid_values_pass_every_rule() {
    let s = schema(vec![
        ("between", Field::integer().between(0, 100)),
        ("one_of", Field::string().one_of(&["a", "b"])),
        ("codes", Field::integer().one_of_values(vec![json!(301)])),
        ("empty_ok", Field::string().len_min(0)),
        ("uuid", Field::string().uuid()),
        ("match", Field::string().matches(r"^[a-z]+$")),
    ]);
    let errors = errors_of(
        &s,
        json!({
            "between": 100, "one_of": "b", "codes": 301.0, "empty_ok": "",
            "uuid": "4C5E9A5E-1B1B-4C4C-8F8F-0123456789AB", "match": "abc",
        }),
    );
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn custom_validator_and_err_override() {
    fn even(v: &Value) -> Result<(), String> {
        match v.as_i64() {
            Some(n) if n % 2 == 0 => Ok(()),
            _ => Err("must be even".into()),
        }
    }
    let s = schema(vec![
        ("even", Field::integer().custom_validator(even)),
        ("port", Field::integer().between(1, 10).err("bad port")),
    ]);
    assert_eq!(
        errors_of(&s, json!({"even": 3, "port": 11})),
        vec![
            "plugins[0].config.even: must be even",
            "plugins[0].config.port: bad port",
        ]
    );
    // The type error is not replaced by `err`.
    assert_eq!(
        errors_of(&s, json!({"port": "x"})),
        vec!["plugins[0].config.port: expected an integer"]
    );
}

#[test]
fn every_problem_is_collected_with_element_paths() {
    let errors = errors_of(
        &key_auth(),
        json!({"key_names": ["ok", 5, ""], "hide_credentials": "yes", "bogus": 1}),
    );
    assert_eq!(
        errors,
        vec![
            "plugins[0].config.key_names[1]: expected a string",
            "plugins[0].config.key_names[2]: length must be at least 1",
            "plugins[0].config.hide_credentials: expected a boolean",
            "plugins[0].config.bogus: unknown field",
        ]
    );
}

#[test]
fn null_elements_are_missing_and_array_rules_wait_for_elements() {
    let s = schema(vec![("list", Field::array(Field::string()).len_min(5))]);
    assert_eq!(
        errors_of(&s, json!({"list": ["a", null]})),
        vec!["plugins[0].config.list[1]: required field missing"]
    );
    assert_eq!(
        errors_of(&s, json!({"list": ["a"]})),
        vec!["plugins[0].config.list: length must be at least 5"]
    );
}

#[test]
fn sets_are_deduplicated_and_arrays_are_not() {
    let s = schema(vec![
        ("set", Field::set(Field::string())),
        ("nums", Field::set(Field::integer())),
        ("arr", Field::array(Field::string())),
    ]);
    let config = json!({"set": ["a", "b", "a", "b"], "nums": [1, 1.0, 2], "arr": ["a", "a"]});
    let (filled, errors) = run(&s, Some(&config));
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(filled["set"], json!(["a", "b"]));
    assert_eq!(filled["nums"], json!([1, 2]));
    assert_eq!(filled["arr"], json!(["a", "a"]));
}

#[test]
fn nothing_is_coerced() {
    let s = schema(vec![
        ("list", Field::array(Field::string())),
        ("flag", Field::boolean()),
    ]);
    assert_eq!(
        errors_of(&s, json!({"list": "a", "flag": "true"})),
        vec![
            "plugins[0].config.list: expected an array",
            "plugins[0].config.flag: expected a boolean",
        ]
    );
}

fn redis_like() -> Field {
    Field::record(vec![
        ("host", Field::string()),
        (
            "port",
            Field::integer().between(0, 65535).default(json!(6379)),
        ),
        (
            "tls",
            Field::record(vec![("verify", Field::boolean().default(json!(false)))]),
        ),
    ])
}

#[test]
fn nested_records_get_their_own_defaults() {
    let s = schema(vec![("redis", redis_like())]);
    let (filled, errors) = run(&s, None);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        filled,
        json!({"redis": {"host": null, "port": 6379, "tls": {"verify": false}}})
    );

    let (filled, errors) = run(&s, Some(&json!({"redis": {"host": "r", "tls": {}}})));
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        filled,
        json!({"redis": {"host": "r", "port": 6379, "tls": {"verify": false}}})
    );
}

#[test]
fn nested_record_errors_carry_the_full_path() {
    let s = schema(vec![("redis", redis_like())]);
    assert_eq!(
        errors_of(
            &s,
            json!({"redis": {"port": 70000, "tls": {"verify": 1, "x": 1}}})
        ),
        vec![
            "plugins[0].config.redis.port: value should be between 0 and 65535",
            "plugins[0].config.redis.tls.verify: expected a boolean",
            "plugins[0].config.redis.tls.x: unknown field",
        ]
    );
    // An explicit null for a (implicitly required) record is missing.
    assert_eq!(
        errors_of(&s, json!({"redis": null})),
        vec!["plugins[0].config.redis: required field missing"]
    );
}

#[test]
fn optional_records_stay_null_when_absent() {
    let s = schema(vec![("extra", redis_like().optional())]);
    let (filled, errors) = run(&s, None);
    assert!(errors.is_empty());
    assert_eq!(filled, json!({"extra": null}));
}

#[test]
fn records_with_a_default_get_nested_defaults_too() {
    let s = schema(vec![(
        "r",
        Field::record(vec![
            ("a", Field::integer()),
            ("b", Field::integer().default(json!(2))),
        ])
        .default(json!({"a": 1})),
    )]);
    let (filled, _) = run(&s, None);
    assert_eq!(filled, json!({"r": {"a": 1, "b": 2}}));
}

#[test]
fn records_in_arrays_are_filled_but_their_records_are_not_required() {
    let element = Field::record(vec![
        ("name", Field::string().required()),
        ("weight", Field::integer().default(json!(1))),
        ("inner", Field::record(vec![("x", Field::integer())])),
    ]);
    let s = schema(vec![("rules", Field::array(element))]);
    let (filled, errors) = run(&s, Some(&json!({"rules": [{"name": "a"}, {"weight": 2}]})));
    assert_eq!(
        filled["rules"],
        json!([{"name": "a", "weight": 1, "inner": null}, {"weight": 2, "inner": null}])
    );
    assert_eq!(
        errors,
        vec!["plugins[0].config.rules[1].name: required field missing"]
    );
}

#[test]
fn maps_validate_keys_and_values_and_report_the_first_bad_entry() {
    let s = schema(vec![(
        "headers",
        Field::map(Field::string().matches("^[a-z-]+$"), Field::string()),
    )]);
    let (filled, errors) = run(&s, Some(&json!({"headers": {"x-a": "1", "x-b": "2"}})));
    assert!(errors.is_empty());
    assert_eq!(filled["headers"], json!({"x-a": "1", "x-b": "2"}));
    assert_eq!(
        errors_of(&s, json!({"headers": {"x-a": 1, "X": "2"}})),
        vec!["plugins[0].config.headers: expected a string"]
    );
    assert_eq!(
        errors_of(&s, json!({"headers": {"X": 1}})),
        vec!["plugins[0].config.headers: invalid value: X"]
    );
    // An empty Lua table is a map too.
    let (filled, errors) = run(&s, Some(&json!({"headers": []})));
    assert!(errors.is_empty());
    assert_eq!(filled["headers"], json!({}));
}

#[test]
fn map_length_counts_entries() {
    let s = schema(vec![(
        "m",
        Field::map(Field::string(), Field::integer()).len_min(2),
    )]);
    assert_eq!(
        errors_of(&s, json!({"m": {"a": 1}})),
        vec!["plugins[0].config.m: length must be at least 2"]
    );
}

#[test]
fn vault_references_skip_value_rules_of_referenceable_strings() {
    let s = schema(vec![
        ("secret", Field::string().len_min(40).referenceable()),
        ("plain", Field::string().len_min(40)),
    ]);
    let errors = errors_of(
        &s,
        json!({"secret": "{vault://env/secret}", "plain": "{vault://env/secret}"}),
    );
    assert_eq!(
        errors,
        vec!["plugins[0].config.plain: length must be at least 40"]
    );
}

#[test]
fn foreign_keys_need_a_uuid_id_and_eq_null_forbids_any_value() {
    let s = schema(vec![
        ("svc", Field::foreign("services")),
        ("none", Field::foreign("consumers").eq(Value::Null)),
    ]);
    let id = "8a1e3c2e-5a3b-4f1d-9f5e-0123456789ab";
    assert!(errors_of(&s, json!({"svc": {"id": id}, "none": null})).is_empty());
    assert_eq!(
        errors_of(&s, json!({"svc": {"id": "x"}, "none": {"id": id}})),
        vec![
            "plugins[0].config.svc.id: expected a valid UUID",
            "plugins[0].config.none: value must be null",
        ]
    );
    assert_eq!(
        errors_of(&s, json!({"svc": {}})),
        vec!["plugins[0].config.svc.id: missing primary key"]
    );
}

#[test]
fn a_non_record_or_null_config_is_reported_at_the_config_path() {
    let s = key_auth();
    assert_eq!(
        errors_of(&s, json!("x")),
        vec!["plugins[0].config: expected a record"]
    );
    assert_eq!(
        errors_of(&s, Value::Null),
        vec!["plugins[0].config: required field missing"]
    );
}

#[test]
fn defaults_are_not_shared_between_validations() {
    let s = key_auth();
    let (mut first, _) = run(&s, None);
    first["key_names"] = json!(["changed"]);
    let (second, _) = run(&s, None);
    assert_eq!(second["key_names"], json!(["apikey"]));
}

#[test]
fn protocols_default_and_allowed_values() {
    let s = key_auth();
    let mut errors = ConfigErrors::default();
    let filled = s.validate_protocols(None, "plugins[0].protocols", &mut errors);
    assert_eq!(filled, json!(HTTP_PROTOCOLS));
    let given = json!(["http", "http", "tcp"]);
    let filled = s.validate_protocols(Some(&given), "plugins[0].protocols", &mut errors);
    assert_eq!(filled, json!(["http", "tcp"]));
    assert_eq!(
        errors.to_string(),
        "plugins[0].protocols[1]: expected one of: grpc, grpcs, http, https"
    );

    let stream = key_auth().protocols(HTTP_PROTOCOLS, ALL_PROTOCOLS);
    let mut errors = ConfigErrors::default();
    stream.validate_protocols(Some(&json!(["tcp"])), "p", &mut errors);
    stream.validate_protocols(Some(&Value::Null), "q", &mut errors);
    assert_eq!(errors.to_string(), "q: required field missing");
}

#[test]
fn forbidden_scopes_must_be_null() {
    let s = key_auth().no_route();
    let mut plugin = Map::new();
    plugin.insert("consumer".into(), json!({"id": "x"}));
    plugin.insert("route".into(), Value::Null);
    plugin.insert("service".into(), json!({"id": "y"}));
    let mut errors = ConfigErrors::default();
    s.validate_scope(&plugin, "plugins[0]", &mut errors);
    assert_eq!(
        errors.to_string(),
        "plugins[0].consumer: value must be null"
    );
}

#[test]
fn an_empty_table_is_an_empty_array_set_map_or_record() {
    let s = schema(vec![
        ("a", Field::array(Field::string())),
        ("set", Field::set(Field::string())),
        (
            "r",
            Field::record(vec![("x", Field::integer().default(json!(1)))]),
        ),
    ]);
    let (filled, errors) = run(&s, Some(&json!({"a": {}, "set": {}, "r": []})));
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(filled, json!({"a": [], "set": [], "r": {"x": 1}}));
}

#[test]
fn ne_null_forbids_an_explicit_null() {
    let s = schema(vec![("name", Field::string().ne(Value::Null))]);
    assert_eq!(
        errors_of(&s, json!({"name": null})),
        vec!["plugins[0].config.name: value must not be null"]
    );
    assert!(errors_of(&s, json!({"name": "x"})).is_empty());
}
