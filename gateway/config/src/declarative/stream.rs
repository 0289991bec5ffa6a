//! A streaming reader of declarative YAML (and JSON, a YAML subset) over libyaml's events.
//!
//! The generic loader (serde_norway into a `serde_json::Value`) holds every parser event of
//! the document and then a `Value` tree of it: gigabytes for a million consumers. This reader
//! pulls events from the same libyaml parser one at a time and hands each element of the big
//! entity lists to a sink as soon as it is complete, so only one entity at a time is held
//! as a parsed [`Node`].
//!
//! It resolves plain scalars exactly as serde_norway does when it fills a `serde_json::Value`,
//! and it gives up ([`Stop::Unusual`]) on anything whose handling it does not reproduce:
//! tags, anchors and aliases, several documents, deep nesting, a non-mapping top level,
//! duplicate top-level keys, integers beyond 64 bits, unreadable input. The caller then loads
//! the text the generic way, which yields the same result and the same error messages as
//! before. YAML syntax errors in the document are reported with serde_norway's wording
//! ([`Stop::Syntax`]).

use compact_str::CompactString;
use md5::Digest;
use std::ffi::c_void;
use std::io::Read as _;
use std::mem::MaybeUninit;
use std::num::ParseIntError;

use serde_json::{Map, Number, Value};
use unsafe_libyaml_norway as unsafe_yaml;

use super::node::Node;

/// Why the reader stopped short of the end of the document.
#[derive(Debug)]
pub(crate) enum Stop {
    /// Something only the generic loader handles exactly: it must read the text instead.
    Unusual,
    /// A YAML syntax error in the (first) document, with serde_norway's message for it: the
    /// generic loader would stop at the same place with the same words, so it need not
    /// parse (and hold) a huge document just to say so.
    Syntax(String),
}

/// Nesting deeper than this is left to the generic loader (serde_norway stops at 128).
const MAX_DEPTH: usize = 100;

mod scan;

/// One parser event, with the scalar's text.
#[derive(Debug, PartialEq)]
enum Event {
    StreamStart,
    StreamEnd,
    DocumentStart,
    DocumentEnd,
    MappingStart,
    MappingEnd,
    SequenceStart,
    SequenceEnd,
    Scalar { value: CompactString, plain: bool },
}

/// What the reader parses.
pub(crate) enum Input<'t> {
    /// Text in memory.
    Text(&'t [u8]),
    /// A file, read in small chunks as parsing goes, so the text is never held whole.
    File(std::fs::File),
}

/// A libyaml parser over text or a file.
struct Parser<'t> {
    // Boxed: libyaml keeps a pointer to the parser itself as its read-handler data.
    sys: Box<unsafe_yaml::yaml_parser_t>,
    // Boxed for a stable address: libyaml's read handler reads through a pointer to it, so
    // it is kept (not read) here for as long as the parser lives.
    _file: Option<Box<std::fs::File>>,
    /// The first document has ended: a later syntax error is serde_norway's "more than one
    /// document", not the syntax error.
    ended: bool,
    _text: std::marker::PhantomData<&'t [u8]>,
}

/// libyaml's read callback for [`Input::File`]; an I/O error fails the parse.
///
/// # Safety
/// `data` must point to the parser's boxed file and `buffer` to `size` writable
/// bytes.
unsafe fn read_file(data: *mut c_void, buffer: *mut u8, size: u64, size_read: *mut u64) -> i32 {
    // SAFETY: per the contract above, as set up in `Parser::new`.
    let (file, buf, size_read) = unsafe {
        (
            &mut *data.cast::<std::fs::File>(),
            std::slice::from_raw_parts_mut(buffer, size as usize),
            &mut *size_read,
        )
    };
    loop {
        match file.read(buf) {
            Ok(n) => {
                *size_read = n as u64;
                return 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return 0,
        }
    }
}

/// Where events come from: libyaml, or the faster scanner of the usual subset.
trait Events {
    /// The next event, or why reading stops.
    fn next(&mut self) -> Result<Event, Stop>;
}

/// Which reader turns the text into events.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Reader {
    /// [`scan::Scanner`]: declines (as [`Stop::Unusual`]) what it does not handle.
    Scanner,
    /// libyaml.
    Libyaml,
}

