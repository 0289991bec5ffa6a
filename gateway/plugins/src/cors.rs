//! cors (priority 2000): answers CORS preflight requests and adds the CORS headers to every
//! other response (kong-reference.md 4.7).
//!
//! Origin rules follow Kong's handler: no origins (or only `*`) allow every origin; a single
//! plain origin is sent as configured; otherwise the request's origin is normalized
//! (`scheme://host[:port]`, default ports dropped) and compared with each entry, exactly for
//! plain entries or with an anchored regex for the others (on the host alone when the entry
//! has no `:`). The regexes are compiled when the config loads.

use serde::Deserialize;
use serde_json::{Value, json};

use gangway_config::schema::{Field, Schema};
use gangway_pipeline::Plugin;
use gangway_pipeline::catalog::ConfigProblem;
use gangway_pipeline::context::{AccessCtx, ResponseCtx};
use gangway_pipeline::edits::HeaderEdits;
use gangway_pipeline::flow::{Flow, Response, ResponseBody};

#[cfg(test)]
mod tests;

/// Kong's name.
pub const NAME: &str = "cors";
/// Kong's PRIORITY.
pub const PRIORITY: i32 = 2000;

/// The methods Kong allows in `config.methods`, and its default for it.
pub const METHODS: [&str; 9] = [
    "GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE", "CONNECT",
];

/// Kong's config schema (`kong/plugins/cors/schema.lua`).
pub fn schema() -> Schema {
    let flag = |default: bool| Field::boolean().required().default(json!(default));
    let strings = || Field::array(Field::string());
    Schema::new(
        NAME,
        Field::record(vec![
            (
                "origins",
                Field::array(Field::string().custom_validator(origin_validator)).describe(
                    "Allowed origins: `*`, plain origins or regexes. None allows every origin.",
                ),
            ),
            (
                "headers",
                strings().describe("Value of `Access-Control-Allow-Headers`."),
            ),
            (
                "exposed_headers",
                strings().describe("Value of `Access-Control-Expose-Headers`."),
            ),
            (
                "methods",
                Field::array(Field::string().one_of(&METHODS))
                    .default(json!(METHODS))
                    .describe("Value of `Access-Control-Allow-Methods`."),
            ),
            (
                "max_age",
                Field::number().describe("Seconds a preflight answer may be cached."),
            ),
            ("credentials", flag(false)),
            ("private_network", flag(false)),
            ("preflight_continue", flag(false)),
            ("allow_origin_absent", flag(true)),
        ]),
    )
    .no_consumer()
}

fn origin_validator(v: &Value) -> Result<(), String> {
    match v.as_str() {
        Some(s) => check_origin(s),
        None => Ok(()),
    }
}

const ACAO: &str = "Access-Control-Allow-Origin";
const ACAC: &str = "Access-Control-Allow-Credentials";

#[derive(Debug, Deserialize)]
struct Config {
    origins: Option<Vec<String>>,
    headers: Option<Vec<String>>,
    exposed_headers: Option<Vec<String>>,
    methods: Option<Vec<String>>,
    max_age: Option<serde_json::Number>,
    #[serde(default)]
    credentials: bool,
    #[serde(default)]
    private_network: bool,
    #[serde(default)]
    preflight_continue: bool,
    #[serde(default = "yes")]
    allow_origin_absent: bool,
}

fn yes() -> bool {
    true
}

/// An origin as Kong compares it: `domain` is `scheme://host[:port]` without a default
/// port, or the raw value when it has no `//authority`.
#[derive(Debug, PartialEq, Eq)]
struct Normalized {
    domain: String,
    host: String,
}

/// One entry of a multi-origin list.
#[derive(Debug)]
enum Entry {
    /// A plain origin, compared with the request's normalized origin.
    Exact(String),
    /// A regex anchored at both ends, tested on the host alone or on the whole origin.
    Regex { re: regex::Regex, by_host: bool },
}

#[derive(Debug)]
enum Origins {
    /// No origins, or only `*`: `Access-Control-Allow-Origin: *`.
    Any,
    /// One plain origin, sent as is whatever the request says.
    Fixed(String),
    /// Match the request's origin. `wildcard`: the list holds `*`, which Kong honours only
    /// when the request has an origin (and then before looking at the other entries).
    List { wildcard: bool, entries: Vec<Entry> },
}

struct Cors {
    origins: Origins,
    /// `headers` joined with `,` (absent when empty).
    allow_headers: Option<String>,
    /// `exposed_headers` joined with `,` (absent when empty).
    expose_headers: Option<String>,
    /// `methods` joined with `,` (absent when empty).
    allow_methods: Option<String>,
    max_age: Option<String>,
    credentials: bool,
    private_network: bool,
    preflight_continue: bool,
    allow_origin_absent: bool,
}

