//! The log phase (file-log, Kong's `kong.log.serialize()` shape), body_filter on plugin-made
//! responses, and `protocols` selecting the subsystem. Assertions on the log line follow
//! Kong's spec/03-plugins/04-file-log/01-log_spec.lua.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Gangway, TempDir, Upstream, connect, free_port, request};

struct Setup {
    up: Upstream,
    gw: Gangway,
    dir: TempDir,
}

impl Setup {
    fn route_log(&self) -> std::path::PathBuf {
        self.dir.path("route.log")
    }

    fn global_log(&self) -> std::path::PathBuf {
        self.dir.path("global.log")
    }
}

fn start() -> Setup {
    let up = Upstream::start();
    let dir = TempDir::new("file-log");
    let route_log = dir.path("route.log");
    let global_log = dir.path("global.log");
    let config = format!(
        r#"_format_version: "3.0"
plugins:
  - name: file-log
    config:
      path: {global}
consumers:
  - username: alice
    custom_id: a-1
    keyauth_credentials:
      - key: alice-key
services:
  - name: echo
    url: http://{up}
    routes:
      - name: logged
        paths: ["/logged"]
        plugins:
          - name: correlation-id
            config: {{header_name: X-Corr}}
          - name: file-log
            config:
              path: {route}
      - name: auth
        paths: ["/auth"]
        plugins:
          - name: key-auth
            config:
              hide_credentials: true
          - name: file-log
            config:
              path: {route}
      - name: teapot
        paths: ["/teapot"]
        plugins:
          - name: request-termination
            config:
              status_code: 418
              message: "I'm a teapot"
          - name: file-log
            config:
              path: {route}
      - name: exit-json
        paths: ["/exit-json"]
        plugins:
          - name: request-termination
            config:
              status_code: 200
              content_type: application/json
              body: '{{"a":1}}'
          - name: response-transformer
            config:
              add:
                json: ["b:2"]
                headers: ["x-added:yes"]
              remove:
                headers: ["x-gone"]
      - name: stream-only
        paths: ["/stream-only"]
        plugins:
          - name: ip-restriction
            protocols: ["tcp"]
            config:
              deny: ["0.0.0.0/0"]
  - name: dead
    url: http://127.0.0.1:{dead}
    routes:
      - name: dead
        paths: ["/dead"]
  - name: slow
    url: http://{up}
    read_timeout: 300
    routes:
      - name: slow
        paths: ["/slow"]
"#,
        global = global_log.display(),
        route = route_log.display(),
        up = up.addr,
        dead = free_port(),
    );
    let gw = Gangway::start(&config);
    Setup { up, gw, dir }
}

