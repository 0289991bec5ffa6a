//! `cargo xtask test`'s first step: the workspace's layering, checked from `cargo metadata`
//! before anything is built (gateway/README.md draws it).
//!
//! Three rules: a gangway crate depends only on the gangway crates its layer allows (cargo
//! already refuses cycles; this refuses a new upward arrow); no core crate pulls in, even
//! transitively, a heavy dependency that belongs in an edge crate; and the binary crate, whose
//! test harness is off to save a link per test build, holds no test that would never run.

use std::collections::{BTreeSet, HashMap};

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

/// Edge crates: each may use the core, never another edge crate (the binary joins them).
const EDGES: &[(&str, &[&str])] = &[
    (
        "gangway-admin",
        &[
            "gangway-config",
            "gangway-http",
            "gangway-router",
            "gangway-net",
            "gangway-pipeline",
            "gangway-plugins",
            "gangway-proxy",
        ],
    ),
    (
        "gangway-store",
        &[
            "gangway-config",
            "gangway-http",
            "gangway-router",
            "gangway-net",
            "gangway-pipeline",
            "gangway-proxy",
        ],
    ),
    (
        "gangway-quota",
        &[
            "gangway-config",
            "gangway-http",
            "gangway-router",
            "gangway-net",
            "gangway-pipeline",
        ],
    ),
    (
        "gangway-lambda",
        &[
            "gangway-config",
            "gangway-http",
            "gangway-router",
            "gangway-pipeline",
            "gangway-plugins",
        ],
    ),
    ("gangway-ebpf", &["gangway-config", "gangway-net"]),
    (
        "gangway-otel",
        &[
            "gangway-config",
            "gangway-http",
            "gangway-router",
            "gangway-pipeline",
            "gangway-plugins",
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
    "prost",
];

/// Checks both rules; the error lists every violation.
pub fn check() -> Result<()> {
    let out = crate::cargo_command()
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
    let mut problems = violations(&meta)?;
    problems.extend(tests_without_harness(&meta)?);
    if problems.is_empty() {
        eprintln!(
            "xtask: layering ok ({} core crates, {} edge crates)",
            ALLOWED.len(),
            EDGES.len()
        );
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
    for (krate, allowed) in EDGES {
        let Some((&id, _)) = names.iter().find(|(_, n)| *n == krate) else {
            continue;
        };
        for dep in graph.get(id).into_iter().flatten() {
            let dep = names.get(dep).copied().unwrap_or(dep);
            if dep.starts_with("gangway") && !allowed.contains(&dep) {
                problems.push(format!("edge crate {krate} depends on {dep}"));
            }
        }
    }
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

/// Test code in targets whose harness is off (`test = false`): such tests would never run.
fn tests_without_harness(meta: &Value) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let packages = meta["packages"].as_array().context("metadata: packages")?;
    let workspace = meta["workspace_members"]
        .as_array()
        .context("metadata: workspace_members")?;
    for package in packages.iter().filter(|p| workspace.contains(&p["id"])) {
        for target in package["targets"].as_array().into_iter().flatten() {
            // A build script is never tested, and sits beside its package's sources.
            let build_script = target["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "custom-build"));
            if target["test"].as_bool() != Some(false) || build_script {
                continue;
            }
            let Some(src) = target["src_path"].as_str() else {
                continue;
            };
            let dir = std::path::Path::new(src)
                .parent()
                .context("a target's source has a folder")?;
            for file in rust_files(dir)? {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?;
                if text.contains("#[test]") || text.contains("#[cfg(test)]") {
                    problems.push(format!(
                        "{} has tests, but its package's test harness is off (test = false)",
                        file.display()
                    ));
                }
            }
        }
    }
    problems.sort();
    problems.dedup();
    Ok(problems)
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    Ok(files)
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

    #[test]
    fn tests_in_a_target_without_harness_are_reported() {
        let dir = std::env::temp_dir().join(format!("xtask-layers-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).expect("temp dir");
        std::fs::write(dir.join("lib.rs"), "mod sub;\n").expect("write");
        std::fs::write(dir.join("sub/inner.rs"), "#[test]\nfn t() {}\n").expect("write");
        let lib = dir.join("lib.rs").display().to_string();
        let meta = |test: bool| {
            json!({
                "workspace_members": ["p"],
                "packages": [{"id": "p", "targets": [{"src_path": lib, "test": test}]}],
            })
        };
        let found = super::tests_without_harness(&meta(false)).expect("reads");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].ends_with(
                "inner.rs has tests, but its package's test harness is off (test = false)"
            )
        );
        assert!(
            super::tests_without_harness(&meta(true))
                .expect("reads")
                .is_empty()
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