/// Kong's test for an entry that "does not look like a regex".
fn is_plain(entry: &str) -> bool {
    !entry.is_empty()
        && entry
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'/' | b'-'))
}

/// Compiles an origin regex as Kong runs it: a trailing `$` is added and a leading `^`
/// dropped, then the whole pattern is anchored at the start (PCRE's `a` flag).
fn compile_origin_regex(entry: &str) -> Result<regex::Regex, regex::Error> {
    let body = entry.strip_prefix('^').unwrap_or(entry);
    let dollar = if body.ends_with('$') { "" } else { "$" };
    regex::Regex::new(&format!("^(?:{body}{dollar})"))
}

/// True when a quantifier follows a quantifier (`a**`, `a+{2}`, `a*??`): PCRE refuses that
/// ("nothing to repeat") where Rust's regex reads it as a nested repetition. A lazy `?` or
/// possessive `+` right after a quantifier is fine.
fn repeats_a_quantifier(pattern: &str) -> bool {
    #[derive(PartialEq)]
    enum Last {
        Atom,
        Quantifier,
        Modifier,
        GroupOpen,
    }
    let bytes = pattern.as_bytes();
    let mut last = Last::GroupOpen;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        i += 1;
        last = match b {
            b'\\' => {
                i += 1;
                Last::Atom
            }
            b'[' => {
                // Skip the class: a leading `]` (or `^]`) is literal, escapes hide `]`.
                if bytes.get(i) == Some(&b'^') {
                    i += 1;
                }
                if bytes.get(i) == Some(&b']') {
                    i += 1;
                }
                while i < bytes.len() && bytes[i] != b']' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                Last::Atom
            }
            b'(' => Last::GroupOpen,
            b'*' | b'{' if matches!(last, Last::Quantifier | Last::Modifier) => {
                let counted = b == b'{' && {
                    let rest = &bytes[i..];
                    let end = rest.iter().position(|&c| c == b'}');
                    end.is_some_and(|e| {
                        let inner = &rest[..e];
                        !inner.is_empty()
                            && inner[0].is_ascii_digit()
                            && inner.iter().all(|c| c.is_ascii_digit() || *c == b',')
                    })
                };
                if b == b'*' || counted {
                    return true;
                }
                Last::Atom
            }
            b'+' | b'?' if last == Last::Quantifier => Last::Modifier,
            b'+' | b'?' if last == Last::Modifier => return true,
            b'?' if last == Last::GroupOpen => Last::Atom,
            b'*' | b'+' | b'?' => Last::Quantifier,
            b'{' => match bytes[i..].iter().position(|&c| c == b'}') {
                Some(e)
                    if e > 0
                        && bytes[i].is_ascii_digit()
                        && bytes[i..i + e]
                            .iter()
                            .all(|c| c.is_ascii_digit() || *c == b',') =>
                {
                    i += e + 1;
                    Last::Quantifier
                }
                _ => Last::Atom,
            },
            _ => Last::Atom,
        };
    }
    false
}

/// Kong's check on `origins` entries: `*` or a regex that compiles (PCRE's rules).
pub fn check_origin(entry: &str) -> Result<(), String> {
    if entry == "*" || (regex::Regex::new(entry).is_ok() && !repeats_a_quantifier(entry)) {
        Ok(())
    } else {
        Err(format!("'{entry}' is not a valid regex"))
    }
}

/// Formats `max_age` the way Lua's `tostring` prints a number.
fn lua_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    let f = n.as_f64().unwrap_or_default();
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        f.to_string()
    }
}

fn joined(list: Option<&Vec<String>>) -> Option<String> {
    list.filter(|l| !l.is_empty()).map(|l| l.join(","))
}

/// Builds the plugin from its validated config.
pub fn build(config: &Value) -> Result<Box<dyn Plugin>, Vec<ConfigProblem>> {
    Ok(Box::new(compile(config)?))
}

