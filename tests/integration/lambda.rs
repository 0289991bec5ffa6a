//! aws-lambda (kong-reference.md 4.6): gangway invokes functions through the Invoke API
//! double in `harness/lambda.rs`, which checks each SigV4 signature and parses each API
//! Gateway event with `aws_lambda_events`' types.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::lambda::{
    ACCESS_KEY, ASSUMED_KEY, CargoLambda, Invoke, REGION, SECRET_KEY, WEB_IDENTITY_TOKEN, rfc3339,
};
use crate::harness::{Gangway, Options, TempDir, request};

/// `config:` lines of an aws-lambda instance calling `function` on the double.
fn lambda(invoke: &Invoke, function: &str, extra: &str) -> String {
    format!(
        r#"      - name: aws-lambda
        config:
          aws_key: {ACCESS_KEY}
          aws_secret: {SECRET_KEY}
          aws_region: {REGION}
          host: 127.0.0.1
          port: {port}
          disable_https: true
          function_name: {function}
{extra}"#,
        port = invoke.addr.port()
    )
}

/// A config of routes, each `(name, paths, plugins YAML)`, without a service.
fn config(routes: &[(&str, &str, String)], top: &str) -> String {
    let mut out = String::from("_format_version: \"3.0\"\n");
    out.push_str(top);
    out.push_str("routes:\n");
    for (name, paths, plugins) in routes {
        out.push_str(&format!(
            "  - name: {name}\n    paths: {paths}\n    strip_path: false\n    plugins:\n{plugins}"
        ));
    }
    out
}

#[test]
fn plain_invocations_are_signed_and_carry_the_arguments_and_lambdas_headers() {
    let invoke = Invoke::start(&[]);
    let gw = Gangway::start(&config(
        &[
            ("plain", "[/plain]", lambda(&invoke, "echo", "")),
            (
                "qualified",
                "[/qualified]",
                lambda(
                    &invoke,
                    "echo",
                    "          qualifier: v2\n          log_type: None\n",
                ),
            ),
        ],
        "",
    ));
    let r = request(
        gw.proxy,
        "POST",
        "/plain?a=1&a=2&flag&q=x",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"q=from-body&b=3",
    )
    .expect("request");
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    // Kong's plain payload: the query arguments merged with the body's, the body winning.
    assert_eq!(
        body["event"],
        json!({"a": ["1", "2"], "flag": true, "q": "from-body", "b": "3"})
    );
    assert_eq!(r.header("X-Amz-Executed-Version"), Some("$LATEST"));
    assert_eq!(r.header("X-Amz-Log-Result"), Some("bG9nIGxpbmU="));
    assert!(r.header("x-amzn-RequestId").is_some());
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert!(r.header("Via").is_some_and(|v| v.starts_with("1.1 ")));
    assert!(r.header("X-Kong-Response-Latency").is_some());
    assert_eq!(r.headers_named("Content-Length").len(), 1);

    // A JSON array body is a Lua table to Kong: sent as the array (Kong's access spec).
    let array = [("Content-Type", "application/json")];
    let r = request(gw.proxy, "POST", "/plain", &array, b"[{}, []]").expect("request");
    assert_eq!(r.status, 200, "{}", r.text());
    // (The answer's empty array comes back as {}: Kong's `empty_arrays_mode: legacy`.)
    assert_eq!(invoke.invocations()[1].payload, json!([{}, []]));

    let r = gw.get("/qualified");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("X-Amz-Log-Result"), None, "log_type None");
    invoke.assert_clean();
    let calls = invoke.invocations();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0].access_key, ACCESS_KEY);
    assert_eq!(calls[0].qualifier, None);
    assert_eq!(calls[2].qualifier.as_deref(), Some("v2"));
}

