//! Kong's router (TEMPORARY lean version until the router branch merges).

use regex::Regex;

use crate::config::ConfigErrors;
use crate::config::model::{PathHandling, Route};

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
    /// Method.
    pub method: &'a str,
    /// Raw Host header.
    pub host: &'a str,
    /// Local port.
    pub port: u16,
    /// Raw path.
    pub path: &'a str,
    /// Headers.
    pub headers: &'a H,
    /// SNI.
    pub sni: Option<&'a str>,
    /// TLS.
    pub https: bool,
}

/// Per-connection scratch.
#[derive(Default)]
pub struct MatchScratch {
    path: String,
    captures: Vec<Option<(usize, usize)>>,
    names: Vec<Option<String>>,
}

impl MatchScratch {
    /// The normalized path of the last request.
    pub fn normalized_path(&self) -> &str {
        &self.path
    }
    /// A numbered capture.
    pub fn capture(&self, i: usize) -> Option<&str> {
        self.captures
            .get(i)
            .copied()
            .flatten()
            .map(|(a, b)| &self.path[a..b])
    }
    /// A named capture.
    pub fn named_capture(&self, name: &str) -> Option<&str> {
        let i = self.names.iter().position(|n| n.as_deref() == Some(name))?;
        self.capture(i)
    }
}

/// A match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMatch {
    /// Route index.
    pub route: usize,
    /// Bytes of the normalized path matched by the route path.
    pub matched_len: usize,
}

enum PathRule {
    Prefix(String),
    Regex(Regex),
}

struct Compiled {
    index: usize,
    methods: Vec<String>,
    hosts: Vec<String>,
    paths: Vec<PathRule>,
    headers: Vec<(String, Vec<String>)>,
    priority: (u8, u8, i64, usize),
}

/// The compiled router.
pub struct Router {
    routes: Vec<Compiled>,
}

fn host_matches(pattern: &str, host: &str) -> bool {
    if let Some(suffix) = pattern.strip_prefix('*') {
        host.ends_with(suffix) && host.len() > suffix.len()
    } else if let Some(prefix) = pattern.strip_suffix('*') {
        host.starts_with(prefix) && host.len() > prefix.len()
    } else {
        pattern == host
    }
}

impl Router {
    /// Compiles routes.
    pub fn build(routes: &[Route], _flavor: RouterFlavor) -> Result<Router, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let mut compiled = Vec::new();
        for (index, r) in routes.iter().enumerate() {
            let mut paths = Vec::new();
            let mut has_regex = false;
            let mut longest = 0;
            for (j, p) in r.paths.iter().flatten().enumerate() {
                if let Some(re) = p.strip_prefix('~') {
                    has_regex = true;
                    match Regex::new(&format!("^(?:{re})")) {
                        Ok(rx) => paths.push(PathRule::Regex(rx)),
                        Err(e) => errors.push(
                            format!("routes[{index}].paths[{j}]"),
                            format!("invalid regex: '{re}' ({e})"),
                        ),
                    }
                } else {
                    longest = longest.max(p.len());
                    paths.push(PathRule::Prefix(p.clone()));
                }
            }
            let hosts = r.hosts.clone().unwrap_or_default();
            let weight = [
                r.methods.is_some(),
                r.hosts.is_some(),
                r.headers.is_some(),
                r.paths.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count() as u8;
            let plain_host = u8::from(!hosts.is_empty() && hosts.iter().all(|h| !h.contains('*')));
            compiled.push(Compiled {
                index,
                methods: r.methods.clone().unwrap_or_default(),
                hosts,
                paths,
                headers: r.headers.clone().unwrap_or_default().into_iter().collect(),
                priority: (
                    weight,
                    plain_host,
                    if has_regex {
                        i64::MAX / 2 + r.regex_priority
                    } else {
                        0
                    },
                    longest,
                ),
            });
        }
        compiled.sort_by_key(|c| std::cmp::Reverse(c.priority));
        errors.into_result(Router { routes: compiled })
    }

