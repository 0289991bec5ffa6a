//! The reference user's setup (`config/examples/pirate-weather.yml`): the API key in the URL
//! is copied into a header by request-transformer, ordered before key-auth, and never reaches
//! the upstream.

use crate::harness::{Gangway, Upstream, echo_header};

fn start() -> (Upstream, Gangway) {
    let up = Upstream::start();
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/examples/pirate-weather.yml"
    ))
    .expect("read the example config");
    assert!(
        example.contains("http://127.0.0.1:9000"),
        "the example names its upstream"
    );
    let config = example.replace("http://127.0.0.1:9000", &format!("http://{}", up.addr));
    let gw = Gangway::start(&config);
    (up, gw)
}

#[test]
fn a_key_in_the_url_authenticates_and_never_reaches_the_upstream() {
    let (_up, gw) = start();
    let r = gw.get("/forecast/demo-key-alice/52.37,4.89");
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    assert_eq!(
        echo["target"], "/forecast/52.37,4.89",
        "the key is cut from the path"
    );
    assert_eq!(echo_header(&echo, "apikey"), None, "hide_credentials");
    assert_eq!(
        echo_header(&echo, "x-consumer-username").as_deref(),
        Some("alice")
    );
    assert!(
        !echo.to_string().contains("demo-key-alice"),
        "the key appears nowhere in what the upstream received: {echo}"
    );
}

#[test]
fn a_wrong_key_is_unauthorized() {
    let (_up, gw) = start();
    let r = gw.get("/forecast/not-a-key/52.37,4.89");
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["message"], "Unauthorized");
    assert_eq!(r.header("www-authenticate"), Some("Key"));
}

#[test]
fn a_missing_key_is_unauthorized() {
    let (_up, gw) = start();
    let r = gw.get("/forecast/52.37,4.89");
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["message"], "No API key found in request");
}

#[test]
fn a_client_sent_apikey_header_does_not_override_the_url() {
    let (_up, gw) = start();
    // request-transformer `add` only adds an absent header: a client header wins, as in Kong,
    // and the URL key is then ignored. The upstream still never sees either key.
    let r = crate::harness::request(
        gw.proxy,
        "GET",
        "/forecast/not-a-key/52.37,4.89",
        &[("apikey", "demo-key-bob")],
        b"",
    )
    .expect("request");
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    assert_eq!(
        echo_header(&echo, "x-consumer-username").as_deref(),
        Some("bob")
    );
    assert_eq!(echo_header(&echo, "apikey"), None);
}
