//! What a plugin phase returns: carry on, answer the client now, or wait for I/O the handler
//! started and then decide.

use std::any::Any;
use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// The outcome of a `rewrite` or `access` handler.
#[derive(Debug)]
pub enum Flow {
    /// Run the next plugin, then proxy.
    Continue,
    /// Stop here and send this response (Kong's `kong.response.exit` / `error`). Later
    /// access handlers and the upstream call are skipped; header_filter and log still run.
    Respond(Response),
    /// The handler started I/O (a quota store's round trip). The pipeline awaits it on the
    /// worker, then hands its output to [`crate::Plugin::resume`], which decides. Only
    /// `access` may wait.
    Await(Pending),
}

/// I/O an access handler waits for; its output goes back to the same handler's `resume`.
pub struct Pending(pub Pin<Box<dyn Future<Output = Box<dyn Any>>>>);

impl Pending {
    /// Wraps a future whose output the handler's `resume` downcasts.
    pub fn new<T: 'static>(future: impl Future<Output = T> + 'static) -> Pending {
        Pending(Box::pin(
            async move { Box::new(future.await) as Box<dyn Any> },
        ))
    }
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pending")
    }
}

/// A response a plugin produces instead of the upstream's.
#[derive(Debug)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: ResponseBody,
    /// Extra headers: the first of a name replaces any of that name, later ones of the same
    /// name are added (`Set-Cookie`).
    pub headers: Vec<(Cow<'static, str>, String)>,
    /// The answer stands in for the upstream's (a proxy-cache hit, Kong's `KONG_PROXIED`):
    /// it carries `Via` and no `X-Kong-Response-Latency`. Default false.
    pub proxied: bool,
    /// Carries `Via` though it is the plugin's own answer (aws-lambda adds it). Default false.
    pub via: bool,
    /// How long the handler waited on the backend that produced the answer (a Lambda
    /// invocation: Kong's `KONG_WAITING_TIME`): the log's `latencies.proxy`, and not part of
    /// `latencies.kong`. Default none.
    pub waited: Option<std::time::Duration>,
}

/// The body of a plugin-made response.
#[derive(Debug)]
pub enum ResponseBody {
    /// Kong's `kong.response.error`: an error page in the format the client accepts
    /// (`{"message": ...}` for JSON).
    Error(Cow<'static, str>),
    /// A JSON document (`kong.response.exit(status, table)`).
    Json(serde_json::Value),
    /// Bytes with their content type.
    Raw {
        /// The Content-Type header.
        content_type: Option<String>,
        /// The body bytes.
        body: Vec<u8>,
    },
    /// No body.
    Empty,
}

impl Response {
    /// Kong's `kong.response.exit(status, body)`.
    pub fn exit(status: u16, body: ResponseBody) -> Response {
        Response {
            status,
            body,
            headers: Vec::new(),
            proxied: false,
            via: false,
            waited: None,
        }
    }

    /// Kong's `kong.response.error(status, message)`.
    pub fn error(status: u16, message: impl Into<Cow<'static, str>>) -> Response {
        Response::exit(status, ResponseBody::Error(message.into()))
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<Cow<'static, str>>, value: String) -> Response {
        self.headers.push((name.into(), value));
        self
    }
}

impl Flow {
    /// `Flow::Respond(Response::error(status, message))`.
    pub fn error(status: u16, message: impl Into<Cow<'static, str>>) -> Flow {
        Flow::Respond(Response::error(status, message))
    }
}
