use super::*;

fn parse(buf: &[u8]) -> Result<Option<usize>, HttpError> {
    parse_request(buf, &Limits::default(), &mut RequestHead::new())
}

fn parsed(buf: &[u8]) -> RequestHead {
    let mut head = RequestHead::new();
    let n = parse_request(buf, &Limits::default(), &mut head)
        .expect("valid request")
        .expect("complete head");
    assert_eq!(n, head.len());
    head
}

fn err(buf: &[u8]) -> HttpError {
    parse(buf).expect_err("request must be refused")
}

#[test]
fn simple_get() {
    let buf = b"GET /a/b?x=1&y HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n";
    let h = parsed(buf);
    assert_eq!(h.len(), buf.len());
    assert_eq!(h.method(buf), b"GET");
    assert_eq!(h.method_kind(), Method::Get);
    assert_eq!(h.target(buf), b"/a/b?x=1&y");
    assert_eq!(h.path(buf), b"/a/b");
    assert_eq!(h.query(buf), Some(&b"x=1&y"[..]));
    assert_eq!(h.path_and_query_span().get(buf), b"/a/b?x=1&y");
    assert_eq!(h.version(), Version::Http11);
    assert_eq!(h.host(buf), Some(&b"example.com"[..]));
    assert_eq!(h.host_index(), Some(0));
    assert_eq!(h.header(buf, "accept"), Some(&b"*/*"[..]));
    assert_eq!(h.header(buf, "ACCEPT"), Some(&b"*/*"[..]));
    assert_eq!(h.header(buf, "missing"), None);
    assert_eq!(h.framing(), BodyFraming::None);
    assert!(h.keep_alive());
    assert!(!h.expect_continue());
    assert!(!h.is_upgrade());
    assert_eq!(h.authority(buf), None);
}

#[test]
fn query_forms() {
    let buf = b"GET /p? HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_eq!(parsed(buf).query(buf), Some(&b""[..]));
    let buf = b"GET /p HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_eq!(parsed(buf).query(buf), None);
    let buf = b"GET /p?q#frag HTTP/1.1\r\nHost: a\r\n\r\n";
    let h = parsed(buf);
    assert_eq!((h.path(buf), h.query(buf)), (&b"/p"[..], Some(&b"q"[..])));
}

#[test]
fn incomplete_heads_ask_for_more_at_every_byte() {
    let buf = b"POST /upload?id=7 HTTP/1.1\r\nHost: api.example.com:8000\r\n\
                Content-Length: 5\r\nConnection: keep-alive, X-Trace\r\nX-Trace: 1\r\n\r\nhello";
    let head_len = buf.len() - 5;
    for cut in 0..head_len {
        assert_eq!(parse(&buf[..cut]), Ok(None), "cut at {cut}");
    }
    for cut in head_len..=buf.len() {
        let mut h = RequestHead::new();
        assert_eq!(
            parse_request(&buf[..cut], &Limits::default(), &mut h),
            Ok(Some(head_len)),
            "cut at {cut}"
        );
        assert_eq!(h.framing(), BodyFraming::Length(5));
        assert_eq!(h.host(buf), Some(&b"api.example.com:8000"[..]));
        assert!(h.is_hop_by_hop(buf, b"x-trace"));
    }
}

#[test]
fn pipelined_requests_parse_back_to_back() {
    let buf = b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n\
                POST /two HTTP/1.1\r\nHost: b\r\nContent-Length: 3\r\n\r\nabc\
                HEAD /three HTTP/1.0\r\n\r\n";
    let mut head = RequestHead::new();
    let limits = Limits::default();
    let n1 = parse_request(buf, &limits, &mut head)
        .expect("first")
        .expect("complete");
    assert_eq!(head.path(buf), b"/one");
    let rest = &buf[n1..];
    let n2 = parse_request(rest, &limits, &mut head)
        .expect("second")
        .expect("complete");
    assert_eq!(head.path(rest), b"/two");
    assert_eq!(head.host(rest), Some(&b"b"[..]));
    assert_eq!(head.framing(), BodyFraming::Length(3));
    let rest = &rest[n2 + 3..];
    parse_request(rest, &limits, &mut head)
        .expect("third")
        .expect("complete");
    assert_eq!(head.method_kind(), Method::Head);
    assert_eq!(head.version(), Version::Http10);
    assert!(!head.keep_alive());
    assert_eq!(
        head.headers().len(),
        0,
        "clear() dropped the earlier fields"
    );
}

