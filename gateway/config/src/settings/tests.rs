//! Tests of the whole loading pipeline: defaults, the shipped `config/gangway.toml`, precedence
//! and error reporting. Parsers have their own tests next to them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

mod env;

const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/gangway.toml");

/// A settings file in the temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(text: &str) -> TempFile {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "gangway-settings-{}-{}.toml",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, text).expect("temp dir is writable");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn load_ok(file: Option<&str>, vars: &[(&str, &str)]) -> (Settings, Vec<String>) {
    let tmp = file.map(TempFile::new);
    match load(tmp.as_ref().map(|t| t.0.as_path()), env(vars)) {
        Ok(loaded) => loaded,
        Err(e) => panic!("settings should load: {e}"),
    }
}

fn load_err(file: Option<&str>, vars: &[(&str, &str)]) -> (Vec<Problem>, String) {
    let tmp = file.map(TempFile::new);
    match load(tmp.as_ref().map(|t| t.0.as_path()), env(vars)) {
        Ok((s, _)) => panic!("settings should fail to load, got {s:?}"),
        Err(e) => {
            let text = e.to_string();
            (e.problems, text)
        }
    }
}

fn sock(s: &str) -> std::net::SocketAddr {
    s.parse().expect("test literal")
}

/// The field names of [`Settings`]; the exhaustive pattern (no `..`) stops compiling when a
/// field is added without being listed here.
macro_rules! settings_fields {
    ($($field:ident),* $(,)?) => {{
        let Settings { $($field: _),* } = Settings::default();
        [$(stringify!($field)),*]
    }};
}

fn field_names() -> Vec<&'static str> {
    settings_fields!(
        prefix,
        role,
        database,
        proxy_listen,
        admin_listen,
        status_listen,
        cluster_listen,
        admin_ssl_cert,
        admin_ssl_cert_key,
        admin_gui_ssl_cert,
        admin_gui_ssl_cert_key,
        status_ssl_cert,
        status_ssl_cert_key,
        admin_gui_origin,
        admin_gui_listen,
        admin_gui_dir,
        admin_gui_path,
        admin_gui_api_url,
        declarative_config,
        declarative_config_string,
        config_watch,
        workers,
        io_backend,
        redis_connections,
        rate_limiting_local_max_keys,
        mem_cache_size,
        lua_shared_dicts,
        ebpf,
        ebpf_interfaces,
        ebpf_xdp_mode,
        max_connections_per_ip,
        admin_allow_cidrs,
        cluster_allow_cidrs,
        proxy_access_log,
        admin_access_log,
        admin_gui_access_log,
        node_id,
        status_access_log,
        proxy_error_log,
        admin_error_log,
        status_error_log,
        log_kernel_counters,
        plugins,
        router_flavor,
        log_level,
        log_format,
        log_spans,
        tracing_instrumentations,
        tracing_sampling_rate,
        trusted_ips,
        port_maps,
        trust_unix,
        real_ip_header,
        real_ip_recursive,
        headers,
        headers_upstream,
        allow_debug_header,
        error_default_type,
        error_template_html,
        error_template_json,
        error_template_xml,
        error_template_plain,
        lua_max_uri_args,
        lua_max_req_headers,
        lua_max_resp_headers,
        lua_max_post_args,
        client_max_body_size,
        client_body_buffer_size,
        buffered_body_max_size,
        client_header_max_bytes,
        client_header_line_max_bytes,
        client_header_timeout_ms,
        client_body_timeout_ms,
        send_timeout_ms,
        keepalive_timeout_ms,
        keepalive_requests,
        max_connections,
        worker_rlimit_nofile,
        shutdown_grace_period_ms,
        upstream_keepalive_pool_size,
        upstream_keepalive_max_requests,
        upstream_keepalive_idle_timeout,
        upstream_tls_verify,
        client_ssl,
        client_ssl_cert,
        client_ssl_cert_key,
        ssl_cert,
        ssl_cert_key,
        ssl_cipher_suite,
        ssl_ciphers,
        ssl_protocols,
        ssl_prefer_server_ciphers,
        ssl_session_tickets,
        ssl_session_cache_size,
        lua_ssl_trusted_certificate,
        dns_resolver,
        dns_valid_ttl,
        dns_cache_ttl_s,
        dns_stale_ttl,
        pg_host,
        pg_port,
        pg_user,
        pg_password,
        pg_database,
        pg_schema,
        pg_timeout,
        pg_ssl,
        pg_ssl_verify,
        pg_max_concurrent_queries,
        pg_ro_host,
        pg_ro_port,
        pg_ro_user,
        pg_ro_password,
        pg_ro_database,
        pg_ro_ssl,
        pg_ro_ssl_verify,
    )
    .to_vec()
}

