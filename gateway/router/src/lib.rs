//! Kong's `traditional_compatible` router (kong-reference.md section 3).
//!
//! [`Router::build`] compiles routes once per snapshot: it splits routes whose paths mix
//! regexes and prefixes of different lengths (`priority.rs`), compiles hosts, headers, SNIs and
//! regexes (`matcher.rs`), sorts everything in Kong's priority order and indexes plain hosts and
//! prefix paths (`index.rs`). [`Router::find`] normalizes the request path the way Kong does
//! (`gangway_http::uri`), evaluates only the candidates the index yields, in priority order, and
//! records captures in the caller's [`MatchScratch`], so it allocates nothing per request.
//! [`upstream_path`] (`upstream_uri.rs`) then builds the path sent upstream.
//!
//! It reads route entities and request facts; it knows nothing of services' sockets, plugins
//! or the runtime, and never does I/O.

mod index;
mod matcher;
mod priority;
mod upstream_uri;

use std::cmp::Reverse;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use regex::CaptureLocations;

use gangway_config::ConfigErrors;
use gangway_config::model::{Protocol, Route};
use gangway_http::uri::{NormalizeBufs, normalize};
use index::Index;
use matcher::{PathHit, PathRegex, PathSet, Req, SubRoute, split_host_port};

pub use gangway_http::uri::escape_into;

pub use upstream_uri::upstream_path;

/// Which router semantics apply (`router_flavor`); default `traditional_compatible`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RouterFlavor {
    /// Kong 3.x default.
    #[default]
    TraditionalCompatible,
    /// Legacy flavor; the only one honouring `path_handling = v1`. Matching and ordering are
    /// still `traditional_compatible`'s; only [`upstream_path`] differs.
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
    /// Local port the request arrived on (`net.dst.port`); a `:port` in the Host header
    /// takes its place, as in Kong.
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

/// Captures of the last match: which regex, and its group names.
#[derive(Debug)]
struct CaptureState {
    regex: usize,
    names: Arc<[(Box<str>, usize)]>,
    path_index: usize,
}

/// Per-connection scratch space, so matching allocates nothing per request.
///
/// After [`Router::find`] it holds the normalized path and, when the matched route's regex
/// has capture groups that took part in the match, Kong's `uri_captures`.
#[derive(Debug)]
pub struct MatchScratch {
    norm: NormalizeBufs,
    path: String,
    lower: String,
    cands: Vec<u32>,
    /// Which router `locs` belongs to (capture slots are specific to each regex).
    router_id: u64,
    /// One slot set per path regex, created the first time that regex captures.
    locs: Vec<Option<CaptureLocations>>,
    caps: Option<CaptureState>,
}

impl Default for MatchScratch {
    fn default() -> Self {
        MatchScratch {
            norm: NormalizeBufs::with_capacity(256),
            path: String::with_capacity(256),
            lower: String::with_capacity(128),
            cands: Vec::with_capacity(64),
            router_id: 0,
            locs: Vec::new(),
            caps: None,
        }
    }
}

impl MatchScratch {
    /// The normalized path of the last request given to [`Router::find`]; empty when the path
    /// decoded to invalid UTF-8 (Kong answers 404 then).
    pub fn normalized_path(&self) -> &str {
        &self.path
    }

    fn locs(&self) -> Option<&CaptureLocations> {
        self.locs.get(self.caps.as_ref()?.regex)?.as_ref()
    }

    /// Which of the matched route's `paths` produced the captures of the last match.
    pub fn captured_path_index(&self) -> Option<usize> {
        self.caps.as_ref().map(|c| c.path_index)
    }

    /// True when the last match produced `uri_captures` (a regex group took part).
    pub fn has_captures(&self) -> bool {
        self.caps.is_some()
    }

    /// Capture `idx` of the last match: `0` is the whole match, `1..` the numbered groups
    /// (named groups are numbered too). `None` when absent or the group did not participate.
    pub fn capture(&self, idx: usize) -> Option<&str> {
        let (s, e) = self.locs()?.get(idx)?;
        self.path.get(s..e)
    }

