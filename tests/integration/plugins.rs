//! The plugin pipeline end to end: key-auth, acl and request-termination, scope precedence,
//! ordering, anonymous consumers and credential expiry (assertions ported from Kong's
//! spec/03-plugins/09-key-auth, 18-acl and 14-request-termination where they apply).

use crate::harness::gangway_command;
use crate::harness::{Gangway, Upstream, echo_header, request};

fn config(upstream: std::net::SocketAddr, body: &str) -> String {
    format!(
        "_format_version: \"3.0\"\nservices:\n  - name: echo\n    url: http://{upstream}\n{body}"
    )
}

const KEY_AUTH: &str = r#"    routes:
      - name: secured
        paths: ["/secured"]
        plugins:
          - name: key-auth
            config:
              hide_credentials: true
          - name: acl
            config:
              allow: [gold]
      - name: open
        paths: ["/open"]
      - name: anon
        paths: ["/anon"]
        plugins:
          - name: key-auth
            config:
              anonymous: guest
consumers:
  - username: alice
    custom_id: a-1
    keyauth_credentials:
      - key: alice-key
    acls:
      - group: gold
  - username: bob
    keyauth_credentials:
      - key: bob-key
      - key: short-lived
        ttl: 4
  - username: guest
"#;

fn start() -> (Upstream, Gangway) {
    let up = Upstream::start();
    let gw = Gangway::start(&config(up.addr, KEY_AUTH));
    (up, gw)
}

#[test]
fn key_auth_accepts_a_header_key_and_hides_it() {
    let (_up, gw) = start();
    let r = request(
        gw.proxy,
        "GET",
        "/secured/x",
        &[("apikey", "alice-key")],
        b"",
    )
    .expect("request");
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    assert_eq!(echo_header(&echo, "apikey"), None, "hide_credentials");
    assert_eq!(
        echo_header(&echo, "x-consumer-username").as_deref(),
        Some("alice")
    );
    assert_eq!(
        echo_header(&echo, "x-consumer-custom-id").as_deref(),
        Some("a-1")
    );
    assert!(echo_header(&echo, "x-consumer-id").is_some_and(|v| v.len() == 36));
    assert!(echo_header(&echo, "x-credential-identifier").is_some_and(|v| v.len() == 36));
    assert_eq!(
        echo_header(&echo, "x-consumer-groups").as_deref(),
        Some("gold")
    );
    assert_eq!(echo_header(&echo, "x-anonymous-consumer"), None);
}

#[test]
fn key_auth_reads_the_query_and_strips_it_when_hidden() {
    let (_up, gw) = start();
    let r = gw.get("/secured/x?apikey=alice-key&keep=1");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["target"], "/x?keep=1");
}

#[test]
fn key_auth_rejects_missing_unknown_and_duplicate_keys_with_kong_bodies() {
    let (_up, gw) = start();
    let r = gw.get("/secured/x");
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["message"], "No API key found in request");
    assert_eq!(r.header("www-authenticate"), Some("Key"));
    let r = request(gw.proxy, "GET", "/secured/x", &[("apikey", "")], b"").expect("request");
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["message"], "No API key found in request");
    let r = request(gw.proxy, "GET", "/secured/x", &[("apikey", "nope")], b"").expect("request");
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["message"], "Unauthorized");
    assert_eq!(r.header("www-authenticate"), Some("Key"));
    let r = gw.get("/secured/x?apikey=a&apikey=b");
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["message"], "Duplicate API key found");
    let r = request(
        gw.proxy,
        "GET",
        "/secured/x",
        &[("apikey", "alice-key"), ("apikey", "bob-key")],
        b"",
    )
    .expect("request");
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["message"], "Duplicate API key found");
}

#[test]
fn acl_forbids_a_consumer_outside_the_allowed_groups() {
    let (_up, gw) = start();
    let r = request(gw.proxy, "GET", "/secured/x", &[("apikey", "bob-key")], b"").expect("request");
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["message"], "You cannot consume this service");
}

#[test]
fn expired_credentials_are_unauthorized() {
    let (_up, gw) = start();
    let r = request(
        gw.proxy,
        "GET",
        "/anon/x",
        &[("apikey", "short-lived")],
        b"",
    )
    .expect("request");
    assert_eq!(r.status, 200);
    assert_eq!(
        echo_header(&r.json(), "x-consumer-username").as_deref(),
        Some("bob")
    );
    std::thread::sleep(std::time::Duration::from_millis(4200));
    let r = request(
        gw.proxy,
        "GET",
        "/secured/x",
        &[("apikey", "short-lived")],
        b"",
    )
    .expect("request");
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["message"], "Unauthorized");
}

#[test]
fn anonymous_consumer_is_mapped_when_authentication_fails() {
    let (_up, gw) = start();
    let r = request(
        gw.proxy,
        "GET",
        "/anon/x",
        &[
            ("x-consumer-username", "forged"),
            ("x-credential-identifier", "forged"),
        ],
        b"",
    )
    .expect("request");
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    assert_eq!(
        echo_header(&echo, "x-consumer-username").as_deref(),
        Some("guest")
    );
    assert_eq!(
        echo_header(&echo, "x-anonymous-consumer").as_deref(),
        Some("true")
    );
    assert_eq!(
        echo_header(&echo, "x-credential-identifier"),
        None,
        "client copy cleared"
    );
    let r = request(gw.proxy, "GET", "/anon/x", &[("apikey", "alice-key")], b"").expect("request");
    let echo = r.json();
    assert_eq!(
        echo_header(&echo, "x-consumer-username").as_deref(),
        Some("alice")
    );
    assert_eq!(echo_header(&echo, "x-anonymous-consumer"), None);
}

