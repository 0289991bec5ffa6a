//! How Kong writes a query string it rebuilt. `kong.service.request.set_query` (what
//! request-transformer calls) encodes each name's arguments with `ngx.encode_args` and sorts
//! those pieces as strings; `clear_query_arg` re-serializes the remaining arguments as a
//! form (WHATWG's serializer, through lua-resty-ada) and turns its `+` for a space into `%20`.

use super::QueryArg;

/// Bytes `ngx.encode_args` leaves as they are (`ngx.escape_uri`'s URI-component table):
/// letters, digits and `-._~!'()*`.
fn kept_by_ngx(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'_' | b'~' | b'!' | b'\'' | b'(' | b')' | b'*'
        )
}

/// Bytes the form serializer leaves as they are: letters, digits and `*-._`.
fn kept_by_form(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'.' | b'_')
}

fn push_escaped(out: &mut Vec<u8>, text: &str, kept: fn(u8) -> bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in text.as_bytes() {
        if kept(b) {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        }
    }
}

/// `set_query`: a name's arguments in order (`name=value`, or `name` alone for a flag),
/// the names' pieces sorted as encoded text, joined with `&`.
pub(super) fn write_sorted(out: &mut Vec<u8>, args: &[QueryArg]) {
    let mut pieces: Vec<Vec<u8>> = Vec::new();
    for (i, (name, _)) in args.iter().enumerate() {
        if args[..i].iter().any(|(earlier, _)| earlier == name) {
            continue;
        }
        let mut piece = Vec::new();
        for (_, value) in args[i..].iter().filter(|(n, _)| n == name) {
            if !piece.is_empty() {
                piece.push(b'&');
            }
            push_escaped(&mut piece, name, kept_by_ngx);
            if let Some(value) = value {
                piece.push(b'=');
                push_escaped(&mut piece, value, kept_by_ngx);
            }
        }
        pieces.push(piece);
    }
    pieces.sort();
    out.extend_from_slice(&pieces.join(&b'&'));
}

/// `clear_query_arg`: the arguments in the client's order, each `name=value` (a flag too:
/// the form parser read it as an empty value).
pub(super) fn write_in_order(out: &mut Vec<u8>, args: &[QueryArg]) {
    for (i, (name, value)) in args.iter().enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        push_escaped(out, name, kept_by_form);
        out.push(b'=');
        push_escaped(out, value.as_deref().unwrap_or_default(), kept_by_form);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pairs: &[(&str, Option<&str>)]) -> Vec<QueryArg> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect()
    }

    #[test]
    fn set_query_escapes_as_ngx_encode_args_and_sorts_the_encoded_pieces() {
        let mut out = Vec::new();
        write_sorted(
            &mut out,
            &args(&[
                ("a", Some("1")),
                ("b r", Some("hello world")),
                ("a-b", Some("2")),
                ("flag", None),
                ("a", Some("x+y/z~*'()!")),
                ("e", Some("")),
            ]),
        );
        // lua-nginx-module's example: {foo = 3, ["b r"] = "hello world"} is
        // "foo=3&b%20r=hello%20world"; "a-b=2" sorts before "a=1" as text.
        assert_eq!(
            String::from_utf8(out).expect("ASCII"),
            "a-b=2&a=1&a=x%2By%2Fz~*'()!&b%20r=hello%20world&e=&flag"
        );
    }

    #[test]
    fn clear_query_arg_keeps_the_order_and_writes_spaces_as_percent_20() {
        let mut out = Vec::new();
        write_in_order(
            &mut out,
            &args(&[("c", Some("a b+c")), ("flag", None), ("t~", Some("*"))]),
        );
        assert_eq!(
            String::from_utf8(out).expect("ASCII"),
            "c=a%20b%2Bc&flag=&t%7E=*"
        );
    }
}
