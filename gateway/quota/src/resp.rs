//! The part of Redis's wire format (RESP2) the counting pipe speaks: commands as arrays of
//! bulk strings, and replies read from a buffer once a whole one is there.
//!
//! Written here rather than taken from the redis crate because it sits on the measured hot
//! path of realtime counting: the crate's streaming parser and its codec cost more than the
//! few integer replies a count needs (see `pipe`).

use std::fmt;

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
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, ProtocolError> {
    parse_at(buf, 0)
}

fn parse_at(buf: &[u8], depth: usize) -> Result<Option<(Reply, usize)>, ProtocolError> {
    let Some(end) = memchr::memmem::find(buf, b"\r\n") else {
        if buf.len() > MAX_REPLY {
            return Err(ProtocolError("a line without its end".into()));
        }
        return Ok(None);
    };
    let Some((&kind, line)) = buf[..end].split_first() else {
        return Err(ProtocolError("an empty line".into()));
    };
    let after = end + 2;
    let text = || String::from_utf8_lossy(line).into_owned();
    match kind {
        b'+' => Ok(Some((Reply::Status(text()), after))),
        b'-' => Ok(Some((Reply::Error(text()), after))),
        b':' => Ok(Some((Reply::Int(number(line)?), after))),
        b'$' => {
            let len = number(line)?;
            if len < 0 {
                return Ok(Some((Reply::Bulk(None), after)));
            }
            let len = length(len)?;
            if buf.len() < after + len + 2 {
                return Ok(None);
            }
            if &buf[after + len..after + len + 2] != b"\r\n" {
                return Err(ProtocolError("a bulk string longer than its length".into()));
            }
            let data = buf[after..after + len].to_vec();
            Ok(Some((Reply::Bulk(Some(data)), after + len + 2)))
        }
        b'*' => {
            let count = number(line)?;
            if count < 0 {
                return Ok(Some((Reply::Array(None), after)));
            }
            if depth >= MAX_DEPTH {
                return Err(ProtocolError("arrays nested too deep".into()));
            }
            let count = length(count)?;
            let mut items = Vec::with_capacity(count.min(64));
            let mut at = after;
            for _ in 0..count {
                match parse_at(&buf[at..], depth + 1)? {
                    Some((item, used)) => {
                        items.push(item);
                        at += used;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Reply::Array(Some(items)), at)))
        }
        other => Err(ProtocolError(format!(
            "a reply starting with byte {other:#04x}"
        ))),
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
