//! decK (Debian's `deck`, which speaks the 1.1 file format) against a gangway node on a real
//! Postgres: ping, sync, dump, an empty diff after a sync, and a second sync with changes.

use std::path::Path;
use std::process::{Command, Output};

use crate::harness::postgres::{Postgres, PostgresExt};
use crate::harness::{Gangway, TempDir, Upstream, request, said};

fn deck_binary() -> &'static str {
    for candidate in ["/usr/bin/deck", "/usr/local/bin/deck"] {
        if Path::new(candidate).exists() {
            return candidate;
        }
    }
    panic!("deck not found: install the Debian package deck (bash .ci/run does)");
}

fn deck(admin: std::net::SocketAddr, args: &[&str]) -> Output {
    Command::new(deck_binary())
        .args(args)
        .args(["--kong-addr", &format!("http://{admin}")])
        .env("HOME", std::env::temp_dir())
        .output()
        .expect("run deck")
}

fn node(pg: &Postgres) -> Gangway {
    pg.bootstrap();
    Gangway::start_with(pg.node_options().admin())
}

fn state(upstream: std::net::SocketAddr) -> String {
    format!(
        r#"_format_version: "1.1"
services:
- name: weather
  url: http://{upstream}/
  routes:
  - name: forecast
    paths:
    - /forecast
  plugins:
  - name: key-auth
  - name: request-size-limiting
    config:
      allowed_payload_size: 10
consumers:
- username: alice
  custom_id: cust-1
  keyauth_credentials:
  - key: alice-key
  acls:
  - group: gold
"#
    )
}

#[test]
fn deck_syncs_dumps_and_diffs_against_gangway() {
    let pg = Postgres::start();
    let up = Upstream::start();
    let gw = node(&pg);
    let admin = gw.admin.expect("admin listener");
    let dir = TempDir::new("deck");
    let file = dir.path("kong.yaml");
    let file_arg = file.to_str().expect("utf-8 path");

    let ping = deck(admin, &["ping"]);
    assert!(ping.status.success(), "{}", said(&ping));

    std::fs::write(&file, state(up.addr)).expect("write state");
    let sync = deck(admin, &["sync", "-s", file_arg]);
    assert!(
        sync.status.success(),
        "deck sync: {}\nlog:\n{}",
        said(&sync),
        gw.log()
    );
    assert_eq!(pg.psql("select count(*) from consumers"), "1");
    assert_eq!(pg.psql("select count(*) from plugins"), "2");
    let auth = |key: &str| {
        request(gw.proxy, "GET", "/forecast", &[("apikey", key)], b"")
            .map(|r| r.status)
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while !(auth("nope") == 401 && auth("alice-key") == 200) {
        assert!(
            std::time::Instant::now() < deadline,
            "the synced state proxies"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    let dumped = dir.path("dump.yaml");
    let dumped_arg = dumped.to_str().expect("path").to_owned();
    let dump = deck(admin, &["dump", "-o", &dumped_arg]);
    assert!(dump.status.success(), "deck dump: {}", said(&dump));
    let doc: serde_json::Value =
        serde_norway::from_str(&std::fs::read_to_string(&dumped).expect("dump")).expect("yaml");
    let service = &doc["services"][0];
    assert_eq!(service["name"], "weather");
    assert_eq!(service["retries"], 5, "defaults come back filled");
    assert_eq!(service["routes"][0]["name"], "forecast");
    assert_eq!(doc["consumers"][0]["username"], "alice");
    assert_eq!(doc["consumers"][0]["custom_id"], "cust-1");
    assert_eq!(
        doc["consumers"][0]["keyauth_credentials"][0]["key"],
        "alice-key"
    );
    assert_eq!(doc["consumers"][0]["acls"][0]["group"], "gold");
    let plugins: Vec<&str> = service["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(plugins.contains(&"key-auth") && plugins.contains(&"request-size-limiting"));

    // decK 1.4 fills only a few defaults in a file (its own note calls the rest false
    // positives), so the round trip it supports is dump, edit, sync: a dumped file diffs
    // empty, and syncing it changes nothing.
    let no_change = |what: &str| {
        let diff = deck(admin, &["diff", "-s", &dumped_arg]);
        assert!(diff.status.success(), "deck diff: {}", said(&diff));
        let text = said(&diff);
        assert!(
            text.contains("Created: 0")
                && text.contains("Updated: 0")
                && text.contains("Deleted: 0"),
            "{what}:\n{text}"
        );
    };
    no_change("a dump diffs empty");
    let resync = deck(admin, &["sync", "-s", &dumped_arg]);
    assert!(resync.status.success(), "{}", said(&resync));
    no_change("syncing a dump changes nothing");

    // A second sync with changes, on the dumped file: a new route, a changed plugin config.
    let edited = std::fs::read_to_string(&dumped)
        .expect("dump")
        .replace("allowed_payload_size: 10", "allowed_payload_size: 20");
    assert!(edited.contains("allowed_payload_size: 20"), "{edited}");
    let mut doc: serde_json::Value = serde_norway::from_str(&edited).expect("yaml");
    let routes = doc["services"][0]["routes"].as_array_mut().expect("routes");
    routes.push(serde_json::json!({"name": "extra", "paths": ["/extra"], "protocols": ["http", "https"],
        "preserve_host": false, "regex_priority": 0, "strip_path": true, "https_redirect_status_code": 426,
        "path_handling": "v0", "request_buffering": true, "response_buffering": true}));
    std::fs::write(&dumped, serde_norway::to_string(&doc).expect("yaml")).expect("write");
    let again = deck(admin, &["sync", "-s", &dumped_arg]);
    assert!(again.status.success(), "second deck sync: {}", said(&again));
    assert_eq!(pg.psql("select count(*) from routes"), "2");
    assert_eq!(
        pg.psql(
            "select entity->'config'->>'allowed_payload_size' from plugins where name = 'request-size-limiting'"
        ),
        "20"
    );
    no_change("the edited file, synced");
}
