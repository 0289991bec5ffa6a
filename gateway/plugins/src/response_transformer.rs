//! response-transformer (priority 800): rewrites the response's headers (header_filter) and
//! the members of a JSON body (body_filter), kong-reference.md 4.7.
//!
//! Header operations run remove → rename → replace → add → append. As in Kong, rename,
//! replace and add test presence against the headers as they were when this plugin's
//! header_filter started (Kong reads them into a table once), so `remove` then `replace` of one
//! name sets it again, and `add` after a `rename` onto the same name overwrites it.
//!
//! The JSON part runs only for `application/json` or `application/*+json` bodies (the
//! Content-Type after every header_filter). The proxy then buffers the body, and frames the
//! result with its own `Content-Length` (Kong clears the header and lets nginx chunk).

mod json;
#[cfg(test)]
mod tests;

use serde::Deserialize;
use serde_json::{Value, json};

use gangway_config::schema::{Field, Schema};
use gangway_http::ResponseHead;
use gangway_pipeline::Plugin;
use gangway_pipeline::catalog::ConfigProblem;
use gangway_pipeline::context::ResponseCtx;
use gangway_pipeline::edits::HeaderEdits;
use json::{JsonOps, JsonType};

/// Kong's name.
pub const NAME: &str = "response-transformer";
/// Kong's PRIORITY.
pub const PRIORITY: i32 = 800;

/// Kong's `^[^:]+:.*$` (rendered as Kong writes it; a value with a line break fails here,
/// where Lua's `.` would let it through to a request-time failure).
const COLON: &str = r"^[^:]+:.*$";

/// Kong's `kong/plugins/response-transformer/schema.lua`.
pub fn schema() -> Schema {
    let array = |elements: Field| Field::array(elements).required().default(json!([]));
    let strings = || array(Field::string());
    let pairs = || array(Field::string().matches(COLON));
    let with_types = || {
        Field::record(vec![
            ("json", pairs()),
            (
                "json_types",
                array(Field::string().one_of(&["boolean", "number", "string"])).describe(
                    "List of JSON type names. Specify the types of the JSON values returned when \
                     appending\nJSON properties. Each string element can be one of: boolean, \
                     number, or string.",
                ),
            ),
            ("headers", pairs()),
        ])
    };
    Schema::new(
        NAME,
        Field::record(vec![
            (
                "remove",
                Field::record(vec![("json", strings()), ("headers", strings())]),
            ),
            (
                "rename",
                Field::record(vec![
                    ("json", pairs()),
                    (
                        "headers",
                        array(
                            Field::string()
                                .matches(COLON)
                                .custom_validator(check_header_pair),
                        ),
                    ),
                ]),
            ),
            ("replace", with_types()),
            ("add", with_types()),
            ("append", with_types()),
        ]),
    )
}

