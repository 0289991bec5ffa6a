//! DB-less mode's `/config` (`kong/api/routes/config.lua`): `POST` replaces the whole
//! declarative config atomically, `GET` exports it. A posted config is kept under `prefix`
//! so that a restart without a `declarative_config` comes back with it, as Kong keeps its
//! LMDB.

use std::path::Path;

use axum::response::Response;
use gangway_config::dao::ErrorCode;
use gangway_config::settings::Database;
use gangway_config::{Config, ConfigErrors, declarative};
use gangway_proxy::Snapshot;
use serde_json::{Map, Value, json};

use crate::AdminState;
use crate::reply;

/// Options of `POST /config`, from the query or the body.
struct PostOptions {
    flatten_errors: bool,
    check_hash: bool,
}

fn truthy(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_i64() == Some(1),
        Value::String(s) => matches!(s.to_ascii_lowercase().as_str(), "true" | "1" | "on" | "yes"),
        _ => false,
    }
}

/// `POST /config`. `params` holds the query arguments and the decoded body merged, as Kong's
/// `self.params`; `raw` is the body as sent (a YAML or JSON document).
pub async fn post(state: &AdminState, mut params: Map<String, Value>, raw: &[u8]) -> Response {
    if state.gateway.settings.database != Database::Off {
        return only_without_database();
    }
    let options = PostOptions {
        flatten_errors: params.remove("flatten_errors").is_some_and(|v| truthy(&v)),
        // Older than flatten_errors, so Kong compares the text, not a truthy value.
        check_hash: params
            .remove("check_hash")
            .is_some_and(|v| v == "1" || v == 1),
    };
    let document = if params.contains_key("_format_version") {
        Document::Parsed(Value::Object(params))
    } else if let Some(Value::String(text)) = params.get("config") {
        Document::Text(text.clone())
    } else if !raw.is_empty() {
        Document::Text(String::from_utf8_lossy(raw).into_owned())
    } else {
        return reply::message(400, "expected a declarative configuration");
    };
    let gateway = state.gateway.clone();
    let keep_at = gateway.settings.posted_config_path();
    let loaded = tokio::task::spawn_blocking(move || {
        let parsed = document.parse(gateway.shared.catalog.as_ref());
        let (config, input) = match parsed {
            Ok(pair) => pair,
            Err((errors, input)) => return Err((errors, input)),
        };
        let hash = gangway_proxy::compile::snapshot_hash(&config);
        if options.check_hash && hash == gateway.snapshot().hash {
            return Ok(None);
        }
        let keep = serde_json::to_vec(&input);
        let published = gateway
            .replace_config(move || Ok(config))
            .map_err(|errors| (errors, input))?;
        if let Ok(bytes) = keep {
            if let Err(e) = persist(&keep_at, &bytes, published.version) {
                tracing::warn!(error = %e, "POST /config: applied, but not kept for a restart");
            }
        }
        Ok(Some(published))
    })
    .await;
    match loaded {
        Ok(Ok(Some(snapshot))) => reply::json(201, &entities(&snapshot)),
        Ok(Ok(None)) => reply::empty(304),
        Ok(Err((errors, input))) => reply::json(
            400,
            &invalid(&errors, options.flatten_errors.then_some(&input)),
        ),
        Err(e) => reply::unexpected(&e),
    }
}

/// A posted document: parsed already (a JSON body), or text to parse (YAML or JSON).
enum Document {
    Parsed(Value),
    Text(String),
}

impl Document {
    /// The validated config and the input as a JSON value (for flattened errors), or every
    /// problem and that input.
    #[allow(clippy::result_large_err)]
    fn parse(
        self,
        plugins: &dyn gangway_config::PluginSchemas,
    ) -> Result<(Config, Value), (ConfigErrors, Value)> {
        let (md5, input) = match self {
            // Kong hashes a parsed body's entities, load timestamps included, so its hash
            // never repeats; the document's own JSON, keys sorted (the query arguments are
            // merged in first), does, and `check_hash` can answer 304.
            Document::Parsed(v) => {
                let mut canonical = v.clone();
                canonical.sort_all_objects();
                (declarative::text_md5(&canonical.to_string()), v)
            }
            Document::Text(text) => match serde_norway::from_str::<Value>(&text) {
                // Kong hashes a posted text as it hashes a file: the md5 of the text.
                Ok(v) => (declarative::text_md5(&text), v),
                // The loader reports the syntax error with Kong's wording.
                Err(_) => {
                    let errors = declarative::load_str(&text, plugins)
                        .err()
                        .unwrap_or_default();
                    return Err((errors, Value::Null));
                }
            },
        };
        match declarative::parse_value(input.clone(), plugins) {
            Ok(mut config) => {
                config.source_md5 = Some(md5);
                Ok((config, input))
            }
            Err(errors) => Err((errors, input)),
        }
    }
}

