//! The Lua subset allowed inside `$( )`: lookups in `headers`, `query_params` and
//! `uri_captures`, string literals, and `or` between them.
//!
//! Tokens follow LuaJIT 2.1's lexer (identifiers, short strings with every escape LuaJIT
//! knows, long brackets, decimal integers), so an expression Kong's schema would reject as a
//! Lua syntax error is rejected here too, and one it accepts means the same thing.

use super::Lookup;

/// A parsed `$( )` body: the lookups tried in order, then the literal used when all are
/// missing (Lua's `a or b or 'x'`; alternatives after a literal can never be reached).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Expr {
    pub(super) lookups: Vec<Lookup>,
    pub(super) fallback: Option<String>,
}

/// Why an expression was rejected; `template.rs` turns it into the config error.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Reject {
    /// `$()` or only whitespace.
    Empty,
    /// Valid Lua perhaps, but not one of the forms gangway evaluates.
    Unsupported,
    /// A Lua keyword used after `.` (a syntax error in Lua).
    Keyword(String),
    /// A malformed string literal.
    BadString(&'static str),
}

#[derive(Debug, PartialEq, Eq)]
enum Tok<'a> {
    Name(&'a str),
    Str(String),
    Int(usize),
    Dot,
    Open,
    Close,
}

/// Lua 5.1 keywords plus LuaJIT's `goto`: a syntax error after `.`.
const KEYWORDS: &[&str] = &[
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if", "in",
    "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
];

/// Parses the text between `$(` and its matching `)`.
pub(super) fn parse(src: &str) -> Result<Expr, Reject> {
    let toks = lex(src)?;
    if toks.is_empty() {
        return Err(Reject::Empty);
    }
    if let Some(k) = toks.windows(2).find_map(|w| match w {
        [Tok::Dot, Tok::Name(k)] if KEYWORDS.contains(k) => Some(k),
        _ => None,
    }) {
        return Err(Reject::Keyword((*k).to_owned()));
    }
    let mut expr = Expr {
        lookups: Vec::new(),
        fallback: None,
    };
    for alt in toks.split(|t| *t == Tok::Name("or")) {
        match alt {
            [Tok::Str(s)] => {
                // Lua strings are always truthy: later alternatives are dead code.
                if expr.fallback.is_none() {
                    expr.fallback = Some(s.clone());
                }
            }
            [Tok::Name(root), Tok::Dot, Tok::Name(key)] => {
                push(&mut expr, lookup(root, Key::Str(key))?);
            }
            [Tok::Name(root), Tok::Open, Tok::Str(key), Tok::Close] => {
                push(&mut expr, lookup(root, Key::Str(key))?);
            }
            [Tok::Name(root), Tok::Open, Tok::Int(i), Tok::Close] => {
                push(&mut expr, lookup(root, Key::Int(*i))?);
            }
            _ => return Err(Reject::Unsupported),
        }
    }
    Ok(expr)
}

fn push(expr: &mut Expr, lookup: Lookup) {
    if expr.fallback.is_none() {
        expr.lookups.push(lookup);
    }
}

enum Key<'a> {
    Str(&'a str),
    Int(usize),
}

fn lookup(root: &str, key: Key<'_>) -> Result<Lookup, Reject> {
    match (root, key) {
        // ngx.req.get_headers()' metatable lowercases and turns `_` into `-` on every lookup.
        ("headers", Key::Str(k)) => Ok(Lookup::Header(k.to_ascii_lowercase().replace('_', "-"))),
        ("query_params", Key::Str(k)) => Ok(Lookup::Query(k.to_owned())),
        ("uri_captures", Key::Str(k)) => Ok(Lookup::UriCaptureName(k.to_owned())),
        ("uri_captures", Key::Int(i)) => Ok(Lookup::UriCaptureIndex(i)),
        _ => Err(Reject::Unsupported),
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn lex(src: &str) -> Result<Vec<Tok<'_>>, Reject> {
    let b = src.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if is_space(c) {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            toks.push(Tok::Name(&src[start..i]));
        } else if c.is_ascii_digit() {
            // Lua reads a numeral as the longest run of these; only plain integers are keys.
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.') {
                i += 1;
            }
            let n = src[start..i]
                .parse::<usize>()
                .map_err(|_| Reject::Unsupported)?;
            toks.push(Tok::Int(n));
        } else if c == b'\'' || c == b'"' {
            let (s, next) = short_string(b, i)?;
            toks.push(Tok::Str(s));
            i = next;
        } else if c == b'[' {
            match long_bracket(b, i)? {
                Some((s, next)) => {
                    toks.push(Tok::Str(s));
                    i = next;
                }
                None => {
                    toks.push(Tok::Open);
                    i += 1;
                }
            }
        } else if c == b']' {
            toks.push(Tok::Close);
            i += 1;
        } else if c == b'.' {
            // `..` (concatenation) and `.5` are Lua, but not ours.
            if b.get(i + 1)
                .is_some_and(|n| *n == b'.' || n.is_ascii_digit())
            {
                return Err(Reject::Unsupported);
            }
            toks.push(Tok::Dot);
            i += 1;
        } else {
            return Err(Reject::Unsupported);
        }
    }
    Ok(toks)
}

