//! `cargo xtask bench ebpf`: what a flood from a denied source costs the allowed traffic,
//! with the kernel's XDP guard and with the same policy checked at accept (eBPF off).
//!
//! Two network namespaces join the host by veth pairs: wrk runs in one (allowed), the flood
//! in the other (denied by a global ip-restriction). The flood opens connections as fast as
//! its threads can (non-blocking connects, 1,024 in flight per thread, each closed with a
//! reset): with the guard every SYN is dropped in XDP; without it each connection is
//! accepted by the kernel and closed by gangway's accept check. Each mode is measured
//! without and with the flood in interleaved rounds. Needs root.
//!
//! The flood threads run on a CPU of their own and everything else (wrk, gangway, the
//! upstream) on the others, in every round: a real flood comes from other hosts, and on a
//! small machine a generator sharing the proxy's cores would take their time whatever drops
//! its packets. A packet is received on the CPU that sent it into the veth, so the XDP
//! drops (and, without the guard, the kernel's handshakes) stay on the flood's CPU, while
//! gangway's accept-time refusals run on its own. `--shared-cpus` lets the scheduler place
//! everything.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::SocketAddrV4;
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use gangway_test_support::netns::Peer;
use serde_json::json;

use super::{
    Load, Params, Proc, build_release, free_port, gangway_with_env, median, scratch_dir, upstream,
    wait_port, wrk_from,
};

/// Which CPUs the flood and the allowed traffic run on; `None`: wherever the scheduler puts
/// them.
#[derive(Clone)]
struct Placement {
    flood: Vec<usize>,
    allowed: Vec<usize>,
}

impl Placement {
    /// The last CPU this process may use for the flood, the others for the rest; `None`
    /// with fewer than two.
    fn split() -> Result<Option<Placement>> {
        let cpus = allowed_cpus()?;
        Ok(match cpus.split_last() {
            Some((&last, rest)) if !rest.is_empty() => Some(Placement {
                flood: vec![last],
                allowed: rest.to_vec(),
            }),
            _ => None,
        })
    }

    fn describe(placement: Option<&Placement>) -> String {
        match placement {
            Some(p) => format!(
                "flood pinned to CPU {}, wrk, gangway and the upstream to CPU {}",
                list(&p.flood),
                list(&p.allowed)
            ),
            None => "flood and allowed traffic share the CPUs".into(),
        }
    }
}

fn list(cpus: &[usize]) -> String {
    cpus.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The CPUs the calling thread may run on.
fn allowed_cpus() -> Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most its size.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    if unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        bail!("sched_getaffinity: {}", std::io::Error::last_os_error());
    }
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Keeps the calling thread, and what it starts from now on, on `cpus`.
fn pin_current_thread(cpus: &[usize]) -> Result<()> {
    // SAFETY: cpu_set_t is plain data.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        // SAFETY: `cpu` came from `allowed_cpus`, below CPU_SETSIZE.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    if unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) } != 0 {
        bail!(
            "sched_setaffinity to CPU {}: {}",
            list(cpus),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Connections a flood thread keeps in flight before closing the oldest.
const IN_FLIGHT: usize = 1024;

/// One measured run.
#[derive(Clone, Default)]
struct Run {
    rps: f64,
    p99_us: f64,
    cpu_us_per_req: f64,
    /// Connection attempts the flood made per second.
    flood_per_s: f64,
    /// Refusals per second: XDP drops (eBPF) or accept-time closes (userspace).
    refused_per_s: f64,
    errors: u64,
}

/// Starts gangway on `0.0.0.0:port` guarding both veths, with eBPF `required` or `off`.
fn start(
    bin: &std::path::Path,
    dir: &std::path::Path,
    kernel: bool,
    port: u16,
    config: &str,
    p: &Params,
    interfaces: &str,
) -> Result<Proc> {
    let name = if kernel {
        "gangway-ebpf"
    } else {
        "gangway-userspace"
    };
    let listen = format!("0.0.0.0:{port}");
    gangway_with_env(
        bin,
        dir,
        name,
        "io_uring",
        port,
        config,
        p.workers,
        &[
            ("GANGWAY_PROXY_LISTEN", &listen),
            ("GANGWAY_EBPF", if kernel { "required" } else { "off" }),
            ("GANGWAY_EBPF_INTERFACES", interfaces),
        ],
    )
}

/// Refusals so far: XDP drops of denied sources, or connections closed at accept.
fn refusals(status_port: u16, kernel: bool) -> f64 {
    let Ok(body) = super::http_client::Http::new(status_port)
        .call("GET", "/status", &[], None)
        .and_then(|r| r.json())
    else {
        return 0.0;
    };
    let n = if kernel {
        &body["ebpf"]["drops"]["denied"]
    } else {
        &body["accept_refused"]["denied"]
    };
    n.as_f64().unwrap_or(0.0)
}

/// Opens non-blocking connections to `target` from the calling thread until `until`,
/// closing the oldest with a reset once `IN_FLIGHT` are open; returns the attempts.
fn flood(target: SocketAddrV4, until: Instant) -> u64 {
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: target.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*target.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let reset = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let mut open: VecDeque<OwnedFd> = VecDeque::with_capacity(IN_FLIGHT + 1);
    let mut attempts = 0u64;
    while Instant::now() < until {
        for _ in 0..256 {
            // Close-on-exec: wrk, started meanwhile, must not inherit a thousand sockets
            // (its event loop takes only descriptors below 10 + 3 x its connections).
            // SAFETY: socket(2) with constant arguments.
            let fd = unsafe {
                libc::socket(
                    libc::AF_INET,
                    libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    0,
                )
            };
            if fd < 0 {
                break;
            }
            // SAFETY: `fd` is a new descriptor; the structs outlive the calls.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&reset as *const libc::linger).cast(),
                    size_of::<libc::linger>() as libc::socklen_t,
                );
                libc::connect(
                    fd,
                    (&addr as *const libc::sockaddr_in).cast(),
                    size_of::<libc::sockaddr_in>() as libc::socklen_t,
                );
            }
            // SAFETY: `fd` is open and owned by nothing else.
            open.push_back(unsafe { OwnedFd::from_raw_fd(fd) });
            attempts += 1;
            if open.len() > IN_FLIGHT {
                open.pop_front();
            }
        }
    }
    attempts
}

