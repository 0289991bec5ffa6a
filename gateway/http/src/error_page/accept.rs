//! Kong's `Accept` negotiation for error bodies (`kong/tools/http.lua`, `get_response_type`
//! and `get_mime_type`), reproduced rule for rule without a regex:
//! - the value is split on `,`; each element is trimmed and must start with a media range
//!   `type/subtype`, where each part is `*` or a token of 2+ bytes from
//!   `[a-z0-9][a-z0-9-!#$&^_+.]+` (ASCII case-insensitive), optionally followed by
//!   `;q=` (`1`, `1.`, `1.0`–`1.000`, `0`, `0.`–`0.ddd`) or `;name[=value]` parameters;
//! - the element with the strictly highest q wins (ties: the first); q=0 never wins;
//! - the winner maps to a format by an exact, case-sensitive lookup (`text/html`,
//!   `application/json`, `application/xml`, `text/plain`, `application/grpc`, `text/*`,
//!   `application/*`); anything else, or no usable element, is JSON.

use super::ErrorFormat;

/// Kong's `get_response_type` over the `Accept` values of a request (several `Accept`
/// headers count as one comma-joined value). No values: JSON.
pub fn negotiate_values<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> ErrorFormat {
    let mut best = ErrorFormat::Json;
    let mut max_q = 0u16;
    for value in values {
        for item in value.split(|&b| b == b',') {
            match media_range(trim(item)) {
                Some((media, q)) if q > max_q => {
                    max_q = q;
                    best = mime_format(media);
                }
                _ => {}
            }
        }
    }
    best
}

/// Kong's `get_response_type` for one `Accept` value; `None` (no header): JSON.
pub fn negotiate(accept: Option<&[u8]>) -> ErrorFormat {
    negotiate_values(accept)
}

/// PCRE `\s`.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_space(b)).unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|&b| !is_space(b))
        .map_or(start, |p| p + 1);
    &s[start..end]
}

fn is_token_rest(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-!#$&^_+.".contains(&b)
}

/// Length of `[a-z0-9][a-z0-9-!#$&^_+.]+` at the start of `s`, if it matches.
fn token2(s: &[u8]) -> Option<usize> {
    let first = *s.first()?;
    if !first.is_ascii_alphanumeric() {
        return None;
    }
    let n = 1 + s[1..].iter().take_while(|&&b| is_token_rest(b)).count();
    (n >= 2).then_some(n)
}

/// `token2 | "*"`.
fn range_part(s: &[u8]) -> Option<usize> {
    token2(s).or_else(|| (s.first() == Some(&b'*')).then_some(1))
}

/// The media range of an Accept element and its quality in thousandths (1000 when absent).
fn media_range(item: &[u8]) -> Option<(&[u8], u16)> {
    let type_len = range_part(item)?;
    if item.get(type_len) != Some(&b'/') {
        return None;
    }
    let sub_len = range_part(&item[type_len + 1..])?;
    let media_end = type_len + 1 + sub_len;
    let mut rest = &item[media_end..];
    let mut q = None;
    // Each round is one `\s*;\s*` parameter; the first one that does not parse ends the
    // match (the pattern is not anchored at the end, so trailing junk is ignored).
    loop {
        let after_ws = &rest[rest.iter().take_while(|&&b| is_space(b)).count()..];
        let Some(p) = after_ws.strip_prefix(b";") else {
            break;
        };
        let p = &p[p.iter().take_while(|&&b| is_space(b)).count()..];
        if let Some((val, used)) = q_value(p) {
            q = Some(val);
            rest = &p[used..];
        } else if let Some(n) = token2(p) {
            let tail = &p[n..];
            let used = if tail.first() == Some(&b'=') {
                n + 1 + tail[1..].iter().take_while(|&&b| b != b';').count()
            } else {
                n
            };
            rest = &p[used..];
        } else {
            break;
        }
    }
    Some((&item[..media_end], q.unwrap_or(1000)))
}

/// `q=(1(\.0{0,3})?|0(\.\d{0,3})?)` at the start of `p` (case-insensitive `q`): the value in
/// thousandths and the bytes used.
fn q_value(p: &[u8]) -> Option<(u16, usize)> {
    if p.len() < 3 || !p[0].eq_ignore_ascii_case(&b'q') || p[1] != b'=' {
        return None;
    }
    let int = p[2];
    if int != b'0' && int != b'1' {
        return None;
    }
    let mut used = 3;
    let mut frac = 0u16;
    if p.get(3) == Some(&b'.') {
        used = 4;
        let mut scale = 100;
        for &d in p[4..].iter().take(3) {
            let ok = if int == b'1' {
                d == b'0'
            } else {
                d.is_ascii_digit()
            };
            if !ok {
                break;
            }
            frac += u16::from(d - b'0') * scale;
            scale /= 10;
            used += 1;
        }
    }
    Some((u16::from(int - b'0') * 1000 + frac, used))
}

