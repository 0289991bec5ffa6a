//! `Cache-Control` directives as Kong's `parse_directive_header` reads them, and the TTL of a
//! response as its `calculate_resource_ttl` computes it.
//!
//! Kong's reading is loose on purpose kept here: a directive is whatever precedes `=` in a
//! comma-separated piece (leading spaces dropped, trailing ones kept, lower-cased), and its
//! value is a number when Lua's `tonumber` accepts it, else the raw text.

/// One directive's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Directive {
    /// A bare directive (`no-cache`).
    Flag,
    /// A value Lua reads as a number (`max-age=60`).
    Number(f64),
    /// Any other value.
    Text(String),
}

/// Parsed directives, later ones replacing earlier ones of the same name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Directives(Vec<(String, Directive)>);

impl Directives {
    /// Parses the values of a header (several lines count as one joined with `, `).
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Directives {
        let mut out = Directives::default();
        for value in values {
            for piece in value.split(|&b| b == b',') {
                let piece = trim_start(piece);
                if piece.is_empty() || piece[0] == b'=' {
                    continue;
                }
                let (name, value) = match piece.iter().position(|&b| b == b'=') {
                    Some(i) if i + 1 < piece.len() => (&piece[..i], Some(&piece[i + 1..])),
                    Some(i) => (&piece[..i], None),
                    None => (piece, None),
                };
                let name = String::from_utf8_lossy(name).to_ascii_lowercase();
                let directive = match value {
                    None => Directive::Flag,
                    Some(v) => match lua_tonumber(v) {
                        Some(n) => Directive::Number(n),
                        None => Directive::Text(String::from_utf8_lossy(v).into_owned()),
                    },
                };
                out.0.retain(|(n, _)| *n != name);
                out.0.push((name, directive));
            }
        }
        out
    }

    /// True when directive `name` is present (with or without a value).
    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }

    /// The numeric value of `name`. A non-numeric value counts as absent (Kong would fail
    /// the request comparing it with a number).
    pub fn number(&self, name: &str) -> Option<f64> {
        self.0.iter().find_map(|(n, d)| match d {
            Directive::Number(v) if n == name => Some(*v),
            _ => None,
        })
    }
}

fn trim_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| b.is_ascii_whitespace()).count();
    &s[n..]
}

/// Lua's `tonumber` on header bytes.
pub fn lua_tonumber(s: &[u8]) -> Option<f64> {
    crate::lua_number::tonumber(std::str::from_utf8(s).ok()?)
}

/// Kong's `calculate_resource_ttl`: `s-maxage`, else `max-age`, else `Expires` (its last
/// value) minus `now`; never below 0, and 0 when none applies.
pub fn resource_ttl(cc: &Directives, expires: Option<&[u8]>, now: f64) -> f64 {
    let max_age = cc.number("s-maxage").or_else(|| cc.number("max-age"));
    let max_age = max_age.or_else(|| {
        let text = std::str::from_utf8(expires?).ok()?;
        let at = httpdate::parse_http_date(text.trim()).ok()?;
        let secs = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as f64;
        Some(secs - now)
    });
    max_age.map_or(0.0, |ttl| ttl.max(0.0))
}
