//! Kong-shaped error responses: the one place the data plane turns an error into bytes.
//!
//! Two Kong paths are reproduced (both from Kong 3.x sources):
//! - `kong.response.error` (plugins, router misses): format from `Accept`, JSON without one.
//!   Use [`negotiate`] or [`write_error_response`] with `default_type = Json`.
//! - `kong/error_handlers.lua` (nginx-detected errors and upstream failures): format from
//!   `Accept`, else the request's `Content-Type`, else `error_default_type`; a value starting
//!   with `application/grpc` gets kong.response.exit's `{"message":"…"}`. Use [`handler_format`].
//!
//! Bodies are Kong's templates (`kong/tools/http.lua`) byte for byte. One deliberate
//! difference: Kong pastes the message in unescaped; we escape it for the target syntax
//! (JSON string, HTML/XML text), which changes nothing for Kong's own messages and keeps the
//! documents well formed when a message carries `"` or `<`.

mod accept;
mod custom;
#[cfg(test)]
mod tests;

pub use accept::{negotiate, negotiate_values};
pub use custom::{ErrorTemplate, ErrorTemplates, use_templates};

/// The body format of an error response. Default: JSON.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ErrorFormat {
    /// `{"message":…,"request_id":…}` template, `application/json; charset=utf-8`.
    #[default]
    Json,
    /// The HTML template, `text/html; charset=utf-8`.
    Html,
    /// The XML template, `application/xml; charset=utf-8`.
    Xml,
    /// `<message>\nrequest_id: <id>\n`, `text/plain; charset=utf-8`.
    Plain,
    /// `Accept: application/grpc` on kong.response.error: Kong's MIME entry and template are
    /// empty strings, so no body and no `Content-Type`.
    Grpc,
    /// kong.response.exit's cjson body `{"message":"…"}` (no request id), which the error
    /// handler sends when the client's type starts with `application/grpc`.
    MessageJson,
}

impl ErrorFormat {
    /// The `Content-Type` header value, `None` for [`ErrorFormat::Grpc`].
    pub const fn content_type(self) -> Option<&'static str> {
        match self {
            ErrorFormat::Json | ErrorFormat::MessageJson => Some("application/json; charset=utf-8"),
            ErrorFormat::Html => Some("text/html; charset=utf-8"),
            ErrorFormat::Xml => Some("application/xml; charset=utf-8"),
            ErrorFormat::Plain => Some("text/plain; charset=utf-8"),
            ErrorFormat::Grpc => None,
        }
    }

    /// Parses an `error_default_type` setting: `text/plain` (Kong's default),
    /// `application/json`, `text/html` or `application/xml`.
    pub fn from_config(value: &str) -> Option<Self> {
        match value {
            "text/plain" => Some(ErrorFormat::Plain),
            "application/json" => Some(ErrorFormat::Json),
            "text/html" => Some(ErrorFormat::Html),
            "application/xml" => Some(ErrorFormat::Xml),
            _ => None,
        }
    }
}

/// The format `kong/error_handlers.lua` picks: from `accept`, else the request's
/// `content_type`, else `default_type` (`error_default_type`).
pub fn handler_format(
    accept: Option<&[u8]>,
    content_type: Option<&[u8]>,
    default_type: ErrorFormat,
) -> ErrorFormat {
    match accept.or(content_type) {
        Some(v) if v.starts_with(b"application/grpc") => ErrorFormat::MessageJson,
        Some(v) => negotiate(Some(v)),
        None => default_type,
    }
}

