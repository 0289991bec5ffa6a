//! Declarative kong.yml loader (TEMPORARY lean version until the config branch merges).

use std::path::Path;

use serde_json::Value;
use uuid::Uuid;

use super::model::*;
use super::{Config, ConfigErrors};

/// Loads a YAML or JSON file.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::from(super::ConfigError::new(
            "",
            format!("cannot read {}: {e}", path.display()),
        ))
    })?;
    load_str(&text)
}

/// Loads YAML or JSON text.
pub fn load_str(text: &str) -> Result<Config, ConfigErrors> {
    let value: Value = serde_norway::from_str(text).map_err(|e| {
        ConfigErrors::from(super::ConfigError::new(
            "",
            format!("failed parsing declarative configuration: {e}"),
        ))
    })?;
    parse_value(value)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn strings(v: &Value) -> Option<Vec<String>> {
    v.as_array().map(|a| {
        a.iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect()
    })
}

/// Validates a parsed document.
pub fn parse_value(doc: Value) -> Result<Config, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let mut cfg = Config::default();
    let t = now();
    let services = doc
        .get("services")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, s) in services.iter().enumerate() {
        let path = format!("services[{i}]");
        let name = s.get("name").and_then(Value::as_str).map(str::to_string);
        let id = Uuid::new_v4();
        let (mut protocol, mut host, mut port, mut spath) =
            (Protocol::Http, String::new(), 80i64, None);
        if let Some(url) = s.get("url").and_then(Value::as_str) {
            match url::Url::parse(url) {
                Ok(u) => {
                    protocol = if u.scheme() == "https" {
                        Protocol::Https
                    } else {
                        Protocol::Http
                    };
                    host = u.host_str().unwrap_or("").to_string();
                    port = i64::from(u.port_or_known_default().unwrap_or(80));
                    spath = (u.path() != "/" || url.ends_with('/'))
                        .then(|| u.path().to_string())
                        .filter(|p| !p.is_empty());
                    if u.path() == "/" && !url.trim_end_matches('/').contains("://") {
                        spath = None;
                    }
                    let after_host = url.split("://").nth(1).unwrap_or("");
                    if !after_host.contains('/') {
                        spath = None;
                    }
                }
                Err(e) => errors.push(format!("{path}.url"), format!("invalid url: {e}")),
            }
        }
        if let Some(h) = s.get("host").and_then(Value::as_str) {
            host = h.to_string();
        }
        if let Some(p) = s.get("port") {
            port = p.as_i64().unwrap_or(-1);
        }
        if let Some(p) = s.get("path").and_then(Value::as_str) {
            spath = Some(p.to_string());
        }
        if let Some(p) = s.get("protocol").and_then(Value::as_str) {
            protocol = Protocol::parse(p).unwrap_or(Protocol::Http);
        }
        if !(0..=65535).contains(&port) {
            errors.push(
                format!("{path}.port"),
                "value should be between 0 and 65535",
            );
        }
        if host.is_empty() {
            errors.push(format!("{path}.host"), "required field missing");
        }
        let ms = |k: &str| s.get(k).and_then(Value::as_u64).unwrap_or(60000) as u32;
        cfg.services.push(Service {
            id,
            name: name.clone(),
            protocol,
            host,
            port: port.clamp(0, 65535) as u16,
            path: spath,
            retries: s.get("retries").and_then(Value::as_u64).unwrap_or(5) as u16,
            connect_timeout: ms("connect_timeout"),
            write_timeout: ms("write_timeout"),
            read_timeout: ms("read_timeout"),
            client_certificate: None,
            tls_verify: None,
            tls_verify_depth: None,
            ca_certificates: None,
            enabled: true,
            tags: None,
            created_at: t,
            updated_at: t,
        });
        for (j, r) in s
            .get("routes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            route(
                r,
                Some(id),
                &format!("{path}.routes[{j}]"),
                &mut cfg,
                &mut errors,
                t,
            );
        }
    }
    for (j, r) in doc
        .get("routes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let svc = r.get("service").and_then(Value::as_str).and_then(|n| {
            cfg.services
                .iter()
                .find(|s| s.name.as_deref() == Some(n))
                .map(|s| s.id)
        });
        route(r, svc, &format!("routes[{j}]"), &mut cfg, &mut errors, t);
    }
    for u in doc
        .get("upstreams")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let id = Uuid::new_v4();
        cfg.upstreams.push(Upstream {
            id,
            name: u
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            algorithm: Algorithm::RoundRobin,
            hash_on: HashOn::None,
            hash_fallback: HashOn::None,
            hash_on_header: None,
            hash_fallback_header: None,
            hash_on_cookie: None,
            hash_on_cookie_path: "/".into(),
            hash_on_query_arg: None,
            hash_fallback_query_arg: None,
            hash_on_uri_capture: None,
            hash_fallback_uri_capture: None,
            slots: 10000,
            healthchecks: {
                let mut h = Healthchecks::default();
                let un = u.pointer("/healthchecks/passive/unhealthy");
                let n = |k: &str| {
                    un.and_then(|v| v.get(k))
                        .and_then(Value::as_u64)
                        .unwrap_or(0) as u32
                };
                h.passive.unhealthy.tcp_failures = n("tcp_failures");
                h.passive.unhealthy.http_failures = n("http_failures");
                h.passive.unhealthy.timeouts = n("timeouts");
                h
            },
            host_header: None,
            client_certificate: None,
            use_srv_name: false,
            tags: None,
            created_at: t,
            updated_at: t,
        });
        for tg in u
            .get("targets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            cfg.targets.push(Target {
                id: Uuid::new_v4(),
                upstream: ForeignKey { id },
                target: tg
                    .get("target")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                weight: tg.get("weight").and_then(Value::as_u64).unwrap_or(100) as u32,
                tags: None,
                created_at: t as f64,
                updated_at: t as f64,
            });
        }
    }
    for c in doc
        .get("certificates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let id = Uuid::new_v4();
        cfg.certificates.push(Certificate {
            id,
            cert: c
                .get("cert")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            key: c
                .get("key")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            cert_alt: None,
            key_alt: None,
            tags: None,
            created_at: t,
            updated_at: t,
        });
        for sn in c
            .get("snis")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = sn
                .get("name")
                .and_then(Value::as_str)
                .or(sn.as_str())
                .unwrap_or("")
                .to_string();
            cfg.snis.push(Sni {
                id: Uuid::new_v4(),
                name,
                certificate: ForeignKey { id },
                tags: None,
                created_at: t,
                updated_at: t,
            });
        }
    }
    errors.into_result(cfg)
}