    /// Number of capture slots of the last match, including `[0]`; 0 without captures.
    pub fn capture_len(&self) -> usize {
        self.locs().map_or(0, CaptureLocations::len)
    }

    /// The named group `name` of the last match.
    pub fn named_capture(&self, name: &str) -> Option<&str> {
        let caps = self.caps.as_ref()?;
        let &(_, idx) = caps.names.iter().find(|(n, _)| &**n == name)?;
        self.capture(idx)
    }

    /// Every named group that participated in the last match, as `(name, value)`.
    pub fn named_captures(&self) -> impl Iterator<Item = (&str, &str)> {
        self.caps
            .iter()
            .flat_map(|c| c.names.iter())
            .filter_map(|(n, i)| Some((&**n, self.capture(*i)?)))
    }
}

/// A successful match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMatch {
    /// Index into the `routes` slice given to [`Router::build`].
    pub route: usize,
    /// Byte length, in [`MatchScratch::normalized_path`], of the matched route path (prefix
    /// routes) or of the whole regex match `[0]` (regex routes); `None` when the route has no
    /// paths. This is what `strip_path` removes.
    pub matched_len: Option<usize>,
}

impl RouteMatch {
    /// The matched path text (Kong's `match_t.prefix` when the route strips it).
    pub fn matched_path<'s>(&self, scratch: &'s MatchScratch) -> Option<&'s str> {
        scratch.path.get(..self.matched_len?)
    }
}

static NEXT_ROUTER_ID: AtomicU64 = AtomicU64::new(1);

/// The compiled router.
#[derive(Debug)]
pub struct Router {
    id: u64,
    flavor: RouterFlavor,
    /// Sub-routes in priority order; a sub-route's rank is its position here.
    subs: Vec<SubRoute>,
    regexes: Vec<PathRegex>,
    index: Index,
    /// Some route matches on a request header.
    matches_headers: bool,
}

fn is_http_route(route: &Route) -> bool {
    route.protocols.iter().any(|p| {
        matches!(
            p,
            Protocol::Http | Protocol::Https | Protocol::Grpc | Protocol::Grpcs
        )
    })
}

impl Router {
    /// Compiles routes; every invalid path or header regex is reported with its entity path
    /// (`routes[<index in routes>].paths[<j>]`). Stream-only routes are left out.
    pub fn build(routes: &[Route], flavor: RouterFlavor) -> Result<Router, ConfigErrors> {
        Router::build_without(routes, flavor, |_| false)
    }

    /// [`Router::build`] leaving out the routes `skip` names (by position), as Kong's router
    /// leaves out routes whose service is disabled: they match nothing, and a request only
    /// they would match gets the 404 of no route.
    pub fn build_without(
        routes: &[Route],
        flavor: RouterFlavor,
        skip: impl Fn(usize) -> bool,
    ) -> Result<Router, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let mut regexes = Vec::new();
        let mut ranked = Vec::new();
        let routable = routes
            .iter()
            .enumerate()
            .filter(|&(idx, r)| is_http_route(r) && !skip(idx));
        for (idx, route) in routable {
            for group in priority::split_paths(route) {
                let paths: Vec<&str> = group.paths.iter().map(|&(_, p)| p).collect();
                let prio = priority::priority(route, &paths);
                let sub = SubRoute::compile(idx, route, &group.paths, &mut regexes, &mut errors);
                ranked.push((prio, group.id, sub));
            }
        }
        ranked.sort_by_key(|(prio, id, _)| Reverse((*prio, *id)));

