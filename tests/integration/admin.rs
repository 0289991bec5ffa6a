//! The Admin API in DB-less mode, driven over real sockets as Kong's clients drive it:
//! node info, entity reads with Kong's addressing, pagination and filters, Kong's errors,
//! CORS, refused writes, and `/config`.

use serde_json::{Value, json};

use crate::harness::{Gangway, Options, TempDir, Upstream};

/// Two services (one with routes, a key-auth plugin and tags), consumers with keys and ACLs.
fn config(upstream: std::net::SocketAddr) -> String {
    format!(
        r#"_format_version: "3.0"
services:
  - name: weather
    url: http://{upstream}
    tags: [public, v1]
    routes:
      - name: forecast
        paths: ["/forecast"]
        plugins:
          - name: key-auth
  - name: billing
    url: http://{upstream}/billing
    tags: [internal]
routes:
  - name: orphan
    paths: ["/orphan"]
consumers:
  - username: alice
    custom_id: cust-1
    keyauth_credentials:
      - key: alice-key
      - key: alice-short
        ttl: 1
    acls:
      - group: gold
  - username: bob
    keyauth_credentials:
      - key: bob-key
plugins:
  - name: correlation-id
"#
    )
}

fn start(upstream: &Upstream) -> Gangway {
    Gangway::start_with(Options::new(config(upstream.addr)).admin())
}

