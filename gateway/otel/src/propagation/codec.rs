//! Id and text encodings shared by the extractors and injectors: hex and decimal ids, Kong's
//! id resizing (`to_id_size`), and nginx's URI component escaping used for baggage values.

/// Bytes in a span id, and in Kong's internal (padded) trace id.
pub(super) const SPAN_ID_LEN: usize = 8;
pub(super) const TRACE_ID_LEN: usize = 16;

/// Whether `s` is a non-empty run of ASCII hex digits (Lua's `%x+`).
pub(super) fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `s` is a non-empty run of ASCII digits (Lua's `%d+`).
pub(super) fn is_dec(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `s` is all zero digits; Kong tests `tonumber(id, 16) == 0`, which on a hex string
/// is only true when every digit is zero.
pub(super) fn is_zero(s: &str) -> bool {
    s.bytes().all(|b| b == b'0')
}

fn nibble(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes hex digits to bytes; an odd count gets a leading zero digit, as Kong's `from_hex`
/// does. None when a character is not a hex digit (callers validate first, this is a guard).
pub(super) fn from_hex(s: &str) -> Option<Vec<u8>> {
    let digits = s.as_bytes();
    let mut out = Vec::with_capacity(digits.len().div_ceil(2));
    let mut rest = digits;
    if digits.len() % 2 == 1 {
        let (first, tail) = digits.split_first()?;
        out.push(nibble(*first)?);
        rest = tail;
    }
    for pair in rest.chunks_exact(2) {
        out.push(nibble(pair[0])? << 4 | nibble(pair[1])?);
    }
    Some(out)
}

/// Lower-case hex, as `resty.string.to_hex` writes it.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    let mut buf = [0u8; 64];
    for chunk in bytes.chunks(32) {
        let hex = &mut buf[..chunk.len() * 2];
        write_hex(chunk, hex);
        out.push_str(std::str::from_utf8(hex).unwrap_or_default());
    }
    out
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// [`to_hex`] into a buffer of exactly twice `bytes`' length.
fn write_hex(bytes: &[u8], out: &mut [u8]) {
    for (b, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = HEX_DIGITS[usize::from(b >> 4)];
        pair[1] = HEX_DIGITS[usize::from(b & 0x0f)];
    }
}

/// A W3C `traceparent` value (version 00), built without allocating: every request that
/// propagates in the default format writes one.
pub(crate) fn traceparent(trace_id: &[u8; 16], span_id: &[u8; 8], sampled: bool) -> [u8; 55] {
    let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
    write_hex(trace_id, &mut out[3..35]);
    write_hex(span_id, &mut out[36..52]);
    if sampled {
        out[54] = b'1';
    }
    out
}

/// A decimal id reduced the way Kong's `bn.from_dec(..):to_binary()` followed by a resize
/// keeps it: the low 128 bits, plus the byte length of the whole number.
pub(super) struct Decimal {
    pub(super) low: u128,
    /// Bytes `to_binary` would produce (0 for zero); `usize::MAX` when the value exceeds 128
    /// bits, which only matters as "longer than any allowed size".
    pub(super) bytes: usize,
}

/// Parses a run of ASCII digits of any length (datadog ids are not length-limited); None on
/// any other character.
pub(super) fn from_dec(s: &str) -> Option<Decimal> {
    let mut low: u128 = 0;
    let mut overflow = false;
    for b in s.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        let digit = u128::from(b - b'0');
        // Wrapping arithmetic is arithmetic modulo 2^128, i.e. exactly the low 16 bytes Kong
        // keeps when it truncates an oversized id.
        let (mul, o1) = low.overflowing_mul(10);
        let (sum, o2) = mul.overflowing_add(digit);
        overflow |= o1 || o2;
        low = sum;
    }
    let bytes = if overflow {
        usize::MAX
    } else {
        (128 - low.leading_zeros() as usize).div_ceil(8)
    };
    Some(Decimal { low, bytes })
}

/// Kong's `to_id_size`: keeps the last `len` bytes of a longer id, left-pads a shorter one with
/// zero bytes.
pub(crate) fn to_id_size(id: &[u8], len: usize) -> std::borrow::Cow<'_, [u8]> {
    if id.len() >= len {
        std::borrow::Cow::Borrowed(&id[id.len() - len..])
    } else {
        let mut out = vec![0; len - id.len()];
        out.extend_from_slice(id);
        std::borrow::Cow::Owned(out)
    }
}

/// [`to_id_size`] as an array of `N` bytes, as OTLP carries trace (16) and span (8) ids.
pub(crate) fn to_id_array<const N: usize>(id: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&to_id_size(id, N));
    out
}

/// The trace id an extractor reports: 8 bytes when the header carried a 64-bit (or shorter) id,
/// otherwise Kong's 16-byte internal id. The length doubles as Kong's `trace_id_original_size`
/// when the id is injected again.
pub(super) fn extracted_trace_id(raw: &[u8]) -> Vec<u8> {
    extracted_trace_id_sized(raw, raw.len())
}

/// Like [`extracted_trace_id`], for ids whose true byte length differs from `raw.len()`
/// (oversized decimals).
pub(super) fn extracted_trace_id_sized(raw: &[u8], original_len: usize) -> Vec<u8> {
    if original_len <= SPAN_ID_LEN {
        to_id_size(raw, SPAN_ID_LEN).into_owned()
    } else {
        to_id_size(raw, TRACE_ID_LEN).into_owned()
    }
}

/// Kong's span id: resized to 8 bytes.
pub(super) fn span_id(raw: &[u8]) -> Vec<u8> {
    to_id_size(raw, SPAN_ID_LEN).into_owned()
}

/// Decimal text of a big-endian id, as `bn.from_binary(..):to_dec()` writes it.
pub(super) fn to_dec(bytes: &[u8]) -> String {
    // Injectors resize ids to at most 16 bytes first; the fold keeps the low 128 bits anyway.
    let value = bytes.iter().fold(0u128, |acc, b| acc << 8 | u128::from(*b));
    value.to_string()
}

/// `ngx.unescape_uri`: `%XX` decodes, `+` becomes a space, a malformed escape stays as written.
pub(super) fn unescape_uri(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(nibble);
                let lo = bytes.get(i + 2).copied().and_then(nibble);
                if let (Some(hi), Some(lo)) = (hi, lo) {
                    out.push(hi << 4 | lo);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `ngx.escape_uri` (component mode): everything but RFC 3986 unreserved characters becomes an
/// upper-case `%XX`.
pub(super) fn escape_uri(s: &str) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(DIGITS[usize::from(b >> 4)]));
            out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// Lua's `%s` class (C `isspace`): space, tab, newline, vertical tab, form feed, carriage
/// return. Rust's `is_ascii_whitespace` omits the vertical tab.
pub(super) fn is_lua_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}