/// Fields set through another key rather than a key of their own.
const DERIVED_FIELDS: &[&str] = &["trust_unix"];

#[test]
fn defaults_follow_kong_where_kong_has_the_setting() {
    let s = Settings::default();
    assert_eq!(s.database, Database::Off);
    assert_eq!(s.role, Role::Traditional);
    assert_eq!(s.proxy_listen.len(), 2);
    assert_eq!(s.proxy_listen[0].addr, sock("0.0.0.0:8000"));
    assert!(s.proxy_listen[1].ssl && s.proxy_listen[1].http2);
    assert_eq!(s.admin_listen[0].addr, sock("127.0.0.1:8001"));
    assert_eq!(s.admin_listen[1].addr, sock("127.0.0.1:8444"));
    assert_eq!(s.status_listen.len(), 1);
    assert_eq!(s.status_listen[0].addr, sock("127.0.0.1:8007"));
    assert_eq!(s.status_listen[0].backlog, Some(16384));
    assert_eq!(s.headers, HeaderSet::DEFAULT_DOWNSTREAM);
    assert_eq!(s.headers_upstream, HeaderSet::DEFAULT_UPSTREAM);
    assert_eq!(s.upstream_keepalive_pool_size, 512);
    assert_eq!(s.upstream_keepalive_max_requests, 10_000);
    assert_eq!(s.upstream_keepalive_idle_timeout, 60);
    assert_eq!(s.dns_stale_ttl, 3600);
    assert_eq!(s.pg_timeout, 5000);
    assert_eq!(s.plugins, ["bundled"]);
    assert_eq!(s.lua_ssl_trusted_certificate, ["system"]);
    assert_eq!(s.log_level, LogLevel::Notice);
    assert!(s.worker_count() >= 1);
}

#[test]
fn load_without_sources_is_default() {
    let (s, warnings) = load_ok(None, &[("PATH", "/bin"), ("HOME", "/root")]);
    assert_eq!(s, Settings::default());
    assert!(warnings.is_empty());
}

#[test]
fn shipped_file_loads_to_default() {
    let (s, warnings) = match load(Some(Path::new(SHIPPED)), Vec::new()) {
        Ok(loaded) => loaded,
        Err(e) => panic!("{SHIPPED} should load: {e}"),
    };
    assert_eq!(s, Settings::default());
    assert!(warnings.is_empty());
}

/// The shipped file's `# key = value` lines, uncommented.
fn shipped_defaults() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(SHIPPED).expect("config/gangway.toml is readable");
    text.lines()
        .filter_map(|line| line.strip_prefix("# "))
        .filter_map(|line| line.split_once(" = "))
        .filter(|(key, _)| registry::find(key).is_some())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn shipped_file_documents_the_true_defaults() {
    let defaults = shipped_defaults();
    let uncommented: String = defaults
        .iter()
        .map(|(k, v)| format!("{k} = {v}\n"))
        .collect();
    let (s, _) = load_ok(Some(&uncommented), &[]);
    assert_eq!(s, Settings::default(), "a documented default is wrong");
}

#[test]
fn dns_settings_take_kongs_forms() {
    let (s, _) = load_ok(
        None,
        &[
            ("KONG_DNS_RESOLVER", "10.0.0.2,10.0.0.3:5353,[::1]:53"),
            ("KONG_DNS_VALID_TTL", "120"),
        ],
    );
    assert_eq!(
        s.dns_resolver,
        [sock("10.0.0.2:53"), sock("10.0.0.3:5353"), sock("[::1]:53")]
    );
    assert_eq!(s.dns_valid_ttl, Some(120));
    let (_, err) = load_err(None, &[("KONG_DNS_RESOLVER", "dns.example")]);
    assert!(
        err.contains("invalid nameserver 'dns.example': expected ip[:port]"),
        "{err}"
    );
}

