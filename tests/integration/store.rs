//! The Postgres store end to end: two gangway nodes share a real Postgres; the Admin API of
//! one writes as a developer portal does, and both proxies follow within a second.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::postgres::{Postgres, PostgresExt};
use crate::harness::{Gangway, Upstream, echo_header, request};

const JSON: [(&str, &str); 1] = [("Content-Type", "application/json")];

fn bootstrap(pg: &Postgres) {
    pg.bootstrap();
}

fn node(pg: &Postgres, admin: bool) -> Gangway {
    let opts = pg.node_options();
    Gangway::start_with(if admin { opts.admin() } else { opts })
}

fn post(gw: &Gangway, path: &str, body: Value) -> Value {
    let r = gw.admin("POST", path, &JSON, body.to_string().as_bytes());
    assert_eq!(r.status, 201, "POST {path}: {}", r.text());
    r.json()
}

/// Polls `check` for up to `limit`; returns how long it took to hold.
fn within(limit: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if check() {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Service `api` with route `r` on `/api`, behind key-auth.
fn keyed_api(gw: &Gangway, up: &Upstream) {
    post(
        gw,
        "/services",
        json!({"name": "api", "url": format!("http://{}", up.addr)}),
    );
    post(
        gw,
        "/services/api/routes",
        json!({"name": "r", "paths": ["/api"]}),
    );
    post(gw, "/routes/r/plugins", json!({"name": "key-auth"}));
}

fn status_with_key(gw: &Gangway, key: &str) -> u16 {
    request(gw.proxy, "GET", "/api", &[("apikey", key)], b"")
        .map(|r| r.status)
        .unwrap_or(0)
}

#[test]
fn the_portal_flow_reaches_two_nodes_within_a_second() {
    let pg = Postgres::start();
    bootstrap(&pg);
    let up = Upstream::start();
    let a = node(&pg, true);
    let b = node(&pg, false);

    keyed_api(&a, &up);
    post(
        &a,
        "/routes/r/plugins",
        json!({"name": "acl", "config": {"allow": ["gold"]}}),
    );
    within(Duration::from_secs(2), "the route reaches node b", || {
        status_with_key(&b, "none") == 401
    });

    // A customer subscribes: consumer, a key the server makes, a group, a plan.
    let consumer = post(
        &a,
        "/consumers",
        json!({"username": "cust", "custom_id": "c-1"}),
    );
    assert_eq!(consumer["custom_id"], "c-1");
    let cred = post(&a, "/consumers/cust/key-auth", json!({}));
    let key = cred["key"].as_str().expect("a generated key").to_owned();
    assert_eq!(key.len(), 32, "{cred}");
    assert_eq!(cred["consumer"]["id"], consumer["id"]);
    post(&a, "/consumers/cust/acls", json!({"group": "gold"}));
    post(
        &a,
        "/consumers/cust/plugins",
        json!({"name": "request-transformer", "config": {"add": {"headers": ["x-plan:gold"]}}}),
    );
    let mut took = Vec::new();
    for gw in [&a, &b] {
        took.push(within(
            Duration::from_secs(1),
            "the key works on both nodes",
            || {
                request(gw.proxy, "GET", "/api", &[("apikey", &key)], b"").is_ok_and(|r| {
                    r.status == 200 && echo_header(&r.json(), "x-plan").as_deref() == Some("gold")
                })
            },
        ));
    }
    eprintln!("create to visible: {took:?}");
    // The node that follows the change log reports how far behind the writes it was.
    let metrics = crate::metrics::scrape(&b);
    let lag = crate::metrics::sample(&metrics, "gangway_config_sync_lag_seconds", &[])
        .unwrap_or_else(|| panic!("sync lag on node b:\n{metrics}"));
    assert!((0.0..2.0).contains(&lag), "lag {lag} s");

    // Reads come back from the database in Kong's shapes.
    let listed = a.admin("GET", "/consumers/cust/key-auth", &[], b"").json();
    assert_eq!(listed["data"][0]["key"], key);
    assert_eq!(
        a.admin("GET", "/consumers?custom_id=c-1", &[], b"").json()["data"][0]["username"],
        "cust"
    );

    // The customer cancels: the consumer goes, and its key with it, on both nodes.
    assert_eq!(a.admin("DELETE", "/consumers/cust", &[], b"").status, 204);
    for gw in [&a, &b] {
        within(Duration::from_secs(1), "the key stops working", || {
            status_with_key(gw, &key) == 401
        });
    }
    assert_eq!(
        a.admin("GET", &format!("/key-auths/{key}"), &[], b"")
            .status,
        404
    );
}

#[test]
fn writes_get_kongs_errors_and_nothing_half_written() {
    let pg = Postgres::start();
    bootstrap(&pg);
    let gw = node(&pg, true);
    post(&gw, "/consumers", json!({"username": "taken"}));
    let dup = gw.admin("POST", "/consumers", &JSON, br#"{"username":"taken"}"#);
    assert_eq!(dup.status, 409);
    assert_eq!(
        dup.json(),
        json!({"code": 5, "name": "unique constraint violation",
               "message": "UNIQUE violation detected on '{username=\"taken\"}'",
               "fields": {"username": "taken"}})
    );
    let bad = gw.admin("POST", "/services", &JSON, br#"{"name":"s","port":"x"}"#);
    assert_eq!(bad.status, 400);
    let body = bad.json();
    assert_eq!(body["code"], 2);
    assert!(body["fields"].get("host").is_some(), "{body}");
    let orphan = gw.admin(
        "POST",
        "/routes",
        &JSON,
        br#"{"paths":["/x"],"service":{"name":"nope"}}"#,
    );
    assert_eq!(orphan.status, 400);
    assert_eq!(orphan.json()["code"], 13);
    let missing = gw.admin(
        "POST",
        "/routes",
        &JSON,
        br#"{"paths":["/x"],"service":{"id":"6f1c9c52-6bd4-4b4f-9d4d-9e0f4b0f8a11"}}"#,
    );
    assert_eq!(missing.json()["code"], 4);
    assert_eq!(pg.psql("select count(*) from routes"), "0");
    assert_eq!(pg.psql("select count(*) from services"), "0");

    // A service with routes cannot go; PATCH merges; PUT replaces; DELETE is 204 even twice.
    post(
        &gw,
        "/services",
        json!({"name": "s", "url": "http://127.0.0.1:9"}),
    );
    post(
        &gw,
        "/services/s/routes",
        json!({"name": "r", "paths": ["/r"]}),
    );
    let refused = gw.admin("DELETE", "/services/s", &[], b"");
    assert_eq!(refused.status, 400);
    assert_eq!(
        refused.json()["message"],
        "an existing 'routes' entity references this 'services' entity"
    );
    let patched = gw.admin("PATCH", "/services/s", &JSON, br#"{"retries":2}"#);
    assert_eq!(patched.status, 200, "{}", patched.text());
    assert_eq!(patched.json()["retries"], 2);
    assert_eq!(patched.json()["host"], "127.0.0.1");
    // A PATCH cannot move the entity to another id (it used to insert a copy there).
    let moved = gw.admin(
        "PATCH",
        "/services/s",
        &JSON,
        br#"{"id":"8e8e9c0c-3a0b-4c6f-9d7e-1d1b1c1d1e1f","retries":3}"#,
    );
    assert_eq!(moved.status, 200, "{}", moved.text());
    assert_eq!(moved.json()["id"], patched.json()["id"]);
    assert_eq!(moved.json()["retries"], 3);
    assert_eq!(pg.psql("select count(*) from services"), "1");
    // Nor does a PATCH that leaves out `ttl` make a temporary key permanent.
    post(&gw, "/consumers", json!({"username": "temp"}));
    let key = post(
        &gw,
        "/consumers/temp/key-auth",
        json!({"key": "temp-key", "ttl": 100}),
    );
    let id = key["id"].as_str().expect("an id");
    let tagged = gw.admin(
        "PATCH",
        &format!("/key-auths/{id}"),
        &JSON,
        br#"{"tags":["x"]}"#,
    );
    assert_eq!(tagged.status, 200, "{}", tagged.text());
    let ttl = tagged.json()["ttl"].as_i64();
    assert!(
        ttl.is_some_and(|t| (1..=100).contains(&t)),
        "{}",
        tagged.text()
    );
    // kong.yml's nested children are not Admin API fields: refused, not dropped.
    for (path, body) in [
        (
            "/services",
            json!({"name": "n", "host": "h", "routes": [{"paths": ["/n"]}]}),
        ),
        (
            "/consumers",
            json!({"username": "n", "keyauth_credentials": [{"key": "n"}]}),
        ),
    ] {
        let refused = gw.admin("POST", path, &JSON, body.to_string().as_bytes());
        assert_eq!(refused.status, 400, "{path}: {}", refused.text());
        assert_eq!(
            refused.json()["name"],
            "schema violation",
            "{}",
            refused.text()
        );
    }
    assert_eq!(
        pg.psql("select count(*) from services where name = 'n'"),
        "0"
    );
    // A key that expired is free again (its row used to hold the unique index: 409).
    post(
        &gw,
        "/consumers/temp/key-auth",
        json!({"key": "short-key", "ttl": 1}),
    );
    std::thread::sleep(Duration::from_millis(1100));
    post(&gw, "/consumers/temp/key-auth", json!({"key": "short-key"}));
    assert_eq!(gw.admin("DELETE", "/consumers/temp", &[], b"").status, 204);
    // Two upstreams share a target: each reaches its own by host:port (a lookup by the
    // address alone found two rows and answered 503).
    for (upstream, weight) in [("u1", 100), ("u2", 50)] {
        post(&gw, "/upstreams", json!({"name": upstream}));
        post(
            &gw,
            &format!("/upstreams/{upstream}/targets"),
            json!({"target": "10.0.0.1:80", "weight": weight}),
        );
    }
    let got = gw.admin("GET", "/upstreams/u2/targets/10.0.0.1:80", &[], b"");
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.json()["weight"], 50);
    let patched = gw.admin(
        "PATCH",
        "/upstreams/u1/targets/10.0.0.1:80",
        &JSON,
        br#"{"weight":7}"#,
    );
    assert_eq!(patched.status, 200, "{}", patched.text());
    assert_eq!(patched.json()["weight"], 7);
    let gone = gw.admin("DELETE", "/upstreams/u2/targets/10.0.0.1:80", &[], b"");
    assert_eq!(gone.status, 204);
    let kept = gw.admin("GET", "/upstreams/u1/targets/10.0.0.1:80", &[], b"");
    assert_eq!(kept.json()["weight"], 7, "{}", kept.text());
    // Kong's target PUT updates as PATCH does and creates nothing: u2 has no such target
    // now (a PUT used to create it, and one with only a weight to fail on `target`).
    let put = gw.admin(
        "PUT",
        "/upstreams/u2/targets/10.0.0.1:80",
        &JSON,
        br#"{"weight":5}"#,
    );
    assert_eq!(put.status, 404, "{}", put.text());
    let put = gw.admin(
        "PUT",
        "/upstreams/u1/targets/10.0.0.1:80",
        &JSON,
        br#"{"weight":9}"#,
    );
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(
        (&put.json()["target"], &put.json()["weight"]),
        (&json!("10.0.0.1:80"), &json!(9))
    );
    let all = gw.admin("GET", "/upstreams/u1/targets/all", &[], b"");
    assert_eq!(all.status, 200, "{}", all.text());
    assert_eq!(
        all.json()["data"].as_array().map(Vec::len),
        Some(1),
        "{}",
        all.text()
    );
    let kept = gw.admin("GET", "/upstreams/u1/targets/10.0.0.1:80", &[], b"");
    assert_eq!(kept.json()["weight"], 9, "{}", kept.text());
    // A PUT under one consumer of another's key moves the key to it, by key or by id: Kong
    // upserts with the URL's consumer (`ON CONFLICT (key) DO UPDATE`).
    post(&gw, "/consumers", json!({"username": "owner"}));
    let taker = post(&gw, "/consumers", json!({"username": "taker"}));
    let theirs = post(
        &gw,
        "/consumers/owner/key-auth",
        json!({"key": "owned-key"}),
    );
    let taken = gw.admin("PUT", "/consumers/taker/key-auth/owned-key", &JSON, b"{}");
    assert_eq!(taken.status, 200, "{}", taken.text());
    assert_eq!(taken.json()["id"], theirs["id"], "the same key, moved");
    let now = gw.admin("GET", "/key-auths/owned-key", &[], b"").json();
    assert_eq!(now["consumer"]["id"], taker["id"], "{now}");
    let by_id = format!(
        "/consumers/owner/key-auth/{}",
        theirs["id"].as_str().expect("id")
    );
    let back = gw.admin("PUT", &by_id, &JSON, br#"{"key": "owned-key"}"#);
    assert_eq!(back.status, 200, "{}", back.text());
    assert_eq!(back.json()["consumer"]["id"], theirs["consumer"]["id"]);
    // A nested list's next page keeps the request's tags and size.
    for (port, tag) in [(81, "a"), (82, "b"), (83, "a")] {
        post(
            &gw,
            "/upstreams/u1/targets",
            json!({"target": format!("10.0.0.2:{port}"), "tags": [tag]}),
        );
    }
    let first = gw.admin("GET", "/upstreams/u1/targets?tags=a&size=1", &[], b"");
    let next = first.json()["next"]
        .as_str()
        .expect("a next page")
        .to_owned();
    assert!(next.contains("tags=a") && next.contains("size=1"), "{next}");
    let second = gw.admin("GET", &next, &[], b"").json();
    assert_eq!(second["data"][0]["tags"], json!(["a"]), "{second}");
    let put = gw.admin("PUT", "/consumers/newbie", &JSON, br#"{"custom_id":"n-1"}"#);
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(put.json()["username"], "newbie");
    assert_eq!(gw.admin("DELETE", "/routes/r", &[], b"").status, 204);
    assert_eq!(gw.admin("DELETE", "/routes/r", &[], b"").status, 204);
    assert_eq!(gw.admin("DELETE", "/services/s", &[], b"").status, 204);
    let gone = gw.admin("PATCH", "/services/s", &JSON, br#"{"retries":1}"#);
    assert_eq!(gone.status, 404);
    assert_eq!(gone.json()["code"], 6);
}

#[test]
fn postgres_down_keeps_the_proxy_serving_and_the_node_catches_up() {
    let mut pg = Postgres::start();
    bootstrap(&pg);
    let up = Upstream::start();
    let gw = node(&pg, true);
    post(
        &gw,
        "/services",
        json!({"name": "api", "url": format!("http://{}", up.addr)}),
    );
    post(
        &gw,
        "/services/api/routes",
        json!({"name": "r", "paths": ["/api"]}),
    );
    post(&gw, "/routes/r/plugins", json!({"name": "key-auth"}));
    post(&gw, "/consumers", json!({"username": "c"}));
    post(&gw, "/consumers/c/key-auth", json!({"key": "first"}));
    // Both the plugin and the key have reached the proxy: an unknown key is refused and
    // the known one passes (either alone could hold on a half-applied log).
    within(Duration::from_secs(2), "the key works", || {
        status_with_key(&gw, "bogus") == 401 && status_with_key(&gw, "first") == 200
    });

    pg.kill();
    assert_eq!(status_with_key(&gw, "first"), 200, "proxying goes on");
    let refused = gw.admin(
        "POST",
        "/consumers/c/key-auth",
        &JSON,
        br#"{"key":"second"}"#,
    );
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(
        refused.text().contains("database unavailable"),
        "{}",
        refused.text()
    );
    let status = gw.admin("GET", "/status", &[], b"").json();
    assert_eq!(status["database"]["reachable"], false, "{status}");
    for metrics in [
        gw.admin("GET", "/metrics", &[], b"").text(),
        request(gw.status, "GET", "/metrics", &[], b"")
            .expect("scrape")
            .text(),
    ] {
        assert!(
            metrics.contains("\nkong_datastore_reachable 0\n"),
            "{metrics}"
        );
    }

    pg.restart();
    // A change made while the node was cut off (here, straight into the database through a
    // second node's Admin API) is caught up from the log.
    let other = node(&pg, true);
    post(&other, "/consumers/c/key-auth", json!({"key": "second"}));
    within(
        Duration::from_secs(8),
        "the node reconnects and catches up",
        || status_with_key(&gw, "second") == 200,
    );
    assert_eq!(
        gw.admin("GET", "/status", &[], b"").json()["database"]["reachable"],
        true
    );
    let metrics = request(gw.status, "GET", "/metrics", &[], b"")
        .expect("scrape")
        .text();
    assert!(
        metrics.contains("\nkong_datastore_reachable 1\n"),
        "{metrics}"
    );
    post(&gw, "/consumers/c/key-auth", json!({"key": "third"}));
    within(Duration::from_secs(1), "writes work again", || {
        status_with_key(&gw, "third") == 200
    });
}

#[test]
fn a_node_without_its_database_is_not_ready_until_it_loads() {
    let mut pg = Postgres::start();
    bootstrap(&pg);
    pg.stop();
    let up = Upstream::start();
    let mut opts = pg.node_options().admin();
    opts.wait_ready = false;
    let mut gw = Gangway::start_with(opts);
    std::thread::sleep(Duration::from_millis(700));
    let ready = request(gw.status, "GET", "/status/ready", &[], b"").expect("status");
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert_eq!(gw.get("/anything").status, 404);
    assert!(
        gw.log().contains("cannot load the config from postgres"),
        "{}",
        gw.log()
    );
    pg.restart();
    gw.wait_ready();
    let _ = up;
}

#[test]
fn kongs_documented_form_requests_work() {
    // The curl forms of Kong's docs: urlencoded strings coerced to the schema's types.
    let pg = Postgres::start();
    bootstrap(&pg);
    let up = Upstream::start();
    let gw = node(&pg, true);
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let send = |path: &str, body: String| {
        let r = gw.admin("POST", path, &form, body.as_bytes());
        assert_eq!(r.status, 201, "POST {path} {body}: {}", r.text());
        r.json()
    };
    let svc = send(
        "/services",
        format!("name=example&url=http://{}&retries=3&tags[]=docs", up.addr),
    );
    assert_eq!(svc["retries"], 3);
    assert_eq!(svc["tags"], json!(["docs"]));
    let route = send(
        "/services/example/routes",
        "name=mocking&paths[]=/mock&strip_path=false".into(),
    );
    assert_eq!(route["strip_path"], false);
    assert_eq!(route["paths"], json!(["/mock"]));
    send(
        "/routes/mocking/plugins",
        "name=request-transformer&config.add.headers=x-from:form".into(),
    );
    send("/consumers", "username=bob".into());
    let key = send("/consumers/bob/key-auth", "key=bob-secret&ttl=3600".into());
    assert!(
        key["ttl"].as_i64().is_some_and(|t| t > 3500 && t <= 3600),
        "{key}"
    );
    let multipart =
        "--XyZ\r\nContent-Disposition: form-data; name=\"group\"\r\n\r\ngold\r\n--XyZ--\r\n";
    let acl = gw.admin(
        "POST",
        "/consumers/bob/acls",
        &[("Content-Type", "multipart/form-data; boundary=XyZ")],
        multipart.as_bytes(),
    );
    assert_eq!(acl.status, 201, "{}", acl.text());
    assert_eq!(acl.json()["group"], "gold");
    within(Duration::from_secs(1), "the route and plugin apply", || {
        request(gw.proxy, "GET", "/mock", &[], b"").is_ok_and(|r| {
            r.status == 200 && echo_header(&r.json(), "x-from").as_deref() == Some("form")
        })
    });
    // A PATCH of a plugin names no plugin: its config is coerced by the stored plugin's
    // schema (it stayed a string, and was refused). A service's `url` in a PATCH sets every
    // part it stands for (the stored parts used to win, and nothing changed).
    let limit = send(
        "/routes/mocking/plugins",
        "name=rate-limiting&config.minute=10".into(),
    );
    let id = limit["id"].as_str().expect("id");
    let patch = |path: &str, body: &str| {
        let r = gw.admin("PATCH", path, &form, body.as_bytes());
        assert_eq!(r.status, 200, "PATCH {path} {body}: {}", r.text());
        r.json()
    };
    let patched = patch(&format!("/plugins/{id}"), "config.minute=20");
    assert_eq!(patched["config"]["minute"], 20);
    // A nested PUT names the parent: a key PUT under another consumer moves to it, as
    // Kong's upsert takes the consumer from the URL.
    send("/consumers", "username=carol".into());
    let moved = gw.admin("PUT", "/consumers/carol/key-auth/bob-secret", &form, b"");
    assert_eq!(moved.status, 200, "{}", moved.text());
    let listed = |who: &str| {
        let r = gw.admin("GET", &format!("/consumers/{who}/key-auth"), &[], b"");
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["data"]
            .as_array()
            .expect("data")
            .iter()
            .filter_map(|k| k["key"].as_str().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    assert_eq!(listed("carol"), ["bob-secret"]);
    assert!(listed("bob").is_empty(), "{:?}", listed("bob"));
    // A deprecated field in a PATCH replaces the stored value it stands for, as Kong expands
    // it before the merge (the stored `redis.host` made it a values mismatch).
    let patched = patch(
        &format!("/plugins/{id}"),
        "config.redis_host=redis-a.internal",
    );
    assert_eq!(
        patched["config"]["redis"]["host"], "redis-a.internal",
        "{patched}"
    );
    let patched = patch(
        &format!("/plugins/{id}"),
        "config.redis_host=redis-b.internal",
    );
    assert_eq!(
        patched["config"]["redis"]["host"], "redis-b.internal",
        "{patched}"
    );
    assert_eq!(
        patched["config"]["redis_host"], "redis-b.internal",
        "{patched}"
    );
    let moved = patch("/services/example", "url=https://new.example:8443/v2");
    assert_eq!(
        (
            &moved["protocol"],
            &moved["host"],
            &moved["port"],
            &moved["path"]
        ),
        (
            &json!("https"),
            &json!("new.example"),
            &json!(8443),
            &json!("/v2")
        )
    );
    let bare = patch("/services/example", "url=http://bare.example");
    assert_eq!(
        (&bare["host"], &bare["port"], &bare["path"]),
        (&json!("bare.example"), &json!(80), &Value::Null)
    );
}

#[test]
fn kong_managers_calls_are_answered_with_the_fields_it_reads() {
    let pg = Postgres::start();
    bootstrap(&pg);
    let gw = node(&pg, true);
    let preflight = gw.admin(
        "OPTIONS",
        "/services",
        &[
            ("Origin", "http://localhost:8002"),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
        b"",
    );
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("http://localhost:8002")
    );

    let root = gw.admin("GET", "/", &[], b"").json();
    assert!(
        root["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("3."))
    );
    assert_eq!(root["configuration"]["database"], "postgres");
    assert!(root["configuration"]["admin_listeners"].is_array());
    assert!(root["plugins"]["available_on_server"]["acl"].is_object());

    // The service form sends url and port together.
    let svc = gw.admin(
        "POST",
        "/services",
        &JSON,
        br#"{"name":"km","url":"http://example.com:8080/v1","port":8080,"tags":null,"enabled":true}"#,
    );
    assert_eq!(svc.status, 201, "{}", svc.text());
    let svc = svc.json();
    assert_eq!(
        (
            svc["host"].as_str(),
            svc["port"].as_u64(),
            svc["path"].as_str()
        ),
        (Some("example.com"), Some(8080), Some("/v1"))
    );
    let svc_id = svc["id"].as_str().expect("id").to_owned();

    // The route form sends every field, nulls included.
    let route = gw.admin(
        "POST",
        "/routes",
        &JSON,
        format!(
            r#"{{"name":"km-route","protocols":["http","https"],"methods":null,"hosts":null,
                "paths":["/km"],"headers":null,"https_redirect_status_code":426,"regex_priority":0,
                "strip_path":true,"path_handling":"v0","preserve_host":false,"request_buffering":true,
                "response_buffering":true,"snis":null,"sources":null,"destinations":null,"tags":null,
                "service":{{"id":"{svc_id}"}}}}"#
        )
        .as_bytes(),
    );
    assert_eq!(route.status, 201, "{}", route.text());
    let lone = gw.admin(
        "POST",
        "/routes",
        &JSON,
        br#"{"name":"lone","paths":["/lone"],"service":null}"#,
    );
    assert_eq!(lone.status, 201, "{}", lone.text());
    assert_eq!(lone.json()["service"], Value::Null);

    // Lists as the tables ask for them; unknown arguments are ignored, as Kong OSS does.
    let list = gw
        .admin("GET", "/services?sort_desc=1&size=30", &[], b"")
        .json();
    assert_eq!(list["data"][0]["name"], "km");
    assert!(list.get("next").is_some());
    assert_eq!(
        gw.admin("GET", "/services/km", &[], b"").json()["id"],
        svc_id.as_str()
    );
    assert_eq!(
        gw.admin("GET", &format!("/services/{svc_id}/routes"), &[], b"")
            .json()["data"][0]["name"],
        "km-route"
    );
    let picker = gw.admin("GET", "/routes?size=1000", &[], b"").json();
    assert_eq!(picker["data"].as_array().map(Vec::len), Some(2));

    let plugin = post(
        &gw,
        &format!("/services/{svc_id}/plugins"),
        json!({"name": "cors"}),
    );
    let plugin_id = plugin["id"].as_str().expect("id");
    let with_partials = gw.admin(
        "GET",
        &format!("/plugins/{plugin_id}?expand_partials=true"),
        &[],
        b"",
    );
    assert_eq!(with_partials.status, 200);
    assert_eq!(with_partials.json()["name"], "cors");
    assert_eq!(
        gw.admin("GET", &format!("/services/{svc_id}/plugins"), &[], b"")
            .json()["data"][0]["name"],
        "cors"
    );
    assert!(gw.admin("GET", "/schemas/plugins/cors", &[], b"").json()["fields"].is_array());

    let consumer = post(&gw, "/consumers", json!({"username": "km-user"}));
    let consumer_id = consumer["id"].as_str().expect("id");
    let key = gw.admin(
        "POST",
        &format!("/consumers/{consumer_id}/key-auth"),
        &JSON,
        br#"{"ttl":0}"#,
    );
    assert_eq!(key.status, 201, "{}", key.text());
    assert_eq!(key.json()["ttl"], Value::Null, "ttl 0 is no expiry");
    assert_eq!(
        gw.admin(
            "GET",
            &format!("/consumers/{consumer_id}/key-auth"),
            &[],
            b""
        )
        .json()["data"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert!(
        gw.admin("GET", "/schemas/keyauth_credentials", &[], b"")
            .json()["fields"]
            .is_array()
    );

    let disabled = gw.admin(
        "PATCH",
        &format!("/services/{svc_id}"),
        &JSON,
        br#"{"enabled":false}"#,
    );
    assert_eq!(disabled.status, 200, "{}", disabled.text());
    assert_eq!(disabled.json()["enabled"], false);
}

#[test]
fn bad_input_gets_kongs_400s_and_nothing_reaches_the_database() {
    let pg = Postgres::start();
    bootstrap(&pg);
    let gw = node(&pg, true);
    let cases: [(&str, &str, &[u8], u16, &str); 10] = [
        (
            "POST",
            "/services",
            b"{\"name\":",
            400,
            "Cannot parse JSON body",
        ),
        (
            "POST",
            "/services",
            br#"{"name":"s","host":"h","port":"eighty"}"#,
            400,
            "expected an integer",
        ),
        (
            "POST",
            "/services",
            br#"{"name":"s","host":"h","bogus":1}"#,
            400,
            "unknown field",
        ),
        (
            "POST",
            "/routes",
            br#"{"paths":["/x"],"service":{"id":"not-a-uuid"}}"#,
            400,
            "expected a valid UUID",
        ),
        (
            "POST",
            "/consumers",
            br#"{}"#,
            400,
            "at least one of these fields must be non-empty",
        ),
        ("POST", "/consumers", br#"["not", "an", "object"]"#, 400, ""),
        (
            "POST",
            "/consumers",
            br#"{"username":"a","tags":["team,x"]}"#,
            400,
            "invalid tag 'team,x'",
        ),
        // Stored, a route the router cannot compile stopped every node from taking changes.
        (
            "POST",
            "/routes",
            br#"{"paths":["~/a("]}"#,
            400,
            "invalid regex: '/a(' (regex parse error:",
        ),
        (
            "POST",
            "/routes",
            br#"{"paths":["/x"],"headers":{"x-v":["~*a{2,1}"]}}"#,
            400,
            "invalid regex: 'a{2,1}'",
        ),
        (
            "GET",
            "/ca_certificates/not-a-uuid",
            b"",
            400,
            "invalid primary key",
        ),
    ];
    for (method, path, body, status, says) in cases {
        let r = gw.admin(method, path, &JSON, body);
        assert_eq!(
            r.status,
            status,
            "{method} {path} {}: {}",
            String::from_utf8_lossy(body),
            r.text()
        );
        assert!(r.text().contains(says), "{method} {path}: {}", r.text());
    }
    // Three times the limit, more than the sockets' buffers hold: the 413 reaches a client
    // that writes its whole body before reading only if the rest of the body is read and
    // dropped before the connection closes (a close with unread bytes resets it).
    let huge = vec![b' '; 32 * 1024 * 1024];
    let r = gw.admin("POST", "/services", &JSON, &huge);
    assert_eq!(r.status, 413, "{}", r.text());
    for table in ["services", "routes", "consumers"] {
        assert_eq!(
            pg.psql(&format!("select count(*) from {table}")),
            "0",
            "{table}"
        );
    }
    // An ACL group created by name under its consumer, as Kong's acl API allows.
    post(&gw, "/consumers", json!({"username": "u"}));
    let put = gw.admin("PUT", "/consumers/u/acls/gold", &JSON, b"{}");
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(put.json()["group"], "gold");
    assert_eq!(
        gw.admin("GET", "/consumers/u/acls/gold", &[], b"").status,
        200
    );
}

#[test]
fn tags_are_listed_from_the_database() {
    let pg = Postgres::start();
    bootstrap(&pg);
    let gw = node(&pg, true);
    post(
        &gw,
        "/services",
        json!({"name": "a", "url": "http://x", "tags": ["t1", "t2"]}),
    );
    post(&gw, "/consumers", json!({"username": "c", "tags": ["t1"]}));
    let t1 = gw.admin("GET", "/tags/t1", &[], b"").json();
    let kinds: Vec<&str> = t1["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|r| r["entity_name"].as_str())
        .collect();
    assert_eq!(kinds, ["consumers", "services"]);
    let mut seen = 0;
    let mut path = "/tags?size=1".to_owned();
    for _ in 0..5 {
        let page = gw.admin("GET", &path, &[], b"").json();
        seen += page["data"].as_array().map_or(0, Vec::len);
        match page["next"].as_str() {
            Some(next) => path = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, 3);
}

#[test]
fn reads_go_to_the_read_replica_and_writes_to_the_primary() {
    // Two independent servers stand in for a primary and its replica: what each holds shows
    // where the Admin API read and wrote.
    let primary = Postgres::start();
    let replica = Postgres::start();
    bootstrap(&primary);
    bootstrap(&replica);
    replica.psql(
        "INSERT INTO services (id, name, entity, created_at) VALUES \
         ('6a0f4c2e-1b3d-4e5f-8a9b-0c1d2e3f4a5b', 'on-replica', \
          '{\"id\":\"6a0f4c2e-1b3d-4e5f-8a9b-0c1d2e3f4a5b\",\"name\":\"on-replica\",\"host\":\"x\"}', 0)",
    );
    let opts = primary
        .node_options()
        .admin()
        .env("KONG_PG_RO_HOST", "127.0.0.1")
        .env("KONG_PG_RO_PORT", replica.port().to_string());
    let gw = Gangway::start_with(opts);
    post(
        &gw,
        "/services",
        json!({"name": "written", "url": "http://x"}),
    );
    assert_eq!(
        primary.psql("select count(*) from services where name = 'written'"),
        "1"
    );
    assert_eq!(
        replica.psql("select count(*) from services where name = 'written'"),
        "0"
    );
    assert_eq!(
        gw.admin("GET", "/services/on-replica", &[], b"").status,
        200
    );
    assert_eq!(gw.admin("GET", "/services/written", &[], b"").status, 404);
}

#[test]
fn a_node_starting_on_stored_plans_applies_each_as_written() {
    let pg = Postgres::start();
    bootstrap(&pg);
    let up = Upstream::start();
    let writer = node(&pg, true);
    keyed_api(&writer, &up);
    let plan = json!({"add": {"headers": ["x-plan:gold"]}});
    // gold and silver share one plan's config; bronze's instance is off; tin's names https
    // only, which in Kong selects the subsystem and is not checked per request.
    for (user, extra) in [
        ("gold", json!({"tags": ["plan-gold"]})),
        (
            "silver",
            json!({"tags": ["plan-gold"], "instance_name": "silver-plan"}),
        ),
        ("bronze", json!({"enabled": false})),
        ("tin", json!({"protocols": ["https"]})),
    ] {
        post(&writer, "/consumers", json!({"username": user}));
        post(
            &writer,
            &format!("/consumers/{user}/key-auth"),
            json!({"key": format!("key-{user}")}),
        );
        let mut plugin = json!({"name": "request-transformer", "config": plan});
        for (k, v) in extra.as_object().expect("object") {
            plugin[k] = v.clone();
        }
        post(&writer, &format!("/consumers/{user}/plugins"), plugin);
    }
    // Kong's dynamic ordering cannot join consumer-scoped plugins: the write is refused
    // rather than stored where no node could load it.
    let ordered =
        json!({"name": "correlation-id", "ordering": {"before": {"access": ["key-auth"]}}});
    let refused = writer.admin("POST", "/plugins", &JSON, ordered.to_string().as_bytes());
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert_eq!(
        refused.json()["fields"]["ordering"],
        "dynamic plugin ordering cannot be combined with consumer-scoped plugins"
    );
    let reader = node(&pg, false);
    let plan_of = |key: &str| {
        let r = request(reader.proxy, "GET", "/api", &[("apikey", key)], b"").expect("proxy");
        assert_eq!(r.status, 200, "{key}: {}", r.text());
        echo_header(&r.json(), "x-plan")
    };
    assert_eq!(plan_of("key-gold").as_deref(), Some("gold"));
    assert_eq!(plan_of("key-silver").as_deref(), Some("gold"));
    assert_eq!(plan_of("key-bronze"), None, "a disabled instance");
    assert_eq!(plan_of("key-tin").as_deref(), Some("gold"));
    assert_eq!(status_with_key(&reader, "nobody"), 401);
}

#[test]
fn target_health_set_on_one_node_reaches_the_others_on_the_database() {
    let pg = Postgres::start();
    bootstrap(&pg);
    let (writer, follower) = (node(&pg, true), node(&pg, true));
    let up = Upstream::start();
    let target = up.addr.to_string();
    post(
        &writer,
        "/upstreams",
        json!({"name": "pool", "healthchecks": {"passive": {"unhealthy": {"tcp_failures": 1}}}}),
    );
    post(
        &writer,
        "/upstreams/pool/targets",
        json!({"target": target}),
    );
    post(&writer, "/services", json!({"name": "s", "host": "pool"}));
    post(&writer, "/services/s/routes", json!({"paths": ["/pool"]}));
    let proxied = |gw: &Gangway| {
        request(gw.proxy, "GET", "/pool", &[], b"")
            .map(|r| r.status)
            .unwrap_or(0)
    };
    for gw in [&writer, &follower] {
        within(Duration::from_secs(5), "the route reaches the node", || {
            proxied(gw) == 200
        });
    }
    let health = |gw: &Gangway| {
        gw.admin("GET", "/upstreams/pool/health", &[], b"").json()["data"][0]["health"].clone()
    };

    let set = |verb: &str| {
        let path = format!("/upstreams/pool/targets/{target}/{verb}");
        writer.admin("PUT", &path, &[], b"").status
    };
    assert_eq!(set("unhealthy"), 204);
    assert_eq!(health(&writer), "UNHEALTHY");
    within(Duration::from_secs(2), "the other node hears of it", || {
        health(&follower) == "UNHEALTHY"
    });
    assert_eq!(proxied(&follower), 503, "the other node stops using it");
    assert!(follower.log().contains("target health set by another node"));

    assert_eq!(set("healthy"), 204);
    within(Duration::from_secs(2), "the other node hears of it", || {
        health(&follower) == "HEALTHY"
    });
    assert_eq!(proxied(&follower), 200);
}

/// Two consumers swap names in one transaction (alice→tmp, bob→alice, tmp→bob): applied
/// row by row onto the index, the first rename met a name the second had not released yet,
/// and every node failed the same batch again and again, serving the old names until it
/// was restarted. Now such a batch loads the whole config instead.
#[test]
fn consumers_that_swap_names_in_one_transaction_reach_every_node() {
    let pg = Postgres::start();
    bootstrap(&pg);
    let up = Upstream::start();
    let a = node(&pg, true);
    let b = node(&pg, false);
    keyed_api(&a, &up);
    for (name, key) in [("alice", "key-a"), ("bob", "key-b")] {
        post(&a, "/consumers", json!({"username": name}));
        post(
            &a,
            &format!("/consumers/{name}/key-auth"),
            json!({"key": key}),
        );
    }
    let consumer_of = |gw: &Gangway, key: &str| -> Option<String> {
        let r = request(gw.proxy, "GET", "/api", &[("apikey", key)], b"").ok()?;
        // Until the node has the route and the key, the answer is gangway's own.
        (r.status == 200).then(|| echo_header(&r.json(), "x-consumer-username"))?
    };
    for gw in [&a, &b] {
        within(Duration::from_secs(2), "both keys work", || {
            consumer_of(gw, "key-a").as_deref() == Some("alice")
                && consumer_of(gw, "key-b").as_deref() == Some("bob")
        });
    }
    let rename = |from: &str, to: &str| {
        format!(
            "UPDATE consumers SET username = '{to}', entity = jsonb_set(entity, '{{username}}', '\"{to}\"') WHERE username = '{from}';"
        )
    };
    pg.psql(&format!(
        "BEGIN; {} {} {} COMMIT;",
        rename("alice", "tmp"),
        rename("bob", "alice"),
        rename("tmp", "bob")
    ));
    for gw in [&a, &b] {
        within(Duration::from_secs(3), "the swap reaches the node", || {
            consumer_of(gw, "key-a").as_deref() == Some("bob")
                && consumer_of(gw, "key-b").as_deref() == Some("alice")
        });
    }
    // And the node goes on following changes after it.
    post(&a, "/consumers", json!({"username": "carol"}));
    post(&a, "/consumers/carol/key-auth", json!({"key": "key-c"}));
    for gw in [&a, &b] {
        within(Duration::from_secs(2), "a later change", || {
            consumer_of(gw, "key-c").as_deref() == Some("carol")
        });
    }
}

/// A certificate's `snis` in an Admin API body are its names, as Kong's certificates DAO
/// makes them: created with it, replaced by a PUT or PATCH that lists them, refused when
/// another certificate holds one or a name is listed twice. They used to be dropped.
#[test]
fn a_certificate_s_snis_in_the_body_are_its_names() {
    let pg = Postgres::start();
    bootstrap(&pg);
    let gw = node(&pg, true);
    let pki = crate::harness::pki::issue_pki();
    let cert =
        |snis: Value| json!({"cert": pki.server_cert_pem, "key": pki.server_key_pem, "snis": snis});
    let first = post(
        &gw,
        "/certificates",
        cert(json!(["b.example", "a.example"])),
    );
    assert_eq!(first["snis"], json!(["a.example", "b.example"]), "{first}");
    let id = first["id"].as_str().expect("an id").to_owned();
    assert_eq!(pg.psql("select count(*) from snis"), "2");
    let sni = gw.admin("GET", "/snis/a.example", &[], b"");
    assert_eq!(sni.json()["certificate"]["id"], id, "{}", sni.text());

    let taken = gw.admin(
        "POST",
        "/certificates",
        &JSON,
        cert(json!(["a.example"])).to_string().as_bytes(),
    );
    assert_eq!(taken.status, 400, "{}", taken.text());
    assert_eq!(
        taken.json()["fields"]["snis"],
        format!("a.example already associated with existing certificate '{id}'")
    );
    let twice = gw.admin(
        "POST",
        "/certificates",
        &JSON,
        cert(json!(["c.example", "c.example"]))
            .to_string()
            .as_bytes(),
    );
    assert_eq!(twice.status, 400, "{}", twice.text());
    assert_eq!(twice.json()["fields"]["snis"], "c.example is duplicated");
    assert_eq!(
        pg.psql("select count(*) from certificates"),
        "1",
        "nothing half written"
    );

    let path = format!("/certificates/{id}");
    let patched = gw.admin(
        "PATCH",
        &path,
        &JSON,
        br#"{"snis":["c.example","a.example"]}"#,
    );
    assert_eq!(patched.status, 200, "{}", patched.text());
    assert_eq!(patched.json()["snis"], json!(["a.example", "c.example"]));
    let tags_only = gw.admin("PATCH", &path, &JSON, br#"{"tags":["t"]}"#);
    assert_eq!(
        tags_only.json()["snis"],
        json!(["a.example", "c.example"]),
        "kept"
    );
    let cleared = gw.admin("PATCH", &path, &JSON, br#"{"snis":null}"#);
    assert_eq!(cleared.json()["snis"], json!([]), "{}", cleared.text());
    assert_eq!(pg.psql("select count(*) from snis"), "0");

    // A PUT is a whole certificate, as Kong's: by a name, that name is among its SNIs; with
    // no `snis`, it has none (both used to keep the stored list or the body's alone).
    let by_name = gw.admin(
        "PUT",
        "/certificates/n1.example",
        &JSON,
        cert(json!(["n2.example"])).to_string().as_bytes(),
    );
    assert!(
        by_name.status == 200 || by_name.status == 201,
        "{}",
        by_name.text()
    );
    assert_eq!(by_name.json()["snis"], json!(["n1.example", "n2.example"]));
    let put_id = by_name.json()["id"].as_str().expect("id").to_owned();
    let mut bare = cert(Value::Null);
    bare.as_object_mut().expect("object").remove("snis");
    let replaced = gw.admin(
        "PUT",
        &format!("/certificates/{put_id}"),
        &JSON,
        bare.to_string().as_bytes(),
    );
    assert_eq!(replaced.status, 200, "{}", replaced.text());
    assert_eq!(replaced.json()["snis"], json!([]), "{}", replaced.text());
}

/// A key of 32 hex digits (what Kong before 3.x generated, a UUID without its hyphens, and
/// what `openssl rand -hex 16` makes) is also an id to the uuid crate: a key-auth addressed
/// by such a key was looked up as an id, and DELETE answered 204 and left the key working.
/// A nested PUT by key used to drop the key from the replacement.
#[test]
fn children_are_addressed_and_replaced_by_their_keys() {
    let pg = Postgres::start();
    bootstrap(&pg);
    let up = Upstream::start();
    let gw = node(&pg, true);
    keyed_api(&gw, &up);
    post(&gw, "/consumers", json!({"username": "bob"}));
    let key = "0123456789abcdef0123456789abcdef";
    let made = post(&gw, "/consumers/bob/key-auth", json!({ "key": key }));
    within(Duration::from_secs(2), "the key works", || {
        status_with_key(&gw, key) == 200
    });
    let found = gw.admin("GET", &format!("/key-auths/{key}"), &[], b"");
    assert_eq!(found.status, 200, "{}", found.text());
    assert_eq!(found.json()["id"], made["id"]);

    for _ in 0..2 {
        let put = gw.admin("PUT", "/consumers/bob/key-auth/secret123", &JSON, b"{}");
        assert!(put.status == 200 || put.status == 201, "{}", put.text());
        assert_eq!(put.json()["key"], "secret123", "{}", put.text());
        let acl = gw.admin("PUT", "/consumers/bob/acls/admins", &JSON, b"{}");
        assert_eq!(acl.status, 200, "{}", acl.text());
        assert_eq!(acl.json()["group"], "admins");
        let route = gw.admin(
            "PUT",
            "/services/api/routes/r",
            &JSON,
            br#"{"paths":["/api"]}"#,
        );
        assert_eq!(route.status, 200, "{}", route.text());
        assert_eq!(route.json()["name"], "r");
    }
    assert_eq!(pg.psql("select count(*) from routes"), "1");
    within(Duration::from_secs(2), "the replaced key works", || {
        status_with_key(&gw, "secret123") == 200
    });

    let gone = gw.admin("DELETE", &format!("/key-auths/{key}"), &[], b"");
    assert_eq!(gone.status, 204, "{}", gone.text());
    assert_eq!(
        gw.admin("GET", &format!("/key-auths/{key}"), &[], b"")
            .status,
        404
    );
    within(Duration::from_secs(2), "the deleted key is refused", || {
        status_with_key(&gw, key) == 401
    });
}

/// A service lists its CA certificates in the entity, with no foreign key: deleting one
/// from under it answered 204, and the service quietly verified against the default roots
/// instead of its pinned CA. Kong refuses with code 19.
#[test]
fn a_ca_certificate_a_service_pins_cannot_be_deleted() {
    let pg = Postgres::start();
    bootstrap(&pg);
    let gw = node(&pg, true);
    let ca = {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .self_signed(&rcgen::KeyPair::generate().expect("key"))
            .expect("ca")
    };
    let made = post(&gw, "/ca_certificates", json!({ "cert": ca.pem() }));
    let ca_id = made["id"].as_str().expect("id").to_owned();
    let service = post(
        &gw,
        "/services",
        json!({"name": "pinned", "url": "https://upstream.test", "tls_verify": true, "ca_certificates": [ca_id]}),
    );
    let refused = gw.admin("DELETE", &format!("/ca_certificates/{ca_id}"), &[], b"");
    assert_eq!(refused.status, 400, "{}", refused.text());
    let body = refused.json();
    assert_eq!(body["code"], 19);
    assert_eq!(body["name"], "referenced by others");
    assert_eq!(
        body["message"],
        format!(
            "ca certificate {ca_id} is still referenced by services (id = {})",
            service["id"].as_str().expect("service id")
        )
    );
    assert_eq!(pg.psql("select count(*) from ca_certificates"), "1");
    let unpinned = gw.admin(
        "PATCH",
        "/services/pinned",
        &JSON,
        br#"{"ca_certificates": null}"#,
    );
    assert_eq!(unpinned.status, 200, "{}", unpinned.text());
    let deleted = gw.admin("DELETE", &format!("/ca_certificates/{ca_id}"), &[], b"");
    assert_eq!(deleted.status, 204, "{}", deleted.text());
}
