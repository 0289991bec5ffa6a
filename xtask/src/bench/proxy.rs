//! `cargo xtask bench proxy`: gangway (io_uring and epoll) against nginx, haproxy and Pingora
//! as reverse proxies to one nginx upstream, under the same wrk load, one workload at a time.
//!
//! Every contender of a workload is started fresh with that workload's listener (plain or
//! TLS, one shared certificate), then measured in interleaved rounds by
//! [`compare`](super::compare). With more than one workload, a summary of the ratios to nginx
//! per workload is saved as well (`proxy-workloads-latest.md`).

use std::fmt::Write as _;
use std::net::TcpStream;
use std::path::Path;

use anyhow::{Context, Result};

use super::peers::{self, Tls};
use super::{
    Against, Contender, LARGE_PATH, Load, Params, Proc, Sample, build_release, compare,
    connections::one_request, free_port, gangway_with_env, nginx, plain_config, save_results,
    scratch_dir, upstream,
};

/// Idle keep-alive clients held open through the `idle` workload's rounds.
const IDLE_CLIENTS: usize = 1000;

/// What the load does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Keep-alive GETs, 24-byte body.
    Plain,
    /// The same over TLS (TLS 1.3, ECDSA P-256).
    Tls,
    /// A new connection per request (`Connection: close`).
    Close,
    /// Keep-alive GETs of 1 MiB responses.
    Large,
    /// Plain, while 1,000 idle keep-alive clients stay connected.
    Idle,
    /// Every workload above, in turn.
    All,
}

impl Workload {
    const EACH: [Workload; 5] = [
        Workload::Plain,
        Workload::Tls,
        Workload::Close,
        Workload::Large,
        Workload::Idle,
    ];

    /// The workloads asked for, `all` expanded, each once, in the order given.
    pub fn expand(asked: &[Workload]) -> Vec<Workload> {
        let mut out = Vec::new();
        for w in asked {
            let each: &[Workload] = if *w == Workload::All {
                &Self::EACH
            } else {
                std::slice::from_ref(w)
            };
            for w in each {
                if !out.contains(w) {
                    out.push(*w);
                }
            }
        }
        out
    }

    /// The results' name: `proxy` for plain (as before workloads existed), else
    /// `proxy-<workload>`.
    fn bench_name(self) -> &'static str {
        match self {
            Workload::Plain | Workload::All => "proxy",
            Workload::Tls => "proxy-tls",
            Workload::Close => "proxy-close",
            Workload::Large => "proxy-1mb",
            Workload::Idle => "proxy-idle",
        }
    }

    fn describe(self) -> String {
        match self {
            Workload::Plain | Workload::All => {
                "plain keep-alive GETs, 24-byte body".to_owned()
            }
            Workload::Tls => "keep-alive GETs over TLS 1.3 (one self-signed ECDSA P-256 certificate for every contender; wrk's OpenSSL client), 24-byte body".to_owned(),
            Workload::Close => "a new connection per request (wrk sends `Connection: close`), 24-byte body; the upstream connections stay keep-alive".to_owned(),
            Workload::Large => format!("keep-alive GETs of {LARGE_PATH}, a 1 MiB response (upstream nginx serves it with sendfile), so RPS x 1 MiB is the throughput"),
            Workload::Idle => format!("plain keep-alive GETs while {IDLE_CLIENTS} more keep-alive clients per contender stay connected and idle (each sent one request first)"),
        }
    }

    fn load(self) -> Load {
        let mut load = Load::root();
        match self {
            Workload::Tls => load.tls = true,
            Workload::Close => load.lua = "wrk.headers[\"Connection\"] = \"close\"\n".into(),
            Workload::Large => load.path = LARGE_PATH.into(),
            Workload::Plain | Workload::Idle | Workload::All => {}
        }
        load
    }
}

