//! A line scanner for the YAML that declarative files are usually written in, several times
//! faster than libyaml: block mappings and sequences indented with spaces (sequences under
//! their key included, as decK writes them), one-line plain and quoted scalars, one-line
//! flow collections, comments, UTF-8 text.
//!
//! It yields exactly the events libyaml yields for such a document, and declines
//! ([`Stop::Unusual`]) everything else: tabs, anchors, tags, aliases, block scalars, scalars
//! or flow collections over several lines, complex keys, directives, control characters and
//! YAML 1.1's other line breaks, anything libyaml would refuse. The caller then reads the
//! file with libyaml, which yields the same result (and words any syntax error). `tests.rs`
//! holds both to the same events on generated documents.

use std::io::Read as _;

use compact_str::CompactString;

use super::{Event, Stop};

/// A line longer than this is left to libyaml, which streams it.
const MAX_LINE: usize = 1 << 20;
/// libyaml's limit on the length of a simple key.
const MAX_KEY: usize = 1024;
/// Flow collections nested deeper than this are left to libyaml.
const MAX_FLOW_DEPTH: usize = 64;
/// How much of a file is read at a time.
const CHUNK: usize = 64 * 1024;

/// The lines of the input, from text in memory or read from a file in chunks.
enum Lines<'t> {
    Text(&'t [u8]),
    File {
        file: std::fs::File,
        buf: Vec<u8>,
        start: usize,
        end: usize,
        eof: bool,
    },
}

impl Lines<'_> {
    /// The next line, without its `\n`; `None` at the end of the input.
    fn next_line(&mut self) -> Result<Option<&[u8]>, Stop> {
        match self {
            Lines::Text(rest) => {
                if rest.is_empty() {
                    return Ok(None);
                }
                let text: &[u8] = rest;
                let (line, after) = match memchr::memchr(b'\n', text) {
                    Some(i) => (&text[..i], &text[i + 1..]),
                    None => (text, &text[text.len()..]),
                };
                *rest = after;
                Ok(Some(line))
            }
            Lines::File {
                file,
                buf,
                start,
                end,
                eof,
            } => loop {
                if let Some(i) = memchr::memchr(b'\n', &buf[*start..*end]) {
                    let line = *start..*start + i;
                    *start += i + 1;
                    return Ok(Some(&buf[line]));
                }
                if *eof {
                    if start == end {
                        return Ok(None);
                    }
                    let line = *start..*end;
                    *start = *end;
                    return Ok(Some(&buf[line]));
                }
                if *end - *start >= MAX_LINE {
                    return Err(Stop::Unusual);
                }
                buf.copy_within(*start..*end, 0);
                *end -= *start;
                *start = 0;
                if buf.len() - *end < CHUNK {
                    buf.resize(*end + CHUNK, 0);
                }
                let n = loop {
                    match file.read(&mut buf[*end..]) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => return Err(Stop::Unusual),
                    }
                };
                *end += n;
                *eof = n == 0;
            },
        }
    }
}

/// An open block collection and the column of its entries.
#[derive(Clone, Copy)]
struct Block {
    indent: usize,
    seq: bool,
    /// A sequence at the column of the key it is the value of (`key:` then `- item` below
    /// it, as decK writes): the next key at that column ends it.
    indentless: bool,
}

impl Block {
    /// The event that closes it.
    fn end(&self) -> Event {
        if self.seq {
            Event::SequenceEnd
        } else {
            Event::MappingEnd
        }
    }
}

/// Where the scanner is in the document.
#[derive(Default)]
struct Structure {
    blocks: Vec<Block>,
    /// The stream and document have started (there was a content line).
    started: bool,
    /// A `---` line came before the content.
    marker: bool,
    /// The last key had no value on its line: the column its nested block must pass.
    pending: Option<usize>,
}

/// Yields libyaml's events for a document in the usual subset.
pub(crate) struct Scanner<'t> {
    lines: Lines<'t>,
    structure: Structure,
    /// The events of the last line read, last first.
    events: Vec<Event>,
    done: bool,
}

