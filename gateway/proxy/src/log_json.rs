//! JSON text for the log entry, written straight into its buffer: building a JSON tree per
//! logged request (a map and a string per header, then serializing it) was most of what a
//! log plugin cost a worker.

use gangway_pipeline::edits::QueryItem;

/// An object being written: members are added in order, and `close` ends it.
pub(crate) struct Object<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> Object<'a> {
    /// Opens an object at the end of `out`.
    pub fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Object { out, empty: true }
    }

    /// Continues an object whose text (`{` and at least one member, without its `}`) is
    /// already in `out`.
    pub fn resume(out: &'a mut Vec<u8>) -> Self {
        Object { out, empty: false }
    }

    /// Starts member `name`: its value is to be written to the buffer returned.
    pub fn key(&mut self, name: &str) -> &mut Vec<u8> {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        push_str(self.out, name.as_bytes());
        self.out.push(b':');
        self.out
    }

    /// A string member (`value` read as UTF-8, invalid sequences replaced).
    pub fn str(&mut self, name: &str, value: &[u8]) {
        push_str(self.key(name), value);
    }

    /// A number member.
    pub fn u64(&mut self, name: &str, value: u64) {
        push_u64(self.key(name), value);
    }

    /// Ends the object.
    pub fn close(self) {
        self.out.push(b'}');
    }
}

/// Writes `bytes` as a JSON string: as `String::from_utf8_lossy` reads them, escaped as
/// serde_json escapes.
pub(crate) fn push_str(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    push_fragment(out, bytes);
    out.push(b'"');
}

/// Writes `bytes` as the inside of a JSON string (no quotes).
pub(crate) fn push_fragment(out: &mut Vec<u8>, bytes: &[u8]) {
    let plain = plain_prefix(bytes);
    out.extend_from_slice(&bytes[..plain]);
    let rest = &bytes[plain..];
    if rest.is_empty() {
        return;
    }
    if let Ok(text) = std::str::from_utf8(rest) {
        return push_escaped(out, text.as_bytes());
    }
    for chunk in rest.utf8_chunks() {
        push_escaped(out, chunk.valid().as_bytes());
        if !chunk.invalid().is_empty() {
            out.extend_from_slice(
                char::REPLACEMENT_CHARACTER
                    .encode_utf8(&mut [0; 4])
                    .as_bytes(),
            );
        }
    }
}

/// How many leading bytes are ASCII with nothing to escape (most header values are all
/// of them), looked at eight at a time.
fn plain_prefix(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let any_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let mut at = 0;
    while let Some(word) = bytes.get(at..at + 8) {
        let v = u64::from_ne_bytes(word.try_into().expect("eight bytes"));
        // A byte below 0x20, a quote, a backslash, or a byte with its high bit set.
        let attention = (v.wrapping_sub(ONES * 0x20) & !v & HIGH)
            | any_zero(v ^ (ONES * u64::from(b'"')))
            | any_zero(v ^ (ONES * u64::from(b'\\')))
            | (v & HIGH);
        if attention != 0 {
            break;
        }
        at += 8;
    }
    at + bytes[at..]
        .iter()
        .take_while(|&&b| b.is_ascii() && !ESCAPED[usize::from(b)])
        .count()
}

/// Writes `name` lower-cased (ASCII) as a JSON string. Lower-casing the escaped text is
/// the same: escapes are lower-case already, and non-ASCII bytes are left alone.
fn push_lower(out: &mut Vec<u8>, name: &[u8]) {
    let start = out.len();
    push_str(out, name);
    out[start..].make_ascii_lowercase();
}

/// Writes a number.
pub(crate) fn push_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// The bytes JSON strings escape: quote, backslash and control characters.
const ESCAPED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// Escapes valid UTF-8 as serde_json does.
fn push_escaped(out: &mut Vec<u8>, text: &[u8]) {
    let mut rest = text;
    while let Some(at) = rest.iter().position(|&b| ESCAPED[usize::from(b)]) {
        out.extend_from_slice(&rest[..at]);
        let b = rest[at];
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(rest);
}

/// Writes `items` as one object, the way Kong's header and query tables serialize: in the
/// order keys first appear, a key given more than once (by `same_key`) holding the array of
/// its values in place of its first.
fn push_grouped<T>(
    out: &mut Vec<u8>,
    items: &[T],
    same_key: impl Fn(&T, &T) -> bool,
    key: impl Fn(&mut Vec<u8>, &T),
    value: impl Fn(&mut Vec<u8>, &T),
) {
    out.push(b'{');
    let mut empty = true;
    for (i, item) in items.iter().enumerate() {
        if items[..i].iter().any(|earlier| same_key(earlier, item)) {
            continue;
        }
        if !empty {
            out.push(b',');
        }
        empty = false;
        key(out, item);
        out.push(b':');
        let mut repeats = items[i + 1..].iter().filter(|later| same_key(later, item));
        match repeats.next() {
            None => value(out, item),
            Some(second) => {
                out.push(b'[');
                value(out, item);
                out.push(b',');
                value(out, second);
                for later in repeats {
                    out.push(b',');
                    value(out, later);
                }
                out.push(b']');
            }
        }
    }
    out.push(b'}');
}

/// A header as the log entry lists it: its name, and its value unless it is a secret.
pub(crate) type HeaderItem<'a> = (&'a [u8], &'a [u8]);

/// Writes Kong's header table: names lower-cased, repeated names as arrays, and the
/// `Authorization` and `Proxy-Authorization` values replaced by `REDACTED` (one string,
/// however many were sent).
pub(crate) fn push_headers(out: &mut Vec<u8>, headers: &[HeaderItem<'_>]) {
    push_grouped(
        out,
        headers,
        |a, b| a.0.eq_ignore_ascii_case(b.0),
        |out, h| push_lower(out, h.0),
        |out, h| push_str(out, h.1),
    );
}

/// Kong redacts these request headers in the log entry.
fn is_secret(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"authorization") || name.eq_ignore_ascii_case(b"proxy-authorization")
}

/// Adds `(name, value)` to a request's header list, a secret once and as `REDACTED`.
pub(crate) fn add_header<'a>(headers: &mut Vec<HeaderItem<'a>>, name: &'a [u8], value: &'a [u8]) {
    if !is_secret(name) {
        headers.push((name, value));
    } else if !headers.iter().any(|h| h.0.eq_ignore_ascii_case(name)) {
        headers.push((name, b"REDACTED"));
    }
}

