//! The one table of settings keys: each key's name (the TOML key; `GANGWAY_<NAME>` in the
//! environment), its Kong environment aliases, how to parse a value into [`Settings`] and how
//! to show it in Kong's `GET /` `configuration` object. The file and environment sources both
//! go through this table, so adding a key is adding one line here (plus the field and its
//! documented default).

use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde_json::{Value, json};

use super::headers::HeaderSet;
use super::listen::{self, ListenAddr};
use super::values::{
    AccessLog, CipherSuite, Database, EbpfMode, IoBackend, LogFormat, LogKernelCounters, LogLevel,
    RedisConnections, Role, RouterFlavor, TlsProtocols, XdpMode, parse_bool, parse_cidrs,
    parse_duration_ms, parse_error_type, parse_int, parse_list, parse_ms, parse_opt_string,
    parse_size, parse_size_usize, parse_trusted_ips, parse_workers,
};
use super::{DEFAULT_MAX_CONNECTIONS, Settings};

/// Parses a value into its field(s); the error says what was expected.
pub(super) type Apply = fn(&mut Settings, &str) -> Result<(), String>;
/// Shows a key's current value; `None` means unset (omitted, as Kong omits `NONE`).
pub(super) type Show = fn(&Settings) -> Option<Value>;

/// A Kong environment variable that sets a key.
pub(super) struct Alias {
    /// The full variable name, e.g. `KONG_PROXY_LISTEN`.
    pub env: &'static str,
    /// The parser when Kong's syntax differs from ours (nginx times whose bare unit is
    /// seconds); `None` means the key's own parser.
    pub apply: Option<Apply>,
}

/// One settings key.
pub(super) struct Key {
    /// The TOML key and the field name.
    pub name: &'static str,
    /// Kong variables that set this key, weakest first: when several are set, the last wins.
    pub kong: &'static [Alias],
    pub apply: Apply,
    pub show: Show,
    /// Shown as `******` in `GET /`, as Kong does for its `CONF_SENSITIVE` keys.
    pub sensitive: bool,
}

const fn kong(env: &'static str) -> Alias {
    Alias { env, apply: None }
}

const fn nginx(env: &'static str, apply: Apply) -> Alias {
    Alias {
        env,
        apply: Some(apply),
    }
}

/// `key!(field, kong [aliases], parser, shower)`: a key stored in one field.
macro_rules! key {
    ($field:ident, kong [$($alias:expr),* $(,)?], $parse:expr, $show:expr $(, $sensitive:literal)?) => {
        Key {
            name: stringify!($field),
            kong: &[$($alias),*],
            apply: |s, v| {
                s.$field = ($parse)(v)?;
                Ok(())
            },
            show: |s| ($show)(&s.$field),
            sensitive: false $(|| $sensitive)?,
        }
    };
}

fn scalar<T: Clone + Into<Value>>(v: &T) -> Option<Value> {
    Some(v.clone().into())
}

fn text<T: ToString>(v: &T) -> Option<Value> {
    Some(Value::String(v.to_string()))
}

/// An error log's place, or empty for none.
fn opt_error_log(v: &str) -> Result<Option<AccessLog>, String> {
    match v.trim() {
        "" => Ok(None),
        v => AccessLog::parse_error_log(v).map(Some),
    }
}

fn opt_text_shown<T: ToString>(v: &Option<T>) -> Option<Value> {
    v.as_ref().and_then(text)
}

fn opt_text(v: &Option<String>) -> Option<Value> {
    v.as_ref().map(|s| Value::String(s.clone()))
}

fn path(v: &Path) -> Option<Value> {
    Some(Value::String(v.display().to_string()))
}

fn opt_path(v: &Option<PathBuf>) -> Option<Value> {
    v.as_deref().and_then(path)
}

fn opt_scalar<T: Clone + Into<Value>>(v: &Option<T>) -> Option<Value> {
    v.clone().map(Into::into)
}