fn compile(config: &Value) -> Result<Cors, Vec<ConfigProblem>> {
    let conf: Config =
        serde_json::from_value(config.clone()).map_err(|e| vec![(String::new(), e.to_string())])?;
    let mut problems = Vec::new();
    for (i, m) in conf.methods.iter().flatten().enumerate() {
        if !METHODS.contains(&m.as_str()) {
            problems.push((
                format!("methods[{i}]"),
                format!("expected one of: {}", METHODS.join(", ")),
            ));
        }
    }
    let origins = conf.origins.unwrap_or_default();
    let compiled = match origins.as_slice() {
        [] => Origins::Any,
        [only] if only == "*" => Origins::Any,
        [only] if is_plain(only) => Origins::Fixed(only.clone()),
        list => {
            let mut entries = Vec::with_capacity(list.len());
            let mut wildcard = false;
            for (i, entry) in list.iter().enumerate() {
                if entry == "*" {
                    wildcard = true;
                    continue;
                }
                if let Err(message) = check_origin(entry) {
                    problems.push((format!("origins[{i}]"), message));
                    continue;
                }
                let by_host = !entry.contains(':');
                if is_plain(entry) || entry.is_empty() {
                    entries.push(Entry::Exact(normalize_origin(entry).domain));
                } else {
                    match compile_origin_regex(entry) {
                        Ok(re) => entries.push(Entry::Regex { re, by_host }),
                        Err(_) => problems.push((
                            format!("origins[{i}]"),
                            format!("'{entry}' is not a valid regex"),
                        )),
                    }
                }
            }
            Origins::List { wildcard, entries }
        }
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    let allow_methods = match &conf.methods {
        None => Some(METHODS.join(",")),
        Some(list) => joined(Some(list)),
    };
    Ok(Cors {
        origins: compiled,
        allow_headers: joined(conf.headers.as_ref()),
        expose_headers: joined(conf.exposed_headers.as_ref()),
        allow_methods,
        max_age: conf.max_age.as_ref().map(lua_number),
        credentials: conf.credentials,
        private_network: conf.private_network,
        preflight_continue: conf.preflight_continue,
        allow_origin_absent: conf.allow_origin_absent,
    })
}

/// Normalizes an origin as Kong does with LuaSocket's URL parser: scheme, then `//authority`
/// (userinfo dropped, `:port` split off from the end, IPv6 brackets removed). Without an
/// authority the raw value is both the domain and the host.
fn normalize_origin(origin: &str) -> Normalized {
    let raw = || Normalized {
        domain: origin.to_owned(),
        host: origin.to_owned(),
    };
    let mut rest = origin;
    let mut scheme = None;
    let bytes = rest.as_bytes();
    if bytes.first().is_some_and(u8::is_ascii_alphanumeric) {
        let run = bytes
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')))
            .unwrap_or(bytes.len());
        if bytes.get(run) == Some(&b':') {
            scheme = Some(&rest[..run]);
            rest = &rest[run + 1..];
        }
    }
    let Some(after) = rest.strip_prefix("//") else {
        return raw();
    };
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let mut authority = &after[..end];
    if let Some(at) = authority.find('@') {
        authority = &authority[at + 1..];
    }
    let mut port = None;
    if let Some(colon) = authority.rfind(':') {
        if !authority[colon + 1..].contains(']') {
            port = Some(&authority[colon + 1..]);
            authority = &authority[..colon];
        }
    }
    if authority.is_empty() {
        return raw();
    }
    let host = authority
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .filter(|h| !h.is_empty())
        .unwrap_or(authority);
    if matches!(
        (scheme, port),
        (Some("http"), Some("80")) | (Some("https"), Some("443"))
    ) {
        port = None;
    }
    let mut domain = String::with_capacity(origin.len());
    if let Some(s) = scheme {
        domain.push_str(s);
        domain.push_str("://");
    }
    domain.push_str(host);
    if let Some(p) = port {
        domain.push(':');
        domain.push_str(p);
    }
    Normalized {
        domain,
        host: host.to_owned(),
    }
}

/// Where the headers go: the preflight answer (Kong's `set_header` in access) or the
/// response being filtered (`add_header` for `Vary`, so the upstream's values stay).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Preflight,
    HeaderFilter,
}

fn vary(edits: &mut HeaderEdits, phase: Phase) {
    match phase {
        Phase::Preflight => edits.set("Vary", b"Origin"),
        Phase::HeaderFilter => edits.add("Vary", b"Origin"),
    }
}

impl Cors {
    /// Sets `Access-Control-Allow-Origin` (Kong's `configure_origin`). Returns true when
    /// every origin is allowed (`*`).
    fn configure_origin(&self, edits: &mut HeaderEdits, phase: Phase, origin: &[u8]) -> bool {
        let entries = match &self.origins {
            Origins::Any => {
                edits.set(ACAO, b"*");
                return true;
            }
            Origins::Fixed(value) => {
                vary(edits, phase);
                edits.set(ACAO, value.as_bytes());
                return false;
            }
            Origins::List { wildcard, entries } => {
                vary(edits, phase);
                if origin.is_empty() {
                    edits.remove(ACAO);
                    return false;
                }
                if *wildcard {
                    edits.set(ACAO, b"*");
                    return true;
                }
                entries
            }
        };
        let origin = String::from_utf8_lossy(origin);
        let normalized = normalize_origin(&origin);
        let found = entries.iter().any(|entry| match entry {
            Entry::Exact(domain) => *domain == normalized.domain,
            Entry::Regex { re, by_host } => {
                let subject = if *by_host {
                    &normalized.host
                } else {
                    &normalized.domain
                };
                re.is_match(subject)
            }
        });
        if found {
            edits.set(ACAO, normalized.domain.as_bytes());
        } else {
            edits.remove(ACAO);
        }
        false
    }