/// Kong's message for `status` (`kong/pdk/response.lua`; `kong/error_handlers.lua` uses the
/// same texts), e.g. 400 `Bad request`, 413 `Payload too large`. `None` for statuses Kong
/// words as `The upstream server responded with <status>`.
pub fn default_message(status: u16) -> Option<&'static str> {
    Some(match status {
        400 => "Bad request",
        401 => "Unauthorized",
        402 => "Payment required",
        403 => "Forbidden",
        404 => "Not found",
        405 => "Method not allowed",
        406 => "Not acceptable",
        407 => "Proxy authentication required",
        408 => "Request timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length required",
        412 => "Precondition failed",
        413 => "Payload too large",
        414 => "URI too long",
        415 => "Unsupported media type",
        416 => "Range not satisfiable",
        417 => "Expectation failed",
        418 => "I'm a teapot",
        421 => "Misdirected request",
        422 => "Unprocessable entity",
        423 => "Locked",
        424 => "Failed dependency",
        425 => "Too early",
        426 => "Upgrade required",
        428 => "Precondition required",
        429 => "Too many requests",
        431 => "Request header fields too large",
        451 => "Unavailable for legal reasons",
        494 => "Request header or cookie too large",
        500 => "An unexpected error occurred",
        501 => "Not implemented",
        502 => "An invalid response was received from the upstream server",
        503 => "The upstream server is currently unavailable",
        504 => "The upstream server is timing out",
        505 => "HTTP version not supported",
        506 => "Variant also negotiates",
        507 => "Insufficient storage",
        508 => "Loop detected",
        510 => "Not extended",
        511 => "Network authentication required",
        _ => return None,
    })
}

/// The reason phrase for a status line: nginx's wording where nginx has one (what Kong
/// clients see, e.g. `405 Not Allowed`, `503 Service Temporarily Unavailable`), the RFC 9110
/// phrase otherwise, `""` for unknown codes (nginx then writes `HTTP/1.1 494 `).
pub const fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Time-out",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Large",
        415 => "Unsupported Media Type",
        416 => "Requested Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Entity",
        423 => "Locked",
        424 => "Failed Dependency",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Temporarily Unavailable",
        504 => "Gateway Time-out",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        510 => "Not Extended",
        511 => "Network Authentication Required",
        _ => "",
    }
}

/// Appends the error body for `format` to `out`. `message: None` uses Kong's default text
/// for `status`.
pub fn write_error_body(
    out: &mut Vec<u8>,
    format: ErrorFormat,
    status: u16,
    message: Option<&str>,
    request_id: &str,
) {
    write_error_body_from(
        out,
        format,
        custom::template(format),
        status,
        message,
        request_id,
    );
}

/// [`write_error_body`] from the operator's `template` for `format`, if there is one, else
/// from Kong's.
fn write_error_body_from(
    out: &mut Vec<u8>,
    format: ErrorFormat,
    template: Option<&ErrorTemplate>,
    status: u16,
    message: Option<&str>,
    request_id: &str,
) {
    let msg = |out: &mut Vec<u8>, esc: Escape| write_message(out, status, message, esc);
    if let Some(template) = template {
        let esc = match format {
            ErrorFormat::Json | ErrorFormat::MessageJson => Escape::Json,
            ErrorFormat::Html | ErrorFormat::Xml => Escape::Markup,
            ErrorFormat::Plain | ErrorFormat::Grpc => Escape::None,
        };
        template.render(
            out,
            |out| msg(out, esc),
            |out| escape_into(out, request_id.as_bytes(), esc),
        );
        return;
    }
    match format {
        ErrorFormat::Json => {
            out.extend_from_slice(b"{\n  \"message\":\"");
            msg(out, Escape::Json);
            out.extend_from_slice(b"\",\n  \"request_id\":\"");
            escape_into(out, request_id.as_bytes(), Escape::Json);
            out.extend_from_slice(b"\"\n}");
        }
        ErrorFormat::Html => {
            out.extend_from_slice(
                b"<!doctype html>\n<html>\n  <head>\n    <meta charset=\"utf-8\">\n    \
                  <title>Error</title>\n  </head>\n  <body>\n    <h1>Error</h1>\n    <p>",
            );
            msg(out, Escape::Markup);
            out.extend_from_slice(b".</p>\n    <p>request_id: ");
            escape_into(out, request_id.as_bytes(), Escape::Markup);
            out.extend_from_slice(b"</p>\n  </body>\n</html>\n");
        }
        ErrorFormat::Xml => {
            out.extend_from_slice(
                b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<error>\n  <message>",
            );
            msg(out, Escape::Markup);
            out.extend_from_slice(b"</message>\n  <requestid>");
            escape_into(out, request_id.as_bytes(), Escape::Markup);
            out.extend_from_slice(b"</requestid>\n</error>\n");
        }
        ErrorFormat::Plain => {
            msg(out, Escape::None);
            out.extend_from_slice(b"\nrequest_id: ");
            out.extend_from_slice(request_id.as_bytes());
            out.push(b'\n');
        }
        ErrorFormat::Grpc => {}
        ErrorFormat::MessageJson => {
            out.extend_from_slice(b"{\"message\":\"");
            msg(out, Escape::Cjson);
            out.extend_from_slice(b"\"}");
        }
    }
}