#[test]
fn forward_flags_send_the_method_uri_headers_and_body() {
    let invoke = Invoke::start(&[]);
    let extra = "          forward_request_method: true\n          forward_request_uri: true\n          forward_request_headers: true\n          forward_request_body: true\n";
    let gw = Gangway::start(&config(
        &[("fwd", "[/fwd]", lambda(&invoke, "echo", extra))],
        "",
    ));
    let r = request(
        gw.proxy,
        "PUT",
        "/fwd/x?q=1",
        &[
            ("Content-Type", "application/json"),
            ("X-Two", "a"),
            ("X-Two", "b"),
        ],
        br#"{"k": "v"}"#,
    )
    .expect("request");
    assert_eq!(r.status, 200, "{}", r.text());
    let event = &r.json()["event"];
    assert_eq!(event["request_method"], "PUT");
    assert_eq!(event["request_uri"], "/fwd/x?q=1");
    assert_eq!(event["request_uri_args"], json!({"q": "1"}));
    assert_eq!(event["request_headers"]["x-two"], json!(["a", "b"]));
    assert_eq!(event["request_body"], r#"{"k": "v"}"#);
    assert_eq!(event["request_body_args"], json!({"k": "v"}));
    assert_eq!(event.get("request_body_base64"), None);

    // A type Kong cannot parse travels base64-encoded, without arguments.
    let r = request(
        gw.proxy,
        "POST",
        "/fwd",
        &[("Content-Type", "application/octet-stream")],
        &[0, 159, 146, 150],
    )
    .expect("request");
    let event = &r.json()["event"];
    assert_eq!(event["request_body"], "AJ+Slg==");
    assert_eq!(event["request_body_base64"], true);
    assert_eq!(event["request_body_args"], json!({}));

    // Kong looks the whole Content-Type up among its text types, and takes as JSON only
    // what starts with application/json: both of these go base64-encoded.
    for content_type in ["text/plain; charset=utf-8", "application/vnd.api+json"] {
        let r = request(
            gw.proxy,
            "POST",
            "/fwd",
            &[("Content-Type", content_type)],
            b"hi",
        )
        .expect("request");
        let event = &r.json()["event"];
        assert_eq!(event["request_body"], "aGk=", "{content_type}");
        assert_eq!(event["request_body_base64"], true, "{content_type}");
        assert_eq!(event["request_body_args"], json!({}), "{content_type}");
    }
    let r = request(
        gw.proxy,
        "POST",
        "/fwd",
        &[("Content-Type", "text/plain")],
        b"hi",
    )
    .expect("request");
    assert_eq!(
        r.json()["event"]["request_body"],
        "hi",
        "known text travels as it is"
    );
    invoke.assert_clean();
}

/// A route behind key-auth whose function gets API Gateway events of `version`.
fn gateway_config(invoke: &Invoke, function: &str, version: &str) -> String {
    let extra = format!(
        "          awsgateway_compatible: true\n          awsgateway_compatible_payload_version: \"{version}\"\n          is_proxy_integration: true\n"
    );
    config(
        &[(
            "users",
            r#"['~/users/(?<id>\d+)$']"#,
            format!(
                "      - name: key-auth\n{}",
                lambda(invoke, function, &extra)
            ),
        )],
        "consumers:\n  - username: ann\n    custom_id: c-ann\n    keyauth_credentials: [{key: ann-key}]\n",
    )
}

#[test]
fn rest_api_events_parse_as_api_gateway_events_and_describe_the_request() {
    let invoke = Invoke::start(&[]);
    let gw = Gangway::start(&gateway_config(&invoke, "apigw-v1", "1.0"));
    let r = request(
        gw.proxy,
        "GET",
        "/users/42?x=1&x=2&y",
        &[
            ("apikey", "ann-key"),
            ("X-Multi", "a"),
            ("X-Multi", "b"),
            ("User-Agent", "tests/1"),
        ],
        b"",
    )
    .expect("request");
    assert_eq!(r.status, 200, "{}", r.text());
    invoke.assert_clean();
    let event = r.json();
    assert_eq!(event["version"], "1.0");
    // As Kong's serializer (spec/03-plugins/27-aws-lambda/05-aws-serializer_spec.lua), even
    // no body is base64 (""). `resource` and an argument without `=` are API Gateway's
    // (see gateway/lambda/src/lib.rs).
    assert_eq!(event["resource"], "/users/{id}");
    assert_eq!(event["path"], "/users/42");
    assert_eq!(event["httpMethod"], "GET");
    assert_eq!(event["pathParameters"], json!({"id": "42"}));
    assert_eq!(event["queryStringParameters"], json!({"x": "1", "y": ""}));
    assert_eq!(
        event["multiValueQueryStringParameters"],
        json!({"x": ["1", "2"], "y": [""]})
    );
    assert_eq!(event["headers"]["x-multi"], "a");
    assert_eq!(event["multiValueHeaders"]["x-multi"], json!(["a", "b"]));
    assert_eq!(event["body"], "");
    assert_eq!(event["isBase64Encoded"], true);
    let context = &event["requestContext"];
    assert_eq!(
        context["requestId"].as_str(),
        r.header("X-Kong-Request-Id"),
        "the request id gangway logs"
    );
    assert_eq!(context["identity"]["sourceIp"], "127.0.0.1");
    assert_eq!(context["identity"]["userAgent"], "tests/1");
    assert_eq!(context["httpMethod"], "GET");
    assert_eq!(context["stage"], "$default");
    assert_eq!(context["authorizer"]["consumer_username"], "ann");
    assert_eq!(context["authorizer"]["consumer_custom_id"], "c-ann");
    assert!(
        context["requestTime"]
            .as_str()
            .is_some_and(|t| t.ends_with(" +0000"))
    );
    assert!(
        context["requestTimeEpoch"]
            .as_u64()
            .is_some_and(|t| t > 1_700_000_000_000)
    );

    let r = request(
        gw.proxy,
        "POST",
        "/users/7",
        &[("apikey", "ann-key"), ("Content-Type", "text/plain")],
        b"hello",
    )
    .expect("request");
    assert_eq!(r.status, 200, "{}", r.text());
    let event = r.json();
    assert_eq!(event["body"], "aGVsbG8=");
    assert_eq!(event["isBase64Encoded"], true);
    // No query string: empty maps, not null.
    let r = request(gw.proxy, "GET", "/users/9", &[("apikey", "ann-key")], b"").expect("request");
    let event = r.json();
    assert_eq!(event["queryStringParameters"], json!({}));
    assert_eq!(event["multiValueQueryStringParameters"], json!({}));
    // Without a key, key-auth answers before the function is called.
    assert_eq!(gw.get("/users/1").status, 401);
    assert_eq!(invoke.invocations().len(), 3);
    invoke.assert_clean();
}

#[test]
fn http_api_events_join_repeats_and_carry_cookies_apart() {
    let invoke = Invoke::start(&[]);
    let gw = Gangway::start(&gateway_config(&invoke, "apigw-v2", "2.0"));
    let r = request(
        gw.proxy,
        "GET",
        "/users/42?x=1&x=2",
        &[
            ("apikey", "ann-key"),
            ("X-Multi", "a"),
            ("X-Multi", "b"),
            ("Cookie", "c1=1; c2=2"),
        ],
        b"",
    )
    .expect("request");
    assert_eq!(r.status, 200, "{}", r.text());
    invoke.assert_clean();
    let event = r.json();
    assert_eq!(event["version"], "2.0");
    assert_eq!(event["routeKey"], "GET /users/{id}");
    assert_eq!(event["rawPath"], "/users/42");
    assert_eq!(event["rawQueryString"], "x=1&x=2");
    assert_eq!(event["cookies"], json!(["c1=1", "c2=2"]));
    assert_eq!(event["headers"]["x-multi"], "a,b");
    assert_eq!(event["headers"].get("cookie"), None);
    assert_eq!(event["queryStringParameters"], json!({"x": "1,2"}));
    assert_eq!(event["pathParameters"], json!({"id": "42"}));
    let context = &event["requestContext"];
    assert_eq!(context["http"]["method"], "GET");
    assert_eq!(context["http"]["sourceIp"], "127.0.0.1");
    assert_eq!(context["requestId"].as_str(), r.header("X-Kong-Request-Id"));
    assert_eq!(context["authorizer"]["lambda"]["consumer_username"], "ann");
    // The function's v2 cookies come back as Set-Cookie headers.
    assert_eq!(r.headers_named("Set-Cookie"), vec!["v2a=1", "v2b=2"]);
}

#[test]
fn proxy_integration_answers_set_the_status_headers_and_body() {
    let invoke = Invoke::start(&[]);
    let proxy = "          is_proxy_integration: true\n";
    let gw = Gangway::start(&config(
        &[
            ("b64", "[/base64]", lambda(&invoke, "base64", proxy)),
            ("multi", "[/multi]", lambda(&invoke, "multi-value", proxy)),
            ("bad", "[/bad]", lambda(&invoke, "bad-json", proxy)),
        ],
        "",
    ));
    let r = gw.get("/base64");
    assert_eq!(r.status, 201);
    assert_eq!(r.text(), "hello from base64");
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
    assert_eq!(r.header("X-From-Function"), Some("yes"));
    assert_eq!(r.header("Content-Length"), Some("17"));

    let r = gw.get("/multi");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "cookies");
    assert_eq!(
        r.headers_named("Set-Cookie"),
        vec!["a=1; Path=/", "b=2; Path=/"]
    );
    assert_eq!(r.header("X-Single"), Some("one"));

    let r = gw.get("/bad");
    assert_eq!(r.status, 502);
    let body = r.json();
    assert_eq!(body["message"], "Bad Gateway");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("could not JSON decode Lambda function response: ")),
        "{body}"
    );
    invoke.assert_clean();
}

