//! Media types as Kong's `kong.tools.mime_type` parses them (RFC 2045's grammar, strictly:
//! no spaces around `=`, none at the end, no trailing `;`), and proxy-cache's match of a
//! response's `Content-Type` against the configured ones.

/// A parsed media type: lower-cased type and subtype, parameters with lower-cased names
/// (a repeated name keeps its last value, as a Lua table does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaType {
    /// The type, `*` for a wildcard.
    pub kind: String,
    /// The subtype, `*` for a wildcard.
    pub subtype: String,
    /// `(name, value)` pairs, names lower-cased and unique.
    pub params: Vec<(String, String)>,
}

/// RFC 2045 `token` characters: US-ASCII, no controls, no separators.
fn is_token(b: u8) -> bool {
    b.is_ascii() && !b.is_ascii_control() && !b"()<>@,;:\\\"/[]?={} \t".contains(&b)
}

/// The longest token at the start of `s` (may be empty).
fn token(s: &[u8]) -> (&[u8], &[u8]) {
    let n = s.iter().take_while(|&&b| is_token(b)).count();
    s.split_at(n)
}

fn skip_spacing(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    &s[n..]
}

fn lower(s: &[u8]) -> String {
    String::from_utf8_lossy(s).to_ascii_lowercase()
}

/// Kong's `parse_mime_type`; `None` when the value does not follow the grammar.
pub fn parse(value: &[u8]) -> Option<MediaType> {
    let (kind, rest) = token(value);
    let (kind, subtype, mut rest) = match rest.strip_prefix(b"/") {
        Some(after) if !kind.is_empty() => {
            let (subtype, rest) = token(after);
            if subtype.is_empty() {
                return None;
            }
            (lower(kind), lower(subtype), rest)
        }
        // A lone `*` stands for `*/*`.
        _ if value.first() == Some(&b'*') => ("*".to_owned(), "*".to_owned(), &value[1..]),
        _ => return None,
    };
    let mut params: Vec<(String, String)> = Vec::new();
    while !rest.is_empty() {
        let after = skip_spacing(rest).strip_prefix(b";")?;
        let (name, after) = token(skip_spacing(after));
        if name.is_empty() {
            return None;
        }
        let after = after.strip_prefix(b"=")?;
        let (value, after) = match after.strip_prefix(b"\"") {
            Some(quoted) => {
                // A backslash is plain text to Kong's grammar, so `\"` still ends the string.
                let end = quoted
                    .iter()
                    .position(|&b| b == b'"' || b.is_ascii_control())?;
                if quoted[end] != b'"' {
                    return None;
                }
                (&quoted[..end], &quoted[end + 1..])
            }
            None => {
                let (value, after) = token(after);
                if value.is_empty() {
                    return None;
                }
                (value, after)
            }
        };
        let name = lower(name);
        let value = String::from_utf8_lossy(value).into_owned();
        match params.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => params.push((name, value)),
        }
        rest = after;
    }
    Some(MediaType {
        kind,
        subtype,
        params,
    })
}

/// True when a response of media type `actual` (`None`: unparsable) matches the configured
/// `expected` type: type and subtype equal or wildcards, and exactly the same parameters
/// (Kong's "exact match": `application/json` does not match `application/json; charset=utf-8`).
pub fn matches(expected: &MediaType, actual: Option<&MediaType>) -> bool {
    let type_ok = expected.kind == "*" || actual.is_some_and(|a| a.kind == expected.kind);
    let subtype_ok =
        expected.subtype == "*" || actual.is_some_and(|a| a.subtype == expected.subtype);
    if !(type_ok && subtype_ok) {
        return false;
    }
    let params: &[(String, String)] = actual.map_or(&[], |a| &a.params);
    params.len() == expected.params.len()
        && expected
            .params
            .iter()
            .all(|(n, v)| params.iter().any(|(an, av)| an == n && av == v))
}