#[test]
fn root_reports_a_kong_version_the_plugins_and_the_configuration() {
    let up = Upstream::start();
    let gw = Gangway::start_with(
        Options::new(config(up.addr))
            .admin()
            .env("GANGWAY_PG_PASSWORD", "s3cret"),
    );
    let r = gw.admin("GET", "/", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let body = r.json();
    let version = body["version"].as_str().expect("version");
    let parts: Vec<&str> = version.split('.').collect();
    assert!(
        parts.len() == 3 && parts.iter().all(|p| p.parse::<u32>().is_ok()) && parts[0] == "3",
        "a 3.x semver: {version}"
    );
    assert_eq!(body["tagline"], "Welcome to kong");
    assert_eq!(
        body["plugins"]["available_on_server"]["key-auth"]["priority"],
        1250
    );
    assert_eq!(
        body["plugins"]["enabled_in_cluster"],
        json!(["correlation-id", "key-auth"])
    );
    let conf = &body["configuration"];
    assert_eq!(conf["database"], "off");
    assert_eq!(conf["role"], "traditional");
    assert_eq!(conf["pg_password"], "******", "secrets are redacted");
    assert_eq!(conf["admin_listeners"][0]["ip"], "127.0.0.1");
    assert!(body["node_id"].as_str().is_some_and(|id| id.len() == 36));

    let enabled = gw.admin("GET", "/plugins/enabled", &[], b"").json();
    assert!(
        enabled["enabled_plugins"]
            .as_array()
            .is_some_and(|names| names.contains(&json!("acl")))
    );
    let status = gw.admin("GET", "/status?unit=b", &[], b"").json();
    assert_eq!(
        status["configuration_hash"].as_str().map(str::len),
        Some(32)
    );
    assert!(status["memory"]["workers_lua_vms"][0]["http_allocated_gc"].is_u64());
    assert_eq!(gw.admin("GET", "/status?unit=x", &[], b"").status, 400);
    let endpoints = gw.admin("GET", "/endpoints", &[], b"").json();
    let list = endpoints["data"].as_array().expect("data");
    for want in [
        "/consumers/{consumers}/key-auth/{keyauth_credentials}",
        "/routes/{routes}/service",
        "/services/{services}/routes",
    ] {
        assert!(list.contains(&json!(want)), "{want} in {list:?}");
    }
}

#[test]
fn entities_are_read_by_id_or_endpoint_key_with_kongs_not_found() {
    let up = Upstream::start();
    let gw = start(&up);
    let by_name = gw.admin("GET", "/services/weather", &[], b"");
    assert_eq!(by_name.status, 200, "{}", by_name.text());
    let service = by_name.json();
    assert_eq!(service["host"], "127.0.0.1");
    assert_eq!(service["protocol"], "http");
    assert_eq!(service["tls_verify"], Value::Null, "absent fields are null");
    let id = service["id"].as_str().expect("id").to_owned();
    assert_eq!(
        gw.admin("GET", &format!("/services/{id}"), &[], b"").json()["name"],
        "weather"
    );
    assert_eq!(
        gw.admin("GET", "/services/weather/", &[], b"").status,
        200,
        "a trailing slash is tolerated"
    );
    let missing = gw.admin("GET", "/services/nope", &[], b"");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json(), json!({"message": "Not found"}));
    assert_eq!(
        gw.admin("GET", "/nothing/here", &[], b"").json(),
        json!({"message": "Not found"})
    );

    // Consumers by username; their keys, nested and at the top level.
    let alice = gw.admin("GET", "/consumers/alice", &[], b"").json();
    assert_eq!(alice["custom_id"], "cust-1");
    let keys = gw
        .admin("GET", "/consumers/alice/key-auth", &[], b"")
        .json();
    let listed: Vec<&str> = keys["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|k| k["key"].as_str())
        .collect();
    assert!(listed.contains(&"alice-key"), "{keys}");
    assert_eq!(keys["next"], Value::Null);
    let key = gw.admin("GET", "/key-auths/bob-key", &[], b"").json();
    assert_eq!(key["ttl"], Value::Null);
    assert_eq!(
        key["consumer"]["id"],
        gw.admin("GET", "/consumers/bob", &[], b"").json()["id"]
    );
    // bob's key is not alice's.
    assert_eq!(
        gw.admin("GET", "/consumers/alice/key-auth/bob-key", &[], b"")
            .status,
        404
    );
    // The consumer lookup by custom_id.
    let found = gw
        .admin("GET", "/consumers?custom_id=cust-1", &[], b"")
        .json();
    assert_eq!(found["data"][0]["username"], "alice");
    assert_eq!(found["next"], Value::Null);
    assert_eq!(
        gw.admin("GET", "/consumers?custom_id=", &[], b"").json(),
        json!({"message": "custom_id must be an unempty string"})
    );
    // ACL membership by group under its consumer.
    assert_eq!(
        gw.admin("GET", "/consumers/alice/acls/gold", &[], b"")
            .json()["group"],
        "gold"
    );

    // A route's service, a service's routes; a route without one.
    assert_eq!(
        gw.admin("GET", "/routes/forecast/service", &[], b"").json()["name"],
        "weather"
    );
    assert_eq!(
        gw.admin("GET", "/routes/orphan/service", &[], b"").status,
        404
    );
    let routes = gw.admin("GET", "/services/weather/routes", &[], b"").json();
    assert_eq!(routes["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        gw.admin("GET", "/services/billing/routes/forecast", &[], b"")
            .status,
        404,
        "a child of another parent"
    );
    let plugins = gw.admin("GET", "/routes/forecast/plugins", &[], b"").json();
    assert_eq!(plugins["data"][0]["name"], "key-auth");
    assert_eq!(plugins["data"][0]["config"]["key_names"], json!(["apikey"]));
}

#[test]
fn an_expired_key_disappears_from_the_admin_api() {
    let up = Upstream::start();
    let gw = start(&up);
    let short = gw.admin("GET", "/key-auths/alice-short", &[], b"");
    // The key had one second to live from load: it may be gone already, never longer.
    if short.status == 200 {
        assert!(short.json()["ttl"].as_i64().is_some_and(|t| t <= 1));
    }
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(
        gw.admin("GET", "/key-auths/alice-short", &[], b"").status,
        404
    );
    let keys = gw.admin("GET", "/key-auths", &[], b"").json();
    assert!(
        !keys["data"]
            .as_array()
            .expect("data")
            .iter()
            .any(|k| k["key"] == "alice-short"),
        "{keys}"
    );
}

#[test]
fn pages_follow_next_and_filters_use_kongs_rules() {
    let up = Upstream::start();
    let gw = start(&up);
    let mut seen = Vec::new();
    let mut path = "/routes?size=1".to_owned();
    for _ in 0..5 {
        let page = gw.admin("GET", &path, &[], b"").json();
        let data = page["data"].as_array().expect("data");
        assert!(data.len() <= 1);
        seen.extend(
            data.iter()
                .filter_map(|r| r["name"].as_str().map(str::to_owned)),
        );
        match page["next"].as_str() {
            Some(next) => {
                assert!(
                    next.starts_with("/routes?offset=") && next.ends_with("&size=1"),
                    "{next}"
                );
                assert!(page["offset"].is_string());
                path = next.to_owned();
            }
            None => {
                assert!(page.get("offset").is_none(), "no offset on the last page");
                break;
            }
        }
    }
    seen.sort();
    assert_eq!(seen, ["forecast", "orphan"]);

    let tagged = |q: &str| -> Vec<String> {
        let page = gw
            .admin("GET", &format!("/services?tags={q}"), &[], b"")
            .json();
        page["data"]
            .as_array()
            .expect("data")
            .iter()
            .filter_map(|s| s["name"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(tagged("public,v1"), ["weather"]);
    assert!(tagged("public,internal").is_empty());
    assert_eq!(tagged("public/internal"), ["weather", "billing"]);

    let bad = gw.admin("GET", "/services?size=0", &[], b"");
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.json(),
        json!({"code": 9, "name": "invalid size",
               "message": "size must be an integer between 1 and 1000"})
    );
    assert_eq!(
        gw.admin("GET", "/services?size=x", &[], b"").json()["message"],
        "size must be a number"
    );
    let six = gw.admin("GET", "/services?tags=a,b,c,d,e,f", &[], b"");
    assert_eq!(six.status, 400);
    assert_eq!(
        six.json(),
        json!({"code": 11, "name": "invalid options",
               "message": "invalid option (tags: cannot query more than 5 tags)",
               "options": {"tags": "cannot query more than 5 tags"}})
    );
    assert_eq!(
        gw.admin("GET", "/services?offset=!!", &[], b"").json()["code"],
        7
    );
}

#[test]
fn writes_are_refused_without_a_database_after_kongs_body_checks() {
    let up = Upstream::start();
    let gw = start(&up);
    let json_type = [("Content-Type", "application/json")];
    let post = gw.admin(
        "POST",
        "/services",
        &json_type,
        br#"{"name":"x","host":"h"}"#,
    );
    assert_eq!(post.status, 405);
    assert_eq!(
        post.json(),
        json!({"code": 12, "name": "operation unsupported",
               "message": "cannot create 'services' entities when not using a database"})
    );
    for (method, verb) in [
        ("PUT", "create or update"),
        ("PATCH", "update"),
        ("DELETE", "remove"),
    ] {
        let r = gw.admin(method, "/consumers/alice", &json_type, b"{}");
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(
            r.json()["message"],
            format!("cannot {verb} 'consumers' entities when not using a database")
        );
    }
    let nested = gw.admin("POST", "/consumers/alice/key-auth", &json_type, b"{}");
    assert_eq!(
        nested.json()["message"],
        "cannot create 'keyauth_credentials' entities when not using a database"
    );
    assert_eq!(
        gw.admin("POST", "/consumers/nobody/key-auth", &json_type, b"{}")
            .status,
        404,
        "an unknown parent is 404 before anything else"
    );
    let garbled = gw.admin("POST", "/services", &json_type, b"{not json");
    assert_eq!(garbled.status, 400);
    assert_eq!(garbled.json(), json!({"message": "Cannot parse JSON body"}));
    let text = gw.admin(
        "POST",
        "/services",
        &[("Content-Type", "text/plain")],
        b"hi",
    );
    assert_eq!(text.status, 415);
    assert!(text.body.is_empty());
    assert_eq!(
        gw.admin("POST", "/services/weather", &json_type, b"{}")
            .json(),
        json!({"message": "Method not allowed"})
    );
}

#[test]
fn cors_and_options_answer_as_kong_does() {
    let up = Upstream::start();
    let gw = start(&up);
    let r = gw.admin(
        "OPTIONS",
        "/services",
        &[
            ("Origin", "http://manager.example"),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "content-type,kong-admin-token",
            ),
        ],
        b"",
    );
    assert_eq!(r.status, 204);
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS, POST"));
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("GET, HEAD, OPTIONS, POST")
    );
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("content-type,kong-admin-token")
    );
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://manager.example")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    let plain = gw.admin("GET", "/services", &[], b"");
    assert_eq!(plain.header("access-control-allow-origin"), Some("*"));
    assert!(plain.header("x-kong-admin-latency").is_some());
    let head = gw.admin("HEAD", "/services", &[], b"");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());

    // With admin_gui_origin, only the listed origins are echoed.
    let gw = Gangway::start_with(Options::new(config(up.addr)).admin().env(
        "KONG_ADMIN_GUI_ORIGIN",
        "http://manager.example, http://other.example",
    ));
    let allowed = gw.admin("GET", "/", &[("Origin", "http://other.example")], b"");
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("http://other.example")
    );
    let stranger = gw.admin("GET", "/", &[("Origin", "http://evil.example")], b"");
    assert_eq!(
        stranger.header("access-control-allow-origin"),
        Some("http://manager.example")
    );
}

