//! Request arguments as Kong's Admin API reads them: body decoding, the nesting notation of
//! form keys, and the schema-driven coercion of form strings.
//!
//! Kong's sources for every rule here: `kong/api/api_helpers.lua` (which Content-Types are
//! accepted, the JSON error), `kong/api/arguments.lua` (reading bodies, merging arguments,
//! `infer_value`), `kong/api/arguments_decoder.lua` (the key notation), lapis 1.16's
//! `lapis/nginx.lua` (multipart parts, which the Admin API hands to `arguments.lua`) and
//! lua-nginx-module's `ngx_http_lua_parse_args` (urlencoded pairs and the argument limit).
//!
//! The flow for an entity endpoint is [`decode_body`] (raw structure, form values still
//! strings) followed by [`coerce`] with the entity's [`Expect`]; JSON bodies skip [`coerce`],
//! as Kong never infers types for them.
//!
//! Deliberate departures from Kong, each where Kong is accidental or unsafe:
//! - a name starting or ending with `.` stays one literal key (Kong files such a value under
//!   the key `name`, a typo in `decode_arg`);
//! - a JSON scalar or `null` body is [`BodyError::BadJson`] (Kong fails with a 500);
//! - when one name is written in several notations (`a[]` and `a[1]`), Kong merges them in
//!   hash order; here they merge in the order the names first appear;
//! - a fractional bracket index (`a[1.5]`) is a map key here; Kong truncates it;
//! - a key nesting deeper than [`MAX_NESTING`] levels stays one literal key, so that no
//!   request can build a value too deep to walk.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::body::Bytes;
use axum::http::Method;
use gangway_config::schema::{Field, FieldType};
use serde_json::{Map, Value};

/// Kong's `max_post_args` and `max_uri_args`: a form body or query string with this many `&`
/// separators is refused with `Too many arguments`.
pub const MAX_ARGS: usize = 1000;

/// The deepest path one form key may build (dots and brackets counted); deeper keys stay one
/// literal key. The same depth serde_json allows a JSON body.
pub const MAX_NESTING: usize = 128;

/// Kong's message when a form or query has [`MAX_ARGS`] or more arguments.
const TOO_MANY_ARGUMENTS: &str = "Too many arguments";

/// Why a body could not be decoded; each maps to Kong's status and body.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BodyError {
    /// 415, empty body.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// 400; Kong sends the bare text, not a JSON object (see [`BodyError::body`]).
    #[error("Multiple Content-Type headers not allowed")]
    MultipleContentTypes,
    /// 400 {"message":"Cannot parse JSON body"}
    #[error("Cannot parse JSON body")]
    BadJson,
    /// 400 {"message": <text>}. Kong never refuses a malformed urlencoded or multipart body
    /// (it reads as empty); its only form-level refusal is `Too many arguments`.
    #[error("{0}")]
    BadForm(String),
}

impl BodyError {
    /// The HTTP status Kong answers with.
    pub fn status(&self) -> u16 {
        match self {
            Self::UnsupportedMediaType => 415,
            Self::MultipleContentTypes | Self::BadJson | Self::BadForm(_) => 400,
        }
    }

    /// The message text; `None` for the 415, which has an empty body.
    pub fn message(&self) -> Option<String> {
        match self {
            Self::UnsupportedMediaType => None,
            other => Some(other.to_string()),
        }
    }

    /// The exact response body Kong sends: empty for 415, the bare text for
    /// [`BodyError::MultipleContentTypes`] (`kong.response.exit(400, "<text>")` in
    /// `api_helpers.lua` does not wrap it), `{"message":...}` otherwise. Kong's Admin API
    /// serves all of them as `application/json` (its `default_type`).
    pub fn body(&self) -> String {
        match self {
            Self::UnsupportedMediaType => String::new(),
            Self::MultipleContentTypes => self.to_string(),
            other => serde_json::json!({ "message": other.to_string() }).to_string(),
        }
    }
}

/// The body formats Kong's Admin API accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Form,
    Multipart,
}