/// Writes Kong's `querystring` table (a flag, `None`, is `true`).
pub(crate) fn push_query(out: &mut Vec<u8>, args: &[QueryItem<'_>]) {
    push_grouped(
        out,
        args,
        |a, b| a.0 == b.0,
        |out, a| push_str(out, a.0.as_bytes()),
        |out, a| match &a.1 {
            Some(v) => push_str(out, v.as_bytes()),
            None => out.extend_from_slice(b"true"),
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn parsed(out: &[u8]) -> Value {
        serde_json::from_slice(out).expect("valid JSON")
    }

    #[test]
    fn strings_escape_as_serde_json_does_and_invalid_utf8_is_replaced() {
        let samples: [&[u8]; 6] = [
            b"plain",
            b"quote \" and back\\slash",
            b"lines\n\r\ttab \x08\x0c and \x01\x1f",
            "caf\u{e9} \u{1f600}".as_bytes(),
            b"bad \xff\xfe bytes \xe2\x82",
            b"",
        ];
        let every_ascii: Vec<u8> = (0..=0x7f).collect();
        let long_and_mixed = [
            b"a plain run longer than eight bytes \"then a quote\" and more".as_slice(),
            "eight+ bytes then caf\u{e9} and \\ then \x07".as_bytes(),
            b"0123456789abcdef\xff0123456789abcdef",
        ];
        for sample in samples
            .into_iter()
            .chain([every_ascii.as_slice()])
            .chain(long_and_mixed)
        {
            let mut ours = Vec::new();
            push_str(&mut ours, sample);
            let theirs = serde_json::to_vec(&String::from_utf8_lossy(sample)).expect("serialize");
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&theirs)
            );
        }
    }

    #[test]
    fn any_byte_anywhere_in_a_run_is_seen() {
        for b in 0..=255u8 {
            for at in 0..17 {
                let mut sample = *b"abcdefghijklmnopq";
                sample[at] = b;
                let mut ours = Vec::new();
                push_str(&mut ours, &sample);
                let theirs =
                    serde_json::to_vec(&String::from_utf8_lossy(&sample)).expect("serialize");
                assert_eq!(ours, theirs, "byte {b:#x} at {at}");
            }
        }
    }

    #[test]
    fn names_are_lower_cased_short_or_long() {
        let long = "X-".repeat(50);
        for name in ["Content-Type", "x-already-lower", long.as_str()] {
            let mut out = Vec::new();
            push_lower(&mut out, name.as_bytes());
            assert_eq!(parsed(&out), json!(name.to_ascii_lowercase()));
        }
    }

    #[test]
    fn repeated_headers_become_one_array_where_the_first_was() {
        let mut headers = Vec::new();
        for (name, value) in [
            ("Host", "a.test"),
            ("X-Twice", "1"),
            ("Accept", "*/*"),
            ("x-twice", "2"),
            ("X-TWICE", "3"),
            ("Authorization", "Basic c2VjcmV0"),
            ("authorization", "Bearer other"),
            ("Proxy-Authorization", "x"),
        ] {
            add_header(&mut headers, name.as_bytes(), value.as_bytes());
        }
        let mut out = Vec::new();
        push_headers(&mut out, &headers);
        let text = String::from_utf8(out).expect("UTF-8");
        assert_eq!(
            text,
            r#"{"host":"a.test","x-twice":["1","2","3"],"accept":"*/*","authorization":"REDACTED","proxy-authorization":"REDACTED"}"#
        );
    }

    #[test]
    fn query_arguments_decode_repeat_and_flag() {
        let args: Vec<QueryItem<'_>> =
            gangway_pipeline::edits::uri_args(b"a=1&flag&&a=2&sp=x%20y+z&empty=", 100).collect();
        let mut out = Vec::new();
        push_query(&mut out, &args);
        assert_eq!(
            parsed(&out),
            json!({"a": ["1", "2"], "flag": true, "sp": "x y z", "empty": ""})
        );
        let mut none = Vec::new();
        let no_args: Vec<QueryItem<'_>> = gangway_pipeline::edits::uri_args(b"", 100).collect();
        push_query(&mut none, &no_args);
        assert_eq!(none, b"{}");
    }

    #[test]
    fn objects_separate_their_members() {
        let mut out = Vec::new();
        let mut object = Object::open(&mut out);
        object.str("s", b"v");
        object.u64("n", 42);
        object.key("nested").extend_from_slice(b"{}");
        object.close();
        assert_eq!(parsed(&out), json!({"s": "v", "n": 42, "nested": {}}));
        let mut empty = Vec::new();
        Object::open(&mut empty).close();
        assert_eq!(empty, b"{}");
    }
}