/// Waits (at most 5 s) for a log line whose request carries `file-log-uuid: uuid`.
fn wait_line(path: &Path, uuid: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(line) = find_line(path, uuid) {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no log line for {uuid} in {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn find_line(path: &Path, uuid: &str) -> Option<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    crate::harness::complete_lines(&text)
        .map(|l| serde_json::from_str::<Value>(l).expect("each line is one JSON document"))
        .find(|v| v["request"]["headers"]["file-log-uuid"] == uuid)
}

fn uuid() -> String {
    format!("{:032x}", fastrand::u128(..))
}

/// Sends `raw` and returns every byte of the answer (the request asks to close).
fn exchange_raw(addr: SocketAddr, raw: impl AsRef<[u8]>) -> Vec<u8> {
    let mut s = connect(addr);
    s.write_all(raw.as_ref()).expect("send");
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read");
    out
}

#[test]
fn a_proxied_request_is_logged_in_kongs_shape() {
    let t = start();
    let id = uuid();
    let raw = format!(
        "GET /logged?a=1&flag&a=2 HTTP/1.1\r\nHost: Example.test\r\nfile-log-uuid: {id}\r\n\
         Authorization: Basic c2VjcmV0\r\nX-Twice: 1\r\nX-Twice: 2\r\nConnection: close\r\n\r\n"
    );
    let answer = exchange_raw(t.gw.proxy, &raw);
    assert!(answer.starts_with(b"HTTP/1.1 200 "), "{answer:?}");
    let log = wait_line(&t.route_log(), &id);

    assert_eq!(log["client_ip"], "127.0.0.1");
    let req = &log["request"];
    assert_eq!(req["method"], "GET");
    assert_eq!(req["uri"], "/logged?a=1&flag&a=2");
    assert_eq!(
        req["url"],
        format!(
            "http://example.test:{}/logged?a=1&flag&a=2",
            t.gw.proxy.port()
        )
    );
    assert_eq!(req["querystring"], json!({"a": ["1", "2"], "flag": true}));
    assert_eq!(req["headers"]["authorization"], "REDACTED");
    assert_eq!(req["headers"]["x-twice"], json!(["1", "2"]));
    assert_eq!(req["headers"]["host"], "Example.test");
    assert_eq!(req["size"], raw.len());
    assert_eq!(req["id"].as_str().map(str::len), Some(32));

    let resp = &log["response"];
    assert_eq!(resp["status"], 200);
    assert_eq!(resp["size"], answer.len(), "bytes sent to the client");
    assert_eq!(resp["headers"]["content-type"], "application/json");
    assert_eq!(log["upstream_uri"], "/?a=1&flag&a=2");
    assert_eq!(log["upstream_status"], "200");
    assert_eq!(log["source"], "upstream");
    // Kong's correlation-id sets the entry's `correlation_id`.
    assert!(
        log["correlation_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
            && log["correlation_id"] == req["headers"]["x-corr"],
        "{log}"
    );
    assert_eq!(log["route"]["name"], "logged");
    assert_eq!(log["service"]["name"], "echo");
    // As Kong copies DAO rows: unset fields absent (not null), and the workspace id.
    for entity in ["route", "service"] {
        let fields = log[entity].as_object().expect("an object");
        assert!(
            fields.values().all(|v| !v.is_null()),
            "{entity}: {fields:?}"
        );
        assert_eq!(log[entity]["ws_id"], "0dc6f45b-8f8d-40d2-a504-473544ee190b");
    }
    assert!(
        log["route"].get("hosts").is_none(),
        "unset: {}",
        log["route"]
    );
    assert_eq!(log["tries"][0]["port"], t.up.addr.port());
    assert_eq!(log["tries"][0]["ip"], "127.0.0.1");
    assert!(log["latencies"]["proxy"].as_i64().is_some_and(|p| p >= 0));
    let request_ms = log["latencies"]["request"]
        .as_u64()
        .expect("request latency");
    assert!(log["latencies"]["kong"].as_u64().expect("kong latency") <= request_ms);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let started = log["started_at"].as_u64().expect("started_at");
    assert!(started <= now_ms && now_ms - started < 60_000, "{started}");
    assert_eq!(log["workspace_name"], "default");
    assert!(log.get("consumer").is_none());

    // The route's instance wins over the global one: logged once, in the route's file.
    assert!(find_line(&t.global_log(), &id).is_none());
}

#[test]
fn bytes_json_must_escape_or_replace_reach_the_log_as_valid_json() {
    // The entry is written as text: quotes, backslashes, tabs, a Latin-1 byte (obs-text,
    // which HTTP allows in a value) and UTF-8 in headers and the query. A plugin answers
    // (the harness's echo upstream gives no valid answer to non-UTF-8 header bytes).
    let t = start();
    let id = uuid();
    let mut raw = format!(
        "GET /teapot?q=%22quoted%22&%5C=back&e=%E2%82%AC HTTP/1.1\r\nHost: a.test\r\n\
         file-log-uuid: {id}\r\n"
    )
    .into_bytes();
    raw.extend_from_slice(
        b"X-Odd: caf\xe9 \"q\" \\ end\t!\r\nX-Utf8: \xe2\x82\xac\r\nConnection: close\r\n\r\n",
    );
    let answer = exchange_raw(t.gw.proxy, &raw);
    assert!(answer.starts_with(b"HTTP/1.1 418 "), "{answer:?}");
    let log = wait_line(&t.route_log(), &id);
    let req = &log["request"];
    assert_eq!(req["headers"]["x-odd"], "caf\u{fffd} \"q\" \\ end\t!");
    assert_eq!(req["headers"]["x-utf8"], "\u{20ac}");
    assert_eq!(
        req["querystring"],
        json!({"q": "\"quoted\"", "\\": "back", "e": "\u{20ac}"})
    );
    assert_eq!(req["size"], raw.len());
}

#[test]
fn authenticated_and_rejected_requests_are_logged() {
    let t = start();
    let ok = uuid();
    let r = request(
        t.gw.proxy,
        "GET",
        "/auth",
        &[("apikey", "alice-key"), ("file-log-uuid", &ok)],
        b"",
    )
    .expect("request");
    assert_eq!(r.status, 200);
    let log = wait_line(&t.route_log(), &ok);
    assert_eq!(log["consumer"]["username"], "alice");
    assert_eq!(log["consumer"]["custom_id"], "a-1");
    // Kong loads the consumer with a plain select, which drops `ws_id` (routes and services,
    // read by the router with `show_ws_id`, keep theirs).
    assert!(
        log["consumer"].get("ws_id").is_none(),
        "{}",
        log["consumer"]
    );
    assert!(log["route"]["ws_id"].is_string(), "{}", log["route"]);
    assert_eq!(
        log["authenticated_entity"]["consumer_id"],
        log["consumer"]["id"]
    );
    assert!(log["authenticated_entity"]["id"].is_string());
    // hide_credentials removed the key before the log phase read the headers.
    assert!(log["request"]["headers"].get("apikey").is_none());

    // key-auth's 401 is a short-circuit: header_filter and log still run.
    let denied = uuid();
    let r = request(
        t.gw.proxy,
        "GET",
        "/auth",
        &[("file-log-uuid", &denied)],
        b"",
    )
    .expect("request");
    assert_eq!(r.status, 401);
    let log = wait_line(&t.route_log(), &denied);
    assert_eq!(log["response"]["status"], 401);
    assert_eq!(log["source"], "kong");
    assert_eq!(log["upstream_uri"], "");
    assert_eq!(log["latencies"]["proxy"], -1);
    assert!(log.get("consumer").is_none());
    assert!(log.get("tries").is_none());
}

#[test]
fn plugin_answers_and_gateway_errors_are_logged() {
    let t = start();
    let id = uuid();
    let r = request(t.gw.proxy, "GET", "/teapot", &[("file-log-uuid", &id)], b"").expect("request");
    assert_eq!(r.status, 418);
    let log = wait_line(&t.route_log(), &id);
    assert_eq!(log["response"]["status"], 418);
    assert_eq!(log["source"], "kong");
    assert!(
        log.get("correlation_id").is_none(),
        "no correlation-id here"
    );
    assert_eq!(log["route"]["name"], "teapot");

    // No route: the global plugins log the 404, with no route or service.
    let lost = uuid();
    let r = request(
        t.gw.proxy,
        "GET",
        "/nowhere",
        &[("file-log-uuid", &lost)],
        b"",
    )
    .expect("request");
    assert_eq!(r.status, 404);
    let log = wait_line(&t.global_log(), &lost);
    assert_eq!(log["response"]["status"], 404);
    assert_eq!(log["source"], "kong");
    assert!(log.get("route").is_none() && log.get("service").is_none());

    // An upstream that refuses connections: the global instance logs Kong's 502.
    let dead = uuid();
    let r = request(t.gw.proxy, "GET", "/dead", &[("file-log-uuid", &dead)], b"").expect("request");
    assert_eq!(r.status, 502);
    let log = wait_line(&t.global_log(), &dead);
    assert_eq!(log["response"]["status"], 502);
    assert_eq!(log["source"], "kong");
    // nginx's `$upstream_status`: 502 for each try (Kong retries 5 times by default), and
    // Kong's `tries` note why each but the last failed.
    let tries = log["tries"].as_array().expect("tries");
    assert_eq!(tries.len(), 6, "{log}");
    assert_eq!(log["upstream_status"], ["502"; 6].join(", "));
    for attempt in &tries[..5] {
        assert_eq!(attempt["state"], "failed", "{attempt}");
        assert_eq!(attempt["code"], 502, "{attempt}");
    }
    assert!(tries[5].get("state").is_none(), "{}", tries[5]);
    // Kong books the tries on the upstream (KONG_WAITING_TIME), not as its own latency.
    assert!(
        log["latencies"]["proxy"].as_i64().is_some_and(|p| p >= 0),
        "{}",
        log["latencies"]
    );
    assert_eq!(log["route"]["name"], "dead");
    // An upstream timing out: the 300 ms wait is the upstream's, not gangway's (it was all
    // booked as `kong`, and `proxy` was -1).
    let slow = uuid();
    let r = request(
        t.gw.proxy,
        "GET",
        "/slow",
        &[("file-log-uuid", &slow), ("x-echo-delay-ms", "1500")],
        b"",
    )
    .expect("request");
    assert_eq!(r.status, 504);
    let log = wait_line(&t.global_log(), &slow);
    let latencies = &log["latencies"];
    assert!(
        latencies["proxy"].as_i64().is_some_and(|p| p >= 300),
        "{latencies}"
    );
    assert!(
        latencies["kong"].as_i64().is_some_and(|k| k < 200),
        "{latencies}"
    );
    // Each try starts its balancer step when it begins, a read timeout (300 ms) after the
    // one before, from the request's start on (they all carried the request's start).
    let tries = log["tries"].as_array().expect("tries");
    assert!(tries.len() > 1, "the GET is retried: {log}");
    let started_at = log["started_at"].as_u64().expect("started_at");
    let starts: Vec<u64> = tries
        .iter()
        .map(|t| t["balancer_start"].as_u64().expect("balancer_start"))
        .collect();
    assert!(
        starts[0] >= started_at && starts[0] < started_at + 200,
        "{starts:?} {started_at}"
    );
    for pair in starts.windows(2) {
        assert!(pair[1] >= pair[0] + 290, "{starts:?}");
    }
    for t in tries {
        let ms = t["balancer_start"].as_u64().expect("ms");
        let ns = t["balancer_start_ns"].as_u64().expect("ns");
        assert!(
            ns / 1_000_000 >= ms.saturating_sub(1) && ns / 1_000_000 <= ms + 1,
            "{t}"
        );
        assert!(
            t["balancer_latency"].as_u64().is_some_and(|l| l < 100),
            "{t}"
        );
        assert!(t["balancer_latency_ns"].as_u64().is_some(), "{t}");
    }
}

#[test]
fn body_filter_runs_on_plugin_made_responses() {
    let t = start();
    let r = t.gw.get("/exit-json");
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"a": 1, "b": "2"}));
    assert_eq!(r.header("x-added"), Some("yes"));
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str())
    );
}