impl Format {
    /// `api_helpers.lua` `before_filter` compares the start of the header value, case and all:
    /// `application/json; charset=utf-8` is JSON, `Application/JSON` is refused.
    fn of(content_type: &str) -> Option<Self> {
        if content_type.starts_with("application/json") {
            Some(Self::Json)
        } else if content_type.starts_with("application/x-www-form-urlencoded") {
            Some(Self::Form)
        } else if content_type.starts_with("multipart/form-data") {
            Some(Self::Multipart)
        } else {
            None
        }
    }
}

/// Decodes a POST/PUT/PATCH body. `content_type` is the single Content-Type header value if
/// any (the caller answers [`BodyError::MultipleContentTypes`] when there are several).
///
/// Returns the raw structure, form values still strings (a bare form key is `true`):
/// - no Content-Type: an empty body is `{}`, any other body is 415;
/// - a Content-Type other than the three below is 415, even with an empty body;
/// - `application/json`: the document as sent, neither nested nor coerced; an empty or
///   unparsable body, or a scalar, is [`BodyError::BadJson`]; an array passes through (Kong
///   hands it to the entity validator);
/// - `application/x-www-form-urlencoded`: [`nest`]ed pairs; [`MAX_ARGS`] or more `&` is
///   [`BodyError::BadForm`];
/// - `multipart/form-data`: every named part's content as a string (files included, file
///   names dropped), the last part winning for a repeated name, then [`nest`]ed; a body that
///   does not parse, or a missing boundary, reads as `{}` as in Kong.
pub async fn decode_body(content_type: Option<&str>, body: Bytes) -> Result<Value, BodyError> {
    let Some(content_type) = content_type else {
        return if body.is_empty() {
            Ok(Value::Object(Map::new()))
        } else {
            Err(BodyError::UnsupportedMediaType)
        };
    };
    match Format::of(content_type) {
        Some(Format::Json) => decode_json(&body),
        Some(Format::Form) => decode_query(&body, Brackets::Map),
        Some(Format::Multipart) => Ok(decode_multipart(content_type, body).await),
        None => Err(BodyError::UnsupportedMediaType),
    }
}

fn decode_json(body: &[u8]) -> Result<Value, BodyError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(value @ (Value::Object(_) | Value::Array(_))) => Ok(value),
        // Kong's lapis `add_params` iterates the document, which raises on a scalar (500).
        Ok(_) | Err(_) => Err(BodyError::BadJson),
    }
}

/// Decodes an urlencoded string (a form body or a query string) into Kong's nested structure.
/// A name without `=` gets `true`, `name=` gets `""`, empty names are dropped (nginx's
/// `ngx_http_lua_parse_args`); [`MAX_ARGS`] or more `&` is [`BodyError::BadForm`] with
/// `Too many arguments`, Kong's answer for bodies and for queries alike.
pub fn decode_query(query: &[u8], brackets: Brackets) -> Result<Value, BodyError> {
    // nginx counts every `&`, empty pairs included, and stops at the limit.
    if query.iter().filter(|&&b| b == b'&').count() >= MAX_ARGS {
        return Err(BodyError::BadForm(TOO_MANY_ARGUMENTS.to_owned()));
    }
    let args = query.split(|&b| b == b'&').filter_map(|piece| {
        let (name, value) = form_urlencoded::parse(piece).next()?;
        let value = if piece.contains(&b'=') {
            Value::String(value.into_owned())
        } else {
            Value::Bool(true)
        };
        Some((name.into_owned(), value))
    });
    Ok(nest_values(args, brackets))
}

/// Kong's Admin API reads multipart through lapis (`lapis/nginx.lua` `parse_multipart`),
/// which keeps the last part of a name and gives up on the whole body at the first error.
async fn decode_multipart(content_type: &str, body: Bytes) -> Value {
    let empty = Value::Object(Map::new());
    let Ok(boundary) = multer::parse_boundary(content_type) else {
        return empty;
    };
    let stream = futures_util::stream::iter([Ok::<Bytes, Infallible>(body)]);
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut parts: Vec<(String, Value)> = Vec::new();
    let mut slots: HashMap<String, usize> = HashMap::new();
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(_) => return empty,
        };
        let name = field.name().map(str::to_owned);
        let Ok(content) = field.bytes().await else {
            return empty;
        };
        let Some(name) = name.filter(|name| !name.is_empty()) else {
            continue;
        };
        // Kong keeps a part's bytes as they are; JSON holds only text.
        let content = Value::String(String::from_utf8_lossy(&content).into_owned());
        match slots.get(&name) {
            Some(&slot) => parts[slot].1 = content,
            None => {
                slots.insert(name.clone(), parts.len());
                parts.push((name, content));
            }
        }
    }
    nest_values(parts, Brackets::Map)
}

