//! `gangway migrations ...` against a real Postgres: bootstrap, status, up, finish and reset
//! behave as `kong migrations` does, and two nodes bootstrapping at once take turns.

use std::process::Output;

use crate::harness::gangway_command;
use crate::harness::postgres::{Postgres, PostgresExt};
use crate::harness::said;

fn gangway(pg: &Postgres, args: &[&str]) -> Output {
    pg.gangway(args, &[])
}

#[test]
fn bootstrap_is_idempotent_and_status_reports_the_schema() {
    let pg = Postgres::start();
    let before = gangway(&pg, &["migrations", "status"]);
    assert!(before.status.success(), "{}", said(&before));
    let status: serde_json::Value = serde_json::from_slice(&before.stdout).expect("status is JSON");
    assert_eq!(status["bootstrapped"], false);
    assert_eq!(
        status["pending"],
        serde_json::json!([
            "001_base",
            "002_ratelimiting_metrics",
            "003_plugin_snapshot",
            "004_plugin_shape"
        ])
    );

    let up_too_early = gangway(&pg, &["migrations", "up"]);
    assert!(!up_too_early.status.success());
    assert!(said(&up_too_early).contains("database needs bootstrapping"));

    let first = gangway(&pg, &["migrations", "bootstrap"]);
    assert!(first.status.success(), "{}", said(&first));
    assert!(said(&first).contains("migrating: 001_base ... ok"));
    assert!(said(&first).contains("migrating: 002_ratelimiting_metrics ... ok"));
    assert!(said(&first).contains("migrating: 003_plugin_snapshot ... ok"));
    assert!(said(&first).contains("migrating: 004_plugin_shape ... ok"));
    let second = gangway(&pg, &["migrations", "bootstrap"]);
    assert!(second.status.success());
    assert!(said(&second).contains("database already bootstrapped"));
    assert!(said(&gangway(&pg, &["migrations", "up"])).contains("database is up to date"));
    assert!(said(&gangway(&pg, &["migrations", "finish"])).contains("no pending migrations"));
    let after: serde_json::Value =
        serde_json::from_slice(&gangway(&pg, &["migrations", "status"]).stdout).expect("JSON");
    assert_eq!(
        after["executed"],
        serde_json::json!([
            "001_base",
            "002_ratelimiting_metrics",
            "003_plugin_snapshot",
            "004_plugin_shape"
        ])
    );
    assert_eq!(after["pending"], serde_json::json!([]));
    assert_eq!(pg.psql("select count(*) from services"), "0");

    let refused = gangway(&pg, &["migrations", "reset"]);
    assert!(!refused.status.success());
    assert!(said(&refused).contains("--yes"));
    let reset = gangway(&pg, &["migrations", "reset", "--yes"]);
    assert!(reset.status.success(), "{}", said(&reset));
    assert_eq!(pg.psql("select to_regclass('services') is null"), "t");
    assert_eq!(
        pg.psql("select to_regclass('ratelimiting_metrics') is null"),
        "t"
    );
}

