//! http-log's config rules, endpoint parsing and batch payloads (sending is covered by the
//! integration tests against a real socket).

use serde_json::json;

use super::*;
use crate::log_queue::Settings;
use gangway_config::ConfigErrors;

fn validate(config: Value) -> Vec<String> {
    let mut errors = ConfigErrors::default();
    schema().validate(Some(&config), "plugins[0].config", &mut errors);
    errors.0.iter().map(ToString::to_string).collect()
}

fn filled(config: Value) -> Value {
    let mut errors = ConfigErrors::default();
    let v = schema().validate(Some(&config), "plugins[0].config", &mut errors);
    assert!(errors.is_empty(), "{errors}");
    v
}

#[test]
fn defaults_follow_kong() {
    let v = filled(json!({"http_endpoint": "http://logs.test/ingest"}));
    assert_eq!(v["method"], "POST");
    assert_eq!(v["content_type"], "application/json");
    assert_eq!(v["timeout"], 10000);
    assert_eq!(v["keepalive"], 60000);
    assert_eq!(v["queue"]["max_batch_size"], 1);
    assert_eq!(v["queue"]["max_coalescing_delay"], 1);
    assert_eq!(v["queue"]["max_entries"], 10000);
    assert_eq!(v["queue"]["max_retry_time"], 60);
    assert_eq!(v["queue"]["initial_retry_delay"], 0.01);
    assert_eq!(v["queue"]["concurrency_limit"], 1);
    assert!(build(&v).is_ok());
}

#[test]
fn bad_configs_get_kongs_messages() {
    assert_eq!(
        validate(json!({})),
        ["plugins[0].config.http_endpoint: required field missing"]
    );
    let errs = validate(json!({
        "http_endpoint": "http://logs.test",
        "method": "GET",
        "headers": {"Host": "x", "X-Ok": "1"},
        "queue": {"max_batch_size": 0, "concurrency_limit": 2},
    }));
    let joined = errs.join("\n");
    for want in [
        "config.method: expected one of: POST, PUT, PATCH",
        "config.headers: cannot contain 'Host' header",
        "config.queue.max_batch_size: value should be between 1 and 1000000",
        "config.queue.concurrency_limit: expected one of: -1, 1",
    ] {
        assert!(joined.contains(want), "missing {want:?} in:\n{joined}");
    }
    assert!(!joined.contains("X-Ok"), "{joined}");
    assert_eq!(
        validate(json!({"http_endpoint": "http://l.test", "headers": {"content-length": "1"}})),
        ["plugins[0].config.headers: cannot contain 'Content-Length' header"]
    );
    assert!(
        validate(json!({"http_endpoint": "ftp://logs.test"}))[0].contains("unsupported scheme")
    );
    let both = filled(json!({
        "http_endpoint": "https://user:pass@logs.test",
        "headers": {"Authorization": "Bearer x"},
    }));
    let err = build(&both).err().expect("refused");
    assert!(
        err[0]
            .1
            .contains("both an 'Authorization' header and user info")
    );
}

#[test]
fn endpoints_carry_port_path_and_basic_auth() {
    let e = Endpoint::parse("https://us%40er:p%3Ass@logs.test/in?x=1").expect("valid");
    assert_eq!((e.tls, e.port, e.path.as_str()), (true, 443, "/in?x=1"));
    // base64("us@er:p:ss")
    assert_eq!(e.authorization.as_deref(), Some("Basic dXNAZXI6cDpzcw=="));
    let e = Endpoint::parse("http://[::1]:9000").expect("valid");
    assert_eq!(
        (e.host.as_str(), e.port, e.path.as_str()),
        ("::1", 9000, "/")
    );
    assert!(Endpoint::parse("http://").is_err());
}

#[test]
fn batches_are_json_arrays_and_single_entries_are_not() {
    let settings = |max_batch_size| Settings {
        kind: NAME,
        endpoint: Endpoint::parse("http://logs.test").expect("valid"),
        method: "POST".into(),
        content_type: "application/json".into(),
        headers: Vec::new(),
        connect_timeout: std::time::Duration::from_secs(1),
        send_timeout: std::time::Duration::from_secs(1),
        keepalive: std::time::Duration::from_secs(1),
        read_timeout: std::time::Duration::from_secs(1),
        max_batch_size,
        max_coalescing_delay: std::time::Duration::ZERO,
        max_entries: 10,
        max_bytes: None,
        max_retry_time: std::time::Duration::ZERO,
        initial_retry_delay: std::time::Duration::from_millis(1),
        max_retry_delay: std::time::Duration::from_millis(1),
        encoder_context: Vec::new(),
    };
    let one = vec![b"{\"a\":1}".to_vec()];
    assert_eq!(super::payload(&settings(1), &one), b"{\"a\":1}");
    let two = vec![b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()];
    assert_eq!(super::payload(&settings(5), &two), b"[{\"a\":1},{\"b\":2}]");
}
