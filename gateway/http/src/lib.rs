//! The data plane's HTTP/1.1 codec on caller-owned buffers.
//!
//! - [`head`]: request and response heads parsed with `httparse` into reusable structs of
//!   byte ranges, with nginx's request-smuggling and framing checks applied in the same pass.
//! - [`body`]: streaming body framing (Content-Length, chunked, until-close) for pass-through.
//! - [`headers`]: allocation-free header lookups and hop-by-hop rules.
//! - [`error_page`]: Kong-shaped error responses, the only place errors become bytes.
//! - [`error`]: [`HttpError`], each kind with the status nginx/Kong would send.
//! - [`uri`]: Kong's path normalization (what routes match) and upstream escaping.
//!
//! Nothing here allocates per request once the caller's reusable buffers have grown: heads
//! keep their `Vec`s across [`RequestHead::clear`], and writers append to a `Vec` the caller
//! owns.
//!
//! This is the bottom layer: it knows nothing of config, routes, plugins or sockets, and
//! depends on no other gangway crate.

mod body;
pub mod clf;
mod error;
pub mod error_page;
mod head;
pub mod headers;
pub mod uri;

pub use body::{BodyFraming, BodyTracker, Progress};
pub use error::{HttpError, Side, TooLargeStatus};
pub use error_page::{ErrorFormat, reason_phrase, write_error_response};
pub use head::{Limits, Method, RequestHead, ResponseHead, Version, parse_request, parse_response};
pub use headers::{HeaderField, Span, is_hop_by_hop};