#[test]
fn a_stream_only_plugin_does_not_run_on_http() {
    let t = start();
    assert_eq!(t.gw.get("/stream-only").status, 200);
}

#[test]
fn a_tls_request_is_logged_with_its_protocol_and_cipher() {
    let up = Upstream::start();
    let dir = TempDir::new("file-log-tls");
    let path = dir.path("tls.log");
    let config = format!(
        "_format_version: \"3.0\"\nplugins:\n  - name: file-log\n    config:\n      path: {}\nservices:\n  - name: echo\n    url: http://{}\n    routes:\n      - paths: [\"/\"]\n",
        path.display(),
        up.addr
    );
    let gw = Gangway::start_with(crate::harness::Options::new(config).tls());
    let id = uuid();
    let raw = format!(
        "GET /tls HTTP/1.1\r\nHost: localhost\r\nfile-log-uuid: {id}\r\nConnection: close\r\n\r\n"
    );
    let tls_addr = gw.proxy_tls.expect("a TLS listener");
    let (r, _, _) = crate::tls::tls_request(tls_addr, "localhost", raw.as_bytes());
    assert_eq!(r.status, 200);
    let log = wait_line(&path, &id);
    assert_eq!(log["request"]["tls"]["version"], "TLSv1.3");
    assert!(
        log["request"]["tls"]["cipher"]
            .as_str()
            .is_some_and(|c| c.starts_with("TLS_") && !c.starts_with("TLS13")),
        "{}",
        log["request"]["tls"]
    );
    assert_eq!(log["request"]["tls"]["client_verify"], "NONE");
    assert!(
        log["request"]["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://localhost:"))
    );
}