#[test]
fn post_config_replaces_the_config_and_a_restart_keeps_it() {
    let up = Upstream::start();
    let prefix = TempDir::new("admin-prefix");
    let gw = Gangway::start_with(
        Options::new(config(up.addr))
            .admin()
            .without_declarative_config()
            .prefix(&prefix.0),
    );
    // The embedded default config serves /status through the proxy; /fresh is unknown.
    assert_eq!(gw.get("/fresh").status, 404);
    let new = json!({
        "_format_version": "3.0",
        "services": [{"name": "fresh", "url": format!("http://{}", up.addr),
                      "routes": [{"name": "fresh", "paths": ["/fresh"]}]}],
    });
    let json_type = [("Content-Type", "application/json")];
    let posted = gw.admin("POST", "/config", &json_type, new.to_string().as_bytes());
    assert_eq!(posted.status, 201, "{}", posted.text());
    let body = posted.json();
    let services = body["services"].as_object().expect("services by id");
    assert_eq!(
        services.values().next().map(|s| &s["name"]),
        Some(&json!("fresh"))
    );
    assert_eq!(gw.get("/fresh").status, 200);
    let exported = gw.admin("GET", "/config", &[], b"").json();
    let yaml = exported["config"].as_str().expect("yaml");
    assert!(
        yaml.contains("_format_version") && yaml.contains("name: fresh"),
        "{yaml}"
    );

    // A second later, so that the load time (each entity's created_at) differs: it must not
    // enter the hash, or an unchanged document would be loaded again.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let again = gw.admin(
        "POST",
        "/config?check_hash=1",
        &json_type,
        new.to_string().as_bytes(),
    );
    assert_eq!(again.status, 304, "unchanged config");

    let invalid = json!({"_format_version": "3.0", "services": [{"name": "broken"}]});
    let refused = gw.admin(
        "POST",
        "/config?flatten_errors=1",
        &json_type,
        invalid.to_string().as_bytes(),
    );
    assert_eq!(refused.status, 400);
    let err = refused.json();
    assert_eq!(err["code"], 14);
    assert_eq!(err["name"], "invalid declarative configuration");
    assert_eq!(
        err["fields"]["services"][0]["host"],
        "required field missing"
    );
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("declarative config is invalid: ")),
        "{err}"
    );
    assert_eq!(err["flattened_errors"][0]["entity_type"], "service");
    assert_eq!(err["flattened_errors"][0]["entity_name"], "broken");
    assert_eq!(
        err["flattened_errors"][0]["errors"][0],
        json!({"type": "field", "field": "host", "message": "required field missing"})
    );
    assert_eq!(
        gw.get("/fresh").status,
        200,
        "a refused config changes nothing"
    );

    let yaml_body = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: yaml\n    url: http://{}\n    routes:\n      - paths: [\"/yaml\"]\n",
        up.addr
    );
    let as_yaml = gw.admin(
        "POST",
        "/config",
        &[("Content-Type", "application/yaml")],
        yaml_body.as_bytes(),
    );
    assert_eq!(as_yaml.status, 201, "{}", as_yaml.text());
    assert_eq!(gw.get("/yaml").status, 200);
    assert_eq!(gw.get("/fresh").status, 404);
    assert_eq!(
        gw.admin("POST", "/config", &[], b"").json(),
        json!({"message": "expected a declarative configuration"})
    );
    // An empty document is read, and found wanting, as Kong reads the raw body.
    assert_eq!(
        gw.admin("POST", "/config", &json_type, b"{}").json()["fields"],
        json!({"_format_version": "required field missing"})
    );
    drop(gw);

    // Same prefix, no declarative_config: the posted config comes back.
    let gw = Gangway::start_with(
        Options::new(config(up.addr))
            .admin()
            .without_declarative_config()
            .prefix(&prefix.0),
    );
    assert_eq!(gw.get("/yaml").status, 200, "{}", gw.log());
}

