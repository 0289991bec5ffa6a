//! A small threaded HTTP/1.1 upstream that echoes each request as JSON. Request headers steer
//! it, and they pass through the gateway untouched:
//! - `x-echo-status: N`: answer with status N;
//! - `x-echo-delay-ms: N`: wait before answering;
//! - `x-echo-chunked: 1`: send the body chunked;
//! - `x-echo-close: 1`: no Content-Length, close after the body;
//! - `x-echo-body-size: N`: a body of N bytes of `x` instead of the JSON echo;
//! - `x-echo-garbage: 1`: answer with bytes that are not HTTP;
//! - `x-echo-drop: 1`: close without answering;
//! - `x-echo-early-hints: 1`: send `103 Early Hints` before the response;
//! - `x-echo-content-type: T`: answer with Content-Type T instead of `application/json`;
//! - `x-echo-response-header: Name: value` (repeatable): add that response header;
//! - `x-echo-body: text`: answer with this body instead of the JSON echo;
//! - `Upgrade:` + `Connection: upgrade`: answer 101 and echo raw bytes back.

use std::io::{self, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use gangway_test_support::http1::read_request;
use serde_json::json;

/// A running echo upstream; stops accepting on drop.
pub struct Upstream {
    /// Its address.
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    /// Requests served so far.
    pub requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Upstream {
    /// Starts on a free loopback port.
    pub fn start() -> Upstream {
        Upstream::start_on("127.0.0.1:0".parse().expect("literal"))
    }

    /// Starts on `addr` (another loopback address, the port of an upstream already running).
    pub fn start_on(addr: SocketAddr) -> Upstream {
        let listener = TcpListener::bind(addr).expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, r, s) = (connections.clone(), requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let conn_id = c.fetch_add(1, Ordering::Relaxed) + 1;
                let r = r.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, conn_id, &r);
                });
            }
        });
        Upstream {
            addr,
            connections,
            requests,
            stop,
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn serve(stream: TcpStream, conn_id: usize, served: &AtomicUsize) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    let mut on_conn = 0usize;
    while let Some(req) = read_request(&mut reader)? {
        on_conn += 1;
        served.fetch_add(1, Ordering::Relaxed);
        if let Some(ms) = req.header("x-echo-delay-ms").and_then(|v| v.parse().ok()) {
            std::thread::sleep(Duration::from_millis(ms));
        }
        if req.header("x-echo-drop").is_some() {
            return Ok(());
        }
        if req.header("x-echo-garbage").is_some() {
            out.write_all(b"this is not http\r\n\r\n")?;
            return Ok(());
        }
        if req.header("upgrade").is_some() {
            out.write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")?;
            // Echo raw bytes until the client closes; the reader may hold bytes already.
            let buffered = reader.buffer().to_vec();
            out.write_all(&buffered)?;
            let mut raw = reader.into_inner();
            let mut buf = [0u8; 4096];
            loop {
                let n = raw.read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                out.write_all(&buf[..n])?;
            }
        }
        let status: u16 = req
            .header("x-echo-status")
            .and_then(|v| v.parse().ok())
            .unwrap_or(200);
        let body: Vec<u8> = if let Some(text) = req.header("x-echo-body") {
            text.as_bytes().to_vec()
        } else if let Some(n) = req
            .header("x-echo-body-size")
            .and_then(|v| v.parse::<usize>().ok())
        {
            vec![b'x'; n]
        } else {
            let headers: Vec<_> = req.headers.iter().map(|(k, v)| json!([k, v])).collect();
            serde_json::to_vec(&json!({
                "method": req.method,
                "target": req.target,
                "headers": headers,
                "body": String::from_utf8_lossy(&req.body),
                "body_len": req.body.len(),
                "conn_id": conn_id,
                "request_on_conn": on_conn,
            }))
            .expect("json")
        };
        let content_type = req
            .header("x-echo-content-type")
            .unwrap_or("application/json");
        let mut head = format!(
            "HTTP/1.1 {status} Echo\r\nContent-Type: {content_type}\r\nX-Upstream: echo\r\n"
        );
        for (k, v) in &req.headers {
            if k.eq_ignore_ascii_case("x-echo-response-header") {
                head.push_str(v);
                head.push_str("\r\n");
            }
        }
        let close = req.header("x-echo-close").is_some();
        let chunked = req.header("x-echo-chunked").is_some();
        let no_body = req.method == "HEAD" || status == 204 || status == 304;
        if close {
            head.push_str("Connection: close\r\n\r\n");
            out.write_all(head.as_bytes())?;
            if !no_body {
                out.write_all(&body)?;
            }
            return Ok(());
        }
        if chunked {
            head.push_str("Transfer-Encoding: chunked\r\n\r\n");
            out.write_all(head.as_bytes())?;
            if !no_body {
                // Small pieces test a reader's reassembly; a large body goes in pieces of
                // 64 KiB, or sending it would take minutes.
                let piece_size = if body.len() > 64 * 1024 { 64 * 1024 } else { 7 };
                for piece in body.chunks(piece_size) {
                    out.write_all(format!("{:x}\r\n", piece.len()).as_bytes())?;
                    out.write_all(piece)?;
                    out.write_all(b"\r\n")?;
                    out.flush()?;
                }
                out.write_all(b"0\r\n\r\n")?;
            }
        } else {
            head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
            let mut msg = head.into_bytes();
            if !no_body {
                msg.extend_from_slice(&body);
            }
            out.write_all(&msg)?;
        }
    }
    Ok(())
}
