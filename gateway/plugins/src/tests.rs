//! The bundled plugins' schemas as the declarative loader applies them: names, configs,
//! scopes and `ordering` checked with their paths, and config defaults filled.

fn load_str(text: &str) -> Result<gangway_config::Config, gangway_config::ConfigErrors> {
    gangway_config::declarative::load_str(text, &super::catalog())
}

#[test]
fn plugin_names_configs_scopes_and_ordering_are_validated_with_paths() {
    let errs = load_str(
        r#"
_format_version: "3.0"
services:
  - name: s
    url: http://example.com
    routes:
      - name: r
        paths: ["/"]
        plugins:
          - name: key-auth
            config:
              hide_credentials: "yes"
              bogus: 1
          - name: acl
            ordering:
              before:
                rewrite: [key-auth]
              after:
                access: [no-such-plugin]
            config:
              allow: [a]
              deny: [b]
consumers:
  - username: c
    plugins:
      - name: key-auth
plugins:
  - name: no-such-plugin
"#,
    )
    .expect_err("invalid plugins");
    let text = errs.to_string();
    for expected in [
        "services[0].routes[0].plugins[0].config.hide_credentials: expected a boolean",
        "services[0].routes[0].plugins[0].config.bogus: unknown field",
        "services[0].routes[0].plugins[1].ordering.before.rewrite: unknown field",
        "services[0].routes[0].plugins[1].ordering.after.access[0]: plugin 'no-such-plugin' not enabled",
        "services[0].routes[0].plugins[1]: exactly one of these fields must be non-empty: 'config.allow', 'config.deny'",
        "consumers[0].plugins[0].consumer: value must be null",
        "plugins[0].name: plugin 'no-such-plugin' not enabled; add it to the 'plugins' configuration property",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn plugin_config_defaults_are_filled() {
    let config = load_str(
        r#"
_format_version: "3.0"
plugins:
  - name: key-auth
"#,
    )
    .expect("valid");
    let c = &config.plugins[0].config;
    assert_eq!(c["key_names"], serde_json::json!(["apikey"]));
    assert_eq!(c["hide_credentials"], false);
    assert_eq!(c["key_in_query"], true);
    assert_eq!(c["run_on_preflight"], true);
}