#[test]
fn the_admin_api_also_listens_with_tls() {
    let up = Upstream::start();
    let gw = Gangway::start_with(Options::new(config(up.addr)).admin_tls());
    let addr = gw.admin_tls.expect("tls listener");
    let (r, _leaf, _) = crate::tls::tls_request(
        addr,
        "localhost",
        b"GET /services/weather HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["name"], "weather");

    // `http2 ssl` (Kong's default for 8444): HTTP/2 through ALPN, as curl negotiates it.
    let curl = std::process::Command::new("curl")
        .args([
            "-sk",
            "--http2",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
        ])
        .arg(format!("https://{addr}/services/weather"))
        .output()
        .expect("curl runs: install the Debian package curl (bash .ci/run does)");
    assert_eq!(
        String::from_utf8_lossy(&curl.stdout),
        "2 200",
        "{}",
        String::from_utf8_lossy(&curl.stderr)
    );
}

#[test]
fn declarative_config_string_is_loaded_when_no_file_is_named() {
    // Regression: the setting was parsed but never read, so the embedded default ran.
    let up = Upstream::start();
    let inline = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: inline\n    url: http://{}\n    routes:\n      - paths: [\"/inline\"]\n",
        up.addr
    );
    let gw = Gangway::start_with(
        Options::new("unused")
            .without_declarative_config()
            .env("KONG_DECLARATIVE_CONFIG_STRING", inline),
    );
    assert_eq!(gw.get("/inline").status, 200, "{}", gw.log());
}

