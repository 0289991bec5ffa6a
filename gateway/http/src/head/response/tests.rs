use super::*;

fn parse(buf: &[u8], is_head: bool) -> Result<Option<usize>, HttpError> {
    parse_response(buf, &Limits::default(), is_head, &mut ResponseHead::new())
}

fn parsed(buf: &[u8], is_head: bool) -> ResponseHead {
    let mut head = ResponseHead::new();
    let n = parse_response(buf, &Limits::default(), is_head, &mut head)
        .expect("valid response")
        .expect("complete head");
    assert_eq!(n, head.len());
    head
}

fn rejected(buf: &[u8]) {
    let r = parse(buf, false);
    assert!(
        matches!(r, Err(HttpError::InvalidResponse(_))),
        "{:?} -> {r:?}",
        String::from_utf8_lossy(buf)
    );
    assert_eq!(r.map_err(HttpError::status), Err(502));
}

#[test]
fn content_length_response() {
    let buf = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
    let h = parsed(buf, false);
    assert_eq!(h.len(), buf.len() - 5);
    assert_eq!(h.status(), 200);
    assert_eq!(h.reason(buf), b"OK");
    assert_eq!(h.version(), Version::Http11);
    assert_eq!(h.framing(), BodyFraming::Length(5));
    assert!(h.keep_alive());
    assert_eq!(h.header(buf, "content-type"), Some(&b"text/plain"[..]));
}

#[test]
fn split_at_every_byte() {
    let buf = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n0\r\n\r\n";
    let head_len = buf.len() - 5;
    for cut in 0..head_len {
        assert_eq!(parse(&buf[..cut], false), Ok(None), "cut at {cut}");
    }
    for cut in head_len..=buf.len() {
        assert_eq!(
            parse(&buf[..cut], false),
            Ok(Some(head_len)),
            "cut at {cut}"
        );
    }
}

#[test]
fn bodiless_statuses_and_head_requests() {
    for (buf, is_head) in [
        (
            &b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n"[..],
            false,
        ),
        (
            b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            true,
        ),
        (b"HTTP/1.1 200 OK\r\n\r\n", true),
        (b"HTTP/1.1 100 Continue\r\n\r\n", false),
        (b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", false),
    ] {
        let h = parsed(buf, is_head);
        assert_eq!(
            h.framing(),
            BodyFraming::None,
            "{:?}",
            String::from_utf8_lossy(buf)
        );
        assert!(h.keep_alive());
    }
    assert!(parsed(b"HTTP/1.1 100 Continue\r\n\r\n", false).is_interim());
    assert!(!parsed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false).is_interim());
}

#[test]
fn chunked_and_until_close() {
    let h = parsed(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n",
        false,
    );
    assert_eq!(h.framing(), BodyFraming::Chunked);
    assert!(h.keep_alive());
    let h = parsed(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n", false);
    assert_eq!(h.framing(), BodyFraming::UntilClose);
    assert!(!h.keep_alive(), "an until-close body ends the connection");
}

#[test]
fn switching_protocols_is_upgrade() {
    let buf =
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    let h = parsed(buf, false);
    assert!(h.is_upgrade());
    assert!(!h.is_interim());
    assert_eq!(h.framing(), BodyFraming::None);
    assert!(!h.keep_alive(), "the connection becomes a tunnel");
}

#[test]
fn keep_alive_rules() {
    let ka = |buf: &[u8]| parsed(buf, false).keep_alive();
    assert!(!ka(
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    ));
    assert!(!ka(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
    assert!(ka(
        b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
    ));
}

#[test]
fn framing_doubts_are_502() {
    rejected(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n");
    rejected(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
    rejected(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n");
    rejected(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
    rejected(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    rejected(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n");
    rejected(b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n");
}

#[test]
fn malformed_heads_are_502() {
    rejected(b"HTTP/2.0 200 OK\r\n\r\n");
    rejected(b"HTTP/1.1 20 OK\r\n\r\n");
    rejected(b"HTTP/1.1 099 Odd\r\n\r\n");
    rejected(b"HTTP/1.1 OK\r\n\r\n");
    rejected(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n");
    rejected(b"HTTP/1.1 200 OK\r\nX-A : 1\r\n\r\n");
    rejected(b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\n\r\n");
    rejected(b"garbage\r\n\r\n");
}

#[test]
fn oversized_heads_are_502() {
    let limits = Limits {
        max_line_bytes: 64,
        max_header_bytes: 128,
        max_headers: 2,
    };
    let mut h = ResponseHead::new();
    let long = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(100));
    assert!(matches!(
        parse_response(long.as_bytes(), &limits, false, &mut h),
        Err(HttpError::InvalidResponse(_))
    ));
    assert!(matches!(
        parse_response(&long.as_bytes()[..90], &limits, false, &mut h),
        Err(HttpError::InvalidResponse(_))
    ));
    let many = b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 1\r\nC: 1\r\n\r\n";
    assert!(matches!(
        parse_response(many, &limits, false, &mut h),
        Err(HttpError::InvalidResponse(_))
    ));
}

#[test]
fn empty_reason_and_hop_by_hop() {
    let buf = b"HTTP/1.1 404 \r\nConnection: X-Up\r\nX-Up: 1\r\nKeep-Alive: timeout=5\r\nX-Ok: 2\r\nContent-Length: 0\r\n\r\n";
    let h = parsed(buf, false);
    assert_eq!(h.reason(buf), b"");
    let fwd: Vec<&[u8]> = h.end_to_end_headers(buf).map(|f| f.name.get(buf)).collect();
    assert_eq!(fwd, vec![&b"X-Ok"[..], b"Content-Length"]);
}

#[test]
fn reuse_keeps_capacity_and_resets_state() {
    let mut h = ResponseHead::new();
    let limits = Limits::default();
    let a = b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nContent-Length: 1\r\n\r\n";
    parse_response(a, &limits, false, &mut h).expect("ok");
    let cap = h.headers.capacity();
    let b = b"HTTP/1.1 204 No Content\r\n\r\n";
    parse_response(b, &limits, false, &mut h).expect("ok");
    assert_eq!(h.headers().len(), 0);
    assert_eq!(h.headers.capacity(), cap);
    assert_eq!(h.framing(), BodyFraming::None);
}
