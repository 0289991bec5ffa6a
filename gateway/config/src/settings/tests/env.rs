//! Environment layers: precedence over the file, Kong aliases (including nginx directives
//! with nginx syntax) and `process_env`.

use super::*;

#[test]
fn precedence_is_file_then_kong_then_gangway() {
    let file = "log_level = \"warn\"\nworkers = 2\npg_host = \"file\"\n";
    let (s, _) = load_ok(Some(file), &[]);
    assert_eq!(
        (s.log_level, s.workers, s.pg_host.as_str()),
        (LogLevel::Warn, 2, "file")
    );

    let (s, _) = load_ok(
        Some(file),
        &[("KONG_LOG_LEVEL", "error"), ("KONG_PG_HOST", "kong")],
    );
    assert_eq!(
        (s.log_level, s.workers, s.pg_host.as_str()),
        (LogLevel::Error, 2, "kong")
    );

    let (s, _) = load_ok(
        Some(file),
        &[
            ("KONG_LOG_LEVEL", "error"),
            ("GANGWAY_LOG_LEVEL", "debug"),
            ("KONG_NGINX_WORKER_PROCESSES", "auto"),
            ("GANGWAY_PG_HOST", "gangway"),
            ("KONG_PG_HOST", "kong"),
        ],
    );
    assert_eq!(s.log_level, LogLevel::Debug);
    assert_eq!(s.workers, 0);
    assert_eq!(s.pg_host, "gangway");
}

#[test]
fn gangway_variable_overrides_a_kong_value_gangway_cannot_take() {
    // A Kong task definition may carry values gangway rejects; GANGWAY_ replaces them.
    let (s, _) = load_ok(
        None,
        &[
            ("KONG_ROUTER_FLAVOR", "expressions"),
            ("GANGWAY_ROUTER_FLAVOR", "traditional"),
        ],
    );
    assert_eq!(s.router_flavor, RouterFlavor::Traditional);
    let (problems, text) = load_err(None, &[("KONG_ROUTER_FLAVOR", "expressions")]);
    assert_eq!(problems.len(), 1);
    assert!(
        text.contains("environment variable KONG_ROUTER_FLAVOR: invalid value for router_flavor"),
        "{text}"
    );
    assert!(text.contains("not supported"), "{text}");
}

#[test]
fn kong_aliases_that_kong_itself_aliases() {
    // Kong's real_ip_header replaces nginx_proxy_real_ip_header, so it wins.
    let (s, _) = load_ok(
        None,
        &[
            ("KONG_NGINX_PROXY_REAL_IP_HEADER", "X-Forwarded-For"),
            ("KONG_REAL_IP_HEADER", "proxy_protocol"),
            ("KONG_NGINX_PROXY_REAL_IP_RECURSIVE", "on"),
            ("KONG_NGINX_MAIN_WORKER_PROCESSES", "3"),
        ],
    );
    assert_eq!(s.real_ip_header, "proxy_protocol");
    assert!(s.real_ip_recursive);
    assert_eq!(s.workers, 3);
}

#[test]
fn nginx_directive_aliases_use_nginx_syntax() {
    let (s, warnings) = load_ok(
        None,
        &[
            ("KONG_NGINX_HTTP_CLIENT_HEADER_TIMEOUT", "30"),
            ("KONG_NGINX_HTTP_CLIENT_BODY_TIMEOUT", "2m"),
            ("KONG_NGINX_HTTP_KEEPALIVE_TIMEOUT", "65s 60s"),
            ("KONG_NGINX_MAIN_WORKER_SHUTDOWN_TIMEOUT", "15s"),
            ("KONG_NGINX_HTTP_LARGE_CLIENT_HEADER_BUFFERS", "8 16k"),
            ("KONG_NGINX_HTTP_CLIENT_MAX_BODY_SIZE", "512k"),
            ("KONG_NGINX_HTTP_KEEPALIVE_REQUESTS", "500"),
            ("KONG_NGINX_EVENTS_WORKER_CONNECTIONS", "auto"),
        ],
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        s.client_header_timeout_ms, 30_000,
        "bare nginx times are seconds"
    );
    assert_eq!(s.client_body_timeout_ms, 120_000);
    assert_eq!(
        s.keepalive_timeout_ms, 65_000,
        "nginx's timeout, not its header's"
    );
    assert_eq!(s.shutdown_grace_period_ms, 15_000);
    assert_eq!(s.client_header_line_max_bytes, 16 * 1024);
    assert_eq!(s.client_header_max_bytes, 8 * 16 * 1024);
    assert_eq!(s.client_max_body_size, 512 * 1024);
    assert_eq!(s.keepalive_requests, 500);
    assert_eq!(s.max_connections, DEFAULT_MAX_CONNECTIONS);

    // Our own keys: a bare number is milliseconds.
    let (s, _) = load_ok(None, &[("GANGWAY_CLIENT_HEADER_TIMEOUT_MS", "30")]);
    assert_eq!(s.client_header_timeout_ms, 30);

    let (_, text) = load_err(
        None,
        &[("KONG_NGINX_HTTP_LARGE_CLIENT_HEADER_BUFFERS", "8k")],
    );
    assert!(text.contains("expected '<number> <size>'"), "{text}");
}

#[test]
fn process_env_keeps_our_variables_and_survives_non_utf8() {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    let vars = vec![
        (OsString::from("PATH"), OsString::from("/bin")),
        (OsString::from_vec(b"ODD\xff".to_vec()), OsString::from("x")),
        (OsString::from("KONG_LOG_LEVEL"), OsString::from("debug")),
        (
            OsString::from("GANGWAY_PREFIX"),
            OsString::from_vec(b"/tmp/\xff".to_vec()),
        ),
    ];
    assert_eq!(
        super::super::our_vars(vars),
        [
            ("KONG_LOG_LEVEL".to_owned(), "debug".to_owned()),
            ("GANGWAY_PREFIX".to_owned(), "/tmp/\u{fffd}".to_owned()),
        ]
    );
    for (name, _) in process_env() {
        assert!(
            name.starts_with("KONG_") || name.starts_with("GANGWAY_"),
            "{name}"
        );
    }
}