impl<'t> Scanner<'t> {
    pub(crate) fn new(input: super::Input<'t>) -> Scanner<'t> {
        let lines = match input {
            super::Input::Text(text) => Lines::Text(text),
            super::Input::File(file) => Lines::File {
                file,
                buf: Vec::new(),
                start: 0,
                end: 0,
                eof: false,
            },
        };
        Scanner {
            lines,
            structure: Structure::default(),
            events: Vec::new(),
            done: false,
        }
    }
}

impl super::Events for Scanner<'_> {
    fn next(&mut self) -> Result<Event, Stop> {
        loop {
            if let Some(event) = self.events.pop() {
                return Ok(event);
            }
            if self.done {
                return Err(Stop::Unusual);
            }
            match self.lines.next_line()? {
                Some(line) => self.structure.line(line, &mut self.events)?,
                None => {
                    self.structure.finish(&mut self.events)?;
                    self.done = true;
                }
            }
            self.events.reverse();
        }
    }
}

impl Structure {
    fn line(&mut self, line: &[u8], out: &mut Vec<Event>) -> Result<(), Stop> {
        let text = printable(line)?;
        let indent = line.iter().take_while(|&&b| b == b' ').count();
        let rest = &line[indent..];
        if rest.is_empty() || rest[0] == b'#' {
            return Ok(());
        }
        if indent == 0 && (rest.starts_with(b"---") || rest.starts_with(b"...")) {
            // One explicit start before the content; a second document, an end marker or
            // content on the marker's line are libyaml's.
            if self.started || self.marker || trim_end(rest) != b"---" {
                return Err(Stop::Unusual);
            }
            self.marker = true;
            return Ok(());
        }
        if rest[0] == b'%' {
            return Err(Stop::Unusual);
        }
        let mut at = Cursor::new(text, indent);
        if !self.started {
            // The top level must be a block mapping at the first column.
            if indent != 0 {
                return Err(Stop::Unusual);
            }
            self.started = true;
            out.push(Event::StreamStart);
            out.push(Event::DocumentStart);
            return self.open_mapping(&mut at, out);
        }
        let entry = is_entry(rest);
        if let Some(parent) = self.pending.take() {
            if indent > parent {
                if entry {
                    return self.open_sequence(&mut at, indent, false, out);
                }
                return self.open_mapping(&mut at, out);
            }
            if indent == parent && entry {
                return self.open_sequence(&mut at, indent, true, out);
            }
            out.push(empty());
        }
        while let Some(top) = self.blocks.last() {
            let ends_indentless = top.indentless && top.indent == indent && !entry;
            if top.indent <= indent && !ends_indentless {
                break;
            }
            out.push(top.end());
            self.blocks.pop();
        }
        match self.blocks.last() {
            Some(top) if top.indent == indent && top.seq && entry => self.entry_line(&mut at, out),
            Some(top) if top.indent == indent && !top.seq && !entry => {
                match at.node_or_key(0, out)? {
                    Element::Key => self.after_key(&mut at, indent, out),
                    Element::Value => Err(Stop::Unusual),
                }
            }
            _ => Err(Stop::Unusual),
        }
    }

    /// A block sequence at `indent` whose first entry is this line.
    fn open_sequence(
        &mut self,
        at: &mut Cursor<'_>,
        indent: usize,
        indentless: bool,
        out: &mut Vec<Event>,
    ) -> Result<(), Stop> {
        out.push(Event::SequenceStart);
        self.blocks.push(Block {
            indent,
            seq: true,
            indentless,
        });
        self.entry_line(at, out)
    }

    /// A block mapping whose first key is at the cursor.
    fn open_mapping(&mut self, at: &mut Cursor<'_>, out: &mut Vec<Event>) -> Result<(), Stop> {
        let column = at.pos;
        let before = out.len();
        match at.node_or_key(0, out)? {
            Element::Key => self.opened_mapping(at, column, before, out),
            Element::Value => Err(Stop::Unusual),
        }
    }