/// Writes the posted config whole or not at all (a new file renamed over the old one),
/// unless a config published after it (`version`) was written already. One write at a
/// time: two concurrent posts shared the partial file, and the older config could land
/// last, so a restart came back to a config that was not the one running.
fn persist(path: &Path, bytes: &[u8], version: u64) -> std::io::Result<()> {
    static WRITTEN: std::sync::Mutex<u64> = std::sync::Mutex::new(0);
    let mut written = WRITTEN.lock().unwrap_or_else(|p| p.into_inner());
    if *written > version {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let partial = path.with_extension("json.partial");
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, path)?;
    *written = version;
    Ok(())
}

fn only_without_database() -> Response {
    reply::message(
        400,
        "this endpoint is only available when Kong is configured to not use a database",
    )
}

/// Kong's 201 body: every loaded entity, by kind and id.
fn entities(snapshot: &Snapshot) -> Value {
    let mut out = Map::new();
    let export = export_document(snapshot);
    for (kind, list) in export.iter() {
        let Value::Array(items) = list else {
            continue;
        };
        let by_id: Map<String, Value> = items
            .iter()
            .filter_map(|e| Some((e["id"].as_str()?.to_owned(), e.clone())))
            .collect();
        out.insert(kind.clone(), Value::Object(by_id));
    }
    Value::Object(out)
}

/// The current config as a flat declarative document (every entity at the top level, with
/// its id and foreign keys by id).
fn export_document(snapshot: &Snapshot) -> Map<String, Value> {
    let config = &snapshot.config;
    let identities = &snapshot.identities;
    let mut doc = Map::new();
    let mut put = |kind: &str, list: Vec<Value>| {
        if !list.is_empty() {
            doc.insert(kind.to_owned(), Value::Array(list));
        }
    };
    fn all<T: serde::Serialize>(items: impl Iterator<Item = T>) -> Vec<Value> {
        items.filter_map(|e| serde_json::to_value(e).ok()).collect()
    }
    put("services", all(config.services.iter()));
    put("routes", all(config.routes.iter()));
    put("consumers", all(identities.consumers()));
    put("plugins", all(config.plugins.iter()));
    put("upstreams", all(config.upstreams.iter()));
    put("targets", all(config.targets.iter()));
    put("certificates", all(config.certificates.iter()));
    put("snis", all(config.snis.iter()));
    put("ca_certificates", all(config.ca_certificates.iter()));
    put(
        "keyauth_credentials",
        all(identities.credentials().map(|(_, c)| c)),
    );
    put("acls", all(identities.acls()));
    doc
}

/// `GET /config`: `{"config": "<yaml>"}`, the current config as a declarative file.
pub fn get(state: &AdminState) -> Response {
    if state.gateway.settings.database != Database::Off {
        return only_without_database();
    }
    let snapshot = state.gateway.snapshot();
    let mut doc = Map::new();
    doc.insert("_format_version".into(), json!("3.0"));
    doc.insert("_transform".into(), json!(false));
    doc.extend(export_document(&snapshot));
    match serde_norway::to_string(&Value::Object(doc)) {
        Ok(yaml) => reply::json(200, &json!({ "config": yaml })),
        Err(e) => reply::unexpected(&e),
    }
}

/// Kong's 400 for an invalid declarative config (code 14): the problems nested by entity
/// path under `fields`, and with `flatten_errors`, one entry per entity in `input`.
fn invalid(errors: &ConfigErrors, input: Option<&Value>) -> Value {
    let mut fields = Value::Object(Map::new());
    for e in &errors.0 {
        insert_at(&mut fields, &path_steps(&e.path), &e.message);
    }
    let mut body = json!({
        "code": ErrorCode::DeclarativeConfig as u8,
        "name": ErrorCode::DeclarativeConfig.name(),
        "message": format!("declarative config is invalid: {}", lua_pretty(&fields)),
        "fields": fields,
    });
    if let Some(input) = input {
        body["flattened_errors"] = Value::Array(crate::flatten::flatten(errors, input));
    }
    body
}

/// A path step: a record field or an array position.
enum Step {
    Field(String),
    Index(usize),
}

/// The highest array position an error path may name: a config holds a million consumers,
/// and no more. A larger one comes from a field's name (`x[100000000000]`, an unknown
/// field), which stays text: padding an array to it would take all the memory there is.
const MAX_ERROR_INDEX: usize = 1 << 20;

/// `services[0].routes[1].paths[0]` as steps; an empty path is the whole document.
fn path_steps(path: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            steps.push(Step::Field(rest[..open].to_owned()));
            rest = &rest[open..];
            while let Some(inner) = rest.strip_prefix('[') {
                let Some(close) = inner.find(']') else { break };
                match inner[..close].parse() {
                    Ok(i) if i <= MAX_ERROR_INDEX => steps.push(Step::Index(i)),
                    _ => steps.push(Step::Field(format!("[{}]", &inner[..close]))),
                }
                rest = &inner[close + 1..];
            }
        } else {
            steps.push(Step::Field(rest.to_owned()));
        }
    }
    steps
}