#[allow(clippy::too_many_arguments)]
fn measure(
    dir: &std::path::Path,
    gw: &Proc,
    kernel: bool,
    allowed: &Peer,
    flooder: Option<&Peer>,
    threads: usize,
    port: u16,
    p: &Params,
    placement: Option<&Placement>,
) -> Result<Run> {
    let status = gw.status.unwrap_or_default();
    let refused_before = refusals(status, kernel);
    let cpu_before = gw.cpu_seconds();
    let started = Instant::now();
    let until = started + Duration::from_secs(p.duration_s);
    let floods: Vec<_> = flooder
        .map(|f| {
            (0..threads)
                .map(|_| {
                    let target = SocketAddrV4::new(f.host_v4, port);
                    let ns = f.ns.clone();
                    let cpus = placement.map(|p| p.flood.clone());
                    std::thread::spawn(move || {
                        if let Some(cpus) = cpus
                            && let Err(e) = pin_current_thread(&cpus)
                        {
                            eprintln!("bench: {e:#}");
                            return 0;
                        }
                        gangway_test_support::netns::enter(&ns);
                        flood(target, until)
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let r = wrk_from(
        Some(&allowed.ns),
        dir,
        &format!("{}:{port}", allowed.host_v4),
        p.connections,
        p.duration_s,
        &Load::root(),
    )?;
    let mut attempts = 0;
    for f in floods {
        attempts += f.join().unwrap_or(0);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = gw.cpu_seconds() - cpu_before;
    let n = |k: &str| r[k].as_f64().unwrap_or(0.0);
    let requests = n("requests").max(1.0);
    Ok(Run {
        rps: requests / (n("duration_us") / 1e6),
        p99_us: n("p99"),
        cpu_us_per_req: cpu * 1e6 / requests,
        flood_per_s: attempts as f64 / elapsed,
        refused_per_s: (refusals(status, kernel) - refused_before) / elapsed,
        errors: (n("errors") + n("non2xx")) as u64,
    })
}

/// Runs the benchmark with `threads` flood threads, on a CPU of their own unless
/// `shared_cpus`.
pub fn run(p: &Params, threads: usize, shared_cpus: bool) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("bench ebpf needs root (XDP, network namespaces)");
    }
    let placement = if shared_cpus {
        None
    } else {
        Placement::split()?
    };
    if !shared_cpus && placement.is_none() {
        eprintln!("bench: one CPU only: the flood shares it with the allowed traffic");
    }
    // Everything started from here on (the upstream, gangway, wrk) inherits this.
    if let Some(placement) = &placement {
        pin_current_thread(&placement.allowed)?;
    }
    crate::build_ebpf::run()?;
    let (root, bin) = build_release()?;
    let dir = scratch_dir()?;
    let (_upstream, up_port) = upstream(&dir)?;
    let allowed = Peer::create();
    let flooder = Peer::create();
    let interfaces = format!("{},{}", allowed.host_if, flooder.host_if);
    let config = format!(
        "{}plugins:\n  - name: ip-restriction\n    config:\n      deny: [\"{}\"]\n",
        super::plain_config(up_port),
        flooder.peer_v4
    );
    let modes = [true, false];
    let mut gws = Vec::new();
    for kernel in modes {
        let port = free_port()?;
        let gw = start(&bin, &dir, kernel, port, &config, p, &interfaces)?;
        wait_port(port, "gangway")?;
        gws.push((kernel, gw, port));
    }
    for (kernel, gw, port) in &gws {
        if p.warmup_s > 0 {
            measure(
                &dir,
                gw,
                *kernel,
                &allowed,
                None,
                threads,
                *port,
                &Params {
                    duration_s: p.warmup_s,
                    ..p.clone()
                },
                placement.as_ref(),
            )?;
        }
    }
    // (mode, flooded) -> runs
    let mut runs: Vec<((bool, bool), Vec<Run>)> = Vec::new();
    for kernel in modes {
        for flooded in [false, true] {
            runs.push(((kernel, flooded), Vec::new()));
        }
    }
    for round in 0..p.repeat {
        for ((kernel, flooded), samples) in &mut runs {
            let (_, gw, port) = gws
                .iter()
                .find(|(k, _, _)| k == kernel)
                .expect("one gangway per mode");
            let r = measure(
                &dir,
                gw,
                *kernel,
                &allowed,
                flooded.then_some(&flooder),
                threads,
                *port,
                p,
                placement.as_ref(),
            )?;
            eprintln!(
                "bench: round {} {} {}: {:.0} rps, p99 {:.2} ms, flood {:.0}/s, refused {:.0}/s, {} errors",
                round + 1,
                label(*kernel),
                if *flooded { "flood" } else { "no flood" },
                r.rps,
                r.p99_us / 1000.0,
                r.flood_per_s,
                r.refused_per_s,
                r.errors
            );
            samples.push(r);
        }
    }
    let med = |v: &[Run], f: fn(&Run) -> f64| median(v.iter().map(f).collect());
    let mut table = String::from(
        "| guard | flood | allowed RPS | vs no flood | p99 ms | gangway CPU us/req | flood connects/s | refused/s | errors |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut raw = Vec::new();
    for ((kernel, flooded), samples) in &runs {
        let base = runs
            .iter()
            .find(|((k, f), _)| k == kernel && !*f)
            .map(|(_, v)| med(v, |r| r.rps))
            .unwrap_or(1.0);
        let rps = med(samples, |r| r.rps);
        let _ = writeln!(
            table,
            "| {} | {} | {:.0} | {:.2}x | {:.2} | {:.1} | {:.0} | {:.0} | {} |",
            label(*kernel),
            if *flooded { "yes" } else { "no" },
            rps,
            rps / base,
            med(samples, |r| r.p99_us) / 1000.0,
            med(samples, |r| r.cpu_us_per_req),
            med(samples, |r| r.flood_per_s),
            med(samples, |r| r.refused_per_s),
            samples.iter().map(|r| r.errors).sum::<u64>(),
        );
        raw.push(json!({
            "guard": label(*kernel), "flood": flooded,
            "runs": samples.iter().map(|r| json!({"rps": r.rps, "p99_us": r.p99_us, "cpu_us_per_req": r.cpu_us_per_req, "flood_per_s": r.flood_per_s, "refused_per_s": r.refused_per_s, "errors": r.errors})).collect::<Vec<_>>(),
        }));
    }
    let setup = format!(
        "allowed: wrk -t1 -c{} -d{}s from one network namespace; flood: {threads} thread(s) of non-blocking connects ({IN_FLIGHT} in flight each, closed with a reset) from another, denied by a global ip-restriction; {}; {} interleaved rounds after {} s warm-up; gangway {} worker(s), io_uring; upstream nginx (1 worker); medians. `refused/s` is XDP drops (ebpf) or connections closed at accept (userspace).",
        p.connections,
        p.duration_s,
        Placement::describe(placement.as_ref()),
        p.repeat,
        p.warmup_s,
        p.workers
    );
    let mut paired = String::new();
    for kernel in modes {
        let rps = |flooded: bool| -> Vec<f64> {
            runs.iter()
                .find(|((k, f), _)| *k == kernel && *f == flooded)
                .map(|(_, v)| v.iter().map(|r| r.rps).collect())
                .unwrap_or_default()
        };
        let ratios = rps(true)
            .iter()
            .zip(rps(false))
            .map(|(w, b)| w / b)
            .collect();
        let _ = writeln!(
            paired,
            "{} with the flood against without it: {}\n",
            label(kernel),
            super::Paired::from_ratios(ratios)
        );
    }
    let table = format!("{table}\n{paired}");
    println!("\n{setup}\n\n{table}");
    let names: Vec<String> = runs
        .iter()
        .map(|((kernel, flooded), _)| {
            format!(
                "{}, {}",
                label(*kernel),
                if *flooded { "flood" } else { "no flood" }
            )
        })
        .collect();
    let rounds: Vec<Vec<Run>> = runs.into_iter().map(|(_, v)| v).collect();
    super::chart::write_panels(
        &root.join("benches/results/ebpf-latest.svg"),
        "cargo xtask bench ebpf: allowed traffic while a denied source floods",
        &names,
        &[
            (
                "allowed requests per second (bar: median; whiskers: lowest and highest round)",
                super::chart::spread(&rounds, |r| r.rps),
            ),
            (
                "allowed p99 latency in ms (bar: median; whiskers: lowest and highest round)",
                super::chart::spread(&rounds, |r| r.p99_us / 1000.0),
            ),
        ],
    )?;
    super::save_results(
        &root,
        "ebpf",
        json!({"setup": setup, "runs": raw}),
        &format!(
            "![allowed RPS and p99 per guard, with and without the flood](ebpf-latest.svg)\n\n{setup}\n\n{table}"
        ),
    )?;
    drop(gws);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn label(kernel: bool) -> &'static str {
    if kernel { "ebpf (XDP)" } else { "userspace" }
}
