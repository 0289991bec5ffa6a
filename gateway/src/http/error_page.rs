//! Kong-shaped error responses (TEMPORARY lean version).

use std::io::Write;

/// Writes a complete error response.
#[allow(clippy::too_many_arguments)]
pub fn write_error_response(
    out: &mut Vec<u8>,
    status: u16,
    message: &str,
    request_id: &str,
    accept: Option<&[u8]>,
    default_type: &str,
    extra_headers: &[(&str, &str)],
    server: Option<&str>,
) {
    let wants_json = accept.is_some_and(|a| {
        a.windows(16)
            .any(|w| w.eq_ignore_ascii_case(b"application/json"))
    });
    let (ctype, body) = if wants_json || default_type == "application/json" {
        let body = serde_json::json!({"message": message, "request_id": request_id}).to_string();
        ("application/json; charset=utf-8", body)
    } else {
        (
            "text/plain; charset=utf-8",
            format!("{message}\nrequest_id: {request_id}\n"),
        )
    };
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n",
        reason_phrase(status),
        body.len()
    );
    if let Some(s) = server {
        let _ = write!(out, "Server: {s}\r\n");
    }
    for (k, v) in extra_headers {
        let _ = write!(out, "{k}: {v}\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
}

/// Standard reason phrases.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Request Entity Too Large",
        494 => "Request Header Or Cookie Too Large",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}
