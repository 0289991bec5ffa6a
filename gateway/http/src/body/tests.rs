use super::*;

/// Feeds `parts` in order; returns (total consumed, done, decoded payload).
fn feed(framing: BodyFraming, parts: &[&[u8]]) -> Result<(usize, bool, Vec<u8>), HttpError> {
    let mut t = BodyTracker::new(framing);
    let mut consumed = 0;
    let mut payload = Vec::new();
    let mut done = false;
    for p in parts {
        let prog = t.advance_with(p, |d| payload.extend_from_slice(d))?;
        consumed += prog.consumed;
        done = prog.done;
        if done {
            break;
        }
        assert_eq!(
            prog.consumed,
            p.len(),
            "an unfinished body consumes all input"
        );
    }
    assert_eq!(t.payload_bytes(), payload.len() as u64);
    Ok((consumed, done, payload))
}

/// Checks `body` parses to `payload` whole, at every two-way split and byte by byte.
fn check_every_split(body: &[u8], payload: &[u8]) {
    let want = (body.len(), true, payload.to_vec());
    assert_eq!(
        feed(BodyFraming::Chunked, &[body]).expect("whole"),
        want,
        "whole"
    );
    for cut in 0..=body.len() {
        let (a, b) = body.split_at(cut);
        assert_eq!(
            feed(BodyFraming::Chunked, &[a, b]).expect("split"),
            want,
            "split at {cut}"
        );
    }
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    assert_eq!(
        feed(BodyFraming::Chunked, &bytes).expect("bytewise"),
        want,
        "byte by byte"
    );
}