/// How a bracket holding a non-numeric key (`a[b]`) reads. Kong builds a map from it only on
/// POST, PUT and PATCH; on other methods the whole name is one key (`arguments_decoder.lua`
/// `decode_map_array_arg`, Kong Enterprise reads such names as filter operators).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Brackets {
    /// `a[b]=c` is `{"a":{"b":"c"}}`; the default, as for bodies.
    #[default]
    Map,
    /// `a[b]=c` is `{"a[b]":"c"}`; numeric brackets (`a[1]`, `a[]`) still build arrays.
    Literal,
}

impl Brackets {
    /// The reading Kong uses for a request with `method`.
    pub fn for_method(method: &Method) -> Self {
        if *method == Method::POST || *method == Method::PUT || *method == Method::PATCH {
            Self::Map
        } else {
            Self::Literal
        }
    }
}

/// Builds Kong's nested structure from flat (name, value) pairs, reading brackets as maps
/// (body semantics; see [`nest_with`]). Always returns a JSON object.
///
/// - dots and brackets nest: `config.minute=5` is `{"config":{"minute":"5"}}`, `a[b].c` and
///   `a.b.c` likewise; dots inside brackets belong to the key (`a[b.c]`);
/// - `a[]` appends, `a[1]` is 1-based; a repeated name makes an array of its values in order
///   (`hosts=a&hosts=b`), a single one stays a scalar until [`coerce`] wraps it;
/// - indexes that do not run 1..n (`a[2]` alone, `a[0]`) give an object keyed by the
///   decimal index, which entity validation rejects as Kong's does;
/// - names that collide merge as in Kong's `combine`: tables merge key by key, and two
///   scalars at one place become an array of both;
/// - `%5B`/`%5D` left in a decoded name (double-encoded brackets) count as brackets.
pub fn nest(pairs: impl IntoIterator<Item = (String, String)>) -> Value {
    nest_with(pairs, Brackets::Map)
}

/// [`nest`] with an explicit reading of non-numeric brackets.
pub fn nest_with(pairs: impl IntoIterator<Item = (String, String)>, brackets: Brackets) -> Value {
    nest_values(
        pairs
            .into_iter()
            .map(|(name, value)| (name, Value::String(value))),
        brackets,
    )
}

fn nest_values(args: impl IntoIterator<Item = (String, Value)>, brackets: Brackets) -> Value {
    // nginx hands Kong one table entry per distinct name, repeated names as a list.
    let mut groups: Vec<(String, Vec<Value>)> = Vec::new();
    let mut slots: HashMap<String, usize> = HashMap::new();
    for (name, value) in args {
        if name.is_empty() {
            continue;
        }
        match slots.get(&name) {
            Some(&slot) => groups[slot].1.push(value),
            None => {
                slots.insert(name.clone(), groups.len());
                groups.push((name, vec![value]));
            }
        }
    }
    let mut root = Table::default();
    for (name, values) in groups {
        let value = match <[Value; 1]>::try_from(values) {
            Ok([only]) => Node::Leaf(only),
            Err(values) => Node::Table(Table::array(values)),
        };
        root.merge(decode_name(&name, value, brackets));
    }
    root.into_object()
}

/// One step of a decoded name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// A 1-based array position as Lua keys it (0 and negatives allowed, they just never
    /// make an array).
    Index(i64),
    /// A map or record key.
    Name(String),
}

/// A Lua table under construction: Kong's structure before it becomes JSON, where array
/// positions and names can share one table.
#[derive(Debug, Default)]
struct Table {
    entries: Vec<(Key, Node)>,
    slots: HashMap<Key, usize>,
    /// The largest n such that 1..=n are all present (Lua's `#`).
    border: i64,
}

#[derive(Debug)]
enum Node {
    Leaf(Value),
    Table(Table),
}

impl Table {
    fn array(values: Vec<Value>) -> Self {
        let mut table = Self::default();
        for value in values {
            table.push(Node::Leaf(value));
        }
        table
    }

