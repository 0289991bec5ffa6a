//! A raw HTTP/1.1 client: exact bytes out, a strict parse of what comes back.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::SocketAddr;

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The decoded body.
    pub body: Vec<u8>,
    /// True if the body was chunked on the wire.
    pub chunked: bool,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
}

/// Reads one response from `reader`. `head_request` means the body is absent.
pub fn read_response<R: BufRead>(reader: &mut R, head_request: bool) -> io::Result<Response> {
    loop {
        let resp = read_one(reader, head_request)?;
        // Interim 1xx (other than 101) precede the final response.
        if (100..200).contains(&resp.status) && resp.status != 101 {
            continue;
        }
        return Ok(resp);
    }
}

fn read_line<R: BufRead>(reader: &mut R) -> io::Result<String> {
    let mut line = String::new();
    let n = reader.read_line(&mut line)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn read_one<R: BufRead>(reader: &mut R, head_request: bool) -> io::Result<Response> {
    let status_line = read_line(reader)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad status line: {status_line:?}"),
        ));
    }
    let status: u16 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad status: {status_line:?}"),
        )
    })?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?;
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':').ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("bad header: {line:?}"))
        })?;
        headers.push((k.to_string(), v.trim().to_string()));
    }
    let mut resp = Response {
        status,
        headers,
        body: Vec::new(),
        chunked: false,
    };
    if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(resp);
    }
    if resp
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        resp.chunked = true;
        loop {
            let size_line = read_line(reader)?;
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("bad chunk size {size_line:?}"),
                    )
                })?;
            if size == 0 {
                // Trailers, then the blank line.
                while !read_line(reader)?.is_empty() {}
                break;
            }
            let start = resp.body.len();
            resp.body.resize(start + size, 0);
            reader.read_exact(&mut resp.body[start..])?;
            read_line(reader)?;
        }
    } else if let Some(len) = resp.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad content-length"))?;
        resp.body.resize(len, 0);
        reader.read_exact(&mut resp.body)?;
    } else {
        reader.read_to_end(&mut resp.body)?;
    }
    Ok(resp)
}

/// Sends `raw` on a new connection and reads one response.
pub fn send_raw(addr: SocketAddr, raw: &[u8]) -> io::Result<Response> {
    let mut stream = super::try_connect(addr)?;
    stream.write_all(raw)?;
    let head = raw.starts_with(b"HEAD ");
    let mut reader = BufReader::new(stream);
    read_response(&mut reader, head)
}

/// One request on a new connection (`Connection: close`).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let mut raw = format!("{method} {path} HTTP/1.1\r\n").into_bytes();
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        raw.extend_from_slice(b"Host: localhost\r\n");
    }
    for (k, v) in headers {
        raw.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        raw.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    raw.extend_from_slice(b"Connection: close\r\n\r\n");
    raw.extend_from_slice(body);
    send_raw(addr, &raw)
}

/// A keep-alive connection for sending several requests.
pub struct Conn {
    reader: BufReader<std::net::TcpStream>,
}

impl Conn {
    /// Opens a connection.
    pub fn open(addr: SocketAddr) -> Conn {
        Conn {
            reader: BufReader::new(super::connect(addr)),
        }
    }

    /// Writes raw bytes.
    pub fn write(&mut self, raw: &[u8]) -> io::Result<()> {
        self.reader.get_mut().write_all(raw)
    }

    /// Reads one response.
    pub fn read(&mut self, head_request: bool) -> io::Result<Response> {
        read_response(&mut self.reader, head_request)
    }

    /// A GET on this connection.
    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        self.write(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())?;
        self.read(false)
    }

    /// True when the peer has closed (a read returns EOF within `wait`).
    pub fn is_closed(&mut self, wait: std::time::Duration) -> bool {
        let s = self.reader.get_mut();
        let _ = s.set_read_timeout(Some(wait));
        let mut b = [0u8; 1];
        matches!(self.reader.read(&mut b), Ok(0))
            || matches!(self.reader.read(&mut b), Err(ref e) if e.kind() == io::ErrorKind::ConnectionReset)
    }

    /// The underlying stream.
    pub fn stream(&mut self) -> &mut std::net::TcpStream {
        self.reader.get_mut()
    }
}
