//! Process lifecycle: status API, reloads (SIGHUP and file change), drain, CLI.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::harness::client::Conn;
use crate::harness::gangway_command;
use crate::harness::{Gangway, Options, TempDir, Upstream, config_with_routes, request};

fn routes(up: &Upstream, path: &str) -> String {
    config_with_routes(
        up.addr,
        &format!("      - name: r\n        paths: [\"{path}\"]\n"),
    )
}

#[test]
fn status_api_reports_kong_shapes() {
    let up = Upstream::start();
    let text = routes(&up, "/echo");
    let gw = Gangway::start(&text);
    assert_eq!(gw.get("/echo").status, 200);
    let r = request(gw.status, "GET", "/status", &[], b"").expect("status");
    assert_eq!(r.status, 200);
    let s = r.json();
    assert!(
        s["server"]["total_requests"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "{s}"
    );
    assert!(
        s["server"]["connections_accepted"]
            .as_u64()
            .is_some_and(|n| n >= 1)
    );
    let hash = s["configuration_hash"].as_str().expect("hash");
    assert_eq!(
        hash,
        format!("{:x}", <md5::Md5 as md5::Digest>::digest(text.as_bytes())),
        "Kong's hash of a declarative file: the md5 of its text"
    );
    let r = request(gw.status, "GET", "/status/ready", &[], b"").expect("ready");
    assert_eq!(
        (r.status, r.json()["message"].as_str()),
        (200, Some("ready"))
    );
}

#[test]
fn sighup_reload_under_load_drops_nothing_and_bad_config_is_kept_out() {
    let up = Upstream::start();
    let gw = Gangway::start(&routes(&up, "/v1"));
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for _ in 0..4 {
        let (stop, failures, done, proxy) =
            (stop.clone(), failures.clone(), done.clone(), gw.proxy);
        threads.push(std::thread::spawn(move || {
            // Keep-alive connections must survive reloads too.
            let mut c = Conn::open(proxy);
            let deadline = Instant::now() + Duration::from_secs(20);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let failure = match c.get("/v1") {
                    Ok(r) if r.status == 200 => None,
                    Ok(r) => Some(format!("{} {}", r.status, r.text())),
                    Err(e) => Some(format!("{e} ({:?})", e.kind())),
                };
                if let Some(failure) = failure {
                    let at = done.load(Ordering::Relaxed);
                    let mut all = failures.lock().expect("failures");
                    all.push(format!("after {at} requests: {failure}"));
                    c = Conn::open(proxy);
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Same routes plus one more, five times over.
    for i in 0..5 {
        std::thread::sleep(Duration::from_millis(100));
        let yaml = format!(
            "{}      - name: extra\n        paths: [\"/extra{i}\"]\n",
            routes(&up, "/v1")
        );
        gw.write_config(&yaml);
        gw.signal(libc::SIGHUP);
        let deadline = Instant::now() + Duration::from_secs(5);
        while gw.get(&format!("/extra{i}")).status != 200 {
            assert!(
                Instant::now() < deadline,
                "reload {i} not applied; log:\n{}",
                gw.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // A broken file is rejected and the old config keeps serving.
    gw.write_config(
        "_format_version: \"3.0\"\nservices:\n  - name: bad\n    url: http://x:99999\n",
    );
    gw.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("load thread");
    }
    assert!(
        done.load(Ordering::Relaxed) > 50,
        "load loop too slow to mean anything"
    );
    let failures = failures.lock().expect("failures");
    assert!(
        failures.is_empty(),
        "requests failed during reloads: {failures:?}; log:\n{}",
        gw.log()
    );
    assert_eq!(gw.get("/v1").status, 200);
    assert_eq!(
        gw.get("/extra4").status,
        200,
        "bad config replaced the good one"
    );
    assert!(
        gw.log().contains("keeping the current one"),
        "bad reload not logged"
    );
}

#[test]
fn file_change_triggers_reload() {
    let up = Upstream::start();
    let gw = Gangway::start(&routes(&up, "/before"));
    std::thread::sleep(Duration::from_millis(1100));
    gw.write_config(&routes(&up, "/after"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.get("/after").status != 200 {
        assert!(Instant::now() < deadline, "file change not picked up");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(gw.get("/before").status, 404);
}

#[test]
fn sigterm_drains_in_flight_requests_then_exits_zero() {
    drains_in_flight_requests_then_exits_zero(libc::SIGTERM);
}

/// Kong's `kong quit` and its container images stop with SIGQUIT, which used to kill the
/// process at once.
#[test]
fn sigquit_drains_in_flight_requests_then_exits_zero() {
    drains_in_flight_requests_then_exits_zero(libc::SIGQUIT);
}

fn drains_in_flight_requests_then_exits_zero(sig: i32) {
    let up = Upstream::start();
    let mut gw = Gangway::start(&routes(&up, "/echo"));
    let proxy = gw.proxy;
    let slow = std::thread::spawn(move || {
        request(proxy, "GET", "/echo", &[("x-echo-delay-ms", "700")], b"")
    });
    std::thread::sleep(Duration::from_millis(200));
    let idle = Conn::open(gw.proxy);
    gw.signal(sig);
    std::thread::sleep(Duration::from_millis(100));
    let r = request(gw.status, "GET", "/status/ready", &[], b"");
    if let Ok(r) = r {
        assert_eq!(r.status, 503, "ready must fail while draining");
    }
    let r = slow
        .join()
        .expect("thread")
        .expect("in-flight request completes");
    assert_eq!(r.status, 200);
    let status = gw
        .wait_exit(Duration::from_secs(10))
        .expect("gangway exits after drain");
    assert!(status.success(), "exit status {status}");
    drop(idle);
}

#[test]
fn sigterm_closes_idle_keepalive_connections_without_waiting_out_the_grace_period() {
    let up = Upstream::start();
    let mut gw = Gangway::start(&routes(&up, "/echo"));
    // Idle after a request (keepalive_timeout), and idle before its first one
    // (client_header_timeout): both wait for shutdown too.
    let mut after_request = Conn::open(gw.proxy);
    assert_eq!(after_request.get("/echo").expect("a response").status, 200);
    let mut before_request = Conn::open(gw.proxy);
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    gw.signal(libc::SIGTERM);
    assert!(
        after_request.is_closed(Duration::from_secs(3)),
        "an idle keep-alive connection is closed at shutdown"
    );
    assert!(
        before_request.is_closed(Duration::from_secs(3)),
        "a connection yet to send a request is closed at shutdown"
    );
    let status = gw
        .wait_exit(Duration::from_secs(5))
        .expect("gangway exits well inside the 10 s grace period");
    assert!(status.success(), "exit status {status}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

/// `gangway check` judges a file under the settings `start` would use: a proxy-cache
/// dictionary declared through Kong's `KONG_NGINX_HTTP_LUA_SHARED_DICT` passes, and the same
/// file without it fails with Kong's message (check used default settings, refusing what
/// start accepted).
#[test]
fn check_subcommand_reads_the_settings_shared_dicts() {
    let dir = TempDir::new("check-dicts");
    let file = dir.path("cache.yml");
    std::fs::write(
        &file,
        "_format_version: \"3.0\"\nplugins:\n  - name: proxy-cache\n    config: {strategy: memory, memory: {dictionary_name: my_cache}}\n",
    )
    .expect("write");
    let check = |dicts: Option<&str>| {
        let mut cmd = gangway_command();
        cmd.arg("check").arg(&file);
        if let Some(d) = dicts {
            cmd.env("KONG_NGINX_HTTP_LUA_SHARED_DICT", d);
        }
        cmd.output().expect("run check")
    };
    let out = check(Some("my_cache 8m"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = check(None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing shared dict 'my_cache'"), "{err}");
}

#[test]
fn check_subcommand_reports_every_error_with_its_path() {
    let dir = TempDir::new("check");
    let bad = dir.path("bad.yml");
    std::fs::write(
        &bad,
        "_format_version: \"3.0\"\nservices:\n  - name: s1\n    host: example.com\n    port: 70000\n    routes:\n      - name: r1\n        protocols: [\"ftp\"]\n        paths: [\"/a\"]\n",
    )
    .expect("write");
    let out = gangway_command()
        .arg("check")
        .arg(&bad)
        .output()
        .expect("run check");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("services[0].port"), "{err}");
    assert!(err.contains("protocols"), "{err}");
    let good = dir.path("good.yml");
    std::fs::write(
        &good,
        "_format_version: \"3.0\"\nservices:\n  - name: s1\n    url: http://example.com\n",
    )
    .expect("write");
    let out = gangway_command()
        .arg("check")
        .arg(&good)
        .output()
        .expect("run check");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = gangway_command().arg("version").output().expect("version");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("gangway "));
}

#[test]
fn embedded_default_config_serves_status_through_the_proxy() {
    // The embedded config/kong.yml points at the default status listener, 127.0.0.1:8007.
    let dir = TempDir::new("embedded");
    let port = crate::harness::free_port();
    let child = gangway_command()
        .arg("start")
        .env_clear()
        .env("GANGWAY_PROXY_LISTEN", format!("127.0.0.1:{port}"))
        .env("GANGWAY_ADMIN_LISTEN", "off")
        .env("GANGWAY_PREFIX", dir.path("prefix"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let _child = Bare(child);
    let addr = format!("127.0.0.1:{port}").parse().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = request(addr, "GET", "/status", &[], b"") {
            assert_eq!(r.status, 200, "{}", r.text());
            assert!(r.json()["server"].is_object());
            assert!(r.header("via").is_some());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "embedded config did not serve /status"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Only that: the proxy listens on every interface, and the rest of the Status API must
    // not be reachable through it (a POST would drain the node).
    for (method, path) in [
        ("POST", "/status/ready"),
        ("GET", "/status/ready"),
        ("GET", "/metrics"),
        ("POST", "/status"),
    ] {
        let r = request(addr, method, path, &[], b"status=draining").expect("request");
        assert_eq!(r.status, 404, "{method} {path}: {}", r.text());
    }
    let ready = request(status_addr(), "GET", "/status/ready", &[], b"").expect("ready");
    assert_eq!(ready.status, 200, "still ready: {}", ready.text());
}

/// The Status API's default address, which the embedded config proxies to.
fn status_addr() -> std::net::SocketAddr {
    "127.0.0.1:8007".parse().expect("literal")
}

#[test]
fn check_runs_the_compile_step_too() {
    let dir = TempDir::new("check-compile");
    let bad = dir.path("bad-regex.yml");
    std::fs::write(
        &bad,
        "_format_version: \"3.0\"\nservices:\n  - name: s1\n    url: http://example.com\n    routes:\n      - name: r1\n        paths: [\"~/(unclosed\"]\n",
    )
    .expect("write");
    let out = gangway_command()
        .arg("check")
        .arg(&bad)
        .output()
        .expect("run check");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("paths[0]") && err.contains("invalid regex"),
        "{err}"
    );
}

/// Runs `gangway start` with exactly these args and environment; killed on drop.
/// `gangway start` with only Kong's variables: a proxy listener on `proxy`, no status or
/// Admin API listener, the declarative file `yml`, its prefix in `dir`.
fn proxy_only(dir: &TempDir, yml: &std::path::Path, proxy: u16) -> std::process::Command {
    let mut cmd = gangway_command();
    cmd.arg("start")
        .env_clear()
        .env("KONG_PROXY_LISTEN", format!("127.0.0.1:{proxy}"))
        .env("KONG_STATUS_LISTEN", "off")
        .env("KONG_ADMIN_LISTEN", "off")
        .env("KONG_DECLARATIVE_CONFIG", yml)
        .env("GANGWAY_PREFIX", dir.path("prefix"))
        .env("GANGWAY_IO_BACKEND", crate::harness::io_backend());
    cmd
}

struct Bare(std::process::Child);

impl Drop for Bare {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_200(addr: std::net::SocketAddr, path: &str) -> crate::harness::Response {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = request(addr, "GET", path, &[], b"") {
            if r.status == 200 {
                return r;
            }
        }
        assert!(Instant::now() < deadline, "no 200 from {addr}{path}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn kong_environment_variables_configure_gangway() {
    let up = Upstream::start();
    let dir = TempDir::new("kong-env");
    let yml = dir.path("kong.yml");
    std::fs::write(&yml, routes(&up, "/echo")).expect("write");
    let (proxy, status) = (crate::harness::free_port(), crate::harness::free_port());
    let child = gangway_command()
        .arg("start")
        .env_clear()
        .env(
            "KONG_PROXY_LISTEN",
            format!("127.0.0.1:{proxy} reuseport backlog=16384"),
        )
        .env("KONG_STATUS_LISTEN", format!("127.0.0.1:{status}"))
        .env("KONG_ADMIN_LISTEN", "off")
        .env("KONG_DATABASE", "off")
        .env("KONG_DECLARATIVE_CONFIG", &yml)
        .env("KONG_NGINX_WORKER_PROCESSES", "1")
        .env("KONG_HEADERS", "off")
        .env("GANGWAY_PREFIX", dir.path("prefix"))
        .env("GANGWAY_IO_BACKEND", crate::harness::io_backend())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let _child = Bare(child);
    let r = wait_for_200(format!("127.0.0.1:{proxy}").parse().expect("addr"), "/echo");
    assert!(
        r.header("via").is_none() && r.header("x-kong-upstream-latency").is_none(),
        "KONG_HEADERS=off: {:?}",
        r.headers
    );
}

#[test]
fn settings_file_is_read_and_unknown_keys_are_refused() {
    let up = Upstream::start();
    let dir = TempDir::new("toml");
    let yml = dir.path("kong.yml");
    std::fs::write(&yml, routes(&up, "/echo")).expect("write");
    let proxy = crate::harness::free_port();
    let status = crate::harness::free_port();
    let toml = dir.path("gangway.toml");
    std::fs::write(
        &toml,
        format!(
            "proxy_listen = \"127.0.0.1:{proxy}\"\nstatus_listen = \"127.0.0.1:{status}\"\nadmin_listen = \"off\"\ndeclarative_config = \"{}\"\nworkers = 1\nprefix = \"{}\"\n",
            yml.display(),
            dir.path("prefix").display()
        ),
    )
    .expect("write toml");
    let child = gangway_command()
        .args(["start", "-c"])
        .arg(&toml)
        .env_clear()
        .env("GANGWAY_IO_BACKEND", crate::harness::io_backend())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let _child = Bare(child);
    wait_for_200(format!("127.0.0.1:{proxy}").parse().expect("addr"), "/echo");

    let bad = dir.path("bad.toml");
    std::fs::write(&bad, "proxy_listne = \"127.0.0.1:1\"\n").expect("write");
    let out = gangway_command()
        .args(["start", "-c"])
        .arg(&bad)
        .env_clear()
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("proxy_listne"),
        "the unknown key is named: {err}"
    );
}

/// The process log's lines, each parsed as JSON (panics on a line that is not).
fn json_log_lines(gw: &Gangway) -> Vec<serde_json::Value> {
    gw.log()
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"))
        })
        .collect()
}

#[test]
fn log_format_json_writes_one_json_object_per_line_at_the_level_asked() {
    let up = Upstream::start();
    let start = |level: &str| {
        Gangway::start_with(
            Options::new(routes(&up, "/echo"))
                .env("GANGWAY_LOG_FORMAT", "json")
                .env("GANGWAY_LOG_LEVEL", level)
                .env("GANGWAY_PROXY_ACCESS_LOG", "off"),
        )
    };
    let reload_logged = |gw: &Gangway| {
        json_log_lines(gw).iter().any(|line| {
            line["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("SIGHUP"))
        })
    };
    let reloads = |gw: &Gangway| {
        let text = crate::metrics::scrape(gw);
        crate::metrics::sample(&text, "gangway_config_reloads_total", &["result=\"ok\""])
    };
    let info = start("info");
    let quiet = start("warn");
    let before = [reloads(&info), reloads(&quiet)];
    for gw in [&info, &quiet] {
        assert_eq!(gw.get("/echo").status, 200);
        gw.signal(libc::SIGHUP);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    // Each reload runs on its own; wait for both, not the first.
    while !(reloads(&info) > before[0] && reloads(&quiet) > before[1]) && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        reloads(&info) > before[0] && reloads(&quiet) > before[1],
        "both reloaded"
    );
    let lines = json_log_lines(&info);
    let reload = lines
        .iter()
        .find(|line| {
            line["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("SIGHUP"))
        })
        .unwrap_or_else(|| panic!("no SIGHUP line at info: {lines:?}"));
    assert_eq!(reload["level"], "INFO", "{reload}");
    assert!(reload["timestamp"].is_string(), "{reload}");
    // The warn-level instance reloaded too, and logged nothing below warn.
    let quiet_lines = json_log_lines(&quiet);
    assert!(
        quiet_lines
            .iter()
            .all(|line| matches!(line["level"].as_str(), Some("WARN" | "ERROR"))),
        "{quiet_lines:?}"
    );
    assert!(!reload_logged(&quiet), "{quiet_lines:?}");
}

/// Voluntary context switches (wakeups) of each of process `pid`'s threads, by thread id,
/// with the thread's name.
fn wakeups(pid: i32) -> std::collections::HashMap<String, (String, u64)> {
    let mut out = std::collections::HashMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("tasks")
        .flatten()
    {
        let dir = task.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let switches = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let tid = task.file_name().to_string_lossy().into_owned();
        out.insert(tid, (name.trim().to_owned(), switches));
    }
    out
}

#[test]
fn an_idle_node_wakes_its_threads_only_a_few_times_a_second() {
    // No active health checks, eBPF off, no access-log lines waiting: nothing should poll.
    // The control thread still checks the config file and memory trimming once a second,
    // each worker releases idle buffers once a second, and the metrics upkeep runs once a
    // second.
    let up = Upstream::start();
    let gw = Gangway::start(&routes(&up, "/idle"));
    assert_eq!(gw.get("/idle").status, 200);
    std::thread::sleep(Duration::from_secs(1));
    let before = wakeups(gw.pid());
    let window = Duration::from_secs(3);
    std::thread::sleep(window);
    let after = wakeups(gw.pid());
    let mut busy = Vec::new();
    for (tid, (name, n)) in &after {
        let Some((_, was)) = before.get(tid) else {
            continue;
        };
        let per_second = (n - was) as f64 / window.as_secs_f64();
        if per_second > 5.0 {
            busy.push(format!("{name} ({tid}): {per_second:.1} wakeups/s"));
        }
    }
    assert!(busy.is_empty(), "threads polling while idle: {busy:?}");
}

/// `config_watch = off` leaves the declarative file alone when it changes (it was watched
/// anyway; `file_change_triggers_reload` covers the default).
#[test]
fn config_watch_off_leaves_an_edited_file_alone() {
    let up = Upstream::start();
    let gw =
        Gangway::start_with(Options::new(routes(&up, "/first")).env("GANGWAY_CONFIG_WATCH", "off"));
    std::thread::sleep(Duration::from_millis(1100));
    gw.write_config(&routes(&up, "/second"));
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(gw.get("/second").status, 404, "config_watch off");
    assert_eq!(gw.get("/first").status, 200);
}

/// Kong's `port_maps`: behind a port mapping (a container's, a load balancer's), the port
/// clients used is the one `X-Forwarded-Port` carries and route hosts with a port match.
#[test]
fn port_maps_give_the_clients_port_to_upstreams_and_the_router() {
    let up = Upstream::start();
    let dir = TempDir::new("port-maps");
    let yml = dir.path("kong.yml");
    std::fs::write(
        &yml,
        config_with_routes(
            up.addr,
            "      - name: r\n        paths: [\"/echo\"]\n      - name: shop\n        hosts: [\"shop.test:80\"]\n        paths: [\"/shop\"]\n",
        ),
    )
    .expect("write");
    let proxy = crate::harness::free_port();
    let child = proxy_only(&dir, &yml, proxy)
        .env("KONG_PORT_MAPS", format!("80:{proxy}, 443:8443"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let _child = Bare(child);
    let addr = format!("127.0.0.1:{proxy}").parse().expect("addr");
    let echo = wait_for_200(addr, "/echo").json();
    assert_eq!(
        crate::harness::echo_header(&echo, "x-forwarded-port").as_deref(),
        Some("80")
    );
    let r = request(addr, "GET", "/shop", &[("Host", "shop.test")], b"").expect("shop");
    assert_eq!(
        r.status, 200,
        "hosts [shop.test:80] match on the mapped port"
    );

    let said = crate::harness::refused_start(&[("KONG_PORT_MAPS", "80:8000, 8443")]);
    assert!(
        said.contains("invalid port mapping (`port_maps`): 8443"),
        "{said}"
    );
}

/// The open-file limit: `auto` raises a container-style soft limit (1000 here) to the hard
/// one; `worker_rlimit_nofile` (Kong's `KONG_NGINX_MAIN_WORKER_RLIMIT_NOFILE`) sets it, and
/// a limit below what `max_connections` needs is said at startup.
#[test]
fn the_open_file_limit_is_raised_or_set_as_asked() {
    use std::os::unix::process::CommandExt;
    let up = Upstream::start();
    let dir = TempDir::new("rlimit");
    let yml = dir.path("kong.yml");
    std::fs::write(&yml, routes(&up, "/echo")).expect("write");
    let open_files = |rlimit: Option<&str>| {
        let proxy = crate::harness::free_port();
        let log = dir.path(&format!("log-{proxy}"));
        let mut cmd = proxy_only(&dir, &yml, proxy);
        if let Some(n) = rlimit {
            cmd.env("KONG_NGINX_MAIN_WORKER_RLIMIT_NOFILE", n);
        }
        cmd.stdout(std::fs::File::create(&log).expect("log"))
            .stderr(std::process::Stdio::null());
        // SAFETY: between fork and exec only setrlimit runs, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                let limit = libc::rlimit {
                    rlim_cur: 1000,
                    rlim_max: 8192,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let child = Bare(cmd.spawn().expect("spawn"));
        wait_for_200(format!("127.0.0.1:{proxy}").parse().expect("addr"), "/echo");
        let limits =
            std::fs::read_to_string(format!("/proc/{}/limits", child.0.id())).expect("limits");
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .expect("open files line")
            .split_whitespace()
            .skip(3)
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        drop(child);
        (line, std::fs::read_to_string(&log).unwrap_or_default())
    };
    let (auto, log) = open_files(None);
    assert_eq!(
        auto, "8192 8192",
        "auto raises the soft limit to the hard one"
    );
    assert!(
        log.contains("the open-file limit is below"),
        "8192 < 2 x 16384 x workers: {log}"
    );
    let (set, _) = open_files(Some("2048"));
    assert_eq!(set, "2048 8192");
}

/// SIGUSR1 reopens the access log and the log (`proxy_error_log`), as nginx does for
/// logrotate: lines after it go to new files at the configured paths (the signal used to
/// kill the process).
#[test]
fn sigusr1_reopens_the_access_and_error_logs() {
    let up = Upstream::start();
    let dir = TempDir::new("usr1");
    let log = dir.path("access.log");
    let errors = dir.path("error.log");
    let gw = Gangway::start_with(
        Options::new(routes(&up, "/echo"))
            .env("GANGWAY_PROXY_ACCESS_LOG", log.display().to_string())
            .env("KONG_PROXY_ERROR_LOG", errors.display().to_string())
            .env("KONG_ADMIN_ERROR_LOG", errors.display().to_string()),
    );
    let lines = |path: &std::path::Path| {
        std::fs::read_to_string(path).map_or(0, |text| text.lines().count())
    };
    let holds = |path: &std::path::Path, what: &str| {
        std::fs::read_to_string(path).is_ok_and(|text| text.contains(what))
    };
    assert!(
        holds(&errors, "gangway starting"),
        "the log goes to proxy_error_log"
    );
    assert!(!gw.log().contains("gangway starting"), "{}", gw.log());
    assert!(
        !holds(&errors, "is not used"),
        "admin_error_log names the same file"
    );
    assert_eq!(gw.get("/echo").status, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while lines(&log) < 1 {
        assert!(Instant::now() < deadline, "the first line is written");
        std::thread::sleep(Duration::from_millis(50));
    }
    let rotated = dir.path("access.log.1");
    std::fs::rename(&log, &rotated).expect("rotate");
    let rotated_errors = dir.path("error.log.1");
    std::fs::rename(&errors, &rotated_errors).expect("rotate");
    gw.signal(libc::SIGUSR1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(gw.get("/echo").status, 200, "still running");
    assert_eq!(gw.get("/nowhere").status, 404);
    let deadline = Instant::now() + Duration::from_secs(5);
    while lines(&log) < 1 || !holds(&errors, "no route matched") {
        assert!(
            Instant::now() < deadline,
            "new files at the configured paths"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        lines(&rotated),
        1,
        "the rotated file keeps the first line only"
    );
    assert!(holds(&rotated_errors, "SIGUSR1: reopening the log files"));
    assert!(!holds(&rotated_errors, "no route matched"));
}

/// Kong's docker setup sends the error logs to stderr; gangway's one log follows
/// `proxy_error_log` there, and an `admin_error_log` elsewhere is said to be unused.
#[test]
fn proxy_error_log_sends_the_log_to_stderr() {
    let up = Upstream::start();
    let dir = TempDir::new("stderr-log");
    let yml = dir.path("kong.yml");
    std::fs::write(&yml, routes(&up, "/echo")).expect("write");
    let (out, err) = (dir.path("stdout"), dir.path("stderr"));
    let proxy = crate::harness::free_port();
    let child = proxy_only(&dir, &yml, proxy)
        .env("KONG_PROXY_ACCESS_LOG", "/dev/stdout")
        .env("KONG_PROXY_ERROR_LOG", "/dev/stderr")
        .env("KONG_ADMIN_ERROR_LOG", "logs/admin_error.log")
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("spawn");
    let _child = Bare(child);
    wait_for_200(format!("127.0.0.1:{proxy}").parse().expect("addr"), "/echo");
    let read = |path: &std::path::Path| std::fs::read_to_string(path).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !read(&out).contains("\"GET /echo HTTP/1.1\" 200") {
        assert!(
            Instant::now() < deadline,
            "the access log on stdout: {}",
            read(&out)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (stdout, stderr) = (read(&out), read(&err));
    assert!(stderr.contains("gangway starting"), "{stderr}");
    assert!(!stdout.contains("gangway starting"), "{stdout}");
    assert!(
        stderr.contains(
            "admin_error_log = logs/admin_error.log is not used: gangway writes one log, to \
             proxy_error_log (/dev/stderr)"
        ),
        "{stderr}"
    );
}

/// nginx's `keepalive_requests` (Kong's 10,000) closes a connection after that many
/// requests; it was parsed and never enforced.
#[test]
fn keepalive_requests_closes_the_connection_after_that_many() {
    let up = Upstream::start();
    let gw = Gangway::start_with(
        Options::new(routes(&up, "/echo")).env("KONG_NGINX_HTTP_KEEPALIVE_REQUESTS", "2"),
    );
    let mut conn = Conn::open(gw.proxy);
    let first = conn.get("/echo").expect("first");
    assert_eq!(first.status, 200);
    assert_ne!(first.header("connection"), Some("close"));
    let second = conn.get("/echo").expect("second");
    assert_eq!(second.status, 200);
    assert_eq!(
        second.header("connection"),
        Some("close"),
        "the second is the last"
    );
    assert!(conn.is_closed(Duration::from_secs(2)));
}

/// An idle keep-alive connection waits for its next request without a request buffer set
/// (about 18 KiB): epoll waits for readiness with no buffer at all, io_uring with a 1 KiB
/// one. Both before the first request (tokio counted a new socket readable, and every
/// silent client took a set) and after one.
#[test]
fn idle_connections_hold_no_request_buffers() {
    const CLIENTS: usize = 400;
    let up = Upstream::start();
    let gw = Gangway::start_with(
        Options::new(format!(
            "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://{}\n    routes:\n      - paths: [\"/\"]\n",
            up.addr
        ))
        .env("GANGWAY_WORKERS", "1"),
    );
    let warm = gw.get("/");
    assert_eq!(warm.status, 200);
    std::thread::sleep(Duration::from_millis(1500));
    let before = gw.rss_kib();
    let mut conns: Vec<Conn> = (0..CLIENTS).map(|_| Conn::open(gw.proxy)).collect();
    std::thread::sleep(Duration::from_millis(1500));
    let silent = gw.rss_kib().saturating_sub(before) as f64 / CLIENTS as f64;
    for c in &mut conns {
        c.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("request");
        let r = c.read(false).expect("response");
        assert_eq!(r.status, 200);
    }
    // The worker gives back the sets the requests used within a second or two.
    std::thread::sleep(Duration::from_millis(2500));
    let served = gw.rss_kib().saturating_sub(before) as f64 / CLIENTS as f64;
    eprintln!("KiB per idle connection: {silent:.2} before a request, {served:.2} after one");
    for (when, kib) in [("before a request", silent), ("after one", served)] {
        assert!(
            kib < 8.0,
            "{kib:.1} KiB per idle connection {when}: a request buffer set is held"
        );
    }
}
