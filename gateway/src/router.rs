//! Kong's `traditional_compatible` router. OWNER: router helper. Interface fixed by the skeleton.

use crate::config::model::Route;
use crate::config::ConfigErrors;

/// Which router semantics apply (`router_flavor`); default `traditional_compatible`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RouterFlavor {
    /// Kong 3.x default.
    #[default]
    TraditionalCompatible,
    /// Legacy flavor; the only one honouring `path_handling = v1`.
    Traditional,
}

/// Request headers as the router sees them.
pub trait HeaderSource {
    /// Every value of the header named `lower_name` (ASCII lower-case), in arrival order.
    fn values<'s>(&'s self, lower_name: &str) -> impl Iterator<Item = &'s [u8]>;
}

/// The parts of a request the router matches on.
pub struct RouteRequest<'a, H: HeaderSource> {
    /// Method, e.g. `GET`.
    pub method: &'a str,
    /// Raw Host header value (may carry `:port`); empty when absent.
    pub host: &'a str,
    /// Local port the request arrived on (`net.dst.port`).
    pub port: u16,
    /// Raw request path without the query string, not yet normalized.
    pub path: &'a str,
    /// Request headers.
    pub headers: &'a H,
    /// TLS SNI, when the connection is TLS.
    pub sni: Option<&'a str>,
    /// True when the request came over TLS (or a trusted forwarded proto says https).
    pub https: bool,
}

/// Per-connection scratch space, so matching allocates nothing per request.
#[derive(Default)]
pub struct MatchScratch {}

/// A successful match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMatch {
    /// Index into the `routes` slice given to [`Router::build`].
    pub route: usize,
}

/// The compiled router.
pub struct Router {}

impl Router {
    /// Compiles routes; every invalid path or header regex is reported with its entity path.
    pub fn build(_routes: &[Route], _flavor: RouterFlavor) -> Result<Router, ConfigErrors> {
        Ok(Router {})
    }
}