/// Puts `message` at `steps` in `tree`, growing objects and (null-padded) arrays; a second
/// message at one place makes a list, as Kong's error tables do.
fn insert_at(tree: &mut Value, steps: &[Step], message: &str) {
    let Some((first, rest)) = steps.split_first() else {
        let entity = match tree {
            Value::Object(map) => map.entry("@entity").or_insert(json!([])),
            other => other,
        };
        if let Value::Array(list) = entity {
            list.push(json!(message));
        }
        return;
    };
    let slot = match first {
        Step::Field(name) => {
            if !tree.is_object() {
                *tree = Value::Object(Map::new());
            }
            let Value::Object(map) = tree else { return };
            map.entry(name.clone()).or_insert(Value::Null)
        }
        Step::Index(i) => {
            if !tree.is_array() {
                *tree = Value::Array(Vec::new());
            }
            let Value::Array(list) = tree else { return };
            if list.len() <= *i {
                list.resize(i + 1, Value::Null);
            }
            &mut list[*i]
        }
    };
    if rest.is_empty() {
        match slot {
            Value::Null => *slot = json!(message),
            Value::String(first) => *slot = json!([first.clone(), message]),
            Value::Array(list) => list.push(json!(message)),
            Value::Object(map) => {
                let entity = map.entry("@entity").or_insert(json!([]));
                if let Value::Array(list) = entity {
                    list.push(json!(message));
                }
            }
            _ => {}
        }
        return;
    }
    insert_at(slot, rest, message);
}

/// A Lua-table rendering like Kong's `pl.pretty.write(err_t, "")` in its messages.
fn lua_pretty(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let parts: Vec<String> = map
                .iter()
                .map(|(k, v)| {
                    if k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        && !k.starts_with(|c: char| c.is_ascii_digit())
                    {
                        format!("{k}={}", lua_pretty(v))
                    } else {
                        format!("[\"{k}\"]={}", lua_pretty(v))
                    }
                })
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(lua_pretty).collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::String(s) => format!("{s:?}"),
        Value::Null => "nil".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config published later is never overwritten on disk by an earlier one that
    /// finished writing after it.
    #[test]
    fn an_older_config_never_replaces_a_newer_one_on_disk() {
        let dir = std::env::temp_dir().join(format!("gangway-persist-{}", std::process::id()));
        let path = dir.join("dbless-config.json");
        persist(&path, b"v9", 9).expect("write");
        persist(&path, b"v8", 8).expect("skipped");
        assert_eq!(std::fs::read(&path).expect("read"), b"v9");
        persist(&path, b"v10", 10).expect("write");
        assert_eq!(std::fs::read(&path).expect("read"), b"v10");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn errors_nest_by_entity_path_with_null_padded_arrays() {
        let mut tree = Value::Object(Map::new());
        insert_at(
            &mut tree,
            &path_steps("services[1].host"),
            "required field missing",
        );
        insert_at(
            &mut tree,
            &path_steps("services[1].routes[0].paths[0]"),
            "bad",
        );
        insert_at(&mut tree, &path_steps("services[1]"), "entity problem");
        insert_at(
            &mut tree,
            &path_steps("_format_version"),
            "required field missing",
        );
        assert_eq!(
            tree,
            json!({
                "services": [null, {"host": "required field missing",
                                    "routes": [{"paths": ["bad"]}],
                                    "@entity": ["entity problem"]}],
                "_format_version": "required field missing"
            })
        );
        assert_eq!(
            lua_pretty(&json!({"services": [{"host": "x"}]})),
            "{services={{host=\"x\"}}}"
        );
    }

    /// An unknown field named like a huge array position stays a name: it used to pad an
    /// array to that size (or overflow past usize::MAX) and take the process down.
    #[test]
    fn a_field_named_like_a_huge_position_stays_a_name() {
        let mut tree = Value::Object(Map::new());
        for path in [
            "services[0].x[100000000000]",
            "services[0].y[18446744073709551615]",
            "services[0].z[-1]",
        ] {
            insert_at(&mut tree, &path_steps(path), "unknown field");
        }
        assert_eq!(
            tree,
            json!({"services": [{
                "x": {"[100000000000]": "unknown field"},
                "y": {"[18446744073709551615]": "unknown field"},
                "z": {"[-1]": "unknown field"}
            }]})
        );
    }

    #[test]
    fn options_are_truthy_as_kong_reads_them() {
        for yes in [
            json!(true),
            json!(1),
            json!("TRUE"),
            json!("on"),
            json!("yes"),
        ] {
            assert!(truthy(&yes), "{yes}");
        }
        for no in [json!(false), json!(0), json!("2"), json!(null)] {
            assert!(!truthy(&no), "{no}");
        }
    }
}