    fn single(key: Key, node: Node) -> Self {
        let mut table = Self::default();
        table.insert(key, node);
        table
    }

    fn insert(&mut self, key: Key, node: Node) {
        if let Some(&slot) = self.slots.get(&key) {
            self.entries[slot].1 = node;
            return;
        }
        self.slots.insert(key.clone(), self.entries.len());
        self.entries.push((key, node));
        while self.slots.contains_key(&Key::Index(self.border + 1)) {
            self.border += 1;
        }
    }

    fn push(&mut self, node: Node) {
        self.insert(Key::Index(self.border + 1), node);
    }

    /// Kong's `combine_arg` (`arguments.lua`).
    fn merge(&mut self, other: Table) {
        for (key, node) in other.entries {
            let Some(&slot) = self.slots.get(&key) else {
                self.insert(key, node);
                continue;
            };
            let existing = &mut self.entries[slot].1;
            if let Node::Leaf(old) = existing {
                let old = std::mem::take(old);
                *existing = Node::Table(Table::array(vec![old]));
            }
            if let Node::Table(table) = existing {
                table.absorb(node);
            }
        }
    }

    fn absorb(&mut self, node: Node) {
        match node {
            Node::Leaf(value) => self.push(Node::Leaf(value)),
            Node::Table(table) => self.merge(table),
        }
    }

    fn into_value(self) -> Value {
        let is_array = !self.entries.is_empty() && self.entries.len() as i64 == self.border;
        if !is_array {
            return self.into_object();
        }
        let mut items: Vec<Value> = vec![Value::Null; self.entries.len()];
        for (key, node) in self.entries {
            if let Key::Index(n) = key
                && let Some(item) = usize::try_from(n - 1).ok().and_then(|i| items.get_mut(i))
            {
                *item = node.into_value();
            }
        }
        Value::Array(items)
    }

    fn into_object(self) -> Value {
        let mut object = Map::new();
        for (key, node) in self.entries {
            let key = match key {
                Key::Index(n) => n.to_string(),
                Key::Name(name) => name,
            };
            object.insert(key, node.into_value());
        }
        Value::Object(object)
    }
}

impl Node {
    fn into_value(self) -> Value {
        match self {
            Self::Leaf(value) => value,
            Self::Table(table) => table.into_value(),
        }
    }
}

/// What one bracket key means (`arguments_decoder.lua` `nest_path`): `[]`, `[3]` or `[name]`.
enum Bracket {
    Append,
    Index(i64),
    Name(String),
}

impl Bracket {
    fn of(text: &str) -> Self {
        if text.is_empty() {
            return Self::Append;
        }
        match lua_number(text).and_then(integral) {
            Some(n) => Self::Index(n),
            None => Self::Name(text.to_owned()),
        }
    }
}

/// Kong's `decode_arg`: the table one name and its value(s) stand for.
fn decode_name(raw: &str, value: Node, brackets: Brackets) -> Table {
    if raw.starts_with('.') || raw.ends_with('.') {
        return Table::single(Key::Name(raw.to_owned()), value);
    }
    let name = unescape_brackets(raw);
    let segments = split_segments(&name);
    let mut path: Vec<Key> = Vec::new();
    let mut append = false;
    for (i, segment) in segments.iter().enumerate() {
        let last_segment = i + 1 == segments.len();
        let Some((param, keys)) = segment_keys(segment, brackets) else {
            path.push(Key::Name((*segment).to_owned()));
            continue;
        };
        path.push(Key::Name(param.to_owned()));
        for (j, key) in keys.iter().enumerate() {
            let last_key = j + 1 == keys.len();
            match Bracket::of(key.text) {
                // Inside a segment `[]` is position 1 (`x[][a]`); ending the name it appends;
                // ending a segment before a dot (`x[].a`) Kong nests into the array itself.
                Bracket::Append if !last_key => path.push(Key::Index(1)),
                Bracket::Append => append = last_segment,
                Bracket::Index(n) => path.push(Key::Index(n)),
                Bracket::Name(key) => path.push(Key::Name(key)),
            }
        }
    }
    if path.len() > MAX_NESTING {
        return Table::single(Key::Name(name), value);
    }
    let value = match value {
        Node::Leaf(leaf) if append => Node::Table(Table::array(vec![leaf])),
        other => other,
    };
    let mut keys = path.into_iter().rev();
    let Some(innermost) = keys.next() else {
        return Table::single(Key::Name(name), value);
    };
    keys.fold(Table::single(innermost, value), |table, key| {
        Table::single(key, Node::Table(table))
    })
}

