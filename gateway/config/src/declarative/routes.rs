//! Routes: Kong's field rules, protocol subschemas (http, grpc, stream) and host checks.

use std::collections::HashSet;

use serde_json::Value;

use super::Item;
use super::checks::{Lookup, protocols, reference, unique, utf8_name};
use super::fields::{Fields, id};
use crate::model::*;
use crate::{Config, ConfigErrors, route_regex};

/// Builds every route into `c.routes` (with its declared path in `c.origins`).
pub(super) fn routes(
    items: &[Item<'_>],
    services_known: &dyn Lookup,
    seen: &mut HashSet<String>,
    t: i64,
    c: &mut Config,
    errors: &mut ConfigErrors,
) {
    for it in items {
        let mut f = Fields {
            obj: it.obj,
            path: &it.path,
            errors,
        };
        f.check_known(&[
            "name",
            "protocols",
            "methods",
            "hosts",
            "paths",
            "headers",
            "snis",
            "sources",
            "destinations",
            "strip_path",
            "preserve_host",
            "regex_priority",
            "path_handling",
            "https_redirect_status_code",
            "request_buffering",
            "response_buffering",
            "service",
            "tags",
            "created_at",
            "updated_at",
            "plugins",
        ]);
        let service = reference(&mut f, "service", it.parent, services_known, "services");
        let protocols = protocols(&mut f, &[Protocol::Http, Protocol::Https]);
        let methods = f.strings("methods");
        // Kong's `^%u+$`: a lower-case method would never match a request.
        for (i, m) in methods.iter().flatten().enumerate() {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                f.errors.push(
                    format!("{}.methods[{i}]", it.path),
                    format!("invalid value: {m}"),
                );
            }
        }
        let hosts = f.strings("hosts");
        let paths = f.strings("paths");
        for (i, p) in paths.iter().flatten().enumerate() {
            if !p.starts_with('/') && !p.starts_with("~/") && !p.starts_with('~') {
                f.errors.push(
                    format!("{}.paths[{i}]", it.path),
                    "should start with: / (fixed path) or ~/ (regex path)",
                );
            } else if let Some(regex) = p.strip_prefix('~') {
                if let Err(e) = route_regex::compile(&route_regex::path_source(p)) {
                    f.errors.push(
                        format!("{}.paths[{i}]", it.path),
                        format!("invalid regex: '{regex}' ({e})"),
                    );
                }
            } else if p.contains("//") {
                f.errors.push(
                    format!("{}.paths[{i}]", it.path),
                    "must not have empty segments",
                );
            } else if !p.starts_with('~') {
                match gangway_http::uri::normalized_route_path(p) {
                    Some(n) if n == *p => {}
                    Some(n) => f.errors.push(
                        format!("{}.paths[{i}]", it.path),
                        format!("non-normalized path, consider use '{n}' instead"),
                    ),
                    None => f.errors.push(
                        format!("{}.paths[{i}]", it.path),
                        "invalid path: not valid UTF-8 once decoded",
                    ),
                }
            }
        }
        let headers = match f.raw("headers") {
            Some(Value::Object(m)) => {
                let mut out = std::collections::BTreeMap::new();
                for (k, v) in m {
                    if k.eq_ignore_ascii_case("host") {
                        f.errors.push(f.at("headers"), "cannot contain 'host' header, which must be specified in the 'hosts' attribute");
                    }
                    let values = match v {
                        Value::String(s) => vec![s.clone()],
                        Value::Array(a) => a
                            .iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect(),
                        _ => Vec::new(),
                    };
                    for (j, v) in values.iter().enumerate() {
                        let Some(re) = v.strip_prefix("~*") else {
                            continue;
                        };
                        if let Err(e) = route_regex::compile(&route_regex::header_source(re)) {
                            f.errors.push(
                                format!("{}.{k}[{j}]", f.at("headers")),
                                format!("invalid regex: '{re}' ({e})"),
                            );
                        }
                    }
                    out.insert(k.to_ascii_lowercase(), values);
                }
                Some(out)
            }
            Some(_) => {
                f.errors.push(f.at("headers"), "expected a map");
                None
            }
            None => None,
        };
        let sources = cidr_ports(&mut f, "sources");
        let destinations = cidr_ports(&mut f, "destinations");
        let family = if protocols
            .iter()
            .any(|p| matches!(p, Protocol::Http | Protocol::Https))
        {
            Some("'http' or 'https'")
        } else if protocols
            .iter()
            .any(|p| matches!(p, Protocol::Grpc | Protocol::Grpcs))
        {
            Some("'grpc' or 'grpcs'")
        } else {
            None
        };
        if let Some(family) = family {
            for (name, list) in [("sources", &sources), ("destinations", &destinations)] {
                if list.as_ref().is_some_and(|l| !l.is_empty()) {
                    f.errors.push(
                        f.at(name),
                        format!("cannot set '{name}' when 'protocols' is {family}"),
                    );
                }
            }
        }
        let snis = f.strings("snis");
        if snis.is_some()
            && !protocols.iter().any(|p| {
                matches!(
                    p,
                    Protocol::Https | Protocol::Grpcs | Protocol::Tls | Protocol::TlsPassthrough
                )
            })
        {
            f.errors.push(f.at("snis"), "'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls' or 'tls_passthrough'");
        }
        for (i, h) in hosts.iter().flatten().enumerate() {
            if let Err(msg) = check_route_host(h) {
                f.errors.push(format!("{}.hosts[{i}]", it.path), msg);
            }
        }
        let http = protocols
            .iter()
            .any(|p| matches!(p, Protocol::Http | Protocol::Https));
        if http
            && methods.is_none()
            && hosts.is_none()
            && paths.is_none()
            && headers.is_none()
            && snis.is_none()
        {
            let proto = if protocols.contains(&Protocol::Https) {
                "https"
            } else {
                "http"
            };
            f.errors.push(
                it.path.clone(),
                format!("must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is '{proto}'"),
            );
        }
        let path_handling = match f.str("path_handling").as_deref() {
            None | Some("v0") => PathHandling::V0,
            Some("v1") => PathHandling::V1,
            Some(_) => {
                f.errors
                    .push(f.at("path_handling"), "expected one of: v0, v1");
                PathHandling::V0
            }
        };
        let redirect = f.int("https_redirect_status_code", 0, 999).unwrap_or(426) as u16;
        if ![426, 301, 302, 307, 308].contains(&redirect) {
            f.errors.push(
                f.at("https_redirect_status_code"),
                "expected one of: 426, 301, 302, 307, 308",
            );
        }
        let route = Route {
            id: id(it.obj),
            name: utf8_name(&mut f, "name"),
            protocols,
            methods,
            hosts,
            paths,
            headers,
            snis,
            sources,
            destinations,
            strip_path: f.bool("strip_path").unwrap_or(true),
            preserve_host: f.bool("preserve_host").unwrap_or(false),
            regex_priority: f.int("regex_priority", i64::MIN, i64::MAX).unwrap_or(0),
            path_handling,
            https_redirect_status_code: redirect,
            request_buffering: f.bool("request_buffering").unwrap_or(true),
            response_buffering: f.bool("response_buffering").unwrap_or(true),
            service: service.map(ForeignKey::from),
            tags: f.tags(),
            created_at: f.created_at(t),
            updated_at: t,
        };
        unique(
            &mut *seen,
            "routes",
            "name",
            route.name.as_deref(),
            &it.path,
            errors,
        );
        c.origins.routes.push(&it.path);
        c.routes.push(route);
    }
}

