//! A minimal OTLP/HTTP trace receiver: the OpenTelemetry collector's `/v1/traces` endpoint
//! (protobuf encoding) on a free loopback port, which records every request it gets so a test
//! can look at the spans gangway exported, and can refuse the first few with `503` to make
//! the exporter retry.
//!
//! It speaks just enough HTTP/1.1 for an exporter: a head, a body framed by `Content-Length`
//! or chunked ([`crate::http1`]), keep-alive unless the client sends `Connection: close`.
//! Compressed bodies are not inflated: a gzip body is recorded as a decode error.

use std::io::{BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

use crate::http1::read_request;

/// The path an OTLP/HTTP exporter posts traces to.
const TRACES_PATH: &str = "/v1/traces";

/// One request the receiver got, in arrival order.
#[derive(Debug, Clone)]
pub struct OtlpRequest {
    /// The method (`POST` from a well-behaved exporter).
    pub method: String,
    /// The request target as sent (`/v1/traces`).
    pub path: String,
    /// The headers in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The decoded body, when it was a POST whose body decoded as an
    /// `ExportTraceServiceRequest`.
    pub body: Option<ExportTraceServiceRequest>,
    /// Why a POST body did not decode (such a request is answered `400`).
    pub decode_error: Option<String>,
    /// The status the receiver answered with: `200`, `400` (undecodable body), `404` (another
    /// path), `405` (another method) or `503` (one of the first `n` of
    /// [`OtlpReceiver::failing`]).
    pub status: u16,
}

impl OtlpRequest {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An attribute value, converted from the proto `AnyValue`.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    /// `string_value`.
    String(String),
    /// `int_value`.
    Int(i64),
    /// `double_value`.
    Double(f64),
    /// `bool_value`.
    Bool(bool),
    /// Anything else (arrays, key-value lists, bytes, an unset value), as its `Debug` text.
    Other(String),
}

impl From<&AnyValue> for AttrValue {
    fn from(v: &AnyValue) -> AttrValue {
        match &v.value {
            Some(any_value::Value::StringValue(s)) => AttrValue::String(s.clone()),
            Some(any_value::Value::IntValue(i)) => AttrValue::Int(*i),
            Some(any_value::Value::DoubleValue(d)) => AttrValue::Double(*d),
            Some(any_value::Value::BoolValue(b)) => AttrValue::Bool(*b),
            Some(other) => AttrValue::Other(format!("{other:?}")),
            None => AttrValue::Other(String::new()),
        }
    }
}

fn attrs(kvs: &[KeyValue]) -> Vec<(String, AttrValue)> {
    kvs.iter()
        .map(|kv| {
            let value = kv
                .value
                .as_ref()
                .map_or(AttrValue::Other(String::new()), AttrValue::from);
            (kv.key.clone(), value)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One span as received, with the resource and instrumentation scope it came under.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// The span.
    pub span: Span,
    /// Its resource's attributes, in order.
    pub resource: Vec<(String, AttrValue)>,
    /// Its instrumentation scope's name (empty without a scope).
    pub scope_name: String,
    /// Its instrumentation scope's version (empty without a scope).
    pub scope_version: String,
}

impl ReceivedSpan {
    /// The trace id, lower-case hex (32 digits from a valid exporter).
    pub fn trace_id_hex(&self) -> String {
        hex(&self.span.trace_id)
    }

    /// The span id, lower-case hex (16 digits from a valid exporter).
    pub fn span_id_hex(&self) -> String {
        hex(&self.span.span_id)
    }

    /// The parent span id, lower-case hex; empty for a root span (no parent id, or an
    /// all-zero one).
    pub fn parent_span_id_hex(&self) -> String {
        if self.span.parent_span_id.iter().all(|b| *b == 0) {
            return String::new();
        }
        hex(&self.span.parent_span_id)
    }

    /// The span attribute `key` (the first, should it repeat).
    pub fn attr(&self, key: &str) -> Option<AttrValue> {
        find_attr(&self.span.attributes, key)
    }

    /// The resource attribute `key`.
    pub fn resource_attr(&self, key: &str) -> Option<AttrValue> {
        self.resource
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }
}

fn find_attr(kvs: &[KeyValue], key: &str) -> Option<AttrValue> {
    kvs.iter().find(|kv| kv.key == key).map(|kv| {
        kv.value
            .as_ref()
            .map_or(AttrValue::Other(String::new()), AttrValue::from)
    })
}

/// What the accept thread, the connection threads and the handle share.
struct Shared {
    requests: Mutex<Vec<OtlpRequest>>,
    /// How many more requests get `503`.
    fail_left: Mutex<usize>,
    stop: AtomicBool,
    /// A clone of every accepted connection, shut down on drop so no thread stays blocked.
    conns: Mutex<Vec<TcpStream>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running OTLP/HTTP trace receiver on 127.0.0.1; stops accepting (and closes its open
/// connections) on drop.
pub struct OtlpReceiver {
    port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl OtlpReceiver {
    /// A receiver that answers every well-formed export `200`.
    pub fn start() -> OtlpReceiver {
        OtlpReceiver::failing(0)
    }

    /// A receiver that answers the first `n` requests `503` (still recording them), then
    /// behaves as [`OtlpReceiver::start`].
    pub fn failing(n: usize) -> OtlpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("otlp receiver: bind 127.0.0.1:0");
        let port = listener
            .local_addr()
            .expect("otlp receiver: local address")
            .port();
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            fail_left: Mutex::new(n),
            stop: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
        });
        let accept_shared = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name(format!("otlp-accept-{port}"))
            .spawn(move || accept_loop(listener, accept_shared))
            .expect("otlp receiver: spawn the accept thread");
        OtlpReceiver {
            port,
            shared,
            accept: Some(accept),
        }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The traces endpoint: `http://127.0.0.1:<port>/v1/traces`.
    pub fn traces_url(&self) -> String {
        format!("http://127.0.0.1:{}{TRACES_PATH}", self.port)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<OtlpRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Every span of every request answered `200`, flattened in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        let requests = lock(&self.shared.requests);
        let mut out = Vec::new();
        for req in requests.iter().filter(|r| r.status == 200) {
            let Some(body) = &req.body else { continue };
            for rs in &body.resource_spans {
                let resource = rs
                    .resource
                    .as_ref()
                    .map(|r| attrs(&r.attributes))
                    .unwrap_or_default();
                for ss in &rs.scope_spans {
                    let (scope_name, scope_version) = ss
                        .scope
                        .as_ref()
                        .map(|s| (s.name.clone(), s.version.clone()))
                        .unwrap_or_default();
                    for span in &ss.spans {
                        out.push(ReceivedSpan {
                            span: span.clone(),
                            resource: resource.clone(),
                            scope_name: scope_name.clone(),
                            scope_version: scope_version.clone(),
                        });
                    }
                }
            }
        }
        out
    }

    /// Waits until at least `n` spans arrived (see [`OtlpReceiver::spans`]) and returns them
    /// all; panics, saying how many arrived, when `timeout` passes first.
    pub fn wait_for_spans(&self, n: usize, timeout: Duration) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if spans.len() >= n {
                return spans;
            }
            if Instant::now() >= deadline {
                let statuses: Vec<u16> = self.requests().iter().map(|r| r.status).collect();
                panic!(
                    "otlp receiver on port {}: waited {timeout:?} for {n} spans, {} arrived \
                     (requests answered {statuses:?})",
                    self.port,
                    spans.len()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Unblock accept(); should the connect fail, leave the thread behind rather than hang.
        if TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && let Some(accept) = self.accept.take()
        {
            let _ = accept.join();
        }
        for conn in lock(&self.shared.conns).drain(..) {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = conn else { continue };
        if let Ok(clone) = stream.try_clone() {
            lock(&shared.conns).push(clone);
        }
        let shared = Arc::clone(&shared);
        // A connection that cannot get a thread is dropped: the client sees it closed.
        let _ = std::thread::Builder::new()
            .name("otlp-conn".into())
            .spawn(move || serve(stream, &shared));
    }
}

/// Serves one connection until the client closes it, asks to, or sends something unreadable.
fn serve(stream: TcpStream, shared: &Shared) {
    let mut reader = BufReader::new(stream);
    while let Ok(Some(req)) = read_request(&mut reader) {
        let close = req
            .header("connection")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")));
        let (status, reason, content_type, body) = answer(req, shared);
        let mut out = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n\
             Content-Length: {}\r\n",
            body.len()
        );
        if close {
            out.push_str("Connection: close\r\n");
        }
        out.push_str("\r\n");
        let mut out = out.into_bytes();
        out.extend_from_slice(&body);
        let stream = reader.get_mut();
        if stream
            .write_all(&out)
            .and_then(|()| stream.flush())
            .is_err()
            || close
        {
            break;
        }
    }
    let _ = reader.get_ref().shutdown(Shutdown::Both);
}

/// Records `req` and picks the answer: status, reason, content type and body.
fn answer(req: crate::http1::Req, shared: &Shared) -> (u16, &'static str, &'static str, Vec<u8>) {
    let headers = req
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    let is_post = req.method == "POST";
    let (body, decode_error) = if is_post {
        match ExportTraceServiceRequest::decode(req.body.as_slice()) {
            Ok(body) => (Some(body), None),
            Err(e) => (None, Some(e.to_string())),
        }
    } else {
        (None, None)
    };
    let path_ok = req.target.split('?').next() == Some(TRACES_PATH);
    let failing = {
        let mut left = lock(&shared.fail_left);
        let failing = *left > 0;
        *left = left.saturating_sub(1);
        failing
    };
    let (status, reason, content_type, out) = if failing {
        (
            503,
            "Service Unavailable",
            "text/plain",
            b"failing on purpose\n".to_vec(),
        )
    } else if !path_ok {
        (
            404,
            "Not Found",
            "text/plain",
            b"only /v1/traces here\n".to_vec(),
        )
    } else if !is_post {
        (
            405,
            "Method Not Allowed",
            "text/plain",
            b"POST only\n".to_vec(),
        )
    } else if let Some(e) = &decode_error {
        (
            400,
            "Bad Request",
            "text/plain",
            format!("{e}\n").into_bytes(),
        )
    } else {
        (
            200,
            "OK",
            "application/x-protobuf",
            ExportTraceServiceResponse::default().encode_to_vec(),
        )
    };
    lock(&shared.requests).push(OtlpRequest {
        method: req.method,
        path: req.target,
        headers,
        body,
        decode_error,
        status,
    });
    (status, reason, content_type, out)
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, Read};

    use opentelemetry_proto::tonic::common::v1::{ArrayValue, InstrumentationScope};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

    use super::*;

    const TRACE_ID: [u8; 16] = [
        0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47,
        0x36,
    ];
    const ROOT_ID: [u8; 8] = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];
    const CHILD_ID: [u8; 8] = [0x53, 0x99, 0x5c, 0x3f, 0x42, 0xcd, 0x8a, 0xd8];

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    /// One resource, one scope, a root span with an attribute of each kind and its child.
    fn export() -> ExportTraceServiceRequest {
        let root = Span {
            trace_id: TRACE_ID.to_vec(),
            span_id: ROOT_ID.to_vec(),
            name: "kong".into(),
            kind: 2,
            start_time_unix_nano: 1_000,
            end_time_unix_nano: 2_000,
            attributes: vec![
                kv("http.method", any_value::Value::StringValue("GET".into())),
                kv("http.status_code", any_value::Value::IntValue(200)),
                kv("sampling.ratio", any_value::Value::DoubleValue(0.5)),
                kv("kong.cached", any_value::Value::BoolValue(true)),
                kv(
                    "list",
                    any_value::Value::ArrayValue(ArrayValue {
                        values: vec![AnyValue {
                            value: Some(any_value::Value::IntValue(1)),
                        }],
                    }),
                ),
            ],
            ..Default::default()
        };
        let child = Span {
            trace_id: TRACE_ID.to_vec(),
            span_id: CHILD_ID.to_vec(),
            parent_span_id: ROOT_ID.to_vec(),
            name: "kong.balancer".into(),
            kind: 3,
            start_time_unix_nano: 1_100,
            end_time_unix_nano: 1_900,
            attributes: vec![kv("try_count", any_value::Value::IntValue(1))],
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv(
                        "service.name",
                        any_value::Value::StringValue("gangway".into()),
                    )],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "gangway".into(),
                        version: "0.1.0".into(),
                        ..Default::default()
                    }),
                    spans: vec![root, child],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    struct Response {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Response {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    fn read_response(r: &mut BufReader<TcpStream>) -> Response {
        let mut line = String::new();
        r.read_line(&mut line).expect("read the status line");
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).expect("read a header");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (k, v) = line.split_once(':').expect("a header line");
            headers.push((k.to_string(), v.trim().to_string()));
        }
        let mut resp = Response {
            status,
            headers,
            body: Vec::new(),
        };
        let len: usize = resp
            .header("content-length")
            .expect("a content-length")
            .parse()
            .expect("a numeric content-length");
        resp.body.resize(len, 0);
        r.read_exact(&mut resp.body).expect("read the body");
        resp
    }

    /// Sends one POST to /v1/traces, `Content-Length` framed, with `extra` header lines.
    fn post(r: &mut BufReader<TcpStream>, body: &[u8], extra: &str) -> Response {
        let head = format!(
            "POST /v1/traces HTTP/1.1\r\nHost: otlp\r\nContent-Type: application/x-protobuf\r\n\
             Content-Length: {}\r\n{extra}\r\n",
            body.len()
        );
        let stream = r.get_mut();
        stream.write_all(head.as_bytes()).expect("write the head");
        stream.write_all(body).expect("write the body");
        read_response(r)
    }

    /// Sends one POST to /v1/traces with the body in two chunks.
    fn post_chunked(r: &mut BufReader<TcpStream>, body: &[u8]) -> Response {
        let (a, b) = body.split_at(body.len() / 2);
        let mut msg = b"POST /v1/traces HTTP/1.1\r\nHost: otlp\r\n\
            Content-Type: application/x-protobuf\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
        for chunk in [a, b] {
            msg.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            msg.extend_from_slice(chunk);
            msg.extend_from_slice(b"\r\n");
        }
        msg.extend_from_slice(b"0\r\n\r\n");
        r.get_mut().write_all(&msg).expect("write the request");
        read_response(r)
    }

    fn connect(rx: &OtlpReceiver) -> BufReader<TcpStream> {
        let stream = TcpStream::connect(("127.0.0.1", rx.port())).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("set a read timeout");
        BufReader::new(stream)
    }

    fn check_ok(resp: &Response) {
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("content-type"), Some("application/x-protobuf"));
        ExportTraceServiceResponse::decode(resp.body.as_slice())
            .expect("an ExportTraceServiceResponse");
    }

    fn check_spans(spans: &[ReceivedSpan]) {
        let (root, child) = (&spans[0], &spans[1]);
        assert_eq!(root.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(root.span_id_hex(), "00f067aa0ba902b7");
        assert_eq!(root.parent_span_id_hex(), "");
        assert_eq!(child.trace_id_hex(), root.trace_id_hex());
        assert_eq!(child.span_id_hex(), "53995c3f42cd8ad8");
        assert_eq!(child.parent_span_id_hex(), root.span_id_hex());
        assert_eq!(root.span.name, "kong");
        assert_eq!(child.span.name, "kong.balancer");
        assert_eq!(
            root.attr("http.method"),
            Some(AttrValue::String("GET".into()))
        );
        assert_eq!(root.attr("http.status_code"), Some(AttrValue::Int(200)));
        assert_eq!(root.attr("sampling.ratio"), Some(AttrValue::Double(0.5)));
        assert_eq!(root.attr("kong.cached"), Some(AttrValue::Bool(true)));
        assert!(matches!(root.attr("list"), Some(AttrValue::Other(s)) if s.contains("ArrayValue")));
        assert_eq!(root.attr("missing"), None);
        assert_eq!(child.attr("try_count"), Some(AttrValue::Int(1)));
        for s in [root, child] {
            assert_eq!(
                s.resource_attr("service.name"),
                Some(AttrValue::String("gangway".into()))
            );
            assert_eq!(s.resource_attr("missing"), None);
            assert_eq!(s.scope_name, "gangway");
            assert_eq!(s.scope_version, "0.1.0");
        }
    }

    #[test]
    fn keep_alive_two_requests_on_one_connection() {
        let rx = OtlpReceiver::start();
        assert_eq!(
            rx.traces_url(),
            format!("http://127.0.0.1:{}/v1/traces", rx.port())
        );
        let body = export().encode_to_vec();
        let mut conn = connect(&rx);
        let first = post(&mut conn, &body, "");
        check_ok(&first);
        assert_eq!(first.header("connection"), None);
        let second = post_chunked(&mut conn, &body);
        check_ok(&second);

        let spans = rx.wait_for_spans(4, Duration::from_secs(5));
        assert_eq!(spans.len(), 4);
        check_spans(&spans[..2]);
        check_spans(&spans[2..]);

        let requests = rx.requests();
        assert_eq!(requests.len(), 2);
        for req in &requests {
            assert_eq!(req.method, "POST");
            assert_eq!(req.path, "/v1/traces");
            assert_eq!(req.status, 200);
            assert_eq!(req.decode_error, None);
            assert_eq!(req.body.as_ref(), Some(&export()));
            assert_eq!(req.header("Content-Type"), Some("application/x-protobuf"));
            assert!(
                req.headers
                    .iter()
                    .all(|(k, _)| *k == k.to_ascii_lowercase())
            );
        }
        let len = body.len().to_string();
        assert_eq!(requests[0].header("content-length"), Some(len.as_str()));
        assert_eq!(requests[1].header("transfer-encoding"), Some("chunked"));
    }

    #[test]
    fn connection_close_is_honoured() {
        let rx = OtlpReceiver::start();
        let mut conn = connect(&rx);
        let resp = post(
            &mut conn,
            &export().encode_to_vec(),
            "Connection: close\r\n",
        );
        check_ok(&resp);
        assert_eq!(resp.header("connection"), Some("close"));
        let mut rest = Vec::new();
        conn.read_to_end(&mut rest)
            .expect("the receiver closes the connection");
        assert!(rest.is_empty(), "bytes after the response: {rest:?}");

        let spans = rx.spans();
        assert_eq!(spans.len(), 2);
        check_spans(&spans);
        let requests = rx.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].header("connection"), Some("close"));
    }

    #[test]
    fn failing_then_ok_and_garbage_is_a_decode_error() {
        let rx = OtlpReceiver::failing(1);
        let body = export().encode_to_vec();
        let mut conn = connect(&rx);
        assert_eq!(post(&mut conn, &body, "").status, 503);
        assert!(rx.spans().is_empty(), "a 503'd export yields no spans");
        check_ok(&post(&mut conn, &body, ""));
        // A length-delimited field 1 of 5 bytes with only one present.
        let garbage = post(&mut conn, &[0x0a, 0x05, 0x01], "");
        assert_eq!(garbage.status, 400);

        let requests = rx.requests();
        let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [503, 200, 400]);
        assert_eq!(requests[0].body.as_ref(), Some(&export()));
        assert_eq!(requests[0].decode_error, None);
        assert_eq!(requests[2].body, None);
        let err = requests[2].decode_error.as_deref().expect("a decode error");
        assert!(!err.is_empty());
        assert_eq!(rx.spans().len(), 2);
    }

    #[test]
    #[should_panic(expected = "0 arrived")]
    fn wait_for_spans_says_how_many_arrived() {
        let rx = OtlpReceiver::start();
        rx.wait_for_spans(1, Duration::from_millis(50));
    }

    #[test]
    fn drop_stops_accepting() {
        let rx = OtlpReceiver::start();
        let port = rx.port();
        let conn = connect(&rx);
        drop(rx);
        // The open connection was shut down, and nothing accepts new ones.
        // (Closed, or reset when the drop came before it was accepted; not the read timeout.)
        let mut rest = Vec::new();
        if let Err(e) = conn.into_inner().read_to_end(&mut rest) {
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
        }
        assert!(rest.is_empty());
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    }
}