#[test]
fn lua_max_settings_take_kongs_range() {
    let (s, _) = load_ok(
        None,
        &[
            ("KONG_LUA_MAX_URI_ARGS", "1000"),
            ("KONG_LUA_MAX_REQ_HEADERS", "1"),
            ("KONG_LUA_MAX_RESP_HEADERS", "250"),
            ("KONG_LUA_MAX_POST_ARGS", "7"),
        ],
    );
    let limits = |s: &Settings| {
        let uri = s.lua_max_uri_args;
        (
            uri,
            s.lua_max_req_headers,
            s.lua_max_resp_headers,
            s.lua_max_post_args,
        )
    };
    assert_eq!(limits(&s), (1000, 1, 250, 7));
    assert_eq!(limits(&load_ok(None, &[]).0), (100, 100, 100, 100));
    for key in [
        "lua_max_uri_args",
        "lua_max_req_headers",
        "lua_max_resp_headers",
        "lua_max_post_args",
    ] {
        let var = format!("KONG_{}", key.to_ascii_uppercase());
        for bad in ["0", "1001", "2.5", "many"] {
            let (_, err) = load_err(None, &[(var.as_str(), bad)]);
            let want = format!("{key} must be an integer between 1 and 1000, got '{bad}'");
            assert!(err.contains(&want), "{var}={bad}: {err}");
        }
    }
}

