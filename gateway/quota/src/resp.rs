//! The part of Redis's wire format (RESP2) the counting pipe speaks: commands as arrays of
//! bulk strings, and replies parsed from a buffer as they arrive.
//!
//! Written here rather than taken from the redis crate because it sits on the measured hot
//! path of realtime counting: the crate's streaming parser and its codec cost more than the
//! few integer replies a count needs (see `pipe`).

use std::fmt;
use std::sync::LazyLock;

use memchr::memmem::Finder;

/// The longest reply taken; a longer one (nothing the pipe sends asks for one) is a
/// protocol error rather than memory spent on it.
pub const MAX_REPLY: usize = 1 << 20;

/// How deep arrays may nest in a reply.
const MAX_DEPTH: usize = 4;

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Status(String),
    /// `-ERR ...`: the server refused the command.
    Error(String),
    /// `:42`.
    Int(i64),
    /// `$3\r\nabc`; `None` for `$-1`.
    Bulk(Option<Vec<u8>>),
    /// `*2 ...`; `None` for `*-1`.
    Array(Option<Vec<Reply>>),
}

/// Bytes that are not a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redis protocol error: {}", self.0)
    }
}

/// Appends one command: `args` as an array of bulk strings.
pub fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    array(out, args.len());
    for arg in args {
        bulk(out, &[arg]);
    }
}

/// Appends the start of a command of `n` arguments; [`bulk`] appends each.
pub fn array(out: &mut Vec<u8>, n: usize) {
    header(out, b'*', n);
}

/// Appends one argument: `parts` joined.
pub fn bulk(out: &mut Vec<u8>, parts: &[&[u8]]) {
    header(out, b'$', parts.iter().map(|p| p.len()).sum());
    for part in parts {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(b"\r\n");
}

fn header(out: &mut Vec<u8>, kind: u8, n: usize) {
    out.push(kind);
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The first reply in `buf` and the bytes it took; `None` while it is incomplete.
#[cfg(test)]
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, ProtocolError> {
    let mut at = 0;
    let reply = Parser::default().next(buf, &mut at)?;
    Ok(reply.map(|reply| (reply, at)))
}

/// The end of a line, its searcher built once: `memmem::find` builds one per call, which
/// perf put at about 50 ns a request on a worker counting with sync_rate.
static CRLF: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\r\n"));

/// A reply parser that keeps its place. The elements of an array taken so far stay taken
/// while the rest is on its way, and a cut line is searched for its end only in the bytes
/// that came since, so a reply that arrives in many reads is parsed once, not once a read:
/// that was quadratic in its length, up to [`MAX_REPLY`] squared for a hostile server.
#[derive(Default)]
pub struct Parser {
    /// The arrays open at the current element: how many items each still lacks, and those
    /// it has.
    open: Vec<(usize, Vec<Reply>)>,
    /// Bytes of the current reply taken so far.
    taken: usize,
    /// How much of a cut line was searched for its end already.
    scanned: usize,
}

/// One element of a reply: whole, or the start of an array whose items follow.
enum Element {
    Whole(Reply),
    Open(usize),
}

impl Parser {
    /// The next reply, from `buf` at `at`, which moves past every element taken (also
    /// while the reply is incomplete: what it took is kept here). `None` until it is whole.
    pub fn next(&mut self, buf: &[u8], at: &mut usize) -> Result<Option<Reply>, ProtocolError> {
        loop {
            let Some((element, used)) = self.element(&buf[*at..])? else {
                return Ok(None);
            };
            *at += used;
            self.scanned = 0;
            self.taken += used;
            if self.taken > MAX_REPLY {
                return Err(ProtocolError(format!(
                    "a reply longer than {MAX_REPLY} bytes"
                )));
            }
            let mut value = match element {
                Element::Whole(reply) => reply,
                Element::Open(_) if self.open.len() >= MAX_DEPTH => {
                    return Err(ProtocolError("arrays nested too deep".into()));
                }
                Element::Open(count) => {
                    self.open.push((count, Vec::with_capacity(count.min(64))));
                    continue;
                }
            };
            loop {
                let Some((left, items)) = self.open.last_mut() else {
                    self.taken = 0;
                    return Ok(Some(value));
                };
                items.push(value);
                *left -= 1;
                if *left > 0 {
                    break;
                }
                let (_, items) = self.open.pop().expect("an open array");
                value = Reply::Array(Some(items));
            }
        }
    }

    /// The element at the start of `buf` and the bytes it took; `None` while it is cut.
    fn element(&mut self, buf: &[u8]) -> Result<Option<(Element, usize)>, ProtocolError> {
        // The CR of a CRLF cut in two is the last byte searched.
        let from = self.scanned.saturating_sub(1);
        let Some(end) = CRLF.find(&buf[from..]).map(|i| from + i) else {
            if buf.len() > MAX_REPLY {
                return Err(ProtocolError("a line without its end".into()));
            }
            self.scanned = buf.len();
            return Ok(None);
        };
        let Some((&kind, line)) = buf[..end].split_first() else {
            return Err(ProtocolError("an empty line".into()));
        };
        let after = end + 2;
        let text = || String::from_utf8_lossy(line).into_owned();
        let whole = |reply| Ok(Some((Element::Whole(reply), after)));
        match kind {
            b'+' => whole(Reply::Status(text())),
            b'-' => whole(Reply::Error(text())),
            b':' => whole(Reply::Int(number(line)?)),
            b'$' => {
                let len = number(line)?;
                if len < 0 {
                    return whole(Reply::Bulk(None));
                }
                let len = length(len)?;
                if buf.len() < after + len + 2 {
                    return Ok(None);
                }
                if &buf[after + len..after + len + 2] != b"\r\n" {
                    return Err(ProtocolError("a bulk string longer than its length".into()));
                }
                let data = buf[after..after + len].to_vec();
                Ok(Some((
                    Element::Whole(Reply::Bulk(Some(data))),
                    after + len + 2,
                )))
            }
            b'*' => match number(line)? {
                count if count < 0 => whole(Reply::Array(None)),
                0 => whole(Reply::Array(Some(Vec::new()))),
                count => Ok(Some((Element::Open(length(count)?), after))),
            },
            other => Err(ProtocolError(format!(
                "a reply starting with byte {other:#04x}"
            ))),
        }
    }
}

fn number(line: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            ProtocolError(format!(
                "{:?} is not a number",
                String::from_utf8_lossy(line)
            ))
        })
}