fn nameservers(v: &[std::net::SocketAddr]) -> Option<Value> {
    Some(json!(v.iter().map(ToString::to_string).collect::<Vec<_>>()))
}

/// Kong's `dns_resolver`: comma-separated `ip[:port]` (IPv6 as `[ip]:port`), port 53 by
/// default.
fn parse_nameservers(v: &str) -> Result<Vec<std::net::SocketAddr>, String> {
    super::values::parse_list(v)?
        .iter()
        .map(|entry| {
            entry
                .parse::<std::net::SocketAddr>()
                .or_else(|_| {
                    entry
                        .parse::<std::net::IpAddr>()
                        .map(|ip| std::net::SocketAddr::new(ip, 53))
                })
                .map_err(|_| format!("invalid nameserver '{entry}': expected ip[:port]"))
        })
        .collect()
}

/// Seconds, or empty / `off` for none.
fn parse_opt_seconds(v: &str) -> Result<Option<u64>, String> {
    match v.trim() {
        "" | "off" => Ok(None),
        n => parse_int(n).map(Some),
    }
}

/// `name size` pairs separated by `;`, each optionally led by `lua_shared_dict` (Kong users
/// declare several through its one injected directive as `a 10m; lua_shared_dict b 20m`).
fn parse_shared_dicts(v: &str) -> Result<Vec<(String, u64)>, String> {
    let mut out = Vec::new();
    for entry in v.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let words: Vec<&str> = entry.split_whitespace().collect();
        let words = match words.as_slice() {
            ["lua_shared_dict", rest @ ..] => rest,
            all => all,
        };
        let [name, size] = words else {
            return Err(format!(
                "expected 'name size' (e.g. my_cache 64m), got '{entry}'"
            ));
        };
        let valid = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(format!("invalid shared dict name '{name}'"));
        }
        out.push(((*name).to_owned(), parse_size(size)?));
    }
    Ok(out)
}

fn shared_dicts(v: &[(String, u64)]) -> Option<Value> {
    let entries: Vec<String> = v.iter().map(|(n, size)| format!("{n} {size}")).collect();
    Some(Value::String(entries.join("; ")))
}

fn cidr_list(v: &[IpNet]) -> Option<Value> {
    Some(json!(v.iter().map(ToString::to_string).collect::<Vec<_>>()))
}

fn strings(v: &[String]) -> Option<Value> {
    Some(json!(v))
}

fn paths(v: &[PathBuf]) -> Option<Value> {
    Some(json!(
        v.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
    ))
}

fn listens(v: &[ListenAddr]) -> Option<Value> {
    Some(json!(listen::to_strings(v)))
}

fn header_set(v: &HeaderSet) -> Option<Value> {
    Some(json!(v.to_tokens()))
}

fn path_list(v: &str) -> Result<Vec<PathBuf>, String> {
    Ok(parse_list(v)?.into_iter().map(PathBuf::from).collect())
}

fn plugin_list(v: &str) -> Result<Vec<String>, String> {
    let list = parse_list(v)?;
    // Kong: `plugins = off` loads no plugin at all.
    if list.first().is_some_and(|p| p == "off") {
        return Ok(Vec::new());
    }
    Ok(list)
}

/// Kong's `port_maps`: `host_port:kong_port` pairs, comma-separated.
fn parse_port_maps(v: &str) -> Result<Vec<(u16, u16)>, String> {
    parse_list(v)?
        .iter()
        .map(|entry| {
            let port = |p: &str| p.trim().parse::<u16>().ok().filter(|&p| p > 0);
            entry
                .split_once(':')
                .and_then(|(host, kong)| Some((port(host)?, port(kong)?)))
                .ok_or_else(|| format!("invalid port mapping (`port_maps`): {entry}"))
        })
        .collect()
}

fn port_map_list(v: &[(u16, u16)]) -> Option<Value> {
    Some(json!(
        v.iter()
            .map(|(host, kong)| format!("{host}:{kong}"))
            .collect::<Vec<_>>()
    ))
}