/// Kong's `validate_colon_headers`: both sides of `old:new` are valid header names.
fn check_header_pair(v: &Value) -> Result<(), String> {
    let entry = v.as_str().unwrap_or_default();
    let (name, new) = split(entry).map_or(("nil", ""), |(n, v)| (n, v.unwrap_or("")));
    match [name, new].into_iter().find(|n| !valid_header_name(n)) {
        Some(bad) => Err(format!("'{bad}' is not a valid header")),
        None => Ok(()),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Names {
    json: Vec<String>,
    headers: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Values {
    json: Vec<String>,
    json_types: Vec<JsonType>,
    headers: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Config {
    remove: Names,
    rename: Names,
    replace: Values,
    add: Values,
    append: Values,
}

/// A `name:value` header entry; `value` is `None` for `name:` (Kong skips those).
#[derive(Debug)]
struct HeaderPair {
    name: String,
    lower: String,
    value: Option<String>,
}

type HeaderOps = crate::transform_ops::Ops<HeaderPair, HeaderPair>;

#[derive(Debug)]
struct ResponseTransformer {
    headers: HeaderOps,
    json: JsonOps,
}

/// Kong's split of an entry (`^([^:]+):*(.-)$`); an empty value is `None`.
fn split(entry: &str) -> Option<(&str, Option<&str>)> {
    let (name, rest) = entry.split_once(':').unwrap_or((entry, ""));
    let value = rest.trim_start_matches(':');
    (!name.is_empty()).then_some((name, (!value.is_empty()).then_some(value)))
}

/// Kong's `validate_header_name`: letters, digits, `-` and `_`.
fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Parses `name:value` entries, with Kong's `^[^:]+:.*$` match (`colon`) and, for renames,
/// header-name checks on both sides.
fn pairs(
    list: &[String],
    field: &str,
    rename_headers: bool,
    problems: &mut Vec<ConfigProblem>,
) -> Vec<HeaderPair> {
    let mut out = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        let here = format!("{field}[{i}]");
        let Some((name, value)) = split(entry).filter(|_| entry.contains(':')) else {
            problems.push((here, format!("invalid value: {entry}")));
            continue;
        };
        if rename_headers {
            let new = value.unwrap_or("");
            if let Some(bad) = [name, new].into_iter().find(|n| !valid_header_name(n)) {
                problems.push((here, format!("'{bad}' is not a valid header")));
                continue;
            }
        }
        out.push(HeaderPair {
            name: name.to_owned(),
            lower: name.to_ascii_lowercase(),
            value: value.map(str::to_owned),
        });
    }
    out
}

/// A header name as nginx's `ngx.header` writes and finds it, which Kong's response PDK
/// goes through: `_` becomes `-` (`X_Custom` sets `X-Custom`).
fn nginx_header_name(name: &str) -> String {
    name.replace('_', "-")
}

/// `pairs` of header entries under nginx's names (a rename's new name too).
fn header_pairs(pairs: Vec<HeaderPair>, renames: bool) -> Vec<HeaderPair> {
    pairs
        .into_iter()
        .map(|p| HeaderPair {
            name: nginx_header_name(&p.name),
            lower: nginx_header_name(&p.lower),
            value: match p.value {
                Some(new) if renames => Some(nginx_header_name(&new)),
                value => value,
            },
        })
        .collect()
}

/// The names of `remove` entries (Kong splits them too: `a:b` removes `a`).
fn names(list: &[String]) -> Vec<String> {
    list.iter()
        .filter_map(|e| split(e).map(|(n, _)| n.to_owned()))
        .collect()
}

/// Builds the plugin from its validated config.
pub fn build(config: &Value) -> Result<Box<dyn Plugin>, Vec<ConfigProblem>> {
    let conf: Config =
        serde_json::from_value(config.clone()).map_err(|e| vec![(String::new(), e.to_string())])?;
    compile(conf).map(|p| Box::new(p) as Box<dyn Plugin>)
}

/// Checks the entries and converts the JSON values.
fn compile(conf: Config) -> Result<ResponseTransformer, Vec<ConfigProblem>> {
    let mut problems = Vec::new();
    let headers = HeaderOps {
        remove: names(&conf.remove.headers)
            .iter()
            .map(|n| nginx_header_name(n))
            .collect(),
        rename: header_pairs(
            pairs(&conf.rename.headers, "rename.headers", true, &mut problems),
            true,
        ),
        replace: header_pairs(
            pairs(
                &conf.replace.headers,
                "replace.headers",
                false,
                &mut problems,
            ),
            false,
        ),
        add: header_pairs(
            pairs(&conf.add.headers, "add.headers", false, &mut problems),
            false,
        ),
        append: header_pairs(
            pairs(&conf.append.headers, "append.headers", false, &mut problems),
            false,
        ),
    };
    let json_pairs = |list: &[String], field: &str, problems: &mut Vec<ConfigProblem>| {
        pairs(list, field, false, problems)
            .into_iter()
            .map(|p| (p.name, p.value))
            .collect::<Vec<_>>()
    };
    let json = JsonOps {
        remove: names(&conf.remove.json),
        rename: json_pairs(&conf.rename.json, "rename.json", &mut problems),
        replace: json::values(
            json_pairs(&conf.replace.json, "replace.json", &mut problems),
            &conf.replace.json_types,
        ),
        add: json::values(
            json_pairs(&conf.add.json, "add.json", &mut problems),
            &conf.add.json_types,
        ),
        append: json::values(
            json_pairs(&conf.append.json, "append.json", &mut problems),
            &conf.append.json_types,
        ),
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(ResponseTransformer { headers, json })
}

impl Plugin for ResponseTransformer {
    fn accesses(&self) -> bool {
        false
    }

    fn filters_headers(&self) -> bool {
        !self.headers.is_empty()
    }

    fn header_filter(&self, ctx: &mut ResponseCtx<'_>) {
        if !self.headers.is_empty() {
            let max = ctx.state.limits.resp_headers;
            self.transform_headers(ctx.upstream, &mut ctx.state.response_headers, max);
        }
    }

    fn filters_body(&self) -> bool {
        !self.json.is_empty()
    }

    fn wants_body(&self, ctx: &ResponseCtx<'_>) -> bool {
        !self.json.is_empty() && ctx.header("content-type").is_some_and(json::is_json_body)
    }

    fn body_filter(&self, ctx: &mut ResponseCtx<'_>, body: &mut Vec<u8>) {
        // Kong checks the Content-Type again in body_filter.
        if !self.wants_body(ctx) {
            return;
        }
        match self.json.transform(body) {
            Some(new) => *body = new,
            None => tracing::warn!(
                "response-transformer: body transform failed: failed parsing json body"
            ),
        }
    }
}

impl ResponseTransformer {
    /// The header operations over the upstream head (if any) and the edits so far.
    fn transform_headers(
        &self,
        upstream: Option<(&ResponseHead, &[u8])>,
        edits: &mut HeaderEdits,
        max_headers: u16,
    ) {
        let ops = &self.headers;
        let values = |edits: &HeaderEdits, lower: &str| -> Vec<Vec<u8>> {
            let originals = upstream.into_iter().flat_map(|(head, buf)| {
                head.headers()
                    .iter()
                    .map(move |f| (f.name.get(buf), f.value.get(buf)))
            });
            edits
                .table(originals, max_headers)
                .filter(|(n, _)| n.eq_ignore_ascii_case(lower.as_bytes()))
                .map(|(_, v)| v.to_vec())
                .collect()
        };
        // Presence as Kong's header table (`kong.response.get_headers()`, the first
        // `lua_max_resp_headers`) saw it, before any change below.
        let renamed: Vec<Vec<Vec<u8>>> =
            ops.rename.iter().map(|p| values(edits, &p.lower)).collect();
        let replace: Vec<bool> = ops
            .replace
            .iter()
            .map(|p| !values(edits, &p.lower).is_empty())
            .collect();
        let add: Vec<bool> = ops
            .add
            .iter()
            .map(|p| !values(edits, &p.lower).is_empty())
            .collect();
        for name in &ops.remove {
            edits.remove(name);
        }
        for (p, values) in ops.rename.iter().zip(&renamed) {
            let Some(new) = &p.value else { continue };
            if values.is_empty() {
                continue;
            }
            // Kong sets the new name, then clears the old one: renaming a header onto its
            // own name removes it.
            edits.remove(new);
            for v in values {
                edits.add(new, v);
            }
            edits.remove(&p.name);
        }
        for (p, present) in ops.replace.iter().zip(replace) {
            if let (true, Some(v)) = (present, &p.value) {
                edits.set(&p.name, v.as_bytes());
            }
        }
        for (p, present) in ops.add.iter().zip(add) {
            if let (false, Some(v)) = (present, &p.value) {
                edits.set(&p.name, v.as_bytes());
            }
        }
        for p in &ops.append {
            if let Some(v) = &p.value {
                edits.add(&p.name, v.as_bytes());
            }
        }
    }
}
