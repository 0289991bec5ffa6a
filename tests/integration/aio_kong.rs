//! aio-kong (PyPI), a Python Admin API client, against a gangway node on a real Postgres:
//! CRUD of services, routes, consumers, plugins and key-auth credentials, and its
//! kongfig-style `yaml` apply, twice.

use std::process::Command;

use crate::harness::postgres::{Postgres, PostgresExt};
use crate::harness::{Gangway, TempDir};

fn node(pg: &Postgres) -> Gangway {
    pg.bootstrap();
    Gangway::start_with(pg.node_options().admin())
}

#[test]
fn aio_kong_manages_entities_and_applies_a_yaml_config() {
    let probe = Command::new("python3")
        .args(["-c", "import kong.client, kong.cli, yaml"])
        .output()
        .expect("python3 runs");
    assert!(
        probe.status.success(),
        "aio-kong not importable ({}): pip install aio-kong (bash .ci/run does)",
        String::from_utf8_lossy(&probe.stderr).trim()
    );
    let pg = Postgres::start();
    let gw = node(&pg);
    let admin = gw.admin.expect("admin listener");
    let dir = TempDir::new("aio-kong");
    let config = dir.path("kongfig.yaml");
    std::fs::write(
        &config,
        r#"services:
  - name: applied
    host: example.org
    routes:
      - name: ar
        paths: ["/a"]
    plugins:
      - name: correlation-id
consumers:
  - username: bob
    groups: [gold]
    auths:
      - type: key-auth
        config:
          key: bob-key
"#,
    )
    .expect("write config");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/integration/clients/aio_kong_check.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .arg(format!("http://{admin}"))
        .arg(&config)
        .output()
        .expect("run the aio-kong check");
    assert!(
        out.status.success(),
        "aio-kong check failed:\n{}\n{}\nlog:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("aio-kong: ok"));
}