#[test]
fn nodes_bootstrapping_at_once_take_turns() {
    let pg = Postgres::start();
    let spawn = || {
        gangway_command()
            .args(["migrations", "bootstrap"])
            .env_clear()
            .envs(pg.gangway_env())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (
        a.wait_with_output().expect("a"),
        b.wait_with_output().expect("b"),
    );
    assert!(
        a.status.success() && b.status.success(),
        "{}\n{}",
        said(&a),
        said(&b)
    );
    let ran = [&a, &b]
        .iter()
        .filter(|o| said(o).contains("migrating: 001_base"))
        .count();
    assert_eq!(
        ran,
        1,
        "exactly one ran the migration:\n{}\n{}",
        said(&a),
        said(&b)
    );
    assert_eq!(
        pg.psql("select count(*) from gangway_migrations"),
        "4",
        "each migration once"
    );
}

#[test]
fn an_unreachable_database_is_named_in_the_error() {
    let mut pg = Postgres::start();
    pg.stop();
    let out = gangway(&pg, &["migrations", "status"]);
    assert!(!out.status.success());
    let said = said(&out);
    assert!(
        said.contains(&format!(
            "cannot reach postgres at 127.0.0.1:{}/kong",
            pg.port()
        )),
        "{said}"
    );
}

#[test]
fn db_import_is_all_or_nothing_and_db_export_gives_the_entities_back() {
    let pg = Postgres::start();
    assert!(gangway(&pg, &["migrations", "bootstrap"]).status.success());
    let dir = crate::harness::TempDir::new("db-import");
    let file = dir.path("kong.yml");
    std::fs::write(
        &file,
        r#"_format_version: "3.0"
services:
  - name: api
    url: http://127.0.0.1:9
    routes:
      - name: r
        paths: ["/api"]
        plugins:
          - name: key-auth
consumers:
  - username: alice
    keyauth_credentials:
      - key: alice-key
    acls:
      - group: gold
"#,
    )
    .expect("write");
    let path = file.to_str().expect("utf-8 path");
    let imported = gangway(&pg, &["config", "db_import", path]);
    assert!(imported.status.success(), "{}", said(&imported));
    assert!(
        said(&imported).contains("consumers: 1"),
        "{}",
        said(&imported)
    );
    assert_eq!(pg.psql("select count(*) from keyauth_credentials"), "1");
    // Upserts by id: the same file again changes nothing.
    assert!(
        gangway(&pg, &["config", "db_import", path])
            .status
            .success()
    );
    assert_eq!(pg.psql("select count(*) from consumers"), "1");

    // A second consumer named alice under another id breaks uniqueness: nothing lands.
    let clash = dir.path("clash.yml");
    std::fs::write(
        &clash,
        "_format_version: \"3.0\"\nservices:\n  - name: other\n    url: http://127.0.0.1:9\nconsumers:\n  - id: 5a3c7d1e-0b2f-4c8e-9f1a-2b3c4d5e6f70\n    username: alice\n",
    )
    .expect("write");
    let refused = gangway(&pg, &["config", "db_import", clash.to_str().expect("path")]);
    assert!(!refused.status.success());
    assert!(
        said(&refused).contains("nothing was written"),
        "{}",
        said(&refused)
    );
    assert_eq!(
        pg.psql("select count(*) from services where name = 'other'"),
        "0"
    );

    let bad = dir.path("bad.yml");
    std::fs::write(
        &bad,
        "_format_version: \"3.0\"\nservices:\n  - name: nohost\n",
    )
    .expect("write");
    let invalid = gangway(&pg, &["config", "db_import", bad.to_str().expect("path")]);
    assert!(!invalid.status.success());
    assert!(
        said(&invalid).contains("services[0].host: required field missing"),
        "{}",
        said(&invalid)
    );

    let exported = gangway(&pg, &["config", "db_export"]);
    assert!(exported.status.success(), "{}", said(&exported));
    let doc: serde_json::Value =
        serde_norway::from_slice(&exported.stdout).expect("the export is YAML");
    assert_eq!(doc["_format_version"], "3.0");
    assert_eq!(doc["_transform"], false);
    assert_eq!(doc["consumers"][0]["username"], "alice");
    assert_eq!(doc["keyauth_credentials"][0]["key"], "alice-key");
    assert_eq!(doc["plugins"][0]["name"], "key-auth");
    // The export loads back as a declarative file.
    let round = dir.path("export.yml");
    let to_file = gangway(&pg, &["config", "db_export", round.to_str().expect("path")]);
    assert!(to_file.status.success(), "{}", said(&to_file));
    let parsed = gangway(&pg, &["config", "parse", round.to_str().expect("path")]);
    assert!(parsed.status.success(), "{}", said(&parsed));
    let again = gangway(&pg, &["config", "db_export", round.to_str().expect("path")]);
    assert!(!again.status.success(), "never overwrites");
}