impl<'t> Parser<'t> {
    fn new(input: Input<'t>) -> Result<Parser<'t>, Stop> {
        let mut raw = Box::<unsafe_yaml::yaml_parser_t>::new_uninit();
        // SAFETY: `raw` is a valid allocation for a parser; initialize writes every field.
        let init = unsafe { unsafe_yaml::yaml_parser_initialize(raw.as_mut_ptr()) };
        if init.fail {
            return Err(Stop::Unusual);
        }
        // SAFETY: yaml_parser_initialize succeeded, so the parser is initialized.
        let mut sys = unsafe { raw.assume_init() };
        // SAFETY: the parser is initialized and has no input yet.
        unsafe {
            unsafe_yaml::yaml_parser_set_encoding(&mut *sys, unsafe_yaml::YAML_UTF8_ENCODING);
        }
        let file = match input {
            Input::Text(text) => {
                // SAFETY: `text` outlives the parser (the 't lifetime), and the boxed parser
                // never moves while libyaml points at it.
                unsafe {
                    unsafe_yaml::yaml_parser_set_input_string(
                        &mut *sys,
                        text.as_ptr(),
                        text.len() as u64,
                    );
                }
                None
            }
            Input::File(file) => {
                let mut file = Box::new(file);
                let data: *mut std::fs::File = &mut *file;
                // SAFETY: the boxed file lives as long as the parser (both are fields of
                // `Parser`, and Drop deletes the parser first) and never moves.
                unsafe {
                    unsafe_yaml::yaml_parser_set_input(&mut *sys, read_file, data.cast());
                }
                Some(file)
            }
        };
        Ok(Parser {
            sys,
            _file: file,
            ended: false,
            _text: std::marker::PhantomData,
        })
    }
}

impl Events for Parser<'_> {
    /// The next event; anchors, tags and aliases are [`Stop::Unusual`].
    fn next(&mut self) -> Result<Event, Stop> {
        let mut raw = MaybeUninit::<unsafe_yaml::yaml_event_t>::uninit();
        // SAFETY: the parser is initialized; on success libyaml fills the event.
        if unsafe { unsafe_yaml::yaml_parser_parse(&mut *self.sys, raw.as_mut_ptr()) }.fail {
            return Err(match self.syntax_error() {
                Some(message) if !self.ended => Stop::Syntax(message),
                _ => Stop::Unusual,
            });
        }
        // SAFETY: yaml_parser_parse succeeded, so the event is initialized.
        let mut event = unsafe { raw.assume_init() };
        // SAFETY: each arm reads only the union member that matches `type_`.
        let out = unsafe {
            match event.type_ {
                unsafe_yaml::YAML_STREAM_START_EVENT => Ok(Event::StreamStart),
                unsafe_yaml::YAML_STREAM_END_EVENT => Ok(Event::StreamEnd),
                unsafe_yaml::YAML_DOCUMENT_START_EVENT => Ok(Event::DocumentStart),
                unsafe_yaml::YAML_DOCUMENT_END_EVENT => {
                    self.ended = true;
                    Ok(Event::DocumentEnd)
                }
                unsafe_yaml::YAML_SCALAR_EVENT => {
                    let s = event.data.scalar;
                    if !s.anchor.is_null() || !s.tag.is_null() {
                        Err(Stop::Unusual)
                    } else {
                        let bytes = std::slice::from_raw_parts(s.value, s.length as usize);
                        match std::str::from_utf8(bytes) {
                            Ok(v) => Ok(Event::Scalar {
                                value: v.into(),
                                plain: s.style == unsafe_yaml::YAML_PLAIN_SCALAR_STYLE,
                            }),
                            Err(_) => Err(Stop::Unusual),
                        }
                    }
                }
                unsafe_yaml::YAML_SEQUENCE_START_EVENT => {
                    let s = event.data.sequence_start;
                    if s.anchor.is_null() && s.tag.is_null() {
                        Ok(Event::SequenceStart)
                    } else {
                        Err(Stop::Unusual)
                    }
                }
                unsafe_yaml::YAML_SEQUENCE_END_EVENT => Ok(Event::SequenceEnd),
                unsafe_yaml::YAML_MAPPING_START_EVENT => {
                    let m = event.data.mapping_start;
                    if m.anchor.is_null() && m.tag.is_null() {
                        Ok(Event::MappingStart)
                    } else {
                        Err(Stop::Unusual)
                    }
                }
                unsafe_yaml::YAML_MAPPING_END_EVENT => Ok(Event::MappingEnd),
                _ => Err(Stop::Unusual),
            }
        };
        // SAFETY: the event came from yaml_parser_parse and is deleted exactly once.
        unsafe { unsafe_yaml::yaml_event_delete(&mut event) };
        out
    }
}