        let mut index = Index::default();
        let subs: Vec<SubRoute> = ranked.into_iter().map(|(_, _, sub)| sub).collect();
        for (rank, sub) in subs.iter().enumerate() {
            let rank = u32::try_from(rank).expect("invariant: < 2^32 routes");
            let hosts = sub
                .exact_hosts_only()
                .then(|| sub.hosts.iter().map(|h| &*h.value));
            let prefixes = match &sub.paths {
                PathSet::Prefix(ps) => Some(ps.as_slice()),
                PathSet::None | PathSet::Regex(_) => None,
            };
            index.add(rank, hosts, prefixes);
        }
        index.finish();

        let id = NEXT_ROUTER_ID.fetch_add(1, Ordering::Relaxed);
        let matches_headers = subs.iter().any(SubRoute::matches_headers);
        errors.into_result(Router {
            id,
            flavor,
            subs,
            regexes,
            index,
            matches_headers,
        })
    }

    /// Whether some route matches on a request header (and so reads the request's headers).
    pub fn matches_headers(&self) -> bool {
        self.matches_headers
    }

    /// The flavor this router was built for.
    pub fn flavor(&self) -> RouterFlavor {
        self.flavor
    }

    /// Finds the highest-priority route matching `req`, as Kong's router would. Fills
    /// `scratch` with the normalized path and the match's captures; allocates nothing once
    /// `scratch` has warmed up.
    pub fn find<H: HeaderSource>(
        &self,
        req: &RouteRequest<'_, H>,
        scratch: &mut MatchScratch,
    ) -> Option<RouteMatch> {
        if scratch.router_id != self.id {
            scratch.router_id = self.id;
            scratch.locs.clear();
            scratch.locs.resize_with(self.regexes.len(), || None);
        }
        scratch.caps = None;
        let MatchScratch {
            norm,
            path,
            lower,
            cands,
            locs,
            caps,
            ..
        } = scratch;
        if !normalize(req.path, norm, path) {
            return None;
        }
        let path: &str = path;

        let (host, port) = if req.host.is_empty() {
            (None, u64::from(req.port))
        } else {
            let (h, p) = split_host_port(req.host);
            (Some(h), p.unwrap_or(u64::from(req.port)))
        };
        let r = Req {
            method: req.method,
            host,
            port,
            headers: req.headers,
            sni: req.sni,
            https: req.https,
        };

        cands.clear();
        if let Some(bucket) = host.and_then(|h| self.index.host_bucket(h)) {
            bucket.collect_prefixes(path.as_bytes(), cands);
            cands.extend_from_slice(&bucket.others);
        }
        self.index.global.collect_prefixes(path.as_bytes(), cands);
        cands.sort_unstable();
        cands.dedup();

        // Merge the indexed candidates with the routes that must always be scanned.
        let others = &self.index.global.others;
        let (mut i, mut j) = (0, 0);
        loop {
            let rank = match (cands.get(i), others.get(j)) {
                (Some(&a), Some(&b)) if a <= b => {
                    i += 1;
                    j += usize::from(a == b);
                    a
                }
                (_, Some(&b)) => {
                    j += 1;
                    b
                }
                (Some(&a), None) => {
                    i += 1;
                    a
                }
                (None, None) => return None,
            };
            let sub = &self.subs[rank as usize];
            if !sub.matches_fields(&r, lower) {
                continue;
            }
            let Some(hit) = sub.match_path(path, &self.regexes) else {
                continue;
            };
            let matched_len = match hit {
                PathHit::Any => None,
                PathHit::Prefix(len) => Some(len),
                PathHit::Regex { id, len } => {
                    let compiled = &self.regexes[id as usize];
                    if compiled.groups > 0 {
                        let slot = &mut locs[id as usize];
                        let l = slot.get_or_insert_with(|| compiled.re.capture_locations());
                        if compiled.re.captures_read(l, path).is_some()
                            && (1..l.len()).any(|g| l.get(g).is_some())
                        {
                            *caps = Some(CaptureState {
                                regex: id as usize,
                                names: Arc::clone(&compiled.names),
                                path_index: compiled.path_index,
                            });
                        }
                    }
                    Some(len)
                }
            };
            return Some(RouteMatch {
                route: sub.route,
                matched_len,
            });
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