fn length(n: i64) -> Result<usize, ProtocolError> {
    usize::try_from(n)
        .ok()
        .filter(|&n| n <= MAX_REPLY)
        .ok_or_else(|| ProtocolError(format!("a length of {n}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        command(&mut out, &[b"EXPIRE", b"k:1", b"60", b"NX"]);
        assert_eq!(
            out,
            b"*4\r\n$6\r\nEXPIRE\r\n$3\r\nk:1\r\n$2\r\n60\r\n$2\r\nNX\r\n"
        );
        out.clear();
        array(&mut out, 2);
        bulk(&mut out, &[b"GET"]);
        bulk(&mut out, &[b"k", b":", b"12"]);
        assert_eq!(out, b"*2\r\n$3\r\nGET\r\n$4\r\nk:12\r\n");
    }

    #[test]
    fn every_reply_kind_parses_with_the_bytes_it_took() {
        let cases: &[(&[u8], Reply)] = &[
            (b"+OK\r\n", Reply::Status("OK".into())),
            (
                b"-NOSCRIPT No matching script\r\n",
                Reply::Error("NOSCRIPT No matching script".into()),
            ),
            (b":-7\r\n", Reply::Int(-7)),
            (b"$3\r\na\r\n\r\n", Reply::Bulk(Some(b"a\r\n".to_vec()))),
            (b"$-1\r\n", Reply::Bulk(None)),
            (b"*-1\r\n", Reply::Array(None)),
            (
                b"*2\r\n:0\r\n*1\r\n$0\r\n\r\n",
                Reply::Array(Some(vec![
                    Reply::Int(0),
                    Reply::Array(Some(vec![Reply::Bulk(Some(Vec::new()))])),
                ])),
            ),
        ];
        for (wire, want) in cases {
            let mut buf = wire.to_vec();
            buf.extend_from_slice(b":1\r\n");
            let (reply, used) = parse(&buf).expect("valid").expect("complete");
            assert_eq!(&reply, want, "{:?}", String::from_utf8_lossy(wire));
            assert_eq!(used, wire.len());
        }
    }

    #[test]
    fn a_reply_cut_anywhere_waits_for_the_rest() {
        let wire = b"*3\r\n:1\r\n$5\r\nhello\r\n+OK\r\n";
        for cut in 0..wire.len() {
            assert_eq!(parse(&wire[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(parse(wire).expect("valid").is_some());
    }

    /// A reply fed a few bytes at a time is taken element by element as they come: the
    /// place moves on before the reply is whole, and the reply is the one parsed at once.
    #[test]
    fn a_reply_arriving_in_pieces_is_parsed_once() {
        let mut wire = b"*3\r\n*2\r\n:1\r\n$5\r\nhel\r\n\r\n*0\r\n*2000\r\n".to_vec();
        for n in 0..2000 {
            wire.extend_from_slice(format!(":{n}\r\n").as_bytes());
        }
        wire.extend_from_slice(b"+next\r\n");
        let whole = parse(&wire).expect("valid").expect("complete").0;
        let mut parser = Parser::default();
        let mut at = 0;
        let mut replies = Vec::new();
        let mut moved_while_incomplete = false;
        for end in 1..=wire.len() {
            let before = at;
            while let Some(reply) = parser.next(&wire[..end], &mut at).expect("valid") {
                replies.push(reply);
            }
            moved_while_incomplete |= replies.is_empty() && at > before;
            assert!(at <= end);
        }
        assert!(moved_while_incomplete, "elements taken as they came");
        assert_eq!(at, wire.len());
        assert_eq!(replies, [whole, Reply::Status("next".into())]);
    }

    /// A reply's size is bounded as a whole, not only each string's.
    #[test]
    fn a_reply_past_the_bound_is_a_protocol_error() {
        let big = vec![b'x'; MAX_REPLY / 2 + 1];
        let mut wire = b"*2\r\n".to_vec();
        for _ in 0..2 {
            wire.extend_from_slice(format!("${}\r\n", big.len()).as_bytes());
            wire.extend_from_slice(&big);
            wire.extend_from_slice(b"\r\n");
        }
        let err = parse(&wire).expect_err("too long");
        assert!(err.0.contains("longer than"), "{err}");
    }

    #[test]
    fn garbage_is_a_protocol_error_not_a_panic() {
        for wire in [
            &b"?\r\n"[..],
            b"\r\n",
            b":12x\r\n",
            b"$5\r\nhello!!\r\n",
            b"$99999999999\r\n",
            b"*-2x\r\n",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
        ] {
            assert!(parse(wire).is_err(), "{:?}", String::from_utf8_lossy(wire));
        }
        let endless = vec![b'+'; MAX_REPLY + 1];
        assert!(parse(&endless).is_err());
    }
}
