//! Builds each entity from its flattened items with Kong's defaults and rules, and resolves
//! foreign keys given by name or id.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;
use uuid::Uuid;

use super::checks::{self, Existing, Known, Lookup, Refs, protocols, reference, unique, utf8_name};
use super::fast::Fast;
use super::fields::{Fields, id};
use super::plain_plugins;
use super::shared::SharedConfigs;
use super::{Item, Span};
use crate::model::*;
use crate::plugins::{check_ordering, not_enabled};
use crate::{Config, ConfigErrors, PluginSchemas};

type Items<'a> = HashMap<&'static str, Vec<Item<'a>>>;

/// Where the fast-path entities sit among each kind's generic items.
pub(super) type Spans = HashMap<&'static str, Vec<(usize, Span)>>;

/// Kong's error for a service protocol it does not know.
const PROTOCOLS: &str = "expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp";

fn list<'i, 'a>(items: &'i Items<'a>, entity: &str) -> &'i [Item<'a>] {
    items.get(entity).map_or(&[], Vec::as_slice)
}

fn spans<'s>(spans: &'s Spans, entity: &str) -> &'s [(usize, Span)] {
    spans.get(entity).map_or(&[], Vec::as_slice)
}

/// Builds every entity, the fast-path ones included; problems go to `errors`.
pub(super) fn build(
    items: &Items<'_>,
    fast_spans: &Spans,
    mut fast: Fast,
    configs: &SharedConfigs,
    plugins: &dyn PluginSchemas,
    existing: Option<&dyn Existing>,
    errors: &mut ConfigErrors,
) -> Config {
    let t = fast.now;
    let refs = |document, kind| Refs {
        document,
        existing,
        kind,
    };
    let services_in_doc = Known::collect(list(items, "services"), &["name"]);
    let services_known = refs(&services_in_doc, "services");
    let routes_in_doc = Known::collect(list(items, "routes"), &["name"]);
    let routes_known = refs(&routes_in_doc, "routes");
    let upstreams_in_doc = Known::collect(list(items, "upstreams"), &["name"]);
    let upstreams_known = refs(&upstreams_in_doc, "upstreams");
    let certs_in_doc = Known::collect(list(items, "certificates"), &[]);
    let certs_known = refs(&certs_in_doc, "certificates");
    let mut c = Config::default();
    let mut seen: HashMap<&str, HashSet<String>> = HashMap::new();
    let mut ids: HashSet<Uuid> = HashSet::new();

    for it in list(items, "services") {
        let mut f = Fields {
            obj: it.obj,
            path: &it.path,
            errors,
        };
        f.check_known(&[
            "name",
            "protocol",
            "host",
            "port",
            "path",
            "retries",
            "connect_timeout",
            "write_timeout",
            "read_timeout",
            "tls_verify",
            "tls_verify_depth",
            "ca_certificates",
            "client_certificate",
            "enabled",
            "tags",
            "url",
            "created_at",
            "updated_at",
            "routes",
            "plugins",
        ]);
        let mut svc = Service {
            id: id(it.obj),
            name: utf8_name(&mut f, "name"),
            protocol: Protocol::Http,
            host: String::new(),
            port: 80,
            path: None,
            retries: f.int("retries", 0, 32767).unwrap_or(5) as u16,
            connect_timeout: f.int("connect_timeout", 1, 2_147_483_646).unwrap_or(60000) as u32,
            write_timeout: f.int("write_timeout", 1, 2_147_483_646).unwrap_or(60000) as u32,
            read_timeout: f.int("read_timeout", 1, 2_147_483_646).unwrap_or(60000) as u32,
            client_certificate: client_certificate(&mut f, &certs_known),
            tls_verify: f.bool("tls_verify"),
            tls_verify_depth: f.int("tls_verify_depth", 0, 64).map(|d| d as u8),
            ca_certificates: None,
            enabled: f.bool("enabled").unwrap_or(true),
            tags: f.tags(),
            created_at: f.created_at(t),
            updated_at: t,
        };
        if let Some(url) = f.str("url") {
            match url::Url::parse(&url) {
                Ok(u) => {
                    match Protocol::parse(u.scheme()) {
                        Some(p) => svc.protocol = p,
                        None => f.errors.push(f.at("protocol"), PROTOCOLS),
                    }
                    svc.host = u
                        .host_str()
                        .unwrap_or_default()
                        .trim_matches(['[', ']'])
                        .to_string();
                    svc.port = u.port_or_known_default().unwrap_or(80);
                    let after_authority = url.split_once("://").map_or("", |(_, r)| r);
                    svc.path = after_authority.find('/').map(|_| u.path().to_string());
                }
                Err(e) => f.errors.push(f.at("url"), format!("invalid url: {e}")),
            }
        }
        if let Some(p) = f.str("protocol") {
            match Protocol::parse(&p) {
                Some(p) => svc.protocol = p,
                None => f.errors.push(f.at("protocol"), PROTOCOLS),
            }
        }
        if let Some(h) = f.str("host") {
            svc.host = h;
        }
        if let Some(p) = f.int("port", 0, 65535) {
            svc.port = p as u16;
        }
        if let Some(p) = f.str("path") {
            svc.path = Some(p);
        }
        if svc.host.is_empty() {
            f.errors.push(f.at("host"), "required field missing");
        } else if svc.host.contains(':') && svc.host.parse::<std::net::Ipv6Addr>().is_err() {
            f.errors.push(f.at("host"), "must not have a port");
        } else if !checks::valid_host(&svc.host) {
            f.errors
                .push(f.at("host"), format!("invalid value: {}", svc.host));
        }
        if let Some(p) = &svc.path {
            if !p.starts_with('/') {
                f.errors.push(f.at("path"), "should start with: /");
            } else if let Err(e) = checks::rfc3986_path(p) {
                f.errors.push(f.at("path"), e);
            } else if p.contains("//") {
                f.errors.push(f.at("path"), "must not have empty segments");
            }
        }
        if let Some(cas) = f.strings("ca_certificates") {
            let mut ids = Vec::with_capacity(cas.len());
            for (i, ca) in cas.iter().enumerate() {
                match crate::hyphenated_uuid(ca) {
                    Some(id) => ids.push(id),
                    None => f.errors.push(
                        format!("{}.ca_certificates[{i}]", it.path),
                        "expected a valid UUID",
                    ),
                }
            }
            svc.ca_certificates = Some(ids);
        }
        protocol_conditionals(&mut f, svc.protocol, svc.path.is_some());
        unique(
            seen.entry("services").or_default(),
            "services",
            "name",
            svc.name.as_deref(),
            &it.path,
            errors,
        );
        ids.insert(svc.id);
        c.services.push(svc);
    }

    super::routes::routes(
        list(items, "routes"),
        &services_known,
        seen.entry("routes").or_default(),
        t,
        &mut c,
        errors,
    );

    super::consumers::consumers(
        list(items, "consumers"),
        spans(fast_spans, "consumers"),
        &mut fast,
        &mut c.consumers,
        errors,
    );
    let consumers_in_doc = super::consumers::ConsumerRefs::new(&c.consumers);
    let consumers_known = refs(&consumers_in_doc, "consumers");

    for it in list(items, "upstreams") {
        let mut f = Fields {
            obj: it.obj,
            path: &it.path,
            errors,
        };
        f.check_known(&[
            "name",
            "algorithm",
            "hash_on",
            "hash_fallback",
            "hash_on_header",
            "hash_fallback_header",
            "hash_on_cookie",
            "hash_on_cookie_path",
            "hash_on_query_arg",
            "hash_fallback_query_arg",
            "hash_on_uri_capture",
            "hash_fallback_uri_capture",
            "slots",
            "healthchecks",
            "host_header",
            "client_certificate",
            "use_srv_name",
            "tags",
            "created_at",
            "updated_at",
            "targets",
        ]);
        let enum_of =
            |f: &mut Fields<'_, '_>, key: &str| -> Option<Value> { f.str(key).map(Value::String) };
        let mut algorithm: Algorithm = enum_of(&mut f, "algorithm")
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        let hash_on: HashOn = match enum_of(&mut f, "hash_on") {
            Some(v) => serde_json::from_value(v).unwrap_or_else(|_| {
                f.errors.push(f.at("hash_on"), "expected one of: none, consumer, ip, header, cookie, path, query_arg, uri_capture");
                HashOn::None
            }),
            None => HashOn::None,
        };
        let hash_fallback: HashOn = enum_of(&mut f, "hash_fallback")
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        if f.raw("hash_on").is_some() {
            algorithm = if hash_on == HashOn::None {
                Algorithm::RoundRobin
            } else {
                Algorithm::ConsistentHashing
            };
        }
        let mut checks =
            serde_json::to_value(Healthchecks::default()).expect("invariant: defaults serialize");
        if let Some(user) = f.raw("healthchecks") {
            merge(&mut checks, user);
        }
        let healthchecks = serde_json::from_value(checks).unwrap_or_else(|e| {
            f.errors
                .push(f.at("healthchecks"), format!("invalid healthchecks: {e}"));
            Healthchecks::default()
        });
        let up = Upstream {
            id: id(it.obj),
            name: f.required_str("name"),
            algorithm,
            hash_on,
            hash_fallback,
            hash_on_header: f.str("hash_on_header"),
            hash_fallback_header: f.str("hash_fallback_header"),
            hash_on_cookie: f.str("hash_on_cookie"),
            hash_on_cookie_path: f.str("hash_on_cookie_path").unwrap_or_else(|| "/".into()),
            hash_on_query_arg: f.str("hash_on_query_arg"),
            hash_fallback_query_arg: f.str("hash_fallback_query_arg"),
            hash_on_uri_capture: f.str("hash_on_uri_capture"),
            hash_fallback_uri_capture: f.str("hash_fallback_uri_capture"),
            slots: f.int("slots", 10, 65536).unwrap_or(10000) as u32,
            healthchecks,
            host_header: f.str("host_header"),
            client_certificate: client_certificate(&mut f, &certs_known),
            use_srv_name: f.bool("use_srv_name").unwrap_or(false),
            tags: f.tags(),
            created_at: f.created_at(t),
            updated_at: t,
        };
        if up.hash_on == HashOn::Header && up.hash_on_header.is_none() {
            f.errors
                .push(f.at("hash_on_header"), "required field missing");
        }
        unique(
            seen.entry("upstreams").or_default(),
            "upstreams",
            "name",
            Some(&up.name),
            &it.path,
            errors,
        );
        c.upstreams.push(up);
    }

    for it in list(items, "targets") {
        let mut f = Fields {
            obj: it.obj,
            path: &it.path,
            errors,
        };
        f.check_known(&[
            "target",
            "weight",
            "upstream",
            "tags",
            "created_at",
            "updated_at",
        ]);
        let upstream = reference(&mut f, "upstream", it.parent, &upstreams_known, "upstreams");
        let mut target = f.required_str("target");
        if !target.is_empty()
            && crate::model::split_target(&target).is_some_and(|_| !has_port(&target))
        {
            target.push_str(":8000");
        }
        let weight = f.int("weight", 0, 65535).unwrap_or(100) as u32;
        if let Some(upstream) = upstream {
            c.targets.push(Target {
                id: id(it.obj),
                upstream: upstream.into(),
                target,
                weight,
                tags: f.tags(),
                created_at: t as f64,
                updated_at: t as f64,
            });
        } else if it.parent.is_none() && f.raw("upstream").is_none() {
            f.errors.push(f.at("upstream"), "required field missing");
        }
    }

    for it in list(items, "certificates") {
        let mut f = Fields {
            obj: it.obj,
            path: &it.path,
            errors,
        };
        f.check_known(&[
            "cert",
            "key",
            "cert_alt",
            "key_alt",
            "tags",
            "created_at",
            "updated_at",
            "snis",
        ]);
        c.certificates.push(Certificate {
            id: id(it.obj),
            cert: f.required_str("cert"),
            key: f.required_str("key"),
            cert_alt: f.str("cert_alt"),
            key_alt: f.str("key_alt"),
            tags: f.tags(),
            created_at: f.created_at(t),
            updated_at: t,
        });
    }

    for it in list(items, "snis") {
        let mut f = Fields {
            obj: it.obj,
            path: &it.path,
            errors,
        };
        f.check_known(&["name", "certificate", "tags", "created_at", "updated_at"]);
        let name = f.required_str("name");
        if name.parse::<std::net::IpAddr>().is_ok() {
            f.errors.push(f.at("name"), "must not be an IP");
        }
        let cert = reference(
            &mut f,
            "certificate",
            it.parent,
            &certs_known,
            "certificates",
        );
        unique(
            seen.entry("snis").or_default(),
            "snis",
            "name",
            Some(&name),
            &it.path,
            errors,
        );
        if let Some(cert) = cert {
            c.snis.push(Sni {
                id: id(it.obj),
                name,
                certificate: cert.into(),
                tags: None,
                created_at: t,
                updated_at: t,
            });
        }
    }

    for it in list(items, "ca_certificates") {
        let mut f = Fields {
            obj: it.obj,
            path: &it.path,
            errors,
        };
        f.check_known(&["cert", "cert_digest", "tags", "created_at", "updated_at"]);
        let cert = f.required_str("cert");
        let digest = if cert.is_empty() {
            String::new()
        } else {
            super::certs::ca_digest(&cert).unwrap_or_else(|e| {
                f.errors.push(f.at("cert"), e);
                String::new()
            })
        };
        unique(
            seen.entry("ca_certificates").or_default(),
            "ca_certificates",
            "cert_digest",
            Some(&digest).filter(|d| !d.is_empty()).map(String::as_str),
            &it.path,
            f.errors,
        );
        c.ca_certificates.push(CaCertificate {
            id: id(it.obj),
            cert,
            cert_digest: digest,
            tags: f.tags(),
            created_at: f.created_at(t),
            updated_at: t,
        });
    }

    super::consumers::keyauth_credentials(
        list(items, "keyauth_credentials"),
        spans(fast_spans, "keyauth_credentials"),
        &mut fast,
        &consumers_known,
        &mut c.keyauth_credentials,
        errors,
    );
    super::consumers::acls(
        list(items, "acls"),
        spans(fast_spans, "acls"),
        &mut fast,
        &consumers_known,
        &mut c.acls,
        errors,
    );

    // A portal gives each consumer its own instance of a few plans: equal raw configs are
    // validated once and share their filled form.
    let mut validated: HashMap<(String, ConfigKey), Arc<Value>> = HashMap::new();
    let mut cx = plain_plugins::Context {
        services: &services_known,
        routes: &routes_known,
        consumers: &consumers_known,
        configs,
        schemas: plugins,
        validated: &mut validated,
        now: t,
        seen: hashbrown::HashMap::new(),
    };
    // The plain plugins go in among the generic ones where the document has them.
    fast.plain_plugins.sort_by_key(|p| p.before);
    c.plugins
        .reserve(fast.plain_plugins.len() + list(items, "plugins").len());
    let mut plain = fast.plain_plugins.iter().peekable();
    for (j, it) in list(items, "plugins").iter().enumerate() {
        while let Some(p) = plain.next_if(|p| p.before as usize <= j) {
            plain_plugins::build(p, &mut cx, &mut c.plugins, &mut c.origins.plugins, errors);
        }
        generic_plugin(it, &mut cx, &mut c.plugins, &mut c.origins.plugins, errors);
    }
    for p in plain {
        plain_plugins::build(p, &mut cx, &mut c.plugins, &mut c.origins.plugins, errors);
    }
    // Kong's dynamic ordering never coexists with consumer-scoped plugins in a workspace.
    let ordered = c.plugins.iter().position(|p| p.ordering.is_some());
    if let (Some(i), true) = (ordered, c.plugins.iter().any(|p| p.consumer.is_some())) {
        errors.push(
            format!("{}.ordering", c.origins.plugins.get(i)),
            "dynamic plugin ordering cannot be combined with consumer-scoped plugins",
        );
    }
    let _ = ids;
    c
}