/// Kong's route host rules: one `*` at most, as the whole leftmost or rightmost label; an
/// optional `:port`.
/// Reads a stream route's `sources` or `destinations`: `{ip, port}` records, at least one
/// of the two set, `ip` an address or CIDR and `port` in 0..65535.
fn cidr_ports(f: &mut Fields<'_, '_>, name: &str) -> Option<Vec<CidrPort>> {
    let list = match f.raw(name)? {
        Value::Array(list) => list.clone(),
        Value::Null => return None,
        _ => {
            f.errors.push(f.at(name), "expected a set");
            return None;
        }
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let here = format!("{}.{name}[{i}]", f.path);
        let Some(obj) = item.as_object() else {
            f.errors.push(here, "expected a record");
            continue;
        };
        let ip = match obj.get("ip") {
            None | Some(Value::Null) => None,
            Some(Value::String(ip))
                if ip.parse::<ipnet::IpNet>().is_ok() || ip.parse::<std::net::IpAddr>().is_ok() =>
            {
                Some(ip.clone())
            }
            Some(other) => {
                let shown = other
                    .as_str()
                    .map_or_else(|| other.to_string(), str::to_string);
                f.errors.push(
                    format!("{here}.ip"),
                    format!("invalid ip or cidr range: '{shown}'"),
                );
                None
            }
        };
        let port = match obj.get("port") {
            None | Some(Value::Null) => None,
            Some(p) => match p.as_u64().and_then(|p| u16::try_from(p).ok()) {
                Some(p) => Some(p),
                None => {
                    f.errors.push(
                        format!("{here}.port"),
                        "value should be between 0 and 65535",
                    );
                    None
                }
            },
        };
        if obj.get("ip").is_none_or(Value::is_null) && obj.get("port").is_none_or(Value::is_null) {
            f.errors.push(
                here,
                "at least one of these fields must be non-empty: 'ip', 'port'",
            );
            continue;
        }
        out.push(CidrPort { ip, port });
    }
    Some(out)
}

fn check_route_host(host: &str) -> Result<(), String> {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) if !n.contains(':') => (n, Some(p)),
        _ => (host, None),
    };
    if let Some(p) = port {
        if p.parse::<u16>().is_err() {
            return Err(format!("invalid port number: '{p}'"));
        }
    }
    let stars = name.matches('*').count();
    let wildcard_ok =
        stars == 0 || (stars == 1 && (name.starts_with("*.") || name.ends_with(".*")));
    if !wildcard_ok {
        return Err("invalid wildcard: must be placed at leftmost or rightmost label".into());
    }
    let plain = name.trim_start_matches("*.").trim_end_matches(".*");
    if plain.is_empty()
        || !plain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
    {
        return Err(format!("invalid hostname: {host}"));
    }
    Ok(())
}