/// A file's path, or empty for none.
fn opt_file_path(v: &str) -> Result<Option<PathBuf>, String> {
    parse_opt_string(v.trim()).map(|p| p.map(PathBuf::from))
}

fn dir_path(v: &str) -> Result<PathBuf, String> {
    match v.trim() {
        "" => Err("expected a directory path, got an empty value".to_owned()),
        p => Ok(PathBuf::from(p)),
    }
}

/// nginx directives take times whose bare unit is seconds.
fn nginx_seconds(v: &str) -> Result<u64, String> {
    parse_duration_ms(v, 1000)
}

/// nginx `large_client_header_buffers <number> <size>`: a line must fit one buffer and the
/// whole head all of them.
fn apply_large_client_header_buffers(s: &mut Settings, v: &str) -> Result<(), String> {
    let bad = || format!("expected '<number> <size>' (e.g. 4 8k), got '{v}'");
    let mut words = v.split_whitespace();
    let (Some(count), Some(size), None) = (words.next(), words.next(), words.next()) else {
        return Err(bad());
    };
    let count: usize = parse_int(count).map_err(|_| bad())?;
    let size = parse_size_usize(size).map_err(|_| bad())?;
    s.client_header_line_max_bytes = size;
    s.client_header_max_bytes = count.checked_mul(size).ok_or_else(bad)?;
    Ok(())
}

/// nginx `worker_connections`; Kong's `auto` sizes it from the file limit, we use our default.
fn apply_worker_connections(s: &mut Settings, v: &str) -> Result<(), String> {
    s.max_connections = if v.trim().eq_ignore_ascii_case("auto") {
        DEFAULT_MAX_CONNECTIONS
    } else {
        parse_int(v).map_err(|_| format!("expected a whole number or 'auto', got '{v}'"))?
    };
    Ok(())
}

/// nginx's `worker_rlimit_nofile`: `auto` (`None`) or a number of files.
fn parse_rlimit_nofile(v: &str) -> Result<Option<u64>, String> {
    match v.trim() {
        t if t.eq_ignore_ascii_case("auto") => Ok(None),
        t => match t.parse::<u64>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(format!("expected a number of files or 'auto', got '{v}'")),
        },
    }
}

fn rlimit_nofile(v: &Option<u64>) -> Option<Value> {
    Some(v.map_or_else(|| json!("auto"), |n| json!(n)))
}