/// Appends a complete HTTP/1.1 error response to `out`: the format from `accept` (Kong's
/// negotiation) or, without an `Accept`, `default_type` (pass [`ErrorFormat::Json`] for
/// kong.response.error, the `error_default_type` setting for nginx-style errors, or use
/// [`write_error_response_as`] with [`handler_format`]). `status` is written as given: map
/// header-size errors with `HttpError::response_status` first. Headers: `Server` (when
/// given), `Content-Type`, `Content-Length`, then `extra_headers` in order.
#[allow(clippy::too_many_arguments)]
pub fn write_error_response(
    out: &mut Vec<u8>,
    status: u16,
    message: Option<&str>,
    request_id: &str,
    accept: Option<&[u8]>,
    default_type: ErrorFormat,
    extra_headers: &[(&str, &str)],
    server_header: Option<&str>,
) {
    let format = match accept {
        Some(a) => negotiate(Some(a)),
        None => default_type,
    };
    write_error_response_as(
        out,
        status,
        format,
        message,
        request_id,
        extra_headers,
        server_header,
    );
}

/// [`write_error_response`] with the format already chosen.
pub fn write_error_response_as(
    out: &mut Vec<u8>,
    status: u16,
    format: ErrorFormat,
    message: Option<&str>,
    request_id: &str,
    extra_headers: &[(&str, &str)],
    server_header: Option<&str>,
) {
    // The body goes first so its length is known, then the head is appended and rotated in
    // front of it: no scratch buffer, no second formatting pass.
    let start = out.len();
    write_error_body(out, format, status, message, request_id);
    let body_len = out.len() - start;
    out.extend_from_slice(b"HTTP/1.1 ");
    write_u64(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(server) = server_header {
        write_header(out, "Server", server.as_bytes());
    }
    if let Some(ct) = format.content_type() {
        write_header(out, "Content-Type", ct.as_bytes());
    }
    out.extend_from_slice(b"Content-Length: ");
    write_u64(out, body_len as u64);
    out.extend_from_slice(b"\r\n");
    for (name, value) in extra_headers {
        write_header(out, name, value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out[start..].rotate_left(body_len);
}

fn write_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends the decimal digits of `n`.
pub(crate) fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[derive(Clone, Copy)]
enum Escape {
    None,
    Json,
    /// cjson also escapes `/`.
    Cjson,
    Markup,
}

fn write_message(out: &mut Vec<u8>, status: u16, message: Option<&str>, esc: Escape) {
    match message.or_else(|| default_message(status)) {
        Some(m) => escape_into(out, m.as_bytes(), esc),
        None => {
            out.extend_from_slice(b"The upstream server responded with ");
            write_u64(out, u64::from(status));
        }
    }
}

fn escape_into(out: &mut Vec<u8>, s: &[u8], esc: Escape) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in s {
        match (esc, b) {
            (Escape::None, _) => out.push(b),
            (Escape::Json | Escape::Cjson, b'"') => out.extend_from_slice(b"\\\""),
            (Escape::Json | Escape::Cjson, b'\\') => out.extend_from_slice(b"\\\\"),
            (Escape::Cjson, b'/') => out.extend_from_slice(b"\\/"),
            (Escape::Json | Escape::Cjson, b'\n') => out.extend_from_slice(b"\\n"),
            (Escape::Json | Escape::Cjson, b'\r') => out.extend_from_slice(b"\\r"),
            (Escape::Json | Escape::Cjson, b'\t') => out.extend_from_slice(b"\\t"),
            (Escape::Json | Escape::Cjson, c) if c < 0x20 => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(c >> 4)]);
                out.push(HEX[usize::from(c & 0xf)]);
            }
            (Escape::Markup, b'&') => out.extend_from_slice(b"&amp;"),
            (Escape::Markup, b'<') => out.extend_from_slice(b"&lt;"),
            (Escape::Markup, b'>') => out.extend_from_slice(b"&gt;"),
            (Escape::Markup, b'"') => out.extend_from_slice(b"&quot;"),
            (Escape::Markup, b'\'') => out.extend_from_slice(b"&#39;"),
            _ => out.push(b),
        }
    }
}
