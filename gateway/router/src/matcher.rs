//! One compiled (sub-)route and the per-field match rules of `traditional_compatible`.
//!
//! Each field is an OR over its values and the fields are ANDed, exactly like the ATC
//! expression Kong generates (`transform.lua get_expression`). Paths are tested in their
//! configured order because the first matching path decides what is stripped and captured.

use std::sync::Arc;

use regex::Regex;

use super::HeaderSource;
use gangway_config::ConfigErrors;
use gangway_config::model::Route;
use gangway_config::route_regex;

/// Kong's `split_host_port`: split at the first `:` when the rest parses as a number.
pub(crate) fn split_host_port(s: &str) -> (&str, Option<u64>) {
    match s.split_once(':') {
        Some((host, port)) => match port.trim().parse::<u64>() {
            Ok(p) => (host, Some(p)),
            Err(_) => (s, None),
        },
        None => (s, None),
    }
}

/// How a host or SNI pattern compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostKind {
    /// `example.com`: equality.
    Exact,
    /// `*.example.com`: ends with `.example.com`.
    Suffix,
    /// `example.*`: starts with `example.`.
    Prefix,
}

/// A compiled `hosts` or `snis` entry.
#[derive(Debug, Clone)]
pub(crate) struct HostPat {
    pub kind: HostKind,
    /// The text compared: the host without its `*` and `:port`.
    pub value: Box<str>,
    /// Hosts only: the port compared with the request's destination port.
    pub port: Option<u64>,
}

impl HostPat {
    fn host(h: &str) -> HostPat {
        let (host, port) = split_host_port(h);
        let (kind, value) = if let Some(rest) = host.strip_prefix('*') {
            (HostKind::Suffix, rest)
        } else if let Some(rest) = host.strip_suffix('*') {
            (HostKind::Prefix, rest)
        } else {
            (HostKind::Exact, host)
        };
        HostPat {
            kind,
            value: value.into(),
            port,
        }
    }

    /// Kong's `sni_val_transform`: a trailing dot is not used for routing (except `x.*`).
    fn sni(s: &str) -> HostPat {
        if let Some(rest) = s.strip_suffix('*').filter(|_| !s.starts_with('*')) {
            return HostPat {
                kind: HostKind::Prefix,
                value: rest.into(),
                port: None,
            };
        }
        let s = if s.len() > 1 {
            s.strip_suffix('.').unwrap_or(s)
        } else {
            s
        };
        match s.strip_prefix('*') {
            Some(rest) => HostPat {
                kind: HostKind::Suffix,
                value: rest.into(),
                port: None,
            },
            None => HostPat {
                kind: HostKind::Exact,
                value: s.into(),
                port: None,
            },
        }
    }

    fn text_matches(&self, v: &str) -> bool {
        match self.kind {
            HostKind::Exact => v == &*self.value,
            HostKind::Suffix => v.ends_with(&*self.value),
            HostKind::Prefix => v.starts_with(&*self.value),
        }
    }
}

/// A compiled `~` path regex.
#[derive(Debug)]
pub(crate) struct PathRegex {
    pub re: Regex,
    /// Capture groups, not counting group 0.
    pub groups: usize,
    /// Named groups with their index, shared with the scratch of the last match.
    pub names: Arc<[(Box<str>, usize)]>,
    /// Which of its route's `paths` it is.
    pub path_index: usize,
}

/// A route's paths after splitting: none, prefixes of one length, or regexes.
#[derive(Debug)]
pub(crate) enum PathSet {
    None,
    Prefix(Vec<Box<str>>),
    /// Indexes into the router's regex table.
    Regex(Vec<u32>),
}

#[derive(Debug)]
enum HeaderValue {
    /// ASCII-lower-cased, as Kong lower-cases route values with Lua's `string.lower`.
    Exact(Box<str>),
    Regex(Regex),
}

#[derive(Debug)]
struct HeaderRule {
    /// Lower-cased, `_` turned into `-` (nginx's header lookup does the same).
    name: Box<str>,
    values: Vec<HeaderValue>,
}