    /// Finds the best route.
    pub fn find<H: HeaderSource>(
        &self,
        req: &RouteRequest<'_, H>,
        scratch: &mut MatchScratch,
    ) -> Option<RouteMatch> {
        scratch.path.clear();
        scratch.path.push_str(req.path);
        let host = req.host.rsplit_once(':').map_or(req.host, |(h, _)| h);
        'routes: for r in &self.routes {
            if !r.methods.is_empty() && !r.methods.iter().any(|m| m == req.method) {
                continue;
            }
            if !r.hosts.is_empty() && !r.hosts.iter().any(|h| host_matches(h, host)) {
                continue;
            }
            for (name, vals) in &r.headers {
                let ok = req.headers.values(name).any(|v| {
                    let v = String::from_utf8_lossy(v).to_ascii_lowercase();
                    vals.iter().any(|want| want.to_ascii_lowercase() == v)
                });
                if !ok {
                    continue 'routes;
                }
            }
            if r.paths.is_empty() {
                return Some(RouteMatch {
                    route: r.index,
                    matched_len: 0,
                });
            }
            for p in &r.paths {
                match p {
                    PathRule::Prefix(prefix) if scratch.path.starts_with(prefix.as_str()) => {
                        return Some(RouteMatch {
                            route: r.index,
                            matched_len: prefix.len(),
                        });
                    }
                    PathRule::Regex(rx) => {
                        if let Some(c) = rx.captures(&scratch.path) {
                            scratch.captures = (0..c.len())
                                .map(|i| c.get(i).map(|m| (m.start(), m.end())))
                                .collect();
                            scratch.names =
                                rx.capture_names().map(|n| n.map(str::to_string)).collect();
                            let len = c.get(0).map_or(0, |m| m.end());
                            return Some(RouteMatch {
                                route: r.index,
                                matched_len: len,
                            });
                        }
                    }
                    PathRule::Prefix(_) => {}
                }
            }
        }
        None
    }
}

/// Appends the upstream path (Kong's path_handling v0).
pub fn upstream_path(
    service_path: Option<&str>,
    strip_path: bool,
    _path_handling: PathHandling,
    _flavor: RouterFlavor,
    normalized_path: &str,
    matched_len: usize,
    out: &mut Vec<u8>,
) {
    let base = service_path.unwrap_or("/");
    let req = normalized_path;
    if !strip_path {
        if base.ends_with('/') {
            out.extend_from_slice(base.as_bytes());
            out.extend_from_slice(req.get(1..).unwrap_or("").as_bytes());
        } else if req == "/" {
            out.extend_from_slice(base.as_bytes());
        } else {
            out.extend_from_slice(base.as_bytes());
            out.extend_from_slice(req.as_bytes());
        }
        return;
    }
    let postfix = req.get(matched_len..).unwrap_or("");
    if base.ends_with('/') {
        if postfix.is_empty() {
            if base == "/" || req.ends_with('/') {
                out.extend_from_slice(base.as_bytes());
            } else {
                out.extend_from_slice(&base.as_bytes()[..base.len() - 1]);
            }
        } else if postfix.starts_with('/') {
            out.extend_from_slice(&base.as_bytes()[..base.len() - 1]);
            out.extend_from_slice(postfix.as_bytes());
        } else {
            out.extend_from_slice(base.as_bytes());
            out.extend_from_slice(postfix.as_bytes());
        }
    } else if postfix.is_empty() {
        out.extend_from_slice(base.as_bytes());
        if req.ends_with('/') && req.len() > 1 {
            out.push(b'/');
        }
    } else if postfix.starts_with('/') {
        out.extend_from_slice(base.as_bytes());
        out.extend_from_slice(postfix.as_bytes());
    } else {
        out.extend_from_slice(base.as_bytes());
        out.push(b'/');
        out.extend_from_slice(postfix.as_bytes());
    }
}