    /// The scalar after `before` in `out` was the first key of a mapping at `column`.
    fn opened_mapping(
        &mut self,
        at: &mut Cursor<'_>,
        column: usize,
        before: usize,
        out: &mut Vec<Event>,
    ) -> Result<(), Stop> {
        out.insert(before, Event::MappingStart);
        self.blocks.push(Block {
            indent: column,
            seq: false,
            indentless: false,
        });
        self.after_key(at, column, out)
    }

    /// The value after a key at `column`: on the line, or nested in the lines below.
    fn after_key(
        &mut self,
        at: &mut Cursor<'_>,
        column: usize,
        out: &mut Vec<Event>,
    ) -> Result<(), Stop> {
        if at.at_end() {
            self.pending = Some(column);
            return Ok(());
        }
        match at.node_or_key(0, out)? {
            Element::Value if at.at_end() => Ok(()),
            _ => Err(Stop::Unusual),
        }
    }

    /// A `- entry` line of the innermost sequence.
    fn entry_line(&mut self, at: &mut Cursor<'_>, out: &mut Vec<Event>) -> Result<(), Stop> {
        at.pos += 1;
        at.skip_spaces();
        if at.at_end() || is_entry(at.rest()) {
            return Err(Stop::Unusual);
        }
        let column = at.pos;
        let before = out.len();
        match at.node_or_key(0, out)? {
            Element::Key => self.opened_mapping(at, column, before, out),
            Element::Value if at.at_end() => Ok(()),
            Element::Value => Err(Stop::Unusual),
        }
    }

    fn finish(&mut self, out: &mut Vec<Event>) -> Result<(), Stop> {
        if !self.started {
            return Err(Stop::Unusual);
        }
        if self.pending.take().is_some() {
            out.push(empty());
        }
        while let Some(top) = self.blocks.pop() {
            out.push(top.end());
        }
        out.push(Event::DocumentEnd);
        out.push(Event::StreamEnd);
        Ok(())
    }
}

/// The line as text when libyaml would read it as one line of printable characters:
/// valid UTF-8 without tabs, control characters, byte order marks, non-characters, or the
/// characters YAML 1.1 also breaks lines at (a carriage return, NEL, LS, PS).
fn printable(line: &[u8]) -> Result<&str, Stop> {
    // Counted without an early exit, so that the loop is vectorized: most lines are ASCII.
    let unusual = line
        .iter()
        .fold(0u8, |n, b| n | u8::from(b.wrapping_sub(0x20) >= 0x5f));
    let text = std::str::from_utf8(line).map_err(|_| Stop::Unusual)?;
    if unusual != 0 && !text.chars().all(printable_char) {
        return Err(Stop::Unusual);
    }
    Ok(text)
}

fn printable_char(c: char) -> bool {
    matches!(c, ' '..='~' | '\u{a0}'..='\u{2027}' | '\u{202a}'..='\u{d7ff}' | '\u{e000}'..='\u{fefe}' | '\u{ff00}'..='\u{fffd}' | '\u{10000}'..)
}

/// libyaml's value of a key with none: an empty plain scalar.
fn empty() -> Event {
    Event::Scalar {
        value: CompactString::default(),
        plain: true,
    }
}

/// A block sequence entry: `-` followed by a space or the end of the line.
fn is_entry(rest: &[u8]) -> bool {
    rest.first() == Some(&b'-') && matches!(rest.get(1), None | Some(b' '))
}

fn trim_end(s: &[u8]) -> &[u8] {
    let n = s.iter().rev().take_while(|&&b| b == b' ').count();
    &s[..s.len() - n]
}

/// What a scalar turned out to be.
enum Element {
    /// A mapping key (its `:` consumed).
    Key,
    /// A value.
    Value,
}

/// A position in one line.
struct Cursor<'l> {
    text: &'l str,
    line: &'l [u8],
    pos: usize,
}

impl<'l> Cursor<'l> {
    fn new(text: &'l str, pos: usize) -> Cursor<'l> {
        Cursor {
            text,
            line: text.as_bytes(),
            pos,
        }
    }

    fn rest(&self) -> &'l [u8] {
        &self.line[self.pos..]
    }