/// Every settings key, in the order `config/gangway.toml` and `GET /` present them.
pub(super) static KEYS: &[Key] = &[
    key!(prefix, kong[kong("KONG_PREFIX")], dir_path, path),
    key!(role, kong[kong("KONG_ROLE")], Role::parse, text),
    key!(database, kong[kong("KONG_DATABASE")], Database::parse, text),
    key!(
        proxy_listen,
        kong[kong("KONG_PROXY_LISTEN")],
        listen::parse_list,
        listens
    ),
    key!(
        admin_listen,
        kong[kong("KONG_ADMIN_LISTEN")],
        listen::parse_list,
        listens
    ),
    key!(
        status_listen,
        kong[kong("KONG_STATUS_LISTEN")],
        listen::parse_list,
        listens
    ),
    key!(
        cluster_listen,
        kong[kong("KONG_CLUSTER_LISTEN")],
        listen::parse_list,
        listens
    ),
    key!(
        declarative_config,
        kong[kong("KONG_DECLARATIVE_CONFIG")],
        |v: &str| parse_opt_string(v).map(|p| p.map(PathBuf::from)),
        opt_path
    ),
    key!(
        declarative_config_string,
        kong[kong("KONG_DECLARATIVE_CONFIG_STRING")],
        parse_opt_string,
        opt_text,
        true
    ),
    key!(config_watch, kong[], parse_bool, scalar),
    key!(
        workers,
        kong[
            kong("KONG_NGINX_WORKER_PROCESSES"),
            kong("KONG_NGINX_MAIN_WORKER_PROCESSES"),
        ],
        parse_workers,
        scalar
    ),
    key!(io_backend, kong[], IoBackend::parse, text),
    key!(redis_connections, kong[], RedisConnections::parse, text),
    key!(rate_limiting_local_max_keys, kong[], parse_int, scalar),
    key!(
        mem_cache_size,
        kong[kong("KONG_MEM_CACHE_SIZE")],
        parse_size,
        scalar
    ),
    key!(
        lua_shared_dicts,
        kong[kong("KONG_NGINX_HTTP_LUA_SHARED_DICT")],
        parse_shared_dicts,
        shared_dicts
    ),
    key!(ebpf, kong[], EbpfMode::parse, text),
    key!(ebpf_interfaces, kong[], parse_list, strings),
    key!(ebpf_xdp_mode, kong[], XdpMode::parse, text),
    key!(max_connections_per_ip, kong[], parse_int, scalar),
    key!(admin_allow_cidrs, kong[], parse_cidrs, cidr_list),
    key!(cluster_allow_cidrs, kong[], parse_cidrs, cidr_list),
    key!(
        proxy_access_log,
        kong[kong("KONG_PROXY_ACCESS_LOG")],
        AccessLog::parse,
        text
    ),
    key!(
        admin_access_log,
        kong[kong("KONG_ADMIN_ACCESS_LOG")],
        AccessLog::parse,
        text
    ),
    key!(
        admin_gui_access_log,
        kong[kong("KONG_ADMIN_GUI_ACCESS_LOG")],
        AccessLog::parse,
        text
    ),
    key!(
        status_access_log,
        kong[kong("KONG_STATUS_ACCESS_LOG")],
        AccessLog::parse,
        text
    ),
    key!(
        proxy_error_log,
        kong[kong("KONG_PROXY_ERROR_LOG")],
        AccessLog::parse_error_log,
        text
    ),
    key!(
        admin_error_log,
        kong[kong("KONG_ADMIN_ERROR_LOG")],
        opt_error_log,
        opt_text_shown
    ),
    key!(
        status_error_log,
        kong[kong("KONG_STATUS_ERROR_LOG")],
        opt_error_log,
        opt_text_shown
    ),
    key!(log_kernel_counters, kong[], LogKernelCounters::parse, text),
    key!(
        node_id,
        kong[kong("KONG_NODE_ID")],
        parse_node_id,
        |v: &Option<uuid::Uuid>| v.map(|id| Value::String(id.to_string()))
    ),
    key!(plugins, kong[kong("KONG_PLUGINS")], plugin_list, strings),
    key!(
        router_flavor,
        kong[kong("KONG_ROUTER_FLAVOR")],
        RouterFlavor::parse_setting,
        text
    ),
    key!(
        log_level,
        kong[kong("KONG_LOG_LEVEL")],
        LogLevel::parse,
        text
    ),
    key!(log_format, kong[], LogFormat::parse, text),
    key!(log_spans, kong[], parse_bool, scalar),
    key!(
        tracing_instrumentations,
        kong[kong("KONG_TRACING_INSTRUMENTATIONS")],
        super::tracing::Instrumentations::parse,
        text
    ),
    key!(
        tracing_sampling_rate,
        kong[kong("KONG_TRACING_SAMPLING_RATE")],
        super::tracing::SamplingRate::parse,
        |v: &super::tracing::SamplingRate| Some(json!(v.get()))
    ),
    Key {
        name: "trusted_ips",
        kong: &[kong("KONG_TRUSTED_IPS")],
        apply: |s, v| {
            (s.trusted_ips, s.trust_unix) = parse_trusted_ips(v)?;
            Ok(())
        },
        show: |s| {
            let mut list: Vec<String> = s.trusted_ips.iter().map(ToString::to_string).collect();
            if s.trust_unix {
                list.push("unix:".to_owned());
            }
            Some(json!(list))
        },
        sensitive: false,
    },
    key!(
        real_ip_header,
        kong[
            kong("KONG_NGINX_PROXY_REAL_IP_HEADER"),
            kong("KONG_REAL_IP_HEADER"),
        ],
        |v: &str| Ok::<_, String>(v.trim().to_owned()),
        text
    ),
    key!(
        real_ip_recursive,
        kong[
            kong("KONG_NGINX_PROXY_REAL_IP_RECURSIVE"),
            kong("KONG_REAL_IP_RECURSIVE"),
        ],
        parse_bool,
        scalar
    ),
    key!(
        headers,
        kong[kong("KONG_HEADERS")],
        HeaderSet::parse_downstream,
        header_set
    ),
    key!(
        headers_upstream,
        kong[kong("KONG_HEADERS_UPSTREAM")],
        HeaderSet::parse_upstream,
        header_set
    ),
    key!(
        allow_debug_header,
        kong[kong("KONG_ALLOW_DEBUG_HEADER")],
        parse_bool,
        scalar
    ),
    key!(
        error_default_type,
        kong[kong("KONG_ERROR_DEFAULT_TYPE")],
        parse_error_type,
        text
    ),
    key!(
        error_template_html,
        kong[kong("KONG_ERROR_TEMPLATE_HTML")],
        opt_file_path,
        opt_path
    ),
    key!(
        error_template_json,
        kong[kong("KONG_ERROR_TEMPLATE_JSON")],
        opt_file_path,
        opt_path
    ),
    key!(
        error_template_xml,
        kong[kong("KONG_ERROR_TEMPLATE_XML")],
        opt_file_path,
        opt_path
    ),
    key!(
        error_template_plain,
        kong[kong("KONG_ERROR_TEMPLATE_PLAIN")],
        opt_file_path,
        opt_path
    ),
    key!(
        lua_max_uri_args,
        kong[kong("KONG_LUA_MAX_URI_ARGS")],
        parse_max_uri_args,
        scalar
    ),
    key!(
        lua_max_req_headers,
        kong[kong("KONG_LUA_MAX_REQ_HEADERS")],
        parse_max_req_headers,
        scalar
    ),
    key!(
        lua_max_resp_headers,
        kong[kong("KONG_LUA_MAX_RESP_HEADERS")],
        parse_max_resp_headers,
        scalar
    ),
    key!(
        lua_max_post_args,
        kong[kong("KONG_LUA_MAX_POST_ARGS")],
        parse_max_post_args,
        scalar
    ),
    key!(
        client_max_body_size,
        kong[kong("KONG_NGINX_HTTP_CLIENT_MAX_BODY_SIZE")],
        parse_size,
        scalar
    ),
    key!(
        client_body_buffer_size,
        kong[
            kong("KONG_NGINX_HTTP_CLIENT_BODY_BUFFER_SIZE"),
            kong("KONG_CLIENT_BODY_BUFFER_SIZE"),
        ],
        parse_size_usize,
        scalar
    ),
    key!(buffered_body_max_size, kong[], parse_size, scalar),
    key!(
        client_header_max_bytes,
        kong[nginx(
            "KONG_NGINX_HTTP_LARGE_CLIENT_HEADER_BUFFERS",
            apply_large_client_header_buffers
        )],
        parse_size_usize,
        scalar
    ),
    key!(client_header_line_max_bytes, kong[], parse_size_usize, scalar),
    key!(
        client_header_timeout_ms,
        kong[nginx("KONG_NGINX_HTTP_CLIENT_HEADER_TIMEOUT", |s, v| {
            s.client_header_timeout_ms = nginx_seconds(v)?;
            Ok(())
        })],
        parse_ms,
        scalar
    ),
    key!(
        send_timeout_ms,
        kong[nginx("KONG_NGINX_HTTP_SEND_TIMEOUT", |s, v| {
            s.send_timeout_ms = nginx_seconds(v)?;
            Ok(())
        })],
        parse_ms,
        scalar
    ),
    key!(
        client_body_timeout_ms,
        kong[nginx("KONG_NGINX_HTTP_CLIENT_BODY_TIMEOUT", |s, v| {
            s.client_body_timeout_ms = nginx_seconds(v)?;
            Ok(())
        })],
        parse_ms,
        scalar
    ),
    key!(
        keepalive_timeout_ms,
        kong[nginx("KONG_NGINX_HTTP_KEEPALIVE_TIMEOUT", |s, v| {
            // nginx's `keepalive_timeout <timeout> [<header_timeout>]`: the second only
            // sets the Keep-Alive header's value, which gangway does not send.
            let timeout = v.split_whitespace().next().unwrap_or(v);
            s.keepalive_timeout_ms = nginx_seconds(timeout)?;
            Ok(())
        })],
        parse_ms,
        scalar
    ),
    key!(
        keepalive_requests,
        kong[kong("KONG_NGINX_HTTP_KEEPALIVE_REQUESTS")],
        parse_int,
        scalar
    ),
    key!(
        max_connections,
        kong[nginx(
            "KONG_NGINX_EVENTS_WORKER_CONNECTIONS",
            apply_worker_connections
        )],
        parse_int,
        scalar
    ),
    key!(
        worker_rlimit_nofile,
        kong[kong("KONG_NGINX_MAIN_WORKER_RLIMIT_NOFILE")],
        parse_rlimit_nofile,
        rlimit_nofile
    ),
    key!(
        shutdown_grace_period_ms,
        kong[nginx("KONG_NGINX_MAIN_WORKER_SHUTDOWN_TIMEOUT", |s, v| {
            s.shutdown_grace_period_ms = nginx_seconds(v)?;
            Ok(())
        })],
        parse_ms,
        scalar
    ),
    key!(
        upstream_keepalive_pool_size,
        kong[kong("KONG_UPSTREAM_KEEPALIVE_POOL_SIZE")],
        parse_int,
        scalar
    ),
    key!(
        upstream_keepalive_max_requests,
        kong[kong("KONG_UPSTREAM_KEEPALIVE_MAX_REQUESTS")],
        parse_int,
        scalar
    ),
    key!(
        upstream_keepalive_idle_timeout,
        kong[kong("KONG_UPSTREAM_KEEPALIVE_IDLE_TIMEOUT")],
        parse_int,
        scalar
    ),
    key!(upstream_tls_verify, kong[], parse_bool, scalar),
    key!(
        port_maps,
        kong[kong("KONG_PORT_MAPS")],
        parse_port_maps,
        port_map_list
    ),
    key!(
        client_ssl,
        kong[kong("KONG_CLIENT_SSL")],
        parse_bool,
        scalar
    ),
    key!(
        client_ssl_cert,
        kong[kong("KONG_CLIENT_SSL_CERT")],
        parse_opt_string,
        opt_text
    ),
    key!(
        client_ssl_cert_key,
        kong[kong("KONG_CLIENT_SSL_CERT_KEY")],
        parse_opt_string,
        opt_text,
        true
    ),
    key!(ssl_cert, kong[kong("KONG_SSL_CERT")], path_list, paths),
    key!(
        admin_ssl_cert,
        kong[kong("KONG_ADMIN_SSL_CERT")],
        path_list,
        paths
    ),
    key!(
        admin_ssl_cert_key,
        kong[kong("KONG_ADMIN_SSL_CERT_KEY")],
        path_list,
        paths,
        true
    ),
    key!(
        admin_gui_ssl_cert,
        kong[kong("KONG_ADMIN_GUI_SSL_CERT")],
        path_list,
        paths
    ),
    key!(
        admin_gui_ssl_cert_key,
        kong[kong("KONG_ADMIN_GUI_SSL_CERT_KEY")],
        path_list,
        paths,
        true
    ),
    key!(
        status_ssl_cert,
        kong[kong("KONG_STATUS_SSL_CERT")],
        path_list,
        paths
    ),
    key!(
        status_ssl_cert_key,
        kong[kong("KONG_STATUS_SSL_CERT_KEY")],
        path_list,
        paths,
        true
    ),
    key!(
        admin_gui_listen,
        kong[kong("KONG_ADMIN_GUI_LISTEN")],
        listen::parse_list,
        listens
    ),
    key!(
        admin_gui_dir,
        kong[],
        |v: &str| parse_opt_string(v).map(|p| p.map(PathBuf::from)),
        opt_path
    ),
    key!(
        admin_gui_path,
        kong[kong("KONG_ADMIN_GUI_PATH")],
        parse_gui_path,
        text
    ),
    key!(
        admin_gui_api_url,
        kong[kong("KONG_ADMIN_GUI_API_URL")],
        parse_opt_string,
        opt_text
    ),
    key!(
        admin_gui_origin,
        kong[kong("KONG_ADMIN_GUI_ORIGIN")],
        parse_list,
        strings
    ),
    key!(
        ssl_cert_key,
        kong[kong("KONG_SSL_CERT_KEY")],
        path_list,
        paths,
        true
    ),
    key!(
        ssl_cipher_suite,
        kong[kong("KONG_SSL_CIPHER_SUITE")],
        CipherSuite::parse_setting,
        text
    ),
    key!(
        ssl_ciphers,
        kong[kong("KONG_SSL_CIPHERS")],
        parse_opt_string,
        opt_text
    ),
    key!(
        ssl_protocols,
        kong[
            kong("KONG_SSL_PROTOCOLS"),
            kong("KONG_NGINX_HTTP_SSL_PROTOCOLS"),
        ],
        TlsProtocols::parse,
        text
    ),
    key!(
        ssl_prefer_server_ciphers,
        kong[
            kong("KONG_SSL_PREFER_SERVER_CIPHERS"),
            kong("KONG_NGINX_HTTP_SSL_PREFER_SERVER_CIPHERS"),
        ],
        parse_bool,
        scalar
    ),
    key!(
        ssl_session_tickets,
        kong[
            kong("KONG_SSL_SESSION_TICKETS"),
            kong("KONG_NGINX_HTTP_SSL_SESSION_TICKETS"),
        ],
        parse_bool,
        scalar
    ),
    key!(
        ssl_session_cache_size,
        kong[kong("KONG_SSL_SESSION_CACHE_SIZE")],
        parse_size,
        scalar
    ),
    key!(
        lua_ssl_trusted_certificate,
        kong[kong("KONG_LUA_SSL_TRUSTED_CERTIFICATE")],
        parse_list,
        strings
    ),
    key!(
        dns_resolver,
        kong[kong("KONG_DNS_RESOLVER")],
        parse_nameservers,
        nameservers
    ),
    key!(
        dns_valid_ttl,
        kong[kong("KONG_DNS_VALID_TTL")],
        parse_opt_seconds,
        opt_scalar
    ),
    key!(dns_cache_ttl_s, kong[], parse_int, scalar),
    key!(
        dns_stale_ttl,
        kong[kong("KONG_DNS_STALE_TTL")],
        parse_int,
        scalar
    ),
    key!(
        pg_host,
        kong[kong("KONG_PG_HOST")],
        |v: &str| Ok::<_, String>(v.trim().to_owned()),
        text
    ),
    key!(pg_port, kong[kong("KONG_PG_PORT")], parse_int, scalar),
    key!(
        pg_user,
        kong[kong("KONG_PG_USER")],
        |v: &str| Ok::<_, String>(v.to_owned()),
        text
    ),
    key!(
        pg_password,
        kong[kong("KONG_PG_PASSWORD")],
        parse_opt_string,
        opt_text,
        true
    ),
    key!(
        pg_database,
        kong[kong("KONG_PG_DATABASE")],
        |v: &str| Ok::<_, String>(v.to_owned()),
        text
    ),
    key!(
        pg_schema,
        kong[kong("KONG_PG_SCHEMA")],
        parse_opt_string,
        opt_text
    ),
    key!(pg_timeout, kong[kong("KONG_PG_TIMEOUT")], parse_ms, scalar),
    key!(pg_ssl, kong[kong("KONG_PG_SSL")], parse_bool, scalar),
    key!(
        pg_ssl_verify,
        kong[kong("KONG_PG_SSL_VERIFY")],
        parse_bool,
        scalar
    ),
    key!(
        pg_ro_host,
        kong[kong("KONG_PG_RO_HOST")],
        parse_opt_string,
        opt_text
    ),
    key!(
        pg_ro_port,
        kong[kong("KONG_PG_RO_PORT")],
        |v: &str| optional(v, parse_int),
        opt_scalar
    ),
    key!(
        pg_ro_user,
        kong[kong("KONG_PG_RO_USER")],
        parse_opt_string,
        opt_text
    ),
    key!(
        pg_ro_password,
        kong[kong("KONG_PG_RO_PASSWORD")],
        parse_opt_string,
        opt_text,
        true
    ),
    key!(
        pg_ro_database,
        kong[kong("KONG_PG_RO_DATABASE")],
        parse_opt_string,
        opt_text
    ),
    key!(
        pg_ro_ssl,
        kong[kong("KONG_PG_RO_SSL")],
        |v: &str| optional(v, parse_bool),
        opt_scalar
    ),
    key!(
        pg_ro_ssl_verify,
        kong[kong("KONG_PG_RO_SSL_VERIFY")],
        |v: &str| optional(v, parse_bool),
        opt_scalar
    ),
    key!(
        pg_max_concurrent_queries,
        kong[kong("KONG_PG_MAX_CONCURRENT_QUERIES")],
        parse_int,
        scalar
    ),
];