#[test]
fn routes_without_plugins_are_untouched() {
    let (_up, gw) = start();
    let r = request(
        gw.proxy,
        "GET",
        "/open/x",
        &[("x-consumer-id", "client-sent")],
        b"",
    )
    .expect("request");
    assert_eq!(r.status, 200);
    assert_eq!(
        echo_header(&r.json(), "x-consumer-id").as_deref(),
        Some("client-sent")
    );
}

#[test]
fn most_specific_scope_wins_and_consumer_scope_applies_after_auth() {
    let up = Upstream::start();
    let body = r#"    routes:
      - name: r1
        paths: ["/r1"]
        plugins:
          - name: key-auth
      - name: r2
        paths: ["/r2"]
        plugins:
          - name: request-termination
            config:
              status_code: 418
              message: route
plugins:
  - name: request-termination
    config:
      status_code: 503
      message: global
  - name: request-termination
    consumer: alice
    config:
      status_code: 402
      message: alice only
consumers:
  - username: alice
    keyauth_credentials:
      - key: alice-key
  - username: bob
    keyauth_credentials:
      - key: bob-key
"#;
    let gw = Gangway::start(&config(up.addr, body));
    let r = gw.get("/r2");
    assert_eq!(r.status, 418, "route beats global");
    assert_eq!(r.json()["message"], "route");
    let r = request(gw.proxy, "GET", "/r1", &[("apikey", "bob-key")], b"").expect("request");
    assert_eq!(r.status, 503, "global applies to bob");
    assert_eq!(r.json()["message"], "global");
    let r = request(gw.proxy, "GET", "/r1", &[("apikey", "alice-key")], b"").expect("request");
    assert_eq!(
        r.status, 402,
        "consumer scope beats global once alice is known"
    );
    assert_eq!(r.json()["message"], "alice only");
    let r = gw.get("/nowhere");
    assert_eq!(
        r.status, 404,
        "no route: router 404, not the global terminator"
    );
}

#[test]
fn ordering_moves_a_plugin_before_authentication() {
    let up = Upstream::start();
    // request-termination (priority 2) normally runs after key-auth (1250).
    let body = r#"    routes:
      - name: r
        paths: ["/r"]
        plugins:
          - name: key-auth
          - name: request-termination
            ordering:
              before:
                access: [key-auth]
            config:
              status_code: 200
              body: "terminated first"
              content_type: text/plain
"#;
    let gw = Gangway::start(&config(up.addr, body));
    let r = gw.get("/r");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "terminated first");
    assert_eq!(r.header("content-type"), Some("text/plain"));
}

#[test]
fn request_termination_trigger_and_echo() {
    let up = Upstream::start();
    let body = r#"    routes:
      - name: r
        paths: ["/r"]
        plugins:
          - name: request-termination
            config:
              status_code: 404
              echo: true
              trigger: x-trigger
"#;
    let gw = Gangway::start(&config(up.addr, body));
    let r = gw.get("/r/a?b=c");
    assert_eq!(r.status, 200, "no trigger: proxied");
    let r = request(gw.proxy, "GET", "/r/a?b=c", &[("x-trigger", "1")], b"").expect("request");
    assert_eq!(r.status, 404);
    let echo = r.json();
    assert_eq!(echo["request"]["path"], "/r/a");
    assert_eq!(echo["request"]["query"]["b"], "c");
    assert_eq!(echo["request"]["headers"]["x-trigger"], "1");
    assert_eq!(echo["matched_route"]["name"], "r");
}

#[test]
fn ordering_cycles_are_config_errors() {
    let dir = crate::harness::TempDir::new("ordering-cycle");
    let file = dir.path("cycle.yml");
    std::fs::write(
        &file,
        r#"_format_version: "3.0"
services:
  - name: s
    url: http://example.com
    routes:
      - name: r
        paths: ["/"]
        plugins:
          - name: key-auth
            ordering:
              before:
                access: [acl]
          - name: acl
            ordering:
              before:
                access: [key-auth]
            config:
              allow: [a]
"#,
    )
    .expect("write");
    let out = gangway_command()
        .arg("check")
        .arg(&file)
        .output()
        .expect("run check");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("routes[0]: plugin ordering has a cycle among: key-auth, acl"),
        "{err}"
    );
}

/// Regression: ordering request-transformer before key-auth once moved acl (which has no
/// constraint) ahead of both, so every request was refused.
#[test]
fn ordering_keeps_unconstrained_plugins_in_priority_order() {
    let up = Upstream::start();
    let body = r#"    routes:
      - name: r
        paths: ["~/k/(?<key>[^/]+)$"]
        plugins:
          - name: request-transformer
            ordering:
              before:
                access: [key-auth]
            config:
              add:
                headers: ["apikey:$(uri_captures.key)"]
          - name: key-auth
          - name: acl
            config:
              allow: [gold]
consumers:
  - username: alice
    keyauth_credentials:
      - key: alice-key
    acls:
      - group: gold
"#;
    let gw = Gangway::start(&config(up.addr, body));
    let r = gw.get("/k/alice-key");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        echo_header(&r.json(), "x-consumer-groups").as_deref(),
        Some("gold")
    );
}