/// What the path field matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathHit {
    /// The route has no paths.
    Any,
    /// A prefix of this byte length matched.
    Prefix(usize),
    /// Regex `id` matched `[0]` of this byte length.
    Regex { id: u32, len: usize },
}

/// The request fields a sub-route is evaluated against.
pub(crate) struct Req<'a, H: HeaderSource> {
    pub method: &'a str,
    pub host: Option<&'a str>,
    pub port: u64,
    pub headers: &'a H,
    pub sni: Option<&'a str>,
    pub https: bool,
}

/// One compiled (sub-)route.
#[derive(Debug)]
pub(crate) struct SubRoute {
    /// Index of the original route in the slice given to `Router::build`.
    pub route: usize,
    methods: Vec<Box<str>>,
    pub hosts: Vec<HostPat>,
    snis: Vec<HostPat>,
    headers: Vec<HeaderRule>,
    pub paths: PathSet,
}

fn lower_ascii(s: &str) -> String {
    s.to_ascii_lowercase()
}

fn one_line(e: &regex::Error) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

impl SubRoute {
    /// Compiles one group of `route`'s paths. Regexes are appended to `regexes`; bad ones are
    /// reported into `errors` under `routes[<idx>]`.
    pub(crate) fn compile(
        idx: usize,
        route: &Route,
        paths: &[(usize, &str)],
        regexes: &mut Vec<PathRegex>,
        errors: &mut ConfigErrors,
    ) -> SubRoute {
        let list = |v: &Option<Vec<String>>| v.as_deref().unwrap_or(&[]).to_vec();
        let methods = list(&route.methods).into_iter().map(Box::from).collect();
        let hosts = list(&route.hosts)
            .iter()
            .map(|h| HostPat::host(h))
            .collect();
        let snis = list(&route.snis).iter().map(|s| HostPat::sni(s)).collect();

        let mut headers = Vec::new();
        for (name, values) in route.headers.iter().flatten() {
            let mut compiled = Vec::with_capacity(values.len());
            for (j, v) in values.iter().enumerate() {
                match v.strip_prefix("~*") {
                    Some(re) => {
                        let re = route_regex::header_source(re);
                        match Regex::new(&re) {
                            Ok(r) => compiled.push(HeaderValue::Regex(r)),
                            Err(e) => errors.push(
                                format!("routes[{idx}].headers.{name}[{j}]"),
                                format!("invalid regex: '{re}' ({})", one_line(&e)),
                            ),
                        }
                    }
                    None => compiled.push(HeaderValue::Exact(lower_ascii(v).into())),
                }
            }
            let name = lower_ascii(name).replace('_', "-").into();
            headers.push(HeaderRule {
                name,
                values: compiled,
            });
        }

        let paths = if paths.is_empty() {
            PathSet::None
        } else if super::priority::is_regex_path(paths[0].1) {
            let mut ids = Vec::with_capacity(paths.len());
            for &(j, p) in paths {
                let source = route_regex::path_source(p);
                match Regex::new(&source) {
                    Ok(re) => {
                        let names = re
                            .capture_names()
                            .enumerate()
                            .filter_map(|(i, n)| n.map(|n| (Box::from(n), i)))
                            .collect();
                        let groups = re.captures_len() - 1;
                        ids.push(u32::try_from(regexes.len()).expect("invariant: < 2^32 regexes"));
                        regexes.push(PathRegex {
                            re,
                            groups,
                            names,
                            path_index: j,
                        });
                    }
                    Err(e) => errors.push(
                        format!("routes[{idx}].paths[{j}]"),
                        format!("invalid regex: '{}' ({})", &p[1..], one_line(&e)),
                    ),
                }
            }
            PathSet::Regex(ids)
        } else {
            PathSet::Prefix(paths.iter().map(|&(_, p)| Box::from(p)).collect())
        };

        SubRoute {
            route: idx,
            methods,
            hosts,
            snis,
            headers,
            paths,
        }
    }

    /// True when the route matches on a request header.
    pub(crate) fn matches_headers(&self) -> bool {
        !self.headers.is_empty()
    }

    /// True when every host is an exact name, so the route can be indexed by host.
    pub(crate) fn exact_hosts_only(&self) -> bool {
        !self.hosts.is_empty() && self.hosts.iter().all(|h| h.kind == HostKind::Exact)
    }

