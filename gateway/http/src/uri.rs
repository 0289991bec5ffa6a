//! Request-path normalization and upstream escaping, as Kong's `kong.tools.uri` does them.
//!
//! Kong matches routes against a normalized path: percent-triplets are decoded unless they
//! encode an RFC 3986 *reserved* character (those stay encoded, with upper-case hex), then
//! `.`/`..` segments are resolved and `//` runs are merged. Decoding "other" characters too
//! (space, non-ASCII) is deliberate in Kong: the forwarded path is re-escaped by [`escape_into`].

/// RFC 3986 reserved characters plus `%`; their triplets are never decoded.
const RESERVED: &[u8] = b"!*'();:@&=+$,/?%#[]";

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes percent-triplets of non-reserved characters; reserved ones are kept, upper-cased.
fn percent_decode(raw: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' && i + 2 < raw.len() {
            if let (Some(h), Some(l)) = (hex_val(raw[i + 1]), hex_val(raw[i + 2])) {
                let num = h * 16 + l;
                if RESERVED.contains(&num) {
                    out.push(b'%');
                    out.push(raw[i + 1].to_ascii_uppercase());
                    out.push(raw[i + 2].to_ascii_uppercase());
                } else {
                    out.push(num);
                }
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
}

/// Resolves dot segments and merges slashes, following Kong's segment-stack algorithm
/// (which differs from RFC 3986 5.2.4 in small ways, e.g. `/a/..` keeps a trailing `/`).
fn remove_dot_segments(input: &[u8], out: &mut Vec<u8>, starts: &mut Vec<usize>) {
    out.clear();
    starts.clear();
    let pop = |out: &mut Vec<u8>, starts: &mut Vec<usize>| {
        if let Some(s) = starts.pop() {
            out.truncate(s);
        }
    };
    let mut i = 0;
    while i < input.len() {
        let rest = &input[i..];
        match rest {
            b"/." => {
                starts.push(out.len());
                out.push(b'/');
                return;
            }
            b"/.." => {
                pop(out, starts);
                starts.push(out.len());
                out.push(b'/');
                return;
            }
            b"." | b".." => return,
            _ => {}
        }
        if rest.starts_with(b"../") {
            i += 3;
        } else if rest.starts_with(b"./") || rest.starts_with(b"/./") {
            i += 2;
        } else if rest.starts_with(b"/../") {
            i += 3;
            pop(out, starts);
        } else if rest.starts_with(b"//") {
            i += 1;
        } else {
            let seg_len = rest[1..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(rest.len(), |p| p + 1);
            starts.push(out.len());
            out.extend_from_slice(&rest[..seg_len]);
            i += seg_len;
        }
    }
}

/// Reusable buffers for [`normalize`]; part of the router's per-connection scratch.
#[derive(Debug, Default)]
pub struct NormalizeBufs {
    decoded: Vec<u8>,
    resolved: Vec<u8>,
    starts: Vec<usize>,
}

impl NormalizeBufs {
    /// Buffers sized for paths of about `bytes` bytes.
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            decoded: Vec::with_capacity(bytes),
            resolved: Vec::with_capacity(bytes),
            starts: Vec::with_capacity(32),
        }
    }
}

/// Normalizes `raw` (a path without query) into `out`, as Kong's `normalize(uri, true)`.
///
/// Returns false, leaving `out` empty, when decoding produced invalid UTF-8: Kong's ATC
/// router rejects such paths, so the request matches no route.
pub fn normalize(raw: &str, bufs: &mut NormalizeBufs, out: &mut String) -> bool {
    out.clear();
    if raw.is_empty() || raw == "/" {
        out.push_str(raw);
        return true;
    }
    let bytes = raw.as_bytes();
    let decoded: &[u8] = if bytes.contains(&b'%') {
        percent_decode(bytes, &mut bufs.decoded);
        &bufs.decoded
    } else {
        bytes
    };
    let needs_resolve = decoded.contains(&b'.') || decoded.windows(2).any(|w| w == b"//");
    let result: &[u8] = if needs_resolve {
        remove_dot_segments(decoded, &mut bufs.resolved, &mut bufs.starts);
        &bufs.resolved
    } else {
        decoded
    };
    match std::str::from_utf8(result) {
        Ok(s) => {
            out.push_str(s);
            true
        }
        Err(_) => false,
    }
}

/// True for bytes Kong forwards unescaped (`kong.tools.uri.escape`'s allowed set).
fn is_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$&'()*+,/:;=?@[]-_.~%".contains(&b)
}

/// Appends `s` to `out`, percent-escaping (upper-case hex) every byte Kong considers unsafe.
pub fn escape_into(s: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s {
        if is_safe(b) {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

/// A plain route path as Kong's schema normalizes it (`normalize(path, true)`); `None` when it
/// decodes to invalid UTF-8.
pub fn normalized_route_path(path: &str) -> Option<String> {
    let mut out = String::new();
    normalize(
        path,
        &mut NormalizeBufs::with_capacity(path.len()),
        &mut out,
    )
    .then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> Option<String> {
        let mut bufs = NormalizeBufs::default();
        let mut out = String::new();
        normalize(raw, &mut bufs, &mut out).then_some(out)
    }

    #[test]
    fn decodes_unreserved_and_others_but_keeps_reserved_upper_cased() {
        assert_eq!(norm("/reg%65x/%7e").as_deref(), Some("/regex/~"));
        assert_eq!(norm("/a%20b").as_deref(), Some("/a b"));
        assert_eq!(norm("/endel%2fst").as_deref(), Some("/endel%2Fst"));
        assert_eq!(norm("/x%3a%25").as_deref(), Some("/x%3A%25"));
        assert_eq!(norm("/bad%zz%4").as_deref(), Some("/bad%zz%4"));
        assert_eq!(norm("/caf%C3%A9").as_deref(), Some("/café"));
    }

    #[test]
    fn resolves_dots_and_merges_slashes() {
        let cases = [
            ("", ""),
            ("/", "/"),
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/../a", "/a"),
            ("/..", "/"),
            ("//a///b//", "/a/b/"),
            ("/route./req", "/route./req"),
            ("/route%2E/req", "/route./req"),
            ("/route%2e%2E/req", "/route../req"),
            ("/a/%2e%2e/b", "/b"),
            ("/a/b/../../../c", "/c"),
            ("a/./b", "a/b"),
            ("./a", "a"),
        ];
        for (raw, want) in cases {
            assert_eq!(norm(raw).as_deref(), Some(want), "normalize({raw:?})");
        }
    }

    #[test]
    fn invalid_utf8_after_decoding_is_rejected() {
        assert_eq!(norm("/%FC%80"), None);
    }

    #[test]
    fn escapes_like_kong() {
        let mut out = Vec::new();
        escape_into("/a b/é/%2F/[x]?\\\"{}|^`<>".as_bytes(), &mut out);
        assert_eq!(
            String::from_utf8(out).expect("ascii"),
            "/a%20b/%C3%A9/%2F/[x]?%5C%22%7B%7D%7C%5E%60%3C%3E"
        );
    }
}