#[test]
fn clear_keeps_capacity() {
    let buf = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nConnection: x, y\r\n\r\n";
    let mut head = parsed(buf);
    let cap = head.headers.capacity();
    let tok_cap = head.connection_tokens.capacity();
    head.clear();
    assert!(head.is_empty());
    assert_eq!(head.headers.capacity(), cap);
    assert_eq!(head.connection_tokens.capacity(), tok_cap);
}

// --- request smuggling shapes -------------------------------------------------------------

#[test]
fn content_length_with_transfer_encoding_is_400() {
    assert_eq!(
        err(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
        HttpError::LengthAndChunked
    );
    assert_eq!(
        err(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"),
        HttpError::LengthAndChunked
    );
    assert_eq!(HttpError::LengthAndChunked.status(), 400);
}

#[test]
fn duplicate_content_length_is_400_even_when_identical() {
    // nginx's ngx_http_process_unique_header_line refuses any second Content-Length.
    for buf in [
        &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\n",
    ] {
        assert_eq!(err(buf), HttpError::DuplicateHeader("Content-Length"));
    }
}

#[test]
fn bad_content_length_values_are_400() {
    for v in [
        "-1",
        "+3",
        "3 3",
        "3,3",
        "0x10",
        "abc",
        "",
        "9223372036854775808",
        "18446744073709551616",
    ] {
        let buf = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {v}\r\n\r\n");
        assert_eq!(
            err(buf.as_bytes()),
            HttpError::InvalidContentLength,
            "Content-Length: {v:?}"
        );
    }
    let h = parsed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:  007 \r\n\r\n");
    assert_eq!(h.framing(), BodyFraming::Length(7));
}

#[test]
fn transfer_encoding_other_than_chunked_is_501() {
    for v in [
        "gzip",
        "gzip, chunked",
        "chunked, gzip",
        "identity",
        "chunked;q=1",
        "xchunked",
    ] {
        let buf = format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {v}\r\n\r\n");
        assert_eq!(
            err(buf.as_bytes()),
            HttpError::UnsupportedTransferEncoding,
            "Transfer-Encoding: {v:?}"
        );
    }
    assert_eq!(HttpError::UnsupportedTransferEncoding.status(), 501);
    let h = parsed(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ChUnKeD\r\n\r\n");
    assert_eq!(h.framing(), BodyFraming::Chunked);
}

#[test]
fn duplicate_transfer_encoding_is_400() {
    assert_eq!(
        err(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
        HttpError::DuplicateHeader("Transfer-Encoding")
    );
}

#[test]
fn transfer_encoding_on_http10_is_400() {
    assert_eq!(
        err(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
        HttpError::TransferEncodingOnHttp10
    );
}

#[test]
fn obs_fold_and_bad_header_bytes_are_400() {
    for buf in [
        &b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  folded\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\tfolded\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 3\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\t: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x01b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x7fb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX@A: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n: empty\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n",
        b"GET / HTTP/1.1\r\n Host: a\r\n\r\n",
        b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        assert!(
            matches!(err(buf), HttpError::MalformedHead(_)),
            "{:?} -> {:?}",
            String::from_utf8_lossy(buf),
            parse(buf)
        );
    }
}

#[test]
fn host_rules() {
    assert_eq!(err(b"GET / HTTP/1.1\r\n\r\n"), HttpError::MissingHost);
    assert_eq!(
        err(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
        HttpError::DuplicateHeader("Host")
    );
    for bad in ["", "a..b", "a/b", "a b", ":80", "."] {
        let buf = format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n");
        assert_eq!(err(buf.as_bytes()), HttpError::InvalidHost, "Host: {bad:?}");
    }
    // HTTP/1.0 may omit Host.
    let buf = b"GET / HTTP/1.0\r\n\r\n";
    assert_eq!(parsed(buf).host(buf), None);
}

#[test]
fn absolute_form_takes_host_from_target() {
    let buf = b"GET http://Api.Example.com:8080/v1/x?k=v HTTP/1.1\r\nHost: other\r\n\r\n";
    let h = parsed(buf);
    assert_eq!(h.authority(buf), Some(&b"Api.Example.com:8080"[..]));
    assert_eq!(h.host(buf), Some(&b"Api.Example.com:8080"[..]));
    assert_eq!(h.path(buf), b"/v1/x");
    assert_eq!(h.query(buf), Some(&b"k=v"[..]));
    assert_eq!(h.path_and_query_span().get(buf), b"/v1/x?k=v");

    let buf = b"GET https://a.com HTTP/1.1\r\nHost: a.com\r\n\r\n";
    let h = parsed(buf);
    assert_eq!((h.path(buf), h.query(buf)), (&b"/"[..], None));
    let buf = b"GET http://a.com?x HTTP/1.1\r\nHost: a.com\r\n\r\n";
    let h = parsed(buf);
    assert_eq!((h.path(buf), h.query(buf)), (&b"/"[..], Some(&b"x"[..])));

    // Host header is still required on HTTP/1.1 (nginx checks the header itself).
    assert_eq!(
        err(b"GET http://a.com/ HTTP/1.1\r\n\r\n"),
        HttpError::MissingHost
    );
    for bad in [
        &b"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"GET http://u@a.com/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET http://a..com/ HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        assert_eq!(
            err(bad),
            HttpError::InvalidHost,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    for bad in [
        &b"GET * HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"GET a.com/x HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET 1http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        assert!(matches!(err(bad), HttpError::MalformedHead(_)));
    }
}

#[test]
fn versions() {
    assert_eq!(
        err(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"),
        HttpError::UnsupportedVersion
    );
    assert_eq!(
        err(b"GET / HTTP/1.2\r\nHost: a\r\n\r\n"),
        HttpError::UnsupportedVersion
    );
    assert_eq!(err(b"GET / HTTP/3"), HttpError::UnsupportedVersion);
    assert_eq!(HttpError::UnsupportedVersion.status(), 505);
    assert!(matches!(
        err(b"GET / HTTX/1.1\r\n\r\n"),
        HttpError::MalformedHead(_)
    ));
    assert!(matches!(err(b"GET /\r\n\r\n"), HttpError::MalformedHead(_)));
}

#[test]
fn trace_and_connect_are_405() {
    assert_eq!(
        err(b"TRACE / HTTP/1.1\r\nHost: a\r\n\r\n"),
        HttpError::MethodNotAllowed("TRACE")
    );
    assert_eq!(
        err(b"CONNECT a.com:443 HTTP/1.1\r\nHost: a.com\r\n\r\n"),
        HttpError::MethodNotAllowed("CONNECT")
    );
}

#[test]
fn nginx_unique_headers_refuse_duplicates() {
    for name in [
        "Authorization",
        "If-Match",
        "If-None-Match",
        "Expect",
        "Content-Range",
    ] {
        let buf = format!("GET / HTTP/1.1\r\nHost: a\r\n{name}: 1\r\n{name}: 1\r\n\r\n");
        assert!(
            matches!(err(buf.as_bytes()), HttpError::DuplicateHeader(_)),
            "{name}"
        );
    }
    // Others may repeat.
    let buf = b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nx-a: 2\r\nCookie: a\r\nCookie: b\r\n\r\n";
    let h = parsed(buf);
    let vals: Vec<&[u8]> = h.header_values(buf, "X-A").collect();
    assert_eq!(vals, vec![&b"1"[..], b"2"]);
}

// --- limits -------------------------------------------------------------------------------

#[test]
fn header_size_limits() {
    let limits = Limits {
        max_line_bytes: 64,
        max_header_bytes: 256,
        max_headers: 4,
    };
    let mut h = RequestHead::new();
    let mut p = |buf: &[u8]| parse_request(buf, &limits, &mut h);

    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(80));
    assert_eq!(p(long_uri.as_bytes()), Err(HttpError::UriTooLong));
    assert_eq!(
        p(&long_uri.as_bytes()[..70]),
        Err(HttpError::UriTooLong),
        "partial"
    );

    let long_hdr = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n", "b".repeat(80));
    assert_eq!(p(long_hdr.as_bytes()), Err(HttpError::HeaderTooLarge));
    assert_eq!(
        p(&long_hdr.as_bytes()[..100]),
        Err(HttpError::HeaderTooLarge),
        "partial"
    );

    let many = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\n\r\n";
    assert_eq!(p(many.as_bytes()), Err(HttpError::TooManyHeaders));

    let roomy = Limits {
        max_headers: 8,
        ..limits
    };
    let mut big = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for _ in 0..4 {
        big.push_str(&format!("X: {}\r\n", "c".repeat(60)));
    }
    assert!(big.len() > 256);
    assert_eq!(
        parse_request(big.as_bytes(), &roomy, &mut h),
        Err(HttpError::HeaderTooLarge),
        "partial total"
    );
    big.push_str("\r\n");
    assert_eq!(
        parse_request(big.as_bytes(), &roomy, &mut h),
        Err(HttpError::HeaderTooLarge),
        "complete total"
    );

    assert_eq!(HttpError::HeaderTooLarge.status(), 494);
    assert_eq!(HttpError::TooManyHeaders.status(), 494);
    assert_eq!(HttpError::UriTooLong.status(), 414);
}

#[test]
fn default_limits_accept_a_typical_large_head() {
    let cookie = "k=".to_string() + &"v".repeat(7000);
    let buf = format!("GET / HTTP/1.1\r\nHost: a\r\nCookie: {cookie}\r\n\r\n");
    assert!(parse(buf.as_bytes()).expect("ok").is_some());
    let cookie = "k=".to_string() + &"v".repeat(9000);
    let buf = format!("GET / HTTP/1.1\r\nHost: a\r\nCookie: {cookie}\r\n\r\n");
    assert_eq!(parse(buf.as_bytes()), Err(HttpError::HeaderTooLarge));
}

// --- derived facts ------------------------------------------------------------------------

#[test]
fn keep_alive_per_version_and_connection() {
    let ka = |buf: &[u8]| parsed(buf).keep_alive();
    assert!(ka(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert!(!ka(
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    ));
    assert!(!ka(
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\n"
    ));
    assert!(!ka(b"GET / HTTP/1.0\r\n\r\n"));
    assert!(ka(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    assert!(ka(
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n"
    ));
}

#[test]
fn expect_continue_only_on_http11() {
    let buf = b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n";
    assert!(parsed(buf).expect_continue());
    let buf = b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n";
    assert!(!parsed(buf).expect_continue());
    let buf = b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n";
    assert!(!parsed(buf).expect_continue());
}

#[test]
fn upgrade_needs_connection_token_and_header() {
    let buf = b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n";
    let h = parsed(buf);
    assert!(h.is_upgrade());
    assert_eq!(h.upgrade_protocol(buf), Some(&b"websocket"[..]));
    let buf = b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n";
    assert!(!parsed(buf).is_upgrade());
    let buf = b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n";
    assert!(!parsed(buf).is_upgrade());
    let buf = b"GET /ws HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
    assert!(!parsed(buf).is_upgrade());
}

#[test]
fn hop_by_hop_includes_connection_listed_names() {
    let buf = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Private, keep-alive\r\n\
                X-Private: s\r\nKeep-Alive: 5\r\nTE: trailers\r\nX-Public: p\r\n\
                Proxy-Authorization: Basic x\r\n\r\n";
    let h = parsed(buf);
    let tokens: Vec<&[u8]> = h.connection_tokens().iter().map(|t| t.get(buf)).collect();
    assert_eq!(tokens, vec![&b"X-Private"[..], b"keep-alive"]);
    let forwarded: Vec<&[u8]> = h.end_to_end_headers(buf).map(|f| f.name.get(buf)).collect();
    assert_eq!(forwarded, vec![&b"Host"[..], b"X-Public"]);
}

#[test]
fn bare_lf_line_endings_are_accepted_like_nginx() {
    let buf = b"GET / HTTP/1.1\nHost: a\n\n";
    assert_eq!(parsed(buf).len(), buf.len());
}

#[test]
fn leading_empty_lines_are_skipped() {
    let buf = b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let h = parsed(buf);
    assert_eq!(h.method(buf), b"GET");
}

#[test]
fn mutated_requests_never_panic() {
    // Deterministic byte mutations of a valid head: the parser must answer, never panic, and
    // a complete head must lie inside the buffer.
    let base = b"POST http://a.com:80/p?q=1 HTTP/1.1\r\nHost: a.com\r\nContent-Length: 3\r\n\
                 Connection: keep-alive, Upgrade\r\nUpgrade: ws\r\nExpect: 100-continue\r\n\r\nabc";
    let mut rng = fastrand::Rng::with_seed(0x6761_6e67);
    let alphabet = b"\r\n :;,/?#@[]\t\x00\x7fHTTP/1.0chunked";
    let mut head = RequestHead::new();
    for _ in 0..20_000 {
        let mut buf = base.to_vec();
        for _ in 0..rng.usize(1..4) {
            let i = rng.usize(..buf.len());
            match rng.u8(..3) {
                0 => buf[i] = alphabet[rng.usize(..alphabet.len())],
                1 => buf.insert(i, alphabet[rng.usize(..alphabet.len())]),
                _ => {
                    buf.remove(i);
                }
            }
        }
        if let Ok(Some(n)) = parse_request(&buf, &Limits::default(), &mut head) {
            assert!(n <= buf.len());
            assert!(head.path(&buf).len() <= n);
        }
    }
}