    fn peek(&self) -> Option<u8> {
        self.line.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.line.get(self.pos + ahead).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    /// Only spaces and a comment are left (the caller skipped the spaces before it).
    fn at_end(&self) -> bool {
        match self.peek() {
            None => true,
            Some(b'#') => self.line[self.pos - 1] == b' ',
            Some(_) => false,
        }
    }

    /// A scalar or flow collection at the cursor (spaces after it skipped); a scalar
    /// followed by `:` and a space or the end is a key. `flow` is the flow depth.
    fn node_or_key(&mut self, flow: usize, out: &mut Vec<Event>) -> Result<Element, Stop> {
        let start = self.pos;
        match self.peek().ok_or(Stop::Unusual)? {
            b'[' | b'{' => {
                self.flow_collection(flow + 1, out)?;
                self.skip_spaces();
                return Ok(Element::Value);
            }
            b'"' => {
                let value = self.double_quoted()?;
                out.push(Event::Scalar {
                    value,
                    plain: false,
                });
            }
            b'\'' => {
                let value = self.single_quoted()?;
                out.push(Event::Scalar {
                    value,
                    plain: false,
                });
            }
            _ => {
                let value = self.plain(flow > 0)?;
                out.push(Event::Scalar {
                    value: value.into(),
                    plain: true,
                });
            }
        }
        self.skip_spaces();
        if self.peek() == Some(b':') {
            let after = self.peek_at(1);
            let key = match after {
                None | Some(b' ') => true,
                // JSON-like keys: a quoted key's `:` may touch the value in flow context.
                Some(_) if flow > 0 => matches!(self.line[start], b'"' | b'\''),
                Some(_) => false,
            };
            if !key || self.pos - start > MAX_KEY {
                return Err(Stop::Unusual);
            }
            self.pos += 1;
            self.skip_spaces();
            return Ok(Element::Key);
        }
        Ok(Element::Value)
    }

    /// A plain scalar, ended by `: `, ` #`, the end of the line, or in flow context a flow
    /// indicator.
    fn plain(&mut self, flow: bool) -> Result<&'l str, Stop> {
        let start = self.pos;
        let first = self.peek().ok_or(Stop::Unusual)?;
        let indicator = matches!(
            first,
            b',' | b'['
                | b']'
                | b'{'
                | b'}'
                | b'#'
                | b'&'
                | b'*'
                | b'!'
                | b'|'
                | b'>'
                | b'\''
                | b'"'
                | b'%'
                | b'@'
                | b'`'
                | b'?'
                | b':'
        );
        let dash_alone = first == b'-'
            && matches!(
                self.peek_at(1),
                None | Some(b' ' | b',' | b'[' | b']' | b'{' | b'}' | b'#' | b':')
            );
        if indicator || dash_alone {
            return Err(Stop::Unusual);
        }
        while let Some(b) = self.peek() {
            match b {
                b':' => match self.peek_at(1) {
                    None | Some(b' ') => break,
                    Some(_) if flow => return Err(Stop::Unusual),
                    Some(_) => {}
                },
                b'#' if self.line[self.pos - 1] == b' ' => break,
                b',' | b'[' | b']' | b'{' | b'}' if flow => break,
                b'?' if flow => return Err(Stop::Unusual),
                _ => {}
            }
            self.pos += 1;
        }
        let end = start + trim_end(&self.line[start..self.pos]).len();
        Ok(&self.text[start..end])
    }

    /// A single-quoted scalar closed on this line (`''` is a quote).
    fn single_quoted(&mut self) -> Result<CompactString, Stop> {
        self.pos += 1;
        let mut value = CompactString::default();
        loop {
            let quote = memchr::memchr(b'\'', self.rest()).ok_or(Stop::Unusual)?;
            value.push_str(&self.text[self.pos..self.pos + quote]);
            self.pos += quote + 1;
            if self.peek() != Some(b'\'') {
                return Ok(value);
            }
            value.push('\'');
            self.pos += 1;
        }
    }

