//! `multipart/form-data` bodies (RFC 7578) as plugins read them: each part's name and
//! content, located in the body so that a part can be cut out with every other byte kept.

use std::ops::Range;

use super::UnparsableBody;

/// One part of a multipart body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The `name` of its `Content-Disposition`.
    pub name: String,
    /// Its content, as a range of the body.
    pub value: Range<usize>,
    /// The whole part, from its boundary line to the next one's start: what removing it cuts.
    pub whole: Range<usize>,
}

/// A parsed multipart body: the bytes and where each part lies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Multipart {
    /// The body as sent.
    pub body: Vec<u8>,
    /// Its parts, in order.
    pub parts: Vec<Part>,
}

/// The `boundary` parameter of a `multipart/*` Content-Type, unquoted.
pub fn boundary(content_type: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(content_type).ok()?;
    text.split(';').skip(1).find_map(|param| {
        let (key, value) = param.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_owned())
            .filter(|b| !b.is_empty() && b.len() <= 70)
    })
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// The `name` parameter of a part's `Content-Disposition: form-data` header.
fn disposition_name(headers: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(headers);
    let line = text.split("\r\n").find(|l| {
        l.split_once(':')
            .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case("content-disposition"))
    })?;
    let (_, value) = line.split_once(':')?;
    value.split(';').skip(1).find_map(|param| {
        let (key, value) = param.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("name")
            .then(|| value.trim().trim_matches('"').to_owned())
    })
}

/// Parses `body` with `boundary`. A body without a closing delimiter, or a part without a
/// header block, is refused (Kong: 400 `Cannot process request body`).
pub fn parse(boundary: &str, body: &[u8]) -> Result<Multipart, UnparsableBody> {
    let delimiter = format!("--{boundary}").into_bytes();
    let next_delimiter = |from: usize| -> Option<usize> {
        // A delimiter starts the body or follows a CRLF.
        if from == 0 && body.starts_with(&delimiter) {
            return Some(0);
        }
        let mut crlf_delimiter = b"\r\n".to_vec();
        crlf_delimiter.extend_from_slice(&delimiter);
        find(body, &crlf_delimiter, from).map(|p| p + 2)
    };
    let mut parts = Vec::new();
    let mut at = next_delimiter(0).ok_or(UnparsableBody)?;
    loop {
        let after = at + delimiter.len();
        if body.get(after..after + 2) == Some(b"--") {
            break;
        }
        let line_end = find(body, b"\r\n", after).ok_or(UnparsableBody)?;
        let headers_end = find(body, b"\r\n\r\n", line_end).ok_or(UnparsableBody)?;
        let value_start = headers_end + 4;
        let next = next_delimiter(value_start.saturating_sub(2)).ok_or(UnparsableBody)?;
        // The content ends at the CRLF that precedes the next delimiter.
        let value_end = next.checked_sub(2).filter(|&e| e >= value_start);
        let value = value_start..value_end.unwrap_or(value_start);
        // A part with no header lines (`--X\r\n\r\n...`) has an empty block and no name:
        // its blank line is the one that ended the delimiter's.
        let headers = body.get(line_end + 2..headers_end).unwrap_or_default();
        if let Some(name) = disposition_name(headers) {
            parts.push(Part {
                name,
                value,
                whole: at..next,
            });
        }
        at = next;
    }
    Ok(Multipart {
        body: body.to_vec(),
        parts,
    })
}

impl Multipart {
    /// The content of every part named `name`, in order.
    pub fn values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s [u8]> {
        self.parts
            .iter()
            .filter(move |p| p.name == name)
            .map(|p| &self.body[p.value.clone()])
    }

    /// The body without the parts named `name`, every other byte as sent; `None` when no
    /// part has that name.
    pub fn without(&self, name: &str) -> Option<Vec<u8>> {
        if !self.parts.iter().any(|p| p.name == name) {
            return None;
        }
        let mut out = Vec::with_capacity(self.body.len());
        let mut kept_from = 0;
        for part in self.parts.iter().filter(|p| p.name == name) {
            out.extend_from_slice(&self.body[kept_from..part.whole.start]);
            kept_from = part.whole.end;
        }
        out.extend_from_slice(&self.body[kept_from..]);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\none\r\n--XyZ\r\nContent-Disposition: form-data; name=\"apikey\"\r\n\r\nkong\r\n--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n\x00\x01\r\n\r\n--XyZ--\r\n";

    #[test]
    fn parts_are_found_and_one_is_cut_keeping_the_rest() {
        assert_eq!(
            boundary(b"multipart/form-data; boundary=\"XyZ\""),
            Some("XyZ".into())
        );
        let m = parse("XyZ", BODY).expect("parses");
        let names: Vec<&str> = m.parts.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a", "apikey", "f"]);
        assert_eq!(m.values("apikey").collect::<Vec<_>>(), [b"kong"]);
        assert_eq!(m.values("f").collect::<Vec<_>>(), [b"\x00\x01\r\n"]);
        let cut = m.without("apikey").expect("present");
        let expected: Vec<u8> = [
            &BODY[..m.parts[1].whole.start],
            &BODY[m.parts[1].whole.end..],
        ]
        .concat();
        assert_eq!(cut, expected);
        let again = parse("XyZ", &cut).expect("still valid");
        assert_eq!(again.parts.len(), 2);
        assert_eq!(again.values("f").collect::<Vec<_>>(), [b"\x00\x01\r\n"]);
        assert!(m.without("missing").is_none());
    }

    /// A part with an empty header block used to slice the body backwards and panic, and
    /// the release build aborts on a panic: any route reading multipart bodies (key-auth's
    /// key_in_body, request-termination's echo, aws-lambda) took the process down.
    #[test]
    fn no_body_makes_the_parser_panic() {
        let m = parse("X", b"--X\r\n\r\nv\r\n--X--").expect("parsed");
        assert!(m.parts.is_empty(), "a part without a name is skipped");
        // Every prefix and every one-byte change of a valid body parses or is refused.
        for cut in 0..=BODY.len() {
            let _ = parse("XyZ", &BODY[..cut]);
        }
        for at in 0..BODY.len() {
            for byte in [b'\r', b'\n', b'-', b'"', 0] {
                let mut changed = BODY.to_vec();
                changed[at] = byte;
                let _ = parse("XyZ", &changed);
            }
        }
    }

    #[test]
    fn broken_bodies_are_refused() {
        assert!(parse("XyZ", b"no delimiter at all").is_err());
        assert!(
            parse(
                "XyZ",
                b"--XyZ\r\nContent-Disposition: form-data; name=\"a\""
            )
            .is_err()
        );
        assert!(parse("XyZ", b"--XyZ\r\n\r\nunterminated").is_err());
        assert!(boundary(b"multipart/form-data").is_none());
    }
}