#[test]
fn tls_settings_take_kongs_names_and_words() {
    let (s, warnings) = load_ok(
        None,
        &[
            ("KONG_SSL_CIPHER_SUITE", "custom"),
            ("KONG_SSL_CIPHERS", "ECDHE-RSA-AES128-GCM-SHA256"),
            ("KONG_NGINX_HTTP_SSL_PROTOCOLS", "TLSv1.3"),
            ("KONG_SSL_PREFER_SERVER_CIPHERS", "off"),
            ("KONG_SSL_SESSION_TICKETS", "off"),
            ("KONG_SSL_SESSION_CACHE_SIZE", "1m"),
        ],
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(s.ssl_cipher_suite, CipherSuite::Custom);
    assert_eq!(
        s.ssl_ciphers.as_deref(),
        Some("ECDHE-RSA-AES128-GCM-SHA256")
    );
    assert_eq!(s.ssl_protocols, TlsProtocols(vec![TlsProtocol::Tls13]));
    assert!(!s.ssl_prefer_server_ciphers && !s.ssl_session_tickets);
    assert_eq!(s.ssl_session_cache_size, 1 << 20);
    let shown = s.kong_configuration_json();
    assert_eq!(shown["ssl_cipher_suite"], "custom");
    assert_eq!(shown["ssl_protocols"], "TLSv1.3");

    let (_, err) = load_err(None, &[("KONG_SSL_CIPHER_SUITE", "strong")]);
    assert!(err.contains("Undefined cipher suite strong"), "{err}");
    let (_, err) = load_err(None, &[("KONG_SSL_PROTOCOLS", "TLSv1.2 SSLv3")]);
    assert!(
        err.contains(
            "expected TLS versions among TLSv1, TLSv1.1, TLSv1.2 and TLSv1.3, got 'SSLv3'"
        ),
        "{err}"
    );
    let (_, err) = load_err(None, &[("KONG_SSL_PROTOCOLS", " ")]);
    assert!(err.contains("expected at least one TLS version"), "{err}");
}

#[test]
fn error_logs_take_kongs_paths_and_name_the_one_log() {
    let (s, warnings) = load_ok(
        None,
        &[
            ("KONG_PROXY_ERROR_LOG", "/dev/stderr"),
            ("KONG_ADMIN_ERROR_LOG", "/dev/stderr"),
            ("KONG_STATUS_ERROR_LOG", "logs/status_error.log"),
        ],
    );
    assert_eq!(s.proxy_error_log, AccessLog::Stderr);
    assert_eq!(
        warnings,
        [
            "status_error_log = logs/status_error.log is not used: gangway writes one log, to \
          proxy_error_log (/dev/stderr)"
        ]
    );
    let (s, _) = load_ok(None, &[("KONG_PROXY_ERROR_LOG", "logs/error.log notice")]);
    assert_eq!(s.proxy_error_log, AccessLog::File("logs/error.log".into()));
    let (_, err) = load_err(None, &[("KONG_PROXY_ERROR_LOG", "off")]);
    assert!(err.contains("the log cannot be off"), "{err}");
}

#[test]
fn shared_dicts_take_kongs_injected_directive() {
    let (s, _) = load_ok(
        None,
        &[
            (
                "KONG_NGINX_HTTP_LUA_SHARED_DICT",
                "my_cache 64m; lua_shared_dict other-cache 512k",
            ),
            ("KONG_MEM_CACHE_SIZE", "256m"),
        ],
    );
    assert_eq!(
        s.lua_shared_dicts,
        [
            ("my_cache".to_owned(), 64 << 20),
            ("other-cache".to_owned(), 512 << 10)
        ]
    );
    assert_eq!(s.mem_cache_size, 256 << 20);
    for bad in ["my_cache", "my_cache 64x", "a/b 1m", "a 1m 2m"] {
        let (_, err) = load_err(None, &[("KONG_NGINX_HTTP_LUA_SHARED_DICT", bad)]);
        assert!(err.contains("lua_shared_dicts"), "{bad}: {err}");
    }
}

#[test]
fn every_field_is_a_key_and_every_key_is_documented() {
    let fields = field_names();
    let keys: Vec<&str> = registry::KEYS.iter().map(|k| k.name).collect();
    for field in &fields {
        assert!(
            keys.contains(field) || DERIVED_FIELDS.contains(field),
            "field {field} has no settings key"
        );
    }
    for key in &keys {
        assert!(fields.contains(key), "key {key} names no field");
    }
    let documented: Vec<String> = shipped_defaults().into_iter().map(|(k, _)| k).collect();
    for key in &keys {
        let n = documented.iter().filter(|d| d == key).count();
        assert_eq!(n, 1, "config/gangway.toml documents {key} {n} times");
    }
    // Every key also shows up in GET /, unless unset.
    let shown = Settings::default().kong_configuration_json();
    for key in &keys {
        let unset_by_default = [
            "declarative_config",
            "declarative_config_string",
            "pg_password",
            "pg_schema",
            "dns_valid_ttl",
            "admin_gui_dir",
            "admin_gui_api_url",
            "pg_ro_host",
            "pg_ro_port",
            "pg_ro_user",
            "pg_ro_password",
            "pg_ro_database",
            "pg_ro_ssl",
            "pg_ro_ssl_verify",
            "ssl_ciphers",
            "error_template_html",
            "error_template_json",
            "error_template_xml",
            "error_template_plain",
            "admin_error_log",
            "status_error_log",
            "client_ssl_cert",
            "client_ssl_cert_key",
            "node_id",
        ];
        assert_eq!(
            shown.get(*key).is_some(),
            !unset_by_default.contains(key),
            "{key} in GET / configuration"
        );
    }
}

#[test]
fn file_accepts_kong_strings_and_native_toml() {
    let (s, _) = load_ok(
        Some(
            r#"
proxy_listen = ["0.0.0.0:9000", "[::]:9443 ssl http2"]
admin_listen = "off"
database = "postgres"
workers = 4
real_ip_recursive = "on"
allow_debug_header = true
trusted_ips = ["10.0.0.0/8", "unix:"]
client_max_body_size = "10m"
client_body_buffer_size = 16384
buffered_body_max_size = "2m"
keepalive_timeout_ms = "75s"
headers = "off"
plugins = ["bundled", "my-plugin"]
pg_password = "hunter2"
declarative_config = "/etc/kong/kong.yml"
log_level = "debug"
io_backend = "epoll"
"#,
        ),
        &[],
    );
    assert_eq!(s.proxy_listen.len(), 2);
    assert_eq!(s.proxy_listen[1].addr, sock("[::]:9443"));
    assert!(s.proxy_listen[1].ssl);
    assert!(s.admin_listen.is_empty());
    assert_eq!(s.database, Database::Postgres);
    assert_eq!(s.workers, 4);
    assert!(s.real_ip_recursive);
    assert!(s.allow_debug_header);
    assert_eq!(
        s.trusted_ips,
        ["10.0.0.0/8".parse::<IpNet>().expect("literal")]
    );
    assert!(s.trust_unix);
    assert_eq!(s.client_max_body_size, 10 << 20);
    assert_eq!(s.client_body_buffer_size, 16384);
    assert_eq!(s.buffered_body_max_size, 2 << 20);
    assert_eq!(s.keepalive_timeout_ms, 75_000);
    assert!(s.headers.is_empty());
    assert_eq!(s.plugins, ["bundled", "my-plugin"]);
    assert_eq!(s.pg_password.as_deref(), Some("hunter2"));
    assert_eq!(
        s.declarative_config.as_deref(),
        Some(Path::new("/etc/kong/kong.yml"))
    );
    assert_eq!(s.log_level, LogLevel::Debug);
    assert_eq!(s.io_backend, IoBackend::Epoll);
}

#[test]
fn unknown_file_keys_are_errors_with_their_line() {
    let (problems, text) = load_err(Some("workers = 1\n\nproxy_lisen = \"off\"\n"), &[]);
    assert_eq!(problems.len(), 1);
    match &problems[0] {
        Problem::UnknownKey {
            origin: Origin::File { line, .. },
            key,
        } => {
            assert_eq!(key, "proxy_lisen");
            assert_eq!(*line, Some(3));
        }
        other => panic!("unexpected problem {other:?}"),
    }
    assert!(text.contains("line 3: unknown key 'proxy_lisen'"), "{text}");

    let (_, text) = load_err(Some("[proxy]\nlisten = 1\n"), &[]);
    assert!(text.contains("unknown key 'proxy'"), "{text}");
}

#[test]
fn unknown_gangway_variables_are_errors_and_unknown_kong_variables_warnings() {
    let (problems, text) = load_err(
        None,
        &[("GANGWAY_WORKER", "2"), ("KONG_ANONYMOUS_REPORTS", "off")],
    );
    assert_eq!(
        problems,
        [Problem::UnknownEnv {
            var: "GANGWAY_WORKER".to_owned(),
            key: "worker".to_owned()
        }]
    );
    assert!(
        text.contains("unknown environment variable GANGWAY_WORKER"),
        "{text}"
    );

    let (_, warnings) = load_ok(
        None,
        &[
            ("KONG_ANONYMOUS_REPORTS", "off"),
            ("KONG_PROXY_LISTEN", "off"),
        ],
    );
    assert_eq!(
        warnings,
        [
            "ignoring KONG_ANONYMOUS_REPORTS: gangway has no equivalent of Kong's 'anonymous_reports' setting"
        ]
    );
}

#[test]
fn every_bad_value_is_reported_with_key_source_and_expectation() {
    let file =
        "workers = \"many\"\nproxy_listen = \"0.0.0.0:8000 quic\"\nreal_ip_recursive = \"yes\"\n";
    let (problems, text) = load_err(
        Some(file),
        &[
            ("GANGWAY_CLIENT_MAX_BODY_SIZE", "10 megs"),
            ("KONG_DATABASE", "cassandra"),
            ("KONG_HEADERS", "Server, X-Powered-By"),
            ("KONG_TRUSTED_IPS", "10.0.0.0/8, somewhere"),
            ("GANGWAY_ERROR_DEFAULT_TYPE", "text/xml"),
            ("KONG_PG_PORT", "70000"),
        ],
    );
    assert_eq!(problems.len(), 9, "{text}");
    for needle in [
        "line 1: invalid value for workers: expected a whole number or 'auto', got 'many'",
        "line 2: invalid value for proxy_listen: invalid entry '0.0.0.0:8000 quic': unknown flag 'quic'",
        "line 3: invalid value for real_ip_recursive: expected on, off, true or false, got 'yes'",
        "environment variable GANGWAY_CLIENT_MAX_BODY_SIZE: invalid value for client_max_body_size: expected a size in bytes",
        "environment variable KONG_DATABASE: invalid value for database: expected one of off, postgres, got 'cassandra'",
        "environment variable KONG_HEADERS: invalid value for headers: invalid entry 'X-Powered-By'",
        "environment variable KONG_TRUSTED_IPS: invalid value for trusted_ips: expected a comma list",
        "environment variable GANGWAY_ERROR_DEFAULT_TYPE: invalid value for error_default_type: expected one of text/plain",
        "environment variable KONG_PG_PORT: invalid value for pg_port: expected a whole number, got '70000'",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn file_level_errors() {
    let (problems, text) = load_err(Some("workers = 1\nrole = \n"), &[]);
    assert!(
        matches!(problems[..], [Problem::Syntax { line: Some(2), .. }]),
        "{problems:?}"
    );
    assert!(text.contains("invalid TOML"), "{text}");

    let (_, text) = load_err(Some("workers = 1.5\nlog_level = 2024-01-01\n"), &[]);
    assert!(
        text.contains(
            "line 1: invalid value for workers: expected a whole number or 'auto', got '1.5'"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "line 2: invalid value for log_level: expected a string, number or boolean, got a date"
        ),
        "{text}"
    );

    let missing = Path::new("/nonexistent/gangway.toml");
    let err = load(Some(missing), Vec::new()).expect_err("missing file");
    assert!(matches!(err.problems[..], [Problem::Unreadable { .. }]));
    assert!(
        err.to_string()
            .contains("cannot read settings file /nonexistent/gangway.toml")
    );
}

#[test]
fn cross_key_checks_use_kong_messages() {
    let (_, text) = load_err(None, &[("KONG_ROLE", "control_plane")]);
    assert!(
        text.contains("in-memory storage can not be used when role = \"control_plane\""),
        "{text}"
    );
    let (s, _) = load_ok(
        None,
        &[
            ("KONG_ROLE", "control_plane"),
            ("KONG_DATABASE", "postgres"),
        ],
    );
    assert_eq!(s.role, Role::ControlPlane);
    assert_eq!(s.cluster_listen[0].addr, sock("0.0.0.0:8005"));
    let (_, text) = load_err(
        None,
        &[
            ("KONG_ROLE", "control_plane"),
            ("KONG_DATABASE", "postgres"),
            ("KONG_CLUSTER_LISTEN", "0.0.0.0:8001"),
            ("GANGWAY_CLUSTER_ALLOW_CIDRS", "10.0.0.0/8"),
        ],
    );
    assert!(
        text.contains(
            "cluster_listen port 8001 is also in admin_listen: cluster_allow_cidrs guards \
             ports, so cluster_listen needs a port of its own"
        ),
        "{text}"
    );
    let (_, text) = load_err(
        None,
        &[
            ("KONG_PROXY_LISTEN", "10.0.0.1:8001"),
            ("GANGWAY_ADMIN_ALLOW_CIDRS", "10.0.0.0/8"),
        ],
    );
    assert!(
        text.contains(
            "admin_listen port 8001 is also in proxy_listen: admin_allow_cidrs guards ports, \
             so admin_listen needs a port of its own"
        ),
        "{text}"
    );
    let (_, warnings) = load_ok(None, &[("GANGWAY_CLUSTER_ALLOW_CIDRS", "10.0.0.0/8")]);
    assert_eq!(
        warnings,
        [
            "cluster_allow_cidrs is set, but role = \"traditional\": only a control plane has \
          cluster_listen ports to guard"
        ]
    );
    let (_, text) = load_err(
        None,
        &[
            ("KONG_ROLE", "control_plane"),
            ("KONG_DATABASE", "postgres"),
            ("KONG_CLUSTER_LISTEN", "off"),
        ],
    );
    assert!(
        text.contains("cluster_listen must be specified when role = \"control_plane\""),
        "{text}"
    );

    let (_, text) = load_err(
        None,
        &[
            ("KONG_ROLE", "data_plane"),
            ("KONG_DATABASE", "postgres"),
            ("KONG_PROXY_LISTEN", "off"),
        ],
    );
    assert!(
        text.contains("only in-memory storage can be used when role = \"data_plane\""),
        "{text}"
    );
    assert!(
        text.contains("proxy_listen must be specified when role = \"data_plane\""),
        "{text}"
    );

    let (_, text) = load_err(
        None,
        &[
            ("KONG_SSL_CERT", "/a.pem,/b.pem"),
            ("KONG_SSL_CERT_KEY", "/a.key"),
        ],
    );
    assert!(
        text.contains("ssl_cert was specified 2 times while ssl_cert_key was specified 1 times"),
        "{text}"
    );
    let (_, text) = load_err(None, &[("KONG_SSL_CERT", "/a.pem")]);
    assert!(text.contains("ssl_cert_key must be specified"), "{text}");
    // Without a TLS proxy listener Kong does not look at the pair.
    let (s, _) = load_ok(
        None,
        &[
            ("KONG_SSL_CERT", "/a.pem"),
            ("KONG_PROXY_LISTEN", "0.0.0.0:8000"),
        ],
    );
    assert_eq!(s.ssl_cert, [PathBuf::from("/a.pem")]);
}

#[test]
fn kong_configuration_json_redacts_secrets_and_omits_unset_keys() {
    let (s, _) = load_ok(
        None,
        &[
            ("KONG_PG_PASSWORD", "hunter2"),
            ("KONG_DECLARATIVE_CONFIG_STRING", "_format_version: '3.0'"),
            ("KONG_TRUSTED_IPS", "0.0.0.0/0,::/0,unix:"),
        ],
    );
    let json = s.kong_configuration_json();
    assert_eq!(json["pg_password"], "******");
    assert_eq!(json["declarative_config_string"], "******");
    assert!(!json.to_string().contains("hunter2"));
    assert!(json.get("pg_schema").is_none());
    assert_eq!(json["database"], "off");
    assert_eq!(json["role"], "traditional");
    assert_eq!(json["log_level"], "notice");
    assert_eq!(json["pg_port"], 5432);
    assert_eq!(json["real_ip_recursive"], false);
    assert_eq!(
        json["trusted_ips"],
        serde_json::json!(["0.0.0.0/0", "::/0", "unix:"])
    );
    assert_eq!(
        json["headers"],
        serde_json::json!(["server_tokens", "latency_tokens", "X-Kong-Request-Id"])
    );
    assert_eq!(
        json["proxy_listen"],
        serde_json::json!([
            "0.0.0.0:8000 reuseport backlog=16384",
            "0.0.0.0:8443 ssl http2 reuseport backlog=16384"
        ])
    );
    let tls = &json["proxy_listeners"][1];
    assert_eq!(tls["ip"], "0.0.0.0");
    assert_eq!(tls["port"], 8443);
    assert_eq!(tls["ssl"], true);
    assert_eq!(tls["backlog=16384"], true);
    assert_eq!(json["status_listeners"][0]["port"], 8007);
    assert_eq!(json["cluster_listeners"][0]["port"], 8005);
}

#[test]
fn empty_values_unset_optional_keys_and_empty_lists() {
    let (s, _) = load_ok(
        Some("pg_password = \"x\"\nssl_cert = [\"/a\"]\nssl_cert_key = [\"/b\"]\n"),
        &[
            ("GANGWAY_PG_PASSWORD", ""),
            ("GANGWAY_SSL_CERT", ""),
            ("GANGWAY_SSL_CERT_KEY", ""),
            ("KONG_PLUGINS", "off"),
        ],
    );
    assert_eq!(s.pg_password, None);
    assert!(s.ssl_cert.is_empty() && s.ssl_cert_key.is_empty());
    assert!(s.plugins.is_empty());
    let (_, text) = load_err(None, &[("GANGWAY_PREFIX", "")]);
    assert!(
        text.contains("invalid value for prefix: expected a directory path"),
        "{text}"
    );
}