fn utf8(bytes: Vec<u8>) -> Result<String, Reject> {
    String::from_utf8(bytes).map_err(|_| Reject::BadString("the string is not valid UTF-8"))
}

/// Skips one Lua line break (`\n`, `\r`, `\r\n` or `\n\r`) at `i`; returns the next index.
fn skip_newline(b: &[u8], i: usize) -> usize {
    match (b[i], b.get(i + 1)) {
        (b'\n', Some(b'\r')) | (b'\r', Some(b'\n')) => i + 2,
        _ => i + 1,
    }
}

/// Reads a `'…'` or `"…"` literal starting at `start`; returns it and the index after it.
fn short_string(b: &[u8], start: usize) -> Result<(String, usize), Reject> {
    const UNFINISHED: Reject = Reject::BadString("unfinished string");
    const BAD_ESCAPE: Reject = Reject::BadString("invalid escape sequence");
    let quote = b[start];
    let mut out = Vec::new();
    let mut i = start + 1;
    loop {
        let Some(&c) = b.get(i) else {
            return Err(UNFINISHED);
        };
        match c {
            b'\n' | b'\r' => return Err(UNFINISHED),
            _ if c == quote => return Ok((utf8(out)?, i + 1)),
            b'\\' => {
                i += 1;
                let Some(&e) = b.get(i) else {
                    return Err(UNFINISHED);
                };
                i += 1;
                match e {
                    b'a' => out.push(0x07),
                    b'b' => out.push(0x08),
                    b'f' => out.push(0x0c),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'v' => out.push(0x0b),
                    b'\\' | b'\'' | b'"' => out.push(e),
                    b'\n' | b'\r' => {
                        out.push(b'\n');
                        i = skip_newline(b, i - 1);
                    }
                    b'x' => {
                        let hex = b.get(i..i + 2).ok_or(BAD_ESCAPE)?;
                        let hex = std::str::from_utf8(hex).map_err(|_| BAD_ESCAPE)?;
                        out.push(u8::from_str_radix(hex, 16).map_err(|_| BAD_ESCAPE)?);
                        i += 2;
                    }
                    b'z' => {
                        while b.get(i).is_some_and(|c| is_space(*c)) {
                            i += 1;
                        }
                    }
                    b'u' => {
                        if b.get(i) != Some(&b'{') {
                            return Err(BAD_ESCAPE);
                        }
                        let close = b[i..].iter().position(|c| *c == b'}').ok_or(BAD_ESCAPE)?;
                        let hex =
                            std::str::from_utf8(&b[i + 1..i + close]).map_err(|_| BAD_ESCAPE)?;
                        let cp = u32::from_str_radix(hex, 16).map_err(|_| BAD_ESCAPE)?;
                        if hex.starts_with('+') || cp >= 0x11_0000 {
                            return Err(BAD_ESCAPE);
                        }
                        let ch = char::from_u32(cp)
                            .ok_or(Reject::BadString("the string is not valid UTF-8"))?;
                        out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                        i += close + 1;
                    }
                    b'0'..=b'9' => {
                        let mut v = u32::from(e - b'0');
                        for _ in 0..2 {
                            match b.get(i) {
                                Some(d) if d.is_ascii_digit() => {
                                    v = v * 10 + u32::from(d - b'0');
                                    i += 1;
                                }
                                _ => break,
                            }
                        }
                        out.push(u8::try_from(v).map_err(|_| BAD_ESCAPE)?);
                    }
                    _ => return Err(BAD_ESCAPE),
                }
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
}

/// At a `[`: reads a long-bracket string (`[[…]]`, `[==[…]==]`) if one starts here.
fn long_bracket(b: &[u8], start: usize) -> Result<Option<(String, usize)>, Reject> {
    let level = b[start + 1..].iter().take_while(|c| **c == b'=').count();
    match b.get(start + 1 + level) {
        Some(b'[') => {}
        _ if level > 0 => return Err(Reject::BadString("invalid long string delimiter")),
        _ => return Ok(None),
    }
    let mut i = start + level + 2;
    // Lua drops a line break right after the opening bracket.
    if matches!(b.get(i), Some(b'\n' | b'\r')) {
        i = skip_newline(b, i);
    }
    let mut out = Vec::new();
    while i < b.len() {
        match b[i] {
            b']' if b[i + 1..].iter().take(level).all(|c| *c == b'=')
                && b.get(i + 1 + level) == Some(&b']') =>
            {
                return Ok(Some((utf8(out)?, i + level + 2)));
            }
            b'\n' | b'\r' => {
                out.push(b'\n');
                i = skip_newline(b, i);
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Err(Reject::BadString("unfinished long string"))
}
