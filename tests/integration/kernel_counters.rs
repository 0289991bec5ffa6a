//! `log_kernel_counters`: the client connection's kernel counters (TCP_INFO) in the log
//! phase. Over plain HTTP the bytes on the wire are the HTTP bytes, so each request's share
//! must equal exactly what the client sent and read; over TLS they include the records and
//! the handshake. Requests go to an upstream, so gangway reads every body it is sent.

use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::Value;

use crate::harness::{Gangway, Options, TempDir, Upstream, connect, json_lines};
use crate::metrics::{sample, scrape};
use crate::tls::tls_request;

fn start(mode: &str, tls: bool) -> (Gangway, TempDir, Upstream) {
    let up = Upstream::start();
    let dir = TempDir::new("kernel-counters");
    let config = format!(
        r#"_format_version: "3.0"
plugins:
  - name: prometheus
    config:
      bandwidth_metrics: true
services:
  - name: s
    url: http://{}
    routes:
      - name: r
        paths: ["/"]
        plugins:
          - name: file-log
            config:
              path: {}
"#,
        up.addr,
        dir.path("access.log").display()
    );
    let mut opts = Options::new(config).env("GANGWAY_LOG_KERNEL_COUNTERS", mode);
    if tls {
        opts = opts.tls();
    }
    (Gangway::start_with(opts), dir, up)
}

/// Reads one response with a Content-Length body and returns every byte of it.
fn read_answer(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("response head");
        got.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&got).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .expect("content-length")
        .trim()
        .parse()
        .expect("length");
    let mut body = vec![0u8; length];
    s.read_exact(&mut body).expect("body");
    got.extend_from_slice(&body);
    got
}

fn post(body_len: usize) -> Vec<u8> {
    let mut raw =
        format!("POST /k HTTP/1.1\r\nHost: example.test\r\nContent-Length: {body_len}\r\n\r\n")
            .into_bytes();
    raw.extend(std::iter::repeat_n(b'x', body_len));
    raw
}

#[test]
fn each_request_logs_its_own_bytes_on_the_wire_and_the_connections_counters() {
    let (gw, dir, _up) = start("on", false);
    let mut s = connect(gw.proxy);
    let mut exchanged = Vec::new();
    for body_len in [100, 5000] {
        let raw = post(body_len);
        s.write_all(&raw).expect("send");
        let answer = read_answer(&mut s);
        assert!(answer.starts_with(b"HTTP/1.1 200 "), "{answer:?}");
        exchanged.push((raw.len() as u64, answer.len() as u64));
    }
    let log = json_lines(&dir.path("access.log"), 2);

    let first = &log[0]["kernel"];
    let second = &log[1]["kernel"];
    for (entry, (sent, read)) in log.iter().zip(&exchanged) {
        let kernel = &entry["kernel"];
        assert_eq!(kernel["request_bytes"], *sent, "{entry}");
        assert_eq!(kernel["response_bytes"], *read, "{entry}");
        // `on` leaves Kong's sizes alone; over plain HTTP they agree with the kernel.
        assert_eq!(entry["request"]["size"], *sent);
        assert_eq!(entry["response"]["size"], *read);
    }
    let connection = first["connection"].as_u64().expect("cookie");
    assert!(connection > 0);
    assert_eq!(
        second["connection"], connection,
        "one connection, one cookie"
    );
    let total_in = exchanged.iter().map(|(s, _)| s).sum::<u64>();
    assert_eq!(second["bytes_received"], total_in);
    assert_eq!(
        second["bytes_sent"],
        exchanged.iter().map(|(_, r)| r).sum::<u64>()
    );
    let segments_in = |k: &Value| k["segments_in"].as_u64().expect("segments_in");
    assert!(segments_in(second) >= segments_in(first) && segments_in(first) >= 2);
    assert_eq!(second["retransmits"], 0, "loopback");
    assert!(second["rtt_us"].as_u64().is_some());

    let other = connect(gw.proxy);
    drop(other);
    let mut third = connect(gw.proxy);
    third.write_all(&post(1)).expect("send");
    read_answer(&mut third);
    let log = json_lines(&dir.path("access.log"), 3);
    assert_ne!(log[2]["kernel"]["connection"], connection);
    assert_eq!(log[2]["kernel"]["bytes_received"], post(1).len() as u64);
}

#[test]
fn sizes_mode_counts_tls_records_and_handshake_and_off_adds_nothing() {
    let (gw, dir, _up) = start("sizes", true);
    let raw = b"GET /k HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n";
    let (resp, _, _) = tls_request(gw.proxy_tls.expect("tls listener"), "example.test", raw);
    assert_eq!(resp.status, 200);
    let entry = &json_lines(&dir.path("access.log"), 1)[0];
    let kernel = &entry["kernel"];
    let request_bytes = kernel["request_bytes"].as_u64().expect("request_bytes");
    let response_bytes = kernel["response_bytes"].as_u64().expect("response_bytes");
    // The ClientHello alone is a few hundred bytes; the server's flight carries a
    // certificate.
    assert!(request_bytes > raw.len() as u64 + 200, "{entry}");
    assert!(response_bytes > 500, "{entry}");
    assert_eq!(entry["request"]["size"], request_bytes);
    assert_eq!(entry["response"]["size"], response_bytes);
    // What log plugins count is the same figure.
    let metrics = scrape(&gw);
    for (direction, bytes) in [("ingress", request_bytes), ("egress", response_bytes)] {
        let labels = format!("route=\"r\",direction=\"{direction}\"");
        assert_eq!(
            sample(&metrics, "kong_bandwidth_bytes", &[&labels]),
            Some(bytes as f64),
            "{direction}: {metrics}"
        );
    }

    let (gw, dir, _up) = start("off", false);
    let mut s = connect(gw.proxy);
    s.write_all(&post(10)).expect("send");
    read_answer(&mut s);
    let entry = &json_lines(&dir.path("access.log"), 1)[0];
    assert!(entry.get("kernel").is_none(), "{entry}");
    assert_eq!(entry["request"]["size"], post(10).len() as u64);
}