#[test]
fn function_errors_invocation_types_api_errors_and_timeouts_get_kongs_statuses() {
    let invoke = Invoke::start(&[]);
    let gw = Gangway::start(&config(
        &[
            (
                "unhandled",
                "[/unhandled]",
                lambda(&invoke, "unhandled", "          unhandled_status: 412\n"),
            ),
            (
                "unhandled-default",
                "[/unhandled-200]",
                lambda(&invoke, "unhandled", ""),
            ),
            (
                "event",
                "[/event]",
                lambda(&invoke, "echo", "          invocation_type: Event\n"),
            ),
            (
                "dry",
                "[/dry]",
                lambda(&invoke, "echo", "          invocation_type: DryRun\n"),
            ),
            ("missing", "[/missing]", lambda(&invoke, "missing", "")),
            (
                "slow",
                "[/slow]",
                lambda(&invoke, "sleep-3000", "          timeout: 300\n"),
            ),
            ("chunked", "[/chunked]", lambda(&invoke, "chunked", "")),
        ],
        "",
    ));
    let r = gw.get("/unhandled");
    assert_eq!(r.status, 412);
    assert_eq!(r.header("X-Amz-Function-Error"), Some("Unhandled"));
    assert_eq!(r.json()["errorMessage"], "boom");
    assert_eq!(gw.get("/unhandled-200").status, 200);
    let r = gw.get("/event");
    assert_eq!((r.status, r.text().as_str()), (202, ""));
    assert_eq!(gw.get("/dry").status, 204);
    let r = gw.get("/missing");
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["message"], "An unexpected error occurred");
    let started = Instant::now();
    let r = gw.get("/slow");
    // Kong's spec, "errors on connection timeout": 500, not a gateway timeout.
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.json()["message"], "An unexpected error occurred");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "bounded by timeout"
    );
    let r = gw.get("/chunked");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["framed"], "chunked");
    assert_eq!(r.header("Transfer-Encoding"), None);
    let types: Vec<Option<String>> = invoke
        .invocations()
        .iter()
        .map(|i| i.invocation_type.clone())
        .collect();
    assert!(types.contains(&Some("Event".into())));
    assert!(types.contains(&Some("DryRun".into())));
    invoke.assert_clean();
    // Every call is timed and counted by result.
    let metrics = crate::metrics::scrape(&gw);
    let calls = |result: &str| {
        crate::metrics::sample(
            &metrics,
            "gangway_lambda_invocations_total",
            &[&format!("result=\"{result}\"")],
        )
    };
    assert_eq!(calls("timeout"), Some(1.0), "{metrics}");
    assert_eq!(calls("error"), Some(1.0), "the missing function: {metrics}");
    assert_eq!(calls("ok"), Some(5.0), "{metrics}");
    assert_eq!(
        crate::metrics::sample(&metrics, "gangway_lambda_invoke_seconds_count", &[]),
        Some(7.0),
        "{metrics}"
    );
}