/// Checks `body` fails at every split point (the error may not depend on where reads end).
fn check_rejected_every_split(body: &[u8]) {
    for cut in 0..=body.len() {
        let (a, b) = body.split_at(cut);
        let r = feed(BodyFraming::Chunked, &[a, b]);
        assert!(
            matches!(r, Err(HttpError::InvalidChunk(_))),
            "split at {cut}: {r:?} for {:?}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn chunked_samples_at_every_split_point() {
    check_every_split(b"0\r\n\r\n", b"");
    check_every_split(b"5\r\nhello\r\n0\r\n\r\n", b"hello");
    check_every_split(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world");
    check_every_split(b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789");
    check_every_split(b"a;name=val\r\n0123456789\r\n0;x\r\n\r\n", b"0123456789");
    check_every_split(b"3 ;ext=\"q d\"\r\nabc\r\n0  \r\n\r\n", b"abc");
    check_every_split(
        b"3\r\nabc\r\n0\r\nExpires: never\r\nX-Sum:\tabc\r\n\r\n",
        b"abc",
    );
    check_every_split(b"0003\r\nabc\r\n000\r\n\r\n", b"abc");
    check_every_split(b"1\r\n\r\r\n0\r\n\r\n", b"\r");
}

#[test]
fn chunked_stops_at_the_end_for_pipelining() {
    let mut t = BodyTracker::new(BodyFraming::Chunked);
    let data = b"2\r\nhi\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    let p = t.advance(data).expect("valid");
    assert_eq!(
        p,
        Progress {
            consumed: 12,
            done: true,
            trailer: None
        }
    );
    assert_eq!(&data[p.consumed..], b"GET / HTTP/1.1\r\n");
    assert_eq!(
        t.advance(b"more").expect("done"),
        Progress {
            consumed: 0,
            done: true,
            trailer: None
        }
    );
}

#[test]
fn chunked_framing_errors() {
    for bad in [
        &b"x\r\n\r\n"[..],
        b"\r\n0\r\n\r\n",
        b" 5\r\nhello\r\n0\r\n\r\n",
        b"-1\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\n0\r\n\r\n",
        b"5\r\nhelloX\r\n0\r\n\r\n",
        b"5\r\nhello\rX0\r\n\r\n",
        b"5x\r\nhello\r\n",
        b"5 5\r\nhello\r\n",
        b"5;a\x01b\r\nhello\r\n",
        b"5;a\nb\r\nhello\r\n",
        b"0\r\n\n",
        b"0\r\n\r\r",
        b"0\r\n bad: fold\r\n\r\n",
        b"0\r\nX-A: 1\r\n continued\r\n\r\n",
        b"0\r\nNo colon\r\n\r\n",
        b"0\r\nX-A: \x00\r\n\r\n",
        b"0\r\nX-A: 1\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
    ] {
        check_rejected_every_split(bad);
    }
}

#[test]
fn chunk_size_overflow_is_rejected() {
    // i64::MAX is the largest size accepted; one more hex digit overflows.
    let mut t = BodyTracker::new(BodyFraming::Chunked);
    assert!(t.advance(b"7fffffffffffffff\r\n").is_ok());
    let mut t = BodyTracker::new(BodyFraming::Chunked);
    assert_eq!(
        t.advance(b"80000000000000000\r\n"),
        Err(HttpError::InvalidChunk("chunk size overflows"))
    );
    let mut t = BodyTracker::new(BodyFraming::Chunked);
    assert_eq!(
        t.advance(b"ffffffffffffffffffff\r\n"),
        Err(HttpError::InvalidChunk("chunk size overflows"))
    );
}

#[test]
fn oversized_size_line_and_trailers_are_rejected() {
    let mut line = b"1;".to_vec();
    line.resize(5000, b'a');
    let mut t = BodyTracker::new(BodyFraming::Chunked);
    assert_eq!(
        t.advance(&line),
        Err(HttpError::InvalidChunk("chunk size line too long"))
    );
    let mut t = BodyTracker::new(BodyFraming::Chunked);
    let mut trailer = b"0\r\nX: ".to_vec();
    trailer.resize(40 * 1024, b'a');
    assert_eq!(
        t.advance(&trailer),
        Err(HttpError::InvalidChunk("trailer section too large"))
    );
}

#[test]
fn content_length_counts_and_stops() {
    assert_eq!(
        feed(BodyFraming::Length(5), &[b"he", b"llo", b"NEXT"]).expect("ok"),
        (5, true, b"hello".to_vec())
    );
    let mut t = BodyTracker::new(BodyFraming::Length(3));
    assert_eq!(
        t.advance(b"abcdef").expect("ok"),
        Progress {
            consumed: 3,
            done: true,
            trailer: None
        }
    );
    let mut t = BodyTracker::new(BodyFraming::Length(10));
    t.advance(b"abc").expect("ok");
    assert!(!t.is_done());
    assert_eq!(t.finish_eof(), Err(HttpError::Truncated));
}

#[test]
fn none_and_zero_length_are_done_at_once() {
    for f in [BodyFraming::None, BodyFraming::Length(0)] {
        let mut t = BodyTracker::new(f);
        assert!(t.is_done());
        assert!(!f.has_body());
        assert_eq!(
            t.advance(b"GET").expect("ok"),
            Progress {
                consumed: 0,
                done: true,
                trailer: None
            }
        );
        assert_eq!(t.finish_eof(), Ok(()));
    }
    assert!(BodyFraming::Chunked.has_body());
}

#[test]
fn until_close_takes_everything_and_ends_at_eof() {
    let mut t = BodyTracker::new(BodyFraming::UntilClose);
    assert_eq!(
        t.advance(b"abc").expect("ok"),
        Progress {
            consumed: 3,
            done: false,
            trailer: None
        }
    );
    assert_eq!(t.finish_eof(), Ok(()));
    assert!(t.is_done());
}

#[test]
fn chunked_eof_before_last_chunk_is_truncation() {
    let mut t = BodyTracker::new(BodyFraming::Chunked);
    t.advance(b"5\r\nhel").expect("ok");
    assert_eq!(t.finish_eof(), Err(HttpError::Truncated));
}

#[test]
fn max_body_size_declared_length_fails_up_front() {
    assert!(matches!(
        BodyTracker::new(BodyFraming::Length(11)).with_max_size(10),
        Err(HttpError::BodyTooLarge)
    ));
    assert!(
        BodyTracker::new(BodyFraming::Length(10))
            .with_max_size(10)
            .is_ok()
    );
    assert!(
        BodyTracker::new(BodyFraming::Length(u64::MAX >> 2))
            .with_max_size(0)
            .is_ok(),
        "0 means unlimited"
    );
}

#[test]
fn max_body_size_chunked_fails_at_the_chunk_that_crosses() {
    let mut t = BodyTracker::new(BodyFraming::Chunked)
        .with_max_size(8)
        .expect("no declared length");
    t.advance(b"5\r\nhello\r\n").expect("5 <= 8");
    assert_eq!(t.advance(b"4\r\n"), Err(HttpError::BodyTooLarge));
    let mut t = BodyTracker::new(BodyFraming::Chunked)
        .with_max_size(8)
        .expect("no declared length");
    assert!(t.advance(b"5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n").is_ok());
}

#[test]
fn max_body_size_until_close() {
    let mut t = BodyTracker::new(BodyFraming::UntilClose)
        .with_max_size(4)
        .expect("ok");
    t.advance(b"abcd").expect("4 <= 4");
    assert_eq!(t.advance(b"e"), Err(HttpError::BodyTooLarge));
}

#[test]
fn mutated_chunked_bodies_never_panic() {
    let base = b"5;e=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nX-T: 1\r\n\r\n";
    let mut rng = fastrand::Rng::with_seed(0x626f_6479);
    let alphabet = b"\r\n;0aF: \t\x00x";
    for _ in 0..20_000 {
        let mut buf = base.to_vec();
        for _ in 0..rng.usize(1..4) {
            let i = rng.usize(..buf.len());
            buf[i] = alphabet[rng.usize(..alphabet.len())];
        }
        let cut = rng.usize(..=buf.len());
        let mut t = BodyTracker::new(BodyFraming::Chunked);
        let mut total = 0;
        for part in [&buf[..cut], &buf[cut..]] {
            match t.advance(part) {
                Ok(p) => {
                    assert!(p.consumed <= part.len());
                    total += p.consumed;
                    if p.done {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        assert!(total <= buf.len());
    }
}

/// The trailer fields of a chunked body are reported so that a proxy can drop them; the
/// last chunk and the final CRLF stay, wherever the reads split them.
#[test]
fn trailer_fields_are_located_across_reads() {
    let data = b"3\r\nabc\r\n0\r\nX-Consumer-Username: admin\r\nA: b\r\n\r\nNEXT";
    for split in 0..data.len() {
        let mut t = BodyTracker::new(BodyFraming::Chunked);
        let mut kept = Vec::new();
        let mut at = 0;
        for part in [&data[..split], &data[split..]] {
            let p = t.advance(part).expect("valid");
            let body = &part[..p.consumed];
            match p.trailer {
                Some((start, end)) => {
                    kept.extend_from_slice(&body[..start]);
                    kept.extend_from_slice(&body[end..]);
                }
                None => kept.extend_from_slice(body),
            }
            at += p.consumed;
            if p.done {
                break;
            }
        }
        assert_eq!(kept, b"3\r\nabc\r\n0\r\n\r\n", "split at {split}");
        assert_eq!(at, data.len() - 4, "split at {split}");
    }
}