/// `latencies.receive` is the time from the upstream's response head to the end of its
/// body (Kong's `KONG_RECEIVE_TIME`); it was always 0.
#[test]
fn receive_latency_is_the_time_the_upstream_body_took() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let up = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else {
            return;
        };
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).is_ok_and(|n| n == 1) {
            head.push(byte[0]);
        }
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab");
        std::thread::sleep(Duration::from_millis(400));
        let _ = s.write_all(b"cd");
        std::thread::sleep(Duration::from_secs(2));
    });
    let dir = TempDir::new("receive-latency");
    let log = dir.path("route.log");
    let gw = Gangway::start(&format!(
        "_format_version: \"3.0\"\nservices:\n  - name: slow-body\n    url: http://{up}\n    routes:\n      - paths: [\"/\"]\n        plugins:\n          - name: file-log\n            config:\n              path: {}\n",
        log.display()
    ));
    let id = uuid();
    let r = request(gw.proxy, "GET", "/", &[("file-log-uuid", &id)], b"").expect("request");
    assert_eq!(r.body, b"abcd");
    let line = wait_line(&log, &id);
    let receive = line["latencies"]["receive"].as_u64().expect("receive");
    let request_ms = line["latencies"]["request"].as_u64().expect("request");
    assert!(
        (350..=request_ms).contains(&receive),
        "receive {receive} ms of {request_ms}: {}",
        line["latencies"]
    );
}