/// Turns `%5B...%5D` (any case, shortest match) into `[...]`, as `decode_arg` does before
/// splitting.
fn unescape_brackets(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(open) = find_ascii_ci(rest, "%5b") {
        let after_open = &rest[open + 3..];
        let Some(close) = find_ascii_ci(after_open, "%5d") else {
            break;
        };
        out.push_str(&rest[..open]);
        out.push('[');
        out.push_str(&after_open[..close]);
        out.push(']');
        rest = &after_open[close + 3..];
    }
    out.push_str(rest);
    out
}

fn find_ascii_ci(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|window| window.eq_ignore_ascii_case(needle.as_bytes()))
}

/// Splits a name on the dots outside brackets, dropping empty pieces. A bracket group counts
/// only right after another character (Kong's `([^.](?:\[[^\]]*\])*)+`), so `a[b.c].d` is
/// `a[b.c]`, `d`.
fn split_segments(name: &str) -> Vec<&str> {
    let bytes = name.as_bytes();
    let mut closers = Closers::new(bytes);
    let mut segments = Vec::new();
    let mut start: Option<usize> = None;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'.' {
            if let Some(from) = start.take() {
                segments.push(&name[from..i]);
            }
            i += 1;
            continue;
        }
        start.get_or_insert(i);
        i += 1;
        while bytes.get(i) == Some(&b'[') {
            match closers.first_from(i + 1) {
                Some(close) => i = close + 1,
                None => break,
            }
        }
    }
    if let Some(from) = start {
        segments.push(&name[from..]);
    }
    segments
}

/// Finds the first `]` at or after a position, for positions that only grow. It remembers its
/// last answer, which holds for every start up to that `]`, so that a run of `[` without a
/// `]` costs linear time rather than quadratic.
struct Closers<'a> {
    bytes: &'a [u8],
    /// `(start, answer)` of the last search.
    last: Option<(usize, Option<usize>)>,
}

impl<'a> Closers<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, last: None }
    }

    fn first_from(&mut self, from: usize) -> Option<usize> {
        if let Some((start, answer)) = self.last
            && from >= start
            && answer.is_none_or(|close| from <= close)
        {
            return answer;
        }
        let answer = self
            .bytes
            .get(from..)
            .and_then(|tail| tail.iter().position(|&b| b == b']'))
            .map(|offset| from + offset);
        self.last = Some((from, answer));
        answer
    }
}

/// One key found after a segment's parameter name.
struct SegmentKey<'a> {
    text: &'a str,
    bracketed: bool,
}

/// Kong's `get_param_name_and_keys` plus the method rule: the parameter name and its keys, or
/// `None` when the segment is one plain key. The name keeps at least its first character
/// (`[5][1]` is name `[5]`, key `1`); text between bracket groups is ignored.
fn segment_keys(segment: &str, brackets: Brackets) -> Option<(&str, Vec<SegmentKey<'_>>)> {
    let bytes = segment.as_bytes();
    let delimiter = (1..bytes.len()).find(|&i| bytes[i] == b'[' || bytes[i] == b'.')?;
    let (param, rest) = segment.split_at(delimiter);
    let rest_bytes = rest.as_bytes();
    let mut closers = Closers::new(rest_bytes);
    let mut keys = Vec::new();
    let mut i = 0;
    while i < rest_bytes.len() {
        match rest_bytes[i] {
            b'.' => {
                let len = rest_bytes[i + 1..]
                    .iter()
                    .position(|&b| b == b'[' || b == b'.')
                    .unwrap_or(rest_bytes.len() - i - 1);
                if len > 0 {
                    keys.push(SegmentKey {
                        text: &rest[i + 1..i + 1 + len],
                        bracketed: false,
                    });
                }
                i += 1 + len;
            }
            b'[' => match closers.first_from(i + 1) {
                Some(close) => {
                    keys.push(SegmentKey {
                        text: &rest[i + 1..close],
                        bracketed: true,
                    });
                    i = close + 1;
                }
                None => i += 1,
            },
            _ => i += 1,
        }
    }
    if keys.is_empty() {
        return None;
    }
    let is_map = keys
        .iter()
        .any(|key| key.bracketed && !key.text.is_empty() && lua_number(key.text).is_none());
    if is_map && brackets == Brackets::Literal {
        return None;
    }
    Some((param, keys))
}