#[test]
fn credentials_and_region_come_from_the_environment_without_config_keys() {
    let invoke = Invoke::start(&[("AKIDFROMENV", "env/secret")]);
    let plugin = format!(
        "      - name: aws-lambda\n        config:\n          host: 127.0.0.1\n          port: {}\n          disable_https: true\n          function_name: echo\n",
        invoke.addr.port()
    );
    let text = config(&[("env", "[/env]", plugin)], "");
    let gw = Gangway::start_with(
        Options::new(text.clone())
            .env("AWS_ACCESS_KEY_ID", "AKIDFROMENV")
            .env("AWS_SECRET_ACCESS_KEY", "env/secret")
            .env("AWS_REGION", REGION)
            .env("AWS_EC2_METADATA_DISABLED", "true"),
    );
    let r = gw.get("/env?who=env");
    assert_eq!(r.status, 200, "{}", r.text());
    invoke.assert_clean();
    assert_eq!(invoke.invocations()[0].access_key, "AKIDFROMENV");
    drop(gw);

    // No region anywhere: Kong's 500, and the function is not called.
    let gw = Gangway::start_with(
        Options::new(text)
            .env("AWS_ACCESS_KEY_ID", "AKIDFROMENV")
            .env("AWS_SECRET_ACCESS_KEY", "env/secret")
            .env("AWS_EC2_METADATA_DISABLED", "true"),
    );
    assert_eq!(gw.get("/env").status, 500);
    assert_eq!(invoke.invocations().len(), 1);
    assert!(gw.log().contains("no region specified"), "{}", gw.log());
}

#[test]
fn lambda_answers_go_through_header_filter_and_log_with_the_lambda_time_as_proxy_latency() {
    let invoke = Invoke::start(&[]);
    let dir = TempDir::new("lambda-log");
    let log = dir.path("lambda.log");
    let plugins = format!(
        "{}      - name: response-transformer\n        config:\n          add:\n            headers: [\"X-Added:yes\"]\n      - name: file-log\n        config:\n          path: {}\n",
        lambda(&invoke, "sleep-200", ""),
        log.display()
    );
    let gw = Gangway::start(&config(&[("logged", "[/logged]", plugins)], ""));
    let r = gw.get("/logged");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("X-Added"), Some("yes"));
    // As in Kong, the response latency leaves out the 200 ms the function took.
    let latency: u64 = r
        .header("X-Kong-Response-Latency")
        .and_then(|v| v.parse().ok())
        .expect("X-Kong-Response-Latency");
    assert!(latency < 150, "X-Kong-Response-Latency {latency}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let entry: Value = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = crate::harness::complete_lines(&text).next() {
            break serde_json::from_str(line).expect("a JSON log line");
        }
        assert!(Instant::now() < deadline, "no log line");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(entry["response"]["status"], 200);
    let latencies = &entry["latencies"];
    let proxy = latencies["proxy"].as_i64().expect("proxy latency");
    let total = latencies["request"].as_i64().expect("request latency");
    assert!(
        proxy >= 200,
        "the Lambda wait is the proxy latency: {latencies}"
    );
    assert!(
        latencies["kong"].as_i64().expect("kong latency") <= total - proxy + 1,
        "{latencies}"
    );
    invoke.assert_clean();
}