impl Parser<'_> {
    /// The message of a scanner or parser error, worded as serde_norway words it: the
    /// problem, where, and the context with its place when that differs. Reader errors (bad
    /// UTF-8, unreadable file) are left to the generic loader, which reports them its way.
    fn syntax_error(&self) -> Option<String> {
        let p = std::ops::Deref::deref(&*self.sys);
        if !matches!(
            p.error,
            unsafe_yaml::YAML_SCANNER_ERROR | unsafe_yaml::YAML_PARSER_ERROR
        ) || p.problem.is_null()
        {
            return None;
        }
        // unsafe-libyaml declares its strings `*const i8` on every target, where `c_char` is
        // `u8` on aarch64 (Graviton): cast rather than name either.
        let text = |ptr: *const i8| {
            // SAFETY: libyaml's problem and context are null or static C strings.
            unsafe { std::ffi::CStr::from_ptr(ptr.cast()) }.to_string_lossy()
        };
        let at = |m: &unsafe_yaml::yaml_mark_t| {
            if m.line != 0 || m.column != 0 {
                format!("line {} column {}", m.line + 1, m.column + 1)
            } else {
                format!("position {}", m.index)
            }
        };
        let (pm, cm) = (&p.problem_mark, &p.context_mark);
        let mut message = text(p.problem).into_owned();
        if pm.line != 0 || pm.column != 0 {
            message.push_str(&format!(" at {}", at(pm)));
        } else if p.problem_offset != 0 {
            message.push_str(&format!(" at position {}", p.problem_offset));
        }
        if !p.context.is_null() {
            message.push_str(&format!(", {}", text(p.context)));
            if (cm.line != 0 || cm.column != 0) && (cm.line != pm.line || cm.column != pm.column) {
                message.push_str(&format!(" at {}", at(cm)));
            }
        }
        Some(message)
    }
}

impl Drop for Parser<'_> {
    fn drop(&mut self) {
        // SAFETY: the parser was initialized in `new` and is deleted once.
        unsafe { unsafe_yaml::yaml_parser_delete(&mut *self.sys) };
    }
}

/// Receives each element of the streamed top-level lists.
pub(crate) trait Sink {
    /// True when the top-level `key` is a list to stream element by element.
    fn streams(&self, key: &str) -> bool;
    /// Takes element `index` of the streamed list `key`.
    fn element(&mut self, key: &str, index: usize, node: Node);
    /// The streamed list `key` was a sequence (possibly empty).
    fn list_seen(&mut self, key: &str);
}