/// Lua's `tonumber` on a string, as far as JSON can hold the result: surrounding whitespace,
/// a sign, decimal with optional fraction and exponent, or `0x` hex. Infinities and NaN are
/// `None`.
fn lua_number(text: &str) -> Option<f64> {
    let trimmed = text.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c'));
    let (negative, digits) = match trimmed.as_bytes().first()? {
        b'-' => (true, &trimmed[1..]),
        b'+' => (false, &trimmed[1..]),
        _ => (false, trimmed),
    };
    let magnitude = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        if hex.is_empty() {
            return None;
        }
        hex.chars().try_fold(0f64, |acc, c| {
            c.to_digit(16).map(|digit| acc * 16.0 + f64::from(digit))
        })?
    } else {
        // Rust would also read `inf` and `nan`; a Lua number starts with a digit or a dot.
        if !digits
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_digit() || b == b'.')
        {
            return None;
        }
        digits.parse::<f64>().ok()?
    };
    let number = if negative { -magnitude } else { magnitude };
    number.is_finite().then_some(number)
}

/// `number` as an integer when it is one and fits.
fn integral(number: f64) -> Option<i64> {
    // 2^63: every f64 below it in magnitude converts exactly.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    (number.fract() == 0.0 && number.abs() < LIMIT).then_some(number as i64)
}

/// The JSON number Lua's `tonumber` would give for `text`; integers stay integers.
fn number_value(text: &str) -> Option<Value> {
    let number = lua_number(text)?;
    let trimmed = text.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c'));
    if let Ok(exact) = trimmed.parse::<i64>() {
        return Some(Value::from(exact));
    }
    match integral(number) {
        Some(whole) => Some(Value::from(whole)),
        None => serde_json::Number::from_f64(number).map(Value::Number),
    }
}

/// The type an entity schema expects at one place, for coercing form strings (Kong's field
/// `type` and what it holds; `arguments.lua` `infer_value`).
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// A string: only `""` changes (to null).
    String,
    /// An integer: a numeric string becomes a number. Fractions are kept (`"2.5"` is 2.5) for
    /// validation to reject, as Kong does not round.
    Integer,
    /// A number: a numeric string (Lua's `tonumber`: `" 5 "`, `"1e3"`, `"0x10"`) becomes one.
    Number,
    /// A boolean: exactly `"true"` or `"false"`.
    Boolean,
    /// An array or a set of these elements; a lone value becomes a one-element array.
    Array(Box<Expect>),
    /// A map whose values are of this type; keys are left alone.
    Map(Box<Expect>),
    /// A record, the entity itself, or a foreign key (Kong infers one with the referenced
    /// entity's schema): these fields, shorthand fields included; other keys are left alone.
    Record(Vec<(String, Expect)>),
    /// A field whose shape is not known here (Kong's abstract records): only `""` changes.
    Any,
}

impl Expect {
    /// A record of `fields`.
    pub fn record<K: Into<String>>(fields: impl IntoIterator<Item = (K, Expect)>) -> Self {
        Self::Record(
            fields
                .into_iter()
                .map(|(name, expect)| (name.into(), expect))
                .collect(),
        )
    }

    /// An array (or set) of `elements`.
    pub fn array(elements: Expect) -> Self {
        Self::Array(Box::new(elements))
    }

    /// A map with `values`.
    pub fn map(values: Expect) -> Self {
        Self::Map(Box::new(values))
    }
}

impl Expect {
    /// The expectation of a field in Kong's schema JSON (`GET /schemas/{entity}`): a
    /// `{"type": .., "elements"|"values"|"fields": ..}` object.
    pub fn from_kong_field(field: &Value) -> Self {
        let nested = |key: &str| Box::new(field.get(key).map_or(Self::Any, Self::from_kong_field));
        match field["type"].as_str() {
            Some("string") => Self::String,
            Some("integer") => Self::Integer,
            Some("number") => Self::Number,
            Some("boolean") => Self::Boolean,
            Some("array") | Some("set") => Self::Array(nested("elements")),
            Some("map") => Self::Map(nested("values")),
            Some("foreign") => Self::record([("id", Self::String)]),
            Some("record") if field.get("fields").is_some() => Self::from_kong_schema(field),
            _ => Self::Any,
        }
    }