#[test]
fn the_double_refuses_a_wrong_signature_and_an_event_of_the_wrong_shape() {
    let invoke = Invoke::start(&[]);
    let wrong_secret = format!(
        "      - name: aws-lambda\n        config:\n          aws_key: {ACCESS_KEY}\n          aws_secret: not-the-secret\n          aws_region: {REGION}\n          host: 127.0.0.1\n          port: {}\n          disable_https: true\n          function_name: echo\n",
        invoke.addr.port()
    );
    let gw = Gangway::start(&config(
        &[
            ("wrong", "[/wrong]", wrong_secret),
            // A plain payload is no API Gateway event.
            ("shape", "[/shape]", lambda(&invoke, "apigw-v1", "")),
        ],
        "",
    ));
    assert_eq!(gw.get("/wrong").status, 500);
    assert_eq!(gw.get("/shape").status, 500);
    let problems = invoke.problems();
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(problems[0].contains("signature mismatch"), "{problems:#?}");
    assert!(
        problems[1].contains("not an API Gateway REST event"),
        "{problems:#?}"
    );
}

#[test]
fn a_function_on_aws_rust_runtime_reads_gangways_events_and_gangway_reads_its_answers() {
    let runtime = CargoLambda::start();
    let function = |version: &str| {
        format!(
            "      - name: key-auth\n      - name: aws-lambda\n        config:\n          aws_key: {ACCESS_KEY}\n          aws_secret: {SECRET_KEY}\n          aws_region: {REGION}\n          host: 127.0.0.1\n          port: {}\n          disable_https: true\n          function_name: \"{}\"\n          awsgateway_compatible: true\n          awsgateway_compatible_payload_version: \"{version}\"\n          is_proxy_integration: true\n",
            runtime.addr.port(),
            CargoLambda::FUNCTION
        )
    };
    let gw = Gangway::start(&config(
        &[
            ("v1", r#"['~/v1/items/(?<id>\d+)$']"#, function("1.0")),
            ("v2", r#"['~/v2/items/(?<id>\d+)$']"#, function("2.0")),
        ],
        "consumers:\n  - username: ann\n    keyauth_credentials: [{key: ann-key}]\n",
    ));
    let r = request(
        gw.proxy,
        "POST",
        "/v1/items/42?color=red",
        &[("apikey", "ann-key"), ("Content-Type", "text/plain")],
        b"a body",
    )
    .expect("request");
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.json();
    assert_eq!(seen["version"], "1.0");
    assert_eq!(seen["resource"], "/v1/items/{id}");
    assert_eq!(seen["path"], "/v1/items/42");
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["pathParameters"], json!({"id": "42"}));
    assert_eq!(seen["query"], json!([["color", "red"]]));
    assert_eq!(seen["requestId"].as_str(), r.header("X-Kong-Request-Id"));
    assert_eq!(seen["sourceIp"], "127.0.0.1");
    assert_eq!(seen["consumer"], "ann");
    assert_eq!(seen["body"], "a body");
    assert!(
        seen["runtimeRequestId"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    assert_eq!(
        r.headers_named("Set-Cookie"),
        vec!["runtime=rust", "events=v1"]
    );
    assert_eq!(r.header("Content-Type"), Some("application/json"));

    let r = request(
        gw.proxy,
        "GET",
        "/v2/items/7?a=1&a=2",
        &[("apikey", "ann-key"), ("Cookie", "k=v")],
        b"",
    )
    .expect("request");
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.json();
    assert_eq!(seen["version"], "2.0");
    assert_eq!(seen["routeKey"], "GET /v2/items/{id}");
    assert_eq!(seen["path"], "/v2/items/7");
    assert_eq!(seen["pathParameters"], json!({"id": "7"}));
    assert_eq!(seen["query"], "a=1&a=2");
    assert_eq!(seen["cookies"], json!(["k=v"]));
    assert_eq!(seen["requestId"].as_str(), r.header("X-Kong-Request-Id"));
    assert_eq!(seen["sourceIp"], "127.0.0.1");
    assert_eq!(r.headers_named("Set-Cookie"), vec!["runtime=rust"]);
}

/// An ECS container-credentials endpoint (`AWS_CONTAINER_CREDENTIALS_FULL_URI`, the task
/// role): the first load gets `AKIDECSONE`, which is inside gangway's refresh window after
/// `first_fresh_for`; later loads take `later_delay` and get `AKIDECSTWO` for an hour.
struct TaskRole {
    addr: std::net::SocketAddr,
    loads: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl TaskRole {
    fn start(first_fresh_for: Duration, later_delay: Duration) -> TaskRole {
        use std::io::{BufRead, BufReader, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let loads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = loads.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                // gangway refreshes 300 s before expiry.
                let (key, lifetime) = if n == 1 {
                    ("AKIDECSONE", Duration::from_secs(300) + first_fresh_for)
                } else {
                    std::thread::sleep(later_delay);
                    ("AKIDECSTWO", Duration::from_secs(3600))
                };
                let body = json!({
                    "AccessKeyId": key,
                    "SecretAccessKey": format!("{key}/secret"),
                    "Token": format!("{key}-token"),
                    "Expiration": rfc3339(std::time::SystemTime::now() + lifetime),
                })
                .to_string();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        TaskRole { addr, loads }
    }
}

#[test]
fn task_role_credentials_are_refreshed_ahead_of_expiry_without_holding_requests() {
    let role = TaskRole::start(Duration::from_secs(3), Duration::from_millis(1500));
    let invoke = Invoke::start(&[
        ("AKIDECSONE", "AKIDECSONE/secret"),
        ("AKIDECSTWO", "AKIDECSTWO/secret"),
    ]);
    let plugin = format!(
        "      - name: aws-lambda\n        config:\n          aws_region: {REGION}\n          host: 127.0.0.1\n          port: {}\n          disable_https: true\n          function_name: echo\n",
        invoke.addr.port()
    );
    let gw = Gangway::start_with(
        Options::new(config(&[("role", "[/role]", plugin)], ""))
            .env(
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                format!("http://{}/v2/credentials/task", role.addr),
            )
            .env("AWS_EC2_METADATA_DISABLED", "true"),
    );
    assert_eq!(gw.get("/role").status, 200);
    // Inside the refresh window: served at once with the credentials it has, while the
    // (slow) refresh runs.
    std::thread::sleep(Duration::from_secs(4));
    let started = Instant::now();
    assert_eq!(gw.get("/role").status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "the request waited for the refresh: {:?}",
        started.elapsed()
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(gw.get("/role").status, 200);
    invoke.assert_clean();
    let keys: Vec<String> = invoke
        .invocations()
        .iter()
        .map(|i| i.access_key.clone())
        .collect();
    assert_eq!(keys, ["AKIDECSONE", "AKIDECSONE", "AKIDECSTWO"]);
    assert_eq!(
        role.loads.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "one load, one refresh"
    );
}

#[test]
fn an_assumed_role_signs_the_invocations_with_sts_credentials() {
    let invoke = Invoke::start(&[]);
    let extra = format!(
        "          aws_assume_role_arn: arn:aws:iam::123456789012:role/forecast\n          aws_role_session_name: gangway-test\n          aws_sts_endpoint_url: http://{}\n",
        invoke.addr
    );
    let gw = Gangway::start(&config(
        &[("role", "[/role]", lambda(&invoke, "echo", &extra))],
        "",
    ));
    assert_eq!(gw.get("/role").status, 200);
    assert_eq!(gw.get("/role").status, 200);
    invoke.assert_clean();
    let roles = invoke.assumed_roles();
    assert_eq!(roles.len(), 1, "assumed once, then cached: {roles:?}");
    assert_eq!(roles[0].role_arn, "arn:aws:iam::123456789012:role/forecast");
    assert_eq!(roles[0].session_name, "gangway-test");
    assert_eq!(
        roles[0].access_key, ACCESS_KEY,
        "signed with the config's keys"
    );
    let keys: Vec<String> = invoke
        .invocations()
        .iter()
        .map(|i| i.access_key.clone())
        .collect();
    assert_eq!(keys, [ASSUMED_KEY, ASSUMED_KEY]);
}

#[test]
fn an_unreachable_invoke_endpoint_is_kongs_500() {
    let closed = crate::harness::free_port();
    let plugin = format!(
        "      - name: aws-lambda\n        config:\n          aws_key: {ACCESS_KEY}\n          aws_secret: {SECRET_KEY}\n          aws_region: {REGION}\n          host: 127.0.0.1\n          port: {closed}\n          disable_https: true\n          function_name: echo\n"
    );
    let gw = Gangway::start(&config(&[("down", "[/down]", plugin)], ""));
    let r = gw.get("/down");
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["message"], "An unexpected error occurred");
    assert!(
        gw.log().contains("aws-lambda: invocation failed"),
        "{}",
        gw.log()
    );
}

/// An EC2 instance metadata service speaking IMDSv2: a session token from
/// `PUT /latest/api/token`, required on every read; the instance role's credentials are
/// `AKIDIMDS` for an hour.
struct Imds {
    addr: std::net::SocketAddr,
    /// Requests in order, as `METHOD path token-present`.
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Imds {
    fn start() -> Imds {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut first = String::new();
                let _ = reader.read_line(&mut first);
                let mut token = false;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    let lower = line.to_ascii_lowercase();
                    token |= lower.starts_with("x-aws-ec2-metadata-token: imds-session");
                    line.clear();
                }
                let mut parts = first.split_whitespace();
                let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                log.lock()
                    .expect("lock")
                    .push(format!("{method} {path} {token}"));
                let (status, extra, body) = match (method, path) {
                    ("PUT", "/latest/api/token") => (
                        200,
                        "x-aws-ec2-metadata-token-ttl-seconds: 21600\r\n",
                        "imds-session".to_owned(),
                    ),
                    (_, _) if !token => (401, "", String::new()),
                    ("GET", "/latest/meta-data/iam/security-credentials/") => {
                        (200, "", "gangway-role".to_owned())
                    }
                    ("GET", "/latest/meta-data/iam/security-credentials/gangway-role") => (
                        200,
                        "",
                        json!({
                            "Code": "Success",
                            "LastUpdated": rfc3339(std::time::SystemTime::now()),
                            "Type": "AWS-HMAC",
                            "AccessKeyId": "AKIDIMDS",
                            "SecretAccessKey": "AKIDIMDS/secret",
                            "Token": "imds-credentials-token",
                            "Expiration": rfc3339(std::time::SystemTime::now() + Duration::from_secs(3600)),
                        })
                        .to_string(),
                    ),
                    _ => (404, "", String::new()),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Imds { addr, seen }
    }
}

#[test]
fn an_ec2_instance_role_is_read_from_imdsv2() {
    let imds = Imds::start();
    let invoke = Invoke::start(&[("AKIDIMDS", "AKIDIMDS/secret")]);
    let plugin = format!(
        "      - name: aws-lambda\n        config:\n          aws_region: {REGION}\n          host: 127.0.0.1\n          port: {}\n          disable_https: true\n          function_name: echo\n",
        invoke.addr.port()
    );
    let gw = Gangway::start_with(Options::new(config(&[("ec2", "[/ec2]", plugin)], "")).env(
        "AWS_EC2_METADATA_SERVICE_ENDPOINT",
        format!("http://{}", imds.addr),
    ));
    assert_eq!(gw.get("/ec2").status, 200);
    assert_eq!(gw.get("/ec2").status, 200);
    invoke.assert_clean();
    let keys: Vec<String> = invoke
        .invocations()
        .iter()
        .map(|i| i.access_key.clone())
        .collect();
    assert_eq!(keys, ["AKIDIMDS", "AKIDIMDS"]);
    let seen = imds.seen.lock().expect("lock").clone();
    assert_eq!(
        seen.first().map(String::as_str),
        Some("PUT /latest/api/token false"),
        "a session token first (IMDSv2): {seen:?}"
    );
    assert!(
        seen[1..].iter().all(|r| r.ends_with(" true")),
        "every read carries the token: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|r| r.starts_with("GET /latest/meta-data/iam/security-credentials/gangway-role")),
        "{seen:?}"
    );
}

/// The EKS IRSA environment: a web identity token in `dir`, the role to exchange it for,
/// and `sts` as STS's endpoint.
fn web_identity(options: Options, dir: &TempDir, sts: &str) -> Options {
    let token = dir.path("token");
    std::fs::write(&token, WEB_IDENTITY_TOKEN).expect("write the token");
    options
        .env("AWS_WEB_IDENTITY_TOKEN_FILE", token.display().to_string())
        .env(
            "AWS_ROLE_ARN",
            "arn:aws:iam::123456789012:role/eks-forecast",
        )
        .env("AWS_ROLE_SESSION_NAME", "gangway-pod")
        .env("AWS_ENDPOINT_URL_STS", sts)
        .env("AWS_EC2_METADATA_DISABLED", "true")
}

#[test]
fn a_web_identity_token_is_exchanged_at_sts_for_the_invocations_credentials() {
    let invoke = Invoke::start(&[]);
    let dir = TempDir::new("web-identity");
    let plugin = format!(
        "      - name: aws-lambda\n        config:\n          aws_region: {REGION}\n          host: 127.0.0.1\n          port: {}\n          disable_https: true\n          function_name: echo\n",
        invoke.addr.port()
    );
    let gw = Gangway::start_with(web_identity(
        Options::new(config(&[("web", "[/web]", plugin)], "")),
        &dir,
        &format!("http://{}", invoke.addr),
    ));
    assert_eq!(gw.get("/web").status, 200);
    invoke.assert_clean();
    let roles = invoke.assumed_roles();
    assert_eq!(roles.len(), 1, "{roles:?}");
    assert_eq!(
        roles[0].role_arn,
        "arn:aws:iam::123456789012:role/eks-forecast"
    );
    assert_eq!(roles[0].session_name, "gangway-pod");
    assert_eq!(invoke.invocations()[0].access_key, ASSUMED_KEY);
}

/// Kong sends the web identity exchange (EKS IRSA) through `proxy_url` too: a pod that
/// reaches AWS only through a proxy could not get credentials otherwise.
#[test]
fn a_web_identity_is_exchanged_through_the_proxy_url() {
    let invoke = Invoke::start(&[]);
    let dir = TempDir::new("web-identity-proxy");
    // Neither host resolves: only the proxy (the double, which takes absolute-form
    // requests as a proxy would) can reach them.
    let plugin = format!(
        "      - name: aws-lambda\n        config:\n          aws_region: {REGION}\n          host: lambda.invalid\n          port: 80\n          disable_https: true\n          function_name: echo\n          proxy_url: http://{}\n",
        invoke.addr
    );
    let gw = Gangway::start_with(web_identity(
        Options::new(config(&[("web", "[/web]", plugin)], "")),
        &dir,
        "http://sts.invalid",
    ));
    let r = gw.get("/web");
    assert_eq!(r.status, 200, "{}", r.text());
    invoke.assert_clean();
    let roles = invoke.assumed_roles();
    assert_eq!(roles.len(), 1, "{roles:?}");
    assert!(roles[0].via_proxy, "STS was reached through the proxy");
    assert_eq!(roles[0].session_name, "gangway-pod");
    let calls = invoke.invocations();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].access_key, ASSUMED_KEY);
    assert!(calls[0].via_proxy);
}

#[test]
fn proxy_url_sends_the_invocations_through_an_http_proxy() {
    let invoke = Invoke::start(&[]);
    // The endpoint's host does not resolve: only the proxy (the double, which takes
    // absolute-form requests as a proxy would) can reach it.
    let plugin = format!(
        "      - name: aws-lambda\n        config:\n          aws_key: {ACCESS_KEY}\n          aws_secret: {SECRET_KEY}\n          aws_region: {REGION}\n          host: lambda.invalid\n          port: 80\n          disable_https: true\n          function_name: echo\n          proxy_url: http://{}\n",
        invoke.addr
    );
    let gw = Gangway::start(&config(&[("proxied", "[/proxied]", plugin)], ""));
    let r = gw.get("/proxied");
    assert_eq!(r.status, 200, "{}", r.text());
    invoke.assert_clean();
    let calls = invoke.invocations();
    assert_eq!(calls.len(), 1);
    assert!(
        calls[0].via_proxy,
        "the request named its target in absolute form"
    );
}

#[test]
fn bodies_longer_than_the_memory_buffer_are_left_out_under_skip_large_bodies_as_in_kong() {
    let invoke = Invoke::start(&[]);
    let forward = "          forward_request_body: true\n";
    let gw = Gangway::start_with(
        Options::new(config(
            &[
                ("skip", "[/skip]", lambda(&invoke, "echo", forward)),
                (
                    "keep",
                    "[/keep]",
                    lambda(
                        &invoke,
                        "echo",
                        &format!("{forward}          skip_large_bodies: false\n"),
                    ),
                ),
            ],
            "",
        ))
        // nginx would write a body longer than this to a file, which Kong then skips.
        .env("KONG_CLIENT_BODY_BUFFER_SIZE", "16"),
    );
    let post = |path: &str, body: &[u8]| {
        let r = request(
            gw.proxy,
            "POST",
            path,
            &[("Content-Type", "text/plain")],
            body,
        )
        .expect("request");
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["event"].clone()
    };
    let long = b"a body of more than sixteen bytes";
    assert_eq!(post("/skip", long).get("request_body"), None);
    assert_eq!(post("/skip", b"short")["request_body"], "short");
    assert_eq!(
        post("/keep", long)["request_body"],
        "a body of more than sixteen bytes"
    );
    assert!(
        gw.log()
            .contains("request body was buffered to disk, too large")
    );
    invoke.assert_clean();
}

#[test]
fn a_function_cannot_set_the_framing_and_an_empty_payload_is_an_empty_answer() {
    let invoke = Invoke::start(&[]);
    let proxy = "          is_proxy_integration: true\n";
    let gw = Gangway::start(&config(
        &[
            ("te", "[/te]", lambda(&invoke, "te-header", proxy)),
            ("empty", "[/empty]", lambda(&invoke, "no-response", "")),
            (
                "empty-proxy",
                "[/empty-proxy]",
                lambda(&invoke, "no-response", proxy),
            ),
        ],
        "",
    ));
    // The proxy frames the answer: the function's Transfer-Encoding and Content-Length are
    // dropped, and the next request on the connection still parses.
    let r = gw.get("/te");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "framed by the proxy");
    assert_eq!(r.header("Transfer-Encoding"), None);
    assert_eq!(r.header("Content-Length"), Some("19"));
    let r = gw.get("/empty");
    assert_eq!((r.status, r.text().as_str()), (200, ""));
    // Under proxy integration an empty payload is no JSON: Kong's 502.
    let r = gw.get("/empty-proxy");
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["message"], "Bad Gateway");
    invoke.assert_clean();
}
