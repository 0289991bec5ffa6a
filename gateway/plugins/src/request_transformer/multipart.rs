//! `multipart/form-data` bodies, the way Kong's `lua-multipart` edits them: parts are found
//! by name (the last part of a repeated name), `set_simple` writes a part with only a
//! `Content-Disposition` header, parts without a name are dropped, and a body left with no
//! part encodes as empty. There is no append for multipart bodies in Kong.

use super::Ops;
use super::env::Rendered;

/// One part: its name, header lines and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Part {
    pub(super) name: String,
    pub(super) headers: Vec<Vec<u8>>,
    pub(super) value: Vec<u8>,
}

/// The `boundary` parameter (`;\s*boundary=(\S+)`, quotes stripped); `None` when missing or
/// empty.
pub(super) fn boundary(content_type: &[u8]) -> Option<Vec<u8>> {
    let lower = content_type.to_ascii_lowercase();
    let mut from = 0;
    while let Some(off) = lower[from..].iter().position(|&b| b == b';') {
        let semi = from + off;
        let rest = &content_type[semi + 1..];
        let ws = rest.iter().take_while(|b| b.is_ascii_whitespace()).count();
        let rest = &rest[ws..];
        if rest.len() >= 9 && rest[..9].eq_ignore_ascii_case(b"boundary=") {
            let value = &rest[9..];
            let end = value
                .iter()
                .position(u8::is_ascii_whitespace)
                .unwrap_or(value.len());
            let mut b = &value[..end];
            if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
                b = &b[1..b.len() - 1];
            }
            return (!b.is_empty()).then(|| b.to_vec());
        }
        from = semi + 1;
    }
    None
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// The `name` of a `Content-Disposition` line.
fn part_name(line: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(line);
    let (field, params) = text.split_once(':')?;
    if !field.trim().eq_ignore_ascii_case("content-disposition") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("name")
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// Parses the parts between `--boundary` lines.
pub(super) fn parse(body: &[u8], boundary: &[u8]) -> Vec<Part> {
    let mut delim = b"--".to_vec();
    delim.extend_from_slice(boundary);
    let mut parts = Vec::new();
    let Some(mut at) = find(body, &delim, 0) else {
        return parts;
    };
    loop {
        let after = at + delim.len();
        if body.get(after..after + 2) == Some(b"--") {
            break;
        }
        let Some(eol) = find(body, b"\n", after) else {
            break;
        };
        let start = eol + 1;
        let next = find(body, &[b"\n", &delim[..]].concat(), start);
        let end = next.unwrap_or(body.len());
        let mut raw = &body[start..end];
        if next.is_some() {
            raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        }
        let (head, value) = match find(raw, b"\r\n\r\n", 0) {
            Some(i) => (&raw[..i], &raw[i + 4..]),
            None => match find(raw, b"\n\n", 0) {
                Some(i) => (&raw[..i], &raw[i + 2..]),
                None => (raw, &b""[..]),
            },
        };
        let headers: Vec<Vec<u8>> = head
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
            .filter(|l| !l.is_empty())
            .collect();
        if let Some(name) = headers.iter().find_map(|l| part_name(l)) {
            parts.push(Part {
                name,
                headers,
                value: value.to_vec(),
            });
        }
        match next {
            Some(n) => at = n + 1,
            None => break,
        }
    }
    parts
}

/// Encodes parts with `boundary`; no parts is an empty body.
pub(super) fn encode(parts: &[Part], boundary: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if parts.is_empty() {
        return out;
    }
    for p in parts {
        out.extend_from_slice(b"--");
        out.extend_from_slice(boundary);
        out.extend_from_slice(b"\r\n");
        for h in &p.headers {
            out.extend_from_slice(h);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&p.value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"--");
    out.extend_from_slice(boundary);
    out.extend_from_slice(b"--\r\n");
    out
}

/// A part with only a `Content-Disposition` header.
fn simple(name: &str, value: &[u8]) -> Part {
    Part {
        name: name.to_owned(),
        headers: vec![format!("Content-Disposition: form-data; name=\"{name}\"").into_bytes()],
        value: value.to_vec(),
    }
}

/// `set_simple`: replaces the part called `name` (the last one) or adds one at the end.
fn set_simple(parts: &mut Vec<Part>, name: &str, value: &[u8]) {
    match parts.iter().rposition(|p| p.name == name) {
        Some(i) => parts[i] = simple(name, value),
        None => parts.push(simple(name, value)),
    }
}

/// `delete`: removes the part called `name` (the last one).
fn delete(parts: &mut Vec<Part>, name: &str) {
    if let Some(i) = parts.iter().rposition(|p| p.name == name) {
        parts.remove(i);
    }
}

/// Kong's `transform_multipart_body`: rename, remove, replace (on a non-empty body), then
/// add. `None` when no boundary is declared or nothing changed.
pub(super) fn transform(
    ops: &Ops,
    content_type: &[u8],
    body: &[u8],
    r: &Rendered,
) -> Option<Vec<u8>> {
    let boundary = boundary(content_type)?;
    let mut parts = parse(body, &boundary);
    let mut changed = false;
    if !body.is_empty() {
        for p in &ops.rename {
            let Some(new) = r.text(&p.value) else {
                continue;
            };
            let Some(value) = parts
                .iter()
                .rev()
                .find(|x| x.name == p.name)
                .map(|x| x.value.clone())
            else {
                continue;
            };
            if new != p.name {
                set_simple(&mut parts, &new, &value);
                delete(&mut parts, &p.name);
                changed = true;
            }
        }
        for name in &ops.remove {
            delete(&mut parts, name);
            changed = true;
        }
        for p in &ops.replace {
            let Some(v) = r.get(&p.value) else { continue };
            if parts.iter().any(|x| x.name == p.name) {
                delete(&mut parts, &p.name);
                parts.push(simple(&p.name, v));
                changed = true;
            }
        }
    }
    for p in &ops.add {
        let Some(v) = r.get(&p.value) else { continue };
        if !parts.iter().any(|x| x.name == p.name) {
            set_simple(&mut parts, &p.name, v);
            changed = true;
        }
    }
    changed.then(|| encode(&parts, &boundary))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request_transformer::{Pair, Val};

    const CT: &[u8] = b"multipart/form-data; boundary=\"XyZ\"";

    fn body(parts: &[(&str, &str)]) -> Vec<u8> {
        let mut out = b"preamble\r\n".to_vec();
        for (n, v) in parts {
            out.extend_from_slice(
                format!(
                    "--XyZ\r\nContent-Disposition: form-data; name=\"{n}\"\r\n\
                     Content-Type: text/plain\r\n\r\n{v}\r\n"
                )
                .as_bytes(),
            );
        }
        out.extend_from_slice(b"--XyZ--\r\n");
        out
    }

    fn pair(name: &str, value: &str) -> Pair {
        Pair {
            name: name.into(),
            lower: name.to_ascii_lowercase(),
            value: Val::Text(value.into()),
        }
    }

    fn names_values(out: &[u8]) -> Vec<(String, String)> {
        parse(out, b"XyZ")
            .into_iter()
            .map(|p| (p.name, String::from_utf8_lossy(&p.value).into_owned()))
            .collect()
    }

    fn rendered() -> Rendered {
        super::super::env::Rendered::empty()
    }

    #[test]
    fn boundaries_and_parts_parse() {
        assert_eq!(boundary(CT).as_deref(), Some(&b"XyZ"[..]));
        assert_eq!(
            boundary(b"multipart/form-data;boundary=abc; x=y").as_deref(),
            Some(&b"abc;"[..]),
            "Lua's %S+ runs to the next space"
        );
        assert_eq!(boundary(b"multipart/form-data"), None);
        let b = body(&[("a", "1"), ("file", "line1\r\nline2")]);
        let parts = parse(&b, b"XyZ");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].value, b"line1\r\nline2");
        assert_eq!(parts[0].headers.len(), 2);
        let round = encode(&parts, b"XyZ");
        assert_eq!(parse(&round, b"XyZ"), parts);
        assert!(encode(&[], b"XyZ").is_empty());
    }

    #[test]
    fn kong_spec_multipart_cases() {
        let r = rendered();
        // remove: "parameters on multipart POST".
        let ops = Ops {
            remove: vec!["toremoveform".into()],
            ..Ops::default()
        };
        let b = body(&[("toremoveform", "yes"), ("nottoremove", "yes")]);
        let out = transform(&ops, CT, &b, &r).expect("changed");
        assert_eq!(names_values(&out), [("nottoremove".into(), "yes".into())]);
        // rename.
        let ops = Ops {
            rename: vec![pair("originalparam", "renamedparam")],
            ..Ops::default()
        };
        let b = body(&[("originalparam", "yes"), ("nottorename", "yes")]);
        let out = transform(&ops, CT, &b, &r).expect("changed");
        assert_eq!(
            names_values(&out),
            [
                ("nottorename".into(), "yes".into()),
                ("renamedparam".into(), "yes".into())
            ]
        );
        // replace: only an existing part, re-added with a bare Content-Disposition.
        let ops = Ops {
            replace: vec![pair("p1", "v1")],
            ..Ops::default()
        };
        let out = transform(&ops, CT, &body(&[("p1", "v"), ("p2", "x")]), &r).expect("changed");
        assert_eq!(
            names_values(&out),
            [("p2".into(), "x".into()), ("p1".into(), "v1".into())]
        );
        assert_eq!(parse(&out, b"XyZ")[1].headers.len(), 1);
        assert_eq!(transform(&ops, CT, &body(&[("p2", "x")]), &r), None);
        // add: only an absent part, even on an empty body.
        let ops = Ops {
            add: vec![pair("p1", "v1")],
            ..Ops::default()
        };
        assert_eq!(transform(&ops, CT, &body(&[("p1", "keep")]), &r), None);
        let out = transform(&ops, CT, b"", &r).expect("changed");
        assert_eq!(
            out,
            b"--XyZ\r\nContent-Disposition: form-data; name=\"p1\"\r\n\r\nv1\r\n--XyZ--\r\n"
        );
    }
}