/// An optional value: empty means unset, anything else goes through `parse`.
fn optional<T>(v: &str, parse: fn(&str) -> Result<T, String>) -> Result<Option<T>, String> {
    if v.trim().is_empty() {
        return Ok(None);
    }
    parse(v).map(Some)
}

/// Kong's rule for `admin_gui_path`: starts with `/`, no trailing `/` (but `/` itself), and
/// only `[a-zA-Z0-9-_~/.%]`.
/// Kong's rule for its `lua_max_*` settings, with its message.
fn parse_lua_max(key: &str, v: &str) -> Result<u16, String> {
    match parse_int::<u16>(v) {
        Ok(n @ 1..=1000) => Ok(n),
        _ => Err(format!(
            "{key} must be an integer between 1 and 1000, got '{v}'"
        )),
    }
}

/// Kong's `node_id`: a UUID, or empty for one chosen at start.
fn parse_node_id(v: &str) -> Result<Option<uuid::Uuid>, String> {
    optional(v, |v| {
        uuid::Uuid::parse_str(v.trim())
            .map_err(|_| format!("node_id must be a valid UUID, got '{v}'"))
    })
}

fn parse_max_uri_args(v: &str) -> Result<u16, String> {
    parse_lua_max("lua_max_uri_args", v)
}

fn parse_max_req_headers(v: &str) -> Result<u16, String> {
    parse_lua_max("lua_max_req_headers", v)
}

fn parse_max_resp_headers(v: &str) -> Result<u16, String> {
    parse_lua_max("lua_max_resp_headers", v)
}

fn parse_max_post_args(v: &str) -> Result<u16, String> {
    parse_lua_max("lua_max_post_args", v)
}

fn parse_gui_path(v: &str) -> Result<String, String> {
    let path = v.trim();
    let allowed = path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_~/.%".contains(c));
    if !path.starts_with('/') || !allowed || (path.len() > 1 && path.ends_with('/')) {
        return Err(format!(
            "admin_gui_path must start with a slash, may contain only letters, digits and -_~/.%, and must not end with a slash: '{v}'"
        ));
    }
    Ok(path.to_owned())
}

/// The key named `name`, if any.
pub(super) fn find(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// The `GANGWAY_*` variable for a key.
pub(super) fn env_name(key: &Key) -> String {
    format!("GANGWAY_{}", key.name.to_ascii_uppercase())
}
