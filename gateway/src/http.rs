//! HTTP/1.1 codec on owned buffers (TEMPORARY lean version until the http branch merges).

pub mod body;
pub mod error_page;
pub mod head;

/// Protocol errors with their status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// Malformed request.
    #[error("bad request")]
    BadRequest,
    /// Head too large.
    #[error("headers too large")]
    HeadersTooLarge,
    /// Body too large.
    #[error("payload too large")]
    PayloadTooLarge,
    /// Unsupported HTTP version.
    #[error("version not supported")]
    Version,
    /// Unsupported transfer coding.
    #[error("not implemented")]
    NotImplemented,
}

impl HttpError {
    /// Status code.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::BadRequest => 400,
            HttpError::HeadersTooLarge => 494,
            HttpError::PayloadTooLarge => 413,
            HttpError::Version => 505,
            HttpError::NotImplemented => 501,
        }
    }
    /// Kong's message.
    pub fn message(&self) -> &'static str {
        match self {
            HttpError::BadRequest => "Bad request",
            HttpError::HeadersTooLarge => "Request header or cookie too large",
            HttpError::PayloadTooLarge => "Request size limit exceeded",
            HttpError::Version => "HTTP Version Not Supported",
            HttpError::NotImplemented => "Not implemented",
        }
    }
}