/// `get_mime_type`: an exact (case-sensitive) lookup of the media range.
fn mime_format(media: &[u8]) -> ErrorFormat {
    match media {
        b"text/html" => ErrorFormat::Html,
        b"application/json" => ErrorFormat::Json,
        b"application/xml" => ErrorFormat::Xml,
        b"text/plain" | b"text/*" => ErrorFormat::Plain,
        b"application/grpc" => ErrorFormat::Grpc,
        _ => ErrorFormat::Json,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(a: &str) -> ErrorFormat {
        negotiate(Some(a.as_bytes()))
    }

    #[test]
    fn plain_media_types() {
        assert_eq!(negotiate(None), ErrorFormat::Json);
        assert_eq!(n("text/html"), ErrorFormat::Html);
        assert_eq!(n("application/xml"), ErrorFormat::Xml);
        assert_eq!(n("text/plain"), ErrorFormat::Plain);
        assert_eq!(n("application/json"), ErrorFormat::Json);
        assert_eq!(n("text/*"), ErrorFormat::Plain);
        assert_eq!(n("application/*"), ErrorFormat::Json);
        assert_eq!(n("*/*"), ErrorFormat::Json);
        assert_eq!(n("image/png"), ErrorFormat::Json);
        assert_eq!(n(""), ErrorFormat::Json);
        assert_eq!(n("garbage"), ErrorFormat::Json);
        assert_eq!(n("application/grpc"), ErrorFormat::Grpc);
    }

    #[test]
    fn lookup_is_case_sensitive_like_kong() {
        // The regex matches case-insensitively but the MIME table lookup is exact.
        assert_eq!(n("TEXT/HTML"), ErrorFormat::Json);
        assert_eq!(n("Text/*"), ErrorFormat::Json);
    }

    #[test]
    fn quality_picks_strictly_highest_first_wins_ties() {
        assert_eq!(
            n("text/html;q=0.5, application/xml;q=0.9"),
            ErrorFormat::Xml
        );
        assert_eq!(n("text/html, application/xml"), ErrorFormat::Html);
        assert_eq!(
            n("text/html;q=0.9, application/xml;q=0.9"),
            ErrorFormat::Html
        );
        assert_eq!(n("text/html;q=0, text/plain;q=0"), ErrorFormat::Json);
        assert_eq!(
            n("text/html ; Q=0.1 , text/plain ;q=0.2"),
            ErrorFormat::Plain
        );
        // Browser default Accept.
        assert_eq!(
            n("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
            ErrorFormat::Html
        );
    }

    #[test]
    fn q_grammar_edges() {
        assert_eq!(q_value(b"q=1"), Some((1000, 3)));
        assert_eq!(q_value(b"q=1."), Some((1000, 4)));
        assert_eq!(q_value(b"q=1.000"), Some((1000, 7)));
        assert_eq!(q_value(b"q=1.5"), Some((1000, 4)));
        assert_eq!(q_value(b"q=0.5678"), Some((567, 7)));
        assert_eq!(q_value(b"q=0"), Some((0, 3)));
        assert_eq!(q_value(b"q=2"), None);
        assert_eq!(q_value(b"q = 1"), None);
        // An unparsable q leaves the element at quality 1.
        assert_eq!(n("text/plain;q=abc, text/html;q=0.9"), ErrorFormat::Plain);
        // Parameters before q are skipped; the last q wins.
        assert_eq!(
            n("text/plain;level=1;q=0.1, text/html;q=0.2"),
            ErrorFormat::Html
        );
        assert_eq!(
            n("text/plain;q=0.1;q=0.9, text/html;q=0.5"),
            ErrorFormat::Plain
        );
    }

    #[test]
    fn media_tokens_need_two_bytes() {
        assert_eq!(n("a/b, text/html;q=0.1"), ErrorFormat::Html);
        assert_eq!(
            media_range(b"text/html garbage"),
            Some((&b"text/html"[..], 1000))
        );
        assert_eq!(media_range(b"/html"), None);
    }

    #[test]
    fn multiple_accept_headers_join() {
        let vals: [&[u8]; 2] = [b"text/plain;q=0.2", b"application/xml;q=0.3"];
        assert_eq!(negotiate_values(vals), ErrorFormat::Xml);
    }
}