/// `request.size` of a chunked upload is the head and the body as they came, framing
/// included (nginx's `$request_length`); it counted the head only.
#[test]
fn a_chunked_upload_counts_its_body_in_the_request_size() {
    let t = start();
    for split in [false, true] {
        let id = uuid();
        let head = format!(
            "POST /logged HTTP/1.1\r\nHost: x\r\nfile-log-uuid: {id}\r\nTransfer-Encoding: chunked\r\n\
             Connection: close\r\n\r\n"
        );
        let body = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        let mut s = connect(t.gw.proxy);
        s.write_all(head.as_bytes()).expect("head");
        if split {
            // The body comes after the head was read: it is streamed to the upstream.
            std::thread::sleep(Duration::from_millis(200));
        }
        s.write_all(body.as_bytes()).expect("body");
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).expect("answer");
        assert!(answer.starts_with(b"HTTP/1.1 200 "), "{answer:?}");
        let log = wait_line(&t.route_log(), &id);
        assert_eq!(
            log["request"]["size"],
            head.len() + body.len(),
            "split: {split}"
        );
    }
}

#[test]
fn a_reload_logs_the_new_route_and_service_objects() {
    let up = Upstream::start();
    let dir = TempDir::new("file-log-reload");
    let log = dir.path("route.log");
    let config = |route: &str, retries: u32| {
        format!(
            "_format_version: \"3.0\"\nservices:\n  - name: echo\n    url: http://{}\n    retries: {retries}\n    routes:\n      - name: {route}\n        paths: [\"/logged\"]\n        plugins:\n          - name: file-log\n            config:\n              path: {}\n",
            up.addr,
            log.display()
        )
    };
    let gw = Gangway::start(&config("before", 5));
    let logged = |id: &str| {
        let raw = format!(
            "GET /logged HTTP/1.1\r\nHost: x\r\nfile-log-uuid: {id}\r\nConnection: close\r\n\r\n"
        );
        let answer = exchange_raw(gw.proxy, &raw);
        assert!(answer.starts_with(b"HTTP/1.1 200 "), "{answer:?}");
        wait_line(&log, id)
    };
    // Twice: the second entry comes from the rows the config keeps serialized.
    for _ in 0..2 {
        let entry = logged(&uuid());
        assert_eq!(
            (&entry["route"]["name"], &entry["service"]["retries"]),
            (&json!("before"), &json!(5))
        );
    }
    gw.write_config(&config("after", 2));
    gw.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let entry = logged(&uuid());
        if entry["route"]["name"] == "after" {
            assert_eq!(entry["service"]["retries"], 2, "{entry}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reloaded route never showed in the log: {entry}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
