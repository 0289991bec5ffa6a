//! The data plane's HTTP protocol errors and the status each one becomes.

use super::error_page;

/// Which peer produced the bytes that failed to parse. Errors from the upstream always become
/// 502 for the client, whatever their kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The client (downstream) connection.
    Downstream,
    /// The upstream server connection.
    Upstream,
}

/// How to answer a request head that exceeds the header limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TooLargeStatus {
    /// Kong's behaviour (default): nginx flags the request 494, Kong's error handler answers
    /// `400` with the message `Request header or cookie too large`.
    #[default]
    Kong,
    /// nginx's own status 494 on the wire.
    Nginx494,
    /// RFC 6585's `431 Request Header Fields Too Large`.
    Rfc431,
}

/// A protocol error found while parsing a head or framing a body. Cheap to copy; carries a
/// static detail for logs, never request bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The request line or a header line is not valid HTTP/1.1 syntax (400).
    #[error("malformed request head: {0}")]
    MalformedHead(&'static str),
    /// A well-formed HTTP version other than 1.0 or 1.1 (505, as nginx).
    #[error("unsupported HTTP version")]
    UnsupportedVersion,
    /// The request line is longer than `Limits::max_line_bytes` (414).
    #[error("request line too long")]
    UriTooLong,
    /// A header line or the whole head exceeds the limits (nginx 494; see [`TooLargeStatus`]).
    #[error("request header too large")]
    HeaderTooLarge,
    /// More header fields than `Limits::max_headers` (treated like [`HttpError::HeaderTooLarge`]).
    #[error("too many request headers")]
    TooManyHeaders,
    /// HTTP/1.1 request without a `Host` header (400).
    #[error("HTTP/1.1 request without Host header")]
    MissingHost,
    /// `Host` header or absolute-form authority fails nginx's host validation (400).
    #[error("invalid host")]
    InvalidHost,
    /// A header nginx allows only once appears twice (400). Payload: which one.
    #[error("duplicate {0} header")]
    DuplicateHeader(&'static str),
    /// `Content-Length` is not a plain non-negative decimal that fits in an i64 (400).
    #[error("invalid Content-Length")]
    InvalidContentLength,
    /// Both `Content-Length` and `Transfer-Encoding` (400; a request-smuggling shape).
    #[error("both Content-Length and Transfer-Encoding")]
    LengthAndChunked,
    /// `Transfer-Encoding` on an HTTP/1.0 request (400, as nginx).
    #[error("Transfer-Encoding on HTTP/1.0 request")]
    TransferEncodingOnHttp10,
    /// `Transfer-Encoding` other than exactly `chunked` (501, as nginx).
    #[error("unsupported Transfer-Encoding")]
    UnsupportedTransferEncoding,
    /// TRACE or CONNECT (405, as nginx).
    #[error("method {0} not allowed")]
    MethodNotAllowed(&'static str),
    /// Broken chunked framing (400 from a client, 502 from an upstream).
    #[error("invalid chunked body: {0}")]
    InvalidChunk(&'static str),
    /// The body exceeds `client_max_body_size` (413).
    #[error("request body larger than client_max_body_size")]
    BodyTooLarge,
    /// The peer closed the connection before the body ended (400/502).
    #[error("connection closed before the body ended")]
    Truncated,
    /// The upstream's response head is not acceptable (502).
    #[error("invalid upstream response head: {0}")]
    InvalidResponse(&'static str),
}

impl HttpError {
    /// The status nginx would assign when the client caused this error. Header-size errors
    /// report nginx's internal 494; [`HttpError::response_status`] turns it into the wire status.
    pub const fn status(self) -> u16 {
        match self {
            HttpError::MalformedHead(_)
            | HttpError::MissingHost
            | HttpError::InvalidHost
            | HttpError::DuplicateHeader(_)
            | HttpError::InvalidContentLength
            | HttpError::LengthAndChunked
            | HttpError::TransferEncodingOnHttp10
            | HttpError::InvalidChunk(_)
            | HttpError::Truncated => 400,
            HttpError::MethodNotAllowed(_) => 405,
            HttpError::BodyTooLarge => 413,
            HttpError::UriTooLong => 414,
            HttpError::HeaderTooLarge | HttpError::TooManyHeaders => 494,
            HttpError::UnsupportedTransferEncoding => 501,
            HttpError::UnsupportedVersion => 505,
            HttpError::InvalidResponse(_) => 502,
        }
    }

    /// The status for an error found in bytes from `side`: anything from the upstream is 502.
    pub const fn status_for(self, side: Side) -> u16 {
        match side {
            Side::Downstream => self.status(),
            Side::Upstream => 502,
        }
    }

    /// The status to put on the wire for a client-side error, with header-size errors answered
    /// per `too_large` (default [`TooLargeStatus::Kong`] = 400).
    pub const fn response_status(self, too_large: TooLargeStatus) -> u16 {
        match (self.status(), too_large) {
            (494, TooLargeStatus::Kong) => 400,
            (494, TooLargeStatus::Rfc431) => 431,
            (s, _) => s,
        }
    }

    /// The Kong error message for this error when the client caused it
    /// (`kong/error_handlers.lua`), e.g. `Bad request`, `Payload too large`.
    pub fn message(self) -> &'static str {
        error_page::default_message(self.status()).unwrap_or("Bad request")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_messages_follow_kong() {
        assert_eq!(HttpError::LengthAndChunked.status(), 400);
        assert_eq!(HttpError::LengthAndChunked.message(), "Bad request");
        assert_eq!(HttpError::BodyTooLarge.message(), "Payload too large");
        assert_eq!(HttpError::UriTooLong.message(), "URI too long");
        assert_eq!(
            HttpError::MethodNotAllowed("TRACE").message(),
            "Method not allowed"
        );
        assert_eq!(
            HttpError::HeaderTooLarge.message(),
            "Request header or cookie too large"
        );
        assert_eq!(HttpError::UnsupportedTransferEncoding.status(), 501);
        assert_eq!(HttpError::UnsupportedVersion.status(), 505);
    }

    #[test]
    fn too_large_wire_status_options() {
        let e = HttpError::TooManyHeaders;
        assert_eq!(e.response_status(TooLargeStatus::Kong), 400);
        assert_eq!(e.response_status(TooLargeStatus::Nginx494), 494);
        assert_eq!(e.response_status(TooLargeStatus::Rfc431), 431);
        assert_eq!(
            HttpError::BodyTooLarge.response_status(TooLargeStatus::Rfc431),
            413
        );
    }

    #[test]
    fn upstream_side_is_always_502() {
        assert_eq!(
            HttpError::InvalidChunk("size").status_for(Side::Downstream),
            400
        );
        assert_eq!(
            HttpError::InvalidChunk("size").status_for(Side::Upstream),
            502
        );
        assert_eq!(HttpError::Truncated.status_for(Side::Upstream), 502);
    }
}