fn route(
    r: &Value,
    service: Option<Id>,
    path: &str,
    cfg: &mut Config,
    errors: &mut ConfigErrors,
    t: i64,
) {
    let mut protocols = vec![Protocol::Http, Protocol::Https];
    if let Some(list) = strings(r.get("protocols").unwrap_or(&Value::Null)) {
        protocols.clear();
        for (k, p) in list.iter().enumerate() {
            match Protocol::parse(p) {
                Some(p) => protocols.push(p),
                None => errors.push(
                    format!("{path}.protocols[{k}]"),
                    "expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp",
                ),
            }
        }
    }
    let headers = r.get("headers").and_then(Value::as_object).map(|m| {
        m.iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), strings(v).unwrap_or_default()))
            .collect()
    });
    let b = |k: &str, d: bool| r.get(k).and_then(Value::as_bool).unwrap_or(d);
    cfg.routes.push(Route {
        id: Uuid::new_v4(),
        name: r.get("name").and_then(Value::as_str).map(str::to_string),
        protocols,
        methods: strings(r.get("methods").unwrap_or(&Value::Null)),
        hosts: strings(r.get("hosts").unwrap_or(&Value::Null)),
        paths: strings(r.get("paths").unwrap_or(&Value::Null)),
        headers,
        snis: None,
        sources: None,
        destinations: None,
        strip_path: b("strip_path", true),
        preserve_host: b("preserve_host", false),
        regex_priority: r.get("regex_priority").and_then(Value::as_i64).unwrap_or(0),
        path_handling: PathHandling::V0,
        https_redirect_status_code: r
            .get("https_redirect_status_code")
            .and_then(Value::as_u64)
            .unwrap_or(426) as u16,
        request_buffering: true,
        response_buffering: true,
        service: service.map(ForeignKey::from),
        tags: None,
        created_at: t,
        updated_at: t,
    });
}
