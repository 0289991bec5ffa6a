//! Environment variables: Kong's `KONG_*` aliases, then `GANGWAY_<KEY>`, which win. Unknown
//! `GANGWAY_*` variables are errors (a typo would otherwise be silently ignored); unknown
//! `KONG_*` variables only warn, because Kong has hundreds of settings and a task definition
//! written for Kong sets many that gangway has no use for.

use std::collections::{BTreeMap, HashSet};

use super::registry::{self, KEYS};
use super::{Origin, Problem, Settings};

/// Applies the `KONG_*` then the `GANGWAY_*` variables in `vars`; other variables are ignored.
pub(super) fn apply(
    vars: impl IntoIterator<Item = (String, String)>,
    settings: &mut Settings,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<String>,
) {
    // Sorted so that messages come out in a stable order whatever the process env order.
    let vars: BTreeMap<String, String> = vars
        .into_iter()
        .filter(|(name, _)| name.starts_with("KONG_") || name.starts_with("GANGWAY_"))
        .collect();
    let mut used: HashSet<&str> = HashSet::new();

    for key in KEYS {
        let ours = registry::env_name(key);
        // A GANGWAY_ variable replaces the Kong value outright, so a Kong value gangway cannot
        // take (say KONG_ROUTER_FLAVOR=expressions) can be overridden without editing it out.
        let overridden = vars.contains_key(&ours);
        for alias in key.kong {
            let Some(value) = vars.get(alias.env) else {
                continue;
            };
            used.insert(alias.env);
            if overridden {
                continue;
            }
            let apply = alias.apply.unwrap_or(key.apply);
            if let Err(reason) = apply(settings, value) {
                problems.push(invalid(alias.env, key.name, reason));
            }
        }
    }

    for key in KEYS {
        let ours = registry::env_name(key);
        if let Some((name, value)) = vars.get_key_value(&ours) {
            used.insert(name.as_str());
            if let Err(reason) = (key.apply)(settings, value) {
                problems.push(invalid(name, key.name, reason));
            }
        }
    }

    for name in vars.keys().filter(|name| !used.contains(name.as_str())) {
        if let Some(rest) = name.strip_prefix("GANGWAY_") {
            problems.push(Problem::UnknownEnv {
                var: name.clone(),
                key: rest.to_ascii_lowercase(),
            });
        } else if let Some(rest) = name.strip_prefix("KONG_") {
            warnings.push(format!(
                "ignoring {name}: gangway has no equivalent of Kong's '{}' setting",
                rest.to_ascii_lowercase()
            ));
        }
    }
}

fn invalid(var: &str, key: &str, reason: String) -> Problem {
    Problem::Invalid {
        origin: Origin::Env {
            var: var.to_owned(),
        },
        key: key.to_owned(),
        reason,
    }
}