    /// The record a Kong schema JSON (`{"fields": [{name: field}, ..]}`) describes.
    pub fn from_kong_schema(schema: &Value) -> Self {
        let fields = schema["fields"].as_array().into_iter().flatten();
        Self::record(fields.filter_map(|f| {
            let (name, field) = f.as_object()?.iter().next()?;
            Some((name.clone(), Self::from_kong_field(field)))
        }))
    }

    /// This record with field `name` expecting `expect` (added when absent).
    pub fn with_field(self, name: &str, expect: Expect) -> Self {
        match self {
            Self::Record(mut fields) => {
                match fields.iter_mut().find(|(n, _)| n == name) {
                    Some(slot) => slot.1 = expect,
                    None => fields.push((name.to_owned(), expect)),
                }
                Self::Record(fields)
            }
            other => other,
        }
    }
}

impl From<&Field> for Expect {
    /// The expectation a schema field sets; a foreign key expects `{"id": <string>}`, the
    /// primary key of every entity Kong references.
    fn from(field: &Field) -> Self {
        let nested =
            |inner: &Option<Box<Field>>| Box::new(inner.as_deref().map_or(Self::Any, Self::from));
        match field.kind {
            FieldType::String => Self::String,
            FieldType::Integer => Self::Integer,
            FieldType::Number => Self::Number,
            FieldType::Boolean => Self::Boolean,
            FieldType::Array | FieldType::Set => Self::Array(nested(&field.elements)),
            FieldType::Map => Self::Map(nested(&field.values)),
            FieldType::Record => Self::record(
                field
                    .fields
                    .iter()
                    .map(|(name, inner)| (*name, Self::from(inner))),
            ),
            FieldType::Foreign => Self::record([("id", Self::String)]),
        }
    }
}

/// Coerces the strings of a form-decoded `value` to what `expect` (normally the entity's
/// [`Expect::Record`]) says the schema wants, as Kong's `arguments.lua` `infer` does for
/// urlencoded and multipart bodies (never for JSON):
/// - `""` becomes null wherever the schema knows the field, whatever its type ("an empty
///   string clears a field"); `paths=` is null, `paths[]=` is `[null]`;
/// - numbers, integers and booleans are converted when the text allows, else left for
///   validation to reject;
/// - an array field given one value becomes a one-element array;
/// - keys the schema does not know are left untouched, `""` included.
///
/// For plugins pass the `config` record of the plugin named in the body, as Kong resolves
/// it from `name`; without one, `config` is [`Expect::Any`].
pub fn coerce(value: &mut Value, expect: &Expect) {
    match value {
        Value::Null | Value::Bool(false) => return,
        Value::String(text) if text.is_empty() => {
            *value = Value::Null;
            return;
        }
        _ => {}
    }
    match expect {
        Expect::String | Expect::Any => {}
        Expect::Integer | Expect::Number => {
            if let Value::String(text) = value
                && let Some(number) = number_value(text)
            {
                *value = number;
            }
        }
        Expect::Boolean => {
            if let Value::String(text) = value {
                match text.as_str() {
                    "true" => *value = Value::Bool(true),
                    "false" => *value = Value::Bool(false),
                    _ => {}
                }
            }
        }
        Expect::Array(elements) => {
            if !matches!(value, Value::Array(_) | Value::Object(_)) {
                *value = Value::Array(vec![std::mem::take(value)]);
            }
            // An object here is an array with gaps: validation rejects it whole.
            if let Value::Array(items) = value {
                for item in items {
                    coerce(item, elements);
                }
            }
        }
        Expect::Map(values) => {
            if let Value::Object(entries) = value {
                for entry in entries.values_mut() {
                    coerce(entry, values);
                }
            }
        }
        Expect::Record(fields) => {
            if let Value::Object(entries) = value {
                for (name, field) in fields {
                    if let Some(entry) = entries.get_mut(name) {
                        coerce(entry, field);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