/// Checks and builds the generic plugin item `it` into `built` and its path into `origins`.
fn generic_plugin(
    it: &Item<'_>,
    cx: &mut plain_plugins::Context<'_>,
    built: &mut Vec<Plugin>,
    origins: &mut PackedStrs,
    errors: &mut ConfigErrors,
) {
    let mut f = Fields {
        obj: it.obj,
        path: &it.path,
        errors,
    };
    f.check_known(&[
        "name",
        "instance_name",
        "config",
        "service",
        "route",
        "consumer",
        "protocols",
        "enabled",
        "ordering",
        "tags",
        "created_at",
        "updated_at",
    ]);
    let name = f.required_str("name");
    let schema = cx.schemas.schema(&name);
    if !name.is_empty() && schema.is_none() {
        f.errors.push(f.at("name"), not_enabled(&name));
    }
    if let Some(ordering) = f.raw("ordering") {
        check_ordering(ordering, &f.at("ordering"), cx.schemas, f.errors);
    }
    let service = reference(&mut f, "service", it.parent, cx.services, "services");
    let route = reference(&mut f, "route", it.parent, cx.routes, "routes");
    let consumer = reference(&mut f, "consumer", it.parent, cx.consumers, "consumers");
    // A null config is an absent one, as in the entity.
    let shared = it.shared_config.filter(|i| !cx.configs.get(*i).is_null());
    let raw = match shared {
        Some(i) => Some(cx.configs.get(i)),
        None => f.raw("config"),
    };
    let config = match &schema {
        Some(schema) => {
            schema.validate_scope(it.obj, &it.path, f.errors);
            let nested_in_consumer = it.parent.is_some_and(|(fk, _)| fk == "consumer");
            if schema.consumer_forbidden && nested_in_consumer {
                f.errors.push(f.at("consumer"), "value must be null");
            }
            let key = match shared {
                Some(i) => Some(ConfigKey::Shared(i)),
                None => raw.map(|r| ConfigKey::Text(r.to_string())),
            };
            let key = key.map(|k| (name.clone(), k));
            match key.as_ref().and_then(|k| cx.validated.get(k)) {
                Some(filled) => filled.clone(),
                None => {
                    let before = f.errors.len();
                    let filled = Arc::new(schema.validate(raw, &f.at("config"), f.errors));
                    if let (Some(key), true) = (key, f.errors.len() == before) {
                        cx.validated.insert(key, filled.clone());
                    }
                    filled
                }
            }
        }
        None => Arc::new(raw.cloned().unwrap_or(Value::Null)),
    };
    origins.push(&it.path);
    built.push(Plugin {
        id: id(it.obj),
        name,
        instance_name: utf8_name(&mut f, "instance_name"),
        config,
        service: service.map(ForeignKey::from),
        route: route.map(ForeignKey::from),
        consumer: consumer.map(ForeignKey::from),
        protocols: match protocols(&mut f, &plain_plugins::DEFAULT_PROTOCOLS) {
            given if given[..] == plain_plugins::DEFAULT_PROTOCOLS => {
                plain_plugins::default_protocols()
            }
            given => given.into(),
        },
        enabled: f.bool("enabled").unwrap_or(true),
        ordering: f.raw("ordering").cloned(),
        tags: f.tags(),
        created_at: f.created_at(cx.now),
        updated_at: cx.now,
    });
}