#[test]
fn plugin_schemas_are_served_and_validate_without_storing() {
    let up = Upstream::start();
    let gw = start(&up);
    let schema = gw
        .admin("GET", "/schemas/plugins/key-auth", &[], b"")
        .json();
    let fields = schema["fields"].as_array().expect("fields");
    let config = fields
        .iter()
        .find_map(|f| f.get("config"))
        .expect("a config field");
    let key_names = config["fields"]
        .as_array()
        .expect("config fields")
        .iter()
        .find_map(|f| f.get("key_names"))
        .expect("key_names");
    assert_eq!(key_names["default"], json!(["apikey"]));
    assert_eq!(
        gw.admin("GET", "/schemas/plugins/nope", &[], b"").json(),
        json!({"message": "No plugin named 'nope'"})
    );
    // Kong's deprecated form answers the config record alone (it was a 404).
    let legacy = gw.admin("GET", "/plugins/schema/key-auth", &[], b"");
    assert_eq!(legacy.status, 200, "{}", legacy.text());
    assert_eq!(legacy.json()["type"], "record");
    assert!(
        legacy.json()["fields"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f.get("key_names").is_some())),
        "{}",
        legacy.text()
    );
    assert_eq!(
        gw.admin("GET", "/plugins/schema/nope", &[], b"").status,
        404
    );

    let json_type = [("Content-Type", "application/json")];
    let bad = gw.admin(
        "POST",
        "/schemas/plugins/validate",
        &json_type,
        br#"{"name":"key-auth","config":{"hide_credentials":"yes"}}"#,
    );
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.json(),
        json!({"code": 2, "name": "schema violation",
               "message": "schema violation (config.hide_credentials: expected a boolean)",
               "fields": {"config": {"hide_credentials": "expected a boolean"}}})
    );
    let unknown = gw.admin(
        "POST",
        "/schemas/plugins/validate",
        &json_type,
        br#"{"name":"no-such"}"#,
    );
    assert_eq!(
        unknown.json()["fields"]["name"],
        "plugin 'no-such' not enabled; add it to the 'plugins' configuration property"
    );
    // A form's strings are coerced to the schema's types, as Kong does for forms only.
    let form = gw.admin(
        "POST",
        "/schemas/plugins/validate",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"name=key-auth&config.hide_credentials=true&config.key_names[]=x-key",
    );
    assert_eq!(form.status, 200, "{}", form.text());
    assert_eq!(
        form.json(),
        json!({"message": "schema validation successful"})
    );
}

