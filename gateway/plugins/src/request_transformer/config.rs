//! The config: Kong's fields, the checks its schema runs on each entry, and compilation of
//! every value into a template.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{NAME, Ops, Pair, RequestTransformer, Val};
use crate::template::Template;
use gangway_config::schema::{ALL_PROTOCOLS, Field, HTTP_PROTOCOLS, Schema};
use gangway_pipeline::catalog::ConfigProblem;

/// Kong's `^[^:]+:.*$` (rendered as Kong writes it; a value with a line break fails here,
/// where Lua's `.` would let it through to a request-time failure).
const COLON: &str = r"^[^:]+:.*$";

/// Kong's `kong/plugins/request-transformer/schema.lua`.
pub(super) fn schema() -> Schema {
    let array = |elements: Field| Field::array(elements).required().default(json!([]));
    let strings = || array(Field::string());
    let values = || array(Field::string().custom_validator(check_for_value));
    let header_names = || array(Field::string().custom_validator(check_header_name));
    let header_values = || {
        array(
            Field::string()
                .matches(COLON)
                .custom_validator(check_header_name),
        )
    };
    let header_pairs = || {
        array(
            Field::string()
                .matches(COLON)
                .custom_validator(check_header_pair),
        )
    };
    let pairs = |headers: Field| {
        vec![
            ("body", values()),
            ("headers", headers),
            ("querystring", values()),
        ]
    };
    let mut replace = pairs(header_values());
    replace.push(("uri", Field::string()));
    Schema::new(
        NAME,
        Field::record(vec![
            (
                "http_method",
                Field::string().matches("^[A-Z]+$").describe(
                    "A string representing an HTTP method, such as GET, POST, PUT, or DELETE. \
                     The string must contain only uppercase letters.",
                ),
            ),
            (
                "remove",
                Field::record(vec![
                    ("body", strings()),
                    ("headers", header_names()),
                    ("querystring", strings()),
                ]),
            ),
            ("rename", Field::record(pairs(header_pairs()))),
            ("replace", Field::record(replace)),
            ("add", Field::record(pairs(header_values()))),
            ("append", Field::record(pairs(header_values()))),
        ]),
    )
    .protocols(HTTP_PROTOCOLS, ALL_PROTOCOLS)
}

/// Kong's `check_for_value` on a `name:value` entry: a non-empty value that compiles as a
/// template.
fn check_for_value(v: &Value) -> Result<(), String> {
    let entry = v.as_str().unwrap_or_default();
    match split(entry) {
        Some((_, value)) if !value.is_empty() => Template::compile(value)
            .map(drop)
            .map_err(|msg| unsupported(value, &msg)),
        Some((name, _)) => Err(no_value(name)),
        None => Err(no_value(entry)),
    }
}

/// Kong's `validate_headers` without the value: the name is a valid header name.
fn check_header_name(v: &Value) -> Result<(), String> {
    let entry = v.as_str().unwrap_or_default();
    match split(entry) {
        Some((name, _)) if valid_header_name(name) => Ok(()),
        Some((name, _)) => Err(not_a_header(name)),
        None => Err(not_a_header("nil")),
    }
}

/// Kong's `validate_colon_headers`: both sides of `old:new` are valid header names.
fn check_header_pair(v: &Value) -> Result<(), String> {
    check_header_name(v)?;
    let (_, new) = split(v.as_str().unwrap_or_default()).unwrap_or_default();
    if valid_header_name(new) {
        Ok(())
    } else {
        Err(not_a_header(new))
    }
}

fn not_a_header(name: &str) -> String {
    format!("'{name}' is not a valid header")
}

fn no_value(name: &str) -> String {
    format!("key '{name}' has no value")
}

