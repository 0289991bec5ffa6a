//! A blocking HTTP/1.1 client for the benches: one keep-alive connection, enough of the
//! protocol to talk to the Admin API and the proxy.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

/// Timeout of each HTTP read or write.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// One answer.
pub(super) struct Reply {
    pub(super) status: u16,
    /// Header names in lower case, with their values as sent.
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
}

impl Reply {
    /// The first value of header `name` (lower case).
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn text(&self) -> String {
        let t = String::from_utf8_lossy(&self.body);
        t.chars().take(500).collect()
    }

    pub(super) fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body).with_context(|| format!("not JSON: {}", self.text()))
    }
}

/// A blocking HTTP/1.1 client on one keep-alive connection, reopened when the server closed
/// it (a request on a reused connection that got no byte of an answer is sent once more on
/// a new one, as HTTP clients do).
pub(super) struct Http {
    port: u16,
    conn: Option<BufReader<TcpStream>>,
}

/// Why an exchange failed: `early` when nothing of the answer arrived.
pub(super) struct Failure {
    early: bool,
    error: anyhow::Error,
}

impl Http {
    pub(super) fn new(port: u16) -> Http {
        Http { port, conn: None }
    }

    pub(super) fn connect(&mut self) -> Result<()> {
        if self.conn.is_none() {
            let s = TcpStream::connect(("127.0.0.1", self.port))
                .with_context(|| format!("connecting to 127.0.0.1:{}", self.port))?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(IO_TIMEOUT))?;
            s.set_write_timeout(Some(IO_TIMEOUT))?;
            self.conn = Some(BufReader::new(s));
        }
        Ok(())
    }

    pub(super) fn call(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Reply> {
        let body = body.map(Value::to_string);
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n",
            self.port
        );
        for (k, v) in headers {
            let _ = write!(req, "{k}: {v}\r\n");
        }
        if body.is_some() {
            req.push_str("Content-Type: application/json\r\n");
        }
        let body = body.unwrap_or_default();
        let _ = write!(req, "Content-Length: {}\r\n\r\n{body}", body.len());
        let reused = self.conn.is_some();
        match self.exchange(req.as_bytes(), method == "HEAD") {
            Ok(r) => Ok(r),
            Err(f) if f.early && reused => {
                self.conn = None;
                self.exchange(req.as_bytes(), method == "HEAD")
                    .map_err(|f| f.error)
                    .with_context(|| format!("{method} {path}"))
            }
            Err(f) => Err(f.error.context(format!("{method} {path}"))),
        }
    }

    pub(super) fn exchange(&mut self, req: &[u8], head: bool) -> Result<Reply, Failure> {
        let early = |e: anyhow::Error| Failure {
            early: true,
            error: e,
        };
        self.connect().map_err(early)?;
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| early(anyhow::anyhow!("no connection")))?;
        let result = conn
            .get_mut()
            .write_all(req)
            .map_err(|e| early(e.into()))
            .and_then(|()| read_reply(conn, head));
        match result {
            Ok((reply, keep)) => {
                if !keep {
                    self.conn = None;
                }
                Ok(reply)
            }
            Err(f) => {
                self.conn = None;
                Err(f)
            }
        }
    }
}

/// Reads one answer; returns it and whether the connection stays open.
pub(super) fn read_reply(
    r: &mut BufReader<TcpStream>,
    head: bool,
) -> Result<(Reply, bool), Failure> {
    let late = |e: anyhow::Error| Failure {
        early: false,
        error: e,
    };
    let mut line = String::new();
    match r.read_line(&mut line) {
        Ok(0) => {
            return Err(Failure {
                early: true,
                error: anyhow::anyhow!("connection closed before an answer"),
            });
        }
        Ok(_) => {}
        Err(e) => {
            return Err(Failure {
                early: true,
                error: e.into(),
            });
        }
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| late(anyhow::anyhow!("bad status line {line:?}")))?;
    let (mut length, mut chunked, mut keep) = (None, false, true);
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line).map_err(|e| late(e.into()))? == 0 {
            return Err(late(anyhow::anyhow!("connection closed in the headers")));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let Some((name, value)) = l.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        headers.push((name.clone(), value.trim().to_owned()));
        let value = value.trim().to_ascii_lowercase();
        match name.as_str() {
            "content-length" => {
                length = Some(
                    value
                        .parse::<usize>()
                        .map_err(|_| late(anyhow::anyhow!("bad content-length {value:?}")))?,
                );
            }
            "transfer-encoding" => chunked = value.contains("chunked"),
            "connection" => keep = !value.contains("close"),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if head || status == 204 || status == 304 || (100..200).contains(&status) {
        // No body.
    } else if chunked {
        loop {
            line.clear();
            r.read_line(&mut line).map_err(|e| late(e.into()))?;
            let size = line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size.trim(), 16)
                .map_err(|_| late(anyhow::anyhow!("bad chunk size {line:?}")))?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    line.clear();
                    let n = r.read_line(&mut line).map_err(|e| late(e.into()))?;
                    if n == 0 || line.trim_end().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])
                .map_err(|e| late(e.into()))?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf).map_err(|e| late(e.into()))?;
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        r.read_exact(&mut body).map_err(|e| late(e.into()))?;
    } else {
        r.read_to_end(&mut body).map_err(|e| late(e.into()))?;
        keep = false;
    }
    Ok((
        Reply {
            status,
            headers,
            body,
        },
        keep,
    ))
}