#[test]
fn entity_schemas_are_served_in_kongs_shape() {
    let up = Upstream::start();
    let gw = start(&up);
    let services = gw.admin("GET", "/schemas/services", &[], b"").json();
    let fields = services["fields"].as_array().expect("fields");
    let names: Vec<&str> = fields
        .iter()
        .filter_map(|f| f.as_object()?.keys().next().map(String::as_str))
        .collect();
    assert_eq!(&names[..4], ["id", "created_at", "updated_at", "name"]);
    let port = fields.iter().find_map(|f| f.get("port")).expect("port");
    assert_eq!(port["default"], 80);
    assert_eq!(port["between"], json!([0, 65535]));
    let routes = gw.admin("GET", "/schemas/routes", &[], b"").json();
    let service = routes["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .find_map(|f| f.get("service"))
        .expect("service");
    assert_eq!(service["type"], "foreign");
    assert!(
        service.get("schema").is_none(),
        "foreign schemas are stripped"
    );
    assert_eq!(
        gw.admin("GET", "/schemas/keyauth_credentials", &[], b"")
            .status,
        200
    );
    assert_eq!(
        gw.admin("GET", "/schemas/nope", &[], b"").json(),
        json!({"message": "No entity named 'nope'"})
    );
}

#[test]
fn the_admin_api_is_reachable_through_the_proxy_only_with_a_key_from_an_allowed_address() {
    // The second reference deployment: Kong Manager and scripts reach the Admin API at
    // /kong-admin on the proxy, behind key-auth and ip-restriction.
    let admin_port = crate::harness::free_port();
    let config = format!(
        r#"_format_version: "3.0"
services:
  - name: kong-admin
    url: http://127.0.0.1:{admin_port}
    routes:
      - name: kong-admin
        paths: ["/kong-admin"]
        plugins:
          - name: key-auth
          - name: ip-restriction
            config: {{allow: ["10.0.0.0/24"]}}
consumers:
  - username: ops
    keyauth_credentials:
      - key: ops-key
"#
    );
    let mut gw = Gangway::start_with(
        Options::new(config)
            .env("GANGWAY_ADMIN_LISTEN", format!("127.0.0.1:{admin_port}"))
            .env("KONG_TRUSTED_IPS", "127.0.0.1")
            .env("KONG_REAL_IP_HEADER", "X-Real-IP"),
    );
    gw.wait_accepting(format!("127.0.0.1:{admin_port}").parse().expect("addr"));
    let get = |path: &str, headers: &[(&str, &str)]| {
        crate::harness::request(gw.proxy, "GET", path, headers, b"").expect("proxy answers")
    };
    let allowed = get(
        "/kong-admin/services/kong-admin",
        &[("apikey", "ops-key"), ("X-Real-IP", "10.0.0.5")],
    );
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    assert_eq!(allowed.json()["name"], "kong-admin");
    let root = get(
        "/kong-admin",
        &[("apikey", "ops-key"), ("X-Real-IP", "10.0.0.5")],
    );
    assert_eq!(root.json()["tagline"], "Welcome to kong");

    let no_key = get("/kong-admin/services", &[("X-Real-IP", "10.0.0.5")]);
    assert_eq!(no_key.status, 401);
    let wrong_place = get(
        "/kong-admin/services",
        &[("apikey", "ops-key"), ("X-Real-IP", "192.0.2.7")],
    );
    assert_eq!(wrong_place.status, 403, "{}", wrong_place.text());
    assert!(
        !wrong_place.text().contains("kong-admin"),
        "nothing of the Admin API leaks: {}",
        wrong_place.text()
    );
}

#[test]
fn kong_manager_is_served_with_its_kconfig_under_its_path() {
    let up = Upstream::start();
    let gui_port = crate::harness::free_port();
    let build = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/integration/fixtures/kong-manager"
    );
    let mut gw = Gangway::start_with(
        Options::new(config(up.addr))
            .admin()
            .env("GANGWAY_ADMIN_GUI_DIR", build)
            .env("KONG_ADMIN_GUI_LISTEN", format!("127.0.0.1:{gui_port}"))
            .env("KONG_ADMIN_GUI_PATH", "/manager")
            .env("KONG_ADMIN_GUI_API_URL", "http://admin.example:8001"),
    );
    let gui: std::net::SocketAddr = format!("127.0.0.1:{gui_port}").parse().expect("addr");
    gw.wait_accepting(gui);
    let get =
        |path: &str| crate::harness::request(gui, "GET", path, &[], b"").expect("gui answers");
    let admin_port = gw.admin.expect("admin").port();

    let kconfig = get("/manager/kconfig.js");
    assert_eq!(kconfig.status, 200);
    assert_eq!(
        kconfig.header("content-type"),
        Some("application/javascript")
    );
    let js = kconfig.text();
    assert!(js.starts_with("window.K_CONFIG = {"), "{js}");
    assert!(js.contains("'ADMIN_GUI_PATH': '/manager'"), "{js}");
    assert!(
        js.contains("'ADMIN_API_URL': 'http://admin.example:8001'"),
        "{js}"
    );
    assert!(
        js.contains(&format!("'ADMIN_API_PORT': '{admin_port}'")),
        "{js}"
    );

    let index = get("/manager/");
    assert_eq!(index.status, 200);
    let html = index.text();
    assert!(
        html.contains(r#"<base href="/manager/">"#),
        "the base is rewritten: {html}"
    );
    assert!(!html.contains("__km_base__"), "{html}");
    // The app's own routes fall back to its page.
    let deep = get("/manager/services/weather");
    assert_eq!(deep.status, 200);
    assert!(deep.text().contains("Kong Manager stand-in"));
    let app = get("/manager/assets/app.js");
    assert_eq!(app.status, 200);
    assert!(
        app.text().contains("window.KM_BASE = '/manager/';"),
        "{}",
        app.text()
    );
    assert_eq!(
        get("/manager/assets/missing.js").status,
        404,
        "assets never fall back"
    );
    assert_eq!(
        get("/manager/robots.txt").text(),
        "User-agent: *\nDisallow: /"
    );
    assert_eq!(
        get("/manager/../../etc/passwd").status,
        200,
        "outside paths are the app's page"
    );
    assert!(!get("/manager/../../etc/passwd").text().contains("root:"));
    assert_eq!(get("/elsewhere").status, 404, "only under admin_gui_path");
}

#[test]
fn upstream_health_and_entity_validation() {
    let up = Upstream::start();
    let config = format!(
        r#"_format_version: "3.0"
upstreams:
  - name: quiet
    targets:
      - target: "{addr}"
      - target: 127.0.0.2:81
      - target: 127.0.0.3:82
  - name: watched
    healthchecks:
      passive:
        unhealthy:
          http_failures: 2
    targets:
      - target: "{addr}"
        weight: 50
"#,
        addr = up.addr
    );
    let gw = Gangway::start_with(Options::new(config).admin());
    // Two upstreams share a target: each finds its own by host:port.
    for (upstream, weight) in [("quiet", 100), ("watched", 50)] {
        let path = format!("/upstreams/{upstream}/targets/{}", up.addr);
        let target = gw.admin("GET", &path, &[], b"");
        assert_eq!(target.status, 200, "{path}: {}", target.text());
        assert_eq!(target.json()["weight"], weight, "{path}");
    }
    let quiet = gw.admin("GET", "/upstreams/quiet/health", &[], b"").json();
    assert_eq!(quiet["data"][0]["health"], "HEALTHCHECKS_OFF", "{quiet}");
    assert!(quiet["node_id"].is_string());
    let watched = gw
        .admin("GET", "/upstreams/watched/health", &[], b"")
        .json();
    assert_eq!(watched["data"][0]["health"], "HEALTHY", "{watched}");
    assert_eq!(watched["data"][0]["weight"], 50);
    assert_eq!(
        gw.admin("GET", "/upstreams/nope/health", &[], b"").status,
        404
    );
    // Kong's pages: `size`, then `next` until it is null.
    let first = gw
        .admin("GET", "/upstreams/quiet/health?size=2", &[], b"")
        .json();
    assert_eq!(first["data"].as_array().map(Vec::len), Some(2), "{first}");
    let next = first["next"].as_str().expect("a next page");
    assert!(
        next.starts_with("/upstreams/quiet/health?offset="),
        "{next}"
    );
    assert!(first["offset"].is_string(), "{first}");
    let second = gw.admin("GET", next, &[], b"").json();
    assert_eq!(second["data"].as_array().map(Vec::len), Some(1), "{second}");
    assert!(second["next"].is_null(), "{second}");
    assert_eq!(second["data"][0]["data"]["addresses"][0]["ip"], "127.0.0.3");
    let bad = gw.admin("GET", "/upstreams/quiet/health?size=0", &[], b"");
    assert_eq!(bad.status, 400, "{}", bad.text());

    let json_type = [("Content-Type", "application/json")];
    let ok = gw.admin(
        "POST",
        "/schemas/services/validate",
        &json_type,
        br#"{"name":"x","host":"example.com"}"#,
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(
        ok.json(),
        json!({"message": "schema validation successful"})
    );
    let bad = gw.admin(
        "POST",
        "/schemas/routes/validate",
        &json_type,
        br#"{"protocols":["http"],"paths":["no-slash"]}"#,
    );
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert_eq!(bad.json()["code"], 2);
    assert_eq!(
        gw.admin("POST", "/schemas/nope/validate", &json_type, b"{}")
            .json(),
        json!({"message": "No entity named 'nope'"})
    );
}

#[test]
fn tags_list_every_tagged_entity_and_filter_by_one() {
    let up = Upstream::start();
    let gw = start(&up);
    let all = gw.admin("GET", "/tags", &[], b"").json();
    let rows = all["data"].as_array().expect("data");
    assert_eq!(rows.len(), 3, "{all}");
    assert!(rows.contains(
        &json!({"entity_name": "services", "entity_id": rows[0]["entity_id"], "tag": "public"})
    ));
    let public = gw.admin("GET", "/tags/public", &[], b"").json();
    assert_eq!(public["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(public["data"][0]["entity_name"], "services");
    let paged = gw.admin("GET", "/tags?size=2", &[], b"").json();
    assert_eq!(paged["data"].as_array().map(Vec::len), Some(2));
    let next = paged["next"].as_str().expect("a next page");
    let rest = gw.admin("GET", next, &[], b"").json();
    assert_eq!(rest["data"].as_array().map(Vec::len), Some(1));
}

#[test]
fn plugin_reads_echo_deprecated_shorthand_fields_as_kong_does() {
    let up = Upstream::start();
    let yaml = format!(
        r#"_format_version: "3.0"
services:
  - name: s
    url: http://{}
    routes:
      - name: r
        paths: ["/r"]
        plugins:
          - name: rate-limiting
            config:
              minute: 5
              policy: redis
              redis_host: redis.internal
              redis: {{port: 6380}}
"#,
        up.addr
    );
    let gw = Gangway::start_with(Options::new(yaml).admin());
    let listed = gw.admin("GET", "/plugins", &[], b"").json();
    let plugin = &listed["data"][0];
    let config = &plugin["config"];
    assert_eq!(config["redis"]["host"], "redis.internal", "{config}");
    assert_eq!(config["redis_host"], "redis.internal", "{config}");
    assert_eq!(config["redis_port"], 6380, "{config}");
    assert_eq!(config["redis_timeout"], 2000, "{config}");
    assert_eq!(config["redis_password"], Value::Null, "{config}");
    let id = plugin["id"].as_str().expect("id");
    let one = gw.admin("GET", &format!("/plugins/{id}"), &[], b"").json();
    assert_eq!(one["config"]["redis_host"], "redis.internal", "{one}");
    let nested = gw.admin("GET", "/routes/r/plugins", &[], b"").json();
    assert_eq!(nested["data"][0]["config"]["redis_port"], 6380, "{nested}");
    let other = gw.admin("GET", "/services/s", &[], b"").json();
    assert!(other.get("redis_host").is_none(), "only plugins get them");
}

/// Kong's `admin_access_log`: a line per Admin API request in nginx's `combined` format, the
/// format Kong's admin server logs in; SIGUSR1 opens the file again.
#[test]
fn admin_access_log_writes_a_combined_line_per_request() {
    let up = Upstream::start();
    let dir = TempDir::new("admin-access-log");
    let log = dir.path("admin_access.log");
    let gw = Gangway::start_with(
        Options::new(config(up.addr))
            .admin()
            .env("KONG_ADMIN_ACCESS_LOG", log.display().to_string()),
    );
    let r = gw.admin(
        "GET",
        "/services?size=1",
        &[("User-Agent", "deck/1.40")],
        b"",
    );
    assert_eq!(r.status, 200);
    let r = gw.admin("GET", "/nope", &[("Referer", "http://manager/")], b"");
    assert_eq!(r.status, 404);
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while read().lines().count() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "two lines: {:?}",
            read()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let text = read();
    let lines: Vec<&str> = text.lines().collect();
    let shape = |line: &str, request: &str, status: u16, referer: &str, agent: &str| {
        let (head, rest) = line.split_once(" [").expect("time");
        assert_eq!(head, "127.0.0.1 - -", "{line}");
        let (time, rest) = rest.split_once("] ").expect("time end");
        assert!(time.ends_with(" +0000") && time.len() == 26, "{line}");
        let (sent, tail) = rest
            .strip_prefix(&format!("\"{request}\" {status} "))
            .and_then(|r| r.split_once(' '))
            .unwrap_or_else(|| panic!("{line}"));
        assert!(sent.parse::<u64>().is_ok_and(|n| n > 0), "{line}");
        assert_eq!(tail, format!("\"{referer}\" \"{agent}\""), "{line}");
    };
    shape(
        lines[0],
        "GET /services?size=1 HTTP/1.1",
        200,
        "-",
        "deck/1.40",
    );
    shape(lines[1], "GET /nope HTTP/1.1", 404, "http://manager/", "-");
    assert!(
        !gw.log().contains("GET /services?size=1"),
        "not in the process log"
    );

    std::fs::rename(&log, dir.path("admin_access.log.1")).expect("rotate");
    gw.signal(libc::SIGUSR1);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(gw.admin("GET", "/status", &[], b"").status, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !read().contains("\"GET /status HTTP/1.1\" 200") {
        assert!(
            std::time::Instant::now() < deadline,
            "a new file: {:?}",
            read()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Kong's `node_id`: the node reports the id it is given (`GET /`, the configuration it
/// shows, the status listener's metrics), and a value that is not a UUID stops startup with
/// Kong's message.
#[test]
fn node_id_fixes_the_id_the_node_reports() {
    let up = Upstream::start();
    let id = "6c5b1f2e-8a49-4c3b-9d2e-3f0a1b2c3d4e";
    let gw = Gangway::start_with(
        Options::new(config(up.addr))
            .admin()
            .env("KONG_NODE_ID", id),
    );
    let info = gw.admin("GET", "/", &[], b"").json();
    assert_eq!(info["node_id"], id, "{info}");
    assert_eq!(info["configuration"]["node_id"], id);
    let metrics = crate::harness::request(gw.status, "GET", "/metrics", &[], b"").expect("metrics");
    assert!(
        metrics.text().contains(&format!("node_id=\"{id}\"")),
        "{}",
        metrics.text()
    );

    let out = crate::harness::refused_start(&[("KONG_NODE_ID", "node-1")]);
    assert!(
        out.contains("node_id must be a valid UUID, got 'node-1'"),
        "{out}"
    );
}
