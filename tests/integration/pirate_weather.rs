//! The reference user's setup (`config/examples/pirate-weather.yml`), end to end: the API key
//! in the URL is copied into a header by request-transformer (ordered before key-auth),
//! rate-limiting counts the consumer's monthly quota in Redis, and aws-lambda answers with
//! the function behind it. Its API Gateway events carry neither the key's header nor the key
//! in `path`; `resource` and `pathParameters` name the route's captures, key included, as
//! API Gateway's own `/forecast/{apikey}/{location}` resource did.

use gangway_test_support::redis::Redis;
use serde_json::{Value, json};

use crate::harness::Gangway;
use crate::harness::lambda::{ACCESS_KEY, Invoke, SECRET_KEY};

/// The example with its Redis, its Lambda endpoint and a quota of `month` calls swapped in.
fn start(month: u64) -> (Redis, Invoke, Gangway) {
    let redis = Redis::start();
    let invoke = Invoke::start(&[]);
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/examples/pirate-weather.yml"
    ))
    .expect("read the example config");
    let mut config: Value = serde_norway::from_str(&text).expect("the example is YAML");
    let plugins = config["services"][0]["plugins"]
        .as_array_mut()
        .expect("service plugins");
    let mut found = 0;
    for plugin in plugins.iter_mut() {
        let name = plugin["name"].as_str().unwrap_or_default().to_owned();
        let conf = &mut plugin["config"];
        match name.as_str() {
            "rate-limiting" => {
                assert_eq!(conf["month"], 10000, "the example's plan");
                conf["month"] = json!(month);
                conf["redis"]["port"] = json!(redis.port());
                found += 1;
            }
            "aws-lambda" => {
                assert_eq!(conf["awsgateway_compatible"], true);
                // The Invoke API double stands in for AWS: same events, checked signatures.
                conf["function_name"] = json!("apigw-v1");
                conf["host"] = json!("127.0.0.1");
                conf["port"] = json!(invoke.addr.port());
                conf["disable_https"] = json!(true);
                conf["aws_key"] = json!(ACCESS_KEY);
                conf["aws_secret"] = json!(SECRET_KEY);
                found += 1;
            }
            _ => {}
        }
    }
    assert_eq!(found, 2, "the example has rate-limiting and aws-lambda");
    let gw = Gangway::start(&config.to_string());
    (redis, invoke, gw)
}

#[test]
fn a_key_in_the_url_authenticates_counts_against_the_plan_and_reaches_the_function_as_api_gateway_would()
 {
    let (_redis, invoke, gw) = start(3);
    for left in (0..3).rev() {
        let r = gw.get("/forecast/demo-key-alice/52.37,4.89");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("X-RateLimit-Limit-Month"), Some("3"));
        assert_eq!(
            r.header("X-RateLimit-Remaining-Month"),
            Some(left.to_string().as_str())
        );
        let event = r.json();
        assert_eq!(
            event["path"], "/forecast/52.37,4.89",
            "the key is cut from the path"
        );
        assert_eq!(event["headers"].get("apikey"), None, "hide_credentials");
        assert_eq!(event["multiValueHeaders"].get("apikey"), None);
        assert_eq!(event["pathParameters"]["location"], "52.37,4.89");
        assert_eq!(event["resource"], "/forecast/{apikey}/{location}");
        assert_eq!(
            event["requestContext"]["authorizer"]["consumer_username"],
            "alice"
        );
    }
    // The plan is used up: Kong's 429, and the function is not called.
    let r = gw.get("/forecast/demo-key-alice/52.37,4.89");
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["message"], "API rate limit exceeded");
    assert_eq!(invoke.invocations().len(), 3);
    // Another consumer has a plan of its own.
    assert_eq!(gw.get("/forecast/demo-key-bob/1,2").status, 200);
    invoke.assert_clean();
}

#[test]
fn a_wrong_key_is_unauthorized() {
    let (_redis, invoke, gw) = start(10);
    let r = gw.get("/forecast/not-a-key/52.37,4.89");
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["message"], "Unauthorized");
    assert_eq!(r.header("www-authenticate"), Some("Key"));
    assert!(invoke.invocations().is_empty());
}

#[test]
fn a_missing_key_is_unauthorized() {
    let (_redis, _invoke, gw) = start(10);
    let r = gw.get("/forecast/52.37,4.89");
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["message"], "No API key found in request");
}

#[test]
fn a_client_sent_apikey_header_does_not_override_the_url() {
    let (_redis, invoke, gw) = start(10);
    // request-transformer `add` only adds an absent header: a client header wins, as in Kong,
    // and the URL key is then ignored. The function still never sees either key.
    let r = crate::harness::request(
        gw.proxy,
        "GET",
        "/forecast/not-a-key/52.37,4.89",
        &[("apikey", "demo-key-bob")],
        b"",
    )
    .expect("request");
    assert_eq!(r.status, 200, "{}", r.text());
    let event = r.json();
    assert_eq!(
        event["requestContext"]["authorizer"]["consumer_username"],
        "bob"
    );
    assert_eq!(event["headers"].get("apikey"), None);
    invoke.assert_clean();
}
