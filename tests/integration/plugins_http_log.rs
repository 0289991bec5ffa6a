//! http-log end to end: entries reach a real log server over a socket, with Kong's method,
//! headers, basic auth from the URL, batching into JSON arrays, and retries after a failure.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Gangway, Upstream, request};

/// One request the log server received.
#[derive(Debug, Clone)]
struct Received {
    line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Which connection it came on, in the order the server accepted them.
    conn: usize,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A log server: records every request and answers with the next scripted status (200 once
/// the script is used up).
struct LogServer {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

impl LogServer {
    fn start(script: &[u16]) -> LogServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let statuses = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
        let rec = received.clone();
        std::thread::spawn(move || {
            for (conn, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { continue };
                let (rec, statuses) = (rec.clone(), statuses.clone());
                std::thread::spawn(move || serve_log_connection(stream, conn, &rec, &statuses));
            }
        });
        LogServer { addr, received }
    }

    /// Waits (at most 5 s) until `n` requests arrived; returns them.
    fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = self.received.lock().expect("not poisoned").clone();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} log posts arrived",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Answers the requests of one keep-alive connection until the client closes it.
fn serve_log_connection(
    stream: TcpStream,
    conn: usize,
    received: &Mutex<Vec<Received>>,
    statuses: &Mutex<VecDeque<u16>>,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(90)));
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if !matches!(reader.read_line(&mut line), Ok(1..)) {
            return;
        }
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).is_err() || h.trim_end().is_empty() {
                break;
            }
            if let Some((k, v)) = h.trim_end().split_once(':') {
                headers.push((k.to_string(), v.trim().to_string()));
            }
        }
        let len = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        received.lock().expect("not poisoned").push(Received {
            line: line.trim_end().to_string(),
            headers,
            body,
            conn,
        });
        let status = statuses
            .lock()
            .expect("not poisoned")
            .pop_front()
            .unwrap_or(200);
        let answer = format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\n\r\nok");
        if reader.get_mut().write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

fn start(single: &LogServer, batched: &LogServer) -> (Upstream, Gangway) {
    let up = Upstream::start();
    let config = format!(
        r#"_format_version: "3.0"
services:
  - name: echo
    url: http://{up}
    routes:
      - name: single
        paths: ["/single"]
        plugins:
          - name: http-log
            config:
              http_endpoint: http://logger:s3cret@{single}/ingest?source=gw
              method: PUT
              headers:
                X-Token: abc
      - name: batched
        paths: ["/batched"]
        plugins:
          - name: http-log
            config:
              http_endpoint: http://{batched}/bulk
              content_type: "application/json; charset=utf-8"
              queue:
                max_batch_size: 3
                max_coalescing_delay: 2
                initial_retry_delay: 0.05
"#,
        up = up.addr,
        single = single.addr,
        batched = batched.addr,
    );
    let gw = Gangway::start(&config);
    (up, gw)
}

fn uuid() -> String {
    format!("{:032x}", fastrand::u128(..))
}

#[test]
fn each_transaction_is_posted_with_kongs_headers() {
    let (single, batched) = (LogServer::start(&[]), LogServer::start(&[]));
    let (_up, gw) = start(&single, &batched);
    let id = uuid();
    let r = request(gw.proxy, "GET", "/single", &[("file-log-uuid", &id)], b"").expect("request");
    assert_eq!(r.status, 200);
    let got = single.wait_for(1);
    let post = &got[0];
    assert_eq!(post.line, "PUT /ingest?source=gw HTTP/1.1");
    assert_eq!(post.header("Content-Type"), Some("application/json"));
    // base64("logger:s3cret")
    assert_eq!(
        post.header("Authorization"),
        Some("Basic bG9nZ2VyOnMzY3JldA==")
    );
    assert_eq!(post.header("X-Token"), Some("abc"));
    assert_eq!(
        post.header("Host"),
        Some(format!("127.0.0.1:{}", single.addr.port()).as_str())
    );
    let entry: Value = serde_json::from_slice(&post.body).expect("one JSON object");
    assert_eq!(entry["request"]["headers"]["file-log-uuid"], id.as_str());
    assert_eq!(entry["response"]["status"], 200);
    assert_eq!(entry["route"]["name"], "single");
    assert_eq!(entry["source"], "upstream");
}

#[test]
fn posts_reuse_one_kept_alive_connection() {
    let (single, batched) = (LogServer::start(&[]), LogServer::start(&[]));
    let (_up, gw) = start(&single, &batched);
    for n in 1..=3 {
        let r = request(gw.proxy, "GET", "/single", &[], b"").expect("request");
        assert_eq!(r.status, 200);
        // One post at a time: each waits for the one before to return its connection.
        single.wait_for(n);
    }
    let conns: Vec<usize> = single.wait_for(3).iter().map(|r| r.conn).collect();
    assert_eq!(
        conns,
        [0, 0, 0],
        "Kong's keepalive (60 s by default) keeps the connection"
    );
}

#[test]
fn entries_are_batched_and_a_failed_batch_is_retried() {
    let (single, batched) = (LogServer::start(&[]), LogServer::start(&[500]));
    let (_up, gw) = start(&single, &batched);
    let ids: Vec<String> = (0..3).map(|_| uuid()).collect();
    for id in &ids {
        let r =
            request(gw.proxy, "GET", "/batched", &[("file-log-uuid", id)], b"").expect("request");
        assert_eq!(r.status, 200);
    }
    let got = batched.wait_for(2);
    assert_eq!(got[0].body, got[1].body, "the failed batch is sent again");
    assert_eq!(got[0].line, "POST /bulk HTTP/1.1");
    assert_eq!(
        got[1].header("Content-Type"),
        Some("application/json; charset=utf-8")
    );
    let batch: Vec<Value> = serde_json::from_slice(&got[1].body).expect("a JSON array");
    let mut logged: Vec<&str> = batch
        .iter()
        .filter_map(|e| e["request"]["headers"]["file-log-uuid"].as_str())
        .collect();
    // The log phase runs after each response is sent and the requests come on separate
    // connections, which two workers may serve: their entries join the queue in either order.
    logged.sort_unstable();
    let mut sent: Vec<&str> = ids.iter().map(String::as_str).collect();
    sent.sort_unstable();
    assert_eq!(logged, sent);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        batched.received.lock().expect("not poisoned").len(),
        2,
        "sent once more after the 500, then no further"
    );
}

#[test]
fn queued_entries_are_sent_before_gangway_exits() {
    let (single, batched) = (LogServer::start(&[]), LogServer::start(&[]));
    let (_up, mut gw) = start(&single, &batched);
    let id = uuid();
    let r = request(gw.proxy, "GET", "/batched", &[("file-log-uuid", &id)], b"").expect("request");
    assert_eq!(r.status, 200);
    // One entry of a batch of three waits up to max_coalescing_delay (2 s): stop meanwhile.
    gw.signal(libc::SIGTERM);
    let status = gw.wait_exit(Duration::from_secs(10)).expect("exited");
    assert!(status.success(), "{status:?}");
    let got = batched.wait_for(1);
    let batch: Vec<Value> = serde_json::from_slice(&got[0].body).expect("a JSON array");
    assert_eq!(batch[0]["request"]["headers"]["file-log-uuid"], id.as_str());
}