/// Runs `cargo xtask bench proxy` for each of `workloads`.
pub fn run(p: &Params, against: &[Against], workloads: &[Workload]) -> Result<()> {
    let (root, bin) = build_release()?;
    let pingora_bin = peers::build_pingora(&root)?;
    let dir = scratch_dir()?;
    let (_upstream, up_port) = upstream(&dir)?;
    let tls = Tls::generate(&dir)?;
    let mut summaries = Vec::new();
    for &w in workloads {
        eprintln!("bench: workload {}", w.bench_name());
        let contenders = start(
            &bin,
            &pingora_bin,
            &dir,
            up_port,
            p.workers,
            against,
            (w == Workload::Tls).then_some(&tls),
        )?;
        let _idle = if w == Workload::Idle {
            hold_idle(&contenders)?
        } else {
            Vec::new()
        };
        let mut setup = format!(
            "{}; wrk -t1 -c{} -d{}s, {} interleaved rounds after {} s warm-up, {} worker(s) (haproxy, Pingora: threads) each, upstream: nginx (1 worker); nginx keeps 512 idle upstream connections per worker; haproxy 2.6 runs with `http-reuse always`, keep-alive and no logging; Pingora 0.9 with an upstream pool of 512 (xtask/src/bench/peers.rs, benches/peers/pingora); medians shown",
            w.describe(),
            p.connections,
            p.duration_s,
            p.repeat,
            p.warmup_s,
            p.workers
        );
        for a in against {
            let _ = write!(
                setup,
                "; gangway-{} (io_uring) is {}",
                a.label,
                a.path.display()
            );
        }
        let (medians, _) = compare(
            &root,
            &dir,
            w.bench_name(),
            &setup,
            p,
            &contenders,
            &w.load(),
            "nginx",
        )?;
        let names: Vec<String> = contenders.iter().map(|c| c.name.clone()).collect();
        summaries.push((w, names, medians));
    }
    if summaries.len() > 1 {
        save_summary(&root, p, &summaries)?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Starts every contender for one workload: TLS listeners when `tls` is given.
fn start(
    bin: &Path,
    pingora_bin: &Path,
    dir: &Path,
    up_port: u16,
    workers: usize,
    against: &[Against],
    tls: Option<&Tls>,
) -> Result<Vec<Contender>> {
    let plain = plain_config(up_port);
    let gangway_at = |bin: &Path, name: &str, backend: &str| -> Result<Contender> {
        let port = free_port()?;
        let listen = format!(
            "127.0.0.1:{port}{}",
            if tls.is_some() { " ssl" } else { "" }
        );
        let mut env = vec![("GANGWAY_PROXY_LISTEN", listen.as_str())];
        let (cert, key);
        if let Some(t) = tls {
            cert = t.cert.display().to_string();
            key = t.key.display().to_string();
            env.extend([
                ("GANGWAY_SSL_CERT", cert.as_str()),
                ("GANGWAY_SSL_CERT_KEY", key.as_str()),
            ]);
        }
        Ok(Contender {
            name: name.into(),
            proc_: gangway_with_env(bin, dir, name, backend, port, &plain, workers, &env)?,
            port,
            load: None,
        })
    };
    let peer = |name: &str, start: &dyn Fn(u16) -> Result<Proc>| -> Result<Contender> {
        let port = free_port()?;
        Ok(Contender {
            name: name.into(),
            proc_: start(port)?,
            port,
            load: None,
        })
    };
    let mut contenders = vec![
        gangway_at(bin, "gangway-io_uring", "io_uring")?,
        gangway_at(bin, "gangway-epoll", "epoll")?,
        peer("nginx", &|port| {
            nginx_proxy(dir, port, up_port, workers, tls, super::NGINX_CONNECTIONS)
        })?,
        peer("haproxy", &|port| {
            peers::haproxy(dir, port, up_port, workers, tls)
        })?,
        peer("pingora", &|port| {
            peers::pingora(pingora_bin, dir, port, up_port, workers, tls)
        })?,
    ];
    // Each extra binary exactly as gangway-io_uring, so only the binary differs.
    for a in against {
        contenders.push(gangway_at(
            &a.path,
            &format!("gangway-{}", a.label),
            "io_uring",
        )?);
    }
    Ok(contenders)
}

/// nginx as a reverse proxy with an upstream keep-alive pool: the reference contender.
pub(super) fn nginx_proxy(
    dir: &Path,
    port: u16,
    up_port: u16,
    workers: usize,
    tls: Option<&Tls>,
    worker_connections: usize,
) -> Result<Proc> {
    let ssl = tls.map_or(String::new(), |t| {
        format!(
            " ssl; ssl_certificate {}; ssl_certificate_key {}",
            t.cert.display(),
            t.key.display()
        )
    });
    nginx(
        dir,
        "nginx-proxy",
        &format!(
            "  upstream backend {{ server 127.0.0.1:{up_port}; keepalive 512; keepalive_requests 100000; }}\n  \
             server {{ listen 127.0.0.1:{port} reuseport backlog=4096{ssl}; location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}"
        ),
        workers,
        worker_connections,
    )
}

/// Opens [`IDLE_CLIENTS`] keep-alive connections to every contender, one request on each,
/// and returns them to be held open.
fn hold_idle(contenders: &[Contender]) -> Result<Vec<TcpStream>> {
    let mut held = Vec::with_capacity(IDLE_CLIENTS * contenders.len());
    for c in contenders {
        super::wait_port(c.port, &c.name)?;
        for i in 0..IDLE_CLIENTS {
            let mut s = TcpStream::connect(("127.0.0.1", c.port))
                .with_context(|| format!("idle client {i} of {}", c.name))?;
            one_request(&mut s).with_context(|| format!("idle client {i} of {}", c.name))?;
            held.push(s);
        }
    }
    eprintln!(
        "bench: {IDLE_CLIENTS} idle keep-alive clients held on each of {} contenders",
        contenders.len()
    );
    Ok(held)
}

/// One table of every workload's medians as ratios to nginx, the goals' shape.
fn save_summary(
    root: &Path,
    p: &Params,
    summaries: &[(Workload, Vec<String>, Vec<Sample>)],
) -> Result<()> {
    let mut md = format!(
        "Each workload's medians as ratios to nginx (RPS, p99, CPU per request), from one run of `cargo xtask bench proxy --workload all` on this machine: wrk -t1 -c{}, {} rounds of {} s, {} worker(s). Each workload's own table: benches/results/<name>-latest.md.\n\n| workload | contender | RPS | RPS vs nginx | p99 vs nginx | CPU/req vs nginx |\n|---|---|---|---|---|---|\n",
        p.connections, p.repeat, p.duration_s, p.workers
    );
    let mut raw = Vec::new();
    for (w, names, medians) in summaries {
        let Some(base) = names
            .iter()
            .position(|n| n == "nginx")
            .map(|i| medians[i].clone())
        else {
            continue;
        };
        for (name, s) in names.iter().zip(medians) {
            let _ = writeln!(
                md,
                "| {} | {name} | {:.0} | {:.2}x | {:.2}x | {:.2}x |",
                w.bench_name(),
                s.rps,
                s.rps / base.rps,
                s.p99_us / base.p99_us,
                s.cpu_us_per_req / base.cpu_us_per_req
            );
            raw.push(serde_json::json!({"workload": w.bench_name(), "name": name, "rps": s.rps, "p99_us": s.p99_us, "cpu_us_per_req": s.cpu_us_per_req}));
        }
    }
    println!("\n{md}");
    save_results(
        root,
        "proxy-workloads",
        serde_json::json!({ "medians": raw }),
        &md,
    )
}