/// The md5 of `bytes`, as 32 hex characters.
pub(crate) fn md5_hex(bytes: &[u8]) -> String {
    hex(md5::Md5::digest(bytes).as_slice())
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The md5 of `file`'s text, as 32 hex characters: Kong's configuration hash of a
/// declarative file. Positioned reads leave the file's offset to the parser, so the file
/// can be hashed on another thread while it is parsed.
pub(crate) fn file_md5(file: &std::fs::File) -> std::io::Result<String> {
    use std::os::unix::fs::FileExt as _;
    let mut md5 = md5::Md5::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = 0u64;
    loop {
        match file.read_at(&mut buf, at) {
            Ok(0) => return Ok(hex(md5.finalize().as_slice())),
            Ok(n) => {
                md5.update(&buf[..n]);
                at += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Reads a whole document with `reader`: returns the top-level mapping, minus the streamed
/// lists, which went to `sink`. Returns [`Stop::Unusual`] when another reader must read the text
/// instead: libyaml after the scanner, the generic loader after libyaml.
pub(crate) fn read(
    input: Input<'_>,
    reader: Reader,
    sink: &mut impl Sink,
) -> Result<Map<String, Value>, Stop> {
    match reader {
        Reader::Scanner => read_events(&mut scan::Scanner::new(input), sink),
        Reader::Libyaml => read_events(&mut Parser::new(input)?, sink),
    }
}

fn read_events(p: &mut impl Events, sink: &mut impl Sink) -> Result<Map<String, Value>, Stop> {
    if !matches!(p.next()?, Event::StreamStart) || !matches!(p.next()?, Event::DocumentStart) {
        return Err(Stop::Unusual);
    }
    if !matches!(p.next()?, Event::MappingStart) {
        return Err(Stop::Unusual);
    }
    let mut top = Map::new();
    let mut streamed: Vec<CompactString> = Vec::new();
    loop {
        let key = match p.next()? {
            Event::MappingEnd => break,
            Event::Scalar { value, .. } => value,
            _ => return Err(Stop::Unusual),
        };
        if top.contains_key(key.as_str()) || streamed.contains(&key) {
            return Err(Stop::Unusual);
        }
        let first = p.next()?;
        if sink.streams(&key) && matches!(first, Event::SequenceStart) {
            sink.list_seen(&key);
            let mut index = 0;
            loop {
                let event = p.next()?;
                if matches!(event, Event::SequenceEnd) {
                    break;
                }
                let node = node(p, event, 2)?;
                sink.element(&key, index, node);
                index += 1;
            }
            streamed.push(key);
        } else {
            let value = node(p, first, 1)?.into_value();
            top.insert(key.into_string(), value);
        }
    }
    if !matches!(p.next()?, Event::DocumentEnd) || !matches!(p.next()?, Event::StreamEnd) {
        return Err(Stop::Unusual);
    }
    Ok(top)
}

/// Builds the node that starts with `first`.
fn node(p: &mut impl Events, first: Event, depth: usize) -> Result<Node, Stop> {
    if depth > MAX_DEPTH {
        return Err(Stop::Unusual);
    }
    match first {
        Event::Scalar { value, plain } => {
            if plain {
                plain_scalar(value)
            } else {
                Ok(Node::Str(value))
            }
        }
        Event::SequenceStart => {
            let mut items = Vec::new();
            loop {
                match p.next()? {
                    Event::SequenceEnd => return Ok(Node::Seq(items)),
                    e => items.push(node(p, e, depth + 1)?),
                }
            }
        }
        Event::MappingStart => {
            let mut pairs = Vec::new();
            loop {
                let key = match p.next()? {
                    Event::MappingEnd => return Ok(Node::Map(pairs)),
                    // Any scalar key is taken as its text, as serde_json's map keys are.
                    Event::Scalar { value, .. } => value,
                    _ => return Err(Stop::Unusual),
                };
                let e = p.next()?;
                pairs.push((key, node(p, e, depth + 1)?));
            }
        }
        _ => Err(Stop::Unusual),
    }
}

/// Resolves a plain scalar the way serde_norway hands it to a `serde_json::Value`: null,
/// booleans, integers (decimal, `0x`, `0o`, `0b`), floats, else a string.
fn plain_scalar(v: CompactString) -> Result<Node, Stop> {
    if v.is_empty() || matches!(v.as_str(), "~" | "null" | "Null" | "NULL") {
        return Ok(Node::Null);
    }
    match v.as_str() {
        "true" | "True" | "TRUE" => return Ok(Node::Bool(true)),
        "false" | "False" | "FALSE" => return Ok(Node::Bool(false)),
        _ => {}
    }
    // Numbers start with a digit, a sign or a dot; skip the number parsers for the rest.
    if !v.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '+' | '-' | '.')) {
        return Ok(Node::Str(v));
    }
    if let Some(n) = unsigned(&v, u64::from_str_radix) {
        return Ok(Node::Num(n.into()));
    }
    if let Some(n) = negative(&v, i64::from_str_radix) {
        return Ok(Node::Num(n.into()));
    }
    if unsigned(&v, u128::from_str_radix).is_some() || negative(&v, i128::from_str_radix).is_some()
    {
        return Err(Stop::Unusual);
    }
    if !leading_zero_digits(&v) {
        if let Some(f) = float(&v) {
            // Non-finite floats become null, as `serde_json::Value` stores them.
            return Ok(Number::from_f64(f).map_or(Node::Null, Node::Num));
        }
    }
    Ok(Node::Str(v))
}

/// `0123` and `-007` are strings in YAML 1.2, not octal or decimal numbers.
fn leading_zero_digits(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    s.len() > 1 && s.starts_with('0') && s.bytes().skip(1).all(|b| b.is_ascii_digit())
}

/// Strips the radix prefix (`0x`, `0o`, `0b`) of `digits`; a sign after it is refused.
fn radix_of(digits: &str) -> Option<(u32, &str)> {
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(rest) = digits.strip_prefix(prefix) {
            return Some((radix, rest));
        }
    }
    None
}

/// A non-negative integer with an optional `+` and radix prefix.
fn unsigned<T>(s: &str, parse: fn(&str, u32) -> Result<T, ParseIntError>) -> Option<T> {
    let digits = s.strip_prefix('+').unwrap_or(s);
    if let Some((radix, rest)) = radix_of(digits) {
        if rest.starts_with(['+', '-']) {
            return None;
        }
        if let Ok(n) = parse(rest, radix) {
            return Some(n);
        }
    }
    if digits.starts_with(['+', '-']) || leading_zero_digits(s) {
        return None;
    }
    parse(digits, 10).ok()
}

/// A negative (or explicitly signed) integer; `-0x1f` style radix prefixes allowed.
fn negative<T>(s: &str, parse: fn(&str, u32) -> Result<T, ParseIntError>) -> Option<T> {
    if let Some(rest) = s.strip_prefix('-') {
        if let Some((radix, digits)) = radix_of(rest) {
            if let Ok(n) = parse(&format!("-{digits}"), radix) {
                return Some(n);
            }
        }
    }
    if leading_zero_digits(s) {
        return None;
    }
    parse(s, 10).ok()
}

/// A finite float, or YAML's `.inf`, `-.inf` and `.nan` spellings.
fn float(s: &str) -> Option<f64> {
    let unsigned = match s.strip_prefix('+') {
        Some(rest) if rest.starts_with(['+', '-']) => return None,
        Some(rest) => rest,
        None => s,
    };
    if matches!(unsigned, ".inf" | ".Inf" | ".INF") {
        return Some(f64::INFINITY);
    }
    if matches!(s, "-.inf" | "-.Inf" | "-.INF") {
        return Some(f64::NEG_INFINITY);
    }
    if matches!(s, ".nan" | ".NaN" | ".NAN") {
        return Some(f64::NAN);
    }
    unsigned.parse::<f64>().ok().filter(|f| f.is_finite())
}

#[cfg(test)]
mod tests;
