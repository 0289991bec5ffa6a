//! `cargo xtask test`'s first step: the workspace's layering, checked from `cargo metadata`
//! before anything is built (gateway/README.md draws it).
//!
//! Two rules: a gangway crate depends only on the gangway crates its layer allows (cargo
//! already refuses cycles; this refuses a new upward arrow), and no core crate pulls in, even
//! transitively, a heavy dependency that belongs in an edge crate.

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// Each core crate and the gangway crates it may depend on (normal dependencies).
const ALLOWED: &[(&str, &[&str])] = &[
    ("gangway-http", &[]),
    ("gangway-config", &["gangway-http"]),
    ("gangway-router", &["gangway-config", "gangway-http"]),
    ("gangway-net", &["gangway-config"]),
    (
        "gangway-pipeline",
        &["gangway-config", "gangway-http", "gangway-router"],
    ),
    (
        "gangway-plugins",
        &[
            "gangway-config",
            "gangway-http",
            "gangway-router",
            "gangway-net",
            "gangway-pipeline",
        ],
    ),
    (
        "gangway-proxy",
        &[
            "gangway-config",
            "gangway-http",
            "gangway-router",
            "gangway-net",
            "gangway-pipeline",
        ],
    ),
];

/// Crates that live only in edge crates: the data-plane core must not reach them.
const EDGE_ONLY: &[&str] = &[
    "tokio-postgres",
    "postgres-protocol",
    "redis",
    "aws-",
    "aya",
    "opentelemetry",
];

/// Checks both rules; the error lists every violation.
pub fn check() -> Result<()> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--format-version", "1", "--locked"])
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: Value = serde_json::from_slice(&out.stdout).context("parsing cargo metadata")?;
    let problems = violations(&meta)?;
    if problems.is_empty() {
        eprintln!("xtask: layering ok ({} core crates)", ALLOWED.len());
        return Ok(());
    }
    bail!(
        "the workspace breaks its layering (see gateway/README.md):\n  {}",
        problems.join("\n  ")
    )
}

/// Every broken rule in `meta` (the output of `cargo metadata`).
fn violations(meta: &Value) -> Result<Vec<String>> {
    let names: HashMap<&str, &str> = meta["packages"]
        .as_array()
        .context("metadata: packages")?
        .iter()
        .filter_map(|p| Some((p["id"].as_str()?, p["name"].as_str()?)))
        .collect();
    // id -> ids of its normal (non-dev, non-build) dependencies.
    let mut graph: HashMap<&str, Vec<&str>> = HashMap::new();
    for node in meta["resolve"]["nodes"]
        .as_array()
        .context("metadata: resolve.nodes")?
    {
        let id = node["id"].as_str().context("metadata: node id")?;
        let deps = node["deps"].as_array().into_iter().flatten();
        let normal = deps.filter(|d| {
            d["dep_kinds"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k["kind"].is_null()))
        });
        graph.insert(id, normal.filter_map(|d| d["pkg"].as_str()).collect());
    }
    let mut problems = Vec::new();
    for (krate, allowed) in ALLOWED {
        let Some((&id, _)) = names.iter().find(|(_, n)| *n == krate) else {
            problems.push(format!("{krate}: not in the workspace"));
            continue;
        };
        for dep in graph.get(id).into_iter().flatten() {
            let dep = names.get(dep).copied().unwrap_or(dep);
            if dep.starts_with("gangway") && !allowed.contains(&dep) {
                problems.push(format!("{krate} depends on {dep}, which is not below it"));
            }
        }
        let mut seen = BTreeSet::new();
        let mut stack = vec![id];
        while let Some(next) = stack.pop() {
            for dep in graph.get(next).into_iter().flatten() {
                if seen.insert(*dep) {
                    stack.push(dep);
                }
            }
        }
        for dep in seen {
            let dep = names.get(dep).copied().unwrap_or(dep);
            if EDGE_ONLY.iter().any(|edge| dep.starts_with(edge)) {
                problems.push(format!(
                    "{krate} reaches {dep}: heavy dependencies belong in an edge crate"
                ));
            }
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    fn node(id: &str, deps: &[(&str, Option<&str>)]) -> serde_json::Value {
        let deps: Vec<_> = deps
            .iter()
            .map(|(pkg, kind)| json!({"pkg": pkg, "dep_kinds": [{"kind": kind}]}))
            .collect();
        json!({"id": id, "deps": deps})
    }

    /// The real layering, with `extra` normal dependencies added to gangway-router.
    fn workspace(extra: &[&str]) -> serde_json::Value {
        let mut packages: Vec<_> = super::ALLOWED
            .iter()
            .map(|(name, _)| json!({"id": name, "name": name}))
            .collect();
        packages.push(json!({"id": "redis", "name": "redis"}));
        packages.push(json!({"id": "combine", "name": "combine"}));
        let mut nodes: Vec<_> = super::ALLOWED
            .iter()
            .map(|(name, allowed)| {
                let mut deps: Vec<_> = allowed.iter().map(|d| (*d, None)).collect();
                if *name == "gangway-router" {
                    deps.extend(extra.iter().map(|d| (*d, None)));
                }
                node(name, &deps)
            })
            .collect();
        nodes.push(node("redis", &[("combine", None)]));
        nodes.push(node("combine", &[]));
        json!({"packages": packages, "resolve": {"nodes": nodes}})
    }

    #[test]
    fn the_allowed_graph_passes() {
        assert_eq!(
            super::violations(&workspace(&[])).expect("parses"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn an_upward_arrow_and_a_heavy_dependency_are_both_reported() {
        let problems = super::violations(&workspace(&["gangway-proxy", "redis"])).expect("parses");
        assert!(problems.contains(
            &"gangway-router depends on gangway-proxy, which is not below it".to_string()
        ));
        // Reached directly by the router, and through it by every crate above.
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("gangway-router reaches redis"))
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("gangway-proxy reaches redis"))
        );
    }

    #[test]
    fn dev_dependencies_do_not_count() {
        let mut meta = workspace(&[]);
        let nodes = meta["resolve"]["nodes"].as_array_mut().expect("nodes");
        nodes[0] = super::tests::node("gangway-http", &[("redis", Some("dev"))]);
        assert_eq!(
            super::violations(&meta).expect("parses"),
            Vec::<String>::new()
        );
    }
}