/// Kong's wrapping of a template that does not compile.
fn unsupported(value: &str, msg: &str) -> String {
    format!("value '{value}' is not in supported format, error:{msg}")
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Lists {
    body: Vec<String>,
    headers: Vec<String>,
    querystring: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ReplaceLists {
    body: Vec<String>,
    headers: Vec<String>,
    querystring: Vec<String>,
    uri: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Config {
    http_method: Option<String>,
    remove: Lists,
    rename: Lists,
    replace: ReplaceLists,
    add: Lists,
    append: Lists,
}

/// The methods `kong.service.request.set_method` accepts.
const METHODS: &[&str] = &[
    "GET",
    "HEAD",
    "PUT",
    "POST",
    "DELETE",
    "OPTIONS",
    "MKCOL",
    "COPY",
    "MOVE",
    "PROPFIND",
    "PROPPATCH",
    "LOCK",
    "UNLOCK",
    "PATCH",
    "TRACE",
];

/// Kong's split of an entry (`^([^:]+):*(.-)$`): the name runs to the first `:`, the value
/// starts after the run of `:` that follows. `None` when the name is empty.
pub(super) fn split(entry: &str) -> Option<(&str, &str)> {
    let (name, rest) = entry.split_once(':').unwrap_or((entry, ""));
    (!name.is_empty()).then(|| (name, rest.trim_start_matches(':')))
}

/// Kong's `validate_header_name`: letters, digits, `-` and `_`.
pub(super) fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Which of Kong's element checks a list gets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Check {
    /// `remove.headers`: the name must be a valid header name.
    HeaderName,
    /// `remove.body`, `remove.querystring`: nothing.
    Nothing,
    /// `rename.headers`: `name:value`, both valid header names.
    HeaderPair,
    /// `replace|add|append.headers`: `name:value` with a valid header name (the value may
    /// be empty).
    HeaderValue,
    /// body and querystring pairs: Kong's `check_for_value` (a non-empty value that compiles
    /// as a template).
    Value,
}

struct Compiler {
    templates: Vec<Template>,
    problems: Vec<ConfigProblem>,
}

impl Compiler {
    fn value(&mut self, src: &str, field: &str) -> Option<Val> {
        match Template::compile(src) {
            Ok(t) => Some(match t.is_literal() {
                Some(text) => Val::Text(text.to_owned()),
                None if src.is_empty() => Val::Absent,
                None => {
                    self.templates.push(t);
                    Val::Template(self.templates.len() - 1)
                }
            }),
            Err(msg) => {
                self.problems
                    .push((field.to_owned(), unsupported(src, &msg)));
                None
            }
        }
    }

    fn names(&mut self, list: &[String], field: &str, check: Check) -> Vec<String> {
        let mut out = Vec::with_capacity(list.len());
        for (i, entry) in list.iter().enumerate() {
            let here = format!("{field}[{i}]");
            match split(entry) {
                Some((name, _)) if check == Check::HeaderName && !valid_header_name(name) => {
                    self.problems.push((here, not_a_header(name)));
                }
                Some((name, _)) => out.push(name.to_owned()),
                None if check == Check::HeaderName => {
                    self.problems
                        .push((here, "'nil' is not a valid header".into()));
                }
                None => self
                    .problems
                    .push((here, format!("'{entry}' has no name before ':'"))),
            }
        }
        out
    }

    fn pairs(&mut self, list: &[String], field: &str, check: Check) -> Vec<Pair> {
        let mut out = Vec::with_capacity(list.len());
        for (i, entry) in list.iter().enumerate() {
            let here = format!("{field}[{i}]");
            let header = matches!(check, Check::HeaderPair | Check::HeaderValue);
            let Some((name, value)) = split(entry).filter(|_| !header || entry.contains(':'))
            else {
                let msg = if header {
                    format!("invalid value: {entry}")
                } else {
                    no_value(entry)
                };
                self.problems.push((here, msg));
                continue;
            };
            if header && !valid_header_name(name) {
                self.problems.push((here, not_a_header(name)));
                continue;
            }
            if check == Check::HeaderPair && !valid_header_name(value) {
                self.problems.push((here, not_a_header(value)));
                continue;
            }
            if check == Check::Value && value.is_empty() {
                self.problems.push((here, no_value(name)));
                continue;
            }
            if let Some(value) = self.value(value, &here) {
                out.push(Pair {
                    name: name.to_owned(),
                    lower: name.to_ascii_lowercase(),
                    value,
                });
            }
        }
        out
    }
}

/// Validates and compiles the config; problems carry their path under `config`.
pub(super) fn compile(config: &Value) -> Result<RequestTransformer, Vec<ConfigProblem>> {
    let conf: Config =
        serde_json::from_value(config.clone()).map_err(|e| vec![(String::new(), e.to_string())])?;
    let mut c = Compiler {
        templates: Vec::new(),
        problems: Vec::new(),
    };
    let method = match conf.http_method {
        Some(m) if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => {
            if METHODS.contains(&m.as_str()) {
                Some(m)
            } else {
                // Kong accepts any upper-case word here and fails every request at
                // `set_method`; gangway refuses the config instead.
                c.problems
                    .push(("http_method".into(), format!("invalid method: {m}")));
                None
            }
        }
        Some(m) => {
            c.problems
                .push(("http_method".into(), format!("invalid value: {m}")));
            None
        }
        None => None,
    };
    let uri = match conf.replace.uri.as_deref() {
        None | Some("") => None,
        Some(src) => c.value(src, "replace.uri"),
    };
    let headers = Ops {
        remove: c.names(&conf.remove.headers, "remove.headers", Check::HeaderName),
        rename: c.pairs(&conf.rename.headers, "rename.headers", Check::HeaderPair),
        replace: c.pairs(&conf.replace.headers, "replace.headers", Check::HeaderValue),
        add: c.pairs(&conf.add.headers, "add.headers", Check::HeaderValue),
        append: c.pairs(&conf.append.headers, "append.headers", Check::HeaderValue),
    };
    let mut group = |field: &str, lists: [&[String]; 5]| Ops {
        remove: c.names(lists[0], &format!("remove.{field}"), Check::Nothing),
        rename: c.pairs(lists[1], &format!("rename.{field}"), Check::Value),
        replace: c.pairs(lists[2], &format!("replace.{field}"), Check::Value),
        add: c.pairs(lists[3], &format!("add.{field}"), Check::Value),
        append: c.pairs(lists[4], &format!("append.{field}"), Check::Value),
    };
    let body = group(
        "body",
        [
            &conf.remove.body,
            &conf.rename.body,
            &conf.replace.body,
            &conf.add.body,
            &conf.append.body,
        ],
    );
    let query = group(
        "querystring",
        [
            &conf.remove.querystring,
            &conf.rename.querystring,
            &conf.replace.querystring,
            &conf.add.querystring,
            &conf.append.querystring,
        ],
    );
    if !c.problems.is_empty() {
        return Err(c.problems);
    }
    let method_moves_form = method
        .as_deref()
        .is_some_and(|m| matches!(m, "GET" | "HEAD" | "TRACE"));
    Ok(RequestTransformer {
        method,
        method_moves_form,
        uri,
        headers,
        query,
        body,
        templates: c.templates,
    })
}