    /// Every field except paths; `lower` is a reusable buffer for lower-cased header values.
    pub(crate) fn matches_fields<H: HeaderSource>(
        &self,
        req: &Req<'_, H>,
        lower: &mut String,
    ) -> bool {
        if !self.methods.is_empty() && !self.methods.iter().any(|m| &**m == req.method) {
            return false;
        }
        if !self.hosts.is_empty() {
            let Some(host) = req.host else { return false };
            let ok = self
                .hosts
                .iter()
                .any(|h| h.text_matches(host) && h.port.is_none_or(|p| p == req.port));
            if !ok {
                return false;
            }
        }
        // Kong: `(net.protocol != "https" || tls.sni == ...)`.
        if !self.snis.is_empty() && req.https {
            let Some(sni) = req.sni else { return false };
            if !self.snis.iter().any(|s| s.text_matches(sni)) {
                return false;
            }
        }
        self.headers
            .iter()
            .all(|rule| header_matches(rule, req.headers, lower))
    }

    /// The first configured path that matches `path`, if any.
    pub(crate) fn match_path(&self, path: &str, regexes: &[PathRegex]) -> Option<PathHit> {
        match &self.paths {
            PathSet::None => Some(PathHit::Any),
            PathSet::Prefix(ps) => ps
                .iter()
                .find(|p| path.starts_with(&***p))
                .map(|p| PathHit::Prefix(p.len())),
            PathSet::Regex(ids) => ids.iter().find_map(|&id| {
                let m = regexes[id as usize].re.find(path)?;
                // Kong strips as many bytes as the match is long, from the start of the
                // path: the same as its end, except for a later, unanchored branch of a
                // top-level alternation (`~/a|/b` on `/x/b`).
                Some(PathHit::Regex { id, len: m.len() })
            }),
        }
    }
}

/// Lower-cases a header value into `buf` like atc-router's `lower()` (Unicode-aware); false
/// for values that are not UTF-8, which Kong cannot feed to its router either.
fn lower_into(value: &[u8], buf: &mut String) -> bool {
    buf.clear();
    if value.is_ascii() {
        buf.extend(value.iter().map(|b| char::from(b.to_ascii_lowercase())));
        return true;
    }
    match std::str::from_utf8(value) {
        Ok(s) => {
            buf.extend(s.chars().flat_map(char::to_lowercase));
            true
        }
        Err(_) => false,
    }
}

fn header_matches<H: HeaderSource>(rule: &HeaderRule, headers: &H, lower: &mut String) -> bool {
    headers.values(&rule.name).any(|v| {
        lower_into(v, lower)
            && rule.values.iter().any(|want| match want {
                HeaderValue::Exact(s) => **s == **lower,
                HeaderValue::Regex(re) => re.is_match(lower),
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_host_and_port_like_kong() {
        assert_eq!(
            split_host_port("example.com:123"),
            ("example.com", Some(123))
        );
        assert_eq!(split_host_port("example.*:123"), ("example.*", Some(123)));
        assert_eq!(split_host_port("example.com"), ("example.com", None));
        assert_eq!(split_host_port("example.com:x"), ("example.com:x", None));
        assert_eq!(split_host_port("[::1]:80"), ("[::1]:80", None));
    }

    #[test]
    fn sni_patterns_drop_the_trailing_dot() {
        let exact = HostPat::sni("example.com.");
        assert_eq!(
            (exact.kind, &*exact.value),
            (HostKind::Exact, "example.com")
        );
        let suffix = HostPat::sni("*.example.com.");
        assert_eq!(
            (suffix.kind, &*suffix.value),
            (HostKind::Suffix, ".example.com")
        );
        let prefix = HostPat::sni("example.*");
        assert_eq!(
            (prefix.kind, &*prefix.value),
            (HostKind::Prefix, "example.")
        );
    }

    #[test]
    fn lowers_unicode_values() {
        let mut buf = String::new();
        assert!(lower_into("ÉTÉ".as_bytes(), &mut buf));
        assert_eq!(buf, "été");
        assert!(!lower_into(b"\xff", &mut buf));
    }
}