/// What identifies a raw plugin config among the ones validated already.
#[derive(PartialEq, Eq, Hash)]
pub(super) enum ConfigKey {
    /// One of the shared configs.
    Shared(u32),
    /// A config as given in its entity, as JSON text.
    Text(String),
}

fn has_port(target: &str) -> bool {
    match target.strip_prefix('[') {
        Some(rest) => rest.contains("]:"),
        None => target.matches(':').count() == 1,
    }
}

/// Deep-merges `user` over `base` (objects merge; everything else replaces).
fn merge(base: &mut Value, user: &Value) {
    match (base, user) {
        (Value::Object(b), Value::Object(u)) => {
            for (k, v) in u {
                match b.get_mut(k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, u) => *b = u.clone(),
    }
}

/// A service's or upstream's `client_certificate`: a certificate by id.
fn client_certificate(f: &mut Fields<'_, '_>, certificates: &dyn Lookup) -> Option<ForeignKey> {
    reference(f, "client_certificate", None, certificates, "certificates").map(Into::into)
}

/// Kong's service entity checks on `protocol`: stream and gRPC services have no path, and
/// only https and tls services take the upstream TLS fields. Each failed check reports the
/// field and, at the entity, the field it depends on.
fn protocol_conditionals(f: &mut Fields<'_, '_>, protocol: Protocol, has_path: bool) {
    let mut failed = Vec::new();
    if matches!(
        protocol,
        Protocol::Tcp | Protocol::Tls | Protocol::Udp | Protocol::Grpc | Protocol::Grpcs
    ) && has_path
    {
        failed.push("path");
    }
    if !matches!(protocol, Protocol::Https | Protocol::Tls) {
        for field in [
            "client_certificate",
            "tls_verify",
            "tls_verify_depth",
            "ca_certificates",
        ] {
            if f.raw(field).is_some() {
                failed.push(field);
            }
        }
    }
    for field in failed {
        f.errors.push(f.at(field), "value must be null");
        f.errors.push(
            f.path.to_string(),
            "failed conditional validation given value of field 'protocol'",
        );
    }
}