    /// Kong's `configure_credentials`: `Access-Control-Allow-Credentials`, and the echoed
    /// origin instead of `*`, which browsers refuse with credentials.
    fn configure_credentials(
        &self,
        edits: &mut HeaderEdits,
        phase: Phase,
        allow_all: bool,
        origin: &[u8],
    ) {
        if !self.credentials {
            return;
        }
        if !allow_all {
            edits.set(ACAC, b"true");
            return;
        }
        if !origin.is_empty() {
            vary(edits, phase);
            edits.set(ACAO, origin);
            edits.set(ACAC, b"true");
        }
    }

    /// The preflight answer's headers. `acrh` is `Access-Control-Request-Headers`, `acrpn`
    /// is `Access-Control-Request-Private-Network`.
    fn preflight(
        &self,
        edits: &mut HeaderEdits,
        origin: &[u8],
        acrh: Option<&[u8]>,
        acrpn: Option<&[u8]>,
    ) {
        let allow_all = self.configure_origin(edits, Phase::Preflight, origin);
        self.configure_credentials(edits, Phase::Preflight, allow_all, origin);
        match (&self.allow_headers, acrh) {
            (Some(h), _) => edits.set("Access-Control-Allow-Headers", h.as_bytes()),
            (None, Some(h)) if !h.is_empty() => edits.set("Access-Control-Allow-Headers", h),
            _ => edits.remove("Access-Control-Allow-Headers"),
        }
        if let Some(m) = &self.allow_methods {
            edits.set("Access-Control-Allow-Methods", m.as_bytes());
        }
        if let Some(age) = &self.max_age {
            edits.set("Access-Control-Max-Age", age.as_bytes());
        }
        if self.private_network && acrpn == Some(b"true") {
            edits.set("Access-Control-Allow-Private-Network", b"true");
        }
    }

    /// The headers of an actual (non-preflight) response; `origin` is empty when absent.
    fn actual(&self, edits: &mut HeaderEdits, origin: &[u8]) {
        if origin.is_empty() && !self.allow_origin_absent {
            return;
        }
        let allow_all = self.configure_origin(edits, Phase::HeaderFilter, origin);
        self.configure_credentials(edits, Phase::HeaderFilter, allow_all, origin);
        if let Some(h) = &self.expose_headers {
            edits.set("Access-Control-Expose-Headers", h.as_bytes());
        }
    }
}

/// First byte of what access saves: the response is the preflight's (answered here or by
/// the upstream), so header_filter adds nothing.
const SKIP: u8 = 1;
const FILTER: u8 = 0;

impl Plugin for Cors {
    fn access(&self, ctx: &mut AccessCtx<'_>) -> Flow {
        let origin = ctx.header("origin").unwrap_or_default().to_vec();
        let preflight = ctx.method() == b"OPTIONS"
            && !origin.is_empty()
            && ctx.header("access-control-request-method").is_some();
        if !preflight {
            // The request is gone by header_filter: keep the origin for it.
            let mut saved = Vec::with_capacity(origin.len() + 1);
            saved.push(FILTER);
            saved.extend_from_slice(&origin);
            ctx.save(&saved);
            return Flow::Continue;
        }
        ctx.save(&[SKIP]);
        if self.preflight_continue {
            return Flow::Continue;
        }
        let acrh = ctx
            .header("access-control-request-headers")
            .map(<[u8]>::to_vec);
        let acrpn = ctx
            .header("access-control-request-private-network")
            .map(<[u8]>::to_vec);
        self.preflight(
            &mut ctx.state.response_headers,
            &origin,
            acrh.as_deref(),
            acrpn.as_deref(),
        );
        Flow::Respond(Response {
            status: 200,
            body: ResponseBody::Empty,
            headers: Vec::new(),
            proxied: false,
            via: false,
            waited: None,
        })
    }

    fn filters_headers(&self) -> bool {
        true
    }

    fn header_filter(&self, ctx: &mut ResponseCtx<'_>) {
        let saved = ctx.saved();
        if saved.first() != Some(&FILTER) {
            return;
        }
        let origin = saved[1..].to_vec();
        self.actual(&mut ctx.state.response_headers, &origin);
    }
}
