//! Lua's `tonumber` on a string, for the plugins whose Kong code parses numbers with it
//! (response-transformer's `json_types`, proxy-cache's Cache-Control directives).

/// LuaJIT's `tonumber` on a string: surrounding whitespace allowed, an optional sign, then
/// decimal (starting with a digit or `.`, with fraction and exponent) or `0x` hexadecimal; no
/// `inf`/`nan` words. An out-of-range decimal is infinite, as in Lua.
pub fn tonumber(s: &str) -> Option<f64> {
    let t = s.trim_matches(|c: char| c.is_ascii_whitespace());
    let (negative, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let value = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        hex.bytes().fold(0f64, |acc, b| {
            acc * 16.0 + f64::from((b as char).to_digit(16).unwrap_or(0))
        })
    } else {
        let ok = digits
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
            && digits
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_digit() || b == b'.');
        if !ok {
            return None;
        }
        digits.parse::<f64>().ok()?
    };
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::tonumber;

    #[test]
    fn parses_as_lua_does() {
        assert_eq!(tonumber(" 10 "), Some(10.0));
        assert_eq!(tonumber("0x10"), Some(16.0));
        assert_eq!(tonumber("-1.5e1"), Some(-15.0));
        assert_eq!(tonumber(".5"), Some(0.5));
        for bad in ["", "-", "e5", "-+5", "0x", "inf", "nan", "1a"] {
            assert_eq!(tonumber(bad), None, "{bad:?}");
        }
    }
}