    /// A double-quoted scalar closed on this line, with YAML's escapes.
    fn double_quoted(&mut self) -> Result<CompactString, Stop> {
        self.pos += 1;
        let mut value = CompactString::default();
        loop {
            let run = memchr::memchr2(b'"', b'\\', self.rest()).ok_or(Stop::Unusual)?;
            value.push_str(&self.text[self.pos..self.pos + run]);
            self.pos += run;
            let b = self.peek().ok_or(Stop::Unusual)?;
            self.pos += 1;
            match b {
                b'"' => return Ok(value),
                // A backslash.
                _ => {
                    let e = self.peek().ok_or(Stop::Unusual)?;
                    self.pos += 1;
                    let c = match e {
                        b'0' => '\0',
                        b'a' => '\x07',
                        b'b' => '\x08',
                        b't' => '\t',
                        b'n' => '\n',
                        b'v' => '\x0b',
                        b'f' => '\x0c',
                        b'r' => '\r',
                        b'e' => '\x1b',
                        b' ' => ' ',
                        b'"' => '"',
                        b'/' => '/',
                        b'\\' => '\\',
                        b'N' => '\u{85}',
                        b'_' => '\u{a0}',
                        b'L' => '\u{2028}',
                        b'P' => '\u{2029}',
                        b'x' => self.hex_char(2)?,
                        b'u' => self.hex_char(4)?,
                        b'U' => self.hex_char(8)?,
                        _ => return Err(Stop::Unusual),
                    };
                    value.push(c);
                }
            }
        }
    }

    /// The character of `digits` hex digits; surrogates and values beyond Unicode are
    /// libyaml's to refuse.
    fn hex_char(&mut self, digits: usize) -> Result<char, Stop> {
        let hex = self
            .line
            .get(self.pos..self.pos + digits)
            .ok_or(Stop::Unusual)?;
        if !hex.iter().all(u8::is_ascii_hexdigit) {
            return Err(Stop::Unusual);
        }
        self.pos += digits;
        let text = std::str::from_utf8(hex).map_err(|_| Stop::Unusual)?;
        let code = u32::from_str_radix(text, 16).map_err(|_| Stop::Unusual)?;
        char::from_u32(code).ok_or(Stop::Unusual)
    }

    /// A flow sequence or mapping closed on this line; `depth` counts the open ones.
    fn flow_collection(&mut self, depth: usize, out: &mut Vec<Event>) -> Result<(), Stop> {
        if depth > MAX_FLOW_DEPTH {
            return Err(Stop::Unusual);
        }
        let map = self.peek() == Some(b'{');
        let close = if map { b'}' } else { b']' };
        out.push(if map {
            Event::MappingStart
        } else {
            Event::SequenceStart
        });
        self.pos += 1;
        self.skip_spaces();
        if self.peek() == Some(close) {
            self.pos += 1;
        } else {
            loop {
                if matches!(self.peek(), None | Some(b'#' | b',' | b']' | b'}')) {
                    return Err(Stop::Unusual);
                }
                let element = self.node_or_key(depth, out)?;
                match (map, element) {
                    (true, Element::Key) => {
                        if matches!(self.peek(), Some(b',' | b'}')) {
                            out.push(empty());
                        } else {
                            if matches!(self.peek(), None | Some(b'#')) {
                                return Err(Stop::Unusual);
                            }
                            match self.node_or_key(depth, out)? {
                                Element::Value => {}
                                Element::Key => return Err(Stop::Unusual),
                            }
                        }
                    }
                    (false, Element::Value) => {}
                    // A key without a value in a mapping, a pair in a sequence.
                    _ => return Err(Stop::Unusual),
                }
                self.skip_spaces();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        self.skip_spaces();
                    }
                    Some(b) if b == close => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(Stop::Unusual),
                }
            }
        }
        out.push(if map {
            Event::MappingEnd
        } else {
            Event::SequenceEnd
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests;
